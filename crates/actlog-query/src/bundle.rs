//! Export bundles (contract section 8) and their offline verification.
//!
//! A bundle is a directory:
//! - `events/date=YYYY-MM-DD/part-NNNNN.parquet` and
//!   `delegation_hops/date=YYYY-MM-DD/part-NNNNN.parquet`: the rows of the
//!   SQL tables, same columns and types, for the events whose `event_time`
//!   falls in the window, partitioned by its UTC date, in seq order.
//!   `--format ndjson` writes the same rows as JSON lines (`.ndjson`);
//!   `--format ocsf` writes OCSF API Activity lines under `ocsf/`.
//! - `leaves.parquet`: `seq`, `leaf` and `envelope` of every leaf from the
//!   first exported event to the last, and of every ledger record (key and
//!   token history) before it. Envelopes are kept for exported events and
//!   ledger records only.
//! - `checkpoint.txt`: the signed checkpoint the bundle is proven against.
//! - `manifest.json`: each file's SHA-256, size, rows and seq range, the
//!   window, the checkpoint, and inclusion proofs: of the first exported
//!   leaf, and of the last leaf of every run of consecutive leaves.
//! - `manifest.dsse.json`: a DSSE envelope of an in-toto Statement v1 whose
//!   subjects are all the files above, signed by the ledger key.
//!
//! [`verify`] trusts only the ledger key. It checks the signed statement,
//! then every file's hash, before it parses any data file; then the
//! checkpoint, the leaves (their blake3 chain, and an inclusion proof at the
//! end of each run, so every leaf of a run is proven by one proof), every
//! envelope under the same rules as `actlog verify` (hashes, schema, the key
//! or token active at its seq, the signature), and finally every exported
//! row against the row rebuilt from its envelope.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actlog_core::dsse::Envelope;
use actlog_core::leaf::{Leaf, LeafKind, chain_hash, key_fingerprint};
use actlog_core::merkle;
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::{Hash, b64, sig, time};
use actlog_store::verify::{Job, Rebuilt, Verified, check_jobs_keeping};
use actlog_store::{KeyRecord, StoredEvent};
use datafusion::arrow::array::{Array, AsArray, BinaryBuilder, RecordBatch, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::{Engine, QueryOptions};
use crate::ocsf;
use crate::rows::{self, EVENTS_SCHEMA, HOPS_SCHEMA, Row};

use actlog_core::bundle::bad;
pub use actlog_core::bundle::{
    BUNDLE_FORMAT, BundleFailure, CHECKPOINT_FILE, EVIDENCE_TABLE, FileEntry, LEAVES_FILE, MANIFEST_BYTES_MAX,
    MANIFEST_FILE, Manifest, PREDICATE_TYPE, Proof, SIGNED_MANIFEST_FILE, STATEMENT_PAYLOAD_TYPE, STATEMENT_TYPE,
};

/// `export_open_files_max`: date partitions written at once. The least
/// recently used is closed when another is needed; a later row of its date
/// starts a new part.
pub const OPEN_FILES_MAX: usize = 32;
/// `bundle_files_max`: the most files `verify` accepts in a bundle.
pub const BUNDLE_FILES_MAX: usize = 1_000_000;
/// Leaves read, checked and decoded at a time.
const CHUNK_LEAVES: usize = 8_192;

/// What the data files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Parquet, the SQL tables' columns and types.
    Parquet,
    /// The same rows as JSON lines.
    Ndjson,
    /// OCSF 1.8.0 API Activity (class 6003) JSON lines.
    Ocsf,
}

impl Format {
    /// The name in the manifest and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Ocsf => "ocsf",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        match s {
            "parquet" => Some(Format::Parquet),
            "ndjson" => Some(Format::Ndjson),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Ocsf => "jsonl",
        }
    }

    /// The tables a bundle of this format has files for.
    fn tables(self) -> &'static [&'static str] {
        match self {
            Format::Parquet | Format::Ndjson => &["events", "delegation_hops"],
            Format::Ocsf => &["ocsf"],
        }
    }
}

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions<'a> {
    /// Events with `event_time` at or after this (unix nanoseconds).
    pub from: Option<i64>,
    /// Events with `event_time` before this.
    pub to: Option<i64>,
    /// What the data files hold.
    pub format: Format,
    /// A witness policy: the bundle is proven against the latest stored
    /// checkpoint whose cosignatures meet its quorum. Without one, against
    /// the latest checkpoint, with whatever cosignatures are stored for it.
    pub policy: Option<&'a actlog_core::witness::Policy>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The manifest as written.
    pub manifest: Manifest,
    /// Leaves in `leaves.parquet`.
    pub leaves: u64,
    /// Bytes of all files.
    pub bytes: u64,
}

/// A writer that hashes what it writes.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Out = Hashing<BufWriter<File>>;

enum Sink {
    Parquet(Box<ArrowWriter<Out>>),
    Ndjson(datafusion::arrow::json::LineDelimitedWriter<Out>),
    Lines(Out),
}

struct Part {
    entry: FileEntry,
    sink: Sink,
    used: u64,
}

fn parquet_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(row_group_rows))
        .build()
}

fn leaves_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("leaf", DataType::Binary, false),
        Field::new("envelope", DataType::Binary, true),
    ]))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("writing {}: {e}", path.display())
}

