//! The DolphinScheduler-compatible door: `POST /dolphinscheduler/projects/{projectCode}/
//! executors/start-process-instance` (3.1/3.2) and `.../start-workflow-instance` (3.3).
//!
//! Parameters come as a query string or a form, as DolphinScheduler's UI sends them (any
//! other body is ignored, as DolphinScheduler's `@RequestParam`s ignore it). The answer is
//! DolphinScheduler's envelope `{code, msg, data, success, failed}`: code 0 with the request
//! ids in `data`, or one of its own codes. As in DolphinScheduler, every failure is an HTTP
//! 200 with its code, but a missing or bad token (401, as its login interceptor answers).
//! Authentication (the `token` header) and rate limits are the API's own.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::extract::{Segment, Tenant, ToStart};
use super::problem::{HttpError, RETRY_AFTER_SECS, failed};
use crate::auth::Denied;
use crate::dolphin::{
    DEFINITION_NOT_EXIST, DEFINITION_NOT_RELEASED, DsStart, MAX_QUERY_BYTES, NO_PERMISSION,
    PARAMS_NOT_VALID, Refusal, START_ERROR, SUCCESS, max_query_chars,
};
use crate::error::Error;
use crate::trace::TraceContext;
use crate::usecases::Flowgate;
use crate::usecases::dolphin::DsStarted;
use crate::validation;

/// The path every route of the door begins with.
pub const PREFIX: &str = "/dolphinscheduler/";

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
/// and a complement both need the `start` scope, as in DolphinScheduler.
pub async fn start(
    State(app): State<Flowgate>,
    tenant: Result<Tenant<ToStart>, HttpError>,
    trace: Option<axum::Extension<TraceContext>>,
    Segment(project): Segment,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = match tenant {
        Ok(Tenant(tenant, _)) => tenant,
        Err(refused) => return refusal(refused),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let msg = format!("request body refused: {}", rejection.body_text());
            return envelope(PARAMS_NOT_VALID, msg, Value::Null, None);
        }
    };
    let (project, call, key) = match read(&project, &uri, &headers, &body) {
        Ok(read) => read,
        Err(refused) => {
            return failed(
                envelope(refused.code, refused.msg.clone(), Value::Null, None),
                refused.msg,
            );
        }
    };
    let ds_code = call.definition_code;
    let trace = trace.map(|axum::Extension(t)| t);
    match app.start_dolphin(&tenant, project, call, key, trace).await {
        Ok(started) => success(started),
        Err(e) => failure(e, ds_code),
    }
}

