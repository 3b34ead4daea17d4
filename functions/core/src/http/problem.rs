//! RFC 9457 `application/problem+json` responses: the one table that maps every failure an
//! HTTP caller can see (a domain [`Error`], or a transport rejection) to a status and a
//! stable `type`. Failures are logged by [`log_failures`], not here.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::{error, warn};

use crate::auth::Denied;
use crate::error::Error;

/// Prefix of every problem `type` URI; the suffix names the error kind.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:flowgate:problem:";

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A failure as an HTTP caller sees it: a use case's error, or a rejection of the request
/// before any use case ran.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A use case failed.
    #[error(transparent)]
    Domain(#[from] Error),
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The content type is not JSON.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit.
    #[error("body over {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request target is over the limit.
    #[error("the request target is {len} bytes, over the limit of {limit}")]
    UriTooLong {
        /// Its length.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's headers are over a limit.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// No such route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The caller is not let through: no or bad credentials, a missing scope, or over its
    /// rate limit.
    #[error(transparent)]
    Denied(#[from] crate::auth::Denied),
}

impl From<crate::BackendError> for HttpError {
    fn from(e: crate::BackendError) -> Self {
        Self::Domain(e.into())
    }
}

impl HttpError {
    /// The HTTP status, the stable kind (suffix of the problem type) and the title.
    pub fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed-json", "Malformed JSON body"),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge { .. } => {
                (S::PAYLOAD_TOO_LARGE, "payload-too-large", "Body too large")
            }
            Self::UriTooLong { .. } => (S::URI_TOO_LONG, "uri-too-long", "URI too long"),
            Self::HeadersTooLarge(_) => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header-fields-too-large",
                "Request header fields too large",
            ),
            Self::RouteNotFound(_) => (S::NOT_FOUND, "route-not-found", "No such route"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Domain(e) => classify_domain(e),
            Self::Denied(Denied::Unauthenticated(_)) => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Self::Denied(Denied::Forbidden(_)) => (S::FORBIDDEN, "forbidden", "Not allowed"),
            Self::Denied(Denied::Unavailable(_)) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service temporarily unavailable",
            ),
            Self::Denied(Denied::RateLimited { .. }) => {
                (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            }
        }
    }

    /// What the client is told: never a backend's internals.
    fn detail(&self) -> String {
        match self {
            Self::Domain(Error::Backend(e)) if e.is_retryable() => format!(
                "A backend is unavailable. Retry after {RETRY_AFTER_SECS}s with the same \
                 Idempotency-Key; nothing was lost."
            ),
            Self::Domain(Error::Backend(_)) => {
                "An internal error occurred; it has been logged.".to_owned()
            }
            Self::Domain(Error::Sink(_)) => "The archive could not be written.".to_owned(),
            Self::Denied(Denied::Unavailable(_)) => {
                format!("Credentials cannot be checked right now. Retry after {RETRY_AFTER_SECS}s.")
            }
            other => other.to_string(),
        }
    }

    /// The whole cause, for the log only.
    pub(super) fn chain(&self) -> String {
        crate::error::error_chain(self)
    }
}

fn classify_domain(e: &Error) -> (StatusCode, &'static str, &'static str) {
    use StatusCode as S;
    match e {
        Error::Invalid { .. } => (S::BAD_REQUEST, "invalid-request", "Invalid request"),
        Error::ParamsInvalid { .. } => (
            S::BAD_REQUEST,
            "params-invalid",
            "Params do not match the workflow's schema",
        ),
        Error::WorkflowNotFound(_) => (S::NOT_FOUND, "workflow-not-found", "Workflow not found"),
        Error::WorkflowOffline(_) => (S::CONFLICT, "workflow-offline", "Workflow is offline"),
        Error::RequestNotFound(_) => (S::NOT_FOUND, "request-not-found", "Request not found"),
        Error::InstanceNotFound(_) => (S::NOT_FOUND, "instance-not-found", "Instance not found"),
        Error::ScheduleNotFound(_) => (S::NOT_FOUND, "schedule-not-found", "Schedule not found"),
        Error::BackfillNotFound(_) => (S::NOT_FOUND, "backfill-not-found", "Backfill not found"),
        Error::Conflict(_) => (S::CONFLICT, "conflict", "Not in a state that allows this"),
        Error::NotOnThisHost(_) => (
            S::NOT_IMPLEMENTED,
            "not-on-this-host",
            "Not available on this host",
        ),
        Error::KeyReused { .. } | Error::BackfillKeyReused { .. } => (
            S::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused with a different payload",
        ),
        Error::Backend(b) if b.is_retryable() => (
            S::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service temporarily unavailable",
        ),
        Error::Backend(_) | Error::Sink(_) => {
            (S::INTERNAL_SERVER_ERROR, "internal", "Internal error")
        }
    }
}

/// Marks `response` as a failure: its cause for [`log_failures`], and `Retry-After` on a 503.
/// Every failed answer goes through here, problem+json or the DolphinScheduler envelope.
pub(super) fn failed(mut response: Response, cause: String) -> Response {
    response.extensions_mut().insert(Failure(cause));
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// The cause of a failed response, handed from the response to [`log_failures`].
#[derive(Debug, Clone)]
struct Failure(String);

impl HttpError {
    /// Its status and its problem document (RFC 9457).
    pub fn problem(&self) -> (StatusCode, Value) {
        let (status, kind, title) = self.classify();
        let mut body = json!({
            "type": format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        match self {
            Self::Domain(Error::Invalid { errors, .. } | Error::ParamsInvalid { errors }) => {
                body["errors"] = serde_json::to_value(errors).unwrap_or(Value::Null);
            }
            Self::Domain(Error::KeyReused { request_id }) => body["request_id"] = json!(request_id),
            Self::Domain(Error::BackfillKeyReused { backfill_id }) => {
                body["backfill_id"] = json!(backfill_id)
            }
            _ => {}
        }
        (status, body)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, body) = self.problem();
        let mut response = failed((status, axum::Json(body)).into_response(), self.chain());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::Denied(Denied::RateLimited { retry_after, .. }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::Denied(Denied::Unauthenticated(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"flowgate\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// The one place failed requests are logged: a 5xx with its whole cause (which its body
/// never carries), a 4xx at debug.
pub async fn log_failures(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    if let Some(Failure(chain)) = response.extensions().get::<Failure>() {
        let status = response.status().as_u16();
        if response.status().is_server_error() {
            error!(%method, %path, status, error = %chain, "request failed");
        } else {
            tracing::debug!(%method, %path, status, error = %chain, "request refused");
        }
    } else if response.status().is_server_error() {
        warn!(%method, %path, status = response.status().as_u16(), "request failed");
    }
    response
}

/// A handler that panicked: a 500 problem+json (its message goes to the log, never the body).
pub fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    HttpError::from(crate::BackendError::permanent(
        "http.handler",
        format!("the handler panicked: {message}"),
    ))
    .into_response()
}
