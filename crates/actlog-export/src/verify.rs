//! Offline verification of a bundle, in named steps. It trusts only the
//! ledger key:
//! 1. `signed_files`: the signed statement (`actlog_core::bundle::open_manifest`),
//!    then every file's size and SHA-256, before any data file is parsed;
//! 2. `checkpoint_file` and `trusted_checkpoint`: the checkpoint, the
//!    witness policy, and a checkpoint the caller kept;
//! 3. `leaves`: the leaves (their blake3 chain, and an inclusion proof at
//!    the end of each run, so every leaf of a run is proven by one proof),
//!    every envelope under the same rules as `actlog verify` (hashes,
//!    schema, the key or token active at its seq, the signature), and the
//!    rows they imply;
//! 4. `data_files`: every exported row against the row rebuilt from its
//!    envelope.
//!
//! Report files (evidence) are checked by hash only, in step 1; each kind of
//! report registers its files in [`crate::REPORTS`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actlog_core::Hash;
use actlog_core::bundle::{
    BundleFailure, CHECKPOINT_FILE, EVIDENCE_TABLE, FileEntry, LEAVES_FILE, MANIFEST_BYTES_MAX, MANIFEST_FILE,
    Manifest, SIGNED_MANIFEST_FILE, SignedManifest, bad, open_manifest,
};
use actlog_core::leaf::{LeafKind, key_fingerprint};
use actlog_core::ledger::{Job, KeyNames, Rebuilt, StoredEvent, Verified, check_parallel};
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::rows::{EVENTS_SCHEMA, HOPS_SCHEMA};
use actlog_core::time;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::files::{Opened, decode_hash, file_id, hash_file, list_files, open_regular, read_limited};
use crate::leaves::{CHUNK_LEAVES, LeafCheck, LeavesBatch, guarded};
use crate::{Format, ocsf};

/// `bundle_files_max`: the most files `verify` accepts in a bundle.
pub const BUNDLE_FILES_MAX: usize = 1_000_000;

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

