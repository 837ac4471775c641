use super::*;
use knock_common::flags::{ACK, FIN, SYN};
use knock_common::Knock;

const F: &str = "knockd.conf";

fn parse(text: &str) -> Config {
    match parse_str(text, F) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors for {text:?}:\n{e}"),
    }
}

/// How each of `items` is shown (`file:line: text`).
fn texts<T: fmt::Display>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// Give `path` the permission bits `mode`.
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Write `text` to the file `name` of `dir`, with permission bits `mode`.
fn write_file(dir: &Path, name: &str, text: impl AsRef<[u8]>, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    chmod(&path, mode);
    path
}

/// The only error [`load`] gives for `path`.
fn load_error(path: &Path) -> ConfigError {
    let errors = load(path).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.0.into_iter().next().unwrap()
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text, F) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(ConfigErrors(v)) => v,
    }
}

/// A config with one door `d` (header on line 1) whose body follows a
/// `sequence = 1` line (line 2): `body` starts on line 3.
fn door_text(body: &str) -> String {
    format!("[d]\nsequence = 1\n{body}\n")
}

fn door(body: &str) -> Door {
    let cfg = parse(&door_text(body));
    assert_eq!(cfg.doors.len(), 1);
    cfg.doors.into_iter().next().unwrap()
}

/// The options of a file without `[options]`.
fn default_options() -> Options {
    Options {
        use_syslog: false,
        log_file: None,
        pid_file: PathBuf::from(DEFAULT_PID_FILE),
        interface: None,
    }
}

/// `TCPFlags` requiring the flags `set` and forbidding `clear`.
fn flags(set: u8, clear: u8) -> Option<FlagSpec> {
    Some(FlagSpec { set, clear })
}

/// [`parse`] `text`, which must give no warning.
fn parse_clean(text: &str) -> Config {
    let cfg = parse(text);
    assert!(cfg.warnings.is_empty(), "{text:?}: {:?}", cfg.warnings);
    cfg
}

fn fixed(d: &Door) -> &Sequence {
    match &d.sequence {
        SequenceSpec::Fixed(s) => s,
        other => panic!("expected a fixed sequence, got {other:?}"),
    }
}

// The three examples of the manual page, with the section headers that
// the text dump of the page lost.
pub(crate) const MAN_EXAMPLE_1: &str = "\
[options]
 logfile = /var/log/knockd.log

[openSSH]
 sequence    = 7000,8000,9000
 seq_timeout = 10
 tcpflags    = syn
 command     = /sbin/iptables -A INPUT -s %IP% -j ACCEPT

[closeSSH]
 sequence    = 9000,8000,7000
 seq_timeout = 10
 tcpflags    = syn
 command     = /sbin/iptables -D INPUT -s %IP% -j ACCEPT
";

pub(crate) const MAN_EXAMPLE_2: &str = "\
[options]
 logfile = /var/log/knockd.log

[opencloseSSH]
 sequence      = 2222:udp,3333:tcp,4444:udp
 seq_timeout   = 15
 tcpflags      = syn,ack
 start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
 cmd_timeout   = 5
 stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
";

pub(crate) const MAN_EXAMPLE_3: &str = "\
[options]
 logfile = /var/log/knockd.log

[smtp]
 one_time_sequences = /etc/knockd/smtp_sequences
 seq_timeout        = 15
 tcpflags           = fin,!ack
 start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
 cmd_timeout        = 5
 stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
";

/// `/etc/knockd.conf` as shipped by Debian's knockd 0.8 package.
pub(crate) const DEBIAN_CONF: &str = "\
[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[openHTTPS]
\tsequence    = 12345,54321,24680,13579
\tseq_timeout = 5
\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%
\ttcpflags    = syn
";

#[test]
fn man_page_example_1() {
    let cfg = parse_clean(MAN_EXAMPLE_1);
    assert_eq!(
        cfg.options.log_file.as_deref(),
        Some(Path::new("/var/log/knockd.log"))
    );
    assert!(!cfg.options.use_syslog);
    assert_eq!(cfg.doors.len(), 2);
    let (open, close) = (&cfg.doors[0], &cfg.doors[1]);
    assert_eq!((open.name.as_str(), open.line), ("openSSH", 4));
    assert_eq!((close.name.as_str(), close.line), ("closeSSH", 10));
    assert_eq!(
        fixed(open).knocks(),
        &[Knock::tcp(7000), Knock::tcp(8000), Knock::tcp(9000)]
    );
    assert_eq!(fixed(close).to_string(), "9000:tcp,8000:tcp,7000:tcp");
    assert_eq!(open.seq_timeout, Duration::from_secs(10));
    assert_eq!(open.tcp_flags, flags(SYN, 0));
    assert_eq!(
        open.start_command_for(false),
        Some("/sbin/iptables -A INPUT -s %IP% -j ACCEPT")
    );
    assert_eq!(
        open.start_command_for(true),
        Some("/sbin/iptables -A INPUT -s %IP% -j ACCEPT")
    );
    assert_eq!(open.stop_command_for(false), None);
    assert_eq!(
        close.start_command.as_deref(),
        Some("/sbin/iptables -D INPUT -s %IP% -j ACCEPT")
    );
}

