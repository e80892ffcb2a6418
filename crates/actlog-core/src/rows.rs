//! The Arrow shape of the ledger: the `events` and `delegation_hops`
//! schemas (contract section 7), and the decoding of stored events into
//! rows. Segments, the live tail and index lookups all build their batches
//! here, so a row is the same whichever path produced it.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    Float64Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::b64;
use crate::dsse::Envelope;
use crate::event::{self, Fields};
use crate::leaf::LeafKind;
pub use crate::ledger::KeyNames;
use crate::ledger::StoredEvent;

/// A stored event that does not decode: the ledger only ever stores events
/// that passed the checks these rows repeat, so this is corruption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corruption: {0}")]
pub struct Corrupt(pub String);

/// The time type of every timestamp column: nanoseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// String columns of `events` after `seq`, in order, up to `event_time`.
const HEAD_STRINGS: &[&str] = &["event_id", "event_type"];

/// String columns of `events` between `received_at` and `chain_depth`.
const IDENTITY_STRINGS: &[&str] = &[
    "pdp_id",
    "producer_key",
    "producer_signature",
    "principal_type",
    "principal_id",
    "principal_iss",
    "actor_id",
    "actor_iss",
    "actor_profile",
    "actor_workload_id",
    "actor_model",
];

/// String columns of `events` between `chain_depth` and `risk_score`.
const CONTEXT_STRINGS: &[&str] = &[
    "verification_status",
    "session_id",
    "task_id",
    "txn_id",
    "trace_id",
    "parent_event_id",
    "purpose_scope",
    "purpose_description",
    "trust_level",
];

/// String columns of `events` after `risk_score`.
const DECISION_STRINGS: &[&str] = &[
    "policy_version",
    "decision_path",
    "action",
    "resource_type",
    "resource_id",
    "tool_name",
    "tool_server",
    "effect",
    "decision_event_id",
    "outcome_status",
    "source_format",
    "leaf_hash",
    "chain_hash",
    "payload",
    "request_id",
    "producer_key_id",
];

/// The `events` schema: the pinned columns of contract section 7 in order,
/// then `request_id`, `producer_key_id` and `actor_chain` (depth 1 first).
pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let mut f = vec![Field::new("seq", DataType::UInt64, false)];
    f.extend(HEAD_STRINGS.iter().map(|n| Field::new(*n, DataType::Utf8, false)));
    f.push(Field::new("event_time", timestamp_type(), false));
    f.push(Field::new("received_at", timestamp_type(), false));
    f.extend(IDENTITY_STRINGS.iter().map(|n| s(n)));
    f.push(Field::new("chain_depth", DataType::UInt32, false));
    f.extend(CONTEXT_STRINGS.iter().map(|n| s(n)));
    f.push(Field::new("risk_score", DataType::Float64, true));
    f.extend(DECISION_STRINGS.iter().map(|n| s(n)));
    f.push(Field::new("actor_chain", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false));
    Arc::new(Schema::new(f))
});

/// The `delegation_hops` schema.
pub static HOPS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("depth", DataType::UInt32, false),
        Field::new("sub", DataType::Utf8, false),
        Field::new("iss", DataType::Utf8, true),
        Field::new("sub_profile", DataType::Utf8, true),
    ]))
});

/// The schemas queries see: the same columns with top-level strings as
/// `Utf8View`. DataFusion's Parquet reader decodes strings into views
/// without copying them, and its grouping and comparisons run faster on
/// views; the segment files themselves keep plain `Utf8` (any Parquet
/// reader takes them).
pub static EVENTS_QUERY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| view_schema(&EVENTS_SCHEMA));
/// `delegation_hops` as queries see it (see [`EVENTS_QUERY_SCHEMA`]).
pub static HOPS_QUERY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| view_schema(&HOPS_SCHEMA));

fn view_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Converts a batch built by [`Builder`] to `target`, its query schema
/// ([`EVENTS_QUERY_SCHEMA`] or [`HOPS_QUERY_SCHEMA`]).
pub fn for_query(batch: &RecordBatch, target: &SchemaRef) -> RecordBatch {
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                c.clone()
            } else {
                arrow_cast::cast(c, f.data_type()).expect("Utf8 casts to Utf8View")
            }
        })
        .collect();
    RecordBatch::try_new(target.clone(), columns).expect("columns match the query schema")
}

