//! The command line: `knock [options] HOST PORT[:proto[:flags]] ...`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use knock_common::flags::{self, SYN};
use knock_common::rotate::{PortRange, RangeError};
use knock_common::{FlagError, FlagSpec, Knock, Proto, SequenceError};

use crate::packet::Hit;

/// The ports and how hits are sent (both helps start with it).
macro_rules! ports_help {
    () => {
        "\
Each PORT is a decimal number 1-65535, optionally followed by :tcp or :udp
(case-insensitive). Ports without a suffix are TCP, or UDP with --udp.
A TCP port may carry its own flag list: 7000:tcp:fin,ack.

Hits are sent through raw sockets (root or CAP_NET_RAW), one packet per hit,
so TCP hits can carry any flags. Without that privilege, SYN and UDP knocks
are sent through ordinary sockets instead; knocks with other flags fail.
"
    };
}

/// `--otp` (in both helps).
macro_rules! otp_help {
    () => {
        "\
--otp FILE reads a one-time sequence file (one sequence per line, as made by
knock-gen and used by the server's one_time_sequences), sends its first
unused line and, once every hit is sent, marks that line used with '#'.
"
    };
}

/// The examples both helps begin their list with.
macro_rules! examples_head {
    () => {
        "\
Examples:
  knock myserver.example.com 123:tcp 456:udp 789:tcp
  knock -u -d 500 192.0.2.10 2222 3333 4444
  knock --flags fin,ack 192.0.2.10 7000 8000 9000
  knock 192.0.2.10 7000:tcp:fin 8000:udp 9000:tcp:syn,ack
  knock -6 -v myserver.example.com 7000 8000
  knock --otp ~/.knock/myserver.otp myserver.example.com
  knock --secret ~/.knock/ssh.key --door ssh myserver.example.com
"
    };
}

