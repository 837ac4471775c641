//! Hand-made malformed Ethernet frames, sent raw (pnet datalink) from inside
//! a namespace, to check that a daemon survives them.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, Context, Result};
use pnet::datalink::{self, Channel};

use crate::netlink::in_ns_thread;

use knock_testkit::frames::{self as kit, Tcp};

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    kit::ethernet(ethertype, &[], payload)
}

/// An IPv4 header (20 bytes) that claims the given header-length word
/// count, total length, protocol and fragment field, followed by `rest`.
fn ipv4(
    ihl: u8,
    total: u16,
    proto: u8,
    frag: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    rest: &[u8],
) -> Vec<u8> {
    kit::Ipv4 {
        ihl: Some(ihl),
        total_len: Some(total),
        frag,
        ..kit::Ipv4::new(src, dst, proto)
    }
    .build(rest)
}

fn ipv6(payload_len: u16, next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
    kit::Ipv6 {
        payload_len: Some(payload_len),
        ..kit::Ipv6::new(src, dst, next)
    }
    .build(&[], rest)
}

/// A 20-byte TCP SYN header to `port` that claims data offset `doff` words.
fn tcp(port: u16, doff: u8) -> Vec<u8> {
    Tcp {
        src_port: 12345,
        data_offset: Some(doff),
        ..Tcp::new(port, 0x02)
    }
    .build()
}

/// The malformed frames: truncated and inconsistent IPv4/IPv6/TCP/UDP
/// headers, bogus extension-header chains and VLAN tags, all aimed at
/// `port` on the given server addresses.
pub fn malformed_frames(
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    src6: Ipv6Addr,
    dst6: Ipv6Addr,
    port: u16,
) -> Vec<(&'static str, Vec<u8>)> {
    let p = port.to_be_bytes();
    let udp_short_len = [0x30, 0x39, p[0], p[1], 0, 4, 0, 0];
    vec![
        ("empty IPv4 payload", ether(0x0800, &[])),
        ("IPv4 version byte only", ether(0x0800, &[0x45])),
        (
            "IPv4 IHL 2",
            ether(0x0800, &ipv4(2, 40, 6, 0, src4, dst4, &tcp(port, 5))),
        ),
        (
            "IPv4 IHL 15 in a 20-byte packet",
            ether(0x0800, &ipv4(15, 20, 6, 0, src4, dst4, &[])),
        ),
        (
            "IPv4 total length 65535, TCP cut after 3 bytes",
            ether(
                0x0800,
                &ipv4(5, 65535, 6, 0, src4, dst4, &[0x30, 0x39, p[0]]),
            ),
        ),
        (
            "IPv4 total length 10 (shorter than its header)",
            ether(0x0800, &ipv4(5, 10, 6, 0, src4, dst4, &tcp(port, 5))),
        ),
        (
            "TCP data offset 15 with a 20-byte header",
            ether(0x0800, &ipv4(5, 40, 6, 0, src4, dst4, &tcp(port, 15))),
        ),
        (
            "TCP data offset 0",
            ether(0x0800, &ipv4(5, 40, 6, 0, src4, dst4, &tcp(port, 0))),
        ),
        (
            "UDP length 4",
            ether(0x0800, &ipv4(5, 28, 17, 0, src4, dst4, &udp_short_len)),
        ),
        (
            "UDP header cut after 2 bytes",
            ether(0x0800, &ipv4(5, 22, 17, 0, src4, dst4, &[0x30, 0x39])),
        ),
        (
            "IPv4 non-first fragment that looks like TCP",
            ether(0x0800, &ipv4(5, 40, 6, 0x0010, src4, dst4, &tcp(port, 5))),
        ),
        ("empty IPv6 payload", ether(0x86dd, &[])),
        (
            "IPv6 header cut at 10 bytes",
            ether(0x86dd, &[0x60, 0, 0, 0, 0, 20, 6, 64, 0, 0]),
        ),
        (
            "IPv6 payload length 65535, TCP cut",
            ether(0x86dd, &ipv6(65535, 6, src6, dst6, &[0x30, 0x39, p[0]])),
        ),
        (
            "IPv6 hop-by-hop header whose length runs past the end",
            ether(0x86dd, &ipv6(8, 0, src6, dst6, &[6, 200, 0, 0, 0, 0, 0, 0])),
        ),
        (
            "IPv6 routing header cut after 1 byte",
            ether(0x86dd, &ipv6(1, 43, src6, dst6, &[6])),
        ),
        (
            "IPv6 long chain of empty destination-options headers",
            ether(
                0x86dd,
                &ipv6(
                    8 * 40,
                    60,
                    src6,
                    dst6,
                    &[60, 0, 0, 0, 0, 0, 0, 0].repeat(40),
                ),
            ),
        ),
        (
            "IPv6 fragment header cut",
            ether(0x86dd, &ipv6(4, 44, src6, dst6, &[6, 0, 0])),
        ),
        (
            "IPv6 TCP data offset 15",
            ether(0x86dd, &ipv6(20, 6, src6, dst6, &tcp(port, 15))),
        ),
        ("802.1Q tag with nothing behind it", ether(0x8100, &[0, 5])),
        (
            "802.1Q tag, IPv4 cut",
            ether(0x8100, &[0, 5, 0x08, 0x00, 0x45, 0, 0]),
        ),
        (
            "double 802.1Q tag, truncated",
            ether(0x88a8, &[0, 5, 0x81, 0x00, 0]),
        ),
    ]
}

/// A well-formed TCP segment over IPv6 carrying a Hop-by-Hop Options and a
/// Destination Options header (both PadN only) before the TCP header, with
/// the given flags and a correct checksum: a knock a daemon only sees if it
/// follows the extension-header chain.
pub fn ipv6_tcp_with_ext_headers(src6: Ipv6Addr, dst6: Ipv6Addr, port: u16, flags: u8) -> Vec<u8> {
    let ext = [
        kit::ext_header(kit::IPPROTO_DSTOPTS),
        kit::ext_header(kit::IPPROTO_TCP),
    ]
    .concat();
    let segment = Tcp::new(port, flags).build();
    let ip = kit::Ipv6::new(src6, dst6, kit::IPPROTO_HOPOPTS).build_checked(
        &ext,
        kit::IPPROTO_TCP,
        &segment,
    );
    ether(kit::ETHERTYPE_IPV6, &ip)
}

/// Send every frame `copies` times out of interface `iface` in namespace
/// `ns`. Returns the number of frames sent.
pub fn send_frames(
    ns: &str,
    iface: &str,
    frames: Vec<(&'static str, Vec<u8>)>,
    copies: usize,
) -> Result<usize> {
    let iface = iface.to_owned();
    in_ns_thread(ns, move || -> Result<usize> {
        let nic = datalink::interfaces()
            .into_iter()
            .find(|i| i.name == iface)
            .ok_or_else(|| anyhow!("no interface {iface:?} in the namespace"))?;
        let (mut tx, _rx) = match datalink::channel(&nic, Default::default())
            .with_context(|| format!("opening a datalink channel on {iface}"))?
        {
            Channel::Ethernet(tx, rx) => (tx, rx),
            _ => return Err(anyhow!("unexpected channel type on {iface}")),
        };
        let mut sent = 0;
        for _ in 0..copies {
            for (what, frame) in &frames {
                match tx.send_to(frame, None) {
                    Some(Ok(())) => sent += 1,
                    Some(Err(e)) => return Err(anyhow!("sending frame {what:?}: {e}")),
                    None => return Err(anyhow!("sending frame {what:?}: no buffer")),
                }
            }
        }
        Ok(sent)
    })?
}
