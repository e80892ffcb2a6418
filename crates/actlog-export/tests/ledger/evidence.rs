//! Evidence bundles: the findings count exactly the anomalies the generator
//! planted (found here by their `ext.anomaly` marker, not by the findings'
//! own SQL), the report is self-contained and escapes what it shows, and the
//! whole bundle verifies offline and fails when a report is changed.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use actlog_export::evidence::{self, EvidenceOptions, Finding, Status};
use actlog_export::{self as bundle, BundleOptions};
use actlog_query::{Engine, EngineOptions, QueryLimits};
use actlog_store::{Options, Store};

const SEED: [u8; 32] = [7u8; 32];
const GEN_SEED: u64 = 42;
const HOSTILE: &str = "https://agents.example/<script>alert('x')</script>";

/// A generated ledger with planted anomalies, and one agent whose id is markup.
fn ledger(dir: &Path) -> Engine {
    let store = Store::init(dir, SEED, Some("evidence.actlog.test".into()), Options::default()).unwrap();
    let cfg = actlog_gen::GenConfig { seed: GEN_SEED, events: 24_000, pdps: 4, ..Default::default() };
    actlog_gen::build_ledger(&store, &cfg, 1024, |_| {}).unwrap();
    // An event of `actor` in task `task`; decisions get a policy, a tool call and `effect`.
    let event = |kind: &str, id: &str, time: &str, actor: &str, task: &str| {
        let mut e = serde_json::json!({
            "spec_version": "1", "event_type": kind, "event_id": id,
            "event_time": time, "pdp": {"id": actlog_gen::pdp_id(0)},
            "delegation": {
                "principal": {"type": "user", "id": "mallory"},
                "actor": {"id": actor, "sub_profile": "ai_agent"},
                "chain": [{"depth": 1, "sub": actor, "sub_profile": "ai_agent"}],
                "verification": {"status": "verified"}
            },
            "correlation": {"session_id": format!("s-{task}"), "task_id": task},
        });
        if kind == "authz.decision" {
            e["policy"] = serde_json::json!({"version": "v1"});
            e["request"] = serde_json::json!({"subject": {"type": "agent", "id": actor}, "action": {"name": "tools/call"},
                                              "resource": {"type": "tool", "id": "fs.read"}, "tool": {"name": "fs.read"}});
        }
        e
    };
    let decision = |id: &str, time: &str, actor: &str, effect: &str| {
        let mut d = event("authz.decision", id, time, actor, "t-p");
        d["decision"] = serde_json::json!({"effect": effect});
        d
    };
    // An allowed decision executed twice, and one executed before it was made.
    let actor = "https://agents.example/planted-agent";
    let outcome = |id: &str, time: &str, decision_id: &str| {
        let mut o = event("authz.outcome", id, time, actor, "t-p");
        o["outcome"] = serde_json::json!({"decision_event_id": decision_id, "status": "executed"});
        o
    };
    let mut planted = vec![
        decision("hostile-1", "2026-01-20T10:00:00Z", HOSTILE, "deny"),
        decision("twice-d", "2026-01-20T11:00:00Z", actor, "allow"),
        outcome("twice-o1", "2026-01-20T11:00:01Z", "twice-d"),
        outcome("twice-o2", "2026-01-20T11:00:02Z", "twice-d"),
        decision("early-d", "2026-01-20T12:00:00Z", actor, "allow"),
        outcome("early-o", "2026-01-20T11:59:00Z", "early-d"),
    ];
    planted.extend(lifecycle_events(&event, &decision));
    let mut items: Vec<_> =
        planted.iter().map(|p| actlog_gen::Generated { pdp: 0, payload: p.to_string().into_bytes() }).collect();
    items.extend(numbered_events(&decision));
    actlog_gen::append_generated(&store, GEN_SEED, &items).unwrap();
    store.checkpoint_now().unwrap();
    let limits = QueryLimits { rows_max: usize::MAX, ..QueryLimits::default() };
    Engine::open(Arc::new(store), EngineOptions { limits, ..EngineOptions::default() }).unwrap()
}

