//! The investigator console (contract section 13): its page and assets at
//! `/ui/`, and the JSON endpoints it reads, which other tools may use too:
//! `GET /v1/search`, `GET /v1/events` (a window of events with facets),
//! `GET /v1/principals/{id}` and `GET /v1/agents/{id}`.
//!
//! Every query runs through the SQL engine with its limits; user input
//! reaches SQL only as `$n` parameters or as numbers parsed here.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::{ApiPath, ApiQuery};
use crate::sql::query_error;
use crate::{ApiError, AppState, ErrorCode, Role, authorize};

/// The console's page and assets, compiled into the binary.
const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Nothing but this origin's own script, style and data calls; no inline
/// script or style, no frames, no forms, no plugins.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Longest search text and id in a path (bytes).
pub const SEARCH_TEXT_BYTES_MAX: usize = 1024;
/// Most rows a window listing returns at once (`limit`).
pub const EVENTS_PAGE_MAX: u64 = 500;
/// Values shown per facet.
const FACET_VALUES: u64 = 10;

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /ui/`: the page. It needs no token; its data calls do.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui`: to `/ui/`, so relative asset paths resolve.
pub async fn index_redirect() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/ui/")]).into_response()
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

const READERS: &[Role] = &[Role::Query, Role::Auditor];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message)
}

fn text_param(name: &str, v: &str) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > SEARCH_TEXT_BYTES_MAX {
        return Err(bad(format!("{name} must be 1 to {SEARCH_TEXT_BYTES_MAX} bytes")));
    }
    Ok(v.to_string())
}

/// Runs `sql` with `params` and answers its rows as JSON arrays.
async fn rows(state: &AppState, sql: &str, params: Vec<Option<String>>) -> Result<Vec<Value>, ApiError> {
    let out = state.engine.query_params(sql, params, &Default::default()).await.map_err(query_error)?;
    let body = actlog_query::output::to_json(&out);
    Ok(body["rows"].as_array().cloned().unwrap_or_default())
}

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
}

/// `GET /v1/search?q=`: what the text names. Each candidate has a `kind`
/// (`seq`, `event_id`, `opa_decision_id`, `task_id`, `session_id`,
/// `trace_id`, `principal`, `agent`, `tool`), the number of events it
/// matches and the latest of them.
pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<ApiQuery<SearchParams>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, READERS)?;
    let ApiQuery(p) = p?;
    let q = text_param("q", p.q.as_deref().unwrap_or("").trim())?;
    let mut found = Vec::new();
    let tree_size = state.store.head().tree_size;
    if let Ok(seq) = q.parse::<u64>()
        && seq < tree_size
    {
        let ev = rows(&state, &format!("SELECT event_id FROM events WHERE seq = {seq}"), Vec::new()).await?;
        if let Some(r) = ev.first() {
            found.push(json!({"kind": "seq", "value": q, "events": 1, "seq": seq, "event_id": r[0]}));
        }
    }
    let by_id = rows(&state, "SELECT seq FROM events WHERE event_id = $1", vec![Some(q.clone())]).await?;
    if let Some(seq) = by_id.first().and_then(|r| r[0].as_u64()) {
        found.push(json!({"kind": "event_id", "value": q, "events": 1, "seq": seq, "event_id": q}));
    }
    // An OPA decision id: the event id is `opa:<pdp>:<decision_id>`.
    let opa = rows(
        &state,
        "SELECT seq, event_id FROM events WHERE starts_with(event_id, 'opa:') AND ends_with(event_id, concat(':', $1)) \
         ORDER BY seq DESC LIMIT 10",
        vec![Some(q.clone())],
    )
    .await?;
    for r in opa {
        found.push(json!({"kind": "opa_decision_id", "value": q, "events": 1, "seq": r[0], "event_id": r[1]}));
    }
    let columns = [
        ("task_id", "task_id"),
        ("session_id", "session_id"),
        ("trace_id", "trace_id"),
        ("principal", "principal_id"),
        ("agent", "actor_id"),
        ("tool", "tool_name"),
    ];
    let sums: Vec<String> = columns
        .iter()
        .map(|(_, c)| format!("sum(CASE WHEN {c} = $1 THEN 1 ELSE 0 END), max(CASE WHEN {c} = $1 THEN seq END)"))
        .collect();
    let any: Vec<String> = columns.iter().map(|(_, c)| format!("{c} = $1")).collect();
    let sql = format!("SELECT {} FROM events WHERE {}", sums.join(", "), any.join(" OR "));
    let counts = rows(&state, &sql, vec![Some(q.clone())]).await?;
    if let Some(r) = counts.first() {
        for (i, (kind, _)) in columns.iter().enumerate() {
            let n = r[2 * i].as_u64().unwrap_or(0);
            if n > 0 {
                found.push(json!({"kind": kind, "value": q, "events": n, "seq": r[2 * i + 1]}));
            }
        }
    }
    Ok(Json(json!({"text": q, "tree_size": tree_size, "results": found})))
}

