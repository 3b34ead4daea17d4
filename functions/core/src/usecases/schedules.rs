//! Schedules: a workflow started on time, every fire a start request keyed by (workflow,
//! logical date), so that a duplicate fire (two schedulers, a retry) is an idempotent
//! replay, never a second instance.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, instrument, warn};

use super::{Flowgate, StartRequest};
use crate::error::{BackendError, Error};
use crate::message::Fire;
use crate::model::Priority;
use crate::ports::{ScheduleRecord, Schedules, Upsert};
use crate::schedule::{Catchup, CatchupPolicy, Expression, Timing, timezone, to_fire};
use crate::validation::{StartBody, identifier};

/// How many next fire times a schedule's view lists.
pub const NEXT_FIRES_SHOWN: usize = 5;
/// The most fires one sweep starts for one schedule; the rest wait for the next sweep.
pub const MAX_FIRES_PER_SWEEP: usize = 10_000;
/// The most schedules one sweep reads; when it is full, the next sweep follows at once.
pub const DUE_PER_SWEEP: usize = 1_000;
/// How many schedules a sweep fires at once.
pub const CONCURRENT_FIRES: usize = 256;

/// The catch-up part of a schedule, as a client gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchupBody {
    /// `all`, `latest` or `none`.
    pub policy: CatchupPolicy,
    /// How far back missed fires are considered, such as `1h`.
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_window() -> String {
    "1h".into()
}

impl Default for CatchupBody {
    /// Every missed fire of the last hour: a fire is never dropped silently, and a long
    /// outage cannot flood the queue.
    fn default() -> Self {
        Self {
            policy: CatchupPolicy::All,
            window: default_window(),
        }
    }
}

/// The body of `PUT /v1/workflows/{code}/schedules/{id}`: one of `cron`, `rate` or `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// A cron expression (5, 6 or Quartz's 7 fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// `rate(N unit)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// A one-time local time, `yyyy-mm-ddThh:mm:ss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The IANA time zone of its local times (default UTC).
    #[serde(default = "default_zone")]
    pub timezone: String,
    /// No fire before this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// No fire after this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// The params of every instance it starts.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Their priority.
    #[serde(default)]
    pub priority: Priority,
    /// A paused schedule does not fire; resuming it applies the catch-up policy.
    #[serde(default)]
    pub paused: bool,
    /// What happens to fires missed while nothing ran.
    #[serde(default)]
    pub catchup: CatchupBody,
}

fn default_zone() -> String {
    "UTC".into()
}

