//! Rate limit of per-packet log lines, so that a flood cannot fill the disk.
//!
//! Every spoofed first knock is a `Stage 1` line; at the ~180,000 packets a
//! second one veth carries, that is about 16 GB of log an hour. The lines
//! that a packet can cause ([`LineKind`]) are therefore limited **per door
//! and per kind**: in each window of [`WINDOW`] the first [`BURST`] lines of a
//! (door, kind) are written, the rest are counted and left out, and when the
//! window ends one summary line says how many were left out
//! (`DOOR: N similar lines left out in the last 60 s (Stage N)`).
//!
//! Rules:
//! * A window starts with the first line of its (door, kind) and lasts
//!   [`WINDOW`]; the next line after it starts a new window with a fresh
//!   [`BURST`]. A quiet (door, kind) holds no window and no timer.
//! * A window in which lines were left out ends with a [`Summary`], due at
//!   its end ([`RateLimiter::next_deadline`] tells the event loop when), or
//!   at once at shut-down and reload ([`RateLimiter::drain`]), so a count is
//!   never lost. A window in which nothing was left out ends silently.
//! * Only the kinds in [`LineKind`] are limited. `OPEN SESAME`, command
//!   lines, command results, errors, start-up and shut-down lines do not go
//!   through this type at all, so they are never left out.
//! * The decision is made **before** the line is formatted: a left-out line
//!   costs an array index, a comparison and an increment (O(1), no
//!   allocation), which is what keeps a flood cheap.
//!
//! Log growth under a flood is bounded by the number of doors, not by the
//! packet rate: per door and minute at most `BURST` lines of each kind plus
//! one summary per kind (about 2 × 101 lines of ~70 bytes, 14 KiB, for a
//! door that sees first knocks and their timeouts).
//!
//! Pure: time is passed in, as in the matcher.

use std::time::{Duration, Instant};

/// Lines of one (door, kind) written per window before lines are left out.
pub const BURST: u32 = 100;
/// Length of a window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The per-packet lines that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// `SRC: DOOR: Stage N`.
    Stage,
    /// `SRC: DOOR: sequence timeout (stage N)`.
    Timeout,
    /// `SRC: DOOR: incorrect knock (stage N), attempt discarded` (`-v`).
    Incorrect,
}

impl LineKind {
    /// Every kind, in slot order.
    pub const ALL: [LineKind; 3] = [LineKind::Stage, LineKind::Timeout, LineKind::Incorrect];

    fn index(self) -> usize {
        match self {
            LineKind::Stage => 0,
            LineKind::Timeout => 1,
            LineKind::Incorrect => 2,
        }
    }

    /// What the summary line calls these lines.
    pub fn label(self) -> &'static str {
        match self {
            LineKind::Stage => "Stage N",
            LineKind::Timeout => "sequence timeout",
            LineKind::Incorrect => "incorrect knock",
        }
    }
}

/// The limits; [`Limits::default`] is [`BURST`] lines per [`WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub burst: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            burst: BURST,
            window: WINDOW,
        }
    }
}

/// Lines left out of one window of one (door, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub door: usize,
    pub kind: LineKind,
    pub left_out: u64,
    /// How long the window ran (shorter than the window at shut-down).
    pub span: Duration,
}

