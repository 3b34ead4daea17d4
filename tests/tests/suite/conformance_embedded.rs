//! The conformance suite against the embedded (SQLite) backend.

use std::time::Duration;

use flowgate_tests::conformance::{Caps, Subject};
use flowgate_tests::conformance_tests;

const VISIBILITY: Duration = Duration::from_millis(300);
const MAX_RECEIVES: u32 = 3;

async fn subject() -> Subject {
    let t = flowgate_tests::fixtures::embedded(VISIBILITY, MAX_RECEIVES);
    let backend = t.backend.clone();
    let db = t.dir.path().join(flowgate_embedded::DB_FILE);
    let corrupt: flowgate_tests::conformance::Corrupt =
        std::sync::Arc::new(move |tenant: String, request_id: String| {
            let db = db.clone();
            Box::pin(async move {
                let conn = rusqlite::Connection::open(&db).expect("open the file");
                conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
                let n = conn
                    .execute(
                        "UPDATE starts SET spec = '{\"workflow\": ' \
                         WHERE tenant = ?1 AND request_id = unhex(replace(?2, '-', ''))",
                        rusqlite::params![tenant, request_id],
                    )
                    .expect("damage the record");
                assert_eq!(n, 1);
            })
        });
    Subject {
        store: backend.clone(),
        queue: backend.clone(),
        schedules: Some(backend.clone()),
        backfills: Some(backend),
        caps: Caps {
            visibility_timeout: VISIBILITY,
            max_receive_count: MAX_RECEIVES,
            liveness: true,
            outbox: true,
            sweeps: true,
            self_expiring: false,
        },
        corrupt,
        guard: Box::new(t),
    }
}

conformance_tests!(subject());
