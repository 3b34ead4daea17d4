//! The dead-letter half of the embedded queue: rows of `messages` with `queue = 'dlq'`.
//! A claim reuses `visible_at` and `receipt`, as a delivery does on the main queue, but never
//! changes `receive_count`: that stays the count of main-queue deliveries.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Row, params};

use flowgate_core::BackendError;
use flowgate_core::ports::{DeadLetter, DeadLetterQueue};

use crate::Embedded;
use crate::codec::micros;
use crate::queue::{now_us, us};

const COLUMNS: &str =
    "id, tenant, request_id, body, dead_reason, receive_count, dead_at, traceparent";

fn letter(row: &Row<'_>, receipt: impl FnOnce(i64) -> String) -> rusqlite::Result<DeadLetter> {
    let id: i64 = row.get(0)?;
    Ok(DeadLetter {
        message_id: id.to_string(),
        receipt: receipt(id),
        tenant: row.get(1)?,
        request_id: row.get(2)?,
        body: row.get(3)?,
        reason: row.get(4)?,
        receive_count: u32::try_from(row.get::<_, i64>(5)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Integer, e.into())
        })?,
        dead_lettered_at: crate::codec::at(row, 6)?,
        traceparent: row.get(7)?,
    })
}

#[async_trait]
impl DeadLetterQueue for Embedded {
    async fn dlq_peek(&self, max: usize) -> Result<Vec<DeadLetter>, BackendError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE queue = 'dlq' \
                     ORDER BY dead_at, id LIMIT ?1"
                ))?
                .query_map(params![limit], |r| letter(r, |_| String::new()))?
                .collect()
            })
            .await
            .map_err(|e| e.into_backend("dlq.peek"))
    }

    async fn dlq_claim(&self, max: usize, hold: Duration) -> Result<Vec<DeadLetter>, BackendError> {
        let limit = i64::try_from(max.clamp(1, 10)).unwrap_or(10);
        let hold = us(hold);
        self.db
            .write(move |conn| {
                let now = now_us();
                // The claim time makes each claim's receipt unique: a claimed letter is
                // invisible, so it cannot be claimed again within the same microsecond.
                let token = |id: i64| format!("{id}.c{now}");
                let letters: Vec<DeadLetter> = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM messages WHERE queue = 'dlq' AND visible_at <= ?1 \
                         ORDER BY dead_at, id LIMIT ?2"
                    ))?
                    .query_map(params![now, limit], |r| letter(r, token))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut claim = conn.prepare_cached(
                    "UPDATE messages SET visible_at = ?2, receipt = ?3 WHERE id = ?1",
                )?;
                for l in &letters {
                    claim.execute(params![l.message_id, now + hold, l.receipt])?;
                }
                Ok(letters)
            })
            .await
            .map_err(|e| e.into_backend("dlq.claim"))
    }

    async fn dlq_release(&self, letter: &DeadLetter) -> Result<(), BackendError> {
        self.on_receipt("dlq.release", &letter.receipt, |conn, id, token| {
            conn.prepare_cached(
                "UPDATE messages SET visible_at = ?3, receipt = NULL \
                 WHERE id = ?1 AND receipt = ?2 AND queue = 'dlq'",
            )?
            .execute(params![id, token, now_us()])
        })
        .await
    }

    async fn dlq_delete(&self, letter: &DeadLetter) -> Result<(), BackendError> {
        self.on_receipt("dlq.delete", &letter.receipt, |conn, id, token| {
            conn.prepare_cached(
                "DELETE FROM messages WHERE id = ?1 AND receipt = ?2 AND queue = 'dlq'",
            )?
            .execute(params![id, token])
        })
        .await
    }

    async fn dlq_restore(&self, letter: &DeadLetter) -> Result<(), BackendError> {
        let l = letter.clone();
        self.db
            .write(move |conn| {
                let now = now_us();
                conn.prepare_cached(
                    "INSERT INTO messages (queue, tenant, request_id, body, sent_at, visible_at, \
                     receive_count, dead_reason, dead_at, traceparent) \
                     VALUES ('dlq', ?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    l.tenant,
                    l.request_id,
                    l.body,
                    now,
                    i64::from(l.receive_count),
                    l.reason,
                    micros(l.dead_lettered_at),
                    l.traceparent,
                ])
                .map(drop)
            })
            .await
            .map_err(|e| e.into_backend("dlq.restore"))
    }
}
