//! Lambda bootstrap of the consumer (event source mapping with ReportBatchItemFailures).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use flowgate_core::usecases::{Consumer, ConsumerConfig};

fn max_receive_count() -> Result<u32, lambda_runtime::Error> {
    match std::env::var("FLOWGATE_MAX_RECEIVE_COUNT") {
        Err(_) => Ok(5),
        Ok(text) => text.parse().map_err(|_| {
            format!("FLOWGATE_MAX_RECEIVE_COUNT: {text:?} is not a whole number").into()
        }),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let connected = flowgate_aws::connect().await?;
    let consumer = Arc::new(Consumer::new(
        connected.store,
        connected.queue.clone(),
        ConsumerConfig {
            max_receive_count: max_receive_count()?,
            visibility_timeout: Duration::from_secs(900),
            ..ConsumerConfig::default()
        },
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
