//! Library of the `knock-gen` program: generates one-time sequence files
//! shared by `knockd` (`One_Time_Sequences = FILE`) and `knock --otp FILE`.
//!
//! * [`Spec`] describes what to generate: how many sequences, how many hits
//!   each, the port range, excluded ports and the protocol choice.
//! * [`generate`] draws the sequences from any [`rand::Rng`]; the program uses
//!   [`os_rng`] and tests use a seeded generator.
//! * [`write_new`], [`append_to`] and [`render`] put them in a file or on
//!   standard output in the format of [`knock_common::otp`], so the three
//!   programs cannot disagree on it: one sequence per line, each line starting
//!   with a space.
//!
//! * [`write_secret`] writes a new key file for rotating sequences
//!   (`knock-gen --secret -o FILE`), with the same private, atomic writer.
//!
//! Guarantees: no port appears twice inside a sequence (whatever the
//! protocols), no sequence appears twice in a file (counting the lines already
//! there when appending, used or not), an impossible request is an error
//! before anything is written, and generation always terminates.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use knock_common::otp::{self, io_err, OtpError};
use knock_common::rotate::Key;
use knock_common::sequence::parse_port;
use knock_common::{Knock, Proto, Sequence, SequenceError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroize::Zeroize;

pub mod cli;

/// Most sequences one run may generate. A one-time file is re-read by the
/// daemon whenever it is needed; a million lines is already far more than a
/// server will ever use, and the bound keeps memory use predictable.
pub const MAX_COUNT: usize = 1_000_000;

/// Which protocols the hits use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtoChoice {
    /// Every hit is TCP.
    Tcp,
    /// Every hit is UDP.
    Udp,
    /// Each hit is TCP or UDP at random.
    Mixed,
}

impl fmt::Display for ProtoChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtoChoice::Tcp => "tcp",
            ProtoChoice::Udp => "udp",
            ProtoChoice::Mixed => "mixed",
        })
    }
}

/// An inclusive range of ports, written `LOW-HIGH` or as a single `PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub fn new(low: u16, high: u16) -> Result<Self, GenError> {
        if low > high {
            return Err(GenError::ReversedRange(format!("{low}-{high}")));
        }
        Ok(PortRange { low, high })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// Number of ports in the range (at least 1).
    pub fn len(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Default for PortRange {
    /// 1024-65535: the unprivileged ports, where no well-known service lives.
    fn default() -> Self {
        PortRange {
            low: 1024,
            high: 65535,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl FromStr for PortRange {
    type Err = GenError;

    /// `PORT` or `LOW-HIGH`, each port a plain integer in 1-65535.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.split_once('-') {
            None => {
                let p = parse_port(t)?;
                Ok(PortRange { low: p, high: p })
            }
            Some((low, high)) => {
                let low = parse_port(low)?;
                let high = parse_port(high)?;
                if low > high {
                    return Err(GenError::ReversedRange(t.to_string()));
                }
                Ok(PortRange { low, high })
            }
        }
    }
}

/// A comma-separated list of ports and ranges: `22,80,443,6000-6010`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortList(pub Vec<PortRange>);

impl FromStr for PortList {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for item in s.split(',') {
            if item.trim().is_empty() {
                return Err(GenError::EmptyListItem(s.to_string()));
            }
            out.push(item.parse::<PortRange>()?);
        }
        Ok(PortList(out))
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Number of sequences.
    pub count: usize,
    /// Hits per sequence.
    pub length: usize,
    /// Ports the hits are drawn from.
    pub range: PortRange,
    /// Ports never used.
    pub exclude: Vec<PortRange>,
    pub proto: ProtoChoice,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            count: 20,
            length: 3,
            range: PortRange::default(),
            exclude: Vec::new(),
            proto: ProtoChoice::Tcp,
        }
    }
}

impl Spec {
    /// The ports hits are drawn from: the range minus the exclusions, ascending.
    pub fn ports(&self) -> Vec<u16> {
        (self.range.low..=self.range.high)
            .filter(|p| !self.exclude.iter().any(|r| r.contains(*p)))
            .collect()
    }

