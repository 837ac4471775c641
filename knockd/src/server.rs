//! The daemon's event loop: one thread that polls the capture descriptors
//! (one per listed interface, [`crate::captures`]), a signal pipe and the
//! change notifications ([`crate::watch`]), feeds decoded hits to the
//! matcher, uses up one-time sequences, starts commands and fires
//! timers. Nothing in the loop blocks: commands run as child processes,
//! reverse lookups on a helper thread.
//!
//! Idle means idle: `poll` sleeps without a timeout unless something is
//! pending (an attempt's expiry, a command's stop timer, a capture reopen, a
//! rate-limit summary, a source's next refresh). Address and one-time-file
//! changes wake it through rtnetlink and inotify.

use std::io::Read;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use knock_common::Proto;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::bpf;
use crate::captures::{Captures, FilterPlan, NoneOpened};
use crate::commands::Commands;
use crate::config::{self, Config};
use crate::log::Logger;
use crate::lookup::Names;
use crate::matcher::{Candidate, DoorRule, Event, Matcher, PerSource};
use crate::packet;
use crate::ratelimit::{Limits, LineKind, RateLimiter, Summary};
use crate::settings::{self, InterfaceList, Origin, Settings, Valued};
use crate::sources::{self, Consumed, Note, SequenceSource};
use crate::watch::{self, Changes, Watcher};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Capture(#[from] NoneOpened),
    #[error("poll failed: {0}")]
    Poll(nix::errno::Errno),
}

/// Frames handled per wake-up before timers get their turn.
const BATCH: usize = 4096;
/// Wake-ups that found at least this many frames in all, each within
/// [`COALESCE`] of the one before, mean a flood or busy traffic (a knock is
/// a few packets): then the loop pauses [`COALESCE`] before polling again,
/// so that the next wake-up handles a batch instead of waking for every
/// packet (context switches were a third of the CPU under a flood, and most
/// of it under 10,000 connections/s with the scan guard on). Ordinary knocks
/// never wait; under such traffic a packet waits at most this long, and the
/// capture buffer holds far more than that much traffic.
const COALESCE_FRAMES: usize = 8;
const COALESCE: Duration = Duration::from_millis(1);

/// Signal flags, set by handlers; a byte on the pipe wakes the loop.
pub struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    /// Install handlers for SIGTERM, SIGINT, SIGHUP and SIGCHLD.
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&term))?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&hup))?;
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        Ok(Signals { term, hup, wake })
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// A door: its configuration and the source of its sequences, kept
/// together so one index names both; the matcher's door of the same index
/// is built from them in [`Server::install_doors`].
struct Door {
    conf: config::Door,
    source: Box<dyn SequenceSource>,
}

/// The doors as the matcher's [`PerSource`]: source-bound doors derive
/// (and cache) a knocker's candidates on its hits.
struct DoorSources<'a>(&'a mut [Door]);

impl PerSource for DoorSources<'_> {
    fn candidates_for(&mut self, door: usize, src: IpAddr) -> &[Candidate] {
        match self.0.get_mut(door) {
            Some(d) => d.source.candidates_for(src),
            None => &[],
        }
    }
}

/// `at` on the monotonic clock (now if it is past).
fn instant_of(at: SystemTime) -> Instant {
    let now = Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(d) => now + d,
        Err(_) => now,
    }
}

/// The daemon: configuration, doors, captures and timers.
pub struct Server<'a> {
    settings: Settings,
    log: &'a Logger,
    /// Indexed like the matcher's doors.
    doors: Vec<Door>,
    matcher: Matcher,
    commands: Commands,
    /// One capture per listed interface.
    captures: Captures,
    /// When a source's candidates change on their own next (a rotating
    /// door's window boundary, a one-time line waiting to be marked).
    rotation_at: Option<Instant>,
    /// Address and one-time-file change notifications.
    watcher: Watcher,
    /// The interfaces are those of the default routes (neither `-i` nor
    /// `Interface` named any): route changes move the captures.
    follow_routes: bool,
    /// The default routes are gone; said once until they are back.
    no_route_logged: bool,
    /// Next re-check of everything, only while a notification is missing.
    next_check: Option<Instant>,
    /// Per-packet log lines (see [`crate::ratelimit`]).
    limiter: RateLimiter,
    summaries: Vec<Summary>,
    names: Option<Names>,
    events: Vec<Event>,
}

