//! Building knock packets: one TCP segment or UDP datagram, transport header
//! included, checksum filled in. Pure: no I/O.
//!
//! Raw transport-layer sockets leave the TCP/UDP checksum to the sender, and
//! the checksum covers a pseudo-header with the source address, so the
//! caller passes the address the kernel will send from.

use std::net::IpAddr;

use knock_common::flags::{self, SYN};
use knock_common::Proto;
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::tcp::MutableTcpPacket;
use pnet::packet::udp::MutableUdpPacket;
use pnet::packet::util::{ipv4_checksum, ipv6_checksum};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Window advertised by knock segments.
pub const TCP_WINDOW: u16 = 64240;
/// Payload of a UDP knock: one NUL byte, as the classic client sends.
pub const UDP_PAYLOAD: &[u8] = &[0];

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub port: u16,
    pub proto: Proto,
    /// TCP header flags (`knock_common::flags` bits); unused for UDP.
    pub flags: u8,
}

impl Hit {
    /// Can an ordinary socket send this hit? Only a plain SYN (a connect)
    /// or a UDP datagram.
    pub fn is_plain(&self) -> bool {
        self.proto == Proto::Udp || self.flags == SYN
    }

    /// `tcp`, `udp`, or `tcp (fin,ack)` when the flags are not just SYN.
    pub fn describe_proto(&self) -> String {
        if self.is_plain() {
            self.proto.to_string()
        } else if self.flags == 0 {
            format!("{} (no flags)", self.proto)
        } else {
            format!("{} ({})", self.proto, flags::names_of(self.flags))
        }
    }
}

/// The source and destination addresses are of different families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("source address {src} and destination address {dst} are of different IP versions")]
pub struct FamilyMismatch {
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// The checksum of `segment` (a transport header and its payload, of
/// protocol `proto`) with the pseudo-header of `src` and `dst`, its own
/// checksum field (16-bit word `word`) counted as zero; mixed families are
/// refused.
fn transport_checksum(
    segment: &[u8],
    word: usize,
    proto: IpNextHeaderProtocol,
    src: IpAddr,
    dst: IpAddr,
) -> Result<u16, FamilyMismatch> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ok(ipv4_checksum(segment, word, &[], &s, &d, proto)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(ipv6_checksum(segment, word, &[], &s, &d, proto)),
        _ => Err(FamilyMismatch { src, dst }),
    }
}

/// A TCP segment without options or payload: ports, sequence number and
/// header flags (`knock_common::flags` bits) as given, acknowledgement
/// number 0, checksum over the pseudo-header of `src` and `dst`.
pub fn build_tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
) -> Result<Vec<u8>, FamilyMismatch> {
    let mut buf = vec![0u8; TCP_HEADER_LEN];
    {
        // The buffer has exactly the minimum length, so `new` cannot fail.
        let mut p = MutableTcpPacket::new(&mut buf).expect("buffer holds a TCP header");
        p.set_source(sport);
        p.set_destination(dport);
        p.set_sequence(seq);
        p.set_acknowledgement(0);
        p.set_data_offset((TCP_HEADER_LEN / 4) as u8);
        p.set_flags(flags);
        p.set_window(TCP_WINDOW);
        p.set_urgent_ptr(0);
        p.set_checksum(0);
    }
    // The checksum is the ninth 16-bit word of a TCP header.
    let sum = transport_checksum(&buf, 8, IpNextHeaderProtocols::Tcp, src, dst)?;
    MutableTcpPacket::new(&mut buf)
        .expect("buffer holds a TCP header")
        .set_checksum(sum);
    Ok(buf)
}

