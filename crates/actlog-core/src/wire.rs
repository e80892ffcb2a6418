//! The JSON bodies of the HTTP API (contract section 4) that the server
//! writes and the CLI's remote mode reads: keys, tokens, the log, proofs,
//! events and health. One type per body, shared, so the two sides cannot
//! drift apart. (Receipts and the error body are typed beside their
//! handlers in the server, which alone writes them.)
//!
//! Fields are declared in name order: the server used to print these as
//! `serde_json` trees, whose keys come out sorted, and the bytes on the
//! wire stay the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::{KeyRecord, TokenRecord};
use crate::role::Role;

/// `201` of `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdded {
    /// The seq of its `ledger.key_added` record.
    pub added_seq: u64,
    /// SHA-256 of the public key, hex.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// The PDP whose events it signs.
    pub pdp_id: String,
}

/// One key of `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The seq of its `ledger.key_added` record.
    pub added_seq: u64,
    /// SHA-256 of the public key, hex.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// The PDP whose events it signs.
    pub pdp_id: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
    /// The seq of its `ledger.key_revoked` record, once revoked.
    pub revoked_seq: Option<u64>,
}

impl From<&KeyRecord> for Key {
    fn from(k: &KeyRecord) -> Key {
        Key {
            added_seq: k.added_seq,
            key_id: k.fingerprint_hex.clone(),
            name: k.name.clone(),
            pdp_id: k.pdp_id.clone(),
            public_key: crate::b64::encode(hex::decode(&k.public_key_hex).unwrap_or_default()),
            revoked_seq: k.revoked_seq,
        }
    }
}

/// `GET /v1/keys`: every key, in registration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// The keys.
    pub keys: Vec<Key>,
}

/// A revocation: `POST /v1/keys/{name}/revoke` and `/v1/tokens/{name}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The key's or token's name.
    pub name: String,
    /// The seq of the revocation record.
    pub revoked_seq: u64,
}

/// `201` of `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The seq of its `ledger.token_created` record.
    pub created_seq: u64,
    /// When it stops working (RFC 3339 UTC), for a token with a lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The token's name.
    pub name: String,
    /// The one PDP it may submit for, if bound.
    pub pdp_id: Option<String>,
    /// Its role.
    pub role: Role,
    /// The secret: `actlog_` and 43 URL-safe base64 characters.
    pub token: String,
}

/// One token of `GET /v1/tokens`: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The seq of its `ledger.token_created` record.
    pub created_seq: u64,
    /// When it stops working (RFC 3339 UTC), if it has a lifetime.
    pub expires_at: Option<String>,
    /// The token's name.
    pub name: String,
    /// The one PDP it may submit for, if bound.
    pub pdp_id: Option<String>,
    /// Its role.
    pub role: Role,
    /// The seq of its `ledger.token_revoked` record, once revoked.
    pub revoked_seq: Option<u64>,
}

impl From<&TokenRecord> for Token {
    fn from(t: &TokenRecord) -> Token {
        Token {
            created_seq: t.created_seq,
            expires_at: t.expires_at_ns.map(crate::time::format_rfc3339_utc),
            name: t.name.clone(),
            pdp_id: t.pdp_id.clone(),
            role: t.role,
            revoked_seq: t.revoked_seq,
        }
    }
}

/// `GET /v1/tokens`: every token, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The tokens.
    pub tokens: Vec<Token>,
}

/// `GET /v1/log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// The latest signed checkpoint (a C2SP signed note), once there is one.
    pub checkpoint: Option<String>,
    /// The log's origin.
    pub origin: String,
    /// Events committed.
    pub tree_size: u64,
    /// The ledger's C2SP verifier key.
    pub verifier_key: String,
    /// Present under a witness policy (`serve --witness-policy`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub witnessing: Option<Witnessing>,
}

/// The witnessing part of [`Log`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Witnessing {
    /// The witness policy in force, as C2SP tlog-policy text (so a client,
    /// the console among them, can check the cosignatures itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_policy: Option<String>,
    /// The latest checkpoint that met the quorum, with its cosignatures.
    pub witnessed_checkpoint: Option<String>,
    /// Its tree size.
    pub witnessed_tree_size: Option<u64>,
    /// Each witness of the policy: its name, its last cosigned size, errors.
    pub witnesses: Value,
}

