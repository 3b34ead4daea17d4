//! When a schedule fires, as pure functions: its expression (cron, `rate(...)` or a one-time
//! `at`), its time zone, its start and end, the daylight-saving rule, and the catch-up
//! policy after downtime.
//!
//! **The daylight-saving rule.** A schedule fires at local times in its IANA time zone.
//! - A local time skipped in spring fires once, at the next valid instant (the first
//!   instant after the gap: 02:30 on a day that jumps from 02:00 to 03:00 fires at 03:00).
//! - A local time repeated in autumn fires once, at its first occurrence.
//!
//! Fire times are returned as UTC instants, strictly increasing; the logical date of a fire
//! is its nominal time in UTC.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// What makes a schedule fire.
#[derive(Debug, Clone)]
pub enum Expression {
    /// A cron expression: 5 fields, 6 with seconds, or Quartz's 7 (seconds and year, with
    /// `?`, `L`, `W` and `#`; Quartz's weekdays, 1 = Sunday).
    Cron(Box<Cron>),
    /// Every so often, from the schedule's start (or its creation).
    Rate(Duration),
    /// Once, at a local time.
    At(NaiveDateTime),
}

/// How long the shortest `rate` may be.
pub const MIN_RATE: Duration = Duration::from_secs(1);

impl Expression {
    /// Parses a cron expression.
    pub fn cron(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        let quartz = fields == 7;
        if !(5..=7).contains(&fields) {
            return Err(format!(
                "has {fields} fields; a cron expression has 5, 6 (with seconds) or 7 (Quartz, with seconds and year)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(if fields == 5 {
                Seconds::Disallowed
            } else {
                Seconds::Required
            })
            .year(if quartz {
                Year::Required
            } else {
                Year::Disallowed
            })
            .alternative_weekdays(quartz)
            .build();
        parser
            .parse(text)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| format!("is not a valid cron expression: {e}"))
    }

    /// Parses `rate(N unit)`: `rate(5 minutes)`, `rate(1 hour)`, `rate(30 seconds)`.
    pub fn rate(text: &str) -> Result<Self, String> {
        let inner = text
            .trim()
            .strip_prefix("rate(")
            .and_then(|t| t.strip_suffix(')'))
            .ok_or("must read rate(N unit), for example rate(5 minutes)")?;
        let (count, unit) = inner
            .trim()
            .split_once(' ')
            .ok_or("must read rate(N unit), for example rate(5 minutes)")?;
        let count: u64 = count
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number"))?;
        let seconds = match unit.trim() {
            "second" | "seconds" => 1,
            "minute" | "minutes" => 60,
            "hour" | "hours" => 3600,
            "day" | "days" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit {other:?}: seconds, minutes, hours or days"
                ));
            }
        };
        let every = Duration::from_secs(count.saturating_mul(seconds));
        if every < MIN_RATE {
            return Err("must be at least 1 second".into());
        }
        Ok(Self::Rate(every))
    }

    /// Parses a one-time local time, `2026-12-01T10:00:00`.
    pub fn at(text: &str) -> Result<Self, String> {
        NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S")
            .map(Self::At)
            .map_err(|_| {
                "must be a local time yyyy-mm-ddThh:mm:ss (the time zone is the schedule's)".into()
            })
    }
}

/// A schedule's timing: its expression in its time zone, between its start and end.
#[derive(Debug, Clone)]
pub struct Timing {
    /// What makes it fire.
    pub expression: Expression,
    /// The IANA time zone its local times are in.
    pub timezone: Tz,
    /// No fire before this.
    pub start: Option<DateTime<Utc>>,
    /// No fire after this.
    pub end: Option<DateTime<Utc>>,
    /// Where a `rate` counts from when it has no start: the schedule's creation.
    pub anchor: DateTime<Utc>,
}

/// Parses an IANA time zone name.
pub fn timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name)
        .map_err(|_| format!("{name:?} is not an IANA time zone (for example Europe/Berlin)"))
}

impl Timing {
    /// Fire times strictly after `after` and at most `until`, oldest first, at most `limit`.
    pub fn fires(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let after = match self.start {
            // The start itself may fire (fires fall on whole seconds).
            Some(start) if start > after => start - chrono::Duration::seconds(1),
            _ => after,
        };
        let until = match self.end {
            Some(end) if end < until => end,
            _ => until,
        };
        if until <= after {
            return Vec::new();
        }
        match &self.expression {
            Expression::Cron(cron) => self.cron_fires(cron, after, until, limit),
            Expression::Rate(every) => self.rate_fires(*every, after, until, limit),
            Expression::At(local) => self
                .local_instant(*local)
                .filter(|t| *t > after && *t <= until)
                .into_iter()
                .collect(),
        }
    }

