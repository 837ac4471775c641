//! Descriptors that must never reach a command: the one FFI module of the
//! daemon (two system calls without a safe wrapper that takes a plain
//! number).
//!
//! Rule: no descriptor but 0, 1 and 2 reaches a command. Rust opens its own
//! files and sockets close-on-exec, but two kinds are not:
//!
//! * descriptors inherited from whoever started the daemon (a shell's
//!   redirections, a service manager's sockets): [`cloexec_from`]`(3)` marks
//!   them at start-up;
//! * descriptors libpcap opens itself (its packet socket and, on Linux, an
//!   `eventfd` for `pcap_breakloop`): the capture marks them after every open
//!   and reopen (see `Capture::open`).
//!
//! Marking is one `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)` (Linux 5.11
//! and later); on older kernels every entry of `/proc/self/fd` from `first`
//! up is marked with `fcntl`.

use std::io;
use std::os::fd::{AsFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Mark every open descriptor numbered `first` or above close-on-exec.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    let Ok(low) = libc::c_uint::try_from(first) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: close_range only changes the close-on-exec flag of the
    // descriptors in the range (CLOSE_RANGE_CLOEXEC closes nothing); it
    // reads and writes no memory of this process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            low,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // ENOSYS (before Linux 5.9) or EINVAL (no CLOSE_RANGE_CLOEXEC before 5.11).
    cloexec_by_walking(first)
}

/// The fallback of [`cloexec_from`]: every entry of `/proc/self/fd`.
fn cloexec_by_walking(first: RawFd) -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        set_cloexec_raw(fd)?;
    }
    Ok(())
}

fn set_cloexec_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD take and return plain integers and touch no
    // memory; a number that is not (or no longer) open gives EBADF, which
    // is ignored (the listing's own directory descriptor is closed by now).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EBADF) {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mark one descriptor close-on-exec.
pub fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(io::Error::from)
}

/// Whether `fd` is close-on-exec (for tests).
#[cfg(test)]
pub fn is_cloexec(fd: impl AsFd) -> io::Result<bool> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFD).map_err(io::Error::from)?;
    Ok(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;

    /// A descriptor opened without close-on-exec, as libpcap does.
    fn inheritable() -> std::os::fd::OwnedFd {
        let fd = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty()).unwrap();
        assert!(!is_cloexec(&fd).unwrap());
        fd
    }

    #[test]
    fn close_range_marks_every_descriptor_from_first() {
        let a = inheritable();
        let b = inheritable();
        cloexec_from(3).unwrap();
        assert!(is_cloexec(&a).unwrap());
        assert!(is_cloexec(&b).unwrap());
        // 0, 1 and 2 are left alone: a command still gets its stdio.
        assert!(!is_cloexec(std::io::stderr()).unwrap_or(false));
    }

    #[test]
    fn walking_proc_marks_every_descriptor_from_first() {
        let a = inheritable();
        cloexec_by_walking(3).unwrap();
        assert!(is_cloexec(&a).unwrap());
    }

    #[test]
    fn one_descriptor() {
        let a = inheritable();
        set_cloexec(&a).unwrap();
        assert!(is_cloexec(&a).unwrap());
    }
}
