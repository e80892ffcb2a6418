//! Uploading ranges: each a bundle exported from the ledger, its full
//! tiles, and last the signed range record.

use std::path::Path as FsPath;

use actlog_core::b64;
use actlog_core::bundle::{CHECKPOINT_FILE, MANIFEST_FILE, SIGNED_MANIFEST_FILE};
use actlog_core::dsse::Envelope;
use actlog_export::{ExportOptions, Format};
use actlog_query::Engine;
use futures::StreamExt;

use crate::{
    ARCHIVE_FORMAT, Archive, ArchiveError, Object, Previous, RANGE_PAYLOAD_TYPE, RECORD_BYTES_MAX, RangeRecord, layout,
    sha256_hex,
};

/// Objects uploaded at once.
pub const UPLOADS_IN_FLIGHT: usize = 8;

/// What one call of [`archive_ranges`] did, and where the archive ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// Ranges archived by this call.
    pub ranges: u64,
    /// Objects uploaded by this call.
    pub objects: u64,
    /// Bytes uploaded by this call.
    pub bytes: u64,
    /// One past the last archived seq (0 when nothing is archived).
    pub end_seq: u64,
}

/// Reads and checks the archive's last range record: it must be signed by
/// this ledger's key, and the ranges must follow each other from seq 0.
async fn last_range(archive: &Archive, engine: &Engine) -> Result<Option<(RangeRecord, String)>, ArchiveError> {
    let ranges = archive.ranges().await?;
    let mut next = 0;
    for &(a, b) in &ranges {
        if a != next {
            return Err(ArchiveError::Corruption(format!(
                "{}: the archived ranges do not follow each other (expected one from seq {next}); run `actlog verify --archive`",
                layout::record_key(a, b)
            )));
        }
        next = b;
    }
    let Some(&(a, b)) = ranges.last() else { return Ok(None) };
    let key = layout::record_key(a, b);
    let bytes = archive
        .get(&key, RECORD_BYTES_MAX)
        .await?
        .ok_or_else(|| ArchiveError::Io(format!("{key} was listed but cannot be read")))?;
    let vkey = engine.store().verifier_key();
    let record = crate::verify::open_record(&bytes, vkey).map_err(|reason| {
        ArchiveError::Refused(format!(
            "{key}: {reason}; an archive holds the ranges of one ledger: give this ledger an archive of its own"
        ))
    })?;
    if (record.first_seq, record.end_seq) != (a, b) {
        return Err(ArchiveError::Corruption(format!(
            "{key} names the range [{}, {})",
            record.first_seq, record.end_seq
        )));
    }
    Ok(Some((record, sha256_hex(&bytes))))
}

/// Archives every range of `range_events` seqs, aligned on multiples of
/// it, that the latest checkpoint covers and the archive does not hold yet,
/// at most `max_ranges` of them. `staging` is a local directory for the
/// bundle being written (emptied before and after each range). `seed` is the
/// ledger key.
///
/// Resumable: a range is archived once its record is written, and the
/// record is written last; a range cut short by a crash is written again
/// from the start, over whatever objects it had left.
pub async fn archive_ranges(
    archive: &Archive,
    engine: &Engine,
    seed: &[u8; 32],
    staging: &FsPath,
    range_events: u64,
    max_ranges: usize,
) -> Result<ArchiveProgress, ArchiveError> {
    assert!(range_events > 0, "ranges hold at least one seq");
    let store = engine.store().clone();
    let mut prev = last_range(archive, engine).await?;
    let mut progress = ArchiveProgress { end_seq: prev.as_ref().map_or(0, |(r, _)| r.end_seq), ..Default::default() };
    while (progress.ranges as usize) < max_ranges {
        let first = progress.end_seq;
        let end = (first / range_events + 1) * range_events;
        let covered = store.latest_checkpoint().map_or(0, |(size, _)| size);
        if end > covered {
            break;
        }
        let (record, record_bytes, objects, bytes) =
            archive_range(archive, engine, seed, staging, first, end, prev.as_ref()).await?;
        tracing::info!(first, end, objects, bytes, "archived a range");
        progress.ranges += 1;
        progress.objects += objects;
        progress.bytes += bytes;
        progress.end_seq = end;
        prev = Some((record, sha256_hex(&record_bytes)));
    }
    Ok(progress)
}

