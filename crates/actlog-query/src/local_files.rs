//! Segment reads without a thread hop per file.
//!
//! DataFusion reads Parquet through an `object_store`. The local one hands
//! every read to tokio's blocking pool (`spawn_blocking`), so a full scan of
//! 152 segments paid two thread switches per file for reads of a few tens
//! of kilobytes, mostly from the page cache. [`InlineFiles`] does the
//! column-chunk reads (`get_ranges`) on the calling thread with `pread`,
//! like DuckDB does; everything else goes to `LocalFileSystem`.
//!
//! A read that misses the page cache blocks one of the query's threads for
//! the disk's latency; segments are local files, so that is bounded.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

/// The local file system, with column-chunk reads on the calling thread.
#[derive(Debug, Default)]
pub struct InlineFiles {
    inner: LocalFileSystem,
    /// Segments: a missing file is an error, never an empty listing.
    files_only: bool,
}

impl InlineFiles {
    /// Over the whole local file system, as `file://` URLs address it.
    pub fn new() -> InlineFiles {
        InlineFiles { inner: LocalFileSystem::new(), files_only: false }
    }

    /// Over one directory of segment files (which must exist): paths are
    /// relative to it, and nothing outside it can be named. A file that is
    /// missing is an error: DataFusion lists a path whose `head` says "not
    /// found" as a folder, which would make a missing segment an empty one
    /// and a query silently short of its rows.
    pub fn rooted(dir: &std::path::Path) -> Result<InlineFiles> {
        Ok(InlineFiles { inner: LocalFileSystem::new_with_prefix(dir)?, files_only: true })
    }
}

impl fmt::Display for InlineFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineFiles({})", self.inner)
    }
}

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic { store: "InlineFiles", source: source.into() }
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return object_store::Error::NotFound { path: path.display().to_string(), source: Box::new(e) };
    }
    generic(e)
}

fn past_the_end(path: &std::path::Path, size: u64, range: &Range<u64>) -> object_store::Error {
    generic(format!("{} ({size} bytes) is shorter than the range {range:?} a read asked for", path.display()))
}

/// Reads `range` of `file` (`size` bytes long) exactly. A range past the
/// end is an error naming the file, checked before anything is allocated:
/// a damaged footer must not make a query allocate what it claims.
fn read_exact_at(file: &std::fs::File, path: &std::path::Path, size: u64, range: Range<u64>) -> Result<Bytes> {
    if range.start > range.end || range.end > size {
        return Err(past_the_end(path, size, &range));
    }
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| generic(format!("range {range:?} of {} does not fit in memory", path.display())))?;
    let mut buf = vec![0u8; len];
    // The file may shrink between the size check and the read.
    file.read_exact_at(&mut buf, range.start).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => past_the_end(path, size, &range),
        _ => io_error(path, e),
    })?;
    Ok(Bytes::from(buf))
}

#[async_trait]
impl ObjectStore for InlineFiles {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.inner.get_opts(location, options).await {
            Err(object_store::Error::NotFound { path, source }) if self.files_only => {
                Err(generic(format!("the segment file {path} is missing: {source}")))
            }
            r => r,
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.inner.path_to_filesystem(location)?;
        let file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
        let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
        ranges.iter().map(|r| read_exact_at(&file, &path, size, r.clone())).collect()
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if self.files_only {
            let p = prefix.map(|p| p.to_string()).unwrap_or_default();
            return Box::pin(futures::stream::once(async move {
                Err(generic(format!("segments are read by file name, never listed ({p})")))
            }));
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::single_range_in_vec_init)] // one range per call is the case under test
    async fn ranges_are_read_exactly_and_short_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seg.parquet");
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        std::fs::write(&file, &data).unwrap();
        let store = InlineFiles::new();
        let location = Path::from_filesystem_path(&file).unwrap();

        let got = store.get_ranges(&location, &[0..10, 4_000..4_100, 9_990..10_000, 5..5]).await.unwrap();
        assert_eq!(got[0].as_ref(), &data[0..10]);
        assert_eq!(got[1].as_ref(), &data[4_000..4_100]);
        assert_eq!(got[2].as_ref(), &data[9_990..10_000]);
        assert!(got[3].is_empty());

        // Past the end: an error naming the file, never a short buffer.
        let err = store.get_ranges(&location, &[9_990..10_001]).await.unwrap_err().to_string();
        assert!(err.contains("seg.parquet") && err.contains("shorter"), "{err}");
        // A damaged footer's absurd range is refused before any allocation.
        let err = store.get_ranges(&location, &[0..u64::MAX / 2]).await.unwrap_err().to_string();
        assert!(err.contains("seg.parquet") && err.contains("shorter"), "{err}");

        let missing = Path::from(dir.path().join("gone.parquet").to_str().unwrap());
        let err = store.get_ranges(&missing, &[0..1]).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_missing_segment_file_is_an_error_never_an_empty_folder() {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seg.parquet"), b"x").unwrap();
        let store = InlineFiles::rooted(dir.path()).unwrap();
        assert_eq!(store.head(&Path::from("seg.parquet")).await.unwrap().size, 1);
        let err = store.head(&Path::from("gone.parquet")).await.unwrap_err();
        assert!(!matches!(err, object_store::Error::NotFound { .. }) && err.to_string().contains("missing"), "{err}");
        assert!(store.list(Some(&Path::from("gone.parquet"))).next().await.unwrap().is_err());
    }
}
