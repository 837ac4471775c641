//! `knockd.conf`: parsing and validation into a typed configuration.
//!
//! The public types below are the contract the rest of the daemon uses.
//! [`parse_str`] / [`load`] read the classic format (see the manual page and
//! `docs/DECISIONS.md`, "Configuration") and validate it completely: every
//! error is reported with `file:line:` and the offending text quoted.
//! Errors are typed ([`ConfigProblem`]), and so are warnings
//! ([`ConfigWarning`]); [`Located`] adds the file and line to either.
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

use knock_common::rotate::{self, Key, PortRange, RangeError};
use knock_common::{FlagError, FlagSpec, Proto, Sequence, SequenceError};

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
    /// Non-fatal findings (duplicate door names, ...), each shown as
    /// `file:line: text`.
    pub warnings: Vec<Located<ConfigWarning>>,
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

/// A finding located in a file: `file:line: what` (`file: what` for the
/// whole file). Configuration errors are [`ConfigError`], warnings
/// `Located<ConfigWarning>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub file: String,
    pub line: Option<usize>,
    pub what: T,
}

impl<T: fmt::Display> fmt::Display for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

impl<T: std::error::Error + 'static> std::error::Error for Located<T> {
    /// The text of `what` is part of this error's own message: its source
    /// is what `what` itself was caused by.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.what.source()
    }
}

/// One error, located in the file.
pub type ConfigError = Located<ConfigProblem>;

/// Why a configuration file is refused. Messages name the directive as
/// written, the door and the lines involved, and quote a value only when
/// it is the one at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("section header \"{header}\" does not end with \"]\"")]
    UnclosedHeader { header: String },
    #[error("empty section name \"{header}\": write [options] or [door name]")]
    EmptySectionName { header: String },
    #[error("line \"{text}\" has no directive name before \"=\"")]
    NoDirectiveName { text: String },
    #[error("line \"{text}\" is neither a [section] header, a # comment nor a \"directive = value\" line")]
    NotADirective { text: String },
    #[error("unknown directive \"{key}\" outside any section (global directives, under [options]: {GLOBAL_LIST}; door directives, under [door name]: {DOOR_LIST})")]
    UnknownOutsideSections { key: String },
    #[error("unknown directive \"{key}\" in [options] (global directives: {GLOBAL_LIST})")]
    UnknownInOptions { key: String },
    #[error("unknown directive \"{key}\" in door \"{door}\" (door directives: {DOOR_LIST})")]
    UnknownInDoor { key: String, door: String },
    #[error("directive {what} is outside any section; put it under {}", .what.directive.home())]
    OutsideSections { what: Written },
    #[error("{what} is a door directive and does not belong in [options]; put it under a [door name] section")]
    DoorDirectiveInOptions { what: Written },
    #[error("{what} is a global directive and does not belong in door \"{door}\"; put it under [options]")]
    GlobalDirectiveInDoor { what: Written, door: String },
    #[error("{} given twice in this section (first at line {first}){}", .what.directive, SecondValue(.what, .value.as_deref()))]
    Twice {
        what: Written,
        first: usize,
        /// The second value; `None` when it is a secret (a sequence).
        value: Option<String>,
    },
    #[error("{what} is a bare word and takes no value (found \"{value}\"); write just UseSyslog")]
    BareWordWithValue { what: Written, value: String },
    #[error("{what} needs a value: {} = ...", .what.directive)]
    NoValue { what: Written },
    #[error("{what} has an empty value")]
    EmptyValue { what: Written },
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(
        "{directive} in door \"{door}\" needs Sequence_Secret (it describes a rotating sequence)"
    )]
    NeedsSecret { directive: Directive, door: String },
    #[error("door \"{door}\" has both {first} (line {first_line}) and {second} (line {second_line}); use one of them")]
    TwoSequenceKinds {
        door: String,
        first: Directive,
        first_line: usize,
        second: Directive,
        second_line: usize,
    },
    #[error("door \"{door}\": Sequence_Length {length} needs {length} different ports, but Sequence_Ports {range} holds only {}", .range.size())]
    RangeTooSmall {
        door: String,
        length: usize,
        range: PortRange,
    },
    #[error("door \"{door}\" has no Sequence, One_Time_Sequences or Sequence_Secret: it could never be knocked open")]
    NoSequence { door: String },
    #[error("the file is empty: nothing to do (define a door: a [name] section with a Sequence)")]
    EmptyFile,
    #[error("no door is defined: nothing to do (define a door: a [name] section with a Sequence)")]
    NoDoor,
    #[error("cannot read: it is a directory")]
    IsDirectory,
    #[error("cannot read: {0}")]
    Unreadable(#[source] std::io::Error),
    /// Someone other than root (or us) could have written the file.
    #[error("{0}")]
    Refused(#[source] knock_common::fsafe::Refusal),
    #[error("cannot read: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge,
    #[error("the line is not valid UTF-8 text")]
    NotUtf8,
    /// The key file of a rotating door (the error never holds the key).
    #[error("door \"{door}\": Sequence_Secret: {source}")]
    Key {
        door: String,
        #[source]
        source: rotate::KeyError,
    },
}

/// What a valid configuration may still get wrong; each is reported as
/// `file:line: warning` and the configuration is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    #[error("door \"{door}\" is defined twice (first at line {first}); both are used")]
    DoorTwice { door: String, first: usize },
    /// `One_Time_Sequences` or `Sequence_Secret`, opened when needed.
    #[error("{directive} \"{}\" is a relative path; it is looked up from the daemon's working directory", .path.display())]
    RelativeDoorFile { directive: Directive, path: PathBuf },
    /// `LogFile` or `PidFile`.
    #[error("{directive} \"{}\" is a relative path; it is resolved from the daemon's working directory", .path.display())]
    RelativeOptionPath { directive: Directive, path: PathBuf },
    #[error("door \"{door}\" has no Start_Command: a successful knock is only logged")]
    NoStartCommand { door: String },
    #[error("door \"{door}\": Cmd_Timeout has no effect without Stop_Command")]
    CmdTimeoutWithoutStop { door: String },
    /// The sequence itself is not named: warnings reach logs and `--check`.
    #[error("door \"{door}\" has the same sequence as door \"{other}\" (line {other_line}); one knock opens both")]
    SameSequence {
        door: String,
        other: String,
        other_line: usize,
    },
}

