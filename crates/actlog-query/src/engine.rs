//! The SQL engine: one read-only DataFusion session per query over a
//! consistent snapshot of the ledger, with named limits.
//!
//! A query sees the ledger at one committed tree size: sealed segments
//! below `sealed_end`, and the live tail read from RocksDB up to the tree
//! size read when the query started. Batches are committed whole, so no
//! query sees part of a batch, and `seq` has no gaps below the size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actlog_store::Store;
use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use futures::StreamExt;

use crate::archive_files::{ARCHIVE_URL, ArchivedFiles, ObjectCache};
use crate::provider::{Kind, LedgerTable, Snapshot};
use crate::segments::{self, Segment};
use crate::string_eq::ShortStringEqRule;
use crate::string_groups::StringGroupsRule;
use crate::{Error, budget, rows, tables};

/// Rows a query returns at most, by default (`sql_rows_max`).
pub const SQL_ROWS_MAX_DEFAULT: usize = 100_000;
/// Time a query may run, by default (`sql_time_ms`).
pub const SQL_TIME_DEFAULT: Duration = Duration::from_secs(30);
/// Memory a query's operators may hold, by default (`sql_memory_bytes`).
pub const SQL_MEMORY_BYTES_DEFAULT: usize = 512 << 20;
/// Tail rows decoded per batch.
const TAIL_BATCH_ROWS: u64 = 8_192;

/// Bytes of Arrow data a result may hold, by default (`sql_result_bytes_max`).
pub const SQL_RESULT_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// The per-query limits. Each has a name, used in errors and flags. The
/// same limits hold on every SQL surface: the CLI, HTTP and PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// `sql_rows_max`: rows returned; more are cut and `truncated` is set.
    pub rows_max: usize,
    /// `sql_time_ms`: wall time from parse to the last row.
    pub time: Duration,
    /// `sql_memory_bytes`: memory pool for sorts, joins and aggregates.
    pub memory_bytes: usize,
    /// `sql_result_bytes_max`: Arrow bytes of the rows returned; a larger
    /// result is refused (`sql_result_too_large`), not cut.
    pub result_bytes_max: usize,
    /// `sql_text_bytes_max`: length of the SQL text.
    pub text_bytes_max: usize,
    /// `sql_depth_max`: nesting of expressions and subqueries.
    pub depth_max: usize,
    /// `sql_parse_steps_per_byte`: the parser's work per byte of text,
    /// retries after backtracking included.
    pub parse_steps_per_byte: u64,
    /// `sql_function_bytes_max`: output of one amplifying function call
    /// (`repeat`, `lpad`, `range`, ...) for one batch.
    pub function_bytes_max: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            rows_max: SQL_ROWS_MAX_DEFAULT,
            time: SQL_TIME_DEFAULT,
            memory_bytes: SQL_MEMORY_BYTES_DEFAULT,
            result_bytes_max: SQL_RESULT_BYTES_MAX_DEFAULT,
            text_bytes_max: budget::SQL_TEXT_BYTES_MAX_DEFAULT,
            depth_max: budget::SQL_DEPTH_MAX_DEFAULT,
            parse_steps_per_byte: actlog_core::sql::SQL_PARSE_STEPS_PER_BYTE_DEFAULT,
            function_bytes_max: budget::SQL_FUNCTION_BYTES_MAX_DEFAULT,
        }
    }
}

/// Queries one engine runs at once, by default (`sql_requests_max`).
pub const SQL_REQUESTS_MAX_DEFAULT: usize = 4;

/// How the engine is set up.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Events per sealed segment.
    pub segment_events: u64,
    /// Per-query limits.
    pub limits: QueryLimits,
    /// `sql_requests_max`: queries running at once, over every surface
    /// together (each may hold `sql_memory_bytes` and
    /// `sql_result_bytes_max`). One more is refused with `sql_busy`.
    pub queries_max: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            segment_events: segments::SEGMENT_EVENTS_DEFAULT,
            limits: QueryLimits::default(),
            queries_max: SQL_REQUESTS_MAX_DEFAULT,
        }
    }
}

