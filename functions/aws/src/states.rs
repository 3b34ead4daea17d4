//! Step Functions execution status changes, as EventBridge puts them on the queue: each one
//! a report on the instance the execution runs. Flowgate names each execution after its
//! instance and hands it the instance as input, so the event says which instance (and
//! tenant) it is about; the execution's ARN must be the one the hand-off recorded.

use chrono::{TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;

use flowgate_core::runs::{Execution, TargetReport};

/// The `source` of Step Functions' events.
pub const SOURCE: &str = "aws.states";
/// The `detail-type` of an execution's status change.
pub const DETAIL_TYPE: &str = "Step Functions Execution Status Change";

#[derive(Deserialize)]
struct Event {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Detail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    execution_arn: String,
    name: String,
    status: String,
    #[serde(default)]
    stop_date: Option<i64>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// Reads a message body as an execution's status change: `None` when it is not one (a
/// request, a fire), an error naming what is wrong when it is one that does not read.
pub fn decode(body: &str) -> Option<Result<TargetReport, String>> {
    let probe: Value = serde_json::from_str(body).ok()?;
    if probe.get("source").and_then(Value::as_str) != Some(SOURCE)
        || probe.get("detail-type").and_then(Value::as_str) != Some(DETAIL_TYPE)
    {
        return None;
    }
    Some(report_of(probe))
}

fn report_of(event: Value) -> Result<TargetReport, String> {
    let event: Event = serde_json::from_value(event)
        .map_err(|e| format!("a status change that does not read: {e}"))?;
    debug_assert_eq!(
        (event.source.as_str(), event.detail_type.as_str()),
        (SOURCE, DETAIL_TYPE)
    );
    let d = event.detail;
    let input: Value = d
        .input
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("the execution's input is not JSON: {e}"))?
        .unwrap_or(Value::Null);
    let tenant = input
        .get("tenant")
        .and_then(Value::as_str)
        .ok_or("the execution's input names no tenant: it was not started by Flowgate")?
        .to_owned();
    if input.get("instance_id").and_then(Value::as_str) != Some(d.name.as_str()) {
        return Err(format!(
            "execution {} is not named after the instance its input carries",
            d.name
        ));
    }
    let report = Execution {
        status: &d.status,
        error: d.error.as_deref(),
        cause: d.cause.as_deref(),
        output: d.output.as_deref(),
        stopped: d
            .stop_date
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
    }
    .report("Step Functions")?;
    Ok(TargetReport {
        tenant,
        instance_id: d.name,
        reference: d.execution_arn,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_core::runs::RunStatus;

    /// An event in the shape EventBridge delivers it.
    fn event(status: &str, extra: Value) -> String {
        let mut detail = serde_json::json!({
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:flow:i-1",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:flow",
            "name": "i-1",
            "status": status,
            "startDate": 1_764_633_600_000_i64,
            "stopDate": null,
            "input": "{\"tenant\":\"acme\",\"instance_id\":\"i-1\"}",
            "inputDetails": {"included": true},
            "output": null,
            "outputDetails": null,
            "error": null,
            "cause": null
        });
        for (k, v) in extra.as_object().expect("an object") {
            detail[k] = v.clone();
        }
        serde_json::json!({
            "version": "0",
            "id": "315c1398-40ff-a850-213b-158f73e60175",
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": "123456789012",
            "time": "2026-12-02T00:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:states:us-east-1:123456789012:execution:flow:i-1"],
            "detail": detail
        })
        .to_string()
    }

    #[test]
    fn a_status_change_reads_as_a_report_on_its_instance() {
        let ok = decode(&event(
            "SUCCEEDED",
            serde_json::json!({"stopDate": 1_764_633_660_000_i64, "output": "{\"rows\":3}"}),
        ))
        .expect("an event")
        .expect("it reads");
        assert_eq!(
            (ok.tenant.as_str(), ok.instance_id.as_str()),
            ("acme", "i-1")
        );
        assert_eq!(ok.report.status, RunStatus::Succeeded);
        assert_eq!(ok.report.output, Some(serde_json::json!({"rows": 3})));
        let failed = decode(&event(
            "FAILED",
            serde_json::json!({"error": "States.TaskFailed", "cause": "boom"}),
        ))
        .expect("an event")
        .expect("it reads");
        assert_eq!(
            failed.report.detail.as_deref(),
            Some("States.TaskFailed: boom")
        );
        let aborted = decode(&event("ABORTED", serde_json::json!({}))).expect("an event");
        assert_eq!(aborted.expect("reads").report.status, RunStatus::Cancelled);
        assert!(
            decode(r#"{"v":1,"tenant":"t"}"#).is_none(),
            "a request is not one"
        );
        assert!(
            decode(&event("SOMETHING", serde_json::json!({})))
                .expect("an event")
                .is_err()
        );
        let forged = event("SUCCEEDED", serde_json::json!({"name": "i-2"}));
        assert!(decode(&forged).expect("an event").is_err());
    }
}
