//! Namespace and link plumbing through rtnetlink.
//!
//! Every netlink conversation runs on a dedicated `std::thread` with its own
//! current-thread tokio runtime. A thread that must act inside a namespace
//! calls `setns` first, so the netlink socket it opens belongs to that
//! namespace; tokio worker threads are never moved between namespaces.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, NetworkNamespace, RouteMessageBuilder};

pub use crate::ns::{ns_exists, ns_path};

/// Open the namespace file of `name` (to pass to `setns` or `setns_by_fd`).
pub fn open_ns(name: &str) -> Result<File> {
    File::open(ns_path(name)).with_context(|| format!("opening namespace {name:?}"))
}

/// Run `f` with a netlink handle on a fresh thread, inside namespace `ns`
/// (`None`: the namespace of the test process).
pub fn in_netns<T, F, Fut>(ns: Option<&str>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let ns = ns.map(str::to_owned);
    let what = ns.clone().unwrap_or_else(|| "<host>".to_owned());
    std::thread::Builder::new()
        .name(format!("netlink-{what}"))
        .spawn(move || -> Result<T> {
            if let Some(ns) = &ns {
                let file = open_ns(ns)?;
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns into namespace {ns:?}"))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime for netlink")?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().context("opening a netlink socket")?;
                tokio::spawn(conn);
                f(handle).await
            })
        })
        .context("spawning a netlink thread")?
        .join()
        .map_err(|_| anyhow!("netlink thread for namespace {what} panicked"))?
}

/// Run plain blocking code `f` on a fresh thread inside namespace `ns`.
pub fn in_ns_thread<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_owned();
    std::thread::spawn(move || -> Result<T> {
        let file = open_ns(&ns)?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into namespace {ns:?}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("thread in namespace panicked"))?
}

/// Whether a TCP connection attempt from namespace `ns` to `dst` port 9
/// reaches a host (connected or refused) within one second.
pub fn tcp_reachable(ns: &str, dst: IpAddr) -> bool {
    in_ns_thread(ns, move || {
        match std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(dst, 9),
            std::time::Duration::from_secs(1),
        ) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        }
    })
    .unwrap_or(false)
}

/// Create namespace `name` (removing a leftover of the same name first).
pub fn create_ns(name: &str) -> Result<()> {
    if ns_exists(name) {
        delete_ns(name)?;
    }
    let owned = name.to_owned();
    in_netns(None, move |_| async move {
        NetworkNamespace::add(owned.clone())
            .await
            .map_err(|e| anyhow!("creating namespace {owned:?}: {e}"))
    })
}

/// Kill every process living in namespace `name`, then delete it.
/// Deleting a namespace deletes its veth ends (and their peers).
pub fn delete_ns(name: &str) -> Result<()> {
    if !ns_exists(name) {
        return Ok(());
    }
    crate::proc::kill_all_in_ns(name);
    let owned = name.to_owned();
    in_netns(None, move |_| async move {
        NetworkNamespace::del(owned.clone())
            .await
            .map_err(|e| anyhow!("deleting namespace {owned:?}: {e}"))
    })
}

/// Index of link `name` in the handle's namespace.
pub async fn link_index(h: &Handle, name: &str) -> Result<u32> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(msg.header.index),
        Ok(None) => bail!("no link named {name:?}"),
        Err(e) => Err(anyhow!("looking up link {name:?}: {e}")),
    }
}

/// Wait (up to 5 s) until link `name` is operationally up: both veth ends
/// up and the kernel's link watch has activated the queue, so packets sent
/// from now on are not dropped.
pub async fn wait_oper_up(h: &Handle, name: &str) -> Result<()> {
    use rtnetlink::packet_route::link::{LinkAttribute, State};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut links = h.link().get().match_name(name.to_owned()).execute();
        let state = match links.try_next().await {
            Ok(Some(msg)) => msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::OperState(s) => Some(*s),
                _ => None,
            }),
            _ => None,
        };
        if state == Some(State::Up) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("link {name:?} is not operationally up after 5 s (state {state:?})");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether link `name` exists in the handle's namespace.
pub async fn link_exists(h: &Handle, name: &str) -> bool {
    link_index(h, name).await.is_ok()
}

/// Set link `name` administratively up or down.
pub async fn set_link_up(h: &Handle, name: &str, up: bool) -> Result<()> {
    let idx = link_index(h, name).await?;
    let msg = if up {
        LinkUnspec::new_with_index(idx).up().build()
    } else {
        LinkUnspec::new_with_index(idx).down().build()
    };
    h.link().set(msg).execute().await.map_err(|e| {
        anyhow!(
            "setting link {name:?} {}: {e}",
            if up { "up" } else { "down" }
        )
    })
}

/// Create veth pair `local`/`peer` in the handle's namespace and move `peer`
/// into namespace `peer_ns`.
pub async fn create_veth_into(h: &Handle, local: &str, peer: &str, peer_ns: &str) -> Result<()> {
    h.link()
        .add(LinkVeth::new(local, peer).build())
        .execute()
        .await
        .map_err(|e| anyhow!("creating veth pair {local:?}/{peer:?}: {e}"))?;
    let idx = link_index(h, peer).await?;
    let target = open_ns(peer_ns)?;
    h.link()
        .set(
            LinkUnspec::new_with_index(idx)
                .setns_by_fd(target.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| anyhow!("moving {peer:?} into namespace {peer_ns:?}: {e}"))
}

/// Delete link `name` in the handle's namespace.
pub async fn delete_link(h: &Handle, name: &str) -> Result<()> {
    let idx = link_index(h, name).await?;
    h.link()
        .del(idx)
        .execute()
        .await
        .map_err(|e| anyhow!("deleting link {name:?}: {e}"))
}

/// Add (or replace) an address on link `name`. IPv6 addresses get `nodad`
/// so they are usable at once.
pub async fn add_addr(h: &Handle, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
    let idx = link_index(h, name).await?;
    let mut req = h.address().add(idx, addr, prefix).replace();
    if addr.is_ipv6() {
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .map_err(|e| anyhow!("adding {addr}/{prefix} to {name:?}: {e}"))
}

/// Add a route to `dest/prefix` via `gateway` (same family).
pub async fn add_route(h: &Handle, dest: IpAddr, prefix: u8, gateway: IpAddr) -> Result<()> {
    let msg = match (dest, gateway) {
        (IpAddr::V4(d), IpAddr::V4(g)) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(d, prefix)
            .gateway(g)
            .build(),
        (IpAddr::V6(d), IpAddr::V6(g)) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(d, prefix)
            .gateway(g)
            .build(),
        _ => bail!("route {dest}/{prefix} via {gateway}: address families differ"),
    };
    h.route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| anyhow!("adding route {dest}/{prefix} via {gateway}: {e}"))
}

/// Bring `lo` up, bring `iface` up and give it the addresses.
pub async fn configure_iface(h: &Handle, iface: &str, addrs: &[(IpAddr, u8)]) -> Result<()> {
    set_link_up(h, "lo", true).await?;
    for (a, p) in addrs {
        add_addr(h, iface, *a, *p).await?;
    }
    set_link_up(h, iface, true).await
}
