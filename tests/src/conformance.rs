//! The port contract, as plain async checks over `Arc<dyn Store>` and `Arc<dyn Queue>`.
//!
//! Every backend runs the same list through [`conformance_tests!`]. Where backends differ,
//! [`Caps`] says so; the checks never wipe shared state and use fresh random ids.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use serde_json::json;

use flowgate_core::StoreError;
use flowgate_core::message::QueueMessage;
use flowgate_core::model::{
    Dispatch, EventKind, HistoryEvent, InstanceCursor, RequestRecord, RequestStatus, Workflow,
};
use flowgate_core::ports::{
    Creation, Enqueued, Envelope, Liveness, Outbox, Queue, RequestUpdate, Store, UpdateOutcome,
    Upsert,
};
use flowgate_core::trace::TraceContext;

use crate::fixtures::{count_events, created, instance, record, tenant};

pub use crate::conformance_backfills::*;
pub use crate::conformance_dispatch::*;
pub use crate::conformance_dlq::*;
pub use crate::conformance_schedules::*;

/// What a backend under test can do, where backends legitimately differ.
#[derive(Debug, Clone)]
pub struct Caps {
    /// The queue's visibility timeout (keep it short: checks wait for it to expire).
    pub visibility_timeout: Duration,
    /// The queue's maximum receive count before dead-lettering.
    pub max_receive_count: u32,
    /// Whether `Queue::liveness` can answer (SQS cannot).
    pub liveness: bool,
    /// Whether `Store::create_request` commits an outbox message with the record.
    pub outbox: bool,
    /// Whether Flowgate's scheduler sweeps the schedules (`due_schedules` finds them), or
    /// the backend's own engine fires them (and `due_schedules` finds none).
    pub sweeps: bool,
    /// Whether finished requests expire by themselves (DynamoDB's TTL), so that
    /// `Store::expire_requests` removes none.
    pub self_expiring: bool,
}

/// Writes an unreadable request record for (tenant, request id) behind the store's back,
/// as disk damage or a foreign writer would.
pub type Corrupt = Arc<
    dyn Fn(String, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A backend under test: fresh for each check.
pub struct Subject {
    /// Its store.
    pub store: Arc<dyn Store>,
    /// Its queue, empty at the start of the check.
    pub queue: Arc<dyn Queue>,
    /// Its schedules, where it keeps them.
    pub schedules: Option<Arc<dyn flowgate_core::ports::Schedules>>,
    /// Its backfills, where it keeps them.
    pub backfills: Option<Arc<dyn flowgate_core::ports::Backfills>>,
    /// What it can do.
    pub caps: Caps,
    /// Damages a stored request record.
    pub corrupt: Corrupt,
    /// Whatever must live as long as the subject (a temporary directory, say).
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Generates one `#[tokio::test]` per check, each over a fresh subject from `$make`
/// (an async expression yielding a [`Subject`]). With `, ignored: "why"`, the tests are
/// `#[ignore]`d with that reason (they run under `--include-ignored`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr, ignored: $why:literal) => {
        $crate::conformance_tests!(@list [#[ignore = $why]] $make);
    };
    ($make:expr) => {
        $crate::conformance_tests!(@list [] $make);
    };
    (@list [$($attr:tt)*] $make:expr) => {
        $crate::conformance_tests!(@each [$($attr)*] $make;
            workflow_upsert_and_read,
            ds_codes_find_one_workflow_per_tenant,
            create_request_is_conditional,
            outbox_commits_with_the_record_or_not_at_all,
            concurrent_creates_have_one_winner,
            update_request_respects_guards,
            history_is_bounded_and_details_cut,
            create_instance_is_exactly_once,
            concurrent_instance_creation_creates_one,
            list_instances_pages_newest_first,
            list_pending_finds_only_overdue_pending,
            only_finished_requests_past_retention_expire,
            send_receive_ack,
            retry_later_redelivers_with_higher_count,
            visibility_timeout_redelivers,
            dead_letter_keeps_reason,
            unhandled_message_moves_to_dlq_after_max_receives,
            dead_letters_peek_claim_release_delete,
            dead_letters_restore_as_they_were,
            schedules_are_versioned_listed_found_due_and_deleted,
            schedules_are_listed_per_tenant_by_workflow_and_id,
            backfills_keep_every_date_are_versioned_and_found_running,
            backfills_are_listed_per_tenant_newest_first,
            hand_off_reaches_the_target_once,
            a_corrupt_record_is_an_error_never_a_default,
            the_audit_counts_a_tenants_window_and_nothing_else,
            run_slots_hold_wait_release_once_and_time_out
        );
    };
    (@each [$($attr:tt)*] $make:expr; $check:ident $(, $rest:ident)*) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            $crate::fixtures::init_tracing();
            let subject = $make.await;
            $crate::conformance::$check(subject).await;
        }
        $crate::conformance_tests!(@each [$($attr)*] $make; $($rest),*);
    };
    (@each [$($attr:tt)*] $make:expr;) => {};
}

fn workflow(tenant: &str, code: &str, online: bool) -> Workflow {
    let now = Utc::now();
    Workflow {
        tenant: tenant.to_owned(),
        code: code.to_owned(),
        name: format!("{code} name"),
        online,
        params_schema: json!({"type": "object"}),
        version: 0,
        created_at: now,
        updated_at: now,
        ds_code: None,
        ds_project_code: None,
        target: None,
        runs: Default::default(),
    }
}

