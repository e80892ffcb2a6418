//! The string fast paths (StringGroupsExec, ShortStringEq) against
//! DataFusion's own operators, on random data: nulls, empty, short (inline)
//! and long strings, views shared or not, several partitions and batches,
//! and early emits after a few groups.

use std::sync::Arc;

use actlog_query::datafusion;
use actlog_query::string_eq::ShortStringEqRule;
use actlog_query::string_groups::StringGroupsRule;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringViewBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "",
    "a",
    "allow",
    "deny",
    "exactly12chr",
    "exactly12chX",
    "thirteen_char",
    "mcp.github.create_issue",
    "mcp.github.create_issues",
    "agent:planner/sub-agent:retriever",
    "ünïcødé-välue-longer-than-twelve",
];

/// One column: `None` is NULL, `Some(i)` is `WORDS[i]`.
fn column() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![1 => Just(None), 6 => (0..WORDS.len()).prop_map(Some)]
}

fn strings(vals: &[Option<usize>], dedup: bool) -> ArrayRef {
    let mut b = StringViewBuilder::new();
    if dedup {
        b = b.with_deduplicate_strings();
    }
    for v in vals {
        match v {
            Some(i) => b.append_value(WORDS[*i]),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

type Row = (Option<usize>, Option<usize>, Option<usize>, Option<i64>);

fn row() -> impl Strategy<Value = Row> {
    (column(), column(), column(), prop_oneof![1 => Just(None), 4 => (-50i64..50).prop_map(Some)])
}

/// Each query, and what its plan must show: the fast paths really run.
const QUERIES: &[(&str, &[&str])] = &[
    ("SELECT a, count(*) FROM t GROUP BY a", &["StringGroupsExec"]),
    ("SELECT a, b, count(*), count(d), sum(d), min(d), max(d), avg(d) FROM t GROUP BY a, b", &["StringGroupsExec"]),
    ("SELECT c, b, a, count(*) FILTER (WHERE d > 0), count(c) FROM t GROUP BY a, b, c", &["StringGroupsExec"]),
    ("SELECT b, min(a), max(c), count(*) FROM t WHERE d IS NOT NULL GROUP BY b", &["StringGroupsExec"]),
    ("SELECT a, b, c, a AS a2, count(*) FROM t GROUP BY a, b, c, a", &["StringGroupsExec"]),
    ("SELECT a, count(*) FROM t WHERE b = 'deny' GROUP BY a", &["StringGroupsExec", "view_eq(b@"]),
    ("SELECT count(*), count(a) FROM t WHERE a <> 'allow'", &["view_ne(a@"]),
    ("SELECT b, count(*) FROM t WHERE a = '' OR c = 'exactly12chr' GROUP BY b", &["view_eq(a@", "view_eq(c@"]),
    ("SELECT d FROM t WHERE 'a' = c AND b <> 'thirteen_char'", &["view_eq(c@"]),
    ("SELECT d FROM t WHERE c = 'ünïcødé' OR a = 'mcp.github.create_issue'", &["view_eq(c@"]),
    ("SELECT d, count(*) OVER (PARTITION BY a) FROM t WHERE a = 'deny'", &["view_eq(a@"]),
    ("SELECT a, b, sum(d) OVER (PARTITION BY a, b) FROM t WHERE a = 'deny' AND b <> ''", &["view_eq(a@", "view_ne(b@"]),
];

fn context(parts: Vec<Vec<RecordBatch>>, rule: Option<StringGroupsRule>) -> SessionContext {
    let schema = parts[0][0].schema();
    let config = SessionConfig::new().with_target_partitions(3);
    let mut state = SessionStateBuilder::new().with_config(config).with_default_features();
    if let Some(rule) = rule {
        state = state
            .with_physical_optimizer_rule(Arc::new(ShortStringEqRule))
            .with_physical_optimizer_rule(Arc::new(rule));
    }
    let ctx = SessionContext::new_with_state(state.build());
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, parts).unwrap())).unwrap();
    ctx
}

