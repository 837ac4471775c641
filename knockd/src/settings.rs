//! The settings of a daemon run, resolved in one place.
//!
//! Three layers, highest first: the command line ([`Overrides`], built from
//! `-i`, `-g`, `-p`), the configuration file (`Interface`, `LogFile`,
//! `PidFile`), the default. [`resolve`] applies that precedence; start-up,
//! `--check` and `SIGHUP` (which resolves again with the new configuration,
//! so `-i` and `-g` keep winning) all use it, and nothing else decides.
//!
//! The default for the interfaces is not a fixed name: it is every
//! interface that carries a default route, IPv4 and IPv6
//! ([`default_route_interfaces`], read from `/proc/net/route` and
//! `/proc/net/ipv6_route` of the daemon's network namespace). Without a
//! default route there is no default, and the error says to give `-i` or
//! `Interface`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, Config};

/// `-i` / `Interface`: one or more interface names (`any` is a name too:
/// libpcap's capture on every interface). Never empty, no name twice, each
/// a valid interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceList(Vec<String>);

/// Why an `-i` / `Interface` value is not a list of interface names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceError {
    #[error("the interface name is empty")]
    Empty,
    #[error(
        "interface list \"{0}\" has an empty item; separate names with one comma, e.g. eth0,wlan0"
    )]
    EmptyItem(String),
    /// A name that cannot be an interface name (the message quotes it).
    #[error("{0}")]
    Name(config::InterfaceNameError),
    #[error("interface \"{0}\" is listed twice")]
    Twice(String),
}

impl InterfaceList {
    /// Parse `eth0`, `eth0,wlan0` or `eth0, wlan0` (blanks around the
    /// commas are allowed).
    pub fn parse(text: &str) -> Result<InterfaceList, InterfaceError> {
        if text.trim().is_empty() {
            return Err(InterfaceError::Empty);
        }
        let names = text.split(',').map(str::trim).map(str::to_string);
        let names: Vec<String> = names.collect();
        if names.len() > 1 && names.iter().any(String::is_empty) {
            return Err(InterfaceError::EmptyItem(text.to_string()));
        }
        InterfaceList::from_names(names)
    }

    /// A list of the given names, validated.
    pub fn from_names(names: Vec<String>) -> Result<InterfaceList, InterfaceError> {
        if names.is_empty() {
            return Err(InterfaceError::Empty);
        }
        for (i, n) in names.iter().enumerate() {
            config::validate_interface_name(n).map_err(InterfaceError::Name)?;
            if names[..i].contains(n) {
                return Err(InterfaceError::Twice(n.clone()));
            }
        }
        Ok(InterfaceList(names))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for InterfaceList {
    /// `eth0, wlan0`: the form of the start-up line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Where a setting in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    ConfigFile,
    Default,
    /// The interfaces of the default routes.
    DefaultRoutes,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::CommandLine => "from the command line",
            Origin::ConfigFile => "from the configuration file",
            Origin::Default => "default",
            Origin::DefaultRoutes => "default: the interfaces of the default routes",
        }
    }
}

/// A value in effect and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valued<T> {
    pub value: T,
    pub origin: Origin,
}

/// The command-line layer: what wins over the configuration file, also
/// after a reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `-i`
    pub interfaces: Option<InterfaceList>,
    /// `-g`
    pub log_file: Option<PathBuf>,
    /// `-p`
    pub pid_file: Option<PathBuf>,
}

/// Why no interface could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "no interface given and no default route to take one from; \
         name the interface(s) with -i (e.g. -i eth0,wlan0) or Interface = ... in [options]"
    )]
    NoDefaultRoute,
    #[error(
        "no interface given and the routing table cannot be read ({table}: {source}); \
         name the interface(s) with -i or Interface = ... in [options]"
    )]
    Unreadable {
        /// The kernel's table, e.g. `/proc/net/route`.
        table: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The settings in effect for one configuration.
#[derive(Debug)]
pub struct Resolved {
    pub interfaces: Result<Valued<InterfaceList>, RouteError>,
    pub log_file: Option<Valued<PathBuf>>,
    pub pid_file: Valued<PathBuf>,
}

/// The command line's value if given, else the configuration file's.
fn given<T: Clone>(cli: &Option<T>, file: &Option<T>) -> Option<Valued<T>> {
    let (value, origin) = match (cli, file) {
        (Some(v), _) => (v, Origin::CommandLine),
        (None, Some(v)) => (v, Origin::ConfigFile),
        (None, None) => return None,
    };
    Some(Valued {
        value: value.clone(),
        origin,
    })
}

/// Apply command line > configuration file > default. `default_routes` is
/// asked only when neither names an interface (the daemon passes
/// [`default_route_interfaces`]).
pub fn resolve(
    cli: &Overrides,
    cfg: &Config,
    default_routes: impl FnOnce() -> Result<InterfaceList, RouteError>,
) -> Resolved {
    let interfaces = match given(&cli.interfaces, &cfg.options.interface) {
        Some(l) => Ok(l),
        None => default_routes().map(|value| Valued {
            value,
            origin: Origin::DefaultRoutes,
        }),
    };
    let log_file = given(&cli.log_file, &cfg.options.log_file);
    let pid_file = match &cli.pid_file {
        Some(p) => Valued {
            value: p.clone(),
            origin: Origin::CommandLine,
        },
        None => Valued {
            value: cfg.options.pid_file.clone(),
            origin: if cfg.options.pid_file.as_os_str() == config::DEFAULT_PID_FILE {
                Origin::Default
            } else {
                Origin::ConfigFile
            },
        },
    };
    Resolved {
        interfaces,
        log_file,
        pid_file,
    }
}

/// Settings of a daemon run that come from the command line, plus the
/// daemon's fixed limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub overrides: Overrides,
    pub config_path: PathBuf,
    pub ipv4_only: bool,
    pub lookup: bool,
    pub debug: bool,
    /// Knock attempts kept in flight at most (oldest evicted first).
    pub attempt_cap: usize,
    /// Commands running at once at most (more wait in a queue).
    pub max_children: usize,
    /// How long pending stop commands may take at shutdown.
    pub shutdown_grace: Duration,
}

