//! Rotating (time-based) sequences: the key file and the derivation.
//!
//! The derivation is fixed (also given in `knockd.conf(5)` and checked by
//! the test vectors below, which never change), so that third-party
//! clients can implement it; this module is its only implementation in the
//! suite (`knockd`, `knock` and `knock-gen` all call it):
//!
//! ```text
//! T      = floor(unix_time / period)
//! msg    = "knock-seq-v1" 0x00 DOOR(UTF-8) 0x00 T(8 bytes, big-endian) [ADDR(4|16 bytes)]
//! stream = HMAC-SHA256(key, msg || i(4 bytes, big-endian)), i = 0, 1, 2, ...
//! ports  : 2 stream bytes at a time as big-endian v; n = HI - LO + 1;
//!          skip v >= 65536 - (65536 mod n); port = LO + (v mod n);
//!          skip a port already chosen; stop at `length` ports
//! ```
//!
//! Rejecting `v >= 65536 - (65536 mod n)` makes every port of the range
//! exactly equally likely (no modulo bias); skipping repeats makes the
//! ports of one sequence distinct, so a sequence of length L drawn from n
//! ports is one of n·(n-1)···(n-L+1) equally likely ordered choices.
//!
//! Key file rules: the key is the base32 text (RFC 4648 alphabet,
//! case-insensitive, spaces, tabs and `=` ignored, non-zero trailing bits
//! ignored) on the first line that is neither blank nor a `#` comment, and it
//! decodes to at least [`MIN_KEY_BYTES`] bytes. The file must be a regular
//! file that neither group nor others may read or write (`mode & 0o077 == 0`);
//! it is read with a bound ([`MAX_KEY_FILE_BYTES`]). No error message and no
//! `Debug` output ever contains the key or the file's text.
//!
//! Cost: one derivation is `ceil(2·L·(1+ε)/32)` HMAC-SHA256 blocks, i.e. one
//! block for the default length 3; callers compute a window's sequence once
//! per window, not per packet.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// Default `Sequence_Length`.
pub const DEFAULT_LENGTH: usize = 3;
/// Default `Sequence_Period`, in seconds.
pub const DEFAULT_PERIOD: u64 = 30;
/// Default `Sequence_Skew`, in windows on either side of the current one.
pub const DEFAULT_SKEW: u64 = 1;
/// Default `Sequence_Ports`.
pub const DEFAULT_RANGE: PortRange = PortRange {
    lo: 1024,
    hi: 65535,
};
/// Longest allowed `Sequence_Length`.
pub const MAX_LENGTH: usize = 16;
/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// Size of a key written by [`Key::generate`], in bytes.
pub const GENERATED_KEY_BYTES: usize = 32;
/// Largest key file read; a longer file is refused, not truncated.
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Domain-separation label at the start of every HMAC message.
const LABEL: &[u8] = b"knock-seq-v1";

/// A secret key. Its bytes never appear in `Debug` output, and it has no
/// `Display`; they are wiped from memory when the key is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Why a key text or key file was refused. Never carries the key or the
/// file's text.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no key: every line is blank or a '#' comment")]
    Empty,
    #[error("line {line_no}: the key is not valid base32 (RFC 4648 alphabet A-Z, 2-7)")]
    NotBase32 { line_no: usize },
    #[error("line {line_no}: the key is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { line_no: usize, len: usize },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error(
        "{}: mode {mode:04o} lets group or others read or write the key; run chmod 600 {}",
        path.display(),
        path.display()
    )]
    Permissive { path: PathBuf, mode: u32 },
    #[error("{}: larger than {MAX_KEY_FILE_BYTES} bytes; not a key file", path.display())]
    TooLarge { path: PathBuf },
    /// Owned by another user: whoever owns it decides what opens the door.
    #[error("{}: {reason}", path.display())]
    Untrusted {
        path: PathBuf,
        reason: crate::fsafe::Refusal,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<KeyError>,
    },
}

/// The base32 dialect of key files: RFC 4648 alphabet, lower case accepted,
/// no padding required, non-canonical trailing bits accepted. Spaces, tabs
/// and `=` are removed before decoding.
fn base32_lenient() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.check_trailing_bits = false;
    // The specification is a constant and valid; fall back to the strict
    // codec rather than panic should that ever change.
    spec.encoding()
        .unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
}

