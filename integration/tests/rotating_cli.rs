//! Command-line tests of rotating sequences without root: `knock-gen
//! --secret`, `knockd --check` on `Sequence_Secret` doors, and the Python
//! reference implementation in `contrib/` against the derivation's test vectors.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use integration::{contains_all, mode, refuses, unix_now, Scratch};
use knock_common::rotate::{self, Key, PortRange};
use predicates::prelude::*;

fn knock_gen() -> Command {
    integration::command("knock-gen", "knock-gen")
}

fn knockd() -> Command {
    integration::command("knockd", "knockd")
}

/// `knockd --check -c CONF`.
fn check(conf: &Path) -> assert_cmd::assert::Assert {
    knockd().arg("--check").arg("-c").arg(conf).assert()
}

const VECTOR_KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[test]
fn secret_writes_a_private_32_byte_key_that_loads() {
    let dir = Scratch::new();
    let a = dir.join("a.key");
    let b = dir.join("b.key");
    for p in [&a, &b] {
        knock_gen()
            .arg("--secret")
            .arg("-o")
            .arg(p)
            .assert()
            .success()
            .stderr(predicate::str::contains("32-byte key"));
        assert_eq!(mode(p), 0o600);
    }
    let ka = Key::load(&a).unwrap();
    let kb = Key::load(&b).unwrap();
    assert_eq!(ka.len(), 32);
    assert_ne!(ka, kb, "two runs must give different keys");
    // Nothing but the key file itself: no temporary file left behind.
    assert_eq!(dir.entries(), 2);
    // The key is never printed.
    let text = fs::read_to_string(&a).unwrap();
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(line.len(), 52, "32 bytes are 52 base32 symbols");
}

#[test]
fn secret_never_replaces_a_file_without_force() {
    let dir = Scratch::new();
    let p = dir.file_with_mode("k", "precious\n", 0o644);
    refuses(
        knock_gen().arg("--secret").arg("-o").arg(&p),
        ["already exists"],
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "precious\n");
    knock_gen()
        .args(["--secret", "--force", "-o"])
        .arg(&p)
        .assert()
        .success();
    assert_eq!(Key::load(&p).unwrap().len(), 32);
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn secret_refuses_stdout_and_sequence_options() {
    knock_gen()
        .args(["--secret", "-o", "-"])
        .assert()
        .failure()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("file only"));
    let dir = Scratch::new();
    for extra in [["-n", "5"], ["-k", "4"], ["-p", "udp"]] {
        refuses(
            knock_gen()
                .arg("--secret")
                .args(extra)
                .arg("-o")
                .arg(dir.join("k")),
            ["cannot be used with"],
        );
    }
    assert!(!dir.join("k").exists());
    knock_gen()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("knock-gen --secret -o"));
}

/// A fresh directory holding `door.key`, the test-vector key, with
/// permission bits `mode`; and the door line naming it as the secret.
fn keyed_dir(mode: u32) -> (Scratch, PathBuf, String) {
    let dir = Scratch::new();
    let key = dir.file_with_mode("door.key", format!("# test key\n{VECTOR_KEY}\n"), mode);
    let secret = format!("    Sequence_Secret = {}\n", key.display());
    (dir, key, secret)
}

/// `knockd.conf` in `dir`: a log file, then door `[ssh]` with `door_lines`
/// (line 5 on) and a command.
fn write_conf(dir: &Scratch, door_lines: &str) -> PathBuf {
    dir.file_with_mode(
        "knockd.conf",
        format!(
            "[options]\n    LogFile = {}\n\n[ssh]\n{door_lines}    Command = /bin/true %IP%\n",
            dir.join("log").display()
        ),
        0o644,
    )
}

#[test]
fn check_describes_a_rotating_door_without_key_or_ports() {
    let (dir, _key, secret) = keyed_dir(0o600);
    let conf = write_conf(
        &dir,
        &format!(
            "{secret}    Sequence_Length = 4\n    Sequence_Ports = 20000-29999\n    Sequence_Protocol = udp\n"
        ),
    );
    let out = check(&conf).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("rotating"), "{stdout}");
    assert!(stdout.contains("20000-29999"), "{stdout}");
    assert!(!stdout.contains("JBSW"), "{stdout}");
    // None of the ports of the windows around now appears.
    let k = Key::parse(VECTOR_KEY).unwrap();
    let t = rotate::window(unix_now(), 30);
    for w in t - 1..=t + 1 {
        for p in rotate::derive(&k, "ssh", w, 4, PortRange::new(20000, 29999).unwrap(), None) {
            assert!(!stdout.contains(&p.to_string()), "port {p} shown: {stdout}");
        }
    }
}

