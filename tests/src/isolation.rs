//! Tenant isolation on every route, as a scenario any host runs: a second tenant can never
//! read, list, replay or replace what belongs to the first.

use std::future::Future;

use serde_json::{Value, json};

use crate::fixtures::tenant;
use crate::http::App;

/// A host's front door: a call as a tenant (with every scope), answered with its status
/// and body.
pub trait Door {
    /// Calls `method uri` as `tenant`, with `headers` and a JSON `body`.
    fn call(
        &self,
        tenant: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> impl Future<Output = (u16, Value)>;
}

/// The router of an [`App`], called with a caller in the extensions.
pub struct Router<'a>(pub &'a App);

impl Door for Router<'_> {
    async fn call(
        &self,
        tenant: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let reply = self
            .0
            .call_as(Some(tenant), method, uri, headers, body.as_deref())
            .await;
        (reply.status.as_u16(), reply.body)
    }
}

/// The scenario: the first tenant registers a workflow and creates an instance (a consumer
/// must be running); the second tries every route on them.
pub async fn tenants_stay_apart(door: &impl Door) {
    let (a, b) = (tenant(), tenant());
    let def = json!({"name": "A's orders", "params_schema": {"type": "object"}});
    let put = "/v1/workflows/orders";
    assert_eq!(door.call(&a, "PUT", put, &[], Some(def)).await.0, 201);
    let start = "/v1/workflows/orders/instances";
    let key = [("idempotency-key", "shared"), ("prefer", "wait=10")];
    let (status, mine) = door
        .call(&a, "POST", start, &key, Some(json!({"params": {"n": 1}})))
        .await;
    assert_eq!(status, 201, "{mine}");
    let request = format!("/v1/requests/{}", mine["request_id"].as_str().expect("id"));
    let instance = format!(
        "/v1/instances/{}",
        mine["instance_id"].as_str().expect("id")
    );

    // Reading: nothing of A's exists for B.
    for uri in [put, request.as_str(), instance.as_str(), start] {
        assert_eq!(
            door.call(&b, "GET", uri, &[], None).await.0,
            404,
            "B read {uri}"
        );
        assert_eq!(
            door.call(&a, "GET", uri, &[], None).await.0,
            200,
            "A reads {uri}"
        );
    }
    // Starting: A's workflow is not B's, and A's key names another request for B.
    let (status, _) = door
        .call(&b, "POST", start, &[], Some(json!({"params": {}})))
        .await;
    assert_eq!(status, 404);
    // Replacing: B's PUT makes B's own workflow; A's stays as it was.
    let theirs = json!({"name": "B's orders", "params_schema": {"type": "object"}});
    assert_eq!(door.call(&b, "PUT", put, &[], Some(theirs)).await.0, 201);
    let (_, read) = door.call(&a, "GET", put, &[], None).await;
    assert_eq!(
        (read["name"].as_str(), read["version"].as_u64()),
        (Some("A's orders"), Some(1))
    );
    let (_, other) = door
        .call(&b, "POST", start, &key, Some(json!({"params": {"n": 1}})))
        .await;
    assert_ne!(
        other["request_id"], mine["request_id"],
        "keys are per tenant"
    );
    // Dead letters: B lists none of A's, cannot name A, and replays nothing of A's.
    let (status, listed) = door
        .call(&b, "GET", &format!("/v1/dlq?tenant={a}"), &[], None)
        .await;
    assert_eq!(status, 400, "{listed}");
    let (status, replay) = door
        .call(
            &b,
            "POST",
            "/v1/dlq/replay",
            &[],
            Some(json!({"tenant": a})),
        )
        .await;
    assert_eq!(status, 400, "{replay}");
}
