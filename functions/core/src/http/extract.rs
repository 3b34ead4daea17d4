//! Request extractors whose every rejection is problem+json: the tenant, a path segment, a
//! query string (repeated parameters refused), and JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::HttpError;
use std::marker::PhantomData;

use crate::auth::{Caller, Denied, Scope};
use crate::error::{Error, InvalidParam};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The scope a route demands of its caller.
pub trait Demands: Send + Sync {
    /// The scope.
    const SCOPE: Scope;
}

/// Routes that start instances or read requests, instances and workflows.
#[derive(Debug)]
pub struct ToStart;
impl Demands for ToStart {
    const SCOPE: Scope = Scope::Start;
}

/// Dead-letter routes.
#[derive(Debug)]
pub struct ToHandleDeadLetters;
impl Demands for ToHandleDeadLetters {
    const SCOPE: Scope = Scope::Dlq;
}

/// Routes that change definitions.
#[derive(Debug)]
pub struct ToAdminister;
impl Demands for ToAdminister {
    const SCOPE: Scope = Scope::Admin;
}

/// The operator's routes that show every tenant's numbers (`/metrics`).
#[derive(Debug)]
pub struct ToReadMetrics;
impl Demands for ToReadMetrics {
    const SCOPE: Scope = Scope::Metrics;
}

/// Routes a target calls to report on its instances.
#[derive(Debug)]
pub struct ToReport;
impl Demands for ToReport {
    const SCOPE: Scope = Scope::Report;
}

/// Who reports on an instance, and for which tenant: the instance's own callback token, or
/// a caller holding the `report` scope.
#[derive(Debug)]
pub struct Reporter {
    /// The tenant.
    pub tenant: String,
    /// Who it is, for the history.
    pub by: &'static str,
    /// The instance the path names.
    pub instance_id: String,
}

impl FromRequestParts<crate::Flowgate> for Reporter {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &crate::Flowgate,
    ) -> Result<Self, HttpError> {
        let Segment(instance_id) = Segment::from_request_parts(parts, app).await?;
        let token = super::guard::presented(&parts.headers).map_err(HttpError::from)?;
        if let Some(token) = token.filter(|t| crate::callback::Callbacks::looks_like(t)) {
            let tenant = app.callback_tenant(&token, &instance_id).ok_or_else(|| {
                HttpError::from(Denied::Unauthenticated(
                    "this callback token is not the token of this instance".into(),
                ))
            })?;
            return Ok(Reporter {
                tenant,
                by: "its callback",
                instance_id,
            });
        }
        let Tenant(tenant, _) = Tenant::<ToReport>::from_request_parts(parts, app).await?;
        Ok(Reporter {
            tenant,
            by: "a report token",
            instance_id,
        })
    }
}

/// The request's tenant, once its caller is known to hold the scope `D` demands. A request
/// the host put no [`Caller`] on is refused (401), one without the scope too (403): nothing
/// falls back to a shared tenant.
#[derive(Debug)]
pub struct Tenant<D>(pub String, pub PhantomData<D>);

impl<S: Send + Sync, D: Demands> FromRequestParts<S> for Tenant<D> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let caller = caller(parts)?;
        if !caller.may(D::SCOPE) {
            return Err(Denied::Forbidden(format!(
                "this needs the `{}` scope, which the credentials do not carry",
                D::SCOPE
            ))
            .into());
        }
        Ok(Tenant(caller.tenant.clone(), PhantomData))
    }
}

/// The caller the host put on the request, or why there is none.
pub fn caller(parts: &Parts) -> Result<&Caller, HttpError> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller);
    }
    Err(match parts.extensions.get::<super::guard::Denial>() {
        Some(denial) => denial.0.clone().into(),
        None => Denied::Unauthenticated("this request carries no credentials".into()).into(),
    })
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

/// The route's path parameters, as a tuple.
#[derive(Debug, Clone)]
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(segments)| Segments(segments))
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

