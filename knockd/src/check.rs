//! `knockd --check`: validate the configuration and show what it defines,
//! without capturing anything.
//!
//! Secrets stay out of the output unless `--show-secrets` is given, because
//! service units run the check on every reload and its output lands in the
//! journal: a fixed sequence is shown as its number of hits, a one-time file
//! by its counts and the *line number* of its current sequence. A one-time
//! line that does not parse is named by its line number and the kind of
//! fault only, even with `--show-secrets` (see `OtpWarning::reason`).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use knock_common::otp::{self, OtpError};

use crate::cli::Cli;
use crate::config::{self, Config, ConfigWarning, Door, Located, SequenceSpec};
use crate::rotating::RotatingError;
use crate::settings::{self, InterfaceList, Origin, RouteError};

/// A warning of `--check`: the parser's, or what only a look at the
/// system shows. None quotes a sequence or a one-time line.
#[derive(Debug, thiserror::Error)]
pub enum CheckWarning {
    #[error(transparent)]
    Config(#[from] Located<ConfigWarning>),
    #[error("interface \"{0}\" does not exist on this system right now")]
    NoSuchInterface(String),
    #[error(transparent)]
    NoInterface(#[from] RouteError),
    #[error("door \"{door}\": {source}; every window accepted at start-up will count as used")]
    RotatingState {
        door: String,
        #[source]
        source: RotatingError,
    },
    #[error("door \"{door}\": cannot read its one-time sequence file: {source}; the door stays closed until the file exists")]
    OneTimeUnreadable {
        door: String,
        #[source]
        source: OtpError,
    },
    /// A line of a one-time file that does not parse, by number and kind
    /// of fault (`reason` never quotes the line).
    #[error("{}:{line_no}: line is skipped: {reason}", .path.display())]
    OneTimeLineSkipped {
        path: PathBuf,
        line_no: usize,
        reason: &'static str,
    },
    #[error("door \"{door}\": its one-time sequence file {} has no unused sequence left; the door is disabled until sequences are appended", .path.display())]
    OneTimeUsedUp { door: String, path: PathBuf },
}

/// Run the check: print the summary to stdout and warnings/errors to
/// stderr. Returns the exit status: 0 when the configuration is valid, 1
/// when it is not.
pub fn check(cli: &Cli) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    run(cli, &mut stdout.lock(), &mut stderr.lock())
}

/// [`check`] with explicit output streams.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match config::load(&cli.config) {
        Ok(cfg) => {
            let (text, warnings) = summary(cli, &cfg);
            for w in &warnings {
                let _ = writeln!(err, "knockd: warning: {w}");
            }
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return 1;
            }
            0
        }
        Err(errors) => {
            for e in &errors.0 {
                let _ = writeln!(err, "{e}");
            }
            let n = errors.0.len();
            let _ = writeln!(
                err,
                "knockd: {}: {n} error{} found; the configuration is not valid",
                cli.config.display(),
                if n == 1 { "" } else { "s" }
            );
            1
        }
    }
}

/// The readable summary of a valid configuration, and every warning: the
/// parser's plus what only a look at the system shows (missing one-time
/// files, an interface that does not exist right now).
pub fn summary(cli: &Cli, cfg: &Config) -> (String, Vec<CheckWarning>) {
    summary_with(cli, cfg, settings::default_route_interfaces)
}

