//! The dead-letter scenario, shared by every backend: dead-letter a few dozen requests with an
//! injected permanent fault, then list, dry-run, replay a subset, replay again, archive,
//! restore, race two replays with the consumer, and replay everything through the native-move
//! fallback. Plus a timed replay of many letters.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use flowgate_core::message::QueueMessage;
use flowgate_core::model::{EventKind, RequestRecord, RequestStatus};
use flowgate_core::ports::{DeadLetter, Envelope};
use flowgate_core::usecases::dlq::{
    Action, ArchiveSink, ArchivedLetter, LetterFilter, ReplayOptions, ReplayReport, parse_archive,
};

use crate::fixtures::{self, count_events};
use crate::http::App;

/// An in-memory archive, as a JSONL text.
#[derive(Default)]
pub struct TextSink(pub String);

impl ArchiveSink for TextSink {
    fn write(&mut self, letters: &[ArchivedLetter]) -> std::io::Result<()> {
        for l in letters {
            self.0.push_str(&serde_json::to_string(l)?);
            self.0.push('\n');
        }
        Ok(())
    }

    fn name(&self) -> String {
        "memory".into()
    }
}

fn filter(tenant: &str) -> LetterFilter {
    LetterFilter {
        tenant: Some(tenant.to_owned()),
        ..LetterFilter::default()
    }
}

fn only(tenant: &str, workflow: &str) -> LetterFilter {
    LetterFilter {
        workflow: Some(workflow.to_owned()),
        ..filter(tenant)
    }
}

/// Handles deliveries through the consumer (over the faulty ports) until `until` holds.
async fn consume_until(app: &App, what: &str, mut until: impl AsyncFnMut() -> bool) {
    let consumer = app.consumer(5);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !until().await {
        assert!(Instant::now() < deadline, "{what}: never settled");
        for d in app
            .queue
            .receive(10, Duration::from_millis(200))
            .await
            .unwrap_or_default()
        {
            consumer.handle(d).await;
        }
    }
}

/// Starts `n` requests of `workflow` and dead-letters them: the consumer fails permanently.
pub async fn dead_letter(app: &App, tenant: &str, workflow: &str, n: usize) -> Vec<String> {
    app.faults
        .apply("consumer.create=1.0:permanent")
        .expect("plan");
    let mut ids = Vec::new();
    for i in 0..n {
        let reply = app
            .call_as(
                Some(tenant),
                "POST",
                &format!("/v1/workflows/{workflow}/instances"),
                &[],
                Some(&json!({"params": {"amount": i + 1}}).to_string()),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 202, "{}", reply.body);
        ids.push(reply.body["request_id"].as_str().expect("id").to_owned());
    }
    // A request is marked DEAD first and its letter moved after: wait for both.
    consume_until(app, "dead-lettering", async || {
        if statuses(app, tenant, &ids).await != HashMap::from([(RequestStatus::Dead, n)]) {
            return false;
        }
        let letters = app.flowgate.dlq_scan(&filter(tenant)).await.expect("scan");
        ids.iter().all(|id| {
            letters
                .iter()
                .any(|l| l.request_id.as_deref() == Some(id.as_str()))
        })
    })
    .await;
    app.faults.clear();
    ids
}

/// How many of `ids` are in each status.
pub async fn statuses(app: &App, tenant: &str, ids: &[String]) -> HashMap<RequestStatus, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        let r = app.raw_store.get_request(tenant, id).await.expect("read");
        *counts
            .entry(r.expect("no lost request").status)
            .or_default() += 1;
    }
    counts
}

/// What the dead-letter queue and the records look like: compared before and after an
/// operation that must change nothing.
async fn snapshot(app: &App, tenant: &str, ids: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut letters: Vec<_> = app
        .raw_queue
        .dlq_peek(100_000)
        .await
        .expect("peek")
        .into_iter()
        .map(|l| (l.message_id, l.body))
        .collect();
    letters.sort();
    let mut records = Vec::new();
    for id in ids {
        let r = app.raw_store.get_request(tenant, id).await.expect("read");
        records.push(format!("{r:?}"));
    }
    (letters, records)
}

/// Every `ids` request has exactly one instance, made by the consumer.
async fn assert_created_once(app: &App, tenant: &str, ids: &[String]) {
    for id in ids {
        let r = app
            .raw_store
            .get_request(tenant, id)
            .await
            .expect("read")
            .expect("record");
        assert_eq!(r.status, RequestStatus::Created, "{id}: {:?}", r.history);
        assert!(
            app.raw_store
                .get_instance(tenant, &r.instance_id)
                .await
                .expect("read")
                .is_some()
        );
        assert_eq!(count_events(&r.history, EventKind::Created), 1);
        assert!(
            r.history.iter().any(|h| h.kind == EventKind::Replayed),
            "{id}: {:?}",
            r.history
        );
    }
}

