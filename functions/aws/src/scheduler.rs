//! Flowgate schedules as EventBridge Scheduler schedules, one per Flowgate schedule, in the
//! stack's schedule group. Each fires by sending a fire message to the request queue, whose
//! logical date is `<aws.scheduler.scheduled-time>`, so that the scheduler's retries and
//! any duplicate delivery start the same keyed request.

pub mod expression;

use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, ScheduleState, Target,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use flowgate_core::BackendError;
use flowgate_core::message::FireMessage;
use flowgate_core::ports::ScheduleRecord;

use crate::error::classify;

/// The text EventBridge Scheduler replaces with a fire's nominal time.
pub const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// How long the scheduler keeps trying to deliver one fire, and how often, before it
/// dead-letters the fire (its own retry policy; at most 24 hours and 185 attempts).
const MAX_EVENT_AGE_SECS: i32 = 86_400;
const MAX_RETRY_ATTEMPTS: i32 = 185;

/// Where schedules live and what their fires reach.
#[derive(Debug, Clone)]
pub struct FireTarget {
    /// The schedule group (one per stack).
    pub group: String,
    /// The role EventBridge Scheduler assumes to send the fire.
    pub role_arn: String,
    /// The request queue the fires go to.
    pub queue_arn: String,
    /// The dead-letter queue for fires the scheduler could not deliver.
    pub dlq_arn: String,
}

/// Keeps EventBridge Scheduler's schedules in step with Flowgate's.
#[derive(Debug, Clone)]
pub struct EventBridgeSchedules {
    client: Client,
    target: FireTarget,
}

/// The scheduler's name of a Flowgate schedule: a digest of (tenant, workflow, id), which
/// fits its 64-character limit and alphabet whatever the ids are.
pub fn schedule_name(tenant: &str, workflow: &str, id: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}\n{workflow}\n{id}").as_bytes());
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    format!("flowgate-{hex}")
}

fn smithy_time(t: DateTime<Utc>) -> aws_sdk_scheduler::primitives::DateTime {
    aws_sdk_scheduler::primitives::DateTime::from_secs(t.timestamp())
}

/// Sets everything a schedule is made of on a create or an update request (the two take the
/// same fields; an update replaces them all).
macro_rules! desired {
    ($request:expr, $d:expr) => {
        $request
            .name(&$d.name)
            .group_name(&$d.group)
            .schedule_expression(&$d.expression)
            .schedule_expression_timezone(&$d.timezone)
            .set_start_date($d.start)
            .set_end_date($d.end)
            .state($d.state.clone())
            .description(&$d.description)
            .flexible_time_window($d.window.clone())
            .target($d.target.clone())
            .action_after_completion(ActionAfterCompletion::None)
    };
}

/// A schedule as the scheduler should hold it.
struct Desired {
    name: String,
    group: String,
    expression: String,
    timezone: String,
    start: Option<aws_sdk_scheduler::primitives::DateTime>,
    end: Option<aws_sdk_scheduler::primitives::DateTime>,
    state: ScheduleState,
    description: String,
    window: FlexibleTimeWindow,
    target: Target,
}

impl EventBridgeSchedules {
    /// Schedules in `target.group`, firing into `target.queue_arn`.
    pub fn new(client: Client, target: FireTarget) -> Self {
        Self { client, target }
    }

    /// Creates or replaces the scheduler's schedule for `record`.
    pub async fn upsert(&self, record: &ScheduleRecord) -> Result<(), BackendError> {
        const OP: &str = "schedules.sync";
        let d = self.desired(record)?;
        let created = desired!(self.client.create_schedule(), d).send().await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConflictException") => {
                desired!(self.client.update_schedule(), d)
                    .send()
                    .await
                    .map_err(|e| classify(OP, e))?;
                Ok(())
            }
            Err(e) => Err(classify(OP, e)),
        }
    }

    /// Deletes the scheduler's schedule; one already gone is fine.
    pub async fn delete(&self, tenant: &str, workflow: &str, id: &str) -> Result<(), BackendError> {
        let deleted = self
            .client
            .delete_schedule()
            .name(schedule_name(tenant, workflow, id))
            .group_name(&self.target.group)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify("schedules.sync", e)),
        }
    }

    fn desired(&self, record: &ScheduleRecord) -> Result<Desired, BackendError> {
        const OP: &str = "schedules.sync";
        let definition = &record.definition;
        let expression = expression::expression(definition)
            .map_err(|p| BackendError::permanent(OP, format!("{} {}", p.pointer, p.reason)))?;
        let input =
            FireMessage::template(&record.tenant, &record.workflow, &record.id, SCHEDULED_TIME);
        let target = Target::builder()
            .arn(&self.target.queue_arn)
            .role_arn(&self.target.role_arn)
            .input(input)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECS)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .build(),
            )
            .dead_letter_config(
                DeadLetterConfig::builder()
                    .arn(&self.target.dlq_arn)
                    .build(),
            )
            .build()
            .map_err(|e| BackendError::permanent(OP, e))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| BackendError::permanent(OP, e))?;
        Ok(Desired {
            name: schedule_name(&record.tenant, &record.workflow, &record.id),
            group: self.target.group.clone(),
            expression,
            timezone: definition.timezone.clone(),
            start: definition.start.map(smithy_time),
            end: definition.end.map(smithy_time),
            state: if definition.paused {
                ScheduleState::Disabled
            } else {
                ScheduleState::Enabled
            },
            description: format!(
                "Flowgate schedule {} of workflow {} (tenant {})",
                record.id, record.workflow, record.tenant
            ),
            window,
            target,
        })
    }
}