/// Writes data files, a part per table and date, at most [`OPEN_FILES_MAX`] open.
struct Parts {
    root: PathBuf,
    format: Format,
    open: HashMap<(&'static str, String), Part>,
    next_part: HashMap<(&'static str, String), u32>,
    done: Vec<FileEntry>,
    clock: u64,
}

impl Parts {
    fn create(&self, rel: &str) -> Result<Out, String> {
        let path = self.root.join(rel);
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(Hashing { inner: BufWriter::with_capacity(1 << 20, f), hasher: Sha256::new(), bytes: 0 })
    }

    fn part(&mut self, table: &'static str, date: &str) -> Result<&mut Part, String> {
        self.clock += 1;
        let key = (table, date.to_string());
        if !self.open.contains_key(&key) {
            if self.open.len() >= OPEN_FILES_MAX {
                let lru = self.open.iter().min_by_key(|(_, p)| p.used).map(|(k, _)| k.clone()).expect("not empty");
                let p = self.open.remove(&lru).expect("present");
                self.done.push(finish(p)?);
            }
            let n = self.next_part.entry(key.clone()).or_insert(0);
            let rel = format!("{table}/date={date}/part-{n:05}.{}", self.format.extension());
            *n += 1;
            let out = self.create(&rel)?;
            let sink = match (self.format, table) {
                (Format::Parquet, _) => {
                    let schema = if table == "events" { EVENTS_SCHEMA.clone() } else { HOPS_SCHEMA.clone() };
                    let w =
                        ArrowWriter::try_new(out, schema, Some(parquet_properties(crate::segments::ROW_GROUP_ROWS)))
                            .map_err(|e| format!("writing {rel}: {e}"))?;
                    Sink::Parquet(Box::new(w))
                }
                (Format::Ndjson, _) => Sink::Ndjson(datafusion::arrow::json::LineDelimitedWriter::new(out)),
                (Format::Ocsf, _) => Sink::Lines(out),
            };
            let entry = FileEntry {
                path: rel,
                table: table.to_string(),
                sha256: String::new(),
                bytes: 0,
                rows: 0,
                first_seq: 0,
                last_seq: 0,
            };
            self.open.insert(key.clone(), Part { entry, sink, used: 0 });
        }
        let p = self.open.get_mut(&key).expect("just opened");
        p.used = self.clock;
        Ok(p)
    }

    fn write_batch(&mut self, table: &'static str, date: &str, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let seqs = batch.column(0).as_primitive::<UInt64Type>();
        let (first, last) = (seqs.value(0), seqs.value(seqs.len() - 1));
        let p = self.part(table, date)?;
        let rel = p.entry.path.clone();
        let r = match &mut p.sink {
            Sink::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
            Sink::Ndjson(w) => w.write(batch).map_err(|e| e.to_string()),
            Sink::Lines(_) => unreachable!("OCSF parts take lines"),
        };
        r.map_err(|e| format!("writing {rel}: {e}"))?;
        note_rows(&mut p.entry, first, last, batch.num_rows() as u64);
        Ok(())
    }

    fn write_lines(&mut self, table: &'static str, date: &str, lines: &[(u64, String)]) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let p = self.part(table, date)?;
        let Sink::Lines(out) = &mut p.sink else { unreachable!("line parts") };
        for (_, l) in lines {
            out.write_all(l.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| format!("writing {}: {e}", p.entry.path))?;
        }
        let (first, last) = (lines[0].0, lines[lines.len() - 1].0);
        note_rows(&mut p.entry, first, last, lines.len() as u64);
        Ok(())
    }

    fn finish_all(mut self) -> Result<Vec<FileEntry>, String> {
        let mut open: Vec<Part> = self.open.drain().map(|(_, p)| p).collect();
        open.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
        for p in open {
            self.done.push(finish(p)?);
        }
        self.done.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.done)
    }
}

fn note_rows(e: &mut FileEntry, first: u64, last: u64, n: u64) {
    if e.rows == 0 {
        e.first_seq = first;
    }
    e.last_seq = last;
    e.rows += n;
}

fn finish(p: Part) -> Result<FileEntry, String> {
    let rel = p.entry.path.clone();
    let err = |e: String| format!("writing {rel}: {e}");
    let out = match p.sink {
        Sink::Parquet(w) => (*w).into_inner().map_err(|e| err(e.to_string()))?,
        Sink::Ndjson(mut w) => {
            w.finish().map_err(|e| err(e.to_string()))?;
            w.into_inner()
        }
        Sink::Lines(out) => out,
    };
    close(&rel, out, p.entry)
}

/// Flushes, syncs and hashes a written file.
fn close(rel: &str, mut out: Out, mut entry: FileEntry) -> Result<FileEntry, String> {
    let err = |e: std::io::Error| format!("writing {rel}: {e}");
    out.flush().map_err(err)?;
    let f = out.inner.into_inner().map_err(|e| err(e.into_error()))?;
    f.sync_all().map_err(err)?;
    entry.sha256 = hex::encode(out.hasher.finalize());
    entry.bytes = out.bytes;
    Ok(entry)
}

/// The UTC date of a timestamp, `YYYY-MM-DD`.
fn date_of(unix_nanos: i64) -> String {
    time::format_rfc3339_utc(unix_nanos)[..10].to_string()
}

fn window_text(opts_from: Option<i64>, opts_to: Option<i64>) -> String {
    match (opts_from, opts_to) {
        (None, None) => "in the ledger".into(),
        (f, t) => format!(
            "with event_time in [{}, {})",
            f.map(time::format_rfc3339_utc).unwrap_or_else(|| "-inf".into()),
            t.map(time::format_rfc3339_utc).unwrap_or_else(|| "+inf".into())
        ),
    }
}

/// Writes an export bundle of the ledger into `out`, which must be absent
/// or empty. The bundle covers the latest signed checkpoint. `seed` is the
/// ledger key (it signs the statement). `progress` gets (leaves written, total).
pub async fn export(
    engine: &Engine,
    seed: &[u8; 32],
    out: &Path,
    opts: &ExportOptions<'_>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExportReport, String> {
    begin(engine, seed, out, opts)?;
    let written = write_export(engine, out, opts, progress).await;
    let mut report = written.map_err(|e| incomplete(out, e))?;
    let manifest_bytes = sign_bundle(out, &report.manifest, seed).map_err(|e| incomplete(out, e))?;
    report.bytes += manifest_bytes.len() as u64;
    Ok(report)
}

/// Checks what can be checked before anything is written (the ledger key,
/// the window) and makes `out`, which must be absent or empty. After it
/// succeeds, a failure leaves an incomplete directory ([`incomplete`]).
pub fn begin(engine: &Engine, seed: &[u8; 32], out: &Path, opts: &ExportOptions<'_>) -> Result<(), String> {
    if sig::public_key_of(seed) != *engine.store().verifier_key().key.as_bytes() {
        return Err("the ledger key file does not belong to this ledger's verifier key".into());
    }
    if let (Some(f), Some(t)) = (opts.from, opts.to)
        && f >= t
    {
        return Err("--from must be before --to".into());
    }
    match fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(format!("{} is not empty: export into a new directory", out.display()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            // `create_dir`, not `_all`: of two exports into one new directory, one fails here.
            fs::create_dir(out).map_err(|e| format!("{} cannot be made: {e}", out.display()))?
        }
        Err(e) => return Err(format!("{}: {e}", out.display())),
    }
    Ok(())
}

/// An error after [`begin`]: say the directory is not a bundle.
pub fn incomplete(out: &Path, e: String) -> String {
    format!("{e} ({} is incomplete: delete it)", out.display())
}

/// [`export`] without the signed files, into a directory [`begin`] made:
/// the data files and leaves are written and synced, and the manifest is
/// returned for the caller to extend (evidence bundles add their files) and
/// sign with [`sign_bundle`].
pub async fn write_export(
    engine: &Engine,
    out: &Path,
    opts: &ExportOptions<'_>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExportReport, String> {
    let store = engine.store().clone();
    let key = store.verifier_key().clone();
    let (tree_size, note) = covering_checkpoint(&store, opts.policy)?;
    let cp = Checkpoint::open(&note, &key).map_err(|e| format!("corruption: the latest checkpoint: {e}"))?;
    if cp.tree_size != tree_size {
        return Err(format!("corruption: the checkpoint stored under size {tree_size} says {}", cp.tree_size));
    }

    let mut sql = format!("SELECT seq FROM events WHERE seq < {tree_size}");
    if let Some(f) = opts.from {
        sql += &format!(" AND event_time >= to_timestamp_nanos({f})");
    }
    if let Some(t) = opts.to {
        sql += &format!(" AND event_time < to_timestamp_nanos({t})");
    }
    sql += " ORDER BY seq";
    let q = engine.query(&sql, &QueryOptions::default()).await.map_err(|e| format!("selecting the events: {e}"))?;
    if q.truncated {
        return Err(format!("selecting the events: more than sql_rows_max ({}) events", q.row_count));
    }
    let selected: Vec<u64> =
        q.batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec()).collect();
    if !selected.windows(2).all(|w| w[0] < w[1]) {
        return Err("internal: the selection is not in seq order".into());
    }
    let (Some(&first), Some(&last)) = (selected.first(), selected.last()) else {
        return Err(format!(
            "no events {} at tree size {tree_size}: nothing to export",
            window_text(opts.from, opts.to)
        ));
    };

