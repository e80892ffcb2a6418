//! Shared fixtures for the benchmarks: realistic signed events.

use actlog_core::dsse::Envelope;

/// A producer seed used by every benchmark.
pub const SEED: [u8; 32] = [0x5a; 32];
/// The PDP the benchmark key is registered to.
pub const PDP: &str = "pdp-bench";

/// One realistic decision event (about 1 KiB) with a delegation chain of `depth` hops.
pub fn event(i: u64, depth: u32) -> Vec<u8> {
    let chain: Vec<_> = (1..=depth)
        .map(|d| {
            let sub = if d == 1 { format!("agent-{}", i % 97) } else { format!("orchestrator-{}-{d}", i % 13) };
            serde_json::json!({"depth": d, "sub": sub, "iss": "https://as.example", "sub_profile": "ai_agent"})
        })
        .collect();
    serde_json::json!({
        "spec_version": "1",
        "event_type": "authz.decision",
        "event_id": format!("bench-{i:012}"),
        "event_time": format!("2026-08-21T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i % 1_000_000),
        "pdp": {"id": PDP, "kind": "opa", "version": "v1.13.1"},
        "delegation": {
            "principal": {"type": "user", "id": format!("https://idp.example/users/u{}", i % 1000), "iss": "https://idp.example"},
            "actor": {"id": format!("agent-{}", i % 97), "iss": "https://as.example", "sub_profile": "ai_agent",
                      "model": {"name": "model-x", "provider": "example-ai"}},
            "chain": chain,
            "verification": {"status": "verified", "method": "token_exchange"}
        },
        "correlation": {"session_id": format!("sess-{}", i % 5000), "task_id": format!("task-{}", i % 20000),
                        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        "purpose": {"scope": "travel.book", "description": "Book a trip"},
        "trust": {"level": "T2", "risk_score": (i % 100) as f64, "scopes_granted": ["travel.book", "calendar.read"]},
        "policy": {"bundles": {"authz": {"revision": format!("rev-{}", i % 7)}}, "decision_path": "mcp/authz/allow"},
        "request": {
            "subject": {"type": "user", "id": format!("https://idp.example/users/u{}", i % 1000)},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "book_flight"},
            "tool": {"protocol": "mcp", "server": "https://mcp.travel.example", "name": "book_flight",
                     "arguments_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
        },
        "decision": {"effect": if i.is_multiple_of(12) { "deny" } else { "allow" }}
    })
    .to_string()
    .into_bytes()
}

/// `n` signed envelopes starting at id `from`.
pub fn envelopes(from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| Envelope::sign(event(i, 1 + (i % 4) as u32), Some("bench-key".into()), &SEED).to_json().into_bytes())
        .collect()
}
