//! Start-up and shut-down of the daemon process, in the order that keeps
//! every failure visible: read the configuration, open the log and the
//! captures, take the pid file, then detach (`-d`) — before any thread
//! exists — and run the event loop.

use crate::cli::Cli;
use crate::commands::{DEFAULT_MAX_CHILDREN, DEFAULT_SHUTDOWN_GRACE};
use crate::config;
use crate::fds;
use crate::log::Logger;
use crate::process::{self, PidFile};
use crate::server::{Server, Signals};
use crate::settings::Settings;

/// Run `knockd` as the command line says; returns the exit status. Every
/// value with a `Drop` (the pid file above all) is dropped before return.
pub fn run(cli: &Cli) -> i32 {
    // Whatever the starting process left open (a shell's redirections)
    // must not reach the commands.
    if let Err(e) = fds::cloexec_from(3) {
        eprintln!("knockd: cannot mark inherited descriptors close-on-exec: {e}");
        return 1;
    }
    let cfg = match config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return 1;
        }
    };
    for w in &cfg.warnings {
        eprintln!("knockd: warning: {w}");
    }
    let settings = Settings {
        overrides: cli.overrides(),
        config_path: cli.config.clone(),
        ipv4_only: cli.only_ip_v4,
        lookup: cli.lookup,
        debug: cli.debug,
        attempt_cap: Settings::DEFAULT_ATTEMPT_CAP,
        max_children: DEFAULT_MAX_CHILDREN,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
    };
    let resolved = settings.resolve(&cfg);
    let log = Logger::new(
        resolved.log_file.map(|l| l.value),
        cfg.options.use_syslog,
        cli.verbose,
        cli.debug,
    );
    let interfaces = match resolved.interfaces {
        Ok(i) => i,
        Err(e) => {
            log.error(&e.to_string());
            return 1;
        }
    };
    let pid_path = resolved.pid_file.value;
    let mut server = match Server::new(settings, cfg, &interfaces, &log) {
        Ok(s) => s,
        Err(e) => {
            log.error(&e.to_string());
            return 1;
        }
    };
    // The classic daemon writes a pid file in daemon mode; `-p` asks for
    // one in the foreground too.
    let mut pid_file = None;
    if cli.daemon || cli.pidfile.is_some() {
        match PidFile::create(&pid_path) {
            Ok(p) => pid_file = Some(p),
            Err(e) => {
                log.error(&e.to_string());
                return 1;
            }
        }
    }
    if cli.daemon {
        if let Err(e) = process::daemonize() {
            log.error(&format!("cannot become a daemon: {e}"));
            return 1;
        }
        if let Some(p) = pid_file.as_mut() {
            if let Err(e) = p.write_current_pid() {
                log.error(&format!(
                    "cannot write pid file {}: {e}",
                    p.path().display()
                ));
                return 1;
            }
        }
    }
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            log.error(&format!("cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let status = match server.run(&mut signals) {
        Ok(()) => 0,
        Err(e) => {
            log.error(&e.to_string());
            1
        }
    };
    drop(server);
    drop(pid_file);
    status
}
