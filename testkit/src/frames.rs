//! Building packets and frames for tests and benchmarks: the one place that
//! writes Ethernet, VLAN, Linux cooked (SLL, SLL2), IPv4, IPv6 (with
//! extension headers), TCP and UDP headers and their checksums.
//!
//! Every builder takes the fields a test may want to get *wrong* (header
//! lengths, total lengths, fragment fields, data offsets) as plain values,
//! so malformed packets are built with the same code as good ones. Lengths
//! that a test does not override are computed.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_8021Q: u16 = 0x8100;
pub const ETHERTYPE_8021AD: u16 = 0x88a8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Source MAC of built frames (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];
/// Destination MAC of built frames.
pub const BROADCAST: [u8; 6] = [0xff; 6];

// ---------------------------------------------------------------- checksums

/// One's-complement sum of 16-bit big-endian words (an odd tail is padded
/// with a zero byte), added to `acc`.
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

/// Fold a one's-complement sum to 16 bits and complement it.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(data, 0))
}

/// TCP/UDP checksum of `segment` over IPv4 (pseudo-header of RFC 793).
pub fn transport_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc += u32::from(proto) + segment.len() as u32;
    fold(sum16(segment, acc))
}

/// TCP/UDP checksum of `segment` over IPv6 (pseudo-header of RFC 8200 §8.1).
pub fn transport_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc = sum16(&(segment.len() as u32).to_be_bytes(), acc);
    acc += u32::from(proto);
    fold(sum16(segment, acc))
}

/// Byte offset of the checksum inside a TCP or UDP header.
fn checksum_offset(proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(16),
        IPPROTO_UDP => Some(6),
        _ => None,
    }
}

// ---------------------------------------------------------------- transport

/// A TCP header: 20 bytes plus `options_words` words of NOP options, then
/// `data` bytes of payload. `data_offset` overrides the offset field
/// (default: the real header length in words).
#[derive(Debug, Clone, Copy)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: u8,
    pub seq: u32,
    pub options_words: usize,
    pub data_offset: Option<u8>,
    pub data: usize,
}

impl Tcp {
    /// A plain 20-byte TCP header from port 40000 to `dst_port`.
    pub fn new(dst_port: u16, flags: u8) -> Tcp {
        Tcp {
            src_port: 40000,
            dst_port,
            flags,
            seq: 1,
            options_words: 0,
            data_offset: None,
            data: 0,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let hl = 20 + self.options_words * 4;
        let mut t = vec![0u8; hl + self.data];
        t[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        t[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        let doff = self.data_offset.unwrap_or((hl / 4) as u8);
        t[12] = doff << 4;
        t[13] = self.flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[20..hl].fill(1); // NOP options
        for (i, b) in t[hl..].iter_mut().enumerate() {
            *b = i as u8;
        }
        t
    }
}

/// A TCP header from port 40000 to `dst_port` with `flags`.
pub fn tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    Tcp::new(dst_port, flags).build()
}

/// A UDP header from `src_port` to `dst_port` with `data` bytes of payload;
/// `length` overrides the length field.
pub fn udp_with(src_port: u16, dst_port: u16, data: usize, length: Option<u16>) -> Vec<u8> {
    let mut u = vec![0u8; 8 + data];
    u[0..2].copy_from_slice(&src_port.to_be_bytes());
    u[2..4].copy_from_slice(&dst_port.to_be_bytes());
    let len = length.unwrap_or((8 + data) as u16);
    u[4..6].copy_from_slice(&len.to_be_bytes());
    u
}

/// A UDP header from port 40000 to `dst_port`, no payload.
pub fn udp(dst_port: u16) -> Vec<u8> {
    udp_with(40000, dst_port, 0, None)
}

// ---------------------------------------------------------------- IP

/// An IPv4 header followed by a payload. `ihl` (words), `total_len` and the
/// flags/fragment field can be set to anything; by default they describe
/// the packet truthfully, with `options_words` words of NOP options.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub options_words: usize,
    pub ihl: Option<u8>,
    pub total_len: Option<u16>,
    pub frag: u16,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            proto,
            options_words: 0,
            ihl: None,
            total_len: None,
            frag: 0,
        }
    }

    /// Header, then `payload` as is.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options_words * 4;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | (self.ihl.unwrap_or((hl / 4) as u8) & 0x0f);
        let total = self.total_len.unwrap_or((hl + payload.len()) as u16);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6..8].copy_from_slice(&self.frag.to_be_bytes());
        p[8] = 64;
        p[9] = self.proto;
        p[12..16].copy_from_slice(&self.src.octets());
        p[16..20].copy_from_slice(&self.dst.octets());
        p[20..].fill(1); // NOP options
        let ck = checksum(&p);
        p[10..12].copy_from_slice(&ck.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// Header, then `segment` with its TCP/UDP checksum filled in.
    pub fn build_checked(&self, segment: &[u8]) -> Vec<u8> {
        let mut seg = segment.to_vec();
        if let Some(at) = checksum_offset(self.proto).filter(|at| seg.len() >= at + 2) {
            seg[at..at + 2].fill(0);
            let ck = transport_checksum_v4(self.src, self.dst, self.proto, &seg);
            seg[at..at + 2].copy_from_slice(&ck.to_be_bytes());
        }
        self.build(&seg)
    }
}

