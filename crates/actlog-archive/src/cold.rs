//! The archive as the store's cold source: seqs below the cold floor are
//! read from their range's `leaves.parquet`, a range at a time, through a
//! bounded cache. The store checks every leaf it gets against its own tree,
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
use actlog_export::leaves::LeavesBatch;
use actlog_store::{ColdLeaf, ColdSource};

use crate::{Archive, layout};

/// `archive_cache_bytes`: leaves and envelopes of whole ranges kept in
/// memory, least recently used first out.
pub const CACHE_BYTES_DEFAULT: usize = 256 << 20;
/// `archive_leaves_bytes_max`: the largest `leaves.parquet` read.
pub const LEAVES_BYTES_MAX: usize = 1 << 30;

/// Counters of the cold reads, for `/metrics`.
#[derive(Debug, Default)]
pub struct ColdStats {
    /// Leaves read below the floor.
    pub leaves_read: AtomicU64,
    /// Ranges fetched from the archive (cache misses).
    pub ranges_fetched: AtomicU64,
    /// Bytes of the ranges the cache holds now.
    pub cache_bytes: AtomicU64,
}

type Reply = mpsc::SyncSender<Result<Vec<ColdLeaf>, String>>;

/// The archive, read as a [`ColdSource`].
pub struct ArchiveCold {
    tx: mpsc::Sender<(Vec<u64>, Reply)>,
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
        let (tx, rx) = mpsc::channel::<(Vec<u64>, Reply)>();
        let stats = Arc::new(ColdStats::default());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut reader =
            Reader { archive, ranges: BTreeMap::new(), cache: VecDeque::new(), cache_bytes, stats: Arc::clone(&stats) };
        std::thread::Builder::new().name("actlog-archive-read".into()).spawn(move || {
            for (seqs, reply) in rx {
                let _ = reply.send(rt.block_on(reader.read(&seqs)));
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
        self.tx.send((seqs.to_vec(), reply)).map_err(|_| "the archive reader stopped".to_string())?;
        answer.recv().map_err(|_| "the archive reader stopped".to_string())?
    }
}

/// An encoded leaf and its envelope.
type LeafAndEnvelope = (Vec<u8>, Vec<u8>);

/// One range's leaves and envelopes, by seq - first.
struct Range {
    first: u64,
    end: u64,
    leaves: Vec<LeafAndEnvelope>,
    bytes: usize,
}

struct Reader {
    archive: Archive,
    /// Archived ranges, first → end, as last listed.
    ranges: BTreeMap<u64, u64>,
    /// Most recently used last.
    cache: VecDeque<Arc<Range>>,
    cache_bytes: usize,
    stats: Arc<ColdStats>,
}

impl Reader {
    async fn read(&mut self, seqs: &[u64]) -> Result<Vec<ColdLeaf>, String> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut range: Option<Arc<Range>> = None;
        for &seq in seqs {
            if !range.as_ref().is_some_and(|r| (r.first..r.end).contains(&seq)) {
                range = Some(self.range_of(seq).await?);
            }
            let r = range.as_ref().expect("set above");
            let (leaf, envelope) = &r.leaves[(seq - r.first) as usize];
            out.push(ColdLeaf { seq, leaf: leaf.clone(), envelope: envelope.clone() });
        }
        self.stats.leaves_read.fetch_add(seqs.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn range_of(&mut self, seq: u64) -> Result<Arc<Range>, String> {
        if let Some(i) = self.cache.iter().position(|r| (r.first..r.end).contains(&seq)) {
            let r = self.cache.remove(i).expect("found");
            self.cache.push_back(Arc::clone(&r));
            return Ok(r);
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
        let bytes = self
            .archive
            .get(&key, LEAVES_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{key} is missing from the archive {}", self.archive.url()))?;
        let leaves = decode(&key, first, end, bytes)?;
        let bytes = leaves.iter().map(|(l, e)| l.len() + e.len() + 48).sum();
        let r = Arc::new(Range { first, end, leaves, bytes });
        self.stats.ranges_fetched.fetch_add(1, Ordering::Relaxed);
        self.cache.push_back(Arc::clone(&r));
        let mut held: usize = self.cache.iter().map(|r| r.bytes).sum();
        // The range just read stays, even when it alone is over the bound.
        while held > self.cache_bytes && self.cache.len() > 1 {
            held -= self.cache.pop_front().expect("more than one").bytes;
        }
        self.stats.cache_bytes.store(held as u64, Ordering::Relaxed);
        Ok(r)
    }
}

/// The leaves of `[first, end)` in a range's `leaves.parquet`, in seq
/// order; ledger records before `first` that the bundle carries are skipped.
fn decode(key: &str, first: u64, end: u64, bytes: Vec<u8>) -> Result<Vec<LeafAndEnvelope>, String> {
    let err = |e: String| format!("{key}: {e}");
    let run = || -> Result<Vec<LeafAndEnvelope>, String> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity((end - first) as usize);
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            let cols = LeavesBatch::of(&batch).map_err(|e| e.to_string())?;
            for i in 0..batch.num_rows() {
                let seq = cols.seq.value(i);
                if seq < first {
                    continue;
                }
                let next = first + out.len() as u64;
                if seq != next || seq >= end {
                    return Err(format!("seq {seq} where {next} was expected"));
                }
                let envelope = cols.envelope(i).ok_or_else(|| format!("seq {seq} has no envelope"))?;
                out.push((cols.leaf.value(i).to_vec(), envelope.to_vec()));
            }
        }
        if out.len() as u64 != end - first {
            return Err(format!("it ends at seq {}, before {end}", first + out.len() as u64));
        }
        Ok(out)
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r.map_err(err),
        Err(_) => Err(err("the Parquet decoder failed on it".into())),
    }
}
