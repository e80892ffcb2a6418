//! OPA decision-log events mapped to actlog events (contract section 5).
//!
//! OPA (and Permit.io's PDP, which is OPA) ships decision logs unchanged:
//! a gzip JSON array of events with `decision_id`, `labels.id`,
//! `bundles.*.revision`, `path`, `input`, `result`, `timestamp`, ... Each is
//! mapped to one `authz.decision` event:
//!
//! - `event_id` is derived from (`labels.id`, `decision_id`), so a re-sent
//!   chunk maps to the same ids and the same payloads, and is stored once.
//! - AuthZEN-shaped input (`input.subject`, `input.action`, `input.resource`,
//!   `input.context`) maps with no configuration; other shapes use
//!   [`OpaMapping`]'s JSON Pointers into the OPA event.
//! - The delegation chain comes from the RFC 8693 `act` claim at
//!   `input.subject.properties.act` (nested `act` = deeper hops).
//! - The mapped payload is serialized canonically (RFC 8785, [`crate::canonical`]),
//!   so it is a pure function of the OPA event; the raw OPA event is kept beside it.
//!
//! These events are authenticated by the ingest token, not signed by the
//! producer (`producer_signature: none`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ingest::ItemError;
use crate::leaf::sha256;

/// The `source.format` of mapped OPA events.
pub const OPA_FORMAT: &str = "opa.decision_log.v1";

/// Where to find request fields in a non-AuthZEN OPA event. Every entry is a
/// JSON Pointer into the whole OPA event (for example `/input/user/id`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpaMapping {
    /// The subject's type (AuthZEN `subject.type`).
    pub subject_type: Option<String>,
    /// The subject's id.
    pub subject_id: Option<String>,
    /// The action name.
    pub action: Option<String>,
    /// The resource type.
    pub resource_type: Option<String>,
    /// The resource id.
    pub resource_id: Option<String>,
    /// An RFC 8693 `act` object (nested acts are deeper hops).
    pub act: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// The task id.
    pub task_id: Option<String>,
    /// The purpose scope.
    pub purpose_scope: Option<String>,
}

fn at<'a>(v: &'a Value, pointer: &Option<String>) -> Option<&'a Value> {
    pointer.as_deref().and_then(|p| v.pointer(p))
}

fn str_at(v: &Value, pointer: &Option<String>) -> Option<String> {
    at(v, pointer).and_then(scalar_string)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn item(code: &'static str, message: impl Into<String>, path: &str) -> ItemError {
    ItemError::new(code, message, path)
}

/// The event id of an OPA decision: `opa:<labels.id>:<decision_id>` when that
/// is at most 128 printable characters, else a hash of both.
pub fn opa_event_id(pdp_id: &str, decision_id: &str) -> String {
    source_event_id("opa", pdp_id, decision_id)
}

/// `<prefix>:<a>:<b>` when that is at most 128 printable characters (an
/// event id), else `<prefix>:` and a hash of both: the ids of mapped
/// sources, the same for the same source item whenever it is re-sent.
pub(crate) fn source_event_id(prefix: &str, a: &str, b: &str) -> String {
    let plain = format!("{prefix}:{a}:{b}");
    if plain.len() <= crate::event::EVENT_ID_BYTES_MAX && plain.bytes().all(|c| (0x21..=0x7e).contains(&c)) {
        plain
    } else {
        let mut h = a.as_bytes().to_vec();
        h.push(b'\n');
        h.extend_from_slice(b.as_bytes());
        format!("{prefix}:{}", &hex::encode(sha256(&h))[..40])
    }
}

/// A non-empty string, or a number as text, at `v`.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Normalizes an RFC 3339 timestamp with any offset to UTC `...Z`.
pub(crate) fn utc_timestamp(ts: &str) -> Option<String> {
    if crate::time::parse_rfc3339_utc(ts).is_some() {
        return Some(ts.to_string());
    }
    // `+hh:mm` / `-hh:mm` offsets: shift to UTC.
    let (body, sign, off) = if let Some(i) = ts.rfind(['+', '-']).filter(|i| *i > 10) {
        (&ts[..i], if &ts[i..i + 1] == "+" { -1i64 } else { 1 }, &ts[i + 1..])
    } else {
        return None;
    };
    let (h, m) = off.split_once(':')?;
    // RFC 3339: two digits each, at most 23:59 (so the shift cannot overflow).
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let nanos = crate::time::parse_rfc3339_utc(&format!("{body}Z"))?;
    Some(crate::time::format_rfc3339_utc(nanos + sign * (h * 3600 + m * 60) * 1_000_000_000))
}

/// The effect of an OPA `result`: `true` allow; `false` or absent deny; an
/// object's `allow` (bool) or `decision` (bool or "allow"/"deny").
fn effect_of(result: Option<&Value>) -> &'static str {
    let from_value = |v: &Value| match v {
        Value::Bool(true) => Some("allow"),
        Value::Bool(false) => Some("deny"),
        Value::String(s) if s.eq_ignore_ascii_case("allow") || s.eq_ignore_ascii_case("permit") => Some("allow"),
        Value::String(s) if s.eq_ignore_ascii_case("deny") => Some("deny"),
        _ => None,
    };
    match result {
        None | Some(Value::Null) => "deny",
        Some(Value::Object(o)) => o
            .get("allow")
            .or_else(|| o.get("decision"))
            .or_else(|| o.get("allowed"))
            .and_then(from_value)
            .unwrap_or("not_applicable"),
        Some(v) => from_value(v).unwrap_or("not_applicable"),
    }
}

