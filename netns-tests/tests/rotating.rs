//! End-to-end scenarios of rotating sequences (`knockd.conf(5)`) in network
//! namespaces: a door with `Sequence_Secret`, knocked with ports derived by
//! `knock_common::rotate` (sent with `knock HOST P1 P2 P3`) or by the Python
//! reference implementation in `contrib/`.
//!
//! Windows are 30 s (the default) and the skew is 1, so a sequence derived
//! for window `T` is still accepted when a window boundary passes between the
//! derivation and the knock; every test derives its windows from the clock
//! at the moment it knocks.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knock_common::rotate::{self, Key};
use netns_tests::scenario::{lines, wait_lines, QUIET};
use netns_tests::wait::poll_until;
use netns_tests::{bins, expect_no_file, require_root, Conf, Daemon, Lab, RunOutput};
use nix::sys::signal::Signal;

const KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn key() -> Key {
    Key::parse(KEY).unwrap()
}

/// The key file in the lab directory with `mode`.
fn key_file(lab: &Lab, mode: u32) -> PathBuf {
    let p = lab.write_file("door.key", &format!("# test key\n{KEY}\n"));
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// One rotating door `ssh` whose command appends the knocker to `opened`.
fn conf(lab: &Lab, extra: &[(&str, &str)]) -> Conf {
    let key = key_file(lab, 0o600).display().to_string();
    let state = lab.path("ssh.window").display().to_string();
    let cmd = lab.append_ip("opened");
    let mut dirs = vec![
        ("Sequence_Secret", key.as_str()),
        ("Sequence_State", state.as_str()),
        ("Seq_Timeout", "5"),
        ("Start_Command", cmd.as_str()),
    ];
    dirs.extend_from_slice(extra);
    Conf::new(&[]).door("ssh", &dirs)
}

fn now_window() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rotate::window(secs, rotate::DEFAULT_PERIOD)
}

/// The ports of `door` in window `w` with the defaults, as knock arguments.
fn ports(door: &str, w: u64, bind: Option<IpAddr>) -> Vec<String> {
    rotate::derive(&key(), door, w, 3, rotate::DEFAULT_RANGE, bind)
        .iter()
        .map(u16::to_string)
        .collect()
}

/// `knock HOST PORTS...` from namespace `ns`; it must succeed.
fn knock_ports(lab: &Lab, ns: &str, host: &str, ports: &[String]) -> RunOutput {
    let mut args = vec![host];
    args.extend(ports.iter().map(String::as_str));
    lab.knock(ns, &args)
}

/// `knock SERVER_V4 PORTS...` from the client; it must succeed.
fn knock_v4(lab: &Lab, ports: &[String]) -> RunOutput {
    knock_ports(lab, &lab.client_ns, &lab.s4(), ports)
}

/// A lab named `name` with our daemon serving the door of [`conf`] with
/// `extra`.
fn serve(name: &str, extra: &[(&str, &str)]) -> (Lab, Daemon) {
    let lab = Lab::new(name);
    let d = lab.our_daemon(&conf(&lab, extra));
    (lab, d)
}

fn opened(lab: &Lab) -> PathBuf {
    lab.path("opened")
}

/// Wait until `opened` has `n` lines, then check it has no more after a
/// quiet period.
fn expect_exactly(path: &Path, n: usize, d: &Daemon) -> Vec<String> {
    let got = wait_lines(path, n, d);
    std::thread::sleep(QUIET);
    let again = lines(path);
    assert_eq!(again.len(), n, "{again:?}\n{}", d.dump());
    got
}

#[test]
fn rotating_door_opens_over_ipv4_and_ipv6() {
    require_root!("rotating_door_opens_over_ipv4_and_ipv6");
    let (lab, d) = serve("r-open", &[]);
    knock_v4(&lab, &ports("ssh", now_window(), None));
    assert_eq!(
        wait_lines(&opened(&lab), 1, &d),
        vec![lab.client_v4().to_string()]
    );
    // The same window is used: IPv6 needs the next one (knock --next).
    knock_ports(
        &lab,
        &lab.client_ns,
        &lab.s6(),
        &ports("ssh", now_window() + 1, None),
    );
    assert_eq!(
        wait_lines(&opened(&lab), 2, &d)[1],
        lab.client_v6().to_string()
    );
    // Nothing in the log shows the key or a port of the sequences.
    let log = d.log_text();
    assert!(!log.contains("JBSW"), "{log}");
    d.expect_log("ssh: OPEN SESAME");
}

