//! Replay: re-drives dead letters to the main queue, resetting their requests to `ACCEPTED`.
//! At least once: a letter leaves the dead-letter queue only after its re-send succeeded, and
//! the idempotent consumer absorbs any duplicate.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{Instrument, error, info, warn};

use super::walk::{Walk, hold_for};
use super::{LetterFilter, LetterSummary, Rate, ReplayParams, Scope};
use crate::error::{BackendError, Error};
use crate::message::{FireMessage, QueueMessage};
use crate::metrics::{Labels, Metric};
use crate::model::{EventKind, HistoryEvent, RequestStatus};
use crate::ports::{DeadLetter, Envelope, MoveAll, RequestUpdate, UpdateOutcome};
use crate::trace::TraceContext;
use crate::usecases::{Flowgate, request_span};

/// What a replay applies to, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayOptions {
    /// Which letters.
    pub filter: LetterFilter,
    /// At most this many letters.
    pub max: Option<usize>,
    /// At most this pace.
    pub rate: Option<Rate>,
    /// Report what would happen, and change nothing.
    pub dry_run: bool,
}

/// What happened (or, in a dry run, would happen) to one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Re-sent to the main queue; the request is `ACCEPTED` again.
    Replayed,
    /// The request was already `CREATED`: the stale letter was removed, not re-sent.
    SkippedCreated,
    /// Left in the dead-letter queue; `detail` says why.
    Failed,
}

/// One letter's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LetterOutcome {
    /// The letter's id in the dead-letter queue.
    pub message_id: String,
    /// Its request, if it names one.
    pub request_id: Option<String>,
    /// Its tenant, if known.
    pub tenant: Option<String>,
    /// What happened.
    pub action: Action,
    /// Why, for failures; what was done otherwise.
    pub detail: String,
}

/// The summary of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Nothing was changed; the counts say what would have been.
    pub dry_run: bool,
    /// Letters re-sent.
    pub replayed: u64,
    /// Stale letters of requests already `CREATED`, removed without a re-send.
    pub skipped_created: u64,
    /// Letters left in place because something failed.
    pub failed: u64,
    /// What became of the queue's native bulk move, when an unfiltered replay tried it.
    pub native_move: Option<String>,
    /// Each letter's outcome.
    pub letters: Vec<LetterOutcome>,
}

impl ReplayReport {
    fn record(&mut self, outcome: LetterOutcome, progress: &(dyn Fn(&LetterOutcome) + Sync)) {
        match outcome.action {
            Action::Replayed => self.replayed += 1,
            Action::SkippedCreated => self.skipped_created += 1,
            Action::Failed => self.failed += 1,
        }
        progress(&outcome);
        self.letters.push(outcome);
    }
}

/// What replaying a letter amounts to, given its request's current state.
enum Plan {
    Replay(Box<QueueMessage>, RequestStatus),
    /// A schedule's fire: sent again as it is. Its start is keyed by (workflow, logical
    /// date), so a fire that did start meanwhile replays as the same request.
    Resend(Envelope),
    SkipCreated,
    Fail(String),
}

/// Paces work at `rate` items per second.
struct Pacer {
    start: tokio::time::Instant,
    every: Option<Duration>,
    done: u32,
}

impl Pacer {
    fn new(rate: Option<Rate>) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            every: rate.map(Rate::interval),
            done: 0,
        }
    }

    async fn tick(&mut self) {
        if let Some(every) = self.every {
            tokio::time::sleep_until(self.start + every * self.done).await;
        }
        self.done += 1;
    }
}

impl ReplayOptions {
    /// The replay `params` ask for, as far as `scope` allows.
    pub fn scoped(scope: &Scope, params: ReplayParams) -> Result<Self, Error> {
        Ok(Self {
            filter: scope.confine(LetterFilter::try_from(params.filter)?)?,
            max: scope.replay_max(params.max)?,
            rate: params.rate,
            dry_run: params.dry_run,
        })
    }
}

