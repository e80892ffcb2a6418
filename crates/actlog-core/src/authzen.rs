//! AuthZEN 1.0 evaluations mapped to actlog events.
//!
//! AuthZEN defines an evaluation as a request and a response, and no
//! decision log. A PEP (or the PDP) sends actlog one record per call:
//!
//! ```json
//! {"request": {...}, "response": {...}, "pdp": "...", "policy_version": "...",
//!  "x_request_id": "...", "time": "2026-08-21T10:15:30Z"}
//! ```
//!
//! - A single evaluation (`subject`, `action`, `resource`, `context`) is one
//!   decision; the batch form (`evaluations`, with top-level defaults that
//!   each item's keys replace) is one decision per item, in order.
//! - `decision: true` is allow, `false` deny; a per-item error
//!   (`context.error`) is indeterminate; an item the PDP did not evaluate
//!   (cut short by `deny_on_first_deny` or `permit_on_first_permit`) is
//!   `not_applicable`, marked `ext.authzen.evaluated: false`.
//! - The delegation chain is `subject.properties.act` (RFC 8693, nested =
//!   deeper). Under the MCP profile, `context.agent` names the agent acting
//!   for `subject` (the user) when there is no `act`.
//! - `event_id` is `authzen:<pdp>:<x_request_id>:<k>`, or a hash of the
//!   record when it has no request id, so a re-sent record maps to the
//!   same ids and is stored once.
//!
//! The mapped payload is canonical JSON, a pure function of the record.

use serde_json::{Map, Value, json};

use crate::ingest::ItemError;
use crate::leaf::sha256;
use crate::opa::{MappedEvent, OpaToken, text};

/// The `source.format` of mapped AuthZEN evaluations.
pub const AUTHZEN_FORMAT: &str = "authzen.evaluation.v1";
/// The PDP id of records that name none, from a token bound to none.
pub const DEFAULT_PDP_ID: &str = "authzen";
/// Evaluations one record may hold (`authzen_evaluations_max`).
pub const EVALUATIONS_MAX: usize = 1024;

fn item(code: &'static str, message: impl Into<String>, path: &str) -> ItemError {
    ItemError::new(code, message, path)
}

fn malformed(message: impl Into<String>, path: &str) -> ItemError {
    item("malformed_authzen_record", message, path)
}

/// The event id of evaluation `k` of a record.
fn event_id(pdp: &str, request_id: &str, k: usize) -> String {
    crate::opa::source_event_id("authzen", pdp, &format!("{request_id}:{k}"))
}

/// Maps one record to the payloads of its decisions, in evaluation order.
/// `bound_pdp` is the ingest token's PDP binding; `received` stamps a
/// record without `time`.
pub fn map_record(raw: &[u8], bound_pdp: Option<&str>, received: &str) -> Result<Vec<Vec<u8>>, ItemError> {
    Ok(map_events(raw, bound_pdp, received)?.into_iter().map(|(bytes, _)| bytes).collect())
}

