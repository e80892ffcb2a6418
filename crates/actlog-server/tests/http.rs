//! End-to-end over real HTTP on 127.0.0.1: every endpoint, every role
//! refusal, atomic batches, idempotent retries, proofs that verify, metrics,
//! and a catalogue of bad requests that must change nothing.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use actlog_core::b64;
use actlog_core::dsse::Envelope;
use actlog_core::leaf::sha256;
use actlog_core::merkle;
use actlog_core::note::Checkpoint;
use actlog_core::sig::public_key_of;
use actlog_server::{Limits, ServerConfig};
use actlog_store::{AdminOp, Options, Store};
use serde_json::{Value, json};

const PRODUCER: [u8; 32] = [0x61; 32];
const OTHER_PDP_KEY: [u8; 32] = [0x62; 32];

struct Server {
    addr: SocketAddr,
    stop: Option<tokio_stop::Sender>,
    thread: Option<std::thread::JoinHandle<()>>,
    tokens: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

/// A tiny one-shot stop signal that needs no tokio in the test crate.
mod tokio_stop {
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    #[derive(Default)]
    struct Inner {
        fired: bool,
        waker: Option<Waker>,
    }
    pub struct Sender(Arc<Mutex<Inner>>);
    pub struct Receiver(Arc<Mutex<Inner>>);
    pub fn channel() -> (Sender, Receiver) {
        let inner = Arc::new(Mutex::new(Inner::default()));
        (Sender(Arc::clone(&inner)), Receiver(inner))
    }
    impl Sender {
        pub fn fire(self) {
            let mut i = self.0.lock().unwrap();
            i.fired = true;
            if let Some(w) = i.waker.take() {
                w.wake();
            }
        }
    }
    impl std::future::Future for Receiver {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            let mut i = self.0.lock().unwrap();
            if i.fired {
                Poll::Ready(())
            } else {
                i.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn token_for(store: &Store, name: &str, role: &str, pdp: Option<&str>) -> String {
    let token = format!("actlog_test_{name}_{}", hex::encode(&sha256(name.as_bytes())[..8]));
    store
        .admin(AdminOp::CreateToken {
            name: name.into(),
            role: role.into(),
            pdp_id: pdp.map(str::to_string),
            token_sha256: sha256(token.as_bytes()),
            expires_at_ns: None,
        })
        .unwrap();
    token
}

impl Server {
    fn start_with(limits: Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { checkpoint_interval: Duration::from_millis(100), ..Options::default() };
        let store = Store::init(dir.path(), [0x60; 32], Some("http.test/log".into()), opts).unwrap();
        store
            .admin(AdminOp::AddKey {
                name: "pdp-a-key".into(),
                pdp_id: "pdp-a".into(),
                public_key: public_key_of(&PRODUCER),
            })
            .unwrap();
        store
            .admin(AdminOp::AddKey {
                name: "pdp-b-key".into(),
                pdp_id: "pdp-b".into(),
                public_key: public_key_of(&OTHER_PDP_KEY),
            })
            .unwrap();
        let mut tokens = std::collections::HashMap::new();
        for (name, role, pdp) in [
            ("admin", "admin", None),
            ("ingest", "ingest", None),
            ("ingest-a", "ingest", Some("pdp-a")),
            ("query", "query", None),
            ("auditor", "auditor", None),
            ("revoked", "ingest", None),
        ] {
            tokens.insert(name, token_for(&store, name, role, pdp));
        }
        store.admin(AdminOp::RevokeToken { name: "revoked".into() }).unwrap();
        let (stop, stopped) = tokio_stop::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            limits,
            public_checkpoint: false,
            public_tlog: false,
            witness: None,
            witnessing: None,
            opa_mapping: Default::default(),
            pg_listen: None,
            query: Default::default(),
            http: Default::default(),
            pg: Default::default(),
            auth_failures_per_minute_max: actlog_server::AUTH_FAILURES_PER_MINUTE_MAX_DEFAULT,
            tls: None,
            archive: None,
        };
        let thread = std::thread::spawn(move || {
            actlog_server::run(store, config, move |b| tx.send(b.http).unwrap(), stopped).unwrap();
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("server binds");
        Server { addr, stop: Some(stop), thread: Some(thread), tokens, _dir: dir }
    }

    fn start() -> Server {
        Server::start_with(Limits::default())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn token(&self, role: &str) -> &str {
        &self.tokens[role]
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req = ureq::http::Request::builder().method(method).uri(self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = match body {
            Some(b) => agent.run(req.body(b).unwrap()),
            None => agent.run(req.body(()).unwrap()),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let request_id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let text = resp.into_body().read_to_string().unwrap_or_default();
        Reply { status, text, request_id, retry_after }
    }

    fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), &[], None)
    }

    fn post_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(
            "POST",
            path,
            Some(token),
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
    }

    fn post_events(&self, token: &str, envelopes: &[String]) -> Reply {
        let body = format!("[{}]", envelopes.join(","));
        self.call("POST", "/v1/events", Some(token), &[("content-type", "application/json")], Some(body.into_bytes()))
    }

    fn tree_size(&self) -> u64 {
        self.get("/v1/log", self.token("auditor")).json()["tree_size"].as_u64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.fire();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    text: String,
    request_id: Option<String>,
    retry_after: Option<String>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

fn event(id: &str, pdp: &str) -> Value {
    json!({
        "spec_version": "1", "event_type": "authz.decision", "event_id": id,
        "event_time": "2026-08-21T10:15:30Z", "pdp": {"id": pdp},
        "delegation": {
            "principal": {"type": "user", "id": "alice"},
            "actor": {"id": "agent-1", "sub_profile": "ai_agent"},
            "chain": [{"depth": 1, "sub": "agent-1", "sub_profile": "ai_agent"}],
            "verification": {"status": "verified"}
        },
        "correlation": {"session_id": "s", "task_id": "t"},
        "policy": {"version": "v1"},
        "request": {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                    "resource": {"type": "doc", "id": "d1"}},
        "decision": {"effect": "allow"}
    })
}

fn sign_value(v: &Value, seed: &[u8; 32]) -> String {
    Envelope::sign(v.to_string().into_bytes(), Some("k".into()), seed).to_json()
}

fn envelope(id: &str) -> String {
    sign_value(&event(id, "pdp-a"), &PRODUCER)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn hash(v: &Value) -> [u8; 32] {
    b64::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn ingest_read_prove_and_count() {
    let s = Server::start();
    let base = s.tree_size();
    let r = s.post_events(s.token("ingest"), &[envelope("e1"), envelope("e2"), envelope("e3")]);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let seqs: Vec<u64> = body["receipts"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![base, base + 1, base + 2], "receipts in request order");
    assert_eq!(body["tree_size"], base + 3);
    assert!(r.request_id.is_some());

    // NDJSON, gzip, and ?wait=checkpoint with proofs that verify.
    let nd = format!("{}\n{}\n", envelope("e4"), envelope("e5"));
    let r = s.call(
        "POST",
        "/v1/events?wait=checkpoint",
        Some(s.token("ingest")),
        &[("content-type", "application/x-ndjson"), ("content-encoding", "gzip")],
        Some(gzip(nd.as_bytes())),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let note = body["checkpoint"].as_str().unwrap();
    let log = s.get("/v1/log", s.token("auditor")).json();
    let vk = actlog_core::note::VerifierKey::parse(log["verifier_key"].as_str().unwrap()).unwrap();
    let cp = Checkpoint::open(note, &vk).unwrap();
    for rec in body["receipts"].as_array().unwrap() {
        let proof: Vec<[u8; 32]> = rec["inclusion"]["hashes"].as_array().unwrap().iter().map(hash).collect();
        assert_eq!(rec["inclusion"]["tree_size"], cp.tree_size);
        assert!(merkle::verify_inclusion(
            &hash(&rec["leaf_hash"]),
            rec["seq"].as_u64().unwrap(),
            cp.tree_size,
            &proof,
            &cp.root
        ));
    }

    // Reads by seq and by id agree, and expose the stored bytes.
    let by_seq = s.get(&format!("/v1/events/{base}"), s.token("query")).json();
    let by_id = s.get("/v1/events/by-id/e1", s.token("auditor")).json();
    assert_eq!(by_seq, by_id);
    assert_eq!(by_seq["payload"]["event_id"], "e1");
    assert_eq!(by_seq["envelope"]["payloadType"], "application/vnd.actlog.event.v1+json");
    let leaf = b64::decode(by_seq["leaf"].as_str().unwrap()).unwrap();
    assert_eq!(merkle::leaf_hash(&leaf), hash(&by_seq["leaf_hash"]));

    // Proof endpoints against the latest checkpoint.
    let size = cp.tree_size;
    let p = s.get(&format!("/v1/proofs/inclusion?seq=1&tree_size={size}"), s.token("auditor")).json();
    let proof: Vec<[u8; 32]> = p["hashes"].as_array().unwrap().iter().map(hash).collect();
    assert!(merkle::verify_inclusion(&hash(&p["leaf_hash"]), 1, size, &proof, &cp.root));
    let c = s.get(&format!("/v1/proofs/consistency?old=2&new={size}"), s.token("auditor")).json();
    assert_eq!((c["old"].as_u64(), c["new"].as_u64()), (Some(2), Some(size)));
    let text = s.get("/v1/checkpoint", s.token("auditor"));
    assert_eq!(text.status, 200);
    Checkpoint::open(&text.text, &vk).unwrap();

    // Metrics count what happened.
    s.post_events(s.token("ingest"), &[envelope("e1")]); // a duplicate
    s.post_events(s.token("ingest"), &["{}".into()]); // a refusal
    let m = s.get("/metrics", s.token("auditor")).text;
    assert!(m.contains("actlog_events_accepted_total 5\n"), "{m}");
    assert!(m.contains("actlog_events_duplicate_total 1\n"), "{m}");
    assert!(m.contains("actlog_events_refused_total{reason=\"malformed_envelope\"} 1"), "{m}");
    assert!(m.contains("actlog_commit_latency_ms_count 3\n"), "{m}");
    assert!(m.contains("actlog_tree_size "));
    assert!(m.contains("actlog_storage_memory_bytes{kind=\"memtables\"} "), "{m}");
    assert_eq!(s.get("/healthz", "").status, 200);
    assert_eq!(s.call("GET", "/readyz", None, &[], None).status, 200);
}

#[test]
fn batches_are_atomic_and_retries_are_idempotent() {
    let s = Server::start();
    let before = s.tree_size();
    let mut bad = event("bad-1", "pdp-a");
    bad["decision"]["effect"] = json!("maybe");
    let r = s.post_events(s.token("ingest"), &[envelope("ok-1"), sign_value(&bad, &PRODUCER), envelope("ok-2")]);
    assert_eq!(r.status, 422);
    let items = r.json()["error"]["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["path"], "/decision/effect");
    assert_eq!(s.tree_size(), before, "one bad envelope stores nothing");
    assert_eq!(s.get("/v1/events/by-id/ok-1", s.token("query")).status, 404);

    let first = s.post_events(s.token("ingest"), &[envelope("r1"), envelope("r2")]).json();
    let again = s.post_events(s.token("ingest"), &[envelope("r1"), envelope("r2")]).json();
    for (a, b) in first["receipts"].as_array().unwrap().iter().zip(again["receipts"].as_array().unwrap()) {
        assert_eq!(a["seq"], b["seq"]);
        assert_eq!(a["leaf_hash"], b["leaf_hash"]);
        assert_eq!((a["duplicate"].as_bool(), b["duplicate"].as_bool()), (Some(false), Some(true)));
    }
    let mut changed = event("r1", "pdp-a");
    changed["decision"]["effect"] = json!("deny");
    let size = s.tree_size();
    let r = s.post_events(s.token("ingest"), &[envelope("r3"), sign_value(&changed, &PRODUCER)]);
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    assert_eq!(s.tree_size(), size);
}

#[test]
fn roles_are_enforced_on_every_endpoint() {
    let s = Server::start();
    s.post_events(s.token("ingest"), &[envelope("x1")]);
    let seq = s.tree_size() - 1;
    let routes: Vec<(&str, String, &[&str])> = vec![
        ("POST", "/v1/events".into(), &["ingest", "admin"]),
        ("POST", "/v1/opa/logs".into(), &["ingest", "admin"]),
        ("POST", "/v1/opa/logs/p1".into(), &["ingest", "admin"]),
        ("GET", format!("/v1/events/{seq}"), &["query", "auditor", "admin"]),
        ("GET", "/v1/events/by-id/x1".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/log".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/checkpoint".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/proofs/inclusion?seq=0".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/proofs/consistency?old=1&new=2".into(), &["query", "auditor", "admin"]),
        ("POST", "/v1/sql".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/chains/x1".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/search?q=x1".into(), &["query", "auditor", "admin"]),
        ("GET", "/v1/events?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z".into(), &["query", "auditor", "admin"]),
        (
            "GET",
            "/v1/principals/alice?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z".into(),
            &["query", "auditor", "admin"],
        ),
        (
            "GET",
            "/v1/agents/a1?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z".into(),
            &["query", "auditor", "admin"],
        ),
        ("POST", "/v1/evidence?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z".into(), &["auditor", "admin"]),
        ("GET", "/v1/keys".into(), &["admin"]),
        ("GET", "/v1/tokens".into(), &["admin"]),
        ("POST", "/v1/keys".into(), &["admin"]),
        ("POST", "/v1/tokens".into(), &["admin"]),
        ("POST", "/v1/keys/nope/revoke".into(), &["admin"]),
        ("POST", "/v1/tokens/nope/revoke".into(), &["admin"]),
        ("GET", "/metrics".into(), &["auditor", "admin"]),
    ];
    std::thread::sleep(Duration::from_millis(300)); // let a checkpoint be signed
    let before = s.tree_size();
    for (method, path, allowed) in &routes {
        for role in ["ingest", "query", "auditor", "admin"] {
            let body = match (*method, path.as_str()) {
                ("POST", "/v1/events") => Some(format!("[{}]", envelope("x1")).into_bytes()),
                ("POST", p) if p.starts_with("/v1/opa/") => Some(b"[]".to_vec()),
                ("POST", _) => Some(b"{}".to_vec()),
                _ => None,
            };
            let r = s.call(method, path, Some(s.token(role)), &[("content-type", "application/json")], body);
            if allowed.contains(&role) {
                assert!(r.status != 401 && r.status != 403, "{role} {method} {path}: {} {}", r.status, r.text);
            } else {
                assert_eq!((r.status, r.code().as_str()), (403, "forbidden"), "{role} {method} {path}");
            }
        }
        for token in [None, Some("actlog_wrong"), Some(s.token("revoked"))] {
            let r = s.call(method, path, token, &[("content-type", "application/json")], Some(b"[]".to_vec()));
            assert_eq!((r.status, r.code().as_str()), (401, "unauthenticated"), "{token:?} {method} {path}");
            assert!(r.request_id.is_some());
        }
    }
    assert_eq!(s.tree_size(), before, "no refused request changed the ledger");
}

#[test]
fn keys_and_tokens_are_managed_at_runtime() {
    let s = Server::start();
    let admin = s.token("admin").to_string();
    // A new PDP is onboarded without a restart.
    let seed = [0x77u8; 32];
    let r = s.post_json(
        "/v1/keys",
        &admin,
        &json!({"name": "pdp-c-key", "public_key": b64::encode(public_key_of(&seed)), "pdp_id": "pdp-c"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.post_json("/v1/tokens", &admin, &json!({"role": "ingest", "name": "c-ingest", "pdp_id": "pdp-c"}));
    assert_eq!(r.status, 201);
    let c_token = r.json()["token"].as_str().unwrap().to_string();
    let ok = s.post_events(&c_token, &[sign_value(&event("c1", "pdp-c"), &seed)]);
    assert_eq!(ok.status, 200, "{}", ok.text);
    // The PDP-bound token cannot send another PDP's events.
    let r = s.post_events(&c_token, &[envelope("c-as-a")]);
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["items"][0]["code"], "pdp_mismatch");
    // Revoking the key stops it on the next request.
    assert_eq!(s.call("POST", "/v1/keys/pdp-c-key/revoke", Some(&admin), &[], None).status, 200);
    let r = s.post_events(&c_token, &[sign_value(&event("c2", "pdp-c"), &seed)]);
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["items"][0]["code"], "unknown_key");
    // Revoking the token stops it on the next request.
    assert_eq!(s.call("POST", "/v1/tokens/c-ingest/revoke", Some(&admin), &[], None).status, 200);
    let r = s.post_events(&c_token, &[sign_value(&event("c3", "pdp-c"), &seed)]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["items"], serde_json::json!([]), "items is always there: {}", r.text);
    let keys = s.get("/v1/keys", &admin).json();
    assert!(keys["keys"].as_array().unwrap().iter().any(|k| k["name"] == "pdp-c-key" && k["revoked_seq"].is_u64()));
    let tokens = s.get("/v1/tokens", &admin).text;
    assert!(!tokens.contains(&c_token), "secrets are never listed");
    assert_eq!(
        s.post_json("/v1/keys", &admin, &json!({"name": "pdp-c-key", "public_key": b64::encode([9u8; 32])})).status,
        409
    );
    assert_eq!(s.call("POST", "/v1/keys/none/revoke", Some(&admin), &[], None).status, 404);
}

/// A token created with a lifetime works until it expires, then is refused
/// like a revoked one; its expiry is in the signed ledger record, so
/// `verify` rebuilds it; a lifetime that is not a duration is refused by name.
#[test]
fn tokens_with_a_lifetime_stop_working_when_it_ends() {
    let s = Server::start();
    let admin = s.token("admin").to_string();
    let r = s.post_json("/v1/tokens", &admin, &json!({"role": "auditor", "name": "brief", "expires_in": "2s"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let expires_at = r.json()["expires_at"].as_str().unwrap().to_string();
    let token = r.json()["token"].as_str().unwrap().to_string();
    let at = actlog_core::time::parse_rfc3339_utc(&expires_at).unwrap();
    let left = at - actlog_store::now_ns();
    assert!(left > 0 && left <= 2_000_000_000, "expires_at {expires_at} is not 2 s from now");
    assert_eq!(s.get("/v1/log", &token).status, 200);
    let listed = s.get("/v1/tokens", &admin).json();
    let brief = listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "brief").unwrap().clone();
    assert_eq!(brief["expires_at"], expires_at.as_str());
    std::thread::sleep(Duration::from_nanos((at - actlog_store::now_ns()).max(0) as u64 + 50_000_000));
    let r = s.get("/v1/log", &token);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.code(), "unauthenticated");
    assert!(r.text.contains("expired"), "{}", r.text);
    for bad in ["forever", "0s", "500ms", "200years"] {
        let r = s.post_json("/v1/tokens", &admin, &json!({"role": "query", "expires_in": bad}));
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.json()["error"]["items"][0]["path"], "/expires_in", "{bad}");
    }
    let r = s.post_json("/v1/tokens", &admin, &json!({"role": "query", "expires_in": 5}));
    assert_eq!(r.status, 422, "{}", r.text);
}

/// At least 30 bad requests, each with its status and code; afterwards the
/// tree size is unchanged and the server still healthy.
#[test]
fn bad_request_catalogue() {
    let limits = Limits {
        body_bytes_max: 256 << 10,
        decompressed_bytes_max: 1 << 20,
        batch_envelopes_max: 8,
        payload_bytes_max: 4096,
        envelope_bytes_max: 8192,
        ..Limits::default()
    };
    let s = Server::start_with(limits);
    let ingest = s.token("ingest").to_string();
    let good = envelope("good");
    let mut deep = String::new();
    for _ in 0..100 {
        deep.push('[');
    }
    for _ in 0..100 {
        deep.push(']');
    }
    let mut bomb_src = vec![b' '; 2 << 20];
    bomb_src[0] = b'[';
    let bomb = gzip(&bomb_src);
    let big_payload = {
        let mut e = event("big", "pdp-a");
        e["ext"] = json!({"blob": "x".repeat(5000)});
        sign_value(&e, &PRODUCER)
    };
    let huge_envelope = {
        let mut e = event("huge", "pdp-a");
        e["ext"] = json!({"blob": "x".repeat(7000)});
        sign_value(&e, &PRODUCER)
    };
    let nine_sigs = {
        let mut v: Value = serde_json::from_str(&envelope("nine")).unwrap();
        let one = v["signatures"][0].clone();
        v["signatures"] = Value::Array(vec![one; 9]);
        v.to_string()
    };
    let env_with = |payload_type: &str, payload: &str, sig: &str| {
        json!({"payloadType": payload_type, "payload": payload, "signatures": [{"keyid": "k", "sig": sig}]}).to_string()
    };
    let g: Value = serde_json::from_str(&good).unwrap();
    let (payload, sig) = (g["payload"].as_str().unwrap(), g["signatures"][0]["sig"].as_str().unwrap());
    let mut flipped = b64::decode(sig).unwrap();
    flipped[0] ^= 1;
    let event_with = |f: &dyn Fn(&mut Value)| {
        let mut e = event("mut", "pdp-a");
        f(&mut e);
        sign_value(&e, &PRODUCER)
    };
    let json_ct = [("content-type", "application/json")];
    struct Case {
        name: &'static str,
        token: Option<String>,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
        status: u16,
        code: &'static str,
        item_code: Option<&'static str>,
    }
    let case = |name, body: Vec<u8>, status, code, item_code| Case {
        name,
        token: Some(ingest.clone()),
        headers: json_ct.to_vec(),
        body,
        status,
        code,
        item_code,
    };
    let arr = |envs: &[String]| format!("[{}]", envs.join(",")).into_bytes();
    let mut cases = vec![
        case("malformed JSON", b"[{\"payloadType\":".to_vec(), 400, "malformed_json", None),
        case("not an array", b"{\"payloadType\":\"x\"}".to_vec(), 400, "malformed_json", None),
        case("empty body", Vec::new(), 400, "empty_body", None),
        case("empty array", b"[]".to_vec(), 400, "empty_batch", None),
        case("invalid UTF-8", b"[\"\xff\xfe\"]".to_vec(), 400, "malformed_json", None),
        case("over-deep JSON", deep.into_bytes(), 422, "json_too_deep", None),
        case(
            "oversized batch",
            arr(&(0..9).map(|i| envelope(&format!("b{i}"))).collect::<Vec<_>>()),
            413,
            "batch_too_large",
            None,
        ),
        case("oversized body", vec![b' '; 300 << 10], 413, "body_too_large", None),
        case("oversized payload", arr(&[big_payload]), 422, "invalid_batch", Some("payload_too_large")),
        case("oversized envelope", arr(&[huge_envelope]), 422, "invalid_batch", Some("envelope_too_large")),
        case("too many signatures", arr(&[nine_sigs]), 422, "invalid_batch", Some("too_many_signatures")),
        case(
            "reserved event id",
            arr(&[event_with(&|e| e["event_id"] = json!("actlog:ledger.key_added:3"))]),
            422,
            "invalid_batch",
            Some("reserved_event_id"),
        ),
        case("envelope not an object", b"[5]".to_vec(), 422, "invalid_batch", Some("malformed_envelope")),
        case(
            "bad base64",
            arr(&[env_with("application/vnd.actlog.event.v1+json", "%%%", sig)]),
            422,
            "invalid_batch",
            Some("bad_base64"),
        ),
        case(
            "wrong payloadType",
            arr(&[env_with("application/json", payload, sig)]),
            422,
            "invalid_batch",
            Some("wrong_payload_type"),
        ),
        case(
            "no signatures",
            arr(&[
                json!({"payloadType": "application/vnd.actlog.event.v1+json", "payload": payload, "signatures": []})
                    .to_string(),
            ]),
            422,
            "invalid_batch",
            Some("missing_signature"),
        ),
        case(
            "bad signature",
            arr(&[env_with("application/vnd.actlog.event.v1+json", payload, &b64::encode(&flipped))]),
            422,
            "invalid_batch",
            Some("bad_signature"),
        ),
        case(
            "unknown key",
            arr(&[sign_value(&event("u", "pdp-a"), &[0x99; 32])]),
            422,
            "invalid_batch",
            Some("bad_signature"),
        ),
        case(
            "other PDP's key",
            arr(&[sign_value(&event("o", "pdp-a"), &OTHER_PDP_KEY)]),
            422,
            "invalid_batch",
            Some("bad_signature"),
        ),
        case(
            "PDP with no key",
            arr(&[sign_value(&event("n", "pdp-z"), &PRODUCER)]),
            422,
            "invalid_batch",
            Some("unknown_key"),
        ),
        case(
            "missing event_id",
            arr(&[event_with(&|e| {
                e.as_object_mut().unwrap().remove("event_id");
            })]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "mistyped chain depth",
            arr(&[event_with(&|e| e["delegation"]["chain"][0]["depth"] = json!("1"))]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "missing actor id",
            arr(&[event_with(&|e| {
                e["delegation"]["actor"].as_object_mut().unwrap().remove("id");
            })]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "bad effect",
            arr(&[event_with(&|e| e["decision"]["effect"] = json!("perhaps"))]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "bad event_time",
            arr(&[event_with(&|e| e["event_time"] = json!("yesterday"))]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "payload not JSON",
            arr(&[Envelope::sign(b"not json".to_vec(), None, &PRODUCER).to_json()]),
            422,
            "invalid_batch",
            Some("schema_violation"),
        ),
        case(
            "reserved event type",
            arr(&[event_with(&|e| {
                e["event_type"] = json!("ledger.key_added");
                e["ledger"] = json!({});
            })]),
            422,
            "invalid_batch",
            Some("reserved_event_type"),
        ),
        case("gzip bomb", bomb, 413, "decompressed_too_large", None),
        case("malformed gzip", b"\x1f\x8b\x08garbage".to_vec(), 400, "malformed_gzip", None),
    ];
    for c in cases.iter_mut().filter(|c| c.name.contains("gzip")) {
        c.headers.push(("content-encoding", "gzip"));
    }
    let more = vec![
        Case {
            name: "wrong content type",
            token: Some(ingest.clone()),
            headers: vec![("content-type", "text/plain")],
            body: arr(std::slice::from_ref(&good)),
            status: 415,
            code: "unsupported_media_type",
            item_code: None,
        },
        Case {
            name: "no content type",
            token: Some(ingest.clone()),
            headers: vec![],
            body: arr(std::slice::from_ref(&good)),
            status: 415,
            code: "unsupported_media_type",
            item_code: None,
        },
        Case {
            name: "unknown encoding",
            token: Some(ingest.clone()),
            headers: vec![("content-type", "application/json"), ("content-encoding", "br")],
            body: arr(std::slice::from_ref(&good)),
            status: 415,
            code: "unsupported_encoding",
            item_code: None,
        },
        Case {
            name: "malformed NDJSON line",
            token: Some(ingest.clone()),
            headers: vec![("content-type", "application/x-ndjson")],
            body: format!("{good}\n{{oops\n").into_bytes(),
            status: 422,
            code: "invalid_batch",
            item_code: Some("malformed_envelope"),
        },
        Case {
            name: "missing token",
            token: None,
            headers: json_ct.to_vec(),
            body: arr(std::slice::from_ref(&good)),
            status: 401,
            code: "unauthenticated",
            item_code: None,
        },
        Case {
            name: "invalid token",
            token: Some("actlog_nope".into()),
            headers: json_ct.to_vec(),
            body: arr(std::slice::from_ref(&good)),
            status: 401,
            code: "unauthenticated",
            item_code: None,
        },
        Case {
            name: "revoked token",
            token: Some(s.token("revoked").into()),
            headers: json_ct.to_vec(),
            body: arr(std::slice::from_ref(&good)),
            status: 401,
            code: "unauthenticated",
            item_code: None,
        },
        Case {
            name: "wrong role",
            token: Some(s.token("query").into()),
            headers: json_ct.to_vec(),
            body: arr(std::slice::from_ref(&good)),
            status: 403,
            code: "forbidden",
            item_code: None,
        },
        Case {
            name: "PDP-bound token, other PDP",
            token: Some(s.token("ingest-a").into()),
            headers: json_ct.to_vec(),
            body: arr(&[sign_value(&event("bb", "pdp-b"), &OTHER_PDP_KEY)]),
            status: 422,
            code: "invalid_batch",
            item_code: Some("pdp_mismatch"),
        },
    ];
    cases.extend(more);
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let before = s.tree_size();
    for c in &cases {
        let r = s.call("POST", "/v1/events", c.token.as_deref(), &c.headers, Some(c.body.clone()));
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.text);
        assert_eq!(r.code(), c.code, "{}: {}", c.name, r.text);
        if let Some(item) = c.item_code {
            assert_eq!(r.json()["error"]["items"][0]["code"], item, "{}: {}", c.name, r.text);
        }
        assert!(r.request_id.is_some(), "{}: every error carries x-request-id", c.name);
        assert!(!r.text.contains("rocksdb") && !r.text.contains("/tmp/"), "{}: leaks internals: {}", c.name, r.text);
        assert_eq!(s.tree_size(), before, "{}: the tree changed", c.name);
    }
    // Query parameters and routes.
    let a = s.token("auditor").to_string();
    for (path, status, code) in [
        ("/v1/events/abc", 400, "invalid_parameter"),
        ("/v1/events/999999", 404, "not_found"),
        ("/v1/events/by-id/none", 404, "not_found"),
        ("/v1/proofs/inclusion", 400, "invalid_parameter"),
        ("/v1/proofs/inclusion?seq=-1", 400, "invalid_parameter"),
        ("/v1/proofs/inclusion?seq=5&tree_size=999999", 404, "tree_size_out_of_range"),
        ("/v1/proofs/consistency?old=3&new=2", 404, "seq_out_of_range"),
        ("/v1/no-such-route", 404, "not_found"),
    ] {
        let r = s.get(path, &a);
        assert_eq!((r.status, r.code().as_str()), (status, code), "{path}: {}", r.text);
    }
    // A path that does not decode (bad UTF-8 in a percent escape) is the
    // contract's 400 on every route with a path parameter, after the token
    // check: never axum's plain-text rejection.
    let admin = s.token("admin").to_string();
    let query = s.token("query").to_string();
    for (method, path, token) in [
        ("GET", "/v1/events/%FF", &a),
        ("GET", "/v1/events/by-id/%FF", &a),
        ("GET", "/v1/chains/%FF", &query),
        ("POST", "/v1/keys/%FF/revoke", &admin),
        ("POST", "/v1/tokens/%FF/revoke", &admin),
        ("GET", "/tlog/tile/0/%FF", &a),
    ] {
        let r = s.call(method, path, Some(token), &[], None);
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_parameter"), "{method} {path}: {}", r.text);
        assert!(r.request_id.is_some(), "{path}");
        let r = s.call(method, path, None, &[], None);
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "unauthenticated"),
            "{method} {path} without a token: {}",
            r.text
        );
    }
    let r = s.call("DELETE", "/v1/events", Some(&ingest), &[], None);
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"), "{}", r.text);
    assert!(r.request_id.is_some());
    let r = s.call("POST", "/v1/events?wait=forever", Some(&ingest), &json_ct, Some(arr(std::slice::from_ref(&good))));
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_parameter"));
    assert_eq!(s.tree_size(), before);
    assert_eq!(s.call("GET", "/healthz", None, &[], None).status, 200);
    let ok = s.post_events(&ingest, &[good]);
    assert_eq!(ok.status, 200, "still serving: {}", ok.text);
}

#[test]
fn overload_is_refused_with_retry_after() {
    let limits = Limits { ingest_requests_max: 1, ..Limits::default() };
    let s = Server::start_with(limits);
    let ingest = s.token("ingest").to_string();
    // Many concurrent large batches against one slot: some must be shed,
    // each with 429 and Retry-After, and every 200 must be stored.
    let results: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let s = &s;
                let ingest = &ingest;
                scope.spawn(move || {
                    let envs: Vec<String> = (0..400).map(|i| envelope(&format!("ov-{t}-{i}"))).collect();
                    s.post_events(ingest, &envs)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shed: Vec<_> = results.iter().filter(|r| r.status == 429).collect();
    assert!(!shed.is_empty(), "statuses: {:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in &shed {
        assert_eq!(r.code(), "overloaded");
        assert_eq!(r.retry_after.as_deref(), Some("1"));
    }
    for r in results.iter().filter(|r| r.status == 200) {
        let first = r.json()["receipts"][0]["event_id"].as_str().unwrap().to_string();
        assert_eq!(s.get(&format!("/v1/events/by-id/{first}"), s.token("query")).status, 200);
    }
}

/// OPA's decision-log plugin: a gzip JSON array of events with OPA's field
/// names, POSTed to `/v1/opa/logs` (and to a partition path). A re-sent chunk
/// stores nothing twice; a token bound to one OPA instance cannot speak for another.
#[test]
fn opa_decision_log_chunks_are_stored_once() {
    let s = Server::start();
    let ingest = s.token("ingest").to_string();
    let opa_event = |i: u32, instance: &str| {
        json!({
            "labels": {"id": instance, "version": "1.4.2"},
            "decision_id": format!("4ca636c1-55e4-417a-b1d8-{i:012}"),
            "bundles": {"authz": {"revision": "W3sibCI6InN5cy9jYXRhbG9nIiwicyI6NDA3MX1d"}},
            "path": "mcp/authz/allow",
            "input": {
                "subject": {"type": "user", "id": "alice", "properties": {"act": {"sub": "agent-7", "iss": "https://as.example", "sub_profile": "ai_agent"}}},
                "action": {"name": "tools/call"},
                "resource": {"type": "tool", "id": "book_flight"},
                "context": {"session_id": "sess-1", "task_id": "task-9"}
            },
            "result": !i.is_multiple_of(5),
            "requested_by": "10.0.4.7:51122",
            "timestamp": "2026-08-21T10:15:30.123456789Z",
            "metrics": {"timer_rego_query_eval_ns": 20512},
            "req_id": i,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "erased": ["/input/password"]
        })
    };
    let chunk: Vec<Value> = (0..25).map(|i| opa_event(i, "opa-eu-1")).collect();
    let body = gzip(serde_json::to_string(&chunk).unwrap().as_bytes());
    let headers = [("content-type", "application/json"), ("content-encoding", "gzip")];
    let before = s.tree_size();
    let r = s.call("POST", "/v1/opa/logs", Some(&ingest), &headers, Some(body.clone()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.tree_size(), before + 25);
    // OPA re-sends whole chunks after a timeout: nothing is stored twice.
    let r = s.call("POST", "/v1/opa/logs/partition-a", Some(&ingest), &headers, Some(body));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["receipts"].as_array().unwrap().iter().all(|x| x["duplicate"] == true));
    assert_eq!(s.tree_size(), before + 25);
    // The stored event is the mapped one, marked unsigned, with the raw OPA event kept.
    let e = s.get("/v1/events/by-id/opa:opa-eu-1:4ca636c1-55e4-417a-b1d8-000000000003", s.token("query")).json();
    assert_eq!(e["payload"]["producer_signature"], "none");
    assert_eq!(e["payload"]["source"]["format"], "opa.decision_log.v1");
    assert_eq!(e["payload"]["delegation"]["principal"]["id"], "alice");
    assert_eq!(e["payload"]["delegation"]["actor"]["id"], "agent-7");
    assert_eq!(e["payload"]["decision"]["effect"], "allow");
    assert_eq!(e["envelope"]["raw"]["decision_id"], "4ca636c1-55e4-417a-b1d8-000000000003");
    let denied = s.get("/v1/events/by-id/opa:opa-eu-1:4ca636c1-55e4-417a-b1d8-000000000005", s.token("query")).json();
    assert_eq!(denied["payload"]["decision"]["effect"], "deny");
    // A token bound to another PDP is refused for this instance's events.
    let bound = s.token("ingest-a").to_string();
    let other = gzip(serde_json::to_string(&vec![opa_event(100, "opa-eu-1")]).unwrap().as_bytes());
    let r = s.call("POST", "/v1/opa/logs", Some(&bound), &headers, Some(other));
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["items"][0]["code"], "pdp_mismatch");
    // Another OPA event under a stored (labels.id, decision_id) is a 409
    // naming it, never a silent "duplicate" that stores nothing.
    let mut forged = opa_event(3, "opa-eu-1");
    forged["result"] = json!(false);
    forged["input"]["resource"]["id"] = json!("wire_money");
    let r = s.call(
        "POST",
        "/v1/opa/logs",
        Some(&ingest),
        &headers,
        Some(gzip(serde_json::to_string(&vec![forged]).unwrap().as_bytes())),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error"]["items"][0]["code"], "conflict");
    assert_eq!(s.tree_size(), before + 25);
    // A malformed chunk is refused whole.
    let r = s.call("POST", "/v1/opa/logs", Some(&ingest), &headers, Some(gzip(b"[{\"labels\":{}}]")));
    assert_eq!(r.status, 422);
    assert_eq!(s.tree_size(), before + 25);
}

/// A Cerbos decision-log line as its `file` audit backend writes it (JSON
/// names of `cerbos.audit.v1.DecisionLogEntry`, from Cerbos's docs and protos).
fn cerbos_entry(call_id: &str, resources: &[(&str, &[(&str, &str)])]) -> Value {
    let inputs: Vec<Value> = resources
        .iter()
        .map(|(id, actions)| {
            json!({
                "requestId": format!("req-{call_id}"),
                "resource": {"kind": "tool", "id": id, "policyVersion": "default"},
                "principal": {"id": "alice", "roles": ["employee"]},
                "actions": actions.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
                "auxData": {"jwt": {"sub": "alice", "act": {"sub": "agent-7", "sub_profile": "ai_agent"}}}
            })
        })
        .collect();
    let outputs: Vec<Value> = resources
        .iter()
        .map(|(id, actions)| {
            let effects: serde_json::Map<String, Value> = actions
                .iter()
                .map(|(a, e)| (a.to_string(), json!({"effect": e, "policy": "resource.tool.vdefault"})))
                .collect();
            json!({"requestId": format!("req-{call_id}"), "resourceId": id, "actions": effects})
        })
        .collect();
    json!({
        "log.level": "info", "log.logger": "cerbos.audit", "log.kind": "decision",
        "callId": call_id, "timestamp": "2026-08-21T10:15:30.5Z",
        "peer": {"address": "10.0.4.7:51122", "userAgent": "grpc-go/1.60.1"},
        "checkResources": {"inputs": inputs, "outputs": outputs},
        "requestContext": {"annotations": {"task_id": "task-c1", "session_id": "sess-c1"}},
        "policySource": {"git": {"repositoryUrl": "https://git.example/policies", "branch": "main", "hash": "9f3c2e1"}}
    })
}

/// `POST /v1/cerbos/logs`: NDJSON from a shipper tailing Cerbos's file
/// backend (gzip or not) fans out to a decision per resource and action,
/// skips access-log lines, stores a re-sent batch once, and refuses bad
/// input with a named 4xx and nothing stored.
#[test]
fn cerbos_decision_logs_fan_out_and_are_stored_once() {
    let limits = Limits { batch_envelopes_max: 8, ..Limits::default() };
    let s = Server::start_with(limits);
    let ingest = s.token("ingest").to_string();
    let query = s.token("query").to_string();
    let lines = [
        cerbos_entry(
            "01HGJY9N4QAV1ZQ4GZ4YV3C8EN",
            &[("book_flight", &[("invoke", "EFFECT_ALLOW"), ("refund", "EFFECT_DENY")])],
        ),
        json!({"log.level": "info", "log.logger": "cerbos.audit", "log.kind": "access", "callId": "01HGJY9N4QAV1ZQ4GZ4YV3C8EN",
               "timestamp": "2026-08-21T10:15:30.4Z", "method": "/cerbos.svc.v1.CerbosService/CheckResources", "statusCode": 0}),
        cerbos_entry(
            "01HGJY9N4QAV1ZQ4GZ4YV3C8EP",
            &[("send_mail", &[("invoke", "EFFECT_ALLOW")]), ("wire_money", &[("invoke", "EFFECT_DENY")])],
        ),
    ];
    let ndjson: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let headers = [("content-type", "application/x-ndjson"), ("content-encoding", "gzip")];
    let before = s.tree_size();
    let r = s.call("POST", "/v1/cerbos/logs", Some(&ingest), &headers, Some(gzip(ndjson.as_bytes())));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["receipts"].as_array().unwrap().len(), 4, "2 + 2 decisions; the access line is skipped");
    assert_eq!(s.tree_size(), before + 4);
    // A shipper re-sends after a timeout: nothing is stored twice.
    let plain = [("content-type", "application/x-ndjson")];
    let r = s.call("POST", "/v1/cerbos/logs", Some(&ingest), &plain, Some(ndjson.clone().into_bytes()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["receipts"].as_array().unwrap().iter().all(|x| x["duplicate"] == true));
    assert_eq!(s.tree_size(), before + 4);
    // The stored events: mapped, unsigned, the raw line kept; SQL and the chain see them.
    let id = "cerbos:01HGJY9N4QAV1ZQ4GZ4YV3C8EN:0:refund";
    let e = s.get(&format!("/v1/events/by-id/{id}"), &query).json();
    assert_eq!(e["payload"]["decision"]["effect"], "deny", "{e}");
    assert_eq!(e["payload"]["delegation"]["principal"]["id"], "alice");
    assert_eq!(e["payload"]["delegation"]["actor"]["id"], "agent-7");
    assert_eq!(e["payload"]["policy"]["version"], "9f3c2e1");
    assert_eq!(e["payload"]["pdp"]["id"], "cerbos");
    assert_eq!(e["envelope"]["raw"]["callId"], "01HGJY9N4QAV1ZQ4GZ4YV3C8EN");
    assert_eq!(e["envelope"]["format"], "cerbos.decision_log.v1");
    let r = s.post_json(
        "/v1/sql",
        &query,
        &json!({"sql": "SELECT tool_name, action, effect, task_id, actor_id FROM events \
                        WHERE source_format = 'cerbos.decision_log.v1' ORDER BY event_id"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.json()["rows"].clone();
    assert_eq!(
        rows,
        json!([
            ["book_flight", "invoke", "allow", "task-c1", "agent-7"],
            ["book_flight", "refund", "deny", "task-c1", "agent-7"],
            ["send_mail", "invoke", "allow", "task-c1", "agent-7"],
            ["wire_money", "invoke", "deny", "task-c1", "agent-7"]
        ]),
        "{}",
        r.text
    );
    let chain = s.get(&format!("/v1/chains/{id}"), &query);
    assert_eq!(chain.status, 200, "{}", chain.text);
    assert!(chain.text.contains("agent-7") && chain.text.contains("alice"), "{}", chain.text);

    // Bad input: a named 4xx each, and nothing stored.
    let mut wide = cerbos_entry("01WIDE", &[("t", &[])]);
    wide["checkResources"]["inputs"][0]["actions"] = json!((0..9).map(|i| format!("a{i}")).collect::<Vec<_>>());
    let no_call_id = {
        let mut e = cerbos_entry("01NOID", &[("t", &[("invoke", "EFFECT_ALLOW")])]);
        e.as_object_mut().unwrap().remove("callId");
        e
    };
    let good = format!("{}\n", cerbos_entry("01GOOD", &[("t", &[("invoke", "EFFECT_ALLOW")])]));
    /// name, headers, body, status, code, item code.
    type Bad = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>, u16, &'static str, Option<&'static str>);
    let cases: Vec<Bad> = vec![
        (
            "malformed JSON line",
            plain.to_vec(),
            format!("{good}{{oops\n").into_bytes(),
            422,
            "invalid_batch",
            Some("malformed_cerbos_entry"),
        ),
        (
            "missing callId",
            plain.to_vec(),
            format!("{good}{no_call_id}\n").into_bytes(),
            422,
            "invalid_batch",
            Some("malformed_cerbos_entry"),
        ),
        (
            "fans out past batch_envelopes_max",
            plain.to_vec(),
            format!("{wide}\n").into_bytes(),
            413,
            "batch_too_large",
            None,
        ),
        (
            "wrong content type",
            vec![("content-type", "text/plain")],
            good.clone().into_bytes(),
            415,
            "unsupported_media_type",
            None,
        ),
        ("malformed gzip", headers.to_vec(), b"\x1f\x8b\x08garbage".to_vec(), 400, "malformed_gzip", None),
        ("empty body", plain.to_vec(), Vec::new(), 400, "empty_body", None),
    ];
    let before = s.tree_size();
    for (name, h, body, status, code, item) in cases {
        let r = s.call("POST", "/v1/cerbos/logs", Some(&ingest), &h, Some(body));
        assert_eq!((r.status, r.code().as_str()), (status, code), "{name}: {}", r.text);
        if let Some(item) = item {
            assert_eq!(r.json()["error"]["items"][0]["code"], item, "{name}: {}", r.text);
        }
        assert_eq!(s.tree_size(), before, "{name}: something was stored");
    }
    let r = s.call("POST", "/v1/cerbos/logs", Some(&query), &plain, Some(good.clone().into_bytes()));
    assert_eq!(r.status, 403, "a query token cannot ingest: {}", r.text);
    let r = s.call("POST", "/v1/cerbos/logs", Some(&ingest), &plain, Some(good.into_bytes()));
    assert_eq!(r.status, 200, "still serving: {}", r.text);
}

/// `POST /v1/authzen/decisions`: records built from the AuthZEN 1.0
/// examples (a single evaluation, the batch form with defaults, the MCP
/// profile's `tools/call`) map with no configuration; a re-sent batch adds
/// nothing; bad records get a named 4xx with nothing stored.
#[test]
fn authzen_records_map_without_configuration_and_are_stored_once() {
    let limits = Limits { batch_envelopes_max: 8, ..Limits::default() };
    let s = Server::start_with(limits);
    let ingest = s.token("ingest").to_string();
    let query = s.token("query").to_string();
    let single = json!({
        "request": {
            "subject": {"type": "user", "id": "alice@acmecorp.com",
                        "properties": {"act": {"sub": "agent-7", "sub_profile": "ai_agent",
                                               "act": {"sub": "orchestrator", "sub_profile": "ai_agent"}}}},
            "resource": {"type": "account", "id": "123"},
            "action": {"name": "can_read", "properties": {"method": "GET"}},
            "context": {"task_id": "t-az", "session_id": "s-az"}
        },
        "response": {"decision": true},
        "pdp": {"policy_decision_point": "https://pdp.mycompany.com"},
        "policy_version": "v42",
        "x_request_id": "bfe9eb29-ab87-4ca3-be83-a1d5d8305716",
        "time": "2026-08-21T10:15:30Z"
    });
    let batch = json!({
        "request": {
            "subject": {"type": "user", "id": "alice@acmecorp.com"},
            "action": {"name": "can_read"},
            "evaluations": [
                {"resource": {"type": "document", "id": "boxcarring.md"}},
                {"resource": {"type": "document", "id": "subject-search.md"}, "action": {"name": "can_edit"}}
            ]
        },
        "response": {"evaluations": [{"decision": true}, {"decision": false}]},
        "pdp": "https://pdp.mycompany.com",
        "x_request_id": "r-batch-1",
        "time": "2026-08-21T10:15:31Z"
    });
    let mcp = json!({
        "request": {
            "subject": {"type": "identity", "id": "alice@acmecorp.com"},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "book_flight"},
            "context": {"agent": "travel-assistant", "task_id": "t-mcp", "session_id": "s-mcp"}
        },
        "response": {"decision": false},
        "pdp": "https://pdp.mycompany.com",
        "x_request_id": "r-mcp-1",
        "time": "2026-08-21T10:15:32Z"
    });
    let body = serde_json::to_vec(&json!([single, batch, mcp])).unwrap();
    let headers = [("content-type", "application/json")];
    let before = s.tree_size();
    let r = s.call("POST", "/v1/authzen/decisions", Some(&ingest), &headers, Some(body.clone()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.tree_size(), before + 4, "1 + 2 + 1 decisions");
    let r = s.call("POST", "/v1/authzen/decisions", Some(&ingest), &headers, Some(body));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["receipts"].as_array().unwrap().iter().all(|x| x["duplicate"] == true), "{}", r.text);
    assert_eq!(s.tree_size(), before + 4);
    // One record as a plain JSON object is taken too (and is a duplicate here).
    let r = s.call("POST", "/v1/authzen/decisions", Some(&ingest), &headers, Some(mcp.to_string().into_bytes()));
    assert_eq!((r.status, r.json()["receipts"][0]["duplicate"].clone()), (200, json!(true)), "{}", r.text);

    let r = s.post_json(
        "/v1/sql",
        &query,
        &json!({"sql": "SELECT event_id, principal_id, actor_id, action, resource_id, effect, policy_version \
                        FROM events WHERE source_format = 'authzen.evaluation.v1' ORDER BY event_id"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["rows"],
        json!([
            [
                "authzen:https://pdp.mycompany.com:bfe9eb29-ab87-4ca3-be83-a1d5d8305716:0",
                "alice@acmecorp.com",
                "agent-7",
                "can_read",
                "123",
                "allow",
                "v42"
            ],
            [
                "authzen:https://pdp.mycompany.com:r-batch-1:0",
                null,
                "alice@acmecorp.com",
                "can_read",
                "boxcarring.md",
                "allow",
                "unversioned"
            ],
            [
                "authzen:https://pdp.mycompany.com:r-batch-1:1",
                null,
                "alice@acmecorp.com",
                "can_edit",
                "subject-search.md",
                "deny",
                "unversioned"
            ],
            [
                "authzen:https://pdp.mycompany.com:r-mcp-1:0",
                "alice@acmecorp.com",
                "travel-assistant",
                "tools/call",
                "book_flight",
                "deny",
                "unversioned"
            ]
        ]),
        "{}",
        r.text
    );
    // The chain of the delegated evaluation: alice → agent-7 → orchestrator.
    let chain =
        s.get("/v1/chains/authzen:https:%2F%2Fpdp.mycompany.com:bfe9eb29-ab87-4ca3-be83-a1d5d8305716:0", &query);
    assert_eq!(chain.status, 200, "{}", chain.text);
    assert!(chain.text.contains("orchestrator") && chain.text.contains("alice@acmecorp.com"), "{}", chain.text);

    let before = s.tree_size();
    let ok_req =
        json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "x"}, "resource": {"type": "r", "id": "1"}});
    let wide = json!({"request": {"subject": {"type": "user", "id": "a"}, "action": {"name": "x"},
                                  "evaluations": (0..9).map(|i| json!({"resource": {"type": "r", "id": i.to_string()}})).collect::<Vec<_>>()},
                      "response": {"evaluations": []}});
    for (name, ct, body, status, code, item) in [
        (
            "missing response",
            "application/json",
            json!([{"request": ok_req}]).to_string(),
            422,
            "invalid_batch",
            Some("/response"),
        ),
        (
            "decision not a boolean",
            "application/x-ndjson",
            json!({"request": ok_req, "response": {"decision": "yes"}}).to_string(),
            422,
            "invalid_batch",
            Some("/response"),
        ),
        ("fans out past batch_envelopes_max", "application/json", wide.to_string(), 413, "batch_too_large", None),
        (
            "wrong content type",
            "text/plain",
            json!([{"request": ok_req, "response": {"decision": true}}]).to_string(),
            415,
            "unsupported_media_type",
            None,
        ),
        ("malformed JSON", "application/json", "[{\"request\":".to_string(), 400, "malformed_json", None),
    ] {
        let r =
            s.call("POST", "/v1/authzen/decisions", Some(&ingest), &[("content-type", ct)], Some(body.into_bytes()));
        assert_eq!((r.status, r.code().as_str()), (status, code), "{name}: {}", r.text);
        if let Some(path) = item {
            assert_eq!(r.json()["error"]["items"][0]["path"], path, "{name}: {}", r.text);
        }
        assert_eq!(s.tree_size(), before, "{name}: something was stored");
    }
}

mod otlp_spans {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    pub fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    /// A span of trace `trace` (one byte repeated), id `id`, under `parent`.
    pub fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, attrs: &[(&str, &str)], error: bool) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            start_time_unix_nano: 1_787_307_330_000_000_000 + u64::from(id) * 1_000_000,
            end_time_unix_nano: 1_787_307_331_000_000_000,
            attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            status: error.then(|| Status { message: "tool failed".into(), code: 2 }),
            ..Default::default()
        }
    }

    pub fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "travel-agent-svc"), kv("user.id", "alice")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }
}

/// `POST /v1/otlp/v1/traces`: GenAI spans in OTLP protobuf (gzip) and
/// JSON. Guardrail spans become decisions, tool calls outcomes naming them
/// (in the same export, or stored from an earlier one); other spans are
/// skipped; a re-sent export adds nothing; bad exports get a named 4xx.
#[test]
fn otlp_genai_spans_become_decisions_and_outcomes() {
    use otlp_spans::{export, span};
    use prost::Message;
    let limits = Limits { batch_envelopes_max: 8, ..Limits::default() };
    let s = Server::start_with(limits);
    let ingest = s.token("ingest").to_string();
    let query = s.token("query").to_string();
    let agent = [
        ("gen_ai.operation.name", "invoke_agent"),
        ("gen_ai.agent.id", "agent-42"),
        ("gen_ai.agent.name", "Travel"),
        ("gen_ai.conversation.id", "conv-1"),
    ];
    let guard = |verdict: &'static str| {
        vec![
            ("gen_ai.operation.name", "apply_guardrail"),
            ("gen_ai.security.decision.type", verdict),
            ("gen_ai.security.target.type", "tool_call"),
            ("gen_ai.security.policy.id", "pol-7"),
            ("gen_ai.guardian.name", "policy-guard"),
            ("gen_ai.conversation.id", "conv-1"),
        ]
    };
    let tool = |name: &'static str, call: &'static str| {
        vec![
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", name),
            ("gen_ai.tool.call.id", call),
            ("gen_ai.conversation.id", "conv-1"),
        ]
    };
    let spans = vec![
        span(1, 1, None, "invoke_agent Travel", &agent, false),
        span(1, 3, Some(2), "apply_guardrail policy-guard", &guard("allow"), false),
        span(1, 2, Some(1), "execute_tool book_flight", &tool("book_flight", "call-1"), false),
        span(1, 5, Some(4), "apply_guardrail policy-guard", &guard("deny"), false),
        span(1, 4, Some(1), "execute_tool wire_money", &tool("wire_money", "call-2"), true),
        span(1, 6, Some(1), "chat gpt", &[("gen_ai.operation.name", "chat")], false),
    ];
    let req = export(spans);
    let proto = [("content-type", "application/x-protobuf"), ("content-encoding", "gzip")];
    let before = s.tree_size();
    let r = s.call("POST", "/v1/otlp/v1/traces", Some(&ingest), &proto, Some(gzip(&req.encode_to_vec())));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.tree_size(), before + 4, "two decisions, two outcomes; invoke_agent and chat are skipped");
    // The same export as OTLP/JSON: nothing new.
    let json_ct = [("content-type", "application/json")];
    let r = s.call("POST", "/v1/otlp/v1/traces", Some(&ingest), &json_ct, Some(serde_json::to_vec(&req).unwrap()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["receipts"].as_array().unwrap().iter().all(|x| x["duplicate"] == true), "{}", r.text);
    assert_eq!(s.tree_size(), before + 4);

    let trace = "01".repeat(16);
    let id = |span: u8| format!("otel:{trace}:{}", format!("{span:02x}").repeat(8));
    let r = s.post_json(
        "/v1/sql",
        &query,
        &json!({"sql": "SELECT event_id, event_type, principal_id, actor_id, resource_id, effect, outcome_status, \
                        decision_event_id, trace_id, session_id, policy_version FROM events \
                        WHERE source_format = 'otlp.genai.v1' ORDER BY seq"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["rows"],
        json!([
            [
                id(3),
                "authz.decision",
                "alice",
                "agent-42",
                "book_flight",
                "allow",
                null,
                null,
                trace,
                "conv-1",
                "pol-7"
            ],
            [id(5), "authz.decision", "alice", "agent-42", "wire_money", "deny", null, null, trace, "conv-1", "pol-7"],
            [
                id(2),
                "authz.outcome",
                "alice",
                "agent-42",
                "book_flight",
                null,
                "executed",
                id(3),
                trace,
                "conv-1",
                null
            ],
            [id(4), "authz.outcome", "alice", "agent-42", "wire_money", null, "failed", id(5), trace, "conv-1", null]
        ]),
        "{}",
        r.text
    );
    let chain = s.get(&format!("/v1/chains/{}", id(3)), &query);
    assert_eq!(chain.status, 200, "{}", chain.text);
    assert_eq!(chain.json()["outcomes"][0]["event_id"], id(2), "{}", chain.text);

    // The guardrail in one export, its tool call in the next: still linked.
    let g = span(2, 9, Some(8), "apply_guardrail", &guard("allow"), false);
    let t = span(2, 8, None, "execute_tool send_mail", &tool("send_mail", "call-3"), false);
    for part in [g, t] {
        let r = s.call(
            "POST",
            "/v1/otlp/v1/traces",
            Some(&ingest),
            &proto,
            Some(gzip(&export(vec![part]).encode_to_vec())),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let t2 = "02".repeat(16);
    let e = s.get(&format!("/v1/events/by-id/otel:{t2}:{}", "08".repeat(8)), &query).json();
    assert_eq!(e["payload"]["outcome"]["decision_event_id"], format!("otel:{t2}:{}", "09".repeat(8)), "{e}");

    // Bad exports: a named 4xx each, nothing stored.
    let before = s.tree_size();
    let mut no_trace = span(3, 1, None, "apply_guardrail", &guard("allow"), false);
    no_trace.trace_id.clear();
    let wide = export((0..9).map(|i| span(4, i + 1, None, "apply_guardrail", &guard("allow"), false)).collect());
    let plain = [("content-type", "application/x-protobuf")];
    for (name, h, body, status, code, path) in [
        ("malformed protobuf", plain.to_vec(), b"\x0a\xff\xff\xff".to_vec(), 400, "malformed_protobuf", None),
        ("malformed JSON", json_ct.to_vec(), b"{\"resourceSpans\": [".to_vec(), 400, "malformed_json", None),
        (
            "wrong content type",
            vec![("content-type", "text/plain")],
            req.encode_to_vec(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "missing trace id",
            plain.to_vec(),
            export(vec![no_trace]).encode_to_vec(),
            422,
            "invalid_batch",
            Some("/resourceSpans/0/scopeSpans/0/spans/0/traceId"),
        ),
        ("oversized batch", plain.to_vec(), wide.encode_to_vec(), 413, "batch_too_large", None),
    ] {
        let r = s.call("POST", "/v1/otlp/v1/traces", Some(&ingest), &h, Some(body));
        assert_eq!((r.status, r.code().as_str()), (status, code), "{name}: {}", r.text);
        if let Some(p) = path {
            assert_eq!(r.json()["error"]["items"][0]["path"], p, "{name}: {}", r.text);
        }
        assert_eq!(s.tree_size(), before, "{name}: something was stored");
    }
    let r = s.call("POST", "/v1/otlp/v1/traces", Some(&query), &plain, Some(req.encode_to_vec()));
    assert_eq!(r.status, 403, "a query token cannot ingest: {}", r.text);
}

/// `POST /v1/otlp/v1/logs`: a log record that carries the GenAI guardrail
/// attributes (and its trace and span ids) is a decision, as its span would
/// be; other records are skipped; a re-sent export adds nothing.
#[test]
fn otlp_genai_log_records_become_decisions() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use otlp_spans::kv;
    use prost::Message;
    let s = Server::start();
    let ingest = s.token("ingest").to_string();
    let query = s.token("query").to_string();
    let record = |span: u8, attrs: &[(&str, &str)]| LogRecord {
        time_unix_nano: 1_787_307_330_000_000_000,
        trace_id: vec![7; 16],
        span_id: vec![span; 8],
        event_name: "gen_ai.security.decision".into(),
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", "gw")], ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(
                        1,
                        &[
                            ("gen_ai.operation.name", "apply_guardrail"),
                            ("gen_ai.security.decision.type", "deny"),
                            ("gen_ai.security.target.type", "tool_call"),
                            ("gen_ai.security.target.id", "delete_repo"),
                            ("gen_ai.agent.id", "agent-log-1"),
                            ("gen_ai.conversation.id", "conv-log"),
                        ],
                    ),
                    record(2, &[("message", "an ordinary log line")]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let h = [("content-type", "application/x-protobuf")];
    let before = s.tree_size();
    for _ in 0..2 {
        let r = s.call("POST", "/v1/otlp/v1/logs", Some(&ingest), &h, Some(req.encode_to_vec()));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(s.tree_size(), before + 1, "one decision; the plain log line is skipped; the resend adds nothing");
    }
    let e = s.get(&format!("/v1/events/by-id/otel:{}:{}", "07".repeat(16), "01".repeat(8)), &query).json();
    assert_eq!(e["payload"]["decision"]["effect"], "deny", "{e}");
    assert_eq!(e["payload"]["request"]["tool"]["name"], "delete_repo", "{e}");
    assert_eq!(e["payload"]["delegation"]["actor"]["id"], "agent-log-1", "{e}");
    let metrics = s.get("/metrics", s.token("admin")).text;
    assert!(metrics.contains("actlog_otlp_items_skipped_total 2"), "one skipped record per export: {metrics}");
}

/// The console's page and its JSON endpoints (contract section 13): the page
/// needs no token and forbids everything but its own origin; search names
/// every id kind; a window is required and its filters are parameters, so a
/// quote in an id is data, not SQL.
#[test]
fn console_page_and_endpoints() {
    let s = Server::start();
    let page = s.call("GET", "/ui/", None, &[], None);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<script src=\"app.js\" defer></script>"), "{}", page.text);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (path, kind) in [("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let r = agent.get(s.url(path)).call().unwrap();
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; script-src 'self';") && !csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let redirect = agent.get(s.url("/ui")).config().max_redirects(0).build().call().unwrap();
    assert_eq!((redirect.status().as_u16(), redirect.headers()["location"].to_str().unwrap()), (301, "/ui/"));

    // Two decisions and an outcome of one task, and an event whose ids hold a quote.
    let mut d1 = event("c-d1", "pdp-a");
    d1["correlation"]["trace_id"] = json!("trace-1");
    d1["request"]["tool"] = json!({"name": "fs.read"});
    d1["request"]["resource"] = json!({"type": "tool", "id": "fs.read"});
    let mut d2 = event("c-d2", "pdp-a");
    d2["decision"]["effect"] = json!("deny");
    let mut o1 = event("c-o1", "pdp-a");
    o1["event_type"] = json!("authz.outcome");
    o1["outcome"] = json!({"decision_event_id": "c-missing", "status": "executed"});
    let mut q = event("c-quote", "pdp-a");
    q["delegation"]["principal"]["id"] = json!("o'brien");
    let r = s.post_events(s.token("ingest"), &[&d1, &d2, &o1, &q].map(|v| sign_value(v, &PRODUCER)));
    assert_eq!(r.status, 200, "{}", r.text);
    let seq_of = |id: &str| s.get(&format!("/v1/events/by-id/{id}"), s.token("query")).json()["seq"].as_u64().unwrap();

    let kinds = |q: &str| -> Vec<(String, u64)> {
        let r = s.get(&format!("/v1/search?q={}", urlencode(q)), s.token("auditor"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["kind"].as_str().unwrap().to_string(), c["events"].as_u64().unwrap()))
            .collect()
    };
    let k = |kind: &str, n: u64| (kind.to_string(), n);
    assert_eq!(kinds(&seq_of("c-d1").to_string()), vec![k("seq", 1)]);
    assert_eq!(kinds("c-d1"), vec![k("event_id", 1)]);
    assert_eq!(kinds("t"), vec![k("task_id", 4)]);
    assert_eq!(kinds("s"), vec![k("session_id", 4)]);
    assert_eq!(kinds("trace-1"), vec![k("trace_id", 1)]);
    assert_eq!(kinds("alice"), vec![k("principal", 3)]);
    assert_eq!(kinds("agent-1"), vec![k("agent", 4)]);
    assert_eq!(kinds("fs.read"), vec![k("tool", 1)]);
    assert_eq!(kinds("o'brien"), vec![k("principal", 1)], "a quote is data");
    assert_eq!(kinds("x' OR '1'='1"), vec![], "and cannot widen the query");
    let r = s.get("/v1/search?q=", s.token("query"));
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_parameter"));

    // A window of events: required, with named errors.
    let w = "from=2026-08-01T00:00:00Z&to=2026-09-01T00:00:00Z";
    for (query, names) in [
        ("to=2026-09-01T00:00:00Z", "from is required"),
        ("from=yesterday&to=2026-09-01T00:00:00Z", "from must be an RFC 3339"),
        ("from=2026-09-01T00:00:00Z&to=2026-08-01T00:00:00Z", "from must be before to"),
        (&format!("{w}&limit=501") as &str, "limit must be 1 to 500"),
        (&format!("{w}&before_seq=-1"), "before_seq"),
    ] {
        let r = s.get(&format!("/v1/events?{query}"), s.token("query"));
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_parameter"), "{query}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(names), "{query}: {}", r.text);
    }
    let r = s.get(&format!("/v1/events?{w}&effect=deny"), s.token("query")).json();
    assert_eq!(r["total"], 1);
    assert_eq!(r["rows"][0][12], "c-d2");
    let all = s.get(&format!("/v1/events?{w}&limit=2"), s.token("query")).json();
    assert_eq!((all["total"].as_u64(), all["rows"].as_array().unwrap().len()), (Some(4), 2));
    let older = all["rows"][1][0].as_u64().unwrap();
    let page2 = s.get(&format!("/v1/events?{w}&limit=2&before_seq={older}"), s.token("query")).json();
    assert!(page2["rows"].as_array().unwrap().iter().all(|r| r[0].as_u64().unwrap() < older));
    assert_eq!(all["facets"]["effect"], json!([["allow", 2], ["deny", 1]]), "the outcome has no effect");

    // The principal page finds the execution without a decision.
    let p = s.get(&format!("/v1/principals/alice?{w}"), s.token("query")).json();
    let orphans: Vec<&str> =
        p["executed_without_decision"].as_array().unwrap().iter().map(|r| r[5].as_str().unwrap()).collect();
    assert_eq!(orphans, ["c-o1"]);
    let a = s.get(&format!("/v1/agents/agent-1?{w}"), s.token("query")).json();
    assert_eq!(a["principals"][0][0], "alice");
    let r = s.get("/v1/agents/agent-1", s.token("query"));
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_parameter"));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
