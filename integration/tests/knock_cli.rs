//! Command-line tests of `knock`: usage errors name the bad value, real
//! knocks to loopback arrive, one-time files advance line by line.
//! All traffic goes to 127.0.0.1 only.

use std::fs;
use std::time::Duration;

use assert_cmd::Command;
use integration::{refuses, Scratch};
use predicates::prelude::*;

fn knock() -> Command {
    integration::command("knock", "knock")
}

/// A UDP socket on loopback that knocks can be aimed at.
type Target = integration::UdpTarget;

#[test]
fn help_and_version() {
    knock()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains(
            "knock myserver.example.com 123:tcp 456:udp 789:tcp",
        ))
        .stdout(predicate::str::contains("--flags"))
        .stdout(predicate::str::contains("--otp"));
    knock().arg("-h").assert().success();
    knock()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("knock "));
    knock().arg("-V").assert().success();
}

#[test]
fn no_arguments_is_a_usage_error() {
    refuses(&mut knock(), ["<HOST|PROFILE>", "Usage:"]);
    refuses(knock().arg("127.0.0.1"), ["PORT"]);
}

#[test]
fn bad_ports_are_named() {
    for bad in ["70000", "0", "80x", "99999:udp"] {
        let shown = bad.split(':').next().unwrap();
        refuses(
            knock().args(["127.0.0.1", "7000", bad]),
            [format!("port \"{shown}\"")],
        );
    }
}

#[test]
fn bad_protocol_and_flags_are_named() {
    // (arguments, the bad value as the message quotes it)
    let cases: &[(&[&str], &str)] = &[
        (&["127.0.0.1", "7000:icmp"], "protocol \"icmp\""),
        (&["--flags", "syn,bogus", "127.0.0.1", "7000"], "\"bogus\""),
        (&["--flags", "fin,!ack", "127.0.0.1", "7000"], "\"!ack\""),
        (&["127.0.0.1", "7000:udp:fin"], "\"7000:udp:fin\""),
    ];
    for (args, needle) in cases {
        refuses(knock().args(*args), [needle]);
    }
}

#[test]
fn unresolvable_host_is_named() {
    knock()
        .args(["no-such-host.invalid", "7000"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "knock: cannot resolve host \"no-such-host.invalid\"",
        ));
    knock()
        .args(["-6", "127.0.0.1", "7000"])
        .assert()
        .code(1)
        .stderr("knock: host \"127.0.0.1\" has no IPv6 address\n");
}

#[test]
fn udp_knock_to_loopback_arrives() {
    let t = Target::new(Duration::from_secs(5));
    let port = t.port.to_string();
    knock()
        .args(["-v", "127.0.0.1", &format!("{port}:UDP")])
        .assert()
        .success()
        .stdout(format!("hitting udp 127.0.0.1:{port}\n"));
    assert_eq!(t.recv(), [0], "one NUL byte, as the classic client sends");
    assert!(t.idle(), "exactly one datagram per hit");
}

