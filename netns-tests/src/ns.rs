//! Names and paths of network namespaces: the one thing both the netlink
//! side (creating, deleting) and the process side (finding who lives in a
//! namespace) need, kept here so neither depends on the other.

use std::path::Path;

use rtnetlink::NETNS_PATH;

/// Path of the bind mount that keeps namespace `name` alive.
pub fn ns_path(name: &str) -> String {
    format!("{NETNS_PATH}{name}")
}

/// Whether namespace `name` exists.
pub fn ns_exists(name: &str) -> bool {
    Path::new(&ns_path(name)).exists()
}
