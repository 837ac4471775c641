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
pub mod cases;
pub mod frames;
pub mod lab;
pub mod netlink;
pub mod ns;
pub mod proc;
pub mod scenario;
pub mod wait;

use std::fmt::Write as _;

pub use lab::{expect_file, expect_no_file, Daemon, Host, Lab, Link};
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
    // Straight to the stderr handle: the test harness captures `eprintln!`
    // of passing tests, and this message must not be hidden.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
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

    /// A door `name` opened by `Sequence = sequence` whose `Start_Command`
    /// is `command`, with the `extra` directives after these.
    pub fn door_cmd(
        self,
        name: &str,
        sequence: &str,
        command: &str,
        extra: &[(&str, &str)],
    ) -> Conf {
        self.door_from(name, ("Sequence", sequence), command, extra)
    }

    /// Like [`Conf::door_cmd`] for a door of the one-time sequences in
    /// `file` (`One_Time_Sequences`).
    pub fn otp_door_cmd(
        self,
        name: &str,
        file: &std::path::Path,
        command: &str,
        extra: &[(&str, &str)],
    ) -> Conf {
        let file = file.display().to_string();
        self.door_from(name, ("One_Time_Sequences", &file), command, extra)
    }

    fn door_from(
        self,
        name: &str,
        source: (&str, &str),
        command: &str,
        extra: &[(&str, &str)],
    ) -> Conf {
        let mut dirs = vec![source, ("Start_Command", command)];
        dirs.extend_from_slice(extra);
        self.door(name, &dirs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conf_renders_options_doors_and_raw_lines() {
        let c = Conf::new(&[("LogFile", "/tmp/x.log")])
            .line("    UseSyslog")
            .door(
                "ssh",
                &[("Sequence", "7000,8000:udp"), ("Command", "a = b %IP%")],
            );
        assert_eq!(
            c.text(),
            "[options]\n    LogFile = /tmp/x.log\n    UseSyslog\n\n[ssh]\n    \
             Sequence = 7000,8000:udp\n    Command = a = b %IP%\n"
        );
        assert_eq!(c.to_string(), c.text());
    }

    #[test]
    fn door_cmd_and_otp_door_cmd_put_source_and_command_before_extra() {
        let c = Conf::new(&[])
            .door_cmd("a", "7000,8000:udp", "echo %IP%", &[("Seq_Timeout", "1")])
            .otp_door_cmd("b", std::path::Path::new("/x/seqs"), "true", &[]);
        assert_eq!(
            c.text(),
            "[options]\n\n[a]\n    Sequence = 7000,8000:udp\n    Start_Command = echo %IP%\n    \
             Seq_Timeout = 1\n\n[b]\n    One_Time_Sequences = /x/seqs\n    Start_Command = true\n"
        );
    }

    #[test]
    fn wait_helpers_see_files_and_log_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out");
        let err = wait::wait_for_file(&f, Duration::from_millis(60)).unwrap_err();
        assert!(err.contains("did not appear"), "{err}");
        assert!(wait::assert_file_absent_for(&f, Duration::from_millis(60)).is_ok());
        // A partial line is not complete yet.
        std::fs::write(&f, "10.0.0").unwrap();
        assert!(wait::wait_for_file(&f, Duration::from_millis(60)).is_err());
        std::fs::write(&f, "10.0.0.1\nStage 1\nStage 1\n").unwrap();
        assert_eq!(
            wait::wait_for_file(&f, Duration::from_millis(60)).unwrap(),
            "10.0.0.1\nStage 1\nStage 1\n"
        );
        assert!(wait::wait_for_log_count(&f, "Stage 1", 2, Duration::ZERO).is_ok());
        let err = wait::wait_for_log(&f, "OPEN SESAME", Duration::from_millis(40)).unwrap_err();
        assert!(err.contains("Stage 1"), "the error shows the log: {err}");
        assert!(wait::assert_file_absent_for(&f, Duration::from_millis(40)).is_err());
    }

    #[test]
    fn malformed_frames_are_ethernet_frames_aimed_at_the_server() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let frames = frames::malformed_frames(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            "fd00::2".parse::<Ipv6Addr>().unwrap(),
            "fd00::1".parse::<Ipv6Addr>().unwrap(),
            7000,
        );
        assert!(frames.len() >= 20);
        for (what, f) in &frames {
            assert!(f.len() >= 14, "{what}");
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            assert!(
                [0x0800, 0x86dd, 0x8100, 0x88a8].contains(&ethertype),
                "{what}"
            );
            if ethertype == 0x0800 && f.len() >= 34 {
                assert_eq!(&f[30..34], &[10, 0, 0, 1], "{what}: destination");
            }
        }
    }

    #[test]
    fn target_dir_is_inside_the_workspace_by_default() {
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(bins::target_dir(), bins::workspace_root().join("target"));
        }
        assert!(bins::workspace_root().join("Cargo.toml").exists());
    }
}
