//! The status and summary of each control, judged from the numbers its
//! queries (`sql/*.sql`) produced. The queries are data; the judgement is
//! code, one function per control.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::json;

use super::controls::{FUTURE_SKEW_SECS, Finding, LATE_SECS, Status};
use crate::ExportError;

/// The numbers of one evidence run so far, by metric name.
pub struct Numbers<'a> {
    seen: &'a BTreeMap<String, f64>,
    missing: RefCell<Vec<String>>,
}

impl<'a> Numbers<'a> {
    /// The numbers computed so far.
    pub fn new(seen: &'a BTreeMap<String, f64>) -> Self {
        Numbers { seen, missing: RefCell::new(Vec::new()) }
    }

    /// A metric's value; a name no file computed is reported by [`judge`].
    fn n(&self, name: &str) -> f64 {
        self.seen.get(name).copied().unwrap_or_else(|| {
            self.missing.borrow_mut().push(name.to_string());
            0.0
        })
    }
}

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

/// Sets the finding's status and summary from the numbers.
pub fn judge(f: &mut Finding, m: &Numbers) -> Result<(), ExportError> {
    let (status, summary) = match f.control_id.as_str() {
        "PR.AA-05" => pr_aa_05(m),
        "PR.AA-01" => pr_aa_01(m),
        "PR.AA-03" => pr_aa_03(m),
        "PR.AA-04" => pr_aa_04(m),
        "PR.PS-04" => pr_ps_04(m),
        "DE.CM-03" => de_cm_03(m),
        "DE.AE-02" => de_ae_02(m),
        "RS.AN-03" => rs_an_03(f, m),
        "AU-3" => au_3(f, m),
        id => return Err(ExportError::Ledger(format!("evidence control {id} has no judgement (a bug)"))),
    };
    let missing = m.missing.take();
    if !missing.is_empty() {
        return Err(ExportError::Ledger(format!(
            "evidence control {} reads metrics no control file computes (a bug): {}",
            f.control_id,
            missing.join(", ")
        )));
    }
    (f.status, f.summary) = (status, summary);
    Ok(())
}

fn pr_aa_05(m: &Numbers) -> (Status, String) {
    let decisions = m.n("decisions");
    let executed = m.n("executed_outcomes");
    let orphan = m.n("executed_without_decision");
    let bypass = m.n("executed_after_non_allow");
    let no_policy = m.n("decisions_without_policy_version");
    let mismatched = m.n("executed_before_decision_or_by_another_actor");
    let reused = m.n("decisions_executed_more_than_once");
    if decisions + executed == 0.0 {
        return (Status::NotApplicable, "No decisions or executed actions in the window.".into());
    }
    if orphan + bypass + no_policy + mismatched + reused > 0.0 {
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
        return (
            Status::Fail,
            format!("{}. Least privilege (scopes granted against used) is not measured.", parts.join("; ")),
        );
    }
    (
        Status::Pass,
        format!(
            "All {executed} executed actions follow an allowing decision under a recorded policy version. \
             Least privilege (scopes granted against used) is not measured; the tools each agent was allowed are listed."
        ),
    )
}

fn pr_aa_01(m: &Numbers) -> (Status, String) {
    let (decisions, agents) = (m.n("decisions"), m.n("agents"));
    let (workloads, after) = (m.n("agents_with_several_workloads"), m.n("actions_after_revocation"));
    let after_deregistration = m.n("actions_after_deregistration");
    if decisions == 0.0 {
        return (Status::NotApplicable, "No decisions in the window.".into());
    }
    if after > 0.0 || after_deregistration > 0.0 {
        return (
            Status::Fail,
            format!(
                "{after} actions were allowed after the agent's delegation was revoked, and \
                 {after_deregistration} after the agent was deregistered."
            ),
        );
    }
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
}

fn pr_aa_03(m: &Numbers) -> (Status, String) {
    let decisions = m.n("decisions");
    let verified = m.n("decisions_verified_or_asserted");
    let unverified_allowed = m.n("allowed_unverified");
    if decisions == 0.0 {
        return (Status::NotApplicable, "No decisions in the window.".into());
    }
    if unverified_allowed > 0.0 {
        return (
            Status::Fail,
            format!(
                "{unverified_allowed} actions were allowed on a delegation nobody verified; \
                 {verified} of {decisions} decisions had a verified or asserted delegation."
            ),
        );
    }
    (
        Status::Pass,
        format!("Every allowed action had a verified or asserted delegation ({verified} of {decisions} decisions)."),
    )
}

fn pr_aa_04(m: &Numbers) -> (Status, String) {
    let (decisions, failed_allowed) = (m.n("decisions"), m.n("allowed_with_failed_verification"));
    if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if failed_allowed > 0.0 {
        (Status::Fail, format!("{failed_allowed} actions were allowed although delegation verification failed."))
    } else {
        (Status::Pass, "No action was allowed on a delegation that failed verification.".into())
    }
}