/// A directive as written in the file: shown quoted, followed by its
/// canonical name when `key` is an alias (`"timeout" (alias of Seq_Timeout)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub directive: Directive,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.directive.name();
        if self.key.eq_ignore_ascii_case(name) {
            write!(f, "\"{}\"", self.key)
        } else {
            write!(f, "\"{}\" (alias of {name})", self.key)
        }
    }
}

/// The tail of a "given twice" error: `: "key" = "value"`, or nothing
/// when the value is a secret.
struct SecondValue<'a>(&'a Written, Option<&'a str>);

impl fmt::Display for SecondValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(value) => write!(f, ": {} = \"{value}\"", self.0),
            None => Ok(()),
        }
    }
}

/// All errors found in a file (the parser reports every one it can).
#[derive(Debug)]
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

/// Why a name cannot be an interface name (each message quotes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceNameError {
    #[error("the interface name is empty")]
    Empty,
    #[error(
        "interface \"{0}\" is a path; give just the interface name (e.g. eth0, not /dev/eth0)"
    )]
    Path(String),
    #[error("interface \"{0}\" contains a blank, a control character or ':', which no interface name has")]
    BadCharacter(String),
    #[error("interface \"{0}\" is longer than {MAX_INTERFACE_LEN} characters, the limit of Linux interface names")]
    TooLong(String),
}

