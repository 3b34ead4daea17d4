//! The rules of a request record's life, as pure functions every backend calls: how an
//! update applies, and how the history is bounded. Backends only store the result.

use chrono::{DateTime, Utc};

use crate::model::{Dispatch, EventKind, HistoryEvent, RequestRecord, RequestStatus};

/// The most events a history keeps; past it, the oldest after `accepted` are dropped.
pub const MAX_HISTORY: usize = 100;
/// The longest event detail kept, in bytes; a longer one is cut at a character boundary.
pub const MAX_DETAIL: usize = 2048;

/// A change to a request record, applied atomically with its history event.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestUpdate {
    /// Appended to the history.
    pub event: HistoryEvent,
    /// Apply only when the record is currently in this status.
    pub only_if: Option<RequestStatus>,
    /// The new status, if it changes.
    pub set_status: Option<RequestStatus>,
    /// Sets `attempts` (the deliveries of its message so far).
    pub set_attempts: Option<u32>,
    /// Sets `last_error`.
    pub set_last_error: Option<String>,
    /// Sets `pending_since` to the event's time, if the record is (still) pending.
    pub touch_pending: bool,
    /// Sets the hand-off state.
    pub set_dispatch: Option<Dispatch>,
    /// The update comes with the request's message, sent at this time: `enqueued` is noted
    /// then, before the event, unless the history already says the request was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// Apply only when the run is currently this (`Some(None)`: no run reported yet).
    pub only_if_run: Option<Option<crate::model::RunStatus>>,
    /// Sets the run.
    pub set_run: Option<crate::model::Run>,
}

impl RequestUpdate {
    /// An update that only appends `event`.
    pub fn event(event: HistoryEvent) -> Self {
        Self {
            event,
            only_if: None,
            set_status: None,
            set_attempts: None,
            set_last_error: None,
            touch_pending: false,
            set_dispatch: None,
            sent_at: None,
            only_if_run: None,
            set_run: None,
        }
    }

    /// The same update, setting the run.
    pub fn with_run(mut self, run: crate::model::Run) -> Self {
        self.set_run = Some(run);
        self
    }
}

/// `only_if` did not hold: nothing changed. Carries the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardFailed(pub RequestStatus);

impl RequestRecord {
    /// Applies `update`: checks its guard, sets what it sets, puts its event in time order,
    /// and bounds the history. `pending_since` only means something while the record is
    /// pending (see [`RequestRecord::pending_due`]).
    pub fn apply(&mut self, update: &RequestUpdate) -> Result<(), GuardFailed> {
        if let Some(required) = update.only_if
            && required != self.status
        {
            return Err(GuardFailed(self.status));
        }
        if let Some(required) = update.only_if_run
            && required != self.run.as_ref().map(|r| r.status)
        {
            return Err(GuardFailed(self.status));
        }
        if let Some(run) = &update.set_run {
            self.run = Some(run.clone());
        }
        if let Some(status) = update.set_status {
            self.status = status;
        }
        if let Some(attempts) = update.set_attempts {
            self.attempts = attempts;
        }
        if let Some(error) = &update.set_last_error {
            self.last_error = Some(error.clone());
        }
        if let Some(dispatch) = &update.set_dispatch {
            self.dispatch = Some(dispatch.clone());
        }
        self.updated_at = update.event.at;
        if let Some(at) = update.sent_at.filter(|_| !self.was_sent()) {
            append(
                &mut self.history,
                HistoryEvent {
                    at,
                    kind: EventKind::Enqueued,
                    detail: crate::model::details::ENQUEUED.to_owned(),
                    trace_id: None,
                },
            );
        }
        if !self.is_pending() {
            self.pending_since = None;
        } else if update.touch_pending {
            self.pending_since = Some(update.event.at);
        }
        append(&mut self.history, update.event.clone());
        Ok(())
    }
}

