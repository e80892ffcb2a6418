//! The engine's promises: the sandbox refuses every statement class that is
//! not a read, each limit is reported by name when hit, a query during
//! ingest sees a consistent prefix, pushdown never changes an answer, and
//! segments are checked against the ledger.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actlog_query::{Engine, EngineOptions, QueryLimits, QueryOptions};
use actlog_store::{Options, Store};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn sandbox_refuses_every_non_read_statement_class() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let refused = [
        // DDL
        ("CREATE TABLE t (a INT)", "DDL"),
        ("CREATE TABLE t AS SELECT * FROM events", "DDL"),
        ("CREATE VIEW v AS SELECT 1", "DDL"),
        ("DROP TABLE events", "DDL"),
        ("ALTER TABLE events ADD COLUMN x INT", "DDL"),
        ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
        // DML
        ("INSERT INTO events (seq) VALUES (1)", "DML"),
        ("UPDATE events SET effect = 'allow'", "DML"),
        ("DELETE FROM events", "DML"),
        ("TRUNCATE TABLE events", "DML"),
        // COPY, both ways
        ("COPY events TO '/tmp/actlog-copy.csv'", "COPY"),
        ("COPY (SELECT 1) TO '/tmp/actlog-copy.parquet'", "COPY"),
        // files and URLs
        ("SELECT * FROM '/etc/passwd'", "file and URL tables"),
        ("SELECT * FROM 'https://example.com/x.parquet'", "file and URL tables"),
        ("SELECT * FROM read_parquet('/tmp/x.parquet')", "table function"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function"),
        // session and other statements
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        ("EXPLAIN COPY events TO '/tmp/x.csv'", "COPY"),
        ("SHOW TABLES", "only SELECT"),
    ];
    for (sql, what) in refused {
        let e = rt.block_on(engine.query(sql, &QueryOptions::default())).expect_err(sql);
        assert_eq!(e.code, "sql_refused", "{sql}: {e}");
        assert!(e.message.contains(what), "{sql}: message `{}` should name {what}", e.message);
    }
    assert!(!std::path::Path::new("/tmp/actlog-copy.csv").exists());
    // Reads are allowed, including EXPLAIN and the safe table functions.
    for sql in [
        "SELECT count(*) FROM events",
        "EXPLAIN SELECT * FROM events WHERE seq = 3",
        "SELECT * FROM generate_series(1, 3)",
        "WITH d AS (SELECT * FROM decision_chains) SELECT count(*) FROM d",
    ] {
        rt.block_on(engine.query(sql, &QueryOptions::default())).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Invalid SQL is not a refusal.
    let e = rt.block_on(engine.query("SELEC 1", &QueryOptions::default())).unwrap_err();
    assert_eq!(e.code, "sql_invalid", "{e}");
    let e = rt.block_on(engine.query("SELECT nope FROM events", &QueryOptions::default())).unwrap_err();
    assert_eq!(e.code, "sql_invalid", "{e}");
    assert!(e.message.contains("nope"), "{e}");
}

fn engine_with(dir: &std::path::Path, limits: QueryLimits) -> Engine {
    common::fixture(dir);
    // Reopen with other limits over the same ledger and segments.
    let store = Arc::new(Store::open(dir, Options { read_only: true, ..Options::default() }).unwrap());
    Engine::open(
        store,
        EngineOptions { segment_events: common::FIXTURE_SEGMENT_EVENTS, limits, ..EngineOptions::default() },
    )
    .unwrap()
}

#[test]
fn each_limit_is_reported_by_name() {
    let rt = rt();
    // Rows: cut and flagged, never an error.
    let tmp = tempfile::tempdir().unwrap();
    let e = engine_with(tmp.path(), QueryLimits { rows_max: 10, ..QueryLimits::default() });
    let out = rt.block_on(e.query("SELECT seq FROM events ORDER BY seq", &QueryOptions::default())).unwrap();
    assert_eq!(out.row_count, 10);
    assert!(out.truncated);
    let out = rt.block_on(e.query("SELECT seq FROM events ORDER BY seq LIMIT 10", &QueryOptions::default())).unwrap();
    assert!(!out.truncated, "exactly the limit is not a cut");
    drop(e);

    // Time.
    let tmp = tempfile::tempdir().unwrap();
    let e = engine_with(tmp.path(), QueryLimits { time: Duration::from_millis(50), ..QueryLimits::default() });
    let err = rt
        .block_on(e.query(
            "SELECT count(*) FROM events a, events b, generate_series(1, 1000) g WHERE a.payload < b.payload",
            &QueryOptions::default(),
        ))
        .unwrap_err();
    assert_eq!(err.code, "sql_time_limit", "{err}");
    assert!(err.message.contains("sql_time_ms"), "{err}");
    drop(e);

    // Memory.
    let tmp = tempfile::tempdir().unwrap();
    let e = engine_with(tmp.path(), QueryLimits { memory_bytes: 64 << 10, ..QueryLimits::default() });
    let err =
        rt.block_on(e.query("SELECT payload FROM events ORDER BY payload DESC", &QueryOptions::default())).unwrap_err();
    assert_eq!(err.code, "sql_memory_limit", "{err}");
    assert!(err.message.contains("sql_memory_bytes"), "{err}");
}

#[test]
fn pushdown_never_changes_an_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let probe = common::rows(
        &engine,
        "SELECT actor_id, principal_id, session_id, task_id, event_id FROM events WHERE event_type = 'authz.decision' AND seq > 2200 AND principal_id IS NOT NULL AND session_id IS NOT NULL AND task_id IS NOT NULL ORDER BY seq LIMIT 1",
    );
    let p = &rt.block_on(probe)[0];
    let queries = [
        format!("SELECT seq, event_id, effect FROM events WHERE actor_id = '{}' ORDER BY seq", p[0]),
        format!("SELECT seq FROM events WHERE principal_id = '{}' ORDER BY seq", p[1]),
        format!("SELECT seq FROM events WHERE session_id = '{}' ORDER BY seq", p[2]),
        format!("SELECT seq, event_type FROM events WHERE task_id = '{}' ORDER BY seq", p[3]),
        format!("SELECT seq FROM events WHERE event_id = '{}'", p[4]),
        format!("SELECT seq FROM events WHERE event_id IN ('{}', 'missing') AND task_id = '{}'", p[4], p[3]),
        format!("SELECT d.seq, h.depth, h.sub FROM events d JOIN delegation_hops h ON h.seq = d.seq WHERE d.task_id = '{}' ORDER BY 1, 2", p[3]),
        "SELECT count(*) FROM events WHERE seq BETWEEN 900 AND 2100".to_string(),
        "SELECT count(*) FROM events WHERE seq = 1500 OR seq = 10".to_string(),
        "SELECT count(*) FROM events WHERE event_time >= TIMESTAMP '2026-01-10T00:00:00Z' AND event_time < TIMESTAMP '2026-01-12T00:00:00Z'".to_string(),
        "SELECT count(*) FROM delegation_hops WHERE seq IN (5, 1200, 2400)".to_string(),
    ];
    for q in &queries {
        let with = rt.block_on(common::rows_with(&engine, q, QueryOptions { use_index: true, ..Default::default() }));
        let without =
            rt.block_on(common::rows_with(&engine, q, QueryOptions { use_index: false, ..Default::default() }));
        assert_eq!(with, without, "{q}");
        assert!(!with.is_empty(), "{q} returns rows");
    }
    // The index path really is taken: with the index, a task lookup reads
    // from memory (the fetched rows), not from Parquet.
    let plan = |use_index| {
        let out = rt
            .block_on(engine.query(
                &format!("EXPLAIN SELECT seq FROM events WHERE task_id = '{}'", p[3]),
                &QueryOptions { use_index, ..Default::default() },
            ))
            .unwrap();
        actlog_query::output::to_text_rows(&out.batches).concat().into_iter().flatten().collect::<Vec<_>>().join("\n")
    };
    let indexed = plan(true);
    let scanned = plan(false);
    assert!(!indexed.contains("ParquetSource") && !indexed.contains("parquet"), "{indexed}");
    assert!(scanned.to_lowercase().contains("parquet"), "{scanned}");
}

