//! Command-line tests of `knockd`, `knock` and `knock-gen` live in `tests/`.
//! They run the real binaries of the workspace; most need no privilege
//! (`knock_privilege.rs` and the tests that hand a file to another user
//! need root, and say so when they are skipped).
//!
//! The binaries belong to other packages, so Cargo does not build them for
//! this one: `knock_testkit::bins` builds them once per test process, so a
//! test never runs a stale binary.
//!
//! What several test files need is here, once: files with a given mode in
//! a temporary directory ([`Scratch`]), "runs, fails and says all of these"
//! ([`refuses`], [`contains_all`]), the checks every refused invocation
//! must pass ([`refusal_problems`]), and the root check for tests that
//! hand a file to another user ([`skip_unless_root!`]).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use predicates::prelude::*;
use predicates::BoxPredicate;

/// Path of binary `name` of workspace package `package`, built if needed.
pub fn binary(package: &str, name: &str) -> PathBuf {
    assert_eq!(
        package, name,
        "each package of the suite has one binary of its own name"
    );
    knock_testkit::bins::our_bin(name)
}

/// An `assert_cmd` command for binary `name` of package `package`.
/// `SUDO_UID`/`SUDO_GID` are removed: under `sudo cargo test` they would
/// make `knock` drop to the invoking user and lose access to the test's
/// root-owned files (tests of that drop set them explicitly).
pub fn command(package: &str, name: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(binary(package, name));
    c.env_remove("SUDO_UID").env_remove("SUDO_GID");
    c
}

/// A UDP socket on loopback that knocks can be aimed at.
pub struct UdpTarget {
    pub sock: std::net::UdpSocket,
    pub port: u16,
}

impl UdpTarget {
    /// A socket on 127.0.0.1 at a free port; `recv` waits at most `read_timeout`.
    pub fn new(read_timeout: std::time::Duration) -> Self {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(read_timeout)).unwrap();
        let port = sock.local_addr().unwrap().port();
        UdpTarget { sock, port }
    }

    /// The payload of the next datagram, which must come from loopback
    /// (panics when none arrives within the read timeout).
    pub fn recv(&self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .expect("the knock arrived within the read timeout");
        assert!(from.ip().is_loopback());
        buf[..n].to_vec()
    }

    /// True when nothing is waiting.
    pub fn idle(&self) -> bool {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let idle = self.sock.recv_from(&mut buf).is_err();
        self.sock.set_nonblocking(false).unwrap();
        idle
    }

    /// Number of datagrams that arrive within `wait` of each other
    /// (sets the read timeout to `wait`).
    pub fn count(&self, wait: std::time::Duration) -> usize {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut n = 0;
        let mut buf = [0u8; 16];
        while self.sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// Write `text` to `path` with permission bits `mode`; returns `path`.
pub fn write_with_mode(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> PathBuf {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A temporary directory that holds a test's files (removed when dropped).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the directory (nothing is created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The file `name` in the directory, holding `text`, mode 0600.
    pub fn file(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        self.file_with_mode(name, text, 0o600)
    }

    /// The file `name` in the directory, holding `text`, with bits `mode`.
    pub fn file_with_mode(&self, name: &str, text: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        write_with_mode(&self.join(name), text, mode)
    }

    /// The number of entries in the directory.
    pub fn entries(&self) -> usize {
        fs::read_dir(self.path()).unwrap().count()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// True when the test runs as root (`/proc/self` belongs to the
/// effective user).
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Ends the calling test early, saying why (`SKIPPED ...` on stderr),
/// unless it runs as root. Under `CI=true` (where the tests run as root) a
/// skip is a failure instead: it would hide the test.
#[macro_export]
macro_rules! skip_unless_root {
    ($why:expr) => {
        if !$crate::running_as_root() {
            $crate::skipped(&$why);
            return;
        }
    };
}

/// Say that a test is skipped, and why; under `CI=true`, fail instead.
pub fn skipped(why: &str) {
    eprintln!("\nSKIPPED: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: a skipped test is a failure ({why})");
    }
}

/// `setpriv` (util-linux), when installed.
pub fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// A predicate on an output stream: it contains every one of `needles`
/// (a failure names the needle that is missing).
pub fn contains_all<S: AsRef<str>>(needles: impl IntoIterator<Item = S>) -> BoxPredicate<str> {
    let mut needles = needles.into_iter();
    let Some(first) = needles.next() else {
        return BoxPredicate::new(predicate::always());
    };
    needles.fold(
        BoxPredicate::new(predicate::str::contains(first.as_ref())),
        |all, n| BoxPredicate::new(all.and(predicate::str::contains(n.as_ref()))),
    )
}

/// Run `cmd`, assert that it fails and that its standard error contains
/// every one of `needles`; the assertion is returned for more checks
/// (the exit code, standard output).
pub fn refuses<S: AsRef<str>>(
    cmd: &mut assert_cmd::Command,
    needles: impl IntoIterator<Item = S>,
) -> assert_cmd::assert::Assert {
    cmd.assert().failure().stderr(contains_all(needles))
}

/// Standard output then standard error of `out`, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Seconds since 1970 now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What is wrong with `out` as the end of a refused invocation that ran at
/// most `seconds`: it must fail with an exit code (no code means a signal
/// or the timeout), must not panic, and its output must contain `names`
/// (the bad value). Empty when all is well.
pub fn refusal_problems(out: &Output, seconds: u64, names: &str) -> Vec<String> {
    let text = output_text(out);
    let head: String = text.chars().take(400).collect();
    let mut problems = Vec::new();
    if out.status.success() || out.status.code().is_none() {
        problems.push(format!(
            "status {:?} (must fail with an exit code; no code means a signal or the {seconds} s timeout)",
            out.status
        ));
    }
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        problems.push(format!("panicked:\n{head}"));
    }
    if !text.contains(names) {
        problems.push(format!("output does not name {names:?}:\n{head}"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_all_wants_every_needle() {
        let p = contains_all(["knock", "door"]);
        assert!(p.eval("a knock at the door"));
        assert!(!p.eval("a knock"));
        assert!(!p.eval("the door"));
        assert!(contains_all(Vec::<&str>::new()).eval(""));
    }

    #[test]
    fn refusal_problems_name_each_fault() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        let out = |code: i32, stderr: &str| Output {
            status: ExitStatus::from_raw(code),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        // Exit code 1 (a raw wait status holds it shifted by 8).
        assert!(refusal_problems(&out(1 << 8, "bad port \"80x\""), 20, "80x").is_empty());
        let p = refusal_problems(&out(0, "ok"), 20, "80x");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("status") && p[1].contains("does not name"));
        // Killed by signal 9: no exit code.
        assert!(refusal_problems(&out(9, "80x"), 20, "80x")[0].contains("signal"));
        let p = refusal_problems(&out(101 << 8, "thread 'main' panicked: 80x"), 20, "80x");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("panicked"));
    }
}
