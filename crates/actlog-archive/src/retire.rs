//! Retention's last step for the query segments: a sealed segment whose
//! range has left RocksDB is retired. Its rows are read from the range's
//! archived data files from then on, and its local files go.

use std::collections::HashMap;

use actlog_query::Engine;
use actlog_query::segments::{Archived, ArchivedFile};

use crate::verify::{OBJECT_BYTES_MAX, open_record};
use crate::{Archive, ArchiveError, RECORD_BYTES_MAX, layout};

/// Retires every sealed segment wholly below the store's cold floor whose
/// range the archive holds: reads the range record (it must be signed by
/// the ledger key), fetches the range's `events` and `delegation_hops`
/// files, checks each against the hash the record lists, and hands them to
/// [`Engine::retire`], which compares them row by row with the segment
/// before it records anything. Each file is cut at its column chunks
/// ([`actlog_query::segments::cut_pieces`]), so queries can fetch and check
/// just the chunks they read. Returns the segments retired.
///
/// A segment whose range is not in the archive (the segment size changed
/// since it was archived) stays local.
pub async fn retire_segments(archive: &Archive, engine: &Engine) -> Result<u64, ArchiveError> {
    let floor = engine.store().cold_floor();
    let mut retired = 0;
    for s in engine.segments() {
        if s.archived.is_some() || s.end_seq > floor {
            continue;
        }
        let key = layout::record_key(s.first_seq, s.end_seq);
        let Some(bytes) = archive.get(&key, RECORD_BYTES_MAX).await? else {
            // Said once per segment and process, not at every archiver turn.
            static SAID: std::sync::Mutex<std::collections::BTreeSet<(u64, u64)>> =
                std::sync::Mutex::new(std::collections::BTreeSet::new());
            if SAID.lock().expect("said lock").insert((s.first_seq, s.end_seq)) {
                tracing::warn!(
                    "segment [{}, {}) has no archived range of the same bounds (the segment size changed \
                     after it was archived); it stays local",
                    s.first_seq,
                    s.end_seq
                );
            }
            continue;
        };
        let record = open_record(&bytes, engine.store().verifier_key())
            .map_err(|reason| ArchiveError::Corruption(format!("{key}: {reason}")))?;
        if (record.first_seq, record.end_seq) != (s.first_seq, s.end_seq) {
            return Err(ArchiveError::Corruption(format!("{key} names another range than its key")));
        }
        let mut archived = Archived { events: Vec::new(), hops: Vec::new() };
        let mut fetched = HashMap::new();
        for o in &record.objects {
            let table = o.bundle_path.as_deref().and_then(|p| p.split('/').next());
            let list = match table {
                Some("events") => &mut archived.events,
                Some("delegation_hops") => &mut archived.hops,
                _ => continue,
            };
            let got = archive
                .get(&o.key, OBJECT_BYTES_MAX)
                .await?
                .ok_or_else(|| ArchiveError::Corruption(format!("{} is missing from the archive", o.key)))?;
            if !o.matches(&got) {
                return Err(ArchiveError::Corruption(format!(
                    "{} does not match the hash its range record lists",
                    o.key
                )));
            }
            let got = bytes::Bytes::from(got);
            let pieces = actlog_query::segments::cut_pieces(&got)
                .map_err(|e| ArchiveError::Corruption(format!("{} {e}", o.key)))?;
            list.push(ArchivedFile { key: o.key.clone(), sha256: o.sha256.clone(), bytes: o.bytes, pieces });
            fetched.insert(o.key.clone(), got);
        }
        let engine = engine.clone();
        let (first, end) = (s.first_seq, s.end_seq);
        let done = tokio::task::spawn_blocking(move || engine.retire(first, end, archived, &fetched))
            .await
            .map_err(|e| ArchiveError::Io(format!("the retiring task failed: {e}")))?
            .map_err(|e| match e {
                actlog_query::Error::Corruption(m) => ArchiveError::Corruption(m),
                e => ArchiveError::Io(e.to_string()),
            })?;
        if done {
            tracing::info!(first, end, "segment retired: its rows are read from the archive");
            retired += 1;
        }
    }
    Ok(retired)
}
