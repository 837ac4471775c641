//! Where the programs under test live: ours (built once per test process
//! by `knock_testkit::bins`) and the classic ones from Debian's package.

use std::path::PathBuf;

/// The classic daemon (Debian package `knockd`).
pub const CLASSIC_KNOCKD: &str = "/usr/sbin/knockd";
/// The classic client (Debian package `knockd`).
pub const CLASSIC_KNOCK: &str = "/usr/bin/knock";

pub use knock_testkit::bins::{our_bin, target_dir, workspace_root};

/// Our `knockd`.
pub fn knockd() -> PathBuf {
    our_bin("knockd")
}

/// Our `knock`.
pub fn knock() -> PathBuf {
    our_bin("knock")
}

/// Our `knock-gen`.
pub fn knock_gen() -> PathBuf {
    our_bin("knock-gen")
}
