//! Result formats shared by `actlog sql` and `POST /v1/sql`: JSON
//! (`{"columns","rows","row_count","truncated"}`), CSV, an Arrow IPC stream
//! and an aligned text table.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};

use crate::engine::QueryOutput;

fn cell(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Boolean => json!(a.as_boolean().value(i)),
        DataType::Int8 => json!(a.as_primitive::<datafusion::arrow::datatypes::Int8Type>().value(i)),
        DataType::Int16 => json!(a.as_primitive::<datafusion::arrow::datatypes::Int16Type>().value(i)),
        DataType::Int32 => json!(a.as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(i)),
        DataType::Int64 => json!(a.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(i)),
        DataType::UInt8 => json!(a.as_primitive::<datafusion::arrow::datatypes::UInt8Type>().value(i)),
        DataType::UInt16 => json!(a.as_primitive::<datafusion::arrow::datatypes::UInt16Type>().value(i)),
        DataType::UInt32 => json!(a.as_primitive::<datafusion::arrow::datatypes::UInt32Type>().value(i)),
        DataType::UInt64 => json!(a.as_primitive::<datafusion::arrow::datatypes::UInt64Type>().value(i)),
        DataType::Float32 => json!(a.as_primitive::<datafusion::arrow::datatypes::Float32Type>().value(i)),
        DataType::Float64 => json!(a.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(i)),
        DataType::Utf8 => json!(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => json!(a.as_string::<i64>().value(i)),
        DataType::Utf8View => json!(a.as_string_view().value(i)),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => json!(actlog_core::time::format_rfc3339_utc(
            a.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().value(i)
        )),
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            Value::Array((0..l.len()).map(|j| cell(l.as_ref(), j)).collect())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>().value(i);
            Value::Array((0..l.len()).map(|j| cell(l.as_ref(), j)).collect())
        }
        _ => match ArrayFormatter::try_new(a, &FormatOptions::default()) {
            Ok(f) => json!(f.value(i).to_string()),
            Err(_) => Value::Null,
        },
    }
}

/// A column's type as `POST /v1/sql` names it: Arrow's name, except that
/// every string layout (`Utf8`, `Utf8View`, `LargeUtf8`) is `Utf8`, so the
/// answer does not change with how the engine happens to hold strings.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8.to_string(),
        other => other.to_string(),
    }
}

/// The JSON body of `POST /v1/sql`.
pub fn to_json(out: &QueryOutput) -> Value {
    let columns: Vec<Value> =
        out.schema.fields().iter().map(|f| json!({"name": f.name(), "type": type_name(f.data_type())})).collect();
    let mut rows = Vec::with_capacity(out.row_count);
    for b in &out.batches {
        for i in 0..b.num_rows() {
            rows.push(Value::Array(b.columns().iter().map(|c| cell(c.as_ref(), i)).collect()));
        }
    }
    json!({"columns": columns, "rows": rows, "row_count": out.row_count, "truncated": out.truncated, "tree_size": out.tree_size})
}

/// The same JSON body as [`to_json`], as a sequence of chunks built one
/// batch at a time, so a result is never held twice (Arrow and text).
pub fn json_chunks(out: &QueryOutput) -> impl Iterator<Item = Vec<u8>> + '_ {
    let columns: Vec<Value> =
        out.schema.fields().iter().map(|f| json!({"name": f.name(), "type": type_name(f.data_type())})).collect();
    let head = format!("{{\"columns\":{},\"rows\":[", Value::Array(columns)).into_bytes();
    let tail =
        format!("],\"row_count\":{},\"truncated\":{},\"tree_size\":{}}}", out.row_count, out.truncated, out.tree_size)
            .into_bytes();
    let mut first = true;
    let rows = out.batches.iter().map(move |b| {
        let mut chunk = Vec::new();
        for i in 0..b.num_rows() {
            if !std::mem::take(&mut first) {
                chunk.push(b',');
            }
            let row = Value::Array(b.columns().iter().map(|c| cell(c.as_ref(), i)).collect());
            serde_json::to_writer(&mut chunk, &row).expect("a JSON value serializes into memory");
        }
        chunk
    });
    std::iter::once(head).chain(rows).chain(std::iter::once(tail))
}

/// One value as text: timestamps in RFC 3339, lists as JSON arrays, floats
/// in their shortest round-trip form (`42`, `42.5`), as PostgreSQL prints them.
fn text(a: &dyn Array, i: usize) -> String {
    if !a.is_null(i) {
        match a.data_type() {
            DataType::Float64 => {
                return a.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(i).to_string();
            }
            DataType::Float32 => {
                return a.as_primitive::<datafusion::arrow::datatypes::Float32Type>().value(i).to_string();
            }
            _ => {}
        }
    }
    match cell(a, i) {
        Value::Null => String::new(),
        Value::String(s) => s,
        v => v.to_string(),
    }
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// CSV with a header row (RFC 4180 quoting).
pub fn to_csv(out: &QueryOutput) -> String {
    csv_chunks(out).map(|c| String::from_utf8(c).expect("CSV chunks are UTF-8")).collect()
}

/// [`to_csv`] as one chunk per batch, after the header.
pub fn csv_chunks(out: &QueryOutput) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut head = out.schema.fields().iter().map(|f| csv_quote(f.name())).collect::<Vec<_>>().join(",");
    head.push('\n');
    let rows = out.batches.iter().map(|b| {
        let mut s = String::new();
        for i in 0..b.num_rows() {
            let line: Vec<String> = b.columns().iter().map(|c| csv_quote(&text(c.as_ref(), i))).collect();
            s.push_str(&line.join(","));
            s.push('\n');
        }
        s.into_bytes()
    });
    std::iter::once(head.into_bytes()).chain(rows)
}

/// An Arrow IPC stream of the result.
pub fn to_arrow_ipc(out: &QueryOutput) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &out.schema).map_err(|e| e.to_string())?;
        for b in &out.batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// An aligned text table, long values cut at `width_max` characters.
pub fn to_table(out: &QueryOutput, width_max: usize) -> String {
    let names: Vec<String> = out.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in &out.batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let t = if c.is_null(i) { "NULL".to_string() } else { text(c.as_ref(), i) };
                        let t = t.replace(['\n', '\r', '\t'], " ");
                        if t.chars().count() > width_max {
                            format!("{}…", t.chars().take(width_max.saturating_sub(1)).collect::<String>())
                        } else {
                            t
                        }
                    })
                    .collect(),
            );
        }
    }
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for r in &rows {
        for (w, v) in widths.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |vals: &[String]| {
        let cells: Vec<String> =
            vals.iter().zip(&widths).map(|(v, w)| format!("{v}{}", " ".repeat(w - v.chars().count()))).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let sep = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let mut s = String::new();
    s.push_str(&sep);
    s.push_str(&line(&names));
    s.push_str(&sep);
    for r in &rows {
        s.push_str(&line(r));
    }
    s.push_str(&sep);
    s
}

/// Rows as lists of text cells (NULL as `None`), for tests and the pg wire.
pub fn to_text_rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| (!c.is_null(i)).then(|| text(c.as_ref(), i))).collect());
        }
    }
    rows
}