fn map_events(raw: &[u8], bound_pdp: Option<&str>, received: &str) -> Result<Vec<MappedEvent>, ItemError> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| malformed(format!("not JSON: {e}"), ""))?;
    let o = v.as_object().ok_or_else(|| malformed("an AuthZEN record must be a JSON object", ""))?;
    let request = o
        .get("request")
        .filter(|r| r.is_object())
        .ok_or_else(|| malformed("request (the AuthZEN evaluation request) is missing", "/request"))?;
    let response = o
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| malformed("response (the PDP's answer) is missing", "/response"))?;
    // The PDP: a plain id, or its metadata's `policy_decision_point`.
    let named = match o.get("pdp") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Object(m)) => Some(
            text(m.get("policy_decision_point"))
                .ok_or_else(|| malformed("pdp.policy_decision_point is missing", "/pdp/policy_decision_point"))?,
        ),
        Some(_) => return Err(malformed("pdp must be an id or the PDP's metadata object", "/pdp")),
    };
    let pdp = match (named, bound_pdp) {
        (Some(p), Some(b)) if p != b => {
            return Err(item("pdp_mismatch", format!("this token may only submit events of PDP `{b}`"), "/pdp"));
        }
        (Some(p), _) => p,
        (None, Some(b)) => b.to_string(),
        (None, None) => DEFAULT_PDP_ID.to_string(),
    };
    if pdp.len() > 256 {
        return Err(malformed("pdp is longer than 256 bytes", "/pdp"));
    }
    let request_id = match o.get("x_request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(malformed("x_request_id must be a non-empty string", "/x_request_id")),
    };
    let event_time = match o.get("time") {
        None | Some(Value::Null) => received.to_string(),
        Some(Value::String(t)) => {
            crate::opa::utc_timestamp(t).ok_or_else(|| malformed("time is not RFC 3339", "/time"))?
        }
        Some(_) => return Err(malformed("time must be an RFC 3339 string", "/time")),
    };
    let policy_version = text(o.get("policy_version")).unwrap_or_else(|| "unversioned".into());
    // Without a request id, a hash of what was asked and answered stands in.
    let native_id = request_id.clone().unwrap_or_else(|| {
        hex::encode(sha256(&crate::canonical::to_vec(&json!({"request": request, "response": response}))))[..40]
            .to_string()
    });

    let items: Vec<(Value, Option<&Value>, String)> = match request.get("evaluations") {
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(malformed("evaluations is empty", "/request/evaluations"));
            }
            if list.len() > EVALUATIONS_MAX {
                return Err(item(
                    "authzen_record_too_large",
                    format!("more than authzen_evaluations_max = {EVALUATIONS_MAX} evaluations"),
                    "/request/evaluations",
                ));
            }
            let answers = response.get("evaluations").and_then(Value::as_array);
            list.iter()
                .enumerate()
                .map(|(k, e)| {
                    // Top-level keys are defaults; each item's keys replace them.
                    let mut merged = Map::new();
                    for key in ["subject", "action", "resource", "context"] {
                        if let Some(x) = e.get(key).or_else(|| request.get(key)) {
                            merged.insert(key.into(), x.clone());
                        }
                    }
                    (Value::Object(merged), answers.and_then(|a| a.get(k)), format!("/request/evaluations/{k}"))
                })
                .collect()
        }
        Some(_) => return Err(malformed("evaluations must be an array", "/request/evaluations")),
        None => vec![(request.clone(), Some(response), "/request".to_string())],
    };
    let semantic = request.pointer("/options/evaluations_semantic").cloned();
    let raw_sha256 = hex::encode(sha256(raw));
    let mut out = Vec::with_capacity(items.len());
    for (k, (eval, answer, path)) in items.iter().enumerate() {
        let mut event = map_evaluation(eval, *answer, path)?;
        event["event_id"] = json!(event_id(&pdp, &native_id, k));
        event["event_time"] = json!(event_time);
        event["pdp"] = json!({"id": pdp, "kind": "authzen"});
        event["policy"] = json!({"version": policy_version});
        event["source"] = json!({"format": AUTHZEN_FORMAT, "native_id": native_id, "native_index": k.to_string(), "raw_sha256": raw_sha256});
        if let Some(r) = &request_id {
            event["correlation"]["request_id"] = json!(r);
        }
        if let Some(s) = &semantic {
            event["ext"]["authzen"]["evaluations_semantic"] = s.clone();
        }
        out.push(crate::opa::finish(&event, "unmappable_authzen_record")?);
    }
    Ok(out)
}

