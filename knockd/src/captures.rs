//! The capture set: one [`Capture`] per listed interface, each with its own
//! link type, addresses, filter and outage state, all polled by the one
//! event loop of [`crate::server`].
//!
//! Rules:
//! * Start-up opens every listed interface. At least one must open, or the
//!   daemon does not start ([`NoneOpened`]); a listed interface that is
//!   missing (or down) is logged once and retried like a lost one.
//! * A capture that fails (interface deleted) is dropped, logged once
//!   (`NAME: capture lost: ...`), and reopened with a back-off of
//!   [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]; a failed reopen is logged
//!   once per outage. The other captures are not touched. An rtnetlink
//!   notification makes every lost capture retry at once.
//! * Each interface has its own addresses (`any`: every address of the
//!   namespace); a knock captured on an interface counts when it is sent
//!   to one of *that* interface's addresses (or to a door's `Target`), and
//!   that interface's filter passes only those addresses.
//! * A packet seen by two captures (`any` together with the interface, or
//!   a bridge and its port) reaches the matcher twice; the matcher ignores
//!   the repeated hit and the stragglers of an opened knock, so a door opens
//!   once.
//!
//! * Packets the kernel dropped because a capture's ring was full (the loop
//!   did not keep up, e.g. under a flood) are logged with their count
//!   (`NAME: N packets dropped by the kernel ...`): knocks among them were
//!   not seen. The count is asked for after frames were read, at most once
//!   per [`DROPS_EVERY`] per interface (never while idle), and at shut-down.
//!
//! Cost: one descriptor and one kernel ring of [`crate::capture::BUFFER_SIZE`]
//! per listed interface; one `getsockopt` per [`DROPS_EVERY`] while frames
//! arrive.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::bpf::{self, FilterSpec};
use crate::capture::{self, Capture, CaptureError};
use crate::log::Logger;
use crate::packet::LinkType;
use crate::settings::InterfaceList;

pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a busy capture's kernel drop count is asked for.
pub const DROPS_EVERY: Duration = Duration::from_secs(10);

/// No listed interface could be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct NoneOpened(pub Vec<CaptureError>);

/// One listed interface.
pub struct IfaceCapture {
    pub name: String,
    cap: Option<Capture>,
    /// The interface's addresses (IPv4 only with `-4`).
    pub local: BTreeSet<IpAddr>,
    reopen_at: Instant,
    backoff: Duration,
    outage_logged: bool,
    /// When the kernel's drop count was last asked for (see [`DROPS_EVERY`]).
    drops_checked: Option<Instant>,
}

impl IfaceCapture {
    fn lost(name: &str, now: Instant) -> IfaceCapture {
        IfaceCapture {
            name: name.to_string(),
            cap: None,
            local: BTreeSet::new(),
            reopen_at: now + BACKOFF_MIN,
            backoff: BACKOFF_MIN,
            outage_logged: false,
            drops_checked: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.cap.is_some()
    }

    /// Open the capture and read the interface's addresses.
    fn open(&mut self, ipv4_only: bool) -> Result<(), CaptureError> {
        self.cap = Some(Capture::open(&self.name)?);
        self.local = capture::interface_addresses(&self.name, ipv4_only);
        Ok(())
    }

    pub fn link(&self) -> Option<LinkType> {
        self.cap.as_ref().map(Capture::link)
    }
}

/// A captured frame: its link type, its bytes, and the addresses of the
/// interface it was captured on.
pub type Frame<'a> = (LinkType, &'a [u8], &'a BTreeSet<IpAddr>);

/// What the filters of all interfaces share; each adds its own addresses.
#[derive(Debug, Clone, Default)]
pub struct FilterPlan {
    /// Ports, `Target` addresses, whether to watch connection attempts.
    pub base: FilterSpec,
    /// Some door has no `Target`: the interface's addresses go in.
    pub own_addresses: bool,
}

/// Every listed interface. See the module documentation.
pub struct Captures {
    ifaces: Vec<IfaceCapture>,
    ipv4_only: bool,
}

impl Captures {
    /// Open every interface of `list`. Those that fail are logged and
    /// retried later, unless none opened.
    pub fn open(
        list: &InterfaceList,
        ipv4_only: bool,
        now: Instant,
        log: &Logger,
    ) -> Result<Captures, NoneOpened> {
        let mut set = Captures {
            ifaces: Vec::new(),
            ipv4_only,
        };
        let mut errors = Vec::new();
        for name in list.names() {
            let mut ic = IfaceCapture::lost(name, now);
            if let Err(e) = ic.open(ipv4_only) {
                errors.push(e);
            }
            set.ifaces.push(ic);
        }
        if set.ifaces.iter().all(|i| !i.is_open()) {
            return Err(NoneOpened(errors));
        }
        for e in errors {
            log.error(&format!("{e}; retrying"));
        }
        for ic in set.ifaces.iter_mut().filter(|i| !i.is_open()) {
            ic.outage_logged = true;
        }
        Ok(set)
    }

