//! RFC 9457 `application/problem+json` responses, one stable `type` per error kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::error;

use crate::api_error::ApiError;

/// Prefix of every problem `type` URI; the suffix names the error kind.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:flowgate:problem:";

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    /// The HTTP status, the stable kind (suffix of the problem type) and the title.
    pub fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed-json", "Malformed JSON body"),
            Self::Invalid { .. } => (S::BAD_REQUEST, "invalid-request", "Invalid request"),
            Self::ParamsInvalid { .. } => (
                S::BAD_REQUEST,
                "params-invalid",
                "Params do not match the workflow's schema",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge { .. } => {
                (S::PAYLOAD_TOO_LARGE, "payload-too-large", "Body too large")
            }
            Self::WorkflowNotFound(_) => (S::NOT_FOUND, "workflow-not-found", "Workflow not found"),
            Self::WorkflowOffline(_) => (S::CONFLICT, "workflow-offline", "Workflow is offline"),
            Self::RequestNotFound(_) => (S::NOT_FOUND, "request-not-found", "Request not found"),
            Self::InstanceNotFound(_) => (S::NOT_FOUND, "instance-not-found", "Instance not found"),
            Self::RouteNotFound(_) => (S::NOT_FOUND, "route-not-found", "No such route"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::KeyReused { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused with a different payload",
            ),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service temporarily unavailable",
            ),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.classify();
        let detail = match &self {
            Self::Unavailable(e) | Self::Internal(e) => {
                // The chain goes to the log only: 5xx bodies never carry internals.
                error!(error = %e.chain(), status = status.as_u16(), "request failed");
                match self {
                    Self::Unavailable(_) => format!(
                        "A backend is unavailable. Retry after {RETRY_AFTER_SECS}s with the same Idempotency-Key; nothing was lost."
                    ),
                    _ => "An internal error occurred; it has been logged.".to_owned(),
                }
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        match &self {
            Self::Invalid { errors, .. } | Self::ParamsInvalid { errors } => {
                body["errors"] = serde_json::to_value(errors).unwrap_or(Value::Null);
            }
            Self::KeyReused { request_id } => body["request_id"] = json!(request_id),
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
