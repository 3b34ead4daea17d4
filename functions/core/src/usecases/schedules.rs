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
use crate::error::{BackendError, Error, InvalidParam};
use crate::message::Fire;
use crate::model::Priority;
use crate::ports::{ScheduleRecord, Schedules, Upsert};
use crate::schedule::{
    Budget, CatchupPolicy, CatchupSpec, ScheduleDefinition, Timing, When, to_fire,
};
use crate::validation::{StartBody, identifier};

/// How many next fire times a schedule keeps, and its view lists.
pub const NEXT_FIRES_SHOWN: usize = 5;
/// The most fires one sweep starts for one schedule; the rest wait for the next sweep.
pub const MAX_FIRES_PER_SWEEP: usize = 10_000;
/// The most schedules one sweep reads; when it is full, the next sweep follows at once.
pub const DUE_PER_SWEEP: usize = 1_000;
/// How many schedules a sweep fires at once.
pub const CONCURRENT_FIRES: usize = 256;
/// The most schedules one workflow may have.
pub const MAX_SCHEDULES_PER_WORKFLOW: usize = 100;
/// The most schedules one tenant may have, over all its workflows.
pub const MAX_SCHEDULES_PER_TENANT: usize = 1_000;

/// The body of `PUT /v1/workflows/{code}/schedules/{id}` (and the flags of `flowgate
/// schedules put`): one of `cron`, `rate` or `at`, checked into a [`ScheduleDefinition`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ScheduleBody {
    /// A cron expression: 5 fields, 6 with seconds, or Quartz's 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub cron: Option<String>,
    /// `rate(N unit)`, such as `rate(5 minutes)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub rate: Option<String>,
    /// A one-time local time, `yyyy-mm-ddThh:mm:ss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub at: Option<String>,
    /// The IANA time zone of its local times.
    #[serde(default = "default_zone")]
    #[cfg_attr(feature = "clap", arg(long, default_value = "UTC"))]
    pub timezone: String,
    /// No fire before this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub start: Option<DateTime<Utc>>,
    /// No fire after this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub end: Option<DateTime<Utc>>,
    /// The params of every instance it starts, a JSON object.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value = "{}", value_parser = crate::validation::json_object))]
    pub params: Map<String, Value>,
    /// Their priority: HIGHEST, HIGH, MEDIUM, LOW or LOWEST.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value = "MEDIUM"))]
    pub priority: Priority,
    /// A paused schedule does not fire; resuming it applies the catch-up policy.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub paused: bool,
    /// What happens to fires missed while nothing ran.
    #[serde(default)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub catchup: CatchupBody,
}

/// The catch-up part of a schedule, as a client gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CatchupBody {
    /// Missed fires after downtime: all, latest or none.
    #[cfg_attr(feature = "clap", arg(long = "catchup", default_value = "all"))]
    pub policy: CatchupPolicy,
    /// How far back missed fires are considered, such as `1h`.
    #[serde(default = "default_window")]
    #[cfg_attr(feature = "clap", arg(long = "catchup-window", default_value = "1h"))]
    pub window: String,
}

fn default_window() -> String {
    CatchupSpec::default().window
}

fn default_zone() -> String {
    "UTC".into()
}

impl Default for CatchupBody {
    fn default() -> Self {
        let spec = CatchupSpec::default();
        Self {
            policy: spec.policy,
            window: spec.window,
        }
    }
}

impl TryFrom<ScheduleBody> for ScheduleDefinition {
    type Error = Error;

    /// Exactly one expression, which parses; a known time zone; an end not before the
    /// start; a window.
    fn try_from(body: ScheduleBody) -> Result<Self, Error> {
        let when = match (body.cron, body.rate, body.at) {
            (Some(c), None, None) => When::Cron(c),
            (None, Some(r), None) => When::Rate(r),
            (None, None, Some(a)) => When::At(a),
            _ => return Err(Error::invalid("/", "give exactly one of cron, rate and at")),
        };
        let definition = Self {
            when,
            timezone: body.timezone,
            start: body.start,
            end: body.end,
            params: body.params,
            priority: body.priority,
            paused: body.paused,
            catchup: CatchupSpec {
                policy: body.catchup.policy,
                window: body.catchup.window,
            },
        };
        definition.timing(Utc::now()).map_err(Error::from)?;
        Ok(definition)
    }
}

impl From<ScheduleDefinition> for ScheduleBody {
    fn from(d: ScheduleDefinition) -> Self {
        let (cron, rate, at) = match d.when {
            When::Cron(c) => (Some(c), None, None),
            When::Rate(r) => (None, Some(r), None),
            When::At(a) => (None, None, Some(a)),
        };
        Self {
            cron,
            rate,
            at,
            timezone: d.timezone,
            start: d.start,
            end: d.end,
            params: d.params,
            priority: d.priority,
            paused: d.paused,
            catchup: CatchupBody {
                policy: d.catchup.policy,
                window: d.catchup.window,
            },
        }
    }
}

