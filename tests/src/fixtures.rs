//! Fixtures: sample records and instances with fresh random ids, backends in temp dirs,
//! and log capture on request.

use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use flowgate_core::ids;
use flowgate_core::model::{
    EventKind, HistoryEvent, Instance, InstanceStatus, Priority, RequestRecord, RequestStatus,
    StartSpec,
};
use flowgate_embedded::{Embedded, EmbeddedConfig};

/// Prints logs during tests when `TEST_LOG` is set; silent otherwise.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
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
        }],
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
        status: InstanceStatus::Submitted,
        created_at,
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
        },
    )
    .expect("open embedded backend");
    TempEmbedded { backend, dir }
}
