//! Backfills: a workflow started for each logical date of a range, each date keyed by
//! (workflow, date) like a schedule's fire, so that a date that already has an instance is
//! skipped (unless `reprocess`), and a backfill resumed after a crash starts nothing twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::start::Origin;
use super::{Flowgate, StartRequest};
use crate::error::{BackendError, Error, InvalidParam};
use crate::model::{Priority, RequestStatus};
use crate::ports::{BackfillRecord, BackfillState, Backfills};
use crate::schedule::{Budget, Expression, Timing, timezone};
use crate::validation::{StartBody, identifier};

/// The most dates one backfill expands to.
pub const MAX_DATES: usize = 100_000;
/// The most steps one backfill's expansion may take: a day of the range for each
/// expression, and a date each. A range too long to expand within them is refused.
pub const EXPANSION_STEPS: u64 = 4_000_000;
/// The longest one backfill's expansion may take, on the budgeted pool.
pub const EXPANSION_TIME: std::time::Duration = std::time::Duration::from_secs(2);
/// Dates in flight at once when the body names no `max_in_flight`.
pub const DEFAULT_IN_FLIGHT: usize = 10;

/// The order dates start in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

impl std::str::FromStr for Order {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            _ => Err(format!("{text:?} is not asc or desc")),
        }
    }
}

/// The body of `POST /v1/workflows/{code}/backfills` (and the flags of `flowgate backfill
/// start`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct BackfillBody {
    /// The range's first instant (RFC 3339, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub from: Option<DateTime<Utc>>,
    /// The range's last instant (RFC 3339, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub to: Option<DateTime<Utc>>,
    /// Expands the range by this cron expression, instead of the workflow's schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub cron: Option<String>,
    /// The time zone of `cron` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub timezone: Option<String>,
    /// Explicit dates instead of a range (RFC 3339; comma-separated as a flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub dates: Option<Vec<DateTime<Utc>>>,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value = "asc"))]
    pub order: Order,
    /// The most dates in flight at once (default 10, at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub max_in_flight: Option<usize>,
    /// At most this many dates started per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub rate: Option<f64>,
    /// Start dates that already have an instance again, keyed by (backfill, date).
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub reprocess: bool,
    /// Answer the dates, and change nothing.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub dry_run: bool,
    /// The params of each instance, a JSON object.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value = "{}", value_parser = crate::validation::json_object))]
    pub params: Map<String, Value>,
    /// Their priority: HIGHEST, HIGH, MEDIUM, LOW or LOWEST.
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, default_value = "MEDIUM"))]
    pub priority: Priority,
    /// Run options kept with each date's request, not acted on. Only the DolphinScheduler
    /// door sets them (with its caller's other parameters); the JSON API has no such field.
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub options: BTreeMap<String, String>,
    /// The cron that expands a range when neither `cron` nor any schedule of the workflow
    /// does. Only the DolphinScheduler door sets it (to DolphinScheduler's own default).
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub fallback_cron: Option<String>,
    /// Each date's instance is created and never handed to its target (a DolphinScheduler
    /// dry run). Only the door sets it.
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub no_hand_off: bool,
}

/// What `POST .../backfills` answers.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillStarted {
    /// The backfill's id; `None` on a dry run.
    pub backfill_id: Option<String>,
    /// How many dates it has.
    pub dates: usize,
    /// On a dry run, the dates, in the order they would start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_dates: Option<Vec<DateTime<Utc>>>,
    /// The request id each date starts (or, skipped, already started) under, in order;
    /// empty on a dry run.
    #[serde(skip)]
    pub request_ids: Vec<String>,
    /// The call was a retry with the same idempotency key: this is the backfill it made.
    #[serde(skip)]
    pub replayed: bool,
}

