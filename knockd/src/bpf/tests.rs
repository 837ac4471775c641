//! The filter builder, checked by running its programs with libpcap's own
//! interpreter (`pcap_offline_filter`) on frames built by the decoder's test
//! builders, against a reference: the decoder plus the rules of the module.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use knock_common::flags::{ACK, FIN, PSH, RST, SYN};
use knock_common::Proto;
use proptest::prelude::*;

use super::*;
use crate::packet::tests::{
    dst6, ether, ipv4, ipv4_with, ipv6, ipv6_with, sll, sll2, tcp, udp, DST4,
};
use crate::packet::{self, LinkType};
use knock_testkit::frames::{ethertype_of, ext_header};

const LINKS: [LinkType; 4] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
];

fn dst4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(DST4))
}

fn spec(hosts: &[IpAddr], tcp: &[u16], udp: &[u16], watch: bool) -> FilterSpec {
    FilterSpec {
        hosts: hosts.iter().copied().collect(),
        tcp_ports: tcp.iter().copied().collect(),
        udp_ports: udp.iter().copied().collect(),
        watch_attempts: watch,
    }
}

/// Wrap an IP packet in link type `link` with `tags` VLAN tags (Ethernet
/// and cooked frames; raw IP carries none).
fn frame(link: LinkType, tags: usize, ip: &[u8]) -> Vec<u8> {
    let ethertype = ethertype_of(ip);
    let tag_types = [0x8100, 0x88a8, 0x9100, 0x8100];
    let tags = &tag_types[..tags];
    // Cooked frames carry tags after the header, like Ethernet ones.
    let tagged = |ip: &[u8]| ether(ethertype, tags, ip)[12..].to_vec();
    match link {
        LinkType::Ethernet => ether(ethertype, tags, ip),
        LinkType::LinuxSll => {
            let t = tagged(ip);
            sll(u16::from_be_bytes([t[0], t[1]]), &t[2..])
        }
        LinkType::LinuxSll2 => {
            let t = tagged(ip);
            sll2(u16::from_be_bytes([t[0], t[1]]), &t[2..])
        }
        LinkType::RawIp => ip.to_vec(),
    }
}

/// The reference: what the module doc says must pass.
fn reference(link: LinkType, spec: &FilterSpec, frame: &[u8], ipv6_first_ext: bool) -> bool {
    let nothing_on_ports =
        spec.tcp_ports.is_empty() && spec.udp_ports.is_empty() && !spec.watch_attempts;
    if ipv6_first_ext {
        // The filter cannot walk extension headers: such a packet to a
        // listening address is passed on, unless nothing is listened for.
        return spec.hosts.contains(&IpAddr::V6(dst6())) && !nothing_on_ports;
    }
    let Ok(hit) = packet::decode(link, frame) else {
        return false;
    };
    if !spec.hosts.contains(&hit.dst) {
        return false;
    }
    match hit.proto {
        Proto::Tcp => {
            spec.tcp_ports.contains(&hit.dst_port)
                || (spec.watch_attempts && hit.tcp_flags & (SYN | ACK) == SYN)
        }
        Proto::Udp => spec.udp_ports.contains(&hit.dst_port) || spec.watch_attempts,
    }
}

/// Jumps stay inside the program and it ends with `ret`, as the kernel and
/// libpcap's validator demand.
fn assert_well_formed(p: &Program) {
    let n = p.len();
    assert!(n >= 1 && n <= KERNEL_MAX_INSNS.max(n));
    for (i, insn) in p.instructions().iter().enumerate() {
        match insn.code {
            JA => assert!(
                i + 1 + (insn.k as usize) < n,
                "ja at {i} leaves the program"
            ),
            JEQ | JGT | JGE | JSET => {
                assert!(i + 1 + usize::from(insn.jt.max(insn.jf)) < n, "jump at {i}")
            }
            _ => {}
        }
    }
    assert_eq!(p.instructions()[n - 1].code, RET_K, "last instruction");
}

#[test]
fn nothing_to_listen_for_matches_nothing() {
    let none = spec(&[], &[7000], &[9000], true);
    assert!(build(LinkType::Ethernet, &none).matches_nothing());
    let no_ports = spec(&[dst4()], &[], &[], false);
    let p = build(LinkType::Ethernet, &no_ports);
    assert!(p.matches_nothing());
    let knock = frame(LinkType::Ethernet, 0, &ipv4(6, &tcp(1, 7000, SYN, 0, 0)));
    assert!(!p.passes(&knock));
    // Watching attempts alone is something to listen for.
    let watch = spec(&[dst4()], &[], &[], true);
    let p = build(LinkType::Ethernet, &watch);
    assert!(!p.matches_nothing());
    assert!(p.passes(&knock));
}

