//! `knock-probe`: knocks doors with real (unspoofed) TCP SYN sequences and
//! measures, from stamp files written by the doors' start commands
//! (`knock-stamp`), how long each knock took to run its command and how
//! many knocks were detected at all.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use knock_flood::{
    ensure_private_netns, median, open_sender, percentile, read_stamps, realtime_ns, send, Bounds,
    Mac, SynFrame,
};
use pnet::datalink::DataLinkSender;

/// Hard caps on --knocks and --seconds.
const BOUNDS: Bounds = Bounds {
    count: 100_000,
    seconds: 600.0,
};

#[derive(Debug, Clone)]
struct DoorArg {
    name: String,
    ports: Vec<u16>,
    stamps: PathBuf,
}

impl FromStr for DoorArg {
    type Err = String;
    fn from_str(s: &str) -> Result<DoorArg, String> {
        let bad = || format!("door \"{s}\" is not NAME:PORT,PORT,...:STAMPFILE");
        let (name, rest) = s.split_once(':').ok_or_else(bad)?;
        let (ports, path) = rest.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || path.is_empty() {
            return Err(bad());
        }
        let ports = ports
            .split(',')
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("door \"{s}\": \"{p}\" is not a port number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DoorArg {
            name: name.to_string(),
            ports,
            stamps: PathBuf::from(path),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One knock at a time; wait for its stamp before the next.
    Latency,
    /// Knock every --interval-ms regardless of answers, for --seconds.
    Stream,
}

#[derive(Parser, Debug)]
#[command(
    name = "knock-probe",
    version,
    about = "Knock doors with TCP SYN sequences and measure knock-to-command latency (benchmark tool)",
    long_about = "Knock doors with TCP SYN sequences sent as raw Ethernet frames and read the \
stamp files their start commands (knock-stamp FILE) append to. The latency of a knock runs \
from just before its last hit is sent to the stamp. `latency` mode knocks one door at a time \
and waits for the stamp (or --timeout-ms) before going on; `stream` mode knocks every door \
every --interval-ms for --seconds, then waits --timeout-ms for late stamps and counts how \
many knocks were detected. Knock number i is sent from the (i mod n)-th --src address: \
with enough addresses, no address knocks a door again within its Seq_Timeout of the \
opening (such a re-knock is a straggler, which our daemon ignores by design). Refuses to \
run in the host's network namespace.",
    after_help = "Example (what bench/run.sh runs in its client namespace):\n  \
ip netns exec kbench-cli knock-probe -i kb-cli --dst-mac 02:00:00:00:00:01 \\\n    \
--src 10.250.0.2 --dst 10.250.0.1 --mode latency --knocks 50 \\\n    \
--door ours:7000,8000,9000:/tmp/ours.stamps --door classic:7100,8100,9100:/tmp/classic.stamps\n\n\
Prints one line per door:\n  door=NAME sent=N detected=D median_ms=X p99_ms=Y max_ms=Z"
)]
struct Args {
    /// Interface to send on.
    #[arg(short, long)]
    iface: String,
    /// Destination MAC address (the server's interface).
    #[arg(long)]
    dst_mac: Mac,
    /// Source IPv4 address (an address of this namespace); repeatable:
    /// successive knocks take the addresses in turn.
    #[arg(long = "src", required = true)]
    srcs: Vec<Ipv4Addr>,
    /// Destination IPv4 address.
    #[arg(long)]
    dst: Ipv4Addr,
    /// A door to knock: NAME:PORT,PORT,...:STAMPFILE (repeatable).
    #[arg(long = "door", required = true)]
    doors: Vec<DoorArg>,
    #[arg(long, value_enum, default_value_t = Mode::Latency)]
    mode: Mode,
    /// Knocks per door in latency mode; upper bound in stream mode.
    #[arg(long, default_value_t = 50)]
    knocks: usize,
    /// Pause between knocks (latency mode) or knock period (stream mode).
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Gap between the hits of one knock.
    #[arg(long, default_value_t = 0)]
    gap_ms: u64,
    /// Stream mode: how long to keep knocking.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long to wait for a stamp (latency mode: per knock; stream
    /// mode: after the last knock).
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

struct Door {
    arg: DoorArg,
    frames: Vec<SynFrame>,
    baseline: usize,
    sent: Vec<i128>,
    latencies_ms: Vec<f64>,
    detected: usize,
}

fn knock(
    tx: &mut dyn DataLinkSender,
    d: &mut Door,
    src: Ipv4Addr,
    sport: u16,
    gap: Duration,
) -> Result<i128> {
    let n = d.frames.len();
    let mut t = 0;
    for (i, f) in d.frames.iter_mut().enumerate() {
        if i > 0 && !gap.is_zero() {
            std::thread::sleep(gap);
        }
        if i + 1 == n {
            t = realtime_ns();
        }
        send(tx, f.finish(src, sport, 1000 + i as u32))?;
    }
    d.sent.push(t);
    Ok(t)
}

fn run(a: &Args) -> Result<()> {
    BOUNDS.check_count("--knocks", u64::try_from(a.knocks).unwrap_or(u64::MAX))?;
    let limit = BOUNDS.check_seconds(a.seconds)?;
    if let Some(d) = a.doors.iter().find(|d| d.ports.is_empty()) {
        bail!("door \"{}\" has no ports", d.name);
    }
    ensure_private_netns("knock-probe")?;
    let (mut tx, src_mac) = open_sender(&a.iface)?;
    let mut doors = Vec::new();
    for d in &a.doors {
        doors.push(Door {
            frames: d
                .ports
                .iter()
                .map(|&p| SynFrame::new(a.dst_mac, src_mac, a.dst, p))
                .collect(),
            baseline: read_stamps(&d.stamps)?.len(),
            arg: d.clone(),
            sent: Vec::new(),
            latencies_ms: Vec::new(),
            detected: 0,
        });
    }
    let gap = Duration::from_millis(a.gap_ms);
    let interval = Duration::from_millis(a.interval_ms);
    let timeout = Duration::from_millis(a.timeout_ms);
    let n = doors.len();
    match a.mode {
        Mode::Latency => {
            for round in 0..a.knocks {
                for k in 0..n {
                    // Alternate which door goes first.
                    let d = &mut doors[(round + k) % n];
                    let before = d.baseline + d.detected;
                    let sport = 20_000 + (round % 40_000) as u16;
                    let src = a.srcs[round % a.srcs.len()];
                    let t = knock(tx.as_mut(), d, src, sport, gap)?;
                    let deadline = Instant::now() + timeout;
                    loop {
                        let stamps = read_stamps(&d.arg.stamps)?;
                        if stamps.len() > before {
                            d.latencies_ms.push((stamps[before] - t) as f64 / 1e6);
                            // Later duplicates (none expected) are skipped.
                            d.detected = stamps.len() - d.baseline;
                            break;
                        }
                        if Instant::now() >= deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                std::thread::sleep(interval);
            }
        }
        Mode::Stream => {
            let start = Instant::now();
            let mut round = 0usize;
            while start.elapsed() < limit && round < a.knocks {
                for k in 0..n {
                    let d = &mut doors[(round + k) % n];
                    let src = a.srcs[round % a.srcs.len()];
                    knock(tx.as_mut(), d, src, 20_000 + (round % 40_000) as u16, gap)?;
                }
                round += 1;
                let next = interval * round as u32;
                if let Some(wait) = next.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            // Late stamps: wait until every door has them all, or timeout.
            let deadline = Instant::now() + timeout;
            loop {
                let mut all = true;
                for d in &mut doors {
                    let stamps = read_stamps(&d.arg.stamps)?;
                    let new = &stamps[d.baseline.min(stamps.len())..];
                    d.detected = new.len().min(d.sent.len());
                    all &= d.detected == d.sent.len();
                }
                if all || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Each stamp belongs to the latest knock sent before it.
            for d in &mut doors {
                let stamps = read_stamps(&d.arg.stamps)?;
                for &s in stamps.iter().skip(d.baseline) {
                    if let Some(&t) = d.sent.iter().rev().find(|&&t| t <= s) {
                        d.latencies_ms.push((s - t) as f64 / 1e6);
                    }
                }
            }
        }
    }
    for d in &mut doors {
        d.latencies_ms.sort_by(f64::total_cmp);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
        println!(
            "door={} sent={} detected={} median_ms={} p99_ms={} max_ms={}",
            d.arg.name,
            d.sent.len(),
            d.detected,
            fmt(median(&d.latencies_ms)),
            fmt(percentile(&d.latencies_ms, 99.0)),
            fmt(d.latencies_ms.last().copied()),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    knock_flood::exit_code("knock-probe", run(&args))
}