/// Per-query options.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Use the store's indexes for selective filters (default). Off forces
    /// scans, to show that pushdown never changes an answer.
    pub use_index: bool,
    /// Use the string fast paths (default): `GROUP BY` on string columns
    /// through [`StringGroupsExec`](crate::string_groups::StringGroupsExec),
    /// and short-string `=` / `<>` filters through
    /// [`ShortStringEq`](crate::string_eq::ShortStringEq). Off leaves both
    /// to DataFusion, to show that the answers are the same.
    pub fast_strings: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions { use_index: true, fast_strings: true }
    }
}

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Rows returned.
    pub row_count: usize,
    /// Whether `sql_rows_max` cut the result.
    pub truncated: bool,
    /// The tree size the query answered for.
    pub tree_size: u64,
    /// The query's `sql_requests_max` permit, held for as long as the result
    /// is: a result still being sent to a client counts as running.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

pub use actlog_core::sql::{QueryError, TABLES};

/// The corruption an archived file read reported, however deep DataFusion
/// and Parquet wrapped it.
fn corruption_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(Error::Corruption(m)) = err.downcast_ref::<Error>() {
            return Some(m.clone());
        }
        if let Some(object_store::Error::Generic { source, .. }) = err.downcast_ref::<object_store::Error>()
            && let Some(Error::Corruption(m)) = source.downcast_ref::<Error>()
        {
            return Some(m.clone());
        }
        cur = err.source();
    }
    None
}

fn from_df(e: DataFusionError, limits: &QueryLimits) -> QueryError {
    if let Some(m) = corruption_in(&e) {
        return QueryError { code: "storage_corruption", message: m };
    }
    let root = e.find_root();
    // Reading a segment file failed: never show its path or the I/O error
    // to a client.
    if matches!(root, DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) | DataFusionError::ParquetError(_))
        || root.to_string().contains(&format!("/{}/", crate::segments::SEGMENTS_DIR))
    {
        return QueryError { code: "internal", message: format!("reading the query segments failed: {root}") };
    }
    match root {
        DataFusionError::ResourcesExhausted(m) => QueryError {
            code: "sql_memory_limit",
            message: format!(
                "the query needs more memory than the limit sql_memory_bytes = {} allows ({m}); narrow it with WHERE or aggregate less",
                limits.memory_bytes
            ),
        },
        DataFusionError::External(inner) => {
            if let Some(budget::LimitExceeded(e)) = inner.downcast_ref::<budget::LimitExceeded>() {
                return e.clone();
            }
            match inner.downcast_ref::<Error>() {
                Some(Error::Corruption(m)) => QueryError { code: "storage_corruption", message: m.clone() },
                Some(Error::Store(actlog_store::Error::Refused { code, message })) => {
                    QueryError { code, message: message.clone() }
                }
                _ => QueryError { code: "internal", message: "the query failed inside the engine".into() },
            }
        }
        DataFusionError::SQL(..) | DataFusionError::Plan(..) | DataFusionError::SchemaError(..) => {
            QueryError::invalid(strip_df(&root.to_string()))
        }
        DataFusionError::NotImplemented(m) => QueryError::invalid(format!("not supported: {m}")),
        DataFusionError::Execution(m) => QueryError::invalid(strip_df(m)),
        DataFusionError::ArrowError(a, _) => QueryError::invalid(a.to_string()),
        _ => QueryError::invalid(strip_df(&root.to_string())),
    }
}

fn time_limit(limits: &QueryLimits) -> QueryError {
    QueryError {
        code: "sql_time_limit",
        message: format!(
            "the query ran longer than the limit sql_time_ms = {}; narrow it with WHERE on seq, event_time or an indexed id",
            limits.time.as_millis()
        ),
    }
}

/// DataFusion prefixes messages with its error kind; keep the text.
fn strip_df(m: &str) -> String {
    let m = m.trim();
    for p in ["Error during planning: ", "SQL error: ", "Schema error: ", "Execution error: "] {
        if let Some(rest) = m.strip_prefix(p) {
            return rest.to_string();
        }
    }
    m.to_string()
}

/// `SET actlog.use_index = true|false`: the one session setting clients may
/// change (the SQL front ends keep it per session). Returns the new value.
pub fn parse_use_index(sql: &str) -> Option<bool> {
    let s = sql.trim().trim_end_matches(';').trim().to_ascii_lowercase();
    let rest = s.strip_prefix("set")?.trim_start();
    let rest = rest.strip_prefix("actlog.use_index")?.trim_start();
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix("to"))?.trim();
    match rest.trim_matches('\'') {
        "true" | "on" => Some(true),
        "false" | "off" => Some(false),
        _ => None,
    }
}

