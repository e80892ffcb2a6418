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

/// Splits a query string at top-level semicolons, in one pass with no
/// allocation per token (a 4 MiB message of `;` costs nothing but the
/// scan). sqlparser's PostgreSQL tokenizer is the test oracle: for texts it
/// reads, its semicolons are these. Semicolons inside quotes,
/// `E'...'` strings, quoted identifiers, dollar quotes and comments do not
/// count. Each piece keeps its text exactly as sent (the engine gets what the
/// user wrote, not a re-printed parse tree); pieces with nothing but
/// whitespace and comments are dropped. Syntax errors are left to the engine.
pub(super) fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Inside a run of identifier bytes: whether it is all digits so far. A
    // `$` continues an identifier (`a$b`, `1a$$`), but after a number it
    // may open a dollar quote (`1$q$...$q$`), as in PostgreSQL's lexer.
    let mut digits: Option<bool> = None;
    while i < bytes.len() {
        let previous_is_ident = i > 0 && is_ident_byte(bytes[i - 1]) && digits == Some(false);
        let b = bytes[i];
        // Every arm but the last skips something that ends any run.
        let before = digits.take();
        match b {
            b';' => {
                // `;` is ASCII, so both slice ends are char boundaries.
                pieces.push(&sql[start..i]);
                i += 1;
                start = i;
            }
            b'\'' => {
                // `E'...'` allows backslash escapes; `e` must start a token.
                let escape_string =
                    i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !(i > 1 && is_ident_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escape_string);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_line_comment(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' if !previous_is_ident => i = skip_dollar_quoted(bytes, i),
            _ => {
                digits = match before {
                    Some(all) if is_ident_byte(b) => Some(all && b.is_ascii_digit()),
                    _ if is_ident_byte(b) && b != b'$' => Some(b.is_ascii_digit()),
                    _ => None,
                };
                i += 1;
            }
        }
    }
    pieces.push(&sql[start..]);
    pieces.retain(|piece| !strip_leading_comments(piece).trim().is_empty());
    pieces
}

/// Identifier bytes; everything non-ASCII counts, as in PostgreSQL.
pub(super) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The index after the quote that closes the one at `open` (doubled quotes
/// stay inside), or the end.
pub(super) fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

pub(super) fn skip_line_comment(bytes: &[u8], start: usize) -> usize {
    bytes.iter().skip(start).position(|&b| b == b'\n').map_or(bytes.len(), |offset| start + offset + 1)
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

/// `$tag$ ... $tag$` (the tag may be empty). A `$` that does not open a
/// dollar quote, as in the placeholder `$1`, is skipped alone.
pub(super) fn skip_dollar_quoted(bytes: &[u8], start: usize) -> usize {
    let tag_start = start + 1;
    if bytes.get(tag_start).is_some_and(u8::is_ascii_digit) {
        return start + 1;
    }
    let mut end = tag_start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] >= 0x80) {
        end += 1;
    }
    if bytes.get(end) != Some(&b'$') {
        return start + 1;
    }
    let tag = &bytes[start..=end];
    let body = end + 1;
    match bytes.get(body..).and_then(|rest| rest.windows(tag.len()).position(|window| window == tag)) {
        Some(offset) => body + offset + tag.len(),
        None => bytes.len(),
    }
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
