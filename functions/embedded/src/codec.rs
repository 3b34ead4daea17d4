//! Conversions between domain values and SQLite columns.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

use flowgate_core::model::{
    Instance, InstanceStatus, RequestRecord, RequestStatus, StartSpec, Workflow,
};

/// Timestamps are stored as microseconds since the Unix epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`]; `None` for a value no time has.
pub fn time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

fn bad(col: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, what.into())
}

/// A time column, read back; a value no time has is an error, never the epoch.
pub fn at(row: &Row<'_>, col: usize) -> rusqlite::Result<DateTime<Utc>> {
    let us: i64 = row.get(col)?;
    time(us).ok_or_else(|| bad(col, format!("{us} is not a time")))
}

/// A time column that may be empty, read back.
pub fn opt_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(col)? {
        None => Ok(None),
        Some(us) => time(us)
            .map(Some)
            .ok_or_else(|| bad(col, format!("{us} is not a time"))),
    }
}

/// An error of a row's reading, naming the row (`what`) it came from.
fn named(what: &str, e: rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::FromSqlConversionFailure(col, ty, cause) => {
            rusqlite::Error::FromSqlConversionFailure(
                col,
                ty,
                format!("{what} does not read (column {col}): {cause}").into(),
            )
        }
        other => other,
    }
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, col: usize) -> rusqlite::Result<T> {
    let text: String = row.get(col)?;
    serde_json::from_str(&text).map_err(|e| bad(col, e.to_string()))
}

fn opt_json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    col: usize,
) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(col)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(col, e.to_string())),
    }
}

/// Columns of `workflows`, in the order [`workflow`] reads them.
pub const WORKFLOW_COLS: &str = "tenant, code, name, online, params_schema, version, created_at, updated_at, ds_code, \
     ds_project_code, target";

/// Reads a `workflows` row.
pub fn workflow(row: &Row<'_>) -> rusqlite::Result<Workflow> {
    Ok(Workflow {
        tenant: row.get(0)?,
        code: row.get(1)?,
        name: row.get(2)?,
        online: row.get(3)?,
        params_schema: json(row, 4)?,
        version: row.get::<_, i64>(5)? as u64,
        created_at: at(row, 6)?,
        updated_at: at(row, 7)?,
        ds_code: row.get(8)?,
        ds_project_code: row.get(9)?,
        target: opt_json(row, 10)?,
    })
}

/// Columns of `requests`, in the order [`request`] reads them.
pub const REQUEST_COLS: &str = "tenant, request_id, instance_id, idempotency_key, fingerprint, \
     spec, status, attempts, last_error, accepted_at, updated_at, pending_since, history, dispatch";

/// Reads a `requests` row, its history in time order; a row that does not read is an
/// error naming it.
pub fn request(row: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    let what = format!(
        "request {}/{}",
        row.get::<_, String>(0)?,
        row.get::<_, String>(1)?
    );
    request_fields(row).map_err(|e| named(&what, e))
}

fn request_fields(row: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    let status: String = row.get(6)?;
    let spec: StartSpec = json(row, 5)?;
    Ok(RequestRecord {
        tenant: row.get(0)?,
        request_id: row.get(1)?,
        instance_id: row.get(2)?,
        idempotency_key: row.get(3)?,
        fingerprint: row.get(4)?,
        spec,
        status: RequestStatus::parse(&status).ok_or_else(|| bad(6, status))?,
        attempts: row.get::<_, i64>(7)? as u32,
        last_error: row.get(8)?,
        accepted_at: at(row, 9)?,
        updated_at: at(row, 10)?,
        pending_since: opt_at(row, 11)?,
        history: json(row, 12)?,
        dispatch: opt_json(row, 13)?,
    })
}

/// Columns of `instances`, in the order [`instance`] reads them.
pub const INSTANCE_COLS: &str = "tenant, instance_id, request_id, workflow, params, priority, \
     schedule_time, status, created_at, logical_date";

/// Reads an `instances` row; a row that does not read is an error naming it.
pub fn instance(row: &Row<'_>) -> rusqlite::Result<Instance> {
    let what = format!(
        "instance {}/{}",
        row.get::<_, String>(0)?,
        row.get::<_, String>(1)?
    );
    instance_fields(row).map_err(|e| named(&what, e))
}

fn instance_fields(row: &Row<'_>) -> rusqlite::Result<Instance> {
    let priority: String = row.get(5)?;
    Ok(Instance {
        tenant: row.get(0)?,
        instance_id: row.get(1)?,
        request_id: row.get(2)?,
        workflow: row.get(3)?,
        params: json(row, 4)?,
        priority: serde_json::from_value(serde_json::Value::String(priority.clone()))
            .map_err(|_| bad(5, priority))?,
        schedule_time: opt_at(row, 6)?,
        status: InstanceStatus::Created,
        created_at: at(row, 8)?,
        logical_date: opt_at(row, 9)?,
        dispatch: None,
        options: Default::default(),
    })
}

/// The storage spelling of a serializable unit enum (such as a priority).
pub fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A value as JSON text for a column.
pub fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}
