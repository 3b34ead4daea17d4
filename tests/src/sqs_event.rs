//! SQS events as the Lambda event source mapping hands them to the consumer function.

use std::time::Duration;

use serde_json::{Value, json};

use flowgate_core::ports::{Delivery, Queue};

/// The SQS event record for a delivery, as the event source mapping sends it.
pub fn sqs_record(d: &Delivery) -> Value {
    let attr = |v: &Option<String>| {
        v.as_ref()
            .map(|s| json!({"stringValue": s, "dataType": "String"}))
    };
    let mut attributes = serde_json::Map::new();
    if let Some(t) = attr(&d.tenant) {
        attributes.insert("tenant".into(), t);
    }
    if let Some(r) = attr(&d.request_id) {
        attributes.insert("request_id".into(), r);
    }
    json!({
        "messageId": d.message_id,
        "receiptHandle": d.receipt,
        "body": d.body,
        "attributes": {
            "ApproximateReceiveCount": d.receive_count.to_string(),
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185"
        },
        "messageAttributes": attributes,
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:flowgate-requests",
        "awsRegion": "eu-west-1"
    })
}

/// Receives exactly `n` deliveries from `queue`, and the SQS event that carries them.
pub async fn batch(
    queue: &dyn Queue,
    n: usize,
) -> (Vec<Delivery>, aws_lambda_events::event::sqs::SqsEvent) {
    let mut deliveries = Vec::new();
    for _ in 0..50 {
        deliveries.extend(
            queue
                .receive(n - deliveries.len(), Duration::from_millis(100))
                .await
                .expect("receive"),
        );
        if deliveries.len() == n {
            break;
        }
    }
    assert_eq!(deliveries.len(), n);
    let event = json!({"Records": deliveries.iter().map(sqs_record).collect::<Vec<_>>()});
    (
        deliveries,
        serde_json::from_value(event).expect("a valid SQS event"),
    )
}