/// Decisions from numbered producer streams, with [`NUMBERS_MISSING`]
/// numbers missing in all: stream `gw-a` of PDP 0 sends 0, 1, 2, 5, 6 (3
/// and 4 missing), the stream of the same name at PDP 1 sends 100 and 103
/// (101 and 102 missing), and `gw-b` of PDP 0 sends 7 and 8 (none).
fn numbered_events(decision: &dyn Fn(&str, &str, &str, &str) -> serde_json::Value) -> Vec<actlog_gen::Generated> {
    let sends: [(usize, &str, &[u64]); 3] =
        [(0, "gw-a", &[0, 1, 2, 5, 6]), (1, "gw-a", &[100, 103]), (0, "gw-b", &[7, 8])];
    let mut out = Vec::new();
    for (pdp, stream, numbers) in sends {
        for n in numbers {
            let mut d = decision(
                &format!("n-{pdp}-{stream}-{n}"),
                "2026-01-22T10:00:00Z",
                "https://agents.example/numbered",
                "allow",
            );
            d["pdp"]["id"] = actlog_gen::pdp_id(pdp).into();
            d["source"] = serde_json::json!({"format": "actlog-python-sdk", "stream": stream, "stream_seq": n});
            out.push(actlog_gen::Generated { pdp, payload: d.to_string().into_bytes() });
        }
    }
    out
}
const NUMBERED_STREAMS: i64 = 3;
const NUMBERS_MISSING: i64 = 4;

const AGENTS: &str = "https://agents.example/";

/// Lifecycle events in each shape a producer writes, each followed by
/// decisions of the agent it is about. Allowed decisions after the agent's
/// deregistration: 5 (2 + 1 + 2); after its delegation's revocation: 3
/// (1 + 2). The rest come before, are denied, are in another task, or
/// follow a new registration or grant, and do not count.
fn lifecycle_events(
    event: &dyn Fn(&str, &str, &str, &str, &str) -> serde_json::Value,
    decision: &dyn Fn(&str, &str, &str, &str) -> serde_json::Value,
) -> Vec<serde_json::Value> {
    let agent = |name: &str| format!("{AGENTS}{name}");
    let at = |hm: &str| format!("2026-01-21T{hm}:00Z");
    // Written by the agent registry (a service), about another agent.
    let by_registry = |kind: &str, id: &str, hm: &str| {
        let mut e = event(kind, id, &at(hm), "svc-agent-registry", "t-registry");
        e["delegation"]["actor"]["sub_profile"] = "service".into();
        e["delegation"]["chain"][0]["sub_profile"] = "service".into();
        e
    };
    let in_task = |id: &str, hm: &str, who: &str, effect: &str, task: &str| {
        let mut d = decision(id, &at(hm), &agent(who), effect);
        d["correlation"]["task_id"] = task.into();
        d
    };
    let mut subject_new = by_registry("agent.deregistered", "dereg-new", "10:00");
    subject_new["subject"] = serde_json::json!({"agent": {"id": agent("dereg-new"), "sub_profile": "ai_agent"}});
    let mut subject_ext = by_registry("agent.deregistered", "dereg-ext", "11:00");
    subject_ext["ext"] = serde_json::json!({"registered_agent": {"id": agent("dereg-ext")}});
    let mut revoke_new = by_registry("delegation.revoked", "revoke-new", "13:00");
    revoke_new["correlation"]["task_id"] = "t-r1".into();
    revoke_new["subject"] = serde_json::json!({"agent": {"id": agent("revoke-new")}, "grant_id": "g-1"});
    vec![
        // The new shape: `subject.agent`.
        in_task("dn-before", "09:00", "dereg-new", "allow", "t-p"),
        subject_new,
        in_task("dn-after-1", "10:01", "dereg-new", "allow", "t-p"),
        in_task("dn-after-2", "10:02", "dereg-new", "allow", "t-p"),
        in_task("dn-denied", "10:03", "dereg-new", "deny", "t-p"),
        // An older registry shape: `ext.registered_agent`.
        subject_ext,
        in_task("de-after", "11:01", "dereg-ext", "allow", "t-p"),
        // The agent writes its own deregistration, then registers again.
        event("agent.deregistered", "ds", &at("12:00"), &agent("dereg-self"), "t-p"),
        in_task("ds-after-1", "12:01", "dereg-self", "allow", "t-p"),
        in_task("ds-after-2", "12:02", "dereg-self", "allow", "t-p"),
        event("agent.registered", "ds-again", &at("12:30"), &agent("dereg-self"), "t-p"),
        in_task("ds-registered-again", "12:31", "dereg-self", "allow", "t-p"),
        // A revocation by the registry, about one agent's task.
        revoke_new,
        in_task("rn-after", "13:01", "revoke-new", "allow", "t-r1"),
        in_task("rn-other-task", "13:02", "revoke-new", "allow", "t-other"),
        // The agent's own delegation revoked for a task, then granted again.
        event("delegation.revoked", "rs", &at("14:00"), &agent("revoke-self"), "t-r2"),
        in_task("rs-after-1", "14:01", "revoke-self", "allow", "t-r2"),
        in_task("rs-after-2", "14:02", "revoke-self", "allow", "t-r2"),
        event("delegation.granted", "rs-again", &at("14:30"), &agent("revoke-self"), "t-r2"),
        in_task("rs-granted-again", "14:31", "revoke-self", "allow", "t-r2"),
    ]
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    let out = engine.query(sql, &Default::default()).await.unwrap();
    actlog_query::output::to_text_rows(&out.batches)[0][0].as_deref().unwrap().parse().unwrap()
}

