//! Sealed segments: immutable Parquet files of `events` and
//! `delegation_hops` rows, each covering a fixed `seq` range.
//!
//! Segments are derived data. The ledger in RocksDB stays the source of
//! truth; a segment can always be rebuilt from it, and [`verify`] checks
//! that every segment still equals what the ledger says.
//!
//! On disk, in `<data>/segments/`:
//! - `events-<first>-<end>.parquet` and `hops-<first>-<end>.parquet` for
//!   the seq range `[first, end)` (20-digit zero-padded decimals);
//! - `manifest.json`: every sealed segment with its range, row counts,
//!   `event_time` bounds, the chain hash at its last event, and the blake3
//!   hash of each file. It is replaced atomically (write, fsync, rename).
//!
//! A file written but not yet in the manifest (a crash between the two) is
//! ignored and overwritten by the next seal.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actlog_store::Store;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::rows::{self, Builder, EVENTS_SCHEMA, HOPS_SCHEMA};

/// The segments directory inside a data dir.
pub const SEGMENTS_DIR: &str = "segments";
/// The manifest file name.
pub const SEGMENTS_MANIFEST_FILE: &str = "manifest.json";
/// Where queries address segment files: an object store rooted at the
/// segments directory, so plans and `EXPLAIN` name `actlog://segments/FILE`
/// and never the data directory's path.
pub const SEGMENTS_URL: &str = "actlog://segments/";
/// Events per sealed segment, by default. The live tail holds at most about
/// this many rows in memory before the next seal.
pub const SEGMENT_EVENTS_DEFAULT: u64 = 65_536;
/// Rows per Parquet row group: a default segment is one row group, so a scan
/// opens and decompresses fewer column chunks; inside a segment, page
/// statistics prune.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// One sealed segment, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// First seq it covers.
    pub first_seq: u64,
    /// One past the last seq it covers.
    pub end_seq: u64,
    /// `events` rows (always `end_seq - first_seq`).
    pub rows: u64,
    /// `delegation_hops` rows.
    pub hop_rows: u64,
    /// Smallest `event_time`, unix nanos.
    pub min_event_time: i64,
    /// Largest `event_time`, unix nanos.
    pub max_event_time: i64,
    /// Base64 chain hash after its last event.
    pub end_chain_hash: String,
    /// The events file name.
    pub events_file: String,
    /// Hex blake3 of the events file.
    pub events_blake3: String,
    /// Its size in bytes.
    pub events_bytes: u64,
    /// The hops file name.
    pub hops_file: String,
    /// Hex blake3 of the hops file.
    pub hops_blake3: String,
    /// Its size in bytes.
    pub hops_bytes: u64,
    /// Set once the segment is retired (`serve --hot-retention`): its rows
    /// are read from these archived files, and its local files are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Archived>,
}

/// The archived data files that hold a retired segment's rows: the
/// `events` and `delegation_hops` Parquet files of its range, split by date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    /// The `events` files.
    pub events: Vec<ArchivedFile>,
    /// The `delegation_hops` files.
    pub hops: Vec<ArchivedFile>,
}

/// One archived file, pinned by the hash its signed range record lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// Its key, relative to the archive's root.
    pub key: String,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// The file cut where its Parquet column chunks start and end, so a
    /// query fetches and checks only the pieces it reads: base64 of 20
    /// bytes a piece, in file order (its length, big-endian `u32`, then the
    /// first 16 bytes of its BLAKE3). Made at retirement from the checked
    /// whole file ([`cut_pieces`]). Empty: the file is read whole.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pieces: String,
}

/// Bytes of one entry of [`ArchivedFile::pieces`].
pub const PIECE_ENTRY_BYTES: usize = 20;

/// Cuts a Parquet file where its column chunks start and end (so every
/// column chunk is one piece, and the footer with what follows the last
/// chunk another), and encodes the pieces as [`ArchivedFile::pieces`] does.
pub fn cut_pieces(bytes: &bytes::Bytes) -> Result<String, String> {
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(|e| format!("is not a readable Parquet file: {e}"))?;
    let len = bytes.len() as u64;
    let mut bounds = std::collections::BTreeSet::from([0, len]);
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let (Ok(start), Ok(size)) = (u64::try_from(start), u64::try_from(c.compressed_size())) else {
                return Err("names a column chunk at a negative offset".into());
            };
            let end = start.checked_add(size).filter(|e| *e <= len).ok_or("names a column chunk past its end")?;
            bounds.insert(start);
            bounds.insert(end);
        }
    }
    let bounds: Vec<u64> = bounds.into_iter().collect();
    let mut out = Vec::with_capacity((bounds.len() - 1) * PIECE_ENTRY_BYTES);
    for w in bounds.windows(2) {
        let piece = &bytes[w[0] as usize..w[1] as usize];
        let n = u32::try_from(piece.len()).map_err(|_| "has a column chunk of 4 GiB or more")?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&blake3::hash(piece).as_bytes()[..16]);
    }
    Ok(actlog_core::b64::encode(&out))
}