impl Flowgate {
    /// Replays the dead letters `params` select, as far as `scope` allows; `progress` sees
    /// each outcome as it happens.
    pub async fn dlq_replay_as(
        &self,
        scope: &Scope,
        params: ReplayParams,
        progress: &(dyn Fn(&LetterOutcome) + Sync),
    ) -> Result<ReplayReport, Error> {
        let options = ReplayOptions::scoped(scope, params)?;
        Ok(self.dlq_replay(&options, progress).await?)
    }

    /// Replays the dead letters `options` select; `progress` sees each outcome as it happens.
    pub async fn dlq_replay(
        &self,
        options: &ReplayOptions,
        progress: &(dyn Fn(&LetterOutcome) + Sync),
    ) -> Result<ReplayReport, BackendError> {
        let mut report = ReplayReport {
            dry_run: options.dry_run,
            ..ReplayReport::default()
        };
        if options.dry_run {
            let mut letters = self.queue.dlq_peek(super::MAX_SCAN).await?;
            let now = chrono::Utc::now();
            letters.retain(|l| options.filter.matches(&LetterSummary::of(l, now)));
            letters.truncate(options.max.unwrap_or(usize::MAX));
            for letter in &letters {
                let outcome = match self.plan(letter).await? {
                    Plan::Replay(..) | Plan::Resend(..) => {
                        outcome(letter, Action::Replayed, "would be re-sent")
                    }
                    Plan::SkipCreated => outcome(
                        letter,
                        Action::SkippedCreated,
                        "request already CREATED: would be removed",
                    ),
                    Plan::Fail(why) => outcome(letter, Action::Failed, why),
                };
                report.record(outcome, progress);
            }
            return Ok(self.summarize(report));
        }
        // The letters there when the replay began: one that fails again meanwhile is a new
        // letter, and is not replayed twice in one run.
        let began = chrono::Utc::now();
        let unfiltered =
            options.filter.is_empty() && options.max.is_none() && options.rate.is_none();
        let already_reset = if unfiltered {
            match self.move_all(&mut report, progress).await? {
                None => return Ok(self.summarize(report)),
                Some(reset) => reset,
            }
        } else {
            HashSet::new()
        };
        let mut pacer = Pacer::new(options.rate);
        let hold = hold_for(options.max, options.rate);
        let mut walk =
            Walk::new(self.queue.as_ref(), &options.filter, options.max, hold).only_before(began);
        let result = async {
            loop {
                let batch = walk.next().await?;
                if batch.is_empty() {
                    return Ok::<_, BackendError>(());
                }
                for (letter, summary) in batch {
                    pacer.tick().await;
                    let outcome = self.replay_one(&letter, &already_reset).await;
                    self.measure_replay(&summary, outcome.action);
                    if outcome.action == Action::Failed {
                        walk.keep(letter);
                    }
                    report.record(outcome, progress);
                }
            }
        }
        .await;
        walk.finish().await;
        result?;
        Ok(self.summarize(report))
    }

    /// Tries the queue's native bulk move for an unfiltered replay. Records are reset first,
    /// so each is `ACCEPTED` before its message can reach the consumer. Answers `None` when
    /// the move did everything, or the requests it already reset when the caller must go on
    /// letter by letter.
    async fn move_all(
        &self,
        report: &mut ReplayReport,
        progress: &(dyn Fn(&LetterOutcome) + Sync),
    ) -> Result<Option<HashSet<String>>, BackendError> {
        let letters = self.queue.dlq_peek(super::MAX_SCAN).await?;
        let mut plans = Vec::with_capacity(letters.len());
        for letter in &letters {
            match self.plan(letter).await? {
                Plan::Replay(message, status) => plans.push((letter, *message, status)),
                // Stale or unreplayable letters need the letter-by-letter path.
                _ => {
                    report.native_move =
                        Some("not tried: some letters are stale or cannot be replayed".into());
                    return Ok(Some(HashSet::new()));
                }
            }
        }
        if plans.is_empty() {
            return Ok(Some(HashSet::new()));
        }
        // Reset first, then move. (When the move is unavailable or fails half-way, the
        // caller goes on letter by letter without resetting these records twice.)
        let mut reset = HashSet::new();
        for (letter, message, status) in &plans {
            if self.reset(message, *status, letter).await? {
                reset.insert(message.request_id.clone());
            }
        }
        match self.queue.dlq_move_all().await? {
            MoveAll::Moved(n) => {
                report.native_move =
                    Some(format!("the queue's native bulk move moved {n} letters"));
                for (letter, message, _) in &plans {
                    let labels = Labels {
                        tenant: Some(&message.tenant),
                        workflow: Some(&message.spec.workflow),
                        outcome: "replayed",
                    };
                    self.measure(Metric::Replayed, &labels, 1.0);
                    report.record(
                        outcome(letter, Action::Replayed, "moved by the native bulk move"),
                        progress,
                    );
                }
                Ok(None)
            }
            MoveAll::Unsupported(why) => {
                report.native_move = Some(format!("unavailable, replayed letter by letter: {why}"));
                Ok(Some(reset))
            }
        }
    }

