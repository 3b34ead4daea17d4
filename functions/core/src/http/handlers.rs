//! Route handlers: parse, call one use case, format the result.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{JsonBody, Tenant};
use crate::api_error::ApiError;
use crate::model::RequestStatus;
use crate::ports::Upsert;
use crate::usecases::dlq::{self, LetterFilter, ReplayOptions};
use crate::usecases::{Flowgate, StartRequest};
use crate::validation::{self, StartBody, WorkflowBody};

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
pub async fn healthz(State(app): State<Flowgate>) -> Result<Json<serde_json::Value>, ApiError> {
    app.store().get_workflow("-", "-").await?;
    Ok(Json(json!({"status": "ok"})))
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
    Tenant(tenant): Tenant,
    Path(code): Path<String>,
    JsonBody(body): JsonBody<WorkflowBody>,
) -> Result<Response, ApiError> {
    let (upsert, workflow) = app.put_workflow(&tenant, &code, body).await?;
    let status = match upsert {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Updated => StatusCode::OK,
    };
    Ok((status, Json(workflow)).into_response())
}

/// `GET /v1/workflows/{code}`.
pub async fn get_workflow(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app.get_workflow(&tenant, &code).await?).into_response())
}

/// The body of a start response.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartResponse {
    /// The request's id; `Location` points at it.
    pub request_id: String,
    /// The instance's id, assigned at acceptance.
    pub instance_id: String,
    /// `ACCEPTED`, `CREATED` or `DEAD`.
    pub status: RequestStatus,
    /// The workflow code.
    pub workflow: String,
}

/// `POST /v1/workflows/{code}/instances`.
pub async fn start_instance(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Path(workflow): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| validation::idempotency_key(v.as_bytes()))
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
        })
        .await?;
    let status = match (outcome.replayed, outcome.created()) {
        (true, true) => StatusCode::OK,
        (false, true) if wait.is_some() => StatusCode::CREATED,
        _ => StatusCode::ACCEPTED,
    };
    let record = outcome.record;
    let location = format!("/v1/requests/{}", record.request_id);
    let mut response = (
        status,
        Json(StartResponse {
            request_id: record.request_id,
            instance_id: record.instance_id,
            status: record.status,
            workflow: record.spec.workflow,
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
    Ok(response)
}

/// Query of `GET /v1/workflows/{code}/instances`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The `limit` query parameter of a listing.
fn page_limit(text: Option<String>) -> Result<Option<usize>, ApiError> {
    text.map(|l| {
        l.parse::<usize>()
            .map_err(|_| validation::invalid("limit", "must be a whole number"))
    })
    .transpose()
}

/// `GET /v1/workflows/{code}/instances?limit=&cursor=`.
pub async fn list_instances(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Path(workflow): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit)?;
    let page = app
        .list_instances(&tenant, &workflow, limit, query.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}

/// `GET /v1/requests/{request_id}`.
pub async fn get_request(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let record = app.get_request(&tenant, &request_id).await?;
    Ok(Json(json!({
        "request_id": record.request_id,
        "instance_id": record.instance_id,
        "workflow": record.spec.workflow,
        "status": record.status,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "idempotency_key": record.idempotency_key,
        "priority": record.spec.priority,
        "schedule_time": record.spec.schedule_time,
        "params": record.spec.params,
        "accepted_at": record.accepted_at,
        "updated_at": record.updated_at,
        "history": record.history,
    }))
    .into_response())
}

/// `GET /v1/instances/{instance_id}`.
pub async fn get_instance(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app.get_instance(&tenant, &instance_id).await?).into_response())
}

/// Unknown routes.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

/// Known routes with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Query of `GET /v1/dlq`.
#[derive(Debug, Deserialize)]
pub struct DlqQuery {
    workflow: Option<String>,
    error: Option<String>,
    older_than: Option<String>,
    newer_than: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn age(field: &str, text: Option<String>) -> Result<Option<Duration>, ApiError> {
    text.map(|t| dlq::parse_duration(&t).map_err(|e| validation::invalid(field, e)))
        .transpose()
}

/// `GET /v1/dlq`: the caller's dead letters, oldest first.
pub async fn list_dlq(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    Query(query): Query<DlqQuery>,
) -> Result<Response, ApiError> {
    let filter = LetterFilter {
        tenant: Some(tenant),
        workflow: query.workflow,
        error: query.error,
        older_than: age("older_than", query.older_than)?,
        newer_than: age("newer_than", query.newer_than)?,
    };
    let limit = page_limit(query.limit)?;
    let page = app
        .dlq_list(&filter, limit, query.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}

/// The body of `POST /v1/dlq/replay`. Unknown fields are refused: a misspelt filter must
/// not widen a replay to every letter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    tenant: Option<String>,
    workflow: Option<String>,
    error: Option<String>,
    older_than: Option<String>,
    newer_than: Option<String>,
    max: Option<usize>,
    rate: Option<f64>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/dlq/replay`: replays the caller's dead letters that the body selects.
pub async fn replay_dlq(
    State(app): State<Flowgate>,
    Tenant(tenant): Tenant,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Response, ApiError> {
    let mut options = ReplayOptions {
        filter: LetterFilter {
            tenant: body.tenant,
            workflow: body.workflow,
            error: body.error,
            older_than: age("/older_than", body.older_than)?,
            newer_than: age("/newer_than", body.newer_than)?,
        },
        max: body.max,
        rate: body.rate,
        dry_run: body.dry_run,
    };
    if options.filter.tenant.as_ref().is_some_and(|t| *t != tenant) {
        return Err(validation::invalid(
            "/tenant",
            "can only name your own tenant",
        ));
    }
    options.filter.tenant = Some(tenant);
    let max = options.max.unwrap_or(dlq::DEFAULT_HTTP_REPLAY);
    if !(1..=dlq::MAX_HTTP_REPLAY).contains(&max) {
        return Err(validation::invalid(
            "/max",
            format!("must be from 1 to {}", dlq::MAX_HTTP_REPLAY),
        ));
    }
    options.max = Some(max);
    if options.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(validation::invalid(
            "/rate",
            "must be a positive number of letters per second",
        ));
    }
    Ok(Json(app.dlq_replay(&options, &|_| {}).await?).into_response())
}
