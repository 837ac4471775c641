//! Library of the `knockd` port-knock server. `main.rs` is a thin wrapper.
//!
//! Pure logic, testable without a network: [`config`], [`packet`] (frame
//! decoder), [`matcher`] (knock state machine), [`sources`] (where a door's
//! sequences come from), [`rotating`] (accepted windows of rotating
//! sequences and their durable record), [`ratelimit`] (per-packet log lines
//! under a flood). Around them: [`capture`] (libpcap) with its filter
//! [`bpf`], [`commands`] (child
//! processes and stop timers), [`log`], [`watch`] (rtnetlink and inotify
//! notifications), [`lookup`], [`process`] (pid file, daemon), [`captures`]
//! (one capture per listed interface), [`settings`] (command line over
//! configuration file over default, decided once), [`server`] (the event
//! loop) and [`daemon`] (start-up).

pub mod bpf;
pub mod capture;
pub mod captures;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod fds;
pub mod log;
pub mod lookup;
pub mod matcher;
pub mod packet;
mod pcap_ffi;
pub mod process;
pub mod ratelimit;
pub mod rotating;
pub mod server;
pub mod settings;
pub mod sources;
pub mod watch;