/// Flattens an RFC 8693 `act` claim into chain hops, outermost first.
pub(crate) fn chain_from_act(act: &Value) -> Vec<Value> {
    let mut hops = Vec::new();
    let mut cur = Some(act);
    while let Some(a) = cur.filter(|a| a.is_object()) {
        let Some(sub) = a.get("sub").and_then(scalar_string) else { break };
        let depth = hops.len() as u32 + 1;
        let mut hop = json!({"depth": depth, "sub": sub,
            "sub_profile": a.get("sub_profile").and_then(Value::as_str).unwrap_or("ai_agent")});
        if let Some(iss) = a.get("iss").and_then(Value::as_str) {
            hop["iss"] = json!(iss);
        }
        hops.push(hop);
        if hops.len() >= crate::event::CHAIN_HOPS_MAX {
            break;
        }
        cur = a.get("act");
    }
    hops
}

/// The actor profile of a subject that acts itself, by its AuthZEN type.
pub(crate) fn profile_of(subject_type: &str) -> &'static str {
    match subject_type {
        "user" | "identity" => "user",
        "agent" | "ai_agent" => "ai_agent",
        "workload" => "workload",
        _ => "service",
    }
}

/// A mapped source's `delegation`: `chain` (outermost hop first) acting for
/// `principal`; with no chain, the principal acts itself with `profile`.
/// The source asserts it (`method`); nothing here verified it. Also whether
/// the actor is an AI agent (whose events need a session and a task).
pub fn delegation(mut chain: Vec<Value>, principal: Value, profile: &str, method: &str) -> (Value, bool) {
    let mut d = Map::new();
    if chain.is_empty() {
        chain.push(json!({"depth": 1, "sub": principal["id"], "sub_profile": profile}));
    } else {
        d.insert("principal".into(), principal);
    }
    let mut actor = json!({"id": chain[0]["sub"], "sub_profile": chain[0]["sub_profile"]});
    if let Some(iss) = chain[0].get("iss") {
        actor["iss"] = iss.clone();
    }
    let is_agent = actor["sub_profile"] == "ai_agent";
    d.insert("actor".into(), actor);
    d.insert("chain".into(), Value::Array(chain));
    d.insert("verification".into(), json!({"status": "asserted", "method": method}));
    (Value::Object(d), is_agent)
}

/// `correlation` with the session and task ids given; an AI agent's
/// missing ones are `unknown` (the schema requires them), never invented.
pub fn correlation(session_id: Option<String>, task_id: Option<String>, is_agent: bool) -> Map<String, Value> {
    let mut c = Map::new();
    for (key, val) in [("session_id", session_id), ("task_id", task_id)] {
        match val {
            Some(s) => {
                c.insert(key.into(), json!(s));
            }
            None if is_agent => {
                c.insert(key.into(), json!("unknown"));
            }
            None => {}
        }
    }
    c
}

/// A mapped source item's event: its canonical bytes, and what validating
/// them once gave.
pub type MappedEvent = (Vec<u8>, crate::event::Event);

/// Serializes a mapped event canonically (RFC 8785, a pure function of the
/// source item) and validates it, once; a mapping that breaks the schema is
/// refused with `unmappable`.
pub fn finish(event: &Value, unmappable: &'static str) -> Result<MappedEvent, ItemError> {
    let bytes = crate::canonical::to_vec(event);
    let checked = crate::event::validate(&bytes)
        .map_err(|e| item(unmappable, format!("the mapped event breaks the schema: {e}"), &e.path))?;
    Ok((bytes, checked))
}

