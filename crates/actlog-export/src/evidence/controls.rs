//! The findings of the controls (their queries in `sql/*.sql`, read by
//! `spec.rs`; their judgement in `judge.rs`), the OCSF records and the
//! signed bundle they make.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use actlog_core::time;
use serde::Serialize;
use serde_json::{Value, json};

use actlog_query::{Engine, QueryOptions};

use super::spec::{self, Item, Kind, When};
use super::{FINDINGS_FILE, FRAMEWORK, OCSF_FINDINGS_FILE, REPORT_FILE, judge};
use crate::{self as bundle, BundleOptions, EVIDENCE_TABLE, ExportError, ExportOptions, FileEntry, Format, Manifest};

/// Detail rows kept per table of a finding.
pub const DETAIL_ROWS_MAX: usize = 100;
/// A pair (purpose scope, tool) is off-purpose when it makes up less than
/// 1 in `OFF_PURPOSE_RATIO` of the scope's allowed tool calls.
pub const OFF_PURPOSE_RATIO: u64 = 200;
/// Denies of one agent in one task that make a burst.
pub const DENY_BURST_MIN: u64 = 10;
/// Risk score at or above which an allow is reported.
pub const HIGH_RISK: f64 = 90.0;
/// An event more than this far ahead of the ledger's clock (seconds) has a skewed PDP clock.
pub const FUTURE_SKEW_SECS: i64 = 300;
/// An event that reached the ledger more than this long (seconds) after its
/// `event_time` was not available for continuous monitoring.
pub const LATE_SECS: i64 = 3600;

/// A control's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The control's checks hold.
    Pass,
    /// At least one check found something to act on.
    Fail,
    /// Nothing in the window the control applies to.
    NotApplicable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "not_applicable",
        }
    }
}

/// Rows behind a finding, for review.
#[derive(Debug, Clone, Serialize)]
pub struct Details {
    /// What they are.
    pub name: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Up to [`DETAIL_ROWS_MAX`] rows, as text (NULL as null).
    pub rows: Vec<Vec<Option<String>>>,
    /// The query.
    pub sql: String,
}

/// One control's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `PR.AA-05`, `AU-9/AU-10`, ...
    pub control_id: String,
    /// `NIST CSF 2.0` or `NIST SP 800-53 Rev. 5`.
    pub standard: String,
    /// The control's title.
    pub title: String,
    /// Its status.
    pub status: Status,
    /// One sentence: what was found.
    pub summary: String,
    /// Named values.
    pub metrics: BTreeMap<String, Value>,
    /// The query of each metric that came from SQL, by metric name.
    pub sql: BTreeMap<String, String>,
    /// Rows for review.
    pub details: Vec<Details>,
}

/// How to build the evidence.
#[derive(Debug, Clone, Copy)]
pub struct EvidenceOptions<'a> {
    /// Window start on `event_time` (unix nanoseconds), inclusive.
    pub from: Option<i64>,
    /// Window end, exclusive.
    pub to: Option<i64>,
    /// Also check every producer signature of the whole ledger (slow on a
    /// large ledger; the bundle's own events are always checked).
    pub ledger_signatures: bool,
    /// A witness policy the bundle's checkpoint must meet (see `ExportOptions`).
    pub policy: Option<&'a actlog_core::witness::Policy>,
}

/// What an evidence run wrote.
#[derive(Debug, Clone)]
pub struct EvidenceReport {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The findings.
    pub findings: Vec<Finding>,
}

/// Runs a control's queries, keeping the text of every query.
struct Sql<'a> {
    engine: &'a Engine,
    tree_size: u64,
    from: Option<i64>,
    to: Option<i64>,
}

/// A number as JSON: an integer when it is one.
fn number_json(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 { json!(v as i64) } else { json!(v) }
}