async fn archive_range(
    archive: &Archive,
    engine: &Engine,
    seed: &[u8; 32],
    staging: &FsPath,
    first: u64,
    end: u64,
    prev: Option<&(RangeRecord, String)>,
) -> Result<(RangeRecord, Vec<u8>, u64, u64), ArchiveError> {
    let store = engine.store().clone();
    let dir = staging.join(layout::range_name(first, end));
    let io = |what: &str, e: std::io::Error| ArchiveError::Io(format!("{what} {}: {e}", dir.display()));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("emptying", e)),
    }
    let opts = ExportOptions { from: None, to: None, format: Format::Parquet, policy: None, seqs: Some((first, end)) };
    let report = actlog_export::export(engine, seed, &dir, &opts, &|_, _| {}).await?;
    let manifest = report.manifest;

    // The bundle's files, then the tiles; each object is complete once put.
    let mut uploads: Vec<(Object, Vec<u8>)> = Vec::new();
    let names = [MANIFEST_FILE, SIGNED_MANIFEST_FILE, CHECKPOINT_FILE].map(str::to_string);
    for path in names.into_iter().chain(manifest.files.iter().map(|f| f.path.clone())) {
        let key = layout::bundle_key(first, end, &path).ok_or_else(|| {
            ArchiveError::Corruption(format!("the bundle names a file {path} the archive has no place for"))
        })?;
        let bytes = std::fs::read(dir.join(&path)).map_err(|e| io("reading", e))?;
        let object = Object {
            key,
            kind: "bundle".into(),
            bundle_path: Some(path),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        };
        uploads.push((object, bytes));
    }
    let from = prev.map_or(0, |(p, _)| p.end_seq);
    for tile in layout::full_tiles(from, end) {
        let bytes =
            store.tile(&tile, end).map_err(|e| ArchiveError::Io(format!("reading tile/{}: {e}", tile.path())))?;
        let object = Object {
            key: layout::tile_key(&tile),
            kind: "tile".into(),
            bundle_path: None,
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        };
        uploads.push((object, bytes));
    }
    let objects: Vec<Object> = uploads.iter().map(|(o, _)| o.clone()).collect();
    let bytes: u64 = objects.iter().map(|o| o.bytes).sum();
    let mut puts = futures::stream::iter(uploads.into_iter().map(|(o, b)| async move { archive.put(&o.key, b).await }))
        .buffer_unordered(UPLOADS_IN_FLIGHT);
    while let Some(done) = puts.next().await {
        done?;
    }

    let consistency = match prev {
        Some((p, _)) if p.tree_size > manifest.tree_size => {
            return Err(ArchiveError::Corruption(format!(
                "the latest checkpoint (tree size {}) is older than the previous range's ({})",
                manifest.tree_size, p.tree_size
            )));
        }
        Some((p, _)) if p.tree_size < manifest.tree_size => {
            store.consistency_proof(p.tree_size, manifest.tree_size).map_err(|e| {
                ArchiveError::Io(format!("the consistency proof from {} to {}: {e}", p.tree_size, manifest.tree_size))
            })?
        }
        _ => Vec::new(),
    };
    let vkey = store.verifier_key();
    let record = RangeRecord {
        format: ARCHIVE_FORMAT.into(),
        origin: vkey.name.clone(),
        verifier_key: vkey.to_text(),
        first_seq: first,
        end_seq: end,
        tree_size: manifest.tree_size,
        root_hash: manifest.root_hash.clone(),
        previous: prev.map(|(p, sha)| Previous {
            end_seq: p.end_seq,
            tree_size: p.tree_size,
            root_hash: p.root_hash.clone(),
            record_sha256: sha.clone(),
        }),
        consistency: consistency.iter().map(b64::encode).collect(),
        objects,
    };
    let payload = serde_json::to_vec(&record).expect("a range record serializes");
    let env = Envelope::sign_as(RANGE_PAYLOAD_TYPE, payload, Some(vkey.name.clone()), seed);
    let record_bytes = env.to_json().into_bytes();
    archive.put(&layout::record_key(first, end), record_bytes.clone()).await?;
    std::fs::remove_dir_all(&dir).map_err(|e| io("removing", e))?;
    let uploaded = record.objects.len() as u64 + 1;
    Ok((record, record_bytes, uploaded, bytes))
}
