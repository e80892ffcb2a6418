//! Values for the PostgreSQL endpoint: Bind parameters in, Arrow columns
//! out as PostgreSQL text or binary fields.

use super::*;

// Parameters.

/// The Bind message's parameters as the engine takes them: text, or `None`
/// for NULL.
pub(super) fn text_parameters(portal: &Portal<PreparedStatement>) -> PgWireResult<Vec<Option<String>>> {
    let mut values = Vec::with_capacity(portal.parameters.len());
    for (idx, parameter) in portal.parameters.iter().enumerate() {
        let position = idx + 1;
        let Some(bytes) = parameter else {
            values.push(None);
            continue;
        };
        let value = if parameter_is_binary(&portal.parameter_format, idx) {
            let declared = portal.statement.parameter_types.get(idx).and_then(Option::as_ref);
            binary_parameter(declared, bytes, position)?
        } else {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| sql_error("22021", format!("parameter ${position} is not valid UTF-8")))?
        };
        values.push(Some(value));
    }
    Ok(values)
}

pub(super) fn parameter_is_binary(format: &Format, idx: usize) -> bool {
    match format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(codes) => codes.get(idx) == Some(&FORMAT_CODE_BINARY),
    }
}

/// Turns a binary parameter into the text the engine casts from. The type is
/// the one the client declared in Parse; undeclared ones were described as
/// TEXT, whose binary form is UTF-8.
pub(super) fn binary_parameter(declared: Option<&Type>, bytes: &[u8], position: usize) -> PgWireResult<String> {
    let malformed = || sql_error("22P03", format!("incorrect binary data format in parameter ${position}"));
    let utf8 = || String::from_utf8(bytes.to_vec()).map_err(|_| malformed());
    let Some(ty) = declared else {
        return utf8();
    };
    let mut out = String::new();
    let written = match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => return utf8(),
        Type::BOOL => match bytes {
            [b] => {
                out.push_str(if *b == 0 { "false" } else { "true" });
                Ok(())
            }
            _ => return Err(malformed()),
        },
        Type::INT2 => write!(out, "{}", i16::from_be_bytes(bytes.try_into().map_err(|_| malformed())?)),
        Type::INT4 => write!(out, "{}", i32::from_be_bytes(bytes.try_into().map_err(|_| malformed())?)),
        Type::INT8 => write!(out, "{}", i64::from_be_bytes(bytes.try_into().map_err(|_| malformed())?)),
        Type::FLOAT4 => {
            let value = f32::from_be_bytes(bytes.try_into().map_err(|_| malformed())?);
            write_float(&mut out, value, f64::from(value))
        }
        Type::FLOAT8 => {
            let value = f64::from_be_bytes(bytes.try_into().map_err(|_| malformed())?);
            write_float(&mut out, value, value)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let pg_micros = i64::from_be_bytes(bytes.try_into().map_err(|_| malformed())?);
            let seconds = pg_micros.div_euclid(MICROS_PER_SECOND) + UNIX_TO_PG_EPOCH_SECONDS;
            let micros = pg_micros.rem_euclid(MICROS_PER_SECOND);
            // "+00:00" rather than PostgreSQL's "+00": Arrow's parser wants it.
            let zone = if *ty == Type::TIMESTAMPTZ { "+00:00" } else { "" };
            write_timestamp(&mut out, seconds, micros, zone)
        }
        Type::DATE => {
            let pg_days = i32::from_be_bytes(bytes.try_into().map_err(|_| malformed())?);
            write_date(&mut out, i64::from(pg_days) + i64::from(UNIX_TO_PG_EPOCH_DAYS))
        }
        Type::UUID => {
            let uuid: [u8; 16] = bytes.try_into().map_err(|_| malformed())?;
            uuid.iter().enumerate().try_for_each(|(idx, byte)| {
                if matches!(idx, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                write!(out, "{byte:02x}")
            })
        }
        _ => {
            return Err(sql_error(
                "0A000",
                format!("parameter ${position} of type {} must be sent in text format", ty.name()),
            ));
        }
    };
    written.map_err(|_| internal("formatting a parameter failed"))?;
    Ok(out)
}

// Results.

