//! The operator's dead-letter use cases: list, show, replay, archive and restore, shared by
//! `flowgate dlq` and the `/v1/dlq` routes, on every backend.
//!
//! The dead-letter queue itself is the source of truth for what is dead-lettered (a poison
//! message has no request record); the request record says what may be done with a letter.

mod archive;
mod filter;
mod replay;
mod walk;

pub use archive::{
    ARCHIVE_VERSION, ArchiveReport, ArchiveSink, ArchivedLetter, RestoreReport, parse_archive,
};
pub use filter::{
    DEFAULT_SCOPED_REPLAY, FilterParams, LetterFilter, ListParams, MAX_SCOPED_REPLAY, Rate,
    ReplayParams, Scope,
};
pub use replay::{Action, LetterOutcome, ReplayOptions, ReplayReport};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::dead_reason::FailureKind;

use super::Flowgate;
use crate::error::{BackendError, Error};
use crate::message::{FireMessage, QueueMessage};
use crate::model::{Page, RequestRecord};
use crate::paging::{self, PageRequest};
use crate::ports::DeadLetter;

/// The most letters one listing reads from the queue.
pub const MAX_SCAN: usize = 100_000;

/// One row of a dead-letter listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LetterSummary {
    /// The letter's id in the dead-letter queue.
    pub message_id: String,
    /// The request it carries, if it names one.
    pub request_id: Option<String>,
    /// The workflow, if the body parses.
    pub workflow: Option<String>,
    /// The owning tenant, if known.
    pub tenant: Option<String>,
    /// Deliveries before it was dead-lettered.
    pub receive_count: u32,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// Seconds since then.
    pub age_seconds: i64,
    /// The reason it was dead-lettered.
    pub error: String,
    /// The reason's kind.
    pub error_kind: FailureKind,
}

impl LetterSummary {
    /// The row for `letter`, with ids from its body when its attributes lack them.
    pub fn of(letter: &DeadLetter, now: DateTime<Utc>) -> Self {
        let message = QueueMessage::parse(&letter.body).ok();
        // Only a body that is not a request message can be a schedule's fire.
        let fire = match message {
            Some(_) => None,
            None => FireMessage::parse(&letter.body)
                .and_then(Result::ok)
                .map(|(m, _)| m.fire),
        };
        let error_kind = FailureKind::of(
            letter.reason.as_deref(),
            message.is_some() || fire.is_some(),
        );
        Self {
            message_id: letter.message_id.clone(),
            request_id: letter
                .request_id
                .clone()
                .or_else(|| message.as_ref().map(|m| m.request_id.clone())),
            workflow: message
                .as_ref()
                .map(|m| m.spec.workflow.clone())
                .or_else(|| fire.as_ref().map(|f| f.workflow.clone())),
            tenant: letter
                .tenant
                .clone()
                .or_else(|| message.as_ref().map(|m| m.tenant.clone()))
                .or_else(|| fire.as_ref().map(|f| f.tenant.clone())),
            receive_count: letter.receive_count,
            dead_lettered_at: letter.dead_lettered_at,
            age_seconds: (now - letter.dead_lettered_at).num_seconds().max(0),
            error: letter.reason.clone().unwrap_or_else(|| {
                "moved by the queue's redrive after the maximum receive count".into()
            }),
            error_kind,
        }
    }
}

/// A position in a listing: the last letter of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LetterCursor {
    at: DateTime<Utc>,
    id: String,
}

/// A dead letter with its request record and full history: what `dlq show` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LetterDetail {
    /// The listing row.
    pub summary: LetterSummary,
    /// The message as stored: JSON when the body parses as JSON, else the raw text.
    pub message: serde_json::Value,
    /// The request record with its history, if one exists.
    pub record: Option<RequestRecord>,
}

impl Flowgate {
    /// Every dead letter `filter` selects, oldest first, without changing any of them.
    pub async fn dlq_scan(
        &self,
        filter: &LetterFilter,
    ) -> Result<Vec<LetterSummary>, BackendError> {
        let now = Utc::now();
        Ok(self
            .queue
            .dlq_peek(MAX_SCAN)
            .await?
            .iter()
            .map(|l| LetterSummary::of(l, now))
            .filter(|s| filter.matches(s))
            .collect())
    }

    /// A page of the dead letters `params` select that `scope` may see, oldest first.
    pub async fn dlq_list(
        &self,
        scope: &Scope,
        params: ListParams,
    ) -> Result<Page<LetterSummary>, Error> {
        let request = PageRequest::<LetterCursor>::parse(&params.page, paging::DEAD_LETTERS)?;
        let filter = scope.confine(LetterFilter::try_from(params.filter)?)?;
        let items: Vec<LetterSummary> = self
            .dlq_scan(&filter)
            .await?
            .into_iter()
            .filter(|s| {
                request
                    .after
                    .as_ref()
                    .is_none_or(|c| (s.dead_lettered_at, &s.message_id) > (c.at, &c.id))
            })
            .take(request.probe())
            .collect();
        Ok(paging::page(items, request.limit, |s| LetterCursor {
            at: s.dead_lettered_at,
            id: s.message_id.clone(),
        }))
    }

    /// Every dead letter of `request_id` (usually one), each with the request's record.
    pub async fn dlq_show(
        &self,
        request_id: &str,
        tenant: Option<&str>,
    ) -> Result<Vec<LetterDetail>, BackendError> {
        let now = Utc::now();
        let mut details = Vec::new();
        for letter in self.queue.dlq_peek(MAX_SCAN).await? {
            let summary = LetterSummary::of(&letter, now);
            if summary.request_id.as_deref() != Some(request_id)
                || tenant.is_some_and(|t| summary.tenant.as_deref() != Some(t))
            {
                continue;
            }
            let record = match &summary.tenant {
                Some(t) => self.store.get_request(t, request_id).await?,
                None => None,
            };
            let message = serde_json::from_str(&letter.body)
                .unwrap_or(serde_json::Value::String(letter.body.clone()));
            details.push(LetterDetail {
                summary,
                message,
                record,
            });
        }
        Ok(details)
    }
}
