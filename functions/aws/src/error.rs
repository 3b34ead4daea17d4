//! Classifies AWS SDK errors as retryable or permanent, keeping the source chain.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use flowgate_core::BackendError;

/// Error codes that retrying can fix: throttling, capacity, and service-side trouble.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestThrottled",
    "KMSThrottlingException",
];

/// Classifies an SDK error of `op`: timeouts, dispatch failures, 5xx and throttling are
/// retryable; everything else (validation, missing resources, access) is permanent.
pub fn classify<E, R>(op: &'static str, err: SdkError<E, R>) -> BackendError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .is_some_and(|code| RETRYABLE_CODES.contains(&code)),
        _ => false,
    };
    if retryable {
        BackendError::retryable(op, err)
    } else {
        BackendError::permanent(op, err)
    }
}
