//! End-to-end scenarios of how hits are matched (`docs/DECISIONS.md`, "Matching"):
//! duplicates and retransmissions, stragglers, one-time look-ahead and
//! burnt lines, and the port scan guard against real scanners (nmap) and
//! real connect()-based clients (nc) behind a firewall (iptables).
//!
//! The scan scenarios (`*scan*`, `knock_succeeds_while_the_source_uses_a_real_service`)
//! need the daemon to see connection attempts to every port of its
//! addresses (the capture filter widened by the scan guard).

use std::fs;
use std::path::Path;
use std::time::Duration;

use netns_tests::scenario::{lines, wait_lines, Flood, QUIET};
use netns_tests::wait::{self, poll_until};
use netns_tests::{bins, require_root, Conf, Daemon, Host, Lab, RunOutput};

/// Run `program args` in `ns`; it must succeed.
fn run_ok(lab: &Lab, ns: &str, program: &str, args: &[&str]) -> RunOutput {
    let out = lab.run(ns, program, args);
    out.assert_success();
    out
}

/// `sh -c SCRIPT` in `ns` (bounded like every run); it must succeed.
fn sh(lab: &Lab, ns: &str, script: &str) -> RunOutput {
    run_ok(lab, ns, "sh", &["-c", script])
}

/// A door: its name and the directives that define its sequence.
type Door<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// `doors`, each with a command appending the knocker's address to the
/// file of its name.
fn doors(lab: &Lab, doors: &[Door]) -> Conf {
    doors
        .iter()
        .fold(Conf::new(&[]), |conf, &(name, directives)| {
            let cmd = lab.append_ip(name);
            let mut dirs = directives.to_vec();
            dirs.push(("Command", cmd.as_str()));
            conf.door(name, &dirs)
        })
}

/// A lab named `name` with our daemon serving [`doors`] with per-packet
/// debug output (`-D`, on its stdout).
fn serve(name: &str, list: &[Door]) -> (Lab, Daemon) {
    let lab = Lab::new(name);
    let d = lab.start_daemon(&bins::knockd(), doors(&lab, list).text(), &["-D"]);
    (lab, d)
}

/// Packets the daemon decoded from `src` to port `port` (its `-D` lines
/// `packet: SRC:SPORT -> DST:PORT PROTO ...`).
fn packets(d: &Daemon, src: &str, port: u16) -> usize {
    let out = d.proc.output_text();
    out.lines()
        .filter(|l| l.contains(&format!("packet: {src}:")) && l.contains(&format!(":{port} ")))
        .count()
}

/// Wait (at most 5 s; the daemon may still be working through a scan)
/// until it decoded `n` packets from `src` to `port`.
fn wait_packets(d: &Daemon, src: &str, port: u16, n: usize) {
    let seen = poll_until(wait::DEFAULT_TIMEOUT, || {
        (packets(d, src, port) >= n).then_some(())
    });
    assert!(
        seen.is_some(),
        "fewer than {n} packets from {src} to port {port}\n{}",
        d.dump()
    );
}

/// Wait `QUIET`, then the file `name` must have exactly `want` lines.
fn still_lines(lab: &Lab, name: &str, want: &[&str], d: &Daemon) {
    std::thread::sleep(QUIET);
    assert_eq!(lines(&lab.path(name)), want, "{name}\n{}", d.dump());
}

