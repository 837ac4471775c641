//! The knock state machine (SPEC §2), driven by hits and by time passed in.
//!
//! Pure code: no clock reads, no I/O. The caller passes `now` with every call
//! and asks [`Matcher::next_deadline`] when to call [`Matcher::expire`].
//!
//! Rules:
//! * State is kept per (source address, door); doors are independent, so one
//!   hit can advance several doors.
//! * A hit is *relevant* to a door only if the door [sees](DoorRule::sees) it
//!   and its `port:proto` occurs in the door's sequence. Every other hit is
//!   ignored by that door: it neither advances nor resets it.
//! * A relevant hit that is the next expected knock advances the attempt
//!   ([`Event::Stage`]); after the last knock the door opens ([`Event::Open`])
//!   and the attempt is removed. Any other relevant hit fails the attempt
//!   ([`Event::Fail`]); if that hit is the door's first knock, a fresh attempt
//!   starts from it (`Stage 1`), so a repeated first knock never locks the
//!   knocker out. Without an attempt, the first knock starts one; a one-knock
//!   door emits `Stage 1` and `Open` at once.
//! * Expiry: an attempt whose first hit is *older than* the door's timeout is
//!   discarded. "Older than" is strict: at age == timeout the attempt is still
//!   valid (a knock arriving exactly `Seq_Timeout` after the first one still
//!   counts); at age > timeout it is gone ([`Event::Expired`]). A hit arriving
//!   after that point behaves as if the attempt were gone, even when
//!   [`Matcher::expire`] has not been called yet.
//! * Memory is bounded: at most `cap` attempts are in flight; when a new one
//!   would exceed that, the attempt with the oldest first hit is evicted
//!   ([`Event::Evicted`]).
//!
//! Cost per hit: one hash lookup of the knock to find the doors whose
//! sequence uses it (a hit on a port no door uses costs nothing more), then
//! per such door one hash lookup by (source, door). Attempts live in a slab;
//! each door keeps a queue of its attempts in order of first hit, which
//! (the door's timeout being fixed) is also its order of expiry, so finding
//! the oldest attempt or the next deadline looks only at each door's front
//! (O(doors)). Entries of attempts removed early are skipped when they reach
//! the front and dropped when a queue grows past twice its live attempts, so
//! the work is amortised O(1) per attempt and memory stays proportional to
//! the attempts in flight. Nothing scans the attempts in flight.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use knock_common::{FlagSpec, Knock, Proto, Sequence};

use crate::packet::Hit;

/// What the matcher needs to know about one door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorRule {
    /// The current sequence; `None` disables the door (e.g. its one-time
    /// sequence file ran out).
    pub sequence: Option<Sequence>,
    /// `Seq_Timeout`: time allowed from the first to the last hit.
    pub timeout: Duration,
    /// `TCPFlags`: TCP hits whose flags do not match are invisible.
    pub flags: Option<FlagSpec>,
    /// `Target`: only hits to this address count; otherwise hits to one of
    /// the interface's own addresses.
    pub target: Option<IpAddr>,
}

impl DoorRule {
    /// Can this door see `hit` at all? This is the single place that decides
    /// which packets a door looks at.
    ///
    /// The destination must be the door's `target` when set, else an address
    /// for which `is_local` is true. TCP hits must satisfy the door's flag
    /// list when it has one; UDP hits are never filtered by flags.
    pub fn sees(&self, hit: &Hit, is_local: &dyn Fn(IpAddr) -> bool) -> bool {
        let to_us = match self.target {
            Some(t) => hit.dst == t,
            None => is_local(hit.dst),
        };
        if !to_us {
            return false;
        }
        match (hit.proto, self.flags) {
            (Proto::Tcp, Some(spec)) => spec.matches(hit.tcp_flags),
            _ => true,
        }
    }
}

/// What happened to an attempt. `door` indexes [`Matcher::doors`]; `stage`
/// is 1-based (the number of knocks matched so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The attempt advanced to `stage` (classic log line `SRC: DOOR: Stage N`).
    Stage {
        door: usize,
        src: IpAddr,
        stage: usize,
    },
    /// The whole sequence arrived in time: open the door for `src`.
    Open { door: usize, src: IpAddr },
    /// A wrong knock ended an attempt that had matched `stage` knocks.
    Fail {
        door: usize,
        src: IpAddr,
        stage: usize,
    },
    /// The attempt (at `stage`) outlived the door's timeout.
    Expired {
        door: usize,
        src: IpAddr,
        stage: usize,
    },
    /// The attempt (at `stage`) was dropped to keep within the cap.
    Evicted {
        door: usize,
        src: IpAddr,
        stage: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// (source, door) this attempt belongs to.
    key: Key,
    /// Knocks matched so far, 1..len-1 (a completed attempt is removed).
    matched: usize,
    /// Time of the first hit.
    started: Instant,
    /// Unique per attempt, increasing: breaks ties between equal first-hit
    /// times (the earlier attempt counts as older).
    id: u64,
    /// Position of this attempt's entry in its door's queue, counted from
    /// the queue's [`DoorQueue::head`] numbering.
    pos: u64,
}

/// (source, door index). The door is kept as `u32`: 8 bytes less per
/// table entry (doors come from a configuration file, far fewer than
/// `u32::MAX`).
type Key = (IpAddr, u32);

/// Largest attempt table allocated before it is needed.
const PRESIZE_MAX: usize = 1 << 20;

/// Slack allowed in a door queue before it is compacted: a queue holds at
/// most `2 * live + QUEUE_SLACK + 1` entries.
const QUEUE_SLACK: usize = 16;

/// One door's attempts in order of first hit.
///
/// A door's timeout is fixed, so within one door the order of first hits is
/// also the order of deadlines: the front is both the door's oldest attempt
/// and the first to expire. Entries are slot numbers. An attempt removed
/// from the middle (open, fail) leaves its entry behind as *stale*: an entry
/// at position `p` holding slot `s` is live exactly when slot `s` holds an
/// attempt of this door whose `pos` is `p`. Positions are never shared by
/// two entries of one queue, so a reused slot cannot revive a stale entry.
#[derive(Debug)]
struct DoorQueue {
    /// Slots, ordered by (`started`, `id`) among the live entries. The
    /// front entry, if any, is live.
    q: VecDeque<u32>,
    /// Position of `q[0]`; `q[i]` is at `head + i`.
    head: u64,
    /// Live attempts of this door.
    live: usize,
    /// Latest `started` among the entries pushed since the queue was last
    /// empty or compacted (at least that of every live entry).
    newest: Option<Instant>,
    /// The door's `Seq_Timeout`.
    timeout: Duration,
}

impl DoorQueue {
    fn new(timeout: Duration) -> Self {
        DoorQueue {
            q: VecDeque::new(),
            head: 0,
            live: 0,
            newest: None,
            timeout,
        }
    }
}