    pub fn ifaces(&self) -> &[IfaceCapture] {
        &self.ifaces
    }

    /// The names of the interfaces whose capture is open, `eth0, wlan0`.
    pub fn open_names(&self) -> String {
        let names: Vec<&str> = self
            .ifaces
            .iter()
            .filter(|i| i.is_open())
            .map(|i| i.name.as_str())
            .collect();
        names.join(", ")
    }

    /// The listed names, `eth0, wlan0`.
    pub fn listed_names(&self) -> String {
        let names: Vec<&str> = self.ifaces.iter().map(|i| i.name.as_str()).collect();
        names.join(", ")
    }

    /// Listen on `list` from now on (`SIGHUP`): interfaces listed before
    /// keep their capture; new ones are opened (and retried if missing);
    /// the others are closed. Returns whether the list changed.
    pub fn set_list(&mut self, list: &InterfaceList, now: Instant, log: &Logger) -> bool {
        let before = self.listed_names();
        let mut old = std::mem::take(&mut self.ifaces);
        for name in list.names() {
            if let Some(pos) = old.iter().position(|i| &i.name == name) {
                self.ifaces.push(old.remove(pos));
                continue;
            }
            let mut ic = IfaceCapture::lost(name, now);
            if let Err(e) = ic.open(self.ipv4_only) {
                log.error(&format!("{e}; retrying"));
                ic.outage_logged = true;
            }
            self.ifaces.push(ic);
        }
        let after = self.listed_names();
        if before != after {
            log.log(&format!("interfaces changed from {before} to {after}"));
        }
        before != after
    }

    /// Descriptors of the open captures, with their index.
    pub fn fds(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.ifaces
            .iter()
            .enumerate()
            .filter_map(|(i, ic)| ic.cap.as_ref().map(|c| (i, c.as_fd())))
    }

    /// The next frame of capture `i` with its link type and the
    /// interface's addresses; `Ok(None)` when none is waiting or the
    /// capture is not open.
    pub fn next_frame(&mut self, i: usize) -> Result<Option<Frame<'_>>, CaptureError> {
        let Some(ic) = self.ifaces.get_mut(i) else {
            return Ok(None);
        };
        let IfaceCapture { cap, local, .. } = ic;
        let Some(cap) = cap.as_mut() else {
            return Ok(None);
        };
        let link = cap.link();
        Ok(cap.next_frame()?.map(|f| (link, f, &*local)))
    }

    /// Log the packets the kernel dropped on each open capture since the
    /// last report: for captures not asked for [`DROPS_EVERY`], or for all
    /// of them when `all` (at shut-down).
    pub fn report_drops(&mut self, now: Instant, all: bool, log: &Logger) {
        for ic in &mut self.ifaces {
            let due = all
                || ic
                    .drops_checked
                    .is_none_or(|t| now.saturating_duration_since(t) >= DROPS_EVERY);
            let Some(cap) = ic.cap.as_mut().filter(|_| due) else {
                continue;
            };
            ic.drops_checked = Some(now);
            if let Some(n @ 1..) = cap.new_drops() {
                log.error(&format!(
                    "{}: {n} packets dropped by the kernel (the capture buffer was full); knocks among them were not seen",
                    ic.name
                ));
            }
        }
    }