async fn count_instances(app: &App, tenant: &str, workflow: &str) -> usize {
    app.raw_store
        .list_instances(tenant, workflow, 1000, None)
        .await
        .expect("list")
        .len()
}

fn nothing_progress() -> impl Fn(&flowgate_core::usecases::dlq::LetterOutcome) + Sync {
    |_| {}
}

async fn replay(app: &App, options: ReplayOptions) -> ReplayReport {
    app.flowgate
        .dlq_replay(&options, &nothing_progress())
        .await
        .expect("replay")
}

async fn replay_filtered(app: &App, filter: LetterFilter) -> ReplayReport {
    replay(
        app,
        ReplayOptions {
            filter,
            ..ReplayOptions::default()
        },
    )
    .await
}

/// (replayed, skipped as created, failed).
fn counts(r: &ReplayReport) -> (u64, u64, u64) {
    (r.replayed, r.skipped_created, r.failed)
}

/// The dead letters every step works on: 12 of workflow alpha, 12 of beta, and a poison
/// letter, all of one fresh tenant.
pub struct Scene {
    app: Arc<App>,
    tenant: String,
    alpha: Vec<String>,
    beta: Vec<String>,
}

/// How many letters `f` selects.
async fn scan(app: &App, f: LetterFilter) -> usize {
    app.flowgate.dlq_scan(&f).await.expect("scan").len()
}

async fn setup(app: Arc<App>) -> Scene {
    let t = fixtures::tenant();
    for wf in ["alpha", "beta", "gamma"] {
        app.register_as(Some(&t), wf, true).await;
    }
    let alpha = dead_letter(&app, &t, "alpha", 12).await;
    let beta = dead_letter(&app, &t, "beta", 12).await;
    // A poison message: a body that is no request, but the tenant's attributes.
    app.raw_queue
        .send(&Envelope {
            tenant: t.clone(),
            request_id: "poison-1".into(),
            body: "{not json".into(),
            traceparent: None,
        })
        .await
        .expect("send poison");
    consume_until(&app, "poison", async || {
        app.flowgate
            .dlq_scan(&filter(&t))
            .await
            .expect("scan")
            .len()
            == 25
    })
    .await;

    Scene {
        app,
        tenant: t,
        alpha,
        beta,
    }
}

