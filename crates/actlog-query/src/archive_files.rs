//! Retired segments, read from the archive.
//!
//! Once `serve --hot-retention` has moved a range out of RocksDB, its
//! segment is retired: the segment manifest lists the archived `events` and
//! `delegation_hops` files of its range with their SHA-256, and the local
//! files go. Queries then read those files through [`ArchivedFiles`], an
//! object store at [`ARCHIVE_URL`] that serves only the files the query's
//! snapshot lists, and only after the whole object matched its recorded
//! hash. A changed, swapped or truncated object is `storage_corruption`,
//! never a wrong answer.
//!
//! A file whose manifest entry lists its pieces (each Parquet column chunk,
//! and the footer, with a pinned BLAKE3) is read piece by piece: a query
//! fetches and checks only the column chunks it reads, as it would read
//! them from a local file. A file without pieces is fetched whole and
//! checked against its SHA-256. Checked bytes stay in an [`ObjectCache`]
//! bounded by bytes (`archive_segment_cache_bytes`), least recently used
//! first out.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Where queries address archived files: `actlog://archive/KEY`.
pub const ARCHIVE_URL: &str = "actlog://archive/";
/// `archive_segment_cache_bytes`: archived segment files kept in memory
/// across queries, by default.
pub const ARCHIVE_SEGMENT_CACHE_BYTES_DEFAULT: usize = 512 << 20;

/// Verified archived files and pieces, kept across queries, least
/// recently used first out.
#[derive(Debug)]
pub struct ObjectCache {
    max_bytes: usize,
    inner: Mutex<Cached>,
    /// One lock per object being fetched, so two partitions of a scan that
    /// need the same file fetch it once.
    loading: Mutex<HashMap<Path, Arc<tokio::sync::Mutex<()>>>>,
    /// Objects or pieces fetched from the archive (cache misses).
    pub fetches: AtomicU64,
    /// Bytes fetched from the archive.
    pub fetched_bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Cached {
    /// Key → (bytes, last use).
    entries: HashMap<Path, (Bytes, u64)>,
    /// Last use → key, oldest first.
    by_use: std::collections::BTreeMap<u64, Path>,
    tick: u64,
    bytes: usize,
}

impl ObjectCache {
    /// A cache of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> ObjectCache {
        ObjectCache {
            max_bytes,
            inner: Mutex::new(Cached::default()),
            loading: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    fn get(&self, key: &Path) -> Option<Bytes> {
        let mut c = self.inner.lock().expect("cache lock");
        c.tick += 1;
        let tick = c.tick;
        let (bytes, used) = c.entries.get_mut(key)?;
        let (bytes, old) = (bytes.clone(), std::mem::replace(used, tick));
        c.by_use.remove(&old);
        c.by_use.insert(tick, key.clone());
        Some(bytes)
    }

    fn put(&self, key: Path, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut c = self.inner.lock().expect("cache lock");
        if c.entries.contains_key(&key) {
            return;
        }
        c.tick += 1;
        let tick = c.tick;
        c.bytes += bytes.len();
        c.by_use.insert(tick, key.clone());
        c.entries.insert(key, (bytes, tick));
        while c.bytes > self.max_bytes {
            let (_, oldest) = c.by_use.pop_first().expect("over the limit, so not empty");
            let (old, _) = c.entries.remove(&oldest).expect("indexed");
            c.bytes -= old.len();
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("cache lock").bytes
    }

    fn lock_for(&self, key: &Path) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.loading.lock().expect("loading lock").entry(key.clone()).or_default())
    }

    fn unlock(&self, key: &Path) {
        self.loading.lock().expect("loading lock").remove(key);
    }
}

/// A pinned file: its SHA-256, its size, and its pieces when it has them.
type Pin = (String, u64, Option<Arc<Vec<crate::segments::Piece>>>);

/// The archived files one query may read, each checked against its hash.
pub struct ArchivedFiles {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<ObjectCache>,
    /// Key → its pin, from the snapshot's segment manifest.
    allowed: HashMap<Path, Pin>,
}

impl ArchivedFiles {
    /// Over `inner` (rooted at the archive), serving `allowed` only. A
    /// file's pieces that do not decode are refused here, as corruption.
    pub fn new<'a>(
        inner: Arc<dyn ObjectStore>,
        cache: Arc<ObjectCache>,
        allowed: impl IntoIterator<Item = &'a crate::segments::ArchivedFile>,
    ) -> std::result::Result<ArchivedFiles, crate::Error> {
        let mut map = HashMap::new();
        for f in allowed {
            let pieces = crate::segments::decode_pieces(f).map_err(crate::Error::Corruption)?;
            map.insert(Path::from(f.key.as_str()), (f.sha256.clone(), f.bytes, pieces.map(Arc::new)));
        }
        Ok(ArchivedFiles { inner, cache, allowed: map })
    }

