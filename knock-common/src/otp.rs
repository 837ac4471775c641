//! One-time sequence files.
//!
//! One sequence per line in `Sequence` syntax. Blank lines and lines whose
//! first non-blank character is `#` are skipped; a line that does not parse
//! is skipped with a warning. The *current* sequence is the first usable
//! line. A used line is marked by overwriting its first byte with `#` and
//! flushing the file to disk, so a used sequence can never work again, even
//! after a crash. Lines are written with a leading space so that the mark
//! never destroys a digit.
//!
//! The file is re-read whenever it is needed, never held open at an offset,
//! so appending to it while a daemon uses it is safe.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sequence::{Sequence, SequenceError};

/// A usable line of a one-time file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpLine {
    /// 1-based line number.
    pub line_no: usize,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The raw line, without its line terminator.
    pub raw: Vec<u8>,
    pub sequence: Sequence,
}

/// A line that is neither blank, a comment nor a valid sequence.
///
/// The line itself is secret (it may be a sequence with a typo), so a
/// warning names it by number only: [`OtpWarning::reason`] and the
/// `Display` form never quote it, nor the offending part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpWarning {
    pub line_no: usize,
    /// Why the line does not parse. Its `Display` quotes the bad part: for
    /// tests, never for logs.
    pub error: SequenceError,
}

impl OtpWarning {
    /// Why the line is skipped, without quoting any of it.
    pub fn reason(&self) -> &'static str {
        match self.error {
            SequenceError::Empty => "the sequence is empty",
            SequenceError::EmptyItem => {
                "empty item in the sequence (two commas in a row, or a trailing comma)"
            }
            SequenceError::BadPort(_) => "a port is not a number between 1 and 65535",
            SequenceError::BadProto(_) => "a protocol is neither tcp nor udp",
        }
    }
}

impl std::fmt::Display for OtpWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line_no, self.reason())
    }
}

/// What a scan of a one-time file found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OtpScan {
    /// Every usable line, in file order; the first is the current one.
    pub usable: Vec<OtpLine>,
    /// Lines that did not parse.
    pub warnings: Vec<OtpWarning>,
    /// Number of lines already marked used or commented out.
    pub used: usize,
}

impl OtpScan {
    /// The current sequence: the first usable line.
    pub fn current(&self) -> Option<&OtpLine> {
        self.usable.first()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line_no}: the line changed on disk before it could be marked used", path.display())]
    Changed { path: PathBuf, line_no: usize },
}

/// `map_err` adapter naming the file: `.map_err(io_err(path))?`. The one
/// place an I/O error on a sequence file becomes an error value (`knock-gen`
/// uses it too).
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OtpError + '_ {
    move |source| OtpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Split `bytes` into lines: (1-based number, offset, line without `\n`).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, u64, &[u8])> {
    let mut offset = 0usize;
    let mut n = 0usize;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let rest = &bytes[offset..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        let start = offset;
        offset += end + 1;
        n += 1;
        Some((n, start as u64, line))
    })
}

/// Scan the contents of a one-time file. Pure: never fails, never panics.
pub fn scan_bytes(bytes: &[u8]) -> OtpScan {
    let mut scan = OtpScan::default();
    for (line_no, offset, raw) in lines(bytes) {
        let text = String::from_utf8_lossy(raw);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('#') {
            scan.used += 1;
            continue;
        }
        match trimmed.parse::<Sequence>() {
            Ok(sequence) => scan.usable.push(OtpLine {
                line_no,
                offset,
                raw: raw.to_vec(),
                sequence,
            }),
            Err(error) => scan.warnings.push(OtpWarning { line_no, error }),
        }
    }
    scan
}

/// Every sequence in the file, used or not (a used line is read with its
/// `#` mark taken off). For keeping newly generated sequences unique.
pub fn all_sequences_bytes(bytes: &[u8]) -> Vec<Sequence> {
    lines(bytes)
        .filter_map(|(_, _, raw)| {
            let text = String::from_utf8_lossy(raw);
            let t = text.trim();
            let t = t.strip_prefix('#').unwrap_or(t);
            t.parse::<Sequence>().ok()
        })
        .collect()
}

