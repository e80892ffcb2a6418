//! `actlog verify --archive`: every archived object against its signed
//! range record, every range's bundle as `verify --bundle` checks it, the
//! links between ranges, the tiles against the leaves, and optionally a
//! checkpoint kept outside. Needs no data directory.

use std::collections::{BTreeMap, HashSet};
use std::path::Path as FsPath;

use actlog_core::Hash;
use actlog_core::bundle::{LEAVES_FILE, MANIFEST_FILE};
use actlog_core::dsse::Envelope;
use actlog_core::merkle::{self, Frontier};
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::{b64, sig};
use actlog_export::BundleOptions;
use actlog_export::leaves::LeavesBatch;

use crate::{ARCHIVE_FORMAT, Archive, RANGE_PAYLOAD_TYPE, RECORD_BYTES_MAX, RangeRecord, layout, sha256_hex};

/// `archive_object_bytes_max`: the largest archived object read.
pub const OBJECT_BYTES_MAX: usize = 4 << 30;

/// How to verify an archive.
pub struct VerifyOptions<'a> {
    /// The ledger's verifier key: the only thing trusted.
    pub key: VerifierKey,
    /// A checkpoint kept outside the archive (signed note text).
    pub checkpoint: Option<String>,
    /// Threads for signature checks (0 = all cores).
    pub jobs: usize,
    /// Called with (ranges checked, ranges).
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

/// An archive that verified.
#[derive(Debug, Clone, Default)]
pub struct ArchiveReport {
    /// Ranges checked.
    pub ranges: u64,
    /// One past the last archived seq.
    pub end_seq: u64,
    /// The newest range's checkpoint tree size.
    pub tree_size: u64,
    /// Objects checked (range records included).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Signatures checked inside the bundles.
    pub signatures: u64,
    /// Rows compared with the leaves.
    pub rows: u64,
    /// Full tiles recomputed from the leaves.
    pub tiles: u64,
    /// Objects under the archive's folders that no range lists (the
    /// leftovers of uploads cut short): not an error.
    pub unlisted: u64,
    /// What was concluded about `--checkpoint`.
    pub trusted: Option<String>,
}

/// The first thing found wrong, with the object at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct ArchiveFailure {
    /// The object at fault, relative to the archive.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

fn fail<T>(key: Option<&str>, reason: impl Into<String>) -> Result<T, ArchiveFailure> {
    Err(ArchiveFailure { key: key.map(str::to_string), reason: reason.into() })
}

/// Opens a range record: a DSSE envelope of [`RANGE_PAYLOAD_TYPE`] signed by `key`.
pub(crate) fn open_record(bytes: &[u8], key: &VerifierKey) -> Result<RangeRecord, String> {
    let env = Envelope::parse_as(bytes, RANGE_PAYLOAD_TYPE).map_err(|e| format!("not a range record: {e}"))?;
    let pae = env.pae();
    if !env.signatures.iter().any(|s| sig::verify(&key.key, &pae, &s.sig).is_ok()) {
        return Err(format!("not signed by the ledger key {}", key.to_text()));
    }
    let record: RangeRecord =
        serde_json::from_slice(&env.payload).map_err(|e| format!("the signed range record is malformed: {e}"))?;
    if record.format != ARCHIVE_FORMAT {
        return Err(format!("format `{}` is not {ARCHIVE_FORMAT}", record.format));
    }
    if record.verifier_key != key.to_text() {
        return Err(format!("names the verifier key {}, not {}", record.verifier_key, key.to_text()));
    }
    Ok(record)
}

fn hash_of(key: &str, what: &str, text: &str) -> Result<Hash, ArchiveFailure> {
    b64::decode(text)
        .and_then(|v| <Hash>::try_from(v.as_slice()).ok())
        .ok_or_else(|| ArchiveFailure { key: Some(key.into()), reason: format!("{what} is not a base64 SHA-256 hash") })
}