#[test]
fn queries_during_ingest_see_a_consistent_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let store = engine.store().clone();
    let start = store.head().tree_size;
    const BATCH: u64 = 7;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut batches = 0u64;
            let mut g = actlog_gen::Generator::new(actlog_gen::GenConfig {
                seed: 99,
                events: 100_000,
                pdps: 3,
                ..actlog_gen::GenConfig::default()
            });
            while !stop.load(Ordering::SeqCst) && batches < 120 {
                let items: Vec<_> = (0..BATCH).map(|_| g.next().unwrap()).collect();
                actlog_gen::append_generated(&store, 42, &items).unwrap();
                batches += 1;
            }
            batches
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks < 5 {
        let out = rt
            .block_on(engine.query(
                "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT seq) AS d FROM events",
                &QueryOptions::default(),
            ))
            .unwrap();
        let r = &actlog_query::output::to_text_rows(&out.batches)[0];
        let n: u64 = r[0].as_deref().unwrap().parse().unwrap();
        let lo: u64 = r[1].as_deref().unwrap().parse().unwrap();
        let hi: u64 = r[2].as_deref().unwrap().parse().unwrap();
        let d: u64 = r[3].as_deref().unwrap().parse().unwrap();
        assert_eq!(n, out.tree_size, "the query sees exactly the tree size it reports");
        assert_eq!((lo, hi + 1, d), (0, n, n), "no gap and no duplicate below the tree size");
        assert_eq!((n - start) % BATCH, 0, "no torn batch: {n} events after {start}");
        checks += 1;
        if checks % 4 == 0 {
            engine.seal().unwrap();
        }
        if checks > 400 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let batches = writer.join().unwrap();
    assert!(batches > 0 && checks >= 5);
    let final_n = rt.block_on(common::rows(&engine, "SELECT count(*) FROM events"));
    assert_eq!(final_n[0][0], (start + batches * BATCH).to_string());
}

fn chunks(chunk_events: u64, jobs: usize) -> actlog_query::segments::SegmentCheck {
    actlog_query::segments::SegmentCheck { rows: true, jobs, chunk_events, archive: None }
}