/// Largest one-time file [`scan`] reads (a million generated lines of
/// five hits take about 40 MB).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Open a one-time file, to read it or (`write`) to mark a line in it: it
/// must be a regular file owned by root or the effective user and not
/// writable by group or others ([`crate::fsafe::check_readable_meta`]),
/// whoever may change it may choose what opens the door. Anything else (a
/// FIFO, a device such as `/dev/zero`, a directory) is an error instead of
/// a read that blocks forever or never ends. The open does not block either
/// (`O_NONBLOCK`, which does not affect regular files).
fn open_trusted(path: &Path, write: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    crate::fsafe::check_readable_meta(&meta, nix::unistd::geteuid().as_raw())
        .map_err(crate::fsafe::Refusal::into_io)?;
    Ok(file)
}

/// Read a one-time file (see [`open_trusted`]) of at most
/// [`MAX_FILE_BYTES`].
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let file = open_trusted(path, false)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Read and scan a one-time file (a regular file; see [`read_regular`]).
pub fn scan(path: &Path) -> Result<OtpScan, OtpError> {
    let bytes = read_regular(path).map_err(io_err(path))?;
    Ok(scan_bytes(&bytes))
}

/// Mark `line` used: overwrite its first byte with `#` and flush the file to
/// disk before returning. Fails with [`OtpError::Changed`] when the line on
/// disk is no longer the one that was scanned (the file was edited), so a
/// wrong line is never marked.
pub fn mark_used(path: &Path, line: &OtpLine) -> Result<(), OtpError> {
    let err = io_err(path);
    let mut file = open_trusted(path, true).map_err(io_err(path))?;
    let mut on_disk = vec![0u8; line.raw.len()];
    file.seek(SeekFrom::Start(line.offset))
        .and_then(|_| file.read_exact(&mut on_disk))
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => OtpError::Changed {
                path: path.to_path_buf(),
                line_no: line.line_no,
            },
            _ => io_err(path)(e),
        })?;
    if on_disk != line.raw || on_disk.is_empty() {
        return Err(OtpError::Changed {
            path: path.to_path_buf(),
            line_no: line.line_no,
        });
    }
    file.seek(SeekFrom::Start(line.offset))
        .and_then(|_| file.write_all(b"#"))
        .and_then(|_| file.sync_all())
        .map_err(err)
}

/// The text of one line as written to a one-time file: a leading space, the
/// canonical sequence, a newline.
pub fn format_line(seq: &Sequence) -> String {
    format!(" {seq}\n")
}

/// The text of a whole file of sequences.
pub fn render(seqs: &[Sequence]) -> String {
    seqs.iter().map(format_line).collect()
}

/// Append sequences to a one-time file, creating it with mode 0600 when it
/// does not exist. The file is opened under the write rules of
/// [`crate::fsafe`] (no untrusted symlink, a regular file of the effective
/// user's that nobody else may write). Existing lines are never rewritten; a missing final
/// newline is added first so the last old line stays intact. Flushed to disk
/// before returning.
pub fn append(path: &Path, seqs: &[Sequence]) -> Result<(), OtpError> {
    // No untrusted symlink, only a regular file of our own that nobody else
    // may write (see `fsafe`).
    let mut file = crate::fsafe::open_for_read_append_safely(path, 0o600)
        .map_err(|e| io_err(path)(e.reason.into_io()))?;
    let mut text = String::new();
    if needs_newline(&mut file).map_err(io_err(path))? {
        text.push('\n');
    }
    text.push_str(&render(seqs));
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io_err(path))
}