/// Planted decisions (or outcomes) of one anomaly, by the generator's marker.
async fn planted(engine: &Engine, event_type: &str, anomaly: &str) -> i64 {
    count(
        engine,
        &format!("SELECT count(*) FROM events WHERE event_type = '{event_type}' AND payload LIKE '%\"anomaly\":\"{anomaly}\"%'"),
    )
    .await
}

fn find<'a>(found: &'a [Finding], control: &str) -> &'a Finding {
    found.iter().find(|f| f.control_id == control).unwrap_or_else(|| panic!("{control} is reported"))
}

fn metric(f: &Finding, name: &str) -> i64 {
    f.metrics[name].as_i64().unwrap_or_else(|| panic!("{} {name}: {}", f.control_id, f.metrics[name]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_count_the_planted_anomalies_and_the_bundle_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = ledger(&tmp.path().join("data"));
    let out = tmp.path().join("evidence");
    let opts = EvidenceOptions { from: None, to: None, ledger_signatures: true, policy: None };
    let r = evidence::evidence(&engine, &SEED, &out, &opts, &|_, _, _| {}).await.unwrap();
    let found = &r.findings;
    assert_eq!(found.len(), 10);

    let scope = planted(&engine, "authz.decision", actlog_gen::SCOPE_VIOLATION).await;
    let bypass = planted(&engine, "authz.outcome", actlog_gen::DENY_THEN_EXECUTED).await;
    let failed = planted(&engine, "authz.decision", actlog_gen::FAILED_VERIFICATION_ALLOWED).await;
    let risky = planted(&engine, "authz.decision", actlog_gen::HIGH_RISK_ALLOWED).await;
    let bursts = count(
        &engine,
        &format!(
            "SELECT count(DISTINCT task_id) FROM events WHERE payload LIKE '%\"anomaly\":\"{}\"%'",
            actlog_gen::DENY_BURST
        ),
    )
    .await;
    assert!(scope > 0 && bypass > 0 && failed > 0 && risky > 0 && bursts > 0, "the ledger holds every kind");

    let f = find(found, "DE.CM-03");
    assert_eq!((metric(f, "off_purpose_allowed"), f.status), (scope, Status::Fail));
    let f = find(found, "PR.AA-01");
    assert_eq!(
        (metric(f, "actions_after_deregistration"), metric(f, "actions_after_revocation"), f.status),
        (5, 3, Status::Fail),
        "{:?}",
        f.details
    );
    let mut ids: Vec<&str> = f
        .details
        .iter()
        .filter(|d| d.name.starts_with("allowed after"))
        .flat_map(|d| d.rows.iter().map(|r| r[1].as_deref().unwrap()))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["de-after", "dn-after-1", "dn-after-2", "ds-after-1", "ds-after-2", "rn-after", "rs-after-1", "rs-after-2"]
    );
    // The lifecycle table names each event's subject, whoever wrote it.
    let subjects = engine
        .query(
            "SELECT event_id, subject_agent_id, subject_grant_id FROM lifecycle \
             WHERE event_id IN ('dereg-new', 'dereg-ext', 'ds', 'revoke-new', 'rs') ORDER BY event_id",
            &Default::default(),
        )
        .await
        .unwrap();
    let text = actlog_query::output::to_text_rows(&subjects.batches);
    let got: Vec<Vec<Option<&str>>> = text.iter().map(|r| r.iter().map(|c| c.as_deref()).collect()).collect();
    let a = |n: &str| format!("{AGENTS}{n}");
    let (dn, de, ds, rn, rs) = (a("dereg-new"), a("dereg-ext"), a("dereg-self"), a("revoke-new"), a("revoke-self"));
    assert_eq!(
        got,
        [
            vec![Some("dereg-ext"), Some(de.as_str()), None],
            vec![Some("dereg-new"), Some(dn.as_str()), None],
            vec![Some("ds"), Some(ds.as_str()), None],
            vec![Some("revoke-new"), Some(rn.as_str()), Some("g-1")],
            vec![Some("rs"), Some(rs.as_str()), None],
        ]
    );
    let f = find(found, "PR.AA-05");
    assert_eq!((metric(f, "executed_after_non_allow"), f.status), (bypass, Status::Fail));
    assert_eq!(metric(f, "executed_without_decision"), 0);
    assert_eq!(metric(f, "decisions_executed_more_than_once"), 1, "twice-d");
    assert_eq!(metric(f, "executed_before_decision_or_by_another_actor"), 1, "early-o");
    let f = find(found, "PR.AA-04");
    assert_eq!((metric(f, "allowed_with_failed_verification"), f.status), (failed, Status::Fail));
    let f = find(found, "PR.AA-03");
    let unverified = count(
        &engine,
        "SELECT count(*) FROM events WHERE event_type = 'authz.decision' AND effect = 'allow' \
         AND verification_status = 'unverified'",
    )
    .await;
    assert_eq!((metric(f, "allowed_unverified"), f.status == Status::Fail), (unverified, unverified > 0));
    let f = find(found, "DE.AE-02");
    assert_eq!((metric(f, "high_risk_allowed"), metric(f, "deny_bursts")), (risky, bursts));
    let f = find(found, "PR.PS-04");
    let size = engine.store().head().tree_size as i64;
    // The generator backfills months-old events: they reached the ledger late.
    assert_eq!((metric(f, "seq_gaps"), metric(f, "ledger_events"), f.status), (0, size, Status::Fail));
    assert!(metric(f, "events_received_late") > 20_000, "{:?}", f.metrics);
    assert_eq!(
        (metric(f, "producer_streams"), metric(f, "producer_sequence_gaps")),
        (NUMBERED_STREAMS, NUMBERS_MISSING)
    );
    assert!(f.summary.contains("4 numbers are missing from the 3 numbered producer streams"), "{}", f.summary);
    // The SQL view agrees, stream by stream.
    let streams = engine
        .query(
            "SELECT pdp_id, stream, first_stream_seq, last_stream_seq, received, missing FROM producer_streams ORDER BY 1, 2",
            &Default::default(),
        )
        .await
        .unwrap();
    let rows: Vec<String> = actlog_query::output::to_text_rows(&streams.batches)
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>().join(" "))
        .collect();
    let (p0, p1) = (actlog_gen::pdp_id(0), actlog_gen::pdp_id(1));
    let mut want = vec![format!("{p0} gw-a 0 6 5 2"), format!("{p0} gw-b 7 8 2 0"), format!("{p1} gw-a 100 103 2 2")];
    want.sort();
    assert_eq!(rows, want);
    let f = find(found, "RS.AN-03");
    let decisions = count(&engine, "SELECT count(*) FROM events WHERE event_type = 'authz.decision'").await;
    assert_eq!((metric(f, "decisions"), f.status), (decisions, Status::Pass));
    let f = find(found, "AU-9/AU-10");
    assert_eq!((metric(f, "ledger_leaves_verified"), f.status), (size, Status::Pass));
    assert!(metric(f, "ledger_signatures_verified") >= size - 20, "every producer signature was checked");
    for f in found {
        for (name, sql) in &f.sql {
            assert!(sql.contains(&format!("seq < {size}")), "{} {name} is bounded by the checkpoint", f.control_id);
        }
    }

    // The bundle, reports included, verifies; a changed report does not.
    let checked = bundle::verify(&out, &BundleOptions::default()).unwrap();
    assert_eq!(checked.manifest.framework.as_deref(), Some(evidence::FRAMEWORK));
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(out.join(evidence::FINDINGS_FILE)).unwrap()).unwrap();
    assert_eq!(doc["findings"].as_array().unwrap().len(), 10);
    assert_eq!(doc["tree_size"].as_u64(), Some(size as u64));
    let ocsf = fs::read_to_string(out.join(evidence::OCSF_FINDINGS_FILE)).unwrap();
    for (line, f) in ocsf.lines().zip(found) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let control = f.control_id.split('/').next().unwrap();
        assert_eq!((v["class_uid"].as_u64(), v["compliance"]["control"].as_str()), (Some(2003), Some(control)));
        assert_eq!(v["compliance"]["requirements"].as_array().unwrap().len(), f.control_id.split('/').count());
        let want = match f.status {
            Status::Pass => 1,
            Status::Fail => 3,
            Status::NotApplicable => 0,
        };
        assert_eq!(v["compliance"]["status_id"], want);
    }

    let html = fs::read_to_string(out.join(evidence::REPORT_FILE)).unwrap();
    let lower = html.to_lowercase();
    for banned in ["<script", "<link", "<img", "<iframe", "src=", "@import", "url(", "href=\"http"] {
        assert!(!lower.contains(banned), "the report is self-contained: found {banned}");
    }
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "the hostile agent id is shown, escaped");
    assert!(html.contains("<svg"), "charts are inline SVG");
    for f in found {
        assert!(html.contains(&f.control_id), "{} is in the report", f.control_id);
    }

    let copy = tmp.path().join("changed");
    fs::create_dir_all(&copy).unwrap();
    copy_dir(&out, &copy);
    let p = copy.join(evidence::REPORT_FILE);
    fs::write(&p, fs::read_to_string(&p).unwrap().replacen("fail", "pass", 1)).unwrap();
    let e = bundle::verify(&copy, &BundleOptions::default()).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(evidence::REPORT_FILE), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_without_decisions_is_not_applicable() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = ledger(&tmp.path().join("data"));
    let out = tmp.path().join("evidence");
    // The generator's events are in 2026-01 and 02; the ledger's own records
    // carry the time the ledger was made (now), after the window start.
    let opts = EvidenceOptions {
        from: Some(actlog_core::time::parse_rfc3339_utc("2026-06-01T00:00:00Z").unwrap()),
        to: None,
        ledger_signatures: false,
        policy: None,
    };
    let r = evidence::evidence(&engine, &SEED, &out, &opts, &|_, _, _| {}).await.unwrap();
    for control in ["PR.AA-05", "PR.AA-01", "PR.AA-03", "PR.AA-04", "DE.CM-03", "DE.AE-02", "RS.AN-03", "AU-3"] {
        assert_eq!(find(&r.findings, control).status, Status::NotApplicable, "{control}");
    }
    assert_eq!(find(&r.findings, "PR.PS-04").status, Status::Pass);
    let f = find(&r.findings, "AU-9/AU-10");
    assert_eq!(f.status, Status::Pass);
    assert!(f.metrics["ledger_verification"].as_str().unwrap().starts_with("structural"));
    bundle::verify(&out, &BundleOptions::default()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            fs::create_dir_all(&t).unwrap();
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).unwrap();
        }
    }
}
