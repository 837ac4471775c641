//! Where a door's sequences come from.
//!
//! The event loop asks a [`SequenceSource`] for the candidate sequences a
//! door accepts now, tells it which candidate opened the door (before the
//! command runs) and which candidates were seen on the wire in an attempt
//! that failed, and lets it re-check itself now and then. A fixed `Sequence`
//! and a one-time sequence file are defined here; rotating sequences derived
//! from a secret (one candidate per window, tagged with the window number)
//! are [`crate::rotating::RotatingSource`], which also uses the defaulted
//! methods for window boundaries and source-bound doors.
//!
//! One-time files: the candidates are the first usable line and the next
//! [`ONE_TIME_LOOKAHEAD`] usable lines, tagged with their line numbers. The
//! client marks a line used once it has sent it, so a knock whose last hit
//! was lost leaves the client one line ahead; the look-ahead keeps both ends
//! in step. A knock on a later line marks every earlier candidate used as
//! well. A line on which an attempt got past its first hit and then failed,
//! expired or was evicted is *burnt* (marked used): what was seen on the wire
//! never works later. Every mark is on disk before the call returns. Nothing
//! this module logs quotes a line of the file; lines are named by number.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use knock_common::otp::{self, OtpError, OtpLine};

use crate::config::SequenceSpec;
pub use crate::matcher::{BoundRange, Candidate, Tag};

/// Usable lines of a one-time file accepted after the current one.
pub const ONE_TIME_LOOKAHEAD: usize = 3;

/// A message for the log, produced by a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Error(String),
}

/// The answer to [`SequenceSource::consume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// The candidate is used up (durably): run the door's command.
    Accepted(Vec<Note>),
    /// The knock is refused (the notes say why): run nothing.
    Refused(Vec<Note>),
}

pub trait SequenceSource {
    /// The sequences a knocker may send now, with distinct tags; empty
    /// disables the door.
    fn candidates(&self) -> &[Candidate];

    /// The door opened on candidate `tag`: use it up. Called before the
    /// door's command runs; anything that must be durable is on disk when
    /// this returns [`Consumed::Accepted`].
    fn consume(&mut self, tag: Tag) -> Consumed;

    /// An attempt on candidate `tag` got past its first hit and then
    /// failed, expired or was evicted: the sequence was seen on the wire.
    /// Sources for which that matters make it unusable (durably).
    fn burn(&mut self, tag: Tag) -> Vec<Note>;

    /// Re-check the source (a file appended to, edited or removed).
    /// Returns what to log; the candidates may have changed.
    fn refresh(&mut self) -> Vec<Note>;

    /// Human description for logs and debug output. Never a secret: no
    /// sequence, no line of a one-time file.
    fn describe(&self) -> String;

    /// When the candidates next change on their own (a rotating door's next
    /// window, a one-time line waiting to be marked): the event loop
    /// refreshes the source at that instant. `None`: only when a watched
    /// file changes.
    fn next_change(&self) -> Option<SystemTime> {
        None
    }

    /// For a source-bound door (`Sequence_Bind_Source`): the hits it looks
    /// at. Its candidates then come from [`candidates_for`](Self::candidates_for).
    fn bound(&self) -> Option<BoundRange> {
        None
    }

    /// The candidates for knocker `src`; the same as
    /// [`candidates`](Self::candidates) unless the door is source-bound.
    fn candidates_for(&mut self, _src: IpAddr) -> &[Candidate] {
        self.candidates()
    }
}

/// Build the source for door `name`'s `Sequence`, `One_Time_Sequences` or
/// `Sequence_Secret` directive.
pub fn from_spec(name: &str, spec: &SequenceSpec) -> (Box<dyn SequenceSource>, Vec<Note>) {
    match spec {
        SequenceSpec::Fixed(seq) => (
            Box::new(Fixed(vec![Candidate {
                tag: 0,
                sequence: seq.clone(),
            }])),
            Vec::new(),
        ),
        SequenceSpec::OneTime(path) => {
            let mut src = OneTimeFile::new(path);
            let notes = src.refresh();
            (Box::new(src), notes)
        }
        SequenceSpec::Rotating(r) => {
            let (src, notes) = crate::rotating::RotatingSource::new(name, r);
            (Box::new(src), notes)
        }
    }
}

/// A sequence that never changes: one candidate, tag 0.
pub struct Fixed(Vec<Candidate>);

