//! template.yaml against the settings the functions read: every variable the template sets
//! is one the function reads, with a value it accepts at every parameter bound, and the
//! values that must agree with the template's resources do (visibility timeout, receive
//! count, consumer timeout, reconciler rate).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use flowgate_settings::{Host, Settings, specs};

const TEMPLATE: &str = include_str!("../../../template.yaml");

/// Which parameter value a check resolves `!Ref` to.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Default,
    Min,
    Max,
}

struct Template {
    doc: Value,
}

impl Template {
    fn load() -> Self {
        Self {
            doc: serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml parses"),
        }
    }

    fn resource(&self, id: &str) -> &Value {
        &self.doc["Resources"][id]
    }

    /// A parameter's value at `bound` (its default where it has no such bound).
    fn parameter(&self, name: &str, bound: Bound) -> Option<String> {
        let p = &self.doc["Parameters"][name];
        if p.is_null() {
            return None;
        }
        let key = match bound {
            Bound::Default => "Default",
            Bound::Min => "MinValue",
            Bound::Max => "MaxValue",
        };
        let v = if p[key].is_null() {
            &p["Default"]
        } else {
            &p[key]
        };
        Some(scalar(v))
    }

    /// The value a function would see for `value`, with parameters at `bound`.
    fn resolve(&self, value: &Value, bound: Bound) -> String {
        let Value::Tagged(tagged) = value else {
            return scalar(value);
        };
        let inner = scalar(&tagged.value);
        match tagged.tag.to_string().as_str() {
            "!Ref" => self.parameter(&inner, bound).unwrap_or_else(|| {
                match self.resource(&inner)["Type"].as_str() {
                    // A queue's Ref is its URL.
                    Some("AWS::SQS::Queue") => {
                        format!("https://sqs.eu-west-1.amazonaws.com/123456789012/{inner}")
                    }
                    _ => format!("{inner}-name"),
                }
            }),
            "!Sub" => {
                let mut text = inner;
                while let Some(start) = text.find("${") {
                    let end = start + text[start..].find('}').expect("closed ${");
                    let name = text[start + 2..end].to_owned();
                    let value = self.parameter(&name, bound).unwrap_or_else(|| name.clone());
                    text.replace_range(start..=end, &value);
                }
                text
            }
            other => format!("{other} {inner}"),
        }
    }

    /// The variables a function gets: the globals, then its own.
    fn environment(&self, function: &str) -> BTreeMap<String, Value> {
        let mut env = BTreeMap::new();
        for vars in [
            &self.doc["Globals"]["Function"]["Environment"]["Variables"],
            &self.resource(function)["Properties"]["Environment"]["Variables"],
        ] {
            for (k, v) in vars.as_mapping().into_iter().flatten() {
                env.insert(scalar(k), v.clone());
            }
        }
        env
    }

    /// The functions, each with the host it runs.
    fn functions(&self) -> Vec<(String, Host)> {
        let hosts = [
            ("api", Host::Api),
            ("consumer", Host::Consumer),
            ("reconciler", Host::Reconciler),
        ];
        let resources = self.doc["Resources"].as_mapping().expect("resources");
        resources
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
            .map(|(id, r)| {
                let binary = r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .expect("a binary");
                let host = hosts
                    .iter()
                    .find(|(b, _)| *b == binary)
                    .unwrap_or_else(|| panic!("no host runs binary {binary}"))
                    .1;
                (scalar(id), host)
            })
            .collect()
    }