/// The project code, the call, and an `Idempotency-Key` if one was sent.
fn read(
    project: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(i64, DsStart, Option<String>), Refusal> {
    let project = project_code(project)?;
    let call = DsStart::parse(parameters(uri, headers, body)?)?;
    let key = validation::single_header(headers, "idempotency-key")
        .and_then(|k| k.map(validation::idempotency_key).transpose())
        .map_err(|e| Refusal {
            code: PARAMS_NOT_VALID,
            msg: format!("header Idempotency-Key is not valid: {}", plain(&e)),
        })?;
    Ok((project, call, key))
}

fn project_code(text: &str) -> Result<i64, Refusal> {
    match text.parse::<i64>() {
        Ok(code) if code > 0 => Ok(code),
        _ => Err(Refusal {
            code: PARAMS_NOT_VALID,
            msg: "request parameter projectCode is not valid: must be a positive number".into(),
        }),
    }
}

/// The query's parameters, then the form's, as pairs (a repeated name is refused later). A
/// body that is not a form is not read, as DolphinScheduler does not read it.
fn parameters(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, Refusal> {
    let malformed = |e: serde_urlencoded::de::Error| Refusal {
        code: PARAMS_NOT_VALID,
        msg: format!("the parameters are not URL-encoded: {e}"),
    };
    let query = uri.query().unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return Err(Refusal {
            code: PARAMS_NOT_VALID,
            msg: format!(
                "the query string is over {MAX_QUERY_BYTES} bytes: send the parameters as a form"
            ),
        });
    }
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(malformed)?;
    for (name, value) in &pairs {
        let limit = max_query_chars(name);
        if value.chars().count() > limit {
            return Err(Refusal {
                code: PARAMS_NOT_VALID,
                msg: format!(
                    "request parameter {name} is over {limit} characters in a query string: \
                     send it in a form"
                ),
            });
        }
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form && !body.is_empty() {
        pairs.extend(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(malformed)?,
        );
    }
    Ok(pairs)
}

fn success(started: DsStarted) -> Response {
    let msg = match (&started.backfill_id, started.replayed) {
        (None, _) => "success".to_owned(),
        (Some(id), replayed) => format!(
            "success: a complement of {} dates, each started once for this call (backfill \
             {id}){}",
            started.request_ids.len(),
            if replayed {
                "; this call was sent before with its Idempotency-Key, and started nothing more"
            } else {
                ""
            }
        ),
    };
    let location = started.backfill_id.map(|id| format!("/v1/backfills/{id}"));
    envelope(SUCCESS, msg, json!(started.request_ids), location)
}

/// A use case's failure as DolphinScheduler reports it, in its parameters' names, with
/// its cause kept for the failure log.
fn failure(e: Error, ds_code: i64) -> Response {
    let (code, msg) = match &e {
        Error::Invalid { errors, detail } => {
            let (name, reason) = errors
                .first()
                .map_or((String::new(), detail.as_str()), |p| {
                    (ds_name(&p.pointer), p.reason.as_str())
                });
            (
                PARAMS_NOT_VALID,
                format!("request parameter {name} is not valid: {reason}"),
            )
        }
        Error::ParamsInvalid { errors } => (
            START_ERROR,
            format!(
                "start process instance error: startParams do not match the workflow's schema: {}",
                errors
                    .iter()
                    .map(|p| format!("{} {}", ds_name(&p.pointer), p.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Error::WorkflowNotFound(_) => (
            DEFINITION_NOT_EXIST,
            format!("process definition {ds_code} does not exist"),
        ),
        Error::WorkflowOffline(_) => (
            DEFINITION_NOT_RELEASED,
            format!("process definition {ds_code} is not online"),
        ),
        Error::Backend(b) if b.is_retryable() => (
            START_ERROR,
            format!(
                "start process instance error: the store is unavailable; nothing was started, \
                 retry after {RETRY_AFTER_SECS}s"
            ),
        ),
        Error::Backend(_) | Error::Sink(_) => (
            START_ERROR,
            "start process instance error: internal error".into(),
        ),
        other => (
            START_ERROR,
            format!("start process instance error: {other}"),
        ),
    };
    let retry = e.is_retryable();
    let mut response = failed(
        envelope(code, msg, Value::Null, None),
        HttpError::from(e).chain(),
    );
    if retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// A JSON pointer of Flowgate's, as the DolphinScheduler parameter it came from.
fn ds_name(pointer: &str) -> String {
    match pointer {
        "/from" => "complementStartDate".into(),
        "/to" => "complementEndDate".into(),
        "/dates" => "complementScheduleDateList".into(),
        "/" | "/cron" | "/timezone" => "scheduleTime".into(),
        "/max_in_flight" => "expectedParallelismNumber".into(),
        "/priority" => "processInstancePriority".into(),
        "/params" => "startParams".into(),
        p => match p.strip_prefix("/params/") {
            Some(name) => format!("startParams.{name}"),
            None => p.trim_start_matches('/').replace('/', "."),
        },
    }
}

/// An error's message with no JSON pointer in it.
fn plain(e: &Error) -> String {
    match e {
        Error::Invalid { errors, detail } => {
            errors.first().map_or(detail.clone(), |p| p.reason.clone())
        }
        other => other.to_string(),
    }
}

/// A refusal before the door's own code ran (credentials, scope, rate, the request's
/// head), as the door answers it: a missing or bad token as the API does (401), anything
/// else in the envelope.
pub fn refusal(refused: HttpError) -> Response {
    let (code, msg, retry) = match &refused {
        HttpError::Denied(Denied::Unauthenticated(_)) => return refused.into_response(),
        HttpError::Denied(Denied::Forbidden(why)) => {
            (NO_PERMISSION, format!("no permission: {why}"), None)
        }
        HttpError::Denied(Denied::RateLimited { retry_after, .. }) => (
            START_ERROR,
            format!("start process instance error: too many requests; retry after {retry_after}s"),
            Some(*retry_after),
        ),
        HttpError::Denied(Denied::Unavailable(_)) => (
            START_ERROR,
            "start process instance error: credentials cannot be checked right now; retry".into(),
            Some(u64::from(RETRY_AFTER_SECS)),
        ),
        HttpError::Domain(e) if e.is_retryable() => (
            START_ERROR,
            "start process instance error: the store is unavailable; retry".into(),
            Some(u64::from(RETRY_AFTER_SECS)),
        ),
        HttpError::Domain(Error::Backend(_) | Error::Sink(_)) => (
            START_ERROR,
            "start process instance error: internal error".into(),
            None,
        ),
        other => (PARAMS_NOT_VALID, format!("request refused: {other}"), None),
    };
    let mut response = failed(envelope(code, msg, Value::Null, None), refused.chain());
    if let Some(secs) = retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn envelope(code: i64, msg: String, data: Value, location: Option<String>) -> Response {
    let ok = code == SUCCESS;
    let body = Envelope {
        code,
        msg,
        data,
        success: ok,
        failed: !ok,
    };
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Some(location) = location
        && let Ok(v) = HeaderValue::from_str(&location)
    {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