const EXAMPLES: &str = concat!(
    ports_help!(),
    "\n",
    otp_help!(),
    "
--secret FILE --door NAME sends the current sequence of a rotating door
(the server's Sequence_Secret): the same key file, door name, length,
period and port range as the server (defaults: 3 hits, 30 s, 1024-65535).
--next sends the next window's sequence, for a second knock within one
period; --show prints the sequence as port:proto,... and sends nothing.

",
    examples_head!(),
    "  knock --verify 22 myserver.example.com 7000 8000:udp 9000
  knock ssh                    (the profile \"ssh\" of ~/.config/knock/hosts.toml)
  knock -v --retries 4 ssh     (options override the profile)
  knock --list"
);

/// The long help adds the profiles file (this text is also the FILES and
/// VERIFICATION part of knock(1)).
const LONG_EXAMPLES: &str = concat!(
    ports_help!(),
    "\
Run through sudo, setuid root or with file capabilities (setcap
cap_net_raw+ep), knock opens its raw sockets first and then drops the
privilege before it reads any file: to the real user (setuid), to SUDO_UID
and SUDO_GID (sudo: real user root and SUDO_UID set), or by clearing its
capabilities (setcap). Files named on the command line or in a profile are
therefore read and marked as the invoking user.

",
    otp_help!(),
    "\
No message of knock quotes a line of a one-time file or a key file; they
name the line number.

--secret FILE --door NAME sends the current sequence of a rotating door
(the server's Sequence_Secret): the same key file (mode 0600 or stricter),
door name, length, period and port range as the server (defaults: 3 hits,
30 s, 1024-65535; -u for UDP hits). --next sends the next window's
sequence, for a second knock within one period; --show prints the sequence
as port:proto,... and sends nothing. With the server's
Sequence_Bind_Source = yes, --source-address ADDR names the address the
server sees (behind NAT), or 'auto' for the address knock sends from.

VERIFICATION
--verify PORT connects to HOST:PORT over TCP after the knock, for up to
3 seconds. If the port does not answer, knock knocks again, up to
--retries N times (default 2, at most 10), and exits 0 only when the port
answered; otherwise it lists every attempt and exits 1. The whole run is
bounded by (1 + N) x (3 s + the delays between hits); -v prints the time
taken. A re-knock of a one-time file sends the NEXT unused line (the line
just sent is already marked used; the server accepts a few lines ahead).
A re-knock of a rotating door sends the next window (the server accepts
one window ahead), or the current one again when that is already the one
ahead.

PROFILES
With a single argument and no --otp or --secret, knock NAME knocks the
profile NAME of $XDG_CONFIG_HOME/knock/hosts.toml (default
~/.config/knock/hosts.toml; --profiles FILE reads another file). Each
profile is a TOML table with these keys:
  host = \"server.example\"     required
  sequence = \"7000,8000:udp,9000\"   a fixed knock, or
  otp = \"~/.knock/seqs\"         a one-time file, or
  secret = \"~/.knock/ssh.key\"   a rotating door's key file, with
  door = \"ssh\"  length = 3  period = 30  ports = \"1024-65535\"
  source_address = \"198.51.100.7\"   (or \"auto\"; only for a bound door)
  udp = true  flags = \"syn\"  delay = 100  family = 4 (or 6)
  verify = 22  retries = 2
A profile has exactly one of sequence, otp and secret. Paths may start
with ~/. Options on the command line override the profile. An unknown
profile, an unknown key or a syntax error is an error naming the file and
the line. knock --list prints the profiles (host, kind of knock, verify
port), never a sequence or a key.

Example ~/.config/knock/hosts.toml:
  [ssh]
  host = \"server.example\"
  sequence = \"7000,8000:udp,9000\"
  verify = 22

  [web]
  host = \"192.0.2.10\"
  otp = \"~/.knock/web.otp\"
  verify = 443

  [vpn]
  host = \"vpn.example\"
  secret = \"~/.knock/vpn.key\"
  door = \"vpn\"
  udp = true
  verify = 1194
  retries = 3

",
    examples_head!(),
    "  knock --secret ~/.knock/ssh.key --door ssh --show myserver.example.com
  knock --verify 22 myserver.example.com 7000 8000:udp 9000
  knock ssh
  knock -v --retries 4 ssh
  knock --list"
);

/// Send a port-knock sequence to a host.
#[derive(Debug, Parser)]
#[command(
    name = "knock",
    version,
    about = "Send a port-knock sequence to a host",
    after_help = EXAMPLES,
    after_long_help = LONG_EXAMPLES
)]
pub struct Cli {
    /// Make ports without a protocol suffix UDP hits (default is TCP);
    /// with --secret, every hit is UDP
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,

    /// Wait MS milliseconds between hits [default: 0]
    #[arg(short = 'd', long = "delay", value_name = "MS")]
    pub delay: Option<u64>,

    /// Use IPv4 only
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use IPv6 only
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// TCP flags of TCP hits, comma separated: fin syn rst psh ack urg
    /// (default: syn)
    #[arg(short = 'f', long = "flags", value_name = "LIST", value_parser = parse_send_flags)]
    pub flags: Option<u8>,

    /// Send the current sequence of a one-time sequence file and mark it
    /// used (no PORT arguments then)
    #[arg(long = "otp", value_name = "FILE", conflicts_with_all = ["udp", "secret"])]
    pub otp: Option<PathBuf>,

    /// Send the current sequence of a rotating door, derived from this key
    /// file (needs --door; no PORT arguments then)
    #[arg(long = "secret", value_name = "FILE")]
    pub secret: Option<PathBuf>,

    /// Name of the rotating door, as in the server's configuration
    #[arg(long = "door", value_name = "NAME")]
    pub door: Option<String>,

    /// Hits of a rotating sequence (1-16) [default: 3]
    #[arg(long = "length", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub length: Option<u8>,

    /// Seconds per window of a rotating sequence [default: 30]
    #[arg(long = "period", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub period: Option<u64>,

    /// Port range of a rotating sequence [default: 1024-65535]
    #[arg(long = "ports", value_name = "LO-HI", value_parser = parse_range)]
    pub ports_range: Option<PortRange>,

    /// Send the next window's rotating sequence (a second knock within one
    /// period)
    #[arg(long = "next")]
    pub next: bool,

