//! The write design on DynamoDB, counted: 2,000 starts over two workflows through the API
//! and the consumer on moto, every write recorded and priced by DynamoDB's rules
//! (`flowgate_tests::capacity`). It fails when a start costs more than its ceiling of write
//! units on the path accept → created, or when any partition key, in the table or an index,
//! takes more than 5% of the writes: a key every start writes binds the whole host to one
//! partition's 1,000 writes a second.

use std::sync::Arc;
use std::time::Duration;

use flowgate_aws::{DynamoStore, SqsQueue, bootstrap};
use flowgate_core::ports::{Queue, Store};
use flowgate_core::usecases::{Consumer, ConsumerConfig};
use flowgate_tests::capacity::{Model, Recorder, Shape};
use flowgate_tests::fixtures::tenant;
use flowgate_tests::http::App;

/// Starts in the run.
const STARTS: usize = 2_000;
/// Write units a start may cost, accept → created (no hand-off).
const UNITS_PER_START: f64 = 4.0;
/// The largest share of the writes one partition key may take.
const HOTTEST_SHARE: f64 = 0.05;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a moto server: run infra/test.sh"]
async fn a_start_costs_at_most_four_write_units_and_no_key_is_hot() {
    let clients = flowgate_tests::aws::clients().await;
    let recorder = Recorder::default();
    let dynamo = recorder.client(&clients.dynamo);
    let table = format!("fg-{}", uuid::Uuid::now_v7().simple());
    bootstrap::table(&dynamo, &table).await.expect("a table");
    let (url, dlq_url) = flowgate_tests::aws::queue_pair(Duration::from_secs(30), 4).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo.clone(), &table, 7));
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(clients.sqs.clone(), url, dlq_url));
    let app = App::over(store.clone(), queue.clone(), Box::new(()));
    let t = tenant();
    for workflow in ["alpha", "beta"] {
        app.register_as(Some(&t), workflow, true).await;
    }
    let mut model = Model::new(Shape::of(&dynamo, &table).await);
    let setup = model.bill(&recorder);
    assert!(setup.writes > 0, "the recorder sees the registrations");

    // Accept: the API's route, 16 at a time, each start with its own key.
    let ids: Vec<String> = futures_util::stream::iter(0..STARTS)
        .map(|n| {
            let (app, t) = (&app, &t);
            async move {
                let workflow = if n % 2 == 0 { "alpha" } else { "beta" };
                let key = format!("k-{n}");
                let reply = app
                    .call_as(
                        Some(t),
                        "POST",
                        &format!("/v1/workflows/{workflow}/instances"),
                        &[("idempotency-key", key.as_str())],
                        Some(&format!(
                            r#"{{"params":{{"amount":{},"customer":"c-{n:05}"}}}}"#,
                            n + 1
                        )),
                    )
                    .await;
                assert_eq!(reply.status, 202, "{}", reply.body);
                reply.body["request_id"].as_str().expect("an id").to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted = model.bill(&recorder);

    // Create: the consumer drains the queue.
    let consumer = Consumer::new(store.clone(), queue.clone(), ConsumerConfig::default());
    loop {
        let deliveries = queue
            .receive(10, Duration::from_millis(300))
            .await
            .expect("a receive");
        if deliveries.is_empty() {
            break;
        }
        for (delivery, disposition) in deliveries
            .clone()
            .into_iter()
            .zip(consumer.decide_all(&deliveries).await)
        {
            assert_eq!(
                disposition,
                flowgate_core::usecases::Disposition::Ack,
                "{delivery:?}"
            );
            queue.ack(&delivery).await.expect("an ack");
        }
    }
    let created = model.bill(&recorder);
    for id in &ids {
        let record = store
            .get_request(&t, id)
            .await
            .expect("a read")
            .expect("the record");
        assert_eq!(record.status.as_str(), "CREATED", "{record:?}");
    }
    // Reads write nothing.
    assert_eq!(model.bill(&recorder).writes, 0);

    let per_start = |units: u64| units as f64 / STARTS as f64;
    let mut keys = accepted.keys.clone();
    for (k, n) in &created.keys {
        *keys.entry(k.clone()).or_default() += n;
    }
    let total: u64 = keys.values().sum();
    let (hottest, share) = keys
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (k.clone(), *n as f64 / total as f64))
        .expect("keys were written");
    println!(
        "{STARTS} starts over two workflows: accept {:.2} WRU/start ({:.2} writes; table {}, \
         indexes {:?}), create {:.2} WRU/start ({:.2} writes; table {}, indexes {:?}); \
         {} partition keys written, the hottest {hottest} with {:.2}% of {total} key-writes",
        per_start(accepted.units()),
        accepted.writes as f64 / STARTS as f64,
        accepted.table_units,
        accepted.index_units,
        per_start(created.units()),
        created.writes as f64 / STARTS as f64,
        created.table_units,
        created.index_units,
        keys.len(),
        share * 100.0,
    );
    assert!(accepted.unpriced.is_empty() && created.unpriced.is_empty());
    let units = per_start(accepted.units() + created.units());
    assert!(
        units <= UNITS_PER_START,
        "a start costs {units:.2} WRU, over the ceiling of {UNITS_PER_START}"
    );
    assert!(
        share <= HOTTEST_SHARE,
        "{hottest} takes {:.1}% of the writes, over {:.0}%",
        share * 100.0,
        HOTTEST_SHARE * 100.0
    );
}

use futures_util::StreamExt;
