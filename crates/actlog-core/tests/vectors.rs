//! Test vectors: fixed keys → envelope → PAE → signature → leaf bytes → leaf
//! hash → chain hash → Merkle root → proofs → checkpoint text.
//!
//! The vectors are built here from fixed inputs and compared with
//! `schema/vectors/v1.json`, which `tests/vectors_check.py` recomputes
//! independently in Python. Regenerate with `ACTLOG_BLESS=1 cargo test -p actlog-core --test vectors`
//! only when a format changes on purpose (and bump its version). The `payloads`
//! section (the ledger's own records and mapped OPA events) sits outside the tree.

use actlog_core::dsse::{Envelope, pae};
use actlog_core::leaf::{Leaf, LeafKind, chain_hash, key_fingerprint, sha256};
use actlog_core::merkle::{self, MemTree};
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::sig::{self, PublicKey};
use actlog_core::{b64, event};
use serde_json::json;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/vectors/v1.json");

fn event_json(i: u64) -> String {
    // Compact, fixed member order: these are the exact payload bytes.
    format!(
        concat!(
            r#"{{"spec_version":"1","event_type":"authz.decision","event_id":"vec-{i:04}","#,
            r#""event_time":"2026-08-21T10:15:{s:02}.123456789Z","pdp":{{"id":"pdp-vectors"}},"#,
            r#""delegation":{{"principal":{{"type":"user","id":"alice","iss":"https://idp.example"}},"#,
            r#""actor":{{"id":"agent-{i}","sub_profile":"ai_agent"}},"#,
            r#""chain":[{{"depth":1,"sub":"agent-{i}","sub_profile":"ai_agent"}}],"#,
            r#""verification":{{"status":"verified"}}}},"#,
            r#""correlation":{{"session_id":"sess-1","task_id":"task-{i}"}},"#,
            r#""policy":{{"version":"v{i}"}},"#,
            r#""request":{{"subject":{{"type":"user","id":"alice"}},"action":{{"name":"tools/call"}},"#,
            r#""resource":{{"type":"tool","id":"search"}},"tool":{{"name":"search"}}}},"#,
            r#""decision":{{"effect":"{effect}"}}}}"#
        ),
        i = i,
        s = i % 60,
        effect = if i.is_multiple_of(2) { "allow" } else { "deny" }
    )
}