impl Fixed {
    pub fn new(sequence: knock_common::Sequence) -> Self {
        Fixed(vec![Candidate { tag: 0, sequence }])
    }
}

impl SequenceSource for Fixed {
    fn candidates(&self) -> &[Candidate] {
        &self.0
    }
    fn consume(&mut self, _tag: Tag) -> Consumed {
        Consumed::Accepted(Vec::new())
    }
    fn burn(&mut self, _tag: Tag) -> Vec<Note> {
        Vec::new()
    }
    fn refresh(&mut self) -> Vec<Note> {
        Vec::new()
    }
    fn describe(&self) -> String {
        "fixed sequence".to_string()
    }
}

/// A one-time sequence file. The file is re-read whenever it is needed and
/// never held open, so appending to it while the daemon runs is safe.
pub struct OneTimeFile {
    path: PathBuf,
    /// The candidate lines: the first usable one and the look-ahead.
    lines: Vec<OtpLine>,
    candidates: Vec<Candidate>,
    /// Why the door is disabled, to log a change of state only once.
    disabled: Option<Disabled>,
    /// Line numbers already warned about, to warn once per bad line.
    warned: Vec<usize>,
    /// Lines seen on the wire that could not be marked used (knock refused,
    /// or burnt). They must never work: the door stays disabled until every
    /// one is marked.
    pending: Vec<OtpLine>,
    /// When to try marking `pending` again: no file event says when a
    /// read-only or full file system takes writes again, so the lines are
    /// retried every [`MARK_RETRY`] while any is pending (and only then).
    retry_at: Option<SystemTime>,
}

/// Why a one-time door has no candidates. Two reasons are the same state
/// when they read the same (an error's text included), so a repeated
/// failure is logged once and a different one again.
#[derive(Debug, thiserror::Error)]
enum Disabled {
    #[error("one-time sequence file {} is not writable", .0.display())]
    NotWritable(PathBuf),
    #[error("cannot read one-time sequences: {0}")]
    Unreadable(#[source] OtpError),
    #[error("no one-time sequences left in {}", .0.display())]
    Exhausted(PathBuf),
}

impl PartialEq for Disabled {
    fn eq(&self, other: &Disabled) -> bool {
        self.to_string() == other.to_string()
    }
}

/// How often a refused one-time line is retried (see `retry_at`).
pub const MARK_RETRY: Duration = Duration::from_secs(1);

impl OneTimeFile {
    pub fn new(path: &Path) -> Self {
        OneTimeFile {
            path: path.to_path_buf(),
            lines: Vec::new(),
            candidates: Vec::new(),
            disabled: None,
            warned: Vec::new(),
            pending: Vec::new(),
            retry_at: None,
        }
    }

    fn set_lines(&mut self, lines: Vec<OtpLine>) {
        self.candidates = lines
            .iter()
            .map(|l| Candidate {
                tag: l.line_no as Tag,
                sequence: l.sequence.clone(),
            })
            .collect();
        self.lines = lines;
    }

    fn disable(&mut self, why: Disabled, notes: &mut Vec<Note>) {
        self.set_lines(Vec::new());
        if self.disabled.as_ref() != Some(&why) {
            notes.push(Note::Error(format!("{why}; door disabled")));
            self.disabled = Some(why);
        }
    }

    fn not_writable(&mut self, notes: &mut Vec<Note>) {
        self.disable(Disabled::NotWritable(self.path.clone()), notes);
    }

    /// Mark `line` used. `Ok(false)`: the line changed on disk (the file
    /// was edited), nothing marked; the caller rescans.
    fn mark(&mut self, line: &OtpLine, notes: &mut Vec<Note>) -> Result<bool, ()> {
        match otp::mark_used(&self.path, line) {
            Ok(()) => Ok(true),
            Err(e @ OtpError::Changed { .. }) => {
                notes.push(Note::Error(format!("{e}")));
                Ok(false)
            }
            Err(e @ OtpError::Io { .. }) => {
                notes.push(Note::Error(format!(
                    "cannot mark line {} used: {e}",
                    line.line_no
                )));
                self.pending.push(line.clone());
                self.retry_at = Some(SystemTime::now() + MARK_RETRY);
                self.not_writable(notes);
                Err(())
            }
        }
    }

