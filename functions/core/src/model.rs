//! Domain types: workflows, start requests, their records and history, instances.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The tenant every request belongs to when no authentication is configured.
pub const DEFAULT_TENANT: &str = "default";

/// A registered workflow definition, the target of start requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// Owning tenant.
    pub tenant: String,
    /// The workflow's code, unique per tenant.
    pub code: String,
    /// Human-readable name.
    pub name: String,
    /// Only online workflows accept start requests.
    pub online: bool,
    /// JSON Schema that start params must satisfy.
    pub params_schema: Value,
    /// Incremented on every update; keys the compiled-schema cache.
    pub version: u64,
    /// Its numeric DolphinScheduler definition code, unique per tenant: what the
    /// DolphinScheduler door's `processDefinitionCode` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_code: Option<i64>,
    /// The DolphinScheduler project it belongs to; when set, the door answers only under
    /// that project's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_project_code: Option<i64>,
    /// Where its instances are handed off once created (a JSON object whose `type` names
    /// the kind); `None` keeps the workflow record-only. Its `secret`, if any, is never
    /// shown: see [`Workflow::shown`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// Its runs' time-out and concurrency policy.
    #[serde(flatten, default)]
    pub runs: RunSettings,
    /// When the workflow was first registered.
    pub created_at: DateTime<Utc>,
    /// When the workflow was last changed.
    pub updated_at: DateTime<Utc>,
}

impl Workflow {
    /// The workflow as a client may see it: a target's `secret` is write-only.
    pub fn shown(mut self) -> Self {
        if let Some(Value::Object(target)) = &mut self.target
            && target.remove("secret").is_some()
        {
            target.insert("secret_set".into(), Value::Bool(true));
        }
        self
    }

    /// The kind of its target (the target's `type`), if it has one.
    pub fn target_kind(&self) -> Option<String> {
        self.target.as_ref().map(|t| {
            t.get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned()
        })
    }
}

/// Scheduling priority of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    /// Highest.
    Highest,
    /// High.
    High,
    /// The default.
    #[default]
    Medium,
    /// Low.
    Low,
    /// Lowest.
    Lowest,
}

impl std::str::FromStr for Priority {
    type Err = String;

    /// A priority by name, in any case (`high`, `HIGH`).
    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_value(Value::String(text.trim().to_ascii_uppercase()))
            .map_err(|_| format!("{text:?} is not one of HIGHEST, HIGH, MEDIUM, LOW, LOWEST"))
    }
}

/// Lifecycle of a start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RequestStatus {
    /// Durably recorded; its instance does not exist yet.
    Accepted,
    /// Its instance exists (and, for a workflow with a target, waits to be handed off).
    Created,
    /// Its instance was handed off to the workflow's target.
    Dispatched,
    /// Delivery failed permanently or too often; it sits in the dead-letter queue.
    Dead,
    /// An operator archived its dead letter to a file (`flowgate dlq archive`).
    Archived,
    /// Its workflow's concurrency limit was reached: it waits for a slot, durable, and is
    /// released in priority order, then oldest first.
    Waiting,
    /// Its workflow's concurrency limit was reached (or a newer start took its place): no
    /// instance is made; the reason is in `last_error` and the history.
    Skipped,
}