/// The field of a definition's expression, for an error about it.
fn expression_field(when: &When) -> &'static str {
    match when {
        When::Cron(_) => "/cron",
        When::Rate(_) => "/rate",
        When::At(_) => "/at",
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleView {
    /// Its id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its definition.
    #[serde(flatten)]
    pub definition: ScheduleDefinition,
    /// Its next fire times (UTC), soonest first, as stored when it was put or last fired;
    /// none while paused or after its end.
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
    /// The view of a stored schedule: its stored next fires (a record written before they
    /// were stored has them worked out once, within the look-ahead's bounded budget).
    fn of(record: ScheduleRecord) -> Self {
        let next_fire_times = if record.definition.paused {
            Vec::new()
        } else {
            match record.next_fires {
                Some(fires) => fires,
                None => match record.definition.timing(record.created_at) {
                    Ok((timing, _)) => {
                        ahead(&timing, record.last_fired.unwrap_or(record.created_at))
                    }
                    Err(_) => Vec::new(),
                },
            }
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
    /// handled are not fired again. One that would never fire, or not within the horizon,
    /// is refused, as is a new one past the limits per workflow and per tenant.
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
        let definition = ScheduleDefinition::try_from(body)?;
        let now = Utc::now();
        let (timing, _) = definition.timing(now)?;
        if let Some(why) = timing.never_fires(now) {
            return Err(Error::invalid(expression_field(&definition.when), why));
        }
        let workflow_definition = self.get_workflow(tenant, workflow).await?;
        let schedules = store(self)?;
        schedules.supports(&definition).map_err(Error::from)?;
        self.schemas
            .check(
                &workflow_definition,
                &definition.params,
                self.validation_budget,
            )
            .await?;
        for _ in 0..8 {
            let existing = schedules.get_schedule(tenant, workflow, id).await?;
            if existing.is_none() {
                within_limits(schedules.as_ref(), tenant, workflow).await?;
            }
            let record = scheduled(
                tenant,
                workflow,
                id,
                definition.clone(),
                existing.as_ref(),
                now,
            )?;
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
                return Ok((upsert, ScheduleView::of(record)));
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
            .map(ScheduleView::of)
            .ok_or_else(|| Error::ScheduleNotFound(id.to_owned()))
    }

    /// A workflow's schedules, each with its next fire times.
    pub async fn list_schedules(
        &self,
        tenant: &str,
        workflow: &str,
    ) -> Result<Vec<ScheduleView>, Error> {
        self.get_workflow(tenant, workflow).await?;
        Ok(store(self)?
            .list_schedules(tenant, workflow)
            .await?
            .into_iter()
            .map(ScheduleView::of)
            .collect())
    }

    /// The caller's schedules of every workflow (the first [`LISTED_SCHEDULES`], by
    /// workflow and id), with their next fire times.
    pub async fn list_tenant_schedules(&self, tenant: &str) -> Result<Vec<ScheduleView>, Error> {
        Ok(store(self)?
            .list_tenant_schedules(tenant, LISTED_SCHEDULES)
            .await?
            .into_iter()
            .map(ScheduleView::of)
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

/// Refuses a new schedule past [`MAX_SCHEDULES_PER_WORKFLOW`] or
/// [`MAX_SCHEDULES_PER_TENANT`]. Checked before the write: puts racing each other may pass
/// it by as many as run at once.
async fn within_limits(
    schedules: &dyn Schedules,
    tenant: &str,
    workflow: &str,
) -> Result<(), Error> {
    if schedules.list_schedules(tenant, workflow).await?.len() >= MAX_SCHEDULES_PER_WORKFLOW {
        return Err(Error::invalid(
            "/",
            format!(
                "workflow {workflow} has {MAX_SCHEDULES_PER_WORKFLOW} schedules, the most one \
                 workflow may have; delete one first"
            ),
        ));
    }
    let tenant_count = schedules
        .list_tenant_schedules(tenant, MAX_SCHEDULES_PER_TENANT)
        .await?
        .len();
    if tenant_count >= MAX_SCHEDULES_PER_TENANT {
        return Err(Error::invalid(
            "/",
            format!(
                "the tenant has {MAX_SCHEDULES_PER_TENANT} schedules, the most one tenant may \
                 have; delete one first"
            ),
        ));
    }
    Ok(())
}

/// The record of a put: the new definition, with the old record's creation time and
/// position, and its next fires from there.
fn scheduled(
    tenant: &str,
    workflow: &str,
    id: &str,
    definition: ScheduleDefinition,
    existing: Option<&ScheduleRecord>,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord, Error> {
    let created_at = existing.map_or(now, |e| e.created_at);
    let (timing, _) = definition.timing(created_at)?;
    // A new schedule starts from now: it does not fire for times before it existed.
    let last_fired = existing.and_then(|e| e.last_fired).unwrap_or(now);
    let next = ahead(&timing, last_fired);
    Ok(ScheduleRecord {
        tenant: tenant.to_owned(),
        workflow: workflow.to_owned(),
        id: id.to_owned(),
        definition,
        version: existing.map_or(1, |e| e.version + 1),
        created_at,
        updated_at: now,
        last_fired: Some(last_fired),
        next_due: next.first().copied(),
        next_fires: Some(next),
        last_error: existing.and_then(|e| e.last_error.clone()),
    })
}

/// The next fires after `after`: the look-ahead's budget covers every day of the horizon,
/// so it cannot run out; if it ever did, the schedule would show no next fire rather than
/// a wrong one.
fn ahead(timing: &Timing, after: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    timing.next(after, NEXT_FIRES_SHOWN).unwrap_or_else(|e| {
        warn!(error = %e, "the look-ahead of a schedule ran out of budget");
        Vec::new()
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
        let (timing, catchup) = match record.definition.timing(record.created_at) {
            Ok(timing) => timing,
            Err(why) => return Self::unreadable(schedules, record, why, now).await,
        };
        let after = record.last_fired.unwrap_or(record.created_at);
        // A step for each day since the last fire, and one for each fire: the walk cannot
        // run out, and it is as long as the downtime it catches up on, no longer.
        let days = (now - after).num_days().max(0) as u64;
        let mut budget = Budget::steps(days + 2 + MAX_FIRES_PER_SWEEP as u64);
        let due = timing
            .fires(after, now, MAX_FIRES_PER_SWEEP, &mut budget)
            .map_err(|e| BackendError::permanent("schedules.fire", e))?;
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
        let next = ahead(&timing, last_fired.max(now));
        let next_due = if due.len() >= MAX_FIRES_PER_SWEEP {
            Some(now)
        } else {
            next.first().copied()
        };
        let advanced = ScheduleRecord {
            last_fired: Some(last_fired),
            next_due,
            next_fires: Some(next),
            last_error: last_error.or(record.last_error.clone()),
            version: record.version + 1,
            ..record.clone()
        };
        // Another scheduler may have advanced it first: its fires were the same requests.
        schedules
            .advance_schedule(&advanced, record.version)
            .await?;
        Ok(report)
    }

    /// A stored schedule whose definition no longer reads (an expression an older build
    /// took): it stops being due, and says why on its record, rather than fail every sweep
    /// or fire by a guess.
    async fn unreadable(
        schedules: &dyn Schedules,
        record: ScheduleRecord,
        why: InvalidParam,
        now: DateTime<Utc>,
    ) -> Result<FireReport, Error> {
        let reason = format!(
            "not fired: {} {}; put the schedule again to fix it",
            why.pointer, why.reason
        );
        warn!(stage = "fire_failed", schedule = %record.id, error = %reason, "schedule cannot fire");
        let stopped = ScheduleRecord {
            next_due: None,
            next_fires: Some(Vec::new()),
            last_error: Some(reason),
            version: record.version + 1,
            updated_at: now,
            ..record.clone()
        };
        schedules.advance_schedule(&stopped, record.version).await?;
        Ok(FireReport {
            failed: 1,
            ..FireReport::default()
        })
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
        Self::advance_delivered(app, record, logical_date).await;
        Ok(Fired::Started)
    }

    /// Stores where a schedule the engine fires has got to: its last fire and its next
    /// fires, so that a read never works them out. A write that loses to another (a
    /// concurrent fire, a put) changes nothing: the next fire stores it again.
    async fn advance_delivered(
        app: &Flowgate,
        record: ScheduleRecord,
        logical_date: DateTime<Utc>,
    ) {
        if record.last_fired.is_some_and(|last| last >= logical_date) {
            return;
        }
        let Ok((timing, _)) = record.definition.timing(record.created_at) else {
            return;
        };
        let next = ahead(&timing, logical_date);
        let advanced = ScheduleRecord {
            last_fired: Some(logical_date),
            next_due: next.first().copied(),
            next_fires: Some(next),
            version: record.version + 1,
            ..record.clone()
        };
        let Ok(schedules) = store(app) else { return };
        if let Err(e) = schedules.advance_schedule(&advanced, record.version).await {
            warn!(error = %e, "could not store the schedule's position after its fire");
        }
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
