//! Flood hygiene and idle behaviour of our `knockd` (`docs/DECISIONS.md`,
//! "Log volume under a flood" and "Idle"):
//!
//! * a bounded flood of spoofed first knocks (the benchmark's `knock-flood`)
//!   leaves a small log: per-packet lines stop after the rate limiter's
//!   burst, a summary line counts the rest, and a legitimate knock during
//!   the flood still opens and is logged (`OPEN SESAME` is never left out);
//!   the last summary is written at shut-down; the count is exact, and `-D`
//!   still shows every left-out line;
//! * an idle daemon, woken only by notifications, picks up an address added
//!   to its interface, a one-time file appended to, and the same file
//!   deleted and created again; after `SIGHUP` it watches the new
//!   configuration's files.
//!
//! Every test runs in a throw-away namespace lab (root only). Every flood is
//! bounded in packets and seconds and goes only to the lab's server.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use knockd::ratelimit::{BURST, WINDOW};
use netns_tests::scenario::{
    flood_report_field, knock_until, knock_until_lines, lines, wait_lines, Flood,
};
use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, require_root, Conf, Daemon, Lab};
use nix::sys::signal::Signal;

/// Stop the daemon with SIGTERM and wait for it to exit.
fn stop(d: &mut Daemon) {
    d.signal(Signal::SIGTERM);
    let st = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(
        st.is_some_and(|s| s.success()),
        "daemon did not exit cleanly on SIGTERM: {st:?}\n{}",
        d.dump()
    );
}

/// `DOOR: N similar lines left out in the last S s (KIND)` lines of `text`
/// for `door` and `kind`: their counts.
fn left_out(text: &str, door: &str, kind: &str) -> Vec<u64> {
    let head = format!("] {door}: ");
    let tail = format!(" ({kind})");
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find(&head)? + head.len()..];
            let rest = rest.strip_suffix(&tail)?;
            let (n, what) = rest.split_once(' ')?;
            what.starts_with("similar lines left out in the last ")
                .then(|| n.parse().ok())?
        })
        .collect()
}

#[test]
fn spoofed_flood_keeps_the_log_small_and_loses_no_knock() {
    require_root!("spoofed_flood_keeps_the_log_small_and_loses_no_knock");
    let lab = Lab::new("f-flood");
    let (opens, cmd) = lab.appending("opens");
    let extra = [("Seq_Timeout", "2"), ("TCPFlags", "syn")];
    let conf = Conf::new(&[]).door_cmd("flooded", "7000,8000,9000", &cmd, &extra);
    let began = Instant::now();
    let mut d = lab.our_daemon(&conf);
    // Bounded: at most 400,000 SYNs and 8 s, all to the lab's server.
    let mut flood = lab.spawn_flood(&Flood {
        port: "7000",
        sources: 50_000,
        src_net: "198.18.0.0/15",
        count: 400_000,
        seconds: 8,
        pps: None,
    });
    // The flood is under way once the burst of Stage lines is used up.
    let burst = BURST as usize;
    let flooding = poll_until(DEFAULT_TIMEOUT, || {
        (d.log_count(": flooded: Stage 1") >= burst).then_some(())
    });
    assert!(
        flooding.is_some(),
        "the flood never reached the daemon\n{}\n{}",
        d.dump(),
        flood.output_text()
    );
    assert!(
        flood.is_running(),
        "the flood ended too early: {}",
        flood.output_text()
    );

    // A legitimate knock during the flood opens the door.
    let opened = knock_until(&opens, Duration::from_secs(6), || {
        lab.knock_server(&["7000", "8000", "9000"]);
    });
    assert!(opened, "no knock opened during the flood\n{}", d.dump());
    let knocker = lab.client_v4().to_string();
    assert_eq!(lines(&opens)[0], knocker);
    let flooding_while_opened = flood.is_running();

    let st = flood.wait_exit(Duration::from_secs(20));
    assert!(
        st.is_some_and(|s| s.success()),
        "knock-flood failed: {st:?} {}",
        flood.output_text()
    );
    let report = flood.output_text();
    let sent =
        flood_report_field(&report, "sent").unwrap_or_else(|| panic!("no sent= in {report:?}"));
    stop(&mut d);
    let elapsed = began.elapsed();

    let log = d.log_text();
    let windows = 1 + (elapsed.as_secs() / WINDOW.as_secs()) as usize;
    // OPEN SESAME (never left out), start-up and shut-down are there.
    assert!(
        log.contains(&format!("{knocker}: flooded: OPEN SESAME")),
        "{}",
        d.dump()
    );
    assert!(log.contains("starting up, listening on"));
    assert!(
        log.contains(&format!("flooded: running command: echo {knocker} >> ")),
        "the command line is missing\n{}",
        d.dump()
    );
    assert!(
        log.lines()
            .last()
            .unwrap_or("")
            .ends_with("] shutting down"),
        "shutting down is not the last line\n{}",
        d.dump()
    );
    // Stage lines stop at the burst (per 60 s window); the rest is counted
    // in summary lines, the last of them written at shut-down, before
    // "shutting down".
    let stage_lines = log.matches(": flooded: Stage ").count();
    assert!(
        stage_lines <= burst * windows,
        "{stage_lines} Stage lines in {elapsed:?} (limit {burst} per {WINDOW:?})"
    );
    let stage_left_out: u64 = left_out(&log, "flooded", "Stage N").iter().sum();
    assert!(
        stage_left_out > 0,
        "no summary of left-out Stage lines\n{}",
        log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    );
    // Every flood packet is at most one Stage line; the knocker's few too.
    assert!(
        stage_left_out + stage_lines as u64 <= sent + 100,
        "{stage_left_out} + {stage_lines} Stage lines for {sent} packets"
    );
    let timeouts = log.matches(": flooded: sequence timeout").count();
    assert!(timeouts <= burst * windows, "{timeouts} timeout lines");
    // The whole log stays far below 100 KiB for a flood under a minute.
    assert!(
        log.len() < 100 * 1024,
        "log grew to {} bytes for {sent} packets",
        log.len()
    );
    // -v output (stdout) is limited the same way.
    let out = d.proc.output_text();
    assert!(out.matches(": flooded: Stage ").count() <= burst * windows);
    assert!(out.contains("similar lines left out"), "{out}");
    eprintln!(
        "flood: {sent} packets, log {} bytes, {stage_lines} Stage lines written, \
         {stage_left_out} left out, {timeouts} timeout lines, opened while flooding: \
         {flooding_while_opened}",
        log.len()
    );
}