impl ScheduleBody {
    /// Its timing, checked: exactly one expression, a known time zone, a window.
    pub fn timing(&self, anchor: DateTime<Utc>) -> Result<(Timing, Catchup), Error> {
        let expression = match (&self.cron, &self.rate, &self.at) {
            (Some(c), None, None) => Expression::cron(c).map_err(|e| Error::invalid("/cron", e))?,
            (None, Some(r), None) => Expression::rate(r).map_err(|e| Error::invalid("/rate", e))?,
            (None, None, Some(a)) => Expression::at(a).map_err(|e| Error::invalid("/at", e))?,
            _ => return Err(Error::invalid("/", "give exactly one of cron, rate and at")),
        };
        let timezone = timezone(&self.timezone).map_err(|e| Error::invalid("/timezone", e))?;
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end < start
        {
            return Err(Error::invalid("/end", "is before start"));
        }
        let window = flowgate_settings::parse_duration(&self.catchup.window)
            .map_err(|e| Error::invalid("/catchup/window", e))?;
        let timing = Timing {
            expression,
            timezone,
            start: self.start,
            end: self.end,
            anchor,
        };
        Ok((
            timing,
            Catchup {
                policy: self.catchup.policy,
                window,
            },
        ))
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    /// Its id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its definition.
    #[serde(flatten)]
    pub definition: ScheduleBody,
    /// Its next fire times (UTC), soonest first; none while paused or after its end.
    pub next_fire_times: Vec<DateTime<Utc>>,
    /// The latest fire time handled.
    pub last_fired: Option<DateTime<Utc>>,
    /// Why its last fire could not start an instance, if it could not.
    pub last_error: Option<String>,
    /// Version, bumped on every change.
    pub version: u64,
    /// When it was first put.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ScheduleView {
    fn of(record: ScheduleRecord, now: DateTime<Utc>) -> Self {
        let next_fire_times = match record.definition.timing(record.created_at) {
            Ok((timing, _)) if !record.definition.paused => {
                timing.next(record.last_fired.unwrap_or(now).max(now), NEXT_FIRES_SHOWN)
            }
            _ => Vec::new(),
        };
        Self {
            id: record.id,
            workflow: record.workflow,
            definition: record.definition,
            next_fire_times,
            last_fired: record.last_fired,
            last_error: record.last_error,
            version: record.version,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// The schedules of the use cases' store, which must keep them.
fn store(app: &Flowgate) -> Result<&Arc<dyn Schedules>, Error> {
    app.schedules
        .as_ref()
        .ok_or(Error::NotOnThisHost("schedules"))
}

/// The most schedules `GET /v1/schedules` lists.
pub const LISTED_SCHEDULES: usize = 200;

impl Flowgate {
    /// Creates or replaces a schedule. A replaced schedule keeps its position: fires it has
    /// handled are not fired again.
    #[instrument(skip(self, body), fields(tenant = %tenant, workflow = %workflow, schedule = %id))]
    pub async fn put_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
        body: ScheduleBody,
    ) -> Result<(Upsert, ScheduleView), Error> {
        identifier("code", workflow)?;
        identifier("schedule id", id)?;
        let definition = self.get_workflow(tenant, workflow).await?;
        let now = Utc::now();
        body.timing(now)?;
        let schedules = store(self)?;
        schedules
            .supports(&body)
            .map_err(|p| Error::invalid(&p.pointer, p.reason))?;
        self.schemas
            .check(&definition, &body.params, self.validation_budget)
            .await?;
        for _ in 0..8 {
            let existing = schedules.get_schedule(tenant, workflow, id).await?;
            let record = scheduled(tenant, workflow, id, body.clone(), existing.as_ref(), now)?;
            if schedules
                .put_schedule(&record, existing.as_ref().map(|e| e.version))
                .await?
            {
                let upsert = if existing.is_some() {
                    Upsert::Updated
                } else {
                    Upsert::Created
                };
                info!(stage = "schedule_saved", ?upsert, next_due = ?record.next_due, "schedule saved");
                return Ok((upsert, ScheduleView::of(record, now)));
            }
        }
        Err(
            BackendError::retryable("schedules.put", "the schedule kept changing; try again")
                .into(),
        )
    }

    /// A schedule with its next fire times.
    pub async fn get_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<ScheduleView, Error> {
        identifier("schedule id", id)?;
        self.get_workflow(tenant, workflow).await?;
        store(self)?
            .get_schedule(tenant, workflow, id)
            .await?
            .map(|r| ScheduleView::of(r, Utc::now()))
            .ok_or_else(|| Error::ScheduleNotFound(id.to_owned()))
    }

    /// A workflow's schedules, each with its next fire times.
    pub async fn list_schedules(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleView>, Error> {
        self.get_workflow(tenant, workflow).await?;
        let now = Utc::now();
        Ok(store(self)?
            .list_schedules(tenant, workflow)
            .await?
            .into_iter()
            .map(|r| ScheduleView::of(r, now))
            .collect())
    }

    /// The caller's schedules of every workflow (the first [`LISTED_SCHEDULES`], by
    /// workflow and id), with their next fire times.
    pub async fn list_tenant_schedules(&self, tenant: &str) -> Result<Vec<ScheduleView>, Error> {
        let now = Utc::now();
        Ok(store(self)?
            .list_tenant_schedules(tenant, LISTED_SCHEDULES)
            .await?
            .into_iter()
            .map(|r| ScheduleView::of(r, now))
            .collect())
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        id: &str,
    ) -> Result<(), Error> {
        identifier("schedule id", id)?;
        self.get_workflow(tenant, workflow).await?;
        if store(self)?.delete_schedule(tenant, workflow, id).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound(id.to_owned()))
        }
    }
}

/// The record of a put: the new definition, with the old record's creation time and position.
fn scheduled(
    tenant: &str,
    workflow: &str,
    id: &str,
    definition: ScheduleBody,
    existing: Option<&ScheduleRecord>,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord, Error> {
    let created_at = existing.map_or(now, |e| e.created_at);
    // A new schedule starts from now: it does not fire for times before it existed.
    let last_fired = existing.and_then(|e| e.last_fired).or(Some(now));
    let (timing, _) = definition.timing(created_at)?;
    let next_due = last_fired.and_then(|after| timing.next(after, 1).first().copied());
    Ok(ScheduleRecord {
        tenant: tenant.to_owned(),
        workflow: workflow.to_owned(),
        id: id.to_owned(),
        definition,
        version: existing.map_or(1, |e| e.version + 1),
        created_at,
        updated_at: now,
        last_fired,
        next_due,
        last_error: existing.and_then(|e| e.last_error.clone()),
    })
}

/// What a delivered fire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// Its request was started (or found already started, by a duplicate or another path).
    Started,
    /// The schedule was deleted after the engine fired.
    ScheduleGone,
    /// The schedule was paused after the engine fired.
    Paused,
}

/// What one sweep of the scheduler did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FireReport {
    /// Schedules that were due.
    pub due: usize,
    /// Fires that started a request (or found theirs already started).
    pub fired: usize,
    /// Missed fires the catch-up policy skipped.
    pub skipped: usize,
    /// Fires that could not start an instance (recorded on the schedule).
    pub failed: usize,
}

/// Fires due schedules: each fire a keyed start request, so that any number of schedulers
/// on one store start each (workflow, logical date) once.
pub struct Scheduler {
    app: Flowgate,
}

impl Scheduler {
    /// A scheduler over the use cases' store.
    pub fn new(app: Flowgate) -> Self {
        Self { app }
    }

