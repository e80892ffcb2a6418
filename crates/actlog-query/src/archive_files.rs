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
//! Whole objects are fetched (a retired segment's files are a few
//! megabytes) and kept in an [`ObjectCache`] bounded by bytes
//! (`archive_segment_cache_bytes`), least recently used first out.

use std::collections::{HashMap, VecDeque};
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

/// Verified archived files, kept across queries, least recently used first out.
#[derive(Debug)]
pub struct ObjectCache {
    max_bytes: usize,
    inner: Mutex<Cached>,
    /// One lock per object being fetched, so two partitions of a scan that
    /// need the same file fetch it once.
    loading: Mutex<HashMap<Path, Arc<tokio::sync::Mutex<()>>>>,
    /// Objects fetched from the archive (cache misses).
    pub fetches: AtomicU64,
}

#[derive(Debug, Default)]
struct Cached {
    order: VecDeque<(Path, Bytes)>,
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
        }
    }

    fn get(&self, path: &Path) -> Option<Bytes> {
        let mut c = self.inner.lock().expect("cache lock");
        let i = c.order.iter().position(|(p, _)| p == path)?;
        let entry = c.order.remove(i).expect("found");
        let bytes = entry.1.clone();
        c.order.push_back(entry);
        Some(bytes)
    }

    fn put(&self, path: Path, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut c = self.inner.lock().expect("cache lock");
        if c.order.iter().any(|(p, _)| *p == path) {
            return;
        }
        c.bytes += bytes.len();
        c.order.push_back((path, bytes));
        while c.bytes > self.max_bytes {
            let (_, old) = c.order.pop_front().expect("over the limit, so not empty");
            c.bytes -= old.len();
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("cache lock").bytes
    }
}

/// The archived files one query may read, each checked against its hash.
pub struct ArchivedFiles {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<ObjectCache>,
    /// Key → (SHA-256 hex, size), from the snapshot's segment manifest.
    allowed: HashMap<Path, (String, u64)>,
}

impl ArchivedFiles {
    /// Over `inner` (rooted at the archive), serving `allowed` only.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        cache: Arc<ObjectCache>,
        allowed: impl IntoIterator<Item = (String, String, u64)>,
    ) -> ArchivedFiles {
        let allowed = allowed.into_iter().map(|(k, h, n)| (Path::from(k), (h, n))).collect();
        ArchivedFiles { inner, cache, allowed }
    }

    fn pinned(&self, location: &Path) -> Result<&(String, u64)> {
        self.allowed.get(location).ok_or_else(|| object_store::Error::NotFound {
            path: location.to_string(),
            source: "no retired segment lists this archived file".into(),
        })
    }

    /// The whole object, fetched once and checked against its pinned hash.
    async fn whole(&self, location: &Path) -> Result<Bytes> {
        if let Some(b) = self.cache.get(location) {
            return Ok(b);
        }
        let lock = {
            let mut loading = self.cache.loading.lock().expect("loading lock");
            Arc::clone(loading.entry(location.clone()).or_default())
        };
        let _g = lock.lock().await;
        let result = self.fetch(location).await;
        self.cache.loading.lock().expect("loading lock").remove(location);
        result
    }

    async fn fetch(&self, location: &Path) -> Result<Bytes> {
        if let Some(b) = self.cache.get(location) {
            return Ok(b); // another partition fetched it while this one waited
        }
        let (sha, size) = self.pinned(location)?;
        let got = self.inner.get(location).await?;
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
        self.cache.put(location.clone(), bytes.clone());
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
            let part = slice(location, &self.whole(location).await?, range.clone())?;
            futures::stream::once(async move { Ok(part) }).boxed()
        };
        Ok(GetResult { payload: GetResultPayload::Stream(payload), meta, range, attributes: Attributes::new() })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let bytes = self.whole(location).await?;
        ranges.iter().map(|r| slice(location, &bytes, r.clone())).collect()
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
    use object_store::memory::InMemory;

    fn sha(b: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    }

    #[tokio::test]
    #[allow(clippy::single_range_in_vec_init)] // one range per call is the case under test
    async fn only_listed_files_whose_hash_matches_are_served() {
        let mem = Arc::new(InMemory::new());
        let good: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
        mem.put(&Path::from("events/a.parquet"), good.clone().into()).await.unwrap();
        mem.put(&Path::from("events/b.parquet"), b"changed".to_vec().into()).await.unwrap();
        let cache = Arc::new(ObjectCache::new(1 << 20));
        let files = ArchivedFiles::new(
            mem.clone(),
            Arc::clone(&cache),
            [
                ("events/a.parquet".to_string(), sha(&good), good.len() as u64),
                ("events/b.parquet".to_string(), sha(b"original"), 8),
            ],
        );
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
        let object_store::Error::Generic { source, .. } = &err else { panic!("{err}") };
        assert!(matches!(source.downcast_ref::<crate::Error>(), Some(crate::Error::Corruption(_))), "{err}");
        // A file no segment lists is not found, even if the archive has it.
        mem.put(&Path::from("events/c.parquet"), good.clone().into()).await.unwrap();
        let err = files.get_range(&Path::from("events/c.parquet"), 0..1).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        assert!(files.put(&a, good.clone().into()).await.is_err(), "read-only");
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
