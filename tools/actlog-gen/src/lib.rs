//! actlog-gen: a deterministic generator of realistic actlog ledgers.
//!
//! [`Generator`] yields the compact JSON payloads of exactly
//! [`GenConfig::events`] events, each tagged with the PDP that signs it. The
//! stream looks like a fleet of AI agents working for people: many PDPs,
//! agents, principals and tasks; sub-agent chains of depth 1 to 4 linked to the
//! orchestrator's decision; about 8% denies; outcomes for most allows, a few
//! events after their decision; and the occasional `policy.activated`,
//! `agent.registered`, `delegation.granted` and `delegation.revoked`.
//! Anomalies listed in [`ANOMALIES`] are planted on a schedule and marked with
//! `ext.anomaly`, so evidence work can look for them and tests can find them.
//!
//! Invariants (tested below):
//! - The same `(seed, events, pdps, start, days)` gives byte-identical
//!   payloads. Randomness comes from one splitmix64 stream; members are
//!   written in a fixed order by a small JSON writer (not a map).
//! - Every `authz.outcome` comes after the `authz.decision` it references.
//! - Every payload passes `actlog_core::event::validate`.
//! - `event_time` follows position: events other than outcomes have
//!   non-decreasing times spread over `days`, denser in UTC business hours.
//!   An outcome is stamped a few milliseconds to seconds after its decision.
//! - Only planted events carry an anomaly's signature (for example, no
//!   unplanted allow has `risk_score` of 70 or more).
//!
//! Generation does no IO and never reads the clock. `ledger` signs, checks
//! and appends through the real path (`build_ledger`, `append_generated`);
//! `src/main.rs` is the command line around it.

mod ledger;

pub use ledger::{PdpKey, append_generated, build_ledger, register_keys};

use std::collections::VecDeque;
use std::fmt::Write as _;

/// Anomaly: an agent allowed to act outside its purpose scope.
pub const SCOPE_VIOLATION: &str = "scope_violation";
/// Anomaly: a deny whose outcome says the call was executed anyway.
pub const DENY_THEN_EXECUTED: &str = "deny_then_executed";
/// Anomaly: a deny overridden by a person (break-glass).
pub const OVERRIDDEN_OUTCOME: &str = "overridden_outcome";
/// Anomaly: a burst of denies for one agent.
pub const DENY_BURST: &str = "deny_burst";
/// Anomaly: a decision allowed although delegation verification failed.
pub const FAILED_VERIFICATION_ALLOWED: &str = "failed_verification_allowed";
/// Anomaly: a decision allowed at a very high risk score.
pub const HIGH_RISK_ALLOWED: &str = "high_risk_allowed";
/// Anomaly: a principal's agent acting at 03:00 UTC, far outside their hours.
pub const OFF_HOURS_PRINCIPAL: &str = "off_hours_principal";
/// Anomaly: a depth-4 chain whose deepest hop has another issuer.
pub const FOREIGN_ISSUER_CHAIN: &str = "foreign_issuer_chain";

/// Every planted anomaly: `(name, description)`. Planted events carry
/// `ext.anomaly = name`; for a decision and its outcome, both carry it.
pub const ANOMALIES: &[(&str, &str)] = &[
    (
        SCOPE_VIOLATION,
        "an agent acting outside its purpose scope: an allowed tool call whose request.tool.name is not one of \
         the tools of purpose.scope (e.g. a travel agent calling payments.refund); its outcome is executed",
    ),
    (
        DENY_THEN_EXECUTED,
        "a deny followed by an authz.outcome with status executed for that decision (enforcement bypassed); \
         unplanted denies only ever get blocked outcomes",
    ),
    (
        OVERRIDDEN_OUTCOME,
        "a deny followed by an authz.outcome with status overridden (break-glass by an on-call person, named in \
         ext.override.by with a change ticket); no unplanted outcome is overridden",
    ),
    (
        DENY_BURST,
        "a burst of 10 to 14 consecutive denies (reason tool_not_permitted) for one agent in one task, probing \
         tools outside its purpose; the burst's decisions get no outcomes",
    ),
    (
        FAILED_VERIFICATION_ALLOWED,
        "an allowed decision whose delegation.verification.status is failed; unplanted failed verifications \
         are always denied",
    ),
    (HIGH_RISK_ALLOWED, "an allowed decision with trust.risk_score of 90 or more; unplanted allows stay below 70"),
    (
        OFF_HOURS_PRINCIPAL,
        "events between 03:00 and 04:00 UTC for the principal https://idp.example/users/dana, whose agents \
         otherwise act only between 08:00 and 18:00 UTC (a decision, its outcome, and half of the time the \
         delegation.granted before them)",
    ),
    (
        FOREIGN_ISSUER_CHAIN,
        "an allowed depth-4 sub-agent call whose deepest chain hop (depth 4, the orchestrator) has issuer \
         https://as.unknown-tenant.example instead of https://as.example",
    ),
];

/// 2026-01-01T00:00:00Z: the default start.
pub const DEFAULT_START_UNIX_NANOS: i64 = 1_767_225_600_000_000_000;
/// The principal of the [`OFF_HOURS_PRINCIPAL`] anomaly.
pub const OFF_HOURS_PRINCIPAL_ID: &str = "https://idp.example/users/dana";
/// The issuer of the deepest hop in [`FOREIGN_ISSUER_CHAIN`].
pub const FOREIGN_ISSUER: &str = "https://as.unknown-tenant.example";
/// Unplanted allows have a `trust.risk_score` below this.
pub const ALLOW_RISK_MAX: u64 = 70;
/// [`HIGH_RISK_ALLOWED`] decisions have a `trust.risk_score` at least this.
pub const HIGH_RISK_MIN: u64 = 90;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    /// Seed of the one random stream (and of the PDP keys, see [`pdp_seed`]).
    pub seed: u64,
    /// Exactly this many events are yielded.
    pub events: u64,
    /// Number of PDPs (at least 1; 0 is treated as 1).
    pub pdps: usize,
    /// Time of the first event, unix nanoseconds. The hour-of-day profile is
    /// anchored here, so a UTC midnight (the default) lines it up with UTC.
    pub start_unix_nanos: i64,
    /// The events span this many days (at least 1; 0 is treated as 1).
    pub days: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig { seed: 1, events: 100_000, pdps: 8, start_unix_nanos: DEFAULT_START_UNIX_NANOS, days: 30 }
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The PDP that signs it (index for [`pdp_id`] and [`pdp_seed`]); the
    /// payload's `pdp.id` is `pdp_id(pdp)`.
    pub pdp: usize,
    /// Compact JSON bytes of one event.
    pub payload: Vec<u8>,
}

/// The id of PDP `i`: realistic names for the first eight, then `pdp-edge-N`.
pub fn pdp_id(i: usize) -> String {
    match PDP_NAMES.get(i) {
        Some(name) => (*name).to_string(),
        None => format!("pdp-edge-{}", i + 1 - PDP_NAMES.len()),
    }
}

/// The ed25519 secret seed of PDP `i` for generator seed `seed`.
/// Deterministic, so a rerun signs with the same registered keys.
/// Test keys only: anyone who knows the seed knows the key.
pub fn pdp_seed(seed: u64, i: usize) -> [u8; 32] {
    let base = Rng::new(seed ^ KEY_DOMAIN).next_u64();
    let mut rng = Rng::new(base ^ (i as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// Yields the events of one [`GenConfig`]; an [`Iterator`] of [`Generated`].
#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    /// Events yielded so far: the position of the next one.
    emitted: u64,
    /// Events built and waiting, in order; outcomes join only when it is empty,
    /// which is what keeps every outcome after its decision.
    ready: VecDeque<Generated>,
    outcomes: Vec<PendingOutcome>,
    outcomes_scheduled: u64,
    pdps: Vec<Pdp>,
    agents: Vec<Agent>,
    principals: Vec<String>,
    agent_type_weights: Vec<u64>,
    tasks: Vec<Task>,
    /// Position at which each anomaly of [`ANOMALIES`] is planted next.
    next_plant: Vec<u64>,
    off_hours_armed: bool,
    /// While set, event times are capped here (see `plant_off_hours`).
    time_ceiling: Option<i64>,
    /// A deny burst in progress: its task and the denies still to come.
    burst: Option<(Task, u32)>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GenConfig) -> Generator {
        let cfg = GenConfig { pdps: cfg.pdps.max(1), days: cfg.days.max(1), ..cfg };
        let mut rng = Rng::new(cfg.seed ^ STREAM_DOMAIN);
        let pdps = (0..cfg.pdps)
            .map(|i| {
                let id = pdp_id(i);
                let kind = pdp_kind(&id);
                Pdp { id, kind, policy_version: None, activations: 0 }
            })
            .collect();
        let mut agents = Vec::with_capacity(SUB_BASE + SUB_AGENT_TYPES.len() * SUB_AGENT_INSTANCES);
        for t in AGENT_TYPES {
            for n in 1..=ORCHESTRATOR_INSTANCES {
                agents.push(Agent::new(t.slug, t.display, n, rng.index(MODELS.len())));
            }
        }
        for (slug, display) in SUB_AGENT_TYPES {
            for n in 1..=SUB_AGENT_INSTANCES {
                agents.push(Agent::new(slug, display, n, rng.index(MODELS.len())));
            }
        }
        let principals = (0..PRINCIPAL_COUNT)
            .map(|i| {
                let name = FIRST_NAMES[i % FIRST_NAMES.len()];
                match i / FIRST_NAMES.len() {
                    0 => format!("{USER_PREFIX}{name}"),
                    round => format!("{USER_PREFIX}{name}{}", round + 1),
                }
            })
            .collect();
        let next_plant =
            (0..ANOMALIES.len() as u64).map(|k| PLANT_FIRST_AT + k * PLANT_FIRST_SPACING + rng.below(200)).collect();
        Generator {
            cfg,
            rng,
            emitted: 0,
            ready: VecDeque::new(),
            outcomes: Vec::new(),
            outcomes_scheduled: 0,
            pdps,
            agents,
            principals,
            agent_type_weights: AGENT_TYPES.iter().map(|t| t.weight).collect(),
            tasks: Vec::new(),
            next_plant,
            off_hours_armed: false,
            time_ceiling: None,
            burst: None,
        }
    }

    /// The configuration in use (after `pdps` and `days` were raised to 1).
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.emitted >= self.cfg.events {
            return None;
        }
        loop {
            if let Some(g) = self.ready.pop_front() {
                self.emitted += 1;
                return Some(g);
            }
            // Near the end, pending outcomes go first so few are lost.
            let flush = self.cfg.events - self.emitted <= self.outcomes.len() as u64;
            if let Some(i) = self.due_outcome(flush) {
                let o = self.outcomes.swap_remove(i);
                self.ready.push_back(o.generated);
                continue;
            }
            self.step();
            assert!(!self.ready.is_empty(), "every step builds at least one event");
        }
    }
}

