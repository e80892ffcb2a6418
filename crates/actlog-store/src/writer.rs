//! The single writer thread and its group commit.
//!
//! Requests queue on a bounded channel. The writer takes every request that
//! is waiting (up to `group_events_max` events), applies each one atomically
//! to its in-memory state, writes the whole group as one synced WriteBatch,
//! and only then answers every request in the group. A failed write stops the
//! writer for good (fail-stop): its in-memory state is ahead of the disk, and
//! only a reopen, which recovers from the last committed head, is safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use actlog_core::Hash;
use actlog_core::event::Fields;
use actlog_core::ingest::Checked;
use actlog_core::leaf::{Leaf, LeafKind, chain_hash, key_fingerprint, sha256};
use actlog_core::ledger;
use actlog_core::merkle::{self, Frontier};
use actlog_core::note::Checkpoint;
use actlog_core::tiles::{TILE_WIDTH, TileEdges};
use rocksdb::WriteBatch;

use crate::keys::*;
use crate::registry::{KeyRecord, Registry, TokenRecord};
use crate::{AdminOp, AppendError, Appended, Error, Head, Options, Receipt, Result, Shared};

type AppendReply = Box<dyn FnOnce(Result<Appended, AppendError>) + Send>;

pub(crate) enum Request {
    Append { items: Vec<Checked>, reply: AppendReply },
    Admin { op: AdminOp, reply: SyncSender<Result<u64>> },
    Checkpoint { reply: SyncSender<Result<Option<(u64, String)>>> },
}

pub(crate) struct WriterState {
    shared: Arc<Shared>,
    seed: [u8; 32],
    origin: String,
    ledger_fingerprint: Hash,
    head: Head,
    frontier: Frontier,
    /// The open tile of each tile level, kept in step with the frontier.
    edges: TileEdges,
    registry: Registry,
    last_checkpoint_size: Option<u64>,
    last_checkpoint_at: Instant,
    checkpoint_interval: Duration,
    group_events_max: usize,
    admin_counter: u64,
}

impl WriterState {
    pub(crate) fn new(
        shared: Arc<Shared>,
        seed: [u8; 32],
        origin: String,
        head: Head,
        (frontier, edges): (Frontier, TileEdges),
        last_checkpoint_size: Option<u64>,
        opts: &Options,
    ) -> WriterState {
        assert_eq!(edges.size(), frontier.size(), "the tile edges and the frontier cover the same leaves");
        let registry = shared.registry.read().expect("registry lock").clone();
        let ledger_fingerprint = key_fingerprint(&actlog_core::sig::public_key_of(&seed));
        WriterState {
            shared,
            seed,
            origin,
            ledger_fingerprint,
            head,
            frontier,
            edges,
            registry,
            last_checkpoint_size,
            last_checkpoint_at: Instant::now(),
            checkpoint_interval: opts.checkpoint_interval,
            group_events_max: opts.group_events_max.max(1),
            admin_counter: 0,
        }
    }

    fn dirty(&self) -> bool {
        self.last_checkpoint_size != Some(self.head.tree_size) && self.head.tree_size > 0
    }
}

/// Uncommitted changes of one group.
struct Group {
    batch: WriteBatch,
    /// Secondary-index keys, put into `batch` sorted just before the commit
    /// (with the event ids of `ids`): RocksDB inserts a batch in order, and
    /// each memtable insert starts its skiplist search from the previous
    /// one, so sorted keys skip most of the walk from the top that random
    /// keys need.
    index_sorted: Vec<Vec<u8>>,
    /// Merkle tiles the group filled: (tile level, tile index, 8 KiB).
    full_tiles: Vec<(u8, u64, Vec<u8>)>,
    /// Event ids appended in this group: id → (seq, payload hash, leaf hash).
    /// Also the source of the group's `event_ids` entries (`put_sorted`).
    ids: HashMap<String, (u64, Hash, Hash)>,
    registry_changed: bool,
    checkpoint: Option<(u64, String)>,
}