/// One piece of an archived file: its byte range and its pinned hash prefix.
pub type Piece = (std::ops::Range<u64>, [u8; 16]);

/// [`ArchivedFile::pieces`] decoded: each piece's byte range and pinned
/// hash prefix, covering the file's `bytes` exactly. `None` when it has none.
pub fn decode_pieces(f: &ArchivedFile) -> Result<Option<Vec<Piece>>, String> {
    if f.pieces.is_empty() {
        return Ok(None);
    }
    let raw = actlog_core::b64::decode(&f.pieces).ok_or_else(|| format!("the pieces of {} are not base64", f.key))?;
    if raw.len() % PIECE_ENTRY_BYTES != 0 {
        return Err(format!("the pieces of {} are cut short", f.key));
    }
    let mut at = 0u64;
    let mut out = Vec::with_capacity(raw.len() / PIECE_ENTRY_BYTES);
    for e in raw.chunks_exact(PIECE_ENTRY_BYTES) {
        let n = u64::from(u32::from_be_bytes(e[..4].try_into().expect("4 bytes")));
        out.push((at..at + n, e[4..].try_into().expect("16 bytes")));
        at += n;
    }
    if at != f.bytes || out.iter().any(|(r, _)| r.is_empty()) {
        return Err(format!("the pieces of {} do not cover its {} bytes", f.key, f.bytes));
    }
    Ok(Some(out))
}

/// Checks that `bytes` are `f`'s: its size, and each of its pieces.
fn check_pieces(f: &ArchivedFile, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() as u64 != f.bytes {
        return Err(format!("{} holds {} bytes, not {}", f.key, bytes.len(), f.bytes));
    }
    for (r, pin) in decode_pieces(f)?.unwrap_or_default() {
        if blake3::hash(&bytes[r.start as usize..r.end as usize]).as_bytes()[..16] != pin {
            return Err(format!("the piece at byte {} of {} does not match its pinned hash", r.start, f.key));
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    segments: Vec<Segment>,
}

/// The segments directory of a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SEGMENTS_DIR)
}

/// The manifest's format. Version 3 may list retired segments, whose rows
/// are in the archive ([`Archived`]). Version 2 names `producer_key` by the
/// key registration active at each event's seq (`rows::KeyNames`); version
/// 1 named every event after the newest registration of its key.
const MANIFEST_VERSION: u32 = 3;

/// Reads the manifest (empty when there is none yet) and checks that it
/// describes contiguous ranges from seq 0 that `store` has committed.
///
/// A version-1 manifest is still read where both naming rules agree: when
/// no public key was registered twice. Otherwise its segments are dropped
/// (segments are derived data) and sealing writes them again.
pub fn load(store: &Store, data_dir: &Path) -> Result<Vec<Segment>, Error> {
    let tree_size = store.head().tree_size;
    let path = dir(data_dir).join(SEGMENTS_MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
    };
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Corruption(format!("segment manifest {} is malformed: {e}", path.display())))?;
    if m.version == 1 && store.with_registry(|r| r.any_key_registered_twice()) {
        tracing::warn!(
            "the segments were sealed by a build that named producer keys differently; \
             they are sealed again from the ledger"
        );
        return Ok(Vec::new());
    }
    if !(1..=MANIFEST_VERSION).contains(&m.version) {
        return Err(Error::Corruption(format!("segment manifest version {} is not supported", m.version)));
    }
    let mut next = 0;
    for s in &m.segments {
        if s.first_seq != next || s.end_seq <= s.first_seq || s.rows != s.end_seq - s.first_seq {
            return Err(Error::Corruption(format!(
                "segment manifest: segment [{}, {}) does not follow seq {next}",
                s.first_seq, s.end_seq
            )));
        }
        next = s.end_seq;
    }
    // A reader that opened the ledger read-only beside a running server may
    // see a manifest written after its view of the ledger: segments past its
    // tree size are not part of its view. (Whether segments belong to this
    // ledger at all is what `verify` checks, row by row.)
    Ok(m.segments.into_iter().filter(|s| s.end_seq <= tree_size).collect())
}

