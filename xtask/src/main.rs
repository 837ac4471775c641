//! Release helpers of the knock suite.
//!
//! `cargo run -p xtask -- dist OUTDIR` writes, from the programs' own clap
//! definitions (so they can never disagree with `--help`):
//!
//! * `OUTDIR/man/knockd.8`, `knock.1`, `knock-gen.1`, and a copy of the
//!   hand-written `packaging/man/knockd.conf.5`;
//! * `OUTDIR/completions/bash/{knockd,knock,knock-gen}`,
//!   `OUTDIR/completions/zsh/_{knockd,knock,knock-gen}` and
//!   `OUTDIR/completions/fish/{knockd,knock,knock-gen}.fish`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

const USAGE: &str = "\
usage: cargo run -p xtask -- dist OUTDIR

Writes the manual pages (OUTDIR/man) and the bash, zsh and fish completions
(OUTDIR/completions) of knockd, knock and knock-gen, generated from their
command-line definitions, plus the hand-written knockd.conf(5).

Example:
  cargo run -p xtask -- dist target/dist";

/// One program of the suite and what its manual page adds to `--help`.
struct Program {
    name: &'static str,
    section: &'static str,
    command: fn() -> clap::Command,
    /// Extra manual sections, raw roff, appended after the options.
    extra_roff: &'static str,
}

fn programs() -> [Program; 3] {
    [
        Program {
            name: "knockd",
            section: "8",
            command: knockd::cli::Cli::command,
            extra_roff: KNOCKD_EXTRA,
        },
        Program {
            name: "knock",
            section: "1",
            command: knock::cli::Cli::command,
            extra_roff: KNOCK_EXTRA,
        },
        Program {
            name: "knock-gen",
            section: "1",
            command: knock_gen::cli::Cli::command,
            extra_roff: KNOCK_GEN_EXTRA,
        },
    ]
}

const KNOCKD_EXTRA: &str = r#".SH LOGGING
Per\-packet lines (\fBStage N\fR, \fBsequence timeout\fR, and with \fB\-v\fR
\fBincorrect knock\fR) are limited per door and per kind to 100 lines a
minute; the rest are counted in a line
\fBDOOR: N similar lines left out in the last 60 s (KIND)\fR, so a flood of
forged knocks cannot fill the disk. The limit applies to the log file,
syslog and \fB\-v\fR; \fB\-D\fR prints every line. \fBOPEN SESAME\fR,
commands, their results, errors, start\-up and shut\-down are never left out.
.SH INTERFACES
\fB\-i eth0,wlan0\fR (or \fBInterface = eth0, wlan0\fR) listens on each listed
interface, each with its own capture, link type, addresses and filter, all in
one process; \fB\-i any\fR listens on every interface. Without \fB\-i\fR and
\fBInterface\fR, knockd listens on the interfaces of the default IPv4 and IPv6
routes; with no default route it exits with an error that says to name the
interface. knockd starts when at least one listed interface can be opened.
An interface that is missing at start\-up, or lost later (deleted, down), is
logged once and retried with a back\-off of 0.25 to 5 seconds, and at once
when a link appears; the other interfaces keep working. The start\-up line
names the interfaces that listen: \fBstarting up, listening on eth0, wlan0\fR.
A packet seen by two captures (\fBany\fR together with an interface, a bridge
and its port) opens a door once.
.PP
An idle knockd does not wake up: address changes arrive as rtnetlink
notifications and changes of one\-time sequence files as inotify events.
.SH SIGNALS
.TP
.B SIGHUP
Re\-read the configuration file. The new configuration is parsed completely
and used only if it is valid; otherwise the errors are logged and the running
configuration stays. The log file is reopened (for log rotation), the
interfaces' addresses are re\-read, and a changed interface list (\fBInterface\fR,
or the default routes) is applied: interfaces no longer listed are closed, new
ones opened. \fB\-i\fR and \fB\-g\fR keep winning over the file.
.TP
.BR SIGTERM ", " SIGINT
Run every pending stop command at once, wait up to 10 seconds for running
commands, then exit, so that a restart leaves no door open.
.SH FILES
.TP
.I /etc/knockd.conf
The configuration file, see
.BR knockd.conf (5).
.TP
.I /var/run/knockd.pid
The default pid file, written with
.B \-d
or
.BR \-p .
.TP
.I /etc/default/knockd
Options for the systemd service (\fBKNOCKD_OPTS\fR).
.SH EXIT STATUS
0 on a clean shut\-down, for \fB\-h\fR, \fB\-V\fR and a valid \fB\-t\fR;
1 when the configuration is invalid or the server fails (for instance
when no listed interface can be opened at start\-up, or there is no
interface to listen on);
2 on a usage error.
.SH SECURITY NOTES
Using \fB\-l\fR to resolve DNS names for log entries may be a security risk:
an attacker who can watch the server's DNS traffic may learn the first port
of a sequence, and a stealthy host may give itself away.
.SH SEE ALSO
.BR knockd.conf (5),
.BR knock (1),
.BR knock\-gen (1),
.BR pcap (3PCAP)
"#;

