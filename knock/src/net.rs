//! Resolving the host and finding the local source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use crate::cli::Family;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve host \"{host}\": {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("host \"{host}\" has no {} address", family_name(*.family))]
    NoAddress {
        host: String,
        family: Option<Family>,
    },
}

fn family_name(f: Option<Family>) -> &'static str {
    match f {
        Some(Family::V4) => "IPv4",
        Some(Family::V6) => "IPv6",
        None => "IP",
    }
}

fn matches(family: Option<Family>, ip: &IpAddr) -> bool {
    match family {
        None => true,
        Some(Family::V4) => ip.is_ipv4(),
        Some(Family::V6) => ip.is_ipv6(),
    }
}

/// Pick the first address of the wanted family (any family without `-4`/`-6`).
pub fn pick(host: &str, family: Option<Family>, addrs: &[IpAddr]) -> Result<IpAddr, ResolveError> {
    addrs
        .iter()
        .copied()
        .find(|ip| matches(family, ip))
        .ok_or_else(|| ResolveError::NoAddress {
            host: host.to_string(),
            family,
        })
}

/// Resolve `host` once: a literal address (IPv6 optionally in brackets) or
/// a name looked up through the system resolver.
pub fn resolve(host: &str, family: Option<Family>) -> Result<IpAddr, ResolveError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return pick(host, family, &[ip]);
    }
    if bare.is_empty() {
        return Err(ResolveError::Lookup {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "empty host name"),
        });
    }
    let addrs: Vec<IpAddr> = (bare, 0)
        .to_socket_addrs()
        .map_err(|source| ResolveError::Lookup {
            host: host.to_string(),
            source,
        })?
        .map(|sa| sa.ip())
        .collect();
    pick(host, family, &addrs)
}

/// The address the kernel sends from to reach `dst`: connect an unbound UDP
/// socket (which sends nothing) and read its local address.
pub fn source_for(dst: IpAddr) -> io::Result<IpAddr> {
    let any: IpAddr = match dst {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind(SocketAddr::new(any, 0))?;
    sock.connect(SocketAddr::new(dst, 9))?;
    Ok(sock.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(
            resolve("127.0.0.1", None).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("[::1]", Some(Family::V6)).unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("::1", Some(Family::V4)).unwrap_err().to_string(),
            "host \"::1\" has no IPv4 address"
        );
        assert_eq!(
            resolve("10.0.0.1", Some(Family::V6))
                .unwrap_err()
                .to_string(),
            "host \"10.0.0.1\" has no IPv6 address"
        );
    }

    #[test]
    fn pick_respects_family_and_order() {
        let a: Vec<IpAddr> = vec!["::2".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert_eq!(pick("h", None, &a).unwrap(), a[0]);
        assert_eq!(pick("h", Some(Family::V4), &a).unwrap(), a[1]);
        assert_eq!(pick("h", Some(Family::V6), &a).unwrap(), a[0]);
        assert_eq!(
            pick("h", None, &[]).unwrap_err().to_string(),
            "host \"h\" has no IP address"
        );
    }

    #[test]
    fn unresolvable_names_are_named() {
        let e = resolve("no-such-host.invalid", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot resolve host \"no-such-host.invalid\": "),
            "{e}"
        );
        let e = resolve("", None).unwrap_err();
        assert!(e.to_string().contains("host \"\""), "{e}");
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        let ip = resolve("localhost", Some(Family::V4)).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }

    #[test]
    fn source_address_of_loopback() {
        let src = source_for("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(src, "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
