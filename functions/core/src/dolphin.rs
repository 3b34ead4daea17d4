//! The DolphinScheduler start contract: its parameters read into a Flowgate start or
//! backfill, and its answer codes. The door itself is in `http::dolphin`; the use case in
//! `usecases::dolphin`.
//!
//! Parameters arrive as DolphinScheduler's `@RequestParam`s do: a query string or a form,
//! every value a string, enums by name. What Flowgate does not act on (`failureStrategy`,
//! `warningType`, `workerGroup`, `tenantCode`, `testFlag`, `dryRun` and the rest) is kept
//! verbatim as the request's `options`, so nothing a caller sent is lost.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::model::Priority;
use crate::usecases::backfills::Order;

/// Success.
pub const SUCCESS: i64 = 0;
/// `REQUEST_PARAMS_NOT_VALID_ERROR`: a parameter is missing or malformed.
pub const PARAMS_NOT_VALID: i64 = 10001;
/// `PROCESS_DEFINE_NOT_EXIST`: no such definition in this project.
pub const DEFINITION_NOT_EXIST: i64 = 50003;
/// `PROCESS_DEFINE_NOT_RELEASE`: the definition is offline.
pub const DEFINITION_NOT_RELEASED: i64 = 50004;
/// `START_PROCESS_INSTANCE_ERROR`: any other failure to start.
pub const START_ERROR: i64 = 50014;

/// The most parameters one call may carry.
pub const MAX_PARAMS: usize = 64;
/// The longest parameter value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// The longest query string, in bytes; longer calls send their parameters as a form.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// The longest value a parameter may have in a query string, in characters: short enough
/// that a query of every parameter, percent-encoded, stays under the HTTP server's URI
/// limit (64 KiB). A form takes values of up to [`MAX_VALUE_BYTES`].
pub fn max_query_chars(name: &str) -> usize {
    match name {
        "startParams" => 2048,
        "scheduleTime" => 1024,
        _ => 128,
    }
}

/// The time format of DolphinScheduler's complement dates, read as UTC.
const DS_TIME: &str = "%Y-%m-%d %H:%M:%S";

/// Parameters consumed here, and so not kept as options.
const CONSUMED: [&str; 3] = [
    "processDefinitionCode",
    "workflowDefinitionCode",
    "startParams",
];

/// A start call, read.
#[derive(Debug, Clone, PartialEq)]
pub struct DsStart {
    /// `processDefinitionCode` (3.1/3.2) or `workflowDefinitionCode` (3.3).
    pub definition_code: i64,
    /// `processInstancePriority` or `workflowInstancePriority`; MEDIUM when absent.
    pub priority: Priority,
    /// `startParams`, a JSON object string: the instance's params.
    pub params: Map<String, Value>,
    /// With `execType=COMPLEMENT_DATA`, the backfill it asks for.
    pub complement: Option<Complement>,
    /// Every other parameter, verbatim.
    pub options: BTreeMap<String, String>,
}

/// A complement (backfill) call.
#[derive(Debug, Clone, PartialEq)]
pub struct Complement {
    /// Its dates.
    pub dates: ComplementDates,
    /// `executionOrder`: DESC_ORDER (DolphinScheduler's default) or ASC_ORDER.
    pub order: Order,
    /// 1 for `RUN_MODE_SERIAL`; `expectedParallelismNumber` (or the default) for
    /// `RUN_MODE_PARALLEL`.
    pub max_in_flight: Option<usize>,
}

/// The dates of a complement, as its `scheduleTime` gives them.
#[derive(Debug, Clone, PartialEq)]
pub enum ComplementDates {
    /// `complementStartDate` to `complementEndDate`, both inclusive, expanded by the
    /// workflow's schedules.
    Range {
        /// The first instant.
        from: DateTime<Utc>,
        /// The last instant.
        to: DateTime<Utc>,
    },
    /// `complementScheduleDateList`.
    List(Vec<DateTime<Utc>>),
}

impl DsStart {
    /// Reads a call's parameters (query and form together). Refuses a repeated parameter,
    /// too many, an overlong value, and every malformed value, naming it.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        let params = unique(pairs)?;
        let definition_code = definition_code(&params)?;
        let priority = priority(&params)?;
        let start_params = start_params(params.get("startParams"))?;
        // The run shape is checked on every call, as DolphinScheduler binds its enums.
        let order = order(&params)?;
        let max_in_flight = max_in_flight(&params)?;
        let complement = match exec_type(&params)? {
            ExecType::Start => None,
            ExecType::Complement => Some(Complement {
                dates: complement_dates(params.get("scheduleTime"))?,
                order,
                max_in_flight,
            }),
        };
        let options = params
            .into_iter()
            .filter(|(k, _)| !CONSUMED.contains(&k.as_str()))
            .collect();
        Ok(Self {
            definition_code,
            priority,
            params: start_params,
            complement,
            options,
        })
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::invalid(name, reason)
}

