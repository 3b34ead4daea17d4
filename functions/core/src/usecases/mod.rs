//! The use cases, each one entry point over the ports, shared by every host.

pub mod audit;
pub mod backfills;
mod consume;
pub mod dlq;
pub mod dolphin;
mod handoff;
mod queries;
mod reconcile;
mod runs;
pub mod schedules;
mod start;
pub mod tokens;
mod workflows;

pub use backfills::BackfillRunner;
pub use consume::{Consumer, ConsumerConfig, Disposition};
pub use queries::{FindParams, InstanceListParams, Matched};
pub use reconcile::{Reconciler, SweepReport};
pub use schedules::Scheduler;
pub use start::{Origin, StartOutcome, StartRequest};

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Labels, Metric, Metrics};
use crate::pool::BlockingPool;
use crate::ports::{Backfills, Dispatcher, Queue, Schedules, Store};
use crate::schemas::SchemaCache;

/// The span in which a worker logs its stages of one request: the ids, tenant, workflow and
/// W3C trace id that let any missing instance be traced. It is an ERROR-level span so that
/// it is enabled (and its fields printed) whatever the log filter lets through.
fn request_span(
    role: &'static str,
    tenant: &str,
    workflow: &str,
    request_id: &str,
    instance_id: &str,
    parent: Option<crate::trace::TraceContext>,
) -> tracing::Span {
    let span = tracing::error_span!(
        "request",
        role,
        tenant = %tenant,
        workflow = %workflow,
        request_id = %request_id,
        instance_id = %instance_id,
        trace_id = parent.as_ref().map_or("-", |t| t.trace_id()),
    );
    if let Some(parent) = &parent {
        crate::trace::join(&span, parent);
    }
    span
}

/// What a host plugs into the use cases: its ports, and the sinks and dispatchers it has.
pub struct HostPorts {
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// Schedules, where the backend keeps them.
    pub schedules: Option<Arc<dyn Schedules>>,
    /// Backfills, where the backend keeps them.
    pub backfills: Option<Arc<dyn Backfills>>,
    /// Checks (and hands off to) workflow targets.
    pub dispatcher: Option<Arc<dyn Dispatcher>>,
    /// Where counts and timings go.
    pub metrics: Option<Arc<dyn Metrics>>,
}

/// The API's use cases over a store and a queue. Cheap to clone.
#[derive(Clone)]
pub struct Flowgate {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    schemas: Arc<SchemaCache>,
    pool: BlockingPool,
    metrics: Option<Arc<dyn Metrics>>,
    redelivery_bound: Duration,
    validation_budget: Duration,
    grace: Duration,
    retention: Duration,
    schedules: Option<Arc<dyn Schedules>>,
    backfills: Option<Arc<dyn Backfills>>,
    dispatcher: Option<Arc<dyn Dispatcher>>,
    callbacks: Option<crate::callback::Callbacks>,
}

impl Flowgate {
    /// The use cases over these ports.
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> Self {
        let defaults = flowgate_settings::Settings::defaults();
        let pool = BlockingPool::default();
        Self {
            store,
            queue,
            schemas: Arc::new(SchemaCache::new(pool.clone())),
            pool,
            metrics: None,
            redelivery_bound: defaults.redelivery_bound(),
            validation_budget: defaults.validation_budget,
            grace: defaults.reconcile_grace,
            retention: defaults.retention(),
            schedules: None,
            backfills: None,
            dispatcher: None,
            callbacks: None,
        }
    }

    /// The use cases of a host: its ports, with every setting the use cases read taken from
    /// `settings`. Every host builds them here, so that none of them leaves one out.
    pub fn build(settings: &flowgate_settings::Settings, ports: HostPorts) -> Self {
        let HostPorts {
            store,
            queue,
            schedules,
            backfills,
            dispatcher,
            metrics,
        } = ports;
        let mut app = Self::new(store, queue)
            .with_redelivery_bound(settings.redelivery_bound())
            .with_validation_budget(settings.validation_budget);
        app.grace = settings.reconcile_grace;
        app.retention = settings.retention();
        app.schedules = schedules;
        app.backfills = backfills;
        app.dispatcher = dispatcher;
        app.metrics = metrics;
        app.callbacks = crate::callback::Callbacks::from_settings(settings);
        app
    }

    /// Checks callback tokens with `callbacks`.
    pub fn with_callbacks(mut self, callbacks: crate::callback::Callbacks) -> Self {
        self.callbacks = Some(callbacks);
        self
    }

    /// The tenant a callback token speaks for, if it is `instance_id`'s own.
    pub fn callback_tenant(&self, token: &str, instance_id: &str) -> Option<String> {
        self.callbacks.as_ref()?.verify(token, instance_id)
    }

    /// Reports what the use cases measure to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The longest an accepted request whose enqueue failed waits for the reconciler to send
    /// it (its grace period plus one sweep), as stated in that request's history.
    pub fn with_redelivery_bound(mut self, bound: Duration) -> Self {
        self.redelivery_bound = bound;
        self
    }

    /// Keeps schedules in `schedules` (a backend that keeps them).
    pub fn with_schedules(mut self, schedules: Arc<dyn Schedules>) -> Self {
        self.schedules = Some(schedules);
        self
    }

    /// Keeps backfills in `backfills` (a backend that keeps them).
    pub fn with_backfills(mut self, backfills: Arc<dyn Backfills>) -> Self {
        self.backfills = Some(backfills);
        self
    }

    /// Checks workflow targets with `dispatcher` (a host that hands instances off).
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// The longest one start request's params may take to validate.
    pub fn with_validation_budget(mut self, budget: Duration) -> Self {
        self.validation_budget = budget;
        self
    }

    fn measure(&self, metric: Metric, labels: &Labels<'_>, value: f64) {
        crate::metrics::record(self.metrics.as_deref(), metric, labels, value);
    }

    fn measure_outcomes(&self, metric: Metric, counts: &[(&str, u64)]) {
        crate::metrics::record_outcomes(self.metrics.as_deref(), metric, counts);
    }

    /// Whether the store answers (a cheap read).
    pub async fn health(&self) -> Result<(), crate::error::Error> {
        self.store.get_workflow("-", "-").await?;
        Ok(())
    }
}
