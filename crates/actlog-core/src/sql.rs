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
//! - [`ParseBudget`] is the dialect every surface parses with: sqlparser's
//!   generic dialect (DataFusion's default), except that it counts the
//!   expressions the parser begins, retries included, and stops the parse
//!   past a budget proportional to the text. sqlparser backtracks, and some
//!   inputs of a hundred bytes took it seconds, a few more bytes minutes
//!   (found by the `sql` fuzz target).
//!
//! Pure: the statement comes from sqlparser (the parser DataFusion uses),
//! so these rules are fuzzed without building the query engine.

use std::any::TypeId;
use std::cell::Cell;
use std::ops::ControlFlow;

pub use sqlparser;
use sqlparser::ast::{Expr, Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{Dialect, GenericDialect};
use sqlparser::parser::{Parser, ParserError};

/// A refused or failed query, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    /// `sql_refused`, `sql_invalid`, `sql_time_limit`, `sql_memory_limit`,
    /// `sql_too_deep`, `sql_too_complex`, `sql_too_large`, `sql_result_too_large`, `sql_busy`,
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

/// Expressions the parser may begin per byte of SQL text
/// (`sql_parse_steps_per_byte`), retries after backtracking included.
/// Valid queries need less than one: 0.24 at most over `tests/slt` and the
/// fuzz corpus, 0.5 for a list of one-digit items. A step costs about
/// 0.65 µs in a release build, so the most a 1 MiB text may cost is about
/// 5.5 s of one SQL thread (docs/benchmarks.md).
pub const SQL_PARSE_STEPS_PER_BYTE_DEFAULT: u64 = 8;
/// The budget of a short text: at least this many steps (about 65 ms).
pub const SQL_PARSE_STEPS_MIN: u64 = 100_000;

/// The parse budget of a text of `bytes` bytes, at `per_byte` steps a byte.
pub fn parse_steps_max(bytes: usize, per_byte: u64) -> u64 {
    (bytes as u64).saturating_mul(per_byte).max(SQL_PARSE_STEPS_MIN)
}

/// sqlparser's [`GenericDialect`] with a budget on the parser's work: the
/// dialect is asked first whenever the parser begins an expression, so
/// counting there counts every attempt. Past the budget each attempt fails
/// with sqlparser's recursion-limit error, which its backtracking passes up
/// instead of trying the next alternative, so the parse ends at once.
/// [`exhausted`](ParseBudget::exhausted) then tells this apart from a real
/// recursion limit.
#[derive(Debug)]
pub struct ParseBudget {
    steps: Cell<u64>,
    max: u64,
    /// `sql_parse_steps_per_byte`, when the budget came from it.
    per_byte: Option<u64>,
}

impl ParseBudget {
    /// A budget of `max` expression starts.
    pub fn new(max: u64) -> ParseBudget {
        ParseBudget { steps: Cell::new(0), max, per_byte: None }
    }

    /// The budget for parsing `sql` at `per_byte` steps a byte
    /// (`sql_parse_steps_per_byte`).
    pub fn for_text(sql: &str, per_byte: u64) -> ParseBudget {
        ParseBudget { steps: Cell::new(0), max: parse_steps_max(sql.len(), per_byte), per_byte: Some(per_byte) }
    }

    /// Expressions begun so far.
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// Whether the parse was stopped by the budget.
    pub fn exhausted(&self) -> bool {
        self.steps.get() > self.max
    }

    /// The error for a parse the budget stopped.
    pub fn error(&self, bytes: usize) -> QueryError {
        let limit = match self.per_byte {
            Some(n) => format!("sql_parse_steps_per_byte = {n}"),
            None => format!("a budget of {} steps", self.max),
        };
        QueryError {
            code: "sql_too_complex",
            message: format!(
                "the query is too complex to parse: the parser tried more than {} expressions for its {bytes} bytes \
                 ({limit}); check its brackets and commas, and simplify it",
                self.max
            ),
        }
    }

    /// Parses `sql` into statements under this budget, with DataFusion's
    /// recursion limit (50).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        Parser::new(self)
            .with_recursion_limit(50)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| if self.exhausted() { self.error(sql.len()) } else { QueryError::invalid(e.to_string()) })
    }
}

/// Forwards each method [`GenericDialect`] overrides (sqlparser 0.62), so
/// that a statement parses exactly as with it; the test
/// `parses_as_the_generic_dialect` holds it to that.
macro_rules! like_generic {
    (bool: [$($b:ident,)*] char: [$($c:ident,)*]) => {
        $(fn $b(&self) -> bool { GenericDialect {}.$b() })*
        $(fn $c(&self, ch: char) -> bool { GenericDialect {}.$c(ch) })*
    };
}

