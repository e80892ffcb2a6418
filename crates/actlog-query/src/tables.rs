//! The small tables (`checkpoints`, `producer_keys`) and the
//! `decision_chains` view.

use std::sync::{Arc, LazyLock};

use actlog_core::event::Fields;
use actlog_store::Store;
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::Error;
use crate::rows::timestamp_type;

/// `decision_chains`: one row per decision with its actor chain and its
/// first outcome (`outcome_status` and `outcome_seq` NULL when none).
pub const DECISION_CHAINS_SQL: &str = "CREATE VIEW decision_chains AS \
SELECT d.seq, d.event_id, d.task_id, d.session_id, d.principal_id, d.actor_chain, d.purpose_scope, \
d.policy_version, d.action, d.resource_id, d.effect, o.outcome_status, o.outcome_seq \
FROM events d LEFT JOIN ( \
  SELECT decision_event_id, min(seq) AS outcome_seq, first_value(outcome_status ORDER BY seq) AS outcome_status \
  FROM events WHERE event_type = 'authz.outcome' GROUP BY decision_event_id \
) o ON o.decision_event_id = d.event_id \
WHERE d.event_type = 'authz.decision'";

/// `lifecycle`: one row per lifecycle event (grants, revocations, agent
/// registrations) with the agent and the grant it is about
/// (`schema/event.v1.schema.json`, `subject`, and its rule for older events).
pub const LIFECYCLE_SQL: &str = "CREATE VIEW lifecycle AS \
SELECT seq, event_id, event_type, event_time, received_at, pdp_id, principal_id, actor_id, task_id, session_id, \
subject_agent_id(payload) AS subject_agent_id, subject_grant_id(payload) AS subject_grant_id \
FROM events WHERE event_type IN ('delegation.granted', 'delegation.revoked', 'agent.registered', 'agent.deregistered')";

/// `producer_streams`: one row per numbered producer stream (`source.stream`
/// within a PDP), with the numbers it spans, how many of them reached the
/// ledger, and how many are missing. The `LIKE` skips the JSON of events
/// that carry no number; the functions then read the ones that do.
pub const PRODUCER_STREAMS_SQL: &str = "CREATE VIEW producer_streams AS \
SELECT pdp_id, stream, min(stream_seq) AS first_stream_seq, max(stream_seq) AS last_stream_seq, \
count(DISTINCT stream_seq) AS received, \
CAST(max(stream_seq) - min(stream_seq) + 1 - count(DISTINCT stream_seq) AS BIGINT UNSIGNED) AS missing, \
min(seq) AS first_seq, max(seq) AS last_seq, min(received_at) AS first_received_at, max(received_at) AS last_received_at \
FROM (SELECT pdp_id, seq, received_at, source_stream(payload) AS stream, source_stream_seq(payload) AS stream_seq \
  FROM events WHERE payload LIKE '%\"stream_seq\"%') \
WHERE stream IS NOT NULL GROUP BY pdp_id, stream";

/// Registers the views, and the functions they use, on a fresh context
/// (before the sandbox applies).
pub async fn register_views(ctx: &SessionContext) -> datafusion::error::Result<()> {
    for udf in payload_udfs() {
        ctx.register_udf(udf);
    }
    ctx.sql(DECISION_CHAINS_SQL).await?;
    ctx.sql(LIFECYCLE_SQL).await?;
    ctx.sql(PRODUCER_STREAMS_SQL).await?;
    Ok(())
}

/// The functions of the payload the views use, which any query may call
/// too: `subject_agent_id`, `subject_grant_id`, `source_stream` and
/// `source_stream_seq`. A Ballista cluster registers them on its scheduler
/// and executors (`actlog-cluster`).
pub fn payload_udfs() -> Vec<ScalarUDF> {
    vec![
        text_udf("subject_agent_id", |f| f.subject_agent_id),
        text_udf("subject_grant_id", |f| f.subject_grant_id),
        text_udf("source_stream", |f| f.source_stream),
        number_udf("source_stream_seq", |f| f.source_stream_seq),
    ]
}

/// `name(payload)`: one text field of the event whose payload (JSON text)
/// is given, or NULL.
fn text_udf(name: &'static str, pick: fn(Fields) -> Option<String>) -> ScalarUDF {
    payload_udf(name, DataType::Utf8, move |payloads| {
        let mut out = StringBuilder::with_capacity(payloads.len(), 0);
        each_payload(name, payloads, |fields| out.append_option(fields.and_then(pick)))?;
        Ok(Arc::new(out.finish()))
    })
}

/// `name(payload)`: one integer field of the event, or NULL.
fn number_udf(name: &'static str, pick: fn(Fields) -> Option<u64>) -> ScalarUDF {
    payload_udf(name, DataType::UInt64, move |payloads| {
        let mut out = UInt64Builder::with_capacity(payloads.len());
        each_payload(name, payloads, |fields| out.append_option(fields.and_then(pick)))?;
        Ok(Arc::new(out.finish()))
    })
}

