use clap::Parser;

use knockd::cli::Cli;

fn main() {
    let cli = Cli::parse();
    let status = if cli.check {
        knockd::check::check(&cli)
    } else {
        knockd::daemon::run(&cli)
    };
    std::process::exit(status);
}