/// A backfill's progress, as `GET /v1/backfills/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillView {
    /// Its id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// `running`, `paused`, `cancelled` or `done`.
    pub state: BackfillState,
    /// Its dates.
    pub total: usize,
    /// Dates started so far.
    pub started: usize,
    /// Dates whose instance exists.
    pub created: usize,
    /// Dates that already had an instance.
    pub skipped: usize,
    /// Dates dead-lettered, or refused.
    pub dead: usize,
    /// Dates started and not yet settled.
    pub in_flight: usize,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&BackfillRecord> for BackfillView {
    fn from(b: &BackfillRecord) -> Self {
        Self {
            id: b.id.clone(),
            workflow: b.workflow.clone(),
            state: b.state,
            total: b.dates.len(),
            started: b.started,
            created: b.created,
            skipped: b.skipped,
            dead: b.dead,
            in_flight: b.in_flight.len(),
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// A change an operator asks of a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop starting dates.
    Pause,
    /// Start dates again.
    Resume,
    /// Stop for good.
    Cancel,
}

/// The timing of an explicit cron expression in `zone` (default UTC), from `anchor`.
fn cron_timing(cron: &str, zone: Option<&str>, anchor: DateTime<Utc>) -> Result<Timing, Error> {
    let zone = timezone(zone.unwrap_or("UTC")).map_err(|e| Error::invalid("/timezone", e))?;
    Ok(Timing {
        expression: Expression::cron(cron).map_err(|e| Error::invalid("/cron", e))?,
        timezone: zone,
        start: None,
        end: None,
        anchor,
    })
}

fn store(app: &Flowgate) -> Result<&std::sync::Arc<dyn Backfills>, Error> {
    app.backfills
        .as_ref()
        .ok_or(Error::NotOnThisHost("backfills"))
}

/// The most backfills `GET /v1/backfills` lists.
pub const LISTED_BACKFILLS: usize = 50;

impl Flowgate {
    /// Expands a backfill's dates and, unless it is a dry run, records it to run. With an
    /// idempotency key the backfill's id is derived from it: a retry of the call finds the
    /// backfill it made (the same payload), or is refused (another payload).
    pub async fn start_backfill(
        &self,
        tenant: &str,
        workflow: &str,
        body: BackfillBody,
        idempotency_key: Option<&str>,
    ) -> Result<BackfillStarted, Error> {
        let definition = self.get_workflow(tenant, workflow).await?;
        let dates = self.expand(tenant, workflow, &body).await?;
        if body.dry_run {
            return Ok(BackfillStarted {
                backfill_id: None,
                dates: dates.len(),
                logical_dates: Some(dates),
                request_ids: Vec::new(),
                replayed: false,
            });
        }
        self.schemas
            .check(&definition, &body.params, self.validation_budget)
            .await?;
        let max_in_flight = body.max_in_flight.unwrap_or(DEFAULT_IN_FLIGHT);
        if !(1..=1000).contains(&max_in_flight) {
            return Err(Error::invalid("/max_in_flight", "must be from 1 to 1000"));
        }
        if body
            .rate
            .is_some_and(|r| !(r.is_finite() && (0.001..=10_000.0).contains(&r)))
        {
            return Err(Error::invalid(
                "/rate",
                "must be from 0.001 to 10000 dates per second",
            ));
        }
        let now = Utc::now();
        let record = BackfillRecord {
            tenant: tenant.to_owned(),
            id: crate::ids::backfill_id(tenant, idempotency_key),
            workflow: workflow.to_owned(),
            params: body.params,
            priority: body.priority,
            options: body.options,
            reprocess: body.reprocess,
            no_hand_off: body.no_hand_off,
            max_in_flight,
            rate: body.rate,
            state: BackfillState::Running,
            started: 0,
            created: 0,
            skipped: 0,
            dead: 0,
            in_flight: Vec::new(),
            version: 1,
            created_at: now,
            updated_at: now,
            dates,
        };
        let backfills = store(self)?;
        let (record, replayed) = if backfills.put_backfill(&record, None).await? {
            info!(stage = "backfill_started", backfill = %record.id, dates = record.dates.len(), "backfill recorded");
            (record, false)
        } else {
            let existing = backfills
                .get_backfill(tenant, &record.id)
                .await?
                .ok_or_else(|| {
                    BackendError::retryable("backfills.put", "the backfill changed; try again")
                })?;
            if !existing.asks_the_same(&record) {
                return Err(Error::BackfillKeyReused {
                    backfill_id: existing.id,
                });
            }
            info!(stage = "replayed", backfill = %existing.id, "backfill call retried");
            (existing, true)
        };
        let request_ids = record
            .dates
            .iter()
            .map(|date| StartRequest::fired_request_id(&record, *date))
            .collect();
        Ok(BackfillStarted {
            backfill_id: Some(record.id),
            dates: record.dates.len(),
            logical_dates: None,
            request_ids,
            replayed,
        })
    }

    /// The dates a body asks for: explicit, or a range expanded by a cron expression or by
    /// the workflow's schedules (their union), de-duplicated, in the order asked for.
    async fn expand(
        &self,
        tenant: &str,
        workflow: &str,
        body: &BackfillBody,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        let mut dates = match (&body.dates, body.from, body.to) {
            (Some(dates), None, None) if body.cron.is_none() => dates.clone(),
            (None, Some(from), Some(to)) => {
                if to < from {
                    return Err(Error::invalid("/to", "is before from"));
                }
                self.range(tenant, workflow, body, from, to).await?
            }
            _ => {
                return Err(Error::invalid(
                    "/",
                    "give either dates, or from and to (with an optional cron)",
                ));
            }
        };
        dates.sort();
        dates.dedup();
        if dates.len() > MAX_DATES {
            return Err(Error::invalid(
                "/",
                format!("expands to more than {MAX_DATES} dates; split the range"),
            ));
        }
        if dates.is_empty() {
            return Err(Error::invalid("/", "expands to no date"));
        }
        if body.order == Order::Desc {
            dates.reverse();
        }
        Ok(dates)
    }

    /// The instants of `from..=to` by `body`'s cron, or else by the workflow's schedules that
    /// are not paused (their union; a schedule's own start and end do not limit a
    /// backfill, as they do not limit a DolphinScheduler complement), or else by the
    /// door's fallback. Expanded on the budgeted pool, within [`EXPANSION_STEPS`] and
    /// [`EXPANSION_TIME`].
    async fn range(
        &self,
        tenant: &str,
        workflow: &str,
        body: &BackfillBody,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        let timings: Vec<Timing> = match &body.cron {
            Some(cron) => vec![cron_timing(cron, body.timezone.as_deref(), from)?],
            None => {
                let schedules = match &self.schedules {
                    Some(s) => s.list_schedules(tenant, workflow).await?,
                    None => Vec::new(),
                };
                let timings = schedules
                    .iter()
                    .filter(|s| !s.definition.paused)
                    .map(|s| {
                        let (mut timing, _) = s.definition.timing(s.created_at)?;
                        (timing.start, timing.end) = (None, None);
                        Ok(timing)
                    })
                    .collect::<Result<Vec<Timing>, InvalidParam>>()
                    .map_err(|e| {
                        Error::invalid(
                            "/cron",
                            format!(
                                "a schedule of the workflow no longer reads ({} {}); give a cron",
                                e.pointer, e.reason
                            ),
                        )
                    })?;
                match (timings.is_empty(), &body.fallback_cron) {
                    (false, _) => timings,
                    (true, Some(cron)) => vec![cron_timing(cron, None, from)?],
                    (true, None) => {
                        return Err(Error::invalid(
                            "/cron",
                            "the workflow has no schedule to expand the range by: give a cron",
                        ));
                    }
                }
            }
        };
        self.pool
            .run(EXPANSION_TIME, move || expand_range(&timings, from, to))
            .await
            .map_err(|e| Error::invalid("/", format!("the range could not be expanded: {e}")))?
    }

    /// A backfill's progress.
    pub async fn get_backfill(&self, tenant: &str, id: &str) -> Result<BackfillView, Error> {
        identifier("backfill id", id)?;
        store(self)?
            .get_backfill(tenant, id)
            .await?
            .map(|b| BackfillView::from(&b))
            .ok_or_else(|| Error::BackfillNotFound(id.to_owned()))
    }

    /// The caller's backfills and their progress, newest first.
    pub async fn list_backfills(&self, tenant: &str) -> Result<Vec<BackfillView>, Error> {
        let listed = store(self)?
            .list_backfills(tenant, LISTED_BACKFILLS)
            .await?;
        Ok(listed.iter().map(BackfillView::from).collect())
    }

    /// Pauses, resumes or cancels a backfill.
    pub async fn control_backfill(
        &self,
        tenant: &str,
        id: &str,
        control: Control,
    ) -> Result<BackfillView, Error> {
        identifier("backfill id", id)?;
        let backfills = store(self)?;
        for _ in 0..8 {
            let Some(mut b) = backfills.get_backfill(tenant, id).await? else {
                return Err(Error::BackfillNotFound(id.to_owned()));
            };
            let next = match (control, b.state) {
                (_, BackfillState::Done | BackfillState::Cancelled) => {
                    return Err(Error::Conflict(
                        format!("the backfill is {:?}", b.state).to_lowercase(),
                    ));
                }
                (Control::Pause, _) => BackfillState::Paused,
                (Control::Resume, _) => BackfillState::Running,
                (Control::Cancel, _) => BackfillState::Cancelled,
            };
            let expected = b.version;
            b.state = next;
            b.version += 1;
            b.updated_at = Utc::now();
            if backfills.put_backfill(&b, Some(expected)).await? {
                info!(stage = "backfill_control", backfill = %id, ?control, "backfill changed");
                return Ok(BackfillView::from(&b));
            }
        }
        Err(
            BackendError::retryable("backfills.put", "the backfill kept changing; try again")
                .into(),
        )
    }
}

/// Every instant in `from..=to` at which one of `timings` fires, within one budget of
/// steps and time shared by all of them.
fn expand_range(
    timings: &[Timing],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, Error> {
    let just_before = from - chrono::Duration::seconds(1);
    let mut budget = Budget::steps_and_time(EXPANSION_STEPS, EXPANSION_TIME);
    let mut dates = Vec::new();
    for timing in timings {
        let found = timing
            .fires(just_before, to, MAX_DATES + 1, &mut budget)
            .map_err(|e| {
                Error::invalid(
                    "/",
                    format!(
                        "the range is too long to expand ({e}, over {} expressions); split it",
                        timings.len()
                    ),
                )
            })?;
        dates.extend(found);
        if dates.len() > MAX_DATES {
            break;
        }
    }
    Ok(dates)
}

/// Moves running backfills forward: settles the dates in flight, then starts the next
/// ones, within `max_in_flight` and the rate. Any number may run on one store.
pub struct BackfillRunner {
    app: Flowgate,
}

impl BackfillRunner {
    /// A runner over the use cases' store.
    pub fn new(app: Flowgate) -> Self {
        Self { app }
    }

    /// One step of every running backfill; `tick` is how often steps come (for the rate).
    pub async fn step(&self, tick: std::time::Duration) -> Result<usize, Error> {
        Ok(self.step_running(tick).await?.1)
    }

    /// One step; answers how many backfills were running, and how many moved.
    async fn step_running(&self, tick: std::time::Duration) -> Result<(usize, usize), Error> {
        let backfills = store(&self.app)?;
        let running = backfills.running_backfills(100).await?;
        let count = running.len();
        let mut moved = 0;
        for b in running {
            let expected = b.version;
            match self.advance(b, tick).await {
                Ok(Some(next)) => {
                    if backfills.put_backfill(&next, Some(expected)).await? {
                        moved += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "backfill step failed; it is retried"),
            }
        }
        Ok((count, moved))
    }

    /// Steps every `tick` until no backfill runs or `budget` is spent (a host whose runs are
    /// invocations of a scheduled function); answers the backfills moved.
    pub async fn run_for(
        &self,
        budget: std::time::Duration,
        tick: std::time::Duration,
    ) -> Result<usize, Error> {
        let deadline = tokio::time::Instant::now() + budget;
        let mut moved = 0;
        loop {
            let (running, now) = self.step_running(tick).await?;
            moved += now;
            if running == 0 || tokio::time::Instant::now() + tick >= deadline {
                return Ok(moved);
            }
            tokio::time::sleep(tick).await;
        }
    }

    async fn advance(
        &self,
        mut b: BackfillRecord,
        tick: std::time::Duration,
    ) -> Result<Option<BackfillRecord>, Error> {
        let before = (b.started, b.created, b.dead, b.in_flight.len());
        self.settle(&mut b).await?;
        let budget = b.rate.map_or(usize::MAX, |r| {
            ((r * tick.as_secs_f64()).ceil() as usize).max(1)
        });
        let mut started_now = 0;
        while b.started < b.dates.len()
            && b.in_flight.len() < b.max_in_flight
            && started_now < budget
        {
            let date = b.dates[b.started];
            match self.start(&b, date).await {
                Ok(Outcome::InFlight(request_id)) => b.in_flight.push(request_id),
                Ok(Outcome::Created) => b.created += 1,
                Ok(Outcome::Skipped) => b.skipped += 1,
                Ok(Outcome::Refused(why)) => {
                    warn!(stage = "backfill_refused", backfill = %b.id, logical_date = %date, reason = %why, "backfill date refused");
                    b.dead += 1;
                }
                Err(e) => {
                    warn!(error = %e, "backfill start failed; it is retried");
                    break;
                }
            }
            b.started += 1;
            started_now += 1;
        }
        if b.started == b.dates.len() && b.in_flight.is_empty() {
            b.state = BackfillState::Done;
        }
        if (b.started, b.created, b.dead, b.in_flight.len()) == before
            && b.state == BackfillState::Running
        {
            return Ok(None);
        }
        b.version += 1;
        b.updated_at = Utc::now();
        Ok(Some(b))
    }

    /// Counts the dates in flight that have settled: an instance counts once its run ended
    /// (or at once, when nothing runs it: no target, or a dry run).
    async fn settle(&self, b: &mut BackfillRecord) -> Result<(), Error> {
        let mut still = Vec::new();
        for request_id in std::mem::take(&mut b.in_flight) {
            match self.app.store.get_request(&b.tenant, &request_id).await? {
                Some(r) if r.status.has_instance() && r.run_settled() => b.created += 1,
                Some(r) if r.status == RequestStatus::Skipped => b.skipped += 1,
                Some(r) if matches!(r.status, RequestStatus::Dead | RequestStatus::Archived) => {
                    b.dead += 1
                }
                _ => still.push(request_id),
            }
        }
        b.in_flight = still;
        Ok(())
    }

    async fn start(&self, b: &BackfillRecord, date: DateTime<Utc>) -> Result<Outcome, Error> {
        let body = StartBody {
            params: Some(Value::Object(b.params.clone())),
            priority: Some(b.priority),
            schedule_time: None,
        };
        let origin = Origin {
            logical_date: date,
            schedule_id: None,
            backfill_id: Some(b.id.clone()),
            reprocess: b.reprocess,
            detail: format!(
                "started by backfill {} for {}",
                b.id,
                date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        let mut request = StartRequest::fired(&b.tenant, &b.workflow, body, origin);
        request.options = b.options.clone();
        request.dry_run = b.no_hand_off;
        match self.app.start_instance(request).await {
            Ok(outcome) => {
                let ours = outcome.record.spec.backfill_id.as_deref() == Some(b.id.as_str());
                Ok(match (outcome.replayed && !ours, outcome.record.status) {
                    (true, _) => Outcome::Skipped,
                    (false, s) if s.has_instance() && outcome.record.run_settled() => {
                        Outcome::Created
                    }
                    (false, _) => Outcome::InFlight(outcome.record.request_id),
                })
            }
            // Another path (a schedule, another backfill) already started this date.
            Err(Error::KeyReused { .. }) => Ok(Outcome::Skipped),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => Ok(Outcome::Refused(e.to_string())),
        }
    }
}

enum Outcome {
    InFlight(String),
    Created,
    Skipped,
    Refused(String),
}
