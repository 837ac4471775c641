//! Logging: log file, syslog, stdout (`-v`) and debug output (`-D`).
//!
//! A [`Logger`] is shared by reference; every method takes `&self` (the sinks
//! sit behind a mutex), so it can be used from anywhere in the daemon.
//!
//! Where each kind of message goes:
//!
//! | method | log file | syslog | stdout | stderr |
//! |---|---|---|---|---|
//! | [`Logger::log`] | yes | yes (notice) | with `-v` | only while the log file is unusable |
//! | [`Logger::error`] | yes | yes (err) | no | yes |
//! | [`Logger::verbose`] | no | no | with `-v` | no |
//! | [`Logger::debug`] | no | no | with `-D`, date-prefixed | no |
//!
//! Log-file lines are `[YYYY-MM-DD HH:MM] MESSAGE` in local time, appended and
//! flushed one line at a time. A log file that cannot be opened or written
//! never stops the daemon: the problem is reported once on stderr, the lines
//! that would have gone to the file go to stderr instead, and the file is
//! opened again on the next [`Logger::reopen`] (`SIGHUP`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Local};

/// The syslog identity of the daemon.
pub const SYSLOG_IDENT: &str = "knockd";

/// Permissions of a newly created log file (before the umask).
pub const LOG_FILE_MODE: u32 = 0o640;

/// A log-file line for `msg` at time `now`: `[YYYY-MM-DD HH:MM] msg\n`.
pub fn format_line(now: DateTime<Local>, msg: &str) -> String {
    format!("{}{msg}\n", line_prefix(now))
}

/// `[YYYY-MM-DD HH:MM] `: what starts every log-file line.
fn line_prefix(now: DateTime<Local>) -> String {
    format!("[{}] ", now.format("%Y-%m-%d %H:%M"))
}

/// The `[YYYY-MM-DD HH:MM] ` prefix of log-file lines, formatted once a
/// minute instead of once a line (a flood of knocks logs a line per packet).
/// Keyed by the minute since the epoch: every time zone in use is offset by
/// whole minutes, so local minutes start when UTC minutes do.
#[derive(Default)]
struct Stamp {
    minute: Option<u64>,
    text: String,
}

impl Stamp {
    fn prefix(&mut self) -> &str {
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .ok();
        if minute.is_none() || minute != self.minute {
            self.text = line_prefix(Local::now());
            self.minute = minute;
        }
        &self.text
    }
}

/// A debug line for `msg` at time `now`: `YYYY-MM-DD HH:MM:SS msg\n`.
pub fn format_debug_line(now: DateTime<Local>, msg: &str) -> String {
    format!("{} {}\n", now.format("%Y-%m-%d %H:%M:%S"), msg)
}

/// RFC 3164 syslog formatter that stamps messages in local time.
///
/// (The `syslog` crate's own formatter stamps in UTC on Unix.)
#[derive(Clone, Debug)]
struct LocalFormatter {
    pid: u32,
}

impl<T: std::fmt::Display> syslog::LogFormat<T> for LocalFormatter {
    fn format<W: Write>(
        &self,
        w: &mut W,
        severity: syslog::Severity,
        message: T,
    ) -> syslog::Result<()> {
        let priority = syslog::Facility::LOG_DAEMON as u8 | severity as u8;
        write!(
            w,
            "<{}>{} {}[{}]: {}",
            priority,
            Local::now().format("%b %e %H:%M:%S"),
            SYSLOG_IDENT,
            self.pid,
            message
        )
        .map_err(syslog::Error::Write)
    }
}

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, LocalFormatter>;

