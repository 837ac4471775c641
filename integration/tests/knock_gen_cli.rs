//! Command-line tests of `knock-gen`: the files it writes, how it refuses
//! and reports bad requests, and that `knockd --check` accepts its output.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use integration::{contains_all, mode, refuses, Scratch};
use knock_common::otp::all_sequences_bytes;
use knock_common::{Proto, Sequence};
use predicates::prelude::*;

fn knock_gen() -> Command {
    integration::command("knock-gen", "knock-gen")
}

/// `knock-gen -n 2 --append -o PATH` fails naming PATH and saying `reason`.
fn append_is_refused(path: &Path, reason: &str) {
    refuses(
        knock_gen().args(["-n", "2", "--append", "-o"]).arg(path),
        [&path.display().to_string(), reason],
    );
}

/// What every generated file must satisfy.
struct Expect {
    count: usize,
    length: usize,
    low: u16,
    high: u16,
    excluded: Vec<(u16, u16)>,
    proto: Option<Proto>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            count: 20,
            length: 3,
            low: 1024,
            high: 65535,
            excluded: Vec::new(),
            proto: Some(Proto::Tcp),
        }
    }
}

impl Expect {
    /// `count` sequences of the defaults.
    fn count(count: usize) -> Expect {
        Expect {
            count,
            ..Expect::default()
        }
    }

    /// `count` tcp sequences of `length` ports in `low..=high`.
    fn ports(count: usize, length: usize, low: u16, high: u16) -> Expect {
        Expect {
            count,
            length,
            low,
            high,
            ..Expect::default()
        }
    }
}

/// Check every line of `text` and return the sequences.
fn check_lines(text: &str, want: &Expect) -> Vec<Sequence> {
    assert!(text.ends_with('\n'), "no final newline: {text:?}");
    let mut seqs = Vec::new();
    for line in text.lines() {
        assert!(
            line.starts_with(' '),
            "line without leading space: {line:?}"
        );
        assert!(
            !line.starts_with("  "),
            "line with two leading spaces: {line:?}"
        );
        let seq: Sequence = line
            .parse()
            .unwrap_or_else(|e| panic!("line {line:?} does not parse: {e}"));
        assert_eq!(seq.len(), want.length, "{line:?}");
        let mut ports = HashSet::new();
        for k in &seq {
            assert!(
                (want.low..=want.high).contains(&k.port),
                "port {} out of {}-{} in {line:?}",
                k.port,
                want.low,
                want.high
            );
            for &(lo, hi) in &want.excluded {
                assert!(
                    !(lo..=hi).contains(&k.port),
                    "excluded port {} in {line:?}",
                    k.port
                );
            }
            if let Some(p) = want.proto {
                assert_eq!(k.proto, p, "{line:?}");
            }
            assert!(ports.insert(k.port), "port {} repeats in {line:?}", k.port);
        }
        seqs.push(seq);
    }
    assert_eq!(seqs.len(), want.count, "{text}");
    let distinct: HashSet<&Sequence> = seqs.iter().collect();
    assert_eq!(distinct.len(), seqs.len(), "a sequence repeats:\n{text}");
    seqs
}

/// [`check_lines`] on the file at `path`.
fn check_file(path: &Path, want: &Expect) -> Vec<Sequence> {
    check_lines(&fs::read_to_string(path).unwrap(), want)
}

/// [`check_lines`] on the standard output of a successful `out`.
fn check_stdout(out: std::process::Output, want: &Expect) -> Vec<Sequence> {
    assert!(out.status.success(), "{out:?}");
    check_lines(&String::from_utf8(out.stdout).unwrap(), want)
}

#[test]
fn default_file_is_private_and_well_formed() {
    let dir = Scratch::new();
    let path = dir.join("seqs");
    knock_gen()
        .arg("-o")
        .arg(&path)
        .assert()
        .success()
        .stdout("")
        .stderr(contains_all(["20 sequences", "seqs"]));
    assert_eq!(mode(&path), 0o600);
    check_file(&path, &Expect::default());
    // Nothing else (no temporary file) left in the directory.
    assert_eq!(dir.entries(), 1);
}

