//! The consumer Lambda: an SQS batch in, `batchItemFailures` out. Only failed message ids
//! are reported, so a poison message never fails the whole batch.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::warn;

use flowgate_core::ports::{Delivery, Queue};
use flowgate_core::usecases::{Consumer, Disposition};

/// The queue's view of one record of an SQS event.
pub fn delivery(message: &SqsMessage) -> Delivery {
    let attribute = |name: &str| {
        message
            .message_attributes
            .get(name)
            .and_then(|a| a.string_value.clone())
    };
    Delivery {
        message_id: message.message_id.clone().unwrap_or_default(),
        receipt: message.receipt_handle.clone().unwrap_or_default(),
        receive_count: message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        tenant: attribute("tenant"),
        request_id: attribute("request_id"),
        body: message.body.clone().unwrap_or_default(),
        traceparent: attribute(flowgate_core::trace::TRACEPARENT),
    }
}

/// Handles a batch, its messages at once (a hand-off may wait on its target: one after
/// another, a batch of slow targets would outlast the function's timeout). A handled
/// message succeeds (Lambda deletes it). A failed one is put back with its back-off and
/// reported. One that must be dead-lettered is copied to the DLQ with its reason and
/// deleted (its request was marked `DEAD` first); if that move fails, it is reported, so
/// SQS redelivers it and its redrive policy is the backstop.
pub async fn handle(consumer: &Consumer, queue: &dyn Queue, event: SqsEvent) -> SqsBatchResponse {
    let outcomes =
        futures_util::future::join_all(event.records.iter().map(|r| one(consumer, queue, r))).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = outcomes.into_iter().flatten().collect();
    response
}

/// Settles one message; answers its failure to report, if any.
async fn one(
    consumer: &Consumer,
    queue: &dyn Queue,
    record: &SqsMessage,
) -> Option<BatchItemFailure> {
    let delivery = delivery(record);
    let failed = match consumer.decide(&delivery).await {
        Disposition::Ack => false,
        Disposition::Retry { delay, .. } => {
            if let Err(e) = queue.retry_later(&delivery, delay).await {
                warn!(message_id = %delivery.message_id, error = %e.chain(), "could not set the retry delay");
            }
            true
        }
        Disposition::DeadLetter { reason } => match queue.dead_letter(&delivery, &reason).await {
            Ok(()) => false,
            Err(e) => {
                warn!(message_id = %delivery.message_id, error = %e.chain(), "could not dead-letter; reporting a failure");
                true
            }
        },
    };
    failed.then(|| {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = delivery.message_id;
        failure
    })
}
