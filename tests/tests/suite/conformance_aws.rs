//! The conformance suite against the AWS adapters (DynamoDB + SQS) on moto server.

use std::time::Duration;

use flowgate_tests::conformance::Subject;
use flowgate_tests::conformance_tests;

async fn subject() -> Subject {
    // SQS counts visibility in whole seconds.
    flowgate_tests::aws::subject(Duration::from_secs(1), 3).await
}

conformance_tests!(subject(), ignored: "needs a moto server: run infra/test.sh");
