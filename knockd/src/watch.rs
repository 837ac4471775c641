//! Change notifications, so that an idle daemon sleeps until something
//! happens instead of re-checking the world once a second.
//!
//! * **Addresses**: a `NETLINK_ROUTE` socket subscribed to the
//!   `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR` and `RTMGRP_LINK` groups. Any
//!   message (or a lost one: `ENOBUFS`) means "re-read the addresses"; the
//!   messages themselves are not parsed, `getifaddrs` stays the one place
//!   that says what the addresses are.
//! * **Default routes** (only while the interfaces are those of the default
//!   routes): a second `NETLINK_ROUTE` socket subscribed to
//!   `RTMGRP_IPV4_ROUTE` and `RTMGRP_IPV6_ROUTE`. Any message means
//!   "re-read the default routes"; the route tables stay the one place that
//!   says which they are. A separate socket keeps route churn from waking a
//!   daemon that does not follow the routes.
//! * **One-time files**: one inotify instance watching the *directory* of
//!   each file (not the file), so that a file that is deleted and created
//!   again, or replaced by a rename, is still seen. An event counts only if
//!   it names one of the watched files (the daemon's own log file may sit in
//!   the same directory); a queue overflow counts for every file.
//!
//! Both descriptors are non-blocking and close-on-exec and go into the event
//! loop's `poll` set ([`Watcher::fds`]); [`Watcher::read`] drains them and
//! says what changed. Nothing here runs a timer.
//!
//! If a notification cannot be set up (no netlink socket, inotify watch
//! limit reached, a directory that does not exist), the error is returned
//! for the log and [`Watcher::needs_polling`] tells the event loop to fall
//! back to re-checking once a second ([`FALLBACK_PERIOD`]), the behaviour
//! before notifications. A directory that is itself deleted and re-created
//! is not followed (its watch ends); `SIGHUP` installs the watches again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// How often to re-check when a notification could not be set up.
pub const FALLBACK_PERIOD: Duration = Duration::from_secs(1);

/// Why a notification could not be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error(
        "cannot subscribe to address changes (netlink): {0}; re-reading addresses once a second"
    )]
    Netlink(Errno),
    #[error("cannot subscribe to route changes (netlink): {0}; re-reading the default routes once a second")]
    Routes(Errno),
    #[error("cannot watch files (inotify): {0}; re-checking one-time files once a second")]
    Inotify(Errno),
    #[error("cannot watch directory {dir}: {errno}; re-checking one-time files once a second")]
    Directory { dir: PathBuf, errno: Errno },
}

/// What [`Watcher::read`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Addresses or links changed: re-read the interface's addresses.
    pub addresses: bool,
    /// A watched file changed: refresh the sequence sources.
    pub files: bool,
    /// Routes changed (only when [`Watcher::watch_routes`] is on): re-read
    /// the default routes.
    pub routes: bool,
}

impl Changes {
    /// Everything may have changed (a notification is missing).
    pub const ALL: Changes = Changes {
        addresses: true,
        files: true,
        routes: true,
    };
}

/// The two notification descriptors. See the module documentation.
pub struct Watcher {
    netlink: Option<OwnedFd>,
    /// Route changes, while they are followed.
    routes: Option<OwnedFd>,
    /// Routes are followed but their socket could not be opened.
    routes_degraded: bool,
    inotify: Option<Inotify>,
    /// File names watched in each watched directory.
    names: HashMap<WatchDescriptor, Vec<OsString>>,
    /// Some file could not be watched.
    files_degraded: bool,
}

/// Events that can change what a one-time file holds (or whether it exists
/// or may be read).
fn file_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

/// Address and link changes.
const ADDRESS_GROUPS: libc::c_int =
    libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR;
/// Route changes.
const ROUTE_GROUPS: libc::c_int = libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE;

/// A non-blocking netlink socket subscribed to `groups`.
fn open_netlink(groups: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, groups as u32),
    )?;
    Ok(fd)
}

