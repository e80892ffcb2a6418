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
use datafusion::arrow::compute::concat_batches;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::rows::{self, Builder, EVENTS_SCHEMA, HOPS_SCHEMA};

/// The segments directory inside a data dir.
pub const SEGMENTS_DIR: &str = "segments";
/// The manifest file name.
pub const MANIFEST_FILE: &str = "manifest.json";
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

/// Reads the manifest (empty when there is none yet) and checks that it
/// describes contiguous ranges from seq 0 that the ledger has committed.
pub fn load(data_dir: &Path, tree_size: u64) -> Result<Vec<Segment>, Error> {
    let path = dir(data_dir).join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
    };
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Corruption(format!("segment manifest {} is malformed: {e}", path.display())))?;
    if m.version != 1 {
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
    let m = Manifest { version: 1, segments: segments.to_vec() };
    let bytes = serde_json::to_vec_pretty(&m).map_err(|e| Error::Io(e.to_string()))?;
    write_durably(&d, MANIFEST_FILE, &bytes)
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
    let names = store.with_registry(rows::key_names);
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
        return Err(e);
    }
    if b.len() as u64 != end - first {
        return Err(Error::Corruption(format!("the ledger returned {} events for [{first}, {end})", b.len())));
    }
    Ok(b.finish())
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

/// Events decoded at a time while sealing: the sealer holds one chunk of
/// decoded rows plus the compressed segment, never a whole segment of rows.
pub const SEAL_CHUNK_EVENTS: u64 = 8_192;

fn file_name(kind: &str, first: u64, end: u64) -> String {
    format!("{kind}-{first:020}-{end:020}.parquet")
}

/// Seals every full segment the ledger has past `sealed`, calling
/// `publish` after each one is durable (files and manifest). Returns the
/// segments list after sealing.
pub fn seal(
    store: &Store,
    data_dir: &Path,
    sealed: Vec<Segment>,
    segment_events: u64,
    publish: impl FnMut(&[Segment]),
) -> Result<Vec<Segment>, Error> {
    seal_in_chunks(store, data_dir, sealed, segment_events, SEAL_CHUNK_EVENTS, publish)
}

/// [`seal`], decoding `chunk_events` events at a time (tests use small chunks).
#[doc(hidden)]
pub fn seal_in_chunks(
    store: &Store,
    data_dir: &Path,
    mut sealed: Vec<Segment>,
    segment_events: u64,
    chunk_events: u64,
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
        let seg = write_segment(&d, first, end, chunk_events, store)?;
        sealed.push(seg);
        write_manifest(data_dir, &sealed)?;
        publish(&sealed);
    }
}

fn write_segment(d: &Path, first: u64, end: u64, chunk_events: u64, store: &Store) -> Result<Segment, Error> {
    let pq = |e: datafusion::parquet::errors::ParquetError| Error::Io(e.to_string());
    let (mut ev_bytes, mut hop_bytes) = (Vec::new(), Vec::new());
    let mut ev_w = ArrowWriter::try_new(&mut ev_bytes, EVENTS_SCHEMA.clone(), Some(writer_properties())).map_err(pq)?;
    let mut hop_w = ArrowWriter::try_new(&mut hop_bytes, HOPS_SCHEMA.clone(), Some(writer_properties())).map_err(pq)?;
    let (mut min, mut max, mut hop_rows) = (i64::MAX, i64::MIN, 0u64);
    let mut from = first;
    while from < end {
        let to = (from + chunk_events).min(end);
        let (events, hops) = build(store, from, to)?;
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
    })
}

fn read_parquet(path: &Path, expected_schema: &datafusion::arrow::datatypes::SchemaRef) -> Result<RecordBatch, String> {
    let f = fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let batches: Vec<RecordBatch> =
        reader.collect::<Result<_, _>>().map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| b.with_schema(expected_schema.clone()).map_err(|e| format!("has the wrong columns: {e}")))
        .collect::<Result<_, _>>()?;
    concat_batches(expected_schema, &batches).map_err(|e| e.to_string())
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
/// Returns the number of segments checked, or the first failure.
pub fn verify(
    store: &Store,
    data_dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Result<usize, SegmentFailure>, Error> {
    let segments = match load(data_dir, store.head().tree_size) {
        Ok(s) => s,
        Err(Error::Corruption(reason)) => return Ok(Err(SegmentFailure { first_seq: 0, reason })),
        Err(e) => return Err(e),
    };
    let d = dir(data_dir);
    for s in &segments {
        let fail = |reason: String| Ok(Err(SegmentFailure { first_seq: s.first_seq, reason }));
        for (file, hash) in [(&s.events_file, &s.events_blake3), (&s.hops_file, &s.hops_blake3)] {
            match fs::read(d.join(file)) {
                Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() == hash => {}
                Ok(_) => return fail(format!("segment file {file} does not match its recorded blake3 hash")),
                Err(e) => return fail(format!("segment file {file} cannot be read: {e}")),
            }
        }
        let (events, hops) = build(store, s.first_seq, s.end_seq)?;
        for (file, expected, schema) in
            [(&s.events_file, &events, &*EVENTS_SCHEMA), (&s.hops_file, &hops, &*HOPS_SCHEMA)]
        {
            let got = match read_parquet(&d.join(file), schema) {
                Ok(b) => b,
                Err(e) => return fail(format!("segment file {file} {e}")),
            };
            if got.num_rows() != expected.num_rows() {
                return fail(format!(
                    "segment file {file} has {} rows; the ledger has {}",
                    got.num_rows(),
                    expected.num_rows()
                ));
            }
            for (i, field) in schema.fields().iter().enumerate() {
                if got.column(i).as_ref() != expected.column(i).as_ref() {
                    return fail(format!("segment file {file}: column `{}` differs from the ledger", field.name()));
                }
            }
        }
        let last = store.event(s.end_seq - 1)?;
        if last.map(|e| actlog_core::b64::encode(e.chain_hash)).as_deref() != Some(s.end_chain_hash.as_str()) {
            return fail("the recorded end chain hash differs from the ledger".into());
        }
        progress(s.rows);
    }
    Ok(Ok(segments.len()))
}

/// Shared handle to a sealed segment list.
pub type Segments = Arc<Vec<Segment>>;
