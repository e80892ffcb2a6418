//! The store's behaviour through its public API and, for tampering, through
//! raw RocksDB writes behind its back.

use std::path::Path;
use std::time::Duration;

use actlog_core::dsse::Envelope;
use actlog_core::ingest::{Checked, EnvelopeLimits, Submitter, check_envelopes};
use actlog_core::merkle;
use actlog_core::note::Checkpoint;
use actlog_core::sig::public_key_of;
use actlog_store::keys::*;
use actlog_store::verify::{VerifyOptions, verify};
use actlog_store::{AdminOp, AppendError, Error, Options, Store};
use proptest::prelude::*;

const PRODUCER_SEED: [u8; 32] = [0x33; 32];
const LEDGER_SEED: [u8; 32] = [0x44; 32];

fn event(id: &str, pdp: &str, variant: u32) -> Vec<u8> {
    serde_json::json!({
        "spec_version": "1",
        "event_type": "authz.decision",
        "event_id": id,
        "event_time": "2026-08-21T10:15:30Z",
        "pdp": {"id": pdp},
        "delegation": {
            "principal": {"type": "user", "id": "alice"},
            "actor": {"id": "agent-7", "sub_profile": "ai_agent"},
            "chain": [{"depth": 1, "sub": "agent-7", "sub_profile": "ai_agent"}],
            "verification": {"status": "verified"}
        },
        "correlation": {"session_id": "s1", "task_id": format!("task-{}", variant % 3)},
        "policy": {"version": format!("v{variant}")},
        "request": {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                    "resource": {"type": "document", "id": "doc-1"}},
        "decision": {"effect": "allow"}
    })
    .to_string()
    .into_bytes()
}

fn envelope(id: &str, variant: u32) -> Vec<u8> {
    Envelope::sign(event(id, "pdp-1", variant), Some("pdp-1-key".into()), &PRODUCER_SEED).to_json().into_bytes()
}

fn check(store: &Store, envs: Vec<Vec<u8>>) -> Vec<Checked> {
    let reg = store.registry();
    check_envelopes(envs, &reg, &Submitter::default(), &EnvelopeLimits::default())
        .into_iter()
        .map(|r| r.expect("valid envelope"))
        .collect()
}

fn opts() -> Options {
    Options { checkpoint_interval: Duration::from_millis(50), ..Options::default() }
}

fn setup(dir: &Path) -> Store {
    let store = Store::init(dir, LEDGER_SEED, Some("test.example/log".into()), opts()).unwrap();
    store
        .admin(AdminOp::AddKey {
            name: "pdp-1-key".into(),
            pdp_id: "pdp-1".into(),
            public_key: public_key_of(&PRODUCER_SEED),
        })
        .unwrap();
    store
}

fn append_n(store: &Store, prefix: &str, n: usize, batch: usize) {
    let envs: Vec<Vec<u8>> = (0..n).map(|i| envelope(&format!("{prefix}-{i}"), i as u32)).collect();
    for chunk in envs.chunks(batch) {
        store.append(check(store, chunk.to_vec())).unwrap();
    }
}

fn verify_ok(store: &Store) {
    let r = verify(store, &VerifyOptions::default());
    assert!(r.is_ok(), "verify failed: {r:?}");
}

/// A token's expiry is part of its signed ledger record: it survives a
/// reopen, `verify` rebuilds the same registry from the leaves, and an
/// expired token no longer authenticates.
#[test]
fn token_expiry_is_recorded_in_the_ledger_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let now = actlog_store::now_ns();
    let mk = |name: &str, secret: &str, expires_at_ns| AdminOp::CreateToken {
        name: name.into(),
        role: "query".into(),
        pdp_id: None,
        token_sha256: actlog_core::leaf::sha256(secret.as_bytes()),
        expires_at_ns,
    };
    store.admin(mk("later", "secret-later", Some(now + 3_600_000_000_000))).unwrap();
    store.admin(mk("past", "secret-past", Some(now - 1))).unwrap();
    store.admin(mk("never", "secret-never", None)).unwrap();
    verify_ok(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let reg = store.registry();
    assert_eq!(reg.tokens["later"].expires_at_ns, Some(now + 3_600_000_000_000));
    assert_eq!(reg.tokens["never"].expires_at_ns, None);
    assert!(reg.authenticate("secret-later").is_some());
    assert!(reg.authenticate("secret-never").is_some());
    assert!(reg.authenticate("secret-past").is_none(), "an expired token authenticated");
    assert!(!reg.token_hash_active(&actlog_core::leaf::sha256(b"secret-past")));
    let envelope: serde_json::Value = serde_json::from_slice(&store.event(1).unwrap().unwrap().envelope).unwrap();
    let payload = actlog_core::b64::decode(envelope["payload"].as_str().unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&payload).contains("\"expires_at\""), "the record names its expiry");
    verify_ok(&store);
}

