//! `actlog serve` as a process: first start, graceful SIGTERM, the CLI's
//! remote admin mode, and kill -9 mid-load without losing an acknowledged
//! event.

// Signals to the servers these tests start (`libc::kill`) are the only unsafe code.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actlog_core::dsse::Envelope;
use actlog_core::sig::public_key_of;
use serde_json::{Value, json};

pub(crate) struct Proc {
    child: Child,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    /// The PostgreSQL endpoint, when `--pg-listen` was given.
    pg: Option<String>,
}

impl Proc {
    /// SIGKILL, and reap it.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A test that failed midway must not leave its server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `actlog serve` on an ephemeral port and waits until it listens.
fn serve(data: &Path) -> Proc {
    serve_with(data, &[])
}

/// [`serve`] with extra flags.
pub(crate) fn serve_with(data: &Path, extra: &[&str]) -> Proc {
    serve_on(data, "127.0.0.1:0", extra)
}

/// [`serve_with`] on a given address.
fn serve_on(data: &Path, listen: &str, extra: &[&str]) -> Proc {
    serve_env(data, listen, extra, &[])
}

/// [`serve_on`] with extra environment variables.
pub(crate) fn serve_env(data: &Path, listen: &str, extra: &[&str], envs: &[(&str, &str)]) -> Proc {
    // A first start prints the admin token on stdout; wait for it too.
    let fresh = !data.join("db").exists();
    let mut child = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["serve", "--listen", listen, "--checkpoint-interval-ms", "200"])
        .args(extra)
        .envs(envs.iter().copied())
        .env("ACTLOG_DATA", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) =
                line.split(" on ").nth(1).filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            {
                let _ = tx2.send(("url", url.to_string()));
            }
            if let Some(rest) = line.strip_prefix("actlog: PostgreSQL wire protocol on ") {
                let _ = tx2.send(("pg", rest.split(' ').next().unwrap_or_default().to_string()));
            }
            if std::env::var_os("ACTLOG_TEST_SERVER_LOG").is_some() {
                eprintln!("server: {line}");
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(("token", line));
        }
    });
    let (mut url, mut token, mut pg) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while url.is_none() || (fresh && token.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(("url", u)) => url = Some(u),
            Ok(("pg", a)) => pg = Some(a),
            Ok((_, t)) => token = Some(t),
            Err(_) => panic!("actlog serve did not start"),
        }
    }
    // The token and PostgreSQL lines, if any, were printed before the
    // listening line.
    while let Ok((kind, t)) = rx.try_recv() {
        match kind {
            "token" => token = Some(t),
            "pg" => pg = Some(t),
            _ => {}
        }
    }
    Proc { child, url: url.unwrap(), token, pg }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

