//! Command-line tests of `knock`'s profiles, verification and rotating
//! doors: lookup, precedence of options, every error path, `--list`
//! without secrets, `--verify` and re-knocks, `--show` against the derivation's
//! vectors and the shared derivation. All traffic goes to 127.0.0.1 only.
//! Every `knock` runs with `HOME` and `XDG_CONFIG_HOME` in a temporary
//! directory, so the user's own profiles never take part.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use integration::{contains_all, unix_now, write_with_mode, Scratch};
use knock_common::rotate::{self, Key, PortRange};
use predicates::prelude::*;

/// The key of the derivation's test vectors (`knock_common::rotate`).
const VECTOR_KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A temporary home with `.config/knock/` and a way to run `knock` in it.
struct Home {
    dir: Scratch,
}

impl Home {
    fn new() -> Home {
        let dir = Scratch::new();
        fs::create_dir_all(dir.join("config/knock")).unwrap();
        Home { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The default profiles file (`$XDG_CONFIG_HOME/knock/hosts.toml`).
    fn hosts(&self) -> PathBuf {
        self.path("config/knock/hosts.toml")
    }

    /// Write the default profiles file, mode 0600.
    fn write_hosts(&self, text: &str) {
        write_with_mode(&self.hosts(), text, 0o600);
    }

    /// A key file with the test-vector key, mode 0600.
    fn key(&self, name: &str) -> PathBuf {
        self.dir.file(name, format!("# test key\n{VECTOR_KEY}\n"))
    }

    /// With profiles file `hosts`, `knock PROFILE` exits 1; the assertion
    /// is returned for checks of its output.
    fn fails(&self, hosts: &str, profile: &str) -> assert_cmd::assert::Assert {
        self.write_hosts(hosts);
        self.knock().arg(profile).assert().code(1)
    }

    /// With profiles file `hosts`, `knock PROFILE` exits 1 and says `needle`.
    fn refuses(&self, hosts: &str, profile: &str, needle: &str) {
        self.fails(hosts, profile)
            .stderr(predicate::str::contains(needle));
    }

    fn knock(&self) -> Command {
        let mut c = integration::command("knock", "knock");
        c.env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"));
        c
    }

    /// The standard output of a successful `knock ARGS`.
    fn stdout(&self, args: &[&str]) -> String {
        let out = self.knock().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }
}

/// A UDP socket on loopback that knocks can be aimed at.
type Target = integration::UdpTarget;

/// A TCP port on loopback where nothing listens.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_profile_from_the_default_file_and_from_profiles() {
    let home = Home::new();
    let t = Target::new(Duration::from_secs(5));
    home.write_hosts(&format!(
        "[lo]\nhost = \"127.0.0.1\"\nsequence = \"{}:udp\"\n",
        t.port
    ));
    home.knock()
        .args(["-v", "lo"])
        .assert()
        .success()
        .stdout(format!("hitting udp 127.0.0.1:{}\n", t.port));
    assert_eq!(t.count(Duration::from_millis(500)), 1);

    // --profiles FILE reads another file; the default one is not read.
    let other = home.path("other.toml");
    fs::write(
        &other,
        format!(
            "[alt]\nhost = \"127.0.0.1\"\nsequence = \"{p},{p}\"\nudp = true\n",
            p = t.port
        ),
    )
    .unwrap();
    home.knock()
        .args(["--profiles", &s(&other), "alt"])
        .assert()
        .success();
    assert_eq!(t.count(Duration::from_millis(500)), 2);
    home.knock()
        .args(["--profiles", &s(&other), "lo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no profile \"lo\"; the profiles are: alt",
        ));
}

#[test]
fn options_override_the_profile() {
    let home = Home::new();
    let t = Target::new(Duration::from_secs(5));
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    home.write_hosts(&format!(
        "[p]\nhost = \"127.0.0.1\"\nsequence = \"{}\"\nudp = true\nfamily = 6\n\
         verify = {}\nretries = 0\n",
        t.port,
        closed_port()
    ));
    // The profile alone: IPv6 only, and 127.0.0.1 has no IPv6 address.
    home.knock()
        .arg("p")
        .assert()
        .code(1)
        .stderr("knock: host \"127.0.0.1\" has no IPv6 address\n");
    // -4 wins over family = 6; --verify wins over verify.
    home.knock()
        .args(["-4", "-v", "--verify", &open_port.to_string(), "p"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "verify: 127.0.0.1:{open_port} answered after attempt 1 of 1"
        )));
    assert_eq!(t.count(Duration::from_millis(500)), 1);
    // --retries wins over retries = 0: three knocks arrive.
    let closed = closed_port().to_string();
    home.knock()
        .args(["-4", "--verify", &closed, "--retries", "2", "p"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("did not answer after 3 knock(s)"));
    assert_eq!(t.count(Duration::from_millis(500)), 3);
}

#[test]
fn profile_errors_name_the_file_and_line() {
    let home = Home::new();
    let f = s(&home.hosts());
    // Missing file.
    home.knock()
        .arg("ssh")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "knock: {f}: cannot read the profiles: "
        )))
        .stderr(predicate::str::contains("PORT"));
    // Unknown key: the line and every valid key.
    home.fails("[ssh]\nhost = \"h\"\n\nsequense = \"7000\"\n", "ssh")
        .stderr(predicate::str::starts_with(format!("knock: {f}:4: ")))
        .stderr(contains_all([
            "sequense",
            "`host`, `sequence`, `udp`, `flags`, `delay`, `family`, `otp`, `secret`, `door`, \
             `length`, `period`, `ports`, `source_address`, `verify`, `retries`",
        ]));
    // Bad TOML: the line, and not the text of the line.
    home.fails("[ssh]\nhost = \"h\"\nsequence = \"7123,8234\n", "ssh")
        .stderr(predicate::str::starts_with(format!("knock: {f}:3: ")))
        .stderr(predicate::str::contains("7123").not());
    // A bad value: named by key and item, the sequence itself not shown.
    home.fails(
        "[ssh]\nhost = \"h\"\nsequence = \"7123,8234:icmp\"\n",
        "ssh",
    )
    .stderr(format!(
        "knock: {f}:3: profile \"ssh\": sequence: item 2 is not PORT[:tcp|udp[:FLAGS]] \
             (the protocol is neither tcp nor udp)\n"
    ));
    // Unknown profile: lists the ones there are.
    home.refuses(
        "[ssh]\nhost = \"h\"\nsequence = \"1\"\n[web]\nhost = \"w\"\notp = \"o\"\n",
        "vpn",
        &format!("knock: {f}: no profile \"vpn\"; the profiles are: ssh, web"),
    );
    // Two kinds in one profile.
    home.refuses(
        "[ssh]\nhost = \"h\"\nsequence = \"1\"\notp = \"o\"\n",
        "ssh",
        &format!("{f}:4: profile \"ssh\": sequence and otp are all set"),
    );
    // A rotating option without a secret.
    home.refuses(
        "[ssh]\nhost = \"h\"\nsequence = \"1\"\nlength = 4\n",
        "ssh",
        "length applies to a rotating knock",
    );
}