impl RequestStatus {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Created => "CREATED",
            Self::Dispatched => "DISPATCHED",
            Self::Dead => "DEAD",
            Self::Archived => "ARCHIVED",
            Self::Waiting => "WAITING",
            Self::Skipped => "SKIPPED",
        }
    }

    /// Whether its instance exists (created, and perhaps handed off).
    pub fn has_instance(self) -> bool {
        matches!(self, Self::Created | Self::Dispatched)
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACCEPTED" => Some(Self::Accepted),
            "CREATED" => Some(Self::Created),
            "DISPATCHED" => Some(Self::Dispatched),
            "DEAD" => Some(Self::Dead),
            "ARCHIVED" => Some(Self::Archived),
            "WAITING" => Some(Self::Waiting),
            "SKIPPED" => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// What happened to a request at one stage of its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The API recorded the request.
    Accepted,
    /// The API put the request's message on the queue.
    Enqueued,
    /// The API could not put the message on the queue; the request is durable, and the
    /// reconciler sends it within its bound.
    EnqueueFailed,
    /// A delivery of the message failed and will be retried.
    DeliveryFailed,
    /// The consumer created the instance.
    Created,
    /// The instance was handed off to its workflow's target.
    Dispatched,
    /// A hand-off failed; retried, or dead-lettered when permanent or too frequent.
    DispatchFailed,
    /// The message went to the dead-letter queue.
    DeadLettered,
    /// The reconciler found the request stuck and sent its message again.
    Reenqueued,
    /// An operator re-drove the request from the dead-letter queue.
    Replayed,
    /// An operator archived the dead letter to a file and removed it from the queue.
    Archived,
    /// An operator put an archived dead letter back in the dead-letter queue.
    Restored,
    /// Its target reported the run running.
    Running,
    /// Its target reported the run succeeded.
    Succeeded,
    /// Its target reported the run failed.
    Failed,
    /// No final status came within the workflow's `run_timeout`.
    TimedOut,
    /// An operator cancelled the run.
    Cancelled,
    /// A report came after the run's final status and changed nothing.
    ReportIgnored,
    /// The workflow's concurrency limit made it wait.
    Waiting,
    /// The workflow's concurrency limit (or a newer start) skipped it.
    Skipped,
    /// A slot freed, and it was released for creation.
    Released,
}

/// The details most histories carry, written once here: the stages that write them use
/// these, and a store may keep a reference to one instead of its text.
pub mod details {
    /// A request accepted without an idempotency key.
    pub const ACCEPTED: &str = "accepted";
    /// A request accepted with an idempotency key.
    pub const ACCEPTED_KEYED: &str = "accepted with an idempotency key";
    /// A request's message sent (or committed with it).
    pub const ENQUEUED: &str = "sent to the queue";
    /// An instance created on its first delivery.
    pub const CREATED_FIRST: &str = "instance created on delivery 1";

    /// The detail of an instance created on delivery `n`.
    pub fn created_on(n: u32) -> String {
        format!("instance created on delivery {n}")
    }

    /// Every usual detail, in a fixed order (stores refer to them by position: never
    /// reorder, only add at the end).
    pub const USUAL: [&str; 4] = [ACCEPTED, ACCEPTED_KEYED, ENQUEUED, CREATED_FIRST];

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_first_creation_reads_as_its_constant() {
            assert_eq!(super::created_on(1), super::CREATED_FIRST);
        }
    }
}

impl EventKind {
    /// Every kind, in a fixed order (stores refer to them by position: never reorder, only
    /// add at the end).
    pub const ALL: [EventKind; 21] = [
        Self::Accepted,
        Self::Enqueued,
        Self::EnqueueFailed,
        Self::DeliveryFailed,
        Self::Created,
        Self::Dispatched,
        Self::DispatchFailed,
        Self::DeadLettered,
        Self::Reenqueued,
        Self::Replayed,
        Self::Archived,
        Self::Restored,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
        Self::ReportIgnored,
        Self::Waiting,
        Self::Skipped,
        Self::Released,
    ];

    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Enqueued => "enqueued",
            Self::EnqueueFailed => "enqueue_failed",
            Self::DeliveryFailed => "delivery_failed",
            Self::Created => "created",
            Self::Dispatched => "dispatched",
            Self::DispatchFailed => "dispatch_failed",
            Self::DeadLettered => "dead_lettered",
            Self::Reenqueued => "reenqueued",
            Self::Replayed => "replayed",
            Self::Archived => "archived",
            Self::Restored => "restored",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::ReportIgnored => "report_ignored",
            Self::Waiting => "waiting",
            Self::Skipped => "skipped",
            Self::Released => "released",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// One line of a request's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// Human-readable detail, such as an error reason.
    pub detail: String,
    /// The W3C trace id the request runs in: on its first event (the other stages run in the
    /// same trace, which the record's `traceparent` carries on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl HistoryEvent {
    /// An event that happens now.
    pub fn now(kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            kind,
            detail: detail.into(),
            trace_id: None,
        }
    }
}

