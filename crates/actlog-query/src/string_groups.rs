//! A faster first phase for `GROUP BY` on string columns.
//!
//! DataFusion's hash aggregation hashes and compares the bytes of every
//! row's keys. Segment strings reach it as `Utf8View` arrays decoded from
//! Parquet dictionary pages, where the rows that hold one value share one
//! 16-byte view. [`StringGroupsExec`] takes the place of a `Partial`
//! `AggregateExec` whose keys are 1 to [`KEYS_MAX`] plain `Utf8View`
//! columns. Per batch it gives each distinct view a value id once (hashing
//! the bytes only then) and groups rows on the packed value ids.
//!
//! The aggregates stay DataFusion's own `GroupsAccumulator`s, so the
//! partial state this emits is the state the final aggregate expects. The
//! rule leaves every other aggregate alone: grouping sets, `DISTINCT`,
//! ordered aggregates, limits, dynamic filters, sorted input, and keys that
//! are not plain `Utf8View` columns.
//!
//! Memory: the groups are counted against the query's memory pool. When
//! the pool refuses, or [`EMIT_GROUPS`] groups are held, the groups so far
//! are emitted early and the table starts again; a partial aggregate may
//! emit a group more than once, and the final phase merges them.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringViewArray, StringViewBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult, config::ConfigOptions};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;
use hashbrown::{HashMap, HashTable};

/// Most key columns one group can have (their value ids pack into a `u128`).
pub const KEYS_MAX: usize = 4;

/// Groups held before the partial state is emitted early.
pub const EMIT_GROUPS: usize = 1 << 18;

/// The value id of NULL; real values count from 1.
const NULL_ID: u32 = 0;

/// Replaces eligible `Partial` aggregates with [`StringGroupsExec`].
#[derive(Debug, Clone, Copy)]
pub struct StringGroupsRule {
    /// Groups held before an early emit ([`EMIT_GROUPS`]; tests use less).
    pub emit_groups: usize,
}

impl Default for StringGroupsRule {
    fn default() -> Self {
        StringGroupsRule { emit_groups: EMIT_GROUPS }
    }
}

