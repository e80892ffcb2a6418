//! Export bundles: what `export` writes matches the ledger and SQL, and
//! `verify` finds every kind of change, including changes re-signed with
//! the ledger key (a bundle must match the ledger, not only its signature).

use crate::common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_export::{self as bundle, BundleFailure, BundleOptions, ExportError, ExportOptions, Format, Manifest};
use actlog_query::datafusion::arrow::array::{Array, AsArray, BinaryArray, RecordBatch, StringArray};
use actlog_query::datafusion::arrow::datatypes::UInt64Type;
use actlog_query::datafusion::parquet::arrow::ArrowWriter;
use actlog_query::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use actlog_query::{Engine, EngineOptions, QueryLimits};
use sha2::{Digest, Sha256};

const SEED: [u8; 32] = [7u8; 32];

/// Rewrites one row of `leaves.parquet` (row index, leaf, envelope); `None` drops it.
type LeafEdit = dyn Fn(usize, &[u8], Option<&[u8]>) -> Option<(Vec<u8>, Option<Vec<u8>>)>;

fn nanos(t: &str) -> i64 {
    actlog_core::time::parse_rfc3339_utc(t).unwrap()
}

/// The fixture with an engine that may return every row.
fn fixture(dir: &Path) -> Engine {
    let e = common::fixture(dir);
    let store = e.store().clone();
    drop(e);
    let limits = QueryLimits { rows_max: usize::MAX, ..QueryLimits::default() };
    Engine::open(
        store,
        EngineOptions { segment_events: common::FIXTURE_SEGMENT_EVENTS, limits, ..EngineOptions::default() },
    )
    .unwrap()
}

async fn export(engine: &Engine, out: &Path, from: Option<&str>, to: Option<&str>, format: Format) -> Manifest {
    let opts = ExportOptions { from: from.map(nanos), to: to.map(nanos), format, policy: None, seqs: None };
    bundle::export(engine, &SEED, out, &opts, &|_, _| {}).await.unwrap().manifest
}

fn verify(dir: &Path) -> Result<bundle::BundleReport, BundleFailure> {
    bundle::verify(dir, &BundleOptions::default())
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).unwrap();
        }
    }
}

/// Re-hashes every file into the manifest and signs it again with the
/// ledger key: what a holder of the key could do after changing data.
fn resign(dir: &Path) {
    let mut m: Manifest = serde_json::from_slice(&fs::read(dir.join(bundle::MANIFEST_FILE)).unwrap()).unwrap();
    for f in &mut m.files {
        let bytes = fs::read(dir.join(&f.path)).unwrap();
        f.sha256 = hex::encode(Sha256::digest(&bytes));
        f.bytes = bytes.len() as u64;
        if f.path.ends_with(".parquet") {
            f.rows = read_parquet(&dir.join(&f.path)).iter().map(|b| b.num_rows() as u64).sum();
        }
    }
    bundle::sign_bundle(dir, &m, &SEED).unwrap();
}

/// A copy of `bundle` changed by `change`, then checked; returns the failure.
fn tampered(bundle: &Path, name: &str, change: impl FnOnce(&Path)) -> BundleFailure {
    let dir = bundle.parent().unwrap().join(name);
    copy_dir(bundle, &dir);
    change(&dir);
    let f = verify(&dir).expect_err(name);
    eprintln!("{name}: {f}");
    f
}

fn first_events_file(m: &Manifest) -> PathBuf {
    PathBuf::from(&m.files.iter().find(|f| f.table == "events").unwrap().path)
}