#[test]
fn segments_are_checked_against_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let store = engine.store().clone();
    let ok = actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap();
    assert_eq!(ok, Ok(2));
    for chunk in [1, 37, 999, 1_000, 1_001] {
        for jobs in [1, 2, 3] {
            let ok = actlog_query::segments::check(&store, tmp.path(), &chunks(chunk, jobs), |_| {}).unwrap();
            assert_eq!(ok, Ok(2), "chunks of {chunk} events, {jobs} workers");
        }
    }
    assert_eq!(actlog_query::segments::verify_files(&store, tmp.path(), |_| {}).unwrap(), Ok(2));
    let segs = engine.segments();
    drop(engine);
    let dir = actlog_query::segments::dir(tmp.path());

    // A flipped byte in a file: the recorded hash no longer matches.
    let f = dir.join(&segs[1].events_file);
    let orig = std::fs::read(&f).unwrap();
    let mut bad = orig.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&f, &bad).unwrap();
    let fail = actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap().unwrap_err();
    assert_eq!(fail.first_seq, segs[1].first_seq);
    assert!(fail.reason.contains("blake3"), "{}", fail.reason);
    // The quick check (`verify --no-signatures`) finds it as well.
    let fail = actlog_query::segments::verify_files(&store, tmp.path(), |_| {}).unwrap().unwrap_err();
    assert_eq!(fail.first_seq, segs[1].first_seq);
    assert!(fail.reason.contains("blake3"), "{}", fail.reason);
    std::fs::write(&f, &orig).unwrap();

    // A rewritten segment whose hash is also rewritten in the manifest: the
    // rows no longer equal the ledger's.
    let (mut events, _) = actlog_query::segments::build(&store, segs[0].first_seq, segs[0].end_seq).unwrap();
    let cols: Vec<_> = events.columns().to_vec();
    let effect_idx = events.schema().index_of("effect").unwrap();
    let flipped: actlog_query::datafusion::arrow::array::StringArray = cols[effect_idx]
        .as_any()
        .downcast_ref::<actlog_query::datafusion::arrow::array::StringArray>()
        .unwrap()
        .iter()
        .map(|v| v.map(|s| if s == "deny" { "allow" } else { s }))
        .collect();
    let mut cols2 = cols.clone();
    cols2[effect_idx] = Arc::new(flipped);
    events = actlog_query::datafusion::arrow::array::RecordBatch::try_new(events.schema(), cols2).unwrap();
    let mut buf = Vec::new();
    let mut w =
        actlog_query::datafusion::parquet::arrow::ArrowWriter::try_new(&mut buf, events.schema(), None).unwrap();
    w.write(&events).unwrap();
    w.close().unwrap();
    std::fs::write(dir.join(&segs[0].events_file), &buf).unwrap();
    let manifest = dir.join(actlog_query::segments::SEGMENTS_MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace(&segs[0].events_blake3, blake3::hash(&buf).to_hex().as_str())).unwrap();
    let fail = actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap().unwrap_err();
    assert_eq!(fail.first_seq, 0);
    assert!(fail.reason.contains("`effect`"), "{}", fail.reason);

    // Both segments bad: segments are checked in parallel and the second's
    // fault (a hash mismatch) is found first, but the report names the
    // first segment in seq order.
    std::fs::write(&f, &bad).unwrap();
    let fail = actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap().unwrap_err();
    assert_eq!(fail.first_seq, 0);
    assert!(fail.reason.contains("`effect`"), "{}", fail.reason);
    std::fs::write(&f, &orig).unwrap();

    // The same fault found when the check compares a few events at a time
    // (file batches and ledger chunks out of step, hop rows split across them).
    let fail = actlog_query::segments::check(&store, tmp.path(), &chunks(37, 2), |_| {}).unwrap().unwrap_err();
    assert_eq!(fail.first_seq, 0);
    assert!(fail.reason.contains("`effect`"), "{}", fail.reason);
    // The quick check does not rebuild rows: a file rewritten together with
    // its manifest entry passes it (its documented limit).
    assert_eq!(actlog_query::segments::verify_files(&store, tmp.path(), |_| {}).unwrap(), Ok(2));

    // Rebuilt from the ledger after deleting them: equal again.
    std::fs::remove_dir_all(&dir).unwrap();
    drop(store);
}

#[test]
fn segments_rebuild_from_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let q = "SELECT effect, count(*) FROM events GROUP BY effect ORDER BY effect";
    let before = rt.block_on(common::rows(&engine, q));
    let store = engine.store().clone();
    drop(engine);
    std::fs::remove_dir_all(actlog_query::segments::dir(tmp.path())).unwrap();
    let engine =
        Engine::open(store.clone(), EngineOptions { segment_events: 1_000, ..EngineOptions::default() }).unwrap();
    // Unsealed: everything is read from the tail, same answer.
    assert_eq!(rt.block_on(common::rows(&engine, q)), before);
    assert_eq!(engine.seal().unwrap(), 2);
    assert_eq!(rt.block_on(common::rows(&engine, q)), before);
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(2));
}

/// Once a query has decoded the tail, sealing writes those rows instead of
/// reading and parsing the events again, and index hits in the tail are
/// taken from its batches. The files are byte for byte the ones sealing
/// from the ledger writes, and the answers are the same.
#[test]
fn a_segment_sealed_from_the_tail_is_the_one_the_ledger_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::init(tmp.path(), [7u8; 32], Some("fixture.actlog.test".into()), Options::default()).unwrap());
    let cfg = actlog_gen::GenConfig { seed: 42, events: 2_500, pdps: 3, ..actlog_gen::GenConfig::default() };
    actlog_gen::build_ledger(&store, &cfg, 256, |_| {}).unwrap();
    store.checkpoint_now().unwrap();
    let size = store.head().tree_size;
    let opts = EngineOptions { segment_events: 1_000, ..EngineOptions::default() };
    let engine = Engine::open(store.clone(), opts).unwrap();
    let rt = rt();
    let q = "SELECT event_type, producer_key, effect, count(*), sum(chain_depth) FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let answer = rt.block_on(common::rows(&engine, q));
    assert_eq!(engine.tail_rows_read(), size, "the query decoded the whole ledger into the tail");
    // Index hits: from the tail's batches (all of them, before the seal),
    // then from segments and the tail.
    let tasks = rt.block_on(common::rows(
        &engine,
        "SELECT DISTINCT task_id FROM events WHERE task_id IS NOT NULL AND seq % 400 = 7 ORDER BY 1",
    ));
    assert!(tasks.len() >= 4, "tasks spread over segments and the tail: {tasks:?}");
    let list = tasks.iter().map(|t| format!("'{}'", t[0])).collect::<Vec<_>>().join(", ");
    let hits = [
        format!(
            "SELECT seq, event_id, producer_key, payload, leaf_hash FROM events WHERE task_id IN ({list}) ORDER BY seq"
        ),
        "SELECT * FROM delegation_hops WHERE seq IN (3, 1500, 2400, 2450) ORDER BY seq, depth".to_string(),
        "SELECT seq, event_type FROM events WHERE seq IN (3, 1500, 2400, 2450) ORDER BY seq".to_string(),
    ];
    let answers = |engine: &Engine| -> Vec<Vec<Vec<String>>> {
        hits.iter().map(|h| rt.block_on(common::rows(engine, h))).collect()
    };
    let tail_hits = answers(&engine);
    let lens: Vec<usize> = tail_hits.iter().map(Vec::len).collect();
    assert!(lens[0] >= 4 && lens[1] >= 4 && lens[2] == 4, "{lens:?}");
    assert_eq!(engine.seal().unwrap(), 2);
    assert_eq!(engine.tail_rows_read(), size, "sealing read nothing more");
    assert_eq!(rt.block_on(common::rows(&engine, q)), answer);
    assert_eq!(answers(&engine), tail_hits, "index hits in segments and the tail");
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(2));
    let from_tail: Vec<_> =
        engine.segments().iter().map(|s| (s.events_blake3.clone(), s.hops_blake3.clone())).collect();

    // The same segments sealed again with no tail: read from the ledger.
    drop(engine);
    std::fs::remove_dir_all(actlog_query::segments::dir(tmp.path())).unwrap();
    let engine = Engine::open(store.clone(), opts).unwrap();
    assert_eq!(engine.seal().unwrap(), 2);
    assert_eq!(engine.tail_rows_read(), 0, "sealing decodes in chunks of its own, not into the tail");
    let from_ledger: Vec<_> =
        engine.segments().iter().map(|s| (s.events_blake3.clone(), s.hops_blake3.clone())).collect();
    assert_eq!(from_tail, from_ledger, "the same bytes");
    assert_eq!(rt.block_on(common::rows(&engine, q)), answer, "the ledger's rows");
    assert_eq!(answers(&engine), tail_hits, "index hits decoded from the ledger");
}