    fn pinned(&self, location: &Path) -> Result<&Pin> {
        self.allowed.get(location).ok_or_else(|| object_store::Error::NotFound {
            path: location.to_string(),
            source: "no retired segment lists this archived file".into(),
        })
    }

    /// The whole object, fetched once and checked against its pinned hash.
    /// The cache is keyed by the pinned hash too, so bytes checked against
    /// one pin never answer for another.
    async fn whole(&self, location: &Path) -> Result<Bytes> {
        let (sha, _, _) = self.pinned(location)?;
        let key = Path::from(format!("{sha}/{location}"));
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let lock = self.cache.lock_for(&key);
        let _g = lock.lock().await;
        let result = self.fetch(location, &key).await;
        self.cache.unlock(&key);
        result
    }

    /// The bytes `ranges` of a file with pieces: the pieces they touch,
    /// fetched (neighbours in one request) and checked, then cut.
    async fn read_pieces(
        &self,
        location: &Path,
        pieces: &[crate::segments::Piece],
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>> {
        let (sha, size, _) = self.pinned(location)?;
        for r in ranges {
            if r.start > r.end || r.end > *size {
                return Err(generic(format!(
                    "{location} ({size} bytes) is shorter than the range {r:?} a read asked for"
                )));
            }
        }
        let touched = |r: &Range<u64>| {
            let lo = pieces.partition_point(|(p, _)| p.end <= r.start);
            let hi = pieces.partition_point(|(p, _)| p.start < r.end).max(lo);
            lo..hi
        };
        let mut need: Vec<usize> = ranges.iter().flat_map(touched).collect();
        need.sort_unstable();
        need.dedup();
        let key_of = |i: usize| Path::from(format!("{sha}/{location}/{}", pieces[i].0.start));
        let file_key = Path::from(format!("{sha}/{location}"));
        let mut got: HashMap<usize, Bytes> = HashMap::new();
        let lock = self.cache.lock_for(&file_key);
        let guard = lock.lock().await;
        let mut missing = Vec::new();
        for &i in &need {
            match self.cache.get(&key_of(i)) {
                Some(b) => {
                    got.insert(i, b);
                }
                None => missing.push(i),
            }
        }
        let result = async {
            // Runs of neighbouring pieces, one request each.
            let mut runs: Vec<Vec<usize>> = Vec::new();
            for i in missing {
                match runs.last_mut() {
                    Some(run) if *run.last().expect("runs are not empty") + 1 == i => run.push(i),
                    _ => runs.push(vec![i]),
                }
            }
            for run in runs {
                let span = pieces[run[0]].0.start..pieces[*run.last().expect("not empty")].0.end;
                let bytes = match self.inner.get_range(location, span.clone()).await {
                    Ok(b) => b,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(corrupt(format!(
                            "the archived file {location} is missing from the archive (a retired segment's rows are read from it)"
                        )));
                    }
                    // A range past the end of an object that shrank (S3
                    // answers 416): say what changed, when that is it.
                    Err(e) => match self.inner.head(location).await {
                        Ok(m) if m.size != *size => {
                            return Err(corrupt(format!(
                                "the archived file {location} holds {} bytes; the segment manifest records {size} (the archive object was changed)",
                                m.size
                            )));
                        }
                        _ => return Err(e),
                    },
                };
                if bytes.len() as u64 != span.end - span.start {
                    return Err(corrupt(format!(
                        "the archived file {location} is shorter than the segment manifest records (the archive object was changed)"
                    )));
                }
                self.cache.fetches.fetch_add(1, Ordering::Relaxed);
                self.cache.fetched_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                for i in run {
                    let (r, pin) = &pieces[i];
                    let piece = bytes.slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                    if blake3::hash(&piece).as_bytes()[..16] != pin[..] {
                        return Err(corrupt(format!(
                            "the piece at byte {} of the archived file {location} does not match its pinned hash (the archive object was changed)",
                            r.start
                        )));
                    }
                    self.cache.put(key_of(i), piece.clone());
                    got.insert(i, piece);
                }
            }
            Ok(())
        }
        .await;
        drop(guard);
        self.cache.unlock(&file_key);
        result?;
        Ok(ranges
            .iter()
            .map(|r| {
                let t = touched(r);
                if t.len() == 1 {
                    let (p, _) = &pieces[t.start];
                    return got[&t.start].slice((r.start - p.start) as usize..(r.end - p.start) as usize);
                }
                let mut out = Vec::with_capacity((r.end - r.start) as usize);
                for i in t {
                    let (p, _) = &pieces[i];
                    let lo = r.start.max(p.start) - p.start;
                    let hi = r.end.min(p.end) - p.start;
                    out.extend_from_slice(&got[&i][lo as usize..hi as usize]);
                }
                Bytes::from(out)
            })
            .collect())
    }