#[test]
fn appended_events_read_back_and_prove() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let items = check(&store, (0..10).map(|i| envelope(&format!("e-{i}"), i)).collect());
    let appended = store.append(items).unwrap();
    // seq 0 is the key registration; events follow in request order.
    let seqs: Vec<u64> = appended.receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(appended.tree_size, 11);
    append_n(&store, "more", 90, 7);
    let size = store.head().tree_size;
    assert_eq!(size, 101);
    let ev = store.event_by_id("e-3").unwrap().unwrap();
    assert_eq!(ev.seq, 4);
    assert_eq!(ev.envelope, envelope("e-3", 3));
    assert!(store.event(size).unwrap().is_none());
    assert_eq!(store.index_lookup(IndexField::TaskId, "task-1", 1000).unwrap().len(), 33);
    // A cap stops the scan one past it, so callers see "more" without reading everything.
    let capped = store.index_lookup(IndexField::TaskId, "task-1", 10).unwrap();
    assert_eq!(capped.len(), 11);
    assert_eq!(capped, store.index_lookup(IndexField::TaskId, "task-1", 1000).unwrap()[..11]);
    // Every proof verifies, for several past tree sizes.
    for tree_size in [1u64, 2, 11, 64, 100, 101] {
        let root = store.root_at(tree_size).unwrap();
        for seq in 0..tree_size {
            let (leaf_hash, proof) = store.inclusion_proof(seq, tree_size).unwrap();
            assert!(merkle::verify_inclusion(&leaf_hash, seq, tree_size, &proof, &root));
        }
        let proof = store.consistency_proof(tree_size, size).unwrap();
        assert!(merkle::verify_consistency(tree_size, size, &proof, &root, &store.root_at(size).unwrap()));
    }
    assert!(matches!(store.inclusion_proof(5, size + 1), Err(Error::Refused { .. })));
    // A checkpoint covers the head soon after the last append.
    let (cp_size, note) = store.wait_checkpoint(size, Duration::from_secs(5)).expect("checkpoint within the interval");
    let cp = Checkpoint::open(&note, store.verifier_key()).unwrap();
    assert_eq!((cp_size, cp.tree_size, cp.root), (size, size, store.head().root));
    verify_ok(&store);
    let head = store.head();
    store.close().unwrap();
    let reopened = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(reopened.head(), head);
    verify_ok(&reopened);
}

#[test]
fn duplicates_return_the_original_receipt_and_conflicts_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let first = store.append(check(&store, vec![envelope("a", 1), envelope("b", 2)])).unwrap();
    let size = store.head().tree_size;
    // Retry of the same batch, plus a repeat inside the batch.
    let again = store.append(check(&store, vec![envelope("a", 1), envelope("b", 2), envelope("b", 2)])).unwrap();
    assert!(again.receipts.iter().all(|r| r.duplicate));
    assert_eq!(again.receipts[0].seq, first.receipts[0].seq);
    assert_eq!(again.receipts[1].leaf_hash, first.receipts[1].leaf_hash);
    assert_eq!(again.receipts[2].seq, first.receipts[1].seq);
    assert_eq!(store.head().tree_size, size);
    // A new event and a new one repeated in the same request.
    let mixed = store.append(check(&store, vec![envelope("c", 3), envelope("c", 3)])).unwrap();
    assert_eq!((mixed.receipts[0].duplicate, mixed.receipts[1].duplicate), (false, true));
    assert_eq!(mixed.receipts[0].seq, mixed.receipts[1].seq);
    let size = store.head().tree_size;
    // Same id, different payload: the whole request is refused, nothing is stored.
    let err = store.append(check(&store, vec![envelope("d", 4), envelope("a", 99)])).unwrap_err();
    assert!(matches!(err, AppendError::Conflict { index: 1, .. }), "{err:?}");
    assert_eq!(store.head().tree_size, size);
    assert!(store.event_by_id("d").unwrap().is_none());
    let err = store.append(check(&store, vec![envelope("e", 4), envelope("e", 5)])).unwrap_err();
    assert!(matches!(err, AppendError::Conflict { index: 1, .. }), "{err:?}");
    assert_eq!(store.head().tree_size, size);
    verify_ok(&store);
}

#[test]
fn a_revoked_key_stops_working_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let pending = check(&store, vec![envelope("before-revoke", 1)]);
    store.admin(AdminOp::RevokeKey { name: "pdp-1-key".into() }).unwrap();
    // Checked while the key was active, committed after the revocation.
    let err = store.append(pending).unwrap_err();
    assert!(matches!(err, AppendError::KeyRevoked { index: 0 }), "{err:?}");
    let reg = store.registry();
    let r = check_envelopes(vec![envelope("after", 1)], &reg, &Submitter::default(), &EnvelopeLimits::default());
    assert_eq!(r[0].as_ref().unwrap_err().code, "unknown_key");
    assert!(matches!(
        store.admin(AdminOp::RevokeKey { name: "pdp-1-key".into() }),
        Err(Error::Refused { code: "key_revoked", .. })
    ));
    assert!(matches!(
        store.admin(AdminOp::AddKey {
            name: "pdp-1-key".into(),
            pdp_id: "x".into(),
            public_key: public_key_of(&[1; 32])
        }),
        Err(Error::Refused { code: "key_exists", .. })
    ));
    verify_ok(&store);
}

#[test]
fn concurrent_appenders_share_commits_and_get_distinct_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let mut all: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..25 {
                        let envs = (0..4).map(|j| envelope(&format!("t{t}-{i}-{j}"), j)).collect();
                        let got = store.append(check(store, envs)).unwrap();
                        let batch: Vec<u64> = got.receipts.iter().map(|r| r.seq).collect();
                        // A batch is contiguous: no other request interleaves with it.
                        assert!(batch.windows(2).all(|w| w[1] == w[0] + 1));
                        seqs.extend(batch);
                    }
                    seqs
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<_>>());
    // Group commit: 200 concurrent requests needed fewer synced writes.
    let writes = store.synced_writes();
    assert!(writes < 200, "{writes} synced writes for 200 requests: no request shared an fsync");
    verify_ok(&store);
}