impl Sql<'_> {
    async fn rows(&self, sql: &str) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), ExportError> {
        let out = self
            .engine
            .query(sql, &QueryOptions::default())
            .await
            .map_err(|e| ExportError::Ledger(format!("{e}\nquery: {sql}")))?;
        let cols = out.schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok((cols, actlog_query::output::to_text_rows(&out.batches)))
    }

    /// Runs one item of a control into its finding; a metric's number goes
    /// into `seen` too.
    async fn item(&self, f: &mut Finding, it: &Item, seen: &mut BTreeMap<String, f64>) -> Result<(), ExportError> {
        let runs = match &it.when {
            When::Always => true,
            When::Positive(m) => seen.get(m).is_some_and(|v| *v > 0.0),
            When::WindowStart { .. } => self.from.is_some(),
        };
        let sql = spec::render(&it.sql, self.tree_size, self.from, self.to);
        match &it.kind {
            Kind::Note(text) => {
                f.metrics.insert(it.name.clone(), json!(spec::render(text, self.tree_size, self.from, self.to)));
            }
            Kind::Reuse => {
                let v = seen.get(&it.name).copied().ok_or_else(|| {
                    ExportError::Ledger(format!(
                        "evidence control {} reuses `{}` before it is computed",
                        f.control_id, it.name
                    ))
                })?;
                f.metrics.insert(it.name.clone(), number_json(v));
            }
            _ if !runs => {
                if let When::WindowStart { otherwise: Some(t) } = &it.when {
                    f.metrics.insert(it.name.clone(), json!(t));
                }
            }
            Kind::Metric => {
                let (_, rows) = self.rows(&sql).await?;
                let text = rows.first().and_then(|r| r.first().cloned().flatten());
                // NULL (an empty aggregate) is 0.
                let v: f64 = match &text {
                    None => 0.0,
                    Some(t) => {
                        t.parse().map_err(|_| ExportError::Ledger(format!("`{t}` is not a number\nquery: {sql}")))?
                    }
                };
                f.metrics.insert(it.name.clone(), number_json(v));
                f.sql.insert(it.name.clone(), sql);
                seen.insert(it.name.clone(), v);
            }
            Kind::Text => {
                let (_, rows) = self.rows(&sql).await?;
                let v = rows.first().and_then(|r| r.first().cloned().flatten());
                f.metrics.insert(it.name.clone(), json!(v));
                f.sql.insert(it.name.clone(), sql);
            }
            Kind::Details => {
                let (columns, mut rows) = self.rows(&sql).await?;
                rows.truncate(DETAIL_ROWS_MAX);
                f.details.push(Details { name: it.name.clone(), columns, rows, sql });
            }
        }
        Ok(())
    }
}

fn finding(control_id: &str, standard: &str, title: &str) -> Finding {
    Finding {
        control_id: control_id.into(),
        standard: standard.into(),
        title: title.into(),
        status: Status::NotApplicable,
        summary: String::new(),
        metrics: BTreeMap::new(),
        sql: BTreeMap::new(),
        details: Vec::new(),
    }
}

const SP80053: &str = "NIST SP 800-53 Rev. 5";

/// Computes every finding for the window, at tree size `tree_size`: the
/// controls of `sql/*.sql` in order, each judged by `judge.rs`, then
/// `integrity`, the AU-9/AU-10 finding the caller made from the
/// verification runs.
pub async fn findings(
    engine: &Engine,
    tree_size: u64,
    from: Option<i64>,
    to: Option<i64>,
    integrity: Finding,
) -> Result<Vec<Finding>, ExportError> {
    let q = Sql { engine, tree_size, from, to };
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for c in spec::CONTROLS.iter() {
        let mut f = finding(&c.id, &c.standard, &c.title);
        for it in &c.items {
            q.item(&mut f, it, &mut seen).await?;
        }
        judge::judge(&mut f, &judge::Numbers::new(&seen))?;
        out.push(f);
    }
    out.push(integrity);
    Ok(out)
}

