//! The systemd units in packaging/systemd: what the service promises
//! (foreground, restart on failure, network-online, capabilities, reload by
//! SIGHUP after a check) and, where `systemd-analyze` exists, that systemd
//! accepts them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .join(name)
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(unit_path(name)).unwrap()
}

/// Values of `key=` lines (comments excluded), in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn one<'a>(text: &'a str, key: &str) -> &'a str {
    let v = values(text, key);
    assert_eq!(v.len(), 1, "{key}= given {} times", v.len());
    v[0]
}

#[test]
fn both_units_keep_their_promises() {
    for name in ["knockd.service", "knockd@.service"] {
        let u = unit(name);
        let ctx = |what: &str| format!("{name}: {what}");
        assert_eq!(one(&u, "Type"), "simple", "{}", ctx("Type"));
        let start = one(&u, "ExecStart");
        assert!(start.starts_with("/usr/sbin/knockd "), "{}", ctx(start));
        for forbidden in [" -d", "--daemon"] {
            assert!(!start.contains(forbidden), "{}", ctx("runs in background"));
        }
        assert_eq!(one(&u, "Restart"), "on-failure", "{}", ctx("Restart"));
        assert_eq!(one(&u, "Wants"), "network-online.target");
        assert_eq!(one(&u, "After"), "network-online.target");
        let reload = values(&u, "ExecReload");
        assert_eq!(reload.len(), 2, "{}", ctx("ExecReload"));
        assert!(reload[0].starts_with("/usr/sbin/knockd --check"));
        assert_eq!(reload[1], "/bin/kill -HUP $MAINPID");
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let caps: Vec<&str> = one(&u, key).split_whitespace().collect();
            assert!(caps.contains(&"CAP_NET_RAW"), "{}", ctx(key));
            assert!(caps.contains(&"CAP_NET_ADMIN"), "{}", ctx(key));
        }
        // /run (iptables' lock), /etc (ufw, one-time files) and /var/log
        // must stay writable for the commands.
        assert_eq!(one(&u, "ProtectSystem"), "true", "{}", ctx("ProtectSystem"));
        let families = one(&u, "RestrictAddressFamilies");
        for af in ["AF_PACKET", "AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"] {
            assert!(families.contains(af), "{}", ctx(af));
        }
        assert_eq!(one(&u, "KillMode"), "mixed", "{}", ctx("KillMode"));
        assert_eq!(one(&u, "WantedBy"), "multi-user.target");
    }
    let template = unit("knockd@.service");
    assert!(one(&template, "ExecStart").contains("-i %i"));
}

#[test]
fn systemd_accepts_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze is not installed; units not verified");
        return;
    }
    // Verify copies that point at an executable that exists everywhere.
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, as_name) in [
        ("knockd.service", "knockd.service"),
        ("knockd@.service", "knockd@.service"),
        ("knockd@.service", "knockd@lo.service"),
    ] {
        let text = unit(name).replace("/usr/sbin/knockd", "/bin/true");
        let path = dir.path().join(as_name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&files[0])
        .arg(&files[2])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // And it does reject a broken unit, so the check above means something.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        unit("knockd.service").replace("/usr/sbin/knockd", "/nonexistent/knockd"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a missing binary went unnoticed");
}
