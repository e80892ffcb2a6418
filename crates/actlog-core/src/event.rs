//! Event validation and normalization.
//!
//! [`validate`] implements the rules of `schema/event.v1.schema.json` plus the
//! checks JSON Schema cannot express (chain depths, chain head = actor, real
//! calendar dates). The first defect found is reported with the JSON Pointer of
//! the offending member. Unknown members are allowed and kept: the payload
//! bytes are stored verbatim, and only [`Fields`] is derived from them.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The event types producers may send.
pub const PRODUCER_EVENT_TYPES: &[&str] = &[
    "authz.decision",
    "authz.outcome",
    "delegation.granted",
    "delegation.revoked",
    "policy.activated",
    "agent.registered",
    "agent.deregistered",
];

/// Lifecycle events: each is about one agent (its `subject`), and a
/// delegation event also about one grant.
pub const LIFECYCLE_EVENT_TYPES: &[&str] =
    &["delegation.granted", "delegation.revoked", "agent.registered", "agent.deregistered"];

/// The event types only the ledger itself writes (signed by the ledger key).
pub const LEDGER_EVENT_TYPES: &[&str] =
    &["ledger.key_added", "ledger.key_revoked", "ledger.token_created", "ledger.token_revoked"];

/// Longest accepted `event_id`, in bytes.
pub const EVENT_ID_BYTES_MAX: usize = 128;
/// Longest accepted delegation chain.
pub const CHAIN_HOPS_MAX: usize = 64;

const ACTOR_PROFILES: &[&str] = &["ai_agent", "service", "workload", "user"];
const VERIFICATION_STATUSES: &[&str] = &["verified", "asserted", "unverified", "failed"];
const EFFECTS: &[&str] = &["allow", "deny", "indeterminate", "not_applicable"];
const OUTCOME_STATUSES: &[&str] = &["executed", "blocked", "failed", "overridden", "unknown"];

/// A schema violation: which member, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// JSON Pointer of the offending member (`/delegation/actor/id`); empty for the root.
    pub path: String,
    /// `missing_field`, `invalid_type`, `invalid_value` or `invalid_json`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// One hop of the flattened actor chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// 1 = the actor acting now.
    pub depth: u32,
    /// The actor at this hop.
    pub sub: String,
    /// Its issuer.
    pub iss: Option<String>,
    /// Its profile (`ai_agent`, `service`, ...).
    pub sub_profile: Option<String>,
}

/// The normalized fields that indexes and SQL use. Every value comes from the
/// payload; nothing here is ever hashed or signed.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct Fields {
    pub event_id: String,
    pub event_type: String,
    pub event_time_unix_nanos: i64,
    pub pdp_id: String,
    pub principal_type: Option<String>,
    pub principal_id: Option<String>,
    pub principal_iss: Option<String>,
    pub actor_id: Option<String>,
    pub actor_iss: Option<String>,
    pub actor_profile: Option<String>,
    pub actor_workload_id: Option<String>,
    pub actor_model: Option<String>,
    pub chain: Vec<Hop>,
    pub verification_status: Option<String>,
    pub session_id: Option<String>,
    pub task_id: Option<String>,
    pub txn_id: Option<String>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub parent_event_id: Option<String>,
    pub purpose_scope: Option<String>,
    pub purpose_description: Option<String>,
    pub trust_level: Option<String>,
    pub risk_score: Option<f64>,
    pub policy_version: Option<String>,
    pub decision_path: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub tool_name: Option<String>,
    pub tool_server: Option<String>,
    pub effect: Option<String>,
    pub decision_event_id: Option<String>,
    pub outcome_status: Option<String>,
    pub source_format: Option<String>,
    /// The producer's numbered stream (`source.stream`): a name unique
    /// within the PDP, whose events carry consecutive `source.stream_seq`.
    pub source_stream: Option<String>,
    /// The event's number in its stream (`source.stream_seq`); a number
    /// missing between a stream's first and last is an event the producer
    /// made that never reached the ledger.
    pub source_stream_seq: Option<u64>,
    /// The agent a lifecycle event is about ([`LIFECYCLE_EVENT_TYPES`]):
    /// `subject.agent.id`; for events without `subject`,
    /// `ext.registered_agent.id` (agent events) or else `delegation.actor.id`.
    pub subject_agent_id: Option<String>,
    /// The grant a delegation event is about: `subject.grant_id`, or else
    /// `delegation.grant.id`.
    pub subject_grant_id: Option<String>,
}