#[test]
fn newer_format_and_broken_head_are_refused_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    append_n(&store, "x", 5, 5);
    store.close().unwrap();
    let broken = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), broken.path());
    raw(broken.path(), |db| {
        let meta = db.cf_handle(CF_META).unwrap();
        db.put_cf(meta, META_FORMAT_VERSION, 99u32.to_be_bytes()).unwrap();
    });
    assert!(matches!(Store::open(broken.path(), opts()), Err(Error::FormatVersion { found: 99 })));

    for damage in 0..3 {
        let broken = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), broken.path());
        raw(broken.path(), |db| {
            let meta = db.cf_handle(CF_META).unwrap();
            let mut head = db.get_cf(meta, META_HEAD).unwrap().unwrap();
            match damage {
                0 => head[7] += 1,  // tree size beyond the leaves
                1 => head[20] ^= 1, // chain hash
                _ => head.truncate(40),
            }
            db.put_cf(meta, META_HEAD, head).unwrap();
        });
        let err = Store::open(broken.path(), opts()).unwrap_err();
        assert!(matches!(err, Error::Corruption(_)), "damage {damage}: {err:?}");
        // Opening again still refuses: nothing was rewritten.
        assert!(matches!(Store::open(broken.path(), opts()), Err(Error::Corruption(_))));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn raw(data: &Path, f: impl FnOnce(&rocksdb::DB)) {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(false);
    let db = rocksdb::DB::open_cf(&o, data.join("db"), ALL_CFS).unwrap();
    f(&db);
    db.flush_wal(true).unwrap();
}

#[derive(Debug, Clone)]
enum Tamper {
    FlipLeafByte { seq: u64, offset: usize, bit: u8 },
    FlipEnvelopeByte { seq: u64, offset: usize, bit: u8 },
    DeleteLeaf { seq: u64 },
    DuplicateLeaf { seq: u64 },
    SwapLeaves { a: u64, b: u64 },
    TruncateLeaf { seq: u64, cut: usize },
    DropTail { count: u64 },
}

fn tamper_strategy(n: u64) -> impl Strategy<Value = Tamper> {
    // seq 0 is the key registration; producer events are 1..n.
    prop_oneof![
        (1..n, any::<usize>(), 0u8..8).prop_map(|(seq, offset, bit)| Tamper::FlipLeafByte { seq, offset, bit }),
        (1..n, any::<usize>(), 0u8..8).prop_map(|(seq, offset, bit)| Tamper::FlipEnvelopeByte { seq, offset, bit }),
        (0..n).prop_map(|seq| Tamper::DeleteLeaf { seq }),
        (0..n - 1).prop_map(|seq| Tamper::DuplicateLeaf { seq }),
        (0..n - 1, 1..n).prop_filter("distinct", |(a, b)| a < b).prop_map(|(a, b)| Tamper::SwapLeaves { a, b }),
        (0..n, 1usize..200).prop_map(|(seq, cut)| Tamper::TruncateLeaf { seq, cut }),
        (1..4u64).prop_map(|count| Tamper::DropTail { count }),
    ]
}

fn apply(db: &rocksdb::DB, t: &Tamper, n: u64) {
    let leaves = db.cf_handle(CF_LEAVES).unwrap();
    let envs = db.cf_handle(CF_ENVELOPES).unwrap();
    let get = |cf, seq: u64| db.get_cf(cf, encode_seq(seq)).unwrap().unwrap();
    match *t {
        Tamper::FlipLeafByte { seq, offset, bit } => {
            let mut v = get(leaves, seq);
            let i = offset % v.len();
            v[i] ^= 1 << bit;
            db.put_cf(leaves, encode_seq(seq), v).unwrap();
        }
        Tamper::FlipEnvelopeByte { seq, offset, bit } => {
            let mut v = get(envs, seq);
            let i = offset % v.len();
            v[i] ^= 1 << bit;
            db.put_cf(envs, encode_seq(seq), v).unwrap();
        }
        Tamper::DeleteLeaf { seq } => db.delete_cf(leaves, encode_seq(seq)).unwrap(),
        Tamper::DuplicateLeaf { seq } => db.put_cf(leaves, encode_seq(seq + 1), get(leaves, seq)).unwrap(),
        Tamper::SwapLeaves { a, b } => {
            let (va, vb) = (get(leaves, a), get(leaves, b));
            let (ea, eb) = (get(envs, a), get(envs, b));
            db.put_cf(leaves, encode_seq(a), vb).unwrap();
            db.put_cf(leaves, encode_seq(b), va).unwrap();
            db.put_cf(envs, encode_seq(a), eb).unwrap();
            db.put_cf(envs, encode_seq(b), ea).unwrap();
        }
        Tamper::TruncateLeaf { seq, cut } => {
            let mut v = get(leaves, seq);
            v.truncate(v.len().saturating_sub(cut));
            db.put_cf(leaves, encode_seq(seq), v).unwrap();
        }
        Tamper::DropTail { count } => {
            for seq in n - count..n {
                db.delete_cf(leaves, encode_seq(seq)).unwrap();
                db.delete_cf(envs, encode_seq(seq)).unwrap();
            }
        }
    }
}

fn fixture() -> &'static Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = setup(dir.path());
        append_n(&store, "fx", 39, 13);
        store.close().unwrap();
        dir
    })
    .path()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any single-byte change, deletion, duplication, reorder or truncation
    /// of stored leaves is found: either `open` refuses the store as
    /// corrupt, or `verify` fails and names a seq at or before the damage.
    #[test]
    fn tampering_is_detected(t in tamper_strategy(40)) {
        let n = 40u64;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(fixture(), dir.path());
        raw(dir.path(), |db| apply(db, &t, n));
        match Store::open(dir.path(), Options { read_only: true, ..opts() }) {
            Err(Error::Corruption(_)) => {}
            Err(e) => prop_assert!(false, "unexpected open error {e:?}"),
            Ok(store) => {
                let failure = verify(&store, &VerifyOptions::default());
                prop_assert!(failure.is_err(), "{t:?} was not detected");
                let damaged_at = match t {
                    Tamper::FlipLeafByte { seq, .. } | Tamper::FlipEnvelopeByte { seq, .. }
                    | Tamper::DeleteLeaf { seq } | Tamper::TruncateLeaf { seq, .. } => Some(seq),
                    Tamper::DuplicateLeaf { seq } => Some(seq + 1),
                    Tamper::SwapLeaves { a, .. } => Some(a),
                    Tamper::DropTail { count } => Some(n - count),
                };
                if let (Some(at), Some(found)) = (damaged_at, failure.unwrap_err().seq) {
                    prop_assert!(found <= at, "{t:?}: reported seq {found}, damage at {at}");
                }
            }
        }
    }
}

