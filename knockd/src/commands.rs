//! Running door commands: start commands, delayed stop commands, reaping.
//!
//! Everything here is non-blocking except [`Commands::shutdown`]: the event
//! loop calls [`Commands::poll`] on every iteration (and when `SIGCHLD`
//! arrives) and sleeps no longer than [`Commands::next_deadline`].
//!
//! Rules (see also `knockd(8)` and `docs/DECISIONS.md`, "Commands"):
//!
//! * Commands run as `/bin/sh -c CMD`, stdin from `/dev/null`, stdout and
//!   stderr inherited, each in its own process group (so a `SIGINT` typed at
//!   the daemon's terminal does not kill a command half-way, and a command
//!   that has to be killed at shutdown is killed with its children).
//!   `%IP%` is replaced by the knocker's address ([`substitute`]).
//! * A door with a stop command is tracked per (door, source address): the
//!   stop command runs `Cmd_Timeout` after the start command *finished*. A new
//!   successful knock while the start command runs or the stop is pending does
//!   not run the start command again; it postpones the stop to
//!   `now + Cmd_Timeout`. A knock that arrives while the stop command is
//!   running opens the door again once the stop command has finished (never
//!   concurrently with it).
//! * A door without a stop command runs its start command on every knock.
//! * When the start command for the knock's address family is absent or
//!   empty (e.g. `Start_Command_6 =`), nothing runs for that knock, not even
//!   the stop command.
//! * At most `max_children` commands run at once; further commands wait in
//!   order (stop commands before start commands, so doors close promptly). A
//!   command that has run longer than the slot-release time (default
//!   [`DEFAULT_SLOT_RELEASE`]) no longer occupies a slot, so commands that
//!   hang forever cannot stop all others; they are still reaped when they end.
//! * Every child is reaped. A non-zero exit status and death by a signal are
//!   logged; a command that cannot be started is logged, never fatal.
//! * Memory is bounded whatever arrives (a storm of completed knocks from
//!   spoofed sources): at most [`DEFAULT_MAX_QUEUED_STARTS`] start commands
//!   from new knocks wait for a slot, and at most [`DEFAULT_MAX_OPEN_DOORS`]
//!   (door, source) pairs are tracked. Past either bound a knock is not acted
//!   on (nothing is started, so nothing is left open without its stop
//!   command); an open door is never forgotten to make room. Stop commands
//!   and re-opens belong to tracked pairs, at most one waiting job each, so
//!   the whole queue never exceeds the sum of the two bounds. A knock whose
//!   command (same door, same source) is already waiting is merged into it.
//! * Knocks not acted on are logged at most once per [`DROP_REPORT_INTERVAL`]:
//!   the first at once, the rest as one line with their count, so the
//!   dropping itself cannot flood the log.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::config::Door;
use crate::log::Logger;

/// Default bound on concurrently running commands.
pub const DEFAULT_MAX_CHILDREN: usize = 64;

/// Default time after which a still-running command frees its slot.
pub const DEFAULT_SLOT_RELEASE: Duration = Duration::from_secs(60);

/// Default bound on start commands from new knocks waiting for a slot (the
/// queue behind the [`DEFAULT_MAX_CHILDREN`] running ones). About 200 bytes
/// each.
pub const DEFAULT_MAX_QUEUED_STARTS: usize = 1024;

/// Default bound on tracked (door, source) pairs of doors with a stop
/// command: doors opening, open or closing. About 300 bytes each, so the
/// table stays under about 5 MiB.
pub const DEFAULT_MAX_OPEN_DOORS: usize = 16_384;

/// Knocks not acted on are reported at most once per interval.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Default time [`Commands::shutdown`] waits for commands before killing them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The shell that runs every command.
pub const SHELL: &str = "/bin/sh";
/// How often shutdown looks at its commands while it waits for them.
const SHUTDOWN_POLL: Duration = Duration::from_millis(5);
/// How long shutdown waits to reap the commands it has killed.
const SHUTDOWN_REAP: Duration = Duration::from_secs(2);

/// Replace every `%IP%` in `cmd` by `ip` in canonical text form
/// (`192.0.2.7`, `2001:db8::7`). Nothing else is substituted.
pub fn substitute(cmd: &str, ip: IpAddr) -> String {
    cmd.replace("%IP%", &ip.to_string())
}

/// What [`Commands::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The start command was started (or queued for a free slot, or to run
    /// after the door's running stop command).
    Opened,
    /// The door is already open for this source: the start command was not
    /// run again and the pending stop (if any yet) was postponed.
    AlreadyOpen,
    /// The door has no start command for this address family: nothing runs.
    NoCommand,
    /// The same door's command for the same source is already waiting for a
    /// slot: this knock is merged into it.
    Merged,
    /// Nothing runs: a bound was reached (see the module rules).
    Dropped(DropReason),
}

/// Why a knock was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `limit` start commands already wait for a slot.
    QueueFull { limit: usize },
    /// `limit` (door, source) pairs are already tracked.
    TooManyOpen { limit: usize },
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::QueueFull { limit } => {
                write!(f, "command queue full ({limit} commands waiting)")
            }
            DropReason::TooManyOpen { limit } => {
                write!(f, "too many open doors ({limit})")
            }
        }
    }
}

/// Knocks not acted on since the last report line.
#[derive(Debug, Default)]
struct Drops {
    /// When the last report line was written.
    last_line: Option<Instant>,
    queue_full: u64,
    too_many_open: u64,
}

impl Drops {
    fn pending(&self) -> u64 {
        self.queue_full + self.too_many_open
    }

    /// When the pending count is due to be reported.
    fn due(&self) -> Option<Instant> {
        match self.last_line {
            Some(t) if self.pending() > 0 => Some(t + DROP_REPORT_INTERVAL),
            _ => None,
        }
    }
}

type Key = (usize, IpAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Stop,
}

#[derive(Debug)]
struct Job {
    door: String,
    cmd: String,
    /// Set for commands of doors that have a stop command.
    key: Option<Key>,
    /// Set for waiting start commands of doors without a stop command, so
    /// that a second knock from the same source merges into the first.
    merge: Option<Key>,
    kind: Kind,
}

struct Running {
    child: Child,
    job: Job,
    started: Instant,
    /// Occupies one of the `max_children` slots.
    counted: bool,
}

#[derive(Debug)]
struct Reopen {
    start_cmd: String,
    stop_cmd: String,
    cmd_timeout: Duration,
}