/// The one-door examples of the manual page, field by field.
#[test]
fn man_page_examples_2_and_3() {
    let knocks = vec![Knock::udp(2222), Knock::tcp(3333), Knock::udp(4444)];
    // (example, door, sequence, TCPFlags, Stop_Command)
    let cases = [
        (
            MAN_EXAMPLE_2,
            "opencloseSSH",
            SequenceSpec::Fixed(Sequence::new(knocks).unwrap()),
            flags(SYN | ACK, 0),
            "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT",
        ),
        (
            MAN_EXAMPLE_3,
            "smtp",
            SequenceSpec::OneTime(PathBuf::from("/etc/knockd/smtp_sequences")),
            flags(FIN, ACK),
            "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT",
        ),
    ];
    for (text, name, sequence, tcp_flags, stop) in cases {
        let cfg = parse_clean(text);
        assert_eq!(cfg.doors.len(), 1, "{name}");
        let d = &cfg.doors[0];
        assert_eq!(d.name, name);
        assert_eq!(d.sequence, sequence, "{name}");
        assert_eq!(d.tcp_flags, tcp_flags, "{name}");
        // Both wait 15 s for the knock and 5 s before the stop command.
        assert_eq!(d.seq_timeout, Duration::from_secs(15), "{name}");
        assert_eq!(d.cmd_timeout, Duration::from_secs(5), "{name}");
        assert_eq!(d.stop_command_for(false), Some(stop), "{name}");
        assert_eq!(d.stop_command_for(true), Some(stop), "{name}");
    }
}

#[test]
fn debian_shipped_config() {
    let cfg = parse_clean(DEBIAN_CONF);
    assert!(cfg.options.use_syslog);
    assert_eq!(cfg.options.log_file, None);
    let names: Vec<_> = cfg.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"]);
    assert_eq!(fixed(&cfg.doors[2]).len(), 4);
    assert!(cfg
        .doors
        .iter()
        .all(|d| d.seq_timeout == Duration::from_secs(5)));
}

#[test]
fn installed_debian_config_parses_if_present() {
    // The file on a machine with Debian's knockd package; skipped elsewhere.
    let path = Path::new("/etc/knockd.conf");
    if let Ok(text) = std::fs::read_to_string(path) {
        let cfg = parse_str(&text, "/etc/knockd.conf").unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.doors.is_empty());
    }
}

#[test]
fn defaults() {
    let cfg = parse("[d]\nsequence = 1\ncommand = true\n");
    assert_eq!(cfg.options, default_options());
    let d = &cfg.doors[0];
    assert_eq!(d.seq_timeout, DEFAULT_SEQ_TIMEOUT);
    assert_eq!(d.seq_timeout, Duration::from_secs(25));
    assert_eq!(d.cmd_timeout, DEFAULT_CMD_TIMEOUT);
    assert_eq!(d.scan_threshold, DEFAULT_SCAN_THRESHOLD);
    assert_eq!(d.scan_threshold, 8);
    assert_eq!(d.cmd_timeout, Duration::from_secs(10));
    assert_eq!(d.tcp_flags, None);
    assert_eq!(d.target, None);
    assert_eq!(d.stop_command, None);
    assert_eq!(DEFAULT_PID_FILE, "/var/run/knockd.pid");
}

#[test]
fn every_global_directive_and_case() {
    // Each line, and how it changes the options of a file without any.
    type Change = fn(&mut Options);
    let cases: &[(&str, Change)] = &[
        ("UseSyslog", |o| o.use_syslog = true),
        ("USESYSLOG", |o| o.use_syslog = true),
        ("LogFile = /var/log/k.log", |o| {
            o.log_file = Some("/var/log/k.log".into())
        }),
        ("  logfile=/tmp/a b.log  ", |o| {
            o.log_file = Some("/tmp/a b.log".into())
        }),
        ("PidFile = /run/k.pid", |o| o.pid_file = "/run/k.pid".into()),
        ("PIDFILE\t=\t/run/k.pid", |o| {
            o.pid_file = "/run/k.pid".into()
        }),
        ("Interface = eth1", |o| {
            o.interface = Some(InterfaceList::parse("eth1").unwrap())
        }),
        ("interface = any", |o| {
            o.interface = Some(InterfaceList::parse("any").unwrap())
        }),
    ];
    for header in ["[options]", "[OPTIONS]", "[ Options ]"] {
        for (line, change) in cases {
            let text = format!("{header}\n{line}\n[d]\nsequence = 1\ncommand = x\n");
            let cfg = parse(&text);
            let mut want = default_options();
            change(&mut want);
            assert_eq!(cfg.options, want, "{text:?}");
            assert_eq!(cfg.doors.len(), 1, "{text:?}");
        }
    }
}