/// The child half of `kill_9_never_loses_an_acknowledged_append`: appends in
/// a loop and prints each acknowledged receipt. Does nothing unless the parent
/// test started it.
#[test]
fn crash_child_process() {
    let Some(dir) = std::env::var_os("ACTLOG_CRASH_CHILD_DIR") else { return };
    use std::io::Write;
    let store = Store::open(Path::new(&dir), opts()).unwrap();
    let start = store.head().tree_size;
    let mut out = std::io::stdout().lock();
    for round in 0u64.. {
        let size = 1 + (round * 7 % 23) as usize;
        let envs = (0..size).map(|i| envelope(&format!("c{start}-{round}-{i}"), i as u32)).collect();
        let got = store.append(check(&store, envs)).unwrap();
        for r in &got.receipts {
            writeln!(out, "ack {} {}", r.seq, r.event_id).unwrap();
        }
        writeln!(out, "size {}", got.tree_size).unwrap();
        out.flush().unwrap();
    }
}

/// A child process appends in a loop and is killed with SIGKILL at random
/// points, 20 times. After each kill the store reopens, every append the
/// child reported as acknowledged is present at the same seq, the head is at
/// least the last acknowledged size, and `verify` passes.
#[test]
fn kill_9_never_loses_an_acknowledged_append() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path()).close().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut last_size = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_process", "--nocapture", "--test-threads=1"])
            .env("ACTLOG_CRASH_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(150 + rng % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ack"), Some(seq), Some(id)) => acked.push((seq.parse().unwrap(), id.to_string())),
                (Some("size"), Some(s), None) => last_size = s.parse().unwrap(),
                _ => {} // a line cut by the kill, or test harness output
            }
        }
        let store = Store::open(dir.path(), opts()).unwrap();
        assert!(store.head().tree_size >= last_size, "cycle {cycle}: head went back");
        for (seq, id) in &acked {
            let ev = store.event_by_id(id).unwrap();
            assert_eq!(ev.map(|e| e.seq), Some(*seq), "cycle {cycle}: acknowledged {id} lost or moved");
        }
        verify_ok(&store);
        store.close().unwrap();
    }
    assert!(acked.len() > 100, "the child made progress: {} acks", acked.len());
}

/// The derived column families are checked too: a changed Merkle node,
/// checkpoint, registry record or event-id entry is found by `open` or `verify`.
#[test]
fn tampering_with_derived_data_is_detected() {
    type Edit = Box<dyn Fn(&rocksdb::DB)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "a leaf hash in a Merkle tile",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_TILES).unwrap();
                let mut t = db.get_cf(cf, encode_tile(0, 0)).unwrap().unwrap();
                t[5 * 32] ^= 1;
                db.put_cf(cf, encode_tile(0, 0), t).unwrap();
            }),
        ),
        (
            "a Merkle tile cut short",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_TILES).unwrap();
                let t = db.get_cf(cf, encode_tile(0, 0)).unwrap().unwrap();
                db.put_cf(cf, encode_tile(0, 0), &t[..t.len() - 32]).unwrap();
            }),
        ),
        (
            "a Merkle tile beyond the tree",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_TILES).unwrap();
                db.put_cf(cf, encode_tile(1, 0), [7u8; 32]).unwrap();
            }),
        ),
        (
            "stored checkpoint",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_CHECKPOINTS).unwrap();
                let (k, v) = db.iterator_cf(cf, rocksdb::IteratorMode::Start).next().unwrap().unwrap();
                let mut note = v.to_vec();
                note[0] ^= 1;
                db.put_cf(cf, k, note).unwrap();
            }),
        ),
        (
            "registry record",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_REGISTRY).unwrap();
                let key = [REG_KEY_PREFIX, b"pdp-1-key"].concat();
                let rec = String::from_utf8(db.get_cf(cf, &key).unwrap().unwrap()).unwrap();
                db.put_cf(cf, &key, rec.replace("pdp-1\"", "pdp-9\"")).unwrap();
            }),
        ),
        (
            "secondary index entry",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_INDEX).unwrap();
                db.put_cf(cf, encode_index(IndexField::TaskId, "task-1", 3), []).unwrap();
            }),
        ),
        (
            "event-id index entry",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_EVENT_IDS).unwrap();
                let mut v = db.get_cf(cf, b"fx-3").unwrap().unwrap();
                v[7] ^= 1;
                db.put_cf(cf, b"fx-3", v).unwrap();
            }),
        ),
    ];
    for (name, edit) in edits {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(fixture(), dir.path());
        raw(dir.path(), |db| edit(db));
        match Store::open(dir.path(), Options { read_only: true, ..opts() }) {
            Err(Error::Corruption(_)) => {}
            Err(e) => panic!("{name}: unexpected open error {e:?}"),
            Ok(store) => {
                assert!(verify(&store, &VerifyOptions::default()).is_err(), "{name} was not detected");
            }
        }
    }
}

