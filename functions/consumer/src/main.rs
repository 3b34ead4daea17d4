//! Lambda bootstrap of the consumer (event source mapping with ReportBatchItemFailures).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_aws::emf::Emf;
use flowgate_core::usecases::{Consumer, ConsumerConfig};
use flowgate_core::{Flowgate, HostPorts};
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Consumer)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let emf = Arc::new(Emf::stdout());
    let consumer = Consumer::new(
        connected.store.clone(),
        connected.queue.clone(),
        ConsumerConfig::from_settings(&settings),
    )
    .with_dispatcher(Arc::new(flowgate_targets::Targets::new(
        settings.allow_private_targets,
    )))
    .with_metrics(emf.clone());
    let has_schedules = connected.schedules.is_some();
    let app = Flowgate::build(
        &settings,
        HostPorts {
            store: connected.store,
            queue: connected.queue.clone(),
            schedules: connected.schedules,
            backfills: Some(connected.backfills),
            dispatcher: None,
            metrics: Some(emf),
        },
    );
    // Step Functions' status changes of the allowed state machines arrive on this queue
    // (the stack's EventBridge rule): each one a report on its instance.
    let consumer = consumer.with_reports(app.clone(), flowgate_aws::states::decode);
    // EventBridge Scheduler puts schedule fires on this queue: start them.
    let consumer = Arc::new(if has_schedules {
        consumer.with_fires(app)
    } else {
        consumer
    });
    let queue = connected.queue;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (consumer, queue) = (consumer.clone(), queue.clone());
        async move {
            Ok::<_, lambda_runtime::Error>(
                flowgate_consumer::handle(&consumer, queue.as_ref(), event.payload).await,
            )
        }
    }))
    .await
}