#[test]
fn a_segment_sealed_in_chunks_matches_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let store = engine.store().clone();
    drop(engine);
    std::fs::remove_dir_all(actlog_query::segments::dir(tmp.path())).unwrap();
    // One segment of 2,500 events decoded 1,000 at a time: three chunks.
    let sealed =
        actlog_query::segments::seal_in_chunks(&store, tmp.path(), Vec::new(), 2_500, 1_000, &|_, _| None, |_| {})
            .unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(1));
    // The manifest's bounds and hop count are those of all three chunks.
    let engine =
        Engine::open(store.clone(), EngineOptions { segment_events: 2_500, ..EngineOptions::default() }).unwrap();
    let q = "SELECT CAST(min(event_time) AS BIGINT), CAST(max(event_time) AS BIGINT) FROM events WHERE seq < 2500";
    let got = rt.block_on(common::rows(&engine, q));
    let s = &sealed[0];
    assert_eq!(got, vec![vec![s.min_event_time.to_string(), s.max_event_time.to_string()]]);
    let hops = rt.block_on(common::rows(&engine, "SELECT count(*) FROM delegation_hops WHERE seq < 2500"));
    assert_eq!(hops, vec![vec![s.hop_rows.to_string()]]);
    assert!(s.hop_rows > 2_500, "every event has at least one hop");
}

#[test]
fn scans_read_only_the_segments_their_ranges_need() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let segs = engine.segments();
    assert_eq!(segs.len(), 2);
    let plan = |sql: &str| {
        let out = rt
            .block_on(engine.query(&format!("EXPLAIN {sql}"), &QueryOptions { use_index: false, ..Default::default() }))
            .unwrap();
        actlog_query::output::to_text_rows(&out.batches).concat().into_iter().flatten().collect::<Vec<_>>().join("\n")
    };
    let files = |p: &str| segs.iter().filter(|s| p.contains(&s.events_file)).count();
    // Plans name segments by their object-store URL, never by the data
    // directory's path (a query token must not learn the host's layout).
    let full = plan("SELECT count(DISTINCT actor_id) FROM events");
    assert!(full.contains("events-") && !full.contains(tmp.path().to_str().unwrap()), "{full}");
    // (count(*) alone is answered from statistics; a distinct count scans.)
    assert_eq!(files(&plan("SELECT count(DISTINCT actor_id) FROM events")), 2, "a full scan reads both segments");
    assert_eq!(files(&plan("SELECT count(DISTINCT actor_id) FROM events WHERE seq < 500")), 1);
    assert_eq!(files(&plan("SELECT count(DISTINCT actor_id) FROM events WHERE seq BETWEEN 1200 AND 1300")), 1);
    assert_eq!(files(&plan("SELECT count(DISTINCT actor_id) FROM events WHERE seq >= 2000")), 0, "only the tail");
    // event_time bounds: the first segment's last event is earlier than the
    // second segment's first, so a window inside the second skips the first.
    let t = segs[1].min_event_time + 1;
    let ts = actlog_core::time::format_rfc3339_utc(t);
    let p = plan(&format!("SELECT count(DISTINCT actor_id) FROM events WHERE event_time >= TIMESTAMP '{ts}'"));
    assert!(!p.contains(&segs[0].events_file) || segs[0].max_event_time >= t, "{p}");
    assert!(p.contains(&segs[1].events_file), "{p}");
}