#[test]
fn every_door_directive_alias_and_case() {
    type Check = fn(&Door) -> bool;
    let cases: &[(&str, Check)] = &[
        ("Scan_Threshold = 0", |d| d.scan_threshold == 0),
        ("scan_threshold=20", |d| d.scan_threshold == 20),
        ("SCAN_THRESHOLD = 64", |d| {
            d.scan_threshold == MAX_SCAN_THRESHOLD
        }),
        ("TCPFlags = syn", |d| d.tcp_flags == flags(SYN, 0)),
        ("tcpflags = FIN, !Ack", |d| d.tcp_flags == flags(FIN, ACK)),
        ("Target = 192.0.2.1", |d| {
            d.target == Some("192.0.2.1".parse().unwrap())
        }),
        ("TARGET = 2001:db8::1", |d| {
            d.target == Some("2001:db8::1".parse().unwrap())
        }),
    ];
    for (line, check) in cases {
        let d = door(line);
        assert!(check(&d), "{line:?} gave {d:?}");
    }

    // Timeouts, in seconds.
    type Timeout = fn(&Door) -> Duration;
    let (seq, cmd): (Timeout, Timeout) = (|d| d.seq_timeout, |d| d.cmd_timeout);
    let timeouts: &[(&str, Timeout, u64)] = &[
        ("Seq_Timeout = 7", seq, 7),
        ("SEQ_TIMEOUT=7", seq, 7),
        ("Timeout = 8", seq, 8),
        ("timeout = 8", seq, 8),
        ("seq_timeout = 31536000", seq, MAX_TIMEOUT_SECS),
        ("Cmd_Timeout = 0", cmd, 0),
        ("CMD_TIMEOUT = 60", cmd, 60),
    ];
    for (line, timeout, secs) in timeouts {
        let d = door(line);
        assert_eq!(timeout(&d), Duration::from_secs(*secs), "{line:?}");
    }

    // Commands: the value as written, trimmed (`=` and `#` included).
    type Command = fn(&Door) -> Option<&str>;
    let start: Command = |d| d.start_command.as_deref();
    let start_6: Command = |d| d.start_command_6.as_deref();
    let stop: Command = |d| d.stop_command.as_deref();
    let stop_6: Command = |d| d.stop_command_6.as_deref();
    let commands: &[(&str, Command, &str)] = &[
        ("Start_Command = a = b", start, "a = b"),
        ("Command = iptables -A x=y", start, "iptables -A x=y"),
        ("COMMAND=  spaced  out  ", start, "spaced  out"),
        ("Start_Command_6 = ip6tables", start_6, "ip6tables"),
        ("Command_6 = ip6tables", start_6, "ip6tables"),
        ("start_command_6 =", start_6, ""),
        (
            "Stop_Command = b # not a comment",
            stop,
            "b # not a comment",
        ),
        ("stop_command_6 = c", stop_6, "c"),
        ("Stop_Command_6 =   ", stop_6, ""),
    ];
    for (line, command, want) in commands {
        let d = door(line);
        assert_eq!(command(&d), Some(*want), "{line:?}");
    }
}

#[test]
fn sequence_directive_forms() {
    let cases: &[(&str, &[Knock])] = &[
        (
            "Sequence = 7000,8000,9000",
            &[Knock::tcp(7000), Knock::tcp(8000), Knock::tcp(9000)],
        ),
        (
            "SEQUENCE = 1:UDP , 65535:Tcp",
            &[Knock::udp(1), Knock::tcp(65535)],
        ),
        (
            "sequence=2222:udp,3333",
            &[Knock::udp(2222), Knock::tcp(3333)],
        ),
    ];
    for (line, want) in cases {
        let cfg = parse(&format!("[d]\n{line}\ncommand = x\n"));
        assert_eq!(fixed(&cfg.doors[0]).knocks(), *want, "{line:?}");
    }
    let cfg = parse("[d]\nOne_Time_Sequences = /etc/knockd/otp\ncommand = x\n");
    assert_eq!(
        cfg.doors[0].sequence,
        SequenceSpec::OneTime("/etc/knockd/otp".into())
    );
    let cfg = parse("[d]\nONE_TIME_SEQUENCES=/does/not/exist/yet\ncommand = x\n");
    assert_eq!(
        cfg.doors[0].sequence,
        SequenceSpec::OneTime("/does/not/exist/yet".into())
    );
}

#[test]
fn ipv6_command_fallback() {
    // (body, start v4, start v6, stop v4, stop v6)
    type Want = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: &[(&str, Want)] = &[
        ("command = A", (Some("A"), Some("A"), None, None)),
        (
            "command = A\ncommand_6 = B",
            (Some("A"), Some("B"), None, None),
        ),
        ("command = A\ncommand_6 =", (Some("A"), None, None, None)),
        ("command_6 = B", (None, Some("B"), None, None)),
        (
            "command = A\nstop_command = S",
            (Some("A"), Some("A"), Some("S"), Some("S")),
        ),
        (
            "command = A\nstop_command = S\nstop_command_6 = T",
            (Some("A"), Some("A"), Some("S"), Some("T")),
        ),
        (
            "command = A\nstop_command = S\nstop_command_6 =",
            (Some("A"), Some("A"), Some("S"), None),
        ),
        (
            "command = A\nstart_command_6 =\nstop_command = S\nstop_command_6 =",
            (Some("A"), None, Some("S"), None),
        ),
    ];
    for (body, want) in cases {
        let d = door(body);
        let got = (
            d.start_command_for(false),
            d.start_command_for(true),
            d.stop_command_for(false),
            d.stop_command_for(true),
        );
        assert_eq!(got, *want, "{body:?}");
    }
}

