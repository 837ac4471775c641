//! What one run of `knock` will do: the settings of a profile (or none)
//! with the command-line options laid over them, checked once.
//!
//! Rules:
//! * An option given on the command line replaces the profile's value;
//!   `-u` and `--next` can only switch on.
//! * There is exactly one kind of knock: PORT arguments or `sequence`
//!   (fixed), `--otp`/`otp` (one-time file) or `--secret`/`secret`
//!   (rotating).
//! * The rotating options (`door`, `length`, `period`, `ports`,
//!   `source_address`, `--next`, `--show`) belong to a rotating knock only,
//!   and a rotating knock needs its door name.
//! * `-u`/`udp` does not apply to a one-time file (each line names its
//!   protocols).
//! * A rotating knock's key file is loaded here, with the same checks as
//!   the server's (`knock_common::rotate::Key::load`: a regular file, mode
//!   without group or other bits, valid base32 of at least 16 bytes).

use std::path::PathBuf;
use std::time::Duration;

use knock_common::flags::SYN;
use knock_common::rotate::{self, Key, KeyError, PortRange};
use knock_common::Proto;

use crate::cli::{port_hits, Cli, Family, SourceAddress};
use crate::packet::Hit;
use crate::profile::{KindSpec, Settings};
use crate::verify;

/// A rotating door as the client derives it.
#[derive(Debug)]
pub struct Rotating {
    pub key: Key,
    pub door: String,
    pub length: usize,
    pub period: u64,
    pub range: PortRange,
    pub proto: Proto,
    pub flags: u8,
    /// The address mixed into the derivation (a door with
    /// `Sequence_Bind_Source = yes`).
    pub bind: Option<SourceAddress>,
    /// Start with the next window instead of the current one.
    pub next: bool,
}

/// The kind of knock, resolved.
#[derive(Debug)]
pub enum Knocks {
    Fixed(Vec<Hit>),
    OneTime { path: PathBuf, flags: u8 },
    Rotating(Box<Rotating>),
}

/// Everything one run does.
#[derive(Debug)]
pub struct Plan {
    pub host: String,
    pub family: Option<Family>,
    pub delay: Duration,
    pub knocks: Knocks,
    pub verify: Option<u16>,
    pub retries: u32,
    /// Print the rotating sequence instead of sending it.
    pub show: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: no knock: give PORT arguments, --otp FILE or --secret FILE")]
    NoKnock { origin: String },
    #[error("{origin}: no host to knock on")]
    NoHost { origin: String },
    #[error("{origin}: {option} applies to a rotating knock (--secret / secret) only")]
    NotRotating {
        origin: String,
        option: &'static str,
    },
    #[error("{origin}: a rotating knock needs the server's door name (--door NAME, or door = \"NAME\" in a profile)")]
    NoDoor { origin: String },
    #[error(
        "{origin}: -u/udp does not apply to a one-time file; each of its lines names the protocols"
    )]
    UdpWithOtp { origin: String },
    #[error("{origin}: {source}")]
    Key {
        origin: String,
        #[source]
        source: KeyError,
    },
}

/// The settings of the command line alone (no profile), or a profile's
/// `base` with the command line laid over it.
pub fn overlay(mut s: Settings, cli: &Cli) -> Settings {
    if let Some(h) = &cli.host {
        if matches!(cli.target(), crate::cli::Target::Host(_)) {
            s.host = Some(h.clone());
        }
    }
    if !cli.ports.is_empty() {
        s.kind = Some(KindSpec::Sequence(cli.ports.clone()));
    } else if let Some(p) = &cli.otp {
        s.kind = Some(KindSpec::Otp(p.clone()));
    } else if let Some(p) = &cli.secret {
        s.kind = Some(KindSpec::Secret(p.clone()));
    }
    s.udp |= cli.udp;
    s.flags = cli.flags.or(s.flags);
    s.delay = cli.delay.or(s.delay);
    s.family = cli.family().or(s.family);
    s.door = cli.door.clone().or(s.door);
    s.length = cli.length.or(s.length);
    s.period = cli.period.or(s.period);
    s.ports = cli.ports_range.or(s.ports);
    s.source_address = cli.source_address.or(s.source_address);
    s.verify = cli.verify.or(s.verify);
    s.retries = cli.retries.or(s.retries);
    s
}

