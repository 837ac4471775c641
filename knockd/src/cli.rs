//! The command line of `knockd`: the classic options plus `-t/--check`.

use std::path::PathBuf;

use clap::Parser;

use crate::config::DEFAULT_CONFIG_FILE;
use crate::settings::{InterfaceList, Overrides};

const AFTER_HELP: &str = "\
Examples:
  knockd -t                      check /etc/knockd.conf and show what it defines
  knockd -t -c ./knockd.conf     check another file before installing it
  knockd -t --show-secrets       ... and show the sequences too (keep them off logs)
  knockd -i eth1 -v              listen on eth1, print status messages
  knockd -i eth0,wlan0 -v        listen on both (each with its own addresses)
  knockd -i any                  listen on every interface
  knockd -v                      listen on the interfaces of the default routes
  knockd -d -i eth0              run in the background as a daemon
  knockd -d -c /etc/knockd.conf -p /run/knockd.pid -g /var/log/knockd.log

A minimal /etc/knockd.conf:
  [options]
      UseSyslog
  [openSSH]
      Sequence      = 7000,8000,9000
      Seq_Timeout   = 10
      TCPFlags      = syn
      Start_Command = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
      Cmd_Timeout   = 30
      Stop_Command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT

Each [name] section is a door: when a host hits the ports of its Sequence in
order within Seq_Timeout seconds, Start_Command runs with %IP% replaced by that
host's address, and Stop_Command runs Cmd_Timeout seconds later. Knock with
`knock HOST 7000 8000 9000`. SIGHUP re-reads the configuration.

Exit status: 0 on success (and for -h, -V, a valid -t); 1 when the
configuration is invalid or the server fails; 2 on a usage error.";

fn interface_arg(s: &str) -> Result<InterfaceList, crate::settings::InterfaceError> {
    InterfaceList::parse(s)
}

/// Options of `knockd`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "knockd",
    version,
    about = "Port-knock server: watches network interfaces for knock sequences and runs commands",
    long_about = "Port-knock server. knockd listens to all traffic on one or more interfaces \
                  (with libpcap, so the knocked ports need not be open) and looks for the knock \
                  sequences defined in its configuration file. When a host completes one, \
                  knockd runs that door's command, typically to open the firewall for it.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Interfaces to listen on.
    #[arg(
        short = 'i',
        long,
        value_name = "IFACE[,IFACE...]",
        value_parser = interface_arg,
        help = "Interface(s) to listen on, comma-separated, or `any` (overrides `Interface` \
                in [options]; default: the interfaces of the default IPv4 and IPv6 routes)"
    )]
    pub interface: Option<InterfaceList>,

    /// Become a daemon (detach and run in the background)
    #[arg(short = 'd', long)]
    pub daemon: bool,

    /// Configuration file
    #[arg(short = 'c', long, value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,

    /// Print debugging messages (configuration and every packet)
    #[arg(short = 'D', long)]
    pub debug: bool,

    /// Look up DNS names of knockers for the log (may give the first port of a sequence away)
    #[arg(short = 'l', long)]
    pub lookup: bool,

    /// Ignore IPv6 packets
    #[arg(short = '4', long = "only-ip-v4")]
    pub only_ip_v4: bool,

    /// Print status messages
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Pid file (overrides `PidFile` in [options]; default /var/run/knockd.pid)
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Log file (overrides `LogFile` in [options])
    #[arg(short = 'g', long, value_name = "FILE")]
    pub logfile: Option<PathBuf>,

    /// Check the configuration, print what it defines and exit (0: valid, 1: errors); captures nothing.
    /// Sequences and one-time lines are hidden (see --show-secrets)
    #[arg(short = 't', long)]
    pub check: bool,

    /// With --check: also print the sequences, the current one-time lines and the text of
    /// one-time lines that do not parse. Only on a terminal: the output of a service's
    /// reload (which runs --check) ends up in the journal
    #[arg(long, requires = "check")]
    pub show_secrets: bool,
}