/// How an Arrow column goes on the wire.
///
/// | Arrow                                   | PostgreSQL                      |
/// |-----------------------------------------|---------------------------------|
/// | Boolean                                 | BOOL                            |
/// | Int8, Int16, Int32, UInt8, UInt16       | INT4                            |
/// | Int64, UInt32, UInt64                   | INT8 (UInt64 above i64: text only) |
/// | Float32, Float64                        | FLOAT8                          |
/// | Utf8, LargeUtf8, Utf8View               | TEXT                            |
/// | Timestamp with a time zone              | TIMESTAMPTZ, shown in UTC       |
/// | Timestamp without one                   | TIMESTAMP                       |
/// | Date32                                  | DATE                            |
/// | List or LargeList of one of the above   | that type's array (TEXT[], ...) |
/// | anything else                           | TEXT, as Arrow displays it      |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PgColumn {
    Scalar(Scalar),
    Array(Scalar),
    /// TEXT through Arrow's `ArrayFormatter`.
    Formatted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    Bool,
    Int4,
    Int8,
    Float8,
    Text,
    Timestamp,
    TimestampTz,
    Date,
}

impl PgColumn {
    pub(super) fn of(data_type: &DataType) -> PgColumn {
        if let Some(scalar) = Scalar::of(data_type) {
            return PgColumn::Scalar(scalar);
        }
        match data_type {
            DataType::List(item) | DataType::LargeList(item) => {
                Scalar::of(item.data_type()).map_or(PgColumn::Formatted, PgColumn::Array)
            }
            _ => PgColumn::Formatted,
        }
    }

    fn pg_type(self) -> Type {
        match self {
            PgColumn::Scalar(scalar) => scalar.pg_type(),
            PgColumn::Array(scalar) => scalar.pg_array_type(),
            PgColumn::Formatted => Type::TEXT,
        }
    }
}

impl Scalar {
    fn of(data_type: &DataType) -> Option<Scalar> {
        Some(match data_type {
            DataType::Boolean => Scalar::Bool,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => Scalar::Int4,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Scalar::Int8,
            DataType::Float32 | DataType::Float64 => Scalar::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Scalar::Text,
            DataType::Timestamp(_, Some(_)) => Scalar::TimestampTz,
            DataType::Timestamp(_, None) => Scalar::Timestamp,
            DataType::Date32 => Scalar::Date,
            _ => return None,
        })
    }

    fn pg_type(self) -> Type {
        match self {
            Scalar::Bool => Type::BOOL,
            Scalar::Int4 => Type::INT4,
            Scalar::Int8 => Type::INT8,
            Scalar::Float8 => Type::FLOAT8,
            Scalar::Text => Type::TEXT,
            Scalar::Timestamp => Type::TIMESTAMP,
            Scalar::TimestampTz => Type::TIMESTAMPTZ,
            Scalar::Date => Type::DATE,
        }
    }

    fn pg_array_type(self) -> Type {
        match self {
            Scalar::Bool => Type::BOOL_ARRAY,
            Scalar::Int4 => Type::INT4_ARRAY,
            Scalar::Int8 => Type::INT8_ARRAY,
            Scalar::Float8 => Type::FLOAT8_ARRAY,
            Scalar::Text => Type::TEXT_ARRAY,
            Scalar::Timestamp => Type::TIMESTAMP_ARRAY,
            Scalar::TimestampTz => Type::TIMESTAMPTZ_ARRAY,
            Scalar::Date => Type::DATE_ARRAY,
        }
    }
}

/// One non-null value read from an Arrow array.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float32(f32),
    Float64(f64),
    Text(&'a str),
    /// Seconds since the Unix epoch, and microseconds in `0..1_000_000`.
    Timestamp {
        seconds: i64,
        micros: i64,
    },
    /// Days since the Unix epoch.
    Date(i32),
}

pub(super) const UNIX_TO_PG_EPOCH_SECONDS: i64 = 946_684_800;
pub(super) const UNIX_TO_PG_EPOCH_DAYS: i32 = 10_957;
pub(super) const SECONDS_PER_DAY: i64 = 86_400;
pub(super) const MICROS_PER_SECOND: i64 = 1_000_000;

pub(super) fn field_infos(schema: &SchemaRef, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(idx, field)| {
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                PgColumn::of(field.data_type()).pg_type(),
                format_at(format, idx),
            )
        })
        .collect()
}