pub(crate) fn call(url: &str, token: &str, body: Option<Value>) -> Result<(u16, Value), String> {
    let a = agent();
    let auth = format!("Bearer {token}");
    let r = match body {
        Some(b) => {
            a.post(url).header("authorization", &auth).header("content-type", "application/json").send(b.to_string())
        }
        None => a.get(url).header("authorization", &auth).call(),
    };
    let mut r = r.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub(crate) fn actlog(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_actlog")).args(args).env("ACTLOG_DATA", data).output().unwrap()
}

fn event(id: &str, pdp: &str) -> Value {
    json!({
        "spec_version": "1", "event_type": "authz.decision", "event_id": id,
        "event_time": "2026-08-21T10:15:30Z", "pdp": {"id": pdp},
        "delegation": {
            "actor": {"id": "svc-1", "sub_profile": "service"},
            "chain": [{"depth": 1, "sub": "svc-1", "sub_profile": "service"}],
            "verification": {"status": "asserted"}
        },
        "policy": {"version": "v1"},
        "request": {"subject": {"type": "service", "id": "svc-1"}, "action": {"name": "read"},
                    "resource": {"type": "doc", "id": "d1"}},
        "decision": {"effect": "allow"}
    })
}

pub(crate) fn sigterm(p: &mut Proc) -> std::process::ExitStatus {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn first_start_prints_the_token_and_sigterm_signs_a_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = serve(&data);
    let admin = p.token.clone().expect("the first start prints the admin token on stdout");
    // The CLI manages the running server through the admin endpoints.
    let seed = [0x42u8; 32];
    let pk = actlog_core::b64::encode(public_key_of(&seed));
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["keys", "add", "pdp-x-key", "--public-key", &pk, "--pdp", "pdp-x", "--url", &p.url, "--token", &admin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["tokens", "create", "--role", "ingest", "--url", &p.url, "--token", &admin])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ingest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["keys", "list", "--json", "--url", &p.url, "--token", &ingest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an ingest token may not list keys");
    let env = Envelope::sign(event("t1", "pdp-x").to_string().into_bytes(), None, &seed).to_json();
    let (status, body) =
        call(&format!("{}/v1/events", p.url), &ingest, Some(serde_json::from_str(&format!("[{env}]")).unwrap()))
            .unwrap();
    assert_eq!(status, 200, "{body}");
    // Readers work beside the running server.
    let info: Value = serde_json::from_slice(&actlog(&data, &["info", "--json"]).stdout).unwrap();
    assert!(info["tree_size"].as_u64().is_some());
    let out = actlog(&data, &["verify"]);
    assert!(out.status.success(), "verify beside a running server: {}", String::from_utf8_lossy(&out.stderr));
    // So do proofs and an export, of what the latest checkpoint covers (on
    // a loaded machine the signer may not have covered seq 1 yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !actlog(&data, &["info"]).stdout.windows(3).any(|w| w == b"\n4\n") {
        assert!(Instant::now() < deadline, "a checkpoint covers the event within the interval");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(actlog(&data, &["prove", "inclusion", "1"]).status.success());
    let bundle = dir.path().join("bundle");
    let out = actlog(&data, &["export", "--out", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "export beside a running server: {}", String::from_utf8_lossy(&out.stderr));
    let out = actlog(&data, &["verify", "--bundle", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = sigterm(&mut p);
    assert!(status.success(), "graceful exit: {status:?}");
    let info: Value = serde_json::from_slice(&actlog(&data, &["info", "--json"]).stdout).unwrap();
    let size = info["tree_size"].as_u64().unwrap();
    assert!(
        info["checkpoint"].as_str().unwrap().contains(&format!("\n{size}\n")),
        "the final checkpoint covers everything"
    );
    assert!(actlog(&data, &["verify"]).status.success());
    // A restart prints no token.
    let mut p = serve(&data);
    assert!(p.token.is_none());
    assert!(sigterm(&mut p).success());
}

/// A load client records every receipt while the server is killed with
/// SIGKILL 10 times and restarted. Every receipt's event is present with the
/// same seq, and `actlog verify` passes.
#[test]
fn kill_9_mid_load_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = serve(&data);
    let admin = p.token.clone().unwrap();
    let seed = [0x43u8; 32];
    let (s, _) = call(
        &format!("{}/v1/keys", p.url),
        &admin,
        Some(json!({"name": "k", "public_key": actlog_core::b64::encode(public_key_of(&seed)), "pdp_id": "pdp-k"})),
    )
    .unwrap();
    assert_eq!(s, 201);
    let mut receipts: Vec<(String, u64)> = Vec::new();
    let mut counter = 0u64;
    for cycle in 0..10 {
        let url = p.url.clone();
        let token = admin.clone();
        let start = counter;
        let (tx, rx) = mpsc::channel();
        let loader = std::thread::spawn(move || {
            let mut i = start;
            loop {
                let envs: Vec<String> = (0..20)
                    .map(|j| {
                        Envelope::sign(event(&format!("k-{}", i + j), "pdp-k").to_string().into_bytes(), None, &seed)
                            .to_json()
                    })
                    .collect();
                let body: Value = serde_json::from_str(&format!("[{}]", envs.join(","))).unwrap();
                match call(&format!("{url}/v1/events"), &token, Some(body)) {
                    Ok((200, v)) => {
                        for r in v["receipts"].as_array().unwrap() {
                            let _ = tx.send((r["event_id"].as_str().unwrap().to_string(), r["seq"].as_u64().unwrap()));
                        }
                        i += 20;
                    }
                    // The server died under us: what was not acknowledged may or may not be stored.
                    _ => return i,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300 + (cycle * 97) % 500));
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        counter = loader.join().unwrap() + 20;
        receipts.extend(rx.try_iter());
        p = serve(&data);
        // Every acknowledged event is there, at the seq its receipt named.
        for (id, seq) in &receipts {
            let (status, v) = call(&format!("{}/v1/events/by-id/{id}", p.url), &admin, None).unwrap();
            assert_eq!(status, 200, "cycle {cycle}: acknowledged {id} is missing");
            assert_eq!(v["seq"].as_u64(), Some(*seq), "cycle {cycle}: {id} moved");
        }
    }
    assert!(receipts.len() > 200, "the load made progress: {}", receipts.len());
    assert!(sigterm(&mut p).success());
    let out = actlog(&data, &["verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `actlog.toml` in the data directory sets flags below the environment and
/// the command line; an unknown key is refused with the list of known ones.
#[test]
fn actlog_toml_configures_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(actlog(&data, &["init"]).status.success());
    std::fs::write(data.join("actlog.toml"), "public_checkpoint = true\ncheckpoint-interval-ms = 100\n").unwrap();
    let mut p = serve(&data);
    // Public checkpoint: no token needed.
    let r = agent().get(&format!("{}/v1/checkpoint", p.url)).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(sigterm(&mut p).success());
    std::fs::write(data.join("actlog.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let out = actlog(&data, &["info"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`listn` is not a flag"));
}

#[test]
fn memory_budgets_are_flags_with_named_minimums() {
    for (flag, value, min) in
        [("--memtable-bytes-max", "1048576", "16777216"), ("--block-cache-bytes-max", "1024", "8388608")]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["serve", "--listen", "127.0.0.1:0", flag, value])
            .env("ACTLOG_DATA", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{flag} must be at least {min}")), "{err}");
        assert!(!dir.path().join("db").exists(), "nothing is created when a flag is refused");
    }
    // At the minimums the server starts, answers, and stops cleanly.
    let dir = tempfile::tempdir().unwrap();
    let mut p = serve_with(dir.path(), &["--memtable-bytes-max", "16777216", "--block-cache-bytes-max", "8388608"]);
    let token = p.token.clone().unwrap();
    let (status, body) = call(&format!("{}/v1/keys", p.url), &token, None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(sigterm(&mut p).success());
}

/// Resident memory of a process, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// A normal client's round: health, one signed append, one query, each
/// within a few seconds.
fn normal_client_works(p: &Proc, ingest: &str, query: &str, seed: &[u8; 32], id: &str) {
    let started = Instant::now();
    let (s, _) = call(&format!("{}/healthz", p.url), "", None).unwrap();
    assert_eq!(s, 200);
    let env = Envelope::sign(event(id, "pdp-h").to_string().into_bytes(), None, seed).to_json();
    let (s, body) =
        call(&format!("{}/v1/events", p.url), ingest, Some(serde_json::from_str(&format!("[{env}]")).unwrap()))
            .unwrap();
    assert_eq!(s, 200, "{body}");
    let (s, body) =
        call(&format!("{}/v1/sql", p.url), query, Some(json!({"sql": "SELECT count(*) AS n FROM events"}))).unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "a normal client waited {:?}", started.elapsed());
}

/// Reads from `s` until it closes or `within` passes; true if it closed.
fn closes_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Hostile clients over real sockets: idle sockets beyond the connection
/// cap, slow headers, slow bodies from an ingest-token holder, parallel gzip
/// bombs, idle and oversized PostgreSQL logins. After each, a normal client
/// ingests and queries within a few seconds, and the server's RSS stays
/// under a stated bound.
#[test]
fn hostile_clients_do_not_stall_or_exhaust_the_server() {
    use std::io::Write;
    const RSS_BOUND: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = serve_with(
        &data,
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--http-connections-max",
            "64",
            "--http-header-timeout-ms",
            "2000",
            "--http-idle-timeout-ms",
            "2000",
            "--http-body-timeout-ms",
            "3000",
            "--ingest-requests-max",
            "24",
            "--ingest-requests-per-token-max",
            "8",
            "--pg-connections-max",
            "16",
            "--pg-auth-timeout-ms",
            "2000",
        ],
    );
    let admin = p.token.clone().unwrap();
    let seed = [0x44u8; 32];
    let (s, _) = call(
        &format!("{}/v1/keys", p.url),
        &admin,
        Some(json!({"name": "h", "public_key": actlog_core::b64::encode(public_key_of(&seed)), "pdp_id": "pdp-h"})),
    )
    .unwrap();
    assert_eq!(s, 201);
    let token = |role: &str, name: &str| {
        let (s, v) = call(&format!("{}/v1/tokens", p.url), &admin, Some(json!({"role": role, "name": name}))).unwrap();
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    let (ingest, slow_ingest, query) = (token("ingest", "ingest"), token("ingest", "slow"), token("query", "query"));
    let addr = addr_of(&p.url);
    let pid = p.child.id();
    normal_client_works(&p, &ingest, &query, &seed, "h-0");

    // 1. A thousand idle sockets, far beyond http_connections_max (64): each
    //    new one evicts the quietest idle one, so a normal client gets in.
    let idle: Vec<std::net::TcpStream> = (0..1000).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    normal_client_works(&p, &ingest, &query, &seed, "h-1");
    drop(idle);

    // 2. Slow headers: a byte at a time is not a request; each is closed
    //    within http_header_timeout_ms (2 s), plus slack.
    let mut slow: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    for s in &mut slow {
        let _ = s.write_all(b"a");
    }
    normal_client_works(&p, &ingest, &query, &seed, "h-2");
    for s in &mut slow {
        assert!(closes_within(s, Duration::from_secs(6).saturating_sub(started.elapsed())), "a slow head is closed");
    }

    // 3. Slow bodies from one ingest token: it holds at most its share of
    //    ingest slots (8 of 24), each for at most http_body_timeout_ms, so
    //    other tokens still ingest.
    let mut bodies: Vec<std::net::TcpStream> = (0..12)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {slow_ingest}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n["
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    normal_client_works(&p, &ingest, &query, &seed, "h-3");
    let mut answers = Vec::new();
    for s in &mut bodies {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        answers.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(
        answers.iter().filter(|a| a.contains(" 408 ") && a.contains("http_body_timeout_ms")).count() >= 1,
        "{answers:?}"
    );
    assert!(
        answers.iter().filter(|a| a.contains(" 429 ") && a.contains("ingest_requests_per_token_max")).count() >= 1,
        "{answers:?}"
    );
    assert!(answers.iter().all(|a| a.contains(" 408 ") || a.contains(" 429 ")), "{answers:?}");

    // 4. Parallel gzip bombs: each is refused at decompressed_bytes_max
    //    without inflating past it, off the async workers.
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..80 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    };
    let bombs: Vec<_> = (0..8)
        .map(|_| {
            let (url, token, bomb) = (p.url.clone(), slow_ingest.clone(), bomb.clone());
            std::thread::spawn(move || {
                let r = agent()
                    .post(&format!("{url}/v1/events"))
                    .header("authorization", &format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .send(&bomb[..])
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    normal_client_works(&p, &ingest, &query, &seed, "h-4");
    for b in bombs {
        assert_eq!(b.join().unwrap(), 413);
    }
    assert!(rss_bytes(pid) < RSS_BOUND, "RSS {} after the bombs", rss_bytes(pid));

    // 5. PostgreSQL: connections that never log in are evicted at
    //    pg_connections_max (16) and closed after pg_auth_timeout_ms; a
    //    message before login may not claim more than 10,000 bytes.
    let pg = p.pg.clone().unwrap();
    let mut lurkers: Vec<std::net::TcpStream> = (0..100).map(|_| std::net::TcpStream::connect(&pg).unwrap()).collect();
    let out = Command::new(psql_bin())
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM events"])
        .arg(format!(
            "host={} port={} user=query dbname=ledger sslmode=disable",
            pg.split(':').next().unwrap(),
            pg.split(':').nth(1).unwrap()
        ))
        .env("PGPASSWORD", &query)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    assert!(out.status.success(), "psql beside 100 idle sockets: {}", String::from_utf8_lossy(&out.stderr));
    for s in lurkers.iter_mut().rev().take(16) {
        assert!(closes_within(s, Duration::from_secs(5)), "an idle pre-login socket is closed");
    }
    drop(lurkers);
    let startup = {
        let params = b"user\0query\0database\0ledger\0\0";
        let mut m = Vec::new();
        m.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
        m.extend_from_slice(&196_608u32.to_be_bytes());
        m.extend_from_slice(params);
        m
    };
    // A password message claiming a gigabyte: refused by name at its header.
    let mut claim = vec![b'p'];
    claim.extend_from_slice(&1_000_000_000u32.to_be_bytes());
    let mut big = std::net::TcpStream::connect(&pg).unwrap();
    big.write_all(&startup).unwrap();
    big.write_all(&claim).unwrap();
    big.write_all(b"zzzz").unwrap();
    let mut answer = Vec::new();
    {
        use std::io::Read;
        big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = big.read_to_end(&mut answer);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("54000") && text.contains("exceeds"), "{text}");
    // Eight more that go on sending 64 MiB each: closed at the header, so
    // none of it is buffered.
    let pushers: Vec<_> = (0..8)
        .map(|_| {
            let (pg, startup, claim) = (pg.clone(), startup.clone(), claim.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&pg).unwrap();
                s.write_all(&startup).unwrap();
                s.write_all(&claim).unwrap();
                let chunk = vec![b'z'; 1 << 20];
                (0..64).take_while(|_| s.write_all(&chunk).is_ok()).count()
            })
        })
        .collect();
    for t in pushers {
        assert!(t.join().unwrap() < 64, "the server closes a connection whose message claims too much");
    }
    assert!(rss_bytes(pid) < RSS_BOUND, "RSS {} after the pre-login claim", rss_bytes(pid));
    normal_client_works(&p, &ingest, &query, &seed, "h-5");
    // The limits were counted.
    let (_, _) = call(&format!("{}/healthz", p.url), "", None).unwrap();
    let r =
        agent().get(&format!("{}/metrics", p.url)).header("authorization", &format!("Bearer {admin}")).call().unwrap();
    let metrics = r.into_body().read_to_string().unwrap();
    assert!(metrics.contains("actlog_limit_hits_total{limit=\"http_connections_max\"}"), "{metrics}");
    assert!(metrics.contains("actlog_limit_hits_total{limit=\"pg_connections_max\"}"), "{metrics}");
}

fn psql_bin() -> String {
    for p in ["/usr/bin/psql", "/usr/lib/postgresql/15/bin/psql"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "psql".to_string()
}

/// Unmounts a test filesystem when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The data dir on a 48 MiB tmpfs that fills under load: every batch is
/// either acknowledged and kept, or refused by name (`storage_full`); the
/// server then exits non-zero for its supervisor, and after the space is
/// freed a restart finds every acknowledged event and `verify` passes.
#[test]
fn a_full_disk_is_refused_by_name_and_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(status.success(), "mounting a tmpfs needs root (CI and the dev machines run as root)");
    let _mounted = Mounted(mnt.clone());
    let data = mnt.join("data");
    let mut p = serve_with(&data, &["--memtable-bytes-max", "16777216", "--block-cache-bytes-max", "8388608"]);
    let admin = p.token.clone().unwrap();
    let seed = [0x45u8; 32];
    let (s, _) = call(
        &format!("{}/v1/keys", p.url),
        &admin,
        Some(json!({"name": "f", "public_key": actlog_core::b64::encode(public_key_of(&seed)), "pdp_id": "pdp-h"})),
    )
    .unwrap();
    assert_eq!(s, 201);
    let pad = "p".repeat(8 << 10);
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut refusal = None;
    for batch in 0..2_000 {
        let envs: Vec<String> = (0..50)
            .map(|j| {
                let mut e = event(&format!("full-{batch}-{j}"), "pdp-h");
                e["ext"] = json!({ "pad": pad });
                Envelope::sign(e.to_string().into_bytes(), None, &seed).to_json()
            })
            .collect();
        let body: Value = serde_json::from_str(&format!("[{}]", envs.join(","))).unwrap();
        match call(&format!("{}/v1/events", p.url), &admin, Some(body)) {
            Ok((200, v)) => {
                for r in v["receipts"].as_array().unwrap() {
                    acked.push((r["event_id"].as_str().unwrap().into(), r["seq"].as_u64().unwrap()));
                }
            }
            Ok((status, v)) => {
                refusal = Some((status, v));
                break;
            }
            Err(e) => panic!("the server must answer a full disk, not drop the connection: {e}"),
        }
    }
    let (status, v) = refusal.expect("48 MiB fills before 2,000 batches of 400 KiB");
    assert!(acked.len() > 500, "the disk held some batches first: {}", acked.len());
    assert_eq!((status, v["error"]["code"].as_str()), (507, Some("storage_full")), "{v}");
    // Fail-stop: the server exits non-zero so that a supervisor restarts it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server exits after the failed write");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exit.success(), "a storage failure is a non-zero exit: {exit:?}");
    let status = Command::new("mount").args(["-o", "remount,size=512m"]).arg(&mnt).status().unwrap();
    assert!(status.success());
    let mut p = serve(&data);
    for (id, seq) in &acked {
        let (s, v) = call(&format!("{}/v1/events/{seq}", p.url), &admin, None).unwrap();
        assert_eq!(s, 200, "acknowledged {id} at {seq} is missing");
        assert_eq!(v["event_id"].as_str(), Some(id.as_str()), "{seq} holds another event");
    }
    assert!(sigterm(&mut p).success());
    let out = actlog(&data, &["verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs openssl; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed (tools/setup.sh)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate,
/// made with the openssl command line: `ca.pem`, `server.{pem,key}`,
/// `client.{pem,key}` in `dir`.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=actlog test CA"],
            &ca_ext,
        ]
        .concat(),
    );
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        ("client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extfile) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN=actlog test {name}")]]
                .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
        // libpq refuses a client key that others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// curl against the TLS listener: (exit success, body).
fn curl(dir: &Path, url: &str, token: Option<&str>, client_cert: bool) -> (bool, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "--cacert"]).arg(dir.join("ca.pem")).arg(url).current_dir(dir);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if client_cert {
        c.args(["--cert", "client.pem", "--key", "client.key"]);
    }
    let out = c.output().expect("curl is installed (tools/setup.sh)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// psql against the TLS PostgreSQL endpoint: (exit success, stdout + stderr).
fn psql_tls(dir: &Path, pg: &str, token: &str, sslmode: &str, client_cert: bool) -> (bool, String) {
    let (host, port) = pg.split_once(':').unwrap();
    let ca = dir.join("ca.pem");
    let mut conn =
        format!("host={host} port={port} user=query dbname=ledger sslmode={sslmode} sslrootcert={}", ca.display());
    if client_cert {
        conn += &format!(" sslcert={} sslkey={}", dir.join("client.pem").display(), dir.join("client.key").display());
    }
    let out = Command::new(psql_bin())
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM events"])
        .arg(conn)
        .env("PGPASSWORD", token)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("HOME", dir) // no ~/.postgresql client certificate of the user's
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `--tls-cert`/`--tls-key` serve HTTPS and TLS on the PostgreSQL endpoint
/// to real clients (curl, psql with verify-full); plain connections get
/// nothing; `--tls-client-ca` then requires a client certificate on both;
/// unreadable files are a usage error that creates no ledger.
#[test]
fn tls_serves_https_and_postgres_and_can_require_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    make_certificates(certs);
    let data = dir.path().join("data");
    let out = actlog(&data, &["init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = actlog(&data, &["tokens", "create", "--role", "query", "--name", "q"]);
    let query = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (cert, key, ca) = (certs.join("server.pem"), certs.join("server.key"), certs.join("ca.pem"));
    let (cert, key, ca) = (cert.to_str().unwrap(), key.to_str().unwrap(), ca.to_str().unwrap());

    // A certificate file that is not PEM: exit 2 naming the flag, and no ledger.
    let fresh = dir.path().join("fresh");
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", key, "--tls-key", key])
        .env("ACTLOG_DATA", &fresh)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!fresh.join("db").exists(), "a refused start created a ledger");

    let p = serve_with(&data, &["--pg-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key]);
    assert!(p.url.starts_with("https://"), "{}", p.url);
    let (ok, body) = curl(certs, &format!("{}/healthz", p.url), None, false);
    assert!(ok && body.contains("\"ok\""), "{body}");
    let (ok, body) = curl(certs, &format!("{}/v1/log", p.url), Some(&admin), false);
    assert!(ok && body.contains("\"tree_size\""), "{body}");
    // Plain HTTP on the TLS port gets no answer from the API.
    let plain = p.url.replace("https://", "http://");
    let (ok, body) = curl(certs, &format!("{plain}/v1/log"), Some(&admin), false);
    assert!(!ok || !body.contains("tree_size"), "plain HTTP was served: {body}");
    let pg = p.pg.clone().unwrap();
    let (ok, out) = psql_tls(certs, &pg, &query, "verify-full", false);
    assert!(ok, "psql over TLS: {out}");
    let (ok, out) = psql_tls(certs, &pg, &query, "disable", false);
    assert!(!ok && out.contains("requires TLS"), "a plain PostgreSQL login was accepted: {out}");
    drop(p);

    let p =
        serve_with(&data, &["--pg-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca]);
    let (ok, body) = curl(certs, &format!("{}/v1/log", p.url), Some(&admin), false);
    assert!(!ok && !body.contains("tree_size"), "served without a client certificate: {body}");
    let (ok, body) = curl(certs, &format!("{}/v1/log", p.url), Some(&admin), true);
    assert!(ok && body.contains("\"tree_size\""), "{body}");
    // The certificate adds to the token; it does not replace it.
    let (ok, body) = curl(certs, &format!("{}/v1/log", p.url), None, true);
    assert!(ok && body.contains("unauthenticated"), "{body}");
    let pg = p.pg.clone().unwrap();
    let (ok, out) = psql_tls(certs, &pg, &query, "verify-full", false);
    assert!(!ok, "psql without a client certificate was served: {out}");
    let (ok, out) = psql_tls(certs, &pg, &query, "verify-full", true);
    assert!(ok, "psql with a client certificate: {out}");

    // The CLI's remote mode over HTTPS: it trusts --ca-cert and shows
    // --client-cert; without them the handshake fails, by name.
    let remote = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["tokens", "list", "--url", &p.url, "--token", &admin])
            .args(extra)
            .current_dir(certs)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = remote(&["--ca-cert", "ca.pem", "--client-cert", "client.pem", "--client-key", "client.key"]);
    assert!(ok && out.contains("admin"), "{out}");
    let (ok, out) = remote(&["--client-cert", "client.pem", "--client-key", "client.key"]);
    assert!(!ok && out.contains("cannot reach"), "a server signed by an unknown CA was trusted: {out}");
    let (ok, out) = remote(&["--ca-cert", "ca.pem"]);
    assert!(!ok, "served without a client certificate: {out}");
    let (ok, out) = remote(&["--ca-cert", "client.key", "--client-cert", "client.pem", "--client-key", "client.key"]);
    assert!(!ok && out.contains("--ca-cert"), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["sql", "--url", &p.url, "--token", &query, "--format", "csv", "SELECT count(*) AS n FROM events"])
        .args(["--ca-cert", "ca.pem", "--client-cert", "client.pem", "--client-key", "client.key"])
        .current_dir(certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("n\n"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Polls `/v1/log` until the latest checkpoint covers the whole ledger;
/// returns that checkpoint's note.
pub(crate) fn settled_checkpoint(p: &Proc, admin: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = call(&format!("{}/v1/log", p.url), admin, None).unwrap();
        assert_eq!(s, 200);
        let size = v["tree_size"].as_u64().unwrap();
        if let Some(note) = v["checkpoint"].as_str()
            && note.lines().nth(1) == Some(&size.to_string())
        {
            return note.to_string();
        }
        assert!(Instant::now() < deadline, "no checkpoint of size {size} was signed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn loadgen(p: &Proc, admin: &str, events: u32) {
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["loadgen", "--url", &p.url, "--admin-token", admin, "--batch", "100", "--concurrency", "2"])
        .args(["--pdps", "2", "--duration", "120", "--events", &events.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
}

/// Builds the Go tile client (tests/tlog/goclient) with Debian's
/// golang-golang-x-mod-dev, offline.
fn go_tlog_client(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tlog/goclient/main.go");
    let bin = dir.join("tlogclient");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go is installed (tools/setup.sh installs golang-go and golang-golang-x-mod-dev)");
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

/// The tlog-tiles read API, read by tools nobody here wrote: Go's
/// `sumdb/tlog` proves random records and consistency from the tiles, and
/// an independent Python reader rebuilds the root from the entry bundles
/// and checks every tile. Without `--public-tlog` the routes need a token.
#[test]
fn tlog_tiles_are_read_by_go_sumdb_tlog_and_an_independent_python_reader() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let go = go_tlog_client(dir.path());
    let mut p = serve_with(&data, &["--public-tlog"]);
    let admin = p.token.clone().unwrap();
    let (_, log) = call(&format!("{}/v1/log", p.url), &admin, None).unwrap();
    let vkey = log["verifier_key"].as_str().unwrap().to_string();
    // Two checkpoints: one inside the second level-0 tile, one past four
    // full tiles, so level 1 has a partial tile at each.
    loadgen(&p, &admin, 300);
    let old = settled_checkpoint(&p, &admin);
    let old_file = dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old).unwrap();
    loadgen(&p, &admin, 1000);
    let new = settled_checkpoint(&p, &admin);
    let size: u64 = new.lines().nth(1).unwrap().parse().unwrap();
    assert!(size > 1024 && !size.is_multiple_of(256), "size {size}");
    let tlog = format!("{}/tlog", p.url);

    // Public: no token needed, and the checkpoint is the latest one.
    let resp = agent().get(&format!("{tlog}/checkpoint")).call().unwrap();
    assert_eq!(resp.status(), 200);
    let out =
        Command::new(&go).args(["-url", &tlog, "-vkey", &vkey, "-n", "60", "-old"]).arg(&old_file).output().unwrap();
    assert!(out.status.success(), "Go client: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tree_size"].as_u64(), Some(size), "{v}");
    assert_eq!(v["records_proved"], 60);

    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tlog/tiles_check.py");
    let out = Command::new("python3")
        .arg(&py)
        .args(["--url", &tlog, "--vkey", &vkey, "--old-checkpoint"])
        .arg(&old_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "Python reader: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tree_size"].as_u64(), Some(size), "{v}");
    // Every hash tile of the size: 5 full and 1 partial at level 0, 1
    // partial at level 1 (for size < 65,536).
    let expected = size / 256 + u64::from(!size.is_multiple_of(256)) + 1;
    assert_eq!(v["hash_tiles"].as_u64(), Some(expected), "{v}");

    // Without --public-tlog, every /tlog/ route needs an auditor token.
    assert!(sigterm(&mut p).success());
    let p = serve(&data);
    let tlog = format!("{}/tlog", p.url);
    for path in ["checkpoint", "tile/0/000", "tile/8/0/000", "tile/entries/000"] {
        let resp = agent().get(&format!("{tlog}/{path}")).call().unwrap();
        assert_eq!(resp.status(), 401, "{path} without a token");
    }
    let (s, v) =
        call(&format!("{}/v1/tokens", p.url), &admin, Some(json!({"name": "aud", "role": "auditor"}))).unwrap();
    assert_eq!(s, 201, "{v}");
    let auditor = v["token"].as_str().unwrap().to_string();
    let out = Command::new(&go)
        .args(["-url", &tlog, "-vkey", &vkey, "-n", "10", "-token", &auditor, "-old"])
        .arg(&old_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "Go client with a token: {}", String::from_utf8_lossy(&out.stderr));
    // A tile past the published checkpoint is not served.
    let past = format!("{tlog}/tile/0/{:03}", size / 256 + 1);
    let resp = agent().get(&past).header("authorization", &format!("Bearer {auditor}")).call().unwrap();
    assert_eq!(resp.status(), 404);
}

fn pylog(args: &[&str]) -> std::process::Output {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tlog/pylog.py");
    Command::new("python3").arg(py).args(args).output().unwrap()
}

/// A free port on 127.0.0.1, so a restarted server keeps its address.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// actlog as a C2SP witness, driven by an independent log written in
/// Python from the spec: it cosigns consistent checkpoints (the Python side
/// verifies each cosignature), answers 409/422/404/403/400 as tlog-witness
/// says, and, SIGKILLed at random points while two forks race, never
/// cosigns both.
#[test]
fn actlog_witnesses_a_python_log_and_never_cosigns_a_fork_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = actlog(&data, &["init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&actlog(&data, &["info", "--json"]).stdout).unwrap();
    let witness_vkey = info["witness_key"].as_str().expect("init makes a witness key").to_string();
    assert!(witness_vkey.contains("/witness+"), "{witness_vkey}");

    let (seed_a, origin_a) = ("11".repeat(32), "example.org/pylog-a");
    let (seed_b, origin_b) = ("22".repeat(32), "example.org/pylog-b");
    let vkey = |seed: &str, origin: &str| {
        let out = pylog(&["vkey", "--seed-hex", seed, "--origin", origin]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let policy = dir.path().join("witness-for.policy");
    std::fs::write(
        &policy,
        format!(
            "# logs this ledger witnesses\nlog {}\nlog {}\nquorum none\n",
            vkey(&seed_a, origin_a),
            vkey(&seed_b, origin_b)
        ),
    )
    .unwrap();
    // A policy that does not parse is a usage error naming the flag.
    let bad = dir.path().join("bad.policy");
    std::fs::write(&bad, "log not-a-key\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--witness-for"])
        .arg(&bad)
        .env("ACTLOG_DATA", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--witness-for"));

    let addr = format!("127.0.0.1:{}", free_port());
    let policy_arg = policy.to_str().unwrap();
    let mut p = serve_on(&data, &addr, &["--witness-for", policy_arg]);
    let url = format!("{}/tlog-witness", p.url);

    // Every answer of the spec, checked by the independent log.
    let out = pylog(&[
        "scenarios",
        "--witness-url",
        &url,
        "--witness-vkey",
        &witness_vkey,
        "--seed-hex",
        &seed_a,
        "--origin",
        origin_a,
    ]);
    assert!(
        out.status.success(),
        "scenarios: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["scenarios"].as_array().unwrap().len() >= 10, "{v}");

    // Two forks of log b race while the witness is killed and restarted.
    let state = dir.path().join("race.jsonl");
    let mut race = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tlog/pylog.py"))
        .args(["fork-race", "--witness-url", &url, "--witness-vkey", &witness_vkey, "--seed-hex", &seed_b])
        .args(["--origin", origin_b, "--rounds", "600", "--retry-seconds", "60", "--state-file"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kills = 0u64;
    while kills < 5 && race.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(250 + kills * 130));
        p.child.kill().unwrap(); // SIGKILL, mid-request or not
        p.child.wait().unwrap();
        kills += 1;
        p = serve_on(&data, &addr, &["--witness-for", policy_arg]);
    }
    let out = race.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fork-race: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["forks"], 0, "{v}");
    assert!(kills >= 3 && v["retries"].as_u64().unwrap() >= 3, "the witness was killed mid-race: {kills} kills, {v}");
    assert!(v["cosigned"].as_u64().unwrap() > 0, "{v}");
    // The witness requests were counted.
    let admin_less = agent().get(&format!("{}/metrics", p.url)).call().unwrap();
    assert_eq!(admin_less.status(), 401);
}

/// A C2SP witness written in Python from the spec (tests/tlog/witness.py).
struct PyWitness {
    child: Child,
    port: u16,
    vkey: String,
}

impl Drop for PyWitness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn py_witness(name: &str, seed: &str, log_vkey: &str, state: &Path, port: u16, mode: &str) -> PyWitness {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tlog/witness.py");
    let mut child = Command::new("python3")
        .arg(py)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", name, "--seed-hex", seed, "--log", log_vkey])
        .args(["--mode", mode, "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"listening"), "witness.py said {line:?}");
    PyWitness { port: parts[1].parse().unwrap(), vkey: parts[2].to_string(), child }
}

fn post_events(p: &Proc, token: &str, ids: &[String], query: &str) -> (u16, Value) {
    let seed = [0x51u8; 32];
    let envs: Vec<Value> = ids
        .iter()
        .map(|id| {
            serde_json::from_str(&Envelope::sign(event(id, "pdp-w").to_string().into_bytes(), None, &seed).to_json())
                .unwrap()
        })
        .collect();
    call(&format!("{}/v1/events{query}", p.url), token, Some(Value::Array(envs))).unwrap()
}

fn register_producer(p: &Proc, admin: &str) {
    let pk = actlog_core::b64::encode(public_key_of(&[0x51u8; 32]));
    let (s, v) =
        call(&format!("{}/v1/keys", p.url), admin, Some(json!({"name": "w", "public_key": pk, "pdp_id": "pdp-w"})))
            .unwrap();
    assert_eq!(s, 201, "{v}");
}

/// Polls `/v1/log` until `f` holds for it.
fn log_until(p: &Proc, admin: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = call(&format!("{}/v1/log", p.url), admin, None).unwrap();
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--witness-policy` with two independent witnesses under `group 2`:
/// witnessed receipts carry both cosignatures; a stopped witness never
/// delays acknowledgement but times out `?wait=witnessed` by name; a
/// witness that answers garbage or a bad cosignature is not counted; the
/// quorum recovers when it is back; `verify --policy` checks what was
/// stored.
#[test]
fn two_python_witnesses_cosign_under_a_quorum_and_a_bad_one_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = actlog(&data, &["init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let info: Value = serde_json::from_slice(&actlog(&data, &["info", "--json"]).stdout).unwrap();
    let ledger = info["verifier_key"].as_str().unwrap().to_string();
    let (s1, s2) = ("a1".repeat(32), "b2".repeat(32));
    let w1 = py_witness("w1.example", &s1, &ledger, &dir.path().join("w1.state"), 0, "honest");
    let w2_state = dir.path().join("w2.state");
    let mut w2 = py_witness("w2.example", &s2, &ledger, &w2_state, 0, "honest");
    let w2_port = w2.port;
    let policy = dir.path().join("policy");
    let policy_text = format!(
        "log {ledger}\nwitness w1 {} http://127.0.0.1:{}\nwitness w2 {} http://127.0.0.1:{}\ngroup both 2 w1 w2\nquorum both\n",
        w1.vkey, w1.port, w2.vkey, w2.port
    );
    std::fs::write(&policy, &policy_text).unwrap();
    let parsed = actlog_core::witness::Policy::parse(&policy_text).unwrap();
    let policy_arg = policy.to_str().unwrap();
    let p = serve_with(&data, &["--witness-policy", policy_arg, "--witness-wait-ms", "1500"]);
    register_producer(&p, &admin);

    let ids: Vec<String> = (0..5).map(|i| format!("w-{i}")).collect();
    let (s, v) = post_events(&p, &admin, &ids, "?wait=witnessed");
    assert_eq!(s, 200, "{v}");
    let note = v["checkpoint"].as_str().unwrap();
    let (_, size, root, by) = parsed.check(note).expect("the receipt's checkpoint meets the quorum");
    assert_eq!(by.keys().cloned().collect::<Vec<_>>(), ["w1", "w2"]);
    for r in v["receipts"].as_array().unwrap() {
        let hashes: Vec<[u8; 32]> = r["inclusion"]["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| actlog_core::b64::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let leaf: [u8; 32] = actlog_core::b64::decode(r["leaf_hash"].as_str().unwrap()).unwrap().try_into().unwrap();
        assert!(actlog_core::merkle::verify_inclusion(&leaf, r["seq"].as_u64().unwrap(), size, &hashes, &root));
    }
    let mut resp = agent()
        .get(&format!("{}/tlog/checkpoint", p.url))
        .header("authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    let published = resp.body_mut().read_to_string().unwrap();
    assert!(parsed.check(&published).is_ok(), "{published}");

    // w2 stops: appends are still acknowledged; witnessed receipts time out by name.
    drop(w2);
    let (s, v) = post_events(&p, &admin, &["w-stop-1".to_string()], "");
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_events(&p, &admin, &["w-stop-2".to_string()], "?wait=witnessed");
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "witness_quorum_timeout", "{v}");
    let (s, v) = call(&format!("{}/v1/events/by-id/w-stop-2", p.url), &admin, None).unwrap();
    assert_eq!(s, 200, "the event stays committed: {v}");
    let log = log_until(&p, &admin, "w2's error", |v| {
        v["witnesses"].as_array().unwrap().iter().any(|w| w["name"] == "w2" && !w["last_error"].is_null())
    });
    assert!(log["witnessed_tree_size"].as_u64().unwrap() < log["tree_size"].as_u64().unwrap(), "{log}");

    // A w2 that answers garbage, then one that answers a bad cosignature: not counted.
    for mode in ["garbage", "badsig"] {
        let bad = py_witness("w2.example", &s2, &ledger, &w2_state, w2_port, mode);
        let (s, v) = post_events(&p, &admin, &[format!("w-{mode}")], "?wait=witnessed");
        assert_eq!(s, 503, "{mode}: {v}");
        let log = log_until(&p, &admin, "the bad reply's error", |v| {
            v["witnesses"].as_array().unwrap().iter().any(|w| {
                w["name"] == "w2" && w["last_error"].as_str().is_some_and(|e| e.contains("no valid cosignature"))
            })
        });
        assert!(log["witnessed_tree_size"].as_u64().unwrap() < log["tree_size"].as_u64().unwrap(), "{mode}: {log}");
        drop(bad);
    }

    // w2 back, honest: the quorum recovers.
    w2 = py_witness("w2.example", &s2, &ledger, &w2_state, w2_port, "honest");
    let log = log_until(&p, &admin, "a witnessed checkpoint of the whole ledger", |v| {
        v["witnessed_tree_size"].as_u64().is_some() && v["witnessed_tree_size"] == v["tree_size"]
    });
    assert!(parsed.check(log["witnessed_checkpoint"].as_str().unwrap()).is_ok(), "{log}");
    let (s, v) = post_events(&p, &admin, &["w-back".to_string()], "?wait=witnessed");
    assert_eq!(s, 200, "{v}");
    let (_, metrics) = {
        let mut r = agent()
            .get(&format!("{}/metrics", p.url))
            .header("authorization", &format!("Bearer {admin}"))
            .call()
            .unwrap();
        (r.status(), r.body_mut().read_to_string().unwrap())
    };
    for want in [
        "actlog_witness_submissions_total{witness=\"w1\",outcome=\"cosigned\"}",
        "actlog_witness_submissions_total{witness=\"w2\",outcome=\"unreachable\"}",
        "actlog_witness_submissions_total{witness=\"w2\",outcome=\"bad_cosignature\"}",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    drop(p);
    drop(w2);

    // Offline: every stored cosignature verifies and the quorum was met.
    let out = actlog(&data, &["verify", "--json", "--policy", policy_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["cosignatures"].as_u64().unwrap() >= 4, "{v}");
    assert!(v["witnessed_tree_size"].as_u64().unwrap() >= 8, "{v}");
    // A policy whose quorum no stored checkpoint meets fails by name.
    let w3 = actlog_core::witness::CosignerKey::from_seed("w3.example", &[3; 32]).unwrap().to_text();
    let strict = dir.path().join("strict.policy");
    std::fs::write(
        &strict,
        policy_text.replace("group both 2 w1 w2", &format!("witness w3 {w3}\ngroup both 3 w1 w2 w3")),
    )
    .unwrap();
    let out = actlog(&data, &["verify", "--policy", strict.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quorum"), "{}", String::from_utf8_lossy(&out.stderr));

    // Export and evidence bundles carry the witnessed checkpoint, and
    // `verify --bundle --policy` checks it, so an auditor need not trust the
    // ledger key alone.
    for (kind, args) in [("export", vec!["export"]), ("evidence", vec!["evidence", "--framework", "nist-csf-2.0"])] {
        let out_dir = dir.path().join(kind);
        let out_arg = out_dir.to_str().unwrap();
        let out = actlog(&data, &[&args[..], &["--out", out_arg, "--policy", policy_arg]].concat());
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        let cp = std::fs::read_to_string(out_dir.join("checkpoint.txt")).unwrap();
        assert!(parsed.check(&cp).is_ok(), "{kind}: {cp}");
        let out = actlog(&data, &["verify", "--json", "--bundle", out_arg, "--policy", policy_arg]);
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["witnesses"], json!(["w1", "w2"]), "{kind}: {v}");
        let out = actlog(&data, &["verify", "--bundle", out_arg, "--policy", strict.to_str().unwrap()]);
        assert!(!out.status.success(), "{kind}: a bundle short of the quorum passed");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("witness policy"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = actlog(
        &data,
        &["export", "--out", dir.path().join("strict").to_str().unwrap(), "--policy", strict.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quorum"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Two actlog ledgers witness each other: each cosigns the other's
/// checkpoints, each publishes only checkpoints the other cosigned, and
/// `verify --policy` passes on both. A tlog-proof file of one event is
/// checked offline with `verify --receipt`, and every single edit of it
/// (index, audit path, root, cosignature, envelope) is refused.
#[test]
fn two_actlog_ledgers_witness_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledgers = Vec::new();
    for name in ["a", "b"] {
        let data = dir.path().join(name);
        let out = actlog(&data, &["init", "--origin", &format!("example.org/ledger-{name}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let info: Value = serde_json::from_slice(&actlog(&data, &["info", "--json"]).stdout).unwrap();
        let (ledger, witness) = (info["verifier_key"].as_str().unwrap(), info["witness_key"].as_str().unwrap());
        ledgers.push((data, admin, ledger.to_string(), witness.to_string(), free_port()));
    }
    let mut procs = Vec::new();
    for (i, (data, _, ledger, _, port)) in ledgers.iter().enumerate() {
        let (_, _, other_ledger, other_witness, other_port) = &ledgers[1 - i];
        let policy = data.with_extension("policy");
        std::fs::write(
            &policy,
            format!(
                "log {ledger}\nwitness peer {other_witness} http://127.0.0.1:{other_port}/tlog-witness\nquorum peer\n"
            ),
        )
        .unwrap();
        let witness_for = data.with_extension("witness-for");
        std::fs::write(&witness_for, format!("log {other_ledger}\nquorum none\n")).unwrap();
        let (policy, witness_for) = (policy.to_str().unwrap().to_string(), witness_for.to_str().unwrap().to_string());
        procs.push(serve_on(
            data,
            &format!("127.0.0.1:{port}"),
            &["--witness-policy", &policy, "--witness-for", &witness_for, "--public-tlog"],
        ));
    }
    for (p, (_, admin, ..)) in procs.iter().zip(&ledgers) {
        register_producer(p, admin);
        let (s, v) = post_events(p, admin, &["mutual-1".to_string(), "mutual-2".to_string()], "?wait=witnessed");
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["checkpoint"].as_str().unwrap().matches('\u{2014}').count(), 2, "log and peer signatures: {v}");
    }
    // A proof file from ledger a, checked offline against a's policy, and
    // each single edit of it refused.
    let (p, (data, admin, ..)) = (&procs[0], &ledgers[0]);
    let policy = data.with_extension("policy");
    let seed = [0x51u8; 32];
    let envelope: Value = serde_json::from_str(
        &Envelope::sign(event("mutual-1", "pdp-w").to_string().into_bytes(), None, &seed).to_json(),
    )
    .unwrap();
    let envelope = serde_json::to_string(&envelope).unwrap();
    let (s, v) = call(&format!("{}/v1/events/by-id/mutual-1", p.url), admin, None).unwrap();
    assert_eq!(s, 200, "{v}");
    let seq = v["seq"].as_u64().unwrap();
    let mut r = agent()
        .get(&format!("{}/v1/proofs/inclusion?seq={seq}&format=tlog-proof", p.url))
        .header("authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let proof = r.body_mut().read_to_string().unwrap();
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{proof}");
    let files = dir.path().join("receipt");
    std::fs::create_dir_all(&files).unwrap();
    let check = |text: &str, env: &str| {
        std::fs::write(files.join("r.tlog-proof"), text).unwrap();
        std::fs::write(files.join("envelope.json"), env).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(["verify", "--receipt"])
            .arg(files.join("r.tlog-proof"))
            .arg("--policy")
            .arg(&policy)
            .arg("--envelope")
            .arg(files.join("envelope.json"))
            .env("ACTLOG_DATA", dir.path().join("no-such-data-dir"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = check(&proof, &envelope);
    assert!(ok && out.contains("cosigned by peer"), "{out}");
    let lines: Vec<&str> = proof.split('\n').collect();
    let edit = |i: usize, f: &dyn Fn(&str) -> String| {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        l[i] = f(&l[i]);
        l.join("\n")
    };
    let flip = |s: &str| {
        // Change one base64 character, keeping it base64.
        let mut c: Vec<char> = s.chars().collect();
        let at = c.len() / 2;
        c[at] = if c[at] == 'A' { 'B' } else { 'A' };
        c.into_iter().collect::<String>()
    };
    let index_line = lines.iter().position(|l| l.starts_with("index ")).unwrap();
    let path_line = index_line + 1;
    assert!(!lines[path_line].is_empty(), "the audit path is not empty: {proof}");
    let blank = lines.iter().position(|l| l.is_empty()).unwrap();
    let root_line = blank + 3;
    let cosig_line = lines.iter().rposition(|l| l.starts_with('\u{2014}')).unwrap();
    for (what, text) in [
        ("index", edit(index_line, &|_| format!("index {}", seq + 1))),
        ("a proof line", edit(path_line, &flip)),
        ("the root", edit(root_line, &flip)),
        ("a cosignature", edit(cosig_line, &flip)),
    ] {
        let (ok, out) = check(&text, &envelope);
        assert!(!ok && out.contains("FAILED"), "an edit of {what} was accepted: {out}");
    }
    let (ok, out) = check(&proof, &envelope.replacen("payload", "payload ", 1));
    assert!(!ok && out.contains("envelope"), "an edited envelope was accepted: {out}");

    for mut p in procs {
        assert!(sigterm(&mut p).success());
    }
    for (data, ..) in &ledgers {
        let policy = data.with_extension("policy");
        let out = actlog(data, &["verify", "--json", "--policy", policy.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["witnessed_tree_size"].as_u64().unwrap() >= 3, "{v}");
    }
}

/// A new ingest token made through the admin API (`tokens create --url`).
fn ingest_token(p: &Proc, admin: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["tokens", "create", "--role", "ingest", "--url", &p.url, "--token", admin])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A child process killed when dropped, with the first line of its stdout.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `python3 ARGS` and waits for "listening on HOST:PORT".
fn python_server(args: &[&str]) -> (Spawned, String) {
    let mut child = Command::new("python3").args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{args:?} printed {line:?}"));
    (Spawned(child), format!("http://{addr}"))
}

/// A PDP speaking AuthZEN 1.0 for the test: allows `can_read`, denies the
/// rest, echoes X-Request-ID; the batch form answers item by item.
const DEMO_PDP: &str = r#"
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        allow = lambda e: {"decision": (e.get("action") or req.get("action", {})).get("name") == "can_read"}
        out = {"evaluations": [allow(e) for e in req["evaluations"]]} if "evaluations" in req else allow(req)
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-request-id", self.headers.get("x-request-id", ""))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
"#;

/// `tools/authzen_pep.py`, the reference gateway: an application's AuthZEN
/// calls pass through it unchanged, and each lands in actlog as decisions
/// that SQL and the chain read back, keyed by the X-Request-ID.
#[test]
fn the_reference_authzen_gateway_records_every_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve(&dir.path().join("data"));
    let admin = p.token.clone().unwrap();
    let ingest = ingest_token(&p, &admin, &["--pdp", "pdp-demo"]);
    let (_pdp, pdp_url) = python_server(&["-c", DEMO_PDP]);
    let pep_script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/authzen_pep.py");
    let spool = dir.path().join("pep.spool");
    let (_pep, pep_url) = python_server(&[
        pep_script,
        "--listen",
        "127.0.0.1:0",
        "--pdp",
        &pdp_url,
        "--pdp-id",
        "pdp-demo",
        "--policy-version",
        "v7",
        "--actlog",
        &p.url,
        "--token",
        &ingest,
        "--spool",
        spool.to_str().unwrap(),
    ]);
    let ask = |path: &str, id: &str, body: Value| {
        let mut r = agent()
            .post(format!("{pep_url}{path}"))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .send(body.to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        serde_json::from_str::<Value>(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let subject =
        json!({"type": "user", "id": "alice", "properties": {"act": {"sub": "agent-9", "sub_profile": "ai_agent"}}});
    let context = json!({"task_id": "t-pep", "session_id": "s-pep"});
    let one = ask(
        "/access/v1/evaluation",
        "req-1",
        json!({"subject": subject, "action": {"name": "can_read"}, "resource": {"type": "doc", "id": "d1"}, "context": context}),
    );
    assert_eq!(one, json!({"decision": true}), "the PDP's answer passes through unchanged");
    let many = ask(
        "/access/v1/evaluations",
        "req-2",
        json!({"subject": subject, "context": context, "resource": {"type": "doc", "id": "d2"},
               "evaluations": [{"action": {"name": "can_read"}}, {"action": {"name": "can_delete"}}]}),
    );
    assert_eq!(many, json!({"evaluations": [{"decision": true}, {"decision": false}]}));
    assert!(!spool.exists(), "nothing is left waiting");
    let (status, v) = call(
        &format!("{}/v1/sql", p.url),
        &admin,
        Some(
            json!({"sql": "SELECT event_id, principal_id, actor_id, action, effect, policy_version, pdp_id, request_id \
                            FROM events WHERE source_format = 'authzen.evaluation.v1' ORDER BY event_id"}),
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([
            ["authzen:pdp-demo:req-1:0", "alice", "agent-9", "can_read", "allow", "v7", "pdp-demo", "req-1"],
            ["authzen:pdp-demo:req-2:0", "alice", "agent-9", "can_read", "allow", "v7", "pdp-demo", "req-2"],
            ["authzen:pdp-demo:req-2:1", "alice", "agent-9", "can_delete", "deny", "v7", "pdp-demo", "req-2"]
        ]),
        "{v}"
    );
    let (status, chain) = call(&format!("{}/v1/chains/authzen:pdp-demo:req-2:1", p.url), &admin, None).unwrap();
    assert_eq!(status, 200, "{chain}");
    assert!(chain.to_string().contains("agent-9"), "{chain}");
}

/// The OpenTelemetry Python SDK, with its own OTLP/HTTP exporter (protobuf,
/// gzip), exports an agent run's GenAI spans to a running server: the two
/// guardrail verdicts become decisions, the two tool calls outcomes naming
/// them; SQL and the chain read them back; a second export of the same
/// spans would add nothing (the ids are the span ids).
#[test]
fn the_opentelemetry_sdk_exports_genai_spans_to_actlog() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve(&dir.path().join("data"));
    let admin = p.token.clone().unwrap();
    let ingest = ingest_token(&p, &admin, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/otel_genai_export.py");
    let out = Command::new("python3").args([script, &p.url, &ingest]).output().expect("python3 (tools/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(trace.len(), 32);
    let (status, v) = call(
        &format!("{}/v1/sql", p.url),
        &admin,
        Some(
            json!({"sql": "SELECT event_type, principal_id, actor_id, resource_id, effect, outcome_status, session_id, \
                            trace_id, decision_event_id IS NOT NULL FROM events WHERE source_format = 'otlp.genai.v1' \
                            ORDER BY event_type, resource_id"}),
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([
            ["authz.decision", "bob", "agent-otel-1", "search_flights", "allow", null, "conv-otel", trace, false],
            ["authz.decision", "bob", "agent-otel-1", "wire_money", "deny", null, "conv-otel", trace, false],
            ["authz.outcome", "bob", "agent-otel-1", "search_flights", null, "executed", "conv-otel", trace, true],
            ["authz.outcome", "bob", "agent-otel-1", "wire_money", null, "failed", "conv-otel", trace, true]
        ]),
        "{v}"
    );
    // Each outcome names its guardrail's decision, and the chain joins them.
    let (_, v) = call(
        &format!("{}/v1/sql", p.url),
        &admin,
        Some(json!({"sql": "SELECT d.event_id FROM events o JOIN events d ON o.decision_event_id = d.event_id \
                            WHERE o.source_format = 'otlp.genai.v1' AND d.resource_id = 'wire_money'"})),
    )
    .unwrap();
    let decision = v["rows"][0][0].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    let (status, chain) = call(&format!("{}/v1/chains/{decision}", p.url), &admin, None).unwrap();
    assert_eq!(status, 200, "{chain}");
    assert_eq!(chain["outcomes"][0]["status"], "failed", "{chain}");
    assert_eq!(chain["decision"]["effect"], "deny", "{chain}");
}
