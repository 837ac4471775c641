//! End-to-end scenarios of the suite's own `knockd`, `knock` and
//! `knock-gen` in network namespaces: matching, commands, one-time
//! sequences, logging, signals and capture recovery.

use std::fs;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netns_tests::scenario::{knock_until_lines, lines, wait_lines};
use netns_tests::wait::{self, poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, expect_file, expect_no_file, frames, require_root, Conf, Daemon, Lab};
use nix::sys::signal::Signal;

/// A door `door` with `sequence` whose start and stop commands are
/// `record(lab, "start")` and `record(lab, "stop")` (each records the
/// knocker in the file of that name), `cmd_timeout` seconds apart, then
/// `extra`.
fn start_stop(
    lab: &Lab,
    record: fn(&Lab, &str) -> String,
    sequence: &str,
    cmd_timeout: &str,
    extra: &[(&str, &str)],
) -> Conf {
    let stop_cmd = record(lab, "stop");
    let mut dirs = vec![("Cmd_Timeout", cmd_timeout), ("Stop_Command", &stop_cmd)];
    dirs.extend_from_slice(extra);
    Conf::new(&[]).door_cmd("door", sequence, &record(lab, "start"), &dirs)
}

/// Our daemon with doors `alpha` and `beta` of sequences `seq_a` and
/// `seq_b`, whose commands write the knocker's address to the files `a`
/// and `b`.
fn two_doors_daemon(lab: &Lab, seq_a: &str, seq_b: &str) -> Daemon {
    let (a, b) = (lab.echo_ip("a"), lab.echo_ip("b"));
    let conf = Conf::new(&[])
        .door_cmd("alpha", seq_a, &a, &[])
        .door_cmd("beta", seq_b, &b, &[]);
    lab.our_daemon(&conf)
}

#[test]
fn tcp_syn_sequence_opens_with_client_address() {
    require_root!("tcp_syn_sequence_opens_with_client_address");
    let lab = Lab::new("s-tcp");
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[("TCPFlags", "syn")]));
    lab.knock_server(&["7000", "8000", "9000"]);
    let text = lab.expect_opened(&d);
    assert_eq!(text, format!("{}\n", lab.client_v4()), "{}", d.dump());
    let c = lab.client_v4();
    for stage in 1..=3 {
        d.expect_log(&format!("{c}: door: Stage {stage}"));
    }
    d.expect_log(&format!("{c}: door: OPEN SESAME"));
    d.expect_log(&format!("door: running command: echo {c} > "));
}

/// A run of our `knock` from the client namespace: `knock OPTIONS...
/// SERVER PORTS...` to the server's IPv4 address, or with `v6` `knock -6`
/// to its IPv6 address.
struct Knock {
    options: &'static [&'static str],
    ports: &'static [&'static str],
    v6: bool,
}

impl Knock {
    const fn v4(ports: &'static [&'static str]) -> Knock {
        Knock::v4_with(&[], ports)
    }

    const fn v4_with(options: &'static [&'static str], ports: &'static [&'static str]) -> Knock {
        Knock {
            options,
            ports,
            v6: false,
        }
    }

    const fn v6(ports: &'static [&'static str]) -> Knock {
        Knock {
            options: &[],
            ports,
            v6: true,
        }
    }

    fn send(&self, lab: &Lab) {
        if self.v6 {
            lab.knock_server6(self.ports);
        } else {
            lab.knock_server_with(self.options, self.ports);
        }
    }
}

/// A one-door scenario: the door (`sequence`, `extra` directives, daemon
/// started with `daemon_args`), knocks that must not open it (after them
/// the log has no `unseen` line), then the knock that opens it with the
/// knocker's address.
struct Opening {
    lab_name: &'static str,
    sequence: &'static str,
    extra: &'static [(&'static str, &'static str)],
    daemon_args: &'static [&'static str],
    ignored: &'static [Knock],
    unseen: &'static str,
    opens: Knock,
}

