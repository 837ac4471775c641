//! Knocking with the tools people actually knock with, on the usual server:
//! a firewall (iptables) that drops the knock ports and a real service
//! (socat) behind it that the door opens for the knocker.
//!
//! Behind a `DROP`, a `connect()`-based client (`nc -z`, curl, wget, bash
//! `/dev/tcp`, socat, `nmap -sT`) sends its SYN again and again while it
//! waits, wget tries a second connection, a browser opens two connections
//! per URL, and `nc -u -z` sends several datagrams: every hit arrives
//! several times. Single-packet clients (our `knock`, the classic one,
//! `hping3 -S -c 1`, `nmap -sS --max-retries 0`) send each hit once. Every
//! one of them must open the door exactly once: its start command runs once.
//!
//! Each client knocks in its own lab (server and client namespaces, daemon
//! with `-D`), all labs at once, so the whole file takes about as long as
//! the slowest client. Per client:
//! 1. the service is unreachable (the firewall drops it);
//! 2. the client knocks hit by hit, each run bounded by the client's own
//!    timeout (the firewall makes every connect wait for it);
//! 3. the door's start command has run, and the service answers;
//! 4. every client process has exited, so none of its packets is still to
//!    come; a closing knock on a second door from the same address opens
//!    that door — the daemon handles packets in order, so by then it has
//!    handled every retransmission of the client;
//! 5. the door's start command ran exactly once (its file has one line, the
//!    log one `OPEN SESAME` and one `Stage 1`), the other door never opened,
//!    and the daemon's packet lines show the client really sent what it is
//!    known for (retransmitted SYNs, two connections, several datagrams, or
//!    exactly one packet), so the scenario cannot pass by accident.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netns_tests::scenario::{lines, wait_lines};
use netns_tests::wait::{poll_until, DEFAULT_TIMEOUT};
use netns_tests::{bins, require_root, Conf, Daemon, Lab, Proc, RunOutput};

/// The TCP door's sequence (`TCPFlags = syn`).
const TCP_PORTS: [u16; 3] = [7000, 8000, 9000];
/// The UDP door's sequence.
const UDP_PORTS: [u16; 3] = [7001, 8001, 9001];
/// The real service behind the firewall; the doors open it.
const SERVICE: u16 = 2222;
/// The one-port door of the closing knock.
const CLOSING: u16 = 6000;
/// Upper bound for one run of a client (its own timeouts are 1 to 5 s).
const CLIENT_BOUND: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The door knocked over this protocol (also the name of its file).
    fn door(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    fn other(self) -> Proto {
        match self {
            Proto::Tcp => Proto::Udp,
            Proto::Udp => Proto::Tcp,
        }
    }

    fn ports(self) -> [u16; 3] {
        match self {
            Proto::Tcp => TCP_PORTS,
            Proto::Udp => UDP_PORTS,
        }
    }
}