enum Reply {
    Append(AppendReply, Result<Appended, AppendError>),
    Admin(SyncSender<Result<u64>>, Result<u64>),
    Checkpoint(SyncSender<Result<Option<(u64, String)>>>),
}

/// Marks the store poisoned if the writer thread ends by a panic (a failed
/// assertion), so readiness and the server see it stopped.
struct PoisonOnPanic(Arc<Shared>);

impl Drop for PoisonOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the writer stopped on a failed check; restart to recover");
            self.0.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

pub(crate) fn run(mut st: WriterState, rx: Receiver<Request>) {
    let _poison = PoisonOnPanic(Arc::clone(&st.shared));
    loop {
        let wait = if st.dirty() {
            st.checkpoint_interval.saturating_sub(st.last_checkpoint_at.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        let first = match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                if st.dirty() && commit_group(&mut st, Vec::new(), true).is_err() {
                    return fail_all(rx);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Shutdown: cover everything with a final checkpoint.
                if st.dirty() {
                    let _ = commit_group(&mut st, Vec::new(), true);
                }
                return;
            }
        };
        let mut requests = vec![first];
        let mut events = request_events(&requests[0]);
        while events < st.group_events_max {
            match rx.try_recv() {
                Ok(r) => {
                    events += request_events(&r);
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        let force = requests.iter().any(|r| matches!(r, Request::Checkpoint { .. }));
        let due = st.last_checkpoint_at.elapsed() >= st.checkpoint_interval;
        if commit_group(&mut st, requests, force || due).is_err() {
            return fail_all(rx);
        }
    }
}

fn request_events(r: &Request) -> usize {
    match r {
        Request::Append { items, .. } => items.len(),
        _ => 1,
    }
}

/// After a failed write every later request is refused; nothing is buffered.
fn fail_all(rx: Receiver<Request>) {
    for r in rx {
        match r {
            Request::Append { reply, .. } => reply(Err(AppendError::Store(Error::Poisoned))),
            Request::Admin { reply, .. } => {
                let _ = reply.send(Err(Error::Poisoned));
            }
            Request::Checkpoint { reply } => {
                let _ = reply.send(Err(Error::Poisoned));
            }
        }
    }
}

fn now_nanos() -> u64 {
    crate::clock::now_ns().max(0) as u64
}

fn commit_group(st: &mut WriterState, requests: Vec<Request>, checkpoint: bool) -> Result<(), ()> {
    let mut g = Group {
        batch: WriteBatch::default(),
        index_sorted: Vec::new(),
        full_tiles: Vec::new(),
        ids: HashMap::new(),
        registry_changed: false,
        checkpoint: None,
    };
    let received_at = now_nanos();
    let mut replies = Vec::with_capacity(requests.len());
    let start_size = st.head.tree_size;
    for req in requests {
        match req {
            Request::Append { items, reply } => {
                let r = apply_append(st, &mut g, items, received_at);
                replies.push(Reply::Append(reply, r));
            }
            Request::Admin { op, reply } => {
                let r = apply_admin(st, &mut g, op, received_at);
                replies.push(Reply::Admin(reply, r));
            }
            Request::Checkpoint { reply } => replies.push(Reply::Checkpoint(reply)),
        }
    }
    // Paired assertions: the frontier, the tile edges and the head moved
    // together, leaf by leaf.
    assert_eq!(st.frontier.size(), st.head.tree_size, "frontier and head disagree");
    assert_eq!(st.edges.size(), st.head.tree_size, "tile edges and head disagree");
    if st.head.tree_size != start_size {
        st.head.root = st.frontier.root();
    }
    assert!(st.head.tree_size >= start_size, "the tree never shrinks");
    if checkpoint && st.dirty() {
        let cp = Checkpoint { origin: st.origin.clone(), tree_size: st.head.tree_size, root: st.head.root };
        let note = cp.sign(&st.seed);
        let cf = st.shared.db.cf_handle(CF_CHECKPOINTS).expect("checkpoints cf");
        g.batch.put_cf(&cf, encode_seq(cp.tree_size), note.as_bytes());
        let meta = st.shared.db.cf_handle(CF_META).expect("meta cf");
        g.batch.put_cf(&meta, encode_checkpoint_time(cp.tree_size), now_nanos().to_be_bytes());
        g.checkpoint = Some((cp.tree_size, note));
    }
    put_sorted(st, &mut g);
    if g.batch.is_empty() {
        finish(replies, st);
        return Ok(());
    }
    let meta = st.shared.db.cf_handle(CF_META).expect("meta cf");
    g.batch.put_cf(&meta, META_HEAD, st.head.encode());
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    let batch = std::mem::take(&mut g.batch);
    if let Err(e) = st.shared.db.write_opt(batch, &wo) {
        tracing::error!("commit failed, stopping the writer: {e}");
        if e.to_string().contains("No space left") {
            st.shared.disk_full.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        st.shared.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
        for r in replies {
            match r {
                Reply::Append(reply, _) => reply(Err(AppendError::Store(Error::Poisoned))),
                Reply::Admin(reply, _) => {
                    let _ = reply.send(Err(Error::Poisoned));
                }
                Reply::Checkpoint(reply) => {
                    let _ = reply.send(Err(Error::Poisoned));
                }
            }
        }
        return Err(());
    }
    st.shared.synced_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Publish only what is on disk.
    *st.shared.head.write().expect("head lock") = st.head.clone();
    if g.registry_changed {
        *st.shared.registry.write().expect("registry lock") = st.registry.clone();
    }
    if let Some((size, note)) = g.checkpoint {
        st.last_checkpoint_size = Some(size);
        st.last_checkpoint_at = Instant::now();
        *st.shared.latest_checkpoint.write().expect("checkpoint lock") = Some((size, note));
        *st.shared.checkpoint_signed_at.lock().expect("checkpoint time lock") = Some(Instant::now());
        let (lock, cv) = &st.shared.checkpoint_signal;
        *lock.lock().expect("signal lock") = size;
        cv.notify_all();
    }
    finish(replies, st);
    Ok(())
}

/// Puts the group's new event ids (from `Group::ids`), index entries and
/// Merkle nodes into its batch in key order (see [`Group`]). Nothing reads the batch before the
/// write, and the batch is atomic, so the order inside it changes nothing
/// that is stored.
fn put_sorted(st: &mut WriterState, g: &mut Group) {
    let db = &st.shared.db;
    let (ids, index, tiles) = (
        db.cf_handle(CF_EVENT_IDS).expect("cf"),
        db.cf_handle(CF_INDEX).expect("cf"),
        db.cf_handle(CF_TILES).expect("cf"),
    );
    let mut new_ids: Vec<_> = g.ids.iter().collect();
    new_ids.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (id, (seq, payload_sha256, _)) in new_ids {
        let mut value = [0u8; 40];
        value[..8].copy_from_slice(&seq.to_be_bytes());
        value[8..].copy_from_slice(payload_sha256);
        g.batch.put_cf(&ids, id.as_bytes(), value);
    }
    g.index_sorted.sort_unstable();
    for k in g.index_sorted.drain(..) {
        g.batch.put_cf(&index, k, []);
    }
    // Full tiles, then the open tile of each level that grew: in the same
    // atomic batch as the leaves, so stored tiles always match the head.
    let mut written: Vec<(u8, u64, Vec<u8>)> = g.full_tiles.drain(..).collect();
    written.extend(st.edges.take_changed());
    written.sort_unstable_by_key(|t| (t.0, t.1));
    for (l, n, bytes) in written {
        g.batch.put_cf(&tiles, encode_tile(l, n), bytes);
    }
}

fn finish(replies: Vec<Reply>, st: &WriterState) {
    for r in replies {
        match r {
            Reply::Append(reply, res) => reply(res),
            Reply::Admin(reply, res) => {
                let _ = reply.send(res);
            }
            Reply::Checkpoint(reply) => {
                let latest = st.shared.latest_checkpoint.read().expect("checkpoint lock").clone();
                let _ = reply.send(Ok(latest));
            }
        }
    }
}

enum Plan {
    New,
    /// Already committed (or staged by an earlier request): (seq, leaf hash).
    Stored(u64, Option<Hash>),
    /// A repeat of an earlier item of the same request.
    Repeat(usize),
}

/// The stored (seq, payload hash, leaf hash) of `id`. The leaf hash is
/// `None` when its level-0 tile has left RocksDB for the archive: the
/// writer never waits on the archive.
fn lookup_id(st: &WriterState, g: &Group, id: &str) -> Result<Option<(u64, Hash, Option<Hash>)>> {
    if let Some((seq, payload, leaf_hash)) = g.ids.get(id) {
        return Ok(Some((*seq, *payload, Some(*leaf_hash))));
    }
    let cf = st.shared.db.cf_handle(CF_EVENT_IDS).expect("event_ids cf");
    match st.shared.db.get_pinned_cf(&cf, id.as_bytes())? {
        None => Ok(None),
        Some(v) => {
            let (seq, payload) = crate::decode_event_id_value(&v)
                .ok_or_else(|| Error::Corruption(format!("event id index entry for `{id}` is malformed")))?;
            let leaf_hash = match merkle::NodeReader::node(&crate::Tiles::new(&st.shared.db), 0, seq) {
                Ok(h) => Some(h),
                Err(_) if crate::cold::tile_is_cold(&st.shared, seq / TILE_WIDTH) => None,
                Err(e) => return Err(e),
            };
            Ok(Some((seq, payload, leaf_hash)))
        }
    }
}

/// Whether `item` conflicts with the event stored at `seq` under its event
/// id, whose payload hash is `payload`: another payload, unless both are
/// records of the same raw OPA event. OPA re-sends whole chunks, and its
/// events are identified by (labels.id, decision_id) (contract section 5);
/// a re-send may map to another payload (the mapping changed), so a
/// token-authenticated event is a duplicate when the stored one is
/// token-authenticated too and holds the same raw OPA event. Anything else
/// under the id is a conflict: never acknowledged as a duplicate and
/// dropped. The writer decides by it; `Store::stored_conflict` asks it
/// before a write.
pub(crate) fn conflicts_with_stored(db: &rocksdb::DB, seq: u64, payload: &Hash, item: &Checked) -> Result<bool> {
    Ok(payload != item.payload_sha256()
        && !(item.kind() == LeafKind::TokenAuthenticated && same_opa_event(db, seq, item)?))
}

/// Whether the committed event at `seq` is a token-authenticated record of
/// the same raw OPA event as `item`. An event of the current group (not yet
/// committed) is not compared: it counts as different.
fn same_opa_event(db: &rocksdb::DB, seq: u64, item: &Checked) -> Result<bool> {
    let leaves = db.cf_handle(crate::keys::CF_LEAVES).expect("leaves cf");
    let envelopes = db.cf_handle(crate::keys::CF_ENVELOPES).expect("envelopes cf");
    let key = crate::keys::encode_seq(seq);
    let (Some(leaf_value), Some(envelope)) = (db.get_cf(&leaves, key)?, db.get_cf(&envelopes, key)?) else {
        return Ok(false);
    };
    let stored = crate::decode_stored(seq, &leaf_value, envelope)?;
    if stored.leaf.kind != LeafKind::TokenAuthenticated {
        return Ok(false);
    }
    #[derive(serde::Deserialize)]
    struct Record<'a> {
        #[serde(borrow)]
        raw: &'a serde_json::value::RawValue,
    }
    let raw = |bytes: &[u8]| serde_json::from_slice::<Record<'_>>(bytes).ok().map(|r| r.raw.get().to_owned());
    Ok(matches!((raw(&stored.envelope), raw(item.envelope())), (Some(a), Some(b)) if a == b && a != "null"))
}

fn apply_append(
    st: &mut WriterState,
    g: &mut Group,
    items: Vec<Checked>,
    received_at: u64,
) -> Result<Appended, AppendError> {
    // First pass decides everything; nothing is staged unless the whole
    // request is accepted.
    let mut plans = Vec::with_capacity(items.len());
    let repeats = actlog_core::ingest::repeats(&items);
    for (index, item) in items.iter().enumerate() {
        let id = item.fields().event_id.as_str();
        if let Some(c) = repeats.conflict.as_ref().filter(|c| c.index == index) {
            return Err(AppendError::Conflict { index, event_id: c.event_id.clone(), seq: None });
        }
        if let Some(first) = repeats.firsts[index] {
            plans.push(Plan::Repeat(first));
            continue;
        }
        match lookup_id(st, g, id)? {
            Some((seq, payload, leaf_hash)) => {
                if conflicts_with_stored(&st.shared.db, seq, &payload, item)? {
                    return Err(AppendError::Conflict { index, event_id: id.to_string(), seq: Some(seq) });
                }
                plans.push(Plan::Stored(seq, leaf_hash));
            }
            None => {
                if item.kind() == LeafKind::ProducerSigned
                    && !st.registry.active_key_by_fingerprint(item.producer_key_id(), &item.fields().pdp_id)
                {
                    return Err(AppendError::KeyRevoked { index });
                }
                if item.kind() == LeafKind::TokenAuthenticated && !st.registry.token_hash_active(item.producer_key_id())
                {
                    return Err(AppendError::TokenRevoked { index });
                }
                plans.push(Plan::New);
            }
        }
    }
    let mut receipts: Vec<Receipt> = Vec::with_capacity(items.len());
    for (item, plan) in items.iter().zip(plans) {
        match plan {
            Plan::New => {
                let (seq, leaf_hash) = stage_leaf(st, g, item, received_at);
                let leaf_hash = Some(leaf_hash);
                receipts.push(Receipt { event_id: item.fields().event_id.clone(), seq, leaf_hash, duplicate: false });
            }
            Plan::Stored(seq, leaf_hash) => {
                receipts.push(Receipt { event_id: item.fields().event_id.clone(), seq, leaf_hash, duplicate: true })
            }
            Plan::Repeat(first) => {
                let r = &receipts[first];
                let dup = Receipt { event_id: r.event_id.clone(), seq: r.seq, leaf_hash: r.leaf_hash, duplicate: true };
                receipts.push(dup);
            }
        }
    }
    Ok(Appended { receipts, tree_size: st.head.tree_size })
}

/// Stages one new leaf and everything derived from it. Returns (seq, leaf hash).
fn stage_leaf(st: &mut WriterState, g: &mut Group, item: &Checked, received_at: u64) -> (u64, Hash) {
    let seq = st.head.tree_size;
    assert_eq!(seq, st.frontier.size(), "seq must equal the Merkle leaf index");
    debug_assert_eq!(*item.envelope_sha256(), sha256(item.envelope()), "the checked envelope hash is the envelope's");
    let fields = item.fields();
    let leaf = Leaf {
        kind: item.kind(),
        seq,
        received_at_unix_nanos: received_at,
        envelope_sha256: *item.envelope_sha256(),
        payload_sha256: *item.payload_sha256(),
        producer_key_id: *item.producer_key_id(),
        prev_chain_hash: st.head.chain_hash,
        event_id: fields.event_id.clone(),
    };
    let leaf_bytes = leaf.encode();
    let chain = chain_hash(&st.head.chain_hash, &leaf_bytes);
    let leaf_hash = merkle::leaf_hash(&leaf_bytes);
    let db = &st.shared.db;
    let (leaves, envelopes) = (db.cf_handle(CF_LEAVES).expect("cf"), db.cf_handle(CF_ENVELOPES).expect("cf"));
    let mut value = Vec::with_capacity(32 + leaf_bytes.len());
    value.extend_from_slice(&chain);
    value.extend_from_slice(&leaf_bytes);
    g.batch.put_cf(&leaves, encode_seq(seq), value);
    g.batch.put_cf(&envelopes, encode_seq(seq), item.envelope());
    for (field, value) in index_values(fields) {
        if value.len() <= INDEX_VALUE_BYTES_MAX {
            g.index_sorted.push(encode_index(field, value, seq));
        }
    }
    let (edges, full) = (&mut st.edges, &mut g.full_tiles);
    st.frontier.push(leaf_hash, |level, idx, hash| {
        if let Some(tile) = edges.push(level, idx, hash) {
            full.push(tile);
        }
    });
    // The root is folded once per group (commit_group), not once per leaf.
    st.head = Head { tree_size: seq + 1, chain_hash: chain, root: st.head.root };
    g.ids.insert(fields.event_id.clone(), (seq, *item.payload_sha256(), leaf_hash));
    (seq, leaf_hash)
}

pub(crate) fn index_values(f: &Fields) -> Vec<(IndexField, &str)> {
    let mut v = Vec::with_capacity(5);
    if let Some(x) = &f.actor_id {
        v.push((IndexField::ActorId, x.as_str()));
    }
    if let Some(x) = &f.principal_id {
        v.push((IndexField::PrincipalId, x.as_str()));
    }
    if let Some(x) = &f.session_id {
        v.push((IndexField::SessionId, x.as_str()));
    }
    if let Some(x) = &f.task_id {
        v.push((IndexField::TaskId, x.as_str()));
    }
    if let Some(x) = &f.decision_event_id {
        v.push((IndexField::DecisionEventId, x.as_str()));
    }
    v
}

fn refused(code: &'static str, message: String) -> Error {
    Error::Refused { code, message }
}

fn apply_admin(st: &mut WriterState, g: &mut Group, op: AdminOp, received_at: u64) -> Result<u64> {
    let seq = st.head.tree_size;
    let (event_type, body) = match &op {
        AdminOp::AddKey { name, pdp_id, public_key } => {
            ledger::check_record_name(name).map_err(refusal)?;
            if st.registry.keys.contains_key(name) {
                return Err(refused("key_exists", format!("a key named `{name}` already exists")));
            }
            ledger::check_record_pdp_id(pdp_id).map_err(refusal)?;
            actlog_core::sig::PublicKey::from_bytes(public_key)
                .map_err(|e| refused("invalid_public_key", format!("public key refused: {e}")))?;
            let rec = KeyRecord {
                name: name.clone(),
                pdp_id: pdp_id.clone(),
                public_key_hex: hex::encode(public_key),
                fingerprint_hex: hex::encode(key_fingerprint(public_key)),
                added_seq: seq,
                revoked_seq: None,
            };
            let body = serde_json::json!({
                "name": name, "pdp_id": pdp_id,
                "public_key": actlog_core::b64::encode(public_key),
                "key_fingerprint": rec.fingerprint_hex,
            });
            put_key(st, g, rec);
            ("ledger.key_added", body)
        }
        AdminOp::RevokeKey { name } => {
            let mut rec = st
                .registry
                .keys
                .get(name)
                .cloned()
                .ok_or_else(|| refused("key_not_found", format!("no key named `{name}`")))?;
            if rec.revoked_seq.is_some() {
                return Err(refused("key_revoked", format!("key `{name}` is already revoked")));
            }
            rec.revoked_seq = Some(seq);
            let body = serde_json::json!({"name": name, "pdp_id": rec.pdp_id, "key_fingerprint": rec.fingerprint_hex});
            put_key(st, g, rec);
            ("ledger.key_revoked", body)
        }
        AdminOp::CreateToken { name, role, pdp_id, token_sha256, expires_at_ns } => {
            ledger::check_record_name(name).map_err(refusal)?;
            if let Some(p) = pdp_id {
                ledger::check_record_pdp_id(p).map_err(refusal)?;
            }
            let role = ledger::check_record_role(role).map_err(refusal)?;
            if st.registry.tokens.contains_key(name) {
                return Err(refused("token_exists", format!("a token named `{name}` already exists")));
            }
            let rec = TokenRecord {
                name: name.clone(),
                role,
                pdp_id: pdp_id.clone(),
                token_sha256_hex: hex::encode(token_sha256),
                created_seq: seq,
                revoked_seq: None,
                expires_at_ns: *expires_at_ns,
            };
            let mut body =
                serde_json::json!({"name": name, "role": role, "pdp_id": pdp_id, "token_sha256": rec.token_sha256_hex});
            if let Some(e) = expires_at_ns {
                body["expires_at"] = actlog_core::time::format_rfc3339_utc(*e).into();
            }
            put_token(st, g, rec);
            ("ledger.token_created", body)
        }
        AdminOp::RevokeToken { name } => {
            let mut rec = st
                .registry
                .tokens
                .get(name)
                .cloned()
                .ok_or_else(|| refused("token_not_found", format!("no token named `{name}`")))?;
            if rec.revoked_seq.is_some() {
                return Err(refused("token_revoked", format!("token `{name}` is already revoked")));
            }
            rec.revoked_seq = Some(seq);
            let body = serde_json::json!({"name": name, "role": rec.role});
            put_token(st, g, rec);
            ("ledger.token_revoked", body)
        }
    };
    st.admin_counter += 1;
    // RFC 8785 canonical bytes: a pure function of the record.
    let payload = actlog_core::canonical::to_vec(&serde_json::json!({
        "spec_version": "1",
        "event_type": event_type,
        // Unique by construction: the seq this record takes. Producers may
        // not use the `actlog:` prefix (see ingest).
        "event_id": format!("actlog:{event_type}:{seq}"),
        "event_time": actlog_core::time::format_rfc3339_utc(received_at as i64),
        "pdp": {"id": "actlog"},
        "source": {"format": "actlog.ledger.v1"},
        "ledger": body,
    }));
    let checked = Checked::ledger_record(payload, &st.origin, &st.seed).expect("the ledger writes valid ledger events");
    debug_assert_eq!(*checked.producer_key_id(), st.ledger_fingerprint);
    let (got, _) = stage_leaf(st, g, &checked, received_at);
    assert_eq!(got, seq, "the admin leaf takes the seq its record names");
    Ok(seq)
}

/// A key or token record refused by core's rule, as the store's error.
fn refusal(r: ledger::RecordRefusal) -> Error {
    refused(r.code, r.message)
}

fn put_key(st: &mut WriterState, g: &mut Group, rec: KeyRecord) {
    let cf = st.shared.db.cf_handle(CF_REGISTRY).expect("registry cf");
    let mut k = REG_KEY_PREFIX.to_vec();
    k.extend_from_slice(rec.name.as_bytes());
    g.batch.put_cf(&cf, k, serde_json::to_vec(&rec).expect("serializable"));
    st.registry.put_key(rec);
    g.registry_changed = true;
}

fn put_token(st: &mut WriterState, g: &mut Group, rec: TokenRecord) {
    let cf = st.shared.db.cf_handle(CF_REGISTRY).expect("registry cf");
    let mut k = REG_TOKEN_PREFIX.to_vec();
    k.extend_from_slice(rec.name.as_bytes());
    g.batch.put_cf(&cf, k, serde_json::to_vec(&rec).expect("serializable"));
    st.registry.put_token(rec);
    g.registry_changed = true;
}
