//! When a schedule fires, as pure functions: its expression (cron, `rate(...)` or a one-time
//! `at`), its time zone, its start and end, the daylight-saving rule, and the catch-up
//! policy after downtime.
//!
//! **The daylight-saving rule.** A schedule fires at local times in its IANA time zone.
//! - A local time inside a spring gap fires once, at the first instant after the gap (02:30
//!   on a day that jumps from 02:00 to 03:00 fires at 03:00). Only times inside the gap
//!   move: 01:30 on that day fires at 01:30.
//! - A local time repeated in autumn fires once, at its first occurrence.
//!
//! Fire times are returned as UTC instants, strictly increasing; the logical date of a fire
//! is its nominal time in UTC. Every search is bounded by a [`Budget`] of steps (a day of
//! the walk, or a fire, each), and looks at most [`HORIZON_DAYS`] ahead.

mod budget;
mod cron;
mod definition;

pub use budget::{Budget, Exhausted};
pub use cron::CronExpr;
pub use definition::{CatchupSpec, ScheduleDefinition, When};

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What makes a schedule fire.
#[derive(Debug, Clone)]
pub enum Expression {
    /// A cron expression: 5 fields, 6 with seconds, or Quartz's 7 (seconds and year, with
    /// `?`, `L`, `LW`, `L-n`, `W` and `#`; Quartz's weekdays, 1 = Sunday).
    Cron(Box<CronExpr>),
    /// Every so often, from the schedule's start (or its creation).
    Rate(Duration),
    /// Once, at a local time.
    At(NaiveDateTime),
}

/// How long the shortest `rate` may be.
pub const MIN_RATE: Duration = Duration::from_secs(1);

/// How far ahead a schedule's next fire is looked for: one that does not fire within this
/// of when it is put (or of its `start`) is refused, as one that never fires.
pub const HORIZON_DAYS: i64 = 5 * 366;

/// The steps one look for a schedule's next fires may take: a day of the horizon each, and
/// one per fire found.
pub const NEXT_FIRES_STEPS: u64 = 4 * HORIZON_DAYS as u64;