/// How a client runs. In the commands, `{h}` is the server's address, `{p}`
/// a port, `{ports}` the whole sequence and `{knock}` our client.
#[derive(Debug, Clone, Copy)]
enum How {
    /// `copies` runs of the command per hit, started together; the hits one
    /// after the other, each once the previous one's runs have exited.
    EachHit { cmd: &'static str, copies: usize },
    /// One command for the whole sequence.
    Whole(&'static str),
}

/// What the daemon must have seen from the client, per port of the
/// sequence (from its `-D` packet lines).
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// Exactly one packet.
    One,
    /// At least `sources` source ports, one of which sent `repeats` packets
    /// or more (a SYN retransmitted while the connect waited, or the
    /// datagrams of one socket).
    Repeated { sources: usize, repeats: usize },
}

#[derive(Debug, Clone, Copy)]
struct Client {
    name: &'static str,
    proto: Proto,
    how: How,
    wire: Wire,
}

/// One connection per hit whose SYN is retransmitted while it waits.
const RETRANSMITS: Wire = Wire::Repeated {
    sources: 1,
    repeats: 2,
};

/// The clients, as a user types them (bounded by their own timeouts).
const CLIENTS: &[Client] = &[
    Client {
        name: "knock",
        proto: Proto::Tcp,
        how: How::Whole("{knock} {h} {ports}"),
        wire: Wire::One,
    },
    Client {
        name: "classic-knock",
        proto: Proto::Tcp,
        how: How::Whole("/usr/bin/knock {h} {ports}"),
        wire: Wire::One,
    },
    Client {
        name: "hping3",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "hping3 -q -S -c 1 -p {p} {h}",
            copies: 1,
        },
        wire: Wire::One,
    },
    Client {
        name: "nmap-sS",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "nmap -n -Pn -sS --max-retries 0 -p {p} {h}",
            copies: 1,
        },
        wire: Wire::One,
    },
    Client {
        name: "nc-z",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "nc -z -w 2 {h} {p}",
            copies: 1,
        },
        wire: RETRANSMITS,
    },
    Client {
        name: "curl",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "curl -s -m 2 http://{h}:{p}/",
            copies: 1,
        },
        wire: RETRANSMITS,
    },
    Client {
        // wget tries again after a timeout (20 times by default; twice here).
        name: "wget",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "wget -q -O /dev/null -T 2 -t 2 http://{h}:{p}/",
            copies: 1,
        },
        wire: Wire::Repeated {
            sources: 2,
            repeats: 2,
        },
    },
    Client {
        name: "bash-dev-tcp",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "timeout 3 bash -c 'echo > /dev/tcp/{h}/{p}'",
            copies: 1,
        },
        wire: RETRANSMITS,
    },
    Client {
        name: "socat",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "socat -u OPEN:/dev/null TCP:{h}:{p},connect-timeout=2",
            copies: 1,
        },
        wire: RETRANSMITS,
    },
    Client {
        name: "nmap-sT",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "nmap -n -Pn -sT -p {p} {h}",
            copies: 1,
        },
        // nmap gives up on its connect after about a second and tries
        // again with a new one.
        wire: Wire::Repeated {
            sources: 2,
            repeats: 1,
        },
    },
    Client {
        // A browser opens two connections per URL.
        name: "browser",
        proto: Proto::Tcp,
        how: How::EachHit {
            cmd: "curl -s -m 2 http://{h}:{p}/",
            copies: 2,
        },
        wire: Wire::Repeated {
            sources: 2,
            repeats: 2,
        },
    },
    Client {
        // `-z` alone sends no datagram at all (netcat-openbsd 1.219); with
        // `-v` it probes with three from one socket.
        name: "nc-u-zv",
        proto: Proto::Udp,
        how: How::EachHit {
            cmd: "nc -u -z -v -w 1 {h} {p}",
            copies: 1,
        },
        wire: Wire::Repeated {
            sources: 1,
            repeats: 2,
        },
    },
    Client {
        name: "nc-u-stdin",
        proto: Proto::Udp,
        how: How::EachHit {
            cmd: "echo knock | nc -u -w 1 {h} {p}",
            copies: 1,
        },
        wire: Wire::One,
    },
];

/// `sh -c` command text of a client run.
fn expand(template: &str, h: &str, port: Option<u16>, ports: &[u16]) -> String {
    let seq: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut s = template
        .replace("{knock}", &bins::knock().display().to_string())
        .replace("{h}", h)
        .replace("{ports}", &seq.join(" "));
    if let Some(p) = port {
        s = s.replace("{p}", &p.to_string());
    }
    s
}

fn run_ok(lab: &Lab, ns: &str, program: &str, args: &[&str]) -> RunOutput {
    let out = lab.run(ns, program, args);
    out.assert_success();
    out
}