/// Packets the kernel drops because the capture's ring is full are counted
/// in the log, so an administrator knows knocks may have been missed: the
/// daemon is stopped while a bounded flood far larger than its 1 MiB ring
/// arrives, then continued.
#[test]
fn kernel_drops_are_logged_with_their_count() {
    require_root!("kernel_drops_are_logged_with_their_count");
    let lab = Lab::new("f-drops");
    let opens = lab.path("opens");
    let conf = lab.one_door_appending("opens", "7000,8000,9000", &[("Seq_Timeout", "2")]);
    let mut d = lab.our_daemon(&conf);
    d.signal(Signal::SIGSTOP);
    // Bounded: 60,000 SYNs within 10 s; a frame takes well over 17 bytes
    // of the ring, so most of them cannot fit.
    let report = lab.run_flood(&Flood {
        port: "7000",
        sources: 1000,
        src_net: "198.18.0.0/15",
        count: 60_000,
        seconds: 10,
        pps: None,
    });
    let sent =
        flood_report_field(&report, "sent").unwrap_or_else(|| panic!("no sent= in {report:?}"));
    d.signal(Signal::SIGCONT);
    let needle = " packets dropped by the kernel (the capture buffer was full)";
    let line = poll_until(DEFAULT_TIMEOUT, || {
        d.log_text()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no drop count for {sent} packets\n{}", d.dump()));
    let dropped: u64 = line
        .split(needle)
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(line.contains(&format!("] {}: ", lab.server_if)), "{line}");
    assert!(
        dropped > 0 && dropped <= sent,
        "{dropped} dropped of {sent} sent: {line}"
    );
    eprintln!("kernel drops: {dropped} of {sent} packets sent while stopped");
    // Still listening: a knock opens.
    knock_until_lines(&opens, 1, &d, || {
        lab.knock_server(&["7000", "8000", "9000"])
    });
    stop(&mut d);
}

/// Put the one-time sequence `seq` (`P1,P2,P3`) into a watched file with
/// `write` (given the file's line), then knock it until `opens` has `n`
/// lines: the idle daemon noticed the change.
fn written_sequence_opens(
    lab: &Lab,
    d: &Daemon,
    opens: &Path,
    n: usize,
    seq: &str,
    write: impl FnOnce(&str),
) {
    write(&format!(" {seq}\n"));
    let ports: Vec<&str> = seq.split(',').collect();
    knock_until_lines(opens, n, d, || lab.knock_server(&ports));
}

#[test]
fn idle_daemon_notices_new_addresses_and_one_time_file_changes() {
    require_root!("idle_daemon_notices_new_addresses_and_one_time_file_changes");
    let lab = Lab::new("f-idle");
    let otp = lab.write_file("door.otp", " 7100,8100,9100\n");
    let (addr_opens, addr_cmd) = lab.appending("addr-opens");
    let (otp_opens, otp_cmd) = lab.appending("otp-opens");
    let conf = Conf::new(&[])
        .door_cmd("addr", "7000,8000,9000", &addr_cmd, &[])
        .otp_door_cmd("otp", &otp, &otp_cmd, &[]);
    let d = lab.our_daemon(&conf);

    // An address added to the interface while idle: the daemon hears of it
    // (rtnetlink) and logs the new set within a second, and it is matched.
    let new_addr = format!("10.200.{}.9", lab.net);
    let before = d.proc.output_text().matches("addresses now").count();
    lab.run(
        &lab.server_ns,
        "ip",
        &[
            "addr",
            "add",
            &format!("{new_addr}/24"),
            "dev",
            &lab.server_if,
        ],
    )
    .assert_success();
    let seen = poll_until(Duration::from_secs(1), || {
        let out = d.proc.output_text();
        out.lines()
            .filter(|l| l.contains("addresses now"))
            .nth(before)
            .filter(|l| l.contains(&new_addr))
            .map(str::to_owned)
    });
    assert!(
        seen.is_some(),
        "the new address was not picked up within 1 s\n{}",
        d.dump()
    );
    let opened = knock_until(&addr_opens, DEFAULT_TIMEOUT, || {
        lab.knock(&lab.client_ns, &[&new_addr, "7000", "8000", "9000"]);
    });
    assert!(
        opened,
        "a knock to the new address did not open\n{}",
        d.dump()
    );

    // The one-time file: use its only line up.
    lab.knock_server(&["7100", "8100", "9100"]);
    wait_lines(&otp_opens, 1, &d);

    // Appended to while idle: the new line works.
    written_sequence_opens(&lab, &d, &otp_opens, 2, "7200,8200,9200", |line| {
        let mut f = fs::OpenOptions::new().append(true).open(&otp).unwrap();
        std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
    });

    // Deleted and created again (a new inode in the watched directory).
    written_sequence_opens(&lab, &d, &otp_opens, 3, "7300,8300,9300", |line| {
        fs::remove_file(&otp).unwrap();
        fs::write(&otp, line).unwrap();
    });
    assert!(lines(&otp)[0].starts_with('#'), "{}", d.dump());
}

#[test]
fn sighup_watches_the_one_time_files_of_the_new_configuration() {
    require_root!("sighup_watches_the_one_time_files_of_the_new_configuration");
    let lab = Lab::new("f-hupwatch");
    let (opens, cmd) = lab.appending("opens");
    let door = |file: &std::path::Path| Conf::new(&[]).otp_door_cmd("otp", file, &cmd, &[]);
    let first = lab.write_file("first.otp", " 7100,8100,9100\n");
    let mut d = lab.our_daemon(&door(&first));

    // The new configuration's file lives in another directory and is empty.
    let other_dir = lab.create_dir("other");
    let second = other_dir.join("second.otp");
    fs::write(&second, "").unwrap();
    fs::write(&d.conf, door(&second).text()).unwrap();
    d.signal(Signal::SIGHUP);
    d.expect_log("configuration reloaded");

    // Filled while idle: noticed through the new watch.
    written_sequence_opens(&lab, &d, &opens, 1, "7200,8200,9200", |line| {
        fs::write(&second, line).unwrap()
    });
    // The old file no longer counts.
    assert!(lines(&first)[0].starts_with(' '), "{}", d.dump());
}

#[test]
fn left_out_lines_are_counted_exactly_and_shown_with_debug() {
    require_root!("left_out_lines_are_counted_exactly_and_shown_with_debug");
    let lab = Lab::new("f-exact");
    let (opens, cmd) = lab.appending("opens");
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000,9000", &cmd, &[]);
    let mut d = lab.start_daemon(&bins::knockd(), conf.text(), &["-D"]);
    let h = lab.server_v4().to_string();
    let c = lab.client_v4().to_string();
    // One process sends the first port then the last, BURST + 50 times: the
    // last port fails the knock (a repeated first port alone would be a
    // duplicate), so each first port starts a new knock with a `Stage 1`
    // line.
    let extra = 50;
    let total = BURST as usize + extra;
    let mut args = vec![h.as_str()];
    args.extend((0..total).flat_map(|_| ["7000", "9000"]));
    lab.knock(&lab.client_ns, &args);
    // -D shows every left-out line; the log has the burst.
    let left_out_debug = format!("{c}: door: Stage 1 (left out of the log: rate limit)");
    let shown = poll_until(DEFAULT_TIMEOUT, || {
        (d.proc.output_text().matches(&left_out_debug).count() >= extra).then_some(())
    });
    assert!(
        shown.is_some(),
        "left-out lines not shown with -D\n{}",
        d.dump()
    );
    // A completing knock proves the daemon kept listening; OPEN SESAME is
    // written although Stage lines are being left out.
    lab.knock_server(&["7000", "8000", "9000"]);
    netns_tests::expect_file(&opens, &d);
    stop(&mut d);
    let log = d.log_text();
    assert_eq!(
        log.matches(&format!("{c}: door: Stage 1\n")).count(),
        BURST as usize,
        "{}",
        d.dump()
    );
    // The completing knock's three Stage lines (Stage 1 to 3, then OPEN
    // SESAME) were left out too; the summary at shut-down counts them with
    // the rest.
    assert_eq!(
        d.proc.output_text().matches(&left_out_debug).count(),
        extra + 1
    );
    assert_eq!(
        left_out(&log, "door", "Stage N"),
        [extra as u64 + 3],
        "{}",
        d.dump()
    );
    assert!(log.contains(&format!("{c}: door: OPEN SESAME")));
}
