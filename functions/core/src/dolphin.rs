//! The DolphinScheduler start contract: its parameters read into a Flowgate start or
//! backfill, and its answer codes. The door itself is in `http::dolphin`; the use case in
//! `usecases::dolphin`.
//!
//! Parameters arrive as DolphinScheduler's `@RequestParam`s do: a query string or a form,
//! every value a string, enums by name. They are bound as DolphinScheduler binds them: a
//! required parameter that is missing, a number that is not one, or an enum value it does
//! not know is refused (DolphinScheduler's 50014), never started with a guess. What
//! Flowgate does not act on (`failureStrategy`, `warningType`, `workerGroup`, `tenantCode`,
//! `testFlag` and the rest) is kept verbatim as the request's `options`, so nothing a
//! caller sent is lost.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::model::Priority;
use crate::usecases::backfills::Order;

/// Success.
pub const SUCCESS: i64 = 0;
/// `REQUEST_PARAMS_NOT_VALID_ERROR`: a parameter is malformed.
pub const PARAMS_NOT_VALID: i64 = 10001;
/// `USER_NO_OPERATION_PROJECT_PERM`: the credentials may not start workflows.
pub const NO_PERMISSION: i64 = 30002;
/// `PROCESS_DEFINE_NOT_EXIST`: no such definition in this project.
pub const DEFINITION_NOT_EXIST: i64 = 50003;
/// `PROCESS_DEFINE_NOT_RELEASE`: the definition is offline.
pub const DEFINITION_NOT_RELEASED: i64 = 50004;
/// `START_PROCESS_INSTANCE_ERROR`: a parameter that does not bind (missing, not a
/// number, an unknown enum value), and any other failure to start.
pub const START_ERROR: i64 = 50014;

/// The most parameters one call may carry.
pub const MAX_PARAMS: usize = 64;
/// The longest parameter value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// The longest query string, in bytes; longer calls send their parameters as a form.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// The longest value a parameter may have in a query string, in characters: short enough
/// that a query of every parameter, percent-encoded, stays under the request-target limit.
/// A form takes values of up to [`MAX_VALUE_BYTES`].
pub fn max_query_chars(name: &str) -> usize {
    match name {
        "startParams" => 2048,
        "scheduleTime" => 1024,
        _ => 128,
    }
}

/// A call DolphinScheduler would refuse, with the code it would answer and why, in its
/// parameters' own names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct Refusal {
    /// The DolphinScheduler code.
    pub code: i64,
    /// What is wrong, naming the parameter.
    pub msg: String,
}

impl Refusal {
    /// A parameter that does not bind: missing, not a number, not one of its enum's values.
    fn unbound(name: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            code: START_ERROR,
            msg: format!("start process instance error: parameter {name} {reason}"),
        }
    }

    /// A parameter that binds but is not valid.
    fn invalid(name: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            code: PARAMS_NOT_VALID,
            msg: format!("request parameter {name} is not valid: {reason}"),
        }
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
    /// `startParams` (a JSON object, or 3.3's array of `{prop, value}`): the params.
    pub params: Map<String, Value>,
    /// With `execType=COMPLEMENT_DATA`, the backfill it asks for.
    pub complement: Option<Complement>,
    /// `dryRun=1`: the instance is created, and never handed to its target.
    pub dry_run: bool,
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
    /// workflow's schedules; a range whose ends are equal is that one instant.
    Range {
        /// The first instant.
        from: DateTime<Utc>,
        /// The last instant.
        to: DateTime<Utc>,
    },
    /// `complementScheduleDateList`.
    List(Vec<DateTime<Utc>>),
}

/// The enums DolphinScheduler binds, with the values it knows. A value outside its list
/// does not bind (an empty value is absent, as Spring reads it).
const ENUMS: [(&str, &[&str]); 7] = [
    ("failureStrategy", &["END", "CONTINUE"]),
    ("warningType", &["NONE", "SUCCESS", "FAILURE", "ALL"]),
    ("taskDependType", &["TASK_ONLY", "TASK_PRE", "TASK_POST"]),
    ("complementDependentMode", &["OFF_MODE", "ALL_DEPENDENT"]),
    ("runMode", &["RUN_MODE_SERIAL", "RUN_MODE_PARALLEL"]),
    ("executionOrder", &["DESC_ORDER", "ASC_ORDER"]),
    ("execType", &["START_PROCESS", "COMPLEMENT_DATA"]),
];

