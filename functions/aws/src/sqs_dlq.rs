//! The dead-letter half of [`SqsQueue`]: peeking, claiming, deleting and restoring letters
//! on the DLQ, and SQS's native bulk move (StartMessageMoveTask).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, Message, QueueAttributeName};
use chrono::{DateTime, Utc};
use tracing::warn;

use flowgate_core::BackendError;
use flowgate_core::ports::{DeadLetter, DeadLetterQueue, MoveAll};

use crate::error::classify;
use crate::sqs::{
    DEAD_AT, DeadAttributes, Outgoing, REASON, RECEIVE_COUNT, REQUEST_ID, SqsQueue, TENANT,
    TRACEPARENT, attribute, receive_count,
};

/// How long a peek hides the letters it has seen, so the next receive returns new ones.
/// All of them are released as soon as the peek ends.
const PEEK_HOLD: Duration = Duration::from_secs(30);

/// How long a bulk move may run before it is reported as failed.
const MOVE_DEADLINE: Duration = Duration::from_secs(900);

fn letter(m: &Message, receipt: bool) -> DeadLetter {
    let sent = m
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis);
    DeadLetter {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        receipt: if receipt {
            m.receipt_handle().unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        tenant: attribute(m, TENANT),
        request_id: attribute(m, REQUEST_ID),
        body: m.body().unwrap_or_default().to_owned(),
        traceparent: attribute(m, TRACEPARENT),
        reason: attribute(m, REASON),
        // A letter SQS's own redrive moved has no attribute; its receive count then also
        // counts earlier peeks of the DLQ.
        receive_count: attribute(m, RECEIVE_COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| receive_count(m)),
        dead_lettered_at: attribute(m, DEAD_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or(sent)
            .unwrap_or_else(Utc::now),
    }
}

#[async_trait]
impl DeadLetterQueue for SqsQueue {
    /// SQS cannot read a queue without receiving: a peek receives every letter with a short
    /// hold, then makes them all visible again at once.
    async fn dlq_peek(&self, max: usize) -> Result<Vec<DeadLetter>, BackendError> {
        let mut seen = HashSet::new();
        let mut letters = Vec::new();
        let mut handles = Vec::new();
        let result = async {
            while letters.len() < max {
                let batch = self
                    .receive_from(
                        "dlq.peek",
                        &self.dlq_url,
                        10,
                        Duration::from_secs(1),
                        Some(PEEK_HOLD),
                    )
                    .await?;
                if batch.is_empty() {
                    break;
                }
                for m in &batch {
                    handles.push(m.receipt_handle().unwrap_or_default().to_owned());
                    if seen.insert(m.message_id().unwrap_or_default().to_owned())
                        && letters.len() < max
                    {
                        letters.push(letter(m, false));
                    }
                }
            }
            Ok::<_, BackendError>(())
        }
        .await;
        // Released even when the peek failed half-way, so it never hides letters for long.
        self.release_all("dlq.peek", &handles).await?;
        result?;
        letters.sort_by(|a, b| {
            (a.dead_lettered_at, &a.message_id).cmp(&(b.dead_lettered_at, &b.message_id))
        });
        Ok(letters)
    }

    async fn dlq_claim(&self, max: usize, hold: Duration) -> Result<Vec<DeadLetter>, BackendError> {
        let batch = self
            .receive_from(
                "dlq.claim",
                &self.dlq_url,
                max,
                Duration::from_secs(1),
                Some(hold),
            )
            .await?;
        Ok(batch.iter().map(|m| letter(m, true)).collect())
    }

    async fn dlq_release(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.release_all("dlq.release", std::slice::from_ref(&l.receipt))
            .await
    }

    async fn dlq_delete(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.delete("dlq.delete", &self.dlq_url, &l.receipt).await
    }

    async fn dlq_restore(&self, l: &DeadLetter) -> Result<(), BackendError> {
        self.send_to(
            "dlq.restore",
            &self.dlq_url,
            Outgoing {
                tenant: l.tenant.as_deref().unwrap_or(""),
                request_id: l.request_id.as_deref().unwrap_or(""),
                body: &l.body,
                traceparent: l.traceparent.as_deref(),
            },
            Some(&DeadAttributes {
                reason: l.reason.as_deref(),
                receive_count: l.receive_count,
                at: l.dead_lettered_at,
            }),
        )
        .await
    }

    /// SQS's native redrive of the whole DLQ to the main queue. Any failure (no permission,
    /// an emulator without the API, a failed task) is `Unsupported`: the caller falls back.
    async fn dlq_move_all(&self) -> Result<MoveAll, BackendError> {
        Ok(match self.try_move_all().await {
            Ok(moved) => MoveAll::Moved(moved),
            Err(e) => MoveAll::Unsupported(e.chain()),
        })
    }
}

impl SqsQueue {
    async fn release_all(&self, op: &'static str, handles: &[String]) -> Result<(), BackendError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| BackendError::permanent(op, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(op, e))?;
            // A failed entry only means that letter stays hidden until its hold ends.
            for failed in out.failed() {
                warn!(
                    code = failed.code(),
                    "could not release a dead letter at once"
                );
            }
        }
        Ok(())
    }

    async fn arn(&self, url: &str) -> Result<String, BackendError> {
        const OP: &str = "dlq.move_all";
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| BackendError::permanent(OP, format!("{url} reports no QueueArn")))
    }

    async fn try_move_all(&self) -> Result<u64, BackendError> {
        const OP: &str = "dlq.move_all";
        let source = self.arn(&self.dlq_url).await?;
        let destination = self.arn(&self.url).await?;
        self.client
            .start_message_move_task()
            .source_arn(&source)
            .destination_arn(&destination)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let deadline = tokio::time::Instant::now() + MOVE_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let tasks = self
                .client
                .list_message_move_tasks()
                .source_arn(&source)
                .max_results(1)
                .send()
                .await
                .map_err(|e| classify(OP, e))?;
            let Some(task) = tasks.results().first() else {
                continue;
            };
            let moved = u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0);
            match task.status() {
                Some("COMPLETED") => return Ok(moved),
                Some(status @ ("FAILED" | "CANCELLED" | "CANCELLING")) => {
                    return Err(BackendError::permanent(
                        OP,
                        format!(
                            "the move task ended {status} after {moved} letters: {}",
                            task.failure_reason().unwrap_or("no reason given")
                        ),
                    ));
                }
                _ => {}
            }
        }
        Err(BackendError::permanent(
            OP,
            "the move task did not finish within 15 minutes",
        ))
    }
}