/// Refuses a source item larger than `envelope_bytes_max` (`what` names it).
pub fn within_envelope_max(raw: &[u8], what: &str, envelope_bytes_max: usize) -> Result<(), ItemError> {
    if raw.len() > envelope_bytes_max {
        return Err(item(
            "envelope_too_large",
            format!("the {what} is {} bytes; the limit envelope_bytes_max is {envelope_bytes_max}", raw.len()),
            "",
        ));
    }
    Ok(())
}

/// Packages a mapped event of a token-authenticated source of `format` for
/// the store, with the raw item kept beside it.
pub fn token_checked(
    format: &str,
    raw: &[u8],
    (payload, event): MappedEvent,
    token: &OpaToken<'_>,
) -> crate::ingest::Checked {
    let envelope = stored_record_as(format, raw, &payload, token.name);
    crate::ingest::Checked {
        envelope_sha256: sha256(&envelope),
        envelope,
        payload_sha256: sha256(&payload),
        fields: event.fields,
        kind: crate::leaf::LeafKind::TokenAuthenticated,
        producer_key_id: token.sha256,
        producer_key_name: None,
    }
}

/// Maps one raw OPA decision event to the payload bytes of an actlog event.
/// `bound_pdp` is the ingest token's PDP binding, if any.
pub fn map_decision(raw: &[u8], mapping: &OpaMapping, bound_pdp: Option<&str>) -> Result<Vec<u8>, ItemError> {
    map_event(raw, mapping, bound_pdp).map(|(bytes, _)| bytes)
}

