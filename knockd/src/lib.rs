//! Library of the `knockd` port-knock server. `main.rs` is a thin wrapper.
//!
//! Pure logic, testable without a network: [`config`], [`packet`] (frame
//! decoder), [`matcher`] (knock state machine), [`sources`] (where a door's
//! sequence comes from). Around them: [`capture`] (libpcap), [`commands`]
//! (child processes and stop timers), [`log`], [`ratelimit`] (per-packet log
//! lines under a flood), [`watch`] (rtnetlink and inotify notifications),
//! [`lookup`], [`process`] (pid file, daemon), [`server`] (the event loop) and
//! [`daemon`] (start-up).

pub mod capture;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod log;
pub mod lookup;
pub mod matcher;
pub mod packet;
pub mod process;
pub mod ratelimit;
pub mod server;
pub mod sources;
pub mod watch;
