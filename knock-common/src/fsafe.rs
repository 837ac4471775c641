//! Opening files that others might have prepared: the one place that decides
//! which files a (root) process may write to and which it may trust to read.
//!
//! Rules, in the style of OpenSSH's `StrictModes`, and independent of the
//! kernel's `fs.protected_symlinks` / `fs.protected_hardlinks` settings:
//!
//! * **Writing** (pid file, log file, `knock-gen --append`): the last
//!   component of the path is opened with `O_NOFOLLOW`. A symbolic link there
//!   is followed only when the link itself is owned by root or by the
//!   effective user (what `protected_symlinks` allows in a sticky directory);
//!   the link is inspected through an `O_PATH` descriptor, so it cannot be
//!   swapped between the check and the read of its target. At most
//!   [`MAX_LINKS`] links are followed. The opened file is then checked with
//!   `fstat` (never by name again): it must be a regular file, owned by the
//!   effective user, not writable by group or others, and have a single hard
//!   link. A file is never truncated before it passed these checks.
//! * **Reading** trusted input (configuration, one-time sequence files, key
//!   files): the opened file must be owned by root or the effective user and
//!   not writable by group or others; anybody else could change what the
//!   daemon runs or accepts.
//!
//! Every refusal is a [`FileError`] naming the file and a typed [`Refusal`].
//! Cost: one `open` and one `fstat` per file, plus an `open(O_PATH)` and a
//! `readlinkat` per trusted link followed.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most symbolic links followed (each one trusted) when opening a file
/// for writing.
pub const MAX_LINKS: usize = 8;

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing to follow a symbolic link owned by uid {owner} \
         (only links owned by root or uid {euid} are followed)"
    )]
    UntrustedSymlink { owner: u32, euid: u32 },
    #[error("refusing to follow more than {MAX_LINKS} symbolic links")]
    TooManyLinks,
    #[error("refusing a file that is not a regular file")]
    NotRegular,
    #[error("refusing a file owned by uid {owner} (it must be owned by {expected})")]
    Owner { owner: u32, expected: Expected },
    #[error("refusing a file writable by group or others (mode {mode:04o}; chmod go-w fixes it)")]
    WritableByOthers { mode: u32 },
    #[error("refusing a file with {links} hard links (another name may point at it)")]
    HardLinks { links: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Who must own a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The effective user exactly (files written).
    Euid(u32),
    /// Root or the effective user (files read).
    RootOrEuid(u32),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Euid(u) => write!(f, "uid {u}"),
            Expected::RootOrEuid(0) => write!(f, "root"),
            Expected::RootOrEuid(u) => write!(f, "root or uid {u}"),
        }
    }
}

impl Refusal {
    /// An `io::Error` carrying this refusal (without a path), for callers
    /// whose own error type adds the path.
    pub fn into_io(self) -> io::Error {
        match self {
            Refusal::Io(e) => e,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other),
        }
    }
}

/// A file refused, or that could not be opened: `PATH: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub reason: Refusal,
}

impl FileError {
    fn new(path: &Path, reason: impl Into<Refusal>) -> Self {
        FileError {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The `io::ErrorKind` of an I/O failure (`NotFound`, ...), or
    /// `PermissionDenied` for a refusal.
    pub fn kind(&self) -> io::ErrorKind {
        match &self.reason {
            Refusal::Io(e) => e.kind(),
            _ => io::ErrorKind::PermissionDenied,
        }
    }
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The write-side rule on an opened file's metadata.
pub fn check_writable_meta(meta: &Metadata, euid: u32) -> Result<(), Refusal> {
    if !meta.file_type().is_file() {
        return Err(Refusal::NotRegular);
    }
    if meta.uid() != euid {
        return Err(Refusal::Owner {
            owner: meta.uid(),
            expected: Expected::Euid(euid),
        });
    }
    check_mode_and_links(meta)
}

fn check_mode_and_links(meta: &Metadata) -> Result<(), Refusal> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Refusal::WritableByOthers { mode });
    }
    if meta.nlink() > 1 {
        return Err(Refusal::HardLinks {
            links: meta.nlink(),
        });
    }
    Ok(())
}

/// The read-side rule on an opened file's metadata: owned by root or
/// `euid`, not writable by group or others.
pub fn check_readable_meta(meta: &Metadata, euid: u32) -> Result<(), Refusal> {
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(Refusal::Owner {
            owner: meta.uid(),
            expected: Expected::RootOrEuid(euid),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Refusal::WritableByOthers { mode });
    }
    Ok(())
}

/// Check an opened configuration, one-time sequence or key file before
/// trusting what it says (see the module rules). `path` names it in the error.
pub fn check_readable_config(file: &File, path: &Path) -> Result<(), FileError> {
    let meta = file.metadata().map_err(|e| FileError::new(path, e))?;
    check_readable_meta(&meta, euid()).map_err(|r| FileError::new(path, r))
}

