//! Cerbos decision-log entries mapped to actlog events.
//!
//! Cerbos writes one `cerbos.audit.v1.DecisionLogEntry` per API call, as a
//! line of JSON through its `file` audit backend (or to Kafka). A
//! `CheckResources` call checks N resources for M actions each, so one entry
//! fans out to one `authz.decision` per (resource i, action j):
//!
//! - `event_id` is `cerbos:<callId>:<i>:<action>` (hashed when longer than
//!   128 bytes), so a re-sent line maps to the same ids and is stored once.
//!   `callId` is Cerbos's own ULID for the call.
//! - The principal is the subject; an RFC 8693 `act` claim in
//!   `auxData.jwt` makes the acting agents the delegation chain.
//! - `requestContext.annotations` carries `task_id`, `session_id`,
//!   `trace_id` and `purpose`, the place Cerbos keeps for a PEP's context.
//! - The policy version is the policy source's revision (git hash or Hub
//!   bundle id) when there is one, else the resource's `policyVersion`
//!   (Cerbos's default is `default`); the matched policy is the decision path.
//! - `planResources` entries (query plans) map to one decision each:
//!   always allowed, always denied, or `not_applicable` for a conditional plan.
//! - Access-log entries (`log.kind` `access`) are not decisions: they map to
//!   nothing, and the caller counts them.
//!
//! Each mapped payload is canonical JSON, a pure function of the entry; the
//! raw entry is kept beside it in the stored record.

use serde_json::{Map, Value, json};

use crate::ingest::ItemError;
use crate::leaf::sha256;
use crate::opa::{MappedEvent, OpaToken, text};

/// The `source.format` of mapped Cerbos events.
pub const CERBOS_FORMAT: &str = "cerbos.decision_log.v1";
/// The PDP id of events from a token bound to no PDP.
pub const DEFAULT_PDP_ID: &str = "cerbos";
/// Decisions one entry may fan out to (`cerbos_fanout_max`).
pub const FANOUT_MAX: usize = 1024;

fn malformed(message: impl Into<String>, path: &str) -> ItemError {
    ItemError::new("malformed_cerbos_entry", message, path)
}

/// The event id of one decision of a call.
pub fn cerbos_event_id(call_id: &str, part: &str) -> String {
    crate::opa::source_event_id("cerbos", call_id, part)
}

/// `EFFECT_ALLOW` and friends as actlog effects.
fn effect_of(e: Option<&Value>) -> &'static str {
    match e.and_then(Value::as_str) {
        Some("EFFECT_ALLOW") => "allow",
        Some("EFFECT_DENY") => "deny",
        Some("EFFECT_NO_MATCH") => "not_applicable",
        _ => "indeterminate",
    }
}

/// The policy-set revision a policy source names, if any.
fn source_revision(source: Option<&Value>) -> Option<String> {
    let s = source?;
    text(s.pointer("/git/hash"))
        .or_else(|| text(s.pointer("/hub/remoteBundle/bundleId")))
        .or_else(|| text(s.pointer("/hub/localBundle/bundleId")))
        .or_else(|| text(s.pointer("/hub/embeddedBundle/bundleId")))
}

/// What one entry maps to: decisions, or nothing for an access-log entry.
#[derive(Debug)]
pub enum Mapped<T = Vec<u8>> {
    /// The payloads of the entry's decisions, in order.
    Decisions(Vec<T>),
    /// An access-log entry: not a decision, stored nowhere.
    Access,
}

/// Maps one raw Cerbos log entry. `pdp_id` names the PDP (the ingest
/// token's binding, or [`DEFAULT_PDP_ID`]).
pub fn map_entry(raw: &[u8], pdp_id: &str) -> Result<Mapped, ItemError> {
    Ok(match map_events(raw, pdp_id)? {
        Mapped::Decisions(events) => Mapped::Decisions(events.into_iter().map(|(bytes, _)| bytes).collect()),
        Mapped::Access => Mapped::Access,
    })
}

