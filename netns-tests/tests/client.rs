//! End-to-end scenarios of the `knock` client's profiles and verification
//! (`knock(1)`, `docs/DECISIONS.md` "Client") against a real firewall: the server namespace drops every
//! connection to a real TCP service (socat) until the door's start command
//! inserts an ACCEPT rule for the knocker's address.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, require_root, Conf, Daemon, Lab, Proc, RunOutput};

/// The service behind the firewall.
const SERVICE: u16 = 2222;
/// The door's sequence.
const SEQUENCE: &str = "7000,8000:udp,9000";

/// A server namespace with the service, the firewall and our daemon.
struct Scene {
    lab: Lab,
    daemon: Daemon,
    _service: Proc,
}

fn iptables(lab: &Lab, ns: &str, args: &[&str]) -> RunOutput {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    let out = lab.run(ns, "iptables", &all);
    out.assert_success();
    out
}

/// Makes the client namespace, which forwards the packets of a knocker
/// behind it, drop the forwarded packets that `matching` selects by the
/// rule `statistic --mode nth --every EVERY --packet 0`: the 1st (and the
/// EVERY+1-th, ...) one is lost on the way, a loss the knocker cannot see
/// (a DROP in its own OUTPUT chain would fail the send with EPERM instead).
fn lose_forwarded(lab: &Lab, matching: &[&str], every: &str) {
    let mut rule = vec!["-A", "FORWARD"];
    rule.extend_from_slice(matching);
    rule.extend_from_slice(&[
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        every,
        "--packet",
        "0",
        "-j",
        "DROP",
    ]);
    iptables(lab, &lab.client_ns, &rule);
}

/// `knock -v --profiles HOSTS door`, run in namespace `ns`.
fn knock_profile_from(sc: &Scene, ns: &str, hosts: &Path) -> RunOutput {
    sc.lab.run(
        ns,
        bins::knock(),
        &["-v", "--profiles", hosts.to_str().unwrap(), "door"],
    )
}

/// Does the service answer a connect from the client namespace (within
/// one second)?
fn service_answers(lab: &Lab) -> bool {
    let target = format!("TCP:{}:{SERVICE},connect-timeout=1", lab.server_v4());
    lab.run(&lab.client_ns, "socat", &["-u", "OPEN:/dev/null", &target])
        .success()
}

impl Scene {
    /// The door `door` with the fixed [`SEQUENCE`].
    fn new(name: &str) -> Scene {
        Scene::with_door(name, &[("Sequence", SEQUENCE)])
    }

    /// The door `door` with `knock` (the directives that define its
    /// sequence).
    fn with_door(name: &str, knock: &[(&str, &str)]) -> Scene {
        let lab = Lab::new(name);
        let service_port = SERVICE.to_string();
        // Drop new connections to the service; the door inserts an ACCEPT.
        iptables(
            &lab,
            &lab.server_ns,
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &service_port,
                "-j",
                "DROP",
            ],
        );
        let service = lab.spawn(
            &lab.server_ns,
            "socat",
            &[
                &format!("TCP-LISTEN:{SERVICE},fork,reuseaddr"),
                "SYSTEM:echo ok",
            ],
        );
        let listening = poll_until(DEFAULT_TIMEOUT, || {
            lab.run(
                &lab.server_ns,
                "ss",
                &["-Hltn", &format!("sport = :{SERVICE}")],
            )
            .stdout
            .contains(&format!(":{SERVICE}"))
            .then_some(())
        });
        assert!(listening.is_some(), "socat did not listen on {SERVICE}");
        let start = format!("iptables -w -I INPUT -s %IP% -p tcp --dport {SERVICE} -j ACCEPT");
        let mut dirs = knock.to_vec();
        dirs.extend([("Seq_Timeout", "15"), ("Start_Command", start.as_str())]);
        let conf = Conf::new(&[]).door("door", &dirs);
        let daemon = lab.start_daemon(&bins::knockd(), conf.text(), &[]);
        Scene {
            lab,
            daemon,
            _service: service,
        }
    }

    /// A profiles file with profile `door` (plus `extra` lines).
    fn profiles(&self, sequence: &str, extra: &str) -> PathBuf {
        self.lab.write_file(
            &self.lab.unique("hosts.toml"),
            &format!(
                "[door]\nhost = \"{}\"\nsequence = \"{sequence}\"\n{extra}",
                self.lab.server_v4()
            ),
        )
    }

    /// Run our `knock` in the client namespace.
    fn knock(&self, args: &[&str]) -> RunOutput {
        self.lab.run(&self.lab.client_ns, bins::knock(), args)
    }

    /// The service as the client names it: `SERVER_V4:PORT`.
    fn service(&self) -> String {
        format!("{}:{SERVICE}", self.lab.server_v4())
    }

    /// `text` (the stdout or stderr of `out`) contains `part`; panics with
    /// the run and the daemon's logs.
    fn assert_says(&self, out: &RunOutput, text: &str, part: &str) {
        assert!(text.contains(part), "{part:?} expected\n{}", self.dump(out));
    }

    fn dump(&self, out: &RunOutput) -> String {
        format!(
            "knock: {}\n--- stdout:\n{}--- stderr:\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr,
            self.daemon.dump()
        )
    }
}