#[test]
fn string_fast_paths_give_datafusions_answers() {
    // GROUP BY on string columns runs through StringGroupsExec, and short
    // string equality through ShortStringEq, by default; with them off,
    // DataFusion's own operators answer. Both read the same sealed segments
    // and live tail. Float sums depend on the order rows meet, so the
    // average is rounded.
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let queries = [
        "SELECT tool_name, effect, count(*) FROM events GROUP BY tool_name, effect ORDER BY 1, 2",
        "SELECT actor_id, count(*) AS denies FROM events WHERE effect = 'deny' GROUP BY actor_id ORDER BY denies DESC, actor_id LIMIT 10",
        "SELECT principal_id, count(*), count(task_id), min(seq), max(seq), sum(chain_depth), round(avg(risk_score), 9) FROM events GROUP BY principal_id ORDER BY 1",
        "SELECT event_type, effect, outcome_status, pdp_id, count(*) FILTER (WHERE chain_depth > 1) FROM events GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        "SELECT effect, max(tool_name), min(actor_id) FROM events GROUP BY effect ORDER BY 1",
        "SELECT h.sub, count(*) FROM delegation_hops h GROUP BY h.sub ORDER BY 1",
        "SELECT task_id, count(*) FROM events GROUP BY task_id HAVING count(*) > 2 ORDER BY 2 DESC, 1 LIMIT 20",
        "SELECT count(*), count(tool_name) FROM events WHERE effect <> 'allow' AND 'authz.outcome' <> event_type",
        "SELECT seq FROM events WHERE outcome_status = 'failed' OR effect = '' OR effect = 'deny ' ORDER BY seq",
        "SELECT effect, count(DISTINCT actor_id) FROM events GROUP BY effect ORDER BY 1",
        // An equality filter makes its column constant; window partitions
        // rely on that (a rewritten filter once lost it).
        "SELECT seq, count(*) OVER (PARTITION BY effect) FROM events WHERE effect = 'deny' ORDER BY seq LIMIT 50",
        "SELECT seq, row_number() OVER (PARTITION BY effect ORDER BY seq) FROM events WHERE effect = 'deny' ORDER BY seq LIMIT 50",
        "SELECT seq, count(*) OVER (PARTITION BY event_type, effect) FROM events WHERE event_type = 'authz.decision' AND effect <> 'allow' ORDER BY seq LIMIT 50",
    ];
    for q in queries {
        let on = rt.block_on(common::rows_with(&engine, q, QueryOptions::default()));
        let off =
            rt.block_on(common::rows_with(&engine, q, QueryOptions { fast_strings: false, ..Default::default() }));
        assert_eq!(on, off, "{q}");
        assert!(!on.is_empty(), "{q} returns rows");
    }
    // The fast path is really taken for string keys, and not otherwise.
    let plan = |sql: &str| {
        let out = rt.block_on(engine.query(&format!("EXPLAIN {sql}"), &QueryOptions::default())).unwrap();
        actlog_query::output::to_text_rows(&out.batches).concat().into_iter().flatten().collect::<Vec<_>>().join("\n")
    };
    assert!(plan(queries[0]).contains("StringGroupsExec"), "{}", plan(queries[0]));
    assert!(plan(queries[3]).contains("StringGroupsExec"), "{}", plan(queries[3]));
    // EXPLAIN ANALYZE reports what the fast path did.
    let analyzed = plan(&format!("ANALYZE {}", queries[0]));
    let line = analyzed.lines().find(|l| l.contains("StringGroupsExec")).unwrap_or_else(|| panic!("{analyzed}"));
    assert!(line.contains("output_rows=") && line.contains("elapsed_compute="), "{line}");
    let filtered = plan(queries[1]);
    assert!(filtered.contains("view_eq(effect@"), "{filtered}");
    let by_number = plan("SELECT chain_depth, count(*) FROM events GROUP BY chain_depth");
    assert!(!by_number.contains("StringGroupsExec"), "{by_number}");
}

#[test]
fn segments_leave_the_scan_columns_uncompressed() {
    use actlog_query::datafusion::parquet::basic::Compression;
    use actlog_query::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use actlog_query::segments::UNCOMPRESSED_COLUMNS;

    let tmp = tempfile::tempdir().unwrap();
    let _engine = common::fixture(tmp.path());
    let file = std::fs::read_dir(tmp.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events-"))
        .expect("a sealed events file");
    let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    let codec = |name: &str| {
        (0..rg.num_columns())
            .map(|i| rg.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("{name} is a column of the events file"))
            .compression()
    };
    for name in UNCOMPRESSED_COLUMNS {
        assert_eq!(codec(name), Compression::UNCOMPRESSED, "{name}");
    }
    for name in ["payload", "event_id", "leaf_hash", "chain_hash", "task_id"] {
        assert!(matches!(codec(name), Compression::ZSTD(_)), "{name}: {:?}", codec(name));
    }
}

#[test]
fn a_damaged_segment_file_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let file = std::fs::read_dir(tmp.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events-"))
        .expect("a sealed events file");
    // Cut the file in two (the footer goes); then keep its length but break
    // the footer's length field and magic. (Parquet pages carry no checksum
    // here, so damage inside a column the query does not read goes unseen
    // by SQL; `actlog verify` compares every segment with the ledger.)
    let bytes = std::fs::read(&file).unwrap();
    for damaged in [bytes[..bytes.len() / 2].to_vec(), {
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 8..].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f, b'P', b'A', b'R', b'0']);
        b
    }] {
        std::fs::write(&file, &damaged).unwrap();
        let err = rt
            .block_on(engine.query("SELECT sum(chain_depth), count(tool_name) FROM events", &QueryOptions::default()))
            .expect_err("a damaged segment cannot answer");
        assert_eq!(err.code, "internal", "{err}");
        assert!(err.message.starts_with("reading the query segments failed"), "{err}");
    }
    std::fs::write(&file, &bytes).unwrap();
}

/// The segment half of issue 12's tamper campaign: random bit flips,
/// truncations, deletions and swaps of sealed segment files and of the
/// segment manifest, each on the original files. `segments::verify` (what
/// `actlog verify` runs) must fail on every one. Deleting the manifest is
/// deleting the cache (segments are derived from the ledger and rebuilt
/// from it, docs/operating.md), not tampering: those draws are counted
/// apart. `ACTLOG_TAMPER_SEGMENT_CASES` sets the count (default 200).
#[test]
fn tamper_campaign_segment_files() {
    let cases: usize = std::env::var("ACTLOG_TAMPER_SEGMENT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let store = engine.store().clone();
    drop(engine);
    let dir = actlog_query::segments::dir(tmp.path());
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    assert!(files.len() >= 5, "two segments of two files each, and the manifest: {files:?}");
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut state = 0x7a3e_5eed_u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % n as u64) as usize
    };
    let (mut found, mut missed, mut cache_deleted) = (0usize, Vec::new(), 0usize);
    let mut case = 0;
    while case < cases {
        let i = next(files.len());
        let (f, orig) = (&files[i], &originals[i]);
        let what = match next(4) {
            0 => {
                let mut v = orig.clone();
                let at = next(v.len());
                v[at] ^= 1 << next(8);
                std::fs::write(f, v).unwrap();
                format!("bit flipped at {at}")
            }
            1 => {
                let keep = next(orig.len());
                std::fs::write(f, &orig[..keep]).unwrap();
                format!("truncated to {keep} bytes")
            }
            2 => {
                let j = (i + 1 + next(files.len() - 1)) % files.len();
                std::fs::write(f, &originals[j]).unwrap();
                format!("replaced by {}", files[j].file_name().unwrap().to_string_lossy())
            }
            _ if f.ends_with(actlog_query::segments::SEGMENTS_MANIFEST_FILE) => {
                cache_deleted += 1;
                continue;
            }
            _ => {
                std::fs::remove_file(f).unwrap();
                "deleted".to_string()
            }
        };
        case += 1;
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match actlog_query::segments::verify(&store, tmp.path(), |_| {}) {
            Ok(Ok(_)) => missed.push(format!("case {case}: {name} {what}")),
            Ok(Err(_)) | Err(_) => found += 1,
        }
        std::fs::write(f, orig).unwrap();
    }
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(2), "restored");
    eprintln!(
        "tamper campaign, segment files: {found}/{cases} detected; {cache_deleted} manifest deletions not counted"
    );
    assert!(missed.is_empty(), "{} of {cases} not detected:\n{}", missed.len(), missed.join("\n"));
}

