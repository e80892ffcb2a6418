//! The archive as the store's cold source: seqs below the cold floor are
//! read from their range's `leaves.parquet`, one row group (8,192 leaves)
//! at a time, through a bounded cache. Only the footer and the bytes of the
//! row groups needed are fetched, with ranged reads. The store checks every leaf it gets against its own tree,
//! so nothing here needs to be trusted for an answer to be right; a changed
//! object shows up as corruption there.
//!
//! `object_store` is async and the store's readers are not (SQL threads,
//! blocking tasks, the CLI), so one thread with its own runtime does the
//! reads and answers over a channel. No caller ever blocks a runtime it
//! runs on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use actlog_core::bundle::LEAVES_FILE;
use actlog_core::tiles::{TILE_WIDTH, Tile, TileKind};
use actlog_export::leaves::LeavesBatch;
use actlog_store::{ColdLeaf, ColdSource};
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;

use crate::{Archive, layout};

/// `archive_cache_bytes`: leaves and envelopes of the row groups read,
/// kept in memory, least recently used first out.
pub const CACHE_BYTES_DEFAULT: usize = 256 << 20;
/// `archive_leaves_bytes_max`: the largest `leaves.parquet` read.
pub const LEAVES_BYTES_MAX: usize = 1 << 30;
/// `archive_footers_max`: footers of `leaves.parquet` files kept (a few
/// kilobytes each), least recently used first out.
pub const FOOTERS_MAX: usize = 1024;
/// `archive_tiles_max`: full level-0 tiles (8 KiB each) read from the
/// archive and kept, least recently used first out.
pub const TILES_MAX: usize = 1024;
/// The tail fetched first for a footer; a larger footer takes a second read.
const FOOTER_TAIL: u64 = 64 << 10;

/// Counters of the cold reads, for `/metrics`.
#[derive(Debug, Default)]
pub struct ColdStats {
    /// Leaves read below the floor.
    pub leaves_read: AtomicU64,
    /// Row groups fetched from the archive (cache misses).
    pub fetches: AtomicU64,
    /// Bytes of the row groups the cache holds now.
    pub cache_bytes: AtomicU64,
    /// Level-0 tiles fetched from the archive (cache misses).
    pub tile_fetches: AtomicU64,
}

/// What the reading thread is asked for, and where it answers.
enum Job {
    Leaves(Vec<u64>, mpsc::SyncSender<Result<Vec<ColdLeaf>, String>>),
    Tile(u64, mpsc::SyncSender<Result<Vec<u8>, String>>),
}

/// The archive, read as a [`ColdSource`].
pub struct ArchiveCold {
    tx: mpsc::Sender<Job>,
    stats: Arc<ColdStats>,
}

impl std::fmt::Debug for ArchiveCold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveCold").finish_non_exhaustive()
    }
}

impl ArchiveCold {
    /// Starts the reading thread. `cache_bytes` bounds the cache.
    pub fn start(archive: Archive, cache_bytes: usize) -> std::io::Result<ArchiveCold> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(ColdStats::default());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut reader = Reader {
            archive,
            ranges: BTreeMap::new(),
            files: VecDeque::new(),
            groups: VecDeque::new(),
            tiles: VecDeque::new(),
            cache_bytes,
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new().name("actlog-archive-read".into()).spawn(move || {
            for job in rx {
                match job {
                    Job::Leaves(seqs, reply) => {
                        let _ = reply.send(rt.block_on(reader.read(&seqs)));
                    }
                    Job::Tile(n, reply) => {
                        let _ = reply.send(rt.block_on(reader.tile(n)).map(|t| t.to_vec()));
                    }
                }
            }
        })?;
        Ok(ArchiveCold { tx, stats })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ColdStats> {
        Arc::clone(&self.stats)
    }
}

impl ColdSource for ArchiveCold {
    fn read(&self, seqs: &[u64]) -> Result<Vec<ColdLeaf>, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.send(Job::Leaves(seqs.to_vec(), reply)).map_err(|_| "the archive reader stopped".to_string())?;
        answer.recv().map_err(|_| "the archive reader stopped".to_string())?
    }

