//! The `sshbreak` binary: parse, dispatch, report. All the work is in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sshbreak::cli::Cli::parse();
    match sshbreak::commands::run(cli) {
        Ok(code) => code,
        Err(err) => sshbreak::commands::report(&err),
    }
}