const OPENINGS: &[Opening] = &[
    Opening {
        lab_name: "s-udp",
        sequence: "7001:udp,7002:udp,7003:udp",
        extra: &[],
        daemon_args: &[],
        ignored: &[],
        unseen: "OPEN SESAME",
        opens: Knock::v4_with(&["-u"], &["7001", "7002", "7003"]),
    },
    Opening {
        // The same ports with the wrong protocols do nothing.
        lab_name: "s-mixed",
        sequence: "7000,8000:udp,9000:tcp",
        extra: &[],
        daemon_args: &[],
        ignored: &[Knock::v4(&["7000:udp", "8000:tcp", "9000:udp"])],
        unseen: "OPEN SESAME",
        opens: Knock::v4(&["7000", "8000:udp", "9000"]),
    },
    Opening {
        // SYN hits (the default) and FIN+ACK hits are invisible to this
        // door: not even counted.
        lab_name: "s-fin",
        sequence: "7000,8000,9000",
        extra: &[("TCPFlags", "fin,!ack")],
        daemon_args: &[],
        ignored: &[
            Knock::v4(&["7000", "8000", "9000"]),
            Knock::v4_with(&["--flags", "fin,ack"], &["7000", "8000", "9000"]),
        ],
        unseen: "Stage 1",
        opens: Knock::v4_with(&["--flags", "fin"], &["7000", "8000", "9000"]),
    },
    Opening {
        // Last: 9001 is no port of the sequence, so that attempt stays at
        // stage 2 (a later 8000 would be a duplicate and 9000 would open).
        lab_name: "s-wrong",
        sequence: "7000,8000,9000",
        extra: &[],
        daemon_args: &[],
        ignored: &[
            Knock::v4(&["8000", "7000", "9000"]),
            Knock::v4(&["7000", "9000", "8000"]),
            Knock::v4(&["7001", "8000", "9000"]),
            Knock::v4(&["7000", "8000", "9001"]),
        ],
        unseen: "OPEN SESAME",
        opens: Knock::v4(&["7000", "8000", "9000"]),
    },
    Opening {
        // Without Start_Command_6 an IPv6 knock runs Start_Command.
        lab_name: "s-v6fallback",
        sequence: "7000,8000,9000",
        extra: &[],
        daemon_args: &[],
        ignored: &[],
        unseen: "OPEN SESAME",
        opens: Knock::v6(&["7000", "8000", "9000"]),
    },
    Opening {
        // A repeated first knock does not lock the knocker out.
        lab_name: "s-repeat",
        sequence: "7000,8000,9000",
        extra: &[],
        daemon_args: &[],
        ignored: &[],
        unseen: "OPEN SESAME",
        opens: Knock::v4(&["7000", "7000", "7000", "8000", "9000"]),
    },
    Opening {
        // `-4` ignores IPv6 knocks.
        lab_name: "s-only4",
        sequence: "7000,8000",
        extra: &[],
        daemon_args: &["-4"],
        ignored: &[Knock::v6(&["7000", "8000"])],
        unseen: "OPEN SESAME",
        opens: Knock::v4(&["7000", "8000"]),
    },
];

/// Each case of [`OPENINGS`] in its own lab; a failure names the case's
/// lab (`lab_name`) in its message and in the kept-files line.
#[test]
fn sequences_open_only_with_their_ports_protocols_flags_and_address_family() {
    require_root!("sequences_open_only_with_their_ports_protocols_flags_and_address_family");
    for case in OPENINGS {
        let lab = Lab::new(case.lab_name);
        let conf = lab.one_door(case.sequence, case.extra);
        let d = lab.start_daemon(&bins::knockd(), conf.text(), case.daemon_args);
        for knock in case.ignored {
            knock.send(&lab);
        }
        if !case.ignored.is_empty() {
            lab.expect_not_opened(&d);
            let seen = d.log_count(case.unseen);
            assert_eq!(
                seen,
                0,
                "{}: {:?} logged\n{}",
                case.lab_name,
                case.unseen,
                d.dump()
            );
        }
        case.opens.send(&lab);
        let knocker = if case.opens.v6 {
            lab.client_v6().to_string()
        } else {
            lab.client_v4().to_string()
        };
        let text = lab.expect_opened(&d);
        assert_eq!(text.trim(), knocker, "{}\n{}", case.lab_name, d.dump());
    }
}

#[test]
fn hits_with_non_matching_flags_neither_advance_nor_reset() {
    require_root!("hits_with_non_matching_flags_neither_advance_nor_reset");
    let lab = Lab::new("s-flagmix");
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[("TCPFlags", "fin,!ack")]));
    lab.knock_server_with(&["--flags", "fin"], &["7000"]);
    // SYN on the right port, SYN on a wrong port of the sequence, and a
    // FIN+ACK: none of them may reset the attempt.
    lab.knock_server(&["9000"]);
    lab.knock_server(&["8000"]);
    lab.knock_server_with(&["--flags", "fin,ack"], &["7000"]);
    expect_no_file(&lab.path("opened"), Duration::from_millis(300), &d);
    lab.knock_server_with(&["--flags", "fin"], &["8000", "9000"]);
    lab.expect_opened(&d);
    assert_eq!(d.log_count("Stage 1"), 1, "{}", d.dump());
}

