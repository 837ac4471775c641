//! Sending hits: through raw sockets (any TCP flags, one packet per hit),
//! or through ordinary sockets when raw sockets are not permitted (a
//! non-blocking connect for a SYN, a one-byte datagram for UDP, as the
//! classic client does).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use knock_common::flags;
use knock_common::Proto;
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;
use pnet::transport::{
    transport_channel, TransportChannelType, TransportProtocol, TransportSender,
};
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::packet;
use crate::packet::Hit;

/// Something that puts one hit on the wire.
pub trait Sender {
    fn send(&mut self, dst: IpAddr, hit: &Hit) -> Result<(), SendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{} to {}: {source}", .hit.describe_proto(), .dst)]
    Io {
        dst: IpAddr,
        hit: Hit,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} to {}: only {sent} of {len} bytes were sent",
        .hit.describe_proto(), .dst
    )]
    Short {
        dst: IpAddr,
        hit: Hit,
        sent: usize,
        len: usize,
    },
    #[error("{} to {}: {source}", .hit.describe_proto(), .dst)]
    Build {
        dst: IpAddr,
        hit: Hit,
        #[source]
        source: packet::FamilyMismatch,
    },
    #[error(
        "{} to {}: ordinary sockets can only send SYN and UDP knocks",
        .hit.describe_proto(), .dst
    )]
    NotPlain { dst: IpAddr, hit: Hit },
}

/// Why no sender could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "hit {number} (TCP flags {}) needs a raw socket, \
         which needs root or CAP_NET_RAW ({source})",
        flag_names(*.flags)
    )]
    NeedsRaw {
        /// 1-based position of the hit in the knock (its port may be a
        /// secret, so messages name the position).
        number: usize,
        flags: u8,
        #[source]
        source: io::Error,
    },
    #[error("cannot open a raw {proto} socket: {source}")]
    Raw {
        proto: Proto,
        #[source]
        source: io::Error,
    },
    #[error(
        "{dst} is an IPv6 link-local address, which needs an interface scope; \
         knock on a global or unique-local address instead"
    )]
    LinkLocal { dst: IpAddr },
    #[error("cannot find the local address to send to {dst} from: {source}")]
    Source {
        dst: IpAddr,
        #[source]
        source: io::Error,
    },
}

fn flag_names(bits: u8) -> String {
    if bits == 0 {
        "(none)".to_string()
    } else {
        flags::names_of(bits)
    }
}

/// Random ephemeral source port.
fn source_port() -> u16 {
    rand::rng().random_range(32768..=60999)
}

/// The raw sockets of every protocol and IP version, opened before the
/// privilege is dropped (see `crate::privilege`); each one is the socket or
/// the error of opening it.
pub struct RawSockets {
    v4_tcp: Option<io::Result<TransportSender>>,
    v4_udp: Option<io::Result<TransportSender>>,
    v6_tcp: Option<io::Result<TransportSender>>,
    v6_udp: Option<io::Result<TransportSender>>,
}

fn open_raw(tp: TransportProtocol) -> io::Result<TransportSender> {
    transport_channel(4096, TransportChannelType::Layer4(tp)).map(|(tx, _rx)| tx)
}

impl RawSockets {
    /// Try to open all four (needs root or CAP_NET_RAW).
    pub fn open_all() -> RawSockets {
        let (tcp, udp) = (IpNextHeaderProtocols::Tcp, IpNextHeaderProtocols::Udp);
        RawSockets {
            v4_tcp: Some(open_raw(TransportProtocol::Ipv4(tcp))),
            v4_udp: Some(open_raw(TransportProtocol::Ipv4(udp))),
            v6_tcp: Some(open_raw(TransportProtocol::Ipv6(tcp))),
            v6_udp: Some(open_raw(TransportProtocol::Ipv6(udp))),
        }
    }

    /// No sockets (for runs that send nothing).
    pub fn none() -> RawSockets {
        RawSockets {
            v4_tcp: None,
            v4_udp: None,
            v6_tcp: None,
            v6_udp: None,
        }
    }

    /// Take the sockets of `dst`'s IP version. A protocol that `hits` use
    /// and whose socket could not be opened is an error.
    fn take(&mut self, dst: IpAddr, hits: &[Hit]) -> Result<RawSender, (Proto, io::Error)> {
        let (tcp, udp) = match dst {
            IpAddr::V4(_) => (self.v4_tcp.take(), self.v4_udp.take()),
            IpAddr::V6(_) => (self.v6_tcp.take(), self.v6_udp.take()),
        };
        let not_opened = || io::Error::new(io::ErrorKind::NotConnected, "no raw socket opened");
        let src = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut sender = RawSender {
            src,
            tcp: None,
            udp: None,
        };
        for (proto, sock, slot) in [
            (Proto::Tcp, tcp, &mut sender.tcp),
            (Proto::Udp, udp, &mut sender.udp),
        ] {
            match sock.unwrap_or_else(|| Err(not_opened())) {
                Ok(tx) => *slot = Some(tx),
                Err(e) if hits.iter().any(|h| h.proto == proto) => return Err((proto, e)),
                Err(_) => {}
            }
        }
        Ok(sender)
    }
}