/// Attempts in flight: a slab of attempts with a free list, a table from
/// (source, door) to slab slot, and one [`DoorQueue`] per door giving the
/// eviction and expiry orders. Every live attempt is in the table and has
/// exactly one live entry in its door's queue; nothing else is live.
#[derive(Debug)]
struct Attempts {
    map: HashMap<Key, u32>,
    slots: Vec<Option<Attempt>>,
    free: Vec<u32>,
    queues: Vec<DoorQueue>,
    next_id: u64,
}

impl Attempts {
    /// Room for twice `cap` attempts in the table up front (at most
    /// `PRESIZE_MAX`). A flood removes and inserts attempts without pause,
    /// which leaves tombstones in the table; once they use up its free
    /// slots, the table is rebuilt in place only if it is at most half full,
    /// and doubled otherwise (with old and new table alive at once). Sized
    /// for twice the cap, it is never more than half full, so it never
    /// grows: memory stays flat however many sources a flood uses. The slab
    /// never holds more than `cap` attempts.
    fn new(timeouts: impl Iterator<Item = Duration>, cap: usize) -> Self {
        let pre = cap.min(PRESIZE_MAX);
        Attempts {
            map: HashMap::with_capacity(pre.saturating_mul(2)),
            slots: Vec::with_capacity(pre),
            free: Vec::new(),
            queues: timeouts.map(DoorQueue::new).collect(),
            next_id: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, key: &Key) -> Option<&Attempt> {
        let &slot = self.map.get(key)?;
        self.slots[slot as usize].as_ref()
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut Attempt> {
        let &slot = self.map.get(key)?;
        self.slots[slot as usize].as_mut()
    }

    /// Is the entry at position `pos` of `door`'s queue, holding `slot`,
    /// live?
    fn is_live(slots: &[Option<Attempt>], door: u32, pos: u64, slot: u32) -> bool {
        matches!(slots.get(slot as usize), Some(Some(a)) if a.key.1 == door && a.pos == pos)
    }

    fn insert(&mut self, key: Key, matched: usize, started: Instant) {
        // Callers remove first; keep the bookkeeping exact regardless.
        self.remove(&key);
        let Some(qu) = self.queues.get(key.1 as usize) else {
            return;
        };
        if qu.q.len() >= 2 * qu.live + QUEUE_SLACK {
            self.compact(key.1);
        }
        let id = self.next_id;
        self.next_id += 1;
        let a = Attempt {
            key,
            matched,
            started,
            id,
            // Not a position yet: matches no entry while the queue is
            // compacted below.
            pos: u64::MAX,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(a);
                s
            }
            None => {
                self.slots.push(Some(a));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, slot);
        let qu = &mut self.queues[key.1 as usize];
        qu.live += 1;
        if qu.newest.is_some_and(|n| started < n) {
            // The clock went backwards: keep the queue ordered.
            self.insert_sorted(key.1, slot);
            return;
        }
        qu.newest = Some(started);
        let pos = qu.head + qu.q.len() as u64;
        qu.q.push_back(slot);
        if let Some(a) = self.slots[slot as usize].as_mut() {
            a.pos = pos;
        }
    }

    /// Slow path for a first hit earlier than the door's newest one (only
    /// when `now` goes backwards): compact, then insert at the ordered
    /// place and renumber. `slot` is already counted in `live`.
    fn insert_sorted(&mut self, door: u32, slot: u32) {
        self.compact(door);
        let slots = &mut self.slots;
        let qu = &mut self.queues[door as usize];
        let Some(started) = slots[slot as usize].map(|a| a.started) else {
            return;
        };
        // The new attempt has the largest id: it goes after every entry
        // that started at or before it.
        let at =
            qu.q.partition_point(|&s| slots[s as usize].is_some_and(|a| a.started <= started));
        qu.q.insert(at, slot);
        for (i, &s) in qu.q.iter().enumerate().skip(at) {
            if let Some(a) = slots[s as usize].as_mut() {
                a.pos = qu.head + i as u64;
            }
        }
        qu.newest = qu.newest.max(Some(started));
    }

    /// Drop the stale entries of `door`'s queue and renumber the rest.
    fn compact(&mut self, door: u32) {
        let slots = &mut self.slots;
        let Some(qu) = self.queues.get_mut(door as usize) else {
            return;
        };
        let head = qu.head;
        let mut old = head;
        let mut new = head;
        qu.q.retain(|&s| {
            let live = Self::is_live(slots, door, old, s);
            old += 1;
            if live {
                if let Some(a) = slots[s as usize].as_mut() {
                    a.pos = new;
                }
                new += 1;
            }
            live
        });
        qu.newest =
            qu.q.back()
                .and_then(|&s| slots[s as usize].map(|a| a.started));
        let want = 2 * qu.q.len() + QUEUE_SLACK;
        if qu.q.capacity() > 2 * want {
            qu.q.shrink_to(want);
        }
    }

    /// Pop stale entries off the front of `door`'s queue.
    fn trim_front(&mut self, door: u32) {
        let slots = &self.slots;
        let Some(qu) = self.queues.get_mut(door as usize) else {
            return;
        };
        while let Some(&s) = qu.q.front() {
            if Self::is_live(slots, door, qu.head, s) {
                return;
            }
            qu.q.pop_front();
            qu.head += 1;
        }
        qu.newest = None;
    }

    fn remove(&mut self, key: &Key) -> Option<Attempt> {
        let slot = self.map.remove(key)?;
        let a = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if let Some(qu) = self.queues.get_mut(key.1 as usize) {
            qu.live -= 1;
        }
        self.trim_front(key.1);
        Some(a)
    }

    /// The oldest attempt of each door (the front of its queue).
    fn fronts(&self) -> impl Iterator<Item = (&DoorQueue, &Attempt)> {
        self.queues.iter().filter_map(|qu| {
            let &s = qu.q.front()?;
            Some((qu, self.slots[s as usize].as_ref()?))
        })
    }

    /// Remove and return the attempt with the oldest first hit.
    fn pop_oldest(&mut self) -> Option<(Key, Attempt)> {
        let (_, a) = self.fronts().min_by_key(|(_, a)| (a.started, a.id))?;
        let key = a.key;
        self.remove(&key).map(|a| (key, a))
    }

    /// The attempt that expires first: (last instant it is valid, id, key).
    /// Attempts whose deadline `Instant` cannot represent never expire.
    fn first_deadline(&self) -> Option<(Instant, u64, Key)> {
        self.fronts()
            .filter_map(|(qu, a)| Some((a.started.checked_add(qu.timeout)?, a.id, a.key)))
            .min_by_key(|&(v, id, _)| (v, id))
    }

    /// Remove and return one attempt that is expired at `now`, if any.
    fn pop_expired(&mut self, now: Instant) -> Option<(Key, Attempt)> {
        let (valid_until, _, key) = self.first_deadline()?;
        if now <= valid_until {
            return None;
        }
        self.remove(&key).map(|a| (key, a))
    }

    /// Remove every attempt of `door`.
    fn clear_door(&mut self, door: u32) {
        let Some(qu) = self.queues.get_mut(door as usize) else {
            return;
        };
        for (i, &s) in qu.q.iter().enumerate() {
            if Self::is_live(&self.slots, door, qu.head + i as u64, s) {
                if let Some(a) = self.slots[s as usize].take() {
                    self.map.remove(&a.key);
                    self.free.push(s);
                }
            }
        }
        qu.head += qu.q.len() as u64;
        qu.q.clear();
        qu.live = 0;
        qu.newest = None;
    }
}

/// The knock state machine over all doors.
#[derive(Debug)]
pub struct Matcher {
    doors: Vec<DoorRule>,
    /// For each knock, the doors whose current sequence contains it (each
    /// door once, ascending).
    index: HashMap<Knock, Vec<usize>>,
    cap: usize,
    attempts: Attempts,
}

impl Matcher {
    /// `cap` is the maximum number of attempts in flight (at least 1 is used).
    pub fn new(doors: Vec<DoorRule>, cap: usize) -> Self {
        // Slab slots are `u32`; more attempts than that could not fit in
        // memory anyway.
        let cap = cap.clamp(1, u32::MAX as usize);
        let attempts = Attempts::new(doors.iter().map(|d| d.timeout), cap);
        let mut m = Matcher {
            doors,
            index: HashMap::new(),
            cap,
            attempts,
        };
        m.rebuild_index();
        m
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (i, door) in self.doors.iter().enumerate() {
            let Some(seq) = &door.sequence else { continue };
            for &k in seq.knocks() {
                let list = self.index.entry(k).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
    }

    /// Feed one decoded packet seen at `now`; events are appended to `out`
    /// (expiries that are due first, then per door in door order).
    pub fn on_hit(
        &mut self,
        hit: &Hit,
        now: Instant,
        is_local: &dyn Fn(IpAddr) -> bool,
        out: &mut Vec<Event>,
    ) {
        // Amortised: every attempt expires at most once.
        self.expire(now, out);
        let knock = hit.knock();
        let Some(doors) = self.index.get(&knock) else {
            return;
        };
        for &door in doors {
            let rule = &self.doors[door];
            let Some(seq) = &rule.sequence else { continue };
            if !rule.sees(hit, is_local) {
                continue;
            }
            let knocks = seq.knocks();
            let key = (hit.src, door as u32);
            let src = hit.src;
            if let Some(a) = self.attempts.get_mut(&key) {
                if knocks.get(a.matched) == Some(&knock) {
                    a.matched += 1;
                    let stage = a.matched;
                    out.push(Event::Stage { door, src, stage });
                    if stage >= knocks.len() {
                        self.attempts.remove(&key);
                        out.push(Event::Open { door, src });
                    }
                    continue;
                }
                let stage = a.matched;
                self.attempts.remove(&key);
                out.push(Event::Fail { door, src, stage });
            }
            if knocks.first() == Some(&knock) {
                if knocks.len() == 1 {
                    out.push(Event::Stage {
                        door,
                        src,
                        stage: 1,
                    });
                    out.push(Event::Open { door, src });
                } else {
                    while self.attempts.len() >= self.cap {
                        match self.attempts.pop_oldest() {
                            Some(((src, door), a)) => out.push(Event::Evicted {
                                door: door as usize,
                                src,
                                stage: a.matched,
                            }),
                            None => break,
                        }
                    }
                    self.attempts.insert(key, 1, now);
                    out.push(Event::Stage {
                        door,
                        src,
                        stage: 1,
                    });
                }
            }
        }
    }

    /// Discard every attempt whose first hit is older than its door's
    /// timeout at `now` (age > timeout), in order of expiry.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Some(((src, door), a)) = self.attempts.pop_expired(now) {
            out.push(Event::Expired {
                door: door as usize,
                src,
                stage: a.matched,
            });
        }
    }

    /// The earliest instant at which [`expire`](Self::expire) will discard
    /// something (one nanosecond after the oldest deadline, since an attempt
    /// exactly at its timeout is still valid); `None` with nothing pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (valid_until, _, _) = self.attempts.first_deadline()?;
        Some(
            valid_until
                .checked_add(Duration::from_nanos(1))
                .unwrap_or(valid_until),
        )
    }

    /// Give `door` a new current sequence (one-time sequences advance) or
    /// disable it (`None`). That door's attempts in flight are dropped
    /// silently. An out-of-range door is ignored.
    pub fn set_sequence(&mut self, door: usize, seq: Option<Sequence>) {
        let Some(rule) = self.doors.get_mut(door) else {
            return;
        };
        rule.sequence = seq;
        self.rebuild_index();
        if let Ok(door) = u32::try_from(door) {
            self.attempts.clear_door(door);
        }
    }

    /// Number of attempts in flight.
    pub fn attempts(&self) -> usize {
        self.attempts.len()
    }

    pub fn doors(&self) -> &[DoorRule] {
        &self.doors
    }

    /// Attempt progress of `src` at `door`: knocks matched so far, if an
    /// attempt is in flight (ignores expiry that `expire` has not done yet).
    pub fn progress(&self, src: IpAddr, door: usize) -> Option<usize> {
        let door = u32::try_from(door).ok()?;
        self.attempts.get(&(src, door)).map(|a| a.matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, SYN};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn local(ip: IpAddr) -> bool {
        ip == LOCAL || ip == IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    }

    fn seq(s: &str) -> Sequence {
        s.parse().unwrap()
    }

    fn door(s: &str, timeout_secs: u64) -> DoorRule {
        DoorRule {
            sequence: Some(seq(s)),
            timeout: Duration::from_secs(timeout_secs),
            flags: None,
            target: None,
        }
    }

    fn tcp(src: IpAddr, port: u16) -> Hit {
        Hit {
            src,
            dst: LOCAL,
            src_port: 40000,
            dst_port: port,
            proto: Proto::Tcp,
            tcp_flags: SYN,
        }
    }

    fn udp(src: IpAddr, port: u16) -> Hit {
        Hit {
            proto: Proto::Udp,
            tcp_flags: 0,
            ..tcp(src, port)
        }
    }

    /// A matcher with a fake clock.
    struct Rig {
        m: Matcher,
        base: Instant,
    }

    impl Rig {
        fn new(doors: Vec<DoorRule>) -> Self {
            Rig::with_cap(doors, 1000)
        }
        fn with_cap(doors: Vec<DoorRule>, cap: usize) -> Self {
            Rig {
                m: Matcher::new(doors, cap),
                base: Instant::now(),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.base + Duration::from_millis(ms)
        }
        fn hit(&mut self, ms: u64, h: Hit) -> Vec<Event> {
            let mut out = Vec::new();
            let now = self.at(ms);
            self.m.on_hit(&h, now, &local, &mut out);
            self.m.check();
            out
        }
        fn expire(&mut self, ms: u64) -> Vec<Event> {
            let mut out = Vec::new();
            let now = self.at(ms);
            self.m.expire(now, &mut out);
            self.m.check();
            out
        }
    }

    impl Matcher {
        /// Internal consistency of the attempt bookkeeping.
        fn check(&self) {
            let at = &self.attempts;
            assert!(at.map.len() <= self.cap);
            assert!(at.slots.len() <= self.cap);
            assert_eq!(at.queues.len(), self.doors.len());
            // The table and the slab agree; free slots are empty, listed once.
            for (key, &slot) in &at.map {
                let a = at.slots[slot as usize].as_ref().expect("live slot");
                assert_eq!(&a.key, key);
                let len = self.doors[key.1 as usize].sequence.as_ref().unwrap().len();
                assert!(a.matched >= 1 && a.matched < len);
            }
            let used = at.slots.iter().filter(|s| s.is_some()).count();
            assert_eq!(used, at.map.len());
            let mut free = at.free.clone();
            free.sort_unstable();
            free.dedup();
            assert_eq!(free.len(), at.free.len());
            assert_eq!(free.len() + used, at.slots.len());
            assert!(free.iter().all(|&s| at.slots[s as usize].is_none()));
            // Each door's queue holds each of its live attempts exactly once,
            // in order of (first hit, id), with a live front.
            for (d, qu) in at.queues.iter().enumerate() {
                let d = d as u32;
                assert_eq!(qu.timeout, self.doors[d as usize].timeout);
                let live_at =
                    |i: usize, s: u32| Attempts::is_live(&at.slots, d, qu.head + i as u64, s);
                let live: Vec<&Attempt> =
                    qu.q.iter()
                        .enumerate()
                        .filter(|&(i, &s)| live_at(i, s))
                        .map(|(_, &s)| at.slots[s as usize].as_ref().unwrap())
                        .collect();
                let in_map = at.map.keys().filter(|k| k.1 == d).count();
                assert_eq!(live.len(), in_map);
                assert_eq!(qu.live, in_map);
                let mut keys: Vec<Key> = live.iter().map(|a| a.key).collect();
                keys.sort_unstable();
                keys.dedup();
                assert_eq!(keys.len(), in_map);
                match qu.q.front() {
                    Some(&s) => assert!(live_at(0, s), "stale front"),
                    None => assert_eq!(qu.newest, None),
                }
                assert!(live
                    .windows(2)
                    .all(|w| (w[0].started, w[0].id) < (w[1].started, w[1].id)));
                if let Some(last) = live.last() {
                    assert!(qu.newest >= Some(last.started));
                }
                assert!(qu.q.len() <= 2 * self.cap + QUEUE_SLACK);
            }
        }
    }

    fn stage(door: usize, src: IpAddr, stage: usize) -> Event {
        Event::Stage { door, src, stage }
    }
    fn open(door: usize, src: IpAddr) -> Event {
        Event::Open { door, src }
    }
    fn fail(door: usize, src: IpAddr, stage: usize) -> Event {
        Event::Fail { door, src, stage }
    }
    fn expired(door: usize, src: IpAddr, stage: usize) -> Event {
        Event::Expired { door, src, stage }
    }

    #[test]
    fn simple_open() {
        let mut r = Rig::new(vec![door("7000,8000:udp,9000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.m.attempts(), 1);
        assert_eq!(r.hit(100, udp(A, 8000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(200, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
        assert_eq!(r.m.attempts(), 0);
        // And again from scratch.
        assert_eq!(r.hit(300, tcp(A, 7000)), [stage(0, A, 1)]);
    }

    #[test]
    fn one_knock_door_opens_at_once() {
        let mut r = Rig::new(vec![door("7000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1), open(0, A)]);
        assert_eq!(r.m.attempts(), 0);
        assert_eq!(r.hit(1, tcp(A, 7000)), [stage(0, A, 1), open(0, A)]);
    }

    #[test]
    fn wrong_order_fails() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25)]);
        r.hit(0, tcp(A, 7000));
        assert_eq!(r.hit(1, tcp(A, 9000)), [fail(0, A, 1)]);
        assert_eq!(r.m.attempts(), 0);
        assert!(
            r.hit(2, tcp(A, 8000)).is_empty(),
            "8000 is not a first knock"
        );
        assert!(r.hit(3, tcp(A, 9000)).is_empty());
        // Starting with a later knock never starts an attempt.
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn wrong_protocol_of_own_port_fails_only_if_in_sequence() {
        // 8000:udp is in the sequence, 8000:tcp is not: the TCP hit is ignored.
        let mut r = Rig::new(vec![door("7000,8000:udp,9000", 25)]);
        r.hit(0, tcp(A, 7000));
        assert!(r.hit(1, tcp(A, 8000)).is_empty());
        assert_eq!(r.hit(2, udp(A, 8000)), [stage(0, A, 2)]);
        // 9000:udp is not in the sequence either.
        assert!(r.hit(3, udp(A, 9000)).is_empty());
        // 7000:tcp is in the sequence but not expected now: fails and restarts.
        assert_eq!(r.hit(4, tcp(A, 7000)), [fail(0, A, 2), stage(0, A, 1)]);
    }

    #[test]
    fn wrong_port_of_own_sequence_fails() {
        let mut r = Rig::new(vec![door("7000,8000,9000,10000", 25)]);
        r.hit(0, tcp(A, 7000));
        r.hit(1, tcp(A, 8000));
        assert_eq!(r.hit(2, tcp(A, 10000)), [fail(0, A, 2)]);
        assert_eq!(r.hit(3, tcp(A, 9000)), []);
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn port_not_in_sequence_is_ignored() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25)]);
        r.hit(0, tcp(A, 7000));
        for p in [22, 80, 443, 7001, 8999] {
            assert!(r.hit(1, tcp(A, p)).is_empty(), "port {p}");
            assert!(r.hit(1, udp(A, p)).is_empty(), "port {p}/udp");
        }
        assert_eq!(r.hit(2, tcp(A, 8000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(3, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn two_knockers_interleaved() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.hit(1, tcp(B, 7000)), [stage(0, B, 1)]);
        assert_eq!(r.hit(2, tcp(A, 8000)), [stage(0, A, 2)]);
        // B's wrong knock does not disturb A.
        assert_eq!(r.hit(3, tcp(B, 9000)), [fail(0, B, 1)]);
        assert_eq!(r.hit(4, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn two_doors_interleaved() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25), door("1111,2222,3333", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.hit(1, tcp(A, 1111)), [stage(1, A, 1)]);
        assert_eq!(r.hit(2, tcp(A, 8000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(3, tcp(A, 2222)), [stage(1, A, 2)]);
        assert_eq!(r.hit(4, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
        assert_eq!(r.hit(5, tcp(A, 3333)), [stage(1, A, 3), open(1, A)]);
    }

    #[test]
    fn progress_in_one_door_never_resets_another() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25), door("8000,7000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        // 8000 advances door 0 and starts door 1.
        assert_eq!(r.hit(1, tcp(A, 8000)), [stage(0, A, 2), stage(1, A, 1)]);
        // 7000 fails door 0 (and restarts it) but completes door 1.
        assert_eq!(
            r.hit(2, tcp(A, 7000)),
            [fail(0, A, 2), stage(0, A, 1), stage(1, A, 2), open(1, A)]
        );
    }

    #[test]
    fn sequences_sharing_a_prefix() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25), door("7000,8000,9001", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1), stage(1, A, 1)]);
        assert_eq!(r.hit(1, tcp(A, 8000)), [stage(0, A, 2), stage(1, A, 2)]);
        // 9001 is not in door 0's sequence: door 0 ignores it.
        assert_eq!(r.hit(2, tcp(A, 9001)), [stage(1, A, 3), open(1, A)]);
        assert_eq!(r.m.progress(A, 0), Some(2));
        assert_eq!(r.hit(3, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn repeated_first_knock_restarts() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        // A retransmitted SYN: fails the attempt and starts a fresh one.
        assert_eq!(r.hit(1000, tcp(A, 7000)), [fail(0, A, 1), stage(0, A, 1)]);
        assert_eq!(r.hit(2000, tcp(A, 8000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(3000, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn first_knock_mid_sequence_restarts_with_fresh_clock() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 10)]);
        r.hit(0, tcp(A, 7000));
        r.hit(1000, tcp(A, 8000));
        assert_eq!(r.hit(8000, tcp(A, 7000)), [fail(0, A, 2), stage(0, A, 1)]);
        assert_eq!(r.hit(9000, tcp(A, 8000)), [stage(0, A, 2)]);
        // 15 s after the very first knock, 7 s after the restart: still valid.
        assert_eq!(r.hit(15000, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn repeated_knocks_inside_a_sequence() {
        let mut r = Rig::new(vec![door("7000,7000,8000", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.hit(1, tcp(A, 7000)), [stage(0, A, 2)]);
        // A third 7000 fails the attempt at stage 2 and restarts.
        assert_eq!(r.hit(2, tcp(A, 7000)), [fail(0, A, 2), stage(0, A, 1)]);
        assert_eq!(r.hit(3, tcp(A, 7000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(4, tcp(A, 8000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn flag_invisible_tcp_hits_neither_advance_nor_reset() {
        let mut d = door("7000,8000,9000", 25);
        d.flags = Some("syn,!ack".parse().unwrap());
        let mut r = Rig::new(vec![d]);
        let with = |port, flags| Hit {
            tcp_flags: flags,
            ..tcp(A, port)
        };
        assert!(r.hit(0, with(7000, ACK)).is_empty());
        assert_eq!(r.m.attempts(), 0);
        assert_eq!(r.hit(1, with(7000, SYN)), [stage(0, A, 1)]);
        // Wrong port, but invisible: no failure.
        assert!(r.hit(2, with(9000, ACK)).is_empty());
        assert!(r.hit(2, with(9000, SYN | ACK)).is_empty());
        // Right port, but invisible: no advance.
        assert!(r.hit(3, with(8000, FIN)).is_empty());
        assert_eq!(r.m.progress(A, 0), Some(1));
        assert_eq!(r.hit(4, with(8000, SYN)), [stage(0, A, 2)]);
        assert_eq!(r.hit(5, with(9000, SYN)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn udp_is_not_subject_to_flags() {
        let mut d = door("7000:udp,8000:udp", 25);
        d.flags = Some("syn".parse().unwrap());
        let mut r = Rig::new(vec![d]);
        assert_eq!(r.hit(0, udp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.hit(1, udp(A, 8000)), [stage(0, A, 2), open(0, A)]);
    }

    #[test]
    fn target_versus_local_address() {
        let mut routed = door("7000,8000", 25);
        routed.target = Some(TARGET);
        let mut r = Rig::new(vec![door("7000,8000", 25), routed]);
        let to = |dst, port| Hit {
            dst,
            ..tcp(A, port)
        };
        // Local address: only the door without target sees it.
        assert_eq!(r.hit(0, to(LOCAL, 7000)), [stage(0, A, 1)]);
        // Target address (not local): only the routed door.
        assert_eq!(r.hit(1, to(TARGET, 7000)), [stage(1, A, 1)]);
        // Neither: nobody, and nothing is reset.
        assert!(r.hit(2, to(OTHER, 7000)).is_empty());
        assert!(r.hit(2, to(OTHER, 8000)).is_empty());
        assert_eq!(r.hit(3, to(TARGET, 8000)), [stage(1, A, 2), open(1, A)]);
        assert_eq!(r.hit(4, to(LOCAL, 8000)), [stage(0, A, 2), open(0, A)]);
    }

    #[test]
    fn sees_rules() {
        let mut d = door("7000", 25);
        assert!(d.sees(&tcp(A, 7000), &local));
        assert!(!d.sees(
            &Hit {
                dst: OTHER,
                ..tcp(A, 7000)
            },
            &local
        ));
        d.target = Some(OTHER);
        assert!(d.sees(
            &Hit {
                dst: OTHER,
                ..tcp(A, 7000)
            },
            &local
        ));
        assert!(!d.sees(&tcp(A, 7000), &local), "target replaces local");
        d.flags = Some("fin".parse().unwrap());
        let fin = Hit {
            dst: OTHER,
            tcp_flags: FIN,
            ..tcp(A, 7000)
        };
        assert!(d.sees(&fin, &local));
        assert!(!d.sees(
            &Hit {
                tcp_flags: SYN,
                ..fin
            },
            &local
        ));
        assert!(d.sees(
            &Hit {
                dst: OTHER,
                ..udp(A, 7000)
            },
            &local
        ));
    }

    #[test]
    fn timeout_boundary_exact_is_still_valid() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 5)]);
        r.hit(0, tcp(A, 7000));
        r.hit(2000, tcp(A, 8000));
        // Age == timeout: valid.
        assert!(r.expire(5000).is_empty());
        assert_eq!(r.hit(5000, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn timeout_just_after_boundary_expires() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 5)]);
        r.hit(0, tcp(A, 7000));
        r.hit(2000, tcp(A, 8000));
        let late = r.at(5000) + Duration::from_nanos(1);
        assert_eq!(r.m.next_deadline(), Some(late));
        let mut out = Vec::new();
        r.m.expire(late - Duration::from_nanos(1), &mut out);
        assert!(out.is_empty());
        r.m.expire(late, &mut out);
        assert_eq!(out, [expired(0, A, 2)]);
        assert_eq!(r.m.attempts(), 0);
        assert_eq!(r.m.next_deadline(), None);
        assert!(r.hit(5001, tcp(A, 9000)).is_empty());
    }

    #[test]
    fn late_hit_without_expire_call_sees_no_attempt() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 5)]);
        r.hit(0, tcp(A, 7000));
        r.hit(1000, tcp(A, 8000));
        // No expire() call: the late 9000 must not open, and must not count
        // as a failure of a live attempt.
        assert_eq!(r.hit(5001, tcp(A, 9000)), [expired(0, A, 2)]);
        assert_eq!(r.m.attempts(), 0);
        // A late first knock starts afresh (not "fail + restart").
        r.hit(6000, tcp(A, 7000));
        assert_eq!(
            r.hit(11001, tcp(A, 7000)),
            [expired(0, A, 1), stage(0, A, 1)]
        );
    }

    #[test]
    fn expiry_uses_each_doors_timeout_and_reports_in_order() {
        let mut r = Rig::new(vec![door("7000,8000", 10), door("7000,9000", 3)]);
        r.hit(0, tcp(A, 7000));
        r.hit(1000, tcp(B, 7000));
        assert_eq!(r.m.attempts(), 4);
        assert_eq!(
            r.m.next_deadline(),
            Some(r.at(3000) + Duration::from_nanos(1))
        );
        assert_eq!(r.expire(3500), [expired(1, A, 1)]);
        assert_eq!(r.expire(4500), [expired(1, B, 1)]);
        assert_eq!(
            r.m.next_deadline(),
            Some(r.at(10000) + Duration::from_nanos(1))
        );
        // Door 0 is still live for A after door 1 expired.
        assert_eq!(r.hit(9000, tcp(A, 8000)), [stage(0, A, 2), open(0, A)]);
        assert_eq!(r.expire(20000), [expired(0, B, 1)]);
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn eviction_under_cap_removes_oldest() {
        let mut r = Rig::with_cap(vec![door("7000,8000", 25)], 3);
        let src = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
        for i in 1..=3 {
            r.hit(u64::from(i), tcp(src(i), 7000));
        }
        assert_eq!(r.m.attempts(), 3);
        // Advancing an attempt does not change its age.
        assert_eq!(
            r.hit(10, tcp(src(1), 7000)),
            [fail(0, src(1), 1), stage(0, src(1), 1)]
        );
        // src 1 restarted at 10 ms, so src 2 is now the oldest.
        assert_eq!(
            r.hit(20, tcp(src(4), 7000)),
            [
                Event::Evicted {
                    door: 0,
                    src: src(2),
                    stage: 1
                },
                stage(0, src(4), 1)
            ]
        );
        assert_eq!(r.m.attempts(), 3);
        assert_eq!(r.m.progress(src(2), 0), None);
        for i in 5..50 {
            r.hit(100 + u64::from(i), tcp(src(i), 7000));
            assert!(r.m.attempts() <= 3);
        }
        // The three newest survive and can still open.
        for i in 47..50 {
            assert_eq!(
                r.hit(1000, tcp(src(i), 8000)),
                [stage(0, src(i), 2), open(0, src(i))]
            );
        }
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn ties_across_doors_go_to_the_attempt_started_first() {
        // Same first-hit time, door 1's attempt created before door 0's.
        let doors = vec![door("7000,8000", 25), door("9000,8000", 25)];
        let mut r = Rig::with_cap(doors.clone(), 2);
        r.hit(0, tcp(A, 9000));
        r.hit(0, tcp(B, 7000));
        assert_eq!(
            r.hit(0, tcp(OTHER, 7000)),
            [
                Event::Evicted {
                    door: 1,
                    src: A,
                    stage: 1
                },
                stage(0, OTHER, 1)
            ]
        );
        let mut r = Rig::new(doors);
        r.hit(0, tcp(A, 9000));
        r.hit(0, tcp(B, 7000));
        assert_eq!(r.expire(25001), [expired(1, A, 1), expired(0, B, 1)]);
    }

    #[test]
    fn attempts_removed_early_do_not_pile_up() {
        let mut r = Rig::new(vec![door("7000,8000", 25)]);
        // A long-lived attempt stays at the front of the door's queue while
        // thousands of others start and open behind it.
        r.hit(0, tcp(A, 7000));
        for i in 0..5000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            r.m.on_hit(&tcp(src, 7000), r.at(1), &local, &mut Vec::new());
            r.m.on_hit(&tcp(src, 8000), r.at(1), &local, &mut Vec::new());
        }
        r.m.check();
        assert_eq!(r.m.attempts(), 1);
        let qu = &r.m.attempts.queues[0];
        assert!(qu.q.len() <= 2 + QUEUE_SLACK, "queue length {}", qu.q.len());
        assert!(r.m.attempts.slots.len() <= 2);
        assert_eq!(r.hit(2, tcp(A, 8000)), [stage(0, A, 2), open(0, A)]);
        assert_eq!(r.m.next_deadline(), None);
    }

    #[test]
    fn cap_zero_is_treated_as_one() {
        let mut r = Rig::with_cap(vec![door("7000,8000", 25)], 0);
        r.hit(0, tcp(A, 7000));
        assert_eq!(r.m.attempts(), 1);
        assert_eq!(r.hit(1, tcp(A, 8000)), [stage(0, A, 2), open(0, A)]);
    }

    #[test]
    fn set_sequence_disables_and_changes_a_door() {
        let mut r = Rig::new(vec![door("7000,8000", 25), door("7000,9000", 25)]);
        r.hit(0, tcp(A, 7000));
        assert_eq!(r.m.attempts(), 2);
        r.m.set_sequence(0, None);
        r.m.check();
        assert_eq!(r.m.attempts(), 1, "door 0's attempt dropped, door 1's kept");
        assert_eq!(r.m.doors()[0].sequence, None);
        assert!(r.hit(1, tcp(A, 8000)).is_empty());
        assert!(r
            .hit(2, tcp(A, 7000))
            .iter()
            .all(|e| !matches!(e, Event::Stage { door: 0, .. })));
        // A one-time sequence advances.
        r.m.set_sequence(0, Some(seq("1234:udp,5678")));
        r.m.check();
        assert_eq!(r.m.progress(A, 0), None);
        assert!(r.hit(3, tcp(A, 8000)).is_empty());
        assert_eq!(r.hit(4, udp(A, 1234)), [stage(0, A, 1)]);
        assert_eq!(r.hit(5, tcp(A, 5678)), [stage(0, A, 2), open(0, A)]);
        // Door 1 was never disturbed (its attempt restarted at 2 ms).
        assert_eq!(r.hit(6, tcp(A, 9000)), [stage(1, A, 2), open(1, A)]);
        // Out of range: ignored.
        r.m.set_sequence(7, None);
        assert_eq!(r.m.doors().len(), 2);
    }

    #[test]
    fn ipv6_sources() {
        let a6: IpAddr = "2001:db8::7".parse().unwrap();
        let b6: IpAddr = "2001:db8::8".parse().unwrap();
        let dst: IpAddr = "2001:db8::1".parse().unwrap();
        let mut r = Rig::new(vec![door("7000,8000:udp", 25)]);
        let h = |src, port, proto| Hit {
            src,
            dst,
            src_port: 1,
            dst_port: port,
            proto,
            tcp_flags: if proto == Proto::Tcp { SYN } else { 0 },
        };
        assert_eq!(r.hit(0, h(a6, 7000, Proto::Tcp)), [stage(0, a6, 1)]);
        assert_eq!(r.hit(1, h(b6, 7000, Proto::Tcp)), [stage(0, b6, 1)]);
        assert_eq!(
            r.hit(2, h(a6, 8000, Proto::Udp)),
            [stage(0, a6, 2), open(0, a6)]
        );
        assert_eq!(r.m.progress(b6, 0), Some(1));
    }

    // ---- property tests ----

    /// Small alphabet of knocks so that random hits often matter.
    fn arb_knock() -> impl Strategy<Value = Knock> {
        (
            prop_oneof![Just(1u16), Just(2), Just(3), Just(4)],
            any::<bool>(),
        )
            .prop_map(|(p, u)| Knock::new(p, if u { Proto::Udp } else { Proto::Tcp }))
    }

    fn arb_door() -> impl Strategy<Value = DoorRule> {
        (
            proptest::collection::vec(arb_knock(), 1..5),
            0u64..20,
            proptest::option::of(0u8..4),
            any::<bool>(),
        )
            .prop_map(|(knocks, timeout, flags, targeted)| DoorRule {
                sequence: Sequence::new(knocks),
                timeout: Duration::from_secs(timeout),
                flags: flags.map(|f| FlagSpec {
                    set: [SYN, FIN, SYN | ACK, 0][f as usize],
                    clear: [ACK, 0, 0, SYN][f as usize],
                }),
                target: targeted.then_some(TARGET),
            })
    }

    #[derive(Debug, Clone)]
    struct Step {
        dt_ms: u64,
        src: u8,
        knock: Knock,
        flags: u8,
        dst: u8,
        expire: bool,
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        (
            0u64..4000,
            0u8..4,
            arb_knock(),
            prop_oneof![Just(SYN), Just(ACK), Just(FIN), Just(SYN | ACK)],
            0u8..3,
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(dt_ms, src, knock, flags, dst, expire)| Step {
                dt_ms,
                src,
                knock,
                flags,
                dst,
                expire,
            })
    }

    fn step_hit(s: &Step) -> Hit {
        let src = if s.src < 2 {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, s.src))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                u16::from(s.src),
            ))
        };
        Hit {
            src,
            dst: [LOCAL, TARGET, OTHER][s.dst as usize],
            src_port: 1,
            dst_port: s.knock.port,
            proto: s.knock.proto,
            tcp_flags: if s.knock.proto == Proto::Tcp {
                s.flags
            } else {
                0
            },
        }
    }

    /// Straightforward model of SPEC §2 without a cap: a list of attempts,
    /// scanned linearly.
    struct Model {
        doors: Vec<DoorRule>,
        attempts: Vec<(IpAddr, usize, usize, Instant)>,
    }

    impl Model {
        fn expire(&mut self, now: Instant) {
            let doors = &self.doors;
            self.attempts
                .retain(|&(_, d, _, t0)| now.saturating_duration_since(t0) <= doors[d].timeout);
        }
        fn hit(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.expire(now);
            let k = h.knock();
            for (d, rule) in self.doors.iter().enumerate() {
                let Some(seq) = &rule.sequence else { continue };
                if !rule.sees(h, &local) || !seq.contains(k) {
                    continue;
                }
                let pos = self.attempts.iter().position(|a| a.0 == h.src && a.1 == d);
                if let Some(i) = pos {
                    let matched = self.attempts[i].2;
                    if seq.knocks()[matched] == k {
                        self.attempts[i].2 += 1;
                        out.push(stage(d, h.src, matched + 1));
                        if matched + 1 == seq.len() {
                            self.attempts.remove(i);
                            out.push(open(d, h.src));
                        }
                        continue;
                    }
                    self.attempts.remove(i);
                    out.push(fail(d, h.src, matched));
                }
                if seq.first() == k {
                    out.push(stage(d, h.src, 1));
                    if seq.len() == 1 {
                        out.push(open(d, h.src));
                    } else {
                        self.attempts.push((h.src, d, 1, now));
                    }
                }
            }
        }
    }

    fn non_expiry(v: &[Event]) -> Vec<Event> {
        v.iter()
            .filter(|e| !matches!(e, Event::Expired { .. }))
            .copied()
            .collect()
    }

    /// Model of the cap and of the eviction and expiry orders: attempts in
    /// a list in order of creation. The attempt with the earliest first hit
    /// (the earlier created on ties) is evicted; expiries are reported in
    /// order of deadline (the earlier created on ties).
    struct CappedModel {
        doors: Vec<DoorRule>,
        cap: usize,
        attempts: Vec<(IpAddr, usize, usize, Instant)>,
    }

    impl CappedModel {
        fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
            let doors = &self.doors;
            let mut gone: Vec<(Instant, usize)> = Vec::new();
            for (i, &(_, d, _, t0)) in self.attempts.iter().enumerate() {
                if now.saturating_duration_since(t0) > doors[d].timeout {
                    gone.push((t0 + doors[d].timeout, i));
                }
            }
            gone.sort();
            for &(_, i) in &gone {
                let (src, door, stage, _) = self.attempts[i];
                out.push(expired(door, src, stage));
            }
            let mut i = 0;
            self.attempts.retain(|_| {
                i += 1;
                !gone.iter().any(|g| g.1 == i - 1)
            });
        }

        fn hit(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.expire(now, out);
            let k = h.knock();
            for (d, rule) in self.doors.iter().enumerate() {
                let Some(seq) = &rule.sequence else { continue };
                if !rule.sees(h, &local) || !seq.contains(k) {
                    continue;
                }
                let pos = self.attempts.iter().position(|a| a.0 == h.src && a.1 == d);
                if let Some(i) = pos {
                    let matched = self.attempts[i].2;
                    if seq.knocks()[matched] == k {
                        self.attempts[i].2 += 1;
                        out.push(stage(d, h.src, matched + 1));
                        if matched + 1 == seq.len() {
                            self.attempts.remove(i);
                            out.push(open(d, h.src));
                        }
                        continue;
                    }
                    self.attempts.remove(i);
                    out.push(fail(d, h.src, matched));
                }
                if seq.first() == k {
                    if seq.len() == 1 {
                        out.push(stage(d, h.src, 1));
                        out.push(open(d, h.src));
                        continue;
                    }
                    while self.attempts.len() >= self.cap {
                        let (i, _) = self
                            .attempts
                            .iter()
                            .enumerate()
                            .min_by_key(|&(i, a)| (a.3, i))
                            .unwrap();
                        let (src, door, stage, _) = self.attempts.remove(i);
                        out.push(Event::Evicted { door, src, stage });
                    }
                    self.attempts.push((h.src, d, 1, now));
                    out.push(stage(d, h.src, 1));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// With room for every attempt, the matcher behaves exactly like the
        /// linear model, and its bookkeeping stays consistent.
        #[test]
        fn agrees_with_model(
            doors in proptest::collection::vec(arb_door(), 1..4),
            steps in proptest::collection::vec(arb_step(), 0..80),
        ) {
            let base = Instant::now();
            let mut m = Matcher::new(doors.clone(), 10_000);
            let mut model = Model { doors, attempts: Vec::new() };
            let mut now = base;
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                let mut out = Vec::new();
                if s.expire {
                    m.expire(now, &mut out);
                    model.expire(now);
                    let only_expired = out.iter().all(|e| matches!(e, Event::Expired { .. }));
                    prop_assert!(only_expired, "expire() emitted {:?}", out);
                } else {
                    let h = step_hit(s);
                    let mut want = Vec::new();
                    m.on_hit(&h, now, &local, &mut out);
                    model.hit(&h, now, &mut want);
                    prop_assert_eq!(non_expiry(&out), want);
                }
                m.check();
                prop_assert_eq!(m.attempts(), model.attempts.len());
                if let Some(d) = m.next_deadline() {
                    prop_assert!(d > now);
                }
            }
        }

        /// The number of attempts never exceeds the cap.
        #[test]
        fn never_exceeds_cap(
            doors in proptest::collection::vec(arb_door(), 1..4),
            steps in proptest::collection::vec(arb_step(), 0..80),
            cap in 1usize..5,
        ) {
            let mut m = Matcher::new(doors, cap);
            let mut now = Instant::now();
            let mut out = Vec::new();
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                m.on_hit(&step_hit(s), now, &local, &mut out);
                prop_assert!(m.attempts() <= cap);
                m.check();
            }
        }

        /// A door opens for a source only right after the exact sequence of
        /// hits that door could see from that source (no other relevant hit
        /// in between), all within the door's timeout of the first.
        #[test]
        fn opens_only_after_exact_sequence_in_time(
            doors in proptest::collection::vec(arb_door(), 1..4),
            steps in proptest::collection::vec(arb_step(), 0..120),
            cap in 1usize..6,
        ) {
            let mut m = Matcher::new(doors.clone(), cap);
            let mut now = Instant::now();
            // Per (src, door): the relevant hits so far, with their times.
            let mut seen: HashMap<(IpAddr, usize), Vec<(Knock, Instant)>> = HashMap::new();
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                let h = step_hit(s);
                for (d, rule) in doors.iter().enumerate() {
                    if let Some(seq) = &rule.sequence {
                        if rule.sees(&h, &local) && seq.contains(h.knock()) {
                            seen.entry((h.src, d)).or_default().push((h.knock(), now));
                        }
                    }
                }
                let mut out = Vec::new();
                m.on_hit(&h, now, &local, &mut out);
                for e in &out {
                    if let Event::Open { door, src } = *e {
                        prop_assert_eq!(src, h.src);
                        let rule = &doors[door];
                        let seq = rule.sequence.as_ref().unwrap();
                        let hist = &seen[&(src, door)];
                        prop_assert!(hist.len() >= seq.len());
                        let tail = &hist[hist.len() - seq.len()..];
                        let knocks: Vec<Knock> = tail.iter().map(|x| x.0).collect();
                        prop_assert_eq!(knocks.as_slice(), seq.knocks());
                        prop_assert!(now.duration_since(tail[0].1) <= rule.timeout);
                    }
                }
            }
        }

        /// Nothing panics: arbitrary doors (disabled, zero and huge
        /// timeouts), time going backwards, sequence changes.
        #[test]
        fn no_input_panics(
            doors in proptest::collection::vec(
                (arb_door(), any::<bool>(), any::<bool>()).prop_map(|(mut d, off, huge)| {
                    if off { d.sequence = None; }
                    if huge { d.timeout = Duration::MAX; }
                    d
                }),
                0..4,
            ),
            steps in proptest::collection::vec((arb_step(), any::<bool>(), 0usize..6, proptest::option::of(proptest::collection::vec(arb_knock(), 1..4))), 0..60),
            cap in 0usize..4,
        ) {
            let base = Instant::now() + Duration::from_secs(3600);
            let mut m = Matcher::new(doors, cap);
            let mut out = Vec::new();
            for (s, backwards, door, new_seq) in &steps {
                let now = if *backwards {
                    base - Duration::from_millis(s.dt_ms)
                } else {
                    base + Duration::from_millis(s.dt_ms)
                };
                if s.expire {
                    m.set_sequence(*door, new_seq.clone().and_then(Sequence::new));
                    m.expire(now, &mut out);
                } else {
                    m.on_hit(&step_hit(s), now, &local, &mut out);
                }
                let _ = m.next_deadline();
                m.check();
            }
        }

        /// Under a small cap, with huge timeouts, sequence changes and a
        /// clock that sometimes goes backwards, every event (evictions and
        /// expiries included, in order) matches the capped model.
        #[test]
        fn evicts_and_expires_in_model_order(
            doors in proptest::collection::vec(
                (arb_door(), proptest::bool::weighted(0.2)).prop_map(|(mut d, huge)| {
                    if huge { d.timeout = Duration::MAX; }
                    d
                }),
                1..4,
            ),
            steps in proptest::collection::vec(
                (
                    arb_step(),
                    proptest::bool::weighted(0.1),
                    proptest::option::weighted(
                        0.05,
                        (0usize..4, proptest::option::of(proptest::collection::vec(arb_knock(), 1..4))),
                    ),
                ),
                0..150,
            ),
            cap in 1usize..6,
        ) {
            let mut m = Matcher::new(doors.clone(), cap);
            let mut model = CappedModel { doors, cap, attempts: Vec::new() };
            let mut now = Instant::now() + Duration::from_secs(3600);
            for (s, backwards, new_seq) in &steps {
                // Coarse steps (0 to 3.5 s by 0.5 s): equal first hits and
                // deadlines across doors are common, so ties are exercised.
                let dt = Duration::from_millis(s.dt_ms / 500 * 500);
                now = if *backwards { now - dt } else { now + dt };
                if let Some((door, knocks)) = new_seq {
                    let seq = knocks.clone().and_then(Sequence::new);
                    m.set_sequence(*door, seq.clone());
                    if let Some(rule) = model.doors.get_mut(*door) {
                        rule.sequence = seq;
                        model.attempts.retain(|a| a.1 != *door);
                    }
                }
                let mut out = Vec::new();
                let mut want = Vec::new();
                if s.expire {
                    m.expire(now, &mut out);
                    model.expire(now, &mut want);
                } else {
                    let h = step_hit(s);
                    m.on_hit(&h, now, &local, &mut out);
                    model.hit(&h, now, &mut want);
                }
                prop_assert_eq!(out, want);
                m.check();
                prop_assert_eq!(m.attempts(), model.attempts.len());
                let deadline = model
                    .attempts
                    .iter()
                    .filter_map(|a| a.3.checked_add(model.doors[a.1].timeout))
                    .min()
                    .map(|v| v + Duration::from_nanos(1));
                prop_assert_eq!(m.next_deadline(), deadline);
            }
        }
    }
}