    /// Number of distinct sequences this spec can produce (saturating).
    pub fn possible(&self) -> u128 {
        possible_sequences(self.ports().len(), self.length, self.proto)
    }

    /// Whether `seq` is one this spec could produce: right length, every
    /// port available, no port twice, protocols allowed.
    pub fn could_produce(&self, seq: &Sequence) -> bool {
        if seq.len() != self.length {
            return false;
        }
        let mut seen = HashSet::new();
        seq.iter().all(|k| {
            self.range.contains(k.port)
                && !self.exclude.iter().any(|r| r.contains(k.port))
                && seen.insert(k.port)
                && match self.proto {
                    ProtoChoice::Tcp => k.proto == Proto::Tcp,
                    ProtoChoice::Udp => k.proto == Proto::Udp,
                    ProtoChoice::Mixed => true,
                }
        })
    }

    /// Check the request on its own (without a file).
    pub fn validate(&self) -> Result<(), GenError> {
        self.check(self.ports().len()).map(|_| ())
    }

    /// Validate and return the number of possible sequences.
    fn check(&self, available: usize) -> Result<u128, GenError> {
        if self.count == 0 {
            return Err(GenError::ZeroCount);
        }
        if self.count > MAX_COUNT {
            return Err(GenError::CountTooLarge(self.count));
        }
        if self.length == 0 {
            return Err(GenError::ZeroLength);
        }
        if self.length > available {
            return Err(GenError::TooManyHits {
                length: self.length,
                available,
                range: self.range,
                excluded: self
                    .exclude
                    .iter()
                    .any(|r| r.low <= self.range.high && r.high >= self.range.low),
            });
        }
        Ok(possible_sequences(available, self.length, self.proto))
    }
}

/// Number of distinct sequences of `length` hits over `ports` ports with no
/// port repeated: `ports! / (ports - length)!`, times `2^length` when each
/// hit may be TCP or UDP. Saturates at `u128::MAX`; 0 when `length > ports`.
pub fn possible_sequences(ports: usize, length: usize, proto: ProtoChoice) -> u128 {
    if length > ports {
        return 0;
    }
    let mut n: u128 = 1;
    for i in 0..length {
        n = n.saturating_mul((ports - i) as u128);
        if proto == ProtoChoice::Mixed {
            n = n.saturating_mul(2);
        }
    }
    n
}

/// Why generation or writing failed. Every message names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Port(#[from] SequenceError),
    #[error("port range \"{0}\": the low end is above the high end")]
    ReversedRange(String),
    #[error("port list \"{0}\" has an empty item")]
    EmptyListItem(String),
    #[error("--count 0: ask for at least 1 sequence")]
    ZeroCount,
    #[error("--count {0}: at most {MAX_COUNT} sequences per run")]
    CountTooLarge(usize),
    #[error("--length 0: a sequence needs at least 1 hit")]
    ZeroLength,
    #[error(
        "--length {length}: a sequence of {length} hits needs {length} different ports, \
         but the port range {range}{} leaves only {available}",
        if *excluded { " minus the excluded ports" } else { "" }
    )]
    TooManyHits {
        length: usize,
        available: usize,
        range: PortRange,
        excluded: bool,
    },
    #[error(
        "--count {count}: only {possible} distinct sequences exist with these settings{}; \
         widen the port range, lengthen the sequences or ask for fewer",
        if *existing > 0 { format!(" and {existing} of them are already in the file, leaving {}", possible.saturating_sub(*existing)) } else { String::new() }
    )]
    TooManySequences {
        count: usize,
        possible: u128,
        existing: u128,
    },
    #[error("could not find {count} new distinct sequences after {attempts} attempts")]
    GaveUp { count: usize, attempts: usize },
    #[error("{}: already exists; use --force to replace it or --append to add sequences to it", .0.display())]
    Exists(PathBuf),
    #[error("{}: is a directory", .0.display())]
    IsDirectory(PathBuf),
    #[error("--append needs a file; it cannot append to standard output (-o -)")]
    AppendToStdout,
    #[error("--secret writes the key to a file only (mode 0600); give -o FILE")]
    SecretToStdout,
    /// Also every I/O error on a named file (`OtpError::Io`).
    #[error(transparent)]
    Otp(#[from] OtpError),
    /// `getrandom(2)` failed: while seeding [`os_rng`] or drawing a key.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(#[from] getrandom::Error),
}

