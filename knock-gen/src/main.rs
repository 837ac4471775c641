//! `knock-gen`: writes one-time sequence files for `knockd` and `knock`.
//! Argument parsing only; the work is done in the library.

use std::process::ExitCode;

use clap::Parser;
use knock_gen::cli::Cli;
use knock_gen::{Output, Spec};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.secret {
        return write_secret(&cli);
    }
    let spec = Spec {
        count: cli.count,
        length: cli.length,
        range: cli.ports,
        exclude: cli.exclude.into_iter().flat_map(|l| l.0).collect(),
        proto: cli.protocol,
    };
    let to_stdout = cli.output.as_os_str() == "-";
    let output = match (to_stdout, cli.append) {
        (true, true) => {
            eprintln!(
                "knock-gen: --append needs a file; it cannot append to standard output (-o -)"
            );
            return ExitCode::FAILURE;
        }
        (true, false) => Output::Stdout,
        (false, true) => Output::Append(cli.output.clone()),
        (false, false) => Output::New {
            path: cli.output.clone(),
            replace: cli.force,
        },
    };
    let result = spec.validate().and_then(|()| {
        let mut rng = knock_gen::os_rng()?;
        knock_gen::run(&spec, &output, &mut rng, &mut std::io::stdout().lock())
    });
    match result {
        Ok(report) => {
            if let Some(usable) = report.usable_after {
                let verb = if cli.append { "appended" } else { "wrote" };
                eprintln!(
                    "knock-gen: {verb} {} sequences of {} {} hits (ports {}) to {}; {usable} usable",
                    report.written,
                    spec.length,
                    spec.proto,
                    spec.range,
                    cli.output.display(),
                );
            }
            if let Some(mode) = report.loose_mode {
                eprintln!(
                    "knock-gen: warning: {} has mode {mode:04o}; others can read its secrets (chmod 600 {})",
                    cli.output.display(),
                    cli.output.display(),
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("knock-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--secret`: write a new key file, never to standard output (a key on a
/// terminal or in a pipe is too easy to leak).
fn write_secret(cli: &Cli) -> ExitCode {
    if cli.output.as_os_str() == "-" {
        eprintln!("knock-gen: --secret writes the key to a file only (mode 0600); give -o FILE");
        return ExitCode::FAILURE;
    }
    match knock_gen::write_secret(&cli.output, cli.force) {
        Ok(()) => {
            eprintln!(
                "knock-gen: wrote a new {}-byte key to {} (mode 0600)",
                knock_common::rotate::GENERATED_KEY_BYTES,
                cli.output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("knock-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
