//! What the scenarios of every test file do again and again, in one place:
//! knock with our client or the classic one, start our daemon or the
//! classic one, build the usual one-door configuration and the commands
//! that record who was let in, and wait for the lines those commands write.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bins::{self, CLASSIC_KNOCK, CLASSIC_KNOCKD};
use crate::wait::{self, DEFAULT_TIMEOUT};
use crate::{expect_file, expect_no_file, Conf, Daemon, Lab, Proc, RunOutput};

/// How long "nothing happens" is watched for.
pub const QUIET: Duration = Duration::from_millis(800);

/// `Seq_Timeout` of [`Lab::one_door`] unless the test gives its own.
pub const ONE_DOOR_SEQ_TIMEOUT: &str = "5";

impl Lab {
    /// The server's IPv4 address as text (a `knock` argument).
    pub fn s4(&self) -> String {
        self.server_v4().to_string()
    }

    /// The server's IPv6 address as text.
    pub fn s6(&self) -> String {
        self.server_v6().to_string()
    }

    /// `echo %IP% > FILE` (FILE inside the lab directory): the last knocker.
    pub fn echo_ip(&self, file: &str) -> String {
        format!("echo %IP% > {}", self.path(file).display())
    }

    /// `echo %IP% >> FILE`: one line per run of the command.
    pub fn append_ip(&self, file: &str) -> String {
        format!("echo %IP% >> {}", self.path(file).display())
    }

    /// The path of `file` inside the lab directory and the command
    /// [`Lab::append_ip`] that appends the knocker's address to it.
    pub fn appending(&self, file: &str) -> (PathBuf, String) {
        (self.path(file), self.append_ip(file))
    }

    /// A configuration with one door `door`: `sequence`, a start command
    /// writing the knocker's address to the file `opened`, `Seq_Timeout`
    /// [`ONE_DOOR_SEQ_TIMEOUT`] unless `extra` sets it, then `extra`.
    /// Both daemons read it.
    pub fn one_door(&self, sequence: &str, extra: &[(&str, &str)]) -> Conf {
        one_door_running(&self.echo_ip("opened"), sequence, extra)
    }

    /// Like [`Lab::one_door`], but the start command appends the knocker's
    /// address to `file` (one line per opening).
    pub fn one_door_appending(&self, file: &str, sequence: &str, extra: &[(&str, &str)]) -> Conf {
        one_door_running(&self.append_ip(file), sequence, extra)
    }

    /// Our knock from the client namespace to the server's IPv4 address:
    /// `knock SERVER PORTS...`; it must succeed.
    pub fn knock_server(&self, ports: &[&str]) -> RunOutput {
        self.knock_server_with(&[], ports)
    }

    /// [`Lab::knock_server`] with `options` before the address:
    /// `knock OPTIONS... SERVER PORTS...`.
    pub fn knock_server_with(&self, options: &[&str], ports: &[&str]) -> RunOutput {
        let host = self.s4();
        let mut args = options.to_vec();
        args.push(&host);
        args.extend_from_slice(ports);
        self.knock(&self.client_ns, &args)
    }

    /// Our knock over IPv6 from the client namespace to the server's IPv6
    /// address: `knock -6 SERVER PORTS...`; it must succeed.
    pub fn knock_server6(&self, ports: &[&str]) -> RunOutput {
        let host = self.s6();
        let mut args = vec!["-6", host.as_str()];
        args.extend_from_slice(ports);
        self.knock(&self.client_ns, &args)
    }

    /// Wait for the file `opened` of [`Lab::one_door`]; its content.
    pub fn expect_opened(&self, d: &Daemon) -> String {
        expect_file(&self.path("opened"), d)
    }

    /// The file `opened` of [`Lab::one_door`] stays absent for [`QUIET`].
    pub fn expect_not_opened(&self, d: &Daemon) {
        expect_no_file(&self.path("opened"), QUIET, d);
    }

    /// Remove the file `opened`, then knock `ports` (as
    /// [`Lab::knock_server`]) until it appears again, for at most 10 s
    /// (after a reload or an interface outage); panic with `what` and the
    /// daemon's logs if it does not.
    pub fn expect_reopened(&self, d: &Daemon, ports: &[&str], what: &str) {
        let opened = self.path("opened");
        let _ = fs::remove_file(&opened);
        let ok = knock_until(&opened, Duration::from_secs(10), || {
            self.knock_server(ports);
        });
        assert!(ok, "{what}\n{}", d.dump());
    }

    /// Run our `knock` with `args` in namespace `ns`; it must succeed.
    pub fn knock(&self, ns: &str, args: &[&str]) -> RunOutput {
        let out = self.run(ns, bins::knock(), args);
        out.assert_success();
        out
    }

    /// Run the classic `knock` with `args` in namespace `ns`; it must succeed.
    pub fn classic_knock(&self, ns: &str, args: &[&str]) -> RunOutput {
        require_classic(CLASSIC_KNOCK);
        let out = self.run(ns, CLASSIC_KNOCK, args);
        out.assert_success();
        out
    }

    /// Our daemon on the server veth with `conf`, once it listens.
    pub fn our_daemon(&self, conf: &Conf) -> Daemon {
        self.start_daemon(&bins::knockd(), conf.text(), &[])
    }

