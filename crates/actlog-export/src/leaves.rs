//! `leaves.parquet` (`seq`, `leaf` and `envelope` of every leaf a bundle
//! proves) and the leaf-by-leaf check of a bundle: order, encoding, the
//! blake3 chain, an inclusion proof at the end of each run, and the rows
//! each verified envelope implies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actlog_core::Hash;
use actlog_core::bundle::{BundleFailure, LEAVES_FILE, MANIFEST_FILE, bad};
use actlog_core::leaf::{Leaf, chain_hash};
use actlog_core::ledger::{Rebuilt, StoredEvent, Verified};
use actlog_core::merkle;
use actlog_core::rows::{self, Row};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use arrow::row::RowConverter;

use crate::verify::{Expected, line_digest, row_digests};
use crate::{Format, date_of, ocsf};

/// Leaves read, checked and decoded (or written) at a time.
pub const CHUNK_LEAVES: usize = 8_192;

/// The schema of `leaves.parquet`.
pub fn leaves_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("leaf", DataType::Binary, false),
        Field::new("envelope", DataType::Binary, true),
    ]))
}

/// Runs parquet decoding that could panic on a malformed file (which a
/// holder of the ledger key could sign), turning a panic into a failure.
pub fn guarded<T>(file: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, BundleFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bad(Some(file), None, format!("not readable: {e}")),
        Err(_) => bad(Some(file), None, "not readable: the Parquet decoder failed on it"),
    }
}

/// The columns of one batch of `leaves.parquet`, checked.
pub struct LeavesBatch<'a> {
    /// `seq`.
    pub seq: &'a arrow::array::UInt64Array,
    /// `leaf`.
    pub leaf: &'a arrow::array::BinaryArray,
    envelope: &'a arrow::array::BinaryArray,
}

impl<'a> LeavesBatch<'a> {
    /// The columns of `batch`.
    pub fn of(batch: &'a RecordBatch) -> Result<LeavesBatch<'a>, BundleFailure> {
        let col = |name: &str, t: DataType| {
            batch.column_by_name(name).filter(|c| *c.data_type() == t).ok_or_else(|| BundleFailure {
                file: Some(LEAVES_FILE.into()),
                seq: None,
                reason: format!("column `{name}` is missing or not {t}"),
            })
        };
        let seq = col("seq", DataType::UInt64)?.as_primitive::<UInt64Type>();
        let leaf = col("leaf", DataType::Binary)?.as_binary::<i32>();
        let envelope = col("envelope", DataType::Binary)?.as_binary::<i32>();
        if seq.null_count() > 0 || leaf.null_count() > 0 {
            return bad(Some(LEAVES_FILE), None, "`seq` and `leaf` may not be null");
        }
        Ok(LeavesBatch { seq, leaf, envelope })
    }

    /// The envelope of row `i`, if kept.
    pub fn envelope(&self, i: usize) -> Option<&'a [u8]> {
        self.envelope.is_valid(i).then(|| self.envelope.value(i))
    }
}

/// The leaf-by-leaf state of a bundle check.
pub struct LeafCheck<'a> {
    pub(crate) tree_size: u64,
    pub(crate) root: Hash,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
    pub(crate) proofs: &'a HashMap<u64, (Hash, Vec<Hash>)>,
    /// The previous leaf's seq and leaf hash.
    pub(crate) prev: Option<(u64, Hash)>,
    /// Chain hash after the previous leaf.
    pub(crate) chain: Hash,
    pub(crate) rebuilt: Rebuilt,
    /// What the data files hold, and the origin OCSF records name.
    pub(crate) format: Format,
    pub(crate) origin: String,
    /// Key names, of the keys applied so far.
    pub(crate) names: Arc<rows::KeyNames>,
    pub(crate) expected: Expected,
    pub(crate) events: u64,
    pub(crate) leaves: u64,
}