fn build() -> serde_json::Value {
    let ledger_seed = [0x11u8; 32];
    let producer_seed = [0x22u8; 32];
    let ledger_pk = sig::public_key_of(&ledger_seed);
    let producer_pk = sig::public_key_of(&producer_seed);
    let origin = "actlog.test/vectors";
    let vk = VerifierKey::new(origin, PublicKey::from_bytes(&ledger_pk).unwrap()).unwrap();
    let mut tree = MemTree::new();
    let mut chain = [0u8; 32];
    let mut entries = Vec::new();
    for seq in 0..7u64 {
        let payload = event_json(seq);
        event::validate(payload.as_bytes()).expect("vector events are valid");
        let env = Envelope::sign(payload.clone().into_bytes(), Some("pdp-vectors-key".into()), &producer_seed);
        let envelope = env.to_json();
        let pae_bytes = pae(&env.payload_type, &env.payload);
        let leaf = Leaf {
            kind: LeafKind::ProducerSigned,
            seq,
            received_at_unix_nanos: 1_787_307_330_000_000_000 + seq * 1_000_000,
            envelope_sha256: sha256(envelope.as_bytes()),
            payload_sha256: sha256(payload.as_bytes()),
            producer_key_id: key_fingerprint(&producer_pk),
            prev_chain_hash: chain,
            event_id: format!("vec-{seq:04}"),
        };
        let leaf_bytes = leaf.encode();
        chain = chain_hash(&chain, &leaf_bytes);
        let lh = merkle::leaf_hash(&leaf_bytes);
        tree.push(lh);
        entries.push(json!({
            "seq": seq,
            "kind": 1,
            "received_at_unix_nanos": leaf.received_at_unix_nanos,
            "event_id": leaf.event_id,
            "payload": payload,
            "payload_type": env.payload_type,
            "pae_hex": hex::encode(&pae_bytes),
            "signature_b64": b64::encode(&env.signatures[0].sig),
            "envelope": envelope,
            "envelope_sha256_hex": hex::encode(leaf.envelope_sha256),
            "payload_sha256_hex": hex::encode(leaf.payload_sha256),
            "producer_key_id_hex": hex::encode(leaf.producer_key_id),
            "prev_chain_hash_hex": hex::encode(leaf.prev_chain_hash),
            "leaf_hex": hex::encode(&leaf_bytes),
            "leaf_hash_hex": hex::encode(lh),
            "chain_hash_hex": hex::encode(chain),
        }));
    }
    let size = tree.size();
    let root = tree.root();
    let cp = Checkpoint { origin: origin.into(), tree_size: size, root };
    let note = cp.sign(&ledger_seed);
    let roots: Vec<_> =
        (1..=size).map(|n| json!({"tree_size": n, "root_hex": hex::encode(merkle::root(&tree, n).unwrap())})).collect();
    let inclusion: Vec<_> = [(0u64, 7u64), (2, 5), (6, 7), (4, 6)]
        .iter()
        .map(|&(i, n)| {
            let p = merkle::inclusion_proof(&tree, i, n).unwrap();
            json!({"seq": i, "tree_size": n, "hashes_hex": p.iter().map(hex::encode).collect::<Vec<_>>()})
        })
        .collect();
    let consistency: Vec<_> = [(1u64, 7u64), (3, 7), (4, 7), (2, 5), (6, 7)]
        .iter()
        .map(|&(a, b)| {
            let p = merkle::consistency_proof(&tree, a, b).unwrap();
            json!({"old": a, "new": b, "hashes_hex": p.iter().map(hex::encode).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        "description": "actlog format v1 test vectors; see schema/leaf.md and docs/formats.md",
        "ledger": {
            "seed_hex": hex::encode(ledger_seed),
            "public_key_hex": hex::encode(ledger_pk),
            "origin": origin,
            "verifier_key": vk.to_text(),
            "key_id_hex": hex::encode(vk.key_id()),
        },
        "producer": {
            "seed_hex": hex::encode(producer_seed),
            "public_key_hex": hex::encode(producer_pk),
            "key_id_hex": hex::encode(key_fingerprint(&producer_pk)),
        },
        "entries": entries,
        "merkle": {"roots": roots, "inclusion": inclusion, "consistency": consistency},
        "checkpoint": {"tree_size": size, "root_hex": hex::encode(root), "body": cp.body(), "note": note},
        "payloads": payloads(&ledger_seed, origin),
    })
}

/// The payloads the ledger writes itself, outside the tree above: a
/// `ledger.key_added` record as the writer builds it (RFC 8785 canonical,
/// signed by the ledger key), and an OPA decision mapped to an event (its
/// canonical payload and the stored record that embeds the raw decision).
fn payloads(ledger_seed: &[u8; 32], origin: &str) -> serde_json::Value {
    let producer_pk = sig::public_key_of(&[0x22u8; 32]);
    let record = actlog_core::canonical::to_vec(&json!({
        "spec_version": "1",
        "event_type": "ledger.key_added",
        "event_id": "actlog:ledger.key_added:0",
        "event_time": "2026-08-21T10:15:30Z",
        "pdp": {"id": "actlog"},
        "source": {"format": "actlog.ledger.v1"},
        "ledger": {
            "name": "pdp-vectors-key", "pdp_id": "pdp-vectors",
            "public_key": b64::encode(producer_pk),
            "key_fingerprint": hex::encode(key_fingerprint(&producer_pk)),
        },
    }));
    let ledger = actlog_core::ingest::Checked::ledger_record(record.clone(), origin, ledger_seed).unwrap();
    let raw = concat!(
        r#"{"decision_id":"4ca636c1-55e4-417a-b1d8-4aceb67960d1","labels":{"id":"opa-1","version":"1.13.1"},"#,
        r#""bundles":{"authz":{"revision":"v42"}},"path":"authz/allow","timestamp":"2026-08-21T12:15:30.5+02:00","#,
        r#""input":{"subject":{"type":"agent","id":"agent-7"},"action":{"name":"invoke"},"#,
        r#""resource":{"type":"tool","id":"search"},"context":{"act":{"sub":"agent-7","act":{"sub":"planner"}}}},"#,
        r#""result":{"allow":true,"score":1.0},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","req_id":7}"#
    );
    let token = actlog_core::opa::OpaToken { name: "opa-fleet", sha256: sha256(b"vectors-token"), pdp_id: None };
    let opa =
        actlog_core::opa::check(raw.as_bytes(), &actlog_core::opa::OpaMapping::default(), &token, 1 << 16).unwrap();
    let mapped =
        actlog_core::opa::map_decision(raw.as_bytes(), &actlog_core::opa::OpaMapping::default(), None).unwrap();
    json!({
        "ledger_record": {
            "payload": String::from_utf8(record).unwrap(),
            "payload_sha256_hex": hex::encode(ledger.payload_sha256()),
            "envelope": String::from_utf8(ledger.envelope().to_vec()).unwrap(),
            "envelope_sha256_hex": hex::encode(ledger.envelope_sha256()),
            "producer_key_id_hex": hex::encode(ledger.producer_key_id()),
        },
        "opa_mapped": {
            "raw": raw,
            "token_sha256_hex": hex::encode(sha256(b"vectors-token")),
            "payload": String::from_utf8(mapped).unwrap(),
            "payload_sha256_hex": hex::encode(opa.payload_sha256()),
            "record": String::from_utf8(opa.envelope().to_vec()).unwrap(),
            "record_sha256_hex": hex::encode(opa.envelope_sha256()),
        },
    })
}

#[test]
fn vectors_match_the_committed_file() {
    let built = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    if std::env::var_os("ACTLOG_BLESS").is_some() {
        std::fs::write(VECTORS, &built).unwrap();
    }
    let stored = std::fs::read_to_string(VECTORS).expect("schema/vectors/v1.json exists (bless it once)");
    assert_eq!(stored, built, "format drift: the code no longer produces schema/vectors/v1.json");
}

#[test]
fn committed_vectors_verify() {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let vk = VerifierKey::parse(v["ledger"]["verifier_key"].as_str().unwrap()).unwrap();
    let cp = Checkpoint::open(v["checkpoint"]["note"].as_str().unwrap(), &vk).unwrap();
    assert_eq!(hex::encode(cp.root), v["checkpoint"]["root_hex"].as_str().unwrap());
    let pk: [u8; 32] = hex::decode(v["producer"]["public_key_hex"].as_str().unwrap()).unwrap().try_into().unwrap();
    let pk = PublicKey::from_bytes(&pk).unwrap();
    for e in v["entries"].as_array().unwrap() {
        let env = Envelope::parse(e["envelope"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(sig::verify(&pk, &env.pae(), &env.signatures[0].sig), Ok(()));
        let leaf = Leaf::decode(&hex::decode(e["leaf_hex"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(leaf.seq, e["seq"].as_u64().unwrap());
    }
}
