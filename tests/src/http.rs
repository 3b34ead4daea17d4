//! A test harness for the router: the embedded backend behind fault injectors, called
//! through `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use flowgate_core::Flowgate;
use flowgate_core::auth::Caller;
use flowgate_core::faults::{FaultPlan, FaultyQueue, FaultyStore};
use flowgate_core::http::router;
use flowgate_core::model::DEFAULT_TENANT;
use flowgate_core::ports::{Dispatcher, Queue, Schedules, Store};
use flowgate_core::usecases::{Consumer, Reconciler};

use crate::fixtures::{TempEmbedded, consumer_config, embedded};

/// The router over a backend whose ports fail as `faults` says.
pub struct App {
    /// The router.
    pub router: Router,
    /// The use cases behind the router (over the faulty ports).
    pub flowgate: Flowgate,
    /// The faults, changeable during the test.
    pub faults: Arc<FaultPlan>,
    /// The store behind the faults.
    pub store: Arc<dyn Store>,
    /// The queue behind the faults.
    pub queue: Arc<dyn Queue>,
    /// The ports without the faults (to inspect or drive them directly).
    pub raw_store: Arc<dyn Store>,
    /// The queue without the faults.
    pub raw_queue: Arc<dyn Queue>,
    /// Keeps whatever the backend needs alive (a data directory, say).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
    /// Hands instances to targets; private addresses allowed, for the local receivers.
    pub dispatcher: Arc<dyn Dispatcher>,
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if empty or not JSON).
    pub body: Value,
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json reply of this status and kind.
    pub fn assert_problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            self.body["type"],
            format!("urn:flowgate:problem:{kind}"),
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }
}

/// Calls `router` with `request` and decodes the response.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

impl App {
    /// A fresh app on a fresh embedded backend (which keeps schedules), with no faults.
    pub fn new() -> Self {
        let backend: TempEmbedded = embedded(Duration::from_millis(500), 5);
        let (store, queue) = (backend.backend.clone(), backend.backend.clone());
        let schedules: Arc<dyn Schedules> = backend.backend.clone();
        let backfills: Arc<dyn flowgate_core::ports::Backfills> = backend.backend.clone();
        let mut app = Self::over(store, queue, Box::new(backend));
        let schedules: Arc<dyn Schedules> = Arc::new(flowgate_core::faults::FaultySchedules::new(
            schedules,
            app.faults.clone(),
        ));
        let backfills: Arc<dyn flowgate_core::ports::Backfills> = Arc::new(
            flowgate_core::faults::FaultyBackfills::new(backfills, app.faults.clone()),
        );
        app.flowgate = app
            .flowgate
            .clone()
            .with_schedules(schedules)
            .with_backfills(backfills);
        app.router = router(app.flowgate.clone());
        app
    }

    /// A fresh app on an embedded backend that keeps no schedules and no backfills (as the
    /// AWS host without a schedule group).
    pub fn without_schedules() -> Self {
        let backend: TempEmbedded = embedded(Duration::from_millis(500), 5);
        let (store, queue) = (backend.backend.clone(), backend.backend.clone());
        Self::over(store, queue, Box::new(backend))
    }

    /// An app over these ports, behind fault injectors that start with no faults.
    pub fn over(
        raw_store: Arc<dyn Store>,
        raw_queue: Arc<dyn Queue>,
        guard: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        let faults = Arc::new(FaultPlan::default());
        let store: Arc<dyn Store> = Arc::new(FaultyStore::new(raw_store.clone(), faults.clone()));
        let queue: Arc<dyn Queue> = Arc::new(FaultyQueue::new(raw_queue.clone(), faults.clone()));
        let dispatcher: Arc<dyn Dispatcher> = Arc::new(flowgate_targets::Targets::new(true));
        let flowgate =
            Flowgate::new(store.clone(), queue.clone()).with_dispatcher(dispatcher.clone());
        let router = router(flowgate.clone());
        Self {
            router,
            flowgate,
            faults,
            store,
            queue,
            raw_store,
            raw_queue,
            guard,
            dispatcher,
        }
    }

    /// This app with its use cases keeping schedules in `schedules`.
    pub fn with_schedules(mut self, schedules: Arc<dyn Schedules>) -> Self {
        self.flowgate = self.flowgate.clone().with_schedules(schedules);
        self.router = router(self.flowgate.clone());
        self
    }

    /// This app with its use cases keeping backfills in `backfills`.
    pub fn with_backfills(mut self, backfills: Arc<dyn flowgate_core::ports::Backfills>) -> Self {
        self.flowgate = self.flowgate.clone().with_backfills(backfills);
        self.router = router(self.flowgate.clone());
        self
    }