    /// The next `n` fire times after `after` (within a year's search).
    pub fn next(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.fires(after, after + chrono::Duration::days(366 * 5), n)
    }

    fn cron_fires(
        &self,
        cron: &Cron,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = Vec::new();
        let mut seen_local: HashSet<NaiveDateTime> = HashSet::new();
        // Start a little before `after` in local time, so that a fire due in a repeated hour
        // is recognised as already seen rather than fired a second time.
        let whole = after.with_nanosecond(0).unwrap_or(after);
        let from = (whole - chrono::Duration::hours(3)).with_timezone(&self.timezone);
        // Stepped by hand: croner 3.0.1's iterator advances one second past each fire and
        // then searches exclusively, so it skips every other second of a per-second cron.
        let mut current = from;
        while let Ok(local) = cron.find_next_occurrence(&current, false) {
            current = local;
            let at = local.with_timezone(&Utc);
            if at > until || out.len() >= limit {
                break;
            }
            // The first occurrence of each local time only (autumn), in increasing order.
            let naive = local.naive_local();
            let first = seen_local.insert(naive);
            let increasing = out.last().is_none_or(|last| at > *last);
            if first && increasing && at > after {
                out.push(at);
            } else if first && at <= after {
                continue;
            }
        }
        out
    }

    fn rate_fires(
        &self,
        every: Duration,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let anchor = self.start.unwrap_or(self.anchor);
        let step = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        let step_us = step.num_microseconds().unwrap_or(i64::MAX).max(1);
        let since = (after - anchor).num_microseconds().unwrap_or(0);
        let mut n = if since < 0 { 0 } else { since / step_us + 1 };
        let mut out = Vec::new();
        while out.len() < limit {
            let at = anchor + chrono::Duration::microseconds(n.saturating_mul(step_us));
            if at > until {
                break;
            }
            if at > after {
                out.push(at);
            }
            n += 1;
        }
        out
    }

    /// The instant of a local time: skipped (spring), the first instant after the gap;
    /// repeated (autumn), its first occurrence.
    fn local_instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            chrono::LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            chrono::LocalResult::None => {
                // Walk forward minute by minute to the end of the gap (gaps are at most hours).
                (1..=24 * 60).find_map(|m| {
                    let later = local + chrono::Duration::minutes(m);
                    match self.timezone.from_local_datetime(&later) {
                        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                        chrono::LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                        chrono::LocalResult::None => None,
                    }
                })
            }
        }
    }
}

/// What happens to fires missed while nothing ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchupPolicy {
    /// Fire every missed time within the window, oldest first.
    All,
    /// Fire only the most recent missed time within the window.
    Latest,
    /// Skip missed times.
    None,
}

/// The catch-up policy and how far back it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catchup {
    /// What to do with missed fires.
    pub policy: CatchupPolicy,
    /// Fires older than this, when found, are skipped whatever the policy.
    pub window: Duration,
}

/// A fire is on time, not missed, when found within this of its due time.
pub const ON_TIME: Duration = Duration::from_secs(5);

