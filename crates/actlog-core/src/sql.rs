//! What a SQL query may be: the rules every SQL surface (the CLI,
//! `POST /v1/sql`, the PostgreSQL endpoint) applies to a parsed statement
//! before any planner sees it.
//!
//! - [`check_depth`] refuses expressions nested deeper than a limit
//!   (`sql_depth_max`), so the planner is never asked to recurse through
//!   them.
//! - [`check_statement`] then applies the sandbox: only `SELECT` (and
//!   `EXPLAIN SELECT`), only the ledger's tables, no file or URL tables, and
//!   only the table functions in [`TABLE_FUNCTIONS`].
//!
//! Pure: the statement comes from sqlparser (the parser DataFusion uses),
//! so these rules are fuzzed without building the query engine.

use std::ops::ControlFlow;

pub use sqlparser;
use sqlparser::ast::{Expr, Query, Statement, TableFactor, Visit, Visitor};

/// A refused or failed query, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    /// `sql_refused`, `sql_invalid`, `sql_time_limit`, `sql_memory_limit`,
    /// `sql_too_deep`, `sql_too_large`, `sql_result_too_large`, `sql_busy`,
    /// `storage_corruption` or `internal`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl QueryError {
    /// `sql_refused`: the sandbox does not allow it.
    pub fn refused(m: impl Into<String>) -> QueryError {
        QueryError { code: "sql_refused", message: m.into() }
    }
    /// `sql_invalid`: not a query the engine can run.
    pub fn invalid(m: impl Into<String>) -> QueryError {
        QueryError { code: "sql_invalid", message: m.into() }
    }
}

/// Tables a query may name (besides its own CTEs and `information_schema`).
pub const TABLES: &[&str] = &["events", "delegation_hops", "checkpoints", "producer_keys", "decision_chains"];
/// Table functions a query may call: none reads a file or a URL.
pub const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

struct Depth {
    now: usize,
    max: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > self.max { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }
    fn leave(&mut self) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

/// Counts expressions and (sub)queries alike: each is a level the planner
/// recurses through.
impl Visitor for Depth {
    type Break = ();
    fn pre_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.leave()
    }
    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.leave()
    }
}

/// Refuses a statement whose expressions (and subqueries) nest deeper than
/// `max`. The walk stops at the first level past it, so it never recurses
/// more than `max` levels itself.
pub fn check_depth(s: &Statement, max: usize) -> Result<(), QueryError> {
    let mut d = Depth { now: 0, max };
    if s.visit(&mut d).is_break() {
        return Err(QueryError {
            code: "sql_too_deep",
            message: format!(
                "the query nests expressions deeper than the limit sql_depth_max = {max}; \
                 write long OR chains as `col IN (...)` and split deep expressions"
            ),
        });
    }
    Ok(())
}

struct Sandbox {
    refused: Option<QueryError>,
}

impl Visitor for Sandbox {
    type Break = ();
    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = t {
            let text = name.to_string();
            let last = name.0.last().map(|p| p.to_string().to_ascii_lowercase()).unwrap_or_default();
            if text.contains(['/', ':', '\\', '\'']) || (text.contains('.') && text.contains('"')) {
                self.refused = Some(QueryError::refused(format!(
                    "file and URL tables are refused (`{text}`): queries read only the ledger's tables: {}",
                    TABLES.join(", ")
                )));
                return ControlFlow::Break(());
            }
            if args.is_some() && !TABLE_FUNCTIONS.contains(&last.as_str()) {
                self.refused = Some(QueryError::refused(format!(
                    "table function `{text}` is refused: only {} may be called",
                    TABLE_FUNCTIONS.join(", ")
                )));
                return ControlFlow::Break(());
            }
        }
        if let TableFactor::Function { name, .. } = t {
            self.refused = Some(QueryError::refused(format!("table function `{name}` is refused")));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// The depth limit, then the sandbox, on one parsed statement. Depth comes
/// first, so the sandbox's own walk is bounded too.
pub fn check_statement(s: &Statement, depth_max: usize) -> Result<(), QueryError> {
    check_depth(s, depth_max)?;
    let class = match s {
        Statement::Query(_) => {
            let mut v = Sandbox { refused: None };
            let _ = s.visit(&mut v);
            return v.refused.map_or(Ok(()), Err);
        }
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => "DML is refused: the ledger is append-only and changes only through signed ingest",
        Statement::Copy { .. } => "COPY is refused: queries neither read nor write files",
        Statement::Set(_) => {
            "SET is refused here; the only session setting is `SET actlog.use_index = true|false` in `actlog sql` and psql"
        }
        _ if is_ddl(s) => "DDL is refused: the ledger's tables and view are fixed; use WITH for a named subquery",
        _ => "only SELECT (and EXPLAIN SELECT) statements are allowed: the SQL endpoint is read-only",
    };
    Err(QueryError::refused(format!("{class} (statement: `{}`)", first_words(&s.to_string()))))
}

fn is_ddl(s: &Statement) -> bool {
    let t = s.to_string().to_ascii_uppercase();
    ["CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME", "COMMENT"].iter().any(|k| t.starts_with(k))
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    fn check(sql: &str, depth: usize) -> Result<(), QueryError> {
        let mut st = Parser::parse_sql(&GenericDialect {}, sql).expect("parses");
        check_statement(&st.pop().expect("one statement"), depth)
    }

    #[test]
    fn selects_over_the_ledger_pass() {
        check("SELECT seq FROM events WHERE seq IN (1, 2) ORDER BY seq", 64).unwrap();
        check("SELECT * FROM range(3)", 64).unwrap();
    }

    #[test]
    fn files_functions_and_writes_are_refused() {
        for (sql, want) in [
            ("SELECT * FROM '/etc/passwd'", "file and URL tables"),
            ("SELECT * FROM read_parquet('x')", "table function `read_parquet`"),
            ("DELETE FROM events", "DML is refused"),
            ("COPY events TO 'x'", "COPY is refused"),
            ("DROP TABLE events", "DDL is refused"),
            ("SHOW TABLES", "only SELECT"),
        ] {
            let e = check(sql, 64).unwrap_err();
            assert_eq!(e.code, "sql_refused", "{sql}");
            assert!(e.message.contains(want), "{sql}: {}", e.message);
        }
    }

    #[test]
    fn depth_counts_a_flat_or_chain() {
        let chain = (0..40).map(|i| format!("seq = {i}")).collect::<Vec<_>>().join(" OR ");
        let sql = format!("SELECT seq FROM events WHERE {chain}");
        check(&sql, 64).unwrap();
        assert_eq!(check(&sql, 20).unwrap_err().code, "sql_too_deep");
    }
}