/// One evaluation (defaults merged) and its answer, without the ids.
fn map_evaluation(eval: &Value, answer: Option<&Value>, path: &str) -> Result<Value, ItemError> {
    let part = |key: &str| {
        eval.get(key)
            .filter(|x| x.is_object())
            .ok_or_else(|| malformed(format!("{key} is missing"), &format!("{path}/{key}")))
    };
    let (subject, action, resource) = (part("subject")?, part("action")?, part("resource")?);
    let need = |obj: &Value, key: &str, at: &str| {
        text(obj.get(key)).ok_or_else(|| malformed(format!("{at}.{key} is missing"), &format!("{path}/{at}/{key}")))
    };
    let (subject_type, subject_id) = (need(subject, "type", "subject")?, need(subject, "id", "subject")?);
    need(action, "name", "action")?;
    let (resource_type, resource_id) = (need(resource, "type", "resource")?, need(resource, "id", "resource")?);
    let context = eval.get("context").filter(|c| c.is_object());

    let mut request = json!({"subject": subject, "action": action, "resource": resource});
    if let Some(c) = context {
        request["context"] = c.clone();
    }
    if resource_type == "tool" {
        request["tool"] = json!({"name": resource_id});
    }

    // The chain: the act claim; or, under the MCP profile, `context.agent`
    // acting for the subject; or the subject itself.
    let act = subject.pointer("/properties/act").filter(|a| a.is_object());
    let mut chain = act.map(crate::opa::chain_from_act).unwrap_or_default();
    if chain.is_empty()
        && let Some(agent) = text(context.and_then(|c| c.get("agent")))
    {
        chain.push(json!({"depth": 1, "sub": agent, "sub_profile": "ai_agent"}));
    }
    let mut principal = json!({"type": subject_type, "id": subject_id});
    if let Some(iss) = text(subject.pointer("/properties/iss")) {
        principal["iss"] = json!(iss);
    }
    let profile = crate::opa::profile_of(&subject_type);
    let (delegation, is_agent) = crate::opa::delegation(chain, principal, profile, "none");
    let note = |key: &str| text(context.and_then(|c| c.get(key)));
    let mut correlation = crate::opa::correlation(note("session_id"), note("task_id"), is_agent);
    if let Some(t) = text(context.and_then(|c| c.get("trace_id"))) {
        correlation.insert("trace_id".into(), json!(t));
    }

    let mut ext = Map::new();
    let decision = match answer {
        None => {
            ext.insert("evaluated".into(), json!(false));
            json!({"effect": "not_applicable", "raw": null})
        }
        Some(a) => {
            let error = a.pointer("/context/error").filter(|e| !e.is_null());
            let effect = match (a.get("decision"), error) {
                (_, Some(_)) => "indeterminate",
                (Some(Value::Bool(true)), None) => "allow",
                (Some(Value::Bool(false)), None) => "deny",
                _ => {
                    return Err(malformed(
                        "the answer's decision must be true or false",
                        &path.replacen("/request", "/response", 1),
                    ));
                }
            };
            let mut d = json!({"effect": effect, "raw": a});
            if let Some(e) = error {
                d["error"] = json!({"code": "authzen_error", "message": e});
            }
            d
        }
    };
    let mut event = json!({
        "spec_version": "1",
        "event_type": "authz.decision",
        "producer_signature": "none",
        "delegation": delegation,
        "request": request,
        "decision": decision,
    });
    if !correlation.is_empty() {
        event["correlation"] = Value::Object(correlation);
    }
    if let Some(scope) = text(context.and_then(|c| c.get("purpose"))) {
        event["purpose"] = json!({"scope": scope});
    }
    if !ext.is_empty() {
        event["ext"] = json!({"authzen": ext});
    }
    Ok(event)
}

