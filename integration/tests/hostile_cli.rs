//! Hostile command lines and files for all three programs: every one must
//! end with a non-zero status and a message that names the bad value, and
//! none may panic or hang. Nothing here is sent over the network (every
//! case fails before a packet would be sent) and no root is needed.
//! `knock-gen`'s bad option values are in one table of their own, with the
//! same checks, in `knock_gen_cli.rs`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

/// One hostile invocation: program (each program is the binary of the
/// package of its name), arguments, and a text the output must contain
/// (the bad value, named).
struct Case {
    bin: &'static str,
    args: Vec<OsString>,
    names: String,
}

fn case(bin: &'static str, args: &[&str], names: &str) -> Case {
    Case {
        bin,
        args: args.iter().map(OsString::from).collect(),
        names: names.to_owned(),
    }
}

/// The cases of program `bin`, each (arguments, text the output must
/// contain), added to `v`.
fn add(v: &mut Vec<Case>, bin: &'static str, list: &[(&[&str], &str)]) {
    v.extend(list.iter().map(|(args, names)| case(bin, args, names)));
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
    let mut v = Vec::new();
    // knockd: options
    add(
        &mut v,
        "knockd",
        &[
            (&["--bogus"], "--bogus"),
            (&["-i", &long_if, "-t"], &long_if),
            (&["-i", "a/b", "-t"], "a/b"),
            (&["-i", "", "-t"], "empty"),
            (&["-c", "/nonexistent/k.conf", "-t"], "/nonexistent/k.conf"),
            (&["-c", "/", "-t"], "directory"),
        ],
    );
    // knockd: hostile configuration files, checked (`-t -c FILE`)
    for (file, names) in [
        ("garbage", "UTF-8"),
        ("nul.conf", "nul.conf:1"),
        ("bad-values.conf", "\"80x\""),
        ("range.conf", "range.conf:2: port \"70000\""),
        ("bad-values.conf", "300.1.1.1"),
        ("bad-values.conf", "18446744073709551616"),
        ("huge-line.conf", "huge-line.conf:4"),
        ("loop", "loop"),
        ("zero", "writable by group or others"),
    ] {
        v.push(case("knockd", &["-t", "-c", &f(file)], names));
    }
    // Fails at the capture (no such interface, or no privilege).
    v.push(case(
        "knockd",
        &["-i", "nosuchif0", "-c", &f("ok.conf"), "-g", &f("k.log")],
        "nosuchif0",
    ));
    // knock: ports, protocols, flags, delay, files, hosts
    add(
        &mut v,
        "knock",
        &[
            (&["127.0.0.1", "0"], "\"0\""),
            (&["127.0.0.1", "65536"], "\"65536\""),
            (&["127.0.0.1", "--", "-1"], "\"-1\""),
            (
                &["127.0.0.1", "99999999999999999999"],
                "99999999999999999999",
            ),
            (&["127.0.0.1", "1:sctp"], "sctp"),
            (&["127.0.0.1", "1:tcp:bogus"], "bogus"),
            (&["127.0.0.1", "1:tcp:syn:x"], "syn:x"),
            (&["127.0.0.1", "::"], "::"),
            (&["127.0.0.1", "1,2"], "1,2"),
            (&["-d", "abc", "127.0.0.1", "1"], "abc"),
            (
                &["-d", "99999999999999999999999", "127.0.0.1", "1"],
                "99999999999999999999999",
            ),
            (&["--flags", "", "127.0.0.1", "1"], "empty"),
            (&["--flags", "syn,!syn", "127.0.0.1", "1"], "syn"),
            (&["-4", "-6", "127.0.0.1", "1"], "--ipv6"),
            (&["-4", "::1", "1"], "::1"),
            (&["fe80::1", "1"], "fe80::1"),
            (&["", "1"], "\"\""),
            (&[&long_host, "1"], &long_host),
            (&["127.0.0.1"], "PORT"),
            (&["--otp", "/nonexistent/o", "127.0.0.1"], "/nonexistent/o"),
            (&["--otp", "/", "127.0.0.1"], "/"),
        ],
    );
    // knock: hostile one-time files (`--otp FILE`), named
    for file in ["used.otp", "fifo", "zero", "garbage"] {
        v.push(case("knock", &["--otp", &f(file), "127.0.0.1"], file));
    }
    // knock-gen: hostile files to append to, named
    for file in ["fifo", "zero"] {
        v.push(case("knock-gen", &["--append", "-o", &f(file)], file));
    }
    // knock-gen: outputs that cannot be written, and none at all
    add(
        &mut v,
        "knock-gen",
        &[
            (&["-o", "/nonexistent/dir/g"], "/nonexistent/dir"),
            (&["-o", &f("ok.conf")], "ok.conf"),
            (&["-o", "/"], "/"),
            (&["-a", "-o", "/"], "/"),
            (&[], "--output"),
        ],
    );
    // Arguments that are not UTF-8 at all.
    for (bin, args) in [
        ("knockd", &["-c"][..]),
        ("knock", &[]),
        ("knock-gen", &["-o", "-", "-p"]),
    ] {
        let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
        args.push(OsString::from_vec(vec![0xff, 0xfe, b'x']));
        if bin == "knock" {
            args.push(OsString::from("1"));
        }
        v.push(Case {
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
    assert!(all.len() >= 50);
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
        let out = integration::command(c.bin, c.bin)
            .args(&c.args)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        for problem in integration::refusal_problems(&out, 20, &c.names) {
            problems.push(format!("{shown}: {problem}"));
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
