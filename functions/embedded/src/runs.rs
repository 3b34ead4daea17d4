//! Runs on the SQLite file: the slots that unfinished instances hold under their workflow's
//! concurrency limit (with their run's deadline), and the starts waiting for one. Every
//! change here happens in the same transaction as the start's own write, so a slot is taken
//! and given back, and a waiting start released, exactly once, whatever process does it.
//!
//! - `run_slots`: one row per start that holds a slot or has a deadline: an instance created
//!   and not yet ended, or a start released from waiting (its slot reserved until it is
//!   created).
//! - `run_waits`: one row per `WAITING` start, by its key's group, in release order (priority
//!   rank, then arrival).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use flowgate_core::model::{RequestRecord, RequestStatus};
use flowgate_core::ports::{Creation, RequestUpdate};
use flowgate_core::runs::{self, Gate, OnLimit, Slot};

use crate::codec::{self, Loaded, START_COLS, micros};
use crate::queue::now_us;
use crate::row::write_back;

fn slot_of(record: &RequestRecord) -> Option<(Slot, String)> {
    let slot = record.spec.policy.as_ref()?.slot.clone()?;
    let group = slot.group(&record.spec.workflow);
    Some((slot, group))
}

fn load_seq(conn: &Connection, seq: i64) -> rusqlite::Result<Option<Loaded>> {
    let sql = format!("SELECT {START_COLS} FROM starts WHERE seq = ?1");
    conn.prepare_cached(&sql)?
        .query_row(params![seq], |row| {
            Ok(Loaded {
                record: codec::request(row)?,
                created: row.get::<_, Option<i64>>(14)?.is_some(),
                seq: row.get(15)?,
            })
        })
        .optional()
}

fn holding(conn: &Connection, tenant: &str, group: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM run_slots WHERE tenant = ?1 AND grp = ?2")?
        .query_row(params![tenant, group], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Decides, at creation, whether a start under a limit is created (`None`), or held back:
/// then the start is written `WAITING` or `SKIPPED` here, and the answer says which.
pub(crate) fn gate(
    conn: &Connection,
    seq: i64,
    record: &mut RequestRecord,
    creation: &RequestUpdate,
) -> rusqlite::Result<Option<Creation>> {
    let Some((slot, group)) = slot_of(record) else {
        return Ok(None);
    };
    let reserved = conn
        .prepare_cached("SELECT 1 FROM run_slots WHERE seq = ?1")?
        .exists(params![seq])?;
    if reserved {
        return Ok(None);
    }
    let tenant = record.tenant.clone();
    let held = holding(conn, &tenant, &group)?;
    let rank = runs::rank(record.spec.priority);
    let ahead: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM run_waits WHERE tenant = ?1 AND grp = ?2 \
             AND (rank < ?3 OR (rank = ?3 AND seq < ?4))",
        )?
        .query_row(params![tenant, group, rank, seq], |r| r.get(0))?;
    match runs::gate(&slot, held, ahead as u64) {
        Gate::Admit => Ok(None),
        Gate::Wait(reason) => {
            let attempts = creation.set_attempts.unwrap_or(record.attempts);
            if record
                .apply(&runs::waiting_update(reason.clone(), attempts))
                .is_err()
            {
                return Ok(Some(Creation::AlreadyExisted));
            }
            write_back(conn, seq, record, None)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO run_waits (seq, tenant, grp, rank) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq, tenant, group, rank])?;
            if slot.on_limit == OnLimit::QueueLatest {
                supersede(conn, &tenant, &group, seq)?;
            }
            // Held back only by others ahead of it: let the first of them through.
            release(conn, &tenant, &group, slot.limit)?;
            Ok(Some(Creation::Waiting(reason)))
        }
        Gate::Skip(reason) => {
            if record
                .apply(&runs::skipped_update(
                    RequestStatus::Accepted,
                    reason.clone(),
                ))
                .is_err()
            {
                return Ok(Some(Creation::AlreadyExisted));
            }
            write_back(conn, seq, record, None)?;
            Ok(Some(Creation::Skipped(reason)))
        }
    }
}

/// After a creation: the instance holds its slot (and its run's deadline).
pub(crate) fn occupy(
    conn: &Connection,
    seq: i64,
    record: &RequestRecord,
    created_at: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let Some(policy) = &record.spec.policy else {
        return Ok(());
    };
    let deadline = policy
        .timeout
        .map(|t| micros(created_at) + i64::try_from(t).unwrap_or(i64::MAX / 2_000_000) * 1_000_000);
    let group = slot_of(record).map(|(_, g)| g);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_slots (seq, tenant, grp, deadline) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![seq, record.tenant, group, deadline])?;
    Ok(())
}