#[test]
fn a_readable_profiles_file_with_a_sequence_is_warned_about() {
    let home = Home::new();
    let t = Target::new(Duration::from_secs(5));
    let f = s(&home.hosts());
    home.write_hosts(&format!(
        "[lo]\nhost = \"127.0.0.1\"\nsequence = \"{}:udp\"\n",
        t.port
    ));
    home.knock().arg("lo").assert().success().stderr("");
    fs::set_permissions(home.hosts(), fs::Permissions::from_mode(0o644)).unwrap();
    home.knock().arg("lo").assert().success().stderr(format!(
        "knock: warning: {f}: mode 0644 lets group or others read the fixed sequences \
             in it; run chmod 600 {f}\n"
    ));
    assert_eq!(t.count(Duration::from_millis(500)), 2);
    // No fixed sequence, nothing secret in the file: no warning.
    fs::write(home.hosts(), "[o]\nhost = \"h\"\notp = \"x\"\n").unwrap();
    fs::set_permissions(home.hosts(), fs::Permissions::from_mode(0o644)).unwrap();
    home.knock().arg("--list").assert().success().stderr("");
}

#[test]
fn a_key_file_with_loose_permissions_is_refused() {
    let home = Home::new();
    let key = home.key("vpn.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    home.write_hosts(&format!(
        "[vpn]\nhost = \"127.0.0.1\"\nsecret = \"{}\"\ndoor = \"vpn\"\n",
        s(&key)
    ));
    home.knock()
        .arg("vpn")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}: mode 0644 lets group or others read or write the key",
            s(&key)
        )))
        .stderr(predicate::str::contains(VECTOR_KEY).not());
    // The same on the command line, and relative to the profiles file.
    home.knock()
        .args(["--secret", &s(&key), "--door", "vpn", "--show", "127.0.0.1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mode 0644"));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    home.write_hosts("[vpn]\nhost = \"127.0.0.1\"\nsecret = \"../../vpn.key\"\ndoor = \"vpn\"\n");
    home.knock().args(["--show", "vpn"]).assert().success();
}

