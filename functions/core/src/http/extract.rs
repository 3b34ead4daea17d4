//! Request extractors whose every rejection is problem+json: the tenant, a path segment, a
//! query string (repeated parameters refused), and JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::HttpError;
use crate::error::{Error, InvalidParam};
use crate::model::DEFAULT_TENANT;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated tenant, put in the request extensions by the host (for example from a
/// gateway's authorizer context). Absent means no auth is configured: tenant `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub String);

/// Extracts the request's tenant.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        Ok(Tenant(
            parts
                .extensions
                .get::<TenantId>()
                .map(|t| t.0.clone())
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        ))
    }
}

/// The route's one path parameter, as text.
#[derive(Debug, Clone)]
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(segment)| Segment(segment))
            .map_err(|rejection| Error::invalid("path", rejection.body_text()).into())
    }
}

/// A query string, deserialized into `T`. A parameter given twice is refused rather than
/// one of its values silently chosen.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| Error::invalid("query", e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &pairs {
            if !seen.insert(name.as_str()) {
                return Err(Error::invalid(name, "is given more than once").into());
            }
        }
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| Error::invalid("query", e.to_string()).into())
    }
}

/// A JSON body whose failures are problem+json: 415, 413, malformed (400) or invalid (400).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(HttpError::UnsupportedMediaType(format!(
                "Content-Type must be application/json, not {content_type:?}"
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                HttpError::MalformedJson(rejection.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed = T::deserialize(&mut de).and_then(|value| de.end().map(|()| value));
        match parsed {
            Ok(value) => Ok(JsonBody(value)),
            Err(e) if e.is_syntax() || e.is_eof() => Err(HttpError::MalformedJson(e.to_string())),
            Err(e) => Err(Error::Invalid {
                detail: e.to_string(),
                errors: vec![InvalidParam::new("/", e.to_string())],
            }
            .into()),
        }
    }
}
