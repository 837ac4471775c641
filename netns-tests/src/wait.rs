//! Bounded waiting: poll every 20 ms until a condition holds or a deadline
//! passes, and say clearly what was seen on timeout.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Polling interval of every wait helper.
pub const POLL: Duration = Duration::from_millis(20);

/// Default upper bound for "this should happen soon".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Poll `cond` until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Wait until `path` exists with content ending in a newline (a command like
/// `echo %IP% > FILE` has finished writing) and return the content.
pub fn wait_for_file(path: &Path, timeout: Duration) -> Result<String, String> {
    poll_until(timeout, || {
        let text = fs::read_to_string(path).ok()?;
        text.ends_with('\n').then_some(text)
    })
    .ok_or_else(|| {
        let state = match fs::read_to_string(path) {
            Ok(t) => format!("exists with content {t:?}"),
            Err(e) => format!("{e}"),
        };
        format!(
            "file {} did not appear (with a complete line) within {timeout:?}: {state}",
            path.display()
        )
    })
}

/// Wait until the text of `path` contains `needle` `count` times or more.
pub fn wait_for_log_count(
    path: &Path,
    needle: &str,
    count: usize,
    timeout: Duration,
) -> Result<(), String> {
    poll_until(timeout, || {
        (read(path).matches(needle).count() >= count).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "{:?} did not appear {count} time(s) in {} within {timeout:?}; it contains:\n{}",
            needle,
            path.display(),
            read(path)
        )
    })
}

/// Wait until the text of `path` contains `needle`.
pub fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> Result<(), String> {
    wait_for_log_count(path, needle, 1, timeout)
}

/// Err if `path` appears within `window`.
pub fn assert_file_absent_for(path: &Path, window: Duration) -> Result<(), String> {
    match poll_until(window, || path.exists().then_some(())) {
        None => Ok(()),
        Some(()) => Err(format!(
            "file {} appeared although it must not (content {:?})",
            path.display(),
            read(path)
        )),
    }
}