fn write_manifest(data_dir: &Path, segments: &[Segment]) -> Result<(), Error> {
    let d = dir(data_dir);
    // Version 2 until a segment is retired, so a build that knows only
    // version 2 can still read it.
    let version = if segments.iter().any(|s| s.archived.is_some()) { MANIFEST_VERSION } else { 2 };
    let m = Manifest { version, segments: segments.to_vec() };
    let bytes = serde_json::to_vec_pretty(&m).map_err(|e| Error::Io(e.to_string()))?;
    write_durably(&d, SEGMENTS_MANIFEST_FILE, &bytes)
}

/// Writes `name` in `d` through a temporary file, fsyncs it, renames it into
/// place and fsyncs the directory.
fn write_durably(d: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io(format!("writing {}: {e}", d.join(name).display()));
    let tmp = d.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, d.join(name)).map_err(io)?;
    fs::File::open(d).and_then(|f| f.sync_all()).map_err(io)?;
    Ok(())
}

/// Reads `[first, end)` from the ledger as `events` and `hops` batches.
pub fn build(store: &Store, first: u64, end: u64) -> Result<(RecordBatch, RecordBatch), Error> {
    let names = store.with_registry(|r| r.key_names());
    let mut b = Builder::default();
    let mut err = None;
    store.scan(first, end, |ev| {
        if err.is_none() {
            match rows::decode(&ev, &names) {
                Ok(r) => b.push(&r),
                Err(e) => err = Some(e),
            }
        }
        Ok(())
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    if b.len() as u64 != end - first {
        return Err(Error::Corruption(format!("the ledger returned {} events for [{first}, {end})", b.len())));
    }
    Ok(b.finish())
}

/// Columns written without compression: few distinct values, so their
/// dictionary-encoded pages are small already (Zstandard saved 2-18% on
/// them), and scans filter and group on them, where a decompression
/// context per column chunk cost more than reading the extra bytes.
pub const UNCOMPRESSED_COLUMNS: &[&str] = &[
    "event_type",
    "pdp_id",
    "producer_key",
    "principal_type",
    "principal_iss",
    "actor_iss",
    "actor_profile",
    "actor_model",
    "chain_depth",
    "verification_status",
    "purpose_scope",
    "trust_level",
    "policy_version",
    "decision_path",
    "action",
    "resource_type",
    "tool_name",
    "tool_server",
    "effect",
    "outcome_status",
    "source_format",
    "producer_key_id",
    "actor_id",
    "principal_id",
];

fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page);
    for c in UNCOMPRESSED_COLUMNS {
        b = b.set_column_compression(ColumnPath::from(*c), Compression::UNCOMPRESSED);
    }
    b.build()
}

/// Events decoded at a time while sealing: the sealer holds one chunk of
/// decoded rows plus the compressed segment, never a whole segment of rows.
pub const SEAL_CHUNK_EVENTS: u64 = 8_192;

fn file_name(kind: &str, first: u64, end: u64) -> String {
    format!("{kind}-{first:020}-{end:020}.parquet")
}

/// The rows of `[first, end)` in the segment schema, when something already
/// holds them decoded (the engine's tail); `None` reads them from the ledger.
pub type Decoded<'a> = &'a dyn Fn(u64, u64) -> Option<(RecordBatch, RecordBatch)>;

/// Seals every full segment the ledger has past `sealed`, calling
/// `publish` after each one is durable (files and manifest). Rows come from
/// `decoded` where it has them, else from the ledger. Returns the segments
/// list after sealing.
pub fn seal(
    store: &Store,
    data_dir: &Path,
    sealed: Vec<Segment>,
    segment_events: u64,
    decoded: Decoded<'_>,
    publish: impl FnMut(&[Segment]),
) -> Result<Vec<Segment>, Error> {
    seal_in_chunks(store, data_dir, sealed, segment_events, SEAL_CHUNK_EVENTS, decoded, publish)
}