fn connect_syslog() -> Result<SyslogWriter, syslog::Error> {
    syslog::unix(LocalFormatter {
        pid: std::process::id(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Severity {
    Notice,
    Err,
}

struct Sinks {
    file_path: Option<PathBuf>,
    file: Option<File>,
    /// The configured log file is currently unusable (already reported).
    file_broken: bool,
    use_syslog: bool,
    syslog: Option<SyslogWriter>,
    /// Syslog is wanted but unreachable (already reported).
    syslog_broken: bool,
    /// Test sink: every message of `log`/`error` (without date) in order.
    memory: Option<Vec<String>>,
    stamp: Stamp,
}

/// The daemon's logger. See the module documentation.
pub struct Logger {
    verbose: bool,
    debug: bool,
    sinks: Mutex<Sinks>,
}

impl Logger {
    /// A logger writing action messages to `log_file` (if any) and syslog
    /// (if `use_syslog`); `verbose` (`-v`) and `debug` (`-D`) enable stdout
    /// output. Sinks that cannot be opened are reported on stderr; the
    /// logger is always created.
    pub fn new(log_file: Option<PathBuf>, use_syslog: bool, verbose: bool, debug: bool) -> Logger {
        let logger = Logger {
            verbose,
            debug,
            sinks: Mutex::new(Sinks {
                file_path: log_file,
                file: None,
                file_broken: false,
                use_syslog,
                syslog: None,
                syslog_broken: false,
                memory: None,
                stamp: Stamp::default(),
            }),
        };
        logger.reopen();
        logger
    }

    /// A logger that keeps every `log`/`error` message in memory (see
    /// [`Logger::captured`]) besides the usual `-v`/`-D` output. For tests.
    pub fn memory(verbose: bool, debug: bool) -> Logger {
        let logger = Logger::new(None, false, verbose, debug);
        logger.lock().memory = Some(Vec::new());
        logger
    }

    /// Messages kept by a [`Logger::memory`] logger, oldest first (empty for
    /// other loggers).
    pub fn captured(&self) -> Vec<String> {
        self.lock().memory.clone().unwrap_or_default()
    }

    /// Whether `-v` output is on.
    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    fn lock(&self) -> MutexGuard<'_, Sinks> {
        // A panic while logging must not silence the daemon afterwards.
        self.sinks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An action message (`OPEN SESAME`, `running command`, ...): log file,
    /// syslog, and stdout with `-v`.
    pub fn log(&self, msg: &str) {
        self.emit(msg, Severity::Notice);
        if self.verbose {
            write_stream(&mut io::stdout().lock(), &format!("{msg}\n"));
        }
    }

    /// An error: log file, syslog, and stderr.
    pub fn error(&self, msg: &str) {
        let to_stderr = self.emit(msg, Severity::Err);
        if !to_stderr {
            write_stream(&mut io::stderr().lock(), &format!("knockd: {msg}\n"));
        }
    }

    /// A status message printed to stdout with `-v` only.
    pub fn verbose(&self, msg: &str) {
        if self.verbose {
            write_stream(&mut io::stdout().lock(), &format!("{msg}\n"));
        }
    }

    /// A debug message printed to stdout, date-prefixed, with `-D` only.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            write_stream(
                &mut io::stdout().lock(),
                &format_debug_line(Local::now(), msg),
            );
        }
    }

    /// Reopen the log file (log rotation) and reconnect to syslog. A sink
    /// that still cannot be opened is reported on stderr.
    pub fn reopen(&self) {
        let mut s = self.lock();
        s.file = None;
        s.file_broken = false;
        if let Some(path) = s.file_path.clone() {
            match open_log_file(&path) {
                Ok(f) => s.file = Some(f),
                Err(e) => {
                    s.file_broken = true;
                    report(&format!(
                        "cannot open log file {}: {e}; logging to stderr until the next reload",
                        path.display()
                    ));
                }
            }
        }
        s.syslog = None;
        s.syslog_broken = false;
        if s.use_syslog {
            match connect_syslog() {
                Ok(w) => s.syslog = Some(w),
                Err(e) => {
                    s.syslog_broken = true;
                    report(&format!("cannot connect to syslog: {e}"));
                }
            }
        }
    }

    /// Apply a reloaded configuration's sinks, then [`reopen`](Logger::reopen).
    pub fn set_sinks(&self, log_file: Option<PathBuf>, use_syslog: bool) {
        {
            let mut s = self.lock();
            s.file_path = log_file;
            s.use_syslog = use_syslog;
        }
        self.reopen();
    }

    /// Write to file/syslog/memory; returns whether the message also went to
    /// stderr (because the log file is unusable).
    fn emit(&self, msg: &str, severity: Severity) -> bool {
        let mut s = self.lock();
        if let Some(mem) = s.memory.as_mut() {
            mem.push(msg.to_string());
        }
        let mut to_stderr = false;
        if let Some(path) = s.file_path.clone() {
            let line = format!("{}{msg}\n", s.stamp.prefix());
            if let Some(f) = s.file.as_mut() {
                if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
                    s.file = None;
                    s.file_broken = true;
                    report(&format!(
                        "cannot write log file {}: {e}; logging to stderr until the next reload",
                        path.display()
                    ));
                }
            }
            if s.file.is_none() {
                write_stream(&mut io::stderr().lock(), &line);
                to_stderr = true;
            }
        }
        if s.use_syslog {
            if let Some(w) = s.syslog.as_mut() {
                let sent = match severity {
                    Severity::Notice => w.notice(msg),
                    Severity::Err => w.err(msg),
                };
                if let Err(e) = sent {
                    // syslogd restarted? Reconnect and retry once.
                    let retried = connect_syslog().and_then(|mut w2| {
                        match severity {
                            Severity::Notice => w2.notice(msg),
                            Severity::Err => w2.err(msg),
                        }?;
                        Ok(w2)
                    });
                    match retried {
                        Ok(w2) => s.syslog = Some(w2),
                        Err(_) => {
                            s.syslog = None;
                            s.syslog_broken = true;
                            report(&format!(
                                "cannot write to syslog: {e}; retrying at the next reload"
                            ));
                        }
                    }
                }
            }
        }
        to_stderr
    }
}

