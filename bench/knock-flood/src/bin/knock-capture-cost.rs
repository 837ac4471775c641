//! `knock-capture-cost`: the daemon's capture path on its own — open the
//! interface, install the filter knockd would install, read and decode every
//! frame the filter passes — so the benchmark can measure what a wider
//! filter (every connection attempt, for the scan guard) costs per packet.
//! It prints how many frames passed and decoded; the benchmark reads its CPU
//! time from /proc. Bounded in time; runs only inside a named namespace.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Parser;
use knock_flood::{check_seconds, ensure_private_netns};
use knockd::bpf::{self, FilterSpec};
use knockd::capture::{interface_addresses, Capture};
use knockd::packet;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Hard cap on --seconds.
const MAX_SECONDS: f64 = 120.0;

#[derive(Parser, Debug)]
#[command(
    name = "knock-capture-cost",
    version,
    about = "Run knockd's capture, filter and decoder alone on an interface (benchmark tool)",
    after_help = "Example (what bench/connections.sh runs in its server namespace):\n  \
ip netns exec kconn-srv knock-capture-cost -i kcs1 --tcp-port 7000 --tcp-port 8000 \\\n    \
--watch-attempts --seconds 12\n\n\
Prints one line: frames=N decoded=N filter=INSTRUCTIONS kernel_filter=INSTRUCTIONS"
)]
struct Args {
    /// Interface to capture on.
    #[arg(short, long)]
    interface: String,
    /// A door's TCP port; repeat for more.
    #[arg(long = "tcp-port")]
    tcp_ports: Vec<u16>,
    /// Also pass every TCP SYN without ACK and every UDP datagram.
    #[arg(long)]
    watch_attempts: bool,
    /// Stop after this many seconds (at most 120).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

fn run(a: &Args) -> Result<()> {
    let limit = check_seconds(a.seconds, MAX_SECONDS)?;
    ensure_private_netns("knock-capture-cost")?;
    let mut cap = Capture::open(&a.interface).map_err(|e| anyhow!(e))?;
    let spec = FilterSpec {
        hosts: interface_addresses(&a.interface, false),
        tcp_ports: a.tcp_ports.iter().copied().collect(),
        udp_ports: BTreeSet::new(),
        watch_attempts: a.watch_attempts,
    };
    let program = bpf::build(cap.link(), &spec);
    cap.set_filter(&program).map_err(|e| anyhow!(e))?;
    let kernel = cap.kernel_filter_len().unwrap_or(0);
    let end = Instant::now() + limit;
    let (mut frames, mut decoded) = (0u64, 0u64);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let ms = left.as_millis().clamp(1, 100) as u16;
        let mut fds = [PollFd::new(cap.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms))?;
        let link = cap.link();
        while let Some(f) = cap.next_frame().map_err(|e| anyhow!(e))? {
            frames += 1;
            decoded += u64::from(packet::decode(link, f).is_ok());
        }
    }
    println!(
        "frames={frames} decoded={decoded} filter={} kernel_filter={kernel}",
        program.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    knock_flood::exit_code("knock-capture-cost", run(&Args::parse()))
}
