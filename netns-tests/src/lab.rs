//! A throw-away test network: a server namespace and a client namespace
//! joined by a veth pair, torn down on drop (also when the test panics).

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use crate::netlink::{self, in_netns};
use crate::proc::{ns_command, run_with_timeout, Proc, RunOutput};
use crate::wait::{self, DEFAULT_TIMEOUT};

/// Prefix of every namespace the suite creates.
pub const NS_PREFIX: &str = "kt-";

/// Upper bound for any short command (a knock, knock-gen, ...).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// One knocking host: its namespace and addresses.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// A further veth pair between the client and the server namespace
/// ([`Lab::add_server_link`]): a second server interface.
#[derive(Debug, Clone)]
pub struct Link {
    /// The end in the server namespace.
    pub server_if: String,
    /// The end in the (primary) client namespace.
    pub client_if: String,
    pub server_v4: Ipv4Addr,
    pub client_v4: Ipv4Addr,
    pub server_v6: Ipv6Addr,
    pub client_v6: Ipv6Addr,
}

impl Link {
    fn server_addrs(&self) -> [(IpAddr, u8); 2] {
        [
            (IpAddr::V4(self.server_v4), 24),
            (IpAddr::V6(self.server_v6), 64),
        ]
    }

    fn client_addrs(&self) -> [(IpAddr, u8); 2] {
        [
            (IpAddr::V4(self.client_v4), 24),
            (IpAddr::V6(self.client_v6), 64),
        ]
    }
}

/// Server + client namespaces joined by a veth pair.
///
/// * server: `10.200.N.1/24`, `fd42:N::1/64` on [`Lab::server_if`]
/// * client: `10.200.N.2/24`, `fd42:N::2/64` on [`Lab::client_if`]
/// * extra clients ([`Lab::add_client`]): `10.201.K.2/24`, `fd43:K::2/64`,
///   routed through the client namespace, so their packets reach the
///   server's veth with their own source address.
/// * further server links ([`Lab::add_server_link`]): another veth pair
///   between the client and the server namespace, server
///   `10.(201+K).N.1/24`, `fd4(3+K):N::1/64`, client `.2`/`::2` (K = 1, 2, ...).
pub struct Lab {
    /// Test name (sanitised).
    pub name: String,
    /// The N in 10.200.N.0/24.
    pub net: u8,
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
    extra: Vec<Host>,
    links: Cell<u8>,
    dir: Option<tempfile::TempDir>,
    counter: Cell<u32>,
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    if s.is_empty() {
        "lab".to_owned()
    } else {
        s
    }
}

fn hash32(s: &str) -> u32 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish() as u32
}

/// Remove `kt-PID-...` namespaces whose test process no longer exists
/// (leftovers of a crashed or killed run).
fn remove_stale_namespaces() {
    let Ok(dir) = fs::read_dir(rtnetlink::NETNS_PATH) else {
        return;
    };
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = netlink::delete_ns(&name);
        }
    }
}

impl Lab {
    /// Build the lab for test `test_name`. Panics with the reason on failure.
    pub fn new(test_name: &str) -> Lab {
        match Lab::try_new(test_name) {
            Ok(l) => l,
            Err(e) => panic!("cannot build the test network for {test_name}: {e:#}"),
        }
    }

    /// Build the lab for test `test_name`.
    pub fn try_new(test_name: &str) -> Result<Lab> {
        remove_stale_namespaces();
        let name = sanitize(test_name);
        let pid = std::process::id();
        let h = hash32(&name);
        let net = (h % 250) as u8 + 1;
        let dir = tempfile::Builder::new()
            .prefix(&format!("knock-{name}-"))
            .tempdir()
            .context("creating a temporary directory")?;
        let lab = Lab {
            server_ns: format!("{NS_PREFIX}{pid}-{name}-s"),
            client_ns: format!("{NS_PREFIX}{pid}-{name}-c"),
            server_if: format!("ks{:08x}", h),
            client_if: format!("kc{:08x}", h),
            name,
            net,
            extra: Vec::new(),
            links: Cell::new(0),
            dir: Some(dir),
            counter: Cell::new(0),
        };
        // From here on, Drop cleans up whatever was created.
        netlink::create_ns(&lab.server_ns)?;
        netlink::create_ns(&lab.client_ns)?;
        lab.create_link()?;
        Ok(lab)
    }

