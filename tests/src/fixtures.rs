//! Fixtures: sample records and instances with fresh random ids, backends in temp dirs,
//! and log capture on request.

use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use flowgate_core::faults::{FaultPlan, FaultyStore};
use flowgate_core::ids;
use flowgate_core::message::QueueMessage;
use flowgate_core::model::{
    EventKind, HistoryEvent, Instance, InstanceStatus, Priority, RequestRecord, RequestStatus,
    StartSpec,
};
use flowgate_core::ports::{Queue, RequestUpdate, Store};
use flowgate_core::usecases::{Consumer, ConsumerConfig};
use flowgate_embedded::{Embedded, EmbeddedConfig};

/// Prints logs during tests when `TEST_LOG` is set; silent otherwise.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            ask_every_time();
        } else {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_test_writer()
                .try_init();
        }
    });
}

/// Installs, once, a process-wide subscriber that logs nothing but answers "sometimes" for
/// every callsite. Tests run on many threads in one process, some under a thread's own
/// capturing subscriber: with no global one, a span first reached on another thread could be
/// cached as never enabled, and a capturing test would then miss its span fields.
fn ask_every_time() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let quiet =
            tracing_subscriber::registry().with(tracing_subscriber::filter::filter_fn(|_| false));
        let _ = tracing::subscriber::set_global_default(quiet);
    });
}

/// The update a consumer applies when its delivery number `delivery` creates the instance.
pub fn created(delivery: u32) -> RequestUpdate {
    RequestUpdate {
        set_status: Some(RequestStatus::Created),
        set_attempts: Some(delivery),
        ..RequestUpdate::event(HistoryEvent::now(
            EventKind::Created,
            format!("instance created on delivery {delivery}"),
        ))
    }
}

/// How many events of `kind` a history holds.
pub fn count_events(history: &[HistoryEvent], kind: EventKind) -> usize {
    history.iter().filter(|h| h.kind == kind).count()
}

/// A fresh random tenant, so tests never see each other's data.
pub fn tenant() -> String {
    format!("t-{}", uuid::Uuid::now_v7().simple())
}

/// A new `ACCEPTED` record for `workflow` with its `accepted` event, as the API writes it.
pub fn record(tenant: &str, workflow: &str, accepted_at: DateTime<Utc>) -> RequestRecord {
    let spec = StartSpec {
        workflow: workflow.to_owned(),
        params: json!({"n": 1}).as_object().cloned().unwrap_or_default(),
        priority: Priority::High,
        schedule_time: None,
        logical_date: None,
        schedule_id: None,
        backfill_id: None,
        options: Default::default(),
        dry_run: false,
        policy: None,
    };
    RequestRecord {
        tenant: tenant.to_owned(),
        request_id: ids::request_id(tenant, None),
        instance_id: ids::instance_id(),
        idempotency_key: None,
        fingerprint: ids::fingerprint(&spec),
        spec,
        status: RequestStatus::Accepted,
        attempts: 0,
        last_error: None,
        accepted_at,
        updated_at: accepted_at,
        pending_since: None,
        history: vec![HistoryEvent {
            at: accepted_at,
            kind: EventKind::Accepted,
            detail: "accepted".into(),
            trace_id: None,
        }],
        dispatch: None,
        run: None,
    }
}

/// The instance a record leads to.
pub fn instance(record: &RequestRecord, created_at: DateTime<Utc>) -> Instance {
    Instance {
        tenant: record.tenant.clone(),
        instance_id: record.instance_id.clone(),
        request_id: record.request_id.clone(),
        workflow: record.spec.workflow.clone(),
        params: record.spec.params.clone(),
        priority: record.spec.priority,
        schedule_time: record.spec.schedule_time,
        logical_date: record.spec.logical_date,
        status: InstanceStatus::Created,
        created_at,
        dispatch: None,
        options: Default::default(),
        run: None,
        duration_ms: None,
        callback: None,
    }
}

/// An embedded backend in its own temporary directory (removed when the guard drops).
pub struct TempEmbedded {
    /// The backend.
    pub backend: Arc<Embedded>,
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

/// Opens an embedded backend in a fresh temporary directory.
pub fn embedded(visibility_timeout: Duration, max_receive_count: u32) -> TempEmbedded {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Embedded::open(
        dir.path(),
        EmbeddedConfig {
            visibility_timeout,
            max_receive_count,
            ..EmbeddedConfig::default()
        },
    )
    .expect("open embedded backend");
    TempEmbedded { backend, dir }
}

/// The consumer's settings in tests: no retry delay, short waits.
pub fn consumer_config(max_receive_count: u32, visibility_timeout: Duration) -> ConsumerConfig {
    ConsumerConfig {
        max_receive_count,
        visibility_timeout,
        retry_base: Duration::ZERO,
        receive_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// A consumer over an embedded backend whose store fails as `faults` says.
pub struct Rig {
    /// The store, behind the faults.
    pub store: Arc<dyn Store>,
    /// The queue (no faults).
    pub queue: Arc<dyn Queue>,
    /// The store's faults, changeable during the test.
    pub faults: Arc<FaultPlan>,
    /// The consumer over `store` and `queue`.
    pub consumer: Consumer,
    /// Keeps the backend's directory alive.
    pub backend: TempEmbedded,
}

impl Rig {
    /// A rig whose queue dead-letters after `max_receive_count` deliveries.
    pub fn new(visibility_timeout: Duration, max_receive_count: u32) -> Self {
        let backend = embedded(visibility_timeout, max_receive_count);
        let faults = Arc::new(FaultPlan::default());
        let store: Arc<dyn Store> =
            Arc::new(FaultyStore::new(backend.backend.clone(), faults.clone()));
        let queue: Arc<dyn Queue> = backend.backend.clone();
        let consumer = Consumer::new(
            store.clone(),
            queue.clone(),
            consumer_config(max_receive_count, visibility_timeout),
        );
        Self {
            store,
            queue,
            faults,
            consumer,
            backend,
        }
    }

    /// Records a request (without sending it), as the API would.
    pub async fn accepted(&self, tenant: &str) -> RequestRecord {
        let r = record(tenant, "wf", Utc::now());
        self.store.create_request(&r, None).await.expect("record");
        r
    }

    /// Records a request and sends its message, as the API would.
    pub async fn sent(&self, tenant: &str) -> RequestRecord {
        let r = self.accepted(tenant).await;
        self.queue
            .send(&QueueMessage::envelope_for(&r))
            .await
            .expect("send");
        r
    }

    /// A request record, which must exist.
    pub async fn read(&self, tenant: &str, request_id: &str) -> RequestRecord {
        self.store
            .get_request(tenant, request_id)
            .await
            .expect("read")
            .expect("record exists")
    }
}

/// A writer the test reads back: what a log subscriber or a metrics sink printed.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes).expect("utf-8")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's logs at `level` and above as JSON lines, with the current span,
/// until the guard drops.
pub fn capture_json_logs(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    ask_every_time();
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(level)
        .with_writer(move || sink.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