/// Check an interface name as given to `Interface =` or `-i`: a bare name
/// such as `eth0` or `any`, not a device path.
pub fn validate_interface_name(name: &str) -> Result<(), InterfaceNameError> {
    if name.is_empty() {
        return Err(InterfaceNameError::Empty);
    }
    if name.contains('/') {
        return Err(InterfaceNameError::Path(name.to_string()));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(InterfaceNameError::BadCharacter(name.to_string()));
    }
    if name.len() > MAX_INTERFACE_LEN {
        return Err(InterfaceNameError::TooLong(name.to_string()));
    }
    Ok(())
}

/// Why a directive's value was refused; each message quotes the directive
/// as written (`key`) and the value. The parser adds `file:line:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// `key "value"` followed by what is wrong with it.
    #[error("{key} \"{value}\"{problem}")]
    Bad {
        key: String,
        value: String,
        problem: Problem,
    },
    /// A port or protocol of the list is wrong (the error quotes it).
    #[error(transparent)]
    Knock(SequenceError),
    /// Knocks separated by blanks instead of commas.
    #[error("{0} (separate the knocks with commas: 7000,8000,9000)")]
    Blanks(SequenceError),
    #[error("{source}: {key} = \"{value}\"")]
    Sequence {
        key: String,
        value: String,
        source: SequenceError,
    },
    #[error("{key}: {source}")]
    Interface {
        key: String,
        source: crate::settings::InterfaceError,
    },
}

/// What is wrong with a value; each message continues `key "value"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(" is not a whole, non-negative number of seconds")]
    NotSeconds,
    #[error(" is more than the maximum of {MAX_TIMEOUT_SECS} seconds (one year)")]
    TooManySeconds,
    #[error(" must be at least 1 second (a knock needs time to arrive)")]
    ZeroSeqTimeout,
    #[error(" is not a whole number of {unit} between {lo} and {hi}")]
    OutOfRange {
        lo: u64,
        hi: u64,
        unit: &'static str,
    },
    #[error(": {0}")]
    Flags(FlagError),
    #[error(" is not an IPv4 or IPv6 address (e.g. 192.0.2.1 or 2001:db8::1)")]
    NotAddress,
    #[error(": {0}")]
    Ports(RangeError),
    #[error(" is not a protocol: write tcp or udp")]
    NotProtocol,
    #[error(" is neither yes nor no")]
    NotYesNo,
    #[error(" is not a whole number from 0 (guard off) to {MAX_SCAN_THRESHOLD}")]
    ScanThreshold,
}

impl Problem {
    /// This problem with `value` of directive `key` (as written).
    fn of(self, key: &str, value: &str) -> ValueError {
        ValueError::Bad {
            key: key.to_string(),
            value: value.to_string(),
            problem: self,
        }
    }
}

/// `value` parsed as a `T`, or the `problem` its parse error makes.
fn parse_as<T: std::str::FromStr>(
    key: &str,
    value: &str,
    problem: impl FnOnce(T::Err) -> Problem,
) -> Result<T, ValueError> {
    value.parse::<T>().map_err(|e| problem(e).of(key, value))
}

/// Every directive of `knockd.conf` (shown by its canonical name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Directive {
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

    /// Where the directive belongs, as the errors say it.
    fn home(self) -> &'static str {
        if self.is_global() {
            "[options]"
        } else {
            "a [door name] section"
        }
    }

    fn is_global(self) -> bool {
        matches!(
            self,
            Directive::UseSyslog | Directive::LogFile | Directive::PidFile | Directive::Interface
        )
    }

    /// Directives whose value is a secret, never quoted in a message.
    fn is_secret(self) -> bool {
        matches!(self, Directive::Sequence)
    }

    /// Directives whose empty value is meaningful ("nothing for IPv6").
    fn empty_allowed(self) -> bool {
        matches!(self, Directive::StartCommand6 | Directive::StopCommand6)
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parse a timeout: a plain non-negative decimal integer of seconds.
fn parse_secs(key: &str, value: &str) -> Result<u64, ValueError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::NotSeconds.of(key, value));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_TIMEOUT_SECS => Ok(n),
        _ => Err(Problem::TooManySeconds.of(key, value)),
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

