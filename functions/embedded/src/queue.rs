//! The [`Queue`] port over the SQLite file, with SQS semantics: visibility timeout, receive
//! count, and a dead-letter queue.
//!
//! The queue has two sources. A start accepted with its message is on the queue in its own
//! row (`starts.due_at`, `deliveries`): no message row is written for it, and it leaves the
//! queue as its status leaves pending, in the write that moves it on, so its delivery needs
//! no acknowledgement of its own. Anything else sent (a re-send, a replay) is a row of
//! `messages`, acknowledged by deleting it. The dead-letter queue is `messages` too.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use tracing::warn;

use flowgate_core::BackendError;
use flowgate_core::dead_reason;
use flowgate_core::message::QueueMessage;
use flowgate_core::ports::{Delivery, Envelope, Liveness, Queue};

use crate::Embedded;
use crate::codec::micros;

/// How often an idle receive looks for messages sent by another process on the same file.
const IDLE_POLL: Duration = Duration::from_millis(20);

pub(crate) fn now_us() -> i64 {
    micros(Utc::now())
}

pub(crate) fn us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Puts a message on the main queue, visible at once.
pub(crate) fn insert_message(
    conn: &rusqlite::Connection,
    envelope: &Envelope,
    sent_at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages (queue, tenant, request_id, body, sent_at, visible_at, \
         traceparent) VALUES ('main', ?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        envelope.tenant,
        envelope.request_id,
        envelope.body,
        sent_at,
        envelope.traceparent,
    ])?;
    Ok(())
}

/// A visible message as `take_visible` selects it.
struct Visible {
    id: i64,
    tenant: Option<String>,
    request_id: Option<String>,
    body: String,
    count: i64,
    traceparent: Option<String>,
}

/// A receipt names the message and the delivery, so a stale receipt cannot touch a later one.
fn receipt(id: i64, receive_count: i64) -> String {
    format!("{id}.{receive_count}")
}

fn parse_receipt(receipt: &str) -> Option<i64> {
    receipt.split_once('.')?.0.parse().ok()
}

/// A start's delivery from its own row: `s{seq}.{delivery}`.
fn start_receipt(seq: i64, delivery: i64) -> String {
    format!("s{seq}.{delivery}")
}

/// The row and delivery a start's receipt names; `None` for a message's receipt.
fn parse_start_receipt(receipt: &str) -> Option<(i64, i64)> {
    let (seq, delivery) = receipt.strip_prefix('s')?.split_once('.')?;
    Some((seq.parse().ok()?, delivery.parse().ok()?))
}

/// The first delivery of a start accepted with `envelope`, handed over in this process.
pub(crate) fn first_delivery(seq: i64, envelope: &Envelope) -> Delivery {
    Delivery {
        message_id: format!("s{seq}"),
        receipt: start_receipt(seq, 1),
        receive_count: 1,
        tenant: Some(envelope.tenant.clone()),
        request_id: Some(envelope.request_id.clone()),
        body: envelope.body.clone(),
        traceparent: envelope.traceparent.clone(),
    }
}

/// The key of the index of live starts (`starts_live`): when each is next due.
pub(crate) const LIVE_KEY: &str = "COALESCE(due_at, pending_since, accepted_at)";

/// The index's condition: a start whose status still needs work.
pub(crate) const LIVE: &str =
    "(status = 'ACCEPTED' OR (status = 'CREATED' AND pending_since IS NOT NULL))";

/// Which starts are on the queue, and due: live, with `due_at` at or before `?1`, read by
/// the live index in the order it keeps.
const DUE_STARTS: &str = "FROM starts WHERE COALESCE(due_at, pending_since, accepted_at) <= ?1 \
     AND (status = 'ACCEPTED' OR (status = 'CREATED' AND pending_since IS NOT NULL)) \
     AND due_at IS NOT NULL";

