//! Runs: what becomes of an instance once it is handed off (its outcome, reported by its
//! target, timed out or cancelled), and the policies that bound how many run at once. The
//! rules are pure functions here; each backend stores what they decide.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, InvalidParam};
pub use crate::model::{
    Concurrency, ExecutionType, OnLimit, Run, RunPolicy, RunSettings, RunStatus, Slot,
};
use crate::model::{EventKind, HistoryEvent, Priority, RequestStatus};
use crate::record::RequestUpdate;

/// The longest `detail` a report may carry, in bytes.
pub const MAX_REPORT_DETAIL: usize = 2048;
/// The most bytes of `output` a report may carry, as JSON.
pub const MAX_REPORT_OUTPUT: usize = 32 * 1024;

/// The body of `POST /v1/instances/{id}/status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// `RUNNING`, `SUCCEEDED` or `FAILED` (a target never reports the other two).
    pub status: String,
    /// What the target says about it, at most [`MAX_REPORT_DETAIL`] bytes.
    #[serde(default)]
    pub detail: Option<String>,
    /// What the run produced: a JSON object of at most [`MAX_REPORT_OUTPUT`] bytes.
    #[serde(default)]
    pub output: Option<Value>,
}

/// A report checked: the status a target may report, with what it said.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The status reported.
    pub status: RunStatus,
    /// Its detail.
    pub detail: Option<String>,
    /// Its output.
    pub output: Option<Value>,
    /// Who reported it, for the history: "callback", "a report token", "Step Functions".
    pub by: String,
}

impl StatusReport {
    /// The report, or why it is refused.
    pub fn checked(self, by: impl Into<String>) -> Result<Report, Error> {
        let status = match RunStatus::parse(&self.status) {
            Some(s @ (RunStatus::Running | RunStatus::Succeeded | RunStatus::Failed)) => s,
            _ => {
                return Err(Error::invalid(
                    "/status",
                    format!(
                        "{:?} is not one of RUNNING, SUCCEEDED, FAILED (TIMED_OUT and CANCELLED \
                         are Flowgate's own)",
                        self.status
                    ),
                ));
            }
        };
        if let Some(detail) = &self.detail
            && detail.len() > MAX_REPORT_DETAIL
        {
            return Err(Error::invalid(
                "/detail",
                format!("is {} bytes, over {MAX_REPORT_DETAIL}", detail.len()),
            ));
        }
        if let Some(output) = &self.output {
            if !output.is_object() {
                return Err(Error::invalid("/output", "must be a JSON object"));
            }
            let size = output.to_string().len();
            if size > MAX_REPORT_OUTPUT {
                return Err(Error::invalid(
                    "/output",
                    format!("is {size} bytes, over {MAX_REPORT_OUTPUT}"),
                ));
            }
        }
        Ok(Report {
            status,
            detail: self.detail,
            output: self.output,
            by: by.into(),
        })
    }
}

/// A report a target sends on its own through the queue (a status-change event): the
/// instance it is about, and the hand-off reference it must match.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    /// The tenant (from the hand-off the target was given).
    pub tenant: String,
    /// The instance.
    pub instance_id: String,
    /// The target's reference for the run (an execution's ARN): it must be the one the
    /// hand-off recorded, so that an event about another run changes nothing.
    pub reference: String,
    /// What it says.
    pub report: Report,
}

/// Reads a queue message body as a target's report: `None` when it is not one, an error
/// when it is one that does not read.
pub type ReportDecoder = fn(&str) -> Option<Result<TargetReport, String>>;

/// A state machine execution as its service describes it (a status-change event, or an
/// answer to asking): what a report on its instance is made of.
#[derive(Debug, Clone, Copy, Default)]
pub struct Execution<'a> {
    /// Its status: `RUNNING`, `PENDING_REDRIVE`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or
    /// `ABORTED`.
    pub status: &'a str,
    /// Its error and cause, when it failed.
    pub error: Option<&'a str>,
    /// Why it failed.
    pub cause: Option<&'a str>,
    /// Its output, as JSON text.
    pub output: Option<&'a str>,
    /// When it stopped.
    pub stopped: Option<DateTime<Utc>>,
}

