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
pub fn command(package: &str, name: &str) -> assert_cmd::Command {
    assert_cmd::Command::new(binary(package, name))
}