#[test]
fn list_shows_profiles_without_secrets() {
    let home = Home::new();
    let key = home.key("vpn.key");
    let otp = home.path("web.otp");
    fs::write(&otp, " 7345,8456:udp\n").unwrap();
    home.write_hosts(&format!(
        "[ssh]\nhost = \"s.example\"\nsequence = \"7123,8234:udp,9345\"\nverify = 22\n\
         [web]\nhost = \"192.0.2.10\"\notp = \"{}\"\n\
         [vpn]\nhost = \"v.example\"\nsecret = \"{}\"\ndoor = \"vpn\"\nverify = 1194\n",
        s(&otp),
        s(&key)
    ));
    let text = home.stdout(&["--list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("PROFILE"), "{text}");
    assert!(lines[1].starts_with("ssh ") && lines[1].contains("s.example"));
    assert!(lines[1].contains("fixed sequence") && lines[1].ends_with("22"));
    assert!(lines[2].starts_with("vpn ") && lines[2].contains("rotating"));
    assert!(lines[2].contains("door vpn") && lines[2].ends_with("1194"));
    assert!(lines[3].starts_with("web ") && lines[3].contains("one-time"));
    for secret in ["7123", "8234", "9345", "7345", "8456", VECTOR_KEY] {
        assert!(!text.contains(secret), "--list shows {secret}:\n{text}");
    }
}

#[test]
fn the_example_profiles_are_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hosts.toml");
    let home = Home::new();
    let text = home.stdout(&["--profiles", &s(&example), "--list"]);
    assert!(!text.contains("invalid"), "{text}");
    // One example of each kind of knock.
    for kind in ["fixed sequence", "one-time", "rotating"] {
        assert!(text.contains(kind), "no {kind} profile:\n{text}");
    }
    assert!(!text.contains("7000") && !text.contains("8000"), "{text}");
}

#[test]
fn verify_succeeds_when_the_port_answers() {
    let home = Home::new();
    let t = Target::new(Duration::from_secs(5));
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port().to_string();
    home.knock()
        .args([
            "-v",
            "--verify",
            &port,
            "127.0.0.1",
            &format!("{}:udp", t.port),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "verify: 127.0.0.1:{port} answered after attempt 1 of 3 ("
        )));
    assert_eq!(t.count(Duration::from_millis(500)), 1, "no re-knock");
}

#[test]
fn verify_fails_within_the_bound_and_lists_the_attempts() {
    let home = Home::new();
    let t = Target::new(Duration::from_secs(5));
    let closed = closed_port().to_string();
    let start = Instant::now();
    home.knock()
        .args([
            "--verify",
            &closed,
            "--retries",
            "1",
            "127.0.0.1",
            &format!("{}:udp", t.port),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "knock: 127.0.0.1:{closed} did not answer after 2 knock(s) in "
        )))
        .stderr(predicate::str::contains("attempt 1 (fixed sequence): "))
        .stderr(predicate::str::contains("attempt 2 (fixed sequence): "));
    // Bounded: 2 x 3 s of probing, plus start-up.
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t.count(Duration::from_millis(500)), 2);
}

#[test]
fn a_one_time_re_knock_uses_the_next_line() {
    let home = Home::new();
    let (a, b, c) = (
        Target::new(Duration::from_secs(5)),
        Target::new(Duration::from_secs(5)),
        Target::new(Duration::from_secs(5)),
    );
    let otp = home.path("seqs");
    let content = format!(" {}:udp\n {}:udp\n {}:udp\n", a.port, b.port, c.port);
    fs::write(&otp, &content).unwrap();
    let closed = closed_port().to_string();
    home.knock()
        .args([
            "-v",
            "--otp",
            &s(&otp),
            "--verify",
            &closed,
            "--retries",
            "1",
            "127.0.0.1",
        ])
        .assert()
        .code(1)
        .stdout(contains_all([1, 2].map(|n| {
            format!("attempt {n} of 2: one-time line {n} of {}", s(&otp))
        })));
    assert_eq!(a.count(Duration::from_millis(300)), 1);
    assert_eq!(b.count(Duration::from_millis(300)), 1);
    assert_eq!(c.count(Duration::from_millis(300)), 0);
    assert_eq!(
        fs::read_to_string(&otp).unwrap(),
        format!("#{}:udp\n#{}:udp\n {}:udp\n", a.port, b.port, c.port)
    );
}

