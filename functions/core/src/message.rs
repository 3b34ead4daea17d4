//! The queue messages: the one that carries an accepted request to the consumer, and the
//! fire of a schedule that an external engine delivers through the same queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Instance, RequestRecord, StartSpec};
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
    /// The kind of target its instance is owed to, once created; `None` for a record-only
    /// workflow. The target itself (and any secret) is read from the workflow, never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_to: Option<String>,
    /// When it was sent: the consumer notes `enqueued` at this time where the request's own
    /// history does not say it yet (a store without an outbox does not write a note of a
    /// send that succeeded). Absent from messages of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
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
    /// A fire whose time is not an RFC 3339 instant.
    #[error("fire time {0:?} is not an RFC 3339 instant: {1}")]
    BadFireTime(String, #[source] chrono::ParseError),
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
            dispatch_to: record.dispatch.as_ref().map(|d| d.target.clone()),
            sent_at: None,
        }
    }

    /// The message of a request record, with its attributes (its trace resumed).
    pub fn envelope_for(record: &RequestRecord) -> Envelope {
        Self::for_record(record).envelope(record.trace().map(|t| t.to_string()))
    }

    /// The message of a request record sent now, by a caller that keeps no note of a send
    /// that succeeds: it tells the consumer when it was sent.
    pub fn envelope_sent(record: &RequestRecord) -> Envelope {
        Self {
            sent_at: Some(Utc::now()),
            ..Self::for_record(record)
        }
        .envelope(record.trace().map(|t| t.to_string()))
    }

    /// Serializes it with its attributes.
    pub fn envelope(&self, traceparent: Option<String>) -> Envelope {
        Envelope {
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            body: serde_json::to_string(self).unwrap_or_default(),
            traceparent,
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
        Instance::of_start(
            &self.tenant,
            &self.request_id,
            &self.instance_id,
            &self.spec,
            created_at,
        )
    }
}

/// A schedule's fire, as an engine that fires schedules itself puts it on the queue. Its
/// logical date is the fire's nominal time, the same on every retry of that fire, so a
/// duplicate delivery starts the same keyed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireMessage {
    /// Format version; the same numbering as [`QueueMessage`].
    pub v: u32,
    /// The fire.
    pub fire: Fire,
}

/// Which schedule fired, for which nominal time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fire {
    /// Owning tenant.
    pub tenant: String,
    /// The workflow the schedule starts.
    pub workflow: String,
    /// The schedule.
    pub schedule_id: String,
    /// The nominal fire time, in UTC. In a fire template, a placeholder the engine replaces.
    pub logical_date: String,
}

impl FireMessage {
    /// The message template of a schedule's fires: `logical_date` is the text the engine
    /// replaces with each fire's nominal time.
    pub fn template(tenant: &str, workflow: &str, schedule_id: &str, logical_date: &str) -> String {
        let message = Self {
            v: MESSAGE_VERSION,
            fire: Fire {
                tenant: tenant.to_owned(),
                workflow: workflow.to_owned(),
                schedule_id: schedule_id.to_owned(),
                logical_date: logical_date.to_owned(),
            },
        };
        serde_json::to_string(&message).unwrap_or_default()
    }

    /// Parses a body as a fire: `None` when it is not one (a request message, say); an
    /// error when it is a fire that cannot be used.
    pub fn parse(body: &str) -> Option<Result<(Self, DateTime<Utc>), MessageError>> {
        let value: serde_json::Value = serde_json::from_str(body).ok()?;
        value.get("fire")?;
        Some(Self::checked(value))
    }

    fn checked(value: serde_json::Value) -> Result<(Self, DateTime<Utc>), MessageError> {
        let message: Self = serde_json::from_value(value)?;
        if message.v != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(message.v));
        }
        let at = DateTime::parse_from_rfc3339(&message.fire.logical_date)
            .map_err(|e| MessageError::BadFireTime(message.fire.logical_date.clone(), e))?;
        Ok((message, at.with_timezone(&Utc)))
    }
}
