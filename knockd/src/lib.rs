//! Library of the `knockd` port-knock server. `main.rs` is a thin wrapper.

pub mod config;
pub mod log;
pub mod packet;
pub mod commands;
pub mod check;
pub mod cli;
pub mod matcher;
pub mod process;
