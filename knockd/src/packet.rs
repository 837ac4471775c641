//! Decoding captured frames into knock candidates ([`Hit`]s).
//!
//! Pure code: no I/O and no libpcap calls.
//! Every header's fields are named in [`field`] (smoltcp style) and its
//! length is checked once, before any field is read, so a truncated or
//! malformed frame is reported as a [`DropReason`] and never read past its end.
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

/// Byte range of a field inside its header.
type Field = std::ops::Range<usize>;

/// Wire layout of every header the decoder reads, by name (offsets are
/// from the start of that header). Each decoder checks its header's length
/// once, up front, and then reads fields only inside it.
mod field {
    use super::Field;

    pub mod ethernet {
        use super::Field;
        pub const ETHERTYPE: Field = 12..14;
        pub const HEADER_LEN: usize = 14;
    }

    /// Linux cooked capture v1.
    pub mod sll {
        use super::Field;
        pub const PROTOCOL: Field = 14..16;
        pub const HEADER_LEN: usize = 16;
    }

    /// Linux cooked capture v2.
    pub mod sll2 {
        use super::Field;
        pub const PROTOCOL: Field = 0..2;
        pub const HEADER_LEN: usize = 20;
    }

    /// An 802.1Q / 802.1ad tag after the ethertype that announced it.
    pub mod vlan {
        use super::Field;
        /// Tag control information comes first (0..2), then this.
        pub const NEXT_ETHERTYPE: Field = 2..4;
        pub const TAG_LEN: usize = 4;
    }

    pub mod ipv4 {
        use super::Field;
        /// Version (high nibble) and header length in words (low nibble).
        pub const VER_IHL: usize = 0;
        pub const TOTAL_LEN: Field = 2..4;
        /// Flags (3 bits) and fragment offset (13 bits).
        pub const FLAGS_FRAG: Field = 6..8;
        pub const FRAG_OFFSET_MASK: u16 = 0x1fff;
        pub const PROTOCOL: usize = 9;
        pub const SRC_ADDR: Field = 12..16;
        pub const DST_ADDR: Field = 16..20;
        pub const MIN_HEADER_LEN: usize = 20;
        pub const MIN_IHL: u8 = 5;
    }

    pub mod ipv6 {
        use super::Field;
        /// Version in the high nibble.
        pub const VER_TC: usize = 0;
        pub const PAYLOAD_LEN: Field = 4..6;
        pub const NEXT_HEADER: usize = 6;
        pub const SRC_ADDR: Field = 8..24;
        pub const DST_ADDR: Field = 24..40;
        pub const HEADER_LEN: usize = 40;
    }

    /// Hop-by-hop, routing, destination-options and fragment headers.
    pub mod ipv6_ext {
        use super::Field;
        pub const NEXT_HEADER: usize = 0;
        /// Length in 8-byte units, not counting the first 8 bytes
        /// (not present in a fragment header, which is always 8 bytes).
        pub const HDR_EXT_LEN: usize = 1;
        /// Fragment header: offset (13 bits) above 3 flag bits.
        pub const FRAG_OFFSET: Field = 2..4;
        pub const UNIT: usize = 8;
        /// Bytes every extension header has at least (and a fragment
        /// header exactly).
        pub const MIN_LEN: usize = 8;
    }

    /// The ports that both TCP and UDP headers start with.
    pub mod ports {
        use super::Field;
        pub const SRC_PORT: Field = 0..2;
        pub const DST_PORT: Field = 2..4;
    }

    pub mod tcp {
        /// Data offset in words (high nibble).
        pub const DATA_OFFSET: usize = 12;
        pub const FLAGS: usize = 13;
        /// FIN, SYN, RST, PSH, ACK, URG: the bits the matcher knows.
        pub const FLAGS_MASK: u8 = 0x3f;
        pub const MIN_HEADER_LEN: usize = 20;
        pub const MIN_DATA_OFFSET: u8 = 5;
    }

