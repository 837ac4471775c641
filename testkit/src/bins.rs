//! Where the programs under test live.
//!
//! The suite's own binaries come from the workspace target directory
//! (`$CARGO_TARGET_DIR` or `<workspace>/target`, profile `debug`). The first
//! test that needs one runs `cargo build -p knockd -p knock -p knock-gen -p knock-flood`
//! once per test process, so a test never runs a stale binary; set
//! `KNOCK_TESTS_NO_BUILD=1` to skip that step (the binaries must then exist).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries the tests run (each has a binary of the same
/// name; `knock-flood` is the benchmark's bounded flood tool).
pub const PACKAGES: [&str; 4] = ["knockd", "knock", "knock-gen", "knock-flood"];

/// Root of the Cargo workspace.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

fn build_once() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("KNOCK_TESTS_NO_BUILD").is_some_and(|v| v == "1") {
            return Ok(());
        }
        let cargo = std::env::var("CARGO")
            .ok()
            .or_else(|| option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".to_owned());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace_root()).args(["build", "--quiet"]);
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("running {cargo} build: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`cargo build -p {}` failed ({}):\n{}",
                PACKAGES.join(" -p "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
}

/// Path of the suite's binary `name` (`knockd`, `knock`, `knock-gen`),
/// built first if needed. Panics with the build error otherwise.
pub fn our_bin(name: &str) -> PathBuf {
    assert!(
        PACKAGES.contains(&name),
        "{name:?} is not one of the suite's binaries {PACKAGES:?}"
    );
    if let Err(e) = build_once() {
        panic!("cannot build the binaries under test: {e}");
    }
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "binary {} does not exist (build it with `cargo build -p {name}`)",
        path.display()
    );
    path
}