#[derive(Deserialize, Default)]
pub struct WindowParams {
    from: Option<String>,
    to: Option<String>,
    effect: Option<String>,
    pdp_id: Option<String>,
    actor_id: Option<String>,
    principal_id: Option<String>,
    tool_name: Option<String>,
    policy_version: Option<String>,
    outcome_status: Option<String>,
    event_type: Option<String>,
    task_id: Option<String>,
    session_id: Option<String>,
    trace_id: Option<String>,
    before_seq: Option<String>,
    limit: Option<String>,
}

/// The window's SQL condition (after `WHERE`) and its parameters. The
/// window is required: `from` and `to`, RFC 3339.
fn window_filter(p: &WindowParams) -> Result<(String, Vec<Option<String>>), ApiError> {
    let time = |name: &str, v: &Option<String>| -> Result<i64, ApiError> {
        let v = v.as_deref().ok_or_else(|| bad(format!("{name} is required (an RFC 3339 UTC time)")))?;
        actlog_core::time::parse_rfc3339_utc(v)
            .ok_or_else(|| bad(format!("{name} must be an RFC 3339 UTC time like 2026-01-02T03:04:05Z")))
    };
    let (from, to) = (time("from", &p.from)?, time("to", &p.to)?);
    if from >= to {
        return Err(bad("from must be before to"));
    }
    let mut w = format!("event_time >= to_timestamp_nanos({from}) AND event_time < to_timestamp_nanos({to})");
    let mut params = Vec::new();
    for (name, v) in [
        ("effect", &p.effect),
        ("pdp_id", &p.pdp_id),
        ("actor_id", &p.actor_id),
        ("principal_id", &p.principal_id),
        ("tool_name", &p.tool_name),
        ("policy_version", &p.policy_version),
        ("outcome_status", &p.outcome_status),
        ("event_type", &p.event_type),
        ("task_id", &p.task_id),
        ("session_id", &p.session_id),
        ("trace_id", &p.trace_id),
    ] {
        if let Some(v) = v {
            params.push(Some(text_param(name, v)?));
            w += &format!(" AND {name} = ${}", params.len());
        }
    }
    Ok((w, params))
}

/// `GET /v1/events?from=&to=[&effect=&pdp_id=&actor_id=&principal_id=&tool_name=&policy_version=&outcome_status=&event_type=&task_id=&session_id=&trace_id=][&before_seq=&limit=]`:
/// the newest events of a window (at most `limit`, 100 by default, up to
/// 500), older pages by `before_seq`, with the window's facets (the top
/// values of each filter column) and its decisions per day by effect.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<ApiQuery<WindowParams>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, READERS)?;
    let ApiQuery(p) = p?;
    let (w, params) = window_filter(&p)?;
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=EVENTS_PAGE_MAX).contains(n))
            .ok_or_else(|| bad(format!("limit must be 1 to {EVENTS_PAGE_MAX}")))?,
    };
    let page = match p.before_seq.as_deref() {
        None => String::new(),
        Some(b) => {
            format!(" AND seq < {}", b.parse::<u64>().map_err(|_| bad("before_seq must be a non-negative integer"))?)
        }
    };
    let list = rows(
        &state,
        &format!(
            "SELECT seq, event_time, event_type, pdp_id, principal_id, actor_id, tool_name, action, effect, \
             policy_version, outcome_status, task_id, event_id FROM events WHERE {w}{page} ORDER BY seq DESC LIMIT {limit}"
        ),
        params.clone(),
    )
    .await?;
    let total = rows(&state, &format!("SELECT count(*) FROM events WHERE {w}"), params.clone()).await?;
    let mut facets = serde_json::Map::new();
    for column in ["effect", "pdp_id", "actor_id", "tool_name", "policy_version", "outcome_status"] {
        let top = rows(
            &state,
            &format!(
                "SELECT {column}, count(*) AS n FROM events WHERE {w} AND {column} IS NOT NULL \
                 GROUP BY {column} ORDER BY n DESC, {column} LIMIT {FACET_VALUES}"
            ),
            params.clone(),
        )
        .await?;
        facets.insert(column.into(), Value::Array(top));
    }
    let daily = rows(
        &state,
        &format!(
            "SELECT date_trunc('day', event_time) AS day, sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denies, \
             count(*) AS decisions FROM events WHERE {w} AND event_type = 'authz.decision' GROUP BY 1 ORDER BY 1"
        ),
        params,
    )
    .await?;
    let columns = [
        "seq",
        "event_time",
        "event_type",
        "pdp_id",
        "principal_id",
        "actor_id",
        "tool_name",
        "action",
        "effect",
        "policy_version",
        "outcome_status",
        "task_id",
        "event_id",
    ];
    Ok(Json(json!({
        "columns": columns,
        "rows": list,
        "total": total.first().map(|r| r[0].clone()).unwrap_or(json!(0)),
        "facets": facets,
        "decisions_per_day": daily,
    })))
}

