//! Library of the `knock` program: command line, packet construction,
//! address resolution and the senders (raw sockets or ordinary sockets).

pub mod cli;
pub mod net;
pub mod packet;
pub mod send;

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use knock_common::otp::{self, OtpError};

use crate::cli::{Cli, Hit};
use crate::net::ResolveError;
use crate::send::{OpenError, SendError, Sender};

/// Everything that makes `knock` exit with status 1.
#[derive(Debug, thiserror::Error)]
pub enum KnockError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Otp(#[from] OtpError),
    #[error("{}: no unused sequence left ({used} used); add more with knock-gen", path.display())]
    OtpExhausted { path: PathBuf, used: usize },
    #[error(
        "{}:{line_no}: the sequence was sent but could not be marked used: {source}",
        path.display()
    )]
    OtpMark {
        path: PathBuf,
        line_no: usize,
        #[source]
        source: OtpError,
    },
}

/// The classic `-v` line: `hitting tcp 192.0.2.1:7000` (IPv6 addresses
/// unbracketed, as the classic client prints them), with the flags added
/// when they are not just SYN.
pub fn hit_line(dst: IpAddr, hit: &Hit) -> String {
    format!("hitting {} {}:{}", hit.describe_proto(), dst, hit.port)
}

/// Send `hits` to `dst` in order, waiting `delay` between hits. Stops at
/// the first hit that cannot be sent. With `verbose`, each hit is printed
/// to `out` before it is sent.
pub fn send_all(
    sender: &mut dyn Sender,
    dst: IpAddr,
    hits: &[Hit],
    delay: Duration,
    mut verbose: Option<&mut dyn Write>,
) -> Result<(), SendError> {
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(out) = verbose.as_deref_mut() {
            let _ = writeln!(out, "{}", hit_line(dst, hit));
            let _ = out.flush();
        }
        sender.send(dst, hit)?;
    }
    Ok(())
}

/// Run `knock` with `args` (program name first). Returns the exit status.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return code;
        }
    };
    match knock(&cli, out, err) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "knock: {e}");
            1
        }
    }
}

fn knock(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), KnockError> {
    let otp_line = match &cli.otp {
        None => None,
        Some(path) => {
            let scan = otp::scan(path)?;
            for w in &scan.warnings {
                let _ = writeln!(
                    err,
                    "knock: {}:{}: skipping line: {}",
                    path.display(),
                    w.line_no,
                    w.reason()
                );
            }
            match scan.current() {
                Some(line) => Some((path, line.clone())),
                None => {
                    return Err(KnockError::OtpExhausted {
                        path: path.clone(),
                        used: scan.used,
                    })
                }
            }
        }
    };
    let hits = match &otp_line {
        Some((_, line)) => cli.hits_of(line.sequence.knocks()),
        None => cli.hits(),
    };
    let dst = net::resolve(&cli.host, cli.family())?;
    let (mut sender, note) = send::open(dst, &hits)?;
    if cli.verbose {
        if let Some(note) = note {
            let _ = writeln!(err, "knock: {note}");
        }
        if let Some((path, line)) = &otp_line {
            let _ = writeln!(
                out,
                "using one-time sequence {}:{}: {}",
                path.display(),
                line.line_no,
                line.sequence
            );
        }
    }
    let verbose: Option<&mut dyn Write> = if cli.verbose { Some(out) } else { None };
    send_all(sender.as_mut(), dst, &hits, cli.delay(), verbose)?;
    if let Some((path, line)) = otp_line {
        otp::mark_used(path, &line).map_err(|source| KnockError::OtpMark {
            path: path.clone(),
            line_no: line.line_no,
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{FIN, SYN};
    use knock_common::Proto;
    use std::io;

    /// Records what it was asked to send; fails on one chosen port.
    struct Recorder {
        sent: Vec<(IpAddr, Hit)>,
        fail_on: Option<u16>,
    }

    impl Sender for Recorder {
        fn send(&mut self, dst: IpAddr, hit: &Hit) -> Result<(), SendError> {
            if Some(hit.port) == self.fail_on {
                return Err(SendError::Io {
                    dst,
                    hit: *hit,
                    source: io::Error::from_raw_os_error(libc::ENETUNREACH),
                });
            }
            self.sent.push((dst, *hit));
            Ok(())
        }
    }

    fn hits() -> Vec<Hit> {
        vec![
            Hit {
                port: 7000,
                proto: Proto::Tcp,
                flags: SYN,
            },
            Hit {
                port: 8000,
                proto: Proto::Udp,
                flags: SYN,
            },
            Hit {
                port: 9000,
                proto: Proto::Tcp,
                flags: FIN,
            },
        ]
    }

    #[test]
    fn sends_every_hit_in_order_and_prints_like_classic() {
        let dst: IpAddr = "192.0.2.1".parse().unwrap();
        let mut r = Recorder {
            sent: vec![],
            fail_on: None,
        };
        let mut out = Vec::new();
        send_all(&mut r, dst, &hits(), Duration::ZERO, Some(&mut out)).unwrap();
        assert_eq!(r.sent.iter().map(|(_, h)| *h).collect::<Vec<_>>(), hits());
        assert!(r.sent.iter().all(|(d, _)| *d == dst));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "hitting tcp 192.0.2.1:7000\nhitting udp 192.0.2.1:8000\nhitting tcp (fin) 192.0.2.1:9000\n"
        );
    }

    #[test]
    fn stops_at_the_first_failure() {
        let dst: IpAddr = "2001:db8::1".parse().unwrap();
        let mut r = Recorder {
            sent: vec![],
            fail_on: Some(8000),
        };
        let e = send_all(&mut r, dst, &hits(), Duration::ZERO, None).unwrap_err();
        assert_eq!(r.sent.len(), 1);
        assert!(
            e.to_string()
                .starts_with("hitting udp [2001:db8::1]:8000: "),
            "{e}"
        );
    }

    #[test]
    fn usage_errors_and_help() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(["knock", "--help"], &mut out, &mut err), 0);
        assert!(String::from_utf8_lossy(&out).contains("Examples:"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(["knock", "h", "0"], &mut out, &mut err), 2);
        assert!(String::from_utf8_lossy(&err).contains("port \"0\""));
    }

    #[test]
    fn exhausted_otp_file_fails_before_sending() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "#1000,2000\n# note\n").unwrap();
        let p = f.path().to_str().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(["knock", "--otp", p, "127.0.0.1"], &mut out, &mut err);
        assert_eq!(code, 1);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err,
            format!("knock: {p}: no unused sequence left (2 used); add more with knock-gen\n")
        );
    }
}
