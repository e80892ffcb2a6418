//! The ledger's own records and the checks `verify` makes on each leaf that
//! need no storage: the key and token records, the registry rebuilt from
//! ledger-signed leaves ([`Rebuilt`]), and the per-event checks
//! ([`check_chunk`]). `actlog verify` on a data directory and `verify
//! --bundle` on an export both call these, so a ledger and its exports are
//! checked by one rule; running them in parallel is the caller's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::dsse::Envelope;
use crate::event;
use crate::leaf::{Leaf, LeafKind, key_fingerprint, sha256};
use crate::role::Role;
use crate::sig::{self, PublicKey};
use crate::{Hash, b64};

/// The longest name of a key or token, in bytes.
pub const RECORD_NAME_BYTES_MAX: usize = 128;
/// The longest `pdp_id` of a key or token, in bytes.
pub const RECORD_PDP_ID_BYTES_MAX: usize = 256;

/// The name of the first admin token, the one `init` prints.
pub const FIRST_ADMIN_TOKEN_NAME: &str = "admin";

/// Why a key or token record is refused: a stable code and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRefusal {
    /// `invalid_name`, `invalid_pdp_id` or `invalid_role`.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for RecordRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A key's or token's name: 1 to [`RECORD_NAME_BYTES_MAX`] characters of
/// letters, digits and `. _ - @ :`. The writer checks it before it records
/// a key or token; `verify` checks every recorded one again.
pub fn check_record_name(name: &str) -> Result<(), RecordRefusal> {
    if name.is_empty()
        || name.len() > RECORD_NAME_BYTES_MAX
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@:".contains(&b))
    {
        return Err(RecordRefusal {
            code: "invalid_name",
            message: "names are 1 to 128 characters of letters, digits and . _ - @ :".into(),
        });
    }
    Ok(())
}

/// A key's or token's `pdp_id`: 1 to [`RECORD_PDP_ID_BYTES_MAX`] bytes.
pub fn check_record_pdp_id(pdp_id: &str) -> Result<(), RecordRefusal> {
    if pdp_id.is_empty() || pdp_id.len() > RECORD_PDP_ID_BYTES_MAX {
        return Err(RecordRefusal { code: "invalid_pdp_id", message: "pdp_id must be 1 to 256 bytes".into() });
    }
    Ok(())
}

/// A token's role, by its name.
pub fn check_record_role(role: &str) -> Result<Role, RecordRefusal> {
    Role::parse(role).ok_or_else(|| RecordRefusal {
        code: "invalid_role",
        message: format!("role must be one of {}", Role::names()),
    })
}

/// A registered producer key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Unique name.
    pub name: String,
    /// The PDP it speaks for.
    pub pdp_id: String,
    /// Raw public key, hex.
    pub public_key_hex: String,
    /// SHA-256 of the public key, hex: the leaf's producer key id.
    pub fingerprint_hex: String,
    /// Seq of the `ledger.key_added` leaf.
    pub added_seq: u64,
    /// Seq of the `ledger.key_revoked` leaf.
    pub revoked_seq: Option<u64>,
}

impl KeyRecord {
    /// The validated public key.
    pub fn public_key(&self) -> Option<PublicKey> {
        let bytes: [u8; 32] = hex::decode(&self.public_key_hex).ok()?.try_into().ok()?;
        PublicKey::from_bytes(&bytes).ok()
    }

    /// Whether the key may authenticate an event at `seq`.
    pub fn active_at(&self, seq: u64) -> bool {
        self.added_seq < seq && self.revoked_seq.is_none_or(|r| seq < r)
    }
}

/// An API token (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Bound PDP, if any.
    pub pdp_id: Option<String>,
    /// SHA-256 of the token, hex.
    pub token_sha256_hex: String,
    /// Seq of the `ledger.token_created` leaf.
    pub created_seq: u64,
    /// Seq of the `ledger.token_revoked` leaf.
    pub revoked_seq: Option<u64>,
    /// When the token stops working (unix nanoseconds), if it has a lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ns: Option<i64>,
}

impl TokenRecord {
    /// Whether the token authenticates at `now_ns`: not revoked, not expired.
    pub fn active_at(&self, now_ns: i64) -> bool {
        self.revoked_seq.is_none() && self.expires_at_ns.is_none_or(|e| now_ns < e)
    }
}

