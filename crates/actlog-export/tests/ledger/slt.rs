//! Runs the sqllogictest suite (`tests/slt/*.slt` at the repository root)
//! against the deterministic fixture ledger.
//!
//! `SET actlog.use_index = false` in a file turns index pushdown off for the
//! following statements, so a file can show that pushdown never changes an
//! answer. Errors surface as `<code>: <message>`, so `query error sql_refused`
//! matches a refusal by its stable code.
//!
//! `ACTLOG_SLT_COMPLETE=1` rewrites the expected results from the engine;
//! review the diff before committing it.

use crate::common;

use std::path::PathBuf;

use actlog_query::datafusion::arrow::datatypes::DataType;
use actlog_query::{Engine, QueryError, QueryOptions};
use async_trait::async_trait;
use sqllogictest::{ColumnType, DBOutput, DefaultColumnType};

struct Db {
    engine: Engine,
    opts: QueryOptions,
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        if let Some(v) = actlog_query::engine::parse_use_index(sql) {
            self.opts.use_index = v;
            return Ok(DBOutput::StatementComplete(0));
        }
        let out = self.engine.query(sql, &self.opts).await?;
        let types = out
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let rows = actlog_query::output::to_text_rows(&out.batches)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| match c {
                        None => "NULL".to_string(),
                        Some(s) if s.is_empty() => "(empty)".to_string(),
                        Some(s) => s,
                    })
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "actlog"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = common::fixture(tmp.path());
    let files = slt_files();
    assert!(!files.is_empty(), "tests/slt has .slt files");
    let complete = std::env::var("ACTLOG_SLT_COMPLETE").is_ok_and(|v| v == "1");
    let mut queries = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        queries += text.lines().filter(|l| l.starts_with("query") || l.starts_with("statement")).count();
        let e = engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = e.clone();
            async move { Ok(Db { engine, opts: QueryOptions::default() }) }
        });
        if complete && f.ends_with(CONTROLS_SLT) {
            continue; // made by evidence_control_queries_are_pinned_by_the_slt_suite
        }
        if complete {
            runner
                .update_test_file(
                    f,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else {
            runner.run_file_async(f).await.unwrap_or_else(|e| panic!("{}", e.display(true)));
        }
    }
    assert!(queries >= 50, "the suite has at least 50 queries (found {queries})");
}

/// The pushdown file states each lookup twice, with the index and without;
/// the two halves must expect the very same results, or the suite would
/// only show that each path agrees with itself.
#[test]
fn pushdown_file_expects_the_same_answers_both_ways() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt/06_pushdown.slt");
    let text = std::fs::read_to_string(path).unwrap();
    let (with, without) =
        text.split_once("statement ok\nSET actlog.use_index = false\n").expect("the file turns the index off");
    let without = without.split("statement ok\nSET actlog.use_index = true").next().unwrap();
    let records = |s: &str| -> Vec<String> {
        s.split("\n\n").map(str::trim).filter(|r| r.starts_with("query")).map(str::to_string).collect()
    };
    let (a, b) = (records(with), records(without));
    assert!(a.len() >= 8, "at least 8 lookups");
    assert_eq!(a, b);
    assert!(a.iter().all(|r| r.lines().count() > 3), "every lookup expects at least one row");
}

/// The evidence controls' queries, pinned on the fixture.
const CONTROLS_SLT: &str = "09_evidence_controls.slt";

/// Every query of the evidence control files (`actlog-export/src/evidence/sql/`),
/// filled in for the fixture with a window that has a start (so the queries
/// that need `--from` run too): a header comment and the SQL.
fn control_queries() -> Vec<(String, String)> {
    use actlog_export::evidence::spec::{CONTROLS, Kind, render};
    // Day 10 to past the end of the generated month: later days have
    // agent-tool pairs seen before, and the ledger's own records (stamped
    // with the wall clock) stay out.
    const DAY: i64 = 86_400_000_000_000;
    let (from, to) = (actlog_gen::DEFAULT_START_UNIX_NANOS + 10 * DAY, actlog_gen::DEFAULT_START_UNIX_NANOS + 31 * DAY);
    let mut out = Vec::new();
    for c in CONTROLS.iter() {
        for it in &c.items {
            let kind = match it.kind {
                Kind::Metric => "metric",
                Kind::Text => "text",
                Kind::Details => "details",
                Kind::Reuse | Kind::Note(_) => continue,
            };
            let header = format!("# {} ({}) {kind}: {}", c.id, c.file, it.name);
            out.push((header, render(&it.sql, common::FIXTURE_EVENTS, Some(from), Some(to))));
        }
    }
    out
}

/// The evidence control files are pinned: `09_evidence_controls.slt` holds
/// every control query, in order, with its answer on the fixture, and the
/// suite checks the answers. A changed query fails here until the file is
/// made again (`ACTLOG_SLT_COMPLETE=1`, which also reruns the answers) and
/// its diff reviewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_control_queries_are_pinned_by_the_slt_suite() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt").join(CONTROLS_SLT);
    let queries = control_queries();
    assert!(queries.len() >= 40, "the controls run at least 40 queries ({})", queries.len());
    if std::env::var("ACTLOG_SLT_COMPLETE").is_ok_and(|v| v == "1") {
        let tmp = tempfile::tempdir().unwrap();
        let engine = common::fixture(tmp.path());
        let mut db = Db { engine: engine.clone(), opts: QueryOptions::default() };
        let mut text = String::from(
            "# Generated from crates/actlog-export/src/evidence/sql/ by the test\n\
             # evidence_control_queries_are_pinned_by_the_slt_suite (ACTLOG_SLT_COMPLETE=1).\n\
             # Each evidence control query on the fixture, window 2026-01-11 to 2026-02-01.\n",
        );
        for (header, sql) in &queries {
            if sql.contains("received_at") {
                text += &format!(
                    "\n{header}\n# (its answer depends on when the fixture was appended: run, not compared)\nstatement ok\n{sql}\n"
                );
                continue;
            }
            let types = match sqllogictest::AsyncDB::run(&mut db, sql).await {
                Ok(DBOutput::Rows { types, .. }) => types.iter().map(|t| t.to_char()).collect::<String>(),
                Ok(_) => panic!("{header}: not a query"),
                Err(e) => panic!("{header}: {e}"),
            };
            text += &format!("\n{header}\nquery {types} rowsort\n{sql}\n----\n");
        }
        std::fs::write(&path, text).unwrap();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok(Db { engine, opts: QueryOptions::default() }) }
        });
        runner
            .update_test_file(
                &path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pinned: Vec<(String, String)> = text
        .split("\n\n")
        .filter_map(|record| {
            let mut lines = record.trim().lines();
            let header = lines.next()?.to_string();
            let mut kind = lines.next()?;
            if kind.starts_with("# ") {
                kind = lines.next()?;
            }
            (kind.starts_with("query ") || kind == "statement ok").then_some(())?;
            let sql: Vec<&str> = lines.take_while(|l| *l != "----").collect();
            Some((header, sql.join("\n")))
        })
        .collect();
    assert_eq!(
        pinned.iter().map(|(h, _)| h).collect::<Vec<_>>(),
        queries.iter().map(|(h, _)| h).collect::<Vec<_>>(),
        "{CONTROLS_SLT} lists the control queries in order (rerun with ACTLOG_SLT_COMPLETE=1)"
    );
    for ((header, want), (_, got)) in queries.iter().zip(&pinned) {
        assert_eq!(
            got, want,
            "{header}: the pinned query differs from the control file (rerun with ACTLOG_SLT_COMPLETE=1)"
        );
    }
}