/// After an update: a start that is done gives back what it held, and the next start
/// waiting for its key is released.
pub(crate) fn settle(conn: &Connection, seq: i64, record: &RequestRecord) -> rusqlite::Result<()> {
    if record.spec.policy.is_none() || !record.run_over() {
        return Ok(());
    }
    let freed = conn
        .prepare_cached("DELETE FROM run_slots WHERE seq = ?1")?
        .execute(params![seq])?;
    conn.prepare_cached("DELETE FROM run_waits WHERE seq = ?1")?
        .execute(params![seq])?;
    if freed > 0
        && let Some((slot, group)) = slot_of(record)
    {
        release(conn, &record.tenant, &group, slot.limit)?;
    }
    Ok(())
}

/// Releases waiting starts of `group`, first in line first, while a slot is free: each one
/// reserves its slot and goes back on the queue.
fn release(conn: &Connection, tenant: &str, group: &str, limit: u32) -> rusqlite::Result<()> {
    while holding(conn, tenant, group)? < u64::from(limit) {
        let head: Option<i64> = conn
            .prepare_cached(
                "SELECT seq FROM run_waits WHERE tenant = ?1 AND grp = ?2 \
                 ORDER BY rank, seq LIMIT 1",
            )?
            .query_row(params![tenant, group], |r| r.get(0))
            .optional()?;
        let Some(head) = head else { break };
        conn.prepare_cached("DELETE FROM run_waits WHERE seq = ?1")?
            .execute(params![head])?;
        let Some(Loaded { mut record, .. }) = load_seq(conn, head)? else {
            continue;
        };
        if record
            .apply(&runs::released_update(
                "a slot freed: released for creation",
            ))
            .is_err()
        {
            continue;
        }
        write_back(conn, head, &record, None)?;
        conn.prepare_cached("UPDATE starts SET due_at = ?2 WHERE seq = ?1")?
            .execute(params![head, now_us()])?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO run_slots (seq, tenant, grp, deadline) VALUES (?1, ?2, ?3, NULL)",
        )?
        .execute(params![head, tenant, group])?;
    }
    Ok(())
}

/// `queue_latest`: every other start waiting in `group` gives way to `newest`.
fn supersede(conn: &Connection, tenant: &str, group: &str, newest: i64) -> rusqlite::Result<()> {
    let older: Vec<i64> = conn
        .prepare_cached("SELECT seq FROM run_waits WHERE tenant = ?1 AND grp = ?2 AND seq <> ?3")?
        .query_map(params![tenant, group, newest], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for seq in older {
        conn.prepare_cached("DELETE FROM run_waits WHERE seq = ?1")?
            .execute(params![seq])?;
        let Some(Loaded { mut record, .. }) = load_seq(conn, seq)? else {
            continue;
        };
        let update = runs::skipped_update(RequestStatus::Waiting, runs::SUPERSEDED.to_owned());
        if record.apply(&update).is_ok() {
            write_back(conn, seq, &record, None)?;
        }
    }
    Ok(())
}

/// The starts whose run is past its deadline at `now`, most overdue first.
pub(crate) fn overdue(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<(String, String)>> {
    conn.prepare_cached(
        "SELECT s.tenant, s.request_id FROM run_slots r JOIN starts s ON s.seq = r.seq \
         WHERE r.deadline IS NOT NULL AND r.deadline <= ?1 ORDER BY r.deadline LIMIT ?2",
    )?
    .query_map(params![micros(now), limit as i64], |row| {
        Ok((row.get(0)?, crate::compact::id_at(row, 1)?))
    })?
    .collect()
}

/// The unfinished Step Functions runs last changed before `quiet_since` (and after `after`),
/// oldest change first, read by `starts_polled`.
pub(crate) fn quiet(
    conn: &Connection,
    quiet_since: DateTime<Utc>,
    after: Option<DateTime<Utc>>,
    limit: usize,
) -> rusqlite::Result<Vec<(String, String, DateTime<Utc>)>> {
    conn.prepare_cached(
        "SELECT tenant, request_id, updated_at FROM starts \
         WHERE status = 'DISPATCHED' AND dispatch LIKE '{\"target\":\"stepfunctions\"%' \
         AND (run IS NULL OR run LIKE '{\"status\":\"RUNNING\"%') \
         AND updated_at < ?1 AND updated_at > ?2 ORDER BY updated_at LIMIT ?3",
    )?
    .query_map(
        params![
            micros(quiet_since),
            after.map_or(i64::MIN, micros),
            limit as i64
        ],
        |row| {
            Ok((
                row.get(0)?,
                crate::compact::id_at(row, 1)?,
                crate::codec::at(row, 2)?,
            ))
        },
    )?
    .collect()
}