/// The numbers DolphinScheduler binds: a value that is not a whole number does not bind.
const NUMBERS: [&str; 5] = [
    "warningGroupId",
    "environmentCode",
    "timeout",
    "expectedParallelismNumber",
    "version",
];

/// The flags DolphinScheduler binds as 0 or 1.
const FLAGS: [&str; 2] = ["dryRun", "testFlag"];

/// Parameters DolphinScheduler requires on every start.
const REQUIRED: [&str; 3] = ["failureStrategy", "warningType", "scheduleTime"];

/// The parameters of one call, each given once.
struct Params(BTreeMap<String, String>);

impl Params {
    /// A parameter's value; an empty one is absent, as Spring binds it.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

impl DsStart {
    /// Reads a call's parameters (query and form together), as DolphinScheduler binds
    /// them, then checks what Flowgate acts on.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, Refusal> {
        let params = unique(pairs)?;
        bind(&params)?;
        let definition_code = definition_code(&params)?;
        let priority = priority(&params)?;
        let start_params = start_params(params.0.get("startParams").map(String::as_str))?;
        let complement = match params.get("execType") {
            Some("COMPLEMENT_DATA") => Some(Complement {
                dates: complement_dates(params.0.get("scheduleTime").map(String::as_str))?,
                order: match params.get("executionOrder") {
                    Some("ASC_ORDER") => Order::Asc,
                    _ => Order::Desc,
                },
                max_in_flight: max_in_flight(&params)?,
            }),
            _ => None,
        };
        let dry_run = params.get("dryRun") == Some("1");
        let options = params
            .0
            .into_iter()
            .filter(|(k, _)| !CONSUMED.contains(&k.as_str()))
            .collect();
        Ok(Self {
            definition_code,
            priority,
            params: start_params,
            complement,
            dry_run,
            options,
        })
    }
}

fn unique(pairs: Vec<(String, String)>) -> Result<Params, Refusal> {
    if pairs.len() > MAX_PARAMS {
        return Err(Refusal::invalid(
            "(all)",
            format!("a call carries at most {MAX_PARAMS} parameters"),
        ));
    }
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if value.len() > MAX_VALUE_BYTES {
            return Err(Refusal::invalid(
                &name,
                format!("is longer than {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(Refusal::invalid(&name, "is given more than once"));
        }
    }
    Ok(Params(params))
}

/// Binds what DolphinScheduler binds on every call: the required parameters, its enums,
/// its numbers and its 0/1 flags.
fn bind(params: &Params) -> Result<(), Refusal> {
    for name in REQUIRED {
        // `scheduleTime` may be empty on a plain start (the 3.1 UI sends `scheduleTime=`).
        let present = match name {
            "scheduleTime" => params.0.contains_key(name),
            _ => params.get(name).is_some(),
        };
        if !present {
            return Err(Refusal::unbound(name, "is required"));
        }
    }
    for (name, known) in ENUMS {
        if let Some(value) = params.get(name)
            && !known.contains(&value)
        {
            return Err(Refusal::unbound(
                name,
                format!("{value:?} is not one of {}", known.join(", ")),
            ));
        }
    }
    for name in NUMBERS {
        if let Some(value) = params.get(name)
            && value.parse::<i64>().is_err()
        {
            return Err(Refusal::unbound(
                name,
                format!("{value:?} is not a whole number"),
            ));
        }
    }
    for name in FLAGS {
        if let Some(value) = params.get(name)
            && !matches!(value, "0" | "1")
        {
            return Err(Refusal::unbound(name, format!("{value:?} is not 0 or 1")));
        }
    }
    Ok(())
}

fn definition_code(params: &Params) -> Result<i64, Refusal> {
    let named = ["processDefinitionCode", "workflowDefinitionCode"]
        .into_iter()
        .filter_map(|name| params.get(name).map(|v| (name, v)))
        .collect::<Vec<_>>();
    let (name, text) = match named.as_slice() {
        [] => {
            return Err(Refusal::unbound(
                "processDefinitionCode",
                "is required (or workflowDefinitionCode)",
            ));
        }
        [(_, a), (name, b)] if a != b => {
            return Err(Refusal::invalid(name, "differs from processDefinitionCode"));
        }
        [first, ..] => *first,
    };
    match text.parse::<i64>() {
        Ok(code) if code > 0 => Ok(code),
        Ok(_) => Err(Refusal::invalid(name, "must be a positive number")),
        Err(_) => Err(Refusal::unbound(name, format!("{text:?} is not a number"))),
    }
}

fn priority(params: &Params) -> Result<Priority, Refusal> {
    let mut found = Priority::default();
    for name in ["processInstancePriority", "workflowInstancePriority"] {
        if let Some(text) = params.get(name) {
            found = serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
                Refusal::unbound(
                    name,
                    format!("{text:?} is not one of HIGHEST, HIGH, MEDIUM, LOW, LOWEST"),
                )
            })?;
        }
    }
    Ok(found)
}