/// Takes up to `max` due starts: each becomes invisible for `visibility`, or, delivered
/// `max_receive` times already, leaves the queue for the dead-letter queue as SQS's
/// redrive moves a message (its request is left as it is, for the reconciler to find).
fn take_due_starts(
    conn: &rusqlite::Connection,
    now: i64,
    max: usize,
    visibility: i64,
    max_receive: i64,
) -> rusqlite::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {}, deliveries {DUE_STARTS} ORDER BY {LIVE_KEY} LIMIT ?2",
        crate::codec::START_COLS
    );
    let due: Vec<(crate::codec::Loaded, i64)> = conn
        .prepare_cached(&sql)?
        .query_map(params![now, max as i64], |row| {
            Ok((
                crate::codec::Loaded {
                    record: crate::codec::request(row)?,
                    created: row.get::<_, Option<i64>>(14)?.is_some(),
                    seq: row.get(15)?,
                },
                row.get(18)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut deliveries = Vec::with_capacity(due.len());
    for (start, count) in due {
        let envelope = QueueMessage::envelope_for(&start.record);
        if count >= max_receive {
            warn!(request_id = %start.record.request_id,
                "start exceeded the receive count without a verdict; dead-lettering");
            insert_letter(conn, &envelope, &dead_reason::redriven(count), count, now)?;
            conn.prepare_cached("UPDATE starts SET due_at = NULL WHERE seq = ?1")?
                .execute(params![start.seq])?;
            continue;
        }
        let count = count + 1;
        conn.prepare_cached("UPDATE starts SET deliveries = ?2, due_at = ?3 WHERE seq = ?1")?
            .execute(params![start.seq, count, now + visibility])?;
        deliveries.push(Delivery {
            message_id: format!("s{}", start.seq),
            receipt: start_receipt(start.seq, count),
            receive_count: count as u32,
            tenant: Some(envelope.tenant),
            request_id: Some(envelope.request_id),
            body: envelope.body,
            traceparent: envelope.traceparent,
        });
    }
    Ok(deliveries)
}

/// Puts a letter in the dead-letter queue.
fn insert_letter(
    conn: &rusqlite::Connection,
    envelope: &Envelope,
    reason: &str,
    receive_count: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages (queue, tenant, request_id, body, sent_at, visible_at, \
         receive_count, dead_reason, dead_at, traceparent) \
         VALUES ('dlq', ?1, ?2, ?3, ?4, ?4, ?5, ?6, ?4, ?7)",
    )?
    .execute(params![
        envelope.tenant,
        envelope.request_id,
        envelope.body,
        now,
        receive_count,
        reason,
        envelope.traceparent,
    ])?;
    Ok(())
}

impl Embedded {
    /// Marks up to `max` due starts and visible messages as delivered; moves those already
    /// delivered `max_receive_count` times to the dead-letter queue instead, as SQS's
    /// redrive does.
    async fn take_visible(&self, max: usize) -> Result<Vec<Delivery>, BackendError> {
        let visibility = us(self.config.visibility_timeout);
        let max_receive = i64::from(self.config.max_receive_count);
        self.db
            .write(move |conn| {
                let now = now_us();
                let mut deliveries = take_due_starts(conn, now, max, visibility, max_receive)?;
                let max = max - deliveries.len();
                let mut select = conn.prepare_cached(
                    "SELECT id, tenant, request_id, body, receive_count, traceparent FROM messages \
                     WHERE queue = 'main' AND visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2",
                )?;
                let rows: Vec<Visible> = select
                    .query_map(params![now, max as i64], |r| {
                        Ok(Visible {
                            id: r.get(0)?,
                            tenant: r.get(1)?,
                            request_id: r.get(2)?,
                            body: r.get(3)?,
                            count: r.get(4)?,
                            traceparent: r.get(5)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for Visible {
                    id,
                    tenant,
                    request_id,
                    body,
                    count,
                    traceparent,
                } in rows
                {
                    if count >= max_receive {
                        warn!(message_id = id, request_id = ?request_id,
                            "message exceeded the receive count without a verdict; dead-lettering");
                        conn.prepare_cached(
                            "UPDATE messages SET queue = 'dlq', dead_reason = ?2, dead_at = ?3, \
                             visible_at = ?3, receipt = NULL WHERE id = ?1",
                        )?
                        .execute(params![
                            id,
                            dead_reason::redriven(count),
                            now
                        ])?;
                        continue;
                    }
                    let count = count + 1;
                    let token = receipt(id, count);
                    conn.prepare_cached(
                        "UPDATE messages SET receive_count = ?2, visible_at = ?3, receipt = ?4 \
                         WHERE id = ?1",
                    )?
                    .execute(params![id, count, now + visibility, token])?;
                    deliveries.push(Delivery {
                        message_id: id.to_string(),
                        receipt: token,
                        receive_count: count as u32,
                        tenant,
                        request_id,
                        body,
                        traceparent,
                    });
                }
                Ok(deliveries)
            })
            .await
            .map_err(|e| e.into_backend("queue.receive"))
    }

    async fn any_visible(&self) -> Result<bool, BackendError> {
        self.db
            .read(|conn| {
                let now = now_us();
                Ok(conn
                    .prepare_cached(&format!("SELECT 1 {DUE_STARTS} LIMIT 1"))?
                    .exists(params![now])?
                    || conn
                        .prepare_cached(
                            "SELECT 1 FROM messages WHERE queue = 'main' AND visible_at <= ?1 \
                             LIMIT 1",
                        )?
                        .exists(params![now])?)
            })
            .await
            .map_err(|e| e.into_backend("queue.receive"))
    }

    /// Runs `work(id, receipt)` in a write, for the message a receipt names. A stale receipt
    /// matches no row, so it changes nothing: the message was redelivered and its newer
    /// delivery decides.
    pub(crate) async fn on_receipt<F>(
        &self,
        op: &'static str,
        receipt: &str,
        work: F,
    ) -> Result<(), BackendError>
    where
        F: FnOnce(&rusqlite::Connection, i64, &str) -> rusqlite::Result<usize> + Send + 'static,
    {
        let id = parse_receipt(receipt)
            .ok_or_else(|| BackendError::permanent(op, format!("malformed receipt {receipt:?}")))?;
        let token = receipt.to_owned();
        self.db
            .write(move |conn| work(conn, id, &token).map(drop))
            .await
            .map_err(|e| e.into_backend(op))
    }
}

#[async_trait]
impl Queue for Embedded {
    async fn send(&self, envelope: &Envelope) -> Result<(), BackendError> {
        let e = envelope.clone();
        self.db
            .write(move |conn| insert_message(conn, &e, now_us()))
            .await
            .map_err(|e| e.into_backend("queue.send"))?;
        self.sent.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError> {
        self.handoff.consumer_here();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Starts handed over in this process first: they cost no write to deliver.
            let handed = self.handoff.take(max.max(1));
            if !handed.is_empty() {
                return Ok(handed);
            }
            // A cheap read first, so an idle consumer does not write (and fsync) to poll.
            if self.any_visible().await? {
                let deliveries = self.take_visible(max.max(1)).await?;
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let pause = IDLE_POLL.min(deadline - now);
            let _ = tokio::time::timeout(pause, self.sent.notified()).await;
        }
    }

    /// A start's delivery usually needs no write: its row left the queue in the write that
    /// settled it, in this process. Otherwise the delivery's row leaves the queue now.
    async fn ack(&self, delivery: &Delivery) -> Result<(), BackendError> {
        if let Some((seq, count)) = parse_start_receipt(&delivery.receipt) {
            if self.settled.take(seq) {
                return Ok(());
            }
            return self
                .db
                .write(move |conn| {
                    conn.prepare_cached(
                        "UPDATE starts SET due_at = NULL WHERE seq = ?1 AND deliveries = ?2",
                    )?
                    .execute(params![seq, count])
                    .map(drop)
                })
                .await
                .map_err(|e| e.into_backend("queue.ack"));
        }
        self.on_receipt("queue.ack", &delivery.receipt, |conn, id, token| {
            conn.prepare_cached("DELETE FROM messages WHERE id = ?1 AND receipt = ?2")?
                .execute(params![id, token])
        })
        .await
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), BackendError> {
        let visible_at = now_us() + us(delay);
        if let Some((seq, count)) = parse_start_receipt(&delivery.receipt) {
            self.settled.take(seq);
            return self
                .db
                .write(move |conn| {
                    conn.prepare_cached(
                        "UPDATE starts SET due_at = ?3 WHERE seq = ?1 AND deliveries = ?2 \
                         AND due_at IS NOT NULL",
                    )?
                    .execute(params![seq, count, visible_at])
                    .map(drop)
                })
                .await
                .map_err(|e| e.into_backend("queue.retry_later"));
        }
        self.on_receipt(
            "queue.retry_later",
            &delivery.receipt,
            move |conn, id, token| {
                conn.prepare_cached(
                    "UPDATE messages SET visible_at = ?3 WHERE id = ?1 AND receipt = ?2 \
                 AND queue = 'main'",
                )?
                .execute(params![id, token, visible_at])
            },
        )
        .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), BackendError> {
        let reason = reason.to_owned();
        if let Some((seq, count)) = parse_start_receipt(&delivery.receipt) {
            self.settled.take(seq);
            let envelope = Envelope {
                tenant: delivery.tenant.clone().unwrap_or_default(),
                request_id: delivery.request_id.clone().unwrap_or_default(),
                body: delivery.body.clone(),
                traceparent: delivery.traceparent.clone(),
            };
            return self
                .db
                .write(move |conn| {
                    // A stale delivery (the start was delivered again since) moves nothing.
                    let current = conn
                        .prepare_cached("SELECT 1 FROM starts WHERE seq = ?1 AND deliveries = ?2")?
                        .exists(params![seq, count])?;
                    if current {
                        insert_letter(conn, &envelope, &reason, count, now_us())?;
                        conn.prepare_cached("UPDATE starts SET due_at = NULL WHERE seq = ?1")?
                            .execute(params![seq])?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| e.into_backend("queue.dead_letter"));
        }
        self.on_receipt(
            "queue.dead_letter",
            &delivery.receipt,
            move |conn, id, token| {
                conn.prepare_cached(
                    "UPDATE messages SET queue = 'dlq', dead_reason = ?3, dead_at = ?4, \
                 visible_at = ?4, receipt = NULL WHERE id = ?1 AND receipt = ?2",
                )?
                .execute(params![id, token, reason, now_us()])
            },
        )
        .await
    }

    async fn liveness(&self, tenant: &str, request_id: &str) -> Result<Liveness, BackendError> {
        let (tenant, request_id) = (tenant.to_owned(), request_id.to_owned());
        let found: Option<(String, Option<String>)> = self
            .db
            .read(move |conn| {
                let queued = conn
                    .prepare_cached(
                        "SELECT 1 FROM starts WHERE tenant = ?1 AND request_id = ?2 \
                         AND status <> 'EXPIRED' AND due_at IS NOT NULL",
                    )?
                    .exists(params![tenant, crate::compact::id(&request_id)])?;
                if queued {
                    return Ok(Some(("main".to_owned(), None)));
                }
                conn.prepare_cached(
                    "SELECT queue, dead_reason FROM messages WHERE tenant = ?1 AND request_id = ?2 \
                     ORDER BY queue = 'main' DESC LIMIT 1",
                )?
                .query_row(params![tenant, request_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
            })
            .await
            .map_err(|e| e.into_backend("queue.liveness"))?;
        Ok(match found {
            None => Liveness::Absent,
            Some((queue, _)) if queue == "main" => Liveness::Live,
            Some((_, reason)) => Liveness::DeadLettered(reason.unwrap_or_default()),
        })
    }
}