    /// Re-read the file and take its first usable lines as candidates
    /// (after marking pending lines, if there are any).
    fn rescan(&mut self, notes: &mut Vec<Note>) {
        self.retry_at = None;
        while let Some(line) = self.pending.first().cloned() {
            match otp::mark_used(&self.path, &line) {
                Ok(()) => {
                    self.pending.remove(0);
                    notes.push(Note::Info(format!(
                        "one-time sequence at {}:{} (seen on the wire) is now marked used",
                        self.path.display(),
                        line.line_no
                    )));
                }
                // The file was rewritten: its lines are what counts now.
                Err(OtpError::Changed { .. }) => {
                    self.pending.remove(0);
                }
                Err(OtpError::Io { .. }) => {
                    self.retry_at = Some(SystemTime::now() + MARK_RETRY);
                    self.not_writable(notes);
                    return;
                }
            }
        }
        let scan = match otp::scan(&self.path) {
            Ok(s) => s,
            Err(e) => {
                self.disable(Disabled::Unreadable(e), notes);
                return;
            }
        };
        for w in &scan.warnings {
            if !self.warned.contains(&w.line_no) {
                self.warned.push(w.line_no);
                notes.push(Note::Error(format!(
                    "{}:{}: skipping line: {}",
                    self.path.display(),
                    w.line_no,
                    w.reason()
                )));
            }
        }
        let lines: Vec<OtpLine> = scan
            .usable
            .into_iter()
            .take(1 + ONE_TIME_LOOKAHEAD)
            .collect();
        match lines.first() {
            Some(first) => {
                if self.disabled.take().is_some() {
                    notes.push(Note::Info(format!(
                        "one-time sequences available again in {} (line {}); door enabled",
                        self.path.display(),
                        first.line_no
                    )));
                }
                self.set_lines(lines);
            }
            None => self.disable(Disabled::Exhausted(self.path.clone()), notes),
        }
    }
}

impl SequenceSource for OneTimeFile {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Mark the line that opened, then every earlier candidate line (the
    /// client skipped them), each flushed to disk, before anything else
    /// happens. If the opening line cannot be marked the knock is refused: a
    /// sequence that could not be invalidated must never open the door.
    fn consume(&mut self, tag: Tag) -> Consumed {
        let mut notes = Vec::new();
        let Some(at) = self.lines.iter().position(|l| l.line_no as Tag == tag) else {
            return Consumed::Refused(vec![Note::Error(format!(
                "line {tag} of {} is no longer a current one-time sequence, knock refused",
                self.path.display()
            ))]);
        };
        let line = self.lines[at].clone();
        match self.mark(&line, &mut notes) {
            Ok(true) => {}
            Ok(false) => {
                notes.push(Note::Error("knock refused".to_string()));
                self.rescan(&mut notes);
                return Consumed::Refused(notes);
            }
            Err(()) => {
                notes.push(Note::Error("knock refused".to_string()));
                return Consumed::Refused(notes);
            }
        }
        notes.push(Note::Info(format!(
            "one-time sequence at {}:{} used",
            self.path.display(),
            line.line_no
        )));
        let skipped: Vec<OtpLine> = self.lines[..at].to_vec();
        for l in &skipped {
            if let Ok(true) = self.mark(l, &mut notes) {
                notes.push(Note::Info(format!(
                    "one-time sequence at {}:{} skipped by the client, marked used",
                    self.path.display(),
                    l.line_no
                )));
            }
        }
        self.rescan(&mut notes);
        Consumed::Accepted(notes)
    }

    fn burn(&mut self, tag: Tag) -> Vec<Note> {
        let mut notes = Vec::new();
        let Some(line) = self.lines.iter().find(|l| l.line_no as Tag == tag).cloned() else {
            return notes;
        };
        if let Ok(true) = self.mark(&line, &mut notes) {
            notes.push(Note::Info(format!(
                "one-time sequence at {}:{} marked used: it was seen on the wire in an attempt that did not open",
                self.path.display(),
                line.line_no
            )));
        }
        if self.pending.is_empty() {
            self.rescan(&mut notes);
        }
        notes
    }

    fn refresh(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        self.rescan(&mut notes);
        notes
    }

    fn next_change(&self) -> Option<SystemTime> {
        self.retry_at.filter(|_| !self.pending.is_empty())
    }

    fn describe(&self) -> String {
        match self.lines.first() {
            Some(l) => format!(
                "one-time {} (current line {}, {} accepted)",
                self.path.display(),
                l.line_no,
                self.lines.len()
            ),
            None => format!("one-time {} (exhausted)", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::Sequence;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    fn otp_source(path: &Path) -> (Box<dyn SequenceSource>, Vec<Note>) {
        from_spec("door", &SequenceSpec::OneTime(path.to_path_buf()))
    }

    /// The candidates as (tag, sequence text).
    fn cands(s: &dyn SequenceSource) -> Vec<(Tag, String)> {
        s.candidates()
            .iter()
            .map(|c| (c.tag, c.sequence.to_string()))
            .collect()
    }

    fn accepted(c: Consumed) -> Vec<Note> {
        match c {
            Consumed::Accepted(n) => n,
            Consumed::Refused(n) => panic!("refused: {n:?}"),
        }
    }

    fn refused(c: Consumed) -> Vec<Note> {
        match c {
            Consumed::Refused(n) => n,
            Consumed::Accepted(n) => panic!("accepted: {n:?}"),
        }
    }

    /// A one-time source over " 1000\n 2000\n" whose file was then
    /// removed, so that marking a line fails (the directory lives as long
    /// as the returned guard).
    fn source_of_removed_file() -> (tempfile::TempDir, PathBuf, Box<dyn SequenceSource>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seqs");
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        let (s, _) = otp_source(&p);
        std::fs::remove_file(&p).unwrap();
        (dir, p, s)
    }

    /// Whether `n` is an error note containing `text`.
    fn error_with(n: &Note, text: &str) -> bool {
        matches!(n, Note::Error(m) if m.contains(text))
    }

    /// Whether `n` is an informational note containing `text`.
    fn info_with(n: &Note, text: &str) -> bool {
        matches!(n, Note::Info(m) if m.contains(text))
    }

    /// No note quotes a sequence of the file.
    fn no_secret(notes: &[Note], secrets: &[&str]) {
        for n in notes {
            let (Note::Info(m) | Note::Error(m)) = n;
            for s in secrets {
                assert!(!m.contains(s), "note quotes {s:?}: {m}");
            }
        }
    }

    #[test]
    fn fixed_never_changes() {
        let seq: Sequence = "7000,8000".parse().unwrap();
        let (mut s, notes) = from_spec("door", &SequenceSpec::Fixed(seq.clone()));
        assert!(notes.is_empty());
        assert!(accepted(s.consume(0)).is_empty());
        assert!(s.burn(0).is_empty());
        assert_eq!(cands(&*s), [(0, seq.to_string())]);
        assert!(!s.describe().contains("7000"), "{}", s.describe());
    }

    #[test]
    fn one_time_advances_and_marks_durably_before_returning() {
        let f = file(" 1000,2000\n 3000\n");
        let (mut s, notes) = otp_source(f.path());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            cands(&*s),
            [(1, "1000:tcp,2000:tcp".into()), (2, "3000:tcp".into())]
        );
        let notes = accepted(s.consume(1));
        no_secret(&notes, &["1000", "2000", "3000"]);
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "#1000,2000\n 3000\n"
        );
        assert_eq!(cands(&*s), [(2, "3000:tcp".into())]);
        let notes = accepted(s.consume(2));
        assert!(s.candidates().is_empty());
        assert!(
            notes
                .iter()
                .any(|n| error_with(n, "no one-time sequences left")),
            "{notes:?}"
        );
    }

    #[test]
    fn look_ahead_accepts_the_next_three_usable_lines_only() {
        let f = file(" 1001\n#1002\n 1003\n\n 80x\n 1004\n 1005\n 1006\n");
        let (s, _) = otp_source(f.path());
        assert_eq!(ONE_TIME_LOOKAHEAD, 3);
        let tags: Vec<Tag> = s.candidates().iter().map(|c| c.tag).collect();
        assert_eq!(tags, [1, 3, 6, 7], "current line plus 3 usable lines");
    }

    #[test]
    fn knock_on_a_later_line_marks_the_skipped_ones_first() {
        let f = file(" 1001\n 1002\n 1003\n 1004\n 1005\n");
        let (mut s, _) = otp_source(f.path());
        let notes = accepted(s.consume(3));
        no_secret(&notes, &["1001", "1002", "1003"]);
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "#1001\n#1002\n#1003\n 1004\n 1005\n"
        );
        assert_eq!(cands(&*s), [(4, "1004:tcp".into()), (5, "1005:tcp".into())]);
        // A tag that is no longer a candidate is refused.
        refused(s.consume(1));
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "#1001\n#1002\n#1003\n 1004\n 1005\n"
        );
    }

