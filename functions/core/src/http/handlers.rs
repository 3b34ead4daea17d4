//! Route handlers: parse, call one use case, format the result.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{
    JsonBody, QueryParams, Segment, Segments, Tenant, ToAdminister, ToHandleDeadLetters, ToStart,
};
use super::problem::HttpError;
use crate::model::{RequestRecord, RequestStatus};
use crate::ports::Upsert;
use crate::usecases::dlq::{ListParams, ReplayParams, Scope};
use crate::usecases::{FindParams, Flowgate, StartOutcome, StartRequest};
use crate::validation::{self, StartBody, WorkflowBody};

type Answer = Result<Response, HttpError>;

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
pub async fn healthz(State(app): State<Flowgate>) -> Answer {
    app.health().await?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

/// `GET /openapi.json`: the contract.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        super::OPENAPI,
    )
        .into_response()
}

/// `PUT /v1/workflows/{code}`.
pub async fn put_workflow(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segment(code): Segment,
    JsonBody(body): JsonBody<WorkflowBody>,
) -> Answer {
    let (upsert, workflow) = app.put_workflow(&tenant, &code, body).await?;
    let status = match upsert {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Updated => StatusCode::OK,
    };
    Ok((status, Json(workflow.shown())).into_response())
}

/// `GET /v1/workflows/{code}`.
pub async fn get_workflow(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(code): Segment,
) -> Answer {
    Ok(Json(app.get_workflow(&tenant, &code).await?.shown()).into_response())
}

/// The body of a start response.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartResponse {
    /// The request's id; `Location` points at it.
    pub request_id: String,
    /// The instance's id, assigned at acceptance.
    pub instance_id: String,
    /// `ACCEPTED`, `CREATED`, `DISPATCHED`, `DEAD` or `ARCHIVED`.
    pub status: RequestStatus,
    /// The workflow code.
    pub workflow: String,
    /// The hand-off, when the instance exists but its hand-off was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<crate::model::Dispatch>,
    /// Why it was dead-lettered, with `dispatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `POST /v1/workflows/{code}/instances`.
pub async fn start_instance(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(workflow): Segment,
    trace: Option<axum::Extension<crate::trace::TraceContext>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<StartBody>,
) -> Answer {
    let idempotency_key = validation::single_header(&headers, "idempotency-key")?
        .map(validation::idempotency_key)
        .transpose()?;
    let wait = validation::prefer_wait(
        headers
            .get_all(header::HeaderName::from_static("prefer"))
            .iter()
            .map(|v| v.as_bytes()),
    )?;
    let outcome = app
        .start_instance(StartRequest {
            tenant,
            workflow,
            body,
            idempotency_key,
            wait: wait.map(Duration::from_secs),
            origin: None,
            options: Default::default(),
            trace: trace.map(|axum::Extension(t)| t),
            dry_run: false,
        })
        .await?;
    Ok(start_response(outcome, wait))
}

/// 200 for a replay of a created request, 201 when a wait saw the instance, else 202.
fn start_status(outcome: &StartOutcome, waited: bool) -> StatusCode {
    match (outcome.replayed, outcome.created()) {
        (true, true) => StatusCode::OK,
        (false, true) if waited => StatusCode::CREATED,
        _ => StatusCode::ACCEPTED,
    }
}

/// The answer to a start, by [`start_status`]; with `Location`, `Idempotent-Replayed` and
/// `Preference-Applied` as they apply.
fn start_response(outcome: StartOutcome, wait: Option<u64>) -> Response {
    let status = start_status(&outcome, wait.is_some());
    let dead_hand_off = outcome.dead_hand_off;
    let record = outcome.record;
    let location = format!("/v1/requests/{}", record.request_id);
    let mut response = (
        status,
        Json(StartResponse {
            request_id: record.request_id,
            instance_id: record.instance_id,
            status: record.status,
            workflow: record.spec.workflow,
            dispatch: record.dispatch.filter(|_| dead_hand_off),
            last_error: record.last_error.filter(|_| dead_hand_off),
        }),
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if outcome.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(n) = wait
        && let Ok(v) = HeaderValue::from_str(&format!("wait={n}"))
    {
        h.insert("preference-applied", v);
    }
    response
}

/// One start's answer in a batch: what it would have been answered alone.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResult {
    /// Its status code: 202 (accepted), 200 (a replay of a created request), or its
    /// refusal's (400, 404, 409, 413, 422, 503...).
    pub status: u16,
    /// Its request's id: set when the start was accepted or replayed, and on a 422 (the
    /// request its key already names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Its instance's id, assigned at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Its request's status: `ACCEPTED`, `CREATED`, `DISPATCHED`, `DEAD` or `ARCHIVED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_status: Option<RequestStatus>,
    /// Its key was seen before with the same payload: this is the original request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// Why it was refused (RFC 9457), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<serde_json::Value>,
}

