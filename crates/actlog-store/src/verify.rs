//! Full offline verification of a data directory.
//!
//! Recomputes, from the stored bytes alone and the ledger's public key:
//! every leaf's encoding and seq, the blake3 chain, every Merkle node and the
//! head's root, every stored checkpoint's signature and root (which also
//! proves successive checkpoints consistent: they are roots of prefixes of
//! the same leaves), the event-id index, the key and token registry (rebuilt
//! from the ledger-signed leaves), and, unless disabled, every envelope's
//! hash, event schema and producer signature under the one signature rule.
//! Stops at, and reports, the first failing seq.

use std::sync::atomic::{AtomicU64, Ordering};

use actlog_core::Hash;
use actlog_core::leaf::{Leaf, LeafKind, chain_hash, key_fingerprint};
pub use actlog_core::ledger::{Job, Rebuilt, Verified, VerifyFailure};
use actlog_core::ledger::{check_parallel, fail};
use actlog_core::merkle::{self, Frontier};
use actlog_core::note::Checkpoint;

use crate::keys::*;
use crate::{Error, Store, decode_event_id_value};

/// What to check.
pub struct VerifyOptions<'a> {
    /// Check envelopes, schemas and producer signatures (the expensive part).
    pub signatures: bool,
    /// Worker threads for signature checks (0 = all cores).
    pub jobs: usize,
    /// A checkpoint obtained earlier (signed note text) that the ledger must still contain.
    pub trusted_checkpoint: Option<String>,
    /// Called with (leaves done, total) now and then.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    /// The ledger verifier key the auditor expects. Without it, the key
    /// stored in the data directory is trusted.
    pub expected_key: Option<actlog_core::note::VerifierKey>,
    /// A witness policy: every stored cosignature by one of its witnesses
    /// must verify, and some checkpoint must meet its quorum.
    pub policy: Option<actlog_core::witness::Policy>,
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        VerifyOptions {
            signatures: true,
            jobs: 0,
            trusted_checkpoint: None,
            progress: None,
            expected_key: None,
            policy: None,
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Leaves checked.
    pub tree_size: u64,
    /// The recomputed root.
    pub root: Hash,
    /// Stored checkpoints checked.
    pub checkpoints: u64,
    /// Producer and ledger signatures checked.
    pub signatures: u64,
    /// Stored witness cosignatures checked against the policy.
    pub cosignatures: u64,
    /// The largest checkpoint whose cosignatures meet the policy's quorum.
    pub witnessed_tree_size: Option<u64>,
}

/// The first thing found wrong.
fn io(e: impl std::fmt::Display) -> VerifyFailure {
    VerifyFailure { seq: None, reason: format!("read error: {e}") }
}

impl From<Error> for VerifyFailure {
    fn from(e: Error) -> Self {
        io(e)
    }
}

/// The `meta` column family holds only its known keys, and each checkpoint
/// signing time belongs to a stored checkpoint; from the first checkpoint
/// that has a time (ledgers older than the times have none), every later
/// checkpoint has one. The times themselves are not signed (see
/// docs/threat-model.md); this finds a checkpoint deleted beside its time.
fn check_meta(store: &Store) -> Result<(), VerifyFailure> {
    let cf = store.cf(CF_META);
    let mut timed = std::collections::BTreeSet::new();
    let mut cosigned = std::collections::BTreeSet::new();
    for item in store.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item.map_err(io)?;
        if let Some(rest) = k.strip_prefix(META_COSIGNATURE) {
            let (size, name) = decode_cosignature(rest)
                .ok_or_else(|| VerifyFailure { seq: None, reason: "a cosignature key is malformed".into() })?;
            let ok = std::str::from_utf8(&v)
                .ok()
                .and_then(|l| actlog_core::witness::parse_sig_line(l).ok())
                .is_some_and(|l| l.name == name);
            if !ok {
                return fail(None, format!("the cosignature of `{name}` at tree size {size} is malformed"));
            }
            cosigned.insert(size);
        } else if let Some(size) = k.strip_prefix(META_CHECKPOINT_TIME) {
            let size = decode_seq(size)
                .filter(|_| v.len() == 8)
                .ok_or_else(|| VerifyFailure { seq: None, reason: "a checkpoint signing time is malformed".into() })?;
            timed.insert(size);
        } else if &k[..] == META_COLD_FLOOR {
            // The floor itself was read at open; here only its shape.
            if v.len() != 8 {
                return fail(None, "the cold floor is malformed");
            }
        } else if ![META_FORMAT_VERSION, META_ORIGIN, META_LEDGER_PUBLIC_KEY, META_HEAD].contains(&&k[..]) {
            return fail(None, format!("unknown meta entry `{}`", String::from_utf8_lossy(&k)));
        }
    }
    let sizes: Vec<u64> = store.checkpoints()?.into_iter().map(|(size, _)| size).collect();
    if let Some(missing) = cosigned.iter().find(|t| sizes.binary_search(t).is_err()) {
        return fail(None, format!("the checkpoint at tree size {missing} is missing (its cosignatures are stored)"));
    }
    if let Some(missing) = timed.iter().find(|t| sizes.binary_search(t).is_err()) {
        return fail(None, format!("the checkpoint at tree size {missing} is missing (its signing time is stored)"));
    }
    if let Some(first) = timed.first()
        && let Some(untimed) = sizes.iter().find(|s| *s > first && !timed.contains(s))
    {
        return fail(None, format!("the checkpoint at tree size {untimed} has no signing time"));
    }
    Ok(())
}