#[test]
fn no_message_quotes_a_line_of_a_file() {
    let home = Home::new();
    let f = home.path("not-a-sequence");
    fs::write(
        &f,
        "root:$y$j9T$SECRETHASH:19000:0:99999:7:::\n 70000,1\n#used\n",
    )
    .unwrap();
    for args in [
        vec!["--otp", &s(&f), "127.0.0.1"],
        vec!["-v", "--otp", &s(&f), "127.0.0.1"],
        vec!["--secret", &s(&f), "--door", "d", "127.0.0.1"],
    ] {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let out = home.knock().args(&args).assert().code(1);
        let all = integration::output_text(out.get_output());
        for secret in ["SECRETHASH", "root:", "70000"] {
            assert!(!all.contains(secret), "{args:?} shows {secret}:\n{all}");
        }
        assert!(all.contains(&s(&f)), "{args:?} names the file:\n{all}");
    }
    home.knock()
        .args(["--otp", &s(&f), "127.0.0.1"])
        .assert()
        .stderr(contains_all([
            format!("{}:1: skipping a line that is not a sequence", s(&f)),
            format!(
                "{}:2: skipping a line that is not a sequence (a port is not a number between 1 and 65535)",
                s(&f)
            ),
        ]));
}

/// What `knock --secret KEY OPTS --show 127.0.0.1` prints.
fn show(home: &Home, key: &str, opts: &[&str]) -> String {
    let mut args = vec!["--secret", key];
    args.extend_from_slice(opts);
    args.extend(["--show", "127.0.0.1"]);
    home.stdout(&args).trim_end().to_string()
}

fn render(ports: &[u16], proto: &str) -> String {
    ports
        .iter()
        .map(|p| format!("{p}:{proto}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn show_prints_the_spec_vectors() {
    let home = Home::new();
    let key = s(&home.key("k"));
    // A period of two thirds of now makes T = 1 (for the next ~20 years
    // of the test's run time).
    let period = (unix_now() * 2 / 3).to_string();
    let cases: [(&[&str], &str); 2] = [
        // A period longer than the time since 1970 makes the window T = 0.
        (
            &["--door", "ssh", "--period", "4000000000"],
            "41210:tcp,51433:tcp,26957:tcp",
        ),
        (
            &[
                "--door",
                "web",
                "--period",
                &period,
                "--length",
                "8",
                "--ports",
                "7000-7009",
                "-u",
            ],
            "7005:udp,7003:udp,7009:udp,7000:udp,7002:udp,7008:udp,7006:udp,7001:udp",
        ),
    ];
    for (opts, want) in cases {
        assert_eq!(show(&home, &key, opts), want, "{opts:?}");
    }
}

/// `--show` for the current window equals the shared derivation, computed
/// before and after the run (the window may turn in between).
#[test]
fn show_next_and_source_address_follow_the_derivation() {
    let home = Home::new();
    let keyp = home.key("k");
    let key = Key::load(&keyp).unwrap();
    let keys = s(&keyp);
    let range = PortRange {
        lo: 20000,
        hi: 29999,
    };
    let bind = "192.0.2.7".parse().ok();
    let expect = |w: u64, bind| render(&rotate::derive(&key, "ssh", w, 4, range, bind), "tcp");
    for (extra, ahead, bind) in [
        (vec![], 0, None),
        (vec!["--next"], 1, None),
        (vec!["--source-address", "192.0.2.7"], 0, bind),
    ] {
        let before = rotate::window(unix_now(), 5);
        let mut opts = vec![
            "--door",
            "ssh",
            "--length",
            "4",
            "--period",
            "5",
            "--ports",
            "20000-29999",
        ];
        opts.extend(extra.iter().copied());
        let got = show(&home, &keys, &opts);
        let after = rotate::window(unix_now(), 5);
        assert!(
            got == expect(before + ahead, bind) || got == expect(after + ahead, bind),
            "{extra:?}: {got}"
        );
    }
}

#[test]
fn a_rotating_knock_is_sent() {
    let home = Home::new();
    let key = s(&home.key("k"));
    let t = Target::new(Duration::from_secs(5));
    // A one-port range: the derived sequence can only be that port.
    let range = format!("{p}-{p}", p = t.port);
    home.knock()
        .args([
            "-v",
            "--secret",
            &key,
            "--door",
            "d",
            "--length",
            "1",
            "--ports",
            &range,
            "-u",
            "127.0.0.1",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("using door d window "))
        .stdout(predicate::str::contains(format!(
            "hitting udp 127.0.0.1:{}",
            t.port
        )));
    assert_eq!(t.count(Duration::from_millis(500)), 1);
    // Rotating options belong to rotating knocks.
    home.knock()
        .args(["--next", "127.0.0.1", "7000"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--next applies to a rotating knock",
        ));
    home.knock()
        .args(["--secret", &key, "127.0.0.1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("needs the server's door name"));
}