#[test]
fn comments_blank_lines_crlf_bom() {
    let text = "\u{feff}# leading comment\r\n\r\n   # indented comment\r\n[options]\r\n\tUseSyslog\r\n[d]\r\n sequence = 1,2:udp \r\n command = run %IP% \r\n";
    let cfg = parse(text);
    assert!(cfg.options.use_syslog);
    assert_eq!(cfg.doors[0].line, 6);
    assert_eq!(fixed(&cfg.doors[0]).to_string(), "1:tcp,2:udp");
    assert_eq!(cfg.doors[0].start_command.as_deref(), Some("run %IP%"));
    // Errors in a CRLF file get the right line number and no stray \r.
    let errs = errors("[d]\r\nsequence = 1\r\nsequence = 80x\r\n");
    assert_eq!(errs[0].line, Some(3));
    assert!(!errs[0].what.to_string().contains('\r'), "{}", errs[0]);
}

#[test]
fn section_names() {
    let cfg = parse("[ my door ]\nsequence = 1\ncommand = x\n[Options]\nUseSyslog\n[options2]\nsequence = 2\ncommand = y\n");
    let names: Vec<_> = cfg.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["my door", "options2"]);
    assert!(cfg.options.use_syslog);
    // [options] may appear after the doors and more than once.
    let cfg =
        parse("[options]\nlogfile = /a\n[d]\nsequence = 1\ncommand = x\n[options]\npidfile = /p\n");
    assert_eq!(cfg.options.log_file.as_deref(), Some(Path::new("/a")));
    assert_eq!(cfg.options.pid_file, PathBuf::from("/p"));
}

