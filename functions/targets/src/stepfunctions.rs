//! The Step Functions target: StartExecution named by the instance id, so that the
//! service itself refuses a second execution of one instance. `ExecutionAlreadyExists`
//! therefore means the hand-off happened before, and counts as success.

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use flowgate_core::model::Instance;
use flowgate_core::ports::{DispatchError, Receipt};

/// A Step Functions target as a workflow names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFunctionsTarget {
    /// The state machine (a STANDARD one: only those refuse a second execution name).
    pub state_machine_arn: String,
}

impl StepFunctionsTarget {
    /// Checks the ARN's form: `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
    pub fn check(self) -> Result<Self, String> {
        let parts: Vec<&str> = self.state_machine_arn.split(':').collect();
        let lower = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let well_formed = parts.len() == 7
            && parts[0] == "arn"
            && parts[1]
                .strip_prefix("aws")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            && parts[2] == "states"
            && !parts[3].is_empty()
            && lower(parts[3])
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5] == "stateMachine"
            && (1..=80).contains(&parts[6].len())
            && parts[6]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if well_formed {
            Ok(self)
        } else {
            Err(format!(
                "state_machine_arn {:?} is not a state machine ARN \
                 (arn:aws:states:<region>:<account>:stateMachine:<name>)",
                self.state_machine_arn
            ))
        }
    }

    /// The ARN of this state machine's execution named `name`.
    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

/// Starts the execution of `instance`; answers its ARN.
pub async fn start(
    client: &Client,
    target: &StepFunctionsTarget,
    instance: &Instance,
) -> Result<Receipt, DispatchError> {
    let input =
        serde_json::to_string(instance).map_err(|e| DispatchError::permanent(e.to_string()))?;
    let answer = client
        .start_execution()
        .state_machine_arn(&target.state_machine_arn)
        .name(&instance.instance_id)
        .input(input)
        .send()
        .await;
    match answer {
        Ok(out) => Ok(Receipt {
            reference: out.execution_arn,
        }),
        Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(Receipt {
            reference: target.execution_arn(&instance.instance_id),
        }),
        Err(e) => Err(crate::sdk_failure("StartExecution", e)),
    }
}

/// Stops the execution of a cancelled instance (`reference`: its ARN as the hand-off
/// recorded it; without one, the ARN its name gives).
pub async fn stop(
    client: &Client,
    target: &StepFunctionsTarget,
    instance: &Instance,
    reference: Option<&str>,
) -> Result<Receipt, DispatchError> {
    let arn = reference.filter(|r| r.starts_with("arn:")).map_or_else(
        || target.execution_arn(&instance.instance_id),
        str::to_owned,
    );
    client
        .stop_execution()
        .execution_arn(&arn)
        .cause("cancelled in Flowgate")
        .send()
        .await
        .map_err(|e| crate::sdk_failure("StopExecution", e))?;
    Ok(Receipt {
        reference: format!("StopExecution {arn}"),
    })
}

/// Where the execution `reference` is, as a report (RUNNING included).
pub async fn describe(
    client: &Client,
    reference: &str,
) -> Result<flowgate_core::runs::Report, DispatchError> {
    use flowgate_core::runs::Execution;
    let out = client
        .describe_execution()
        .execution_arn(reference)
        .send()
        .await
        .map_err(|e| crate::sdk_failure("DescribeExecution", e))?;
    Execution {
        status: out.status().as_str(),
        error: out.error(),
        cause: out.cause(),
        output: out.output(),
        stopped: out
            .stop_date()
            .and_then(|at| chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos())),
    }
    .report("Step Functions (polled)")
    .map_err(DispatchError::permanent)
}