#[test]
fn every_link_type_vlan_depth_and_ip_version() {
    let hosts = [dst4(), IpAddr::V6(dst6())];
    let s = spec(&hosts, &[7000, 7001, 7002, 8000], &[9000], false);
    for link in LINKS {
        let p = build(link, &s);
        assert_well_formed(&p);
        let depths = if link == LinkType::RawIp {
            0
        } else {
            packet::MAX_VLAN_TAGS
        };
        for tags in 0..=depths {
            let cases: [(Vec<u8>, bool); 12] = [
                (ipv4(6, &tcp(1, 7000, SYN, 0, 0)), true),
                (ipv4(6, &tcp(1, 7001, FIN | ACK, 0, 5)), true),
                (ipv4(6, &tcp(1, 7003, SYN, 0, 0)), false),
                (ipv4(17, &udp(1, 9000, 3)), true),
                (ipv4(17, &udp(1, 7000, 3)), false),
                (ipv4(6, &tcp(1, 9000, SYN, 0, 0)), false),
                (ipv4_with(6, 3, 0, &tcp(1, 8000, SYN, 2, 0)), true),
                // A non-first fragment carries no ports.
                (ipv4_with(6, 0, 0x0010, &tcp(1, 8000, SYN, 0, 0)), false),
                (ipv4(1, &udp(1, 9000, 3)), false),
                (ipv6(6, &tcp(1, 7002, RST, 0, 0)), true),
                (ipv6(17, &udp(1, 9000, 0)), true),
                (ipv6(58, &udp(1, 9000, 0)), false),
            ];
            for (ip, want) in cases {
                let f = frame(link, tags, &ip);
                assert_eq!(p.passes(&f), want, "{link} with {tags} tags: {ip:02x?}");
                assert_eq!(reference(link, &s, &f, false), want, "reference");
            }
        }
        // More tags than the decoder follows: dropped.
        if link != LinkType::RawIp {
            let ip = ipv4(6, &tcp(1, 7000, SYN, 0, 0));
            let mut f = frame(link, packet::MAX_VLAN_TAGS, &ip);
            let at = match link {
                LinkType::Ethernet => 12,
                LinkType::LinuxSll => 14,
                _ => 0,
            };
            let first: [u8; 2] = f[at..at + 2].try_into().unwrap();
            let extra_at = f.len() - ip.len() - 4;
            f.splice(extra_at..extra_at, [0x81, 0x00, 0, 9]);
            // Keep the outer type; the chain is now one tag longer.
            f[at..at + 2].copy_from_slice(&first);
            assert!(packet::decode(link, &f).is_err());
            assert!(!p.passes(&f), "{link}: too many tags");
        }
    }
}

#[test]
fn ipv6_extension_headers_pass_to_a_listening_address_only() {
    for link in LINKS {
        for watch in [false, true] {
            let s = spec(&[IpAddr::V6(dst6())], &[7000], &[], watch);
            let p = build(link, &s);
            for nh in [0u8, 43, 44, 60] {
                // Whatever follows: the decoder follows the chain.
                for l4 in [tcp(1, 7000, SYN, 0, 0), tcp(1, 1234, ACK, 0, 0)] {
                    let f = frame(link, 0, &ipv6_with(nh, &[ext_header(6), l4].concat(), &[]));
                    assert!(p.passes(&f), "{link}: next header {nh}");
                }
            }
            let other = spec(&["2001:db8::99".parse().unwrap()], &[7000], &[], watch);
            let f = frame(
                link,
                0,
                &ipv6_with(0, &ext_header(6), &tcp(1, 7000, SYN, 0, 0)),
            );
            assert!(!build(link, &other).passes(&f), "{link}: other address");
        }
    }
}

#[test]
fn watching_attempts_passes_syn_without_ack_and_all_udp() {
    let s = spec(&[dst4(), IpAddr::V6(dst6())], &[7000], &[], true);
    for link in LINKS {
        let p = build(link, &s);
        for (ip, want) in [
            (ipv4(6, &tcp(1, 443, SYN, 0, 0)), true),
            (ipv4(6, &tcp(1, 443, SYN | ACK, 0, 0)), false),
            (ipv4(6, &tcp(1, 443, ACK | PSH, 0, 9)), false),
            (ipv4(6, &tcp(1, 443, 0, 0, 0)), false),
            // A door port passes with any flags.
            (ipv4(6, &tcp(1, 7000, ACK, 0, 0)), true),
            (ipv4(17, &udp(1, 53, 0)), true),
            (ipv6(6, &tcp(1, 22, SYN | FIN, 0, 0)), true),
            (ipv6(6, &tcp(1, 22, SYN | ACK, 0, 0)), false),
            (ipv6(17, &udp(1, 5353, 4)), true),
            (ipv4(1, &udp(1, 53, 0)), false),
        ] {
            assert_eq!(p.passes(&frame(link, 1, &ip)), want, "{link}: {ip:02x?}");
        }
        let elsewhere = spec(&["10.9.9.9".parse().unwrap()], &[7000], &[], true);
        let f = frame(link, 0, &ipv4(6, &tcp(1, 443, SYN, 0, 0)));
        assert!(!build(link, &elsewhere).passes(&f), "{link}: other address");
    }
}