/// (text, line of the error, fragments the message must contain)
const BAD: &[(&str, Option<usize>, &[&str])] = &[
    // ports and protocols
    (
        "[d]\nsequence = 7000,80x",
        Some(2),
        &["port \"80x\" is not a number between 1 and 65535"],
    ),
    ("[d]\n\nsequence = -1", Some(3), &["port \"-1\""]),
    ("[d]\nsequence = abc", Some(2), &["port \"abc\""]),
    ("[d]\nsequence = 70000", Some(2), &["port \"70000\""]),
    ("[d]\nsequence = 0", Some(2), &["port \"0\""]),
    ("[d]\nsequence = 1,,2", Some(2), &["empty item", "\"1,,2\""]),
    ("[d]\nsequence = 1,", Some(2), &["empty item", "\"1,\""]),
    ("[d]\nsequence = 7000:icmp", Some(2), &["protocol \"icmp\""]),
    (
        "[d]\nsequence = 7000 8000",
        Some(2),
        &["port \"7000 8000\"", "separate the knocks with commas"],
    ),
    ("[d]\nsequence =", Some(2), &["\"sequence\"", "empty value"]),
    ("[d]\nsequence", Some(2), &["\"sequence\"", "needs a value"]),
    // unknown / misplaced directives
    (
        "[d]\nsequence = 1\nsequense = 2",
        Some(3),
        &["unknown directive \"sequense\"", "door \"d\""],
    ),
    (
        "[options]\nfoo = bar\n[d]\nsequence = 1",
        Some(2),
        &["unknown directive \"foo\"", "[options]"],
    ),
    (
        "sequence = 1\n[d]\nsequence = 1",
        Some(1),
        &["\"sequence\"", "outside any section"],
    ),
    (
        "logfile = /x\n[d]\nsequence = 1",
        Some(1),
        &["\"logfile\"", "outside any section", "[options]"],
    ),
    (
        "bogus = 1\n[d]\nsequence = 1",
        Some(1),
        &["unknown directive \"bogus\"", "outside any section"],
    ),
    (
        "[d]\nsequence = 1\nlogfile = /x",
        Some(3),
        &["\"logfile\"", "global directive", "door \"d\""],
    ),
    (
        "[d]\nsequence = 1\nUseSyslog",
        Some(3),
        &["\"UseSyslog\"", "global directive"],
    ),
    (
        "[options]\nsequence = 1\n[d]\nsequence = 1",
        Some(2),
        &["\"sequence\"", "door directive", "[options]"],
    ),
    (
        "[options]\ncommand = x\n[d]\nsequence = 1",
        Some(2),
        &["\"command\" (alias of Start_Command)", "door directive"],
    ),
    // door completeness
    ("[d]\ncommand = x", Some(1), &["door \"d\"", "no Sequence"]),
    (
        "[a]\nsequence = 1\n[b]\nseq_timeout = 5",
        Some(3),
        &["door \"b\"", "no Sequence"],
    ),
    (
        "[d]\nsequence = 1\none_time_sequences = /x",
        Some(3),
        &[
            "door \"d\"",
            "both Sequence (line 2) and One_Time_Sequences (line 3)",
        ],
    ),
    (
        "[d]\none_time_sequences = /x\nsequence = 1",
        Some(3),
        &["both Sequence (line 3) and One_Time_Sequences (line 2)"],
    ),
    (
        "[d]\none_time_sequences =",
        Some(2),
        &["\"one_time_sequences\"", "empty value"],
    ),
    // TCP flags
    (
        "[d]\nsequence = 1\ntcpflags = syn,!syn",
        Some(3),
        &["\"syn,!syn\"", "\"syn\" is both required and excluded"],
    ),
    (
        "[d]\nsequence = 1\ntcpflags = syn,sin",
        Some(3),
        &["\"syn,sin\"", "unknown TCP flag \"sin\""],
    ),
    (
        "[d]\nsequence = 1\ntcpflags = syn,syn",
        Some(3),
        &["\"syn,syn\"", "listed twice"],
    ),
    (
        "[d]\nsequence = 1\ntcpflags =",
        Some(3),
        &["\"tcpflags\"", "empty value"],
    ),
    // scan guard
    (
        "[d]\nsequence = 1\nscan_threshold = 65",
        Some(3),
        &["scan_threshold \"65\"", "from 0 (guard off) to 64"],
    ),
    (
        "[d]\nsequence = 1\n\nScan_Threshold = -1",
        Some(4),
        &["Scan_Threshold \"-1\"", "not a whole number"],
    ),
    (
        "[d]\nsequence = 1\nscan_threshold = +3",
        Some(3),
        &["\"+3\""],
    ),
    (
        "[d]\nsequence = 1\nscan_threshold = yes",
        Some(3),
        &["\"yes\""],
    ),
    (
        "[options]\nscan_threshold = 3\n[d]\nsequence = 1",
        Some(2),
        &["door directive"],
    ),
    // timeouts
    (
        "[d]\nsequence = 1\nseq_timeout = 0",
        Some(3),
        &["seq_timeout \"0\"", "at least 1 second"],
    ),
    (
        "[d]\nsequence = 1\ntimeout = 0",
        Some(3),
        &["timeout \"0\"", "at least 1 second"],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = -5",
        Some(3),
        &["seq_timeout \"-5\"", "not a whole"],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = 1.5",
        Some(3),
        &["seq_timeout \"1.5\"", "not a whole"],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = ten",
        Some(3),
        &["seq_timeout \"ten\"", "not a whole"],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = 10s",
        Some(3),
        &["seq_timeout \"10s\""],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = 99999999999999999999999",
        Some(3),
        &["\"99999999999999999999999\"", "maximum"],
    ),
    (
        "[d]\nsequence = 1\ncmd_timeout = -1",
        Some(3),
        &["cmd_timeout \"-1\"", "not a whole"],
    ),
    (
        "[d]\nsequence = 1\ncmd_timeout = 31536001",
        Some(3),
        &["cmd_timeout \"31536001\"", "maximum"],
    ),
    (
        "[d]\nsequence = 1\ncmd_timeout =",
        Some(3),
        &["\"cmd_timeout\"", "empty value"],
    ),
    // target
    (
        "[d]\nsequence = 1\ntarget = 1.2.3",
        Some(3),
        &["target \"1.2.3\"", "not an IPv4 or IPv6 address"],
    ),
    (
        "[d]\nsequence = 1\ntarget = example.com",
        Some(3),
        &["target \"example.com\""],
    ),
    (
        "[d]\nsequence = 1\ntarget = [::1]",
        Some(3),
        &["target \"[::1]\""],
    ),
    // repeated directives, aliases included
    (
        "[d]\nsequence = 1\nsequence = 2",
        Some(3),
        &["Sequence given twice in this section (first at line 2)"],
    ),
    (
        "[d]\nsequence = 1\nseq_timeout = 5\ntimeout = 6",
        Some(4),
        &["Seq_Timeout given twice", "first at line 3", "\"6\""],
    ),
    (
        "[d]\nsequence = 1\ncommand = a\nstart_command = b",
        Some(4),
        &["Start_Command given twice", "\"b\""],
    ),
    (
        "[options]\nUseSyslog\nusesyslog\n[d]\nsequence = 1",
        Some(3),
        &["UseSyslog given twice"],
    ),
    (
        "[options]\nlogfile = /a\n[d]\nsequence = 1\n[options]\nlogfile = /b",
        Some(6),
        &["LogFile given twice", "first at line 2", "\"/b\""],
    ),
    // malformed lines
    (
        "[d]\nsequence = 1\njust some words",
        Some(3),
        &["\"just some words\"", "neither a [section] header"],
    ),
    (
        "[d]\nsequence = 1\n= 5",
        Some(3),
        &["\"= 5\"", "no directive name"],
    ),
    (
        "[d\nsequence = 1",
        Some(1),
        &["\"[d\"", "does not end with \"]\""],
    ),
    (
        "[]\nsequence = 1\n[d]\nsequence = 1",
        Some(1),
        &["empty section name \"[]\""],
    ),
    (
        "[  ]\n[d]\nsequence = 1",
        Some(1),
        &["empty section name \"[  ]\""],
    ),
    // global values
    (
        "[options]\nUseSyslog = yes\n[d]\nsequence = 1",
        Some(2),
        &["\"UseSyslog\"", "takes no value", "\"yes\""],
    ),
    (
        "[options]\nlogfile\n[d]\nsequence = 1",
        Some(2),
        &["\"logfile\"", "needs a value"],
    ),
    (
        "[options]\nlogfile =\n[d]\nsequence = 1",
        Some(2),
        &["\"logfile\"", "empty value"],
    ),
    (
        "[options]\npidfile =  \n[d]\nsequence = 1",
        Some(2),
        &["\"pidfile\"", "empty value"],
    ),
    (
        "[options]\ninterface = /dev/eth0\n[d]\nsequence = 1",
        Some(2),
        &["\"/dev/eth0\"", "path"],
    ),
    (
        "[options]\ninterface = averyveryverylongname\n[d]\nsequence = 1",
        Some(2),
        &["\"averyveryverylongname\"", "15"],
    ),
    (
        "[options]\ninterface = eth 0\n[d]\nsequence = 1",
        Some(2),
        &["\"eth 0\""],
    ),
    (
        "[d]\nsequence = 1\nstart_command =",
        Some(3),
        &["\"start_command\"", "empty value"],
    ),
    (
        "[d]\nsequence = 1\nstop_command =",
        Some(3),
        &["\"stop_command\"", "empty value"],
    ),
    // nothing to do
    ("", None, &["empty", "nothing to do"]),
    (
        "\n\n# only comments\n   \n",
        None,
        &["empty", "nothing to do"],
    ),
    (
        "[options]\nUseSyslog\n",
        None,
        &["no door", "nothing to do"],
    ),
];