/// Listing (with every filter, and through the API), a dry run and a misspelt replay change nothing.
async fn looking_changes_nothing(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    let all: Vec<String> = s.alpha.iter().chain(&s.beta).cloned().collect();
    // Listing, with filters, changes nothing.
    let before = snapshot(app, t, &all).await;
    assert_eq!(scan(app, filter(t)).await, 25);
    assert_eq!(scan(app, only(t, "alpha")).await, 12);
    let by_error = |e: &str| LetterFilter {
        error: Some(e.into()),
        ..filter(t)
    };
    assert_eq!(scan(app, by_error("permanent")).await, 24);
    assert_eq!(scan(app, by_error("POISON")).await, 1);
    assert_eq!(scan(app, by_error("injected fault")).await, 24);
    let aged = |older: Option<u64>, newer: Option<u64>| LetterFilter {
        older_than: older.map(Duration::from_secs),
        newer_than: newer.map(Duration::from_secs),
        ..filter(t)
    };
    assert_eq!(scan(app, aged(Some(3600), None)).await, 0);
    assert_eq!(scan(app, aged(None, Some(3600))).await, 25);
    let letters = app
        .flowgate
        .dlq_scan(&only(t, "alpha"))
        .await
        .expect("scan");
    assert!(letters.iter().all(|l| l.receive_count == 1
        && l.error.contains("permanent failure")
        && l.tenant.as_deref() == Some(t)));
    // Through the API: paginated, and only the caller's letters.
    let mut seen = HashSet::new();
    let mut uri = "/v1/dlq?limit=10".to_owned();
    loop {
        let reply = app.call_as(Some(t), "GET", &uri, &[], None).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
        for item in reply.body["items"].as_array().expect("items") {
            assert!(seen.insert(item["message_id"].as_str().expect("id").to_owned()));
        }
        match reply.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/dlq?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let other = app
        .call_as(Some("someone-else"), "GET", "/v1/dlq", &[], None)
        .await;
    assert_eq!(other.body["items"], json!([]));
    app.call_as(Some(t), "GET", "/v1/dlq?older_than=soon", &[], None)
        .await
        .assert_problem(400, "invalid-request");
    assert_eq!(
        snapshot(app, t, &all).await,
        before,
        "listing changed something"
    );

    // A dry run changes nothing.
    let dry = replay(
        app,
        ReplayOptions {
            filter: only(t, "alpha"),
            dry_run: true,
            ..ReplayOptions::default()
        },
    )
    .await;
    assert_eq!((dry.replayed, dry.failed), (12, 0));
    assert_eq!(
        snapshot(app, t, &all).await,
        before,
        "a dry run changed something"
    );

    // A misspelt filter is refused, never read as "every letter".
    app.call_as(
        Some(t),
        "POST",
        "/v1/dlq/replay",
        &[],
        Some(r#"{"workflw": "alpha"}"#),
    )
    .await
    .assert_problem(400, "invalid-request");
    assert_eq!(snapshot(app, t, &all).await, before);
}

/// A filtered replay through the API creates exactly that subset; a second one changes nothing.
async fn replaying_a_subset(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    let (alpha, beta) = (&s.alpha, &s.beta);
    // Replay alpha through the API, with the fault gone and the consumer running.
    let _consumer = app.start_consumer();
    let reply = app
        .call_as(
            Some(t),
            "POST",
            "/v1/dlq/replay",
            &[],
            Some(&json!({"workflow": "alpha", "rate": 200.0}).to_string()),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert_eq!(reply.body["replayed"], 12, "{}", reply.body);
    settle(app, t, alpha).await;
    assert_created_once(app, t, alpha).await;
    assert_eq!(count_instances(app, t, "alpha").await, 12);
    assert_eq!(
        statuses(app, t, beta).await,
        HashMap::from([(RequestStatus::Dead, 12)])
    );
    assert_eq!(count_instances(app, t, "beta").await, 0);

    // Again: nothing left to do, nothing changes.
    assert_eq!(
        counts(&replay_filtered(app, only(t, "alpha")).await),
        (0, 0, 0)
    );
    assert_eq!(count_instances(app, t, "alpha").await, 12);
}

/// A stale letter of a request created since is removed, not re-sent.
async fn a_stale_letter_is_removed(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    let alpha = &s.alpha;
    // A stale letter of a request created since is removed, not re-sent.
    let created = app
        .raw_store
        .get_request(t, &alpha[0])
        .await
        .expect("read")
        .expect("record");
    app.raw_queue
        .dlq_restore(&letter_of(&created, "stale"))
        .await
        .expect("stale letter");
    assert_eq!(
        counts(&replay_filtered(app, only(t, "alpha")).await),
        (0, 1, 0)
    );
    assert_eq!(
        scan(app, only(t, "alpha")).await,
        0,
        "the stale letter is gone"
    );
    let after = app
        .raw_store
        .get_request(t, &alpha[0])
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        after.history.len(),
        created.history.len(),
        "no replayed event"
    );
    assert_eq!(count_instances(app, t, "alpha").await, 12);
}

/// Archive the rest, check the file, restore it twice (the second time restores nothing).
async fn archive_and_restore(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    let beta = &s.beta;
    // Archive the rest, check the file, restore it.
    let mut sink = TextSink::default();
    let archived = app
        .flowgate
        .dlq_archive(&filter(t), None, &mut sink)
        .await
        .expect("archive");
    assert_eq!(archived.archived, 13, "{:?}", archived.failed);
    let lines = parse_archive(&sink.0).expect("archive parses");
    assert_eq!(lines.len(), 13);
    assert_eq!(lines.iter().filter(|l| l.record.is_none()).count(), 1);
    assert!(lines.iter().all(|l| {
        l.record
            .as_ref()
            .is_none_or(|r| r.status == RequestStatus::Dead)
    }));
    assert_eq!(scan(app, filter(t)).await, 0);
    assert_eq!(
        statuses(app, t, beta).await,
        HashMap::from([(RequestStatus::Archived, 12)])
    );
    let restored = app.flowgate.dlq_restore(&lines, "memory").await;
    assert_eq!(
        (restored.restored, restored.skipped),
        (13, 0),
        "{:?}",
        restored.failed
    );
    let twice = app.flowgate.dlq_restore(&lines, "memory").await;
    assert_eq!(
        (twice.restored, twice.skipped),
        (0, 13),
        "restore is idempotent"
    );
    assert_eq!(scan(app, filter(t)).await, 13);
    assert_eq!(
        statuses(app, t, beta).await,
        HashMap::from([(RequestStatus::Dead, 12)])
    );
}

/// Two replays at once, with the consumer running: one instance per request.
async fn racing_replays(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    let beta = &s.beta;
    let _consumer = app.start_consumer();
    let (a, b) = tokio::join!(
        replay_filtered(app, filter(t)),
        replay_filtered(app, filter(t))
    );
    assert_eq!(a.replayed + b.replayed, 12, "{a:?} {b:?}");
    // Each replay that reaches the poison letter fails it; the other may never see it.
    assert!(
        (1..=2).contains(&(a.failed + b.failed)),
        "the poison letter is never replayable: {a:?} {b:?}"
    );
    settle(app, t, beta).await;
    assert_created_once(app, t, beta).await;
    assert_eq!(count_instances(app, t, "beta").await, 12);
    let left = app.flowgate.dlq_scan(&filter(t)).await.expect("scan");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].error_kind.as_str(), "poison");
}

