//! `knockd`'s command line and configuration check (`-t/--check`), run on the
//! real binary. Nothing here captures packets or needs privilege.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use integration::{contains_all, refuses, Scratch};
use predicates::prelude::*;
use predicates::str::contains;

fn knockd() -> Command {
    integration::command("knockd", "knockd")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Write `text` to `knockd.conf` (mode 0644) in a fresh directory.
fn conf(text: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new();
    let path = dir.file_with_mode("knockd.conf", text, 0o644);
    (dir, path)
}

/// In a fresh directory, the one-time file `seqs` holding `seqs_text`
/// with permission bits `mode`, and `knockd.conf` holding `conf_text`
/// with `{seqs}` replaced by the path of `seqs` (mode 0644).
fn conf_with_seqs(seqs_text: &str, mode: u32, conf_text: &str) -> (Scratch, PathBuf, PathBuf) {
    let dir = Scratch::new();
    let seqs = dir.file_with_mode("seqs", seqs_text, mode);
    let text = conf_text.replace("{seqs}", &seqs.display().to_string());
    let path = dir.file_with_mode("knockd.conf", text, 0o644);
    (dir, seqs, path)
}

fn check(path: &Path) -> assert_cmd::assert::Assert {
    // -i lo: the interface exists everywhere, so no warning about it.
    knockd()
        .args(["-i", "lo", "--check", "-c"])
        .arg(path)
        .assert()
}

/// [`check`] with `--show-secrets`: sequences and one-time lines shown.
fn check_showing_secrets(path: &Path) -> assert_cmd::assert::Assert {
    knockd()
        .args(["-i", "lo", "--check", "--show-secrets", "-c"])
        .arg(path)
        .assert()
}

/// [`check`] exits 1 with every one of `needles` in its standard error.
fn check_refuses<S: AsRef<str>>(
    path: &Path,
    needles: impl IntoIterator<Item = S>,
) -> assert_cmd::assert::Assert {
    check(path).failure().code(1).stderr(contains_all(needles))
}

#[test]
fn help_shows_every_option_and_examples() {
    for flag in ["-h", "--help"] {
        let out = knockd().arg(flag).assert().success();
        let mut out = out;
        for needle in [
            "-i, --interface",
            "-d, --daemon",
            "-c, --config",
            "-D, --debug",
            "-l, --lookup",
            "-4, --only-ip-v4",
            "-v, --verbose",
            "-V, --version",
            "-h, --help",
            "-p, --pidfile",
            "-g, --logfile",
            "-t, --check",
        ] {
            out = out.stdout(contains(needle));
        }
        if flag == "--help" {
            out.stdout(contains("Examples:").and(contains("knockd -t -c ./knockd.conf")));
        }
    }
}

#[test]
fn version_exits_0() {
    for flag in ["-V", "--version"] {
        knockd()
            .arg(flag)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("knockd "));
    }
}

#[test]
fn usage_errors_exit_non_zero() {
    for args in [
        &["--bogus"][..],
        &["-x"],
        &["-c"],
        &["-i"],
        &["-i", "/dev/eth0"],
        &["stray"],
    ] {
        refuses(knockd().args(args), ["error"]).code(2);
    }
}

#[test]
fn man_page_examples_and_debian_config_pass_the_check() {
    let cases: &[(&str, &[&str])] = &[
        (
            "man-example-1.conf",
            &["[openSSH]", "[closeSSH]", "/var/log/knockd.log"],
        ),
        (
            "man-example-2.conf",
            &[
                "[opencloseSSH]",
                "2222:udp,3333:tcp,4444:udp",
                "syn,ack",
                "Cmd_Timeout:        5 s",
            ],
        ),
        (
            "man-example-3.conf",
            &["[smtp]", "/etc/knockd/smtp_sequences", "fin,!ack"],
        ),
        (
            "debian-knockd.conf",
            &[
                "[openSSH]",
                "[closeSSH]",
                "[openHTTPS]",
                "UseSyslog:          yes",
            ],
        ),
    ];
    for (file, needles) in cases {
        let mut a = check_showing_secrets(&fixture(file))
            .success()
            .stdout(contains("configuration OK"));
        for n in *needles {
            a = a.stdout(contains(*n));
        }
    }
}

#[test]
fn missing_one_time_file_is_only_a_warning() {
    // Example #3 names /etc/knockd/smtp_sequences, which does not exist here.
    if Path::new("/etc/knockd/smtp_sequences").exists() {
        return;
    }
    check(&fixture("man-example-3.conf"))
        .success()
        .stderr(contains("warning").and(contains("door \"smtp\"")));
}