/// An `authz.decision` of `pdp-1`, signed with `seed`.
pub(crate) fn signed_decision(id: &str, seed: &[u8; 32]) -> Vec<u8> {
    let event = serde_json::json!({
        "spec_version": "1", "event_type": "authz.decision", "event_id": id,
        "event_time": "2026-08-21T10:15:30Z", "pdp": {"id": "pdp-1"},
        "delegation": {"principal": {"type": "user", "id": "alice"}, "actor": {"id": "agent-7", "sub_profile": "ai_agent"},
                       "chain": [{"depth": 1, "sub": "agent-7", "sub_profile": "ai_agent"}], "verification": {"status": "verified"}},
        "correlation": {"session_id": "s1", "task_id": "t1"}, "policy": {"version": "v1"},
        "request": {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                    "resource": {"type": "document", "id": "doc-1"}},
        "decision": {"effect": "allow"}
    });
    actlog_core::dsse::Envelope::sign(event.to_string().into_bytes(), None, seed).to_json().into_bytes()
}

pub(crate) fn append_decisions(store: &Store, prefix: &str, n: usize, seed: &[u8; 32]) {
    use actlog_core::ingest::{EnvelopeLimits, Submitter, check_envelopes};
    let envs = (0..n).map(|i| signed_decision(&format!("{prefix}-{i}"), seed)).collect();
    let checked = check_envelopes(envs, &store.registry(), &Submitter::default(), &EnvelopeLimits::default())
        .into_iter()
        .map(|r| r.expect("valid envelope"))
        .collect();
    store.append(checked).unwrap();
}

/// One public key registered under a second name after the first was
/// revoked: each event is named by the registration that signed it (the
/// one active at its seq), in the live tail and in sealed segments alike,
/// and segments sealed before the second registration still check against
/// the ledger. Before names were taken as of each event's seq, every row
/// decoded after the second registration said `second`, so segments sealed
/// before it no longer matched their rebuilt rows and `verify` failed.
#[test]
fn a_key_registered_again_names_each_event_by_its_registration() {
    use actlog_store::AdminOp;
    let tmp = tempfile::tempdir().unwrap();
    let seed = [0x33u8; 32];
    let public_key = actlog_core::sig::public_key_of(&seed);
    let store =
        Arc::new(Store::init(tmp.path(), [7u8; 32], Some("names.actlog.test".into()), Options::default()).unwrap());
    store.admin(AdminOp::AddKey { name: "first".into(), pdp_id: "pdp-1".into(), public_key }).unwrap();
    append_decisions(&store, "a", 16, &seed);
    let engine = Engine::open(store.clone(), EngineOptions { segment_events: 8, ..EngineOptions::default() }).unwrap();
    assert_eq!(engine.seal().unwrap(), 2);
    store.admin(AdminOp::RevokeKey { name: "first".into() }).unwrap();
    store.admin(AdminOp::AddKey { name: "second".into(), pdp_id: "pdp-1".into(), public_key }).unwrap();
    append_decisions(&store, "b", 16, &seed);
    store.checkpoint_now().unwrap();
    let rt = rt();
    let q = "SELECT substr(event_id, 1, 1) AS batch, producer_key, count(*) AS n FROM events \
             WHERE event_type = 'authz.decision' GROUP BY 1, 2 ORDER BY 1, 2";
    let want = vec![vec!["a".to_string(), "first".into(), "16".into()], vec!["b".into(), "second".into(), "16".into()]];
    assert_eq!(rt.block_on(common::rows(&engine, q)), want, "sealed segments and the live tail");
    let by_index = "SELECT producer_key FROM events WHERE event_id = 'a-3'";
    assert_eq!(rt.block_on(common::rows(&engine, by_index)), vec![vec!["first".to_string()]], "an index hit");
    assert!(engine.seal().unwrap() >= 2);
    assert_eq!(rt.block_on(common::rows(&engine, q)), want, "all sealed");
    let sealed = engine.segments().len();
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(sealed));

    // Segments sealed by a build that named by the newest registration
    // (manifest version 1) are sealed again here, where the rules differ.
    drop(engine);
    set_manifest_version(tmp.path(), 1);
    let engine = Engine::open(store.clone(), EngineOptions { segment_events: 8, ..EngineOptions::default() }).unwrap();
    assert!(engine.segments().is_empty(), "version-1 segments are dropped when a key was registered twice");
    assert_eq!(rt.block_on(common::rows(&engine, q)), want, "from the ledger");
    assert_eq!(engine.seal().unwrap(), sealed);
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(sealed));
}

/// Rewrites the `version` of a data dir's segment manifest.
fn set_manifest_version(data: &std::path::Path, version: u32) {
    let path = actlog_query::segments::dir(data).join(actlog_query::segments::SEGMENTS_MANIFEST_FILE);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["version"] = version.into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

/// Where no key was registered twice, both naming rules agree, so a
/// version-1 manifest is still read as it is.
#[test]
fn version_one_segments_are_kept_where_the_naming_rules_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let store = engine.store().clone();
    drop(engine);
    set_manifest_version(tmp.path(), 1);
    let engine = Engine::open(
        store.clone(),
        EngineOptions { segment_events: common::FIXTURE_SEGMENT_EVENTS, ..EngineOptions::default() },
    )
    .unwrap();
    assert_eq!(engine.segments().len(), 2);
    assert_eq!(actlog_query::segments::verify(&store, tmp.path(), |_| {}).unwrap(), Ok(2));
}

