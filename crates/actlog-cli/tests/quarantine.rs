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
    ("tower-http", "actlog-server"),
    ("pgwire", "actlog-server"),
    ("clap", "actlog-cli"),
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
    fn id_of(&self, name: &str) -> Option<&String> {
        self.workspace.iter().find(|id| self.names[*id] == name)
    }
    fn direct(&self, id: &str) -> BTreeSet<String> {
        self.deps[id].iter().filter(|(_, n)| *n).map(|(d, _)| self.names[d].clone()).collect()
    }
    fn closure(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            for (d, normal) in &self.deps[&cur] {
                if *normal && seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen.iter().map(|d| self.names[d].clone()).collect()
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

#[test]
fn the_core_reaches_no_io_async_or_heavy_crate() {
    let g = graph();
    let core = g.id_of("actlog-core").expect("actlog-core is a workspace member");
    let closure = g.closure(core);
    let bad: Vec<_> = CORE_FORBIDDEN.iter().filter(|c| closure.contains(**c)).collect();
    assert!(bad.is_empty(), "actlog-core reaches {bad:?}");
    // The check itself is live: the store does reach RocksDB.
    let store = g.id_of("actlog-store").unwrap();
    assert!(g.closure(store).contains("librocksdb-sys"));
}
