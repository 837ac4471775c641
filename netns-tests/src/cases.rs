//! Table-driven scenarios: [`each`] runs every case of a table and fails
//! naming the cases that failed, and [`opens`] is the scenario the
//! compatibility tables share: a client (ours or the classic one) knocks a
//! one-door daemon (ours or the classic one) and the door opens for the
//! client's address.

use std::panic::{self, AssertUnwindSafe};

use crate::{expect_file, Conf, Daemon, Lab, RunOutput};

/// Run `run(name, case)` for every `(name, case)` row. A failing case does
/// not stop the ones after it: its panic (with the daemon's logs) is
/// printed when it happens, and at the end the test fails naming every
/// case that failed.
pub fn each<C>(cases: &[(&str, C)], mut run: impl FnMut(&str, &C)) {
    let mut failed = Vec::new();
    for (name, case) in cases {
        if panic::catch_unwind(AssertUnwindSafe(|| run(name, case))).is_err() {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "failed case(s), see their messages above: {}",
        failed.join(", ")
    );
}

/// One implementation of the knock suite: how to run its client and how
/// to start its daemon.
#[derive(Clone, Copy)]
pub struct Suite {
    /// Run the client with these arguments in this namespace; it must
    /// succeed.
    pub knock: fn(&Lab, &str, &[&str]) -> RunOutput,
    /// Start the daemon with this configuration on the server veth, once
    /// it listens.
    pub knockd: fn(&Lab, &Conf) -> Daemon,
}

/// Our `knock` and `knockd`.
pub const OURS: Suite = Suite {
    knock: Lab::knock,
    knockd: Lab::our_daemon,
};

/// Debian's `knock` and `knockd` (0.8).
pub const CLASSIC: Suite = Suite {
    knock: Lab::classic_knock,
    knockd: Lab::classic_daemon,
};

/// A knock on a one-door daemon ([`Lab::one_door`]): the door's `sequence`
/// and `TCPFlags` (if any); the client's arguments are `extra`, the
/// server's address (IPv6 if `ipv6`), then `ports`.
#[derive(Debug, Clone, Copy)]
pub struct Knock<'a> {
    pub sequence: &'a str,
    pub tcp_flags: Option<&'a str>,
    pub extra: &'a [&'a str],
    pub ports: &'a [&'a str],
    pub ipv6: bool,
}

/// Three hits over TCP from `knock HOST 7000 8000 9000`.
pub const TCP: Knock = Knock::new("7000,8000,9000", &[], &["7000", "8000", "9000"], false);

/// Three hits over UDP from `knock -u HOST ...`.
pub const UDP: Knock = Knock::new(
    "7001:udp,7002:udp,7003:udp",
    &["-u"],
    &["7001", "7002", "7003"],
    false,
);

/// TCP, UDP, TCP over IPv6 from `knock -6 HOST ...`.
pub const MIXED_V6: Knock = Knock::new(
    "7000,8000:udp,9000",
    &["-6"],
    &["7000", "8000:udp", "9000"],
    true,
);

impl<'a> Knock<'a> {
    /// A knock on a door without `TCPFlags`.
    pub const fn new(
        sequence: &'a str,
        extra: &'a [&'a str],
        ports: &'a [&'a str],
        ipv6: bool,
    ) -> Knock<'a> {
        Knock {
            sequence,
            tcp_flags: None,
            extra,
            ports,
            ipv6,
        }
    }

    /// The same door knocked on `ports` instead.
    pub const fn with_ports(self, ports: &'a [&'a str]) -> Knock<'a> {
        Knock { ports, ..self }
    }

    /// The same knock on a door with `TCPFlags = flags`.
    pub const fn with_tcp_flags(self, flags: &'a str) -> Knock<'a> {
        Knock {
            tcp_flags: Some(flags),
            ..self
        }
    }
}

impl Knock<'_> {
    /// The door's extra directives.
    fn directives(&self) -> Vec<(&str, &str)> {
        self.tcp_flags
            .map(|f| ("TCPFlags", f))
            .into_iter()
            .collect()
    }
}

/// A lab named `name` where the daemon of `listener` serves the one door
/// of `knock`.
pub fn serve(name: &str, listener: Suite, knock: &Knock) -> (Lab, Daemon) {
    let lab = Lab::new(name);
    let daemon = (listener.knockd)(&lab, &lab.one_door(knock.sequence, &knock.directives()));
    (lab, daemon)
}

/// The client of `knocker` sends `knock` from the client namespace; it
/// must succeed. Returns the client's address the knock came from.
pub fn send(lab: &Lab, knocker: Suite, knock: &Knock) -> String {
    let (host, client) = if knock.ipv6 {
        (lab.s6(), lab.client_v6().to_string())
    } else {
        (lab.s4(), lab.client_v4().to_string())
    };
    let mut args: Vec<&str> = knock.extra.to_vec();
    args.push(&host);
    args.extend_from_slice(knock.ports);
    (knocker.knock)(lab, &lab.client_ns, &args);
    client
}

/// The client of `knocker` sends `knock`, and the door's command must
/// record the client's address (IPv6 for an IPv6 knock). Returns it.
pub fn send_opens(lab: &Lab, daemon: &Daemon, knocker: Suite, knock: &Knock) -> String {
    let client = send(lab, knocker, knock);
    let text = expect_file(&lab.path("opened"), daemon);
    assert_eq!(text.trim(), client, "{}", daemon.dump());
    client
}

/// What [`opens`] leaves for further checks: the lab, the daemon and the
/// address the door opened for.
pub struct Opened {
    pub lab: Lab,
    pub daemon: Daemon,
    pub client: String,
}

/// [`serve`] then [`send_opens`]: in a lab named `name` the daemon of
/// `listener` serves the door of `knock`, the client of `knocker` knocks
/// it, and the door opens for the client's address.
pub fn opens(name: &str, knocker: Suite, listener: Suite, knock: &Knock) -> Opened {
    let (lab, daemon) = serve(name, listener, knock);
    let client = send_opens(&lab, &daemon, knocker, knock);
    Opened {
        lab,
        daemon,
        client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_runs_every_case_and_names_the_failed_ones() {
        let mut ran = Vec::new();
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            each(
                &[("one", 1), ("two", 2), ("three", 3), ("four", 4)],
                |name, n| {
                    ran.push(name.to_owned());
                    assert!(n % 2 == 1, "{name} is even");
                },
            )
        }));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.ends_with("failed case(s), see their messages above: two, four"),
            "{msg}"
        );
        assert_eq!(ran, ["one", "two", "three", "four"]);
        // A table without a failure passes.
        each(&[("one", 1)], |_, n| assert_eq!(*n, 1));
    }
}
