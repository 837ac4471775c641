//! Decoding captured frames into knock candidates ([`Hit`]s).
//!
//! Pure code: no I/O and no libpcap calls. Every length is checked with
//! slice `get` before it is read, so a truncated or malformed frame is
//! reported as a [`Drop`] and never read past its end.
//!
//! Supported link types (see [`LinkType::from_dlt`]): Ethernet with up to
//! [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad / 0x9100 tags, Linux cooked capture
//! (SLL and SLL2), and raw IP (the IP version nibble picks IPv4 or IPv6).
//!
//! IPv4: the header length (IHL) must be at least 5 words, options are
//! skipped, and the total length bounds the payload: a frame shorter than the
//! total length is truncated and dropped, padding after it (Ethernet minimum
//! frame size) is ignored. Fragments other than the first are dropped; a
//! first fragment is decoded when it carries the whole TCP/UDP header.
//!
//! IPv6: the payload length bounds the payload; hop-by-hop, routing,
//! destination-options and fragment headers are followed (at most
//! [`MAX_IPV6_EXT_HEADERS`] of them); only a fragment with offset 0 is
//! decoded. Any other next header than TCP or UDP ends decoding with a drop.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use knock_common::{Knock, Proto};

/// At most this many VLAN tags are skipped on an Ethernet or cooked frame.
pub const MAX_VLAN_TAGS: usize = 4;
/// At most this many IPv6 extension headers are followed.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_8021Q: u16 = 0x8100;
const ETHERTYPE_8021AD: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

const ETHERNET_HEADER: usize = 14;
const SLL_HEADER: usize = 16;
const SLL2_HEADER: usize = 20;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

/// Link-layer framing of captured packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// DLT_EN10MB (1): Ethernet II, possibly VLAN tagged.
    Ethernet,
    /// DLT_LINUX_SLL (113): Linux cooked capture v1, 16-byte header.
    LinuxSll,
    /// DLT_LINUX_SLL2 (276): Linux cooked capture v2, 20-byte header.
    LinuxSll2,
    /// Raw IP without link header (DLT_RAW 12 and 101, DLT_IPV4 228, DLT_IPV6 229).
    RawIp,
}

impl LinkType {
    /// Map a libpcap datalink number to a supported link type.
    ///
    /// Both 12 (what Linux reports for a tun device) and 101 (LINKTYPE_RAW)
    /// mean raw IP; 228 and 229 (raw IPv4 / raw IPv6) are decoded the same
    /// way, by the version nibble.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            12 | 101 | 228 | 229 => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkType::Ethernet => "Ethernet",
            LinkType::LinuxSll => "Linux cooked capture (SLL)",
            LinkType::LinuxSll2 => "Linux cooked capture v2 (SLL2)",
            LinkType::RawIp => "raw IP",
        })
    }
}

/// A TCP segment or UDP datagram that may be a knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hit {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: Proto,
    /// TCP header flags (byte 13 & 0x3f); 0 for UDP.
    pub tcp_flags: u8,
}

impl Hit {
    /// The `port:proto` this hit knocks on (destination port and protocol).
    pub fn knock(&self) -> Knock {
        Knock::new(self.dst_port, self.proto)
    }
}

/// Header that a truncated frame ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Vlan,
    Ipv4,
    Ipv6,
    Ipv6Extension,
    Tcp,
    Udp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Link => "link-layer header",
            Layer::Vlan => "VLAN tag",
            Layer::Ipv4 => "IPv4 header",
            Layer::Ipv6 => "IPv6 header",
            Layer::Ipv6Extension => "IPv6 extension header",
            Layer::Tcp => "TCP header",
            Layer::Udp => "UDP header",
        })
    }
}