/// Maps, validates and packages one record for the store (`POST
/// /v1/authzen/decisions`).
pub fn check(
    raw: &[u8],
    token: &OpaToken<'_>,
    envelope_bytes_max: usize,
    received: &str,
) -> Result<Vec<crate::ingest::Checked>, ItemError> {
    crate::opa::within_envelope_max(raw, "AuthZEN record", envelope_bytes_max)?;
    Ok(map_events(raw, token.pdp_id, received)?
        .into_iter()
        .map(|e| crate::opa::token_checked(AUTHZEN_FORMAT, raw, e, token))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-08-21T10:15:31Z";

    fn fields(p: &[u8]) -> crate::event::Fields {
        crate::event::validate(p).unwrap().fields
    }

    /// The spec's single evaluation example (section "Access Evaluation
    /// API"), with an agent acting for the user through `act`.
    #[test]
    fn a_single_evaluation_with_act_is_one_decision() {
        let record = json!({
            "request": {
                "subject": {"type": "user", "id": "alice@acmecorp.com",
                            "properties": {"act": {"sub": "agent-7", "sub_profile": "ai_agent"}}},
                "resource": {"type": "account", "id": "123"},
                "action": {"name": "can_read", "properties": {"method": "GET"}},
                "context": {"time": "1985-10-26T01:22-07:00", "task_id": "t-1", "session_id": "s-1"}
            },
            "response": {"decision": true},
            "pdp": {"policy_decision_point": "https://pdp.mycompany.com"},
            "policy_version": "v42",
            "x_request_id": "bfe9eb29-ab87-4ca3-be83-a1d5d8305716",
            "time": "2026-08-21T10:15:30Z"
        });
        let p = map_record(record.to_string().as_bytes(), None, NOW).unwrap();
        assert_eq!(p.len(), 1);
        let f = fields(&p[0]);
        assert_eq!(f.event_id, "authzen:https://pdp.mycompany.com:bfe9eb29-ab87-4ca3-be83-a1d5d8305716:0");
        assert_eq!((f.effect.as_deref(), f.action.as_deref()), (Some("allow"), Some("can_read")));
        assert_eq!((f.principal_id.as_deref(), f.actor_id.as_deref()), (Some("alice@acmecorp.com"), Some("agent-7")));
        assert_eq!((f.policy_version.as_deref(), f.task_id.as_deref()), (Some("v42"), Some("t-1")));
        assert_eq!(f.request_id.as_deref(), Some("bfe9eb29-ab87-4ca3-be83-a1d5d8305716"));
        assert_eq!(f.event_time_unix_nanos, crate::time::parse_rfc3339_utc("2026-08-21T10:15:30Z").unwrap());
        assert_eq!(p, map_record(record.to_string().as_bytes(), None, "2030-01-01T00:00:00Z").unwrap());
    }

    /// The spec's boxcar example: defaults, per-item overrides, an item
    /// error, and items cut short by `deny_on_first_deny`.
    #[test]
    fn the_batch_form_fans_out_with_defaults_errors_and_unevaluated_items() {
        let record = json!({
            "request": {
                "subject": {"type": "user", "id": "alice@acmecorp.com"},
                "action": {"name": "can_read"},
                "options": {"evaluations_semantic": "deny_on_first_deny"},
                "evaluations": [
                    {"resource": {"type": "document", "id": "boxcarring.md"}},
                    {"resource": {"type": "document", "id": "subject-search.md"}, "action": {"name": "can_edit"}},
                    {"resource": {"type": "document", "id": "resource-search.md"}},
                    {"resource": {"type": "document", "id": "action-search.md"}}
                ]
            },
            "response": {"evaluations": [
                {"decision": true},
                {"decision": false, "context": {"error": {"status": 500, "message": "policy failed"}}},
                {"decision": false}
            ]},
            "pdp": "pdp-1",
            "x_request_id": "r-9"
        });
        let p = map_record(record.to_string().as_bytes(), None, NOW).unwrap();
        let f: Vec<_> = p.iter().map(|b| fields(b)).collect();
        let effects: Vec<_> = f.iter().map(|x| x.effect.as_deref().unwrap()).collect();
        assert_eq!(effects, ["allow", "indeterminate", "deny", "not_applicable"]);
        assert_eq!(f[1].action.as_deref(), Some("can_edit"), "an item's action replaces the default");
        assert_eq!(f[3].resource_id.as_deref(), Some("action-search.md"));
        assert_eq!(f[2].event_id, "authzen:pdp-1:r-9:2");
        assert_eq!(f[0].event_time_unix_nanos, crate::time::parse_rfc3339_utc(NOW).unwrap());
        let last: Value = serde_json::from_slice(&p[3]).unwrap();
        assert_eq!(last["ext"]["authzen"], json!({"evaluated": false, "evaluations_semantic": "deny_on_first_deny"}));
    }

    /// The MCP profile's `tools/call` mapping: the user is the subject, the
    /// agent is `context.agent`, the tool is the resource.
    #[test]
    fn the_mcp_profile_maps_the_agent_and_the_tool() {
        let record = json!({
            "request": {
                "subject": {"type": "identity", "id": "alice"},
                "action": {"name": "tools/call"},
                "resource": {"type": "tool", "id": "book_flight"},
                "context": {"agent": "travel-assistant", "session_id": "s", "task_id": "t"}
            },
            "response": {"decision": false}
        });
        let p = map_record(record.to_string().as_bytes(), Some("mcp-gw"), NOW).unwrap();
        let f = fields(&p[0]);
        assert_eq!((f.principal_id.as_deref(), f.actor_id.as_deref()), (Some("alice"), Some("travel-assistant")));
        assert_eq!((f.tool_name.as_deref(), f.effect.as_deref()), (Some("book_flight"), Some("deny")));
        assert_eq!(f.pdp_id, "mcp-gw");
        assert!(f.event_id.starts_with("authzen:mcp-gw:"), "{}", f.event_id);
        assert_eq!(p, map_record(record.to_string().as_bytes(), Some("mcp-gw"), NOW).unwrap(), "no request id: a hash");
    }

    #[test]
    fn bad_records_name_the_field() {
        let ok_req = json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "x"}, "resource": {"type": "r", "id": "1"}});
        for (bad, code, path) in [
            (json!([1]), "malformed_authzen_record", ""),
            (json!({"response": {"decision": true}}), "malformed_authzen_record", "/request"),
            (json!({"request": ok_req}), "malformed_authzen_record", "/response"),
            (
                json!({"request": {"action": {"name": "x"}, "resource": {"type": "r", "id": "1"}}, "response": {"decision": true}}),
                "malformed_authzen_record",
                "/request/subject",
            ),
            (json!({"request": ok_req, "response": {"decision": "yes"}}), "malformed_authzen_record", "/response"),
            (
                json!({"request": ok_req, "response": {"decision": true}, "time": "noon"}),
                "malformed_authzen_record",
                "/time",
            ),
            (json!({"request": ok_req, "response": {"decision": true}, "pdp": "other"}), "pdp_mismatch", "/pdp"),
            (
                json!({"request": {"evaluations": []}, "response": {}}),
                "malformed_authzen_record",
                "/request/evaluations",
            ),
        ] {
            let e = map_record(bad.to_string().as_bytes(), Some("p"), NOW).unwrap_err();
            assert_eq!((e.code, e.path.as_str()), (code, path), "{bad}: {}", e.message);
        }
    }
}