#[test]
fn seq_timeout_expires_the_attempt() {
    require_root!("seq_timeout_expires_the_attempt");
    let lab = Lab::new("s-seqto");
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[("Seq_Timeout", "1")]));
    // 2.4 s from first to last hit with a 1 s timeout.
    lab.knock_server_with(&["-d", "1200"], &["7000", "8000", "9000"]);
    lab.expect_not_opened(&d);
    // Expiry happens without a further packet: hit two ports, wait, finish.
    let timeouts = d.log_count("door: sequence timeout");
    lab.knock_server(&["7000", "8000"]);
    d.expect_log_count("door: sequence timeout", timeouts + 1);
    lab.knock_server(&["9000"]);
    lab.expect_not_opened(&d);
    // Fast enough: opens.
    lab.knock_server_with(&["-d", "100"], &["7000", "8000", "9000"]);
    lab.expect_opened(&d);
}

#[test]
fn timeout_and_command_aliases_work() {
    // Seq_Timeout and Start_Command given through their aliases.
    require_root!("timeout_and_command_aliases_work");
    let lab = Lab::new("s-alias");
    let cmd = lab.echo_ip("opened");
    let conf = Conf::new(&[]).door(
        "door",
        &[
            ("Sequence", "7000,8000"),
            ("Timeout", "1"),
            ("Command", cmd.as_str()),
        ],
    );
    let d = lab.our_daemon(&conf);
    lab.knock_server_with(&["-d", "1500"], &["7000", "8000"]);
    lab.expect_not_opened(&d);
    lab.knock_server(&["7000", "8000"]);
    lab.expect_opened(&d);
}

#[test]
fn single_port_door_opens_on_every_knock() {
    require_root!("single_port_door_opens_on_every_knock");
    let lab = Lab::new("s-single");
    let conf = lab.one_door_appending("opened", "7000", &[("Seq_Timeout", "1")]);
    let d = lab.our_daemon(&conf);
    // Before the first knock: its opening, and the end of its stragglers'
    // Seq_Timeout, come after this.
    let t0 = Instant::now();
    lab.knock_server(&["7000"]);
    wait_lines(&lab.path("opened"), 1, &d);
    // Without a stop command the command runs on every successful knock
    // (once Seq_Timeout has passed: before, a repeat is a straggler).
    let again = poll_until(Duration::from_secs(5), || {
        lab.knock_server(&["7000"]);
        wait::poll_until(Duration::from_millis(300), || {
            (lines(&lab.path("opened")).len() >= 2).then_some(())
        })
    });
    assert!(again.is_some(), "second knock never opened\n{}", d.dump());
    assert!(t0.elapsed() >= Duration::from_secs(1), "{}", d.dump());
    let l = wait_lines(&lab.path("opened"), 2, &d);
    assert_eq!(
        l,
        [lab.client_v4().to_string(), lab.client_v4().to_string()]
    );
}

#[test]
fn stop_command_runs_after_cmd_timeout() {
    require_root!("stop_command_runs_after_cmd_timeout");
    let lab = Lab::new("s-stop");
    // Each command records when it ran (by the daemon's clock, not the
    // test's polling), and the address.
    let conf = start_stop(&lab, stamp_ip, "7000,8000,9000", "2", &[]);
    let d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000", "9000"]);
    let started = wait_stamps(&lab.path("start"), 1, &d).remove(0);
    expect_no_file(&lab.path("stop"), Duration::from_millis(1500), &d);
    let stopped = wait_stamps(&lab.path("stop"), 1, &d).remove(0);
    assert_eq!(started.1, lab.client_v4().to_string());
    assert_eq!(stopped.1, lab.client_v4().to_string());
    // Cmd_Timeout counts from the end of the start command: never earlier.
    let gap = stopped.0 - started.0;
    assert!(gap >= 2.0, "stop ran {gap:.3} s after start\n{}", d.dump());
    d.expect_log(&format!("{}: door: command timeout", lab.client_v4()));
    d.expect_log_count("door: running command: ", 2);
}