/// [`summary`] with the default routes given (tests).
fn summary_with(
    cli: &Cli,
    cfg: &Config,
    default_routes: impl FnOnce() -> Result<InterfaceList, RouteError>,
) -> (String, Vec<CheckWarning>) {
    let resolved = settings::resolve(&cli.overrides(), cfg, default_routes);
    let mut warnings: Vec<CheckWarning> = cfg.warnings.iter().cloned().map(Into::into).collect();
    let mut s = String::new();
    let n = cfg.doors.len();
    let _ = writeln!(
        s,
        "{}: configuration OK, {n} door{}",
        cli.config.display(),
        if n == 1 { "" } else { "s" }
    );

    let _ = writeln!(s, "\n[options]");
    let yes_no = if cfg.options.use_syslog { "yes" } else { "no" };
    field(&mut s, "UseSyslog", yes_no);
    match &resolved.log_file {
        Some(l) => field(
            &mut s,
            "LogFile",
            &with_origin(&l.value.display().to_string(), l.origin),
        ),
        None => field(&mut s, "LogFile", "(none)"),
    }
    let pid = &resolved.pid_file;
    field(
        &mut s,
        "PidFile",
        &with_origin(&pid.value.display().to_string(), pid.origin),
    );
    match resolved.interfaces {
        Ok(list) => {
            field(
                &mut s,
                "Interface",
                &with_origin(&list.value.to_string(), list.origin),
            );
            for name in list.value.names() {
                if name != "any" && !interface_exists(name) {
                    warnings.push(CheckWarning::NoSuchInterface(name.to_string()));
                }
            }
        }
        Err(e) => {
            field(&mut s, "Interface", "(none: no default route)");
            warnings.push(e.into());
        }
    }

    for door in &cfg.doors {
        let _ = writeln!(s, "\n[{}]  (line {})", door.name, door.line);
        describe_door(&mut s, &mut warnings, door, cli.show_secrets);
    }
    (s, warnings)
}

fn with_origin(value: &str, o: Origin) -> String {
    format!("{value}  ({})", o.describe())
}

fn field(s: &mut String, name: &str, value: &str) {
    let _ = writeln!(s, "    {:<19} {value}", format!("{name}:"));
}

/// What stands in for a hidden secret.
const HIDDEN: &str = "hidden; --show-secrets shows it";

fn describe_door(s: &mut String, warnings: &mut Vec<CheckWarning>, door: &Door, secrets: bool) {
    match &door.sequence {
        SequenceSpec::Fixed(seq) if secrets => field(s, "Sequence", &seq.to_string()),
        SequenceSpec::Fixed(seq) => {
            let n = seq.knocks().len();
            let hits = if n == 1 { "hit" } else { "hits" };
            field(s, "Sequence", &format!("({n} {hits}; {HIDDEN})"));
        }
        SequenceSpec::OneTime(path) => {
            field(s, "One_Time_Sequences", &path.display().to_string());
            let state = one_time_state(warnings, &door.name, path, secrets);
            field(s, "File state", &state);
        }
        SequenceSpec::Rotating(spec) => rotating_fields(s, warnings, door, spec),
    }
    field(
        s,
        "Seq_Timeout",
        &format!("{} s", door.seq_timeout.as_secs()),
    );
    let flags = match &door.tcp_flags {
        Some(f) => f.to_string(),
        None => "(any; every TCP hit counts)".to_string(),
    };
    field(s, "TCPFlags", &flags);
    let target = match &door.target {
        Some(ip) => ip.to_string(),
        None => "(the interface's own addresses)".to_string(),
    };
    field(s, "Target", &target);
    let scan = match door.scan_threshold {
        0 => "0 (off)".to_string(),
        n => format!("{n} (a source that touched more distinct other ports cannot knock)"),
    };
    field(s, "Scan_Threshold", &scan);
    command_fields(
        s,
        ("Start_Command", "Start_Command_6"),
        &door.start_command,
        &door.start_command_6,
        door.start_command_for(true),
    );
    let no_stop = door.stop_command_for(false).is_none() && door.stop_command_for(true).is_none();
    let unused = if no_stop {
        "  (unused: no Stop_Command)"
    } else {
        ""
    };
    field(
        s,
        "Cmd_Timeout",
        &format!("{} s{unused}", door.cmd_timeout.as_secs()),
    );
    command_fields(
        s,
        ("Stop_Command", "Stop_Command_6"),
        &door.stop_command,
        &door.stop_command_6,
        door.stop_command_for(true),
    );
}

