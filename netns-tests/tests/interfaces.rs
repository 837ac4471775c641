//! Several interfaces: a second veth pair joins the client and the server
//! namespace ([`Lab::add_server_link`]), so the server has two interfaces
//! with their own addresses, and a knock sent to one address arrives on one
//! interface only. Covered: `-i a,b`, `Interface = a, b`, `-i any`, the
//! default-route choice (and its failure), the capture following a moved
//! default route, losing one interface while the other keeps working, a
//! listed interface missing at start-up, `SIGHUP` from one interface to
//! two, and a packet captured twice opening once.

use std::fs;

use netns_tests::scenario::{knock_until_lines, lines, wait_lines, QUIET};
use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, expect_no_file, require_root, Conf, Daemon, Lab, Link};
use nix::sys::signal::Signal;

const SEQ: [&str; 3] = ["7000", "8000", "9000"];

/// One door whose start command appends the knocker's address to
/// `opened`, with `options` in `[options]`.
fn conf(lab: &Lab, options: &[(&str, &str)]) -> Conf {
    let cmd = lab.append_ip("opened");
    Conf::new(options).door_cmd("door", "7000,8000,9000", &cmd, &[("Seq_Timeout", "5")])
}

/// The lab `lab_name` with a second link ([`Lab::add_server_link`]).
fn two_link_lab(lab_name: &str) -> (Lab, Link) {
    let lab = Lab::new(lab_name);
    let link = lab.add_server_link();
    (lab, link)
}

/// Our daemon with `-i iface` (or none), once it listens.
fn daemon(lab: &Lab, iface: Option<&str>, conf: &Conf, extra: &[&str]) -> Daemon {
    let mut d = lab.spawn_daemon_on(&bins::knockd(), iface, conf.text(), extra);
    d.wait_ready();
    d
}

/// Knock the door from the client namespace at `dst`.
fn knock(lab: &Lab, dst: &str) {
    let mut args = vec![dst];
    args.extend(SEQ);
    lab.knock(&lab.client_ns, &args);
}

/// Knock through the lab's first link and through `link`; both open: the
/// `opened` file gets the client's address on each link.
fn knocks_through_both(lab: &Lab, link: &Link, d: &Daemon) {
    knock(lab, &lab.s4());
    wait_lines(&lab.path("opened"), 1, d);
    second_link_opens(lab, link, d);
}

/// After one opening through the lab's first link, knock through `link`
/// (again) until `opened` has a second line: the client's address on
/// each link, in that order.
fn second_link_opens(lab: &Lab, link: &Link, d: &Daemon) {
    let opened = lab.path("opened");
    let to = link.server_v4.to_string();
    knock_until_lines(&opened, 2, d, || knock(lab, &to));
    assert_eq!(
        lines(&opened),
        [lab.client_v4().to_string(), link.client_v4.to_string()],
        "{}",
        d.dump()
    );
}

fn two(lab: &Lab, link: &Link) -> String {
    format!("{},{}", lab.server_if, link.server_if)
}

/// Both server interfaces, as the daemon lists them.
fn listed(lab: &Lab, link: &Link) -> String {
    format!("{}, {}", lab.server_if, link.server_if)
}

/// A way to make the daemon listen on both server interfaces: its `-i`
/// argument (if any), its configuration, and the list it then says it
/// listens on.
struct BothInterfaces {
    lab_name: &'static str,
    how: fn(&Lab, &Link) -> (Option<String>, Conf, String),
}

const BOTH_INTERFACES: &[BothInterfaces] = &[
    BothInterfaces {
        // From the command line.
        lab_name: "i-cli",
        how: |lab, link| (Some(two(lab, link)), conf(lab, &[]), listed(lab, link)),
    },
    BothInterfaces {
        // From the configuration file.
        lab_name: "i-conf",
        how: |lab, link| {
            let list = listed(lab, link);
            (None, conf(lab, &[("Interface", &list)]), list)
        },
    },
    BothInterfaces {
        // `any`.
        lab_name: "i-any",
        how: |lab, _| (Some("any".to_owned()), conf(lab, &[]), "any".to_owned()),
    },
];

/// Each case of [`BOTH_INTERFACES`] in its own lab (a failure's kept-files
/// line names the case's lab).
#[test]
fn both_interfaces_listened_on_from_the_command_line_the_configuration_or_any() {
    require_root!("both_interfaces_listened_on_from_the_command_line_the_configuration_or_any");
    for case in BOTH_INTERFACES {
        let (lab, link) = two_link_lab(case.lab_name);
        let (iface, conf, list) = (case.how)(&lab, &link);
        let d = daemon(&lab, iface.as_deref(), &conf, &[]);
        d.expect_log(&format!("starting up, listening on {list}"));
        knocks_through_both(&lab, &link, &d);
    }
}