/// [`seal`], decoding `chunk_events` events at a time (tests use small chunks).
#[doc(hidden)]
pub fn seal_in_chunks(
    store: &Store,
    data_dir: &Path,
    mut sealed: Vec<Segment>,
    segment_events: u64,
    chunk_events: u64,
    decoded: Decoded<'_>,
    mut publish: impl FnMut(&[Segment]),
) -> Result<Vec<Segment>, Error> {
    assert!(segment_events > 0 && chunk_events > 0, "segment and chunk sizes are positive");
    let d = dir(data_dir);
    fs::create_dir_all(&d).map_err(|e| Error::Io(format!("creating {}: {e}", d.display())))?;
    loop {
        let first = sealed.last().map_or(0, |s| s.end_seq);
        let end = first + segment_events;
        if store.head().tree_size < end {
            return Ok(sealed);
        }
        let seg = write_segment(&d, first, end, chunk_events, store, decoded)?;
        sealed.push(seg);
        write_manifest(data_dir, &sealed)?;
        publish(&sealed);
    }
}

fn write_segment(
    d: &Path,
    first: u64,
    end: u64,
    chunk_events: u64,
    store: &Store,
    decoded: Decoded<'_>,
) -> Result<Segment, Error> {
    let pq = |e: datafusion::parquet::errors::ParquetError| Error::Io(e.to_string());
    let (mut ev_bytes, mut hop_bytes) = (Vec::new(), Vec::new());
    let mut ev_w = ArrowWriter::try_new(&mut ev_bytes, EVENTS_SCHEMA.clone(), Some(writer_properties())).map_err(pq)?;
    let mut hop_w = ArrowWriter::try_new(&mut hop_bytes, HOPS_SCHEMA.clone(), Some(writer_properties())).map_err(pq)?;
    let (mut min, mut max, mut hop_rows) = (i64::MAX, i64::MIN, 0u64);
    let mut from = first;
    while from < end {
        let to = (from + chunk_events).min(end);
        let (events, hops) = match decoded(from, to) {
            Some(rows) => rows,
            None => build(store, from, to)?,
        };
        let times = events
            .column_by_name("event_time")
            .and_then(|c| c.as_any().downcast_ref::<datafusion::arrow::array::TimestampNanosecondArray>())
            .ok_or_else(|| Error::Corruption("event_time column is missing".into()))?;
        min = min.min(datafusion::arrow::compute::min(times).unwrap_or(i64::MAX));
        max = max.max(datafusion::arrow::compute::max(times).unwrap_or(i64::MIN));
        hop_rows += hops.num_rows() as u64;
        ev_w.write(&events).map_err(pq)?;
        hop_w.write(&hops).map_err(pq)?;
        from = to;
    }
    ev_w.close().map_err(pq)?;
    hop_w.close().map_err(pq)?;
    assert!(min <= max, "a segment holds at least one event");
    let last = store.event(end - 1)?.ok_or_else(|| Error::Corruption(format!("event {} is missing", end - 1)))?;
    let (ef, hf) = (file_name("events", first, end), file_name("hops", first, end));
    write_durably(d, &ef, &ev_bytes)?;
    write_durably(d, &hf, &hop_bytes)?;
    Ok(Segment {
        first_seq: first,
        end_seq: end,
        rows: end - first,
        hop_rows,
        min_event_time: min,
        max_event_time: max,
        end_chain_hash: actlog_core::b64::encode(last.chain_hash),
        events_file: ef,
        events_blake3: blake3::hash(&ev_bytes).to_hex().to_string(),
        events_bytes: ev_bytes.len() as u64,
        hops_file: hf,
        hops_blake3: blake3::hash(&hop_bytes).to_hex().to_string(),
        hops_bytes: hop_bytes.len() as u64,
        archived: None,
    })
}

/// The rows of one segment file, read a batch at a time and compared with
/// the rows rebuilt from the ledger, so a check holds one chunk of each side
/// in memory rather than a whole segment.
struct FileRows {
    reader: datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// Rows read from the file but not yet compared.
    pending: Option<RecordBatch>,
    /// Rows the file's footer says it holds.
    rows: u64,
}