    #[test]
    fn burnt_line_is_marked_and_never_accepted_again() {
        let f = file(" 1001\n 1002\n 1003\n");
        let (mut s, _) = otp_source(f.path());
        let notes = s.burn(2);
        no_secret(&notes, &["1002"]);
        assert!(info_with(&notes[0], ":2 marked used"), "{notes:?}");
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            " 1001\n#1002\n 1003\n"
        );
        assert_eq!(cands(&*s), [(1, "1001:tcp".into()), (3, "1003:tcp".into())]);
        refused(s.consume(2));
        // Burning what is not a candidate does nothing.
        assert!(s.burn(2).is_empty());
        assert!(s.burn(99).is_empty());
    }

    #[test]
    fn exhausted_file_comes_back_when_appended_to() {
        let f = file("#1000\n");
        let (mut s, notes) = otp_source(f.path());
        assert!(s.candidates().is_empty());
        assert_eq!(notes.len(), 1);
        assert!(s.refresh().is_empty(), "the same state is not logged twice");
        otp::append(f.path(), &["4000:udp".parse().unwrap()]).unwrap();
        let notes = s.refresh();
        assert_eq!(cands(&*s), [(2, "4000:udp".into())]);
        assert!(info_with(&notes[0], "door enabled"), "{notes:?}");
    }

