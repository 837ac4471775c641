//! A thousand doors: the daemon starts, a knock on the last door opens it,
//! and a SIGHUP that moves that door's ports takes effect — on the server's
//! veth (Ethernet) and on `-i any` (Linux cooked capture, where libpcap
//! rewrites the filter's offsets for the kernel). The time limits
//! here are generous bounds against a hang, not the goals: start-up and
//! reload times are measured by `bench/doors.sh` (BENCHMARKS.md).

mod common;

use std::fs;
use std::time::Duration;

use common::{echo_ip, knock_until, wait_lines, QUIET};
use netns_tests::wait::wait_for_log;
use netns_tests::{bins, expect_file, expect_no_file, require_root, Conf, Daemon, Lab};
use nix::sys::signal::Signal;

const DOORS: usize = 1000;
/// Bound on start-up, reload and the first successful knock.
const BOUND: Duration = Duration::from_secs(60);

/// Door `i`'s three TCP ports: none adjacent to another door's, so the
/// filter holds 3000 separate ports.
fn ports(i: usize) -> [u16; 3] {
    let p = 2000 + 20 * i as u16;
    [p, p + 6, p + 13]
}

fn seq(p: [u16; 3]) -> String {
    format!("{},{},{}", p[0], p[1], p[2])
}

/// `DOORS` doors; the last one has sequence `last` and writes the
/// knocker's address to `opened`, the others run `true`.
fn conf(lab: &Lab, last: [u16; 3]) -> Conf {
    let mut c = Conf::new(&[]);
    for i in 0..DOORS - 1 {
        let s = seq(ports(i));
        c = c.door(
            &format!("door{i}"),
            &[("Sequence", s.as_str()), ("Command", "true")],
        );
    }
    let s = seq(last);
    let cmd = echo_ip(lab, "opened");
    c.door(
        "last",
        &[
            ("Sequence", s.as_str()),
            ("Seq_Timeout", "5"),
            ("Command", cmd.as_str()),
        ],
    )
}

fn knock(lab: &Lab, p: [u16; 3]) {
    let h = lab.server_v4().to_string();
    let args = [h, p[0].to_string(), p[1].to_string(), p[2].to_string()];
    lab.run(&lab.client_ns, bins::knock(), &args)
        .assert_success();
}

/// Our daemon on `iface` (`None`: the lab's server veth) with debug
/// logging, not yet ready.
fn spawn(lab: &Lab, conf: &Conf, iface: Option<&str>) -> Daemon {
    let Some(iface) = iface else {
        return lab.spawn_daemon(&bins::knockd(), conf.text(), &["-D"]);
    };
    let conf_path = lab.write_file("any.conf", conf.text());
    let log = lab.path("any.log");
    let args = [
        "-i".to_string(),
        iface.to_string(),
        "-c".to_string(),
        conf_path.display().to_string(),
        "-v".to_string(),
        "-D".to_string(),
        "-g".to_string(),
        log.display().to_string(),
    ];
    Daemon {
        proc: lab.spawn(&lab.server_ns, bins::knockd(), &args),
        log,
        conf: conf_path,
        pidfile: lab.path("any.pid"),
    }
}

fn thousand_doors(name: &str, iface: Option<&str>) {
    let lab = Lab::new(name);
    let first = ports(DOORS - 1);
    let mut d = spawn(&lab, &conf(&lab, first), iface);
    if let Err(e) = wait_for_log(&d.log, "listening on", BOUND) {
        panic!("{e}\n{}", d.dump());
    }
    // The 3000-port filter is whole in the kernel, not refused and left to
    // libpcap's user-space fallback.
    // (Debug lines go to the standard output.)
    let log = d.log_text() + &d.proc.output_text();
    assert!(
        log.contains("capture filter: ") && !log.contains("filtered in user space"),
        "{}",
        d.dump()
    );
    let opened = lab.path("opened");
    assert!(
        knock_until(&opened, BOUND, || knock(&lab, first)),
        "the last of {DOORS} doors does not open\n{}",
        d.dump()
    );
    assert_eq!(wait_lines(&opened, 1, &d), [lab.client_v4().to_string()]);
    fs::remove_file(&opened).unwrap();

    // Move the last door's ports, reload, wait for the reload to finish.
    let moved = [40_001, 40_011, 40_021];
    fs::write(&d.conf, conf(&lab, moved).text()).unwrap();
    d.signal(Signal::SIGHUP);
    if let Err(e) = wait_for_log(&d.log, "configuration reloaded", BOUND) {
        panic!("{e}\n{}", d.dump());
    }
    // The old ports no longer open it ...
    knock(&lab, first);
    expect_no_file(&opened, QUIET, &d);
    // ... the new ones do, at the first try.
    knock(&lab, moved);
    expect_file(&opened, &d);
    d.assert_running();
}

#[test]
fn a_thousand_doors_start_open_and_reload() {
    require_root!("a_thousand_doors_start_open_and_reload");
    thousand_doors("scale", None);
}

#[test]
fn a_thousand_doors_on_the_any_interface() {
    require_root!("a_thousand_doors_on_the_any_interface");
    thousand_doors("scale-any", Some("any"));
}