#[derive(Debug)]
enum Phase {
    /// The start command is queued or running.
    Starting,
    /// The start command finished; the stop command is due at `due`.
    Open { due: Instant },
    /// The stop command is queued or running; `reopen` is a knock that came
    /// in meanwhile.
    Stopping { reopen: Option<Reopen> },
}

#[derive(Debug)]
struct Entry {
    door: String,
    src: IpAddr,
    stop_cmd: String,
    cmd_timeout: Duration,
    phase: Phase,
}

/// The commands of all doors: running, queued and scheduled.
pub struct Commands {
    max_children: usize,
    slot_release: Duration,
    shell: PathBuf,
    stop_queue: VecDeque<Job>,
    start_queue: VecDeque<Job>,
    running: Vec<Running>,
    entries: HashMap<Key, Entry>,
    deadlines: BTreeSet<(Instant, Key)>,
    /// The `merge` keys of the jobs in `start_queue`.
    waiting: HashSet<Key>,
    max_queued_starts: usize,
    max_open_doors: usize,
    drops: Drops,
    shutting_down: bool,
    /// Every pid ever spawned, to check for zombies in tests.
    #[cfg(test)]
    spawned: Vec<u32>,
}

impl Commands {
    /// At most `max_children` commands run at once (0 is taken as 1).
    pub fn new(max_children: usize) -> Commands {
        Commands {
            max_children: max_children.max(1),
            slot_release: DEFAULT_SLOT_RELEASE,
            shell: PathBuf::from(SHELL),
            stop_queue: VecDeque::new(),
            start_queue: VecDeque::new(),
            running: Vec::new(),
            entries: HashMap::new(),
            deadlines: BTreeSet::new(),
            waiting: HashSet::new(),
            max_queued_starts: DEFAULT_MAX_QUEUED_STARTS,
            max_open_doors: DEFAULT_MAX_OPEN_DOORS,
            drops: Drops::default(),
            shutting_down: false,
            #[cfg(test)]
            spawned: Vec::new(),
        }
    }

    /// Change the bounds on waiting start commands and tracked open doors
    /// (each at least 1).
    pub fn set_bounds(&mut self, max_queued_starts: usize, max_open_doors: usize) {
        self.max_queued_starts = max_queued_starts.max(1);
        self.max_open_doors = max_open_doors.max(1);
    }

    /// Number of tracked (door, source) pairs: doors opening, open or closing.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Change the time after which a still-running command frees its slot.
    pub fn set_slot_release(&mut self, after: Duration) {
        self.slot_release = after;
    }

