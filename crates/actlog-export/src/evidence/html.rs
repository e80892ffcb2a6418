//! `report.html` of an evidence bundle: self-contained (inline CSS and SVG;
//! no scripts, links, fonts or images), so it opens offline and shows the
//! same thing on every machine. Every value from the ledger is escaped.

use std::fmt::Write as _;

use super::controls::{DETAIL_ROWS_MAX, Details, Finding, Status};
use crate::Manifest;

/// Escapes text for HTML element content and quoted attribute values.
/// Invisible and bidirectional formatting characters are shown as
/// `[U+XXXX]`: in a producer's string they could make the text read
/// differently from the data.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}' => {
                o.push_str(&format!("[U+{:04X}]", c as u32))
            }
            c if c.is_control() && c != '\n' && c != '\t' => o.push_str(&format!("[U+{:04X}]", c as u32)),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;\
color:#1d2330;padding:0 1em}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #d8dce3;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #d8dce3;padding:3px 7px;\
text-align:left;vertical-align:top}th{background:#f2f4f7}pre{background:#f6f8fa;padding:.6em;overflow-x:auto;\
white-space:pre-wrap;font-size:12px}.pass{background:#d9f2e0;color:#14532d}.fail{background:#fde2e1;color:#7f1d1d}\
.not_applicable{background:#eceff3;color:#374151}.badge{padding:1px 7px;border-radius:3px;font-weight:600}\
.meta td:first-child{font-weight:600}code{font-size:12px}.chart{margin:.5em 0 1em}.wide{overflow-x:auto}td{overflow-wrap:break-word}";

fn badge(s: Status) -> String {
    let name = match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::NotApplicable => "not_applicable",
    };
    format!("<span class=\"badge {name}\">{}</span>", name.replace('_', " "))
}

fn table(o: &mut String, d: &Details) {
    let _ = write!(o, "<h4>{}</h4><div class=\"wide\"><table><tr>", esc(&d.name));
    for c in &d.columns {
        let _ = write!(o, "<th>{}</th>", esc(c));
    }
    o.push_str("</tr>");
    for r in &d.rows {
        o.push_str("<tr>");
        for v in r {
            let _ = write!(o, "<td>{}</td>", v.as_deref().map(esc).unwrap_or_else(|| "<i>null</i>".into()));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table></div>");
    if d.rows.len() >= DETAIL_ROWS_MAX {
        let _ = write!(o, "<p>First {} rows; the query gives all of them.</p>", d.rows.len());
    }
    let _ = write!(o, "<details><summary>SQL</summary><pre>{}</pre></details>", esc(&d.sql));
}

/// A stacked bar chart, one bar per row of `d` (first column the label,
/// the next columns the stacked counts), as inline SVG.
fn stacked_bars(o: &mut String, d: &Details, title: &str) {
    const COLORS: [&str; 4] = ["#3b82f6", "#ef4444", "#a3a3a3", "#f59e0b"];
    let rows: Vec<(String, Vec<f64>)> = d
        .rows
        .iter()
        .map(|r| {
            let label = r.first().cloned().flatten().unwrap_or_default();
            let vals = r.iter().skip(1).map(|v| v.as_deref().and_then(|t| t.parse().ok()).unwrap_or(0.0)).collect();
            (label, vals)
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let max = rows.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(1.0f64, f64::max);
    let (w, h, pad) = (1000.0, 220.0, 30.0);
    let bw = ((w - pad) / rows.len() as f64).max(1.0);
    let _ = write!(
        o,
        "<div class=\"chart\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"{}\">",
        h + 60.0,
        esc(title)
    );
    for (i, (label, vals)) in rows.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let mut y = h;
        for (k, v) in vals.iter().enumerate() {
            let bh = v / max * (h - 10.0);
            y -= bh;
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{}: {} {}</title></rect>",
                (bw - 1.0).max(0.5),
                COLORS[k % COLORS.len()],
                esc(label),
                esc(d.columns.get(k + 1).map(String::as_str).unwrap_or("")),
                v
            );
        }
        if rows.len() <= 40 || i % (rows.len() / 20).max(1) == 0 {
            // Dates show as MM-DD; the year is in the header.
            let short = if label.len() == 10 && label.as_bytes()[4] == b'-' { &label[5..] } else { label.as_str() };
            let cx = x + bw / 2.0;
            let _ = write!(
                o,
                "<text x=\"{cx:.1}\" y=\"{}\" font-size=\"10\" transform=\"rotate(45 {cx:.1} {})\">{}</text>",
                h + 12.0,
                h + 12.0,
                esc(short)
            );
        }
    }
    let _ = write!(o, "<text x=\"0\" y=\"12\" font-size=\"11\">{max}</text>");
    let _ = write!(o, "<text x=\"0\" y=\"{h}\" font-size=\"11\">0</text>");
    let _ = write!(o, "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#555\"/></svg>");
    o.push_str("<div>");
    for (k, c) in d.columns.iter().skip(1).enumerate() {
        let _ = write!(o, "<span style=\"color:{}\">&#9632;</span> {} &nbsp;", COLORS[k % COLORS.len()], esc(c));
    }
    o.push_str("</div></div>");
}

/// The whole report.
pub fn report(m: &Manifest, findings: &[Finding], generated_at: &str) -> String {
    let mut o = String::with_capacity(64 << 10);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>actlog evidence: NIST CSF 2.0, {}</title>\
         <style>{STYLE}</style></head><body>",
        esc(&m.origin)
    );
    let _ = write!(o, "<h1>Compliance evidence: NIST CSF 2.0</h1><table class=\"meta\">");
    let metric = |name: &str| {
        findings.iter().find_map(|f| f.metrics.get(name)).and_then(|v| v.as_str()).unwrap_or("?").to_string()
    };
    let window = format!(
        "from {} to {} (events from {} to {})",
        m.from.as_deref().unwrap_or("the start"),
        m.to.as_deref().unwrap_or("the checkpoint"),
        metric("first_event_time"),
        metric("last_event_time")
    );
    for (k, v) in [
        ("Ledger (origin)", m.origin.clone()),
        ("Ledger verifier key", m.verifier_key.clone()),
        ("Window on event_time", window),
        ("Events in the window", m.events.to_string()),
        ("Seq range", format!("{} to {}", m.first_seq, m.last_seq)),
        ("Checkpoint", format!("tree size {}, root {}", m.tree_size, m.root_hash)),
        ("Generated", generated_at.to_string()),
    ] {
        let _ = write!(o, "<tr><td>{}</td><td><code>{}</code></td></tr>", esc(k), esc(&v));
    }
    o.push_str("</table>");
    let _ = write!(
        o,
        "<p>Check this bundle offline with the ledger key you obtained yourself (not from this report): \
         <code>actlog verify --bundle DIR --key KEY</code>; this report names the key <code>{}</code>. \
         Every file, this report included, is signed by the ledger key in <code>manifest.dsse.json</code>; \
         every row of <code>events/</code> and <code>delegation_hops/</code> is proven against the checkpoint above.</p>",
        esc(&m.verifier_key)
    );

    o.push_str("<h2>Summary</h2><table><tr><th>Control</th><th>Status</th><th>Finding</th></tr>");
    for f in findings {
        let _ = write!(
            o,
            "<tr><td><a href=\"#{id}\">{}</a><br><small>{}</small></td><td>{}</td><td>{}</td></tr>",
            esc(&f.control_id),
            esc(&f.standard),
            badge(f.status),
            esc(&f.summary),
            id = anchor(&f.control_id)
        );
    }
    o.push_str("</table>");

    if let Some(d) = findings.iter().flat_map(|f| &f.details).find(|d| d.name == "decisions per day") {
        o.push_str("<h3>Decisions per day</h3>");
        stacked_bars(&mut o, d, "decisions per day");
    }
    for f in findings {
        let _ = write!(
            o,
            "<h2 id=\"{}\">{} {}</h2><p><b>{}</b> ({})</p><p>{}</p><table><tr><th>Metric</th><th>Value</th></tr>",
            anchor(&f.control_id),
            esc(&f.control_id),
            badge(f.status),
            esc(&f.title),
            esc(&f.standard),
            esc(&f.summary)
        );
        for (k, v) in &f.metrics {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
        }
        o.push_str("</table>");
        if !f.sql.is_empty() {
            o.push_str("<details><summary>SQL of the metrics</summary><pre>");
            for (k, q) in &f.sql {
                let _ = writeln!(o, "-- {}\n{};\n", esc(k), esc(q));
            }
            o.push_str("</pre></details>");
        }
        for d in &f.details {
            table(&mut o, d);
        }
    }
    o.push_str("</body></html>\n");
    o
}

fn anchor(control: &str) -> String {
    control.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_are_shown() {
        assert_eq!(esc("tool\u{202E}gnp.exe"), "tool[U+202E]gnp.exe");
        assert_eq!(esc("a\u{200B}b\u{0007}"), "a[U+200B]b[U+0007]");
        assert_eq!(esc("caf\u{e9} \u{4e2d}"), "caf\u{e9} \u{4e2d}");
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
