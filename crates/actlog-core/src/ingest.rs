//! Checking a batch of envelopes before anything is written.
//!
//! Every envelope goes through the same steps, at ingest over HTTP, at
//! `actlog import`, and (for the signature and schema) in `actlog verify`:
//! size, DSSE shape, payload type, event schema, producer key lookup by the
//! event's `pdp.id`, token-to-PDP binding, and the signature rule of [`sig`].
//! Signatures of the whole batch are checked together (see
//! [`sig::verify_batch`]); the result per item never depends on the batch.

use crate::dsse::{DsseError, Envelope};
use crate::event::{self, Event, Fields, SchemaError};
use crate::leaf::{Hash, LeafKind, key_fingerprint, sha256};
use crate::sig::{self, PublicKey};

/// Event ids with this prefix belong to ledger-internal records.
pub const RESERVED_EVENT_ID_PREFIX: &str = "actlog:";

/// A producer key the registry knows, active at the time of the check.
#[derive(Debug, Clone)]
pub struct ProducerKey {
    /// Registered name (the usual `keyid` hint).
    pub name: String,
    /// The PDP this key speaks for.
    pub pdp_id: String,
    /// The validated key.
    pub key: PublicKey,
    /// SHA-256 of the raw key, computed once (it is compared per event).
    fingerprint: Hash,
}

impl ProducerKey {
    /// A registered key.
    pub fn new(name: String, pdp_id: String, key: PublicKey) -> ProducerKey {
        let fingerprint = key_fingerprint(key.as_bytes());
        ProducerKey { name, pdp_id, key, fingerprint }
    }

    /// SHA-256 of the raw public key: the leaf's producer key id.
    pub fn fingerprint(&self) -> Hash {
        self.fingerprint
    }
}

/// Looks up the active keys of a PDP.
pub trait KeyLookup {
    /// Active keys registered to `pdp_id`.
    fn keys_for_pdp(&self, pdp_id: &str) -> Vec<ProducerKey>;
}

/// Limits on one envelope.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLimits {
    /// Largest envelope, in bytes as received.
    pub envelope_bytes_max: usize,
    /// Largest decoded payload, in bytes.
    pub payload_bytes_max: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        EnvelopeLimits { envelope_bytes_max: 256 * 1024, payload_bytes_max: 128 * 1024 }
    }
}

/// Why one envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// JSON Pointer: into the envelope for envelope errors, into the event for schema errors.
    pub path: String,
}

impl ItemError {
    /// A refusal with its code, message and JSON Pointer.
    pub fn new(code: &'static str, message: impl Into<String>, path: impl Into<String>) -> ItemError {
        ItemError { code, message: message.into(), path: path.into() }
    }
}

impl From<DsseError> for ItemError {
    fn from(e: DsseError) -> Self {
        ItemError::new(e.code(), e.to_string(), e.path())
    }
}

/// An envelope that passed every check and is ready to append.
///
/// Only this crate's checks make one ([`check_envelopes`], `opa::check`,
/// [`Checked::ledger_record`]): its fields are private, so the store cannot
/// be handed a record that skipped them.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The envelope bytes exactly as received.
    pub(crate) envelope: Vec<u8>,
    /// SHA-256 of `envelope`, computed on the checking threads so the
    /// single writer does not hash every envelope again.
    pub(crate) envelope_sha256: Hash,
    /// The validated event's normalized fields. (The parsed JSON is dropped
    /// here, on the checking threads, not later on the single writer.)
    pub(crate) fields: Fields,
    /// SHA-256 of the payload bytes.
    pub(crate) payload_sha256: Hash,
    /// How it was authenticated.
    pub(crate) kind: LeafKind,
    /// The key (or token) fingerprint that authenticated it.
    pub(crate) producer_key_id: Hash,
    /// The registered key's name, when signed.
    pub(crate) producer_key_name: Option<String>,
}