impl Summary {
    /// The log line, for the door named `door_name`:
    /// `DOOR: N similar lines left out in the last S s (KIND)`.
    pub fn message(&self, door_name: &str) -> String {
        // Whole seconds, rounded up: "the last 0 s" would read as nothing.
        let secs = self.span.as_millis().div_ceil(1000).max(1);
        format!(
            "{door_name}: {} similar lines left out in the last {secs} s ({})",
            self.left_out,
            self.kind.label()
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Start of the current window; `None` while the (door, kind) is quiet.
    start: Option<Instant>,
    written: u32,
    left_out: u64,
}

impl Slot {
    /// The summary of the lines this slot left out, over `span`; none if
    /// it left none out.
    fn summary(&self, door: usize, kind: LineKind, span: Duration) -> Option<Summary> {
        (self.left_out > 0).then_some(Summary {
            door,
            kind,
            left_out: self.left_out,
            span,
        })
    }

    /// If this slot's window of length `window` has ended by `now`, sum it
    /// up into `out` and start over (quiet); returns whether it ended.
    fn roll(
        &mut self,
        (door, kind): (usize, LineKind),
        now: Instant,
        window: Duration,
        out: &mut Vec<Summary>,
    ) -> bool {
        match self.start {
            Some(start) if now.saturating_duration_since(start) >= window => {
                out.extend(self.summary(door, kind, window));
                *self = Slot::default();
                true
            }
            _ => false,
        }
    }
}

/// The limiter: one slot per (door, kind). See the module documentation.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: Limits,
    slots: Vec<Slot>,
    /// Earliest end of a window with lines left out (cached for the loop).
    due: Option<Instant>,
}

const KINDS: usize = LineKind::ALL.len();

/// Make `due` (the earliest end of a window with lines left out) no later
/// than `end`.
fn due_by(due: &mut Option<Instant>, end: Instant) {
    *due = Some(due.map_or(end, |d| d.min(end)));
}

/// The slot of (`door`, `kind`): the slots are per door, then per kind.
fn slot_index(door: usize, kind: LineKind) -> usize {
    door * KINDS + kind.index()
}

/// The (door, kind) of slot `i` (the inverse of [`slot_index`]).
fn door_kind(i: usize) -> (usize, LineKind) {
    (i / KINDS, LineKind::ALL[i % KINDS])
}

impl RateLimiter {
    /// A limiter for `doors` doors.
    pub fn new(doors: usize, limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            slots: vec![Slot::default(); doors * KINDS],
            due: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// May a line of `kind` for `door` be written at `now`? Counts it as
    /// left out if not. A window of this (door, kind) that has ended is
    /// summed up into `out` first (before the line it lets through).
    /// A door index out of range is always admitted.
    pub fn admit(
        &mut self,
        door: usize,
        kind: LineKind,
        now: Instant,
        out: &mut Vec<Summary>,
    ) -> bool {
        let window = self.limits.window;
        let burst = self.limits.burst;
        let Some(slot) = self.slots.get_mut(slot_index(door, kind)) else {
            return true;
        };
        slot.roll((door, kind), now, window, out);
        let start = *slot.start.get_or_insert(now);
        if slot.written < burst {
            slot.written += 1;
            return true;
        }
        slot.left_out += 1;
        if slot.left_out == 1 {
            due_by(&mut self.due, start + window);
        }
        false
    }

    /// When the next summary is due, if lines are being left out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due
    }