/// Checks the records' own fields and the links between them: ranges that
/// follow each other from seq 0, each naming the one before by hash, and
/// consistency proofs joining their checkpoints.
fn check_record(
    key: &str,
    r: &RangeRecord,
    (first, end): (u64, u64),
    prev: Option<(&RangeRecord, &str)>,
) -> Result<(), ArchiveFailure> {
    if (r.first_seq, r.end_seq) != (first, end) {
        return fail(Some(key), format!("names the range [{}, {}), not the one its key names", r.first_seq, r.end_seq));
    }
    if r.tree_size < end {
        return fail(Some(key), format!("its checkpoint (tree size {}) does not cover the range", r.tree_size));
    }
    let root = hash_of(key, "root_hash", &r.root_hash)?;
    match (prev, &r.previous) {
        (None, None) => {}
        (None, Some(_)) => return fail(Some(key), "the first range names a previous one"),
        (Some(_), None) => return fail(Some(key), "names no previous range"),
        (Some((p, p_sha)), Some(link)) => {
            if link.end_seq != p.end_seq || link.tree_size != p.tree_size || link.root_hash != p.root_hash {
                return fail(Some(key), "its link to the previous range does not match that range's record");
            }
            if link.record_sha256 != p_sha {
                return fail(
                    Some(key),
                    "the previous range's record is not the one this range was linked to (it was replaced)",
                );
            }
            let old_root = hash_of(key, "previous.root_hash", &p.root_hash)?;
            let proof: Vec<Hash> =
                r.consistency.iter().map(|h| hash_of(key, "consistency", h)).collect::<Result<_, _>>()?;
            let ok = if p.tree_size == r.tree_size {
                proof.is_empty() && old_root == root
            } else {
                p.tree_size < r.tree_size
                    && merkle::verify_consistency(p.tree_size, r.tree_size, &proof, &old_root, &root)
            };
            if !ok {
                return fail(
                    Some(key),
                    format!(
                        "its checkpoint (tree size {}) is not consistent with the previous range's ({})",
                        r.tree_size, p.tree_size
                    ),
                );
            }
        }
    }
    let want_tiles: HashSet<String> =
        layout::full_tiles(prev.map_or(0, |(p, _)| p.end_seq), end).iter().map(layout::tile_key).collect();
    let mut tiles = HashSet::new();
    let mut keys = HashSet::new();
    for o in &r.objects {
        if !keys.insert(o.key.as_str()) {
            return fail(Some(key), format!("lists {} twice", o.key));
        }
        match (o.kind.as_str(), &o.bundle_path) {
            ("bundle", Some(p)) if layout::bundle_key(first, end, p).as_deref() == Some(o.key.as_str()) => {}
            ("tile", None) if want_tiles.contains(&o.key) => {
                tiles.insert(o.key.clone());
            }
            _ => return fail(Some(key), format!("lists {} in a place the layout does not give it", o.key)),
        }
    }
    if tiles.len() != want_tiles.len() {
        return fail(
            Some(key),
            format!("lists {} of the {} full tiles the range completes", tiles.len(), want_tiles.len()),
        );
    }
    for name in [MANIFEST_FILE, LEAVES_FILE] {
        if !r.objects.iter().any(|o| o.bundle_path.as_deref() == Some(name)) {
            return fail(Some(key), format!("lists no {name}"));
        }
    }
    Ok(())
}

/// The hashes of the tree, recomputed leaf by leaf across the ranges: the
/// full tiles must hold them, and a kept checkpoint's root must be theirs.
struct TreeCheck {
    frontier: Frontier,
    /// The open tile of each tile level: the node hashes seen so far.
    open: BTreeMap<u8, Vec<u8>>,
    /// A root wanted at a size: (size, root, its key for messages).
    want: Option<(u64, Hash)>,
    /// Whether `want` was met.
    met: bool,
    tiles: u64,
}

impl TreeCheck {
    fn push(&mut self, leaf: &[u8], tiles: &BTreeMap<String, Vec<u8>>) -> Result<(), ArchiveFailure> {
        let mut done: Vec<(u8, u64)> = Vec::new();
        let open = &mut self.open;
        self.frontier.push(merkle::leaf_hash(leaf), |level, index, hash| {
            if level % 8 == 0 {
                let t = open.entry(level / 8).or_default();
                t.extend_from_slice(&hash);
                if t.len() == 8192 {
                    done.push((level / 8, index / 256));
                }
            }
        });
        for (l, n) in done {
            let tile = actlog_core::tiles::Tile {
                kind: actlog_core::tiles::TileKind::Hashes(l),
                index: n,
                width: actlog_core::tiles::TILE_WIDTH as u16,
            };
            let key = layout::tile_key(&tile);
            let got = self.open.remove(&l).unwrap_or_default();
            match tiles.get(&key) {
                Some(stored) if *stored == got => self.tiles += 1,
                Some(_) => return fail(Some(&key), "does not hold the hashes the archived leaves give"),
                None => return fail(Some(&key), "is complete in this range but the range does not list it"),
            }
        }
        if let Some((size, root)) = self.want
            && self.frontier.size() == size
        {
            if self.frontier.root() != root {
                return fail(
                    None,
                    format!(
                        "the kept checkpoint's root at tree size {size} is not the root of the archived leaves: history was rewritten"
                    ),
                );
            }
            self.met = true;
        }
        Ok(())
    }
}