/// A small deterministic generator for the tamper campaign (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The campaign's ledger: keys added and revoked, tokens (one with a
/// lifetime) created and revoked, 60 events in uneven batches, several
/// checkpoints, so every column family has entries of every kind.
fn campaign_fixture() -> &'static Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = setup(dir.path());
        let token = |name: &str, expires_at_ns| AdminOp::CreateToken {
            name: name.into(),
            role: "ingest".into(),
            pdp_id: Some("pdp-1".into()),
            token_sha256: actlog_core::leaf::sha256(name.as_bytes()),
            expires_at_ns,
        };
        store.admin(token("tok-a", None)).unwrap();
        append_n(&store, "cf-a", 17, 5);
        store.checkpoint_now().unwrap();
        store.admin(token("tok-b", Some(4_102_444_800_000_000_000))).unwrap();
        store
            .admin(AdminOp::AddKey {
                name: "spare-key".into(),
                pdp_id: "pdp-2".into(),
                public_key: public_key_of(&[0x21; 32]),
            })
            .unwrap();
        append_n(&store, "cf-b", 23, 7);
        store.checkpoint_now().unwrap();
        store.admin(AdminOp::RevokeToken { name: "tok-a".into() }).unwrap();
        store.admin(AdminOp::RevokeKey { name: "spare-key".into() }).unwrap();
        append_n(&store, "cf-c", 20, 20);
        store.checkpoint_now().unwrap();
        store.close().unwrap();
        dir
    })
    .path()
}