fn needs_newline(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    /// Scan `f`, mark its current line used, and return the file's bytes.
    fn mark_current(f: &tempfile::NamedTempFile) -> Vec<u8> {
        let s = scan(f.path()).unwrap();
        mark_used(f.path(), s.current().unwrap()).unwrap();
        std::fs::read(f.path()).unwrap()
    }

    #[test]
    fn finds_first_usable_line_and_warns_on_garbage() {
        let content = b"# comment\n\n#7000,8000\n 80x,9000\n 1000:udp,2000\n 3000\n";
        let s = scan_bytes(content);
        let cur = s.current().unwrap();
        assert_eq!(cur.line_no, 5);
        assert_eq!(cur.sequence.to_string(), "1000:udp,2000:tcp");
        assert_eq!(s.usable.len(), 2);
        assert_eq!(s.used, 2);
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(s.warnings[0].line_no, 4);
        assert_eq!(s.warnings[0].error, SequenceError::BadPort("80x".into()));
        // Never quotes the line, nor the bad part of it.
        let text = s.warnings[0].to_string();
        assert_eq!(text, "line 4: a port is not a number between 1 and 65535");
        assert!(!text.contains("80x") && !text.contains("9000"));
    }

    #[test]
    fn marking_is_durable_and_touches_only_that_byte() {
        let f = write(b" 1000,2000\n 3000,4000\n 5000\n");
        assert_eq!(mark_current(&f), b"#1000,2000\n 3000,4000\n 5000\n");
        let s = scan(f.path()).unwrap();
        assert_eq!(
            s.current().unwrap().sequence.to_string(),
            "3000:tcp,4000:tcp"
        );
        assert_eq!(mark_current(&f), b"#1000,2000\n#3000,4000\n 5000\n");
    }

    #[test]
    fn line_without_leading_space_loses_first_digit_like_classic() {
        let f = write(b"7000,8000\n");
        assert_eq!(mark_current(&f), b"#000,8000\n");
        assert!(scan(f.path()).unwrap().current().is_none());
    }

    #[test]
    fn file_without_final_newline() {
        let f = write(b" 1000\n 2000,3000:udp");
        let s = scan(f.path()).unwrap();
        assert_eq!(s.usable.len(), 2);
        mark_used(f.path(), &s.usable[1]).unwrap();
        assert_eq!(std::fs::read(f.path()).unwrap(), b" 1000\n#2000,3000:udp");
        append(f.path(), &["4000".parse().unwrap()]).unwrap();
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            b" 1000\n#2000,3000:udp\n 4000:tcp\n"
        );
    }

    #[test]
    fn file_of_only_used_lines_has_no_current() {
        let f = write(b"#1000\n#2000\n# note\n");
        let s = scan(f.path()).unwrap();
        assert!(s.current().is_none());
        assert_eq!(s.used, 3);
        assert_eq!(all_sequences_bytes(b"#1000\n#2000\n# note\n").len(), 2);
    }

    #[test]
    fn crlf_lines_are_accepted() {
        let s = scan_bytes(b" 1000,2000\r\n 3000\r\n");
        assert_eq!(s.usable.len(), 2);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn refuses_to_mark_a_changed_line() {
        let f = write(b" 1000\n 2000\n");
        let s = scan(f.path()).unwrap();
        std::fs::write(f.path(), b" 9999\n 2000\n").unwrap();
        let e = mark_used(f.path(), s.current().unwrap()).unwrap_err();
        assert!(matches!(e, OtpError::Changed { line_no: 1, .. }), "{e}");
        assert_eq!(std::fs::read(f.path()).unwrap(), b" 9999\n 2000\n");
        std::fs::write(f.path(), b"").unwrap();
        let e = mark_used(f.path(), s.current().unwrap()).unwrap_err();
        assert!(matches!(e, OtpError::Changed { .. }), "{e}");
    }

    /// A line is marked only in a file that passes the same checks as the
    /// read: the path swapped for a FIFO, or made writable by others,
    /// between the scan and the mark is refused and left as it is.
    #[test]
    fn marking_refuses_a_file_that_the_read_would_refuse() {
        use std::os::unix::fs::PermissionsExt;
        let f = write(b" 1000\n 2000\n");
        let line = scan(f.path()).unwrap().current().unwrap().clone();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o646)).unwrap();
        let e = mark_used(f.path(), &line).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert_eq!(std::fs::read(f.path()).unwrap(), b" 1000\n 2000\n");

        let (_dir, fifo) = temp_fifo();
        let e = mark_used(&fifo, &line).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn append_refuses_what_is_not_a_regular_file() {
        let (_dir, fifo) = temp_fifo();
        let e = append(&fifo, &["1000".parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = append(Path::new("/dev/null"), &["1000".parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    /// A FIFO named `fifo` in a new temporary directory (removed when the
    /// returned directory is dropped).
    fn temp_fifo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo {}", fifo.display());
        (dir, fifo)
    }

    #[test]
    fn append_creates_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seqs");
        append(&p, &["1000,2000:udp".parse().unwrap()]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), " 1000:tcp,2000:udp\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = scan(Path::new("/nonexistent/knock-otp")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/knock-otp: "), "{e}");
    }

    #[test]
    fn fifo_device_and_directory_are_refused_without_blocking() {
        let (dir, fifo) = temp_fifo();
        // Without O_NONBLOCK and the type check this open would wait for a
        // writer forever.
        for p in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            let e = scan(p).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with(&format!("{}: ", p.display())), "{text}");
            if p != dir.path() {
                assert!(text.contains("not a regular file"), "{text}");
            }
        }
    }

    #[test]
    fn oversized_file_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = scan(f.path()).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        f.as_file().set_len(MAX_FILE_BYTES).unwrap();
        assert!(scan(f.path()).unwrap().usable.is_empty());
    }
}
