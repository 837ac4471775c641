//! The command line of `knock-gen` (also used to generate its manual page
//! and shell completions).

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use crate::{GenError, Output, PortList, PortRange, ProtoChoice, Spec};

const AFTER_HELP: &str = "\
Examples:
  Write 20 sequences of 3 TCP hits on ports 1024-65535 to a new file:
      knock-gen -o seqs
  50 sequences of 4 hits, TCP and UDP mixed, avoiding ports in use:
      knock-gen -n 50 -k 4 -p mixed --ports 10000-60000 \\
                --exclude 22,80,443 --exclude 6000-6010 -o seqs
  Add 20 more sequences to the server's file while knockd runs (safe: lines
  already there are never rewritten nor repeated), then copy the file to the
  client again so both copies hold the same lines:
      knock-gen --append -o /etc/knockd/seqs
      scp /etc/knockd/seqs me@laptop:.knock-seqs
  Replace an existing file:
      knock-gen --force -o seqs
  Print 5 sequences on standard output:
      knock-gen -n 5 -o -

Pairing a server and a client:
  1. Generate the file once:
         knock-gen -o seqs
  2. Install it on the server, readable by root only:
         install -m 600 seqs /etc/knockd/seqs
     and point a door at it in /etc/knockd.conf:
         [openSSH]
             One_Time_Sequences = /etc/knockd/seqs
             Seq_Timeout        = 10
             Command            = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
     then check the configuration:
         knockd --check -c /etc/knockd.conf
  3. Copy the same file to the client over a secure channel, then knock
     with it from the client:
         scp seqs me@laptop:.knock-seqs
         knock --otp ~/.knock-seqs server.example.org
  Both sides cross out a line (first byte becomes '#') after each knock and
  then use the next one, so the two copies stay in step as long as each knock
  arrives. If they drift apart, generate a fresh file and install it on both.

Rotating sequences (no file to keep in step, only a shared key):
  1. Write a new key (32 random bytes, base32, mode 0600):
         knock-gen --secret -o knock.key
  2. Install it on the server and name it in a door of /etc/knockd.conf:
         install -m 600 knock.key /etc/knockd/ssh.key
         [ssh]
             Sequence_Secret = /etc/knockd/ssh.key
             Command         = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
  3. Copy it to the client over a secure channel (keep it mode 0600) and knock:
         knock --secret ~/.knock.key --door ssh server.example.org
  The sequence changes every 30 seconds; see knockd.conf(5).

Each line of the file is one sequence in knockd's Sequence syntax, starting
with a space (e.g. \" 40713:tcp,2861:tcp,51174:tcp\"). The numbers come from
the operating system's cryptographically secure random number generator. A
new file gets mode 0600 and is written atomically; an existing file is never
replaced without --force.";

/// Generate one-time knock sequences for knockd (One_Time_Sequences) and knock (--otp), or a key for rotating sequences (--secret).
#[derive(Debug, Parser)]
#[command(name = "knock-gen", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Number of sequences to generate
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 20)]
    pub count: usize,

    /// Hits per sequence (no port is used twice in a sequence)
    #[arg(short = 'k', long = "length", value_name = "K", default_value_t = 3)]
    pub length: usize,

    /// Range of ports to draw from, LOW-HIGH (or a single PORT)
    #[arg(long = "ports", value_name = "LOW-HIGH", default_value = "1024-65535")]
    pub ports: PortRange,

    /// Ports never to use: a comma list of ports and LOW-HIGH ranges; repeatable
    #[arg(short = 'x', long = "exclude", value_name = "LIST")]
    pub exclude: Vec<PortList>,

    /// Protocol of the hits: tcp, udp, or mixed (each hit TCP or UDP at random)
    #[arg(short = 'p', long = "protocol", value_enum, default_value_t = ProtoChoice::Tcp)]
    pub protocol: ProtoChoice,

    /// File to write, or - for standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,

    /// Add the sequences to FILE (created if missing), never repeating one already there
    #[arg(short = 'a', long = "append", conflicts_with = "force")]
    pub append: bool,

    /// Replace FILE if it exists
    #[arg(short = 'f', long = "force")]
    pub force: bool,

    /// Write a new 32-byte key for rotating sequences (Sequence_Secret, knock --secret) instead of sequences
    #[arg(
        long = "secret",
        conflicts_with_all = ["count", "length", "ports", "exclude", "protocol", "append"]
    )]
    pub secret: bool,
}

