//! Workflow definitions kept in memory, so that a start reads its workflow without a trip to
//! the read pool. A put in this process replaces the entry at once; a put by another process
//! on the same data directory is seen within `FRESH_FOR`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flowgate_core::model::Workflow;

/// How long an entry is trusted before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// The most entries kept; past it the cache starts empty again.
const MAX_ENTRIES: usize = 10_000;

type Key = (String, String);

/// (tenant, code) → the workflow (or its absence), and when that was read.
#[derive(Default)]
pub struct WorkflowCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (Instant, Option<Workflow>)>,
    /// When this process last changed a workflow: a read begun before it may hold the old
    /// row, so it is not kept. (Puts are rare; one floor for all keys costs nothing.)
    floor: Option<Instant>,
}

impl WorkflowCache {
    /// The cached answer for (tenant, code), if it is fresh.
    pub fn get(&self, tenant: &str, code: &str) -> Option<Option<Workflow>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), code.to_owned());
        match inner.entries.get(&key) {
            Some((read_at, workflow)) if read_at.elapsed() < FRESH_FOR => Some(workflow.clone()),
            _ => None,
        }
    }

    /// Keeps what was read for (tenant, code), as of `read_at`: taken before the read, so an
    /// entry is never fresher than the data it holds. A read begun before this process's
    /// last change of a workflow, or older than the entry held, is not kept.
    pub fn put(&self, tenant: &str, code: &str, read_at: Instant, workflow: Option<Workflow>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.floor.is_some_and(|floor| read_at <= floor) {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        let key = (tenant.to_owned(), code.to_owned());
        if inner.entries.get(&key).is_some_and(|(at, _)| *at > read_at) {
            return;
        }
        inner.entries.insert(key, (read_at, workflow));
    }

    /// Forgets (tenant, code) once it has been changed: the next start reads it again.
    pub fn forget(&self, tenant: &str, code: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.remove(&(tenant.to_owned(), code.to_owned()));
        inner.floor = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(version: u64) -> Workflow {
        serde_json::from_value(serde_json::json!({
            "tenant": "t", "code": "w", "name": "w", "online": true, "params_schema": {},
            "version": version, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        }))
        .expect("a workflow")
    }

    #[test]
    fn an_entry_is_fresh_for_a_while_and_an_older_read_never_replaces_a_newer_one() {
        let cache = WorkflowCache::default();
        assert!(cache.get("t", "w").is_none());
        let now = Instant::now();
        cache.put("t", "w", now, Some(workflow(2)));
        assert_eq!(cache.get("t", "w").flatten().map(|w| w.version), Some(2));
        cache.put("t", "w", now - Duration::from_millis(5), Some(workflow(1)));
        assert_eq!(cache.get("t", "w").flatten().map(|w| w.version), Some(2));
        cache.forget("t", "w");
        assert!(cache.get("t", "w").is_none());
        cache.put("t", "w", now, Some(workflow(2)));
        assert!(
            cache.get("t", "w").is_none(),
            "a read begun before a change is not kept"
        );
        cache.put("t", "w", Instant::now() - FRESH_FOR, None);
        assert!(cache.get("t", "w").is_none(), "a stale entry is read again");
        cache.put("t", "w", Instant::now(), Some(workflow(3)));
        assert_eq!(cache.get("t", "w").flatten().map(|w| w.version), Some(3));
    }
}
