//! Verification: after a knock, does the door's service answer?
//!
//! Rules:
//! * A probe is a TCP connect to HOST:PORT. The port answered when the
//!   connect completes; the connection is closed at once, nothing is sent.
//! * One probe phase lasts at most [`VERIFY_WAIT`]. Within it, a connect
//!   that fails (refused, or no answer within [`CONNECT_TIMEOUT`]) is tried
//!   again after [`PAUSE`], because the server runs its command a moment
//!   after the last hit.
//! * A run makes at most `1 + retries` attempts (knock, then probe), with
//!   `retries <= MAX_RETRIES`, so the whole run is bounded by
//!   `(1 + retries) * (VERIFY_WAIT + time to send one knock)`.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest probe phase after one knock.
pub const VERIFY_WAIT: Duration = Duration::from_secs(3);
/// Longest single connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a connect that failed early.
pub const PAUSE: Duration = Duration::from_millis(100);
/// Default number of re-knocks.
pub const DEFAULT_RETRIES: u32 = 2;
/// Largest accepted number of re-knocks.
pub const MAX_RETRIES: u32 = 10;

/// Connect to `addr` until it answers or `wait` has passed. Returns how
/// long it took, or the last connect error.
pub fn probe(addr: SocketAddr, wait: Duration) -> Result<Duration, io::Error> {
    let start = Instant::now();
    let deadline = start + wait;
    loop {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within the wait",
            ));
        }
        let tried = Instant::now();
        match TcpStream::connect_timeout(&addr, left.min(CONNECT_TIMEOUT)) {
            Ok(_stream) => return Ok(start.elapsed()),
            Err(e) => {
                let after = Instant::now();
                if after >= deadline {
                    return Err(e);
                }
                if after.duration_since(tried) < PAUSE {
                    std::thread::sleep(PAUSE.min(deadline.saturating_duration_since(after)));
                }
                if Instant::now() >= deadline {
                    return Err(e);
                }
            }
        }
    }
}

/// One attempt that did not open the port.
#[derive(Debug)]
pub struct Failed {
    /// What was sent (e.g. `sequence`, `one-time line 4`, `window 5903112`).
    pub what: String,
    pub error: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_listening_port_answers_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let took = probe(l.local_addr().unwrap(), VERIFY_WAIT).unwrap();
        assert!(took < VERIFY_WAIT);
    }

    #[test]
    fn a_closed_port_fails_within_the_wait() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let wait = Duration::from_millis(300);
        let start = Instant::now();
        let e = probe(addr, wait).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        // Bounded: the wait plus at most one pause.
        assert!(start.elapsed() < wait + PAUSE + Duration::from_millis(500));
    }
}
