//! The `events` and `delegation_hops` tables: one snapshot of the ledger,
//! read from sealed Parquet segments plus the live tail, with filter
//! pushdown.
//!
//! Every filter is accepted as `Inexact`: DataFusion re-applies it above
//! the scan, so pushdown can only narrow what is read, never change an
//! answer. Two narrowings exist:
//! - **Index**: an equality (or `IN` list) on `event_id`, `actor_id`,
//!   `principal_id`, `session_id`, `task_id`, `decision_event_id` or `seq`
//!   reads just those events from RocksDB through the store's secondary
//!   indexes (written in the same batch as the leaf) and skips the scan.
//! - **Pruning**: ranges on `seq` and `event_time` drop segments whose
//!   recorded bounds cannot match; Parquet row-group statistics prune
//!   further inside a segment.

use std::collections::BTreeSet;
use std::sync::Arc;

use actlog_store::{IndexField, Store};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use crate::archive_files::ARCHIVE_URL;
use crate::rows::{self, Builder, EVENTS_QUERY_SCHEMA, HOPS_QUERY_SCHEMA};
use crate::segments::{self, Segment};

/// More index hits than this read the segments instead.
pub const INDEX_FETCH_MAX: usize = 50_000;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `events`
    Events,
    /// `delegation_hops`
    Hops,
}

/// What a query sees: the ledger up to `tree_size`, as sealed segments
/// covering `[0, sealed_end)` and tail batches covering `[sealed_end, tree_size)`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The committed tree size the query answers for.
    pub tree_size: u64,
    /// Sealed segments.
    pub segments: segments::Segments,
    /// Tail `events` batches.
    pub tail_events: Vec<RecordBatch>,
    /// Tail `delegation_hops` batches.
    pub tail_hops: Vec<RecordBatch>,
    /// The segments directory.
    pub dir: std::path::PathBuf,
    /// Whether retired segments can be read (an archive is attached).
    pub archive: bool,
}

impl Snapshot {
    fn sealed_end(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.end_seq)
    }
}

/// A ledger table bound to one snapshot.
#[derive(Debug, Clone)]
pub struct LedgerTable {
    kind: Kind,
    snap: Arc<Snapshot>,
    store: Arc<Store>,
    use_index: bool,
}

impl LedgerTable {
    /// A table over `snap`; `use_index` off forces scans (for checking that
    /// pushdown never changes an answer).
    pub fn new(kind: Kind, snap: Arc<Snapshot>, store: Arc<Store>, use_index: bool) -> LedgerTable {
        LedgerTable { kind, snap, store, use_index }
    }
}

/// A literal as a string, if it is one.
fn lit_str(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(c) => lit_str(&c.expr),
        _ => None,
    }
}

/// A literal as an integer, if it is one.
fn lit_i128(e: &Expr) -> Option<i128> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::UInt64(Some(x)) => Some(*x as i128),
            ScalarValue::UInt32(Some(x)) => Some(*x as i128),
            ScalarValue::Int64(Some(x)) => Some(*x as i128),
            ScalarValue::Int32(Some(x)) => Some(*x as i128),
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x as i128),
            ScalarValue::TimestampMicrosecond(Some(x), _) => Some(*x as i128 * 1_000),
            ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x as i128 * 1_000_000),
            ScalarValue::TimestampSecond(Some(x), _) => Some(*x as i128 * 1_000_000_000),
            _ => None,
        },
        Expr::Cast(c) => lit_i128(&c.expr),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// An index lookup that a filter asks for.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    Seq(Vec<u64>),
    EventId(Vec<String>),
    Field(IndexField, Vec<String>),
}

fn index_field(name: &str) -> Option<IndexField> {
    Some(match name {
        "actor_id" => IndexField::ActorId,
        "principal_id" => IndexField::PrincipalId,
        "session_id" => IndexField::SessionId,
        "task_id" => IndexField::TaskId,
        "decision_event_id" => IndexField::DecisionEventId,
        _ => return None,
    })
}