/// `GET /v1/proofs/inclusion` (the JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The audit path, base64, from the leaf upward.
    pub hashes: Vec<String>,
    /// The leaf's Merkle hash, base64.
    pub leaf_hash: String,
    /// The leaf's seq.
    pub seq: u64,
    /// The tree size the path leads to.
    pub tree_size: u64,
}

/// `GET /v1/proofs/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The proof, base64.
    pub hashes: Vec<String>,
    /// The larger tree size.
    pub new: u64,
    /// The smaller tree size.
    pub old: u64,
}

/// `GET /v1/events/{seq}` and `/v1/events/by-id/{event_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The leaf's chain hash, base64.
    pub chain_hash: String,
    /// The envelope as received (JSON).
    pub envelope: Value,
    /// The event id.
    pub event_id: String,
    /// The leaf bytes, base64.
    pub leaf: String,
    /// The leaf's Merkle hash, base64.
    pub leaf_hash: String,
    /// The event payload (JSON).
    pub payload: Value,
    /// When the ledger received it (RFC 3339 UTC).
    pub received_at: String,
    /// Its seq.
    pub seq: u64,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, `ready`, or why the server is not ready.
    pub status: String,
    /// The tree size, when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed bodies print exactly as the `json!` trees they replaced.
    #[test]
    fn bodies_print_as_the_json_trees_did() {
        let key = Key {
            added_seq: 3,
            key_id: "ab".into(),
            name: "k".into(),
            pdp_id: "p".into(),
            public_key: "AA==".into(),
            revoked_seq: None,
        };
        let tree = json!({"keys": [{"name": "k", "pdp_id": "p", "public_key": "AA==", "key_id": "ab",
            "added_seq": 3, "revoked_seq": null}]});
        assert_eq!(serde_json::to_string(&Keys { keys: vec![key] }).unwrap(), tree.to_string());

        let mut created = TokenCreated {
            created_seq: 5,
            expires_at: None,
            name: "t".into(),
            pdp_id: None,
            role: Role::Ingest,
            token: "actlog_x".into(),
        };
        let tree = json!({"token": "actlog_x", "name": "t", "role": "ingest", "pdp_id": null, "created_seq": 5});
        assert_eq!(serde_json::to_string(&created).unwrap(), tree.to_string());
        created.expires_at = Some("2027-01-01T00:00:00Z".into());
        let mut tree = tree;
        tree["expires_at"] = "2027-01-01T00:00:00Z".into();
        assert_eq!(serde_json::to_string(&created).unwrap(), tree.to_string());

        let log =
            Log { checkpoint: None, origin: "o".into(), tree_size: 0, verifier_key: "vk".into(), witnessing: None };
        let tree = json!({"origin": "o", "verifier_key": "vk", "tree_size": 0, "checkpoint": null});
        assert_eq!(serde_json::to_string(&log).unwrap(), tree.to_string());
        let log = Log {
            witnessing: Some(Witnessing {
                witnessed_checkpoint: Some("n".into()),
                witnessed_tree_size: Some(2),
                witnesses: json!([{"name": "w"}]),
                witness_policy: Some("quorum none\n".into()),
            }),
            ..log
        };
        let mut tree = tree;
        tree["witnessed_tree_size"] = json!(2);
        tree["witnessed_checkpoint"] = json!("n");
        tree["witnesses"] = json!([{"name": "w"}]);
        tree["witness_policy"] = json!("quorum none\n");
        assert_eq!(serde_json::to_string(&log).unwrap(), tree.to_string());
        assert_eq!(
            serde_json::from_str::<Log>(&tree.to_string()).unwrap(),
            log,
            "the CLI reads what the server writes"
        );

        let ready = Health { status: "ready".into(), tree_size: Some(4) };
        assert_eq!(serde_json::to_string(&ready).unwrap(), json!({"status": "ready", "tree_size": 4}).to_string());
        let ok = Health { status: "ok".into(), tree_size: None };
        assert_eq!(serde_json::to_string(&ok).unwrap(), json!({"status": "ok"}).to_string());
    }
}