// ---------------------------------------------------------------------------
// Catalog: the world the events describe.

const KEY_DOMAIN: u64 = 0x7064_702d_6b65_7973; // "pdp-keys"
const STREAM_DOMAIN: u64 = 0x6163_746c_6f67_2d67; // "actlog-g"
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

const HOUR_NANOS: i64 = 3_600_000_000_000;
const DAY_NANOS: i64 = 24 * HOUR_NANOS;
const SECOND_NANOS: i64 = 1_000_000_000;
const MILLI_NANOS: i64 = 1_000_000;

/// Relative event density per UTC hour: busy from 08:00 to 18:00, quiet at night.
const HOUR_WEIGHTS: [u64; 24] = [1, 1, 1, 1, 1, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 6, 6, 4, 4, 2, 2];
/// Hours in which the off-hours principal starts and continues tasks.
const OFF_HOURS_PRINCIPAL_WORK_HOURS: std::ops::RangeInclusive<u32> = 8..=16;

/// Anomaly schedule: the first plant of anomaly `k` is near
/// `PLANT_FIRST_AT + k * PLANT_FIRST_SPACING`, then every 1500 to 3500 events.
const PLANT_FIRST_AT: u64 = 150;
const PLANT_FIRST_SPACING: u64 = 230;
const PLANT_PERIOD_MIN: u64 = 1500;
const PLANT_PERIOD_JITTER: u64 = 2000;

/// Probabilities in parts per 10 000.
const POLICY_CHANGE_PER_10K: u64 = 5;
const SERVICE_DECISION_PER_10K: u64 = 500;
const NEW_TASK_PER_10K: u64 = 800;
const GRANT_PER_10K: u64 = 5000;
const REVOKE_PER_10K: u64 = 1000;
const TOOL_CALL_PER_10K: u64 = 8500;
const DENY_PER_10K: u64 = 720;
const INDETERMINATE_PER_10K: u64 = 60;
const NOT_APPLICABLE_PER_10K: u64 = 250;
const ALLOW_OUTCOME_PER_10K: u64 = 8500;
const DENY_OUTCOME_PER_10K: u64 = 3000;
const OBLIGATION_PER_10K: u64 = 1500;

const TASKS_ACTIVE_MIN: usize = 4;
const TASKS_ACTIVE_MAX: usize = 16;
/// Chain depth 1, 2, 3, 4 weights for task decisions.
const DEPTH_WEIGHTS: [u64; 4] = [55, 25, 13, 7];

const USER_PREFIX: &str = "https://idp.example/users/";
const USER_ISS: &str = "https://idp.example";
const AGENT_ISS: &str = "https://as.example";
const PLATFORM_ADMIN: &str = "https://idp.example/users/platform-admin";
const ONCALL: &[&str] = &["https://idp.example/users/oncall-lead", "https://idp.example/users/sre-manager"];

const ALLOW: &str = "allow";
const DENY: &str = "deny";
const INDETERMINATE: &str = "indeterminate";
const NOT_APPLICABLE: &str = "not_applicable";

const PDP_NAMES: &[&str] =
    &["pdp-eu-1", "opa-gw-2", "pdp-us-1", "opa-gw-1", "cerbos-eu-1", "authzen-us-2", "pdp-ap-1", "opa-payments-1"];

fn pdp_kind(id: &str) -> &'static str {
    if id.starts_with("opa-") {
        "opa"
    } else if id.starts_with("cerbos-") {
        "cerbos"
    } else if id.starts_with("authzen-") {
        "authzen"
    } else {
        "custom"
    }
}

/// A delegated purpose and the tools and records that serve it.
#[derive(Debug)]
struct Purpose {
    scope: &'static str,
    description: &'static str,
    tools: &'static [&'static str],
    record_type: &'static str,
    record_prefix: &'static str,
}

static PURPOSES: &[Purpose] = &[
    Purpose {
        scope: "support.refund",
        description: "Resolve a customer's refund request",
        tools: &["crm.read_contact", "crm.update_ticket", "payments.lookup_charge", "payments.refund", "email.send"],
        record_type: "customer_record",
        record_prefix: "cust-",
    },
    Purpose {
        scope: "support.ticket",
        description: "Triage and answer support tickets",
        tools: &["crm.read_contact", "crm.update_ticket", "kb.search", "email.send"],
        record_type: "ticket",
        record_prefix: "tkt-",
    },
    Purpose {
        scope: "travel.book",
        description: "Book a business trip",
        tools: &[
            "travel.search_flights",
            "travel.book_flight",
            "travel.book_hotel",
            "calendar.read",
            "calendar.create_event",
        ],
        record_type: "booking",
        record_prefix: "bk-",
    },
    Purpose {
        scope: "dev.code_change",
        description: "Implement and test a code change",
        tools: &["fs.read", "fs.write", "git.commit", "git.open_pull_request", "ci.run_pipeline"],
        record_type: "repository",
        record_prefix: "repo-",
    },
    Purpose {
        scope: "finance.report",
        description: "Prepare the monthly finance report",
        tools: &["db.query", "fs.read", "sheets.update", "reports.export"],
        record_type: "ledger_account",
        record_prefix: "acct-",
    },
    Purpose {
        scope: "sales.outreach",
        description: "Follow up with open leads",
        tools: &["crm.search", "crm.read_contact", "email.send", "calendar.create_event"],
        record_type: "lead",
        record_prefix: "lead-",
    },
    Purpose {
        scope: "hr.onboarding",
        description: "Onboard a new employee",
        tools: &["hr.read_employee", "hr.update_record", "it.create_account", "email.send"],
        record_type: "employee_record",
        record_prefix: "emp-",
    },
    Purpose {
        scope: "ops.incident",
        description: "Mitigate a production incident",
        tools: &["k8s.get_pods", "k8s.restart_deployment", "logs.search", "pager.ack"],
        record_type: "deployment",
        record_prefix: "deploy-",
    },
    Purpose {
        scope: "research.summarize",
        description: "Summarize sources for a briefing",
        tools: &["web.fetch", "kb.search", "fs.read", "fs.write"],
        record_type: "document",
        record_prefix: "doc-",
    },
];

/// Sensitive tools a planted scope violation or deny burst reaches for;
/// every purpose lacks at least one of them (tested).
static SENSITIVE_TOOLS: &[&str] =
    &["payments.refund", "hr.read_employee", "k8s.restart_deployment", "db.query", "it.create_account", "fs.write"];

/// An orchestrating agent type: the agent a principal delegates to.
#[derive(Debug)]
struct AgentType {
    slug: &'static str,
    display: &'static str,
    purposes: &'static [&'static str],
    weight: u64,
}

const AGENT_TYPES: &[AgentType] = &[
    AgentType {
        slug: "support-assistant",
        display: "Support Assistant",
        purposes: &["support.refund", "support.ticket"],
        weight: 24,
    },
    AgentType { slug: "travel-assistant", display: "Travel Assistant", purposes: &["travel.book"], weight: 10 },
    AgentType { slug: "code-assistant", display: "Code Assistant", purposes: &["dev.code_change"], weight: 18 },
    AgentType { slug: "finance-analyst", display: "Finance Analyst", purposes: &["finance.report"], weight: 8 },
    AgentType { slug: "sales-assistant", display: "Sales Assistant", purposes: &["sales.outreach"], weight: 12 },
    AgentType { slug: "hr-assistant", display: "HR Assistant", purposes: &["hr.onboarding"], weight: 6 },
    AgentType { slug: "ops-copilot", display: "Ops Copilot", purposes: &["ops.incident"], weight: 10 },
    AgentType {
        slug: "research-assistant",
        display: "Research Assistant",
        purposes: &["research.summarize"],
        weight: 12,
    },
];

/// Sub-agents an orchestrator spawns (chain depths 2 to 4).
static SUB_AGENT_TYPES: &[(&str, &str)] = &[
    ("planner", "Planner"),
    ("retriever", "Retriever"),
    ("executor", "Executor"),
    ("browser", "Browser"),
    ("coder", "Coder"),
    ("mailer", "Mailer"),
];

const ORCHESTRATOR_INSTANCES: usize = 6;
const SUB_AGENT_INSTANCES: usize = 4;
/// Index of the first sub-agent in `Generator::agents`.
const SUB_BASE: usize = AGENT_TYPES.len() * ORCHESTRATOR_INSTANCES;

/// `(provider, name, version)`.
static MODELS: &[(&str, &str, &str)] = &[
    ("anthropic", "claude-sonnet-4-5", "2025-09-29"),
    ("openai", "gpt-4.1", "2025-04-14"),
    ("google", "gemini-2.5-pro", "2025-06-17"),
    ("meta", "llama-3.3-70b-instruct", "2024-12-06"),
    ("mistral", "mistral-large", "2411"),
];

