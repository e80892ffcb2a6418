//! actlog-export: export bundles (contract section 8), compliance evidence
//! (section 9), the OCSF mapping and the evidence report, and the offline
//! verification of bundles.
//!
//! Rooms:
//! - [`format`]: what the data files hold (Parquet, NDJSON, OCSF);
//! - `write` (feature `write`): writing a bundle from a ledger and signing it;
//! - [`leaves`]: `leaves.parquet` and the leaf-by-leaf check of a bundle;
//! - [`files`]: reading a bundle's files safely (no links, no swaps);
//! - [`verify`]: verification, as named steps;
//! - [`evidence`]: the NIST CSF 2.0 report files (always) and the controls
//!   that compute them (feature `write`);
//! - [`ocsf`]: OCSF 1.8.0 API Activity records of rows.
//!
//! The manifest's types and its signature checks are `actlog_core::bundle`.
//!
//! Architecture invariant: without the default `write` feature, this crate
//! reaches no RocksDB, DataFusion or async runtime, so an offline verifier
//! links only core, Arrow and Parquet (`crates/actlog-cli/tests/cli/quarantine.rs`
//! checks it).
//!
//! A bundle is a directory:
//! - `events/date=YYYY-MM-DD/part-NNNNN.parquet` and
//!   `delegation_hops/date=YYYY-MM-DD/part-NNNNN.parquet`: the rows of the
//!   SQL tables, same columns and types, for the events whose `event_time`
//!   falls in the window, partitioned by its UTC date, in seq order.
//!   `--format ndjson` writes the same rows as JSON lines (`.ndjson`);
//!   `--format ocsf` writes OCSF API Activity lines under `ocsf/`.
//! - `leaves.parquet`: `seq`, `leaf` and `envelope` of every leaf from the
//!   first exported event to the last, and of every ledger record (key and
//!   token history) before it. Envelopes are kept for exported events and
//!   ledger records only.
//! - `checkpoint.txt`: the signed checkpoint the bundle is proven against.
//! - `manifest.json`: each file's SHA-256, size, rows and seq range, the
//!   window, the checkpoint, and inclusion proofs: of the first exported
//!   leaf, and of the last leaf of every run of consecutive leaves.
//! - `manifest.dsse.json`: a DSSE envelope of an in-toto Statement v1 whose
//!   subjects are all the files above, signed by the ledger key.
//!
//! [`verify`] trusts only the ledger key. It checks the signed statement,
//! then every file's hash, before it parses any data file; then the
//! checkpoint, the leaves (their blake3 chain, and an inclusion proof at the
//! end of each run, so every leaf of a run is proven by one proof), every
//! envelope under the same rules as `actlog verify` (hashes, schema, the key
//! or token active at its seq, the signature), and finally every exported
//! row against the row rebuilt from its envelope.

pub mod evidence;
pub mod files;
pub mod format;
pub mod leaves;
pub mod ocsf;
pub mod verify;
#[cfg(feature = "write")]
pub mod write;

pub use actlog_core::bundle::{
    BUNDLE_FORMAT, BundleFailure, CHECKPOINT_FILE, EVIDENCE_TABLE, FileEntry, LEAVES_FILE, MANIFEST_BYTES_MAX,
    MANIFEST_FILE, Manifest, PREDICATE_TYPE, Proof, Reports, SIGNED_MANIFEST_FILE, STATEMENT_PAYLOAD_TYPE,
    STATEMENT_TYPE,
};
pub use format::Format;
pub use verify::{BUNDLE_FILES_MAX, BundleOptions, BundleReport, verify};
#[cfg(feature = "write")]
pub use write::{ExportOptions, ExportReport, OPEN_FILES_MAX, begin, export, incomplete, sign_bundle, write_export};

/// Why writing a bundle failed. The messages are the CLI's.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// It cannot be done as asked: the key, the window, the output
    /// directory, an empty selection, no checkpoint that fits.
    #[error("{0}")]
    Refused(String),
    /// A file of the bundle could not be written.
    #[error("{0}")]
    Io(String),
    /// The ledger's data disagrees with itself: run `actlog verify`.
    #[error("corruption: {0}")]
    Corruption(String),
    /// Reading the ledger or querying it failed.
    #[error("{0}")]
    Ledger(String),
    /// A failure after [`begin`] made the directory: it is not a bundle.
    #[cfg(feature = "write")]
    #[error("{error} ({} is incomplete: delete it)", dir.display())]
    Incomplete {
        /// What failed.
        error: Box<ExportError>,
        /// The directory left behind.
        dir: std::path::PathBuf,
    },
}

#[cfg(feature = "write")]
impl From<actlog_store::Error> for ExportError {
    fn from(e: actlog_store::Error) -> Self {
        ExportError::Ledger(e.to_string())
    }
}

/// The report files each kind of report bundle adds, registered by their
/// modules: verification checks an evidence bundle holds exactly these.
pub const REPORTS: &[Reports] = &[evidence::CSF_REPORTS];

/// The UTC date of a timestamp, `YYYY-MM-DD`: a data file's partition.
fn date_of(unix_nanos: i64) -> String {
    actlog_core::time::format_rfc3339_utc(unix_nanos)[..10].to_string()
}