fn pr_ps_04(m: &Numbers) -> (Status, String) {
    let (in_ledger, gaps, events) = (m.n("ledger_events"), m.n("seq_gaps"), m.n("events_in_window"));
    let (median, late, future) =
        (m.n("delay_seconds_median"), m.n("events_received_late"), m.n("events_ahead_of_ledger_clock"));
    let (streams, missing) = (m.n("producer_streams"), m.n("producer_sequence_gaps"));
    if in_ledger == 0.0 {
        return (Status::NotApplicable, "The ledger is empty.".into());
    }
    let drops = if streams == 0.0 {
        "Drops at the PDP are not measured: no producer numbered its events (source.stream_seq).".to_string()
    } else {
        format!("{missing} numbers are missing from the {streams} numbered producer streams.")
    };
    if gaps > 0.0 || future > 0.0 || late > 0.0 || missing > 0.0 {
        return (
            Status::Fail,
            format!(
                "{gaps} seq gaps; {late} of {events} events reached the ledger more than {LATE_SECS} s after they happened \
                 (median delay {}); {future} are stamped more than {FUTURE_SKEW_SECS} s ahead of the ledger's clock. {drops}",
                human_seconds(median)
            ),
        );
    }
    (
        Status::Pass,
        format!(
            "{in_ledger} events with no seq gap; the {events} in the window reached the ledger within {LATE_SECS} s \
             (median delay {}). {drops}",
            human_seconds(median)
        ),
    )
}

fn de_cm_03(m: &Numbers) -> (Status, String) {
    let (decisions, off) = (m.n("decisions"), m.n("off_purpose_allowed"));
    if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if off > 0.0 {
        (Status::Fail, format!("{off} allowed tool calls are rare for their purpose scope; review them."))
    } else {
        (Status::Pass, "No allowed tool call is rare for its purpose scope.".into())
    }
}

fn de_ae_02(m: &Numbers) -> (Status, String) {
    let (decisions, bursts, risky) = (m.n("decisions"), m.n("deny_bursts"), m.n("high_risk_allowed"));
    if decisions == 0.0 {
        (Status::NotApplicable, "No decisions in the window.".into())
    } else if bursts + risky > 0.0 {
        (Status::Fail, format!("{bursts} deny bursts and {risky} high-risk allows to analyze."))
    } else {
        (Status::Pass, "No deny burst and no allow at a high risk score.".into())
    }
}

fn rs_an_03(f: &mut Finding, m: &Numbers) -> (Status, String) {
    let (decisions, complete) = (m.n("decisions"), m.n("reconstructable_decisions"));
    let (outcomes, unlinked) = (m.n("outcomes"), m.n("outcomes_without_decision"));
    f.metrics.insert("reconstructable_ratio".into(), json!(if decisions > 0.0 { complete / decisions } else { 1.0 }));
    if decisions + outcomes == 0.0 {
        return (Status::NotApplicable, "No decisions or outcomes in the window.".into());
    }
    if complete < decisions || unlinked > 0.0 {
        return (
            Status::Fail,
            format!(
                "{} of {decisions} decisions lack a link of the chain (actor, principal and task for agents, policy); \
                 {unlinked} outcomes name no recorded decision.",
                decisions - complete
            ),
        );
    }
    (
        Status::Pass,
        format!("All {decisions} decisions and {outcomes} outcomes can be traced from principal to outcome."),
    )
}

/// The least complete field: each `decisions_with_*` metric over the
/// decisions, and outcomes with their decision and status over the outcomes.
fn au_3(f: &mut Finding, m: &Numbers) -> (Status, String) {
    let (decisions, outcomes) = (m.n("decisions"), m.n("outcomes"));
    let mut worst = 1.0f64;
    let fields: Vec<String> = f.metrics.keys().filter(|k| k.starts_with("decisions_with_")).cloned().collect();
    for name in fields {
        if decisions > 0.0 {
            worst = worst.min(m.n(&name) / decisions);
        }
    }
    if outcomes > 0.0 {
        worst = worst.min(m.n("outcomes_with_decision_and_status") / outcomes);
    }
    f.metrics.insert("lowest_completeness".into(), json!(worst));
    if decisions + outcomes == 0.0 {
        return (Status::NotApplicable, "No decisions or outcomes in the window.".into());
    }
    if worst < 1.0 {
        return (
            Status::Fail,
            format!(
                "Some records lack a required field: the least complete field is in {:.2}% of them.",
                worst * 100.0
            ),
        );
    }
    (
        Status::Pass,
        "Every decision records time, PDP, actor, action, resource, effect and policy (and an AI agent's principal); \
         every outcome its decision and status."
            .into(),
    )
}
