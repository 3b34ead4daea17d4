//! Port errors, classified as retryable or permanent.

use crate::model::RequestRecord;

/// A boxed error source, kept so the chain reaches the logs intact.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether retrying the same call may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling, timeouts, unavailability: retry (503 at the API, redelivery in the consumer).
    Retryable,
    /// Retrying cannot help (500 at the API, dead letter in the consumer).
    Permanent,
}

/// A failure of a backend (store or queue) call.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed ({kind:?})")]
pub struct BackendError {
    /// The port operation that failed, such as `store.create_request`.
    pub op: &'static str,
    /// Retryable or permanent.
    pub kind: ErrorKind,
    /// The backend's own error.
    #[source]
    pub source: BoxError,
}

impl BackendError {
    /// The same failure, for another call that shared it (one transaction of many writes):
    /// its cause kept as text.
    pub fn echo(&self) -> Self {
        Self {
            op: self.op,
            kind: self.kind,
            source: self.chain().into(),
        }
    }

    /// A retryable failure of `op`.
    pub fn retryable(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            op,
            kind: ErrorKind::Retryable,
            source: source.into(),
        }
    }

    /// A permanent failure of `op`.
    pub fn permanent(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            op,
            kind: ErrorKind::Permanent,
            source: source.into(),
        }
    }

    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The full `op: cause: cause...` chain, for history entries and logs.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

/// Renders an error and its sources as `a: b: c`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// A failure of a [`crate::ports::Store`] call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional create lost: the record already exists. Carries the winner's record, so
    /// the loser of a race learns it in the same round trip.
    #[error("request {} already exists", existing.request_id)]
    AlreadyExists {
        /// The record that was there first.
        existing: Box<RequestRecord>,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl StoreError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_retryable())
    }
}

/// One field that failed validation: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvalidParam {
    /// JSON pointer (into the body), query parameter or header name.
    pub pointer: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidParam {
    /// A failed field.
    pub fn new(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }
}

/// Why a use case failed, in domain terms. Hosts decide what each means to their callers
/// (the HTTP layer maps it to problem+json, the CLI to an exit code).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not acceptable.
    #[error("invalid request: {detail}")]
    Invalid {
        /// Summary.
        detail: String,
        /// Each failing field.
        errors: Vec<InvalidParam>,
    },
    /// Start params fail the workflow's JSON Schema.
    #[error("params do not match the workflow's schema")]
    ParamsInvalid {
        /// Each failing path.
        errors: Vec<InvalidParam>,
    },
    /// No such workflow (for this tenant).
    #[error("workflow {0} not found")]
    WorkflowNotFound(String),
    /// The workflow does not accept starts.
    #[error("workflow {0} is offline")]
    WorkflowOffline(String),
    /// No such request (for this tenant).
    #[error("request {0} not found")]
    RequestNotFound(String),
    /// No such instance (for this tenant), or not created yet.
    #[error("instance {0} not found")]
    InstanceNotFound(String),
    /// No such schedule (for this tenant and workflow).
    #[error("schedule {0} not found")]
    ScheduleNotFound(String),
    /// No such backfill (for this tenant).
    #[error("backfill {0} not found")]
    BackfillNotFound(String),
    /// This host does not keep this kind of resource: its backend has no port for it yet.
    #[error("{0} are not kept by this host yet")]
    NotOnThisHost(&'static str),
    /// The resource is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The idempotency key was used before with a different payload.
    #[error("idempotency key reused with a different payload (request {request_id})")]
    KeyReused {
        /// The request the key belongs to.
        request_id: String,
    },
    /// A backfill's idempotency key was used before with a different payload.
    #[error("idempotency key reused with a different backfill (backfill {backfill_id})")]
    BackfillKeyReused {
        /// The backfill the key belongs to.
        backfill_id: String,
    },
    /// An archive could not be written; nothing of the failed batch was removed.
    #[error("cannot write the archive")]
    Sink(#[source] std::io::Error),
    /// A backend failed, retryably or permanently.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<InvalidParam> for Error {
    fn from(p: InvalidParam) -> Self {
        Self::Invalid {
            detail: format!("{} {}", p.pointer, p.reason),
            errors: vec![p],
        }
    }
}

impl Error {
    /// A single-field validation error.
    pub fn invalid(pointer: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Invalid {
            detail: format!("{pointer} {reason}"),
            errors: vec![InvalidParam::new(pointer, reason)],
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_retryable())
    }
}
