//! `knockd.conf`: parsing and validation into a typed configuration.
//!
//! CONTRACT (used by the rest of the daemon): the public types below. The
//! parser itself is being written; until then `parse_str` reports an error.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knock_common::{FlagSpec, Sequence};

pub const DEFAULT_PID_FILE: &str = "/var/run/knockd.pid";
pub const DEFAULT_INTERFACE: &str = "eth0";
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// `Interface`; `-i` on the command line wins, then this, then [`DEFAULT_INTERFACE`].
    pub interface: Option<String>,
}

/// Where a door's sequence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSpec {
    Fixed(Sequence),
    OneTime(PathBuf),
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
}

fn pick<'a>(v4: &'a Option<String>, v6: &'a Option<String>, is_v6: bool) -> Option<&'a str> {
    let chosen = if is_v6 { v6.as_ref().or(v4.as_ref()) } else { v4.as_ref() };
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

/// Parse configuration text; `file` names it in messages.
pub fn parse_str(_text: &str, file: &str) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![ConfigError {
        file: file.to_string(),
        line: None,
        message: "configuration parser not implemented yet".to_string(),
    }]))
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_str(&text, &name)
}