/// The server: knock ports and service dropped by the firewall, the
/// service listening, and our daemon (`-D`) with the doors `tcp`, `udp`
/// (each appending the knocker's address to the file of its name and
/// opening the service for it) and `closing`. The service lives as long
/// as the returned guard.
fn server(lab: &Lab) -> (Daemon, Proc) {
    let s = &lab.server_ns;
    let tcp_ports = format!(
        "{},{},{},{SERVICE}",
        TCP_PORTS[0], TCP_PORTS[1], TCP_PORTS[2]
    );
    let udp_ports = format!("{},{},{}", UDP_PORTS[0], UDP_PORTS[1], UDP_PORTS[2]);
    for (proto, ports) in [("tcp", tcp_ports.as_str()), ("udp", udp_ports.as_str())] {
        run_ok(
            lab,
            s,
            "iptables",
            &[
                "-w",
                "-A",
                "INPUT",
                "-p",
                proto,
                "-m",
                "multiport",
                "--dports",
                ports,
                "-j",
                "DROP",
            ],
        );
    }
    let service = lab.spawn(
        s,
        "socat",
        &[
            &format!("TCP-LISTEN:{SERVICE},fork,reuseaddr"),
            "SYSTEM:echo ok",
        ],
    );
    let listening = poll_until(DEFAULT_TIMEOUT, || {
        lab.run(s, "ss", &["-Hltn", &format!("sport = :{SERVICE}")])
            .stdout
            .contains(&format!(":{SERVICE}"))
            .then_some(())
    });
    assert!(listening.is_some(), "socat did not listen on {SERVICE}");

    let open = |file: &str| {
        format!(
            "{}; iptables -w -I INPUT -s %IP% -p tcp --dport {SERVICE} -j ACCEPT",
            lab.append_ip(file)
        )
    };
    let (tcp_cmd, udp_cmd) = (open("tcp"), open("udp"));
    let closing_cmd = lab.append_ip("closing");
    let seq = |ports: [u16; 3], suffix: &str| {
        ports
            .iter()
            .map(|p| format!("{p}{suffix}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (tcp_seq, udp_seq) = (seq(TCP_PORTS, ""), seq(UDP_PORTS, ":udp"));
    let closing_seq = CLOSING.to_string();
    // Default Seq_Timeout (25 s): the slowest client (wget) takes 15 s.
    let conf = Conf::new(&[])
        .door(
            "tcp",
            &[
                ("Sequence", tcp_seq.as_str()),
                ("TCPFlags", "syn"),
                ("Start_Command", tcp_cmd.as_str()),
            ],
        )
        .door(
            "udp",
            &[
                ("Sequence", udp_seq.as_str()),
                ("Start_Command", udp_cmd.as_str()),
            ],
        )
        .door(
            "closing",
            &[
                ("Sequence", closing_seq.as_str()),
                ("Start_Command", closing_cmd.as_str()),
            ],
        );
    (
        lab.start_daemon(&bins::knockd(), conf.text(), &["-D"]),
        service,
    )
}

/// Does the service answer the client (within one second)?
fn service_answers(lab: &Lab) -> bool {
    let target = format!("TCP:{}:{SERVICE},connect-timeout=1", lab.server_v4());
    let out = lab.run(&lab.client_ns, "socat", &["-u", &target, "STDOUT"]);
    out.success() && out.stdout.trim() == "ok"
}

/// Packets the daemon decoded from `src` to `port` over `proto`, counted
/// per source port (its `-D` lines `packet: SRC:SPORT -> DST:PORT PROTO flags F`).
fn packets(d: &Daemon, src: &str, port: u16, proto: Proto) -> HashMap<u16, usize> {
    let mut per_source = HashMap::new();
    for line in d.proc.output_text().lines() {
        let Some(rest) = line.split("packet: ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [from, "->", to, p, ..] = words.as_slice() else {
            continue;
        };
        let split = |a: &str| -> Option<(String, u16)> {
            let (ip, port) = a.rsplit_once(':')?;
            Some((ip.to_owned(), port.parse().ok()?))
        };
        let (Some((ip, sport)), Some((_, dport))) = (split(from), split(to)) else {
            continue;
        };
        if ip == src && dport == port && *p == proto.door() {
            *per_source.entry(sport).or_insert(0) += 1;
        }
    }
    per_source
}

/// Run every hit of `client` against the lab's server from its client
/// namespace; returns a transcript of the runs (for failure messages).
fn knock_with(lab: &Lab, client: &Client) -> String {
    let h = lab.s4();
    let ports = client.proto.ports();
    let runs: Vec<(String, usize)> = match client.how {
        How::Whole(cmd) => vec![(expand(cmd, &h, None, &ports), 1)],
        How::EachHit { cmd, copies } => ports
            .iter()
            .map(|&p| (expand(cmd, &h, Some(p), &ports), copies))
            .collect(),
    };
    let mut transcript = String::new();
    for (cmd, copies) in runs {
        let started = Instant::now();
        let mut procs: Vec<_> = (0..copies)
            .map(|_| lab.spawn(&lab.client_ns, "sh", &["-c", &cmd]))
            .collect();
        for p in &mut procs {
            let status = p.wait_exit(CLIENT_BOUND);
            assert!(
                status.is_some(),
                "{}: `{cmd}` still runs after {CLIENT_BOUND:?}",
                client.name
            );
            transcript.push_str(&format!(
                "$ {cmd}  -> {:?} after {:.1?}\n{}",
                status.unwrap(),
                started.elapsed(),
                p.output_text()
            ));
        }
    }
    transcript
}

/// The whole scenario for one client (see the module doc); panics with
/// the daemon's log and the client's transcript.
fn opens_exactly_once(client: &Client) {
    let lab = Lab::new(&format!("rc-{}", client.name));
    let (d, _service) = server(&lab);
    let h = lab.s4();
    let c = lab.client_v4().to_string();
    let door = client.proto.door();
    assert!(
        !service_answers(&lab),
        "{}: the firewall does not drop the service",
        client.name
    );

    let transcript = knock_with(&lab, client);
    let why = |what: &str| {
        format!(
            "{}: {what}\n--- client runs:\n{transcript}{}",
            client.name,
            d.dump()
        )
    };
    let opened = poll_until(DEFAULT_TIMEOUT, || {
        (!lines(&lab.path(door)).is_empty()).then_some(())
    });
    assert!(opened.is_some(), "{}", why("the door did not open"));
    let reachable = poll_until(DEFAULT_TIMEOUT, || service_answers(&lab).then_some(()));
    assert!(
        reachable.is_some(),
        "{}",
        why("the service stays closed after the knock")
    );

    // Every client process has exited: nothing of the knock is still on
    // its way. The closing knock is handled after all of it.
    lab.knock(&lab.client_ns, &[&h, &CLOSING.to_string()]);
    wait_lines(&lab.path("closing"), 1, &d);

    assert_eq!(
        lines(&lab.path(door)),
        [c.as_str()],
        "{}",
        why("the start command must run exactly once")
    );
    assert_eq!(
        d.log_count(&format!("{c}: {door}: OPEN SESAME")),
        1,
        "{}",
        why("one OPEN SESAME")
    );
    assert_eq!(
        d.log_count(&format!("{c}: {door}: Stage 1")),
        1,
        "{}",
        why("one attempt (one Stage 1)")
    );
    let other = client.proto.other().door();
    assert!(
        lines(&lab.path(other)).is_empty(),
        "{}",
        why(&format!("door {other} opened"))
    );

    // The client sent what it is known for.
    for port in client.proto.ports() {
        let seen = packets(&d, &c, port, client.proto);
        let total: usize = seen.values().sum();
        let ok = match client.wire {
            Wire::One => total == 1,
            Wire::Repeated { sources, repeats } => {
                seen.len() >= sources && seen.values().any(|&n| n >= repeats)
            }
        };
        assert!(
            ok,
            "{}",
            why(&format!(
                "port {port}: expected {:?}, saw packets per source port {seen:?}",
                client.wire
            ))
        );
    }
}

#[test]
fn every_ordinary_client_opens_the_firewalled_door_exactly_once() {
    require_root!("every_ordinary_client_opens_the_firewalled_door_exactly_once");
    // Build the binaries once, before the threads need them.
    let _ = (bins::knockd(), bins::knock());
    let started = Instant::now();
    let handles: Vec<_> = CLIENTS
        .iter()
        .map(|client| {
            let client = *client;
            let h = std::thread::Builder::new()
                .name(client.name.to_owned())
                .spawn(move || {
                    let t = Instant::now();
                    opens_exactly_once(&client);
                    t.elapsed()
                })
                .expect("spawning a client thread");
            (client.name, h)
        })
        .collect();
    let mut failed = Vec::new();
    for (name, h) in handles {
        match h.join() {
            Ok(took) => eprintln!("{name}: opened exactly once ({took:.1?})"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("=== {name}:\n{msg}"));
            }
        }
    }
    eprintln!("all clients: {:.1?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "{} of {} clients failed:\n{}",
        failed.len(),
        CLIENTS.len(),
        failed.join("\n")
    );
}
