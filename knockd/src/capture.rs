//! Packet capture: a non-blocking libpcap handle whose file descriptor the
//! event loop polls, the BPF filter that lets only possible knocks through,
//! and the addresses of the listening interface.
//!
//! The filter matches addresses and ports only. TCP flags are checked in
//! Rust, because libpcap's `tcp[tcpflags]` silently matches no IPv6 packet.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use knock_common::{Knock, Proto};

use crate::packet::LinkType;

/// Bytes captured per packet: enough for the link header (with VLAN tags or
/// SLL2), an IPv6 header with a few extension headers and a TCP header.
pub const SNAPLEN: i32 = 512;

/// Kernel buffer for the capture: absorbs bursts (e.g. a flood of spoofed
/// knocks) while the loop is busy. libpcap maps the whole ring into the
/// process, so all of it is resident from the start: 1 MiB keeps the daemon
/// small at rest and still lost no knock under the benchmark's floods
/// (BENCHMARKS.md); 4 MiB made 4.7 of 9.3 MiB at rest.
pub const BUFFER_SIZE: i32 = 1 << 20;

/// An open, non-blocking capture on one interface.
pub struct Capture {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    filter: Option<String>,
}

impl Capture {
    /// Open `iface` in immediate, non-promiscuous, non-blocking mode.
    pub fn open(iface: &str) -> Result<Capture, String> {
        let cap = pcap::Capture::from_device(iface)
            .and_then(|c| {
                c.immediate_mode(true)
                    .promisc(false)
                    .snaplen(SNAPLEN)
                    .buffer_size(BUFFER_SIZE)
                    .open()
            })
            .and_then(|c| c.setnonblock())
            .map_err(|e| format!("cannot capture on {iface}: {e}"))?;
        // libpcap opens its packet socket, and on Linux an eventfd, without
        // close-on-exec: mark them, or every command inherits them.
        crate::fds::set_cloexec(cap.as_fd())
            .and_then(|()| crate::fds::cloexec_from(3))
            .map_err(|e| format!("cannot capture on {iface}: close-on-exec: {e}"))?;
        let dlt = cap.get_datalink();
        let link = LinkType::from_dlt(dlt.0).ok_or_else(|| {
            format!(
                "cannot capture on {iface}: unsupported link type {} ({})",
                dlt.0,
                dlt.get_name().unwrap_or_else(|_| "unknown".to_string())
            )
        })?;
        Ok(Capture {
            cap,
            link,
            filter: None,
        })
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Install `filter` unless it is the one already installed.
    pub fn set_filter(&mut self, filter: &str) -> Result<(), String> {
        if self.filter.as_deref() == Some(filter) {
            return Ok(());
        }
        self.cap
            .filter(filter, optimize(filter))
            .map_err(|e| format!("cannot install capture filter \"{filter}\": {e}"))?;
        self.filter = Some(filter.to_string());
        Ok(())
    }

    /// The next captured frame, `Ok(None)` when none is waiting.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, String> {
        match self.cap.next_packet() {
            Ok(p) => Ok(Some(p.data)),
            Err(pcap::Error::TimeoutExpired) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Packets dropped by the kernel for lack of buffer space, if known.
    pub fn dropped(&mut self) -> Option<u32> {
        self.cap.stats().ok().map(|s| s.dropped)
    }
}

impl AsFd for Capture {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.cap.as_fd()
    }
}

/// The addresses of interface `iface` (IPv4 only when `ipv4_only`).
/// An interface that does not exist has no addresses.
pub fn interface_addresses(iface: &str, ipv4_only: bool) -> BTreeSet<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return BTreeSet::new();
    };
    addrs
        .filter(|a| iface == "any" || a.interface_name == iface)
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else if ipv4_only {
                None
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// The BPF filter for the given destination addresses and knocks: packets
/// to one of `hosts` that are TCP or UDP to one of the knocks' ports. IPv6
/// packets to those hosts that carry extension headers pass too (the
/// filter language cannot follow the header chain; the decoder does).
/// With nothing to listen for, the filter matches nothing.
/// The filter that lets no packet through (nothing to listen for).
pub const MATCH_NOTHING: &str = "ip and not ip";

/// Whether to let libpcap optimise `filter`. Its optimiser refuses a filter
/// that can never match ("expression rejects all packets"), so
/// [`MATCH_NOTHING`] is installed as written.
pub fn optimize(filter: &str) -> bool {
    filter != MATCH_NOTHING
}

pub fn build_filter(hosts: &BTreeSet<IpAddr>, knocks: &BTreeSet<Knock>, link: LinkType) -> String {
    if hosts.is_empty() || knocks.is_empty() {
        return MATCH_NOTHING.to_string();
    }
    let host_expr = hosts
        .iter()
        .map(|h| format!("dst host {h}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut port_exprs = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        // Runs of 3 or more consecutive ports (a source-bound rotating
        // door passes its whole range) become one `portrange`.
        let sorted: Vec<u16> = knocks
            .iter()
            .filter(|k| k.proto == proto)
            .map(|k| k.port)
            .collect();
        let mut ports: Vec<String> = Vec::new();
        let mut ranges: Vec<String> = Vec::new();
        for run in sorted.chunk_by(|a, b| u32::from(*a) + 1 == u32::from(*b)) {
            match run {
                [lo, .., hi] if run.len() >= 3 => ranges.push(format!("{lo}-{hi}")),
                _ => ports.extend(run.iter().map(u16::to_string)),
            }
        }
        if !ports.is_empty() {
            port_exprs.push(format!("({proto} dst port ({}))", ports.join(" or ")));
        }
        for r in ranges {
            port_exprs.push(format!("({proto} dst portrange {r})"));
        }
    }
    let mut inner = format!("({host_expr}) and ({}", port_exprs.join(" or "));
    if hosts.iter().any(IpAddr::is_ipv6) {
        // Hop-by-hop, routing, fragment and destination options headers.
        let _ = write!(
            inner,
            " or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60))"
        );
    }
    inner.push(')');
    match link {
        // Frames that still carry an 802.1Q tag need the `vlan` offset shift.
        LinkType::Ethernet => format!("({inner}) or (vlan and ({inner}))"),
        _ => inner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<T: Ord>(v: impl IntoIterator<Item = T>) -> BTreeSet<T> {
        v.into_iter().collect()
    }

    #[test]
    fn runs_of_consecutive_ports_become_port_ranges() {
        let hosts = set(["10.0.0.1".parse().unwrap()]);
        let mut knocks: BTreeSet<Knock> = (1024..=65535).map(Knock::tcp).collect();
        knocks.extend([Knock::tcp(80), Knock::tcp(81), Knock::udp(7000)]);
        let f = build_filter(&hosts, &knocks, LinkType::RawIp);
        assert_eq!(
            f,
            "(dst host 10.0.0.1) and ((tcp dst port (80 or 81)) or \
             (tcp dst portrange 1024-65535) or (udp dst port (7000)))"
        );
    }

    #[test]
    fn filter_lists_hosts_and_ports_per_protocol() {
        let hosts = set(["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]);
        let knocks = set([Knock::tcp(7000), Knock::tcp(8000), Knock::udp(9000)]);
        let f = build_filter(&hosts, &knocks, LinkType::RawIp);
        assert_eq!(
            f,
            "(dst host 10.0.0.1 or dst host fd00::1) and ((tcp dst port (7000 or 8000)) or \
             (udp dst port (9000)) or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60)))"
        );
        let v4 = build_filter(
            &set(["10.0.0.1".parse().unwrap()]),
            &knocks,
            LinkType::RawIp,
        );
        assert!(!v4.contains("ip6"), "{v4}");
        let eth = build_filter(&hosts, &knocks, LinkType::Ethernet);
        assert!(eth.contains(") or (vlan and ("), "{eth}");
    }

    #[test]
    fn nothing_to_listen_for_matches_nothing() {
        let knocks = set([Knock::tcp(7000)]);
        assert_eq!(
            build_filter(&BTreeSet::new(), &knocks, LinkType::Ethernet),
            "ip and not ip"
        );
        let hosts = set(["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            build_filter(&hosts, &BTreeSet::new(), LinkType::Ethernet),
            "ip and not ip"
        );
    }

    #[test]
    fn filters_compile_with_libpcap() {
        let hosts = set(["10.0.0.1".parse().unwrap(), "fe80::1".parse().unwrap()]);
        let knocks = set([Knock::tcp(7000), Knock::udp(9000)]);
        for (link, dlt) in [
            (LinkType::Ethernet, pcap::Linktype::ETHERNET),
            (LinkType::LinuxSll, pcap::Linktype::LINUX_SLL),
            (LinkType::RawIp, pcap::Linktype(12)),
        ] {
            let cap = pcap::Capture::dead(dlt).unwrap();
            for f in [
                build_filter(&hosts, &knocks, link),
                build_filter(&BTreeSet::new(), &knocks, link),
            ] {
                cap.compile(&f, optimize(&f))
                    .unwrap_or_else(|e| panic!("{f:?} does not compile: {e}"));
            }
        }
    }

    /// A live handle refuses an optimised never-matching filter where a
    /// dead one does not, so this opens loopback (needs CAP_NET_RAW).
    #[test]
    fn match_nothing_installs_on_a_live_capture() {
        let mut cap = match Capture::open("lo") {
            Ok(c) => c,
            Err(e) if e.contains("permitted") => {
                eprintln!("SKIPPED match_nothing_installs_on_a_live_capture: {e}");
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "needs root in CI"
                );
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let knocks = set([Knock::tcp(7000)]);
        let f = build_filter(&BTreeSet::new(), &knocks, cap.link());
        assert_eq!(f, MATCH_NOTHING);
        cap.set_filter(&f).unwrap();
        let hosts = set(["127.0.0.1".parse().unwrap()]);
        cap.set_filter(&build_filter(&hosts, &knocks, cap.link()))
            .unwrap();
    }

    #[test]
    fn loopback_has_its_address() {
        let addrs = interface_addresses("lo", true);
        assert!(
            addrs.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()),
            "{addrs:?}"
        );
        assert!(addrs.iter().all(IpAddr::is_ipv4));
        assert!(interface_addresses("no-such-if0", false).is_empty());
    }
}