/// The first thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", seq.map(|s| format!("seq {s}: ")).unwrap_or_default())]
pub struct VerifyFailure {
    /// The first failing seq, when the failure belongs to one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// `Err` of a [`VerifyFailure`] at `seq`.
pub fn fail<T>(seq: Option<u64>, reason: impl Into<String>) -> Result<T, VerifyFailure> {
    Err(VerifyFailure { seq, reason: reason.into() })
}

/// One event's envelope checks, which can run in parallel: the envelope
/// and payload hashes against the leaf, the event schema, the key or token
/// active at its seq, and the producer signature. Also used for the leaves
/// of export bundles, so a bundle is checked by the same rule as the ledger.
pub struct Job {
    seq: u64,
    kind: LeafKind,
    envelope: Vec<u8>,
    envelope_sha256: Hash,
    payload_sha256: Hash,
    producer_key_id: Hash,
    event_id: String,
}

impl Job {
    /// The checks of a producer-signed or token-authenticated leaf.
    /// Ledger records are checked in order instead ([`Rebuilt::apply_record`]).
    pub fn new(leaf: Leaf, envelope: Vec<u8>) -> Job {
        Job {
            seq: leaf.seq,
            kind: leaf.kind,
            envelope,
            envelope_sha256: leaf.envelope_sha256,
            payload_sha256: leaf.payload_sha256,
            producer_key_id: leaf.producer_key_id,
            event_id: leaf.event_id,
        }
    }
}

/// The key and token registry rebuilt from ledger-signed leaves, with
/// history (which key was active at which seq).
#[derive(Default, Clone)]
pub struct Rebuilt {
    keys: HashMap<String, KeyRecord>,
    tokens: HashMap<String, TokenRecord>,
    /// Validated keys and their fingerprints by name: validation costs a
    /// scalar multiplication, so it happens once per key, not once per event.
    parsed: HashMap<String, (PublicKey, Hash)>,
}

impl Rebuilt {
    fn key_for(&self, fingerprint: &Hash, pdp_id: &str, seq: u64) -> Option<PublicKey> {
        self.keys
            .values()
            .filter(|k| k.pdp_id == pdp_id && k.active_at(seq))
            .filter_map(|k| self.parsed.get(&k.name))
            .find(|(_, fp)| fp == fingerprint)
            .map(|(key, _)| *key)
    }

    fn token_active(&self, token_sha256: &Hash, seq: u64) -> bool {
        let h = hex::encode(token_sha256);
        self.tokens
            .values()
            .any(|t| t.token_sha256_hex == h && t.created_seq < seq && t.revoked_seq.is_none_or(|r| seq < r))
    }

    /// The producer keys applied so far, revoked ones included.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values()
    }

    /// The tokens applied so far, revoked ones included.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// Checks a ledger record (envelope and payload hashes, the ledger's
    /// signature) and applies it. Ledger records change the registry, so
    /// they are applied in seq order.
    pub fn apply_record(
        &mut self,
        leaf: &Leaf,
        envelope: &[u8],
        ledger_key: &PublicKey,
        ledger_fp: &Hash,
    ) -> Result<(), VerifyFailure> {
        let seq = Some(leaf.seq);
        if leaf.kind != LeafKind::LedgerSigned {
            return fail(seq, "not a ledger record");
        }
        if leaf.producer_key_id != *ledger_fp {
            return fail(seq, "ledger record is not attributed to the ledger key");
        }
        if sha256(envelope) != leaf.envelope_sha256 {
            return fail(seq, "envelope does not match the leaf's envelope hash");
        }
        let env =
            Envelope::parse(envelope).map_err(|e| VerifyFailure { seq, reason: format!("ledger envelope: {e}") })?;
        if sha256(&env.payload) != leaf.payload_sha256 {
            return fail(seq, "payload does not match the leaf's payload hash");
        }
        let pae = env.pae();
        if !env.signatures.iter().any(|s| sig::verify(ledger_key, &pae, &s.sig).is_ok()) {
            return fail(seq, "ledger record is not signed by the ledger key");
        }
        self.apply(leaf.seq, &env.payload).map_err(|e| VerifyFailure { seq, reason: format!("ledger record: {e}") })
    }