/// The result format of column `idx`. pgwire's `Format::format_for` indexes
/// without a bound check, and the codes come from the client.
pub(super) fn format_at(format: Option<&Format>, idx: usize) -> FieldFormat {
    match format {
        None | Some(Format::UnifiedText) => FieldFormat::Text,
        Some(Format::UnifiedBinary) => FieldFormat::Binary,
        Some(Format::Individual(codes)) => codes.get(idx).map_or(FieldFormat::Text, |code| FieldFormat::from(*code)),
    }
}

pub(super) fn isolation_field(format: Option<&Format>) -> FieldInfo {
    FieldInfo::new(ISOLATION_COLUMN.to_owned(), None, None, Type::TEXT, format_at(format, 0))
}

pub(super) fn show_isolation(format: &Format) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(vec![isolation_field(Some(format))]);
    // TEXT is the same bytes in both formats.
    let mut data = BytesMut::new();
    let at = begin_field(&mut data);
    data.put_slice(ISOLATION_LEVEL.as_bytes());
    end_field(&mut data, at)?;
    Ok(QueryResponse::new(fields, stream::iter(vec![Ok(DataRow::new(data, 1))])))
}

/// What `encode_batch` needs to know of every column.
#[derive(Debug)]
pub(super) struct RowPlan {
    pub(super) columns: Vec<PgColumn>,
    pub(super) formats: Vec<FieldFormat>,
}

/// Rows are encoded one batch at a time as pgwire pulls them, so at most one
/// batch exists twice (as Arrow and as rows).
pub(super) fn query_response(schema: &SchemaRef, batches: Vec<RecordBatch>, format: &Format) -> QueryResponse {
    let fields = Arc::new(field_infos(schema, Some(format)));
    let plan = Arc::new(RowPlan {
        columns: schema.fields().iter().map(|field| PgColumn::of(field.data_type())).collect(),
        formats: (0..schema.fields().len()).map(|idx| format_at(Some(format), idx)).collect(),
    });
    let rows = batches.into_iter().flat_map(move |batch| match encode_batch(&batch, &plan) {
        Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    });
    QueryResponse::new(fields, stream::iter(rows))
}

pub(super) fn encode_batch(batch: &RecordBatch, plan: &RowPlan) -> PgWireResult<Vec<DataRow>> {
    if batch.num_columns() != plan.columns.len() || plan.formats.len() != plan.columns.len() {
        return Err(internal("a result batch does not match the result schema"));
    }
    let field_count = i16::try_from(plan.columns.len()).map_err(|_| sql_error("54011", "too many result columns"))?;
    let arrow_options = ArrowFormatOptions::default();
    let mut formatters = Vec::with_capacity(plan.columns.len());
    for (array, column) in batch.columns().iter().zip(&plan.columns) {
        formatters.push(match column {
            PgColumn::Formatted => {
                Some(ArrayFormatter::try_new(array.as_ref(), &arrow_options).map_err(|e| internal(e.to_string()))?)
            }
            PgColumn::Scalar(_) | PgColumn::Array(_) => None,
        });
    }
    // Logical nulls, so a column of Arrow's Null type, or a dictionary with
    // null values, comes out as SQL NULL.
    let nulls: Vec<_> = batch.columns().iter().map(|array| array.logical_nulls()).collect();

    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut scratch = String::new();
    for row in 0..batch.num_rows() {
        let mut data = BytesMut::new();
        for (idx, array) in batch.columns().iter().enumerate() {
            if nulls.get(idx).and_then(Option::as_ref).is_some_and(|n| n.is_null(row)) {
                data.put_i32(-1);
                continue;
            }
            let (Some(column), Some(format), Some(formatter)) =
                (plan.columns.get(idx), plan.formats.get(idx), formatters.get(idx))
            else {
                return Err(internal("a result batch does not match the result schema"));
            };
            let at = begin_field(&mut data);
            match (column, formatter) {
                (PgColumn::Scalar(scalar), _) => {
                    write_scalar(*scalar, array.as_ref(), row, *format, &mut data, &mut scratch)?;
                }
                (PgColumn::Array(scalar), _) => {
                    write_list(*scalar, array.as_ref(), row, *format, &mut data, &mut scratch)?;
                }
                // Arrow's text in both formats: binary TEXT is the same bytes.
                (PgColumn::Formatted, Some(formatter)) => {
                    scratch.clear();
                    formatter.value(row).write(&mut scratch).map_err(|e| internal(e.to_string()))?;
                    data.put_slice(scratch.as_bytes());
                }
                (PgColumn::Formatted, None) => return Err(internal("a result column has no formatter")),
            }
            end_field(&mut data, at)?;
        }
        rows.push(DataRow::new(data, field_count));
    }
    Ok(rows)
}

