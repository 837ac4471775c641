//! Library of the `knockd` port-knock server. `main.rs` is a thin wrapper.
//!
//! Pure logic, testable without a network: [`config`], [`packet`] (frame
//! decoder), [`matcher`] (knock state machine), [`sources`] (where a door's
//! sequence comes from), [`rotating`] (accepted windows of rotating
//! sequences and their durable record). Around them: [`capture`] (libpcap)
//! with its filter [`bpf`], [`commands`]
//! (child processes and stop timers), [`log`], [`lookup`], [`process`] (pid
//! file, daemon), [`server`] (the event loop) and [`daemon`] (start-up).

pub mod bpf;
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
mod pcap_ffi;
pub mod process;
pub mod rotating;
pub mod server;
pub mod sources;