    /// Number of commands currently running (not yet reaped).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Number of commands waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.stop_queue.len() + self.start_queue.len()
    }

    /// Whether the door is open (start command queued or running, or stop
    /// pending) for `src`. Only doors with a stop command are tracked.
    pub fn is_open(&self, door_idx: usize, src: IpAddr) -> bool {
        matches!(
            self.entries.get(&(door_idx, src)).map(|e| &e.phase),
            Some(Phase::Starting | Phase::Open { .. })
        )
    }

    /// When the stop command of the door for `src` is due, once its start
    /// command has finished.
    pub fn stop_due(&self, door_idx: usize, src: IpAddr) -> Option<Instant> {
        match self.entries.get(&(door_idx, src)).map(|e| &e.phase) {
            Some(Phase::Open { due }) => Some(*due),
            _ => None,
        }
    }

    /// A successful knock on door `door_idx` (configuration `door`) from `src`.
    pub fn open(
        &mut self,
        door_idx: usize,
        door: &Door,
        src: IpAddr,
        now: Instant,
        log: &Logger,
    ) -> OpenOutcome {
        let is_v6 = src.is_ipv6();
        let Some(start) = door.start_command_for(is_v6) else {
            return OpenOutcome::NoCommand;
        };
        let key = (door_idx, src);
        let queue_full = self.start_queue.len() >= self.max_queued_starts;
        let Some(stop) = door.stop_command_for(is_v6) else {
            if self.waiting.contains(&key) {
                return OpenOutcome::Merged;
            }
            if queue_full {
                return self.drop_knock(door, src, self.queue_full(), now, log);
            }
            self.waiting.insert(key);
            self.start_queue.push_back(Job {
                door: door.name.clone(),
                cmd: substitute(start, src),
                key: None,
                merge: Some(key),
                kind: Kind::Start,
            });
            self.pump(now, log);
            return OpenOutcome::Opened;
        };
        let start_cmd = substitute(start, src);
        let stop_cmd = substitute(stop, src);
        if let Some(e) = self.entries.get_mut(&key) {
            e.cmd_timeout = door.cmd_timeout;
            match &mut e.phase {
                Phase::Starting => return OpenOutcome::AlreadyOpen,
                Phase::Open { due } => {
                    self.deadlines.remove(&(*due, key));
                    *due = now + door.cmd_timeout;
                    self.deadlines.insert((*due, key));
                    return OpenOutcome::AlreadyOpen;
                }
                Phase::Stopping { reopen } => {
                    let outcome = if reopen.is_some() {
                        OpenOutcome::AlreadyOpen
                    } else {
                        OpenOutcome::Opened
                    };
                    *reopen = Some(Reopen {
                        start_cmd,
                        stop_cmd,
                        cmd_timeout: door.cmd_timeout,
                    });
                    return outcome;
                }
            }
        }
        if self.entries.len() >= self.max_open_doors {
            let reason = DropReason::TooManyOpen {
                limit: self.max_open_doors,
            };
            return self.drop_knock(door, src, reason, now, log);
        }
        if queue_full {
            return self.drop_knock(door, src, self.queue_full(), now, log);
        }
        self.entries.insert(
            key,
            Entry {
                door: door.name.clone(),
                src,
                stop_cmd,
                cmd_timeout: door.cmd_timeout,
                phase: Phase::Starting,
            },
        );
        self.start_queue.push_back(Job {
            door: door.name.clone(),
            cmd: start_cmd,
            key: Some(key),
            merge: None,
            kind: Kind::Start,
        });
        self.pump(now, log);
        OpenOutcome::Opened
    }

    fn queue_full(&self) -> DropReason {
        DropReason::QueueFull {
            limit: self.max_queued_starts,
        }
    }

    /// A knock that a bound keeps from being acted on: counted, and logged
    /// at once only when no drop line was written in the last
    /// [`DROP_REPORT_INTERVAL`].
    fn drop_knock(
        &mut self,
        door: &Door,
        src: IpAddr,
        reason: DropReason,
        now: Instant,
        log: &Logger,
    ) -> OpenOutcome {
        let quiet = self
            .drops
            .last_line
            .is_some_and(|t| now.saturating_duration_since(t) < DROP_REPORT_INTERVAL);
        if quiet {
            match reason {
                DropReason::QueueFull { .. } => self.drops.queue_full += 1,
                DropReason::TooManyOpen { .. } => self.drops.too_many_open += 1,
            }
        } else {
            self.report_drops(now, log);
            log.error(&format!(
                "{src}: {}: knock not acted on: {reason}",
                door.name
            ));
            self.drops.last_line = Some(now);
        }
        OpenOutcome::Dropped(reason)
    }

    /// Write the count of knocks not acted on since the last drop line, if
    /// any (no more than once per [`DROP_REPORT_INTERVAL`] unless `force`).
    fn report_drops_due(&mut self, now: Instant, log: &Logger, force: bool) {
        if self.drops.pending() == 0 {
            return;
        }
        if force || self.drops.due().is_some_and(|due| now >= due) {
            self.report_drops(now, log);
            self.drops.last_line = Some(now);
        }
    }

    fn report_drops(&mut self, now: Instant, log: &Logger) {
        if self.drops.pending() == 0 {
            return;
        }
        let since = self
            .drops
            .last_line
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        log.error(&format!(
            "{} more knocks not acted on in the last {since} s: \
             {} with the command queue full ({} commands waiting), \
             {} with too many open doors ({})",
            self.drops.pending(),
            self.drops.queue_full,
            self.max_queued_starts,
            self.drops.too_many_open,
            self.max_open_doors
        ));
        self.drops.queue_full = 0;
        self.drops.too_many_open = 0;
    }

    /// Reap finished commands, run due stop commands, start queued commands.
    pub fn poll(&mut self, now: Instant, log: &Logger) {
        self.poll_with(now, log, &mut |ip| ip.to_string());
    }

    /// [`poll`](Commands::poll), naming sources in log messages with
    /// `describe` (e.g. `ADDR (HOSTNAME)` for `-l`).
    pub fn poll_with(
        &mut self,
        now: Instant,
        log: &Logger,
        describe: &mut dyn FnMut(IpAddr) -> String,
    ) {
        self.reap(now, log);
        self.fire_due(now, log, describe);
        self.pump(now, log);
        self.report_drops_due(now, log, false);
    }

    /// When [`poll`](Commands::poll) next has timed work to do (a stop
    /// command due, or a slot to be released for a queued command). Finished
    /// children are signalled by `SIGCHLD`, not by this deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stop = self.deadlines.first().map(|(t, _)| *t);
        let slot = if self.queued() > 0 {
            self.running
                .iter()
                .filter(|r| r.counted)
                .map(|r| r.started + self.slot_release)
                .min()
        } else {
            None
        };
        [stop, slot, self.drops.due()].into_iter().flatten().min()
    }

    /// Close everything for `SIGTERM`/`SIGINT`; blocks for at most about
    /// `grace` (plus a moment to reap killed commands).
    ///
    /// Every pending stop command runs at once. For doors whose start
    /// command is still running, the start command gets up to half of
    /// `grace` to finish (then it is killed) and the stop command runs right
    /// after. Start commands of tracked doors that have not begun yet are
    /// dropped (nothing was opened); queued commands of doors without a stop
    /// command still run. Whatever still runs when `grace` is over is killed
    /// (with its process group) and reaped, and commands that never got to
    /// run are logged.
    pub fn shutdown(&mut self, log: &Logger, grace: Duration) {
        self.shutdown_with(log, grace, &mut |ip| ip.to_string());
    }

    /// [`shutdown`](Commands::shutdown), naming sources with `describe`.
    pub fn shutdown_with(
        &mut self,
        log: &Logger,
        grace: Duration,
        describe: &mut dyn FnMut(IpAddr) -> String,
    ) {
        let begin = Instant::now();
        let deadline = begin + grace;
        let start_deadline = begin + grace / 2;
        self.shutting_down = true;
        let entries = &mut self.entries;
        self.start_queue.retain(|j| match j.key {
            Some(key) if j.kind == Kind::Start => {
                entries.remove(&key);
                false
            }
            _ => true,
        });
        for e in self.entries.values_mut() {
            if let Phase::Stopping { reopen } = &mut e.phase {
                *reopen = None;
            }
        }
        // Commands already running no longer hold slots: the stop commands
        // must get to run even if those hang.
        for r in &mut self.running {
            r.counted = false;
        }
        let mut starts_killed = false;
        loop {
            let now = Instant::now();
            self.reap(now, log);
            self.fire_all_open(log, describe);
            if !starts_killed && now >= start_deadline {
                starts_killed = true;
                for r in &self.running {
                    if r.job.kind == Kind::Start && r.job.key.is_some() {
                        log.error(&format!(
                            "{}: start command still running at shutdown, killing it: {}",
                            r.job.door, r.job.cmd
                        ));
                        kill_group(&r.child);
                    }
                }
                continue;
            }
            self.pump(now, log);
            if self.running.is_empty() && self.queued() == 0 {
                break;
            }
            if now >= deadline {
                break;
            }
            std::thread::sleep(SHUTDOWN_POLL.min(deadline - now));
        }
        for r in &self.running {
            log.error(&format!(
                "{}: command still running at shutdown, killing it: {}",
                r.job.door, r.job.cmd
            ));
            kill_group(&r.child);
        }
        let reap_deadline = Instant::now() + SHUTDOWN_REAP;
        while !self.running.is_empty() && Instant::now() < reap_deadline {
            self.reap(Instant::now(), log);
            std::thread::sleep(SHUTDOWN_POLL);
        }
        for r in &self.running {
            log.error(&format!(
                "{}: command (pid {}) could not be reaped at shutdown",
                r.job.door,
                r.child.id()
            ));
        }
        for j in self.stop_queue.iter().chain(self.start_queue.iter()) {
            log.error(&format!(
                "{}: command not run before shutdown: {}",
                j.door, j.cmd
            ));
        }
        self.stop_queue.clear();
        self.start_queue.clear();
        self.waiting.clear();
        self.report_drops_due(Instant::now(), log, true);
        for e in self.entries.values() {
            if matches!(e.phase, Phase::Open { .. } | Phase::Starting) {
                log.error(&format!(
                    "{}: {}: stop command not run before shutdown: {}",
                    describe(e.src),
                    e.door,
                    e.stop_cmd
                ));
            }
        }
        self.entries.clear();
        self.deadlines.clear();
    }

    fn reap(&mut self, now: Instant, log: &Logger) {
        let mut i = 0;
        while i < self.running.len() {
            let status = match self.running[i].child.try_wait() {
                Ok(Some(status)) => Some(status),
                Ok(None) => None,
                Err(e) => {
                    // ECHILD: reaped elsewhere (SIGCHLD ignored); count as done.
                    let r = &self.running[i];
                    log.error(&format!(
                        "{}: cannot get the status of command (pid {}): {e}",
                        r.job.door,
                        r.child.id()
                    ));
                    Some(ExitStatus::from_raw(0))
                }
            };
            match status {
                None => i += 1,
                Some(status) => {
                    let r = self.running.swap_remove(i);
                    report_status(&r.job.door, status, log);
                    self.job_done(r.job, true, now, log);
                }
            }
        }
    }

    /// A job ended (or could not be started: `ran == false`).
    fn job_done(&mut self, job: Job, ran: bool, now: Instant, log: &Logger) {
        let Some(key) = job.key else { return };
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        match (job.kind, &mut e.phase) {
            (Kind::Start, Phase::Starting) => {
                if ran {
                    let due = now + e.cmd_timeout;
                    e.phase = Phase::Open { due };
                    self.deadlines.insert((due, key));
                } else {
                    // Nothing was opened.
                    self.entries.remove(&key);
                }
            }
            (Kind::Stop, Phase::Stopping { reopen }) => match reopen.take() {
                Some(r) if !self.shutting_down => {
                    e.stop_cmd = r.stop_cmd;
                    e.cmd_timeout = r.cmd_timeout;
                    e.phase = Phase::Starting;
                    self.start_queue.push_back(Job {
                        door: e.door.clone(),
                        cmd: r.start_cmd,
                        key: Some(key),
                        merge: None,
                        kind: Kind::Start,
                    });
                }
                _ => {
                    self.entries.remove(&key);
                }
            },
            (kind, phase) => {
                log.debug(&format!(
                    "{}: unexpected end of {kind:?} command in state {phase:?}",
                    job.door
                ));
            }
        }
    }

    fn fire_due(&mut self, now: Instant, log: &Logger, describe: &mut dyn FnMut(IpAddr) -> String) {
        while let Some(&(due, key)) = self.deadlines.first() {
            if due > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.get_mut(&key) {
                log.log(&format!("{}: {}: command timeout", describe(e.src), e.door));
                e.phase = Phase::Stopping { reopen: None };
                self.stop_queue.push_back(Job {
                    door: e.door.clone(),
                    cmd: e.stop_cmd.clone(),
                    key: Some(key),
                    merge: None,
                    kind: Kind::Stop,
                });
            }
        }
    }

    /// Shutdown: every open door's stop command is due now.
    fn fire_all_open(&mut self, log: &Logger, describe: &mut dyn FnMut(IpAddr) -> String) {
        let mut due = Vec::new();
        for (key, e) in self.entries.iter_mut() {
            if let Phase::Open { due: d } = e.phase {
                log.log(&format!(
                    "{}: {}: shutting down, running stop command now",
                    describe(e.src),
                    e.door
                ));
                due.push((d, *key));
                e.phase = Phase::Stopping { reopen: None };
                self.stop_queue.push_back(Job {
                    door: e.door.clone(),
                    cmd: e.stop_cmd.clone(),
                    key: Some(*key),
                    merge: None,
                    kind: Kind::Stop,
                });
            }
        }
        for d in due {
            self.deadlines.remove(&d);
        }
    }

    /// Start queued commands while slots are free.
    fn pump(&mut self, now: Instant, log: &Logger) {
        let mut busy = 0;
        for r in &mut self.running {
            if r.counted && now.saturating_duration_since(r.started) >= self.slot_release {
                r.counted = false;
                log.log(&format!(
                    "{}: command still running after {} s, no longer counted against the limit of {} concurrent commands: {}",
                    r.job.door,
                    self.slot_release.as_secs(),
                    self.max_children,
                    r.job.cmd
                ));
            }
            if r.counted {
                busy += 1;
            }
        }
        while busy < self.max_children {
            let Some(job) = self
                .stop_queue
                .pop_front()
                .or_else(|| self.start_queue.pop_front())
            else {
                break;
            };
            if let Some(k) = job.merge {
                self.waiting.remove(&k);
            }
            if self.spawn(job, now, log) {
                busy += 1;
            }
        }
    }

    /// Spawn `job`; returns whether a child now runs.
    fn spawn(&mut self, job: Job, now: Instant, log: &Logger) -> bool {
        log.log(&format!("{}: running command: {}", job.door, job.cmd));
        let spawned = Command::new(&self.shell)
            .arg("-c")
            .arg(&job.cmd)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                #[cfg(test)]
                self.spawned.push(child.id());
                self.running.push(Running {
                    child,
                    job,
                    started: now,
                    counted: true,
                });
                true
            }
            Err(e) => {
                log.error(&format!(
                    "{}: cannot run command: {}: {}: {e}",
                    job.door,
                    job.cmd,
                    self.shell.display()
                ));
                self.job_done(job, false, now, log);
                false
            }
        }
    }
}

