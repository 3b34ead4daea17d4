//! The [`Queue`] port on SQS: a standard queue with a dead-letter queue. Redelivery and
//! duplicates are absorbed by the idempotent consumer.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use chrono::{DateTime, Utc};

use flowgate_core::BackendError;
use flowgate_core::ports::{Delivery, Envelope, Queue};

use crate::error::classify;

/// Message attribute names.
pub(crate) const TENANT: &str = "tenant";
/// The W3C trace context of the work that sent the message.
pub(crate) const TRACEPARENT: &str = flowgate_core::trace::TRACEPARENT;
pub(crate) const REQUEST_ID: &str = "request_id";
pub(crate) const REASON: &str = "dead_letter_reason";
pub(crate) const RECEIVE_COUNT: &str = "receive_count";
pub(crate) const DEAD_AT: &str = "dead_lettered_at";

/// The queue on an SQS queue URL, with its DLQ.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    pub(crate) client: Client,
    pub(crate) url: String,
    pub(crate) dlq_url: String,
}

fn text(value: &str) -> Result<MessageAttributeValue, BackendError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| BackendError::permanent("queue.send", e))
}

/// A message's attributes: its tenant, request and trace. SQS refuses empty attribute
/// values, so absent ids are simply not sent.
fn attributes_of(
    m: &Outgoing<'_>,
) -> Result<std::collections::HashMap<String, MessageAttributeValue>, BackendError> {
    [
        (TENANT, m.tenant),
        (REQUEST_ID, m.request_id),
        (TRACEPARENT, m.traceparent.unwrap_or("")),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| Ok((name.to_owned(), text(value)?)))
    .collect()
}

/// The most characters SQS takes in a `MessageGroupId`.
const GROUP_ID_MAX: usize = 128;

/// The message group of a tenant's messages: the tenant itself, so that the standard queue
/// is fair between tenants (a tenant's flood does not hold the others up). A tenant name
/// longer than SQS allows (tenants go to 256 characters) keeps its first 111 characters
/// and a `#` and 16 hex digits of its FNV-1a hash: `#` is never in a tenant, so no group
/// of a short name can be mistaken for one of a long name.
pub(crate) fn message_group(tenant: &str) -> Option<String> {
    if tenant.is_empty() {
        return None;
    }
    if tenant.len() <= GROUP_ID_MAX {
        return Some(tenant.to_owned());
    }
    let hash = tenant.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(format!("{}#{hash:016x}", &tenant[..GROUP_ID_MAX - 17]))
}

/// One message of a `SendMessageBatch`, its id its place in the batch.
fn batch_entry(
    i: usize,
    e: &Envelope,
) -> Result<aws_sdk_sqs::types::SendMessageBatchRequestEntry, BackendError> {
    let attributes = attributes_of(&Outgoing {
        tenant: &e.tenant,
        request_id: &e.request_id,
        body: &e.body,
        traceparent: e.traceparent.as_deref(),
    })?;
    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(&e.body)
        .set_message_attributes(Some(attributes))
        .set_message_group_id(message_group(&e.tenant))
        .build()
        .map_err(|e| BackendError::permanent("queue.send_batch", e))
}

/// The most messages one `SendMessageBatch` carries.
const BATCH_ENTRIES: usize = 10;
/// The most bytes of message bodies one `SendMessageBatch` carries: SQS limits a batch's
/// whole payload to 256 KiB; this leaves room for the attributes.
const BATCH_BODY_BYTES: usize = 192 * 1024;