    /// Fires every schedule due at `now` (at most [`DUE_PER_SWEEP`]), up to
    /// [`CONCURRENT_FIRES`] schedules at once so that their starts share group commits.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<FireReport, Error> {
        let schedules = store(&self.app)?.clone();
        let due = schedules.due_schedules(now, DUE_PER_SWEEP).await?;
        let mut report = FireReport {
            due: due.len(),
            ..FireReport::default()
        };
        let mut running = tokio::task::JoinSet::new();
        for record in due {
            if running.len() >= CONCURRENT_FIRES {
                join_one(&mut running, &mut report).await;
            }
            let (app, schedules) = (self.app.clone(), schedules.clone());
            running.spawn(async move { Self::fire(&app, schedules.as_ref(), record, now).await });
        }
        while !running.is_empty() {
            join_one(&mut running, &mut report).await;
        }
        Ok(report)
    }

    /// Fires one schedule's due times, oldest first, and advances it.
    async fn fire(
        app: &Flowgate,
        schedules: &dyn Schedules,
        record: ScheduleRecord,
        now: DateTime<Utc>,
    ) -> Result<FireReport, Error> {
        let mut report = FireReport::default();
        let (timing, catchup) = record.definition.timing(record.created_at)?;
        let after = record.last_fired.unwrap_or(record.created_at);
        let due = timing.fires(after, now, MAX_FIRES_PER_SWEEP);
        let chosen = to_fire(&due, now, catchup);
        report.skipped += due.len() - chosen.len();
        let mut last_error = None;
        for fire in &chosen {
            match Self::start(app, &record, *fire).await {
                Ok(()) => report.fired += 1,
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    report.failed += 1;
                    warn!(stage = "fire_failed", schedule = %record.id, logical_date = %fire, error = %e, "schedule fire failed");
                    last_error = Some(format!("fire for {fire}: {e}"));
                }
            }
        }
        let last_fired = due.last().copied().unwrap_or(after).max(after);
        let next_due = if due.len() >= MAX_FIRES_PER_SWEEP {
            Some(now)
        } else {
            timing.next(last_fired.max(now), 1).first().copied()
        };
        let advanced = ScheduleRecord {
            last_fired: Some(last_fired),
            next_due,
            last_error: last_error.or(record.last_error.clone()),
            version: record.version + 1,
            ..record.clone()
        };
        // Another scheduler may have advanced it first: its fires were the same requests.
        schedules
            .put_schedule(&advanced, Some(record.version))
            .await?;
        Ok(report)
    }

    /// Starts the fire an engine delivered through the queue (a backend that fires schedules
    /// itself): the schedule as it stands now, keyed by the fire's logical date, so that a
    /// duplicate delivery is an idempotent replay. A schedule deleted or paused since the
    /// engine fired starts nothing, and says so.
    #[instrument(skip(app, fire), fields(tenant = %fire.tenant, workflow = %fire.workflow,
        schedule = %fire.schedule_id, logical_date = %logical_date))]
    pub async fn fire_delivered(
        app: &Flowgate,
        fire: &Fire,
        logical_date: DateTime<Utc>,
    ) -> Result<Fired, Error> {
        let Some(record) = store(app)?
            .get_schedule(&fire.tenant, &fire.workflow, &fire.schedule_id)
            .await?
        else {
            info!(
                stage = "fire_skipped",
                "the schedule no longer exists; nothing started"
            );
            return Ok(Fired::ScheduleGone);
        };
        if record.definition.paused {
            info!(
                stage = "fire_skipped",
                "the schedule is paused; nothing started"
            );
            return Ok(Fired::Paused);
        }
        Self::start(app, &record, logical_date).await?;
        info!(stage = "fired", "schedule fire started its request");
        Ok(Fired::Started)
    }

    async fn start(
        app: &Flowgate,
        record: &ScheduleRecord,
        logical_date: DateTime<Utc>,
    ) -> Result<(), Error> {
        let body = StartBody {
            params: Some(Value::Object(record.definition.params.clone())),
            priority: Some(record.definition.priority),
            schedule_time: None,
        };
        let request = StartRequest::fired(
            &record.tenant,
            &record.workflow,
            body,
            super::start::Origin {
                logical_date,
                schedule_id: Some(record.id.clone()),
                backfill_id: None,
                reprocess: false,
                detail: format!(
                    "fired by schedule {} for {}",
                    record.id,
                    logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            },
        );
        match app.start_instance(request).await {
            Ok(_) => Ok(()),
            // Another path (a backfill, another schedule) already started this date.
            Err(Error::KeyReused { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every `tick` until `shutdown` turns true: fires due schedules and moves running
    /// backfills forward, where the store keeps them.
    pub async fn run(self, tick: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let backfills = super::BackfillRunner::new(self.app.clone());
        while !*shutdown.borrow() {
            let mut more_due = false;
            if self.app.schedules.is_some() {
                more_due = self.sweep_and_log().await;
            }
            if self.app.backfills.is_some()
                && let Err(e) = backfills.step(tick).await
            {
                warn!(error = %e, "backfill step failed");
            }
            if more_due {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One sweep, logged; true when it was full and fired, so more may be due already.
    async fn sweep_and_log(&self) -> bool {
        match self.sweep(Utc::now()).await {
            Ok(r) => {
                if r.fired + r.failed + r.skipped > 0 {
                    info!(
                        stage = "scheduled",
                        fired = r.fired,
                        skipped = r.skipped,
                        failed = r.failed,
                        "scheduler sweep"
                    );
                }
                // Only a full sweep that got somewhere goes again at once: one whose fires
                // all failed (a store that is down) waits for the tick.
                r.due >= DUE_PER_SWEEP && r.fired + r.skipped + r.failed > 0
            }
            Err(e) => {
                warn!(error = %e, "scheduler sweep failed");
                false
            }
        }
    }
}

/// Waits for one schedule's fire and adds it to the sweep's report. A schedule that
/// failed is retried on the next sweep: it was not advanced.
async fn join_one(
    running: &mut tokio::task::JoinSet<Result<FireReport, Error>>,
    report: &mut FireReport,
) {
    match running.join_next().await {
        Some(Ok(Ok(one))) => {
            report.fired += one.fired;
            report.skipped += one.skipped;
            report.failed += one.failed;
        }
        Some(Ok(Err(e))) => {
            warn!(error = %e, "schedule fire failed; it is retried on the next sweep")
        }
        Some(Err(e)) => warn!(error = %e, "schedule fire task ended abnormally"),
        None => {}
    }
}