/// Splits a segment file's rows into two Parquet files by seq parity, as
/// an archive splits a range by date: each file ascending, the two disjoint.
fn split_by_parity(path: &std::path::Path) -> [Vec<u8>; 2] {
    use actlog_query::datafusion::arrow::array::{BooleanArray, UInt64Array};
    use actlog_query::datafusion::arrow::compute::filter_record_batch;
    use actlog_query::datafusion::parquet::arrow::ArrowWriter;
    use actlog_query::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    [0u64, 1].map(|parity| {
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batches[0].schema(), None).unwrap();
        for b in &batches {
            let seqs = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            let keep: BooleanArray = seqs.values().iter().map(|s| Some(s % 2 == parity)).collect();
            w.write(&filter_record_batch(b, &keep).unwrap()).unwrap();
        }
        w.close().unwrap();
        out
    })
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The archived files of segment `i` (its rows split by seq parity), their
/// bytes by key, and the in-memory "archive" holding them.
fn archived_segment(
    engine: &Engine,
    i: usize,
) -> (actlog_query::segments::Archived, std::collections::HashMap<String, bytes::Bytes>) {
    let s = &engine.segments()[i];
    let d = actlog_query::segments::dir(engine.data_dir());
    let mut fetched = std::collections::HashMap::new();
    let mut files = |table: &str, local: &str| {
        split_by_parity(&d.join(local))
            .into_iter()
            .enumerate()
            .map(|(n, bytes)| {
                let key = format!("{table}/date=2026-01-0{n}/{:020}-{:020}-part-00000.parquet", s.first_seq, s.end_seq);
                let f = actlog_query::segments::ArchivedFile {
                    key: key.clone(),
                    sha256: sha256_hex(&bytes),
                    bytes: bytes.len() as u64,
                    pieces: actlog_query::segments::cut_pieces(&bytes::Bytes::from(bytes.clone())).unwrap(),
                };
                fetched.insert(key, bytes::Bytes::from(bytes));
                f
            })
            .collect::<Vec<_>>()
    };
    let archived = actlog_query::segments::Archived {
        events: files("events", &s.events_file),
        hops: files("delegation_hops", &s.hops_file),
    };
    (archived, fetched)
}

fn in_memory(
    fetched: &std::collections::HashMap<String, bytes::Bytes>,
) -> Arc<actlog_query::object_store::memory::InMemory> {
    use actlog_query::object_store::{ObjectStoreExt, path::Path};
    let mem = Arc::new(actlog_query::object_store::memory::InMemory::new());
    rt().block_on(async {
        for (k, v) in fetched {
            mem.put(&Path::from(k.as_str()), v.clone().into()).await.unwrap();
        }
    });
    mem
}