impl Expression {
    /// Parses a cron expression.
    pub fn cron(text: &str) -> Result<Self, String> {
        CronExpr::parse(text).map(|c| Self::Cron(Box::new(c)))
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
        if every > Duration::from_secs(HORIZON_DAYS as u64 * 86_400) {
            return Err(format!(
                "fires less often than once in {HORIZON_DAYS} days, the horizon a schedule must fire within"
            ));
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
    /// Fire times strictly after `after` and at most `until`, oldest first, at most `limit`,
    /// within `budget`.
    pub fn fires(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
        budget: &mut Budget,
    ) -> Result<Vec<DateTime<Utc>>, Exhausted> {
        let after = match self.start {
            // The start itself may fire (fires fall on whole seconds).
            Some(start) if start > after => start - chrono::Duration::seconds(1),
            _ => after,
        };
        let until = match self.end {
            Some(end) if end < until => end,
            _ => until,
        };
        if until <= after || limit == 0 {
            return Ok(Vec::new());
        }
        match &self.expression {
            Expression::Cron(cron) => self.cron_fires(cron, after, until, limit, budget),
            Expression::Rate(every) => self.rate_fires(*every, after, until, limit, budget),
            Expression::At(local) => Ok(Some(self.local_instant(*local))
                .filter(|t| *t > after && *t <= until)
                .into_iter()
                .collect()),
        }
    }

    /// The next `n` fire times after `after`, within the horizon.
    pub fn next(&self, after: DateTime<Utc>, n: usize) -> Result<Vec<DateTime<Utc>>, Exhausted> {
        let until = after + chrono::Duration::days(HORIZON_DAYS);
        let mut budget = Budget::steps(NEXT_FIRES_STEPS + n as u64);
        self.fires(after, until, n, &mut budget)
    }

    /// Why a schedule put at `now` would never fire, or not within the horizon; `None` when
    /// it will.
    pub fn never_fires(&self, now: DateTime<Utc>) -> Option<String> {
        if self.end.is_some_and(|end| end <= now) {
            return Some("never fires: its end is past".into());
        }
        let from = self.start.map_or(now, |s| s.max(now));
        let within = self.next(from - chrono::Duration::seconds(1), 1);
        match within {
            Ok(fires) if !fires.is_empty() => None,
            Ok(_) if matches!(self.expression, Expression::At(_)) => {
                Some("never fires: its time is past (or after its end)".into())
            }
            Ok(_) | Err(_) => Some(format!(
                "never fires within {} days of {} (the horizon a schedule must fire within)",
                HORIZON_DAYS,
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        }
    }

    /// A cron's fires: its matching local times in order, each mapped to its instant by the
    /// daylight-saving rule; an instant already taken (two gap times that both map to the
    /// end of the gap) fires once.
    fn cron_fires(
        &self,
        cron: &CronExpr,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
        budget: &mut Budget,
    ) -> Result<Vec<DateTime<Utc>>, Exhausted> {
        let mut out: Vec<DateTime<Utc>> = Vec::new();
        let mut local = after.with_timezone(&self.timezone).naive_local();
        // A local time may map up to a day away from its UTC instant.
        let last_day = until.with_timezone(&self.timezone).date_naive() + chrono::Duration::days(1);
        while out.len() < limit {
            let Some(next) = cron.next_after(local, last_day, budget)? else {
                break;
            };
            local = next;
            let at = self.local_instant(next);
            if at > until {
                break;
            }
            // Skipped: a first occurrence before `after` (the walk began in the repeated
            // hour's second pass), or an instant already fired.
            if at > after && out.last().is_none_or(|last| at > *last) {
                out.push(at);
            }
        }
        Ok(out)
    }

    fn rate_fires(
        &self,
        every: Duration,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
        budget: &mut Budget,
    ) -> Result<Vec<DateTime<Utc>>, Exhausted> {
        let anchor = self.start.unwrap_or(self.anchor);
        let step = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        let step_us = step.num_microseconds().unwrap_or(i64::MAX).max(1);
        let since = (after - anchor).num_microseconds().unwrap_or(0);
        let mut n = if since < 0 { 0 } else { since / step_us + 1 };
        let mut out = Vec::new();
        while out.len() < limit {
            budget.step()?;
            let at = anchor + chrono::Duration::microseconds(n.saturating_mul(step_us));
            if at > until {
                break;
            }
            if at > after {
                out.push(at);
            }
            n += 1;
        }
        Ok(out)
    }

    /// The instant of a local time. One that exists once is that instant; one repeated in
    /// autumn, its first occurrence; one skipped in spring (inside the gap), the first
    /// instant after the gap.
    fn local_instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.timezone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            chrono::LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The first instant after the gap `local` falls in: the transition, the earliest
    /// instant whose local reading is past `local`. Found by halving (readings only grow
    /// across a spring gap), to the second, as zones' transitions are.
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        // No zone is more than 14 hours from UTC: the transition lies within these bounds.
        let base = local.and_utc().timestamp();
        let (mut lo, mut hi) = (base - 15 * 3600, base + 15 * 3600);
        let past = |secs: i64| {
            DateTime::from_timestamp(secs, 0)
                .is_some_and(|at| at.with_timezone(&self.timezone).naive_local() > local)
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if past(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::from_timestamp(hi, 0).unwrap_or_else(|| local.and_utc())
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

impl FromStr for CatchupPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(text.trim().to_ascii_lowercase()))
            .map_err(|_| format!("{text:?} is not one of all, latest, none"))
    }
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

    /// Fires within a budget that cannot run out here.
    trait Fires {
        fn f(&self, after: DateTime<Utc>, until: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>>;
    }

    impl Fires for Timing {
        fn f(&self, after: DateTime<Utc>, until: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
            self.fires(after, until, n, &mut Budget::steps(10_000_000))
                .expect("within budget")
        }
    }

    fn daily_0230(zone: &str) -> Timing {
        timing(Expression::cron("0 30 2 * * ?  *").expect("cron"), zone)
    }

    #[test]
    fn a_time_skipped_in_spring_fires_once_at_the_next_valid_instant() {
        // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let t = daily_0230("Europe/Berlin");
        let fires = t.f(utc(2026, 3, 28, 12, 0), utc(2026, 3, 30, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]);
        // New York: 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let t = daily_0230("America/New_York");
        let fires = t.f(utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]);
        // A one-time `at` in the gap too.
        let at = timing(
            Expression::at("2026-03-29T02:30:00").expect("at"),
            "Europe/Berlin",
        );
        assert_eq!(
            at.next(utc(2026, 3, 1, 0, 0), 5).unwrap(),
            [utc(2026, 3, 29, 1, 0)]
        );
    }

    #[test]
    fn a_time_repeated_in_autumn_fires_once() {
        // Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let t = daily_0230("Europe/Berlin");
        let fires = t.f(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]);
        // Every half hour through the repeated hour: each local time once, in order.
        let half = timing(
            Expression::cron("0 */30 * * * ?").expect("cron"),
            "Europe/Berlin",
        );
        let fires = half.f(utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 15), 20);
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
        let fires = t.f(utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0), 10);
        assert_eq!(fires, [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]);
    }

    /// The 2027 transitions of three zones in both hemispheres: (zone, local day, instant
    /// of the change, whether it is the spring gap).
    /// (zone, local day (y, m, d), the change in UTC (m, d, h), spring or not).
    type Change = (&'static str, (i32, u32, u32), (u32, u32, u32), bool);
    const TRANSITIONS: [Change; 6] = [
        ("Europe/Berlin", (2027, 3, 28), (3, 28, 1), true),
        ("Europe/Berlin", (2027, 10, 31), (10, 31, 1), false),
        ("America/New_York", (2027, 3, 14), (3, 14, 7), true),
        ("America/New_York", (2027, 11, 7), (11, 7, 6), false),
        ("Australia/Sydney", (2027, 10, 3), (10, 2, 16), true),
        ("Australia/Sydney", (2027, 4, 4), (4, 3, 16), false),
    ];

    /// Where a daily local time fires on a given day, by the documented rule, read off the
    /// zone directly: once where it exists once, at the first occurrence where it is
    /// repeated, at the change itself where the gap swallowed it.
    fn expected(zone: Tz, local: NaiveDateTime, change: DateTime<Utc>) -> DateTime<Utc> {
        match zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            chrono::LocalResult::None => change,
        }
    }

    #[test]
    fn every_hour_of_the_day_fires_once_on_both_changes_in_both_hemispheres() {
        for (zone_name, (y, m, d), (cm, cd, ch), spring) in TRANSITIONS {
            let zone = timezone(zone_name).expect("zone");
            let change = Utc.with_ymd_and_hms(y, cm, cd, ch, 0, 0).unwrap();
            let day = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("day");
            let mut gap_fires = 0;
            for hour in 0..24 {
                for minute in [0, 30, 59] {
                    // The same time in the three forms.
                    for cron in [
                        format!("{minute} {hour} * * *"),
                        format!("0 {minute} {hour} * * ?"),
                        format!("0 {minute} {hour} ? * * *"),
                    ] {
                        let t = timing(Expression::cron(&cron).expect("cron"), zone_name);
                        let from = (day - chrono::Duration::days(1))
                            .and_hms_opt(12, 0, 0)
                            .unwrap()
                            .and_utc();
                        let fires = t.f(from, from + chrono::Duration::days(2), 10);
                        let on_the_day: Vec<_> = (-1..=1)
                            .map(|k| {
                                let local = (day + chrono::Duration::days(k))
                                    .and_hms_opt(hour, minute, 0)
                                    .unwrap();
                                expected(zone, local, change)
                            })
                            .filter(|at| *at > from && *at <= from + chrono::Duration::days(2))
                            .collect();
                        assert_eq!(
                            fires, on_the_day,
                            "{zone_name} {cron}: one fire a day, at the rule's instant"
                        );
                        let local = day.and_hms_opt(hour, minute, 0).unwrap();
                        if zone.from_local_datetime(&local) == chrono::LocalResult::None {
                            gap_fires += 1;
                            assert!(fires.contains(&change), "{zone_name} {cron}");
                        }
                    }
                }
            }
            // Exactly the times inside the gap (02:00, 02:30, 02:59 in each form) take the
            // change's instant; the hour before it keeps its own.
            assert_eq!(gap_fires, if spring { 9 } else { 0 }, "{zone_name}");
        }
    }

    #[test]
    fn the_hour_before_the_gap_fires_once_at_its_own_time() {
        // The case that fired twice: a daily 01:30 in Berlin on 2027-03-28.
        let t = timing(
            Expression::cron("0 30 1 * * ?").expect("cron"),
            "Europe/Berlin",
        );
        let fires = t.f(utc(2027, 3, 26, 23, 0), utc(2027, 3, 29, 23, 0), 10);
        assert_eq!(
            fires,
            [
                utc(2027, 3, 27, 0, 30),
                utc(2027, 3, 28, 0, 30),
                utc(2027, 3, 28, 23, 30)
            ]
        );
        let t = timing(
            Expression::cron("59 1 * * *").expect("cron"),
            "America/New_York",
        );
        let fires = t.f(utc(2027, 3, 13, 12, 0), utc(2027, 3, 15, 12, 0), 10);
        assert_eq!(fires, [utc(2027, 3, 14, 6, 59), utc(2027, 3, 15, 5, 59)]);
        let t = timing(
            Expression::cron("0 30 1 ? * * *").expect("cron"),
            "Australia/Sydney",
        );
        let fires = t.f(utc(2027, 10, 1, 12, 0), utc(2027, 10, 3, 12, 0), 10);
        assert_eq!(fires, [utc(2027, 10, 1, 15, 30), utc(2027, 10, 2, 15, 30)]);
    }

    #[test]
    fn a_schedule_that_never_fires_or_not_within_the_horizon_says_so() {
        let now = utc(2027, 1, 1, 0, 0);
        let never = timing(Expression::cron("0 0 0 30 2 ? *").expect("cron"), "UTC");
        let why = never.never_fires(now).expect("never fires");
        assert!(why.contains("1830 days"), "{why}");
        // A year field past the horizon.
        let far = timing(Expression::cron("0 0 0 1 1 ? 2040").expect("cron"), "UTC");
        assert!(far.never_fires(now).is_some());
        // Leap days come within the horizon.
        let leap = timing(Expression::cron("0 0 0 29 2 ? *").expect("cron"), "UTC");
        assert_eq!(leap.never_fires(now), None);
        let past = timing(Expression::at("2026-06-01T00:00:00").expect("at"), "UTC");
        assert!(past.never_fires(now).expect("past").contains("past"));
        let mut ended = timing(Expression::cron("0 * * * *").expect("cron"), "UTC");
        ended.end = Some(utc(2026, 12, 31, 0, 0));
        assert!(ended.never_fires(now).expect("ended").contains("end"));
        // A start within the horizon of a start in the future: the horizon runs from it.
        let mut later = timing(Expression::cron("0 0 0 1 1 ? 2033").expect("cron"), "UTC");
        later.start = Some(utc(2032, 6, 1, 0, 0));
        assert_eq!(later.never_fires(now), None);
        assert!(Expression::rate("rate(2000 days)").is_err());
    }

    #[test]
    fn a_look_ahead_is_bounded_in_steps() {
        // However sparse the expression, the next fires cost at most a step a day of the
        // horizon, and take well under a second.
        let began = std::time::Instant::now();
        for expr in ["0 0 0 30 2 ? *", "0 0 0 31 4 ? *", "0 0 0 1 1 ? 2099"] {
            let t = timing(Expression::cron(expr).expect("cron"), "Europe/Berlin");
            let mut budget = Budget::steps(NEXT_FIRES_STEPS);
            let found = t.fires(
                utc(2027, 1, 1, 0, 0),
                utc(2027, 1, 1, 0, 0) + chrono::Duration::days(HORIZON_DAYS),
                5,
                &mut budget,
            );
            assert_eq!(found, Ok(Vec::new()), "{expr}");
            assert!(
                budget.spent() <= HORIZON_DAYS as u64 + 2,
                "{}",
                budget.spent()
            );
        }
        assert!(began.elapsed() < std::time::Duration::from_secs(2));
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
        assert_eq!(
            t.next(utc(2026, 4, 1, 0, 0), 1).unwrap(),
            [utc(2026, 4, 17, 12, 0)]
        );
        assert!(Expression::cron("* * *").is_err());
        assert!(Expression::cron("61 * * * *").is_err());
        let every = timing(Expression::rate("rate(5 minutes)").expect("rate"), "UTC");
        assert_eq!(
            every.next(utc(2026, 1, 1, 0, 1), 2).unwrap(),
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
        let fires = every_second.f(from, from + chrono::Duration::seconds(600), 10_000);
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
        let fires = t.f(utc(2026, 1, 1, 0, 0), utc(2026, 1, 2, 0, 0), 10);
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