/// Reserves a field's length; [`end_field`] fills it in.
pub(super) fn begin_field(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(0);
    at
}

pub(super) fn end_field(out: &mut BytesMut, at: usize) -> PgWireResult<()> {
    let length = out.len().saturating_sub(at + 4);
    let length = i32::try_from(length).map_err(|_| sql_error("54000", "a result value is larger than 2 GiB"))?;
    match out.get_mut(at..at + 4) {
        Some(slot) => {
            slot.copy_from_slice(&length.to_be_bytes());
            Ok(())
        }
        None => Err(internal("a result field lost its length slot")),
    }
}

pub(super) fn write_scalar(
    scalar: Scalar,
    array: &dyn Array,
    row: usize,
    format: FieldFormat,
    out: &mut BytesMut,
    scratch: &mut String,
) -> PgWireResult<()> {
    let value = value_at(array, row)
        .ok_or_else(|| internal(format!("cannot send a {} value as {:?}", array.data_type(), scalar.pg_type())))?;
    match format {
        FieldFormat::Text => {
            scratch.clear();
            write_text(&value, scalar, scratch).map_err(|_| internal("formatting a value failed"))?;
            out.put_slice(scratch.as_bytes());
            Ok(())
        }
        FieldFormat::Binary => write_binary(&value, scalar, out, scratch),
    }
}

/// An array value: in text, a literal such as `{a,NULL,"c d"}`; in binary,
/// PostgreSQL's one-dimensional array format.
pub(super) fn write_list(
    scalar: Scalar,
    array: &dyn Array,
    row: usize,
    format: FieldFormat,
    out: &mut BytesMut,
    scratch: &mut String,
) -> PgWireResult<()> {
    let items: ArrayRef = if let Some(list) = array.as_list_opt::<i32>() {
        list.value(row)
    } else if let Some(list) = array.as_list_opt::<i64>() {
        list.value(row)
    } else {
        return Err(internal(format!("cannot send a {} value as an array", array.data_type())));
    };
    let nulls = items.logical_nulls();
    let is_null = |idx: usize| nulls.as_ref().is_some_and(|n| n.is_null(idx));
    let item_value = |idx: usize| {
        value_at(items.as_ref(), idx)
            .ok_or_else(|| internal(format!("cannot send a {} value as {:?}", items.data_type(), scalar.pg_type())))
    };
    match format {
        FieldFormat::Text => {
            out.put_u8(b'{');
            for idx in 0..items.len() {
                if idx > 0 {
                    out.put_u8(b',');
                }
                if is_null(idx) {
                    out.put_slice(b"NULL");
                    continue;
                }
                scratch.clear();
                write_text(&item_value(idx)?, scalar, scratch).map_err(|_| internal("formatting a value failed"))?;
                push_array_element(out, scratch);
            }
            out.put_u8(b'}');
        }
        FieldFormat::Binary => {
            let length = i32::try_from(items.len()).map_err(|_| sql_error("54000", "an array is too long"))?;
            // An empty array has no dimensions at all.
            let dimensions = i32::from(!items.is_empty());
            out.put_i32(dimensions);
            out.put_i32(i32::from((0..items.len()).any(is_null)));
            out.put_u32(scalar.pg_type().oid());
            if dimensions == 1 {
                out.put_i32(length);
                out.put_i32(1); // The lower bound.
            }
            for idx in 0..items.len() {
                if is_null(idx) {
                    out.put_i32(-1);
                    continue;
                }
                let at = begin_field(out);
                write_binary(&item_value(idx)?, scalar, out, scratch)?;
                end_field(out, at)?;
            }
        }
    }
    Ok(())
}