#[test]
fn each_hit_sent_twice_opens_once_and_a_restart_still_opens() {
    require_root!("each_hit_sent_twice_opens_once_and_a_restart_still_opens");
    let (lab, d) = serve(
        "m-twice",
        &[
            (
                "door",
                &[("Sequence", "7000,8000:udp,9000"), ("Seq_Timeout", "3")],
            ),
            ("one", &[("Sequence", "7500"), ("Seq_Timeout", "3")]),
        ],
    );
    let h = lab.server_v4().to_string();
    let c = lab.client_v4().to_string();
    let cn = lab.client_ns.clone();
    // Each hit twice, as apps that send every knock twice do.
    lab.knock(
        &cn,
        &[&h, "7000", "7000", "8000:udp", "8000:udp", "9000", "9000"],
    );
    // A one-port door hit twice (two packets, two source ports).
    lab.knock(&cn, &[&h, "7500", "7500"]);
    wait_lines(&lab.path("door"), 1, &d);
    wait_lines(&lab.path("one"), 1, &d);
    still_lines(&lab, "door", &[c.as_str()], &d);
    still_lines(&lab, "one", &[c.as_str()], &d);
    assert_eq!(d.log_count("door: OPEN SESAME"), 1, "{}", d.dump());
    assert_eq!(d.log_count("one: OPEN SESAME"), 1, "{}", d.dump());
    wait_packets(&d, &c, 9000, 2);
    wait_packets(&d, &c, 7500, 2);

    // Once Seq_Timeout has passed since the opening: a partial knock, then
    // the whole sequence again, opens (once more).
    let again = poll_until(Duration::from_secs(8), || {
        lab.knock(&cn, &[&h, "7000", "8000:udp"]);
        lab.knock(&cn, &[&h, "7000", "8000:udp", "9000"]);
        wait::poll_until(Duration::from_millis(300), || {
            (lines(&lab.path("door")).len() >= 2).then_some(())
        })
    });
    assert!(
        again.is_some(),
        "the restarted knock never opened\n{}",
        d.dump()
    );
    still_lines(&lab, "door", &[c.as_str(), c.as_str()], &d);
}

#[test]
fn retransmitted_syns_of_a_firewalled_connect_client_open_once() {
    require_root!("retransmitted_syns_of_a_firewalled_connect_client_open_once");
    let (lab, d) = serve(
        "m-retrans",
        &[
            (
                "door",
                &[
                    ("Sequence", "7000,8000,9000"),
                    ("Seq_Timeout", "15"),
                    ("TCPFlags", "syn,!ack"),
                ],
            ),
            ("one", &[("Sequence", "7500"), ("Seq_Timeout", "15")]),
            ("probe", &[("Sequence", "6000")]),
        ],
    );
    // The knock ports are firewalled (DROP), as on a real server: every
    // connect() retransmits its SYN while it waits.
    sh(
        &lab,
        &lab.server_ns,
        "iptables -A INPUT -p tcp --dport 7000:9000 -j DROP",
    );
    let h = lab.server_v4().to_string();
    let c = lab.client_v4().to_string();
    let cn = lab.client_ns.clone();
    for port in ["7000", "8000", "9000", "7500"] {
        // nc -z -w 2 sends a SYN at 0 s and again at ~1 s, then gives up.
        let out = lab.run(&cn, "nc", &["-z", "-w", "2", &h, port]);
        assert!(!out.success(), "port {port} answered through the DROP");
    }
    wait_lines(&lab.path("door"), 1, &d);
    wait_lines(&lab.path("one"), 1, &d);
    still_lines(&lab, "door", &[c.as_str()], &d);
    still_lines(&lab, "one", &[c.as_str()], &d);
    for port in [7000, 8000, 9000, 7500] {
        wait_packets(&d, &c, port, 2);
    }
    assert_eq!(d.log_count("door: Stage 1"), 1, "{}", d.dump());
    assert_eq!(d.log_count("OPEN SESAME"), 2, "{}", d.dump());
    // The daemon still listens: a knock on another door opens it.
    lab.knock(&cn, &[&h, "6000"]);
    wait_lines(&lab.path("probe"), 1, &d);
}

