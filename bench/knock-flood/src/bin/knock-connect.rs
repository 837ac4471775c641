//! `knock-connect`: ordinary TCP connections for the benchmark, to measure
//! what the daemon pays for traffic to the host's real services. `serve`
//! accepts and closes connections on a port; `connect` opens and closes
//! connections to it at a steady rate. Both are bounded in count and time
//! and refuse to run in the host's network namespace.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use knock_flood::{ensure_private_netns, Bounds};

/// Hard caps on --count and --seconds.
const BOUNDS: Bounds = Bounds {
    count: 10_000_000,
    seconds: 120.0,
};
/// Threads that open connections.
const CONNECT_THREADS: u64 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "knock-connect",
    version,
    about = "Accept, or open and close, TCP connections at a steady rate (benchmark tool)",
    after_help = "Example (what bench/connections.sh runs):\n  \
ip netns exec kconn-srv knock-connect serve --port 8443 --seconds 20\n  \
ip netns exec kconn-cli knock-connect connect --dst 10.252.0.1 --port 8443 \\\n    \
--rate 10000 --count 100000 --seconds 10\n\n\
`connect` prints one line: connected=N failed=N seconds=S rate=R"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Accept connections on --port and close each at once.
    Serve {
        #[arg(long)]
        port: u16,
        /// Stop after this many seconds (at most 120).
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
    },
    /// Open and close connections to --dst:--port at --rate per second.
    Connect {
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long)]
        port: u16,
        /// Connections per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Stop after this many connections (at most 10,000,000).
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Stop after this many seconds (at most 120).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

fn serve(port: u16, seconds: f64) -> Result<()> {
    let limit = BOUNDS.check_seconds(seconds)?;
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("bind port {port}"))?;
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    // Blocking accepts on a thread; the process ends when the time is up.
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(s);
        }
    });
    std::thread::sleep(limit);
    println!("accepted={}", accepted.load(Ordering::Relaxed));
    Ok(())
}

/// Close with an RST (linger 0): the client keeps no TIME_WAIT entry, so
/// its ephemeral ports last the whole run.
fn abort(s: TcpStream) -> Result<()> {
    let l = nix::sys::socket::sockopt::Linger;
    let v = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s.as_fd(), l, &v).context("SO_LINGER")?;
    drop(s);
    Ok(())
}

fn connect(dst: Ipv4Addr, port: u16, rate: u64, count: u64, seconds: f64) -> Result<()> {
    let limit = BOUNDS.check_seconds(seconds)?;
    BOUNDS.check_count("--count", count)?;
    if rate == 0 {
        bail!("--rate 0: give a positive rate");
    }
    let to = SocketAddr::from((dst, port));
    let start = Instant::now();
    // A few threads share the rate, so one slow handshake does not hold
    // the others up.
    let threads = CONNECT_THREADS.min(count);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let share = count / threads + u64::from(t < count % threads);
            let interval = Duration::from_secs_f64(threads as f64 / rate as f64);
            std::thread::spawn(move || -> Result<(u64, u64)> {
                let (mut ok, mut failed) = (0u64, 0u64);
                while ok + failed < share && start.elapsed() < limit {
                    // Pace against the clock, so a slow connect is made up for.
                    let due = start + interval.mul_f64((ok + failed) as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                        Ok(s) => {
                            abort(s)?;
                            ok += 1;
                        }
                        Err(_) => failed += 1,
                    }
                }
                Ok((ok, failed))
            })
        })
        .collect();
    let (mut ok, mut failed) = (0u64, 0u64);
    for w in workers {
        let (o, f) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a connecting thread panicked"))??;
        ok += o;
        failed += f;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "connected={ok} failed={failed} seconds={secs:.3} rate={:.0}",
        ok as f64 / secs
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = ensure_private_netns("knock-connect").and_then(|()| match args.cmd {
        Cmd::Serve { port, seconds } => serve(port, seconds),
        Cmd::Connect {
            dst,
            port,
            rate,
            count,
            seconds,
        } => connect(dst, port, rate, count, seconds),
    });
    knock_flood::exit_code("knock-connect", r)
}
