//! The archive tier (contract section 12): sealed ranges of the ledger as
//! immutable objects in object storage, and their offline verification.
//!
//! Each range `[first, end)` of seqs is one export bundle (`actlog-export`)
//! laid out so that the data files of every range together form plain
//! hive-partitioned tables at the archive's root, plus the full tlog tiles
//! the range completes, plus a range record signed by the ledger key that
//! lists every object with its SHA-256 and links to the previous range by
//! hash and by a consistency proof. The record is written last: a range
//! whose record is absent is not archived, whatever else is there.
//! The layout is in `schema/archive.md`.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

mod cold;
mod retire;
mod upload;
mod verify;

pub use cold::{ArchiveCold, CACHE_BYTES_DEFAULT, ColdStats};

pub use retire::retire_segments;
pub use upload::{ArchiveProgress, archive_ranges};
pub use verify::{ArchiveFailure, ArchiveReport, VerifyOptions, check_range, verify_archive};

/// A range record's `format`.
pub const ARCHIVE_FORMAT: &str = "actlog.archive.v1";
/// The DSSE `payloadType` of a range record.
pub const RANGE_PAYLOAD_TYPE: &str = "application/vnd.actlog.archive-range.v1+json";
/// The range record's name inside its range's folder.
pub const RANGE_RECORD: &str = "range.dsse.json";
/// `archive_record_bytes_max`: the largest range record read.
pub const RECORD_BYTES_MAX: usize = 64 << 20;

/// Why archiving or reading the archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The request cannot be done as asked (a bad URL, another ledger's archive).
    #[error("{0}")]
    Refused(String),
    /// The object store or the local disk failed; retrying may help.
    #[error("{0}")]
    Io(String),
    /// Writing a range's bundle failed.
    #[error("writing the range's bundle: {0}")]
    Export(#[from] actlog_export::ExportError),
    /// The archive or the ledger holds something that cannot be right.
    #[error("corruption: {0}")]
    Corruption(String),
}

/// An archive location: an object store and a prefix inside it.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