/// One stored event, decoded for SQL.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its seq.
    pub seq: u64,
    /// When the ledger accepted it.
    pub received_at: i64,
    /// The normalized fields of the payload.
    pub fields: Fields,
    /// Name of the key that verified it (`ledger` for ledger records, NULL for OPA events).
    pub producer_key: Option<String>,
    /// `ed25519` or `none`.
    pub producer_signature: &'static str,
    /// Hex SHA-256 of the verifying key (or of the token for OPA events).
    pub producer_key_id: String,
    /// The payload (event JSON) as text.
    pub payload: String,
    /// Merkle leaf hash.
    pub leaf_hash: crate::Hash,
    /// Chain hash after this leaf.
    pub chain_hash: crate::Hash,
}

/// Decodes one stored event. A stored event that does not decode is
/// corruption: the ledger only ever stores events that passed these checks.
pub fn decode(ev: &StoredEvent, names: &KeyNames) -> Result<Row, Corrupt> {
    let corrupt = |what: String| Corrupt(format!("event at seq {}: {what}", ev.seq));
    let payload = match ev.leaf.kind {
        LeafKind::ProducerSigned | LeafKind::LedgerSigned => {
            Envelope::parse(&ev.envelope).map_err(|e| corrupt(format!("envelope: {e}")))?.payload
        }
        LeafKind::TokenAuthenticated => {
            #[derive(serde::Deserialize)]
            struct Record<'a> {
                #[serde(borrow)]
                payload: std::borrow::Cow<'a, str>,
            }
            let rec: Record<'_> =
                serde_json::from_slice(&ev.envelope).map_err(|e| corrupt(format!("stored record: {e}")))?;
            b64::decode(&rec.payload).ok_or_else(|| corrupt("stored record payload is not base64".into()))?
        }
    };
    let fields = event::validate(&payload).map_err(|e| corrupt(format!("payload: {e}")))?.fields;
    from_validated(ev, payload, fields, names)
}

/// The row of a stored event whose payload was already extracted and
/// validated (bundle verification has them from the signature checks);
/// `ev.envelope` is not read.
pub fn from_validated(ev: &StoredEvent, payload: Vec<u8>, fields: Fields, names: &KeyNames) -> Result<Row, Corrupt> {
    let key_id = hex::encode(ev.leaf.producer_key_id);
    let (producer_key, producer_signature) = match ev.leaf.kind {
        LeafKind::ProducerSigned => (names.name_at(&key_id, &fields.pdp_id, ev.seq).map(str::to_string), "ed25519"),
        LeafKind::LedgerSigned => (Some("ledger".to_string()), "ed25519"),
        LeafKind::TokenAuthenticated => (None, "none"),
    };
    let corrupt = |what: &str| Corrupt(format!("event at seq {}: {what}", ev.seq));
    if fields.event_id != ev.leaf.event_id {
        return Err(corrupt("the payload's event_id differs from the leaf's"));
    }
    let payload = String::from_utf8(payload).map_err(|_| corrupt("payload is not UTF-8"))?;
    Ok(Row {
        seq: ev.seq,
        received_at: ev.leaf.received_at_unix_nanos as i64,
        fields,
        producer_key,
        producer_signature,
        producer_key_id: key_id,
        payload,
        leaf_hash: ev.leaf_hash,
        chain_hash: ev.chain_hash,
    })
}

/// The `events` and `delegation_hops` batches of some rows.
pub fn batches(rows: &[Row]) -> (RecordBatch, RecordBatch) {
    let mut b = Builder::default();
    for r in rows {
        b.push(r);
    }
    b.finish()
}

/// Builds `events` and `delegation_hops` batches from rows.
pub struct Builder {
    seq: UInt64Builder,
    strings: Vec<StringBuilder>,
    event_time: TimestampNanosecondBuilder,
    received_at: TimestampNanosecondBuilder,
    chain_depth: UInt32Builder,
    risk_score: Float64Builder,
    actor_chain: ListBuilder<StringBuilder>,
    hop_seq: UInt64Builder,
    hop_event_id: StringBuilder,
    hop_depth: UInt32Builder,
    hop_sub: StringBuilder,
    hop_iss: StringBuilder,
    hop_profile: StringBuilder,
    rows: usize,
}

const STRING_COLUMNS: usize =
    HEAD_STRINGS.len() + IDENTITY_STRINGS.len() + CONTEXT_STRINGS.len() + DECISION_STRINGS.len();