impl Execution<'_> {
    /// The report it makes, by `by`: its status as a run status (`ABORTED` is
    /// `CANCELLED`), its error and cause (or its status) as the detail, and its output (an
    /// object; any other JSON value as `{"output": ...}`) once final. An unknown status is
    /// refused.
    pub fn report(&self, by: &str) -> Result<Report, String> {
        let status = match self.status {
            "RUNNING" | "PENDING_REDRIVE" => RunStatus::Running,
            "SUCCEEDED" => RunStatus::Succeeded,
            "FAILED" => RunStatus::Failed,
            "TIMED_OUT" => RunStatus::TimedOut,
            "ABORTED" => RunStatus::Cancelled,
            other => {
                return Err(format!(
                    "execution status {other:?} is not one Flowgate knows"
                ));
            }
        };
        let output = self
            .output
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .map(|o| match o {
                Value::Object(_) => o,
                other => serde_json::json!({ "output": other }),
            })
            .filter(|o| status.is_final() && o.to_string().len() <= MAX_REPORT_OUTPUT);
        let stopped = self
            .stopped
            .map(|at| format!(" at {}", at.to_rfc3339()))
            .unwrap_or_default();
        let mut detail = match (self.error, self.cause) {
            (Some(error), Some(cause)) => format!("{error}: {cause}"),
            (Some(one), None) | (None, Some(one)) => one.to_owned(),
            (None, None) => format!("the execution is {}{stopped}", self.status),
        };
        crate::record::cut(&mut detail);
        Ok(Report {
            status,
            detail: Some(detail),
            output,
            by: by.to_owned(),
        })
    }
}

/// What a report does to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It moves the run on: this is the run now.
    Apply(Run),
    /// The run is already there (the same final status, or running again): nothing changes.
    Repeat,
    /// A different final status was already recorded: refused (409).
    Conflict(RunStatus),
    /// It comes after a final status (`RUNNING` after `SUCCEEDED`): nothing changes, and it
    /// is recorded.
    OutOfOrder(RunStatus),
}

/// Judges `report`, arriving at `at`, against the run so far.
pub fn judge(current: Option<&Run>, report: &Report, at: DateTime<Utc>) -> Verdict {
    match current {
        Some(run) if run.is_final() && run.status == report.status => Verdict::Repeat,
        Some(run) if run.is_final() && report.status.is_final() => Verdict::Conflict(run.status),
        Some(run) if run.is_final() => Verdict::OutOfOrder(run.status),
        Some(_) if report.status == RunStatus::Running => Verdict::Repeat,
        _ => Verdict::Apply(Run {
            status: report.status,
            started_at: current.and_then(|r| r.started_at).or(Some(at)),
            finished_at: report.status.is_final().then_some(at),
            detail: report.detail.clone(),
            output: report.output.clone().filter(|_| report.status.is_final()),
        }),
    }
}

/// The update that records `run` (reached at `at`) on its request, guarded by the run it
/// moves on from: a concurrent report makes it fail its guard, to be judged again.
pub fn run_update(before: Option<&Run>, run: Run, at: DateTime<Utc>, by: &str) -> RequestUpdate {
    let mut detail = format!("{} (reported by {by})", run.status.as_str());
    if let Some(d) = &run.detail {
        detail.push_str(": ");
        detail.push_str(d);
    }
    RequestUpdate {
        only_if_run: Some(before.map(|r| r.status)),
        ..RequestUpdate::event(HistoryEvent {
            at,
            kind: run.status.event(),
            detail,
            trace_id: None,
        })
        .with_run(run)
    }
}

/// The note of a report that changed nothing because it came after a final status.
pub fn out_of_order_update(
    recorded: RunStatus,
    report: &Report,
    at: DateTime<Utc>,
) -> RequestUpdate {
    RequestUpdate::event(HistoryEvent {
        at,
        kind: EventKind::ReportIgnored,
        detail: format!(
            "{} reported by {} after {}: out of order, nothing changed",
            report.status.as_str(),
            report.by,
            recorded.as_str()
        ),
        trace_id: None,
    })
}

/// The final run Flowgate itself sets (a time-out, a cancel), from the run so far.
pub fn ended(current: Option<&Run>, status: RunStatus, detail: String, at: DateTime<Utc>) -> Run {
    Run {
        status,
        started_at: current.and_then(|r| r.started_at),
        finished_at: Some(at),
        detail: Some(detail),
        output: None,
    }
}

