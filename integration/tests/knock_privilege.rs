//! `knock` gives up its raw-socket privilege once the sockets are open:
//! under sudo (real user root, `SUDO_UID` set) it becomes the invoking
//! user, as a setuid binary the real user, with file capabilities it
//! clears them. Each test watches a
//! running `knock` through `/proc` between two hits (`-d`), after the
//! first hit arrived, and checks that a FIN hit (which only a raw socket
//! can send) still went out. Needs root to set the scene (a process with
//! CAP_NET_RAW as another user); as another user the tests say so and
//! return. All traffic goes to 127.0.0.1 only.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `nobody` on Debian.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    ($name:expr) => {
        if !is_root() {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "\nSKIPPED {}: needs root to start knock with privilege as another user\n",
                    $name
                )
                .as_bytes(),
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true: a skipped privilege test is a failure");
            }
            return;
        }
    };
}

/// A UDP socket on loopback that knocks can be aimed at.
type Target = integration::UdpTarget;

/// The `Name:` line of `/proc/PID/status`, whitespace-normalised.
fn status_field(pid: u32, name: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A directory everyone may enter, with a file owned by `owner`.
fn shared_file(dir: &Path, name: &str, text: &str, owner: u32) -> String {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    chown(&p, Some(owner), Some(owner)).unwrap();
    p.display().to_string()
}

fn target() -> Target {
    Target::new(Duration::from_secs(10))
}

/// `knock` at `bin` started through setpriv with `opts`: a FIN hit on
/// port 1 of 127.0.0.1 (it needs a raw socket), then UDP hits on `a` and
/// `b`, 1.5 s apart; both output streams piped.
fn knock_via_setpriv(opts: &[&str], bin: &Path, a: &Target, b: &Target) -> Child {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("setpriv (util-linux) is installed");
    Command::new(setpriv)
        .args(opts)
        .arg("--")
        .arg(bin)
        .args([
            "-d",
            "1500",
            "127.0.0.1",
            "1:tcp:fin",
            &format!("{}:udp", a.port),
            &format!("{}:udp", b.port),
        ])
        .env_remove("SUDO_UID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The fields of /proc/PID/status of `child` read between its hit on `a`
/// and its hit on `b` (after it opened its sockets, before it exits); then
/// whether it exited with success, and its output.
fn status_between_hits(
    child: Child,
    a: &Target,
    b: &Target,
    fields: &[&str],
) -> (Vec<String>, bool, String) {
    let pid = child.id();
    a.recv();
    let status = fields.iter().map(|f| status_field(pid, f)).collect();
    b.recv();
    let (ok, output) = finish(child);
    (status, ok, output)
}

#[test]
fn under_sudo_knock_becomes_the_invoking_user_after_opening_its_sockets() {
    require_root!("under_sudo_knock_becomes_the_invoking_user_after_opening_its_sockets");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    // The user's own one-time file: knock must still mark it after the drop.
    let otp = shared_file(
        dir.path(),
        "user.otp",
        &format!(" 1:tcp,{}:udp,{}:udp\n", a.port, b.port),
        NOBODY,
    );
    let child = Command::new(integration::binary("knock", "knock"))
        .args(["-d", "1500", "--flags", "fin", "--otp", &otp, "127.0.0.1"])
        .env("SUDO_UID", NOBODY.to_string())
        .env("SUDO_GID", NOBODY.to_string())
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, ok, output) =
        status_between_hits(child, &a, &b, &["Uid", "Gid", "CapPrm", "CapEff"]);
    assert!(ok, "{output}");
    assert_eq!(
        status,
        [
            "65534 65534 65534 65534",
            "65534 65534 65534 65534",
            "0000000000000000",
            "0000000000000000"
        ]
    );
    assert!(
        fs::read_to_string(&otp).unwrap().starts_with('#'),
        "the line is marked used"
    );

    // Root's private file is out of reach once knock is the user.
    let root_otp = shared_file(dir.path(), "root.otp", " 7000\n", 0);
    let (ok, output) = finish(
        Command::new(integration::binary("knock", "knock"))
            .args(["--otp", &root_otp, "127.0.0.1"])
            .env("SUDO_UID", NOBODY.to_string())
            .env("SUDO_GID", NOBODY.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(!ok);
    assert!(
        output.contains(&format!("knock: {root_otp}: Permission denied")),
        "{output}"
    );
    assert_eq!(fs::read_to_string(&root_otp).unwrap(), " 7000\n");

    // A SUDO_UID that is no number is an error, not a reason to stay root.
    let (ok, output) = finish(
        Command::new(integration::binary("knock", "knock"))
            .args(["127.0.0.1", &format!("{}:udp", a.port)])
            .env("SUDO_UID", "bob")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(!ok);
    assert!(output.contains("SUDO_UID=\"bob\""), "{output}");
}

#[test]
fn with_file_capabilities_knock_clears_them_after_opening_its_sockets() {
    require_root!("with_file_capabilities_knock_clears_them_after_opening_its_sockets");
    let (a, b) = (target(), target());
    // As nobody with CAP_NET_RAW (what `setcap cap_net_raw+ep` gives).
    let child = knock_via_setpriv(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw",
            "--ambient-caps=+net_raw",
        ],
        &integration::binary("knock", "knock"),
        &a,
        &b,
    );
    let (status, ok, output) =
        status_between_hits(child, &a, &b, &["CapPrm", "CapEff", "CapAmb", "Uid"]);
    // The FIN hit needs a raw socket: success shows it was opened.
    assert!(ok, "{output}");
    assert_eq!(
        status,
        [
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "65534 65534 65534 65534"
        ]
    );
}

#[test]
fn as_a_setuid_binary_knock_becomes_the_real_user_after_opening_its_sockets() {
    require_root!("as_a_setuid_binary_knock_becomes_the_real_user_after_opening_its_sockets");
    // A setuid-root copy of knock in a directory everyone may enter.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("knock");
    fs::copy(integration::binary("knock", "knock"), &bin).unwrap();
    chown(&bin, Some(0), Some(0)).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    let (a, b) = (target(), target());
    // Run by nobody without any capability; the setuid bit makes it root.
    let child = knock_via_setpriv(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        &bin,
        &a,
        &b,
    );
    let (status, ok, output) = status_between_hits(child, &a, &b, &["Uid", "CapPrm", "CapEff"]);
    // The FIN hit needs a raw socket, opened while still root.
    assert!(ok, "{output}");
    assert_eq!(
        status,
        [
            "65534 65534 65534 65534",
            "0000000000000000",
            "0000000000000000"
        ]
    );
}
