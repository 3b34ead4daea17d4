//! What the local server shows its operator: the metrics sink that feeds both `GET /metrics`
//! (Prometheus) and the operator page's live charts (`GET /v1/stats/live`), and those routes.

pub mod prometheus;
pub mod series;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use flowgate_core::http::{HttpError, Tenant, ToReadMetrics, ToStart};
use flowgate_core::metrics::{Labels, Metric, Metrics};
use flowgate_embedded::Embedded;

use prometheus::Prometheus;
use series::LiveSeries;

/// The content type of the Prometheus exposition prometheus-client writes (OpenMetrics).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics sink: every record goes to the Prometheus series and to the live
/// charts.
#[derive(Default)]
pub struct Observer {
    prometheus: Prometheus,
    live: LiveSeries,
}

impl Metrics for Observer {
    fn record(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        self.prometheus.record(metric, labels, value);
        self.live
            .record(metric, labels, value, chrono::Utc::now().timestamp());
    }
}

#[derive(Clone)]
struct Observed {
    observer: Arc<Observer>,
    queues: Option<Arc<Embedded>>,
}

/// `GET /metrics` and `GET /v1/stats/live` over `observer`; the queue gauges are sampled
/// from `queues` (the embedded store) at each scrape.
pub fn routes(observer: Arc<Observer>, queues: Option<Arc<Embedded>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/stats/live", get(live))
        .with_state(Observed { observer, queues })
}

/// `GET /metrics`: every tenant's numbers, so it needs the `metrics` scope.
async fn metrics(
    State(observed): State<Observed>,
    _: Tenant<ToReadMetrics>,
) -> Result<Response, HttpError> {
    let depths = match &observed.queues {
        Some(store) => Some(
            store
                .depths()
                .await
                .map_err(|e| HttpError::from(flowgate_core::Error::from(e)))?,
        ),
        None => None,
    };
    let text = observed.observer.prometheus.render(depths);
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

/// `GET /v1/stats/live`: the caller's tenant's counts and lag over the last 15 minutes.
async fn live(State(observed): State<Observed>, Tenant(tenant, _): Tenant<ToStart>) -> Response {
    let now = chrono::Utc::now().timestamp();
    Json(observed.observer.live.live(&tenant, now)).into_response()
}