/// Put creates then updates; get reads what was put, with the version bumped and the
/// original creation time kept; an unknown code reads as `None`.
pub async fn workflow_upsert_and_read(s: Subject) {
    let t = tenant();
    let first = workflow(&t, "orders", true);
    assert_eq!(s.store.put_workflow(&first).await.unwrap(), Upsert::Created);
    let read = s.store.get_workflow(&t, "orders").await.unwrap().unwrap();
    assert_eq!(
        (read.name.as_str(), read.online, read.version),
        ("orders name", true, 1)
    );

    let mut second = workflow(&t, "orders", false);
    second.updated_at = first.updated_at + Span::seconds(5);
    assert_eq!(
        s.store.put_workflow(&second).await.unwrap(),
        Upsert::Updated
    );
    let read = s.store.get_workflow(&t, "orders").await.unwrap().unwrap();
    assert!(!read.online);
    assert_eq!(read.version, 2);
    assert_eq!(
        read.created_at.timestamp_millis(),
        first.created_at.timestamp_millis()
    );
    assert!(s.store.get_workflow(&t, "missing").await.unwrap().is_none());
    assert!(
        s.store
            .get_workflow(&tenant(), "orders")
            .await
            .unwrap()
            .is_none(),
        "tenant scoped"
    );
}

/// A workflow is found by its DolphinScheduler code within its tenant only; a code the
/// workflow drops no longer finds it and is free for another; a code another workflow
/// carries cannot be taken.
pub async fn ds_codes_find_one_workflow_per_tenant(s: Subject) {
    let t = tenant();
    let ds = i64::from(fastrand::u32(1..u32::MAX));
    let mut orders = workflow(&t, "orders", true);
    orders.ds_code = Some(ds);
    orders.ds_project_code = Some(7);
    s.store.put_workflow(&orders).await.unwrap();
    let found = s.store.workflow_by_ds_code(&t, ds).await.unwrap().unwrap();
    assert_eq!(
        (found.code.as_str(), found.ds_project_code),
        ("orders", Some(7))
    );
    assert!(
        s.store
            .workflow_by_ds_code(&tenant(), ds)
            .await
            .unwrap()
            .is_none()
    );

    let mut taker = workflow(&t, "taker", true);
    taker.ds_code = Some(ds);
    assert!(
        s.store.put_workflow(&taker).await.is_err(),
        "a carried code is taken"
    );
    let found = s.store.workflow_by_ds_code(&t, ds).await.unwrap().unwrap();
    assert_eq!(found.code, "orders");

    orders.ds_code = Some(ds + 1);
    s.store.put_workflow(&orders).await.unwrap();
    assert!(s.store.workflow_by_ds_code(&t, ds).await.unwrap().is_none());
    let found = s
        .store
        .workflow_by_ds_code(&t, ds + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.code, "orders");
    s.store.put_workflow(&taker).await.unwrap();
    let found = s.store.workflow_by_ds_code(&t, ds).await.unwrap().unwrap();
    assert_eq!(found.code, "taker", "a dropped code is free");
}