#[test]
fn two_runs_give_different_files() {
    let a = knock_gen().args(["-o", "-"]).output().unwrap();
    let b = knock_gen().args(["-o", "-"]).output().unwrap();
    assert!(a.status.success() && b.status.success());
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn options_are_honoured() {
    let dir = Scratch::new();
    let path = dir.join("mixed");
    knock_gen()
        .args(["-n", "40", "-k", "5", "--ports", "2000-2100"])
        .args([
            "--exclude",
            "2010-2050",
            "--exclude",
            "2001,2003",
            "-p",
            "mixed",
        ])
        .arg("--output")
        .arg(&path)
        .assert()
        .success();
    let seqs = check_file(
        &path,
        &Expect {
            count: 40,
            length: 5,
            low: 2000,
            high: 2100,
            excluded: vec![(2010, 2050), (2001, 2001), (2003, 2003)],
            proto: None,
        },
    );
    let protos: HashSet<Proto> = seqs
        .iter()
        .flat_map(|s| s.iter().map(|k| k.proto))
        .collect();
    assert_eq!(protos.len(), 2, "200 mixed hits should use both protocols");

    let path = dir.join("udp");
    knock_gen()
        .args([
            "--count",
            "7",
            "--length",
            "2",
            "--protocol",
            "udp",
            "--ports",
            "40000-40009",
        ])
        .arg("-o")
        .arg(&path)
        .assert()
        .success();
    check_file(
        &path,
        &Expect {
            count: 7,
            length: 2,
            low: 40000,
            high: 40009,
            excluded: vec![],
            proto: Some(Proto::Udp),
        },
    );
}

#[test]
fn the_whole_space_can_be_used() {
    // 3 ports, 3 hits: exactly 6 sequences exist; all of them come out.
    let out = knock_gen()
        .args(["-n", "6", "-k", "3", "--ports", "7000-7002", "-o", "-"])
        .output()
        .unwrap();
    check_stdout(out, &Expect::ports(6, 3, 7000, 7002));
}

#[test]
fn existing_file_is_kept_without_force_and_replaced_with_it() {
    let dir = Scratch::new();
    let path = dir.file_with_mode("seqs", b"#1000,2000\n 3000,4000\n", 0o644);
    refuses(
        knock_gen().arg("-o").arg(&path),
        [path.to_str().unwrap(), "--force", "--append"],
    );
    assert_eq!(fs::read(&path).unwrap(), b"#1000,2000\n 3000,4000\n");

    knock_gen()
        .args(["--force", "-n", "5", "-o"])
        .arg(&path)
        .assert()
        .success();
    check_file(&path, &Expect::count(5));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(dir.entries(), 1);
}

#[test]
fn output_that_is_a_directory_or_in_a_missing_directory_is_an_error() {
    let dir = Scratch::new();
    refuses(
        knock_gen().arg("-o").arg(dir.path()).arg("--force"),
        [dir.path().to_str().unwrap()],
    );
    refuses(knock_gen().arg("-o").arg(dir.join("nope/seqs")), ["nope"]);
    assert_eq!(dir.entries(), 0);
}

#[test]
fn append_keeps_old_lines_byte_for_byte_and_never_repeats_one() {
    let dir = Scratch::new();
    // Ports 5000-5003, 2 hits, tcp: 12 possible sequences. The file holds a
    // used one, an unused one, a comment and no final newline.
    let old: &[u8] = b"#5000:tcp,5001:tcp\n# spare sequences\n 5002:tcp,5003:tcp";
    let path = dir.file("seqs", old);
    let args = ["-k", "2", "--ports", "5000-5003", "--append", "-o"];
    knock_gen()
        .args(["-n", "6"])
        .args(args)
        .arg(&path)
        .assert()
        .success()
        .stderr(predicate::str::contains("7 usable"));
    let after = fs::read(&path).unwrap();
    assert_eq!(&after[..old.len()], old);
    assert_eq!(after[old.len()], b'\n');
    let new_text = std::str::from_utf8(&after[old.len() + 1..]).unwrap();
    let new = check_lines(new_text, &Expect::ports(6, 2, 5000, 5003));
    let all = all_sequences_bytes(&after);
    assert_eq!(all.len(), 8);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        8,
        "a repeat in the file"
    );
    assert!(!new.contains(&"5000,5001".parse().unwrap()));
    assert!(!new.contains(&"5002,5003".parse().unwrap()));

    // 8 of 12 are in the file: 4 more fit, 5 do not.
    refuses(
        knock_gen().args(["-n", "5"]).args(args).arg(&path),
        ["--count 5", "12"],
    );
    assert_eq!(fs::read(&path).unwrap(), after);
    knock_gen()
        .args(["-n", "4"])
        .args(args)
        .arg(&path)
        .assert()
        .success();
    let full = fs::read(&path).unwrap();
    assert_eq!(&full[..after.len()], &after[..]);
    let all = all_sequences_bytes(&full);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 12);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn append_to_a_missing_file_creates_it_private() {
    let dir = Scratch::new();
    let path = dir.join("new-seqs");
    knock_gen()
        .args(["-n", "3", "-a", "-o"])
        .arg(&path)
        .assert()
        .success();
    assert_eq!(mode(&path), 0o600);
    check_file(&path, &Expect::count(3));
}