/// Verifies the archive at `archive`, trusting only `opts.key`.
pub async fn verify_archive(archive: &Archive, opts: &VerifyOptions<'_>) -> Result<ArchiveReport, ArchiveFailure> {
    let io = |e: crate::ArchiveError| ArchiveFailure { key: None, reason: e.to_string() };
    let ranges = archive.ranges().await.map_err(io)?;
    if ranges.is_empty() {
        return fail(None, format!("{} holds no range record: nothing is archived there", archive.url()));
    }
    let kept = match &opts.checkpoint {
        Some(note) => Some(Checkpoint::open(note, &opts.key).map_err(|e| ArchiveFailure {
            key: None,
            reason: format!("the checkpoint does not verify with the ledger key: {e}"),
        })?),
        None => None,
    };
    let mut report = ArchiveReport::default();
    let mut tree = TreeCheck {
        frontier: Frontier::default(),
        open: BTreeMap::new(),
        want: kept.as_ref().filter(|c| c.tree_size > 0).map(|c| (c.tree_size, c.root)),
        met: false,
        tiles: 0,
    };
    let mut listed: HashSet<String> = HashSet::new();
    let mut prev: Option<(RangeRecord, String)> = None;
    let mut next = 0u64;
    let total = ranges.len() as u64;
    for (i, &(first, end)) in ranges.iter().enumerate() {
        let key = layout::record_key(first, end);
        if first != next {
            return fail(Some(&key), format!("does not follow seq {next}: the ranges before it are missing"));
        }
        let bytes = archive
            .get(&key, RECORD_BYTES_MAX)
            .await
            .map_err(io)?
            .ok_or_else(|| ArchiveFailure { key: Some(key.clone()), reason: "was listed but is gone".into() })?;
        let record =
            open_record(&bytes, &opts.key).map_err(|reason| ArchiveFailure { key: Some(key.clone()), reason })?;
        check_record(&key, &record, (first, end), prev.as_ref().map(|(r, s)| (r, s.as_str())))?;
        listed.insert(key.clone());
        report.objects += 1;
        report.bytes += bytes.len() as u64;

        let staging = tempfile::tempdir()
            .map_err(|e| ArchiveFailure { key: None, reason: format!("a temporary directory: {e}") })?;
        let mut tiles: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for o in &record.objects {
            let got = archive.get(&o.key, OBJECT_BYTES_MAX).await.map_err(io)?;
            let Some(got) = got else { return fail(Some(&o.key), format!("is missing (listed by {key})")) };
            if !o.matches(&got) {
                return fail(Some(&o.key), format!("is not the object {key} lists: it was changed or replaced"));
            }
            listed.insert(o.key.clone());
            report.objects += 1;
            report.bytes += got.len() as u64;
            match &o.bundle_path {
                Some(p) => write_file(staging.path(), p, &got)?,
                None => {
                    tiles.insert(o.key.clone(), got);
                }
            }
        }
        let bundle = actlog_export::verify::verify(
            staging.path(),
            &BundleOptions {
                expected_key: Some(opts.key.clone()),
                trusted_checkpoint: None,
                jobs: opts.jobs,
                progress: None,
                policy: None,
            },
        )
        .map_err(|f| ArchiveFailure {
            key: f.file.as_deref().and_then(|p| layout::bundle_key(first, end, p)).or(Some(key.clone())),
            reason: f.to_string(),
        })?;
        let m = &bundle.manifest;
        if m.first_seq != first
            || m.last_seq + 1 != end
            || m.events != end - first
            || m.from.is_some()
            || m.to.is_some()
            || m.tree_size != record.tree_size
            || m.root_hash != record.root_hash
            || m.framework.is_some()
        {
            return fail(
                Some(&layout::bundle_key(first, end, MANIFEST_FILE).unwrap_or_default()),
                format!("the bundle does not cover exactly the range [{first}, {end}) at the record's checkpoint"),
            );
        }
        report.signatures += bundle.signatures;
        report.rows += bundle.rows;
        for_each_leaf(staging.path(), first, end, |leaf| tree.push(leaf, &tiles))?;
        report.ranges += 1;
        report.end_seq = end;
        report.tree_size = record.tree_size;
        next = end;
        prev = Some((record, sha256_hex(&bytes)));
        if let Some(p) = opts.progress {
            p(i as u64 + 1, total);
        }
    }
    report.tiles = tree.tiles;
    if let Some(cp) = &kept {
        report.trusted = Some(if tree.met || cp.tree_size == 0 {
            format!("the kept checkpoint (tree size {}) is the root of the archived leaves", cp.tree_size)
        } else if prev.as_ref().is_some_and(|(r, _)| r.tree_size == cp.tree_size) {
            let (r, _) = prev.as_ref().expect("checked");
            if r.root_hash != b64::encode(cp.root) {
                return fail(
                    None,
                    "the kept checkpoint has the newest range's tree size but another root: history was rewritten",
                );
            }
            format!("the kept checkpoint (tree size {}) is the newest range's", cp.tree_size)
        } else {
            format!(
                "the kept checkpoint (tree size {}) is past the archive's end (seq {}); the newest range is proven at tree size {}: \
                 compare them with `actlog prove consistency {} {}` on the ledger",
                cp.tree_size, report.end_seq, report.tree_size, report.tree_size, cp.tree_size
            )
        });
    }
    for dir in ["events", "delegation_hops", "tile", layout::RANGES_DIR] {
        report.unlisted += archive.list(dir).await.map_err(io)?.iter().filter(|k| !listed.contains(*k)).count() as u64;
    }
    Ok(report)
}

