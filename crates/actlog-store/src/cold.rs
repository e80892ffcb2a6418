//! The cold floor: leaves and envelopes below it have left RocksDB for the
//! archive (`serve --hot-retention`, contract §12).
//!
//! Every seq below the floor is read through a [`ColdSource`] the caller
//! attaches (the archive), and each leaf it returns is checked against the
//! Merkle tiles that stay in RocksDB, and each envelope against its leaf,
//! before anyone sees it. A changed archive object is reported as
//! corruption, never served.
//!
//! What stays in RocksDB below the floor: the tiles of level 1 and up
//! (one hash per 256 leaves, so the tree stays provable at every size),
//! the event-id and secondary indexes (so chains, lookups by id and
//! duplicate detection still work), checkpoints and the registry. What
//! leaves: the `leaves` and `envelopes` column families, and the full
//! level-0 tiles below the floor. A level-0 tile read back from the archive
//! is checked against its hash in the level-1 tile, which stays.
//!
//! Invariants (asserted in [`Store::evict`]):
//! - The floor only rises, and never reaches the head: at least one leaf
//!   stays hot, so recovery can check the head against the last leaf.
//! - The floor is raised only below the latest checkpoint, and only after
//!   the cold source gave back every leaf and envelope below the new floor
//!   byte for byte as RocksDB holds them.
//! - Readers take a RocksDB snapshot before they read the floor, so a read
//!   racing an eviction finds each seq either hot in its snapshot or cold.
//!   Tile readers read RocksDB first and the floor only on a miss: the
//!   floor is raised before the delete, so a tile missing below it is cold.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actlog_core::leaf::{Leaf, chain_hash, sha256};
use actlog_core::merkle::{self, Hash, NodeReader};
use actlog_core::tiles::{TILE_HEIGHT, TILE_WIDTH};

use crate::keys::*;
use crate::{Error, Result, Store, StoredEvent, Tiles};

/// One leaf and its envelope as the archive keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdLeaf {
    /// The seq.
    pub seq: u64,
    /// The encoded leaf (`schema/leaf.md`), without the chain hash.
    pub leaf: Vec<u8>,
    /// The envelope, or the stored record of a token-authenticated event.
    pub envelope: Vec<u8>,
}

/// Where leaves and envelopes below the cold floor are read from.
pub trait ColdSource: Send + Sync {
    /// The leaves of `seqs` (ascending, all below the floor), in that order.
    /// A seq the source does not hold is an error naming it.
    fn read(&self, seqs: &[u64]) -> std::result::Result<Vec<ColdLeaf>, String>;

    /// The bytes of full level-0 tile `index` (256 leaf hashes, 8,192
    /// bytes), all of whose leaves are below the floor.
    fn tile(&self, index: u64) -> std::result::Result<Vec<u8>, String>;
}

/// Whether full level-0 tile `n` is below the floor, so read from the archive.
pub(crate) fn tile_is_cold(shared: &crate::Shared, n: u64) -> bool {
    (n + 1).saturating_mul(TILE_WIDTH) <= shared.cold_floor.load(Ordering::Acquire)
}

/// Full level-0 tile `n` from the cold source, checked against the level-1
/// tile that stays in RocksDB: its 256 hashes must fold to the hash there.
pub(crate) fn checked_cold_tile(shared: &crate::Shared, tiles: &Tiles<'_>, n: u64) -> Result<Vec<Hash>> {
    let source = cold_source_of(shared)?;
    let bytes = source.tile(n).map_err(Error::Io)?;
    if bytes.len() as u64 != TILE_WIDTH * 32 {
        return Err(Error::Corruption(format!("the archive's level-0 tile {n} has {} bytes, not 8192", bytes.len())));
    }
    let hashes = actlog_core::tiles::hashes_of(&bytes);
    if actlog_core::tiles::fold(&hashes) != tiles.node(TILE_HEIGHT, n)? {
        return Err(Error::Corruption(format!(
            "the archive's level-0 tile {n} does not match the ledger's Merkle tree (the archive object was changed)"
        )));
    }
    Ok(hashes)
}

fn cold_source_of(shared: &crate::Shared) -> Result<&Arc<dyn ColdSource>> {
    shared.cold.get().ok_or_else(|| Error::Refused {
        code: "archived",
        message: format!(
            "events below seq {} have left this data directory for the archive; name it with --archive",
            shared.cold_floor.load(Ordering::Acquire)
        ),
    })
}

