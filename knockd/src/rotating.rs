//! Rotating (time-based) sequences: which windows a door accepts now, and
//! the durable record of the last used one.
//!
//! Rules (`knockd.conf(5)`), and how they are kept:
//! * A door accepts the windows `T - skew ..= T + skew`, `T = floor(now /
//!   period)` from the wall clock. Their sequences are derived once per
//!   window change ([`Windows::refresh`]), never per packet; with
//!   `Sequence_Bind_Source = yes` they depend on the knocker's address and
//!   are derived on a source's first hit in a window and cached (bounded,
//!   [`MAX_BOUND_SOURCES`]; the cache is emptied at each window change).
//! * A window's sequence opens the door at most once, from any source: when
//!   window `t` opens the door, "used until the end of window `t`" is written
//!   to the door's state file (temporary file, `fsync`, `rename`, `fsync` of
//!   the directory) *before* the command runs ([`Windows::consume`]); from
//!   then on a window is a candidate only when it starts at or after that
//!   instant. So no window `<= t` is accepted again, across `SIGHUP`, a
//!   restart and `kill -9`. The record is a Unix time, not a window number,
//!   so that changing `Sequence_Period` cannot revive or bury windows.
//! * A window the record cannot be written for is refused (the command does
//!   not run) and burned in memory: what was seen on the wire never works.
//! * The wall clock is read again at every refresh, so a jump either way is
//!   followed at the next window boundary or tick. A clock set back before
//!   the record accepts nothing until it catches up (logged once): a used
//!   window never works again, whatever the clock says.
//! * A state file that exists but cannot be read or parsed is treated as
//!   "every window accepted now is used" (fail closed, logged): the door
//!   works again `skew + 1` windows later, when a new record is written.
//!
//! Cost: `2·skew + 1` derivations (one HMAC-SHA256 block each for the
//! default length) per window and door, plus the same per new source and
//! window for bind-source doors; one small file write per successful knock.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use knock_common::rotate::{self, Deriver, Key, PortRange};
use knock_common::{Knock, Proto, Sequence};

use crate::config::RotatingSpec;
use crate::sources::{BoundRange, Candidate, Consumed, Note, SequenceSource, Tag};

/// Sources whose bind-source sequences are cached per window at most.
pub const MAX_BOUND_SOURCES: usize = 4096;

/// Largest state file read.
const MAX_STATE_BYTES: u64 = 4096;

/// The state file's first word.
const STATE_TAG: &str = "used-until";

/// Why a rotating door cannot work or a knock was refused. Never carries
/// the key or a sequence.
#[derive(Debug, thiserror::Error)]
pub enum RotatingError {
    #[error("key file {}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rotate::KeyError,
    },
    #[error("state file {}: {source}", path.display())]
    StateIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {}: not a \"{STATE_TAG} SECONDS\" record", path.display())]
    StateSyntax { path: PathBuf },
    #[error("window {window} is not a candidate now (used, or outside the skew)")]
    NotCandidate { window: u64 },
}

/// Seconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The durable "used until" record of one door.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded instant (Unix seconds) before which no window may
    /// start; `Ok(None)` when there is no record yet.
    pub fn read(&self) -> Result<Option<u64>, RotatingError> {
        let io_err = |source| RotatingError::StateIo {
            path: self.path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        if !file.metadata().map_err(io_err)?.is_file() {
            return Err(RotatingError::StateSyntax {
                path: self.path.clone(),
            });
        }
        let mut text = String::new();
        file.take(MAX_STATE_BYTES)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        let mut words = text.split_whitespace();
        match (
            words.next(),
            words.next().map(str::parse::<u64>),
            words.next(),
        ) {
            (Some(STATE_TAG), Some(Ok(n)), None) => Ok(Some(n)),
            _ => Err(RotatingError::StateSyntax {
                path: self.path.clone(),
            }),
        }
    }

    /// Record `until` durably: a temporary file in the same directory is
    /// written and flushed, renamed over the record, and the directory is
    /// flushed. The directory is created (mode 0700) when missing.
    pub fn write(&self, until: u64) -> Result<(), RotatingError> {
        let io_err = |source| RotatingError::StateIo {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
        // One writer per file (the daemon's single loop): a fixed temporary
        // name; one left behind by a crash is simply truncated.
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(format!("{STATE_TAG} {until}\n").as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(io_err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
    }
}

/// Why the door accepts nothing right now (logged once per change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The clock is before the end of the last used window.
    ClockBehind { until: u64 },
}

/// The accepted windows of one rotating door.
pub struct Windows {
    door: String,
    deriver: Deriver,
    length: usize,
    period: u64,
    skew: u64,
    range: PortRange,
    proto: Proto,
    bind_source: bool,
    state: StateFile,
    /// No window starting before this Unix second is accepted.
    used_until: u64,
    /// The current window `T` the candidates were computed for.
    current: Option<u64>,
    /// Candidates of `current`, tagged with their window (empty for
    /// bind-source doors).
    candidates: Vec<Candidate>,
    /// Bind-source doors: candidates per source, for `current`.
    bound: HashMap<IpAddr, Vec<Candidate>>,
    closed: Option<Closed>,
}

/// What a refresh found worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The candidates changed (a new window, or a used one removed).
    Rotated,
    /// The door accepts nothing until the clock reaches `until`.
    Closed(Closed),
    /// Accepting again after [`Change::Closed`].
    Reopened,
}

impl Windows {
    /// Build a door's windows; reads the state file. A state file that
    /// cannot be read or parsed is reported and counts as "every window
    /// accepted now is used" (see the module doc).
    pub fn new(
        door: &str,
        spec: &RotatingSpec,
        now: SystemTime,
    ) -> Result<(Windows, Option<RotatingError>), RotatingError> {
        let key = match &spec.key {
            Some(k) => k.clone(),
            None => Key::load(&spec.secret).map_err(|source| RotatingError::Key {
                path: spec.secret.clone(),
                source,
            })?,
        };
        let state = StateFile::new(&spec.state);
        let period = spec.period.max(1);
        let (used_until, problem) = match state.read() {
            Ok(u) => (u.unwrap_or(0), None),
            Err(e) => {
                let t = rotate::window(unix_secs(now), period);
                let burn = rotate::window_start(t.saturating_add(spec.skew + 1), period);
                (burn, Some(e))
            }
        };
        let mut w = Windows {
            door: door.to_string(),
            deriver: Deriver::new(&key),
            length: spec.length,
            period,
            skew: spec.skew,
            range: spec.range,
            proto: spec.proto,
            bind_source: spec.bind_source,
            state,
            used_until,
            current: None,
            candidates: Vec::new(),
            bound: HashMap::new(),
            closed: None,
        };
        w.refresh(now);
        Ok((w, problem))
    }

    pub fn bind_source(&self) -> bool {
        self.bind_source
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The Unix second before which no window is accepted.
    pub fn used_until(&self) -> u64 {
        self.used_until
    }

    /// The windows accepted at `now`, oldest first, skipping used ones.
    fn accepted(&self, now: u64) -> impl Iterator<Item = u64> + '_ {
        let t = rotate::window(now, self.period);
        let first = t.saturating_sub(self.skew);
        let last = t.saturating_add(self.skew);
        (first..=last).filter(move |&w| rotate::window_start(w, self.period) >= self.used_until)
    }

    fn sequence(&self, window: u64, bind: Option<IpAddr>) -> Option<Sequence> {
        let ports = self
            .deriver
            .derive(&self.door, window, self.length, self.range, bind);
        Sequence::new(
            ports
                .into_iter()
                .map(|p| Knock::new(p, self.proto))
                .collect(),
        )
    }

    fn derive_all(&self, now: u64, bind: Option<IpAddr>) -> Vec<Candidate> {
        self.accepted(now)
            .filter_map(|tag| {
                self.sequence(tag, bind)
                    .map(|sequence| Candidate { tag, sequence })
            })
            .collect()
    }

    /// Re-read the wall clock: when the window changed, derive the new
    /// candidates (and forget the per-source cache). Cheap when nothing
    /// changed: one division and a comparison.
    pub fn refresh(&mut self, now: SystemTime) -> Option<Change> {
        let secs = unix_secs(now);
        let t = rotate::window(secs, self.period);
        let mut change = None;
        // Normal use can record at most window T + skew (a knock on the
        // newest accepted window); a record beyond that means the clock
        // went back.
        let behind = rotate::window(self.used_until, self.period)
            > t.saturating_add(self.skew).saturating_add(1);
        let closed = behind.then_some(Closed::ClockBehind {
            until: self.used_until,
        });
        if closed != self.closed {
            change = Some(match &closed {
                Some(c) => Change::Closed(c.clone()),
                None => Change::Reopened,
            });
            self.closed = closed;
        }
        if self.current == Some(t) {
            return change;
        }
        self.current = Some(t);
        self.bound.clear();
        self.candidates = if self.bind_source {
            Vec::new()
        } else {
            self.derive_all(secs, None)
        };
        change.or(Some(Change::Rotated))
    }

    /// When the candidates next change on their own: the start of the next
    /// window.
    pub fn next_change(&self) -> Option<SystemTime> {
        let t = self.current?;
        let at = rotate::window_start(t.saturating_add(1), self.period);
        UNIX_EPOCH.checked_add(Duration::from_secs(at))
    }

    /// The candidates of a door without `Sequence_Bind_Source`.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The candidates for knocker `src`: the door's own, or for a
    /// bind-source door the ones derived for `src` (cached for the window).
    pub fn candidates_for(&mut self, src: IpAddr) -> &[Candidate] {
        if !self.bind_source {
            return &self.candidates;
        }
        let Some(t) = self.current else {
            return &[];
        };
        if !self.bound.contains_key(&src) {
            if self.bound.len() >= MAX_BOUND_SOURCES {
                self.bound.clear();
            }
            let now = rotate::window_start(t, self.period);
            let c = self.derive_all(now, Some(src));
            self.bound.insert(src, c);
        }
        self.bound.get(&src).map_or(&[], Vec::as_slice)
    }

    /// Window `window` opened the door: record "used until its end"
    /// durably, then drop it and every older window from the candidates.
    /// On a write error the window is burned in memory anyway (it went
    /// over the wire) and the error is returned: the caller must not run
    /// the command.
    pub fn consume(&mut self, window: u64) -> Result<(), RotatingError> {
        if !self.is_accepted(window) {
            // Seen on the wire all the same: never accept it later.
            self.burn(window);
            return Err(RotatingError::NotCandidate { window });
        }
        let until = rotate::window_start(window.saturating_add(1), self.period);
        let written = if until > self.used_until {
            self.state.write(until)
        } else {
            Ok(())
        };
        self.burn(window);
        written
    }

    /// Is `window` accepted at the last refresh (within the skew of the
    /// current window and not used)?
    pub fn is_accepted(&self, window: u64) -> bool {
        let Some(t) = self.current else {
            return false;
        };
        window >= t.saturating_sub(self.skew)
            && window <= t.saturating_add(self.skew)
            && rotate::window_start(window, self.period) >= self.used_until
    }

    /// Drop `window` and every older window from the candidates, in memory
    /// only.
    pub fn burn(&mut self, window: u64) {
        let until = rotate::window_start(window.saturating_add(1), self.period);
        if until <= self.used_until {
            return;
        }
        self.used_until = until;
        self.candidates.retain(|c| c.tag > window);
        for c in self.bound.values_mut() {
            c.retain(|c| c.tag > window);
        }
    }

    /// One line for `--check` and the log: the parameters, never the key
    /// or a sequence.
    pub fn describe(&self) -> String {
        format!(
            "rotating: {} {} hits from {} every {} s, skew {}{}",
            self.length,
            self.proto,
            self.range,
            self.period,
            self.skew,
            if self.bind_source {
                ", bound to the source address"
            } else {
                ""
            }
        )
    }
}

/// The [`SequenceSource`] of a rotating door: candidates tagged with their
/// window number.
pub struct RotatingSource {
    /// `None`: the key could not be read; the door is disabled.
    windows: Option<Windows>,
    describe: String,
}

impl RotatingSource {
    /// The source of door `name`; the notes say why it is disabled or what
    /// was wrong with its state file.
    pub fn new(name: &str, spec: &RotatingSpec) -> (RotatingSource, Vec<Note>) {
        let mut notes = Vec::new();
        let windows = match Windows::new(name, spec, SystemTime::now()) {
            Ok((w, problem)) => {
                if let Some(e) = problem {
                    notes.push(Note::Error(format!(
                        "{e}; every window accepted now counts as used"
                    )));
                }
                Some(w)
            }
            Err(e) => {
                notes.push(Note::Error(format!("{e}; door disabled")));
                None
            }
        };
        let describe = windows
            .as_ref()
            .map_or_else(|| "rotating (disabled)".to_string(), Windows::describe);
        (RotatingSource { windows, describe }, notes)
    }

    /// Use up window `tag` (consume or burn): durable record, then the
    /// candidates without it.
    fn use_up(&mut self, tag: Tag) -> Result<(), RotatingError> {
        let Some(w) = self.windows.as_mut() else {
            return Err(RotatingError::NotCandidate { window: tag });
        };
        w.refresh(SystemTime::now());
        w.consume(tag)
    }
}

impl SequenceSource for RotatingSource {
    fn candidates(&self) -> &[Candidate] {
        self.windows.as_ref().map_or(&[], Windows::candidates)
    }

    fn consume(&mut self, tag: Tag) -> Consumed {
        match self.use_up(tag) {
            Ok(()) => Consumed::Accepted(vec![Note::Info(format!(
                "window {tag} used (recorded before the command)"
            ))]),
            Err(e) => Consumed::Refused(vec![Note::Error(format!(
                "window {tag}: {e}; knock refused"
            ))]),
        }
    }

    fn burn(&mut self, tag: Tag) -> Vec<Note> {
        match self.use_up(tag) {
            Ok(()) => vec![Note::Info(format!(
                "window {tag} seen on the wire in a failed attempt: used up"
            ))],
            Err(RotatingError::NotCandidate { .. }) => Vec::new(),
            Err(e) => vec![Note::Error(format!(
                "window {tag} seen on the wire: {e}; it is refused until the daemon restarts"
            ))],
        }
    }

    fn refresh(&mut self) -> Vec<Note> {
        let Some(w) = self.windows.as_mut() else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        match w.refresh(SystemTime::now()) {
            None => return notes,
            Some(Change::Closed(Closed::ClockBehind { until })) => {
                notes.push(Note::Error(format!(
                    "the clock is before the end of the last used window (Unix time {until}): nothing is accepted until then"
                )));
            }
            Some(Change::Reopened) => {
                notes.push(Note::Info(
                    "the clock caught up: windows accepted again".into(),
                ));
            }
            Some(Change::Rotated) => {}
        }
        notes
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn next_change(&self) -> Option<SystemTime> {
        self.windows.as_ref()?.next_change()
    }

    fn bound(&self) -> Option<BoundRange> {
        let w = self.windows.as_ref()?;
        w.bind_source().then(|| BoundRange {
            proto: w.proto(),
            lo: w.range().lo,
            hi: w.range().hi,
        })
    }

    fn candidates_for(&mut self, src: IpAddr) -> &[Candidate] {
        match self.windows.as_mut() {
            Some(w) => w.candidates_for(src),
            None => &[],
        }
    }
}

/// Read the state file of a rotating door for `--check` without changing
/// anything.
pub fn read_state(path: &Path) -> Result<Option<u64>, RotatingError> {
    StateFile::new(path).read()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    fn spec(dir: &Path, bind: bool) -> RotatingSpec {
        RotatingSpec {
            secret: dir.join("key"),
            secret_line: 1,
            key: Some(Key::parse(KEY).unwrap()),
            length: 3,
            period: 30,
            skew: 1,
            range: rotate::DEFAULT_RANGE,
            proto: Proto::Tcp,
            bind_source: bind,
            state: dir.join("state/ssh.window"),
        }
    }

    /// A door's spec (see [`spec`]) in a fresh directory, which lives as
    /// long as the returned guard.
    fn door_spec(bind: bool) -> (tempfile::TempDir, RotatingSpec) {
        let d = tempfile::tempdir().unwrap();
        let s = spec(d.path(), bind);
        (d, s)
    }

    /// The windows of door "ssh" at `secs`, and the problem reported.
    fn windows_at(s: &RotatingSpec, secs: u64) -> (Windows, Option<RotatingError>) {
        Windows::new("ssh", s, at(secs)).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ports(k: &Key, w: u64) -> Vec<u16> {
        rotate::derive(k, "ssh", w, 3, rotate::DEFAULT_RANGE, None)
    }

    fn windows(w: &Windows) -> Vec<u64> {
        w.candidates().iter().map(|c| c.tag).collect()
    }

    const T0: u64 = 1_770_000_000; // window 59_000_000 with period 30

    #[test]
    fn candidates_are_the_skew_windows_with_the_derived_ports() {
        let (_d, s) = door_spec(false);
        let (w, problem) = windows_at(&s, T0 + 5);
        assert!(problem.is_none());
        assert_eq!(windows(&w), vec![58_999_999, 59_000_000, 59_000_001]);
        let k = Key::parse(KEY).unwrap();
        for c in w.candidates() {
            let got: Vec<u16> = c.sequence.iter().map(|k| k.port).collect();
            assert_eq!(got, ports(&k, c.tag));
            assert!(c.sequence.iter().all(|k| k.proto == Proto::Tcp));
        }
        assert_eq!(w.next_change(), Some(at(T0 + 30)));
    }

    #[test]
    fn refresh_recomputes_only_at_a_window_change() {
        let (_d, s) = door_spec(false);
        let (mut w, _) = windows_at(&s, T0);
        assert_eq!(w.refresh(at(T0 + 29)), None);
        assert_eq!(w.refresh(at(T0 + 30)), Some(Change::Rotated));
        assert_eq!(windows(&w), vec![59_000_000, 59_000_001, 59_000_002]);
        // A jump forward by an hour, then back.
        assert_eq!(w.refresh(at(T0 + 3600)), Some(Change::Rotated));
        assert_eq!(windows(&w), vec![59_000_119, 59_000_120, 59_000_121]);
        assert_eq!(w.refresh(at(T0)), Some(Change::Rotated));
        assert_eq!(windows(&w), vec![58_999_999, 59_000_000, 59_000_001]);
    }

    #[test]
    fn consume_records_durably_and_removes_older_windows() {
        let (_d, s) = door_spec(false);
        let (mut w, _) = windows_at(&s, T0);
        w.consume(59_000_000).unwrap();
        assert_eq!(windows(&w), vec![59_000_001]);
        let text = fs::read_to_string(&s.state).unwrap();
        assert_eq!(text, format!("used-until {}\n", T0 + 30));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(s.state.parent().unwrap()).unwrap().count(), 1);
        // A restart (new Windows) keeps the rule, even with the clock back.
        let (w2, p) = windows_at(&s, T0 + 1);
        assert!(p.is_none());
        assert_eq!(windows(&w2), vec![59_000_001]);
        // An older window, or the used one, is refused and changes nothing.
        let (mut w3, _) = windows_at(&s, T0);
        for old in [58_999_999, 59_000_000] {
            assert!(matches!(
                w3.consume(old),
                Err(RotatingError::NotCandidate { .. })
            ));
        }
        assert_eq!(read_state(&s.state).unwrap(), Some(T0 + 30));
        // A window outside the skew is refused too.
        assert!(matches!(
            w3.consume(59_000_005),
            Err(RotatingError::NotCandidate { .. })
        ));
    }

    #[test]
    fn a_clock_set_far_back_closes_the_door_until_it_catches_up() {
        let (_d, s) = door_spec(false);
        let (mut w, _) = windows_at(&s, T0);
        w.consume(59_000_001).unwrap();
        assert!(windows(&w).is_empty());
        // Using the newest accepted window is normal: nothing to report.
        assert_eq!(w.refresh(at(T0 + 5)), None);
        // The clock set an hour back: closed (logged once), nothing accepted.
        assert_eq!(
            w.refresh(at(T0 - 3600)),
            Some(Change::Closed(Closed::ClockBehind { until: T0 + 60 }))
        );
        assert!(windows(&w).is_empty());
        assert_eq!(w.refresh(at(T0 + 60)), Some(Change::Reopened));
        assert_eq!(windows(&w), vec![59_000_002, 59_000_003]);
    }

    #[test]
    fn a_broken_state_file_burns_the_windows_accepted_now() {
        let (_d, s) = door_spec(false);
        fs::create_dir_all(s.state.parent().unwrap()).unwrap();
        fs::write(&s.state, "garbage\n").unwrap();
        let (mut w, problem) = windows_at(&s, T0);
        assert!(matches!(problem, Some(RotatingError::StateSyntax { .. })));
        assert!(windows(&w).is_empty());
        w.refresh(at(T0 + 60));
        assert_eq!(windows(&w), vec![59_000_002, 59_000_003]);
        w.consume(59_000_002).unwrap();
        assert_eq!(read_state(&s.state).unwrap(), Some(T0 + 90));
    }

    #[test]
    fn a_failed_write_refuses_but_still_burns() {
        let (_d, s) = door_spec(false);
        let (mut w, problem) = windows_at(&s, T0);
        assert!(problem.is_none());
        // The state "directory" becomes a regular file: the write must fail.
        fs::write(s.state.parent().unwrap(), "").unwrap();
        assert!(matches!(
            w.consume(59_000_000),
            Err(RotatingError::StateIo { .. })
        ));
        assert_eq!(windows(&w), vec![59_000_001]);
    }

    #[test]
    fn bind_source_candidates_depend_on_the_source_and_are_cached() {
        let (_d, s) = door_spec(true);
        let (mut w, _) = windows_at(&s, T0);
        assert!(w.candidates().is_empty());
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "2001:db8::7".parse().unwrap();
        let k = Key::parse(KEY).unwrap();
        let ca = w.candidates_for(a).to_vec();
        assert_eq!(ca.len(), 3);
        let want = rotate::derive(&k, "ssh", ca[1].tag, 3, rotate::DEFAULT_RANGE, Some(a));
        assert_eq!(
            ca[1].sequence.iter().map(|k| k.port).collect::<Vec<_>>(),
            want
        );
        assert_ne!(w.candidates_for(b).to_vec(), ca);
        w.consume(ca[1].tag).unwrap();
        assert_eq!(w.candidates_for(a).len(), 1);
        assert_eq!(w.candidates_for(b).len(), 1);
    }

    #[test]
    fn the_per_source_cache_is_bounded() {
        let (_d, s) = door_spec(true);
        let (mut w, _) = windows_at(&s, T0);
        for i in 0..(MAX_BOUND_SOURCES as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(w.candidates_for(ip).len(), 3);
            assert!(w.bound.len() <= MAX_BOUND_SOURCES);
        }
    }

    #[test]
    fn source_consumes_each_window_once_and_refuses_replays() {
        let (_d, s) = door_spec(false);
        let (mut src, notes) = RotatingSource::new("ssh", &s);
        assert!(notes.is_empty(), "{notes:?}");
        let tags: Vec<Tag> = src.candidates().iter().map(|c| c.tag).collect();
        assert_eq!(tags.len(), 3);
        assert!(src.next_change().is_some_and(|t| t > SystemTime::now()));
        assert!(src.bound().is_none());
        assert!(matches!(src.consume(tags[1]), Consumed::Accepted(_)));
        assert!(matches!(src.consume(tags[1]), Consumed::Refused(_)));
        assert!(matches!(src.consume(tags[0]), Consumed::Refused(_)));
        // The record survives: a new source (restart, SIGHUP) agrees.
        let (again, _) = RotatingSource::new("ssh", &s);
        assert!(again.candidates().iter().all(|c| c.tag > tags[1]));
        // A failed attempt on the next window uses it up as well.
        src.burn(tags[2]);
        assert!(src.candidates().iter().all(|c| c.tag > tags[2]));
        assert!(!src.describe().contains("JBSW"));
    }

    #[test]
    fn source_without_a_key_is_disabled_with_a_note() {
        let (_d, mut s) = door_spec(true);
        s.key = None;
        let (mut src, notes) = RotatingSource::new("ssh", &s);
        assert!(src.candidates().is_empty());
        assert!(src.bound().is_none());
        assert!(src.candidates_for("192.0.2.1".parse().unwrap()).is_empty());
        assert!(
            matches!(&notes[..], [Note::Error(m)] if m.contains("disabled")),
            "{notes:?}"
        );
    }

    #[test]
    fn bound_source_declares_its_range() {
        let (_d, s) = door_spec(true);
        let (mut src, _) = RotatingSource::new("ssh", &s);
        assert_eq!(
            src.bound(),
            Some(BoundRange {
                proto: Proto::Tcp,
                lo: 1024,
                hi: 65535
            })
        );
        assert!(src.candidates().is_empty());
        assert_eq!(src.candidates_for("192.0.2.1".parse().unwrap()).len(), 3);
    }

    #[test]
    fn describe_shows_neither_key_nor_ports() {
        let (_d, s) = door_spec(false);
        let (w, _) = windows_at(&s, T0);
        let text = w.describe();
        assert!(!text.contains("JBSW"));
        for c in w.candidates() {
            for k in c.sequence.iter() {
                assert!(!text.contains(&k.port.to_string()), "{text}");
            }
        }
    }
}
