//! Chain reconstruction: from any event of a task (a decision, an outcome
//! or a sub-agent's call) to the whole chain: principal → actor hops →
//! purpose → policy → decision → outcome(s), each with its `seq` so every
//! line can be proven with an inclusion proof.
//!
//! It reads only through the store's indexes (event id, task id, the
//! outcome's decision id), so its cost depends on the size of the task,
//! not of the ledger.

use std::collections::{BTreeMap, BTreeSet};

use actlog_core::time::format_rfc3339_utc;
use actlog_store::{IndexField, Store};
use serde_json::{Value, json};

use crate::Error;
use crate::rows::{self, Row};

/// Events of one task a chain lists at most (`chain_events_max`).
pub const CHAIN_EVENTS_MAX: usize = 10_000;

fn event_summary(r: &Row) -> Value {
    let f = &r.fields;
    json!({
        "seq": r.seq,
        "event_id": f.event_id,
        "event_type": f.event_type,
        "event_time": format_rfc3339_utc(f.event_time_unix_nanos),
        "pdp_id": f.pdp_id,
        "actor_id": f.actor_id,
        "actor_chain": f.chain.iter().map(|h| h.sub.as_str()).collect::<Vec<_>>(),
        "parent_event_id": f.parent_event_id,
        "action": f.action,
        "resource_type": f.resource_type,
        "resource_id": f.resource_id,
        "tool_name": f.tool_name,
        "policy_version": f.policy_version,
        "effect": f.effect,
        "decision_event_id": f.decision_event_id,
        "outcome_status": f.outcome_status,
        "leaf_hash": actlog_core::b64::encode(r.leaf_hash),
    })
}

/// Reconstructs the chain of `event_id`, or `None` when no such event is
/// committed.
pub fn reconstruct(store: &Store, event_id: &str) -> Result<Option<Value>, Error> {
    let tree_size = store.head().tree_size;
    let names = store.with_registry(|r| r.key_names());
    let Some((start_seq, _)) = store.seq_of(event_id)? else { return Ok(None) };
    let read = |seqs: &BTreeSet<u64>| -> Result<Vec<Row>, Error> {
        let seqs: Vec<u64> = seqs.iter().copied().filter(|s| *s < tree_size).collect();
        store.events_at(&seqs)?.iter().map(|e| rows::decode(e, &names).map_err(Error::from)).collect()
    };
    let start =
        read(&BTreeSet::from([start_seq]))?.pop().ok_or_else(|| Error::Corruption("start event vanished".into()))?;

    // The anchor decision: the event itself, or the decision an outcome names.
    let mut anchor = start.clone();
    if start.fields.event_type == "authz.outcome"
        && let Some(d) = start.fields.decision_event_id.as_deref()
        && let Some((seq, _)) = store.seq_of(d)?
        && let Some(r) = read(&BTreeSet::from([seq]))?.pop()
    {
        anchor = r;
    }

    // Everything in the task, plus the outcomes of its decisions.
    let mut seqs = BTreeSet::from([start.seq, anchor.seq]);
    let task = anchor.fields.task_id.clone().or_else(|| start.fields.task_id.clone());
    let mut truncated = false;
    if let Some(t) = task.as_deref() {
        let mut in_task = store.index_lookup(IndexField::TaskId, t, CHAIN_EVENTS_MAX)?;
        if in_task.len() > CHAIN_EVENTS_MAX {
            truncated = true;
            in_task.truncate(CHAIN_EVENTS_MAX);
        }
        seqs.extend(in_task);
    }
    let mut rows: BTreeMap<u64, Row> = read(&seqs)?.into_iter().map(|r| (r.seq, r)).collect();
    // The anchor decision's outcomes, also when they carry no task id. (Other
    // decisions' outcomes are listed when they belong to the task: one index
    // seek per decision cost 10 ms at 10^7 events, docs/benchmarks.md.)
    if anchor.fields.event_type == "authz.decision" {
        let more: BTreeSet<u64> = store
            .index_lookup(IndexField::DecisionEventId, &anchor.fields.event_id, 2 * CHAIN_EVENTS_MAX)?
            .into_iter()
            .filter(|s| !rows.contains_key(s))
            .take(CHAIN_EVENTS_MAX)
            .collect();
        rows.extend(read(&more)?.into_iter().map(|r| (r.seq, r)));
    }

    let a = &anchor.fields;
    let outcomes: Vec<Value> = rows
        .values()
        .filter(|r| r.fields.decision_event_id.as_deref() == Some(a.event_id.as_str()))
        .map(|r| {
            json!({
                "seq": r.seq,
                "event_id": r.fields.event_id,
                "event_time": format_rfc3339_utc(r.fields.event_time_unix_nanos),
                "status": r.fields.outcome_status,
                "leaf_hash": actlog_core::b64::encode(r.leaf_hash),
            })
        })
        .collect();
    let principal = a
        .principal_id
        .as_ref()
        .map(|id| json!({"type": a.principal_type, "id": id, "iss": a.principal_iss, "seq": anchor.seq}));
    // Hops from the first agent the principal authorized down to the actor acting now.
    let actors: Vec<Value> = a
        .chain
        .iter()
        .rev()
        .map(|h| json!({"depth": h.depth, "sub": h.sub, "iss": h.iss, "sub_profile": h.sub_profile, "seq": anchor.seq}))
        .collect();
    let decision = (a.event_type == "authz.decision").then(|| {
        json!({
            "seq": anchor.seq,
            "event_id": a.event_id,
            "event_time": format_rfc3339_utc(a.event_time_unix_nanos),
            "pdp_id": a.pdp_id,
            "producer_key": anchor.producer_key,
            "action": a.action,
            "resource_type": a.resource_type,
            "resource_id": a.resource_id,
            "tool_name": a.tool_name,
            "tool_server": a.tool_server,
            "effect": a.effect,
            "trust_level": a.trust_level,
            "risk_score": a.risk_score,
            "verification_status": a.verification_status,
            "leaf_hash": actlog_core::b64::encode(anchor.leaf_hash),
        })
    });
    Ok(Some(json!({
        "event_id": event_id,
        "seq": start.seq,
        "tree_size": tree_size,
        "task_id": task,
        "session_id": a.session_id,
        "principal": principal,
        "actors": actors,
        "purpose": (a.purpose_scope.is_some() || a.purpose_description.is_some())
            .then(|| json!({"scope": a.purpose_scope, "description": a.purpose_description, "seq": anchor.seq})),
        "policy": (a.policy_version.is_some() || a.decision_path.is_some())
            .then(|| json!({"version": a.policy_version, "decision_path": a.decision_path, "seq": anchor.seq})),
        "decision": decision,
        "outcomes": outcomes,
        "task_events": rows.values().map(event_summary).collect::<Vec<_>>(),
        "truncated": truncated,
    })))
}

