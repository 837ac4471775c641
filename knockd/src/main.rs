use clap::Parser;

use knockd::cli::Cli;

fn main() {
    let cli = Cli::parse();
    if cli.check {
        std::process::exit(knockd::check::check(&cli));
    }
    let cfg = match knockd::config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    };
    for w in &cfg.warnings {
        eprintln!("knockd: warning: {w}");
    }
    eprintln!("knockd: packet capture is not available in this build yet");
    std::process::exit(1);
}