    fn apply(&mut self, seq: u64, payload: &[u8]) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let t = v["event_type"].as_str().unwrap_or_default();
        let l = &v["ledger"];
        let s = |k: &str| l[k].as_str().map(str::to_string).ok_or(format!("ledger.{k} is missing"));
        match t {
            "ledger.key_added" => {
                let pk = b64::decode(&s("public_key")?).ok_or("ledger.public_key is not base64")?;
                let pk: [u8; 32] = pk.try_into().map_err(|_| "ledger.public_key is not 32 bytes")?;
                let name = s("name")?;
                check_record_name(&name).map_err(|e| format!("key name `{name}`: {e}"))?;
                check_record_pdp_id(&s("pdp_id")?).map_err(|e| format!("key `{name}`: {e}"))?;
                if self.keys.contains_key(&name) {
                    return Err(format!("key `{name}` is added twice"));
                }
                let key = PublicKey::from_bytes(&pk).map_err(|e| format!("key `{name}`: {e}"))?;
                self.parsed.insert(name.clone(), (key, key_fingerprint(&pk)));
                self.keys.insert(
                    name.clone(),
                    KeyRecord {
                        name,
                        pdp_id: s("pdp_id")?,
                        public_key_hex: hex::encode(pk),
                        fingerprint_hex: hex::encode(key_fingerprint(&pk)),
                        added_seq: seq,
                        revoked_seq: None,
                    },
                );
            }
            "ledger.key_revoked" => {
                let name = s("name")?;
                let k = self.keys.get_mut(&name).ok_or(format!("revokes unknown key `{name}`"))?;
                if k.revoked_seq.is_some() {
                    return Err(format!("key `{name}` is revoked twice"));
                }
                k.revoked_seq = Some(seq);
            }
            "ledger.token_created" => {
                let name = s("name")?;
                check_record_name(&name).map_err(|e| format!("token name `{name}`: {e}"))?;
                if let Some(p) = l["pdp_id"].as_str() {
                    check_record_pdp_id(p).map_err(|e| format!("token `{name}`: {e}"))?;
                }
                if self.tokens.contains_key(&name) {
                    return Err(format!("token `{name}` is created twice"));
                }
                let role = {
                    let r = s("role")?;
                    check_record_role(&r).map_err(|e| format!("token `{name}`: role `{r}`: {e}"))?
                };
                self.tokens.insert(
                    name.clone(),
                    TokenRecord {
                        name,
                        role,
                        pdp_id: l["pdp_id"].as_str().map(str::to_string),
                        token_sha256_hex: s("token_sha256")?,
                        created_seq: seq,
                        revoked_seq: None,
                        expires_at_ns: match l.get("expires_at") {
                            None => None,
                            Some(e) => Some(
                                e.as_str()
                                    .and_then(crate::time::parse_rfc3339_utc)
                                    .ok_or("ledger.expires_at is not an RFC 3339 UTC time")?,
                            ),
                        },
                    },
                );
            }
            "ledger.token_revoked" => {
                let name = s("name")?;
                let t = self.tokens.get_mut(&name).ok_or(format!("revokes unknown token `{name}`"))?;
                if t.revoked_seq.is_some() {
                    return Err(format!("token `{name}` is revoked twice"));
                }
                t.revoked_seq = Some(seq);
            }
            other => return Err(format!("unknown ledger event type `{other}`")),
        }
        Ok(())
    }
}

/// An event whose envelope passed every check of [`check_chunk`]: its
/// payload and the fields its validation produced.
pub struct Verified {
    /// Its seq.
    pub seq: u64,
    /// The payload bytes (the event JSON).
    pub payload: Vec<u8>,
    /// The normalized fields.
    pub fields: event::Fields,
}

