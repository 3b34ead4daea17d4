//! The queue message that carries an accepted request to the consumer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Instance, InstanceStatus, RequestRecord, StartSpec};
use crate::ports::Envelope;

/// Current message format version.
pub const MESSAGE_VERSION: u32 = 1;

/// The body of a queue message: everything the consumer needs to create the instance without
/// reading the request record first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// Format version; the consumer dead-letters versions it does not know.
    pub v: u32,
    /// Owning tenant.
    pub tenant: String,
    /// The request.
    pub request_id: String,
    /// The instance to create.
    pub instance_id: String,
    /// What to create.
    #[serde(flatten)]
    pub spec: StartSpec,
}

/// Why a message body could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body is not a valid message.
    #[error("unparseable message body: {0}")]
    Unparseable(#[from] serde_json::Error),
    /// The body is a message of a version this consumer does not know.
    #[error("unsupported message version {0} (this consumer handles {MESSAGE_VERSION})")]
    UnsupportedVersion(u32),
}

impl QueueMessage {
    /// The message for a request record.
    pub fn for_record(record: &RequestRecord) -> Self {
        Self {
            v: MESSAGE_VERSION,
            tenant: record.tenant.clone(),
            request_id: record.request_id.clone(),
            instance_id: record.instance_id.clone(),
            spec: record.spec.clone(),
        }
    }

    /// Serializes it with its attributes.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            body: serde_json::to_string(self).unwrap_or_default(),
        }
    }

    /// Parses a body, rejecting unknown versions.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let message: Self = serde_json::from_str(body)?;
        if message.v != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(message.v));
        }
        Ok(message)
    }

    /// The instance this message creates.
    pub fn instance(&self, created_at: DateTime<Utc>) -> Instance {
        Instance {
            tenant: self.tenant.clone(),
            instance_id: self.instance_id.clone(),
            request_id: self.request_id.clone(),
            workflow: self.spec.workflow.clone(),
            params: self.spec.params.clone(),
            priority: self.spec.priority,
            schedule_time: self.spec.schedule_time,
            logical_date: self.spec.logical_date,
            status: InstanceStatus::Submitted,
            created_at,
        }
    }
}
