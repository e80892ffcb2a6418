//! Writing an export bundle from a ledger: the data files, a part per
//! table and date, `leaves.parquet`, the proofs, and the signed manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actlog_core::bundle::{
    BUNDLE_FORMAT, CHECKPOINT_FILE, FileEntry, LEAVES_FILE, MANIFEST_FILE, Manifest, PREDICATE_TYPE, Proof,
    SIGNED_MANIFEST_FILE, STATEMENT_PAYLOAD_TYPE, STATEMENT_TYPE,
};
use actlog_core::dsse::Envelope;
use actlog_core::leaf::LeafKind;
use actlog_core::ledger::{KeyNames, StoredEvent};
use actlog_core::merkle;
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::rows::{self, EVENTS_SCHEMA, HOPS_SCHEMA, Row};
use actlog_core::{b64, sig, time};
use actlog_query::{Engine, QueryOptions};
use actlog_store::KeyRecord;
use arrow::array::{AsArray, BinaryBuilder, RecordBatch, UInt64Builder};
use arrow::datatypes::UInt64Type;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::leaves::{CHUNK_LEAVES, leaves_schema};
use crate::{ExportError, Format, date_of, ocsf};

/// `export_open_files_max`: date partitions written at once. The least
/// recently used is closed when another is needed; a later row of its date
/// starts a new part.
pub const OPEN_FILES_MAX: usize = 32;

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
    /// Only the leaves with seq in `[first, end)`, every one of them (the
    /// archive's ranges). The checkpoint must cover `end`.
    pub seqs: Option<(u64, u64)>,
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
    Ndjson(arrow::json::LineDelimitedWriter<Out>),
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

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |e| ExportError::Io(format!("writing {}: {e}", path.display()))
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
    fn create(&self, rel: &str) -> Result<Out, ExportError> {
        let path = self.root.join(rel);
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(Hashing { inner: BufWriter::with_capacity(1 << 20, f), hasher: Sha256::new(), bytes: 0 })
    }

    fn part(&mut self, table: &'static str, date: &str) -> Result<&mut Part, ExportError> {
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
                    let w = ArrowWriter::try_new(
                        out,
                        schema,
                        Some(parquet_properties(actlog_query::segments::ROW_GROUP_ROWS)),
                    )
                    .map_err(|e| ExportError::Io(format!("writing {rel}: {e}")))?;
                    Sink::Parquet(Box::new(w))
                }
                (Format::Ndjson, _) => Sink::Ndjson(arrow::json::LineDelimitedWriter::new(out)),
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

    fn write_batch(&mut self, table: &'static str, date: &str, batch: &RecordBatch) -> Result<(), ExportError> {
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
        r.map_err(|e| ExportError::Io(format!("writing {rel}: {e}")))?;
        note_rows(&mut p.entry, first, last, batch.num_rows() as u64);
        Ok(())
    }

    fn write_lines(&mut self, table: &'static str, date: &str, lines: &[(u64, String)]) -> Result<(), ExportError> {
        if lines.is_empty() {
            return Ok(());
        }
        let p = self.part(table, date)?;
        let Sink::Lines(out) = &mut p.sink else { unreachable!("line parts") };
        for (_, l) in lines {
            out.write_all(l.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| ExportError::Io(format!("writing {}: {e}", p.entry.path)))?;
        }
        let (first, last) = (lines[0].0, lines[lines.len() - 1].0);
        note_rows(&mut p.entry, first, last, lines.len() as u64);
        Ok(())
    }

    fn finish_all(mut self) -> Result<Vec<FileEntry>, ExportError> {
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

fn finish(p: Part) -> Result<FileEntry, ExportError> {
    let rel = p.entry.path.clone();
    let err = |e: String| ExportError::Io(format!("writing {rel}: {e}"));
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
fn close(rel: &str, mut out: Out, mut entry: FileEntry) -> Result<FileEntry, ExportError> {
    let err = |e: std::io::Error| ExportError::Io(format!("writing {rel}: {e}"));
    out.flush().map_err(err)?;
    let f = out.inner.into_inner().map_err(|e| err(e.into_error()))?;
    f.sync_all().map_err(err)?;
    entry.sha256 = hex::encode(out.hasher.finalize());
    entry.bytes = out.bytes;
    Ok(entry)
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
) -> Result<ExportReport, ExportError> {
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
pub fn begin(engine: &Engine, seed: &[u8; 32], out: &Path, opts: &ExportOptions<'_>) -> Result<(), ExportError> {
    if sig::public_key_of(seed) != *engine.store().verifier_key().key.as_bytes() {
        return Err(ExportError::Refused("the ledger key file does not belong to this ledger's verifier key".into()));
    }
    if let (Some(f), Some(t)) = (opts.from, opts.to)
        && f >= t
    {
        return Err(ExportError::Refused("--from must be before --to".into()));
    }
    match fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(ExportError::Refused(format!(
                    "{} is not empty: export into a new directory",
                    out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            // `create_dir`, not `_all`: of two exports into one new directory, one fails here.
            fs::create_dir(out).map_err(|e| ExportError::Io(format!("{} cannot be made: {e}", out.display())))?
        }
        Err(e) => return Err(ExportError::Io(format!("{}: {e}", out.display()))),
    }
    Ok(())
}

/// An error after [`begin`]: say the directory is not a bundle.
pub fn incomplete(out: &Path, e: ExportError) -> ExportError {
    ExportError::Incomplete { error: Box::new(e), dir: out.to_path_buf() }
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
) -> Result<ExportReport, ExportError> {
    let store = engine.store().clone();
    let key = store.verifier_key().clone();
    let (tree_size, note) = covering_checkpoint(&store, opts.policy)?;
    let cp =
        Checkpoint::open(&note, &key).map_err(|e| ExportError::Corruption(format!("the latest checkpoint: {e}")))?;
    if cp.tree_size != tree_size {
        return Err(ExportError::Corruption(format!(
            "the checkpoint stored under size {tree_size} says {}",
            cp.tree_size
        )));
    }

    if let Some((a, b)) = opts.seqs
        && (a >= b || b > tree_size)
    {
        return Err(ExportError::Refused(format!(
            "the seq range [{a}, {b}) is empty or beyond the latest checkpoint's tree size {tree_size}"
        )));
    }
    let selected: Vec<u64> = match (opts.seqs, opts.from, opts.to) {
        // A seq range alone needs no query, so no SQL time or row limit
        // applies: the archiver exports ranges of 65,536 events, under load.
        (Some((a, b)), None, None) => (a..b).collect(),
        _ => select(engine, tree_size, opts).await?,
    };
    if !selected.windows(2).all(|w| w[0] < w[1]) {
        return Err(ExportError::Ledger("internal: the selection is not in seq order".into()));
    }
    if let Some((a, b)) = opts.seqs
        && selected.len() as u64 != b - a
    {
        return Err(ExportError::Corruption(format!(
            "the events table holds {} of the {} seqs in [{a}, {b})",
            selected.len(),
            b - a
        )));
    }
    let (Some(&first), Some(&last)) = (selected.first(), selected.last()) else {
        return Err(ExportError::Refused(format!(
            "no events {} at tree size {tree_size}: nothing to export",
            window_text(opts.from, opts.to)
        )));
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
        .map_err(|e| ExportError::Io(format!("writing {LEAVES_FILE}: {e}")))?;
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
    let names = Arc::new(KeyNames::of(&keys));
    let mut sel = 0usize;
    let mut run_ends: Vec<u64> = Vec::new();
    let mut prev: Option<u64> = None;
    let mut events = 0u64;
    let mut done = 0u64;
    // The leaves are compressed and written on their own thread while this
    // one reads and decodes the next chunk.
    let (leaves_out, looped) = std::thread::scope(|scope| {
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let writer = scope.spawn(move || -> Result<Out, ExportError> {
            for batch in batches {
                leaves_w.write(&batch).map_err(|e| ExportError::Io(format!("writing {LEAVES_FILE}: {e}")))?;
            }
            leaves_w.into_inner().map_err(|e| ExportError::Io(format!("writing {LEAVES_FILE}: {e}")))
        });
        let looped = (|| -> Result<(), ExportError> {
            for chunk in leaf_seqs.chunks(CHUNK_LEAVES) {
                let evs = store.events_at(chunk).map_err(ExportError::from)?;
                if evs.len() != chunk.len() {
                    return Err(ExportError::Corruption(format!(
                        "the ledger returned {} of {} leaves",
                        evs.len(),
                        chunk.len()
                    )));
                }
                let mut seq_b = UInt64Builder::with_capacity(chunk.len());
                let mut leaf_b = BinaryBuilder::new();
                let mut env_b = BinaryBuilder::new();
                let mut to_decode: Vec<(&StoredEvent, Arc<KeyNames>)> = Vec::new();
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
                let decoded: Vec<Result<Row, rows::Corrupt>> = {
                    use rayon::prelude::*;
                    to_decode.par_iter().map(|(ev, names)| rows::decode(ev, names)).collect()
                };
                let mut by_date: BTreeMap<String, Vec<Row>> = BTreeMap::new();
                for row in decoded {
                    let row = row.map_err(|e| ExportError::Corruption(e.0))?;
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
        let (leaf_hash, path) = store.inclusion_proof(seq, tree_size).map_err(ExportError::from)?;
        // The bundle must verify: check our own proof before writing it.
        if !merkle::verify_inclusion(&leaf_hash, seq, tree_size, &path, &cp.root) {
            return Err(ExportError::Corruption(format!(
                "the store's inclusion proof for seq {seq} does not verify against its checkpoint; run `actlog verify`"
            )));
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

/// The seqs an export with a time window holds, in order, by SQL.
async fn select(engine: &Engine, tree_size: u64, opts: &ExportOptions<'_>) -> Result<Vec<u64>, ExportError> {
    let mut sql = format!("SELECT seq FROM events WHERE seq < {tree_size}");
    if let Some(f) = opts.from {
        sql += &format!(" AND event_time >= to_timestamp_nanos({f})");
    }
    if let Some(t) = opts.to {
        sql += &format!(" AND event_time < to_timestamp_nanos({t})");
    }
    if let Some((a, b)) = opts.seqs {
        sql += &format!(" AND seq >= {a} AND seq < {b}");
    }
    sql += " ORDER BY seq";
    let q = engine
        .query(&sql, &QueryOptions::default())
        .await
        .map_err(|e| ExportError::Ledger(format!("selecting the events: {e}")))?;
    if q.truncated {
        return Err(ExportError::Refused(format!(
            "selecting the events: more than sql_rows_max ({}) events",
            q.row_count
        )));
    }
    Ok(q.batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec()).collect())
}

/// The checkpoint a bundle is proven against, with its stored cosignatures.
fn covering_checkpoint(
    store: &actlog_store::Store,
    policy: Option<&actlog_core::witness::Policy>,
) -> Result<(u64, String), ExportError> {
    let none = || {
        ExportError::Refused(
            "the ledger has no signed checkpoint yet: `actlog serve` signs one within a second of an append".into(),
        )
    };
    let cosigned = |size: u64| -> Result<String, ExportError> {
        store
            .cosigned_checkpoint(size)
            .map_err(|e| ExportError::Ledger(format!("reading the checkpoint of size {size}: {e}")))?
            .ok_or_else(|| ExportError::Corruption(format!("the checkpoint of size {size} is missing")))
    };
    let Some(policy) = policy else {
        let (size, _) = store.latest_checkpoint().ok_or_else(none)?;
        return Ok((size, cosigned(size)?));
    };
    if policy.quorum == "none" {
        let (size, _) = store.latest_checkpoint().ok_or_else(none)?;
        let note = cosigned(size)?;
        policy.check(&note).map_err(|e| ExportError::Refused(format!("the witness policy: {e}")))?;
        return Ok((size, note));
    }
    let stored = store.cosignatures().map_err(|e| ExportError::Ledger(format!("reading cosignatures: {e}")))?;
    for size in stored.keys().rev() {
        let note = cosigned(*size)?;
        if policy.check(&note).is_ok() {
            return Ok((*size, note));
        }
    }
    Err(ExportError::Refused(format!(
        "no stored checkpoint meets the witness policy's quorum `{}`; is the server running with --witness-policy?",
        policy.quorum
    )))
}

/// Writes `checkpoint.txt`, `manifest.json` and `manifest.dsse.json` (the
/// in-toto statement over every file, signed with the ledger key `seed`)
/// into a bundle whose data files are written. Returns the manifest's bytes.
pub fn sign_bundle(out: &Path, manifest: &Manifest, seed: &[u8; 32]) -> Result<Vec<u8>, ExportError> {
    let key =
        VerifierKey::parse(&manifest.verifier_key).map_err(|e| ExportError::Refused(format!("verifier_key: {e}")))?;
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
) -> Result<(), ExportError> {
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

fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let path = dir.join(name);
    let mut f = File::create(&path).map_err(io_err(&path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err(&path))
}
