//! The knock state machine (the rules below; the choices the classic
//! daemon leaves open are in `docs/DECISIONS.md`), driven by hits and by
//! time passed in.
//!
//! Pure code: no clock reads, no I/O. The caller passes `now` with every call
//! and asks [`Matcher::next_deadline`] when to call [`Matcher::expire`].
//!
//! Rules:
//! * A door accepts one or more *candidate* sequences at once, each named by
//!   a [`Tag`] (a fixed door has one; a one-time door its current line and
//!   the next few; a rotating door the windows around the current one). An
//!   empty candidate list disables the door.
//! * State is kept per (source address, door, candidate); doors are
//!   independent, so one hit can advance several doors.
//! * A hit is *relevant* to a candidate only if the door [sees](DoorRule::sees)
//!   it and its `port:proto` occurs in the candidate's sequence. Every other
//!   hit is ignored by that candidate: it neither advances nor resets it.
//! * A relevant hit that is the next expected knock advances the attempt
//!   ([`Event::Stage`]); after the last knock the door opens ([`Event::Open`]
//!   with the candidate's tag), and every attempt of that source at that door
//!   ends: the completed one silently, those of other candidates with
//!   [`Event::Fail`] (after the `Open`). Without an attempt, the first knock
//!   starts one; a one-knock candidate emits `Stage 1` and `Open` at once.
//! * Duplicates: a relevant hit that repeats a knock the attempt already
//!   matched (and is not the expected one) is ignored; when it repeats the
//!   *first* knock, the attempt's clock restarts from it (a knocker who starts
//!   the whole sequence again gets the full timeout from the restart). The
//!   expected knock always advances, so `7000,8000,7000` works.
//! * Stragglers: for the door's timeout after it opened for a source, a hit
//!   from that source on a knock of the sequence that opened it never starts
//!   an attempt and never fails one (it still advances an attempt that
//!   expects it). One knock, one open, even for a one-knock door. At most
//!   [`RECENT_CAP`] openings are remembered (oldest forgotten first).
//! * Any other relevant hit fails the attempt ([`Event::Fail`]); it never
//!   starts a new one (a first knock is always a duplicate of a live attempt).
//! * Scan guard (doors with `scan_threshold` N > 0): a *foreign* hit is a
//!   TCP SYN without ACK, or a UDP datagram, to a local address or a door's
//!   target, on a `port:proto` that no candidate of any door uses (nor did
//!   one of the last [`RETIRED_CAP`] knocks of candidates that left their
//!   door: replayed or straggling used sequences are not a scan). Per source
//!   the matcher counts the distinct foreign knocks; the count is forgotten
//!   after [`SCAN_MEMORY`] without a new distinct one (once it is past every
//!   door's threshold, without any foreign hit). While a source's count is
//!   above N, its relevant hits at that door fail its attempts there and
//!   start nothing. At most [`SCAN_SETS`] x [`SCAN_WAYS`] sources are counted:
//!   a source is hashed (secret per-process key) to a set; a new source
//!   replaces a forgotten one, else the one with the fewest ports (the least
//!   recent on ties), so a flood of one-port sources cannot push out a
//!   scanner.
//! * Expiry: an attempt whose (re)start is *older than* the door's timeout is
//!   discarded. "Older than" is strict: at age == timeout the attempt is still
//!   valid (a knock arriving exactly `Seq_Timeout` after the first one still
//!   counts); at age > timeout it is gone ([`Event::Expired`]). A hit arriving
//!   after that point behaves as if the attempt were gone, even when
//!   [`Matcher::expire`] has not been called yet.
//! * Memory is bounded: at most `cap` attempts are in flight; when a new one
//!   would exceed that, the oldest attempt of the door holding the most
//!   attempts is evicted ([`Event::Evicted`]), so spoofed first hits on one
//!   door never push out a slow knock on another.
//!
//! Cost per hit: one hash lookup of the knock to find the (door, candidate)
//! pairs whose sequence uses it (a hit on a knock no door uses costs nothing
//! more, or, with the guard on, one lookup of the retired knocks and one
//! update of the fixed-size scan table: a keyed hash and at most
//! [`SCAN_WAYS`] entries), then one scan-table lookup, per door one
//! recent-openings lookup, and per pair one hash lookup by (source, door,
//! tag). Attempts live in a slab, found through a hash table of slot
//! numbers (the key is read from the slab: 5 bytes per table entry);
//! each door keeps a queue of its attempts in order of (re)start, which (the
//! door's timeout being fixed) is also its order of expiry. The fronts of
//! the non-empty queues sit in two ordered sets, one by deadline and one by
//! (attempts held, age), so the next deadline and the eviction victim are
//! their first entries, and starting, ending or expiring an attempt costs
//! O(log d), d being the number of doors with attempts in flight (not the
//! number of doors: a flood on one door costs the same with 1 or 1000).
//! Entries of attempts removed early are skipped when they reach the front
//! and dropped when a queue grows past twice its live attempts, so the work
//! is amortised O(1) per attempt and memory stays proportional to the
//! attempts in flight. Nothing scans the attempts in flight or the doors,
//! except [`Matcher::set_candidates`] (the changed door's attempts, and the
//! knock index is rebuilt) and an opening (the door's candidates).
//!
//! Source-bound doors (a rotating door with `Sequence_Bind_Source`): their
//! candidates depend on the knocker, so they cannot be indexed ahead of
//! time. Such a door is declared with [`Matcher::set_bound`] (its protocol
//! and port range); a hit inside that range asks a [`PerSource`] for the
//! source's candidates ([`Matcher::on_hit_with`]; the source derives and
//! caches them) and is then handled by the same rules as above, with those
//! candidates. Source-bound doors are handled after the indexed ones. For
//! the scan guard, a hit in the range that is not in the source's
//! candidates is foreign like any other. Cost: one range check per
//! source-bound door and hit, plus the lookup in the source's cache.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use knock_common::flags::{ACK, SYN};
use knock_common::{FlagSpec, Knock, Proto, Sequence};

use crate::packet::Hit;

/// Names one candidate sequence of a door: a one-time door uses the line
/// number, a rotating door the window number.
pub type Tag = u64;

/// One sequence a door accepts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub tag: Tag,
    pub sequence: Sequence,
}

/// The candidates of source-bound doors, asked for per hit.
pub trait PerSource {
    /// The candidates door `door` accepts from `src` now.
    fn candidates_for(&mut self, door: usize, src: IpAddr) -> &[Candidate];
}

/// A [`PerSource`] for matchers without source-bound doors.
pub struct NoPerSource;

impl PerSource for NoPerSource {
    fn candidates_for(&mut self, _door: usize, _src: IpAddr) -> &[Candidate] {
        &[]
    }
}

/// The hits a source-bound door looks at: `proto` on ports `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRange {
    pub proto: Proto,
    pub lo: u16,
    pub hi: u16,
}

impl BoundRange {
    pub fn contains(&self, knock: Knock) -> bool {
        knock.proto == self.proto && self.lo <= knock.port && knock.port <= self.hi
    }
}

/// What the matcher needs to know about one door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorRule {
    /// The sequences accepted now; empty disables the door (e.g. its
    /// one-time sequence file ran out). Tags are distinct.
    pub candidates: Vec<Candidate>,
    /// `Seq_Timeout`: time allowed from the first to the last hit.
    pub timeout: Duration,
    /// `TCPFlags`: TCP hits whose flags do not match are invisible.
    pub flags: Option<FlagSpec>,
    /// `Target`: only hits to this address count; otherwise hits to one of
    /// the interface's own addresses.
    pub target: Option<IpAddr>,
    /// `Scan_Threshold`: a source that touched more distinct foreign knocks
    /// than this cannot knock this door; 0 turns the guard off.
    pub scan_threshold: usize,
}

impl DoorRule {
    /// A door with one fixed sequence (tag 0), no flags, no target, no
    /// scan guard.
    pub fn fixed(sequence: Sequence, timeout: Duration) -> Self {
        DoorRule {
            candidates: vec![Candidate { tag: 0, sequence }],
            timeout,
            flags: None,
            target: None,
            scan_threshold: 0,
        }
    }

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

    /// The candidate named `tag`, if the door accepts it now.
    pub fn candidate(&self, tag: Tag) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.tag == tag)
    }
}

/// Is `hit` a connection attempt the scan guard counts: a TCP SYN without
/// ACK, or any UDP datagram?
pub fn is_probe(hit: &Hit) -> bool {
    match hit.proto {
        Proto::Udp => true,
        Proto::Tcp => hit.tcp_flags & (SYN | ACK) == SYN,
    }
}

/// What happened to an attempt. `door` indexes [`Matcher::doors`]; `tag`
/// names the candidate; `stage` is 1-based (the number of knocks matched
/// so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The attempt advanced to `stage` (classic log line `SRC: DOOR: Stage N`).
    Stage {
        door: usize,
        src: IpAddr,
        tag: Tag,
        stage: usize,
    },
    /// The whole sequence of candidate `tag` arrived in time: open the door
    /// for `src`.
    Open { door: usize, src: IpAddr, tag: Tag },
    /// The attempt ended without opening after matching `stage` knocks: a
    /// wrong knock, a scanning source, or another candidate of the door
    /// opened.
    Fail {
        door: usize,
        src: IpAddr,
        tag: Tag,
        stage: usize,
    },
    /// The attempt (at `stage`) outlived the door's timeout.
    Expired {
        door: usize,
        src: IpAddr,
        tag: Tag,
        stage: usize,
    },
    /// The attempt (at `stage`) was dropped to keep within the cap.
    Evicted {
        door: usize,
        src: IpAddr,
        tag: Tag,
        stage: usize,
    },
}

impl Event {
    /// For an attempt that ended without opening: (door, tag, stage).
    pub fn ended(&self) -> Option<(usize, Tag, usize)> {
        match *self {
            Event::Fail {
                door, tag, stage, ..
            }
            | Event::Expired {
                door, tag, stage, ..
            }
            | Event::Evicted {
                door, tag, stage, ..
            } => Some((door, tag, stage)),
            Event::Stage { .. } | Event::Open { .. } => None,
        }
    }
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

/// (source, door index, candidate tag). The door is kept as `u32` (doors
/// come from a configuration file, far fewer than `u32::MAX`).
type Key = (IpAddr, u32, Tag);

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
    /// (live, started, id) of the front when the door was last entered in
    /// [`Attempts::by_rank`] and [`Attempts::by_deadline`]; `None` while
    /// the queue is empty (the door is then in neither).
    ranked: Option<(usize, Instant, u64)>,
}

impl DoorQueue {
    fn new(timeout: Duration) -> Self {
        DoorQueue {
            q: VecDeque::new(),
            head: 0,
            live: 0,
            newest: None,
            timeout,
            ranked: None,
        }
    }
}