/// `startParams` as DolphinScheduler's PropertyUtils reads it: a JSON object of values
/// (DolphinScheduler's own clients send strings), or 3.3's array of
/// `{prop, direct, type, value}`, which becomes `{prop: value}`. A name given twice is
/// refused.
fn start_params(text: Option<&str>) -> Result<Map<String, Value>, Refusal> {
    const NAME: &str = "startParams";
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Map::new());
    };
    if let Some((_, key)) = crate::validation::repeated_key(text.as_bytes()) {
        return Err(Refusal::invalid(
            NAME,
            format!("gives {key:?} more than once"),
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Array(items)) => properties(items),
        Ok(_) => Err(Refusal::invalid(
            NAME,
            "must be a JSON object, or an array of {prop, value}",
        )),
        Err(e) => Err(Refusal::invalid(NAME, format!("is not JSON ({e})"))),
    }
}

/// 3.3's `[{"prop", "direct", "type", "value"}]`: each property's value by its name.
fn properties(items: Vec<Value>) -> Result<Map<String, Value>, Refusal> {
    const NAME: &str = "startParams";
    let mut map = Map::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            return Err(Refusal::invalid(
                NAME,
                format!("item {i} is not a {{prop, value}} object"),
            ));
        };
        let prop = match item.remove("prop") {
            Some(Value::String(p)) if !p.trim().is_empty() => p,
            _ => {
                return Err(Refusal::invalid(
                    NAME,
                    format!("item {i} has no prop (a name)"),
                ));
            }
        };
        let value = match item.remove("value") {
            None | Some(Value::Null) => Value::String(String::new()),
            Some(v) => v,
        };
        if map.insert(prop.clone(), value).is_some() {
            return Err(Refusal::invalid(
                NAME,
                format!("gives {prop:?} more than once"),
            ));
        }
    }
    Ok(map)
}

fn max_in_flight(params: &Params) -> Result<Option<usize>, Refusal> {
    let parallelism = match params.get("expectedParallelismNumber") {
        None => None,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Some(n),
            _ => {
                return Err(Refusal::invalid(
                    "expectedParallelismNumber",
                    "must be from 1 to 1000",
                ));
            }
        },
    };
    Ok(match params.get("runMode") {
        Some("RUN_MODE_PARALLEL") => parallelism,
        _ => Some(1),
    })
}

fn complement_dates(text: Option<&str>) -> Result<ComplementDates, Refusal> {
    const NAME: &str = "scheduleTime";
    let text = text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::invalid(NAME, "is required for COMPLEMENT_DATA"))?;
    let value: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| Refusal::invalid(NAME, format!("must be a JSON object ({e})")))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::trim);
    match (
        field("complementStartDate"),
        field("complementEndDate"),
        field("complementScheduleDateList"),
    ) {
        (Some(from), Some(to), None) => {
            let from = ds_time("complementStartDate", from)?;
            let to = ds_time("complementEndDate", to)?;
            if to < from {
                return Err(Refusal::invalid(
                    "complementEndDate",
                    "is before complementStartDate",
                ));
            }
            Ok(ComplementDates::Range { from, to })
        }
        (None, None, Some(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| ds_time("complementScheduleDateList", d))
            .collect::<Result<Vec<_>, _>>()
            .map(ComplementDates::List),
        _ => Err(Refusal::invalid(
            NAME,
            "must hold complementStartDate and complementEndDate, or \
             complementScheduleDateList",
        )),
    }
}

