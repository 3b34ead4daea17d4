//! The schedules port's contract, run by [`crate::conformance_tests!`] with the rest of the
//! checks, on every backend that keeps schedules (`Caps::schedules`).

use chrono::{Duration as Span, Utc};

use flowgate_core::ports::ScheduleRecord;
use flowgate_core::schedule::ScheduleDefinition;
use flowgate_core::usecases::schedules::ScheduleBody;

use crate::conformance::Subject;
use crate::fixtures::tenant;

fn schedule(tenant: &str, id: &str, due_in: i64, paused: bool) -> ScheduleRecord {
    let now = Utc::now();
    let definition: ScheduleBody = serde_json::from_value(serde_json::json!({
        "cron": "0 * * * * *", "paused": paused, "params": {"n": 1}
    }))
    .expect("body");
    let definition = ScheduleDefinition::try_from(definition).expect("a definition");
    ScheduleRecord {
        tenant: tenant.to_owned(),
        workflow: "wf".into(),
        id: id.to_owned(),
        definition,
        version: 1,
        created_at: now,
        updated_at: now,
        last_fired: Some(now),
        next_due: Some(now + Span::seconds(due_in)),
        next_fires: Some(vec![now + Span::seconds(due_in)]),
        last_error: None,
    }
}

/// A schedule is created once, then changed only from the version its writer read; listed
/// by workflow; found due (unless paused), soonest first; and deleted.
pub async fn schedules_are_versioned_listed_found_due_and_deleted(s: Subject) {
    let Some(store) = s.schedules.clone() else {
        return;
    };
    let t = tenant();
    let early = schedule(&t, "early", -20, false);
    assert!(store.put_schedule(&early, None).await.unwrap());
    assert!(
        !store.put_schedule(&early, None).await.unwrap(),
        "created once"
    );
    let mut moved = early.clone();
    moved.version = 2;
    moved.last_error = Some("fire for x: workflow offline".into());
    assert!(
        !store.put_schedule(&moved, Some(7)).await.unwrap(),
        "a stale version loses"
    );
    assert!(store.put_schedule(&moved, Some(1)).await.unwrap());
    let read = store
        .get_schedule(&t, "wf", "early")
        .await
        .unwrap()
        .expect("there");
    assert_eq!(
        (read.version, read.last_error.as_deref()),
        (2, moved.last_error.as_deref())
    );
    assert_eq!(read.definition, early.definition);
    assert_eq!(read.next_fires, early.next_fires);

    // Advancing moves the scheduler's position only, from the version it read.
    let mut advanced = read.clone();
    advanced.version = 3;
    advanced.last_fired = Some(Utc::now());
    advanced.next_fires = Some(vec![Utc::now() + Span::seconds(60)]);
    advanced.next_due = advanced
        .next_fires
        .as_ref()
        .and_then(|f| f.first().copied());
    advanced.definition.paused = true;
    assert!(
        !store.advance_schedule(&advanced, 1).await.unwrap(),
        "stale"
    );
    assert!(store.advance_schedule(&advanced, 2).await.unwrap());
    let read = store
        .get_schedule(&t, "wf", "early")
        .await
        .unwrap()
        .expect("there");
    assert_eq!(read.version, 3);
    assert_eq!(read.next_fires, advanced.next_fires);
    assert_eq!(
        read.last_fired.map(|t| t.timestamp_millis()),
        advanced.last_fired.map(|t| t.timestamp_millis())
    );
    assert!(!read.definition.paused, "the definition is left as it was");
    let mut back = read.clone();
    back.version = 4;
    back.next_due = early.next_due;
    assert!(store.advance_schedule(&back, 3).await.unwrap());

    assert!(
        store
            .put_schedule(&schedule(&t, "later", -10, false), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_schedule(&schedule(&t, "paused", -30, true), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_schedule(&schedule(&t, "future", 3600, false), None)
            .await
            .unwrap()
    );
    let listed: Vec<String> = store
        .list_schedules(&t, "wf")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ["early", "future", "later", "paused"]);
    let due: Vec<String> = store
        .due_schedules(Utc::now(), 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.tenant == t)
        .map(|s| s.id)
        .collect();
    if s.caps.sweeps {
        assert_eq!(due, ["early", "later"], "due, soonest first, never paused");
    } else {
        assert!(due.is_empty(), "the backend's engine fires them: {due:?}");
    }
    assert!(store.delete_schedule(&t, "wf", "early").await.unwrap());
    assert!(!store.delete_schedule(&t, "wf", "early").await.unwrap());
    assert!(
        store
            .get_schedule(&t, "wf", "early")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_schedule(&tenant(), "wf", "later")
            .await
            .unwrap()
            .is_none(),
        "tenant scoped"
    );
}

/// A tenant's schedules of every workflow are listed by workflow and id, up to the limit,
/// never another tenant's, and a deleted one is gone from the listing.
pub async fn schedules_are_listed_per_tenant_by_workflow_and_id(s: Subject) {
    let Some(store) = s.schedules.clone() else {
        return;
    };
    let (t, other) = (tenant(), tenant());
    for (workflow, id) in [("zeta", "a"), ("alpha", "b"), ("alpha", "a")] {
        let mut record = schedule(&t, id, 60, false);
        record.workflow = workflow.into();
        assert!(store.put_schedule(&record, None).await.unwrap());
    }
    assert!(
        store
            .put_schedule(&schedule(&other, "x", 60, false), None)
            .await
            .unwrap()
    );
    let listed = |limit| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            store
                .list_tenant_schedules(&t, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|r| format!("{}/{}", r.workflow, r.id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(10).await, ["alpha/a", "alpha/b", "zeta/a"]);
    assert_eq!(listed(2).await, ["alpha/a", "alpha/b"], "at most the limit");
    assert!(store.delete_schedule(&t, "zeta", "a").await.unwrap());
    assert_eq!(listed(10).await, ["alpha/a", "alpha/b"], "deleted");
}