    pub mod udp {
        use super::Field;
        pub const LENGTH: Field = 4..6;
        pub const HEADER_LEN: usize = 8;
    }
}

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
    /// A TCP segment's hit; `tcp_flags` as they should be kept (the
    /// decoder keeps only the bits in `FLAGS_MASK`).
    pub fn tcp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, tcp_flags: u8) -> Hit {
        Hit {
            src,
            dst,
            src_port,
            dst_port,
            proto: Proto::Tcp,
            tcp_flags,
        }
    }

    /// A UDP datagram's hit (no flags).
    pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> Hit {
        Hit {
            proto: Proto::Udp,
            tcp_flags: 0,
            ..Hit::tcp(src, dst, src_port, dst_port, 0)
        }
    }

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
pub enum DropReason {
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

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Truncated(layer) => write!(f, "truncated in the {layer}"),
            DropReason::TruncatedIpPayload {
                announced,
                captured,
            } => write!(
                f,
                "truncated IP packet: header announces {announced} bytes, frame holds {captured}"
            ),
            DropReason::NotIp { ethertype } => write!(f, "not IP (ethertype 0x{ethertype:04x})"),
            DropReason::TooManyVlanTags => write!(f, "more than {MAX_VLAN_TAGS} VLAN tags"),
            DropReason::BadIpVersion(v) => write!(f, "unexpected IP version {v}"),
            DropReason::BadIhl(ihl) => write!(f, "bad IPv4 header length {ihl} (words, minimum 5)"),
            DropReason::BadTotalLength { total, header } => write!(
                f,
                "bad IPv4 total length {total} (header alone is {header} bytes)"
            ),
            DropReason::NonFirstFragment => write!(f, "non-first fragment"),
            DropReason::NotTcpUdp(p) => write!(f, "not TCP or UDP (protocol {p})"),
            DropReason::TooManyExtensionHeaders => {
                write!(f, "more than {MAX_IPV6_EXT_HEADERS} IPv6 extension headers")
            }
            DropReason::BadTcpOffset(off) => write!(f, "bad TCP data offset {off}"),
            DropReason::BadUdpLength(len) => write!(f, "bad UDP length {len}"),
        }
    }
}

impl std::error::Error for DropReason {}

/// The first `len` bytes of `b`: the one length check of a header.
fn header(b: &[u8], len: usize, layer: Layer) -> Result<&[u8], DropReason> {
    b.get(..len).ok_or(DropReason::Truncated(layer))
}

/// A big-endian 16-bit field of a header whose length was checked.
fn be16(h: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([h[f.start], h[f.start + 1]])
}

/// Decode one captured frame of link type `link` into a [`Hit`].
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Hit, DropReason> {
    let (ethertype, rest) = match link {
        LinkType::Ethernet => {
            use field::ethernet::{ETHERTYPE, HEADER_LEN};
            let h = header(frame, HEADER_LEN, Layer::Link)?;
            (be16(h, ETHERTYPE), &frame[HEADER_LEN..])
        }
        LinkType::LinuxSll => {
            use field::sll::{HEADER_LEN, PROTOCOL};
            let h = header(frame, HEADER_LEN, Layer::Link)?;
            (be16(h, PROTOCOL), &frame[HEADER_LEN..])
        }
        LinkType::LinuxSll2 => {
            use field::sll2::{HEADER_LEN, PROTOCOL};
            let h = header(frame, HEADER_LEN, Layer::Link)?;
            (be16(h, PROTOCOL), &frame[HEADER_LEN..])
        }
        LinkType::RawIp => {
            let first = *frame.first().ok_or(DropReason::Truncated(Layer::Link))?;
            return match first >> 4 {
                4 => ipv4(frame),
                6 => ipv6(frame),
                v => Err(DropReason::BadIpVersion(v)),
            };
        }
    };
    by_ethertype(ethertype, rest)
}

