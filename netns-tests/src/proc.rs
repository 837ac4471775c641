//! Processes inside namespaces: short runs with a deadline, long-running
//! guards that are killed on drop, and the clean-up of a namespace.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `ip netns exec NS PROGRAM` as a [`Command`] (add the arguments).
/// `SUDO_UID`/`SUDO_GID` are removed: under `sudo cargo test` they would
/// make `knock` drop to the invoking user and lose access to the lab's
/// root-owned files.
pub fn ns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd.env_remove("SUDO_UID").env_remove("SUDO_GID");
    cmd
}

/// Result of a short command run.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic with the whole output unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed ({}): {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status,
            self.cmdline,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run `cmd` to completion, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<RunOutput> {
    let cmdline = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("starting {cmdline}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel::<std::io::Result<Output>>();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(r) => r.with_context(|| format!("waiting for {cmdline}"))?,
        Err(_) => {
            // Not reaped yet (the waiting thread still owns it), so the pid
            // is still ours.
            let _ = kill(pid, Signal::SIGKILL);
            let partial = rx.recv_timeout(Duration::from_secs(2)).ok();
            let text = partial
                .and_then(|r| r.ok())
                .map(|o| {
                    format!(
                        "\n--- stdout:\n{}\n--- stderr:\n{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            return Err(anyhow!("{cmdline} did not finish within {timeout:?}{text}"));
        }
    };
    Ok(RunOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline,
    })
}

/// A long-running process; killed (SIGKILL) and reaped on drop unless it
/// has already exited.
pub struct Proc {
    child: Option<Child>,
    status: Option<ExitStatus>,
    /// What was started, for messages.
    pub cmdline: String,
    /// File receiving the process's stdout and stderr.
    pub output: PathBuf,
}

impl Proc {
    /// Start `cmd` with stdout and stderr appended to `output`.
    pub fn spawn(mut cmd: Command, output: &Path) -> Result<Proc> {
        let cmdline = format!("{cmd:?}");
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .with_context(|| format!("opening {}", output.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().with_context(|| format!("starting {cmdline}"))?;
        Ok(Proc {
            child: Some(child),
            status: None,
            cmdline,
            output: output.to_owned(),
        })
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Send `sig` if the process has not been reaped yet.
    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        if self.try_status().is_some() {
            return Err(anyhow!("{} has already exited", self.cmdline));
        }
        let pid = self.pid().ok_or_else(|| anyhow!("no process"))?;
        kill(pid, sig).with_context(|| format!("sending {sig} to {}", self.cmdline))
    }

    /// Exit status if the process has exited (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.status = Some(st);
                }
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process printed so far.
    pub fn output_text(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Kill and reap now.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                if let Ok(st) = c.wait() {
                    self.status = Some(st);
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Inode of a namespace file (what `/proc/PID/ns/net` links to).
fn ns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Pids of the processes whose network namespace is `ns`.
pub fn pids_in_ns(ns: &str) -> Vec<Pid> {
    let Some(ino) = ns_inode(&crate::ns::ns_path(ns)) else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|&pid| ns_inode(&format!("/proc/{pid}/ns/net")) == Some(ino))
        .map(Pid::from_raw)
        .collect()
}

/// SIGKILL every process living in namespace `ns` (all of them were started
/// by the test that owns the namespace) and wait up to a second for them.
pub fn kill_all_in_ns(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let pids = pids_in_ns(ns);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            let _ = kill(pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
