//! Cross compatibility: our `knock` against the classic daemon, and the
//! classic `knock` against our `knockd`.

use netns_tests::scenario::QUIET;
use netns_tests::{expect_file, expect_no_file, require_root, Daemon, Lab};

fn assert_opened_by(lab: &Lab, d: &Daemon, addr: impl ToString) {
    let text = expect_file(&lab.path("opened"), d);
    assert_eq!(text.trim(), addr.to_string(), "{}", d.dump());
}

#[test]
fn our_knock_tcp_opens_classic_knockd() {
    require_root!("our_knock_tcp_opens_classic_knockd");
    let lab = Lab::new("x-ours-tcp");
    let d = lab.classic_daemon(&lab.one_door("7000,8000,9000", &[("TCPFlags", "syn")]));
    lab.knock(
        &lab.client_ns,
        &[&lab.server_v4().to_string(), "7000", "8000", "9000"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn our_knock_udp_opens_classic_knockd() {
    require_root!("our_knock_udp_opens_classic_knockd");
    let lab = Lab::new("x-ours-udp");
    let d = lab.classic_daemon(&lab.one_door("7001:udp,7002:udp,7003:udp", &[]));
    lab.knock(
        &lab.client_ns,
        &["-u", &lab.server_v4().to_string(), "7001", "7002", "7003"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn our_knock_mixed_ipv6_opens_classic_knockd() {
    require_root!("our_knock_mixed_ipv6_opens_classic_knockd");
    let lab = Lab::new("x-ours-mixed6");
    let d = lab.classic_daemon(&lab.one_door("7000,8000:udp,9000", &[]));
    lab.knock(
        &lab.client_ns,
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
    let d = lab.classic_daemon(&lab.one_door("7000,8000,9000", &[("TCPFlags", "fin,!ack")]));
    let h = lab.server_v4().to_string();
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
    let lab = Lab::new("x-classic-tcp");
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[("TCPFlags", "syn")]));
    lab.classic_knock(
        &lab.client_ns,
        &[&lab.server_v4().to_string(), "7000", "8000", "9000"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_udp_opens_our_knockd() {
    require_root!("classic_knock_udp_opens_our_knockd");
    let lab = Lab::new("x-classic-udp");
    let d = lab.our_daemon(&lab.one_door("7001:udp,7002:udp,7003:udp", &[]));
    lab.classic_knock(
        &lab.client_ns,
        &["-u", &lab.server_v4().to_string(), "7001", "7002", "7003"],
    );
    assert_opened_by(&lab, &d, lab.client_v4());
}

#[test]
fn classic_knock_mixed_ipv6_opens_our_knockd() {
    require_root!("classic_knock_mixed_ipv6_opens_our_knockd");
    let lab = Lab::new("x-classic-mixed6");
    let d = lab.our_daemon(&lab.one_door("7000,8000:udp,9000", &[]));
    lab.classic_knock(
        &lab.client_ns,
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
