//! Where a door's current sequence comes from.
//!
//! The event loop only asks a [`SequenceSource`] for the current sequence,
//! tells it when a knock used that sequence up, and lets it re-check itself
//! now and then. A fixed `Sequence` and a one-time sequence file are the two
//! sources today; time-based sequences derived from a secret fit the same
//! interface.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use knock_common::otp::{self, OtpError, OtpLine};
use knock_common::Sequence;

use crate::config::SequenceSpec;

/// A message for the log, produced by a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Error(String),
}

pub trait SequenceSource {
    /// The sequence a knocker has to send now; `None` disables the door.
    fn current(&self) -> Option<&Sequence>;

    /// A knock with the current sequence succeeded: use it up. Called before
    /// the door's command runs; an `Err` refuses the knock (and says why).
    fn consume(&mut self) -> Result<Vec<Note>, Vec<Note>>;

    /// Re-check the source (a file appended to, edited or removed).
    /// Returns what to log; the current sequence may have changed.
    fn refresh(&mut self) -> Vec<Note>;

    /// Human description for logs: the sequence or the file.
    fn describe(&self) -> String;

    /// When [`refresh`](SequenceSource::refresh) is due next without any
    /// notification (e.g. a time-based sequence's next window). `None`: only
    /// when a watched file changes. The event loop sleeps until then.
    fn next_refresh(&self) -> Option<std::time::Instant> {
        None
    }
}

/// Build the source for a door's `Sequence`/`One_Time_Sequences` directive.
pub fn from_spec(spec: &SequenceSpec) -> (Box<dyn SequenceSource>, Vec<Note>) {
    match spec {
        SequenceSpec::Fixed(seq) => (Box::new(Fixed(seq.clone())), Vec::new()),
        SequenceSpec::OneTime(path) => {
            let mut src = OneTimeFile::new(path);
            let notes = src.refresh();
            (Box::new(src), notes)
        }
    }
}

/// A sequence that never changes.
pub struct Fixed(pub Sequence);

impl SequenceSource for Fixed {
    fn current(&self) -> Option<&Sequence> {
        Some(&self.0)
    }
    fn consume(&mut self) -> Result<Vec<Note>, Vec<Note>> {
        Ok(Vec::new())
    }
    fn refresh(&mut self) -> Vec<Note> {
        Vec::new()
    }
    fn describe(&self) -> String {
        self.0.to_string()
    }
}

/// A one-time sequence file. The file is re-read whenever it is needed and
/// never held open, so appending to it while the daemon runs is safe.
pub struct OneTimeFile {
    path: PathBuf,
    current: Option<OtpLine>,
    /// Why the door is disabled, to log a change of state only once.
    disabled: Option<String>,
    /// Line numbers already warned about, to warn once per bad line.
    warned: Vec<usize>,
    /// A line whose knock was refused because it could not be marked used.
    /// It went over the wire, so it must never work: the door stays
    /// disabled until it is marked.
    refused: Option<OtpLine>,
    /// When to try marking `refused` again: no file event says when a
    /// read-only or full file system takes writes again, so it is retried
    /// every [`MARK_RETRY`] while it is pending (and only then).
    retry_at: Option<Instant>,
}

/// How often a refused one-time line is retried (see `retry_at`).
pub const MARK_RETRY: Duration = Duration::from_secs(1);

impl OneTimeFile {
    pub fn new(path: &Path) -> Self {
        OneTimeFile {
            path: path.to_path_buf(),
            current: None,
            disabled: None,
            warned: Vec::new(),
            refused: None,
            retry_at: None,
        }
    }

    pub fn current_line(&self) -> Option<&OtpLine> {
        self.current.as_ref()
    }

    fn disable(&mut self, why: String, notes: &mut Vec<Note>) {
        self.current = None;
        if self.disabled.as_deref() != Some(why.as_str()) {
            notes.push(Note::Error(format!("{why}; door disabled")));
            self.disabled = Some(why);
        }
    }