/// What a body type checks in its raw bytes, before it is parsed.
pub trait RawChecks {
    /// The largest body of this kind read.
    const LIMIT: usize = MAX_BODY_BYTES;

    /// Refuses what parsing would silently lose. Nothing, by default.
    fn check_raw(_json: &[u8]) -> Result<(), Error> {
        Ok(())
    }

    /// Refuses an object that gives a key twice (a parse would keep one value), anywhere in
    /// the body by default.
    fn check_keys(json: &[u8]) -> Result<(), Error> {
        match crate::validation::repeated_key(json) {
            Some((object, key)) => Err(Error::invalid(
                &object,
                format!(
                    "gives the key {key:?} more than once; a JSON object's keys must be distinct"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Refuses an integer that a 64-bit number cannot hold: start params are kept as given, and
/// it would be read as a float and lose digits.
fn no_oversized_integer(json: &[u8]) -> Result<(), Error> {
    match crate::validation::oversized_integer(json) {
        Some(literal) => Err(Error::invalid(
            "/params",
            format!("the integer {literal} does not fit in 64 bits; send it as a string"),
        )),
        None => Ok(()),
    }
}

impl RawChecks for crate::validation::StartBody {
    fn check_raw(json: &[u8]) -> Result<(), Error> {
        no_oversized_integer(json)
    }
}

impl RawChecks for crate::validation::BatchStart {
    fn check_raw(json: &[u8]) -> Result<(), Error> {
        no_oversized_integer(json)
    }
}

/// The largest batch body read: room for [`crate::validation::MAX_BATCH_STARTS`] starts of
/// 8 KiB each.
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;

impl RawChecks for crate::validation::BatchBody {
    const LIMIT: usize = MAX_BATCH_BODY_BYTES;

    /// Each start's keys are checked when the start is read, so that a repeat refuses only
    /// that start; the envelope's own (`starts` twice) are refused by its parse.
    fn check_keys(_json: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

impl RawChecks for crate::validation::WorkflowBody {}
impl RawChecks for crate::usecases::dlq::ReplayParams {}
impl RawChecks for crate::usecases::schedules::ScheduleBody {}
impl RawChecks for crate::usecases::backfills::BackfillBody {}
impl RawChecks for crate::runs::StatusReport {}

/// Reads a JSON text as a `T`: its keys distinct, its own raw checks passed, then parsed
/// strictly. The one reading of every JSON body, and of each start of a batch.
pub fn read_json<T: DeserializeOwned + RawChecks>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.len() > T::LIMIT {
        return Err(HttpError::PayloadTooLarge { limit: T::LIMIT });
    }
    T::check_keys(bytes)?;
    T::check_raw(bytes)?;
    an_object(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = T::deserialize(&mut de).and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(e) if e.is_syntax() || e.is_eof() => Err(HttpError::MalformedJson(e.to_string())),
        Err(e) => Err(Error::Invalid {
            detail: e.to_string(),
            errors: vec![InvalidParam::new("/", e.to_string())],
        }
        .into()),
    }
}

/// Every body Flowgate reads is a JSON object: a derived parse would also take an array as
/// the fields in order (`[[...]]` as `{"starts": [...]}`), so anything else is refused here.
/// A text that is not JSON at all stays malformed.
fn an_object(bytes: &[u8]) -> Result<(), HttpError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, None | Some(b'{')) {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed =
        <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de).and_then(|_| de.end());
    match parsed {
        Err(e) => Err(HttpError::MalformedJson(e.to_string())),
        Ok(()) => Err(Error::invalid("/", "must be a JSON object").into()),
    }
}

/// A JSON body whose failures are problem+json: 415, 413, malformed (400) or invalid (400).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + RawChecks> FromRequest<S> for JsonBody<T> {
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
                HttpError::PayloadTooLarge { limit: T::LIMIT }
            } else {
                HttpError::MalformedJson(rejection.body_text())
            }
        })?;
        read_json(&bytes).map(JsonBody)
    }
}