    /// Our daemon with `conf` (`-i IFACE` only if `iface` is given, then
    /// `extra`), which must refuse to start: it exits with a failure.
    pub fn our_daemon_fails(&self, iface: Option<&str>, conf: &str, extra: &[&str]) -> Daemon {
        let mut d = self.spawn_daemon_on(&bins::knockd(), iface, conf, extra);
        d.expect_exit_failure();
        d
    }

    /// The classic daemon on the server veth with `conf`, once it listens.
    pub fn classic_daemon(&self, conf: &Conf) -> Daemon {
        require_classic(CLASSIC_KNOCKD);
        self.start_daemon(CLASSIC_KNOCKD.as_ref(), conf.text(), &[])
    }
}

/// A bounded flood of spoofed TCP SYNs from the client namespace to the
/// server's IPv4 address, sent by the benchmark's `knock-flood` (bounded
/// in packets and seconds by construction).
#[derive(Debug, Clone)]
pub struct Flood<'a> {
    /// Destination port.
    pub port: &'a str,
    /// How many distinct spoofed sources, taken from `src_net`.
    pub sources: u64,
    pub src_net: &'a str,
    /// At most this many packets...
    pub count: u64,
    /// ...and this many seconds.
    pub seconds: u32,
    /// Packets per second at most (`None`: as fast as the link takes them).
    pub pps: Option<u64>,
}

impl Lab {
    /// MAC address of the server end of the lab's veth pair.
    pub fn server_mac(&self) -> String {
        let out = self.run(
            &self.server_ns,
            "cat",
            &[format!("/sys/class/net/{}/address", self.server_if)],
        );
        out.assert_success();
        out.stdout.trim().to_owned()
    }

    fn flood_args(&self, f: &Flood) -> Vec<String> {
        let mut args = vec![
            "-i".to_owned(),
            self.client_if.clone(),
            "--dst-mac".to_owned(),
            self.server_mac(),
            "--dst".to_owned(),
            self.s4(),
            "--port".to_owned(),
            f.port.to_owned(),
            "--sources".to_owned(),
            f.sources.to_string(),
            "--src-net".to_owned(),
            f.src_net.to_owned(),
            "--count".to_owned(),
            f.count.to_string(),
            "--seconds".to_owned(),
            f.seconds.to_string(),
        ];
        if let Some(pps) = f.pps {
            args.extend(["--pps".to_owned(), pps.to_string()]);
        }
        args
    }

    /// Start `flood` in the background.
    pub fn spawn_flood(&self, f: &Flood) -> Proc {
        self.spawn(
            &self.client_ns,
            bins::our_bin("knock-flood"),
            &self.flood_args(f),
        )
    }

    /// Send `flood` and wait for its end; the tool's one-line report
    /// (`sent=N ...`).
    pub fn run_flood(&self, f: &Flood) -> String {
        let out = self.run(
            &self.client_ns,
            bins::our_bin("knock-flood"),
            &self.flood_args(f),
        );
        out.assert_success();
        out.stdout + &out.stderr
    }
}

/// `KEY=value` of the flood tool's one-line report.
pub fn flood_report_field(report: &str, key: &str) -> Option<u64> {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Door `door` of `sequence` with `Start_Command` `cmd`, `Seq_Timeout`
/// [`ONE_DOOR_SEQ_TIMEOUT`] unless `extra` sets it, then `extra`.
fn one_door_running(cmd: &str, sequence: &str, extra: &[(&str, &str)]) -> Conf {
    let mut dirs = Vec::new();
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Seq_Timeout") || k.eq_ignore_ascii_case("Timeout"))
    {
        dirs.push(("Seq_Timeout", ONE_DOOR_SEQ_TIMEOUT));
    }
    dirs.extend_from_slice(extra);
    Conf::new(&[]).door_cmd("door", sequence, cmd, &dirs)
}

fn require_classic(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package `knockd` (scripts/setup.sh)"
    );
}

/// Lines of `path` (empty when it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Wait until `path` has at least `n` complete lines; panic with the logs.
pub fn wait_lines(path: &Path, n: usize, d: &Daemon) -> Vec<String> {
    wait::poll_until(DEFAULT_TIMEOUT, || {
        let text = fs::read_to_string(path).ok()?;
        (text.ends_with('\n') && text.lines().count() >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{} does not have {n} line(s) within {DEFAULT_TIMEOUT:?}: {:?}\n{}",
            path.display(),
            lines(path),
            d.dump()
        )
    });
    lines(path)
}

/// Knock (again) until `path` has `n` lines, at most 10 s. A repeat of
/// the same knock from the same address within the door's `Seq_Timeout`
/// of its opening is a straggler of that knock and opens nothing, so doors
/// knocked again use a short `Seq_Timeout`.
pub fn knock_until_lines<T>(path: &Path, n: usize, d: &Daemon, mut knock: impl FnMut() -> T) {
    let done = wait::poll_until(Duration::from_secs(10), || {
        let _ = knock();
        wait::poll_until(Duration::from_millis(300), || {
            (lines(path).len() >= n).then_some(())
        })
    });
    if done.is_none() {
        panic!(
            "{} does not have {n} line(s) after knocking for 10 s: {:?}\n{}",
            path.display(),
            lines(path),
            d.dump()
        );
    }
}

/// Repeat `knock` until `file` appears (for states right after a reload or
/// an interface outage), for at most `timeout`. Returns whether it did.
pub fn knock_until(file: &Path, timeout: Duration, mut knock: impl FnMut()) -> bool {
    let start = Instant::now();
    loop {
        knock();
        if wait::wait_for_file(file, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
    }
}
