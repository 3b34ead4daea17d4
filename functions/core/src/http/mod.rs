//! The HTTP API: one axum router served by every host (`flowgate serve`, the cloud function).

mod dolphin;
mod extract;
mod guard;
mod handlers;
mod problem;
mod traced;

pub use extract::{
    Demands, JsonBody, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, QueryParams, Reporter, Segment,
    Segments, Tenant, ToAdminister, ToHandleDeadLetters, ToReadMetrics, ToReport, ToStart,
};
pub use guard::{Denial, with_rate_limit, with_tokens};
pub use problem::{HttpError, PROBLEM_TYPE_PREFIX, RETRY_AFTER_SECS};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::usecases::Flowgate;

/// The OpenAPI 3.1 document of this API: the contract, kept true by the tests.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The API router over these use cases.
pub fn router(app: Flowgate) -> Router {
    guarded(routes()).with_state(app)
}

fn routes() -> Router<Flowgate> {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/openapi.json", get(handlers::openapi))
        .route(
            "/v1/workflows/{code}",
            get(handlers::get_workflow).put(handlers::put_workflow),
        )
        .route(
            "/v1/workflows/{code}/instances",
            get(handlers::list_instances).post(handlers::start_instance),
        )
        .route(
            "/v1/workflows/{code}/instances/batch",
            post(handlers::start_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route(
            "/v1/workflows/{code}/schedules",
            get(handlers::list_schedules),
        )
        .route(
            "/v1/workflows/{code}/schedules/{id}",
            get(handlers::get_schedule)
                .put(handlers::put_schedule)
                .delete(handlers::delete_schedule),
        )
        .route("/v1/schedules", get(handlers::list_tenant_schedules))
        .route(
            "/v1/workflows/{code}/backfills",
            post(handlers::start_backfill),
        )
        .route("/v1/backfills", get(handlers::list_backfills))
        .route("/v1/backfills/{id}", get(handlers::get_backfill))
        .route(
            "/v1/backfills/{id}/{action}",
            post(handlers::control_backfill),
        )
        .route("/v1/requests/{request_id}", get(handlers::get_request))
        .route("/v1/find", get(handlers::find_request))
        .route("/v1/audit", get(handlers::audit))
        .route("/v1/instances/{instance_id}", get(handlers::get_instance))
        .route(
            "/v1/instances/{instance_id}/status",
            post(handlers::report_status),
        )
        .route(
            "/v1/instances/{instance_id}/cancel",
            post(handlers::cancel_instance),
        )
        .route(
            "/dolphinscheduler/projects/{projectCode}/executors/start-process-instance",
            post(dolphin::start),
        )
        .route(
            "/dolphinscheduler/projects/{projectCode}/executors/start-workflow-instance",
            post(dolphin::start),
        )
        .route("/v1/dlq", get(handlers::list_dlq))
        .route("/v1/dlq/replay", post(handlers::replay_dlq))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
}

/// The longest request target (path and query) read, in bytes: room for the
/// DolphinScheduler door's longest query string.
pub const MAX_URI_BYTES: usize = 48 * 1024;
/// The most request headers read.
pub const MAX_HEADERS: usize = 64;
/// The most bytes of request headers (names and values) read.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses a request whose target or headers are over Flowgate's own limits (414, 431),
/// which are tighter than the HTTP library's, so that Flowgate answers them.
async fn head_limits(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    match over_limits(&request) {
        Some(refused) => refuse(&path, refused),
        None => next.run(request).await,
    }
}

/// A refusal before any route ran, answered as the route's callers expect it: the
/// DolphinScheduler door's envelope on its paths, problem+json everywhere else.
pub(crate) fn refuse(path: &str, refused: HttpError) -> axum::response::Response {
    use axum::response::IntoResponse;
    if path.starts_with(dolphin::PREFIX) {
        dolphin::refusal(refused)
    } else {
        refused.into_response()
    }
}

/// Which of Flowgate's limits on a request's head it is over, if any.
fn over_limits(request: &axum::extract::Request) -> Option<HttpError> {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        return Some(HttpError::UriTooLong {
            len,
            limit: MAX_URI_BYTES,
        });
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return Some(HttpError::HeadersTooLarge(format!(
            "the request has {} headers, over the limit of {MAX_HEADERS}",
            headers.len()
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        HttpError::HeadersTooLarge(format!(
            "the request's headers are {bytes} bytes, over the limit of {MAX_HEADER_BYTES}"
        ))
    })
}

/// The layers every route runs under: limits on the request's head and body, a panic
/// turned into a 500 problem+json, the failure log, tracing (in the caller's W3C trace),
/// and request ids.
pub fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(problem::panicked))
        .layer(axum::middleware::from_fn(head_limits))
        .layer(axum::middleware::from_fn(problem::log_failures))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(traced::traced))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