#[test]
fn knocking_an_open_door_reschedules_the_stop_instead_of_restarting() {
    require_root!("knocking_an_open_door_reschedules_the_stop_instead_of_restarting");
    let lab = Lab::new("s-resched");
    // Seq_Timeout 1: a knock more than 1 s after the opening is a new
    // knock, not a straggler of the first.
    let conf = start_stop(&lab, stamp_ip, "7000,8000", "2", &[("Seq_Timeout", "1")]);
    let d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000"]);
    let started = wait_stamps(&lab.path("start"), 1, &d)[0].0;
    // Knock again once the opening is more than Seq_Timeout old (and the
    // first stop less than a second away).
    poll_until(DEFAULT_TIMEOUT, || {
        (unix_now() >= started + 1.1).then_some(())
    })
    .expect("the clock moves");
    let second_knock = unix_now();
    lab.knock_server(&["7000", "8000"]);
    d.expect_log_count("OPEN SESAME", 2);
    let stopped = wait_stamps(&lab.path("stop"), 1, &d)[0].0;
    // Had the stop kept its first schedule it would have run about
    // `started + 2`, before `second_knock + 2`.
    assert!(
        stopped >= second_knock + 2.0,
        "stop ran {:.3} s after the second knock, not rescheduled\n{}",
        stopped - second_knock,
        d.dump()
    );
    assert_eq!(
        lines(&lab.path("start")).len(),
        1,
        "start command ran twice\n{}",
        d.dump()
    );
    // A knock after the stop opens the door again: the daemon is listening,
    // and every stop of the first opening has run before this one's stop
    // (`Cmd_Timeout` after its start) can.
    lab.knock_server(&["7000", "8000"]);
    let reopened = wait_stamps(&lab.path("start"), 2, &d)[1].0;
    let stops_of_first_opening = read_stamps(&lab.path("stop"))
        .iter()
        .filter(|(t, _)| *t < reopened + 2.0)
        .count();
    assert_eq!(
        stops_of_first_opening,
        1,
        "stop command ran twice\n{}",
        d.dump()
    );
}

/// A command that appends `SECONDS.NANOS IP` (when it ran, and for whom).
fn stamp_ip(lab: &Lab, file: &str) -> String {
    format!("echo $(date +%s.%N) %IP% >> {}", lab.path(file).display())
}

/// Wait for `n` lines written by [`stamp_ip`]; (unix time, address) each.
fn wait_stamps(path: &std::path::Path, n: usize, d: &Daemon) -> Vec<(f64, String)> {
    wait_lines(path, n, d);
    read_stamps(path)
}

