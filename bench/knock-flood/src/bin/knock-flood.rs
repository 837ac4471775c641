//! `knock-flood`: a bounded flood of TCP SYNs from many spoofed source
//! addresses, sent as prebuilt Ethernet frames on one interface. It exists
//! for the benchmark (bench/run.sh), which runs it inside a network
//! namespace joined to the server's by a veth pair and nothing else.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use knock_flood::{ensure_private_netns, open_sender, send, Bounds, Ipv4Net, Mac, SynFrame};

/// Hard caps on --count and --seconds.
const BOUNDS: Bounds = Bounds {
    count: 100_000_000,
    seconds: 120.0,
};

#[derive(Parser, Debug)]
#[command(
    name = "knock-flood",
    version,
    about = "Send a bounded flood of TCP SYNs from spoofed sources (benchmark tool)",
    long_about = "Send a bounded flood of TCP SYNs from spoofed sources, as fast as the \
interface takes them (or at --pps). Each packet comes from the next of the first --sources \
addresses of --src-net (cycling) and goes to the ports in turn; --src-net must be private, shared or benchmarking address space. \
The flood stops at --count packets or after --seconds, whichever comes first; both have \
hard caps (100,000,000 packets, 120 s). The tool refuses to run in the host's network \
namespace: run it inside the benchmark's namespaces.",
    after_help = "Example (what bench/run.sh runs in its client namespace):\n  \
ip netns exec kbench-cli knock-flood -i kb-cli --dst-mac 02:00:00:00:00:01 \\\n    \
--dst 10.250.0.1 --port 7000 --port 7100 --sources 1000000 --src-net 10.0.0.0/12 \\\n    \
--count 20000000 --seconds 10\n\n\
Prints one line: sent=N seconds=S pps=R sources=N"
)]
struct Args {
    /// Interface to send on (e.g. the client end of the veth pair).
    #[arg(short, long)]
    iface: String,
    /// Destination MAC address (the server end of the veth pair).
    #[arg(long)]
    dst_mac: Mac,
    /// Destination IPv4 address.
    #[arg(long)]
    dst: Ipv4Addr,
    /// Destination TCP port; repeat to spread the flood over several ports.
    #[arg(short, long = "port", required = true)]
    ports: Vec<u16>,
    /// Number of distinct spoofed source addresses.
    #[arg(long, default_value_t = 100_000)]
    sources: u64,
    /// Network the spoofed sources come from.
    #[arg(long, default_value = "198.18.0.0/15")]
    src_net: Ipv4Net,
    /// Stop after this many packets (at most 100,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Stop after this many seconds (at most 120).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Packets per second at most (default: as fast as possible).
    #[arg(long)]
    pps: Option<u64>,
}

/// Refuse arguments out of bounds; the time limit of the flood.
fn check(a: &Args) -> Result<Duration> {
    BOUNDS.check_count("--count", a.count)?;
    let limit = BOUNDS.check_seconds(a.seconds)?;
    if !a.src_net.is_reserved() {
        bail!(
            "--src-net {} is not inside private, shared or benchmarking address space ({})",
            a.src_net,
            knock_flood::ALLOWED_SOURCE_NETS.join(", ")
        );
    }
    if a.sources == 0 || a.sources > a.src_net.size() {
        bail!(
            "--sources {} is outside 1..={} (the size of --src-net {})",
            a.sources,
            a.src_net.size(),
            a.src_net
        );
    }
    if a.pps == Some(0) {
        bail!("--pps 0: give a positive rate or leave it out");
    }
    Ok(limit)
}

fn run(a: &Args) -> Result<()> {
    let limit = check(a)?;
    ensure_private_netns("knock-flood")?;
    let (mut tx, src_mac) = open_sender(&a.iface)?;
    let mut frames: Vec<SynFrame> = a
        .ports
        .iter()
        .map(|&p| SynFrame::new(a.dst_mac, src_mac, a.dst, p))
        .collect();
    let nports = frames.len() as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < a.count {
        if sent.is_multiple_of(512) {
            let elapsed = start.elapsed();
            if elapsed >= limit {
                break;
            }
            if let Some(pps) = a.pps {
                let due = Duration::from_secs_f64(sent as f64 / pps as f64);
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
        // Every packet comes from the next source, so N sources need only
        // N packets; the port shifts by one on each pass over the sources,
        // so that every source reaches every port.
        let src = a.src_net.nth(sent % a.sources);
        let port = (sent + sent / a.sources) % nports;
        let sport = 1024 + (sent % 64_000) as u16;
        let frame = frames[port as usize].finish(src, sport, sent as u32);
        send(tx.as_mut(), frame)?;
        sent += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent={sent} seconds={secs:.3} pps={:.0} sources={}",
        sent as f64 / secs,
        a.sources.min(sent)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    knock_flood::exit_code("knock-flood", run(&args))
}