/// A UDP datagram carrying `payload`, checksum over the pseudo-header of
/// `src` and `dst` (a computed 0 is sent as 0xffff, RFC 768).
pub fn build_udp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Result<Vec<u8>, FamilyMismatch> {
    let len = UDP_HEADER_LEN + payload.len();
    let mut buf = vec![0u8; len];
    {
        let mut p = MutableUdpPacket::new(&mut buf).expect("buffer holds a UDP header");
        p.set_source(sport);
        p.set_destination(dport);
        // Knock payloads are tiny; saturate rather than wrap for huge input.
        p.set_length(u16::try_from(len).unwrap_or(u16::MAX));
        p.set_checksum(0);
        p.set_payload(payload);
    }
    // The checksum is the fourth 16-bit word of a UDP header.
    let sum = transport_checksum(&buf, 3, IpNextHeaderProtocols::Udp, src, dst)?;
    let sum = if sum == 0 { 0xffff } else { sum };
    MutableUdpPacket::new(&mut buf)
        .expect("buffer holds a UDP header")
        .set_checksum(sum);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, PSH, RST, SYN, URG};
    use knock_testkit::frames as kit;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The Internet checksum (`knock_testkit::frames`, independent of
    /// pnet) of `seg` with its pseudo-header.
    fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> u16 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => kit::transport_checksum_v4(s, d, proto, seg),
            (IpAddr::V6(s), IpAddr::V6(d)) => kit::transport_checksum_v6(s, d, proto, seg),
            _ => panic!("mixed families in test"),
        }
    }

    /// The checksum the segment should carry (computed with its checksum
    /// field, at `at`, zeroed).
    fn expected_checksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8], at: usize) -> u16 {
        let mut zeroed = seg.to_vec();
        zeroed[at..at + 2].fill(0);
        transport_checksum(src, dst, proto, &zeroed)
    }

    /// A receiver's check: the checksum over pseudo-header and the segment
    /// as sent (checksum included) is 0.
    fn verifies(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> bool {
        transport_checksum(src, dst, proto, seg) == 0
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn tcp_syn_ipv4_fields_and_checksum() {
        let src = v4(10, 77, 0, 1);
        let dst = v4(10, 77, 0, 2);
        let seg = build_tcp(src, dst, 40000, 7000, 0xdead_beef, SYN).unwrap();
        assert_eq!(seg.len(), 20);
        assert_eq!(&seg[0..2], &40000u16.to_be_bytes());
        assert_eq!(&seg[2..4], &7000u16.to_be_bytes());
        assert_eq!(&seg[4..8], &0xdead_beefu32.to_be_bytes());
        assert_eq!(&seg[8..12], &[0, 0, 0, 0]);
        assert_eq!(seg[12] >> 4, 5, "data offset");
        assert_eq!(seg[13], SYN);
        assert_eq!(&seg[14..16], &TCP_WINDOW.to_be_bytes());
        assert_eq!(&seg[18..20], &[0, 0], "urgent pointer");
        let sum = u16::from_be_bytes([seg[16], seg[17]]);
        assert_eq!(sum, expected_checksum(src, dst, 6, &seg, 16));
        assert!(verifies(src, dst, 6, &seg));
    }

    #[test]
    fn tcp_flag_sets_are_written_verbatim() {
        let src = v4(192, 0, 2, 1);
        let dst = v4(192, 0, 2, 200);
        for flags in [FIN, FIN | ACK, SYN | ACK, RST, PSH | URG, 0, 0x3f] {
            let seg = build_tcp(src, dst, 1234, 9000, 1, flags).unwrap();
            assert_eq!(seg[13], flags);
            assert!(verifies(src, dst, 6, &seg), "flags {flags:#x}");
        }
    }

    #[test]
    fn tcp_ipv6_checksum() {
        let src = v6("fd77::1");
        let dst = v6("fd77::2");
        let seg = build_tcp(src, dst, 55555, 8000, 42, FIN).unwrap();
        assert_eq!(seg[13], FIN);
        let sum = u16::from_be_bytes([seg[16], seg[17]]);
        assert_eq!(sum, expected_checksum(src, dst, 6, &seg, 16));
        assert!(verifies(src, dst, 6, &seg));
        // The checksum depends on the source address.
        let other = build_tcp(v6("fd77::3"), dst, 55555, 8000, 42, FIN).unwrap();
        assert_ne!(other[16..18], seg[16..18]);
        assert!(!verifies(src, dst, 6, &other));
    }

    #[test]
    fn udp_ipv4_and_ipv6() {
        for (src, dst) in [
            (v4(127, 0, 0, 1), v4(127, 0, 0, 1)),
            (v4(10, 77, 0, 1), v4(10, 77, 0, 2)),
            (v6("::1"), v6("::1")),
            (v6("2001:db8::17"), v6("2001:db8:ffff::1")),
        ] {
            let dg = build_udp(src, dst, 33333, 7001, UDP_PAYLOAD).unwrap();
            assert_eq!(dg.len(), 9);
            assert_eq!(&dg[0..2], &33333u16.to_be_bytes());
            assert_eq!(&dg[2..4], &7001u16.to_be_bytes());
            assert_eq!(&dg[4..6], &9u16.to_be_bytes(), "length");
            assert_eq!(dg[8], 0, "payload");
            let sum = u16::from_be_bytes([dg[6], dg[7]]);
            assert_ne!(sum, 0);
            assert_eq!(sum, expected_checksum(src, dst, 17, &dg, 6), "{src}");
            assert!(verifies(src, dst, 17, &dg));
        }
    }

    #[test]
    fn udp_zero_checksum_is_sent_as_ffff() {
        // Search for a source port whose datagram sums to 0xffff before
        // inversion, i.e. would carry checksum 0.
        let src = v4(10, 0, 0, 1);
        let dst = v4(10, 0, 0, 2);
        let sport = (0..=u16::MAX)
            .find(|&p| {
                let mut dg = build_udp(src, dst, p, 7001, &[]).unwrap();
                dg[6] = 0;
                dg[7] = 0;
                expected_checksum(src, dst, 17, &dg, 6) == 0
            })
            .expect("some source port gives checksum 0");
        let dg = build_udp(src, dst, sport, 7001, &[]).unwrap();
        assert_eq!(&dg[6..8], &[0xff, 0xff]);
        assert!(verifies(src, dst, 17, &dg));
    }

    #[test]
    fn mixed_families_are_refused() {
        let e = build_tcp(v4(127, 0, 0, 1), v6("::1"), 1, 2, 3, SYN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source address 127.0.0.1 and destination address ::1 are of different IP versions"
        );
        assert!(build_udp(v6("::1"), v4(127, 0, 0, 1), 1, 2, UDP_PAYLOAD).is_err());
    }

    proptest! {
        #[test]
        fn every_segment_verifies(
            s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
            s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            seq in any::<u32>(), flags in 0u8..64,
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let pairs = [
                (IpAddr::from(s), IpAddr::from(d)),
                (IpAddr::from(s6), IpAddr::from(d6)),
            ];
            for (src, dst) in pairs {
                let seg = build_tcp(src, dst, sport, dport, seq, flags).unwrap();
                prop_assert!(verifies(src, dst, 6, &seg));
                prop_assert_eq!(seg[13], flags);
                let dg = build_udp(src, dst, sport, dport, &payload).unwrap();
                prop_assert!(verifies(src, dst, 17, &dg));
                prop_assert_eq!(&dg[8..], &payload[..]);
            }
        }
    }
}