/// A one-time file of `n` lines `k01,k02,k03` with k = 70, 71, ...
fn otp_file(lab: &Lab, name: &str, n: usize) -> std::path::PathBuf {
    let text: String = (0..n)
        .map(|i| {
            let k = 70 + i;
            format!(" {k}01,{k}02,{k}03\n")
        })
        .collect();
    let p = lab.write_file(name, &text);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Which lines of a one-time file are marked used.
fn marked(p: &Path) -> Vec<bool> {
    lines(p).iter().map(|l| l.starts_with('#')).collect()
}

/// Knock arguments for line `i` (0-based) of [`otp_file`], the first
/// `hits` hits.
fn otp_hits(h: &str, i: usize, hits: usize) -> Vec<String> {
    let k = 70 + i;
    std::iter::once(h.to_owned())
        .chain((1..=hits).map(|j| format!("{k}0{j}")))
        .collect()
}

#[test]
fn one_time_knock_with_a_lost_last_hit_then_the_next_line_opens() {
    require_root!("one_time_knock_with_a_lost_last_hit_then_the_next_line_opens");
    let lab = Lab::new("m-otplook");
    let server = otp_file(&lab, "server.otp", 6);
    let sf = server.display().to_string();
    let conf = doors(
        &lab,
        &[(
            "otp",
            &[("One_Time_Sequences", sf.as_str()), ("Seq_Timeout", "2")],
        )],
    );
    let d = lab.start_daemon(&bins::knockd(), conf.text(), &[]);
    let h = lab.server_v4().to_string();
    let c = lab.client_v4().to_string();
    let cn = lab.client_ns.clone();
    let k = |i: usize, n: usize| {
        let v = otp_hits(&h, i, n);
        lab.knock(&cn, &v.iter().map(String::as_str).collect::<Vec<_>>());
    };

    // Line 1 without its last hit (lost), then line 2: opens, and both are
    // marked used on disk.
    k(0, 2);
    d.expect_log(&format!("{c}: otp: Stage 2"));
    k(1, 3);
    wait_lines(&lab.path("otp"), 1, &d);
    assert_eq!(marked(&server)[..3], [true, true, false], "{}", d.dump());

    // Neither the skipped line nor the used one works again (the door
    // listens: line 3 opens right after).
    k(0, 3);
    k(1, 3);
    still_lines(&lab, "otp", &[c.as_str()], &d);
    k(2, 3);
    wait_lines(&lab.path("otp"), 2, &d);

    // Line 4 seen on the wire past its first hit, then expired: burnt.
    k(3, 2);
    d.expect_log(&format!("{c}: otp: sequence timeout (stage 2)"));
    let burnt = poll_until(wait::DEFAULT_TIMEOUT, || (marked(&server)[3]).then_some(()));
    assert!(burnt.is_some(), "line 4 not marked\n{}", d.dump());
    k(3, 3);
    still_lines(&lab, "otp", &[c.as_str(), c.as_str()], &d);
    // Line 5 opens.
    k(4, 3);
    wait_lines(&lab.path("otp"), 3, &d);
    assert_eq!(marked(&server), [true, true, true, true, true, false]);
    // No line of the file is ever quoted in the log.
    let log = d.log_text();
    for i in 0..6 {
        let k = 70 + i;
        assert!(
            !log.contains(&format!("{k}01")),
            "log quotes line {}:\n{log}",
            i + 1
        );
    }
    d.expect_log("otp: one-time sequence at");
}

/// Doors `guarded` (7000,8000,9000, default scan guard) and `unguarded`
/// (7100,8100,9100, `Scan_Threshold = 0`).
const SCAN_DOORS: &[Door] = &[
    (
        "guarded",
        &[("Sequence", "7000,8000,9000"), ("Seq_Timeout", "20")],
    ),
    (
        "unguarded",
        &[
            ("Sequence", "7100,8100,9100"),
            ("Seq_Timeout", "20"),
            ("Scan_Threshold", "0"),
        ],
    ),
];

/// The lab of the scan scenarios: our daemon serving [`SCAN_DOORS`], the
/// server's address `h`, and two more hosts behind the client (`c1`, `c2`:
/// the addresses of the client and the second host).
struct ScanLab {
    lab: Lab,
    d: Daemon,
    h: String,
    c1: String,
    c2: String,
    second: Host,
    third: Host,
}

impl ScanLab {
    fn new(name: &str) -> ScanLab {
        let (mut lab, d) = serve(name, SCAN_DOORS);
        let second = lab.add_client();
        let third = lab.add_client();
        ScanLab {
            h: lab.s4(),
            c1: lab.client_v4().to_string(),
            c2: second.v4.to_string(),
            lab,
            d,
            second,
            third,
        }
    }
}

/// nmap from `ns` against `host`: `kind` is `-sS` or `-sT`, `order` `-r`
/// (ascending) or nothing (random); bounded in time and retries.
fn nmap_args<'a>(kind: &'a str, ports: &'a str, host: &'a str, sequential: bool) -> Vec<&'a str> {
    let mut v = vec![
        "-n",
        "-Pn",
        kind,
        "--max-retries",
        "0",
        "--host-timeout",
        "12s",
        "-T4",
        "--max-rate",
        "4000",
        "-p",
        ports,
    ];
    if sequential {
        v.push("-r");
    }
    v.push(host);
    v
}