/// How a file is opened for writing.
#[derive(Debug, Clone, Copy)]
struct Access {
    read: bool,
    append: bool,
}

/// Open `path` for writing under the write-side rules, creating it with
/// `mode` (less the umask) when missing.
fn open_for_writing(path: &Path, access: Access, mode: u32) -> Result<File, FileError> {
    let euid = euid();
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let opened = OpenOptions::new()
            .read(access.read)
            .write(true)
            .append(access.append)
            .create(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&current);
        match opened {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| FileError::new(&current, e))?;
                check_writable_meta(&meta, euid).map_err(|r| FileError::new(&current, r))?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                current = trusted_link_target(&current, euid, e)?;
            }
            Err(e) => return Err(FileError::new(&current, e)),
        }
    }
    Err(FileError::new(path, Refusal::TooManyLinks))
}

/// `path` is a symbolic link (or has too many levels of them, `eloop`):
/// where it points, when the link is owned by root or `euid`.
fn trusted_link_target(path: &Path, euid: u32, eloop: io::Error) -> Result<PathBuf, FileError> {
    // O_PATH | O_NOFOLLOW: a descriptor for the link itself, so the owner
    // checked and the target read are those of the same link.
    let link = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| FileError::new(path, e))?;
    let meta = link.metadata().map_err(|e| FileError::new(path, e))?;
    if !meta.file_type().is_symlink() {
        // ELOOP came from a directory further up the path.
        return Err(FileError::new(path, eloop));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(FileError::new(
            path,
            Refusal::UntrustedSymlink {
                owner: meta.uid(),
                euid,
            },
        ));
    }
    let target =
        nix::fcntl::readlinkat(&link, "").map_err(|e| FileError::new(path, io::Error::from(e)))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    Ok(dir.join(target))
}

/// Open `path` write-only for appending (a log file), creating it with
/// `mode` when missing. Refuses untrusted symbolic links and files that are
/// not regular, not owned by the effective user, writable by group or
/// others, or hard-linked elsewhere.
pub fn open_for_append_safely(path: &Path, mode: u32) -> Result<File, FileError> {
    open_for_writing(
        path,
        Access {
            read: false,
            append: true,
        },
        mode,
    )
}

/// Like [`open_for_append_safely`], but also readable (an appender that
/// looks at the end of the file first, such as `knock-gen --append`).
pub fn open_for_read_append_safely(path: &Path, mode: u32) -> Result<File, FileError> {
    open_for_writing(
        path,
        Access {
            read: true,
            append: true,
        },
        mode,
    )
}

/// Open `path` for reading and writing without truncating it (a pid file,
/// which is locked before it is emptied), creating it with `mode` when
/// missing, under the same rules as [`open_for_append_safely`].
pub fn open_for_update_safely(path: &Path, mode: u32) -> Result<File, FileError> {
    open_for_writing(
        path,
        Access {
            read: true,
            append: false,
        },
        mode,
    )
}

