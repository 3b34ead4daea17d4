//! The errors a client can get from the use cases, one variant per problem type.

use crate::error::BackendError;

/// One field that failed validation: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvalidParam {
    /// JSON pointer (into the body) or header name.
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

/// A use-case failure, as the client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body or a header is not acceptable.
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
    /// The content type is not JSON.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit.
    #[error("body over {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// No such workflow.
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
    /// No such route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The idempotency key was used before with a different payload.
    #[error("idempotency key reused with a different payload (request {request_id})")]
    KeyReused {
        /// The request the key belongs to.
        request_id: String,
    },
    /// A backend is unavailable; retry after a while (with the same idempotency key).
    #[error("service unavailable")]
    Unavailable(#[source] BackendError),
    /// A backend failed permanently.
    #[error("internal error")]
    Internal(#[source] BackendError),
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}