/// Check the merged settings and build the plan. `origin` names where the
/// settings came from in errors ("the command line", "profile ...").
pub fn build(s: Settings, cli: &Cli, origin: &str) -> Result<Plan, PlanError> {
    let origin = origin.to_string();
    let host = s.host.clone().ok_or_else(|| PlanError::NoHost {
        origin: origin.clone(),
    })?;
    let kind = s.kind.clone().ok_or_else(|| PlanError::NoKnock {
        origin: origin.clone(),
    })?;
    let flags = s.flags.unwrap_or(SYN);
    if !matches!(kind, KindSpec::Secret(_)) {
        let rotating_only: [(&'static str, bool); 7] = [
            ("--door / door", s.door.is_some()),
            ("--length / length", s.length.is_some()),
            ("--period / period", s.period.is_some()),
            ("--ports / ports", s.ports.is_some()),
            (
                "--source-address / source_address",
                s.source_address.is_some(),
            ),
            ("--next", cli.next),
            ("--show", cli.show),
        ];
        if let Some((option, _)) = rotating_only.iter().find(|(_, set)| *set) {
            return Err(PlanError::NotRotating { origin, option });
        }
    }
    let knocks = match kind {
        KindSpec::Sequence(ports) => Knocks::Fixed(port_hits(&ports, s.udp, flags)),
        KindSpec::Otp(path) => {
            if s.udp {
                return Err(PlanError::UdpWithOtp { origin });
            }
            Knocks::OneTime { path, flags }
        }
        KindSpec::Secret(path) => {
            let door = s.door.clone().ok_or_else(|| PlanError::NoDoor {
                origin: origin.clone(),
            })?;
            let key = Key::load(&path).map_err(|source| PlanError::Key {
                origin: origin.clone(),
                source,
            })?;
            Knocks::Rotating(Box::new(Rotating {
                key,
                door,
                length: s.length.map_or(rotate::DEFAULT_LENGTH, usize::from),
                period: s.period.unwrap_or(rotate::DEFAULT_PERIOD),
                range: s.ports.unwrap_or(rotate::DEFAULT_RANGE),
                proto: if s.udp { Proto::Udp } else { Proto::Tcp },
                flags,
                bind: s.source_address,
                next: cli.next,
            }))
        }
    };
    Ok(Plan {
        host,
        family: s.family,
        delay: Duration::from_millis(s.delay.unwrap_or(0)),
        knocks,
        verify: s.verify,
        retries: s.retries.unwrap_or(verify::DEFAULT_RETRIES),
        show: cli.show,
    })
}

/// The window a rotating attempt uses: the first attempt the current
/// window (the next one with `--next`); a re-knock the window after the
/// previous attempt's, but never more than one ahead of the current window
/// (the server accepts one ahead), so at the limit it repeats that one.
pub fn window_for(now_window: u64, next: bool, previous: Option<u64>) -> u64 {
    match previous {
        None => now_window + u64::from(next),
        Some(prev) => prev.saturating_add(1).max(now_window).min(now_window + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profiles;
    use std::path::Path;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_args(std::iter::once("knock").chain(args.iter().copied())).unwrap()
    }

    fn profile(text: &str, name: &str) -> Settings {
        Profiles::parse(Path::new("/p"), text.into(), None)
            .unwrap()
            .settings(name, "")
            .unwrap()
    }

    #[test]
    fn options_override_the_profile() {
        let base = profile(
            "[a]\nhost = \"h\"\nsequence = \"7000,8000\"\ndelay = 100\nfamily = 4\n\
             verify = 22\nretries = 1\nflags = \"fin\"\n",
            "a",
        );
        let c = cli(&[
            "-d",
            "5",
            "-6",
            "--verify",
            "443",
            "--retries",
            "0",
            "-u",
            "a",
        ]);
        let p = build(overlay(base.clone(), &c), &c, "x").unwrap();
        assert_eq!(p.host, "h");
        assert_eq!(p.delay, Duration::from_millis(5));
        assert_eq!(p.family, Some(Family::V6));
        assert_eq!(p.verify, Some(443));
        assert_eq!(p.retries, 0);
        let Knocks::Fixed(hits) = &p.knocks else {
            panic!()
        };
        assert!(hits.iter().all(|h| h.proto == Proto::Udp));
        // Without options, the profile's values.
        let c = cli(&["a"]);
        let p = build(overlay(base, &c), &c, "x").unwrap();
        assert_eq!(p.delay, Duration::from_millis(100));
        assert_eq!(p.family, Some(Family::V4));
        assert_eq!(p.retries, 1);
        let Knocks::Fixed(hits) = &p.knocks else {
            panic!()
        };
        assert_eq!(hits[0].flags, knock_common::flags::FIN);
        assert_eq!(hits[0].proto, Proto::Tcp);
    }

    #[test]
    fn combination_rules() {
        let c = cli(&["--length", "4", "h", "1"]);
        let e = build(overlay(Settings::default(), &c), &c, "the command line").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the command line: --length / length applies to a rotating knock (--secret / secret) only"
        );
        let c = cli(&["--secret", "/nonexistent/k", "h"]);
        let e = build(overlay(Settings::default(), &c), &c, "o").unwrap_err();
        assert!(matches!(e, PlanError::NoDoor { .. }), "{e}");
        let c = cli(&["--secret", "/nonexistent/k", "--door", "d", "h"]);
        let e = build(overlay(Settings::default(), &c), &c, "o").unwrap_err();
        assert!(e.to_string().starts_with("o: /nonexistent/k: "), "{e}");
        let base = profile("[a]\nhost = \"h\"\notp = \"/o\"\n", "a");
        let c = cli(&["-u", "a"]);
        let e = build(overlay(base, &c), &c, "o").unwrap_err();
        assert!(matches!(e, PlanError::UdpWithOtp { .. }), "{e}");
        let base = profile("[a]\nhost = \"h\"\n", "a");
        let c = cli(&["a"]);
        let e = build(overlay(base, &c), &c, "o").unwrap_err();
        assert!(matches!(e, PlanError::NoKnock { .. }), "{e}");
    }

    #[test]
    fn re_knock_windows_stay_within_one_ahead() {
        assert_eq!(window_for(100, false, None), 100);
        assert_eq!(window_for(100, true, None), 101);
        assert_eq!(window_for(100, false, Some(100)), 101);
        assert_eq!(window_for(100, false, Some(101)), 101);
        // The clock moved on: the current window.
        assert_eq!(window_for(105, false, Some(101)), 105);
    }

    proptest::proptest! {
        /// Every attempt's window is one the server accepts (the current
        /// one or one ahead), and a re-knock never repeats an earlier
        /// window while a later accepted one exists.
        #[test]
        fn re_knock_windows_are_accepted_and_fresh(
            now in 0u64..u64::MAX - 1,
            next: bool,
            prev in proptest::option::of(0u64..u64::MAX - 1),
        ) {
            let w = window_for(now, next, prev);
            proptest::prop_assert!(now <= w && w <= now + 1);
            if let Some(p) = prev {
                if p < now + 1 {
                    proptest::prop_assert!(w > p);
                }
            }
        }
    }
}