impl<'a> Server<'a> {
    /// Set up the doors and open a capture on each of `interfaces` (as
    /// resolved by [`Settings::resolve`]; those of the default routes are
    /// followed when the routes change). That none of them opens is the
    /// only capture failure that is fatal: it happens before the daemon
    /// detaches, so the error reaches the terminal and the exit status.
    /// Starts no thread (daemonizing must come before any thread exists).
    pub fn new(
        settings: Settings,
        cfg: Config,
        interfaces: &Valued<InterfaceList>,
        log: &'a Logger,
    ) -> Result<Server<'a>, ServerError> {
        let now = Instant::now();
        let captures = Captures::open(&interfaces.value, settings.ipv4_only, now, log)?;
        let (watcher, watch_error) = Watcher::new();
        let mut server = Server {
            names: None,
            commands: Commands::new(settings.max_children),
            matcher: Matcher::new(Vec::new(), settings.attempt_cap),
            doors: Vec::new(),
            settings,
            log,
            captures,
            rotation_at: None,
            watcher,
            follow_routes: false,
            no_route_logged: false,
            next_check: None,
            limiter: RateLimiter::new(0, Limits::default()),
            summaries: Vec::new(),
            events: Vec::new(),
        };
        if let Some(e) = watch_error {
            log.error(&e.to_string());
        }
        server.follow_routes_of(interfaces.origin);
        // Watch before the files are first read, so no change falls between.
        server.watch_files(&cfg.doors, now);
        server.install_doors(cfg.doors);
        server.apply_filter();
        Ok(server)
    }

    /// Run until SIGTERM/SIGINT, then run pending stop commands and return.
    /// Later capture outages are survived (logged, reopened with back-off).
    pub fn run(&mut self, signals: &mut Signals) -> Result<(), ServerError> {
        if self.settings.lookup {
            self.names = Some(Names::start());
        }
        // The interfaces that could not be opened were logged, and are
        // retried: the line names those that listen now.
        self.log.log(&format!(
            "starting up, listening on {}",
            self.captures.open_names()
        ));
        self.debug_config();
        // Frames of the recent wake-ups that came within COALESCE of each other.
        let mut busy = (0usize, Instant::now());
        loop {
            if signals.term.swap(false, Ordering::SeqCst) {
                self.limiter.drain(Instant::now(), &mut self.summaries);
                self.write_summaries();
                self.captures.report_drops(Instant::now(), true, self.log);
                self.log
                    .verbose("waiting for child processes, running pending stop commands");
                let names = &mut self.names;
                self.commands
                    .shutdown_with(self.log, self.settings.shutdown_grace, &mut |ip| {
                        describe(names, ip)
                    });
                self.log.log("shutting down");
                return Ok(());
            }
            if signals.hup.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let now = Instant::now();
            if self.next_check.is_some_and(|t| now >= t) {
                self.next_check = Some(now + watch::FALLBACK_PERIOD);
                self.recheck(Changes::ALL);
            }
            if self.rotation_at.is_some_and(|at| now >= at) {
                self.rotate();
            }
            if self.captures.next_reopen().is_some_and(|at| now >= at) {
                let plan = self.filter_plan();
                self.captures.reopen_due(now, &plan, self.log);
            }

            let timeout = self.poll_timeout(Instant::now());
            // (capture index, readable, broken) of each polled capture.
            let (ready, notified) = {
                let mut fds = vec![PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
                let mut polled = Vec::new();
                for (i, fd) in self.captures.fds() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    polled.push(i);
                }
                let watch_from = fds.len();
                fds.extend(
                    self.watcher
                        .fds()
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(ServerError::Poll(e)),
                }
                let ready: Vec<(usize, bool)> = polled
                    .iter()
                    .zip(&fds[1..watch_from])
                    .filter_map(|(&i, f)| {
                        let r = f.revents().unwrap_or(PollFlags::empty());
                        let broken = r.intersects(
                            PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL,
                        );
                        (r.contains(PollFlags::POLLIN) || broken).then_some((i, broken))
                    })
                    .collect();
                let notified = fds[watch_from..]
                    .iter()
                    .any(|f| f.revents().is_some_and(|r| !r.is_empty()));
                (ready, notified)
            };
            signals.drain();
            if notified {
                let changes = self.watcher.read();
                if changes.addresses {
                    // A link came back, perhaps a lost one: try now, not
                    // after the back-off.
                    self.captures.retry_now(Instant::now());
                }
                self.recheck(changes);
            }
            let mut frames = 0;
            for (i, broken) in ready {
                frames += self.read_frames(i, broken);
            }
            let now = Instant::now();
            self.matcher.expire(now, &mut self.events);
            self.handle_events(now);
            self.limiter.expire(now, &mut self.summaries);
            self.write_summaries();
            if frames > 0 {
                self.captures.report_drops(now, false, self.log);
                let quick = now.saturating_duration_since(busy.1) <= COALESCE;
                busy = (if quick { busy.0 + frames } else { frames }, now);
            }
            if busy.0 >= COALESCE_FRAMES {
                busy.0 = 0;
                std::thread::sleep(COALESCE);
            }
            let names = &mut self.names;
            self.commands
                .poll_with(now, self.log, &mut |ip| describe(names, ip));
        }
    }
}