/// A truthful IPv4 packet carrying `segment` (checksums filled in).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> Vec<u8> {
    Ipv4::new(src, dst, proto).build_checked(segment)
}

/// An IPv6 header, then `ext` (an encoded extension-header chain) and `l4`.
/// `next` is the fixed header's next-header value; `payload_len` overrides
/// the payload length (default `ext.len() + l4.len()`).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub payload_len: Option<u16>,
}

impl Ipv6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next: u8) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            next,
            payload_len: None,
        }
    }

    pub fn build(&self, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        let plen = self.payload_len.unwrap_or((ext.len() + l4.len()) as u16);
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p[6] = self.next;
        p[7] = 64;
        p[8..24].copy_from_slice(&self.src.octets());
        p[24..40].copy_from_slice(&self.dst.octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    /// Like [`Ipv6::build`], with the checksum of the TCP/UDP segment `l4`
    /// (protocol `l4_proto`, the last next-header of the chain) filled in.
    pub fn build_checked(&self, ext: &[u8], l4_proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut seg = l4.to_vec();
        if let Some(at) = checksum_offset(l4_proto).filter(|at| seg.len() >= at + 2) {
            seg[at..at + 2].fill(0);
            let ck = transport_checksum_v6(self.src, self.dst, l4_proto, &seg);
            seg[at..at + 2].copy_from_slice(&ck.to_be_bytes());
        }
        self.build(ext, &seg)
    }
}

/// A truthful IPv6 packet carrying `segment` directly (checksums filled in).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, segment: &[u8]) -> Vec<u8> {
    Ipv6::new(src, dst, proto).build_checked(&[], proto, segment)
}

/// An 8-byte hop-by-hop, routing or destination-options header (PadN
/// only) whose next header is `next`.
pub fn ext_header(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// An 8-byte fragment header: next header `next`, fragment offset `offset`
/// (in 8-byte units), more-fragments flag `more`.
pub fn fragment_header(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1]);
    h
}

// ---------------------------------------------------------------- link

/// An Ethernet II frame (broadcast, from [`SRC_MAC`]) carrying `payload`
/// with `ethertype`, behind one VLAN tag per entry of `tag_types` (the tag
/// protocol identifier of each: [`ETHERTYPE_8021Q`], [`ETHERTYPE_8021AD`],
/// ...; VLAN ids 100, 101, ...).
pub fn ethernet(ethertype: u16, tag_types: &[u16], payload: &[u8]) -> Vec<u8> {
    ethernet_to(BROADCAST, SRC_MAC, ethertype, tag_types, payload)
}

/// [`ethernet`] with explicit addresses.
pub fn ethernet_to(
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: u16,
    tag_types: &[u16],
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tag_types.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, tpid) in tag_types.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The ethertype of an IP packet, by its version nibble.
pub fn ethertype_of(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    }
}

/// A Linux cooked (SLL, 16-byte header) frame of an incoming packet.
pub fn sll(protocol: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 16];
    f[2..4].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    f[4..6].copy_from_slice(&6u16.to_be_bytes());
    f[6..12].copy_from_slice(&SRC_MAC);
    f[14..16].copy_from_slice(&protocol.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A Linux cooked v2 (SLL2, 20-byte header) frame of an incoming packet.
pub fn sll2(protocol: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 20];
    f[0..2].copy_from_slice(&protocol.to_be_bytes());
    f[4..8].copy_from_slice(&1u32.to_be_bytes()); // interface index
    f[8..10].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    f[11] = 6;
    f[12..18].copy_from_slice(&SRC_MAC);
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_rfc1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (before the
        // complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        // A header with its checksum filled in sums to zero.
        let p = Ipv4::new(
            Ipv4Addr::new(192, 0, 2, 7),
            Ipv4Addr::new(198, 51, 100, 1),
            6,
        )
        .build(&[]);
        assert_eq!(checksum(&p[..20]), 0);
    }

    #[test]
    fn transport_checksums_verify() {
        let (s4, d4) = (Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(198, 51, 100, 1));
        let p = ipv4(s4, d4, IPPROTO_TCP, &tcp(7000, 0x02));
        assert_eq!(transport_checksum_v4(s4, d4, IPPROTO_TCP, &p[20..]), 0);
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::7".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let p = ipv6(s6, d6, IPPROTO_UDP, &udp(9000));
        assert_eq!(transport_checksum_v6(s6, d6, IPPROTO_UDP, &p[40..]), 0);
    }

    #[test]
    fn lengths_are_truthful_unless_overridden() {
        let t = Tcp {
            options_words: 2,
            data: 3,
            ..Tcp::new(7000, 0x02)
        }
        .build();
        assert_eq!((t.len(), t[12] >> 4), (31, 7));
        let p = Ipv4 {
            options_words: 1,
            ..Ipv4::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 17)
        }
        .build(&udp(9000));
        assert_eq!((p[0], u16::from_be_bytes([p[2], p[3]])), (0x46, 32));
        let f = ethernet(ETHERTYPE_IPV4, &[ETHERTYPE_8021AD, ETHERTYPE_8021Q], &p);
        assert_eq!(f.len(), 14 + 8 + 32);
        assert_eq!(&f[12..14], &ETHERTYPE_8021AD.to_be_bytes());
        assert_eq!(&f[16..18], &ETHERTYPE_8021Q.to_be_bytes());
        assert_eq!(&f[20..22], &ETHERTYPE_IPV4.to_be_bytes());
    }
}