#[test]
fn append_warns_about_a_file_others_can_read() {
    let dir = Scratch::new();
    let path = dir.file_with_mode("seqs", b" 1000:tcp\n", 0o644);
    knock_gen()
        .args(["-n", "1", "-a", "-o"])
        .arg(&path)
        .assert()
        .success()
        .stderr(predicate::str::contains("0644"));
}

#[test]
fn stdout_mode_writes_only_to_stdout() {
    let dir = Scratch::new();
    let out = knock_gen()
        .current_dir(dir.path())
        .args(["-n", "5", "-o", "-"])
        .output()
        .unwrap();
    check_stdout(out, &Expect::count(5));
    assert_eq!(dir.entries(), 0);
}

#[test]
fn every_error_exits_non_zero_naming_the_bad_value() {
    // (arguments as typed, separated by spaces; the text the message must
    // contain, naming the bad value)
    let cases: &[(&str, &str)] = &[
        ("-n 0", "--count 0"),
        ("-n abc", "abc"),
        ("-n -3", "-3"),
        ("-n 1000001", "1000001"),
        ("-k 0", "--length 0"),
        ("-k 5 --ports 100-103", "--length 5"),
        ("-k 4 --ports 100-105 --exclude 101-103", "--length 4"),
        ("-k 1 --ports 100-105 -x 100-105", "100-105"),
        ("-n 7 -k 2 --ports 1-3", "--count 7"),
        ("-n 9 -k 1 --ports 1-4 -p mixed", "--count 9"),
        ("--ports 2000-1000", "2000-1000"),
        ("--ports 0-100", "\"0\""),
        ("--ports 1-70000", "70000"),
        ("--ports 80x", "80x"),
        ("--exclude 22,abc", "abc"),
        ("--exclude 22,,80", "22,,80"),
        ("--exclude 90-80", "90-80"),
        ("-p icmp", "icmp"),
        ("-n -1", "-1"),
        ("-n 99999999999999999999", "99999999999999999999"),
        ("-n 4000000000", "4000000000"),
        ("-k 70000", "70000"),
        ("--ports 5-1", "5-1"),
        ("--ports 0-10", "\"0\""),
        ("--ports 1-65536", "65536"),
        ("--ports -", "'-'"),
        ("-x 80x", "80x"),
        ("-x 1-", "1-"),
        ("-p sctp", "sctp"),
        ("-k 5 --ports 1-3", "1-3"),
        ("-n 1000 -k 1 --ports 1-10", "--count 1000"),
    ];
    let dir = Scratch::new();
    let path = dir.join("seqs");
    for (args, needle) in cases {
        let out = knock_gen()
            .args(args.split(' '))
            .arg("-o")
            .arg(&path)
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problems = integration::refusal_problems(&out, 20, needle);
        assert!(problems.is_empty(), "{args:?}: {problems:?}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(!path.exists(), "{args:?} created the file");
    }
    for args in [
        &["-o", "-", "--append"][..],
        &["-o", "x", "--append", "--force"],
        &[],
    ] {
        knock_gen()
            .current_dir(dir.path())
            .args(args)
            .assert()
            .failure()
            .stderr(predicate::str::is_empty().not());
    }
    assert_eq!(dir.entries(), 0);
}

#[test]
fn help_teaches_pairing_and_version_works() {
    for (flag, needles) in [
        (
            "--help",
            &[
                "One_Time_Sequences",
                "knock --otp",
                "--append",
                "--force",
                "--exclude",
                "-o -",
            ][..],
        ),
        ("-h", &["Usage"]),
        ("--version", &["knock-gen"]),
    ] {
        knock_gen()
            .arg(flag)
            .assert()
            .success()
            .stdout(contains_all(needles));
    }
}

#[test]
fn knockd_check_accepts_a_generated_file() {
    let dir = Scratch::new();
    let seqs = dir.join("seqs");
    knock_gen()
        .args(["-n", "37", "-p", "mixed", "-o"])
        .arg(&seqs)
        .assert()
        .success();
    let text = fs::read_to_string(&seqs).unwrap();
    let first = text.lines().next().unwrap().trim();
    let conf = dir.file(
        "knockd.conf",
        format!(
            "[options]\n\
             \x20   LogFile = {log}\n\
             \n\
             [oneTime]\n\
             \x20   One_Time_Sequences = {seqs}\n\
             \x20   Seq_Timeout = 10\n\
             \x20   Command = /bin/true %IP%\n\
             \n\
             [fixed]\n\
             \x20   Sequence = {first}\n\
             \x20   Command = /bin/true %IP%\n",
            log = dir.join("knockd.log").display(),
            seqs = seqs.display(),
        ),
    );
    let out = Command::new(integration::binary("knockd", "knockd"))
        .arg("--check")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "knockd --check rejected the generated file:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // The number of usable sequences, as a number of its own (the paths,
    // which may contain digits, taken out).
    let dir_text = dir.path().display().to_string();
    let reported = format!("{stdout}\n{stderr}").replace(&dir_text, "");
    assert!(
        reported
            .split(|c: char| !c.is_ascii_digit())
            .any(|n| n == "37"),
        "knockd --check does not report the 37 usable sequences:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Checking marks nothing used.
    assert_eq!(fs::read_to_string(&seqs).unwrap(), text);
}

#[test]
fn append_through_a_symlink_of_another_user_is_refused_and_the_target_untouched() {
    integration::skip_unless_root!("needs root to give a link to nobody");
    let dir = Scratch::new();
    let target = dir.file("root-only", b"root's file\n");
    let link = dir.join("seqs");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    append_is_refused(&link, "symbolic link owned by uid 65534");
    assert_eq!(fs::read(&target).unwrap(), b"root's file\n");
}

#[test]
fn append_to_a_file_of_another_user_is_refused() {
    integration::skip_unless_root!("needs root to give a file to nobody");
    let dir = Scratch::new();
    let path = dir.file("seqs", b" 1000:tcp\n");
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    append_is_refused(&path, "owned by uid 65534");
    assert_eq!(fs::read(&path).unwrap(), b" 1000:tcp\n");
}
