//! Compliance evidence bundles (contract section 9): NIST CSF 2.0 findings
//! over an export bundle.
//!
//! An evidence bundle is an export bundle (Parquet, `bundle.rs`) of the
//! window plus three report files, signed together:
//! - `findings.json`: per control, its status (`pass`, `fail`,
//!   `not_applicable`), metrics, the SQL that produced them, and detail rows;
//! - `findings.ocsf.jsonl`: one OCSF 1.8.0 Compliance Finding (class 2003)
//!   per control;
//! - `report.html`: the same, for people; self-contained (no scripts, no
//!   external styles, fonts or images; charts are inline SVG).
//!
//! Each control is data: its queries, with its id, standard and title, are
//! one file in `sql/` (the format is in `spec.rs`), pinned on the fixture
//! ledger by `tests/slt/09_evidence_controls.slt`. Its status and summary
//! are judged in `judge.rs`.
//!
//! Every metric is one SQL query over the ledger's tables, limited to the
//! exported window and to the covering checkpoint's tree size, so the
//! findings describe exactly the rows in the bundle. The queries use only
//! `events` and `delegation_hops` columns, which the bundle's Parquet files
//! have too, so an auditor can rerun them (DuckDB, DataFusion) on the bundle.
//! The integrity finding (AU-9, AU-10) reports `actlog verify` of the ledger
//! and of the bundle's own data.

#[cfg(feature = "write")]
pub mod controls;
#[cfg(feature = "write")]
pub mod html;
#[cfg(feature = "write")]
mod judge;
#[cfg(feature = "write")]
pub mod spec;

#[cfg(feature = "write")]
pub use controls::*;

use actlog_core::bundle::Reports;

/// The framework the findings are for.
pub const FRAMEWORK: &str = "nist-csf-2.0";
/// The findings, one object per control.
pub const FINDINGS_FILE: &str = "findings.json";
/// The findings as OCSF Compliance Findings, one per line.
pub const OCSF_FINDINGS_FILE: &str = "findings.ocsf.jsonl";
/// The report for people.
pub const REPORT_FILE: &str = "report.html";

/// The report files of an evidence bundle (see [`crate::REPORTS`]).
pub const CSF_REPORTS: Reports =
    Reports { framework: FRAMEWORK, files: &[FINDINGS_FILE, OCSF_FINDINGS_FILE, REPORT_FILE] };