#[test]
fn without_an_interface_the_default_routes_choose() {
    require_root!("without_an_interface_the_default_routes_choose");
    let (lab, link) = two_link_lab("i-route");
    // IPv4 leaves through the second link, IPv6 through the first.
    lab.add_route(
        &lab.server_ns,
        "0.0.0.0".parse().unwrap(),
        0,
        link.client_v4.into(),
    );
    lab.add_route(
        &lab.server_ns,
        "::".parse().unwrap(),
        0,
        lab.client_v6().into(),
    );
    let d = daemon(&lab, None, &conf(&lab, &[]), &[]);
    d.expect_log(&format!(
        "starting up, listening on {}, {}",
        link.server_if, lab.server_if
    ));
    let opened = lab.path("opened");
    knock(&lab, &link.server_v4.to_string());
    wait_lines(&opened, 1, &d);
    knock(&lab, &lab.s6());
    let got = wait_lines(&opened, 2, &d);
    assert_eq!(
        got,
        [link.client_v4.to_string(), lab.client_v6().to_string()],
        "{}",
        d.dump()
    );
}

/// Without `-i` or `Interface`, the daemon follows the default routes while
/// it runs: the IPv4 default route moved from the first link to the second
/// moves the capture; the route deleted leaves it where it is (said once).
#[test]
fn a_default_route_that_moves_moves_the_capture() {
    require_root!("a_default_route_that_moves_moves_the_capture");
    let (lab, link) = two_link_lab("i-moved");
    let any: std::net::IpAddr = "0.0.0.0".parse().unwrap();
    lab.add_route(&lab.server_ns, any, 0, lab.client_v4().into());
    // Seq_Timeout 1: the same client knocks again after its opening.
    let conf = lab.one_door_appending("opened", "7000,8000,9000", &[("Seq_Timeout", "1")]);
    let d = daemon(&lab, None, &conf, &[]);
    d.expect_log(&format!("starting up, listening on {}", lab.server_if));

    // Replaced by a default route through the second link.
    lab.add_route(&lab.server_ns, any, 0, link.client_v4.into());
    let moved = format!(
        "interfaces changed from {} to {}",
        lab.server_if, link.server_if
    );
    d.expect_log(&moved);
    let opened = lab.path("opened");
    let to = link.server_v4.to_string();
    knock_until_lines(&opened, 1, &d, || knock(&lab, &to));
    assert_eq!(lines(&opened), [link.client_v4.to_string()], "{}", d.dump());

    // No default route any more: still listening on the second link.
    lab.run(&lab.server_ns, "ip", &["route", "del", "default"])
        .assert_success();
    let kept = format!("still listening on {}", link.server_if);
    d.expect_log(&kept);
    knock_until_lines(&opened, 2, &d, || knock(&lab, &to));
    // Said once, and the captures stayed where they were.
    assert_eq!(d.log_count(&kept), 1, "{}", d.dump());
    assert_eq!(d.log_count("interfaces changed from"), 1, "{}", d.dump());
}

#[test]
fn without_an_interface_or_a_default_route_start_up_fails_with_advice() {
    require_root!("without_an_interface_or_a_default_route_start_up_fails_with_advice");
    let lab = Lab::new("i-noroute");
    let d = lab.our_daemon_fails(None, conf(&lab, &[]).text(), &[]);
    let all = d.all_output();
    assert!(
        all.contains("no default route") && all.contains("-i") && all.contains("Interface"),
        "{}",
        d.dump()
    );
    assert!(!all.contains("listening on"), "{}", d.dump());
}

#[test]
fn losing_one_interface_leaves_the_other_working() {
    require_root!("losing_one_interface_leaves_the_other_working");
    let (lab, link) = two_link_lab("i-lose");
    let d = daemon(&lab, Some(&two(&lab, &link)), &conf(&lab, &[]), &[]);
    let opened = lab.path("opened");
    lab.delete_link(&link);
    d.expect_log(&format!("{}: capture lost", link.server_if));
    // The first interface works while the second is gone.
    knock(&lab, &lab.s4());
    wait_lines(&opened, 1, &d);
    assert_eq!(
        d.log_count(&format!("{}: capture lost", lab.server_if)),
        0,
        "{}",
        d.dump()
    );
    lab.create_server_link_again(&link);
    d.expect_log(&format!("{}: capture reopened", link.server_if));
    // One outage, one line.
    assert_eq!(
        d.log_count(&format!("{}: capture lost", link.server_if)),
        1,
        "{}",
        d.dump()
    );
    second_link_opens(&lab, &link, &d);
}

