//! Conversions between domain values and SQLite columns.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::compact;

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

/// An error of a row's reading, naming the row it came from: a `kind` (request, instance)
/// of the tenant in column 0 and the id in column `id`.
fn named(row: &Row<'_>, kind: &str, id: usize, e: rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::FromSqlConversionFailure(col, ty, cause) => {
            let tenant = row.get::<_, String>(0).unwrap_or_else(|_| "?".into());
            let id = compact::id_at(row, id).unwrap_or_else(|_| "?".into());
            rusqlite::Error::FromSqlConversionFailure(
                col,
                ty,
                format!("{kind} {tenant}/{id} does not read (column {col}): {cause}").into(),
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
     ds_project_code, target, runs";

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
        runs: opt_json(row, 11)?.unwrap_or_default(),
    })
}

/// Columns of a `starts` row, in the order [`request`] and [`instance`] read them.
pub const START_COLS: &str = "tenant, request_id, instance_id, idempotency_key, fingerprint, \
     spec, status, attempts, last_error, accepted_at, updated_at, pending_since, history, \
     dispatch, created_at, seq, workflow, run";

/// The status a start takes when retention removes its request and keeps its instance.
pub const EXPIRED: &str = "EXPIRED";

/// Reads a `starts` row as its request, its history in time order; a row that does not
/// read is an error naming it.
pub fn request(row: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    request_fields(row).map_err(|e| named(row, "request", 1, e))
}

fn request_fields(row: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    let status: String = row.get(6)?;
    let spec: StartSpec = compact::spec_at(row, 5, row.get(16)?)?;
    Ok(RequestRecord {
        tenant: row.get(0)?,
        request_id: compact::id_at(row, 1)?,
        instance_id: compact::id_at(row, 2)?,
        idempotency_key: row.get(3)?,
        fingerprint: compact::digest_at(row, 4)?,
        spec,
        status: RequestStatus::parse(&status).ok_or_else(|| bad(6, status))?,
        attempts: row.get::<_, i64>(7)? as u32,
        last_error: row.get(8)?,
        accepted_at: at(row, 9)?,
        updated_at: at(row, 10)?,
        pending_since: opt_at(row, 11)?,
        history: compact::history_at(row, 12, at(row, 9)?)?,
        dispatch: opt_json(row, 13)?,
        run: opt_json(row, 17)?,
    })
}

/// Reads a `starts` row whose instance exists as that instance, with its hand-off as its
/// request holds it (none once retention removed the request); an error naming the row
/// when it does not read.
pub fn instance(row: &Row<'_>) -> rusqlite::Result<Instance> {
    instance_fields(row).map_err(|e| named(row, "instance", 2, e))
}

fn instance_fields(row: &Row<'_>) -> rusqlite::Result<Instance> {
    let status: String = row.get(6)?;
    let spec: StartSpec = compact::spec_at(row, 5, row.get(16)?)?;
    let (status, dispatch) = match status.as_str() {
        EXPIRED => (InstanceStatus::Created, None),
        other => match RequestStatus::parse(other) {
            Some(RequestStatus::Dispatched) => (InstanceStatus::Dispatched, opt_json(row, 13)?),
            Some(_) => (InstanceStatus::Created, opt_json(row, 13)?),
            None => return Err(bad(6, status)),
        },
    };
    Ok(Instance {
        tenant: row.get(0)?,
        instance_id: compact::id_at(row, 2)?,
        request_id: compact::id_at(row, 1)?,
        workflow: spec.workflow,
        params: spec.params,
        priority: spec.priority,
        schedule_time: spec.schedule_time,
        logical_date: spec.logical_date,
        status,
        created_at: at(row, 14)?,
        dispatch,
        options: Default::default(),
        run: None,
        duration_ms: None,
        callback: None,
    }
    .with_run(opt_json(row, 17)?))
}

pub use crate::compact::to_json;

/// A start's request, with its row's position.
pub(crate) struct Loaded {
    pub(crate) seq: i64,
    pub(crate) record: flowgate_core::model::RequestRecord,
    pub(crate) created: bool,
}