#[test]
fn bad_configurations_exit_1_naming_line_and_value() {
    // (text, line, fragment quoting the offending value)
    let cases: &[(&str, usize, &str)] = &[
        (
            "[d]\nsequence = 7000,80x,9000\n",
            2,
            "port \"80x\" is not a number between 1 and 65535",
        ),
        ("[d]\n\nsequence = 70000\n", 3, "port \"70000\""),
        ("[d]\nsequence = 0\n", 2, "port \"0\""),
        ("[d]\nsequence = 1:icmp\n", 2, "protocol \"icmp\""),
        (
            "[d]\nsequence = 1\nopen_command = x\n",
            3,
            "unknown directive \"open_command\"",
        ),
        (
            "sequence = 1\n[d]\nsequence = 1\n",
            1,
            "\"sequence\" is outside any section",
        ),
        (
            "[d]\nsequence = 1\ntcpflags = syn,!syn\n",
            3,
            "\"syn,!syn\"",
        ),
        (
            "[d]\nsequence = 1\nseq_timeout = 0\n",
            3,
            "seq_timeout \"0\"",
        ),
        (
            "[d]\nsequence = 1\ncmd_timeout = -3\n",
            3,
            "cmd_timeout \"-3\"",
        ),
        (
            "[d]\nsequence = 1\ntarget = 10.0.0.300\n",
            3,
            "target \"10.0.0.300\"",
        ),
        (
            "[d]\nsequence = 1\none_time_sequences = /x\n",
            3,
            "both Sequence (line 2) and One_Time_Sequences (line 3)",
        ),
        ("[d]\ncommand = x\n", 1, "door \"d\" has no Sequence"),
        (
            "[options]\nsequence = 1\n[d]\nsequence = 1\n",
            2,
            "door directive",
        ),
        ("[d]\nsequence = 1\nlogfile = /x\n", 3, "global directive"),
        ("[d]\nsequence = 1\nsequence = 2\n", 3, "given twice"),
        ("[d]\nsequence = 1\nwhat is this\n", 3, "\"what is this\""),
    ];
    for (text, line, fragment) in cases {
        let (_dir, path) = conf(text);
        let located = format!("{}:{line}: ", path.display());
        check_refuses(&path, [located.as_str(), fragment]).stdout("");
    }
}

#[test]
fn every_error_is_reported() {
    let (_dir, path) = conf("[d]\nsequence = 80x\nseq_timeout = 0\ntarget = nowhere\n");
    let p = path.display();
    check_refuses(
        &path,
        [
            format!("{p}:2: port \"80x\""),
            format!("{p}:3: seq_timeout \"0\""),
            format!("{p}:4: target \"nowhere\""),
            "3 errors found".to_string(),
        ],
    );
}

#[test]
fn missing_and_empty_files_exit_1() {
    let dir = Scratch::new();
    let missing = dir.join("nope.conf");
    check_refuses(&missing, [format!("{}: cannot read", missing.display())]);

    let (_d, empty) = conf("");
    check_refuses(
        &empty,
        [
            format!("{}: the file is empty", empty.display()),
            "nothing to do".to_string(),
        ],
    );

    let (_d, no_door) = conf("[options]\nUseSyslog\n");
    check_refuses(&no_door, ["no door is defined"]);
}

#[test]
fn without_check_a_bad_config_still_exits_1() {
    let (_dir, path) = conf("[d]\nsequence = 80x\n");
    refuses(
        knockd().arg("-c").arg(&path),
        [format!("{}:2: port \"80x\"", path.display())],
    )
    .code(1);
}

#[test]
fn crlf_file_is_accepted() {
    let (_dir, path) = conf("[options]\r\n  UseSyslog\r\n[web]\r\n  sequence = 1000,2000:udp\r\n  command = echo %IP%\r\n");
    check_showing_secrets(&path)
        .success()
        .stdout(
            contains("[web]")
                .and(contains("1000:tcp,2000:udp"))
                .and(contains("echo %IP%")),
        )
        .stdout(contains("\r").not());
}

#[test]
fn duplicate_door_names_warn_but_pass() {
    let (_dir, path) = conf("[d]\nsequence = 1\ncommand = a\n[d]\nsequence = 2\ncommand = b\n");
    check(&path)
        .success()
        .stdout(contains("configuration OK, 2 doors"))
        .stderr(contains(format!(
            "warning: {}:4: door \"d\" is defined twice (first at line 1)",
            path.display()
        )));
}

