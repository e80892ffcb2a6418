//! What keeps one query from hurting the server: its own threads with known
//! stacks, a depth limit checked before planning, and output caps on the
//! functions that can make a value far larger than their input.
//!
//! Every SQL surface (the CLI, `POST /v1/sql`, the PostgreSQL endpoint) goes
//! through [`Engine`](crate::Engine), so each inherits these limits.
//!
//! - [`run`] runs a query's parse, plan, execution and drop on the SQL
//!   runtime: [`SQL_THREADS`] worker threads with [`SQL_STACK_BYTES`] stacks,
//!   apart from the HTTP workers. A panic inside DataFusion becomes an
//!   `internal` error for that query alone, and a dropped caller (a client
//!   that went away) aborts the query.
//! - `actlog_core::sql::check_depth` refuses expressions nested deeper than `sql_depth_max`
//!   before the planner sees them. DataFusion and sqlparser are also built
//!   with `recursive_protection`, which moves deep recursion onto heap stacks.
//! - [`guard_functions`] wraps `repeat`, `lpad`, `rpad`, `replace`,
//!   `array_repeat`, `range` and `generate_series` so that a call whose output
//!   would exceed `sql_function_bytes_max` for one batch is refused before it
//!   allocates. The memory pool does not see these allocations.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalUnit, TimeUnit};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use crate::engine::QueryError;

/// Worker threads of the SQL runtime.
pub const SQL_THREADS: usize = 2;
/// Stack of every SQL thread. Only the touched part is ever resident; the
/// size bounds the recursion that `recursive_protection` does not cover
/// (dropping a deep parse tree, evaluating deep expressions).
pub const SQL_STACK_BYTES: usize = 256 << 20;
/// Expressions nested deeper than this (`sql_depth_max`) are refused before
/// planning. A flat `a OR b OR …` of n terms nests n deep.
pub const SQL_DEPTH_MAX_DEFAULT: usize = 1024;
/// Largest SQL text (`sql_text_bytes_max`), on every surface.
pub const SQL_TEXT_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Most bytes one guarded function call may produce for one batch
/// (`sql_function_bytes_max`).
pub const SQL_FUNCTION_BYTES_MAX_DEFAULT: usize = 64 << 20;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SQL_THREADS)
            .thread_stack_size(SQL_STACK_BYTES)
            .thread_name("actlog-sql")
            .enable_all()
            .build()
            .expect("the SQL runtime starts (threads and timers)")
    })
}

/// Aborts the query's task when the caller stops waiting for it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the SQL runtime and waits for it from any runtime (or
/// from a thread that blocks on it). A panic in it is this query's
/// `internal` error; dropping the returned future aborts it.
///
/// The caller's side also waits at most `time`, then answers `late` and
/// aborts the work: a CPU-bound operator that does not yield cannot hold the
/// caller past its limit (it stops at its next yield).
pub async fn run<T, F>(work: F, time: std::time::Duration, late: QueryError) -> Result<T, QueryError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, QueryError>> + Send + 'static,
{
    let handle = runtime().spawn(work);
    let _abort = AbortOnDrop(handle.abort_handle());
    let Ok(joined) = tokio::time::timeout(time, handle).await else {
        return Err(late);
    };
    match joined {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!("a query panicked inside the engine (the server goes on): {what}");
            Err(QueryError {
                code: "internal",
                message: "the query failed inside the engine; the server is unaffected. Please report the query".into(),
            })
        }
        Err(_) => Err(QueryError { code: "internal", message: "the query was cancelled".into() }),
    }
}

/// A named limit hit inside execution, carried through DataFusion's error
/// to become the query's error as it is.
#[derive(Debug)]
pub struct LimitExceeded(pub QueryError);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.message)
    }
}

impl std::error::Error for LimitExceeded {}