fn manifest_json(data: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(actlog_query::segments::dir(data).join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest_json(data: &std::path::Path, m: &serde_json::Value) {
    std::fs::write(actlog_query::segments::dir(data).join("manifest.json"), serde_json::to_vec(m).unwrap()).unwrap();
}

/// A retired segment (`serve --hot-retention`) answers from its archived
/// files exactly as from its local ones. Retiring refuses files whose rows
/// differ and changes nothing; a query without the archive says where the
/// rows are; another engine over the same data directory (a reader beside
/// the server) follows the retirement; an archived file changed after
/// retirement is corruption; the local files of a retired segment go; and
/// `verify` checks the retired segment's manifest entry, and with the
/// archive its files against the ledger.
#[test]
fn a_retired_segment_answers_from_its_archived_files() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let rt = rt();
    let queries = [
        "SELECT count(*), count(DISTINCT event_id), min(seq), max(seq) FROM events",
        "SELECT seq, event_id, event_type, effect, leaf_hash, payload FROM events ORDER BY seq",
        "SELECT * FROM delegation_hops ORDER BY 1, 3",
        "SELECT count(*) FROM decision_chains",
    ];
    let before: Vec<_> = queries.iter().map(|q| rt.block_on(common::rows(&engine, q))).collect();
    let before_depth = rt.block_on(common::rows(&engine, "SELECT max(chain_depth) FROM events"));
    assert_eq!(manifest_json(tmp.path())["version"], 2, "version 2 until a segment is retired");
    let store = engine.store().clone();
    let opts = EngineOptions { segment_events: 1_000, ..EngineOptions::default() };
    let reader = Engine::open(store.clone(), opts).unwrap();
    assert_eq!(rt.block_on(common::rows(&reader, queries[0])), before[0]);
    let (first, end) = (engine.segments()[0].first_seq, engine.segments()[0].end_seq);
    let (good, fetched) = archived_segment(&engine, 0);

    // Rows of another segment: refused, and nothing changes.
    let (other, other_bytes) = archived_segment(&engine, 1);
    let err = engine.retire(first, end, other, &other_bytes).unwrap_err();
    assert!(matches!(err, actlog_query::Error::Corruption(_)), "{err}");
    assert!(engine.segments()[0].archived.is_none());
    // One hop file short: refused too.
    let mut short = good.clone();
    short.hops.truncate(1);
    assert!(engine.retire(first, end, short, &fetched).is_err());

    assert!(engine.retire(first, end, good.clone(), &fetched).unwrap());
    assert!(!engine.retire(first, end, good.clone(), &fetched).unwrap(), "retired once");
    assert_eq!(engine.segments()[0].archived.as_ref(), Some(&good));
    assert_eq!(manifest_json(tmp.path())["version"], 3);
    // No archive attached: the scan names what it needs. The other engine
    // reads the new manifest at its next query, and says the same.
    for e in [&engine, &reader] {
        let err = rt.block_on(e.query(queries[0], &QueryOptions::default())).unwrap_err();
        assert_eq!(err.code, "archived", "{err:?}");
    }
    // Index lookups read the ledger, not segments, and still answer.
    assert_eq!(rt.block_on(common::rows(&engine, "SELECT count(*) FROM events WHERE seq = 3")), vec![vec!["1"]]);

    let mem = in_memory(&fetched);
    engine.attach_archive(mem.clone(), 64 << 20);
    reader.attach_archive(mem.clone(), 64 << 20);
    // A narrow scan fetches the column chunks it reads, not whole files.
    let cache = engine.archive_cache().unwrap();
    let total: u64 = good.events.iter().chain(&good.hops).map(|f| f.bytes).sum();
    let depth = "SELECT max(chain_depth) FROM events";
    assert_eq!(rt.block_on(common::rows(&engine, depth)), before_depth);
    let narrow = cache.fetched_bytes.load(Ordering::Relaxed);
    assert!(narrow > 0 && narrow < total / 4, "{narrow} of {total} bytes fetched for one column");
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&rt.block_on(common::rows(&engine, q)), want, "{q}");
        assert_eq!(&rt.block_on(common::rows(&reader, q)), want, "{q}");
    }
    let fetched_bytes = cache.fetched_bytes.load(Ordering::Relaxed);
    assert!(fetched_bytes <= total, "each piece fetched once at most: {fetched_bytes} of {total}");

    // verify: without the archive, the entry's shape and the chain hash;
    // with it, every archived row against the ledger.
    let check = |archive: Option<Arc<actlog_query::object_store::memory::InMemory>>| {
        let opts = actlog_query::segments::SegmentCheck {
            archive: archive.map(|a| a as Arc<dyn actlog_query::object_store::ObjectStore>),
            ..Default::default()
        };
        actlog_query::segments::check(&store, tmp.path(), &opts, |_| {}).unwrap()
    };
    assert_eq!(check(None), Ok(2));
    assert_eq!(check(Some(mem.clone())), Ok(2));
    let manifest = manifest_json(tmp.path());
    for (edit, why) in [
        ("/segments/0/archived/events", "no archived events file"),
        ("/segments/0/archived/hops/0/key", "as one of its archived"),
    ] {
        let mut m = manifest.clone();
        *m.pointer_mut(edit).unwrap() = match edit.ends_with("key") {
            true => serde_json::json!(other_bytes.keys().find(|k| k.starts_with("delegation_hops/")).unwrap()),
            false => serde_json::json!([]),
        };
        write_manifest_json(tmp.path(), &m);
        let fail = check(None).unwrap_err();
        assert!(fail.first_seq == 0 && fail.reason.contains(why), "{edit}: {fail:?}");
    }
    write_manifest_json(tmp.path(), &manifest);
    // A file that matches its pin but holds other rows (a manifest
    // rewritten to pin another segment's file under this range's key):
    // only the full check, against the ledger, sees it.
    let events_a = good.events[0].key.clone();
    let stranger = other_bytes.iter().find(|(k, _)| k.starts_with("events/")).unwrap().1.clone();
    let mut bytes = fetched.clone();
    bytes.insert(events_a.clone(), stranger.clone());
    let mut repinned = manifest.clone();
    repinned["segments"][0]["archived"]["events"][0]["sha256"] = serde_json::json!(sha256_hex(&stranger));
    repinned["segments"][0]["archived"]["events"][0]["bytes"] = serde_json::json!(stranger.len());
    repinned["segments"][0]["archived"]["events"][0]["pieces"] =
        serde_json::json!(actlog_query::segments::cut_pieces(&stranger).unwrap());
    write_manifest_json(tmp.path(), &repinned);
    assert_eq!(check(None), Ok(2), "the entry's shape is right");
    let fail = check(Some(in_memory(&bytes))).unwrap_err();
    assert!(fail.first_seq == 0 && fail.reason.contains("ledger"), "{fail:?}");
    // The same file against the original pin: named.
    write_manifest_json(tmp.path(), &manifest);
    let fail = check(Some(in_memory(&bytes))).unwrap_err();
    assert!(fail.reason.contains(&events_a) && fail.reason.contains("the manifest pins"), "{fail:?}");
    assert_eq!(check(Some(mem.clone())), Ok(2));

    // Reopened: the manifest keeps the retirement, and the first seal
    // deletes the local files a retirement left behind.
    let local = actlog_query::segments::local_files(&engine.segments()[0]).map(|f| f.to_string());
    let d = actlog_query::segments::dir(tmp.path());
    assert!(local.iter().all(|f| d.join(f).exists()), "kept until no query can read them");
    drop(engine);
    drop(reader);
    let engine = Engine::open(store.clone(), opts).unwrap();
    assert_eq!(engine.segments()[0].archived.as_ref(), Some(&good));
    engine.seal().unwrap();
    assert!(local.iter().all(|f| !d.join(f).exists()), "the retired segment's files are gone");

    // An archived file changed after retirement: corruption, never rows.
    let mut changed = fetched.clone();
    let key = good.events[1].key.clone();
    changed.insert(key.clone(), other_bytes.values().next().unwrap().clone());
    engine.attach_archive(in_memory(&changed), 64 << 20);
    let err = rt.block_on(engine.query(queries[0], &QueryOptions::default())).unwrap_err();
    assert_eq!(err.code, "storage_corruption", "{err:?}");
    assert!(err.message.contains(&key), "{err:?}");
    // Scans that prune the retired segment away still answer.
    let q = format!("SELECT count(*) FROM events WHERE seq >= {end}");
    let n = store.head().tree_size - end;
    assert_eq!(rt.block_on(common::rows(&engine, &q)), vec![vec![n.to_string()]]);
    // A local segment file that is missing fails the scan; it is never
    // read as an empty segment.
    std::fs::remove_file(d.join(&engine.segments()[1].events_file)).unwrap();
    let err = rt.block_on(engine.query(&q, &QueryOptions::default())).unwrap_err();
    assert_eq!(err.code, "internal", "{err:?}");
}