const PRINCIPAL_COUNT: usize = 240;
static FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dana", "erik", "fatima", "george", "hana", "ivan", "julia", "kofi", "lena", "mateo",
    "nadia", "oscar", "priya", "quinn", "rosa", "samir", "tara", "umar", "vera", "wei", "xenia", "yusuf", "zoe",
    "amara", "bruno", "chen", "diego", "elena", "farid", "greta", "hugo", "ines", "jonas", "keiko", "luca", "maya",
    "nils", "olga", "pablo", "rania", "sven", "tomas", "uma", "viktor", "yara",
];
/// `principals[OFF_HOURS_INDEX]` is [`OFF_HOURS_PRINCIPAL_ID`] (tested).
const OFF_HOURS_INDEX: usize = 3;

/// Service accounts that call PDPs without a person or an agent.
#[derive(Debug)]
struct Service {
    id: &'static str,
    workload_id: &'static str,
    action: &'static str,
    resource_type: &'static str,
    record_prefix: &'static str,
}

static SERVICES: &[Service] = &[
    Service {
        id: "svc-payments-reconciler",
        workload_id: "spiffe://prod.example/ns/payments/sa/reconciler",
        action: "transfer",
        resource_type: "account",
        record_prefix: "acct-",
    },
    Service {
        id: "svc-billing-batch",
        workload_id: "spiffe://prod.example/ns/billing/sa/batch",
        action: "read",
        resource_type: "invoice",
        record_prefix: "inv-",
    },
    Service {
        id: "svc-backup",
        workload_id: "spiffe://prod.example/ns/backup/sa/snapshotter",
        action: "snapshot",
        resource_type: "volume",
        record_prefix: "vol-",
    },
    Service {
        id: "svc-search-indexer",
        workload_id: "spiffe://prod.example/ns/search/sa/indexer",
        action: "read",
        resource_type: "document",
        record_prefix: "doc-",
    },
];

const RECORD_ACTIONS: &[&str] = &["read", "list", "update", "export"];
const OBLIGATIONS: &[&str] = &["redact_pii", "log_arguments", "notify_principal"];
const INDETERMINATE_ERRORS: &[(&str, &str)] = &[
    ("eval_timeout", "policy evaluation exceeded 50ms"),
    ("eval_conflict_error", "functions must not produce multiple outputs for same inputs"),
    ("bundle_unavailable", "the policy bundle is being reloaded"),
];

/// Why a deny happened; each has a stable reason id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DenyReason {
    RiskTooHigh,
    VerificationFailed,
    RateLimited,
    ApprovalRequired,
    NotOwner,
    ScopeNotGranted,
    ToolNotPermitted,
}

const TASK_DENY_REASONS: &[(DenyReason, u64)] = &[
    (DenyReason::RiskTooHigh, 30),
    (DenyReason::VerificationFailed, 10),
    (DenyReason::RateLimited, 10),
    (DenyReason::ApprovalRequired, 25),
    (DenyReason::NotOwner, 15),
    (DenyReason::ScopeNotGranted, 10),
];
const SERVICE_DENY_REASONS: &[(DenyReason, u64)] = &[(DenyReason::NotOwner, 1), (DenyReason::RateLimited, 1)];

/// `(reason id, text for the admin, text for the user)`.
fn reason_text(
    reason: DenyReason,
    target: &str,
    risk_tenths: u64,
    scope: &str,
) -> (&'static str, String, &'static str) {
    match reason {
        DenyReason::RiskTooHigh => (
            "risk_too_high",
            format!("trust.risk_score {} is above the limit {ALLOW_RISK_MAX} for {target}", risk_text(risk_tenths)),
            "This action looks risky and was blocked.",
        ),
        DenyReason::VerificationFailed => (
            "delegation_unverified",
            "the delegation token failed verification: audience mismatch".to_string(),
            "Your assistant's credentials could not be verified.",
        ),
        DenyReason::RateLimited => (
            "rate_limited",
            "more than 60 calls per minute from this actor".to_string(),
            "Too many requests; try again shortly.",
        ),
        DenyReason::ApprovalRequired => (
            "approval_required",
            format!("{target} requires human approval above the amount limit"),
            "This action needs approval first.",
        ),
        DenyReason::NotOwner => {
            ("not_owner", format!("the principal does not own {target}"), "You do not have access to this item.")
        }
        DenyReason::ScopeNotGranted => (
            "scope_not_granted",
            format!("{target} needs a write scope that was not granted"),
            "Your assistant is not allowed to do that.",
        ),
        DenyReason::ToolNotPermitted => (
            "tool_not_permitted",
            format!("{target} is not a tool of purpose {scope}"),
            "Your assistant is not allowed to use this tool.",
        ),
    }
}

// ---------------------------------------------------------------------------
// Generator state.

#[derive(Debug, Clone)]
struct Pdp {
    id: String,
    kind: &'static str,
    policy_version: Option<String>,
    activations: u32,
}

#[derive(Debug, Clone)]
struct Agent {
    id: String,
    client_id: String,
    workload_id: String,
    name: String,
    model: usize,
    registered: bool,
}

impl Agent {
    fn new(slug: &str, display: &str, n: usize, model: usize) -> Agent {
        Agent {
            id: format!("https://agents.example/{slug}-{n}"),
            client_id: format!("{slug}-{n}"),
            workload_id: format!("spiffe://prod.example/agents/{slug}-{n}"),
            name: format!("{display} {n}"),
            model,
            registered: false,
        }
    }
}

/// A principal's delegated task, run by an orchestrator and its sub-agents.
#[derive(Debug, Clone)]
struct Task {
    task_id: String,
    session_id: String,
    trace_id: String,
    instance_id: String,
    principal: usize,
    /// The orchestrator (index into `agents`).
    agent: usize,
    /// Sub-agents: `subs[0]` is spawned by the orchestrator, `subs[1]` by
    /// `subs[0]`, and so on (chain depths 2 to 4).
    subs: [usize; 3],
    purpose: usize,
    pdp: usize,
    trust_level: &'static str,
    steps_left: u32,
    /// The orchestrator's latest allowed decision: sub-agent calls link to it.
    orchestrator_decision: Option<String>,
    grant_id: Option<String>,
}

#[derive(Debug)]
struct PendingOutcome {
    /// Emitted once this many events were yielded (or at the end).
    due: u64,
    order: u64,
    generated: Generated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutcomePlan {
    /// Usually an outcome for allows, sometimes `blocked` for denies.
    Random,
    Skip,
    Status(&'static str),
}

/// Overrides for one decision; the default is an ordinary decision.
#[derive(Debug, Clone, Copy)]
struct Plan {
    depth: Option<usize>,
    effect: Option<&'static str>,
    reason: Option<DenyReason>,
    tool: Option<&'static str>,
    verification_failed: bool,
    risk_tenths: Option<u64>,
    foreign_issuer: bool,
    outcome: OutcomePlan,
    anomaly: Option<&'static str>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            depth: None,
            effect: None,
            reason: None,
            tool: None,
            verification_failed: false,
            risk_tenths: None,
            foreign_issuer: false,
            outcome: OutcomePlan::Random,
            anomaly: None,
        }
    }
}

/// Who acts, for whom, in which task: shared by a decision and its outcome.
#[derive(Debug, Clone)]
struct Ctx {
    pdp: usize,
    principal: Option<usize>,
    actor: Actor,
    verification: &'static str,
    session_id: Option<String>,
    task_id: Option<String>,
    trace_id: String,
    purpose: Option<usize>,
}

#[derive(Debug, Clone)]
enum Actor {
    /// Agent hops, depth 1 (the actor) first, the orchestrator last.
    Agents {
        hops: Vec<usize>,
        instance_id: String,
        foreign_issuer: bool,
    },
    Service(usize),
}

#[derive(Debug, Clone)]
struct Request {
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    /// `(tool name, arguments_sha256)`.
    tool: Option<(&'static str, String)>,
}

#[derive(Debug)]
struct DecisionDoc<'a> {
    ctx: &'a Ctx,
    event_id: &'a str,
    time: i64,
    request_id: &'a str,
    parent: Option<&'a str>,
    source_id: Option<&'a str>,
    /// `(level, risk in tenths, scopes granted)`.
    trust: Option<(&'static str, u64, [&'static str; 2])>,
    request: &'a Request,
    effect: &'static str,
    reason: Option<(&'static str, String, &'static str)>,
    obligation: Option<&'static str>,
    error: Option<(&'static str, &'static str)>,
    anomaly: Option<&'static str>,
}

impl Generator {
    /// The position the next built event will be yielded at.
    fn stream_pos(&self) -> u64 {
        self.emitted + self.ready.len() as u64
    }

    fn push(&mut self, pdp: usize, payload: Vec<u8>) {
        self.ready.push_back(Generated { pdp, payload });
    }

    fn due_outcome(&self, flush: bool) -> Option<usize> {
        let (i, o) = self.outcomes.iter().enumerate().min_by_key(|(_, o)| (o.due, o.order))?;
        (flush || o.due <= self.emitted).then_some(i)
    }

    /// The time slot of position `pos`: days are spread evenly over the
    /// positions, and inside a day the hours follow [`HOUR_WEIGHTS`].
    /// Integer arithmetic only, so every platform agrees.
    fn clock(&self, pos: u64) -> i64 {
        let n = u128::from(self.cfg.events.max(1));
        let x = u128::from(pos) * u128::from(self.cfg.days);
        let day = (x / n) as i64;
        let total: u128 = HOUR_WEIGHTS.iter().map(|w| u128::from(*w)).sum();
        // Where in the day, in weight-nanoseconds.
        let mut units = (x % n) * total * HOUR_NANOS as u128 / n;
        let mut nanos_of_day = 0i64;
        for w in HOUR_WEIGHTS {
            let capacity = u128::from(w) * HOUR_NANOS as u128;
            if units < capacity {
                nanos_of_day += (units / u128::from(w)) as i64;
                break;
            }
            units -= capacity;
            nanos_of_day += HOUR_NANOS;
        }
        self.cfg.start_unix_nanos + day * DAY_NANOS + nanos_of_day
    }