    fn summarize(&self, report: ReplayReport) -> ReplayReport {
        info!(
            stage = "dlq_replay",
            dry_run = report.dry_run,
            replayed = report.replayed,
            skipped_created = report.skipped_created,
            failed = report.failed,
            native_move = ?report.native_move,
            "dead-letter replay finished"
        );
        report
    }

    /// Counts one replayed letter by its workflow (when its body names one) and outcome.
    fn measure_replay(&self, letter: &LetterSummary, action: Action) {
        let outcome = match action {
            Action::Replayed => "replayed",
            Action::SkippedCreated => "skipped",
            Action::Failed => "failed",
        };
        let labels = Labels {
            tenant: letter.tenant.as_deref(),
            workflow: letter.workflow.as_deref(),
            outcome,
        };
        self.measure(Metric::Replayed, &labels, 1.0);
    }

    async fn plan(&self, letter: &DeadLetter) -> Result<Plan, BackendError> {
        if let Some(Ok((fire, _))) = FireMessage::parse(&letter.body) {
            return Ok(Plan::Resend(Envelope {
                tenant: fire.fire.tenant,
                request_id: String::new(),
                body: letter.body.clone(),
                traceparent: letter.traceparent.clone(),
            }));
        }
        let message = match QueueMessage::parse(&letter.body) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Plan::Fail(format!(
                    "the body is not a Flowgate request message ({e}); it cannot be replayed, \
                     only archived"
                )));
            }
        };
        Ok(
            match self
                .store
                .get_request(&message.tenant, &message.request_id)
                .await?
            {
                None => Plan::Fail(
                    "the request has no record (expired or never written); it cannot be \
                     replayed, only archived"
                        .into(),
                ),
                Some(r) if done(&r) => Plan::SkipCreated,
                // The record's message, not the letter's: it says whether a hand-off is owed.
                Some(r) => Plan::Replay(Box::new(QueueMessage::for_record(&r)), r.status),
            },
        )
    }

    /// Resets the request with a `replayed` event: to `ACCEPTED`, or to `CREATED` when its
    /// instance exists (a hand-off letter: only the hand-off is re-driven). Answers false
    /// when it turned out to be done meanwhile.
    async fn reset(
        &self,
        message: &QueueMessage,
        mut status: RequestStatus,
        letter: &DeadLetter,
    ) -> Result<bool, BackendError> {
        let was = letter.reason.as_deref().unwrap_or("redriven by the queue");
        let to = match self
            .store
            .get_instance(&message.tenant, &message.instance_id)
            .await?
        {
            Some(_) => RequestStatus::Created,
            None => RequestStatus::Accepted,
        };
        for _ in 0..3 {
            let update = RequestUpdate {
                only_if: Some(status),
                set_status: Some(to),
                set_attempts: Some(0),
                touch_pending: true,
                ..RequestUpdate::event(HistoryEvent::now(
                    EventKind::Replayed,
                    format!(
                        "re-driven from the dead-letter queue (letter {}; was {}: {was})",
                        letter.message_id,
                        status.as_str()
                    ),
                ))
            };
            match self
                .store
                .update_request(&message.tenant, &message.request_id, &update)
                .await?
            {
                UpdateOutcome::Applied => return Ok(true),
                UpdateOutcome::Skipped(RequestStatus::Dispatched) => return Ok(false),
                UpdateOutcome::Skipped(RequestStatus::Created) if to == RequestStatus::Accepted => {
                    return Ok(false);
                }
                UpdateOutcome::Skipped(now) => status = now,
                UpdateOutcome::NotFound => {
                    return Err(BackendError::permanent(
                        "store.update",
                        "the request record disappeared during the replay",
                    ));
                }
            }
        }
        Err(BackendError::retryable(
            "store.update",
            "the request kept changing during the replay; try again",
        ))
    }

    async fn replay_one(
        &self,
        letter: &DeadLetter,
        already_reset: &HashSet<String>,
    ) -> LetterOutcome {
        let plan = match self.plan(letter).await {
            Ok(plan) => plan,
            Err(e) => return outcome(letter, Action::Failed, e.chain()),
        };
        let (message, status) = match plan {
            Plan::Fail(why) => {
                warn!(stage = "replay_failed", message_id = %letter.message_id, reason = %why,
                    "dead letter not replayable");
                return outcome(letter, Action::Failed, why);
            }
            Plan::SkipCreated => return self.drop_stale(letter).await,
            Plan::Resend(envelope) => return self.resend(letter, &envelope).await,
            Plan::Replay(message, status) => (*message, status),
        };
        let span = request_span(
            "dlq",
            &message.tenant,
            &message.spec.workflow,
            &message.request_id,
            &message.instance_id,
            letter.traceparent.as_deref().and_then(TraceContext::parse),
        );
        async {
            if !already_reset.contains(&message.request_id) {
                match self.reset(&message, status, letter).await {
                    Ok(true) => {}
                    Ok(false) => return self.drop_stale(letter).await,
                    Err(e) => return outcome(letter, Action::Failed, e.chain()),
                }
            }
            self.resend(letter, &message.envelope(letter.traceparent.clone()))
                .await
        }
        .instrument(span)
        .await
    }

    /// Sends the letter's message to the main queue, then removes the letter.
    async fn resend(&self, letter: &DeadLetter, envelope: &Envelope) -> LetterOutcome {
        if let Err(e) = self.queue.send(envelope).await {
            let why = if envelope.request_id.is_empty() {
                format!("re-send failed: {}; the letter stays", e.chain())
            } else {
                format!(
                    "re-send failed: {}; the request is ACCEPTED again, so the reconciler \
                     re-sends it after its grace period",
                    e.chain()
                )
            };
            error!(stage = "replay_failed", reason = %why, "replay failed");
            return outcome(letter, Action::Failed, why);
        }
        if let Err(e) = self.queue.dlq_delete(letter).await {
            let why = format!(
                "re-sent, but the letter could not be removed from the dead-letter queue: \
                 {}; a later replay removes it",
                e.chain()
            );
            warn!(stage = "replay_failed", reason = %why, "replay left the letter");
            return outcome(letter, Action::Failed, why);
        }
        info!(stage = "replayed", message_id = %letter.message_id, "dead letter replayed");
        outcome(letter, Action::Replayed, "re-sent to the main queue")
    }

    /// Removes the letter of a request that is already `CREATED`, without a re-send.
    async fn drop_stale(&self, letter: &DeadLetter) -> LetterOutcome {
        match self.queue.dlq_delete(letter).await {
            Ok(()) => {
                info!(stage = "replay_skipped", message_id = %letter.message_id,
                    request_id = ?letter.request_id, "request already created; stale letter removed");
                outcome(
                    letter,
                    Action::SkippedCreated,
                    "request already CREATED: stale letter removed",
                )
            }
            Err(e) => outcome(letter, Action::Failed, e.chain()),
        }
    }
}

/// Whether nothing is left to re-drive: created (and handed off, if it has a target).
fn done(record: &crate::model::RequestRecord) -> bool {
    !record.is_pending()
        && matches!(
            record.status,
            RequestStatus::Created | RequestStatus::Dispatched
        )
}

fn outcome(letter: &DeadLetter, action: Action, detail: impl Into<String>) -> LetterOutcome {
    let summary = LetterSummary::of(letter, chrono::Utc::now());
    LetterOutcome {
        message_id: letter.message_id.clone(),
        request_id: summary.request_id,
        tenant: summary.tenant,
        action,
        detail: detail.into(),
    }
}
