//! The classic daemon and the classic client (Debian's knockd 0.8) talking
//! to each other in namespaces: proves the harness itself.

use std::time::Duration;

use netns_tests::bins::{CLASSIC_KNOCK, CLASSIC_KNOCKD};
use netns_tests::{expect_file, expect_no_file, require_root, Conf, Lab};

fn classic_present() {
    for p in [CLASSIC_KNOCKD, CLASSIC_KNOCK] {
        assert!(
            std::path::Path::new(p).exists(),
            "{p} is missing: install the Debian package `knockd` (scripts/setup.sh)"
        );
    }
}

fn door_conf(lab: &Lab, sequence: &str, out: &str) -> String {
    Conf::new(&[])
        .door(
            "door",
            &[
                ("Sequence", sequence),
                ("Seq_Timeout", "5"),
                (
                    "Command",
                    &format!("echo %IP% > {}", lab.path(out).display()),
                ),
            ],
        )
        .to_string()
}

/// The classic daemon with a one-door configuration, started in `lab`.
fn classic_daemon(lab: &Lab, sequence: &str) -> netns_tests::Daemon {
    classic_present();
    lab.start_daemon(
        CLASSIC_KNOCKD.as_ref(),
        &door_conf(lab, sequence, "opened"),
        &[],
    )
}

/// Knock with the classic client from the lab's client namespace.
fn classic_knock(lab: &Lab, args: &[&str]) {
    lab.run(&lab.client_ns, CLASSIC_KNOCK, args)
        .assert_success();
}

#[test]
fn classic_tcp_sequence_opens() {
    require_root!("classic_tcp_sequence_opens");
    let lab = Lab::new("cc-tcp");
    let d = classic_daemon(&lab, "7000,8000,9000");
    let host = lab.server_v4().to_string();
    classic_knock(&lab, &[host.as_str(), "7000", "8000", "9000"]);
    let text = expect_file(&lab.path("opened"), &d);
    assert_eq!(text.trim(), lab.client_v4().to_string(), "{}", d.dump());
    d.expect_log(&format!("{}: door: Stage 1", lab.client_v4()));
    d.expect_log(&format!("{}: door: OPEN SESAME", lab.client_v4()));
}

#[test]
fn classic_udp_sequence_opens() {
    require_root!("classic_udp_sequence_opens");
    let lab = Lab::new("cc-udp");
    let d = classic_daemon(&lab, "7001:udp,7002:udp,7003:udp");
    let host = lab.server_v4().to_string();
    classic_knock(&lab, &["-u", host.as_str(), "7001", "7002", "7003"]);
    let text = expect_file(&lab.path("opened"), &d);
    assert_eq!(text.trim(), lab.client_v4().to_string(), "{}", d.dump());
}

#[test]
fn classic_mixed_sequence_over_ipv6_opens() {
    require_root!("classic_mixed_sequence_over_ipv6_opens");
    let lab = Lab::new("cc-v6");
    let d = classic_daemon(&lab, "7000,8000:udp,9000");
    let host = lab.server_v6().to_string();
    classic_knock(&lab, &["-6", host.as_str(), "7000", "8000:udp", "9000"]);
    let text = expect_file(&lab.path("opened"), &d);
    assert_eq!(text.trim(), lab.client_v6().to_string(), "{}", d.dump());
}

#[test]
fn classic_wrong_order_does_not_open() {
    require_root!("classic_wrong_order_does_not_open");
    let lab = Lab::new("cc-wrong");
    let d = classic_daemon(&lab, "7000,8000,9000");
    let host = lab.server_v4().to_string();
    classic_knock(&lab, &[host.as_str(), "8000", "7000", "9000"]);
    // The daemon saw the hits (the first one counts as stage 1 after the
    // failure) but did not open.
    d.expect_log("Stage 1");
    expect_no_file(&lab.path("opened"), Duration::from_millis(800), &d);
    assert!(!d.log_text().contains("OPEN SESAME"), "{}", d.dump());
    // A wrong port in the middle fails too.
    classic_knock(&lab, &[host.as_str(), "7000", "7500", "9000"]);
    expect_no_file(&lab.path("opened"), Duration::from_millis(500), &d);
    // And the right order still works afterwards.
    classic_knock(&lab, &[host.as_str(), "7000", "8000", "9000"]);
    expect_file(&lab.path("opened"), &d);
}

#[test]
fn classic_two_knockers_get_their_own_address() {
    require_root!("classic_two_knockers_get_their_own_address");
    classic_present();
    let mut lab = Lab::new("cc-two");
    let second = lab.add_client();
    let conf = Conf::new(&[])
        .door(
            "door",
            &[
                ("Sequence", "7000,8000,9000"),
                ("Seq_Timeout", "5"),
                (
                    "Command",
                    &format!("echo %IP% >> {}", lab.path("opened").display()),
                ),
            ],
        )
        .to_string();
    let d = lab.start_daemon(CLASSIC_KNOCKD.as_ref(), &conf, &[]);
    let host = lab.server_v4().to_string();
    lab.run(
        &second.ns,
        CLASSIC_KNOCK,
        &[host.as_str(), "7000", "8000", "9000"],
    )
    .assert_success();
    d.expect_log(&format!("{}: door: OPEN SESAME", second.v4));
    classic_knock(&lab, &[host.as_str(), "7000", "8000", "9000"]);
    d.expect_log(&format!("{}: door: OPEN SESAME", lab.client_v4()));
    let text = netns_tests::wait::poll_until(Duration::from_secs(5), || {
        let t = std::fs::read_to_string(lab.path("opened")).ok()?;
        (t.lines().count() >= 2).then_some(t)
    })
    .unwrap_or_else(|| panic!("two lines expected\n{}", d.dump()));
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [second.v4.to_string(), lab.client_v4().to_string()],
        "{}",
        d.dump()
    );
}
