//! Cross compatibility: our `knock` against the classic daemon, and the
//! classic `knock` against our `knockd`.

use netns_tests::scenario::QUIET;
use netns_tests::{expect_file, expect_no_file, require_root, Daemon, Lab};

/// Which side of the pair is ours.
#[derive(Clone, Copy)]
enum Pair {
    /// Our `knock` against the classic daemon.
    OurKnock,
    /// The classic `knock` against our daemon.
    OurDaemon,
}

/// A knock over `family` on `sequence` (client arguments `ports`, after
/// `extra`), with the door's `TCPFlags` if any; the door must open for the
/// client's address.
struct Case<'a> {
    sequence: &'a str,
    tcp_flags: Option<&'a str>,
    extra: &'a [&'a str],
    ports: &'a [&'a str],
    ipv6: bool,
}

const TCP: Case = Case {
    sequence: "7000,8000,9000",
    tcp_flags: Some("syn"),
    extra: &[],
    ports: &["7000", "8000", "9000"],
    ipv6: false,
};

const UDP: Case = Case {
    sequence: "7001:udp,7002:udp,7003:udp",
    tcp_flags: None,
    extra: &["-u"],
    ports: &["7001", "7002", "7003"],
    ipv6: false,
};

const MIXED_V6: Case = Case {
    sequence: "7000,8000:udp,9000",
    tcp_flags: None,
    extra: &["-6"],
    ports: &["7000", "8000:udp", "9000"],
    ipv6: true,
};

fn daemon(lab: &Lab, pair: Pair, sequence: &str, tcp_flags: Option<&str>) -> Daemon {
    let flags: Vec<(&str, &str)> = tcp_flags.map(|f| ("TCPFlags", f)).into_iter().collect();
    let conf = lab.one_door(sequence, &flags);
    match pair {
        Pair::OurKnock => lab.classic_daemon(&conf),
        Pair::OurDaemon => lab.our_daemon(&conf),
    }
}

fn knock(lab: &Lab, pair: Pair, args: &[&str]) {
    match pair {
        Pair::OurKnock => lab.knock(&lab.client_ns, args),
        Pair::OurDaemon => lab.classic_knock(&lab.client_ns, args),
    };
}

fn run(name: &str, pair: Pair, case: &Case) {
    let lab = Lab::new(name);
    let d = daemon(&lab, pair, case.sequence, case.tcp_flags);
    let (host, client) = if case.ipv6 {
        (lab.s6(), lab.client_v6().to_string())
    } else {
        (lab.s4(), lab.client_v4().to_string())
    };
    let mut args: Vec<&str> = case.extra.to_vec();
    args.push(&host);
    args.extend_from_slice(case.ports);
    knock(&lab, pair, &args);
    assert_opened_by(&lab, &d, client);
}

fn assert_opened_by(lab: &Lab, d: &Daemon, addr: impl ToString) {
    let text = expect_file(&lab.path("opened"), d);
    assert_eq!(text.trim(), addr.to_string(), "{}", d.dump());
}

#[test]
fn our_knock_tcp_opens_classic_knockd() {
    require_root!("our_knock_tcp_opens_classic_knockd");
    run("x-ours-tcp", Pair::OurKnock, &TCP);
}

#[test]
fn our_knock_udp_opens_classic_knockd() {
    require_root!("our_knock_udp_opens_classic_knockd");
    run("x-ours-udp", Pair::OurKnock, &UDP);
}

#[test]
fn our_knock_mixed_ipv6_opens_classic_knockd() {
    require_root!("our_knock_mixed_ipv6_opens_classic_knockd");
    run("x-ours-mixed6", Pair::OurKnock, &MIXED_V6);
}

#[test]
fn our_knock_fin_opens_classic_fin_not_ack_door() {
    require_root!("our_knock_fin_opens_classic_fin_not_ack_door");
    let lab = Lab::new("x-ours-fin");
    let d = daemon(&lab, Pair::OurKnock, "7000,8000,9000", Some("fin,!ack"));
    let h = lab.s4();
    // Plain SYN hits do not satisfy fin,!ack.
    lab.knock(&lab.client_ns, &[&h, "7000", "8000", "9000"]);
    expect_no_file(&lab.path("opened"), QUIET, &d);
    lab.knock(
        &lab.client_ns,
        &["--flags", "fin", &h, "7000", "8000", "9000"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_tcp_opens_our_knockd() {
    require_root!("classic_knock_tcp_opens_our_knockd");
    run("x-classic-tcp", Pair::OurDaemon, &TCP);
}

#[test]
fn classic_knock_udp_opens_our_knockd() {
    require_root!("classic_knock_udp_opens_our_knockd");
    run("x-classic-udp", Pair::OurDaemon, &UDP);
}

#[test]
fn classic_knock_mixed_ipv6_opens_our_knockd() {
    require_root!("classic_knock_mixed_ipv6_opens_our_knockd");
    run("x-classic-mixed6", Pair::OurDaemon, &MIXED_V6);
}