impl LeafCheck<'_> {
    fn fail<T>(&self, seq: u64, reason: impl Into<String>) -> Result<T, BundleFailure> {
        bad(Some(LEAVES_FILE), Some(seq), reason)
    }

    /// Checks one leaf's place: order, encoding, chain link, and at the end
    /// of each run its inclusion proof. Returns the leaf, its hash and the
    /// chain hash after it.
    pub(crate) fn leaf(&mut self, seq: u64, bytes: &[u8]) -> Result<(Leaf, Hash, Hash), BundleFailure> {
        if seq >= self.tree_size {
            return self.fail(seq, format!("beyond the checkpoint's tree size {}", self.tree_size));
        }
        if seq > self.last {
            return self.fail(seq, "after the last exported event");
        }
        let leaf = Leaf::decode(bytes).or_else(|e| self.fail(seq, format!("leaf does not decode: {e}")))?;
        if leaf.seq != seq {
            return self.fail(seq, format!("the leaf says seq {}", leaf.seq));
        }
        match self.prev {
            Some((p, _)) if seq <= p => {
                return self.fail(seq, format!("not after seq {p}: leaves must be in seq order"));
            }
            Some((p, _)) if seq == p + 1 => {
                if leaf.prev_chain_hash != self.chain {
                    return self.fail(
                        seq,
                        format!("does not commit to the chain hash after seq {p} (a leaf was changed, reordered or inserted)"),
                    );
                }
            }
            prev => {
                if seq > self.first {
                    let from = prev.map_or(self.first, |(p, _)| p + 1).max(self.first);
                    let what = if from + 1 == seq {
                        format!("leaf {from} is")
                    } else {
                        format!("leaves {from} to {} are", seq - 1)
                    };
                    return self.fail(seq, format!("{what} missing"));
                }
                if let Some((p, h)) = prev {
                    self.prove(p, h)?;
                }
            }
        }
        let leaf_hash = merkle::leaf_hash(bytes);
        if seq == self.first
            && let Some((h, _)) = self.proofs.get(&seq)
            && *h != leaf_hash
        {
            return bad(Some(MANIFEST_FILE), Some(seq), "the first exported leaf's proof names another leaf hash");
        }
        self.chain = chain_hash(&leaf.prev_chain_hash, bytes);
        self.prev = Some((seq, leaf_hash));
        self.leaves += 1;
        Ok((leaf, leaf_hash, self.chain))
    }

    /// The inclusion proof of the leaf that ends a run.
    fn prove(&self, seq: u64, leaf_hash: Hash) -> Result<(), BundleFailure> {
        let Some((h, path)) = self.proofs.get(&seq) else {
            return bad(Some(MANIFEST_FILE), Some(seq), "no inclusion proof for the leaf that ends this run of leaves");
        };
        if *h != leaf_hash {
            return bad(Some(MANIFEST_FILE), Some(seq), "the proof's leaf hash is not this leaf's");
        }
        if !merkle::verify_inclusion(&leaf_hash, seq, self.tree_size, path, &self.root) {
            return bad(Some(MANIFEST_FILE), Some(seq), "the inclusion proof does not verify against the checkpoint");
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<(), BundleFailure> {
        match self.prev {
            Some((p, h)) if p == self.last => {
                self.prove(p, h)?;
                // The first exported leaf has its own proof too (contract section 8).
                if let Some((h, path)) = self.proofs.get(&self.first)
                    && !merkle::verify_inclusion(h, self.first, self.tree_size, path, &self.root)
                {
                    return bad(
                        Some(MANIFEST_FILE),
                        Some(self.first),
                        "the inclusion proof does not verify against the checkpoint",
                    );
                }
                Ok(())
            }
            _ => bad(Some(LEAVES_FILE), Some(self.last), "the last exported leaf is missing"),
        }
    }

    /// Rebuilds the rows of verified envelopes in the window.
    pub(crate) fn rows(
        &mut self,
        pool: &rayon::ThreadPool,
        evs: Vec<(StoredEvent, Arc<rows::KeyNames>)>,
        verified: Vec<Verified>,
        ev_conv: &RowConverter,
        hop_conv: &RowConverter,
    ) -> Result<(), BundleFailure> {
        use rayon::prelude::*;
        // Both lists are in seq order: pair each event with what its checks
        // validated; ledger records (no job) are decoded from their envelope.
        let mut verified = verified.into_iter().peekable();
        let paired: Vec<_> = evs
            .into_iter()
            .map(|(ev, names)| {
                while verified.peek().is_some_and(|v| v.seq < ev.seq) {
                    verified.next();
                }
                let v = verified.next_if(|v| v.seq == ev.seq);
                (ev, names, v)
            })
            .collect();
        let decoded: Vec<_> = pool.install(|| {
            paired
                .into_par_iter()
                .map(|(ev, names, v)| {
                    let row = match v {
                        Some(v) => rows::from_validated(&ev, v.payload, v.fields, &names),
                        None => rows::decode(&ev, &names),
                    };
                    (ev.seq, row)
                })
                .collect()
        });
        let mut by_date: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for (seq, row) in decoded {
            let row = row.or_else(|e| self.fail(seq, e.to_string()))?;
            let t = row.fields.event_time_unix_nanos;
            if self.from.is_some_and(|f| t < f) || self.to.is_some_and(|to| t >= to) {
                if seq == self.first || seq == self.last {
                    return self.fail(seq, "the first and last exported events must be in the window");
                }
                continue;
            }
            self.events += 1;
            by_date.entry(date_of(t)).or_default().push(row);
        }
        for (date, rows) in by_date {
            match self.format {
                Format::Parquet | Format::Ndjson => {
                    let (ev, hops) = rows::batches(&rows);
                    for (table, batch, conv) in [("events", &ev, ev_conv), ("delegation_hops", &hops, hop_conv)] {
                        let digests = row_digests(conv, batch).or_else(|e| bad(None, None, e))?;
                        let seqs = batch.column(0).as_primitive::<UInt64Type>();
                        self.expected
                            .entry((table.to_string(), date.clone()))
                            .or_default()
                            .extend(seqs.values().iter().copied().zip(digests));
                    }
                }
                Format::Ocsf => {
                    let e = self.expected.entry(("ocsf".to_string(), date.clone())).or_default();
                    for r in &rows {
                        e.push((r.seq, line_digest(&ocsf::api_activity(r, &self.origin))));
                    }
                }
            }
        }
        Ok(())
    }
}