/// The random number generator of the program.
///
/// Deliberate choice: a ChaCha12 CSPRNG ([`StdRng`]) whose 256-bit key is
/// read once from the operating system's CSPRNG (`getrandom(2)`, the call
/// behind `rand`'s `OsRng` and [`Key::generate`]). Drawing everything
/// straight from `OsRng` would work as well, but its `RngCore` adapter panics
/// when the system call fails; seeding once (`try_from_os_rng`, one `getrandom::fill`) turns
/// that single fallible call into an error message ([`GenError::Rng`], the
/// same variant as a failed key), and the ChaCha keystream that follows is
/// cryptographically secure. The generator lives only for one run and is
/// never reseeded from anything predictable.
pub fn os_rng() -> Result<StdRng, GenError> {
    Ok(StdRng::try_from_os_rng()?)
}

/// Generate `spec.count` new sequences. `existing` holds the sequences
/// already in the file (used or not); none of them is produced again, and
/// none of the new ones repeats another.
///
/// Sequences are uniformly distributed over everything the spec allows that
/// is not already taken. Two strategies, both bounded:
/// * while the taken sequences are at most half of all possible ones, draw a
///   random sequence and retry on a duplicate (each draw succeeds with
///   probability at least 1/2);
/// * otherwise the space is small (at most twice the sequences involved):
///   number every possible sequence, sample distinct numbers and decode them.
pub fn generate<R: Rng + ?Sized>(
    spec: &Spec,
    existing: &[Sequence],
    rng: &mut R,
) -> Result<Vec<Sequence>, GenError> {
    let ports = spec.ports();
    let possible = spec.check(ports.len())?;
    let taken_in_space: HashSet<&Sequence> =
        existing.iter().filter(|s| spec.could_produce(s)).collect();
    let taken = taken_in_space.len() as u128;
    let count = spec.count as u128;
    if count > possible.saturating_sub(taken) {
        return Err(GenError::TooManySequences {
            count: spec.count,
            possible,
            existing: taken,
        });
    }

    let mut seen: HashSet<Sequence> = taken_in_space.into_iter().cloned().collect();
    let mut out = Vec::with_capacity(spec.count);
    let involved = taken + count;

    if involved.saturating_mul(2) <= possible {
        let attempts = spec.count.saturating_mul(4).saturating_add(64);
        for _ in 0..attempts {
            if out.len() == spec.count {
                break;
            }
            let seq = random_sequence(&ports, spec.length, spec.proto, rng);
            if seen.insert(seq.clone()) {
                out.push(seq);
            }
        }
        if out.len() < spec.count {
            return Err(GenError::GaveUp {
                count: spec.count,
                attempts,
            });
        }
    } else {
        // possible < 2 * involved <= 2 * (existing.len() + MAX_COUNT): fits usize.
        let space = usize::try_from(possible).map_err(|_| GenError::TooManySequences {
            count: spec.count,
            possible,
            existing: taken,
        })?;
        let amount = usize::try_from(involved).unwrap_or(space).min(space);
        for index in rand::seq::index::sample(rng, space, amount) {
            if out.len() == spec.count {
                break;
            }
            let seq = decode(&ports, spec.length, spec.proto, index as u128);
            if seen.insert(seq.clone()) {
                out.push(seq);
            }
        }
        // At most `taken` of the `amount` sampled numbers were taken already.
        if out.len() < spec.count {
            return Err(GenError::GaveUp {
                count: spec.count,
                attempts: amount,
            });
        }
    }
    Ok(out)
}

fn pick_proto<R: Rng + ?Sized>(choice: ProtoChoice, rng: &mut R) -> Proto {
    match choice {
        ProtoChoice::Tcp => Proto::Tcp,
        ProtoChoice::Udp => Proto::Udp,
        ProtoChoice::Mixed => {
            if rng.random::<bool>() {
                Proto::Udp
            } else {
                Proto::Tcp
            }
        }
    }
}