impl Default for Builder {
    fn default() -> Self {
        Builder {
            seq: UInt64Builder::new(),
            strings: (0..STRING_COLUMNS).map(|_| StringBuilder::new()).collect(),
            event_time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            received_at: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            chain_depth: UInt32Builder::new(),
            risk_score: Float64Builder::new(),
            actor_chain: ListBuilder::new(StringBuilder::new()),
            hop_seq: UInt64Builder::new(),
            hop_event_id: StringBuilder::new(),
            hop_depth: UInt32Builder::new(),
            hop_sub: StringBuilder::new(),
            hop_iss: StringBuilder::new(),
            hop_profile: StringBuilder::new(),
            rows: 0,
        }
    }
}

impl Builder {
    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last finish.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row (and its hops).
    pub fn push(&mut self, r: &Row) {
        let f = &r.fields;
        // Contract section 10: hashes are lowercase hex in SQL.
        let (leaf_hex, chain_hex) = (hex::encode(r.leaf_hash), hex::encode(r.chain_hash));
        self.seq.append_value(r.seq);
        let strings: [Option<&str>; STRING_COLUMNS] = [
            Some(&f.event_id),
            Some(&f.event_type),
            Some(&f.pdp_id),
            r.producer_key.as_deref(),
            Some(r.producer_signature),
            f.principal_type.as_deref(),
            f.principal_id.as_deref(),
            f.principal_iss.as_deref(),
            f.actor_id.as_deref(),
            f.actor_iss.as_deref(),
            f.actor_profile.as_deref(),
            f.actor_workload_id.as_deref(),
            f.actor_model.as_deref(),
            f.verification_status.as_deref(),
            f.session_id.as_deref(),
            f.task_id.as_deref(),
            f.txn_id.as_deref(),
            f.trace_id.as_deref(),
            f.parent_event_id.as_deref(),
            f.purpose_scope.as_deref(),
            f.purpose_description.as_deref(),
            f.trust_level.as_deref(),
            f.policy_version.as_deref(),
            f.decision_path.as_deref(),
            f.action.as_deref(),
            f.resource_type.as_deref(),
            f.resource_id.as_deref(),
            f.tool_name.as_deref(),
            f.tool_server.as_deref(),
            f.effect.as_deref(),
            f.decision_event_id.as_deref(),
            f.outcome_status.as_deref(),
            f.source_format.as_deref(),
            Some(&leaf_hex),
            Some(&chain_hex),
            Some(&r.payload),
            f.request_id.as_deref(),
            Some(&r.producer_key_id),
        ];
        for (b, v) in self.strings.iter_mut().zip(strings) {
            b.append_option(v);
        }
        self.event_time.append_value(f.event_time_unix_nanos);
        self.received_at.append_value(r.received_at);
        self.chain_depth.append_value(f.chain.len() as u32);
        self.risk_score.append_option(f.risk_score);
        for hop in &f.chain {
            self.actor_chain.values().append_value(&hop.sub);
            self.hop_seq.append_value(r.seq);
            self.hop_event_id.append_value(&f.event_id);
            self.hop_depth.append_value(hop.depth);
            self.hop_sub.append_value(&hop.sub);
            self.hop_iss.append_option(hop.iss.as_deref());
            self.hop_profile.append_option(hop.sub_profile.as_deref());
        }
        self.actor_chain.append(true);
        self.rows += 1;
    }

    /// The `events` and `delegation_hops` batches of the rows pushed so far.
    pub fn finish(&mut self) -> (RecordBatch, RecordBatch) {
        let mut strings = self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut take = |n: usize| strings.by_ref().take(n).collect::<Vec<_>>();
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.seq.finish())];
        cols.extend(take(HEAD_STRINGS.len()));
        cols.push(Arc::new(self.event_time.finish()));
        cols.push(Arc::new(self.received_at.finish()));
        cols.extend(take(IDENTITY_STRINGS.len()));
        cols.push(Arc::new(self.chain_depth.finish()));
        cols.extend(take(CONTEXT_STRINGS.len()));
        cols.push(Arc::new(self.risk_score.finish()));
        cols.extend(take(DECISION_STRINGS.len()));
        cols.push(Arc::new(self.actor_chain.finish()));
        let events = RecordBatch::try_new(EVENTS_SCHEMA.clone(), cols).expect("columns match the events schema");
        let hops = RecordBatch::try_new(
            HOPS_SCHEMA.clone(),
            vec![
                Arc::new(self.hop_seq.finish()),
                Arc::new(self.hop_event_id.finish()),
                Arc::new(self.hop_depth.finish()),
                Arc::new(self.hop_sub.finish()),
                Arc::new(self.hop_iss.finish()),
                Arc::new(self.hop_profile.finish()),
            ],
        )
        .expect("columns match the hops schema");
        self.rows = 0;
        (events, hops)
    }
}
