//! Packet capture: a non-blocking libpcap handle whose file descriptor the
//! event loop polls, with the BPF filter of [`crate::bpf`] that lets only
//! possible knocks through, and the addresses of the listening interface.
//!
//! The filter is built by hand and installed through libpcap
//! (`pcap_setfilter`), which adapts it to Linux cooked sockets and falls
//! back to filtering in user space if the kernel refuses it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use crate::bpf::Program;
use crate::packet::LinkType;
use crate::pcap_ffi;

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
    filter: Option<Program>,
    /// Packets the kernel dropped (ring full) that were already reported.
    drops_reported: u32,
}

/// Why a capture could not be opened, filtered or read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot capture on {iface}: {source}")]
    Open {
        iface: String,
        #[source]
        source: pcap::Error,
    },
    #[error("cannot capture on {iface}: close-on-exec: {source}")]
    Cloexec {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot capture on {iface}: unsupported link type {dlt} ({name})")]
    LinkType {
        iface: String,
        dlt: i32,
        name: String,
    },
    #[error("cannot install the capture filter ({len} instructions): {source}")]
    Filter {
        len: usize,
        #[source]
        source: pcap_ffi::FilterRefused,
    },
    #[error("{0}")]
    Read(#[source] pcap::Error),
}

impl CaptureError {
    /// The process lacks the privilege to capture (CAP_NET_RAW).
    pub fn not_permitted(&self) -> bool {
        self.to_string().contains("not permitted")
    }
}

impl Capture {
    /// Open `iface` in immediate, non-promiscuous, non-blocking mode.
    pub fn open(iface: &str) -> Result<Capture, CaptureError> {
        let cap = pcap::Capture::from_device(iface)
            .and_then(|c| {
                c.immediate_mode(true)
                    .promisc(false)
                    .snaplen(SNAPLEN)
                    .buffer_size(BUFFER_SIZE)
                    .open()
            })
            .and_then(|c| c.setnonblock())
            .map_err(|source| CaptureError::Open {
                iface: iface.to_string(),
                source,
            })?;
        // libpcap opens its packet socket, and on Linux an eventfd, without
        // close-on-exec: mark them, or every command inherits them.
        crate::fds::set_cloexec(cap.as_fd())
            .and_then(|()| crate::fds::cloexec_from(3))
            .map_err(|source| CaptureError::Cloexec {
                iface: iface.to_string(),
                source,
            })?;
        let dlt = cap.get_datalink();
        let link = LinkType::from_dlt(dlt.0).ok_or_else(|| CaptureError::LinkType {
            iface: iface.to_string(),
            dlt: dlt.0,
            name: dlt.get_name().unwrap_or_else(|_| "unknown".to_string()),
        })?;
        Ok(Capture {
            cap,
            link,
            filter: None,
            drops_reported: 0,
        })
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Install `filter` unless it is the one already installed. Returns
    /// whether it was installed now.
    pub fn set_filter(&mut self, filter: &Program) -> Result<bool, CaptureError> {
        if self.filter.as_ref() == Some(filter) {
            return Ok(false);
        }
        pcap_ffi::set_filter(&mut self.cap, filter.instructions()).map_err(|source| {
            CaptureError::Filter {
                len: filter.len(),
                source,
            }
        })?;
        self.filter = Some(filter.clone());
        Ok(true)
    }

    /// How many instructions the kernel runs as this capture's filter (0:
    /// none, so libpcap filters in user space), if the kernel says.
    pub fn kernel_filter_len(&self) -> Option<usize> {
        pcap_ffi::kernel_filter_len(self.cap.as_fd())
    }

    /// Packets the kernel dropped because the ring was full since the last
    /// call (since the open, the first time), if libpcap can tell.
    /// One `getsockopt` (`PACKET_STATISTICS`); libpcap keeps the total.
    pub fn new_drops(&mut self) -> Option<u32> {
        let total = self.cap.stats().ok()?.dropped;
        let new = total.wrapping_sub(self.drops_reported);
        self.drops_reported = total;
        Some(new)
    }

    /// The next captured frame, `Ok(None)` when none is waiting.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, CaptureError> {
        match self.cap.next_packet() {
            Ok(p) => Ok(Some(p.data)),
            Err(pcap::Error::TimeoutExpired) => Ok(None),
            Err(e) => Err(CaptureError::Read(e)),
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bpf::{self, FilterSpec};
    use crate::packet;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    fn set<T: Ord>(v: impl IntoIterator<Item = T>) -> BTreeSet<T> {
        v.into_iter().collect()
    }

    /// Say that `test` is skipped for want of the privilege to capture
    /// (`why`); under CI, where tests run as root, a skip is a failure.
    pub(crate) fn skip_unprivileged(test: &str, why: &dyn std::fmt::Display) {
        eprintln!("SKIPPED {test}: {why}");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "needs root in CI"
        );
    }

    /// Open `iface`, or `None` (a skip, refused under CI) without the
    /// privilege to capture.
    fn open_or_skip(iface: &str, test: &str) -> Option<Capture> {
        match Capture::open(iface) {
            Ok(c) => Some(c),
            Err(e) if e.not_permitted() => {
                skip_unprivileged(test, &e);
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// UDP destination ports of the frames `cap` delivers within `wait`,
    /// until one to `until` arrives.
    fn udp_ports_until(cap: &mut Capture, until: u16, wait: Duration) -> Vec<u16> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let link = cap.link();
            match cap.next_frame().unwrap() {
                Some(f) => {
                    if let Ok(hit) = packet::decode(link, f) {
                        seen.push(hit.dst_port);
                        if hit.dst_port == until {
                            break;
                        }
                    }
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        seen
    }

    /// The program that matches nothing installs on a live handle (libpcap
    /// refuses an *optimised* never-matching expression there).
    #[test]
    fn match_nothing_installs_on_a_live_capture() {
        let Some(mut cap) = open_or_skip("lo", "match_nothing_installs_on_a_live_capture") else {
            return;
        };
        let spec = FilterSpec {
            tcp_ports: set([7000]),
            ..FilterSpec::default()
        };
        let p = bpf::build(cap.link(), &spec);
        assert!(p.matches_nothing());
        assert!(cap.set_filter(&p).unwrap());
        assert!(!cap.set_filter(&p).unwrap(), "same program installed twice");
        assert_eq!(cap.kernel_filter_len(), Some(1));
    }

    /// On Ethernet (`lo`) and Linux cooked capture (`any`), the program runs
    /// in the kernel (libpcap rewrites the cooked offsets) and lets exactly
    /// the door's datagrams through: one to another port is dropped, the
    /// next to the door port arrives.
    #[test]
    fn filter_runs_in_the_kernel_on_ethernet_and_cooked_captures() {
        for iface in ["lo", "any"] {
            let Some(mut cap) = open_or_skip(iface, "filter_runs_in_the_kernel") else {
                return;
            };
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Two free ports: one the door's, one not.
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            let door = probe.local_addr().unwrap().port();
            let other = sock.local_addr().unwrap().port();
            let spec = FilterSpec {
                hosts: set(["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]),
                udp_ports: (1..=4000).step_by(2).chain([door]).collect(),
                tcp_ports: (3000..=5000).step_by(3).collect(),
                watch_attempts: false,
            };
            let p = bpf::build(cap.link(), &spec);
            assert!(p.len() > 1000, "{}", p.len());
            cap.set_filter(&p).unwrap();
            assert_eq!(
                cap.kernel_filter_len(),
                Some(p.len()),
                "{iface}: filter not in the kernel"
            );
            for port in [other, door] {
                sock.send_to(b"x", ("127.0.0.1", port)).unwrap();
            }
            let seen = udp_ports_until(&mut cap, door, Duration::from_secs(10));
            // `any` sees a loopback packet on its way out and in.
            assert!(seen.contains(&door), "{iface}: {seen:?}");
            assert!(seen.iter().all(|&p| p == door), "{iface}: {seen:?}");
        }
    }

    /// libpcap refuses a program that does not end with a return; the
    /// error carries libpcap's own message.
    #[test]
    fn a_program_libpcap_refuses_is_an_error_with_its_message() {
        let test = "a_program_libpcap_refuses_is_an_error_with_its_message";
        let Some(mut cap) = open_or_skip("lo", test) else {
            return;
        };
        // `ldh [12]` and no return.
        let no_return = [bpf::Insn {
            code: 0x28,
            jt: 0,
            jf: 0,
            k: 12,
        }];
        let refused = pcap_ffi::set_filter(&mut cap.cap, &no_return).unwrap_err();
        assert!(!refused.message.is_empty());
        let e = CaptureError::Filter {
            len: no_return.len(),
            source: refused.clone(),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "cannot install the capture filter (1 instructions): {}",
                refused.message
            )
        );
        assert_eq!(cap.kernel_filter_len(), Some(0), "nothing installed");
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