/// Skip VLAN tags, then dispatch on the (inner) ethertype.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Result<Hit, DropReason> {
    use field::vlan::{NEXT_ETHERTYPE, TAG_LEN};
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_8021Q | ETHERTYPE_8021AD | ETHERTYPE_QINQ_OLD
    ) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(DropReason::TooManyVlanTags);
        }
        let tag = header(rest, TAG_LEN, Layer::Vlan)?;
        ethertype = be16(tag, NEXT_ETHERTYPE);
        rest = &rest[TAG_LEN..];
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(rest),
        ETHERTYPE_IPV6 => ipv6(rest),
        other => Err(DropReason::NotIp { ethertype: other }),
    }
}

fn addr4(h: &[u8], f: Field) -> Ipv4Addr {
    let mut o = [0u8; 4];
    o.copy_from_slice(&h[f]);
    Ipv4Addr::from(o)
}

fn addr6(h: &[u8], f: Field) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&h[f]);
    Ipv6Addr::from(o)
}

/// The IP packet as long as its header announces (`announced` bytes, the
/// header included): a shorter frame is truncated, padding after it (the
/// Ethernet minimum frame size) is ignored.
fn announced_packet(pkt: &[u8], announced: usize) -> Result<&[u8], DropReason> {
    pkt.get(..announced).ok_or(DropReason::TruncatedIpPayload {
        announced,
        captured: pkt.len(),
    })
}

/// The IP version nibble of a header's first byte, which must be `expected`.
fn check_version(first: u8, expected: u8) -> Result<(), DropReason> {
    match first >> 4 {
        v if v == expected => Ok(()),
        v => Err(DropReason::BadIpVersion(v)),
    }
}

fn ipv4(pkt: &[u8]) -> Result<Hit, DropReason> {
    use field::ipv4::*;
    let h = header(pkt, MIN_HEADER_LEN, Layer::Ipv4)?;
    check_version(h[VER_IHL], 4)?;
    let ihl = h[VER_IHL] & 0x0f;
    if ihl < MIN_IHL {
        return Err(DropReason::BadIhl(ihl));
    }
    let header_len = usize::from(ihl) * 4;
    let total = be16(h, TOTAL_LEN);
    if usize::from(total) < header_len {
        return Err(DropReason::BadTotalLength {
            total,
            header: header_len,
        });
    }
    let packet = announced_packet(pkt, usize::from(total))?;
    if be16(h, FLAGS_FRAG) & FRAG_OFFSET_MASK != 0 {
        return Err(DropReason::NonFirstFragment);
    }
    let src = IpAddr::V4(addr4(h, SRC_ADDR));
    let dst = IpAddr::V4(addr4(h, DST_ADDR));
    // `header_len <= total == packet.len()`, checked above.
    transport(h[PROTOCOL], src, dst, &packet[header_len..])
}

fn ipv6(pkt: &[u8]) -> Result<Hit, DropReason> {
    use field::ipv6::*;
    let h = header(pkt, HEADER_LEN, Layer::Ipv6)?;
    check_version(h[VER_TC], 6)?;
    let packet = announced_packet(pkt, HEADER_LEN + usize::from(be16(h, PAYLOAD_LEN)))?;
    let src = IpAddr::V6(addr6(h, SRC_ADDR));
    let dst = IpAddr::V6(addr6(h, DST_ADDR));
    let (next, payload) = skip_extension_headers(h[NEXT_HEADER], &packet[HEADER_LEN..])?;
    transport(next, src, dst, payload)
}