    /// A consumer over this app's (faulty) ports that dead-letters after
    /// `max_receive_count` deliveries.
    pub fn consumer(&self, max_receive_count: u32) -> Consumer {
        Consumer::new(
            self.store.clone(),
            self.queue.clone(),
            consumer_config(max_receive_count, Duration::from_millis(500)),
        )
        .with_dispatcher(self.dispatcher.clone())
    }

    /// The schedules of the embedded backend behind this app.
    pub fn raw_store_schedules(&self) -> Arc<dyn Schedules> {
        let backend = self
            .guard
            .downcast_ref::<TempEmbedded>()
            .expect("an embedded app");
        backend.backend.clone()
    }

    /// Starts a consumer on this app's ports; it stops when the returned sender drops.
    pub fn start_consumer(&self) -> tokio::sync::watch::Sender<bool> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::new(self.consumer(5)).run(stopped));
        stop
    }

    /// Waits (up to a minute) until the request reaches `status`; answers its record, or
    /// fails the test with its history.
    pub async fn until_status(
        &self,
        tenant: &str,
        request_id: &str,
        status: flowgate_core::model::RequestStatus,
    ) -> flowgate_core::model::RequestRecord {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let record = self
                .raw_store
                .get_request(tenant, request_id)
                .await
                .expect("read")
                .expect("record");
            if record.status == status {
                return record;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "request {request_id} stayed {:?}, not {status:?}: {:?}",
                record.status,
                record.history
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a reconciler with a short grace period; it stops when the sender drops.
    pub fn start_reconciler(&self, grace: Duration) -> tokio::sync::watch::Sender<bool> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let reconciler = Reconciler::new(self.store.clone(), self.queue.clone(), grace);
        tokio::spawn(reconciler.run(grace / 2, stopped));
        stop
    }

    /// Sends a request as tenant `default` (or `tenant`), with every scope.
    pub async fn call_as(
        &self,
        tenant: Option<&str>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let caller = Caller::all_scopes(tenant.unwrap_or(DEFAULT_TENANT));
        self.call_by(Some(caller), method, uri, headers, body).await
    }

    /// Sends a request as `caller` (or, with `None`, as no one the host authenticated).
    pub async fn call_by(
        &self,
        caller: Option<Caller>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut request = builder
            .body(
                body.map(|b| Body::from(b.to_owned()))
                    .unwrap_or_else(Body::empty),
            )
            .expect("request");
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        send(&self.router, request).await
    }

    /// Sends a request as tenant `default`.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        self.call_as(None, method, uri, headers, body).await
    }

    /// Registers a workflow whose params need an integer `amount` of at least 1.
    pub async fn register(&self, code: &str, online: bool) {
        self.register_as(None, code, online).await;
    }

    /// Registers that workflow for `tenant` (or `default`).
    pub async fn register_as(&self, tenant: Option<&str>, code: &str, online: bool) {
        let body = serde_json::json!({
            "name": code,
            "online": online,
            "params_schema": {"type": "object", "required": ["amount"],
                "properties": {"amount": {"type": "integer", "minimum": 1}}}
        });
        let reply = self.put_workflow_as(tenant, code, &body).await;
        assert!(reply.status.is_success(), "{}", reply.body);
    }

    /// `PUT /v1/workflows/{code}` with `body`, for `tenant` (or `default`).
    pub async fn put_workflow_as(&self, tenant: Option<&str>, code: &str, body: &Value) -> Reply {
        let uri = format!("/v1/workflows/{code}");
        let body = body.to_string();
        self.call_as(tenant, "PUT", &uri, &[], Some(&body)).await
    }

    /// Steps a backfill runner until backfill `id` is done (or 20 s pass); its final view.
    pub async fn run_backfill(&self, id: &str) -> Value {
        let runner = flowgate_core::usecases::BackfillRunner::new(self.flowgate.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            runner.step(Duration::from_millis(50)).await.expect("step");
            let view = self
                .call("GET", &format!("/v1/backfills/{id}"), &[], None)
                .await
                .body;
            if view["state"] != "running" || tokio::time::Instant::now() > deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a request until it leaves `ACCEPTED` (or 10 s pass); returns its view.
    pub async fn settled(&self, request_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self
                .call("GET", &format!("/v1/requests/{request_id}"), &[], None)
                .await;
            if reply.body["status"] != "ACCEPTED" || tokio::time::Instant::now() > deadline {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}