#[test]
fn contrib_reference_sequence_opens() {
    require_root!("contrib_reference_sequence_opens");
    let (lab, d) = serve("r-contrib", &[]);
    let script = bins::workspace_root().join("contrib/knock_rotate.py");
    let key = lab.path("door.key");
    let out = lab.run(
        &lab.client_ns,
        "python3",
        &[
            script.display().to_string(),
            key.display().to_string(),
            "ssh".into(),
        ],
    );
    out.assert_success();
    let ports: Vec<String> = out.stdout.trim().split(',').map(str::to_owned).collect();
    assert_eq!(ports.len(), 3, "{}", out.stdout);
    knock_v4(&lab, &ports);
    wait_lines(&opened(&lab), 1, &d);
}

#[test]
fn stale_window_and_wrong_door_name_open_nothing() {
    require_root!("stale_window_and_wrong_door_name_open_nothing");
    // Nine wrong ports from one address would make it a scanner (the scan
    // guard's default threshold is 8) and refuse the closing knock; this
    // test is about the derivation alone.
    let (lab, d) = serve("r-stale", &[("Scan_Threshold", "0")]);
    let t = now_window();
    for (door, w) in [("ssh", t - 3), ("sshd", t), ("SSH", t)] {
        knock_v4(&lab, &ports(door, w, None));
    }
    expect_no_file(&opened(&lab), QUIET, &d);
    assert_eq!(d.log_count("OPEN SESAME"), 0, "{}", d.dump());
    // The daemon was listening: the right window opens.
    knock_v4(&lab, &ports("ssh", now_window(), None));
    wait_lines(&opened(&lab), 1, &d);
}

#[test]
fn replay_from_another_or_the_same_address_opens_nothing() {
    require_root!("replay_from_another_or_the_same_address_opens_nothing");
    let (mut lab, d) = serve("r-replay", &[]);
    let other = lab.add_client();
    let seq = ports("ssh", now_window(), None);
    knock_v4(&lab, &seq);
    wait_lines(&opened(&lab), 1, &d);
    // The same packets again, from another address and from the same one.
    knock_ports(&lab, &other.ns, &lab.s4(), &seq);
    knock_v4(&lab, &seq);
    expect_exactly(&opened(&lab), 1, &d);
    // --next right after a knock: the next window opens at once.
    let next = ports("ssh", now_window() + 1, None);
    knock_ports(&lab, &other.ns, &lab.s4(), &next);
    let got = wait_lines(&opened(&lab), 2, &d);
    assert_eq!(got[1], other.v4.to_string());
}

#[test]
fn replay_after_a_restart_opens_nothing() {
    require_root!("replay_after_a_restart_opens_nothing");
    let lab = Lab::new("r-restart");
    let conf = conf(&lab, &[]);
    let mut d = lab.our_daemon(&conf);
    let seq = ports("ssh", now_window(), None);
    knock_v4(&lab, &seq);
    wait_lines(&opened(&lab), 1, &d);
    // A crash right after the command: the used window is on disk already.
    d.signal(Signal::SIGKILL);
    d.proc.wait_exit(Duration::from_secs(5));
    let d2 = lab.our_daemon(&conf);
    knock_v4(&lab, &seq);
    expect_exactly(&opened(&lab), 1, &d2);
    knock_v4(&lab, &ports("ssh", now_window() + 1, None));
    wait_lines(&opened(&lab), 2, &d2);
    // SIGHUP keeps it too.
    let mut d2 = d2;
    d2.signal(Signal::SIGHUP);
    d2.expect_log("configuration reloaded");
    knock_v4(&lab, &ports("ssh", now_window() + 1, None));
    expect_exactly(&opened(&lab), 2, &d2);
}