/// The highest concurrency limit a workflow may set.
pub const MAX_LIMIT: u32 = 10_000;
/// The longest `run_timeout`, in seconds (30 days).
pub const MAX_RUN_TIMEOUT: u64 = 30 * 24 * 3600;
/// The longest key value kept, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Checks a workflow's run settings, naming the field at fault.
pub fn validate(settings: &RunSettings) -> Result<(), Error> {
    if let Some(t) = settings.run_timeout
        && !(1..=MAX_RUN_TIMEOUT).contains(&t)
    {
        return Err(Error::invalid(
            "/run_timeout",
            format!("must be 1 to {MAX_RUN_TIMEOUT} seconds"),
        ));
    }
    if settings.concurrency.is_some() && settings.execution_type.is_some() {
        return Err(Error::invalid(
            "/execution_type",
            "give concurrency or execution_type, not both",
        ));
    }
    if let Some(c) = &settings.concurrency {
        if !(1..=MAX_LIMIT).contains(&c.limit) {
            return Err(Error::invalid(
                "/concurrency/limit",
                format!("must be 1 to {MAX_LIMIT}"),
            ));
        }
        if let Some(key) = &c.key
            && (!key.starts_with('/') || key.len() > 200)
        {
            return Err(Error::invalid(
                "/concurrency/key",
                "must be a JSON pointer into the params (\"/customer\"), at most 200 bytes",
            ));
        }
    }
    Ok(())
}

/// What a start of these params carries: its slot's key and the time-out, or `None`
/// when the workflow sets neither. Params without the key's value are refused.
pub fn for_start(
    settings: &RunSettings,
    params: &serde_json::Map<String, Value>,
) -> Result<Option<RunPolicy>, Error> {
    let slot = match settings.policy() {
        None => None,
        Some(c) => Some(Slot {
            key: key_of(c.key.as_deref(), params)?,
            limit: c.limit,
            on_limit: c.on_limit,
        }),
    };
    Ok(
        (slot.is_some() || settings.run_timeout.is_some()).then_some(RunPolicy {
            slot,
            timeout: settings.run_timeout,
        }),
    )
}

/// The key a start's params give: the value at the pointer (a string as it is, anything
/// else as JSON), or `""` for the whole workflow.
fn key_of(pointer: Option<&str>, params: &serde_json::Map<String, Value>) -> Result<String, Error> {
    let Some(pointer) = pointer else {
        return Ok(String::new());
    };
    // `/params/customer` names the value as the start's body holds it; `/customer`, within
    // the params themselves. (A param itself named `params`: `/params/params/...`.)
    let within = match pointer.strip_prefix("/params") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => pointer,
    };
    let value = Value::Object(params.clone());
    let found = value.pointer(within).ok_or_else(|| Error::ParamsInvalid {
        errors: vec![InvalidParam::new(
            pointer,
            "the workflow's concurrency key needs this value",
        )],
    })?;
    let key = match found {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::ParamsInvalid {
            errors: vec![InvalidParam::new(
                pointer,
                format!("a concurrency key is at most {MAX_KEY_BYTES} bytes"),
            )],
        });
    }
    Ok(key)
}

/// The place of a priority in the release order (0 first).
pub fn rank(priority: Priority) -> i64 {
    match priority {
        Priority::Highest => 0,
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
        Priority::Lowest => 4,
    }
}

/// What a start meets at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// A slot is free and nobody waits ahead: it is created.
    Admit,
    /// It waits, with the reason.
    Wait(String),
    /// It is skipped, with the reason.
    Skip(String),
}

/// The gate a start meets, with `holding` unfinished instances for its key and `ahead`
/// starts waiting before it.
pub fn gate(slot: &Slot, holding: u64, ahead: u64) -> Gate {
    if holding < u64::from(slot.limit) && ahead == 0 {
        return Gate::Admit;
    }
    let key = if slot.key.is_empty() {
        "the workflow".to_owned()
    } else {
        format!("key {:?}", slot.key)
    };
    let why = if holding >= u64::from(slot.limit) {
        format!("{holding} of {} runs for {key} are unfinished", slot.limit)
    } else {
        format!("{ahead} starts for {key} wait ahead of it")
    };
    match slot.on_limit {
        OnLimit::Skip => Gate::Skip(format!("concurrency limit: {why}")),
        OnLimit::Queue | OnLimit::QueueLatest => Gate::Wait(format!("waiting: {why}")),
    }
}

/// The update that makes a start wait instead of being created.
pub fn waiting_update(reason: String, attempts: u32) -> RequestUpdate {
    RequestUpdate {
        only_if: Some(RequestStatus::Accepted),
        set_status: Some(RequestStatus::Waiting),
        set_attempts: Some(attempts),
        ..RequestUpdate::event(HistoryEvent::now(EventKind::Waiting, reason))
    }
}