#[derive(Deserialize)]
pub struct SummaryParams {
    from: Option<String>,
    to: Option<String>,
}

fn summary_window(p: &SummaryParams) -> Result<String, ApiError> {
    let wp = WindowParams { from: p.from.clone(), to: p.to.clone(), ..Default::default() };
    Ok(window_filter(&wp)?.0)
}

/// The checked request of a principal or agent page: the id, the window's
/// SQL condition, and the window's start (unix nanoseconds).
fn summary_request(
    state: &AppState,
    headers: &HeaderMap,
    id_name: &str,
    id: Result<ApiPath<String>, ApiError>,
    p: Result<ApiQuery<SummaryParams>, ApiError>,
) -> Result<(String, String, i64), ApiError> {
    authorize(state, headers, READERS)?;
    let ApiPath(id) = id?;
    let ApiQuery(p) = p?;
    let id = text_param(id_name, &id)?;
    let w = summary_window(&p)?;
    let from = p.from.as_deref().and_then(actlog_core::time::parse_rfc3339_utc).unwrap_or(0);
    Ok((id, w, from))
}

/// One page about one id (`$1`): each named query's rows, under its name.
async fn summary(
    state: &AppState,
    id_name: &str,
    id: String,
    queries: Vec<(&str, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut out = serde_json::Map::new();
    out.insert(id_name.into(), json!(id));
    for (name, sql) in queries {
        out.insert(name.into(), Value::Array(rows(state, &sql, vec![Some(id.clone())]).await?));
    }
    Ok(Json(Value::Object(out)))
}

/// The tools one id decided on in the window, by effect.
fn tools_sql(w: &str, column: &str) -> String {
    format!(
        "SELECT tool_name, effect, count(*) AS decisions FROM events WHERE {w} AND {column} = $1 \
         AND event_type = 'authz.decision' AND tool_name IS NOT NULL GROUP BY tool_name, effect ORDER BY decisions DESC LIMIT 100"
    )
}

/// `GET /v1/principals/{id}?from=&to=`: everything agents did on one
/// person's authority in the window: agents, tools, decisions by effect,
/// and the executions without a recorded decision.
pub async fn principal(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<ApiPath<String>, ApiError>,
    p: Result<ApiQuery<SummaryParams>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let (id, w, _) = summary_request(&state, &headers, "principal id", id, p)?;
    let queries = vec![
        (
            "agents",
            format!(
                "SELECT actor_id, count(*) AS events, sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denies, \
                 max(event_time) AS last_seen FROM events WHERE {w} AND principal_id = $1 GROUP BY actor_id \
                 ORDER BY events DESC LIMIT 100"
            ),
        ),
        ("tools", tools_sql(&w, "principal_id")),
        (
            "outcomes",
            format!(
                "SELECT outcome_status, count(*) FROM events WHERE {w} AND principal_id = $1 \
                 AND event_type = 'authz.outcome' GROUP BY outcome_status ORDER BY 2 DESC"
            ),
        ),
        (
            "denies",
            format!(
                "SELECT seq, event_time, actor_id, tool_name, event_id FROM events WHERE {w} AND principal_id = $1 \
                 AND event_type = 'authz.decision' AND effect = 'deny' ORDER BY seq DESC LIMIT 100"
            ),
        ),
        // An executed outcome whose decision is not in the ledger at all.
        (
            "executed_without_decision",
            format!(
                "SELECT o.seq, o.event_time, o.actor_id, o.tool_name, o.decision_event_id, o.event_id FROM events o \
                 WHERE {} AND o.principal_id = $1 AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' \
                 AND NOT EXISTS (SELECT 1 FROM events d WHERE d.event_id = o.decision_event_id \
                 AND d.event_type = 'authz.decision') ORDER BY o.seq DESC LIMIT 100",
                w.replace("event_time", "o.event_time")
            ),
        ),
    ];
    summary(&state, "principal_id", id, queries).await
}

/// `GET /v1/agents/{id}?from=&to=`: one agent in the window: on whose
/// authority it acted, its tools, its deny bursts (tasks with 3 or more
/// denies), and the tools it used for the first time in the window.
pub async fn agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<ApiPath<String>, ApiError>,
    p: Result<ApiQuery<SummaryParams>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let (id, w, from) = summary_request(&state, &headers, "agent id", id, p)?;
    let queries = vec![
        (
            "principals",
            format!(
                "SELECT principal_id, count(*) AS events, max(event_time) AS last_seen FROM events \
                 WHERE {w} AND actor_id = $1 GROUP BY principal_id ORDER BY events DESC LIMIT 100"
            ),
        ),
        ("tools", tools_sql(&w, "actor_id")),
        (
            "deny_bursts",
            format!(
                "SELECT task_id, count(*) AS denies, min(event_time) AS first, max(event_time) AS last FROM events \
                 WHERE {w} AND actor_id = $1 AND event_type = 'authz.decision' AND effect = 'deny' \
                 AND task_id IS NOT NULL GROUP BY task_id HAVING count(*) >= 3 ORDER BY denies DESC LIMIT 100"
            ),
        ),
        (
            "first_seen_tools",
            format!(
                "SELECT tool_name, min(event_time) AS first_seen, min(seq) AS seq FROM events WHERE actor_id = $1 \
                 AND event_type = 'authz.decision' AND tool_name IS NOT NULL GROUP BY tool_name \
                 HAVING min(event_time) >= to_timestamp_nanos({from}) ORDER BY first_seen LIMIT 100"
            ),
        ),
        (
            "delegations",
            format!(
                "SELECT seq, event_time, event_type, principal_id, subject_agent_id, subject_grant_id FROM lifecycle \
                 WHERE {w} AND (actor_id = $1 OR arrow_cast(subject_agent_id, 'Utf8View') = $1) ORDER BY seq DESC LIMIT 100"
            ),
        ),
    ];
    summary(&state, "agent_id", id, queries).await
}