    /// Capture `i` failed: drop it, log it, reopen it after the shortest
    /// back-off. A capture already lost stays as it is (one failure can be
    /// noticed twice in a wake-up: by the filter and by the poll).
    pub fn lose(&mut self, i: usize, why: &dyn std::fmt::Display, now: Instant, log: &Logger) {
        let Some(ic) = self.ifaces.get_mut(i).filter(|ic| ic.is_open()) else {
            return;
        };
        ic.cap = None;
        ic.backoff = BACKOFF_MIN;
        ic.reopen_at = now + ic.backoff;
        ic.outage_logged = false;
        log.error(&format!("{}: capture lost: {why}; reopening", ic.name));
    }

    /// When the next reopen is due, if a capture is lost.
    pub fn next_reopen(&self) -> Option<Instant> {
        self.ifaces
            .iter()
            .filter(|i| !i.is_open())
            .map(|i| i.reopen_at)
            .min()
    }

    /// A link changed: every lost capture retries now, not after its
    /// back-off.
    pub fn retry_now(&mut self, now: Instant) {
        for ic in self.ifaces.iter_mut().filter(|i| !i.is_open()) {
            ic.reopen_at = now;
        }
    }

    /// Reopen the lost captures whose time has come, each with its filter
    /// from `plan`. Failures are logged once per outage.
    pub fn reopen_due(&mut self, now: Instant, plan: &FilterPlan, log: &Logger) {
        for ic in &mut self.ifaces {
            if ic.is_open() || now < ic.reopen_at {
                continue;
            }
            match ic
                .open(self.ipv4_only)
                .and_then(|()| install(ic, plan, log))
            {
                Ok(()) => {
                    log.log(&format!("{}: capture reopened", ic.name));
                    ic.outage_logged = false;
                    ic.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    ic.cap = None;
                    if !ic.outage_logged {
                        log.error(&format!("{e}; retrying"));
                        ic.outage_logged = true;
                    }
                    ic.backoff = (ic.backoff * 2).min(BACKOFF_MAX);
                    ic.reopen_at = now + ic.backoff;
                }
            }
        }
    }

    /// Re-read every interface's addresses; log the ones that changed.
    /// Returns whether any did.
    pub fn reread_addresses(&mut self, log: &Logger) -> bool {
        let mut changed = false;
        for ic in &mut self.ifaces {
            let local = capture::interface_addresses(&ic.name, self.ipv4_only);
            if local != ic.local {
                log.verbose(&format!("{}: addresses now {}", ic.name, fmt_addrs(&local)));
                ic.local = local;
                changed = true;
            }
        }
        changed
    }

    /// Build and install every open capture's filter; a capture that takes
    /// no filter (its interface went away) is lost.
    pub fn apply_filters(&mut self, plan: &FilterPlan, now: Instant, log: &Logger) {
        for i in 0..self.ifaces.len() {
            if !self.ifaces[i].is_open() {
                continue;
            }
            if let Err(e) = install(&mut self.ifaces[i], plan, log) {
                self.lose(i, &e, now, log);
            }
        }
    }
}

/// The filter of one interface: the plan plus its own addresses.
fn install(ic: &mut IfaceCapture, plan: &FilterPlan, log: &Logger) -> Result<(), CaptureError> {
    let Some(cap) = ic.cap.as_mut() else {
        return Ok(());
    };
    let mut spec = plan.base.clone();
    if plan.own_addresses {
        spec.hosts.extend(ic.local.iter().copied());
    }
    let program = bpf::build(cap.link(), &spec);
    if cap.set_filter(&program)? {
        // Sizes only: the ports are the doors' secrets.
        let mut msg = format!(
            "{}: capture filter: {} instructions for {} addresses, {} TCP and {} UDP ports",
            ic.name,
            program.len(),
            spec.hosts.len(),
            spec.tcp_ports.len(),
            spec.udp_ports.len()
        );
        if spec.watch_attempts {
            msg.push_str(", every connection attempt");
        }
        if let Some(gap) = program.coarsened() {
            msg.push_str(&format!(", ports at most {gap} apart merged into ranges"));
        }
        log.debug(&msg);
        if cap.kernel_filter_len() == Some(0) && !program.matches_nothing() {
            log.error(&format!(
                "{}: the kernel refused the capture filter ({} instructions); \
                 every packet is filtered in user space",
                ic.name,
                program.len()
            ));
        }
    }
    Ok(())
}