impl Settings {
    pub const DEFAULT_ATTEMPT_CAP: usize = 65_536;

    /// [`resolve`] with this run's command line, asking the kernel for the
    /// default routes if needed.
    pub fn resolve(&self, cfg: &Config) -> Resolved {
        resolve(&self.overrides, cfg, default_route_interfaces)
    }
}

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x0001;
/// `RTF_REJECT`: an unreachable route (IPv6 keeps one on `lo`).
const RTF_REJECT: u32 = 0x0200;

/// The interfaces of the default routes of the daemon's network namespace,
/// IPv4 first, each once.
pub fn default_route_interfaces() -> Result<InterfaceList, RouteError> {
    const TABLE: &str = "/proc/net/route";
    let v4 = std::fs::read_to_string(TABLE).map_err(|source| RouteError::Unreadable {
        table: TABLE,
        source,
    })?;
    // A kernel without IPv6 has no such file: no IPv6 default route.
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut names = default_ipv4_interfaces(&v4);
    for n in default_ipv6_interfaces(&v6) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    // A name the kernel gave is valid; an unexpected one is skipped.
    names.retain(|n| config::validate_interface_name(n).is_ok());
    InterfaceList::from_names(names).map_err(|_| RouteError::NoDefaultRoute)
}

/// Interfaces of the usable default routes in `/proc/net/route` text
/// (`Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, hex),
/// each once, in table order. Lines that do not parse are skipped.
pub fn default_ipv4_interfaces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [iface, dest, _gw, flags, _refcnt, _use, _metric, mask, ..] = f[..] else {
            continue;
        };
        let Ok(flags) = u32::from_str_radix(flags, 16) else {
            continue;
        };
        let zero = |s: &str| u32::from_str_radix(s, 16) == Ok(0);
        if zero(dest) && zero(mask) && flags & RTF_UP != 0 && flags & RTF_REJECT == 0 {
            push_once(&mut out, iface);
        }
    }
    out
}

/// Interfaces of the usable default routes in `/proc/net/ipv6_route` text
/// (`dest plen src plen nexthop metric refcnt use flags iface`, hex), each
/// once, in table order. Unreachable routes and `lo` do not count.
pub fn default_ipv6_interfaces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dest, plen, _src, _splen, _nh, _metric, _refcnt, _use, flags, iface] = f[..] else {
            continue;
        };
        let Ok(flags) = u32::from_str_radix(flags, 16) else {
            continue;
        };
        let default = dest.len() == 32 && dest.bytes().all(|b| b == b'0') && plen == "00";
        if default && flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && iface != "lo" {
            push_once(&mut out, iface);
        }
    }
    out
}