    // Key and token history before the range: ledger records.
    let (records, mut keys): (BTreeSet<u64>, Vec<KeyRecord>) = store.with_registry(|r| {
        let mut s = BTreeSet::new();
        for k in r.keys.values() {
            s.insert(k.added_seq);
            s.extend(k.revoked_seq);
        }
        for t in r.tokens.values() {
            s.insert(t.created_seq);
            s.extend(t.revoked_seq);
        }
        (s, r.keys.values().cloned().collect())
    });
    keys.sort_by_key(|k| k.added_seq);
    let leaf_seqs: Vec<u64> = records.range(..first).copied().chain(first..=last).collect();
    let total = leaf_seqs.len() as u64;

    let mut parts = Parts {
        root: out.to_path_buf(),
        format: opts.format,
        open: HashMap::new(),
        next_part: HashMap::new(),
        done: Vec::new(),
        clock: 0,
    };
    let leaves_out = parts.create(LEAVES_FILE)?;
    let mut leaves_w = ArrowWriter::try_new(leaves_out, leaves_schema(), Some(parquet_properties(CHUNK_LEAVES)))
        .map_err(|e| format!("writing {LEAVES_FILE}: {e}"))?;
    let mut leaves_entry = FileEntry {
        path: LEAVES_FILE.into(),
        table: "leaves".into(),
        sha256: String::new(),
        bytes: 0,
        rows: 0,
        first_seq: 0,
        last_seq: 0,
    };
    // Names as of each event's seq (`KeyNames::name_at`), from every key.
    let names = Arc::new(rows::KeyNames::of(&keys));
    let mut sel = 0usize;
    let mut run_ends: Vec<u64> = Vec::new();
    let mut prev: Option<u64> = None;
    let mut events = 0u64;
    let mut done = 0u64;
    // The leaves are compressed and written on their own thread while this
    // one reads and decodes the next chunk.
    let (leaves_out, looped) = std::thread::scope(|scope| {
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let writer = scope.spawn(move || -> Result<Out, String> {
            for batch in batches {
                leaves_w.write(&batch).map_err(|e| format!("writing {LEAVES_FILE}: {e}"))?;
            }
            leaves_w.into_inner().map_err(|e| format!("writing {LEAVES_FILE}: {e}"))
        });
        let looped = (|| -> Result<(), String> {
            for chunk in leaf_seqs.chunks(CHUNK_LEAVES) {
                let evs = store.events_at(chunk).map_err(|e| e.to_string())?;
                if evs.len() != chunk.len() {
                    return Err(format!("corruption: the ledger returned {} of {} leaves", evs.len(), chunk.len()));
                }
                let mut seq_b = UInt64Builder::with_capacity(chunk.len());
                let mut leaf_b = BinaryBuilder::new();
                let mut env_b = BinaryBuilder::new();
                let mut to_decode: Vec<(&StoredEvent, Arc<rows::KeyNames>)> = Vec::new();
                for ev in &evs {
                    if let Some(p) = prev
                        && ev.seq != p + 1
                    {
                        run_ends.push(p);
                    }
                    prev = Some(ev.seq);
                    while sel < selected.len() && selected[sel] < ev.seq {
                        sel += 1;
                    }
                    let exported = selected.get(sel) == Some(&ev.seq);
                    seq_b.append_value(ev.seq);
                    leaf_b.append_value(&ev.leaf_bytes);
                    if exported || ev.leaf.kind == LeafKind::LedgerSigned {
                        env_b.append_value(&ev.envelope);
                    } else {
                        env_b.append_null();
                    }
                    if exported {
                        to_decode.push((ev, Arc::clone(&names)));
                    }
                }
                // Decoding (envelope, schema, normalization) is the costly part; it
                // runs on every core, and the rows keep their seq order.
                let decoded: Vec<Result<Row, crate::Error>> = {
                    use rayon::prelude::*;
                    to_decode.par_iter().map(|(ev, names)| rows::decode(ev, names)).collect()
                };
                let mut by_date: BTreeMap<String, Vec<Row>> = BTreeMap::new();
                for row in decoded {
                    let row = row.map_err(|e| e.to_string())?;
                    by_date.entry(date_of(row.fields.event_time_unix_nanos)).or_default().push(row);
                    events += 1;
                }
                let batch = RecordBatch::try_new(
                    leaves_schema(),
                    vec![Arc::new(seq_b.finish()), Arc::new(leaf_b.finish()), Arc::new(env_b.finish())],
                )
                .expect("columns match the leaves schema");
                if to_writer.send(batch).is_err() {
                    break; // the writer failed; its error is reported below
                }
                note_rows(&mut leaves_entry, chunk[0], chunk[chunk.len() - 1], chunk.len() as u64);
                write_rows(&mut parts, opts.format, &key.name, by_date)?;
                done += chunk.len() as u64;
                progress(done, total);
            }
            Ok(())
        })();
        drop(to_writer);
        (writer.join().expect("the leaves writer does not panic"), looped)
    });
    looped?;
    let leaves_out = leaves_out?;
    run_ends.push(prev.expect("at least one leaf"));

    let mut files = parts.finish_all()?;
    files.push(close(LEAVES_FILE, leaves_out, leaves_entry)?);

    // Proofs: the first exported leaf, and the end of every run.
    let mut proof_seqs: BTreeSet<u64> = run_ends.into_iter().collect();
    proof_seqs.insert(first);
    let mut proofs = Vec::with_capacity(proof_seqs.len());
    for seq in proof_seqs {
        let (leaf_hash, path) = store.inclusion_proof(seq, tree_size).map_err(|e| e.to_string())?;
        // The bundle must verify: check our own proof before writing it.
        if !merkle::verify_inclusion(&leaf_hash, seq, tree_size, &path, &cp.root) {
            return Err(format!(
                "corruption: the store's inclusion proof for seq {seq} does not verify against its checkpoint; run `actlog verify`"
            ));
        }
        proofs.push(Proof { seq, leaf_hash: b64::encode(leaf_hash), hashes: path.iter().map(b64::encode).collect() });
    }

    let now = actlog_store::clock::now_ns();
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        data_format: opts.format.as_str().into(),
        ocsf_mapping: (opts.format == Format::Ocsf).then(|| ocsf::MAPPING.to_string()),
        origin: key.name.clone(),
        verifier_key: key.to_text(),
        created_at: time::format_rfc3339_utc(now),
        from: opts.from.map(time::format_rfc3339_utc),
        to: opts.to.map(time::format_rfc3339_utc),
        tree_size,
        root_hash: b64::encode(cp.root),
        checkpoint: note.clone(),
        events,
        first_seq: first,
        last_seq: last,
        files,
        proofs,
        framework: None,
    };
    let bytes = manifest.files.iter().map(|f| f.bytes).sum::<u64>();
    Ok(ExportReport { leaves: total, bytes, manifest })
}