/// The chain as indented text, one line per hop, each with its seq.
pub fn to_text(c: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    out.push_str(&format!("chain of {} (seq {}, tree size {})\n", s(&c["event_id"]), c["seq"], c["tree_size"]));
    if let Some(t) = c["task_id"].as_str() {
        out.push_str(&format!("task {t}  session {}\n", s(&c["session_id"])));
    }
    if let Some(p) = c["principal"].as_object() {
        out.push_str(&format!(
            "  principal  {} {} (iss {})  seq {}\n",
            s(&p["type"]),
            s(&p["id"]),
            s(&p["iss"]),
            p["seq"]
        ));
    }
    for a in c["actors"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  actor      depth {} {} ({}, iss {})  seq {}\n",
            a["depth"],
            s(&a["sub"]),
            s(&a["sub_profile"]),
            s(&a["iss"]),
            a["seq"]
        ));
    }
    if let Some(p) = c["purpose"].as_object() {
        out.push_str(&format!("  purpose    {} {}  seq {}\n", s(&p["scope"]), s(&p["description"]), p["seq"]));
    }
    if let Some(p) = c["policy"].as_object() {
        out.push_str(&format!("  policy     {} {}  seq {}\n", s(&p["version"]), s(&p["decision_path"]), p["seq"]));
    }
    if let Some(d) = c["decision"].as_object() {
        out.push_str(&format!(
            "  decision   {} {} {}/{} -> {}  seq {}\n",
            s(&d["event_id"]),
            s(&d["action"]),
            s(&d["resource_type"]),
            s(&d["resource_id"]),
            s(&d["effect"]),
            d["seq"]
        ));
    }
    for o in c["outcomes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  outcome    {} {}  seq {}\n", s(&o["event_id"]), s(&o["status"]), o["seq"]));
    }
    let events = c["task_events"].as_array().map_or(0, Vec::len);
    out.push_str(&format!("task events: {events}{}\n", if c["truncated"] == true { " (truncated)" } else { "" }));
    for e in c["task_events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  seq {:>8}  {}  {:<14} {}  {}\n",
            e["seq"],
            s(&e["event_time"]),
            s(&e["event_type"]),
            s(&e["event_id"]),
            s(&e["actor_id"]),
        ));
    }
    out
}
