//! Command-line tests of `knockd`, `knock` and `knock-gen` live in `tests/`.
//! They run the real binaries of the workspace and need no privilege.
//!
//! The binaries belong to other packages, so Cargo does not build them for
//! this one: `knock_testkit::bins` builds them once per test process, so a
//! test never runs a stale binary.

use std::path::PathBuf;

/// Path of binary `name` of workspace package `package`, built if needed.
pub fn binary(package: &str, name: &str) -> PathBuf {
    assert_eq!(
        package, name,
        "each package of the suite has one binary of its own name"
    );
    knock_testkit::bins::our_bin(name)
}

/// An `assert_cmd` command for binary `name` of package `package`.
/// `SUDO_UID`/`SUDO_GID` are removed: under `sudo cargo test` they would
/// make `knock` drop to the invoking user and lose access to the test's
/// root-owned files (tests of that drop set them explicitly).
pub fn command(package: &str, name: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(binary(package, name));
    c.env_remove("SUDO_UID").env_remove("SUDO_GID");
    c
}

/// A UDP socket on loopback that knocks can be aimed at.
pub struct UdpTarget {
    pub sock: std::net::UdpSocket,
    pub port: u16,
}

impl UdpTarget {
    /// A socket on 127.0.0.1 at a free port; `recv` waits at most `read_timeout`.
    pub fn new(read_timeout: std::time::Duration) -> Self {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(read_timeout)).unwrap();
        let port = sock.local_addr().unwrap().port();
        UdpTarget { sock, port }
    }

    /// The payload of the next datagram, which must come from loopback
    /// (panics when none arrives within the read timeout).
    pub fn recv(&self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .expect("the knock arrived within the read timeout");
        assert!(from.ip().is_loopback());
        buf[..n].to_vec()
    }

    /// True when nothing is waiting.
    pub fn idle(&self) -> bool {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let idle = self.sock.recv_from(&mut buf).is_err();
        self.sock.set_nonblocking(false).unwrap();
        idle
    }

    /// Number of datagrams that arrive within `wait` of each other
    /// (sets the read timeout to `wait`).
    pub fn count(&self, wait: std::time::Duration) -> usize {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut n = 0;
        let mut buf = [0u8; 16];
        while self.sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}