/// The validated content of a start request: what the instance will be made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSpec {
    /// Target workflow code.
    pub workflow: String,
    /// Start params, valid against the workflow's schema.
    pub params: Map<String, Value>,
    /// Scheduling priority.
    pub priority: Priority,
    /// When the instance should run; `None` means as soon as possible.
    pub schedule_time: Option<DateTime<Utc>>,
    /// The nominal fire time, in UTC, of the schedule fire or backfill date that asked for
    /// it; `None` for a plain API start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_date: Option<DateTime<Utc>>,
    /// The schedule whose fire asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The backfill whose date asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_id: Option<String>,
    /// Run options that Flowgate keeps but does not act on, such as a DolphinScheduler
    /// caller's `failureStrategy` or `workerGroup`: stored so that nothing sent is lost.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// A dry run (DolphinScheduler's `dryRun=1`): the instance is created and never handed
    /// to its workflow's target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// What it carries of its workflow's run settings (its concurrency slot, its run's
    /// time-out), fixed when it was accepted; not part of its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RunPolicy>,
}

/// The durable record of a start request, the source of truth for its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Stable id; derived from the idempotency key when there is one.
    pub request_id: String,
    /// Assigned at acceptance, before the instance exists.
    pub instance_id: String,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// Digest of the payload, compared when a key is reused.
    pub fingerprint: String,
    /// What to create.
    pub spec: StartSpec,
    /// Where the request is in its life.
    pub status: RequestStatus,
    /// Deliveries of its message so far, the one that created the instance included.
    pub attempts: u32,
    /// The most recent failure reason.
    pub last_error: Option<String>,
    /// When the API accepted it.
    pub accepted_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When its message was last known to be sent or retried; `None` until the first send.
    /// Only meaningful while `Accepted`: the reconciler compares it with its grace period.
    pub pending_since: Option<DateTime<Utc>>,
    /// Its timeline, oldest first.
    pub history: Vec<HistoryEvent>,
    /// The hand-off of its instance, for a workflow with a target; `None` when record-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
    /// The run of its instance, once its target reported on it (or Flowgate ended it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

impl RequestRecord {
    /// The trace it runs in (its first event names it), resumed in a new span: what a
    /// re-send of its message carries.
    pub fn trace(&self) -> Option<crate::trace::TraceContext> {
        let first = self.history.first()?.trace_id.as_deref()?;
        crate::trace::TraceContext::resumed(first)
    }
}

/// The hand-off of one instance to its workflow's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The kind of target (its `type`), as the workflow named it when the request came.
    pub target: String,
    /// Hand-off attempts so far.
    pub attempts: u32,
    /// What the target answered: an HTTP status, an execution ARN, an event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the target took it; `None` while the hand-off is owed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<Utc>>,
}

impl Dispatch {
    /// A hand-off owed to a target of this kind.
    pub fn owed(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            attempts: 0,
            reference: None,
            dispatched_at: None,
        }
    }

    /// Whether the target has taken the instance.
    pub fn is_done(&self) -> bool {
        self.dispatched_at.is_some()
    }
}

/// Lifecycle of an instance. Flowgate only ever creates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstanceStatus {
    /// Created (`SUBMITTED` before hand-off existed); for a workflow with a target, its
    /// hand-off is still owed.
    #[serde(alias = "SUBMITTED")]
    Created,
    /// Handed off to its workflow's target.
    Dispatched,
    /// Its target reported it running.
    Running,
    /// Final: its target reported success.
    Succeeded,
    /// Final: its target reported failure.
    Failed,
    /// Final: no final status came within its workflow's `run_timeout`.
    #[serde(rename = "TIMED_OUT")]
    TimedOut,
    /// Final: an operator cancelled it.
    Cancelled,
}

