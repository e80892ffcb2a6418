//! `actlog sql` (one-shot and REPL) and `actlog chain`, on a data dir or
//! against a running server (`--url/--token`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use actlog_query::datafusion::arrow::ipc::reader::StreamReader;
use actlog_query::{Engine, EngineOptions, QueryOptions, QueryOutput};
use actlog_store::Options;
use clap::{Args, ValueEnum};

use crate::util::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Arrow,
}

/// The query engine's settings, shared by `serve` and `sql`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Rows one query returns at most (`sql_rows_max`).
    #[arg(long, env = "ACTLOG_SQL_ROWS_MAX", default_value_t = actlog_query::engine::SQL_ROWS_MAX_DEFAULT)]
    pub sql_rows_max: usize,
    /// Longest one query may run, in milliseconds (`sql_time_ms`).
    #[arg(long, env = "ACTLOG_SQL_TIME_MS", default_value_t = 30_000)]
    pub sql_time_ms: u64,
    /// Memory for one query's sorts, joins and aggregates, in bytes (`sql_memory_bytes`).
    #[arg(long, env = "ACTLOG_SQL_MEMORY_BYTES", default_value_t = actlog_query::engine::SQL_MEMORY_BYTES_DEFAULT)]
    pub sql_memory_bytes: usize,
    /// Arrow bytes one result may hold; a larger one is refused (`sql_result_bytes_max`).
    #[arg(long, env = "ACTLOG_SQL_RESULT_BYTES_MAX", default_value_t = actlog_query::engine::SQL_RESULT_BYTES_MAX_DEFAULT)]
    pub sql_result_bytes_max: usize,
    /// Longest SQL text, in bytes (`sql_text_bytes_max`).
    #[arg(long, env = "ACTLOG_SQL_TEXT_BYTES_MAX", default_value_t = actlog_query::budget::SQL_TEXT_BYTES_MAX_DEFAULT)]
    pub sql_text_bytes_max: usize,
    /// Deepest nesting of expressions and subqueries (`sql_depth_max`).
    #[arg(long, env = "ACTLOG_SQL_DEPTH_MAX", default_value_t = actlog_query::budget::SQL_DEPTH_MAX_DEFAULT)]
    pub sql_depth_max: usize,
    /// Work the SQL parser may do per byte of text, retries included
    /// (`sql_parse_steps_per_byte`); past it a query is refused as too complex.
    #[arg(long, env = "ACTLOG_SQL_PARSE_STEPS_PER_BYTE", default_value_t = actlog_core::sql::SQL_PARSE_STEPS_PER_BYTE_DEFAULT)]
    pub sql_parse_steps_per_byte: u64,
    /// Bytes one call of repeat, lpad, rpad, replace, array_repeat, range or
    /// generate_series may produce for one batch (`sql_function_bytes_max`).
    #[arg(long, env = "ACTLOG_SQL_FUNCTION_BYTES_MAX", default_value_t = actlog_query::budget::SQL_FUNCTION_BYTES_MAX_DEFAULT)]
    pub sql_function_bytes_max: usize,
    /// Events per sealed Parquet segment, when this command seals (`segment_events`).
    #[arg(long, env = "ACTLOG_SEGMENT_EVENTS", default_value_t = actlog_query::segments::SEGMENT_EVENTS_DEFAULT)]
    pub segment_events: u64,
}

impl QueryArgs {
    /// The engine options these flags name.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            segment_events: self.segment_events,
            limits: actlog_query::QueryLimits {
                rows_max: self.sql_rows_max,
                time: std::time::Duration::from_millis(self.sql_time_ms),
                memory_bytes: self.sql_memory_bytes,
                result_bytes_max: self.sql_result_bytes_max,
                text_bytes_max: self.sql_text_bytes_max,
                depth_max: self.sql_depth_max,
                parse_steps_per_byte: self.sql_parse_steps_per_byte,
                function_bytes_max: self.sql_function_bytes_max,
            },
            ..EngineOptions::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The query; without it, a REPL reads statements ending in `;` from stdin.
    pub query: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Read every row from the segments instead of the store's indexes (same answers).
    #[arg(long)]
    pub no_index: bool,
    #[command(flatten)]
    pub limits: QueryArgs,
    #[command(flatten)]
    pub remote: Remote,
    /// Run QUERY on the Ballista cluster whose scheduler is at HOST:PORT,
    /// over the archive named by --archive (`actlog cluster`).
    #[arg(long, requires = "archive", conflicts_with = "url")]
    pub cluster: Option<String>,
    /// With --cluster: the archive (file:///PATH, a path every executor sees, or s3://BUCKET/PREFIX).
    #[arg(long, requires = "cluster")]
    pub archive: Option<String>,
    /// With --cluster and an s3:// archive: the S3-compatible server (AWS
    /// when absent; credentials and region from AWS_*).
    #[arg(long, requires = "cluster")]
    pub archive_endpoint: Option<String>,
}