#[test]
fn bind_source_sequence_for_another_address_opens_nothing() {
    require_root!("bind_source_sequence_for_another_address_opens_nothing");
    let (lab, d) = serve("r-bind", &[("Sequence_Bind_Source", "yes")]);
    let elsewhere: IpAddr = "192.0.2.99".parse().unwrap();
    knock_v4(&lab, &ports("ssh", now_window(), Some(elsewhere)));
    knock_v4(&lab, &ports("ssh", now_window(), None));
    expect_no_file(&opened(&lab), QUIET, &d);
    let me = IpAddr::V4(lab.client_v4());
    knock_v4(&lab, &ports("ssh", now_window(), Some(me)));
    assert_eq!(
        wait_lines(&opened(&lab), 1, &d),
        vec![lab.client_v4().to_string()]
    );
    // And over IPv6 with the client's IPv6 address, in the next window.
    let me6 = IpAddr::V6(lab.client_v6());
    knock_ports(
        &lab,
        &lab.client_ns,
        &lab.s6(),
        &ports("ssh", now_window() + 1, Some(me6)),
    );
    wait_lines(&opened(&lab), 2, &d);
}

#[test]
fn world_readable_key_is_refused_by_check_and_at_start_up() {
    require_root!("world_readable_key_is_refused_by_check_and_at_start_up");
    let lab = Lab::new("r-perm");
    let conf = conf(&lab, &[]);
    let key = key_file(&lab, 0o644);
    let conf_path = lab.write_file("check.conf", conf.text());
    let out = lab.run(
        &lab.server_ns,
        bins::knockd(),
        &[
            "--check".to_string(),
            "-c".into(),
            conf_path.display().to_string(),
        ],
    );
    assert!(!out.success(), "{}", out.stdout);
    assert!(out.stderr.contains("group or others"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&key.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("JBSW"), "{}", out.stderr);
    let mut d = lab.spawn_daemon(&bins::knockd(), conf.text(), &[]);
    let status = d.proc.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{}",
        d.dump()
    );
    assert!(d.dump().contains("group or others"), "{}", d.dump());
}

#[test]
fn a_knock_across_a_window_boundary_is_not_lost() {
    require_root!("a_knock_across_a_window_boundary_is_not_lost");
    // Two-second windows, so that a boundary comes quickly.
    let (lab, d) = serve("r-edge", &[("Sequence_Period", "2")]);
    let window = || {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        rotate::window(secs, 2)
    };
    let t = window();
    let seq: Vec<String> = rotate::derive(&key(), "ssh", t, 3, rotate::DEFAULT_RANGE, None)
        .iter()
        .map(u16::to_string)
        .collect();
    knock_v4(&lab, &seq[..1]);
    d.expect_log("ssh: Stage 1");
    // The fact waited for: the clock entered the next window.
    poll_until(Duration::from_secs(3), || (window() > t).then_some(()))
        .expect("the window did not change within 3 s");
    knock_v4(&lab, &seq[1..]);
    wait_lines(&opened(&lab), 1, &d);
}

#[test]
fn the_used_window_is_on_disk_before_the_command_runs() {
    require_root!("the_used_window_is_on_disk_before_the_command_runs");
    let lab = Lab::new("r-order");
    let state = lab.path("ssh.window");
    // The command copies the record as it is when the command starts.
    let cmd = format!(
        "cat {} > {}",
        state.display(),
        lab.path("seen-by-command").display()
    );
    let d = lab.our_daemon(&conf(&lab, &[]).line(&format!("    Start_Command_6 = {cmd}")));
    let t = now_window();
    knock_ports(&lab, &lab.client_ns, &lab.s6(), &ports("ssh", t, None));
    let seen = netns_tests::expect_file(&lab.path("seen-by-command"), &d);
    let until: u64 = seen
        .strip_prefix("used-until ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("record {seen:?}\n{}", d.dump()));
    // The record is the end of the knocked window.
    assert_eq!(until, (t + 1) * rotate::DEFAULT_PERIOD, "{seen}");
}