    fn tile(&self, index: u64) -> Result<Vec<u8>, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.send(Job::Tile(index, reply)).map_err(|_| "the archive reader stopped".to_string())?;
        answer.recv().map_err(|_| "the archive reader stopped".to_string())?
    }
}

/// An encoded leaf and its envelope.
type LeafAndEnvelope = (Vec<u8>, Vec<u8>);

/// A range's `leaves.parquet`: its footer, and the seqs each row group
/// holds by its statistics (`None` when it has none).
struct LeavesFile {
    first: u64,
    end: u64,
    key: String,
    size: u64,
    meta: Arc<ParquetMetaData>,
    spans: Vec<Option<(u64, u64)>>,
}

/// The leaves of one row group that lie in its range: seqs
/// `first..first + leaves.len()`.
struct Group {
    first: u64,
    leaves: Vec<LeafAndEnvelope>,
    bytes: usize,
}

impl Group {
    fn holds(&self, seq: u64) -> bool {
        (self.first..self.first + self.leaves.len() as u64).contains(&seq)
    }
}

struct Reader {
    archive: Archive,
    /// Archived ranges, first → end, as last listed.
    ranges: BTreeMap<u64, u64>,
    /// Footers, most recently used last, at most [`FOOTERS_MAX`].
    files: VecDeque<Arc<LeavesFile>>,
    /// Row groups, most recently used last, within `cache_bytes`.
    groups: VecDeque<Arc<Group>>,
    /// Full level-0 tiles, most recently used last, at most [`TILES_MAX`].
    tiles: VecDeque<(u64, Arc<Vec<u8>>)>,
    cache_bytes: usize,
    stats: Arc<ColdStats>,
}