    pub fn server_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.net, 1)
    }

    pub fn client_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.net, 2)
    }

    pub fn server_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd42, u16::from(self.net), 0, 0, 0, 0, 0, 1)
    }

    pub fn client_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd42, u16::from(self.net), 0, 0, 0, 0, 0, 2)
    }

    /// The primary client.
    pub fn client(&self) -> Host {
        Host {
            ns: self.client_ns.clone(),
            v4: self.client_v4(),
            v6: self.client_v6(),
        }
    }

    /// The test's private directory (removed on drop unless the test failed).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }

    /// A path inside [`Lab::dir`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Write `content` to `name` inside [`Lab::dir`]; returns the path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }

    /// Create the directory `name` inside [`Lab::dir`]; returns its path.
    pub fn create_dir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        p
    }

    /// `-i IFACE -c CONF -g LOG`: what points a knock daemon at the
    /// server's veth, the configuration file `conf` and the log file `log`.
    pub fn daemon_args(&self, conf: &Path, log: &Path) -> Vec<String> {
        vec![
            "-i".to_owned(),
            self.server_if.clone(),
            "-c".to_owned(),
            conf.display().to_string(),
            "-g".to_owned(),
            log.display().to_string(),
        ]
    }

    /// A fresh name `prefix-K` for files of this lab.
    pub fn unique(&self, prefix: &str) -> String {
        let k = self.counter.get() + 1;
        self.counter.set(k);
        format!("{prefix}-{k}")
    }

    fn create_link(&self) -> Result<()> {
        self.wire_pair(
            &self.server_if,
            &self.client_if,
            self.server_addrs(),
            [
                (IpAddr::V4(self.client_v4()), 24),
                (IpAddr::V6(self.client_v6()), 64),
            ],
        )
    }

    /// The addresses of the server's end of the lab's first veth pair.
    fn server_addrs(&self) -> [(IpAddr, u8); 2] {
        [
            (IpAddr::V4(self.server_v4()), 24),
            (IpAddr::V6(self.server_v6()), 64),
        ]
    }

    /// Take the server's veth down (`false`) or up (`true`); addresses are
    /// put back after up.
    pub fn set_server_link(&self, up: bool) {
        let sif = self.server_if.clone();
        let addrs = self.server_addrs();
        in_netns(Some(&self.server_ns), move |h| async move {
            netlink::set_link_up(&h, &sif, up).await?;
            if up {
                for (a, p) in addrs {
                    netlink::add_addr(&h, &sif, a, p).await?;
                }
                netlink::wait_oper_up(&h, &sif).await?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("setting the server link up={up}: {e:#}"));
    }

    /// Delete the server's veth (its peer in the client namespace goes too).
    pub fn delete_server_link(&self) {
        self.delete_pair(&self.server_if, &self.client_if);
    }

    /// Create the veth pair again with the same names and addresses (after
    /// [`Lab::delete_server_link`]). Routes of extra clients are not restored.
    pub fn create_server_link(&self) {
        self.create_link()
            .unwrap_or_else(|e| panic!("re-creating the server link: {e:#}"));
    }

    /// Add another knocking host in its own namespace, routed through the
    /// primary client namespace.
    pub fn add_client(&mut self) -> Host {
        let k = self.extra.len() as u8 + 1;
        let host = Host {
            ns: format!("{}{}", self.client_ns, k + 1),
            v4: Ipv4Addr::new(10, 201, k, 2),
            v6: Ipv6Addr::new(0xfd43, u16::from(k), 0, 0, 0, 0, 0, 2),
        };
        let gw4 = Ipv4Addr::new(10, 201, k, 1);
        let gw6 = Ipv6Addr::new(0xfd43, u16::from(k), 0, 0, 0, 0, 0, 1);
        netlink::create_ns(&host.ns)
            .unwrap_or_else(|e| panic!("creating namespace {}: {e:#}", host.ns));
        self.extra.push(host.clone());
        let r = self.wire_client(&host, k, gw4, gw6);
        if let Err(e) = r {
            panic!("wiring client namespace {}: {e:#}", host.ns);
        }
        host
    }

    fn wire_client(&self, host: &Host, k: u8, gw4: Ipv4Addr, gw6: Ipv6Addr) -> Result<()> {
        let up_if = format!("kr{k}-{:06x}", hash32(&self.name) & 0xff_ffff);
        let down_if = format!("kd{k}-{:06x}", hash32(&self.name) & 0xff_ffff);
        // Forwarding in the primary client namespace.
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            run_with_timeout(
                {
                    let mut c = ns_command(&self.client_ns, "sysctl");
                    c.args(["-q", "-w", &format!("{key}=1")]);
                    c
                },
                RUN_TIMEOUT,
            )?
            .assert_success();
        }
        let (up2, down2, ns2) = (up_if.clone(), down_if.clone(), host.ns.clone());
        in_netns(Some(&self.client_ns), move |h| async move {
            netlink::create_veth_into(&h, &up2, &down2, &ns2).await?;
            netlink::configure_iface(&h, &up2, &[(IpAddr::V4(gw4), 24), (IpAddr::V6(gw6), 64)])
                .await
        })?;
        let (v4, v6) = (host.v4, host.v6);
        in_netns(Some(&host.ns), move |h| async move {
            netlink::configure_iface(&h, &down_if, &[(IpAddr::V4(v4), 24), (IpAddr::V6(v6), 64)])
                .await?;
            netlink::wait_oper_up(&h, &down_if).await?;
            netlink::add_route(&h, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, IpAddr::V4(gw4)).await?;
            netlink::add_route(&h, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, IpAddr::V6(gw6)).await
        })?;
        let (c4, c6) = (self.client_v4(), self.client_v6());
        let net4 = Ipv4Addr::new(10, 201, k, 0);
        let net6 = Ipv6Addr::new(0xfd43, u16::from(k), 0, 0, 0, 0, 0, 0);
        in_netns(Some(&self.server_ns), move |h| async move {
            netlink::add_route(&h, IpAddr::V4(net4), 24, IpAddr::V4(c4)).await?;
            netlink::add_route(&h, IpAddr::V6(net6), 64, IpAddr::V6(c6)).await
        })
    }

    /// Add a further veth pair between the client and the server namespace,
    /// with its own subnet (see [`Lab`]), up and addressed.
    pub fn add_server_link(&self) -> Link {
        let k = self.links.get() + 1;
        self.links.set(k);
        let h = hash32(&self.name) & 0xff_ffff;
        let (a, b) = (201 + k, 0xfd43 + u16::from(k));
        let net = u16::from(self.net);
        let link = Link {
            server_if: format!("kv{k}-{h:06x}"),
            client_if: format!("kw{k}-{h:06x}"),
            server_v4: Ipv4Addr::new(10, a, self.net, 1),
            client_v4: Ipv4Addr::new(10, a, self.net, 2),
            server_v6: Ipv6Addr::new(b, net, 0, 0, 0, 0, 0, 1),
            client_v6: Ipv6Addr::new(b, net, 0, 0, 0, 0, 0, 2),
        };
        self.create_server_link_again(&link);
        link
    }

    /// Create `link` (again, after [`Lab::delete_link`]) with its names
    /// and addresses.
    pub fn create_server_link_again(&self, link: &Link) {
        self.wire_pair(
            &link.server_if,
            &link.client_if,
            link.server_addrs(),
            link.client_addrs(),
        )
        .unwrap_or_else(|e| panic!("creating server link {}: {e:#}", link.server_if));
    }

    /// Delete `link` (both ends).
    pub fn delete_link(&self, link: &Link) {
        self.delete_pair(&link.server_if, &link.client_if);
    }

    /// Veth pair `sif` (server namespace) / `cif` (client namespace), up,
    /// with addresses.
    fn wire_pair(
        &self,
        sif: &str,
        cif: &str,
        s_addrs: [(IpAddr, u8); 2],
        c_addrs: [(IpAddr, u8); 2],
    ) -> Result<()> {
        let (s1, c1, cns) = (sif.to_owned(), cif.to_owned(), self.client_ns.clone());
        in_netns(Some(&self.server_ns), move |h| async move {
            netlink::create_veth_into(&h, &s1, &c1, &cns).await?;
            netlink::configure_iface(&h, &s1, &s_addrs).await
        })?;
        let c2 = cif.to_owned();
        in_netns(Some(&self.client_ns), move |h| async move {
            netlink::configure_iface(&h, &c2, &c_addrs).await?;
            netlink::wait_oper_up(&h, &c2).await
        })?;
        let s2 = sif.to_owned();
        in_netns(Some(&self.server_ns), move |h| async move {
            netlink::wait_oper_up(&h, &s2).await
        })
    }

    /// Delete veth `sif` in the server namespace and wait until its peer
    /// `cif` is gone from the client namespace.
    fn delete_pair(&self, sif: &str, cif: &str) {
        let s = sif.to_owned();
        in_netns(Some(&self.server_ns), move |h| async move {
            netlink::delete_link(&h, &s).await
        })
        .unwrap_or_else(|e| panic!("deleting link {sif}: {e:#}"));
        let gone = wait::poll_until(DEFAULT_TIMEOUT, || {
            let c = cif.to_owned();
            let exists = in_netns(Some(&self.client_ns), move |h| async move {
                Ok(netlink::link_exists(&h, &c).await)
            })
            .unwrap_or(true);
            (!exists).then_some(())
        });
        assert!(gone.is_some(), "client end {cif} did not disappear");
    }

    /// Run `program args...` in namespace `ns` to completion (bounded by
    /// [`RUN_TIMEOUT`]).
    pub fn run<S: AsRef<OsStr>>(
        &self,
        ns: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> RunOutput {
        let mut cmd = ns_command(ns, program);
        cmd.args(args);
        run_with_timeout(cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Start a long-running `program args...` in namespace `ns`; its output
    /// goes to a file in [`Lab::dir`]. Killed when the returned guard drops.
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: &str, program: impl AsRef<OsStr>, args: &[S]) -> Proc {
        let stem = Path::new(program.as_ref())
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".to_owned());
        let out = self.path(&format!("{}.out", self.unique(&stem)));
        let mut cmd = ns_command(ns, program);
        cmd.args(args);
        Proc::spawn(cmd, &out).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Start a knock daemon (`program`, ours or the classic one) in the
    /// server namespace on the server veth with configuration `conf`:
    /// `PROGRAM -i IFACE -c CONF -v -g LOG EXTRA...`, then wait for its
    /// `listening on` line.
    pub fn start_daemon(&self, program: &Path, conf: &str, extra: &[&str]) -> Daemon {
        let mut d = self.spawn_daemon(program, conf, extra);
        d.wait_ready();
        d
    }

    /// Like [`Lab::start_daemon`] without waiting for readiness (for `-d`,
    /// or for a daemon expected to fail).
    pub fn spawn_daemon(&self, program: &Path, conf: &str, extra: &[&str]) -> Daemon {
        self.spawn_daemon_on(program, Some(&self.server_if), conf, extra)
    }

    /// Like [`Lab::spawn_daemon`] with `-i IFACE` only if `iface` is given
    /// (without, the daemon takes `Interface` or the default routes).
    pub fn spawn_daemon_on(
        &self,
        program: &Path,
        iface: Option<&str>,
        conf: &str,
        extra: &[&str],
    ) -> Daemon {
        let id = self.unique("knockd");
        let conf_path = self.write_file(&format!("{id}.conf"), conf);
        let log = self.path(&format!("{id}.log"));
        let pidfile = self.path(&format!("{id}.pid"));
        let mut args: Vec<String> = Vec::new();
        if let Some(i) = iface {
            args.extend(["-i".to_owned(), i.to_owned()]);
        }
        args.extend([
            "-c".into(),
            conf_path.display().to_string(),
            "-v".into(),
            "-g".into(),
            log.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = self.spawn(&self.server_ns, program, &args);
        Daemon {
            proc,
            log,
            conf: conf_path,
            pidfile,
        }
    }

    /// Add a route to `dest/prefix` via `gateway` in namespace `ns`.
    pub fn add_route(&self, ns: &str, dest: IpAddr, prefix: u8, gateway: IpAddr) {
        in_netns(Some(ns), move |h| async move {
            netlink::add_route(&h, dest, prefix, gateway).await
        })
        .unwrap_or_else(|e| panic!("in namespace {ns}: {e:#}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.extra.iter().map(|h| h.ns.clone()).collect();
        names.push(self.client_ns.clone());
        names.push(self.server_ns.clone());
        for ns in names {
            if let Err(e) = netlink::delete_ns(&ns) {
                eprintln!("warning: could not delete namespace {ns}: {e:#}");
            }
        }
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!(
                    "test {} failed; its files are kept in {}",
                    self.name,
                    kept.display()
                );
            }
        }
    }
}

/// A running knock daemon with its log file.
pub struct Daemon {
    pub proc: Proc,
    /// The `-g` log file.
    pub log: PathBuf,
    /// The configuration file.
    pub conf: PathBuf,
    /// A pid file path inside the lab directory (pass `-p` yourself to use it).
    pub pidfile: PathBuf,
}

impl Daemon {
    /// Log file text so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log file and stdout/stderr, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "--- {} log file {}:\n{}--- stdout/stderr:\n{}",
            self.proc.cmdline,
            self.log.display(),
            self.log_text(),
            self.proc.output_text()
        )
    }

    /// Wait for the `listening on` log line; panic with the logs if the
    /// daemon exits or stays silent.
    pub fn wait_ready(&mut self) {
        let ok = wait::poll_until(DEFAULT_TIMEOUT, || {
            let up = self.log_text().contains("listening on");
            let dead = !self.proc.is_running();
            (up || dead).then_some(up)
        });
        match ok {
            Some(true) => {}
            Some(false) => panic!(
                "daemon exited during start-up ({:?})\n{}",
                self.proc.try_status(),
                self.dump()
            ),
            None => panic!(
                "daemon did not log 'listening on' within {DEFAULT_TIMEOUT:?}\n{}",
                self.dump()
            ),
        }
    }

    /// Wait (default timeout) for the daemon to exit with a failure (it
    /// refused to start); panic with the logs if it runs on or succeeds.
    pub fn expect_exit_failure(&mut self) {
        let status = self.proc.wait_exit(DEFAULT_TIMEOUT);
        assert!(
            status.is_some_and(|s| !s.success()),
            "the daemon did not fail: {status:?}\n{}",
            self.dump()
        );
    }

    /// Log file and stdout/stderr together, as text.
    pub fn all_output(&self) -> String {
        self.log_text() + &self.proc.output_text()
    }

    /// Wait (default timeout) for `needle` in the log; panic with the log.
    pub fn expect_log(&self, needle: &str) {
        self.expect_log_count(needle, 1);
    }

    /// Wait (default timeout) for `count` occurrences of `needle`.
    pub fn expect_log_count(&self, needle: &str, count: usize) {
        if let Err(e) = wait::wait_for_log_count(&self.log, needle, count, DEFAULT_TIMEOUT) {
            panic!("{e}\n{}", self.dump());
        }
    }

    /// Occurrences of `needle` in the log right now.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Send a signal to the daemon.
    pub fn signal(&mut self, sig: Signal) {
        if let Err(e) = self.proc.signal(sig) {
            panic!("{e:#}\n{}", self.dump());
        }
    }

    /// Panic with the logs unless the daemon is still running.
    pub fn assert_running(&mut self) {
        if !self.proc.is_running() {
            panic!(
                "daemon died ({:?})\n{}",
                self.proc.try_status(),
                self.dump()
            );
        }
    }
}

/// Wait (default timeout) for a command's output file; returns its content
/// or panics with the daemon's logs.
pub fn expect_file(path: &Path, d: &Daemon) -> String {
    wait::wait_for_file(path, DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("{e}\n{}", d.dump()))
}

/// Panic with the daemon's logs if `path` appears within `window`.
pub fn expect_no_file(path: &Path, window: Duration, d: &Daemon) {
    if let Err(e) = wait::assert_file_absent_for(path, window) {
        panic!("{e}\n{}", d.dump());
    }
}
