//! Checks shared by the fuzz targets in `fuzz_targets/`.
//!
//! Each check feeds one input to a parser that reads bytes from outside the
//! daemon (captured frames, `knockd.conf`, one-time sequence files, the
//! sequence and TCP-flag syntax) and asserts more than "does not panic": the
//! invariants an administrator relies on. A failed assertion is a crash for
//! libFuzzer, which saves the input under `fuzz/artifacts/<target>/`.

use std::net::IpAddr;

use knock_common::{otp, FlagSpec, Knock, Proto, Sequence};
use knockd::config::{self, SequenceSpec};
use knockd::packet::{self, LinkType};

/// Bytes appended to a frame to check that trailing padding is ignored.
const PADDING: [u8; 7] = [0, 0xff, 0x45, 0x60, 6, 17, 0];

/// Decode `frame` as link type `link`.
///
/// * Never panics; a drop reason always renders as text.
/// * A hit is self-consistent: both addresses of one family, UDP hits carry
///   no TCP flags, TCP flags fit in the six classic bits.
/// * The IP length fields bound a packet: a frame that decodes still
///   decodes to the same hit with padding after it.
pub fn check_decode(link: LinkType, frame: &[u8]) {
    match packet::decode(link, frame) {
        Err(drop) => {
            let text = drop.to_string();
            assert!(!text.is_empty());
        }
        Ok(hit) => {
            assert_eq!(
                matches!(hit.src, IpAddr::V4(_)),
                matches!(hit.dst, IpAddr::V4(_)),
                "mixed address families in {hit:?}"
            );
            assert_eq!(
                hit.tcp_flags & !0x3f,
                0,
                "flags beyond the six bits: {hit:?}"
            );
            if hit.proto == Proto::Udp {
                assert_eq!(hit.tcp_flags, 0, "UDP hit with TCP flags: {hit:?}");
            }
            assert_eq!(hit.knock(), Knock::new(hit.dst_port, hit.proto));
            let mut padded = frame.to_vec();
            padded.extend_from_slice(&PADDING);
            assert_eq!(
                packet::decode(link, &padded),
                Ok(hit),
                "padding after a decoded frame changed the result"
            );
        }
    }
}

/// Parse a configuration file's bytes the way `knockd` reads them.
///
/// * Never panics, on any text (non-UTF-8 input is parsed lossily so the
///   parser still sees the rest).
/// * Every error names the file and, when it has one, a line that exists.
/// * A configuration that parses has only doors with a usable sequence
///   and a positive `Seq_Timeout`, and TCP flag lists that do not
///   contradict themselves.
pub fn check_config(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.as_ref();
    let lines = text.split('\n').count();
    match config::parse_str(text, "fuzz.conf") {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error result without errors");
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz.conf");
                assert!(!e.what.to_string().is_empty());
                if let Some(l) = e.line {
                    assert!(l >= 1 && l <= lines, "error on line {l} of {lines}: {e}");
                }
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.conf"), "{shown}");
            }
            let _ = errors.to_string();
        }
        Ok(conf) => {
            for door in &conf.doors {
                assert!(door.line >= 1 && door.line <= lines);
                assert!(!door.seq_timeout.is_zero(), "door {:?}", door.name);
                match &door.sequence {
                    SequenceSpec::Fixed(seq) => {
                        assert!(!seq.is_empty());
                        assert!(seq.iter().all(|k| k.port >= 1));
                    }
                    SequenceSpec::OneTime(path) => {
                        assert!(!path.as_os_str().is_empty());
                    }
                    SequenceSpec::Rotating(spec) => {
                        assert!((1..=16).contains(&spec.length));
                        assert!(spec.length as u32 <= spec.range.size());
                        assert!(spec.period >= 1 && spec.key.is_none());
                    }
                }
                if let Some(f) = door.tcp_flags {
                    assert_eq!(f.set & f.clear, 0, "contradictory flags {f:?}");
                }
            }
        }
    }
}

/// Scan a one-time sequence file's bytes.
///
/// * Never panics.
/// * Every usable line points at its own bytes in the file (offset and raw
///   text agree, no newline inside).
/// * Marking the current line used (its first byte becomes `#`, as
///   `mark_used` does on disk) removes exactly that line: the next scan's
///   usable lines are the old ones minus the first, so a used sequence
///   never works again and no other line is lost.
/// * Every usable sequence is among `all_sequences_bytes` (what `knock-gen`
///   uses to keep new sequences unique).
pub fn check_otp(bytes: &[u8]) {
    let scan = otp::scan_bytes(bytes);
    let mut last_line = 0;
    for l in &scan.usable {
        assert!(l.line_no > last_line, "line numbers out of order");
        last_line = l.line_no;
        let start = usize::try_from(l.offset).expect("offset fits in usize");
        let end = start + l.raw.len();
        assert!(end <= bytes.len(), "line {} runs past the end", l.line_no);
        assert_eq!(&bytes[start..end], &l.raw[..]);
        assert!(!l.raw.contains(&b'\n'));
        assert!(!l.raw.is_empty());
        assert!(start == 0 || bytes[start - 1] == b'\n');
        assert!(!l.sequence.is_empty());
    }
    for w in &scan.warnings {
        assert!(!w.error.to_string().is_empty());
    }
    let all = otp::all_sequences_bytes(bytes);
    for l in &scan.usable {
        assert!(all.contains(&l.sequence), "{} missing from all", l.sequence);
    }
    if let Some(cur) = scan.current() {
        let mut marked = bytes.to_vec();
        let at = usize::try_from(cur.offset).expect("offset fits in usize");
        marked[at] = b'#';
        let after = otp::scan_bytes(&marked);
        assert_eq!(
            after.usable,
            scan.usable[1..].to_vec(),
            "marking line {} used changed other lines",
            cur.line_no
        );
        assert_eq!(after.used, scan.used + 1);
        assert_eq!(after.warnings, scan.warnings);
    }
}

/// The `Sequence` syntax (`7000,8000:udp,9000:tcp`) and the `TCPFlags`
/// syntax (`syn,!ack`), as written in configuration files, one-time files
/// and on the `knock` command line.
///
/// * Never panics.
/// * What parses is valid (ports 1-65535, a flag never both set and clear)
///   and prints back to text that parses to the same value.
pub fn check_syntax(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match text.parse::<Sequence>() {
        Ok(seq) => {
            assert!(!seq.is_empty());
            assert!(seq.iter().all(|k| k.port >= 1));
            let shown = seq.to_string();
            assert_eq!(shown.parse::<Sequence>().as_ref(), Ok(&seq), "{shown:?}");
            assert_eq!(
                otp::scan_bytes(otp::format_line(&seq).as_bytes())
                    .current()
                    .map(|l| &l.sequence),
                Some(&seq),
                "a one-time line written for {shown:?} does not read back"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match text.parse::<FlagSpec>() {
        Ok(spec) => {
            assert_eq!(spec.set & spec.clear, 0, "{spec:?}");
            assert_eq!((spec.set | spec.clear) & !0x3f, 0, "{spec:?}");
            let shown = spec.to_string();
            assert_eq!(shown.parse::<FlagSpec>(), Ok(spec), "{shown:?}");
            assert!(spec.matches(spec.set), "{shown} rejects its own set flags");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(k) = text.parse::<Knock>() {
        assert!(k.port >= 1);
        assert_eq!(k.to_string().parse::<Knock>(), Ok(k));
    }
    if let Ok(p) = knock_common::sequence::parse_port(text) {
        assert!(p >= 1);
    }
}
