//! The backfills port's contract, run by [`crate::conformance_tests!`] with the rest of the
//! checks, on every backend that keeps backfills.

use chrono::{Duration as Span, Utc};

use flowgate_core::model::Priority;
use flowgate_core::ports::{BackfillRecord, BackfillState};

use crate::conformance::Subject;
use crate::fixtures::tenant;

/// More dates than one stored item of a key-value store holds.
const DATES: i64 = 12_345;

fn backfill(tenant: &str) -> BackfillRecord {
    let now = Utc::now();
    let from = now - Span::days(400);
    BackfillRecord {
        tenant: tenant.to_owned(),
        id: format!("bf-{}", uuid::Uuid::now_v7().simple()),
        workflow: "wf".into(),
        dates: (0..DATES).map(|n| from + Span::minutes(n)).collect(),
        params: serde_json::json!({"n": 1})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        priority: Priority::High,
        options: [("workerGroup".to_owned(), "default".to_owned())].into(),
        reprocess: false,
        no_hand_off: true,
        max_in_flight: 10,
        rate: Some(2.5),
        state: BackfillState::Running,
        started: 0,
        created: 0,
        skipped: 0,
        dead: 0,
        in_flight: Vec::new(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A backfill is created once, keeps every date in order, changes only from the version
/// its writer read, is found running while it runs, and belongs to its tenant.
pub async fn backfills_keep_every_date_are_versioned_and_found_running(s: Subject) {
    let Some(store) = s.backfills.clone() else {
        return;
    };
    let t = tenant();
    let b = backfill(&t);
    assert!(store.put_backfill(&b, None).await.unwrap());
    assert!(!store.put_backfill(&b, None).await.unwrap(), "created once");
    let read = store.get_backfill(&t, &b.id).await.unwrap().expect("there");
    assert_eq!(read, b, "every date, in order, and every field");
    let running = |list: Vec<BackfillRecord>| list.iter().any(|r| r.id == b.id);
    assert!(running(store.running_backfills(10_000).await.unwrap()));

    let mut moved = b.clone();
    moved.version = 2;
    moved.started = 3;
    moved.in_flight = vec!["r1".into(), "r2".into()];
    moved.state = BackfillState::Paused;
    assert!(
        !store.put_backfill(&moved, Some(7)).await.unwrap(),
        "a stale version loses"
    );
    assert!(store.put_backfill(&moved, Some(1)).await.unwrap());
    let read = store.get_backfill(&t, &b.id).await.unwrap().expect("there");
    assert_eq!(read, moved);
    assert!(
        !running(store.running_backfills(10_000).await.unwrap()),
        "a paused backfill is not running"
    );
    assert!(
        store
            .get_backfill(&tenant(), &b.id)
            .await
            .unwrap()
            .is_none(),
        "tenant scoped"
    );
}

/// A tenant's backfills are listed newest first, whatever their state, up to the limit, and
/// never another tenant's.
pub async fn backfills_are_listed_per_tenant_newest_first(s: Subject) {
    let Some(store) = s.backfills.clone() else {
        return;
    };
    let (t, other) = (tenant(), tenant());
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut b = backfill(&t);
        b.dates.truncate(10);
        b.created_at = Utc::now() + Span::seconds(n);
        if n == 1 {
            b.state = BackfillState::Done;
        }
        assert!(store.put_backfill(&b, None).await.unwrap());
        ids.push(b.id);
    }
    let mut theirs = backfill(&other);
    theirs.dates.truncate(10);
    assert!(store.put_backfill(&theirs, None).await.unwrap());
    let listed: Vec<String> = store
        .list_backfills(&t, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let first: Vec<String> = store
        .list_backfills(&t, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(first, newest_first[..2], "at most the limit");
    let read = store.list_backfills(&t, 10).await.unwrap();
    assert_eq!(read[0].dates.len(), 10, "whole records");
}