/// Spread ports: none adjacent, so each is its own range.
fn spread(n: usize) -> BTreeSet<u16> {
    (0..n).map(|i| 1 + (i as u16) * 13).collect()
}

/// The exact program grows linearly: about one instruction per port.
#[test]
fn program_size_is_linear_in_the_ports() {
    let hosts: BTreeSet<IpAddr> = [dst4(), IpAddr::V6(dst6())].into();
    for link in LINKS {
        for watch in [false, true] {
            for n in [0usize, 1, 2, 10, 100, 1000, 3000, 5000] {
                let s = FilterSpec {
                    hosts: hosts.clone(),
                    tcp_ports: spread(n),
                    udp_ports: spread(n / 3),
                    watch_attempts: watch,
                };
                let exact = emit(link, &s, &ranges(&s.tcp_ports, 1), &ranges(&s.udp_ports, 1));
                let ports = n + n / 3;
                assert!(
                    exact.len() <= ports * 13 / 10 + 120,
                    "{link} watch={watch} n={n}: {} instructions",
                    exact.len()
                );
                let p = build(link, &s);
                assert_well_formed(&p);
                assert!(p.len() <= KERNEL_MAX_INSNS, "{link} n={n}: {}", p.len());
            }
        }
    }
}

/// A thousand doors of three ports fit the kernel exactly, with room left.
#[test]
fn three_thousand_ports_fit_the_kernel_without_merging() {
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut ports = BTreeSet::new();
    while ports.len() < 3000 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        ports.insert(1024 + (rng_state % 64_000) as u16);
    }
    let s = FilterSpec {
        hosts: [dst4(), IpAddr::V6(dst6()), "fe80::1".parse().unwrap()].into(),
        tcp_ports: ports.clone(),
        udp_ports: BTreeSet::new(),
        watch_attempts: true,
    };
    for link in LINKS {
        let p = build(link, &s);
        assert_eq!(p.coarsened(), None, "{link}");
        assert!(p.len() < KERNEL_MAX_INSNS * 9 / 10, "{link}: {}", p.len());
        for &port in ports.iter().step_by(97) {
            for q in [port - 1, port, port + 1] {
                let f = frame(link, 0, &ipv4(6, &tcp(1, q, ACK, 0, 0)));
                assert_eq!(p.passes(&f), ports.contains(&q), "{link} port {q}");
            }
        }
    }
}

/// Past the kernel's limit, ports are merged into ranges: every configured
/// port still passes, and the program stays in the kernel.
#[test]
fn too_many_ports_are_merged_into_ranges_that_cover_them() {
    let tcp_ports: BTreeSet<u16> = (0..6000u16).map(|i| 2 + i * 10).collect();
    let udp_ports: BTreeSet<u16> = (0..2000u16).map(|i| 5 + i * 30).collect();
    let s = FilterSpec {
        hosts: [dst4()].into(),
        tcp_ports: tcp_ports.clone(),
        udp_ports: udp_ports.clone(),
        watch_attempts: false,
    };
    let p = build(LinkType::Ethernet, &s);
    assert_well_formed(&p);
    let gap = p.coarsened().expect("8000 ports need merging");
    assert!(p.len() <= KERNEL_MAX_INSNS);
    assert!(gap > 1 && gap <= 30, "gap {gap}");
    for &port in &tcp_ports {
        let f = frame(LinkType::Ethernet, 0, &ipv4(6, &tcp(1, port, SYN, 0, 0)));
        assert!(p.passes(&f), "tcp {port}");
    }
    for &port in &udp_ports {
        let f = frame(LinkType::Ethernet, 0, &ipv4(17, &udp(1, port, 0)));
        assert!(p.passes(&f), "udp {port}");
    }
    // Beyond the last port, nothing is merged in.
    let f = frame(LinkType::Ethernet, 0, &ipv4(6, &tcp(1, 60_000, SYN, 0, 0)));
    assert!(!p.passes(&f));
}

#[test]
fn many_ipv4_targets_are_searched_too() {
    let hosts: BTreeSet<IpAddr> = (0..1000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7)))
        .chain([dst4()])
        .collect();
    let s = FilterSpec {
        hosts,
        tcp_ports: [7000].into(),
        ..FilterSpec::default()
    };
    let p = build(LinkType::RawIp, &s);
    assert!(p.len() < 2 * 1000 + 100, "{}", p.len());
    assert!(p.passes(&ipv4(6, &tcp(1, 7000, SYN, 0, 0))));
    let mut other = ipv4(6, &tcp(1, 7000, SYN, 0, 0));
    other[16..20].copy_from_slice(&[10, 0, 0, 8]);
    assert!(!p.passes(&other));
    other[16..20].copy_from_slice(&[10, 0, 0, 7]);
    assert!(p.passes(&other));
}