/// Quotes an array element the way PostgreSQL's `array_out` does.
pub(super) fn push_array_element(out: &mut BytesMut, element: &str) {
    let needs_quotes = element.is_empty()
        || element.eq_ignore_ascii_case("null")
        || element.bytes().any(|b| matches!(b, b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t'..=b'\r'));
    if !needs_quotes {
        out.put_slice(element.as_bytes());
        return;
    }
    out.put_u8(b'"');
    // Byte-wise is safe: the escaped bytes are ASCII, never part of a longer
    // UTF-8 sequence.
    for b in element.bytes() {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
}

/// `None` when this module cannot read the array's type as a scalar.
pub(super) fn value_at(array: &dyn Array, row: usize) -> Option<Value<'_>> {
    Some(match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean_opt()?.value(row)),
        DataType::Int8 => Value::Int(i64::from(array.as_primitive_opt::<Int8Type>()?.value(row))),
        DataType::Int16 => Value::Int(i64::from(array.as_primitive_opt::<Int16Type>()?.value(row))),
        DataType::Int32 => Value::Int(i64::from(array.as_primitive_opt::<Int32Type>()?.value(row))),
        DataType::Int64 => Value::Int(array.as_primitive_opt::<Int64Type>()?.value(row)),
        DataType::UInt8 => Value::Int(i64::from(array.as_primitive_opt::<UInt8Type>()?.value(row))),
        DataType::UInt16 => Value::Int(i64::from(array.as_primitive_opt::<UInt16Type>()?.value(row))),
        DataType::UInt32 => Value::Int(i64::from(array.as_primitive_opt::<UInt32Type>()?.value(row))),
        DataType::UInt64 => Value::UInt(array.as_primitive_opt::<UInt64Type>()?.value(row)),
        DataType::Float32 => Value::Float32(array.as_primitive_opt::<Float32Type>()?.value(row)),
        DataType::Float64 => Value::Float64(array.as_primitive_opt::<Float64Type>()?.value(row)),
        DataType::Utf8 => Value::Text(array.as_string_opt::<i32>()?.value(row)),
        DataType::LargeUtf8 => Value::Text(array.as_string_opt::<i64>()?.value(row)),
        DataType::Utf8View => Value::Text(array.as_string_view_opt()?.value(row)),
        DataType::Timestamp(unit, _) => {
            // Floor division keeps the microseconds non-negative before 1970.
            let (seconds, micros) = match unit {
                TimeUnit::Second => (array.as_primitive_opt::<TimestampSecondType>()?.value(row), 0),
                TimeUnit::Millisecond => {
                    let v = array.as_primitive_opt::<TimestampMillisecondType>()?.value(row);
                    (v.div_euclid(1_000), v.rem_euclid(1_000) * 1_000)
                }
                TimeUnit::Microsecond => {
                    let v = array.as_primitive_opt::<TimestampMicrosecondType>()?.value(row);
                    (v.div_euclid(MICROS_PER_SECOND), v.rem_euclid(MICROS_PER_SECOND))
                }
                TimeUnit::Nanosecond => {
                    // PostgreSQL keeps microseconds; the nanoseconds are cut.
                    let v = array.as_primitive_opt::<TimestampNanosecondType>()?.value(row);
                    (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000) / 1_000)
                }
            };
            Value::Timestamp { seconds, micros }
        }
        DataType::Date32 => Value::Date(array.as_primitive_opt::<Date32Type>()?.value(row)),
        _ => return None,
    })
}

/// PostgreSQL's text output. `scalar` is the announced type; it decides the
/// time zone suffix.
pub(super) fn write_text(value: &Value<'_>, scalar: Scalar, out: &mut String) -> fmt::Result {
    match value {
        Value::Bool(b) => {
            out.push(if *b { 't' } else { 'f' });
            Ok(())
        }
        Value::Int(v) => write!(out, "{v}"),
        Value::UInt(v) => write!(out, "{v}"),
        Value::Float32(v) => write_float(out, *v, f64::from(*v)),
        Value::Float64(v) => write_float(out, *v, *v),
        Value::Text(s) => {
            out.push_str(s);
            Ok(())
        }
        Value::Timestamp { seconds, micros } => {
            let zone = if scalar == Scalar::TimestampTz { "+00" } else { "" };
            write_timestamp(out, *seconds, *micros, zone)
        }
        Value::Date(days) => write_date(out, i64::from(*days)),
    }
}