#[derive(Args, Debug)]
pub struct ChainArgs {
    /// Any event of the task: a decision, an outcome or a sub-agent's call.
    pub event_id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

fn query_error(e: actlog_query::QueryError) -> CliError {
    let m = format!("{}: {}", e.code, e.message);
    if e.code == "sql_invalid" { usage(m) } else { refused(m) }
}

fn print(out: &QueryOutput, format: Format) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    let r = match format {
        Format::Table => stdout.write_all(actlog_query::output::to_table(out, 60).as_bytes()),
        Format::Csv => stdout.write_all(actlog_query::output::to_csv(out).as_bytes()),
        Format::Json => writeln!(stdout, "{}", actlog_query::output::to_json(out)),
        Format::Arrow => stdout.write_all(&actlog_query::output::to_arrow_ipc(out).map_err(refused)?),
    };
    r.map_err(|e| refused(format!("writing the result: {e}")))?;
    if format == Format::Table {
        eprintln!("({} rows at tree size {})", out.row_count, out.tree_size);
    }
    if out.truncated {
        eprintln!(
            "actlog: the result was cut at sql_rows_max ({} rows); narrow the query or raise --sql-rows-max",
            out.row_count
        );
    }
    Ok(())
}

fn remote_sql(remote: &Remote, url: &str, token: &str, sql: &str, use_index: bool, format: Format) -> CliResult {
    // A table is rendered here from the Arrow stream, by the same code as
    // local results.
    let accept = match format {
        Format::Arrow | Format::Table => "application/vnd.apache.arrow.stream",
        Format::Csv => "text/csv",
        Format::Json => "application/json",
    };
    let agent = http_agent(&remote.tls)?;
    let resp = agent
        .post(&format!("{}/v1/sql", url.trim_end_matches('/')))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", accept)
        .send_json(serde_json::json!({"sql": sql, "use_index": use_index}))
        .map_err(|e| refused(format!("cannot reach {url}: {e}")))?;
    let status = resp.status().as_u16();
    let truncated = resp.headers().get("x-actlog-truncated").is_some_and(|v| v == "true");
    let tree_size = resp
        .headers()
        .get("x-actlog-tree-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = resp.into_body().read_to_vec().map_err(|e| refused(format!("reading the response: {e}")))?;
    if status != 200 {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let m = format!(
            "{}: {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or("")
        );
        return Err(if status == 400 && v["error"]["code"] == "sql_invalid" { usage(m) } else { refused(m) });
    }
    if format == Format::Table {
        let reader = StreamReader::try_new(std::io::Cursor::new(body), None)
            .map_err(|e| refused(format!("the server sent an invalid Arrow stream: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(format!("the server sent an invalid Arrow stream: {e}")))?;
        let row_count = batches.iter().map(|b| b.num_rows()).sum();
        return print(&QueryOutput { schema, batches, row_count, truncated, tree_size, slot: None }, format);
    }
    std::io::stdout().lock().write_all(&body).map_err(|e| refused(format!("writing the result: {e}")))?;
    if truncated {
        eprintln!("actlog: the result was cut at the server's sql_rows_max");
    }
    Ok(())
}

pub fn sql(data: &Path, args: SqlArgs) -> CliResult {
    if let (Some(scheduler), Some(archive)) = (&args.cluster, &args.archive) {
        let q = args.query.as_deref().ok_or_else(|| usage("--cluster needs a QUERY"))?;
        // sql_time_ms bounds a cluster query as it bounds one node's: a job
        // Ballista cannot finish (an executor lost at the wrong moment) ends
        // with a clear error instead of a wait without end.
        let limit = std::time::Duration::from_millis(args.limits.sql_time_ms);
        let run = actlog_cluster::query(scheduler, archive, args.archive_endpoint.as_deref(), q);
        let batches = query_runtime()?.block_on(async { tokio::time::timeout(limit, run).await }).map_err(|_| {
            refused(format!(
                "sql_time_limit: the cluster query ran longer than the limit sql_time_ms = {}; \
                 narrow it, or raise --sql-time-ms",
                args.limits.sql_time_ms
            ))
        })??;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(actlog_query::datafusion::arrow::datatypes::Schema::empty()));
        let row_count = batches.iter().map(|b| b.num_rows()).sum();
        let out = QueryOutput { schema, batches, row_count, truncated: false, tree_size: 0, slot: None };
        return print(&out, args.format);
    }
    if let Some(url) = &args.remote.url {
        let token = args.remote.token.as_deref().ok_or_else(|| usage("--url needs --token (a query token)"))?;
        let q = args.query.as_deref().ok_or_else(|| usage("--url needs a QUERY (the REPL works on a data dir)"))?;
        return remote_sql(&args.remote, url, token, q, !args.no_index, args.format);
    }
    let (store, writable) = open_for_query(data)?;
    let mut opts = args.limits.engine_options();
    opts.segment_events = opts.segment_events.max(1);
    let engine = open_engine(store.clone(), opts)?;
    if writable {
        let n = engine.seal().map_err(|e| refused(format!("sealing segments: {e}")))?;
        if n > 0 {
            eprintln!("actlog: sealed {n} segment(s)");
        }
    }
    let rt = query_runtime()?;
    let mut qopts = QueryOptions { use_index: !args.no_index, ..Default::default() };
    let result = match &args.query {
        Some(q) => rt.block_on(engine.query(q, &qopts)).map_err(query_error).and_then(|out| print(&out, args.format)),
        None => repl(&rt, &engine, &mut qopts, args.format),
    };
    drop(engine);
    drop(rt);
    if writable && let Ok(s) = Arc::try_unwrap(store) {
        s.close()?;
    }
    result
}

fn repl(rt: &tokio::runtime::Runtime, engine: &Engine, qopts: &mut QueryOptions, format: Format) -> CliResult {
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "actlog sql: statements end with `;`. Tables: {}. \\q quits.",
            actlog_query::engine::TABLES.join(", ")
        );
    }
    let mut buf = String::new();
    let mut failed = false;
    let stdin = std::io::stdin();
    let prompt = |cont: bool| {
        if tty {
            eprint!("{}", if cont { "     -> " } else { "actlog> " });
        }
    };
    prompt(false);
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| refused(format!("reading stdin: {e}")))?;
        let t = line.trim();
        if buf.is_empty() && (t == "\\q" || t == "exit" || t == "quit") {
            break;
        }
        buf.push_str(&line);
        buf.push('\n');
        if !t.ends_with(';') {
            prompt(!buf.trim().is_empty());
            continue;
        }
        let stmt = std::mem::take(&mut buf);
        if let Some(v) = actlog_query::engine::parse_use_index(&stmt) {
            qopts.use_index = v;
            eprintln!("SET actlog.use_index = {v}");
        } else {
            match rt.block_on(engine.query(&stmt, qopts)) {
                Ok(out) => print(&out, format)?,
                Err(e) => {
                    failed = true;
                    eprintln!("error: {}: {}", e.code, e.message);
                }
            }
        }
        prompt(false);
    }
    if !buf.trim().is_empty() {
        return Err(usage("the last statement does not end with `;`"));
    }
    if failed && !tty { Err(refused("a statement failed")) } else { Ok(()) }
}

pub fn chain(data: &Path, args: ChainArgs) -> CliResult {
    let value = if let Some(url) = &args.remote.url {
        let token = args.remote.token.as_deref().ok_or_else(|| usage("--url needs --token (a query token)"))?;
        let agent = http_agent(&args.remote.tls)?;
        let mut resp = agent
            .get(&format!("{}/v1/chains/{}", url.trim_end_matches('/'), percent_encode(&args.event_id)))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .map_err(|e| refused(format!("cannot reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        let v: serde_json::Value =
            resp.body_mut().read_json().map_err(|e| refused(format!("the server sent invalid JSON: {e}")))?;
        if status != 200 {
            return Err(refused(format!("{}: {}", v["error"]["code"], v["error"]["message"])));
        }
        v
    } else {
        let store = open_store(data, Options { read_only: true, ..Options::default() }, None)?;
        actlog_query::chain::reconstruct(&store, &args.event_id)
            .map_err(|e| refused(e.to_string()))?
            .ok_or_else(|| refused(format!("no event with event_id `{}` in the ledger", args.event_id)))?
    };
    if args.json {
        println!("{value}");
    } else {
        print!("{}", actlog_query::chain::to_text(&value));
    }
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
