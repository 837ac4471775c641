//! `knockd.conf`: parsing and validation into a typed configuration.
//!
//! The public types below are the contract the rest of the daemon uses.
//! [`parse_str`] / [`load`] read the classic format (see the manual page and
//! the project specification, section 1) and validate it completely: every
//! error is reported with `file:line:` and the offending text quoted.
//!
//! Decisions where the classic format is silent:
//! * `[options]` may appear more than once (and after doors); its directives
//!   merge, and a directive given twice, in one section or across the
//!   `[options]` sections, is an error. Aliases count as the same directive.
//! * A value is everything after the first `=`, trimmed, taken literally: a
//!   `#` after a value is part of it, not a comment.
//! * `UseSyslog` takes no value (`UseSyslog = yes` is an error).
//! * Timeouts are plain decimal seconds, at most [`MAX_TIMEOUT_SECS`];
//!   `Cmd_Timeout = 0` is allowed (stop right after start), `Seq_Timeout = 0`
//!   is not.
//! * `Interface` is a comma-separated list of names, each of which must look
//!   like an interface name (no `/`, no blanks, at most 15 characters), none
//!   twice; whether they exist is checked at start-up.
//! * Warnings, not errors: a door name used twice (both doors are kept), a
//!   door without a start command, `Cmd_Timeout` without `Stop_Command`, two
//!   doors with the same fixed sequence and target, relative paths.
//! * One-time sequence files are not opened while parsing: they may be
//!   created later.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knock_common::rotate::{self, Key, PortRange};
use knock_common::{FlagSpec, Proto, Sequence, SequenceError};

use crate::settings::InterfaceList;

pub const DEFAULT_PID_FILE: &str = "/var/run/knockd.pid";
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// `Scan_Threshold` default: a source that touched more than this many
/// distinct other ports (TCP SYN or UDP) of the host recently cannot knock.
pub const DEFAULT_SCAN_THRESHOLD: usize = 8;
/// Largest `Scan_Threshold` accepted.
pub const MAX_SCAN_THRESHOLD: usize = crate::matcher::MAX_SCAN_THRESHOLD;

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub options: Options,
    pub doors: Vec<Door>,
    /// Non-fatal findings (duplicate door names, ...), each `file:line: text`.
    pub warnings: Vec<String>,
}

/// The `[options]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub use_syslog: bool,
    pub log_file: Option<PathBuf>,
    /// `PidFile`, default [`DEFAULT_PID_FILE`].
    pub pid_file: PathBuf,
    /// `Interface = NAME[, NAME...]`; `-i` on the command line wins, then
    /// this, then the interfaces of the default routes
    /// ([`crate::settings::resolve`]).
    pub interface: Option<InterfaceList>,
}

/// Where a door's sequence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSpec {
    Fixed(Sequence),
    OneTime(PathBuf),
    /// Derived from a shared key and the clock (`Sequence_Secret`).
    Rotating(RotatingSpec),
}

/// Largest `Sequence_Period`: one day, in seconds.
pub const MAX_SEQUENCE_PERIOD: u64 = 24 * 60 * 60;
/// Largest `Sequence_Skew`, in windows.
pub const MAX_SEQUENCE_SKEW: u64 = 10;
/// Directory of the used-window files when `Sequence_State` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/knockd";

/// A rotating door (`Sequence_Secret` and its companions; see
/// [`knock_common::rotate`] for the derivation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatingSpec {
    /// `Sequence_Secret`: the key file.
    pub secret: PathBuf,
    /// Line of the `Sequence_Secret` directive, for errors about the file.
    pub secret_line: usize,
    /// The key, read by [`load`] (which refuses a key file group or others
    /// may read or write); `None` after [`parse_str`] alone.
    pub key: Option<Key>,
    pub length: usize,
    pub period: u64,
    pub skew: u64,
    pub range: PortRange,
    pub proto: Proto,
    pub bind_source: bool,
    /// `Sequence_State`: where the last used window is recorded; default
    /// `DEFAULT_STATE_DIR/rotating-<door name, %-escaped>.window`.
    pub state: PathBuf,
}

/// The default `Sequence_State` of door `name`: characters other than
/// ASCII letters, digits, `-` and `_` are written `%XX`, so any door name
/// gives one plain file name, and different names different files.
pub fn default_state_path(name: &str) -> PathBuf {
    let mut file = String::from("rotating-");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            file.push(char::from(b));
        } else {
            file.push_str(&format!("%{b:02X}"));
        }
    }
    file.push_str(".window");
    Path::new(DEFAULT_STATE_DIR).join(file)
}

/// One knock/event section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    pub name: String,
    /// Line of the `[name]` header.
    pub line: usize,
    pub sequence: SequenceSpec,
    pub seq_timeout: Duration,
    pub tcp_flags: Option<FlagSpec>,
    pub target: Option<IpAddr>,
    pub start_command: Option<String>,
    /// `None`: absent (falls back to `start_command`); `Some("")`: nothing for IPv6.
    pub start_command_6: Option<String>,
    pub cmd_timeout: Duration,
    pub stop_command: Option<String>,
    /// Same fallback rule as `start_command_6`.
    pub stop_command_6: Option<String>,
    /// `Scan_Threshold`, default [`DEFAULT_SCAN_THRESHOLD`]; 0 = guard off.
    pub scan_threshold: usize,
}

fn pick<'a>(v4: &'a Option<String>, v6: &'a Option<String>, is_v6: bool) -> Option<&'a str> {
    let chosen = if is_v6 {
        v6.as_ref().or(v4.as_ref())
    } else {
        v4.as_ref()
    };
    chosen.map(String::as_str).filter(|s| !s.is_empty())
}

impl Door {
    /// The start command for a knock over IPv4 or IPv6, fallback applied.
    pub fn start_command_for(&self, is_v6: bool) -> Option<&str> {
        pick(&self.start_command, &self.start_command_6, is_v6)
    }

    /// The stop command for a knock over IPv4 or IPv6, fallback applied.
    pub fn stop_command_for(&self, is_v6: bool) -> Option<&str> {
        pick(&self.stop_command, &self.stop_command_6, is_v6)
    }
}

/// One error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All errors found in a file (the parser reports every one it can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/knockd.conf";

/// Largest accepted `Seq_Timeout` / `Cmd_Timeout`: one year, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 365 * 24 * 60 * 60;

/// Largest configuration file [`load`] reads.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
pub const MAX_INTERFACE_LEN: usize = 15;

/// Check an interface name as given to `Interface =` or `-i`: a bare name
/// such as `eth0` or `any`, not a device path. Returns a message quoting the
/// name when it cannot be an interface name.
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty".to_string());
    }
    if name.contains('/') {
        return Err(format!(
            "interface \"{name}\" is a path; give just the interface name (e.g. eth0, not /dev/eth0)"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(format!(
            "interface \"{name}\" contains a blank, a control character or ':', which no interface name has"
        ));
    }
    if name.len() > MAX_INTERFACE_LEN {
        return Err(format!(
            "interface \"{name}\" is longer than {MAX_INTERFACE_LEN} characters, the limit of Linux interface names"
        ));
    }
    Ok(())
}

/// Every directive of `knockd.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Directive {
    UseSyslog,
    LogFile,
    PidFile,
    Interface,
    Sequence,
    OneTimeSequences,
    SeqTimeout,
    TcpFlags,
    Target,
    StartCommand,
    StartCommand6,
    CmdTimeout,
    StopCommand,
    StopCommand6,
    SequenceSecret,
    SequenceLength,
    SequencePeriod,
    SequenceSkew,
    SequencePorts,
    SequenceProtocol,
    SequenceBindSource,
    SequenceState,
    ScanThreshold,
}

/// Lower-case spelling (including aliases) to directive.
const SPELLINGS: &[(&str, Directive)] = &[
    ("usesyslog", Directive::UseSyslog),
    ("logfile", Directive::LogFile),
    ("pidfile", Directive::PidFile),
    ("interface", Directive::Interface),
    ("sequence", Directive::Sequence),
    ("one_time_sequences", Directive::OneTimeSequences),
    ("seq_timeout", Directive::SeqTimeout),
    ("timeout", Directive::SeqTimeout),
    ("tcpflags", Directive::TcpFlags),
    ("target", Directive::Target),
    ("start_command", Directive::StartCommand),
    ("command", Directive::StartCommand),
    ("start_command_6", Directive::StartCommand6),
    ("command_6", Directive::StartCommand6),
    ("cmd_timeout", Directive::CmdTimeout),
    ("stop_command", Directive::StopCommand),
    ("stop_command_6", Directive::StopCommand6),
    ("sequence_secret", Directive::SequenceSecret),
    ("sequence_length", Directive::SequenceLength),
    ("sequence_period", Directive::SequencePeriod),
    ("sequence_skew", Directive::SequenceSkew),
    ("sequence_ports", Directive::SequencePorts),
    ("sequence_protocol", Directive::SequenceProtocol),
    ("sequence_bind_source", Directive::SequenceBindSource),
    ("sequence_state", Directive::SequenceState),
    ("scan_threshold", Directive::ScanThreshold),
];