/// Open `path` for writing from the start, creating it with
/// `mode` when missing, under the same rules as [`open_for_append_safely`].
/// The file is truncated only after it passed the checks. (Only the
/// tests of the common rules use it.)
#[cfg(test)]
pub fn create_or_truncate_safely(path: &Path, mode: u32) -> Result<File, FileError> {
    let file = open_for_writing(
        path,
        Access {
            read: false,
            append: false,
        },
        mode,
    )?;
    file.set_len(0).map_err(|e| FileError::new(path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    const NOBODY: u32 = 65534;

    fn running_as_root() -> bool {
        euid() == 0
    }

    /// A fresh directory and the paths of `names` in it (nothing created).
    fn in_tempdir<const N: usize>(names: [&str; N]) -> (tempfile::TempDir, [PathBuf; N]) {
        let dir = tempfile::tempdir().unwrap();
        let paths = names.map(|n| dir.path().join(n));
        (dir, paths)
    }

    /// [`in_tempdir`] when running as root (only root can give a file to
    /// another user); otherwise `None`, after saying why the test is skipped.
    fn root_tempdir<const N: usize>(
        to: &str,
        names: [&str; N],
    ) -> Option<(tempfile::TempDir, [PathBuf; N])> {
        if !running_as_root() {
            eprintln!("needs root to {to}");
            return None;
        }
        Some(in_tempdir(names))
    }

    /// Give `path` itself (a link, not its target) to `nobody`.
    fn give_to_nobody(path: &Path) {
        std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn creates_a_missing_file_and_appends() {
        let (_dir, [p]) = in_tempdir(["log"]);
        open_for_append_safely(&p, 0o600)
            .unwrap()
            .write_all(b"one\n")
            .unwrap();
        open_for_append_safely(&p, 0o600)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn truncates_only_an_acceptable_file() {
        let (_dir, [p]) = in_tempdir(["pid"]);
        write(&p, "old contents\n", 0o644);
        create_or_truncate_safely(&p, 0o644)
            .unwrap()
            .write_all(b"42\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "42\n");

        write(&p, "kept\n", 0o664);
        let e = create_or_truncate_safely(&p, 0o644).unwrap_err();
        assert!(
            matches!(e.reason, Refusal::WritableByOthers { mode: 0o664 }),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kept\n");
        assert!(e.to_string().starts_with(&format!("{}: ", p.display())));
        assert!(e.to_string().contains("writable by group or others"), "{e}");
    }

    #[test]
    fn refuses_a_symlink_owned_by_another_user_and_leaves_the_target() {
        let Some((_dir, [target, link])) =
            root_tempdir("chown a link to nobody", ["secret", "pid"])
        else {
            return;
        };
        write(&target, "root only\n", 0o600);
        symlink(&target, &link).unwrap();
        give_to_nobody(&link);
        for e in [
            create_or_truncate_safely(&link, 0o644).unwrap_err(),
            open_for_append_safely(&link, 0o600).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e.reason,
                    Refusal::UntrustedSymlink {
                        owner: NOBODY,
                        euid: 0
                    }
                ),
                "{e}"
            );
            assert_eq!(e.path, link);
            assert!(e.to_string().contains("symbolic link owned by uid 65534"));
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root only\n");
    }

    #[test]
    fn follows_a_link_of_its_own_user() {
        let (_dir, [real, link]) = in_tempdir(["real.log", "knockd.log"]);
        symlink("real.log", &link).unwrap();
        open_for_append_safely(&link, 0o600)
            .unwrap()
            .write_all(b"x\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "x\n");
    }

    #[test]
    fn a_link_loop_is_an_error_not_a_hang() {
        let (_dir, [a, b]) = in_tempdir(["a", "b"]);
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        let e = open_for_append_safely(&a, 0o600).unwrap_err();
        assert!(matches!(e.reason, Refusal::TooManyLinks), "{e}");
    }

    #[test]
    fn refuses_a_file_owned_by_another_user() {
        let Some((_dir, [p])) = root_tempdir("chown a file to nobody", ["log"]) else {
            return;
        };
        write(&p, "theirs\n", 0o644);
        give_to_nobody(&p);
        let e = open_for_append_safely(&p, 0o600).unwrap_err();
        assert!(
            matches!(
                e.reason,
                Refusal::Owner {
                    owner: NOBODY,
                    expected: Expected::Euid(0)
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "theirs\n");
        // ... and the read side refuses it as configuration.
        let f = File::open(&p).unwrap();
        let e = check_readable_config(&f, &p).unwrap_err();
        assert!(e.to_string().contains("must be owned by root"), "{e}");
    }

    #[test]
    fn refuses_a_hard_linked_file_and_what_is_not_a_regular_file() {
        let (dir, [p, other]) = in_tempdir(["log", "other"]);
        write(&p, "", 0o600);
        std::fs::hard_link(&p, other).unwrap();
        let e = open_for_append_safely(&p, 0o600).unwrap_err();
        assert!(matches!(e.reason, Refusal::HardLinks { links: 2 }), "{e}");

        let e = open_for_append_safely(dir.path(), 0o600).unwrap_err();
        assert!(matches!(e.reason, Refusal::Io(_)), "{e}");
    }

    #[test]
    fn read_side_accepts_private_and_world_readable_refuses_writable() {
        let (_dir, [p]) = in_tempdir(["knockd.conf"]);
        for ok in [0o600, 0o644, 0o400] {
            write(&p, "", ok);
            check_readable_config(&File::open(&p).unwrap(), &p).unwrap();
        }
        for bad in [0o620, 0o602, 0o666] {
            write(&p, "", bad);
            let e = check_readable_config(&File::open(&p).unwrap(), &p).unwrap_err();
            assert!(matches!(e.reason, Refusal::WritableByOthers { mode } if mode == bad));
        }
    }

    #[test]
    fn rules_for_a_non_root_effective_user() {
        // A root-owned file is trusted input for any user but is not theirs
        // to write.
        let (_dir, [p]) = in_tempdir(["f"]);
        write(&p, "", 0o644);
        let meta = std::fs::metadata(&p).unwrap();
        let mine = meta.uid();
        let other = if mine == NOBODY { 1 } else { NOBODY };
        check_writable_meta(&meta, mine).unwrap();
        check_readable_meta(&meta, mine).unwrap();
        assert!(check_writable_meta(&meta, other).is_err());
        assert_eq!(check_readable_meta(&meta, other).is_ok(), mine == 0);
    }

    #[test]
    fn refusals_are_permission_denied_io_errors() {
        let e = Refusal::WritableByOthers { mode: 0o666 }.into_io();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("writable by group or others"));
    }
}