    /// Print the rotating sequence as port:proto,... and send nothing
    #[arg(long = "show")]
    pub show: bool,

    /// Address the server sees this client as, for a door with
    /// Sequence_Bind_Source (behind NAT); 'auto': the sending address
    #[arg(long = "source-address", value_name = "ADDR|auto", value_parser = parse_source_address)]
    pub source_address: Option<SourceAddress>,

    /// After knocking, connect to this TCP port; knock again until it
    /// answers (see --retries)
    #[arg(long = "verify", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub verify: Option<u16>,

    /// Re-knocks when --verify finds the port closed (0-10) [default: 2]
    #[arg(long = "retries", value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,

    /// Read profiles from FILE instead of
    /// $XDG_CONFIG_HOME/knock/hosts.toml (~/.config/knock/hosts.toml)
    #[arg(long = "profiles", value_name = "FILE")]
    pub profiles: Option<PathBuf>,

    /// List the profiles (host, kind of knock, verify port; never a secret)
    #[arg(long = "list", conflicts_with_all = [
        "host", "otp", "secret", "udp", "delay", "ipv4", "ipv6", "flags", "door", "length",
        "period", "ports_range", "next", "show", "source_address", "verify", "retries",
    ])]
    pub list: bool,

    /// Print each hit (and the verification)
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Host name or address to knock on, or the name of a profile when it
    /// is the only argument
    #[arg(value_name = "HOST|PROFILE", required_unless_present = "list")]
    pub host: Option<String>,

    /// Ports to hit, in order
    #[arg(value_name = "PORT[:PROTO[:FLAGS]]", value_parser = parse_port_arg)]
    pub ports: Vec<PortArg>,
}

/// Where the address mixed into a bound rotating sequence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAddress {
    /// The local address knock sends from.
    Auto,
    Addr(IpAddr),
}

impl std::str::FromStr for SourceAddress {
    type Err = ArgError;

    fn from_str(s: &str) -> Result<Self, ArgError> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(SourceAddress::Auto);
        }
        s.trim()
            .parse::<IpAddr>()
            .map(SourceAddress::Addr)
            .map_err(|_| ArgError::SourceAddress(s.to_string()))
    }
}

/// Why a value of the command line (or of a profile) was refused; each
/// message quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("\"{0}\" is neither an IP address nor 'auto'")]
    SourceAddress(String),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error(transparent)]
    Flags(#[from] FlagError),
    #[error("\"{0}\": a knock can only list flags to set; \"!flag\" (must be clear) belongs in the server's TCPFlags")]
    ClearFlag(String),
    #[error(transparent)]
    Knock(#[from] SequenceError),
    #[error("\"{arg}\": TCP flags \"{flags}\" given for a UDP hit; flags apply to TCP hits only")]
    FlagsOnUdp { arg: String, flags: String },
}

fn parse_source_address(s: &str) -> Result<SourceAddress, ArgError> {
    s.parse()
}

fn parse_range(s: &str) -> Result<PortRange, ArgError> {
    Ok(s.parse::<PortRange>()?)
}

/// What the positional arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `knock HOST PORT...`, `knock --otp F HOST`, `knock --secret F HOST`.
    Host(&'a str),
    /// `knock NAME`: a profile.
    Profile(&'a str),
    /// `knock --list`.
    List,
}

/// IP version restriction from `-4`/`-6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Cli {
    /// Parse a command line (program name first), with the checks clap
    /// cannot express.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        let from_file = cli.otp.as_ref().or(cli.secret.as_ref());
        if let (Some(path), false) = (from_file, cli.ports.is_empty()) {
            let ports: Vec<String> = cli.ports.iter().map(ToString::to_string).collect();
            let opt = if cli.otp.is_some() {
                "--otp"
            } else {
                "--secret"
            };
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                format!(
                    "{opt} {} takes the ports from the file; remove the PORT arguments ({})",
                    path.display(),
                    ports.join(" ")
                ),
            ));
        }
        if cli.list && !cli.ports.is_empty() {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--list takes no HOST or PORT arguments",
            ));
        }
        if cli.profiles.is_some() && !matches!(cli.target(), Target::Profile(_) | Target::List) {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--profiles FILE is used with a profile name (knock NAME) or --list; \
                 HOST PORT... and --otp/--secret knocks take no profile",
            ));
        }
        Ok(cli)
    }

    /// A single positional argument without --otp or --secret names a
    /// profile; otherwise it is the host.
    pub fn target(&self) -> Target<'_> {
        match self.host.as_deref() {
            None => Target::List,
            Some(h) if self.ports.is_empty() && self.otp.is_none() && self.secret.is_none() => {
                Target::Profile(h)
            }
            Some(h) => Target::Host(h),
        }
    }

    /// `-4`/`-6`, `None` when neither is given.
    pub fn family(&self) -> Option<Family> {
        if self.ipv4 {
            Some(Family::V4)
        } else if self.ipv6 {
            Some(Family::V6)
        } else {
            None
        }
    }

    /// `-d`, 0 when not given.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay.unwrap_or(0))
    }

    /// The hits of the PORT arguments, defaults applied.
    pub fn hits(&self) -> Vec<Hit> {
        port_hits(&self.ports, self.udp, self.flags.unwrap_or(SYN))
    }

    /// The hits of a sequence from a one-time file: protocols as in the
    /// file, `--flags` (default syn) for the TCP ones.
    pub fn hits_of(&self, knocks: &[Knock]) -> Vec<Hit> {
        hits_of(knocks, self.flags.unwrap_or(SYN))
    }
}

