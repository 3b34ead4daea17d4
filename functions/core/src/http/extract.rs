//! Request extractors: the tenant, JSON bodies with problem+json rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::api_error::{ApiError, InvalidParam};
use crate::model::DEFAULT_TENANT;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated tenant, put in the request extensions by the host (for example from a
/// Lambda authorizer context). Absent means no auth is configured: tenant `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub String);

/// Extracts the request's tenant.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Tenant(
            parts
                .extensions
                .get::<TenantId>()
                .map(|t| t.0.clone())
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        ))
    }
}

/// A JSON body whose failures are problem+json: 415, 413, malformed (400) or invalid (400).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
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
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be application/json, not {:?}",
                content_type
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed = T::deserialize(&mut de).and_then(|value| de.end().map(|()| value));
        match parsed {
            Ok(value) => Ok(JsonBody(value)),
            Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::MalformedJson(e.to_string())),
            Err(e) => Err(ApiError::Invalid {
                detail: e.to_string(),
                errors: vec![InvalidParam::new("/", e.to_string())],
            }),
        }
    }
}