    /// The time of an event at `pos`: inside its slot (so times never go
    /// back), truncated to milliseconds as most PDPs report them, and capped
    /// by `time_ceiling` (a cap keeps the order: it is applied to a run of
    /// consecutive events, and later ones are past it anyway).
    fn event_time(&mut self, pos: u64) -> i64 {
        let slot = self.clock(pos);
        let gap = (self.clock(pos + 1) - slot).clamp(1, SECOND_NANOS);
        let t = slot + self.rng.below(gap as u64) as i64;
        let t = t - t.rem_euclid(MILLI_NANOS);
        match self.time_ceiling {
            Some(ceiling) => t.min(ceiling),
            None => t,
        }
    }

    /// Builds the next event(s) into `ready`.
    fn step(&mut self) {
        let pos = self.stream_pos();
        let now = self.clock(pos);
        let hour = hour_of(now);
        if self.rng.chance(POLICY_CHANGE_PER_10K) {
            let p = self.rng.index(self.pdps.len());
            self.activate_policy(p);
            return;
        }
        if let Some((mut task, left)) = self.burst.take() {
            self.burst_deny(&mut task);
            if left > 1 {
                self.burst = Some((task, left - 1));
            }
            return;
        }
        // The off-hours plant waits for 03:00 (and not the hour's last seconds,
        // which its time ceiling needs).
        if self.off_hours_armed && hour == 3 && now.rem_euclid(HOUR_NANOS) < HOUR_NANOS - 10 * SECOND_NANOS {
            self.off_hours_armed = false;
            self.plant_off_hours(now);
            return;
        }
        if let Some(k) = (0..ANOMALIES.len()).find(|&k| self.next_plant[k] <= pos) {
            self.next_plant[k] = pos + PLANT_PERIOD_MIN + self.rng.below(PLANT_PERIOD_JITTER);
            let name = ANOMALIES[k].0;
            if name == OFF_HOURS_PRINCIPAL {
                self.off_hours_armed = true;
            } else {
                self.plant(name);
                return;
            }
        }
        if self.rng.chance(SERVICE_DECISION_PER_10K) {
            self.service_decision();
            return;
        }
        self.task_step(hour);
    }

    /// One decision of an active task, starting tasks as needed.
    fn task_step(&mut self, hour: u32) {
        let off_hours_ok = OFF_HOURS_PRINCIPAL_WORK_HOURS.contains(&hour);
        loop {
            if self.tasks.len() < TASKS_ACTIVE_MIN
                || (self.tasks.len() < TASKS_ACTIVE_MAX && self.rng.chance(NEW_TASK_PER_10K))
            {
                let task = self.new_task(off_hours_ok, None);
                self.tasks.push(task);
            }
            let i = self.rng.index(self.tasks.len());
            if self.tasks[i].principal == OFF_HOURS_INDEX && !off_hours_ok {
                // Her working day is over: the task ends quietly.
                self.tasks.swap_remove(i);
                continue;
            }
            let mut task = self.tasks[i].clone();
            self.decision(&mut task, Plan::default());
            task.steps_left = task.steps_left.saturating_sub(1);
            if task.steps_left == 0 {
                self.tasks.swap_remove(i);
                if task.grant_id.is_some() && self.rng.chance(REVOKE_PER_10K) {
                    self.delegation_revoked(&task);
                }
            } else {
                self.tasks[i] = task;
            }
            return;
        }
    }

    /// A new task. The off-hours principal is picked only when
    /// `off_hours_ok`, or when forced through `principal`. A
    /// `delegation.granted` starts half of the tasks.
    fn new_task(&mut self, off_hours_ok: bool, principal: Option<(usize, &'static str)>) -> Task {
        let (principal, anomaly) = match principal {
            Some((p, anomaly)) => (p, Some(anomaly)),
            None => loop {
                let p = self.rng.index(self.principals.len());
                if p != OFF_HOURS_INDEX || off_hours_ok {
                    break (p, None);
                }
            },
        };
        let ty = self.rng.weighted(&self.agent_type_weights);
        let agent = ty * ORCHESTRATOR_INSTANCES + self.rng.index(ORCHESTRATOR_INSTANCES);
        let purposes = AGENT_TYPES[ty].purposes;
        let scope = purposes[self.rng.index(purposes.len())];
        let purpose = purpose_index(scope);
        // Three distinct sub-agents.
        let mut subs = [usize::MAX; 3];
        let mut filled = 0;
        while filled < subs.len() {
            let s = SUB_BASE + self.rng.index(SUB_AGENT_TYPES.len() * SUB_AGENT_INSTANCES);
            if !subs.contains(&s) {
                subs[filled] = s;
                filled += 1;
            }
        }
        let pdp = self.rng.index(self.pdps.len());
        let trust_level = ["T1", "T2", "T3"][self.rng.weighted(&[40, 45, 15])];
        let steps_left = 2 + self.rng.below(10) as u32;
        let task_id = format!("task-{:016x}", self.rng.next_u64());
        let session_id = format!("sess-{:012x}", self.rng.next_u64() >> 16);
        let (trace_hi, trace_lo) = (self.rng.next_u64(), self.rng.next_u64());
        let instance_id = format!("run-{:06x}", self.rng.next_u64() >> 40);
        let mut task = Task {
            task_id,
            session_id,
            trace_id: format!("{trace_hi:016x}{trace_lo:016x}"),
            instance_id,
            principal,
            agent,
            subs,
            purpose,
            pdp,
            trust_level,
            steps_left,
            orchestrator_decision: None,
            grant_id: None,
        };
        if self.rng.chance(GRANT_PER_10K) {
            task.grant_id = Some(format!("grant-{:08x}", self.rng.next_u64() >> 32));
            self.delegation_granted(&task, anomaly);
        }
        task
    }

    /// Plants one anomaly (all but [`OFF_HOURS_PRINCIPAL`], which waits for
    /// 03:00). The planted task then goes on like any other.
    fn plant(&mut self, name: &'static str) {
        let mut task = self.new_task(false, None);
        let executed = OutcomePlan::Status("executed");
        let marked = Plan { depth: Some(1), outcome: executed, anomaly: Some(name), ..Plan::default() };
        match name {
            SCOPE_VIOLATION => {
                let tool = self.tool_outside(task.purpose);
                self.decision(&mut task, Plan { effect: Some(ALLOW), tool: Some(tool), ..marked });
            }
            DENY_THEN_EXECUTED => {
                let reason = Some(DenyReason::ApprovalRequired);
                self.decision(&mut task, Plan { effect: Some(DENY), reason, ..marked });
            }
            OVERRIDDEN_OUTCOME => {
                let reason = Some(DenyReason::RiskTooHigh);
                let outcome = OutcomePlan::Status("overridden");
                self.decision(&mut task, Plan { effect: Some(DENY), reason, outcome, ..marked });
            }
            DENY_BURST => {
                let left = 10 + self.rng.below(5) as u32;
                self.burst_deny(&mut task);
                self.burst = Some((task, left - 1));
                return;
            }
            FAILED_VERIFICATION_ALLOWED => {
                self.decision(&mut task, Plan { effect: Some(ALLOW), verification_failed: true, ..marked });
            }
            HIGH_RISK_ALLOWED => {
                let risk = HIGH_RISK_MIN * 10 + self.rng.below(100);
                self.decision(&mut task, Plan { effect: Some(ALLOW), risk_tenths: Some(risk), ..marked });
            }
            FOREIGN_ISSUER_CHAIN => {
                // The orchestrator's own (ordinary) decision first, so the
                // depth-4 call has a parent to link to.
                self.decision(&mut task, Plan { depth: Some(1), effect: Some(ALLOW), ..Plan::default() });
                let plan = Plan { depth: Some(4), effect: Some(ALLOW), foreign_issuer: true, ..marked };
                self.decision(&mut task, plan);
            }
            other => unreachable!("no planting rule for anomaly {other}"),
        }
        self.tasks.push(task);
    }

    fn burst_deny(&mut self, task: &mut Task) {
        let tool = self.tool_outside(task.purpose);
        let plan = Plan {
            depth: Some(1),
            effect: Some(DENY),
            reason: Some(DenyReason::ToolNotPermitted),
            tool: Some(tool),
            outcome: OutcomePlan::Skip,
            anomaly: Some(DENY_BURST),
            ..Plan::default()
        };
        self.decision(task, plan);
    }

    /// The off-hours principal's agent at 03:00 (`now` is in hour 3): a
    /// one-off task. At night few events fall in one hour, so the few this
    /// builds are capped to end 5 s before the hour does, which keeps them
    /// and the outcome (at most 2.54 s later) inside it.
    fn plant_off_hours(&mut self, now: i64) {
        let hour_end = now - now.rem_euclid(HOUR_NANOS) + HOUR_NANOS;
        self.time_ceiling = Some(hour_end - 5 * SECOND_NANOS);
        let mut task = self.new_task(false, Some((OFF_HOURS_INDEX, OFF_HOURS_PRINCIPAL)));
        let plan = Plan {
            depth: Some(1),
            effect: Some(ALLOW),
            outcome: OutcomePlan::Status("executed"),
            anomaly: Some(OFF_HOURS_PRINCIPAL),
            ..Plan::default()
        };
        self.decision(&mut task, plan);
        self.time_ceiling = None;
    }

    fn tool_outside(&mut self, purpose: usize) -> &'static str {
        let own = PURPOSES[purpose].tools;
        let candidates: Vec<&'static str> = SENSITIVE_TOOLS.iter().copied().filter(|t| !own.contains(t)).collect();
        candidates[self.rng.index(candidates.len())]
    }

