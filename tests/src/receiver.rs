//! A real local HTTP receiver for webhook targets: it answers as told (fail N times, a
//! fixed status, slower than a timeout), checks every signature, and counts raw deliveries
//! apart from distinct instance ids.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use flowgate_targets::signature;

/// How the receiver answers the next deliveries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// 200 at once.
    Ok,
    /// This status at once.
    Status(u16),
    /// 200 after this long.
    Slow(Duration),
    /// 503 for this percentage of deliveries, at random; else 200.
    Flaky(u32),
    /// 503 for the first delivery of each instance, 200 for the later ones.
    FirstFails,
}

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// `instance_id` from the body.
    pub instance_id: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` header.
    pub traceparent: Option<String>,
    /// Whether the signature verified against the secret.
    pub signed: bool,
    /// What the receiver answered.
    pub answered: u16,
    /// The body.
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    /// Answers to use first, one per delivery, before `then`.
    queued: VecDeque<Answer>,
    then: Option<Answer>,
    delivered: Vec<Delivered>,
}

#[derive(Clone)]
struct Shared {
    secret: Arc<String>,
    inner: Arc<Mutex<Inner>>,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    /// The URL to name in a webhook target.
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver on a free loopback port that checks signatures with `secret`.
    pub async fn start(secret: &str) -> Self {
        let shared = Shared {
            secret: Arc::new(secret.to_owned()),
            inner: Arc::new(Mutex::new(Inner {
                then: Some(Answer::Ok),
                ..Inner::default()
            })),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Answers the next `n` deliveries with `answer`, then as before.
    pub fn first(&self, n: usize, answer: Answer) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner.queued.extend(std::iter::repeat_n(answer, n));
    }

    /// Answers every later delivery with `answer`.
    pub fn always(&self, answer: Answer) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner.queued.clear();
        inner.then = Some(answer);
    }

    /// Every delivery so far.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.shared.inner.lock().expect("lock").delivered.clone()
    }

    /// Deliveries per instance id.
    pub fn per_instance(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.delivered() {
            *counts.entry(d.instance_id).or_default() += 1;
        }
        counts
    }

    /// The instance ids answered with a 2xx, once each.
    pub fn accepted(&self) -> std::collections::HashSet<String> {
        self.delivered()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .map(|d| d.instance_id)
            .collect()
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = {
        let mut inner = shared.inner.lock().expect("lock");
        inner
            .queued
            .pop_front()
            .or(inner.then)
            .unwrap_or(Answer::Ok)
    };
    let signed = headers
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| {
            signature::verify(
                shared.secret.as_bytes(),
                h,
                &body,
                chrono::Utc::now().timestamp(),
                signature::TOLERANCE_SECS,
            )
            .is_ok()
        });
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let instance_id = json["instance_id"].as_str().unwrap_or_default().to_owned();
    let seen_before = {
        let inner = shared.inner.lock().expect("lock");
        inner.delivered.iter().any(|d| d.instance_id == instance_id)
    };
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(s) => s,
        Answer::Slow(pause) => {
            tokio::time::sleep(pause).await;
            200
        }
        Answer::Flaky(percent) if fastrand::u32(0..100) < percent => 503,
        Answer::Flaky(_) => 200,
        Answer::FirstFails if seen_before => 200,
        Answer::FirstFails => 503,
    };
    shared
        .inner
        .lock()
        .expect("lock")
        .delivered
        .push(Delivered {
            instance_id,
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            signed,
            answered: status,
            body: json,
        });
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
