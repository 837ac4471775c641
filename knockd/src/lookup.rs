//! Reverse lookups for `-l`, done on a helper thread so that a slow or
//! hostile DNS server can never stall packet processing. A source is shown
//! as `ADDR (HOSTNAME)` once its name is known, as `ADDR` until then.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Names kept at most; the cache is emptied when full.
const CACHE_MAX: usize = 4096;
/// Lookups waiting at most; further requests are dropped.
const QUEUE_MAX: usize = 256;

type Cache = Arc<Mutex<HashMap<IpAddr, Option<String>>>>;

pub struct Names {
    cache: Cache,
    requests: SyncSender<IpAddr>,
}

impl Names {
    /// Start the lookup thread.
    pub fn start() -> Names {
        let cache: Cache = Arc::default();
        let (requests, rx) = sync_channel(QUEUE_MAX);
        let c = Arc::clone(&cache);
        std::thread::Builder::new()
            .name("knockd-lookup".into())
            .spawn(move || resolve_loop(rx, c))
            .expect("spawning the lookup thread");
        Names { cache, requests }
    }

    /// Ask for `ip`'s name in the background (once).
    pub fn request(&mut self, ip: IpAddr) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.contains_key(&ip) {
            return;
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        match self.requests.try_send(ip) {
            Ok(()) => {
                cache.insert(ip, None);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// `ADDR (HOSTNAME)` when the name is known, `ADDR` otherwise.
    pub fn describe(&mut self, ip: IpAddr) -> String {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&ip) {
            Some(Some(name)) => format!("{ip} ({name})"),
            _ => ip.to_string(),
        }
    }
}

fn resolve_loop(rx: Receiver<IpAddr>, cache: Cache) {
    while let Ok(ip) = rx.recv() {
        let name = dns_lookup::lookup_addr(&ip)
            .ok()
            .filter(|n| *n != ip.to_string());
        if let Some(name) = name {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ip, Some(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
}