#[derive(Debug)]
enum Mutation {
    FlipBit { cf: &'static str, key: Vec<u8>, offset: usize, bit: u8 },
    Delete { cf: &'static str, key: Vec<u8> },
    Swap { cf: &'static str, a: Vec<u8>, b: Vec<u8> },
    Truncate { cf: &'static str, key: Vec<u8>, keep: usize },
    MoveKey { cf: &'static str, key: Vec<u8>, offset: usize, bit: u8 },
    Insert { cf: &'static str, key: Vec<u8>, value: Vec<u8> },
}

/// Every (column family, key, value) of a data dir, read behind the store's back.
fn all_entries(data: &Path) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(false);
    let db = rocksdb::DB::open_cf_for_read_only(&o, data.join("db"), ALL_CFS, false).unwrap();
    let mut out = Vec::new();
    for cf in ALL_CFS {
        for kv in db.iterator_cf(db.cf_handle(cf).unwrap(), rocksdb::IteratorMode::Start) {
            let (k, v) = kv.unwrap();
            out.push((*cf, k.to_vec(), v.to_vec()));
        }
    }
    out
}

/// A random mutation of one stored entry (or a new one), with a value
/// that really differs from what is stored.
fn random_mutation(rng: &mut Rng, entries: &[(&'static str, Vec<u8>, Vec<u8>)]) -> Mutation {
    // Pick the column family first, so small ones (meta, registry,
    // checkpoints) get as many mutations as the big ones.
    let cf = ALL_CFS[rng.below(ALL_CFS.len())];
    let here: Vec<_> = entries.iter().filter(|(c, _, _)| *c == cf).collect();
    let (_, key, value) = here[rng.below(here.len())];
    match rng.below(6) {
        0 if !value.is_empty() => {
            Mutation::FlipBit { cf, key: key.clone(), offset: rng.below(value.len()), bit: rng.below(8) as u8 }
        }
        1 => Mutation::Delete { cf, key: key.clone() },
        2 => {
            let (_, other, v2) = here[rng.below(here.len())];
            if v2 == value {
                return Mutation::Delete { cf, key: key.clone() };
            }
            Mutation::Swap { cf, a: key.clone(), b: other.clone() }
        }
        3 if !value.is_empty() => Mutation::Truncate { cf, key: key.clone(), keep: rng.below(value.len()) },
        4 => Mutation::MoveKey { cf, key: key.clone(), offset: rng.below(key.len().max(1)), bit: rng.below(8) as u8 },
        _ => {
            // A plausible new entry: a neighbour's key one past the last,
            // holding a copy of a stored value.
            let mut k = here.iter().map(|(_, k, _)| k.clone()).max().unwrap();
            let last = k.len() - 1;
            k[last] = k[last].wrapping_add(1);
            if here.iter().any(|(_, kk, _)| *kk == k) {
                k.push(0);
            }
            Mutation::Insert { cf, key: k, value: value.clone() }
        }
    }
}

fn apply_mutation(db: &rocksdb::DB, m: &Mutation) {
    let h = |cf: &str| db.cf_handle(cf).unwrap();
    let get = |cf: &str, k: &[u8]| db.get_cf(h(cf), k).unwrap().unwrap();
    match m {
        Mutation::FlipBit { cf, key, offset, bit } => {
            let mut v = get(cf, key);
            v[*offset] ^= 1 << bit;
            db.put_cf(h(cf), key, v).unwrap();
        }
        Mutation::Delete { cf, key } => db.delete_cf(h(cf), key).unwrap(),
        Mutation::Swap { cf, a, b } => {
            let (va, vb) = (get(cf, a), get(cf, b));
            db.put_cf(h(cf), a, vb).unwrap();
            db.put_cf(h(cf), b, va).unwrap();
        }
        Mutation::Truncate { cf, key, keep } => {
            let mut v = get(cf, key);
            v.truncate(*keep);
            db.put_cf(h(cf), key, v).unwrap();
        }
        Mutation::MoveKey { cf, key, offset, bit } => {
            let v = get(cf, key);
            let mut k = key.clone();
            if k.is_empty() {
                k.push(0);
            } else {
                k[*offset] ^= 1 << bit;
            }
            db.delete_cf(h(cf), key).unwrap();
            db.put_cf(h(cf), k, v).unwrap();
        }
        Mutation::Insert { cf, key, value } => db.put_cf(h(cf), key, value).unwrap(),
    }
}

/// Whether open or verify finds the damage (a non-corruption open error
/// counts as not found: it would hide a bug).
fn detected(data: &Path, trusted: Option<String>) -> Result<bool, String> {
    match Store::open(data, Options { read_only: true, ..opts() }) {
        Err(Error::Corruption(_)) => Ok(true),
        // A changed format version cannot be told from a newer format: the
        // store refuses to open it rather than guess.
        Err(Error::FormatVersion { .. }) => Ok(true),
        Err(e) => Err(format!("unexpected open error {e:?}")),
        Ok(store) => {
            let o = VerifyOptions { trusted_checkpoint: trusted, ..VerifyOptions::default() };
            Ok(verify(&store, &o).is_err())
        }
    }
}

/// Whether a mutation only changes when a checkpoint was signed: the
/// `meta` `checkpoint_time/` values are local metadata that no hash or
/// signature covers (docs/threat-model.md), so a changed, swapped or
/// deleted time is not tampering `verify` can find. Anything else done to
/// those keys (a truncated value, a time moved to a size without a
/// checkpoint, a new entry) still counts.
fn only_changes_a_signing_time(m: &Mutation) -> bool {
    let time = |cf: &str, k: &[u8]| cf == CF_META && k.starts_with(META_CHECKPOINT_TIME);
    match m {
        Mutation::FlipBit { cf, key, .. } | Mutation::Delete { cf, key } => time(cf, key),
        Mutation::Swap { cf, a, b } => time(cf, a) && time(cf, b),
        _ => false,
    }
}

/// The tamper campaign of issue 12 over every column family: random bit
/// flips, deleted keys, swapped values, truncated values, values moved to
/// another key and inserted entries, each on a fresh copy of a ledger.
/// Every one must be found by `Store::open` (as corruption) or `verify`.
/// `ACTLOG_TAMPER_CASES` sets the count (default 1,000, not counting
/// changes of signing times alone, which are counted apart),
/// `ACTLOG_TAMPER_SEED` the seed; the summary line is printed for
/// docs/benchmarks.md.
#[test]
fn tamper_campaign_every_column_family() {
    let cases: usize = std::env::var("ACTLOG_TAMPER_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let seed: u64 = std::env::var("ACTLOG_TAMPER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x005e_ed12);
    let fixture = campaign_fixture();
    let entries = all_entries(fixture);
    let mut rng = Rng(seed);
    let mut missed = Vec::new();
    let mut per_cf: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    let mut signing_times = 0;
    let mut i = 0;
    while i < cases {
        let m = random_mutation(&mut rng, &entries);
        if only_changes_a_signing_time(&m) {
            signing_times += 1;
            continue;
        }
        i += 1;
        let cf = match &m {
            Mutation::FlipBit { cf, .. }
            | Mutation::Delete { cf, .. }
            | Mutation::Swap { cf, .. }
            | Mutation::Truncate { cf, .. }
            | Mutation::MoveKey { cf, .. }
            | Mutation::Insert { cf, .. } => *cf,
        };
        let dir = tempfile::tempdir().unwrap();
        copy_dir(fixture, dir.path());
        raw(dir.path(), |db| apply_mutation(db, &m));
        let found = detected(dir.path(), None).unwrap_or_else(|e| panic!("case {i} {m:?}: {e}"));
        let e = per_cf.entry(cf).or_default();
        e.1 += 1;
        if found {
            e.0 += 1;
        } else {
            missed.push(format!("case {i}: {m:?}"));
        }
    }
    let found: u32 = per_cf.values().map(|(f, _)| f).sum();
    eprintln!(
        "tamper campaign (seed {seed:#x}): {found}/{cases} detected; per column family (found/total): {per_cf:?}; \
         {signing_times} changes of checkpoint signing times alone not counted"
    );
    assert!(missed.is_empty(), "{} of {cases} mutations were not detected:\n{}", missed.len(), missed.join("\n"));
}

/// A registry record changed without changing its meaning is still found:
/// found by the campaign with seed 1 (a bit flip that renamed the null
/// `revoked_seq` field of a token record, which parsing then defaulted back
/// to null). The same for an unknown field added to a key record.
#[test]
fn a_registry_record_changed_but_meaning_the_same_is_found() {
    let fixture = campaign_fixture();
    let entries = all_entries(fixture);
    let record = |prefix: &[u8]| {
        entries
            .iter()
            .find(|(cf, k, v)| {
                *cf == CF_REGISTRY && k.starts_with(prefix) && v.windows(18).any(|w| w == b"\"revoked_seq\":null")
            })
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .expect("an unrevoked record in the fixture")
    };
    let (token_key, token) = record(b"t/");
    let renamed = String::from_utf8(token).unwrap().replace("\"revoked_seq\":null", "\"revoked_se1\":null");
    let (key_key, key) = record(b"k/");
    let extra = String::from_utf8(key).unwrap().replacen('{', "{\"note\":\"x\",", 1);
    for (k, v) in [(token_key, renamed), (key_key, extra)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(fixture, dir.path());
        raw(dir.path(), |db| db.put_cf(db.cf_handle(CF_REGISTRY).unwrap(), &k, v.as_bytes()).unwrap());
        assert_eq!(detected(dir.path(), None), Ok(true), "{}", String::from_utf8_lossy(&k));
    }
}

/// Truncation and rewriting with every hash and signature recomputed (the
/// ledger key's holder rebuilding a shorter or different history) is
/// internally consistent, so `verify` alone passes; a checkpoint kept
/// outside finds it at every cut point. The truncated ledgers are the
/// original's own earlier states, so every remaining byte is genuine.
#[test]
fn rewritten_history_is_found_against_a_checkpoint_kept_outside() {
    let original = tempfile::tempdir().unwrap();
    let snapshots = tempfile::tempdir().unwrap();
    let cuts = [1usize, 7, 18, 29];
    let mut store = setup(original.path());
    let mut done = 0;
    for cut in cuts {
        append_n(&store, &format!("h{cut}"), cut - done, 6);
        done = cut;
        store.checkpoint_now().unwrap();
        store.close().unwrap();
        copy_dir(original.path(), &snapshots.path().join(cut.to_string()));
        store = Store::open(original.path(), opts()).unwrap();
    }
    append_n(&store, "h-end", 30 - done, 6);
    let (size, kept) = store.checkpoint_now().unwrap().unwrap();
    assert_eq!(size, 31);
    store.close().unwrap();
    let trusted = VerifyOptions { trusted_checkpoint: Some(kept), ..VerifyOptions::default() };
    for cut in cuts {
        for rewrite in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&snapshots.path().join(cut.to_string()), dir.path());
            let store = Store::open(dir.path(), opts()).unwrap();
            if rewrite {
                // Different events after the cut, past the original size.
                append_n(&store, "forged", 35 - cut, 6);
                store.checkpoint_now().unwrap();
            }
            assert!(verify(&store, &VerifyOptions::default()).is_ok(), "cut {cut}: the forgery is self-consistent");
            assert!(
                verify(&store, &trusted).is_err(),
                "cut {cut} rewrite {rewrite}: not found against the kept checkpoint"
            );
            store.close().unwrap();
        }
    }
}

/// An in-memory archive: the cold source of the eviction tests. Its
/// leaves and full level-0 tiles.
struct MemCold(
    std::sync::Mutex<std::collections::BTreeMap<u64, actlog_store::ColdLeaf>>,
    std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>,
);

impl actlog_store::ColdSource for MemCold {
    fn read(&self, seqs: &[u64]) -> Result<Vec<actlog_store::ColdLeaf>, String> {
        let m = self.0.lock().unwrap();
        seqs.iter().map(|s| m.get(s).cloned().ok_or_else(|| format!("seq {s} is not archived"))).collect()
    }

    fn tile(&self, index: u64) -> Result<Vec<u8>, String> {
        self.1.lock().unwrap().get(&index).cloned().ok_or_else(|| format!("tile {index} is not archived"))
    }
}

fn level0_tile(index: u64) -> actlog_core::tiles::Tile {
    actlog_core::tiles::Tile { kind: actlog_core::tiles::TileKind::Hashes(0), index, width: 256 }
}

fn mem_cold(store: &Store, end: u64) -> std::sync::Arc<MemCold> {
    let mut m = std::collections::BTreeMap::new();
    store
        .scan(0, end, |ev| {
            m.insert(ev.seq, actlog_store::ColdLeaf { seq: ev.seq, leaf: ev.leaf_bytes, envelope: ev.envelope });
            Ok(())
        })
        .unwrap();
    let tiles = (0..end / 256).map(|n| (n, store.tile(&level0_tile(n), end).unwrap())).collect();
    std::sync::Arc::new(MemCold(std::sync::Mutex::new(m), std::sync::Mutex::new(tiles)))
}

fn all_events(store: &Store) -> Vec<actlog_store::StoredEvent> {
    let mut out = Vec::new();
    store
        .scan(0, u64::MAX, |ev| {
            out.push(ev);
            Ok(())
        })
        .unwrap();
    out
}

/// Eviction moves leaves and envelopes below the floor out of RocksDB;
/// every read then gives the same events from the cold source, checked
/// against the tree, across a reopen, and verify still passes. A changed
/// cold copy is corruption, never an answer, and eviction refuses to drop
/// anything the cold source cannot give back byte for byte.
#[test]
fn evicted_events_read_back_from_the_cold_source_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    append_n(&store, "old", 300, 50);
    store.checkpoint_now().unwrap();
    let tile = actlog_core::tiles::parse_tile_path("entries/000").unwrap();
    let entries_before = store.tile(&tile, 301).unwrap();
    let cold = mem_cold(&store, 301);

    // Refused without a source, at the head, and past the last checkpoint.
    assert!(matches!(store.evict(200), Err(Error::Refused { code: "archived", .. })));
    store.set_cold_source(cold.clone()).unwrap();
    assert!(matches!(store.evict(301), Err(Error::Refused { code: "evict_refused", .. })));
    append_n(&store, "new", 20, 20);
    store.checkpoint_now().unwrap();
    let before = all_events(&store);
    let newer = mem_cold(&store, 321);
    cold.0.lock().unwrap().append(&mut newer.0.lock().unwrap());
    let tile0 = store.tile(&level0_tile(0), 321).unwrap();
    let proof7 = store.inclusion_proof(7, 321).unwrap();
    let root200 = store.root_at(200).unwrap();
    let stored_tiles =
        |store: &Store| store.storage_stats().unwrap().iter().find(|(n, _, _)| *n == CF_TILES).unwrap().1;
    let tiles_before = stored_tiles(&store);
    // A level-0 tile the archive holds otherwise stops the eviction too.
    cold.1.lock().unwrap().get_mut(&0).unwrap()[5] ^= 1;
    let err = store.evict(302).unwrap_err();
    assert!(err.to_string().contains("level-0 tile 0"), "{err}");
    assert_eq!(store.cold_floor(), 0);
    cold.1.lock().unwrap().get_mut(&0).unwrap()[5] ^= 1;
    assert_eq!(store.evict(302).unwrap(), 302);
    assert_eq!(store.cold_floor(), 302);
    // The full level-0 tile below the floor left RocksDB; it is served,
    // and proofs made, from the archive's copy.
    assert_eq!(stored_tiles(&store), tiles_before - 1, "the level-0 tile below the floor is still stored");
    assert_eq!(store.tile(&level0_tile(0), 321).unwrap(), tile0);
    assert_eq!(store.inclusion_proof(7, 321).unwrap(), proof7);
    assert_eq!(store.root_at(200).unwrap(), root200);
    // Re-sent events whose originals are below the floor are duplicates;
    // the writer does not wait on the archive for a leaf hash, which
    // `leaf_hash` then reads from the archive's tile.
    let again = store.append(check(&store, vec![envelope("old-7", 7), envelope("old-290", 290)])).unwrap();
    assert_eq!(again.tree_size, 321);
    let seq_of = |id: &str| before.iter().find(|e| e.leaf.event_id == id).unwrap().seq;
    let (s7, s290) = (seq_of("old-7"), seq_of("old-290"));
    assert!(s7 < 256 && (256..302).contains(&s290), "{s7} {s290}");
    let (r7, r290) = (&again.receipts[0], &again.receipts[1]);
    assert!(r7.duplicate && r290.duplicate);
    assert_eq!((r7.seq, r7.leaf_hash), (s7, None), "tile 0 is in the archive only");
    assert_eq!((r290.seq, r290.leaf_hash), (s290, Some(before[s290 as usize].leaf_hash)), "tile 1 is still stored");
    assert_eq!(store.leaf_hash(s7).unwrap(), before[s7 as usize].leaf_hash);
    // A cold copy that differs stops the eviction before anything leaves.
    {
        let mut m = cold.0.lock().unwrap();
        let mut e = m[&310].clone();
        e.envelope.push(b' ');
        m.insert(310, e.clone());
        drop(m);
        let err = store.evict(315).unwrap_err();
        assert!(err.to_string().contains("310"), "{err}");
        assert_eq!(store.cold_floor(), 302);
        e.envelope.pop();
        cold.0.lock().unwrap().insert(310, e);
    }
    let raw_leaves = |store: &Store| store.storage_stats().unwrap().iter().find(|(n, _, _)| *n == CF_LEAVES).unwrap().1;
    assert_eq!(raw_leaves(&store), 321 - 302, "evicted leaves are still stored");

    let after = all_events(&store);
    assert_eq!(after.len(), 321);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.seq, &a.leaf_bytes, &a.envelope, a.chain_hash),
            (b.seq, &b.leaf_bytes, &b.envelope, b.chain_hash)
        );
    }
    assert_eq!(store.event(7).unwrap().unwrap().envelope, before[7].envelope);
    assert_eq!(
        store.event_by_id("old-5").unwrap().unwrap().seq,
        before.iter().find(|e| e.leaf.event_id == "old-5").unwrap().seq
    );
    let mixed = store.events_at(&[305, 3, 299, 3]).unwrap();
    assert_eq!(mixed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![305, 3, 299, 3]);
    assert_eq!(store.tile(&tile, 301).unwrap(), entries_before);
    verify_ok(&store);

    // The floor is durable; without a source, reads below it are refused by name.
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.cold_floor(), 302);
    let err = store.event(7).unwrap_err();
    assert!(err.to_string().contains("--archive"), "{err}");
    assert!(verify(&store, &VerifyOptions::default()).is_err());
    store.set_cold_source(cold.clone()).unwrap();
    assert_eq!(store.event(7).unwrap().unwrap().envelope, before[7].envelope);
    verify_ok(&store);