impl Key {
    /// Parse a key file's text (see the module doc for the rules).
    pub fn parse(text: &str) -> Result<Key, KeyError> {
        let (line_no, line) = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .ok_or(KeyError::Empty)?;
        let mut cleaned: Vec<u8> = line
            .bytes()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'='))
            .collect();
        let decoded = base32_lenient().decode(&cleaned);
        cleaned.zeroize();
        let mut bytes = decoded.map_err(|_| KeyError::NotBase32 { line_no })?;
        if bytes.len() < MIN_KEY_BYTES {
            let len = bytes.len();
            bytes.zeroize();
            return Err(KeyError::TooShort { line_no, len });
        }
        Ok(Key(bytes))
    }

    /// Read and parse a key file. Refused: anything but a regular file, a
    /// file group or others may read or write, a file larger than
    /// [`MAX_KEY_FILE_BYTES`]. The open never blocks (`O_NONBLOCK`, so a FIFO
    /// is refused instead of waited on).
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(KeyError::NotRegular {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissive {
                path: path.to_path_buf(),
                mode,
            });
        }
        // Besides the mode: owned by root or the user reading it (the rule
        // for every file trusted as input, `fsafe`).
        crate::fsafe::check_readable_meta(&meta, nix::unistd::geteuid().as_raw()).map_err(
            |reason| KeyError::Untrusted {
                path: path.to_path_buf(),
                reason,
            },
        )?;
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            bytes.zeroize();
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => Key::parse(text),
            Err(e) => {
                // Report the line of the first invalid byte, not the bytes.
                let line_no = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                Err(KeyError::NotBase32 { line_no })
            }
        };
        bytes.zeroize();
        parsed.map_err(|e| KeyError::Invalid {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// A new key of [`GENERATED_KEY_BYTES`] bytes from the operating
    /// system's CSPRNG.
    pub fn generate() -> Result<Key, getrandom::Error> {
        let mut bytes = vec![0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Key(bytes))
    }

    /// Build a key from raw bytes (at least [`MIN_KEY_BYTES`]).
    #[cfg(test)]
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                line_no: 0,
                len: bytes.len(),
            });
        }
        Ok(Key(bytes.to_vec()))
    }

    /// The key as canonical base32 (upper case, no padding), the format
    /// `knock-gen --secret` writes.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a key has at least [`MIN_KEY_BYTES`] bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An inclusive port range `LO-HI`, `1 <= LO <= HI <= 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// A checked range.
    pub fn new(lo: u16, hi: u16) -> Result<PortRange, RangeError> {
        if lo == 0 {
            return Err(RangeError::Zero);
        }
        if lo > hi {
            return Err(RangeError::Reversed { lo, hi });
        }
        Ok(PortRange { lo, hi })
    }

    /// Number of ports in the range (0 for a reversed range built by hand).
    pub fn size(&self) -> u32 {
        if self.hi < self.lo {
            0
        } else {
            u32::from(self.hi) - u32::from(self.lo) + 1
        }
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        DEFAULT_RANGE
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("port range {0:?} is not LO-HI (two ports between 1 and 65535, e.g. 1024-65535)")]
    Syntax(String),
    #[error("port range starts at 0; ports are 1 to 65535")]
    Zero,
    #[error("port range {lo}-{hi} is reversed (LO must not exceed HI)")]
    Reversed { lo: u16, hi: u16 },
}

impl FromStr for PortRange {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || RangeError::Syntax(s.to_string());
        let (lo, hi) = s.split_once('-').ok_or_else(syntax)?;
        let num = |t: &str| -> Result<u16, RangeError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            t.parse::<u16>().map_err(|_| syntax())
        };
        PortRange::new(num(lo)?, num(hi)?)
    }
}

/// The window number of `unix_secs`: `floor(unix_secs / period)`. A period
/// of 0 is treated as 1 (configuration refuses it; this never panics).
pub fn window(unix_secs: u64, period: u64) -> u64 {
    unix_secs / period.max(1)
}

/// Start of window `t`, in Unix seconds (saturating).
pub fn window_start(t: u64, period: u64) -> u64 {
    t.saturating_mul(period.max(1))
}

/// The sequence of door `door` in window `window`: `length` distinct ports
/// of `range`, in knock order. `bind` is the knocker's address with
/// `Sequence_Bind_Source = yes` (4 bytes for IPv4, 16 for IPv6, as seen on
/// the wire).
///
/// A `length` larger than the range is reduced to the range's size, and a
/// reversed range yields an empty sequence (configuration refuses both;
/// this never panics or loops forever on them).
pub fn derive(
    key: &Key,
    door: &str,
    window: u64,
    length: usize,
    range: PortRange,
    bind: Option<IpAddr>,
) -> Vec<u16> {
    Deriver::new(key).derive(door, window, length, range, bind)
}

