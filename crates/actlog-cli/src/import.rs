//! `actlog import`: backfill NDJSON envelopes through the same checks as HTTP.
//!
//! Each file is checked whole (in parallel) before anything from it is
//! written; a bad line stops the import with its line number and nothing from
//! that file is stored. Checked files are appended in batches, each one
//! synced, and a checkpoint is signed at the end.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use actlog_core::ingest::{Checked, EnvelopeLimits, Submitter};
use actlog_store::{AppendError, Options, Store};
use clap::{Args, ValueEnum};
use rayon::prelude::*;

use crate::util::*;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// NDJSON files of DSSE envelopes, plain or gzip.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Envelopes)]
    pub format: Format,
    /// With --format opa or cerbos: the registered ingest token the events
    /// are attributed to (by name). Without it, the token `import`, created
    /// on first use.
    #[arg(long)]
    pub token_name: Option<String>,
    /// With --format opa: JSON Pointers for non-AuthZEN input (docs/opa.md).
    #[arg(long)]
    pub opa_mapping: Option<PathBuf>,
    /// Envelopes per synced commit.
    #[arg(long, default_value_t = 1024)]
    pub batch: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Envelopes,
    Opa,
    /// Cerbos decision-log entries, as its `file` audit backend writes them.
    Cerbos,
}

/// The ingest token OPA imports are attributed to without `--token-name`.
/// It is created on first use, so a `ledger.token_created` record names it
/// in the ledger; its secret is never shown, so no client can use it.
pub const IMPORT_TOKEN_NAME: &str = "import";

/// Largest file import reads (decompressed), a named limit.
pub const IMPORT_FILE_BYTES_MAX: u64 = 8 << 30;