/// Writes one bundle file below `root`; the path was checked against the layout.
fn write_file(root: &FsPath, rel: &str, bytes: &[u8]) -> Result<(), ArchiveFailure> {
    let path = root.join(rel);
    let err = |e: std::io::Error| ArchiveFailure { key: None, reason: format!("writing {}: {e}", path.display()) };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    std::fs::write(&path, bytes).map_err(err)
}

/// Calls `f` with each leaf of `[first, end)` in the (verified) bundle's
/// `leaves.parquet`, in seq order (the ledger records before `first` that
/// the bundle carries are skipped).
fn for_each_leaf(
    dir: &FsPath,
    first: u64,
    end: u64,
    mut f: impl FnMut(&[u8]) -> Result<(), ArchiveFailure>,
) -> Result<(), ArchiveFailure> {
    let err = |e: String| ArchiveFailure { key: None, reason: format!("reading {LEAVES_FILE} again: {e}") };
    let file = std::fs::File::open(dir.join(LEAVES_FILE)).map_err(|e| err(e.to_string()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(e.to_string()))?;
    let mut next = first;
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let cols = LeavesBatch::of(&batch).map_err(|e| err(e.to_string()))?;
        for i in 0..batch.num_rows() {
            let seq = cols.seq.value(i);
            if seq < first {
                continue;
            }
            if seq != next || seq >= end {
                return Err(err(format!("seq {seq} where {next} was expected")));
            }
            f(cols.leaf.value(i))?;
            next += 1;
        }
    }
    if next != end {
        return Err(err(format!("it ends at seq {next}, before {end}")));
    }
    Ok(())
}

/// Checks that one range is whole in the archive before its events leave
/// the hot store: its record opens with `key` and names `[first, end)`, and
/// every object it lists is there with the size and SHA-256 it lists.
/// (The store then compares each leaf and envelope with its own.)
pub async fn check_range(archive: &Archive, key: &VerifierKey, first: u64, end: u64) -> Result<u64, ArchiveFailure> {
    let record_key = layout::record_key(first, end);
    let io = |k: &str, e: crate::ArchiveError| ArchiveFailure { key: Some(k.into()), reason: e.to_string() };
    let bytes = archive
        .get(&record_key, RECORD_BYTES_MAX)
        .await
        .map_err(|e| io(&record_key, e))?
        .ok_or_else(|| ArchiveFailure { key: Some(record_key.clone()), reason: "is missing".into() })?;
    let record = open_record(&bytes, key).map_err(|reason| ArchiveFailure { key: Some(record_key.clone()), reason })?;
    if (record.first_seq, record.end_seq) != (first, end) {
        return fail(Some(&record_key), "names another range than its key");
    }
    let mut total = bytes.len() as u64;
    for o in &record.objects {
        let got = archive
            .get(&o.key, OBJECT_BYTES_MAX)
            .await
            .map_err(|e| io(&o.key, e))?
            .ok_or_else(|| ArchiveFailure { key: Some(o.key.clone()), reason: "is missing".into() })?;
        if !o.matches(&got) {
            return fail(Some(&o.key), "does not match the hash its range record lists");
        }
        total += o.bytes;
    }
    Ok(total)
}
