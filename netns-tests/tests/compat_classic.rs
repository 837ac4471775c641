//! The classic daemon and the classic client (Debian's knockd 0.8) talking
//! to each other in namespaces: proves the harness itself.

use std::time::Duration;

use netns_tests::cases::{each, opens, send, send_opens, serve, CLASSIC, MIXED_V6, TCP, UDP};
use netns_tests::{expect_no_file, require_root, Conf, Lab};

/// Each row: the classic client opens the classic daemon's door (TCP, UDP,
/// mixed over IPv6), and the daemon logs the first stage and the opening
/// for the client's address.
#[test]
fn classic_sequences_open() {
    require_root!("classic_sequences_open");
    each(
        &[("cc-tcp", TCP), ("cc-udp", UDP), ("cc-v6", MIXED_V6)],
        |name, knock| {
            let o = opens(name, CLASSIC, CLASSIC, knock);
            o.daemon.expect_log(&format!("{}: door: Stage 1", o.client));
            o.daemon
                .expect_log(&format!("{}: door: OPEN SESAME", o.client));
        },
    );
}

#[test]
fn classic_wrong_order_does_not_open() {
    require_root!("classic_wrong_order_does_not_open");
    let (lab, d) = serve("cc-wrong", CLASSIC, &TCP);
    send(&lab, CLASSIC, &TCP.with_ports(&["8000", "7000", "9000"]));
    // The daemon saw the hits (the first one counts as stage 1 after the
    // failure) but did not open.
    d.expect_log("Stage 1");
    expect_no_file(&lab.path("opened"), Duration::from_millis(800), &d);
    assert!(!d.log_text().contains("OPEN SESAME"), "{}", d.dump());
    // A wrong port in the middle fails too.
    send(&lab, CLASSIC, &TCP.with_ports(&["7000", "7500", "9000"]));
    expect_no_file(&lab.path("opened"), Duration::from_millis(500), &d);
    // And the right order still works afterwards.
    send_opens(&lab, &d, CLASSIC, &TCP);
}

#[test]
fn classic_two_knockers_get_their_own_address() {
    require_root!("classic_two_knockers_get_their_own_address");
    let mut lab = Lab::new("cc-two");
    let second = lab.add_client();
    let cmd = lab.append_ip("opened");
    let conf = Conf::new(&[]).door(
        "door",
        &[
            ("Sequence", "7000,8000,9000"),
            ("Seq_Timeout", "5"),
            ("Start_Command", &cmd),
        ],
    );
    let d = lab.classic_daemon(&conf);
    let host = lab.server_v4().to_string();
    lab.classic_knock(&second.ns, &[host.as_str(), "7000", "8000", "9000"]);
    d.expect_log(&format!("{}: door: OPEN SESAME", second.v4));
    lab.classic_knock(&lab.client_ns, &[host.as_str(), "7000", "8000", "9000"]);
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