fn report_status(door: &str, status: ExitStatus, log: &Logger) {
    if let Some(code) = status.code() {
        if code != 0 {
            log.log(&format!(
                "{door}: command returned non-zero status code ({code})"
            ));
        }
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?");
        log.log(&format!(
            "{door}: command was killed by signal {sig} ({name})"
        ));
    }
}

/// Kill a not yet reaped child and its process group.
fn kill_group(child: &Child) {
    // The child is its own process group leader (`process_group(0)`) and is
    // not reaped yet, so its pid still names that group.
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SequenceSpec;
    use std::path::Path;

    /// A file `out` in a fresh directory (kept while the guard lives).
    fn out_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        (dir, out)
    }

    /// A shell command that appends the line `text` to `out`.
    fn appends(out: &Path, text: &str) -> String {
        format!("echo {text} >> {}", out.display())
    }

    /// A shell command that waits `delay` seconds, then appends the line
    /// `text` to `out`.
    fn appends_after(delay: &str, out: &Path, text: &str) -> String {
        format!("sleep {delay}; {}", appends(out, text))
    }

    fn door(
        name: &str,
        start: Option<&str>,
        start6: Option<&str>,
        stop: Option<&str>,
        stop6: Option<&str>,
        cmd_timeout: Duration,
    ) -> Door {
        Door {
            name: name.to_string(),
            line: 1,
            sequence: SequenceSpec::Fixed("7000,8000,9000".parse().unwrap()),
            seq_timeout: Duration::from_secs(25),
            tcp_flags: None,
            target: None,
            start_command: start.map(str::to_string),
            start_command_6: start6.map(str::to_string),
            cmd_timeout,
            stop_command: stop.map(str::to_string),
            stop_command_6: stop6.map(str::to_string),
            scan_threshold: 0,
        }
    }

    /// A door with only a start command.
    fn door_start(name: &str, start: &str, cmd_timeout: Duration) -> Door {
        door(name, Some(start), None, None, None, cmd_timeout)
    }

    /// A door with a start and a stop command (no IPv6 variants).
    fn door_start_stop(name: &str, start: &str, stop: &str, cmd_timeout: Duration) -> Door {
        door(name, Some(start), None, Some(stop), None, cmd_timeout)
    }

    /// Commands running at most `max_children` at once, and a log in memory.
    fn rig(max_children: usize) -> (Logger, Commands) {
        (Logger::memory(false, false), Commands::new(max_children))
    }

    /// A door whose start and stop commands append the lines `start` and
    /// `stop` to `out`.
    fn appending_door(name: &str, out: &Path, start: &str, stop: &str, t: Duration) -> Door {
        door_start_stop(name, &appends(out, start), &appends(out, stop), t)
    }

    /// A knock on door `idx` from `src`, now.
    fn open_now(c: &mut Commands, idx: usize, d: &Door, src: IpAddr, log: &Logger) -> OpenOutcome {
        c.open(idx, d, src, Instant::now(), log)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Poll until `cond` holds; false after 20 s.
    fn wait_until(c: &mut Commands, log: &Logger, mut cond: impl FnMut(&Commands) -> bool) -> bool {
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            c.poll(Instant::now(), log);
            if cond(c) {
                return true;
            }
            if Instant::now() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Poll until no command runs or waits; false after 20 s.
    fn wait_idle(c: &mut Commands, log: &Logger) -> bool {
        wait_until(c, log, |c| c.running() == 0 && c.queued() == 0)
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn has(log: &Logger, line: &str) -> bool {
        log.captured().iter().any(|l| l == line)
    }

    /// Whether the log says that the stop command of `door` for `who` (the
    /// address, and its name if known) ran at once at the shutdown.
    fn stopped_at_shutdown(log: &Logger, who: &str, door: &str) -> bool {
        has(
            log,
            &format!("{who}: {door}: shutting down, running stop command now"),
        )
    }

    fn has_prefix(log: &Logger, prefix: &str) -> bool {
        log.captured().iter().any(|l| l.starts_with(prefix))
    }

    /// True if `pid` is a zombie child of this process.
    fn is_our_zombie(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // "pid (comm) S ppid ..." — comm may contain spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        state == Some("Z") && ppid == Some(std::process::id())
    }

    #[test]
    fn zombie_check_detects_unreaped_child() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let limit = Instant::now() + Duration::from_secs(20);
        while !is_our_zombie(pid) && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(is_our_zombie(pid));
        child.wait().unwrap();
        assert!(!is_our_zombie(pid));
    }

    #[test]
    fn substitute_only_the_ip_token() {
        assert_eq!(
            substitute("iptables -A INPUT -s %IP% -j ACCEPT", ip("192.0.2.7")),
            "iptables -A INPUT -s 192.0.2.7 -j ACCEPT"
        );
        assert_eq!(
            substitute("ip6tables -s %IP% && echo %IP%", ip("2001:db8:0:0::7")),
            "ip6tables -s 2001:db8::7 && echo 2001:db8::7"
        );
        assert_eq!(
            substitute("echo %ip% %IP %IP%% $IP", ip("10.0.0.1")),
            "echo %ip% %IP 10.0.0.1% $IP"
        );
        assert_eq!(substitute("", ip("::1")), "");
        assert_eq!(substitute("%IP%%IP%", ip("::1")), "::1::1");
    }

    #[test]
    fn start_command_runs_with_ip_and_is_logged() {
        let (_dir, out) = out_file();
        let cmd = format!("echo %IP% > {}", out.display());
        let d = door_start("ssh", &cmd, Duration::from_secs(10));
        let (log, mut c) = rig(4);
        let src = ip("192.0.2.7");
        assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::Opened);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert_eq!(read(&out), "192.0.2.7\n");
        let expect = format!("ssh: running command: echo 192.0.2.7 > {}", out.display());
        assert!(has(&log, &expect), "{:?}", log.captured());
        // Without a stop command nothing is tracked and nothing is due.
        assert!(!c.is_open(0, src));
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn door_without_stop_runs_start_on_every_knock() {
        let (_dir, out) = out_file();
        let cmd = appends(&out, "%IP%");
        let d = door_start("d", &cmd, Duration::from_secs(10));
        let (log, mut c) = rig(4);
        let src = ip("192.0.2.7");
        for _ in 0..3 {
            assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::Opened);
        }
        assert!(wait_idle(&mut c, &log));
        assert_eq!(read(&out), "192.0.2.7\n".repeat(3));
    }

    #[test]
    fn stop_runs_cmd_timeout_after_start_finished_and_not_before() {
        let (_dir, out) = out_file();
        let start = appends_after("0.3", &out, "start %IP%");
        let stop = appends(&out, "stop %IP%");
        let timeout = Duration::from_secs(5);
        let d = door_start_stop("web", &start, &stop, timeout);
        let (log, mut c) = rig(4);
        let src = ip("198.51.100.9");
        let t_open = Instant::now();
        assert_eq!(c.open(3, &d, src, t_open, &log), OpenOutcome::Opened);
        assert!(c.is_open(3, src));
        assert_eq!(c.stop_due(3, src), None, "no stop due while start runs");
        assert!(wait_until(&mut c, &log, |c| c.stop_due(3, src).is_some()));
        let reaped_by = Instant::now();
        let due = c.stop_due(3, src).unwrap();
        // Counted from the end of the start command, not from the knock.
        assert!(due >= t_open + Duration::from_millis(300) + timeout);
        assert!(due <= reaped_by + timeout);
        assert_eq!(c.next_deadline(), Some(due));
        assert_eq!(read(&out), "start 198.51.100.9\n");

        // Just before the deadline: nothing happens.
        c.poll(due - Duration::from_millis(1), &log);
        assert!(c.is_open(3, src));
        assert!(!has(&log, "198.51.100.9: web: command timeout"));
        // At the deadline the stop command runs.
        c.poll(due, &log);
        assert!(has(&log, "198.51.100.9: web: command timeout"));
        let expect = format!(
            "web: running command: echo stop 198.51.100.9 >> {}",
            out.display()
        );
        assert!(has(&log, &expect), "{:?}", log.captured());
        assert!(!c.is_open(3, src));
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert_eq!(read(&out), "start 198.51.100.9\nstop 198.51.100.9\n");
        assert_eq!(c.next_deadline(), None);
        // Closed: a new knock opens again.
        assert_eq!(open_now(&mut c, 3, &d, src, &log), OpenOutcome::Opened);
        c.shutdown(&log, Duration::from_secs(5));
    }

    #[test]
    fn sources_can_be_described() {
        let short = door_start_stop("d", "true", "true", Duration::from_secs(1));
        let long = door_start_stop("e", "true", "true", Duration::from_secs(3600));
        let (log, mut c) = rig(4);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let mut name = |ip: IpAddr| format!("{ip} (host-{ip})");
        open_now(&mut c, 0, &short, a, &log);
        open_now(&mut c, 1, &long, b, &log);
        assert!(wait_until(&mut c, &log, |c| c.stop_due(0, a).is_some()
            && c.stop_due(1, b).is_some()));
        let due = c.stop_due(0, a).unwrap();
        c.poll_with(due, &log, &mut name);
        assert!(has(&log, "192.0.2.1 (host-192.0.2.1): d: command timeout"));
        assert!(c.is_open(1, b));
        c.shutdown_with(&log, Duration::from_secs(5), &mut name);
        assert!(stopped_at_shutdown(&log, "192.0.2.2 (host-192.0.2.2)", "e"));
    }

    #[test]
    fn reknock_while_open_postpones_stop_without_rerunning_start() {
        let (_dir, out) = out_file();
        let timeout = Duration::from_secs(10);
        let d = appending_door("d", &out, "start", "stop", timeout);
        let (log, mut c) = rig(4);
        let src = ip("192.0.2.1");
        let other = ip("192.0.2.2");
        assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::Opened);
        assert!(wait_until(&mut c, &log, |c| c.stop_due(0, src).is_some()));
        let first_due = c.stop_due(0, src).unwrap();

        let later = Instant::now() + Duration::from_secs(4);
        assert_eq!(c.open(0, &d, src, later, &log), OpenOutcome::AlreadyOpen);
        assert_eq!(c.stop_due(0, src), Some(later + timeout));
        assert_eq!(c.running(), 0, "start must not run again");
        // The old deadline no longer fires.
        c.poll(first_due, &log);
        assert!(c.is_open(0, src));
        assert_eq!(read(&out), "start\n");
        // Another door index, or another source, is independent.
        assert_eq!(open_now(&mut c, 1, &d, src, &log), OpenOutcome::Opened);
        assert_eq!(open_now(&mut c, 0, &d, other, &log), OpenOutcome::Opened);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert_eq!(read(&out), "start\n".repeat(3));
        c.poll(later + timeout, &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert!(!c.is_open(0, src));
        assert_eq!(read(&out).matches("stop").count(), 3);
    }

    #[test]
    fn reknock_while_start_runs_is_already_open() {
        let (_dir, out) = out_file();
        let start = appends_after("0.3", &out, "start");
        let d = door_start_stop("d", &start, "true", Duration::from_secs(10));
        let (log, mut c) = rig(4);
        let src = ip("192.0.2.1");
        assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::Opened);
        assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::AlreadyOpen);
        assert!(wait_until(&mut c, &log, |c| c.stop_due(0, src).is_some()));
        assert_eq!(read(&out), "start\n");
        c.shutdown(&log, Duration::from_secs(5));
    }

    #[test]
    fn knock_during_stop_reopens_after_stop_finished() {
        let (_dir, out) = out_file();
        let start = appends(&out, "start");
        let stop = appends_after("0.3", &out, "stop");
        let d = door_start_stop("d", &start, &stop, Duration::from_secs(1));
        let (log, mut c) = rig(4);
        let src = ip("192.0.2.1");
        open_now(&mut c, 0, &d, src, &log);
        assert!(wait_until(&mut c, &log, |c| c.stop_due(0, src).is_some()));
        let due = c.stop_due(0, src).unwrap();
        c.poll(due, &log);
        assert_eq!(c.running(), 1, "stop command running");
        assert_eq!(c.open(0, &d, src, due, &log), OpenOutcome::Opened);
        assert_eq!(c.open(0, &d, src, due, &log), OpenOutcome::AlreadyOpen);
        assert_eq!(c.running(), 1, "start waits for the stop command");
        assert!(wait_until(&mut c, &log, |c| c.stop_due(0, src).is_some()));
        assert_eq!(read(&out), "start\nstop\nstart\n");
        c.shutdown(&log, Duration::from_secs(5));
        assert_eq!(read(&out), "start\nstop\nstart\nstop\n");
    }

    #[test]
    fn nonzero_status_and_signal_are_logged() {
        let (log, mut c) = rig(4);
        let t = Duration::from_secs(1);
        let d1 = door_start("three", "exit 3", t);
        let d2 = door_start("killed", "kill -9 $$", t);
        let d3 = door_start("fine", "exit 0", t);
        open_now(&mut c, 0, &d1, ip("192.0.2.1"), &log);
        open_now(&mut c, 1, &d2, ip("192.0.2.1"), &log);
        open_now(&mut c, 2, &d3, ip("192.0.2.1"), &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert!(
            has(&log, "three: command returned non-zero status code (3)"),
            "{:?}",
            log.captured()
        );
        assert!(
            has(&log, "killed: command was killed by signal 9 (SIGKILL)"),
            "{:?}",
            log.captured()
        );
        assert!(!has_prefix(&log, "fine: command"));
    }

    #[test]
    fn ipv6_variant_and_fallback() {
        let (_dir, out) = out_file();
        let o = out.display();
        let v4 = format!("echo v4 %IP% >> {o}");
        let v6 = format!("echo v6 %IP% >> {o}");
        let (log, mut c) = rig(4);
        let t = Duration::from_secs(10);
        let src6 = ip("2001:db8::7");
        let src4 = ip("192.0.2.7");

        let both = door("both", Some(&v4), Some(&v6), None, None, t);
        open_now(&mut c, 0, &both, src4, &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        open_now(&mut c, 0, &both, src6, &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        let fallback = door_start("fb", &v4, t);
        open_now(&mut c, 1, &fallback, src6, &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        assert_eq!(read(&out), "v4 192.0.2.7\nv6 2001:db8::7\nv4 2001:db8::7\n");

        // An empty IPv6 command means nothing for IPv6, stop included.
        let off = door("off", Some(&v4), Some(""), Some(&v4), None, t);
        assert_eq!(
            open_now(&mut c, 2, &off, src6, &log),
            OpenOutcome::NoCommand
        );
        assert!(!c.is_open(2, src6));
        let none = door("none", None, None, None, None, t);
        assert_eq!(
            open_now(&mut c, 3, &none, src4, &log),
            OpenOutcome::NoCommand
        );
        assert_eq!(c.running() + c.queued(), 0);

        // The IPv6 stop command is chosen the same way.
        let stop6 = format!("echo stop6 %IP% >> {o}");
        let with_stop = door("s", Some("true"), None, Some(&v4), Some(&stop6), t);
        open_now(&mut c, 4, &with_stop, src6, &log);
        open_now(&mut c, 4, &with_stop, src4, &log);
        assert!(wait_until(&mut c, &log, |c| c.stop_due(4, src6).is_some()
            && c.stop_due(4, src4).is_some()));
        c.shutdown(&log, Duration::from_secs(5));
        let text = read(&out);
        assert!(text.contains("stop6 2001:db8::7\n"), "{text}");
        assert!(text.contains("v4 192.0.2.7\nv6") && text.ends_with("\n"));
        assert_eq!(text.matches("v4 192.0.2.7").count(), 2, "{text}");
    }

    #[test]
    fn shutdown_runs_pending_stops_at_once() {
        let (_dir, out) = out_file();
        let slow_start = appends_after("0.5", &out, "slow %IP%");
        let stop = appends(&out, "stop %IP%");
        let hour = Duration::from_secs(3600);
        let d = appending_door("d", &out, "start %IP%", "stop %IP%", hour);
        let slow = door_start_stop("slow", &slow_start, &stop, hour);
        let (log, mut c) = rig(4);
        open_now(&mut c, 0, &d, ip("192.0.2.1"), &log);
        open_now(&mut c, 0, &d, ip("192.0.2.2"), &log);
        assert!(wait_until(&mut c, &log, |c| c.running() == 0));
        // Start still running when the shutdown begins.
        open_now(&mut c, 1, &slow, ip("192.0.2.3"), &log);
        assert_eq!(c.running(), 1);
        c.shutdown(&log, Duration::from_secs(10));
        assert_eq!(c.running(), 0);
        assert_eq!(c.next_deadline(), None);
        let text = read(&out);
        for l in [
            "stop 192.0.2.1",
            "stop 192.0.2.2",
            "slow 192.0.2.3",
            "stop 192.0.2.3",
        ] {
            assert!(text.lines().any(|x| x == l), "{l} missing in {text}");
        }
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("slow 192.0.2.3") < pos("stop 192.0.2.3"));
        assert!(stopped_at_shutdown(&log, "192.0.2.1", "d"));
    }

    #[test]
    fn hanging_commands_block_nothing_and_shutdown_completes() {
        let (_dir, out) = out_file();
        let stop = appends(&out, "stop %IP%");
        let quick = appends(&out, "quick %IP%");
        let t = Duration::from_secs(3600);
        let hang = door_start("hang", "sleep 30", t);
        let hang_stop = door_start_stop("hangstop", "sleep 30", &stop, t);
        let ok = door_start("ok", &quick, t);
        let (log, mut c) = rig(2);
        c.set_slot_release(Duration::from_millis(200));
        open_now(&mut c, 0, &hang, ip("192.0.2.1"), &log);
        open_now(&mut c, 1, &hang_stop, ip("192.0.2.2"), &log);
        // Both slots are taken by hanging commands: the next one waits ...
        open_now(&mut c, 2, &ok, ip("192.0.2.3"), &log);
        assert_eq!((c.running(), c.queued()), (2, 1));
        assert!(c.next_deadline().is_some(), "a slot release is due");
        // ... until the hanging ones stop counting.
        // The quick command wrote its line and was reaped; the two hanging
        // commands are still running.
        assert!(wait_until(&mut c, &log, |c| read(&out)
            .contains("quick 192.0.2.3")
            && c.running() == 2));

        let begin = Instant::now();
        c.shutdown(&log, Duration::from_secs(1));
        assert!(
            begin.elapsed() < Duration::from_secs(20),
            "shutdown waited for sleep 30"
        );
        assert_eq!(c.running(), 0);
        // The hanging start of the door with a stop command was killed, and
        // its stop command ran.
        assert!(read(&out).contains("stop 192.0.2.2"), "{}", read(&out));
        assert!(has_prefix(&log, "hang: command still running at shutdown"));
        for pid in &c.spawned {
            assert!(!is_our_zombie(*pid), "zombie {pid}");
        }
    }

    #[test]
    fn many_doors_with_small_concurrency_all_run_and_are_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = format!("echo %IP% > {}/%IP%", dir.path().display());
        let stop = format!("rm {}/%IP%", dir.path().display());
        let plain = door_start("plain", &cmd, Duration::from_secs(1));
        let tracked = door_start_stop("tracked", &cmd, &stop, Duration::from_secs(1));
        let (log, mut c) = rig(8);
        let now = Instant::now();
        for i in 0..200u32 {
            let src = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]);
            let d = if i % 2 == 0 { &plain } else { &tracked };
            assert_eq!(c.open(i as usize, d, src, now, &log), OpenOutcome::Opened);
            assert!(c.running() <= 8);
        }
        let mut max_seen = 0;
        assert!(wait_until(&mut c, &log, |c| {
            max_seen = max_seen.max(c.running());
            c.running() == 0 && c.queued() == 0
        }));
        assert!(max_seen <= 8);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 200);
        for i in 0..200u32 {
            let src = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]);
            assert_eq!(read(&dir.path().join(src.to_string())), format!("{src}\n"));
        }
        // The 100 tracked doors close after their timeout.
        let later = Instant::now() + Duration::from_secs(1);
        c.poll(later, &log);
        assert!(wait_idle(&mut c, &log));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 100);
        assert_eq!(c.spawned.len(), 300);
        for pid in &c.spawned {
            assert!(!is_our_zombie(*pid), "zombie {pid}");
        }
        assert!(!log.captured().iter().any(|l| l.contains("non-zero")));
    }

    #[test]
    fn spawn_failure_is_logged_not_fatal() {
        let (log, mut c) = rig(2);
        c.shell = PathBuf::from("/nonexistent/sh");
        let d = door_start_stop("d", "true", "true", Duration::from_secs(1));
        let src = ip("192.0.2.1");
        assert_eq!(open_now(&mut c, 0, &d, src, &log), OpenOutcome::Opened);
        assert_eq!(c.running(), 0);
        assert!(!c.is_open(0, src), "a start that never ran opens nothing");
        assert!(
            has_prefix(&log, "d: cannot run command: true: /nonexistent/sh:"),
            "{:?}",
            log.captured()
        );
        c.shutdown(&log, Duration::from_secs(1));
    }

    /// `n` distinct IPv4 sources (10.0.0.0/8 and up).
    fn storm_source(i: u32) -> IpAddr {
        IpAddr::from((10u32 << 24).wrapping_add(i).to_be_bytes())
    }

    #[test]
    fn a_million_completed_knocks_keep_queue_and_open_doors_at_their_bounds() {
        let (log, mut c) = rig(1);
        // One command occupies the only slot for the whole storm.
        let tracked = door_start_stop("tracked", "sleep 30", "true", Duration::from_secs(60));
        let plain = door_start("plain", "sleep 30", Duration::ZERO);
        let now = Instant::now();
        let mut dropped = 0u32;
        for i in 0..1_000_000u32 {
            let (idx, d) = if i % 2 == 0 {
                (0, &tracked)
            } else {
                (1, &plain)
            };
            match c.open(idx, d, storm_source(i), now, &log) {
                OpenOutcome::Opened => {}
                OpenOutcome::Dropped(_) => dropped += 1,
                other => panic!("knock {i}: unexpected {other:?}"),
            }
            assert!(c.queued() <= DEFAULT_MAX_QUEUED_STARTS);
            assert!(c.tracked() <= DEFAULT_MAX_OPEN_DOORS);
        }
        assert_eq!(c.running(), 1);
        assert_eq!(c.queued(), DEFAULT_MAX_QUEUED_STARTS);
        assert!(c.tracked() <= DEFAULT_MAX_QUEUED_STARTS + 1);
        assert_eq!(dropped as usize, 1_000_000 - 1 - DEFAULT_MAX_QUEUED_STARTS);
        assert!(c.waiting.len() <= DEFAULT_MAX_QUEUED_STARTS);
        // The dropping is logged once, not a million times.
        let lines = log.captured();
        let drop_lines: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("not acted on"))
            .collect();
        assert_eq!(drop_lines.len(), 1, "{drop_lines:?}");
        assert_eq!(
            drop_lines[0],
            "10.0.4.1: plain: knock not acted on: command queue full (1024 commands waiting)"
        );
        // After the interval one summary line counts the rest.
        c.poll(now + DROP_REPORT_INTERVAL, &log);
        let summary = format!(
            "{} more knocks not acted on in the last 10 s: {} with the command queue full \
             (1024 commands waiting), 0 with too many open doors (16384)",
            dropped - 1,
            dropped - 1
        );
        assert!(has(&log, &summary), "{:?}", &log.captured()[..4]);
        c.shutdown(&log, Duration::from_millis(200));
        assert_eq!(c.running(), 0);
    }

    #[test]
    fn open_doors_are_bounded_and_never_forgotten() {
        let (log, mut c) = rig(64);
        c.set_bounds(1_000_000, 100);
        let d = door_start_stop("d", "true", "true", Duration::from_secs(3600));
        for i in 0..100u32 {
            assert_eq!(
                open_now(&mut c, 0, &d, storm_source(i), &log),
                OpenOutcome::Opened
            );
        }
        assert!(wait_idle(&mut c, &log));
        for i in 100..10_000u32 {
            assert_eq!(
                open_now(&mut c, 0, &d, storm_source(i), &log),
                OpenOutcome::Dropped(DropReason::TooManyOpen { limit: 100 })
            );
        }
        assert_eq!(c.tracked(), 100);
        // Every door opened before the storm is still open, its stop pending.
        for i in 0..100u32 {
            assert!(c.is_open(0, storm_source(i)), "door {i} forgotten");
            assert!(c.stop_due(0, storm_source(i)).is_some());
        }
        assert!(log
            .captured()
            .iter()
            .any(|l| l == "10.0.0.100: d: knock not acted on: too many open doors (100)"));
        // A door already open still takes a re-knock (postponed stop).
        assert_eq!(
            open_now(&mut c, 0, &d, storm_source(7), &log),
            OpenOutcome::AlreadyOpen
        );
        // The pending drop count is reported by the shutdown at the latest.
        c.shutdown(&log, Duration::from_secs(5));
        assert!(
            has_prefix(&log, "9899 more knocks not acted on"),
            "{:?}",
            log.captured()
        );
    }

    #[test]
    fn a_knock_whose_command_is_already_waiting_is_merged() {
        let (_dir, out) = out_file();
        let (log, mut c) = rig(1);
        let blocker = door_start("block", "sleep 0.3", Duration::ZERO);
        let cmd = appends(&out, "%IP%");
        let d = door_start("d", &cmd, Duration::ZERO);
        let now = Instant::now();
        let knock = |c: &mut Commands, idx, d, src| c.open(idx, d, ip(src), now, &log);
        assert_eq!(knock(&mut c, 9, &blocker, "192.0.2.9"), OpenOutcome::Opened);
        assert_eq!(knock(&mut c, 0, &d, "192.0.2.1"), OpenOutcome::Opened);
        for _ in 0..1000 {
            assert_eq!(knock(&mut c, 0, &d, "192.0.2.1"), OpenOutcome::Merged);
        }
        // Another source, or the same source on another door, is not merged.
        assert_eq!(knock(&mut c, 0, &d, "192.0.2.2"), OpenOutcome::Opened);
        assert_eq!(knock(&mut c, 1, &d, "192.0.2.1"), OpenOutcome::Opened);
        assert_eq!(c.queued(), 3);
        assert!(wait_idle(&mut c, &log));
        let mut lines: Vec<_> = read(&out).lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(lines, ["192.0.2.1", "192.0.2.1", "192.0.2.2"]);
        // Once the merged command has started, the next knock runs it again.
        assert_eq!(
            open_now(&mut c, 0, &d, ip("192.0.2.1"), &log),
            OpenOutcome::Opened
        );
        assert!(wait_idle(&mut c, &log));
        assert_eq!(read(&out).lines().count(), 4);
        assert!(c.waiting.is_empty());
    }
}