fn lookup_for(kind: Kind, col: &str, values: Vec<&Expr>) -> Option<Lookup> {
    if col == "seq" {
        let seqs: Option<Vec<u64>> = values.iter().map(|v| lit_i128(v).and_then(|x| u64::try_from(x).ok())).collect();
        return seqs.map(Lookup::Seq);
    }
    let strings: Vec<String> = values.iter().map(|v| lit_str(v)).collect::<Option<_>>()?;
    if col == "event_id" {
        return Some(Lookup::EventId(strings));
    }
    // Hops carry no actor/task columns of their own; only seq and event_id
    // are looked up for them.
    if kind == Kind::Events {
        return index_field(col).map(|f| Lookup::Field(f, strings));
    }
    None
}

fn lookup_of(kind: Kind, e: &Expr) -> Option<Lookup> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (col, v) = match (column_name(left), column_name(right)) {
                (Some(c), None) => (c, right.as_ref()),
                (None, Some(c)) => (c, left.as_ref()),
                _ => return None,
            };
            lookup_for(kind, col, vec![v])
        }
        Expr::InList(l) if !l.negated => lookup_for(kind, column_name(&l.expr)?, l.list.iter().collect()),
        _ => None,
    }
}

/// Inclusive bounds on a column, narrowed by range filters.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    lo: i128,
    hi: i128,
}

impl Bounds {
    const ALL: Bounds = Bounds { lo: i128::MIN, hi: i128::MAX };

    fn narrow(&mut self, col: &str, e: &Expr, target: &str) {
        let (c, op, v) = match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match (column_name(left), column_name(right)) {
                (Some(c), None) => (c, *op, lit_i128(right)),
                (None, Some(c)) => (c, op.swap().unwrap_or(*op), lit_i128(left)),
                _ => return,
            },
            Expr::Between(b) if !b.negated => {
                if column_name(&b.expr) == Some(target)
                    && col == target
                    && let (Some(lo), Some(hi)) = (lit_i128(&b.low), lit_i128(&b.high))
                {
                    self.lo = self.lo.max(lo);
                    self.hi = self.hi.min(hi);
                }
                return;
            }
            _ => return,
        };
        let Some(v) = v else { return };
        if c != target {
            return;
        }
        match op {
            Operator::Eq => {
                self.lo = self.lo.max(v);
                self.hi = self.hi.min(v);
            }
            Operator::Gt => self.lo = self.lo.max(v + 1),
            Operator::GtEq => self.lo = self.lo.max(v),
            Operator::Lt => self.hi = self.hi.min(v - 1),
            Operator::LtEq => self.hi = self.hi.min(v),
            _ => {}
        }
    }

    fn from_filters(filters: &[Expr], target: &str) -> Bounds {
        let mut b = Bounds::ALL;
        for f in filters {
            b.narrow(target, f, target);
        }
        b
    }

    fn overlaps(&self, lo: i128, hi: i128) -> bool {
        self.lo <= hi && lo <= self.hi
    }
}

/// The files a scan of `segs` reads: local segment files at
/// `actlog://segments/`, and the archived files of retired segments at
/// `actlog://archive/`.
fn scan_files(kind: Kind, segs: &[&Segment]) -> DfResult<(Vec<ListingTableUrl>, Vec<ListingTableUrl>)> {
    let (mut local, mut archived) = (Vec::new(), Vec::new());
    for s in segs {
        match (&s.archived, kind) {
            (None, Kind::Events) => {
                local.push(ListingTableUrl::parse(format!("{}{}", segments::SEGMENTS_URL, s.events_file))?)
            }
            (None, Kind::Hops) => {
                local.push(ListingTableUrl::parse(format!("{}{}", segments::SEGMENTS_URL, s.hops_file))?)
            }
            (Some(a), _) => {
                let files = if kind == Kind::Events { &a.events } else { &a.hops };
                for f in files {
                    archived.push(ListingTableUrl::parse(format!("{ARCHIVE_URL}{}", f.key))?);
                }
            }
        }
    }
    Ok((local, archived))
}