/// Hits of PORT arguments: what a port does not say comes from `udp` (the
/// protocol) and `flags`.
pub fn port_hits(ports: &[PortArg], udp: bool, flags: u8) -> Vec<Hit> {
    let default_proto = if udp { Proto::Udp } else { Proto::Tcp };
    ports
        .iter()
        .map(|p| Hit {
            port: p.port,
            proto: p.proto.unwrap_or(default_proto),
            flags: p.flags.unwrap_or(flags),
        })
        .collect()
}

/// Hits of a sequence whose knocks carry their protocol; TCP hits get
/// `flags`.
pub fn hits_of(knocks: &[Knock], flags: u8) -> Vec<Hit> {
    knocks
        .iter()
        .map(|k| Hit {
            port: k.port,
            proto: k.proto,
            flags,
        })
        .collect()
}

/// One PORT argument as written: what it does not say is filled in from
/// the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortArg {
    pub port: u16,
    pub proto: Option<Proto>,
    pub flags: Option<u8>,
}

impl std::fmt::Display for PortArg {
    /// As written on the command line, protocol names in lower case.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(proto) = self.proto {
            write!(f, ":{proto}")?;
        }
        if let Some(bits) = self.flags {
            write!(f, ":{}", flags::names_of(bits))?;
        }
        Ok(())
    }
}

/// `--flags` / per-port flag list: flag names to set; `!` items are for
/// the server's `TCPFlags` and make no sense in a packet.
pub fn parse_send_flags(s: &str) -> Result<u8, ArgError> {
    let spec: FlagSpec = s.parse()?;
    if !spec.is_plain() {
        let item = s
            .split(',')
            .map(str::trim)
            .find(|i| i.starts_with('!'))
            .unwrap_or("!");
        return Err(ArgError::ClearFlag(item.to_string()));
    }
    Ok(spec.set)
}