fn unique(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, Error> {
    if pairs.len() > MAX_PARAMS {
        return Err(invalid("", format!("at most {MAX_PARAMS} parameters")));
    }
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if value.len() > MAX_VALUE_BYTES {
            return Err(invalid(
                &name,
                format!("is longer than {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(invalid(&name, "is given more than once"));
        }
    }
    Ok(params)
}

fn definition_code(params: &BTreeMap<String, String>) -> Result<i64, Error> {
    let named = ["processDefinitionCode", "workflowDefinitionCode"]
        .into_iter()
        .filter_map(|name| params.get(name).map(|v| (name, v)))
        .collect::<Vec<_>>();
    let (name, text) = match named.as_slice() {
        [] => {
            return Err(invalid(
                "processDefinitionCode",
                "is required (or workflowDefinitionCode)",
            ));
        }
        [one] => *one,
        [(_, a), (name, b)] if a != b => {
            return Err(invalid(name, "differs from processDefinitionCode"));
        }
        [first, _] => *first,
        _ => unreachable!("two names at most"),
    };
    match text.trim().parse::<i64>() {
        Ok(code) if code > 0 => Ok(code),
        _ => Err(invalid(name, "must be a positive integer")),
    }
}

fn priority(params: &BTreeMap<String, String>) -> Result<Priority, Error> {
    let mut found = Priority::default();
    for name in ["processInstancePriority", "workflowInstancePriority"] {
        if let Some(text) = params.get(name).filter(|t| !t.is_empty()) {
            found = serde_json::from_value(Value::String(text.clone()))
                .map_err(|_| invalid(name, "must be one of HIGHEST, HIGH, MEDIUM, LOW, LOWEST"))?;
        }
    }
    Ok(found)
}

fn start_params(text: Option<&String>) -> Result<Map<String, Value>, Error> {
    let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("startParams", "must be a JSON object")),
        Err(e) => Err(invalid("startParams", format!("is not JSON ({e})"))),
    }
}

enum ExecType {
    Start,
    Complement,
}

fn exec_type(params: &BTreeMap<String, String>) -> Result<ExecType, Error> {
    match params.get("execType").map(String::as_str) {
        None | Some("" | "START_PROCESS") => Ok(ExecType::Start),
        Some("COMPLEMENT_DATA") => Ok(ExecType::Complement),
        Some(other) => Err(invalid(
            "execType",
            format!("{other} is not a start: use START_PROCESS or COMPLEMENT_DATA"),
        )),
    }
}

fn order(params: &BTreeMap<String, String>) -> Result<Order, Error> {
    match params.get("executionOrder").map(String::as_str) {
        None | Some("" | "DESC_ORDER") => Ok(Order::Desc),
        Some("ASC_ORDER") => Ok(Order::Asc),
        Some(_) => Err(invalid("executionOrder", "must be DESC_ORDER or ASC_ORDER")),
    }
}

fn max_in_flight(params: &BTreeMap<String, String>) -> Result<Option<usize>, Error> {
    let parallelism = parallelism(params.get("expectedParallelismNumber"))?;
    match params.get("runMode").map(String::as_str) {
        None | Some("" | "RUN_MODE_SERIAL") => Ok(Some(1)),
        Some("RUN_MODE_PARALLEL") => Ok(parallelism),
        Some(_) => Err(invalid(
            "runMode",
            "must be RUN_MODE_SERIAL or RUN_MODE_PARALLEL",
        )),
    }
}

fn parallelism(text: Option<&String>) -> Result<Option<usize>, Error> {
    let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(Some(n)),
        _ => Err(invalid(
            "expectedParallelismNumber",
            "must be an integer from 1 to 1000",
        )),
    }
}

fn complement_dates(text: Option<&String>) -> Result<ComplementDates, Error> {
    const NAME: &str = "scheduleTime";
    let text = text
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(NAME, "is required for COMPLEMENT_DATA"))?;
    let value: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| invalid(NAME, format!("must be a JSON object ({e})")))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::trim);
    match (
        field("complementStartDate"),
        field("complementEndDate"),
        field("complementScheduleDateList"),
    ) {
        (Some(from), Some(to), None) => Ok(ComplementDates::Range {
            from: ds_time("complementStartDate", from)?,
            to: ds_time("complementEndDate", to)?,
        }),
        (None, None, Some(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| ds_time("complementScheduleDateList", d))
            .collect::<Result<Vec<_>, _>>()
            .map(ComplementDates::List),
        _ => Err(invalid(
            NAME,
            "must hold complementStartDate and complementEndDate, or \
             complementScheduleDateList",
        )),
    }
}