/// The update that skips a start (`from`: the status it is skipped from).
pub fn skipped_update(from: RequestStatus, reason: String) -> RequestUpdate {
    RequestUpdate {
        only_if: Some(from),
        set_status: Some(RequestStatus::Skipped),
        set_last_error: Some(reason.clone()),
        ..RequestUpdate::event(HistoryEvent::now(EventKind::Skipped, reason))
    }
}

/// The reason a waiting start gives way to a newer one (`queue_latest`).
pub const SUPERSEDED: &str = "superseded: a newer start for the same key waits in its place";

/// The update that releases a waiting start: it is due for creation again.
pub fn released_update(why: &str) -> RequestUpdate {
    RequestUpdate {
        only_if: Some(RequestStatus::Waiting),
        set_status: Some(RequestStatus::Accepted),
        touch_pending: true,
        ..RequestUpdate::event(HistoryEvent::now(EventKind::Released, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: RunStatus) -> Report {
        Report {
            status,
            detail: None,
            output: None,
            by: "test".into(),
        }
    }

    fn run(status: RunStatus) -> Run {
        Run {
            status,
            started_at: None,
            finished_at: None,
            detail: None,
            output: None,
        }
    }

    #[test]
    fn a_report_is_judged_against_the_run_so_far() {
        let now = Utc::now();
        let ok = report(RunStatus::Succeeded);
        assert!(matches!(judge(None, &ok, now), Verdict::Apply(r) if r.finished_at == Some(now)));
        let running = run(RunStatus::Running);
        assert!(matches!(judge(Some(&running), &ok, now), Verdict::Apply(_)));
        assert_eq!(
            judge(Some(&running), &report(RunStatus::Running), now),
            Verdict::Repeat
        );
        let done = run(RunStatus::Succeeded);
        assert_eq!(judge(Some(&done), &ok, now), Verdict::Repeat);
        assert_eq!(
            judge(Some(&done), &report(RunStatus::Failed), now),
            Verdict::Conflict(RunStatus::Succeeded)
        );
        assert_eq!(
            judge(Some(&done), &report(RunStatus::Running), now),
            Verdict::OutOfOrder(RunStatus::Succeeded)
        );
        assert_eq!(
            judge(Some(&run(RunStatus::TimedOut)), &ok, now),
            Verdict::Conflict(RunStatus::TimedOut)
        );
    }

    #[test]
    fn the_gate_admits_below_the_limit_with_nobody_ahead() {
        let slot = Slot {
            key: "acme".into(),
            limit: 2,
            on_limit: OnLimit::Queue,
        };
        assert_eq!(gate(&slot, 1, 0), Gate::Admit);
        assert!(matches!(gate(&slot, 2, 0), Gate::Wait(_)));
        assert!(matches!(gate(&slot, 0, 1), Gate::Wait(_)));
        let skip = Slot {
            on_limit: OnLimit::Skip,
            ..slot
        };
        assert!(matches!(gate(&skip, 2, 0), Gate::Skip(r) if r.contains("2 of 2")));
    }

    #[test]
    fn execution_types_map_onto_policies() {
        assert_eq!(ExecutionType::Parallel.concurrency(), None);
        let wait = ExecutionType::SerialWait.concurrency().expect("a policy");
        assert_eq!((wait.limit, wait.on_limit), (1, OnLimit::Queue));
        let discard = ExecutionType::SerialDiscard
            .concurrency()
            .expect("a policy");
        assert_eq!(discard.on_limit, OnLimit::Skip);
    }

    #[test]
    fn a_key_is_read_from_the_params() {
        let settings = RunSettings {
            concurrency: Some(Concurrency {
                limit: 1,
                key: Some("/customer/id".into()),
                on_limit: OnLimit::Skip,
            }),
            ..RunSettings::default()
        };
        let params = serde_json::json!({"customer": {"id": 7}});
        let policy = for_start(&settings, params.as_object().expect("an object"))
            .expect("a key")
            .expect("a policy");
        assert_eq!(policy.slot.expect("a slot").key, "7");
        // The start body's form of the same pointer names the same value.
        let body_form = RunSettings {
            concurrency: Some(Concurrency {
                limit: 1,
                key: Some("/params/customer/id".into()),
                on_limit: OnLimit::Skip,
            }),
            ..RunSettings::default()
        };
        let policy = for_start(&body_form, params.as_object().expect("an object"))
            .expect("a key")
            .expect("a policy");
        assert_eq!(policy.slot.expect("a slot").key, "7");
        assert!(for_start(&settings, &serde_json::Map::new()).is_err());
    }
}