/// A seq, its `leaves` value (`chain hash ‖ leaf`) and its envelope.
pub(crate) type RawEntry = (u64, Vec<u8>, Vec<u8>);

/// Seqs read from the cold source at a time by scans and eviction checks.
pub const COLD_CHUNK: u64 = 8_192;

impl Store {
    /// Every seq below this has its leaf and envelope only in the archive.
    pub fn cold_floor(&self) -> u64 {
        self.shared.cold_floor.load(Ordering::Acquire)
    }

    /// Attaches where seqs below the cold floor are read from. Once only;
    /// a second call is refused.
    pub fn set_cold_source(&self, source: Arc<dyn ColdSource>) -> Result<()> {
        self.shared.cold.set(source).map_err(|_| Error::Refused {
            code: "cold_source_set",
            message: "a cold source is already attached".into(),
        })
    }

    fn cold_source(&self) -> Result<&Arc<dyn ColdSource>> {
        cold_source_of(&self.shared)
    }

    /// Full level-0 tile `n` from the cold source, as it holds it
    /// (unchecked: `verify` compares it with the tile it rebuilds).
    pub(crate) fn cold_tile(&self, n: u64) -> Result<Vec<u8>> {
        self.cold_source()?.tile(n).map_err(Error::Io)
    }

    /// The first level-0 tile RocksDB still holds (`u64::MAX` when it
    /// holds none).
    fn first_stored_tile(&self) -> Result<u64> {
        let start = encode_tile(0, 0);
        let mut it = self
            .shared
            .db
            .iterator_cf(&self.cf(CF_TILES), rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        Ok(match it.next().transpose()? {
            Some((k, _)) => match decode_tile(&k) {
                Some((0, n)) => n,
                _ => u64::MAX,
            },
            None => u64::MAX,
        })
    }

    /// Reads `seqs` (ascending, below the floor) from the cold source and
    /// checks each against the stored tree.
    pub(crate) fn cold_events(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let got = self.cold_source()?.read(seqs).map_err(Error::Io)?;
        if got.len() != seqs.len() {
            return Err(Error::Io(format!("the archive gave {} leaves for {} seqs", got.len(), seqs.len())));
        }
        let tiles = Tiles::of(&self.shared);
        let mut out = Vec::with_capacity(seqs.len());
        for (seq, c) in seqs.iter().zip(got) {
            out.push(checked_cold(&tiles, *seq, c)?);
        }
        Ok(out)
    }

    /// The raw cold entries of `[from, to)` in the shape of the `leaves`
    /// and `envelopes` column families (`chain hash ‖ leaf`, envelope),
    /// unchecked: `verify` checks them as it checks stored leaves.
    pub(crate) fn cold_raw(&self, from: u64, to: u64) -> Result<Vec<RawEntry>> {
        let seqs: Vec<u64> = (from..to).collect();
        let got = self.cold_source()?.read(&seqs).map_err(Error::Io)?;
        let mut out = Vec::with_capacity(got.len());
        for (seq, c) in seqs.into_iter().zip(got) {
            if c.seq != seq {
                return Err(Error::Corruption(format!("the archive gave leaf {} for seq {seq}", c.seq)));
            }
            // The chain hash is recomputed from the leaf's own link; verify
            // then checks that link against the previous leaf.
            let prev = Leaf::decode(&c.leaf).map(|l| l.prev_chain_hash).unwrap_or([0; 32]);
            let mut value = chain_hash(&prev, &c.leaf).to_vec();
            value.extend_from_slice(&c.leaf);
            out.push((seq, value, c.envelope));
        }
        Ok(out)
    }

    /// Moves the floor up to `end`: the leaves and envelopes of
    /// `[floor, end)` leave RocksDB, and so do the full level-0 tiles
    /// below `end`. Refused unless a cold source is attached, `end` is
    /// below the head and at or below the latest checkpoint, and the source
    /// gives back every one of them byte for byte. Returns the number of
    /// events that left.
    pub fn evict(&self, end: u64) -> Result<u64> {
        if self.tx.is_none() {
            return Err(Error::ReadOnly);
        }
        let _one = self.shared.evicting.lock().unwrap_or_else(|p| p.into_inner());
        let floor = self.cold_floor();
        let refuse = |message: String| Err(Error::Refused { code: "evict_refused", message });
        if end <= floor {
            return Ok(0);
        }
        let size = self.head().tree_size;
        if end >= size {
            return refuse(format!("seq {end} is not below the head ({size}): the last leaf stays in RocksDB"));
        }
        let covered = self.latest_checkpoint().map(|(s, _)| s).unwrap_or(0);
        if end > covered {
            return refuse(format!("seq {end} is past the latest checkpoint ({covered})"));
        }
        self.cold_source()?;
        let mut from = floor;
        while from < end {
            let to = (from + COLD_CHUNK).min(end);
            let seqs: Vec<u64> = (from..to).collect();
            let hot = self.events_at(&seqs)?;
            let cold = self.cold_events(&seqs)?;
            for (h, c) in hot.iter().zip(&cold) {
                if h.leaf_bytes != c.leaf_bytes || h.envelope != c.envelope || h.chain_hash != c.chain_hash {
                    return refuse(format!("the archive's copy of seq {} differs from the ledger's", h.seq));
                }
            }
            if hot.len() != seqs.len() || cold.len() != seqs.len() {
                return refuse(format!("seqs {from}..{to} could not all be read back"));
            }
            from = to;
        }
        // The full level-0 tiles below `end` that RocksDB still holds.
        let tiles_end = end / TILE_WIDTH;
        let tiles_from = self.first_stored_tile()?.min(tiles_end);
        for n in tiles_from..tiles_end {
            let stored = self.shared.db.get_cf(&self.cf(CF_TILES), encode_tile(0, n))?;
            let cold = self.cold_tile(n)?;
            if stored.as_deref() != Some(&cold[..]) {
                return refuse(format!("the archive's copy of level-0 tile {n} differs from the ledger's"));
            }
        }
        // Readers that see the new floor go to the archive, which holds the
        // same bytes; readers that saw the old one hold a snapshot taken
        // before this delete.
        self.shared.cold_floor.store(end, Ordering::Release);
        let db = &self.shared.db;
        let (lo, hi) = (encode_seq(floor), encode_seq(end));
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(&self.cf(CF_META), META_COLD_FLOOR, end.to_be_bytes());
        wb.delete_range_cf(&self.cf(CF_LEAVES), lo, hi);
        wb.delete_range_cf(&self.cf(CF_ENVELOPES), lo, hi);
        let tiles_hi = encode_tile(0, tiles_end);
        if tiles_from < tiles_end {
            wb.delete_range_cf(&self.cf(CF_TILES), encode_tile(0, tiles_from), tiles_hi);
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)?;
        for cf in [CF_LEAVES, CF_ENVELOPES] {
            db.compact_range_cf(&self.cf(cf), None::<&[u8]>, Some(&hi[..]));
        }
        if tiles_from < tiles_end {
            db.compact_range_cf(&self.cf(CF_TILES), None::<&[u8]>, Some(&tiles_hi[..]));
        }
        Ok(end - floor)
    }
}

/// A cold leaf checked against the tree's stored leaf hash and its
/// envelope against the leaf.
fn checked_cold(tiles: &Tiles<'_>, seq: u64, c: ColdLeaf) -> Result<StoredEvent> {
    let bad = |why: &str| Error::Corruption(format!("the archive's leaf {seq} {why}"));
    if c.seq != seq {
        return Err(bad(&format!("came back as seq {}", c.seq)));
    }
    let leaf = Leaf::decode(&c.leaf).map_err(|e| bad(&format!("does not decode: {e}")))?;
    if leaf.seq != seq {
        return Err(bad(&format!("says seq {}", leaf.seq)));
    }
    let leaf_hash = merkle::leaf_hash(&c.leaf);
    if tiles.node(0, seq)? != leaf_hash {
        return Err(bad("does not match the ledger's Merkle tree (the archive object was changed)"));
    }
    if sha256(&c.envelope) != leaf.envelope_sha256 {
        return Err(bad("has an envelope that does not match it (the archive object was changed)"));
    }
    let chain = chain_hash(&leaf.prev_chain_hash, &c.leaf);
    Ok(StoredEvent { seq, leaf_hash, leaf, leaf_bytes: c.leaf, chain_hash: chain, envelope: c.envelope })
}

/// The floor stored in `meta`, or 0.
pub(crate) fn stored_floor(db: &rocksdb::DB) -> Result<u64> {
    let meta = db.cf_handle(CF_META).expect("meta cf");
    match db.get_cf(&meta, META_COLD_FLOOR)? {
        None => Ok(0),
        Some(v) => {
            v.try_into().map(u64::from_be_bytes).map_err(|_| Error::Corruption("the cold floor is malformed".into()))
        }
    }
}