fn map_events(raw: &[u8], pdp_id: &str) -> Result<Mapped<MappedEvent>, ItemError> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| malformed(format!("not JSON: {e}"), ""))?;
    let o = v.as_object().ok_or_else(|| malformed("a Cerbos log entry must be a JSON object", ""))?;
    match o.get("log.kind").and_then(Value::as_str) {
        Some("access") => return Ok(Mapped::Access),
        None | Some("decision") => {}
        Some(other) => {
            return Err(malformed(format!("log.kind `{other}` is neither decision nor access"), "/log.kind"));
        }
    }
    let call_id = text(o.get("callId")).ok_or_else(|| malformed("callId is missing", "/callId"))?;
    let timestamp =
        o.get("timestamp").and_then(Value::as_str).ok_or_else(|| malformed("timestamp is missing", "/timestamp"))?;
    let event_time =
        crate::opa::utc_timestamp(timestamp).ok_or_else(|| malformed("timestamp is not RFC 3339", "/timestamp"))?;
    let common = Common { entry: o, call_id: &call_id, event_time, pdp_id, raw_sha256: hex::encode(sha256(raw)) };

    if let Some(plan) = o.get("planResources") {
        return Ok(Mapped::Decisions(vec![common.plan(plan)?]));
    }
    // `checkResources`, or the deprecated top-level fields of older Cerbos.
    let (check, at) = match o.get("checkResources") {
        Some(c) => (c, "/checkResources"),
        None => (&v, ""),
    };
    let inputs = check
        .get("inputs")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| malformed("no checkResources.inputs: not a decision entry", &format!("{at}/inputs")))?;
    let outputs = check.get("outputs").and_then(Value::as_array);
    let error = text(check.get("error"));
    let mut out = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let path = format!("{at}/inputs/{i}");
        let resource_id = text(input.pointer("/resource/id"));
        // The output of input i: at index i when it names the same resource.
        let output = outputs.and_then(|outs| {
            outs.get(i)
                .filter(|x| text(x.get("resourceId")) == resource_id)
                .or_else(|| outs.iter().find(|x| text(x.get("resourceId")) == resource_id))
        });
        let actions = input
            .get("actions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| malformed("actions is missing", &format!("{path}/actions")))?;
        for (j, action) in actions.iter().enumerate() {
            let action = action
                .as_str()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| malformed("an action must be a non-empty string", &format!("{path}/actions/{j}")))?;
            if out.len() == FANOUT_MAX {
                return Err(ItemError::new(
                    "cerbos_entry_too_large",
                    format!("the entry fans out to more than cerbos_fanout_max = {FANOUT_MAX} decisions"),
                    at,
                ));
            }
            out.push(common.check(input, &path, i, action, output, error.as_deref())?);
        }
    }
    Ok(Mapped::Decisions(out))
}

struct Common<'a> {
    entry: &'a Map<String, Value>,
    call_id: &'a str,
    event_time: String,
    pdp_id: &'a str,
    raw_sha256: String,
}