/// Calls `f` with the validated fields of each payload (None for NULL). A
/// stored payload that does not validate is corruption.
fn each_payload(name: &str, payloads: &StringArray, mut f: impl FnMut(Option<Fields>)) -> DfResult<()> {
    for i in 0..payloads.len() {
        if payloads.is_null(i) {
            f(None);
            continue;
        }
        let fields = actlog_core::event::validate(payloads.value(i).as_bytes())
            .map_err(|e| {
                datafusion::error::DataFusionError::Execution(format!(
                    "corruption: {name}: a stored payload does not validate: {e}"
                ))
            })?
            .fields;
        f(Some(fields));
    }
    Ok(())
}

/// A one-argument function of the payload column (any string type).
fn payload_udf(
    name: &'static str,
    returns: DataType,
    run: impl Fn(&StringArray) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    use datafusion::arrow::array::AsArray;
    use datafusion::logical_expr::{ColumnarValue, Volatility};
    let f = move |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let text = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        Ok(ColumnarValue::Array(run(text.as_string::<i32>())?))
    };
    datafusion::logical_expr::create_udf(name, vec![DataType::Utf8], returns, Volatility::Immutable, Arc::new(f))
}

/// The `checkpoints` schema.
pub static CHECKPOINTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("tree_size", DataType::UInt64, false),
        Field::new("root_hash", DataType::Utf8, false),
        Field::new("created_at", timestamp_type(), true),
        Field::new("note", DataType::Utf8, false),
    ]))
});

/// The `producer_keys` schema.
pub static PRODUCER_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("key_id", DataType::Utf8, false),
        Field::new("pdp_id", DataType::Utf8, false),
        Field::new("public_key", DataType::Utf8, false),
        Field::new("added_seq", DataType::UInt64, false),
        Field::new("revoked_seq", DataType::UInt64, true),
    ]))
});

/// Which small table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Small {
    /// `checkpoints`
    Checkpoints,
    /// `producer_keys`
    ProducerKeys,
}

/// A small table built from the store only when a query scans it (the
/// checkpoints table reads every stored checkpoint; most queries never
/// name it).
#[derive(Debug)]
pub struct SmallTable {
    /// Which one.
    pub kind: Small,
    /// The store.
    pub store: Arc<Store>,
    /// The snapshot's tree size.
    pub tree_size: u64,
}

#[async_trait]
impl TableProvider for SmallTable {
    fn schema(&self) -> SchemaRef {
        match self.kind {
            Small::Checkpoints => CHECKPOINTS_SCHEMA.clone(),
            Small::ProducerKeys => PRODUCER_KEYS_SCHEMA.clone(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (kind, store, size) = (self.kind, self.store.clone(), self.tree_size);
        let batch = tokio::task::spawn_blocking(move || match kind {
            Small::Checkpoints => checkpoints(&store, size),
            Small::ProducerKeys => producer_keys(&store, size),
        })
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?)
    }
}

/// `checkpoints` up to `tree_size`.
pub fn checkpoints(store: &Store, tree_size: u64) -> Result<RecordBatch, Error> {
    let mut size = UInt64Builder::new();
    let mut root = StringBuilder::new();
    let mut created = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut text = StringBuilder::new();
    for (s, n, t) in store.checkpoints_with_time()? {
        if s > tree_size {
            continue;
        }
        // The body is `origin\nsize\nroot\n`; the writer signed it, and
        // `actlog verify` checks the signatures, so only the root is read here.
        let r = n
            .lines()
            .nth(2)
            .and_then(actlog_core::b64::decode)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::Corruption(format!("stored checkpoint of tree size {s} does not parse")))?;
        size.append_value(s);
        // Lowercase hex in SQL (contract section 10); the note keeps base64.
        root.append_value(hex::encode(r));
        created.append_option(t.map(|t| t as i64));
        text.append_value(&n);
    }
    Ok(RecordBatch::try_new(
        CHECKPOINTS_SCHEMA.clone(),
        vec![Arc::new(size.finish()), Arc::new(root.finish()), Arc::new(created.finish()), Arc::new(text.finish())],
    )
    .expect("checkpoints columns"))
}

/// `producer_keys` registered below `tree_size`.
pub fn producer_keys(store: &Store, tree_size: u64) -> Result<RecordBatch, Error> {
    let reg = store.registry();
    let mut keys: Vec<_> = reg.keys.values().filter(|k| k.added_seq < tree_size).collect();
    keys.sort_by_key(|k| k.added_seq);
    let mut name = StringBuilder::new();
    let mut key_id = StringBuilder::new();
    let mut pdp = StringBuilder::new();
    let mut public = StringBuilder::new();
    let mut added = UInt64Builder::new();
    let mut revoked = UInt64Builder::new();
    for k in keys {
        let raw: [u8; 32] = hex::decode(&k.public_key_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Corruption(format!("key `{}` has a malformed public key", k.name)))?;
        name.append_value(&k.name);
        key_id.append_value(&k.fingerprint_hex);
        pdp.append_value(&k.pdp_id);
        public.append_value(actlog_core::b64::encode(raw));
        added.append_value(k.added_seq);
        revoked.append_option(k.revoked_seq.filter(|s| *s < tree_size));
    }
    Ok(RecordBatch::try_new(
        PRODUCER_KEYS_SCHEMA.clone(),
        vec![
            Arc::new(name.finish()),
            Arc::new(key_id.finish()),
            Arc::new(pdp.finish()),
            Arc::new(public.finish()),
            Arc::new(added.finish()),
            Arc::new(revoked.finish()),
        ],
    )
    .expect("producer_keys columns"))
}
