//! OCSF 1.8.0 API Activity (class 6003) records of ledger events, with the
//! `security_control` profile (contract section 8, `--format ocsf`).
//!
//! The mapping follows `shared/reference/standards.md` section 8.4. Fields
//! with no OCSF 1.8.0 home (the delegation chain, purpose, trust, the
//! ledger's own seq and hashes) go under `unmapped.actlog`. A record is a
//! pure function of its row, so `actlog verify --bundle` rebuilds every
//! line from the ledger's leaves and compares. The mapping has a version
//! ([`MAPPING`]); a change to it gets a new one, and old bundles keep
//! verifying under theirs.

use serde_json::{Value, json};

use actlog_core::rows::Row;

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.8.0";
/// The mapping's version, recorded in an export manifest.
pub const MAPPING: &str = "actlog.ocsf.v1";

/// `action_id` and `disposition_id` (security_control profile) of an effect.
fn control(effect: Option<&str>) -> (u8, &'static str, u8, &'static str) {
    match effect {
        Some("allow") => (1, "Allowed", 1, "Allowed"),
        Some("deny") => (2, "Denied", 2, "Blocked"),
        Some(_) => (99, "Other", 99, "Other"),
        None => (0, "Unknown", 0, "Unknown"),
    }
}

/// `status_id`: did the decision or the action go through.
fn status(event_type: &str, effect: Option<&str>, outcome: Option<&str>) -> (u8, &'static str) {
    match (event_type, effect, outcome) {
        ("authz.outcome", _, Some("executed")) => (1, "Success"),
        ("authz.outcome", _, Some("failed" | "blocked")) => (2, "Failure"),
        ("authz.decision", Some("allow" | "deny"), _) => (1, "Success"),
        ("authz.decision", Some(_), _) => (2, "Failure"),
        _ => (0, "Unknown"),
    }
}

/// The OCSF API Activity record of one row.
pub fn api_activity(row: &Row, origin: &str) -> Value {
    let f = &row.fields;
    let (action_id, action, disposition_id, disposition) = control(f.effect.as_deref());
    let (status_id, status_name) = status(&f.event_type, f.effect.as_deref(), f.outcome_status.as_deref());
    let operation = f.action.clone().unwrap_or_else(|| f.event_type.clone());
    let chain: Vec<Value> = f
        .chain
        .iter()
        .map(|h| json!({"depth": h.depth, "sub": h.sub, "iss": h.iss, "sub_profile": h.sub_profile}))
        .collect();
    let actlog = json!({
            "seq": row.seq,
            "event_type": f.event_type,
            "leaf_hash": hex::encode(row.leaf_hash),
            "chain_hash": hex::encode(row.chain_hash),
            "producer_key": row.producer_key,
            "producer_signature": row.producer_signature,
            "source_format": f.source_format,
            "verification_status": f.verification_status,
            "actor_model": f.actor_model,
            "actor_workload_id": f.actor_workload_id,
            "delegation_chain": chain,
            "task_id": f.task_id,
            "parent_event_id": f.parent_event_id,
            "purpose": {"scope": f.purpose_scope, "description": f.purpose_description},
            "trust": {"level": f.trust_level, "risk_score": f.risk_score},
            "decision_event_id": f.decision_event_id,
            "outcome_status": f.outcome_status,
    });
    let mut v = json!({
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": 6003,
        "class_name": "API Activity",
        "activity_id": 99,
        "activity_name": "Other",
        "type_uid": 600399,
        "type_name": "API Activity: Other",
        "severity_id": 1,
        "severity": "Informational",
        "time": f.event_time_unix_nanos.div_euclid(1_000_000),
        "status_id": status_id,
        "status": status_name,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "message": format!("{} {} {}", f.event_type, f.effect.as_deref().or(f.outcome_status.as_deref()).unwrap_or("-"), operation),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f.event_id,
            "original_time": actlog_core::time::format_rfc3339_utc(f.event_time_unix_nanos),
            "logged_time": row.received_at.div_euclid(1_000_000),
            "log_name": "authz_decisions",
            "log_provider": origin,
            "correlation_uid": f.txn_id.as_ref().or(f.trace_id.as_ref()).or(f.task_id.as_ref()),
            "profiles": ["security_control"],
            "product": {"name": "actlog", "vendor_name": "actlog"},
        },
        "actor": {
            "user": {"uid": f.principal_id, "type": f.principal_type},
            "idp": {"name": f.principal_iss},
            "app_name": f.actor_id,
            "session": {"uid": f.session_id},
        },
        "api": {
            "operation": operation,
            "service": {"name": f.tool_server},
            "request": {"uid": f.request_id},
        },
        "resources": [{"uid": f.resource_id, "type": f.resource_type, "name": f.tool_name}],
        "src_endpoint": {"name": f.pdp_id},
        "policy": {"uid": f.decision_path, "version": f.policy_version, "is_applied": f.policy_version.is_some() || f.decision_path.is_some()},
    });
    v["unmapped"] = json!({ "actlog": actlog });
    strip_nulls(&mut v);
    v
}

/// Removes null members, then objects left empty (OCSF omits what is unknown).
fn strip_nulls(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let keep = m.get_mut(&k).is_some_and(strip_nulls);
                if !keep {
                    m.remove(&k);
                }
            }
            !m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                strip_nulls(x);
            }
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_empty_objects_are_dropped_but_arrays_stay() {
        let mut v = json!({"a": null, "b": {"c": null}, "d": [{"e": null}], "f": 1, "g": {"h": 0}});
        strip_nulls(&mut v);
        assert_eq!(v, json!({"d": [{}], "f": 1, "g": {"h": 0}}));
    }

    #[test]
    fn effects_map_to_the_security_control_ids() {
        assert_eq!(control(Some("allow")).0, 1);
        assert_eq!(control(Some("deny")).0, 2);
        assert_eq!(control(Some("deny")).2, 2);
        assert_eq!(control(Some("indeterminate")).0, 99);
        assert_eq!(control(None).0, 0);
        assert_eq!(status("authz.outcome", None, Some("executed")).0, 1);
        assert_eq!(status("authz.outcome", None, Some("blocked")).0, 2);
        assert_eq!(status("authz.decision", Some("indeterminate"), None).0, 2);
    }
}