impl Common<'_> {
    /// The fields every decision of the entry shares, around `request` and `decision`.
    fn event(&self, part: &str, index: &str, principal: Option<&Value>, jwt: Option<&Value>) -> Value {
        let e = self.entry;
        let annotations = e.get("requestContext").and_then(|c| c.get("annotations"));
        let note = |k: &str| text(annotations.and_then(|a| a.get(k)));
        let principal_id = text(principal.and_then(|p| p.get("id"))).unwrap_or_else(|| "unknown".into());
        let roles: Vec<&str> = principal
            .and_then(|p| p.get("roles"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let declared = text(principal.and_then(|p| p.pointer("/attr/sub_profile")));
        let profile = match declared.as_deref() {
            Some(p @ ("ai_agent" | "service" | "workload" | "user")) => p.to_string(),
            _ if roles.iter().any(|r| matches!(*r, "agent" | "ai_agent")) => "ai_agent".into(),
            _ => "user".into(),
        };
        // The act claim of the presented token: the agents acting for the principal.
        let act = jwt.and_then(|j| j.get("act")).filter(|a| a.is_object());
        let chain = act.map(crate::opa::chain_from_act).unwrap_or_default();
        let mut principal = json!({"type": "user", "id": principal_id});
        if let Some(iss) = text(jwt.and_then(|j| j.get("iss"))) {
            principal["iss"] = json!(iss);
        }
        let method = if jwt.is_some() { "jwt" } else { "none" };
        let (delegation, is_agent) = crate::opa::delegation(chain, principal, &profile, method);
        let mut correlation = crate::opa::correlation(note("session_id"), note("task_id"), is_agent);
        if let Some(t) = note("trace_id") {
            correlation.insert("trace_id".into(), json!(t));
        }
        let mut event = json!({
            "spec_version": "1",
            "event_type": "authz.decision",
            "event_id": cerbos_event_id(self.call_id, part),
            "event_time": self.event_time,
            "pdp": {"id": self.pdp_id, "kind": "cerbos"},
            "source": {"format": CERBOS_FORMAT, "native_id": self.call_id, "native_index": index,
                       "raw_sha256": self.raw_sha256},
            "producer_signature": "none",
            "delegation": delegation,
        });
        if !correlation.is_empty() {
            event["correlation"] = Value::Object(correlation);
        }
        if let Some(scope) = note("purpose") {
            event["purpose"] = json!({"scope": scope});
        }
        let mut ext = Map::new();
        for k in ["peer", "metadata", "auditTrail", "policySource", "oversized"] {
            if let Some(x) = e.get(k) {
                ext.insert(k.into(), x.clone());
            }
        }
        if let Some(a) = annotations {
            ext.insert("annotations".into(), a.clone());
        }
        if !ext.is_empty() {
            event["ext"] = json!({"cerbos": ext});
        }
        event
    }

    fn check(
        &self,
        input: &Value,
        path: &str,
        i: usize,
        action: &str,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<MappedEvent, ItemError> {
        let resource = input
            .get("resource")
            .filter(|r| r.is_object())
            .ok_or_else(|| malformed("resource is missing", &format!("{path}/resource")))?;
        let kind = text(resource.get("kind"))
            .ok_or_else(|| malformed("resource.kind is missing", &format!("{path}/resource/kind")))?;
        let id = text(resource.get("id"))
            .ok_or_else(|| malformed("resource.id is missing", &format!("{path}/resource/id")))?;
        let principal = input.get("principal").filter(|p| p.is_object());
        let jwt = input.pointer("/auxData/jwt").filter(|j| j.is_object());
        let mut event = self.event(&format!("{i}:{action}"), &format!("{i}/{action}"), principal, jwt);
        let mut subject = json!({"type": "principal", "id": event["delegation"]["chain"][0]["sub"]});
        if let Some(p) = principal {
            subject["id"] = json!(text(p.get("id")).unwrap_or_else(|| "unknown".into()));
            let mut props = Map::new();
            for k in ["roles", "attr", "scope", "policyVersion"] {
                if let Some(x) = p.get(k) {
                    props.insert(k.into(), x.clone());
                }
            }
            if !props.is_empty() {
                subject["properties"] = Value::Object(props);
            }
        }
        let mut res = json!({"type": kind, "id": id});
        let mut props = Map::new();
        for k in ["attr", "scope", "policyVersion"] {
            if let Some(x) = resource.get(k) {
                props.insert(k.into(), x.clone());
            }
        }
        if !props.is_empty() {
            res["properties"] = Value::Object(props);
        }
        let mut request = json!({"subject": subject, "action": {"name": action}, "resource": res});
        if kind == "tool" {
            request["tool"] = json!({"name": id});
        }
        if let Some(r) = text(input.get("requestId")) {
            event["correlation"]["request_id"] = json!(r);
        }
        event["request"] = request;

        let effect =
            output.and_then(|o| o.pointer(&format!("/actions/{}", action.replace('~', "~0").replace('/', "~1"))));
        let mut policy = Map::new();
        let version = source_revision(self.entry.get("policySource"))
            .or_else(|| text(resource.get("policyVersion")))
            .unwrap_or_else(|| "default".into());
        policy.insert("version".into(), json!(version));
        if let Some(matched) = text(effect.and_then(|e| e.get("policy"))) {
            policy.insert("decision_path".into(), json!(matched));
        }
        event["policy"] = Value::Object(policy);
        let mut decision = json!({"effect": effect_of(effect.and_then(|e| e.get("effect"))),
                                  "raw": effect.cloned().unwrap_or(Value::Null)});
        if let Some(err) = error {
            decision["effect"] = json!("indeterminate");
            decision["error"] = json!({"code": "cerbos_error", "message": err});
        } else if effect.is_none() {
            decision["error"] = json!({"code": "no_output", "message": "the entry holds no output for this action"});
        }
        if let Some(roles) = output.and_then(|o| o.get("effectiveDerivedRoles")) {
            event["ext"]["cerbos"]["effectiveDerivedRoles"] = roles.clone();
        }
        if let Some(outs) = output.and_then(|o| o.get("outputs")) {
            event["ext"]["cerbos"]["outputs"] = outs.clone();
        }
        event["decision"] = decision;
        crate::opa::finish(&event, UNMAPPABLE)
    }

    fn plan(&self, plan: &Value) -> Result<MappedEvent, ItemError> {
        let input = plan
            .get("input")
            .filter(|i| i.is_object())
            .ok_or_else(|| malformed("planResources.input is missing", "/planResources/input"))?;
        let principal = input.get("principal").filter(|p| p.is_object());
        let jwt = input.pointer("/auxData/jwt").filter(|j| j.is_object());
        let mut event = self.event("plan", "plan", principal, jwt);
        let kind = text(input.pointer("/resource/kind")).unwrap_or_else(|| "unknown".into());
        let action =
            text(input.get("action")).or_else(|| text(input.pointer("/actions/0"))).unwrap_or_else(|| "unknown".into());
        let principal_id = text(principal.and_then(|p| p.get("id"))).unwrap_or_else(|| "unknown".into());
        event["request"] = json!({"subject": {"type": "principal", "id": principal_id},
                                  "action": {"name": action}, "resource": {"type": kind, "id": "*"}});
        if let Some(r) = text(input.get("requestId")) {
            event["correlation"]["request_id"] = json!(r);
        }
        let version = source_revision(self.entry.get("policySource"))
            .or_else(|| text(input.pointer("/resource/policyVersion")))
            .unwrap_or_else(|| "default".into());
        event["policy"] = json!({"version": version});
        let output = plan.get("output");
        let effect = match output.and_then(|o| o.pointer("/filter/kind")).and_then(Value::as_str) {
            Some("KIND_ALWAYS_ALLOWED") => "allow",
            Some("KIND_ALWAYS_DENIED") => "deny",
            Some("KIND_CONDITIONAL") => "not_applicable",
            _ => "indeterminate",
        };
        let mut decision = json!({"effect": effect, "raw": output.cloned().unwrap_or(Value::Null)});
        if let Some(err) = text(plan.get("error")) {
            decision["effect"] = json!("indeterminate");
            decision["error"] = json!({"code": "cerbos_error", "message": err});
        }
        event["decision"] = decision;
        crate::opa::finish(&event, UNMAPPABLE)
    }
}

/// The code of an entry whose mapping breaks the schema.
const UNMAPPABLE: &str = "unmappable_cerbos_entry";

/// Maps, validates and packages one raw Cerbos entry for the store: the
/// same steps at `POST /v1/cerbos/logs` and at `actlog import --format
/// cerbos`. An access-log entry gives no items.
pub fn check(
    raw: &[u8],
    token: &OpaToken<'_>,
    envelope_bytes_max: usize,
) -> Result<Option<Vec<crate::ingest::Checked>>, ItemError> {
    crate::opa::within_envelope_max(raw, "Cerbos entry", envelope_bytes_max)?;
    Ok(match map_events(raw, token.pdp_id.unwrap_or(DEFAULT_PDP_ID))? {
        Mapped::Access => None,
        Mapped::Decisions(events) => {
            Some(events.into_iter().map(|e| crate::opa::token_checked(CERBOS_FORMAT, raw, e, token)).collect())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision-log line as Cerbos's `file` backend writes it (built from
    /// the `cerbos.audit.v1` and `cerbos.engine.v1` protos' JSON names).
    fn entry() -> Value {
        json!({
            "log.level": "info", "log.logger": "cerbos.audit", "log.kind": "decision",
            "callId": "01HGJY9N4QAV1ZQ4GZ4YV3C8EN",
            "timestamp": "2026-08-21T10:15:30.123456789Z",
            "peer": {"address": "10.0.4.7:51122", "userAgent": "grpc-go/1.60.1"},
            "checkResources": {
                "inputs": [{
                    "requestId": "req-7",
                    "resource": {"kind": "leave_request", "id": "XX125", "policyVersion": "20210210",
                                 "attr": {"owner": "alice"}},
                    "principal": {"id": "alice", "roles": ["employee"], "attr": {"department": "marketing"}},
                    "actions": ["view:public", "approve"],
                    "auxData": {"jwt": {"sub": "alice", "iss": "https://idp.example",
                                        "act": {"sub": "agent-7", "act": {"sub": "orchestrator"}}}}
                }],
                "outputs": [{
                    "requestId": "req-7", "resourceId": "XX125",
                    "actions": {
                        "view:public": {"effect": "EFFECT_ALLOW", "policy": "resource.leave_request.v20210210"},
                        "approve": {"effect": "EFFECT_DENY", "policy": "resource.leave_request.v20210210"}
                    },
                    "effectiveDerivedRoles": ["owner"]
                }]
            },
            "requestContext": {"annotations": {"task_id": "task-9", "session_id": "sess-3", "purpose": "hr.review"}},
            "auditTrail": {"effectivePolicies": {"resource.leave_request.v20210210": {"attributes": {"driver": "disk"}}}},
            "policySource": {"git": {"repositoryUrl": "https://git.example/policies", "branch": "main", "hash": "9f3c2e1"}}
        })
    }

    fn fields(payload: &[u8]) -> crate::event::Fields {
        crate::event::validate(payload).unwrap().fields
    }

    #[test]
    fn a_check_resources_entry_fans_out_per_resource_and_action() {
        let raw = entry().to_string().into_bytes();
        let Mapped::Decisions(p) = map_entry(&raw, "cerbos-eu1").unwrap() else { panic!("decisions") };
        assert_eq!(p.len(), 2);
        let (a, b) = (fields(&p[0]), fields(&p[1]));
        assert_eq!(a.event_id, "cerbos:01HGJY9N4QAV1ZQ4GZ4YV3C8EN:0:view:public");
        assert_eq!((a.effect.as_deref(), b.effect.as_deref()), (Some("allow"), Some("deny")));
        assert_eq!((a.action.as_deref(), b.action.as_deref()), (Some("view:public"), Some("approve")));
        assert_eq!(a.principal_id.as_deref(), Some("alice"));
        assert_eq!(a.actor_id.as_deref(), Some("agent-7"));
        assert_eq!(a.chain.len(), 2);
        assert_eq!(a.policy_version.as_deref(), Some("9f3c2e1"), "the git revision is the policy-set version");
        assert_eq!(a.decision_path.as_deref(), Some("resource.leave_request.v20210210"));
        assert_eq!((a.resource_type.as_deref(), a.resource_id.as_deref()), (Some("leave_request"), Some("XX125")));
        assert_eq!((a.task_id.as_deref(), a.session_id.as_deref()), (Some("task-9"), Some("sess-3")));
        assert_eq!(a.purpose_scope.as_deref(), Some("hr.review"));
        assert_eq!(a.request_id.as_deref(), Some("req-7"));
        assert_eq!(a.pdp_id, "cerbos-eu1");
        assert_eq!(a.source_format.as_deref(), Some(CERBOS_FORMAT));
        // A pure function of the entry: the same line maps to the same bytes.
        let Mapped::Decisions(again) = map_entry(&raw, "cerbos-eu1").unwrap() else { panic!() };
        assert_eq!(p, again);
    }

    #[test]
    fn old_shapes_plans_access_entries_and_errors() {
        // Older Cerbos: top-level inputs and outputs; no act claim.
        let mut e = entry();
        let check = e.as_object_mut().unwrap().remove("checkResources").unwrap();
        e["inputs"] = check["inputs"].clone();
        e["outputs"] = check["outputs"].clone();
        e["inputs"][0]["auxData"] = json!(null);
        e["inputs"][0]["principal"]["roles"] = json!(["agent"]);
        e.as_object_mut().unwrap().remove("policySource");
        let Mapped::Decisions(p) = map_entry(e.to_string().as_bytes(), "c").unwrap() else { panic!() };
        let f = fields(&p[1]);
        assert_eq!((f.actor_id.as_deref(), f.actor_profile.as_deref()), (Some("alice"), Some("ai_agent")));
        assert_eq!(f.policy_version.as_deref(), Some("20210210"), "the resource's policyVersion");

        let plan = json!({"callId": "01PLAN", "timestamp": "2026-08-21T10:15:30Z",
            "planResources": {"input": {"requestId": "r", "action": "view", "principal": {"id": "bob", "roles": ["user"]},
                                        "resource": {"kind": "document"}},
                              "output": {"filter": {"kind": "KIND_CONDITIONAL", "condition": {"expression": {}}}}}});
        let Mapped::Decisions(p) = map_entry(plan.to_string().as_bytes(), "c").unwrap() else { panic!() };
        let f = fields(&p[0]);
        assert_eq!((f.event_id.as_str(), f.effect.as_deref()), ("cerbos:01PLAN:plan", Some("not_applicable")));

        let access = json!({"log.kind": "access", "callId": "01ACC", "timestamp": "2026-08-21T10:15:30Z",
                            "method": "/cerbos.svc.v1.CerbosService/CheckResources"});
        assert!(matches!(map_entry(access.to_string().as_bytes(), "c").unwrap(), Mapped::Access));

        let mut failed = entry();
        failed["checkResources"]["error"] = json!("policy compile error");
        let Mapped::Decisions(p) = map_entry(failed.to_string().as_bytes(), "c").unwrap() else { panic!() };
        assert_eq!(fields(&p[0]).effect.as_deref(), Some("indeterminate"));

        for (bad, path) in [
            (json!([1]), ""),
            (json!({"timestamp": "2026-08-21T10:15:30Z", "checkResources": {"inputs": [{}]}}), "/callId"),
            (json!({"callId": "x", "timestamp": "yesterday"}), "/timestamp"),
            (json!({"callId": "x", "timestamp": "2026-08-21T10:15:30Z"}), "/inputs"),
            (
                json!({"callId": "x", "timestamp": "2026-08-21T10:15:30Z", "checkResources": {"inputs": [{"actions": ["a"]}]}}),
                "/checkResources/inputs/0/resource",
            ),
            (json!({"callId": "x", "timestamp": "2026-08-21T10:15:30Z", "log.kind": "other"}), "/log.kind"),
        ] {
            let e = map_entry(bad.to_string().as_bytes(), "c").unwrap_err();
            assert_eq!((e.code, e.path.as_str()), ("malformed_cerbos_entry", path), "{bad}: {}", e.message);
        }
        let mut many = entry();
        many["checkResources"]["inputs"][0]["actions"] =
            json!((0..FANOUT_MAX + 1).map(|i| format!("a{i}")).collect::<Vec<_>>());
        assert_eq!(map_entry(many.to_string().as_bytes(), "c").unwrap_err().code, "cerbos_entry_too_large");
    }
}