    /// One `authz.decision` of `task` (plus its outcome, scheduled), after any
    /// `policy.activated` or `agent.registered` it needs. Returns its id.
    fn decision(&mut self, task: &mut Task, plan: Plan) -> String {
        self.ensure_policy(task.pdp);
        let mut depth = match plan.depth {
            Some(d) => d,
            None => 1 + self.rng.weighted(&DEPTH_WEIGHTS),
        };
        if depth > 1 && task.orchestrator_decision.is_none() {
            depth = 1;
        }
        let mut hops = Vec::with_capacity(depth);
        for d in (0..depth - 1).rev() {
            hops.push(task.subs[d]);
        }
        hops.push(task.agent);
        for &a in &hops {
            self.ensure_registered(a, task.pdp);
        }
        let purpose = &PURPOSES[task.purpose];
        let request = if plan.tool.is_some() || self.rng.chance(TOOL_CALL_PER_10K) {
            let tool = match plan.tool {
                Some(t) => t,
                None => purpose.tools[self.rng.index(purpose.tools.len())],
            };
            let args = self.rng.hex64();
            Request {
                action: "tools/call",
                resource_type: "tool",
                resource_id: tool.to_string(),
                tool: Some((tool, args)),
            }
        } else {
            let action = RECORD_ACTIONS[self.rng.index(RECORD_ACTIONS.len())];
            let id = format!("{}{:05}", purpose.record_prefix, self.rng.below(50_000));
            Request { action, resource_type: purpose.record_type, resource_id: id, tool: None }
        };
        let effect = match plan.effect {
            Some(e) => e,
            None => self.random_effect(request.tool.is_none()),
        };
        let reason = match (effect, plan.reason) {
            (DENY, Some(r)) => Some(r),
            (DENY, None) => Some(self.rng.weighted_pick(TASK_DENY_REASONS)),
            _ => None,
        };
        let verification = if plan.verification_failed || reason == Some(DenyReason::VerificationFailed) {
            "failed"
        } else {
            ["verified", "asserted", "unverified"][self.rng.weighted(&[85, 12, 3])]
        };
        let risk = match plan.risk_tenths {
            Some(r) => r,
            None if reason == Some(DenyReason::RiskTooHigh) => ALLOW_RISK_MAX * 10 + self.rng.below(200),
            None => self.rng.below(ALLOW_RISK_MAX * 10).min(self.rng.below(ALLOW_RISK_MAX * 10)),
        };
        let reason = reason.map(|r| reason_text(r, &request.resource_id, risk, purpose.scope));
        let obligation = (effect == ALLOW && request.tool.is_some() && self.rng.chance(OBLIGATION_PER_10K))
            .then(|| OBLIGATIONS[self.rng.index(OBLIGATIONS.len())]);
        let error = (effect == INDETERMINATE).then(|| INDETERMINATE_ERRORS[self.rng.index(INDETERMINATE_ERRORS.len())]);
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let request_id = format!("req-{:012x}", self.rng.next_u64() >> 16);
        let source_id = (self.pdps[task.pdp].kind == "opa").then(|| self.rng.uuid4());
        let ctx = Ctx {
            pdp: task.pdp,
            principal: Some(task.principal),
            actor: Actor::Agents { hops, instance_id: task.instance_id.clone(), foreign_issuer: plan.foreign_issuer },
            verification,
            session_id: Some(task.session_id.clone()),
            task_id: Some(task.task_id.clone()),
            trace_id: task.trace_id.clone(),
            purpose: Some(task.purpose),
        };
        let parent = if depth > 1 { task.orchestrator_decision.clone() } else { None };
        let payload = self.write_decision(&DecisionDoc {
            ctx: &ctx,
            event_id: &event_id,
            time,
            request_id: &request_id,
            parent: parent.as_deref(),
            source_id: source_id.as_deref(),
            trust: Some((task.trust_level, risk, [purpose.scope, "profile.read"])),
            request: &request,
            effect,
            reason,
            obligation,
            error,
            anomaly: plan.anomaly,
        });
        self.push(task.pdp, payload);
        if depth == 1 && effect == ALLOW {
            task.orchestrator_decision = Some(event_id.clone());
        }
        self.schedule_outcome(&ctx, &event_id, time, effect, plan.outcome, plan.anomaly);
        event_id
    }