/// A whole number in `lo..=hi`.
fn parse_bounded(
    key: &str,
    value: &str,
    lo: u64,
    hi: u64,
    unit: &'static str,
) -> Result<u64, ValueError> {
    let n = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|n| (lo..=hi).contains(n));
    n.ok_or_else(|| Problem::OutOfRange { lo, hi, unit }.of(key, value))
}

/// Store one of the companions of `Sequence_Secret` in `door`.
fn apply_rotating(
    door: &mut DoorDraft,
    d: Directive,
    key: &str,
    value: &str,
) -> Result<(), ValueError> {
    match d {
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
            door.range = Some(parse_as(key, value, Problem::Ports)?);
        }
        Directive::SequenceProtocol => {
            door.proto = Some(parse_as(key, value, |_| Problem::NotProtocol)?);
        }
        Directive::SequenceBindSource => {
            let yes = match value.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(Problem::NotYesNo.of(key, value)),
            };
            door.bind_source = Some(yes);
        }
        _ => {}
    }
    Ok(())
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
    warnings: Vec<(usize, ConfigWarning)>,
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

    fn error(&mut self, line: usize, problem: impl Into<ConfigProblem>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: Some(line),
            what: problem.into(),
        });
    }

    fn warn(&mut self, line: usize, warning: ConfigWarning) {
        self.warnings.push((line, warning));
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
                let header = line.to_string();
                self.error(n, ConfigProblem::UnclosedHeader { header });
                self.open_broken_door(n, line);
                return;
            }
        };
        if inner.is_empty() {
            let header = line.to_string();
            self.error(n, ConfigProblem::EmptySectionName { header });
            self.open_broken_door(n, line);
            return;
        }
        if inner.eq_ignore_ascii_case("options") {
            self.section = Section::Options;
            return;
        }
        if let Some(first) = self.doors.iter().find(|d| !d.broken && d.name == inner) {
            let warning = ConfigWarning::DoorTwice {
                door: inner.to_string(),
                first: first.line,
            };
            self.warn(n, warning);
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
            let text = line.to_string();
            self.error(n, ConfigProblem::NoDirectiveName { text });
            return;
        }
        let Some(d) = Directive::lookup(key) else {
            self.unknown_directive(n, line, key, value.is_some());
            return;
        };
        let what = Written {
            key: key.to_string(),
            directive: d,
        };
        if !self.first_in_section(n, &what, value) {
            return;
        }
        let Some(value) = self.value_of(n, what, value) else {
            return;
        };
        if let Err(e) = self.apply(d, key, value) {
            self.error(n, e);
        }
    }

    /// Report a line whose directive name is not known.
    fn unknown_directive(&mut self, n: usize, line: &str, key: &str, has_value: bool) {
        let key = key.to_string();
        let problem = match (&self.section, has_value) {
            (_, false) => ConfigProblem::NotADirective {
                text: line.to_string(),
            },
            (Section::None, true) => ConfigProblem::UnknownOutsideSections { key },
            (Section::Options, true) => ConfigProblem::UnknownInOptions { key },
            (Section::Door(i), true) => ConfigProblem::UnknownInDoor {
                key,
                door: self.doors[*i].name.clone(),
            },
        };
        self.error(n, problem);
    }

    /// Record directive `what` at line `n` in the current section; `false`
    /// (after reporting why) when it does not belong there or was given
    /// before in it.
    fn first_in_section(&mut self, n: usize, what: &Written, value: Option<&str>) -> bool {
        let d = what.directive;
        let what = what.clone();
        let seen = match &self.section {
            Section::None => {
                self.error(n, ConfigProblem::OutsideSections { what });
                return false;
            }
            Section::Options if !d.is_global() => {
                self.error(n, ConfigProblem::DoorDirectiveInOptions { what });
                return false;
            }
            Section::Options => &mut self.options_seen,
            Section::Door(i) if d.is_global() => {
                let door = self.doors[*i].name.clone();
                self.error(n, ConfigProblem::GlobalDirectiveInDoor { what, door });
                return false;
            }
            Section::Door(i) => &mut self.doors[*i].seen,
        };
        if let Some(&(_, first)) = seen.iter().find(|(x, _)| *x == d) {
            let value = (!d.is_secret()).then(|| value.unwrap_or("").to_string());
            self.error(n, ConfigProblem::Twice { what, first, value });
            return false;
        }
        seen.push((d, n));
        true
    }

    /// The value of directive `what`, or `None` after reporting that it is
    /// missing, empty, or given to the bare word `UseSyslog`.
    fn value_of<'v>(&mut self, n: usize, what: Written, value: Option<&'v str>) -> Option<&'v str> {
        let d = what.directive;
        let problem = match (d, value) {
            (Directive::UseSyslog, None) => return Some(""),
            (Directive::UseSyslog, Some(v)) => ConfigProblem::BareWordWithValue {
                what,
                value: v.to_string(),
            },
            (_, None) => ConfigProblem::NoValue { what },
            (_, Some("")) if !d.empty_allowed() => ConfigProblem::EmptyValue { what },
            (_, Some(v)) => return Some(v),
        };
        self.error(n, problem);
        None
    }

    /// Store a directive's value, or say why it is wrong.
    fn apply(&mut self, d: Directive, key: &str, value: &str) -> Result<(), ValueError> {
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
                        ValueError::Blanks(e)
                    }
                    SequenceError::BadPort(_) | SequenceError::BadProto(_) => ValueError::Knock(e),
                    source => ValueError::Sequence {
                        key: key.to_string(),
                        value: value.to_string(),
                        source,
                    },
                })?;
                door.sequence = Some(seq);
            }
            Directive::OneTimeSequences => door.one_time = Some(PathBuf::from(value)),
            Directive::SeqTimeout => {
                let secs = parse_secs(key, value)?;
                if secs == 0 {
                    return Err(Problem::ZeroSeqTimeout.of(key, value));
                }
                door.seq_timeout = Some(Duration::from_secs(secs));
            }
            Directive::CmdTimeout => {
                door.cmd_timeout = Some(Duration::from_secs(parse_secs(key, value)?));
            }
            Directive::TcpFlags => {
                door.tcp_flags = Some(parse_as(key, value, Problem::Flags)?);
            }
            Directive::Target => {
                door.target = Some(parse_as(key, value, |_| Problem::NotAddress)?);
            }
            Directive::StartCommand => door.start_command = Some(value.to_string()),
            Directive::StartCommand6 => door.start_command_6 = Some(value.to_string()),
            Directive::StopCommand => door.stop_command = Some(value.to_string()),
            Directive::StopCommand6 => door.stop_command_6 = Some(value.to_string()),
            Directive::SequenceSecret => door.secret = Some(PathBuf::from(value)),
            Directive::SequenceState => door.state = Some(PathBuf::from(value)),
            Directive::SequenceLength
            | Directive::SequencePeriod
            | Directive::SequenceSkew
            | Directive::SequencePorts
            | Directive::SequenceProtocol
            | Directive::SequenceBindSource => apply_rotating(door, d, key, value)?,
            Directive::ScanThreshold => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| {
                        *n <= MAX_SCAN_THRESHOLD && value.bytes().all(|b| b.is_ascii_digit())
                    })
                    .ok_or_else(|| Problem::ScanThreshold.of(key, value))?;
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
                    let door = name.clone();
                    self.error(l, ConfigProblem::NeedsSecret { directive: d, door });
                }
            }
            return None;
        };
        if let Some(l) = listed_line {
            let other = if draft.seen_at(Directive::Sequence) == Some(l) {
                Directive::Sequence
            } else {
                Directive::OneTimeSequences
            };
            let problem = ConfigProblem::TwoSequenceKinds {
                door: name.clone(),
                first: Directive::SequenceSecret,
                first_line: secret_line,
                second: other,
                second_line: l,
            };
            self.error(l.max(secret_line), problem);
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
            let door = name.clone();
            self.error(
                l,
                ConfigProblem::RangeTooSmall {
                    door,
                    length,
                    range,
                },
            );
            return None;
        }
        if secret.is_relative() {
            let warning = ConfigWarning::RelativeDoorFile {
                directive: Directive::SequenceSecret,
                path: secret.clone(),
            };
            self.warn(secret_line, warning);
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

    fn apply_global(&mut self, d: Directive, key: &str, value: &str) -> Result<(), ValueError> {
        match d {
            Directive::UseSyslog => self.options.use_syslog = true,
            Directive::LogFile => self.options.log_file = Some(PathBuf::from(value)),
            Directive::PidFile => self.options.pid_file = PathBuf::from(value),
            Directive::Interface => {
                let list = InterfaceList::parse(value).map_err(|source| ValueError::Interface {
                    key: key.to_string(),
                    source,
                })?;
                self.options.interface = Some(list);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whole-file checks; build the configuration.
    fn finish(mut self) -> Result<Config, ConfigErrors> {
        let drafts = std::mem::take(&mut self.doors);
        let declared_doors = drafts.iter().filter(|d| !d.broken).count();
        let doors: Vec<Door> = drafts
            .into_iter()
            .filter(|d| !d.broken)
            .filter_map(|d| self.door(d))
            .collect();
        self.warn_same_sequences(&doors);
        self.warn_relative_option_paths();
        self.check_something_to_do(declared_doors);

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
                .map(|(l, what)| Located {
                    file: file.to_string(),
                    line: Some(l),
                    what,
                })
                .collect(),
        })
    }

    /// A finished door, or `None` (after reporting why) when its sequence
    /// is missing or contradictory. Warns about missing commands.
    fn door(&mut self, draft: DoorDraft) -> Option<Door> {
        let sequence = self.sequence_of(&draft);
        self.warn_missing_commands(&draft);
        Some(Door {
            name: draft.name,
            line: draft.line,
            sequence: sequence?,
            seq_timeout: draft.seq_timeout.unwrap_or(DEFAULT_SEQ_TIMEOUT),
            tcp_flags: draft.tcp_flags,
            target: draft.target,
            start_command: draft.start_command,
            start_command_6: draft.start_command_6,
            cmd_timeout: draft.cmd_timeout.unwrap_or(DEFAULT_CMD_TIMEOUT),
            stop_command: draft.stop_command,
            stop_command_6: draft.stop_command_6,
            scan_threshold: draft.scan_threshold.unwrap_or(DEFAULT_SCAN_THRESHOLD),
        })
    }

    /// Exactly one of `Sequence`, `One_Time_Sequences`, `Sequence_Secret`.
    fn sequence_of(&mut self, draft: &DoorDraft) -> Option<SequenceSpec> {
        let name = &draft.name;
        let seq_line = draft.seen_at(Directive::Sequence);
        let otp_line = draft.seen_at(Directive::OneTimeSequences);
        let secret_line = draft.seen_at(Directive::SequenceSecret);
        let rotating = self.rotating(draft, secret_line, seq_line.or(otp_line));
        match (seq_line, otp_line) {
            _ if secret_line.is_some() => rotating.map(SequenceSpec::Rotating),
            (None, None) => {
                let door = name.clone();
                self.error(draft.line, ConfigProblem::NoSequence { door });
                None
            }
            (Some(a), Some(b)) => {
                let problem = ConfigProblem::TwoSequenceKinds {
                    door: name.clone(),
                    first: Directive::Sequence,
                    first_line: a,
                    second: Directive::OneTimeSequences,
                    second_line: b,
                };
                self.error(a.max(b), problem);
                None
            }
            (Some(_), None) => draft.sequence.clone().map(SequenceSpec::Fixed),
            (None, Some(l)) => draft.one_time.clone().map(|p| {
                if p.is_relative() {
                    let warning = ConfigWarning::RelativeDoorFile {
                        directive: Directive::OneTimeSequences,
                        path: p.clone(),
                    };
                    self.warn(l, warning);
                }
                SequenceSpec::OneTime(p)
            }),
        }
    }

    /// No start command; `Cmd_Timeout` without a stop command.
    fn warn_missing_commands(&mut self, draft: &DoorDraft) {
        let name = &draft.name;
        let no_start = draft.start_command.is_none()
            && draft.start_command_6.as_deref().unwrap_or("").is_empty();
        if no_start {
            let door = name.clone();
            self.warn(draft.line, ConfigWarning::NoStartCommand { door });
        }
        if let Some(l) = draft.seen_at(Directive::CmdTimeout) {
            if draft.stop_command.is_none()
                && draft.stop_command_6.as_deref().unwrap_or("").is_empty()
            {
                let door = name.clone();
                self.warn(l, ConfigWarning::CmdTimeoutWithoutStop { door });
            }
        }
    }

    /// The same fixed sequence in two doors opens both at once.
    fn warn_same_sequences(&mut self, doors: &[Door]) {
        for (i, door) in doors.iter().enumerate() {
            let SequenceSpec::Fixed(seq) = &door.sequence else {
                continue;
            };
            let earlier = doors[..i].iter().find(|o| {
                o.target == door.target && matches!(&o.sequence, SequenceSpec::Fixed(s) if s == seq)
            });
            if let Some(o) = earlier {
                let warning = ConfigWarning::SameSequence {
                    door: door.name.clone(),
                    other: o.name.clone(),
                    other_line: o.line,
                };
                self.warn(door.line, warning);
            }
        }
    }

    /// `LogFile` / `PidFile` given as relative paths.
    fn warn_relative_option_paths(&mut self) {
        for (d, l) in self.options_seen.clone() {
            let path = match d {
                Directive::LogFile => self.options.log_file.clone(),
                Directive::PidFile => Some(self.options.pid_file.clone()),
                _ => None,
            };
            if let Some(path) = path.filter(|p| p.is_relative()) {
                let warning = ConfigWarning::RelativeOptionPath { directive: d, path };
                self.warn(l, warning);
            }
        }
    }

    /// An empty file, or one without a door, does nothing: an error.
    fn check_something_to_do(&mut self, declared_doors: usize) {
        let what = if self.content_lines == 0 {
            ConfigProblem::EmptyFile
        } else if declared_doors == 0 {
            ConfigProblem::NoDoor
        } else {
            return;
        };
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: None,
            what,
        });
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
    let one = |line: Option<usize>, what: ConfigProblem| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line,
            what,
        }])
    };
    if path.is_dir() {
        return Err(one(None, ConfigProblem::IsDirectory));
    }
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| one(None, ConfigProblem::Unreadable(e)))?;
    // Commands run as root: refuse a file that someone else could have
    // written, such as a world-writable `/dev/zero` (see `knock_common::fsafe`).
    knock_common::fsafe::check_readable_config(&file, path)
        .map_err(|e| one(None, ConfigProblem::Refused(e.reason)))?;
    // Bounded, so that a runaway generator behind a pipe is an error
    // instead of a read until memory runs out.
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| one(None, ConfigProblem::Unreadable(e)))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(one(None, ConfigProblem::TooLarge));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..bad].iter().filter(|&&b| b == b'\n').count() + 1;
        one(Some(line), ConfigProblem::NotUtf8)
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
            Err(source) => errors.push(ConfigError {
                file: file.to_string(),
                line: Some(spec.secret_line),
                what: ConfigProblem::Key {
                    door: door.name.clone(),
                    source,
                },
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
mod tests;
