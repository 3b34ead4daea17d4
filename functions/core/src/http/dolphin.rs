//! The DolphinScheduler-compatible door: `POST /dolphinscheduler/projects/{projectCode}/
//! executors/start-process-instance` (3.1/3.2) and `.../start-workflow-instance` (3.3).
//!
//! Parameters come as a query string or a form, as DolphinScheduler's UI sends them. The
//! answer is DolphinScheduler's envelope `{code, msg, data, success, failed}`: code 0 with
//! the request ids in `data`, or one of its own codes. As in DolphinScheduler, a business
//! failure (unknown or offline definition, a start refused) is an HTTP 200; a malformed
//! call is a 400, an unavailable store a 503 with `Retry-After`. Authentication (the
//! `token` header), scopes and rate limits are the API's own, and answer as it does.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::extract::{Segment, Tenant, ToStart};
use super::problem::{HttpError, failed};
use crate::auth::{Caller, Denied, Scope};
use crate::dolphin::{
    DEFINITION_NOT_EXIST, DEFINITION_NOT_RELEASED, DsStart, MAX_QUERY_BYTES, PARAMS_NOT_VALID,
    START_ERROR, SUCCESS, max_query_chars,
};
use crate::error::Error;
use crate::trace::TraceContext;
use crate::usecases::Flowgate;
use crate::usecases::dolphin::DsStarted;
use crate::validation;

/// DolphinScheduler's answer envelope.
#[derive(Debug, Serialize)]
struct Envelope {
    code: i64,
    msg: String,
    data: Value,
    success: bool,
    failed: bool,
}

/// Both start routes: the 3.3 names are read on either path, as are the 3.1 ones. A start
/// needs the `start` scope; a complement, which is a backfill, also needs `admin`, as
/// `POST /v1/workflows/{code}/backfills` does.
pub async fn start(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    (Extension(caller), trace): (Extension<Caller>, Option<Extension<TraceContext>>),
    Segment(project): Segment,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return too_large(rejection),
    };
    if uri.query().map_or(0, str::len) > MAX_QUERY_BYTES {
        let msg = format!(
            "the query string is over {MAX_QUERY_BYTES} bytes: send the parameters as a form"
        );
        return envelope(StatusCode::URI_TOO_LONG, PARAMS_NOT_VALID, msg, Value::Null);
    }
    let (project, call, key) = match read(&project, &uri, &headers, &body) {
        Ok(read) => read,
        Err(e) => return failure(e, None),
    };
    if call.complement.is_some() && !caller.may(Scope::Admin) {
        let denied = Denied::Forbidden(
            "a complement is a backfill: it needs the `admin` scope, which the credentials \
             do not carry"
                .into(),
        );
        return HttpError::from(denied).into_response();
    }
    let ds_code = call.definition_code;
    let trace = trace.map(|Extension(t)| t);
    match app.start_dolphin(&tenant, project, call, key, trace).await {
        Ok(started) => success(started),
        Err(e) => failure(e, Some(ds_code)),
    }
}

/// The project code, the call, and an `Idempotency-Key` if one was sent.
fn read(
    project: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(i64, DsStart, Option<String>), Error> {
    let project = project_code(project)?;
    let call = DsStart::parse(parameters(uri, headers, body)?)?;
    let key = validation::single_header(headers, "idempotency-key")?
        .map(validation::idempotency_key)
        .transpose()?;
    Ok((project, call, key))
}

fn project_code(text: &str) -> Result<i64, Error> {
    match text.parse::<i64>() {
        Ok(code) if code > 0 => Ok(code),
        _ => Err(Error::invalid("projectCode", "must be a positive integer")),
    }
}

/// The query's parameters, then the form's, as pairs (a repeated name is refused later).
fn parameters(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, Error> {
    let malformed = |e: serde_urlencoded::de::Error| Error::invalid("", format!("{e}"));
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).map_err(malformed)?;
    for (name, value) in &pairs {
        let limit = max_query_chars(name);
        if value.chars().count() > limit {
            return Err(Error::invalid(
                name,
                format!("is over {limit} characters in a query string: send it in a form"),
            ));
        }
    }
    if body.is_empty() {
        return Ok(pairs);
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(Error::invalid(
            "Content-Type",
            "send the parameters as a query string or as application/x-www-form-urlencoded",
        ));
    }
    pairs.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(malformed)?);
    Ok(pairs)
}

/// A body that could not be read: over the size limit, as a rule.
fn too_large(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let msg = format!("request body refused: {}", rejection.body_text());
    envelope(status, PARAMS_NOT_VALID, msg, Value::Null)
}

fn success(started: DsStarted) -> Response {
    let mut response = envelope(
        StatusCode::OK,
        SUCCESS,
        "success".into(),
        json!(started.request_ids),
    );
    if let Some(id) = started.backfill_id
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/backfills/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// A failure as DolphinScheduler reports it, with its cause kept for the failure log.
fn failure(e: Error, ds_code: Option<i64>) -> Response {
    let code = ds_code.map_or_else(String::new, |c| c.to_string());
    let (status, ds, msg) = match &e {
        Error::Invalid { errors, detail } => {
            let (name, reason) = errors.first().map_or(("", detail.as_str()), |p| {
                (p.pointer.as_str(), p.reason.as_str())
            });
            let msg = format!("request parameter {name} is not valid: {reason}");
            (StatusCode::BAD_REQUEST, PARAMS_NOT_VALID, msg)
        }
        Error::WorkflowNotFound(_) => (
            StatusCode::OK,
            DEFINITION_NOT_EXIST,
            format!("process definition {code} does not exist"),
        ),
        Error::WorkflowOffline(_) => (
            StatusCode::OK,
            DEFINITION_NOT_RELEASED,
            format!("process definition {code} is not online"),
        ),
        Error::Backend(b) if b.is_retryable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            START_ERROR,
            "start process instance error: the store is unavailable, retry".into(),
        ),
        Error::Backend(_) | Error::Sink(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            START_ERROR,
            "start process instance error: internal error".into(),
        ),
        other => (
            StatusCode::OK,
            START_ERROR,
            format!("start process instance error: {other}"),
        ),
    };
    failed(
        envelope(status, ds, msg, Value::Null),
        HttpError::from(e).chain(),
    )
}

fn envelope(status: StatusCode, code: i64, msg: String, data: Value) -> Response {
    let ok = code == SUCCESS;
    let body = Envelope {
        code,
        msg,
        data,
        success: ok,
        failed: !ok,
    };
    (status, axum::Json(body)).into_response()
}