/// Of the fires due by `now` (oldest first), those to start: every on-time fire, and of the
/// missed ones, what the policy says.
pub fn to_fire(due: &[DateTime<Utc>], now: DateTime<Utc>, catchup: Catchup) -> Vec<DateTime<Utc>> {
    let late = |t: &DateTime<Utc>| (now - *t).to_std().unwrap_or_default();
    let window = |t: &&DateTime<Utc>| late(t) <= catchup.window;
    let (on_time, missed): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) =
        due.iter().partition(|t| late(t) <= ON_TIME);
    let mut chosen: Vec<DateTime<Utc>> = match catchup.policy {
        CatchupPolicy::All => missed.iter().filter(window).copied().collect(),
        CatchupPolicy::Latest => missed
            .iter()
            .rev()
            .find(|t| window(t))
            .copied()
            .into_iter()
            .collect(),
        CatchupPolicy::None => Vec::new(),
    };
    chosen.extend(on_time);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(expression: Expression, zone: &str) -> Timing {
        Timing {
            expression,
            timezone: timezone(zone).expect("zone"),
            start: None,
            end: None,
            anchor: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn daily_0230(zone: &str) -> Timing {
        timing(Expression::cron("0 30 2 * * ?  *").expect("cron"), zone)
    }

    #[test]
    fn a_time_skipped_in_spring_fires_once_at_the_next_valid_instant() {
        // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let t = daily_0230("Europe/Berlin");
        let fires = t.fires(utc(2026, 3, 28, 12, 0), utc(2026, 3, 30, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]);
        // New York: 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let t = daily_0230("America/New_York");
        let fires = t.fires(utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]);
        // A one-time `at` in the gap too.
        let at = timing(
            Expression::at("2026-03-29T02:30:00").expect("at"),
            "Europe/Berlin",
        );
        assert_eq!(at.next(utc(2026, 3, 1, 0, 0), 5), [utc(2026, 3, 29, 1, 0)]);
    }

    #[test]
    fn a_time_repeated_in_autumn_fires_once() {
        // Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let t = daily_0230("Europe/Berlin");
        let fires = t.fires(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]);
        // Every half hour through the repeated hour: each local time once, in order.
        let half = timing(
            Expression::cron("0 */30 * * * ?").expect("cron"),
            "Europe/Berlin",
        );
        let fires = half.fires(utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 15), 20);
        assert_eq!(
            fires,
            [
                utc(2026, 10, 25, 0, 0),
                utc(2026, 10, 25, 0, 30),
                utc(2026, 10, 25, 2, 0)
            ]
        );
        // New York: 2026-11-01 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let t = timing(
            Expression::cron("30 1 * * *").expect("cron"),
            "America/New_York",
        );
        let fires = t.fires(utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]);
    }

    #[test]
    fn cron_rate_and_at_forms_parse_and_bad_ones_say_why() {
        for ok in [
            "0 0 3/6 * * ? *",
            "0 0 12 L * ? *",
            "0 0 12 15W * ? *",
            "0 0 12 ? * 6#3 *",
            "*/5 * * * *",
            "*/10 * * * * *",
        ] {
            assert!(Expression::cron(ok).is_ok(), "{ok}");
        }
        // Quartz weekdays: 6#3 is the third Friday.
        let t = timing(Expression::cron("0 0 12 ? * 6#3 *").expect("cron"), "UTC");
        assert_eq!(t.next(utc(2026, 4, 1, 0, 0), 1), [utc(2026, 4, 17, 12, 0)]);
        assert!(Expression::cron("* * *").is_err());
        assert!(Expression::cron("61 * * * *").is_err());
        let every = timing(Expression::rate("rate(5 minutes)").expect("rate"), "UTC");
        assert_eq!(
            every.next(utc(2026, 1, 1, 0, 1), 2),
            [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 10)]
        );
        for bad in ["rate(0 minutes)", "rate(5 fortnights)", "every 5 minutes"] {
            assert!(Expression::rate(bad).is_err(), "{bad}");
        }
        assert!(Expression::at("tomorrow").is_err());
        assert!(timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn a_per_second_cron_fires_every_second() {
        let every_second = timing(Expression::cron("* * * * * *").expect("cron"), "UTC");
        let from = Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap();
        let fires = every_second.fires(from, from + chrono::Duration::seconds(600), 10_000);
        assert_eq!(fires.len(), 600);
        assert!(
            fires
                .windows(2)
                .all(|w| w[1] - w[0] == chrono::Duration::seconds(1))
        );
    }

    #[test]
    fn start_and_end_bound_the_fires() {
        let mut t = timing(Expression::cron("0 * * * *").expect("cron"), "UTC");
        t.start = Some(utc(2026, 1, 1, 3, 0));
        t.end = Some(utc(2026, 1, 1, 5, 0));
        let fires = t.fires(utc(2026, 1, 1, 0, 0), utc(2026, 1, 2, 0, 0), 10);
        assert_eq!(
            fires,
            [
                utc(2026, 1, 1, 3, 0),
                utc(2026, 1, 1, 4, 0),
                utc(2026, 1, 1, 5, 0)
            ]
        );
    }

    #[test]
    fn catch_up_policies_choose_among_missed_fires_within_the_window() {
        let now = utc(2026, 1, 1, 12, 0);
        let due: Vec<_> = (0..=180)
            .step_by(30)
            .map(|m| now - chrono::Duration::minutes(180 - m))
            .collect();
        let window = Duration::from_secs(3600);
        let all = to_fire(
            &due,
            now,
            Catchup {
                policy: CatchupPolicy::All,
                window,
            },
        );
        assert_eq!(all, [utc(2026, 1, 1, 11, 0), utc(2026, 1, 1, 11, 30), now]);
        let latest = to_fire(
            &due,
            now,
            Catchup {
                policy: CatchupPolicy::Latest,
                window,
            },
        );
        assert_eq!(latest, [utc(2026, 1, 1, 11, 30), now]);
        let none = to_fire(
            &due,
            now,
            Catchup {
                policy: CatchupPolicy::None,
                window,
            },
        );
        assert_eq!(none, [now], "an on-time fire always fires");
    }
}