/// Attempts in flight: a slab of attempts with a free list, a table of slab
/// slots found by the key stored in the slot, and one [`DoorQueue`] per door
/// giving the eviction and expiry orders within the door. Every live attempt
/// is in the table and has exactly one live entry in its door's queue;
/// nothing else is live. The fronts of the non-empty queues are kept in two
/// ordered sets, so neither the next deadline nor the eviction victim needs
/// to look at every door.
#[derive(Debug)]
struct Attempts {
    /// Slab slots, hashed by their attempt's key with `hasher`.
    table: hashbrown::HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Option<Attempt>>,
    free: Vec<u32>,
    queues: Vec<DoorQueue>,
    /// Per non-empty door: (last instant its front is valid, front id,
    /// door). Fronts whose deadline `Instant` cannot represent never
    /// expire and are left out.
    by_deadline: BTreeSet<(Instant, u64, u32)>,
    /// Per non-empty door: (most attempts first, front's first hit, front
    /// id, door); the first entry names the eviction victim.
    by_rank: BTreeSet<(Reverse<usize>, Instant, u64, u32)>,
    next_id: u64,
}

impl Attempts {
    /// Room for twice `cap` attempts in the table up front (at most
    /// `PRESIZE_MAX`; a table entry is a 4-byte slot number and a control
    /// byte, the key is read from the slab). A flood removes and inserts attempts without pause,
    /// which leaves tombstones in the table; once they use up its free
    /// slots, the table is rebuilt in place only if it is at most half full,
    /// and doubled otherwise (with old and new table alive at once). Sized
    /// for twice the cap, it is never more than half full, so it never
    /// grows: memory stays flat however many sources a flood uses. The slab
    /// never holds more than `cap` attempts.
    fn new(timeouts: impl Iterator<Item = Duration>, cap: usize) -> Self {
        let pre = cap.min(PRESIZE_MAX);
        Attempts {
            table: hashbrown::HashTable::with_capacity(pre.saturating_mul(2)),
            hasher: RandomState::new(),
            slots: Vec::with_capacity(pre),
            free: Vec::new(),
            queues: timeouts.map(DoorQueue::new).collect(),
            by_deadline: BTreeSet::new(),
            by_rank: BTreeSet::new(),
            next_id: 0,
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot holding the attempt keyed `key`, if any.
    fn slot(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(self.hasher.hash_one(key), |&s| {
                slots[s as usize].is_some_and(|a| a.key == *key)
            })
            .copied()
    }

    fn get(&self, key: &Key) -> Option<&Attempt> {
        let slot = self.slot(key)?;
        self.slots[slot as usize].as_ref()
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut Attempt> {
        let slot = self.slot(key)?;
        self.slots[slot as usize].as_mut()
    }

    /// Enter `door`'s current front (and count) in the ordered sets,
    /// replacing what was entered before. O(log doors with attempts).
    fn refresh(&mut self, door: u32) {
        let Some(qu) = self.queues.get_mut(door as usize) else {
            return;
        };
        let now =
            qu.q.front()
                .and_then(|&s| self.slots[s as usize].as_ref())
                .map(|a| (qu.live, a.started, a.id));
        if now == qu.ranked {
            return;
        }
        let timeout = qu.timeout;
        let old = std::mem::replace(&mut qu.ranked, now);
        let same_front = matches!((old, now), (Some(o), Some(n)) if (o.1, o.2) == (n.1, n.2));
        if let Some((live, started, id)) = old {
            self.by_rank.remove(&(Reverse(live), started, id, door));
            if !same_front {
                if let Some(v) = started.checked_add(timeout) {
                    self.by_deadline.remove(&(v, id, door));
                }
            }
        }
        if let Some((live, started, id)) = now {
            self.by_rank.insert((Reverse(live), started, id, door));
            if !same_front {
                if let Some(v) = started.checked_add(timeout) {
                    self.by_deadline.insert((v, id, door));
                }
            }
        }
    }

    /// The front attempt of `door`'s queue.
    fn front(&self, door: u32) -> Option<&Attempt> {
        let &s = self.queues.get(door as usize)?.q.front()?;
        self.slots[s as usize].as_ref()
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
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table.insert_unique(hasher.hash_one(key), slot, |&s| {
            slots[s as usize].map_or(0, |a| hasher.hash_one(a.key))
        });
        let qu = &mut self.queues[key.1 as usize];
        qu.live += 1;
        if qu.newest.is_some_and(|n| started < n) {
            // The clock went backwards: keep the queue ordered.
            self.insert_sorted(key.1, slot);
        } else {
            qu.newest = Some(started);
            let pos = qu.head + qu.q.len() as u64;
            qu.q.push_back(slot);
            if let Some(a) = self.slots[slot as usize].as_mut() {
                a.pos = pos;
            }
        }
        self.refresh(key.1);
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
        let slots = &self.slots;
        let entry = self
            .table
            .find_entry(self.hasher.hash_one(key), |&s| {
                slots[s as usize].is_some_and(|a| a.key == *key)
            })
            .ok()?;
        let (slot, _) = entry.remove();
        let a = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if let Some(qu) = self.queues.get_mut(key.1 as usize) {
            qu.live -= 1;
        }
        self.trim_front(key.1);
        self.refresh(key.1);
        Some(a)
    }

    /// Remove and return the eviction victim: the oldest attempt (by first
    /// hit, then creation) of the door holding the most attempts; among
    /// doors holding equally many, the one whose oldest attempt is older.
    /// A flood of first hits on one door thus only ever evicts attempts of
    /// that door while it holds the most.
    fn pop_victim(&mut self) -> Option<(Key, Attempt)> {
        let &(_, _, _, door) = self.by_rank.first()?;
        let key = self.front(door)?.key;
        self.remove(&key).map(|a| (key, a))
    }

    /// The attempt that expires first: (last instant it is valid, id, key).
    /// Attempts whose deadline `Instant` cannot represent never expire.
    fn first_deadline(&self) -> Option<(Instant, u64, Key)> {
        let &(v, id, door) = self.by_deadline.first()?;
        Some((v, id, self.front(door)?.key))
    }

    /// Remove and return one attempt that is expired at `now`, if any.
    fn pop_expired(&mut self, now: Instant) -> Option<(Key, Attempt)> {
        let (valid_until, _, key) = self.first_deadline()?;
        if now <= valid_until {
            return None;
        }
        self.remove(&key).map(|a| (key, a))
    }

    /// Remove every attempt of `door` for which `drop` is true.
    fn drop_where(&mut self, door: u32, drop: impl Fn(&Attempt) -> bool) {
        let Some(qu) = self.queues.get(door as usize) else {
            return;
        };
        let gone: Vec<Key> =
            qu.q.iter()
                .enumerate()
                .filter(|&(i, &s)| Self::is_live(&self.slots, door, qu.head + i as u64, s))
                .filter_map(|(_, &s)| self.slots[s as usize].as_ref())
                .filter(|a| drop(a))
                .map(|a| a.key)
                .collect();
        for key in gone {
            self.remove(&key);
        }
    }
}

/// Openings remembered for the straggler rule.
pub const RECENT_CAP: usize = 4096;

/// Knocks of candidates that left their door remembered as not foreign.
pub const RETIRED_CAP: usize = 1024;

/// How long a source's distinct foreign knocks are remembered after the last
/// new one.
pub const SCAN_MEMORY: Duration = Duration::from_secs(60);
/// Sets of the scan table (a power of two).
pub const SCAN_SETS: usize = 4096;
/// Sources per set of the scan table.
pub const SCAN_WAYS: usize = 4;
/// Largest `scan_threshold` honoured (larger values count as this).
pub const MAX_SCAN_THRESHOLD: usize = 64;
// Entry lengths are `u8`.
const _: () = assert!(MAX_SCAN_THRESHOLD < u8::MAX as usize);

/// The last opening per (source, door), for the straggler rule.
#[derive(Debug, Default)]
struct Recent {
    map: HashMap<(IpAddr, u32), (Instant, Sequence)>,
    /// Insertion order; an entry is current when the map holds the same time.
    order: VecDeque<((IpAddr, u32), Instant)>,
}

impl Recent {
    fn record(&mut self, key: (IpAddr, u32), now: Instant, seq: &Sequence) {
        while self.map.len() >= RECENT_CAP || self.order.len() >= 2 * RECENT_CAP {
            let Some((k, t)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|e| e.0 == t) {
                self.map.remove(&k);
            }
        }
        self.map.insert(key, (now, seq.clone()));
        self.order.push_back((key, now));
    }

    /// Is `knock` from `key.0` a straggler of a recent opening of `key.1`?
    fn straggler(&self, key: (IpAddr, u32), knock: Knock, now: Instant, timeout: Duration) -> bool {
        match self.map.get(&key) {
            Some((at, seq)) => now.saturating_duration_since(*at) <= timeout && seq.contains(knock),
            None => false,
        }
    }
}

/// One source's entry in the scan table.
#[derive(Debug, Clone, Copy)]
struct ScanEntry {
    src: IpAddr,
    /// When the last new distinct knock was added (or, when the entry is
    /// full, the last foreign hit).
    last: Instant,
    /// Distinct foreign knocks stored in the entry's row of
    /// [`ScanTable::knocks`], at most `track`.
    len: u8,
}

/// Distinct foreign knocks per source, in a fixed-size set-associative
/// table (see the module doc). Allocated once, only with the guard on and
/// only when the first foreign hit arrives (a daemon that never sees one
/// keeps its memory at rest small): entries plus a flat row of `track`
/// knocks per entry.
#[derive(Debug)]
struct ScanTable {
    entries: Vec<Option<ScanEntry>>,
    knocks: Vec<Knock>,
    hasher: std::collections::hash_map::RandomState,
    /// Knocks kept per source: one more than the largest threshold.
    track: usize,
}

impl ScanTable {
    fn new(track: usize) -> Self {
        ScanTable {
            entries: Vec::new(),
            knocks: Vec::new(),
            hasher: Default::default(),
            track,
        }
    }

    /// First entry index of `src`'s set.
    fn set(&self, src: IpAddr) -> usize {
        ((self.hasher.hash_one(src) as usize) & (SCAN_SETS - 1)) * SCAN_WAYS
    }

    fn live(e: &ScanEntry, now: Instant) -> bool {
        now.saturating_duration_since(e.last) <= SCAN_MEMORY
    }

    /// Distinct foreign knocks `src` touched (remembered at `now`).
    fn count(&self, src: IpAddr, now: Instant) -> usize {
        if self.entries.is_empty() {
            return 0;
        }
        let set = self.set(src);
        self.entries[set..set + SCAN_WAYS]
            .iter()
            .flatten()
            .find(|e| e.src == src)
            .filter(|e| Self::live(e, now))
            .map_or(0, |e| usize::from(e.len))
    }

    /// `src` touched the foreign `knock` at `now`.
    fn note(&mut self, src: IpAddr, knock: Knock, now: Instant) {
        if self.track == 0 {
            return;
        }
        if self.entries.is_empty() {
            let n = SCAN_SETS * SCAN_WAYS;
            self.entries = vec![None; n];
            self.knocks = vec![Knock::tcp(0); n * self.track];
        }
        let set = self.set(src);
        let ways = &mut self.entries[set..set + SCAN_WAYS];
        let w = match ways.iter().position(|e| e.is_some_and(|e| e.src == src)) {
            Some(w) => w,
            None => {
                // An empty or forgotten way, else the fewest knocks, the
                // least recent on ties.
                let w = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| match e {
                        None => (0, 0, None),
                        Some(e) if !Self::live(e, now) => (0, 1, None),
                        Some(e) => (1, e.len, Some(e.last)),
                    })
                    .map_or(0, |(w, _)| w);
                ways[w] = Some(ScanEntry {
                    src,
                    last: now,
                    len: 0,
                });
                w
            }
        };
        let Some(e) = ways[w].as_mut() else { return };
        if !Self::live(e, now) {
            e.len = 0;
        }
        let row = (set + w) * self.track;
        let len = usize::from(e.len);
        if len >= self.track {
            e.last = now;
        } else if !self.knocks[row..row + len].contains(&knock) {
            self.knocks[row + len] = knock;
            e.len += 1;
            e.last = now;
        }
    }
}

/// The knock state machine over all doors.
#[derive(Debug)]
pub struct Matcher {
    doors: Vec<DoorRule>,
    /// For each knock, the (door, candidate index) pairs whose sequence
    /// contains it (each pair once, ascending).
    index: HashMap<Knock, Vec<(u32, u32)>>,
    /// Doors' targets, for the scan guard.
    targets: Vec<IpAddr>,
    cap: usize,
    attempts: Attempts,
    recent: Recent,
    scans: ScanTable,
    /// Knocks of candidates that left their door (used one-time lines,
    /// past windows), newest last, at most [`RETIRED_CAP`]; with a count
    /// per knock. Not foreign, so replays and stragglers of used sequences
    /// never make a knocker look like a scanner.
    retired: VecDeque<Knock>,
    retired_count: HashMap<Knock, u32>,
    /// Source-bound doors and their ranges (see [`Matcher::set_bound`]).
    bound: Vec<(u32, BoundRange)>,
}

impl Matcher {
    /// `cap` is the maximum number of attempts in flight (at least 1 is used).
    pub fn new(doors: Vec<DoorRule>, cap: usize) -> Self {
        // Slab slots are `u32`; more attempts than that could not fit in
        // memory anyway.
        let cap = cap.clamp(1, u32::MAX as usize);
        let attempts = Attempts::new(doors.iter().map(|d| d.timeout), cap);
        let track = doors
            .iter()
            .map(|d| d.scan_threshold.min(MAX_SCAN_THRESHOLD))
            .filter(|&t| t > 0)
            .max()
            .map_or(0, |t| t + 1);
        let mut targets: Vec<IpAddr> = doors.iter().filter_map(|d| d.target).collect();
        targets.sort_unstable();
        targets.dedup();
        let mut m = Matcher {
            doors,
            index: HashMap::new(),
            targets,
            cap,
            attempts,
            recent: Recent::default(),
            scans: ScanTable::new(track),
            retired: VecDeque::new(),
            retired_count: HashMap::new(),
            bound: Vec::new(),
        };
        m.rebuild_index();
        m
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (d, door) in self.doors.iter().enumerate() {
            for (c, cand) in door.candidates.iter().enumerate() {
                let pair = (d as u32, c as u32);
                for &k in cand.sequence.knocks() {
                    let list = self.index.entry(k).or_default();
                    if list.last() != Some(&pair) {
                        list.push(pair);
                    }
                }
            }
        }
    }

    /// Does some door want to see every connection attempt to the listening
    /// addresses (TCP SYN without ACK and UDP, on any port), not only hits
    /// on its own ports? True when a door has the scan guard on.
    pub fn wants_all_probes(&self) -> bool {
        self.scans.track > 0
    }

    /// Feed one decoded packet seen at `now`; events are appended to `out`
    /// (expiries that are due first, then per door in door order, per door
    /// in candidate order).
    pub fn on_hit(
        &mut self,
        hit: &Hit,
        now: Instant,
        is_local: &dyn Fn(IpAddr) -> bool,
        out: &mut Vec<Event>,
    ) {
        self.on_hit_with(hit, now, is_local, &mut NoPerSource, out);
    }

    /// Declare door `door` source-bound on `range` (its candidates then come
    /// from the [`PerSource`] given to [`on_hit_with`](Self::on_hit_with)),
    /// or an ordinary door again with `None`. Attempts in flight are kept.
    pub fn set_bound(&mut self, door: usize, range: Option<BoundRange>) {
        let Ok(d) = u32::try_from(door) else { return };
        if door >= self.doors.len() {
            return;
        }
        self.bound.retain(|&(x, _)| x != d);
        if let Some(r) = range {
            self.bound.push((d, r));
            self.bound.sort_unstable_by_key(|&(x, _)| x);
        }
    }

    /// [`on_hit`](Self::on_hit) for a matcher with source-bound doors:
    /// `per_source` gives their candidates for the hit's source.
    pub fn on_hit_with(
        &mut self,
        hit: &Hit,
        now: Instant,
        is_local: &dyn Fn(IpAddr) -> bool,
        per_source: &mut dyn PerSource,
        out: &mut Vec<Event>,
    ) {
        // Amortised: every attempt expires at most once.
        self.expire(now, out);
        let knock = hit.knock();
        let Matcher {
            doors,
            index,
            targets,
            cap,
            attempts,
            recent,
            scans,
            retired_count,
            bound,
            ..
        } = self;
        let pairs = index.get(&knock);
        let mut claimed = pairs.is_some();
        let mut st = State {
            attempts,
            recent,
            scanned: scans.count(hit.src, now),
            cap: *cap,
        };
        for group in pairs
            .map_or(&[][..], Vec::as_slice)
            .chunk_by(|a, b| a.0 == b.0)
        {
            let d = group[0].0;
            let Some(rule) = doors.get(d as usize) else {
                continue;
            };
            if !rule.sees(hit, is_local) {
                continue;
            }
            st.door_hit(rule, &rule.candidates, d, group, hit.src, knock, now, out);
        }
        for &(d, range) in bound.iter() {
            if !range.contains(knock) {
                continue;
            }
            let Some(rule) = doors.get(d as usize) else {
                continue;
            };
            let cands = per_source.candidates_for(d as usize, hit.src);
            // At most 2 * 10 + 1 windows: a small fixed buffer.
            let mut buf = [(0u32, 0u32); 32];
            let mut n = 0;
            for (c, cand) in cands.iter().enumerate().take(buf.len()) {
                if cand.sequence.contains(knock) {
                    buf[n] = (d, c as u32);
                    n += 1;
                }
            }
            // Like the index: a knock some candidate uses is not foreign,
            // whether or not the door sees this hit.
            claimed |= n > 0;
            if n > 0 && rule.sees(hit, is_local) {
                st.door_hit(rule, cands, d, &buf[..n], hit.src, knock, now, out);
            }
        }
        if !claimed
            && scans.track > 0
            && is_probe(hit)
            && !retired_count.contains_key(&knock)
            && (is_local(hit.dst) || targets.contains(&hit.dst))
        {
            scans.note(hit.src, knock, now);
        }
    }

    /// Discard every attempt whose (re)start is older than its door's
    /// timeout at `now` (age > timeout), in order of expiry.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Some(((src, door, tag), a)) = self.attempts.pop_expired(now) {
            out.push(Event::Expired {
                door: door as usize,
                src,
                tag,
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

    /// Give `door` new candidates (one-time sequences advance, rotating
    /// windows move) or disable it (empty). Attempts in flight on a
    /// candidate that stays (same tag, same sequence) are kept; the others
    /// are dropped silently. An out-of-range door is ignored.
    pub fn set_candidates(&mut self, door: usize, candidates: Vec<Candidate>) {
        let Some(rule) = self.doors.get_mut(door) else {
            return;
        };
        let old = std::mem::replace(&mut rule.candidates, candidates);
        let new = &rule.candidates;
        let kept = |tag: Tag| {
            let a = old.iter().find(|c| c.tag == tag);
            let b = new.iter().find(|c| c.tag == tag);
            matches!((a, b), (Some(a), Some(b)) if a.sequence == b.sequence)
        };
        if let Ok(d) = u32::try_from(door) {
            self.attempts.drop_where(d, |a| !kept(a.key.2));
        }
        let mut gone: Vec<Knock> = old
            .iter()
            .flat_map(|c| c.sequence.iter().copied())
            .filter(|k| !new.iter().any(|c| c.sequence.contains(*k)))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        for k in gone {
            self.retire(k);
        }
        self.rebuild_index();
    }

    fn retire(&mut self, k: Knock) {
        self.retired.push_back(k);
        *self.retired_count.entry(k).or_default() += 1;
        while self.retired.len() > RETIRED_CAP {
            let Some(old) = self.retired.pop_front() else {
                break;
            };
            if let Some(n) = self.retired_count.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.retired_count.remove(&old);
                }
            }
        }
    }

    /// Number of attempts in flight.
    pub fn attempts(&self) -> usize {
        self.attempts.len()
    }

    pub fn doors(&self) -> &[DoorRule] {
        &self.doors
    }

    /// Attempt progress of `src` at `door` on candidate `tag`: knocks
    /// matched so far, if an attempt is in flight (ignores expiry that
    /// `expire` has not done yet).
    pub fn progress(&self, src: IpAddr, door: usize, tag: Tag) -> Option<usize> {
        let door = u32::try_from(door).ok()?;
        self.attempts.get(&(src, door, tag)).map(|a| a.matched)
    }
}

/// The parts of the matcher a hit changes (split from the index, which it
/// reads at the same time).
struct State<'a> {
    attempts: &'a mut Attempts,
    recent: &'a mut Recent,
    /// Distinct foreign knocks the hit's source touched recently.
    scanned: usize,
    cap: usize,
}

impl State<'_> {
    /// A hit on `knock` that door `d` (`rule`) sees; `group` lists the
    /// indices of the door's candidates that use the knock.
    #[allow(clippy::too_many_arguments)]
    fn door_hit(
        &mut self,
        rule: &DoorRule,
        cands: &[Candidate],
        d: u32,
        group: &[(u32, u32)],
        src: IpAddr,
        knock: Knock,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let door = d as usize;
        let t = rule.scan_threshold.min(MAX_SCAN_THRESHOLD);
        if t > 0 && self.scanned > t {
            for &(_, c) in group {
                let Some(cand) = cands.get(c as usize) else {
                    continue;
                };
                let tag = cand.tag;
                if let Some(a) = self.attempts.remove(&(src, d, tag)) {
                    out.push(Event::Fail {
                        door,
                        src,
                        tag,
                        stage: a.matched,
                    });
                }
            }
            return;
        }
        let straggler = self.recent.straggler((src, d), knock, now, rule.timeout);
        for &(_, c) in group {
            let Some(cand) = cands.get(c as usize) else {
                continue;
            };
            let tag = cand.tag;
            let knocks = cand.sequence.knocks();
            let key = (src, d, tag);
            if let Some(a) = self.attempts.get_mut(&key) {
                let matched = a.matched;
                if knocks.get(matched) == Some(&knock) {
                    a.matched += 1;
                    let stage = a.matched;
                    out.push(Event::Stage {
                        door,
                        src,
                        tag,
                        stage,
                    });
                    if stage >= knocks.len() {
                        self.attempts.remove(&key);
                        self.open(cands, d, src, tag, now, out);
                        return;
                    }
                    continue;
                }
                if knocks[..matched].contains(&knock) {
                    if knocks.first() == Some(&knock) {
                        // A restart: the clock counts from the repeat.
                        self.attempts.remove(&key);
                        self.attempts.insert(key, matched, now);
                    }
                    continue;
                }
                if straggler {
                    continue;
                }
                self.attempts.remove(&key);
                out.push(Event::Fail {
                    door,
                    src,
                    tag,
                    stage: matched,
                });
                continue;
            }
            if straggler || knocks.first() != Some(&knock) {
                continue;
            }
            if knocks.len() == 1 {
                out.push(Event::Stage {
                    door,
                    src,
                    tag,
                    stage: 1,
                });
                self.open(cands, d, src, tag, now, out);
                return;
            }
            while self.attempts.len() >= self.cap {
                match self.attempts.pop_victim() {
                    Some(((src, door, tag), a)) => out.push(Event::Evicted {
                        door: door as usize,
                        src,
                        tag,
                        stage: a.matched,
                    }),
                    None => break,
                }
            }
            self.attempts.insert(key, 1, now);
            out.push(Event::Stage {
                door,
                src,
                tag,
                stage: 1,
            });
        }
    }

