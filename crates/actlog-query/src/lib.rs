//! actlog's query layer: DataFusion SQL over the ledger.
//!
//! The ledger in RocksDB is the source of truth. This crate reads Arrow
//! data derived from it: sealed Parquet segments (`segments`) plus the
//! not-yet-sealed tail decoded live, so a query sees every acknowledged
//! event. It holds the only `datafusion` dependency.
//!
//! - `rows` (core's, re-exported): the `events` and `delegation_hops`
//!   schemas and the decoding of stored events into rows.
//! - `segments`: sealing, the manifest, and verification against the ledger.
//! - `string_groups`, `string_eq`: faster `GROUP BY` on string columns and
//!   short-string equality filters (same answers as DataFusion's own).
//! - `provider`: the tables, with index pushdown and segment pruning.
//! - `engine`: the read-only sandbox, the per-query limits, snapshots.
//! - `budget`: the SQL threads, the depth limit and the function output caps.
//! - `tables`: `checkpoints`, `producer_keys`, the `decision_chains` view.
//! - `chain`: chain reconstruction through the store's indexes.
//! - `output`: JSON, CSV, Arrow IPC and text table results.
//! - `local_files`: segment reads on the calling thread (no blocking-pool hop).
//! - `archive_files`: retired segments' rows, read from the archive and
//!   checked against their recorded hashes.

pub mod archive_files;
pub mod budget;
pub mod chain;
pub mod engine;
pub mod local_files;
pub mod output;
pub mod provider;
pub mod segments;
pub mod string_eq;
pub mod string_groups;
pub mod tables;

pub use actlog_core::rows;
pub use datafusion;
pub use engine::{Engine, EngineOptions, QueryError, QueryLimits, QueryOptions, QueryOutput};
pub use object_store;

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

impl From<rows::Corrupt> for Error {
    fn from(e: rows::Corrupt) -> Error {
        Error::Corruption(e.0)
    }
}

impl From<actlog_store::Error> for Error {
    fn from(e: actlog_store::Error) -> Error {
        match e {
            actlog_store::Error::Corruption(m) => Error::Corruption(m),
            e => Error::Store(e),
        }
    }
}
