//! OpenTelemetry GenAI spans (and log records) mapped to actlog events:
//! `POST /v1/otlp/v1/traces` and `/v1/otlp/v1/logs`, OTLP/HTTP in
//! protobuf or JSON, so a Collector or an SDK exports straight to actlog.
//!
//! - An `apply_guardrail` span (`gen_ai.operation.name`) is an
//!   `authz.decision`: the guardian's verdict (`gen_ai.security.decision.type`)
//!   is the effect, kept apart from what was then enforced.
//! - An `execute_tool` span is an `authz.outcome` of the tool call: it names
//!   the decision of the guardrail span under it (in the same export, or
//!   stored from an earlier one), and is `failed` when its status is an error.
//! - The agent is `gen_ai.agent.id`/`name` on the span or on the nearest
//!   `invoke_agent` span above it; the person is `user.id` or `enduser.id`.
//! - `trace_id` and the span ids, the tool name and call id, the
//!   conversation id (the session) and the policy id fill their fields;
//!   every other attribute is kept in `ext.otel`.
//! - Other spans are not decisions: they are skipped and counted.
//!
//! Event ids are `otel:<trace_id>:<span_id>`, so a re-sent export stores
//! nothing twice.

use std::collections::HashMap;

use actlog_core::ingest::{Checked, ItemError};
use actlog_core::opa::{MappedEvent, OpaToken};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Value, json};

/// The `source.format` of mapped spans and log records.
pub const OTLP_FORMAT: &str = "otlp.genai.v1";
/// The PDP id when neither the token nor the span names the guardian.
pub const OTEL_DEFAULT_PDP_ID: &str = "otel";

/// Which OTLP signal a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportLogsServiceRequest`.
    Logs,
}

/// One span or log record, flattened: its ids, its attributes merged over
/// its resource's, and where it was in the request.
struct Item {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    start_ns: u64,
    error: Option<String>,
    attrs: Map<String, Value>,
    path: String,
    raw: Vec<u8>,
}

impl Item {
    fn op(&self) -> Option<&str> {
        self.attrs.get("gen_ai.operation.name").and_then(Value::as_str)
    }
    fn text(&self, key: &str) -> Option<String> {
        actlog_core::opa::text(self.attrs.get(key))
    }
}

fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map(Value::Number).unwrap_or(Value::Null)
        }
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(any_to_json).collect()),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(attrs(&l.values)),
        Some(any_value::Value::BytesValue(b)) => json!(actlog_core::b64::encode(b)),
        // A reference into a profile's string table: meaningless outside it.
        Some(any_value::Value::StringValueStrindex(i)) => json!({"strindex": i}),
    }
}

fn attrs(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(any_to_json).unwrap_or(Value::Null))).collect()
}

fn bad(message: impl Into<String>, path: &str) -> ItemError {
    ItemError { code: "malformed_otlp", message: message.into(), path: path.into() }
}