/// Checks every stored cosignature by a witness of `policy` over its
/// checkpoint, and finds the largest checkpoint that meets the quorum.
/// Cosignatures of witnesses the policy does not list (an older policy's)
/// are not counted. Returns (cosignatures checked, witnessed tree size).
fn check_cosignatures(
    store: &Store,
    policy: &actlog_core::witness::Policy,
) -> Result<(u64, Option<u64>), VerifyFailure> {
    let own = store.verifier_key();
    if !policy.lists_log(own) {
        return fail(None, format!("the policy does not list this ledger's key; add the line `log {}`", own.to_text()));
    }
    let notes: std::collections::BTreeMap<u64, String> = store.checkpoints()?.into_iter().collect();
    let stored = store.cosignatures().map_err(|e| VerifyFailure { seq: None, reason: e.to_string() })?;
    let mut checked = 0u64;
    let mut witnessed = None;
    for (size, lines) in &stored {
        let note = notes.get(size).ok_or_else(|| VerifyFailure {
            seq: None,
            reason: format!("the checkpoint at tree size {size} is missing (its cosignatures are stored)"),
        })?;
        let (text, _) = actlog_core::witness::split_note(note)
            .map_err(|e| VerifyFailure { seq: None, reason: format!("checkpoint at size {size}: {e}") })?;
        for line in lines {
            for w in policy.witnesses.iter().filter(|w| w.key.name == line.name) {
                if w.key.verify(text, &line.blob).is_none() {
                    return fail(
                        None,
                        format!("the stored cosignature of witness `{}` at tree size {size} does not verify", w.name),
                    );
                }
                checked += 1;
            }
        }
        if policy.quorum_met(&policy.cosigners(text, lines).into_keys().collect()) {
            witnessed = Some(*size);
        }
    }
    if witnessed.is_none() && policy.quorum != "none" {
        return fail(None, format!("no stored checkpoint meets the policy's quorum `{}`", policy.quorum));
    }
    Ok((checked, witnessed.or(notes.keys().next_back().copied().filter(|_| policy.quorum == "none"))))
}

/// A stored tile's key and value.
type StoredTile = (Box<[u8]>, Box<[u8]>);

/// Rebuilds the Merkle tiles from the leaves and compares them, in
/// lockstep, with the stored ones: each full tile as it fills, the open tile
/// of each level at the end, and nothing stored beyond them.
struct TileCursor<'a> {
    store: &'a Store,
    edges: actlog_core::tiles::TileEdges,
    levels: Vec<Option<rocksdb::DBIteratorWithThreadMode<'a, rocksdb::DB>>>,
    /// Level-0 tiles below this left RocksDB with their leaves: each is
    /// compared with the archive's copy (or with RocksDB's, where a data
    /// dir evicted before tiles were evicted still holds it).
    cold_tiles: u64,
}