/// Evidence bundles made at once (`evidence_runs_max`): each holds a
/// window's bundle on disk and its archive in memory.
pub const EVIDENCE_RUNS_MAX: usize = 1;
static EVIDENCE_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EVIDENCE_RUNS_MAX);

/// `POST /v1/evidence?from=&to=`: the NIST CSF 2.0 evidence bundle of a
/// window (as `actlog evidence` writes it, signed by the ledger key), as
/// one `.tar.gz` holding the bundle directory `evidence/`. The window
/// holds at most `sql_rows_max` events; a larger one is refused, naming
/// the limit (the CLI has none). The auditor role.
pub async fn evidence(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<ApiQuery<SummaryParams>, ApiError>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Auditor])?;
    let ApiQuery(p) = p?;
    summary_window(&p)?; // both bounds given, valid and in order
    let nanos = |v: &Option<String>| v.as_deref().and_then(actlog_core::time::parse_rfc3339_utc);
    let (from, to) = (nanos(&p.from), nanos(&p.to));
    let _slot = EVIDENCE_SLOTS.try_acquire().map_err(|_| {
        ApiError::overloaded(format!(
            "an evidence bundle is being made; evidence_runs_max = {EVIDENCE_RUNS_MAX}: try again when it is done"
        ))
    })?;
    let seed = actlog_store::read_ledger_seed(state.store.data_dir())
        .map_err(|e| ApiError::internal(format!("the ledger key signs the bundle and cannot be read: {e}")))?;
    let engine = state.engine.clone();
    let tree_size = state.store.head().tree_size;
    // The evidence run blocks on its own queries; it runs on a blocking
    // thread, driving its futures there.
    let handle = tokio::runtime::Handle::current();
    let archive = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let tmp = tempfile::tempdir().map_err(|e| ApiError::internal(format!("a temporary directory: {e}")))?;
        let out = tmp.path().join("evidence");
        let opts = actlog_export::evidence::EvidenceOptions { from, to, ledger_signatures: false, policy: None };
        handle.block_on(actlog_export::evidence::evidence(&engine, &seed, &out, &opts, &|_, _, _| {})).map_err(
            |e| match e {
                actlog_export::ExportError::Refused(m) => ApiError::new(ErrorCode::InvalidParameter, m),
                actlog_export::ExportError::Corruption(m) => ApiError::internal(format!("storage corruption: {m}")),
                other => ApiError::internal(other.to_string()),
            },
        )?;
        tar_gz(&out).map_err(|e| ApiError::internal(format!("packing the bundle: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the evidence task failed: {e}")))??;
    let name = format!("attachment; filename=\"evidence-{tree_size}.tar.gz\"");
    let mut r = ([(header::CONTENT_TYPE, "application/gzip")], archive).into_response();
    if let Ok(v) = HeaderValue::from_str(&name) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// A directory as a gzip'd tar with one top directory, `evidence/`.
fn tar_gz(dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all("evidence", dir)?;
    tar.into_inner()?.finish()
}
