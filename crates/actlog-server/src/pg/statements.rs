//! Statement classification for the PostgreSQL endpoint: splitting a
//! simple query into statements (with sqlparser's PostgreSQL tokenizer) and
//! answering the session statements drivers send on their own.

use super::*;

/// What one statement is, after the allowlist of session statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// Everything else: the engine runs it, or refuses it.
    Engine,
    /// `SET ...`: accepted without effect, except `SET actlog.use_index`.
    Set { use_index: Option<bool> },
    /// `BEGIN` or `START TRANSACTION`, with its command tag.
    Begin(&'static str),
    /// `COMMIT`, `END`, `ROLLBACK` or `ABORT`, with its command tag.
    End(&'static str),
    /// `SHOW TRANSACTION ISOLATION LEVEL`.
    ShowIsolation,
}

/// Splits a simple query into its statements at the top-level semicolons,
/// found by sqlparser's PostgreSQL tokenizer: semicolons inside quotes,
/// `E'...'` strings, quoted identifiers, dollar quotes and (nested)
/// comments do not count. Each piece keeps its text exactly as sent (the
/// engine gets what the user wrote, not a re-printed parse tree); pieces
/// with nothing but whitespace and comments are dropped. Text the tokenizer
/// cannot read (an unterminated quote or comment) is one piece, so the
/// engine reports the error.
pub(super) fn split_statements(sql: &str) -> Vec<&str> {
    use actlog_query::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use actlog_query::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return if sql.trim().is_empty() { Vec::new() } else { vec![sql] };
    };
    // Byte offset of each line's start: the tokenizer gives lines and
    // columns (in characters), both from 1.
    let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        sql[start..].char_indices().nth(column).map(|(i, _)| start + i)
    };
    let mut pieces = Vec::new();
    let (mut start, mut blank) = (0, true);
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let Some(at) = offset(t.span.start.line, t.span.start.column).filter(|at| sql[*at..].starts_with(';'))
                else {
                    // Locations that do not point at the `;` would be a
                    // tokenizer bug: send the text whole rather than cut it
                    // in a wrong place.
                    return vec![sql];
                };
                if !blank {
                    pieces.push(&sql[start..at]);
                }
                (start, blank) = (at + 1, true);
            }
            Token::Whitespace(_) => {}
            _ => blank = false,
        }
    }
    if !blank {
        pieces.push(&sql[start..]);
    }
    pieces
}

/// Block comments nest in PostgreSQL.
pub(super) fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `sql` after its leading whitespace and comments.
pub(super) fn strip_leading_comments(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if rest.starts_with("--") {
            rest = rest.find('\n').and_then(|newline| rest.get(newline + 1..)).unwrap_or("");
        } else if rest.starts_with("/*") {
            rest = rest.get(skip_block_comment(rest.as_bytes(), 0)..).unwrap_or("");
        } else {
            return rest;
        }
    }
}

/// Sorts out the session statements that drivers send on their own, so they
/// never reach the engine (which refuses anything but queries):
///
/// - `SET ...` (also `SET SESSION`/`SET LOCAL`) answers `SET` and has no
///   effect, except `SET actlog.use_index = true|false` (or `TO`), which sets
///   `QueryOptions::use_index` for the rest of the connection. Any other
///   `actlog.*` name is an error, so a typo is not silently ignored.
/// - `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK` and `ABORT`
///   answer their command tags. Every statement is a read of a snapshot, so
///   there is nothing to commit or undo.
/// - `SHOW TRANSACTION ISOLATION LEVEL` answers one row, `read committed`.
///
/// Everything else, `SELECT version()` included, goes to the engine.
pub(super) fn classify(sql: &str) -> PgWireResult<Command> {
    let statement = strip_leading_comments(sql).trim_end();
    let lower = statement.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["set", ..] => parse_set(statement)?,
        ["begin", ..] => Command::Begin("BEGIN"),
        ["start", "transaction", ..] => Command::Begin("START TRANSACTION"),
        ["commit" | "end", ..] => Command::End("COMMIT"),
        ["rollback" | "abort", ..] => Command::End("ROLLBACK"),
        ["show", "transaction", "isolation", "level", ..] => Command::ShowIsolation,
        _ => Command::Engine,
    })
}

/// `statement` starts with the word `set`, in any case.
pub(super) fn parse_set(statement: &str) -> PgWireResult<Command> {
    let mut rest = statement.get(3..).unwrap_or("").trim_start();
    for scope in ["session ", "local "] {
        if let Some(after) = strip_prefix_ignore_case(rest, scope) {
            rest = after.trim_start();
        }
    }
    let name_end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
    let (name, value) = rest.split_at(name_end);
    let name = name.trim_matches('"').to_ascii_lowercase();
    if !name.starts_with("actlog.") {
        return Ok(Command::Set { use_index: None });
    }
    let value = value.trim_start();
    let value = value.strip_prefix('=').or_else(|| strip_prefix_ignore_case(value, "to")).unwrap_or(value);
    let value = value.trim().trim_matches(|c: char| c == '\'' || c == '"').to_ascii_lowercase();
    match name.as_str() {
        "actlog.use_index" => match value.as_str() {
            "true" | "on" | "yes" | "1" | "default" => Ok(Command::Set { use_index: Some(true) }),
            "false" | "off" | "no" | "0" => Ok(Command::Set { use_index: Some(false) }),
            _ => Err(sql_error(
                "22023",
                format!("invalid value for parameter \"actlog.use_index\": \"{value}\"; use true or false"),
            )),
        },
        _ => Err(sql_error("42704", format!("unrecognized configuration parameter \"{name}\""))),
    }
}

pub(super) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { text.get(prefix.len()..) } else { None }
}
