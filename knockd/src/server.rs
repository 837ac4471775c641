//! The daemon's event loop: one thread that polls the capture descriptor and
//! a signal pipe, feeds decoded hits to the matcher, uses up one-time
//! sequences, starts commands and fires timers. Nothing in the loop blocks:
//! commands run as child processes, reverse lookups on a helper thread.

use std::collections::BTreeSet;
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
use crate::capture::{self, Capture};
use crate::commands::Commands;
use crate::config::{self, Config};
use crate::log::Logger;
use crate::lookup::Names;
use crate::matcher::{Candidate, DoorRule, Event, Matcher, PerSource};
use crate::packet;
use crate::sources::{self, Consumed, Note, SequenceSource};

/// Settings of a daemon run that come from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interface: String,
    /// `Interface` was given with `-i` and wins over the configuration.
    pub interface_from_cli: bool,
    pub config_path: PathBuf,
    /// `-g`: wins over `LogFile`, also after a reload.
    pub log_file_override: Option<PathBuf>,
    pub ipv4_only: bool,
    pub lookup: bool,
    pub debug: bool,
    /// Knock attempts kept in flight at most (oldest evicted first).
    pub attempt_cap: usize,
    /// Commands running at once at most (more wait in a queue).
    pub max_children: usize,
    /// How long pending stop commands may take at shutdown.
    pub shutdown_grace: Duration,
}

impl Settings {
    pub const DEFAULT_ATTEMPT_CAP: usize = 65_536;
    pub const DEFAULT_MAX_CHILDREN: usize = 64;
}

/// How often addresses and one-time files are re-checked.
const TICK: Duration = Duration::from_secs(1);
/// Frames handled per wake-up before timers get their turn.
const BATCH: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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

struct Door {
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

/// The daemon: configuration, doors, capture and timers.
pub struct Server<'a> {
    settings: Settings,
    cfg: Config,
    log: &'a Logger,
    doors: Vec<Door>,
    matcher: Matcher,
    commands: Commands,
    iface: String,
    capture: Option<Capture>,
    reopen_at: Instant,
    backoff: Duration,
    outage_logged: bool,
    local: BTreeSet<IpAddr>,
    next_tick: Instant,
    /// When a rotating door's candidates change next (window boundary).
    rotation_at: Option<Instant>,
    names: Option<Names>,
    events: Vec<Event>,
}