    fn not_writable(&mut self, notes: &mut Vec<Note>) {
        self.disable(
            format!(
                "one-time sequence file {} is not writable",
                self.path.display()
            ),
            notes,
        );
    }

    /// Re-read the file and take its first usable line as current (after
    /// marking a refused line, if there is one).
    fn rescan(&mut self, notes: &mut Vec<Note>) {
        self.retry_at = None;
        if let Some(line) = self.refused.clone() {
            match otp::mark_used(&self.path, &line) {
                Ok(()) => {
                    self.refused = None;
                    notes.push(Note::Info(format!(
                        "refused one-time sequence at {}:{} is now marked used",
                        self.path.display(),
                        line.line_no
                    )));
                }
                // The file was rewritten: its lines are what counts now.
                Err(OtpError::Changed { .. }) => self.refused = None,
                Err(OtpError::Io { .. }) => {
                    self.retry_at = Some(Instant::now() + MARK_RETRY);
                    self.not_writable(notes);
                    return;
                }
            }
        }
        let scan = match otp::scan(&self.path) {
            Ok(s) => s,
            Err(e) => {
                self.disable(format!("cannot read one-time sequences: {e}"), notes);
                return;
            }
        };
        for w in &scan.warnings {
            if !self.warned.contains(&w.line_no) {
                self.warned.push(w.line_no);
                notes.push(Note::Error(format!(
                    "{}:{}: skipping line \"{}\": {}",
                    self.path.display(),
                    w.line_no,
                    w.text,
                    w.error
                )));
            }
        }
        match scan.usable.into_iter().next() {
            Some(line) => {
                if self.disabled.take().is_some() {
                    notes.push(Note::Info(format!(
                        "one-time sequences available again in {} (line {}); door enabled",
                        self.path.display(),
                        line.line_no
                    )));
                }
                self.current = Some(line);
            }
            None => self.disable(
                format!("no one-time sequences left in {}", self.path.display()),
                notes,
            ),
        }
    }
}

impl SequenceSource for OneTimeFile {
    fn current(&self) -> Option<&Sequence> {
        self.current.as_ref().map(|l| &l.sequence)
    }

    /// Mark the current line used and flushed to disk before anything else
    /// happens. If that fails the knock is refused: a sequence that could
    /// not be invalidated must never open the door.
    fn consume(&mut self) -> Result<Vec<Note>, Vec<Note>> {
        let mut notes = Vec::new();
        let Some(line) = self.current.clone() else {
            return Err(vec![Note::Error(
                "no current one-time sequence".to_string(),
            )]);
        };
        if let Err(e) = otp::mark_used(&self.path, &line) {
            notes.push(Note::Error(format!(
                "cannot mark one-time sequence as used, knock refused: {e}"
            )));
            match e {
                // The file was edited: take whatever is current now.
                OtpError::Changed { .. } => self.rescan(&mut notes),
                OtpError::Io { .. } => {
                    self.refused = Some(line);
                    self.retry_at = Some(Instant::now() + MARK_RETRY);
                    self.not_writable(&mut notes);
                }
            }
            return Err(notes);
        }
        notes.push(Note::Info(format!(
            "one-time sequence at {}:{} used",
            self.path.display(),
            line.line_no
        )));
        self.rescan(&mut notes);
        Ok(notes)
    }

    fn refresh(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        self.rescan(&mut notes);
        notes
    }

    fn next_refresh(&self) -> Option<Instant> {
        self.retry_at
    }