#[test]
fn a_profile_opens_the_door() {
    require_root!("a_profile_opens_the_door");
    let sc = Scene::new("c-profile");
    assert!(!service_answers(&sc.lab), "the firewall drops the service");
    let hosts = sc.profiles(SEQUENCE, "");
    let out = sc.knock(&["--profiles", hosts.to_str().unwrap(), "door"]);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.daemon
        .expect_log(&format!("{}: door: OPEN SESAME", sc.lab.client_v4()));
    let open = poll_until(DEFAULT_TIMEOUT, || service_answers(&sc.lab).then_some(()));
    assert!(
        open.is_some(),
        "the service stays closed\n{}",
        sc.daemon.dump()
    );
}

#[test]
fn verify_succeeds_after_a_good_knock() {
    require_root!("verify_succeeds_after_a_good_knock");
    let sc = Scene::new("c-verify");
    let hosts = sc.profiles(SEQUENCE, &format!("verify = {SERVICE}\n"));
    let out = sc.knock(&["-v", "--profiles", hosts.to_str().unwrap(), "door"]);
    assert!(out.success(), "{}", sc.dump(&out));
    let answered = format!("verify: {} answered after attempt 1 of 3", sc.service());
    sc.assert_says(&out, &out.stdout, &answered);
    assert_eq!(sc.daemon.log_count("OPEN SESAME"), 1, "one knock, one open");
}

#[test]
fn verify_fails_within_the_bound_after_a_wrong_sequence() {
    require_root!("verify_fails_within_the_bound_after_a_wrong_sequence");
    let sc = Scene::new("c-wrong");
    let hosts = sc.profiles("7000,8000:udp,9001", &format!("verify = {SERVICE}\n"));
    let start = Instant::now();
    let out = sc.knock(&[
        "--retries",
        "1",
        "--profiles",
        hosts.to_str().unwrap(),
        "door",
    ]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", sc.dump(&out));
    let silent = format!("{} did not answer after 2 knock(s) in ", sc.service());
    sc.assert_says(&out, &out.stderr, &silent);
    sc.assert_says(&out, &out.stderr, "attempt 2 (fixed sequence)");
    // 2 attempts x 3 s of probing, plus the knocks.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        sc.daemon.log_count("OPEN SESAME"),
        0,
        "{}",
        sc.daemon.dump()
    );
    // The daemon was listening all along: the right sequence opens.
    let out = sc.knock(&[
        "--verify",
        &SERVICE.to_string(),
        &sc.lab.server_v4().to_string(),
        "7000",
        "8000:udp",
        "9000",
    ]);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.daemon.expect_log("OPEN SESAME");
}

