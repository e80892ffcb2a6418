//! `actlog export` and `actlog evidence`: signed bundles that verify
//! offline (contract section 8; `actlog verify --bundle` is in `verify_cmd`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actlog_export::{self as bundle, ExportOptions, Format};
use actlog_query::{Engine, EngineOptions, QueryLimits};
use clap::{Args, ValueEnum};

use crate::util::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Parquet files with the SQL tables' columns and types.
    Parquet,
    /// The same rows as JSON lines.
    Ndjson,
    /// OCSF 1.8.0 API Activity (class 6003) JSON lines.
    Ocsf,
}

/// The time window of an export or evidence bundle.
#[derive(Args, Debug)]
pub struct WindowArgs {
    /// Events whose event_time is at or after this (RFC 3339 UTC, or a date: 2026-11-28).
    #[arg(long)]
    pub from: Option<String>,
    /// Events whose event_time is before this (RFC 3339 UTC, or a date).
    #[arg(long)]
    pub to: Option<String>,
}

impl WindowArgs {
    /// `--from` and `--to` as unix nanoseconds; `from` must come first.
    fn nanos(&self) -> CliResult<(Option<i64>, Option<i64>)> {
        let from = self.from.as_deref().map(|t| parse_time("--from", t)).transpose()?;
        let to = self.to.as_deref().map(|t| parse_time("--to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(usage("--from must be before --to"));
        }
        Ok((from, to))
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The directory to write; it must be absent or empty.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: ExportFormat,
    /// A C2SP tlog-policy: prove the bundle against the latest checkpoint
    /// whose stored witness cosignatures meet its quorum.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// An RFC 3339 UTC time or a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(flag: &str, text: &str) -> CliResult<i64> {
    let t = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    actlog_core::time::parse_rfc3339_utc(&t).ok_or_else(|| {
        usage(format!("{flag} `{text}` is not an RFC 3339 UTC time (2026-11-28T09:30:00Z) or a date (2026-11-28)"))
    })
}

/// The data dir opened for a bundle: the store (writable when no server
/// holds it, so full segments are sealed first), the ledger key that signs,
/// an engine whose one selection query may return every event, a runtime.
struct Opened {
    store: std::sync::Arc<actlog_store::Store>,
    writable: bool,
    seed: [u8; 32],
    engine: Engine,
    rt: tokio::runtime::Runtime,
}

fn open_for_bundle(data: &Path, memory_bytes: usize, command: &str) -> CliResult<Opened> {
    let (store, writable) = open_for_query(data)?;
    let seed = actlog_store::read_ledger_seed(data).map_err(|e| {
        refused(format!(
            "the ledger key signs the bundle, and it cannot be read: {e}; run {command} where the ledger key is"
        ))
    })?;
    // Bundles select every event of their window: no result cap.
    let limits = QueryLimits {
        rows_max: usize::MAX,
        time: Duration::from_secs(24 * 3600),
        memory_bytes,
        result_bytes_max: usize::MAX,
        ..QueryLimits::default()
    };
    let engine = open_engine(store.clone(), EngineOptions { limits, ..EngineOptions::default() })?;
    if writable {
        engine.seal().map_err(|e| refused(format!("sealing segments: {e}")))?;
    }
    let rt = query_runtime()?;
    Ok(Opened { store, writable, seed, engine, rt })
}

impl Opened {
    /// Stops the engine and the runtime, then closes a writable store.
    fn close(self) -> CliResult {
        let Opened { store, writable, engine, rt, .. } = self;
        drop(engine);
        drop(rt);
        if writable && let Ok(s) = std::sync::Arc::try_unwrap(store) {
            s.close()?;
        }
        Ok(())
    }
}

pub fn run(data: &Path, args: ExportArgs) -> CliResult {
    let (from, to) = args.window.nanos()?;
    let format = match args.format {
        ExportFormat::Parquet => Format::Parquet,
        ExportFormat::Ndjson => Format::Ndjson,
        ExportFormat::Ocsf => Format::Ocsf,
    };
    let policy = args.policy.as_deref().map(|p| read_policy("--policy", p)).transpose()?;
    let opened = open_for_bundle(data, actlog_query::engine::SQL_MEMORY_BYTES_DEFAULT, "export")?;
    let progress_bar = std::sync::OnceLock::new();
    let progress = |done: u64, total: u64| {
        if let Some(b) = progress_bar.get_or_init(|| bar(total, "export")) {
            b.set_position(done);
        }
    };
    let started = Instant::now();
    let result = opened.rt.block_on(bundle::export(
        &opened.engine,
        &opened.seed,
        &args.out,
        &ExportOptions { from, to, format, policy: policy.as_ref(), seqs: None },
        &progress,
    ));
    if let Some(Some(b)) = progress_bar.get() {
        b.finish_and_clear();
    }
    opened.close()?;
    let report = result.map_err(|e| refused(e.to_string()))?;
    let m = &report.manifest;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "out": args.out, "events": m.events, "leaves": report.leaves, "files": m.files.len(),
                "bytes": report.bytes, "first_seq": m.first_seq, "last_seq": m.last_seq,
                "tree_size": m.tree_size, "root_hash": m.root_hash, "seconds": secs,
            })
        );
    } else {
        println!(
            "exported {} events (seq {} to {}) in {} files, {} bytes, in {secs:.2}s; proven against the checkpoint at tree size {}",
            m.events,
            m.first_seq,
            m.last_seq,
            m.files.len(),
            report.bytes,
            m.tree_size
        );
        eprintln!("check it anywhere with: actlog verify --bundle {} --key '{}'", args.out.display(), m.verifier_key);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvidenceArgs {
    /// The framework: `nist-csf-2.0`.
    #[arg(long)]
    pub framework: String,
    /// The directory to write; it must be absent or empty.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Also verify every producer signature of the whole ledger (the bundle's
    /// own events are always checked; without this the ledger check is structural).
    #[arg(long)]
    pub ledger_signatures: bool,
    /// Memory for each findings query's joins and aggregates, in bytes
    /// (`evidence_sql_memory_bytes`): the joins over the whole ledger need
    /// more than an interactive query's `sql_memory_bytes`.
    #[arg(long, env = "ACTLOG_EVIDENCE_SQL_MEMORY_BYTES", default_value_t = EVIDENCE_SQL_MEMORY_BYTES)]
    pub sql_memory_bytes: usize,
    /// A C2SP tlog-policy: prove the bundle against the latest checkpoint
    /// whose stored witness cosignatures meet its quorum.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// Default memory of a findings query: 2 GiB. At 10 million events the
/// decision/outcome joins need about 1 GiB of the pool (and 850 MB of RSS).
pub const EVIDENCE_SQL_MEMORY_BYTES: usize = 2 << 30;

/// `actlog evidence`: an export bundle plus findings, OCSF Compliance
/// Findings and a self-contained HTML report, signed together.
pub fn evidence(data: &Path, args: EvidenceArgs) -> CliResult {
    if args.framework != actlog_export::evidence::FRAMEWORK {
        return Err(usage(format!(
            "--framework `{}` is not known; the one framework built is {}",
            args.framework,
            actlog_export::evidence::FRAMEWORK
        )));
    }
    let (from, to) = args.window.nanos()?;
    let opened = open_for_bundle(data, args.sql_memory_bytes, "evidence")?;
    let current: std::sync::Mutex<Option<(String, indicatif::ProgressBar)>> = std::sync::Mutex::new(None);
    let progress = |stage: &str, done: u64, total: u64| {
        if !stderr_is_tty() {
            return;
        }
        let mut cur = current.lock().expect("progress lock");
        if cur.as_ref().is_none_or(|(s, _)| s != stage) {
            if let Some((_, b)) = cur.take() {
                b.finish_and_clear();
            }
            *cur = bar(total, stage).map(|b| (stage.to_string(), b));
        }
        if let Some((_, b)) = cur.as_ref() {
            b.set_position(done);
        }
    };
    let started = Instant::now();
    let policy = args.policy.as_deref().map(|p| read_policy("--policy", p)).transpose()?;
    let opts = actlog_export::evidence::EvidenceOptions {
        from,
        to,
        ledger_signatures: args.ledger_signatures,
        policy: policy.as_ref(),
    };
    let result = opened.rt.block_on(actlog_export::evidence::evidence(
        &opened.engine,
        &opened.seed,
        &args.out,
        &opts,
        &progress,
    ));
    if let Some((_, b)) = current.lock().expect("progress lock").take() {
        b.finish_and_clear();
    }
    opened.close()?;
    let report = result.map_err(|e| refused(e.to_string()))?;
    let m = &report.manifest;
    let secs = started.elapsed().as_secs_f64();
    let statuses: serde_json::Map<String, serde_json::Value> =
        report.findings.iter().map(|f| (f.control_id.clone(), serde_json::json!(f.status))).collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "out": args.out, "framework": actlog_export::evidence::FRAMEWORK, "events": m.events,
                "files": m.files.len(), "tree_size": m.tree_size, "root_hash": m.root_hash,
                "findings": statuses, "seconds": secs,
            })
        );
    } else {
        println!(
            "evidence for {} events (seq {} to {}) in {secs:.2}s: {}; open {}/report.html",
            m.events,
            m.first_seq,
            m.last_seq,
            actlog_export::evidence::tally(&report.findings),
            args.out.display()
        );
        eprintln!("check it anywhere with: actlog verify --bundle {} --key '{}'", args.out.display(), m.verifier_key);
    }
    Ok(())
}