impl InstanceStatus {
    /// Every status, in a fixed order.
    pub const ALL: [InstanceStatus; 7] = [
        Self::Created,
        Self::Dispatched,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    /// The storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Dispatched => "DISPATCHED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The status of a run that got this far.
    pub fn of_run(run: RunStatus) -> Self {
        use RunStatus as R;
        match run {
            R::Running => Self::Running,
            R::Succeeded => Self::Succeeded,
            R::Failed => Self::Failed,
            R::TimedOut => Self::TimedOut,
            R::Cancelled => Self::Cancelled,
        }
    }

    /// Whether it is final.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Cancelled
        )
    }
}

/// A workflow instance, created exactly once per accepted request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Owning tenant.
    pub tenant: String,
    /// The id assigned at acceptance.
    pub instance_id: String,
    /// The request that created it.
    pub request_id: String,
    /// Workflow code.
    pub workflow: String,
    /// Start params.
    pub params: Map<String, Value>,
    /// Scheduling priority.
    pub priority: Priority,
    /// When it should run.
    pub schedule_time: Option<DateTime<Utc>>,
    /// The nominal fire time (UTC) of the schedule or backfill date it was started for.
    #[serde(default)]
    pub logical_date: Option<DateTime<Utc>>,
    /// `CREATED`, then `DISPATCHED` once its target took it.
    pub status: InstanceStatus,
    /// When the consumer created it.
    pub created_at: DateTime<Utc>,
    /// Its hand-off (read from its request); `None` for a record-only workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
    /// The run options of its request (such as a DolphinScheduler caller's `testFlag` or
    /// `workerGroup`), handed to its target with it; not stored with the instance (its
    /// request keeps them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Its run, once its target reported on it (or Flowgate ended it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// How long its run took, in milliseconds: from its creation to its final status (or
    /// until now, while unfinished and handed off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Where its target reports on it: set on the copy handed to the target, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<crate::callback::Callback>,
}

impl RequestRecord {
    /// Its instance, created at `created_at`, as a store that keeps both in one item reads
    /// it: the request's spec, and its hand-off. (Its run options stay with the request.)
    pub fn instance(&self, created_at: DateTime<Utc>) -> Instance {
        Instance {
            options: Default::default(),
            ..Instance::of_start(
                &self.tenant,
                &self.request_id,
                &self.instance_id,
                &self.spec,
                created_at,
            )
        }
        .with_dispatch(self)
    }
}

impl Instance {
    /// The instance a start creates at `created_at`: its ids and its spec.
    pub fn of_start(
        tenant: &str,
        request_id: &str,
        instance_id: &str,
        spec: &StartSpec,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            instance_id: instance_id.to_owned(),
            request_id: request_id.to_owned(),
            workflow: spec.workflow.clone(),
            params: spec.params.clone(),
            priority: spec.priority,
            schedule_time: spec.schedule_time,
            logical_date: spec.logical_date,
            status: InstanceStatus::Created,
            created_at,
            dispatch: None,
            options: spec.options.clone(),
            run: None,
            duration_ms: None,
            callback: None,
        }
    }

    /// The instance with its hand-off state and its run, as its request record tells it.
    pub fn with_dispatch(mut self, record: &RequestRecord) -> Self {
        self.dispatch = record.dispatch.clone();
        if record.status == RequestStatus::Dispatched {
            self.status = InstanceStatus::Dispatched;
        }
        self.with_run(record.run.clone())
    }

    /// The instance with its run: its status and duration follow it.
    pub fn with_run(mut self, run: Option<Run>) -> Self {
        if let Some(r) = &run {
            self.status = InstanceStatus::of_run(r.status);
        }
        let end = run.as_ref().and_then(|r| r.finished_at);
        self.duration_ms = end.map(|end| (end - self.created_at).num_milliseconds().max(0));
        self.run = run;
        self
    }
}

/// A page of results with an opaque cursor to the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass back as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A position in a newest-first instance listing: the last instance of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCursor {
    /// `created_at` of the last instance returned.
    pub created_at: DateTime<Utc>,
    /// `instance_id` of the last instance returned.
    pub instance_id: String,
}

