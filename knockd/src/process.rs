//! Pid file and daemonizing.
//!
//! Recommended order in the daemon, so that every failure is reported with a
//! non-zero exit status while the starting shell still waits:
//!
//! 1. parse the configuration, open the capture, create the [`PidFile`]
//!    (a second instance fails here: "another knockd is running (pid N)");
//! 2. [`daemonize`] (only with `-d`), then [`PidFile::write_current_pid`],
//!    because the daemon's pid differs from the starting process's. The lock
//!    is shared with the forked child (same open file description), so the
//!    file stays locked throughout;
//! 3. start any threads only after that.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use knock_common::fsafe;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Permissions of a newly created pid file (before the umask).
pub const PID_FILE_MODE: u32 = 0o644;

/// Why a pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another process holds the lock on the pid file.
    #[error("another knockd is running (pid {}): {} is locked", .pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()), .path.display())]
    Locked { path: PathBuf, pid: Option<u32> },
    /// The pid file could not be opened, locked or written.
    #[error("pid file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The pid file is unsafe to write: an untrusted symlink, another
    /// user's file, writable by others (see `knock_common::fsafe`).
    #[error("pid file {0}")]
    Refused(fsafe::FileError),
}

impl From<fsafe::FileError> for PidFileError {
    fn from(e: fsafe::FileError) -> Self {
        match e.reason {
            fsafe::Refusal::Io(source) => PidFileError::Io {
                path: e.path,
                source,
            },
            _ => PidFileError::Refused(e),
        }
    }
}

/// A locked pid file holding our pid. The lock (`flock`, exclusive) lives as
/// long as this value; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Create or take over `path`, lock it and write our pid and a newline.
    ///
    /// A stale file (no process holds its lock) is overwritten. A file locked
    /// by another process gives [`PidFileError::Locked`] with the pid read
    /// from it.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |source: io::Error| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        // A previous owner may unlink the file between our open and our lock;
        // then the lock is on a dead inode and we try again.
        for _ in 0..10 {
            // Never through another user's symlink, never into a file
            // someone else owns or may write (see `fsafe`).
            let file = fsafe::open_for_update_safely(path, PID_FILE_MODE)?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    return Err(PidFileError::Locked {
                        path: path.to_path_buf(),
                        pid: read_pid(&mut file),
                    });
                }
                Err((_, e)) => return Err(io_err(io::Error::from(e))),
            };
            if !same_file(&locked, path) {
                continue;
            }
            let mut pid_file = PidFile {
                path: path.to_path_buf(),
                file: locked,
            };
            pid_file.write_current_pid().map_err(io_err)?;
            return Ok(pid_file);
        }
        Err(io_err(io::Error::other(
            "the file keeps being replaced while it is being locked",
        )))
    }

    /// Replace the file's content by the current pid (after [`daemonize`]).
    pub fn write_current_pid(&mut self) -> io::Result<()> {
        let f: &mut File = &mut self.file;
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        f.sync_all()
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove the file only if it is still ours (not replaced meanwhile);
        // unlink before the lock is released.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the open `file` is what `path` currently names.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The pid written in a pid file, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&p| p > 0)
}

/// Detach from the terminal: fork (the parent exits 0 at once), `setsid`,
/// `chdir("/")`, and stdin/stdout/stderr to `/dev/null`.
///
/// This is `daemon(3)` (through `nix::unistd::daemon`), a single fork plus
/// `setsid`. The classic second fork only matters for a process that later
/// opens a terminal without `O_NOCTTY`; knockd never opens terminals, and
/// `daemon(3)` needs no `unsafe` code here.
///
/// Must be called **before any thread exists**: only the calling thread
/// survives a fork, so threads (a reverse-lookup worker, a signal thread)
/// and the locks they hold would be lost. Do everything that can fail
/// before calling it, because the starting process has already exited 0.
pub fn daemonize() -> nix::Result<()> {
    nix::unistd::daemon(false, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// A fresh temporary directory and the pid file path inside it (the
    /// directory lives as long as the returned guard).
    fn pid_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knockd.pid");
        (dir, path)
    }

    /// Asserts that `path` holds exactly our pid and a newline.
    fn assert_holds_our_pid(path: &Path) {
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    /// Drops `pf` and asserts that its file is gone.
    fn assert_removed_on_drop(pf: PidFile, path: &Path) {
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn writes_pid_and_removes_on_drop() {
        let (_dir, path) = pid_path();
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(pf.path(), path);
        assert_holds_our_pid(&path);
        assert_removed_on_drop(pf, &path);
    }

    #[test]
    fn second_instance_is_refused_while_first_lives() {
        let (_dir, path) = pid_path();
        let first = PidFile::create(&path).unwrap();
        let err = PidFile::create(&path).unwrap_err();
        match &err {
            PidFileError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "another knockd is running (pid {})",
                std::process::id()
            )),
            "{msg}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        // The refused attempt must leave the first one's file alone.
        assert_holds_our_pid(&path);
        // Another process sees the lock too.
        let st = Command::new("flock")
            .arg("-n")
            .arg(&path)
            .arg("true")
            .status()
            .unwrap();
        assert!(!st.success());
        assert_removed_on_drop(first, &path);
        let again = PidFile::create(&path).unwrap();
        drop(again);
    }

    #[test]
    fn stale_file_is_taken_over() {
        let (_dir, path) = pid_path();
        std::fs::write(&path, "999999999\nleft over by a crash\n").unwrap();
        let pf = PidFile::create(&path).unwrap();
        assert_holds_our_pid(&path);
        assert_removed_on_drop(pf, &path);
    }

    #[test]
    fn lock_held_by_other_process_with_garbage_content() {
        let (dir, path) = pid_path();
        std::fs::write(&path, "not a pid\n").unwrap();
        let ready = dir.path().join("ready");
        let mut holder = Command::new("flock")
            .arg("-n")
            .arg(&path)
            .arg("-c")
            .arg(format!("touch {}; sleep 30", ready.display()))
            .process_group(0)
            .spawn()
            .unwrap();
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ready.exists() && std::time::Instant::now() < limit {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let err = PidFile::create(&path).unwrap_err();
        // flock runs the shell as its child: kill the whole group.
        let holder_pid = nix::unistd::Pid::from_raw(holder.id() as i32);
        let _ = nix::sys::signal::killpg(holder_pid, nix::sys::signal::Signal::SIGKILL);
        let _ = holder.wait();
        assert!(
            matches!(err, PidFileError::Locked { pid: None, .. }),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("another knockd is running (pid unknown)"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a pid\n");
    }

    #[test]
    fn unwritable_location_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("knockd.pid");
        let err = PidFile::create(&path).unwrap_err();
        assert!(matches!(err, PidFileError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn replaced_file_is_not_removed() {
        let (_dir, path) = pid_path();
        let pf = PidFile::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's\n").unwrap();
        drop(pf);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's\n");
    }
}