/// The complete lines written by [`stamp_ip`] so far.
fn read_stamps(path: &std::path::Path) -> Vec<(f64, String)> {
    lines(path)
        .iter()
        .map(|l| {
            let (t, ip) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad stamp line {l:?}"));
            let t = t.parse().unwrap_or_else(|e| panic!("bad time {t:?}: {e}"));
            (t, ip.to_string())
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[test]
fn ip_token_is_substituted_and_nothing_else() {
    require_root!("ip_token_is_substituted_and_nothing_else");
    let lab = Lab::new("s-ipsub");
    let cmd = format!("echo '%IP% %HOST% 100%' > {}", lab.path("opened").display());
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000", &cmd, &[]);
    let d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000"]);
    let text = lab.expect_opened(&d);
    assert_eq!(
        text,
        format!("{} %HOST% 100%\n", lab.client_v4()),
        "{}",
        d.dump()
    );
}

#[test]
fn ipv6_knock_runs_start_command_6() {
    require_root!("ipv6_knock_runs_start_command_6");
    let lab = Lab::new("s-v6cmd6");
    let c4 = lab.echo_ip("v4");
    let c6 = lab.echo_ip("v6");
    let conf = Conf::new(&[]).door_cmd(
        "door",
        "7000,8000:udp,9000",
        &c4,
        &[("Start_Command_6", &c6)],
    );
    let d = lab.our_daemon(&conf);
    lab.knock_server6(&["7000", "8000:udp", "9000"]);
    let text = expect_file(&lab.path("v6"), &d);
    assert_eq!(text.trim(), lab.client_v6().to_string(), "{}", d.dump());
    d.expect_log(&format!("{}: door: OPEN SESAME", lab.client_v6()));
    expect_no_file(&lab.path("v4"), Duration::from_millis(300), &d);
    // And IPv4 runs the plain one.
    let h4 = lab.s4();
    lab.knock(&lab.client_ns, &[&h4, "7000", "8000:udp", "9000"]);
    let text = expect_file(&lab.path("v4"), &d);
    assert_eq!(text.trim(), lab.client_v4().to_string());
}

#[test]
fn empty_start_command_6_does_nothing_for_ipv6() {
    require_root!("empty_start_command_6_does_nothing_for_ipv6");
    let lab = Lab::new("s-v6empty");
    let d = lab.our_daemon(&lab.one_door("7000,8000", &[("Start_Command_6", "")]));
    lab.knock_server6(&["7000", "8000"]);
    d.expect_log(&format!("{}: door: OPEN SESAME", lab.client_v6()));
    lab.expect_not_opened(&d);
}

#[test]
fn target_directive_matches_the_target_address_only() {
    require_root!("target_directive_matches_the_target_address_only");
    let lab = Lab::new("s-target");
    let target = Ipv4Addr::new(192, 0, 2, 77);
    // The client sends packets for the target address to the server's MAC.
    lab.add_route(&lab.client_ns, target.into(), 32, lab.server_v4().into());
    let t = target.to_string();
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[("Target", &t)]));
    lab.knock_server(&["7000", "8000", "9000"]);
    lab.expect_not_opened(&d);
    lab.knock(&lab.client_ns, &[&t, "7000", "8000", "9000"]);
    let text = lab.expect_opened(&d);
    assert_eq!(text.trim(), lab.client_v4().to_string());
}

#[test]
fn two_knockers_interleaved_both_open() {
    require_root!("two_knockers_interleaved_both_open");
    let mut lab = Lab::new("s-twoknockers");
    let other = lab.add_client();
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000,9000", &lab.append_ip("opened"), &[]);
    let d = lab.our_daemon(&conf);
    let h = lab.s4();
    for port in ["7000", "8000", "9000"] {
        lab.knock_server(&[port]);
        lab.knock(&other.ns, &[&h, port]);
    }
    let mut got = wait_lines(&lab.path("opened"), 2, &d);
    got.sort();
    let mut want = vec![lab.client_v4().to_string(), other.v4.to_string()];
    want.sort();
    assert_eq!(got, want, "{}", d.dump());
}

#[test]
fn two_doors_interleaved_both_open() {
    require_root!("two_doors_interleaved_both_open");
    let lab = Lab::new("s-twodoors");
    let d = two_doors_daemon(&lab, "7000,8000,9000", "7100,8100:udp,9100");
    lab.knock_server(&["7000", "7100", "8000", "8100:udp", "9000", "9100"]);
    expect_file(&lab.path("a"), &d);
    expect_file(&lab.path("b"), &d);
    d.expect_log(&format!("{}: alpha: OPEN SESAME", lab.client_v4()));
    d.expect_log(&format!("{}: beta: OPEN SESAME", lab.client_v4()));
}

#[test]
fn sequences_sharing_a_prefix_are_independent() {
    require_root!("sequences_sharing_a_prefix_are_independent");
    let lab = Lab::new("s-prefix");
    let d = two_doors_daemon(&lab, "7000,8000,9000", "7000,8000,9100");
    lab.knock_server(&["7000", "8000", "9100"]);
    expect_file(&lab.path("b"), &d);
    expect_no_file(&lab.path("a"), Duration::from_millis(300), &d);
    fs::remove_file(lab.path("b")).unwrap();
    lab.knock_server(&["7000", "8000", "9000"]);
    expect_file(&lab.path("a"), &d);
    expect_no_file(&lab.path("b"), Duration::from_millis(300), &d);
}

/// The sequences of a one-time file, as knock arguments.
fn otp_lines(path: &std::path::Path) -> Vec<Vec<String>> {
    lines(path)
        .iter()
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn one_time_sequences_end_to_end() {
    require_root!("one_time_sequences_end_to_end");
    let lab = Lab::new("s-otp");
    let server_file = lab.path("server.otp");
    let client_file = lab.path("client.otp");
    let gen = lab.run(
        &lab.client_ns,
        bins::knock_gen(),
        &[
            "-o",
            &server_file.display().to_string(),
            "-n",
            "3",
            "-k",
            "3",
        ],
    );
    gen.assert_success();
    let original = fs::read_to_string(&server_file).unwrap();
    assert_eq!(original.lines().count(), 3, "knock-gen wrote {original:?}");
    fs::write(&client_file, &original).unwrap();
    let seqs = otp_lines(&server_file);
    let opens = lab.path("opens");
    let other = lab.echo_ip("other");
    let cmd = lab.append_ip("opens");
    let conf = Conf::new(&[])
        .otp_door_cmd("otp", &server_file, &cmd, &[("Seq_Timeout", "5")])
        .door_cmd("plain", "5000,5001", &other, &[]);
    let d = lab.our_daemon(&conf);
    let h = lab.s4();
    let cf = client_file.display().to_string();

    // First use: opens; both copies have line 1 marked used, and the
    // server's copy was marked before the command ran.
    lab.knock(&lab.client_ns, &["--otp", &cf, &h]);
    wait_lines(&opens, 1, &d);
    let marked = |p: &std::path::Path| {
        lines(p)
            .iter()
            .map(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
    };
    assert_eq!(marked(&server_file), [true, false, false], "{}", d.dump());
    assert_eq!(marked(&client_file), [true, false, false]);

    // Replay of the used sequence is refused.
    let replay: Vec<&str> = std::iter::once(h.as_str())
        .chain(seqs[0].iter().map(String::as_str))
        .collect();
    lab.knock(&lab.client_ns, &replay);

    // The next lines work, one after the other.
    lab.knock(&lab.client_ns, &["--otp", &cf, &h]);
    wait_lines(&opens, 2, &d);
    lab.knock(&lab.client_ns, &["--otp", &cf, &h]);
    wait_lines(&opens, 3, &d);
    // Packets are handled in order and OPEN SESAME is logged before the
    // command runs, so an opening by the replay would be counted by now.
    assert_eq!(
        (d.log_count("OPEN SESAME"), lines(&opens).len()),
        (3, 3),
        "a used sequence opened again\n{}",
        d.dump()
    );
    assert_eq!(marked(&server_file), [true, true, true], "{}", d.dump());

    // The client has nothing left and says so.
    let out = lab.run(&lab.client_ns, bins::knock(), &["--otp", &cf, &h]);
    assert!(
        !out.success(),
        "knock --otp on an exhausted file succeeded: {out:?}"
    );

    // The exhausted door does not open on an old sequence; the other door works.
    let replay: Vec<&str> = std::iter::once(h.as_str())
        .chain(seqs[2].iter().map(String::as_str))
        .collect();
    lab.knock(&lab.client_ns, &replay);
    lab.knock_server(&["5000", "5001"]);
    expect_file(&lab.path("other"), &d);
    assert_eq!(lines(&opens).len(), 3, "{}", d.dump());
    let mut dd = d;
    dd.assert_running();
}

#[test]
fn otp_file_appended_while_running_is_picked_up() {
    require_root!("otp_file_appended_while_running_is_picked_up");
    let lab = Lab::new("s-otpappend");
    let server_file = lab.write_file("server.otp", " 7000,8000,9000\n");
    let (opens, cmd) = lab.appending("opens");
    let conf = Conf::new(&[]).otp_door_cmd("otp", &server_file, &cmd, &[]);
    let d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000", "9000"]);
    wait_lines(&opens, 1, &d);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&server_file)
        .unwrap();
    std::io::Write::write_all(&mut f, b" 7100,8100,9100\n").unwrap();
    drop(f);
    // The daemon may need a moment to notice the new line.
    knock_until_lines(&opens, 2, &d, || {
        lab.knock_server(&["7100", "8100", "9100"])
    });
    assert_eq!(lines(&server_file)[1].as_bytes()[0], b'#', "{}", d.dump());
}

#[test]
fn sighup_with_valid_config_swaps_it_in() {
    require_root!("sighup_with_valid_config_swaps_it_in");
    let lab = Lab::new("s-hupok");
    let mut d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[]));
    // Knocked twice from one address: a short Seq_Timeout, so that the
    // second knock is no straggler of the first.
    let new_conf = lab.one_door("7100,8100,9100", &[("Seq_Timeout", "1")]);
    fs::write(&d.conf, new_conf.text()).unwrap();
    d.signal(Signal::SIGHUP);
    let new_seq = ["7100", "8100", "9100"];
    lab.expect_reopened(&d, &new_seq, "the new sequence does not open after SIGHUP");
    fs::remove_file(lab.path("opened")).unwrap();
    lab.knock_server(&["7000", "8000", "9000"]);
    lab.expect_not_opened(&d);
    // The daemon was listening: the new sequence opens again.
    lab.expect_reopened(&d, &new_seq, "the new sequence does not open again");
    d.assert_running();
}