    /// The settings `function` builds from its environment, with parameters at `bound`.
    fn settings(&self, function: &str, host: Host, bound: Bound) -> Settings {
        let env: BTreeMap<String, String> = self
            .environment(function)
            .iter()
            .map(|(k, v)| (k.clone(), self.resolve(v, bound)))
            .collect();
        Settings::load(host, &|spec| env.get(spec.env).cloned()).unwrap_or_else(|e| {
            panic!("{function} refuses its template.yaml environment at {bound:?}: {e}")
        })
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn every_variable_is_a_setting_its_function_reads_with_a_value_it_accepts() {
    let t = Template::load();
    let functions = t.functions();
    assert_eq!(functions.len(), 3);
    for (function, host) in &functions {
        for name in t.environment(function).keys() {
            let spec = specs::ALL
                .iter()
                .find(|s| s.env == name)
                .unwrap_or_else(|| panic!("{function} sets {name}, which no setting is"));
            assert!(
                spec.read_by.contains(host),
                "{function} sets {name}, which its host {host:?} does not read"
            );
        }
        for bound in [Bound::Default, Bound::Min, Bound::Max] {
            t.settings(function, *host, bound);
        }
    }
}

#[test]
fn the_functions_agree_with_the_queue_and_the_schedule() {
    let t = Template::load();
    let queue = &t.resource("Queue")["Properties"];
    let consumer = t.settings("ConsumerFunction", Host::Consumer, Bound::Default);
    let visibility: u64 = scalar(&queue["VisibilityTimeout"])
        .parse()
        .expect("seconds");
    assert_eq!(
        consumer.visibility_timeout.as_secs(),
        visibility,
        "the consumer's retry delays are capped by the queue's visibility timeout"
    );
    let timeout: u64 = scalar(&t.resource("ConsumerFunction")["Properties"]["Timeout"])
        .parse()
        .expect("seconds");
    assert!(
        visibility >= 6 * timeout,
        "AWS asks for a visibility timeout of at least 6 times the consumer's timeout"
    );
    for bound in [Bound::Default, Bound::Min, Bound::Max] {
        let consumer = t.settings("ConsumerFunction", Host::Consumer, bound);
        let redrive = t.resolve(&queue["RedrivePolicy"]["maxReceiveCount"], bound);
        assert_eq!(consumer.max_receive_count.to_string(), redrive);
        let api = t.settings("ApiFunction", Host::Api, bound);
        let reconciler = t.settings("ReconcilerFunction", Host::Reconciler, bound);
        assert_eq!(api.reconcile_grace, reconciler.reconcile_grace);
        let consumer = t.settings("ConsumerFunction", Host::Consumer, bound);
        assert_eq!(consumer.redelivery_bound(), api.redelivery_bound());
        assert_eq!(reconciler.redelivery_bound(), api.redelivery_bound());
    }
    let rate = &t.resource("ReconcilerFunction")["Properties"]["Events"]["Sweep"]["Properties"]["ScheduleExpression"];
    let api = t.settings("ApiFunction", Host::Api, Bound::Default);
    assert_eq!(scalar(rate), "rate(1 minute)");
    assert_eq!(
        api.reconcile_interval.as_secs(),
        60,
        "the reconciler's schedule rate"
    );
}

#[test]
fn schedules_fire_into_the_stacks_own_queue_with_the_schedulers_own_role() {
    let t = Template::load();
    let source = |function: &str, name: &str| match &t.environment(function)[name] {
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, scalar(&tagged.value)),
        other => scalar(other),
    };
    for function in ["ApiFunction", "ConsumerFunction"] {
        assert_eq!(
            source(function, "FLOWGATE_SCHEDULE_GROUP"),
            "!Ref ScheduleGroup",
            "{function} keeps schedules in the stack's group"
        );
    }
    // Each function that keeps schedules is given all that `connect` needs for them, so
    // that it neither fails at start nor looks a queue's ARN up (a call at every cold start).
    for (function, host) in [
        ("ApiFunction", Host::Api),
        ("ConsumerFunction", Host::Consumer),
    ] {
        assert_eq!(
            source(function, "FLOWGATE_SCHEDULER_ROLE_ARN"),
            "!GetAtt SchedulerRole.Arn"
        );
        assert_eq!(source(function, "FLOWGATE_QUEUE_ARN"), "!GetAtt Queue.Arn");
        assert_eq!(
            source(function, "FLOWGATE_DLQ_ARN"),
            "!GetAtt DeadLetterQueue.Arn"
        );
        let settings = t.settings(function, host, Bound::Default);
        assert!(
            ![
                &settings.scheduler_role_arn,
                &settings.queue_arn,
                &settings.dlq_arn
            ]
            .iter()
            .any(|v| v.is_empty()),
            "{function} reads its whole schedule setup"
        );
    }
    assert_eq!(
        t.resource("ScheduleGroup")["Type"],
        "AWS::Scheduler::ScheduleGroup"
    );
    let role = &t.resource("SchedulerRole")["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "scheduler.amazonaws.com"
    );
}

#[test]
fn a_reconciler_run_moves_backfills_within_its_timeout() {
    let t = Template::load();
    let timeout: u64 = scalar(&t.resource("ReconcilerFunction")["Properties"]["Timeout"])
        .parse()
        .expect("seconds");
    let budget = flowgate_reconciler::BACKFILL_BUDGET + flowgate_reconciler::BACKFILL_TICK;
    assert!(
        budget.as_secs() + 10 <= timeout,
        "a run sweeps, then steps backfills for {budget:?}: the {timeout} s timeout leaves the sweep too little"
    );
}

/// The consumer may start executions only of the state machines the stack names, and put
/// events only on the bus it names; nothing in the template grants a wildcard resource.
#[test]
fn hand_off_permissions_name_only_the_given_targets() {
    let t = Template::load();
    let statements = t.resource("ConsumerFunction")["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .expect("statements");
    let guarded = |sid: &str| {
        statements
            .iter()
            .find_map(|s| match s {
                Value::Tagged(tagged) if tagged.tag == "!If" => {
                    let branch = &tagged.value[1];
                    (branch["Sid"] == sid).then(|| (scalar(&tagged.value[0]), branch.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no conditional statement {sid}"))
    };
    for (sid, condition, action, parameter) in [
        (
            "HandOffToStateMachines",
            "HandsToStateMachines",
            "states:StartExecution",
            "TargetStateMachineArns",
        ),
        (
            "HandOffToEventBus",
            "HandsToEventBus",
            "events:PutEvents",
            "TargetEventBusArn",
        ),
    ] {
        let (when, statement) = guarded(sid);
        assert_eq!(when, condition);
        assert_eq!(statement["Action"][0], action);
        match &statement["Resource"] {
            Value::Tagged(r) if r.tag == "!Ref" => assert_eq!(scalar(&r.value), parameter),
            other => panic!("{sid} grants {other:?}, not the {parameter} parameter"),
        }
        assert!(t.doc["Parameters"][parameter]["Default"] == "");
    }
    assert!(
        !TEMPLATE.contains("Resource: \"*\"") && !TEMPLATE.contains("Resource: '*'"),
        "no wildcard resources"
    );
}

/// A cold start makes no call to AWS: every function connects its ports from the settings
/// template.yaml gives it (queue URLs and ARNs passed in, not looked up). No queue of these
/// names exists anywhere this test runs, so a lookup would fail (or hang until the timeout).
#[tokio::test]
async fn no_function_calls_aws_to_start() {
    let t = Template::load();
    for (function, host) in t.functions() {
        let settings = t.settings(&function, host, Bound::Default);
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            flowgate_aws::connect(&settings),
        )
        .await;
        assert!(
            matches!(connected, Ok(Ok(_))),
            "{function}: connecting made a call that failed or hung"
        );
    }
}