const GLOBAL_LIST: &str = "UseSyslog, LogFile, PidFile, Interface";
const DOOR_LIST: &str = "Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Target, \
     Start_Command, Start_Command_6, Cmd_Timeout, Stop_Command, Stop_Command_6, Scan_Threshold, \
     Sequence_Secret, Sequence_Length, Sequence_Period, Sequence_Skew, Sequence_Ports, \
     Sequence_Protocol, Sequence_Bind_Source, Sequence_State";

/// The directives that only make sense with `Sequence_Secret`.
const ROTATING_COMPANIONS: [Directive; 7] = [
    Directive::SequenceLength,
    Directive::SequencePeriod,
    Directive::SequenceSkew,
    Directive::SequencePorts,
    Directive::SequenceProtocol,
    Directive::SequenceBindSource,
    Directive::SequenceState,
];

impl Directive {
    fn lookup(key: &str) -> Option<Directive> {
        SPELLINGS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|&(_, d)| d)
    }

    /// The canonical spelling, as in the manual.
    fn name(self) -> &'static str {
        match self {
            Directive::UseSyslog => "UseSyslog",
            Directive::LogFile => "LogFile",
            Directive::PidFile => "PidFile",
            Directive::Interface => "Interface",
            Directive::Sequence => "Sequence",
            Directive::OneTimeSequences => "One_Time_Sequences",
            Directive::SeqTimeout => "Seq_Timeout",
            Directive::TcpFlags => "TCPFlags",
            Directive::Target => "Target",
            Directive::StartCommand => "Start_Command",
            Directive::StartCommand6 => "Start_Command_6",
            Directive::CmdTimeout => "Cmd_Timeout",
            Directive::StopCommand => "Stop_Command",
            Directive::StopCommand6 => "Stop_Command_6",
            Directive::SequenceSecret => "Sequence_Secret",
            Directive::SequenceLength => "Sequence_Length",
            Directive::SequencePeriod => "Sequence_Period",
            Directive::SequenceSkew => "Sequence_Skew",
            Directive::SequencePorts => "Sequence_Ports",
            Directive::SequenceProtocol => "Sequence_Protocol",
            Directive::SequenceBindSource => "Sequence_Bind_Source",
            Directive::SequenceState => "Sequence_State",
            Directive::ScanThreshold => "Scan_Threshold",
        }
    }

    fn is_global(self) -> bool {
        matches!(
            self,
            Directive::UseSyslog | Directive::LogFile | Directive::PidFile | Directive::Interface
        )
    }

    /// Directives whose empty value is meaningful ("nothing for IPv6").
    fn empty_allowed(self) -> bool {
        matches!(self, Directive::StartCommand6 | Directive::StopCommand6)
    }
}

/// Quote `key` as written, adding the canonical name when it is an alias.
fn describe(key: &str, d: Directive) -> String {
    if key.eq_ignore_ascii_case(d.name()) {
        format!("\"{key}\"")
    } else {
        format!("\"{key}\" (alias of {})", d.name())
    }
}

/// Parse a timeout: a plain non-negative decimal integer of seconds.
fn parse_secs(key: &str, value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{key} \"{value}\" is not a whole, non-negative number of seconds"
        ));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_TIMEOUT_SECS => Ok(n),
        _ => Err(format!(
            "{key} \"{value}\" is more than the maximum of {MAX_TIMEOUT_SECS} seconds (one year)"
        )),
    }
}

/// A door while its section is being read.
#[derive(Debug, Default)]
struct DoorDraft {
    name: String,
    line: usize,
    /// The section header was malformed: report its lines' errors but do not
    /// complain about what the section lacks.
    broken: bool,
    seen: Vec<(Directive, usize)>,
    sequence: Option<Sequence>,
    one_time: Option<PathBuf>,
    seq_timeout: Option<Duration>,
    tcp_flags: Option<FlagSpec>,
    target: Option<IpAddr>,
    start_command: Option<String>,
    start_command_6: Option<String>,
    cmd_timeout: Option<Duration>,
    stop_command: Option<String>,
    stop_command_6: Option<String>,
    secret: Option<PathBuf>,
    length: Option<usize>,
    period: Option<u64>,
    skew: Option<u64>,
    range: Option<PortRange>,
    proto: Option<Proto>,
    bind_source: Option<bool>,
    state: Option<PathBuf>,
    scan_threshold: Option<usize>,
}

/// A whole number in `lo..=hi`, or a message quoting the value.
fn parse_bounded(key: &str, value: &str, lo: u64, hi: u64, unit: &str) -> Result<u64, String> {
    let n = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|n| (lo..=hi).contains(n));
    n.ok_or_else(|| {
        format!("{key} \"{value}\" is not a whole number of {unit} between {lo} and {hi}")
    })
}

impl DoorDraft {
    fn seen_at(&self, d: Directive) -> Option<usize> {
        self.seen.iter().find(|(x, _)| *x == d).map(|&(_, l)| l)
    }
}

#[derive(Debug)]
enum Section {
    None,
    Options,
    Door(usize),
}

