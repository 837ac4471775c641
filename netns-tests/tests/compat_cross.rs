//! Cross compatibility: our `knock` against the classic daemon, and the
//! classic `knock` against our `knockd`.

mod common;

use std::path::Path;

use common::{echo_ip, QUIET};
use netns_tests::bins::{self, CLASSIC_KNOCK, CLASSIC_KNOCKD};
use netns_tests::{expect_file, expect_no_file, require_root, Conf, Daemon, Lab};

fn door(lab: &Lab, sequence: &str, extra: &[(&str, &str)]) -> String {
    let cmd = echo_ip(lab, "opened");
    let mut dirs = vec![
        ("Sequence", sequence),
        ("Seq_Timeout", "5"),
        ("Command", cmd.as_str()),
    ];
    dirs.extend_from_slice(extra);
    Conf::new(&[]).door("door", &dirs).to_string()
}

fn classic_daemon(lab: &Lab, conf: &str) -> Daemon {
    assert!(
        Path::new(CLASSIC_KNOCKD).exists(),
        "{CLASSIC_KNOCKD} missing (scripts/setup.sh)"
    );
    lab.start_daemon(CLASSIC_KNOCKD.as_ref(), conf, &[])
}

fn our_daemon(lab: &Lab, conf: &str) -> Daemon {
    lab.start_daemon(&bins::knockd(), conf, &[])
}

fn our_knock(lab: &Lab, args: &[&str]) {
    lab.run(&lab.client_ns, bins::knock(), args)
        .assert_success();
}

fn classic_knock(lab: &Lab, args: &[&str]) {
    assert!(
        Path::new(CLASSIC_KNOCK).exists(),
        "{CLASSIC_KNOCK} missing (scripts/setup.sh)"
    );
    lab.run(&lab.client_ns, CLASSIC_KNOCK, args)
        .assert_success();
}

fn assert_opened_by(lab: &Lab, d: &Daemon, addr: impl ToString) {
    let text = expect_file(&lab.path("opened"), d);
    assert_eq!(text.trim(), addr.to_string(), "{}", d.dump());
}

#[test]
fn our_knock_tcp_opens_classic_knockd() {
    require_root!("our_knock_tcp_opens_classic_knockd");
    let lab = Lab::new("x-ours-tcp");
    let d = classic_daemon(&lab, &door(&lab, "7000,8000,9000", &[("TCPFlags", "syn")]));
    our_knock(
        &lab,
        &[&lab.server_v4().to_string(), "7000", "8000", "9000"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn our_knock_udp_opens_classic_knockd() {
    require_root!("our_knock_udp_opens_classic_knockd");
    let lab = Lab::new("x-ours-udp");
    let d = classic_daemon(&lab, &door(&lab, "7001:udp,7002:udp,7003:udp", &[]));
    our_knock(
        &lab,
        &["-u", &lab.server_v4().to_string(), "7001", "7002", "7003"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn our_knock_mixed_ipv6_opens_classic_knockd() {
    require_root!("our_knock_mixed_ipv6_opens_classic_knockd");
    let lab = Lab::new("x-ours-mixed6");
    let d = classic_daemon(&lab, &door(&lab, "7000,8000:udp,9000", &[]));
    our_knock(
        &lab,
        &[
            "-6",
            &lab.server_v6().to_string(),
            "7000",
            "8000:udp",
            "9000",
        ],
    );
    assert_opened_by(&lab, &d, lab.client_v6());
}

#[test]
fn our_knock_fin_opens_classic_fin_not_ack_door() {
    require_root!("our_knock_fin_opens_classic_fin_not_ack_door");
    let lab = Lab::new("x-ours-fin");
    let d = classic_daemon(
        &lab,
        &door(&lab, "7000,8000,9000", &[("TCPFlags", "fin,!ack")]),
    );
    let h = lab.server_v4().to_string();
    // Plain SYN hits do not satisfy fin,!ack.
    our_knock(&lab, &[&h, "7000", "8000", "9000"]);
    expect_no_file(&lab.path("opened"), QUIET, &d);
    our_knock(&lab, &["--flags", "fin", &h, "7000", "8000", "9000"]);
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_tcp_opens_our_knockd() {
    require_root!("classic_knock_tcp_opens_our_knockd");
    let lab = Lab::new("x-classic-tcp");
    let d = our_daemon(&lab, &door(&lab, "7000,8000,9000", &[("TCPFlags", "syn")]));
    classic_knock(
        &lab,
        &[&lab.server_v4().to_string(), "7000", "8000", "9000"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_udp_opens_our_knockd() {
    require_root!("classic_knock_udp_opens_our_knockd");
    let lab = Lab::new("x-classic-udp");
    let d = our_daemon(&lab, &door(&lab, "7001:udp,7002:udp,7003:udp", &[]));
    classic_knock(
        &lab,
        &["-u", &lab.server_v4().to_string(), "7001", "7002", "7003"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_mixed_ipv6_opens_our_knockd() {
    require_root!("classic_knock_mixed_ipv6_opens_our_knockd");
    let lab = Lab::new("x-classic-mixed6");
    let d = our_daemon(&lab, &door(&lab, "7000,8000:udp,9000", &[]));
    classic_knock(
        &lab,
        &[
            "-6",
            &lab.server_v6().to_string(),
            "7000",
            "8000:udp",
            "9000",
        ],
    );
    assert_opened_by(&lab, &d, lab.client_v6());
}
