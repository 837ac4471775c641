//! Command-line tests of `knockd`, `knock` and `knock-gen` live in `tests/`.
//! They run the real binaries of the workspace and need no privilege.
//!
//! The binaries belong to other packages, so Cargo does not build them for
//! this one: [`binary`] builds each (or finds it up to date) once per test
//! process, so a test never runs a stale binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::{Mutex, OnceLock};

/// Path of binary `name` of workspace package `package`, built if needed.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashSet::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !built.contains(name) {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = StdCommand::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .arg("--manifest-path")
            .arg(&manifest)
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
        built.insert(name.to_string());
    }
    assert_cmd::cargo::cargo_bin(name)
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
