//! The EventBridge target: PutEvents with the instance in the detail. EventBridge delivers
//! at least once and has no idempotency key, so a receiver dedupes on `instance_id`.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::{Deserialize, Serialize};

use flowgate_core::model::Instance;
use flowgate_core::ports::{DispatchError, Receipt};

/// An EventBridge target as a workflow names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBridgeTarget {
    /// The bus's name or ARN.
    pub event_bus: String,
    /// The events' `source`.
    pub source: String,
    /// The events' `detail-type`.
    pub detail_type: String,
}

/// Entry errors that a later PutEvents may not have.
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "InternalFailure",
    "InternalException",
];

impl EventBridgeTarget {
    /// Checks the fields against EventBridge's limits.
    pub fn check(self) -> Result<Self, String> {
        let bus_ok = (1..=1600).contains(&self.event_bus.len())
            && self
                .event_bus
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-:".contains(&b));
        if !bus_ok {
            return Err(format!(
                "event_bus {:?} is not a bus name or ARN",
                self.event_bus
            ));
        }
        if !(1..=256).contains(&self.source.chars().count()) || self.source.starts_with("aws.") {
            return Err("source must be 1 to 256 characters, not starting with \"aws.\"".into());
        }
        if !(1..=128).contains(&self.detail_type.chars().count()) {
            return Err("detail_type must be 1 to 128 characters".into());
        }
        Ok(self)
    }
}

/// Puts one event for `instance`; answers its event id.
pub async fn put(
    client: &Client,
    target: &EventBridgeTarget,
    instance: &Instance,
) -> Result<Receipt, DispatchError> {
    let detail = serde_json::json!({
        "instance_id": instance.instance_id,
        "request_id": instance.request_id,
        "instance": instance,
    });
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(&target.event_bus)
        .source(&target.source)
        .detail_type(&target.detail_type)
        .detail(detail.to_string())
        .build();
    let out = client
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| crate::sdk_failure("PutEvents", e))?;
    let first = out.entries().first();
    match first.and_then(|e| e.event_id()) {
        Some(id) if out.failed_entry_count() == 0 => Ok(Receipt {
            reference: id.to_owned(),
        }),
        _ => {
            let code = first
                .and_then(|e| e.error_code())
                .unwrap_or("no entry answered");
            let message = first.and_then(|e| e.error_message()).unwrap_or("");
            let reason = format!("PutEvents refused the event: {code} {message}");
            Err(if RETRYABLE.contains(&code) {
                DispatchError::retryable(reason)
            } else {
                DispatchError::permanent(reason)
            })
        }
    }
}