async fn sql_seqs(engine: &Engine, sql: &str) -> Vec<u64> {
    let out = engine.query(sql, &Default::default()).await.unwrap();
    out.batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_export_verifies_and_holds_what_sql_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = fixture(&tmp.path().join("data"));
    let out = tmp.path().join("bundle");
    let m = export(&engine, &out, None, None, Format::Parquet).await;
    let size = engine.store().latest_checkpoint().unwrap().0;
    assert_eq!(m.tree_size, size);
    assert_eq!(m.events, size, "every leaf is an event of the events table");
    let r = verify(&out).unwrap();
    assert_eq!(r.leaves, size);
    assert!(!r.key_pinned);

    // Rows per table and date, read back as any Parquet reader would.
    let mut seqs = Vec::new();
    let mut hops = 0;
    for f in &m.files {
        let batches = read_parquet(&out.join(&f.path));
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n as u64, f.rows, "{}", f.path);
        match f.table.as_str() {
            "events" => {
                let date = f.path.split('/').nth(1).unwrap().strip_prefix("date=").unwrap();
                for b in &batches {
                    assert_eq!(b.schema(), *actlog_query::rows::EVENTS_SCHEMA, "the SQL table's columns and types");
                    seqs.extend(b.column(0).as_primitive::<UInt64Type>().values().iter().copied());
                    let times = b
                        .column_by_name("event_time")
                        .unwrap()
                        .as_primitive::<actlog_query::datafusion::arrow::datatypes::TimestampNanosecondType>();
                    for t in times.values() {
                        assert_eq!(&actlog_core::time::format_rfc3339_utc(*t)[..10], date, "partitioned by event date");
                    }
                }
            }
            "delegation_hops" => hops += n as u64,
            _ => {}
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, sql_seqs(&engine, "SELECT seq FROM events ORDER BY seq").await);
    let sql_hops = sql_seqs(&engine, "SELECT CAST(count(*) AS BIGINT UNSIGNED) FROM delegation_hops").await;
    assert_eq!(hops, sql_hops[0]);
    assert_eq!(r.rows, size + hops);

    // A second export into the same directory is refused.
    let again = bundle::export(
        &engine,
        &SEED,
        &out,
        &ExportOptions { from: None, to: None, format: Format::Parquet, policy: None, seqs: None },
        &|_, _| {},
    )
    .await;
    assert!(matches!(again.unwrap_err(), ExportError::Refused(m) if m.contains("not empty")));
    // The bundle is signed with the ledger key only.
    let other = bundle::export(
        &engine,
        &[8u8; 32],
        &tmp.path().join("x"),
        &ExportOptions { from: None, to: None, format: Format::Parquet, policy: None, seqs: None },
        &|_, _| {},
    )
    .await;
    assert!(matches!(other.unwrap_err(), ExportError::Refused(m) if m.contains("does not belong")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_exports_exactly_its_events_and_no_other_envelopes() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = fixture(&tmp.path().join("data"));
    let (from, to) = ("2026-01-04T06:00:00Z", "2026-01-09T00:00:00Z");
    let out = tmp.path().join("window");
    let m = export(&engine, &out, Some(from), Some(to), Format::Parquet).await;
    let want = sql_seqs(
        &engine,
        &format!("SELECT seq FROM events WHERE event_time >= '{from}' AND event_time < '{to}' ORDER BY seq"),
    )
    .await;
    assert!(want.len() > 100, "the window holds events");
    assert_eq!(m.events as usize, want.len());
    assert_eq!((m.first_seq, m.last_seq), (want[0], *want.last().unwrap()));
    let r = verify(&out).unwrap();
    assert_eq!(r.manifest.events, want.len() as u64);

    // Envelopes: the exported events and ledger records only.
    let records = sql_seqs(&engine, "SELECT seq FROM events WHERE event_type LIKE 'ledger.%' ORDER BY seq").await;
    for b in read_parquet(&out.join(bundle::LEAVES_FILE)) {
        let seq = b.column(0).as_primitive::<UInt64Type>();
        let env = b.column(2).as_binary::<i32>();
        for i in 0..b.num_rows() {
            let s = seq.value(i);
            let expected = want.binary_search(&s).is_ok() || records.binary_search(&s).is_ok();
            assert_eq!(env.is_valid(i), expected, "envelope of seq {s}");
        }
    }

    // An empty window is refused with a message, and nothing is written.
    let empty = tmp.path().join("empty");
    let opts = ExportOptions {
        from: Some(nanos("2030-01-01T00:00:00Z")),
        to: None,
        format: Format::Parquet,
        policy: None,
        seqs: None,
    };
    let e = bundle::export(&engine, &SEED, &empty, &opts, &|_, _| {}).await.unwrap_err();
    assert!(e.to_string().contains("no events"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_ocsf_bundles_verify_and_ocsf_maps_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = fixture(&tmp.path().join("data"));
    let (from, to) = ("2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z");
    let nd = tmp.path().join("nd");
    let m = export(&engine, &nd, Some(from), Some(to), Format::Ndjson).await;
    assert_eq!(verify(&nd).unwrap().manifest.events, m.events);
    assert!(m.files.iter().any(|f| f.path.ends_with(".ndjson")));

    let oc = tmp.path().join("oc");
    let m = export(&engine, &oc, Some(from), Some(to), Format::Ocsf).await;
    let r = verify(&oc).unwrap();
    assert_eq!(r.rows, m.events, "one OCSF line per event");
    let (mut allowed, mut denied) = (0u64, 0u64);
    for f in m.files.iter().filter(|f| f.table == "ocsf") {
        for line in fs::read_to_string(oc.join(&f.path)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["class_uid"], 6003);
            assert_eq!(v["metadata"]["version"], "1.8.0");
            assert!(v["api"]["operation"].is_string(), "required by the class");
            match v["action_id"].as_u64().unwrap() {
                1 => allowed += 1,
                2 => denied += 1,
                _ => {}
            }
        }
    }
    let count = |effect: &str| {
        format!(
            "SELECT CAST(count(*) AS BIGINT UNSIGNED) FROM events WHERE effect = '{effect}' \
             AND event_time >= '{from}' AND event_time < '{to}'"
        )
    };
    // An OCSF line is compared byte for byte: a duplicate key that a
    // first-wins reader would see differently is refused, even re-signed.
    let copy = tmp.path().join("oc-dup");
    copy_dir(&oc, &copy);
    let f = m.files.iter().find(|f| f.table == "ocsf").unwrap();
    let p = copy.join(&f.path);
    let text = fs::read_to_string(&p).unwrap().replacen("{", "{\"action_id\":1,", 1);
    fs::write(&p, text).unwrap();
    resign(&copy);
    let e = verify(&copy).unwrap_err();
    assert!(e.reason.contains("does not match the event in the ledger"), "{e}");

    assert_eq!(allowed, sql_seqs(&engine, &count("allow")).await[0]);
    assert_eq!(denied, sql_seqs(&engine, &count("deny")).await[0]);
    assert!(denied > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_change_to_a_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = fixture(&tmp.path().join("data"));
    let out = tmp.path().join("bundle");
    let m = export(&engine, &out, Some("2026-01-03T00:00:00Z"), Some("2026-01-10T00:00:00Z"), Format::Parquet).await;
    verify(&out).unwrap();
    let events_file = first_events_file(&m);
    let ef = events_file.to_string_lossy().to_string();

    // Unsigned changes: the statement's hashes catch them before any parsing.
    let f = tampered(&out, "flip", |d| {
        let p = d.join(&events_file);
        let mut b = fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        fs::write(p, b).unwrap();
    });
    assert_eq!(f.file.as_deref(), Some(ef.as_str()));
    assert!(f.reason.contains("SHA-256"), "{f}");

    let f = tampered(&out, "extra", |d| fs::write(d.join("events/date=2026-01-03/part-00009.parquet"), b"x").unwrap());
    assert!(f.reason.contains("not in the signed manifest"), "{f}");

    let f = tampered(&out, "gone", |d| fs::remove_file(d.join(&events_file)).unwrap());
    assert!(f.reason.contains("missing"), "{f}");

    let f = tampered(&out, "manifest", |d| {
        let p = d.join(bundle::MANIFEST_FILE);
        let s = fs::read_to_string(&p).unwrap().replacen("\"events\":", "\"events\" :", 1);
        fs::write(p, s).unwrap();
    });
    assert!(f.reason.contains("does not match the signed statement"), "{f}");

    #[cfg(unix)]
    {
        let f = tampered(&out, "link", |d| std::os::unix::fs::symlink("/etc/hostname", d.join("x.parquet")).unwrap());
        assert!(f.reason.contains("symbolic link"), "{f}");
    }

    // Re-signed changes: the rows and leaves must still match the ledger.
    let f = tampered(&out, "row", |d| {
        let p = d.join(&events_file);
        let batches = read_parquet(&p);
        let b = &batches[0];
        let i = b.schema().index_of("effect").unwrap();
        let col = b.column(i).as_string::<i32>();
        let flipped: StringArray = (0..col.len())
            .map(|r| {
                if r == 3 {
                    Some(if col.value(r) == "deny" { "allow" } else { "deny" })
                } else {
                    col.is_valid(r).then(|| col.value(r))
                }
            })
            .collect();
        let mut cols = b.columns().to_vec();
        cols[i] = Arc::new(flipped);
        let mut out = vec![RecordBatch::try_new(b.schema(), cols).unwrap()];
        out.extend(batches[1..].iter().cloned());
        write_parquet(&p, &out);
        resign(d);
    });
    let seq3 = read_parquet(&out.join(&events_file))[0].column(0).as_primitive::<UInt64Type>().value(3);
    assert_eq!((f.file.as_deref(), f.seq), (Some(ef.as_str()), Some(seq3)), "{f}");
    assert!(f.reason.contains("does not match the event in the ledger"), "{f}");

    let f = tampered(&out, "dropped-row", |d| {
        let p = d.join(&events_file);
        let batches = read_parquet(&p);
        let mut out = vec![batches[0].slice(1, batches[0].num_rows() - 1)];
        out.extend(batches[1..].iter().cloned());
        write_parquet(&p, &out);
        resign(d);
    });
    assert!(f.reason.contains("does not match the event in the ledger"), "{f}");

    // Leaves: change an envelope, drop a leaf, change a leaf.
    let rewrite_leaves = |d: &Path, edit: &LeafEdit| {
        let p = d.join(bundle::LEAVES_FILE);
        let batches = read_parquet(&p);
        let mut out = Vec::new();
        let mut row = 0usize;
        for b in &batches {
            let seq = b.column(0).as_primitive::<UInt64Type>();
            let leaf = b.column(1).as_binary::<i32>();
            let env = b.column(2).as_binary::<i32>();
            let mut keep = Vec::new();
            let mut leaves: Vec<Vec<u8>> = Vec::new();
            let mut envs: Vec<Option<Vec<u8>>> = Vec::new();
            for i in 0..b.num_rows() {
                let e = env.is_valid(i).then(|| env.value(i));
                if let Some((l, e)) = edit(row, leaf.value(i), e) {
                    keep.push(seq.value(i));
                    leaves.push(l);
                    envs.push(e);
                }
                row += 1;
            }
            let cols: Vec<Arc<dyn Array>> = vec![
                Arc::new(actlog_query::datafusion::arrow::array::UInt64Array::from(keep)),
                Arc::new(BinaryArray::from_iter_values(leaves.iter())),
                Arc::new(envs.iter().map(|e| e.as_deref()).collect::<BinaryArray>()),
            ];
            out.push(RecordBatch::try_new(b.schema(), cols).unwrap());
        }
        write_parquet(&p, &out);
        resign(d);
    };
    let f = tampered(&out, "envelope", |d| {
        rewrite_leaves(d, &|row, l, e| {
            let e = e.map(|e| {
                let mut e = e.to_vec();
                if row == 20 {
                    let at = e.len() / 2;
                    e[at] = if e[at] == b'A' { b'B' } else { b'A' };
                }
                e
            });
            Some((l.to_vec(), e))
        })
    });
    assert!(f.reason.contains("envelope hash"), "{f}");

    let f = tampered(&out, "dropped-leaf", |d| {
        rewrite_leaves(d, &|row, l, e| (row != 30).then(|| (l.to_vec(), e.map(<[u8]>::to_vec))))
    });
    assert!(f.reason.contains("is missing"), "{f}");

    let f = tampered(&out, "leaf", |d| {
        rewrite_leaves(d, &|row, l, e| {
            let mut l = l.to_vec();
            if row == 40 {
                l[12] ^= 1; // received_at
            }
            Some((l, e.map(<[u8]>::to_vec)))
        })
    });
    assert!(f.reason.contains("chain hash after seq"), "{f}");

    // A ledger record without its envelope would hide a key's history.
    let f = tampered(&out, "record-envelope", |d| {
        rewrite_leaves(d, &|row, l, e| Some((l.to_vec(), if row == 0 { None } else { e.map(<[u8]>::to_vec) })))
    });
    assert!(f.reason.contains("ledger record without its envelope"), "{f}");

    // Rows smuggled in as an "evidence" file, which is only hashed: refused.
    let f = tampered(&out, "smuggled", |d| {
        let mut m: Manifest = serde_json::from_slice(&fs::read(d.join(bundle::MANIFEST_FILE)).unwrap()).unwrap();
        let rel = "events/date=2026-01-03/part-00007.parquet";
        fs::copy(d.join(&events_file), d.join(rel)).unwrap();
        let mut e = m.files.iter().find(|f| f.table == "events").unwrap().clone();
        e.path = rel.into();
        e.table = bundle::EVIDENCE_TABLE.into();
        m.files.push(e);
        bundle::sign_bundle(d, &m, &SEED).unwrap();
        resign(d);
    });
    assert!(f.reason.contains("evidence files"), "{f}");

    // A file cut short is refused by its size, before it is read.
    let f = tampered(&out, "short", |d| {
        let p = d.join(&events_file);
        let b = fs::read(&p).unwrap();
        fs::write(p, &b[..b.len() - 1]).unwrap();
    });
    assert!(f.reason.contains("the manifest allows"), "{f}");

    // Keys: pinned to another ledger, and signed by another key.
    let other = VerifierKey::new(
        "other.example",
        actlog_core::sig::PublicKey::from_bytes(&actlog_core::sig::public_key_of(&[9u8; 32])).unwrap(),
    )
    .unwrap();
    let e = bundle::verify(&out, &BundleOptions { expected_key: Some(other), ..Default::default() }).unwrap_err();
    assert!(e.reason.contains("not the expected"), "{e}");
    let f = tampered(&out, "other-signer", |d| {
        let m: Manifest = serde_json::from_slice(&fs::read(d.join(bundle::MANIFEST_FILE)).unwrap()).unwrap();
        bundle::sign_bundle(d, &m, &[9u8; 32]).unwrap();
    });
    assert!(f.reason.contains("not signed by the ledger key"), "{f}");

    // A trusted checkpoint at the same size with another root: a rewritten log.
    let key = engine.store().verifier_key().clone();
    let cp = Checkpoint { origin: key.name.clone(), tree_size: m.tree_size, root: [1u8; 32] }.sign(&SEED);
    let e = bundle::verify(&out, &BundleOptions { trusted_checkpoint: Some(cp), ..Default::default() }).unwrap_err();
    assert!(e.reason.contains("rewritten"), "{e}");
    let same = engine.store().latest_checkpoint().unwrap().1;
    let r = bundle::verify(
        &out,
        &BundleOptions { trusted_checkpoint: Some(same), expected_key: Some(key), ..Default::default() },
    )
    .unwrap();
    assert!(r.key_pinned && r.trusted.is_some());
}

/// A manifest changed in any field and signed again with the ledger key
/// (only a key holder can do this) is refused with an error, never a panic
/// and never accepted.
#[test]
fn signed_nonsense_in_a_manifest_is_refused_without_a_panic() {
    use proptest::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = tmp.path().join("bundle");
    let m = rt.block_on(async {
        let engine = fixture(&tmp.path().join("data"));
        export(&engine, &out, Some("2026-01-03T00:00:00Z"), Some("2026-01-08T00:00:00Z"), Format::Parquet).await
    });
    verify(&out).unwrap();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let number = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), 0u64..3_000];
    let cfg = ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(cfg, |(field in 0usize..12, n in number, pick in 0usize..64)| {
        let dir = tmp.path().join(format!("case-{}", runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        copy_dir(&out, &dir);
        let mut c = m.clone();
        let k = pick % c.files.len();
        let p = pick % c.proofs.len();
        match field {
            0 => c.tree_size = n,
            1 => c.first_seq = n,
            2 => c.last_seq = n,
            3 => c.events = n,
            4 => c.files[k].rows = n,
            5 => c.files[k].first_seq = n,
            6 => c.proofs[p].seq = n,
            7 => { c.proofs.remove(p); }
            8 => { let f = c.files[k].clone(); c.files.push(f); }
            9 => c.files[k].table = ["events", "delegation_hops", "leaves", "ocsf", "evidence"][pick % 5].into(),
            10 => c.files[k].path = ["../x", "events/date=2026-01-03/part-00000.parquet", "leaves.parquet", "a/b"][pick % 4].into(),
            _ => c.from = Some(actlog_core::time::format_rfc3339_utc(n as i64 * 1_000_000_000_000)),
        }
        prop_assume!(c != m);
        // Signing syncs every listed file's directory; a path to nowhere cannot be signed.
        prop_assume!(bundle::sign_bundle(&dir, &c, &SEED).is_ok());
        let r = verify(&dir);
        // Dropping a proof that is not needed, or an unused field, may leave a
        // bundle that still proves every row; anything it accepts must still
        // be the ledger's rows.
        if let Ok(ok) = &r {
            prop_assert_eq!(ok.manifest.events, m.events);
            prop_assert_eq!(ok.rows, verify(&out).unwrap().rows);
        }
        let _ = fs::remove_dir_all(&dir);
    });
}

/// One public key registered as `first`, then as `second` for the same PDP
/// (both active), then `second` revoked. Each exported row is named by the
/// registration active at its seq (`second` while both are, `first` after
/// the revocation), and the bundle verifies: its checker names rows the
/// same way, revocations included. (It once rebuilt the names only when a
/// key was added, so the rows after the revocation did not match.)
#[test]
fn a_bundle_names_rows_by_the_registration_active_at_each_seq() {
    use actlog_store::{AdminOp, Options, Store};
    let tmp = tempfile::tempdir().unwrap();
    let seed = [0x33u8; 32];
    let public_key = actlog_core::sig::public_key_of(&seed);
    let store = Arc::new(Store::init(tmp.path(), SEED, Some("names.actlog.test".into()), Options::default()).unwrap());
    let add = |name: &str| AdminOp::AddKey { name: name.into(), pdp_id: "pdp-1".into(), public_key };
    store.admin(add("first")).unwrap();
    crate::engine::append_decisions(&store, "a", 4, &seed);
    store.admin(add("second")).unwrap();
    crate::engine::append_decisions(&store, "b", 4, &seed);
    store.admin(AdminOp::RevokeKey { name: "second".into() }).unwrap();
    crate::engine::append_decisions(&store, "c", 4, &seed);
    store.checkpoint_now().unwrap();
    let limits = QueryLimits { rows_max: usize::MAX, ..QueryLimits::default() };
    let engine =
        Engine::open(store, EngineOptions { segment_events: 1_000, limits, ..EngineOptions::default() }).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let q = "SELECT substr(event_id, 1, 1), producer_key, count(*) FROM events \
             WHERE event_type = 'authz.decision' GROUP BY 1, 2 ORDER BY 1, 2";
    let want: Vec<Vec<String>> = [["a", "first"], ["b", "second"], ["c", "first"]]
        .iter()
        .map(|[b, k]| vec![b.to_string(), k.to_string(), "4".to_string()])
        .collect();
    assert_eq!(rt.block_on(common::rows(&engine, q)), want);
    let out = tmp.path().join("bundle");
    let m = rt.block_on(export(&engine, &out, None, None, Format::Parquet));
    assert_eq!(m.events, 15, "12 decisions and 3 ledger records");
    let report = verify(&out).unwrap_or_else(|f| panic!("the bundle must verify: {f}"));
    assert!(report.rows >= m.events, "every exported row is compared: {}", report.rows);
}