/// The checkpoint a bundle is proven against, with its stored cosignatures.
fn covering_checkpoint(
    store: &actlog_store::Store,
    policy: Option<&actlog_core::witness::Policy>,
) -> Result<(u64, String), String> {
    let none = "the ledger has no signed checkpoint yet: `actlog serve` signs one within a second of an append";
    let cosigned = |size: u64| -> Result<String, String> {
        store
            .cosigned_checkpoint(size)
            .map_err(|e| format!("reading the checkpoint of size {size}: {e}"))?
            .ok_or_else(|| format!("corruption: the checkpoint of size {size} is missing"))
    };
    let Some(policy) = policy else {
        let (size, _) = store.latest_checkpoint().ok_or(none)?;
        return Ok((size, cosigned(size)?));
    };
    if policy.quorum == "none" {
        let (size, _) = store.latest_checkpoint().ok_or(none)?;
        let note = cosigned(size)?;
        policy.check(&note).map_err(|e| format!("the witness policy: {e}"))?;
        return Ok((size, note));
    }
    let stored = store.cosignatures().map_err(|e| format!("reading cosignatures: {e}"))?;
    for size in stored.keys().rev() {
        let note = cosigned(*size)?;
        if policy.check(&note).is_ok() {
            return Ok((*size, note));
        }
    }
    Err(format!(
        "no stored checkpoint meets the witness policy's quorum `{}`; is the server running with --witness-policy?",
        policy.quorum
    ))
}

/// Writes `checkpoint.txt`, `manifest.json` and `manifest.dsse.json` (the
/// in-toto statement over every file, signed with the ledger key `seed`)
/// into a bundle whose data files are written. Returns the manifest's bytes.
pub fn sign_bundle(out: &Path, manifest: &Manifest, seed: &[u8; 32]) -> Result<Vec<u8>, String> {
    let key = VerifierKey::parse(&manifest.verifier_key).map_err(|e| format!("verifier_key: {e}"))?;
    let manifest_bytes = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    let note = manifest.checkpoint.as_bytes();
    write_synced(out, CHECKPOINT_FILE, note)?;
    write_synced(out, MANIFEST_FILE, &manifest_bytes)?;
    let mut subjects: Vec<serde_json::Value> =
        manifest.files.iter().map(|f| json!({"name": f.path, "digest": {"sha256": f.sha256}})).collect();
    subjects.push(json!({"name": CHECKPOINT_FILE, "digest": {"sha256": hex::encode(Sha256::digest(note))}}));
    subjects.push(json!({"name": MANIFEST_FILE, "digest": {"sha256": hex::encode(Sha256::digest(&manifest_bytes))}}));
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "origin": manifest.origin,
            "tree_size": manifest.tree_size,
            "root_hash": manifest.root_hash,
            "from": manifest.from,
            "to": manifest.to,
            "events": manifest.events,
            "data_format": manifest.data_format,
        },
    });
    let env = Envelope::sign_as(
        STATEMENT_PAYLOAD_TYPE,
        serde_json::to_vec(&statement).expect("statement serializes"),
        Some(key.name.clone()),
        seed,
    );
    write_synced(out, SIGNED_MANIFEST_FILE, env.to_json().as_bytes())?;
    let dirs: BTreeSet<&Path> = manifest.files.iter().flat_map(|f| Path::new(&f.path).ancestors().skip(1)).collect();
    for d in dirs {
        let d = out.join(d);
        File::open(&d).and_then(|f| f.sync_all()).map_err(io_err(&d))?;
    }
    Ok(manifest_bytes)
}

fn write_rows(
    parts: &mut Parts,
    format: Format,
    origin: &str,
    by_date: BTreeMap<String, Vec<Row>>,
) -> Result<(), String> {
    for (date, rows) in by_date {
        match format {
            Format::Parquet | Format::Ndjson => {
                let (ev, hops) = rows::batches(&rows);
                parts.write_batch("events", &date, &ev)?;
                parts.write_batch("delegation_hops", &date, &hops)?;
            }
            Format::Ocsf => {
                let lines: Vec<(u64, String)> =
                    rows.iter().map(|r| (r.seq, ocsf::api_activity(r, origin).to_string())).collect();
                parts.write_lines("ocsf", &date, &lines)?;
            }
        }
    }
    Ok(())
}

fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    let mut f = File::create(&path).map_err(io_err(&path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err(&path))
}

// ---------------------------------------------------------------------------
// Verification

/// What to trust when verifying a bundle.
#[derive(Default)]
pub struct BundleOptions<'a> {
    /// The ledger verifier key the auditor expects; without it, the key
    /// named in the manifest is used (and reported as unpinned).
    pub expected_key: Option<VerifierKey>,
    /// A checkpoint obtained earlier (signed note text).
    pub trusted_checkpoint: Option<String>,
    /// Threads for signature checks (0 = all cores).
    pub jobs: usize,
    /// Called with (leaves checked, total).
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    /// A witness policy the bundle's checkpoint must meet (log key and quorum).
    pub policy: Option<&'a actlog_core::witness::Policy>,
}

/// A bundle that verified.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The manifest.
    pub manifest: Manifest,
    /// Whether the key was given by the caller (pinned) or taken from the bundle.
    pub key_pinned: bool,
    /// Leaves checked.
    pub leaves: u64,
    /// Signatures checked (producer and ledger).
    pub signatures: u64,
    /// Rows (or lines) compared with the ledger's events.
    pub rows: u64,
    /// What was concluded about the trusted checkpoint, if one was given.
    pub trusted: Option<String>,
    /// With a policy: the witnesses whose cosignatures of the bundle's
    /// checkpoint counted.
    pub witnesses: Option<Vec<String>>,
}

fn read_limited(dir: &Path, name: &str, max: u64) -> Result<Vec<u8>, BundleFailure> {
    let f = match open_regular(dir, name) {
        Err(e) if e.reason.starts_with("listed in the signed manifest but missing") => {
            return bad(Some(name), None, "missing: this is not an actlog export bundle");
        }
        other => other?,
    };
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).or_else(|e| bad(Some(name), None, format!("cannot read: {e}")))?;
    if out.len() as u64 > max {
        return bad(Some(name), None, format!("larger than bundle_manifest_bytes_max ({max} bytes)"));
    }
    Ok(out)
}

/// Every regular file under `dir`, relative and `/`-separated. Symbolic
/// links and special files are refused: they could point outside.
fn list_files(dir: &Path) -> Result<Vec<String>, BundleFailure> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let rd = fs::read_dir(&d).or_else(|e| bad(Some(&rel), None, format!("cannot list: {e}")))?;
        for item in rd {
            let item = item.or_else(|e| bad(Some(&rel), None, format!("cannot list: {e}")))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let ft = item.file_type().or_else(|e| bad(Some(&r), None, format!("cannot stat: {e}")))?;
            if ft.is_symlink() {
                return bad(Some(&r), None, "a symbolic link: bundles hold regular files only");
            } else if ft.is_dir() {
                stack.push((item.path(), r));
            } else if ft.is_file() {
                out.push(r);
                if out.len() > BUNDLE_FILES_MAX {
                    return bad(None, None, format!("more than bundle_files_max ({BUNDLE_FILES_MAX}) files"));
                }
            } else {
                return bad(Some(&r), None, "not a regular file");
            }
        }
    }
    Ok(out)
}

/// What identifies an open file: device, inode, size, and modification and
/// change times.
type FileId = (u64, u64, u64, i64, i64, i64, i64);