#[test]
fn mixed_knock_with_delay_to_loopback() {
    let a = Target::new(Duration::from_secs(5));
    let b = Target::new(Duration::from_secs(5));
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    // Ports 1 and 2 on loopback: nothing listens there, a SYN just gets a RST.
    knock()
        .args(["-u", "-d", "50", "127.0.0.1", &pa, "1:tcp", &pb, "2:tcp"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(a.recv(), [0]);
    assert_eq!(b.recv(), [0]);
}

#[test]
fn otp_file_advances_one_line_per_knock() {
    let a = Target::new(Duration::from_secs(5));
    let b = Target::new(Duration::from_secs(5));
    let dir = Scratch::new();
    let content = format!(
        "# one-time sequences\n {}:udp\n {}:udp,{}:udp\n",
        a.port, b.port, a.port
    );
    let file = dir.file_with_mode("seqs", content, 0o644);
    let f = file.to_str().unwrap();

    knock()
        .args(["-v", "--otp", f, "127.0.0.1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "using one-time line 2 of {f}\n"
        )))
        .stdout(predicate::str::contains(format!(
            "hitting udp 127.0.0.1:{}",
            a.port
        )));
    assert_eq!(a.recv(), [0]);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!(
            "# one-time sequences\n#{}:udp\n {}:udp,{}:udp\n",
            a.port, b.port, a.port
        )
    );

    knock()
        .args(["-v", "--otp", f, "127.0.0.1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("one-time line 3 of {f}")));
    assert_eq!(b.recv(), [0]);
    assert_eq!(a.recv(), [0]);
    assert!(fs::read_to_string(&file)
        .unwrap()
        .ends_with(&format!("\n#{}:udp,{}:udp\n", b.port, a.port)));

    knock()
        .args(["--otp", f, "127.0.0.1"])
        .assert()
        .code(1)
        .stderr(format!(
            "knock: {f}: no unused sequence left (3 used); add more with knock-gen\n"
        ));
    assert!(a.idle() && b.idle());
}

#[test]
fn otp_line_stays_unused_when_the_knock_fails() {
    let dir = Scratch::new();
    let file = dir.file_with_mode("seqs", " 7000,8000:udp\n", 0o644);
    refuses(
        knock().args(["--otp", file.to_str().unwrap(), "no-such-host.invalid"]),
        ["no-such-host.invalid"],
    )
    .code(1);
    assert_eq!(fs::read_to_string(&file).unwrap(), " 7000,8000:udp\n");
}

#[test]
fn otp_errors() {
    let dir = Scratch::new();
    let file = dir.file_with_mode("seqs", "#7000,8000\n\n", 0o644);
    let f = file.to_str().unwrap();
    refuses(
        knock().args(["--otp", f, "127.0.0.1"]),
        [f, "no unused sequence"],
    )
    .code(1);
    fs::write(&file, "").unwrap();
    refuses(
        knock().args(["--otp", f, "127.0.0.1"]),
        ["no unused sequence left (0 used)"],
    )
    .code(1);
    refuses(
        knock().args(["--otp", f, "127.0.0.1", "7000"]),
        ["--otp", "7000"],
    );
    let missing = dir.join("missing");
    knock()
        .args(["--otp", missing.to_str().unwrap(), "127.0.0.1"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "knock: {}: ",
            missing.display()
        )));
}

/// A command that runs `knock` without raw-socket privilege: directly when
/// this test does not run as root, as user nobody through `setpriv` when it
/// does. `None` when root and `setpriv` is missing.
fn unprivileged_knock() -> Option<Command> {
    if !integration::running_as_root() {
        return Some(knock());
    }
    let mut c = Command::new(integration::setpriv()?);
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]);
    c.arg(integration::binary("knock", "knock"));
    Some(c)
}

#[test]
fn without_privilege_plain_knocks_use_ordinary_sockets() {
    let Some(mut cmd) = unprivileged_knock() else {
        integration::skipped("running as root without setpriv");
        return;
    };
    let t = Target::new(Duration::from_secs(5));
    let port = t.port.to_string();
    cmd.args(["-v", "127.0.0.1", "1", &format!("{port}:udp")])
        .assert()
        .success()
        .stdout(format!(
            "hitting tcp 127.0.0.1:1\nhitting udp 127.0.0.1:{port}\n"
        ))
        .stderr(predicate::str::contains("sending through ordinary sockets"));
    assert_eq!(t.recv(), [0]);
    assert!(t.idle());

    let mut cmd = unprivileged_knock().unwrap();
    cmd.args([
        "--flags",
        "fin,ack",
        "127.0.0.1",
        "7000",
        &format!("{port}:udp"),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("hit 1 (TCP flags fin,ack)"))
    .stderr(predicate::str::contains("root or CAP_NET_RAW"));
    assert!(t.idle(), "nothing is sent when a hit cannot be");
}
