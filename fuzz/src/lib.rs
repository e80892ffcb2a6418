//! The fuzz harnesses: one function per untrusted parser, called by the
//! libFuzzer binaries in `fuzz_targets/` and usable from a debugger or a
//! test. Each feeds arbitrary bytes through the same code path as the
//! server and checks what must hold whatever the input: no panic, refusals
//! carry a code, and what is accepted is consistent.

use actlog_core::body::{self, Shape, SplitLimits};
use actlog_core::ingest::{EnvelopeLimits, KeyLookup, ProducerKey, Submitter, check_envelopes};
use actlog_core::note::{self, Checkpoint, VerifierKey};
use actlog_core::sig::{PublicKey, public_key_of};

/// The producer seed of the fuzz registry: envelopes in the corpus are signed with it.
pub const PRODUCER_SEED: [u8; 32] = [0x33; 32];
/// The ledger seed behind the corpus's checkpoints.
pub const LEDGER_SEED: [u8; 32] = [0x44; 32];

struct OneKey(ProducerKey);

impl KeyLookup for OneKey {
    fn keys_for_pdp(&self, pdp_id: &str) -> Vec<ProducerKey> {
        if pdp_id == self.0.pdp_id { vec![self.0.clone()] } else { Vec::new() }
    }
}

fn registry() -> OneKey {
    let key = PublicKey::from_bytes(&public_key_of(&PRODUCER_SEED)).expect("valid key");
    OneKey(ProducerKey::new("pdp-1-key".into(), "pdp-1".into(), key))
}

/// NDJSON of DSSE envelopes through the batch check of ingest.
pub fn envelope(data: &[u8]) {
    let items = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>();
    let n = items.len();
    let results = check_envelopes(items, &registry(), &Submitter::default(), &EnvelopeLimits::default());
    assert_eq!(results.len(), n, "one result per envelope");
    for r in results {
        match r {
            Ok(c) => {
                assert_eq!(c.envelope_sha256, actlog_core::leaf::sha256(&c.envelope));
                assert!(!c.fields.event_id.is_empty());
            }
            Err(e) => assert!(!e.code.is_empty()),
        }
    }
}

/// One event payload through schema validation.
pub fn event(data: &[u8]) {
    if let Err(e) = actlog_core::event::validate(data) {
        assert!(!e.message.is_empty());
    }
}

/// An OPA decision-log chunk: split as the server does, then each event mapped.
pub fn opa_chunk(data: &[u8]) {
    let limits = SplitLimits { json_depth_max: 64, batch_items_max: 4096, empty_batch_ok: true };
    let Ok(raws) = body::split(data, Shape::Array, &limits, "OPA decision events") else { return };
    let mapping = actlog_core::opa::OpaMapping::default();
    let token = actlog_core::opa::OpaToken { name: "opa", sha256: [7; 32], pdp_id: None };
    for raw in raws {
        if let Ok(c) = actlog_core::opa::check(&raw, &mapping, &token, 256 << 10) {
            // What is stored must validate again as it would at verify.
            actlog_core::event::validate(&actlog_core::opa::map_decision(&raw, &mapping, None).expect("mapped once"))
                .expect("a mapped event validates");
            assert_eq!(c.envelope_sha256, actlog_core::leaf::sha256(&c.envelope));
        }
    }
}

/// A gzip body inflated under a limit, then split both ways.
pub fn gzip_body(data: &[u8]) {
    let limits = SplitLimits { json_depth_max: 64, batch_items_max: 4096, empty_batch_ok: false };
    match body::gunzip(data, 1 << 20) {
        Ok(plain) => {
            assert!(plain.len() <= 1 << 20, "the limit holds");
            for shape in [Shape::Array, Shape::Ndjson] {
                if let Ok(items) = body::split(&plain, shape, &limits, "envelopes") {
                    assert!(!items.is_empty() && items.len() <= 4096);
                }
            }
        }
        Err(e) => assert!(e.code == "malformed_gzip" || e.code == "decompressed_too_large"),
    }
    // The plain text too: the fuzzer finds JSON faster without gzip.
    for shape in [Shape::Array, Shape::Ndjson] {
        let _ = body::split(data, shape, &limits, "envelopes");
    }
}

/// C2SP verifier keys, signed notes and checkpoints.
pub fn note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = VerifierKey::parse(text);
    let key = VerifierKey::new("fuzz.example/log", PublicKey::from_bytes(&public_key_of(&LEDGER_SEED)).unwrap())
        .expect("valid name");
    if let Ok(body) = note::open_note(text, &key) {
        assert!(text.starts_with(body), "the body is a prefix of the note");
    }
    if let Ok(cp) = Checkpoint::open(text, &key) {
        // An opened checkpoint signs again to a note that opens to the same.
        let again = cp.sign(&LEDGER_SEED);
        assert_eq!(Checkpoint::open(&again, &key).expect("re-signed opens"), cp);
    }
}

/// The transparency parsers (contract §11), chosen by the first byte: tile
/// paths, tlog-witness `add-checkpoint` bodies (through actlog's own
/// witness checks against a fixed log key), tlog-policy files, cosigner
/// keys, and tlog-proof files (checked against a fixed policy).
pub fn tlog(data: &[u8]) {
    use actlog_core::tiles;
    use actlog_core::tlog_proof::{self, TlogProof};
    use actlog_core::witness::{AddCheckpoint, CosignerKey, Policy, split_note};
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 5 {
        0 => {
            if let Ok(t) = tiles::parse_tile_path(&text) {
                // One spelling per tile: what parses prints back the same
                // (Go's `8/` alias aside), and fits a tree of 2^64 leaves.
                let printed = t.path();
                assert!(printed == text || text.strip_prefix("8/") == Some(printed.as_str()), "{text:?} -> {printed}");
                assert!(t.leaves_needed().is_some());
                assert!(t.width >= 1 && u64::from(t.width) <= tiles::TILE_WIDTH);
            }
        }
        1 => {
            if let Ok(req) = AddCheckpoint::parse(rest) {
                assert!(req.proof.len() <= actlog_core::witness::PROOF_LINES_MAX);
                assert_eq!(AddCheckpoint::parse(req.to_body().as_bytes()).as_ref(), Ok(&req), "round trip");
                let _ = split_note(&req.note).expect("a parsed request holds a note");
                let _ = fuzz_policy().check(&req.note);
            }
        }
        2 => {
            if let Ok(p) = Policy::parse(&text) {
                assert!(!p.quorum.is_empty());
                let _ = p.quorum_met(&Default::default());
            }
        }
        3 => {
            if let Ok(k) = CosignerKey::parse(&text) {
                assert_eq!(CosignerKey::parse(&k.to_text()).as_ref(), Ok(&k));
            }
        }
        _ => {
            if let Ok(p) = TlogProof::parse(&text) {
                assert_eq!(TlogProof::parse(&p.to_text()).as_ref(), Ok(&p), "round trip");
                let _ = tlog_proof::check(&p, &fuzz_policy(), Some(rest));
            }
        }
    }
}

/// The policy the tlog target checks against: the fuzz ledger's key, no quorum.
fn fuzz_policy() -> actlog_core::witness::Policy {
    let key = PublicKey::from_bytes(&public_key_of(&LEDGER_SEED)).expect("valid key");
    let vk = VerifierKey::new("fuzz.example/log", key).expect("valid name");
    actlog_core::witness::Policy::parse(&format!("log {}\nquorum none\n", vk.to_text())).expect("valid policy")
}