impl Cli {
    /// Do what the command line asks: sequences go to the file or to `out`
    /// (`-o -`), messages to `err`. Returns the process exit status
    /// (0 success, 1 failure).
    pub fn run(&self, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
        match self.try_run(out) {
            Ok(messages) => {
                for m in messages {
                    let _ = writeln!(err, "knock-gen: {m}");
                }
                0
            }
            Err(m) => {
                let _ = writeln!(err, "knock-gen: {m}");
                1
            }
        }
    }

    /// The work of [`Cli::run`]: `Ok` carries the lines to report.
    fn try_run(&self, out: &mut dyn Write) -> Result<Vec<String>, GenError> {
        if self.secret {
            return self.write_secret();
        }
        let spec = Spec {
            count: self.count,
            length: self.length,
            range: self.ports,
            exclude: self.exclude.iter().flat_map(|l| l.0.clone()).collect(),
            proto: self.protocol,
        };
        let to_stdout = self.output.as_os_str() == "-";
        let output = match (to_stdout, self.append) {
            (true, true) => return Err(GenError::AppendToStdout),
            (true, false) => Output::Stdout,
            (false, true) => Output::Append(self.output.clone()),
            (false, false) => Output::New {
                path: self.output.clone(),
                replace: self.force,
            },
        };
        spec.validate()?;
        let mut rng = crate::os_rng()?;
        let report = crate::run(&spec, &output, &mut rng, out)?;
        let mut messages = Vec::new();
        if let Some(usable) = report.usable_after {
            let verb = if self.append { "appended" } else { "wrote" };
            messages.push(format!(
                "{verb} {} sequences of {} {} hits (ports {}) to {}; {usable} usable",
                report.written,
                spec.length,
                spec.proto,
                spec.range,
                self.output.display(),
            ));
        }
        if let Some(mode) = report.loose_mode {
            messages.push(format!(
                "warning: {} has mode {mode:04o}; others can read its secrets (chmod 600 {})",
                self.output.display(),
                self.output.display(),
            ));
        }
        Ok(messages)
    }

    /// `--secret`: write a new key file, never to standard output (a key on a
    /// terminal or in a pipe is too easy to leak).
    fn write_secret(&self) -> Result<Vec<String>, GenError> {
        if self.output.as_os_str() == "-" {
            return Err(GenError::SecretToStdout);
        }
        crate::write_secret(&self.output, self.force)?;
        Ok(vec![format!(
            "wrote a new {}-byte key to {} (mode 0600)",
            knock_common::rotate::GENERATED_KEY_BYTES,
            self.output.display()
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn run(args: &[&str]) -> (u8, String, String) {
        let cli = Cli::try_parse_from(std::iter::once("knock-gen").chain(args.iter().copied()))
            .expect("arguments parse");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cli.run(&mut out, &mut err);
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        (code, text(out), text(err))
    }

    #[test]
    fn run_prints_sequences_on_standard_output() {
        let (code, out, err) = run(&["-n", "3", "-k", "2", "-o", "-"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out
            .lines()
            .all(|l| l.starts_with(' ') && l.matches(',').count() == 1));
    }

    #[test]
    fn run_refuses_append_or_secret_to_standard_output() {
        for args in [&["--append", "-o", "-"][..], &["--secret", "-o", "-"][..]] {
            let (code, out, err) = run(args);
            assert_eq!(code, 1);
            assert!(out.is_empty());
            assert!(
                err.starts_with("knock-gen: ") && err.contains("-o"),
                "{err}"
            );
        }
    }
}
