//! The `actlog` command-line tool.
//!
//! Exit codes: 0 success; 1 verification failure or a refused request;
//! 2 usage error (bad flags, missing files, unusable input).

mod cli;
mod import;
mod keyfile;
mod loadgen;
mod util;
mod verify_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actlog: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
