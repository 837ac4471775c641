//! Hostile command lines and files for all three programs: every one must
//! end with a non-zero status and a message that names the bad value, and
//! none may panic or hang. Nothing here is sent over the network (every
//! case fails before a packet would be sent) and no root is needed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

/// One hostile invocation: program, arguments, and a text the output must
/// contain (the bad value, named).
struct Case {
    package: &'static str,
    bin: &'static str,
    args: Vec<OsString>,
    names: String,
}

fn case(package: &'static str, bin: &'static str, args: &[&str], names: &str) -> Case {
    Case {
        package,
        bin,
        args: args.iter().map(OsString::from).collect(),
        names: names.to_owned(),
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Hostile files in `dir`, by name.
fn write_files(dir: &Path) {
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 253) as u8).collect();
    std::fs::write(dir.join("garbage"), &garbage).unwrap();
    std::fs::write(dir.join("nul.conf"), b"[d]\0\nsequence = 1\0\n").unwrap();
    std::fs::write(
        dir.join("bad-values.conf"),
        "[options]\n  Bogus = 1\n[door]\n  Sequence = 7000,80x,-1,70000,abc\n  \
         Seq_Timeout = 18446744073709551616\n  TCPFlags = syn,!syn\n  Target = 300.1.1.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("huge-line.conf"),
        format!(
            "[d]\nsequence = 1\ncommand = {}\nbogus\n",
            "x".repeat(1 << 20)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("range.conf"), "[d]\nsequence = 1, 70000:udp\n").unwrap();
    std::fs::write(
        dir.join("ok.conf"),
        "[d]\nsequence = 7000\ncommand = true\n",
    )
    .unwrap();
    std::fs::write(dir.join("used.otp"), "#7000\n#8000\n\n").unwrap();
    std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
}

fn cases(dir: &Path) -> Vec<Case> {
    let f = |name: &str| p(&dir.join(name));
    let long_if = "x".repeat(40);
    let long_host = "a".repeat(300);
    let mut v = vec![
        // knockd: options
        case("knockd", "knockd", &["--bogus"], "--bogus"),
        case("knockd", "knockd", &["-i", &long_if, "-t"], &long_if),
        case("knockd", "knockd", &["-i", "a/b", "-t"], "a/b"),
        case("knockd", "knockd", &["-i", "", "-t"], "empty"),
        case(
            "knockd",
            "knockd",
            &["-c", "/nonexistent/k.conf", "-t"],
            "/nonexistent/k.conf",
        ),
        case("knockd", "knockd", &["-c", "/", "-t"], "directory"),
        // knockd: hostile configuration files
        case("knockd", "knockd", &["-t", "-c", &f("garbage")], "UTF-8"),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("nul.conf")],
            "nul.conf:1",
        ),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("bad-values.conf")],
            "\"80x\"",
        ),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("range.conf")],
            "range.conf:2: port \"70000\"",
        ),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("bad-values.conf")],
            "300.1.1.1",
        ),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("bad-values.conf")],
            "18446744073709551616",
        ),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("huge-line.conf")],
            "huge-line.conf:4",
        ),
        case("knockd", "knockd", &["-t", "-c", &f("loop")], "loop"),
        case(
            "knockd",
            "knockd",
            &["-t", "-c", &f("zero")],
            "writable by group or others",
        ),
        // Fails at the capture (no such interface, or no privilege).
        case(
            "knockd",
            "knockd",
            &["-i", "nosuchif0", "-c", &f("ok.conf"), "-g", &f("k.log")],
            "nosuchif0",
        ),
        // knock: ports, protocols, flags, delay, files, hosts
        case("knock", "knock", &["127.0.0.1", "0"], "\"0\""),
        case("knock", "knock", &["127.0.0.1", "65536"], "\"65536\""),
        case("knock", "knock", &["127.0.0.1", "--", "-1"], "\"-1\""),
        case(
            "knock",
            "knock",
            &["127.0.0.1", "99999999999999999999"],
            "99999999999999999999",
        ),
        case("knock", "knock", &["127.0.0.1", "1:sctp"], "sctp"),
        case("knock", "knock", &["127.0.0.1", "1:tcp:bogus"], "bogus"),
        case("knock", "knock", &["127.0.0.1", "1:tcp:syn:x"], "syn:x"),
        case("knock", "knock", &["127.0.0.1", "::"], "::"),
        case("knock", "knock", &["127.0.0.1", "1,2"], "1,2"),
        case("knock", "knock", &["-d", "abc", "127.0.0.1", "1"], "abc"),
        case(
            "knock",
            "knock",
            &["-d", "99999999999999999999999", "127.0.0.1", "1"],
            "99999999999999999999999",
        ),
        case(
            "knock",
            "knock",
            &["--flags", "", "127.0.0.1", "1"],
            "empty",
        ),
        case(
            "knock",
            "knock",
            &["--flags", "syn,!syn", "127.0.0.1", "1"],
            "syn",
        ),
        case("knock", "knock", &["-4", "-6", "127.0.0.1", "1"], "--ipv6"),
        case("knock", "knock", &["-4", "::1", "1"], "::1"),
        case("knock", "knock", &["fe80::1", "1"], "fe80::1"),
        case("knock", "knock", &["", "1"], "\"\""),
        case("knock", "knock", &[&long_host, "1"], &long_host),
        case("knock", "knock", &["127.0.0.1"], "PORT"),
        case(
            "knock",
            "knock",
            &["--otp", "/nonexistent/o", "127.0.0.1"],
            "/nonexistent/o",
        ),
        case("knock", "knock", &["--otp", "/", "127.0.0.1"], "/"),
        case(
            "knock",
            "knock",
            &["--otp", &f("used.otp"), "127.0.0.1"],
            "used.otp",
        ),
        case(
            "knock",
            "knock",
            &["--otp", &f("fifo"), "127.0.0.1"],
            "fifo",
        ),
        case(
            "knock",
            "knock",
            &["--otp", &f("zero"), "127.0.0.1"],
            "zero",
        ),
        case(
            "knock",
            "knock",
            &["--otp", &f("garbage"), "127.0.0.1"],
            "garbage",
        ),
        // knock-gen
        case(
            "knock-gen",
            "knock-gen",
            &["--append", "-o", &f("fifo")],
            "fifo",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["--append", "-o", &f("zero")],
            "zero",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-n", "0", "-o", &f("g")],
            "--count 0",
        ),
        case("knock-gen", "knock-gen", &["-n", "-1", "-o", &f("g")], "-1"),
        case(
            "knock-gen",
            "knock-gen",
            &["-n", "abc", "-o", &f("g")],
            "abc",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-n", "99999999999999999999", "-o", &f("g")],
            "99999999999999999999",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-n", "4000000000", "-o", &f("g")],
            "4000000000",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-k", "0", "-o", &f("g")],
            "--length 0",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-k", "70000", "-o", &f("g")],
            "70000",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["--ports", "5-1", "-o", &f("g")],
            "5-1",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["--ports", "0-10", "-o", &f("g")],
            "\"0\"",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["--ports", "1-65536", "-o", &f("g")],
            "65536",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["--ports", "-", "-o", &f("g")],
            "'-'",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-x", "80x", "-o", &f("g")],
            "80x",
        ),
        case("knock-gen", "knock-gen", &["-x", "1-", "-o", &f("g")], "1-"),
        case(
            "knock-gen",
            "knock-gen",
            &["-p", "sctp", "-o", &f("g")],
            "sctp",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-k", "5", "--ports", "1-3", "-o", &f("g")],
            "1-3",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-n", "1000", "-k", "1", "--ports", "1-10", "-o", &f("g")],
            "--count 1000",
        ),
        case(
            "knock-gen",
            "knock-gen",
            &["-o", "/nonexistent/dir/g"],
            "/nonexistent/dir",
        ),
        case("knock-gen", "knock-gen", &["-o", &f("ok.conf")], "ok.conf"),
        case("knock-gen", "knock-gen", &["-o", "/"], "/"),
        case("knock-gen", "knock-gen", &["-a", "-o", "/"], "/"),
        case("knock-gen", "knock-gen", &[], "--output"),
    ];
    // Arguments that are not UTF-8 at all.
    for (package, bin, args) in [
        ("knockd", "knockd", vec![OsString::from("-c")]),
        ("knock", "knock", vec![]),
        (
            "knock-gen",
            "knock-gen",
            vec![
                OsString::from("-o"),
                OsString::from("-"),
                OsString::from("-p"),
            ],
        ),
    ] {
        let mut args = args;
        args.push(OsString::from_vec(vec![0xff, 0xfe, b'x']));
        if bin == "knock" {
            args.push(OsString::from("1"));
        }
        v.push(Case {
            package,
            bin,
            args,
            names: if bin != "knock" {
                "\u{fffd}".to_owned()
            } else {
                "UTF-8".to_owned()
            },
        });
    }
    v
}

#[test]
fn hostile_arguments_and_files_fail_cleanly_naming_the_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let all = cases(dir.path());
    assert!(all.len() >= 60);
    let mut problems = Vec::new();
    for c in &all {
        let shown = format!(
            "{} {}",
            c.bin,
            c.args
                .iter()
                .map(|a| format!("{:?}", a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let shown: String = shown.chars().take(200).collect();
        let out = integration::command(c.package, c.bin)
            .args(&c.args)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() || out.status.code().is_none() {
            problems.push(format!(
                "{shown}: status {:?} (must fail with an exit code; no code means a signal or the 20 s timeout)",
                out.status
            ));
        }
        if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
            let head: String = text.chars().take(400).collect();
            problems.push(format!("{shown}: panicked:\n{head}"));
        }
        if !text.contains(&c.names) {
            let head: String = text.chars().take(400).collect();
            problems.push(format!(
                "{shown}: output does not name {:?}:\n{head}",
                c.names
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} hostile invocations misbehaved:\n{}",
        problems.len(),
        all.len(),
        problems.join("\n")
    );
}
