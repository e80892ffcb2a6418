//! Appending generated events through the real path: PDP keys registered
//! as ledger events, DSSE envelopes signed per PDP, `check_envelopes` (the
//! same checks as HTTP), and synced group commits.

use std::sync::mpsc::{self, SyncSender};

use actlog_core::dsse::{self, Envelope, Signature};
use actlog_core::ingest::{Checked, EnvelopeLimits, Submitter, check_envelopes};
use actlog_store::{AdminOp, AppendError, Registry, Store};
use ed25519_dalek::{Signer, SigningKey};
use rayon::prelude::*;

use crate::{GenConfig, Generated, Generator, pdp_id, pdp_seed};

const CHECK_CHUNK_ENVELOPES: usize = 128;
const BATCHES_AHEAD_MAX: usize = 2;

/// A PDP's registered signing key.
pub struct PdpKey {
    name: String,
    signing: SigningKey,
}

/// Generates `cfg.events` events and appends them in batches of `batch`,
/// calling `progress` with the events of each committed batch. Returns
/// (added, duplicates).
pub fn build_ledger(
    store: &Store,
    cfg: &GenConfig,
    batch: usize,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64), String> {
    let keys = register_keys(store, cfg.seed, cfg.pdps)?;
    // The snapshot includes the keys just added; nothing else changes the
    // registry while the generator holds the store.
    let registry = store.registry();
    let (mut added, mut duplicates) = (0u64, 0u64);
    let cfg = cfg.clone();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(BATCHES_AHEAD_MAX);
        let keys = &keys;
        let registry = &registry;
        let _producer = scope.spawn(move || produce(cfg, batch.max(1), keys, registry, &tx));
        // Dropping `rx` early (on an error) stops the producer at its next send.
        for prepared in rx {
            let items = prepared?;
            let n = items.len() as u64;
            let done = store.append(items).map_err(append_error)?;
            for r in &done.receipts {
                if r.duplicate {
                    duplicates += 1;
                } else {
                    added += 1;
                }
            }
            progress(n);
        }
        Ok((added, duplicates))
    })
}

/// Signs, checks and appends already generated events as one batch (the
/// PDP keys of `seed` are registered first if needed).
pub fn append_generated(store: &Store, seed: u64, items: &[Generated]) -> Result<(), String> {
    let pdps = items.iter().map(|g| g.pdp + 1).max().unwrap_or(0);
    let keys = register_keys(store, seed, pdps)?;
    let registry = store.registry();
    let checked = sign_and_check(items, 0, &keys, &registry)?;
    store.append(checked).map_err(append_error)?;
    Ok(())
}

/// Registers each PDP's key unless an active key with the same bytes is
/// registered to that PDP already. Returns the keys by PDP index.
pub fn register_keys(store: &Store, seed: u64, pdps: usize) -> Result<Vec<PdpKey>, String> {
    let mut keys = Vec::with_capacity(pdps);
    for i in 0..pdps {
        let signing = SigningKey::from_bytes(&pdp_seed(seed, i));
        let public_key = signing.verifying_key().to_bytes();
        let public_hex = hex::encode(public_key);
        let pdp = pdp_id(i);
        let registered = store.with_registry(|r| {
            r.keys
                .values()
                .find(|k| k.pdp_id == pdp && k.public_key_hex == public_hex && k.revoked_seq.is_none())
                .map(|k| k.name.clone())
        });
        let name = match registered {
            Some(name) => name,
            None => {
                let name = format!("{pdp}-gen-{}", &public_hex[..8]);
                store
                    .admin(AdminOp::AddKey { name: name.clone(), pdp_id: pdp.clone(), public_key })
                    .map_err(|e| format!("cannot register the key of PDP `{pdp}`: {e}"))?;
                name
            }
        };
        keys.push(PdpKey { name, signing });
    }
    Ok(keys)
}

/// Generates, signs and checks batches until the generator is done, the
/// receiver hangs up, or a check fails (sent as the last item).
fn produce(
    cfg: GenConfig,
    batch: usize,
    keys: &[PdpKey],
    registry: &Registry,
    tx: &SyncSender<Result<Vec<Checked>, String>>,
) {
    let mut generator = Generator::new(cfg);
    let mut first = 0u64;
    loop {
        let items: Vec<Generated> = generator.by_ref().take(batch).collect();
        if items.is_empty() {
            return;
        }
        let prepared = sign_and_check(&items, first, keys, registry);
        let failed = prepared.is_err();
        first += items.len() as u64;
        if tx.send(prepared).is_err() || failed {
            return;
        }
    }
}

/// Signs and checks one batch in parallel chunks, in order. `first` is the
/// stream index of `items[0]`, for error messages.
fn sign_and_check(
    items: &[Generated],
    first: u64,
    keys: &[PdpKey],
    registry: &Registry,
) -> Result<Vec<Checked>, String> {
    let limits = EnvelopeLimits::default();
    let submitter = Submitter::default();
    let chunks: Vec<Result<Vec<Checked>, String>> = items
        .par_chunks(CHECK_CHUNK_ENVELOPES)
        .enumerate()
        .map(|(c, chunk)| {
            let envelopes: Vec<Vec<u8>> = chunk.iter().map(|g| sign(g, &keys[g.pdp])).collect();
            let results = check_envelopes(envelopes, registry, &submitter, &limits);
            let mut checked = Vec::with_capacity(results.len());
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(item) => checked.push(item),
                    Err(e) => {
                        let index = first + (c * CHECK_CHUNK_ENVELOPES + i) as u64;
                        let at = if e.path.is_empty() { String::new() } else { format!(" at {}", e.path) };
                        return Err(format!(
                            "generated event {index} was refused: {}{at}: {} (a generator bug; nothing from its batch was written)",
                            e.code, e.message
                        ));
                    }
                }
            }
            Ok(checked)
        })
        .collect();
    let mut all = Vec::with_capacity(items.len());
    for chunk in chunks {
        all.extend(chunk?);
    }
    Ok(all)
}

/// A DSSE envelope of one payload, signed by its PDP's key (keyid = the
/// registered key name).
fn sign(g: &Generated, key: &PdpKey) -> Vec<u8> {
    let payload_type = dsse::EVENT_PAYLOAD_TYPE.to_string();
    let sig = key.signing.sign(&dsse::pae(&payload_type, &g.payload)).to_bytes().to_vec();
    let envelope = Envelope {
        payload_type,
        payload: g.payload.clone(),
        signatures: vec![Signature { keyid: Some(key.name.clone()), sig }],
    };
    envelope.to_json().into_bytes()
}

fn append_error(e: AppendError) -> String {
    match e {
        AppendError::Conflict { event_id, .. } => format!(
            "event_id `{event_id}` is already in the ledger with a different payload (was it generated with other flags?)"
        ),
        AppendError::KeyRevoked { index } => {
            format!("the key of envelope {index} in a batch was revoked while generating")
        }
        AppendError::TokenRevoked { index } => format!("the token of item {index} in a batch was revoked"),
        AppendError::Store(e) => format!("append failed: {e}"),
    }
}
