//! A deterministic fixture ledger built by the generator through the real
//! append path, with small segments so that queries read sealed segments
//! and the live tail together.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use actlog_query::{Engine, EngineOptions, QueryOptions};
use actlog_store::{Options, Store};

/// Events the fixture generator writes.
pub const FIXTURE_EVENTS: u64 = 2_500;
/// Events per segment in the fixture: two sealed segments and a tail.
pub const FIXTURE_SEGMENT_EVENTS: u64 = 1_000;

/// Builds the fixture ledger in `dir` and opens an engine over it.
pub fn fixture(dir: &Path) -> Engine {
    let store = Store::init(dir, [7u8; 32], Some("fixture.actlog.test".into()), Options::default()).unwrap();
    let cfg = actlog_gen::GenConfig { seed: 42, events: FIXTURE_EVENTS, pdps: 3, ..actlog_gen::GenConfig::default() };
    actlog_gen::build_ledger(&store, &cfg, 256, |_| {}).unwrap();
    store.checkpoint_now().unwrap();
    let store = Arc::new(store);
    let engine =
        Engine::open(store, EngineOptions { segment_events: FIXTURE_SEGMENT_EVENTS, ..EngineOptions::default() })
            .unwrap();
    assert_eq!(engine.seal().unwrap(), 2, "two full segments are sealed");
    engine
}

/// Runs a query and returns its rows as text (NULL as "NULL").
pub async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    rows_with(engine, sql, QueryOptions::default()).await
}

/// Same, with options.
pub async fn rows_with(engine: &Engine, sql: &str, opts: QueryOptions) -> Vec<Vec<String>> {
    let out = engine.query(sql, &opts).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    actlog_query::output::to_text_rows(&out.batches)
        .into_iter()
        .map(|r| r.into_iter().map(|c| c.unwrap_or_else(|| "NULL".into())).collect())
        .collect()
}