impl FileRows {
    fn open(
        path: &Path,
        schema: &datafusion::arrow::datatypes::SchemaRef,
        batch_rows: u64,
    ) -> Result<FileRows, String> {
        let f = fs::File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| format!("is not a readable Parquet file: {e}"))?
            .with_batch_size(batch_rows as usize);
        let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let reader = builder.build().map_err(|e| format!("is not a readable Parquet file: {e}"))?;
        Ok(FileRows { reader, schema: schema.clone(), pending: None, rows })
    }

    /// Compares the file's next `expected.num_rows()` rows with `expected`.
    fn expect(&mut self, expected: &RecordBatch) -> Result<(), String> {
        let mut done = 0;
        while done < expected.num_rows() {
            let batch = match self.pending.take() {
                Some(b) => b,
                None => match self.reader.next() {
                    Some(Ok(b)) => {
                        b.with_schema(self.schema.clone()).map_err(|e| format!("has the wrong columns: {e}"))?
                    }
                    Some(Err(e)) => return Err(format!("is not a readable Parquet file: {e}")),
                    None => return Err("ends before the ledger's rows do".into()),
                },
            };
            let n = (expected.num_rows() - done).min(batch.num_rows());
            let (got, want) = (batch.slice(0, n), expected.slice(done, n));
            for (i, field) in self.schema.fields().iter().enumerate() {
                if got.column(i).as_ref() != want.column(i).as_ref() {
                    return Err(format!("column `{}` differs from the ledger", field.name()));
                }
            }
            if n < batch.num_rows() {
                self.pending = Some(batch.slice(n, batch.num_rows() - n));
            }
            done += n;
        }
        Ok(())
    }

    /// Every row was compared: nothing is left in the file.
    fn finish(mut self) -> Result<(), String> {
        let more = self.pending.take().is_some_and(|b| b.num_rows() > 0)
            || self.reader.any(|b| b.map_or(true, |b| b.num_rows() > 0));
        if more { Err("holds more rows than the ledger".into()) } else { Ok(()) }
    }
}

/// One failed segment check.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFailure {
    /// The segment's first seq.
    pub first_seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Checks every sealed segment against the ledger: the file hashes match
/// the manifest, and the rows equal the rows rebuilt from the ledger.
/// Returns the number of segments checked, or the first failure (in seq
/// order). Segments are checked on every core, one segment per worker at a
/// time; `progress` gets each checked segment's row count.
pub fn verify(
    store: &Store,
    data_dir: &Path,
    progress: impl FnMut(u64) + Send,
) -> Result<Result<usize, SegmentFailure>, Error> {
    check(store, data_dir, &SegmentCheck::default(), progress)
}

/// The quick check of `actlog verify --no-signatures`: each segment's files
/// match the hashes and row counts in the manifest, and the manifest's end
/// chain hash matches the ledger. Rows are not rebuilt, so a file rewritten
/// together with its manifest entry passes this check and fails [`verify`].
pub fn verify_files(
    store: &Store,
    data_dir: &Path,
    progress: impl FnMut(u64) + Send,
) -> Result<Result<usize, SegmentFailure>, Error> {
    check(store, data_dir, &SegmentCheck { rows: false, ..SegmentCheck::default() }, progress)
}

/// How [`check`] checks the sealed segments.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    /// The archive, rooted at its prefix: with it, the full check also
    /// compares retired segments' archived files with the ledger.
    pub archive: Option<Arc<dyn object_store::ObjectStore>>,
    /// Rebuild every row from the ledger and compare it (the full check);
    /// when false, only the files against the manifest ([`verify_files`]).
    pub rows: bool,
    /// Worker threads, each checking one segment at a time (0 = all cores).
    pub jobs: usize,
    /// Events rebuilt and compared at a time (tests use small chunks so that
    /// file batches and ledger chunks fall out of step).
    pub chunk_events: u64,
}

impl Default for SegmentCheck {
    fn default() -> Self {
        SegmentCheck { rows: true, jobs: 0, chunk_events: VERIFY_CHUNK_EVENTS, archive: None }
    }
}

/// [`verify`] or [`verify_files`] with explicit options.
pub fn check(
    store: &Store,
    data_dir: &Path,
    opts: &SegmentCheck,
    progress: impl FnMut(u64) + Send,
) -> Result<Result<usize, SegmentFailure>, Error> {
    let segments = match load(store, data_dir) {
        Ok(s) => s,
        Err(Error::Corruption(reason)) => return Ok(Err(SegmentFailure { first_seq: 0, reason })),
        Err(e) => return Err(e),
    };
    let d = dir(data_dir);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = if opts.jobs == 0 { cores } else { opts.jobs }.min(segments.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let progress = std::sync::Mutex::new(progress);
    let results: Vec<std::sync::Mutex<Option<CheckResult>>> =
        segments.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                use std::sync::atomic::Ordering;
                // Workers take segments in seq order, so every segment before
                // a failing one is checked before the workers stop.
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(s) = segments.get(i) else { break };
                    let r = verify_one(store, &d, s, opts);
                    match &r {
                        Ok(Ok(())) => (progress.lock().expect("progress lock"))(s.rows),
                        _ => stop.store(true, Ordering::Relaxed),
                    }
                    *results[i].lock().expect("result lock") = Some(r);
                }
            });
        }
    });
    for r in results {
        match r.into_inner().expect("result lock") {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(f))) => return Ok(Err(f)),
            Some(Err(e)) => return Err(e),
            // Not reached: a failure earlier in seq order stopped the workers.
            None => break,
        }
    }
    Ok(Ok(segments.len()))
}