/// Checks a chunk of producer-signed and token-authenticated leaves against
/// the registry rebuilt so far: each envelope and payload against its
/// leaf's hashes, the event schema, the event id, the key or token active
/// at its seq, and the producer signatures (batched). Returns what the
/// checks parsed, in the chunk's order, or the first failure.
/// `signatures` counts the signatures checked.
pub fn check_chunk(chunk: &[Job], reg: &Rebuilt, signatures: &AtomicU64) -> Result<Vec<Verified>, VerifyFailure> {
    let mut kept = Vec::with_capacity(chunk.len());
    struct Ready {
        seq: u64,
        key: PublicKey,
        pae: Vec<u8>,
        sigs: Vec<Vec<u8>>,
    }
    let mut ready: Vec<Ready> = Vec::with_capacity(chunk.len());
    for job in chunk {
        let seq = Some(job.seq);
        if sha256(&job.envelope) != job.envelope_sha256 {
            return fail(seq, "envelope does not match the leaf's envelope hash");
        }
        let (payload, sigs, pae) = match job.kind {
            LeafKind::ProducerSigned => {
                let env = Envelope::parse(&job.envelope)
                    .map_err(|e| VerifyFailure { seq, reason: format!("envelope: {e}") })?;
                let pae = env.pae();
                let sigs = env.signatures.into_iter().map(|s| s.sig).collect();
                (env.payload, sigs, pae)
            }
            LeafKind::TokenAuthenticated => {
                let v: serde_json::Value = serde_json::from_slice(&job.envelope)
                    .map_err(|e| VerifyFailure { seq, reason: format!("stored record: {e}") })?;
                // Token-authenticated records store the mapped event as base64
                // (`payload`) beside the raw source record; see schema/leaf.md.
                let payload = v["payload"]
                    .as_str()
                    .and_then(b64::decode)
                    .ok_or_else(|| VerifyFailure { seq, reason: "stored record has no base64 `payload`".into() })?;
                (payload, Vec::new(), Vec::new())
            }
            LeafKind::LedgerSigned => unreachable!("ledger records are checked in order"),
        };
        if sha256(&payload) != job.payload_sha256 {
            return fail(seq, "payload does not match the leaf's payload hash");
        }
        let ev = event::validate(&payload).map_err(|e| VerifyFailure { seq, reason: format!("event schema: {e}") })?;
        if ev.fields.event_id != job.event_id {
            return fail(seq, "the event's event_id differs from the leaf's");
        }
        match job.kind {
            LeafKind::ProducerSigned => {
                let key =
                    reg.key_for(&job.producer_key_id, &ev.fields.pdp_id, job.seq).ok_or_else(|| VerifyFailure {
                        seq,
                        reason: format!(
                            "no key registered to PDP `{}` with this fingerprint was active at this seq",
                            ev.fields.pdp_id
                        ),
                    })?;
                ready.push(Ready { seq: job.seq, key, pae, sigs });
            }
            _ => {
                if !reg.token_active(&job.producer_key_id, job.seq) {
                    return fail(seq, "no token with this hash was active at this seq");
                }
            }
        }
        kept.push(Verified { seq: job.seq, payload, fields: ev.fields });
    }
    // The first signature of each envelope, batched; others only on failure.
    let items: Vec<sig::BatchItem<'_>> =
        ready.iter().map(|r| (&r.key, &r.pae[..], r.sigs.first().map(|s| &s[..]).unwrap_or(&[]))).collect();
    let results = sig::verify_batch(&items);
    for (r, res) in ready.iter().zip(results) {
        if res.is_err() && !r.sigs.iter().skip(1).any(|s| sig::verify(&r.key, &r.pae, s).is_ok()) {
            return fail(Some(r.seq), "producer signature does not verify with the registered key");
        }
    }
    signatures.fetch_add(ready.len() as u64, Ordering::Relaxed);
    Ok(kept)
}

/// A stored event: its leaf, hashes and envelope as the ledger keeps them.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its seq.
    pub seq: u64,
    /// Decoded leaf.
    pub leaf: Leaf,
    /// Leaf bytes.
    pub leaf_bytes: Vec<u8>,
    /// Merkle leaf hash.
    pub leaf_hash: Hash,
    /// Chain hash after this leaf.
    pub chain_hash: Hash,
    /// The envelope as received.
    pub envelope: Vec<u8>,
}

/// The names of producer keys, as of each event. One public key may be
/// registered more than once (under another name, or after a revocation),
/// so an event is named by the registration that was active for its PDP at
/// its seq: the one whose signature the ledger accepted, the latest added
/// if several were. Sealing, the live tail, index hits, `verify`, exports
/// and bundle checks all name rows this way, so a later registration never
/// renames earlier events.
#[derive(Debug, Clone, Default)]
pub struct KeyNames {
    /// By fingerprint (hex): registrations in the order they were added.
    by_fingerprint: HashMap<String, Vec<KeyRecord>>,
}