fn command_fields(
    s: &mut String,
    (name, name6): (&str, &str),
    v4: &Option<String>,
    v6: &Option<String>,
    resolved6: Option<&str>,
) {
    field(s, name, v4.as_deref().unwrap_or("(none)"));
    let six = match (v6.as_deref(), resolved6) {
        (Some(""), _) => "(none: nothing runs for IPv6 knocks)".to_string(),
        (Some(c), _) => c.to_string(),
        (None, Some(c)) => format!("{c}  (same as {name})"),
        (None, None) => "(none)".to_string(),
    };
    field(s, name6, &six);
}

/// A rotating door: its parameters and the state of its used-window
/// record, never the key or a sequence (config::load has already refused a
/// key file that is missing, malformed or readable by others).
fn rotating_fields(
    s: &mut String,
    warnings: &mut Vec<CheckWarning>,
    door: &Door,
    spec: &config::RotatingSpec,
) {
    field(s, "Sequence", "(rotating; the current ports are not shown)");
    field(
        s,
        "Sequence_Secret",
        &format!(
            "{}  (key of {} bytes, not shown)",
            spec.secret.display(),
            spec.key.as_ref().map_or(0, |k| k.len())
        ),
    );
    field(s, "Sequence_Length", &spec.length.to_string());
    field(s, "Sequence_Period", &format!("{} s", spec.period));
    field(
        s,
        "Sequence_Skew",
        &format!(
            "{} (the {} windows around and including the current one are accepted)",
            spec.skew,
            2 * spec.skew + 1
        ),
    );
    field(s, "Sequence_Ports", &spec.range.to_string());
    field(s, "Sequence_Protocol", spec.proto.as_str());
    let bind = if spec.bind_source { "yes" } else { "no" };
    field(s, "Sequence_Bind_Source", bind);
    let state = match crate::rotating::read_state(&spec.state) {
        Ok(None) => "no window used yet".to_string(),
        Ok(Some(until)) => format!("windows starting before Unix time {until} are used"),
        Err(source) => {
            warnings.push(CheckWarning::RotatingState {
                door: door.name.clone(),
                source,
            });
            "(not readable now)".to_string()
        }
    };
    field(
        s,
        "Sequence_State",
        &format!("{}  ({state})", spec.state.display()),
    );
}

/// The state of a one-time file, for the summary; problems become warnings.
fn one_time_state(
    warnings: &mut Vec<CheckWarning>,
    door: &str,
    path: &Path,
    secrets: bool,
) -> String {
    match otp::scan(path) {
        Err(source) => {
            warnings.push(CheckWarning::OneTimeUnreadable {
                door: door.to_string(),
                source,
            });
            "(file not readable now)".to_string()
        }
        Ok(scan) => {
            for w in &scan.warnings {
                warnings.push(CheckWarning::OneTimeLineSkipped {
                    path: path.to_path_buf(),
                    line_no: w.line_no,
                    reason: w.reason(),
                });
            }
            let left = scan.usable.len();
            match scan.current() {
                None => {
                    warnings.push(CheckWarning::OneTimeUsedUp {
                        door: door.to_string(),
                        path: path.to_path_buf(),
                    });
                    format!("no unused sequence left ({} used)", scan.used)
                }
                Some(cur) => {
                    let shown = if secrets {
                        format!(": {}", cur.sequence)
                    } else {
                        format!(" ({HIDDEN})")
                    };
                    format!(
                        "{left} unused sequence{} left ({} used); current: line {}{shown}",
                        if left == 1 { "" } else { "s" },
                        scan.used,
                        cur.line_no,
                    )
                }
            }
        }
    }
}

fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    type Run = (i32, String, String, tempfile::TempDir);

    fn run_on(text: &str, extra: &[&str]) -> Run {
        run_in(tempfile::tempdir().unwrap(), text, extra)
    }

    /// [`run_on`] a configuration of one door per `(name, text)`: door
    /// `name` uses the one-time file `name` of the returned directory,
    /// which holds `text` (`None`: there is no such file).
    fn run_one_time(doors: &[(&str, Option<&str>)], extra: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for (name, content) in doors {
            let path = dir.path().join(name);
            if let Some(content) = content {
                std::fs::write(&path, content).unwrap();
            }
            let _ = writeln!(
                text,
                "[{name}]\none_time_sequences = {}\ncommand = x",
                path.display()
            );
        }
        run_in(dir, &text, extra)
    }

    /// `knockd -t` on `text`, written to `knockd.conf` in `dir`.
    fn run_in(dir: tempfile::TempDir, text: &str, extra: &[&str]) -> Run {
        let conf = dir.path().join("knockd.conf");
        std::fs::write(&conf, text).unwrap();
        let mut args = vec!["knockd", "-t", "-c", conf.to_str().unwrap()];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&cli, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            dir,
        )
    }

    #[test]
    fn valid_config_summary() {
        let text = "[options]\nUseSyslog\nInterface = lo\n[web]\nsequence = 1,2:udp\ntcpflags = syn,!ack\ntarget = 192.0.2.1\ncommand = open %IP%\ncommand_6 =\nstop_command = close %IP%\ncmd_timeout = 7\n";
        let (code, out, err, _d) = run_on(text, &["--show-secrets"]);
        assert_eq!(code, 0, "{err}");
        assert!(err.is_empty(), "{err}");
        for needle in [
            "configuration OK, 1 door",
            "UseSyslog:          yes",
            "LogFile:            (none)",
            "PidFile:            /var/run/knockd.pid  (default)",
            "Interface:          lo  (from the configuration file)",
            "[web]  (line 4)",
            "Sequence:           1:tcp,2:udp",
            "Seq_Timeout:        25 s",
            "TCPFlags:           syn,!ack",
            "Target:             192.0.2.1",
            "Scan_Threshold:     8 (a source that touched more distinct other ports cannot knock)",
            "Start_Command:      open %IP%",
            "Start_Command_6:    (none: nothing runs for IPv6 knocks)",
            "Cmd_Timeout:        7 s",
            "Stop_Command:       close %IP%",
            "Stop_Command_6:     close %IP%  (same as Stop_Command)",
        ] {
            assert!(out.contains(needle), "summary lacks {needle:?}:\n{out}");
        }
    }

    #[test]
    fn command_line_overrides_are_shown() {
        let text = "[options]\nInterface = eth9\nLogFile = /var/log/a.log\n[d]\nsequence = 1\ncommand = x\n";
        let (code, out, err, _d) =
            run_on(text, &["-i", "lo", "-g", "/tmp/b.log", "-p", "/tmp/b.pid"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("Interface:          lo  (from the command line)"),
            "{out}"
        );
        assert!(
            out.contains("LogFile:            /tmp/b.log  (from the command line)"),
            "{out}"
        );
        assert!(
            out.contains("PidFile:            /tmp/b.pid  (from the command line)"),
            "{out}"
        );
    }

    #[test]
    fn interface_lists_and_the_default_routes_are_shown() {
        let (code, out, err, _d) = run_on(
            "[options]\nInterface = lo, nosuchif1\n[d]\nsequence = 1\ncommand = x\n",
            &[],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("Interface:          lo, nosuchif1  (from the configuration file)"),
            "{out}"
        );
        assert!(err.contains("\"nosuchif1\" does not exist"), "{err}");
        assert!(!err.contains("\"lo\""), "{err}");

        let path = std::path::Path::new("k.conf");
        let cli = Cli::try_parse_from(["knockd", "-t", "-c", "k.conf"]).unwrap();
        assert_eq!(cli.config, path);
        let cfg = config::parse_str("[d]\nsequence = 1\ncommand = x\n", "k.conf").unwrap();
        let routes = || InterfaceList::parse("wan0,wan6").map_err(|_| RouteError::NoDefaultRoute);
        let (out, _) = summary_with(&cli, &cfg, routes);
        assert!(
            out.contains(
                "Interface:          wan0, wan6  (default: the interfaces of the default routes)"
            ),
            "{out}"
        );
        let (out, warnings) = summary_with(&cli, &cfg, || Err(RouteError::NoDefaultRoute));
        assert!(
            out.contains("Interface:          (none: no default route)"),
            "{out}"
        );
        assert!(
            warnings
                .iter()
                .map(ToString::to_string)
                .any(|w| w.contains("-i") && w.contains("Interface")),
            "{warnings:?}"
        );
    }

    #[test]
    fn missing_interface_is_a_warning() {
        let (code, _out, err, _d) =
            run_on("[d]\nsequence = 1\ncommand = x\n", &["-i", "nosuchif0"]);
        assert_eq!(code, 0);
        assert!(
            err.contains("warning: interface \"nosuchif0\" does not exist"),
            "{err}"
        );
    }

    #[test]
    fn errors_exit_1_with_every_error() {
        let (code, out, err, d) = run_on("[d]\nsequence = 80x\nseq_timeout = 0\n", &[]);
        assert_eq!(code, 1);
        assert!(out.is_empty());
        let conf = d.path().join("knockd.conf");
        assert!(
            err.contains(&format!("{}:2: port \"80x\"", conf.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}:3: seq_timeout \"0\"", conf.display())),
            "{err}"
        );
        assert!(err.contains("2 errors found"), "{err}");
    }

    #[test]
    fn sequences_are_hidden_without_show_secrets() {
        let text = "[web]\nsequence = 31337,42424:udp,51515\ncommand = open %IP%\n";
        let (code, out, err, _d) = run_on(text, &["-i", "lo"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("Sequence:           (3 hits; hidden; --show-secrets shows it)"),
            "{out}"
        );
        for port in ["31337", "42424", "51515"] {
            assert!(
                !out.contains(port) && !err.contains(port),
                "{port} shown:\n{out}{err}"
            );
        }
        let (_, out, _, _d) = run_on(text, &["-i", "lo", "--show-secrets"]);
        assert!(
            out.contains("Sequence:           31337:tcp,42424:udp,51515:tcp"),
            "{out}"
        );
    }

    #[test]
    fn one_time_file_states() {
        let doors = [
            ("a", Some("# 1,2\n 3,4:udp\n bogus\n 5,6\n")),
            ("b", None),
            ("c", Some("#1,2\n")),
        ];
        let (code, out, err, d) = run_one_time(&doors, &["-i", "lo", "--show-secrets"]);
        let otp_path = d.path().join("a");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("2 unused sequences left (1 used); current: line 2: 3:tcp,4:udp"),
            "{out}"
        );
        assert!(
            !err.contains("bogus"),
            "a one-time line is never quoted: {err}"
        );
        assert!(out.contains("(file not readable now)"), "{out}");
        assert!(out.contains("no unused sequence left (1 used)"), "{out}");
        assert!(
            err.contains(&format!(
                "{}:3: line is skipped: a port is not a number",
                otp_path.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("door \"b\": cannot read its one-time sequence file"),
            "{err}"
        );
        assert!(
            err.contains("door \"c\": its one-time sequence file"),
            "{err}"
        );
    }

    #[test]
    fn one_time_lines_are_hidden_without_show_secrets() {
        let doors = [("a", Some("# 1,2\n 23456,34567:udp\n 45678x\n"))];
        let (code, out, err, d) = run_one_time(&doors, &["-i", "lo"]);
        let otp_path = d.path().join("a");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(
                "1 unused sequence left (1 used); current: line 2 (hidden; --show-secrets shows it)"
            ),
            "{out}"
        );
        assert!(
            err.contains(&format!(
                "{}:3: line is skipped: a port is not a number between 1 and 65535",
                otp_path.display()
            )),
            "{err}"
        );
        for secret in ["23456", "34567", "45678"] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{secret}:\n{out}{err}"
            );
        }
    }
}
