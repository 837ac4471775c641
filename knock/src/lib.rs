//! Library of the `knock` program: command line, packet construction,
//! address resolution and the senders (raw sockets or ordinary sockets).

pub mod cli;
pub mod net;
pub mod packet;
pub mod plan;
pub mod privilege;
pub mod profile;
pub mod send;
pub mod verify;

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use knock_common::otp::{self, OtpError, OtpLine};
use knock_common::rotate;

use crate::cli::{Cli, SourceAddress, Target};
use crate::net::ResolveError;
use crate::packet::Hit;
use crate::plan::{Knocks, Plan, PlanError};
use crate::privilege::{Action, PrivilegeError};
use crate::profile::{ProfileError, Profiles, Settings};
use crate::send::{OpenError, RawSockets, SendError, Sender};
use crate::verify::Failed;

/// Everything that makes `knock` exit with status 1.
#[derive(Debug, thiserror::Error)]
pub enum KnockError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Send(#[from] HitError),
    #[error(transparent)]
    Otp(#[from] OtpError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
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
    #[error("cannot find the local address to send to {dst} from: {source}")]
    Source {
        dst: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{addr} did not answer after {} knock(s) in {:.1} s: {}",
        failures.len(),
        elapsed.as_secs_f64(),
        describe_failures(failures)
    )]
    NotVerified {
        addr: SocketAddr,
        failures: Vec<Failed>,
        elapsed: Duration,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

fn describe_failures(failures: &[Failed]) -> String {
    failures
        .iter()
        .enumerate()
        .map(|(i, f)| format!("attempt {} ({}): {}", i + 1, f.what, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A hit that could not be sent, named by its position: its port may be
/// a secret (a profile, a one-time line, a rotating door).
#[derive(Debug, thiserror::Error)]
#[error("hit {number} of {total}: {source}")]
pub struct HitError {
    pub number: usize,
    pub total: usize,
    #[source]
    pub source: SendError,
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
) -> Result<(), HitError> {
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(out) = verbose.as_deref_mut() {
            let _ = writeln!(out, "{}", hit_line(dst, hit));
            let _ = out.flush();
        }
        sender.send(dst, hit).map_err(|source| HitError {
            number: i + 1,
            total: hits.len(),
            source,
        })?;
    }
    Ok(())
}

/// Whether a run gives up the privilege that opened its raw sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    /// The program: drop as `privilege` decides (sudo, setuid, setcap).
    Drop,
    /// Leave the process's ids and capabilities alone: for tests that run
    /// the library inside their own process (a drop there would change the
    /// ids of the whole test process, e.g. under `sudo cargo test`).
    Keep,
}

/// Run `knock` with `args` (program name first), as the program does
/// (privilege dropped once the raw sockets are open). Returns the exit
/// status.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, out, err, Privileges::Drop)
}

/// [`run`] with a choice of [`Privileges`].
pub fn run_with<I, T>(
    args: I,
    out: &mut dyn Write,
    err: &mut dyn Write,
    privileges: Privileges,
) -> i32
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
    match knock(&cli, privileges, out, err) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "knock: {e}");
            1
        }
    }
}

/// The home directory: the invoking user's from the password database
/// after a drop to `SUDO_UID` (sudo may have set `HOME` to root's),
/// otherwise `HOME`, otherwise the password database.
fn home_dir(sudo_drop: bool) -> Option<PathBuf> {
    let from_passwd = || {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    if sudo_drop {
        return from_passwd();
    }
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
        _ => from_passwd(),
    }
}

fn load_profiles(
    cli: &Cli,
    home: Option<&std::path::Path>,
    hint: &str,
    err: &mut dyn Write,
) -> Result<Profiles, KnockError> {
    let path = match &cli.profiles {
        Some(p) => p.clone(),
        None => {
            let xdg = std::env::var("XDG_CONFIG_HOME").ok();
            profile::default_path(xdg.as_deref(), home).ok_or(ProfileError::NoHome)?
        }
    };
    let profiles = Profiles::load(&path, home).map_err(|e| match e {
        ProfileError::Read { path, source, .. } => ProfileError::Read {
            path,
            source,
            hint: hint.to_string(),
        },
        e => e,
    })?;
    if let Some(w) = profiles.exposure_warning() {
        let _ = writeln!(err, "knock: warning: {w}");
    }
    Ok(profiles)
}

fn knock(
    cli: &Cli,
    privileges: Privileges,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), KnockError> {
    // Raw sockets first, then give up the privilege that opened them,
    // before any file is read or any name resolved.
    let sends = !cli.list && !cli.show;
    let mut raw = if sends {
        RawSockets::open_all()
    } else {
        RawSockets::none()
    };
    let action = match privileges {
        Privileges::Drop => privilege::decide(&privilege::current())?,
        Privileges::Keep => Action::Keep,
    };
    privilege::apply(&action)?;
    let sudo_drop = matches!(
        action,
        Action::ToUser {
            reset_groups: true,
            ..
        }
    );
    let home = home_dir(sudo_drop);
    let (settings, origin) = match cli.target() {
        Target::List => {
            let p = load_profiles(cli, home.as_deref(), "", err)?;
            write!(out, "{}", p.render_list()).map_err(KnockError::Output)?;
            return Ok(());
        }
        Target::Profile(name) => {
            let p = load_profiles(cli, home.as_deref(), profile::HOST_HINT, err)?;
            let s = p.settings(name, profile::HOST_HINT)?;
            (s, format!("profile \"{name}\" of {}", p.path.display()))
        }
        Target::Host(_) => (Settings::default(), "the command line".to_string()),
    };
    let plan = plan::build(plan::overlay(settings, cli), cli, &origin)?;
    execute(&plan, &mut raw, cli.verbose, out, err)
}