/// Consecutive runs of `envelopes` that fit one `SendMessageBatch` each.
fn batches(envelopes: &[Envelope]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in envelopes.iter().enumerate() {
        let full = i - start == BATCH_ENTRIES || bytes + e.body.len() > BATCH_BODY_BYTES;
        if full && i > start {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += e.body.len();
    }
    if start < envelopes.len() {
        groups.push(start..envelopes.len());
    }
    groups
}

impl SqsQueue {
    /// Sends `group` in one `SendMessageBatch` (one alone by `SendMessage`), and answers
    /// each message in order.
    async fn send_group(&self, group: &[Envelope]) -> Vec<Result<(), BackendError>> {
        const OP: &str = "queue.send_batch";
        if let [one] = group {
            return vec![self.send(one).await];
        }
        let entries: Result<Vec<_>, BackendError> = group
            .iter()
            .enumerate()
            .map(|(i, e)| batch_entry(i, e))
            .collect();
        let sent = match entries {
            Ok(entries) => {
                self.client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
            }
            Err(e) => return group.iter().map(|_| Err(e.echo())).collect(),
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                let e = classify(OP, e);
                return group.iter().map(|_| Err(e.echo())).collect();
            }
        };
        let mut answers: Vec<Result<(), BackendError>> = group
            .iter()
            .map(|_| {
                Err(BackendError::retryable(
                    OP,
                    "SendMessageBatch answered neither success nor failure for the message",
                ))
            })
            .collect();
        for ok in sent.successful() {
            if let Some(slot) = ok
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| answers.get_mut(i))
            {
                *slot = Ok(());
            }
        }
        for failed in sent.failed() {
            if let Some(slot) = failed
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| answers.get_mut(i))
            {
                let cause = format!(
                    "{}: {}",
                    failed.code(),
                    failed.message().unwrap_or("no message")
                );
                *slot = Err(if failed.sender_fault() {
                    BackendError::permanent(OP, cause)
                } else {
                    BackendError::retryable(OP, cause)
                });
            }
        }
        answers
    }

    /// A queue on `url`, dead-lettering to `dlq_url`.
    pub fn new(client: Client, url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            dlq_url: dlq_url.into(),
        }
    }

    /// The main queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deletes the message a receipt names from the queue at `url`.
    pub(crate) async fn delete(
        &self,
        op: &'static str,
        url: &str,
        receipt: &str,
    ) -> Result<(), BackendError> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(())
    }

    /// Sends a message with its attributes to `url`; `dead` adds the dead-letter attributes.
    pub(crate) async fn send_to(
        &self,
        op: &'static str,
        url: &str,
        m: Outgoing<'_>,
        dead: Option<&DeadAttributes<'_>>,
    ) -> Result<(), BackendError> {
        let mut attributes = attributes_of(&m)?;
        if let Some(dead) = dead {
            if let Some(reason) = dead.reason.filter(|r| !r.is_empty()) {
                attributes.insert(REASON.into(), text(reason)?);
            }
            attributes.insert(RECEIVE_COUNT.into(), text(&dead.receive_count.to_string())?);
            attributes.insert(DEAD_AT.into(), text(&dead.at.to_rfc3339())?);
        }
        self.client
            .send_message()
            .queue_url(url)
            .message_body(m.body)
            .set_message_attributes(Some(attributes))
            .set_message_group_id(message_group(m.tenant))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(())
    }

    /// Receives up to `max` messages from `url`, hiding them for `visibility` when given.
    pub(crate) async fn receive_from(
        &self,
        op: &'static str,
        url: &str,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, BackendError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(
                visibility.map(|v| v.as_secs().min(crate::config::SQS_MAX_VISIBILITY_SECS) as i32),
            )
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .customize()
            .config_override(long_poll_timeouts(wait))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out.messages.unwrap_or_default())
    }
}

/// A receive's attempt may take its whole long poll, plus the usual allowance. With the
/// default 5 s, a slow answer was abandoned after the service had already hidden its
/// messages: a peek of the DLQ then missed them for the whole hold.
fn long_poll_timeouts(wait: Duration) -> aws_sdk_sqs::config::Builder {
    aws_sdk_sqs::config::Builder::default().timeout_config(
        aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(wait + Duration::from_secs(15))
            .operation_timeout(wait * 3 + Duration::from_secs(45))
            .build(),
    )
}