impl InstanceCursor {
    /// The cursor that continues after `instance`.
    pub fn after(instance: &Instance) -> Self {
        Self {
            created_at: instance.created_at,
            instance_id: instance.instance_id.clone(),
        }
    }
}

/// Where a run is, once its target has said anything (or Flowgate ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// The target says it is running.
    Running,
    /// Final: the target says it succeeded.
    Succeeded,
    /// Final: the target says it failed.
    Failed,
    /// Final: no final status came within the workflow's `run_timeout`.
    TimedOut,
    /// Final: an operator cancelled it.
    Cancelled,
}

impl RunStatus {
    /// Every status, in a fixed order.
    pub const ALL: [RunStatus; 5] = [
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing changes it any more.
    pub fn is_final(self) -> bool {
        self != Self::Running
    }

    /// The history event that records it.
    pub fn event(self) -> EventKind {
        match self {
            Self::Running => EventKind::Running,
            Self::Succeeded => EventKind::Succeeded,
            Self::Failed => EventKind::Failed,
            Self::TimedOut => EventKind::TimedOut,
            Self::Cancelled => EventKind::Cancelled,
        }
    }
}

/// The run of an instance as Flowgate knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Where it is.
    pub status: RunStatus,
    /// When it was first reported running (or, reported final at once, when that came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The last detail reported with a status that changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The output reported with its final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

impl Run {
    /// Whether it reached a final status.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// What a start does when its key's limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// It waits (`WAITING`), released in priority order, then oldest first.
    Queue,
    /// It is `SKIPPED`, with the reason; no instance is made.
    Skip,
    /// Only the newest waiting start is kept; the ones it replaces are `SKIPPED`.
    QueueLatest,
}

/// A workflow's concurrency limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// The most unfinished instances per key.
    pub limit: u32,
    /// A JSON pointer into the params whose value is the key; absent: one key for the
    /// whole workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What a start does at the limit.
    pub on_limit: OnLimit,
}

/// DolphinScheduler's `executionType`, each one a concurrency policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionType {
    /// No limit.
    Parallel,
    /// One at a time; the others wait.
    SerialWait,
    /// One at a time; the others are skipped.
    SerialDiscard,
    /// One at a time; the others wait, released by priority.
    SerialPriority,
}

impl ExecutionType {
    /// The policy it stands for.
    pub fn concurrency(self) -> Option<Concurrency> {
        let serial = |on_limit| {
            Some(Concurrency {
                limit: 1,
                key: None,
                on_limit,
            })
        };
        match self {
            Self::Parallel => None,
            // A queue is released by priority, then oldest first: with equal priorities
            // (DolphinScheduler's serial wait), that is arrival order.
            Self::SerialWait | Self::SerialPriority => serial(OnLimit::Queue),
            Self::SerialDiscard => serial(OnLimit::Skip),
        }
    }
}

/// A workflow's run settings, as its body gives them and as it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Seconds an instance may go without a final status before it is `TIMED_OUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<u64>,
    /// The concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The DolphinScheduler spelling of a policy, instead of `concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<ExecutionType>,
}

impl RunSettings {
    /// Whether it sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The concurrency policy in force: `concurrency`, or what `execution_type` stands for.
    pub fn policy(&self) -> Option<Concurrency> {
        self.concurrency
            .clone()
            .or_else(|| self.execution_type.and_then(ExecutionType::concurrency))
    }
}

/// What a start carries of its workflow's run settings, fixed when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPolicy {
    /// Its concurrency slot, when the workflow limits them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// Seconds its run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// A start's place under its workflow's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The key's value (`""`: the whole workflow).
    pub key: String,
    /// The most unfinished instances for the key.
    pub limit: u32,
    /// What it does at the limit.
    pub on_limit: OnLimit,
}

impl Slot {
    /// The name of its slot group, unique per tenant: the workflow and the key.
    pub fn group(&self, workflow: &str) -> String {
        format!("{workflow}\u{1f}{}", self.key)
    }
}
