//! Reverse lookups for `-l`, done on a helper thread so that a slow or
//! hostile DNS server can never stall packet processing. A source is shown
//! as `ADDR (HOSTNAME)` once its name is known, as `ADDR` until then.
//!
//! Rules:
//!
//! * A name is looked up only when a door opens for the source (the server
//!   calls [`Names::request`] from its `open`, never for `Stage` lines): a
//!   query per hit would tell whoever watches the DNS traffic how far a
//!   knock got. `Stage` lines always show the bare address.
//! * Each address is looked up at most once while it is in the cache. The
//!   cache holds at most [`CACHE_MAX`] addresses; when full, the oldest
//!   entry is forgotten (never the whole cache, which would repeat every
//!   lookup). At most [`QUEUE_MAX`] lookups wait; further requests are
//!   dropped and asked again at the address's next open.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Addresses kept at most (about 100 bytes each).
pub const CACHE_MAX: usize = 4096;
/// Lookups waiting at most; further requests are dropped.
pub const QUEUE_MAX: usize = 256;

/// Resolves one address to its name (`None`: no name).
pub type Resolver = fn(IpAddr) -> Option<String>;

#[derive(Default)]
struct Cache {
    names: HashMap<IpAddr, Option<String>>,
    /// Addresses in the order they were added, oldest first.
    order: VecDeque<IpAddr>,
}

impl Cache {
    fn insert_pending(&mut self, ip: IpAddr) {
        while self.names.len() >= CACHE_MAX {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.names.remove(&old);
        }
        self.names.insert(ip, None);
        self.order.push_back(ip);
    }
}

type Shared = Arc<Mutex<Cache>>;

pub struct Names {
    cache: Shared,
    requests: SyncSender<IpAddr>,
    sent: u64,
}

impl Names {
    /// Start the lookup thread (system resolver).
    pub fn start() -> Names {
        Names::start_with(system_lookup)
    }

    /// Start the lookup thread with `resolve` as the resolver.
    pub fn start_with(resolve: Resolver) -> Names {
        let cache: Shared = Arc::default();
        let (requests, rx) = sync_channel(QUEUE_MAX);
        let c = Arc::clone(&cache);
        std::thread::Builder::new()
            .name("knockd-lookup".into())
            .spawn(move || resolve_loop(rx, c, resolve))
            .expect("spawning the lookup thread");
        Names {
            cache,
            requests,
            sent: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask for `ip`'s name in the background (once while it is cached).
    /// Call only when a door opens (see the module rules).
    pub fn request(&mut self, ip: IpAddr) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.names.contains_key(&ip) {
            return;
        }
        match self.requests.try_send(ip) {
            Ok(()) => {
                self.sent += 1;
                cache.insert_pending(ip);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Number of lookups handed to the lookup thread so far (for tests).
    #[cfg(test)]
    pub fn lookups_requested(&self) -> u64 {
        self.sent
    }

    /// `ADDR (HOSTNAME)` when the name is known, `ADDR` otherwise.
    pub fn describe(&mut self, ip: IpAddr) -> String {
        match self.lock().names.get(&ip) {
            Some(Some(name)) => format!("{ip} ({name})"),
            _ => ip.to_string(),
        }
    }
}

fn system_lookup(ip: IpAddr) -> Option<String> {
    dns_lookup::lookup_addr(&ip)
        .ok()
        .filter(|n| *n != ip.to_string())
}

fn resolve_loop(rx: Receiver<IpAddr>, cache: Shared, resolve: Resolver) {
    while let Ok(ip) = rx.recv() {
        if let Some(name) = resolve(ip) {
            let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
            // Only while the address is still cached (not evicted meanwhile).
            if let Some(slot) = c.names.get_mut(&ip) {
                *slot = Some(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(n: &mut Names, ip: IpAddr, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut d = n.describe(ip);
        while d != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            d = n.describe(ip);
        }
        d
    }

    #[test]
    fn loopback_gets_a_name_without_blocking_the_caller() {
        let mut n = Names::start();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(n.describe(ip), "127.0.0.1");
        n.request(ip);
        let deadline = Instant::now() + Duration::from_secs(5);
        while n.describe(ip) == "127.0.0.1" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let d = n.describe(ip);
        assert!(d.starts_with("127.0.0.1 (") && d.ends_with(')'), "{d}");
    }

    fn fake(ip: IpAddr) -> Option<String> {
        Some(format!("host-{}", ip.to_string().replace(['.', ':'], "-")))
    }

    #[test]
    fn each_address_is_looked_up_once_and_a_full_cache_forgets_only_the_oldest() {
        let mut n = Names::start_with(fake);
        let first: IpAddr = "10.0.0.1".parse().unwrap();
        n.request(first);
        n.request(first);
        assert_eq!(n.lookups_requested(), 1);
        assert_eq!(
            wait_for(&mut n, first, "10.0.0.1 (host-10-0-0-1)"),
            "10.0.0.1 (host-10-0-0-1)"
        );
        // Fill the cache past its bound (slowly enough for the queue).
        for i in 1..CACHE_MAX as u32 {
            let ip = IpAddr::from((11u32 << 24 | i).to_be_bytes());
            n.request(ip);
            if i % (QUEUE_MAX as u32 / 2) == 0 {
                wait_for(&mut n, ip, &format!("{ip} ({})", fake(ip).unwrap()));
            }
        }
        assert_eq!(n.lookups_requested(), CACHE_MAX as u64);
        let second: IpAddr = IpAddr::from((11u32 << 24 | 1).to_be_bytes());
        let newest: IpAddr = "12.0.0.1".parse().unwrap();
        n.request(newest);
        // Only the oldest went; the others are still known, not asked again.
        assert_eq!(n.lock().names.len(), CACHE_MAX);
        assert!(!n.lock().names.contains_key(&first));
        n.request(second);
        assert_eq!(n.lookups_requested(), CACHE_MAX as u64 + 1);
    }
}
