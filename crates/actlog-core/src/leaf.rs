//! The leaf: the bytes that the hash chain and the Merkle tree commit to.
//!
//! Layout v1 (all integers big-endian), documented in `schema/leaf.md`:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | `leaf_version` = 1 |
//! | 1 | 1 | `kind`: 1 producer-signed, 2 token-authenticated (OPA), 3 ledger-signed |
//! | 2 | 8 | `seq` |
//! | 10 | 8 | `received_at`, unix nanoseconds (u64) |
//! | 18 | 32 | SHA-256 of the envelope as received |
//! | 50 | 32 | SHA-256 of the payload (the event JSON) |
//! | 82 | 32 | producer key id: SHA-256 of the raw ed25519 public key, or of the token for kind 2 |
//! | 114 | 32 | blake3 chain hash of the previous leaf (zeros for seq 0) |
//! | 146 | 2 | `event_id` length |
//! | 148 | n | `event_id` bytes (UTF-8) |

use sha2::{Digest, Sha256};

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// The current leaf layout version.
pub const LEAF_VERSION: u8 = 1;
/// Bytes before the event id.
pub const LEAF_HEADER_BYTES: usize = 148;

/// How the leaf's envelope was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// A DSSE envelope signed by a registered producer key.
    ProducerSigned = 1,
    /// An event authenticated by an ingest token only (OPA decision logs).
    TokenAuthenticated = 2,
    /// A ledger-internal record signed by the ledger key.
    LedgerSigned = 3,
}

impl LeafKind {
    fn from_u8(v: u8) -> Option<LeafKind> {
        match v {
            1 => Some(LeafKind::ProducerSigned),
            2 => Some(LeafKind::TokenAuthenticated),
            3 => Some(LeafKind::LedgerSigned),
            _ => None,
        }
    }
}

/// A decoded leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// How the envelope was authenticated.
    pub kind: LeafKind,
    /// Position in the log; equals the Merkle leaf index.
    pub seq: u64,
    /// When the ledger accepted it.
    pub received_at_unix_nanos: u64,
    /// SHA-256 of the envelope bytes as received.
    pub envelope_sha256: Hash,
    /// SHA-256 of the payload bytes.
    pub payload_sha256: Hash,
    /// Who authenticated it (see the layout table).
    pub producer_key_id: Hash,
    /// Chain hash of the previous leaf.
    pub prev_chain_hash: Hash,
    /// The producer's event id.
    pub event_id: String,
}

/// Why leaf bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// Shorter than the header, or the event id length disagrees with the size.
    #[error("leaf has the wrong length")]
    Length,
    /// Unknown layout version.
    #[error("leaf version {0} is not supported")]
    Version(u8),
    /// Unknown kind byte.
    #[error("leaf kind {0} is not known")]
    Kind(u8),
    /// Event id is not UTF-8.
    #[error("leaf event id is not UTF-8")]
    EventId,
}

impl Leaf {
    /// Encodes the leaf.
    pub fn encode(&self) -> Vec<u8> {
        let id = self.event_id.as_bytes();
        assert!(id.len() <= u16::MAX as usize, "event id longer than the leaf allows");
        let mut out = Vec::with_capacity(LEAF_HEADER_BYTES + id.len());
        out.push(LEAF_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.received_at_unix_nanos.to_be_bytes());
        out.extend_from_slice(&self.envelope_sha256);
        out.extend_from_slice(&self.payload_sha256);
        out.extend_from_slice(&self.producer_key_id);
        out.extend_from_slice(&self.prev_chain_hash);
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out
    }

    /// Decodes and checks leaf bytes.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        if bytes.len() < LEAF_HEADER_BYTES {
            return Err(LeafError::Length);
        }
        if bytes[0] != LEAF_VERSION {
            return Err(LeafError::Version(bytes[0]));
        }
        let kind = LeafKind::from_u8(bytes[1]).ok_or(LeafError::Kind(bytes[1]))?;
        let u64_at = |o: usize| u64::from_be_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let hash_at = |o: usize| -> Hash { bytes[o..o + 32].try_into().expect("32 bytes") };
        let id_len = u16::from_be_bytes([bytes[146], bytes[147]]) as usize;
        if bytes.len() != LEAF_HEADER_BYTES + id_len {
            return Err(LeafError::Length);
        }
        let event_id = std::str::from_utf8(&bytes[LEAF_HEADER_BYTES..]).map_err(|_| LeafError::EventId)?.to_string();
        Ok(Leaf {
            kind,
            seq: u64_at(2),
            received_at_unix_nanos: u64_at(10),
            envelope_sha256: hash_at(18),
            payload_sha256: hash_at(50),
            producer_key_id: hash_at(82),
            prev_chain_hash: hash_at(114),
            event_id,
        })
    }
}

/// `chain_hash[n] = blake3(chain_hash[n-1] || leaf[n])`.
pub fn chain_hash(prev: &Hash, leaf_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(leaf_bytes);
    *h.finalize().as_bytes()
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The producer key id of a raw ed25519 public key.
pub fn key_fingerprint(public_key: &[u8; 32]) -> Hash {
    sha256(public_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_leaf() -> impl Strategy<Value = Leaf> {
        (
            prop_oneof![
                Just(LeafKind::ProducerSigned),
                Just(LeafKind::TokenAuthenticated),
                Just(LeafKind::LedgerSigned)
            ],
            any::<u64>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            "[!-~]{1,128}",
        )
            .prop_map(|(kind, seq, t, e, p, k, c, id)| Leaf {
                kind,
                seq,
                received_at_unix_nanos: t,
                envelope_sha256: e,
                payload_sha256: p,
                producer_key_id: k,
                prev_chain_hash: c,
                event_id: id,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(leaf in arb_leaf()) {
            let bytes = leaf.encode();
            prop_assert_eq!(bytes.len(), LEAF_HEADER_BYTES + leaf.event_id.len());
            prop_assert_eq!(Leaf::decode(&bytes).unwrap(), leaf);
        }

        #[test]
        fn truncation_or_extension_is_refused(leaf in arb_leaf(), cut in 1usize..200) {
            let bytes = leaf.encode();
            let cut = cut.min(bytes.len());
            prop_assert!(Leaf::decode(&bytes[..bytes.len() - cut]).is_err());
            let mut longer = bytes.clone();
            longer.push(b'x');
            prop_assert!(Leaf::decode(&longer).is_err());
        }
    }
}