struct Parser<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
    /// (line, text)
    warnings: Vec<(usize, String)>,
    options: Options,
    options_seen: Vec<(Directive, usize)>,
    doors: Vec<DoorDraft>,
    section: Section,
    /// Lines that were neither blank nor comments.
    content_lines: usize,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str) -> Self {
        Parser {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
            options: Options {
                use_syslog: false,
                log_file: None,
                pid_file: PathBuf::from(DEFAULT_PID_FILE),
                interface: None,
            },
            options_seen: Vec::new(),
            doors: Vec::new(),
            section: Section::None,
            content_lines: 0,
        }
    }

    fn error(&mut self, line: usize, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: Some(line),
            message,
        });
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push((line, message));
    }

    fn line(&mut self, n: usize, raw: &str) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        self.content_lines += 1;
        if line.starts_with('[') {
            self.header(n, line);
        } else {
            self.directive(n, line);
        }
    }

    fn header(&mut self, n: usize, line: &str) {
        let inner = match line.strip_suffix(']') {
            Some(rest) if line.len() >= 2 => rest[1..].trim(),
            _ => {
                self.error(
                    n,
                    format!("section header \"{line}\" does not end with \"]\""),
                );
                self.open_broken_door(n, line);
                return;
            }
        };
        if inner.is_empty() {
            self.error(
                n,
                format!("empty section name \"{line}\": write [options] or [door name]"),
            );
            self.open_broken_door(n, line);
            return;
        }
        if inner.eq_ignore_ascii_case("options") {
            self.section = Section::Options;
            return;
        }
        if let Some(first) = self.doors.iter().find(|d| !d.broken && d.name == inner) {
            let first_line = first.line;
            self.warn(
                n,
                format!(
                    "door \"{inner}\" is defined twice (first at line {first_line}); both are used"
                ),
            );
        }
        self.doors.push(DoorDraft {
            name: inner.to_string(),
            line: n,
            ..DoorDraft::default()
        });
        self.section = Section::Door(self.doors.len() - 1);
    }

    fn open_broken_door(&mut self, n: usize, line: &str) {
        self.doors.push(DoorDraft {
            name: line.to_string(),
            line: n,
            broken: true,
            ..DoorDraft::default()
        });
        self.section = Section::Door(self.doors.len() - 1);
    }

    fn directive(&mut self, n: usize, line: &str) {
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line, None),
        };
        if key.is_empty() {
            self.error(
                n,
                format!("line \"{line}\" has no directive name before \"=\""),
            );
            return;
        }
        let Some(d) = Directive::lookup(key) else {
            match (&self.section, value) {
                (_, None) => self.error(
                    n,
                    format!(
                        "line \"{line}\" is neither a [section] header, a # comment nor a \"directive = value\" line"
                    ),
                ),
                (Section::None, Some(_)) => self.error(
                    n,
                    format!(
                        "unknown directive \"{key}\" outside any section (global directives, under [options]: {GLOBAL_LIST}; door directives, under [door name]: {DOOR_LIST})"
                    ),
                ),
                (Section::Options, Some(_)) => self.error(
                    n,
                    format!(
                        "unknown directive \"{key}\" in [options] (global directives: {GLOBAL_LIST})"
                    ),
                ),
                (Section::Door(i), Some(_)) => {
                    let name = self.doors[*i].name.clone();
                    self.error(
                        n,
                        format!(
                            "unknown directive \"{key}\" in door \"{name}\" (door directives: {DOOR_LIST})"
                        ),
                    )
                }
            }
            return;
        };
        let what = describe(key, d);

        // Where the directive goes, and whether it was given before there.
        let seen = match &self.section {
            Section::None => {
                let home = if d.is_global() {
                    "[options]"
                } else {
                    "a [door name] section"
                };
                self.error(
                    n,
                    format!("directive {what} is outside any section; put it under {home}"),
                );
                return;
            }
            Section::Options => {
                if !d.is_global() {
                    self.error(
                        n,
                        format!(
                            "{what} is a door directive and does not belong in [options]; put it under a [door name] section"
                        ),
                    );
                    return;
                }
                &mut self.options_seen
            }
            Section::Door(i) => {
                if d.is_global() {
                    let name = self.doors[*i].name.clone();
                    self.error(
                        n,
                        format!(
                            "{what} is a global directive and does not belong in door \"{name}\"; put it under [options]"
                        ),
                    );
                    return;
                }
                &mut self.doors[*i].seen
            }
        };
        if let Some(&(_, first)) = seen.iter().find(|(x, _)| *x == d) {
            self.error(
                n,
                format!(
                    "{} given twice in this section (first at line {first}): {what} = \"{}\"",
                    d.name(),
                    value.unwrap_or("")
                ),
            );
            return;
        }
        seen.push((d, n));

        // The value.
        let value = match (d, value) {
            (Directive::UseSyslog, None) => "",
            (Directive::UseSyslog, Some(v)) => {
                self.error(
                    n,
                    format!("{what} is a bare word and takes no value (found \"{v}\"); write just UseSyslog"),
                );
                return;
            }
            (_, None) => {
                self.error(n, format!("{what} needs a value: {} = ...", d.name()));
                return;
            }
            (_, Some("")) if !d.empty_allowed() => {
                self.error(n, format!("{what} has an empty value"));
                return;
            }
            (_, Some(v)) => v,
        };
        if let Err(message) = self.apply(d, key, value) {
            self.error(n, message);
        }
    }

    /// Store a directive's value, or say why it is wrong.
    fn apply(&mut self, d: Directive, key: &str, value: &str) -> Result<(), String> {
        if d.is_global() {
            return self.apply_global(d, key, value);
        }
        let Section::Door(i) = self.section else {
            // Door directives are refused outside doors before this point.
            return Ok(());
        };
        let door = &mut self.doors[i];
        match d {
            Directive::Sequence => {
                let seq = value.parse::<Sequence>().map_err(|e| match e {
                    SequenceError::BadPort(ref p) if p.split_whitespace().count() > 1 => {
                        format!("{e} (separate the knocks with commas: 7000,8000,9000)")
                    }
                    SequenceError::BadPort(_) | SequenceError::BadProto(_) => e.to_string(),
                    _ => format!("{e}: {key} = \"{value}\""),
                })?;
                door.sequence = Some(seq);
            }
            Directive::OneTimeSequences => door.one_time = Some(PathBuf::from(value)),
            Directive::SeqTimeout => {
                let secs = parse_secs(key, value)?;
                if secs == 0 {
                    return Err(format!(
                        "{key} \"{value}\" must be at least 1 second (a knock needs time to arrive)"
                    ));
                }
                door.seq_timeout = Some(Duration::from_secs(secs));
            }
            Directive::CmdTimeout => {
                door.cmd_timeout = Some(Duration::from_secs(parse_secs(key, value)?));
            }
            Directive::TcpFlags => {
                let flags = value
                    .parse::<FlagSpec>()
                    .map_err(|e| format!("{key} \"{value}\": {e}"))?;
                door.tcp_flags = Some(flags);
            }
            Directive::Target => {
                let ip = value.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "{key} \"{value}\" is not an IPv4 or IPv6 address (e.g. 192.0.2.1 or 2001:db8::1)"
                    )
                })?;
                door.target = Some(ip);
            }
            Directive::StartCommand => door.start_command = Some(value.to_string()),
            Directive::StartCommand6 => door.start_command_6 = Some(value.to_string()),
            Directive::StopCommand => door.stop_command = Some(value.to_string()),
            Directive::StopCommand6 => door.stop_command_6 = Some(value.to_string()),
            Directive::SequenceSecret => door.secret = Some(PathBuf::from(value)),
            Directive::SequenceState => door.state = Some(PathBuf::from(value)),
            Directive::SequenceLength => {
                let n = parse_bounded(key, value, 1, rotate::MAX_LENGTH as u64, "hits")?;
                door.length = Some(n as usize);
            }
            Directive::SequencePeriod => {
                door.period = Some(parse_bounded(
                    key,
                    value,
                    1,
                    MAX_SEQUENCE_PERIOD,
                    "seconds",
                )?);
            }
            Directive::SequenceSkew => {
                door.skew = Some(parse_bounded(key, value, 0, MAX_SEQUENCE_SKEW, "windows")?);
            }
            Directive::SequencePorts => {
                let range = value
                    .parse::<PortRange>()
                    .map_err(|e| format!("{key} \"{value}\": {e}"))?;
                door.range = Some(range);
            }
            Directive::SequenceProtocol => {
                let proto = value.parse::<Proto>().map_err(|_| {
                    format!("{key} \"{value}\" is not a protocol: write tcp or udp")
                })?;
                door.proto = Some(proto);
            }
            Directive::SequenceBindSource => {
                let yes = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("{key} \"{value}\" is neither yes nor no")),
                };
                door.bind_source = Some(yes);
            }
            Directive::ScanThreshold => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_SCAN_THRESHOLD && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        format!(
                            "{key} \"{value}\" is not a whole number from 0 (guard off) to {MAX_SCAN_THRESHOLD}"
                        )
                    })?;
                door.scan_threshold = Some(n);
            }
            Directive::UseSyslog
            | Directive::LogFile
            | Directive::PidFile
            | Directive::Interface => {}
        }
        Ok(())
    }

    /// The rotating part of a door: refuses `Sequence_Secret` next to a
    /// listed sequence, companions without `Sequence_Secret`, and a length
    /// larger than the port range.
    fn rotating(
        &mut self,
        draft: &DoorDraft,
        secret_line: Option<usize>,
        listed_line: Option<usize>,
    ) -> Option<RotatingSpec> {
        let name = &draft.name;
        let Some(secret_line) = secret_line else {
            for d in ROTATING_COMPANIONS {
                if let Some(l) = draft.seen_at(d) {
                    self.error(
                        l,
                        format!(
                            "{} in door \"{name}\" needs Sequence_Secret (it describes a rotating sequence)",
                            d.name()
                        ),
                    );
                }
            }
            return None;
        };
        if let Some(l) = listed_line {
            let other = if draft.seen_at(Directive::Sequence) == Some(l) {
                "Sequence"
            } else {
                "One_Time_Sequences"
            };
            self.error(
                l.max(secret_line),
                format!(
                    "door \"{name}\" has both Sequence_Secret (line {secret_line}) and {other} (line {l}); use one of them"
                ),
            );
            return None;
        }
        let secret = draft.secret.clone()?;
        let length = draft.length.unwrap_or(rotate::DEFAULT_LENGTH);
        let range = draft.range.unwrap_or(rotate::DEFAULT_RANGE);
        if length as u64 > u64::from(range.size()) {
            let l = draft
                .seen_at(Directive::SequenceLength)
                .into_iter()
                .chain(draft.seen_at(Directive::SequencePorts))
                .max()
                .unwrap_or(secret_line);
            self.error(
                l,
                format!(
                    "door \"{name}\": Sequence_Length {length} needs {length} different ports, but Sequence_Ports {range} holds only {}",
                    range.size()
                ),
            );
            return None;
        }
        if secret.is_relative() {
            self.warn(
                secret_line,
                format!(
                    "Sequence_Secret \"{}\" is a relative path; it is looked up from the daemon's working directory",
                    secret.display()
                ),
            );
        }
        Some(RotatingSpec {
            secret,
            secret_line,
            key: None,
            length,
            period: draft.period.unwrap_or(rotate::DEFAULT_PERIOD),
            skew: draft.skew.unwrap_or(rotate::DEFAULT_SKEW),
            range,
            proto: draft.proto.unwrap_or(Proto::Tcp),
            bind_source: draft.bind_source.unwrap_or(false),
            state: draft
                .state
                .clone()
                .unwrap_or_else(|| default_state_path(name)),
        })
    }

    fn apply_global(&mut self, d: Directive, key: &str, value: &str) -> Result<(), String> {
        match d {
            Directive::UseSyslog => self.options.use_syslog = true,
            Directive::LogFile => self.options.log_file = Some(PathBuf::from(value)),
            Directive::PidFile => self.options.pid_file = PathBuf::from(value),
            Directive::Interface => {
                let list = InterfaceList::parse(value).map_err(|e| format!("{key}: {e}"))?;
                self.options.interface = Some(list);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whole-file checks; build the configuration.
    fn finish(mut self) -> Result<Config, ConfigErrors> {
        let mut doors = Vec::new();
        let drafts = std::mem::take(&mut self.doors);
        let declared_doors = drafts.iter().filter(|d| !d.broken).count();
        for draft in drafts {
            if draft.broken {
                continue;
            }
            let name = draft.name.clone();
            let seq_line = draft.seen_at(Directive::Sequence);
            let otp_line = draft.seen_at(Directive::OneTimeSequences);
            let secret_line = draft.seen_at(Directive::SequenceSecret);
            let rotating = self.rotating(&draft, secret_line, seq_line.or(otp_line));
            let sequence = match (seq_line, otp_line) {
                _ if secret_line.is_some() => rotating.map(SequenceSpec::Rotating),
                (None, None) => {
                    self.error(
                        draft.line,
                        format!(
                            "door \"{name}\" has no Sequence, One_Time_Sequences or Sequence_Secret: it could never be knocked open"
                        ),
                    );
                    None
                }
                (Some(a), Some(b)) => {
                    self.error(
                        a.max(b),
                        format!(
                            "door \"{name}\" has both Sequence (line {a}) and One_Time_Sequences (line {b}); use one of them"
                        ),
                    );
                    None
                }
                (Some(_), None) => draft.sequence.clone().map(SequenceSpec::Fixed),
                (None, Some(l)) => draft.one_time.clone().map(|p| {
                    if p.is_relative() {
                        self.warn(
                            l,
                            format!(
                                "One_Time_Sequences \"{}\" is a relative path; it is looked up from the daemon's working directory",
                                p.display()
                            ),
                        );
                    }
                    SequenceSpec::OneTime(p)
                }),
            };
            let no_start = draft.start_command.is_none()
                && draft.start_command_6.as_deref().unwrap_or("").is_empty();
            if no_start {
                self.warn(
                    draft.line,
                    format!(
                        "door \"{name}\" has no Start_Command: a successful knock is only logged"
                    ),
                );
            }
            if let Some(l) = draft.seen_at(Directive::CmdTimeout) {
                if draft.stop_command.is_none()
                    && draft.stop_command_6.as_deref().unwrap_or("").is_empty()
                {
                    self.warn(
                        l,
                        format!("door \"{name}\": Cmd_Timeout has no effect without Stop_Command"),
                    );
                }
            }
            let Some(sequence) = sequence else { continue };
            doors.push(Door {
                name,
                line: draft.line,
                sequence,
                seq_timeout: draft.seq_timeout.unwrap_or(DEFAULT_SEQ_TIMEOUT),
                tcp_flags: draft.tcp_flags,
                target: draft.target,
                start_command: draft.start_command,
                start_command_6: draft.start_command_6,
                cmd_timeout: draft.cmd_timeout.unwrap_or(DEFAULT_CMD_TIMEOUT),
                stop_command: draft.stop_command,
                stop_command_6: draft.stop_command_6,
                scan_threshold: draft.scan_threshold.unwrap_or(DEFAULT_SCAN_THRESHOLD),
            });
        }

        // The same fixed sequence in two doors opens both at once.
        for (i, door) in doors.iter().enumerate() {
            let SequenceSpec::Fixed(seq) = &door.sequence else {
                continue;
            };
            let earlier = doors[..i].iter().find(|o| {
                o.target == door.target && matches!(&o.sequence, SequenceSpec::Fixed(s) if s == seq)
            });
            if let Some(o) = earlier {
                self.warnings.push((
                    door.line,
                    format!(
                        "door \"{}\" has the same sequence {seq} as door \"{}\" (line {}); one knock opens both",
                        door.name, o.name, o.line
                    ),
                ));
            }
        }

        for (d, l) in self.options_seen.clone() {
            let path = match d {
                Directive::LogFile => self.options.log_file.clone(),
                Directive::PidFile => Some(self.options.pid_file.clone()),
                _ => None,
            };
            if let Some(p) = path.filter(|p| p.is_relative()) {
                self.warn(
                    l,
                    format!(
                        "{} \"{}\" is a relative path; it is resolved from the daemon's working directory",
                        d.name(),
                        p.display()
                    ),
                );
            }
        }

        if self.content_lines == 0 {
            self.errors.push(ConfigError {
                file: self.file.to_string(),
                line: None,
                message: "the file is empty: nothing to do (define a door: a [name] section with a Sequence)".to_string(),
            });
        } else if declared_doors == 0 {
            self.errors.push(ConfigError {
                file: self.file.to_string(),
                line: None,
                message: "no door is defined: nothing to do (define a door: a [name] section with a Sequence)".to_string(),
            });
        }

        if !self.errors.is_empty() {
            self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            return Err(ConfigErrors(self.errors));
        }
        self.warnings.sort_by_key(|w| w.0);
        let file = self.file;
        Ok(Config {
            options: self.options,
            doors,
            warnings: self
                .warnings
                .into_iter()
                .map(|(l, w)| format!("{file}:{l}: {w}"))
                .collect(),
        })
    }
}

/// Parse configuration text; `file` names it in messages.
///
/// Every error found is reported (each `file:line: message`), not just the
/// first; warnings (duplicate door names, doors without a command, ...) end
/// up in [`Config::warnings`]. One-time sequence files are not opened here.
pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new(file);
    for (i, line) in text.split('\n').enumerate() {
        parser.line(i + 1, line);
    }
    parser.finish()
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let one = |line: Option<usize>, message: String| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line,
            message,
        }])
    };
    if path.is_dir() {
        return Err(one(None, "cannot read: it is a directory".to_string()));
    }
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| one(None, format!("cannot read: {e}")))?;
    // Commands run as root: refuse a file that someone else could have
    // written, such as a world-writable `/dev/zero` (see `knock_common::fsafe`).
    knock_common::fsafe::check_readable_config(&file, path)
        .map_err(|e| one(None, e.reason.to_string()))?;
    // Bounded, so that a runaway generator behind a pipe is an error
    // instead of a read until memory runs out.
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| one(None, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(one(
            None,
            format!("cannot read: larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..bad].iter().filter(|&&b| b == b'\n').count() + 1;
        one(Some(line), "the line is not valid UTF-8 text".to_string())
    })?;
    let mut cfg = parse_str(&text, &name)?;
    load_keys(&mut cfg, &name)?;
    Ok(cfg)
}

/// Read the key of every rotating door (see [`Key::load`]: a regular file
/// that group and others can neither read nor write). Errors name the
/// configuration file and the `Sequence_Secret` line, never the key.
pub fn load_keys(cfg: &mut Config, file: &str) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    for door in &mut cfg.doors {
        let SequenceSpec::Rotating(spec) = &mut door.sequence else {
            continue;
        };
        match Key::load(&spec.secret) {
            Ok(key) => spec.key = Some(key),
            Err(e) => errors.push(ConfigError {
                file: file.to_string(),
                line: Some(spec.secret_line),
                message: format!("door \"{}\": Sequence_Secret: {e}", door.name),
            }),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, SYN};
    use knock_common::Knock;

    const F: &str = "knockd.conf";

    fn parse(text: &str) -> Config {
        match parse_str(text, F) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors for {text:?}:\n{e}"),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse_str(text, F) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(ConfigErrors(v)) => v,
        }
    }

    /// A config with one door `d` (header on line 1) whose body follows a
    /// `sequence = 1` line (line 2): `body` starts on line 3.
    fn door_text(body: &str) -> String {
        format!("[d]\nsequence = 1\n{body}\n")
    }

    fn door(body: &str) -> Door {
        let cfg = parse(&door_text(body));
        assert_eq!(cfg.doors.len(), 1);
        cfg.doors.into_iter().next().unwrap()
    }

    fn fixed(d: &Door) -> &Sequence {
        match &d.sequence {
            SequenceSpec::Fixed(s) => s,
            other => panic!("expected a fixed sequence, got {other:?}"),
        }
    }

    // The three examples of the manual page, with the section headers that
    // the text dump of the page lost.
    pub(crate) const MAN_EXAMPLE_1: &str = "\
[options]
     logfile = /var/log/knockd.log

[openSSH]
     sequence    = 7000,8000,9000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -A INPUT -s %IP% -j ACCEPT

[closeSSH]
     sequence    = 9000,8000,7000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -D INPUT -s %IP% -j ACCEPT
";

    pub(crate) const MAN_EXAMPLE_2: &str = "\
[options]
     logfile = /var/log/knockd.log

[opencloseSSH]
     sequence      = 2222:udp,3333:tcp,4444:udp
     seq_timeout   = 15
     tcpflags      = syn,ack
     start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
     cmd_timeout   = 5
     stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
";

    pub(crate) const MAN_EXAMPLE_3: &str = "\
[options]
     logfile = /var/log/knockd.log

[smtp]
     one_time_sequences = /etc/knockd/smtp_sequences
     seq_timeout        = 15
     tcpflags           = fin,!ack
     start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     cmd_timeout        = 5
     stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
";

    /// `/etc/knockd.conf` as shipped by Debian's knockd 0.8 package.
    pub(crate) const DEBIAN_CONF: &str = "\
[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[openHTTPS]
\tsequence    = 12345,54321,24680,13579
\tseq_timeout = 5
\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%
\ttcpflags    = syn
";

    #[test]
    fn man_page_example_1() {
        let cfg = parse(MAN_EXAMPLE_1);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert_eq!(
            cfg.options.log_file.as_deref(),
            Some(Path::new("/var/log/knockd.log"))
        );
        assert!(!cfg.options.use_syslog);
        assert_eq!(cfg.doors.len(), 2);
        let (open, close) = (&cfg.doors[0], &cfg.doors[1]);
        assert_eq!((open.name.as_str(), open.line), ("openSSH", 4));
        assert_eq!((close.name.as_str(), close.line), ("closeSSH", 10));
        assert_eq!(
            fixed(open).knocks(),
            &[Knock::tcp(7000), Knock::tcp(8000), Knock::tcp(9000)]
        );
        assert_eq!(fixed(close).to_string(), "9000:tcp,8000:tcp,7000:tcp");
        assert_eq!(open.seq_timeout, Duration::from_secs(10));
        assert_eq!(open.tcp_flags, Some(FlagSpec { set: SYN, clear: 0 }));
        assert_eq!(
            open.start_command_for(false),
            Some("/sbin/iptables -A INPUT -s %IP% -j ACCEPT")
        );
        assert_eq!(
            open.start_command_for(true),
            Some("/sbin/iptables -A INPUT -s %IP% -j ACCEPT")
        );
        assert_eq!(open.stop_command_for(false), None);
        assert_eq!(
            close.start_command.as_deref(),
            Some("/sbin/iptables -D INPUT -s %IP% -j ACCEPT")
        );
    }

    #[test]
    fn man_page_example_2() {
        let cfg = parse(MAN_EXAMPLE_2);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let d = &cfg.doors[0];
        assert_eq!(d.name, "opencloseSSH");
        assert_eq!(
            fixed(d).knocks(),
            &[Knock::udp(2222), Knock::tcp(3333), Knock::udp(4444)]
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(15));
        assert_eq!(d.cmd_timeout, Duration::from_secs(5));
        assert_eq!(
            d.tcp_flags,
            Some(FlagSpec {
                set: SYN | ACK,
                clear: 0
            })
        );
        assert_eq!(
            d.stop_command_for(false),
            Some("/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT")
        );
        assert_eq!(
            d.stop_command_for(true),
            Some("/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT")
        );
    }

    #[test]
    fn man_page_example_3() {
        let cfg = parse(MAN_EXAMPLE_3);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let d = &cfg.doors[0];
        assert_eq!(d.name, "smtp");
        assert_eq!(
            d.sequence,
            SequenceSpec::OneTime(PathBuf::from("/etc/knockd/smtp_sequences"))
        );
        assert_eq!(
            d.tcp_flags,
            Some(FlagSpec {
                set: FIN,
                clear: ACK
            })
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(15));
        assert_eq!(d.cmd_timeout, Duration::from_secs(5));
    }

    #[test]
    fn debian_shipped_config() {
        let cfg = parse(DEBIAN_CONF);
        assert!(cfg.options.use_syslog);
        assert_eq!(cfg.options.log_file, None);
        let names: Vec<_> = cfg.doors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"]);
        assert_eq!(fixed(&cfg.doors[2]).len(), 4);
        assert!(cfg
            .doors
            .iter()
            .all(|d| d.seq_timeout == Duration::from_secs(5)));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn installed_debian_config_parses_if_present() {
        // The file on a machine with Debian's knockd package; skipped elsewhere.
        let path = Path::new("/etc/knockd.conf");
        if let Ok(text) = std::fs::read_to_string(path) {
            let cfg = parse_str(&text, "/etc/knockd.conf").unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.doors.is_empty());
        }
    }

    #[test]
    fn defaults() {
        let cfg = parse("[d]\nsequence = 1\ncommand = true\n");
        assert_eq!(
            cfg.options,
            Options {
                use_syslog: false,
                log_file: None,
                pid_file: PathBuf::from(DEFAULT_PID_FILE),
                interface: None,
            }
        );
        let d = &cfg.doors[0];
        assert_eq!(d.seq_timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(d.seq_timeout, Duration::from_secs(25));
        assert_eq!(d.cmd_timeout, DEFAULT_CMD_TIMEOUT);
        assert_eq!(d.scan_threshold, DEFAULT_SCAN_THRESHOLD);
        assert_eq!(d.scan_threshold, 8);
        assert_eq!(d.cmd_timeout, Duration::from_secs(10));
        assert_eq!(d.tcp_flags, None);
        assert_eq!(d.target, None);
        assert_eq!(d.stop_command, None);
        assert_eq!(DEFAULT_PID_FILE, "/var/run/knockd.pid");
    }

    #[test]
    fn every_global_directive_and_case() {
        let cases: &[(&str, Options)] = &[
            (
                "UseSyslog",
                Options {
                    use_syslog: true,
                    log_file: None,
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: None,
                },
            ),
            (
                "USESYSLOG",
                Options {
                    use_syslog: true,
                    log_file: None,
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: None,
                },
            ),
            (
                "LogFile = /var/log/k.log",
                Options {
                    use_syslog: false,
                    log_file: Some("/var/log/k.log".into()),
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: None,
                },
            ),
            (
                "  logfile=/tmp/a b.log  ",
                Options {
                    use_syslog: false,
                    log_file: Some("/tmp/a b.log".into()),
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: None,
                },
            ),
            (
                "PidFile = /run/k.pid",
                Options {
                    use_syslog: false,
                    log_file: None,
                    pid_file: "/run/k.pid".into(),
                    interface: None,
                },
            ),
            (
                "PIDFILE\t=\t/run/k.pid",
                Options {
                    use_syslog: false,
                    log_file: None,
                    pid_file: "/run/k.pid".into(),
                    interface: None,
                },
            ),
            (
                "Interface = eth1",
                Options {
                    use_syslog: false,
                    log_file: None,
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: Some(InterfaceList::parse("eth1").unwrap()),
                },
            ),
            (
                "interface = any",
                Options {
                    use_syslog: false,
                    log_file: None,
                    pid_file: PathBuf::from(DEFAULT_PID_FILE),
                    interface: Some(InterfaceList::parse("any").unwrap()),
                },
            ),
        ];
        for header in ["[options]", "[OPTIONS]", "[ Options ]"] {
            for (line, want) in cases {
                let text = format!("{header}\n{line}\n[d]\nsequence = 1\ncommand = x\n");
                let cfg = parse(&text);
                assert_eq!(&cfg.options, want, "{text:?}");
                assert_eq!(cfg.doors.len(), 1, "{text:?}");
            }
        }
    }

    #[test]
    fn every_door_directive_alias_and_case() {
        type Check = fn(&Door) -> bool;
        let cases: &[(&str, Check)] = &[
            ("Seq_Timeout = 7", |d| {
                d.seq_timeout == Duration::from_secs(7)
            }),
            ("SEQ_TIMEOUT=7", |d| d.seq_timeout == Duration::from_secs(7)),
            ("Scan_Threshold = 0", |d| d.scan_threshold == 0),
            ("scan_threshold=20", |d| d.scan_threshold == 20),
            ("SCAN_THRESHOLD = 64", |d| {
                d.scan_threshold == MAX_SCAN_THRESHOLD
            }),
            ("Timeout = 8", |d| d.seq_timeout == Duration::from_secs(8)),
            ("timeout = 8", |d| d.seq_timeout == Duration::from_secs(8)),
            ("seq_timeout = 31536000", |d| {
                d.seq_timeout == Duration::from_secs(MAX_TIMEOUT_SECS)
            }),
            ("TCPFlags = syn", |d| {
                d.tcp_flags == Some(FlagSpec { set: SYN, clear: 0 })
            }),
            ("tcpflags = FIN, !Ack", |d| {
                d.tcp_flags
                    == Some(FlagSpec {
                        set: FIN,
                        clear: ACK,
                    })
            }),
            ("Target = 192.0.2.1", |d| {
                d.target == Some("192.0.2.1".parse().unwrap())
            }),
            ("TARGET = 2001:db8::1", |d| {
                d.target == Some("2001:db8::1".parse().unwrap())
            }),
            ("Start_Command = a = b", |d| {
                d.start_command.as_deref() == Some("a = b")
            }),
            ("Command = iptables -A x=y", |d| {
                d.start_command.as_deref() == Some("iptables -A x=y")
            }),
            ("COMMAND=  spaced  out  ", |d| {
                d.start_command.as_deref() == Some("spaced  out")
            }),
            ("Start_Command_6 = ip6tables", |d| {
                d.start_command_6.as_deref() == Some("ip6tables")
            }),
            ("Command_6 = ip6tables", |d| {
                d.start_command_6.as_deref() == Some("ip6tables")
            }),
            ("start_command_6 =", |d| {
                d.start_command_6.as_deref() == Some("")
            }),
            ("Cmd_Timeout = 0", |d| d.cmd_timeout == Duration::ZERO),
            ("CMD_TIMEOUT = 60", |d| {
                d.cmd_timeout == Duration::from_secs(60)
            }),
            ("Stop_Command = b # not a comment", |d| {
                d.stop_command.as_deref() == Some("b # not a comment")
            }),
            ("stop_command_6 = c", |d| {
                d.stop_command_6.as_deref() == Some("c")
            }),
            ("Stop_Command_6 =   ", |d| {
                d.stop_command_6.as_deref() == Some("")
            }),
        ];
        for (line, check) in cases {
            let d = door(line);
            assert!(check(&d), "{line:?} gave {d:?}");
        }
    }

    #[test]
    fn sequence_directive_forms() {
        let cases: &[(&str, &[Knock])] = &[
            (
                "Sequence = 7000,8000,9000",
                &[Knock::tcp(7000), Knock::tcp(8000), Knock::tcp(9000)],
            ),
            (
                "SEQUENCE = 1:UDP , 65535:Tcp",
                &[Knock::udp(1), Knock::tcp(65535)],
            ),
            (
                "sequence=2222:udp,3333",
                &[Knock::udp(2222), Knock::tcp(3333)],
            ),
        ];
        for (line, want) in cases {
            let cfg = parse(&format!("[d]\n{line}\ncommand = x\n"));
            assert_eq!(fixed(&cfg.doors[0]).knocks(), *want, "{line:?}");
        }
        let cfg = parse("[d]\nOne_Time_Sequences = /etc/knockd/otp\ncommand = x\n");
        assert_eq!(
            cfg.doors[0].sequence,
            SequenceSpec::OneTime("/etc/knockd/otp".into())
        );
        let cfg = parse("[d]\nONE_TIME_SEQUENCES=/does/not/exist/yet\ncommand = x\n");
        assert_eq!(
            cfg.doors[0].sequence,
            SequenceSpec::OneTime("/does/not/exist/yet".into())
        );
    }

    #[test]
    fn ipv6_command_fallback() {
        // (body, start v4, start v6, stop v4, stop v6)
        type Want = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[(&str, Want)] = &[
            ("command = A", (Some("A"), Some("A"), None, None)),
            (
                "command = A\ncommand_6 = B",
                (Some("A"), Some("B"), None, None),
            ),
            ("command = A\ncommand_6 =", (Some("A"), None, None, None)),
            ("command_6 = B", (None, Some("B"), None, None)),
            (
                "command = A\nstop_command = S",
                (Some("A"), Some("A"), Some("S"), Some("S")),
            ),
            (
                "command = A\nstop_command = S\nstop_command_6 = T",
                (Some("A"), Some("A"), Some("S"), Some("T")),
            ),
            (
                "command = A\nstop_command = S\nstop_command_6 =",
                (Some("A"), Some("A"), Some("S"), None),
            ),
            (
                "command = A\nstart_command_6 =\nstop_command = S\nstop_command_6 =",
                (Some("A"), None, Some("S"), None),
            ),
        ];
        for (body, want) in cases {
            let d = door(body);
            let got = (
                d.start_command_for(false),
                d.start_command_for(true),
                d.stop_command_for(false),
                d.stop_command_for(true),
            );
            assert_eq!(got, *want, "{body:?}");
        }
    }

    #[test]
    fn comments_blank_lines_crlf_bom() {
        let text = "\u{feff}# leading comment\r\n\r\n   # indented comment\r\n[options]\r\n\tUseSyslog\r\n[d]\r\n sequence = 1,2:udp \r\n command = run %IP% \r\n";
        let cfg = parse(text);
        assert!(cfg.options.use_syslog);
        assert_eq!(cfg.doors[0].line, 6);
        assert_eq!(fixed(&cfg.doors[0]).to_string(), "1:tcp,2:udp");
        assert_eq!(cfg.doors[0].start_command.as_deref(), Some("run %IP%"));
        // Errors in a CRLF file get the right line number and no stray \r.
        let errs = errors("[d]\r\nsequence = 1\r\nsequence = 80x\r\n");
        assert_eq!(errs[0].line, Some(3));
        assert!(!errs[0].message.contains('\r'), "{}", errs[0]);
    }

    #[test]
    fn section_names() {
        let cfg = parse("[ my door ]\nsequence = 1\ncommand = x\n[Options]\nUseSyslog\n[options2]\nsequence = 2\ncommand = y\n");
        let names: Vec<_> = cfg.doors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["my door", "options2"]);
        assert!(cfg.options.use_syslog);
        // [options] may appear after the doors and more than once.
        let cfg = parse(
            "[options]\nlogfile = /a\n[d]\nsequence = 1\ncommand = x\n[options]\npidfile = /p\n",
        );
        assert_eq!(cfg.options.log_file.as_deref(), Some(Path::new("/a")));
        assert_eq!(cfg.options.pid_file, PathBuf::from("/p"));
    }

    /// (text, line of the error, fragments the message must contain)
    const BAD: &[(&str, Option<usize>, &[&str])] = &[
        // ports and protocols
        (
            "[d]\nsequence = 7000,80x",
            Some(2),
            &["port \"80x\" is not a number between 1 and 65535"],
        ),
        ("[d]\n\nsequence = -1", Some(3), &["port \"-1\""]),
        ("[d]\nsequence = abc", Some(2), &["port \"abc\""]),
        ("[d]\nsequence = 70000", Some(2), &["port \"70000\""]),
        ("[d]\nsequence = 0", Some(2), &["port \"0\""]),
        ("[d]\nsequence = 1,,2", Some(2), &["empty item", "\"1,,2\""]),
        ("[d]\nsequence = 1,", Some(2), &["empty item", "\"1,\""]),
        ("[d]\nsequence = 7000:icmp", Some(2), &["protocol \"icmp\""]),
        (
            "[d]\nsequence = 7000 8000",
            Some(2),
            &["port \"7000 8000\"", "separate the knocks with commas"],
        ),
        ("[d]\nsequence =", Some(2), &["\"sequence\"", "empty value"]),
        ("[d]\nsequence", Some(2), &["\"sequence\"", "needs a value"]),
        // unknown / misplaced directives
        (
            "[d]\nsequence = 1\nsequense = 2",
            Some(3),
            &["unknown directive \"sequense\"", "door \"d\""],
        ),
        (
            "[options]\nfoo = bar\n[d]\nsequence = 1",
            Some(2),
            &["unknown directive \"foo\"", "[options]"],
        ),
        (
            "sequence = 1\n[d]\nsequence = 1",
            Some(1),
            &["\"sequence\"", "outside any section"],
        ),
        (
            "logfile = /x\n[d]\nsequence = 1",
            Some(1),
            &["\"logfile\"", "outside any section", "[options]"],
        ),
        (
            "bogus = 1\n[d]\nsequence = 1",
            Some(1),
            &["unknown directive \"bogus\"", "outside any section"],
        ),
        (
            "[d]\nsequence = 1\nlogfile = /x",
            Some(3),
            &["\"logfile\"", "global directive", "door \"d\""],
        ),
        (
            "[d]\nsequence = 1\nUseSyslog",
            Some(3),
            &["\"UseSyslog\"", "global directive"],
        ),
        (
            "[options]\nsequence = 1\n[d]\nsequence = 1",
            Some(2),
            &["\"sequence\"", "door directive", "[options]"],
        ),
        (
            "[options]\ncommand = x\n[d]\nsequence = 1",
            Some(2),
            &["\"command\" (alias of Start_Command)", "door directive"],
        ),
        // door completeness
        ("[d]\ncommand = x", Some(1), &["door \"d\"", "no Sequence"]),
        (
            "[a]\nsequence = 1\n[b]\nseq_timeout = 5",
            Some(3),
            &["door \"b\"", "no Sequence"],
        ),
        (
            "[d]\nsequence = 1\none_time_sequences = /x",
            Some(3),
            &[
                "door \"d\"",
                "both Sequence (line 2) and One_Time_Sequences (line 3)",
            ],
        ),
        (
            "[d]\none_time_sequences = /x\nsequence = 1",
            Some(3),
            &["both Sequence (line 3) and One_Time_Sequences (line 2)"],
        ),
        (
            "[d]\none_time_sequences =",
            Some(2),
            &["\"one_time_sequences\"", "empty value"],
        ),
        // TCP flags
        (
            "[d]\nsequence = 1\ntcpflags = syn,!syn",
            Some(3),
            &["\"syn,!syn\"", "\"syn\" is both required and excluded"],
        ),
        (
            "[d]\nsequence = 1\ntcpflags = syn,sin",
            Some(3),
            &["\"syn,sin\"", "unknown TCP flag \"sin\""],
        ),
        (
            "[d]\nsequence = 1\ntcpflags = syn,syn",
            Some(3),
            &["\"syn,syn\"", "listed twice"],
        ),
        (
            "[d]\nsequence = 1\ntcpflags =",
            Some(3),
            &["\"tcpflags\"", "empty value"],
        ),
        // scan guard
        (
            "[d]\nsequence = 1\nscan_threshold = 65",
            Some(3),
            &["scan_threshold \"65\"", "from 0 (guard off) to 64"],
        ),
        (
            "[d]\nsequence = 1\n\nScan_Threshold = -1",
            Some(4),
            &["Scan_Threshold \"-1\"", "not a whole number"],
        ),
        (
            "[d]\nsequence = 1\nscan_threshold = +3",
            Some(3),
            &["\"+3\""],
        ),
        (
            "[d]\nsequence = 1\nscan_threshold = yes",
            Some(3),
            &["\"yes\""],
        ),
        (
            "[options]\nscan_threshold = 3\n[d]\nsequence = 1",
            Some(2),
            &["door directive"],
        ),
        // timeouts
        (
            "[d]\nsequence = 1\nseq_timeout = 0",
            Some(3),
            &["seq_timeout \"0\"", "at least 1 second"],
        ),
        (
            "[d]\nsequence = 1\ntimeout = 0",
            Some(3),
            &["timeout \"0\"", "at least 1 second"],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = -5",
            Some(3),
            &["seq_timeout \"-5\"", "not a whole"],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = 1.5",
            Some(3),
            &["seq_timeout \"1.5\"", "not a whole"],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = ten",
            Some(3),
            &["seq_timeout \"ten\"", "not a whole"],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = 10s",
            Some(3),
            &["seq_timeout \"10s\""],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = 99999999999999999999999",
            Some(3),
            &["\"99999999999999999999999\"", "maximum"],
        ),
        (
            "[d]\nsequence = 1\ncmd_timeout = -1",
            Some(3),
            &["cmd_timeout \"-1\"", "not a whole"],
        ),
        (
            "[d]\nsequence = 1\ncmd_timeout = 31536001",
            Some(3),
            &["cmd_timeout \"31536001\"", "maximum"],
        ),
        (
            "[d]\nsequence = 1\ncmd_timeout =",
            Some(3),
            &["\"cmd_timeout\"", "empty value"],
        ),
        // target
        (
            "[d]\nsequence = 1\ntarget = 1.2.3",
            Some(3),
            &["target \"1.2.3\"", "not an IPv4 or IPv6 address"],
        ),
        (
            "[d]\nsequence = 1\ntarget = example.com",
            Some(3),
            &["target \"example.com\""],
        ),
        (
            "[d]\nsequence = 1\ntarget = [::1]",
            Some(3),
            &["target \"[::1]\""],
        ),
        // repeated directives, aliases included
        (
            "[d]\nsequence = 1\nsequence = 2",
            Some(3),
            &["Sequence given twice", "first at line 2", "\"2\""],
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = 5\ntimeout = 6",
            Some(4),
            &["Seq_Timeout given twice", "first at line 3", "\"6\""],
        ),
        (
            "[d]\nsequence = 1\ncommand = a\nstart_command = b",
            Some(4),
            &["Start_Command given twice", "\"b\""],
        ),
        (
            "[options]\nUseSyslog\nusesyslog\n[d]\nsequence = 1",
            Some(3),
            &["UseSyslog given twice"],
        ),
        (
            "[options]\nlogfile = /a\n[d]\nsequence = 1\n[options]\nlogfile = /b",
            Some(6),
            &["LogFile given twice", "first at line 2", "\"/b\""],
        ),
        // malformed lines
        (
            "[d]\nsequence = 1\njust some words",
            Some(3),
            &["\"just some words\"", "neither a [section] header"],
        ),
        (
            "[d]\nsequence = 1\n= 5",
            Some(3),
            &["\"= 5\"", "no directive name"],
        ),
        (
            "[d\nsequence = 1",
            Some(1),
            &["\"[d\"", "does not end with \"]\""],
        ),
        (
            "[]\nsequence = 1\n[d]\nsequence = 1",
            Some(1),
            &["empty section name \"[]\""],
        ),
        (
            "[  ]\n[d]\nsequence = 1",
            Some(1),
            &["empty section name \"[  ]\""],
        ),
        // global values
        (
            "[options]\nUseSyslog = yes\n[d]\nsequence = 1",
            Some(2),
            &["\"UseSyslog\"", "takes no value", "\"yes\""],
        ),
        (
            "[options]\nlogfile\n[d]\nsequence = 1",
            Some(2),
            &["\"logfile\"", "needs a value"],
        ),
        (
            "[options]\nlogfile =\n[d]\nsequence = 1",
            Some(2),
            &["\"logfile\"", "empty value"],
        ),
        (
            "[options]\npidfile =  \n[d]\nsequence = 1",
            Some(2),
            &["\"pidfile\"", "empty value"],
        ),
        (
            "[options]\ninterface = /dev/eth0\n[d]\nsequence = 1",
            Some(2),
            &["\"/dev/eth0\"", "path"],
        ),
        (
            "[options]\ninterface = averyveryverylongname\n[d]\nsequence = 1",
            Some(2),
            &["\"averyveryverylongname\"", "15"],
        ),
        (
            "[options]\ninterface = eth 0\n[d]\nsequence = 1",
            Some(2),
            &["\"eth 0\""],
        ),
        (
            "[d]\nsequence = 1\nstart_command =",
            Some(3),
            &["\"start_command\"", "empty value"],
        ),
        (
            "[d]\nsequence = 1\nstop_command =",
            Some(3),
            &["\"stop_command\"", "empty value"],
        ),
        // nothing to do
        ("", None, &["empty", "nothing to do"]),
        (
            "\n\n# only comments\n   \n",
            None,
            &["empty", "nothing to do"],
        ),
        (
            "[options]\nUseSyslog\n",
            None,
            &["no door", "nothing to do"],
        ),
    ];

    #[test]
    fn bad_input_is_located_and_quoted() {
        for (text, line, fragments) in BAD {
            let errs = errors(text);
            let e = &errs[0];
            assert_eq!(e.file, F, "{text:?}");
            assert_eq!(e.line, *line, "{text:?}: {errs:?}");
            let shown = e.to_string();
            match line {
                Some(l) => assert!(shown.starts_with(&format!("{F}:{l}: ")), "{shown}"),
                None => assert!(shown.starts_with(&format!("{F}: ")), "{shown}"),
            }
            for frag in *fragments {
                assert!(shown.contains(frag), "{text:?}: {shown:?} lacks {frag:?}");
            }
        }
    }

    #[test]
    fn reports_every_error_in_line_order() {
        let text = "\
sequence = 1
[options]
bogus = 1
[a]
sequence = 80x
tcpflags = syn,!syn
seq_timeout = 0
target = nowhere
[b]
command = x
";
        let errs = errors(text);
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            [
                Some(1),
                Some(3),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                Some(9)
            ]
        );
        let all = ConfigErrors(errs).to_string();
        assert_eq!(all.lines().count(), 7);
        assert!(all.contains("knockd.conf:5: port \"80x\" is not a number between 1 and 65535"));
    }

    #[test]
    fn warnings() {
        let cfg = parse("[d]\nsequence = 1\ncommand = x\n[d]\nsequence = 2\ncommand = y\n");
        assert_eq!(cfg.doors.len(), 2, "both doors are kept");
        assert_eq!(
            cfg.warnings,
            ["knockd.conf:4: door \"d\" is defined twice (first at line 1); both are used"]
        );

        let cfg = parse("[d]\nsequence = 1\n");
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].starts_with("knockd.conf:1: door \"d\" has no Start_Command"));
        // An empty IPv6 command is not a command.
        let cfg = parse("[d]\nsequence = 1\ncommand_6 =\n");
        assert!(
            cfg.warnings[0].contains("no Start_Command"),
            "{:?}",
            cfg.warnings
        );
        // An IPv6-only door is fine.
        assert!(parse("[d]\nsequence = 1\ncommand_6 = x\n")
            .warnings
            .is_empty());

        let cfg = parse("[d]\nsequence = 1\ncommand = x\ncmd_timeout = 5\n");
        assert_eq!(
            cfg.warnings,
            ["knockd.conf:4: door \"d\": Cmd_Timeout has no effect without Stop_Command"]
        );

        let cfg =
            parse("[a]\nsequence = 1,2\ncommand = x\n[b]\nsequence = 1:tcp, 2\ncommand = y\n");
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].starts_with("knockd.conf:4: door \"b\" has the same sequence"));
        // Different targets: no clash.
        let cfg = parse(
            "[a]\nsequence = 1\ncommand = x\n[b]\nsequence = 1\ntarget = 192.0.2.1\ncommand = y\n",
        );
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

        let cfg = parse(
            "[options]\nlogfile = knockd.log\n[d]\none_time_sequences = otp.txt\ncommand = x\n",
        );
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
        assert!(
            cfg.warnings[0].starts_with("knockd.conf:2: LogFile \"knockd.log\" is a relative path")
        );
        assert!(cfg.warnings[1]
            .starts_with("knockd.conf:4: One_Time_Sequences \"otp.txt\" is a relative path"));
    }

    #[test]
    fn load_reads_files_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.conf");
        std::fs::write(&good, DEBIAN_CONF).unwrap();
        assert_eq!(load(&good).unwrap().doors.len(), 3);

        let missing = dir.path().join("missing.conf");
        let ConfigErrors(errs) = load(&missing).unwrap_err();
        assert_eq!(errs.len(), 1);
        let shown = errs[0].to_string();
        assert!(
            shown.starts_with(&format!("{}: cannot read", missing.display())),
            "{shown}"
        );

        let ConfigErrors(errs) = load(dir.path()).unwrap_err();
        assert!(errs[0].to_string().contains("directory"), "{}", errs[0]);

        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, b"[d]\nsequence = 1\ncommand = caf\xe9\n").unwrap();
        let ConfigErrors(errs) = load(&bad).unwrap_err();
        assert_eq!(errs[0].line, Some(3));
        assert!(errs[0].message.contains("UTF-8"));

        let located = dir.path().join("located.conf");
        std::fs::write(&located, "[d]\nsequence = 80x\n").unwrap();
        let ConfigErrors(errs) = load(&located).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            format!(
                "{}:2: port \"80x\" is not a number between 1 and 65535",
                located.display()
            )
        );
    }

    #[test]
    fn load_stops_reading_an_endless_file() {
        // /dev/zero is writable by everybody: refused before any read.
        let ConfigErrors(errs) = load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "/dev/zero: refusing a file writable by group or others (mode 0666; chmod go-w fixes it)"
        );
        // A private FIFO fed without end is read only up to the bound.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("endless.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            let chunk = vec![b'#'; 1 << 16];
            // Ends when the reader closes the pipe (EPIPE).
            while w.write_all(&chunk).is_ok() {}
        });
        let ConfigErrors(errs) = load(&fifo).unwrap_err();
        writer.join().unwrap();
        assert_eq!(
            errs[0].to_string(),
            format!(
                "{}: cannot read: larger than {MAX_CONFIG_BYTES} bytes",
                fifo.display()
            )
        );
    }

    #[test]
    fn load_refuses_a_file_others_may_write_naming_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("knockd.conf");
        std::fs::write(&p, "[d]\nsequence = 1\ncommand = true\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        let ConfigErrors(errs) = load(&p).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            format!(
                "{}: refusing a file writable by group or others (mode 0664; chmod go-w fixes it)",
                p.display()
            )
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&p).unwrap().doors.len(), 1);
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "any", "wlp3s0", "br-lan.100", "abcdefghijklmno"] {
            assert_eq!(validate_interface_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/dev/eth0",
            "eth 0",
            "abcdefghijklmnop",
            "eth0:1",
            "a\tb",
        ] {
            assert!(validate_interface_name(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(\\PC|\n|\r|\\[|\\]|=|#){0,200}") {
            let _ = parse_str(&text, F);
        }

        #[test]
        fn valid_doors_round_trip(
            port in 1u16..=65535,
            udp in proptest::bool::ANY,
            secs in 1u64..=MAX_TIMEOUT_SECS,
            cmd in "[a-z%/][a-z%=/ ]{0,29}",
        ) {
            let proto = if udp { "udp" } else { "tcp" };
            let text = format!("[door]\nsequence = {port}:{proto}\nseq_timeout = {secs}\ncommand = {cmd}\n");
            let cfg = parse_str(&text, F).unwrap();
            let d = &cfg.doors[0];
            proptest::prop_assert_eq!(fixed(d).to_string(), format!("{port}:{proto}"));
            proptest::prop_assert_eq!(d.seq_timeout, Duration::from_secs(secs));
            proptest::prop_assert_eq!(d.start_command.as_deref(), Some(cmd.trim()));
        }
    }

    const SECRET: &str = "[d]\nSequence_Secret = /etc/knockd/d.key\n";

    #[test]
    fn rotating_door_defaults() {
        let c = parse(SECRET);
        let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
            panic!("{c:?}")
        };
        assert_eq!(r.secret, PathBuf::from("/etc/knockd/d.key"));
        assert_eq!(r.secret_line, 2);
        assert!(r.key.is_none(), "parse_str never reads the key");
        assert_eq!(r.length, 3);
        assert_eq!(r.period, 30);
        assert_eq!(r.skew, 1);
        assert_eq!(r.range, rotate::DEFAULT_RANGE);
        assert_eq!(r.proto, Proto::Tcp);
        assert!(!r.bind_source);
        assert_eq!(r.state, PathBuf::from("/var/lib/knockd/rotating-d.window"));
    }

    #[test]
    fn rotating_door_every_directive() {
        let c = parse(
            "[d]\nsequence_secret = k\nSequence_Length = 16\nSequence_Period = 86400\n\
             Sequence_Skew = 10\nSequence_Ports = 7000-7015\nSequence_Protocol = UDP\n\
             Sequence_Bind_Source = Yes\nSequence_State = /run/d.window\n",
        );
        let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
            panic!("{c:?}")
        };
        assert_eq!(
            (
                r.length,
                r.period,
                r.skew,
                r.range.to_string(),
                r.proto,
                r.bind_source
            ),
            (16, 86400, 10, "7000-7015".to_string(), Proto::Udp, true)
        );
        assert_eq!(r.state, PathBuf::from("/run/d.window"));
        assert!(c.warnings.iter().any(|w| w.contains("relative path")));
    }

    #[test]
    fn rotating_door_errors() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "Sequence = 1,2,3\n",
                3,
                "both Sequence_Secret (line 2) and Sequence (line 3)",
            ),
            (
                "One_Time_Sequences = /x\n",
                3,
                "One_Time_Sequences (line 3)",
            ),
            ("Sequence_Length = 0\n", 3, "Sequence_Length \"0\""),
            ("Sequence_Length = 17\n", 3, "between 1 and 16"),
            ("Sequence_Period = 0\n", 3, "Sequence_Period \"0\""),
            ("Sequence_Period = 86401\n", 3, "between 1 and 86400"),
            ("Sequence_Skew = -1\n", 3, "Sequence_Skew \"-1\""),
            ("Sequence_Skew = 11\n", 3, "between 0 and 10"),
            ("Sequence_Ports = 1-2-3\n", 3, "\"1-2-3\""),
            ("Sequence_Ports = 0-5\n", 3, "starts at 0"),
            ("Sequence_Ports = 9-5\n", 3, "reversed"),
            (
                "Sequence_Ports = 5-5\nSequence_Length = 2\n",
                4,
                "holds only 1",
            ),
            ("Sequence_Protocol = sctp\n", 3, "\"sctp\""),
            ("Sequence_Bind_Source = 1\n", 3, "neither yes nor no"),
        ];
        for (extra, line, what) in cases {
            let e = errors(&format!("{SECRET}{extra}"));
            assert_eq!(e.len(), 1, "{extra}: {e:?}");
            assert_eq!(e[0].line, Some(*line), "{extra}: {e:?}");
            assert!(e[0].message.contains(what), "{extra}: {}", e[0].message);
        }
        // Companions without Sequence_Secret.
        let e = errors("[d]\nSequence = 1\nSequence_Skew = 2\nSequence_Ports = 1-9\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0]
            .message
            .contains("Sequence_Skew in door \"d\" needs Sequence_Secret"));
        assert_eq!(e[1].line, Some(4));
    }

    #[test]
    fn default_state_paths_are_distinct_plain_file_names() {
        let a = default_state_path("open ssh/../x");
        assert_eq!(
            a,
            PathBuf::from("/var/lib/knockd/rotating-open%20ssh%2F%2E%2E%2Fx.window")
        );
        assert_ne!(default_state_path("a b"), default_state_path("a%20b"));
        assert_eq!(a.parent(), Some(Path::new(DEFAULT_STATE_DIR)));
    }

    #[test]
    fn load_reads_the_key_and_refuses_a_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conf = d.path().join("c");
        std::fs::write(
            &conf,
            format!("[d]\n\nSequence_Secret = {}\n", key.display()),
        )
        .unwrap();
        let c = load(&conf).unwrap();
        let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
            panic!()
        };
        assert_eq!(r.key.as_ref().map(|k| k.len()), Some(30));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&conf).unwrap_err();
        assert_eq!(e.0[0].line, Some(3));
        assert!(e.0[0].to_string().contains("group or others"), "{e}");
        assert!(!e.to_string().contains("JBSW"));
    }
}
