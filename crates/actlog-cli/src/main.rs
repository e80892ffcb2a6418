//! The `actlog` command-line tool.
//!
//! Exit codes: 0 success; 1 verification failure or a refused request;
//! 2 usage error (bad flags, missing files, unusable input).

mod cli;
mod config;
mod export_cmd;
mod import;
mod keyfile;
mod loadgen;
mod sql_cmd;
mod util;
mod verify_cmd;

use std::process::ExitCode;

use clap::Parser;

// Ingest and verify parse many small JSON documents on two threads; glibc's
// allocator spent a third of the time there (perf, docs/benchmarks.md).
// mimalloc's v2 line (the `v2` feature): v3 kept the sealer's freed pages
// and the server's RSS grew by ~6 MiB a minute (docs/benchmarks.md, memory).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Err(e) = config::load_into_env() {
        eprintln!("actlog: {}", e.message);
        return ExitCode::from(e.code);
    }
    init_logging();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actlog: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Log lines of the server and the libraries (not the CLI's own messages)
/// go to stderr. `ACTLOG_LOG` is the filter: `info` by default, `debug`
/// adds a line when each request starts and ends, and per-crate forms such
/// as `warn,actlog_server=debug` work too.
fn init_logging() {
    let filter = match std::env::var("ACTLOG_LOG") {
        Err(_) => tracing_subscriber::EnvFilter::new("info"),
        Ok(v) => tracing_subscriber::EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("actlog: ACTLOG_LOG={v:?} is not a log filter ({e}); logging at info");
            tracing_subscriber::EnvFilter::new("info")
        }),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
