//! actlog's query layer: DataFusion SQL over the ledger.
//!
//! The ledger in RocksDB is the source of truth. This crate reads Arrow
//! data derived from it: sealed Parquet segments (`segments`) plus the
//! not-yet-sealed tail decoded live, so a query sees every acknowledged
//! event. It holds the only `datafusion` dependency.
//!
//! - `rows`: the `events` and `delegation_hops` schemas and the decoding of
//!   stored events into rows.
//! - `segments`: sealing, the manifest, and verification against the ledger.
//! - `string_groups`, `string_eq`: faster `GROUP BY` on string columns and
//!   short-string equality filters (same answers as DataFusion's own).
//! - `provider`: the tables, with index pushdown and segment pruning.
//! - `engine`: the read-only sandbox, the per-query limits, snapshots.
//! - `budget`: the SQL threads, the depth limit and the function output caps.
//! - `tables`: `checkpoints`, `producer_keys`, the `decision_chains` view.
//! - `chain`: chain reconstruction through the store's indexes.
//! - `output`: JSON, CSV, Arrow IPC and text table results.
//! - `bundle`: export bundles (Parquet, NDJSON, OCSF) and their offline
//!   verification; `ocsf`: the OCSF API Activity mapping.
//! - `evidence`, `evidence_html`: NIST CSF 2.0 evidence bundles (findings,
//!   OCSF Compliance Findings, the self-contained HTML report).
//! - `local_files`: segment reads on the calling thread (no blocking-pool hop).

pub mod budget;
pub mod bundle;
pub mod chain;
pub mod engine;
pub mod evidence;
pub mod evidence_html;
pub mod local_files;
pub mod ocsf;
pub mod output;
pub mod provider;
pub mod rows;
pub mod segments;
pub mod string_eq;
pub mod string_groups;
pub mod tables;

pub use datafusion;
pub use engine::{Engine, EngineOptions, QueryError, QueryLimits, QueryOptions, QueryOutput};

/// What can go wrong below SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(actlog_store::Error),
    /// Derived or stored data is not what the ledger says.
    #[error("corruption: {0}")]
    Corruption(String),
    /// A segment file could not be read or written.
    #[error("segment I/O: {0}")]
    Io(String),
}

impl From<actlog_store::Error> for Error {
    fn from(e: actlog_store::Error) -> Error {
        match e {
            actlog_store::Error::Corruption(m) => Error::Corruption(m),
            e => Error::Store(e),
        }
    }
}