/// A `yyyy-MM-dd HH:mm:ss` time, in UTC.
fn ds_time(name: &str, text: &str) -> Result<DateTime<Utc>, Refusal> {
    NaiveDateTime::parse_from_str(text, DS_TIME)
        .map(|t| t.and_utc())
        .map_err(|_| Refusal::invalid(name, format!("{text:?} is not yyyy-MM-dd HH:mm:ss")))
}

/// Turns DolphinScheduler's string parameters into the types the workflow's schema asks
/// for: a top-level property typed `integer`, `number` or `boolean` (alone, or with
/// `null`) whose value is a string that reads as one becomes one. Anything else is left as
/// it is, for the schema to judge.
pub fn typed(schema: &Value, params: &mut Map<String, Value>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, value) in params.iter_mut() {
        let Value::String(text) = value else { continue };
        let Some(wanted) = properties.get(name).and_then(|p| p.get("type")) else {
            continue;
        };
        let types: Vec<&str> = match wanted {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if types.contains(&"string") {
            continue;
        }
        let text = text.trim();
        let converted = types.iter().find_map(|t| match *t {
            "integer" => text.parse::<i64>().ok().map(Value::from),
            "number" => text.parse::<i64>().ok().map(Value::from).or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::from)
            }),
            "boolean" => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        });
        if let Some(converted) = converted {
            *value = converted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The parameters every call needs, then `rest`.
    fn call(rest: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = pairs(&[
            ("failureStrategy", "END"),
            ("warningType", "NONE"),
            ("scheduleTime", ""),
        ]);
        let overridden: Vec<&str> = rest.iter().map(|(k, _)| *k).collect();
        all.retain(|(k, _)| !overridden.contains(&k.as_str()));
        all.extend(pairs(rest));
        all
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
        assert!(!start.dry_run);
        assert_eq!(start.options["failureStrategy"], "CONTINUE");
        assert_eq!(start.options["workerGroup"], "default");
        assert_eq!(start.options["dryRun"], "0");
        assert!(!start.options.contains_key("startParams"));
        assert!(!start.options.contains_key("processDefinitionCode"));
    }

    #[test]
    fn the_3_3_names_and_startparams_array_are_read() {
        let start = DsStart::parse(call(&[
            ("workflowDefinitionCode", "42"),
            ("workflowInstancePriority", "LOWEST"),
            (
                "startParams",
                r#"[{"prop":"dt","direct":"IN","type":"VARCHAR","value":"2024-01-01"},
                    {"prop":"n","direct":"IN","type":"INTEGER","value":"3"}]"#,
            ),
            ("dryRun", "1"),
        ]))
        .unwrap();
        assert_eq!(
            (start.definition_code, start.priority, start.dry_run),
            (42, Priority::Lowest, true)
        );
        assert_eq!(
            Value::Object(start.params),
            json!({"dt": "2024-01-01", "n": "3"})
        );
    }

    #[test]
    fn a_complement_range_runs_in_parallel_as_asked() {
        let start = DsStart::parse(call(&[
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
        let start = DsStart::parse(call(&[
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
    fn what_does_not_bind_is_50014_and_what_is_not_valid_10001() {
        /// Parameters, the code they get, and the name its message gives.
        type Case<'a> = (&'a [(&'a str, &'a str)], i64, &'a str);
        let cases: &[Case] = &[
            (&[], START_ERROR, "processDefinitionCode"),
            (
                &[("processDefinitionCode", "x")],
                START_ERROR,
                "processDefinitionCode",
            ),
            (
                &[("processDefinitionCode", "-4")],
                PARAMS_NOT_VALID,
                "processDefinitionCode",
            ),
            (
                &[("processDefinitionCode", "1"), ("failureStrategy", "")],
                START_ERROR,
                "failureStrategy",
            ),
            (
                &[("processDefinitionCode", "1"), ("warningType", "SOMETIMES")],
                START_ERROR,
                "warningType",
            ),
            (
                &[("processDefinitionCode", "1"), ("runMode", "FAST")],
                START_ERROR,
                "runMode",
            ),
            (
                &[("processDefinitionCode", "1"), ("dryRun", "yes")],
                START_ERROR,
                "dryRun",
            ),
            (
                &[("processDefinitionCode", "1"), ("timeout", "soon")],
                START_ERROR,
                "timeout",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("workflowDefinitionCode", "2"),
                ],
                PARAMS_NOT_VALID,
                "workflowDefinitionCode",
            ),
            (
                &[("processDefinitionCode", "1"), ("startParams", "1")],
                PARAMS_NOT_VALID,
                "startParams",
            ),
            (
                &[("processDefinitionCode", "1"), ("startParams", "{")],
                PARAMS_NOT_VALID,
                "startParams",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("startParams", r#"{"a":"1","a":"2"}"#),
                ],
                PARAMS_NOT_VALID,
                "startParams",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("startParams", r#"[{"prop":"a","value":"1"},{"prop":"a"}]"#),
                ],
                PARAMS_NOT_VALID,
                "startParams",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("processInstancePriority", "URGENT"),
                ],
                START_ERROR,
                "processInstancePriority",
            ),
            (
                &[("processDefinitionCode", "1"), ("execType", "STOP")],
                START_ERROR,
                "execType",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                ],
                PARAMS_NOT_VALID,
                "scheduleTime",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                    ("scheduleTime", r#"{"complementStartDate":"2024-01-01"}"#),
                ],
                PARAMS_NOT_VALID,
                "scheduleTime",
            ),
            (
                &[
                    ("processDefinitionCode", "1"),
                    ("execType", "COMPLEMENT_DATA"),
                    (
                        "scheduleTime",
                        r#"{"complementStartDate":"2024-01-02 00:00:00","complementEndDate":"2024-01-01 00:00:00"}"#,
                    ),
                ],
                PARAMS_NOT_VALID,
                "complementEndDate",
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
                PARAMS_NOT_VALID,
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
                PARAMS_NOT_VALID,
                "expectedParallelismNumber",
            ),
        ];
        for (list, code, name) in cases {
            let refused = DsStart::parse(call(list)).expect_err("refused");
            assert_eq!(refused.code, *code, "{list:?}: {}", refused.msg);
            assert!(refused.msg.contains(name), "{list:?}: {}", refused.msg);
            assert!(!refused.msg.contains("/"), "no pointer: {}", refused.msg);
        }
        // Required on every call, as DolphinScheduler requires them.
        for missing in REQUIRED {
            let mut all = call(&[("processDefinitionCode", "1")]);
            all.retain(|(k, _)| k != missing);
            let refused = DsStart::parse(all).expect_err("refused");
            assert_eq!(refused.code, START_ERROR);
            assert!(refused.msg.contains(missing), "{}", refused.msg);
        }
        let twice = pairs(&[
            ("processDefinitionCode", "1"),
            ("processDefinitionCode", "1"),
        ]);
        assert_eq!(
            DsStart::parse(twice).expect_err("refused").code,
            PARAMS_NOT_VALID
        );
    }

    #[test]
    fn string_parameters_take_the_schemas_types() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer"}, "x": {"type": "number"}, "on": {"type": "boolean"},
            "maybe": {"type": ["integer", "null"]}, "s": {"type": "string"},
            "either": {"type": ["string", "integer"]}}});
        let mut params = json!({"n": "42", "x": "2.5", "on": "true", "maybe": "7",
            "s": "5", "either": "5", "bad": "1", "wrong": "x"})
        .as_object()
        .cloned()
        .unwrap();
        params.insert("n2".into(), json!("4x"));
        typed(&schema, &mut params);
        assert_eq!(
            Value::Object(params),
            json!({"n": 42, "x": 2.5, "on": true, "maybe": 7, "s": "5", "either": "5",
                "bad": "1", "wrong": "x", "n2": "4x"})
        );
    }
}