/// The answer to a batch: each start's result, in order, and their counts.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    /// One result per start, in the order given.
    pub results: Vec<BatchResult>,
    /// Starts accepted by this batch.
    pub accepted: usize,
    /// Starts whose key named an earlier request with the same payload.
    pub replayed: usize,
    /// Starts refused.
    pub refused: usize,
}

/// `POST /v1/workflows/{code}/instances/batch`: each start on its own, answered in order
/// once every accepted start is durable; one refused start never refuses another.
pub async fn start_batch(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(workflow): Segment,
    trace: Option<axum::Extension<crate::trace::TraceContext>>,
    JsonBody(body): JsonBody<validation::BatchBody>,
) -> Answer {
    // The path is the batch's own: a bad one refuses the batch, not each start.
    validation::identifier("workflow", &workflow)?;
    let raw = body.starts()?;
    let trace = trace.map(|axum::Extension(t)| t);
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(raw.len());
    let (mut starts, mut places) = (Vec::new(), Vec::new());
    for (at, item) in raw.iter().enumerate() {
        let read = super::extract::read_json::<validation::BatchStart>(item.get().as_bytes())
            .and_then(|start| Ok(start.split()?));
        match read {
            Ok((idempotency_key, body)) => {
                places.push(at);
                results.push(None);
                starts.push(StartRequest {
                    tenant: tenant.clone(),
                    workflow: workflow.clone(),
                    body,
                    idempotency_key,
                    wait: None,
                    origin: None,
                    options: Default::default(),
                    trace: trace.clone(),
                    dry_run: false,
                });
            }
            Err(refused) => results.push(Some(refused_in_batch(at, refused))),
        }
    }
    for (at, outcome) in places.into_iter().zip(app.start_batch(starts).await) {
        results[at] = Some(match outcome {
            Ok(outcome) => started_in_batch(outcome),
            Err(refused) => refused_in_batch(at, refused.into()),
        });
    }
    let results: Vec<BatchResult> = results
        .into_iter()
        .map(|r| r.expect("every start is answered"))
        .collect();
    let count = |f: fn(&BatchResult) -> bool| results.iter().filter(|r| f(r)).count();
    let answer = BatchResponse {
        accepted: count(|r| r.problem.is_none() && !r.replayed),
        replayed: count(|r| r.replayed),
        refused: count(|r| r.problem.is_some()),
        results,
    };
    Ok(Json(answer).into_response())
}

fn started_in_batch(outcome: StartOutcome) -> BatchResult {
    let status = start_status(&outcome, false).as_u16();
    BatchResult {
        status,
        request_id: Some(outcome.record.request_id),
        instance_id: Some(outcome.record.instance_id),
        request_status: Some(outcome.record.status),
        replayed: outcome.replayed,
        problem: None,
    }
}

/// A refused start's result; a server-side failure is logged with its cause, as a refused
/// request is by `log_failures`.
fn refused_in_batch(at: usize, refused: HttpError) -> BatchResult {
    let (status, problem) = refused.problem();
    if status.is_server_error() {
        tracing::error!(start = at, status = status.as_u16(), error = %refused.chain(),
            "a start of a batch failed");
    }
    let request_id = match &refused {
        HttpError::Domain(crate::error::Error::KeyReused { request_id }) => {
            Some(request_id.clone())
        }
        _ => None,
    };
    BatchResult {
        status: status.as_u16(),
        request_id,
        instance_id: None,
        request_status: None,
        replayed: false,
        problem: Some(problem),
    }
}