/// A uniformly random sequence of `length` distinct ports from `ports`.
fn random_sequence<R: Rng + ?Sized>(
    ports: &[u16],
    length: usize,
    proto: ProtoChoice,
    rng: &mut R,
) -> Sequence {
    // `sample` returns distinct indices in random order.
    let indices = rand::seq::index::sample(rng, ports.len(), length);
    let knocks = indices
        .into_iter()
        .map(|i| Knock::new(ports[i], pick_proto(proto, rng)))
        .collect();
    Sequence::new(knocks).expect("length is at least 1")
}

/// The sequence numbered `index` in `0..possible_sequences(ports.len(),
/// length, proto)`: a bijection between numbers and sequences. The number is
/// read in mixed radix: digit `i` (radix `n - i`) picks the hit's port among
/// the ports not used yet, then one bit per hit picks the protocol (mixed
/// only).
fn decode(ports: &[u16], length: usize, proto: ProtoChoice, mut index: u128) -> Sequence {
    let n = ports.len();
    let mut chosen_sorted: Vec<usize> = Vec::with_capacity(length);
    let mut order: Vec<usize> = Vec::with_capacity(length);
    for i in 0..length {
        let radix = (n - i) as u128;
        let mut pos = (index % radix) as usize;
        index /= radix;
        // The pos-th port (0-based) among those not chosen yet.
        for &c in &chosen_sorted {
            if c <= pos {
                pos += 1;
            } else {
                break;
            }
        }
        let at = chosen_sorted.partition_point(|&c| c < pos);
        chosen_sorted.insert(at, pos);
        order.push(pos);
    }
    let knocks = order
        .into_iter()
        .map(|pos| {
            let p = match proto {
                ProtoChoice::Tcp => Proto::Tcp,
                ProtoChoice::Udp => Proto::Udp,
                ProtoChoice::Mixed => {
                    let bit = index % 2;
                    index /= 2;
                    if bit == 1 {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    }
                }
            };
            Knock::new(ports[pos], p)
        })
        .collect();
    Sequence::new(knocks).expect("length is at least 1")
}

/// The text of the generated lines (each starting with a space).
pub fn render(seqs: &[Sequence]) -> String {
    otp::render(seqs)
}

/// Fail early when `path` exists (unless `replace`) or is a directory.
pub fn check_new_target(path: &Path, replace: bool) -> Result<(), GenError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if meta.is_dir() {
                Err(GenError::IsDirectory(path.to_path_buf()))
            } else if !replace {
                Err(GenError::Exists(path.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e).into()),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), GenError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir)(e).into())
}

/// Write `seqs` to a new file at `path`, atomically and with mode 0600: a
/// temporary file in the same directory is written, flushed to disk and
/// renamed over `path`, then the directory is flushed. Without `replace`, an
/// existing `path` is never touched (the rename itself refuses to replace it,
/// so a file created meanwhile is safe too).
pub fn write_new(path: &Path, seqs: &[Sequence], replace: bool) -> Result<(), GenError> {
    write_new_text(path, &render(seqs), replace)
}

/// The text of a key file written by [`write_secret`]: a comment line and
/// the key in canonical base32 (what `knockd`'s `Sequence_Secret` and
/// `knock --secret` read; see [`knock_common::rotate`]).
pub fn render_secret(key: &Key) -> String {
    format!(
        "# knock rotating-sequence key ({} bytes, base32); keep it secret, mode 0600\n{}\n",
        key.len(),
        key.to_base32()
    )
}

/// Write a new random key of [`knock_common::rotate::GENERATED_KEY_BYTES`]
/// bytes to `path` with the same guarantees as [`write_new`]: mode 0600,
/// atomic, an existing file replaced only with `replace`.
pub fn write_secret(path: &Path, replace: bool) -> Result<(), GenError> {
    check_new_target(path, replace)?;
    let key = Key::generate()?;
    let mut text = render_secret(&key);
    let result = write_new_text(path, &text, replace);
    text.zeroize();
    result
}

