//! `knock-stamp FILE`: append the current time (CLOCK_REALTIME, as
//! `SECONDS.NANOSECONDS`, like `date +%s.%N`) to FILE. The benchmark uses
//! it as a door's start command: the time is read first thing, so the
//! stamp marks the moment the command started running.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let now = knock_flood::realtime_ns();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [p] if p != "-h" && p != "--help" => p,
        _ => {
            eprintln!(
                "usage: knock-stamp FILE\n\
                 Appends the current time (seconds.nanoseconds since the epoch) to FILE.\n\
                 Example (a knockd door):  Start_Command = /usr/local/bin/knock-stamp /tmp/door.stamps"
            );
            return ExitCode::from(2);
        }
    };
    let line = format!("{}\n", knock_flood::format_stamp(now));
    let res = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knock-stamp: cannot append to {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