impl Checked {
    /// One of the ledger's own records (`ledger.*` events: keys, tokens),
    /// signed here with the ledger's seed and named by its `origin`. The
    /// payload must be a valid ledger event.
    pub fn ledger_record(payload: Vec<u8>, origin: &str, seed: &[u8; 32]) -> Result<Checked, SchemaError> {
        let event = event::validate(&payload)?;
        debug_assert!(
            event::LEDGER_EVENT_TYPES.contains(&event.fields.event_type.as_str()),
            "a ledger record is a ledger event"
        );
        let envelope = Envelope::sign(payload, Some(origin.to_string()), seed);
        let envelope_bytes = envelope.to_json().into_bytes();
        Ok(Checked {
            payload_sha256: sha256(&envelope.payload),
            envelope_sha256: sha256(&envelope_bytes),
            envelope: envelope_bytes,
            fields: event.fields,
            kind: LeafKind::LedgerSigned,
            producer_key_id: key_fingerprint(&sig::public_key_of(seed)),
            producer_key_name: None,
        })
    }

    /// The envelope bytes exactly as received (for OPA events, the stored record).
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
    /// SHA-256 of [`envelope`](Checked::envelope).
    pub fn envelope_sha256(&self) -> &Hash {
        &self.envelope_sha256
    }
    /// The validated event's normalized fields.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }
    /// SHA-256 of the payload bytes.
    pub fn payload_sha256(&self) -> &Hash {
        &self.payload_sha256
    }
    /// How it was authenticated.
    pub fn kind(&self) -> LeafKind {
        self.kind
    }
    /// The key (or token) fingerprint that authenticated it.
    pub fn producer_key_id(&self) -> &Hash {
        &self.producer_key_id
    }
    /// The registered key's name, when signed by a producer key.
    pub fn producer_key_name(&self) -> Option<&str> {
        self.producer_key_name.as_deref()
    }
}

/// The checked items of a batch, or every refused item with its index: a
/// batch is stored whole or not at all. The server answers the refusals as
/// one 422; `import` names the first.
pub fn all_or_nothing(results: Vec<Result<Checked, ItemError>>) -> Result<Vec<Checked>, Vec<(usize, ItemError)>> {
    let mut refused = Vec::new();
    let mut checked = Vec::with_capacity(results.len());
    for (index, r) in results.into_iter().enumerate() {
        match r {
            Ok(c) => checked.push(c),
            Err(e) => refused.push((index, e)),
        }
    }
    if refused.is_empty() { Ok(checked) } else { Err(refused) }
}

/// An event id repeated in one batch with another payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatConflict {
    /// The repeating item.
    pub index: usize,
    /// The earlier item with the same event id.
    pub first: usize,
    /// The event id.
    pub event_id: String,
}

/// For each item of a batch, the index of the earlier item with its event
/// id (`None` for the first), up to the first repeat with another payload,
/// which is `conflict`. A batch may repeat an event only as itself: the
/// writer stores it once and acknowledges both. The writer and `import`
/// (over a whole file) walk the items in order and refuse at `conflict`'s
/// index, so the first refused item is the one reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeats {
    /// The earlier item of each item before the conflict (all items when
    /// there is none).
    pub firsts: Vec<Option<usize>>,
    /// The first repeat with another payload.
    pub conflict: Option<RepeatConflict>,
}

/// See [`Repeats`].
pub fn repeats(items: &[Checked]) -> Repeats {
    let mut first: std::collections::HashMap<&str, (usize, &Hash)> = std::collections::HashMap::new();
    let mut firsts = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let id = item.fields.event_id.as_str();
        match first.get(id) {
            Some(&(f, payload)) if payload != &item.payload_sha256 => {
                let conflict = Some(RepeatConflict { index, first: f, event_id: id.to_string() });
                return Repeats { firsts, conflict };
            }
            Some(&(f, _)) => firsts.push(Some(f)),
            None => {
                first.insert(id, (index, &item.payload_sha256));
                firsts.push(None);
            }
        }
    }
    Repeats { firsts, conflict: None }
}

/// Envelopes one task of [`check_envelopes_parallel`] checks at most: a
/// chunk holds each envelope's parsed form until its signatures are checked
/// in a batch, so the chunk bounds that memory (an 8 GiB `import` file is
/// checked 4,096 envelopes per task, not half the file).
pub const PARALLEL_CHUNK_ENVELOPES_MAX: usize = 4096;