#[test]
fn bad_input_is_located_and_quoted() {
    for (text, line, fragments) in BAD {
        let errs = errors(text);
        let e = &errs[0];
        assert_eq!(e.file, F, "{text:?}");
        assert_eq!(e.line, *line, "{text:?}: {errs:?}");
        let shown = e.to_string();
        match line {
            Some(l) => assert!(shown.starts_with(&format!("{F}:{l}: ")), "{shown}"),
            None => assert!(shown.starts_with(&format!("{F}: ")), "{shown}"),
        }
        for frag in *fragments {
            assert!(shown.contains(frag), "{text:?}: {shown:?} lacks {frag:?}");
        }
    }
}

#[test]
fn reports_every_error_in_line_order() {
    let text = "\
sequence = 1
[options]
bogus = 1
[a]
sequence = 80x
tcpflags = syn,!syn
seq_timeout = 0
target = nowhere
[b]
command = x
";
    let errs = errors(text);
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [
            Some(1),
            Some(3),
            Some(5),
            Some(6),
            Some(7),
            Some(8),
            Some(9)
        ]
    );
    let all = ConfigErrors(errs).to_string();
    assert_eq!(all.lines().count(), 7);
    assert!(all.contains("knockd.conf:5: port \"80x\" is not a number between 1 and 65535"));
}

/// Texts that parse, and every warning each gives, in order.
const WARNINGS: &[(&str, &[&str])] = &[
    (
        "[d]\nsequence = 1\ncommand = x\n[d]\nsequence = 2\ncommand = y\n",
        &["knockd.conf:4: door \"d\" is defined twice (first at line 1); both are used"],
    ),
    (
        "[d]\nsequence = 1\n",
        &["knockd.conf:1: door \"d\" has no Start_Command: a successful knock is only logged"],
    ),
    // An empty IPv6 command is not a command.
    (
        "[d]\nsequence = 1\ncommand_6 =\n",
        &["knockd.conf:1: door \"d\" has no Start_Command: a successful knock is only logged"],
    ),
    // An IPv6-only door is fine.
    ("[d]\nsequence = 1\ncommand_6 = x\n", &[]),
    (
        "[d]\nsequence = 1\ncommand = x\ncmd_timeout = 5\n",
        &["knockd.conf:4: door \"d\": Cmd_Timeout has no effect without Stop_Command"],
    ),
    (
        "[a]\nsequence = 1,2\ncommand = x\n[b]\nsequence = 1:tcp, 2\ncommand = y\n",
        &["knockd.conf:4: door \"b\" has the same sequence as door \"a\" (line 1); one knock opens both"],
    ),
    // Different targets: no clash.
    (
        "[a]\nsequence = 1\ncommand = x\n[b]\nsequence = 1\ntarget = 192.0.2.1\ncommand = y\n",
        &[],
    ),
    (
        "[options]\nlogfile = knockd.log\n[d]\none_time_sequences = otp.txt\ncommand = x\n",
        &[
            "knockd.conf:2: LogFile \"knockd.log\" is a relative path; it is resolved from the daemon's working directory",
            "knockd.conf:4: One_Time_Sequences \"otp.txt\" is a relative path; it is looked up from the daemon's working directory",
        ],
    ),
];

#[test]
fn warnings() {
    for (text, want) in WARNINGS {
        assert_eq!(texts(&parse(text).warnings), *want, "{text:?}");
    }
    assert_eq!(parse(WARNINGS[0].0).doors.len(), 2, "both doors are kept");
}