fn file_id(f: &File, rel: &str) -> Result<FileId, BundleFailure> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().or_else(|e| bad(Some(rel), None, format!("cannot stat: {e}")))?;
    Ok((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// The identity of each bundle file when it was hashed. Every later read
/// opens the file again and must find the same file, unchanged, so what
/// was hashed is what is parsed: a file (or a symbolic link) swapped into
/// the directory between the hash check and the parse is refused. Files are
/// not held open, so a bundle of years of daily files does not run out of
/// file descriptors.
struct Opened<'a> {
    dir: &'a Path,
    ids: HashMap<String, FileId>,
}

impl Opened<'_> {
    /// The file `rel`, from its start.
    fn read(&self, rel: &str) -> Result<File, BundleFailure> {
        let want = self.ids.get(rel).ok_or_else(|| BundleFailure {
            file: Some(rel.into()),
            seq: None,
            reason: "not a file of the signed manifest".into(),
        })?;
        let f = open_regular(self.dir, rel)?;
        if file_id(&f, rel)? != *want {
            return bad(Some(rel), None, "changed or replaced while the bundle was being verified");
        }
        Ok(f)
    }
}

/// Opens `rel` under `dir` for reading without following a symbolic link
/// in its last component and without blocking on a FIFO, and checks that
/// what was opened is a regular file.
fn open_regular(dir: &Path, rel: &str) -> Result<File, BundleFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(rel));
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return bad(Some(rel), None, "listed in the signed manifest but missing");
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return bad(Some(rel), None, "a symbolic link: bundles hold regular files only");
        }
        Err(e) => return bad(Some(rel), None, format!("cannot read: {e}")),
    };
    let meta = f.metadata().or_else(|e| bad(Some(rel), None, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return bad(Some(rel), None, "not a regular file");
    }
    Ok(f)
}

fn hash_file(f: &mut File, rel: &str) -> Result<(String, u64), BundleFailure> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).or_else(|e| bad(Some(rel), None, format!("cannot read: {e}")))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

fn decode_hash(file: &str, seq: Option<u64>, text: &str) -> Result<Hash, BundleFailure> {
    b64::decode_strict(text).and_then(|v| <[u8; 32]>::try_from(v).ok()).ok_or_else(|| BundleFailure {
        file: Some(file.into()),
        seq,
        reason: format!("`{text}` is not a base64 32-byte hash"),
    })
}

/// Digest of each row of a batch, in the row format of its schema.
fn row_digests(conv: &RowConverter, batch: &RecordBatch) -> Result<Vec<[u8; 16]>, String> {
    let rows = conv.convert_columns(batch.columns()).map_err(|e| e.to_string())?;
    Ok((0..rows.num_rows())
        .map(|i| blake3::hash(rows.row(i).as_ref()).as_bytes()[..16].try_into().expect("16 bytes"))
        .collect())
}

fn converter(schema: &SchemaRef) -> RowConverter {
    RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())
        .expect("the tables' types have a row format")
}

/// Expected rows of one table and date, in seq order: (seq, digest).
type Expected = BTreeMap<(String, String), Vec<(u64, [u8; 16])>>;