#[test]
fn sequential_syn_and_connect_scans_open_nothing_while_a_knock_from_elsewhere_works() {
    require_root!(
        "sequential_syn_and_connect_scans_open_nothing_while_a_knock_from_elsewhere_works"
    );
    let s = ScanLab::new("m-seqscan");
    let c3 = s.third.v4.to_string();

    // A SYN scan (raw packets) from the client, in ascending order, while
    // the third host knocks.
    let mut scan = s.lab.spawn(
        &s.lab.client_ns,
        "nmap",
        &nmap_args("-sS", "6990-9110", &s.h, true),
    );
    s.lab.knock(&s.third.ns, &[&s.h, "7000", "8000", "9000"]);
    assert!(scan
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|st| st.success()));
    // A connect scan (the kernel's own SYNs) from the second host.
    run_ok(
        &s.lab,
        &s.second.ns,
        "nmap",
        &nmap_args("-sT", "6990-9110", &s.h, true),
    );

    // The unguarded door opened to both scans (the classic behaviour: the
    // scans did deliver the door's ports in order) ...
    let unguarded = wait_lines(&s.lab.path("unguarded"), 2, &s.d);
    assert!(
        unguarded.contains(&s.c1) && unguarded.contains(&s.c2),
        "{unguarded:?}"
    );
    // ... the guarded one only to the knock.
    wait_lines(&s.lab.path("guarded"), 1, &s.d);
    still_lines(&s.lab, "guarded", &[c3.as_str()], &s.d);
    for port in [7000, 8000, 9000] {
        wait_packets(&s.d, &s.c1, port, 1);
        wait_packets(&s.d, &s.c2, port, 1);
    }
    // A scanner cannot knock for a while; others still can.
    s.lab
        .knock(&s.lab.client_ns, &[&s.h, "7000", "8000", "9000"]);
    still_lines(&s.lab, "guarded", &[c3.as_str()], &s.d);
    // The daemon listened meanwhile: the third host opens the other door.
    s.lab.knock(&s.third.ns, &[&s.h, "7100", "8100", "9100"]);
    wait_lines(&s.lab.path("unguarded"), 3, &s.d);
    let mut d = s.d;
    d.assert_running();
}

#[test]
fn random_order_scans_open_nothing() {
    require_root!("random_order_scans_open_nothing");
    let s = ScanLab::new("m-rndscan");

    run_ok(
        &s.lab,
        &s.lab.client_ns,
        "nmap",
        &nmap_args("-sS", "1-12000", &s.h, false),
    );
    run_ok(
        &s.lab,
        &s.second.ns,
        "nmap",
        &nmap_args("-sT", "6990-9110", &s.h, false),
    );
    for port in [7000, 8000, 9000] {
        wait_packets(&s.d, &s.c1, port, 1);
        wait_packets(&s.d, &s.c2, port, 1);
    }
    still_lines(&s.lab, "guarded", &[], &s.d);
    // The daemon listens: a knock from a third host opens.
    s.lab.knock(&s.third.ns, &[&s.h, "7000", "8000", "9000"]);
    wait_lines(&s.lab.path("guarded"), 1, &s.d);
    assert_eq!(lines(&s.lab.path("guarded")), [s.third.v4.to_string()]);
}