/// Parses one statement and applies the sandbox, under the default limits.
pub fn check(sql: &str) -> Result<DfStatement, QueryError> {
    check_with(sql, &QueryLimits::default())
}

/// Parses one statement and applies the sandbox, the text size limit and
/// the depth limit.
pub fn check_with(sql: &str, limits: &QueryLimits) -> Result<DfStatement, QueryError> {
    if sql.len() > limits.text_bytes_max {
        return Err(QueryError {
            code: "sql_too_large",
            message: format!(
                "the query text is {} bytes, more than the limit sql_text_bytes_max = {}",
                sql.len(),
                limits.text_bytes_max
            ),
        });
    }
    if sql.trim().is_empty() {
        return Err(QueryError::invalid("the query is empty"));
    }
    // The parser alone: building a session state here (every function
    // registered) cost as much again as the query's own context.
    let budget = actlog_core::sql::ParseBudget::for_text(sql, limits.parse_steps_per_byte);
    let mut statements =
        DFParserBuilder::new(sql).with_dialect(&budget).build().and_then(|mut p| p.parse_statements()).map_err(
            |e| {
                if budget.exhausted() { budget.error(sql.len()) } else { QueryError::invalid(strip_df(&e.to_string())) }
            },
        )?;
    if statements.len() != 1 {
        return Err(QueryError::invalid(format!("send one statement per query ({} were sent)", statements.len())));
    }
    let st = statements.pop_front().expect("one statement");
    check_statement(&st, limits.depth_max)?;
    Ok(st)
}

fn check_statement(st: &DfStatement, depth_max: usize) -> Result<(), QueryError> {
    match st {
        DfStatement::Statement(s) => actlog_core::sql::check_statement(s, depth_max),
        DfStatement::CreateExternalTable(_) => {
            Err(QueryError::refused("CREATE EXTERNAL TABLE is refused: queries read only the ledger's tables"))
        }
        DfStatement::CopyTo(_) => Err(QueryError::refused("COPY is refused: queries neither read nor write files")),
        DfStatement::Explain(e) => check_statement(&e.statement, depth_max),
        DfStatement::Reset(_) => Err(QueryError::refused("RESET is refused: there is no session state to reset")),
    }
}

/// Tail chunk: `events` and `hops` rows of `[first, first + events.num_rows())`,
/// in the segment schema (what sealing writes), and in the query schema
/// (`Utf8View` strings), made when a query first reads the chunk.
#[derive(Debug)]
struct Chunk {
    first: u64,
    events: RecordBatch,
    hops: RecordBatch,
    query: std::sync::OnceLock<(RecordBatch, RecordBatch)>,
}

impl Chunk {
    fn new(first: u64, events: RecordBatch, hops: RecordBatch) -> Chunk {
        Chunk { first, events, hops, query: std::sync::OnceLock::new() }
    }

    fn query(&self) -> &(RecordBatch, RecordBatch) {
        self.query.get_or_init(|| {
            (
                rows::for_query(&self.events, &rows::EVENTS_QUERY_SCHEMA),
                rows::for_query(&self.hops, &rows::HOPS_QUERY_SCHEMA),
            )
        })
    }
}

struct Live {
    segments: segments::Segments,
    tail: Vec<Chunk>,
    /// One past the last seq in `tail` (≥ sealed end).
    tail_end: u64,
}