    /// Candidate `tag` of door `d` completed for `src`: open, end the
    /// source's attempts on the door's other candidates, remember the
    /// opening for the straggler rule.
    fn open(
        &mut self,
        cands: &[Candidate],
        d: u32,
        src: IpAddr,
        tag: Tag,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let door = d as usize;
        out.push(Event::Open { door, src, tag });
        for c in cands {
            if let Some(a) = self.attempts.remove(&(src, d, c.tag)) {
                out.push(Event::Fail {
                    door,
                    src,
                    tag: c.tag,
                    stage: a.matched,
                });
            }
        }
        if let Some(c) = cands.iter().find(|c| c.tag == tag) {
            self.recent.record((src, d), now, &c.sequence);
        }
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
        DoorRule::fixed(seq(s), Duration::from_secs(timeout_secs))
    }

    fn tcp(src: IpAddr, port: u16) -> Hit {
        Hit::tcp(src, LOCAL, 40000, port, SYN)
    }

    fn udp(src: IpAddr, port: u16) -> Hit {
        Hit::udp(src, LOCAL, 40000, port)
    }

    /// The hit of `k` from `src` (a SYN for TCP).
    fn hit_of(src: IpAddr, k: Knock) -> Hit {
        match k.proto {
            Proto::Tcp => tcp(src, k.port),
            Proto::Udp => udp(src, k.port),
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
        /// One door with sequence `s` and timeout `timeout_secs`.
        fn one(s: &str, timeout_secs: u64) -> Self {
            Rig::new(vec![door(s, timeout_secs)])
        }
        /// A's attempt on door 0 ("7000,8000,9000", timeout
        /// `timeout_secs`), two knocks in: 7000 at 0 ms, 8000 at `second_ms`.
        fn two_knocks_in(timeout_secs: u64, second_ms: u64) -> Self {
            let mut r = Rig::one("7000,8000,9000", timeout_secs);
            r.hit(0, tcp(A, 7000));
            r.hit(second_ms, tcp(A, 8000));
            r
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

    /// Per-source candidates from a table (what a bind-source door's
    /// source derives), counting the questions.
    struct Table(Vec<(IpAddr, Vec<Candidate>)>, usize);

    impl PerSource for Table {
        fn candidates_for(&mut self, _door: usize, src: IpAddr) -> &[Candidate] {
            self.1 += 1;
            self.0
                .iter()
                .find(|(ip, _)| *ip == src)
                .map_or(&[][..], |(_, c)| c.as_slice())
        }
    }

    /// The same candidates for every source.
    struct Fixed(Vec<Candidate>);

    impl PerSource for Fixed {
        fn candidates_for(&mut self, _door: usize, _src: IpAddr) -> &[Candidate] {
            &self.0
        }
    }

    fn cands(list: &[(Tag, &str)]) -> Vec<Candidate> {
        list.iter()
            .map(|&(tag, s)| Candidate {
                tag,
                sequence: seq(s),
            })
            .collect()
    }

    fn bound_rig(scan_threshold: usize) -> (Rig, Table) {
        let mut rule = DoorRule {
            candidates: Vec::new(),
            ..door("1", 5)
        };
        rule.scan_threshold = scan_threshold;
        let mut rig = Rig::new(vec![door("7000,8000", 5), rule]);
        rig.m.set_bound(
            1,
            Some(BoundRange {
                proto: Proto::Tcp,
                lo: 20000,
                hi: 29999,
            }),
        );
        let table = Table(
            vec![
                (
                    A,
                    cands(&[(10, "21000,22000,23000"), (11, "24000,25000,26000")]),
                ),
                (
                    B,
                    cands(&[(10, "23000,22000,21000"), (11, "27000,28000,29000")]),
                ),
            ],
            0,
        );
        (rig, table)
    }

    fn hit_with(rig: &mut Rig, t: &mut Table, ms: u64, h: Hit) -> Vec<Event> {
        let mut out = Vec::new();
        let now = rig.at(ms);
        rig.m.on_hit_with(&h, now, &local, t, &mut out);
        rig.m.check();
        out
    }

    #[test]
    fn bound_door_uses_each_sources_own_candidates() {
        let (mut rig, mut t) = bound_rig(0);
        // B sends A's sequence: nothing opens for B.
        for (i, p) in [21000, 22000, 23000].into_iter().enumerate() {
            let ev = hit_with(&mut rig, &mut t, i as u64, tcp(B, p));
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Open { .. })),
                "{ev:?}"
            );
        }
        // A and B interleaved, each on its own candidate.
        let mut opened = Vec::new();
        for (i, (src, p)) in [
            (A, 24000),
            (B, 27000),
            (A, 25000),
            (B, 28000),
            (A, 26000),
            (B, 29000),
        ]
        .into_iter()
        .enumerate()
        {
            for e in hit_with(&mut rig, &mut t, 10 + i as u64, tcp(src, p)) {
                if let Event::Open { door, src, tag } = e {
                    opened.push((door, src, tag));
                }
            }
        }
        assert_eq!(opened, vec![(1, A, 11), (1, B, 11)]);
        // Ports outside the range never ask the source.
        let asked = t.1;
        hit_with(&mut rig, &mut t, 50, tcp(A, 19999));
        hit_with(&mut rig, &mut t, 51, udp(A, 21000));
        assert_eq!(t.1, asked);
        // The indexed door still works next to it.
        hit_with(&mut rig, &mut t, 60, tcp(A, 7000));
        let ev = hit_with(&mut rig, &mut t, 61, tcp(A, 8000));
        assert!(ev.contains(&open(0, A)));
    }

