//! Every example configuration shipped with the suite (`examples/*.conf` and
//! the Debian package's default `/etc/knockd.conf`) passes `knockd --check`
//! without warnings, except the one-time sequence file an example refers to
//! not existing on the build machine.

use std::path::{Path, PathBuf};

use integration::Scratch;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Example `name` with `from` replaced by `to`, written as `name` in `dir`.
fn edited_example(dir: &Scratch, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples").join(name)).unwrap();
    assert!(text.contains(from), "examples/{name} holds no {from:?}");
    dir.file_with_mode(name, text.replace(from, to), 0o644)
}

/// The example files, sorted.
fn examples() -> Vec<PathBuf> {
    let dir = root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

/// Run `knockd -i lo --check --show-secrets -c FILE`; returns (stdout,
/// stderr) after asserting success. `-i lo`: the interface exists
/// everywhere.
fn check(path: &Path) -> (String, String) {
    let out = integration::command("knockd", "knockd")
        .args(["-i", "lo", "--check", "--show-secrets", "-c"])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "knockd --check -c {} failed ({}):\n{stderr}",
        path.display(),
        out.status
    );
    (stdout, stderr)
}

/// Warnings other than a one-time sequence file that does not exist here.
fn unexpected_warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(l.contains("cannot read its one-time sequence file")
                && l.contains("No such file or directory"))
        })
        .collect()
}

/// The number of `[door]` sections in a file (every section but [options]).
fn doors_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('[') && !l.eq_ignore_ascii_case("[options]"))
        .count()
}

#[test]
fn the_promised_examples_exist() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "ssh-nftables.conf",
        "ssh-iptables.conf",
        "firewalld.conf",
        "open-close.conf",
        "start-stop-timeout.conf",
        "one-time.conf",
        "ipv6.conf",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "examples/{want} is missing"
        );
    }
}

#[test]
fn every_example_passes_the_check() {
    let mut files = examples();
    files.push(root().join("packaging/debian/knockd.conf"));
    for path in files {
        let (stdout, stderr) = check(&path);
        let doors = doors_in(&path);
        let plural = if doors == 1 { "" } else { "s" };
        assert!(
            stdout.contains(&format!("configuration OK, {doors} door{plural}")),
            "{}: expected {doors} door{plural}:\n{stdout}",
            path.display()
        );
        let unexpected = unexpected_warnings(&stderr);
        assert!(
            unexpected.is_empty(),
            "{}: unexpected warnings:\n{}",
            path.display(),
            unexpected.join("\n")
        );
    }
}

#[test]
fn the_one_time_example_works_once_its_file_exists() {
    // The same door with its file present: the check reports the sequences
    // and has nothing to warn about.
    let dir = Scratch::new();
    let seqs = dir.file_with_mode(
        "ssh.seqs",
        " 7001:tcp,7002:udp,7003:tcp\n 7004:tcp,7005:tcp,7006:tcp\n",
        0o644,
    );
    let conf = edited_example(
        &dir,
        "one-time.conf",
        "/etc/knockd/ssh.seqs",
        seqs.to_str().unwrap(),
    );
    let (stdout, stderr) = check(&conf);
    assert!(stderr.trim().is_empty(), "warnings:\n{stderr}");
    assert!(stdout.contains("7001:tcp,7002:udp,7003:tcp"), "{stdout}");
}

#[test]
fn a_broken_example_would_be_caught() {
    // The check this file relies on does fail on a bad port, naming it.
    let dir = Scratch::new();
    let conf = edited_example(&dir, "ssh-nftables.conf", "7000,8000:udp", "7000,80x:udp");
    let out = integration::command("knockd", "knockd")
        .args(["-i", "lo", "--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("80x"), "{stderr}");
}
