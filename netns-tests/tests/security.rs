//! Security properties of the daemon, end to end in network namespaces:
//! what a command inherits, how much a storm of completed knocks may cost,
//! what `-l` asks the resolver, and which files the daemon refuses to write
//! (see SECURITY.md, one test per threat).

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use knock_testkit::frames as kit;
use netns_tests::proc::{kill_all_in_ns, pids_in_ns};
use netns_tests::scenario::{knock_until_lines, wait_lines};
use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, frames, require_root, Conf, Daemon, Lab};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NOBODY: u32 = 65534;

/// Start our daemon in the server namespace as `knockd -i IF -c CONF -v
/// ARGS...` through `sh -c 'REDIRECTS exec knockd ...'` (so a test can
/// hand it extra descriptors). No `-g` unless `args` has one; `log` is the
/// file the returned [`Daemon`] reads as its log.
fn spawn_with(lab: &Lab, conf: &Conf, redirects: &str, args: &[&str], log: &Path) -> Daemon {
    let id = lab.unique("knockd");
    let conf_path = lab.write_file(&format!("{id}.conf"), conf.text());
    let mut line = format!(
        "{redirects} exec {} -i {} -c {} -v",
        bins::knockd().display(),
        lab.server_if,
        conf_path.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let proc = lab.spawn(&lab.server_ns, "sh", &["-c", &line]);
    Daemon {
        proc,
        log: log.to_owned(),
        conf: conf_path,
        pidfile: lab.path(&format!("{id}.pid")),
    }
}

/// Wait for `needle` in the daemon's stdout/stderr.
fn expect_output(d: &Daemon, needle: &str) {
    let seen = poll_until(DEFAULT_TIMEOUT, || {
        d.proc.output_text().contains(needle).then_some(())
    });
    assert!(seen.is_some(), "no {needle:?} in the output\n{}", d.dump());
}

/// The descriptors open in process `pid`, by number.
fn open_fds(pid: i32) -> BTreeSet<i32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Where each descriptor of `pid` points, for messages.
fn describe_fds(pid: i32) -> String {
    open_fds(pid)
        .into_iter()
        .map(|fd| {
            let to = fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{fd} -> {to}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A door whose command writes its shell's pid to `cmdpid`, then becomes
/// `sleep` (same process, same descriptors): the test reads that process's
/// descriptor table from outside, so no listing of its own gets counted.
fn fd_probe_door(lab: &Lab) -> (Conf, PathBuf) {
    let cmdpid = lab.path("cmdpid");
    let cmd = format!("echo $$ > {}; exec sleep 10", cmdpid.display());
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000", &cmd, &[("Seq_Timeout", "5")]);
    (conf, cmdpid)
}

/// Knock the probe door open and check the descriptors of its command once
/// it has become `sleep`: only 0, 1 and 2. The command is ended afterwards.
fn expect_command_has_only_std_fds(lab: &Lab, d: &Daemon, cmdpid: &Path) {
    lab.knock_server(&["7000", "8000"]);
    let pid: i32 = poll_until(DEFAULT_TIMEOUT, || {
        let text = fs::read_to_string(cmdpid).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(pid)
    })
    .unwrap_or_else(|| panic!("the command did not start\n{}", d.dump()));
    let fds = open_fds(pid);
    let described = describe_fds(pid);
    // The test's own command (a child of the daemon it started).
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    assert_eq!(
        fds,
        BTreeSet::from([0, 1, 2]),
        "the command inherited more: {described}\n{}",
        d.dump()
    );
}

#[test]
fn command_inherits_only_stdin_stdout_and_stderr() {
    require_root!("command_inherits_only_stdin_stdout_and_stderr");
    let lab = Lab::new("sec-fds");
    let (conf, cmdpid) = fd_probe_door(&lab);
    // The daemon holds a capture socket (libpcap opens it without
    // close-on-exec), a log file and a signal pipe at this point.
    let d = lab.start_daemon(&bins::knockd(), conf.text(), &[]);
    expect_command_has_only_std_fds(&lab, &d, &cmdpid);
}

#[test]
fn descriptor_inherited_by_the_daemon_does_not_reach_a_command() {
    require_root!("descriptor_inherited_by_the_daemon_does_not_reach_a_command");
    let lab = Lab::new("sec-inherit");
    let (conf, cmdpid) = fd_probe_door(&lab);
    let extra = lab.path("left-open-by-the-shell");
    let log = lab.path("knockd.log");
    // Descriptor 7 stays open across `exec`, as a careless start script
    // would leave it.
    let redirects = format!("exec 7>>{};", extra.display());
    let mut d = spawn_with(
        &lab,
        &conf,
        &redirects,
        &["-g", &log.display().to_string()],
        &log,
    );
    d.wait_ready();
    // The daemon really has it...
    let daemon = pids_in_ns(&lab.server_ns)
        .into_iter()
        .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "knockd"))
        .expect("the daemon's pid");
    assert_eq!(
        fs::read_link(format!("/proc/{daemon}/fd/7")).ok(),
        Some(extra.clone()),
        "descriptor 7 did not reach the daemon: {}",
        describe_fds(daemon.as_raw())
    );
    // ... and its command does not.
    expect_command_has_only_std_fds(&lab, &d, &cmdpid);
}

/// An Ethernet frame with an IPv4 TCP SYN from `src` to `dst:port`, with
/// correct checksums.
fn syn_frame(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let syn = kit::Tcp {
        src_port: 12345,
        ..kit::Tcp::new(port, 0x02)
    }
    .build();
    kit::ethernet(
        kit::ETHERTYPE_IPV4,
        &[],
        &kit::ipv4(src, dst, kit::IPPROTO_TCP, &syn),
    )
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Knocks completed from this many spoofed sources (bounded: one frame each).
const STORM: u32 = 4000;
/// Spoofed knocks sent at once (well within the capture buffer).
const STORM_BURST: usize = 500;

#[test]
fn storm_of_completed_knocks_keeps_queue_memory_and_log_bounded() {
    require_root!("storm_of_completed_knocks_keeps_queue_memory_and_log_bounded");
    let lab = Lab::new("sec-storm");
    // One hit completes the door; each command holds its slot for 20 s, so
    // the 64 slots fill, then the queue of 1024, then knocks are dropped.
    let conf = Conf::new(&[]).door_cmd("storm", "7000", "sleep 20", &[("Seq_Timeout", "5")]);
    let mut d = lab.start_daemon(&bins::knockd(), conf.text(), &[]);
    let pid = d.proc.pid().unwrap().as_raw();
    let before = rss_kib(pid);
    let frames: Vec<(&'static str, Vec<u8>)> = (0..STORM)
        .map(|i| {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + i);
            (
                "spoofed completed knock",
                syn_frame(src, lab.server_v4(), 7000),
            )
        })
        .collect();
    // Sent in bursts of STORM_BURST, each once the daemon has seen the
    // previous one, so the capture buffer never overflows and every knock
    // is counted: every completed knock is seen (OPEN SESAME is never left
    // out)...
    let mut sent = 0;
    for burst in frames.chunks(STORM_BURST) {
        sent += frames::send_frames(&lab.client_ns, &lab.client_if, burst.to_vec(), 1)
            .unwrap_or_else(|e| panic!("sending the storm: {e:#}"));
        if let Err(e) = netns_tests::wait::wait_for_log_count(
            &d.log,
            "storm: OPEN SESAME",
            sent,
            Duration::from_secs(30),
        ) {
            panic!("{e}\n{}", d.dump());
        }
    }
    assert_eq!(sent as u32, STORM);
    // ... but only the 64 slots' commands run, 1024 wait, the rest is
    // dropped, and that is said once, not thousands of times.
    d.expect_log("knock not acted on: command queue full (1024 commands waiting)");
    assert_eq!(d.log_count("storm: running command"), 64, "{}", d.dump());
    assert_eq!(d.log_count("not acted on"), 1);
    let after = rss_kib(pid);
    eprintln!(
        "daemon resident memory: {before} KiB before, {after} KiB after {STORM} completed knocks"
    );
    assert!(
        after < before + 16 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    // The daemon still listens: a real knock completes (and is dropped too,
    // the queue being full).
    lab.knock_server(&["7000"]);
    d.expect_log(&format!("{}: storm: OPEN SESAME", lab.client_v4()));
    // One summary line counts the rest when the interval is over.
    let dropped = STORM as usize + 1 - 64 - 1024;
    let summary = format!("{} more knocks not acted on in the last", dropped - 1);
    if let Err(e) = netns_tests::wait::wait_for_log(&d.log, &summary, Duration::from_secs(15)) {
        panic!("{e}\n{}", d.dump());
    }
    d.assert_running();
    // The daemon and its 64 sleeping commands, all started by this test.
    kill_all_in_ns(&lab.server_ns);
}

/// `/etc/netns/NS/hosts`, which `ip netns exec NS` mounts over
/// `/etc/hosts`: names for the lab's addresses without any DNS traffic.
struct NetnsHosts(PathBuf);

impl NetnsHosts {
    fn new(ns: &str, text: &str) -> NetnsHosts {
        let dir = Path::new("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("hosts"), text).unwrap();
        NetnsHosts(dir)
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn with_lookup_stage_lines_show_the_bare_address_and_open_shows_the_name() {
    require_root!("with_lookup_stage_lines_show_the_bare_address_and_open_shows_the_name");
    let lab = Lab::new("sec-lookup");
    let c = lab.client_v4();
    let _hosts = NetnsHosts::new(
        &lab.server_ns,
        &format!("127.0.0.1 localhost\n{c} knocker.test\n"),
    );
    let opens = lab.path("opens");
    // Seq_Timeout 1: the same knock again after a second opens again (before,
    // it would be a straggler of the last one).
    let conf = lab.one_door_appending("opens", "7000,8000,9000", &[("Seq_Timeout", "1")]);
    let d = lab.start_daemon(&bins::knockd(), conf.text(), &["-l"]);
    // Two hits: no lookup may be asked for, the log shows the address.
    lab.knock_server(&["7000", "8000"]);
    d.expect_log(&format!("{c}: door: Stage 2"));
    // Completing the door asks for the name; later lines show it.
    lab.knock_server(&["9000"]);
    wait_lines(&opens, 1, &d);
    let named = format!("{c} (knocker.test): door: OPEN SESAME");
    let mut n = 1;
    let shown = poll_until(DEFAULT_TIMEOUT, || {
        if d.log_text().contains(&named) {
            return Some(());
        }
        n += 1;
        knock_until_lines(&opens, n, &d, || {
            lab.knock_server(&["7000", "8000", "9000"])
        });
        None
    });
    assert!(shown.is_some(), "the name never showed\n{}", d.dump());
    // Stage lines never carry the name, even once it is known.
    let log = d.log_text();
    assert!(!log.contains("(knocker.test): door: Stage"), "{log}");
    // One knock per opening; knocks sent while the last opening's
    // stragglers were ignored logged nothing.
    assert_eq!(
        log.matches(&format!("{c}: door: Stage 1")).count(),
        n,
        "{log}"
    );
}

/// A door 7000,8000 whose start command appends the knocker's address to
/// the file `opens` of the lab; the path of that file.
fn opens_door(lab: &Lab) -> (PathBuf, Conf) {
    let opens = lab.path("opens");
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000", &lab.append_ip("opens"), &[]);
    (opens, conf)
}

/// Starts the daemon of `opens_door` with `-g LOG`; it must print
/// "cannot open log file LOG: REASON" and run on, logging to stderr: a
/// knock still opens the door.
fn refuses_log_file_and_runs_on(lab: &Lab, log: &Path, reason: &str) -> Daemon {
    let (opens, conf) = opens_door(lab);
    let d = spawn_with(lab, &conf, "", &["-g", &log.display().to_string()], log);
    expect_output(
        &d,
        &format!("cannot open log file {}: {reason}", log.display()),
    );
    expect_output(&d, "listening on");
    lab.knock_server(&["7000", "8000"]);
    wait_lines(&opens, 1, &d);
    expect_output(&d, "door: OPEN SESAME");
    d
}

/// What the root-only file of [`plant_link`] holds.
const SECRET: &str = "root's secret\n";

/// A root-only file holding [`SECRET`] and a symlink to it named `name` in
/// the lab directory, owned by nobody: what an unprivileged user could
/// plant in a directory it may write. The link's path and the file's.
fn plant_link(lab: &Lab, name: &str) -> (PathBuf, PathBuf) {
    let target = lab.write_file("root-only", SECRET);
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let link = lab.path(name);
    symlink(&target, &link).unwrap();
    lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    (link, target)
}

#[test]
fn pid_file_symlink_owned_by_nobody_is_refused_and_its_target_untouched() {
    require_root!("pid_file_symlink_owned_by_nobody_is_refused_and_its_target_untouched");
    let lab = Lab::new("sec-pidlink");
    let (pid, target) = plant_link(&lab, "knockd.pid");
    let conf = Conf::new(&[]).door_cmd("door", "7000", "true", &[]);
    let pid_arg = pid.display().to_string();
    let d = lab.our_daemon_fails(Some(&lab.server_if), conf.text(), &["-p", &pid_arg]);
    expect_output(
        &d,
        &format!(
            "pid file {}: refusing to follow a symbolic link owned by uid 65534",
            pid.display()
        ),
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), SECRET);
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A log file the daemon must refuse: `prepare` plants it and returns its
/// path, the file that must stay untouched and what that file holds;
/// `reason` is what the daemon says.
struct RefusedLog {
    lab_name: &'static str,
    prepare: fn(&Lab) -> (PathBuf, PathBuf, &'static str),
    reason: &'static str,
}

const REFUSED_LOGS: &[RefusedLog] = &[
    RefusedLog {
        // A symlink owned by nobody: nothing reaches its target.
        lab_name: "sec-loglink",
        prepare: |lab| {
            let (log, target) = plant_link(lab, "knockd.log");
            (log, target, SECRET)
        },
        reason: "refusing to follow a symbolic link owned by uid 65534",
    },
    RefusedLog {
        // A file owned by another user: it stays as it was.
        lab_name: "sec-logowner",
        prepare: |lab| {
            let log = lab.write_file("knockd.log", "nobody's lines\n");
            std::os::unix::fs::chown(&log, Some(NOBODY), Some(NOBODY)).unwrap();
            (log.clone(), log, "nobody's lines\n")
        },
        reason: "refusing a file owned by uid 65534 (it must be owned by uid 0)",
    },
];

/// Each case of [`REFUSED_LOGS`] in its own lab: the daemon runs on,
/// logging to stderr, and the untouched file keeps its content.
#[test]
fn log_file_symlink_or_owned_by_another_user_is_refused_and_left_untouched() {
    require_root!("log_file_symlink_or_owned_by_another_user_is_refused_and_left_untouched");
    for case in REFUSED_LOGS {
        let lab = Lab::new(case.lab_name);
        let (log, untouched, content) = (case.prepare)(&lab);
        let _d = refuses_log_file_and_runs_on(&lab, &log, case.reason);
        let now = fs::read_to_string(&untouched).unwrap();
        assert_eq!(now, content, "{}: {}", case.lab_name, untouched.display());
    }
}

#[test]
fn group_writable_config_is_refused_at_start_up_and_on_reload() {
    require_root!("group_writable_config_is_refused_at_start_up_and_on_reload");
    let lab = Lab::new("sec-confmode");
    let (opens, conf) = opens_door(&lab);
    // At start-up: refused before anything is opened, exit status 1.
    let path = lab.write_file("group-writable.conf", conf.text());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
    let log = lab.path("refused.log");
    let proc = lab.spawn(
        &lab.server_ns,
        bins::knockd(),
        &lab.daemon_args(&path, &log),
    );
    let mut d = Daemon {
        proc,
        log,
        conf: path.clone(),
        pidfile: lab.path("unused.pid"),
    };
    let status = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "{status:?}\n{}",
        d.dump()
    );
    expect_output(
        &d,
        &format!(
            "{}: refusing a file writable by group or others (mode 0664",
            path.display()
        ),
    );
    // On reload: the running configuration stays and the refusal is logged.
    let mut d = lab.start_daemon(&bins::knockd(), conf.text(), &[]);
    fs::set_permissions(&d.conf, fs::Permissions::from_mode(0o666)).unwrap();
    d.signal(Signal::SIGHUP);
    d.expect_log(&format!(
        "reload: {}: refusing a file writable by group or others (mode 0666",
        d.conf.display()
    ));
    d.expect_log("keeping the running configuration");
    lab.knock_server(&["7000", "8000"]);
    wait_lines(&opens, 1, &d);
    d.assert_running();
}
