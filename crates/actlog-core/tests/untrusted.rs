//! Every parser of untrusted bytes answers with a value or an error, never a
//! panic: envelopes, events, leaves, notes, verifier keys and OPA events, on
//! random bytes and on valid inputs with random edits. (A stand-in for a
//! coverage-guided fuzzer, which needs a nightly toolchain this project does
//! not have.)

use actlog_core::dsse::Envelope;
use actlog_core::event;
use actlog_core::ingest::{EnvelopeLimits, KeyLookup, ProducerKey, Submitter, check_envelopes};
use actlog_core::leaf::Leaf;
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::opa::{OpaMapping, map_decision};
use actlog_core::sig::{PublicKey, public_key_of};
use proptest::prelude::*;

const SEED: [u8; 32] = [0x51; 32];

fn valid_event() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schema/examples/valid/01-authz-decision-agent-tool-allow.json"
    ))
    .unwrap()
}

fn valid_opa() -> Vec<u8> {
    serde_json::json!({
        "decision_id": "d", "labels": {"id": "opa-1"}, "timestamp": "2026-01-01T00:00:00Z",
        "path": "a/b", "result": {"allow": true},
        "input": {"subject": {"type": "user", "id": "u", "properties": {"act": {"sub": "a", "act": {"sub": "b"}}}},
                  "action": {"name": "x"}, "resource": {"type": "tool", "id": "t"}, "context": {"session_id": 1}}
    })
    .to_string()
    .into_bytes()
}

struct Keys;
impl KeyLookup for Keys {
    fn keys_for_pdp(&self, pdp_id: &str) -> Vec<ProducerKey> {
        vec![ProducerKey::new("k".into(), pdp_id.into(), PublicKey::from_bytes(&public_key_of(&SEED)).unwrap())]
    }
}

/// Random edits: flip, delete or insert bytes at random places.
fn edited(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8).prop_map(move |edits| {
        let mut b = base.clone();
        for (pos, byte, op) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let i = pos % b.len();
            match op {
                0 => b[i] ^= byte | 1,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, byte),
            }
        }
        b
    })
}

fn exercise(bytes: &[u8]) {
    let _ = Envelope::parse(bytes);
    let _ = event::validate(bytes);
    let _ = Leaf::decode(bytes);
    let _ = map_decision(bytes, &OpaMapping::default(), None);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = VerifierKey::parse(text);
        let vk = VerifierKey::new("o", PublicKey::from_bytes(&public_key_of(&SEED)).unwrap()).unwrap();
        let _ = Checkpoint::open(text, &vk);
    }
    let _ = check_envelopes(vec![bytes.to_vec()], &Keys, &Submitter::default(), &EnvelopeLimits::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn edited_events_and_envelopes(e in edited(valid_event())) {
        exercise(&e);
        let env = Envelope::sign(e, Some("k".into()), &SEED).to_json();
        exercise(env.as_bytes());
    }

    #[test]
    fn edited_signed_envelopes(e in edited(Envelope::sign(valid_event(), Some("k".into()), &SEED).to_json().into_bytes())) {
        exercise(&e);
    }

    #[test]
    fn edited_opa_events(e in edited(valid_opa())) {
        exercise(&e);
    }

    #[test]
    fn edited_checkpoints(e in edited(Checkpoint { origin: "o".into(), tree_size: 9, root: [1; 32] }.sign(&SEED).into_bytes())) {
        exercise(&e);
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    exercise(deep.as_bytes());
    let deep_obj = format!("{{\"spec_version\":{}1{}}}", "[".repeat(50_000), "]".repeat(50_000));
    assert!(event::validate(deep_obj.as_bytes()).is_err());
}