async fn answers(ctx: &SessionContext) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (q, _) in QUERIES {
        let batches = ctx.sql(q).await.unwrap().collect().await.unwrap();
        let mut rows: Vec<String> = Vec::new();
        for b in &batches {
            let cols: Vec<_> = b
                .columns()
                .iter()
                .map(|c| {
                    datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default()).unwrap()
                })
                .collect();
            for r in 0..b.num_rows() {
                rows.push(cols.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join("|"));
            }
        }
        rows.sort();
        out.push(rows);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn same_answers_as_datafusion(
        batches in prop::collection::vec((prop::collection::vec(row(), 0..300), any::<bool>()), 1..7),
        emit_groups in prop_oneof![Just(1usize), Just(3), Just(1 << 18)],
    ) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new("b", DataType::Utf8View, true),
            Field::new("c", DataType::Utf8View, true),
            Field::new("d", DataType::Int64, true),
        ]));
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(), Vec::new()];
        for (i, (rows, dedup)) in batches.iter().enumerate() {
            let col = |f: fn(&Row) -> Option<usize>| strings(&rows.iter().map(f).collect::<Vec<_>>(), *dedup);
            let batch = RecordBatch::try_new(schema.clone(), vec![
                col(|r| r.0),
                col(|r| r.1),
                col(|r| r.2),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
            ]).unwrap();
            parts[i % 2].push(batch);
        }
        if parts[1].is_empty() {
            parts.pop();
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ours = context(parts.clone(), Some(StringGroupsRule { emit_groups }));
        let theirs = context(parts, None);
        for (q, shows) in QUERIES {
            let plan = rt.block_on(async {
                let plan = ours.sql(q).await.unwrap().create_physical_plan().await.unwrap();
                datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string()
            });
            // One partition of one batch plans a single-phase aggregate
            // (no Partial phase), which the rule leaves to DataFusion by
            // design; every other plan must show the fast path.
            let single_phase = plan.contains("mode=SinglePartitioned") && !plan.contains("mode=Partial");
            // With no rows at all, exact statistics answer some queries
            // without a scan (a constant projection): no operator to show.
            let no_scan = !plan.contains("DataSourceExec");
            for s in *shows {
                if (*s == "StringGroupsExec" && single_phase) || no_scan {
                    continue;
                }
                prop_assert!(plan.contains(s), "{} must show {}:\n{}", q, s, plan);
            }
        }
        prop_assert_eq!(rt.block_on(answers(&ours)), rt.block_on(answers(&theirs)));
    }
}

/// Under a memory pool that refuses everything, StringGroupsExec emits its
/// partial state after every batch instead of growing, and the counts it
/// emits still add up.
#[test]
fn a_refusing_pool_makes_early_emits_that_add_up() {
    use datafusion::arrow::array::{AsArray, Int64Array as I64};
    use datafusion::execution::TaskContext;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::ExecutionPlan;
    use std::collections::BTreeMap;

    let schema =
        Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8View, true), Field::new("d", DataType::Int64, true)]));
    let mut expected: BTreeMap<Option<&str>, i64> = BTreeMap::new();
    let mut batches = Vec::new();
    for b in 0..6 {
        let vals: Vec<Option<usize>> =
            (0..500).map(|i| if (i + b) % 7 == 0 { None } else { Some((i * 31 + b) % WORDS.len()) }).collect();
        for v in &vals {
            *expected.entry(v.map(|i| WORDS[i])).or_default() += 1;
        }
        let d: ArrayRef = Arc::new(I64::from(vec![1i64; vals.len()]));
        batches.push(RecordBatch::try_new(schema.clone(), vec![strings(&vals, b % 2 == 0), d]).unwrap());
    }
    let ctx = context(vec![batches], Some(StringGroupsRule::default()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plan = rt.block_on(async {
        ctx.sql("SELECT a, count(*) FROM t GROUP BY a").await.unwrap().create_physical_plan().await.unwrap()
    });
    fn find(p: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        if p.name() == "StringGroupsExec" {
            return Some(p.clone());
        }
        p.children().into_iter().find_map(find)
    }
    let partial = find(&plan).expect("the plan uses StringGroupsExec");
    let runtime = RuntimeEnvBuilder::new().with_memory_limit(1, 1.0).build_arc().unwrap();
    let task = Arc::new(TaskContext::default().with_runtime(runtime));
    let mut got: BTreeMap<Option<String>, i64> = BTreeMap::new();
    let mut rows = 0;
    for part in 0..partial.properties().partitioning.partition_count() {
        let out = rt
            .block_on(datafusion::physical_plan::common::collect(partial.execute(part, task.clone()).unwrap()))
            .unwrap();
        for b in out {
            rows += b.num_rows();
            let keys = b.column(0).as_string_view();
            let counts = b.column(1).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                let k = keys.is_valid(i).then(|| keys.value(i).to_string());
                *got.entry(k).or_default() += counts.value(i);
            }
        }
    }
    let expected: BTreeMap<Option<String>, i64> =
        expected.into_iter().map(|(k, v)| (k.map(str::to_string), v)).collect();
    assert_eq!(got, expected);
    assert!(rows > expected.len(), "{rows} partial rows for {} groups: no early emit happened", expected.len());
}