/// Verifies the bundle in `dir`. See the module docs for what is checked.
pub fn verify(dir: &Path, opts: &BundleOptions<'_>) -> Result<BundleReport, BundleFailure> {
    let signed = read_limited(dir, SIGNED_MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    let manifest_bytes = read_limited(dir, MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    // 1. The signed statement, and every file's hash, before any data file is parsed.
    let signed = actlog_core::bundle::open_manifest(&signed, &manifest_bytes, opts.expected_key.as_ref())?;
    let listed = signed.listed();
    for f in list_files(dir)? {
        if f != SIGNED_MANIFEST_FILE && !listed.contains_key(f.as_str()) {
            return bad(Some(&f), None, "not in the signed manifest (added after signing?)");
        }
    }
    let mut opened = Opened { dir, ids: HashMap::new() };
    for (&name, &entry) in &listed {
        if name == MANIFEST_FILE {
            continue;
        }
        let mut file = open_regular(dir, name)?;
        let meta = file.metadata().or_else(|e| bad(Some(name), None, format!("cannot stat: {e}")))?;
        // Sizes first: a huge file is refused without reading it.
        let want = entry.map(|e| e.bytes).unwrap_or(actlog_core::note::NOTE_BYTES_MAX as u64);
        if (entry.is_some() && meta.len() != want) || meta.len() > want {
            return bad(Some(name), None, format!("{} bytes, the manifest allows {want}", meta.len()));
        }
        let id = file_id(&file, name)?;
        let (sha, size) = hash_file(&mut file, name)?;
        if file_id(&file, name)? != id {
            return bad(Some(name), None, "changed while it was being hashed");
        }
        opened.ids.insert(name.to_string(), id);
        if Some(&sha) != signed.subjects.get(name) {
            return bad(Some(name), None, "SHA-256 does not match the signed manifest (the file was changed)");
        }
        if let Some(e) = entry
            && e.bytes != size
        {
            return bad(Some(name), None, format!("{size} bytes, the manifest says {}", e.bytes));
        }
    }

    // 2. The checkpoint.
    let cp = signed.checkpoint()?;
    let actlog_core::bundle::SignedManifest { manifest, key, .. } = signed;
    let mut checkpoint_text = Vec::new();
    opened
        .read(CHECKPOINT_FILE)?
        .read_to_end(&mut checkpoint_text)
        .or_else(|e| bad(Some(CHECKPOINT_FILE), None, format!("cannot read: {e}")))?;
    if checkpoint_text != manifest.checkpoint.as_bytes() {
        return bad(Some(CHECKPOINT_FILE), None, "differs from the manifest's checkpoint");
    }
    let witnesses = match opts.policy {
        None => None,
        Some(p) => {
            let (_, _, _, by) = p
                .check(&manifest.checkpoint)
                .or_else(|e| bad(Some(CHECKPOINT_FILE), None, format!("the witness policy: {e}")))?;
            Some(by.into_keys().collect())
        }
    };
    let trusted = match &opts.trusted_checkpoint {
        None => None,
        Some(note) => {
            let t = Checkpoint::open(note, &key).or_else(|e| {
                bad(None, None, format!("the trusted checkpoint does not verify with the bundle's ledger key: {e}"))
            })?;
            if t.tree_size == cp.tree_size {
                if t.root != cp.root {
                    return bad(
                        Some(CHECKPOINT_FILE),
                        None,
                        "same tree size as the trusted checkpoint but another root: the log was rewritten",
                    );
                }
                Some(format!("the trusted checkpoint (tree size {}) is the bundle's", t.tree_size))
            } else {
                Some(format!(
                    "the trusted checkpoint (tree size {}) is signed by the same key; the bundle is at tree size {}: \
                     compare them with `actlog prove consistency` on the ledger",
                    t.tree_size, cp.tree_size
                ))
            }
        }
    };
    let format = Format::parse(&manifest.data_format).ok_or_else(|| BundleFailure {
        file: Some(MANIFEST_FILE.into()),
        seq: None,
        reason: format!("data_format `{}` is not known", manifest.data_format),
    })?;
    if format == Format::Ocsf && manifest.ocsf_mapping.as_deref() != Some(ocsf::MAPPING) {
        return bad(
            Some(MANIFEST_FILE),
            None,
            format!("OCSF bundles of mapping {} are verified here only", ocsf::MAPPING),
        );
    }
    let window_from = match &manifest.from {
        Some(t) => Some(time::parse_rfc3339_utc(t).ok_or_else(|| BundleFailure {
            file: Some(MANIFEST_FILE.into()),
            seq: None,
            reason: "`from` is not an RFC 3339 UTC time".into(),
        })?),
        None => None,
    };
    let window_to = match &manifest.to {
        Some(t) => Some(time::parse_rfc3339_utc(t).ok_or_else(|| BundleFailure {
            file: Some(MANIFEST_FILE.into()),
            seq: None,
            reason: "`to` is not an RFC 3339 UTC time".into(),
        })?),
        None => None,
    };
    let mut proofs: HashMap<u64, (Hash, Vec<Hash>)> = HashMap::new();
    for p in &manifest.proofs {
        let leaf_hash = decode_hash(MANIFEST_FILE, Some(p.seq), &p.leaf_hash)?;
        let path =
            p.hashes.iter().map(|h| decode_hash(MANIFEST_FILE, Some(p.seq), h)).collect::<Result<Vec<_>, _>>()?;
        proofs.insert(p.seq, (leaf_hash, path));
    }

    // 3. Leaves, envelopes and the rows they imply.
    let leaves_entry = match manifest.files.iter().filter(|f| f.table == "leaves").collect::<Vec<_>>()[..] {
        [e] if e.path == LEAVES_FILE => e,
        _ => return bad(Some(MANIFEST_FILE), None, format!("must list exactly one leaves file, {LEAVES_FILE}")),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .build()
        .or_else(|e| bad(None, None, format!("cannot start threads: {e}")))?;
    let ledger_fp = key_fingerprint(key.key.as_bytes());
    let signatures = AtomicU64::new(0);
    let mut check = LeafCheck {
        tree_size: manifest.tree_size,
        root: cp.root,
        first: manifest.first_seq,
        last: manifest.last_seq,
        from: window_from,
        to: window_to,
        proofs: &proofs,
        prev: None,
        chain: [0; 32],
        rebuilt: Rebuilt::default(),
        format,
        origin: manifest.origin.clone(),
        names: Arc::new(rows::KeyNames::default()),
        expected: Expected::new(),
        events: 0,
        leaves: 0,
    };
    let ev_conv = converter(&EVENTS_SCHEMA);
    let hop_conv = converter(&HOPS_SCHEMA);
    let leaves_file = opened.read(LEAVES_FILE)?;
    let mut reader = guarded(LEAVES_FILE, || {
        ParquetRecordBatchReaderBuilder::try_new(leaves_file)
            .and_then(|b| b.with_batch_size(CHUNK_LEAVES).build())
            .map_err(|e| e.to_string())
    })?;
    // Each batch is decoded under `guarded` too: pages decode lazily.
    while let Some(batch) = guarded(LEAVES_FILE, || reader.next().transpose().map_err(|e| e.to_string()))? {
        let leaves = LeavesBatch::of(&batch)?;
        let mut jobs = Vec::new();
        let mut rows_in: Vec<(StoredEvent, Arc<rows::KeyNames>)> = Vec::new();
        for i in 0..batch.num_rows() {
            let (seq, leaf_bytes, envelope) = (leaves.seq.value(i), leaves.leaf.value(i), leaves.envelope(i));
            let (leaf, leaf_hash, chain) = check.leaf(seq, leaf_bytes)?;
            let Some(envelope) = envelope else {
                if leaf.kind == LeafKind::LedgerSigned {
                    return bad(
                        Some(LEAVES_FILE),
                        Some(seq),
                        "a ledger record without its envelope (key history hidden)",
                    );
                }
                continue;
            };
            if leaf.kind == LeafKind::LedgerSigned {
                check.rebuilt.apply_record(&leaf, envelope, &key.key, &ledger_fp).map_err(|f| BundleFailure {
                    file: Some(LEAVES_FILE.into()),
                    seq: f.seq,
                    reason: f.reason,
                })?;
                signatures.fetch_add(1, Ordering::Relaxed);
                // A key added or revoked changes the names (`KeyNames::name_at`
                // looks at revocations too); ledger records are few.
                check.names = Arc::new(rows::KeyNames::of(check.rebuilt.keys()));
            } else {
                jobs.push(Job::new(leaf.clone(), envelope.to_vec()));
            }
            if (check.first..=check.last).contains(&seq) {
                // Key names as of this seq (keys registered before it). The
                // envelope is kept only for ledger records: the checks hand
                // back the validated payload of every other event.
                let envelope = if leaf.kind == LeafKind::LedgerSigned { envelope.to_vec() } else { Vec::new() };
                let ev =
                    StoredEvent { seq, leaf, leaf_bytes: leaf_bytes.to_vec(), leaf_hash, chain_hash: chain, envelope };
                rows_in.push((ev, Arc::clone(&check.names)));
            }
        }
        // Signatures first: rows are rebuilt only from envelopes that verify.
        let verified = pool
            .install(|| check_jobs_keeping(&jobs, &check.rebuilt, &signatures))
            .map_err(|f| BundleFailure { file: Some(LEAVES_FILE.into()), seq: f.seq, reason: f.reason })?;
        check.rows(&pool, rows_in, verified, &ev_conv, &hop_conv)?;
        if let Some(p) = opts.progress {
            p(check.leaves, leaves_entry.rows);
        }
    }
    check.finish()?;
    if check.leaves != leaves_entry.rows {
        return bad(
            Some(LEAVES_FILE),
            None,
            format!("{} leaves, the manifest says {}", check.leaves, leaves_entry.rows),
        );
    }
    if check.events != manifest.events {
        return bad(
            Some(LEAVES_FILE),
            None,
            format!("{} events in the window, the manifest says {}", check.events, manifest.events),
        );
    }

    // 4. Every data file against the rows rebuilt from the ledger.
    let mut groups: BTreeMap<(String, String), Vec<&FileEntry>> = BTreeMap::new();
    for f in manifest.files.iter().filter(|f| f.table != "leaves" && f.table != EVIDENCE_TABLE) {
        let (table, date) = parse_data_path(&f.path, format).ok_or_else(|| BundleFailure {
            file: Some(f.path.clone()),
            seq: None,
            reason: format!(
                "not a {} data file path (`TABLE/date=YYYY-MM-DD/part-NNNNN.{}`)",
                format.as_str(),
                format.extension()
            ),
        })?;
        if table != f.table {
            return bad(Some(&f.path), None, format!("listed as table `{}`", f.table));
        }
        groups.entry((table, date)).or_default().push(f);
    }
    let mut rows_checked = 0u64;
    for (key_td, want) in &check.expected {
        if !want.is_empty() && !groups.contains_key(key_td) {
            return bad(
                None,
                Some(want[0].0),
                format!("{} rows of {} for {} are missing from the bundle", want.len(), key_td.0, key_td.1),
            );
        }
    }
    // Files are read and digested in parallel, then compared in order.
    let all: Vec<&FileEntry> = groups.values().flatten().copied().collect();
    let digested: HashMap<&str, Result<Vec<[u8; 16]>, BundleFailure>> = {
        use rayon::prelude::*;
        pool.install(|| {
            all.par_iter()
                .map(|f| {
                    let d =
                        guarded(&f.path, || Ok(file_digests(&opened, f, format, &ev_conv, &hop_conv))).and_then(|r| r);
                    (f.path.as_str(), d)
                })
                .collect()
        })
    };
    for (key_td, files) in &mut groups {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let empty = Vec::new();
        let want = check.expected.get(key_td).unwrap_or(&empty);
        let mut at = 0usize;
        for f in files.iter() {
            let got = digested[f.path.as_str()].clone()?;
            if got.len() as u64 != f.rows {
                return bad(Some(&f.path), None, format!("{} rows, the manifest says {}", got.len(), f.rows));
            }
            for (i, d) in got.iter().enumerate() {
                let Some((seq, w)) = want.get(at) else {
                    return bad(
                        Some(&f.path),
                        None,
                        format!("row {i} is not an event of the ledger in this window and date"),
                    );
                };
                if d != w {
                    return bad(
                        Some(&f.path),
                        Some(*seq),
                        format!(
                            "row {i} does not match the event in the ledger (it was changed, dropped or reordered)"
                        ),
                    );
                }
                if i == 0 && *seq != f.first_seq {
                    return bad(Some(&f.path), None, "first_seq differs from the manifest");
                }
                at += 1;
            }
            if want.get(at.wrapping_sub(1)).map(|w| w.0) != Some(f.last_seq) && f.rows > 0 {
                return bad(Some(&f.path), None, "last_seq differs from the manifest");
            }
            rows_checked += got.len() as u64;
        }
        if at != want.len() {
            return bad(
                None,
                Some(want[at].0),
                format!("{} rows of {} for {} are missing from the bundle", want.len() - at, key_td.0, key_td.1),
            );
        }
    }
    Ok(BundleReport {
        manifest,
        key_pinned: opts.expected_key.is_some(),
        leaves: check.leaves,
        signatures: signatures.load(Ordering::Relaxed),
        rows: rows_checked,
        trusted,
        witnesses,
    })
}

/// Runs parquet decoding that could panic on a malformed file (which a
/// holder of the ledger key could sign), turning a panic into a failure.
fn guarded<T>(file: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, BundleFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bad(Some(file), None, format!("not readable: {e}")),
        Err(_) => bad(Some(file), None, "not readable: the Parquet decoder failed on it"),
    }
}

struct LeavesBatch<'a> {
    seq: &'a datafusion::arrow::array::UInt64Array,
    leaf: &'a datafusion::arrow::array::BinaryArray,
    envelope: &'a datafusion::arrow::array::BinaryArray,
}

impl<'a> LeavesBatch<'a> {
    fn of(batch: &'a RecordBatch) -> Result<LeavesBatch<'a>, BundleFailure> {
        let col = |name: &str, t: DataType| {
            batch.column_by_name(name).filter(|c| *c.data_type() == t).ok_or_else(|| BundleFailure {
                file: Some(LEAVES_FILE.into()),
                seq: None,
                reason: format!("column `{name}` is missing or not {t}"),
            })
        };
        let seq = col("seq", DataType::UInt64)?.as_primitive::<UInt64Type>();
        let leaf = col("leaf", DataType::Binary)?.as_binary::<i32>();
        let envelope = col("envelope", DataType::Binary)?.as_binary::<i32>();
        if seq.null_count() > 0 || leaf.null_count() > 0 {
            return bad(Some(LEAVES_FILE), None, "`seq` and `leaf` may not be null");
        }
        Ok(LeavesBatch { seq, leaf, envelope })
    }

    fn envelope(&self, i: usize) -> Option<&'a [u8]> {
        self.envelope.is_valid(i).then(|| self.envelope.value(i))
    }
}

/// The leaf-by-leaf state of a bundle check.
struct LeafCheck<'a> {
    tree_size: u64,
    root: Hash,
    first: u64,
    last: u64,
    from: Option<i64>,
    to: Option<i64>,
    proofs: &'a HashMap<u64, (Hash, Vec<Hash>)>,
    /// The previous leaf's seq and leaf hash.
    prev: Option<(u64, Hash)>,
    /// Chain hash after the previous leaf.
    chain: Hash,
    rebuilt: Rebuilt,
    /// What the data files hold, and the origin OCSF records name.
    format: Format,
    origin: String,
    /// Key names, of the keys applied so far.
    names: Arc<rows::KeyNames>,
    expected: Expected,
    events: u64,
    leaves: u64,
}