impl Cli {
    /// The command-line layer of the settings (`-i`, `-g`, `-p`); see
    /// [`crate::settings::resolve`].
    pub fn overrides(&self) -> Overrides {
        Overrides {
            interfaces: self.interface.clone(),
            log_file: self.logfile.clone(),
            pid_file: self.pidfile.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["knockd"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = cli(&[]);
        assert_eq!(
            c,
            Cli {
                interface: None,
                daemon: false,
                config: PathBuf::from("/etc/knockd.conf"),
                debug: false,
                lookup: false,
                only_ip_v4: false,
                verbose: false,
                pidfile: None,
                logfile: None,
                check: false,
                show_secrets: false,
            }
        );
    }

    #[test]
    fn short_and_long_options() {
        let want = Cli {
            interface: Some(InterfaceList::parse("eth1").unwrap()),
            daemon: true,
            config: PathBuf::from("/tmp/k.conf"),
            debug: true,
            lookup: true,
            only_ip_v4: true,
            verbose: true,
            pidfile: Some("/run/k.pid".into()),
            logfile: Some("/var/log/k.log".into()),
            check: true,
            show_secrets: false,
        };
        let short = cli(&[
            "-i",
            "eth1",
            "-d",
            "-c",
            "/tmp/k.conf",
            "-D",
            "-l",
            "-4",
            "-v",
            "-p",
            "/run/k.pid",
            "-g",
            "/var/log/k.log",
            "-t",
        ]);
        assert_eq!(short, want);
        let long = cli(&[
            "--interface",
            "eth1",
            "--daemon",
            "--config",
            "/tmp/k.conf",
            "--debug",
            "--lookup",
            "--only-ip-v4",
            "--verbose",
            "--pidfile",
            "/run/k.pid",
            "--logfile",
            "/var/log/k.log",
            "--check",
        ]);
        assert_eq!(long, want);
        let bundled = cli(&[
            "-dDlv4t",
            "-ieth1",
            "--config=/tmp/k.conf",
            "-p/run/k.pid",
            "-g",
            "/var/log/k.log",
        ]);
        assert_eq!(bundled, want);
    }

    #[test]
    fn help_version_and_usage_errors() {
        let kind = |args: &[&str]| {
            let mut v = vec!["knockd"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap_err().kind()
        };
        assert_eq!(kind(&["-h"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["--help"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["-V"]), ErrorKind::DisplayVersion);
        assert_eq!(kind(&["--version"]), ErrorKind::DisplayVersion);
        assert_eq!(kind(&["--bogus"]), ErrorKind::UnknownArgument);
        assert_eq!(kind(&["-i"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["-i", "/dev/eth0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["-i", ""]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["extra"]), ErrorKind::UnknownArgument);
        // Secrets are shown only by a check that asks for them.
        assert_eq!(
            kind(&["--show-secrets"]),
            ErrorKind::MissingRequiredArgument
        );
        assert!(cli(&["-t", "--show-secrets"]).show_secrets);
    }

    #[test]
    fn help_teaches() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "--interface",
            "--daemon",
            "--config",
            "--debug",
            "--lookup",
            "--only-ip-v4",
            "--verbose",
            "--version",
            "--pidfile",
            "--logfile",
            "--check",
            "--show-secrets",
            "Examples:",
            "knockd -t -c ./knockd.conf",
            "Sequence",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }

    #[test]
    fn interface_lists_and_overrides() {
        let c = cli(&["-i", "eth0,wlan0", "-g", "/tmp/b.log"]);
        let want = InterfaceList::parse("eth0, wlan0").unwrap();
        assert_eq!(c.interface.as_ref(), Some(&want));
        assert_eq!(
            c.overrides(),
            Overrides {
                interfaces: Some(want),
                log_file: Some("/tmp/b.log".into()),
                pid_file: None,
            }
        );
        assert_eq!(cli(&[]).overrides(), Overrides::default());
        let e = Cli::try_parse_from(["knockd", "-i", "eth0,,wlan0"]).unwrap_err();
        assert!(e.to_string().contains("empty item"), "{e}");
        let e = Cli::try_parse_from(["knockd", "-i", "eth0,eth0"]).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }
}