fn read_file(path: &Path) -> CliResult<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?.len();
    if len > IMPORT_FILE_BYTES_MAX {
        return Err(usage(format!(
            "{} is larger than import_file_bytes_max ({IMPORT_FILE_BYTES_MAX} bytes); split it",
            path.display()
        )));
    }
    let raw = std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(IMPORT_FILE_BYTES_MAX + 1)
            .read_to_end(&mut out)
            .map_err(|e| usage(format!("{} is not valid gzip: {e}", path.display())))?;
        if out.len() as u64 > IMPORT_FILE_BYTES_MAX {
            return Err(usage(format!(
                "{} decompresses beyond import_file_bytes_max ({IMPORT_FILE_BYTES_MAX} bytes)",
                path.display()
            )));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

pub fn run(data: &Path, args: ImportArgs) -> CliResult {
    if args.batch == 0 {
        return Err(usage("--batch must be at least 1"));
    }
    let store = Store::open(data, Options::default())?;
    if args.opa_mapping.is_some() && args.format != Format::Opa {
        return Err(usage("--opa-mapping applies to --format opa only"));
    }
    let opa = match args.format {
        Format::Envelopes => None,
        Format::Opa | Format::Cerbos => {
            let mapping: actlog_core::opa::OpaMapping = match &args.opa_mapping {
                Some(p) => {
                    let t =
                        std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
                    serde_json::from_str(&t)
                        .map_err(|e| usage(format!("{} is not an OPA mapping: {e}", p.display())))?
                }
                None => Default::default(),
            };
            let name = match args.token_name.as_deref() {
                Some(n) => n,
                None => {
                    if !store.registry().tokens.contains_key(IMPORT_TOKEN_NAME) {
                        let seq = store.admin(actlog_store::AdminOp::CreateToken {
                            name: IMPORT_TOKEN_NAME.into(),
                            role: actlog_store::Role::Ingest.as_str().into(),
                            pdp_id: None,
                            token_sha256: actlog_core::leaf::sha256(new_token().as_bytes()),
                            expires_at_ns: None,
                        })?;
                        eprintln!(
                            "actlog: the events are attributed to the ingest token `{IMPORT_TOKEN_NAME}`, \
                             recorded at seq {seq} (its secret is not kept); --token-name NAME names another"
                        );
                    }
                    IMPORT_TOKEN_NAME
                }
            };
            let rec = store
                .registry()
                .tokens
                .get(name)
                .cloned()
                .filter(|t| t.active_at(actlog_store::now_ns()) && matches!(t.role, actlog_store::Role::Ingest | actlog_store::Role::Admin))
                .ok_or_else(|| {
                    usage(format!(
                        "no active ingest token named `{name}` (revoked and expired tokens are not); see `actlog tokens list`"
                    ))
                })?;
            let hash: [u8; 32] = hex::decode(&rec.token_sha256_hex)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| refused("the token record is malformed"))?;
            Some((rec, hash, mapping))
        }
    };
    let limits = EnvelopeLimits::default();
    let (mut added, mut duplicates, mut skipped) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for path in &args.files {
        let bytes = read_file(path)?;
        // OPA decision logs come as JSON arrays (as OPA uploads them) or
        // NDJSON; Cerbos entries as NDJSON, or a JSON array a shipper made.
        let opa_array: Option<Vec<Vec<u8>>> = match &opa {
            Some(_) if bytes.trim_ascii_start().starts_with(b"[") => {
                let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&bytes).map_err(|e| {
                    refused(format!("{}: not a JSON array of OPA decision events: {e}", path.display()))
                })?;
                Some(items.into_iter().map(|r| r.get().as_bytes().to_vec()).collect())
            }
            _ => None,
        };
        let lines: Vec<(usize, &[u8])> = match &opa_array {
            Some(items) => items.iter().enumerate().map(|(i, b)| (i + 1, &b[..])).collect(),
            None => bytes
                .split(|b| *b == b'\n')
                .enumerate()
                .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
                .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
                .collect(),
        };
        let what = if opa_array.is_some() { "event" } else { "line" };
        let registry = store.registry();
        let submitter = Submitter::default();
        // Check the whole file first, with the server's batch functions: the
        // per-item checks on the rayon pool, all or nothing, then the event
        // ids repeated in the file or already stored with another payload.
        // Each task holds at most PARALLEL_CHUNK_ENVELOPES_MAX parsed
        // envelopes at a time.
        // The line (or array item) each checked item came from: one each,
        // except that a Cerbos entry fans out to a decision per action.
        let mut item_line: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        let results = match &opa {
            None => {
                let envelopes: Vec<Vec<u8>> = lines.iter().map(|(_, l)| l.to_vec()).collect();
                actlog_core::ingest::check_envelopes_parallel(envelopes, &registry, &submitter, &limits)
            }
            Some((rec, hash, mapping)) => {
                let token =
                    actlog_core::opa::OpaToken { name: &rec.name, sha256: *hash, pdp_id: rec.pdp_id.as_deref() };
                if args.format == Format::Cerbos {
                    let per_line: Vec<_> = lines
                        .par_iter()
                        .map(|(_, l)| actlog_core::cerbos::check(l, &token, limits.envelope_bytes_max))
                        .collect();
                    item_line.clear();
                    let mut flat = Vec::new();
                    for ((n, _), r) in lines.iter().zip(per_line) {
                        match r {
                            Err(e) => {
                                flat.push(Err(e));
                                item_line.push(*n);
                            }
                            Ok(None) => skipped += 1,
                            Ok(Some(items)) => {
                                item_line.extend(std::iter::repeat_n(*n, items.len()));
                                flat.extend(items.into_iter().map(Ok));
                            }
                        }
                    }
                    flat
                } else {
                    lines
                        .par_iter()
                        .map(|(_, l)| actlog_core::opa::check(l, mapping, &token, limits.envelope_bytes_max))
                        .collect()
                }
            }
        };
        let items = actlog_core::ingest::all_or_nothing(results).map_err(|bad| {
            let (index, e) = &bad[0];
            let at = if e.path.is_empty() { String::new() } else { format!(" at {}", e.path) };
            refused(format!(
                "{}: {what} {}: {}{at}: {}; nothing from this file was written",
                path.display(),
                item_line[*index],
                e.code,
                e.message
            ))
        })?;
        let conflict = |index: usize, why: String| {
            refused(format!(
                "{}: {what} {}: conflict: event_id `{}` {why}; nothing from this file was written",
                path.display(),
                item_line[index],
                items[index].fields().event_id
            ))
        };
        // In file order, so the first refused line is the one named.
        let repeats = actlog_core::ingest::repeats(&items);
        for (index, item) in items.iter().enumerate() {
            if let Some(c) = repeats.conflict.as_ref().filter(|c| c.index == index) {
                return Err(conflict(index, format!("repeats {what} {} with a different payload", item_line[c.first])));
            }
            if repeats.firsts[index].is_none()
                && let Some(seq) = store.stored_conflict(item)?
            {
                return Err(conflict(index, format!("is stored at seq {seq} with a different payload")));
            }
        }
        drop(repeats);
        let total = items.len();
        let progress = stderr_is_tty().then(|| indicatif::ProgressBar::new(total as u64));
        let mut iter = items.into_iter().peekable();
        while iter.peek().is_some() {
            let batch: Vec<Checked> = iter.by_ref().take(args.batch).collect();
            let n = batch.len();
            match store.append(batch) {
                Ok(appended) => {
                    for r in &appended.receipts {
                        if r.duplicate { duplicates += 1 } else { added += 1 }
                    }
                }
                Err(AppendError::Conflict { event_id, .. }) => {
                    return Err(refused(format!(
                        "{}: event_id `{event_id}` is already in the ledger with a different payload (stopped; earlier batches of this file were written)",
                        path.display()
                    )));
                }
                Err(AppendError::TokenRevoked { index }) => {
                    return Err(refused(format!(
                        "{}: the token of item {index} in a batch was revoked during the import",
                        path.display()
                    )));
                }
                Err(AppendError::KeyRevoked { index }) => {
                    return Err(refused(format!(
                        "{}: the key of envelope {index} in a batch was revoked during the import",
                        path.display()
                    )));
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
            }
            if let Some(p) = &progress {
                p.inc(n as u64);
            }
        }
        if let Some(p) = progress {
            p.finish_and_clear();
        }
    }
    let cp = store.checkpoint_now()?;
    let size = store.head().tree_size;
    let secs = started.elapsed().as_secs_f64();
    if skipped > 0 {
        eprintln!("actlog: skipped {skipped} Cerbos access-log entries (they record calls, not decisions)");
    }
    eprintln!(
        "actlog: imported {added} events ({duplicates} duplicates skipped) in {secs:.2}s ({:.0} events/s); tree size {size}{}",
        added as f64 / secs.max(1e-9),
        if cp.is_some() { ", checkpoint signed" } else { "" }
    );
    seal_and_close(store)
}

/// Seals full query segments (derived data) and closes the store.
pub fn seal_and_close(store: Store) -> CliResult {
    let store = std::sync::Arc::new(store);
    let started = Instant::now();
    let engine = actlog_query::Engine::open(store.clone(), actlog_query::EngineOptions::default())
        .map_err(|e| refused(format!("opening the query engine: {e}")))?;
    let sealed = engine.seal().map_err(|e| refused(format!("sealing query segments: {e}")))?;
    drop(engine);
    if sealed > 0 {
        eprintln!("actlog: sealed {sealed} query segment(s) in {:.2}s", started.elapsed().as_secs_f64());
    }
    let store = std::sync::Arc::try_unwrap(store).map_err(|_| refused("the store is still in use"))?;
    store.close()?;
    Ok(())
}