impl LeafCheck<'_> {
    fn fail<T>(&self, seq: u64, reason: impl Into<String>) -> Result<T, BundleFailure> {
        bad(Some(LEAVES_FILE), Some(seq), reason)
    }

    /// Checks one leaf's place: order, encoding, chain link, and at the end
    /// of each run its inclusion proof. Returns the leaf, its hash and the
    /// chain hash after it.
    fn leaf(&mut self, seq: u64, bytes: &[u8]) -> Result<(Leaf, Hash, Hash), BundleFailure> {
        if seq >= self.tree_size {
            return self.fail(seq, format!("beyond the checkpoint's tree size {}", self.tree_size));
        }
        if seq > self.last {
            return self.fail(seq, "after the last exported event");
        }
        let leaf = Leaf::decode(bytes).or_else(|e| self.fail(seq, format!("leaf does not decode: {e}")))?;
        if leaf.seq != seq {
            return self.fail(seq, format!("the leaf says seq {}", leaf.seq));
        }
        match self.prev {
            Some((p, _)) if seq <= p => {
                return self.fail(seq, format!("not after seq {p}: leaves must be in seq order"));
            }
            Some((p, _)) if seq == p + 1 => {
                if leaf.prev_chain_hash != self.chain {
                    return self.fail(
                        seq,
                        format!("does not commit to the chain hash after seq {p} (a leaf was changed, reordered or inserted)"),
                    );
                }
            }
            prev => {
                if seq > self.first {
                    let from = prev.map_or(self.first, |(p, _)| p + 1).max(self.first);
                    let what = if from + 1 == seq {
                        format!("leaf {from} is")
                    } else {
                        format!("leaves {from} to {} are", seq - 1)
                    };
                    return self.fail(seq, format!("{what} missing"));
                }
                if let Some((p, h)) = prev {
                    self.prove(p, h)?;
                }
            }
        }
        let leaf_hash = merkle::leaf_hash(bytes);
        if seq == self.first
            && let Some((h, _)) = self.proofs.get(&seq)
            && *h != leaf_hash
        {
            return bad(Some(MANIFEST_FILE), Some(seq), "the first exported leaf's proof names another leaf hash");
        }
        self.chain = chain_hash(&leaf.prev_chain_hash, bytes);
        self.prev = Some((seq, leaf_hash));
        self.leaves += 1;
        Ok((leaf, leaf_hash, self.chain))
    }

    /// The inclusion proof of the leaf that ends a run.
    fn prove(&self, seq: u64, leaf_hash: Hash) -> Result<(), BundleFailure> {
        let Some((h, path)) = self.proofs.get(&seq) else {
            return bad(Some(MANIFEST_FILE), Some(seq), "no inclusion proof for the leaf that ends this run of leaves");
        };
        if *h != leaf_hash {
            return bad(Some(MANIFEST_FILE), Some(seq), "the proof's leaf hash is not this leaf's");
        }
        if !merkle::verify_inclusion(&leaf_hash, seq, self.tree_size, path, &self.root) {
            return bad(Some(MANIFEST_FILE), Some(seq), "the inclusion proof does not verify against the checkpoint");
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BundleFailure> {
        match self.prev {
            Some((p, h)) if p == self.last => {
                self.prove(p, h)?;
                // The first exported leaf has its own proof too (contract section 8).
                if let Some((h, path)) = self.proofs.get(&self.first)
                    && !merkle::verify_inclusion(h, self.first, self.tree_size, path, &self.root)
                {
                    return bad(
                        Some(MANIFEST_FILE),
                        Some(self.first),
                        "the inclusion proof does not verify against the checkpoint",
                    );
                }
                Ok(())
            }
            _ => bad(Some(LEAVES_FILE), Some(self.last), "the last exported leaf is missing"),
        }
    }

    /// Rebuilds the rows of verified envelopes in the window.
    fn rows(
        &mut self,
        pool: &rayon::ThreadPool,
        evs: Vec<(StoredEvent, Arc<rows::KeyNames>)>,
        verified: Vec<Verified>,
        ev_conv: &RowConverter,
        hop_conv: &RowConverter,
    ) -> Result<(), BundleFailure> {
        use rayon::prelude::*;
        // Both lists are in seq order: pair each event with what its checks
        // validated; ledger records (no job) are decoded from their envelope.
        let mut verified = verified.into_iter().peekable();
        let paired: Vec<_> = evs
            .into_iter()
            .map(|(ev, names)| {
                while verified.peek().is_some_and(|v| v.seq < ev.seq) {
                    verified.next();
                }
                let v = verified.next_if(|v| v.seq == ev.seq);
                (ev, names, v)
            })
            .collect();
        let decoded: Vec<_> = pool.install(|| {
            paired
                .into_par_iter()
                .map(|(ev, names, v)| {
                    let row = match v {
                        Some(v) => rows::from_validated(&ev, v.payload, v.fields, &names),
                        None => rows::decode(&ev, &names),
                    };
                    (ev.seq, row)
                })
                .collect()
        });
        let mut by_date: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for (seq, row) in decoded {
            let row = row.or_else(|e| self.fail(seq, e.to_string()))?;
            let t = row.fields.event_time_unix_nanos;
            if self.from.is_some_and(|f| t < f) || self.to.is_some_and(|to| t >= to) {
                if seq == self.first || seq == self.last {
                    return self.fail(seq, "the first and last exported events must be in the window");
                }
                continue;
            }
            self.events += 1;
            by_date.entry(date_of(t)).or_default().push(row);
        }
        for (date, rows) in by_date {
            match self.format {
                Format::Parquet | Format::Ndjson => {
                    let (ev, hops) = rows::batches(&rows);
                    for (table, batch, conv) in [("events", &ev, ev_conv), ("delegation_hops", &hops, hop_conv)] {
                        let digests = row_digests(conv, batch).or_else(|e| bad(None, None, e))?;
                        let seqs = batch.column(0).as_primitive::<UInt64Type>();
                        self.expected
                            .entry((table.to_string(), date.clone()))
                            .or_default()
                            .extend(seqs.values().iter().copied().zip(digests));
                    }
                }
                Format::Ocsf => {
                    let e = self.expected.entry(("ocsf".to_string(), date.clone())).or_default();
                    for r in &rows {
                        e.push((r.seq, line_digest(&ocsf::api_activity(r, &self.origin))));
                    }
                }
            }
        }
        Ok(())
    }
}

fn line_digest(v: &serde_json::Value) -> [u8; 16] {
    blake3::hash(v.to_string().as_bytes()).as_bytes()[..16].try_into().expect("16 bytes")
}

/// `TABLE/date=YYYY-MM-DD/part-NNNNN.EXT` → (table, date).
fn parse_data_path(path: &str, format: Format) -> Option<(String, String)> {
    let mut it = path.split('/');
    let (table, date, file) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !format.tables().contains(&table) {
        return None;
    }
    let date = date.strip_prefix("date=")?;
    time::parse_rfc3339_utc(&format!("{date}T00:00:00Z"))?;
    let n = file.strip_prefix("part-")?.strip_suffix(&format!(".{}", format.extension()))?;
    (n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit())).then(|| (table.to_string(), date.to_string()))
}

