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
    (out.status.success(), integration::output_text(&out))
}

/// `cmd` started with both output streams piped.
fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `knock ARGS` as `sudo` would start it for the user `SUDO_UID`
/// (and `SUDO_GID`, when given).
fn knock_under_sudo(uid: &str, gid: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(integration::binary("knock", "knock"));
    c.args(args).env("SUDO_UID", uid);
    if let Some(gid) = gid {
        c.env("SUDO_GID", gid);
    }
    c
}

/// A directory everyone may enter, with a file owned by `owner`.
fn shared_file(dir: &Path, name: &str, text: &str, owner: u32) -> String {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let p = integration::write_with_mode(&dir.join(name), text, 0o600);
    chown(&p, Some(owner), Some(owner)).unwrap();
    p.display().to_string()
}

fn target() -> Target {
    Target::new(Duration::from_secs(10))
}

/// `knock` at `bin` started through setpriv as nobody (user and group
/// 65534, no supplementary groups) with the capability options `caps`: a
/// FIN hit on port 1 of 127.0.0.1 (it needs a raw socket), then UDP hits on
/// two targets, 1.5 s apart. Asserts [`assert_status_between_hits`] with
/// `want`.
fn nobody_runs_knock(bin: &Path, caps: &[&str], want: &[(&str, &str)]) {
    let (a, b) = (target(), target());
    let setpriv = integration::setpriv().expect("setpriv (util-linux) is installed");
    let child = spawn_piped(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(caps)
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
            .env_remove("SUDO_UID"),
    );
    assert_status_between_hits(child, &a, &b, want);
}

/// `Uid:` or `Gid:` of a process that is nobody (real, effective, saved, fs).
const ALL_NOBODY: &str = "65534 65534 65534 65534";
/// A capability set without any capability.
const NO_CAPS: &str = "0000000000000000";

/// Read between `child`'s hit on `a` and its hit on `b` (after it opened
/// its sockets, before it exits), each field of /proc/PID/status named in
/// `want` has the value given; then `child` exits with success (its first
/// hit, a FIN, needed a raw socket).
fn assert_status_between_hits(child: Child, a: &Target, b: &Target, want: &[(&str, &str)]) {
    let pid = child.id();
    a.recv();
    let status: Vec<(&str, String)> = want
        .iter()
        .map(|&(field, _)| (field, status_field(pid, field)))
        .collect();
    b.recv();
    let (ok, output) = finish(child);
    assert!(ok, "{output}");
    let want: Vec<(&str, String)> = want.iter().map(|&(f, v)| (f, v.to_string())).collect();
    assert_eq!(status, want);
}

#[test]
fn under_sudo_knock_becomes_the_invoking_user_after_opening_its_sockets() {
    integration::skip_unless_root!(
        "under_sudo_knock_becomes_the_invoking_user_after_opening_its_sockets needs root"
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    // The user's own one-time file: knock must still mark it after the drop.
    let otp = shared_file(
        dir.path(),
        "user.otp",
        &format!(" 1:tcp,{}:udp,{}:udp\n", a.port, b.port),
        NOBODY,
    );
    let nobody = NOBODY.to_string();
    let child = spawn_piped(
        knock_under_sudo(
            &nobody,
            Some(&nobody),
            &["-d", "1500", "--flags", "fin", "--otp", &otp, "127.0.0.1"],
        )
        .env("HOME", dir.path()),
    );
    assert_status_between_hits(
        child,
        &a,
        &b,
        &[
            ("Uid", ALL_NOBODY),
            ("Gid", ALL_NOBODY),
            ("CapPrm", NO_CAPS),
            ("CapEff", NO_CAPS),
        ],
    );
    assert!(
        fs::read_to_string(&otp).unwrap().starts_with('#'),
        "the line is marked used"
    );

    // Root's private file is out of reach once knock is the user.
    let root_otp = shared_file(dir.path(), "root.otp", " 7000\n", 0);
    let (ok, output) = finish(spawn_piped(&mut knock_under_sudo(
        &nobody,
        Some(&nobody),
        &["--otp", &root_otp, "127.0.0.1"],
    )));
    assert!(!ok);
    assert!(
        output.contains(&format!("knock: {root_otp}: Permission denied")),
        "{output}"
    );
    assert_eq!(fs::read_to_string(&root_otp).unwrap(), " 7000\n");

    // A SUDO_UID that is no number is an error, not a reason to stay root.
    let (ok, output) = finish(spawn_piped(&mut knock_under_sudo(
        "bob",
        None,
        &["127.0.0.1", &format!("{}:udp", a.port)],
    )));
    assert!(!ok);
    assert!(output.contains("SUDO_UID=\"bob\""), "{output}");
}

#[test]
fn with_file_capabilities_knock_clears_them_after_opening_its_sockets() {
    integration::skip_unless_root!(
        "with_file_capabilities_knock_clears_them_after_opening_its_sockets needs root"
    );
    // As nobody with CAP_NET_RAW (what `setcap cap_net_raw+ep` gives).
    // The FIN hit needs a raw socket: success shows it was opened.
    nobody_runs_knock(
        &integration::binary("knock", "knock"),
        &["--inh-caps=+net_raw", "--ambient-caps=+net_raw"],
        &[
            ("CapPrm", NO_CAPS),
            ("CapEff", NO_CAPS),
            ("CapAmb", NO_CAPS),
            ("Uid", ALL_NOBODY),
        ],
    );
}

#[test]
fn as_a_setuid_binary_knock_becomes_the_real_user_after_opening_its_sockets() {
    integration::skip_unless_root!(
        "as_a_setuid_binary_knock_becomes_the_real_user_after_opening_its_sockets needs root"
    );
    // A setuid-root copy of knock in a directory everyone may enter.
    let dir = integration::Scratch::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("knock");
    fs::copy(integration::binary("knock", "knock"), &bin).unwrap();
    chown(&bin, Some(0), Some(0)).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    // Run by nobody without any capability; the setuid bit makes it root.
    // The FIN hit needs a raw socket, opened while still root.
    nobody_runs_knock(
        &bin,
        &["--inh-caps=-all"],
        &[
            ("Uid", ALL_NOBODY),
            ("CapPrm", NO_CAPS),
            ("CapEff", NO_CAPS),
        ],
    );
}
