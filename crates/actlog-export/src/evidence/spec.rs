//! Each control as data: one `sql/*.sql` file holds its id, standard and
//! title, and every query it runs, each named by the metric or detail table
//! it fills. The status and the one-sentence summary are judged in
//! `judge.rs` from the named results.
//!
//! A control file is plain SQL with directives in `--` comments:
//!
//! ```text
//! -- control: PR.AA-04                 the header: id, standard, title
//! -- standard: NIST CSF 2.0
//! -- title: Identity assertions are protected, conveyed, and verified
//!
//! -- metric: allowed_with_failed_verification     a number (NULL is 0)
//! SELECT count(*) FROM events WHERE {w} AND ...;
//!
//! -- details: allowed although delegation verification failed   rows to review
//! -- when: allowed_with_failed_verification > 0   only if an earlier metric is positive
//! SELECT seq, event_id FROM events WHERE {w} AND ... ORDER BY seq;
//! ```
//!
//! Items are `metric` (a number), `text` (one value kept as text),
//! `details` (up to [`DETAIL_ROWS_MAX`](super::DETAIL_ROWS_MAX) rows),
//! `reuse` (a number another control computed) and `note` (a fixed text,
//! from the comment lines after it). `-- when: from` runs an item only when
//! the window has a start; `-- otherwise: TEXT` is then the metric's value.
//! A query runs to the first line that ends in `;`. Its whitespace is
//! collapsed, so the text kept in `findings.json` is one line.
//!
//! In a query, `{w}` is the window (the tree size and the event-time
//! bounds) on `events`, `{w:o}` the same on alias `o` (also `d`, `e`, `r`),
//! `{n}` the tree size, `{from}` the window start in unix nanoseconds, and
//! `{NAME}` one of the thresholds of [`thresholds`].

use std::collections::BTreeSet;
use std::sync::LazyLock;

use super::controls::{DENY_BURST_MIN, FUTURE_SKEW_SECS, HIGH_RISK, LATE_SECS, OFF_PURPOSE_RATIO};

/// The control files, in the order of the findings.
pub const FILES: [(&str, &str); 9] = [
    ("pr_aa_05.sql", include_str!("sql/pr_aa_05.sql")),
    ("pr_aa_01.sql", include_str!("sql/pr_aa_01.sql")),
    ("pr_aa_03.sql", include_str!("sql/pr_aa_03.sql")),
    ("pr_aa_04.sql", include_str!("sql/pr_aa_04.sql")),
    ("pr_ps_04.sql", include_str!("sql/pr_ps_04.sql")),
    ("de_cm_03.sql", include_str!("sql/de_cm_03.sql")),
    ("de_ae_02.sql", include_str!("sql/de_ae_02.sql")),
    ("rs_an_03.sql", include_str!("sql/rs_an_03.sql")),
    ("au_3.sql", include_str!("sql/au_3.sql")),
];

/// The named thresholds a control file may use, as `{NAME}`.
pub fn thresholds() -> [(&'static str, String); 5] {
    [
        ("OFF_PURPOSE_RATIO", OFF_PURPOSE_RATIO.to_string()),
        ("DENY_BURST_MIN", DENY_BURST_MIN.to_string()),
        ("HIGH_RISK", HIGH_RISK.to_string()),
        ("FUTURE_SKEW_SECS", FUTURE_SKEW_SECS.to_string()),
        ("LATE_SECS", LATE_SECS.to_string()),
    ]
}

/// One control, as its file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The file it came from.
    pub file: &'static str,
    /// `PR.AA-05`, `AU-3`, ...
    pub id: String,
    /// `NIST CSF 2.0` or `NIST SP 800-53 Rev. 5`.
    pub standard: String,
    /// The control's title.
    pub title: String,
    /// What it computes, in order.
    pub items: Vec<Item>,
}

/// What an item makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A number from a one-value query.
    Metric,
    /// One value kept as text.
    Text,
    /// Rows for review.
    Details,
    /// A number an earlier control computed.
    Reuse,
    /// A fixed text.
    Note(String),
}

/// When an item runs.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// Always.
    Always,
    /// When an earlier metric of the run is above zero.
    Positive(String),
    /// When the window has a start; otherwise the metric is the text.
    WindowStart { otherwise: Option<String> },
}

/// One metric, text, detail table, reuse or note.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What it makes.
    pub kind: Kind,
    /// The metric's name, or the detail table's title.
    pub name: String,
    /// The query, placeholders unfilled, whitespace collapsed; empty for
    /// `reuse` and `note`.
    pub sql: String,
    /// When it runs.
    pub when: When,
}