/// Rewrites `plan` bottom-up: each node `replace` returns `Some` for is
/// swapped for it. The string fast paths' rules share it.
pub(crate) fn replace_nodes(
    plan: Arc<dyn ExecutionPlan>,
    replace: impl Fn(&Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match replace(&node)? {
            Some(new) => Transformed::yes(new),
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

impl PhysicalOptimizerRule for StringGroupsRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        replace_nodes(plan, |node| {
            Ok(StringGroupsExec::try_new(node.clone(), self.emit_groups).map(|e| Arc::new(e) as Arc<dyn ExecutionPlan>))
        })
    }

    fn name(&self) -> &str {
        "actlog_string_groups"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A `Partial` aggregate over string keys; see the module docs.
#[derive(Debug)]
pub struct StringGroupsExec {
    /// The `AggregateExec` this stands in for: its expressions, schema and
    /// plan properties are this node's.
    agg: Arc<dyn ExecutionPlan>,
    /// Input column index of each key.
    keys: Vec<usize>,
    emit_groups: usize,
    /// Output rows and compute time, for `EXPLAIN ANALYZE`.
    metrics: ExecutionPlanMetricsSet,
}

impl StringGroupsExec {
    /// `Some` when `plan` is an aggregate this node can run.
    pub fn try_new(plan: Arc<dyn ExecutionPlan>, emit_groups: usize) -> Option<StringGroupsExec> {
        let agg = plan.downcast_ref::<AggregateExec>()?;
        if *agg.mode() != AggregateMode::Partial
            || agg.limit_options().is_some()
            || !agg.dynamic_expressions_produced().is_empty()
            || *agg.input_order_mode() != InputOrderMode::Linear
        {
            return None;
        }
        let gb = agg.group_expr();
        if gb.has_grouping_set()
            || gb.groups().len() != 1
            || !gb.null_expr().is_empty()
            || gb.expr().is_empty()
            || gb.expr().len() > KEYS_MAX
        {
            return None;
        }
        let input = agg.input().schema();
        let mut keys = Vec::with_capacity(gb.expr().len());
        for (e, _) in gb.expr() {
            let col = e.downcast_ref::<Column>()?;
            if input.fields().get(col.index())?.data_type() != &DataType::Utf8View {
                return None;
            }
            keys.push(col.index());
        }
        let plain = agg
            .aggr_expr()
            .iter()
            .all(|a| !a.is_distinct() && a.order_bys().is_empty() && a.groups_accumulator_supported());
        if !plain {
            return None;
        }
        Some(StringGroupsExec {
            agg: plan,
            keys,
            emit_groups: emit_groups.max(1),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    fn agg(&self) -> &AggregateExec {
        self.agg.downcast_ref::<AggregateExec>().expect("StringGroupsExec wraps an AggregateExec")
    }
}

impl DisplayAs for StringGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let agg = self.agg();
        let keys: Vec<String> = agg.group_expr().expr().iter().map(|(_, alias)| alias.clone()).collect();
        let aggs: Vec<&str> = agg.aggr_expr().iter().map(|a| a.name()).collect();
        write!(f, "StringGroupsExec: mode=Partial, gby=[{}], aggr=[{}]", keys.join(", "), aggs.join(", "))
    }
}

impl ExecutionPlan for StringGroupsExec {
    fn name(&self) -> &str {
        "StringGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.agg.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.agg().input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        self.agg.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let agg = self.agg.clone().replace_children(children, options)?;
        Ok(match StringGroupsExec::try_new(agg.clone(), self.emit_groups) {
            Some(exec) => Arc::new(exec),
            None => agg,
        })
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let agg = self.agg();
        let input = agg.input().execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("StringGroupsExec[{partition}]")).register(context.memory_pool());
        let grouper = Grouper::new(agg, self.keys.clone(), self.emit_groups, reservation)?;
        let schema = agg.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let stream = futures::stream::unfold(Some((input, grouper, baseline)), |state| async move {
            let (mut input, mut g, baseline) = state?;
            loop {
                let next = input.next().await;
                let timer = baseline.elapsed_compute().timer();
                let out = match next {
                    Some(Ok(batch)) => match g.push(&batch) {
                        Ok(None) => continue,
                        Ok(Some(out)) => (Ok(out), true),
                        Err(e) => (Err(e), false),
                    },
                    Some(Err(e)) => (Err(e), false),
                    None => match g.emit() {
                        Ok(Some(out)) => (Ok(out), false),
                        Ok(None) => return None,
                        Err(e) => (Err(e), false),
                    },
                };
                timer.done();
                if let (Ok(batch), _) = &out {
                    baseline.record_output(batch.num_rows());
                }
                let (result, more) = out;
                return Some((result, more.then_some((input, g, baseline))));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One batch's views -> local ids, by open addressing. A view fixes its
/// bytes within one array, so equal views are equal values; unequal views
/// may still be equal values and meet again in [`Values`]. Entries of
/// earlier batches are told apart by `epoch` instead of being cleared.
struct ViewTable {
    slots: Vec<Slot>,
    bits: u32,
    len: usize,
    epoch: u32,
    /// Random odd multipliers, so that crafted strings cannot be made to
    /// collide (multiply-add hashing of the view's two halves).
    mul: [u64; 2],
}

#[derive(Clone, Copy, Default)]
struct Slot {
    view: u128,
    epoch: u32,
    local: u32,
}

impl ViewTable {
    fn new(hasher: &foldhash::fast::RandomState) -> ViewTable {
        use std::hash::BuildHasher;
        let mul = [hasher.hash_one(1u8) | 1, hasher.hash_one(2u8) | 1];
        ViewTable { slots: vec![Slot::default(); 256], bits: 8, len: 0, epoch: 1, mul }
    }

    fn reset(&mut self) {
        self.len = 0;
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.slots.fill(Slot::default());
            self.epoch = 1;
        }
    }

    #[inline]
    fn slot(&self, view: u128) -> usize {
        let h = (view as u64).wrapping_mul(self.mul[0]).wrapping_add(((view >> 64) as u64).wrapping_mul(self.mul[1]));
        (h >> (64 - self.bits)) as usize
    }

    /// The local id of `view`, if this batch has seen it.
    #[inline]
    fn get(&self, view: u128) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(view);
        loop {
            let s = &self.slots[i];
            if s.epoch != self.epoch {
                return None;
            }
            if s.view == view {
                return Some(s.local);
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `view` (not present) as `local`.
    fn insert(&mut self, view: u128, local: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(view);
        while self.slots[i].epoch == self.epoch {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { view, epoch: self.epoch, local };
        self.len += 1;
        // Kept at most a quarter full: a second probe is a mispredicted branch.
        if self.len * 4 > self.slots.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.bits += 1;
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.epoch == self.epoch) {
            let mut i = self.slot(s.view);
            while self.slots[i].epoch == self.epoch {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }
}

/// One key column's distinct values since the last emit, interned.
struct Values {
    /// Value ids, hashed by their bytes.
    table: HashTable<u32>,
    /// Value `id`'s bytes are `bytes[ends[id - 1]..ends[id]]`; `ends[0]` is 0.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    views: ViewTable,
    /// This batch's local id -> value id; local 0 is NULL.
    locals: Vec<u32>,
}

impl Values {
    fn new(hasher: &foldhash::fast::RandomState) -> Values {
        Values {
            table: HashTable::new(),
            bytes: Vec::new(),
            ends: vec![0],
            views: ViewTable::new(hasher),
            locals: Vec::new(),
        }
    }

    fn get(&self, id: u32) -> &[u8] {
        let id = id as usize;
        &self.bytes[self.ends[id - 1]..self.ends[id]]
    }

    fn intern(&mut self, v: &[u8], hasher: &foldhash::fast::RandomState) -> u32 {
        use std::hash::BuildHasher;
        let h = hasher.hash_one(v);
        let (bytes, ends) = (&self.bytes, &self.ends);
        let eq = |id: &u32| &bytes[ends[*id as usize - 1]..ends[*id as usize]] == v;
        if let Some(id) = self.table.find(h, eq) {
            return *id;
        }
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 values between emits");
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len());
        let (bytes, ends) = (&self.bytes, &self.ends);
        self.table.insert_unique(h, id, |id| hasher.hash_one(&bytes[ends[*id as usize - 1]..ends[*id as usize]]));
        id
    }

    /// Writes each row's local id into `out` and fills `locals`.
    fn ids(&mut self, arr: &StringViewArray, out: &mut Vec<u32>, hasher: &foldhash::fast::RandomState) {
        out.clear();
        self.locals.clear();
        self.locals.push(NULL_ID);
        self.views.reset();
        let views = arr.views();
        let nulls = arr.nulls();
        // Branch-free on NULL for the common case (a view seen before): a
        // NULL row's view is not meaningful, so its local id is masked to
        // 0, and it is never interned.
        for (i, &view) in views.iter().enumerate() {
            let valid = nulls.is_none_or(|n| n.is_valid(i));
            let local = match self.views.get(view) {
                Some(local) => local,
                None if !valid => 0,
                None => {
                    let local = self.locals.len() as u32;
                    let id = self.intern(arr.value(i).as_bytes(), hasher);
                    self.locals.push(id);
                    self.views.insert(view, local);
                    local
                }
            };
            out.push(local * valid as u32);
        }
    }

    fn size(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * size_of::<usize>()
            + self.table.capacity() * (size_of::<u32>() + 1)
            + self.views.size()
            + self.locals.capacity() * size_of::<u32>()
    }

    /// Forgets the values (after an emit), keeping the view table.
    fn clear(&mut self) {
        self.table = HashTable::new();
        self.bytes = Vec::new();
        self.ends = vec![0];
    }
}

/// The largest per-batch table of key combinations (product of each key's
/// distinct values in the batch) used instead of hashing every row.
const COMBOS_MAX: usize = 1 << 13;

/// One partition's groups.
struct Grouper {
    keys: Vec<usize>,
    values: Vec<Values>,
    /// Packed key -> group, for two or more keys.
    groups: HashMap<u128, u32>,
    /// Value id -> group + 1 (0 for none yet), for one key.
    dense: Vec<u32>,
    /// Group -> packed key.
    group_keys: Vec<u128>,
    /// Scratch: each key column's local ids, this batch's key combination
    /// -> group + 1, and the rows' groups.
    ids: Vec<Vec<u32>>,
    combos: Vec<u32>,
    group_indices: Vec<usize>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    schema: SchemaRef,
    hasher: foldhash::fast::RandomState,
    emit_groups: usize,
    reservation: MemoryReservation,
}

impl Grouper {
    fn new(
        agg: &AggregateExec,
        keys: Vec<usize>,
        emit_groups: usize,
        reservation: MemoryReservation,
    ) -> DfResult<Grouper> {
        let accs = agg.aggr_expr().iter().map(|a| a.create_groups_accumulator()).collect::<DfResult<Vec<_>>>()?;
        let hasher = foldhash::fast::RandomState::default();
        Ok(Grouper {
            values: keys.iter().map(|_| Values::new(&hasher)).collect(),
            combos: Vec::new(),
            ids: keys.iter().map(|_| Vec::new()).collect(),
            keys,
            groups: HashMap::new(),
            dense: Vec::new(),
            group_keys: Vec::new(),
            group_indices: Vec::new(),
            args: agg.aggr_expr().iter().map(|a| a.expressions()).collect(),
            filters: agg.filter_expr().to_vec(),
            accs,
            schema: agg.schema(),
            hasher,
            emit_groups,
            reservation,
        })
    }

    /// Adds one input batch; returns groups emitted early, if any.
    fn push(&mut self, batch: &RecordBatch) -> DfResult<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        for (c, &col) in self.keys.iter().enumerate() {
            let arr = batch.column(col).as_string_view_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("StringGroupsExec: key column {col} is not Utf8View"))
            })?;
            self.values[c].ids(arr, &mut self.ids[c], &self.hasher);
        }
        self.group_indices.clear();
        self.group_indices.reserve(n);
        if self.keys.len() == 1 {
            let values = &self.values[0];
            self.dense.resize(values.ends.len(), 0);
            for &local in &self.ids[0] {
                let id = values.locals[local as usize];
                let slot = &mut self.dense[id as usize];
                if *slot == 0 {
                    self.group_keys.push(id as u128);
                    *slot = self.group_keys.len() as u32;
                }
                self.group_indices.push(*slot as usize - 1);
            }
        } else {
            // Each row's key combination as one index into `combos`, when
            // the batch's combinations are few; else hash every row.
            let product = self.values.iter().try_fold(1usize, |p, v| p.checked_mul(v.locals.len()));
            let dense = product.is_some_and(|p| p <= COMBOS_MAX);
            if dense {
                self.combos.clear();
                self.combos.resize(product.unwrap_or(0), 0);
            }
            for row in 0..n {
                let mut combo = 0usize;
                if dense {
                    for (ids, v) in self.ids.iter().zip(&self.values).rev() {
                        combo = combo * v.locals.len() + ids[row] as usize;
                    }
                    let g = self.combos[combo];
                    if g != 0 {
                        self.group_indices.push(g as usize - 1);
                        continue;
                    }
                }
                let mut key = 0u128;
                for (c, (ids, v)) in self.ids.iter().zip(&self.values).enumerate() {
                    key |= (v.locals[ids[row] as usize] as u128) << (32 * c);
                }
                let next = self.group_keys.len() as u32;
                let g = *self.groups.entry(key).or_insert(next);
                if g == next {
                    self.group_keys.push(key);
                }
                if dense {
                    self.combos[combo] = g + 1;
                }
                self.group_indices.push(g as usize);
            }
        }
        let total = self.group_keys.len();
        for ((acc, args), filter) in self.accs.iter_mut().zip(&self.args).zip(&self.filters) {
            let values = args
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<DfResult<Vec<ArrayRef>>>()?;
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(n)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = match &filter {
                Some(a) => Some(a.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal("StringGroupsExec: an aggregate FILTER is not boolean".into())
                })?),
                None => None,
            };
            acc.update_batch(&values, &self.group_indices, filter, total)?;
        }
        if total >= self.emit_groups || self.reservation.try_resize(self.size()).is_err() {
            return self.emit();
        }
        Ok(None)
    }

    fn size(&self) -> usize {
        self.values.iter().map(Values::size).sum::<usize>()
            + self.groups.capacity() * (size_of::<(u128, u32)>() + 1)
            + self.dense.capacity() * size_of::<u32>()
            + self.combos.capacity() * size_of::<u32>()
            + self.group_keys.capacity() * size_of::<u128>()
            + self.group_indices.capacity() * size_of::<usize>()
            + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The partial state of every group so far, and a fresh start.
    fn emit(&mut self) -> DfResult<Option<RecordBatch>> {
        if self.group_keys.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, values) in self.values.iter().enumerate() {
            let mut b = StringViewBuilder::with_capacity(self.group_keys.len());
            for &key in &self.group_keys {
                let id = (key >> (32 * c)) as u32;
                if id == NULL_ID {
                    b.append_null();
                } else {
                    let s = std::str::from_utf8(values.get(id))
                        .map_err(|e| DataFusionError::Internal(format!("StringGroupsExec: a key is not UTF-8: {e}")))?;
                    b.append_value(s);
                }
            }
            columns.push(Arc::new(b.finish()));
        }
        for acc in &mut self.accs {
            columns.extend(acc.state(EmitTo::All)?);
        }
        self.values.iter_mut().for_each(Values::clear);
        self.groups = HashMap::new();
        self.dense = Vec::new();
        self.group_keys = Vec::new();
        self.reservation.free();
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}