const KNOCK_EXTRA: &str = r#".SH EXIT STATUS
0 when every hit was sent; 1 when a hit could not be sent, the host could not
be resolved or a one\-time file could not be used; 2 on a usage error.
.SH SEE ALSO
.BR knockd (8),
.BR knockd.conf (5),
.BR knock\-gen (1)
"#;

const KNOCK_GEN_EXTRA: &str = r#".SH EXIT STATUS
0 when the sequences were written; 1 on any error (nothing is written when the
request is impossible); 2 on a usage error.
.SH SEE ALSO
.BR knockd (8),
.BR knockd.conf (5),
.BR knock (1)
"#;

/// The date in the pages' footer: `SOURCE_DATE_EPOCH` (reproducible
/// builds) when set, else today, as YYYY-MM-DD in UTC. Without a date,
/// `.TH` would shift the source and manual names into the wrong fields.
fn page_date() -> String {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    when.format("%Y-%m-%d").to_string()
}

/// Escape plain text for a roff line inside a no-fill block.
fn roff_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    if line.starts_with('.') || line.starts_with('\'') {
        out.push_str("\\&");
    }
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    out
}

/// The manual page of one program: clap's NAME, SYNOPSIS, DESCRIPTION and
/// OPTIONS, then the `--help` epilogue (examples) verbatim, the program's
/// extra sections and VERSION.
fn man_page(p: &Program) -> io::Result<Vec<u8>> {
    let cmd = (p.command)();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let epilogue = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string());
    let man = clap_mangen::Man::new(cmd)
        .title(p.name.to_uppercase())
        .section(p.section)
        .date(page_date())
        .source(format!("knock suite {version}"))
        .manual(if p.section == "8" {
            "System Manager's Manual"
        } else {
            "User Commands"
        });
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if let Some(text) = epilogue {
        out.extend_from_slice(b".SH \"EXAMPLES AND NOTES\"\n.nf\n");
        for line in text.lines() {
            out.extend_from_slice(roff_line(line).as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b".fi\n");
    }
    out.extend_from_slice(p.extra_roff.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Completion script of `name` for `shell`, and its file name.
fn completion(p: &Program, shell: Shell) -> (String, Vec<u8>) {
    let mut cmd = (p.command)();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, p.name, &mut out);
    let file = match shell {
        Shell::Bash => p.name.to_string(),
        Shell::Zsh => format!("_{}", p.name),
        Shell::Fish => format!("{}.fish", p.name),
        other => format!("{}.{other}", p.name),
    };
    (file, out)
}

/// The hand-written configuration manual.
fn conf_man_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man/knockd.conf.5")
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Write every manual page and completion under `outdir`; returns the
/// files written.
fn dist(outdir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let man_dir = outdir.join("man");
    mkdir(&man_dir)?;
    for p in programs() {
        let page = man_page(&p).map_err(|e| format!("cannot render {}: {e}", p.name))?;
        let path = man_dir.join(format!("{}.{}", p.name, p.section));
        write(&path, &page)?;
        written.push(path);
    }
    let src = conf_man_source();
    let conf = fs::read(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let path = man_dir.join("knockd.conf.5");
    write(&path, &conf)?;
    written.push(path);

    for (shell, dir) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let dir = outdir.join("completions").join(dir);
        mkdir(&dir)?;
        for p in programs() {
            let (file, script) = completion(&p, shell);
            let path = dir.join(file);
            write(&path, &script)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dist", outdir] => match dist(Path::new(outdir)) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask: {e}");
                ExitCode::FAILURE
            }
        },
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("xtask: unknown arguments {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_options(cmd: &clap::Command) -> Vec<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_long())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn dist_writes_every_page_and_completion() {
        let dir = tempfile::tempdir().unwrap();
        let files = dist(dir.path()).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|f| {
                f.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        for want in [
            "man/knockd.8",
            "man/knock.1",
            "man/knock-gen.1",
            "man/knockd.conf.5",
            "completions/bash/knockd",
            "completions/bash/knock",
            "completions/bash/knock-gen",
            "completions/zsh/_knockd",
            "completions/zsh/_knock",
            "completions/zsh/_knock-gen",
            "completions/fish/knockd.fish",
            "completions/fish/knock.fish",
            "completions/fish/knock-gen.fish",
        ] {
            assert!(rel.iter().any(|r| r == want), "{want} missing from {rel:?}");
            let len = fs::metadata(dir.path().join(want)).unwrap().len();
            assert!(len > 200, "{want} is only {len} bytes");
        }
        assert_eq!(rel.len(), 13, "{rel:?}");
    }

    #[test]
    fn man_pages_document_every_option_and_keep_the_examples() {
        for p in programs() {
            let page = String::from_utf8(man_page(&p).unwrap()).unwrap();
            let th = format!(".TH {} {} ", p.name.to_uppercase(), p.section);
            let th_line = page.lines().find(|l| l.starts_with(".TH")).unwrap();
            // title, section, date, source, manual: five fields.
            assert!(
                th_line.ends_with("\"User Commands\"")
                    || th_line.ends_with("\"System Manager's Manual\""),
                "{th_line}"
            );
            assert!(
                th_line.contains(&format!("{} \"knock suite ", page_date())),
                "{th_line}"
            );
            assert!(page.contains(&th), "{}: no {th:?} in\n{page}", p.name);
            for section in ["NAME", "SYNOPSIS", "OPTIONS", "SEE ALSO", "EXIT STATUS"] {
                assert!(page.contains(section), "{}: no {section}", p.name);
            }
            let cmd = (p.command)();
            for long in long_options(&cmd) {
                // clap_mangen writes --long as \-\-long.
                let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&roff), "{}: option {long} missing", p.name);
            }
            // The epilogue of --help survives line by line, in no-fill mode.
            let epilogue = cmd.get_after_help().unwrap().to_string();
            let example = epilogue
                .lines()
                .find(|l| l.trim_start().starts_with(p.name))
                .unwrap();
            assert!(
                page.contains(&roff_line(example)),
                "{}: example {example:?} missing",
                p.name
            );
        }
    }

    #[test]
    fn completions_know_every_option() {
        for p in programs() {
            let cmd = (p.command)();
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let (_, script) = completion(&p, shell);
                let script = String::from_utf8(script).unwrap();
                for long in long_options(&cmd) {
                    let needle = match shell {
                        Shell::Fish => format!("-l {long}"),
                        _ => format!("--{long}"),
                    };
                    assert!(
                        script.contains(&needle),
                        "{} {shell}: {needle:?} missing",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_line("knock -v a\\b"), "knock \\-v a\\eb");
        assert_eq!(roff_line(".hidden"), "\\&.hidden");
        assert_eq!(roff_line("'quote"), "\\&'quote");
    }

    /// Does `page` have a tag line for `directive`?
    fn documents(page: &str, directive: &str) -> bool {
        let lines: Vec<&str> = page.lines().collect();
        lines.windows(2).any(|w| {
            if w[0] != ".TP" && w[0] != ".TQ" {
                return false;
            }
            let Some(rest) = w[1]
                .strip_prefix(".BI ")
                .or_else(|| w[1].strip_prefix(".B "))
            else {
                return false;
            };
            let rest = rest.trim_start_matches('"');
            rest.strip_prefix(directive)
                .is_some_and(|after| after.is_empty() || after.starts_with([' ', '"']))
        })
    }

    #[test]
    fn conf_page_documents_every_directive_and_alias() {
        let page = fs::read_to_string(conf_man_source()).unwrap();
        assert!(page.contains(".TH KNOCKD.CONF 5"), "bad title");
        for directive in [
            "UseSyslog",
            "LogFile",
            "PidFile",
            "Interface",
            "Sequence",
            "One_Time_Sequences",
            "Seq_Timeout",
            "Timeout",
            "TCPFlags",
            "Target",
            "Start_Command",
            "Command",
            "Start_Command_6",
            "Command_6",
            "Cmd_Timeout",
            "Stop_Command",
            "Stop_Command_6",
            "Sequence_Secret",
            "Sequence_Length",
            "Sequence_Period",
            "Sequence_Skew",
            "Sequence_Ports",
            "Sequence_Protocol",
            "Sequence_Bind_Source",
            "Sequence_State",
            "Scan_Threshold",
        ] {
            // Each directive (and alias) tags a paragraph: `.B NAME` or
            // `.BI "NAME = " value`, after `.TP` or `.TQ`.
            assert!(
                documents(&page, directive),
                "knockd.conf.5 does not document {directive}"
            );
        }
        for needle in ["DIFFERENCES FROM THE CLASSIC", "default"] {
            assert!(page.contains(needle), "knockd.conf.5 lacks {needle:?}");
        }
    }
}