/// PostgreSQL's binary format for the announced type.
pub(super) fn write_binary(
    value: &Value<'_>,
    scalar: Scalar,
    out: &mut BytesMut,
    scratch: &mut String,
) -> PgWireResult<()> {
    let out_of_range = |what: &str| {
        sql_error("22003", format!("{what} out of range for the binary format; ask for text results instead"))
    };
    match (scalar, value) {
        (Scalar::Bool, Value::Bool(b)) => out.put_u8(u8::from(*b)),
        (Scalar::Int4, Value::Int(v)) => out.put_i32(i32::try_from(*v).map_err(|_| out_of_range("integer"))?),
        (Scalar::Int4, Value::UInt(v)) => out.put_i32(i32::try_from(*v).map_err(|_| out_of_range("integer"))?),
        (Scalar::Int8, Value::Int(v)) => out.put_i64(*v),
        (Scalar::Int8, Value::UInt(v)) => out.put_i64(i64::try_from(*v).map_err(|_| out_of_range("bigint"))?),
        (Scalar::Float8, Value::Float32(v)) => out.put_f64(f64::from(*v)),
        (Scalar::Float8, Value::Float64(v)) => out.put_f64(*v),
        (Scalar::Timestamp | Scalar::TimestampTz, Value::Timestamp { seconds, micros }) => {
            let pg_micros = seconds
                .checked_sub(UNIX_TO_PG_EPOCH_SECONDS)
                .and_then(|s| s.checked_mul(MICROS_PER_SECOND))
                .and_then(|us| us.checked_add(*micros))
                .ok_or_else(|| out_of_range("timestamp"))?;
            out.put_i64(pg_micros);
        }
        (Scalar::Date, Value::Date(days)) => {
            out.put_i32(days.checked_sub(UNIX_TO_PG_EPOCH_DAYS).ok_or_else(|| out_of_range("date"))?);
        }
        // Binary TEXT is the UTF-8 text.
        (Scalar::Text, value) => {
            scratch.clear();
            write_text(value, scalar, scratch).map_err(|_| internal("formatting a value failed"))?;
            out.put_slice(scratch.as_bytes());
        }
        (scalar, value) => {
            return Err(internal(format!("cannot send {value:?} as binary {:?}", scalar.pg_type())));
        }
    }
    Ok(())
}

/// Like PostgreSQL's float8 output with `extra_float_digits` above 0: the
/// shortest text that reads back exactly, in exponent form below 1e-4 and
/// from 1e15 (`1e+300`, `1.5e-05`), and `NaN`, `Infinity`, `-Infinity`.
pub(super) fn write_float<F: fmt::Display + fmt::LowerExp>(out: &mut String, value: F, as_f64: f64) -> fmt::Result {
    if as_f64.is_nan() {
        out.push_str("NaN");
        return Ok(());
    }
    if as_f64.is_infinite() {
        out.push_str(if as_f64 > 0.0 { "Infinity" } else { "-Infinity" });
        return Ok(());
    }
    // Rust prints the shortest round-trip digits, as `1.5e-5` with `{:e}`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.rsplit_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..15).contains(&exponent) {
        write!(out, "{value}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// `2026-01-02 03:04:05.123456` plus `zone`, with trailing zeros of the
/// fraction dropped as PostgreSQL does, and ` BC` for years before 1.
pub(super) fn write_timestamp(out: &mut String, seconds: i64, micros: i64, zone: &str) -> fmt::Result {
    let (year, month, day) = actlog_core::time::civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    write_ymd(out, year, month, day)?;
    write!(out, " {:02}:{:02}:{:02}", second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60)?;
    if micros > 0 {
        let mut fraction = micros;
        let mut width = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        write!(out, ".{fraction:0width$}")?;
    }
    out.push_str(zone);
    if year <= 0 {
        out.push_str(" BC");
    }
    Ok(())
}

/// `days` since the Unix epoch, as `2026-01-02`.
pub(super) fn write_date(out: &mut String, days: i64) -> fmt::Result {
    let (year, month, day) = actlog_core::time::civil_from_days(days);
    write_ymd(out, year, month, day)?;
    if year <= 0 {
        out.push_str(" BC");
    }
    Ok(())
}

/// Proleptic Gregorian year 0 is 1 BC, as in PostgreSQL's output.
pub(super) fn write_ymd(out: &mut String, year: i64, month: i64, day: i64) -> fmt::Result {
    let shown_year = if year <= 0 { 1 - year } else { year };
    write!(out, "{shown_year:04}-{month:02}-{day:02}")
}