impl Live {
    fn sealed_end(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.end_seq)
    }

    /// The tail's rows of `[first, end)` in the segment schema, if the tail
    /// holds all of them: one batch each, as sealing from the ledger writes
    /// them, so the Parquet pages and the file bytes are the same.
    fn rows(&self, first: u64, end: u64) -> Option<(RecordBatch, RecordBatch)> {
        let (mut events, mut hops) = (Vec::new(), Vec::new());
        let mut at = first;
        for c in &self.tail {
            let c_end = c.first + c.events.num_rows() as u64;
            if c_end <= at {
                continue;
            }
            if at >= end || c.first > at {
                break;
            }
            let (lo, hi) = ((at - c.first) as usize, (end.min(c_end) - c.first) as usize);
            events.push(c.events.slice(lo, hi - lo));
            let seqs = c.hops.column(0).as_any().downcast_ref::<UInt64Array>().expect("hops seq is UInt64");
            let (hlo, hhi) = (
                seqs.values().partition_point(|s| *s < at),
                seqs.values().partition_point(|s| *s < c.first + hi as u64),
            );
            hops.push(c.hops.slice(hlo, hhi - hlo));
            at = c.first + hi as u64;
        }
        if at != end {
            return None;
        }
        let one = |schema: &SchemaRef, parts: Vec<RecordBatch>| match &parts[..] {
            [b] => b.clone(),
            _ => datafusion::arrow::compute::concat_batches(schema, &parts).expect("tail batches share a schema"),
        };
        Some((one(&rows::EVENTS_SCHEMA, events), one(&rows::HOPS_SCHEMA, hops)))
    }

    /// Drops tail rows that sealed segments now cover.
    fn trim(&mut self) {
        let end = self.sealed_end();
        self.tail.retain(|c| c.first + c.events.num_rows() as u64 > end);
        for c in &mut self.tail {
            if c.first < end {
                let skip = (end - c.first) as usize;
                c.events = c.events.slice(skip, c.events.num_rows() - skip);
                let seqs = c.hops.column(0).as_any().downcast_ref::<UInt64Array>().expect("hops seq is UInt64");
                let hop_skip = seqs.values().partition_point(|s| *s < end);
                c.hops = c.hops.slice(hop_skip, c.hops.num_rows() - hop_skip);
                c.first = end;
                c.query = std::sync::OnceLock::new();
            }
        }
        self.tail_end = self.tail_end.max(end);
    }
}

struct Inner {
    store: Arc<Store>,
    data_dir: PathBuf,
    opts: EngineOptions,
    live: Mutex<Live>,
    seal_lock: Mutex<()>,
    /// Parquet footers and per-file statistics of sealed segments, kept
    /// across queries. Segments never change once sealed, and each entry is
    /// checked against the file's size and mtime before use.
    caches: CacheManagerConfig,
    /// One permit per running query (`sql_requests_max`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Tail rows read from the ledger and decoded.
    rows_read: AtomicU64,
    /// The archive, rooted at its prefix, once attached: retired segments
    /// are read from it.
    archive: std::sync::OnceLock<Arc<dyn object_store::ObjectStore>>,
    /// Verified archived segment files kept across queries.
    archive_cache: std::sync::OnceLock<Arc<ObjectCache>>,
    /// Local files of retired segments, deleted once no query that may
    /// have planned with them can still run.
    retired: Mutex<Vec<(std::time::Instant, PathBuf)>>,
    /// The segment manifest's modification time and size when last read.
    manifest_stamp: Mutex<Option<(Option<std::time::SystemTime>, u64)>>,
}

/// Time past `sql_time_ms` before a retired segment's local files go.
const RETIRED_GRACE: Duration = Duration::from_secs(5);

/// Bytes of Parquet footers kept across queries.
const SEGMENT_FOOTER_CACHE_BYTES: usize = 64 << 20;
/// Bytes of per-file statistics kept across queries.
const SEGMENT_STATS_CACHE_BYTES: usize = 32 << 20;

/// The query engine of one open ledger. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("data_dir", &self.inner.data_dir).finish()
    }
}