/// [`derive`] with the key schedule of HMAC computed once: for callers that
/// derive many sequences with one key (a daemon serving source-bound doors
/// derives on each new knocker). Its `Debug` output hides the state.
#[derive(Clone)]
pub struct Deriver {
    /// HMAC-SHA256 keyed with the key, nothing absorbed yet.
    keyed: Option<Hmac<Sha256>>,
}

impl fmt::Debug for Deriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Deriver(<redacted>)")
    }
}

impl Deriver {
    pub fn new(key: &Key) -> Deriver {
        // Hmac accepts keys of any length; new_from_slice cannot fail.
        Deriver {
            keyed: Hmac::<Sha256>::new_from_slice(&key.0).ok(),
        }
    }

    /// The same as [`derive`] with this deriver's key.
    pub fn derive(
        &self,
        door: &str,
        window: u64,
        length: usize,
        range: PortRange,
        bind: Option<IpAddr>,
    ) -> Vec<u16> {
        let n = range.size();
        let length = length.min(n as usize);
        let mut ports: Vec<u16> = Vec::with_capacity(length);
        let Some(keyed) = self.keyed.as_ref().filter(|_| length > 0) else {
            return ports;
        };
        derive_into(
            keyed.clone(),
            door,
            window,
            length,
            n,
            range,
            bind,
            &mut ports,
        );
        ports
    }
}