/// The AU-9/AU-10 finding from the two verifications: the ledger's
/// (`actlog verify`) and the bundle's (`actlog verify --bundle`).
pub fn integrity_finding(ledger: Result<(u64, u64, u64, bool), String>, bundle: &bundle::BundleReport) -> Finding {
    let mut f = finding("AU-9/AU-10", SP80053, "Protection of Audit Information; Non-repudiation");
    f.metrics.insert("bundle_leaves_checked".into(), json!(bundle.leaves));
    f.metrics.insert("bundle_signatures_checked".into(), json!(bundle.signatures));
    f.metrics.insert("bundle_rows_checked".into(), json!(bundle.rows));
    f.metrics.insert("tree_size".into(), json!(bundle.manifest.tree_size));
    f.metrics.insert("root_hash".into(), json!(bundle.manifest.root_hash));
    match ledger {
        Ok((leaves, checkpoints, signatures, full)) => {
            f.metrics.insert("ledger_leaves_verified".into(), json!(leaves));
            f.metrics.insert("ledger_checkpoints_verified".into(), json!(checkpoints));
            f.metrics.insert("ledger_signatures_verified".into(), json!(signatures));
            f.metrics.insert(
                "ledger_verification".into(),
                json!(if full { "full: leaves, chain, tree, checkpoints, registry, every signature" } else {
                    "structural: leaves, chain, tree, checkpoints, registry (rerun with --ledger-signatures for every signature)"
                }),
            );
            f.status = Status::Pass;
            let how = if full {
                format!("every leaf, checkpoint and signature ({signatures})")
            } else {
                "leaves, chain, tree, checkpoints and registry; producer signatures only for the bundle's events"
                    .to_string()
            };
            f.summary = format!(
                "The ledger verified ({leaves} leaves, {checkpoints} checkpoints: {how}); the bundle's {} events \
                 verified against the signed checkpoint at tree size {}, each with its producer signature.",
                bundle.manifest.events, bundle.manifest.tree_size
            );
        }
        Err(e) => {
            f.metrics.insert("ledger_verification_failure".into(), json!(e));
            f.status = Status::Fail;
            f.summary = format!("The ledger did not verify: {e}");
        }
    }
    f
}

/// The OCSF 1.8.0 Compliance Finding (class 2003) of a finding.
pub fn ocsf_compliance_finding(f: &Finding, manifest: &Manifest, now_ms: i64) -> Value {
    let (status_id, status) = match f.status {
        Status::Pass => (1, "Pass"),
        Status::Fail => (3, "Fail"),
        Status::NotApplicable => (0, "Unknown"),
    };
    let severity_id = if f.status == Status::Fail { 4 } else { 1 };
    // One control id per finding; AU-9/AU-10 names AU-9 and lists both.
    let requirements: Vec<&str> = f.control_id.split('/').collect();
    let control = requirements[0];
    let uid = format!(
        "{}:{}:{}:{}:{}",
        manifest.origin,
        manifest.tree_size,
        manifest.from.as_deref().unwrap_or("-"),
        manifest.to.as_deref().unwrap_or("-"),
        f.control_id
    );
    json!({
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2003,
        "class_name": "Compliance Finding",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200301,
        "type_name": "Compliance Finding: Create",
        "severity_id": severity_id,
        "time": now_ms,
        "status_id": 1,
        "status": "New",
        "message": f.summary,
        "metadata": {
            "version": crate::ocsf::OCSF_VERSION,
            "product": {"name": "actlog", "vendor_name": "actlog", "version": env!("CARGO_PKG_VERSION")},
            "log_provider": manifest.origin,
            "uid": uid,
        },
        "finding_info": {
            "uid": uid,
            "title": f.title,
            "desc": f.summary,
            "created_time": now_ms,
        },
        "resources": [{"type": "actlog ledger", "uid": manifest.origin}],
        "compliance": {
            "control": control,
            "requirements": requirements,
            "standards": [f.standard],
            "status_id": status_id,
            "status": status,
            "status_details": [f.summary],
        },
        "unmapped": {"actlog": {
            "metrics": f.metrics,
            "tree_size": manifest.tree_size,
            "root_hash": manifest.root_hash,
            "from": manifest.from,
            "to": manifest.to,
        }},
    })
}