    /// The bytes `ranges` of a pinned file, checked.
    async fn read(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if let (_, _, Some(pieces)) = self.pinned(location)? {
            let pieces = Arc::clone(pieces);
            return self.read_pieces(location, &pieces, ranges).await;
        }
        let bytes = self.whole(location).await?;
        ranges.iter().map(|r| slice(location, &bytes, r.clone())).collect()
    }

    async fn fetch(&self, location: &Path, key: &Path) -> Result<Bytes> {
        if let Some(b) = self.cache.get(key) {
            return Ok(b); // another partition fetched it while this one waited
        }
        let (sha, size, _) = self.pinned(location)?;
        let got = match self.inner.get(location).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(corrupt(format!(
                    "the archived file {location} is missing from the archive (a retired segment's rows are read from it)"
                )));
            }
            Err(e) => return Err(e),
        };
        if got.meta.size != *size {
            return Err(corrupt(format!(
                "the archived file {location} holds {} bytes; the segment manifest records {size} (the archive object was changed)",
                got.meta.size
            )));
        }
        let bytes = got.bytes().await?;
        use sha2::Digest;
        if bytes.len() as u64 != *size || hex::encode(sha2::Sha256::digest(&bytes)) != *sha {
            return Err(corrupt(format!(
                "the archived file {location} does not match the SHA-256 its signed range record lists (the archive object was changed)"
            )));
        }
        self.cache.fetches.fetch_add(1, Ordering::Relaxed);
        self.cache.fetched_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.cache.put(key.clone(), bytes.clone());
        Ok(bytes)
    }
}

fn corrupt(message: String) -> object_store::Error {
    object_store::Error::Generic { store: "ArchivedFiles", source: Box::new(crate::Error::Corruption(message)) }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic { store: "ArchivedFiles", source: message.into() }
}

fn slice(location: &Path, bytes: &Bytes, r: Range<u64>) -> Result<Bytes> {
    if r.start > r.end || r.end > bytes.len() as u64 {
        return Err(generic(format!(
            "{location} ({} bytes) is shorter than the range {r:?} a read asked for",
            bytes.len()
        )));
    }
    Ok(bytes.slice(r.start as usize..r.end as usize))
}

impl fmt::Debug for ArchivedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchivedFiles").field("files", &self.allowed.len()).finish_non_exhaustive()
    }
}

impl fmt::Display for ArchivedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchivedFiles({})", self.inner)
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported { source: "archived segment files are read-only".into() }
}

#[async_trait]
impl ObjectStore for ArchivedFiles {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(&self, _: &Path, _: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let size = self.pinned(location)?.1;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        };
        let range = match &options.range {
            Some(r) => r.as_range(size).map_err(|e| generic(format!("{location}: {e}")))?,
            None => 0..size,
        };
        let payload = if options.head {
            futures::stream::empty().boxed()
        } else {
            let part = self.read(location, std::slice::from_ref(&range)).await?.pop().expect("one range asked");
            futures::stream::once(async move { Ok(part) }).boxed()
        };
        Ok(GetResult { payload: GetResultPayload::Stream(payload), meta, range, attributes: Attributes::new() })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.read(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, _: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        futures::stream::once(async { Err(read_only()) }).boxed()
    }