    #[test]
    fn unwritable_file_refuses_the_knock_and_disables() {
        let (_dir, _p, mut s) = source_of_removed_file();
        let notes = refused(s.consume(1));
        assert!(
            notes.iter().any(|n| error_with(n, "knock refused")),
            "{notes:?}"
        );
        assert!(s.candidates().is_empty());
    }

    #[test]
    fn refused_line_never_works_once_the_file_is_writable_again() {
        let (_dir, p, mut s) = source_of_removed_file();
        refused(s.consume(1));
        // Still unwritable: still disabled, said once.
        assert!(s.refresh().is_empty());
        assert!(s.candidates().is_empty());
        // A refused line asks to be retried (no file event may come).
        assert!(s.next_change().is_some());
        assert!(s.refresh().is_empty());
        assert!(s.next_change().is_some());
        // Back as it was: the refused line is marked first, the next one
        // becomes current, and no retry is pending any more.
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        let notes = s.refresh();
        assert_eq!(s.next_change(), None);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "#1000\n 2000\n");
        assert_eq!(cands(&*s), [(2, "2000:tcp".into())]);
        assert!(
            notes
                .iter()
                .any(|n| info_with(n, "seqs:1 (seen on the wire) is now marked used")),
            "{notes:?}"
        );
        // A rewritten file simply counts as it is.
        let (mut s, _) = otp_source(&p);
        std::fs::remove_file(&p).unwrap();
        refused(s.consume(2));
        std::fs::write(&p, " 3000\n").unwrap();
        s.refresh();
        assert_eq!(cands(&*s), [(1, "3000:tcp".into())]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), " 3000\n");
    }

    #[test]
    fn burn_on_an_unwritable_file_keeps_the_door_disabled_until_marked() {
        let (_dir, p, mut s) = source_of_removed_file();
        let notes = s.burn(1);
        assert!(
            notes.iter().any(|n| error_with(n, "not writable")),
            "{notes:?}"
        );
        assert!(s.candidates().is_empty());
        std::fs::write(&p, " 1000\n 2000\n").unwrap();
        s.refresh();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "#1000\n 2000\n");
        assert_eq!(cands(&*s), [(2, "2000:tcp".into())]);
    }

    #[test]
    fn edited_file_refuses_stale_sequence_and_takes_new_current() {
        let f = file(" 1000\n 2000\n");
        let (mut s, _) = otp_source(f.path());
        std::fs::write(f.path(), " 5000\n 2000\n").unwrap();
        refused(s.consume(1));
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), " 5000\n 2000\n");
        assert_eq!(cands(&*s)[0], (1, "5000:tcp".into()));
    }

    #[test]
    fn bad_lines_warned_once_without_quoting_them() {
        let f = file(" 80x\n 1000\n");
        let (mut s, notes) = otp_source(f.path());
        assert_eq!(notes.len(), 1);
        assert!(
            error_with(&notes[0], ":1: skipping line: a port is not a number"),
            "{notes:?}"
        );
        no_secret(&notes, &["80x", "80"]);
        assert!(s.refresh().is_empty());
        assert!(!s.describe().contains("1000"), "{}", s.describe());
    }
}
