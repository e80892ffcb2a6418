//! actlog-core: the ledger's pure logic.
//!
//! This crate holds every rule that decides what the ledger accepts and what
//! its bytes mean: DSSE envelopes and PAE ([`dsse`]), the one signature
//! acceptance rule ([`sig`]), event validation and normalization ([`event`]),
//! the leaf encoding and blake3 chain ([`leaf`]), the RFC 6962 Merkle tree and
//! its proofs ([`merkle`]), C2SP signed-note checkpoints ([`note`]), and
//! request bodies as they arrive: bounded gunzip and batch splitting ([`body`]),
//! an export bundle's signed manifest ([`bundle`]),
//! with the `sql` feature, what a SQL query may be ([`sql`]), and with the
//! `arrow` feature, the Arrow rows of the SQL tables ([`rows`]).
//!
//! Architecture invariant: this crate does no IO, spawns nothing (the
//! `parallel` feature's checks run on the caller's rayon pool), and never
//! reads the clock, the environment or a random source. Time, keys and seeds
//! are arguments. It must not depend on rocksdb, datafusion, axum or clap
//! (`crates/actlog-cli/tests/cli/quarantine.rs` enforces it).

#![deny(missing_docs)]

pub mod authzen;
pub mod b64;
pub mod body;
pub mod bundle;
pub mod canonical;
pub mod cerbos;
pub mod dsse;
pub mod event;
pub mod ingest;
pub mod leaf;
pub mod ledger;
pub mod merkle;
pub mod note;
pub mod opa;
pub mod role;
#[cfg(feature = "arrow")]
pub mod rows;
pub mod sig;
#[cfg(feature = "sql")]
pub mod sql;
pub mod tiles;
pub mod time;
pub mod tlog_proof;
pub mod wire;
pub mod witness;

pub use leaf::Hash;

/// The text form of an API token made from 32 secret random bytes:
/// `actlog_` and 43 URL-safe base64 characters. One format for the CLI and
/// the server; the caller supplies the randomness.
pub fn api_token(secret: &[u8; 32]) -> String {
    use base64::Engine;
    format!("actlog_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret))
}