#[allow(clippy::too_many_arguments)]
fn derive_into(
    mut base: Hmac<Sha256>,
    door: &str,
    window: u64,
    length: usize,
    n: u32,
    range: PortRange,
    bind: Option<IpAddr>,
    ports: &mut Vec<u16>,
) {
    base.update(LABEL);
    base.update(&[0]);
    base.update(door.as_bytes());
    base.update(&[0]);
    base.update(&window.to_be_bytes());
    match bind {
        Some(IpAddr::V4(a)) => base.update(&a.octets()),
        Some(IpAddr::V6(a)) => base.update(&a.octets()),
        None => {}
    }
    let limit = 65536 - (65536 % n);
    // Large sequences (only reachable through the API, not the
    // configuration) use a bitmap instead of a linear search.
    let mut seen = if length > 64 {
        vec![0u64; 1024]
    } else {
        Vec::new()
    };
    let mut block: u32 = 0;
    loop {
        let mut mac = base.clone();
        mac.update(&block.to_be_bytes());
        let out = mac.finalize().into_bytes();
        for pair in out.chunks_exact(2) {
            let v = u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            if v >= limit {
                continue;
            }
            // v % n < n <= 65535 - lo + 1, so the sum fits in a u16.
            let port = (u32::from(range.lo) + v % n) as u16;
            let dup = if seen.is_empty() {
                ports.contains(&port)
            } else {
                let (w, b) = (usize::from(port >> 6), port & 63);
                let d = seen[w] & (1 << b) != 0;
                seen[w] |= 1 << b;
                d
            };
            if dup {
                continue;
            }
            ports.push(port);
            if ports.len() == length {
                return;
            }
        }
        block = block.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const VECTOR_KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    fn key() -> Key {
        Key::parse(VECTOR_KEY).unwrap()
    }

    fn r(lo: u16, hi: u16) -> PortRange {
        PortRange::new(lo, hi).unwrap()
    }

    /// The published test vectors (fixed: third-party clients check
    /// themselves against them). Each failure names its vector.
    #[test]
    fn spec_vectors() {
        assert_eq!(key().len(), 30);
        let ports = |door, window, length, (lo, hi), bind: Option<&str>| {
            let bind = bind.map(|a| a.parse::<IpAddr>().unwrap());
            derive(&key(), door, window, length, r(lo, hi), bind)
        };
        assert_eq!(
            ports("ssh", 0, 3, (1024, 65535), None),
            [41210, 51433, 26957],
            "vector 1"
        );
        // Vectors 2 to 4: one request, unbound, then bound to an IPv4 and to
        // an IPv6 address.
        for (name, bind, want) in [
            ("2", None, [20695, 20353, 27983, 27106]),
            (
                "3 (IPv4 bind)",
                Some("192.0.2.7"),
                [29276, 28375, 22760, 22819],
            ),
            (
                "4 (IPv6 bind)",
                Some("2001:db8::7"),
                [23224, 28813, 23929, 26672],
            ),
        ] {
            let got = ports("ssh", 59_000_000, 4, (20000, 29999), bind);
            assert_eq!(got, want, "vector {name}");
        }
        assert_eq!(
            ports("web", 1, 8, (7000, 7009), None),
            [7005, 7003, 7009, 7000, 7002, 7008, 7006, 7001],
            "vector 5 (length near the range size)"
        );
    }

    #[test]
    fn window_number() {
        assert_eq!(window(0, 30), 0);
        assert_eq!(window(29, 30), 0);
        assert_eq!(window(30, 30), 1);
        assert_eq!(window(1_770_000_000, 30), 59_000_000);
        assert_eq!(window(17, 0), 17);
        assert_eq!(window_start(59_000_000, 30), 1_770_000_000);
    }

    #[test]
    fn base32_is_case_insensitive_and_ignores_spaces_and_padding() {
        let lower = VECTOR_KEY.to_lowercase();
        let spaced = "JBSW Y3DP\tEHPK 3PXP JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP";
        assert_eq!(Key::parse(&lower).unwrap(), key());
        assert_eq!(Key::parse(spaced).unwrap(), key());
        // 16 bytes = 26 symbols, padded to 32 with '='.
        let k16 = Key::from_bytes(&[7u8; 16]).unwrap();
        let b = k16.to_base32();
        assert_eq!(b.len(), 26);
        assert_eq!(Key::parse(&format!("{b}======")).unwrap(), k16);
        assert_eq!(Key::parse(&b).unwrap(), k16);
    }

    #[test]
    fn base32_takes_first_line_that_is_neither_blank_nor_comment() {
        let text = format!("\n   \n# a comment\n  #another\n  {VECTOR_KEY}  \nGARBAGE!!\n");
        assert_eq!(Key::parse(&text).unwrap(), key());
        assert!(matches!(Key::parse("\n# only\n  \n"), Err(KeyError::Empty)));
        assert!(matches!(Key::parse(""), Err(KeyError::Empty)));
    }

    #[test]
    fn base32_rejects_bad_symbols_and_lengths_with_the_line_number() {
        // '1', '8', '0' are not in the alphabet.
        let bad = format!("# c\n{}1", &VECTOR_KEY[..47]);
        match Key::parse(&bad) {
            Err(KeyError::NotBase32 { line_no }) => assert_eq!(line_no, 2),
            other => panic!("{other:?}"),
        }
        // A symbol count that no byte length produces (1, 3 or 6 mod 8).
        assert!(matches!(
            Key::parse(&VECTOR_KEY[..41]),
            Err(KeyError::NotBase32 { line_no: 1 })
        ));
        // Fifteen bytes is too short.
        let short = Key::from_bytes(&[1u8; 16]).unwrap().to_base32();
        let fifteen = data_encoding::BASE32_NOPAD.encode(&[1u8; 15]);
        assert!(Key::parse(&short).is_ok());
        match Key::parse(&fifteen) {
            Err(KeyError::TooShort {
                line_no: 1,
                len: 15,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let k = key();
        let dbg = format!("{k:?}");
        assert_eq!(dbg, "Key(<redacted>)");
        let bad = format!("{}!", VECTOR_KEY);
        let msg = Key::parse(&bad).unwrap_err().to_string();
        assert!(!msg.contains("JBSW"), "{msg}");
    }

    fn write_key(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn load_accepts_owner_only_modes() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o700] {
            let p = write_key(d.path(), "k", VECTOR_KEY, mode);
            assert_eq!(Key::load(&p).unwrap(), key(), "mode {mode:o}");
        }
    }

    #[test]
    fn load_refuses_group_or_other_access_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601] {
            let p = write_key(d.path(), "k", VECTOR_KEY, mode);
            let e = Key::load(&p).unwrap_err();
            assert!(matches!(e, KeyError::Permissive { .. }), "{mode:o}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(!msg.contains("JBSW"), "{msg}");
        }
    }

    /// As root (CI), a 0600 key owned by another user is refused too: its
    /// owner could change what opens the door.
    #[test]
    fn load_refuses_a_key_owned_by_another_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "needs root in CI"
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = write_key(d.path(), "k", VECTOR_KEY, 0o600);
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = Key::load(&p).unwrap_err();
        assert!(matches!(e, KeyError::Untrusted { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("65534"),
            "{msg}"
        );
    }

    #[test]
    fn load_refuses_non_regular_and_large_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Key::load(d.path()),
            Err(KeyError::NotRegular { .. })
        ));
        assert!(matches!(
            Key::load(&d.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
        let big = format!("{VECTOR_KEY}\n{}", "#".repeat(5000));
        let p = write_key(d.path(), "big", &big, 0o600);
        assert!(matches!(Key::load(&p), Err(KeyError::TooLarge { .. })));
        let p = write_key(d.path(), "bad", "# x\nnot base32 !\n", 0o600);
        let msg = Key::load(&p).unwrap_err().to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("not base32 !"), "{msg}");
    }

    #[test]
    fn generate_gives_distinct_32_byte_keys_that_round_trip() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(Key::parse(&a.to_base32()).unwrap(), a);
    }

    #[test]
    fn port_range_parse_and_display() {
        assert_eq!("1024-65535".parse::<PortRange>().unwrap(), DEFAULT_RANGE);
        assert_eq!(" 5 - 5 ".parse::<PortRange>().unwrap(), r(5, 5));
        assert_eq!(r(20000, 29999).to_string(), "20000-29999");
        assert_eq!(r(1, 65535).size(), 65535);
        for bad in [
            "", "5", "5-", "-5", "0-10", "10-5", "1-65536", "a-b", "+1-5", "1-2-3",
        ] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn range_of_one_port() {
        assert_eq!(derive(&key(), "d", 5, 1, r(4000, 4000), None), vec![4000]);
        // A longer length is reduced to the range size.
        assert_eq!(derive(&key(), "d", 5, 3, r(4000, 4000), None), vec![4000]);
        assert_eq!(
            derive(&key(), "d", 5, 1, r(65535, 65535), None),
            vec![65535]
        );
    }

    #[test]
    fn reversed_range_and_zero_length_give_nothing() {
        let rev = PortRange { lo: 10, hi: 5 };
        assert!(derive(&key(), "d", 5, 3, rev, None).is_empty());
        assert!(derive(&key(), "d", 5, 0, r(1, 10), None).is_empty());
    }

    #[test]
    fn length_equal_to_a_large_range_is_a_permutation() {
        let mut ports = derive(&key(), "d", 9, 300, r(1000, 1299), None);
        assert_eq!(ports.len(), 300);
        ports.sort_unstable();
        assert_eq!(ports, (1000..=1299).collect::<Vec<u16>>());
    }

    #[test]
    fn door_window_and_address_change_the_sequence() {
        let k = key();
        let base = derive(&k, "ssh", 7, 3, DEFAULT_RANGE, None);
        assert_ne!(base, derive(&k, "ssh", 8, 3, DEFAULT_RANGE, None));
        assert_ne!(base, derive(&k, "sshd", 7, 3, DEFAULT_RANGE, None));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(base, derive(&k, "ssh", 7, 3, DEFAULT_RANGE, Some(a)));
        // A prefix of the message cannot be confused with a longer door name.
        assert_ne!(
            derive(&k, "a", 7, 3, DEFAULT_RANGE, None),
            derive(&k, "a\0", 7, 3, DEFAULT_RANGE, None)
        );
    }

    #[test]
    fn uniform_over_a_small_range() {
        // 3000 single-port draws over 3 ports: each port near 1000.
        let k = key();
        let mut count = [0u32; 3];
        for t in 0..3000 {
            let p = derive(&k, "u", t, 1, r(10, 12), None)[0];
            count[usize::from(p - 10)] += 1;
        }
        for c in count {
            assert!((850..1150).contains(&c), "{count:?}");
        }
    }

    proptest! {
        #[test]
        fn ports_are_distinct_in_range_and_exactly_length(
            lo in 1u16..=65535,
            span in 0u16..40,
            length in 1usize..=16,
            t in any::<u64>(),
            door in "[a-z]{0,8}",
            bind in proptest::option::of(any::<[u8; 4]>()),
        ) {
            let hi = lo.saturating_add(span);
            let range = r(lo, hi);
            let bind = bind.map(IpAddr::from);
            let ports = derive(&key(), &door, t, length, range, bind);
            prop_assert_eq!(ports.len(), length.min(range.size() as usize));
            for p in &ports {
                prop_assert!(range.contains(*p));
            }
            let mut sorted = ports.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), ports.len());
        }

        #[test]
        fn length_equal_to_range_size_covers_the_range(
            lo in 1u16..=65519,
            size in 1u16..=16,
            t in any::<u64>(),
        ) {
            let range = r(lo, lo + size - 1);
            let mut ports = derive(&key(), "p", t, usize::from(size), range, None);
            ports.sort_unstable();
            prop_assert_eq!(ports, (range.lo..=range.hi).collect::<Vec<u16>>());
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = Key::parse(&text);
        }

        #[test]
        fn base32_round_trip_any_key(bytes in proptest::collection::vec(any::<u8>(), 16..64)) {
            let k = Key::from_bytes(&bytes).unwrap();
            prop_assert_eq!(Key::parse(&k.to_base32().to_lowercase()).unwrap(), k);
        }
    }
}