#[test]
fn sighup_with_broken_config_keeps_the_old_one() {
    require_root!("sighup_with_broken_config_keeps_the_old_one");
    let lab = Lab::new("s-hupbad");
    let mut d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[]));
    fs::write(&d.conf, "[options]\n[door]\n    Sequence = 7100,80x,9100\n").unwrap();
    d.signal(Signal::SIGHUP);
    let said = poll_until(DEFAULT_TIMEOUT, || {
        (d.all_output()).contains("80x").then_some(())
    });
    assert!(
        said.is_some(),
        "the reload error does not name the bad value\n{}",
        d.dump()
    );
    d.assert_running();
    lab.knock_server(&["7000", "8000", "9000"]);
    lab.expect_opened(&d);
}

#[test]
fn sigterm_runs_pending_stop_commands() {
    require_root!("sigterm_runs_pending_stop_commands");
    let lab = Lab::new("s-term");
    let conf = start_stop(&lab, Lab::echo_ip, "7000,8000", "60", &[]);
    let mut d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000"]);
    expect_file(&lab.path("start"), &d);
    expect_no_file(&lab.path("stop"), Duration::from_millis(300), &d);
    d.signal(Signal::SIGTERM);
    let text = expect_file(&lab.path("stop"), &d);
    assert_eq!(text.trim(), lab.client_v4().to_string());
    let status = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(
        status.is_some(),
        "daemon still running after SIGTERM\n{}",
        d.dump()
    );
    d.expect_log("shutting down");
}