/// An unfiltered replay tries the queue's native bulk move and falls back.
async fn native_move_falls_back(s: &Scene) {
    let (app, t) = (&s.app, s.tenant.as_str());
    // An unfiltered replay tries the queue's native bulk move and falls back.
    let mut sink = TextSink::default();
    app.flowgate
        .dlq_archive(&filter(t), None, &mut sink)
        .await
        .expect("archive the poison");
    let gamma = dead_letter(app, t, "gamma", 5).await;
    let everything = replay(app, ReplayOptions::default()).await;
    assert!(
        everything
            .native_move
            .as_deref()
            .is_some_and(|m| m.starts_with("unavailable")),
        "{everything:?}"
    );
    // An at-least-once queue may hold two letters of one request (a redelivery that raced
    // past the visibility timeout under load): count the requests replayed.
    let requests: HashSet<_> = everything
        .letters
        .iter()
        .filter(|l| l.action == Action::Replayed)
        .filter_map(|l| l.request_id.clone())
        .collect();
    assert_eq!(requests.len(), 5, "{everything:?}");
    let _consumer = app.start_consumer();
    settle(app, t, &gamma).await;
    assert_created_once(app, t, &gamma).await;
}

/// The whole scenario on one backend.
pub async fn scenario(app: Arc<App>) {
    let scene = setup(app).await;
    looking_changes_nothing(&scene).await;
    replaying_a_subset(&scene).await;
    a_stale_letter_is_removed(&scene).await;
    archive_and_restore(&scene).await;
    racing_replays(&scene).await;
    native_move_falls_back(&scene).await;
}

/// A dead letter of `record`'s message, as the consumer would have left it.
fn letter_of(record: &RequestRecord, why: &str) -> DeadLetter {
    DeadLetter {
        message_id: String::new(),
        receipt: String::new(),
        tenant: Some(record.tenant.clone()),
        request_id: Some(record.request_id.clone()),
        body: QueueMessage::envelope_for(record).body,
        reason: Some(format!("permanent failure: {why}")),
        receive_count: 1,
        dead_lettered_at: chrono::Utc::now(),
        traceparent: QueueMessage::envelope_for(record).traceparent,
    }
}

/// Waits until none of `ids` is `ACCEPTED`.
async fn settle(app: &App, tenant: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while statuses(app, tenant, ids)
        .await
        .contains_key(&RequestStatus::Accepted)
    {
        assert!(Instant::now() < deadline, "replayed requests never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `n` dead requests of a fresh tenant straight into the store and the dead-letter
/// queue, replays them all, checks each is back on the main queue, and answers how long the
/// replay took.
pub async fn timed_replay(app: &App, n: usize) -> Duration {
    let t = fixtures::tenant();
    let mut ids = HashSet::new();
    let outcomes = Arc::new(Mutex::new(0usize));
    for _ in 0..n {
        let mut record = fixtures::record(&t, "timed", chrono::Utc::now());
        record.status = RequestStatus::Dead;
        app.raw_store
            .create_request(&record, None)
            .await
            .expect("record");
        app.raw_queue
            .dlq_restore(&letter_of(&record, "timed"))
            .await
            .expect("letter");
        ids.insert(record.request_id);
    }
    let counter = outcomes.clone();
    let started = Instant::now();
    let report = app
        .flowgate
        .dlq_replay(
            &ReplayOptions {
                filter: filter(&t),
                ..ReplayOptions::default()
            },
            &move |_| *counter.lock().expect("lock") += 1,
        )
        .await
        .expect("replay");
    let took = started.elapsed();
    assert_eq!(report.replayed as usize, n, "{:?}", report.letters.first());
    assert_eq!(
        *outcomes.lock().expect("lock"),
        n,
        "progress saw every letter"
    );
    let mut back = HashSet::new();
    while back.len() < n {
        let got = app
            .raw_queue
            .receive(10, Duration::from_millis(500))
            .await
            .expect("receive");
        assert!(
            !got.is_empty(),
            "only {} of {n} replayed letters reached the queue",
            back.len()
        );
        for d in got {
            back.insert(d.request_id.clone().expect("attribute"));
            app.raw_queue.ack(&d).await.expect("ack");
        }
    }
    assert_eq!(back, ids);
    took
}