/// One random packet: what it is and what it is sent to.
#[derive(Debug, Clone)]
struct Probe {
    link: LinkType,
    tags: usize,
    v6: bool,
    /// 0: TCP, 1: UDP, 2: ICMP (or ICMPv6), 3: an IPv6 extension header first.
    kind: u8,
    port: u16,
    flags: u8,
    ip_options: usize,
}

fn probe(ports: std::ops::Range<u16>) -> impl Strategy<Value = Probe> {
    (
        0..4usize,
        0..=2usize,
        any::<bool>(),
        0..4u8,
        ports,
        any::<u8>(),
        0..3usize,
    )
        .prop_map(|(l, tags, v6, kind, port, flags, ip_options)| {
            let link = LINKS[l];
            Probe {
                link,
                tags: if link == LinkType::RawIp { 0 } else { tags },
                v6,
                kind: if v6 { kind } else { kind % 3 },
                port,
                flags: flags & 0x3f,
                ip_options,
            }
        })
}

fn probe_frame(p: &Probe) -> Vec<u8> {
    let l4 = match p.kind {
        1 => udp(40000, p.port, 2),
        _ => tcp(40000, p.port, p.flags, 0, 0),
    };
    let ip = match (p.v6, p.kind) {
        (true, 3) => ipv6_with(60, &[ext_header(6), l4].concat(), &[]),
        (true, 2) => ipv6(58, &l4),
        (true, k) => ipv6(if k == 1 { 17 } else { 6 }, &l4),
        (false, 2) => ipv4_with(1, p.ip_options, 0, &l4),
        (false, k) => ipv4_with(if k == 1 { 17 } else { 6 }, p.ip_options, 0, &l4),
    };
    frame(p.link, p.tags, &ip)
}

fn check(s: &FilterSpec, probes: &[Probe]) -> Result<(), TestCaseError> {
    let programs: Vec<Program> = LINKS.iter().map(|&l| build(l, s)).collect();
    for pr in probes {
        let p = &programs[LINKS.iter().position(|&l| l == pr.link).unwrap()];
        let f = probe_frame(pr);
        let want = reference(pr.link, s, &f, pr.v6 && pr.kind == 3);
        prop_assert_eq!(p.passes(&f), want, "{:?}", pr);
    }
    Ok(())
}

fn host_choice() -> impl Strategy<Value = BTreeSet<IpAddr>> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| {
        let mut h = BTreeSet::new();
        if a {
            h.insert(dst4());
        }
        if b {
            h.insert(IpAddr::V6(dst6()));
        }
        if c {
            h.insert("198.51.100.77".parse().unwrap());
            h.insert("2001:db8::77".parse().unwrap());
        }
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Small port sets in a narrow range, so probes often hit them.
    #[test]
    fn accepts_exactly_the_configured_ports(
        hosts in host_choice(),
        tcp_ports in prop::collection::btree_set(1000u16..1080, 0..30),
        udp_ports in prop::collection::btree_set(1000u16..1080, 0..30),
        watch in any::<bool>(),
        probes in prop::collection::vec(probe(995..1085), 64),
    ) {
        let s = FilterSpec { hosts, tcp_ports, udp_ports, watch_attempts: watch };
        check(&s, &probes)?;
    }

    /// Large sets (deep trees, trampolines), probed at, next to and away
    /// from configured ports.
    #[test]
    fn large_port_sets_are_exact(
        tcp_ports in prop::collection::btree_set(1u16..65535, 500..2500),
        udp_ports in prop::collection::btree_set(1u16..65535, 0..500),
        watch in any::<bool>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), -1i32..=1, any::<bool>()), 64),
        probes in prop::collection::vec(probe(0..65535), 64),
    ) {
        let hosts: BTreeSet<IpAddr> = [dst4(), IpAddr::V6(dst6())].into();
        let s = FilterSpec { hosts, tcp_ports, udp_ports, watch_attempts: watch };
        let pool: Vec<u16> = s.tcp_ports.iter().chain(&s.udp_ports).copied().collect();
        let mut all = probes;
        for (i, (idx, delta, as_udp)) in picks.into_iter().enumerate() {
            let port = (i32::from(pool[idx.index(pool.len())]) + delta).clamp(0, 65535) as u16;
            let mut p = all[i].clone();
            p.port = port;
            p.kind = u8::from(as_udp);
            all.push(p);
        }
        prop_assert!(build(LinkType::Ethernet, &s).coarsened().is_none());
        check(&s, &all)?;
    }
}
