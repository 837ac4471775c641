//! Helpers shared by the test files.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use netns_tests::{wait, Daemon, Lab};

/// How long "nothing happens" is watched for.
pub const QUIET: Duration = Duration::from_millis(800);

/// `echo %IP% > FILE` (FILE inside the lab directory).
pub fn echo_ip(lab: &Lab, file: &str) -> String {
    format!("echo %IP% > {}", lab.path(file).display())
}

/// `echo %IP% >> FILE` (one line per run).
pub fn append_ip(lab: &Lab, file: &str) -> String {
    format!("echo %IP% >> {}", lab.path(file).display())
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
    wait::poll_until(wait::DEFAULT_TIMEOUT, || {
        let text = fs::read_to_string(path).ok()?;
        (text.ends_with('\n') && text.lines().count() >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{} does not have {n} line(s) within {:?}: {:?}\n{}",
            path.display(),
            wait::DEFAULT_TIMEOUT,
            lines(path),
            d.dump()
        )
    });
    lines(path)
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

/// Knock (again) until `path` has `n` lines, at most 10 s. A repeat of
/// the same knock from the same address within the door's `Seq_Timeout`
/// of its opening is taken as stragglers of that knock (SPEC section 2),
/// so doors knocked again use a short `Seq_Timeout`.
pub fn knock_until_lines(path: &Path, n: usize, d: &Daemon, mut knock: impl FnMut()) {
    let done = wait::poll_until(Duration::from_secs(10), || {
        knock();
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