    #[test]
    fn bound_door_attempts_expire_and_fail_like_others() {
        let (mut rig, mut t) = bound_rig(0);
        hit_with(&mut rig, &mut t, 0, tcp(A, 21000));
        hit_with(&mut rig, &mut t, 1, tcp(A, 22000));
        assert_eq!(rig.m.progress(A, 1, 10), Some(2));
        // A wrong knock of the same sequence fails it (stage 2: burnt).
        let ev = hit_with(&mut rig, &mut t, 2, tcp(A, 21000));
        assert!(ev.is_empty(), "a repeated earlier knock is ignored: {ev:?}");
        let ev = rig.expire(6000);
        assert_eq!(
            ev,
            vec![Event::Expired {
                door: 1,
                src: A,
                tag: 10,
                stage: 2
            }]
        );
    }

    #[test]
    fn bound_door_hits_off_the_sources_candidates_count_for_the_scan_guard() {
        let (mut rig, mut t) = bound_rig(2);
        // Three ports in the range that are not A's: foreign.
        for (i, p) in [20001, 20002, 20003].into_iter().enumerate() {
            hit_with(&mut rig, &mut t, i as u64, tcp(A, p));
        }
        for (i, p) in [24000, 25000, 26000].into_iter().enumerate() {
            let ev = hit_with(&mut rig, &mut t, 10 + i as u64, tcp(A, p));
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Open { .. })),
                "{ev:?}"
            );
        }
        // B, who did not scan, opens.
        let mut open = false;
        for (i, p) in [27000, 28000, 29000].into_iter().enumerate() {
            let ev = hit_with(&mut rig, &mut t, 20 + i as u64, tcp(B, p));
            open |= ev.iter().any(|e| matches!(e, Event::Open { door: 1, .. }));
        }
        assert!(open);
    }

    impl Matcher {
        /// Internal consistency of the attempt bookkeeping.
        fn check(&self) {
            let at = &self.attempts;
            assert!(at.table.len() <= self.cap);
            assert!(at.slots.len() <= self.cap);
            assert_eq!(at.queues.len(), self.doors.len());
            // The table and the slab agree; free slots are empty, listed once.
            let map: HashMap<Key, u32> = at
                .table
                .iter()
                .map(|&s| (at.slots[s as usize].expect("live slot").key, s))
                .collect();
            assert_eq!(map.len(), at.table.len(), "a key twice in the table");
            for (key, &slot) in &map {
                assert_eq!(at.slot(key), Some(slot), "key not found by its hash");
                let a = at.slots[slot as usize].as_ref().expect("live slot");
                assert_eq!(&a.key, key);
                if self.bound.iter().any(|&(d, _)| d == key.1) {
                    // Source-bound: the candidates live in the source.
                    assert!(a.matched >= 1);
                    continue;
                }
                let len = self.doors[key.1 as usize]
                    .candidate(key.2)
                    .expect("attempt on a current candidate")
                    .sequence
                    .len();
                assert!(a.matched >= 1 && a.matched < len);
            }
            let used = at.slots.iter().filter(|s| s.is_some()).count();
            assert_eq!(used, map.len());
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
                let in_map = map.keys().filter(|k| k.1 == d).count();
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
                // The ordered sets hold exactly this door's current front.
                let front = live.first().map(|a| (qu.live, a.started, a.id));
                assert_eq!(qu.ranked, front);
                let ranks: Vec<_> = at.by_rank.iter().filter(|e| e.3 == d).collect();
                let deadlines: Vec<_> = at.by_deadline.iter().filter(|e| e.2 == d).collect();
                match front {
                    Some((n, started, id)) => {
                        assert_eq!(ranks, [&(Reverse(n), started, id, d)]);
                        let want: Vec<_> = started
                            .checked_add(qu.timeout)
                            .map(|v| (v, id, d))
                            .into_iter()
                            .collect();
                        assert_eq!(deadlines, want.iter().collect::<Vec<_>>());
                    }
                    None => assert!(ranks.is_empty() && deadlines.is_empty()),
                }
            }
            let busy = at.queues.iter().filter(|q| q.live > 0).count();
            assert_eq!(at.by_rank.len(), busy);
        }
    }

    /// The events of candidate 0 (a fixed door's only one) that carry a
    /// stage: `stage(door, src, n)` is `Event::Stage { door, src, tag: 0,
    /// stage: n }`, and so on. A macro: a function cannot take the variant.
    macro_rules! tag0_events {
        ($($name:ident => $variant:ident),*) => {$(
            fn $name(door: usize, src: IpAddr, stage: usize) -> Event {
                Event::$variant { door, src, tag: 0, stage }
            }
        )*};
    }
    tag0_events!(stage => Stage, fail => Fail, expired => Expired, evicted => Evicted);

    fn open(door: usize, src: IpAddr) -> Event {
        open_tag(door, src, 0)
    }

    fn open_tag(door: usize, src: IpAddr, tag: Tag) -> Event {
        Event::Open { door, src, tag }
    }

    #[test]
    fn simple_open() {
        let mut r = Rig::one("7000,8000:udp,9000", 25);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert_eq!(r.m.attempts(), 1);
        assert_eq!(r.hit(100, udp(A, 8000)), [stage(0, A, 2)]);
        assert_eq!(r.hit(200, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
        assert_eq!(r.m.attempts(), 0);
        // A straggler of that knock (within the timeout) starts nothing.
        assert!(r.hit(300, tcp(A, 7000)).is_empty());
        assert_eq!(r.m.attempts(), 0);
        // Once the timeout since the opening has passed: from scratch.
        assert_eq!(r.hit(25_201, tcp(A, 7000)), [stage(0, A, 1)]);
    }

    #[test]
    fn one_knock_door_opens_at_once() {
        let mut r = Rig::one("7000", 25);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1), open(0, A)]);
        assert_eq!(r.m.attempts(), 0);
        // One knock, one open: a repeat within the timeout is a straggler.
        assert!(r.hit(1, tcp(A, 7000)).is_empty());
        assert!(r.hit(25_000, tcp(A, 7000)).is_empty());
        assert_eq!(r.hit(25_001, tcp(A, 7000)), [stage(0, A, 1), open(0, A)]);
    }

    #[test]
    fn wrong_order_fails() {
        let mut r = Rig::one("7000,8000,9000", 25);
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
    fn wrong_port_of_own_sequence_fails() {
        let mut r = Rig::one("7000,8000,9000,10000", 25);
        r.hit(0, tcp(A, 7000));
        r.hit(1, tcp(A, 8000));
        assert_eq!(r.hit(2, tcp(A, 10000)), [fail(0, A, 2)]);
        assert_eq!(r.hit(3, tcp(A, 9000)), []);
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn port_not_in_sequence_is_ignored() {
        let mut r = Rig::one("7000,8000,9000", 25);
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
        let mut r = Rig::one("7000,8000,9000", 25);
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
        // 7000 is a duplicate for door 0 (ignored) and completes door 1.
        assert_eq!(r.hit(2, tcp(A, 7000)), [stage(1, A, 2), open(1, A)]);
        assert_eq!(r.m.progress(A, 0, 0), Some(2));
    }

    #[test]
    fn sequences_sharing_a_prefix() {
        let mut r = Rig::new(vec![door("7000,8000,9000", 25), door("7000,8000,9001", 25)]);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1), stage(1, A, 1)]);
        assert_eq!(r.hit(1, tcp(A, 8000)), [stage(0, A, 2), stage(1, A, 2)]);
        // 9001 is not in door 0's sequence: door 0 ignores it.
        assert_eq!(r.hit(2, tcp(A, 9001)), [stage(1, A, 3), open(1, A)]);
        assert_eq!(r.m.progress(A, 0, 0), Some(2));
        assert_eq!(r.hit(3, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn duplicates_and_knocks_not_in_the_sequence_are_ignored() {
        // (sequence, knocks by A one second apart, the stage each reaches:
        // 0 if it is ignored; reaching stage 3 opens).
        let cases: [(&str, &[&str], &[usize]); 4] = [
            // A retransmitted SYN is a duplicate: ignored.
            (
                "7000,8000,9000",
                &["7000", "7000", "8000", "9000"],
                &[1, 0, 2, 3],
            ),
            // 7000 is not expected at the second knock (8000 is): a
            // duplicate; at the third it is: it advances.
            (
                "7000,8000,7000",
                &["7000", "7000", "8000", "7000"],
                &[1, 0, 2, 3],
            ),
            // A third 7000 repeats a matched knock: ignored.
            (
                "7000,7000,8000",
                &["7000", "7000", "7000", "7000", "8000"],
                &[1, 2, 0, 0, 3],
            ),
            // 8000:udp is in the sequence, 8000:tcp is not: the TCP hit is
            // ignored; 9000:udp is not in it either; 7000:tcp was matched
            // already (a duplicate); 9000:tcp is expected: it opens.
            (
                "7000,8000:udp,9000",
                &["7000", "8000", "8000:udp", "9000:udp", "7000", "9000"],
                &[1, 0, 2, 0, 0, 3],
            ),
        ];
        for (sequence, knocks, reached) in cases {
            let mut r = Rig::one(sequence, 25);
            for (i, (&knock, &n)) in knocks.iter().zip(reached).enumerate() {
                let want = match n {
                    0 => vec![],
                    3 => vec![stage(0, A, 3), open(0, A)],
                    n => vec![stage(0, A, n)],
                };
                let got = r.hit(i as u64 * 1000, hit_of(A, knock.parse().unwrap()));
                assert_eq!(got, want, "{sequence}: knock {i} ({knock})");
            }
        }
    }

    #[test]
    fn starting_the_sequence_again_gets_a_fresh_clock() {
        // (timeout s, restart at ms, last knock at ms): the last knock is
        // past the timeout counted from the very first knock, within it
        // counted from the restart.
        for (timeout, restart, last) in [(10, 8000, 15_000), (25, 20_000, 26_000)] {
            let case = format!("timeout {timeout} s");
            let mut r = Rig::two_knocks_in(timeout, 1000);
            // 9000 was lost; the knocker starts again: duplicates, but the
            // clock restarts.
            assert!(r.hit(restart, tcp(A, 7000)).is_empty(), "{case}");
            assert!(r.hit(restart + 1000, tcp(A, 8000)).is_empty(), "{case}");
            let opened = [stage(0, A, 3), open(0, A)];
            assert_eq!(r.hit(last, tcp(A, 9000)), opened, "{case}");
            // A wrong knock of the door still fails.
            r.hit(60_000, tcp(A, 7000));
            assert_eq!(r.hit(60_001, tcp(A, 9000)), [fail(0, A, 1)], "{case}");
        }
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
        assert_eq!(r.m.progress(A, 0, 0), Some(1));
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
        let mut r = Rig::two_knocks_in(5, 2000);
        // Age == timeout: valid.
        assert!(r.expire(5000).is_empty());
        assert_eq!(r.hit(5000, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
    }

    #[test]
    fn timeout_just_after_boundary_expires() {
        let mut r = Rig::two_knocks_in(5, 2000);
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
        let mut r = Rig::two_knocks_in(5, 1000);
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
        // Repeating the first knock restarts the attempt's clock.
        assert!(r.hit(10, tcp(src(1), 7000)).is_empty());
        // src 1 restarted at 10 ms, so src 2 is now the oldest.
        assert_eq!(
            r.hit(20, tcp(src(4), 7000)),
            [evicted(0, src(2), 1), stage(0, src(4), 1)]
        );
        assert_eq!(r.m.attempts(), 3);
        assert_eq!(r.m.progress(src(2), 0, 0), None);
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
            [evicted(1, A, 1), stage(0, OTHER, 1)]
        );
        let mut r = Rig::new(doors);
        r.hit(0, tcp(A, 9000));
        r.hit(0, tcp(B, 7000));
        assert_eq!(r.expire(25001), [expired(1, A, 1), expired(0, B, 1)]);
    }

    #[test]
    fn attempts_removed_early_do_not_pile_up() {
        let mut r = Rig::one("7000,8000", 25);
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

    fn one(s: &str) -> Vec<Candidate> {
        vec![Candidate {
            tag: 0,
            sequence: seq(s),
        }]
    }

    #[test]
    fn set_candidates_disables_and_changes_a_door() {
        let mut r = Rig::new(vec![door("7000,8000", 25), door("7000,9000", 25)]);
        r.hit(0, tcp(A, 7000));
        assert_eq!(r.m.attempts(), 2);
        r.m.set_candidates(0, Vec::new());
        r.m.check();
        assert_eq!(r.m.attempts(), 1, "door 0's attempt dropped, door 1's kept");
        assert!(r.m.doors()[0].candidates.is_empty());
        assert!(r.hit(1, tcp(A, 8000)).is_empty());
        assert!(r
            .hit(2, tcp(A, 7000))
            .iter()
            .all(|e| !matches!(e, Event::Stage { door: 0, .. })));
        // A one-time sequence advances.
        r.m.set_candidates(0, one("1234:udp,5678"));
        r.m.check();
        assert_eq!(r.m.progress(A, 0, 0), None);
        assert!(r.hit(3, tcp(A, 8000)).is_empty());
        assert_eq!(r.hit(4, udp(A, 1234)), [stage(0, A, 1)]);
        // The same candidate again (same tag, same sequence): kept.
        r.m.set_candidates(0, one("1234:udp,5678"));
        assert_eq!(r.m.progress(A, 0, 0), Some(1));
        assert_eq!(r.hit(5, tcp(A, 5678)), [stage(0, A, 2), open(0, A)]);
        // Door 1 was never disturbed (its first knock was a duplicate).
        assert_eq!(r.hit(6, tcp(A, 9000)), [stage(1, A, 2), open(1, A)]);
        // Out of range: ignored.
        r.m.set_candidates(7, Vec::new());
        assert_eq!(r.m.doors().len(), 2);
    }

    #[test]
    fn ipv6_sources() {
        let a6: IpAddr = "2001:db8::7".parse().unwrap();
        let b6: IpAddr = "2001:db8::8".parse().unwrap();
        let dst: IpAddr = "2001:db8::1".parse().unwrap();
        let mut r = Rig::one("7000,8000:udp", 25);
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
        assert_eq!(r.m.progress(b6, 0, 0), Some(1));
    }

    #[test]
    fn every_hit_sent_twice_opens_once() {
        let mut r = Rig::one("7000,8000:udp,9000", 25);
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        assert!(r.hit(1, tcp(A, 7000)).is_empty());
        assert_eq!(r.hit(2, udp(A, 8000)), [stage(0, A, 2)]);
        assert!(r.hit(3, udp(A, 8000)).is_empty());
        // A SYN retransmitted a second later, out of order: still ignored.
        assert!(r.hit(1000, tcp(A, 7000)).is_empty());
        assert_eq!(r.hit(1001, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]);
        assert!(r.hit(1002, tcp(A, 9000)).is_empty());
        // Retransmissions after the opening start nothing.
        for ms in [2000, 3000, 4000] {
            assert!(r.hit(ms, tcp(A, 7000)).is_empty());
            assert!(r.hit(ms, udp(A, 8000)).is_empty());
            assert!(r.hit(ms, tcp(A, 9000)).is_empty());
        }
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn repeats_within_the_timeout_of_an_opening_are_stragglers_whatever_the_port() {
        let from = |port, src_port| Hit {
            src_port,
            ..tcp(A, port)
        };
        let mut r = Rig::new(vec![door("7000", 25), door("7100,7200,7300", 25)]);
        assert_eq!(r.hit(0, from(7000, 1111)), [stage(0, A, 1), open(0, A)]);
        // The same hit from another connection (an app sending it twice).
        assert!(r.hit(1000, from(7000, 2222)).is_empty());
        r.hit(2000, from(7100, 1));
        r.hit(2001, from(7200, 2));
        assert_eq!(r.hit(2002, from(7300, 3)), [stage(1, A, 3), open(1, A)]);
        for (port, src_port) in [(7100, 4), (7200, 5), (7300, 6)] {
            assert!(r.hit(3000, from(port, src_port)).is_empty());
        }
        assert_eq!(r.m.attempts(), 0);
        // After the timeout: a new knock.
        assert_eq!(r.hit(25_001, from(7000, 7)), [stage(0, A, 1), open(0, A)]);
        assert_eq!(r.hit(27_003, from(7100, 8)), [stage(1, A, 1)]);
        // Another source is never a straggler.
        assert_eq!(
            r.hit(
                27_005,
                Hit {
                    src: B,
                    ..from(7000, 1111)
                }
            ),
            [stage(0, B, 1), open(0, B)]
        );
    }

    /// Door 0 accepts candidates 10 (current) and 11 (the next line).
    fn two_lines() -> DoorRule {
        DoorRule {
            candidates: vec![
                Candidate {
                    tag: 10,
                    sequence: seq("1001,1002,1003"),
                },
                Candidate {
                    tag: 11,
                    sequence: seq("2001,2002,2003"),
                },
            ],
            ..door("1", 25)
        }
    }

    #[test]
    fn a_later_candidate_opens_and_ends_the_others() {
        let mut r = Rig::new(vec![two_lines()]);
        r.hit(0, tcp(A, 1001));
        r.hit(1, tcp(A, 1002));
        // 1003 was lost; the client moved on to the next line.
        assert_eq!(
            r.hit(2, tcp(A, 2001)),
            [Event::Stage {
                door: 0,
                src: A,
                tag: 11,
                stage: 1
            }]
        );
        r.hit(3, tcp(A, 2002));
        let out = r.hit(4, tcp(A, 2003));
        assert_eq!(
            out,
            [
                Event::Stage {
                    door: 0,
                    src: A,
                    tag: 11,
                    stage: 3
                },
                open_tag(0, A, 11),
                // Seen on the wire past its first hit: the server burns it.
                Event::Fail {
                    door: 0,
                    src: A,
                    tag: 10,
                    stage: 2
                },
            ]
        );
        assert_eq!(out[2].ended(), Some((0, 10, 2)));
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn set_candidates_keeps_attempts_on_candidates_that_stay() {
        let mut r = Rig::new(vec![two_lines()]);
        r.hit(0, tcp(A, 1001));
        r.hit(1, tcp(A, 2001));
        // Line 10 used up (by someone else); line 12 enters the look-ahead.
        let mut next = two_lines().candidates;
        next.remove(0);
        next.push(Candidate {
            tag: 12,
            sequence: seq("3001"),
        });
        r.m.set_candidates(0, next);
        r.m.check();
        assert_eq!(r.m.progress(A, 0, 10), None);
        assert_eq!(r.m.progress(A, 0, 11), Some(1));
        assert!(r.hit(2, tcp(A, 1002)).is_empty(), "no longer a candidate");
        r.hit(3, tcp(A, 2002));
        assert_eq!(r.hit(4, tcp(A, 2003)).last(), Some(&open_tag(0, A, 11)));
    }

    fn guarded(s: &str, threshold: usize) -> DoorRule {
        DoorRule {
            scan_threshold: threshold,
            ..door(s, 25)
        }
    }

    /// Feed `ports` from `src` (TCP SYN), 1 ms apart from `t0`; returns the
    /// opens.
    fn sweep(r: &mut Rig, src: IpAddr, t0: u64, ports: impl IntoIterator<Item = u16>) -> usize {
        let mut opens = 0;
        for (i, p) in ports.into_iter().enumerate() {
            let out = r.hit(t0 + i as u64, tcp(src, p));
            opens += out
                .iter()
                .filter(|e| matches!(e, Event::Open { .. }))
                .count();
        }
        opens
    }

    #[test]
    fn a_sequential_scan_opens_nothing_unless_the_guard_is_off() {
        for (lo, hi) in [(6990, 9010), (7000, 9000), (1, 10_000)] {
            let mut r = Rig::new(vec![guarded("7000,8000,9000", 8)]);
            assert_eq!(sweep(&mut r, A, 0, lo..=hi), 0, "scan {lo}-{hi}");
            // A knock from another address still works during and after.
            r.hit(20_000, tcp(B, 7000));
            r.hit(20_001, tcp(B, 8000));
            assert_eq!(r.hit(20_002, tcp(B, 9000)).last(), Some(&open(0, B)));
        }
        // The same scan opens the door with the guard off (the classic
        // behaviour): the guard is what stops it.
        let mut r = Rig::new(vec![guarded("7000,8000,9000", 0)]);
        assert_eq!(sweep(&mut r, A, 0, 6990..=9010), 1);
        assert!(!r.m.wants_all_probes());
        assert!(Rig::new(vec![guarded("7000", 8)]).m.wants_all_probes());
    }

    #[test]
    fn a_random_order_scan_opens_nothing() {
        // Deterministic shuffles of 1..=20000 (xorshift).
        for seed in 1..=20u64 {
            let mut ports: Vec<u16> = (1..=20_000).collect();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for i in (1..ports.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ports.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut r = Rig::new(vec![guarded("7000,8000,9000", 8), guarded("1234", 8)]);
            assert_eq!(sweep(&mut r, A, 0, ports), 0, "seed {seed}");
        }
    }

    #[test]
    fn a_scanner_is_remembered_for_a_while_then_forgiven() {
        let mut r = Rig::new(vec![guarded("7000,8000,9000", 8)]);
        sweep(&mut r, A, 0, 100..=108);
        // Nine distinct foreign ports: above the threshold.
        assert!(r.hit(1000, tcp(A, 7000)).is_empty());
        assert_eq!(r.m.attempts(), 0);
        let memory = SCAN_MEMORY.as_millis() as u64;
        assert!(r.hit(8 + memory, tcp(A, 7000)).is_empty());
        // Forgotten after SCAN_MEMORY without a new foreign port.
        assert_eq!(r.hit(9 + memory, tcp(A, 7000)), [stage(0, A, 1)]);
    }

    #[test]
    fn an_attempt_fails_when_its_source_starts_scanning() {
        let mut r = Rig::new(vec![guarded("7000,8000,9000", 8)]);
        r.hit(0, tcp(A, 7000));
        r.hit(1, tcp(A, 8000));
        sweep(&mut r, A, 2, 100..=108);
        assert_eq!(r.hit(20, tcp(A, 9000)), [fail(0, A, 2)]);
    }

    #[test]
    fn ordinary_traffic_to_a_few_services_never_breaks_a_knock() {
        let mut r = Rig::new(vec![guarded("7000,8000,9000", 8)]);
        let mut t = 0;
        // Hundreds of connections to the same few services from the same
        // address (people behind one NAT), also during the knock.
        for round in 0..200u64 {
            for p in [80, 443, 22, 25, 993] {
                r.hit(t, tcp(A, p));
                r.hit(t, udp(A, 443));
                t += 10;
            }
            match round {
                50 => assert_eq!(r.hit(t, tcp(A, 7000)), [stage(0, A, 1)]),
                100 => assert_eq!(r.hit(t, tcp(A, 8000)), [stage(0, A, 2)]),
                150 => assert_eq!(r.hit(t, tcp(A, 9000)), [stage(0, A, 3), open(0, A)]),
                _ => {}
            }
        }
        // Established traffic (ACK set) and other addresses never count.
        let mut r = Rig::new(vec![guarded("7000", 2)]);
        for p in 100..200 {
            let ack = Hit {
                tcp_flags: ACK,
                ..tcp(A, p)
            };
            let syn_ack = Hit {
                tcp_flags: SYN | ACK,
                ..tcp(A, p)
            };
            let elsewhere = Hit {
                dst: OTHER,
                ..tcp(A, p)
            };
            for h in [ack, syn_ack, elsewhere] {
                r.hit(0, h);
            }
        }
        assert_eq!(r.hit(1, tcp(A, 7000)), [stage(0, A, 1), open(0, A)]);
    }

    #[test]
    fn replays_of_used_sequences_are_not_a_scan() {
        let line = |tag, s: &str| Candidate {
            tag,
            sequence: seq(s),
        };
        let mut r = Rig::new(vec![DoorRule {
            candidates: vec![line(1, "1001,1002,1003")],
            ..guarded("1", 2)
        }]);
        r.m.set_candidates(0, vec![line(2, "2001,2002,2003")]);
        // The used line's ports, again and again: not foreign.
        for p in [1001, 1002, 1003, 1001, 1002, 1003] {
            assert!(r.hit(0, tcp(A, p)).is_empty());
        }
        r.hit(1, tcp(A, 2001));
        r.hit(2, tcp(A, 2002));
        assert_eq!(r.hit(3, tcp(A, 2003)).last(), Some(&open_tag(0, A, 2)));
        // Three ports nobody ever used are.
        sweep(&mut r, B, 10, [5001, 5002, 5003]);
        assert!(r.hit(20, tcp(B, 2001)).is_empty());
    }

    #[test]
    fn scan_state_is_bounded_and_a_spoofed_flood_cannot_wash_out_a_scanner() {
        let mut r = Rig::new(vec![guarded("7000,8000,9000", 8)]);
        sweep(&mut r, A, 0, 100..=120);
        let mut out = Vec::new();
        // 1M spoofed one-port sources.
        for i in 0..1_000_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            r.m.on_hit(&tcp(src, 443), r.at(100), &local, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(r.m.scans.entries.len(), SCAN_SETS * SCAN_WAYS);
        assert_eq!(r.m.scans.knocks.len(), SCAN_SETS * SCAN_WAYS * 9);
        assert!(r.m.scans.entries.iter().flatten().all(|e| e.len <= 9));
        // A is still known as a scanner.
        assert!(r.hit(200, tcp(A, 7000)).is_empty());
        assert_eq!(r.m.attempts(), 0);
    }

    #[test]
    fn a_slow_knock_survives_a_million_spoofed_first_hits_on_another_door() {
        let cap = 65_536;
        let doors = vec![door("7000,8000,9000", 60), door("5555,6666", 60)];
        let mut r = Rig::with_cap(doors, cap);
        let mut out = Vec::new();
        let mut evicted = 0usize;
        assert_eq!(r.hit(0, tcp(A, 7000)), [stage(0, A, 1)]);
        for (phase, next) in [(0u32, 8000u16), (1, 9000)] {
            // 500,000 spoofed first hits on door 1 between two hits of A.
            for i in 0..500_000u32 {
                let src = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + phase * 500_000 + i));
                let now = r.at(1 + u64::from(phase) * 10_000 + u64::from(i) / 100);
                out.clear();
                r.m.on_hit(&tcp(src, 5555), now, &local, &mut out);
                evicted += out
                    .iter()
                    .filter(|e| matches!(e, Event::Evicted { door: 1, .. }))
                    .count();
            }
            assert_eq!(r.m.attempts(), cap, "the flood fills the table");
            let ms = 10_000 * (u64::from(phase) + 1);
            let got = r.hit(ms, tcp(A, next));
            assert_eq!(got[0], stage(0, A, 2 + phase as usize));
        }
        assert_eq!(evicted, 1_000_000 - cap + 1);
        assert_eq!(r.m.progress(A, 0, 0), None, "opened");

        // The limit of the policy: a flood on the same door's first port
        // (which only a sniffer of a fixed sequence knows) does evict.
        let mut r = Rig::with_cap(vec![door("7000,8000,9000", 60)], 1000);
        r.hit(0, tcp(A, 7000));
        for i in 0..1000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            r.m.on_hit(&tcp(src, 7000), r.at(1), &local, &mut out);
        }
        assert_eq!(r.m.progress(A, 0, 0), None);
    }

    // ---- property tests ----

    /// Small alphabet of knocks so that random hits often matter. Doors use
    /// ports 1 to 4; hits also go to 5 and 6, which no door uses (foreign
    /// knocks for the scan guard).
    fn arb_knock() -> impl Strategy<Value = Knock> {
        (1u16..5, any::<bool>())
            .prop_map(|(p, u)| Knock::new(p, if u { Proto::Udp } else { Proto::Tcp }))
    }

    fn arb_hit_knock() -> impl Strategy<Value = Knock> {
        (1u16..7, any::<bool>())
            .prop_map(|(p, u)| Knock::new(p, if u { Proto::Udp } else { Proto::Tcp }))
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::vec(
            (0u64..4, proptest::collection::vec(arb_knock(), 1..5)),
            0..3,
        )
        .prop_map(|v| {
            let mut out: Vec<Candidate> = Vec::new();
            for (tag, knocks) in v {
                if out.iter().all(|c| c.tag != tag) {
                    if let Some(sequence) = Sequence::new(knocks) {
                        out.push(Candidate { tag, sequence });
                    }
                }
            }
            out
        })
    }

    fn arb_door() -> impl Strategy<Value = DoorRule> {
        (
            arb_candidates(),
            0u64..20,
            proptest::option::of(0u8..4),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(1), Just(2)],
        )
            .prop_map(
                |(candidates, timeout, flags, targeted, scan_threshold)| DoorRule {
                    candidates,
                    timeout: Duration::from_secs(timeout),
                    flags: flags.map(|f| FlagSpec {
                        set: [SYN, FIN, SYN | ACK, 0][f as usize],
                        clear: [ACK, 0, 0, SYN][f as usize],
                    }),
                    target: targeted.then_some(TARGET),
                    scan_threshold,
                },
            )
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
            arb_hit_knock(),
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

    /// One attempt of the model: (source, door, tag, matched, (re)start).
    type ModelAttempt = (IpAddr, usize, Tag, usize, Instant);

    /// Straightforward model of the rules in the module doc, with linear
    /// scans everywhere: attempts in a list in order of (re)creation, the
    /// last opening per (source, door), the distinct foreign knocks per
    /// source. With `cap`, the victim is the oldest attempt (earliest
    /// (re)start, then earliest created) of the door holding the most
    /// attempts, ties going to the door whose oldest is older. Expiries are
    /// reported in order of deadline (the earlier created on ties). The
    /// scan table never fills in these tests (at most four sources).
    struct Model {
        doors: Vec<DoorRule>,
        cap: usize,
        attempts: Vec<ModelAttempt>,
        recent: HashMap<(IpAddr, usize), (Instant, Sequence)>,
        scans: HashMap<IpAddr, (Vec<Knock>, Instant)>,
        /// Knocks of candidates that left their door (never more than
        /// `RETIRED_CAP` in these tests).
        retired: Vec<Knock>,
    }

    impl Model {
        fn new(doors: Vec<DoorRule>, cap: usize) -> Self {
            Model {
                doors,
                cap,
                attempts: Vec::new(),
                recent: HashMap::new(),
                scans: HashMap::new(),
                retired: Vec::new(),
            }
        }

        fn track(&self) -> usize {
            self.doors
                .iter()
                .map(|d| d.scan_threshold.min(MAX_SCAN_THRESHOLD))
                .filter(|&t| t > 0)
                .max()
                .map_or(0, |t| t + 1)
        }

        fn find(&self, src: IpAddr, d: usize, tag: Tag) -> Option<usize> {
            self.attempts
                .iter()
                .position(|a| a.0 == src && a.1 == d && a.2 == tag)
        }

        fn set_candidates(&mut self, d: usize, cands: Vec<Candidate>) {
            let Some(rule) = self.doors.get_mut(d) else {
                return;
            };
            let old = std::mem::replace(&mut rule.candidates, cands);
            let new = &rule.candidates;
            for c in &old {
                for &k in c.sequence.knocks() {
                    if !new.iter().any(|n| n.sequence.contains(k)) {
                        self.retired.push(k);
                    }
                }
            }
            self.attempts.retain(|a| {
                a.1 != d || {
                    let x = old.iter().find(|c| c.tag == a.2);
                    let y = new.iter().find(|c| c.tag == a.2);
                    matches!((x, y), (Some(x), Some(y)) if x.sequence == y.sequence)
                }
            });
        }

        fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
            let doors = &self.doors;
            let mut gone: Vec<(Instant, usize)> = Vec::new();
            for (i, a) in self.attempts.iter().enumerate() {
                if now.saturating_duration_since(a.4) > doors[a.1].timeout {
                    gone.push((a.4 + doors[a.1].timeout, i));
                }
            }
            gone.sort();
            for &(_, i) in &gone {
                let (src, door, tag, stage, _) = self.attempts[i];
                out.push(Event::Expired {
                    door,
                    src,
                    tag,
                    stage,
                });
            }
            let mut i = 0;
            self.attempts.retain(|_| {
                i += 1;
                !gone.iter().any(|g| g.1 == i - 1)
            });
        }

        fn scan_count(&self, src: IpAddr, now: Instant) -> usize {
            match self.scans.get(&src) {
                Some((k, last)) if now.saturating_duration_since(*last) <= SCAN_MEMORY => k.len(),
                _ => 0,
            }
        }

        fn open(&mut self, d: usize, src: IpAddr, tag: Tag, now: Instant, out: &mut Vec<Event>) {
            out.push(Event::Open { door: d, src, tag });
            let tags: Vec<Tag> = self.doors[d].candidates.iter().map(|c| c.tag).collect();
            for t in tags {
                if let Some(i) = self.find(src, d, t) {
                    let a = self.attempts.remove(i);
                    out.push(Event::Fail {
                        door: d,
                        src,
                        tag: t,
                        stage: a.3,
                    });
                }
            }
            let seq = self.doors[d].candidate(tag).unwrap().sequence.clone();
            self.recent.insert((src, d), (now, seq));
        }

        fn hit(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.expire(now, out);
            let k = h.knock();
            let src = h.src;
            let used = self
                .doors
                .iter()
                .any(|d| d.candidates.iter().any(|c| c.sequence.contains(k)));
            if !used {
                let track = self.track();
                let to_us = local(h.dst) || self.doors.iter().any(|d| d.target == Some(h.dst));
                if track > 0 && is_probe(h) && to_us && !self.retired.contains(&k) {
                    let live = self.scan_count(src, now) > 0
                        || self
                            .scans
                            .get(&src)
                            .is_some_and(|e| now.saturating_duration_since(e.1) <= SCAN_MEMORY);
                    let e = self.scans.entry(src).or_insert((Vec::new(), now));
                    if !live {
                        *e = (Vec::new(), now);
                    }
                    if e.0.len() >= track {
                        e.1 = now;
                    } else if !e.0.contains(&k) {
                        e.0.push(k);
                        e.1 = now;
                    }
                }
                return;
            }
            'doors: for d in 0..self.doors.len() {
                let rule = self.doors[d].clone();
                let cands: Vec<&Candidate> = rule
                    .candidates
                    .iter()
                    .filter(|c| c.sequence.contains(k))
                    .collect();
                if cands.is_empty() || !rule.sees(h, &local) {
                    continue;
                }
                let t = rule.scan_threshold.min(MAX_SCAN_THRESHOLD);
                if t > 0 && self.scan_count(src, now) > t {
                    for c in &cands {
                        if let Some(i) = self.find(src, d, c.tag) {
                            let a = self.attempts.remove(i);
                            out.push(Event::Fail {
                                door: d,
                                src,
                                tag: c.tag,
                                stage: a.3,
                            });
                        }
                    }
                    continue;
                }
                let straggler = self.recent.get(&(src, d)).is_some_and(|(at, seq)| {
                    now.saturating_duration_since(*at) <= rule.timeout && seq.contains(k)
                });
                for c in cands {
                    let knocks = c.sequence.knocks();
                    let tag = c.tag;
                    if let Some(i) = self.find(src, d, tag) {
                        let m = self.attempts[i].3;
                        if knocks[m] == k {
                            self.attempts[i].3 += 1;
                            out.push(Event::Stage {
                                door: d,
                                src,
                                tag,
                                stage: m + 1,
                            });
                            if m + 1 == knocks.len() {
                                self.attempts.remove(i);
                                self.open(d, src, tag, now, out);
                                continue 'doors;
                            }
                        } else if knocks[..m].contains(&k) {
                            if knocks[0] == k {
                                self.attempts.remove(i);
                                self.attempts.push((src, d, tag, m, now));
                            }
                        } else if !straggler {
                            self.attempts.remove(i);
                            out.push(Event::Fail {
                                door: d,
                                src,
                                tag,
                                stage: m,
                            });
                        }
                        continue;
                    }
                    if straggler || knocks[0] != k {
                        continue;
                    }
                    if knocks.len() == 1 {
                        out.push(Event::Stage {
                            door: d,
                            src,
                            tag,
                            stage: 1,
                        });
                        self.open(d, src, tag, now, out);
                        continue 'doors;
                    }
                    while self.attempts.len() >= self.cap {
                        let mut count: HashMap<usize, usize> = HashMap::new();
                        for a in &self.attempts {
                            *count.entry(a.1).or_default() += 1;
                        }
                        let (i, _) = self
                            .attempts
                            .iter()
                            .enumerate()
                            .min_by_key(|&(i, a)| (std::cmp::Reverse(count[&a.1]), a.4, i))
                            .unwrap();
                        let (src, door, tag, stage, _) = self.attempts.remove(i);
                        out.push(Event::Evicted {
                            door,
                            src,
                            tag,
                            stage,
                        });
                    }
                    self.attempts.push((src, d, tag, 1, now));
                    out.push(Event::Stage {
                        door: d,
                        src,
                        tag,
                        stage: 1,
                    });
                }
            }
        }

        fn deadline(&self) -> Option<Instant> {
            self.attempts
                .iter()
                .filter_map(|a| a.4.checked_add(self.doors[a.1].timeout))
                .min()
                .map(|v| v + Duration::from_nanos(1))
        }
    }

    /// What the property tests feed steps to: the matcher (its doors
    /// indexed, or source-bound with a table) and the model.
    trait Feed {
        fn expire_at(&mut self, now: Instant, out: &mut Vec<Event>);
        fn hit_at(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>);
        /// Step `s` at `now`: an expiry, or its hit.
        fn feed(&mut self, s: &Step, now: Instant, out: &mut Vec<Event>) {
            if s.expire {
                self.expire_at(now, out);
            } else {
                self.hit_at(&step_hit(s), now, out);
            }
        }
    }

    impl Feed for Matcher {
        fn expire_at(&mut self, now: Instant, out: &mut Vec<Event>) {
            self.expire(now, out);
        }
        fn hit_at(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.on_hit(h, now, &local, out);
        }
    }

    impl Feed for Model {
        fn expire_at(&mut self, now: Instant, out: &mut Vec<Event>) {
            self.expire(now, out);
        }
        fn hit_at(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.hit(h, now, out);
        }
    }

    /// A matcher with source-bound doors and the table their source answers from.
    struct WithTable<'a>(&'a mut Matcher, &'a mut Fixed);

    impl Feed for WithTable<'_> {
        fn expire_at(&mut self, now: Instant, out: &mut Vec<Event>) {
            self.0.expire(now, out);
        }
        fn hit_at(&mut self, h: &Hit, now: Instant, out: &mut Vec<Event>) {
            self.0.on_hit_with(h, now, &local, self.1, out);
        }
    }

    fn non_expiry(v: &[Event]) -> Vec<Event> {
        v.iter()
            .filter(|e| !matches!(e, Event::Expired { .. }))
            .copied()
            .collect()
    }

    /// Is `seq` a subsequence of `hist` (knock, time) whose first element is
    /// at or after `since`? Matching backwards, greedily, gives the latest
    /// possible start.
    fn subsequence_since(seq: &[Knock], hist: &[(Knock, Instant)], since: Option<Instant>) -> bool {
        let mut want = seq.iter().rev().peekable();
        let mut start = None;
        for &(k, t) in hist.iter().rev() {
            if want.peek() == Some(&&k) {
                want.next();
                start = Some(t);
                if want.peek().is_none() {
                    break;
                }
            }
        }
        want.peek().is_none() && start.is_some_and(|t| since.is_none_or(|s| t >= s))
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
            let mut model = Model::new(doors, 10_000);
            let mut now = base;
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                let mut out = Vec::new();
                let mut want = Vec::new();
                m.feed(s, now, &mut out);
                model.feed(s, now, &mut want);
                if s.expire {
                    let only_expired = out.iter().all(|e| matches!(e, Event::Expired { .. }));
                    prop_assert!(only_expired, "expire() emitted {:?}", out);
                }
                prop_assert_eq!(non_expiry(&out), non_expiry(&want));
                m.check();
                prop_assert_eq!(m.attempts(), model.attempts.len());
                if let Some(d) = m.next_deadline() {
                    prop_assert!(d > now);
                }
            }
        }

        /// A source-bound door whose source gives every knocker the same
        /// candidates behaves exactly like an ordinary door with them.
        #[test]
        fn bound_door_agrees_with_an_indexed_one(
            door in arb_door(),
            steps in proptest::collection::vec(arb_step(), 0..80),
        ) {
            // A bound door looks at one protocol: make every knock TCP.
            let mut door = door;
            door.candidates = door
                .candidates
                .iter()
                .filter_map(|c| {
                    let knocks = c.sequence.iter().map(|k| Knock::tcp(k.port)).collect();
                    Some(Candidate { tag: c.tag, sequence: Sequence::new(knocks)? })
                })
                .collect();
            let mut table = Fixed(door.candidates.clone());
            let mut a = Matcher::new(vec![door.clone()], 10_000);
            let mut b = Matcher::new(
                vec![DoorRule { candidates: Vec::new(), ..door }],
                10_000,
            );
            b.set_bound(0, Some(BoundRange { proto: Proto::Tcp, lo: 1, hi: 65535 }));
            let base = Instant::now();
            let mut now = base;
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                let (mut ea, mut eb) = (Vec::new(), Vec::new());
                a.feed(s, now, &mut ea);
                WithTable(&mut b, &mut table).feed(s, now, &mut eb);
                prop_assert_eq!(ea, eb);
                b.check();
                prop_assert_eq!(a.attempts(), b.attempts());
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

        /// A door opens for a source on candidate `tag` only when that
        /// candidate's sequence occurs in order among the hits from that
        /// source the candidate could see, starting within the door's
        /// timeout; and a one-knock candidate never opens on a straggler of
        /// the door's latest opening for that source.
        #[test]
        fn opens_only_after_the_sequence_in_time(
            doors in proptest::collection::vec(arb_door(), 1..4),
            steps in proptest::collection::vec(arb_step(), 0..120),
            cap in 1usize..6,
        ) {
            let mut m = Matcher::new(doors.clone(), cap);
            let mut now = Instant::now();
            // Per (src, door, tag): the relevant hits so far, with their times.
            let mut seen: HashMap<(IpAddr, usize, Tag), Vec<(Knock, Instant)>> = HashMap::new();
            // Per (src, door): the latest opening (time, sequence).
            let mut opened: HashMap<(IpAddr, usize), (Instant, Sequence)> = HashMap::new();
            for s in &steps {
                now += Duration::from_millis(s.dt_ms);
                let h = step_hit(s);
                for (d, rule) in doors.iter().enumerate() {
                    for c in &rule.candidates {
                        if rule.sees(&h, &local) && c.sequence.contains(h.knock()) {
                            seen.entry((h.src, d, c.tag)).or_default().push((h.knock(), now));
                        }
                    }
                }
                let mut out = Vec::new();
                m.on_hit(&h, now, &local, &mut out);
                for e in &out {
                    if let Event::Open { door, src, tag } = *e {
                        prop_assert_eq!(src, h.src);
                        let rule = &doors[door];
                        let seq = &rule.candidate(tag).unwrap().sequence;
                        let hist = &seen[&(src, door, tag)];
                        prop_assert_eq!(hist.last().map(|x| x.0), seq.knocks().last().copied());
                        let since = now.checked_sub(rule.timeout);
                        prop_assert!(subsequence_since(seq.knocks(), hist, since));
                        // A straggler of the latest opening never opens:
                        // a one-knock candidate whose knock was in that
                        // sequence does not open again within the timeout.
                        if let Some((t, prev)) = opened.get(&(src, door)) {
                            prop_assert!(
                                now.duration_since(*t) > rule.timeout
                                    || seq.len() > 1
                                    || !prev.contains(h.knock())
                            );
                        }
                        opened.insert((src, door), (now, seq.clone()));
                    }
                }
            }
        }

        /// Nothing panics: arbitrary doors (disabled, zero and huge
        /// timeouts), time going backwards, candidate changes.
        #[test]
        fn no_input_panics(
            doors in proptest::collection::vec(
                (arb_door(), any::<bool>(), any::<bool>()).prop_map(|(mut d, off, huge)| {
                    if off { d.candidates.clear(); }
                    if huge { d.timeout = Duration::MAX; }
                    d
                }),
                0..4,
            ),
            steps in proptest::collection::vec((arb_step(), any::<bool>(), 0usize..6, arb_candidates()), 0..60),
            cap in 0usize..4,
        ) {
            let base = Instant::now() + Duration::from_secs(3600);
            let mut m = Matcher::new(doors, cap);
            let mut out = Vec::new();
            for (s, backwards, door, cands) in &steps {
                let now = if *backwards {
                    base - Duration::from_millis(s.dt_ms)
                } else {
                    base + Duration::from_millis(s.dt_ms)
                };
                if s.expire {
                    m.set_candidates(*door, cands.clone());
                }
                m.feed(s, now, &mut out);
                let _ = m.next_deadline();
                m.check();
            }
        }

        /// Under a small cap, with huge timeouts, candidate changes and a
        /// clock that sometimes goes backwards, every event (evictions and
        /// expiries included, in order) matches the model.
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
                    proptest::option::weighted(0.05, (0usize..4, arb_candidates())),
                ),
                0..150,
            ),
            cap in 1usize..6,
        ) {
            let mut m = Matcher::new(doors.clone(), cap);
            let mut model = Model::new(doors, cap);
            let mut now = Instant::now() + Duration::from_secs(3600);
            for (s, backwards, new_cands) in &steps {
                // Coarse steps (0 to 3.5 s by 0.5 s): equal first hits and
                // deadlines across doors are common, so ties are exercised.
                let dt = Duration::from_millis(s.dt_ms / 500 * 500);
                now = if *backwards { now - dt } else { now + dt };
                if let Some((door, cands)) = new_cands {
                    m.set_candidates(*door, cands.clone());
                    model.set_candidates(*door, cands.clone());
                }
                let mut out = Vec::new();
                let mut want = Vec::new();
                m.feed(s, now, &mut out);
                model.feed(s, now, &mut want);
                prop_assert_eq!(out, want);
                m.check();
                prop_assert_eq!(m.attempts(), model.attempts.len());
                prop_assert_eq!(m.next_deadline(), model.deadline());
            }
        }
    }
}
