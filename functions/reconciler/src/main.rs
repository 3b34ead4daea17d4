//! Lambda bootstrap of the reconciler (EventBridge schedule).

use std::sync::Arc;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_aws::emf::Emf;
use flowgate_core::HostPorts;
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Reconciler)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let (reconciler, backfills) = flowgate_reconciler::use_cases(
        &settings,
        HostPorts {
            store: connected.store,
            queue: connected.queue,
            schedules: connected.schedules,
            backfills: Some(connected.backfills),
            dispatcher: None,
            metrics: Some(Arc::new(Emf::stdout())),
        },
    );
    let (reconciler, backfills) = (Arc::new(reconciler), Arc::new(backfills));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CloudWatchEvent>| {
        let (reconciler, backfills) = (reconciler.clone(), backfills.clone());
        async move {
            let report =
                flowgate_reconciler::handle(&reconciler, Some(&backfills), event.payload).await?;
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