pub fn fmt_addrs(addrs: &BTreeSet<IpAddr>) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> InterfaceList {
        InterfaceList::parse(s).unwrap()
    }

    /// A logger that keeps debug lines, and the time now; `None` (a skip,
    /// refused under CI) without the root needed to open captures.
    fn as_root(test: &str) -> Option<(Logger, Instant)> {
        if !nix::unistd::geteuid().is_root() {
            crate::capture::tests::skip_unprivileged(test, &"opening a capture needs root");
            return None;
        }
        Some((Logger::memory(true, false), Instant::now()))
    }

    #[test]
    fn a_missing_interface_is_retried_when_another_opened() {
        let Some((log, now)) = as_root("a_missing_interface_is_retried_when_another_opened") else {
            return;
        };
        let mut set = Captures::open(&list("lo, nosuchif0"), false, now, &log).unwrap();
        assert_eq!(set.open_names(), "lo");
        assert_eq!(set.listed_names(), "lo, nosuchif0");
        assert_eq!(set.fds().count(), 1);
        let lines = log.captured();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("nosuchif0") && l.ends_with("; retrying")),
            "{lines:?}"
        );
        assert_eq!(set.next_reopen(), Some(now + BACKOFF_MIN));
        // Retrying is logged once per outage, and backs off.
        let plan = FilterPlan::default();
        set.reopen_due(now + BACKOFF_MIN, &plan, &log);
        set.reopen_due(now + Duration::from_secs(60), &plan, &log);
        assert_eq!(log.captured().len(), lines.len(), "{:?}", log.captured());
        let next = set.next_reopen().unwrap();
        assert!(next > now + Duration::from_secs(60), "no back-off");
        assert!(next <= now + Duration::from_secs(60) + BACKOFF_MAX);
        set.retry_now(now);
        assert_eq!(set.next_reopen(), Some(now));
        assert!(set.ifaces()[0]
            .local
            .contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn none_opened_is_an_error_naming_each_interface() {
        let Some((log, now)) = as_root("none_opened_is_an_error_naming_each_interface") else {
            return;
        };
        let e = Captures::open(&list("nosuchif0,nosuchif1"), false, now, &log)
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(
            text.contains("nosuchif0") && text.contains("nosuchif1"),
            "{text}"
        );
        assert!(log.captured().is_empty(), "{:?}", log.captured());
    }

    #[test]
    fn a_new_list_keeps_open_captures_and_logs_the_change() {
        let Some((log, now)) = as_root("a_new_list_keeps_open_captures_and_logs_the_change") else {
            return;
        };
        let mut set = Captures::open(&list("lo"), false, now, &log).unwrap();
        assert!(!set.set_list(&list("lo"), now, &log));
        assert!(set.set_list(&list("lo, any"), now, &log));
        assert_eq!(set.open_names(), "lo, any");
        assert!(log
            .captured()
            .contains(&"interfaces changed from lo to lo, any".to_string()));
        // `any` has every address, so lo's too.
        assert!(set.ifaces()[1].local.is_superset(&set.ifaces()[0].local));
        assert!(set.set_list(&list("any"), now, &log));
        assert_eq!(set.open_names(), "any");
        set.lose(0, &"gone", now, &log);
        set.lose(0, &"gone again", now, &log);
        assert_eq!(set.open_names(), "");
        assert!(
            !log.captured().iter().any(|l| l.contains("gone again")),
            "a lost capture was lost twice: {:?}",
            log.captured()
        );
        assert!(log
            .captured()
            .contains(&"any: capture lost: gone; reopening".to_string()));
        set.reopen_due(now + BACKOFF_MIN, &FilterPlan::default(), &log);
        assert_eq!(set.open_names(), "any");
        assert!(log
            .captured()
            .contains(&"any: capture reopened".to_string()));
    }
}