    // A changed cold leaf or envelope is corruption on read and in verify.
    {
        let mut m = cold.0.lock().unwrap();
        let e = m.get_mut(&9).unwrap();
        let at = e.envelope.len() / 2;
        e.envelope[at] ^= 1;
    }
    assert!(matches!(store.event(9), Err(Error::Corruption(_))));
    assert!(matches!(store.events_at(&[8, 9, 10]), Err(Error::Corruption(_))));
    assert!(verify(&store, &VerifyOptions::default()).is_err());
    {
        let mut m = cold.0.lock().unwrap();
        let e = m.get_mut(&9).unwrap();
        let at = e.envelope.len() / 2;
        e.envelope[at] ^= 1;
        let f = m.get_mut(&11).unwrap();
        let last = f.leaf.len() - 1;
        f.leaf[last] ^= 1;
    }
    let err = store.event(11).unwrap_err();
    assert!(matches!(err, Error::Corruption(_)) && err.to_string().contains("11"), "{err}");
    assert!(verify(&store, &VerifyOptions::default()).is_err());
    *cold.0.lock().unwrap() = before.iter().take(302).map(|e| (e.seq, cold_leaf(e))).collect();
    verify_ok(&store);

    // A changed archived level-0 tile is corruption for reads, proofs and
    // verify, never an answer.
    cold.1.lock().unwrap().get_mut(&0).unwrap()[40] ^= 1;
    for err in [store.event(7).unwrap_err(), store.inclusion_proof(7, 321).unwrap_err()] {
        assert!(matches!(err, Error::Corruption(_)) && err.to_string().contains("tile 0"), "{err}");
    }
    assert!(store.tile(&level0_tile(0), 321).is_err());
    assert!(verify(&store, &VerifyOptions::default()).is_err());
    cold.1.lock().unwrap().get_mut(&0).unwrap()[40] ^= 1;
    assert_eq!(store.inclusion_proof(7, 321).unwrap(), proof7);
}

fn cold_leaf(e: &actlog_store::StoredEvent) -> actlog_store::ColdLeaf {
    actlog_store::ColdLeaf { seq: e.seq, leaf: e.leaf_bytes.clone(), envelope: e.envelope.clone() }
}
