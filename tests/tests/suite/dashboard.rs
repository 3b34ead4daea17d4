//! template.yaml's dashboard and alarms against the code: every metric they show in the
//! `Flowgate` namespace is one the functions emit, with the dimensions and outcome values the
//! functions write (the same EMF line the functions print), and every other metric is one of
//! the AWS service metrics named here.

use serde_json::Value as Json;
use serde_yaml_ng::Value;

use flowgate_aws::emf::{NAMESPACE, emf_line};
use flowgate_core::metrics::{Labels, Metric};

const TEMPLATE: &str = include_str!("../../../template.yaml");

/// The service metrics the dashboard may show: the queues' and the functions' own.
const SERVICE_METRICS: &[(&str, &str)] = &[
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Throttles"),
];

/// One metric a widget or an alarm refers to: namespace, name, and its dimensions.
#[derive(Debug)]
struct Shown {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
}

fn resources() -> Vec<(String, Value)> {
    let doc: Value = serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml parses");
    doc["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .map(|(k, v)| (k.as_str().expect("an id").to_owned(), v.clone()))
        .collect()
}

/// The dashboard's body, with each `${...}` of its `!Sub` replaced by a placeholder.
fn dashboard_body(resource: &Value) -> Json {
    let Value::Tagged(sub) = &resource["Properties"]["DashboardBody"] else {
        panic!("DashboardBody is a !Sub");
    };
    let text = sub.value.as_str().expect("a string");
    let mut plain = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        plain.push_str(&rest[..start]);
        plain.push_str("SUBSTITUTED");
        rest = &rest[end + 1..];
    }
    plain.push_str(rest);
    serde_json::from_str(&plain).expect("the dashboard body is JSON")
}

fn shown_in(body: &Json) -> Vec<Shown> {
    let mut shown = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for row in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let parts: Vec<&str> = row
                .as_array()
                .expect("a metric row")
                .iter()
                .filter_map(Json::as_str)
                .collect();
            let dimensions = parts[2..]
                .chunks(2)
                .map(|p| (p[0].to_owned(), p[1].to_owned()))
                .collect();
            shown.push(Shown {
                namespace: parts[0].to_owned(),
                name: parts[1].to_owned(),
                dimensions,
            });
        }
    }
    shown
}

fn alarmed(resource: &Value) -> Shown {
    let p = &resource["Properties"];
    let dimensions = p["Dimensions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or("").to_owned();
            (s("Name"), s("Value"))
        })
        .collect();
    Shown {
        namespace: p["Namespace"].as_str().unwrap_or("").to_owned(),
        name: p["MetricName"].as_str().unwrap_or("").to_owned(),
        dimensions,
    }
}

/// Whether the functions emit `shown`: the EMF line they print for it declares the same
/// dimensions, with the same outcome value.
fn emitted(shown: &Shown) -> Result<(), String> {
    let metric = Metric::named(&shown.name).ok_or("no such metric in the code")?;
    let outcome = shown
        .dimensions
        .iter()
        .find(|(k, _)| k == "outcome")
        .map_or("", |(_, v)| v.as_str());
    if !outcome.is_empty() && !metric.outcomes().contains(&outcome) {
        return Err(format!("outcome {outcome:?} is never recorded"));
    }
    let workflow = shown
        .dimensions
        .iter()
        .find(|(k, _)| k == "workflow")
        .map(|(_, v)| v.as_str());
    let labels = Labels {
        tenant: None,
        workflow,
        outcome,
    };
    let line = emf_line(metric, &labels, 1.0, 0);
    let declared = &line["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    let mut names: Vec<Json> = shown
        .dimensions
        .iter()
        .map(|(k, _)| k.as_str().into())
        .collect();
    names.sort_by_key(|n| n.as_str().map(str::to_owned));
    let sets: Vec<Vec<Json>> = serde_json::from_value(declared.clone()).expect("sets");
    let found = sets.into_iter().any(|mut set| {
        set.sort_by_key(|n| n.as_str().map(str::to_owned));
        set == names
    });
    if !found {
        return Err(format!(
            "the functions publish it with dimensions {declared}"
        ));
    }
    Ok(())
}

#[test]
fn the_dashboard_and_alarms_show_only_metrics_the_functions_emit() {
    let mut shown = Vec::new();
    let mut dashboards = 0;
    for (id, resource) in resources() {
        match resource["Type"].as_str() {
            Some("AWS::CloudWatch::Dashboard") => {
                dashboards += 1;
                shown.extend(shown_in(&dashboard_body(&resource)));
            }
            Some("AWS::CloudWatch::Alarm") => {
                let metric = alarmed(&resource);
                assert!(!metric.name.is_empty(), "{id} names its metric");
                shown.push(metric);
            }
            _ => {}
        }
    }
    assert_eq!(dashboards, 1, "one dashboard");
    let mut ours = 0;
    for s in &shown {
        if s.namespace == NAMESPACE {
            ours += 1;
            if let Err(why) = emitted(s) {
                panic!("{s:?}: {why}");
            }
        } else {
            assert!(
                SERVICE_METRICS.contains(&(s.namespace.as_str(), s.name.as_str())),
                "{s:?} is neither Flowgate's nor a known service metric"
            );
        }
    }
    assert!(
        ours >= 10,
        "the dashboard shows Flowgate's own metrics: {shown:?}"
    );
}

/// The check refuses what the functions never emit (so it cannot pass vacuously).
#[test]
fn the_check_refuses_a_metric_the_code_does_not_emit() {
    let shown = |name: &str, dims: &[(&str, &str)]| Shown {
        namespace: NAMESPACE.into(),
        name: name.into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    };
    assert!(emitted(&shown("PendingOverGrace", &[])).is_err());
    assert!(emitted(&shown("accepted", &[("outcome", "maybe")])).is_err());
    assert!(emitted(&shown("lag_seconds", &[("outcome", "created")])).is_err());
    assert!(emitted(&shown("accepted", &[("workflow", "w")])).is_err());
    assert!(emitted(&shown("accepted", &[("outcome", "accepted")])).is_ok());
    assert!(
        emitted(&shown(
            "accepted",
            &[("workflow", "w"), ("outcome", "accepted")]
        ))
        .is_ok()
    );
    assert!(emitted(&shown("lag_seconds", &[])).is_ok());
}