impl RequestRecord {
    /// Whether its history says its message was sent (`enqueued` or `reenqueued`).
    pub fn was_sent(&self) -> bool {
        self.history
            .iter()
            .any(|e| matches!(e.kind, EventKind::Enqueued | EventKind::Reenqueued))
    }

    /// Whether the start is done with any concurrency slot it held: its run ended (a final
    /// status), or it will never run (dead-lettered, archived, skipped).
    pub fn run_over(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.is_final())
            || matches!(
                self.status,
                RequestStatus::Dead | RequestStatus::Archived | RequestStatus::Skipped
            )
    }

    /// Whether its instance's run is over, as far as a limit counts it: it ended (a final
    /// status), or nothing runs it (no hand-off is owed: a record-only workflow, a dry run).
    pub fn run_settled(&self) -> bool {
        self.dispatch.is_none() || self.run.as_ref().is_some_and(|r| r.is_final())
    }

    /// Whether work is still owed on it: its instance is not created yet (`ACCEPTED`), or
    /// it is created and its hand-off to the workflow's target is owed.
    pub fn is_pending(&self) -> bool {
        match self.status {
            RequestStatus::Accepted => true,
            RequestStatus::Created => {
                self.dispatch.as_ref().is_some_and(|d| !d.is_done())
                    && !self.run.as_ref().is_some_and(|r| r.is_final())
            }
            _ => false,
        }
    }

    /// When the reconciler should consider it stuck (compared with its grace period), or
    /// `None` when nothing is owed: the key of every store's pending index.
    pub fn pending_due(&self) -> Option<DateTime<Utc>> {
        self.is_pending()
            .then(|| self.pending_since.unwrap_or(self.accepted_at))
    }
}

/// Adds `event` in time order (a note stamped before a send may land after what the send
/// caused), then bounds the history.
pub fn append(history: &mut Vec<HistoryEvent>, event: HistoryEvent) {
    let at = history.partition_point(|e| e.at <= event.at);
    history.insert(at, event);
    bound_history(history);
}

/// Keeps the first event (`accepted`) and the newest ones, at most [`MAX_HISTORY`], each
/// detail cut to [`MAX_DETAIL`] bytes.
pub fn bound_history(history: &mut Vec<HistoryEvent>) {
    history.iter_mut().for_each(|e| cut(&mut e.detail));
    if history.len() > MAX_HISTORY {
        let excess = history.len() - MAX_HISTORY;
        history.drain(1..=excess);
    }
}

/// Cuts `detail` to [`MAX_DETAIL`] bytes, at a character boundary.
pub fn cut(detail: &mut String) {
    if detail.len() > MAX_DETAIL {
        let mut at = MAX_DETAIL;
        while !detail.is_char_boundary(at) {
            at -= 1;
        }
        detail.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use chrono::{Duration, Utc};

    fn event(kind: EventKind, detail: &str, offset_ms: i64) -> HistoryEvent {
        HistoryEvent {
            at: Utc::now() + Duration::milliseconds(offset_ms),
            kind,
            detail: detail.into(),
            trace_id: None,
        }
    }

    #[test]
    fn history_keeps_the_first_event_the_newest_ones_and_short_details() {
        let mut history = vec![event(EventKind::Accepted, "accepted", 0)];
        for i in 1..=250 {
            append(
                &mut history,
                event(EventKind::DeliveryFailed, &"é".repeat(3000), i),
            );
        }
        assert_eq!(history.len(), MAX_HISTORY);
        assert_eq!(history[0].kind, EventKind::Accepted);
        assert!(history.iter().all(|e| e.detail.len() <= MAX_DETAIL));
        assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn an_event_stamped_earlier_lands_in_time_order() {
        let mut history = vec![event(EventKind::Accepted, "a", 0)];
        append(&mut history, event(EventKind::Created, "c", 20));
        append(&mut history, event(EventKind::Enqueued, "e", 10));
        let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Accepted, EventKind::Enqueued, EventKind::Created]
        );
    }
}