impl<'a> TileCursor<'a> {
    fn next_stored(&mut self, l: u8) -> Option<Result<StoredTile, String>> {
        let i = l as usize;
        if self.levels.len() <= i {
            self.levels.resize_with(i + 1, || None);
        }
        if self.levels[i].is_none() {
            let cf = self.store.cf(CF_TILES);
            let start = encode_tile(l, if l == 0 { self.cold_tiles } else { 0 });
            let it = self.store.db().iterator_cf(&cf, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
            self.levels[i] = Some(it);
        }
        self.levels[i].as_mut().expect("iterator").next().map(|r| r.map_err(|e| format!("read error: {e}")))
    }

    fn expect_tile(&mut self, l: u8, n: u64, bytes: &[u8], what: &str) -> Result<(), String> {
        if l == 0 && n < self.cold_tiles {
            let kept = self.store.db().get_cf(&self.store.cf(CF_TILES), encode_tile(0, n));
            let kept = match kept.map_err(|e| format!("read error: {e}"))? {
                Some(v) => v,
                None => self.store.cold_tile(n).map_err(|e| format!("level-0 tile {n}: {e}"))?,
            };
            if kept != bytes {
                return Err(format!("{what} Merkle tile (0, {n}) does not match the leaves"));
            }
            return Ok(());
        }
        match self.next_stored(l) {
            Some(Ok((k, v))) => {
                if decode_tile(&k) != Some((l, n)) {
                    return Err(format!("Merkle tile ({l}, {n}) is missing"));
                }
                if v.as_ref() != bytes {
                    return Err(format!("{what} Merkle tile ({l}, {n}) does not match the leaves"));
                }
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(format!("Merkle tile ({l}, {n}) is missing")),
        }
    }

    /// A node the rebuilt frontier completed.
    fn expect(&mut self, level: u8, index: u64, hash: &Hash) -> Result<(), String> {
        match self.edges.push(level, index, *hash) {
            Some((l, n, bytes)) => self.expect_tile(l, n, &bytes, "the full"),
            None => Ok(()),
        }
    }

    /// After the last leaf: the open tiles, and nothing beyond.
    fn finish(&mut self) -> Result<(), String> {
        let (open, levels) = self.edges.open_tiles();
        for (l, n, bytes) in open {
            self.expect_tile(l, n, &bytes, "the open")?;
        }
        for l in 0..levels {
            if let Some(Ok((k, _))) = self.next_stored(l)
                && decode_tile(&k).map(|(kl, _)| kl) == Some(l)
            {
                return Err(format!("a Merkle tile is stored beyond the tree at tile level {l}"));
            }
        }
        let start = encode_tile(levels, 0);
        let cf = self.store.cf(CF_TILES);
        let mut it = self.store.db().iterator_cf(&cf, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        if let Some(Ok((k, _))) = it.next() {
            return Err(format!("a Merkle tile is stored beyond the tree: {:?}", decode_tile(&k)));
        }
        Ok(())
    }
}

const CHUNK_LEAVES: usize = 8192;

/// A leaf entry (key, `chain hash ‖ leaf`) and, below the cold floor, its
/// envelope from the archive.
type ColdOrHot = (Box<[u8]>, Box<[u8]>, Option<Vec<u8>>);

/// Verifies the whole store. See the module docs for what is checked.
pub fn verify(store: &Store, opts: &VerifyOptions<'_>) -> Result<VerifyReport, VerifyFailure> {
    if let Some(k) = &opts.expected_key
        && k != store.verifier_key()
    {
        return fail(
            None,
            format!(
                "the ledger's key is {}, not the expected {}: this is another ledger, or it was re-keyed",
                store.verifier_key().to_text(),
                k.to_text()
            ),
        );
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.jobs).build().map_err(io)?;
    let head = store.head();
    let total = head.tree_size;
    let ledger_key = *store.verifier_key().key.as_bytes();
    let ledger_pk = store.verifier_key().key;
    let ledger_fp = key_fingerprint(&ledger_key);

    let mut checkpoints = store.checkpoints()?.into_iter().peekable();
    let mut checkpoints_checked = 0u64;
    let trusted = match &opts.trusted_checkpoint {
        Some(note) => Some(Checkpoint::open(note, store.verifier_key()).map_err(|e| VerifyFailure {
            seq: None,
            reason: format!("the trusted checkpoint does not verify with this ledger's key: {e}"),
        })?),
        None => None,
    };
    if let Some(t) = &trusted
        && t.tree_size > total
    {
        return fail(
            None,
            format!(
                "the trusted checkpoint covers {} leaves but the ledger has only {total}: leaves were removed",
                t.tree_size
            ),
        );
    }

    let mut frontier = Frontier::default();
    let cold_tiles = store.cold_floor() / actlog_core::tiles::TILE_WIDTH;
    let mut nodes = TileCursor { store, edges: Default::default(), levels: Vec::new(), cold_tiles };
    let mut chain = [0u8; 32];
    // Shared with the checker thread; copied on write when a ledger record
    // changes it while the checker still holds the old one.
    let mut rebuilt = std::sync::Arc::new(Rebuilt::default());
    let mut id_digest = [0u8; 32];
    let signatures = AtomicU64::new(0);

    let check_roots = |frontier: &Frontier,
                       checkpoints: &mut std::iter::Peekable<std::vec::IntoIter<(u64, String)>>,
                       checked: &mut u64|
     -> Result<(), VerifyFailure> {
        let size = frontier.size();
        if let Some(t) = &trusted
            && t.tree_size == size
            && t.root != frontier.root()
        {
            return fail(
                size.checked_sub(1),
                "the trusted checkpoint's root does not match the leaves: the log was rewritten",
            );
        }
        while let Some((cp_size, note)) = checkpoints.peek() {
            if *cp_size > size {
                break;
            }
            let cp = Checkpoint::open(note, store.verifier_key())
                .map_err(|e| VerifyFailure { seq: None, reason: format!("checkpoint at size {cp_size}: {e}") })?;
            if cp.tree_size != *cp_size {
                return fail(None, format!("checkpoint stored under size {cp_size} says {}", cp.tree_size));
            }
            if *cp_size == size && cp.root != frontier.root() {
                return fail(
                    size.checked_sub(1),
                    format!("checkpoint at size {cp_size} has a root that does not match the leaves"),
                );
            }
            if *cp_size < size {
                return fail(None, format!("checkpoint at size {cp_size} was not reached in order"));
            }
            *checked += 1;
            checkpoints.next();
        }
        Ok(())
    };
    check_roots(&frontier, &mut checkpoints, &mut checkpoints_checked)?;

    let leaves_cf = store.cf(CF_LEAVES);
    let env_cf = store.cf(CF_ENVELOPES);
    let scan = || {
        // A full scan: read ahead, and do not evict the serving working set.
        let mut o = rocksdb::ReadOptions::default();
        o.fill_cache(false);
        o.set_readahead_size(4 << 20);
        o
    };
    // Below the cold floor, leaves and envelopes come from the archive in
    // chunks, unchecked, and go through the same checks as stored ones.
    let floor = store.cold_floor().min(total);
    let hot_start = encode_seq(floor);
    let hot_mode = rocksdb::IteratorMode::From(&hot_start, rocksdb::Direction::Forward);
    let mut hot_leaves = store.db().iterator_cf_opt(&leaves_cf, scan(), hot_mode);
    let mut cold: std::collections::VecDeque<(u64, Vec<u8>, Vec<u8>)> = Default::default();
    let mut cold_next = 0u64;
    let mut leaves = std::iter::from_fn(move || -> Option<Result<ColdOrHot, VerifyFailure>> {
        if cold.is_empty() && cold_next < floor {
            let to = (cold_next + crate::COLD_CHUNK).min(floor);
            match store.cold_raw(cold_next, to) {
                Ok(c) => cold.extend(c),
                Err(e) => return Some(Err(VerifyFailure { seq: Some(cold_next), reason: e.to_string() })),
            }
            cold_next = to;
        }
        if let Some((seq, leaf, envelope)) = cold.pop_front() {
            return Some(Ok((encode_seq(seq).to_vec().into_boxed_slice(), leaf.into_boxed_slice(), Some(envelope))));
        }
        hot_leaves.next().map(|r| r.map(|(k, v)| (k, v, None)).map_err(io))
    });
    // Structural mode reads envelopes only for ledger records (point reads).
    let mut envelopes = opts.signatures.then(|| store.db().iterator_cf_opt(&env_cf, scan(), hot_mode));
    let mut seq = 0u64;
    let mut jobs: Vec<Job> = Vec::with_capacity(CHUNK_LEAVES);
    std::thread::scope(|scope| -> Result<VerifyReport, VerifyFailure> {
        // Signature checks run on the pool while this thread scans on: the
        // checker takes chunks in seq order and keeps the first failure.
        let (to_checker, chunks) = std::sync::mpsc::sync_channel::<(Vec<Job>, std::sync::Arc<Rebuilt>)>(2);
        let checker = scope.spawn(|| {
            let mut first: Option<VerifyFailure> = None;
            let mut index_digest = [0u8; 32];
            for (chunk, reg) in chunks {
                if first.is_some() {
                    continue;
                }
                match pool.install(|| check_jobs(&chunk, &reg, &signatures)) {
                    Ok(d) => xor_into(&mut index_digest, &d),
                    Err(f) => first = Some(f),
                }
            }
            match first {
                Some(f) => Err(f),
                None => Ok(index_digest),
            }
        });
        // Structural checks stop at the first bad leaf; signature checks of the
        // leaves before it still run, so the report names the first bad seq.
        let structural = (|| -> Result<(), VerifyFailure> {
            for item in leaves.by_ref() {
                let (k, v, cold_envelope) = item?;
                let key_seq = decode_seq(&k)
                    .ok_or_else(|| VerifyFailure { seq: Some(seq), reason: "leaf key is malformed".into() })?;
                if key_seq != seq {
                    return fail(Some(seq), format!("leaf {seq} is missing (next stored leaf is {key_seq})"));
                }
                if seq >= total {
                    return fail(Some(seq), format!("leaf {seq} lies beyond the head ({total} leaves)"));
                }
                if v.len() < 32 {
                    return fail(Some(seq), "stored leaf is truncated");
                }
                let leaf_bytes = &v[32..];
                let leaf = Leaf::decode(leaf_bytes)
                    .map_err(|e| VerifyFailure { seq: Some(seq), reason: format!("leaf does not decode: {e}") })?;
                if leaf.seq != seq {
                    return fail(Some(seq), format!("leaf says seq {}", leaf.seq));
                }
                if leaf.prev_chain_hash != chain {
                    return fail(
                        Some(seq),
                        "leaf does not commit to the previous chain hash (reordered, inserted or deleted leaves)",
                    );
                }
                chain = chain_hash(&chain, leaf_bytes);
                if v[..32] != chain {
                    return fail(Some(seq), "stored chain hash does not match the recomputed blake3 chain");
                }
                let leaf_hash = merkle::leaf_hash(leaf_bytes);
                let mut node_err = None;
                frontier.push(leaf_hash, |level, index, hash| {
                    if node_err.is_none()
                        && let Err(e) = nodes.expect(level, index, &hash)
                    {
                        node_err = Some(e);
                    }
                });
                if let Some(e) = node_err {
                    return fail(Some(seq), e);
                }
                // The event-id index is derived data, checked in full mode only;
                // structural mode covers leaves, chain, tree and checkpoints.
                if opts.signatures {
                    let mut h = blake3::Hasher::new();
                    h.update(leaf.event_id.as_bytes());
                    h.update(&seq.to_be_bytes());
                    h.update(&leaf.payload_sha256);
                    xor_into(&mut id_digest, h.finalize().as_bytes());
                }

                let envelope: Vec<u8> = match (cold_envelope, envelopes.as_mut()) {
                    (Some(e), _) => e,
                    (None, Some(it)) => {
                        let (ek, envelope) = match it.next() {
                            Some(r) => r.map_err(io)?,
                            None => return fail(Some(seq), "envelope is missing"),
                        };
                        if decode_seq(&ek) != Some(seq) {
                            return fail(Some(seq), "envelope is missing");
                        }
                        envelope.to_vec()
                    }
                    (None, None) if leaf.kind == LeafKind::LedgerSigned => store
                        .db()
                        .get_cf(&env_cf, encode_seq(seq))
                        .map_err(io)?
                        .ok_or_else(|| VerifyFailure { seq: Some(seq), reason: "envelope is missing".into() })?,
                    (None, None) => Vec::new(),
                };
                if leaf.kind == LeafKind::LedgerSigned {
                    // Ledger records are checked in order: they change the registry.
                    std::sync::Arc::make_mut(&mut rebuilt).apply_record(&leaf, &envelope, &ledger_pk, &ledger_fp)?;
                    signatures.fetch_add(1, Ordering::Relaxed);
                } else if opts.signatures {
                    jobs.push(Job::new(leaf, envelope));
                }
                seq += 1;
                check_roots(&frontier, &mut checkpoints, &mut checkpoints_checked)?;
                if jobs.len() >= CHUNK_LEAVES {
                    let chunk = std::mem::replace(&mut jobs, Vec::with_capacity(CHUNK_LEAVES));
                    // The checker stopped only after a failure; the scan goes on to
                    // find any earlier structural fault.
                    let _ = to_checker.send((chunk, std::sync::Arc::clone(&rebuilt)));
                }
                if seq.is_multiple_of(65_536)
                    && let Some(p) = opts.progress
                {
                    p(seq, total);
                }
            }
            Ok(())
        })();
        // Whatever is pending belongs to seqs before any structural fault.
        let _ = to_checker.send((std::mem::take(&mut jobs), std::sync::Arc::clone(&rebuilt)));
        drop(to_checker);
        // The stored indexes are read while the checker works through its
        // last chunks (this thread would otherwise wait); they are compared
        // only after everything before them in the report order.
        let stored_indexes = (opts.signatures && structural.is_ok())
            .then(|| Ok::<_, VerifyFailure>((stored_event_ids_digest(store)?, stored_index_digest(store)?)));
        // A signature failure comes first: chunks go in seq order, so it
        // precedes any structural fault.
        let index_digest = checker.join().expect("checker thread")?;
        structural?;
        if let Some(p) = opts.progress {
            p(seq, total);
        }
        if seq != total {
            return fail(Some(seq), format!("the head says {total} leaves but only {seq} are stored"));
        }
        let beyond = match envelopes.as_mut() {
            Some(it) => it.next().is_some(),
            None => store
                .db()
                .iterator_cf(&env_cf, rocksdb::IteratorMode::End)
                .next()
                .transpose()
                .map_err(io)?
                .is_some_and(|(k, _)| decode_seq(&k).is_none_or(|s| s >= total)),
        };
        if beyond {
            return fail(Some(seq), "an envelope is stored beyond the last leaf");
        }
        if chain != head.chain_hash {
            return fail(seq.checked_sub(1), "the head's chain hash does not match the leaves");
        }
        if frontier.root() != head.root {
            return fail(seq.checked_sub(1), "the head's root does not match the leaves");
        }
        if let Some((size, _)) = checkpoints.next() {
            return fail(None, format!("checkpoint at size {size} covers more leaves than the ledger has ({total})"));
        }
        // The open tiles, and nothing stored beyond what the leaves produce.
        if let Err(e) = nodes.finish() {
            return fail(None, e);
        }
        if opts.signatures {
            let (stored_ids, stored_index) = stored_indexes.expect("read when signatures are checked")?;
            if stored_ids != id_digest {
                return fail(None, "the event_id index does not match the leaves");
            }
            if stored_index != index_digest {
                return fail(None, "the secondary index does not match the events");
            }
        }
        check_registry(store, &rebuilt)?;
        check_meta(store)?;
        let (cosignatures, witnessed_tree_size) = match &opts.policy {
            Some(p) => check_cosignatures(store, p)?,
            None => (0, None),
        };
        Ok(VerifyReport {
            tree_size: total,
            root: frontier.root(),
            checkpoints: checkpoints_checked,
            signatures: signatures.load(Ordering::Relaxed),
            cosignatures,
            witnessed_tree_size,
        })
    })
}

/// XOR of blake3 over the secondary-index keys these events imply: what
/// the `index` column family must hold for them.
fn index_digest(events: &[Verified]) -> Hash {
    let mut digest = [0u8; 32];
    for ev in events {
        for (field, value) in crate::writer::index_values(&ev.fields) {
            if value.len() <= INDEX_VALUE_BYTES_MAX {
                xor_into(&mut digest, blake3::hash(&encode_index(field, value, ev.seq)).as_bytes());
            }
        }
    }
    digest
}

fn xor_into(acc: &mut Hash, h: &Hash) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a ^= b;
    }
}

/// Checks jobs in parallel (on the current rayon pool); returns the XOR
/// digest of the secondary-index keys the events imply, or the lowest
/// failing seq. `signatures` counts the signatures checked.
pub fn check_jobs(jobs: &[Job], reg: &Rebuilt, signatures: &AtomicU64) -> Result<Hash, VerifyFailure> {
    let digests = check_parallel(jobs, reg, signatures, |verified| index_digest(&verified))?;
    let mut digest = [0u8; 32];
    for d in digests {
        xor_into(&mut digest, &d);
    }
    Ok(digest)
}

/// XOR of blake3(event id ‖ seq ‖ payload SHA-256) over the stored
/// event-id index (the payload hash is what duplicate detection compares).
fn stored_event_ids_digest(store: &Store) -> Result<Hash, VerifyFailure> {
    let cf = store.cf(CF_EVENT_IDS);
    let mut digest = [0u8; 32];
    for item in store.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item.map_err(io)?;
        let (seq, payload_sha256) = decode_event_id_value(&v)
            .ok_or_else(|| VerifyFailure { seq: None, reason: "event id index entry is malformed".into() })?;
        let mut h = blake3::Hasher::new();
        h.update(&k);
        h.update(&seq.to_be_bytes());
        h.update(&payload_sha256);
        xor_into(&mut digest, h.finalize().as_bytes());
    }
    Ok(digest)
}