impl KeyNames {
    /// The names of these key records.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a KeyRecord>) -> KeyNames {
        let mut by_fingerprint: HashMap<String, Vec<KeyRecord>> = HashMap::new();
        for k in keys {
            by_fingerprint.entry(k.fingerprint_hex.clone()).or_default().push(k.clone());
        }
        for regs in by_fingerprint.values_mut() {
            regs.sort_by_key(|k| k.added_seq);
        }
        KeyNames { by_fingerprint }
    }

    /// The name of the key with this fingerprint that signed an event of
    /// `pdp_id` at `seq`: the registration active then, or failing that
    /// (a ledger `verify` would refuse) the latest added before it.
    pub fn name_at(&self, fingerprint_hex: &str, pdp_id: &str, seq: u64) -> Option<&str> {
        let regs = self.by_fingerprint.get(fingerprint_hex)?;
        regs.iter()
            .rev()
            .find(|k| k.pdp_id == pdp_id && k.active_at(seq))
            .or_else(|| regs.iter().rev().find(|k| k.added_seq < seq))
            .map(|k| k.name.as_str())
    }
}

/// Signatures checked in one batch (one `verify_batch` call) by
/// [`check_parallel`].
pub const BATCH_SIGNATURES: usize = 256;

/// Checks jobs in chunks of [`BATCH_SIGNATURES`] on the current rayon pool,
/// handing each chunk's verified events to `per_chunk`. Returns its results
/// in seq order, or the failure with the lowest seq. `signatures` counts the
/// signatures checked. `verify` and bundle verification both check this way.
#[cfg(feature = "parallel")]
pub fn check_parallel<T: Send>(
    jobs: &[Job],
    reg: &Rebuilt,
    signatures: &AtomicU64,
    per_chunk: impl Fn(Vec<Verified>) -> T + Sync,
) -> Result<Vec<T>, VerifyFailure> {
    use rayon::prelude::*;
    let results: Vec<Result<T, VerifyFailure>> =
        jobs.par_chunks(BATCH_SIGNATURES).map(|chunk| check_chunk(chunk, reg, signatures).map(&per_chunk)).collect();
    let mut out = Vec::with_capacity(results.len());
    let mut first: Option<VerifyFailure> = None;
    for r in results {
        match r {
            Ok(t) => out.push(t),
            Err(f) => {
                if first.as_ref().is_none_or(|g| f.seq < g.seq) {
                    first = Some(f);
                }
            }
        }
    }
    match first {
        Some(f) => Err(f),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_token_records_follow_one_rule() {
        for ok in ["admin", "pdp-1.key", "a@b:c_d", &"x".repeat(RECORD_NAME_BYTES_MAX)] {
            assert!(check_record_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(RECORD_NAME_BYTES_MAX + 1)] {
            assert_eq!(check_record_name(bad).unwrap_err().code, "invalid_name", "{bad:?}");
        }
        assert!(check_record_pdp_id(&"p".repeat(RECORD_PDP_ID_BYTES_MAX)).is_ok());
        for bad in [String::new(), "p".repeat(RECORD_PDP_ID_BYTES_MAX + 1)] {
            assert_eq!(check_record_pdp_id(&bad).unwrap_err().code, "invalid_pdp_id");
        }
        assert_eq!(check_record_role("auditor").unwrap(), Role::Auditor);
        let e = check_record_role("root").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), ("invalid_role", "role must be one of ingest, query, auditor, admin"));
    }

    /// `verify` holds recorded keys and tokens to the writer's rule: a
    /// record the writer would have refused fails verification.
    #[test]
    fn verify_refuses_records_the_writer_would_refuse() {
        let key = serde_json::json!({"event_type": "ledger.key_added", "ledger": {
            "name": "k", "pdp_id": "p", "public_key": b64::encode(crate::sig::public_key_of(&[1; 32]))}});
        let apply = |v: &serde_json::Value| Rebuilt::default().apply(5, v.to_string().as_bytes());
        assert_eq!(apply(&key), Ok(()));
        let mut bad = key.clone();
        bad["ledger"]["name"] = "a b".into();
        assert!(apply(&bad).unwrap_err().contains("invalid") || apply(&bad).unwrap_err().contains("names are"));
        let mut bad = key.clone();
        bad["ledger"]["pdp_id"] = "".into();
        assert!(apply(&bad).unwrap_err().contains("pdp_id must be 1 to 256 bytes"));
        let token = |name: &str, role: &str| {
            serde_json::json!({"event_type": "ledger.token_created", "ledger": {
                "name": name, "role": role, "token_sha256": "00"}})
        };
        assert_eq!(apply(&token("t", "query")), Ok(()));
        assert!(apply(&token("t", "root")).unwrap_err().contains("role must be one of"));
        assert!(apply(&token("", "query")).unwrap_err().contains("names are"));
    }
}