type CheckResult = Result<Result<(), SegmentFailure>, Error>;

/// Events rebuilt from the ledger and compared at a time by [`verify`].
pub const VERIFY_CHUNK_EVENTS: u64 = SEAL_CHUNK_EVENTS;

fn verify_one(store: &Store, d: &Path, s: &Segment, opts: &SegmentCheck) -> CheckResult {
    let fail = |reason: String| Ok(Err(SegmentFailure { first_seq: s.first_seq, reason }));
    if let Some(a) = &s.archived {
        return verify_retired(store, s, a, opts);
    }
    for (file, hash) in [(&s.events_file, &s.events_blake3), (&s.hops_file, &s.hops_blake3)] {
        let mut h = blake3::Hasher::new();
        match fs::File::open(d.join(file)).and_then(|mut f| std::io::copy(&mut f, &mut h)) {
            Ok(_) if h.finalize().to_hex().as_str() == hash => {}
            Ok(_) => return fail(format!("segment file {file} does not match its recorded blake3 hash")),
            Err(e) => return fail(format!("segment file {file} cannot be read: {e}")),
        }
    }
    let chunk_events = opts.chunk_events.max(1);
    let mut events = match FileRows::open(&d.join(&s.events_file), &EVENTS_SCHEMA, chunk_events) {
        Ok(r) => r,
        Err(e) => return fail(format!("segment file {} {e}", s.events_file)),
    };
    let mut hops = match FileRows::open(&d.join(&s.hops_file), &HOPS_SCHEMA, chunk_events) {
        Ok(r) => r,
        Err(e) => return fail(format!("segment file {} {e}", s.hops_file)),
    };
    if events.rows != s.end_seq - s.first_seq {
        return fail(format!(
            "segment file {} has {} rows; the ledger has {}",
            s.events_file,
            events.rows,
            s.end_seq - s.first_seq
        ));
    }
    if !opts.rows {
        if hops.rows != s.hop_rows {
            return fail(format!(
                "segment file {} has {} rows; the manifest says {}",
                s.hops_file, hops.rows, s.hop_rows
            ));
        }
        return check_end_chain_hash(store, s);
    }
    let mut hop_rows = 0u64;
    let mut from = s.first_seq;
    while from < s.end_seq {
        let to = (from + chunk_events).min(s.end_seq);
        let (want_events, want_hops) = build(store, from, to)?;
        hop_rows += want_hops.num_rows() as u64;
        for (file, rows, want) in [(&s.events_file, &mut events, &want_events), (&s.hops_file, &mut hops, &want_hops)] {
            if let Err(e) = rows.expect(want) {
                return fail(format!("segment file {file}: {e}"));
            }
        }
        from = to;
    }
    if hops.rows != hop_rows {
        return fail(format!("segment file {} has {} rows; the ledger has {hop_rows}", s.hops_file, hops.rows));
    }
    for (file, rows) in [(&s.events_file, events), (&s.hops_file, hops)] {
        if let Err(e) = rows.finish() {
            return fail(format!("segment file {file} {e}"));
        }
    }
    check_end_chain_hash(store, s)
}

fn check_end_chain_hash(store: &Store, s: &Segment) -> CheckResult {
    let last = store.event(s.end_seq - 1)?;
    if last.map(|e| actlog_core::b64::encode(e.chain_hash)).as_deref() != Some(s.end_chain_hash.as_str()) {
        return Ok(Err(SegmentFailure {
            first_seq: s.first_seq,
            reason: "the recorded end chain hash differs from the ledger".into(),
        }));
    }
    Ok(Ok(()))
}

/// Shared handle to a sealed segment list.
pub type Segments = Arc<Vec<Segment>>;