impl Reader {
    async fn read(&mut self, seqs: &[u64]) -> Result<Vec<ColdLeaf>, String> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut group: Option<Arc<Group>> = None;
        for &seq in seqs {
            if !group.as_ref().is_some_and(|g| g.holds(seq)) {
                group = Some(self.group_of(seq).await?);
            }
            let g = group.as_ref().expect("set above");
            let (leaf, envelope) = &g.leaves[(seq - g.first) as usize];
            out.push(ColdLeaf { seq, leaf: leaf.clone(), envelope: envelope.clone() });
        }
        self.stats.leaves_read.fetch_add(seqs.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Full level-0 tile `n`, as the archive holds it (the store checks it
    /// against its level-1 tile).
    async fn tile(&mut self, n: u64) -> Result<Arc<Vec<u8>>, String> {
        if let Some(i) = self.tiles.iter().position(|(k, _)| *k == n) {
            let t = self.tiles.remove(i).expect("found");
            self.tiles.push_back(t.clone());
            return Ok(t.1);
        }
        let tile = Tile { kind: TileKind::Hashes(0), index: n, width: TILE_WIDTH as u16 };
        let key = layout::tile_key(&tile);
        let want = TILE_WIDTH as usize * 32;
        let bytes = self
            .archive
            .get(&key, want)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{key} is missing from the archive {}", self.archive.url()))?;
        if bytes.len() != want {
            return Err(format!("{key} holds {} bytes, not {want}", bytes.len()));
        }
        let t = Arc::new(bytes);
        self.tiles.push_back((n, Arc::clone(&t)));
        if self.tiles.len() > TILES_MAX {
            self.tiles.pop_front();
        }
        self.stats.tile_fetches.fetch_add(1, Ordering::Relaxed);
        Ok(t)
    }

    async fn group_of(&mut self, seq: u64) -> Result<Arc<Group>, String> {
        if let Some(i) = self.groups.iter().position(|g| g.holds(seq)) {
            let g = self.groups.remove(i).expect("found");
            self.groups.push_back(Arc::clone(&g));
            return Ok(g);
        }
        let file = self.file_of(seq).await?;
        // The row group whose statistics hold `seq`; without statistics,
        // each row group that has none, in order, until one holds it.
        let by_stats = file.spans.iter().position(|s| s.is_some_and(|(lo, hi)| (lo..=hi).contains(&seq)));
        let candidates: Vec<usize> = match by_stats {
            Some(i) => vec![i],
            None => (0..file.spans.len()).filter(|i| file.spans[*i].is_none()).collect(),
        };
        for i in candidates {
            let g = Arc::new(self.fetch_group(&file, i).await?);
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            self.groups.push_back(Arc::clone(&g));
            let mut held: usize = self.groups.iter().map(|g| g.bytes).sum();
            // The group just read stays, even when it alone is over the bound.
            while held > self.cache_bytes && self.groups.len() > 1 {
                held -= self.groups.pop_front().expect("more than one").bytes;
            }
            self.stats.cache_bytes.store(held as u64, Ordering::Relaxed);
            if g.holds(seq) {
                return Ok(g);
            }
        }
        Err(format!("{}: no row group holds seq {seq}", file.key))
    }

    /// The footer of the `leaves.parquet` of the range that holds `seq`.
    async fn file_of(&mut self, seq: u64) -> Result<Arc<LeavesFile>, String> {
        if let Some(i) = self.files.iter().position(|f| (f.first..f.end).contains(&seq)) {
            let f = self.files.remove(i).expect("found");
            self.files.push_back(Arc::clone(&f));
            return Ok(f);
        }
        let covering = |ranges: &BTreeMap<u64, u64>| {
            ranges.range(..=seq).next_back().filter(|(_, e)| seq < **e).map(|(f, e)| (*f, *e))
        };
        if covering(&self.ranges).is_none() {
            self.ranges = self.archive.ranges().await.map_err(|e| e.to_string())?.into_iter().collect();
        }
        let (first, end) = covering(&self.ranges)
            .ok_or_else(|| format!("seq {seq} is in no range of the archive {}", self.archive.url()))?;
        let key = format!("{}/{}/{LEAVES_FILE}", layout::RANGES_DIR, layout::range_name(first, end));
        let missing = || format!("{key} is missing from the archive {}", self.archive.url());
        let size = self.archive.size(&key).await.map_err(|e| e.to_string())?.ok_or_else(missing)?;
        if size > LEAVES_BYTES_MAX as u64 {
            return Err(format!("{key} holds {size} bytes, more than {LEAVES_BYTES_MAX}"));
        }
        let tail_at = size.saturating_sub(FOOTER_TAIL);
        let mut tail = self.archive.get_range(&key, tail_at..size).await.map_err(|e| e.to_string())?;
        let mut at = tail_at;
        // The footer ends with its length (u32, little-endian) and `PAR1`.
        if tail.len() >= 8 {
            let n = &tail[tail.len() - 8..tail.len() - 4];
            let need = u64::from(u32::from_le_bytes([n[0], n[1], n[2], n[3]])) + 8;
            if need > size - tail_at && need <= size {
                at = size - need;
                tail = self.archive.get_range(&key, at..size).await.map_err(|e| e.to_string())?;
            }
        }
        let span = Span { at, bytes: tail, size };
        let meta = guarded(&key, || {
            parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&span).map_err(|e| e.to_string())
        })?;
        let seq_col = meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == "seq");
        let spans = meta
            .row_groups()
            .iter()
            .map(|rg| match seq_col.map(|c| rg.column(c).statistics()) {
                Some(Some(Statistics::Int64(s))) => match (s.min_opt(), s.max_opt()) {
                    (Some(lo), Some(hi)) => Some((*lo as u64, *hi as u64)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let f = Arc::new(LeavesFile { first, end, key, size, meta: Arc::new(meta), spans });
        self.files.push_back(Arc::clone(&f));
        if self.files.len() > FOOTERS_MAX {
            self.files.pop_front();
        }
        Ok(f)
    }

    /// Fetches row group `i` of `file` (only its bytes) and decodes the
    /// leaves in the file's range, which must follow one another.
    async fn fetch_group(&self, file: &LeavesFile, i: usize) -> Result<Group, String> {
        let rg = file.meta.row_group(i);
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for c in rg.columns() {
            let (start, len) = c.byte_range();
            lo = lo.min(start);
            hi = hi.max(start.saturating_add(len));
        }
        if lo >= hi || hi > file.size {
            return Err(format!("{}: row group {i} lies outside the file", file.key));
        }
        let bytes = self.archive.get_range(&file.key, lo..hi).await.map_err(|e| e.to_string())?;
        let span = Span { at: lo, bytes, size: file.size };
        let (first, end) = (file.first, file.end);
        guarded(&file.key, || {
            let meta = ArrowReaderMetadata::try_new(Arc::clone(&file.meta), ArrowReaderOptions::default())
                .map_err(|e| e.to_string())?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(span, meta)
                .with_row_groups(vec![i])
                .build()
                .map_err(|e| e.to_string())?;
            let mut leaves = Vec::new();
            let mut start = None;
            for batch in reader {
                let batch = batch.map_err(|e| e.to_string())?;
                let cols = LeavesBatch::of(&batch).map_err(|e| e.to_string())?;
                for r in 0..batch.num_rows() {
                    let seq = cols.seq.value(r);
                    if seq < first {
                        continue; // a ledger record the bundle carries from before the range
                    }
                    let next = *start.get_or_insert(seq) + leaves.len() as u64;
                    if seq != next || seq >= end {
                        return Err(format!("seq {seq} where {next} was expected"));
                    }
                    let envelope = cols.envelope(r).ok_or_else(|| format!("seq {seq} has no envelope"))?;
                    leaves.push((cols.leaf.value(r).to_vec(), envelope.to_vec()));
                }
            }
            let bytes = leaves.iter().map(|(l, e)| l.len() + e.len() + 48).sum();
            Ok(Group { first: start.unwrap_or(first), leaves, bytes })
        })
    }
}

/// Runs Parquet decoding, which could panic on a malformed file, turning a
/// panic into an error naming the object.
fn guarded<T>(key: &str, run: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r.map_err(|e| format!("{key}: {e}")),
        Err(_) => Err(format!("{key}: the Parquet decoder failed on it")),
    }
}

/// A file of which one span of bytes, from `at`, was fetched. Reads
/// outside it are errors, never guesses.
struct Span {
    at: u64,
    bytes: Bytes,
    size: u64,
}

impl Length for Span {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Span {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let end = self.at + self.bytes.len() as u64;
        Ok(self.get_bytes(start, end.saturating_sub(start) as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = self.at + self.bytes.len() as u64;
        match start.checked_sub(self.at) {
            Some(from) if start.saturating_add(length as u64) <= end => {
                Ok(self.bytes.slice(from as usize..from as usize + length))
            }
            _ => Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..+{length} lie outside the {}..{end} fetched",
                self.at
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, RecordBatch, UInt64Array};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    use super::*;

    /// Writes range `first..end` with a `leaves.parquet` of row groups of
    /// `rows` leaves, led by one ledger record from before the range.
    fn range(root: &std::path::Path, first: u64, end: u64, rows: usize, stats: bool) {
        let dir = root.join(layout::RANGES_DIR).join(layout::range_name(first, end));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(crate::RANGE_RECORD), b"{}").unwrap();
        let seqs: Vec<u64> = std::iter::once(0).chain(first..end).collect();
        let batch = RecordBatch::try_new(
            actlog_export::leaves::leaves_schema(),
            vec![
                Arc::new(UInt64Array::from(seqs.clone())),
                Arc::new(BinaryArray::from_iter_values(seqs.iter().map(|s| format!("leaf {s}")))),
                Arc::new(BinaryArray::from_iter_values(seqs.iter().map(|s| format!("envelope {s}")))),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows))
            .set_statistics_enabled(if stats { EnabledStatistics::Chunk } else { EnabledStatistics::None })
            .build();
        let file = std::fs::File::create(dir.join(LEAVES_FILE)).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn read(cold: &ArchiveCold, seqs: &[u64]) -> Result<Vec<(u64, String, String)>, String> {
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        Ok(cold.read(seqs)?.into_iter().map(|l| (l.seq, text(l.leaf), text(l.envelope))).collect())
    }

    fn want(seqs: &[u64]) -> Vec<(u64, String, String)> {
        seqs.iter().map(|s| (*s, format!("leaf {s}"), format!("envelope {s}"))).collect()
    }

    #[test]
    fn leaves_come_back_by_row_group_with_or_without_statistics() {
        let dir = tempfile::tempdir().unwrap();
        range(dir.path(), 5, 20, 3, true);
        range(dir.path(), 20, 30, 4, false);
        let archive = Archive::open(&format!("file://{}", dir.path().display()), None).unwrap();
        let cold = ArchiveCold::start(archive, 1 << 20).unwrap();
        let stats = cold.stats();

        let seqs = [19, 5, 6, 12, 13, 20, 29, 25, 7];
        assert_eq!(read(&cold, &seqs).unwrap(), want(&seqs));
        // Range 5..20 in groups of 3 (the first led by seq 0): 19, 5-6, 12-13
        // and 7 are four groups. Range 20..30 has no statistics: each group
        // is read in turn until one holds the seq, and kept.
        let fetched = stats.fetches.load(Ordering::Relaxed);
        assert!((4 + 3..=4 + 3 + 3).contains(&fetched), "{fetched}");
        assert_eq!(read(&cold, &seqs).unwrap(), want(&seqs));
        assert_eq!(stats.fetches.load(Ordering::Relaxed), fetched, "the second read came from the cache");

        // A tiny cache keeps only the group last read, and still answers.
        let archive = Archive::open(&format!("file://{}", dir.path().display()), None).unwrap();
        let small = ArchiveCold::start(archive, 1).unwrap();
        assert_eq!(read(&small, &seqs).unwrap(), want(&seqs));
        assert!(small.stats().cache_bytes.load(Ordering::Relaxed) < 200);
    }

    #[test]
    fn a_missing_or_garbled_leaves_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        range(dir.path(), 0, 10, 4, true);
        range(dir.path(), 10, 20, 4, true);
        range(dir.path(), 20, 30, 4, true);
        let leaves =
            |first, end| dir.path().join(layout::RANGES_DIR).join(layout::range_name(first, end)).join(LEAVES_FILE);
        std::fs::remove_file(leaves(0, 10)).unwrap();
        std::fs::write(leaves(10, 20), b"PAR1 not parquet at all PAR1").unwrap();
        let mut bytes = std::fs::read(leaves(20, 30)).unwrap();
        let n = bytes.len();
        bytes[n / 3..n / 2].fill(0xff);
        std::fs::write(leaves(20, 30), bytes).unwrap();
        let archive = Archive::open(&format!("file://{}", dir.path().display()), None).unwrap();
        let cold = ArchiveCold::start(archive, 1 << 20).unwrap();
        let e = read(&cold, &[3]).unwrap_err();
        assert!(e.contains("00000000000000000000-00000000000000000010/leaves.parquet") && e.contains("missing"), "{e}");
        let e = read(&cold, &[12]).unwrap_err();
        assert!(e.contains("00000000000000000010-00000000000000000020/leaves.parquet"), "{e}");
        // A damaged row group is an error, or leaves the store's check to
        // catch; it never panics the reader.
        for seq in 20..30 {
            match read(&cold, &[seq]) {
                Ok(got) => assert_eq!(got.len(), 1),
                Err(e) => assert!(e.contains("00000000000000000020-00000000000000000030/leaves.parquet"), "{e}"),
            }
        }
        assert_eq!(read(&cold, &[]).unwrap(), vec![]);
    }

    #[test]
    fn a_seq_outside_every_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        range(dir.path(), 0, 10, 4, true);
        let archive = Archive::open(&format!("file://{}", dir.path().display()), None).unwrap();
        let cold = ArchiveCold::start(archive, 1 << 20).unwrap();
        let e = read(&cold, &[10]).unwrap_err();
        assert!(e.contains("seq 10 is in no range"), "{e}");
    }
}
