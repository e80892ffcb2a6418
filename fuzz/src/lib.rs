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
                assert_eq!(*c.envelope_sha256(), actlog_core::leaf::sha256(c.envelope()));
                assert!(!c.fields().event_id.is_empty());
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
            assert_eq!(*c.envelope_sha256(), actlog_core::leaf::sha256(c.envelope()));
        }
    }
}

/// Cerbos audit lines and AuthZEN records, split as NDJSON as the server
/// does, each mapped by both sources: a refusal has a code and a field, and
/// what maps is a pure function of the item and validates.
pub fn source_items(data: &[u8]) {
    let limits = SplitLimits { json_depth_max: 64, batch_items_max: 4096, empty_batch_ok: true };
    let Ok(raws) = body::split(data, Shape::Ndjson, &limits, "items") else { return };
    let token = actlog_core::opa::OpaToken { name: "src", sha256: [7; 32], pdp_id: None };
    let now = "2026-08-21T10:15:30Z";
    for raw in raws {
        match actlog_core::cerbos::check(&raw, &token, 256 << 10) {
            Ok(Some(items)) => {
                let again = actlog_core::cerbos::check(&raw, &token, 256 << 10).expect("maps twice").expect("decisions");
                assert_eq!(items.len(), again.len());
                assert!(items.len() <= actlog_core::cerbos::FANOUT_MAX);
                for (a, b) in items.iter().zip(&again) {
                    assert_eq!(a.payload_sha256(), b.payload_sha256(), "a pure function of the line");
                }
            }
            Ok(None) => {}
            Err(e) => assert!(!e.code.is_empty()),
        }
        match actlog_core::authzen::check(&raw, &token, 256 << 10, now) {
            Ok(items) => {
                assert!(!items.is_empty() && items.len() <= actlog_core::authzen::EVALUATIONS_MAX);
                let again = actlog_core::authzen::check(&raw, &token, 256 << 10, now).expect("maps twice");
                for (a, b) in items.iter().zip(&again) {
                    assert_eq!(a.payload_sha256(), b.payload_sha256(), "a pure function of the record");
                }
            }
            Err(e) => assert!(!e.code.is_empty()),
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
    let key = fuzz_policy_key();
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
    let vk = fuzz_policy_key();
    actlog_core::witness::Policy::parse(&format!("log {}\nquorum none\n", vk.to_text())).expect("valid policy")
}

/// Stack of the thread the SQL harness checks on: the SQL runtime's
/// (`actlog_query::budget::SQL_STACK_BYTES`), so a depth the server survives
/// is one the harness survives.
const SQL_STACK_BYTES: usize = 256 << 20;
/// The server's default `sql_depth_max`.
const SQL_DEPTH_MAX: usize = 1024;

/// The SQL front end: the text parsed as DataFusion's `DFParser` parses
/// every statement but its own four (sqlparser's generic dialect under
/// actlog's parse budget, recursion limit 50), then the depth limit and the
/// sandbox of every SQL surface.
/// Parsing, checking, printing and dropping happen on a thread with the SQL
/// runtime's stack.
pub fn sql(data: &[u8]) {
    use actlog_core::sql::sqlparser::ast::Statement;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.to_string();
    let checked = std::thread::Builder::new()
        .stack_size(SQL_STACK_BYTES)
        .spawn(move || {
            // The server's parse: the generic dialect under the parse budget.
            let Ok(statements) =
                actlog_core::sql::ParseBudget::for_text(&text, actlog_core::sql::SQL_PARSE_STEPS_PER_BYTE_DEFAULT)
                    .parse(&text)
            else {
                return;
            };
            for st in &statements {
                match actlog_core::sql::check_statement(st, SQL_DEPTH_MAX) {
                    Ok(()) => assert!(matches!(st, Statement::Query(_)), "only a query passes: {st}"),
                    Err(e) => {
                        assert!(["sql_refused", "sql_too_deep"].contains(&e.code), "{e}");
                        assert!(!e.message.is_empty());
                    }
                }
            }
        })
        .expect("the SQL thread starts");
    if let Err(p) = checked.join() {
        std::panic::resume_unwind(p);
    }
}

/// An export bundle's signed manifest, in three shapes chosen by the first
/// byte: `envelope NUL manifest` as found in a bundle; `statement NUL
/// manifest` with the statement signed here by the fuzz ledger key (so the
/// fuzzer gets past the signature); and `manifest` alone with a statement
/// derived from it and signed (so it gets past the digests too).
pub fn manifest(data: &[u8]) {
    use actlog_core::bundle::{self, MANIFEST_FILE, STATEMENT_PAYLOAD_TYPE};
    use actlog_core::dsse::Envelope;
    use sha2::Digest;
    let Some((&which, rest)) = data.split_first() else { return };
    let split = |r: &[u8]| {
        let at = r.iter().position(|b| *b == 0).unwrap_or(r.len());
        (r[..at].to_vec(), r.get(at + 1..).unwrap_or_default().to_vec())
    };
    let sign = |payload: Vec<u8>| {
        Envelope::sign_as(STATEMENT_PAYLOAD_TYPE, payload, None, &LEDGER_SEED).to_json().into_bytes()
    };
    let (signed, manifest) = match which % 3 {
        0 => split(rest),
        1 => {
            let (statement, manifest) = split(rest);
            (sign(statement), manifest)
        }
        _ => {
            let m: serde_json::Value = serde_json::from_slice(rest).unwrap_or_default();
            let mut subject = vec![serde_json::json!({"name": MANIFEST_FILE,
                "digest": {"sha256": hex::encode(sha2::Sha256::digest(rest))}})];
            for f in m["files"].as_array().into_iter().flatten() {
                subject.push(serde_json::json!({"name": f["path"], "digest": {"sha256": f["sha256"]}}));
            }
            let statement = serde_json::json!({"_type": bundle::STATEMENT_TYPE, "subject": subject,
                "predicateType": bundle::PREDICATE_TYPE,
                "predicate": {"origin": m["origin"], "tree_size": m["tree_size"], "root_hash": m["root_hash"]}});
            (sign(statement.to_string().into_bytes()), rest.to_vec())
        }
    };
    // The evidence report files, as actlog-export registers them.
    const REPORTS: &[bundle::Reports] = &[bundle::Reports {
        framework: "nist-csf-2.0",
        files: &["findings.json", "findings.ocsf.jsonl", "report.html"],
    }];
    let key = fuzz_policy_key();
    for expected in [None, Some(&key)] {
        let Ok(s) = bundle::open_manifest(&signed, &manifest, expected, REPORTS) else { continue };
        assert_eq!(s.manifest.origin, s.key.name);
        let listed = s.listed();
        assert!(s.subjects.keys().all(|k| listed.contains_key(k.as_str())), "every signed file is listed");
        for f in &s.manifest.files {
            assert_eq!(s.subjects.get(&f.path), Some(&f.sha256), "every listed file is signed");
            assert!(bundle::safe_path(&f.path));
        }
        if let Ok(cp) = s.checkpoint() {
            assert_eq!(cp.tree_size, s.manifest.tree_size);
        }
    }
}

/// The fuzz ledger's verifier key (the corpus's checkpoints are signed with it).
fn fuzz_policy_key() -> VerifierKey {
    VerifierKey::new("fuzz.example/log", PublicKey::from_bytes(&public_key_of(&LEDGER_SEED)).expect("valid key"))
        .expect("valid name")
}