/// Digest of each row of a batch, in the row format of its schema.
pub(crate) fn row_digests(conv: &RowConverter, batch: &RecordBatch) -> Result<Vec<[u8; 16]>, String> {
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
pub(crate) type Expected = BTreeMap<(String, String), Vec<(u64, [u8; 16])>>;

/// Verifies the bundle in `dir`. See the module docs for what is checked,
/// in the order of its steps.
pub fn verify(dir: &Path, opts: &BundleOptions<'_>) -> Result<BundleReport, BundleFailure> {
    let (signed, opened) = signed_files(dir, opts)?;
    let cp = signed.checkpoint()?;
    let SignedManifest { manifest, key, .. } = signed;
    let witnesses = checkpoint_file(&opened, &manifest, opts)?;
    let trusted = trusted_checkpoint(&key, &cp, opts)?;
    let plan = Plan::of(&manifest)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .build()
        .or_else(|e| bad(None, None, format!("cannot start threads: {e}")))?;
    let signatures = AtomicU64::new(0);
    let check = leaves(&opened, &manifest, &key, &cp, &plan, &pool, &signatures, opts)?;
    let rows = data_files(&opened, &manifest, plan.format, &check.expected, &pool)?;
    Ok(BundleReport {
        manifest,
        key_pinned: opts.expected_key.is_some(),
        leaves: check.leaves,
        signatures: signatures.load(Ordering::Relaxed),
        rows,
        trusted,
        witnesses,
    })
}

/// Step 1: the signed statement, then every file's size and hash, before
/// any data file is parsed. No file outside the manifest may be present.
fn signed_files<'a>(dir: &'a Path, opts: &BundleOptions<'_>) -> Result<(SignedManifest, Opened<'a>), BundleFailure> {
    let signed = read_limited(dir, SIGNED_MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    let manifest_bytes = read_limited(dir, MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    let signed = open_manifest(&signed, &manifest_bytes, opts.expected_key.as_ref(), crate::REPORTS)?;
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
    Ok((signed, opened))
}

/// Step 2: `checkpoint.txt` is the manifest's checkpoint, and meets the
/// witness policy if one is given; returns the witnesses that counted.
fn checkpoint_file(
    opened: &Opened<'_>,
    manifest: &Manifest,
    opts: &BundleOptions<'_>,
) -> Result<Option<Vec<String>>, BundleFailure> {
    let mut checkpoint_text = Vec::new();
    opened
        .read(CHECKPOINT_FILE)?
        .read_to_end(&mut checkpoint_text)
        .or_else(|e| bad(Some(CHECKPOINT_FILE), None, format!("cannot read: {e}")))?;
    if checkpoint_text != manifest.checkpoint.as_bytes() {
        return bad(Some(CHECKPOINT_FILE), None, "differs from the manifest's checkpoint");
    }
    match opts.policy {
        None => Ok(None),
        Some(p) => {
            let (_, _, _, by) = p
                .check(&manifest.checkpoint)
                .or_else(|e| bad(Some(CHECKPOINT_FILE), None, format!("the witness policy: {e}")))?;
            Ok(Some(by.into_keys().collect()))
        }
    }
}

/// Step 2, continued: what the checkpoint the caller trusts says about the
/// bundle's (a rewrite, if it has the same size and another root).
fn trusted_checkpoint(
    key: &VerifierKey,
    cp: &Checkpoint,
    opts: &BundleOptions<'_>,
) -> Result<Option<String>, BundleFailure> {
    let Some(note) = &opts.trusted_checkpoint else { return Ok(None) };
    let t = Checkpoint::open(note, key).or_else(|e| {
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
        Ok(Some(format!("the trusted checkpoint (tree size {}) is the bundle's", t.tree_size)))
    } else {
        Ok(Some(format!(
            "the trusted checkpoint (tree size {}) is signed by the same key; the bundle is at tree size {}: \
             compare them with `actlog prove consistency` on the ledger",
            t.tree_size, cp.tree_size
        )))
    }
}

/// What the manifest says the data files hold: their format, the window
/// and the inclusion proofs.
struct Plan {
    format: Format,
    from: Option<i64>,
    to: Option<i64>,
    proofs: HashMap<u64, (Hash, Vec<Hash>)>,
}

impl Plan {
    fn of(manifest: &Manifest) -> Result<Plan, BundleFailure> {
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
        let time_of = |t: &Option<String>, name: &str| match t {
            Some(t) => time::parse_rfc3339_utc(t).map(Some).ok_or_else(|| BundleFailure {
                file: Some(MANIFEST_FILE.into()),
                seq: None,
                reason: format!("`{name}` is not an RFC 3339 UTC time"),
            }),
            None => Ok(None),
        };
        let from = time_of(&manifest.from, "from")?;
        let to = time_of(&manifest.to, "to")?;
        let mut proofs = HashMap::new();
        for p in &manifest.proofs {
            let leaf_hash = decode_hash(MANIFEST_FILE, Some(p.seq), &p.leaf_hash)?;
            let path =
                p.hashes.iter().map(|h| decode_hash(MANIFEST_FILE, Some(p.seq), h)).collect::<Result<Vec<_>, _>>()?;
            proofs.insert(p.seq, (leaf_hash, path));
        }
        Ok(Plan { format, from, to, proofs })
    }
}

/// Step 3: the leaves (order, chain, proofs), every envelope under the
/// rules of `actlog verify`, and the rows the verified envelopes imply.
#[allow(clippy::too_many_arguments)]
fn leaves<'p>(
    opened: &Opened<'_>,
    manifest: &Manifest,
    key: &VerifierKey,
    cp: &Checkpoint,
    plan: &'p Plan,
    pool: &rayon::ThreadPool,
    signatures: &AtomicU64,
    opts: &BundleOptions<'_>,
) -> Result<LeafCheck<'p>, BundleFailure> {
    let leaves_entry = match manifest.files.iter().filter(|f| f.table == "leaves").collect::<Vec<_>>()[..] {
        [e] if e.path == LEAVES_FILE => e,
        _ => return bad(Some(MANIFEST_FILE), None, format!("must list exactly one leaves file, {LEAVES_FILE}")),
    };
    let ledger_fp = key_fingerprint(key.key.as_bytes());
    let mut check = LeafCheck {
        tree_size: manifest.tree_size,
        root: cp.root,
        first: manifest.first_seq,
        last: manifest.last_seq,
        from: plan.from,
        to: plan.to,
        proofs: &plan.proofs,
        prev: None,
        chain: [0; 32],
        rebuilt: Rebuilt::default(),
        format: plan.format,
        origin: manifest.origin.clone(),
        names: Arc::new(KeyNames::default()),
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
        let mut rows_in: Vec<(StoredEvent, Arc<KeyNames>)> = Vec::new();
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
                check.names = Arc::new(KeyNames::of(check.rebuilt.keys()));
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
        let verified: Vec<Verified> = pool
            .install(|| check_parallel(&jobs, &check.rebuilt, signatures, |v| v))
            .map_err(|f| BundleFailure { file: Some(LEAVES_FILE.into()), seq: f.seq, reason: f.reason })?
            .into_iter()
            .flatten()
            .collect();
        check.rows(pool, rows_in, verified, &ev_conv, &hop_conv)?;
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
    Ok(check)
}

/// Step 4: every data file against the rows rebuilt from the ledger.
/// Returns the rows (or lines) compared.
fn data_files(
    opened: &Opened<'_>,
    manifest: &Manifest,
    format: Format,
    expected: &Expected,
    pool: &rayon::ThreadPool,
) -> Result<u64, BundleFailure> {
    let ev_conv = converter(&EVENTS_SCHEMA);
    let hop_conv = converter(&HOPS_SCHEMA);
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
    for (key_td, want) in expected {
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
                        guarded(&f.path, || Ok(file_digests(opened, f, format, &ev_conv, &hop_conv))).and_then(|r| r);
                    (f.path.as_str(), d)
                })
                .collect()
        })
    };
    for (key_td, files) in &mut groups {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let empty = Vec::new();
        let want = expected.get(key_td).unwrap_or(&empty);
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
    Ok(rows_checked)
}

/// Digest of an OCSF line, as the mapping writes it.
pub(crate) fn line_digest(v: &serde_json::Value) -> [u8; 16] {
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
            let reader = arrow::json::ReaderBuilder::new(schema.clone())
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
