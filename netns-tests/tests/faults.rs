//! Faults a production knock daemon must survive (see SECURITY.md): the
//! interface vanishing, an unusable log file, commands that hang, a burst of
//! a thousand doors, broken reloads, `kill -9` right after a one-time knock,
//! one-time files deleted, read-only or on a full disk, and running with
//! only CAP_NET_RAW + CAP_NET_ADMIN as an unprivileged user.
//!
//! Every test runs our `knockd` in a throw-away namespace lab (root only).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netns_tests::proc::{pids_in_ns, run_with_timeout};
use netns_tests::scenario::{knock_until_lines, lines, wait_lines, QUIET};
use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, expect_file, require_root, Conf, Daemon, Lab};
use nix::sys::signal::Signal;

/// Wait until `cond` holds on the daemon's log file and stdout/stderr
/// together; panic with both otherwise.
fn expect_output(d: &Daemon, what: &str, cond: impl Fn(&str) -> bool) {
    let seen = poll_until(DEFAULT_TIMEOUT, || {
        let all = d.all_output();
        cond(&all).then_some(())
    });
    assert!(seen.is_some(), "{what} not seen\n{}", d.dump());
}

/// A tmpfs mounted on a fresh directory, unmounted (lazily) on drop. The
/// daemon started afterwards (`ip netns exec` copies the mount table) sees
/// the same file system, so filling or remounting it here affects it.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("mount");
        cmd.args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(&dir);
        run_with_timeout(cmd, Duration::from_secs(10))
            .unwrap()
            .assert_success();
        Tmpfs { dir }
    }

    fn remount(&self, opt: &str) {
        let mut cmd = Command::new("mount");
        cmd.args(["-o", &format!("remount,{opt}")]).arg(&self.dir);
        run_with_timeout(cmd, Duration::from_secs(10))
            .unwrap()
            .assert_success();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Write zeros into a new file until the file system is full.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = fs::File::create(self.path("filler")).unwrap();
        let block = vec![0u8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        // Nothing more fits, not even one byte in a new file.
        let err = fs::write(self.path("probe"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A daemon started with our own argument list (no `-v`; `-g log` is
/// added), waiting for `listening on` in `log` or in its output.
fn spawn_custom(lab: &Lab, wrapper: &[&str], conf: &str, args: &[&str], log: &Path) -> Daemon {
    let program = bins::knockd();
    let id = lab.unique("knockd");
    let conf_path = lab.write_file(&format!("{id}.conf"), conf);
    let mut full: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    full.push(program.display().to_string());
    full.extend(lab.daemon_args(&conf_path, log));
    full.extend(args.iter().map(|s| s.to_string()));
    let (first, rest) = full.split_first().unwrap();
    let proc = lab.spawn(&lab.server_ns, first, rest);
    let mut d = Daemon {
        proc,
        log: log.to_owned(),
        conf: conf_path,
        pidfile: lab.path(&format!("{id}.pid")),
    };
    let ready = poll_until(Duration::from_secs(10), || {
        let all = d.all_output();
        (all.contains("listening on") || !d.proc.is_running()).then_some(())
    });
    assert!(
        ready.is_some() && d.proc.is_running(),
        "daemon did not start\n{}",
        d.dump()
    );
    d
}

/// Pids whose parent is `parent` (children not reaped yet included).
fn children_of(parent: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = after.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|s| s.parse::<i32>().ok()) == Some(parent) {
            out.push((pid, state));
        }
    }
    out
}

/// A one-time file of three two-hit TCP sequences: 7101,7102 / 7201,7202 /
/// 7301,7302.
const OTP3: &str = " 7101,7102\n 7201,7202\n 7301,7302\n";

/// [`OTP3`] in the file `seqs` of a new tmpfs of `size` in the lab
/// directory; the tmpfs and the file's path.
fn otp3_on_tmpfs(lab: &Lab, size: &str) -> (Tmpfs, PathBuf) {
    let fs_ = Tmpfs::mount(lab.path("mnt"), size);
    let otp = fs_.path("seqs");
    fs::write(&otp, OTP3).unwrap();
    (fs_, otp)
}

/// Ports of line `n` (1-based) of [`OTP3`].
fn otp_ports(n: u32) -> [String; 2] {
    [format!("7{n}01"), format!("7{n}02")]
}

fn knock_otp_line(lab: &Lab, n: u32) {
    let [a, b] = otp_ports(n);
    lab.knock_server(&[&a, &b]);
}

/// An OTP door on `otp_path` appending to `opens`, and a fixed door
/// 5000,5001 appending to `fixed`.
fn otp_and_fixed(lab: &Lab, otp_path: &Path) -> Conf {
    let (opens, fixed) = (lab.append_ip("opens"), lab.append_ip("fixed"));
    Conf::new(&[])
        .otp_door_cmd("otp", otp_path, &opens, &[("Seq_Timeout", "5")])
        // Knocked again and again: past Seq_Timeout of its last opening, a
        // knock is no straggler.
        .door_cmd("fixed", "5000,5001", &fixed, &[("Seq_Timeout", "1")])
}

/// The fixed door of [`otp_and_fixed`] still opens (n-th time).
fn fixed_door_works(lab: &Lab, d: &Daemon, n: usize) {
    knock_until_lines(&lab.path("fixed"), n, d, || {
        lab.knock_server(&["5000", "5001"])
    });
}

#[test]
fn fault_interface_deleted_and_recreated_twice() {
    require_root!("fault_interface_deleted_and_recreated_twice");
    let lab = Lab::new("f-iface");
    let mut d = lab.our_daemon(&lab.one_door("7000,8000", &[]));
    for round in 1..=2 {
        lab.delete_server_link();
        d.expect_log_count("capture lost", round);
        // Gone: the daemon keeps running and tries to reopen the capture;
        // the failure is said once per outage, not once per attempt.
        d.expect_log_count("; retrying", round);
        // Long enough for two more reopen attempts (back-off 250 ms, then
        // 500 ms): still one line.
        std::thread::sleep(QUIET);
        assert_eq!(d.log_count("; retrying"), round, "{}", d.dump());
        d.assert_running();
        lab.create_server_link();
        d.expect_log_count("capture reopened", round);
        assert_eq!(d.log_count("capture lost"), round, "{}", d.dump());
        assert_eq!(d.log_count("; retrying"), round, "{}", d.dump());
        let what = format!("no knock works after re-creation {round}");
        lab.expect_reopened(&d, &["7000", "8000"], &what);
    }
    d.assert_running();
}

#[test]
fn fault_log_file_unwritable_or_directory_removed() {
    require_root!("fault_log_file_unwritable_or_directory_removed");
    let lab = Lab::new("f-logfile");
    let logs = lab.create_dir("logs");
    let log = logs.join("knockd.log");
    let opens = lab.path("opens");
    let conf = lab.one_door_appending("opens", "7000,8000", &[]);
    let logarg = log.display().to_string();
    let mut d = spawn_custom(&lab, &[], conf.text(), &[], &log);

    // The log directory disappears; SIGHUP (log rotation) reopens the file.
    fs::remove_dir_all(&logs).unwrap();
    d.signal(Signal::SIGHUP);
    expect_output(&d, "a complaint naming the log file", |all| {
        all.contains(&logarg)
    });
    lab.knock_server(&["7000", "8000"]);
    wait_lines(&opens, 1, &d);
    // Lines meant for the file went to stderr instead.
    expect_output(&d, "OPEN SESAME on stderr", |_| {
        d.proc.output_text().contains("door: OPEN SESAME")
    });
    d.assert_running();

    // The directory comes back: the next SIGHUP uses the file again.
    fs::create_dir(&logs).unwrap();
    d.signal(Signal::SIGHUP);
    let back = poll_until(DEFAULT_TIMEOUT, || log.exists().then_some(()));
    assert!(back.is_some(), "log file not reopened\n{}", d.dump());
    lab.knock_server(&["7000", "8000"]);
    wait_lines(&opens, 2, &d);
    d.expect_log("OPEN SESAME");

    // A log path that can never be written (a directory): the daemon
    // starts anyway, says so, and logs to stderr.
    let mut d2 = spawn_custom(&lab, &[], conf.text(), &[], lab.dir());
    d.proc.kill();
    lab.knock_server(&["7000", "8000"]);
    wait_lines(&opens, 3, &d2);
    expect_output(&d2, "OPEN SESAME on stderr", |_| {
        d2.proc.output_text().contains("door: OPEN SESAME")
    });
    d2.assert_running();
}

#[test]
fn fault_hanging_start_command_blocks_nothing() {
    require_root!("fault_hanging_start_command_blocks_nothing");
    let lab = Lab::new("f-hang");
    // Ignores SIGTERM and never ends.
    let hang = format!(
        "trap '' TERM; echo %IP% >> {}; while :; do sleep 1; done",
        lab.path("hung").display()
    );
    let ok = lab.append_ip("ok");
    let conf = Conf::new(&[])
        .door_cmd("hang", "7000", &hang, &[("Seq_Timeout", "1")])
        .door_cmd("ok", "8000,9000", &ok, &[("Seq_Timeout", "1")]);
    let mut d = lab.our_daemon(&conf);
    for n in 1..=3 {
        knock_until_lines(&lab.path("hung"), n, &d, || lab.knock_server(&["7000"]));
    }
    // Three commands hang; the other door and the capture loop do not care.
    for n in 1..=2 {
        knock_until_lines(&lab.path("ok"), n, &d, || {
            lab.knock_server(&["8000", "9000"])
        });
    }

    // Shutdown completes: the hung commands are killed after the grace
    // period, with their children (process groups).
    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.proc.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "daemon did not exit within 20 s\n{}",
        d.dump()
    );
    let took = t0.elapsed();
    d.expect_log("shutting down");
    let left = poll_until(Duration::from_secs(3), || {
        pids_in_ns(&lab.server_ns).is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "processes left in the server namespace after shutdown: {:?}\n{}",
        pids_in_ns(&lab.server_ns),
        d.dump()
    );
    eprintln!("shutdown with hung commands took {took:?}");
}

#[test]
fn fault_thousand_doors_open_at_once() {
    require_root!("fault_thousand_doors_open_at_once");
    let lab = Lab::new("f-thousand");
    let running = lab.create_dir("running");
    // Each command records how many commands run at this moment.
    let script = lab.write_file(
        "cmd.sh",
        &format!(
            "touch {r}/$1\nls {r} | wc -l >> {c}\nsleep 0.2\nrm -f {r}/$1\necho $1 >> {done}\n",
            r = running.display(),
            c = lab.path("counts").display(),
            done = lab.path("done").display()
        ),
    );
    let mut conf = Conf::new(&[]);
    let cmds: Vec<String> = (0..1000)
        .map(|i| format!("/bin/sh {} d{i}", script.display()))
        .collect();
    for (i, cmd) in cmds.iter().enumerate() {
        conf = conf.door(
            &format!("d{i}"),
            &[("Sequence", "7000:udp"), ("Start_Command", cmd.as_str())],
        );
    }
    let d = lab.our_daemon(&conf);
    let pid = d.proc.pid().unwrap().as_raw();
    let t0 = Instant::now();
    // One datagram opens all thousand doors.
    lab.knock_server(&["7000:udp"]);
    let all = poll_until(Duration::from_secs(90), || {
        (lines(&lab.path("done")).len() >= 1000).then_some(())
    });
    assert!(
        all.is_some(),
        "only {} of 1000 commands finished\n{}",
        lines(&lab.path("done")).len(),
        d.dump()
    );
    let took = t0.elapsed();
    let mut done = lines(&lab.path("done"));
    done.sort();
    done.dedup();
    assert_eq!(done.len(), 1000, "every door's command ran exactly once");
    let max = lines(&lab.path("counts"))
        .iter()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        (1..=64).contains(&max),
        "{max} commands ran at once (limit 64)"
    );
    // Every child is reaped: no zombies, nothing left.
    let reaped = poll_until(DEFAULT_TIMEOUT, || {
        children_of(pid).is_empty().then_some(())
    });
    assert!(
        reaped.is_some(),
        "children left: {:?}\n{}",
        children_of(pid),
        d.dump()
    );
    d.expect_log_count("OPEN SESAME", 1000);
    eprintln!("1000 doors: all commands done in {took:?}, at most {max} at once");
}

#[test]
fn fault_sighup_with_missing_garbage_or_endless_config() {
    require_root!("fault_sighup_with_missing_garbage_or_endless_config");
    let lab = Lab::new("f-hup");
    let conf = lab.one_door_appending("opens", "7000,8000", &[("Seq_Timeout", "1")]);
    let mut d = lab.our_daemon(&conf);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    type Breaker = Box<dyn Fn(&Path)>;
    let breakers: Vec<(&str, Breaker)> = vec![
        ("removed", Box::new(|_| {})),
        (
            "binary garbage",
            Box::new(move |p| fs::write(p, &garbage).unwrap()),
        ),
        ("a directory", Box::new(|p| fs::create_dir(p).unwrap())),
        (
            "a link to /dev/zero",
            Box::new(|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
        ),
    ];
    for (n, (what, breaker)) in breakers.iter().enumerate() {
        if d.conf.is_dir() {
            fs::remove_dir(&d.conf).unwrap();
        } else if fs::symlink_metadata(&d.conf).is_ok() {
            fs::remove_file(&d.conf).unwrap();
        }
        breaker(&d.conf);
        d.signal(Signal::SIGHUP);
        d.expect_log_count("keeping the running configuration", n + 1);
        let _ = what;
        d.assert_running();
        knock_until_lines(&lab.path("opens"), n + 1, &d, || {
            lab.knock_server(&["7000", "8000"])
        });
    }
    assert!(
        d.log_count(&d.conf.display().to_string()) >= breakers.len(),
        "each reload error names the file\n{}",
        d.dump()
    );
}

#[test]
fn fault_kill_9_right_after_one_time_knock() {
    require_root!("fault_kill_9_right_after_one_time_knock");
    let lab = Lab::new("f-kill9");
    let otp = lab.write_file("seqs", OTP3);
    let opens = lab.path("opens");
    // The start command itself kills the daemon the instant it runs: the
    // earliest moment after a knock is accepted.
    let cmd = format!("echo %IP% >> {}; kill -9 $PPID", opens.display());
    let otp_door =
        |cmd: &str| Conf::new(&[]).otp_door_cmd("otp", &otp, cmd, &[("Seq_Timeout", "5")]);
    let conf = otp_door(&cmd);
    let mut d = lab.our_daemon(&conf);
    knock_otp_line(&lab, 1);
    wait_lines(&opens, 1, &d);
    let st = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(st.is_some(), "the daemon survived kill -9\n{}", d.dump());
    assert!(
        lines(&otp)[0].starts_with('#'),
        "line 1 not marked before the command ran: {:?}",
        lines(&otp)
    );

    // Restarted: line 1 never works again, line 2 does.
    let mut d = lab.our_daemon(&conf);
    knock_otp_line(&lab, 1);
    expect_no_file_lines(&opens, 1, QUIET, &d);
    knock_otp_line(&lab, 2);
    wait_lines(&opens, 2, &d);
    let _ = d.proc.wait_exit(DEFAULT_TIMEOUT);

    // The test kills it from outside right after the OPEN SESAME line.
    let fast = lab.append_ip("opens");
    let conf2 = otp_door(&fast);
    let mut d = lab.our_daemon(&conf2);
    knock_otp_line(&lab, 3);
    d.expect_log("OPEN SESAME");
    d.signal(Signal::SIGKILL);
    let _ = d.proc.wait_exit(DEFAULT_TIMEOUT);
    assert!(
        lines(&otp).iter().all(|l| l.starts_with('#')),
        "{:?}",
        lines(&otp)
    );
    let d = lab.our_daemon(&conf2);
    knock_otp_line(&lab, 3);
    expect_no_file_lines(&opens, 3, QUIET, &d);
    d.expect_log("no one-time sequences left");
}

/// Panic if `path` gets more than `n` lines within `window`.
fn expect_no_file_lines(path: &Path, n: usize, window: Duration, d: &Daemon) {
    let t0 = Instant::now();
    while t0.elapsed() < window {
        let got = lines(path).len();
        assert!(
            got <= n,
            "{} has {got} lines, expected {n}\n{}",
            path.display(),
            d.dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fault_one_time_file_deleted_while_running() {
    require_root!("fault_one_time_file_deleted_while_running");
    let lab = Lab::new("f-otpdel");
    let otp = lab.write_file("seqs", OTP3);
    let d = lab.our_daemon(&otp_and_fixed(&lab, &otp));
    knock_otp_line(&lab, 1);
    wait_lines(&lab.path("opens"), 1, &d);
    fs::remove_file(&otp).unwrap();
    // Noticed within the once-a-second re-check, said once.
    d.expect_log("cannot read one-time sequences");
    d.expect_log("door disabled");
    knock_otp_line(&lab, 2);
    expect_no_file_lines(&lab.path("opens"), 1, QUIET, &d);
    fixed_door_works(&lab, &d, 1);
    // The file comes back (line 1 used): the door is enabled again, and
    // was disabled only once over the whole outage.
    fs::write(&otp, OTP3.replacen(' ', "#", 1)).unwrap();
    d.expect_log("door enabled");
    assert_eq!(d.log_count("door disabled"), 1, "{}", d.dump());
    knock_otp_line(&lab, 2);
    wait_lines(&lab.path("opens"), 2, &d);
    fixed_door_works(&lab, &d, 2);
}

#[test]
fn fault_one_time_file_read_only_while_running() {
    require_root!("fault_one_time_file_read_only_while_running");
    let lab = Lab::new("f-otpro");
    let (fs_, otp) = otp3_on_tmpfs(&lab, "1m");
    let d = lab.our_daemon(&otp_and_fixed(&lab, &otp));
    let opens = lab.path("opens");
    knock_otp_line(&lab, 1);
    wait_lines(&opens, 1, &d);

    fs_.remount("ro");
    knock_otp_line(&lab, 2);
    d.expect_log("knock refused");
    d.expect_log("door disabled");
    expect_no_file_lines(&opens, 1, QUIET, &d);
    assert!(
        d.log_text().contains("Read-only file system"),
        "the reason is logged\n{}",
        d.dump()
    );
    fixed_door_works(&lab, &d, 1);

    // Line 2 went over the wire but was refused. Once the file is writable
    // again it must not work (it is marked now), and line 3 takes over.
    fs_.remount("rw");
    // The refused line is marked on a retry, which enables the door again.
    d.expect_log("(seen on the wire) is now marked used");
    d.expect_log("door enabled");
    knock_otp_line(&lab, 2);
    expect_no_file_lines(&opens, 1, QUIET, &d);
    knock_otp_line(&lab, 3);
    wait_lines(&opens, 2, &d);
    let l = lines(&otp);
    assert!(l.iter().all(|l| l.starts_with('#')), "{l:?}");
    fixed_door_works(&lab, &d, 2);
}

#[test]
fn fault_disk_full_when_marking() {
    require_root!("fault_disk_full_when_marking");
    let lab = Lab::new("f-diskfull");

    // 1. A really full file system: marking overwrites one byte in place,
    // which needs no new space, so the knock works and the line is marked.
    let (fs_, otp) = otp3_on_tmpfs(&lab, "256k");
    let d = lab.our_daemon(&otp_and_fixed(&lab, &otp));
    let filled = fs_.fill();
    assert!(filled > 0);
    let opens = lab.path("opens");
    knock_otp_line(&lab, 1);
    wait_lines(&opens, 1, &d);
    assert!(lines(&otp)[0].starts_with('#'), "{:?}", lines(&otp));
    knock_otp_line(&lab, 1);
    expect_no_file_lines(&opens, 1, QUIET, &d);
    drop(d);

    // 2. A file system that cannot take the write (copy-on-write file
    // systems need new blocks even to overwrite): every write and sync of
    // the one-time file fails with ENOSPC, injected by strace.
    let otp2 = lab.write_file("seqs2", OTP3);
    let p2 = otp2.display().to_string();
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("strace is needed for the injected disk-full test (apt-get install strace)");
    let calls = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range";
    let inject = format!("inject={calls}:error=ENOSPC");
    let trace = format!("trace={calls}");
    // strace writes one line per call it failed, ending "(INJECTED)".
    let trace_out = lab.path("strace.out");
    let trace_path = trace_out.display().to_string();
    let injected = || {
        fs::read_to_string(&trace_out)
            .unwrap_or_default()
            .matches("(INJECTED)")
            .count()
    };
    let wrapper = [
        strace,
        "-f",
        "-qq",
        "-o",
        &trace_path,
        "-P",
        &p2,
        "-e",
        &trace,
        "-e",
        &inject,
    ];
    let conf = otp_and_fixed(&lab, &otp2);
    let logp = lab.path("enospc.log");
    let mut d = spawn_custom(&lab, &wrapper, conf.text(), &[], &logp);
    let before = fs::read(&otp2).unwrap();
    knock_otp_line(&lab, 1);
    d.expect_log("knock refused");
    d.expect_log("No space left on device");
    expect_no_file_lines(&opens, 1, QUIET, &d);
    assert_eq!(fs::read(&otp2).unwrap(), before, "the file is unchanged");
    // Still full: a retry of the mark fails too (one more injected
    // error), the same sequence keeps being refused; other doors work.
    let refused = injected();
    assert!(refused > 0, "strace injected nothing\n{}", d.dump());
    poll_until(DEFAULT_TIMEOUT, || (injected() > refused).then_some(()))
        .unwrap_or_else(|| panic!("the mark was not retried\n{}", d.dump()));
    knock_otp_line(&lab, 1);
    expect_no_file_lines(&opens, 1, QUIET, &d);
    fixed_door_works(&lab, &d, 1);
    d.assert_running();
}

/// `setpriv` arguments that run our daemon (`-i IF -c CONF -g LOG`) as
/// `nobody` with the capability options `caps`.
fn knockd_as_nobody(lab: &Lab, caps: &[&str], conf: &Path, log: &Path) -> Vec<String> {
    let user = ["--reuid=nobody", "--regid=nogroup", "--init-groups"];
    let mut full: Vec<String> = user.iter().chain(caps).map(|s| s.to_string()).collect();
    full.push("--".to_owned());
    full.push(bins::knockd().display().to_string());
    full.extend(lab.daemon_args(conf, log));
    full
}

/// Drop every privilege but CAP_NET_RAW and CAP_NET_ADMIN and become
/// `nobody`: the daemon still captures and opens doors.
#[test]
fn privilege_nobody_with_net_raw_and_net_admin_only() {
    require_root!("privilege_nobody_with_net_raw_and_net_admin_only");
    let lab = Lab::new("f-caps");
    // The lab directory is root's (0700): let nobody through to its own
    // directory, which root's other files stay out of.
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    let own = lab.create_dir("nobody");
    let chown = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&own)
        .status()
        .unwrap();
    assert!(chown.success());
    fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
    let root_only = lab.create_dir("root-only");
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o755)).unwrap();
    let opened = own.join("opened");
    let cmd = format!(
        "touch {}/x 2>/dev/null; id -u > {}; echo %IP% >> {}",
        root_only.display(),
        own.join("uid").display(),
        opened.display()
    );
    let conf = Conf::new(&[]).door_cmd("door", "7000,8000:udp", &cmd, &[("Seq_Timeout", "5")]);
    let conf_path = own.join("knockd.conf");
    fs::write(&conf_path, conf.text()).unwrap();
    let log = own.join("knockd.log");
    let caps = [
        "--inh-caps=-all,+net_raw,+net_admin",
        "--ambient-caps=-all,+net_raw,+net_admin",
        "--bounding-set=-all,+net_raw,+net_admin",
    ];
    let full = knockd_as_nobody(&lab, &caps, &conf_path, &log);
    let proc = lab.spawn(&lab.server_ns, "setpriv", &full);
    let mut d = Daemon {
        proc,
        log,
        conf: conf_path,
        pidfile: own.join("knockd.pid"),
    };
    d.wait_ready();
    let pid = d.proc.pid().unwrap().as_raw();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    assert!(field("Uid:").starts_with("65534"), "{}", field("Uid:"));
    // CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13: nothing else.
    assert_eq!(
        u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        (1 << 12) | (1 << 13),
        "effective capabilities"
    );
    // A file only root could write stays out of reach.
    lab.knock_server(&["7000", "8000:udp"]);
    let text = expect_file(&opened, &d);
    assert_eq!(text.trim(), lab.client_v4().to_string());
    assert_eq!(fs::read_to_string(own.join("uid")).unwrap().trim(), "65534");
    assert!(
        !root_only.join("x").exists(),
        "the command could write where only root may"
    );
    d.assert_running();

    // Without the capabilities it fails clearly and exits non-zero.
    let caps = ["--inh-caps=-all", "--bounding-set=-all"];
    let full = knockd_as_nobody(&lab, &caps, &d.conf, &own.join("nocaps.log"));
    let out = lab.run(&lab.server_ns, "setpriv", &full);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains(&lab.server_if) && out.stderr.contains("not permitted"),
        "{}",
        out.stderr
    );
}