/// Raw transport-layer sockets of one IP version.
pub struct RawSender {
    src: IpAddr,
    tcp: Option<TransportSender>,
    udp: Option<TransportSender>,
}

impl Sender for RawSender {
    fn send(&mut self, dst: IpAddr, hit: &Hit) -> Result<(), SendError> {
        let build = |source| SendError::Build {
            dst,
            hit: *hit,
            source,
        };
        let io = |source| SendError::Io {
            dst,
            hit: *hit,
            source,
        };
        let not_open = || io::Error::new(io::ErrorKind::NotConnected, "no raw socket open");
        let sport = source_port();
        let (buf, sent) = match hit.proto {
            Proto::Tcp => {
                let seq: u32 = rand::random();
                let buf = packet::build_tcp(self.src, dst, sport, hit.port, seq, hit.flags)
                    .map_err(build)?;
                let tx = self.tcp.as_mut().ok_or_else(not_open).map_err(io)?;
                let pkt = TcpPacket::new(&buf).expect("a built segment has a full header");
                let sent = tx.send_to(pkt, dst).map_err(io)?;
                (buf, sent)
            }
            Proto::Udp => {
                let buf = packet::build_udp(self.src, dst, sport, hit.port, packet::UDP_PAYLOAD)
                    .map_err(build)?;
                let tx = self.udp.as_mut().ok_or_else(not_open).map_err(io)?;
                let pkt = UdpPacket::new(&buf).expect("a built datagram has a full header");
                let sent = tx.send_to(pkt, dst).map_err(io)?;
                (buf, sent)
            }
        };
        if sent != buf.len() {
            return Err(SendError::Short {
                dst,
                hit: *hit,
                sent,
                len: buf.len(),
            });
        }
        Ok(())
    }
}

/// Ordinary sockets, for when raw sockets are not permitted: a SYN is a
/// non-blocking connect that is closed at once, a UDP hit a one-byte
/// datagram.
#[derive(Debug, Default)]
pub struct PlainSender;

