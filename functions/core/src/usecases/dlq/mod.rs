//! The operator's dead-letter use cases: list, show, replay, archive and restore, shared by
//! `flowgate dlq` and the `/v1/dlq` routes, on every backend.
//!
//! The dead-letter queue itself is the source of truth for what is dead-lettered (a poison
//! message has no request record); the request record says what may be done with a letter.

mod archive;
mod replay;
mod walk;

pub use archive::{
    ARCHIVE_VERSION, ArchiveError, ArchiveReport, ArchiveSink, ArchivedLetter, RestoreReport,
    parse_archive,
};
pub use replay::{Action, LetterOutcome, ReplayOptions, ReplayReport};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::dead_reason::FailureKind;

use super::Flowgate;
use crate::api_error::ApiError;
use crate::error::BackendError;
use crate::message::QueueMessage;
use crate::model::{Page, RequestRecord, decode_cursor, encode_cursor};
use crate::ports::DeadLetter;
use crate::validation::invalid;

/// The most letters one listing reads from the queue.
pub const MAX_SCAN: usize = 100_000;
/// The largest page `GET /v1/dlq` returns.
pub const MAX_PAGE: usize = 1000;
/// The page size when the client names none.
pub const DEFAULT_PAGE: usize = 100;
/// The most letters one `POST /v1/dlq/replay` replays (it must finish within the API's
/// timeout); call it again for more.
pub const MAX_HTTP_REPLAY: usize = 1000;
/// The letters `POST /v1/dlq/replay` replays when the body names no `max`.
pub const DEFAULT_HTTP_REPLAY: usize = 100;

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
        let error_kind = FailureKind::of(letter.reason.as_deref(), message.is_some());
        Self {
            message_id: letter.message_id.clone(),
            request_id: letter
                .request_id
                .clone()
                .or_else(|| message.as_ref().map(|m| m.request_id.clone())),
            workflow: message.as_ref().map(|m| m.spec.workflow.clone()),
            tenant: letter
                .tenant
                .clone()
                .or_else(|| message.as_ref().map(|m| m.tenant.clone())),
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

/// Which letters an operation applies to; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LetterFilter {
    /// Only this tenant's letters.
    pub tenant: Option<String>,
    /// Only this workflow's letters.
    pub workflow: Option<String>,
    /// A failure kind (`permanent`, `exhausted`, `poison`, `unknown`) or a case-insensitive
    /// substring of the reason.
    pub error: Option<String>,
    /// Only letters dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    /// Only letters dead-lettered at most this long ago.
    pub newer_than: Option<Duration>,
}

impl LetterFilter {
    /// Whether the filter selects every letter.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &LetterSummary) -> bool {
        let age = Duration::from_secs(u64::try_from(letter.age_seconds).unwrap_or(0));
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        same(&self.tenant, &letter.tenant)
            && same(&self.workflow, &letter.workflow)
            && self.error.as_ref().is_none_or(|e| {
                e.eq_ignore_ascii_case(letter.error_kind.as_str())
                    || letter.error.to_lowercase().contains(&e.to_lowercase())
            })
            && self.older_than.is_none_or(|d| age >= d)
            && self.newer_than.is_none_or(|d| age <= d)
    }
}

/// Parses a humantime duration, with an error that shows the expected form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 90s, 15m, 2h, 7d)"))
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

    /// A page of the dead letters `filter` selects, oldest first.
    pub async fn dlq_list(
        &self,
        filter: &LetterFilter,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LetterSummary>, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid("limit", format!("must be from 1 to {MAX_PAGE}")));
        }
        let after: Option<LetterCursor> = match cursor {
            None => None,
            Some(text) => Some(
                decode_cursor(text)
                    .ok_or_else(|| invalid("cursor", "is not a cursor this API returned"))?,
            ),
        };
        let mut items: Vec<LetterSummary> = self
            .dlq_scan(filter)
            .await?
            .into_iter()
            .filter(|s| {
                after
                    .as_ref()
                    .is_none_or(|c| (s.dead_lettered_at, &s.message_id) > (c.at, &c.id))
            })
            .take(limit + 1)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|s| {
                encode_cursor(&LetterCursor {
                    at: s.dead_lettered_at,
                    id: s.message_id.clone(),
                })
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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
