//! Column families and key encodings, documented in `schema/storage.md`.
//!
//! Every integer in a key is big-endian so byte order equals numeric order.
//! Every `encode_*` has a validating `decode_*`.

/// `meta`: format version, origin, ledger public key, head.
pub const CF_META: &str = "meta";
/// `leaves`: seq → chain hash (32) ‖ leaf bytes.
pub const CF_LEAVES: &str = "leaves";
/// `envelopes`: seq → envelope bytes as received.
pub const CF_ENVELOPES: &str = "envelopes";
/// `tiles`: (tile level, tile index) → the tile's hashes, 32 bytes each:
/// 256 for a full tile, fewer for the open tile at the edge of each level
/// (C2SP tlog-tiles, height 8; storage format 2).
pub const CF_TILES: &str = "tiles";
/// `nodes` (storage format 1 only): (level, index) → 32-byte hash of every
/// perfect subtree. `actlog migrate` turns it into `tiles` and drops it.
pub const CF_NODES_V1: &str = "nodes";
/// `event_ids`: event id → seq ‖ payload SHA-256.
pub const CF_EVENT_IDS: &str = "event_ids";
/// `index`: (field tag, value, seq) → empty. Secondary indexes for queries.
pub const CF_INDEX: &str = "index";
/// `registry`: producer keys and API tokens (derived from ledger events).
pub const CF_REGISTRY: &str = "registry";
/// `checkpoints`: tree size → signed note text.
pub const CF_CHECKPOINTS: &str = "checkpoints";

/// Every column family, in creation order.
pub const ALL_CFS: &[&str] =
    &[CF_META, CF_LEAVES, CF_ENVELOPES, CF_TILES, CF_EVENT_IDS, CF_INDEX, CF_REGISTRY, CF_CHECKPOINTS];

/// `meta` keys.
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
/// The log origin (UTF-8).
pub const META_ORIGIN: &[u8] = b"origin";
/// The ledger's raw ed25519 public key.
pub const META_LEDGER_PUBLIC_KEY: &[u8] = b"ledger_public_key";
/// The head: tree size u64 ‖ chain hash 32 ‖ root hash 32.
pub const META_HEAD: &[u8] = b"head";
/// Prefix of `checkpoint_time/` ‖ tree size u64 → unix nanos u64 (when it was signed).
pub const META_CHECKPOINT_TIME: &[u8] = b"checkpoint_time/";

/// The cold floor, u64: every seq below it has left `leaves` and
/// `envelopes` for the archive (`serve --hot-retention`). Absent means 0.
pub const META_COLD_FLOOR: &[u8] = b"cold_floor";

/// Prefix of `cosignature/` ‖ tree size u64 ‖ cosigner name → the witness's
/// signature line over the checkpoint of that size (contract §11).
pub const META_COSIGNATURE: &[u8] = b"cosignature/";

/// The meta key of `name`'s cosignature of the checkpoint of `tree_size`.
pub fn encode_cosignature(tree_size: u64, name: &str) -> Vec<u8> {
    let mut k = META_COSIGNATURE.to_vec();
    k.extend_from_slice(&tree_size.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// The tree size and cosigner name of a cosignature key (after the prefix).
pub fn decode_cosignature(rest: &[u8]) -> Option<(u64, &str)> {
    if rest.len() <= 8 {
        return None;
    }
    let size = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some((size, std::str::from_utf8(&rest[8..]).ok()?))
}

/// The meta key holding when the checkpoint of `tree_size` was signed.
pub fn encode_checkpoint_time(tree_size: u64) -> Vec<u8> {
    let mut k = META_CHECKPOINT_TIME.to_vec();
    k.extend_from_slice(&tree_size.to_be_bytes());
    k
}

/// Registry key prefix for producer keys (followed by the key name).
pub const REG_KEY_PREFIX: &[u8] = b"k/";
/// Registry key prefix for tokens (followed by the token name).
pub const REG_TOKEN_PREFIX: &[u8] = b"t/";

/// Secondary index field tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexField {
    /// `delegation.actor.id`
    ActorId = 1,
    /// `delegation.principal.id`
    PrincipalId = 2,
    /// `correlation.session_id`
    SessionId = 3,
    /// `correlation.task_id`
    TaskId = 4,
    /// `outcome.decision_event_id`
    DecisionEventId = 5,
}

/// Values longer than this are not indexed (queries fall back to a scan).
pub const INDEX_VALUE_BYTES_MAX: usize = 512;

/// Encodes a seq.
pub fn encode_seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Decodes a seq key.
pub fn decode_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Encodes a tile key: tile level, then tile index (big-endian).
pub fn encode_tile(level: u8, index: u64) -> [u8; 9] {
    encode_node(level, index)
}

/// Decodes a tile key.
pub fn decode_tile(key: &[u8]) -> Option<(u8, u64)> {
    decode_node(key)
}

/// Encodes a node key (storage format 1's `nodes`).
pub fn encode_node(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Decodes a node key.
pub fn decode_node(key: &[u8]) -> Option<(u8, u64)> {
    if key.len() != 9 {
        return None;
    }
    Some((key[0], u64::from_be_bytes(key[1..].try_into().ok()?)))
}

/// The prefix of all index keys for one field value.
pub fn index_prefix(field: IndexField, value: &str) -> Vec<u8> {
    let v = value.as_bytes();
    let mut k = Vec::with_capacity(3 + v.len() + 8);
    k.push(field as u8);
    k.extend_from_slice(&(v.len() as u16).to_be_bytes());
    k.extend_from_slice(v);
    k
}

/// An index key: prefix ‖ seq.
pub fn encode_index(field: IndexField, value: &str, seq: u64) -> Vec<u8> {
    let mut k = index_prefix(field, value);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Decodes an index key into (field tag, value, seq).
pub fn decode_index(key: &[u8]) -> Option<(u8, &str, u64)> {
    if key.len() < 11 {
        return None;
    }
    let len = u16::from_be_bytes([key[1], key[2]]) as usize;
    if key.len() != 3 + len + 8 {
        return None;
    }
    let value = std::str::from_utf8(&key[3..3 + len]).ok()?;
    let seq = u64::from_be_bytes(key[3 + len..].try_into().ok()?);
    Some((key[0], value, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seq_keys_sort_like_seqs(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), encode_seq(a).cmp(&encode_seq(b)));
            prop_assert_eq!(decode_seq(&encode_seq(a)), Some(a));
        }

        #[test]
        fn node_keys_sort_by_level_then_index(l1 in 0u8..64, i1 in any::<u64>(), l2 in 0u8..64, i2 in any::<u64>()) {
            prop_assert_eq!((l1, i1).cmp(&(l2, i2)), encode_node(l1, i1).cmp(&encode_node(l2, i2)));
            prop_assert_eq!(decode_node(&encode_node(l1, i1)), Some((l1, i1)));
        }

        #[test]
        fn index_keys_round_trip_and_sort_by_seq_within_a_value(v in ".{0,40}", a in any::<u64>(), b in any::<u64>()) {
            let ka = encode_index(IndexField::TaskId, &v, a);
            let kb = encode_index(IndexField::TaskId, &v, b);
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            prop_assert!(ka.starts_with(&index_prefix(IndexField::TaskId, &v)));
            prop_assert_eq!(decode_index(&ka), Some((IndexField::TaskId as u8, v.as_str(), a)));
        }
    }
}