/// An outage of the server's interface: how it starts and ends, and the
/// log lines the daemon must write while it lasts.
struct Outage {
    lab_name: &'static str,
    what: &'static str,
    start: fn(&Lab),
    end: fn(&Lab),
    logged: &'static [&'static str],
}

const OUTAGES: &[Outage] = &[
    Outage {
        lab_name: "s-downup",
        what: "the interface came back",
        start: |lab| lab.set_server_link(false),
        end: |lab| lab.set_server_link(true),
        // The daemon loses the capture and fails to reopen it while the
        // link is down (said once).
        logged: &["capture lost", "; retrying"],
    },
    Outage {
        lab_name: "s-recreate",
        what: "the interface was re-created",
        start: Lab::delete_server_link,
        end: Lab::create_server_link,
        logged: &["capture lost"],
    },
];

#[test]
fn capture_recovers_after_interface_down_and_up_or_deleted_and_recreated() {
    require_root!("capture_recovers_after_interface_down_and_up_or_deleted_and_recreated");
    for outage in OUTAGES {
        let lab = Lab::new(outage.lab_name);
        let mut d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[]));
        lab.knock_server(&["7000", "8000", "9000"]);
        lab.expect_opened(&d);
        (outage.start)(&lab);
        for line in outage.logged {
            d.expect_log(line);
        }
        d.assert_running();
        (outage.end)(&lab);
        let what = format!("no knock works after {}", outage.what);
        lab.expect_reopened(&d, &["7000", "8000", "9000"], &what);
        d.assert_running();
    }
}

#[test]
fn malformed_packets_do_not_kill_the_daemon() {
    require_root!("malformed_packets_do_not_kill_the_daemon");
    let lab = Lab::new("s-malformed");
    let mut d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[]));
    let all = frames::malformed_frames(
        lab.client_v4(),
        lab.server_v4(),
        lab.client_v6(),
        lab.server_v6(),
        7000,
    );
    let n = all.len();
    let sent = frames::send_frames(&lab.client_ns, &lab.client_if, all, 3)
        .unwrap_or_else(|e| panic!("sending malformed frames: {e:#}"));
    assert_eq!(sent, 3 * n);
    // The knock after the frames is handled after them: when it has opened
    // the door, the daemon has survived all of them and none opened it.
    lab.knock_server(&["7000", "8000", "9000"]);
    lab.expect_opened(&d);
    d.assert_running();
    assert_eq!(d.log_count("OPEN SESAME"), 1, "{}", d.dump());
}

#[test]
fn ipv6_knock_behind_extension_headers_is_seen() {
    require_root!("ipv6_knock_behind_extension_headers_is_seen");
    let lab = Lab::new("s-v6ext");
    let d = lab.our_daemon(&lab.one_door("7000,8000,9000", &[]));
    let hits = [7000, 8000, 9000]
        .into_iter()
        .map(|p| {
            let f = frames::ipv6_tcp_with_ext_headers(lab.client_v6(), lab.server_v6(), p, 0x02);
            ("SYN behind hop-by-hop and destination options", f)
        })
        .collect();
    frames::send_frames(&lab.client_ns, &lab.client_if, hits, 1)
        .unwrap_or_else(|e| panic!("sending frames: {e:#}"));
    let text = lab.expect_opened(&d);
    assert_eq!(text.trim(), lab.client_v6().to_string());
}