/// A second create of the same request id fails with the first record, unchanged.
pub async fn create_request_is_conditional(s: Subject) {
    let t = tenant();
    let first = record(&t, "wf", Utc::now());
    s.store.create_request(&first, None).await.unwrap();
    let read = stored(&s, &t, &first.request_id).await;
    assert_eq!(read.instance_id, first.instance_id);
    assert_eq!(read.status, RequestStatus::Accepted);
    assert_eq!(read.history.len(), 1);
    assert_eq!(read.history[0].kind, EventKind::Accepted);

    let mut second = record(&t, "other", Utc::now());
    second.request_id = first.request_id.clone();
    match s.store.create_request(&second, None).await {
        Err(StoreError::AlreadyExists { existing }) => {
            assert_eq!(existing.instance_id, first.instance_id);
            // A store may keep a fingerprint's first 128 bits: it still tells the payload.
            assert!(
                flowgate_core::ids::same_payload(&existing.fingerprint, &first.fingerprint),
                "{} is not {}'s",
                existing.fingerprint,
                first.fingerprint
            );
            assert!(!flowgate_core::ids::same_payload(
                &existing.fingerprint,
                &second.fingerprint
            ));
            assert_eq!(existing.spec.workflow, "wf");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let read = stored(&s, &t, &first.request_id).await;
    assert_eq!(read.spec.workflow, "wf", "the loser changed nothing");
    assert!(
        s.store
            .get_request(&tenant(), &first.request_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// With an outbox, a store either commits the message, the `enqueued` event and
/// `pending_since` with the record, or (without an outbox) sends nothing; a losing create
/// never sends.
pub async fn outbox_commits_with_the_record_or_not_at_all(s: Subject) {
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    let outbox = Outbox {
        envelope: QueueMessage::envelope_for(&r),
        event: HistoryEvent::now(EventKind::Enqueued, "sent to the queue"),
    };
    let answer = s.store.create_request(&r, Some(&outbox)).await.unwrap();
    let read = stored(&s, &t, &r.request_id).await;
    let got = receive_all(s.queue.as_ref(), 1, Duration::from_secs(1)).await;
    let kinds: Vec<EventKind> = read.history.iter().map(|h| h.kind).collect();
    if s.caps.outbox {
        assert_eq!(answer, Enqueued::Yes);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, outbox.envelope.body);
        assert_eq!(got[0].request_id.as_deref(), Some(r.request_id.as_str()));
        assert!(read.pending_since.is_some());
        assert_eq!(kinds, [EventKind::Accepted, EventKind::Enqueued]);
        s.queue.ack(&got[0]).await.unwrap();
    } else {
        assert_eq!(answer, Enqueued::No);
        assert!(got.is_empty(), "a store without an outbox sends nothing");
        assert!(read.pending_since.is_none());
        assert_eq!(kinds, [EventKind::Accepted]);
    }
    let mut loser = record(&t, "wf", Utc::now());
    loser.request_id = r.request_id.clone();
    let lost = s.store.create_request(&loser, Some(&outbox)).await;
    assert!(matches!(lost, Err(StoreError::AlreadyExists { .. })));
    assert_no_message(
        s.queue.as_ref(),
        Duration::from_millis(300),
        "a losing create sends nothing",
    )
    .await;
}

/// Of many concurrent creates of one request id, exactly one wins, and every loser learns
/// the winner's record.
pub async fn concurrent_creates_have_one_winner(s: Subject) {
    let t = tenant();
    let base = record(&t, "wf", Utc::now());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut candidate = record(&t, "wf", Utc::now());
        candidate.request_id = base.request_id.clone();
        let store = s.store.clone();
        tasks.spawn(async move {
            let mine = candidate.instance_id.clone();
            (mine, store.create_request(&candidate, None).await)
        });
    }
    let mut winners = Vec::new();
    let mut told = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (mine, Ok(_)) => winners.push(mine),
            (_, Err(StoreError::AlreadyExists { existing })) => {
                told.insert(existing.instance_id);
            }
            (_, Err(e)) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert!(
        told.iter().all(|id| *id == winners[0]),
        "losers learn the winner"
    );
}

/// `only_if` guards, `NotFound`, status changes, pending bookkeeping and history order.
pub async fn update_request_respects_guards(s: Subject) {
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    s.store.create_request(&r, None).await.unwrap();
    let missing = s
        .store
        .update_request(
            &t,
            "no-such-request",
            &RequestUpdate::event(HistoryEvent::now(EventKind::Enqueued, "x")),
        )
        .await
        .unwrap();
    assert_eq!(missing, UpdateOutcome::NotFound);

    let enqueued = HistoryEvent::now(EventKind::Enqueued, "sent");
    let touch = RequestUpdate {
        touch_pending: true,
        ..RequestUpdate::event(enqueued.clone())
    };
    assert_eq!(
        s.store
            .update_request(&t, &r.request_id, &touch)
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );
    let read = stored(&s, &t, &r.request_id).await;
    assert_eq!(
        read.pending_since.map(|p| p.timestamp_millis()),
        Some(enqueued.at.timestamp_millis())
    );

    let failed = RequestUpdate {
        only_if: Some(RequestStatus::Accepted),
        set_attempts: Some(2),
        set_last_error: Some("boom".into()),
        ..RequestUpdate::event(HistoryEvent::now(
            EventKind::DeliveryFailed,
            "delivery 2 failed: boom",
        ))
    };
    assert_eq!(
        s.store
            .update_request(&t, &r.request_id, &failed)
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );

    let dead = RequestUpdate {
        only_if: Some(RequestStatus::Accepted),
        set_status: Some(RequestStatus::Dead),
        set_last_error: Some("gave up".into()),
        ..RequestUpdate::event(HistoryEvent::now(EventKind::DeadLettered, "gave up"))
    };
    assert_eq!(
        s.store
            .update_request(&t, &r.request_id, &dead)
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        s.store
            .update_request(&t, &r.request_id, &dead)
            .await
            .unwrap(),
        UpdateOutcome::Skipped(RequestStatus::Dead),
        "guard holds"
    );
    let read = stored(&s, &t, &r.request_id).await;
    assert_eq!(read.status, RequestStatus::Dead);
    assert_eq!(read.attempts, 2);
    assert_eq!(read.last_error.as_deref(), Some("gave up"));
    assert_eq!(
        read.pending_since, None,
        "only pending requests have pending_since"
    );
    let kinds: Vec<EventKind> = read.history.iter().map(|h| h.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Accepted,
            EventKind::Enqueued,
            EventKind::DeliveryFailed,
            EventKind::DeadLettered
        ]
    );
}

/// Whatever the backend, a history keeps its first event and the newest ones, at most
/// `MAX_HISTORY`, each detail cut to `MAX_DETAIL` bytes, through updates and creation alike.
pub async fn history_is_bounded_and_details_cut(s: Subject) {
    use flowgate_core::record::{MAX_DETAIL, MAX_HISTORY};
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    s.store.create_request(&r, None).await.unwrap();
    let long = "é".repeat(MAX_DETAIL);
    for n in 0..MAX_HISTORY + 20 {
        let update = RequestUpdate::event(HistoryEvent::now(
            EventKind::DeliveryFailed,
            format!("{n}: {long}"),
        ));
        s.store
            .update_request(&t, &r.request_id, &update)
            .await
            .unwrap();
    }
    s.store
        .create_instance(&instance(&r, Utc::now()), &created(3))
        .await
        .unwrap();
    let read = stored(&s, &t, &r.request_id).await;
    assert_eq!(read.history.len(), MAX_HISTORY);
    assert_eq!(
        read.history[0].kind,
        EventKind::Accepted,
        "the first event stays"
    );
    assert_eq!(
        read.history.last().map(|h| h.kind),
        Some(EventKind::Created)
    );
    for h in &read.history {
        assert!(
            h.detail.len() <= MAX_DETAIL,
            "a detail of {} bytes",
            h.detail.len()
        );
    }
    let cut = &read.history[read.history.len() - 2].detail;
    assert!(
        cut.starts_with(&format!("{}: ", MAX_HISTORY + 19)),
        "the newest are kept"
    );
    assert!(cut.len() > MAX_DETAIL - 2, "cut at the limit, not before");
    assert_eq!(read.attempts, 3);
}

/// The first create makes the instance and marks the request `CREATED` in one step; a
/// redelivery finds it there and changes nothing; a request with no record fails permanently.
pub async fn create_instance_is_exactly_once(s: Subject) {
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    s.store.create_request(&r, None).await.unwrap();
    let i = instance(&r, Utc::now());
    let created = created(1);
    assert!(
        s.store
            .get_instance(&t, &i.instance_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.store.create_instance(&i, &created).await.unwrap(),
        Creation::Created
    );
    assert_eq!(
        s.store.create_instance(&i, &created).await.unwrap(),
        Creation::AlreadyExisted
    );

    let read = s
        .store
        .get_instance(&t, &i.instance_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.request_id, r.request_id);
    assert_eq!(read.params, r.spec.params);
    assert_eq!(read.priority, r.spec.priority);
    let req = stored(&s, &t, &r.request_id).await;
    assert_eq!(req.status, RequestStatus::Created);
    assert_eq!(
        req.attempts, 1,
        "attempts counts the delivery that created it"
    );
    assert_eq!(req.pending_since, None);
    assert_eq!(count_events(&req.history, EventKind::Created), 1);

    let orphan = instance(&record(&t, "wf", Utc::now()), Utc::now());
    let err = s
        .store
        .create_instance(&orphan, &created)
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable(),
        "a missing request record is permanent: {err}"
    );
    assert!(
        s.store
            .get_instance(&t, &orphan.instance_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Concurrent deliveries of one message create one instance.
pub async fn concurrent_instance_creation_creates_one(s: Subject) {
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    s.store.create_request(&r, None).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, i) = (s.store.clone(), instance(&r, Utc::now()));
        tasks.spawn(async move { store.create_instance(&i, &created(1)).await });
    }
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.unwrap().unwrap() == Creation::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

/// Pages are newest first, continue exactly where the cursor says, and stay in their workflow.
pub async fn list_instances_pages_newest_first(s: Subject) {
    let t = tenant();
    let base = Utc::now();
    let mut expected = Vec::new();
    for n in 0..7 {
        let r = record(&t, "listed", base);
        s.store.create_request(&r, None).await.unwrap();
        // Two share a timestamp so the id tie-break is exercised.
        let at = base + Span::milliseconds(if n == 3 { 2 } else { n });
        let i = instance(&r, at);
        s.store.create_instance(&i, &created(1)).await.unwrap();
        expected.push((at.timestamp_micros(), i.instance_id));
    }
    let other = record(&t, "unlisted", base);
    s.store.create_request(&other, None).await.unwrap();
    s.store
        .create_instance(&instance(&other, base), &created(1))
        .await
        .unwrap();
    expected.sort();
    expected.reverse();

    let mut seen = Vec::new();
    let mut after: Option<InstanceCursor> = None;
    loop {
        let page = s
            .store
            .list_instances(&t, "listed", 3, after.as_ref())
            .await
            .unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|i| (i.created_at.timestamp_micros(), i.instance_id.clone())),
        );
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(InstanceCursor::after(last)),
            _ => break,
        }
    }
    assert_eq!(seen, expected);
}

/// The tenant's requests the store lists as pending since before `cutoff`.
async fn overdue_of(
    s: &Subject,
    tenant: &str,
    cutoff: chrono::DateTime<Utc>,
) -> Vec<RequestRecord> {
    s.store
        .list_pending(cutoff, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.tenant == tenant)
        .collect()
}

/// Past retention, finished requests (`CREATED` with nothing owed, `DISPATCHED`, `ARCHIVED`)
/// are removed, a batch at a time; never a `DEAD` one, one still `ACCEPTED`, one owed a
/// hand-off, or a recent one. A self-expiring store removes none here.
pub async fn only_finished_requests_past_retention_expire(s: Subject) {
    let t = tenant();
    let long_ago = Utc::now() - Span::days(30);
    let old = |status: RequestStatus, dispatch: Option<Dispatch>| {
        let mut r = record(&t, "wf", long_ago);
        r.status = status;
        r.dispatch = dispatch;
        r
    };
    let handed = Dispatch {
        dispatched_at: Some(long_ago),
        reference: Some("HTTP 200".into()),
        ..Dispatch::owed("webhook")
    };
    let finished = [
        old(RequestStatus::Created, None),
        old(RequestStatus::Dispatched, Some(handed)),
        old(RequestStatus::Archived, None),
    ];
    let mut owed = old(RequestStatus::Created, Some(Dispatch::owed("webhook")));
    owed.pending_since = Some(long_ago);
    let mut recent = record(&t, "wf", Utc::now());
    recent.status = RequestStatus::Created;
    let kept = [
        old(RequestStatus::Dead, None),
        old(RequestStatus::Accepted, None),
        owed,
        recent,
    ];
    for r in finished.iter().chain(&kept) {
        s.store.create_request(r, None).await.unwrap();
    }
    let before = Utc::now() - Span::days(7);
    let mut removed = Vec::new();
    loop {
        let n = s.store.expire_requests(before, 2).await.unwrap();
        assert!(n <= 2, "a batch removed {n}, past its limit of 2");
        if n == 0 {
            break;
        }
        removed.push(n);
    }
    let expected: &[usize] = if s.caps.self_expiring { &[] } else { &[2, 1] };
    assert_eq!(removed, expected);
    for r in &finished {
        let found = s.store.get_request(&t, &r.request_id).await.unwrap();
        assert_eq!(found.is_some(), s.caps.self_expiring, "{:?}", r.status);
    }
    for r in &kept {
        let found = s.store.get_request(&t, &r.request_id).await.unwrap();
        assert!(found.is_some(), "{:?} was removed", r.status);
    }
}

/// Only pending requests (`ACCEPTED`, or `CREATED` with a hand-off owed) pending since before
/// the cutoff are listed, oldest first. Without an outbox, an `ACCEPTED` request is listed
/// only once a note (a failed send) said its message will not come on its own.
pub async fn list_pending_finds_only_overdue_pending(s: Subject) {
    let t = tenant();
    let long_ago = Utc::now() - Span::hours(1000);
    let old = record(&t, "wf", long_ago);
    let older = record(&t, "wf", long_ago - Span::seconds(1));
    let fresh = record(&t, "wf", Utc::now());
    let done = record(&t, "wf", long_ago);
    for r in [&old, &older, &fresh, &done] {
        s.store.create_request(r, None).await.unwrap();
    }
    s.store
        .create_instance(&instance(&done, Utc::now()), &created(1))
        .await
        .unwrap();
    let cutoff = Utc::now() - Span::hours(999);
    let ids = |records: &[RequestRecord]| -> Vec<String> {
        records.iter().map(|r| r.request_id.clone()).collect()
    };
    if !s.caps.outbox {
        // Without an outbox the caller sends after the write, and a sent message is
        // delivered: a request is pending only once a note says the queue will not deliver
        // it (a failed send), from the note's time.
        assert!(overdue_of(&s, &t, cutoff).await.is_empty());
        for r in [&old, &older] {
            let mut failed = HistoryEvent::now(EventKind::EnqueueFailed, "the queue is down");
            failed.at = r.accepted_at;
            let note = RequestUpdate {
                touch_pending: true,
                ..RequestUpdate::event(failed)
            };
            s.store
                .update_request(&t, &r.request_id, &note)
                .await
                .unwrap();
        }
    }
    let pending = overdue_of(&s, &t, cutoff).await;
    assert_eq!(
        ids(&pending),
        [older.request_id.clone(), old.request_id.clone()]
    );

    // Touching pending_since (a send) takes a request out of the overdue set.
    let touch = RequestUpdate {
        touch_pending: true,
        ..RequestUpdate::event(HistoryEvent::now(EventKind::Reenqueued, "again"))
    };
    s.store
        .update_request(&t, &old.request_id, &touch)
        .await
        .unwrap();
    let pending = overdue_of(&s, &t, cutoff).await;
    assert_eq!(ids(&pending), std::slice::from_ref(&older.request_id));

    // Created with a hand-off owed is pending (from its creation); once handed off, or
    // created record-only, it is not.
    let mut owed = record(&t, "wf", long_ago);
    owed.dispatch = Some(Dispatch::owed("webhook"));
    let mut handed = owed.clone();
    handed.request_id = format!("{}-handed", owed.request_id);
    handed.instance_id = format!("{}-handed", owed.instance_id);
    for r in [&owed, &handed] {
        s.store.create_request(r, None).await.unwrap();
        let mut creation = created(1);
        creation.touch_pending = true;
        creation.event.at = long_ago + Span::seconds(5);
        s.store
            .create_instance(&instance(r, Utc::now()), &creation)
            .await
            .unwrap();
    }
    let mut dispatched = Dispatch::owed("webhook");
    dispatched.dispatched_at = Some(Utc::now());
    let hand_off = RequestUpdate {
        set_status: Some(RequestStatus::Dispatched),
        set_dispatch: Some(dispatched),
        ..RequestUpdate::event(HistoryEvent::now(EventKind::Dispatched, "HTTP 200"))
    };
    s.store
        .update_request(&t, &handed.request_id, &hand_off)
        .await
        .unwrap();
    let pending = overdue_of(&s, &t, cutoff).await;
    assert_eq!(
        ids(&pending),
        [older.request_id.clone(), owed.request_id.clone()]
    );
    assert_eq!(pending[1].status, RequestStatus::Created);
    let handed = s
        .store
        .get_request(&t, &handed.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(handed.status, RequestStatus::Dispatched);
    assert!(handed.pending_since.is_none() && handed.dispatch.is_some_and(|d| d.is_done()));
}

/// A request record that must exist.
async fn stored(
    s: &Subject,
    tenant: &str,
    request_id: &str,
) -> flowgate_core::model::RequestRecord {
    s.store
        .get_request(tenant, request_id)
        .await
        .unwrap()
        .expect("the record exists")
}

/// Asserts that nothing is delivered within `wait`.
pub(crate) async fn assert_no_message(queue: &dyn Queue, wait: Duration, why: &str) {
    let got = queue.receive(10, wait).await.unwrap();
    assert!(got.is_empty(), "{why}: got {got:?}");
}

pub(crate) fn envelope(tenant: &str, n: u32) -> Envelope {
    Envelope {
        tenant: tenant.to_owned(),
        request_id: format!("req-{n}-{}", uuid::Uuid::now_v7().simple()),
        body: format!("{{\"n\":{n}}}"),
        traceparent: Some(TraceContext::root().to_string()),
    }
}

pub(crate) async fn receive_all(
    q: &dyn Queue,
    want: usize,
    within: Duration,
) -> Vec<flowgate_core::ports::Delivery> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(
            q.receive(want - got.len(), Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    got
}

/// Sent messages arrive with body and attributes, stay invisible while in flight, and an
/// acknowledged message is gone.
pub async fn send_receive_ack(s: Subject) {
    let t = tenant();
    let sent: Vec<Envelope> = (0..3).map(|n| envelope(&t, n)).collect();
    for e in &sent {
        s.queue.send(e).await.unwrap();
    }
    let got = receive_all(s.queue.as_ref(), 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    for d in &got {
        let e = sent.iter().find(|e| e.body == d.body).expect("known body");
        assert_eq!(d.tenant.as_deref(), Some(t.as_str()));
        assert_eq!(d.request_id.as_deref(), Some(e.request_id.as_str()));
        assert_eq!(d.receive_count, 1);
        assert_eq!(
            d.traceparent, e.traceparent,
            "the trace travels beside the body"
        );
    }
    assert_no_message(s.queue.as_ref(), Duration::from_millis(100), "in flight").await;
    if s.caps.liveness {
        assert_eq!(
            s.queue.liveness(&t, &sent[0].request_id).await.unwrap(),
            Liveness::Live
        );
    }
    for d in &got {
        s.queue.ack(d).await.unwrap();
    }
    if s.caps.liveness {
        assert_eq!(
            s.queue.liveness(&t, &sent[0].request_id).await.unwrap(),
            Liveness::Absent
        );
    }
    tokio::time::sleep(s.caps.visibility_timeout + Duration::from_millis(100)).await;
    assert_no_message(
        s.queue.as_ref(),
        Duration::from_millis(200),
        "acked is gone",
    )
    .await;
}

/// A message put back with `retry_later` comes again, counted.
pub async fn retry_later_redelivers_with_higher_count(s: Subject) {
    let t = tenant();
    s.queue.send(&envelope(&t, 1)).await.unwrap();
    let first = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
    s.queue
        .retry_later(&first[0], Duration::ZERO)
        .await
        .unwrap();
    let second = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, first[0].body);
    assert_eq!(second[0].receive_count, 2);
    s.queue.ack(&second[0]).await.unwrap();
}

/// A message neither acked nor put back returns after the visibility timeout.
pub async fn visibility_timeout_redelivers(s: Subject) {
    let t = tenant();
    s.queue.send(&envelope(&t, 1)).await.unwrap();
    let first = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    let again = receive_all(
        s.queue.as_ref(),
        1,
        s.caps.visibility_timeout * 3 + Duration::from_secs(2),
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    s.queue.ack(&again[0]).await.unwrap();
}

/// A dead-lettered message leaves the main queue, and (where the queue can tell) keeps its
/// reason.
pub async fn dead_letter_keeps_reason(s: Subject) {
    let t = tenant();
    let e = envelope(&t, 1);
    s.queue.send(&e).await.unwrap();
    let got = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
    s.queue
        .dead_letter(&got[0], "no such workflow engine")
        .await
        .unwrap();
    tokio::time::sleep(s.caps.visibility_timeout + Duration::from_millis(100)).await;
    assert_no_message(
        s.queue.as_ref(),
        Duration::from_millis(200),
        "no message expected",
    )
    .await;
    if s.caps.liveness {
        assert_eq!(
            s.queue.liveness(&t, &e.request_id).await.unwrap(),
            Liveness::DeadLettered("no such workflow engine".into())
        );
    }
}

/// A message delivered `max_receive_count` times without a verdict goes to the DLQ.
pub async fn unhandled_message_moves_to_dlq_after_max_receives(s: Subject) {
    let t = tenant();
    let e = envelope(&t, 1);
    s.queue.send(&e).await.unwrap();
    for n in 1..=s.caps.max_receive_count {
        let got = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "delivery {n}");
        assert_eq!(got[0].receive_count, n);
        s.queue.retry_later(&got[0], Duration::ZERO).await.unwrap();
    }
    assert_no_message(
        s.queue.as_ref(),
        Duration::from_millis(300),
        "no message expected",
    )
    .await;
    if s.caps.liveness {
        assert!(matches!(
            s.queue.liveness(&t, &e.request_id).await.unwrap(),
            Liveness::DeadLettered(_)
        ));
    }
    let letters = s.queue.dlq_peek(10).await.unwrap();
    assert_eq!(letters.len(), 1, "the redriven message is a dead letter");
    assert_eq!(letters[0].body, e.body);
}

/// A record that no longer reads (its spec damaged) is a permanent error that names it, on
/// every read that meets it, never a record filled with defaults.
pub async fn a_corrupt_record_is_an_error_never_a_default(s: Subject) {
    let t = tenant();
    let r = record(&t, "wf", Utc::now());
    s.store.create_request(&r, None).await.unwrap();
    (s.corrupt)(t.clone(), r.request_id.clone()).await;
    let read = s.store.get_request(&t, &r.request_id).await;
    let error = read.expect_err("a corrupt record is an error");
    assert!(!error.is_retryable(), "permanent: {error}");
    assert!(
        error.chain().contains(&r.request_id),
        "names the record: {}",
        error.chain()
    );
    let update = s
        .store
        .update_request(
            &t,
            &r.request_id,
            &RequestUpdate::event(HistoryEvent::now(EventKind::DeliveryFailed, "x")),
        )
        .await;
    assert!(
        update.is_err(),
        "an update does not rewrite it from defaults"
    );
    let replay = s.store.create_request(&r, None).await;
    assert!(
        matches!(replay, Err(StoreError::Backend(ref e)) if !e.is_retryable()),
        "a conditional create that meets it says so: {replay:?}"
    );
}

/// Sets a stored request's status, as the stage that moves it there would.
async fn move_to(s: &Subject, r: &RequestRecord, status: RequestStatus) {
    let update = RequestUpdate {
        set_status: Some(status),
        ..RequestUpdate::event(HistoryEvent::now(EventKind::DeliveryFailed, "moved"))
    };
    assert_eq!(
        s.store
            .update_request(&r.tenant, &r.request_id, &update)
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );
}

/// The audit's facts: every request the tenant accepted in the window, grouped by
/// workflow, status, the grace cutoff and its instance; the overdue ones listed; nothing of
/// another tenant or from outside the window; and, where the store looks instances up, a
/// status that claims a missing instance listed.
pub async fn the_audit_counts_a_tenants_window_and_nothing_else(s: Subject) {
    let (t, other) = (tenant(), tenant());
    let now = Utc::now();
    let in_flight = record(&t, "a", now - Span::seconds(5));
    let overdue = record(&t, "a", now - Span::minutes(10));
    let created_one = record(&t, "a", now - Span::minutes(3));
    let dispatched = record(&t, "a", now - Span::minutes(4));
    let dead = record(&t, "b", now - Span::minutes(5));
    let archived = record(&t, "b", now - Span::minutes(6));
    let claims = record(&t, "b", now - Span::minutes(7));
    let too_old = record(&t, "a", now - Span::hours(2));
    let theirs = record(&other, "a", now - Span::minutes(1));
    for r in [
        &in_flight,
        &overdue,
        &created_one,
        &dispatched,
        &dead,
        &archived,
        &claims,
        &too_old,
        &theirs,
    ] {
        s.store.create_request(r, None).await.unwrap();
    }
    for r in [&created_one, &dispatched] {
        let made = s
            .store
            .create_instance(&instance(r, now), &created(1))
            .await
            .unwrap();
        assert_eq!(made, Creation::Created);
    }
    move_to(&s, &dispatched, RequestStatus::Dispatched).await;
    move_to(&s, &dead, RequestStatus::Dead).await;
    move_to(&s, &archived, RequestStatus::Archived).await;
    // A status that claims an instance the store does not hold.
    move_to(&s, &claims, RequestStatus::Created).await;

    let cutoff = now - Span::minutes(1);
    let facts = s
        .store
        .audit(&t, now - Span::hours(1), now + Span::seconds(1), cutoff, 10)
        .await
        .unwrap();
    let count = |workflow: &str, status: RequestStatus, past: bool| {
        facts
            .groups
            .iter()
            .filter(|g| g.workflow == workflow && g.status == status && g.past_grace == past)
            .map(|g| g.count)
            .sum::<u64>()
    };
    let total: u64 = facts.groups.iter().map(|g| g.count).sum();
    assert_eq!(total, 7, "the window's requests, and none other: {facts:?}");
    assert_eq!(count("a", RequestStatus::Accepted, false), 1);
    assert_eq!(count("a", RequestStatus::Accepted, true), 1);
    assert_eq!(count("a", RequestStatus::Created, true), 1);
    assert_eq!(count("a", RequestStatus::Dispatched, true), 1);
    assert_eq!(count("b", RequestStatus::Dead, true), 1);
    assert_eq!(count("b", RequestStatus::Archived, true), 1);
    assert_eq!(count("b", RequestStatus::Created, true), 1);
    let listed: Vec<&str> = facts
        .overdue
        .iter()
        .map(|p| p.request_id.as_str())
        .collect();
    assert_eq!(listed, [overdue.request_id.as_str()]);
    assert_eq!(facts.overdue[0].workflow, "a");
    let with_instance: u64 = facts
        .groups
        .iter()
        .filter(|g| g.instance)
        .map(|g| g.count)
        .sum();
    if facts.instances_checked {
        assert_eq!(with_instance, 2, "{facts:?}");
        assert_eq!(
            facts.missing_instances,
            std::slice::from_ref(&claims.request_id)
        );
    } else {
        assert_eq!(with_instance, 3, "status taken at its word: {facts:?}");
        assert!(facts.missing_instances.is_empty());
    }
}

/// A limit of one: the first start is created and holds the slot (and its deadline is
/// found once past); the second waits (a copy of its message creates nothing); the first's
/// final status releases the second exactly once, which is then created in its reserved
/// slot; under `skip`, a start at the limit is skipped with the reason.
pub async fn run_slots_hold_wait_release_once_and_time_out(s: Subject) {
    use flowgate_core::runs::{self, OnLimit, RunPolicy, RunStatus, Slot};
    let t = tenant();
    let slot = Slot {
        key: "acme".into(),
        limit: 1,
        on_limit: OnLimit::Queue,
    };
    let policy = RunPolicy {
        slot: Some(slot.clone()),
        timeout: Some(1),
    };
    let start = |offset: i64, policy: &RunPolicy, workflow: &str| {
        let mut r = record(&t, workflow, Utc::now() + Span::milliseconds(offset));
        r.spec.policy = Some(policy.clone());
        r
    };
    let (a, b) = (start(0, &policy, "serial"), start(1, &policy, "serial"));
    for r in [&a, &b] {
        s.store.create_request(r, None).await.unwrap();
    }
    let ia = instance(&a, Utc::now());
    assert_eq!(
        s.store.create_instance(&ia, &created(1)).await.unwrap(),
        Creation::Created
    );
    let ib = instance(&b, Utc::now());
    let waiting = s.store.create_instance(&ib, &created(1)).await.unwrap();
    assert!(
        matches!(&waiting, Creation::Waiting(why) if why.contains("1 of 1")),
        "{waiting:?}"
    );
    let held = stored(&s, &t, &b.request_id).await;
    assert_eq!(held.status, RequestStatus::Waiting);
    assert_eq!(count_events(&held.history, EventKind::Waiting), 1);
    assert_eq!(
        s.store.create_instance(&ib, &created(2)).await.unwrap(),
        Creation::AlreadyExisted,
        "a copy of a waiting start's message creates nothing"
    );
    assert!(
        s.store
            .get_instance(&t, &ib.instance_id)
            .await
            .unwrap()
            .is_none()
    );

    // Past its time-out, the first run is found by the sweep's index.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let overdue = s.store.overdue_runs(Utc::now(), 100).await.unwrap();
    assert!(
        overdue.contains(&(t.clone(), a.request_id.clone())),
        "{overdue:?}"
    );

    // Its final status gives the slot back: the second start is released once.
    let now = Utc::now();
    let done = runs::ended(None, RunStatus::Succeeded, "done".into(), now);
    let update = runs::run_update(None, done, now, "a test");
    assert_eq!(
        s.store
            .update_request(&t, &a.request_id, &update)
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );
    let released = s.store.release_waiting(&t, "serial", &slot).await.unwrap();
    let again = s.store.release_waiting(&t, "serial", &slot).await.unwrap();
    let ids: Vec<&str> = released
        .iter()
        .chain(&again)
        .map(|r| r.request_id.as_str())
        .collect();
    assert!(ids.is_empty() || ids == [b.request_id.as_str()], "{ids:?}");
    let freed = stored(&s, &t, &b.request_id).await;
    assert_eq!(freed.status, RequestStatus::Accepted, "{:?}", freed.history);
    assert_eq!(count_events(&freed.history, EventKind::Released), 1);
    assert!(freed.pending_since.is_some(), "a released start is pending");
    assert_eq!(
        s.store.create_instance(&ib, &created(2)).await.unwrap(),
        Creation::Created,
        "created in the slot reserved for it"
    );
    let overdue = s.store.overdue_runs(Utc::now(), 100).await.unwrap();
    assert!(
        !overdue.contains(&(t.clone(), a.request_id.clone())),
        "an ended run has no deadline"
    );

    // Under `skip`, a start at the limit is skipped, with the reason, and makes nothing.
    let skip = RunPolicy {
        slot: Some(Slot {
            on_limit: OnLimit::Skip,
            ..slot.clone()
        }),
        timeout: None,
    };
    let (c, d) = (start(2, &skip, "discard"), start(3, &skip, "discard"));
    for r in [&c, &d] {
        s.store.create_request(r, None).await.unwrap();
    }
    assert_eq!(
        s.store
            .create_instance(&instance(&c, Utc::now()), &created(1))
            .await
            .unwrap(),
        Creation::Created
    );
    let skipped = s
        .store
        .create_instance(&instance(&d, Utc::now()), &created(1))
        .await
        .unwrap();
    assert!(matches!(&skipped, Creation::Skipped(_)), "{skipped:?}");
    let d_read = stored(&s, &t, &d.request_id).await;
    assert_eq!(d_read.status, RequestStatus::Skipped);
    assert!(d_read.last_error.is_some_and(|e| e.contains("1 of 1")));

    // Retention removes a skipped start, and keeps one whose run still holds its slot.
    if !s.caps.self_expiring {
        let later = Utc::now() + Span::days(1);
        s.store.expire_requests(later, 100).await.unwrap();
        assert!(
            s.store
                .get_request(&t, &d.request_id)
                .await
                .unwrap()
                .is_none(),
            "a skipped start expires"
        );
        assert!(
            s.store
                .get_request(&t, &c.request_id)
                .await
                .unwrap()
                .is_some(),
            "a run holding its slot is kept"
        );
    }
}
