//! `column = 'short literal'` on `Utf8View` as one 16-byte compare per row.
//!
//! A string of at most 12 bytes lives wholly inside its 16-byte view,
//! zero-padded: arrow's validation refuses a view with non-zero padding,
//! every arrow and DataFusion builder pads with zeros, and arrow's own
//! comparison makes the same assumption (this is as safe as it, no safer). So a value equals a literal of at most 12 bytes exactly
//! when the two views are equal. arrow's general comparison instead
//! branches on length, prefix and buffers for every row, which costs more
//! than the rest of a filter like `effect = 'deny'` over a full scan.
//!
//! [`ShortStringEqRule`] rewrites such `=` and `<>` comparisons inside
//! `FilterExec` predicates into [`ShortStringEq`], run by
//! [`ShortStringFilterExec`]; everything else (longer literals, other
//! types, other operators) is left to DataFusion.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringViewArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, config::ConfigOptions};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

use crate::string_groups::replace_nodes;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions,
};

/// The longest literal compared as a view: what fits inside one.
pub const INLINE_MAX: usize = 12;

/// Rewrites short-string equality in `FilterExec` predicates.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortStringEqRule;

impl PhysicalOptimizerRule for ShortStringEqRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        replace_nodes(plan, |node| {
            Ok(ShortStringFilterExec::try_new(node.clone())?.map(|e| Arc::new(e) as Arc<dyn ExecutionPlan>))
        })
    }

    fn name(&self) -> &str {
        "actlog_short_string_eq"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A `FilterExec` that runs with [`ShortStringEq`] in its predicate.
///
/// Its plan properties stay the original filter's. DataFusion learns that
/// `effect = 'deny'` makes `effect` constant only from a `BinaryExpr`, and
/// rules that ran before this one (sorts for window partitions, for one)
/// relied on that; a filter rebuilt around the rewritten predicate would
/// forget it and make those plans fail at execution.
#[derive(Debug)]
pub struct ShortStringFilterExec {
    /// The planned filter: its properties, children and display.
    filter: Arc<dyn ExecutionPlan>,
    /// The same filter with the rewritten predicate, which is what runs.
    fast: Arc<dyn ExecutionPlan>,
}

impl ShortStringFilterExec {
    /// `Some` when `plan` is a `FilterExec` with a comparison to rewrite.
    pub fn try_new(plan: Arc<dyn ExecutionPlan>) -> DfResult<Option<ShortStringFilterExec>> {
        let Some(filter) = plan.downcast_ref::<FilterExec>() else {
            return Ok(None);
        };
        let schema = filter.input().schema();
        let predicate = filter.predicate().clone().transform_up(|e| {
            Ok(match ShortStringEq::try_from_binary(&e, &schema) {
                Some(eq) => Transformed::yes(Arc::new(eq) as Arc<dyn PhysicalExpr>),
                None => Transformed::no(e),
            })
        })?;
        if !predicate.transformed {
            return Ok(None);
        }
        let fast = Arc::new(FilterExecBuilder::from(filter).with_predicate(predicate.data).build()?);
        Ok(Some(ShortStringFilterExec { filter: plan, fast }))
    }
}

impl DisplayAs for ShortStringFilterExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ShortString")?;
        self.fast.fmt_as(t, f)
    }
}

impl ExecutionPlan for ShortStringFilterExec {
    fn name(&self) -> &str {
        "ShortStringFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.filter.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.filter.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        self.fast.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let filter = self.filter.clone().replace_children(children, options)?;
        Ok(match ShortStringFilterExec::try_new(filter.clone())? {
            Some(exec) => Arc::new(exec),
            None => filter,
        })
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.fast.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.fast.metrics()
    }
}

/// `col = 'literal'` (or `<>`) for a `Utf8View` column and a literal of at
/// most [`INLINE_MAX`] bytes. NULL stays NULL.
#[derive(Debug, Clone, Eq)]
pub struct ShortStringEq {
    col: Arc<dyn PhysicalExpr>,
    value: String,
    view: u128,
    negated: bool,
}

impl PartialEq for ShortStringEq {
    fn eq(&self, other: &Self) -> bool {
        self.col.eq(&other.col) && self.value == other.value && self.negated == other.negated
    }
}

impl Hash for ShortStringEq {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.col.hash(state);
        self.value.hash(state);
        self.negated.hash(state);
    }
}

impl ShortStringEq {
    /// `Some` when `e` is such a comparison against `schema`'s columns.
    pub fn try_from_binary(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<ShortStringEq> {
        let b = e.downcast_ref::<BinaryExpr>()?;
        let negated = match b.op() {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return None,
        };
        let (col, lit) = match (b.left().downcast_ref::<Column>(), b.right().downcast_ref::<Literal>()) {
            (Some(_), Some(lit)) => (b.left(), lit),
            _ => (b.right(), b.left().downcast_ref::<Literal>()?),
        };
        let index = col.downcast_ref::<Column>()?.index();
        if schema.fields().get(index)?.data_type() != &DataType::Utf8View {
            return None;
        }
        let value = match lit.value() {
            ScalarValue::Utf8View(Some(s)) | ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s,
            _ => return None,
        };
        if value.len() > INLINE_MAX {
            return None;
        }
        // The canonical (zero-padded) view of the literal, as arrow makes it.
        let view = StringViewArray::from_iter_values([value.as_str()]).views()[0];
        Some(ShortStringEq { col: col.clone(), value: value.clone(), view, negated })
    }
}

impl fmt::Display for ShortStringEq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "view_ne" } else { "view_eq" };
        write!(f, "{op}({}, '{}')", self.col, self.value.replace('\'', "''"))
    }
}

impl PhysicalExpr for ShortStringEq {
    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> DfResult<bool> {
        self.col.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let values = self.col.evaluate(batch)?.into_array(batch.num_rows())?;
        let arr = values
            .as_string_view_opt()
            .ok_or_else(|| DataFusionError::Internal(format!("{self}: the column is not Utf8View")))?;
        // 64 rows per output word, each compared as two 64-bit halves
        // without a branch (the loop vectorizes; a u128 compare per bit
        // through `collect_bool` did not).
        let views = arr.views();
        let (lo, hi) = (self.view as u64, (self.view >> 64) as u64);
        let flip = if self.negated { u64::MAX } else { 0 };
        let mut words: Vec<u64> = Vec::with_capacity(views.len().div_ceil(64));
        for chunk in views.chunks(64) {
            let mut word = 0u64;
            for (j, v) in chunk.iter().enumerate() {
                let eq = ((*v as u64) == lo) & (((*v >> 64) as u64) == hi);
                word |= (eq as u64) << j;
            }
            // Bits past the last row stay 0, for `<>` too.
            let used = if chunk.len() == 64 { u64::MAX } else { (1u64 << chunk.len()) - 1 };
            words.push((word ^ flip) & used);
        }
        let bits = BooleanBuffer::new(words.into(), 0, views.len());
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(bits, arr.nulls().cloned()))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.col]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn PhysicalExpr>>) -> DfResult<Arc<dyn PhysicalExpr>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!("{self}: expected one child, got {}", children.len())));
        }
        Ok(Arc::new(ShortStringEq { col: children.swap_remove(0), ..(*self).clone() }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "<>" } else { "=" };
        match self.col.downcast_ref::<Column>() {
            Some(c) => write!(f, "{} {op} '{}'", c.name(), self.value.replace('\'', "''")),
            None => write!(f, "{} {op} '{}'", self.col, self.value.replace('\'', "''")),
        }
    }
}
