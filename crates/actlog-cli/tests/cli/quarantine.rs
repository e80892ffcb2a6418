//! Dependency quarantine: each heavy dependency lives in one crate, and the
//! pure core reaches none of them, even transitively. Read from
//! `cargo metadata`, so a new `[dependencies]` line that breaks the rule
//! fails here.

use std::collections::{BTreeSet, HashMap};

/// (heavy crate, the only workspace crate allowed to depend on it directly)
const QUARANTINE: &[(&str, &str)] = &[
    ("rocksdb", "actlog-store"),
    ("librocksdb-sys", "actlog-store"),
    ("datafusion", "actlog-query"),
    ("axum", "actlog-server"),
    ("tower", "actlog-server"),
    ("tower-http", "actlog-server"),
    ("pgwire", "actlog-server"),
    ("opentelemetry-proto", "actlog-server"),
    ("clap", "actlog-cli"),
    ("ballista", "actlog-cluster"),
    ("ballista-core", "actlog-cluster"),
    ("ballista-scheduler", "actlog-cluster"),
    ("ballista-executor", "actlog-cluster"),
    // The random source, behind `actlog_store::random` (see clippy.toml).
    ("getrandom", "actlog-store"),
];

/// Crates the core must not reach at all (it does no IO and no async).
const CORE_FORBIDDEN: &[&str] =
    &["rocksdb", "librocksdb-sys", "datafusion", "arrow", "axum", "hyper", "tokio", "clap", "rayon", "getrandom"];

struct Graph {
    names: HashMap<String, String>,
    deps: HashMap<String, Vec<(String, bool)>>,
    workspace: Vec<String>,
}

fn graph() -> Graph {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string()))
        .collect();
    let mut deps = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_string();
        let list = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                // Normal (non-dev, non-build) edges only: tests may use anything.
                let normal = d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
                (d["pkg"].as_str().unwrap().to_string(), normal)
            })
            .collect();
        deps.insert(id, list);
    }
    let workspace =
        meta["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    Graph { names, deps, workspace }
}

impl Graph {
    fn direct(&self, id: &str) -> BTreeSet<String> {
        self.deps[id].iter().filter(|(_, n)| *n).map(|(d, _)| self.names[d].clone()).collect()
    }
}

#[test]
fn heavy_dependencies_live_in_one_crate_each() {
    let g = graph();
    let mut violations = Vec::new();
    for member in &g.workspace {
        let name = &g.names[member];
        let direct = g.direct(member);
        for (heavy, owner) in QUARANTINE {
            if direct.contains(*heavy) && name != owner {
                violations.push(format!("{name} depends on {heavy}; only {owner} may"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The packages `package` reaches through normal edges, built alone with
/// these feature flags (`cargo tree` resolves features per package, where
/// `cargo metadata` unifies them over the workspace).
fn reaches(package: &str, flags: &[&str]) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .args(flags)
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .filter(|n| n != package)
        .collect()
}

#[test]
fn the_core_reaches_no_io_async_or_heavy_crate() {
    let default = reaches("actlog-core", &[]);
    let bad: Vec<_> = CORE_FORBIDDEN.iter().filter(|c| default.contains(**c)).collect();
    assert!(bad.is_empty(), "actlog-core reaches {bad:?}");
    // With every feature: Arrow's arrays and rayon (the `arrow` and
    // `parallel` features) and still no IO, async or heavy crate. (Arrow's
    // hash maps seed from getrandom; core itself never calls it: clippy.toml.)
    let all = reaches("actlog-core", &["--all-features"]);
    assert!(all.contains("arrow-array") && all.contains("rayon"), "the features are live");
    let allowed = ["arrow", "rayon", "getrandom"];
    let bad: Vec<_> = CORE_FORBIDDEN.iter().filter(|c| !allowed.contains(c) && all.contains(**c)).collect();
    assert!(bad.is_empty(), "actlog-core with all features reaches {bad:?}");
}

#[test]
fn the_offline_bundle_verifier_links_no_rocksdb_or_datafusion() {
    let verifier = reaches("actlog-export", &["--no-default-features"]);
    let bad: Vec<_> = ["rocksdb", "librocksdb-sys", "datafusion", "tokio", "axum", "actlog-store", "actlog-query"]
        .into_iter()
        .filter(|c| verifier.contains(*c))
        .collect();
    assert!(bad.is_empty(), "actlog-export without `write` reaches {bad:?}");
    assert!(verifier.contains("parquet") && verifier.contains("actlog-core"), "it does read bundles");
    // The check is live: with `write` it reaches the store.
    assert!(reaches("actlog-export", &[]).contains("librocksdb-sys"));
}

/// Every module-level `const` that core defines is defined nowhere else: a
/// limit or a list of the ledger's acceptance rules has one home.
#[test]
fn only_the_core_defines_its_constants() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let consts = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("const ").and_then(|r| r.split(':').next()).map(|n| n.trim().to_string())
            })
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .collect()
    };
    let mut core_files = Vec::new();
    sources(&root.join("crates/actlog-core/src"), &mut core_files);
    let core: BTreeSet<String> = core_files.iter().flat_map(|f| consts(&std::fs::read_to_string(f).unwrap())).collect();
    assert!(core.contains("EVENT_BYTES_MAX") || core.len() > 20, "core's constants are read: {core:?}");
    let mut dupes = Vec::new();
    for krate in ["actlog-store", "actlog-query", "actlog-export", "actlog-server", "actlog-cli"] {
        let mut files = Vec::new();
        sources(&root.join("crates").join(krate).join("src"), &mut files);
        for f in files {
            for c in consts(&std::fs::read_to_string(&f).unwrap()) {
                if core.contains(&c) {
                    dupes.push(format!("{} defines {c}, which core defines", f.display()));
                }
            }
        }
    }
    assert!(dupes.is_empty(), "{}", dupes.join("\n"));
}

/// The rules of what the ledger accepts are core's alone: no crate above it
/// defines again a function of core's acceptance rules (the checks of
/// envelopes, batches and key and token records), or names a role by a
/// string of its own instead of `Role`.
#[test]
fn only_the_core_defines_acceptance_rules() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let core_ingest = std::fs::read_to_string(root.join("crates/actlog-core/src/ingest.rs")).unwrap();
    let core_ledger = std::fs::read_to_string(root.join("crates/actlog-core/src/ledger.rs")).unwrap();
    let rules = [
        "check_envelopes",
        "check_envelopes_parallel",
        "all_or_nothing",
        "repeats",
        "check_record_name",
        "check_record_pdp_id",
        "check_record_role",
        "check_chunk",
        "valid_name",
    ];
    for r in &rules[..8] {
        assert!(
            core_ingest.contains(&format!("pub fn {r}(")) || core_ledger.contains(&format!("pub fn {r}(")),
            "core defines {r}"
        );
    }
    let roles = ["\"ingest\"", "\"query\"", "\"auditor\"", "\"admin\""];
    let mut found = Vec::new();
    for dir in [
        "crates/actlog-store/src",
        "crates/actlog-query/src",
        "crates/actlog-export/src",
        "crates/actlog-server/src",
        "crates/actlog-cli/src",
        "tools/actlog-gen/src",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                // Only the code, not its unit tests.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (n, line) in code.lines().enumerate() {
                    for r in rules {
                        if line.contains(&format!("fn {r}(")) || line.contains(&format!("fn {r}<")) {
                            found.push(format!("{}:{}: defines {r}, one of core's rules", p.display(), n + 1));
                        }
                    }
                    for r in roles {
                        if line.contains(r) {
                            found.push(format!("{}:{}: names the role {r} as a string; use Role", p.display(), n + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
