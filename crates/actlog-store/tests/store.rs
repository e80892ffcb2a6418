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
    assert_eq!(store.index_lookup(IndexField::TaskId, "task-1").unwrap().len(), 33);
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
            "interior Merkle node",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_NODES).unwrap();
                db.put_cf(cf, encode_node(2, 3), [7u8; 32]).unwrap();
            }),
        ),
        (
            "leaf hash node",
            Box::new(|db: &rocksdb::DB| {
                let cf = db.cf_handle(CF_NODES).unwrap();
                db.put_cf(cf, encode_node(0, 5), [7u8; 32]).unwrap();
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