impl LedgerTable {
    fn schema_ref(&self) -> SchemaRef {
        match self.kind {
            Kind::Events => EVENTS_QUERY_SCHEMA.clone(),
            Kind::Hops => HOPS_QUERY_SCHEMA.clone(),
        }
    }

    /// The seqs an index lookup names, below the snapshot's tree size, or
    /// `None` when there are too many to fetch one by one.
    ///
    /// Lookups are ANDed. One that cannot narrow (a value too long to be
    /// indexed, or more than [`INDEX_FETCH_MAX`] hits, found without
    /// collecting them all) is left out: the filters are `Inexact`, so
    /// DataFusion applies every one of them again to what is fetched.
    fn resolve(&self, lookups: &[Lookup]) -> Result<Option<BTreeSet<u64>>, crate::Error> {
        let mut result: Option<BTreeSet<u64>> = None;
        'lookups: for l in lookups {
            let mut seqs = BTreeSet::new();
            match l {
                Lookup::Seq(v) => seqs.extend(v.iter().copied()),
                Lookup::EventId(ids) => {
                    for id in ids {
                        if let Some((seq, _)) = self.store.seq_of(id)? {
                            seqs.insert(seq);
                        }
                    }
                }
                Lookup::Field(f, values) => {
                    for v in values {
                        if v.len() > actlog_store::INDEX_VALUE_BYTES_MAX {
                            continue 'lookups; // not indexed
                        }
                        seqs.extend(self.store.index_lookup(*f, v, INDEX_FETCH_MAX)?);
                        if seqs.len() > INDEX_FETCH_MAX {
                            continue 'lookups;
                        }
                    }
                }
            }
            seqs.retain(|s| *s < self.snap.tree_size);
            result = Some(match result {
                None => seqs,
                Some(prev) => prev.intersection(&seqs).copied().collect(),
            });
        }
        Ok(result.filter(|s| s.len() <= INDEX_FETCH_MAX))
    }

    /// The rows of these seqs: those in the snapshot's tail are taken from
    /// its batches (no read, no parse); those below it, in sealed segments,
    /// are read from the ledger and decoded. (A row selection in a segment
    /// would decode a whole page of every column for each hit, far more than
    /// one envelope; the decode is about 1% of an indexed chain query.)
    fn fetch(&self, seqs: &BTreeSet<u64>) -> Result<RecordBatch, crate::Error> {
        let sealed_end = self.snap.sealed_end();
        let sealed: Vec<u64> = seqs.range(..sealed_end).copied().collect();
        let tail: Vec<u64> = seqs.range(sealed_end..).copied().collect();
        let events = self.store.events_at(&sealed)?;
        let names = self.store.with_registry(|r| r.key_names());
        let mut b = Builder::default();
        for ev in &events {
            b.push(&rows::decode(ev, &names)?);
        }
        let (e, h) = b.finish();
        let (decoded, target, tail_batches) = match self.kind {
            Kind::Events => (rows::for_query(&e, &EVENTS_QUERY_SCHEMA), &*EVENTS_QUERY_SCHEMA, &self.snap.tail_events),
            Kind::Hops => (rows::for_query(&h, &HOPS_QUERY_SCHEMA), &*HOPS_QUERY_SCHEMA, &self.snap.tail_hops),
        };
        if tail.is_empty() {
            return Ok(decoded);
        }
        let mut parts = vec![decoded];
        for batch in tail_batches {
            let col = batch.column(0).as_any().downcast_ref::<UInt64Array>().expect("seq is UInt64");
            // Rows are in seq order (several per seq in `delegation_hops`).
            let mut take: Vec<u32> = Vec::new();
            for s in &tail {
                let lo = col.values().partition_point(|v| v < s);
                let hi = col.values().partition_point(|v| v <= s);
                take.extend((lo as u32)..(hi as u32));
            }
            if !take.is_empty() {
                let idx = UInt32Array::from(take);
                parts.push(
                    datafusion::arrow::compute::take_record_batch(batch, &idx)
                        .map_err(|e| crate::Error::Corruption(format!("taking tail rows: {e}")))?,
                );
            }
        }
        datafusion::arrow::compute::concat_batches(target, &parts)
            .map_err(|e| crate::Error::Corruption(format!("joining index hits: {e}")))
    }
}