/// The atomic, private writer behind [`write_new`] and [`write_secret`].
fn write_new_text(path: &Path, text: &str, replace: bool) -> Result<(), GenError> {
    check_new_target(path, replace)?;
    let dir = parent_dir(path);
    // A missing directory gets a plain message (tempfile's names its own
    // temporary path).
    fs::metadata(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".knock-gen-")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let file = tmp.as_file_mut();
    file.set_permissions(Permissions::from_mode(0o600))
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|_| file.sync_all())
        .map_err(io_err(path))?;
    let persisted = if replace {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => {}
        Err(e) if !replace && e.error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(GenError::Exists(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e.error).into()),
    }
    sync_dir(dir)
}

/// The sequences already in the file at `path` (used or not), and the number
/// of usable ones; an empty list when the file does not exist.
pub fn existing_sequences(path: &Path) -> Result<(Vec<Sequence>, usize), GenError> {
    match otp::read_regular(path) {
        Ok(bytes) => Ok((
            otp::all_sequences_bytes(&bytes),
            otp::scan_bytes(&bytes).usable.len(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), 0)),
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
            Err(GenError::IsDirectory(path.to_path_buf()))
        }
        Err(e) => Err(io_err(path)(e).into()),
    }
}

/// Append `seqs` to the file at `path` (created with mode 0600 when missing)
/// without rewriting any existing line, then flush the file and its directory.
pub fn append_to(path: &Path, seqs: &[Sequence]) -> Result<(), GenError> {
    otp::append(path, seqs)?;
    sync_dir(parent_dir(path))
}

/// When the file at `path` is readable or writable by group or others, its
/// mode (e.g. `0o644`); a one-time file holds secrets.
pub fn loose_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Where the sequences go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// A new file; `replace` allows replacing an existing one.
    New {
        path: PathBuf,
        replace: bool,
    },
    /// Add to a file (created when missing).
    Append(PathBuf),
}

/// What a run did, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub written: usize,
    /// Usable sequences in the file afterwards (None for stdout).
    pub usable_after: Option<usize>,
    /// Mode of an appended-to file that others can read.
    pub loose_mode: Option<u32>,
}