fn map_event(raw: &[u8], mapping: &OpaMapping, bound_pdp: Option<&str>) -> Result<MappedEvent, ItemError> {
    let v: Value =
        serde_json::from_slice(raw).map_err(|e| item("malformed_opa_event", format!("not JSON: {e}"), ""))?;
    let o =
        v.as_object().ok_or_else(|| item("malformed_opa_event", "an OPA decision event must be a JSON object", ""))?;
    let decision_id = o
        .get("decision_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| item("malformed_opa_event", "decision_id is missing", "/decision_id"))?;
    let labels = o.get("labels").and_then(Value::as_object);
    let pdp_id = labels
        .and_then(|l| l.get("id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| item("malformed_opa_event", "labels.id (the OPA instance id) is missing", "/labels/id"))?;
    if let Some(bound) = bound_pdp.filter(|b| *b != pdp_id) {
        return Err(item("pdp_mismatch", format!("this token may only submit events of PDP `{bound}`"), "/labels/id"));
    }
    let timestamp = o
        .get("timestamp")
        .and_then(Value::as_str)
        .ok_or_else(|| item("malformed_opa_event", "timestamp is missing", "/timestamp"))?;
    let event_time = utc_timestamp(timestamp)
        .ok_or_else(|| item("malformed_opa_event", "timestamp is not RFC 3339", "/timestamp"))?;
    let input = o.get("input").cloned().unwrap_or(Value::Null);

    // Request: AuthZEN-shaped input first, then the configured pointers.
    let authzen = |k: &str| input.get(k).filter(|x| x.is_object()).cloned();
    let mut subject = authzen("subject").unwrap_or_else(|| json!({}));
    let mut action = authzen("action").unwrap_or_else(|| json!({}));
    let mut resource = authzen("resource").unwrap_or_else(|| json!({}));
    let set = |obj: &mut Value, key: &str, val: Option<String>| {
        if let Some(val) = val {
            obj[key] = json!(val);
        }
    };
    set(&mut subject, "type", str_at(&v, &mapping.subject_type));
    set(&mut subject, "id", str_at(&v, &mapping.subject_id));
    set(&mut action, "name", str_at(&v, &mapping.action));
    set(&mut resource, "type", str_at(&v, &mapping.resource_type));
    set(&mut resource, "id", str_at(&v, &mapping.resource_id));
    let path = o.get("path").and_then(Value::as_str).unwrap_or("");
    // What OPA cannot know is marked, never invented: the decision path
    // stands in for a missing action, and `unknown` for missing ids.
    if action.get("name").and_then(scalar_string).is_none() {
        action["name"] = json!(if path.is_empty() { "unknown" } else { path });
    }
    for (obj, default_type) in [(&mut subject, "unknown"), (&mut resource, "opa_path")] {
        if obj.get("type").and_then(scalar_string).is_none() {
            obj["type"] = json!(default_type);
        }
        if obj.get("id").and_then(scalar_string).is_none() {
            obj["id"] = json!(if default_type == "opa_path" && !path.is_empty() { path } else { "unknown" });
        }
    }
    let mut request = json!({"subject": subject, "action": action, "resource": resource});
    if let Some(ctx) = input.get("context").filter(|c| c.is_object()) {
        request["context"] = ctx.clone();
    }
    if request["resource"]["type"] == "tool" {
        let tool = input.get("tool").filter(|t| t.is_object()).cloned();
        let name = tool
            .as_ref()
            .and_then(|t| t.get("name"))
            .and_then(scalar_string)
            .unwrap_or_else(|| scalar_string(&request["resource"]["id"]).unwrap_or_else(|| "unknown".into()));
        let mut t = tool.unwrap_or_else(|| json!({}));
        t["name"] = json!(name);
        request["tool"] = t;
    }

    // Delegation: the act claim makes the subject the principal.
    let act = at(&v, &mapping.act).or_else(|| input.pointer("/subject/properties/act")).filter(|a| a.is_object());
    let subject_id = scalar_string(&request["subject"]["id"]).unwrap_or_else(|| "unknown".into());
    let subject_type = scalar_string(&request["subject"]["type"]).unwrap_or_else(|| "unknown".into());
    let chain = act.map(chain_from_act).unwrap_or_default();
    let mut principal = json!({"type": subject_type, "id": subject_id});
    if let Some(iss) = request["subject"].pointer("/properties/iss").and_then(Value::as_str) {
        principal["iss"] = json!(iss);
    }
    let (delegation, is_agent) = delegation(chain, principal, profile_of(&subject_type), "none");

    let ctx = input.get("context");
    let pick = |configured: &Option<String>, key: &str| {
        str_at(&v, configured).or_else(|| ctx.and_then(|c| c.get(key)).and_then(scalar_string))
    };
    let mut correlation =
        correlation(pick(&mapping.session_id, "session_id"), pick(&mapping.task_id, "task_id"), is_agent);
    if let Some(t) = o.get("trace_id").and_then(scalar_string) {
        correlation.insert("trace_id".into(), json!(t));
    }
    if let Some(r) = o.get("req_id").and_then(scalar_string) {
        correlation.insert("request_id".into(), json!(r));
    }

    let mut policy = Map::new();
    match o.get("bundles").and_then(Value::as_object).filter(|b| !b.is_empty()) {
        Some(b) => {
            policy.insert("bundles".into(), Value::Object(b.clone()));
        }
        None => {
            let rev = o.get("revision").and_then(Value::as_str).unwrap_or("unversioned");
            policy.insert("version".into(), json!(rev));
        }
    }
    if !path.is_empty() {
        policy.insert("decision_path".into(), json!(path));
    }
    let result = o.get("result");
    let mut decision = json!({"effect": effect_of(result), "raw": result.cloned().unwrap_or(Value::Null)});
    if let Some(err) = o.get("error").filter(|e| !e.is_null()) {
        decision["effect"] = json!("indeterminate");
        decision["error"] = json!({"code": err.get("code").cloned().unwrap_or(json!("opa_error")), "message": err.get("message").cloned().unwrap_or(err.clone())});
    }
    let mut event = json!({
        "spec_version": "1",
        "event_type": "authz.decision",
        "event_id": opa_event_id(pdp_id, decision_id),
        "event_time": event_time,
        "pdp": {"id": pdp_id, "kind": "opa"},
        "source": {"format": OPA_FORMAT, "native_id": decision_id, "raw_sha256": hex::encode(sha256(raw))},
        "producer_signature": "none",
        "delegation": delegation,
        "policy": policy,
        "request": request,
        "decision": decision,
    });
    if let Some(version) = labels.and_then(|l| l.get("version")) {
        event["pdp"]["version"] = version.clone();
    }
    if !correlation.is_empty() {
        event["correlation"] = Value::Object(correlation);
    }
    if let Some(scope) = str_at(&v, &mapping.purpose_scope) {
        event["purpose"] = json!({"scope": scope});
    }
    let mut redaction = Map::new();
    for k in ["erased", "masked"] {
        if let Some(x) = o.get(k) {
            redaction.insert(k.into(), x.clone());
        }
    }
    if !redaction.is_empty() {
        event["redaction"] = Value::Object(redaction);
    }
    let mut ext = Map::new();
    for k in ["requested_by", "metrics", "nd_builtin_cache", "span_id", "query", "mapped_result"] {
        if let Some(x) = o.get(k) {
            ext.insert(k.into(), x.clone());
        }
    }
    if !ext.is_empty() {
        event["ext"] = json!({"opa": ext});
    }
    finish(&event, "unmappable_opa_event")
}

/// The token an OPA event is attributed to.
#[derive(Debug, Clone)]
pub struct OpaToken<'a> {
    /// The token's name (kept in the stored record).
    pub name: &'a str,
    /// SHA-256 of the token: the leaf's producer key id.
    pub sha256: crate::Hash,
    /// The token's PDP binding, if any.
    pub pdp_id: Option<&'a str>,
}

/// Maps, validates and packages one raw OPA event for the store: the same
/// steps at `POST /v1/opa/logs` and at `actlog import --format opa`.
pub fn check(
    raw: &[u8],
    mapping: &OpaMapping,
    token: &OpaToken<'_>,
    envelope_bytes_max: usize,
) -> Result<crate::ingest::Checked, ItemError> {
    within_envelope_max(raw, "OPA event", envelope_bytes_max)?;
    Ok(token_checked(OPA_FORMAT, raw, map_event(raw, mapping, token.pdp_id)?, token))
}

/// The stored record of a token-authenticated OPA event (see `schema/leaf.md`).
///
/// The raw OPA event is embedded byte for byte (it was parsed as JSON
/// already), so `source.raw_sha256` can be recomputed from the record.
pub fn stored_record(raw: &[u8], payload: &[u8], token_name: &str) -> Vec<u8> {
    stored_record_as(OPA_FORMAT, raw, payload, token_name)
}

/// [`stored_record`] for a source of `format` (OPA, Cerbos, ...): the same
/// record shape, so the store, `verify` and duplicate detection treat every
/// token-authenticated source alike.
pub fn stored_record_as(format: &str, raw: &[u8], payload: &[u8], token_name: &str) -> Vec<u8> {
    let raw_text = std::str::from_utf8(raw).ok().filter(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok());
    let token = serde_json::to_string(token_name).expect("serializable");
    let mut out = Vec::with_capacity(raw.len() + payload.len() * 4 / 3 + 128);
    out.extend_from_slice(
        format!("{{\"format\":{},\"payload\":\"{}\",\"raw\":", json!(format), crate::b64::encode(payload)).as_bytes(),
    );
    out.extend_from_slice(raw_text.unwrap_or("null").as_bytes());
    out.extend_from_slice(format!(",\"token\":{token}}}").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored payloads are canonical (`crate::canonical`) and do not depend
    /// on serde_json's map order, but the JSON the server answers with and
    /// the evidence documents it signs do: they print keys sorted because
    /// serde_json's default map keeps them sorted. Its `preserve_order`
    /// feature, if any crate in the build turned it on, would change those
    /// bytes from one build to the next. This fails first.
    #[test]
    fn json_objects_print_with_sorted_keys() {
        let v = json!({"b": 1, "a": {"d": 2, "c": 3}});
        assert_eq!(v.to_string(), r#"{"a":{"c":3,"d":2},"b":1}"#, "serde_json's preserve_order is on somewhere");
    }

    fn opa(decision_id: &str, input: Value, result: Value) -> Vec<u8> {
        json!({
            "decision_id": decision_id,
            "labels": {"id": "opa-1", "version": "1.4.2"},
            "bundles": {"authz": {"revision": "rev-7"}},
            "path": "mcp/authz/allow",
            "input": input,
            "result": result,
            "timestamp": "2026-08-21T10:15:30.123456789Z",
            "req_id": 7,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn authzen_input_with_act_maps_without_configuration() {
        let input = json!({
            "subject": {"type": "user", "id": "alice", "properties": {"act": {"sub": "agent-1", "sub_profile": "ai_agent", "act": {"sub": "orchestrator"}}}},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "book_flight"},
            "context": {"session_id": "s1", "task_id": "t1"}
        });
        let payload = map_decision(&opa("d1", input, json!(true)), &OpaMapping::default(), None).unwrap();
        let ev = crate::event::validate(&payload).unwrap();
        let f = &ev.fields;
        assert_eq!(f.event_id, "opa:opa-1:d1");
        assert_eq!(f.effect.as_deref(), Some("allow"));
        assert_eq!(f.principal_id.as_deref(), Some("alice"));
        assert_eq!(f.actor_id.as_deref(), Some("agent-1"));
        assert_eq!(f.chain.len(), 2);
        assert_eq!(f.chain[1].sub, "orchestrator");
        assert_eq!(f.tool_name.as_deref(), Some("book_flight"));
        assert_eq!(f.policy_version.as_deref(), Some("rev-7"));
        assert_eq!(f.source_format.as_deref(), Some(OPA_FORMAT));
        assert_eq!((f.session_id.as_deref(), f.task_id.as_deref()), (Some("s1"), Some("t1")));
        // Deterministic: the same OPA event always maps to the same bytes.
        let mapped: Value = serde_json::from_slice(&payload).unwrap();
        let again = map_decision(&opa("d1", mapped["request"].clone(), json!(true)), &OpaMapping::default(), None);
        assert!(again.is_ok());
        // The stored record keeps the raw event byte for byte.
        let raw = opa("d1", json!({"a": [1, 2]}), json!(true));
        let rec: Value = serde_json::from_slice(&stored_record(&raw, b"{}", "tok")).unwrap();
        assert_eq!(serde_json::to_vec(&rec["raw"]).unwrap().len(), raw.len());
        assert_eq!(rec["token"], "tok");
    }

    #[test]
    fn configured_pointers_map_other_input_shapes() {
        let input = json!({"user": {"name": "bob"}, "method": "GET", "path": ["accounts", "42"]});
        let mapping = OpaMapping {
            subject_id: Some("/input/user/name".into()),
            subject_type: None,
            action: Some("/input/method".into()),
            resource_id: Some("/input/path/1".into()),
            resource_type: Some("/input/path/0".into()),
            ..OpaMapping::default()
        };
        let payload = map_decision(&opa("d2", input, json!({"allow": false})), &mapping, None).unwrap();
        let f = crate::event::validate(&payload).unwrap().fields;
        assert_eq!(f.action.as_deref(), Some("GET"));
        assert_eq!((f.resource_type.as_deref(), f.resource_id.as_deref()), (Some("accounts"), Some("42")));
        assert_eq!(f.actor_id.as_deref(), Some("bob"));
        assert_eq!(f.effect.as_deref(), Some("deny"));
    }

    #[test]
    fn effects_errors_offsets_and_bad_events() {
        assert_eq!(effect_of(Some(&json!({"decision": "allow"}))), "allow");
        assert_eq!(effect_of(Some(&json!({"x": 1}))), "not_applicable");
        assert_eq!(effect_of(None), "deny");
        assert_eq!(utc_timestamp("2026-08-21T12:15:30+02:00").as_deref(), Some("2026-08-21T10:15:30.000000000Z"));
        assert_eq!(utc_timestamp("2026-08-21T01:15:30-05:30").as_deref(), Some("2026-08-21T06:45:30.000000000Z"));
        // Offsets outside RFC 3339 are refused, never overflowed.
        for bad in [
            "2026-08-21T12:15:30+99999999999999999:00",
            "2026-08-21T12:15:30+24:00",
            "2026-08-21T12:15:30+2:00",
            "2026-08-21T12:15:30+02:60",
            "2026-08-21T12:15:30+-2:00",
        ] {
            assert_eq!(utc_timestamp(bad), None, "{bad}");
        }
        let mut e: Value = serde_json::from_slice(&opa("d3", json!({}), json!(null))).unwrap();
        e["error"] = json!({"code": "eval_error", "message": "boom"});
        let f = crate::event::validate(&map_decision(e.to_string().as_bytes(), &OpaMapping::default(), None).unwrap())
            .unwrap()
            .fields;
        assert_eq!(f.effect.as_deref(), Some("indeterminate"));
        assert_eq!(map_decision(b"[1]", &OpaMapping::default(), None).unwrap_err().code, "malformed_opa_event");
        let no_id = json!({"labels": {"id": "x"}, "timestamp": "2026-01-01T00:00:00Z"}).to_string();
        assert_eq!(map_decision(no_id.as_bytes(), &OpaMapping::default(), None).unwrap_err().path, "/decision_id");
        assert_eq!(
            map_decision(&opa("d4", json!({}), json!(true)), &OpaMapping::default(), Some("opa-2")).unwrap_err().code,
            "pdp_mismatch"
        );
    }
}