    fn random_effect(&mut self, record: bool) -> &'static str {
        let r = self.rng.below(10_000);
        if r < DENY_PER_10K {
            DENY
        } else if r < DENY_PER_10K + INDETERMINATE_PER_10K {
            INDETERMINATE
        } else if record && r < DENY_PER_10K + INDETERMINATE_PER_10K + NOT_APPLICABLE_PER_10K {
            // No policy covers some record types at some PDPs.
            NOT_APPLICABLE
        } else {
            ALLOW
        }
    }

    /// A service account's decision: no person, no agent, no task.
    fn service_decision(&mut self) {
        let s = self.rng.index(SERVICES.len());
        let svc = &SERVICES[s];
        let pdp = self.rng.index(self.pdps.len());
        self.ensure_policy(pdp);
        let request = Request {
            action: svc.action,
            resource_type: svc.resource_type,
            resource_id: format!("{}{:05}", svc.record_prefix, self.rng.below(50_000)),
            tool: None,
        };
        let effect = self.random_effect(false);
        let reason = (effect == DENY).then(|| {
            let r = self.rng.weighted_pick(SERVICE_DENY_REASONS);
            reason_text(r, &request.resource_id, 0, "")
        });
        let error = (effect == INDETERMINATE).then(|| INDETERMINATE_ERRORS[self.rng.index(INDETERMINATE_ERRORS.len())]);
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let request_id = format!("req-{:012x}", self.rng.next_u64() >> 16);
        let (trace_hi, trace_lo) = (self.rng.next_u64(), self.rng.next_u64());
        let source_id = (self.pdps[pdp].kind == "opa").then(|| self.rng.uuid4());
        let ctx = Ctx {
            pdp,
            principal: None,
            actor: Actor::Service(s),
            verification: "verified",
            session_id: None,
            task_id: None,
            trace_id: format!("{trace_hi:016x}{trace_lo:016x}"),
            purpose: None,
        };
        let payload = self.write_decision(&DecisionDoc {
            ctx: &ctx,
            event_id: &event_id,
            time,
            request_id: &request_id,
            parent: None,
            source_id: source_id.as_deref(),
            trust: None,
            request: &request,
            effect,
            reason,
            obligation: None,
            error,
            anomaly: None,
        });
        self.push(pdp, payload);
        self.schedule_outcome(&ctx, &event_id, time, effect, OutcomePlan::Random, None);
    }

    /// Builds the outcome of a decision and queues it a few events ahead.
    fn schedule_outcome(
        &mut self,
        ctx: &Ctx,
        decision_id: &str,
        decision_time: i64,
        effect: &str,
        plan: OutcomePlan,
        anomaly: Option<&'static str>,
    ) {
        let status = match plan {
            OutcomePlan::Skip => return,
            OutcomePlan::Status(s) => s,
            OutcomePlan::Random => match effect {
                ALLOW if self.rng.chance(ALLOW_OUTCOME_PER_10K) => {
                    ["executed", "failed", "unknown"][self.rng.weighted(&[93, 5, 2])]
                }
                DENY | INDETERMINATE if self.rng.chance(DENY_OUTCOME_PER_10K) => "blocked",
                _ => return,
            },
        };
        let latency_ms = 40 + self.rng.below(if status == "failed" { 8000 } else { 2500 });
        let time = decision_time + latency_ms as i64 * MILLI_NANOS;
        let event_id = self.rng.uuid7(time);
        let result_code: Option<u64> = match status {
            "executed" | "overridden" => Some(200),
            "failed" => Some(if self.rng.chance(5000) { 500 } else { 504 }),
            "blocked" => Some(403),
            _ => None,
        };
        let override_by = (status == "overridden").then(|| {
            let by = ONCALL[self.rng.index(ONCALL.len())];
            (by, format!("CHG-{}", 10_000 + self.rng.below(90_000)))
        });
        let pdp = &self.pdps[ctx.pdp];
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "authz.outcome", &event_id, time, pdp);
            self.write_context(j, ctx, None, Some(decision_id));
            j.obj("outcome", |j| {
                j.str("decision_event_id", decision_id);
                j.str("status", status);
                if let Some(code) = result_code {
                    j.uint("result_code", code);
                }
            });
            if anomaly.is_some() || override_by.is_some() {
                j.obj("ext", |j| {
                    if let Some(a) = anomaly {
                        j.str("anomaly", a);
                    }
                    if let Some((by, ticket)) = &override_by {
                        j.obj("override", |j| {
                            j.str("by", by);
                            j.str("ticket", ticket);
                        });
                    }
                });
            }
        });
        let due = self.stream_pos() + self.rng.below(6);
        let order = self.outcomes_scheduled;
        self.outcomes_scheduled += 1;
        self.outcomes.push(PendingOutcome { due, order, generated: Generated { pdp: ctx.pdp, payload: j.finish() } });
    }

    fn ensure_policy(&mut self, p: usize) {
        if self.pdps[p].policy_version.is_none() {
            self.activate_policy(p);
        }
    }

    /// A `policy.activated`: PDP `p` moves to its next policy version.
    fn activate_policy(&mut self, p: usize) {
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let previous = {
            let pdp = &mut self.pdps[p];
            pdp.activations += 1;
            let version = policy_version(time, pdp.activations);
            pdp.policy_version.replace(version)
        };
        let pdp = &self.pdps[p];
        let (actor, workload) = if pdp.kind == "opa" {
            ("opa-bundle-sync", "spiffe://prod.example/ns/opa/sa/bundle-sync")
        } else {
            ("policy-deployer", "spiffe://prod.example/ns/policy/sa/deployer")
        };
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "policy.activated", &event_id, time, pdp);
            j.obj("delegation", |j| {
                j.obj("actor", |j| {
                    j.str("id", actor);
                    j.str("sub_profile", "workload");
                    j.str("workload_id", workload);
                });
                j.arr("chain", |j| {
                    j.item_obj(|j| {
                        j.uint("depth", 1);
                        j.str("sub", actor);
                        j.str("sub_profile", "workload");
                    });
                });
                j.obj("verification", |j| {
                    j.str("status", "verified");
                    j.str("method", "mtls_svid");
                });
            });
            write_policy(j, pdp);
            if let Some(prev) = &previous {
                j.obj("ext", |j| j.str("previous_version", prev));
            }
        });
        let payload = j.finish();
        self.push(p, payload);
    }

    /// An `agent.registered` before an agent's first event.
    fn ensure_registered(&mut self, a: usize, pdp: usize) {
        if self.agents[a].registered {
            return;
        }
        self.agents[a].registered = true;
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let agent = &self.agents[a];
        let (provider, model, version) = MODELS[agent.model];
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "agent.registered", &event_id, time, &self.pdps[pdp]);
            j.obj("delegation", |j| {
                j.obj("principal", |j| {
                    j.str("type", "user");
                    j.str("id", PLATFORM_ADMIN);
                    j.str("iss", USER_ISS);
                });
                j.obj("actor", |j| {
                    j.str("id", "svc-agent-registry");
                    j.str("iss", AGENT_ISS);
                    j.str("sub_profile", "service");
                    j.str("name", "Agent registry");
                });
                j.arr("chain", |j| {
                    j.item_obj(|j| {
                        j.uint("depth", 1);
                        j.str("sub", "svc-agent-registry");
                        j.str("iss", AGENT_ISS);
                        j.str("sub_profile", "service");
                    });
                });
                j.obj("verification", |j| {
                    j.str("status", "verified");
                    j.str("method", "mtls_svid");
                });
            });
            j.obj("ext", |j| {
                j.obj("registered_agent", |j| {
                    j.str("id", &agent.id);
                    j.str("sub_profile", "ai_agent");
                    j.str("name", &agent.name);
                    j.str("workload_id", &agent.workload_id);
                    j.obj("model", |j| {
                        j.str("provider", provider);
                        j.str("name", model);
                        j.str("version", version);
                    });
                });
            });
        });
        let payload = j.finish();
        self.push(pdp, payload);
    }

    /// The `delegation.granted` that starts a task.
    fn delegation_granted(&mut self, task: &Task, anomaly: Option<&'static str>) {
        self.ensure_registered(task.agent, task.pdp);
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let consent = format!("consent-{:06}", self.rng.below(1_000_000));
        let ctx = self.task_ctx(task, vec![task.agent], "verified");
        let purpose = &PURPOSES[task.purpose];
        let grant_id = task.grant_id.as_deref().unwrap_or_default();
        let principal = &self.principals[task.principal];
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "delegation.granted", &event_id, time, &self.pdps[task.pdp]);
            self.write_context_with(j, &ctx, None, None, |j| {
                j.obj("grant", |j| {
                    j.str("id", grant_id);
                    j.str("granted_at", &rfc3339_seconds(time));
                    j.str("expires_at", &rfc3339_seconds(time + 8 * HOUR_NANOS));
                    j.str("granted_by", principal);
                    j.str("consent_ref", &consent);
                });
            });
            j.obj("trust", |j| {
                j.str("level", task.trust_level);
                j.arr("scopes_granted", |j| {
                    j.item_str(purpose.scope);
                    j.item_str("profile.read");
                });
            });
            if let Some(a) = anomaly {
                j.obj("ext", |j| j.str("anomaly", a));
            }
        });
        let payload = j.finish();
        self.push(task.pdp, payload);
    }

    /// The `delegation.revoked` that ends some granted tasks.
    fn delegation_revoked(&mut self, task: &Task) {
        let pos = self.stream_pos();
        let time = self.event_time(pos);
        let event_id = self.rng.uuid7(time);
        let ctx = self.task_ctx(task, vec![task.agent], "verified");
        let grant_id = task.grant_id.as_deref().unwrap_or_default();
        let principal = &self.principals[task.principal];
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "delegation.revoked", &event_id, time, &self.pdps[task.pdp]);
            self.write_context_with(j, &ctx, None, None, |j| {
                j.obj("grant", |j| {
                    j.str("id", grant_id);
                    j.str("revoked_by", principal);
                });
            });
        });
        let payload = j.finish();
        self.push(task.pdp, payload);
    }

    fn task_ctx(&self, task: &Task, hops: Vec<usize>, verification: &'static str) -> Ctx {
        Ctx {
            pdp: task.pdp,
            principal: Some(task.principal),
            actor: Actor::Agents { hops, instance_id: task.instance_id.clone(), foreign_issuer: false },
            verification,
            session_id: Some(task.session_id.clone()),
            task_id: Some(task.task_id.clone()),
            trace_id: task.trace_id.clone(),
            purpose: Some(task.purpose),
        }
    }

    fn write_decision(&self, d: &DecisionDoc<'_>) -> Vec<u8> {
        let pdp = &self.pdps[d.ctx.pdp];
        let mut j = Json::new();
        j.item_obj(|j| {
            write_head(j, "authz.decision", d.event_id, d.time, pdp);
            if let Some(native_id) = d.source_id {
                j.obj("source", |j| {
                    j.str("format", "opa.decision_log.v1");
                    j.str("native_id", native_id);
                });
            }
            self.write_context(j, d.ctx, Some(d.request_id), d.parent);
            if let Some((level, risk, scopes)) = &d.trust {
                j.obj("trust", |j| {
                    j.str("level", level);
                    j.raw("risk_score", &risk_text(*risk));
                    j.arr("scopes_granted", |j| {
                        for s in scopes {
                            j.item_str(s);
                        }
                    });
                });
            }
            write_policy(j, pdp);
            j.obj("request", |j| {
                j.obj("subject", |j| match (d.ctx.principal, &d.ctx.actor) {
                    (Some(p), _) => {
                        j.str("type", "user");
                        j.str("id", &self.principals[p]);
                    }
                    (None, Actor::Service(s)) => {
                        j.str("type", "service");
                        j.str("id", SERVICES[*s].id);
                    }
                    (None, Actor::Agents { hops, .. }) => {
                        j.str("type", "agent");
                        j.str("id", &self.agents[hops[0]].id);
                    }
                });
                j.obj("action", |j| j.str("name", d.request.action));
                j.obj("resource", |j| {
                    j.str("type", d.request.resource_type);
                    j.str("id", &d.request.resource_id);
                });
                if let Some((tool, args)) = &d.request.tool {
                    j.obj("tool", |j| {
                        j.str("protocol", "mcp");
                        j.str("server", &tool_server(tool));
                        j.str("method", "tools/call");
                        j.str("name", tool);
                        j.str("arguments_sha256", args);
                    });
                }
            });
            j.obj("decision", |j| {
                j.str("effect", d.effect);
                if let Some((id, admin, user)) = &d.reason {
                    j.arr("reasons", |j| {
                        j.item_obj(|j| {
                            j.str("id", id);
                            j.str("reason_admin", admin);
                            j.str("reason_user", user);
                        });
                    });
                }
                if let Some(o) = d.obligation {
                    j.arr("obligations", |j| j.item_obj(|j| j.str("id", o)));
                }
                if let Some((code, message)) = d.error {
                    j.obj("error", |j| {
                        j.str("code", code);
                        j.str("message", message);
                    });
                }
            });
            if let Some(a) = d.anomaly {
                j.obj("ext", |j| j.str("anomaly", a));
            }
        });
        j.finish()
    }

    /// `correlation`, `delegation` and `purpose` of an event.
    fn write_context(&self, j: &mut Json, ctx: &Ctx, request_id: Option<&str>, parent: Option<&str>) {
        self.write_context_with(j, ctx, request_id, parent, |_| {});
    }

    /// Like [`Generator::write_context`], with `extra` members written at the
    /// end of `delegation` (a grant).
    fn write_context_with(
        &self,
        j: &mut Json,
        ctx: &Ctx,
        request_id: Option<&str>,
        parent: Option<&str>,
        extra: impl FnOnce(&mut Json),
    ) {
        j.obj("correlation", |j| {
            if let Some(s) = &ctx.session_id {
                j.str("session_id", s);
            }
            if let Some(t) = &ctx.task_id {
                j.str("task_id", t);
            }
            j.str("trace_id", &ctx.trace_id);
            if let Some(r) = request_id {
                j.str("request_id", r);
            }
            if let Some(p) = parent {
                j.str("parent_event_id", p);
            }
        });
        j.obj("delegation", |j| {
            if let Some(p) = ctx.principal {
                j.obj("principal", |j| {
                    j.str("type", "user");
                    j.str("id", &self.principals[p]);
                    j.str("iss", USER_ISS);
                });
            }
            match &ctx.actor {
                Actor::Agents { hops, instance_id, foreign_issuer } => {
                    let actor = &self.agents[hops[0]];
                    let (provider, model, version) = MODELS[actor.model];
                    j.obj("actor", |j| {
                        j.str("id", &actor.id);
                        j.str("iss", AGENT_ISS);
                        j.str("sub_profile", "ai_agent");
                        j.str("workload_id", &actor.workload_id);
                        if hops.len() == 1 {
                            j.str("instance_id", instance_id);
                        } else {
                            j.str("instance_id", &format!("{instance_id}.{}", hops.len()));
                        }
                        j.str("client_id", &actor.client_id);
                        j.str("name", &actor.name);
                        j.obj("model", |j| {
                            j.str("provider", provider);
                            j.str("name", model);
                            j.str("version", version);
                        });
                    });
                    j.arr("chain", |j| {
                        for (i, &h) in hops.iter().enumerate() {
                            let iss = if *foreign_issuer && i + 1 == hops.len() { FOREIGN_ISSUER } else { AGENT_ISS };
                            j.item_obj(|j| {
                                j.uint("depth", i as u64 + 1);
                                j.str("sub", &self.agents[h].id);
                                j.str("iss", iss);
                                j.str("sub_profile", "ai_agent");
                            });
                        }
                    });
                }
                Actor::Service(s) => {
                    let svc = &SERVICES[*s];
                    j.obj("actor", |j| {
                        j.str("id", svc.id);
                        j.str("sub_profile", "service");
                        j.str("workload_id", svc.workload_id);
                    });
                    j.arr("chain", |j| {
                        j.item_obj(|j| {
                            j.uint("depth", 1);
                            j.str("sub", svc.id);
                            j.str("sub_profile", "service");
                        });
                    });
                }
            }
            j.obj("verification", |j| {
                j.str("status", ctx.verification);
                match (ctx.verification, &ctx.actor) {
                    ("unverified", _) => {}
                    ("asserted", _) => j.str("method", "signed_assertion"),
                    (_, Actor::Service(_)) => j.str("method", "mtls_svid"),
                    (_, Actor::Agents { .. }) => j.str("method", "token_exchange"),
                }
                if ctx.verification == "failed" {
                    j.str("error", "audience_mismatch");
                }
            });
            extra(j);
        });
        if let Some(p) = ctx.purpose {
            let purpose = &PURPOSES[p];
            j.obj("purpose", |j| {
                j.str("scope", purpose.scope);
                j.str("description", purpose.description);
            });
        }
    }
}