/// [`check_envelopes`] on the rayon pool, in chunks of 64 to
/// [`PARALLEL_CHUNK_ENVELOPES_MAX`], results in order. A batch of one chunk
/// is checked on the calling thread.
#[cfg(feature = "parallel")]
pub fn check_envelopes_parallel(
    envelopes: Vec<Vec<u8>>,
    keys: &(dyn KeyLookup + Sync),
    submitter: &Submitter,
    limits: &EnvelopeLimits,
) -> Vec<Result<Checked, ItemError>> {
    use rayon::prelude::*;
    let chunk = envelopes.len().div_ceil(rayon::current_num_threads()).clamp(64, PARALLEL_CHUNK_ENVELOPES_MAX);
    if envelopes.len() <= chunk {
        return check_envelopes(envelopes, keys, submitter, limits);
    }
    // Owned chunks, so no envelope is copied on its way to the check.
    envelopes.into_par_iter().chunks(chunk).flat_map_iter(|c| check_envelopes(c, keys, submitter, limits)).collect()
}

/// Who is submitting: the token's PDP binding, if any.
#[derive(Debug, Clone, Default)]
pub struct Submitter {
    /// A token bound to one PDP may only submit that PDP's events.
    pub pdp_id: Option<String>,
}

/// Checks a batch of envelopes. Returns one result per envelope, in order.
pub fn check_envelopes(
    envelopes: Vec<Vec<u8>>,
    keys: &dyn KeyLookup,
    submitter: &Submitter,
    limits: &EnvelopeLimits,
) -> Vec<Result<Checked, ItemError>> {
    struct Pending {
        envelope: Vec<u8>,
        parsed: Envelope,
        event: Event,
        pae: Vec<u8>,
        candidates: Vec<ProducerKey>,
    }
    let mut results: Vec<Option<Result<Checked, ItemError>>> = Vec::with_capacity(envelopes.len());
    let mut pending: Vec<(usize, Pending)> = Vec::new();
    for (i, bytes) in envelopes.into_iter().enumerate() {
        match precheck(bytes, keys, submitter, limits) {
            Ok((envelope, parsed, event, candidates)) => {
                let pae = parsed.pae();
                results.push(None);
                pending.push((i, Pending { envelope, parsed, event, pae, candidates }));
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    // First pass: each envelope's first signature against its preferred key,
    // batched. Only failures take the slow path over every pair.
    let preferred: Vec<usize> = pending.iter().map(|(_, p)| preferred_key(&p.parsed, &p.candidates)).collect();
    let items: Vec<sig::BatchItem<'_>> = pending
        .iter()
        .zip(&preferred)
        .map(|((_, p), &k)| (&p.candidates[k].key, &p.pae[..], &p.parsed.signatures[0].sig[..]))
        .collect();
    let fast = sig::verify_batch(&items);
    drop(items);
    for (((i, p), k), ok) in pending.into_iter().zip(preferred).zip(fast) {
        let key = if ok.is_ok() { Some(k) } else { find_verifying_key(&p.parsed, &p.pae, &p.candidates) };
        results[i] = Some(match key {
            Some(k) => {
                let key = &p.candidates[k];
                Ok(Checked {
                    envelope_sha256: sha256(&p.envelope),
                    payload_sha256: sha256(&p.parsed.payload),
                    envelope: p.envelope,
                    fields: p.event.fields,
                    kind: LeafKind::ProducerSigned,
                    producer_key_id: key.fingerprint(),
                    producer_key_name: Some(key.name.clone()),
                })
            }
            None => Err(ItemError::new(
                "bad_signature",
                format!(
                    "no signature verifies with a key registered to PDP `{}`; sign with a registered, unrevoked key",
                    p.event.fields.pdp_id
                ),
                "/signatures",
            )),
        });
    }
    results.into_iter().map(|r| r.expect("every item has a result")).collect()
}

type Prechecked = (Vec<u8>, Envelope, Event, Vec<ProducerKey>);

fn precheck(
    bytes: Vec<u8>,
    keys: &dyn KeyLookup,
    submitter: &Submitter,
    limits: &EnvelopeLimits,
) -> Result<Prechecked, ItemError> {
    if bytes.len() > limits.envelope_bytes_max {
        return Err(ItemError::new(
            "envelope_too_large",
            format!("envelope is {} bytes; the limit envelope_bytes_max is {}", bytes.len(), limits.envelope_bytes_max),
            "",
        ));
    }
    let parsed = Envelope::parse(&bytes)?;
    if parsed.payload.len() > limits.payload_bytes_max {
        return Err(ItemError::new(
            "payload_too_large",
            format!(
                "payload is {} bytes; the limit payload_bytes_max is {}",
                parsed.payload.len(),
                limits.payload_bytes_max
            ),
            "/payload",
        ));
    }
    let event = event::validate(&parsed.payload)
        .map_err(|e| ItemError::new("schema_violation", e.message.clone(), e.path.clone()))?;
    if event::LEDGER_EVENT_TYPES.contains(&event.fields.event_type.as_str()) {
        return Err(ItemError::new(
            "reserved_event_type",
            "ledger.* events are written only by the ledger itself",
            "/event_type",
        ));
    }
    if event.fields.event_id.starts_with(RESERVED_EVENT_ID_PREFIX) {
        return Err(ItemError::new(
            "reserved_event_id",
            format!("event ids starting with `{RESERVED_EVENT_ID_PREFIX}` are reserved for the ledger's own records"),
            "/event_id",
        ));
    }
    if let Some(bound) = submitter.pdp_id.as_ref().filter(|b| **b != event.fields.pdp_id) {
        return Err(ItemError::new(
            "pdp_mismatch",
            format!("this token may only submit events of PDP `{bound}`"),
            "/pdp/id",
        ));
    }
    let candidates = keys.keys_for_pdp(&event.fields.pdp_id);
    if candidates.is_empty() {
        return Err(ItemError::new(
            "unknown_key",
            format!(
                "no active key is registered to PDP `{}`; register one with `actlog keys add`",
                event.fields.pdp_id
            ),
            "/signatures",
        ));
    }
    Ok((bytes, parsed, event, candidates))
}

fn hint_matches(hint: &str, key: &ProducerKey) -> bool {
    hint == key.name || hint == hex::encode(key.fingerprint())
}

fn preferred_key(env: &Envelope, candidates: &[ProducerKey]) -> usize {
    match &env.signatures[0].keyid {
        Some(hint) => candidates.iter().position(|k| hint_matches(hint, k)).unwrap_or(0),
        None => 0,
    }
}

fn find_verifying_key(env: &Envelope, pae: &[u8], candidates: &[ProducerKey]) -> Option<usize> {
    for s in &env.signatures {
        for (k, key) in candidates.iter().enumerate() {
            if sig::verify(&key.key, pae, &s.sig).is_ok() {
                return Some(k);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, payload: u8) -> Checked {
        Checked {
            envelope: vec![payload],
            envelope_sha256: [payload; 32],
            fields: Fields { event_id: id.into(), ..Fields::default() },
            payload_sha256: [payload; 32],
            kind: LeafKind::ProducerSigned,
            producer_key_id: [0; 32],
            producer_key_name: None,
        }
    }

    #[test]
    fn a_batch_repeats_an_event_only_as_itself() {
        let items = [item("a", 1), item("b", 2), item("a", 1), item("b", 2), item("c", 3)];
        assert_eq!(repeats(&items), Repeats { firsts: vec![None, None, Some(0), Some(1), None], conflict: None });
        let items = [item("a", 1), item("b", 2), item("b", 2), item("a", 9), item("c", 3)];
        let r = repeats(&items);
        assert_eq!(r.conflict, Some(RepeatConflict { index: 3, first: 0, event_id: "a".into() }));
        assert_eq!(r.firsts, [None, None, Some(1)], "the items before the conflict");
        assert_eq!(repeats(&[]), Repeats { firsts: vec![], conflict: None });
    }

    #[test]
    fn a_batch_is_checked_whole_or_refused_with_every_bad_item() {
        let bad = |code| Err(ItemError::new(code, "no", "/x"));
        let ok = all_or_nothing(vec![Ok(item("a", 1)), Ok(item("b", 2))]).unwrap();
        assert_eq!(ok.iter().map(|c| c.fields.event_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let refused = all_or_nothing(vec![bad("x"), Ok(item("a", 1)), bad("y")]).unwrap_err();
        assert_eq!(refused.iter().map(|(i, e)| (*i, e.code)).collect::<Vec<_>>(), [(0, "x"), (2, "y")]);
    }
}