/// Why a frame is not a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// The frame ends inside this header.
    Truncated(Layer),
    /// The IP header announces more bytes than the frame holds.
    TruncatedIpPayload { announced: usize, captured: usize },
    /// The link layer carries something other than IPv4/IPv6.
    NotIp { ethertype: u16 },
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyVlanTags,
    /// The IP version nibble is not the one expected (or neither 4 nor 6 on raw IP).
    BadIpVersion(u8),
    /// IPv4 IHL below 5 words.
    BadIhl(u8),
    /// IPv4 total length smaller than its own header.
    BadTotalLength { total: u16, header: usize },
    /// A fragment other than the first: it carries no TCP/UDP header.
    NonFirstFragment,
    /// The transport protocol is neither TCP nor UDP (ICMP, ESP, ...).
    NotTcpUdp(u8),
    /// More IPv6 extension headers than [`MAX_IPV6_EXT_HEADERS`].
    TooManyExtensionHeaders,
    /// TCP data offset below 5 words or beyond the IP payload.
    BadTcpOffset(u8),
    /// UDP length field below the header size.
    BadUdpLength(u16),
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drop::Truncated(layer) => write!(f, "truncated in the {layer}"),
            Drop::TruncatedIpPayload {
                announced,
                captured,
            } => write!(
                f,
                "truncated IP packet: header announces {announced} bytes, frame holds {captured}"
            ),
            Drop::NotIp { ethertype } => write!(f, "not IP (ethertype 0x{ethertype:04x})"),
            Drop::TooManyVlanTags => write!(f, "more than {MAX_VLAN_TAGS} VLAN tags"),
            Drop::BadIpVersion(v) => write!(f, "unexpected IP version {v}"),
            Drop::BadIhl(ihl) => write!(f, "bad IPv4 header length {ihl} (words, minimum 5)"),
            Drop::BadTotalLength { total, header } => write!(
                f,
                "bad IPv4 total length {total} (header alone is {header} bytes)"
            ),
            Drop::NonFirstFragment => write!(f, "non-first fragment"),
            Drop::NotTcpUdp(p) => write!(f, "not TCP or UDP (protocol {p})"),
            Drop::TooManyExtensionHeaders => {
                write!(f, "more than {MAX_IPV6_EXT_HEADERS} IPv6 extension headers")
            }
            Drop::BadTcpOffset(off) => write!(f, "bad TCP data offset {off}"),
            Drop::BadUdpLength(len) => write!(f, "bad UDP length {len}"),
        }
    }
}

impl std::error::Error for Drop {}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn byte(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// Decode one captured frame of link type `link` into a [`Hit`].
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Hit, Drop> {
    match link {
        LinkType::Ethernet => {
            let ethertype = be16(frame, 12).ok_or(Drop::Truncated(Layer::Link))?;
            let rest = frame
                .get(ETHERNET_HEADER..)
                .ok_or(Drop::Truncated(Layer::Link))?;
            by_ethertype(ethertype, rest)
        }
        LinkType::LinuxSll => {
            let rest = frame
                .get(SLL_HEADER..)
                .ok_or(Drop::Truncated(Layer::Link))?;
            let proto = be16(frame, 14).ok_or(Drop::Truncated(Layer::Link))?;
            by_ethertype(proto, rest)
        }
        LinkType::LinuxSll2 => {
            let rest = frame
                .get(SLL2_HEADER..)
                .ok_or(Drop::Truncated(Layer::Link))?;
            let proto = be16(frame, 0).ok_or(Drop::Truncated(Layer::Link))?;
            by_ethertype(proto, rest)
        }
        LinkType::RawIp => {
            let first = byte(frame, 0).ok_or(Drop::Truncated(Layer::Link))?;
            match first >> 4 {
                4 => ipv4(frame),
                6 => ipv6(frame),
                v => Err(Drop::BadIpVersion(v)),
            }
        }
    }
}

/// Skip VLAN tags, then dispatch on the (inner) ethertype.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Result<Hit, Drop> {
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_8021Q | ETHERTYPE_8021AD | ETHERTYPE_QINQ_OLD
    ) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(Drop::TooManyVlanTags);
        }
        // Tag control information (2 bytes), then the next ethertype.
        ethertype = be16(rest, 2).ok_or(Drop::Truncated(Layer::Vlan))?;
        rest = rest.get(4..).ok_or(Drop::Truncated(Layer::Vlan))?;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(rest),
        ETHERTYPE_IPV6 => ipv6(rest),
        other => Err(Drop::NotIp { ethertype: other }),
    }
}

