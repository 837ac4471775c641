//! Command-line tests of `knockd`, `knock` and `knock-gen` live in `tests/`.
//! They run the real binaries of the workspace and need no privilege.
//!
//! The binaries belong to other packages, so Cargo does not build them for
//! this one: `knock_testkit::bins` builds them once per test process, so a
//! test never runs a stale binary.

use std::path::PathBuf;

/// Path of binary `name` of workspace package `package`, built if needed.
pub fn binary(package: &str, name: &str) -> PathBuf {
    assert_eq!(
        package, name,
        "each package of the suite has one binary of its own name"
    );
    knock_testkit::bins::our_bin(name)
}

/// An `assert_cmd` command for binary `name` of package `package`.
/// `SUDO_UID`/`SUDO_GID` are removed: under `sudo cargo test` they would
/// make `knock` drop to the invoking user and lose access to the test's
/// root-owned files (tests of that drop set them explicitly).
pub fn command(package: &str, name: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(binary(package, name));
    c.env_remove("SUDO_UID").env_remove("SUDO_GID");
    c
}
