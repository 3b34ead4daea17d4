//! The reasons written beside a dead letter, and their kinds: one place writes them (for
//! the consumer and the queues) and reads them back (for `flowgate dlq --error`).

use serde::{Deserialize, Serialize};

const PERMANENT: &str = "permanent failure: ";
const EXHAUSTED: &str = "gave up after ";
const REDRIVEN: &str = "delivered ";
const POISON: &str = "poison message ";
const DISPATCH: &str = "dispatch failed";

/// A permanent error: retrying the same message would fail the same way.
pub fn permanent(error: &str) -> String {
    format!("{PERMANENT}{error}")
}

/// The last allowed delivery failed too.
pub fn exhausted(deliveries: u32, error: &str) -> String {
    format!("{EXHAUSTED}{deliveries} deliveries: {error}")
}

/// The queue moved a message that was delivered `count` times with no verdict.
pub fn redriven(count: i64) -> String {
    format!(
        "{REDRIVEN}{count} times (the maximum) without being handled; the consumer may have \
         crashed while handling it"
    )
}

/// The instance exists, and its hand-off to the target failed permanently (`deliveries` is
/// `None`) or on the last allowed delivery.
pub fn dispatch(deliveries: Option<u32>, error: &str) -> String {
    match deliveries {
        None => format!("{DISPATCH} permanently: {error}"),
        Some(n) => format!("{DISPATCH} on each of {n} deliveries: {error}"),
    }
}

/// A body that is not a Flowgate request message.
pub fn poison(message_id: &str, why: &str) -> String {
    format!("{POISON}{message_id}: {why}")
}

/// Why a letter was dead-lettered, in broad terms (`--error` accepts these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A permanent error: retrying the same message would fail the same way.
    Permanent,
    /// Retryable errors, until the maximum receive count ran out.
    Exhausted,
    /// The body is not a Flowgate request message.
    Poison,
    /// The instance exists; handing it to its target failed (a replay re-drives only the
    /// hand-off).
    Dispatch,
    /// The reason does not say.
    Unknown,
}

impl FailureKind {
    /// The name `--error` matches.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::Exhausted => "exhausted",
            Self::Poison => "poison",
            Self::Dispatch => "dispatch",
            Self::Unknown => "unknown",
        }
    }

    /// The kind of a letter's `reason`, given whether its body parses.
    pub fn of(reason: Option<&str>, parses: bool) -> Self {
        match reason {
            _ if !parses => Self::Poison,
            // A queue's own redrive gives no reason: the receive count ran out.
            None => Self::Exhausted,
            Some(r) if r.starts_with(PERMANENT) => Self::Permanent,
            Some(r) if r.starts_with(EXHAUSTED) || r.starts_with(REDRIVEN) => Self::Exhausted,
            Some(r) if r.starts_with(POISON) => Self::Poison,
            Some(r) if r.starts_with(DISPATCH) => Self::Dispatch,
            Some(_) => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_reason_reads_back_as_its_kind() {
        let of = |r: String| FailureKind::of(Some(&r), true);
        assert_eq!(of(permanent("boom")), FailureKind::Permanent);
        assert_eq!(of(exhausted(5, "timeout")), FailureKind::Exhausted);
        assert_eq!(of(redriven(5)), FailureKind::Exhausted);
        assert_eq!(of(poison("m-1", "not JSON")), FailureKind::Poison);
        assert_eq!(of(dispatch(None, "HTTP 400")), FailureKind::Dispatch);
        assert_eq!(of(dispatch(Some(5), "HTTP 503")), FailureKind::Dispatch);
        assert_eq!(of("something else".into()), FailureKind::Unknown);
        assert_eq!(FailureKind::of(None, true), FailureKind::Exhausted);
        assert_eq!(FailureKind::of(None, false), FailureKind::Poison);
    }
}