/// How a guarded function's output size is estimated from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: up to 4 bytes for each of `n` characters.
    Pad,
    /// `replace(s, from, to)`: at most `(len(s) / max(len(from), 1) + 1) * len(to) + len(s)`.
    Replace,
    /// `array_repeat(x, n)`: `n` copies of `x`.
    ArrayRepeat,
    /// `range(start, stop [, step])`, `generate_series`: one element per step.
    Series,
}

const GUARDED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces the session's amplifying functions by guarded ones.
pub fn guard_functions(ctx: &SessionContext, max_bytes: usize) {
    let state = ctx.state();
    let funcs = state.scalar_functions();
    for (name, growth) in GUARDED {
        if let Some(inner) = funcs.get(*name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Guarded {
                inner: Arc::clone(inner),
                growth: *growth,
                max_bytes,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_bytes: usize,
}

/// Per-row values of an argument as i64 (NULL as 0).
fn ints(v: &ColumnarValue, rows: usize) -> DfResult<Vec<i64>> {
    let a = v.to_array(rows)?;
    let a = cast(&a, &DataType::Int64)?;
    let p = a.as_primitive::<Int64Type>();
    Ok((0..p.len()).map(|i| if p.is_null(i) { 0 } else { p.value(i) }).collect())
}

/// Per-row byte lengths of a string argument (NULL as 0); None for other types.
fn lens(v: &ColumnarValue, rows: usize) -> DfResult<Option<Vec<u64>>> {
    let a = v.to_array(rows)?;
    let n = a.len();
    let get = |f: &dyn Fn(usize) -> usize| (0..n).map(|i| if a.is_null(i) { 0 } else { f(i) as u64 }).collect();
    Ok(match a.data_type() {
        DataType::Utf8 => Some(get(&|i| a.as_string::<i32>().value(i).len())),
        DataType::LargeUtf8 => Some(get(&|i| a.as_string::<i64>().value(i).len())),
        DataType::Utf8View => Some(get(&|i| a.as_string_view().value(i).len())),
        DataType::Binary => Some(get(&|i| a.as_binary::<i32>().value(i).len())),
        DataType::LargeBinary => Some(get(&|i| a.as_binary::<i64>().value(i).len())),
        _ => None,
    })
}

/// Nanoseconds of a temporal or integer value, per row; None when the type
/// is not one a series runs over.
fn instants(a: &ArrayRef) -> DfResult<Option<Vec<i128>>> {
    let as_i64 = |t: &DataType| -> DfResult<Vec<i64>> {
        let c = cast(&cast(a, t)?, &DataType::Int64)?;
        let p = c.as_primitive::<Int64Type>();
        Ok((0..p.len()).map(|i| if p.is_null(i) { 0 } else { p.value(i) }).collect())
    };
    let scale = |v: Vec<i64>, k: i128| v.into_iter().map(|x| x as i128 * k).collect();
    Ok(match a.data_type() {
        DataType::Date32 => Some(scale(as_i64(&DataType::Date32)?, 86_400_000_000_000)),
        DataType::Date64 => Some(scale(as_i64(&DataType::Date64)?, 1_000_000)),
        DataType::Timestamp(unit, _) => {
            let k = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            Some(scale(as_i64(a.data_type())?, k))
        }
        t if t.is_integer() => Some(scale(as_i64(&DataType::Int64)?, 1)),
        _ => None,
    })
}

/// Per-row step sizes of a series (nanoseconds for intervals, with a month
/// counted as 28 days so the estimate is never low); None when unknown.
fn steps(a: &ArrayRef) -> DfResult<Option<Vec<i128>>> {
    Ok(match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let p = a.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
            Some(
                (0..p.len())
                    .map(|i| {
                        let v = p.value(i);
                        v.months as i128 * 28 * 86_400_000_000_000
                            + v.days as i128 * 86_400_000_000_000
                            + v.nanoseconds as i128
                    })
                    .collect(),
            )
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let p = a.as_primitive::<datafusion::arrow::datatypes::IntervalDayTimeType>();
            Some(
                (0..p.len())
                    .map(|i| p.value(i).days as i128 * 86_400_000_000_000 + p.value(i).milliseconds as i128 * 1_000_000)
                    .collect(),
            )
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let p = a.as_primitive::<datafusion::arrow::datatypes::IntervalYearMonthType>();
            Some((0..p.len()).map(|i| p.value(i) as i128 * 28 * 86_400_000_000_000).collect())
        }
        t if t.is_integer() => {
            Some(ints(&ColumnarValue::Array(Arc::clone(a)), a.len())?.into_iter().map(i128::from).collect())
        }
        _ => None,
    })
}

impl Guarded {
    /// An upper bound on the bytes this call would produce, or None when the
    /// arguments are of a kind the estimate does not cover.
    fn estimate(&self, args: &ScalarFunctionArgs) -> DfResult<Option<u128>> {
        let rows = args.number_rows.max(1);
        let a = &args.args;
        let sum = |v: Vec<u128>| v.into_iter().fold(0u128, u128::saturating_add);
        Ok(match self.growth {
            Growth::Repeat if a.len() == 2 => {
                let (Some(l), n) = (lens(&a[0], rows)?, ints(&a[1], rows)?) else { return Ok(None) };
                Some(sum(l.iter().zip(&n).map(|(l, n)| *l as u128 * (*n).max(0) as u128).collect()))
            }
            Growth::Pad if a.len() >= 2 => {
                Some(sum(ints(&a[1], rows)?.iter().map(|n| (*n).max(0) as u128 * 4).collect()))
            }
            Growth::Replace if a.len() == 3 => {
                let (Some(s), Some(f), Some(t)) = (lens(&a[0], rows)?, lens(&a[1], rows)?, lens(&a[2], rows)?) else {
                    return Ok(None);
                };
                let per_row = s
                    .iter()
                    .zip(&f)
                    .zip(&t)
                    .map(|((s, f), t)| (*s as u128 / (*f).max(1) as u128 + 1) * *t as u128 + *s as u128);
                Some(sum(per_row.collect()))
            }
            Growth::ArrayRepeat if a.len() == 2 => {
                let x = a[0].to_array(rows)?;
                let each = (x.get_array_memory_size() / x.len().max(1)).max(8) as u128;
                Some(sum(ints(&a[1], rows)?.iter().map(|n| (*n).max(0) as u128 * (each + 4)).collect()))
            }
            Growth::Series if !a.is_empty() && a.len() <= 3 => {
                let arrays: Vec<ArrayRef> = a.iter().map(|v| v.to_array(rows)).collect::<DfResult<_>>()?;
                let (start, stop) = if arrays.len() == 1 {
                    (vec![0i128; rows], instants(&arrays[0])?)
                } else {
                    let Some(s) = instants(&arrays[0])? else { return Ok(None) };
                    (s, instants(&arrays[1])?)
                };
                let Some(stop) = stop else { return Ok(None) };
                let step = match arrays.get(2) {
                    Some(s) => match steps(s)? {
                        Some(s) => s,
                        None => return Ok(None),
                    },
                    None => vec![1i128; rows],
                };
                let per_row = start.iter().zip(&stop).zip(&step).map(|((a, b), s)| {
                    let span = (b - a).unsigned_abs();
                    let s = s.unsigned_abs().max(1);
                    (span / s + 1) * 16
                });
                Some(sum(per_row.collect()))
            }
            _ => None,
        })
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(bytes) = self.estimate(&args)?
            && bytes > self.max_bytes as u128
        {
            return Err(DataFusionError::External(Box::new(LimitExceeded(QueryError {
                code: "sql_memory_limit",
                message: format!(
                    "{}() would produce about {bytes} bytes for one batch, more than the limit \
                     sql_function_bytes_max = {}; use smaller counts or fewer rows",
                    self.name(),
                    self.max_bytes
                ),
            }))));
        }
        self.inner.invoke_with_args(args)
    }
}
