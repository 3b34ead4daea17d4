//! Cron expressions as wall-clock times: which local date-times match, walked day by day
//! within a [`Budget`], so that no expression (one that never fires, one that fires once in
//! centuries) can make a search run unbounded.
//!
//! croner parses the fields and answers whether a day, an hour, a minute or a second
//! matches. The walk is Flowgate's own: croner's search runs in the zone's time and, in a
//! spring gap, snaps any time it steps into to the end of the gap (a daily 01:30 also fired
//! at 03:00 on the day the clocks jump from 02:00), and it may walk to the year 5000 before
//! it gives up. Here the walk is over naive local times, which have no gaps; mapping a local
//! time to an instant is the caller's rule (see [`super::Timing`]).
//!
//! Beyond croner, the day of the month takes Quartz's `LW` (the last weekday of the month)
//! and `L-n` (n days before the last day), and the 7-field form keeps Quartz's rule that one
//! of the two day fields is `?`.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::budget::{Budget, Exhausted};

/// A day-of-month rule croner does not know, applied on top of its other fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastDay {
    /// `LW`: the last Monday-to-Friday of the month.
    Weekday,
    /// `L-n`: `n` days before the last day of the month.
    Minus(u32),
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronExpr {
    cron: Cron,
    last_day: Option<LastDay>,
}

/// The fields of the day of the month and the day of the week, by position.
const DOM: usize = 3;

