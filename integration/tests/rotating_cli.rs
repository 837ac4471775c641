//! Command-line tests of rotating sequences without root: `knock-gen
//! --secret`, `knockd --check` on `Sequence_Secret` doors, and the Python
//! reference implementation in `contrib/` against the derivation's test vectors.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use knock_common::rotate::{self, Key, PortRange};
use predicates::prelude::*;

fn knock_gen() -> Command {
    integration::command("knock-gen", "knock-gen")
}

fn knockd() -> Command {
    integration::command("knockd", "knockd")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const VECTOR_KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[test]
fn secret_writes_a_private_32_byte_key_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.key");
    let b = dir.path().join("b.key");
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
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    // The key is never printed.
    let text = fs::read_to_string(&a).unwrap();
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(line.len(), 52, "32 bytes are 52 base32 symbols");
}

#[test]
fn secret_never_replaces_a_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k");
    fs::write(&p, "precious\n").unwrap();
    knock_gen()
        .arg("--secret")
        .arg("-o")
        .arg(&p)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
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
    let dir = tempfile::tempdir().unwrap();
    for extra in [["-n", "5"], ["-k", "4"], ["-p", "udp"]] {
        knock_gen()
            .arg("--secret")
            .args(extra)
            .arg("-o")
            .arg(dir.path().join("k"))
            .assert()
            .failure()
            .stderr(predicate::str::contains("cannot be used with"));
    }
    assert!(!dir.path().join("k").exists());
    knock_gen()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("knock-gen --secret -o"));
}

fn write_key(dir: &Path, mode: u32) -> PathBuf {
    let p = dir.join("door.key");
    fs::write(&p, format!("# test key\n{VECTOR_KEY}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn write_conf(dir: &Path, door_lines: &str) -> PathBuf {
    let conf = dir.join("knockd.conf");
    fs::write(
        &conf,
        format!(
            "[options]\n    LogFile = {}\n\n[ssh]\n{door_lines}    Command = /bin/true %IP%\n",
            dir.join("log").display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn check_describes_a_rotating_door_without_key_or_ports() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), 0o600);
    let conf = write_conf(
        dir.path(),
        &format!(
            "    Sequence_Secret = {}\n    Sequence_Length = 4\n    Sequence_Ports = 20000-29999\n    Sequence_Protocol = udp\n",
            key.display()
        ),
    );
    let out = knockd()
        .arg("--check")
        .arg("-c")
        .arg(&conf)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("rotating"), "{stdout}");
    assert!(stdout.contains("20000-29999"), "{stdout}");
    assert!(!stdout.contains("JBSW"), "{stdout}");
    // None of the ports of the windows around now appears.
    let k = Key::parse(VECTOR_KEY).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = rotate::window(now, 30);
    for w in t - 1..=t + 1 {
        for p in rotate::derive(&k, "ssh", w, 4, PortRange::new(20000, 29999).unwrap(), None) {
            assert!(!stdout.contains(&p.to_string()), "port {p} shown: {stdout}");
        }
    }
}

#[test]
fn check_refuses_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), 0o644);
    let conf = write_conf(
        dir.path(),
        &format!("    Sequence_Secret = {}\n", key.display()),
    );
    knockd()
        .arg("--check")
        .arg("-c")
        .arg(&conf)
        .assert()
        .failure()
        .stderr(predicate::str::contains("knockd.conf:5"))
        .stderr(predicate::str::contains("group or others"))
        .stderr(predicate::str::contains("JBSW").not());
}

#[test]
fn rotating_directive_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), 0o600);
    let secret = format!("    Sequence_Secret = {}\n", key.display());
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
            format!(
                "    Sequence_Secret = {}\n",
                dir.path().join("missing").display()
            ),
            "knockd.conf:5",
            "missing",
        ),
    ];
    for (lines, at, what) in cases {
        let conf = write_conf(dir.path(), &lines);
        knockd()
            .arg("--check")
            .arg("-c")
            .arg(&conf)
            .assert()
            .failure()
            .stderr(predicate::str::contains(at))
            .stderr(predicate::str::contains(what));
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
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), 0o600);
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
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let t0 = rotate::window(now(), 30);
        let out = Command::new("python3")
            .arg(&script)
            .arg(&key)
            .arg("ssh")
            .output()
            .unwrap();
        let t1 = rotate::window(now(), 30);
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
