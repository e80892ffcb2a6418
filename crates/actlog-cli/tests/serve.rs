//! `actlog serve` as a process: first start, graceful SIGTERM, the CLI's
//! remote admin mode, and kill -9 mid-load without losing an acknowledged
//! event.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actlog_core::dsse::Envelope;
use actlog_core::sig::public_key_of;
use serde_json::{Value, json};

struct Proc {
    child: Child,
    url: String,
    token: Option<String>,
}

/// Starts `actlog serve` on an ephemeral port and waits until it listens.
fn serve(data: &Path) -> Proc {
    serve_with(data, &[])
}

/// [`serve`] with extra flags.
fn serve_with(data: &Path, extra: &[&str]) -> Proc {
    // A first start prints the admin token on stdout; wait for it too.
    let fresh = !data.join("db").exists();
    let mut child = Command::new(env!("CARGO_BIN_EXE_actlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--checkpoint-interval-ms", "200"])
        .args(extra)
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
            if let Some(url) = line.split(" on ").nth(1).filter(|u| u.starts_with("http://")) {
                let _ = tx2.send(("url", url.to_string()));
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(("token", line));
        }
    });
    let (mut url, mut token) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while url.is_none() || (fresh && token.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(("url", u)) => url = Some(u),
            Ok((_, t)) => token = Some(t),
            Err(_) => panic!("actlog serve did not start"),
        }
    }
    // The token line, if any, was printed before the listening line.
    while let Ok((kind, t)) = rx.try_recv() {
        if kind == "token" {
            token = Some(t);
        }
    }
    Proc { child, url: url.unwrap(), token }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn call(url: &str, token: &str, body: Option<Value>) -> Result<(u16, Value), String> {
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

fn actlog(data: &Path, args: &[&str]) -> std::process::Output {
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

fn sigterm(p: &mut Proc) -> std::process::ExitStatus {
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
    assert!(actlog(&data, &["prove", "inclusion", "1"]).status.success());
    // So does an export, of what the latest checkpoint covers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !actlog(&data, &["info"]).stdout.windows(3).any(|w| w == b"\n4\n") {
        assert!(Instant::now() < deadline, "a checkpoint covers the event within the interval");
        std::thread::sleep(Duration::from_millis(100));
    }
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