/// `GET /v1/workflows/{code}/instances?limit=&cursor=`.
pub async fn list_instances(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(workflow): Segment,
    QueryParams(page): QueryParams<crate::usecases::InstanceListParams>,
) -> Answer {
    Ok(Json(app.list_instances(&tenant, &workflow, &page).await?).into_response())
}

/// A request as `GET /v1/requests/{request_id}` shows it.
#[derive(Debug, Serialize)]
struct RequestView<'a> {
    request_id: &'a str,
    instance_id: &'a str,
    workflow: &'a str,
    status: RequestStatus,
    attempts: u32,
    last_error: &'a Option<String>,
    idempotency_key: &'a Option<String>,
    priority: crate::model::Priority,
    schedule_time: Option<chrono::DateTime<chrono::Utc>>,
    logical_date: Option<chrono::DateTime<chrono::Utc>>,
    schedule_id: &'a Option<String>,
    backfill_id: &'a Option<String>,
    params: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    options: &'a std::collections::BTreeMap<String, String>,
    accepted_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    history: &'a [crate::model::HistoryEvent],
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatch: &'a Option<crate::model::Dispatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: &'a Option<crate::runs::Run>,
}

impl<'a> From<&'a RequestRecord> for RequestView<'a> {
    fn from(r: &'a RequestRecord) -> Self {
        Self {
            request_id: &r.request_id,
            instance_id: &r.instance_id,
            workflow: &r.spec.workflow,
            status: r.status,
            attempts: r.attempts,
            last_error: &r.last_error,
            idempotency_key: &r.idempotency_key,
            priority: r.spec.priority,
            schedule_time: r.spec.schedule_time,
            logical_date: r.spec.logical_date,
            schedule_id: &r.spec.schedule_id,
            backfill_id: &r.spec.backfill_id,
            params: &r.spec.params,
            options: &r.spec.options,
            accepted_at: r.accepted_at,
            updated_at: r.updated_at,
            run: &r.run,
            history: &r.history,
            dispatch: &r.dispatch,
        }
    }
}

/// `GET /v1/requests/{request_id}`.
pub async fn get_request(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(request_id): Segment,
) -> Answer {
    let record = app.get_request(&tenant, &request_id).await?;
    Ok(Json(RequestView::from(&record)).into_response())
}

/// `GET /v1/find?q=`: the caller's request that `q` names (its id, its instance's id, or
/// its idempotency key), with what matched.
pub async fn find_request(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    QueryParams(params): QueryParams<FindParams>,
) -> Answer {
    let (matched, record) = app.find_request(&tenant, &params.q).await?;
    let found = json!({"matched": matched, "request": RequestView::from(&record)});
    Ok(Json(found).into_response())
}

/// `GET /v1/instances/{instance_id}`.
pub async fn get_instance(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(instance_id): Segment,
) -> Answer {
    Ok(Json(app.get_instance(&tenant, &instance_id).await?).into_response())
}

/// `POST /v1/instances/{instance_id}/status`: a target reports on its instance.
pub async fn report_status(
    State(app): State<Flowgate>,
    reporter: super::extract::Reporter,
    JsonBody(body): JsonBody<crate::runs::StatusReport>,
) -> Answer {
    let report = body.checked(reporter.by)?;
    let instance = app
        .report_status(&reporter.tenant, &reporter.instance_id, report)
        .await?;
    Ok(Json(instance).into_response())
}

/// `POST /v1/instances/{instance_id}/cancel`.
pub async fn cancel_instance(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segment(instance_id): Segment,
) -> Answer {
    Ok(Json(app.cancel_instance(&tenant, &instance_id).await?).into_response())
}

/// Unknown routes.
pub async fn no_route(uri: Uri) -> HttpError {
    HttpError::RouteNotFound(uri.path().to_owned())
}

/// Known routes with another method.
pub async fn method_not_allowed() -> HttpError {
    HttpError::MethodNotAllowed
}