fn write_head(j: &mut Json, event_type: &str, event_id: &str, time: i64, pdp: &Pdp) {
    j.str("spec_version", "1");
    j.str("event_type", event_type);
    j.str("event_id", event_id);
    j.str("event_time", &rfc3339_millis(time));
    j.obj("pdp", |j| {
        j.str("id", &pdp.id);
        j.str("kind", pdp.kind);
    });
}

/// OPA PDPs name their policy by bundle revision, the others by version.
fn write_policy(j: &mut Json, pdp: &Pdp) {
    let version = pdp.policy_version.as_deref().unwrap_or("v0");
    j.obj("policy", |j| match pdp.kind {
        "opa" => {
            j.obj("bundles", |j| j.obj("authz", |j| j.str("revision", version)));
            j.str("decision_path", "mcp/authz/allow");
        }
        "cerbos" => j.str("version", version),
        _ => {
            j.str("version", version);
            j.str("decision_path", "agents/authz/allow");
        }
    });
}

fn purpose_index(scope: &str) -> usize {
    PURPOSES.iter().position(|p| p.scope == scope).expect("every agent purpose is in PURPOSES")
}

fn tool_server(tool: &str) -> String {
    let family = tool.split('.').next().unwrap_or(tool);
    format!("https://mcp.example/{family}")
}

/// `v2026.01.3`: the year and month of activation, then the PDP's count.
fn policy_version(time: i64, activations: u32) -> String {
    let text = actlog_core::time::format_rfc3339_utc(time);
    let mut parts = text.split('-');
    let year = parts.next().unwrap_or("0000");
    let month = parts.next().unwrap_or("00");
    format!("v{year}.{month}.{activations}")
}

fn hour_of(unix_nanos: i64) -> u32 {
    (unix_nanos.rem_euclid(DAY_NANOS) / HOUR_NANOS) as u32
}

