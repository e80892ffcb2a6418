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
use sqllogictest::{DBOutput, DefaultColumnType};

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