impl<'a> Server<'a> {
    /// Set up the doors and open the capture. Opening the interface here is
    /// the only capture failure that is fatal: it happens before the daemon
    /// detaches, so the error reaches the terminal and the exit status.
    /// Starts no thread (daemonizing must come before any thread exists).
    pub fn new(settings: Settings, cfg: Config, log: &'a Logger) -> Result<Server<'a>, String> {
        let iface = choose_interface(&settings, &cfg);
        let capture = Capture::open(&iface)?;
        let now = Instant::now();
        let mut server = Server {
            names: None,
            commands: Commands::new(settings.max_children),
            matcher: Matcher::new(Vec::new(), settings.attempt_cap),
            doors: Vec::new(),
            settings,
            cfg,
            log,
            iface,
            capture: Some(capture),
            reopen_at: now,
            backoff: BACKOFF_MIN,
            outage_logged: false,
            local: BTreeSet::new(),
            next_tick: now + TICK,
            rotation_at: None,
            events: Vec::new(),
        };
        server.install_doors();
        server.local = capture::interface_addresses(&server.iface, server.settings.ipv4_only);
        server.apply_filter();
        Ok(server)
    }

    /// Run until SIGTERM/SIGINT, then run pending stop commands and return.
    /// Later capture outages are survived (logged, reopened with back-off).
    pub fn run(&mut self, signals: &mut Signals) -> Result<(), String> {
        if self.settings.lookup {
            self.names = Some(Names::start());
        }
        self.log
            .log(&format!("starting up, listening on {}", self.iface));
        self.debug_config();
        loop {
            if signals.term.swap(false, Ordering::SeqCst) {
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
            if now >= self.next_tick {
                self.tick(now);
            }
            if self.rotation_at.is_some_and(|at| now >= at) {
                self.rotate();
            }
            if self.capture.is_none() && now >= self.reopen_at {
                self.reopen(now);
            }

            let timeout = self.poll_timeout(Instant::now());
            let (capture_ready, capture_broken) = {
                let mut fds = vec![PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
                if let Some(c) = &self.capture {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("poll failed: {e}")),
                }
                let revents = fds
                    .get(1)
                    .and_then(|f| f.revents())
                    .unwrap_or(PollFlags::empty());
                (
                    revents.contains(PollFlags::POLLIN),
                    revents
                        .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL),
                )
            };
            signals.drain();
            if capture_ready || capture_broken {
                self.read_frames(capture_broken);
            }
            let now = Instant::now();
            self.matcher.expire(now, &mut self.events);
            self.handle_events(now);
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

fn choose_interface(settings: &Settings, cfg: &Config) -> String {
    if settings.interface_from_cli {
        settings.interface.clone()
    } else {
        cfg.options
            .interface
            .clone()
            .unwrap_or_else(|| settings.interface.clone())
    }
}

impl Server<'_> {
    /// Build sources and the matcher from the configuration.
    fn install_doors(&mut self) {
        let mut rules = Vec::with_capacity(self.cfg.doors.len());
        self.doors.clear();
        for d in &self.cfg.doors {
            let (source, notes) = sources::from_spec(&d.name, &d.sequence);
            log_notes(self.log, &d.name, &notes);
            rules.push(DoorRule {
                candidates: source.candidates().to_vec(),
                timeout: d.seq_timeout,
                flags: d.tcp_flags,
                target: d.target,
                scan_threshold: d.scan_threshold,
            });
            self.doors.push(Door { source });
        }
        self.matcher = Matcher::new(rules, self.settings.attempt_cap);
        for (i, door) in self.doors.iter().enumerate() {
            self.matcher.set_bound(i, door.source.bound());
        }
        self.plan_rotation();
    }

    fn debug_config(&self) {
        if !self.settings.debug {
            return;
        }
        for (d, door) in self.cfg.doors.iter().zip(&self.doors) {
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
        if let Some(c) = &self.capture {
            self.log
                .debug(&format!("capture: link type {:?}", c.link()));
        }
    }

    fn poll_timeout(&self, now: Instant) -> PollTimeout {
        let mut due = self.next_tick;
        if let Some(at) = self.rotation_at {
            due = due.min(at);
        }
        if self.capture.is_none() {
            due = due.min(self.reopen_at);
        }
        for d in [self.matcher.next_deadline(), self.commands.next_deadline()]
            .into_iter()
            .flatten()
        {
            due = due.min(d);
        }
        // Round up so a deadline is never polled for zero ms repeatedly.
        let ms = due
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
    }

    /// The addresses that knocks may be sent to and the ports of every
    /// door's current sequence, per protocol, go into the BPF filter.
    fn apply_filter(&mut self) {
        if self.capture.is_none() {
            return;
        }
        let mut spec = bpf::FilterSpec {
            watch_attempts: self.watch_attempts(),
            ..bpf::FilterSpec::default()
        };
        for ((rule, door), d) in self
            .matcher
            .doors()
            .iter()
            .zip(&self.cfg.doors)
            .zip(&self.doors)
        {
            // A source-bound door looks at its whole port range.
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
            match door.target {
                Some(t) if !(self.settings.ipv4_only && t.is_ipv6()) => {
                    spec.hosts.insert(t);
                }
                Some(_) => {}
                None => spec.hosts.extend(self.local.iter().copied()),
            }
        }
        let Some(cap) = self.capture.as_mut() else {
            return;
        };
        let program = bpf::build(cap.link(), &spec);
        match cap.set_filter(&program) {
            Err(e) => self.log.error(&e),
            Ok(false) => {}
            Ok(true) => {
                // Sizes only: the ports are the doors' secrets.
                let mut msg = format!(
                    "capture filter: {} instructions for {} addresses, {} TCP and {} UDP ports",
                    program.len(),
                    spec.hosts.len(),
                    spec.tcp_ports.len(),
                    spec.udp_ports.len()
                );
                if spec.watch_attempts {
                    msg.push_str(", every connection attempt");
                }
                if let Some(gap) = program.coarsened() {
                    msg.push_str(&format!(", ports less than {gap} apart merged into ranges"));
                }
                if cap.kernel_filter_len() == Some(0) && !program.matches_nothing() {
                    msg.push_str(", filtered in user space (refused by the kernel)");
                }
                self.log.debug(&msg);
            }
        }
    }

    /// Whether the filter must also pass every connection attempt (TCP SYN
    /// without ACK, any UDP) to the listening addresses, for the scan guard.
    fn watch_attempts(&self) -> bool {
        self.matcher.wants_all_probes()
    }

    /// Once a second: re-read the interface's addresses and re-check
    /// sequence sources (one-time files appended to, edited or removed).
    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        let mut changed = false;
        let local = capture::interface_addresses(&self.iface, self.settings.ipv4_only);
        if local != self.local {
            self.log.verbose(&format!(
                "{}: addresses now {}",
                self.iface,
                fmt_addrs(&local)
            ));
            self.local = local;
            changed = true;
        }
        for i in 0..self.doors.len() {
            let notes = self.doors[i].source.refresh();
            log_notes(self.log, &self.cfg.doors[i].name, &notes);
            changed |= self.sync_sequence(i);
        }
        if changed {
            self.apply_filter();
        }
        self.plan_rotation();
    }

    /// A rotating door's window ended: refresh the doors whose candidates
    /// change now, give them to the matcher and the filter at once.
    fn rotate(&mut self) {
        let wall = SystemTime::now();
        let mut changed = false;
        for i in 0..self.doors.len() {
            match self.doors[i].source.next_change() {
                Some(at) if at <= wall => {}
                _ => continue,
            }
            let notes = self.doors[i].source.refresh();
            log_notes(self.log, &self.cfg.doors[i].name, &notes);
            changed |= self.sync_sequence(i);
        }
        if changed {
            self.apply_filter();
        }
        self.plan_rotation();
    }

    /// When [`rotate`](Self::rotate) must run next: the earliest window
    /// boundary of the rotating doors.
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

    fn lose_capture(&mut self, why: &str, now: Instant) {
        self.capture = None;
        self.backoff = BACKOFF_MIN;
        self.reopen_at = now + self.backoff;
        self.log
            .error(&format!("{}: capture lost: {why}; reopening", self.iface));
        self.outage_logged = false;
    }

    fn reopen(&mut self, now: Instant) {
        match Capture::open(&self.iface) {
            Ok(c) => {
                self.capture = Some(c);
                self.local = capture::interface_addresses(&self.iface, self.settings.ipv4_only);
                self.apply_filter();
                self.log.log(&format!("{}: capture reopened", self.iface));
            }
            Err(e) => {
                if !self.outage_logged {
                    self.log.error(&format!("{e}; retrying"));
                    self.outage_logged = true;
                }
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.reopen_at = now + self.backoff;
            }
        }
    }

    fn read_frames(&mut self, broken: bool) {
        let mut got_any = false;
        for _ in 0..BATCH {
            let Some(cap) = self.capture.as_mut() else {
                return;
            };
            let link = cap.link();
            let frame = match cap.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.lose_capture(&e, Instant::now());
                    return;
                }
            };
            got_any = true;
            let hit = packet::decode(link, frame);
            let now = Instant::now();
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
                    let local = &self.local;
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
        if broken && !got_any {
            self.lose_capture("the capture descriptor reported an error", Instant::now());
        }
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
                    if let Some(n) = self.names.as_mut() {
                        n.request(src);
                    }
                    let s = self.src_text(src);
                    self.log.log(&format!(
                        "{s}: {}: Stage {stage}",
                        self.cfg.doors[door].name
                    ));
                }
                Event::Fail {
                    door, src, stage, ..
                } => {
                    let s = self.src_text(src);
                    self.log.verbose(&format!(
                        "{s}: {}: incorrect knock (stage {stage}), attempt discarded",
                        self.cfg.doors[door].name
                    ));
                }
                Event::Expired {
                    door, src, stage, ..
                } => {
                    let s = self.src_text(src);
                    self.log.log(&format!(
                        "{s}: {}: sequence timeout (stage {stage})",
                        self.cfg.doors[door].name
                    ));
                }
                Event::Open { door, src, tag } => self.open(door, src, tag, now),
                Event::Evicted {
                    door, src, stage, ..
                } => {
                    if self.settings.debug {
                        self.log.debug(&format!(
                            "{src}: {}: attempt at stage {stage} evicted (attempt cap {} reached)",
                            self.cfg.doors[door].name, self.settings.attempt_cap
                        ));
                    }
                }
            }
            // A candidate seen on the wire past its first hit that did not
            // open is burnt (one-time lines are marked used).
            if let Some((door, tag, stage)) = ev.ended() {
                if stage >= 2 {
                    let notes = self.doors[door].source.burn(tag);
                    log_notes(self.log, &self.cfg.doors[door].name, &notes);
                    if self.sync_sequence(door) {
                        self.apply_filter();
                    }
                }
            }
        }
        self.events = events;
    }

    fn open(&mut self, i: usize, src: IpAddr, tag: sources::Tag, now: Instant) {
        let s = self.src_text(src);
        let name = self.cfg.doors[i].name.clone();
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
        if self.sync_sequence(i) {
            self.apply_filter();
        }
        if ok {
            self.commands
                .open(i, &self.cfg.doors[i], src, now, self.log);
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
                let iface = choose_interface(&self.settings, &cfg);
                let log_file = self
                    .settings
                    .log_file_override
                    .clone()
                    .or_else(|| cfg.options.log_file.clone());
                self.log.set_sinks(log_file, cfg.options.use_syslog);
                self.cfg = cfg;
                self.install_doors();
                if iface != self.iface {
                    self.log
                        .log(&format!("interface changed from {} to {iface}", self.iface));
                    self.iface = iface;
                    self.capture = None;
                    self.reopen_at = Instant::now();
                    self.backoff = BACKOFF_MIN;
                }
                self.local = capture::interface_addresses(&self.iface, self.settings.ipv4_only);
                self.apply_filter();
                self.log.log(&format!(
                    "configuration reloaded from {} ({} doors)",
                    self.settings.config_path.display(),
                    self.cfg.doors.len()
                ));
                self.debug_config();
            }
        }
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

fn fmt_addrs(addrs: &BTreeSet<IpAddr>) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