/// `GET /v1/dlq`: the caller's dead letters, oldest first.
pub async fn list_dlq(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToHandleDeadLetters>,
    QueryParams(params): QueryParams<ListParams>,
) -> Answer {
    let page = app.dlq_list(&Scope::Tenant(tenant), params).await?;
    Ok(Json(page).into_response())
}

/// `POST /v1/dlq/replay`: replays the caller's dead letters that the body selects.
pub async fn replay_dlq(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToHandleDeadLetters>,
    JsonBody(params): JsonBody<ReplayParams>,
) -> Answer {
    let report = app
        .dlq_replay_as(&Scope::Tenant(tenant), params, &|_| {})
        .await?;
    Ok(Json(report).into_response())
}

/// `GET /v1/schedules`: the caller's schedules of every workflow, with their next fires.
pub async fn list_tenant_schedules(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
) -> Answer {
    let items = app.list_tenant_schedules(&tenant).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// `PUT /v1/workflows/{code}/schedules/{id}`: 201 when created, 200 when replaced.
pub async fn put_schedule(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segments((workflow, id)): Segments<(String, String)>,
    JsonBody(body): JsonBody<crate::usecases::schedules::ScheduleBody>,
) -> Answer {
    let (upsert, view) = app.put_schedule(&tenant, &workflow, &id, body).await?;
    let status = match upsert {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Updated => StatusCode::OK,
    };
    Ok((status, Json(view)).into_response())
}

/// `GET /v1/workflows/{code}/schedules/{id}`.
pub async fn get_schedule(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segments((workflow, id)): Segments<(String, String)>,
) -> Answer {
    Ok(Json(app.get_schedule(&tenant, &workflow, &id).await?).into_response())
}

/// `DELETE /v1/workflows/{code}/schedules/{id}`: 204.
pub async fn delete_schedule(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segments((workflow, id)): Segments<(String, String)>,
) -> Answer {
    app.delete_schedule(&tenant, &workflow, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/workflows/{code}/schedules`.
pub async fn list_schedules(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(workflow): Segment,
) -> Answer {
    let items = app.list_schedules(&tenant, &workflow).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// `POST /v1/workflows/{code}/backfills`: 202 with the backfill's id and its number of
/// dates (a dry run lists the dates, and records nothing).
pub async fn start_backfill(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segment(workflow): Segment,
    headers: HeaderMap,
    JsonBody(body): JsonBody<crate::usecases::backfills::BackfillBody>,
) -> Answer {
    let key = validation::single_header(&headers, "idempotency-key")?
        .map(validation::idempotency_key)
        .transpose()?;
    let dry_run = body.dry_run;
    let started = app
        .start_backfill(&tenant, &workflow, body, key.as_deref())
        .await?;
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let replayed = started.replayed;
    let mut response = (status, Json(started)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/backfills/{id}`: its progress.
pub async fn get_backfill(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
    Segment(id): Segment,
) -> Answer {
    Ok(Json(app.get_backfill(&tenant, &id).await?).into_response())
}

/// `GET /v1/backfills`: the caller's latest backfills and their progress.
pub async fn list_backfills(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToStart>,
) -> Answer {
    let items = app.list_backfills(&tenant).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// `POST /v1/backfills/{id}/{pause|resume|cancel}`.
pub async fn control_backfill(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    Segments((id, action)): Segments<(String, String)>,
) -> Answer {
    use crate::usecases::backfills::Control;
    let control = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "cancel" => Control::Cancel,
        other => {
            return Err(HttpError::RouteNotFound(format!(
                "/v1/backfills/{id}/{other}"
            )));
        }
    };
    Ok(Json(app.control_backfill(&tenant, &id, control).await?).into_response())
}

/// `GET /v1/audit?from=&to=`: where every request the caller's tenant accepted in the
/// window is, and whether they add up.
pub async fn audit(
    State(app): State<Flowgate>,
    Tenant(tenant, _): Tenant<ToAdminister>,
    QueryParams(params): QueryParams<crate::usecases::audit::AuditParams>,
) -> Answer {
    Ok(Json(app.audit(&tenant, &params).await?).into_response())
}
