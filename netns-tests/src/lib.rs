//! Harness for end-to-end tests of the knock suite in throw-away network
//! namespaces.
//!
//! Every test builds a [`Lab`]: a server and a client namespace joined by a
//! veth pair (IPv4 and IPv6), created through rtnetlink and deleted again on
//! drop, also when the test fails. Daemons and clients run inside the
//! namespaces via `ip netns exec`. The tests need root; see
//! [`require_root`].
//!
//! ```text
//! cargo build -p knockd -p knock -p knock-gen   # optional: the tests build them too
//! sudo -E cargo test -p netns-tests
//! ```

pub mod bins;
pub mod frames;
pub mod lab;
pub mod netlink;
pub mod proc;
pub mod wait;

use std::fmt::Write as _;

pub use lab::{expect_file, expect_no_file, Daemon, Host, Lab};
pub use proc::{Proc, RunOutput};

/// Whether the tests may run. As root: `true`. Otherwise a loud skip
/// message goes to stderr and the result is `false` — except when the
/// environment variable `CI` is `true`, where a skip is a failure (panic).
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let msg = format!(
        "\n{bar}\nSKIPPED {test}: the network-namespace tests need root.\n\
         Run them as root, e.g. `sudo -E cargo test -p netns-tests`.\n{bar}\n",
        bar = "!".repeat(72)
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}CI=true: a skipped end-to-end test is a failure");
    }
    eprintln!("{msg}");
    false
}

/// Return early from a test (with a loud message) unless running as root;
/// under `CI=true` fail instead. Use as the first line of every test.
#[macro_export]
macro_rules! require_root {
    ($name:expr) => {
        if !$crate::require_root($name) {
            return;
        }
    };
}

/// Builder for knockd configuration files (same syntax for the classic
/// daemon and ours).
#[derive(Debug, Default, Clone)]
pub struct Conf {
    text: String,
}

impl Conf {
    /// `[options]` with the given `key = value` lines (may be empty).
    pub fn new(options: &[(&str, &str)]) -> Conf {
        let mut c = Conf {
            text: String::from("[options]\n"),
        };
        for (k, v) in options {
            let _ = writeln!(c.text, "    {k} = {v}");
        }
        c
    }

    /// A door `[name]` with `key = value` directives.
    pub fn door(mut self, name: &str, directives: &[(&str, &str)]) -> Conf {
        let _ = writeln!(self.text, "\n[{name}]");
        for (k, v) in directives {
            let _ = writeln!(self.text, "    {k} = {v}");
        }
        self
    }

    /// A raw line (e.g. a bare `UseSyslog`) appended as is.
    pub fn line(mut self, line: &str) -> Conf {
        self.text.push_str(line);
        self.text.push('\n');
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Conf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