    /// Sum up every window that has ended by `now` and had lines left out.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Summary>) {
        match self.due {
            Some(d) if d <= now => {}
            _ => return,
        }
        let window = self.limits.window;
        self.due = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.roll(door_kind(i), now, window, out) {
                continue;
            }
            if let (Some(start), true) = (slot.start, slot.left_out > 0) {
                due_by(&mut self.due, start + window);
            }
        }
    }

    /// Sum up every window with lines left out, ended or not (shut-down,
    /// reload), and forget all windows.
    pub fn drain(&mut self, now: Instant, out: &mut Vec<Summary>) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(start) = slot.start {
                let (door, kind) = door_kind(i);
                let span = now.saturating_duration_since(start).min(self.limits.window);
                out.extend(slot.summary(door, kind, span));
            }
            *slot = Slot::default();
        }
        self.due = None;
    }

    /// Start over for `doors` doors (after [`drain`](RateLimiter::drain)).
    pub fn reset(&mut self, doors: usize) {
        self.slots.clear();
        self.slots.resize(doors * KINDS, Slot::default());
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// A limiter for two doors, the time its tests start at, and the
    /// summaries it has written.
    struct Rig {
        l: RateLimiter,
        t0: Instant,
        out: Vec<Summary>,
    }

    impl Rig {
        fn new(burst: u32, window_s: u64) -> Rig {
            let limits = Limits {
                burst,
                window: Duration::from_secs(window_s),
            };
            Rig {
                l: RateLimiter::new(2, limits),
                t0: Instant::now(),
                out: Vec::new(),
            }
        }

        fn admit(&mut self, door: usize, kind: LineKind, now: Instant) -> bool {
            self.l.admit(door, kind, now, &mut self.out)
        }

        fn expire(&mut self, now: Instant) {
            self.l.expire(now, &mut self.out);
        }

        fn drain(&mut self, now: Instant) {
            self.l.drain(now, &mut self.out);
        }
    }

    #[test]
    fn burst_then_suppression_then_summary_then_recovery() {
        let mut r = Rig::new(3, 60);
        // Burst: the first 3 lines pass.
        for i in 0..3 {
            assert!(r.admit(0, LineKind::Stage, r.t0 + i * S), "line {i}");
        }
        assert_eq!(r.l.next_deadline(), None, "nothing left out, no timer");
        // Suppression: the rest of the window is counted.
        for i in 0..1000u32 {
            assert!(!r.admit(0, LineKind::Stage, r.t0 + 10 * S + i * S / 100));
        }
        assert!(r.out.is_empty());
        assert_eq!(r.l.next_deadline(), Some(r.t0 + 60 * S));
        // Not yet due.
        r.expire(r.t0 + 59 * S);
        assert!(r.out.is_empty());
        // Summary when the window ends.
        r.expire(r.t0 + 60 * S);
        assert_eq!(
            r.out,
            [Summary {
                door: 0,
                kind: LineKind::Stage,
                left_out: 1000,
                span: 60 * S
            }]
        );
        assert_eq!(
            r.out[0].message("ssh"),
            "ssh: 1000 similar lines left out in the last 60 s (Stage N)"
        );
        assert_eq!(r.l.next_deadline(), None);
        r.out.clear();
        // Recovery: a fresh burst.
        for i in 0..3 {
            assert!(r.admit(0, LineKind::Stage, r.t0 + 61 * S + i * S));
        }
        assert!(!r.admit(0, LineKind::Stage, r.t0 + 65 * S));
        assert!(r.out.is_empty());
    }

    #[test]
    fn a_line_after_the_window_gets_the_summary_first_and_passes() {
        let mut r = Rig::new(1, 60);
        assert!(r.admit(1, LineKind::Timeout, r.t0));
        assert!(!r.admit(1, LineKind::Timeout, r.t0 + S));
        assert!(!r.admit(1, LineKind::Timeout, r.t0 + 2 * S));
        // Nobody called expire: the next line rolls the window itself.
        assert!(r.admit(1, LineKind::Timeout, r.t0 + 70 * S));
        assert_eq!(r.out.len(), 1);
        assert_eq!(
            (r.out[0].door, r.out[0].kind, r.out[0].left_out),
            (1, LineKind::Timeout, 2)
        );
    }

    #[test]
    fn doors_and_kinds_are_limited_separately() {
        let mut r = Rig::new(2, 60);
        for _ in 0..2 {
            assert!(r.admit(0, LineKind::Stage, r.t0));
        }
        assert!(!r.admit(0, LineKind::Stage, r.t0));
        // Another kind of the same door, and the same kind of another door.
        assert!(r.admit(0, LineKind::Timeout, r.t0));
        assert!(r.admit(0, LineKind::Incorrect, r.t0));
        assert!(r.admit(1, LineKind::Stage, r.t0));
        // A door the limiter does not know is never limited.
        for _ in 0..10 {
            assert!(r.admit(7, LineKind::Stage, r.t0));
        }
    }

    #[test]
    fn quiet_windows_end_silently_and_without_a_timer() {
        let mut r = Rig::new(5, 60);
        assert!(r.admit(0, LineKind::Stage, r.t0));
        assert_eq!(r.l.next_deadline(), None);
        r.expire(r.t0 + 3600 * S);
        r.drain(r.t0 + 3600 * S);
        assert!(r.out.is_empty());
    }

    #[test]
    fn drain_reports_open_windows_with_their_real_span() {
        let mut r = Rig::new(1, 60);
        assert!(r.admit(0, LineKind::Stage, r.t0));
        assert!(!r.admit(0, LineKind::Stage, r.t0));
        assert!(r.admit(1, LineKind::Incorrect, r.t0));
        assert!(!r.admit(1, LineKind::Incorrect, r.t0));
        assert!(!r.admit(1, LineKind::Incorrect, r.t0));
        r.drain(r.t0 + 2500 * Duration::from_millis(1));
        assert_eq!(r.out.len(), 2);
        assert_eq!(r.out[0].left_out, 1);
        assert_eq!(r.out[1].left_out, 2);
        assert_eq!(
            r.out[1].message("web"),
            "web: 2 similar lines left out in the last 3 s (incorrect knock)"
        );
        assert_eq!(r.l.next_deadline(), None);
        // Everything starts over.
        r.out.clear();
        assert!(r.admit(0, LineKind::Stage, r.t0 + 3 * S));
        r.l.reset(1);
        assert!(r.admit(0, LineKind::Stage, r.t0 + 3 * S));
        assert!(!r.admit(0, LineKind::Stage, r.t0 + 3 * S));
        assert!(
            r.admit(1, LineKind::Stage, r.t0 + 3 * S),
            "door 1 is gone: unlimited"
        );
    }

    #[test]
    fn deadline_is_the_earliest_window_with_lines_left_out() {
        let mut r = Rig::new(1, 60);
        r.admit(1, LineKind::Stage, r.t0);
        r.admit(0, LineKind::Timeout, r.t0 + 5 * S);
        r.admit(0, LineKind::Timeout, r.t0 + 6 * S);
        assert_eq!(r.l.next_deadline(), Some(r.t0 + 65 * S));
        r.admit(1, LineKind::Stage, r.t0 + 7 * S);
        assert_eq!(r.l.next_deadline(), Some(r.t0 + 60 * S));
        r.expire(r.t0 + 60 * S);
        assert_eq!(r.out.len(), 1);
        assert_eq!(r.l.next_deadline(), Some(r.t0 + 65 * S));
    }

    #[test]
    fn clock_going_back_never_panics_or_rolls() {
        let mut r = Rig::new(1, 60);
        r.t0 += 100 * S;
        assert!(r.admit(0, LineKind::Stage, r.t0));
        assert!(!r.admit(0, LineKind::Stage, r.t0 - 50 * S));
        r.expire(r.t0 - 90 * S);
        r.drain(r.t0 - 90 * S);
        assert_eq!(r.out.len(), 1);
        assert_eq!(
            r.out[0].message("d"),
            "d: 1 similar lines left out in the last 1 s (Stage N)"
        );
    }
}