fn ipv4(pkt: &[u8]) -> Result<Hit, Drop> {
    let first = byte(pkt, 0).ok_or(Drop::Truncated(Layer::Ipv4))?;
    if pkt.len() < IPV4_MIN_HEADER {
        return Err(Drop::Truncated(Layer::Ipv4));
    }
    let version = first >> 4;
    if version != 4 {
        return Err(Drop::BadIpVersion(version));
    }
    let ihl = first & 0x0f;
    if ihl < 5 {
        return Err(Drop::BadIhl(ihl));
    }
    let header = usize::from(ihl) * 4;
    let total = be16(pkt, 2).ok_or(Drop::Truncated(Layer::Ipv4))?;
    if usize::from(total) < header {
        return Err(Drop::BadTotalLength { total, header });
    }
    let packet = pkt
        .get(..usize::from(total))
        .ok_or(Drop::TruncatedIpPayload {
            announced: usize::from(total),
            captured: pkt.len(),
        })?;
    let frag = be16(packet, 6).ok_or(Drop::Truncated(Layer::Ipv4))?;
    if frag & 0x1fff != 0 {
        return Err(Drop::NonFirstFragment);
    }
    let proto = byte(packet, 9).ok_or(Drop::Truncated(Layer::Ipv4))?;
    let src = addr4(packet, 12).ok_or(Drop::Truncated(Layer::Ipv4))?;
    let dst = addr4(packet, 16).ok_or(Drop::Truncated(Layer::Ipv4))?;
    let payload = packet.get(header..).ok_or(Drop::Truncated(Layer::Ipv4))?;
    transport(proto, IpAddr::V4(src), IpAddr::V4(dst), payload)
}

fn addr4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(s))
}