impl Dialect for ParseBudget {
    /// `dialect_of!(… is GenericDialect)` holds for it, as for the generic dialect.
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn parse_prefix(&self, _parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let n = self.steps.get().saturating_add(1);
        self.steps.set(n);
        if n > self.max { Some(Err(ParserError::RecursionLimitExceeded)) } else { None }
    }

    like_generic! {
        bool: [
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
        ]
        char: [
        is_delimited_identifier_start,
        is_identifier_start,
        is_identifier_part,
        ]
    }
}

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

    fn check(sql: &str, depth: usize) -> Result<(), QueryError> {
        let mut st = ParseBudget::for_text(sql, SQL_PARSE_STEPS_PER_BYTE_DEFAULT).parse(sql).expect("parses");
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

    /// Found by the `sql` fuzz target. Without the budget, in a release
    /// build: 2 levels of `[e(x,` take 66 thousand steps, 3 levels 8.4
    /// million (5 s), 4 levels more than 20 million; from 6 levels on the
    /// recursion limit stops it.
    const BACKTRACKER: &str =
        "SELECT h.a.b.c.d.e.f.s[e(x, h.a.b.c.d.e.f.s[e(x, h.a.b.c.d.e.f.s[e(x, h.a.b.c.d.e.f.s[e(x";

    #[test]
    fn a_parse_that_backtracks_without_end_is_stopped() {
        let b = ParseBudget::for_text(BACKTRACKER, SQL_PARSE_STEPS_PER_BYTE_DEFAULT);
        let e = b.parse(BACKTRACKER).unwrap_err();
        assert_eq!(e.code, "sql_too_complex", "{e}");
        assert!(e.message.contains("sql_parse_steps_per_byte"), "{e}");
        assert!(b.exhausted());
        // A real recursion limit stays an invalid query.
        let deep = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
        let e = ParseBudget::for_text(&deep, SQL_PARSE_STEPS_PER_BYTE_DEFAULT).parse(&deep).unwrap_err();
        assert_eq!(e.code, "sql_invalid", "{e}");
    }

    #[test]
    fn parses_as_the_generic_dialect() {
        let mut texts: Vec<String> = Vec::new();
        for dir in ["../../tests/slt", "../../fuzz/corpus/sql"] {
            for f in std::fs::read_dir(dir).expect("corpus dir") {
                let bytes = std::fs::read(f.expect("entry").path()).expect("readable");
                if let Ok(t) = String::from_utf8(bytes) {
                    texts.push(t);
                }
            }
        }
        assert!(texts.len() > 100, "{} texts", texts.len());
        let (mut same, mut ok, mut stopped) = (0, 0, 0);
        let mut worst = (0.0, String::new());
        for t in &texts {
            // Texts the budget stops (the corpus keeps some) would take the
            // generic dialect as long as they took before the budget.
            let budget = ParseBudget::for_text(t, SQL_PARSE_STEPS_PER_BYTE_DEFAULT);
            let ours =
                Parser::new(&budget).with_recursion_limit(50).try_with_sql(t).and_then(|mut p| p.parse_statements());
            if budget.exhausted() {
                // Stopped by the budget: not a query that three times the
                // budget would parse (a valid query refused as too complex
                // would show here).
                let more = ParseBudget::new(3 * parse_steps_max(t.len(), SQL_PARSE_STEPS_PER_BYTE_DEFAULT));
                let again = more.parse(t);
                assert!(again.is_err(), "a text the budget stopped parses with three times it: {t}");
                stopped += 1;
                continue;
            }
            let generic = Parser::new(&GenericDialect {})
                .with_recursion_limit(50)
                .try_with_sql(t)
                .and_then(|mut p| p.parse_statements());
            assert_eq!(format!("{ours:?}"), format!("{generic:?}"), "{t}");
            same += 1;
            ok += usize::from(ours.is_ok());
            if ours.is_ok() {
                let per_byte = budget.steps() as f64 / t.len().max(1) as f64;
                if per_byte > worst.0 {
                    worst = (per_byte, t.clone());
                }
            }
        }
        assert!(ok > 50, "{ok} of {same} parsed");
        assert!(stopped * 10 < texts.len(), "{stopped} of {} texts stopped by the budget", texts.len());
        // Valid queries stay far inside the budget.
        assert!(worst.0 < 1.0, "{:.2} parse steps per byte: {}", worst.0, worst.1);
    }
}