/// `[YYYY-MM-DD HH:MM] ` at the start of `line`.
fn has_classic_stamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    b.len() > 19
        && b[0] == b'['
        && (1..5).all(digit)
        && b[5] == b'-'
        && (6..8).all(digit)
        && b[8] == b'-'
        && (9..11).all(digit)
        && b[11] == b' '
        && (12..14).all(digit)
        && b[14] == b':'
        && (15..17).all(digit)
        && b[17] == b']'
        && b[18] == b' '
}

#[test]
fn log_file_has_classic_format_and_messages() {
    require_root!("log_file_has_classic_format_and_messages");
    let lab = Lab::new("s-logformat");
    let mut d = lab.our_daemon(&lab.one_door("7000,8000", &[]));
    lab.knock_server(&["7000", "8000"]);
    lab.expect_opened(&d);
    d.signal(Signal::SIGTERM);
    d.proc.wait_exit(DEFAULT_TIMEOUT);
    let text = d.log_text();
    let c = lab.client_v4();
    for needle in [
        format!("] starting up, listening on {}", lab.server_if),
        format!("] {c}: door: Stage 1"),
        format!("] {c}: door: Stage 2"),
        format!("] {c}: door: OPEN SESAME"),
        format!("] door: running command: echo {c} > "),
        "] shutting down".to_owned(),
    ] {
        assert!(text.contains(&needle), "log lacks {needle:?}\n{}", d.dump());
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            has_classic_stamp(line),
            "line without [YYYY-MM-DD HH:MM]: {line:?}\n{}",
            d.dump()
        );
    }
    let today = chrono_free_today();
    assert!(
        text.starts_with(&format!("[{today}")),
        "log date is not today ({today})\n{}",
        d.dump()
    );
}

/// Today's date `YYYY-MM-DD` in local time, from `date` (no extra crate).
fn chrono_free_today() -> String {
    let out = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn daemon_mode_writes_and_removes_the_pid_file() {
    require_root!("daemon_mode_writes_and_removes_the_pid_file");
    let lab = Lab::new("s-pidfile");
    let pidfile = lab.path("knockd.pid");
    let pf = pidfile.display().to_string();
    let mut d = lab.spawn_daemon(
        &bins::knockd(),
        lab.one_door("7000,8000", &[]).text(),
        &["-d", "-p", &pf],
    );
    let st = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(
        st.is_some_and(|s| s.success()),
        "knockd -d did not detach with status 0: {st:?}\n{}",
        d.dump()
    );
    let pid_text = wait::wait_for_file(&pidfile, DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.dump()));
    let pid: i32 = pid_text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file holds {pid_text:?}"));
    let pid = nix::unistd::Pid::from_raw(pid);
    assert!(
        netns_tests::proc::pids_in_ns(&lab.server_ns).contains(&pid),
        "pid {pid} from the pid file is not a process in the server namespace"
    );
    wait::wait_for_log(&d.log, "listening on", DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.dump()));
    lab.knock_server(&["7000", "8000"]);
    lab.expect_opened(&d);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let gone = poll_until(DEFAULT_TIMEOUT, || {
        (!pidfile.exists() && !std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "pid file not removed or daemon still alive after SIGTERM\n{}",
        d.dump()
    );
}

#[test]
fn failing_command_status_is_logged() {
    require_root!("failing_command_status_is_logged");
    let lab = Lab::new("s-cmdfail");
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000", "exit 3", &[]);
    let d = lab.our_daemon(&conf);
    lab.knock_server(&["7000", "8000"]);
    d.expect_log("door: command returned non-zero status code (3)");
}

#[test]
fn invalid_config_fails_at_start_naming_the_line() {
    require_root!("invalid_config_fails_at_start_naming_the_line");
    let lab = Lab::new("s-badconf");
    // knockd does not accept the bad configuration.
    let conf = "[options]\n[door]\n    Sequence = 7000,70000\n";
    let d = lab.our_daemon_fails(Some(&lab.server_if), conf, &[]);
    let out = d.proc.output_text();
    assert!(
        out.contains(":3") && out.contains("70000"),
        "error does not name line 3 and the port: {out}"
    );
}