#[test]
fn one_time_door_reports_remaining_sequences() {
    let (_dir, otp, path) = conf_with_seqs(
        "# 1111,2222\n 3333,4444:udp\n 5555,6666\n 7777,8888\n",
        0o644,
        "[otp]\none_time_sequences = {seqs}\ncommand = echo %IP%\n",
    );
    check_showing_secrets(&path).success().stdout(contains_all([
        otp.display().to_string().as_str(),
        "3 unused sequences left (1 used)",
        "current: line 2: 3333:tcp,4444:udp",
    ]));
}

/// Every port number of `text` (runs of digits of 3 to 5 characters).
fn ports_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|w| (3..=5).contains(&w.len()))
        .map(str::to_string)
        .collect()
}

#[test]
fn check_output_holds_no_sequence_or_one_time_line_without_show_secrets() {
    // A used line, the current line, a later line, and one that does not
    // parse (its text is as secret as a good line).
    let (dir, otp, path) = conf_with_seqs(
        "# 11111,22222\n 23456,34567:udp\n 45678,56789\n 61234x,7123\n",
        0o644,
        "[fixed]\nsequence = 31337,42424:udp,51515\ncommand = echo %IP%\n\
         [otp]\none_time_sequences = {seqs}\ncommand = echo %IP%\n",
    );
    let secrets = [
        "31337", "42424", "51515", "11111", "22222", "23456", "34567", "45678", "56789", "61234",
        "7123",
    ];
    let out = check(&path).success().get_output().clone();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // The random temporary directory name could hold digits by chance.
    let dir_name = dir.path().display().to_string();
    for text in [
        &stdout.replace(&dir_name, ""),
        &stderr.replace(&dir_name, ""),
    ] {
        for s in secrets {
            assert!(!text.contains(s), "{s} is shown:\n{stdout}\n{stderr}");
        }
    }
    // Line numbers and counts are what is shown instead.
    assert!(
        stdout.contains("(3 hits; hidden; --show-secrets shows it)"),
        "{stdout}"
    );
    assert!(stdout.contains("current: line 2 (hidden"), "{stdout}");
    assert!(
        stderr.contains(&format!("{}:4: line is skipped", otp.display())),
        "{stderr}"
    );

    // With --show-secrets the sequences are there (the file's used line
    // apart); a line that does not parse is still named by number only.
    let out = check_showing_secrets(&path).success().get_output().clone();
    let shown = integration::output_text(&out);
    assert!(!ports_in(&shown).contains(&"61234".to_string()), "{shown}");
    for s in ["31337", "42424", "51515", "23456", "34567"] {
        assert!(
            ports_in(&shown).contains(&s.to_string()),
            "{s} missing:\n{shown}"
        );
    }
}

#[test]
fn show_secrets_without_check_is_a_usage_error() {
    refuses(knockd().arg("--show-secrets"), ["--check"]).code(2);
}

#[test]
fn group_writable_config_is_refused_by_check_naming_file_and_reason() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = conf("[d]\nsequence = 1\ncommand = true\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    check_refuses(
        &path,
        [format!(
            "{}: refusing a file writable by group or others (mode 0664; chmod go-w fixes it)",
            path.display()
        )],
    );
    // Started as a daemon, the same refusal, before anything is opened.
    refuses(
        knockd().args(["-i", "lo", "-c"]).arg(&path),
        [format!(
            "{}: refusing a file writable by group or others",
            path.display()
        )],
    )
    .code(1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(&path).success();
}

#[test]
fn config_owned_by_another_user_is_refused() {
    integration::skip_unless_root!("needs root to give the file to nobody");
    let (_dir, path) = conf("[d]\nsequence = 1\ncommand = true\n");
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    check_refuses(
        &path,
        [format!(
            "{}: refusing a file owned by uid 65534 (it must be owned by root)",
            path.display()
        )],
    );
}

#[test]
fn group_writable_one_time_file_is_not_used() {
    let (_dir, otp, path) = conf_with_seqs(
        " 1111,2222\n",
        0o620,
        "[otp]\none_time_sequences = {seqs}\ncommand = x\n",
    );
    check(&path)
        .success()
        .stdout(contains("(file not readable now)"))
        .stderr(contains("writable by group or others").and(contains(otp.display().to_string())));
}

#[test]
fn command_line_overrides_show_in_the_check() {
    let (_dir, path) = conf(
        "[options]\nInterface = eth7\nLogFile = /var/log/a.log\n[d]\nsequence = 1\ncommand = x\n",
    );
    knockd()
        .args([
            "-t",
            "-i",
            "lo",
            "-p",
            "/tmp/x.pid",
            "-g",
            "/tmp/x.log",
            "-c",
        ])
        .arg(&path)
        .assert()
        .success()
        .stdout(
            contains("lo  (from the command line)")
                .and(contains("/tmp/x.pid  (from the command line)"))
                .and(contains("/tmp/x.log  (from the command line)")),
        );
}
