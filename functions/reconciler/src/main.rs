//! Lambda bootstrap of the reconciler (EventBridge schedule).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_core::usecases::Reconciler;

fn grace() -> Result<Duration, lambda_runtime::Error> {
    match std::env::var("FLOWGATE_RECONCILE_GRACE_SECS") {
        Err(_) => Ok(Duration::from_secs(60)),
        Ok(text) => text.parse().map(Duration::from_secs).map_err(|_| {
            format!("FLOWGATE_RECONCILE_GRACE_SECS: {text:?} is not a whole number").into()
        }),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let connected = flowgate_aws::connect().await?;
    let reconciler = Arc::new(Reconciler::new(connected.store, connected.queue, grace()?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CloudWatchEvent>| {
        let reconciler = reconciler.clone();
        async move {
            let report = flowgate_reconciler::handle(&reconciler, event.payload).await?;
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