#[test]
fn knock_succeeds_while_the_source_uses_a_real_service() {
    require_root!("knock_succeeds_while_the_source_uses_a_real_service");
    let (lab, d) = serve("m-service", SCAN_DOORS);
    let h = lab.server_v4().to_string();
    let c = lab.client_v4().to_string();
    // A real service on 443 (answers), and the client's users connect to
    // it and to a few closed ports, again and again, during the knock.
    let _service = lab.spawn(
        &lab.server_ns,
        "socat",
        &["TCP-LISTEN:443,fork,reuseaddr", "SYSTEM:echo hello"],
    );
    let ready = poll_until(wait::DEFAULT_TIMEOUT, || {
        lab.run(&lab.client_ns, "nc", &["-z", "-w", "1", &h, "443"])
            .success()
            .then_some(())
    });
    assert!(ready.is_some(), "socat did not listen");
    let traffic = format!(
        "for i in $(seq 1 60); do for p in 443 80 22 25 993 443; do nc -z -w 1 {h} $p; sleep 0.03; done; done"
    );
    let mut users = lab.spawn(&lab.client_ns, "sh", &["-c", &traffic]);
    // The traffic runs before, during and after the knock, and the daemon
    // sees it (the filter passes every connection attempt).
    wait_packets(&d, &c, 993, 2);
    let before = packets(&d, &c, 443);
    lab.knock(&lab.client_ns, &["-d", "300", &h, "7000", "8000", "9000"]);
    wait_lines(&lab.path("guarded"), 1, &d);
    assert_eq!(lines(&lab.path("guarded")), [c.as_str()]);
    wait_packets(&d, &c, 443, before + 4);
    users.kill();
}

#[test]
fn a_slow_knock_survives_a_spoofed_flood_on_another_door() {
    require_root!("a_slow_knock_survives_a_spoofed_flood_on_another_door");
    let (lab, d) = serve(
        "m-flood",
        &[
            (
                "slow",
                &[("Sequence", "7000,8000,9000"), ("Seq_Timeout", "60")],
            ),
            (
                "flooded",
                &[("Sequence", "5555,6666"), ("Seq_Timeout", "60")],
            ),
        ],
    );
    let h = lab.s4();
    let c = lab.client_v4().to_string();
    // 120,000 spoofed sources (more than the 65,536 attempts kept), one
    // first hit each, paced so that a loaded machine decodes them all,
    // bounded in packets and seconds; each flood from its own network.
    let flood_once = |src_net: &str| {
        lab.run_flood(&Flood {
            port: "5555",
            sources: 120_000,
            src_net,
            count: 120_000,
            seconds: 10,
            pps: Some(20_000),
        })
    };
    lab.knock(&lab.client_ns, &[&h, "7000"]);
    d.expect_log(&format!("{c}: slow: Stage 1"));
    flood_once("198.18.0.0/15");
    lab.knock(&lab.client_ns, &[&h, "8000"]);
    d.expect_log(&format!("{c}: slow: Stage 2"));
    flood_once("10.0.0.0/12");
    lab.knock(&lab.client_ns, &[&h, "9000"]);
    wait_lines(&lab.path("slow"), 1, &d);
    assert_eq!(lines(&lab.path("slow")), [c.as_str()]);
    // The flood did fill the attempt table: attempts were evicted.
    let evicted = d
        .proc
        .output_text()
        .lines()
        .filter(|l| l.contains("flooded: attempt at stage 1 evicted"))
        .count();
    assert!(
        evicted > 0,
        "the flood never reached the cap\n{}",
        d.log_text()
    );
}