impl Engine {
    /// Opens the engine over an open store: reads the segment manifest.
    pub fn open(store: Arc<Store>, opts: EngineOptions) -> Result<Engine, Error> {
        let data_dir = store.data_dir().to_path_buf();
        let segs = segments::load(&store, &data_dir)?;
        let end = segs.last().map_or(0, |s| s.end_seq);
        // Local files a retirement left behind (a crash before their
        // deletion): no query runs yet, so the next seal deletes them.
        let d = segments::dir(&data_dir);
        let now = std::time::Instant::now();
        let leftovers: Vec<(std::time::Instant, PathBuf)> = segs
            .iter()
            .filter(|s| s.archived.is_some())
            .flat_map(|s| segments::local_files(s).map(|f| d.join(f)))
            .filter(|p| p.exists())
            .map(|p| (now, p))
            .collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                data_dir,
                opts,
                live: Mutex::new(Live { segments: Arc::new(segs), tail: Vec::new(), tail_end: end }),
                slots: Arc::new(tokio::sync::Semaphore::new(opts.queries_max.max(1))),
                seal_lock: Mutex::new(()),
                rows_read: AtomicU64::new(0),
                archive: std::sync::OnceLock::new(),
                archive_cache: std::sync::OnceLock::new(),
                retired: Mutex::new(leftovers),
                manifest_stamp: Mutex::new(None),
                caches: CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::new(
                        DefaultCache::new(SEGMENT_FOOTER_CACHE_BYTES).with_name("segment footers"),
                    )))
                    .with_metadata_cache_limit(SEGMENT_FOOTER_CACHE_BYTES)
                    .with_file_statistics_cache(Some(Arc::new(
                        DefaultCache::new(SEGMENT_STATS_CACHE_BYTES).with_name("segment statistics"),
                    )))
                    .with_file_statistics_cache_limit(SEGMENT_STATS_CACHE_BYTES),
            }),
        })
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The limits queries run under.
    pub fn limits(&self) -> QueryLimits {
        self.inner.opts.limits
    }

    /// A running-query permit, or `sql_busy` when `sql_requests_max` run.
    fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, QueryError> {
        Arc::clone(&self.inner.slots).try_acquire_owned().map_err(|_| QueryError {
            code: "sql_busy",
            message: format!(
                "sql_requests_max ({}) queries are running; retry shortly",
                self.inner.opts.queries_max.max(1)
            ),
        })
    }

    /// Reads retired segments from `archive` (an object store rooted at
    /// the archive), keeping up to `cache_bytes` of verified files
    /// (`archive_segment_cache_bytes`). Only the first call counts.
    pub fn attach_archive(&self, archive: Arc<dyn object_store::ObjectStore>, cache_bytes: usize) {
        let _ = self.inner.archive_cache.set(Arc::new(ObjectCache::new(cache_bytes)));
        let _ = self.inner.archive.set(archive);
    }

    /// The archived segment files' cache, once an archive is attached.
    pub fn archive_cache(&self) -> Option<Arc<ObjectCache>> {
        self.inner.archive_cache.get().cloned()
    }

    /// Retires sealed segment `[first, end)`: checks that the archived
    /// files in `archived` (their bytes in `fetched`, by key) hold exactly
    /// its rows, records them in the manifest, and schedules its local
    /// files for deletion once every query that could be reading them has
    /// hit `sql_time_ms`. Returns false when no unretired segment covers
    /// exactly that range. Archived files that differ from the segment are
    /// corruption, and nothing changes.
    pub fn retire(
        &self,
        first: u64,
        end: u64,
        archived: segments::Archived,
        fetched: &std::collections::HashMap<String, bytes::Bytes>,
    ) -> Result<bool, Error> {
        let unretired = |segs: &[Segment]| {
            segs.iter().find(|s| s.first_seq == first && s.end_seq == end && s.archived.is_none()).cloned()
        };
        let Some(seg) = unretired(&self.inner.live.lock().expect("live lock").segments) else {
            return Ok(false);
        };
        // Outside the seal lock: a sealed segment's files never change, and
        // comparing holds a segment's worth of archived rows.
        let d = segments::dir(&self.inner.data_dir);
        segments::compare_archived(&d, &seg, &archived, fetched).map_err(|reason| {
            Error::Corruption(format!("segment [{first}, {end}) cannot be retired to the archive: {reason}"))
        })?;
        let _g = self.inner.seal_lock.lock().expect("seal lock");
        let before = self.inner.live.lock().expect("live lock").segments.clone();
        if unretired(&before).is_none() {
            return Ok(false); // retired meanwhile
        }
        let files = segments::local_files(&seg).map(|f| d.join(f));
        let after = segments::retire(&self.inner.data_dir, &before, first, end, archived)?;
        self.inner.live.lock().expect("live lock").segments = Arc::new(after);
        let due = std::time::Instant::now() + self.inner.opts.limits.time + RETIRED_GRACE;
        self.inner.retired.lock().expect("retired lock").extend(files.map(|p| (due, p)));
        Ok(true)
    }

    /// Deletes the local files of retired segments that are due. A file
    /// that cannot be deleted is logged and tried again at the next seal.
    fn delete_retired(&self) {
        let now = std::time::Instant::now();
        let due: Vec<PathBuf> = {
            let mut r = self.inner.retired.lock().expect("retired lock");
            let (due, wait): (Vec<_>, Vec<_>) = r.drain(..).partition(|(t, _)| *t <= now);
            *r = wait;
            due.into_iter().map(|(_, p)| p).collect()
        };
        let mut failed = Vec::new();
        for p in due {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("deleting the retired segment file {} failed (retried): {e}", p.display());
                    failed.push((now, p));
                }
            }
        }
        self.inner.retired.lock().expect("retired lock").extend(failed);
    }

    /// The sealed segments.
    pub fn segments(&self) -> Vec<Segment> {
        self.inner.live.lock().expect("live lock").segments.to_vec()
    }

    /// Tail rows read from the ledger and decoded so far.
    pub fn tail_rows_read(&self) -> u64 {
        self.inner.rows_read.load(Ordering::Relaxed)
    }

    /// Seals every full segment past the sealed end (blocking). Returns how
    /// many were sealed. Rows the tail already holds (a query decoded
    /// them) are written from it; only the others are read from the ledger.
    pub fn seal(&self) -> Result<usize, Error> {
        self.delete_retired();
        let _g = self.inner.seal_lock.lock().expect("seal lock");
        let before = self.inner.live.lock().expect("live lock").segments.to_vec();
        let n = before.len();
        let from_tail = |first: u64, end: u64| self.inner.live.lock().expect("live lock").rows(first, end);
        let after = segments::seal(
            &self.inner.store,
            &self.inner.data_dir,
            before,
            self.inner.opts.segment_events,
            &from_tail,
            |s| {
                let mut live = self.inner.live.lock().expect("live lock");
                live.segments = Arc::new(s.to_vec());
                live.trim();
            },
        )?;
        Ok(after.len() - n)
    }

    /// Takes in what another process wrote to the segment manifest since
    /// this engine read it: a read-only engine beside a running server sees
    /// the segments the server seals and retires (whose local files it
    /// deletes). Only a list that extends this one (the same ranges first)
    /// is taken.
    fn follow_manifest(&self, live: &mut Live) -> Result<(), Error> {
        let path = segments::dir(&self.inner.data_dir).join(segments::SEGMENTS_MANIFEST_FILE);
        let stamp = std::fs::metadata(&path).ok().map(|m| (m.modified().ok(), m.len()));
        let mut seen = self.inner.manifest_stamp.lock().expect("stamp lock");
        if *seen == stamp {
            return Ok(());
        }
        let loaded = segments::load(&self.inner.store, &self.inner.data_dir)?;
        *seen = stamp;
        let extends = loaded.len() >= live.segments.len()
            && live.segments.iter().zip(&loaded).all(|(a, b)| (a.first_seq, a.end_seq) == (b.first_seq, b.end_seq));
        if extends && loaded[..] != live.segments[..] {
            live.segments = Arc::new(loaded);
            live.trim();
            live.tail_end = live.tail_end.max(live.sealed_end());
        }
        Ok(())
    }

    /// Extends the tail to `to` with rows read and decoded from the ledger.
    fn extend_from_store(&self, live: &mut Live, to: u64) -> Result<(), Error> {
        let mut from = live.tail_end;
        while from < to {
            let end = (from + TAIL_BATCH_ROWS).min(to);
            let (events, hops) = segments::build(&self.inner.store, from, end)?;
            self.inner.rows_read.fetch_add(events.num_rows() as u64, Ordering::Relaxed);
            live.tail.push(Chunk::new(from, events, hops));
            from = end;
        }
        live.tail_end = live.tail_end.max(to);
        Ok(())
    }

    /// A consistent snapshot at the current tree size (blocking): the tail
    /// is brought up to that size first.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut live = self.inner.live.lock().expect("live lock");
        self.follow_manifest(&mut live)?;
        let size = self.inner.store.head().tree_size;
        if live.tail_end < size {
            self.extend_from_store(&mut live, size)?;
        }
        assert!(live.tail_end >= size, "the tail never runs behind a snapshot");
        // The tail may run ahead of `size` only if another snapshot read a
        // later head; cut it back so this snapshot is exactly `[0, size)`.
        let mut tail_events = Vec::new();
        let mut tail_hops = Vec::new();
        for c in &live.tail {
            if c.first >= size {
                break;
            }
            let (events, hops) = c.query();
            let n = ((size - c.first) as usize).min(events.num_rows());
            tail_events.push(events.slice(0, n));
            let seqs = hops.column(0).as_any().downcast_ref::<UInt64Array>().expect("hops seq is UInt64");
            let h = seqs.values().partition_point(|s| *s < size);
            tail_hops.push(hops.slice(0, h));
        }
        Ok(Snapshot {
            tree_size: size,
            segments: live.segments.clone(),
            tail_events,
            tail_hops,
            dir: segments::dir(&self.inner.data_dir),
            archive: self.inner.archive.get().is_some(),
        })
    }

    fn context(&self, snap: Snapshot, opts: &QueryOptions) -> Result<SessionContext, QueryError> {
        let limits = self.inner.opts.limits;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            // No spilling: a query never writes files.
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .with_cache_manager(self.inner.caches.clone())
            .build_arc()
            .map_err(|e| from_df(e, &limits))?;
        runtime.register_object_store(
            ObjectStoreUrl::local_filesystem().as_ref(),
            Arc::new(crate::local_files::InlineFiles::new()),
        );
        if !snap.segments.is_empty() {
            // Sealed segments exist, so their directory does.
            let url = ObjectStoreUrl::parse(segments::SEGMENTS_URL).expect("a valid URL");
            let files = crate::local_files::InlineFiles::rooted(&snap.dir).map_err(|e| QueryError {
                code: "internal",
                message: format!("opening the segments directory: {e}"),
            })?;
            runtime.register_object_store(url.as_ref(), Arc::new(files));
        }
        if let (Some(archive), Some(cache)) = (self.inner.archive.get(), self.inner.archive_cache.get()) {
            let allowed =
                snap.segments.iter().filter_map(|s| s.archived.as_ref()).flat_map(|a| a.events.iter().chain(&a.hops));
            let files = ArchivedFiles::new(Arc::clone(archive), Arc::clone(cache), allowed)
                .map_err(|e| QueryError { code: "storage_corruption", message: e.to_string() })?;
            let url = ObjectStoreUrl::parse(ARCHIVE_URL).expect("a valid URL");
            runtime.register_object_store(url.as_ref(), Arc::new(files));
        }
        let config = SessionConfig::new().with_information_schema(true).with_target_partitions(2);
        let mut state =
            SessionStateBuilder::new().with_config(config).with_runtime_env(runtime).with_default_features();
        if opts.fast_strings {
            state = state
                .with_physical_optimizer_rule(Arc::new(ShortStringEqRule))
                .with_physical_optimizer_rule(Arc::new(StringGroupsRule::default()));
        }
        let ctx = SessionContext::new_with_state(state.build());
        budget::guard_functions(&ctx, limits.function_bytes_max);
        let snap = Arc::new(snap);
        let store = self.inner.store.clone();
        let reg = |name: &str, t: Arc<dyn datafusion::catalog::TableProvider>| {
            ctx.register_table(name, t).map(|_| ()).map_err(|e| from_df(e, &limits))
        };
        reg("events", Arc::new(LedgerTable::new(Kind::Events, snap.clone(), store.clone(), opts.use_index)))?;
        reg("delegation_hops", Arc::new(LedgerTable::new(Kind::Hops, snap.clone(), store.clone(), opts.use_index)))?;
        reg(
            "checkpoints",
            Arc::new(tables::SmallTable {
                kind: tables::Small::Checkpoints,
                store: store.clone(),
                tree_size: snap.tree_size,
            }),
        )?;
        reg(
            "producer_keys",
            Arc::new(tables::SmallTable { kind: tables::Small::ProducerKeys, store, tree_size: snap.tree_size }),
        )?;
        Ok(ctx)
    }

    async fn snapshot_async(&self) -> Result<Snapshot, QueryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.snapshot())
            .await
            .map_err(|_| QueryError { code: "internal", message: "the snapshot task failed".into() })?
            .map_err(|e| QueryError {
                code: if matches!(e, Error::Corruption(_)) { "storage_corruption" } else { "internal" },
                message: e.to_string(),
            })
    }

    async fn plan(
        &self,
        sql: &str,
        opts: &QueryOptions,
    ) -> Result<(SessionContext, datafusion::logical_expr::LogicalPlan, u64), QueryError> {
        let limits = self.inner.opts.limits;
        let st = check_with(sql, &limits)?;
        let snap = self.snapshot_async().await?;
        let size = snap.tree_size;
        let ctx = self.context(snap, opts)?;
        tables::register_views(&ctx).await.map_err(|e| from_df(e, &limits))?;
        let plan = ctx.state().statement_to_plan(st).await.map_err(|e| from_df(e, &limits))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::refused(strip_df(&e.to_string())))?;
        Ok((ctx, plan, size))
    }

    /// Runs one read-only statement under the limits.
    pub async fn query(&self, sql: &str, opts: &QueryOptions) -> Result<QueryOutput, QueryError> {
        self.query_params(sql, Vec::new(), opts).await
    }

    /// Plans without running: the output schema and the number of `$n`
    /// placeholders.
    pub async fn describe(&self, sql: &str) -> Result<(SchemaRef, usize), QueryError> {
        let (this, sql, slot) = (self.clone(), sql.to_owned(), self.slot()?);
        let limits = self.limits();
        let grace = limits.time + Duration::from_millis(100);
        budget::run(
            async move {
                let _slot = slot;
                let limits = this.limits();
                let work = async {
                    let (_, plan, _) = this.plan(&sql, &QueryOptions::default()).await?;
                    let params = plan.get_parameter_types().map_err(|e| from_df(e, &limits))?.len();
                    Ok((Arc::new(plan.schema().as_arrow().clone()), params))
                };
                tokio::time::timeout(limits.time, work).await.unwrap_or_else(|_| Err(time_limit(&limits)))
            },
            grace,
            time_limit(&limits),
        )
        .await
    }

    /// Runs with `$1..$n` bound to text values (`None` is NULL), each cast
    /// to the type the planner inferred for it.
    ///
    /// Everything from the parse to dropping the plan runs on the SQL
    /// runtime ([`budget::run`]), whichever runtime the caller is on.
    pub async fn query_params(
        &self,
        sql: &str,
        params: Vec<Option<String>>,
        opts: &QueryOptions,
    ) -> Result<QueryOutput, QueryError> {
        let (this, sql, opts, slot) = (self.clone(), sql.to_owned(), *opts, self.slot()?);
        let limits = self.limits();
        let grace = limits.time + Duration::from_millis(100);
        // The permit lives in the task: a query that overran its time is
        // still counted until it has really stopped.
        let work = async move {
            let mut out = this.run_query(&sql, params, &opts).await?;
            out.slot = Some(Arc::new(slot));
            Ok(out)
        };
        budget::run(work, grace, time_limit(&limits)).await
    }

    async fn run_query(
        &self,
        sql: &str,
        params: Vec<Option<String>>,
        opts: &QueryOptions,
    ) -> Result<QueryOutput, QueryError> {
        let limits = self.inner.opts.limits;
        let run = async {
            let (ctx, mut plan, tree_size) = self.plan(sql, opts).await?;
            if !params.is_empty() {
                let types = plan.get_parameter_types().map_err(|e| from_df(e, &limits))?;
                let mut values = Vec::with_capacity(params.len());
                for (i, p) in params.into_iter().enumerate() {
                    let v = ScalarValue::Utf8(p);
                    let want = types.get(&format!("${}", i + 1)).cloned().flatten();
                    values.push(match want {
                        Some(t) => v.cast_to(&t).map_err(|e| {
                            QueryError::invalid(format!("parameter ${} does not convert to {t}: {e}", i + 1))
                        })?,
                        None => v,
                    });
                }
                plan = plan
                    .with_param_values(ParamValues::List(values.into_iter().map(Into::into).collect()))
                    .map_err(|e| from_df(e, &limits))?;
            }
            let df = ctx.execute_logical_plan(plan).await.map_err(|e| from_df(e, &limits))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await.map_err(|e| from_df(e, &limits))?;
            let mut batches = Vec::new();
            let mut rows = 0usize;
            let mut bytes = 0usize;
            let mut truncated = false;
            while let Some(b) = stream.next().await {
                let mut b = b.map_err(|e| from_df(e, &limits))?;
                if rows + b.num_rows() > limits.rows_max {
                    b = b.slice(0, limits.rows_max - rows);
                    truncated = true;
                }
                // Held until the caller has sent it: count what it holds.
                bytes = bytes.saturating_add(b.get_array_memory_size());
                if bytes > limits.result_bytes_max {
                    return Err(QueryError {
                        code: "sql_result_too_large",
                        message: format!(
                            "the result holds more than the limit sql_result_bytes_max = {} bytes (after {rows} rows); \
                             select fewer columns, add LIMIT, or aggregate",
                            limits.result_bytes_max
                        ),
                    });
                }
                rows += b.num_rows();
                batches.push(b);
                if truncated {
                    break;
                }
            }
            Ok(QueryOutput { schema, batches, row_count: rows, truncated, tree_size, slot: None })
        };
        tokio::time::timeout(limits.time, run).await.unwrap_or_else(|_| Err(time_limit(&limits)))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }
}