/// Decodes a body of `signal` (protobuf, or JSON when `json`) into items.
fn items(signal: Signal, body: &[u8], json: bool) -> Result<Vec<Item>, ItemError> {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest,
    };
    use prost::Message;
    let decode_err = |e: String| ItemError {
        code: if json { "malformed_json" } else { "malformed_protobuf" },
        message: e,
        path: String::new(),
    };
    let mut out = Vec::new();
    match signal {
        Signal::Traces => {
            let req: ExportTraceServiceRequest = if json {
                serde_json::from_slice(body).map_err(|e| decode_err(format!("not an OTLP/JSON trace export: {e}")))?
            } else {
                ExportTraceServiceRequest::decode(body)
                    .map_err(|e| decode_err(format!("not an OTLP protobuf trace export: {e}")))?
            };
            for (i, rs) in req.resource_spans.iter().enumerate() {
                let resource = rs.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
                for (j, ss) in rs.scope_spans.iter().enumerate() {
                    let scope = ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    for (k, span) in ss.spans.iter().enumerate() {
                        let mut a = resource.clone();
                        a.extend(attrs(&span.attributes));
                        let error = span
                            .status
                            .as_ref()
                            .filter(|s| s.code == 2)
                            .map(|s| if s.message.is_empty() { "error".to_string() } else { s.message.clone() });
                        let raw = actlog_core::canonical::to_vec(&json!({
                            "resource": resource, "scope": scope,
                            "span": serde_json::to_value(span).unwrap_or(Value::Null),
                        }));
                        out.push(Item {
                            trace_id: span.trace_id.clone(),
                            span_id: span.span_id.clone(),
                            parent: span.parent_span_id.clone(),
                            name: span.name.clone(),
                            start_ns: span.start_time_unix_nano,
                            error,
                            attrs: a,
                            path: format!("/resourceSpans/{i}/scopeSpans/{j}/spans/{k}"),
                            raw,
                        });
                    }
                }
            }
        }
        Signal::Logs => {
            let req: ExportLogsServiceRequest = if json {
                serde_json::from_slice(body).map_err(|e| decode_err(format!("not an OTLP/JSON log export: {e}")))?
            } else {
                ExportLogsServiceRequest::decode(body)
                    .map_err(|e| decode_err(format!("not an OTLP protobuf log export: {e}")))?
            };
            for (i, rl) in req.resource_logs.iter().enumerate() {
                let resource = rl.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
                for (j, sl) in rl.scope_logs.iter().enumerate() {
                    let scope = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    for (k, rec) in sl.log_records.iter().enumerate() {
                        let mut a = resource.clone();
                        a.extend(attrs(&rec.attributes));
                        let raw = actlog_core::canonical::to_vec(&json!({
                            "resource": resource, "scope": scope,
                            "log_record": serde_json::to_value(rec).unwrap_or(Value::Null),
                        }));
                        let time =
                            if rec.time_unix_nano > 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
                        out.push(Item {
                            trace_id: rec.trace_id.clone(),
                            span_id: rec.span_id.clone(),
                            parent: Vec::new(),
                            name: rec.event_name.clone(),
                            start_ns: time,
                            error: None,
                            attrs: a,
                            path: format!("/resourceLogs/{i}/scopeLogs/{j}/logRecords/{k}"),
                            raw,
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What a request maps to: events in order (decisions first), or the
/// refusals; and how many items were not GenAI decisions or tool calls.
pub struct Mapped {
    /// Each event (validated once) and the raw item bytes.
    pub events: Vec<(MappedEvent, Vec<u8>)>,
    /// Items skipped (not `apply_guardrail` or `execute_tool`).
    pub skipped: u64,
}

/// The ids of the decision a tool call's outcome names: a guardrail span
/// under it in this request, else the one `stored` finds for (trace id,
/// tool-call span id), else none.
pub type StoredDecision<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// Maps one OTLP request body.
pub fn map(
    signal: Signal,
    body: &[u8],
    json: bool,
    bound_pdp: Option<&str>,
    stored: StoredDecision<'_>,
) -> Result<Mapped, Vec<(usize, ItemError)>> {
    let items = items(signal, body, json).map_err(|e| vec![(0, e)])?;
    let by_span: HashMap<(&[u8], &[u8]), &Item> =
        items.iter().filter(|i| !i.span_id.is_empty()).map(|i| ((&i.trace_id[..], &i.span_id[..]), i)).collect();
    let mut decisions = Vec::new();
    let mut outcomes = Vec::new();
    let mut refused = Vec::new();
    let mut skipped = 0;
    for (index, item) in items.iter().enumerate() {
        let op = item.op();
        if !matches!(op, Some("apply_guardrail" | "execute_tool")) {
            skipped += 1;
            continue;
        }
        if item.trace_id.len() != 16 || item.trace_id.iter().all(|b| *b == 0) {
            refused.push((index, bad("a GenAI span needs a 16-byte trace id", &format!("{}/traceId", item.path))));
            continue;
        }
        if item.span_id.len() != 8 {
            refused.push((index, bad("a GenAI span needs an 8-byte span id", &format!("{}/spanId", item.path))));
            continue;
        }
        let event = if op == Some("apply_guardrail") {
            decision(item, &by_span, bound_pdp)
        } else {
            outcome(item, &items, &by_span, stored)
        };
        match actlog_core::opa::finish(&event, "unmappable_otlp") {
            Ok(mapped) => {
                let slot = if op == Some("apply_guardrail") { &mut decisions } else { &mut outcomes };
                slot.push((mapped, item.raw.clone()));
            }
            // Named by where the span is in the export, not inside the mapped event.
            Err(e) => refused.push((index, ItemError { path: item.path.clone(), ..e })),
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    decisions.extend(outcomes);
    Ok(Mapped { events: decisions, skipped })
}

fn event_id(trace: &[u8], span: &[u8]) -> String {
    format!("otel:{}:{}", hex::encode(trace), hex::encode(span))
}

fn time(ns: u64) -> String {
    actlog_core::time::format_rfc3339_utc(ns.min(i64::MAX as u64) as i64)
}

/// The agent acting in `item`: its own `gen_ai.agent.*`, or the nearest
/// `invoke_agent` span above it in this request.
fn agent<'a>(item: &'a Item, by_span: &HashMap<(&[u8], &[u8]), &'a Item>) -> Option<(String, Option<String>)> {
    let mut cur = Some(item);
    for _ in 0..64 {
        let it = cur?;
        if let Some(id) = it.text("gen_ai.agent.id").or_else(|| it.text("gen_ai.agent.name")) {
            return Some((id, it.text("gen_ai.agent.name")));
        }
        cur = by_span.get(&(&it.trace_id[..], &it.parent[..])).copied();
    }
    None
}

/// The shared part of both events: who acted, for whom, in which trace.
fn base(item: &Item, by_span: &HashMap<(&[u8], &[u8]), &Item>, event_type: &str) -> Value {
    let service = item.text("service.name").unwrap_or_else(|| "unknown".into());
    let person = item.text("user.id").or_else(|| item.text("enduser.id"));
    let (chain, profile) = match agent(item, by_span) {
        Some((id, name)) => {
            let mut hop = json!({"depth": 1, "sub": id, "sub_profile": "ai_agent"});
            if let Some(n) = name {
                hop["name"] = json!(n);
            }
            (vec![hop], "ai_agent")
        }
        None if person.is_some() => (Vec::new(), "user"),
        None => (Vec::new(), "service"),
    };
    let principal = match &person {
        Some(p) => json!({"type": "user", "id": p}),
        None => json!({"type": "service", "id": service}),
    };
    let (mut delegation, is_agent) = actlog_core::opa::delegation(chain, principal, profile, "none");
    if person.is_none() {
        delegation.as_object_mut().expect("an object").remove("principal");
    }
    let trace = hex::encode(&item.trace_id);
    // A trace is one agent run: it stands in for the task when none is named.
    let session = item.text("gen_ai.conversation.id").or_else(|| item.text("session.id"));
    let task = item.text("gen_ai.task.id").or_else(|| is_agent.then(|| trace.clone()));
    let mut correlation = actlog_core::opa::correlation(session, task, is_agent);
    correlation.insert("trace_id".into(), json!(trace));
    let tool = item.text("gen_ai.tool.name");
    let mut ext = Map::new();
    ext.insert("span_id".into(), json!(hex::encode(&item.span_id)));
    if !item.parent.is_empty() {
        ext.insert("parent_span_id".into(), json!(hex::encode(&item.parent)));
    }
    if !item.name.is_empty() {
        ext.insert("name".into(), json!(item.name));
    }
    ext.insert("attributes".into(), Value::Object(item.attrs.clone()));
    let mut event = json!({
        "spec_version": "1",
        "event_type": event_type,
        "event_id": event_id(&item.trace_id, &item.span_id),
        "event_time": time(item.start_ns),
        "source": {"format": OTLP_FORMAT, "native_id": format!("{trace}:{}", hex::encode(&item.span_id))},
        "producer_signature": "none",
        "delegation": delegation,
        "correlation": correlation,
        "ext": {"otel": ext},
    });
    if let Some(t) = tool {
        event["ext"]["otel"]["tool_name"] = json!(t);
    }
    event
}

/// The request of a tool call, or of another guarded target.
fn request(item: &Item, tool: Option<String>, target_type: Option<&str>, target_id: Option<String>) -> Value {
    let subject_id = agent_id_or_service(item);
    match (target_type, tool) {
        (None | Some("tool_call"), Some(t)) => {
            let mut tool = json!({"name": t});
            if let Some(call) = item.text("gen_ai.tool.call.id") {
                tool["call_id"] = json!(call);
            }
            json!({"subject": {"type": "agent", "id": subject_id}, "action": {"name": "tools/call"},
                   "resource": {"type": "tool", "id": t}, "tool": tool})
        }
        (t, _) => {
            let t = t.unwrap_or("unknown");
            json!({"subject": {"type": "agent", "id": subject_id}, "action": {"name": format!("guardrail/{t}")},
                   "resource": {"type": t, "id": target_id.unwrap_or_else(|| "unknown".into())}})
        }
    }
}

fn agent_id_or_service(item: &Item) -> String {
    item.text("gen_ai.agent.id")
        .or_else(|| item.text("gen_ai.agent.name"))
        .or_else(|| item.text("service.name"))
        .unwrap_or_else(|| "unknown".into())
}

fn decision(item: &Item, by_span: &HashMap<(&[u8], &[u8]), &Item>, bound_pdp: Option<&str>) -> Value {
    let mut event = base(item, by_span, "authz.decision");
    let pdp = bound_pdp
        .map(str::to_string)
        .or_else(|| item.text("gen_ai.guardian.id"))
        .or_else(|| item.text("gen_ai.guardian.name"))
        .or_else(|| item.text("service.name"))
        .unwrap_or_else(|| OTEL_DEFAULT_PDP_ID.into());
    event["pdp"] = json!({"id": pdp, "kind": "otel"});
    if let Some(name) = item.text("gen_ai.guardian.name") {
        event["pdp"]["name"] = json!(name);
    }
    let target_type = item.text("gen_ai.security.target.type");
    // The tool: on the guardrail span, or on the tool call it guards.
    let parent = by_span.get(&(&item.trace_id[..], &item.parent[..]));
    let tool = item
        .text("gen_ai.tool.name")
        .or_else(|| parent.filter(|p| p.op() == Some("execute_tool")).and_then(|p| p.text("gen_ai.tool.name")));
    let tool = tool.or_else(|| {
        (target_type.as_deref() == Some("tool_call")).then(|| item.text("gen_ai.security.target.id")).flatten()
    });
    event["request"] = request(item, tool, target_type.as_deref(), item.text("gen_ai.security.target.id"));
    let version = item
        .text("gen_ai.security.policy.version")
        .or_else(|| item.text("gen_ai.security.policy.id"))
        .unwrap_or_else(|| "unversioned".into());
    event["policy"] = json!({"version": version});
    if let Some(p) = item.text("gen_ai.security.policy.name").or_else(|| item.text("gen_ai.security.policy.id")) {
        event["policy"]["decision_path"] = json!(p);
    }
    // The verdict, as the guardian gave it; what was enforced is the
    // outcome's to say.
    let verdict = item.text("gen_ai.security.decision.type");
    let effect = match verdict.as_deref() {
        Some("allow" | "warn" | "audit" | "modify") => "allow",
        Some("deny") => "deny",
        _ => "indeterminate",
    };
    let mut decision = json!({"effect": effect, "raw": {"decision_type": verdict}});
    if let Some(r) = item.text("gen_ai.security.decision.reason") {
        decision["reasons"] = json!([r]);
    }
    if let Some(e) = &item.error {
        decision["error"] = json!({"code": "span_error", "message": e});
    }
    event["decision"] = decision;
    event
}

fn outcome(item: &Item, items: &[Item], by_span: &HashMap<(&[u8], &[u8]), &Item>, stored: StoredDecision<'_>) -> Value {
    let mut event = base(item, by_span, "authz.outcome");
    event["pdp"] =
        json!({"id": item.text("service.name").unwrap_or_else(|| OTEL_DEFAULT_PDP_ID.into()), "kind": "otel"});
    let tool = item.text("gen_ai.tool.name");
    event["request"] = request(item, tool, None, None);
    // The guardrail under this tool call: in this request, else stored.
    let guard = items
        .iter()
        .filter(|g| g.op() == Some("apply_guardrail") && g.trace_id == item.trace_id && g.parent == item.span_id)
        .min_by_key(|g| g.start_ns)
        .map(|g| event_id(&g.trace_id, &g.span_id))
        .or_else(|| stored(&hex::encode(&item.trace_id), &hex::encode(&item.span_id)));
    let decision_id = guard.unwrap_or_else(|| format!("{}:no-decision", event_id(&item.trace_id, &item.span_id)));
    let status = if item.error.is_some() { "failed" } else { "executed" };
    event["outcome"] = json!({"decision_event_id": decision_id, "status": status});
    if let Some(e) = &item.error {
        event["outcome"]["error"] = json!(e);
    }
    event
}

/// Packages mapped events for the store.
pub fn checked(mapped: Mapped, token: &OpaToken<'_>) -> Vec<Checked> {
    mapped
        .events
        .into_iter()
        .map(|(event, raw)| actlog_core::opa::token_checked(OTLP_FORMAT, &raw, event, token))
        .collect()
}
