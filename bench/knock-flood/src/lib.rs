//! Shared pieces of the benchmark tools: Ethernet/IPv4/TCP SYN frames built
//! by hand (so the sources can be spoofed), a raw datalink sender, the
//! network-namespace guard, stamp files and latency statistics.
//!
//! Every tool refuses to send anything from the host's own network
//! namespace: the benchmark runs them inside namespaces it created, joined
//! by a veth pair that leads nowhere else.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use pnet::datalink::{self, Channel, DataLinkSender};

/// Length of an Ethernet + IPv4 + TCP (no options) SYN frame.
pub const FRAME_LEN: usize = 14 + 20 + 20;

/// A MAC address written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "\"{s}\" is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)"
            ));
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(&parts) {
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| format!("\"{s}\" is not a MAC address: bad byte \"{p}\""))?;
        }
        Ok(Mac(m))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An IPv4 network `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub base: Ipv4Addr,
    pub len: u8,
}

/// Networks that are never routed on the Internet and that the flood may
/// take its spoofed sources from: RFC 1918 private space, the RFC 6598
/// shared space and the RFC 2544 benchmarking range.
pub const ALLOWED_SOURCE_NETS: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "198.18.0.0/15",
];

impl Ipv4Net {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// Number of addresses in the network.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// The `i`-th address of the network (wrapping around its size).
    pub fn nth(&self, i: u64) -> Ipv4Addr {
        let off = (i % self.size()) as u32;
        Ipv4Addr::from(u32::from(self.base).wrapping_add(off))
    }

    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.len >= self.len
            && u32::from(other.base) & Self::mask(self.len) == u32::from(self.base)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.base)
    }

    /// Is the whole network inside one of [`ALLOWED_SOURCE_NETS`]?
    pub fn is_reserved(&self) -> bool {
        ALLOWED_SOURCE_NETS
            .iter()
            .filter_map(|s| s.parse::<Ipv4Net>().ok())
            .any(|n| n.contains_net(self))
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Ipv4Net, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| {
            format!("\"{s}\" is not a network (expected ADDR/LEN, e.g. 198.18.0.0/15)")
        })?;
        let base: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("\"{s}\": \"{a}\" is not an IPv4 address"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|&n| n <= 32)
            .ok_or_else(|| format!("\"{s}\": prefix length \"{l}\" is not 0..=32"))?;
        if u32::from(base) & !Self::mask(len) != 0 {
            return Err(format!(
                "\"{s}\": host bits are set (did you mean {}/{len}?)",
                Ipv4Addr::from(u32::from(base) & Self::mask(len))
            ));
        }
        Ok(Ipv4Net { base, len })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

pub use knock_testkit::frames::{checksum, fold, sum16};

/// A TCP SYN frame whose source address, source port and sequence number
/// change from packet to packet; everything else is built once.
#[derive(Clone)]
pub struct SynFrame {
    buf: [u8; FRAME_LEN],
}

impl SynFrame {
    /// Build the frame once. TCP flags are SYN only, window 64240, TTL 64.
    pub fn new(dst_mac: Mac, src_mac: Mac, dst: Ipv4Addr, dst_port: u16) -> SynFrame {
        let mut b = [0u8; FRAME_LEN];
        b[0..6].copy_from_slice(&dst_mac.0);
        b[6..12].copy_from_slice(&src_mac.0);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut b[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6; // TCP
        ip[16..20].copy_from_slice(&dst.octets());
        let tcp = &mut b[34..54];
        tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02; // SYN
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        SynFrame { buf: b }
    }

    /// Set source address, source port and sequence number and fix both
    /// checksums; returns the finished frame.
    pub fn finish(&mut self, src: Ipv4Addr, src_port: u16, seq: u32) -> &[u8] {
        let b = &mut self.buf;
        b[26..30].copy_from_slice(&src.octets());
        b[24..26].fill(0);
        let ipsum = checksum(&b[14..34]);
        b[24..26].copy_from_slice(&ipsum.to_be_bytes());
        b[34..36].copy_from_slice(&src_port.to_be_bytes());
        b[38..42].copy_from_slice(&seq.to_be_bytes());
        b[50..52].fill(0);
        // Pseudo-header: source, destination, zero + protocol, TCP length.
        let mut acc = sum16(&b[26..34], 0);
        acc += 6 + 20;
        let tcpsum = fold(sum16(&b[34..54], acc));
        b[50..52].copy_from_slice(&tcpsum.to_be_bytes());
        &self.buf
    }
}

/// Refuse to run outside a named network namespace (one created with
/// `ip netns add`, listed in /run/netns): the tools send spoofed traffic
/// and belong inside the benchmark's own namespaces, never in the host's.
pub fn ensure_private_netns(tool: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata("/proc/self/ns/net")
        .context("cannot read /proc/self/ns/net to check the network namespace")?;
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .any(|m| m.dev() == mine.dev() && m.ino() == mine.ino());
    if !named {
        bail!(
            "{tool} runs only inside a network namespace created for the benchmark \
             (`ip netns add`); this one (inode {}) is not one of /run/netns/*. \
             Use bench/run.sh or `ip netns exec NS {tool} ...`",
            mine.ino()
        );
    }
    Ok(())
}

/// A raw Ethernet sender on `iface` and the interface's MAC address.
pub fn open_sender(iface: &str) -> Result<(Box<dyn DataLinkSender>, Mac)> {
    let ni = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| anyhow!("no interface named \"{iface}\" in this network namespace"))?;
    let mac = ni
        .mac
        .map(|m| Mac(m.octets()))
        .ok_or_else(|| anyhow!("interface \"{iface}\" has no MAC address"))?;
    let cfg = datalink::Config {
        write_buffer_size: 1 << 16,
        read_buffer_size: 1 << 12,
        ..Default::default()
    };
    match datalink::channel(&ni, cfg) {
        Ok(Channel::Ethernet(tx, _rx)) => Ok((tx, mac)),
        Ok(_) => bail!("interface \"{iface}\": unsupported channel type"),
        Err(e) => bail!("cannot open a raw socket on \"{iface}\": {e}"),
    }
}

/// Send one frame; a full socket buffer is retried (back-pressure).
pub fn send(tx: &mut dyn DataLinkSender, frame: &[u8]) -> Result<()> {
    loop {
        match tx.send_to(frame, None) {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) if e.raw_os_error() == Some(105) /* ENOBUFS */ => {
                std::thread::yield_now();
            }
            Some(Err(e)) => return Err(anyhow!("send failed: {e}")),
            None => bail!("send failed: frame does not fit the write buffer"),
        }
    }
}

/// CLOCK_REALTIME in nanoseconds since the epoch.
pub fn realtime_ns() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Format nanoseconds since the epoch as `SECONDS.NANOSECONDS` (the shape
/// of `date +%s.%N`).
pub fn format_stamp(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Parse a `SECONDS.NANOSECONDS` stamp (fewer fraction digits are fine).
pub fn parse_stamp(s: &str) -> Option<i128> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i128 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i128>().ok()? * 10i128.pow(9 - frac.len() as u32)
    };
    Some(secs * 1_000_000_000 + nanos)
}

/// All stamps in a stamp file (missing file: none). Unparsable lines are
/// an error naming the file and line.
pub fn read_stamps(path: &Path) -> Result<Vec<i128>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_stamp(l)
                .ok_or_else(|| anyhow!("{}:{}: \"{l}\" is not a timestamp", path.display(), i + 1))
        })
        .collect()
}

/// The `p`-th percentile (0..=100) by nearest rank of sorted `v`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of sorted `v` (mean of the middle two for even lengths).
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The hard caps of one tool's run: every flood, probe and connection run
/// stops after a bounded count (packets, knocks, connections) and a bounded
/// time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Most packets (knocks, connections) of one run.
    pub count: u64,
    /// Most seconds of one run.
    pub seconds: f64,
}

impl Bounds {
    /// `n`, given as `option`, must be in 1..=count.
    pub fn check_count(&self, option: &str, n: u64) -> Result<()> {
        if n == 0 || n > self.count {
            bail!("{option} {n} is outside 1..={}", self.count);
        }
        Ok(())
    }

    /// [`check_seconds`] against these bounds.
    pub fn check_seconds(&self, seconds: f64) -> Result<Duration> {
        check_seconds(seconds, self.seconds)
    }
}

/// `--seconds` must be in (0, max]; returns the run's time limit.
pub fn check_seconds(seconds: f64, max: f64) -> Result<Duration> {
    if !(seconds > 0.0 && seconds <= max) {
        bail!("--seconds {seconds} is outside (0, {max}]");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The exit of a tool named `name`: success, or failure after the error
/// and its causes on stderr ("NAME: error: cause").
pub fn exit_code(name: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `(input, fragment)`: `input` does not parse as a `T`, and the
    /// message contains `fragment`.
    fn assert_refused<T: FromStr<Err = String> + fmt::Debug>(cases: &[(&str, &str)]) {
        for (input, fragment) in cases {
            let e = input.parse::<T>().unwrap_err();
            assert!(e.contains(fragment), "{input:?}: {e:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn mac_round_trip_and_errors() {
        let m: Mac = "02:0a:ff:00:01:9c".parse().unwrap();
        assert_eq!(m.0, [2, 10, 255, 0, 1, 0x9c]);
        assert_eq!(m.to_string(), "02:0a:ff:00:01:9c");
        assert_refused::<Mac>(&[
            ("02:0a:ff:00:01", "02:0a:ff:00:01"),
            ("02:0a:ff:00:01:zz", "zz"),
        ]);
    }

    #[test]
    fn networks_parse_and_enumerate() {
        let n: Ipv4Net = "10.0.0.0/12".parse().unwrap();
        assert_eq!(n.size(), 1 << 20);
        assert_eq!(n.nth(0), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(n.nth(257), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(n.nth((1 << 20) + 3), Ipv4Addr::new(10, 0, 0, 3));
        assert!(n.contains(Ipv4Addr::new(10, 15, 255, 255)));
        assert!(!n.contains(Ipv4Addr::new(10, 16, 0, 0)));
        assert!(n.is_reserved());
        assert!("198.18.0.0/15".parse::<Ipv4Net>().unwrap().is_reserved());
        assert!(!"8.8.0.0/16".parse::<Ipv4Net>().unwrap().is_reserved());
        // A /7 around 10/8 is bigger than the private range.
        assert!(!"10.0.0.0/7".parse::<Ipv4Net>().unwrap().is_reserved());
        assert_refused::<Ipv4Net>(&[
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("10.0.0.0/33", "33"),
            ("10.0.0.0", "ADDR/LEN"),
        ]);
    }

    #[test]
    fn bounds_refuse_zero_and_too_much() {
        let b = Bounds {
            count: 10,
            seconds: 2.5,
        };
        b.check_count("--count", 1).unwrap();
        b.check_count("--count", 10).unwrap();
        for n in [0, 11] {
            let e = b.check_count("--knocks", n).unwrap_err().to_string();
            assert_eq!(e, format!("--knocks {n} is outside 1..=10"));
        }
        assert_eq!(b.check_seconds(2.5).unwrap(), Duration::from_millis(2500));
        for s in [0.0, -1.0, 2.6, f64::NAN] {
            let e = b.check_seconds(s).unwrap_err().to_string();
            assert_eq!(e, format!("--seconds {s} is outside (0, 2.5]"));
        }
    }

    #[test]
    fn syn_frame_checksums_verify() {
        let mut f = SynFrame::new(
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 250, 0, 1),
            7000,
        );
        for (src, port, seq) in [
            (Ipv4Addr::new(10, 0, 0, 1), 40000, 1),
            (Ipv4Addr::new(10, 15, 255, 254), 65535, u32::MAX),
        ] {
            let b = f.finish(src, port, seq).to_vec();
            assert_eq!(&b[26..30], &src.octets());
            assert_eq!(u16::from_be_bytes([b[36], b[37]]), 7000);
            assert_eq!(b[47], 0x02);
            // A correct checksum sums to zero over the covered bytes.
            assert_eq!(checksum(&b[14..34]), 0);
            let mut acc = sum16(&b[26..34], 0) + 6 + 20;
            acc = sum16(&b[34..54], acc);
            assert_eq!(fold(acc), 0);
            // And pnet agrees.
            let ip = pnet::packet::ipv4::Ipv4Packet::new(&b[14..]).unwrap();
            assert_eq!(pnet::packet::ipv4::checksum(&ip), ip.get_checksum());
            let tcp = pnet::packet::tcp::TcpPacket::new(&b[34..]).unwrap();
            assert_eq!(
                pnet::packet::tcp::ipv4_checksum(&tcp, &ip.get_source(), &ip.get_destination()),
                tcp.get_checksum()
            );
        }
    }

    #[test]
    fn stamps_round_trip() {
        let ns = 1_700_000_000_123_456_789i128;
        assert_eq!(format_stamp(ns), "1700000000.123456789");
        assert_eq!(parse_stamp("1700000000.123456789\n"), Some(ns));
        assert_eq!(parse_stamp("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_stamp("12"), Some(12_000_000_000));
        assert_eq!(parse_stamp("x.1"), None);
        assert_eq!(parse_stamp("1.1234567890"), None);
        assert_eq!(parse_stamp("1.-5"), None);
    }

    #[test]
    fn stamp_file_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("knock-flood-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        assert!(read_stamps(&p).unwrap().is_empty());
        std::fs::write(&p, "1.5\n\n2.25\noops\n").unwrap();
        let e = read_stamps(&p).unwrap_err().to_string();
        assert!(e.ends_with(":4: \"oops\" is not a timestamp"), "{e}");
        std::fs::write(&p, "1.5\n2.25\n").unwrap();
        assert_eq!(read_stamps(&p).unwrap(), vec![1_500_000_000, 2_250_000_000]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn statistics() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median(&v), Some(50.5));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
