//! `knock-gen`: writes one-time sequence files for `knockd` and `knock`.
//! Argument parsing only; the work is done in the library
//! ([`knock_gen::cli::Cli::run`]).

use std::process::ExitCode;

use clap::Parser;
use knock_gen::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(cli.run(&mut std::io::stdout().lock(), &mut std::io::stderr()))
}