/// A message attribute's string value.
pub(crate) fn attribute(m: &Message, name: &str) -> Option<String> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

/// ApproximateReceiveCount, 1 when SQS leaves it out.
pub(crate) fn receive_count(m: &Message) -> u32 {
    m.attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// The attributes a dead letter carries beside its body.
/// A message to send: its body and the attributes that travel with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub tenant: &'a str,
    pub request_id: &'a str,
    pub body: &'a str,
    pub traceparent: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    /// A delivery sent on as it came.
    pub fn of(d: &'a Delivery) -> Self {
        Self {
            tenant: d.tenant.as_deref().unwrap_or(""),
            request_id: d.request_id.as_deref().unwrap_or(""),
            body: &d.body,
            traceparent: d.traceparent.as_deref(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DeadAttributes<'a> {
    pub reason: Option<&'a str>,
    pub receive_count: u32,
    pub at: DateTime<Utc>,
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, e: &Envelope) -> Result<(), BackendError> {
        self.send_to(
            "queue.send",
            &self.url,
            Outgoing {
                tenant: &e.tenant,
                request_id: &e.request_id,
                body: &e.body,
                traceparent: e.traceparent.as_deref(),
            },
            None,
        )
        .await
    }

    async fn send_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), BackendError>> {
        use futures_util::StreamExt;
        let groups = batches(envelopes);
        let sent: Vec<Vec<Result<(), BackendError>>> = futures_util::stream::iter(0..groups.len())
            .map(|g| self.send_group(&envelopes[groups[g].clone()]))
            .buffered(flowgate_core::ports::BATCH_PARALLELISM)
            .collect()
            .await;
        sent.into_iter().flatten().collect()
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError> {
        let messages = self
            .receive_from("queue.receive", &self.url, max, wait, None)
            .await?;
        Ok(messages
            .into_iter()
            .map(|m| Delivery {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                receive_count: receive_count(&m),
                tenant: attribute(&m, TENANT),
                request_id: attribute(&m, REQUEST_ID),
                body: m.body().unwrap_or_default().to_owned(),
                traceparent: attribute(&m, TRACEPARENT),
            })
            .collect())
    }

    async fn ack(&self, d: &Delivery) -> Result<(), BackendError> {
        self.delete("queue.ack", &self.url, &d.receipt).await
    }

    async fn retry_later(&self, d: &Delivery, delay: Duration) -> Result<(), BackendError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&d.receipt)
            .visibility_timeout(delay.as_secs().min(crate::config::SQS_MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map_err(|e| classify("queue.retry_later", e))?;
        Ok(())
    }

    /// Sends a copy with the reason to the DLQ, then deletes the original: never the other
    /// way round, so a failure in between leaves a duplicate, never a loss.
    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), BackendError> {
        self.send_to(
            "queue.dead_letter",
            &self.dlq_url,
            Outgoing::of(d),
            Some(&DeadAttributes {
                reason: Some(reason),
                receive_count: d.receive_count,
                at: Utc::now(),
            }),
        )
        .await?;
        self.delete("queue.dead_letter", &self.url, &d.receipt)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_its_own_message_group_and_a_long_one_is_cut_apart() {
        assert_eq!(message_group("acme").as_deref(), Some("acme"));
        assert_eq!(message_group(""), None);
        let exact = "t".repeat(GROUP_ID_MAX);
        assert_eq!(message_group(&exact).as_deref(), Some(exact.as_str()));
        let (a, b) = ("a".repeat(200), format!("{}b", "a".repeat(199)));
        let (ga, gb) = (message_group(&a).unwrap(), message_group(&b).unwrap());
        assert_eq!(ga.len(), GROUP_ID_MAX);
        assert_ne!(ga, gb, "two long tenants that share a prefix stay apart");
        assert!(ga.starts_with(&a[..GROUP_ID_MAX - 17]) && ga.contains('#'));
    }
}
