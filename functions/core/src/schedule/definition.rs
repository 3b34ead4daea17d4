//! A schedule's definition as the domain keeps it: one expression, its time zone, its
//! window, and what each fire starts. Built from a client's body by one checked conversion
//! (`usecases::schedules::ScheduleBody`), stored by every backend as it is.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Catchup, CatchupPolicy, Expression, Timing, timezone};
use crate::error::InvalidParam;
use crate::model::Priority;

/// What makes a schedule fire, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// A cron expression (5, 6 or Quartz's 7 fields).
    Cron(String),
    /// `rate(N unit)`.
    Rate(String),
    /// A one-time local time, `yyyy-mm-ddThh:mm:ss`.
    At(String),
}

impl When {
    /// Its expression, or why it is not one (with the field it came from).
    pub fn expression(&self) -> Result<Expression, InvalidParam> {
        match self {
            Self::Cron(c) => Expression::cron(c).map_err(|e| InvalidParam::new("/cron", e)),
            Self::Rate(r) => Expression::rate(r).map_err(|e| InvalidParam::new("/rate", e)),
            Self::At(a) => Expression::at(a).map_err(|e| InvalidParam::new("/at", e)),
        }
    }
}

/// The catch-up part of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchupSpec {
    /// `all`, `latest` or `none`.
    pub policy: CatchupPolicy,
    /// How far back missed fires are considered, such as `1h`.
    pub window: String,
}

impl Default for CatchupSpec {
    /// Every missed fire of the last hour: a fire is never dropped silently, and a long
    /// outage cannot flood the queue.
    fn default() -> Self {
        Self {
            policy: CatchupPolicy::All,
            window: "1h".into(),
        }
    }
}

/// A schedule's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct ScheduleDefinition {
    /// What makes it fire.
    pub when: When,
    /// The IANA time zone of its local times.
    pub timezone: String,
    /// No fire before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// No fire after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// The params of every instance it starts.
    pub params: Map<String, Value>,
    /// Their priority.
    pub priority: Priority,
    /// A paused schedule does not fire; resuming it applies the catch-up policy.
    pub paused: bool,
    /// What happens to fires missed while nothing ran.
    pub catchup: CatchupSpec,
}

/// The stored (and shown) shape of a definition: its expression as one of three fields.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<DateTime<Utc>>,
    params: Map<String, Value>,
    priority: Priority,
    paused: bool,
    catchup: CatchupSpec,
}

impl TryFrom<Stored> for ScheduleDefinition {
    type Error = String;

    fn try_from(s: Stored) -> Result<Self, String> {
        let when = match (s.cron, s.rate, s.at) {
            (Some(c), None, None) => When::Cron(c),
            (None, Some(r), None) => When::Rate(r),
            (None, None, Some(a)) => When::At(a),
            _ => return Err("a schedule has exactly one of cron, rate and at".into()),
        };
        Ok(Self {
            when,
            timezone: s.timezone,
            start: s.start,
            end: s.end,
            params: s.params,
            priority: s.priority,
            paused: s.paused,
            catchup: s.catchup,
        })
    }
}

impl From<ScheduleDefinition> for Stored {
    fn from(d: ScheduleDefinition) -> Self {
        let (cron, rate, at) = match d.when {
            When::Cron(c) => (Some(c), None, None),
            When::Rate(r) => (None, Some(r), None),
            When::At(a) => (None, None, Some(a)),
        };
        Self {
            cron,
            rate,
            at,
            timezone: d.timezone,
            start: d.start,
            end: d.end,
            params: d.params,
            priority: d.priority,
            paused: d.paused,
            catchup: d.catchup,
        }
    }
}

impl ScheduleDefinition {
    /// Its timing from `anchor` (where a `rate` without a start counts from), and its
    /// catch-up, checked: a parsed expression, a known time zone, an end not before the
    /// start, a window.
    pub fn timing(&self, anchor: DateTime<Utc>) -> Result<(Timing, Catchup), InvalidParam> {
        let expression = self.when.expression()?;
        let timezone = timezone(&self.timezone).map_err(|e| InvalidParam::new("/timezone", e))?;
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end < start
        {
            return Err(InvalidParam::new("/end", "is before start"));
        }
        let window: Duration = flowgate_settings::parse_duration(&self.catchup.window)
            .map_err(|e| InvalidParam::new("/catchup/window", e))?;
        let timing = Timing {
            expression,
            timezone,
            start: self.start,
            end: self.end,
            anchor,
        };
        let catchup = Catchup {
            policy: self.catchup.policy,
            window,
        };
        Ok((timing, catchup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records stored before the definition was its own type read as they were written.
    #[test]
    fn the_stored_shape_is_the_flat_one() {
        let stored = json!({"cron": "0 0 3 * * ? *", "timezone": "Europe/Berlin",
            "params": {"a": 1}, "priority": "HIGH", "paused": false,
            "catchup": {"policy": "latest", "window": "2h"}});
        let definition: ScheduleDefinition = serde_json::from_value(stored.clone()).expect("reads");
        assert_eq!(definition.when, When::Cron("0 0 3 * * ? *".into()));
        assert_eq!(serde_json::to_value(&definition).expect("writes"), stored);
        let two = json!({"cron": "* * * * *", "rate": "rate(1 minute)", "timezone": "UTC",
            "params": {}, "priority": "MEDIUM", "paused": false,
            "catchup": {"policy": "all", "window": "1h"}});
        assert!(serde_json::from_value::<ScheduleDefinition>(two).is_err());
    }
}