/// A sequence is a secret: no error or warning quotes it, even when the
/// directive is repeated or two doors share it.
#[test]
fn messages_never_quote_a_sequence() {
    let twice = "[d]\nsequence = 4711,5822\nsequence = 6933:udp\ncommand = x\n";
    let shared =
        "[a]\nsequence = 4711,5822\ncommand = x\n[b]\nsequence = 4711:tcp,5822\ncommand = y\n";
    let mut shown = texts(&errors(twice));
    shown.extend(texts(&parse(shared).warnings));
    assert_eq!(shown.len(), 2, "{shown:?}");
    for text in &shown {
        for port in ["4711", "5822", "6933"] {
            assert!(!text.contains(port), "{text:?} quotes {port}");
        }
    }
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(dir.path(), "good.conf", DEBIAN_CONF, 0o644);
    assert_eq!(load(&good).unwrap().doors.len(), 3);

    let missing = dir.path().join("missing.conf");
    let shown = load_error(&missing).to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read", missing.display())),
        "{shown}"
    );

    let e = load_error(dir.path());
    assert!(e.to_string().contains("directory"), "{e}");

    let text = b"[d]\nsequence = 1\ncommand = caf\xe9\n";
    let e = load_error(&write_file(dir.path(), "bad.conf", text, 0o644));
    assert_eq!(e.line, Some(3));
    assert!(matches!(e.what, ConfigProblem::NotUtf8), "{e}");
    assert!(e.to_string().ends_with("the line is not valid UTF-8 text"));

    let located = write_file(dir.path(), "located.conf", "[d]\nsequence = 80x\n", 0o644);
    assert_eq!(
        load_error(&located).to_string(),
        format!(
            "{}:2: port \"80x\" is not a number between 1 and 65535",
            located.display()
        )
    );
}

#[test]
fn errors_are_typed_and_keep_their_cause() {
    let e = &errors("[d]\nsequence = 1\ncommand = x\ntimeout\n")[0];
    assert!(
        matches!(&e.what, ConfigProblem::NoValue { what }
            if what.directive == Directive::SeqTimeout && what.key == "timeout"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "knockd.conf:4: \"timeout\" (alias of Seq_Timeout) needs a value: Seq_Timeout = ..."
    );
    // A file that cannot be read keeps the io::Error as the cause.
    let dir = tempfile::tempdir().unwrap();
    let e = load_error(&dir.path().join("missing.conf"));
    let cause = std::error::Error::source(&e).expect("a cause");
    let io = cause
        .downcast_ref::<std::io::Error>()
        .expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn load_stops_reading_an_endless_file() {
    // /dev/zero is writable by everybody: refused before any read.
    assert_eq!(
        load_error(Path::new("/dev/zero")).to_string(),
        "/dev/zero: refusing a file writable by group or others (mode 0666; chmod go-w fixes it)"
    );
    // A private FIFO fed without end is read only up to the bound.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("endless.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        let chunk = vec![b'#'; 1 << 16];
        // Ends when the reader closes the pipe (EPIPE).
        while w.write_all(&chunk).is_ok() {}
    });
    let e = load_error(&fifo);
    writer.join().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read: larger than {MAX_CONFIG_BYTES} bytes",
            fifo.display()
        )
    );
}

#[test]
fn load_refuses_a_file_others_may_write_naming_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[d]\nsequence = 1\ncommand = true\n";
    let p = write_file(dir.path(), "knockd.conf", text, 0o664);
    assert_eq!(
        load_error(&p).to_string(),
        format!(
            "{}: refusing a file writable by group or others (mode 0664; chmod go-w fixes it)",
            p.display()
        )
    );
    chmod(&p, 0o644);
    assert_eq!(load(&p).unwrap().doors.len(), 1);
}

