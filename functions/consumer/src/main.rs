//! Lambda bootstrap of the consumer (event source mapping with ReportBatchItemFailures).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_core::usecases::{Consumer, ConsumerConfig};
use flowgate_settings::{Host, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(Host::Consumer)?;
    let connected = flowgate_aws::connect(&settings).await?;
    let consumer = Arc::new(Consumer::new(
        connected.store,
        connected.queue.clone(),
        ConsumerConfig::from_settings(&settings),
    ));
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