/// A validated event: its normalized fields.
#[derive(Debug, Clone)]
pub struct Event {
    /// The normalized fields.
    pub fields: Fields,
}

/// Parses and validates one event payload.
///
/// The payload is parsed into a tree that borrows its strings from the
/// payload bytes (a `serde_json::Value` tree allocated and freed every
/// member and was the largest cost after the signature). The tree is
/// dropped before returning; only [`Fields`] is kept.
pub fn validate(payload: &[u8]) -> Result<Event, SchemaError> {
    let tree: J<'_> = serde_json::from_slice(payload).map_err(|e| SchemaError {
        path: String::new(),
        code: "invalid_json",
        message: format!("payload is not valid JSON: {e}"),
    })?;
    let fields = validate_tree(&tree)?;
    Ok(Event { fields })
}

/// A JSON value whose strings borrow from the input where they can.
#[derive(Debug)]
enum J<'a> {
    Null,
    Bool,
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(JMap<'a>),
}

#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

/// Object members in document order; a repeated key resolves to its last
/// value, as `serde_json::Map` does.
#[derive(Debug)]
struct JMap<'a>(Vec<(Cow<'a, str>, J<'a>)>);

impl<'a> JMap<'a> {
    fn get(&self, key: &str) -> Option<&J<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl J<'_> {
    fn is_string(&self) -> bool {
        matches!(self, J::Str(_))
    }
    fn is_object(&self) -> bool {
        matches!(self, J::Obj(_))
    }
}