/// `PORT`, `PORT:PROTO` or `PORT:tcp:FLAGS`.
pub fn parse_port_arg(s: &str) -> Result<PortArg, ArgError> {
    let t = s.trim();
    let (port_proto, flag_list) = match t.splitn(3, ':').collect::<Vec<_>>().as_slice() {
        [_] | [_, _] => (t, None),
        [p, proto, fl] => (&t[..p.len() + 1 + proto.len()], Some(*fl)),
        _ => unreachable!("splitn(3) yields 1 to 3 parts"),
    };
    let (port, proto) = match port_proto.split_once(':') {
        None => (knock_common::sequence::parse_port(port_proto)?, None),
        Some((p, proto)) => {
            let k: Knock = format!("{p}:{proto}").parse()?;
            (k.port, Some(k.proto))
        }
    };
    let flags = match flag_list {
        None => None,
        Some(fl) => {
            if proto != Some(Proto::Tcp) {
                return Err(ArgError::FlagsOnUdp {
                    arg: t.to_string(),
                    flags: fl.to_string(),
                });
            }
            Some(parse_send_flags(fl)?)
        }
    };
    Ok(PortArg { port, proto, flags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, PSH, RST, URG};

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(std::iter::once("knock").chain(args.iter().copied()))
    }

    fn err(args: &[&str]) -> String {
        cli(args).unwrap_err().to_string()
    }

    /// Each `(args, fragments)`: the command line `args` is refused with a
    /// message containing every one of `fragments`.
    fn assert_refused(cases: &[(&[&str], &[&str])]) {
        for (args, fragments) in cases {
            let e = err(args);
            for f in *fragments {
                assert!(e.contains(f), "{args:?}: {e:?} lacks {f:?}");
            }
        }
    }

    #[test]
    fn classic_forms() {
        let c = cli(&["example.com", "123:tcp", "456:UDP", "789", "1000:Tcp"]).unwrap();
        assert_eq!(c.host.as_deref(), Some("example.com"));
        assert_eq!(c.target(), Target::Host("example.com"));
        assert_eq!(
            c.hits(),
            vec![
                Hit {
                    port: 123,
                    proto: Proto::Tcp,
                    flags: SYN
                },
                Hit {
                    port: 456,
                    proto: Proto::Udp,
                    flags: SYN
                },
                Hit {
                    port: 789,
                    proto: Proto::Tcp,
                    flags: SYN
                },
                Hit {
                    port: 1000,
                    proto: Proto::Tcp,
                    flags: SYN
                },
            ]
        );
        assert_eq!(c.family(), None);
        assert_eq!(c.delay(), Duration::ZERO);
        assert!(!c.verbose);
    }

    #[test]
    fn udp_option_changes_only_the_default() {
        let c = cli(&["-u", "h", "1", "2:tcp", "3:udp"]).unwrap();
        let protos: Vec<_> = c.hits().iter().map(|h| h.proto).collect();
        assert_eq!(protos, [Proto::Udp, Proto::Tcp, Proto::Udp]);
    }

    #[test]
    fn options() {
        let c = cli(&["-4", "-v", "-d", "250", "h", "1"]).unwrap();
        assert_eq!(c.family(), Some(Family::V4));
        assert_eq!(c.delay(), Duration::from_millis(250));
        assert!(c.verbose);
        let c = cli(&["--ipv6", "--delay=5", "--verbose", "h", "1"]).unwrap();
        assert_eq!(c.family(), Some(Family::V6));
        assert_eq!(c.delay(), Duration::from_millis(5));
        assert!(err(&["-4", "-6", "h", "1"]).contains("cannot be used with"));
        assert!(err(&["-d", "soon", "h", "1"]).contains("'soon'"));
    }

    #[test]
    fn flags_option_and_per_port_flags() {
        let c = cli(&[
            "--flags",
            "FIN,ack",
            "h",
            "1",
            "2:udp",
            "3:tcp:rst",
            "4:tcp:syn",
        ])
        .unwrap();
        let hits = c.hits();
        assert_eq!(hits[0].flags, FIN | ACK);
        assert_eq!(hits[1].proto, Proto::Udp);
        assert_eq!(hits[2].flags, RST);
        assert_eq!(hits[3].flags, SYN);
        assert!(!hits[0].is_plain());
        assert!(hits[1].is_plain());
        assert!(hits[3].is_plain());
        assert_eq!(hits[0].describe_proto(), "tcp (fin,ack)");
        assert_eq!(hits[1].describe_proto(), "udp");
        assert_eq!(hits[3].describe_proto(), "tcp");

        let c = cli(&["-f", "psh,urg", "-u", "h", "1", "2:tcp"]).unwrap();
        let hits = c.hits();
        assert_eq!(hits[0].proto, Proto::Udp);
        assert_eq!(hits[1].flags, PSH | URG);

        let c = cli(&["h", "7000:TCP:syn,ack"]).unwrap();
        assert_eq!(c.hits()[0].flags, SYN | ACK);
    }

    #[test]
    fn bad_ports_are_quoted() {
        for bad in ["0", "65536", "70000", "+1", "80x", "", "0x50"] {
            let e = err(&["h", "1", bad]);
            assert!(e.contains(&format!("port \"{bad}\"")), "{bad}: {e}");
        }
        assert_refused(&[
            // A leading '-' reads as an option; clap names it too.
            (&["h", "1", "-1"], &["'-1'"]),
            (&["h", "99999:udp"], &["port \"99999\""]),
        ]);
    }

    #[test]
    fn bad_protocols_are_quoted() {
        assert_refused(&[
            (&["h", "7000:icmp"], &["protocol \"icmp\""]),
            (&["h", "7000:"], &["protocol \"\""]),
        ]);
    }

    #[test]
    fn bad_flags_are_quoted() {
        assert_refused(&[
            (
                &["--flags", "syn,sin", "h", "1"],
                &["unknown TCP flag \"sin\""],
            ),
            (
                &["--flags", "fin,!ack", "h", "1"],
                &["\"!ack\"", "only list flags to set"],
            ),
            (&["h", "7000:tcp:ece"], &["\"ece\""]),
            (
                &["h", "7000:udp:fin"],
                &["\"7000:udp:fin\"", "TCP hits only"],
            ),
            (&["h", "7000:tcp:"], &["empty"]),
            // Flags need an explicit protocol: "7000:fin" is a protocol error.
            (&["h", "7000:fin"], &["protocol \"fin\""]),
        ]);
    }

    #[test]
    fn otp_excludes_ports_and_udp() {
        let c = cli(&["--otp", "/x/seqs", "h"]).unwrap();
        assert_eq!(c.otp.as_deref(), Some(std::path::Path::new("/x/seqs")));
        assert!(c.ports.is_empty());
        let e = cli(&["--otp", "/x/seqs", "h", "7000", "8000:UDP", "9:tcp:ack,fin"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert!(
            e.to_string().contains(
                "--otp /x/seqs takes the ports from the file; \
                 remove the PORT arguments (7000 8000:udp 9:tcp:fin,ack)"
            ),
            "{e}"
        );
        let e = cli(&["--otp", "/x/seqs", "-u", "h"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let c = cli(&["--otp", "f", "-f", "fin", "h"]).unwrap();
        let knocks = [Knock::tcp(1), Knock::udp(2)];
        let hits = c.hits_of(&knocks);
        assert_eq!(
            hits[0],
            Hit {
                port: 1,
                proto: Proto::Tcp,
                flags: FIN
            }
        );
        assert_eq!(hits[1].proto, Proto::Udp);
    }

    #[test]
    fn missing_arguments() {
        assert_eq!(
            cli(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        // A single argument names a profile.
        assert_eq!(cli(&["ssh"]).unwrap().target(), Target::Profile("ssh"));
        assert_eq!(cli(&["--list"]).unwrap().target(), Target::List);
        assert_eq!(
            cli(&["--otp", "f", "h"]).unwrap().target(),
            Target::Host("h")
        );
        assert_eq!(
            cli(&["--secret", "k", "--door", "d", "h"])
                .unwrap()
                .target(),
            Target::Host("h")
        );
        assert_eq!(
            cli(&["--list", "ssh"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            cli(&["--list", "--verify", "22"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            cli(&["--profiles", "f", "h", "1"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn help_has_examples() {
        let e = cli(&["--help"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        let text = e.to_string();
        assert!(text.contains("knock myserver.example.com 123:tcp 456:udp 789:tcp"));
        assert!(text.contains("--otp"));
        assert_eq!(cli(&["-V"]).unwrap_err().kind(), ErrorKind::DisplayVersion);
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
