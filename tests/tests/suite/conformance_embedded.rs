//! The conformance suite against the embedded (SQLite) backend.

use std::time::Duration;

use flowgate_tests::conformance::{Caps, Subject};
use flowgate_tests::conformance_tests;

const VISIBILITY: Duration = Duration::from_millis(300);
const MAX_RECEIVES: u32 = 3;

async fn subject() -> Subject {
    let t = flowgate_tests::fixtures::embedded(VISIBILITY, MAX_RECEIVES);
    let backend = t.backend.clone();
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
        guard: Box::new(t),
    }
}

conformance_tests!(subject());