/// Never through another user's symlink, never into a file someone else
/// owns or may write (see `knock_common::fsafe`); the error says why.
fn open_log_file(path: &Path) -> io::Result<File> {
    knock_common::fsafe::open_for_append_safely(path, LOG_FILE_MODE).map_err(|e| e.reason.into_io())
}

/// Report a problem with the logging itself on stderr.
fn report(msg: &str) {
    write_stream(&mut io::stderr().lock(), &format!("knockd: {msg}\n"));
}

/// Write and flush, ignoring failures (a closed stdout must not kill us).
fn write_stream(w: &mut dyn Write, text: &str) {
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn format_line_has_classic_shape() {
        let t = Local.with_ymd_and_hms(2024, 3, 7, 9, 5, 59).unwrap();
        assert_eq!(
            format_line(t, "door1: OPEN SESAME"),
            "[2024-03-07 09:05] door1: OPEN SESAME\n"
        );
        let t = Local.with_ymd_and_hms(1999, 12, 31, 23, 59, 0).unwrap();
        assert_eq!(format_line(t, "x"), "[1999-12-31 23:59] x\n");
    }

    #[test]
    fn cached_stamp_is_the_current_minute() {
        let mut st = Stamp::default();
        let before = format_line(Local::now(), "");
        let p = st.prefix().to_string();
        let after = format_line(Local::now(), "");
        assert!(
            p == before.trim_end_matches('\n') || p == after.trim_end_matches('\n'),
            "{p:?} vs {before:?}/{after:?}"
        );
        // A stale cache entry is replaced.
        st.minute = Some(0);
        st.text = "[1970-01-01 00:00] ".into();
        assert_ne!(st.prefix(), "[1970-01-01 00:00] ");
    }

    #[test]
    fn debug_line_has_correct_month() {
        let t = Local.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_debug_line(t, "pkt"), "2024-01-02 03:04:05 pkt\n");
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines of `path` without their time prefix (each checked).
    fn bodies(path: &Path) -> Vec<String> {
        lines(path).iter().map(|l| body(l).to_string()).collect()
    }

    /// A logger writing to `path` only: no syslog, no verbose or debug lines.
    fn to_file(path: &Path) -> Logger {
        Logger::new(Some(path.to_path_buf()), false, false, false)
    }

    /// A new directory, the path of `name` in it and a logger writing there
    /// ([`to_file`]); the file is not created yet.
    fn temp_logger(name: &str) -> (tempfile::TempDir, PathBuf, Logger) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let log = to_file(&path);
        (dir, path, log)
    }

    /// Strip and check the `[YYYY-MM-DD HH:MM] ` prefix.
    fn body(line: &str) -> &str {
        let b = line.as_bytes();
        assert!(b.len() > 19, "line too short: {line:?}");
        assert_eq!(b[0], b'[', "{line:?}");
        assert_eq!(&line[17..19], "] ", "{line:?}");
        assert!(chrono::NaiveDateTime::parse_from_str(&line[1..17], "%Y-%m-%d %H:%M").is_ok());
        &line[19..]
    }

    #[test]
    fn appends_to_log_file_with_mode_0640() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knockd.log");
        std::fs::write(&path, "old line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = to_file(&path);
        log.log("first");
        log.error("second");
        log.verbose("not in the file");
        log.debug("not in the file either");
        let l = lines(&path);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], "old line");
        assert_eq!(body(&l[1]), "first");
        assert_eq!(body(&l[2]), "second");

        let fresh = dir.path().join("new.log");
        let log = to_file(&fresh);
        log.log("hello");
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        // The umask can only remove bits.
        assert_eq!(mode & !LOG_FILE_MODE, 0, "mode {mode:o}");
        assert_eq!(bodies(&fresh), ["hello"]);
    }

    /// Where lines go when the file changes between them: the logger of
    /// file `a` logs "one", acts, logs "two", acts, logs "three"; then `a`
    /// and `b` (another path in the same directory) hold `want`.
    #[test]
    fn lines_follow_the_log_file() {
        type Act = fn(&Logger, &Path, &Path);
        let cases: &[(&str, Act, Act, [&[&str]; 2])] = &[
            (
                "rotation (a renamed to b): the old file until reopen",
                |_, a, b| std::fs::rename(a, b).unwrap(),
                |log, _, _| log.reopen(),
                [&["three"], &["one", "two"]],
            ),
            (
                "set_sinks switches to b, then to no file",
                |log, _, b| log.set_sinks(Some(b.to_path_buf()), false),
                |log, _, _| log.set_sinks(None, false),
                [&["one"], &["two"]],
            ),
        ];
        for (case, first, second, [want_a, want_b]) in cases {
            let (dir, a, log) = temp_logger("a.log");
            let b = dir.path().join("b.log");
            log.log("one");
            first(&log, &a, &b);
            log.log("two");
            second(&log, &a, &b);
            log.log("three");
            assert_eq!(bodies(&a), *want_a, "{case}: a");
            assert_eq!(bodies(&b), *want_b, "{case}: b");
        }
    }

    #[test]
    fn unusable_log_file_does_not_stop_logging_and_recovers() {
        // The directory does not exist: open fails, logging goes on.
        let (dir, path, log) = temp_logger("gone/knockd.log");
        let sub = dir.path().join("gone");
        log.log("lost to stderr");
        log.error("also stderr");
        assert!(!path.exists());
        // The directory comes back; the next reopen uses the file again.
        std::fs::create_dir(&sub).unwrap();
        log.log("still stderr until reopen");
        assert!(!path.exists());
        log.reopen();
        log.log("back in the file");
        assert_eq!(bodies(&path), ["back in the file"]);
    }

    #[test]
    fn memory_sink_captures_in_order() {
        let log = Logger::memory(false, false);
        log.log("one");
        log.verbose("not captured");
        log.error("two");
        assert_eq!(log.captured(), ["one", "two"]);
        let plain = Logger::new(None, false, false, false);
        plain.log("x");
        assert!(plain.captured().is_empty());
    }

    #[test]
    fn action_lines_and_errors_are_never_limited() {
        // The rate limit of per-packet lines (crate::ratelimit) is applied
        // by the caller before a line is built; the logger itself drops
        // nothing, however many lines come how fast.
        let log = Logger::memory(false, false);
        for i in 0..(crate::ratelimit::BURST as usize * 50) {
            log.log(&format!("10.0.0.{}: door: OPEN SESAME", i % 250));
            log.error(&format!(
                "door: command returned non-zero status code ({i})"
            ));
        }
        let got = log.captured();
        assert_eq!(got.len(), crate::ratelimit::BURST as usize * 100);
        assert_eq!(
            got.iter().filter(|m| m.ends_with("OPEN SESAME")).count(),
            got.len() / 2
        );
    }

    #[test]
    fn logger_is_sync() {
        fn check<T: Sync + Send>() {}
        check::<Logger>();
    }

    #[test]
    fn syslog_unavailable_is_not_fatal() {
        // Whether or not a syslog daemon listens here, this must not panic.
        let log = Logger::new(None, true, false, false);
        log.log("knockd unit test message");
        log.error("knockd unit test error");
        log.reopen();
    }
}