fn risk_text(tenths: u64) -> String {
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// `2026-01-01T08:15:30.123Z` (the time is already whole milliseconds).
fn rfc3339_millis(unix_nanos: i64) -> String {
    let text = actlog_core::time::format_rfc3339_utc(unix_nanos);
    // "...SS.mmmuuunnnZ" -> "...SS.mmmZ"
    format!("{}Z", &text[..text.len() - 7])
}

/// `2026-01-01T08:15:30Z`.
fn rfc3339_seconds(unix_nanos: i64) -> String {
    let text = actlog_core::time::format_rfc3339_utc(unix_nanos);
    format!("{}Z", &text[..text.len() - 11])
}

// ---------------------------------------------------------------------------
// Randomness and JSON.

/// splitmix64: tiny, fast, and good enough for test data. Not for secrets.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is negligible here).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `per_10k / 10 000`.
    fn chance(&mut self, per_10k: u64) -> bool {
        self.below(10_000) < per_10k
    }

    fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }

    fn weighted_pick<T: Copy>(&mut self, items: &[(T, u64)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total);
        for (item, w) in items {
            if r < *w {
                return *item;
            }
            r -= w;
        }
        items[items.len() - 1].0
    }

    /// 64 hex characters (a fake SHA-256).
    fn hex64(&mut self) -> String {
        let mut s = String::with_capacity(64);
        for _ in 0..4 {
            let _ = write!(s, "{:016x}", self.next_u64());
        }
        s
    }

    /// A UUIDv7 for `unix_nanos`: 48 bits of milliseconds, 74 random bits.
    fn uuid7(&mut self, unix_nanos: i64) -> String {
        let ms = (unix_nanos.div_euclid(MILLI_NANOS) as u64) & 0xFFFF_FFFF_FFFF;
        let rand_a = self.next_u64() & 0xFFF;
        let rand_b = self.next_u64() & 0x3FFF_FFFF_FFFF_FFFF;
        format!(
            "{:08x}-{:04x}-7{rand_a:03x}-{:04x}-{:012x}",
            ms >> 16,
            ms & 0xFFFF,
            0x8000 | (rand_b >> 48),
            rand_b & 0xFFFF_FFFF_FFFF
        )
    }

    /// A random UUIDv4 (an OPA decision id).
    fn uuid4(&mut self) -> String {
        let (hi, lo) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFF,
            0x8000 | ((lo >> 48) & 0x3FFF),
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// A compact JSON writer that keeps members in the order written, so the
/// bytes never depend on a map's ordering (or on serde_json features).
#[derive(Debug)]
struct Json {
    out: String,
    /// No separator is needed before the next member or item.
    first: bool,
}

impl Json {
    fn new() -> Json {
        Json { out: String::with_capacity(2048), first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn key(&mut self, key: &str) {
        self.sep();
        actlog_core::canonical::write_string(&mut self.out, key);
        self.out.push(':');
        self.first = true;
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.item_str(value);
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.sep();
        let _ = write!(self.out, "{value}");
    }

    /// A member whose value is already JSON (a number).
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.sep();
        self.out.push_str(json);
    }

    fn obj(&mut self, key: &str, members: impl FnOnce(&mut Json)) {
        self.key(key);
        self.item_obj(members);
    }

    fn arr(&mut self, key: &str, items: impl FnOnce(&mut Json)) {
        self.key(key);
        self.sep();
        self.out.push('[');
        self.first = true;
        items(self);
        self.out.push(']');
        self.first = false;
    }

    fn item_obj(&mut self, members: impl FnOnce(&mut Json)) {
        self.sep();
        self.out.push('{');
        self.first = true;
        members(self);
        self.out.push('}');
        self.first = false;
    }

    fn item_str(&mut self, value: &str) {
        self.sep();
        actlog_core::canonical::write_string(&mut self.out, value);
    }

    fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::OnceLock;

    use serde_json::Value;

    use super::*;

    const SAMPLE_EVENTS: u64 = 20_000;

    /// The 20 000-event sample most tests read (seed 7, defaults otherwise),
    /// parsed once.
    fn sample() -> &'static [(Generated, Value)] {
        static SAMPLE: OnceLock<Vec<(Generated, Value)>> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            Generator::new(GenConfig { seed: 7, events: SAMPLE_EVENTS, ..GenConfig::default() })
                .map(|g| {
                    let v: Value = serde_json::from_slice(&g.payload).expect("payload is JSON");
                    (g, v)
                })
                .collect()
        })
    }

    fn events_of_type<'a>(event_type: &'a str) -> impl Iterator<Item = &'static Value> + 'a {
        sample().iter().map(|(_, v)| v).filter(move |v| v["event_type"] == event_type)
    }

    fn anomaly(v: &Value) -> Option<&str> {
        v["ext"]["anomaly"].as_str()
    }

    fn hour(v: &Value) -> u32 {
        v["event_time"].as_str().unwrap()[11..13].parse().unwrap()
    }

    fn time(v: &Value) -> i64 {
        actlog_core::time::parse_rfc3339_utc(v["event_time"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn same_config_gives_identical_bytes_and_another_seed_does_not() {
        // Two generators with one config, compared byte for byte; a third
        // with another seed must differ.
        let cfg = GenConfig { seed: 42, events: 5_000, ..GenConfig::default() };
        let a: Vec<Generated> = Generator::new(cfg.clone()).collect();
        let b: Vec<Generated> = Generator::new(cfg.clone()).collect();
        assert_eq!(a.len(), 5_000);
        assert_eq!(a, b);
        let c: Vec<Generated> = Generator::new(GenConfig { seed: 43, ..cfg }).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn every_payload_validates_and_names_its_signing_pdp() {
        // Each payload goes through the ledger's own validator; ids are
        // unique (a repeat would be a conflict or a silent duplicate).
        assert_eq!(sample().len() as u64, SAMPLE_EVENTS);
        let mut ids = BTreeSet::new();
        for (g, v) in sample() {
            let event = actlog_core::event::validate(&g.payload)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&g.payload)));
            assert_eq!(event.fields.pdp_id, pdp_id(g.pdp));
            assert!(ids.insert(event.fields.event_id.clone()), "repeated event_id {}", event.fields.event_id);
            assert!(!event.fields.event_id.starts_with(actlog_core::ingest::RESERVED_EVENT_ID_PREFIX));
            assert!(!v["event_type"].as_str().unwrap().starts_with("ledger."));
        }
    }

    #[test]
    fn deny_rate_is_about_eight_percent_of_decisions() {
        let decisions: Vec<&Value> = events_of_type("authz.decision").collect();
        let denies = decisions.iter().filter(|v| v["decision"]["effect"] == "deny").count();
        let rate = denies as f64 / decisions.len() as f64;
        assert!((0.06..=0.10).contains(&rate), "deny rate {rate:.4} ({denies} of {})", decisions.len());
    }

    #[test]
    fn outcomes_come_after_their_decisions_and_soon() {
        // Every outcome references a decision yielded earlier; most follow
        // within a few events, and none is stamped before its decision.
        let mut decisions: HashMap<&str, (usize, i64)> = HashMap::new();
        let mut distances = Vec::new();
        for (i, (_, v)) in sample().iter().enumerate() {
            match v["event_type"].as_str().unwrap() {
                "authz.decision" => {
                    decisions.insert(v["event_id"].as_str().unwrap(), (i, time(v)));
                }
                "authz.outcome" => {
                    let id = v["outcome"]["decision_event_id"].as_str().unwrap();
                    let (at, decided) = *decisions.get(id).unwrap_or_else(|| panic!("outcome {i} before {id}"));
                    assert!(at < i);
                    assert!(time(v) > decided);
                    assert_eq!(v["correlation"]["parent_event_id"].as_str(), Some(id));
                    distances.push(i - at);
                }
                _ => {}
            }
        }
        assert!(distances.len() > decisions.len() / 2, "outcomes for most decisions");
        let near = distances.iter().filter(|d| **d <= 10).count();
        assert!(near * 10 >= distances.len() * 9, "{near} of {} outcomes within 10 events", distances.len());
    }

    #[test]
    fn every_anomaly_is_planted() {
        let found: BTreeSet<&str> = sample().iter().filter_map(|(_, v)| anomaly(v)).collect();
        let listed: BTreeSet<&str> = ANOMALIES.iter().map(|(name, _)| *name).collect();
        assert_eq!(found, listed);
    }

    #[test]
    fn only_planted_events_carry_an_anomalys_signature() {
        // Evidence queries look for the signature, not for ext.anomaly: each
        // signature must match exactly the planted events.
        let mut effects: HashMap<&str, &str> = HashMap::new();
        // task id -> (denies, index of the last one)
        let mut burst_tasks: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (i, (_, v)) in sample().iter().enumerate() {
            let mark = anomaly(v);
            let event_type = v["event_type"].as_str().unwrap();
            let allowed = v["decision"]["effect"] == "allow";
            if event_type == "authz.decision" {
                effects.insert(v["event_id"].as_str().unwrap(), v["decision"]["effect"].as_str().unwrap());
                let risk = v["trust"]["risk_score"].as_f64();
                let high_risk = allowed && risk.is_some_and(|r| r >= HIGH_RISK_MIN as f64);
                assert_eq!(high_risk, mark == Some(HIGH_RISK_ALLOWED), "{v}");
                if allowed && mark != Some(HIGH_RISK_ALLOWED) {
                    assert!(risk.is_none_or(|r| r < ALLOW_RISK_MAX as f64), "{v}");
                }
                let failed = v["delegation"]["verification"]["status"] == "failed";
                assert_eq!(failed && allowed, mark == Some(FAILED_VERIFICATION_ALLOWED), "{v}");
                if let (Some(tool), Some(scope)) =
                    (v["request"]["tool"]["name"].as_str(), v["purpose"]["scope"].as_str())
                {
                    let outside = !PURPOSES[purpose_index(scope)].tools.contains(&tool);
                    assert_eq!(outside && allowed, mark == Some(SCOPE_VIOLATION), "{v}");
                }
                if mark == Some(DENY_BURST) {
                    assert_eq!(v["decision"]["effect"], "deny");
                    let entry = burst_tasks.entry(v["correlation"]["task_id"].as_str().unwrap()).or_default();
                    *entry = (entry.0 + 1, i);
                }
            }
            if event_type == "authz.outcome" {
                let status = v["outcome"]["status"].as_str().unwrap();
                let decided = effects[v["outcome"]["decision_event_id"].as_str().unwrap()];
                assert_eq!(decided == "deny" && status == "executed", mark == Some(DENY_THEN_EXECUTED), "{v}");
                assert_eq!(status == "overridden", mark == Some(OVERRIDDEN_OUTCOME), "{v}");
                if decided != "allow" {
                    assert!(["blocked", "executed", "overridden"].contains(&status), "{v}");
                }
            }
            if let Some(chain) = v["delegation"]["chain"].as_array() {
                let issuers: BTreeSet<&str> = chain.iter().filter_map(|h| h["iss"].as_str()).collect();
                assert_eq!(issuers.len() > 1, mark == Some(FOREIGN_ISSUER_CHAIN), "{v}");
                if mark == Some(FOREIGN_ISSUER_CHAIN) {
                    assert_eq!(chain.len(), 4);
                    assert_eq!(chain[3]["iss"], FOREIGN_ISSUER);
                }
            }
            if v["delegation"]["principal"]["id"] == OFF_HOURS_PRINCIPAL_ID {
                let off = !(8..=17).contains(&hour(v));
                assert_eq!(off, mark == Some(OFF_HOURS_PRINCIPAL), "{v}");
                if off {
                    assert_eq!(hour(v), 3, "{v}");
                }
            }
        }
        assert!(!burst_tasks.is_empty());
        for (task, (n, last)) in burst_tasks {
            // A burst may be cut short by the end of the sample.
            let cut = last + 40 >= sample().len();
            assert!(n <= 14 && (n >= 10 || cut), "burst of {n} denies in {task}");
        }
    }

    #[test]
    fn chain_depths_one_to_four_appear_and_sub_agent_calls_link_to_the_orchestrator() {
        // A sub-agent call (depth > 1) names the orchestrator's earlier
        // decision in the same task as its parent.
        let mut decisions: HashMap<&str, &Value> = HashMap::new();
        let mut depths = BTreeMap::new();
        for v in events_of_type("authz.decision") {
            let chain = v["delegation"]["chain"].as_array().unwrap();
            *depths.entry(chain.len()).or_insert(0usize) += 1;
            if chain.len() > 1 {
                let parent = decisions[v["correlation"]["parent_event_id"].as_str().unwrap()];
                assert_eq!(parent["correlation"]["task_id"], v["correlation"]["task_id"]);
                assert_eq!(parent["delegation"]["actor"]["id"], chain[chain.len() - 1]["sub"]);
                assert_eq!(parent["decision"]["effect"], "allow");
            }
            decisions.insert(v["event_id"].as_str().unwrap(), v);
        }
        assert_eq!(depths.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4], "{depths:?}");
    }

    #[test]
    fn event_time_follows_position_over_the_configured_days() {
        // Non-outcome events never go back in time; everything lies within
        // [start, start + days) (outcomes may run a few seconds past).
        let cfg = GenConfig::default();
        let end = cfg.start_unix_nanos + i64::from(cfg.days) * DAY_NANOS;
        let mut last = i64::MIN;
        let mut by_hour = [0u64; 24];
        for (_, v) in sample() {
            let t = time(v);
            assert!(t >= cfg.start_unix_nanos && t < end + 10 * SECOND_NANOS, "{v}");
            by_hour[hour(v) as usize] += 1;
            if v["event_type"] != "authz.outcome" {
                assert!(t >= last, "{v}");
                last = t;
            }
        }
        assert!(last > end - DAY_NANOS, "the events reach the last day");
        assert!(by_hour[10] > 4 * by_hour[3], "busier by day than by night: {by_hour:?}");
    }

    #[test]
    fn the_event_mix_is_plausible() {
        let mut mix: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, v) in sample() {
            *mix.entry(v["event_type"].as_str().unwrap()).or_default() += 1;
        }
        let share = |t: &str| mix.get(t).copied().unwrap_or(0) as f64 / SAMPLE_EVENTS as f64;
        eprintln!("event mix over {SAMPLE_EVENTS}: {mix:?}");
        assert!((0.45..=0.62).contains(&share("authz.decision")), "{mix:?}");
        assert!((0.33..=0.48).contains(&share("authz.outcome")), "{mix:?}");
        for t in ["delegation.granted", "delegation.revoked", "policy.activated", "agent.registered"] {
            assert!(mix.get(t).is_some_and(|n| *n > 0), "no {t}: {mix:?}");
        }
    }

    #[test]
    fn small_and_odd_configurations_still_give_exactly_n_valid_events() {
        for cfg in [
            GenConfig { events: 0, ..GenConfig::default() },
            GenConfig { events: 1, pdps: 0, days: 0, ..GenConfig::default() },
            GenConfig { events: 300, pdps: 20, days: 1, ..GenConfig::default() },
            GenConfig { events: 2_000, pdps: 1, days: 365, seed: u64::MAX, ..GenConfig::default() },
        ] {
            let all: Vec<Generated> = Generator::new(cfg.clone()).collect();
            assert_eq!(all.len() as u64, cfg.events, "{cfg:?}");
            for g in &all {
                assert!(g.pdp < cfg.pdps.max(1));
                actlog_core::event::validate(&g.payload).unwrap();
            }
        }
    }

    #[test]
    fn pdp_ids_and_seeds_are_distinct_and_stable() {
        let ids: BTreeSet<String> = (0..40).map(pdp_id).collect();
        assert_eq!(ids.len(), 40);
        assert_eq!(pdp_id(0), "pdp-eu-1");
        assert_eq!(pdp_id(1), "opa-gw-2");
        assert_eq!(pdp_seed(1, 0), pdp_seed(1, 0));
        let seeds: BTreeSet<[u8; 32]> =
            (0..40).map(|i| pdp_seed(1, i)).chain((0..40).map(|i| pdp_seed(2, i))).collect();
        assert_eq!(seeds.len(), 80);
    }

    #[test]
    fn the_catalog_is_consistent() {
        for t in AGENT_TYPES {
            for p in t.purposes {
                purpose_index(p);
            }
        }
        for p in PURPOSES {
            assert!(SENSITIVE_TOOLS.iter().any(|t| !p.tools.contains(t)), "{} has every sensitive tool", p.scope);
        }
        let names: BTreeSet<&str> = FIRST_NAMES.iter().copied().collect();
        assert_eq!(names.len(), FIRST_NAMES.len());
        let g = Generator::new(GenConfig::default());
        assert_eq!(g.principals[OFF_HOURS_INDEX], OFF_HOURS_PRINCIPAL_ID);
        assert_eq!(g.principals.iter().filter(|p| *p == OFF_HOURS_PRINCIPAL_ID).count(), 1);
    }

    #[test]
    fn the_json_writer_escapes_strings() {
        let mut j = Json::new();
        j.item_obj(|j| {
            j.str("a\"b", "line\nbreak\\ \u{1}");
            j.arr("x", |j| {
                j.item_str("1");
                j.item_obj(|j| j.uint("n", 2));
            });
        });
        let text = String::from_utf8(j.finish()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["a\"b"], "line\nbreak\\ \u{1}");
        assert_eq!(v["x"][1]["n"], 2);
    }
}