#[test]
fn a_listed_interface_missing_at_start_up_is_retried() {
    require_root!("a_listed_interface_missing_at_start_up_is_retried");
    let (lab, link) = two_link_lab("i-missing");
    lab.delete_link(&link);
    let d = daemon(&lab, Some(&two(&lab, &link)), &conf(&lab, &[]), &[]);
    d.expect_log(&format!("starting up, listening on {}\n", lab.server_if));
    d.expect_log(&format!("cannot capture on {}", link.server_if));
    let opened = lab.path("opened");
    knock(&lab, &lab.s4());
    wait_lines(&opened, 1, &d);
    lab.create_server_link_again(&link);
    d.expect_log(&format!("{}: capture reopened", link.server_if));
    second_link_opens(&lab, &link, &d);
}

#[test]
fn all_listed_interfaces_missing_is_fatal() {
    require_root!("all_listed_interfaces_missing_is_fatal");
    let lab = Lab::new("i-allmissing");
    let conf = conf(&lab, &[]);
    let d = lab.our_daemon_fails(Some("nosuchif0,nosuchif1"), conf.text(), &[]);
    let all = d.all_output();
    assert!(
        all.contains("cannot capture on nosuchif0") && all.contains("cannot capture on nosuchif1"),
        "{}",
        d.dump()
    );
}

#[test]
fn sighup_goes_from_one_interface_to_two() {
    require_root!("sighup_goes_from_one_interface_to_two");
    let (lab, link) = two_link_lab("i-hup");
    let mut d = daemon(
        &lab,
        None,
        &conf(&lab, &[("Interface", &lab.server_if)]),
        &[],
    );
    let opened = lab.path("opened");
    // Not listening on the second link yet: its knock opens nothing ...
    knock(&lab, &link.server_v4.to_string());
    expect_no_file(&opened, QUIET, &d);
    // ... while the daemon listens on the first.
    knock(&lab, &lab.s4());
    let got = wait_lines(&opened, 1, &d);
    assert_eq!(got, [lab.client_v4().to_string()], "{}", d.dump());

    let list = format!("{}, {}", lab.server_if, link.server_if);
    fs::write(&d.conf, conf(&lab, &[("Interface", &list)]).text()).unwrap();
    d.signal(Signal::SIGHUP);
    d.expect_log(&format!(
        "interfaces changed from {} to {list}",
        lab.server_if
    ));
    second_link_opens(&lab, &link, &d);
    d.assert_running();
}

#[test]
fn a_packet_captured_twice_opens_once() {
    require_root!("a_packet_captured_twice_opens_once");
    let lab = Lab::new("i-twice");
    let (once, once_cmd) = lab.appending("once");
    let (proof, proof_cmd) = lab.appending("proof");
    let timeout = [("Seq_Timeout", "5")];
    let c = Conf::new(&[])
        .door_cmd("door", "7000,8000,9000", &once_cmd, &timeout)
        .door_cmd("proof", "7100,8100,9100", &proof_cmd, &timeout);
    // `any` and the veth itself: every packet reaches the daemon twice.
    let iface = format!("any,{}", lab.server_if);
    let d = daemon(&lab, Some(&iface), &c, &["-D"]);
    let s4 = lab.s4();
    knock(&lab, &s4);
    wait_lines(&once, 1, &d);
    // Each knock was captured twice (the debug line of each packet).
    let first_port = format!("-> {s4}:7000 tcp");
    let twice = poll_until(DEFAULT_TIMEOUT, || {
        (d.proc.output_text().matches(&first_port).count() >= 2).then_some(())
    });
    assert!(twice.is_some(), "not captured twice\n{}", d.dump());
    // The proof door opens after the first door's copies were all seen.
    lab.knock(&lab.client_ns, &[&s4, "7100", "8100", "9100"]);
    wait_lines(&proof, 1, &d);
    assert_eq!(lines(&once).len(), 1, "{}", d.dump());
    assert_eq!(d.log_count(": door: OPEN SESAME"), 1, "{}", d.dump());
    assert_eq!(d.log_count(": proof: OPEN SESAME"), 1, "{}", d.dump());
}