impl<'de> Deserialize<'de> for J<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<J<'de>, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<J<'de>, E> {
                Ok(J::Bool)
            }
            fn visit_u64<E>(self, v: u64) -> Result<J<'de>, E> {
                Ok(J::Num(Num::U(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J<'de>, E> {
                Ok(J::Num(Num::I(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<J<'de>, E> {
                Ok(J::Num(Num::F(v)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<J<'de>, E> {
                Ok(J::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<J<'de>, E> {
                Ok(J::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<J<'de>, E> {
                Ok(J::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(J::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
                    let v = map.next_value()?;
                    members.push((k, v));
                }
                Ok(J::Obj(JMap(members)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON string borrowed from the input unless it had escapes (serde's own
/// `Cow<str>` always copies). Object keys here, and the members of a DSSE
/// envelope in [`crate::dsse`].
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Validates a parsed event.
fn validate_tree(value: &J<'_>) -> Result<Fields, SchemaError> {
    let root = Obj::root(value)?;
    let mut f = Fields::default();
    let spec = root.req_str("spec_version")?;
    if spec != "1" {
        return Err(root.invalid("spec_version", "must be \"1\""));
    }
    let event_type = root.req_str("event_type")?;
    let is_ledger = LEDGER_EVENT_TYPES.contains(&event_type);
    if !is_ledger && !PRODUCER_EVENT_TYPES.contains(&event_type) {
        return Err(root.invalid("event_type", "is not a known event type"));
    }
    f.event_type = event_type.to_string();
    let event_id = root.req_str("event_id")?;
    if event_id.is_empty()
        || event_id.len() > EVENT_ID_BYTES_MAX
        || !event_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(root.invalid("event_id", "must be 1 to 128 printable ASCII characters without spaces"));
    }
    f.event_id = event_id.to_string();
    let event_time = root.req_str("event_time")?;
    f.event_time_unix_nanos = crate::time::parse_rfc3339_utc(event_time)
        .ok_or_else(|| root.invalid("event_time", "must be an RFC 3339 UTC timestamp like 2026-01-02T03:04:05Z"))?;
    let pdp = root.req_obj("pdp")?;
    let pdp_id = pdp.req_str("id")?;
    if pdp_id.is_empty() || pdp_id.len() > 256 {
        return Err(pdp.invalid("id", "must be 1 to 256 bytes"));
    }
    f.pdp_id = pdp_id.to_string();
    if let Some(source) = root.opt_obj("source")? {
        f.source_format = source.opt_str("format")?.map(str::to_string);
        producer_stream(&source, &mut f)?;
    }

    if is_ledger {
        root.req_obj("ledger")?;
        return Ok(f);
    }

    let delegation = root.req_obj("delegation")?;
    let actor = delegation.req_obj("actor")?;
    let actor_id = actor.req_str("id")?;
    if actor_id.is_empty() {
        return Err(actor.invalid("id", "must not be empty"));
    }
    let profile = actor.req_str("sub_profile")?;
    if !ACTOR_PROFILES.contains(&profile) {
        return Err(actor.invalid("sub_profile", "must be ai_agent, service, workload or user"));
    }
    f.actor_id = Some(actor_id.to_string());
    f.actor_profile = Some(profile.to_string());
    f.actor_iss = actor.opt_str("iss")?.map(str::to_string);
    f.actor_workload_id = actor.opt_str("workload_id")?.map(str::to_string);
    if let Some(model) = actor.opt_obj("model")? {
        f.actor_model = model.opt_str("name")?.map(str::to_string);
    }

    let chain = delegation.req_array("chain")?;
    if chain.items.is_empty() || chain.items.len() > CHAIN_HOPS_MAX {
        return Err(chain.invalid_self("must hold 1 to 64 hops"));
    }
    for (i, item) in chain.items.iter().enumerate() {
        let hop = chain.obj_at(i, item)?;
        let depth = hop.req_u32("depth")?;
        if depth == 0 {
            return Err(hop.invalid("depth", "must be at least 1"));
        }
        if depth as usize != i + 1 {
            return Err(hop.invalid("depth", "hops must be listed with depth 1, 2, 3, ... in order"));
        }
        let sub = hop.req_str("sub")?;
        if sub.is_empty() {
            return Err(hop.invalid("sub", "must not be empty"));
        }
        if i == 0 && sub != actor_id {
            return Err(hop.invalid("sub", "the depth-1 hop must be delegation.actor.id"));
        }
        let sub_profile = hop.req_str("sub_profile")?;
        f.chain.push(Hop {
            depth,
            sub: sub.to_string(),
            iss: hop.opt_str("iss")?.map(str::to_string),
            sub_profile: Some(sub_profile.to_string()),
        });
    }
    let verification = delegation.req_obj("verification")?;
    let status = verification.req_str("status")?;
    if !VERIFICATION_STATUSES.contains(&status) {
        return Err(verification.invalid("status", "must be verified, asserted, unverified or failed"));
    }
    f.verification_status = Some(status.to_string());
    if let Some(principal) = delegation.opt_obj("principal")? {
        let ptype = principal.req_str("type")?;
        if ptype.is_empty() {
            return Err(principal.invalid("type", "must not be empty"));
        }
        let pid = principal.req_str("id")?;
        if pid.is_empty() {
            return Err(principal.invalid("id", "must not be empty"));
        }
        f.principal_type = Some(ptype.to_string());
        f.principal_id = Some(pid.to_string());
        f.principal_iss = principal.opt_str("iss")?.map(str::to_string);
    }

    let correlation = root.opt_obj("correlation")?;
    if profile == "ai_agent" {
        let c = correlation.as_ref().ok_or_else(|| root.missing("correlation"))?;
        for member in ["session_id", "task_id"] {
            if c.req_str(member)?.is_empty() {
                return Err(c.invalid(member, "must not be empty"));
            }
        }
    }
    if let Some(c) = &correlation {
        f.session_id = c.opt_str("session_id")?.map(str::to_string);
        f.task_id = c.opt_str("task_id")?.map(str::to_string);
        f.txn_id = c.opt_str("txn_id")?.map(str::to_string);
        f.trace_id = c.opt_str("trace_id")?.map(str::to_string);
        f.request_id = c.opt_str("request_id")?.map(str::to_string);
        f.parent_event_id = c.opt_str("parent_event_id")?.map(str::to_string);
    }
    if let Some(purpose) = root.opt_obj("purpose")? {
        f.purpose_scope = purpose.opt_str("scope")?.map(str::to_string);
        f.purpose_description = purpose.opt_str("description")?.map(str::to_string);
    }
    if let Some(trust) = root.opt_obj("trust")? {
        f.trust_level = trust.opt_str("level")?.map(str::to_string);
        f.risk_score = trust.opt_f64("risk_score")?;
        if let Some(scopes) = trust.opt_array("scopes_granted")? {
            for (i, s) in scopes.items.iter().enumerate() {
                if !s.is_string() {
                    return Err(scopes.type_error_at(i, "a string"));
                }
            }
        }
    }

    let policy = root.opt_obj("policy")?;
    if let Some(p) = &policy {
        let version = p.opt_str("version")?;
        let bundles = p.opt_obj("bundles")?;
        f.policy_version = match (version, &bundles) {
            (Some(v), _) => Some(v.to_string()),
            (None, Some(b)) => bundle_revisions(b)?,
            (None, None) => None,
        };
        f.decision_path = p.opt_str("decision_path")?.map(str::to_string);
    }

    if event_type == "authz.decision" {
        let p = policy.as_ref().ok_or_else(|| root.missing("policy"))?;
        if p.map.get("version").is_none() && p.map.get("bundles").is_none() {
            return Err(p.invalid_self("a decision needs policy.version or policy.bundles"));
        }
        let request = root.req_obj("request")?;
        request.req_obj("subject")?;
        let action = request.req_obj("action")?;
        let name = action.req_str("name")?;
        if name.is_empty() {
            return Err(action.invalid("name", "must not be empty"));
        }
        let resource = request.req_obj("resource")?;
        let rtype = resource.req_str("type")?;
        if rtype.is_empty() {
            return Err(resource.invalid("type", "must not be empty"));
        }
        let rid = resource.req_str("id")?;
        if rid.is_empty() {
            return Err(resource.invalid("id", "must not be empty"));
        }
        request.opt_obj("context")?;
        f.action = Some(name.to_string());
        f.resource_type = Some(rtype.to_string());
        f.resource_id = Some(rid.to_string());
        let tool = request.opt_obj("tool")?;
        if rtype == "tool" && tool.is_none() {
            return Err(request.missing("tool"));
        }
        if let Some(t) = tool {
            let tname = t.req_str("name")?;
            if tname.is_empty() {
                return Err(t.invalid("name", "must not be empty"));
            }
            f.tool_name = Some(tname.to_string());
            f.tool_server = t.opt_str("server")?.map(str::to_string);
            for m in ["protocol", "method", "arguments_sha256"] {
                t.opt_str(m)?;
            }
        }
        let decision = root.req_obj("decision")?;
        let effect = decision.req_str("effect")?;
        if !EFFECTS.contains(&effect) {
            return Err(decision.invalid("effect", "must be allow, deny, indeterminate or not_applicable"));
        }
        decision.opt_array("reasons")?;
        decision.opt_array("obligations")?;
        decision.opt_obj("error")?;
        f.effect = Some(effect.to_string());
    } else if let Some(request) = root.opt_obj("request")? {
        if let Some(action) = request.opt_obj("action")? {
            f.action = action.opt_str("name")?.map(str::to_string);
        }
        if let Some(resource) = request.opt_obj("resource")? {
            f.resource_type = resource.opt_str("type")?.map(str::to_string);
            f.resource_id = resource.opt_str("id")?.map(str::to_string);
        }
    }

    if event_type == "authz.outcome" {
        let outcome = root.req_obj("outcome")?;
        let id = outcome.req_str("decision_event_id")?;
        if id.is_empty() {
            return Err(outcome.invalid("decision_event_id", "must not be empty"));
        }
        let status = outcome.req_str("status")?;
        if !OUTCOME_STATUSES.contains(&status) {
            return Err(outcome.invalid("status", "must be executed, blocked, failed, overridden or unknown"));
        }
        match outcome.map.get("result_code") {
            None | Some(J::Str(_)) => {}
            Some(J::Num(Num::U(_) | Num::I(_))) => {}
            Some(_) => return Err(outcome.type_error("result_code", "a string or an integer")),
        }
        f.decision_event_id = Some(id.to_string());
        f.outcome_status = Some(status.to_string());
    }
    if root.map.get("ext").is_some_and(|ext| !ext.is_object()) {
        return Err(root.type_error("ext", "an object"));
    }
    if LIFECYCLE_EVENT_TYPES.contains(&event_type) {
        lifecycle_subject(&root, &delegation, &mut f)?;
    }
    Ok(f)
}

/// The subject of a lifecycle event: `subject` when the event has one;
/// otherwise the rule for events written before it existed.
/// Largest `source.stream_seq`: the largest integer a JSON number holds
/// exactly in every common parser (2^53 - 1).
pub const STREAM_SEQ_MAX: u64 = (1 << 53) - 1;

/// `source.stream` and `source.stream_seq`: both or neither.
fn producer_stream(source: &Obj<'_, '_>, f: &mut Fields) -> Result<(), SchemaError> {
    let stream = source.opt_str("stream")?;
    let seq = source.opt_u64("stream_seq")?;
    match (stream, seq) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(source.missing("stream_seq")),
        (None, Some(_)) => Err(source.missing("stream")),
        (Some(s), Some(n)) => {
            if s.is_empty() || s.len() > 256 {
                return Err(source.invalid("stream", "must be 1 to 256 bytes"));
            }
            if n > STREAM_SEQ_MAX {
                return Err(source.invalid("stream_seq", "must be at most 2^53 - 1"));
            }
            f.source_stream = Some(s.to_string());
            f.source_stream_seq = Some(n);
            Ok(())
        }
    }
}

fn lifecycle_subject(root: &Obj<'_, '_>, delegation: &Obj<'_, '_>, f: &mut Fields) -> Result<(), SchemaError> {
    let nonempty = |o: &Obj<'_, '_>, key: &str| -> Result<Option<String>, SchemaError> {
        match o.opt_str(key)? {
            Some("") => Err(o.invalid(key, "must not be empty")),
            v => Ok(v.map(str::to_string)),
        }
    };
    if let Some(subject) = root.opt_obj("subject")? {
        if let Some(agent) = subject.opt_obj("agent")? {
            f.subject_agent_id = Some(nonempty(&agent, "id")?.ok_or_else(|| agent.missing("id"))?);
            for k in ["iss", "sub_profile", "name", "workload_id"] {
                agent.opt_str(k)?;
            }
        }
        f.subject_grant_id = nonempty(&subject, "grant_id")?;
        if f.subject_agent_id.is_none() && f.subject_grant_id.is_none() {
            return Err(subject.invalid_self("must name an agent, a grant_id or both"));
        }
    }
    if f.subject_agent_id.is_none() {
        let registered = match root.map.get("ext") {
            Some(J::Obj(ext)) if f.event_type.starts_with("agent.") => match ext.get("registered_agent") {
                Some(J::Obj(a)) => match a.get("id") {
                    Some(J::Str(id)) if !id.is_empty() => Some(id.to_string()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        f.subject_agent_id = registered.or_else(|| f.actor_id.clone());
    }
    if f.subject_grant_id.is_none()
        && f.event_type.starts_with("delegation.")
        && let Some(J::Obj(grant)) = delegation.map.get("grant")
        && let Some(J::Str(id)) = grant.get("id")
        && !id.is_empty()
    {
        // Read, never checked: events stored before this rule keep validating.
        f.subject_grant_id = Some(id.to_string());
    }
    Ok(())
}

fn bundle_revisions(bundles: &Obj<'_, '_>) -> Result<Option<String>, SchemaError> {
    let mut revisions: Vec<(String, String)> = Vec::new();
    for name in bundles.map.keys() {
        let bundle = bundles.req_obj(name)?;
        if let Some(rev) = bundle.opt_str("revision")? {
            revisions.push((name.to_string(), rev.to_string()));
        }
    }
    Ok(match revisions.len() {
        0 => None,
        1 => Some(revisions.remove(0).1),
        _ => Some(revisions.iter().map(|(n, r)| format!("{n}={r}")).collect::<Vec<_>>().join(",")),
    })
}

/// Escapes one JSON Pointer reference token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Where a member sits, as a chain of borrowed steps back to the root. It is
/// rendered as a JSON Pointer only when an error names it, so a valid event
/// costs no path strings.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }
    fn render_into(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.render_into(out);
                out.push('/');
                out.push_str(&escape(key));
            }
            Path::Index(parent, i) => {
                parent.render_into(out);
                out.push('/');
                out.push_str(&i.to_string());
            }
        }
    }
}

struct Obj<'p, 'a> {
    path: Path<'p>,
    map: &'a JMap<'a>,
}

struct Arr<'p, 'a> {
    path: Path<'p>,
    items: &'a [J<'a>],
}

fn type_name(v: &J<'_>) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool => "a boolean",
        J::Num(_) => "a number",
        J::Str(_) => "a string",
        J::Arr(_) => "an array",
        J::Obj(_) => "an object",
    }
}

impl<'p, 'a> Obj<'p, 'a> {
    fn root(v: &'a J<'a>) -> Result<Obj<'static, 'a>, SchemaError> {
        match v {
            J::Obj(map) => Ok(Obj { path: Path::Root, map }),
            other => Err(SchemaError {
                path: String::new(),
                code: "invalid_type",
                message: format!("event must be a JSON object, got {}", type_name(other)),
            }),
        }
    }
    fn child(&self, key: &str) -> String {
        Path::Key(&self.path, key).render()
    }
    fn missing(&self, key: &str) -> SchemaError {
        SchemaError { path: self.child(key), code: "missing_field", message: "required member is missing".into() }
    }
    fn invalid(&self, key: &str, why: &str) -> SchemaError {
        SchemaError { path: self.child(key), code: "invalid_value", message: why.into() }
    }
    fn invalid_self(&self, why: &str) -> SchemaError {
        SchemaError { path: self.path.render(), code: "invalid_value", message: why.into() }
    }
    fn type_error(&self, key: &str, want: &str) -> SchemaError {
        let got = self.map.get(key).map(type_name).unwrap_or("nothing");
        SchemaError { path: self.child(key), code: "invalid_type", message: format!("must be {want}, got {got}") }
    }
    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, SchemaError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(J::Str(s)) => Ok(Some(s.as_ref())),
            Some(_) => Err(self.type_error(key, "a string")),
        }
    }
    fn req_str(&self, key: &str) -> Result<&'a str, SchemaError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>, SchemaError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(J::Num(Num::U(n))) => Ok(Some(*n as f64)),
            Some(J::Num(Num::I(n))) => Ok(Some(*n as f64)),
            Some(J::Num(Num::F(n))) => Ok(Some(*n)),
            Some(_) => Err(self.type_error(key, "a number")),
        }
    }
    fn opt_u64(&self, key: &str) -> Result<Option<u64>, SchemaError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(J::Num(Num::U(v))) => Ok(Some(*v)),
            Some(J::Num(Num::I(_))) => Err(self.invalid(key, "must not be negative")),
            Some(_) => Err(self.type_error(key, "an integer")),
        }
    }
    fn req_u32(&self, key: &str) -> Result<u32, SchemaError> {
        match self.map.get(key) {
            None => Err(self.missing(key)),
            Some(J::Num(Num::U(v))) => u32::try_from(*v).map_err(|_| self.invalid(key, "is too large")),
            Some(J::Num(Num::I(_))) => Err(self.invalid(key, "must be at least 1")),
            Some(J::Num(Num::F(_))) => Err(self.type_error(key, "an integer")),
            Some(_) => Err(self.type_error(key, "an integer")),
        }
    }
    fn opt_obj<'s>(&'s self, key: &'s str) -> Result<Option<Obj<'s, 'a>>, SchemaError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(J::Obj(map)) => Ok(Some(Obj { path: Path::Key(&self.path, key), map })),
            Some(_) => Err(self.type_error(key, "an object")),
        }
    }
    fn req_obj<'s>(&'s self, key: &'s str) -> Result<Obj<'s, 'a>, SchemaError> {
        self.opt_obj(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_array<'s>(&'s self, key: &'s str) -> Result<Option<Arr<'s, 'a>>, SchemaError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(J::Arr(items)) => Ok(Some(Arr { path: Path::Key(&self.path, key), items })),
            Some(_) => Err(self.type_error(key, "an array")),
        }
    }
    fn req_array<'s>(&'s self, key: &'s str) -> Result<Arr<'s, 'a>, SchemaError> {
        self.opt_array(key)?.ok_or_else(|| self.missing(key))
    }
}

impl<'p, 'a> Arr<'p, 'a> {
    fn invalid_self(&self, why: &str) -> SchemaError {
        SchemaError { path: self.path.render(), code: "invalid_value", message: why.into() }
    }
    fn type_error_at(&self, i: usize, want: &str) -> SchemaError {
        SchemaError {
            path: Path::Index(&self.path, i).render(),
            code: "invalid_type",
            message: format!("must be {want}, got {}", type_name(&self.items[i])),
        }
    }
    fn obj_at<'s>(&'s self, i: usize, v: &'a J<'a>) -> Result<Obj<'s, 'a>, SchemaError> {
        match v {
            J::Obj(map) => Ok(Obj { path: Path::Index(&self.path, i), map }),
            _ => Err(self.type_error_at(i, "an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_and_values_and_repeated_keys_parse_like_serde_json() {
        // An escaped key, an escaped value, and a repeated key (the last wins).
        let base = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/examples/valid/07-agent-registered-service.json"
        ))
        .unwrap();
        let text = String::from_utf8(base).unwrap();
        let text = text.replacen("\"event_id\"", "\"event_\\u0069d\"", 1).replacen("{", "{\"pdp\": 5, ", 1);
        let ev = validate(text.as_bytes()).unwrap();
        assert!(!ev.fields.event_id.is_empty());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event_id"].as_str().unwrap(), ev.fields.event_id);
        assert_eq!(v["pdp"]["id"].as_str().unwrap(), ev.fields.pdp_id);
    }
}