/// Row digests of one data file, in file order.
fn file_digests(
    opened: &Opened,
    f: &FileEntry,
    format: Format,
    ev_conv: &RowConverter,
    hop_conv: &RowConverter,
) -> Result<Vec<[u8; 16]>, BundleFailure> {
    let file = opened.read(&f.path)?;
    let (schema, conv) =
        if f.table == "events" { (EVENTS_SCHEMA.clone(), ev_conv) } else { (HOPS_SCHEMA.clone(), hop_conv) };
    let mut out = Vec::with_capacity(f.rows.min(1 << 24) as usize);
    match format {
        Format::Ocsf => {
            // Byte for byte: the line must be the record as the mapping writes it.
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.or_else(|e| bad(Some(&f.path), None, format!("line {}: {e}", i + 1)))?;
                out.push(blake3::hash(line.as_bytes()).as_bytes()[..16].try_into().expect("16 bytes"));
            }
        }
        Format::Ndjson => {
            let reader = datafusion::arrow::json::ReaderBuilder::new(schema.clone())
                .with_strict_mode(true)
                .build(BufReader::new(file))
                .or_else(|e| bad(Some(&f.path), None, format!("not readable: {e}")))?;
            for batch in reader {
                let batch = batch
                    .or_else(|e| bad(Some(&f.path), None, format!("not readable as the {} table: {e}", f.table)))?;
                out.extend(row_digests(conv, &batch).or_else(|e| bad(Some(&f.path), None, e))?);
            }
        }
        Format::Parquet => {
            let mut reader = guarded(&f.path, || {
                ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| e.to_string())
            })?;
            while let Some(batch) = guarded(&f.path, || reader.next().transpose().map_err(|e| e.to_string()))? {
                let batch = conform(&batch, &schema).or_else(|e| bad(Some(&f.path), None, e))?;
                out.extend(row_digests(conv, &batch).or_else(|e| bad(Some(&f.path), None, e))?);
            }
        }
    }
    Ok(out)
}

/// The batch with the table's schema: the same column names, in order, and types.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let got: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    let want: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if got != want {
        return Err(format!("columns {got:?} are not the table's {want:?}"));
    }
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            // Exact types: a cast could make a different file compare equal.
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                Err(format!("column `{}` is {}, not {}", f.name(), c.data_type(), f.data_type()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_name_a_table_a_date_and_a_part() {
        assert_eq!(
            parse_data_path("events/date=2026-11-28/part-00000.parquet", Format::Parquet),
            Some(("events".into(), "2026-11-28".into()))
        );
        assert_eq!(
            parse_data_path("ocsf/date=2026-02-28/part-00012.jsonl", Format::Ocsf),
            Some(("ocsf".into(), "2026-02-28".into()))
        );
        for p in [
            "events/date=2026-02-30/part-00000.parquet",
            "events/date=2026-11-28/part-0.parquet",
            "events/date=2026-11-28/part-00000.ndjson",
            "ocsf/date=2026-11-28/part-00000.parquet",
            "events/2026-11-28/part-00000.parquet",
            "events/date=2026-11-28/x/part-00000.parquet",
        ] {
            assert_eq!(parse_data_path(p, Format::Parquet), None, "{p}");
        }
    }
}