/// Writes an evidence bundle: the export, both verifications, the
/// findings, the reports, and the signed manifest over all of them.
pub async fn evidence(
    engine: &Engine,
    seed: &[u8; 32],
    out: &Path,
    opts: &EvidenceOptions<'_>,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<EvidenceReport, ExportError> {
    let export_opts =
        ExportOptions { from: opts.from, to: opts.to, format: Format::Parquet, policy: opts.policy, seqs: None };
    bundle::begin(engine, seed, out, &export_opts)?;
    let written = bundle::write_export(engine, out, &export_opts, &|d, t| progress("export", d, t))
        .await
        .map_err(|e| bundle::incomplete(out, e))?;
    let mut manifest = written.manifest;
    // Signed first as a plain export, so that it can be verified: a crash
    // before the reports are signed leaves an export, never a bundle that
    // claims to be evidence.
    bundle::sign_bundle(out, &manifest, seed)?;
    // The data part is signed so that it can be verified; until the reports
    // are signed too, a failure must not leave a bundle that verifies.
    match finish_evidence(engine, seed, out, opts, progress, &mut manifest).await {
        Ok(found) => Ok(EvidenceReport { manifest, findings: found }),
        Err(e) => {
            let _ = std::fs::remove_file(out.join(bundle::SIGNED_MANIFEST_FILE));
            Err(bundle::incomplete(out, e))
        }
    }
}

async fn finish_evidence(
    engine: &Engine,
    seed: &[u8; 32],
    out: &Path,
    opts: &EvidenceOptions<'_>,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
    manifest: &mut Manifest,
) -> Result<Vec<Finding>, ExportError> {
    let key = engine.store().verifier_key().clone();
    let checked = bundle::verify(
        out,
        &BundleOptions {
            expected_key: Some(key),
            progress: Some(&|d, t| progress("verify bundle", d, t)),
            ..Default::default()
        },
    )
    .map_err(|f| {
        ExportError::Corruption(format!("the bundle just written does not verify (a bug; please report it): {f}"))
    })?;
    let store = engine.store().clone();
    let ledger = actlog_store::verify::verify(
        &store,
        &actlog_store::verify::VerifyOptions {
            signatures: opts.ledger_signatures,
            progress: Some(&|d, t| progress("verify ledger", d, t)),
            ..Default::default()
        },
    )
    .map(|r| (r.tree_size, r.checkpoints, r.signatures, opts.ledger_signatures))
    .map_err(|f| f.to_string());
    let integrity = integrity_finding(ledger, &checked);
    let found = findings(engine, manifest.tree_size, opts.from, opts.to, integrity).await?;

    let now = actlog_store::clock::now_ns();
    let doc = json!({
        "framework": FRAMEWORK,
        "origin": manifest.origin,
        "verifier_key": manifest.verifier_key,
        "tree_size": manifest.tree_size,
        "root_hash": manifest.root_hash,
        "from": manifest.from,
        "to": manifest.to,
        "generated_at": time::format_rfc3339_utc(now),
        "events": manifest.events,
        "findings": found,
    });
    let findings_bytes = serde_json::to_vec_pretty(&doc).expect("findings serialize");
    let mut ocsf_lines = String::new();
    for f in &found {
        ocsf_lines.push_str(&ocsf_compliance_finding(f, manifest, now.div_euclid(1_000_000)).to_string());
        ocsf_lines.push('\n');
    }
    let html = super::html::report(manifest, &found, &time::format_rfc3339_utc(now));
    for (name, bytes, rows) in [
        (FINDINGS_FILE, findings_bytes, found.len()),
        (OCSF_FINDINGS_FILE, ocsf_lines.into_bytes(), found.len()),
        (REPORT_FILE, html.into_bytes(), 1),
    ] {
        let path = out.join(name);
        let mut f =
            std::fs::File::create(&path).map_err(|e| ExportError::Io(format!("writing {}: {e}", path.display())))?;
        std::io::Write::write_all(&mut f, &bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| ExportError::Io(format!("writing {}: {e}", path.display())))?;
        use sha2::Digest;
        manifest.files.push(FileEntry {
            path: name.into(),
            table: EVIDENCE_TABLE.into(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
            rows: rows as u64,
            first_seq: manifest.first_seq,
            last_seq: manifest.last_seq,
        });
    }
    manifest.framework = Some(FRAMEWORK.into());
    bundle::sign_bundle(out, manifest, seed)?;
    Ok(found)
}

/// Counts of findings by status, for summaries.
pub fn tally(found: &[Finding]) -> String {
    let mut s = String::new();
    for st in [Status::Pass, Status::Fail, Status::NotApplicable] {
        let n = found.iter().filter(|f| f.status == st).count();
        let _ = write!(s, "{}{n} {}", if s.is_empty() { "" } else { ", " }, st.as_str());
    }
    s
}