fn push_once(v: &mut Vec<String>, name: &str) {
    if !v.iter().any(|n| n == name) {
        v.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> InterfaceList {
        InterfaceList::from_names(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    fn cfg(text: &str) -> Config {
        config::parse_str(text, "t.conf").unwrap()
    }

    #[test]
    fn interface_lists_parse() {
        assert_eq!(InterfaceList::parse("eth0").unwrap(), list(&["eth0"]));
        assert_eq!(
            InterfaceList::parse("eth0,wlan0").unwrap(),
            list(&["eth0", "wlan0"])
        );
        assert_eq!(
            InterfaceList::parse(" eth0 ,  wlan0 ").unwrap(),
            list(&["eth0", "wlan0"])
        );
        assert_eq!(InterfaceList::parse("any").unwrap(), list(&["any"]));
        assert_eq!(list(&["eth0", "wlan0"]).to_string(), "eth0, wlan0");
        assert_eq!(InterfaceList::parse(""), Err(InterfaceError::Empty));
        assert_eq!(InterfaceList::parse("  "), Err(InterfaceError::Empty));
        for bad in ["eth0,", ",eth0", "eth0,,wlan0", "eth0, ,wlan0"] {
            assert_eq!(
                InterfaceList::parse(bad),
                Err(InterfaceError::EmptyItem(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            InterfaceList::parse("eth0, wlan0, eth0"),
            Err(InterfaceError::Twice("eth0".into()))
        );
        let e = InterfaceList::parse("eth0,/dev/wlan0").unwrap_err();
        assert!(e.to_string().contains("\"/dev/wlan0\" is a path"), "{e}");
        let e = InterfaceList::parse("eth0,eth 1").unwrap_err();
        assert!(e.to_string().contains("\"eth 1\""), "{e}");
    }

    #[test]
    fn the_interface_directive_takes_a_list() {
        let c = cfg("[options]\nInterface = eth0, wlan0\n[d]\nsequence = 1\ncommand = x\n");
        assert_eq!(c.options.interface, Some(list(&["eth0", "wlan0"])));
        for (bad, needle) in [
            ("eth0,,wlan0", "empty item"),
            ("eth0, eth0", "listed twice"),
            ("eth0, /dev/x", "is a path"),
        ] {
            let text = format!("[options]\nInterface = {bad}\n[d]\nsequence = 1\ncommand = x\n");
            let e = config::parse_str(&text, "t.conf").unwrap_err().to_string();
            assert!(e.contains("t.conf:2:") && e.contains(needle), "{bad}: {e}");
        }
    }

    fn no_routes() -> Result<InterfaceList, RouteError> {
        Err(RouteError::NoDefaultRoute)
    }

    #[test]
    fn command_line_wins_over_the_file_over_the_default() {
        let with = cfg("[options]\nInterface = eth2, eth3\nLogFile = /var/log/a.log\nPidFile = /run/a.pid\n[d]\nsequence = 1\ncommand = x\n");
        let without = cfg("[d]\nsequence = 1\ncommand = x\n");
        let over = Overrides {
            interfaces: Some(list(&["eth1"])),
            log_file: Some("/tmp/b.log".into()),
            pid_file: Some("/tmp/b.pid".into()),
        };
        let plain = Overrides::default();
        let routes = || Ok(list(&["wan0", "wan6"]));
        let must_not_ask = || -> Result<InterfaceList, RouteError> { panic!("asked for routes") };

        let r = resolve(&over, &with, must_not_ask);
        assert_eq!(
            r.interfaces.unwrap(),
            Valued {
                value: list(&["eth1"]),
                origin: Origin::CommandLine
            }
        );
        assert_eq!(r.log_file.unwrap().value, PathBuf::from("/tmp/b.log"));
        assert_eq!(r.pid_file.origin, Origin::CommandLine);

        let r = resolve(&plain, &with, must_not_ask);
        let i = r.interfaces.unwrap();
        assert_eq!(
            (i.value, i.origin),
            (list(&["eth2", "eth3"]), Origin::ConfigFile)
        );
        let l = r.log_file.unwrap();
        assert_eq!(
            (l.value, l.origin),
            ("/var/log/a.log".into(), Origin::ConfigFile)
        );
        assert_eq!(
            (r.pid_file.value, r.pid_file.origin),
            ("/run/a.pid".into(), Origin::ConfigFile)
        );

        let r = resolve(&plain, &without, routes);
        let i = r.interfaces.unwrap();
        assert_eq!(
            (i.value, i.origin),
            (list(&["wan0", "wan6"]), Origin::DefaultRoutes)
        );
        assert_eq!(r.log_file, None);
        assert_eq!(
            (r.pid_file.value, r.pid_file.origin),
            (PathBuf::from(config::DEFAULT_PID_FILE), Origin::Default)
        );

        let r = resolve(&plain, &without, no_routes);
        let e = r.interfaces.unwrap_err().to_string();
        assert!(e.contains("-i") && e.contains("Interface"), "{e}");
        // -g alone overrides a file without LogFile.
        let g = Overrides {
            log_file: Some("/tmp/g.log".into()),
            ..Overrides::default()
        };
        let l = resolve(&g, &without, routes).log_file.unwrap();
        assert_eq!(l.origin, Origin::CommandLine);
    }

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t700\t00000000\t0\t0\t0
down0\t00000000\t0101A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0
rej0\t00000000\t00000000\t0201\t0\t0\t100\t00000000\t0\t0\t0
garbage line
tun0\t00000000\t00000000\tzz\t0\t0\t0\t00000000\t0\t0\t0
";

    const ROUTE6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wg0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
00000000000000000000000000000000 20 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth9
short line
";

    #[test]
    fn default_routes_are_read_from_the_kernel_tables() {
        assert_eq!(default_ipv4_interfaces(ROUTE), ["wlan0", "eth0"]);
        assert_eq!(default_ipv6_interfaces(ROUTE6), ["wg0", "eth0"]);
        assert!(default_ipv4_interfaces("").is_empty());
        assert!(default_ipv6_interfaces("").is_empty());
        // Only the header: no default route.
        assert!(default_ipv4_interfaces(ROUTE.lines().next().unwrap()).is_empty());
    }

    #[test]
    fn no_panic_on_any_route_text() {
        for text in ["\n\n", "a b c d e f g h i j k", "\u{0}\u{1}", ROUTE6, ROUTE] {
            let _ = default_ipv4_interfaces(text);
            let _ = default_ipv6_interfaces(text);
        }
    }
}