    fn describe(&self) -> String {
        match &self.current {
            Some(l) => format!(
                "one-time {}:{} ({})",
                self.path.display(),
                l.line_no,
                l.sequence
            ),
            None => format!("one-time {} (exhausted)", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    fn otp_source(path: &Path) -> (Box<dyn SequenceSource>, Vec<Note>) {
        from_spec(&SequenceSpec::OneTime(path.to_path_buf()))
    }

    #[test]
    fn fixed_never_changes() {
        let seq: Sequence = "7000,8000".parse().unwrap();
        let (mut s, notes) = from_spec(&SequenceSpec::Fixed(seq.clone()));
        assert!(notes.is_empty());
        assert!(s.consume().unwrap().is_empty());
        assert_eq!(s.current(), Some(&seq));
    }

    #[test]
    fn one_time_advances_and_marks_durably_before_returning() {
        let f = file(" 1000,2000\n 3000\n");
        let (mut s, notes) = otp_source(f.path());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(s.current().unwrap().to_string(), "1000:tcp,2000:tcp");
        s.consume().unwrap();
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "#1000,2000\n 3000\n"
        );
        assert_eq!(s.current().unwrap().to_string(), "3000:tcp");
        let notes = s.consume().unwrap();
        assert!(s.current().is_none());
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, Note::Error(m) if m.contains("no one-time sequences left"))),
            "{notes:?}"
        );
    }

    #[test]
    fn exhausted_file_comes_back_when_appended_to() {
        let f = file("#1000\n");
        let (mut s, notes) = otp_source(f.path());
        assert!(s.current().is_none());
        assert_eq!(notes.len(), 1);
        assert!(s.refresh().is_empty(), "the same state is not logged twice");
        otp::append(f.path(), &["4000:udp".parse().unwrap()]).unwrap();
        let notes = s.refresh();
        assert_eq!(s.current().unwrap().to_string(), "4000:udp");
        assert!(
            matches!(&notes[0], Note::Info(m) if m.contains("door enabled")),
            "{notes:?}"
        );
    }

    #[test]
    fn unwritable_file_refuses_the_knock_and_disables() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seqs");
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        let (mut s, _) = otp_source(&p);
        std::fs::remove_file(&p).unwrap();
        let notes = s.consume().unwrap_err();
        assert!(
            matches!(&notes[0], Note::Error(m) if m.contains("knock refused")),
            "{notes:?}"
        );
        assert!(s.current().is_none());
    }

    #[test]
    fn refused_line_never_works_once_the_file_is_writable_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seqs");
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        let (mut s, _) = otp_source(&p);
        std::fs::remove_file(&p).unwrap();
        assert!(s.consume().is_err());
        // A refused line asks to be retried (no file event may come).
        assert!(s.next_refresh().is_some());
        // Still unwritable: still disabled, said once, still retried.
        assert!(s.refresh().is_empty());
        assert!(s.current().is_none());
        assert!(s.next_refresh().is_some());
        // Back as it was: the refused line is marked first, the next one
        // becomes current, and no retry is pending any more.
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        let notes = s.refresh();
        assert_eq!(s.next_refresh(), None);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "#1000\n 2000\n");
        assert_eq!(s.current().unwrap().to_string(), "2000:tcp");
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, Note::Info(m) if m.contains("seqs:1 is now marked used"))),
            "{notes:?}"
        );
        // A rewritten file simply counts as it is.
        let (mut s, _) = otp_source(&p);
        std::fs::remove_file(&p).unwrap();
        assert!(s.consume().is_err());
        std::fs::write(&p, " 3000\n").unwrap();
        s.refresh();
        assert_eq!(s.current().unwrap().to_string(), "3000:tcp");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), " 3000\n");
    }

    #[test]
    fn edited_file_refuses_stale_sequence_and_takes_new_current() {
        let f = file(" 1000\n 2000\n");
        let (mut s, _) = otp_source(f.path());
        std::fs::write(f.path(), " 5000\n 2000\n").unwrap();
        assert!(s.consume().is_err());
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), " 5000\n 2000\n");
        assert_eq!(s.current().unwrap().to_string(), "5000:tcp");
    }

    #[test]
    fn bad_lines_warned_once() {
        let f = file(" 80x\n 1000\n");
        let (mut s, notes) = otp_source(f.path());
        assert_eq!(notes.len(), 1);
        assert!(
            matches!(&notes[0], Note::Error(m) if m.contains(":1: skipping line \"80x\"")),
            "{notes:?}"
        );
        assert!(s.refresh().is_empty());
    }
}