/// The local files of a segment, by name.
pub fn local_files(s: &Segment) -> [&str; 2] {
    [&s.events_file, &s.hops_file]
}

/// The rows of a set of archived Parquet files of one table, handed out in
/// seq order a chunk at a time. Each file holds ascending seqs, and the
/// files hold disjoint sets of them (a range's rows are split by date), so
/// rows are ordered on `(seq, batch, row)`, which keeps the rows of one seq
/// (several in `delegation_hops`) in the order they were written.
struct ArchivedRows {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    at: usize,
}

impl ArchivedRows {
    fn open(
        files: &[ArchivedFile],
        fetched: &std::collections::HashMap<String, bytes::Bytes>,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<ArchivedRows, String> {
        use datafusion::arrow::array::UInt64Array;
        let mut batches = Vec::new();
        for f in files {
            let bytes = fetched.get(&f.key).ok_or_else(|| format!("{} was not fetched", f.key))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .and_then(|b| b.with_batch_size(SEAL_CHUNK_EVENTS as usize).build())
                .map_err(|e| format!("{} is not a readable Parquet file: {e}", f.key))?;
            for b in reader {
                let b = b.map_err(|e| format!("{} is not a readable Parquet file: {e}", f.key))?;
                batches
                    .push(b.with_schema(schema.clone()).map_err(|e| format!("{} has the wrong columns: {e}", f.key))?);
            }
        }
        let mut keyed: Vec<(u64, usize, usize)> = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let seqs = b.column(0).as_any().downcast_ref::<UInt64Array>().ok_or("seq is not UInt64")?;
            keyed.extend(seqs.values().iter().enumerate().map(|(row, seq)| (*seq, i, row)));
        }
        keyed.sort_unstable();
        Ok(ArchivedRows { batches, order: keyed.into_iter().map(|(_, b, r)| (b, r)).collect(), at: 0 })
    }

    fn rows(&self) -> usize {
        self.order.len()
    }