impl Archive {
    /// Opens `file:///PATH` (made if missing) or `s3://BUCKET[/PREFIX]`.
    /// S3 credentials and region come from the standard `AWS_*` variables;
    /// `endpoint` (`--archive-endpoint`) names an S3-compatible server.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<Archive, ArchiveError> {
        let io = |e: object_store::Error| ArchiveError::Refused(format!("--archive {url}: {e}"));
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(ArchiveError::Refused(format!(
                    "--archive {url}: a file URL names an absolute path, as file:///var/lib/actlog-archive"
                )));
            }
            std::fs::create_dir_all(path)
                .map_err(|e| ArchiveError::Refused(format!("--archive {url}: {path} cannot be made: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path).map_err(io)?;
            return Ok(Archive { store: Arc::new(fs), prefix: String::new(), url: url.to_string() });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ArchiveError::Refused(format!("--archive {url}: name a bucket, as s3://BUCKET/PREFIX")));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(ep) = endpoint {
                b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
            }
            let s3 = b.build().map_err(io)?;
            let prefix = prefix.trim_matches('/');
            Path::parse(prefix).map_err(|e| ArchiveError::Refused(format!("--archive {url}: {e}")))?;
            return Ok(Archive { store: Arc::new(s3), prefix: prefix.to_string(), url: url.to_string() });
        }
        Err(ArchiveError::Refused(format!("--archive {url}: use file:///PATH or s3://BUCKET/PREFIX")))
    }

    /// The object store rooted at the archive: keys are relative to it.
    pub fn reader(&self) -> Arc<dyn ObjectStore> {
        if self.prefix.is_empty() {
            Arc::clone(&self.store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(Arc::clone(&self.store), self.prefix.as_str()))
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    fn failed(&self, what: &str, key: &str, e: object_store::Error) -> ArchiveError {
        ArchiveError::Io(format!("{what} {key} in {}: {e}", self.url))
    }

    /// The object at `key`, or `None` when there is none. Refused past `max` bytes.
    pub async fn get(&self, key: &str, max: usize) -> Result<Option<Vec<u8>>, ArchiveError> {
        let got = match self.store.get(&self.path(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("reading", key, e)),
        };
        if got.meta.size > max as u64 {
            return Err(ArchiveError::Corruption(format!("{key} holds {} bytes, more than {max}", got.meta.size)));
        }
        let bytes = got.bytes().await.map_err(|e| self.failed("reading", key, e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// The size of the object at `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ArchiveError> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("reading", key, e)),
        }
    }

    /// The bytes `range` of the object at `key`.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<bytes::Bytes, ArchiveError> {
        self.store.get_range(&self.path(key), range).await.map_err(|e| self.failed("reading", key, e))
    }

    /// Writes `bytes` at `key` in one atomic put.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        self.store.put(&self.path(key), PutPayload::from(bytes)).await.map_err(|e| self.failed("writing", key, e))?;
        Ok(())
    }

    /// Every key under `dir` (relative to the archive), sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, ArchiveError> {
        let base = self.path(dir);
        let metas: Vec<_> =
            self.store.list(Some(&base)).try_collect().await.map_err(|e| self.failed("listing", dir, e))?;
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut keys: Vec<String> = metas
            .into_iter()
            .filter_map(|m| m.location.as_ref().strip_prefix(strip.as_str()).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The archived ranges, in seq order: every `ranges/<first>-<end>/` with
    /// its range record present. Other objects under `ranges/` are the
    /// leftovers of an upload that did not finish, and do not count.
    pub async fn ranges(&self) -> Result<Vec<(u64, u64)>, ArchiveError> {
        let mut out: Vec<(u64, u64)> = self
            .list(layout::RANGES_DIR)
            .await?
            .iter()
            .filter_map(|k| k.strip_suffix(&format!("/{RANGE_RECORD}")))
            .filter_map(|d| d.strip_prefix(&format!("{}/", layout::RANGES_DIR)))
            .filter_map(layout::parse_range)
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}

/// Object keys, relative to the archive's root (`schema/archive.md`).
pub mod layout {
    use actlog_core::tiles::{TILE_WIDTH, Tile, TileKind};

    /// Where each range's own files are.
    pub const RANGES_DIR: &str = "ranges";

    /// `<first>-<end>`, 20-digit zero-padded decimals.
    pub fn range_name(first: u64, end: u64) -> String {
        format!("{first:020}-{end:020}")
    }

    /// The range a [`range_name`] names.
    pub fn parse_range(name: &str) -> Option<(u64, u64)> {
        let (a, b) = name.split_once('-')?;
        let ok = |s: &str| s.len() == 20 && s.bytes().all(|c| c.is_ascii_digit());
        if !ok(a) || !ok(b) {
            return None;
        }
        let (a, b) = (a.parse().ok()?, b.parse().ok()?);
        (a < b).then_some((a, b))
    }

    /// The range record's key.
    pub fn record_key(first: u64, end: u64) -> String {
        format!("{RANGES_DIR}/{}/{}", range_name(first, end), super::RANGE_RECORD)
    }

    /// Where a file of a range's bundle goes: data files
    /// (`TABLE/date=D/part-N.ext`) join their table's hive partition at the
    /// root with the range in their name; the other files stay in the
    /// range's folder. `None` for a path of neither shape.
    pub fn bundle_key(first: u64, end: u64, bundle_path: &str) -> Option<String> {
        let range = range_name(first, end);
        let parts: Vec<&str> = bundle_path.split('/').collect();
        match parts.as_slice() {
            [name] if !name.is_empty() && !name.starts_with('.') => Some(format!("{RANGES_DIR}/{range}/{name}")),
            [table, date, part]
                if (*table == "events" || *table == "delegation_hops")
                    && date.starts_with("date=")
                    && part.starts_with("part-") =>
            {
                Some(format!("{table}/{date}/{range}-{part}"))
            }
            _ => None,
        }
    }

    /// The full hash tiles that leaves `[from, end)` complete: every tile of
    /// every level whose last leaf is in the range.
    pub fn full_tiles(from: u64, end: u64) -> Vec<Tile> {
        let mut out = Vec::new();
        let mut span = TILE_WIDTH; // leaves under one full tile of this level
        for level in 0..=actlog_core::tiles::TILE_LEVEL_MAX {
            if span > end {
                break;
            }
            // Tile N is complete once leaf (N + 1) * span - 1 is in the tree.
            let first_new = from / span; // the first tile not complete before `from`
            let done = end / span; // tiles complete at `end`
            for index in first_new..done {
                out.push(Tile { kind: TileKind::Hashes(level), index, width: TILE_WIDTH as u16 });
            }
            match span.checked_mul(TILE_WIDTH) {
                Some(s) => span = s,
                None => break,
            }
        }
        out
    }

    /// A tile's key: its C2SP path.
    pub fn tile_key(t: &Tile) -> String {
        format!("tile/{}", t.path())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn data_files_join_the_hive_tables_and_the_rest_stays_in_the_range() {
            assert_eq!(
                bundle_key(0, 65_536, "events/date=2026-01-10/part-00000.parquet").unwrap(),
                "events/date=2026-01-10/00000000000000000000-00000000000000065536-part-00000.parquet"
            );
            assert_eq!(
                bundle_key(5, 9, "leaves.parquet").unwrap(),
                "ranges/00000000000000000005-00000000000000000009/leaves.parquet"
            );
            assert!(bundle_key(5, 9, "../x").is_none());
            assert!(bundle_key(5, 9, "ocsf/date=2026-01-10/part-00000.json").is_none());
            assert_eq!(parse_range(&range_name(7, 70)), Some((7, 70)));
            assert_eq!(parse_range("7-70"), None);
            assert_eq!(parse_range(&range_name(70, 7)), None);
        }

        #[test]
        fn full_tiles_are_the_ones_a_range_completes() {
            let paths = |a, b| full_tiles(a, b).iter().map(tile_key).collect::<Vec<_>>();
            assert!(paths(0, 255).is_empty());
            assert_eq!(paths(0, 256), vec!["tile/0/000"]);
            assert_eq!(paths(256, 600), vec!["tile/0/001"]);
            assert_eq!(full_tiles(0, 65_536).len(), 257); // 256 at level 0, 1 at level 1
            assert_eq!(paths(65_536, 65_536 + 300), vec!["tile/0/256"]);
            // Every full tile below a size is listed by exactly one range.
            let mut all: Vec<String> = Vec::new();
            for (a, b) in [(0, 1000), (1000, 70_000), (70_000, 140_000)] {
                all.extend(paths(a, b));
            }
            let mut want: Vec<String> = full_tiles(0, 140_000).iter().map(tile_key).collect();
            all.sort();
            want.sort();
            assert_eq!(all, want);
        }
    }
}

/// The link from a range to the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    /// The previous range's `end_seq` (this range's `first_seq`).
    pub end_seq: u64,
    /// Its checkpoint's tree size.
    pub tree_size: u64,
    /// Its checkpoint's root, base64.
    pub root_hash: String,
    /// SHA-256 of its range record's bytes, lowercase hex.
    pub record_sha256: String,
}

/// One archived object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object {
    /// Its key, relative to the archive's root.
    pub key: String,
    /// `bundle` (a file of the range's export bundle) or `tile`.
    pub kind: String,
    /// For a bundle file, its path inside the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

impl Object {
    /// Whether `bytes` are this object's: its size and its SHA-256.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.bytes && sha256_hex(bytes) == self.sha256
    }
}

/// A range record: the payload of `ranges/<first>-<end>/range.dsse.json`,
/// a DSSE envelope signed by the ledger key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRecord {
    /// [`ARCHIVE_FORMAT`].
    pub format: String,
    /// The log origin.
    pub origin: String,
    /// The ledger's verifier key (C2SP form).
    pub verifier_key: String,
    /// The range's first seq.
    pub first_seq: u64,
    /// One past its last seq.
    pub end_seq: u64,
    /// The tree size of the checkpoint its bundle is proven against (≥ `end_seq`).
    pub tree_size: u64,
    /// That checkpoint's root, base64.
    pub root_hash: String,
    /// The previous range; `None` for the range that starts at seq 0.
    pub previous: Option<Previous>,
    /// RFC 6962 consistency proof from the previous range's tree to this
    /// one's, base64 hashes (empty for the first range or an equal size).
    pub consistency: Vec<String>,
    /// Every object of the range: its bundle's files and the full tiles it completes.
    pub objects: Vec<Object>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