/// A `yyyy-MM-dd HH:mm:ss` time, in UTC.
fn ds_time(name: &str, text: &str) -> Result<DateTime<Utc>, Error> {
    NaiveDateTime::parse_from_str(text, DS_TIME)
        .map(|t| t.and_utc())
        .map_err(|_| invalid(name, format!("{text:?} is not yyyy-MM-dd HH:mm:ss")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn at(text: &str) -> DateTime<Utc> {
        ds_time("t", text).unwrap()
    }

    /// The form the 3.1 UI sends for a plain start.
    #[test]
    fn a_ui_start_keeps_what_it_does_not_use() {
        let start = DsStart::parse(pairs(&[
            ("processDefinitionCode", "8123456789"),
            ("scheduleTime", ""),
            ("failureStrategy", "CONTINUE"),
            ("warningType", "NONE"),
            ("warningGroupId", "0"),
            ("execType", "START_PROCESS"),
            ("startNodeList", ""),
            ("taskDependType", "TASK_POST"),
            ("runMode", "RUN_MODE_SERIAL"),
            ("processInstancePriority", "HIGH"),
            ("workerGroup", "default"),
            ("environmentCode", "-1"),
            ("startParams", r#"{"dt":"2024-01-01"}"#),
            ("expectedParallelismNumber", ""),
            ("dryRun", "0"),
            ("testFlag", "0"),
            ("tenantCode", "default"),
        ]))
        .unwrap();
        assert_eq!(start.definition_code, 8_123_456_789);
        assert_eq!(start.priority, Priority::High);
        assert_eq!(start.params["dt"], "2024-01-01");
        assert!(start.complement.is_none());
        assert_eq!(start.options["failureStrategy"], "CONTINUE");
        assert_eq!(start.options["workerGroup"], "default");
        assert_eq!(start.options["dryRun"], "0");
        assert!(!start.options.contains_key("startParams"));
        assert!(!start.options.contains_key("processDefinitionCode"));
    }

    #[test]
    fn the_3_3_names_are_read() {
        let start = DsStart::parse(pairs(&[
            ("workflowDefinitionCode", "42"),
            ("workflowInstancePriority", "LOWEST"),
        ]))
        .unwrap();
        assert_eq!(
            (start.definition_code, start.priority),
            (42, Priority::Lowest)
        );
    }

    #[test]
    fn a_complement_range_runs_in_parallel_as_asked() {
        let start = DsStart::parse(pairs(&[
            ("processDefinitionCode", "42"),
            ("execType", "COMPLEMENT_DATA"),
            (
                "scheduleTime",
                r#"{"complementStartDate":"2024-01-01 00:00:00","complementEndDate":"2024-01-05 00:00:00"}"#,
            ),
            ("runMode", "RUN_MODE_PARALLEL"),
            ("expectedParallelismNumber", "3"),
            ("executionOrder", "ASC_ORDER"),
        ]))
        .unwrap();
        let c = start.complement.unwrap();
        assert_eq!(
            c.dates,
            ComplementDates::Range {
                from: at("2024-01-01 00:00:00"),
                to: at("2024-01-05 00:00:00")
            }
        );
        assert_eq!((c.order, c.max_in_flight), (Order::Asc, Some(3)));
    }

    #[test]
    fn a_complement_list_is_serial_and_newest_first_by_default() {
        let start = DsStart::parse(pairs(&[
            ("processDefinitionCode", "42"),
            ("execType", "COMPLEMENT_DATA"),
            (
                "scheduleTime",
                r#"{"complementScheduleDateList":"2024-01-01 00:00:00,2024-01-03 00:00:00"}"#,
            ),
        ]))
        .unwrap();
        let c = start.complement.unwrap();
        assert_eq!(
            c.dates,
            ComplementDates::List(vec![at("2024-01-01 00:00:00"), at("2024-01-03 00:00:00")])
        );
        assert_eq!((c.order, c.max_in_flight), (Order::Desc, Some(1)));
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "processDefinitionCode"),
            (&[("processDefinitionCode", "x")], "processDefinitionCode"),
            (&[("processDefinitionCode", "-4")], "processDefinitionCode"),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("workflowDefinitionCode", "2"),
                ],
                "workflowDefinitionCode",
            ),
            (
                &[("processDefinitionCode", "1"), ("startParams", "[1]")],
                "startParams",
            ),
            (
                &[("processDefinitionCode", "1"), ("startParams", "{")],
                "startParams",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("processInstancePriority", "URGENT"),
                ],
                "processInstancePriority",
            ),
            (
                &[("processDefinitionCode", "1"), ("execType", "STOP")],
                "execType",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                ],
                "scheduleTime",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                    ("scheduleTime", r#"{"complementStartDate":"2024-01-01"}"#),
                ],
                "scheduleTime",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                    (
                        "scheduleTime",
                        r#"{"complementScheduleDateList":"yesterday"}"#,
                    ),
                ],
                "complementScheduleDateList",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                    (
                        "scheduleTime",
                        r#"{"complementScheduleDateList":"2024-01-01 00:00:00"}"#,
                    ),
                    ("runMode", "RUN_MODE_PARALLEL"),
                    ("expectedParallelismNumber", "0"),
                ],
                "expectedParallelismNumber",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("processDefinitionCode", "1"),
                ],
                "processDefinitionCode",
            ),
        ];
        for (list, name) in cases {
            match DsStart::parse(pairs(list)) {
                Err(Error::Invalid { errors, .. }) => assert_eq!(errors[0].pointer, *name),
                other => panic!("{list:?}: {other:?}"),
            }
        }
    }
}