/// Follow the IPv6 extension-header chain from `next` to the transport
/// header; returns its protocol number and bytes.
fn skip_extension_headers(mut next: u8, mut rest: &[u8]) -> Result<(u8, &[u8]), DropReason> {
    use field::ipv6_ext::*;
    let mut seen = 0;
    loop {
        match next {
            IPPROTO_TCP | IPPROTO_UDP => return Ok((next, rest)),
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT => {
                seen += 1;
                if seen > MAX_IPV6_EXT_HEADERS {
                    return Err(DropReason::TooManyExtensionHeaders);
                }
                let h = header(rest, MIN_LEN, Layer::Ipv6Extension)?;
                let len = if next == IPPROTO_FRAGMENT {
                    if be16(h, FRAG_OFFSET) >> 3 != 0 {
                        return Err(DropReason::NonFirstFragment);
                    }
                    MIN_LEN
                } else {
                    (usize::from(h[HDR_EXT_LEN]) + 1) * UNIT
                };
                next = h[NEXT_HEADER];
                rest = rest
                    .get(len..)
                    .ok_or(DropReason::Truncated(Layer::Ipv6Extension))?;
            }
            other => return Err(DropReason::NotTcpUdp(other)),
        }
    }
}

fn transport(proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Result<Hit, DropReason> {
    // The header after its length check, and the TCP flags (none for UDP).
    let (h, tcp_flags) = match proto {
        IPPROTO_TCP => {
            use field::tcp::*;
            let h = header(payload, MIN_HEADER_LEN, Layer::Tcp)?;
            let offset = h[DATA_OFFSET] >> 4;
            if offset < MIN_DATA_OFFSET || usize::from(offset) * 4 > payload.len() {
                return Err(DropReason::BadTcpOffset(offset));
            }
            (h, Some(h[FLAGS] & FLAGS_MASK))
        }
        IPPROTO_UDP => {
            use field::udp::*;
            let h = header(payload, HEADER_LEN, Layer::Udp)?;
            let len = be16(h, LENGTH);
            if usize::from(len) < HEADER_LEN {
                return Err(DropReason::BadUdpLength(len));
            }
            (h, None)
        }
        other => return Err(DropReason::NotTcpUdp(other)),
    };
    use field::ports::{DST_PORT, SRC_PORT};
    let (sport, dport) = (be16(h, SRC_PORT), be16(h, DST_PORT));
    Ok(match tcp_flags {
        Some(flags) => Hit::tcp(src, dst, sport, dport, flags),
        None => Hit::udp(src, dst, sport, dport),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, PSH, SYN};
    use knock_testkit::frames as kit;
    use proptest::prelude::*;

    pub(crate) const SRC4: [u8; 4] = [192, 0, 2, 7];
    pub(crate) const DST4: [u8; 4] = [198, 51, 100, 1];

    pub(crate) fn src6() -> Ipv6Addr {
        "2001:db8::7".parse().unwrap()
    }
    pub(crate) fn dst6() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    /// TCP header with `opts_words` 32-bit words of options and `data`
    /// bytes of payload; the reserved/ECN bits (0xc0) are set, so the
    /// decoder must mask them off.
    pub(crate) fn tcp(
        sport: u16,
        dport: u16,
        flags: u8,
        opts_words: usize,
        data: usize,
    ) -> Vec<u8> {
        kit::Tcp {
            src_port: sport,
            options_words: opts_words,
            data,
            ..kit::Tcp::new(dport, flags | 0xc0)
        }
        .build()
    }

    pub(crate) fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
        kit::udp_with(sport, dport, data, None)
    }

    pub(crate) fn ipv4_with(proto: u8, opts_words: usize, frag: u16, l4: &[u8]) -> Vec<u8> {
        kit::Ipv4 {
            options_words: opts_words,
            frag,
            ..kit::Ipv4::new(SRC4.into(), DST4.into(), proto)
        }
        .build(l4)
    }

    pub(crate) fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        ipv4_with(proto, 0, 0, l4)
    }

    /// IPv6 packet; `ext` is the already-encoded extension chain, `first_nh`
    /// the next-header value in the fixed header.
    pub(crate) fn ipv6_with(first_nh: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        kit::Ipv6::new(src6(), dst6(), first_nh).build(ext, l4)
    }

    pub(crate) fn ipv6(proto: u8, l4: &[u8]) -> Vec<u8> {
        ipv6_with(proto, &[], l4)
    }

    pub(crate) use kit::{ethernet as ether, sll, sll2};

    /// The hit a sample segment from `src` to `dst` decodes to (source
    /// port 40000).
    fn hit(src: IpAddr, dst: IpAddr, dport: u16, proto: Proto, flags: u8) -> Hit {
        Hit {
            proto,
            ..Hit::tcp(src, dst, 40000, dport, flags)
        }
    }

    fn hit4(dport: u16, proto: Proto, flags: u8) -> Hit {
        hit(SRC4.into(), DST4.into(), dport, proto, flags)
    }

    fn hit6(dport: u16, proto: Proto, flags: u8) -> Hit {
        hit(src6().into(), dst6().into(), dport, proto, flags)
    }

    /// Decode `frame` as raw IP.
    fn raw(frame: &[u8]) -> Result<Hit, DropReason> {
        decode(LinkType::RawIp, frame)
    }

    /// Decode each case's frame as `link`; a failure names its case.
    fn check(link: LinkType, cases: Vec<(&str, Vec<u8>, Result<Hit, DropReason>)>) {
        for (name, frame, want) in cases {
            assert_eq!(decode(link, &frame), want, "{link}: {name}");
        }
    }

    /// `p` with the big-endian 16-bit field `f` set to `v`.
    fn with_be16(mut p: Vec<u8>, f: Field, v: u16) -> Vec<u8> {
        p[f].copy_from_slice(&v.to_be_bytes());
        p
    }

    /// `p` with byte `at` set to `v`.
    fn with_byte(mut p: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
        p[at] = v;
        p
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
        let padded = |proto, l4: Vec<u8>, pad: &[u8]| {
            let mut f = ether(ETHERTYPE_IPV4, &[], &ipv4(proto, &l4));
            f.extend_from_slice(pad);
            f
        };
        let t = tcp(40000, 7000, SYN, 0, 0);
        let u = udp(40000, 9000, 0);
        check(
            LinkType::Ethernet,
            vec![
                // A 54-byte TCP/IPv4 frame padded to the 60-byte Ethernet minimum.
                (
                    "TCP",
                    padded(6, t, &[0xff; 6]),
                    Ok(hit4(7000, Proto::Tcp, SYN)),
                ),
                // Padding after a UDP datagram, too.
                (
                    "UDP",
                    padded(17, u, &[0; 18]),
                    Ok(hit4(9000, Proto::Udp, 0)),
                ),
            ],
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
        assert_eq!(
            decode(LinkType::Ethernet, &f),
            Err(DropReason::TooManyVlanTags)
        );
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let ip4 = ipv4(6, &tcp(40000, 7000, SYN, 0, 0));
        let ip6 = ipv6(6, &tcp(40000, 7000, FIN, 0, 0));
        // How each cooked capture frames a payload of an ethertype.
        type Framing = fn(u16, &[u8]) -> Vec<u8>;
        let cooked: [(LinkType, Framing); 2] =
            [(LinkType::LinuxSll, sll), (LinkType::LinuxSll2, sll2)];
        for (link, frame) in cooked {
            check(
                link,
                vec![
                    (
                        "IPv4",
                        frame(ETHERTYPE_IPV4, &ip4),
                        Ok(hit4(7000, Proto::Tcp, SYN)),
                    ),
                    (
                        "IPv6",
                        frame(ETHERTYPE_IPV6, &ip6),
                        Ok(hit6(7000, Proto::Tcp, FIN)),
                    ),
                    (
                        "ARP",
                        frame(0x0806, &[0; 28]),
                        Err(DropReason::NotIp { ethertype: 0x0806 }),
                    ),
                ],
            );
        }
    }

    #[test]
    fn raw_ip_by_version_nibble() {
        let ip4 = ipv4(17, &udp(40000, 5353, 4));
        let ip6 = ipv6(6, &tcp(40000, 22, SYN, 0, 0));
        check(
            LinkType::RawIp,
            vec![
                ("IPv4", ip4.clone(), Ok(hit4(5353, Proto::Udp, 0))),
                ("IPv6", ip6, Ok(hit6(22, Proto::Tcp, SYN))),
                (
                    "version 5",
                    with_byte(ip4, 0, 0x55),
                    Err(DropReason::BadIpVersion(5)),
                ),
                ("empty", Vec::new(), Err(DropReason::Truncated(Layer::Link))),
            ],
        );
    }

    #[test]
    fn ethertype_and_version_must_agree() {
        let f = ether(ETHERTYPE_IPV4, &[], &ipv6(6, &tcp(1, 2, SYN, 0, 0)));
        assert_eq!(
            decode(LinkType::Ethernet, &f),
            Err(DropReason::BadIpVersion(6))
        );
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
        assert_eq!(raw(&f).unwrap(), hit4(7001, Proto::Udp, 0));
    }

    #[test]
    fn ipv4_bad_header_lengths() {
        use field::ipv4::{TOTAL_LEN, VER_IHL};
        let p = ipv4(6, &tcp(1, 2, SYN, 0, 0));
        let total = |v| with_be16(p.clone(), TOTAL_LEN, v);
        check(
            LinkType::RawIp,
            vec![
                (
                    "IHL 4",
                    with_byte(p.clone(), VER_IHL, 0x44),
                    Err(DropReason::BadIhl(4)),
                ),
                (
                    "total length below the header",
                    total(19),
                    Err(DropReason::BadTotalLength {
                        total: 19,
                        header: 20,
                    }),
                ),
                // The frame has more, as padding.
                (
                    "total length cuts the TCP header short",
                    total(30),
                    Err(DropReason::Truncated(Layer::Tcp)),
                ),
                (
                    "total length larger than the frame",
                    total(100),
                    Err(DropReason::TruncatedIpPayload {
                        announced: 100,
                        captured: 40,
                    }),
                ),
            ],
        );
    }

    #[test]
    fn tcp_bad_data_offset() {
        use field::tcp::DATA_OFFSET;
        let offset = |data, words: u8| {
            ipv4(
                6,
                &with_byte(tcp(1, 7000, SYN, 0, data), DATA_OFFSET, words << 4),
            )
        };
        assert_eq!(raw(&offset(0, 4)), Err(DropReason::BadTcpOffset(4)));
        // 32 bytes > 28 available.
        assert_eq!(raw(&offset(8, 8)), Err(DropReason::BadTcpOffset(8)));
        // 28 bytes: exactly the segment.
        assert!(raw(&offset(8, 7)).is_ok());
    }

    #[test]
    fn udp_bad_length() {
        let u = with_be16(udp(1, 7000, 0), field::udp::LENGTH, 7);
        assert_eq!(raw(&ipv4(17, &u)), Err(DropReason::BadUdpLength(7)));
    }

    #[test]
    fn ipv4_fragments() {
        let t = tcp(40000, 7000, SYN, 0, 16);
        // First fragment with more-fragments set: decoded.
        assert_eq!(
            raw(&ipv4_with(6, 0, 0x2000, &t)),
            Ok(hit4(7000, Proto::Tcp, SYN))
        );
        // Non-first fragments (with and without MF): dropped, even though the
        // bytes would look like a header.
        for frag in [0x2001u16, 0x0001, 0x1fff, 0x0100] {
            let p = ipv4_with(6, 0, frag, &t);
            assert_eq!(raw(&p), Err(DropReason::NonFirstFragment), "frag {frag:#x}");
        }
        // First fragment too short to hold the TCP header.
        let p = ipv4_with(6, 0, 0x2000, &t[..12]);
        assert_eq!(raw(&p), Err(DropReason::Truncated(Layer::Tcp)));
        // Don't-fragment bit alone is fine.
        let p = ipv4_with(17, 0, 0x4000, &udp(1, 9, 0));
        assert!(raw(&p).is_ok());
    }

    #[test]
    fn icmp_and_others_ignored() {
        let icmp = [8u8, 0, 0, 0, 0, 1, 0, 1];
        // ESP after hop-by-hop.
        let hbh = [50u8, 0, 1, 4, 0, 0, 0, 0];
        check(
            LinkType::RawIp,
            vec![
                ("ICMP", ipv4(1, &icmp), Err(DropReason::NotTcpUdp(1))),
                ("ICMPv6", ipv6(58, &icmp), Err(DropReason::NotTcpUdp(58))),
                (
                    "ESP after hop-by-hop",
                    ipv6_with(0, &hbh, &[0; 16]),
                    Err(DropReason::NotTcpUdp(50)),
                ),
                (
                    "no next header",
                    ipv6(59, &[]),
                    Err(DropReason::NotTcpUdp(59)),
                ),
            ],
        );
        assert_eq!(
            decode(LinkType::Ethernet, &ether(0x0806, &[], &[0; 28])),
            Err(DropReason::NotIp { ethertype: 0x0806 })
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
        assert_eq!(raw(&p).unwrap(), hit6(7000, Proto::Tcp, SYN));
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
        assert_eq!(raw(&p), Err(DropReason::NonFirstFragment));
    }

    /// A UDP datagram after `n` destination-options headers (8 bytes each).
    fn after_dstopts(n: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        for i in 1..=n {
            let next = if i == n { 17 } else { 60 };
            ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        ipv6_with(60, &ext, &udp(1, 7000, 0))
    }

    #[test]
    fn ipv6_extension_header_limit() {
        assert!(raw(&after_dstopts(MAX_IPV6_EXT_HEADERS)).is_ok());
        assert_eq!(
            raw(&after_dstopts(MAX_IPV6_EXT_HEADERS + 1)),
            Err(DropReason::TooManyExtensionHeaders)
        );
    }

    #[test]
    fn ipv6_payload_length_bounds() {
        use field::ipv6::PAYLOAD_LEN;
        let p = ipv6(6, &tcp(1, 7000, SYN, 0, 0));
        let hbh = [6u8, 4, 0, 0, 0, 0, 0, 0];
        let mut padded = ipv6(17, &udp(1, 7000, 0));
        padded.extend_from_slice(&[0; 10]);
        check(
            LinkType::RawIp,
            vec![
                (
                    "extension header length pointing past the payload",
                    ipv6_with(0, &hbh, &tcp(1, 7000, SYN, 0, 0)),
                    Err(DropReason::Truncated(Layer::Ipv6Extension)),
                ),
                // The rest is padding.
                (
                    "payload length shorter than the TCP header",
                    with_be16(p.clone(), PAYLOAD_LEN, 10),
                    Err(DropReason::Truncated(Layer::Tcp)),
                ),
                (
                    "payload length longer than the frame",
                    with_be16(p, PAYLOAD_LEN, 21),
                    Err(DropReason::TruncatedIpPayload {
                        announced: 61,
                        captured: 60,
                    }),
                ),
            ],
        );
        // Padding after the announced payload is ignored.
        assert!(raw(&padded).is_ok());
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
            DropReason::Truncated(Layer::Tcp).to_string(),
            "truncated in the TCP header"
        );
        assert_eq!(
            DropReason::NotTcpUdp(1).to_string(),
            "not TCP or UDP (protocol 1)"
        );
        assert_eq!(
            DropReason::NotIp { ethertype: 0x0806 }.to_string(),
            "not IP (ethertype 0x0806)"
        );
        assert_eq!(
            DropReason::NonFirstFragment.to_string(),
            "non-first fragment"
        );
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