    /// The next `n` rows (fewer at the end).
    fn next(&mut self, n: usize) -> Result<Option<RecordBatch>, String> {
        let end = (self.at + n).min(self.order.len());
        if end == self.at {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let chunk = datafusion::arrow::compute::interleave_record_batch(&refs, &self.order[self.at..end])
            .map_err(|e| format!("merging the archived files: {e}"))?;
        self.at = end;
        Ok(Some(chunk))
    }
}

/// Checks that the archived files hold exactly the rows of the sealed
/// segment `s` (its local files in `d`), row for row and column for column,
/// a chunk at a time.
pub fn compare_archived(
    d: &Path,
    s: &Segment,
    archived: &Archived,
    fetched: &std::collections::HashMap<String, bytes::Bytes>,
) -> Result<(), String> {
    let tables = [
        ("events", &archived.events, &EVENTS_SCHEMA, &s.events_file, s.end_seq - s.first_seq),
        ("delegation_hops", &archived.hops, &HOPS_SCHEMA, &s.hops_file, s.hop_rows),
    ];
    for (table, files, schema, local, rows) in tables {
        for f in files.iter() {
            check_pieces(f, fetched.get(&f.key).ok_or_else(|| format!("{} was not fetched", f.key))?)?;
        }
        let mut got = ArchivedRows::open(files, fetched, schema)?;
        if got.rows() as u64 != rows {
            return Err(format!("the archived {table} files hold {} rows; the segment holds {rows}", got.rows()));
        }
        let mut want = FileRows::open(&d.join(local), schema, SEAL_CHUNK_EVENTS)
            .map_err(|e| format!("segment file {local} {e}"))?;
        while let Some(chunk) = got.next(SEAL_CHUNK_EVENTS as usize)? {
            want.expect(&chunk)
                .map_err(|e| format!("the archived {table} files differ from segment file {local}: {e}"))?;
        }
        want.finish().map_err(|e| format!("segment file {local} {e}"))?;
    }
    Ok(())
}

/// What a retired segment's manifest entry must look like: an `events`
/// file at least, every key in its table's hive folder and named after the
/// segment's range, none twice.
fn check_archived_entry(s: &Segment, a: &Archived) -> Result<(), String> {
    if a.events.is_empty() {
        return Err("the manifest lists no archived events file for it".into());
    }
    let range = format!("/{:020}-{:020}-", s.first_seq, s.end_seq);
    let mut seen = std::collections::BTreeSet::new();
    for (table, files) in [("events", &a.events), ("delegation_hops", &a.hops)] {
        for f in files {
            if !f.key.starts_with(&format!("{table}/date=")) || !f.key.contains(&range) {
                return Err(format!("the manifest lists {} as one of its archived {table} files", f.key));
            }
            if !seen.insert(&f.key) {
                return Err(format!("the manifest lists {} twice", f.key));
            }
        }
    }
    Ok(())
}

/// A retired segment checked against the ledger: its manifest entry's
/// shape, and, with the archive (`opts.archive`), every archived file
/// against its pinned hash and every row against the rows rebuilt from the
/// ledger (whose leaves below the floor are read, checked, from the archive).
fn verify_retired(store: &Store, s: &Segment, a: &Archived, opts: &SegmentCheck) -> CheckResult {
    let fail = |reason: String| Ok(Err(SegmentFailure { first_seq: s.first_seq, reason }));
    if let Err(e) = check_archived_entry(s, a) {
        return fail(e);
    }
    let Some(archive) = opts.archive.as_ref().filter(|_| opts.rows) else {
        return check_end_chain_hash(store, s);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("starting a runtime to read the archive: {e}")))?;
    let mut fetched = std::collections::HashMap::new();
    for f in a.events.iter().chain(&a.hops) {
        use object_store::ObjectStoreExt;
        let got = rt.block_on(async {
            let g = archive.get(&object_store::path::Path::from(f.key.as_str())).await?;
            if g.meta.size != f.bytes {
                return Ok(None);
            }
            g.bytes().await.map(Some)
        });
        let bytes = match got {
            Ok(Some(b)) => b,
            Ok(None) => return fail(format!("the archived file {} does not have the size the manifest pins", f.key)),
            Err(e) => return fail(format!("the archived file {} cannot be read: {e}", f.key)),
        };
        use sha2::Digest;
        if hex::encode(sha2::Sha256::digest(&bytes)) != f.sha256 {
            return fail(format!("the archived file {} does not match the SHA-256 the manifest pins", f.key));
        }
        if let Err(e) = check_pieces(f, &bytes) {
            return fail(e);
        }
        fetched.insert(f.key.clone(), bytes);
    }
    let open = |files, schema| ArchivedRows::open(files, &fetched, schema);
    let (mut events, mut hops) = match (open(&a.events, &EVENTS_SCHEMA), open(&a.hops, &HOPS_SCHEMA)) {
        (Ok(e), Ok(h)) => (e, h),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if events.rows() as u64 != s.end_seq - s.first_seq || hops.rows() as u64 != s.hop_rows {
        return fail(format!(
            "the archived files hold {} events and {} hops rows; the segment holds {} and {}",
            events.rows(),
            hops.rows(),
            s.end_seq - s.first_seq,
            s.hop_rows
        ));
    }
    let chunk_events = opts.chunk_events.max(1);
    let mut from = s.first_seq;
    while from < s.end_seq {
        let to = (from + chunk_events).min(s.end_seq);
        let (want_events, want_hops) = build(store, from, to)?;
        for (table, rows, want) in [("events", &mut events, &want_events), ("delegation_hops", &mut hops, &want_hops)] {
            let got = match rows.next(want.num_rows()) {
                Ok(Some(b)) => b,
                Ok(None) if want.num_rows() == 0 => continue,
                Ok(None) => return fail(format!("the archived {table} files end before the ledger's rows do")),
                Err(e) => return fail(e),
            };
            let same = got.num_rows() == want.num_rows()
                && (0..want.num_columns()).all(|i| got.column(i).as_ref() == want.column(i).as_ref());
            if !same {
                return fail(format!("the archived {table} files differ from the ledger's rows of [{from}, {to})"));
            }
        }
        from = to;
    }
    check_end_chain_hash(store, s)
}

/// Marks segment `[first, end)` as retired to `archived` in the manifest
/// (durably) and returns the new list. The caller deletes its local files
/// once no running query can still be reading them.
pub fn retire(
    data_dir: &Path,
    sealed: &[Segment],
    first: u64,
    end: u64,
    archived: Archived,
) -> Result<Vec<Segment>, Error> {
    let mut next = sealed.to_vec();
    let s = next
        .iter_mut()
        .find(|s| s.first_seq == first && s.end_seq == end)
        .ok_or_else(|| Error::Io(format!("no sealed segment covers [{first}, {end})")))?;
    s.archived = Some(archived);
    write_manifest(data_dir, &next)?;
    Ok(next)
}