    async fn list_with_delimiter(&self, _: Option<&Path>) -> Result<ListResult> {
        Err(read_only())
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::ArchivedFile;
    use object_store::memory::InMemory;

    fn sha(b: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    }

    fn pin(key: &str, bytes: &[u8], pieces: String) -> ArchivedFile {
        ArchivedFile { key: key.into(), sha256: sha(bytes), bytes: bytes.len() as u64, pieces }
    }

    fn corruption(err: &object_store::Error) -> bool {
        matches!(err, object_store::Error::Generic { source, .. }
            if matches!(source.downcast_ref::<crate::Error>(), Some(crate::Error::Corruption(_))))
    }

    #[tokio::test]
    #[allow(clippy::single_range_in_vec_init)] // one range per call is the case under test
    async fn only_listed_files_whose_hash_matches_are_served() {
        let mem = Arc::new(InMemory::new());
        let good: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
        mem.put(&Path::from("events/a.parquet"), good.clone().into()).await.unwrap();
        mem.put(&Path::from("events/b.parquet"), b"changed".to_vec().into()).await.unwrap();
        let cache = Arc::new(ObjectCache::new(1 << 20));
        let listed =
            [pin("events/a.parquet", &good, String::new()), pin("events/b.parquet", b"original", String::new())];
        let files = ArchivedFiles::new(mem.clone(), Arc::clone(&cache), &listed).unwrap();
        let a = Path::from("events/a.parquet");
        assert_eq!(files.head(&a).await.unwrap().size, 5_000);
        assert_eq!(files.get_range(&a, 10..20).await.unwrap().as_ref(), &good[10..20]);
        let parts = files.get_ranges(&a, &[0..1, 4_990..5_000]).await.unwrap();
        assert_eq!(parts[1].as_ref(), &good[4_990..]);
        // As object_store's own stores do: a bounded get past the end gives
        // the rest; a ranged read past the end is an error.
        assert_eq!(files.get_range(&a, 4_990..5_001).await.unwrap().len(), 10);
        assert!(files.get_ranges(&a, &[4_990..5_001]).await.is_err());
        assert_eq!(cache.fetches.load(Ordering::Relaxed), 1, "fetched once, then served from the cache");
        assert_eq!(cache.bytes(), 5_000);

        // A file of another size, or another hash, is corruption.
        let err = files.get_range(&Path::from("events/b.parquet"), 0..1).await.unwrap_err();
        assert!(corruption(&err), "{err}");
        // A file no segment lists is not found, even if the archive has it
        // (or the cache holds it for another query's snapshot).
        mem.put(&Path::from("events/c.parquet"), good.clone().into()).await.unwrap();
        let err = files.get_range(&Path::from("events/c.parquet"), 0..1).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        let other = ArchivedFiles::new(mem.clone(), Arc::clone(&cache), []).unwrap();
        assert!(matches!(other.get_range(&a, 0..1).await.unwrap_err(), object_store::Error::NotFound { .. }));
        // A pinned file the archive lost is corruption too.
        let lost = [pin("events/d.parquet", &good, String::new())];
        let lost = ArchivedFiles::new(mem.clone(), Arc::clone(&cache), &lost).unwrap();
        let err = lost.get_range(&Path::from("events/d.parquet"), 0..1).await.unwrap_err();
        assert!(corruption(&err), "{err}");
        assert!(files.put(&a, good.clone().into()).await.is_err(), "read-only");
    }

    /// A Parquet file of three columns in two row groups.
    fn parquet_file() -> Vec<u8> {
        use datafusion::arrow::array::{StringArray, UInt64Array};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::properties::WriterProperties;
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::UInt64, false),
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, false),
        ]));
        let n = 4_000u64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("a-{}", i * 7919 % 10_007)))),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("b-{}", i * 104_729 % 99_991)))),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(2_000)).build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out
    }

    #[tokio::test]
    #[allow(clippy::single_range_in_vec_init)] // one range per call is the case under test
    async fn a_file_with_pieces_is_read_and_checked_piece_by_piece() {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let bytes = parquet_file();
        let pieces = crate::segments::cut_pieces(&Bytes::from(bytes.clone())).unwrap();
        let f = pin("events/p.parquet", &bytes, pieces);
        let cut = crate::segments::decode_pieces(&f).unwrap().unwrap();
        assert!(cut.len() >= 7, "two row groups of three columns, and the footer: {}", cut.len());
        let mem = Arc::new(InMemory::new());
        let path = Path::from("events/p.parquet");
        mem.put(&path, bytes.clone().into()).await.unwrap();
        let cache = Arc::new(ObjectCache::new(1 << 20));
        let files = ArchivedFiles::new(mem.clone(), Arc::clone(&cache), [&f]).unwrap();
        // Any range, within a piece or across several, is the file's bytes.
        let n = bytes.len() as u64;
        let ranges = [0..4, 3..n / 2, n / 3..n / 3 + 1, n - 8..n, 0..n];
        let got = files.get_ranges(&path, &ranges).await.unwrap();
        for (r, g) in ranges.iter().zip(&got) {
            assert_eq!(g.as_ref(), &bytes[r.start as usize..r.end as usize], "{r:?}");
        }
        // One column chunk read fetches that piece, not the file.
        let cache2 = Arc::new(ObjectCache::new(1 << 20));
        let files2 = ArchivedFiles::new(mem.clone(), Arc::clone(&cache2), [&f]).unwrap();
        let (chunk, _) = cut[1].clone();
        files2.get_ranges(&path, std::slice::from_ref(&chunk)).await.unwrap();
        assert_eq!(cache2.fetched_bytes.load(Ordering::Relaxed), chunk.end - chunk.start);

        // A byte changed in one piece: reads of other pieces still answer,
        // a read of that piece is corruption.
        let mut changed = bytes.clone();
        let (bad, _) = cut[2].clone();
        changed[bad.start as usize] ^= 1;
        mem.put(&path, changed.into()).await.unwrap();
        let files3 = ArchivedFiles::new(mem.clone(), Arc::new(ObjectCache::new(1 << 20)), [&f]).unwrap();
        assert!(files3.get_ranges(&path, std::slice::from_ref(&chunk)).await.is_ok());
        let err = files3.get_ranges(&path, &[bad.start..bad.start + 1]).await.unwrap_err();
        assert!(corruption(&err), "{err}");
        // A pinned file that is shorter than recorded: corruption.
        mem.put(&path, bytes[..bytes.len() - 1].to_vec().into()).await.unwrap();
        let files4 = ArchivedFiles::new(mem.clone(), Arc::new(ObjectCache::new(1 << 20)), [&f]).unwrap();
        assert!(corruption(&files4.get_ranges(&path, &[n - 8..n]).await.unwrap_err()));
        // The file reads back as Parquet through the pieces.
        let whole = files.get_ranges(&path, &[0..n]).await.unwrap().pop().unwrap();
        let rows: usize = ParquetRecordBatchReaderBuilder::try_new(whole)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(rows, 4_000);
        // Pieces that do not cover the file are refused before any read.
        let mut short = f.clone();
        short.bytes += 1;
        assert!(ArchivedFiles::new(mem.clone(), Arc::clone(&cache), [&short]).is_err());
    }

    #[test]
    fn the_cache_keeps_the_most_recent_within_its_bytes() {
        let c = ObjectCache::new(10);
        c.put(Path::from("a"), Bytes::from_static(b"aaaa"));
        c.put(Path::from("b"), Bytes::from_static(b"bbbb"));
        assert!(c.get(&Path::from("a")).is_some()); // a is now the most recent
        c.put(Path::from("c"), Bytes::from_static(b"cccc"));
        assert!(c.get(&Path::from("b")).is_none(), "the least recently used left");
        assert!(c.get(&Path::from("a")).is_some() && c.get(&Path::from("c")).is_some());
        c.put(Path::from("big"), Bytes::from(vec![0u8; 11]));
        assert!(c.get(&Path::from("big")).is_none(), "larger than the cache: not kept");
        assert_eq!(c.bytes(), 8);
    }
}
