//! The controls: each one SQL query (or a few) over the exported window,
//! and the findings, OCSF records and signed bundle they make.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use actlog_core::time;
use serde::Serialize;
use serde_json::{Value, json};

use actlog_query::{Engine, QueryOptions};

use super::{FINDINGS_FILE, FRAMEWORK, OCSF_FINDINGS_FILE, REPORT_FILE};
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

/// `90061.5` → `1.0 d`, for summaries.
fn human_seconds(s: f64) -> String {
    let a = s.abs();
    let sign = if s < 0.0 { "-" } else { "" };
    if a < 120.0 {
        format!("{sign}{a:.1} s")
    } else if a < 7200.0 {
        format!("{sign}{:.0} min", a / 60.0)
    } else if a < 172_800.0 {
        format!("{sign}{:.1} h", a / 3600.0)
    } else {
        format!("{sign}{:.0} d", a / 86_400.0)
    }
}

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

/// Runs SQL for one finding, keeping the text of every query.
struct Sql<'a> {
    engine: &'a Engine,
    /// `seq < N` and the window, on the alias given.
    window: Box<dyn Fn(&str) -> String + Send + Sync + 'a>,
    tree_size: u64,
}

impl Sql<'_> {
    /// `{w}` is the window on `events` (no alias), `{w:a}` on alias `a`, `{n}` the tree size.
    fn text_of(&self, template: &str) -> String {
        let mut s = template.replace("{n}", &self.tree_size.to_string());
        for a in ["d", "o", "e", "r"] {
            s = s.replace(&format!("{{w:{a}}}"), &(self.window)(&format!("{a}.")));
        }
        s.replace("{w}", &(self.window)(""))
    }

    async fn rows(&self, sql: &str) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), ExportError> {
        let out = self
            .engine
            .query(sql, &QueryOptions::default())
            .await
            .map_err(|e| ExportError::Ledger(format!("{e}\nquery: {sql}")))?;
        let cols = out.schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok((cols, actlog_query::output::to_text_rows(&out.batches)))
    }

    /// A one-number query; NULL (an empty aggregate) is 0.
    async fn number(&self, f: &mut Finding, name: &str, template: &str) -> Result<f64, ExportError> {
        let sql = self.text_of(template);
        let (_, rows) = self.rows(&sql).await?;
        let text = rows.first().and_then(|r| r.first().cloned().flatten());
        let v: f64 = match &text {
            None => 0.0,
            Some(t) => t.parse().map_err(|_| ExportError::Ledger(format!("`{t}` is not a number\nquery: {sql}")))?,
        };
        let json = if v.fract() == 0.0 && v.abs() < 9e15 { json!(v as i64) } else { json!(v) };
        f.metrics.insert(name.to_string(), json);
        f.sql.insert(name.to_string(), sql);
        Ok(v)
    }

    /// A one-value query kept as text (NULL as null).
    async fn text(&self, f: &mut Finding, name: &str, template: &str) -> Result<Option<String>, ExportError> {
        let sql = self.text_of(template);
        let (_, rows) = self.rows(&sql).await?;
        let v = rows.first().and_then(|r| r.first().cloned().flatten());
        f.metrics.insert(name.to_string(), json!(v));
        f.sql.insert(name.to_string(), sql);
        Ok(v)
    }

    async fn details(&self, f: &mut Finding, name: &str, template: &str) -> Result<usize, ExportError> {
        let sql = self.text_of(template);
        let (columns, mut rows) = self.rows(&sql).await?;
        let n = rows.len();
        rows.truncate(DETAIL_ROWS_MAX);
        f.details.push(Details { name: name.to_string(), columns, rows, sql });
        Ok(n)
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

const CSF: &str = "NIST CSF 2.0";
const SP80053: &str = "NIST SP 800-53 Rev. 5";

/// Computes every finding for the window, at tree size `tree_size`.
/// `integrity` is the AU-9/AU-10 finding, made by the caller from the
/// verification runs.
pub async fn findings(
    engine: &Engine,
    tree_size: u64,
    from: Option<i64>,
    to: Option<i64>,
    integrity: Finding,
) -> Result<Vec<Finding>, ExportError> {
    let window = move |a: &str| {
        let mut w = format!("{a}seq < {tree_size}");
        if let Some(f) = from {
            w += &format!(" AND {a}event_time >= to_timestamp_nanos({f})");
        }
        if let Some(t) = to {
            w += &format!(" AND {a}event_time < to_timestamp_nanos({t})");
        }
        w
    };
    let q = Sql { engine, window: Box::new(window), tree_size };
    let mut out = Vec::new();

    // PR.AA-05: every executed action has a linked allowed decision under a recorded policy.
    let mut f = finding(
        "PR.AA-05",
        CSF,
        "Access permissions, entitlements, and authorizations are defined in a policy, managed, enforced, and reviewed, \
         and incorporate the principles of least privilege and separation of duties",
    );
    let decisions = q
        .number(&mut f, "decisions", "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision'")
        .await?;
    let executed = q
        .number(
            &mut f,
            "executed_outcomes",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome' AND outcome_status = 'executed'",
        )
        .await?;
    let orphan = q
        .number(
            &mut f,
            "executed_without_decision",
            "SELECT count(*) FROM events o LEFT JOIN \
             (SELECT event_id FROM events WHERE seq < {n} AND event_type = 'authz.decision') d \
             ON o.decision_event_id = d.event_id \
             WHERE {w:o} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' AND d.event_id IS NULL",
        )
        .await?;
    let bypass = q
        .number(
            &mut f,
            "executed_after_non_allow",
            "SELECT count(*) FROM events o JOIN events d ON o.decision_event_id = d.event_id \
             WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' \
             AND d.event_type = 'authz.decision' AND d.effect <> 'allow'",
        )
        .await?;
    let no_policy = q
        .number(
            &mut f,
            "decisions_without_policy_version",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND policy_version IS NULL",
        )
        .await?;
    // An allowing decision backs one execution, of its own actor, after it.
    let mismatched = q
        .number(
            &mut f,
            "executed_before_decision_or_by_another_actor",
            "SELECT count(*) FROM events o JOIN events d ON o.decision_event_id = d.event_id \
             WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' \
             AND d.event_type = 'authz.decision' AND (o.event_time < d.event_time \
             OR (o.actor_id IS NOT NULL AND d.actor_id IS NOT NULL AND o.actor_id <> d.actor_id))",
        )
        .await?;
    let reused = q
        .number(
            &mut f,
            "decisions_executed_more_than_once",
            "SELECT count(*) FROM (SELECT decision_event_id FROM events WHERE {w} AND event_type = 'authz.outcome' \
             AND outcome_status = 'executed' AND decision_event_id IS NOT NULL \
             GROUP BY decision_event_id HAVING count(*) > 1) t",
        )
        .await?;
    if bypass > 0.0 {
        q.details(
            &mut f,
            "executed after a decision that did not allow",
            "SELECT o.seq, o.event_id, d.seq AS decision_seq, d.effect, o.actor_id, \
             COALESCE(o.tool_name, d.tool_name) AS tool_name, o.event_time \
             FROM events o JOIN events d ON o.decision_event_id = d.event_id \
             WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' \
             AND d.event_type = 'authz.decision' AND d.effect <> 'allow' ORDER BY o.seq",
        )
        .await?;
    }
    q.details(
        &mut f,
        "least privilege review: distinct tools each agent was allowed (top 20)",
        "SELECT actor_id, count(DISTINCT tool_name) AS tools, count(*) AS allowed_calls FROM events \
         WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND tool_name IS NOT NULL \
         GROUP BY actor_id ORDER BY tools DESC, actor_id LIMIT 20",
    )
    .await?;
    f.metrics.insert(
        "scopes_granted_vs_used".into(),
        json!("not measured: trust.scopes_granted is kept in the payload, not a column; the table lists tools used"),
    );
    (f.status, f.summary) = if decisions + executed == 0.0 {
        (Status::NotApplicable, "No decisions or executed actions in the window.".into())
    } else if orphan + bypass + no_policy + mismatched + reused > 0.0 {
        let mut parts = Vec::new();
        if mismatched > 0.0 {
            parts.push(format!("{mismatched} executed actions ran before their decision or by another actor"));
        }
        if reused > 0.0 {
            parts.push(format!("{reused} decisions were executed more than once"));
        }
        if bypass > 0.0 {
            parts.push(format!(
                "{bypass} of {executed} executed actions ran although their decision did not allow them"
            ));
        }
        if orphan > 0.0 {
            parts.push(format!("{orphan} executed actions have no recorded decision"));
        }
        if no_policy > 0.0 {
            parts.push(format!("{no_policy} of {decisions} decisions name no policy version"));
        }
        (Status::Fail, format!("{}. Least privilege (scopes granted against used) is not measured.", parts.join("; ")))
    } else {
        (
            Status::Pass,
            format!(
                "All {executed} executed actions follow an allowing decision under a recorded policy version. \
                 Least privilege (scopes granted against used) is not measured; the tools each agent was allowed are listed."
            ),
        )
    };
    out.push(f);

    // PR.AA-01: agent inventory; no agent acts after its delegation is revoked.
    let mut f = finding(
        "PR.AA-01",
        CSF,
        "Identities and credentials for authorized users, services, and hardware are managed by the organization",
    );
    let agents = q
        .number(
            &mut f,
            "agents",
            "SELECT count(DISTINCT actor_id) FROM events WHERE {w} AND actor_profile = 'ai_agent'",
        )
        .await?;
    q.number(&mut f, "principals", "SELECT count(DISTINCT principal_id) FROM events WHERE {w}").await?;
    let workloads = q
        .number(
            &mut f,
            "agents_with_several_workloads",
            "SELECT count(*) FROM (SELECT actor_id FROM events WHERE {w} AND actor_profile = 'ai_agent' \
             AND actor_workload_id IS NOT NULL GROUP BY actor_id HAVING count(DISTINCT actor_workload_id) > 1) t",
        )
        .await?;
    q.number(&mut f, "revocations", "SELECT count(*) FROM events WHERE {w} AND event_type = 'delegation.revoked'")
        .await?;
    let after = q
        .number(
            &mut f,
            "actions_after_revocation",
            "SELECT count(DISTINCT d.seq) FROM events r JOIN events d ON d.actor_id = r.actor_id AND d.task_id = r.task_id \
             WHERE {w:d} AND r.seq < {n} AND r.event_type = 'delegation.revoked' \
             AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time",
        )
        .await?;
    if after > 0.0 {
        q.details(
            &mut f,
            "allowed after the agent's delegation for the task was revoked",
            "SELECT d.seq, d.event_id, d.actor_id, d.task_id, d.event_time, r.seq AS revoked_seq \
             FROM events r JOIN events d ON d.actor_id = r.actor_id AND d.task_id = r.task_id \
             WHERE {w:d} AND r.seq < {n} AND r.event_type = 'delegation.revoked' \
             AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time ORDER BY d.seq",
        )
        .await?;
    }
    q.details(
        &mut f,
        "agent inventory (top 100 by decisions)",
        "SELECT actor_id, max(actor_iss) AS issuer, max(actor_workload_id) AS workload, max(actor_model) AS model, \
         min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS decisions, \
         sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denied \
         FROM events WHERE {w} AND event_type = 'authz.decision' AND actor_profile = 'ai_agent' \
         GROUP BY actor_id ORDER BY decisions DESC, actor_id LIMIT 100",
    )
    .await?;
    (f.status, f.summary) = if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if after > 0.0 {
        (Status::Fail, format!("{after} actions were allowed after the agent's delegation for their task was revoked."))
    } else {
        let several = if workloads > 0.0 {
            format!("; {workloads} agents appear with more than one workload id (review)")
        } else {
            String::new()
        };
        (
            Status::Pass,
            format!(
                "{agents} AI agents acted in the window; none was allowed to act after its delegation was revoked{several}."
            ),
        )
    };
    out.push(f);

    // PR.AA-03: delegations verified or asserted; events signed by their producer.
    let mut f = finding("PR.AA-03", CSF, "Users, services, and hardware are authenticated");
    let verified = q
        .number(
            &mut f,
            "decisions_verified_or_asserted",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' \
             AND verification_status IN ('verified', 'asserted')",
        )
        .await?;
    f.metrics.insert("decisions".into(), json!(decisions as i64));
    let unverified_allowed = q
        .number(
            &mut f,
            "allowed_unverified",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' \
             AND verification_status = 'unverified'",
        )
        .await?;
    q.number(
        &mut f,
        "events_without_producer_signature",
        "SELECT count(*) FROM events WHERE {w} AND producer_signature = 'none'",
    )
    .await?;
    q.details(
        &mut f,
        "decisions by delegation verification status and effect",
        "SELECT verification_status, effect, count(*) AS decisions FROM events \
         WHERE {w} AND event_type = 'authz.decision' GROUP BY verification_status, effect \
         ORDER BY verification_status, effect",
    )
    .await?;
    (f.status, f.summary) = if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if unverified_allowed > 0.0 {
        (
            Status::Fail,
            format!(
                "{unverified_allowed} actions were allowed on a delegation nobody verified; \
                 {verified} of {decisions} decisions had a verified or asserted delegation."
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "Every allowed action had a verified or asserted delegation ({verified} of {decisions} decisions)."
            ),
        )
    };
    out.push(f);

    // PR.AA-04: failed delegation verifications are never allowed.
    let mut f = finding("PR.AA-04", CSF, "Identity assertions are protected, conveyed, and verified");
    q.number(
        &mut f,
        "verification_failed",
        "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND verification_status = 'failed'",
    )
    .await?;
    let failed_allowed = q
        .number(
            &mut f,
            "allowed_with_failed_verification",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' \
             AND verification_status = 'failed'",
        )
        .await?;
    q.details(
        &mut f,
        "failed or unverified delegations by PDP",
        "SELECT pdp_id, verification_status, count(*) AS decisions, \
         sum(CASE WHEN effect = 'allow' THEN 1 ELSE 0 END) AS allowed FROM events \
         WHERE {w} AND event_type = 'authz.decision' AND verification_status IN ('failed', 'unverified') \
         GROUP BY pdp_id, verification_status ORDER BY pdp_id, verification_status",
    )
    .await?;
    if failed_allowed > 0.0 {
        q.details(
            &mut f,
            "allowed although delegation verification failed",
            "SELECT seq, event_id, actor_id, principal_id, tool_name, event_time FROM events \
             WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND verification_status = 'failed' \
             ORDER BY seq",
        )
        .await?;
    }
    (f.status, f.summary) = if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if failed_allowed > 0.0 {
        (Status::Fail, format!("{failed_allowed} actions were allowed although delegation verification failed."))
    } else {
        (Status::Pass, "No action was allowed on a delegation that failed verification.".into())
    };
    out.push(f);

    // PR.PS-04: log completeness, late and early events.
    let mut f = finding("PR.PS-04", CSF, "Log records are generated and made available for continuous monitoring");
    let in_ledger = q.number(&mut f, "ledger_events", "SELECT count(*) FROM events WHERE seq < {n}").await?;
    let gaps = q.number(&mut f, "seq_gaps", "SELECT {n} - count(*) FROM events WHERE seq < {n}").await?;
    let events = q.number(&mut f, "events_in_window", "SELECT count(*) FROM events WHERE {w}").await?;
    q.text(&mut f, "first_event_time", "SELECT min(event_time) FROM events WHERE {w}").await?;
    q.text(&mut f, "last_event_time", "SELECT max(event_time) FROM events WHERE {w}").await?;
    // In DOUBLE: a BIGINT difference wraps for an event_time centuries back.
    let skew = "(CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9";
    q.number(&mut f, "delay_seconds_min", &format!("SELECT min({skew}) FROM events WHERE {{w}}")).await?;
    let median =
        q.number(&mut f, "delay_seconds_median", &format!("SELECT median({skew}) FROM events WHERE {{w}}")).await?;
    q.number(&mut f, "delay_seconds_max", &format!("SELECT max({skew}) FROM events WHERE {{w}}")).await?;
    let late = q
        .number(
            &mut f,
            "events_received_late",
            &format!("SELECT count(*) FROM events WHERE {{w}} AND {skew} > {LATE_SECS}"),
        )
        .await?;
    let future = q
        .number(
            &mut f,
            "events_ahead_of_ledger_clock",
            &format!("SELECT count(*) FROM events WHERE {{w}} AND {skew} < -{FUTURE_SKEW_SECS}"),
        )
        .await?;
    f.metrics.insert("pdp_drops".into(), json!("not measured: PDPs do not report dropped events to the ledger"));
    (f.status, f.summary) = if in_ledger == 0.0 {
        (Status::NotApplicable, "The ledger is empty.".into())
    } else if gaps > 0.0 || future > 0.0 || late > 0.0 {
        (
            Status::Fail,
            format!(
                "{gaps} seq gaps; {late} of {events} events reached the ledger more than {LATE_SECS} s after they happened \
                 (median delay {}); {future} are stamped more than {FUTURE_SKEW_SECS} s ahead of the ledger's clock. \
                 Drops at the PDP are not measured.",
                human_seconds(median)
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "{in_ledger} events with no seq gap; the {events} in the window reached the ledger within {LATE_SECS} s \
                 (median delay {}). Drops at the PDP are not measured.",
                human_seconds(median)
            ),
        )
    };
    out.push(f);

    // DE.CM-03: off-purpose actions and new agent-tool pairs.
    let mut f = finding(
        "DE.CM-03",
        CSF,
        "Personnel activity and technology usage are monitored to find potentially adverse events",
    );
    // The rare pairs are few: they come first, so the join builds on them
    // and streams the decisions (at 10^7 events the other way round ran out
    // of the query's memory).
    let pairs = format!(
        "WITH pairs AS (SELECT purpose_scope, tool_name, count(*) AS n FROM events \
         WHERE seq < {{n}} AND event_type = 'authz.decision' AND effect = 'allow' \
         AND purpose_scope IS NOT NULL AND tool_name IS NOT NULL GROUP BY purpose_scope, tool_name), \
         scopes AS (SELECT purpose_scope, sum(n) AS total FROM pairs GROUP BY purpose_scope), \
         rare AS (SELECT p.purpose_scope, p.tool_name, p.n, s.total FROM pairs p JOIN scopes s \
         ON p.purpose_scope = s.purpose_scope WHERE p.n * {OFF_PURPOSE_RATIO} < s.total) "
    );
    let off_where = "FROM rare p JOIN events e ON e.purpose_scope = p.purpose_scope AND e.tool_name = p.tool_name \
         WHERE {w:e} AND e.event_type = 'authz.decision' AND e.effect = 'allow'";
    let off = q.number(&mut f, "off_purpose_allowed", &format!("{pairs}SELECT count(*) {off_where}")).await?;
    if off > 0.0 {
        q.details(
            &mut f,
            "allowed tool calls rare for their purpose scope",
            &format!(
                "{pairs}SELECT e.seq, e.event_id, e.actor_id, e.purpose_scope, e.tool_name, p.n AS pair_calls, \
                 p.total AS scope_calls {off_where} ORDER BY e.seq"
            ),
        )
        .await?;
    }
    match from {
        Some(_) => {
            // Both sides are aggregated first: pairs in the window, pairs before it.
            let new_pairs = "SELECT w.actor_id, w.tool_name, w.first_use, w.calls FROM \
                             (SELECT actor_id, tool_name, min(event_time) AS first_use, count(*) AS calls FROM events \
                             WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND tool_name IS NOT NULL \
                             GROUP BY actor_id, tool_name) w LEFT JOIN \
                             (SELECT DISTINCT actor_id, tool_name FROM events \
                             WHERE seq < {n} AND event_type = 'authz.decision' AND effect = 'allow' \
                             AND tool_name IS NOT NULL AND event_time < to_timestamp_nanos({from})) b \
                             ON w.actor_id = b.actor_id AND w.tool_name = b.tool_name WHERE b.actor_id IS NULL"
                .replace("{from}", &from.expect("matched").to_string());
            q.number(&mut f, "new_agent_tool_pairs", &format!("SELECT count(*) FROM ({new_pairs}) t")).await?;
            q.details(
                &mut f,
                "agent-tool pairs first allowed in the window",
                &format!("{new_pairs} ORDER BY first_use"),
            )
            .await?;
        }
        None => {
            f.metrics.insert(
                "new_agent_tool_pairs".into(),
                json!("needs --from: pairs are new against the events before it"),
            );
        }
    }
    f.metrics.insert(
        "off_purpose_rule".into(),
        json!(format!(
            "an allowed call whose (purpose scope, tool) pair makes up less than 1/{OFF_PURPOSE_RATIO} of the scope's allowed calls in the ledger"
        )),
    );
    (f.status, f.summary) = if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if off > 0.0 {
        (Status::Fail, format!("{off} allowed tool calls are rare for their purpose scope; review them."))
    } else {
        (Status::Pass, "No allowed tool call is rare for its purpose scope.".into())
    };
    out.push(f);

    // DE.AE-02: deny bursts and high-risk allows.
    let mut f =
        finding("DE.AE-02", CSF, "Potentially adverse events are analyzed to better understand associated activities");
    let bursts_sql = format!(
        "SELECT actor_id, task_id, count(*) AS denies, min(event_time) AS first, max(event_time) AS last \
         FROM events WHERE {{w}} AND event_type = 'authz.decision' AND effect = 'deny' AND task_id IS NOT NULL \
         GROUP BY actor_id, task_id HAVING count(*) >= {DENY_BURST_MIN}"
    );
    let bursts = q.number(&mut f, "deny_bursts", &format!("SELECT count(*) FROM ({bursts_sql}) t")).await?;
    if bursts > 0.0 {
        q.details(&mut f, "deny bursts (one agent, one task)", &format!("{bursts_sql} ORDER BY first")).await?;
    }
    let risky = q
        .number(
            &mut f,
            "high_risk_allowed",
            &format!("SELECT count(*) FROM events WHERE {{w}} AND event_type = 'authz.decision' AND effect = 'allow' AND risk_score >= {HIGH_RISK}"),
        )
        .await?;
    if risky > 0.0 {
        q.details(
            &mut f,
            "allowed at a high risk score",
            &format!(
                "SELECT seq, event_id, actor_id, tool_name, risk_score, event_time FROM events WHERE {{w}} \
                 AND event_type = 'authz.decision' AND effect = 'allow' AND risk_score >= {HIGH_RISK} ORDER BY seq"
            ),
        )
        .await?;
    }
    q.details(
        &mut f,
        "decisions per day",
        "SELECT CAST(date_trunc('day', event_time) AS DATE) AS day, \
         sum(CASE WHEN effect = 'allow' THEN 1 ELSE 0 END) AS allowed, \
         sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denied, \
         sum(CASE WHEN effect NOT IN ('allow', 'deny') THEN 1 ELSE 0 END) AS other \
         FROM events WHERE {w} AND event_type = 'authz.decision' GROUP BY 1 ORDER BY 1",
    )
    .await?;
    (f.status, f.summary) = if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if bursts + risky > 0.0 {
        (Status::Fail, format!("{bursts} deny bursts and {risky} high-risk allows to analyze."))
    } else {
        (Status::Pass, "No deny burst and no allow at a high risk score.".into())
    };
    out.push(f);

    // RS.AN-03: reconstructable chains.
    let mut f = finding(
        "RS.AN-03",
        CSF,
        "Analysis is performed to establish what has taken place during an incident and the root cause of the incident",
    );
    let complete = q
        .number(
            &mut f,
            "reconstructable_decisions",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND actor_id IS NOT NULL \
             AND chain_depth >= 1 AND (policy_version IS NOT NULL OR decision_path IS NOT NULL) \
             AND ((actor_profile IS DISTINCT FROM 'ai_agent') OR (principal_id IS NOT NULL AND task_id IS NOT NULL))",
        )
        .await?;
    let outcomes =
        q.number(&mut f, "outcomes", "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome'").await?;
    let unlinked = q
        .number(
            &mut f,
            "outcomes_without_decision",
            "SELECT count(*) FROM events o LEFT JOIN \
             (SELECT event_id FROM events WHERE seq < {n} AND event_type = 'authz.decision') d \
             ON o.decision_event_id = d.event_id \
             WHERE {w:o} AND o.event_type = 'authz.outcome' AND d.event_id IS NULL",
        )
        .await?;
    f.metrics.insert("decisions".into(), json!(decisions as i64));
    f.metrics.insert("reconstructable_ratio".into(), json!(if decisions > 0.0 { complete / decisions } else { 1.0 }));
    (f.status, f.summary) = if decisions + outcomes == 0.0 {
        (Status::NotApplicable, "No decisions or outcomes in the window.".into())
    } else if complete < decisions || unlinked > 0.0 {
        (
            Status::Fail,
            format!(
                "{} of {decisions} decisions lack a link of the chain (actor, principal and task for agents, policy); \
                 {unlinked} outcomes name no recorded decision.",
                decisions - complete
            ),
        )
    } else {
        (
            Status::Pass,
            format!("All {decisions} decisions and {outcomes} outcomes can be traced from principal to outcome."),
        )
    };
    out.push(f);

    // AU-3: field completeness.
    let mut f = finding("AU-3", SP80053, "Content of Audit Records");
    let fields = [
        ("event_time", "event_time IS NOT NULL"),
        ("pdp_id", "pdp_id IS NOT NULL"),
        ("actor_id", "actor_id IS NOT NULL"),
        ("action", "action IS NOT NULL"),
        ("resource", "resource_type IS NOT NULL AND resource_id IS NOT NULL"),
        ("effect", "effect IS NOT NULL"),
        ("policy", "policy_version IS NOT NULL OR decision_path IS NOT NULL"),
        ("principal_for_agents", "(actor_profile IS DISTINCT FROM 'ai_agent') OR principal_id IS NOT NULL"),
    ];
    let mut worst = 1.0f64;
    for (name, cond) in fields {
        let n = q
            .number(
                &mut f,
                &format!("decisions_with_{name}"),
                &format!("SELECT count(*) FROM events WHERE {{w}} AND event_type = 'authz.decision' AND ({cond})"),
            )
            .await?;
        if decisions > 0.0 {
            worst = worst.min(n / decisions);
        }
    }
    let linked = q
        .number(
            &mut f,
            "outcomes_with_decision_and_status",
            "SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome' \
             AND decision_event_id IS NOT NULL AND outcome_status IS NOT NULL",
        )
        .await?;
    if outcomes > 0.0 {
        worst = worst.min(linked / outcomes);
    }
    f.metrics.insert("decisions".into(), json!(decisions as i64));
    f.metrics.insert("outcomes".into(), json!(outcomes as i64));
    f.metrics.insert("lowest_completeness".into(), json!(worst));
    (f.status, f.summary) = if decisions + outcomes == 0.0 {
        (Status::NotApplicable, "No decisions or outcomes in the window.".into())
    } else if worst < 1.0 {
        (
            Status::Fail,
            format!(
                "Some records lack a required field: the least complete field is in {:.2}% of them.",
                worst * 100.0
            ),
        )
    } else {
        (Status::Pass, "Every decision records time, PDP, actor, action, resource, effect and policy (and an AI agent's principal); every outcome its decision and status.".into())
    };
    out.push(f);

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
    let export_opts = ExportOptions { from: opts.from, to: opts.to, format: Format::Parquet, policy: opts.policy };
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