/// XOR of blake3(key) over the stored secondary index; it must equal the
/// digest of the entries the events imply.
fn stored_index_digest(store: &Store) -> Result<Hash, VerifyFailure> {
    let cf = store.cf(CF_INDEX);
    let mut digest = [0u8; 32];
    for item in store.db().iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (k, _) = item.map_err(io)?;
        xor_into(&mut digest, blake3::hash(&k).as_bytes());
    }
    Ok(digest)
}

fn check_registry(store: &Store, rebuilt: &Rebuilt) -> Result<(), VerifyFailure> {
    // The column family holds exactly the ledger's records, each under its
    // own name and byte for byte as the writer serializes it. Comparing
    // parsed records alone would miss a change that keeps their meaning (an
    // unknown field, an optional one renamed away), and an entry moved to
    // another key or copied under a new one.
    let mut want: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::collections::BTreeMap::new();
    for r in rebuilt.keys() {
        want.insert([REG_KEY_PREFIX, r.name.as_bytes()].concat(), serde_json::to_vec(r).expect("serializable"));
    }
    for r in rebuilt.tokens() {
        want.insert([REG_TOKEN_PREFIX, r.name.as_bytes()].concat(), serde_json::to_vec(r).expect("serializable"));
    }
    let cf = store.cf(CF_REGISTRY);
    for item in store.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item.map_err(io)?;
        let entry = String::from_utf8_lossy(&k);
        match want.remove(&*k) {
            Some(w) if *w == *v => {}
            Some(_) => return fail(None, format!("registry entry `{entry}` differs from the ledger's record")),
            None => {
                return fail(
                    None,
                    format!("registry entry `{entry}` is not a record of the ledger under its own name"),
                );
            }
        }
    }
    if let Some(k) = want.keys().next() {
        return fail(
            None,
            format!("the ledger's record `{}` is missing from the registry", String::from_utf8_lossy(k)),
        );
    }
    let reg = store.registry();
    let mut stored_keys: Vec<_> = reg.keys.values().cloned().collect();
    let mut want_keys: Vec<_> = rebuilt.keys().cloned().collect();
    stored_keys.sort_by(|a, b| a.name.cmp(&b.name));
    want_keys.sort_by(|a, b| a.name.cmp(&b.name));
    if stored_keys != want_keys {
        return fail(None, "the stored key registry does not match the ledger's key records");
    }
    let mut stored_tokens: Vec<_> = reg.tokens.values().cloned().collect();
    let mut want_tokens: Vec<_> = rebuilt.tokens().cloned().collect();
    stored_tokens.sort_by(|a, b| a.name.cmp(&b.name));
    want_tokens.sort_by(|a, b| a.name.cmp(&b.name));
    if stored_tokens != want_tokens {
        return fail(None, "the stored token registry does not match the ledger's token records");
    }
    Ok(())
}