fn addr6(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

fn ipv6(pkt: &[u8]) -> Result<Hit, Drop> {
    if pkt.len() < IPV6_HEADER {
        return Err(Drop::Truncated(Layer::Ipv6));
    }
    let version = byte(pkt, 0).ok_or(Drop::Truncated(Layer::Ipv6))? >> 4;
    if version != 6 {
        return Err(Drop::BadIpVersion(version));
    }
    let payload_len = usize::from(be16(pkt, 4).ok_or(Drop::Truncated(Layer::Ipv6))?);
    let mut next = byte(pkt, 6).ok_or(Drop::Truncated(Layer::Ipv6))?;
    let src = addr6(pkt, 8).ok_or(Drop::Truncated(Layer::Ipv6))?;
    let dst = addr6(pkt, 24).ok_or(Drop::Truncated(Layer::Ipv6))?;
    let announced = IPV6_HEADER + payload_len;
    let packet = pkt.get(..announced).ok_or(Drop::TruncatedIpPayload {
        announced,
        captured: pkt.len(),
    })?;
    let mut rest = packet
        .get(IPV6_HEADER..)
        .ok_or(Drop::Truncated(Layer::Ipv6))?;
    let mut seen = 0;
    loop {
        match next {
            IPPROTO_TCP | IPPROTO_UDP => break,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT => {
                seen += 1;
                if seen > MAX_IPV6_EXT_HEADERS {
                    return Err(Drop::TooManyExtensionHeaders);
                }
                let nh = byte(rest, 0).ok_or(Drop::Truncated(Layer::Ipv6Extension))?;
                let len = if next == IPPROTO_FRAGMENT {
                    let off = be16(rest, 2).ok_or(Drop::Truncated(Layer::Ipv6Extension))?;
                    if off >> 3 != 0 {
                        return Err(Drop::NonFirstFragment);
                    }
                    8
                } else {
                    let units = byte(rest, 1).ok_or(Drop::Truncated(Layer::Ipv6Extension))?;
                    (usize::from(units) + 1) * 8
                };
                rest = rest
                    .get(len..)
                    .ok_or(Drop::Truncated(Layer::Ipv6Extension))?;
                next = nh;
            }
            other => return Err(Drop::NotTcpUdp(other)),
        }
    }
    transport(next, IpAddr::V6(src), IpAddr::V6(dst), rest)
}

fn transport(proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Result<Hit, Drop> {
    match proto {
        IPPROTO_TCP => {
            if payload.len() < TCP_MIN_HEADER {
                return Err(Drop::Truncated(Layer::Tcp));
            }
            let src_port = be16(payload, 0).ok_or(Drop::Truncated(Layer::Tcp))?;
            let dst_port = be16(payload, 2).ok_or(Drop::Truncated(Layer::Tcp))?;
            let offset = byte(payload, 12).ok_or(Drop::Truncated(Layer::Tcp))? >> 4;
            if offset < 5 || usize::from(offset) * 4 > payload.len() {
                return Err(Drop::BadTcpOffset(offset));
            }
            let flags = byte(payload, 13).ok_or(Drop::Truncated(Layer::Tcp))? & 0x3f;
            Ok(Hit {
                src,
                dst,
                src_port,
                dst_port,
                proto: Proto::Tcp,
                tcp_flags: flags,
            })
        }
        IPPROTO_UDP => {
            if payload.len() < UDP_HEADER {
                return Err(Drop::Truncated(Layer::Udp));
            }
            let src_port = be16(payload, 0).ok_or(Drop::Truncated(Layer::Udp))?;
            let dst_port = be16(payload, 2).ok_or(Drop::Truncated(Layer::Udp))?;
            let len = be16(payload, 4).ok_or(Drop::Truncated(Layer::Udp))?;
            if usize::from(len) < UDP_HEADER {
                return Err(Drop::BadUdpLength(len));
            }
            Ok(Hit {
                src,
                dst,
                src_port,
                dst_port,
                proto: Proto::Udp,
                tcp_flags: 0,
            })
        }
        other => Err(Drop::NotTcpUdp(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, PSH, SYN};
    use proptest::prelude::*;

    pub(crate) const SRC4: [u8; 4] = [192, 0, 2, 7];
    pub(crate) const DST4: [u8; 4] = [198, 51, 100, 1];

    pub(crate) fn src6() -> Ipv6Addr {
        "2001:db8::7".parse().unwrap()
    }
    pub(crate) fn dst6() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    /// TCP header with `opts_words` 32-bit words of options and `data` bytes of payload.
    pub(crate) fn tcp(
        sport: u16,
        dport: u16,
        flags: u8,
        opts_words: usize,
        data: usize,
    ) -> Vec<u8> {
        let mut t = vec![0u8; 20 + opts_words * 4 + data];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = ((5 + opts_words) as u8) << 4;
        // Reserved/ECN bits (0xc0) must be masked off.
        t[13] = flags | 0xc0;
        for (i, b) in t[20 + opts_words * 4..].iter_mut().enumerate() {
            *b = i as u8;
        }
        t
    }

    pub(crate) fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
        let mut u = vec![0u8; 8 + data];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&((8 + data) as u16).to_be_bytes());
        u
    }

    pub(crate) fn ipv4_with(proto: u8, opts_words: usize, frag: u16, l4: &[u8]) -> Vec<u8> {
        let hl = 20 + opts_words * 4;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | (5 + opts_words) as u8;
        let total = (hl + l4.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&SRC4);
        p[16..20].copy_from_slice(&DST4);
        for b in &mut p[20..] {
            *b = 1; // NOP options
        }
        p.extend_from_slice(l4);
        p
    }

    pub(crate) fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        ipv4_with(proto, 0, 0, l4)
    }

    /// IPv6 packet; `ext` is the already-encoded extension chain, `first_nh`
    /// the next-header value in the fixed header.
    pub(crate) fn ipv6_with(first_nh: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        let plen = (ext.len() + l4.len()) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p[6] = first_nh;
        p[7] = 64;
        p[8..24].copy_from_slice(&src6().octets());
        p[24..40].copy_from_slice(&dst6().octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    pub(crate) fn ipv6(proto: u8, l4: &[u8]) -> Vec<u8> {
        ipv6_with(proto, &[], l4)
    }

    pub(crate) fn ether(ethertype: u16, tags: &[u16], ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0xaa; 12];
        let mut types: Vec<u16> = tags.to_vec();
        types.push(ethertype);
        f.extend_from_slice(&types[0].to_be_bytes());
        for (i, _) in tags.iter().enumerate() {
            f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // TCI
            f.extend_from_slice(&types[i + 1].to_be_bytes());
        }
        f.extend_from_slice(ip);
        f
    }

    pub(crate) fn sll(proto: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 16];
        f[0..2].copy_from_slice(&0u16.to_be_bytes()); // packet type: to us
        f[2..4].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
        f[4..6].copy_from_slice(&6u16.to_be_bytes());
        f[6..12].copy_from_slice(&[0xbb; 6]);
        f[14..16].copy_from_slice(&proto.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    pub(crate) fn sll2(proto: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 20];
        f[0..2].copy_from_slice(&proto.to_be_bytes());
        f[4..8].copy_from_slice(&3u32.to_be_bytes()); // ifindex
        f[8..10].copy_from_slice(&1u16.to_be_bytes());
        f[10] = 0;
        f[11] = 6;
        f[12..18].copy_from_slice(&[0xcc; 6]);
        f.extend_from_slice(ip);
        f
    }

    fn hit4(dport: u16, proto: Proto, flags: u8) -> Hit {
        Hit {
            src: IpAddr::V4(SRC4.into()),
            dst: IpAddr::V4(DST4.into()),
            src_port: 40000,
            dst_port: dport,
            proto,
            tcp_flags: flags,
        }
    }

    fn hit6(dport: u16, proto: Proto, flags: u8) -> Hit {
        Hit {
            src: IpAddr::V6(src6()),
            dst: IpAddr::V6(dst6()),
            src_port: 40000,
            dst_port: dport,
            proto,
            tcp_flags: flags,
        }
    }

    #[test]
    fn dlt_mapping() {
        assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_dlt(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
        for raw in [12, 101, 228, 229] {
            assert_eq!(LinkType::from_dlt(raw), Some(LinkType::RawIp), "dlt {raw}");
        }
        for other in [0, 9, 105, 127, -1] {
            assert_eq!(LinkType::from_dlt(other), None, "dlt {other}");
        }
    }

    #[test]
    fn ethernet_tcp_ipv4() {
        let f = ether(ETHERTYPE_IPV4, &[], &ipv4(6, &tcp(40000, 7000, SYN, 0, 0)));
        let h = decode(LinkType::Ethernet, &f).unwrap();
        assert_eq!(h, hit4(7000, Proto::Tcp, SYN));
        assert_eq!(h.knock(), Knock::tcp(7000));
    }

    #[test]
    fn ethernet_udp_ipv6() {
        let f = ether(ETHERTYPE_IPV6, &[], &ipv6(17, &udp(40000, 8000, 3)));
        let h = decode(LinkType::Ethernet, &f).unwrap();
        assert_eq!(h, hit6(8000, Proto::Udp, 0));
        assert_eq!(h.knock(), Knock::udp(8000));
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        // A 54-byte TCP/IPv4 frame padded to the 60-byte Ethernet minimum.
        let mut f = ether(ETHERTYPE_IPV4, &[], &ipv4(6, &tcp(40000, 7000, SYN, 0, 0)));
        f.extend_from_slice(&[0xff; 6]);
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            hit4(7000, Proto::Tcp, SYN)
        );
        // Padding after a UDP datagram, too.
        let mut f = ether(ETHERTYPE_IPV4, &[], &ipv4(17, &udp(40000, 9000, 0)));
        f.extend_from_slice(&[0; 18]);
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            hit4(9000, Proto::Udp, 0)
        );
    }

    #[test]
    fn vlan_single_and_double_tags() {
        let ip = ipv4(6, &tcp(40000, 7000, SYN | ACK, 0, 0));
        for tags in [
            &[ETHERTYPE_8021Q][..],
            &[ETHERTYPE_8021AD, ETHERTYPE_8021Q],
            &[ETHERTYPE_QINQ_OLD, ETHERTYPE_8021Q],
            &[ETHERTYPE_8021Q; MAX_VLAN_TAGS],
        ] {
            let f = ether(ETHERTYPE_IPV4, tags, &ip);
            assert_eq!(
                decode(LinkType::Ethernet, &f).unwrap(),
                hit4(7000, Proto::Tcp, SYN | ACK),
                "tags {tags:x?}"
            );
        }
        let ip6 = ipv6(17, &udp(40000, 7001, 0));
        let f = ether(ETHERTYPE_IPV6, &[ETHERTYPE_8021AD, ETHERTYPE_8021Q], &ip6);
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            hit6(7001, Proto::Udp, 0)
        );
        let f = ether(ETHERTYPE_IPV4, &[ETHERTYPE_8021Q; MAX_VLAN_TAGS + 1], &ip);
        assert_eq!(decode(LinkType::Ethernet, &f), Err(Drop::TooManyVlanTags));
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let ip4 = ipv4(6, &tcp(40000, 7000, SYN, 0, 0));
        let ip6 = ipv6(6, &tcp(40000, 7000, FIN, 0, 0));
        assert_eq!(
            decode(LinkType::LinuxSll, &sll(ETHERTYPE_IPV4, &ip4)).unwrap(),
            hit4(7000, Proto::Tcp, SYN)
        );
        assert_eq!(
            decode(LinkType::LinuxSll, &sll(ETHERTYPE_IPV6, &ip6)).unwrap(),
            hit6(7000, Proto::Tcp, FIN)
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2(ETHERTYPE_IPV4, &ip4)).unwrap(),
            hit4(7000, Proto::Tcp, SYN)
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2(ETHERTYPE_IPV6, &ip6)).unwrap(),
            hit6(7000, Proto::Tcp, FIN)
        );
        // ARP on a cooked capture.
        assert_eq!(
            decode(LinkType::LinuxSll, &sll(0x0806, &[0; 28])),
            Err(Drop::NotIp { ethertype: 0x0806 })
        );
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2(0x0806, &[0; 28])),
            Err(Drop::NotIp { ethertype: 0x0806 })
        );
    }

    #[test]
    fn raw_ip_by_version_nibble() {
        let ip4 = ipv4(17, &udp(40000, 5353, 4));
        let ip6 = ipv6(6, &tcp(40000, 22, SYN, 0, 0));
        assert_eq!(
            decode(LinkType::RawIp, &ip4).unwrap(),
            hit4(5353, Proto::Udp, 0)
        );
        assert_eq!(
            decode(LinkType::RawIp, &ip6).unwrap(),
            hit6(22, Proto::Tcp, SYN)
        );
        let mut bad = ip4.clone();
        bad[0] = 0x55;
        assert_eq!(decode(LinkType::RawIp, &bad), Err(Drop::BadIpVersion(5)));
        assert_eq!(
            decode(LinkType::RawIp, &[]),
            Err(Drop::Truncated(Layer::Link))
        );
    }

    #[test]
    fn ethertype_and_version_must_agree() {
        let f = ether(ETHERTYPE_IPV4, &[], &ipv6(6, &tcp(1, 2, SYN, 0, 0)));
        assert_eq!(decode(LinkType::Ethernet, &f), Err(Drop::BadIpVersion(6)));
        let f = ether(ETHERTYPE_IPV6, &[], &ipv4(6, &tcp(1, 2, SYN, 0, 0)));
        assert!(decode(LinkType::Ethernet, &f).is_err());
    }

    #[test]
    fn ipv4_options_and_tcp_options_are_skipped() {
        let f = ether(
            ETHERTYPE_IPV4,
            &[],
            &ipv4_with(6, 3, 0, &tcp(40000, 7000, SYN | PSH, 2, 5)),
        );
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            hit4(7000, Proto::Tcp, SYN | PSH)
        );
        // Maximum IHL (15 words = 40 bytes of options).
        let f = ipv4_with(17, 10, 0, &udp(40000, 7001, 0));
        assert_eq!(
            decode(LinkType::RawIp, &f).unwrap(),
            hit4(7001, Proto::Udp, 0)
        );
    }

    #[test]
    fn ipv4_bad_header_lengths() {
        let mut p = ipv4(6, &tcp(1, 2, SYN, 0, 0));
        p[0] = 0x44;
        assert_eq!(decode(LinkType::RawIp, &p), Err(Drop::BadIhl(4)));
        let mut p = ipv4(6, &tcp(1, 2, SYN, 0, 0));
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::BadTotalLength {
                total: 19,
                header: 20
            })
        );
        // Total length cuts the TCP header short (frame has more, as padding).
        let mut p = ipv4(6, &tcp(1, 2, SYN, 0, 0));
        p[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::Truncated(Layer::Tcp))
        );
        // Total length larger than the frame.
        let mut p = ipv4(6, &tcp(1, 2, SYN, 0, 0));
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::TruncatedIpPayload {
                announced: 100,
                captured: 40
            })
        );
    }

    #[test]
    fn tcp_bad_data_offset() {
        let mut t = tcp(1, 7000, SYN, 0, 0);
        t[12] = 4 << 4;
        assert_eq!(
            decode(LinkType::RawIp, &ipv4(6, &t)),
            Err(Drop::BadTcpOffset(4))
        );
        let mut t = tcp(1, 7000, SYN, 0, 8);
        t[12] = 8 << 4; // 32 bytes > 28 available
        assert_eq!(
            decode(LinkType::RawIp, &ipv4(6, &t)),
            Err(Drop::BadTcpOffset(8))
        );
        t[12] = 7 << 4; // 28 bytes: exactly the segment
        assert!(decode(LinkType::RawIp, &ipv4(6, &t)).is_ok());
    }

    #[test]
    fn udp_bad_length() {
        let mut u = udp(1, 7000, 0);
        u[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &ipv4(17, &u)),
            Err(Drop::BadUdpLength(7))
        );
    }

    #[test]
    fn ipv4_fragments() {
        let t = tcp(40000, 7000, SYN, 0, 16);
        // First fragment with more-fragments set: decoded.
        let first = ipv4_with(6, 0, 0x2000, &t);
        assert_eq!(
            decode(LinkType::RawIp, &first).unwrap(),
            hit4(7000, Proto::Tcp, SYN)
        );
        // Non-first fragments (with and without MF): dropped, even though the
        // bytes would look like a header.
        for frag in [0x2001u16, 0x0001, 0x1fff, 0x0100] {
            let p = ipv4_with(6, 0, frag, &t);
            assert_eq!(
                decode(LinkType::RawIp, &p),
                Err(Drop::NonFirstFragment),
                "frag {frag:#x}"
            );
        }
        // First fragment too short to hold the TCP header.
        let p = ipv4_with(6, 0, 0x2000, &t[..12]);
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::Truncated(Layer::Tcp))
        );
        // Don't-fragment bit alone is fine.
        let p = ipv4_with(17, 0, 0x4000, &udp(1, 9, 0));
        assert!(decode(LinkType::RawIp, &p).is_ok());
    }

    #[test]
    fn icmp_and_others_ignored() {
        let icmp = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(
            decode(LinkType::RawIp, &ipv4(1, &icmp)),
            Err(Drop::NotTcpUdp(1))
        );
        assert_eq!(
            decode(LinkType::RawIp, &ipv6(58, &icmp)),
            Err(Drop::NotTcpUdp(58))
        );
        // ESP after hop-by-hop.
        let hbh = [50u8, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            decode(LinkType::RawIp, &ipv6_with(0, &hbh, &[0; 16])),
            Err(Drop::NotTcpUdp(50))
        );
        // No next header.
        assert_eq!(
            decode(LinkType::RawIp, &ipv6(59, &[])),
            Err(Drop::NotTcpUdp(59))
        );
        assert_eq!(
            decode(LinkType::Ethernet, &ether(0x0806, &[], &[0; 28])),
            Err(Drop::NotIp { ethertype: 0x0806 })
        );
    }

    /// Hop-by-hop (8 bytes) -> routing (24 bytes) -> destination options
    /// (16 bytes) -> fragment (offset 0, more fragments) -> `last`.
    fn ext_chain(last: u8, frag_offset: u16) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]); // HBH, PadN
        let mut rt = vec![60, 2, 0, 0, 0, 0, 0, 0]; // routing type 0, 24 bytes
        rt.extend_from_slice(&[0x11; 16]);
        e.extend_from_slice(&rt);
        let mut dst = vec![44, 1, 1, 12];
        dst.extend_from_slice(&[0; 12]);
        e.extend_from_slice(&dst);
        let fo = (frag_offset << 3) | 1; // M flag
        e.extend_from_slice(&[last, 0]);
        e.extend_from_slice(&fo.to_be_bytes());
        e.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        e
    }

    #[test]
    fn ipv6_extension_chain() {
        let ext = ext_chain(6, 0);
        let p = ipv6_with(0, &ext, &tcp(40000, 7000, SYN, 0, 0));
        assert_eq!(
            decode(LinkType::RawIp, &p).unwrap(),
            hit6(7000, Proto::Tcp, SYN)
        );
        let f = ether(
            ETHERTYPE_IPV6,
            &[ETHERTYPE_8021Q],
            &ipv6_with(0, &ext_chain(17, 0), &udp(40000, 7001, 0)),
        );
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            hit6(7001, Proto::Udp, 0)
        );
        // Non-first IPv6 fragment.
        let p = ipv6_with(0, &ext_chain(6, 185), &tcp(40000, 7000, SYN, 0, 0));
        assert_eq!(decode(LinkType::RawIp, &p), Err(Drop::NonFirstFragment));
    }

    #[test]
    fn ipv6_extension_header_limit() {
        let mut ext = Vec::new();
        for _ in 0..MAX_IPV6_EXT_HEADERS - 1 {
            ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        let p = ipv6_with(60, &ext, &udp(1, 7000, 0));
        assert!(decode(LinkType::RawIp, &p).is_ok());
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        for _ in 0..MAX_IPV6_EXT_HEADERS - 1 {
            ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        let p = ipv6_with(60, &ext, &udp(1, 7000, 0));
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::TooManyExtensionHeaders)
        );
    }

    #[test]
    fn ipv6_payload_length_bounds() {
        // Extension header length pointing past the payload.
        let hbh = [6u8, 4, 0, 0, 0, 0, 0, 0];
        let p = ipv6_with(0, &hbh, &tcp(1, 7000, SYN, 0, 0));
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::Truncated(Layer::Ipv6Extension))
        );
        // Payload length shorter than the TCP header, rest is padding.
        let mut p = ipv6(6, &tcp(1, 7000, SYN, 0, 0));
        p[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::Truncated(Layer::Tcp))
        );
        // Payload length longer than the frame.
        let mut p = ipv6(6, &tcp(1, 7000, SYN, 0, 0));
        p[4..6].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::RawIp, &p),
            Err(Drop::TruncatedIpPayload {
                announced: 61,
                captured: 60
            })
        );
        // Padding after the announced payload is ignored.
        let mut p = ipv6(17, &udp(1, 7000, 0));
        p.extend_from_slice(&[0; 10]);
        assert!(decode(LinkType::RawIp, &p).is_ok());
    }

    /// Valid frames of every kind; the usize is the length of the IP packet
    /// end (everything after it is link padding).
    fn sample_frames() -> Vec<(LinkType, Vec<u8>, usize)> {
        let t4 = ipv4_with(6, 2, 0, &tcp(40000, 7000, SYN, 1, 3));
        let u4 = ipv4(17, &udp(40000, 7001, 2));
        let t6 = ipv6_with(0, &ext_chain(6, 0), &tcp(40000, 7000, SYN, 0, 0));
        let u6 = ipv6(17, &udp(40000, 7001, 0));
        let mut v = Vec::new();
        for ip in [&t4, &u4, &t6, &u6] {
            let et = if ip[0] >> 4 == 4 {
                ETHERTYPE_IPV4
            } else {
                ETHERTYPE_IPV6
            };
            let e = ether(et, &[], ip);
            let n = e.len();
            let mut padded = e.clone();
            padded.extend_from_slice(&[0; 7]);
            v.push((LinkType::Ethernet, e, n));
            v.push((LinkType::Ethernet, padded, n));
            let q = ether(et, &[ETHERTYPE_8021AD, ETHERTYPE_8021Q], ip);
            let n = q.len();
            v.push((LinkType::Ethernet, q, n));
            let s = sll(et, ip);
            let n = s.len();
            v.push((LinkType::LinuxSll, s, n));
            let s2 = sll2(et, ip);
            let n = s2.len();
            v.push((LinkType::LinuxSll2, s2, n));
            v.push((LinkType::RawIp, ip.to_vec(), ip.len()));
        }
        v
    }

    #[test]
    fn every_truncation_is_dropped() {
        for (link, frame, ip_end) in sample_frames() {
            let full = decode(link, &frame).expect("sample frame decodes");
            for n in 0..frame.len() {
                let r = decode(link, &frame[..n]);
                if n < ip_end {
                    assert!(
                        r.is_err(),
                        "{link}: prefix of {n}/{} bytes decoded as {r:?}",
                        frame.len()
                    );
                } else {
                    // Only link padding was cut.
                    assert_eq!(r, Ok(full), "{link}: prefix {n}");
                }
            }
        }
    }

    #[test]
    fn drop_messages_say_why() {
        assert_eq!(
            Drop::Truncated(Layer::Tcp).to_string(),
            "truncated in the TCP header"
        );
        assert_eq!(
            Drop::NotTcpUdp(1).to_string(),
            "not TCP or UDP (protocol 1)"
        );
        assert_eq!(
            Drop::NotIp { ethertype: 0x0806 }.to_string(),
            "not IP (ethertype 0x0806)"
        );
        assert_eq!(Drop::NonFirstFragment.to_string(), "non-first fragment");
    }

    fn any_link() -> impl Strategy<Value = LinkType> {
        prop_oneof![
            Just(LinkType::Ethernet),
            Just(LinkType::LinuxSll),
            Just(LinkType::LinuxSll2),
            Just(LinkType::RawIp),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(link in any_link(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(link, &bytes);
        }

        /// Corrupting any byte of a valid frame (then cutting it anywhere)
        /// never panics.
        #[test]
        fn corrupted_frames_never_panic(
            idx in any::<prop::sample::Index>(),
            pos in any::<prop::sample::Index>(),
            val in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let samples = sample_frames();
            let (link, mut frame, _) = samples[idx.index(samples.len())].clone();
            let p = pos.index(frame.len());
            frame[p] = val;
            let n = cut.index(frame.len() + 1);
            let _ = decode(link, &frame[..n]);
        }
    }
}