#[test]
fn check_refuses_a_key_file_others_can_read() {
    let (dir, _key, secret) = keyed_dir(0o644);
    check(&write_conf(&dir, &secret))
        .failure()
        .stderr(contains_all(["knockd.conf:5", "group or others"]))
        .stderr(predicate::str::contains("JBSW").not());
}

#[test]
fn rotating_directive_errors_name_file_and_line() {
    let (dir, _key, secret) = keyed_dir(0o600);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{secret}    Sequence = 1,2,3\n"),
            "knockd.conf:6",
            "Sequence",
        ),
        (
            format!("{secret}    One_Time_Sequences = /tmp/x\n"),
            "knockd.conf:6",
            "One_Time_Sequences",
        ),
        (
            format!("{secret}    Sequence_Length = 0\n"),
            "knockd.conf:6",
            "\"0\"",
        ),
        (
            format!("{secret}    Sequence_Length = 17\n"),
            "knockd.conf:6",
            "\"17\"",
        ),
        (
            format!("{secret}    Sequence_Ports = 5000-5001\n    Sequence_Length = 3\n"),
            "knockd.conf:7",
            "5000-5001",
        ),
        (
            format!("{secret}    Sequence_Period = 0\n"),
            "knockd.conf:6",
            "\"0\"",
        ),
        (
            format!("{secret}    Sequence_Period = x\n"),
            "knockd.conf:6",
            "\"x\"",
        ),
        (
            format!("{secret}    Sequence_Skew = 11\n"),
            "knockd.conf:6",
            "\"11\"",
        ),
        (
            format!("{secret}    Sequence_Ports = 0-10\n"),
            "knockd.conf:6",
            "0-10",
        ),
        (
            format!("{secret}    Sequence_Ports = 9-5\n"),
            "knockd.conf:6",
            "9-5",
        ),
        (
            format!("{secret}    Sequence_Protocol = icmp\n"),
            "knockd.conf:6",
            "icmp",
        ),
        (
            format!("{secret}    Sequence_Bind_Source = maybe\n"),
            "knockd.conf:6",
            "maybe",
        ),
        (
            "    Sequence_Length = 4\n".to_string(),
            "knockd.conf:5",
            "Sequence_Secret",
        ),
        (
            format!("    Sequence_Secret = {}\n", dir.join("missing").display()),
            "knockd.conf:5",
            "missing",
        ),
    ];
    for (lines, at, what) in cases {
        check(&write_conf(&dir, &lines))
            .failure()
            .stderr(contains_all([at, what]));
    }
}

/// door, window, length, range, bound address, ports.
type Vector = (
    &'static str,
    u64,
    usize,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// The Python reference implementation computes the derivation's test vectors.
#[test]
fn contrib_reference_matches_the_spec_vectors() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/knock_rotate.py");
    let (_dir, key, _secret) = keyed_dir(0o600);
    let vectors: [Vector; 5] = [
        ("ssh", 0, 3, "1024-65535", None, "41210,51433,26957"),
        (
            "ssh",
            59000000,
            4,
            "20000-29999",
            None,
            "20695,20353,27983,27106",
        ),
        (
            "ssh",
            59000000,
            4,
            "20000-29999",
            Some("192.0.2.7"),
            "29276,28375,22760,22819",
        ),
        (
            "ssh",
            59000000,
            4,
            "20000-29999",
            Some("2001:db8::7"),
            "23224,28813,23929,26672",
        ),
        (
            "web",
            1,
            8,
            "7000-7009",
            None,
            "7005,7003,7009,7000,7002,7008,7006,7001",
        ),
    ];
    for (door, t, length, range, bind, want) in vectors {
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(&key)
            .arg(door)
            .args(["--window", &t.to_string()])
            .args(["--length", &length.to_string()])
            .args(["--ports", range]);
        if let Some(b) = bind {
            cmd.args(["--source-address", b]);
        }
        cmd.assert().success().stdout(format!("{want}\n"));
    }
    // And the current window by default, agreeing with the Rust derivation
    // (retried once should the window change between the two computations).
    let k = Key::parse(VECTOR_KEY).unwrap();
    let mut agreed = false;
    for _ in 0..2 {
        let t0 = rotate::window(unix_now(), 30);
        let out = Command::new("python3")
            .arg(&script)
            .arg(&key)
            .arg("ssh")
            .output()
            .unwrap();
        let t1 = rotate::window(unix_now(), 30);
        if t0 != t1 {
            continue;
        }
        let want: Vec<String> = rotate::derive(&k, "ssh", t0, 3, rotate::DEFAULT_RANGE, None)
            .iter()
            .map(u16::to_string)
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n", want.join(","))
        );
        agreed = true;
        break;
    }
    assert!(agreed, "the window changed during both attempts");
}