impl Sender for PlainSender {
    fn send(&mut self, dst: IpAddr, hit: &Hit) -> Result<(), SendError> {
        if !hit.is_plain() {
            return Err(SendError::NotPlain { dst, hit: *hit });
        }
        let addr = SocketAddr::new(dst, hit.port);
        let io = |source| SendError::Io {
            dst,
            hit: *hit,
            source,
        };
        match hit.proto {
            Proto::Tcp => {
                let sock =
                    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                        .map_err(io)?;
                sock.set_nonblocking(true).map_err(io)?;
                match sock.connect(&addr.into()) {
                    Ok(()) => Ok(()),
                    Err(e) if connect_sent_syn(&e) => Ok(()),
                    Err(e) => Err(io(e)),
                }
                // The socket closes here; the SYN is already on its way.
            }
            Proto::Udp => {
                let any: IpAddr = match dst {
                    IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                    IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
                };
                let sock = UdpSocket::bind(SocketAddr::new(any, 0)).map_err(io)?;
                let sent = sock.send_to(packet::UDP_PAYLOAD, addr).map_err(io)?;
                if sent != packet::UDP_PAYLOAD.len() {
                    return Err(SendError::Short {
                        dst,
                        hit: *hit,
                        sent,
                        len: packet::UDP_PAYLOAD.len(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Errors of a non-blocking connect after which the SYN has gone out.
fn connect_sent_syn(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINPROGRESS) | Some(libc::EAGAIN) | Some(libc::ECONNREFUSED)
    )
}

/// Is this the error of a raw socket opened without privilege?
pub fn is_permission_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
        || e.kind() == io::ErrorKind::PermissionDenied
}

/// What to send with, given the outcome of opening raw sockets.
#[derive(Debug)]
pub enum Choice<R> {
    Raw(R),
    /// Raw sockets are not permitted but every hit can go through ordinary
    /// sockets; the error says why raw sockets could not be used.
    Plain(io::Error),
}

/// Decide between raw and ordinary sockets: raw when they opened; ordinary
/// when the failure was a missing privilege and every hit is a plain SYN or
/// UDP; otherwise an error naming the hit that needs raw sockets.
pub fn decide<R>(raw: Result<R, (Proto, io::Error)>, hits: &[Hit]) -> Result<Choice<R>, OpenError> {
    match raw {
        Ok(r) => Ok(Choice::Raw(r)),
        Err((_, e)) if is_permission_error(&e) => match hits.iter().position(|h| !h.is_plain()) {
            None => Ok(Choice::Plain(e)),
            Some(i) => Err(OpenError::NeedsRaw {
                number: i + 1,
                flags: hits[i].flags,
                source: e,
            }),
        },
        Err((proto, source)) => Err(OpenError::Raw { proto, source }),
    }
}

/// Open the sender for `hits` to `dst` from the raw sockets opened
/// earlier. The second value is a note for `-v` when ordinary sockets are
/// used instead of raw ones.
pub fn open(
    dst: IpAddr,
    hits: &[Hit],
    raw: &mut RawSockets,
) -> Result<(Box<dyn Sender>, Option<String>), OpenError> {
    if let IpAddr::V6(v6) = dst {
        if v6.is_unicast_link_local() {
            return Err(OpenError::LinkLocal { dst });
        }
    }
    let src = crate::net::source_for(dst).map_err(|source| OpenError::Source { dst, source })?;
    let taken = raw.take(dst, hits).map(|mut r| {
        r.src = src;
        r
    });
    match decide(taken, hits)? {
        Choice::Raw(r) => Ok((Box::new(r), None)),
        Choice::Plain(e) => Ok((
            Box::new(PlainSender),
            Some(format!(
                "raw sockets are not permitted ({e}); sending through ordinary sockets"
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::flags::{ACK, FIN, SYN};
    use std::net::TcpListener;
    use std::time::Duration;

    fn tcp(port: u16, flags: u8) -> Hit {
        Hit {
            port,
            proto: Proto::Tcp,
            flags,
        }
    }

    fn udp(port: u16) -> Hit {
        Hit {
            port,
            proto: Proto::Udp,
            flags: SYN,
        }
    }

    fn eperm() -> (Proto, io::Error) {
        (Proto::Tcp, io::Error::from_raw_os_error(libc::EPERM))
    }

    #[test]
    fn raw_is_used_when_it_opens() {
        let c = decide(Ok(7), &[tcp(1, FIN)]).unwrap();
        assert!(matches!(c, Choice::Raw(7)));
    }

    #[test]
    fn plain_knocks_fall_back_without_privilege() {
        let c = decide::<()>(Err(eperm()), &[tcp(1, SYN), udp(2)]).unwrap();
        assert!(matches!(c, Choice::Plain(_)));
        let eacces = (Proto::Udp, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(
            decide::<()>(Err(eacces), &[udp(2)]).unwrap(),
            Choice::Plain(_)
        ));
    }

    #[test]
    fn flagged_knocks_need_raw() {
        let e = decide::<()>(Err(eperm()), &[tcp(1, SYN), tcp(7000, FIN | ACK)]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("hit 2 (TCP flags fin,ack)"), "{msg}");
        assert!(!msg.contains("7000"), "the port may be a secret: {msg}");
        assert!(msg.contains("fin,ack"), "{msg}");
        assert!(msg.contains("root or CAP_NET_RAW"), "{msg}");
        let e = decide::<()>(Err(eperm()), &[tcp(9, 0)]).unwrap_err();
        assert!(e.to_string().contains("(none)"), "{e}");
    }

    #[test]
    fn other_raw_errors_are_not_hidden() {
        let other = (Proto::Udp, io::Error::from_raw_os_error(libc::EMFILE));
        let e = decide::<()>(Err(other), &[udp(1)]).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot open a raw udp socket: "),
            "{e}"
        );
    }

    #[test]
    fn link_local_ipv6_is_refused_clearly() {
        let e = open(
            "fe80::1".parse().unwrap(),
            &[udp(7000)],
            &mut RawSockets::none(),
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "fe80::1 is an IPv6 link-local address, which needs an interface scope; \
             knock on a global or unique-local address instead"
        );
    }

    #[test]
    fn plain_udp_sends_one_nul_byte() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        PlainSender
            .send("127.0.0.1".parse().unwrap(), &udp(port))
            .unwrap();
        let mut buf = [0xaau8; 16];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0]);
    }

    #[test]
    fn plain_tcp_connects_to_a_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        PlainSender
            .send("127.0.0.1".parse().unwrap(), &tcp(port, SYN))
            .unwrap();
        // The SYN reached the listener: the handshake completed in the kernel.
        let (_conn, peer) = l.accept().unwrap();
        assert!(peer.ip().is_loopback());
    }

    #[test]
    fn plain_tcp_to_a_closed_port_counts_as_sent() {
        // Find a port nobody listens on.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        PlainSender
            .send("127.0.0.1".parse().unwrap(), &tcp(port, SYN))
            .unwrap();
    }

    #[test]
    fn plain_sender_refuses_flagged_hits() {
        let e = PlainSender
            .send("127.0.0.1".parse().unwrap(), &tcp(7000, FIN))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tcp (fin) to 127.0.0.1: ordinary sockets can only send SYN and UDP knocks"
        );
    }
}
