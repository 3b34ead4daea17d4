//! A start's row written back: what its request holds now, and whether it leaves the queue.
//! The store's updates and the runs' slots and releases all write a start this one way.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use flowgate_core::model::RequestRecord;

use crate::codec::{self, micros};
use crate::compact;

/// Writes back what `record` holds now to its row; a start no longer pending leaves the
/// queue in the same write (answered: `Some(seq)`). `created_at`, when given, records its
/// instance.
pub(crate) fn write_back(
    conn: &Connection,
    seq: i64,
    record: &RequestRecord,
    created_at: Option<DateTime<Utc>>,
) -> rusqlite::Result<Option<i64>> {
    let pending = record.pending_due().is_some();
    let history = compact::history(&record.history, record.accepted_at)?;
    let dispatch = record.dispatch.as_ref().map(codec::to_json).transpose()?;
    let run = record.run.as_ref().map(codec::to_json).transpose()?;
    conn.prepare_cached(
        "UPDATE starts SET status = ?2, attempts = ?3, last_error = ?4, updated_at = ?5, \
         pending_since = ?6, history = ?7, dispatch = ?8, \
         due_at = CASE WHEN ?9 THEN due_at ELSE NULL END, \
         created_at = COALESCE(created_at, ?10), run = ?11 WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        record.status.as_str(),
        record.attempts,
        record.last_error,
        micros(record.updated_at),
        record.pending_since.map(micros),
        history,
        dispatch,
        pending,
        created_at.map(micros),
        run,
    ])?;
    Ok((!pending).then_some(seq))
}