/// `ADDR (NAME)` with `-l` once the name is known, else `ADDR`.
fn describe(names: &mut Option<Names>, ip: IpAddr) -> String {
    match names {
        Some(n) => n.describe(ip),
        None => ip.to_string(),
    }
}

impl Server<'_> {
    /// Build the doors' sources and the matcher from the configuration's
    /// doors, in one pass so the two stay indexed alike.
    fn install_doors(&mut self, doors: Vec<config::Door>) {
        let mut rules = Vec::with_capacity(doors.len());
        self.doors.clear();
        for d in doors {
            let (source, notes) = sources::from_spec(&d.name, &d.sequence);
            log_notes(self.log, &d.name, &notes);
            rules.push(DoorRule {
                candidates: source.candidates().to_vec(),
                timeout: d.seq_timeout,
                flags: d.tcp_flags,
                target: d.target,
                scan_threshold: d.scan_threshold,
            });
            self.doors.push(Door { conf: d, source });
        }
        self.matcher = Matcher::new(rules, self.settings.attempt_cap);
        for (i, door) in self.doors.iter().enumerate() {
            self.matcher.set_bound(i, door.source.bound());
        }
        self.plan_rotation();
        self.limiter.reset(self.doors.len());
    }

    /// Watch the one-time files of the configuration; fall back to
    /// re-checking once a second if a notification is missing.
    fn watch_files(&mut self, doors: &[config::Door], now: Instant) {
        let files: Vec<PathBuf> = doors
            .iter()
            .filter_map(|d| match &d.sequence {
                config::SequenceSpec::OneTime(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        for e in self.watcher.watch_files(&files) {
            self.log.error(&e.to_string());
        }
        self.plan_fallback(now);
    }

    /// Re-check everything every [`watch::FALLBACK_PERIOD`] while a
    /// notification is missing, else never.
    fn plan_fallback(&mut self, now: Instant) {
        self.next_check = self
            .watcher
            .needs_polling()
            .then_some(now + watch::FALLBACK_PERIOD);
    }

    /// Write the rate limiter's summary lines (where the lines they sum up
    /// would have gone).
    fn write_summaries(&mut self) {
        if self.summaries.is_empty() {
            return;
        }
        for s in self.summaries.drain(..) {
            let name = self.doors.get(s.door).map_or("?", |d| d.conf.name.as_str());
            write_line(self.log, s.kind, &s.message(name));
        }
    }

    /// A per-packet line of `kind` for door `door`: written if the rate
    /// limiter admits it, otherwise left out of the log, syslog and `-v`
    /// (shown with `-D` only). `msg` is only called if the line is shown.
    fn per_packet(
        &mut self,
        door: usize,
        kind: LineKind,
        now: Instant,
        msg: impl FnOnce(&mut Self) -> String,
    ) {
        if kind == LineKind::Incorrect && !self.log.is_verbose() {
            return; // a `-v` line: without `-v` it goes nowhere
        }
        let admitted = self.limiter.admit(door, kind, now, &mut self.summaries);
        self.write_summaries();
        if admitted {
            let m = msg(self);
            write_line(self.log, kind, &m);
        } else if self.settings.debug {
            let m = msg(self);
            self.log
                .debug(&format!("{m} (left out of the log: rate limit)"));
        }
    }

    /// [`per_packet`](Self::per_packet) for a line about `src` (its name
    /// looked up, see `lookup`): "`src`: door name: `what`".
    fn per_packet_from(
        &mut self,
        door: usize,
        kind: LineKind,
        src: IpAddr,
        now: Instant,
        what: std::fmt::Arguments<'_>,
    ) {
        self.per_packet(door, kind, now, |me| {
            let s = me.src_text(src);
            format!("{s}: {}: {what}", me.doors[door].conf.name)
        });
    }

    fn debug_config(&self) {
        if !self.settings.debug {
            return;
        }
        for door in &self.doors {
            let d = &door.conf;
            self.log.debug(&format!(
                "config: door {}: sequence {}, seq_timeout {}s, tcpflags {}, target {}, cmd_timeout {}s",
                d.name,
                door.source.describe(),
                d.seq_timeout.as_secs(),
                d.tcp_flags.map(|f| f.to_string()).unwrap_or_else(|| "any".into()),
                d.target.map(|t| t.to_string()).unwrap_or_else(|| "interface".into()),
                d.cmd_timeout.as_secs()
            ));
        }
        for ic in self.captures.ifaces() {
            if let Some(link) = ic.link() {
                self.log
                    .debug(&format!("capture: {}: link type {link:?}", ic.name));
            }
        }
    }

    /// Until the earliest pending deadline; without one, no timeout at all.
    fn poll_timeout(&self, now: Instant) -> PollTimeout {
        let due = [
            self.captures.next_reopen(),
            self.next_check,
            self.matcher.next_deadline(),
            self.commands.next_deadline(),
            self.limiter.next_deadline(),
            self.rotation_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(due) = due else {
            return PollTimeout::NONE;
        };
        // Round up so a deadline is never polled for zero ms repeatedly.
        let ms = due
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
    }

    /// The ports of every door's candidate sequences (a source-bound door:
    /// its whole port range), per protocol, and the addresses knocks may be
    /// sent to go into each interface's BPF filter.
    fn apply_filter(&mut self) {
        let plan = self.filter_plan();
        self.captures.apply_filters(&plan, Instant::now(), self.log);
    }

    /// What every interface's filter holds; each adds its own addresses.
    fn filter_plan(&self) -> FilterPlan {
        let mut plan = FilterPlan {
            base: bpf::FilterSpec {
                watch_attempts: self.watch_attempts(),
                ..bpf::FilterSpec::default()
            },
            own_addresses: false,
        };
        let spec = &mut plan.base;
        for (rule, d) in self.matcher.doors().iter().zip(&self.doors) {
            let bound = d.source.bound();
            if rule.candidates.is_empty() && bound.is_none() {
                continue;
            }
            for k in rule.candidates.iter().flat_map(|c| c.sequence.iter()) {
                match k.proto {
                    Proto::Tcp => spec.tcp_ports.insert(k.port),
                    Proto::Udp => spec.udp_ports.insert(k.port),
                };
            }
            if let Some(b) = bound {
                let ports = match b.proto {
                    Proto::Tcp => &mut spec.tcp_ports,
                    Proto::Udp => &mut spec.udp_ports,
                };
                ports.extend(b.lo..=b.hi);
            }
            match d.conf.target {
                Some(t) if !(self.settings.ipv4_only && t.is_ipv6()) => {
                    spec.hosts.insert(t);
                }
                Some(_) => {}
                None => plan.own_addresses = true,
            }
        }
        plan
    }

    /// Whether the filter must also pass every connection attempt (TCP SYN
    /// without ACK, any UDP) to the listening addresses, for the scan guard.
    fn watch_attempts(&self) -> bool {
        self.matcher.wants_all_probes()
    }

    /// After a notification (or a source's own deadline): re-read the
    /// interface's addresses and/or re-check the sequence sources (one-time
    /// files appended to, edited, removed or created again).
    fn recheck(&mut self, what: Changes) {
        let mut changed = false;
        if what.routes && self.follow_routes {
            changed |= self.follow_default_routes();
        }
        if what.addresses {
            changed |= self.captures.reread_addresses(self.log);
        }
        if what.files {
            for i in 0..self.doors.len() {
                changed |= self.refresh_door(i);
            }
        }
        if changed {
            self.apply_filter();
        }
        self.plan_rotation();
    }

    /// Follow the default routes' interfaces (route notifications on) when
    /// the interface list came from them, else not.
    fn follow_routes_of(&mut self, origin: Origin) {
        self.follow_routes = origin == Origin::DefaultRoutes;
        self.no_route_logged = false;
        if let Some(e) = self.watcher.watch_routes(self.follow_routes) {
            self.log.error(&e.to_string());
        }
        self.plan_fallback(Instant::now());
    }

    /// The routes changed: listen on the interfaces of the default routes
    /// now. Without any default route the captures stay as they are (the
    /// daemon keeps listening; said once). Whether the list changed.
    fn follow_default_routes(&mut self) -> bool {
        match settings::default_route_interfaces() {
            Ok(list) => {
                self.no_route_logged = false;
                self.captures.set_list(&list, Instant::now(), self.log)
            }
            Err(e) => {
                if !self.no_route_logged {
                    self.no_route_logged = true;
                    self.log.error(&format!(
                        "the default routes changed: {e}; still listening on {}",
                        self.captures.listed_names()
                    ));
                }
                false
            }
        }
    }

    /// A source's own deadline passed (a rotating door's window ended, a
    /// one-time line waits to be marked): refresh the doors whose deadline
    /// it is, give their candidates to the matcher and the filter at once.
    fn rotate(&mut self) {
        let wall = SystemTime::now();
        let mut changed = false;
        for i in 0..self.doors.len() {
            if self.doors[i]
                .source
                .next_change()
                .is_some_and(|at| at <= wall)
            {
                changed |= self.refresh_door(i);
            }
        }
        if changed {
            self.apply_filter();
        }
        self.plan_rotation();
    }

    /// Door `i`'s source used or burnt a candidate: give the matcher and
    /// the filter what it accepts now, and plan its next deadline (a mark
    /// that failed is retried then).
    fn source_used(&mut self, i: usize) {
        if self.sync_sequence(i) {
            self.apply_filter();
        }
        self.plan_rotation();
    }

    /// Re-check door `i`'s source, log what it says, and give the matcher
    /// its candidates; whether they changed.
    fn refresh_door(&mut self, i: usize) -> bool {
        let notes = self.doors[i].source.refresh();
        log_notes(self.log, &self.doors[i].conf.name, &notes);
        self.sync_sequence(i)
    }

    /// When [`rotate`](Self::rotate) must run next: the earliest deadline
    /// any source asks for ([`SequenceSource::next_change`]).
    fn plan_rotation(&mut self) {
        self.rotation_at = self
            .doors
            .iter()
            .filter_map(|d| d.source.next_change())
            .min()
            .map(instant_of);
    }

    /// Give the matcher door `i`'s candidates if they changed.
    fn sync_sequence(&mut self, i: usize) -> bool {
        let current = self.doors[i].source.candidates();
        if self.matcher.doors()[i].candidates == current {
            return false;
        }
        let current = current.to_vec();
        self.matcher.set_candidates(i, current);
        true
    }

    /// Handle the frames waiting in capture `i` (at most [`BATCH`]);
    /// returns how many there were.
    fn read_frames(&mut self, i: usize, broken: bool) -> usize {
        let mut frames = 0;
        for _ in 0..BATCH {
            let now = Instant::now();
            let (hit, local) = match self.captures.next_frame(i) {
                Ok(Some((link, frame, local))) => (packet::decode(link, frame), local),
                Ok(None) => break,
                Err(e) => {
                    self.captures.lose(i, &e, now, self.log);
                    return frames;
                }
            };
            frames += 1;
            match hit {
                Ok(hit) => {
                    if self.settings.debug {
                        self.log.debug(&format!(
                            "packet: {}:{} -> {}:{} {} flags {}",
                            hit.src,
                            hit.src_port,
                            hit.dst,
                            hit.dst_port,
                            hit.proto,
                            knock_common::flags::names_of(hit.tcp_flags)
                        ));
                    }
                    // A knock counts when sent to an address of the
                    // interface it was captured on.
                    self.matcher.on_hit_with(
                        &hit,
                        now,
                        &|ip| local.contains(&ip),
                        &mut DoorSources(&mut self.doors),
                        &mut self.events,
                    );
                    self.handle_events(now);
                }
                Err(why) => {
                    if self.settings.debug {
                        self.log.debug(&format!("packet dropped: {why}"));
                    }
                }
            }
        }
        if broken && frames == 0 {
            self.captures.lose(
                i,
                &"the capture descriptor reported an error",
                Instant::now(),
                self.log,
            );
        }
        frames
    }

    fn src_text(&mut self, ip: IpAddr) -> String {
        describe(&mut self.names, ip)
    }

    fn handle_events(&mut self, now: Instant) {
        // Handling an event never produces another, so the buffer is
        // taken out while it is walked and put back (keeping its capacity).
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                Event::Stage {
                    door, src, stage, ..
                } => {
                    // The bare address, and no lookup: a DNS query per hit
                    // would show how far a knock got (see `lookup`).
                    self.per_packet(door, LineKind::Stage, now, |me| {
                        format!("{src}: {}: Stage {stage}", me.doors[door].conf.name)
                    });
                }
                Event::Fail {
                    door, src, stage, ..
                } => self.per_packet_from(
                    door,
                    LineKind::Incorrect,
                    src,
                    now,
                    format_args!("incorrect knock (stage {stage}), attempt discarded"),
                ),
                Event::Expired {
                    door, src, stage, ..
                } => self.per_packet_from(
                    door,
                    LineKind::Timeout,
                    src,
                    now,
                    format_args!("sequence timeout (stage {stage})"),
                ),
                Event::Open { door, src, tag } => self.open(door, src, tag, now),
                Event::Evicted {
                    door, src, stage, ..
                } => {
                    if self.settings.debug {
                        self.log.debug(&format!(
                            "{src}: {}: attempt at stage {stage} evicted (attempt cap {} reached)",
                            self.doors[door].conf.name, self.settings.attempt_cap
                        ));
                    }
                }
            }
            // A candidate seen on the wire past its first hit that did not
            // open is burnt (one-time lines are marked used).
            if let Some((door, tag, stage)) = ev.ended() {
                if stage >= 2 {
                    let notes = self.doors[door].source.burn(tag);
                    log_notes(self.log, &self.doors[door].conf.name, &notes);
                    self.source_used(door);
                }
            }
        }
        self.events = events;
    }

    fn open(&mut self, i: usize, src: IpAddr, tag: sources::Tag, now: Instant) {
        if let Some(n) = self.names.as_mut() {
            n.request(src);
        }
        let s = self.src_text(src);
        let name = self.doors[i].conf.name.clone();
        self.log.log(&format!("{s}: {name}: OPEN SESAME"));
        // A one-time sequence is marked used and on disk before the command.
        let consumed = self.doors[i].source.consume(tag);
        let ok = match consumed {
            Consumed::Accepted(notes) => {
                log_notes(self.log, &name, &notes);
                true
            }
            Consumed::Refused(notes) => {
                log_notes(self.log, &name, &notes);
                false
            }
        };
        self.source_used(i);
        if ok {
            self.commands
                .open(i, &self.doors[i].conf, src, now, self.log);
        }
    }

    /// SIGHUP: parse the file completely and swap it in only if valid.
    fn reload(&mut self) {
        self.log.reopen();
        self.log.verbose(&format!(
            "SIGHUP: re-reading {}",
            self.settings.config_path.display()
        ));
        match config::load(&self.settings.config_path) {
            Err(e) => {
                for err in &e.0 {
                    self.log.error(&format!("reload: {err}"));
                }
                self.log
                    .error("reload failed: keeping the running configuration");
            }
            Ok(cfg) => {
                for w in &cfg.warnings {
                    self.log.error(&format!("warning: {w}"));
                }
                let resolved = self.settings.resolve(&cfg);
                let interfaces = match resolved.interfaces {
                    Ok(i) => i,
                    Err(e) => {
                        self.log.error(&format!("reload: {e}"));
                        self.log
                            .error("reload failed: keeping the running configuration");
                        return;
                    }
                };
                // Counts of the old doors are written under their names.
                self.limiter.drain(Instant::now(), &mut self.summaries);
                self.write_summaries();
                self.log
                    .set_sinks(resolved.log_file.map(|l| l.value), cfg.options.use_syslog);
                self.watch_files(&cfg.doors, Instant::now());
                self.install_doors(cfg.doors);
                self.captures
                    .set_list(&interfaces.value, Instant::now(), self.log);
                self.follow_routes_of(interfaces.origin);
                self.captures.reread_addresses(self.log);
                self.apply_filter();
                self.log.log(&format!(
                    "configuration reloaded from {} ({} doors)",
                    self.settings.config_path.display(),
                    self.doors.len()
                ));
                self.debug_config();
            }
        }
    }
}

/// Write a per-packet line of `kind` where that kind goes: incorrect knocks
/// are `-v` lines, stages and timeouts normal log lines.
fn write_line(log: &Logger, kind: LineKind, msg: &str) {
    match kind {
        LineKind::Incorrect => log.verbose(msg),
        LineKind::Stage | LineKind::Timeout => log.log(msg),
    }
}

fn log_notes(log: &Logger, door: &str, notes: &[Note]) {
    for n in notes {
        match n {
            Note::Info(m) => log.log(&format!("{door}: {m}")),
            Note::Error(m) => log.error(&format!("{door}: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_name(_: IpAddr) -> Option<String> {
        Some("knocker.example".to_string())
    }

    /// A server on the loopback interface (opening a capture needs root).
    fn server(log: &Logger) -> Option<Server<'_>> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: opening a capture needs root");
            return None;
        }
        let cfg =
            config::parse_str("[door]\nsequence = 7000,8000\ncommand = true\n", "t.conf").unwrap();
        let settings = Settings {
            overrides: Default::default(),
            config_path: PathBuf::from("t.conf"),
            ipv4_only: false,
            lookup: true,
            debug: false,
            attempt_cap: Settings::DEFAULT_ATTEMPT_CAP,
            max_children: crate::commands::DEFAULT_MAX_CHILDREN,
            shutdown_grace: Duration::from_secs(1),
        };
        let lo = Valued {
            value: InterfaceList::parse("lo").unwrap(),
            origin: Origin::CommandLine,
        };
        Some(Server::new(settings, cfg, &lo, log).unwrap())
    }

    /// Handle `ev` alone; returns how many reverse lookups have been
    /// requested so far.
    fn handle(s: &mut Server<'_>, ev: Event, now: Instant) -> u64 {
        s.events.push(ev);
        s.handle_events(now);
        s.names.as_ref().unwrap().lookups_requested()
    }

    #[test]
    fn stage_lines_request_no_lookup_and_show_the_bare_address_open_does() {
        let log = Logger::memory(false, false);
        let Some(mut s) = server(&log) else { return };
        s.names = Some(Names::start_with(fake_name));
        let src: IpAddr = "192.0.2.7".parse().unwrap();
        let now = Instant::now();
        let stage = Event::Stage {
            door: 0,
            src,
            tag: 0,
            stage: 1,
        };
        let open = Event::Open {
            door: 0,
            src,
            tag: 0,
        };
        assert_eq!(handle(&mut s, stage, now), 0);
        assert_eq!(handle(&mut s, open, now), 1);
        // Once the name is known, Stage lines still show the address only.
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.src_text(src) == "192.0.2.7" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.src_text(src), "192.0.2.7 (knocker.example)");
        assert_eq!(handle(&mut s, stage, now), 1);
        let lines = log.captured();
        let stages: Vec<_> = lines.iter().filter(|l| l.contains("Stage")).collect();
        assert_eq!(
            stages,
            ["192.0.2.7: door: Stage 1", "192.0.2.7: door: Stage 1"]
        );
        assert!(
            lines.contains(&"192.0.2.7: door: OPEN SESAME".to_string()),
            "{lines:?}"
        );
        s.commands.shutdown(&log, Duration::from_secs(2));
    }
}
