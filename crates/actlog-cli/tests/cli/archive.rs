//! `serve --archive` to local files and to a real S3-compatible server
//! (moto, started here), read as it lies by DuckDB, and `verify --archive`,
//! which must name the object after any one of them is changed, deleted or
//! replaced by an older one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Proc, actlog, agent, call, free_port, loadgen, serve_env, settled_checkpoint, sigterm};

/// Seqs per range (and per segment) in these tests.
const RANGE: u64 = 512;

fn metric(p: &Proc, admin: &str, name: &str) -> u64 {
    let mut r =
        agent().get(format!("{}/metrics", p.url)).header("authorization", &format!("Bearer {admin}")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

fn wait_archived(p: &Proc, admin: &str, end: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(p, admin, "actlog_archive_end_seq") < end {
        assert_eq!(metric(p, admin, "actlog_archive_failures_total"), 0, "an archiver turn failed");
        assert!(Instant::now() < deadline, "the archive did not reach seq {end}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verifier_key(data: &Path) -> String {
    let out = actlog(data, &["info", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["verifier_key"].as_str().unwrap().to_string()
}

/// `actlog verify --archive URL --key KEY [extra] --json`, with `envs`.
fn verify_archive(url: &str, key: &str, extra: &[&str], envs: &[(&str, &str)]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["verify", "--archive", url, "--key", key, "--json"])
        .args(extra)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// Every file below `root`, relative to it.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r);
            } else {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn duckdb(sql: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import duckdb, sys; print(duckdb.sql(sys.argv[1]).fetchall())", sql])
        .output()
        .expect("python3 with duckdb (tools/setup.sh installs it)");
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `serve --archive file://DIR/archive` on `DIR/data`, with segments (so
/// archived ranges) of `RANGE` events: the server, the data and archive
/// directories, and the archive's URL.
fn serve_archiving(dir: &Path) -> (Proc, PathBuf, PathBuf, String) {
    let (data, arch) = (dir.join("data"), dir.join("archive"));
    let url = format!("file://{}", arch.display());
    let seg = RANGE.to_string();
    let p = serve_env(&data, "127.0.0.1:0", &["--segment-events", &seg, "--archive", &url], &[]);
    (p, data, arch, url)
}

fn sql(data: &Path, query: &str) -> String {
    let out = actlog(data, &["sql", query, "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A ledger archived to local files: `verify --archive` passes (and checks a
/// checkpoint kept from before the archive's end), DuckDB reads the hive
/// tables with the counts actlog's SQL gives, and each single change to the
/// archive fails verification naming the object.
#[test]
fn an_archive_in_files_verifies_is_read_by_duckdb_and_names_any_changed_object() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, data, arch, url) = serve_archiving(dir.path());
    let admin = p.token.clone().unwrap();
    loadgen(&p, &admin, 400);
    let kept = settled_checkpoint(&p, &admin);
    loadgen(&p, &admin, 300);
    wait_archived(&p, &admin, RANGE);
    loadgen(&p, &admin, 700);
    settled_checkpoint(&p, &admin);
    wait_archived(&p, &admin, 2 * RANGE);
    assert!(sigterm(&mut p).success());
    let key = verifier_key(&data);
    // The second range was archived at a later checkpoint: its record holds
    // a consistency proof from the first range's.
    let second = record(&arch, RANGE, 2 * RANGE);
    assert!(second["tree_size"].as_u64() > second["previous"]["tree_size"].as_u64(), "{second}");
    assert!(!second["consistency"].as_array().unwrap().is_empty(), "{second}");

    let kept_file = dir.path().join("kept.txt");
    std::fs::write(&kept_file, &kept).unwrap();
    let (ok, v, err) = verify_archive(&url, &key, &["--checkpoint", kept_file.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(v["ranges"].as_u64().unwrap() >= 2, "{v}");
    let end = v["end_seq"].as_u64().unwrap();
    assert_eq!(end % RANGE, 0);
    assert!(v["tiles"].as_u64().unwrap() >= 2 * RANGE / 256, "{v}");
    assert!(v["trusted"].as_str().unwrap().contains("is the root of the archived leaves"), "{v}");
    // The independent checker (Python, written from schema/archive.md) agrees.
    let (ok, out) = archive_check(&arch, &key, &["--checkpoint", kept_file.to_str().unwrap()]);
    assert!(ok && out.starts_with("ok:"), "{out}");

    // DuckDB reads the hive-partitioned tables as they lie, with actlog's answers.
    let ev = format!("read_parquet('{}/events/*/*.parquet', hive_partitioning = true)", arch.display());
    let hops = format!("read_parquet('{}/delegation_hops/*/*.parquet', hive_partitioning = true)", arch.display());
    assert_eq!(
        duckdb(&format!("SELECT count(*), count(DISTINCT seq), max(seq) + 1 FROM {ev}")),
        format!("[({end}, {end}, {end})]")
    );
    assert_eq!(
        duckdb(&format!("SELECT count(*) FROM {ev} WHERE CAST(date AS VARCHAR) <> strftime(event_time, '%Y-%m-%d')")),
        "[(0,)]",
        "each row is in its date's partition"
    );
    let by_effect = duckdb(&format!(
        "SELECT string_agg(effect || '=' || n, ',' ORDER BY effect) FROM \
         (SELECT coalesce(effect, 'null') AS effect, count(*) AS n FROM {ev} GROUP BY 1)"
    ));
    let ours = sql(
        &data,
        &format!(
            "SELECT coalesce(effect, 'null') AS effect, count(*) AS n FROM events WHERE seq < {end} GROUP BY 1 ORDER BY 1"
        ),
    );
    let ours: Vec<String> = ours.lines().skip(1).map(|l| l.replacen(',', "=", 1)).collect();
    assert_eq!(by_effect, format!("[('{}',)]", ours.join(",")));
    let hop_rows = sql(&data, &format!("SELECT count(*) FROM delegation_hops WHERE seq < {end}"));
    assert_eq!(duckdb(&format!("SELECT count(*) FROM {hops}")), format!("[({},)]", hop_rows.lines().nth(1).unwrap()));

    // Any one object changed, deleted or replaced by an older one is named.
    let all = files(&arch);
    let pick = |pred: &dyn Fn(&str) -> bool| all.iter().find(|f| pred(f)).cloned().unwrap();
    let part0 = pick(&|f| f.starts_with("events/date=") && f.contains("-part-"));
    let tile = pick(&|f| f.starts_with("tile/0/"));
    let leaves1 = pick(&|f| f.starts_with("ranges/") && f.ends_with("/leaves.parquet"));
    let records: Vec<String> = all.iter().filter(|f| f.ends_with("/range.dsse.json")).cloned().collect();
    let leaves2 = all.iter().filter(|f| f.ends_with("/leaves.parquet")).nth(1).cloned().unwrap();
    type Edit = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, String, Edit)> = vec![
        ("a data file changed", part0.clone(), {
            let f = part0.clone();
            Box::new(move |root: &Path| {
                let path = root.join(&f);
                let mut b = std::fs::read(&path).unwrap();
                let i = b.len() / 2;
                b[i] ^= 1;
                std::fs::write(path, b).unwrap();
            })
        }),
        ("a tile deleted", tile.clone(), {
            let f = tile.clone();
            Box::new(move |root: &Path| std::fs::remove_file(root.join(&f)).unwrap())
        }),
        ("the leaves replaced by another range's (older) ones", leaves2.clone(), {
            let (old, new) = (leaves1.clone(), leaves2.clone());
            Box::new(move |root: &Path| {
                std::fs::copy(root.join(&old), root.join(&new)).unwrap();
            })
        }),
        ("the first range record deleted", records[1].clone(), {
            let f = records[0].clone();
            Box::new(move |root: &Path| std::fs::remove_file(root.join(&f)).unwrap())
        }),
        ("a range record replaced by another range's", records[1].clone(), {
            let (a, b) = (records[0].clone(), records[1].clone());
            Box::new(move |root: &Path| {
                std::fs::copy(root.join(&a), root.join(&b)).unwrap();
            })
        }),
    ];
    for (i, (what, named, edit)) in cases.iter().enumerate() {
        let copy = dir.path().join(format!("tampered-{i}"));
        copy_dir(&arch, &copy);
        edit(&copy);
        let (ok, v, err) = verify_archive(&format!("file://{}", copy.display()), &key, &[], &[]);
        assert!(!ok, "{what}: verify passed");
        assert_eq!(v["object"].as_str(), Some(named.as_str()), "{what}: {v} {err}");
        assert!(err.contains("verification FAILED"), "{what}: {err}");
        let (ok, out) = archive_check(&copy, &key, &[]);
        assert!(!ok, "{what}: the independent checker passed");
        assert!(out.contains(named.as_str()), "{what}: the independent checker did not name {named}: {out}");
    }
}

/// `python3 tests/archive_check.py ARCHIVE --key KEY [extra]`: (passed, stdout and stderr).
fn archive_check(arch: &Path, key: &str, extra: &[&str]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/archive_check.py");
    let out = Command::new("python3").arg(script).arg(arch).args(["--key", key]).args(extra).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The payload of a range record.
fn record(arch: &Path, first: u64, end: u64) -> Value {
    let path = arch.join(format!("ranges/{first:020}-{end:020}/range.dsse.json"));
    let env: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let payload = actlog_core::b64::decode(env["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// SIGKILL while ranges are being uploaded, six times at different moments,
/// then a clean run: the archive verifies (left-over objects of cut uploads
/// are reported, never listed), and so does the ledger.
#[test]
fn sigkill_during_uploads_leaves_an_archive_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (data, arch) = (dir.path().join("data"), dir.path().join("archive"));
    let url = format!("file://{}", arch.display());
    let seg = RANGE.to_string();
    let mut p = serve_env(&data, "127.0.0.1:0", &["--segment-events", &seg], &[]);
    let admin = p.token.clone().unwrap();
    loadgen(&p, &admin, 3000); // a backlog of five ranges
    settled_checkpoint(&p, &admin);
    assert!(sigterm(&mut p).success());
    let archiving = ["--segment-events", &seg, "--archive", &url];
    for ms in [60, 120, 200, 280, 380, 500] {
        let mut p = serve_env(&data, "127.0.0.1:0", &archiving, &[]);
        std::thread::sleep(Duration::from_millis(ms));
        p.kill9();
    }
    let mut p = serve_env(&data, "127.0.0.1:0", &archiving, &[]);
    wait_archived(&p, &admin, 5 * RANGE);
    assert!(sigterm(&mut p).success());
    let key = verifier_key(&data);
    let (ok, v, err) = verify_archive(&url, &key, &[], &[]);
    assert!(ok, "{err}");
    assert_eq!(v["end_seq"].as_u64(), Some(5 * RANGE), "{v}");
    let (ok, out) = archive_check(&arch, &key, &[]);
    assert!(ok, "{out}");
    let out = actlog(&data, &["verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Then SIGKILL while those ranges leave RocksDB (`--hot-retention`),
    // five times, and a clean run down to the last range: nothing is lost,
    // the floor never passes what the archive holds, and every event reads
    // back the same, from the archive where it has gone.
    let full = "SELECT seq, event_id, leaf_hash, chain_hash, payload FROM events ORDER BY seq";
    let offline = |q: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["sql", q, "--format", "csv"])
            .env("ACTLOG_DATA", &data)
            .env("ACTLOG_ARCHIVE", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let rows_before = offline(full);
    let retaining = ["--segment-events", &seg, "--archive", &url, "--hot-retention", "1s"];
    let mut floors = Vec::new();
    for ms in [60, 100, 150, 220, 400] {
        let mut p = serve_env(&data, "127.0.0.1:0", &retaining, &[]);
        std::thread::sleep(Duration::from_millis(ms));
        p.kill9();
        let out = actlog(&data, &["info", "--json"]);
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        floors.push(info["cold_floor"].as_u64().unwrap_or_else(|| panic!("{info}")));
    }
    assert!(floors.windows(2).all(|w| w[0] <= w[1]), "the floor went down: {floors:?}");
    assert!(floors.iter().all(|f| f % RANGE == 0 && *f <= 5 * RANGE), "{floors:?}");
    let mut p = serve_env(&data, "127.0.0.1:0", &retaining, &[]);
    wait_metric(&p, &admin, "actlog_cold_floor_seq", 5 * RANGE);
    assert!(sigterm(&mut p).success());
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["verify", "--archive", &url])
        .env("ACTLOG_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(offline(full), rows_before, "events changed once they left RocksDB");
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto's S3 server on a free loopback port and makes a bucket.
fn moto(bucket: &str) -> (Moto, String) {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (tools/setup.sh installs moto[server] from PyPI)");
    let server = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    s3(&endpoint, &format!("c.create_bucket(Bucket='{bucket}')"));
    (server, endpoint)
}

const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "actlog-test"),
    ("AWS_SECRET_ACCESS_KEY", "actlog-test-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
];

/// Runs `code` with `c`, a boto3 S3 client of `endpoint`; prints what it prints.
fn s3(endpoint: &str, code: &str) -> String {
    let script = format!("import boto3\nc = boto3.client('s3', endpoint_url='{endpoint}')\n{code}\n");
    let out = Command::new("python3").args(["-c", &script]).envs(S3_ENV.iter().copied()).output().unwrap();
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A moto S3 server (bucket `actlog`) and a ledger in `data` served with
/// `--archive url` on it: 1,200 events, stopped once 2 ranges are archived.
fn archived_on_moto(data: &Path, url: &str) -> (Moto, String) {
    let (moto, endpoint) = moto("actlog");
    let seg = RANGE.to_string();
    let mut p = serve_env(
        data,
        "127.0.0.1:0",
        &["--segment-events", &seg, "--archive", url, "--archive-endpoint", &endpoint],
        S3_ENV,
    );
    let admin = p.token.clone().unwrap();
    loadgen(&p, &admin, 1200);
    wait_archived(&p, &admin, 2 * RANGE);
    assert!(sigterm(&mut p).success());
    (moto, endpoint)
}

/// The same on a real S3 API over HTTP: moto's server, started here.
#[test]
fn an_archive_on_an_s3_server_verifies_and_names_a_changed_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = "s3://actlog/ledger-a";
    let (_moto, endpoint) = archived_on_moto(&data, url);
    let key = verifier_key(&data);
    let ep = ["--archive-endpoint", endpoint.as_str()];
    let (ok, v, err) = verify_archive(url, &key, &ep, S3_ENV);
    assert!(ok, "{err}");
    assert!(v["ranges"].as_u64().unwrap() >= 2, "{v}");

    let keys = s3(
        &endpoint,
        "for o in c.list_objects_v2(Bucket='actlog', Prefix='ledger-a/tile/0/')['Contents']: print(o['Key'])",
    );
    let tile = keys.lines().next().unwrap().to_string();
    s3(&endpoint, &format!("c.put_object(Bucket='actlog', Key='{tile}', Body=b'\\x00' * 8192)"));
    let (ok, v, _) = verify_archive(url, &key, &ep, S3_ENV);
    assert!(!ok);
    assert_eq!(v["object"].as_str(), tile.strip_prefix("ledger-a/"), "{v}");
}

/// What an investigator and an auditor read back from a server, as text:
/// SQL (scans, an index lookup, the chains view), events by seq and by id,
/// a chain, inclusion proofs at a fixed tree size and an entry bundle.
fn answers(p: &Proc, admin: &str, seqs: &[u64], tree_size: u64) -> Vec<(String, String)> {
    let csv = |q: &str| {
        let mut r = agent()
            .post(format!("{}/v1/sql", p.url))
            .header("authorization", &format!("Bearer {admin}"))
            .header("accept", "text/csv")
            .send_json(serde_json::json!({"sql": q}))
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{q}");
        r.body_mut().read_to_string().unwrap()
    };
    let get = |path: &str| {
        let (s, v) = call(&format!("{}{path}", p.url), admin, None).unwrap();
        assert_eq!(s, 200, "{path}: {v}");
        v.to_string()
    };
    let mut out = Vec::new();
    for q in [
        "SELECT count(*), count(DISTINCT event_id), min(seq), max(seq) FROM events",
        "SELECT seq, event_id, event_type, effect, leaf_hash, chain_hash, payload FROM events ORDER BY seq",
        "SELECT effect, count(*) FROM events GROUP BY effect ORDER BY effect",
        "SELECT count(*) FROM decision_chains",
        "SELECT count(*) FROM delegation_hops",
    ] {
        out.push((q.to_string(), csv(q)));
    }
    for &seq in seqs {
        let ev = get(&format!("/v1/events/{seq}"));
        let v: Value = serde_json::from_str(&ev).unwrap();
        let id = v["event_id"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
        out.push((format!("event {seq}"), ev));
        out.push((format!("event by id {id}"), get(&format!("/v1/events/by-id/{id}"))));
        let q = format!("SELECT seq, event_id, effect, payload FROM events WHERE event_id = '{id}'");
        out.push((q.clone(), csv(&q)));
        out.push((format!("chain {id}"), get(&format!("/v1/chains/{id}"))));
        out.push((format!("proof {seq}"), get(&format!("/v1/proofs/inclusion?seq={seq}&tree_size={tree_size}"))));
    }
    let mut r = agent()
        .get(format!("{}/tlog/tile/entries/000", p.url))
        .header("authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    out.push(("tile/entries/000".into(), format!("{:?}", r.body_mut().read_to_vec().unwrap())));
    out
}

fn wait_metric(p: &Proc, admin: &str, name: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(p, admin, name) < at_least {
        assert_eq!(metric(p, admin, "actlog_archive_failures_total"), 0, "an archiver turn failed");
        assert!(Instant::now() < deadline, "{name} did not reach {at_least}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--hot-retention` on a real S3 API (moto): archived ranges leave
/// RocksDB, and SQL (with segments rebuilt from the archive), events by
/// seq and id, chains, proofs and tiles answer exactly as they did while
/// the ledger kept everything. `verify` and `export` read the archive
/// without being asked twice, a data directory without its archive says
/// where its events went, and a changed archived leaf is corruption,
/// never an answer.
#[test]
fn hot_retention_moves_old_ranges_to_s3_and_every_answer_stays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_moto, endpoint) = moto("actlog");
    let url = "s3://actlog/ledger-r";
    let seg = RANGE.to_string();
    let base = ["--segment-events", seg.as_str(), "--archive", url, "--archive-endpoint", endpoint.as_str()];
    let mut p = serve_env(&data, "127.0.0.1:0", &base, S3_ENV);
    let admin = p.token.clone().unwrap();
    loadgen(&p, &admin, 1700);
    let note = settled_checkpoint(&p, &admin);
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size > 3 * RANGE + 1, "{size}");
    wait_archived(&p, &admin, 3 * RANGE);
    let seqs = [1, 300, RANGE + 7, 3 * RANGE - 1, 3 * RANGE + 1];
    let before = answers(&p, &admin, &seqs, size);
    assert!(sigterm(&mut p).success());
    let export = |out: &Path| {
        let run = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["export", "--out"])
            .arg(out)
            .env("ACTLOG_DATA", &data)
            .env("ACTLOG_ARCHIVE", url)
            .env("ACTLOG_ARCHIVE_ENDPOINT", &endpoint)
            .envs(S3_ENV.iter().copied())
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let mut m: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("created_at");
        m
    };
    let exported_before = export(&dir.path().join("bundle-before"));

    // Segments are derived: without them, the restarted server rebuilds
    // them from events that are, by then, only in the archive.
    std::fs::remove_dir_all(data.join("segments")).unwrap();
    // A short query time limit, so the retired segments' local files go
    // soon after retirement (no running query can still be reading them).
    let mut args = base.to_vec();
    args.extend(["--hot-retention", "1s", "--sql-time-ms", "1000"]);
    let mut p = serve_env(&data, "127.0.0.1:0", &args, S3_ENV);
    wait_metric(&p, &admin, "actlog_cold_floor_seq", 3 * RANGE);
    wait_metric(&p, &admin, "actlog_retired_segments_total", 3);
    // The retired segments' rows are read from the archive's data files,
    // pinned by hash in the segment manifest; their local files go.
    let manifest: Value = serde_json::from_slice(&std::fs::read(data.join("segments/manifest.json")).unwrap()).unwrap();
    let segs = manifest["segments"].as_array().unwrap();
    for (i, s) in segs.iter().enumerate() {
        let retired = (i as u64) < 3;
        assert_eq!(s["archived"].is_object(), retired, "segment {i}: {s}");
        if retired {
            let key = s["archived"]["events"][0]["key"].as_str().unwrap();
            assert!(!s["archived"]["events"][0]["pieces"].as_str().unwrap().is_empty(), "{s}");
            assert!(
                key.starts_with("events/date=") && key.contains(&range_dir(i as u64 * RANGE, (i as u64 + 1) * RANGE)),
                "{s}"
            );
        }
    }
    let local_files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(data.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while local_files().len() != 2 * (segs.len() - 3) {
        assert!(Instant::now() < deadline, "the retired segments' files stayed: {:?}", local_files());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(local_files().iter().all(|n| !n.contains(&format!("-{:020}.parquet", RANGE))), "{:?}", local_files());
    let after = answers(&p, &admin, &seqs, size);
    assert_eq!(before.len(), after.len());
    for ((what, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{what} changed once its events left RocksDB");
    }
    assert!(metric(&p, &admin, "actlog_archive_leaves_read_total") > 0, "nothing was read from the archive");
    assert!(metric(&p, &admin, "actlog_archive_segment_fetches_total") >= 3, "scans did not read the archived files");
    // Each evicted level-0 tile was fetched and compared with RocksDB's;
    // the reads above were served from those (the tile swap below checks
    // a fetch on the read path).
    assert!(metric(&p, &admin, "actlog_archive_tile_fetches_total") >= 3 * RANGE / 256);
    assert_eq!(metric(&p, &admin, "actlog_evicted_events_total"), 3 * RANGE);
    // A decision re-sent after its original left RocksDB is a duplicate
    // with the original's seq and leaf hash (read from the archive's tile).
    let (s, v) = call(&format!("{}/v1/events/by-id/{}", p.url, decision_id(&p, &admin)), &admin, None).unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, r) =
        call(&format!("{}/v1/events", p.url), &admin, Some(Value::Array(vec![v["envelope"].clone()]))).unwrap();
    assert_eq!(s, 200, "{r}");
    let receipt = &r["receipts"][0];
    assert_eq!(
        (&receipt["duplicate"], &receipt["seq"], &receipt["leaf_hash"]),
        (&json!(true), &v["seq"], &v["leaf_hash"])
    );
    assert!(sigterm(&mut p).success());

    // RocksDB holds only the hot leaves and envelopes.
    let out = actlog(&data, &["info", "--storage", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tree = info["tree_size"].as_u64().unwrap();
    let keys = |cf: &str| info["storage"][cf]["keys"].as_u64().unwrap_or_else(|| panic!("{info}"));
    assert_eq!(info["cold_floor"], 3 * RANGE, "{info}");
    assert_eq!(keys("leaves"), tree - 3 * RANGE, "{info}");
    assert_eq!(keys("envelopes"), tree - 3 * RANGE, "{info}");
    // The full level-0 tiles below the floor left too; the level-1 tile stays.
    assert_eq!(keys("tiles"), tree.div_ceil(256) - 3 * RANGE / 256 + 1, "{info}");

    // Offline: verify names the archive it needs, then passes with it, and
    // export reads the archive through ACTLOG_ARCHIVE as serve does.
    let out = actlog(&data, &["verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--archive"), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["verify", "--archive", url, "--archive-endpoint", &endpoint])
            .args(extra)
            .env("ACTLOG_DATA", &data)
            .envs(S3_ENV.iter().copied())
            .output()
            .unwrap()
    };
    let out = verify(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every exported file (its name, rows and SHA-256), the checkpoint and
    // the proofs are those exported while the ledger kept everything.
    let bundle = dir.path().join("bundle");
    assert_eq!(export(&bundle), exported_before, "export changed once its events left RocksDB");
    let out = actlog(&data, &["verify", "--bundle", bundle.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // An archived range's leaves replaced by another range's: corruption.
    let a = format!("ledger-r/ranges/{}/leaves.parquet", range_dir(0, RANGE));
    let b = format!("ledger-r/ranges/{}/leaves.parquet", range_dir(RANGE, 2 * RANGE));
    s3(
        &endpoint,
        &format!("c.copy_object(Bucket='actlog', Key='{a}', CopySource={{'Bucket': 'actlog', 'Key': '{b}'}})"),
    );
    let out = verify(&["--no-signatures"]);
    assert!(!out.status.success());
    let mut p = serve_env(&data, "127.0.0.1:0", &args, S3_ENV);
    let (s, v) = call(&format!("{}/v1/events/5", p.url), &admin, None).unwrap();
    assert_eq!((s, v["error"]["code"].as_str()), (500, Some("internal")), "{v}");
    let (s, v) = call(&format!("{}/v1/events/{}", p.url, 3 * RANGE + 1), &admin, None).unwrap();
    assert_eq!(s, 200, "the server stays up and serves hot events: {v}");
    // An archived level-0 tile replaced by its neighbour: proofs through it
    // are corruption, never a wrong path.
    let proof = |seq: u64| call(&format!("{}/v1/proofs/inclusion?seq={seq}&tree_size={size}", p.url), &admin, None);
    assert_eq!(proof(900).unwrap().0, 200); // tile 3: its path does not read tile 2
    s3(
        &endpoint,
        "c.copy_object(Bucket='actlog', Key='ledger-r/tile/0/002', CopySource={'Bucket': 'actlog', 'Key': 'ledger-r/tile/0/003'})",
    );
    let (s, v) = proof(600).unwrap(); // seq 600 is in tile 2, not read before
    assert_eq!((s, v["error"]["code"].as_str()), (500, Some("internal")), "{v}");
    // A retired segment's archived events file replaced by another range's:
    // a scan over it is corruption, never an answer; scans that prune it
    // away still answer.
    let events_key = |i: usize| format!("ledger-r/{}", segs[i]["archived"]["events"][0]["key"].as_str().unwrap());
    s3(
        &endpoint,
        &format!(
            "c.copy_object(Bucket='actlog', Key='{}', CopySource={{'Bucket': 'actlog', 'Key': '{}'}})",
            events_key(0),
            events_key(1)
        ),
    );
    let sql = |q: &str| call(&format!("{}/v1/sql", p.url), &admin, Some(json!({ "sql": q }))).unwrap();
    let (s, v) = sql("SELECT count(*) FROM events");
    assert_eq!((s, v["error"]["code"].as_str()), (500, Some("internal")), "{v}");
    let (s, v) = sql(&format!("SELECT count(*) FROM events WHERE seq >= {RANGE}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"][0][0].as_u64(), Some(size - RANGE), "{v}");
    assert!(sigterm(&mut p).success());
    // `actlog sql` on the data directory reads the archive named by
    // ACTLOG_ARCHIVE, and says what the server logged: corruption.
    let local_sql = |q: &str, archive: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_actlog"));
        c.args(["sql", q, "--format", "csv"]).env("ACTLOG_DATA", &data).envs(S3_ENV.iter().copied());
        if archive {
            c.env("ACTLOG_ARCHIVE", url).env("ACTLOG_ARCHIVE_ENDPOINT", &endpoint);
        }
        c.output().unwrap()
    };
    let out = local_sql("SELECT count(*) FROM events", true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("storage_corruption") && err.contains("the archive object was changed"),
        "{err}"
    );
    let out = local_sql(&format!("SELECT count(*) FROM events WHERE seq >= {RANGE}"), true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().nth(1), Some((size - RANGE).to_string().as_str()));
    // Without the archive, a scan of retired rows says where they are.
    let out = local_sql(&format!("SELECT count(*) FROM events WHERE seq < {RANGE}"), false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("archived") && err.contains("ACTLOG_ARCHIVE"), "{err}");
}

/// The event id of an archived decision in the second range (its level-0
/// tile is not the first).
fn decision_id(p: &Proc, admin: &str) -> String {
    let q = format!(
        "SELECT event_id FROM events WHERE event_type = 'authz.decision' AND seq > {RANGE} ORDER BY seq LIMIT 1"
    );
    let (s, v) = call(&format!("{}/v1/sql", p.url), admin, Some(json!({ "sql": q }))).unwrap();
    assert_eq!(s, 200, "{v}");
    v["rows"][0][0].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

fn range_dir(first: u64, end: u64) -> String {
    format!("{first:020}-{end:020}")
}

/// A process that is killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `actlog cluster ARGS`, with its stderr watched for `marker`; returns
/// the process and the rest of the line after the marker.
fn cluster_proc(args: &[&str], marker: &str) -> (Killed, String) {
    cluster_proc_env(args, marker, &[])
}

/// [`cluster_proc`] with extra environment variables.
fn cluster_proc_env(args: &[&str], marker: &str, env: &[(&str, &str)]) -> (Killed, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .arg("cluster")
        .args(args)
        .envs(env.iter().copied())
        .env("ACTLOG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split_once(&marker).map(|(_, r)| r.to_string()) {
                let _ = tx.send(rest);
            }
            if std::env::var_os("ACTLOG_TEST_SERVER_LOG").is_some() {
                eprintln!("cluster: {line}");
            }
        }
    });
    let rest = rx.recv_timeout(Duration::from_secs(30)).expect("the cluster process did not start");
    (Killed(child), rest)
}

/// `actlog sql --cluster SCHEDULER --archive URL QUERY --format csv`.
fn cluster_sql(scheduler: &str, url: &str, query: &str) -> std::process::Output {
    cluster_sql_env(scheduler, url, query, &[], &[])
}

/// [`cluster_sql`] with extra arguments and environment variables.
fn cluster_sql_env(
    scheduler: &str,
    url: &str,
    query: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["sql", "--cluster", scheduler, "--archive", url, query, "--format", "csv"])
        .args(args)
        .envs(env.iter().copied())
        .env("ACTLOG_LOG", "warn")
        .output()
        .unwrap()
}

/// A Ballista cluster reads an archive on a real S3-compatible server
/// (moto): the scheduler lists the files there, the executor reads them,
/// with credentials from `AWS_*` and `--archive-endpoint`, and the answers
/// equal one node's over the same seqs.
#[test]
fn a_ballista_cluster_reads_an_s3_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = "s3://actlog/ledger-c";
    let (_moto, endpoint) = archived_on_moto(&data, url);
    let end = 2 * RANGE;

    let ep = ["--archive-endpoint", endpoint.as_str()];
    let (_scheduler, addr) = cluster_proc_env(
        &["scheduler", "--listen", "127.0.0.1:0", "--archive-endpoint", &endpoint],
        "cluster scheduler on ",
        S3_ENV,
    );
    let addr = addr.trim().to_string();
    let (listen, grpc) = (free_port(), free_port());
    let work = tempfile::tempdir().unwrap();
    let _executor = cluster_proc_env(
        &[
            "executor",
            "--scheduler",
            &addr,
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--grpc-port",
            &grpc.to_string(),
            "--work-dir",
            work.path().to_str().unwrap(),
            "--archive-endpoint",
            &endpoint,
        ],
        "cluster executor on ",
        S3_ENV,
    );
    let single = |q: &str| sql(&data, &format!("WITH events AS (SELECT * FROM events WHERE seq < {end}) {q}"));
    let queries = [
        "SELECT count(*), count(DISTINCT event_id), min(seq), max(seq) FROM events",
        "SELECT pdp_id, effect, count(*) AS n FROM events GROUP BY pdp_id, effect ORDER BY pdp_id, effect",
        "SELECT seq, event_id, payload FROM events ORDER BY seq",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster_sql_env(&addr, url, queries[0], &ep, S3_ENV);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    for q in queries {
        let out = cluster_sql_env(&addr, url, q, &ep, S3_ENV);
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        let want = single(q);
        assert!(want.lines().count() > 1, "{q} has no rows: {want}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{q}");
    }
}

/// A Ballista cluster on loopback (a scheduler and two executors, each its
/// own process) answers the pinned investigator queries over the archive
/// with exactly the single-node answers over the same seqs, including a
/// join of outcomes to decisions and the `decision_chains` view. An
/// executor killed mid-query fails the query with a clear error or leaves
/// it correct, never wrong. The sandbox refuses writes on the cluster too.
#[test]
fn a_ballista_cluster_answers_the_pinned_queries_over_the_archive_as_one_node_does() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, data, _, url) = serve_archiving(dir.path());
    let admin = p.token.clone().unwrap();
    loadgen(&p, &admin, 1700);
    settled_checkpoint(&p, &admin);
    wait_archived(&p, &admin, 3 * RANGE);
    assert!(sigterm(&mut p).success());
    let end = 3 * RANGE;

    let (_scheduler, addr) =
        cluster_proc(&["scheduler", "--listen", "127.0.0.1:0", "--executor-timeout-s", "3"], "cluster scheduler on ");
    let addr = addr.trim().to_string();
    let mut executors = Vec::new();
    for _ in 0..2 {
        let (listen, grpc) = (free_port(), free_port());
        let work = tempfile::tempdir().unwrap();
        let (e, _) = cluster_proc(
            &[
                "executor",
                "--scheduler",
                &addr,
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--grpc-port",
                &grpc.to_string(),
                "--work-dir",
                work.path().to_str().unwrap(),
                "--slots",
                "2",
            ],
            "cluster executor on ",
        );
        executors.push((e, work));
    }

    // The single-node side reads the data directory, limited to the seqs
    // the archive holds, with the same view text.
    let view = |name: &str, sql: &str| sql.strip_prefix(&format!("CREATE VIEW {name} AS ")).unwrap().to_string();
    let (chains, lifecycle, streams) = (
        view("decision_chains", actlog_query::tables::DECISION_CHAINS_SQL),
        view("lifecycle", actlog_query::tables::LIFECYCLE_SQL),
        view("producer_streams", actlog_query::tables::PRODUCER_STREAMS_SQL),
    );
    let single = |q: &str| {
        let wrapped = format!(
            "WITH events AS (SELECT * FROM events WHERE seq < {end}), \
             delegation_hops AS (SELECT * FROM delegation_hops WHERE seq < {end}), \
             decision_chains AS ({chains}), lifecycle AS ({lifecycle}), producer_streams AS ({streams}) {q}"
        );
        sql(&data, &wrapped)
    };
    let queries = [
        "SELECT count(*), count(DISTINCT event_id), min(seq), max(seq) FROM events",
        "SELECT seq, event_id, event_type, effect, pdp_id, payload FROM events ORDER BY seq",
        "SELECT pdp_id, effect, count(*) AS n FROM events GROUP BY pdp_id, effect ORDER BY pdp_id, effect",
        "SELECT d.effect, o.outcome_status, count(*) AS n FROM events o JOIN events d \
         ON o.decision_event_id = d.event_id WHERE o.event_type = 'authz.outcome' GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT * FROM decision_chains ORDER BY seq",
        "SELECT effect, count(*) AS n, count(outcome_seq) AS with_outcome FROM decision_chains GROUP BY effect ORDER BY effect",
        "SELECT depth, count(*) AS n FROM delegation_hops GROUP BY depth ORDER BY depth",
        // The views that call actlog's payload functions on the executors.
        "SELECT event_type, subject_agent_id, subject_grant_id, count(*) AS n FROM lifecycle GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        "SELECT count(*) AS streams, coalesce(sum(missing), 0) AS missing FROM producer_streams",
    ];
    // The executors register with the scheduler within a few heartbeats.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster_sql(&addr, &url, queries[0]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    for q in queries {
        let out = cluster_sql(&addr, &url, q);
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        let want = single(q);
        assert!(want.lines().count() > 1, "{q} has no rows: {want}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{q}");
    }
    let total: u64 = single("SELECT count(*) FROM events").lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(total, end);

    // Writes are refused before any plan is made.
    let out = cluster_sql(&addr, &url, "CREATE TABLE x AS SELECT 1");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // One executor killed while a query runs: a clear failure, or the right answer.
    let heavy = "SELECT count(*) FROM events a JOIN events b ON a.pdp_id = b.pdp_id";
    let want = single(heavy);
    // sql_time_ms bounds a cluster query too.
    let out = cluster_sql_env(&addr, &url, heavy, &["--sql-time-ms", "1"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sql_time_limit"), "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["sql", "--cluster", &addr, "--archive", &url, heavy, "--format", "csv"])
        .env("ACTLOG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(executors.remove(0));
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the query hung after an executor died");
        std::thread::sleep(Duration::from_millis(200));
    }
    let clear_or_right = |out: std::process::Output| {
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "a wrong answer after an executor died");
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("actlog:") && err.len() > 20, "an unclear failure: {err}");
        }
    };
    clear_or_right(child.wait_with_output().unwrap());
    // The query above may finish before the kill lands. This one starts
    // while the scheduler still counts the dead executor (its timeout is
    // 3 s), so some of its tasks go to an executor that is gone.
    clear_or_right(cluster_sql(&addr, &url, heavy));
    // Once the scheduler drops the dead executor, the one left answers.
    std::thread::sleep(Duration::from_secs(4));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster_sql(&addr, &url, heavy);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "a wrong answer from the executor left");
            break;
        }
        assert!(Instant::now() < deadline, "one executor never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
}