/// Generate and write: the whole program apart from argument parsing.
pub fn run<R: Rng + ?Sized>(
    spec: &Spec,
    output: &Output,
    rng: &mut R,
    stdout: &mut dyn Write,
) -> Result<Report, GenError> {
    match output {
        Output::Stdout => {
            let seqs = generate(spec, &[], rng)?;
            stdout
                .write_all(render(&seqs).as_bytes())
                .and_then(|_| stdout.flush())
                .map_err(io_err(Path::new("standard output")))?;
            Ok(Report {
                written: seqs.len(),
                usable_after: None,
                loose_mode: None,
            })
        }
        Output::New { path, replace } => {
            // Refuse before doing any work.
            check_new_target(path, *replace)?;
            let seqs = generate(spec, &[], rng)?;
            write_new(path, &seqs, *replace)?;
            Ok(Report {
                written: seqs.len(),
                usable_after: Some(seqs.len()),
                loose_mode: None,
            })
        }
        Output::Append(path) => {
            let (existing, usable) = existing_sequences(path)?;
            let seqs = generate(spec, &existing, rng)?;
            append_to(path, &seqs)?;
            Ok(Report {
                written: seqs.len(),
                usable_after: Some(usable + seqs.len()),
                loose_mode: loose_mode(path),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn spec(count: usize, length: usize, range: &str, proto: ProtoChoice) -> Spec {
        Spec {
            count,
            length,
            range: range.parse().unwrap(),
            exclude: Vec::new(),
            proto,
        }
    }

    fn assert_valid(spec: &Spec, seqs: &[Sequence]) {
        assert_eq!(seqs.len(), spec.count);
        let distinct: HashSet<&Sequence> = seqs.iter().collect();
        assert_eq!(distinct.len(), seqs.len(), "a sequence repeats: {seqs:?}");
        for s in seqs {
            assert!(spec.could_produce(s), "{s} does not fit {spec:?}");
            let ports: HashSet<u16> = s.iter().map(|k| k.port).collect();
            assert_eq!(ports.len(), s.len(), "a port repeats in {s}");
        }
    }

    #[test]
    fn port_range_and_list_parsing() {
        assert_eq!(
            "1024-65535".parse::<PortRange>().unwrap(),
            PortRange::new(1024, 65535).unwrap()
        );
        assert_eq!(
            " 7000 ".parse::<PortRange>().unwrap(),
            PortRange::new(7000, 7000).unwrap()
        );
        let e = "2000-1000".parse::<PortRange>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "port range \"2000-1000\": the low end is above the high end"
        );
        for bad in ["0-100", "1-70000", "abc", "-5", "10-", "1-2-3", ""] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
        }
        assert!("70000"
            .parse::<PortRange>()
            .unwrap_err()
            .to_string()
            .contains("\"70000\""));
        let l: PortList = "22,80, 443,6000-6010".parse().unwrap();
        assert_eq!(l.0.len(), 4);
        assert_eq!(l.0[3], PortRange::new(6000, 6010).unwrap());
        assert!("22,,80".parse::<PortList>().is_err());
        assert!("22,x"
            .parse::<PortList>()
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
    }

    #[test]
    fn possible_sequences_math() {
        assert_eq!(possible_sequences(10, 3, ProtoChoice::Tcp), 720);
        assert_eq!(possible_sequences(10, 3, ProtoChoice::Udp), 720);
        assert_eq!(possible_sequences(10, 3, ProtoChoice::Mixed), 720 * 8);
        assert_eq!(possible_sequences(3, 3, ProtoChoice::Tcp), 6);
        assert_eq!(possible_sequences(3, 4, ProtoChoice::Tcp), 0);
        assert_eq!(possible_sequences(1, 1, ProtoChoice::Mixed), 2);
        assert_eq!(
            possible_sequences(65535, 65535, ProtoChoice::Mixed),
            u128::MAX
        );
        assert_eq!(
            possible_sequences(64512, 3, ProtoChoice::Tcp),
            64512u128 * 64511 * 64510
        );
    }

    #[test]
    fn ports_honour_range_and_exclusions() {
        let mut s = spec(1, 1, "10-20", ProtoChoice::Tcp);
        s.exclude = vec![
            "12".parse().unwrap(),
            "15-17".parse().unwrap(),
            "1-10".parse().unwrap(),
            "60000-60010".parse().unwrap(),
        ];
        assert_eq!(s.ports(), vec![11, 13, 14, 18, 19, 20]);
    }

    #[test]
    fn defaults_generate_valid_unique_sequences() {
        let s = Spec::default();
        let seqs = generate(&s, &[], &mut rng(1)).unwrap();
        assert_valid(&s, &seqs);
        assert!(seqs.iter().all(|q| q.len() == 3));
        assert!(seqs
            .iter()
            .flat_map(|q| q.iter())
            .all(|k| k.port >= 1024 && k.proto == Proto::Tcp));
    }

    #[test]
    fn deterministic_with_a_seeded_rng_and_different_across_seeds() {
        let s = Spec::default();
        let a = generate(&s, &[], &mut rng(7)).unwrap();
        let b = generate(&s, &[], &mut rng(7)).unwrap();
        let c = generate(&s, &[], &mut rng(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn exclusions_are_never_used() {
        let mut s = spec(200, 4, "100-130", ProtoChoice::Mixed);
        s.exclude = vec!["105-120".parse().unwrap(), "101".parse().unwrap()];
        let seqs = generate(&s, &[], &mut rng(2)).unwrap();
        assert_valid(&s, &seqs);
        for k in seqs.iter().flat_map(|q| q.iter()) {
            assert!(!(105..=120).contains(&k.port) && k.port != 101, "{k}");
            assert!((100..=130).contains(&k.port), "{k}");
        }
    }

    #[test]
    fn udp_only_and_mixed_protocols() {
        let s = spec(50, 3, "2000-2100", ProtoChoice::Udp);
        let seqs = generate(&s, &[], &mut rng(3)).unwrap();
        assert_valid(&s, &seqs);
        assert!(seqs
            .iter()
            .flat_map(|q| q.iter())
            .all(|k| k.proto == Proto::Udp));

        let s = spec(100, 5, "2000-2100", ProtoChoice::Mixed);
        let seqs = generate(&s, &[], &mut rng(4)).unwrap();
        assert_valid(&s, &seqs);
        let udp = seqs
            .iter()
            .flat_map(|q| q.iter())
            .filter(|k| k.proto == Proto::Udp)
            .count();
        // 500 fair coin flips: both protocols well represented.
        assert!((150..=350).contains(&udp), "{udp} udp hits of 500");
    }

    #[test]
    fn exhausts_a_small_space_exactly() {
        // 4 ports, 2 hits, mixed: 4*3*4 = 48 sequences, all of them.
        let s = spec(48, 2, "1-4", ProtoChoice::Mixed);
        let seqs = generate(&s, &[], &mut rng(5)).unwrap();
        assert_valid(&s, &seqs);
        let e = generate(&spec(49, 2, "1-4", ProtoChoice::Mixed), &[], &mut rng(5)).unwrap_err();
        assert!(
            matches!(e, GenError::TooManySequences { possible: 48, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("49") && e.to_string().contains("48"),
            "{e}"
        );
    }

    #[test]
    fn decode_is_a_bijection() {
        for proto in [ProtoChoice::Tcp, ProtoChoice::Mixed] {
            let ports = [5u16, 6, 7, 9, 11];
            let n = possible_sequences(ports.len(), 3, proto);
            let all: HashSet<Sequence> = (0..n).map(|i| decode(&ports, 3, proto, i)).collect();
            assert_eq!(all.len() as u128, n);
            let s = Spec {
                count: 1,
                length: 3,
                range: PortRange::new(5, 11).unwrap(),
                exclude: vec![
                    PortRange::new(8, 8).unwrap(),
                    PortRange::new(10, 10).unwrap(),
                ],
                proto,
            };
            assert!(all.iter().all(|q| s.could_produce(q)));
        }
    }

    #[test]
    fn existing_sequences_are_never_repeated_and_reduce_the_space() {
        // 3 ports, 2 hits, tcp: 6 possible.
        let s = spec(4, 2, "1-3", ProtoChoice::Tcp);
        let existing: Vec<Sequence> = vec!["1,2".parse().unwrap(), "3,1".parse().unwrap()];
        for seed in 0..20 {
            let seqs = generate(&s, &existing, &mut rng(seed)).unwrap();
            assert_valid(&s, &seqs);
            assert!(seqs.iter().all(|q| !existing.contains(q)));
        }
        let s5 = spec(5, 2, "1-3", ProtoChoice::Tcp);
        let e = generate(&s5, &existing, &mut rng(0)).unwrap_err();
        assert!(
            matches!(
                e,
                GenError::TooManySequences {
                    count: 5,
                    possible: 6,
                    existing: 2
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("leaving 4"), "{e}");
        // Existing lines outside the spec's space take nothing from it.
        let other: Vec<Sequence> = vec!["1,2:udp".parse().unwrap(), "1".parse().unwrap()];
        let seqs = generate(&spec(6, 2, "1-3", ProtoChoice::Tcp), &other, &mut rng(0)).unwrap();
        assert_eq!(seqs.len(), 6);
    }

    #[test]
    fn sparse_path_never_repeats_existing() {
        // 20 ports, 2 hits: 380 possible; 100 existing + 80 new <= 190.
        let s = spec(100, 2, "1-20", ProtoChoice::Tcp);
        let existing = generate(&s, &[], &mut rng(9)).unwrap();
        let s80 = spec(80, 2, "1-20", ProtoChoice::Tcp);
        let new = generate(&s80, &existing, &mut rng(10)).unwrap();
        assert_valid(&s80, &new);
        assert!(new.iter().all(|q| !existing.contains(q)));
        // Dense path: 100 existing + 250 new of 380.
        let s250 = spec(250, 2, "1-20", ProtoChoice::Tcp);
        let new = generate(&s250, &existing, &mut rng(11)).unwrap();
        assert_valid(&s250, &new);
        assert!(new.iter().all(|q| !existing.contains(q)));
    }

    #[test]
    fn impossible_requests_are_errors_naming_the_value() {
        let refused = |s: &Spec| generate(s, &[], &mut rng(0)).unwrap_err();
        let e = refused(&spec(0, 3, "1024-65535", ProtoChoice::Tcp));
        assert!(matches!(e, GenError::ZeroCount), "{e}");
        let e = refused(&spec(1, 0, "1024-65535", ProtoChoice::Tcp));
        assert!(matches!(e, GenError::ZeroLength), "{e}");
        let e = refused(&spec(MAX_COUNT + 1, 3, "1024-65535", ProtoChoice::Tcp));
        assert!(e.to_string().contains(&(MAX_COUNT + 1).to_string()), "{e}");

        let mut s = spec(1, 5, "100-105", ProtoChoice::Tcp);
        s.exclude = vec!["101-102".parse().unwrap()];
        let e = refused(&s);
        assert!(
            matches!(
                e,
                GenError::TooManyHits {
                    length: 5,
                    available: 4,
                    excluded: true,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--length 5"), "{e}");
        assert!(e.to_string().contains("100-105"), "{e}");
        // Every port excluded.
        s.exclude = vec!["1-65535".parse().unwrap()];
        s.length = 1;
        let e = refused(&s);
        assert!(
            matches!(e, GenError::TooManyHits { available: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn files_are_private_atomic_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seqs");
        let s = spec(5, 3, "1024-65535", ProtoChoice::Tcp);
        let seqs = generate(&s, &[], &mut rng(1)).unwrap();
        write_new(&path, &seqs, false).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, render(&seqs));
        assert!(text.lines().all(|l| l.starts_with(' ')));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let other = generate(&s, &[], &mut rng(2)).unwrap();
        let e = write_new(&path, &other, false).unwrap_err();
        assert!(matches!(e, GenError::Exists(_)), "{e}");
        assert!(e.to_string().contains("--force") && e.to_string().contains("seqs"));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);

        write_new(&path, &other, true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), render(&other));
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let e = write_new(dir.path(), &other, true).unwrap_err();
        assert!(matches!(e, GenError::IsDirectory(_)), "{e}");
    }

    #[test]
    fn run_appends_after_used_lines_without_repeating_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seqs");
        // 3 ports, 1 hit: 3 possible; one used, one unused, one missing newline.
        fs::write(&path, "#1:tcp\n 2:tcp").unwrap();
        let s = spec(1, 1, "1-3", ProtoChoice::Tcp);
        let mut sink = Vec::new();
        let report = run(&s, &Output::Append(path.clone()), &mut rng(0), &mut sink).unwrap();
        assert_eq!(report.written, 1);
        assert_eq!(report.usable_after, Some(2));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "#1:tcp\n 2:tcp\n 3:tcp\n"
        );
        let e = run(&s, &Output::Append(path.clone()), &mut rng(0), &mut sink).unwrap_err();
        assert!(matches!(e, GenError::TooManySequences { .. }), "{e}");
        assert!(sink.is_empty());
    }

    #[test]
    fn run_to_stdout() {
        let s = spec(4, 2, "5000-5010", ProtoChoice::Udp);
        let mut sink = Vec::new();
        let report = run(&s, &Output::Stdout, &mut rng(0), &mut sink).unwrap();
        assert_eq!(report.written, 4);
        let text = String::from_utf8(sink).unwrap();
        let seqs: Vec<Sequence> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert!(text.lines().all(|l| l.starts_with(' ')));
        assert_valid(&s, &seqs);
    }

    #[test]
    fn os_rng_seeds_two_different_generators() {
        let (mut a, mut b) = (os_rng().unwrap(), os_rng().unwrap());
        assert_ne!(a.random::<[u8; 32]>(), b.random::<[u8; 32]>());
    }

    #[test]
    fn rng_failure_keeps_the_system_error_as_its_source() {
        use std::error::Error as _;
        let e = GenError::from(getrandom::Error::UNSUPPORTED);
        let text = e.to_string();
        let cause = getrandom::Error::UNSUPPORTED.to_string();
        assert_eq!(
            text,
            format!("the operating system's random number generator failed: {cause}")
        );
        let source = e.source().expect("the getrandom error is the source");
        assert_eq!(source.to_string(), cause);
    }
}