impl CronExpr {
    /// Parses 5 fields, 6 (seconds first) or Quartz's 7 (seconds first, year last, Quartz
    /// weekdays where 1 is Sunday).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let count = fields.len();
        if !(5..=7).contains(&count) {
            return Err(format!(
                "has {count} fields; a cron expression has 5, 6 (with seconds) or 7 (Quartz, with seconds and year)"
            ));
        }
        let quartz = count == 7;
        let offset = usize::from(count == 5);
        let (dom, dow) = (DOM - offset, DOM + 2 - offset);
        if quartz {
            quartz_day_fields(&fields[dom], &fields[dow])?;
        }
        let last_day = last_day(&fields[dom])?;
        if last_day.is_some() {
            if !matches!(fields[dow].as_str(), "*" | "?") {
                return Err(format!(
                    "day-of-month {} takes no day of the week: leave that field `?`",
                    fields[dom]
                ));
            }
            // croner sees every day; the rule picks the one day of each month.
            fields[dom] = "*".into();
        }
        let parser = CronParser::builder()
            .seconds(if count == 5 {
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
        let cron = parser
            .parse(&fields.join(" "))
            .map_err(|e| format!("is not a valid cron expression: {e}"))?;
        Ok(Self { cron, last_day })
    }

    /// Whether `day` is one the expression fires on.
    fn day_matches(&self, day: NaiveDate) -> bool {
        let p = &self.cron.pattern;
        let (y, m, d) = (day.year(), day.month(), day.day());
        let fields = p.year_match(y).unwrap_or(false)
            && p.month_match(m).unwrap_or(false)
            && p.day_match(y, m, d).unwrap_or(false);
        fields
            && match self.last_day {
                None => true,
                Some(rule) => Some(day) == last_day_of(rule, y, m),
            }
    }

    /// The first time of day at or after `from` whose hour, minute and second match.
    fn time_at_or_after(&self, from: NaiveTime) -> Option<NaiveTime> {
        let p = &self.cron.pattern;
        for hour in from.hour()..24 {
            if !p.hour_match(hour).unwrap_or(false) {
                continue;
            }
            let first_minute = if hour == from.hour() {
                from.minute()
            } else {
                0
            };
            for minute in first_minute..60 {
                if !p.minute_match(minute).unwrap_or(false) {
                    continue;
                }
                let first_second = if (hour, minute) == (from.hour(), from.minute()) {
                    from.second()
                } else {
                    0
                };
                if let Some(second) =
                    (first_second..60).find(|s| p.second_match(*s).unwrap_or(false))
                {
                    return NaiveTime::from_hms_opt(hour, minute, second);
                }
            }
        }
        None
    }

    /// The first matching local time strictly after `after` and on or before `last`, a day
    /// of the walk spending one step of `budget`.
    pub fn next_after(
        &self,
        after: NaiveDateTime,
        last: NaiveDate,
        budget: &mut Budget,
    ) -> Result<Option<NaiveDateTime>, Exhausted> {
        let whole = after.with_nanosecond(0).unwrap_or(after);
        let Some(start) = whole.checked_add_signed(chrono::Duration::seconds(1)) else {
            return Ok(None);
        };
        let mut day = start.date();
        let mut from = start.time();
        while day <= last {
            budget.step()?;
            if self.day_matches(day)
                && let Some(time) = self.time_at_or_after(from)
            {
                return Ok(Some(day.and_time(time)));
            }
            let Some(next) = day.succ_opt() else {
                return Ok(None);
            };
            day = next;
            from = NaiveTime::MIN;
        }
        Ok(None)
    }
}

/// Quartz's rule for its 7-field form: one day field is `?`, the other gives the days.
fn quartz_day_fields(dom: &str, dow: &str) -> Result<(), String> {
    match (dom == "?", dow == "?") {
        (true, false) | (false, true) => Ok(()),
        (false, false) => Err(format!(
            "gives both a day of the month ({dom}) and a day of the week ({dow}); in Quartz's \
             7-field form one of them must be `?` (for example `0 0 0 13 * ? *` or \
             `0 0 0 ? * 6 *`)"
        )),
        (true, true) => Err(
            "leaves both day fields `?`; in Quartz's 7-field form one of them gives the days \
             (`*` for every day)"
                .into(),
        ),
    }
}

/// Reads `LW` and `L-n` (n from 1 to 30); anything else is croner's to parse.
fn last_day(field: &str) -> Result<Option<LastDay>, String> {
    let upper = field.to_ascii_uppercase();
    if upper == "LW" {
        return Ok(Some(LastDay::Weekday));
    }
    let Some(n) = upper.strip_prefix("L-") else {
        return Ok(None);
    };
    match n.parse::<u32>() {
        Ok(n) if (1..=30).contains(&n) => Ok(Some(LastDay::Minus(n))),
        _ => Err(format!(
            "day-of-month {field}: L-n takes n from 1 to 30 (days before the last day)"
        )),
    }
}

/// The day a last-day rule picks in a month; `None` when `L-n` reaches before the first.
fn last_day_of(rule: LastDay, year: i32, month: u32) -> Option<NaiveDate> {
    let first_of_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }?;
    let last = first_of_next.pred_opt()?;
    match rule {
        LastDay::Minus(n) => last
            .checked_sub_signed(chrono::Duration::days(i64::from(n)))
            .filter(|d| d.month() == month),
        LastDay::Weekday => {
            let back = match last.weekday() {
                Weekday::Sat => 1,
                Weekday::Sun => 2,
                _ => 0,
            };
            last.checked_sub_signed(chrono::Duration::days(back))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("a local time")
    }

    fn walk(expr: &str, from: &str, n: usize) -> Vec<String> {
        let cron = CronExpr::parse(expr).expect("parses");
        let mut at = local(from);
        let last = at.date() + chrono::Duration::days(3 * 366);
        let mut budget = Budget::steps(1_000_000);
        let mut out = Vec::new();
        while out.len() < n {
            match cron
                .next_after(at, last, &mut budget)
                .expect("within budget")
            {
                Some(next) => {
                    out.push(next.format("%Y-%m-%d %H:%M:%S").to_string());
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn last_weekday_and_days_before_the_last() {
        // 2027: Jan 31 is a Sunday, Apr 30 a Friday, Jul 31 a Saturday.
        assert_eq!(
            walk("0 0 12 LW * ? *", "2027-01-01 00:00:00", 4),
            [
                "2027-01-29 12:00:00",
                "2027-02-26 12:00:00",
                "2027-03-31 12:00:00",
                "2027-04-30 12:00:00"
            ]
        );
        assert_eq!(
            walk("0 0 12 LW * ? *", "2027-07-01 00:00:00", 1),
            ["2027-07-30 12:00:00"]
        );
        // L-3: three days before the last (Feb 2027 has 28 days; Feb 2028, 29).
        assert_eq!(
            walk("0 0 6 L-3 * ? *", "2027-01-01 00:00:00", 3),
            [
                "2027-01-28 06:00:00",
                "2027-02-25 06:00:00",
                "2027-03-28 06:00:00"
            ]
        );
        assert_eq!(
            walk("0 0 6 L-3 2 ? 2028", "2027-01-01 00:00:00", 1),
            ["2028-02-26 06:00:00"]
        );
        // L-30 only exists in 31-day months.
        assert_eq!(
            walk("0 0 0 L-30 * ?  *", "2027-01-15 00:00:00", 2),
            ["2027-03-01 00:00:00", "2027-05-01 00:00:00"]
        );
        for bad in ["0 0 0 L-0 * ? *", "0 0 0 L-31 * ? *", "0 0 0 L-x * ? *"] {
            assert!(CronExpr::parse(bad).is_err(), "{bad}");
        }
        assert!(CronExpr::parse("0 0 12 LW * MON").is_err());
    }

    #[test]
    fn quartz_takes_one_day_field() {
        let both = CronExpr::parse("0 0 0 13 * 6 *").expect_err("both given");
        assert!(both.contains("must be `?`"), "{both}");
        assert!(CronExpr::parse("0 0 0 ? * ? *").is_err());
        assert!(CronExpr::parse("0 0 0 13 * ? *").is_ok());
        assert!(CronExpr::parse("0 0 0 ? * 6 *").is_ok());
        // Friday the 13th is not what `0 0 0 13 * ? *` means: only the 13th.
        assert_eq!(
            walk("0 0 0 13 * ? *", "2027-01-01 00:00:00", 2),
            ["2027-01-13 00:00:00", "2027-02-13 00:00:00"]
        );
    }

    #[test]
    fn a_walk_spends_a_step_a_day_and_stops_at_its_last_day() {
        // 30 February never comes: the walk ends at its last day, having spent one step a day.
        let never = CronExpr::parse("0 0 0 30 2 ? *").expect("parses");
        let from = local("2027-01-01 00:00:00");
        let mut budget = Budget::steps(10_000);
        let found = never
            .next_after(
                from,
                from.date() + chrono::Duration::days(1000),
                &mut budget,
            )
            .expect("within budget");
        assert_eq!(found, None);
        assert_eq!(budget.spent(), 1001);
        // A budget smaller than the walk runs out, and says so.
        let mut small = Budget::steps(100);
        assert!(
            never
                .next_after(from, from.date() + chrono::Duration::days(1000), &mut small)
                .is_err()
        );
    }

    #[test]
    fn every_second_and_within_a_day() {
        assert_eq!(
            walk("* * * * * *", "2027-01-01 23:59:58", 3),
            [
                "2027-01-01 23:59:59",
                "2027-01-02 00:00:00",
                "2027-01-02 00:00:01"
            ]
        );
        assert_eq!(
            walk("*/20 */30 9-10 * * *", "2027-01-01 09:30:40", 4),
            [
                "2027-01-01 10:00:00",
                "2027-01-01 10:00:20",
                "2027-01-01 10:00:40",
                "2027-01-01 10:30:00"
            ]
        );
    }
}