#[async_trait]
impl TableProvider for LedgerTable {
    fn schema(&self) -> SchemaRef {
        self.schema_ref()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema_ref();
        if self.use_index {
            let lookups: Vec<Lookup> = filters.iter().filter_map(|f| lookup_of(self.kind, f)).collect();
            if !lookups.is_empty() {
                let this = self.clone();
                let fetched = tokio::task::spawn_blocking(move || match this.resolve(&lookups)? {
                    Some(seqs) => this.fetch(&seqs).map(Some),
                    None => Ok(None),
                })
                .await
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
                .map_err(|e: crate::Error| datafusion::error::DataFusionError::External(Box::new(e)))?;
                if let Some(batch) = fetched {
                    return Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, projection.cloned())?);
                }
            }
        }
        // Scan: prune segments by seq and event_time bounds.
        let seq = Bounds::from_filters(filters, "seq");
        let time = if self.kind == Kind::Events { Bounds::from_filters(filters, "event_time") } else { Bounds::ALL };
        let segs: Vec<&Segment> = self
            .snap
            .segments
            .iter()
            .filter(|s| seq.overlaps(s.first_seq as i128, s.end_seq as i128 - 1))
            .filter(|s| time.overlaps(s.min_event_time as i128, s.max_event_time as i128))
            .collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let (local, archived) = scan_files(self.kind, &segs)?;
        if !archived.is_empty() && !self.snap.archive {
            let floor = segs.iter().filter(|s| s.archived.is_some()).map(|s| s.end_seq).max().unwrap_or(0);
            return Err(datafusion::error::DataFusionError::External(Box::new(crate::Error::Store(
                actlog_store::Error::Refused {
                    code: "archived",
                    message: format!(
                        "the rows of seqs below {floor} are in the archive; name it with --archive (or ACTLOG_ARCHIVE)"
                    ),
                },
            ))));
        }
        // One listing table per object store: ListingTable reads every
        // path it is given through the store of the first.
        for (urls, remote) in [(local, false), (archived, true)] {
            if urls.is_empty() {
                continue;
            }
            // Archived files are read piece by piece: no footer prefetch
            // (512 KiB by default), which would fetch and check the column
            // chunks that happen to lie before the footer. The footer's
            // piece is fetched whole by the first read of its last bytes.
            let format = match remote {
                true => ParquetFormat::default().with_metadata_size_hint(None),
                false => ParquetFormat::default(),
            };
            let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema.clone());
            let table =
                ListingTable::try_new(config)?.with_cache(state.runtime_env().cache_manager.get_file_statistic_cache());
            inputs.push(table.scan(state, projection, filters, limit).await?);
        }
        let sealed_end = self.snap.sealed_end();
        let tail = match self.kind {
            Kind::Events => &self.snap.tail_events,
            Kind::Hops => &self.snap.tail_hops,
        };
        if self.snap.tree_size > sealed_end
            && seq.overlaps(sealed_end as i128, self.snap.tree_size as i128 - 1)
            && tail.iter().any(|b| b.num_rows() > 0)
        {
            let parts: Vec<Vec<RecordBatch>> = tail.iter().map(|b| vec![b.clone()]).collect();
            let mut mem = MemorySourceConfig::try_new(&parts, schema.clone(), projection.cloned())?;
            mem = mem.with_limit(limit);
            inputs.push(datafusion::datasource::memory::DataSourceExec::from_data_source(mem));
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}