#[test]
fn a_lost_knock_is_re_knocked_and_verified() {
    require_root!("a_lost_knock_is_re_knocked_and_verified");
    let mut sc = Scene::new("c-lost");
    // The knocker sits behind the client namespace, which forwards its
    // packets and drops the 1st (3rd, 5th, ...) one to the last knock port
    // on the way: a loss the knocker cannot see (a DROP in its own OUTPUT
    // chain would fail the send with EPERM instead).
    let knocker = sc.lab.add_client();
    lose_forwarded(&sc.lab, &["-p", "tcp", "--dport", "9000"], "2");
    let hosts = sc.profiles(SEQUENCE, &format!("verify = {SERVICE}\n"));
    let out = knock_profile_from(&sc, &knocker.ns, &hosts);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.assert_says(&out, &out.stdout, "did not answer");
    let answered = format!("verify: {} answered after attempt 2 of 3", sc.service());
    sc.assert_says(&out, &out.stdout, &answered);
    sc.daemon
        .expect_log(&format!("{}: door: OPEN SESAME", knocker.v4));
    // The rule dropped exactly one packet: the first knock's last hit.
    let counters = iptables(
        &sc.lab,
        &sc.lab.client_ns,
        &["-L", "FORWARD", "-v", "-x", "-n"],
    );
    let dropped = counters
        .stdout
        .lines()
        .find(|l| l.contains("DROP") && l.contains("dpt:9000"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned);
    assert_eq!(dropped.as_deref(), Some("1"), "{}", counters.stdout);
    assert_eq!(
        sc.daemon.log_count("OPEN SESAME"),
        1,
        "{}",
        sc.daemon.dump()
    );
}

#[test]
fn a_lost_one_time_knock_is_re_knocked_with_the_next_line() {
    require_root!("a_lost_one_time_knock_is_re_knocked_with_the_next_line");
    let lines = " 7000,8000:udp,9000\n 7100,8100:udp,9100\n 7200,8200:udp,9200\n";
    let dir = tempfile::tempdir().unwrap();
    let server_copy = dir.path().join("server.otp");
    let client_copy = dir.path().join("client.otp");
    std::fs::write(&server_copy, lines).unwrap();
    std::fs::write(&client_copy, lines).unwrap();
    let server_path = server_copy.display().to_string();
    let mut sc = Scene::with_door(
        "c-otp-lost",
        &[("One_Time_Sequences", server_path.as_str())],
    );
    // As in a_lost_knock_is_re_knocked_and_verified: the first packet to
    // the first line's last port is lost between knocker and server.
    let knocker = sc.lab.add_client();
    lose_forwarded(&sc.lab, &["-p", "tcp", "--dport", "9000"], "2");
    let hosts = sc.lab.write_file(
        "hosts.toml",
        &format!(
            "[door]\nhost = \"{}\"\notp = \"{}\"\nverify = {SERVICE}\n",
            sc.lab.server_v4(),
            client_copy.display()
        ),
    );
    let out = knock_profile_from(&sc, &knocker.ns, &hosts);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.assert_says(&out, &out.stdout, "attempt 2 of 3: one-time line 2 of ");
    sc.assert_says(&out, &out.stdout, "answered after attempt 2 of 3");
    sc.daemon
        .expect_log(&format!("{}: door: OPEN SESAME", knocker.v4));
    // Both ends have used lines 1 and 2; line 3 is the next one for both.
    let client_now = std::fs::read_to_string(&client_copy).unwrap();
    assert_eq!(
        client_now,
        "#7000,8000:udp,9000\n#7100,8100:udp,9100\n 7200,8200:udp,9200\n"
    );
    let used_on_server = poll_until(DEFAULT_TIMEOUT, || {
        let text = std::fs::read_to_string(&server_copy).ok()?;
        (text == client_now).then_some(())
    });
    assert!(
        used_on_server.is_some(),
        "server copy: {:?}\n{}",
        std::fs::read_to_string(&server_copy),
        sc.daemon.dump()
    );
}

/// The key of the derivation's test vectors (`knock_common::rotate`).
const KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A scene whose door is rotating (4 UDP hits, the test-vector key; server and
/// client each have their own copy of the key file, mode 0600), and the
/// profiles file with the profile `door` for it (verify = the service).
fn rotating_scene(name: &str) -> (Scene, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for name in ["server.key", "client.key"] {
        let p = dir.path().join(name);
        fs::write(&p, format!("{KEY}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        keys.push(p.display().to_string());
    }
    let state = dir.path().join("door.window").display().to_string();
    let sc = Scene::with_door(
        name,
        &[
            ("Sequence_Secret", keys[0].as_str()),
            ("Sequence_State", state.as_str()),
            ("Sequence_Length", "4"),
            ("Sequence_Protocol", "udp"),
        ],
    );
    let hosts = sc.lab.write_file(
        "hosts.toml",
        &format!(
            "[door]\nhost = \"{}\"\nsecret = \"{}\"\ndoor = \"door\"\nlength = 4\n\
             udp = true\nverify = {SERVICE}\n",
            sc.lab.server_v4(),
            keys[1]
        ),
    );
    (sc, dir, hosts)
}

#[test]
fn a_rotating_profile_opens_the_door_and_next_opens_it_again() {
    require_root!("a_rotating_profile_opens_the_door_and_next_opens_it_again");
    let (sc, _keys, hosts) = rotating_scene("c-rotating");
    let hosts = hosts.to_str().unwrap();
    let out = sc.knock(&["-v", "--profiles", hosts, "door"]);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.assert_says(&out, &out.stdout, "answered after attempt 1 of 3");
    sc.daemon.expect_log_count("OPEN SESAME", 1);
    // A second knock within the same period uses the next window.
    let out = sc.knock(&["--next", "--profiles", hosts, "door"]);
    assert!(out.success(), "{}", sc.dump(&out));
    sc.daemon.expect_log_count("OPEN SESAME", 2);
}

#[test]
fn a_lost_rotating_knock_is_re_knocked_with_the_next_window() {
    require_root!("a_lost_rotating_knock_is_re_knocked_with_the_next_window");
    let (mut sc, _keys, hosts) = rotating_scene("c-rot-lost");
    // The very first UDP packet from the knocker (the first hit of the
    // first attempt) is lost between knocker and server.
    let knocker = sc.lab.add_client();
    lose_forwarded(&sc.lab, &["-p", "udp"], "1000000");
    let out = knock_profile_from(&sc, &knocker.ns, &hosts);
    assert!(out.success(), "{}", sc.dump(&out));
    // Attempt 1 used window T, attempt 2 the window after it.
    let windows: Vec<u64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(" window ").nth(1))
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    assert_eq!(windows.len(), 2, "{}", sc.dump(&out));
    assert_eq!(windows[1], windows[0] + 1, "{}", sc.dump(&out));
    sc.assert_says(&out, &out.stdout, "answered after attempt 2 of 3");
    sc.daemon
        .expect_log(&format!("{}: door: OPEN SESAME", knocker.v4));
    assert_eq!(
        sc.daemon.log_count("OPEN SESAME"),
        1,
        "{}",
        sc.daemon.dump()
    );
}
