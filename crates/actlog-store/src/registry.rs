//! The producer-key and API-token registry.
//!
//! The registry is derived from ledger events (`ledger.key_added`, ...): the
//! `registry` column family and the in-memory maps are caches of what those
//! signed leaves say, written in the same WriteBatch. `actlog verify`
//! rebuilds the registry from the leaves and checks the cache against it.

use std::collections::HashMap;

use actlog_core::Hash;
use actlog_core::ingest::{KeyLookup, ProducerKey};
use actlog_core::leaf::sha256;

use crate::clock::now_ns;

pub use actlog_core::ledger::{KeyNames, KeyRecord, TokenRecord};
pub use actlog_core::role::Role;

/// The in-memory registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Keys by name.
    pub keys: HashMap<String, KeyRecord>,
    /// Tokens by name.
    pub tokens: HashMap<String, TokenRecord>,
    token_by_hash: HashMap<String, String>,
    /// Active keys by PDP, validated once: checking a key (its subgroup
    /// membership costs a scalar multiplication) must not happen per event.
    active_by_pdp: HashMap<String, Vec<ProducerKey>>,
}

impl Registry {
    /// The names of its keys, as of each event's seq.
    pub fn key_names(&self) -> KeyNames {
        KeyNames::of(self.keys.values())
    }

    /// Whether some public key is registered under more than one name, the
    /// only case where naming by seq differs from naming by the newest
    /// registration.
    pub fn any_key_registered_twice(&self) -> bool {
        let mut seen = std::collections::HashSet::new();
        self.keys.values().any(|k| !seen.insert(&k.fingerprint_hex))
    }

    /// Adds or replaces a key record.
    pub fn put_key(&mut self, rec: KeyRecord) {
        let list = self.active_by_pdp.entry(rec.pdp_id.clone()).or_default();
        list.retain(|k| k.name != rec.name);
        if rec.revoked_seq.is_none()
            && let Some(key) = rec.public_key()
        {
            list.push(ProducerKey::new(rec.name.clone(), rec.pdp_id.clone(), key));
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.keys.insert(rec.name.clone(), rec);
    }

    /// Adds or replaces a token record.
    pub fn put_token(&mut self, rec: TokenRecord) {
        self.token_by_hash.insert(rec.token_sha256_hex.clone(), rec.name.clone());
        self.tokens.insert(rec.name.clone(), rec);
    }

    /// The active key whose fingerprint is `fp`, if it speaks for `pdp_id`.
    pub fn active_key_by_fingerprint(&self, fp: &Hash, pdp_id: &str) -> bool {
        self.active_by_pdp.get(pdp_id).is_some_and(|keys| keys.iter().any(|k| &k.fingerprint() == fp))
    }

    /// Whether a token with this SHA-256 is neither revoked nor expired.
    pub fn token_hash_active(&self, token_sha256: &Hash) -> bool {
        let h = hex::encode(token_sha256);
        let now = now_ns();
        self.token_by_hash.get(&h).and_then(|n| self.tokens.get(n)).is_some_and(|t| t.active_at(now))
    }

    /// The token with this secret, if it is neither revoked nor expired.
    pub fn authenticate(&self, token: &str) -> Option<&TokenRecord> {
        self.authenticate_hash(&sha256(token.as_bytes()))
    }

    /// The token with this SHA-256, if it is neither revoked nor expired.
    pub fn authenticate_hash(&self, token_sha256: &Hash) -> Option<&TokenRecord> {
        let name = self.token_by_hash.get(&hex::encode(token_sha256))?;
        let now = now_ns();
        self.tokens.get(name).filter(|t| t.active_at(now))
    }
}

impl KeyLookup for Registry {
    fn keys_for_pdp(&self, pdp_id: &str) -> Vec<ProducerKey> {
        self.active_by_pdp.get(pdp_id).cloned().unwrap_or_default()
    }
}
