//! The query and export layers' integration tests, in one binary (here, in
//! the crate above both): each test binary links DataFusion and RocksDB, so
//! one link instead of five saves minutes of a cold CI run on two cores.
//!
//! - `engine`: the sandbox, each limit by name, pushdown, snapshots during
//!   ingest, segment checks, rebuilds and their tamper campaign.
//! - `slt`: the `tests/slt/` files on the fixture ledger of `common`.
//! - `fast_strings`: the string fast paths against DataFusion's operators.
//! - `bundle`: export bundles and every kind of change to one.
//! - `evidence`: findings against the anomalies the generator planted.

mod bundle;
mod common;
mod engine;
mod evidence;
mod fast_strings;
mod slt;