#[test]
fn interface_names() {
    for ok in ["eth0", "any", "wlp3s0", "br-lan.100", "abcdefghijklmno"] {
        assert_eq!(validate_interface_name(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "/dev/eth0",
        "eth 0",
        "abcdefghijklmnop",
        "eth0:1",
        "a\tb",
    ] {
        assert!(validate_interface_name(bad).is_err(), "{bad:?}");
    }
}

proptest::proptest! {
    #[test]
    fn never_panics(text in "(\\PC|\n|\r|\\[|\\]|=|#){0,200}") {
        let _ = parse_str(&text, F);
    }

    #[test]
    fn valid_doors_round_trip(
        port in 1u16..=65535,
        udp in proptest::bool::ANY,
        secs in 1u64..=MAX_TIMEOUT_SECS,
        cmd in "[a-z%/][a-z%=/ ]{0,29}",
    ) {
        let proto = if udp { "udp" } else { "tcp" };
        let text = format!("[door]\nsequence = {port}:{proto}\nseq_timeout = {secs}\ncommand = {cmd}\n");
        let cfg = parse_str(&text, F).unwrap();
        let d = &cfg.doors[0];
        proptest::prop_assert_eq!(fixed(d).to_string(), format!("{port}:{proto}"));
        proptest::prop_assert_eq!(d.seq_timeout, Duration::from_secs(secs));
        proptest::prop_assert_eq!(d.start_command.as_deref(), Some(cmd.trim()));
    }
}

const SECRET: &str = "[d]\nSequence_Secret = /etc/knockd/d.key\n";

#[test]
fn rotating_door_defaults() {
    let c = parse(SECRET);
    let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
        panic!("{c:?}")
    };
    assert_eq!(r.secret, PathBuf::from("/etc/knockd/d.key"));
    assert_eq!(r.secret_line, 2);
    assert!(r.key.is_none(), "parse_str never reads the key");
    assert_eq!(r.length, 3);
    assert_eq!(r.period, 30);
    assert_eq!(r.skew, 1);
    assert_eq!(r.range, rotate::DEFAULT_RANGE);
    assert_eq!(r.proto, Proto::Tcp);
    assert!(!r.bind_source);
    assert_eq!(r.state, PathBuf::from("/var/lib/knockd/rotating-d.window"));
}

#[test]
fn rotating_door_every_directive() {
    let c = parse(
        "[d]\nsequence_secret = k\nSequence_Length = 16\nSequence_Period = 86400\n\
         Sequence_Skew = 10\nSequence_Ports = 7000-7015\nSequence_Protocol = UDP\n\
         Sequence_Bind_Source = Yes\nSequence_State = /run/d.window\n",
    );
    let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
        panic!("{c:?}")
    };
    assert_eq!(
        (
            r.length,
            r.period,
            r.skew,
            r.range.to_string(),
            r.proto,
            r.bind_source
        ),
        (16, 86400, 10, "7000-7015".to_string(), Proto::Udp, true)
    );
    assert_eq!(r.state, PathBuf::from("/run/d.window"));
    assert!(texts(&c.warnings)
        .iter()
        .any(|w| w.contains("relative path")));
}

#[test]
fn rotating_door_errors() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "Sequence = 1,2,3\n",
            3,
            "both Sequence_Secret (line 2) and Sequence (line 3)",
        ),
        (
            "One_Time_Sequences = /x\n",
            3,
            "One_Time_Sequences (line 3)",
        ),
        ("Sequence_Length = 0\n", 3, "Sequence_Length \"0\""),
        ("Sequence_Length = 17\n", 3, "between 1 and 16"),
        ("Sequence_Period = 0\n", 3, "Sequence_Period \"0\""),
        ("Sequence_Period = 86401\n", 3, "between 1 and 86400"),
        ("Sequence_Skew = -1\n", 3, "Sequence_Skew \"-1\""),
        ("Sequence_Skew = 11\n", 3, "between 0 and 10"),
        ("Sequence_Ports = 1-2-3\n", 3, "\"1-2-3\""),
        ("Sequence_Ports = 0-5\n", 3, "starts at 0"),
        ("Sequence_Ports = 9-5\n", 3, "reversed"),
        (
            "Sequence_Ports = 5-5\nSequence_Length = 2\n",
            4,
            "holds only 1",
        ),
        ("Sequence_Protocol = sctp\n", 3, "\"sctp\""),
        ("Sequence_Bind_Source = 1\n", 3, "neither yes nor no"),
    ];
    for (extra, line, what) in cases {
        let e = errors(&format!("{SECRET}{extra}"));
        assert_eq!(e.len(), 1, "{extra}: {e:?}");
        assert_eq!(e[0].line, Some(*line), "{extra}: {e:?}");
        assert!(e[0].what.to_string().contains(what), "{extra}: {}", e[0]);
    }
    // Companions without Sequence_Secret.
    let e = errors("[d]\nSequence = 1\nSequence_Skew = 2\nSequence_Ports = 1-9\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0]
        .what
        .to_string()
        .contains("Sequence_Skew in door \"d\" needs Sequence_Secret"));
    assert_eq!(e[1].line, Some(4));
}

#[test]
fn default_state_paths_are_distinct_plain_file_names() {
    let a = default_state_path("open ssh/../x");
    assert_eq!(
        a,
        PathBuf::from("/var/lib/knockd/rotating-open%20ssh%2F%2E%2E%2Fx.window")
    );
    assert_ne!(default_state_path("a b"), default_state_path("a%20b"));
    assert_eq!(a.parent(), Some(Path::new(DEFAULT_STATE_DIR)));
}

#[test]
fn load_reads_the_key_and_refuses_a_readable_one() {
    let d = tempfile::tempdir().unwrap();
    let key_text = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n";
    let key = write_file(d.path(), "k", key_text, 0o600);
    let text = format!("[d]\n\nSequence_Secret = {}\n", key.display());
    let conf = write_file(d.path(), "c", &text, 0o644);
    let c = load(&conf).unwrap();
    let SequenceSpec::Rotating(r) = &c.doors[0].sequence else {
        panic!()
    };
    assert_eq!(r.key.as_ref().map(|k| k.len()), Some(30));
    chmod(&key, 0o640);
    let e = load_error(&conf);
    assert_eq!(e.line, Some(3));
    assert!(e.to_string().contains("group or others"), "{e}");
    assert!(!e.to_string().contains("JBSW"));
}
