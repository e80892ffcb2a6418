//! The `actlog` binary as its users run it, in one test binary (each
//! binary links RocksDB and DataFusion, which costs minutes of linking on
//! two cores):
//! - `commands`: exit codes, stdout, file modes, import, export, evidence, migrate;
//! - `serve`: `actlog serve` as a process (SIGTERM, SIGKILL under load, config
//!   file, hostile clients, full disk, TLS, tiles, witnesses);
//! - `archive`: `serve --archive` to files and to an S3 server, `verify --archive`;
//! - `sql`: the same answers through `actlog sql`, `POST /v1/sql` and psql;
//! - `quarantine`: the dependency rules of the workspace.

mod archive;
mod commands;
mod quarantine;
mod serve;
mod sql;
