//! The `actlog` binary as a user runs it: exit codes, what goes to stdout,
//! file modes, and refusal of bad input with nothing written.

// Signals to the servers these tests start (`libc::kill`) are the only unsafe code.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actlog_core::merkle;
use actlog_core::note::{Checkpoint, VerifierKey};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Env { _dir: dir, root }
    }
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actlog"));
        cmd.args(args).env("ACTLOG_DATA", self.data()).current_dir(&self.root);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    fn info(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["info", "--json"])).unwrap()
    }
    fn tree_size(&self) -> u64 {
        self.info()["tree_size"].as_u64().unwrap()
    }
    /// init + a producer key registered to `pdp`; returns the key file path.
    fn with_producer(&self, pdp: &str) -> PathBuf {
        self.ok(&["init"]);
        let key = self.root.join("pdp.key");
        let vk = self.ok(&["keygen", "--out", key.to_str().unwrap()]);
        self.ok(&["keys", "add", "pdp-key", "--public-key", vk.trim(), "--pdp", pdp]);
        key
    }
    fn sign(&self, key: &Path, events: &[String]) -> String {
        let out = self.run(&["sign", "--key", key.to_str().unwrap()], Some(events.join("\n").as_bytes()));
        assert!(out.status.success(), "sign failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.root.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

fn event(id: &str, pdp: &str) -> serde_json::Value {
    serde_json::json!({
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

fn events(prefix: &str, n: usize, pdp: &str) -> Vec<String> {
    (0..n).map(|i| event(&format!("{prefix}-{i}"), pdp).to_string()).collect()
}

/// Signs any payload with a key file, bypassing `actlog sign`'s validation.
fn sign_raw(key: &Path, payload: Vec<u8>) -> String {
    let text = std::fs::read_to_string(key).unwrap();
    let blob = text.trim().splitn(5, '+').nth(4).unwrap();
    let raw = actlog_core::b64::decode(blob).unwrap();
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    actlog_core::dsse::Envelope::sign(payload, Some("pdp-key".into()), &seed).to_json()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_prints_only_the_admin_token_and_keeps_the_ledger_key_private() {
    let env = Env::new();
    let out = env.run(&["init", "--origin", "example.com/audit"], None);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "stdout is the token alone: {stdout:?}");
    assert!(stdout.starts_with("actlog_") && stdout.trim().len() > 40);
    assert!(String::from_utf8_lossy(&out.stderr).contains("example.com/audit+"));
    assert_eq!(mode(&env.data().join("ledger.key")), 0o600);
    let again = env.run(&["init"], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let info = env.info();
    assert_eq!(info["origin"], "example.com/audit");
    // The admin token's creation is itself the first leaf.
    assert_eq!(info["tree_size"], 1);
    VerifierKey::parse(info["verifier_key"].as_str().unwrap()).unwrap();
}

#[test]
fn default_origin_is_derived_from_the_ledger_key() {
    let env = Env::new();
    env.ok(&["init"]);
    let info = env.info();
    let vk = VerifierKey::parse(info["verifier_key"].as_str().unwrap()).unwrap();
    let digest = actlog_core::leaf::sha256(vk.key.as_bytes());
    assert_eq!(info["origin"], format!("actlog.local/{}", &hex::encode(digest)[..8]));
}

#[test]
fn sign_import_verify_prove_round_trip() {
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    assert_eq!(mode(&key), 0o600);
    let signed = env.sign(&key, &events("e", 40, "pdp-a"));
    let file = env.write("batch.ndjson", &signed);
    let out = env.run(&["import", &file], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.tree_size(), 42);
    // Re-import is idempotent.
    env.ok(&["import", &file]);
    assert_eq!(env.tree_size(), 42);
    // Pinning the expected ledger key: the right one passes, another fails.
    let vk_text = env.info()["verifier_key"].as_str().unwrap().to_string();
    env.ok(&["verify", "--key", &vk_text]);
    let other = Env::new();
    other.ok(&["init"]);
    let other_vk = other.info()["verifier_key"].as_str().unwrap().to_string();
    let out = env.run(&["verify", "--key", &other_vk], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another ledger"));
    let verified = env.ok(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["tree_size"].as_u64(), v["signatures"].as_u64()),
        (Some(true), Some(42), Some(42))
    );
    // A proof printed by the CLI verifies against the signed checkpoint.
    let info = env.info();
    let vk = VerifierKey::parse(info["verifier_key"].as_str().unwrap()).unwrap();
    let cp = Checkpoint::open(info["checkpoint"].as_str().unwrap(), &vk).unwrap();
    assert_eq!(cp.tree_size, 42);
    let b64 = |s: &serde_json::Value| -> [u8; 32] {
        actlog_core::b64::decode(s.as_str().unwrap()).unwrap().try_into().unwrap()
    };
    for seq in [0u64, 1, 17, 41] {
        let p: serde_json::Value = serde_json::from_str(&env.ok(&["prove", "inclusion", &seq.to_string()])).unwrap();
        let hashes: Vec<[u8; 32]> = p["hashes"].as_array().unwrap().iter().map(b64).collect();
        assert!(merkle::verify_inclusion(&b64(&p["leaf_hash"]), seq, 42, &hashes, &cp.root));
    }
    let p: serde_json::Value = serde_json::from_str(&env.ok(&["prove", "consistency", "5", "42"])).unwrap();
    // `--json`, as the contract puts it on proving commands, prints the same.
    assert_eq!(env.ok(&["prove", "consistency", "5", "42", "--json"]), env.ok(&["prove", "consistency", "5", "42"]));
    assert_eq!(env.ok(&["prove", "inclusion", "3", "--json"]), env.ok(&["prove", "inclusion", "3"]));
    assert_eq!(p["old"], 5);
    assert!(!p["hashes"].as_array().unwrap().is_empty());
    let out = env.run(&["prove", "inclusion", "42"], None);
    assert_eq!(out.status.code(), Some(1), "seq beyond the tree is refused");
    // A checkpoint kept by an auditor is still contained later.
    let note = env.write("cp.note", info["checkpoint"].as_str().unwrap());
    env.ok(&["import", &env.write("more.ndjson", &env.sign(&key, &events("f", 5, "pdp-a")))]);
    env.ok(&["verify", "--checkpoint", &note]);
    // A forged one is not.
    let forged = info["checkpoint"].as_str().unwrap().replacen("\n42\n", "\n43\n", 1);
    let out = env.run(&["verify", "--checkpoint", &env.write("forged.note", &forged)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
}

/// Each kind of bad line: the import stops with its line number and code,
/// exits 1, and nothing from the file is written.
#[test]
fn import_refuses_a_file_with_one_bad_line_and_writes_nothing() {
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    let good: Vec<String> = env.sign(&key, &events("g", 3, "pdp-a")).lines().map(str::to_string).collect();
    let other_key = env.root.join("other.key");
    env.ok(&["keygen", "--out", other_key.to_str().unwrap()]);
    let unregistered = env.sign(&other_key, &[event("u1", "pdp-a").to_string()]).trim().to_string();
    let wrong_pdp = env.sign(&key, &[event("w1", "pdp-b").to_string()]).trim().to_string();
    let mut missing = event("m1", "pdp-a");
    missing["delegation"]["actor"].as_object_mut().unwrap().remove("id");
    // `actlog sign` refuses invalid events, so sign this one directly.
    let missing = sign_raw(&key, missing.to_string().into_bytes());
    let env_json = |payload_type: &str, payload: &str, sig: &str| {
        serde_json::json!({"payloadType": payload_type, "payload": payload, "signatures": [{"keyid": "pdp-key", "sig": sig}]})
            .to_string()
    };
    let first: serde_json::Value = serde_json::from_str(&good[0]).unwrap();
    let payload = first["payload"].as_str().unwrap();
    let sig = first["signatures"][0]["sig"].as_str().unwrap();
    let mut flipped = actlog_core::b64::decode(sig).unwrap();
    flipped[5] ^= 1;
    let mistyped_payload = {
        let mut e = event("t1", "pdp-a");
        e["delegation"]["chain"][0]["depth"] = serde_json::json!("one");
        actlog_core::b64::encode(e.to_string())
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", "{\"payloadType\":".to_string(), "malformed_envelope"),
        ("bad base64", env_json("application/vnd.actlog.event.v1+json", "***", sig), "bad_base64"),
        ("wrong payloadType", env_json("application/json", payload, sig), "wrong_payload_type"),
        (
            "bad signature",
            env_json("application/vnd.actlog.event.v1+json", payload, &actlog_core::b64::encode(&flipped)),
            "bad_signature",
        ),
        ("unregistered key", unregistered, "bad_signature"),
        ("PDP without a key", wrong_pdp, "unknown_key"),
        ("missing field", missing, "/delegation/actor/id"),
        (
            "mistyped field",
            env_json("application/vnd.actlog.event.v1+json", &mistyped_payload, sig),
            "/delegation/chain/0/depth",
        ),
    ];
    let before = env.tree_size();
    for (name, bad, expect) in cases {
        let text = format!("{}\n{}\n{}\n{}\n", good[0], good[1], bad, good[2]);
        let file = env.write("bad.ndjson", &text);
        let out = env.run(&["import", &file], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("line 3"), "{name}: {stderr}");
        assert!(stderr.contains(expect), "{name}: expected {expect} in {stderr}");
        assert_eq!(env.tree_size(), before, "{name}: something was written");
    }
    // A revoked key is refused too.
    env.ok(&["keys", "revoke", "pdp-key"]);
    let before = env.tree_size();
    let out = env.run(&["import", &env.write("after.ndjson", &good.join("\n"))], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_key"));
    assert_eq!(env.tree_size(), before);
    env.ok(&["verify"]);
}

/// `import` finds every conflict before it writes anything, even across
/// its batches: an id repeated in the file with another payload, and an id
/// already stored with another payload. A repeat with the same payload is a
/// duplicate, not a conflict.
#[test]
fn import_refuses_conflicts_before_writing_anything() {
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    env.ok(&["import", &env.write("first.ndjson", &env.sign(&key, &events("c", 3, "pdp-a")))]);
    let mut changed = event("c-1", "pdp-a");
    changed["decision"]["effect"] = serde_json::json!("deny");
    let mut changed_new = event("d-0", "pdp-a");
    changed_new["decision"]["effect"] = serde_json::json!("deny");
    let before = env.tree_size();
    for (name, lines, why) in [
        (
            "stored with another payload",
            vec![event("d-0", "pdp-a").to_string(), event("d-1", "pdp-a").to_string(), changed.to_string()],
            "line 3: conflict: event_id `c-1` is stored at seq",
        ),
        (
            "repeated in the file with another payload",
            vec![event("d-0", "pdp-a").to_string(), event("d-1", "pdp-a").to_string(), changed_new.to_string()],
            "line 3: conflict: event_id `d-0` repeats line 1 with a different payload",
        ),
    ] {
        // One event per batch: a check made batch by batch would have
        // written the first lines before finding the conflict.
        let file = env.write("conflict.ndjson", &env.sign(&key, &lines));
        let out = env.run(&["import", "--batch", "1", &file], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(stderr.contains("nothing from this file was written"), "{name}: {stderr}");
        assert_eq!(env.tree_size(), before, "{name}: something was written");
    }
    // The same payload again is a duplicate: stored once, not refused.
    let again = vec![event("c-1", "pdp-a").to_string(), event("d-0", "pdp-a").to_string()];
    env.ok(&["import", "--batch", "1", &env.write("again.ndjson", &env.sign(&key, &again))]);
    assert_eq!(env.tree_size(), before + 1);
    env.ok(&["verify"]);
}

#[test]
fn tokens_are_printed_once_and_listed_without_secrets() {
    let env = Env::new();
    env.ok(&["init"]);
    let token = env.ok(&["tokens", "create", "--role", "ingest", "--name", "pdp-a-ingest", "--pdp", "pdp-a"]);
    assert_eq!(token.lines().count(), 1);
    let list = env.ok(&["tokens", "list", "--json"]);
    assert!(!list.contains(token.trim()), "the secret is never listed");
    let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let bad_role = env.run(&["tokens", "create", "--role", "root"], None);
    assert_eq!(bad_role.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("role must be one of"));
    env.ok(&["tokens", "revoke", "pdp-a-ingest"]);
    let rows: serde_json::Value = serde_json::from_str(&env.ok(&["tokens", "list", "--json"])).unwrap();
    assert!(rows.as_array().unwrap().iter().any(|r| r["name"] == "pdp-a-ingest" && r["revoked_seq"].is_u64()));
    assert_eq!(env.run(&["tokens", "revoke", "pdp-a-ingest"], None).status.code(), Some(1));
    env.ok(&["verify"]);
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let env = Env::new();
    let out = env.run(&["info"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("actlog init"));
    assert_eq!(env.run(&["verify", "--no-such-flag"], None).status.code(), Some(2));
    env.ok(&["init"]);
    let out = env.run(&["keys", "add", "k", "--public-key", "not-a-key"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["import", "/no/such/file"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// `import --format opa`: OPA decision logs as OPA uploads them (a gzip JSON
/// array), attributed to a registered ingest token; a re-import stores
/// nothing twice, and `verify` checks the token-authenticated leaves.
#[test]
fn opa_decision_logs_import_and_verify() {
    use std::io::Write;
    let env = Env::new();
    env.ok(&["init"]);
    env.ok(&["tokens", "create", "--role", "ingest", "--name", "opa-fleet"]);
    let events: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            serde_json::json!({
                "labels": {"id": "opa-1", "version": "1.4.2"},
                "decision_id": format!("d-{i}"),
                "bundles": {"authz": {"revision": "r1"}},
                "path": "authz/allow",
                "input": {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                          "resource": {"type": "doc", "id": format!("doc-{i}")}},
                "result": i % 3 != 0,
                "timestamp": "2026-08-21T10:15:30.5Z"
            })
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(serde_json::to_string(&events).unwrap().as_bytes()).unwrap();
    let file = env.root.join("opa.json.gz");
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let file = file.to_str().unwrap();
    let before = env.tree_size();
    env.ok(&["import", "--format", "opa", "--token-name", "opa-fleet", file]);
    assert_eq!(env.tree_size(), before + 30);
    env.ok(&["import", "--format", "opa", "--token-name", "opa-fleet", file]);
    assert_eq!(env.tree_size(), before + 30, "a re-imported chunk stores nothing twice");
    // Another decision under a stored decision id, or two under one id in
    // the file, are conflicts found before anything of the file is written
    // (with one event per batch, a check made batch by batch would have
    // written the first line).
    let other = |id: &str, result: bool| {
        let mut e = events[1].clone();
        e["decision_id"] = id.into();
        e["result"] = result.into();
        e.to_string()
    };
    for (name, lines, why) in [
        ("stored under the id", [other("d-new", true), other("d-1", false)], "line 2: conflict: event_id"),
        (
            "twice in the file",
            [other("d-twice", true), other("d-twice", false)],
            "repeats line 1 with a different payload",
        ),
    ] {
        let f = env.write("opa-conflict.ndjson", &lines.join("\n"));
        let out = env.run(&["import", "--format", "opa", "--token-name", "opa-fleet", "--batch", "1", &f], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(why) && stderr.contains("nothing from this file was written"), "{name}: {stderr}");
        assert_eq!(env.tree_size(), before + 30, "{name}: something was written");
    }
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["verify", "--json"])).unwrap();
    assert_eq!(v["ok"], true);
    // Revoking the token does not invalidate what it already authenticated.
    env.ok(&["tokens", "revoke", "opa-fleet"]);
    env.ok(&["verify"]);
    let out = env.run(&["import", "--format", "opa", "--token-name", "opa-fleet", file], None);
    assert_eq!(out.status.code(), Some(2));

    // Without --token-name, the events are attributed to the token
    // `import`, created once, as a ledger record.
    let fresh: Vec<String> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["decision_id"] = format!("fresh-{}", e["decision_id"].as_str().unwrap()).into();
            e.to_string()
        })
        .collect();
    let f = env.write("opa-default.ndjson", &fresh.join("\n"));
    let before = env.tree_size();
    let out = env.run(&["import", "--format", "opa", &f], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token `import`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.tree_size(), before + 31, "one token record and 30 events");
    env.ok(&["import", "--format", "opa", &f]);
    assert_eq!(env.tree_size(), before + 31, "no second token, nothing stored twice");
    let tokens: serde_json::Value = serde_json::from_str(&env.ok(&["tokens", "list", "--json"])).unwrap();
    let import: Vec<_> = tokens.as_array().unwrap().iter().filter(|t| t["name"] == "import").collect();
    assert_eq!((import.len(), import[0]["role"].as_str()), (1, Some("ingest")), "{tokens}");
    let n = env.ok(&[
        "sql",
        "SELECT count(*) FROM events WHERE event_type = 'authz.decision' AND event_id LIKE '%fresh-%'",
        "--format",
        "csv",
    ]);
    assert_eq!(n.lines().nth(1), Some("30"), "{n}");
    env.ok(&["verify"]);
}

/// `import --format cerbos`: a Cerbos audit file (decision and access
/// lines) fans out to a decision per resource and action, a re-import
/// stores nothing twice, and a bad line is named with nothing written.
#[test]
fn cerbos_audit_files_import_and_verify() {
    let env = Env::new();
    env.ok(&["init"]);
    let entry = |call: &str, actions: &[(&str, &str)]| {
        let effects: serde_json::Map<String, serde_json::Value> = actions
            .iter()
            .map(|(a, e)| (a.to_string(), serde_json::json!({"effect": e, "policy": "resource.doc.vdefault"})))
            .collect();
        serde_json::json!({
            "log.kind": "decision", "callId": call, "timestamp": "2026-08-21T10:15:30Z",
            "checkResources": {
                "inputs": [{"requestId": "r", "resource": {"kind": "doc", "id": "d1"},
                            "principal": {"id": "bob", "roles": ["user"]},
                            "actions": actions.iter().map(|(a, _)| *a).collect::<Vec<_>>()}],
                "outputs": [{"resourceId": "d1", "actions": effects}]
            }
        })
        .to_string()
    };
    let access = r#"{"log.kind":"access","callId":"01A","timestamp":"2026-08-21T10:15:29Z","method":"/cerbos.svc.v1.CerbosService/CheckResources"}"#;
    let lines = [
        entry("01C1", &[("view", "EFFECT_ALLOW"), ("delete", "EFFECT_DENY")]),
        access.to_string(),
        entry("01C2", &[("view", "EFFECT_ALLOW")]),
    ];
    let file = env.write("audit.log", &lines.join("\n"));
    let before = env.tree_size();
    let out = env.run(&["import", "--format", "cerbos", &file], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped 1 Cerbos access-log entries"), "{stderr}");
    assert_eq!(env.tree_size(), before + 1 + 3, "the token record and three decisions");
    env.ok(&["import", "--format", "cerbos", &file]);
    assert_eq!(env.tree_size(), before + 4, "a re-import stores nothing twice");
    let csv = env.ok(&[
        "sql",
        "SELECT event_id, action, effect FROM events WHERE source_format = 'cerbos.decision_log.v1' ORDER BY event_id",
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv,
        "event_id,action,effect\ncerbos:01C1:0:delete,delete,deny\ncerbos:01C1:0:view,view,allow\ncerbos:01C2:0:view,view,allow\n"
    );
    let bad = env.write("bad.log", &format!("{}\n{{\"callId\":\"x\"}}\n", entry("01C3", &[("view", "EFFECT_ALLOW")])));
    let out = env.run(&["import", "--format", "cerbos", &bad], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("malformed_cerbos_entry") && stderr.contains("/timestamp"),
        "{stderr}"
    );
    assert_eq!(env.tree_size(), before + 4, "nothing from the bad file was written");
    let out = env.run(&["import", "--format", "cerbos", "--opa-mapping", &bad, &file], None);
    assert_eq!(out.status.code(), Some(2));
    env.ok(&["verify"]);
}

/// `actlog export` writes a bundle that `actlog verify --bundle` checks
/// offline, with the ledger key pinned; a changed file fails with exit 1
/// naming it, and bad flags are usage errors.
#[test]
fn export_writes_a_bundle_that_verifies_offline() {
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    let mut batch: Vec<String> = Vec::new();
    for (i, day) in ["2026-08-20", "2026-08-21", "2026-08-22"].iter().enumerate() {
        for mut e in events(&format!("d{i}-"), 10, "pdp-a")
            .into_iter()
            .map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap())
        {
            e["event_time"] = format!("{day}T10:15:30Z").into();
            batch.push(e.to_string());
        }
    }
    env.ok(&["import", &env.write("b.ndjson", &env.sign(&key, &batch))]);
    let vk = env.info()["verifier_key"].as_str().unwrap().to_string();

    let out = env.root.join("bundle");
    let s: serde_json::Value = serde_json::from_str(&env.ok(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--from",
        "2026-08-21",
        "--to",
        "2026-08-23",
        "--json",
    ]))
    .unwrap();
    assert_eq!(s["events"], 20, "two of the three days");
    assert!(out.join("events/date=2026-08-21").is_dir() && out.join("events/date=2026-08-22").is_dir());
    assert!(!out.join("events/date=2026-08-20").exists());
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["verify", "--bundle", out.to_str().unwrap(), "--key", &vk, "--json"])).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["events"].as_u64(), v["key_pinned"].as_bool()),
        (Some(true), Some(20), Some(true))
    );
    // The independent Python check (no shared code) agrees, and the
    // manifest of each data format matches schema/export/.
    independent_check(&out, &vk);
    for format in ["ndjson", "ocsf"] {
        let other = env.root.join(format!("bundle-{format}"));
        let dir = other.to_str().unwrap();
        env.ok(&["export", "--format", format, "--out", dir, "--from", "2026-08-21", "--to", "2026-08-23"]);
        independent_check(&other, &vk);
    }

    // The bundle needs nothing but itself: it verifies with the data dir gone.
    let moved = env.root.join("elsewhere");
    std::fs::rename(&out, &moved).unwrap();
    std::fs::rename(env.data(), env.root.join("data-gone")).unwrap();
    env.ok(&["verify", "--bundle", moved.to_str().unwrap(), "--key", &vk]);

    // Another ledger's key: refused.
    let other = Env::new();
    other.ok(&["init"]);
    let other_vk = other.info()["verifier_key"].as_str().unwrap().to_string();
    let r = env.run(&["verify", "--bundle", moved.to_str().unwrap(), "--key", &other_vk], None);
    assert_eq!(r.status.code(), Some(1));
    // A changed data file: exit 1, the file named.
    let f = moved.join("events/date=2026-08-22/part-00000.parquet");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&f, bytes).unwrap();
    let r = env.run(&["verify", "--bundle", moved.to_str().unwrap()], None);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("events/date=2026-08-22/part-00000.parquet") && err.contains("SHA-256"), "{err}");

    // Usage errors: exit 2 and say what is wrong.
    std::fs::rename(env.root.join("data-gone"), env.data()).unwrap();
    let r = env.run(&["export", "--out", "x", "--from", "yesterday"], None);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--from"));
    let r = env.run(&["export", "--out", "x", "--from", "2026-08-22", "--to", "2026-08-21"], None);
    assert_eq!(r.status.code(), Some(2));
    // A non-empty directory is never overwritten.
    let r = env.run(&["export", "--out", moved.to_str().unwrap()], None);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not empty"));
}

/// Runs `tests/bundle_check.py`, the independent verifier of bundles.
fn independent_check(bundle: &Path, key: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bundle_check.py");
    let out = Command::new("python3").arg(&script).arg(bundle).args(["--key", key]).output().unwrap();
    assert!(
        out.status.success(),
        "tests/bundle_check.py refused {}: {}{}",
        bundle.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `actlog evidence` writes a signed NIST CSF 2.0 bundle whose findings
/// follow the events, and which both verifiers accept.
#[test]
fn evidence_writes_a_signed_findings_bundle() {
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    let mut batch = events("ev", 6, "pdp-a");
    // One decision allowed although delegation verification failed.
    let mut bad: serde_json::Value = serde_json::from_str(&batch[0]).unwrap();
    bad["event_id"] = "ev-failed".into();
    bad["delegation"]["verification"]["status"] = "failed".into();
    bad["decision"]["effect"] = "allow".into();
    batch.push(bad.to_string());
    env.ok(&["import", &env.write("b.ndjson", &env.sign(&key, &batch))]);
    let vk = env.info()["verifier_key"].as_str().unwrap().to_string();
    let out = env.root.join("evidence");
    let s: serde_json::Value = serde_json::from_str(&env.ok(&[
        "evidence",
        "--framework",
        "nist-csf-2.0",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(s["findings"]["PR.AA-04"], "fail", "{s}");
    assert_eq!(s["findings"]["AU-9/AU-10"], "pass", "{s}");
    for f in ["report.html", "findings.json", "findings.ocsf.jsonl", "manifest.dsse.json", "leaves.parquet"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    env.ok(&["verify", "--bundle", out.to_str().unwrap(), "--key", &vk]);
    independent_check(&out, &vk);

    let r = env.run(&["evidence", "--framework", "iso-27001", "--out", "x"], None);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("nist-csf-2.0"));
}

/// `export` and `evidence` killed with SIGKILL at points through their run
/// never leave a directory that verifies as less than the whole bundle: the
/// signed statement is written last (and evidence signs as a plain export
/// until its reports are in).
#[test]
fn a_killed_export_never_leaves_a_partial_bundle_that_verifies() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let key = env.with_producer("pdp-a");
    env.ok(&["import", &env.write("b.ndjson", &env.sign(&key, &events("k", 3000, "pdp-a")))]);
    let total = env.tree_size();
    let (mut killed, mut refused) = (0, 0);
    for round in 0..10u64 {
        let out = env.root.join(format!("kill-{round}"));
        let cmd: &[&str] = if round % 2 == 0 {
            &["export", "--out", out.to_str().unwrap()]
        } else {
            &["evidence", "--framework", "nist-csf-2.0", "--out", out.to_str().unwrap()]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_actlog"))
            .args(cmd)
            .env("ACTLOG_DATA", env.data())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the run (a debug export of 3,000 events takes
        // a few hundred milliseconds; evidence longer).
        std::thread::sleep(std::time::Duration::from_millis(40 + (round * 97) % 500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        if status.signal() == Some(libc::SIGKILL) {
            killed += 1;
        }
        let v = env.run(&["verify", "--bundle", out.to_str().unwrap(), "--json"], None);
        if v.status.success() {
            let r: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
            assert_eq!(r["events"].as_u64(), Some(total), "a bundle that verifies holds every event");
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
            if m["framework"].is_string() {
                assert!(out.join("report.html").is_file() && out.join("findings.json").is_file());
            }
        } else {
            // Killed before the directory was made: a usage error (exit 2), nothing to verify.
            let want = if out.is_dir() { 1 } else { 2 };
            assert_eq!(v.status.code(), Some(want), "{}", String::from_utf8_lossy(&v.stderr));
            refused += 1;
        }
    }
    assert!(killed >= 3 && refused >= 3, "the kills hit runs in progress: {killed} killed, {refused} refused");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A data directory written by the previous storage format (format 1, every
/// Merkle node a key; `tests/fixtures/format1`, made by actlog at commit
/// cb429c1 with its answers in `format1.expected.json`) is refused with the
/// command to run; `actlog migrate` turns it into tiles one way; it then
/// verifies and gives the very same checkpoint, proofs and SQL answers.
#[test]
fn a_format_1_data_dir_migrates_to_tiles_and_answers_as_before() {
    let env = Env::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&fixtures.join("format1"), &env.data());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("format1.expected.json")).unwrap()).unwrap();

    let out = env.run(&["info"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("format version 1") && err.contains("actlog migrate"), "{err}");

    let out = env.ok(&["migrate"]);
    assert!(out.contains("from storage format 1 to 2: 552 leaves"), "{out}");
    let out = env.ok(&["verify"]);
    assert!(out.starts_with("ok: 552 leaves"), "{out}");
    let info = env.info();
    for k in ["tree_size", "checkpoint", "verifier_key"] {
        assert_eq!(info[k], expected["info"][k], "{k}");
    }
    for (at, want) in expected["inclusion"].as_object().unwrap() {
        let (seq, size) = at.split_once('@').unwrap();
        let got: serde_json::Value =
            serde_json::from_str(&env.ok(&["prove", "inclusion", seq, "--tree-size", size])).unwrap();
        assert_eq!(&got, want, "inclusion {at}");
    }
    for (range, want) in expected["consistency"].as_object().unwrap() {
        let (old, new) = range.split_once('-').unwrap();
        let got: serde_json::Value = serde_json::from_str(&env.ok(&["prove", "consistency", old, new])).unwrap();
        assert_eq!(&got, want, "consistency {range}");
    }
    let sql = env.ok(&[
        "sql",
        "--format",
        "csv",
        "SELECT effect, count(*) AS n, min(seq) AS first, max(seq) AS last FROM events GROUP BY effect ORDER BY effect",
    ]);
    assert_eq!(sql, expected["sql"].as_str().unwrap());
    // Once is enough; a second run changes nothing.
    assert!(env.ok(&["migrate"]).contains("already at storage format 2"));
    // The `nodes` column family is gone, and appends go on as tiles.
    let key = env.root.join("pdp.key");
    let vk = env.ok(&["keygen", "--out", key.to_str().unwrap()]);
    env.ok(&["keys", "add", "more", "--public-key", vk.trim(), "--pdp", "fx-more"]);
    let signed = env.sign(&key, &events("after-migrate", 300, "fx-more"));
    let file = env.write("more.ndjson", &signed);
    env.ok(&["import", &file]);
    assert!(env.ok(&["verify"]).starts_with("ok: 853 leaves"));
    // 853 leaves: three full level-0 tiles and an open one, and the open
    // level-1 tile; no other Merkle keys.
    let info: serde_json::Value = serde_json::from_str(&env.ok(&["info", "--json", "--storage"])).unwrap();
    assert_eq!(info["storage"]["tiles"]["keys"], 5, "{info}");
    assert_eq!(info["storage"]["tiles"]["bytes"], 5 * 9 + 853 * 32 + 3 * 32, "{info}");
    assert!(info["storage"].get("nodes").is_none(), "{info}");
}