/// The directives that start an item.
const ITEM_WORDS: [&str; 5] = ["metric", "text", "details", "reuse", "note"];

/// The parsed control files, in finding order.
pub static CONTROLS: LazyLock<Vec<Control>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(file, text)| parse(file, text).unwrap_or_else(|e| panic!("evidence control {file}: {e}")))
        .collect()
});

/// Parses one control file.
pub fn parse(file: &'static str, text: &str) -> Result<Control, String> {
    let mut header = [None::<String>, None, None];
    let mut items: Vec<Item> = Vec::new();
    // The item being read, and whether its query is complete.
    let mut open: Option<(Item, bool)> = None;
    let close = |open: &mut Option<(Item, bool)>, items: &mut Vec<Item>, line: usize| -> Result<(), String> {
        if let Some((item, done)) = open.take() {
            let needs_sql = matches!(item.kind, Kind::Metric | Kind::Text | Kind::Details);
            if needs_sql && !done {
                return Err(format!("line {line}: `{}` has no query ending in `;`", item.name));
            }
            if let Kind::Note(t) = &item.kind
                && t.is_empty()
            {
                return Err(format!("line {line}: note `{}` has no text", item.name));
            }
            items.push(item);
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            if open
                .as_ref()
                .is_some_and(|(it, done)| *done || !matches!(it.kind, Kind::Metric | Kind::Text | Kind::Details))
            {
                close(&mut open, &mut items, n)?;
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix("--") {
            let comment = comment.trim();
            if let Some((item, false)) = &mut open {
                if let Kind::Note(t) = &mut item.kind {
                    if !t.is_empty() {
                        t.push(' ');
                    }
                    t.push_str(comment);
                    continue;
                }
                if let Some(rest) = comment.strip_prefix("when:") {
                    item.when = match rest.trim() {
                        "from" => When::WindowStart { otherwise: None },
                        cond => match cond.strip_suffix("> 0") {
                            Some(name) if !name.trim().is_empty() => When::Positive(name.trim().to_string()),
                            _ => return Err(format!("line {n}: `when:` takes `from` or `METRIC > 0`, not `{cond}`")),
                        },
                    };
                    continue;
                }
                if let Some(rest) = comment.strip_prefix("otherwise:") {
                    match &mut item.when {
                        When::WindowStart { otherwise } => *otherwise = Some(rest.trim().to_string()),
                        _ => return Err(format!("line {n}: `otherwise:` follows `when: from`")),
                    }
                    continue;
                }
                let directive = comment.split_once(':').is_some_and(|(w, _)| ITEM_WORDS.contains(&w));
                if !directive && matches!(item.kind, Kind::Metric | Kind::Text | Kind::Details) {
                    if item.sql.is_empty() {
                        continue; // a comment between the directive and its query
                    }
                    return Err(format!("line {n}: a comment inside the query of `{}`", item.name));
                }
            }
            let Some((word, value)) = comment.split_once(':') else { continue };
            let value = value.trim().to_string();
            let slot = match word {
                "control" => Some(0),
                "standard" => Some(1),
                "title" => Some(2),
                _ => None,
            };
            if let Some(s) = slot {
                if header[s].replace(value).is_some() {
                    return Err(format!("line {n}: `{word}:` given twice"));
                }
                continue;
            }
            let kind = match word {
                "metric" => Kind::Metric,
                "text" => Kind::Text,
                "details" => Kind::Details,
                "reuse" => Kind::Reuse,
                "note" => Kind::Note(String::new()),
                _ => continue, // prose
            };
            close(&mut open, &mut items, n)?;
            if value.is_empty() {
                return Err(format!("line {n}: `{word}:` needs a name"));
            }
            open = Some((Item { kind, name: value, sql: String::new(), when: When::Always }, false));
            continue;
        }
        match &mut open {
            Some((item, false)) if matches!(item.kind, Kind::Metric | Kind::Text | Kind::Details) => {
                let (part, done) = match line.strip_suffix(';') {
                    Some(p) => (p, true),
                    None => (line, false),
                };
                for word in part.split_whitespace() {
                    if !item.sql.is_empty() {
                        item.sql.push(' ');
                    }
                    item.sql.push_str(word);
                }
                open.as_mut().expect("open").1 = done;
            }
            _ => return Err(format!("line {n}: SQL outside an item (start one with `-- metric: NAME`)")),
        }
    }
    close(&mut open, &mut items, text.lines().count())?;
    let [Some(id), Some(standard), Some(title)] = header else {
        return Err("the header needs `control:`, `standard:` and `title:`".into());
    };
    let mut seen = BTreeSet::new();
    for it in &items {
        if !seen.insert((matches!(it.kind, Kind::Details), it.name.as_str())) {
            return Err(format!("`{}` is declared twice", it.name));
        }
    }
    Ok(Control { file, id, standard, title, items })
}

/// The window on `events`, with alias prefix `a` (`""` or `"o."`).
pub fn window(a: &str, tree_size: u64, from: Option<i64>, to: Option<i64>) -> String {
    let mut w = format!("{a}seq < {tree_size}");
    if let Some(f) = from {
        w += &format!(" AND {a}event_time >= to_timestamp_nanos({f})");
    }
    if let Some(t) = to {
        w += &format!(" AND {a}event_time < to_timestamp_nanos({t})");
    }
    w
}

/// A query with its placeholders filled.
pub fn render(template: &str, tree_size: u64, from: Option<i64>, to: Option<i64>) -> String {
    let mut s = template.replace("{n}", &tree_size.to_string());
    for a in ["d", "o", "e", "r"] {
        s = s.replace(&format!("{{w:{a}}}"), &window(&format!("{a}."), tree_size, from, to));
    }
    s = s.replace("{w}", &window("", tree_size, from, to));
    if let Some(f) = from {
        s = s.replace("{from}", &f.to_string());
    }
    for (name, value) in thresholds() {
        s = s.replace(&format!("{{{name}}}"), &value);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_file_parses_and_fills_every_placeholder() {
        let ids: Vec<&str> = CONTROLS.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["PR.AA-05", "PR.AA-01", "PR.AA-03", "PR.AA-04", "PR.PS-04", "DE.CM-03", "DE.AE-02", "RS.AN-03", "AU-3"]
        );
        let mut metrics = BTreeSet::new();
        for c in CONTROLS.iter() {
            assert!(!c.items.is_empty(), "{}", c.file);
            for it in &c.items {
                let sql = render(&it.sql, 7, Some(1), Some(2));
                assert!(!sql.contains(['{', '}']), "{}: `{}` keeps a placeholder: {sql}", c.file, it.name);
                if it.kind == Kind::Metric || it.kind == Kind::Text {
                    assert!(metrics.insert(it.name.clone()), "metric `{}` is computed by two controls", it.name);
                }
                if let When::Positive(m) = &it.when {
                    assert!(
                        metrics.contains(m),
                        "{}: `{}` waits on `{m}`, which no earlier item computes",
                        c.file,
                        it.name
                    );
                }
            }
        }
        for c in CONTROLS.iter() {
            for it in c.items.iter().filter(|i| i.kind == Kind::Reuse) {
                assert!(metrics.contains(&it.name), "{}: reuses `{}`, which no control computes", c.file, it.name);
            }
        }
        for (name, _) in thresholds() {
            assert!(FILES.iter().any(|(_, t)| t.contains(&format!("{{{name}}}"))), "{name} is used");
        }
    }

    #[test]
    fn a_malformed_control_file_is_refused_with_its_line() {
        let head = "-- control: X\n-- standard: S\n-- title: T\n\n";
        for (body, want) in [
            ("-- metric: a\nSELECT 1\n", "has no query ending in `;`"),
            ("SELECT 1;\n", "line 5: SQL outside an item"),
            ("-- metric: a\n-- when: a < 3\nSELECT 1;\n", "`when:` takes"),
            ("-- metric: a\nSELECT 1;\n\n-- metric: a\nSELECT 2;\n", "`a` is declared twice"),
            ("-- note: a\n\n", "note `a` has no text"),
            ("-- metric:\nSELECT 1;\n", "needs a name"),
        ] {
            let e = parse("t.sql", &format!("{head}{body}")).unwrap_err();
            assert!(e.contains(want), "{body:?}: {e}");
        }
        assert!(parse("t.sql", "-- metric: a\nSELECT 1;\n").unwrap_err().contains("header"));
        let c = parse("t.sql", &format!("{head}-- metric: a\nSELECT\n  1;\n-- note: b\n-- two\n-- lines\n")).unwrap();
        assert_eq!(c.items[0].sql, "SELECT 1");
        assert_eq!(c.items[1].kind, Kind::Note("two lines".into()));
    }
}
