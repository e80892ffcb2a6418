//! `actlog-gen`: writes a realistic, deterministic ledger through the real
//! append path.
//!
//! ```text
//! actlog-gen --data DIR --events N [--seed S] [--pdps P] [--days D] [--batch B] [--start RFC3339]
//! ```
//!
//! It opens the ledger in `DIR` (or creates one), registers each PDP's key
//! (derived from the seed, see `actlog_gen::pdp_seed`) unless it is already
//! registered, then signs every generated payload as a DSSE envelope, runs
//! each batch through `actlog_core::ingest::check_envelopes` (the checks of
//! HTTP ingest and `actlog import`) and appends it with `Store::append`, one
//! synced commit per batch. One thread generates, signs (in parallel) and
//! checks the next batch while the main thread appends the current one.
//! A rerun with the same flags finds every event already stored and appends
//! nothing new.
//!
//! stdout gets one JSON line: `{"events","seconds","events_per_s","tree_size"}`,
//! where `seconds` runs from the first generated event to the last synced
//! append (closing the store, which signs a final checkpoint, comes after).
//! A progress bar goes to stderr when it is a terminal.
//!
//! Exit codes: 0 success; 1 any error (bad flags, a refused event, a storage
//! failure), with the reason on stderr.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use actlog_gen::{DEFAULT_START_UNIX_NANOS, GenConfig};
use actlog_store::{Options, Store};

// Checking parses many small JSON documents on two threads; glibc's allocator
// cost a third of the time in `actlog import` (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: actlog-gen --data DIR --events N [--seed S] [--pdps P] [--days D] [--batch B] \
                     [--start RFC3339]\n\
                     \n\
                     --data DIR       ledger directory (created with a fresh ledger key if it has no ledger)\n\
                     --events N       events to generate and append\n\
                     --seed S         generator seed; also derives the PDP keys [default: 1]\n\
                     --pdps P         number of PDPs, each with its own key [default: 8]\n\
                     --days D         days the events span [default: 30]\n\
                     --batch B        envelopes per synced append [default: 1024]\n\
                     --start T        time of the first event [default: 2026-01-01T00:00:00Z]";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    data: PathBuf,
    events: u64,
    seed: u64,
    pdps: usize,
    days: u32,
    batch: usize,
    start_unix_nanos: i64,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("actlog-gen: {e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actlog-gen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Parses the flags; `Ok(None)` asks for the usage text.
fn parse_args(mut raw: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut data = None;
    let mut events = None;
    let mut args = Args {
        data: PathBuf::new(),
        events: 0,
        seed: 1,
        pdps: 8,
        days: 30,
        batch: 1024,
        start_unix_nanos: DEFAULT_START_UNIX_NANOS,
    };
    while let Some(arg) = raw.next() {
        let arg = arg.into_string().map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        // `--flag=value` or `--flag value`.
        let inline = arg
            .split_once('=')
            .filter(|(flag, _)| flag.starts_with("--"))
            .map(|(flag, value)| (flag.to_string(), OsString::from(value)));
        let (flag, value) = match inline {
            Some(pair) => pair,
            None => {
                let value = raw.next().ok_or_else(|| format!("{arg} needs a value"))?;
                (arg, value)
            }
        };
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(value)),
            "--events" => events = Some(number(&flag, &value)?),
            "--seed" => args.seed = number(&flag, &value)?,
            "--pdps" => args.pdps = number(&flag, &value)?,
            "--days" => args.days = number(&flag, &value)?,
            "--batch" => args.batch = number(&flag, &value)?,
            "--start" => {
                let text = value.to_str().ok_or_else(|| format!("{flag}: the value is not UTF-8"))?;
                args.start_unix_nanos = actlog_core::time::parse_rfc3339_utc(text)
                    .ok_or_else(|| format!("{flag}: `{text}` is not an RFC 3339 UTC time like 2026-01-01T00:00:00Z"))?;
            }
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    args.data = data.ok_or("--data DIR is required")?;
    args.events = events.ok_or("--events N is required")?;
    for (flag, value) in [
        ("--events", args.events),
        ("--pdps", args.pdps as u64),
        ("--days", u64::from(args.days)),
        ("--batch", args.batch as u64),
    ] {
        if value == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
    }
    Ok(Some(args))
}

fn number<T: std::str::FromStr>(flag: &str, value: &OsString) -> Result<T, String> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag}: `{}` is not a valid number", value.to_string_lossy()))
}

fn run(args: &Args) -> Result<(), String> {
    let store = open_or_init(&args.data)?;
    let cfg = GenConfig {
        seed: args.seed,
        events: args.events,
        pdps: args.pdps,
        start_unix_nanos: args.start_unix_nanos,
        days: args.days,
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(args.events);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("actlog-gen {bar:40} {pos}/{len} events {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let started = Instant::now();
    let appended = actlog_gen::build_ledger(&store, &cfg, args.batch, |n| {
        if let Some(bar) = &progress {
            bar.inc(n);
        }
    });
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let (added, duplicates) = appended?;
    let seconds = started.elapsed().as_secs_f64();
    let tree_size = store.head().tree_size;
    store.close().map_err(|e| format!("closing the ledger failed: {e}"))?;
    let events = added + duplicates;
    if duplicates > 0 {
        eprintln!("actlog-gen: {duplicates} of {events} events were already in the ledger (same seed and flags?)");
    }
    let summary = serde_json::json!({
        "events": events,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "events_per_s": (events as f64 / seconds.max(1e-9)).round(),
        "tree_size": tree_size,
    });
    println!("{summary}");
    Ok(())
}

fn open_or_init(data: &Path) -> Result<Store, String> {
    if actlog_store::is_initialized(data) {
        return Store::open(data, Options::default())
            .map_err(|e| format!("cannot open the ledger in {}: {e}", data.display()));
    }
    let mut ledger_seed = [0u8; 32];
    actlog_store::random::fill(&mut ledger_seed)
        .map_err(|e| format!("the operating system random source failed: {e}"))?;
    let store = Store::init(data, ledger_seed, None, Options::default())
        .map_err(|e| format!("cannot create a ledger in {}: {e}", data.display()))?;
    eprintln!(
        "actlog-gen: created a ledger in {}; make tokens with `actlog tokens create` to serve it",
        data.display()
    );
    Ok(store)
}