/// One knock to send: its hits, what to call it, and the one-time line to
/// mark once it is sent.
struct Attempt {
    hits: Vec<Hit>,
    what: String,
    otp_line: Option<(PathBuf, OtpLine)>,
    window: Option<u64>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The hits of the next attempt. `previous` is the window of the previous
/// rotating attempt.
fn next_attempt(
    plan: &Plan,
    dst: IpAddr,
    previous: Option<u64>,
    err: &mut dyn Write,
) -> Result<Attempt, KnockError> {
    match &plan.knocks {
        Knocks::Fixed(hits) => Ok(Attempt {
            hits: hits.clone(),
            what: "fixed sequence".into(),
            otp_line: None,
            window: None,
        }),
        Knocks::OneTime { path, flags } => {
            let scan = otp::scan(path)?;
            for w in &scan.warnings {
                let _ = writeln!(
                    err,
                    "knock: {}:{}: skipping a line that is not a sequence ({})",
                    path.display(),
                    w.line_no,
                    w.reason()
                );
            }
            let line = scan
                .current()
                .cloned()
                .ok_or_else(|| KnockError::OtpExhausted {
                    path: path.clone(),
                    used: scan.used,
                })?;
            Ok(Attempt {
                hits: cli::hits_of(line.sequence.knocks(), *flags),
                what: format!("one-time line {} of {}", line.line_no, path.display()),
                otp_line: Some((path.clone(), line)),
                window: None,
            })
        }
        Knocks::Rotating(r) => {
            let now = rotate::window(unix_now(), r.period);
            let window = plan::window_for(now, r.next, previous);
            let bind = match r.bind {
                None => None,
                Some(SourceAddress::Addr(a)) => Some(a),
                Some(SourceAddress::Auto) => Some(
                    net::source_for(dst).map_err(|source| KnockError::Source { dst, source })?,
                ),
            };
            let ports = rotate::derive(&r.key, &r.door, window, r.length, r.range, bind);
            Ok(Attempt {
                hits: ports
                    .into_iter()
                    .map(|port| Hit {
                        port,
                        proto: r.proto,
                        flags: r.flags,
                    })
                    .collect(),
                what: format!("door {} window {window}", r.door),
                otp_line: None,
                window: Some(window),
            })
        }
    }
}

/// `port:proto,...`, as `--show` prints a sequence.
pub fn show_hits(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| format!("{}:{}", h.port, h.proto))
        .collect::<Vec<_>>()
        .join(",")
}

/// Knock, mark, verify, re-knock: see `verify` for the bounds.
fn execute(
    plan: &Plan,
    raw: &mut RawSockets,
    verbose: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), KnockError> {
    let dst = net::resolve(&plan.host, plan.family)?;
    if plan.show {
        let a = next_attempt(plan, dst, None, err)?;
        writeln!(out, "{}", show_hits(&a.hits)).map_err(KnockError::Output)?;
        return Ok(());
    }
    let attempts = match plan.verify {
        Some(_) => 1 + plan.retries,
        None => 1,
    };
    let start = Instant::now();
    let mut sender: Option<Box<dyn Sender>> = None;
    let mut failures = Vec::new();
    let mut previous = None;
    for k in 1..=attempts {
        let attempt = next_attempt(plan, dst, previous, err)?;
        previous = attempt.window;
        let sender = match &mut sender {
            Some(s) => s,
            None => {
                let (s, note) = send::open(dst, &attempt.hits, raw)?;
                if let (true, Some(note)) = (verbose, note) {
                    let _ = writeln!(err, "knock: {note}");
                }
                sender.insert(s)
            }
        };
        if verbose {
            if attempts > 1 {
                let _ = writeln!(out, "attempt {k} of {attempts}: {}", attempt.what);
            } else if attempt.otp_line.is_some() || attempt.window.is_some() {
                let _ = writeln!(out, "using {}", attempt.what);
            }
        }
        let v: Option<&mut dyn Write> = if verbose { Some(&mut *out) } else { None };
        send_all(sender.as_mut(), dst, &attempt.hits, plan.delay, v)?;
        if let Some((path, line)) = &attempt.otp_line {
            otp::mark_used(path, line).map_err(|source| KnockError::OtpMark {
                path: path.clone(),
                line_no: line.line_no,
                source,
            })?;
        }
        let Some(port) = plan.verify else {
            return Ok(());
        };
        let addr = SocketAddr::new(dst, port);
        match verify::probe(addr, verify::VERIFY_WAIT) {
            Ok(_) => {
                if verbose {
                    let _ = writeln!(
                        out,
                        "verify: {addr} answered after attempt {k} of {attempts} ({:.2} s in all)",
                        start.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Err(error) => {
                if verbose {
                    let _ = writeln!(out, "verify: {addr} did not answer: {error}");
                }
                failures.push(Failed {
                    what: attempt.what,
                    error,
                });
            }
        }
    }
    Err(KnockError::NotVerified {
        addr: SocketAddr::new(dst, plan.verify.unwrap_or(0)),
        failures,
        elapsed: start.elapsed(),
    })
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
                .starts_with("hit 2 of 3: udp to 2001:db8::1: "),
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
        let code = run_with(
            ["knock", "--otp", p, "127.0.0.1"],
            &mut out,
            &mut err,
            Privileges::Keep,
        );
        assert_eq!(code, 1);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err,
            format!("knock: {p}: no unused sequence left (2 used); add more with knock-gen\n")
        );
    }
}