/// Read every waiting message of netlink socket `fd` (never blocks);
/// whether there was any (a lost one, `ENOBUFS`, counts).
fn drain_netlink(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 8192];
    let mut any = false;
    loop {
        match recv(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            &mut buf,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return any,
            Ok(_) | Err(Errno::ENOBUFS) => any = true,
            Err(Errno::EINTR) => continue,
            Err(_) => return any,
        }
    }
}

/// The directory `path` lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Watcher {
    /// Subscribe to address changes. Watches no file yet
    /// ([`Watcher::watch_files`]).
    pub fn new() -> (Watcher, Option<WatchError>) {
        let (netlink, err) = match open_netlink(ADDRESS_GROUPS) {
            Ok(fd) => (Some(fd), None),
            Err(e) => (None, Some(WatchError::Netlink(e))),
        };
        let w = Watcher {
            netlink,
            routes: None,
            routes_degraded: false,
            inotify: None,
            names: HashMap::new(),
            files_degraded: false,
        };
        (w, err)
    }

    /// Follow route changes (`on`) or stop following them.
    pub fn watch_routes(&mut self, on: bool) -> Option<WatchError> {
        self.routes_degraded = false;
        if !on {
            self.routes = None;
            return None;
        }
        if self.routes.is_some() {
            return None;
        }
        match open_netlink(ROUTE_GROUPS) {
            Ok(fd) => {
                self.routes = Some(fd);
                None
            }
            Err(e) => {
                self.routes_degraded = true;
                Some(WatchError::Routes(e))
            }
        }
    }

    /// Watch exactly `files` (replacing earlier watches): their directories
    /// go into a fresh inotify instance. Returns what could not be watched.
    pub fn watch_files(&mut self, files: &[PathBuf]) -> Vec<WatchError> {
        self.inotify = None;
        self.names.clear();
        self.files_degraded = false;
        if files.is_empty() {
            return Vec::new();
        }
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(i) => i,
            Err(e) => {
                self.files_degraded = true;
                return vec![WatchError::Inotify(e)];
            }
        };
        let mut errors = Vec::new();
        for file in files {
            let dir = parent_dir(file);
            let Some(name) = file.file_name() else {
                continue;
            };
            match inotify.add_watch(&dir, file_mask()) {
                Ok(wd) => {
                    let names = self.names.entry(wd).or_default();
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_os_string());
                    }
                }
                Err(errno) => {
                    self.files_degraded = true;
                    errors.push(WatchError::Directory { dir, errno });
                }
            }
        }
        self.inotify = Some(inotify);
        errors
    }

    /// Whether the event loop must re-check addresses and files once a
    /// second because a notification is missing.
    pub fn needs_polling(&self) -> bool {
        self.netlink.is_none() || self.files_degraded || self.routes_degraded
    }

    /// The descriptors to poll for input.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.netlink
            .as_ref()
            .map(|f| f.as_fd())
            .into_iter()
            .chain(self.routes.as_ref().map(|f| f.as_fd()))
            .chain(self.inotify.as_ref().map(|i| i.as_fd()))
    }

    /// Drain the descriptors (never blocks) and say what changed.
    pub fn read(&mut self) -> Changes {
        let mut changes = Changes {
            addresses: self.netlink.as_ref().is_some_and(drain_netlink),
            routes: self.routes.as_ref().is_some_and(drain_netlink),
            files: false,
        };
        if let Some(inotify) = &self.inotify {
            loop {
                match inotify.read_events() {
                    Ok(events) if events.is_empty() => break,
                    Ok(events) => {
                        for ev in events {
                            if self.concerns_a_file(&ev.wd, ev.mask, ev.name.as_deref()) {
                                changes.files = true;
                            }
                        }
                    }
                    Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
        }
        changes
    }

    fn concerns_a_file(
        &self,
        wd: &WatchDescriptor,
        mask: AddWatchFlags,
        name: Option<&std::ffi::OsStr>,
    ) -> bool {
        if mask.intersects(
            AddWatchFlags::IN_Q_OVERFLOW
                | AddWatchFlags::IN_IGNORED
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF,
        ) {
            return true;
        }
        match (self.names.get(wd), name) {
            (Some(names), Some(name)) => names.iter().any(|n| n == name),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    /// Drain until `want` shows up or 2 s pass (events arrive at once, but
    /// the test must not rely on timing).
    fn read_until(w: &mut Watcher, want: impl Fn(Changes) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let mut fds: Vec<_> = w
                .fds()
                .map(|fd| nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN))
                .collect();
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            drop(fds);
            if want(w.read()) {
                return true;
            }
        }
        false
    }

    /// A file "otp" in a fresh directory, and a watcher watching it
    /// (without errors).
    fn watched_file() -> (tempfile::TempDir, PathBuf, Watcher) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("otp");
        std::fs::write(&file, "1,2,3\n").unwrap();
        let (mut w, _) = Watcher::new();
        assert!(w.watch_files(std::slice::from_ref(&file)).is_empty());
        (dir, file, w)
    }

    #[test]
    fn file_appended_deleted_recreated_and_renamed_over_are_seen() {
        let (dir, file, mut w) = watched_file();
        assert!(!w.needs_polling() || w.netlink.is_none());

        // Appended to.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"4,5,6\n").unwrap();
        drop(f);
        assert!(read_until(&mut w, |c| c.files), "append not seen");

        // Deleted, then created again.
        std::fs::remove_file(&file).unwrap();
        assert!(read_until(&mut w, |c| c.files), "delete not seen");
        std::fs::write(&file, "7,8,9\n").unwrap();
        assert!(read_until(&mut w, |c| c.files), "re-creation not seen");

        // Replaced by a rename.
        let tmp = dir.path().join("otp.new");
        std::fs::write(&tmp, "1,1,1\n").unwrap();
        // Writing another file in the directory is no change of ours.
        assert!(!w.read().files, "an unrelated file counted");
        std::fs::rename(&tmp, &file).unwrap();
        assert!(read_until(&mut w, |c| c.files), "rename over not seen");
    }

    #[test]
    fn route_changes_are_watched_only_while_asked_for() {
        let (mut w, _) = Watcher::new();
        let base = w.fds().count();
        assert_eq!(w.watch_routes(true), None);
        assert_eq!(w.fds().count(), base + 1, "no route socket");
        assert_eq!(w.watch_routes(true), None);
        assert_eq!(w.fds().count(), base + 1, "a second route socket");
        assert!(!w.needs_polling() || w.netlink.is_none());
        assert_eq!(w.watch_routes(false), None);
        assert_eq!(w.fds().count(), base, "the route socket stayed");
    }

    #[test]
    fn other_files_in_the_directory_do_not_count() {
        let (dir, file, mut w) = watched_file();
        // inotify queues an event before the write returns: it is there to
        // be read now, and it does not count.
        std::fs::write(dir.path().join("knockd.log"), "x\n").unwrap();
        assert!(
            !w.read().files,
            "the log file next to the one-time file counted"
        );
        std::fs::write(&file, "4,5,6\n").unwrap();
        assert!(read_until(&mut w, |c| c.files));
    }

    #[test]
    fn missing_directory_falls_back_to_polling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("no-such-dir").join("otp");
        let (mut w, _) = Watcher::new();
        let errs = w.watch_files(&[file]);
        assert_eq!(errs.len(), 1);
        assert!(matches!(
            &errs[0],
            WatchError::Directory {
                errno: Errno::ENOENT,
                ..
            }
        ));
        assert!(errs[0].to_string().contains("no-such-dir"));
        assert!(w.needs_polling());
        // Watching nothing is fine again.
        assert!(w.watch_files(&[]).is_empty());
        assert_eq!(w.needs_polling(), w.netlink.is_none());
    }

    #[test]
    fn bare_file_name_watches_the_current_directory() {
        assert_eq!(parent_dir(Path::new("otp")), PathBuf::from("."));
        assert_eq!(
            parent_dir(Path::new("/etc/knockd/otp")),
            PathBuf::from("/etc/knockd")
        );
    }
}
