//! A Flowgate schedule's timing as an EventBridge Scheduler expression.
//!
//! EventBridge Scheduler runs `cron(min hour day-of-month month day-of-week year)`,
//! `rate(N minutes|hours|days)` and `at(yyyy-mm-ddThh:mm:ss)` in an IANA time zone. Its finest
//! step is a minute, its weekdays are Quartz's (1 = Sunday), and one of the two day fields
//! must be `?`. What it cannot run is refused with the field and the reason, never rounded.

use flowgate_core::InvalidParam;
use flowgate_core::schedule::{Expression, ScheduleDefinition, When};

/// Weekday names by standard cron number (0 and 7 are Sunday).
const WEEKDAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// The EventBridge Scheduler expression that fires when `definition` does.
pub fn expression(definition: &ScheduleDefinition) -> Result<String, InvalidParam> {
    match &definition.when {
        When::Cron(cron) => self::cron(cron).map_err(|e| InvalidParam::new("/cron", e)),
        When::Rate(rate) => self::rate(rate).map_err(|e| InvalidParam::new("/rate", e)),
        When::At(at) => Ok(format!("at({})", at.trim())),
    }
}

/// A 5-field, 6-field (seconds first) or Quartz 7-field cron as EventBridge's 6 fields.
fn cron(text: &str) -> Result<String, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (minute, hour, dom, month, dow, year) = match fields.as_slice() {
        [m, h, dom, mon, dow] => (*m, *h, *dom, *mon, weekdays(dow)?, "*".to_owned()),
        [s, m, h, dom, mon, dow] => {
            whole_minutes(s)?;
            (*m, *h, *dom, *mon, weekdays(dow)?, "*".to_owned())
        }
        // Quartz's weekdays are already EventBridge's.
        [s, m, h, dom, mon, dow, year] => {
            whole_minutes(s)?;
            (*m, *h, *dom, *mon, (*dow).to_owned(), (*year).to_owned())
        }
        _ => return Err("has the wrong number of fields".into()),
    };
    last_day_rules(dom)?;
    let (dom, dow) = one_day_field(dom, &dow)?;
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} {year})"))
}

/// Quartz's `LW` and `L-n` have no EventBridge Scheduler form: refused, never rounded.
fn last_day_rules(dom: &str) -> Result<(), String> {
    let upper = dom.to_ascii_uppercase();
    if upper == "LW" || upper.starts_with("L-") {
        return Err(format!(
            "day-of-month {dom} (Quartz's last weekday, or days before the last day) has no \
             EventBridge Scheduler form; on the AWS host write the days out, or use L"
        ));
    }
    Ok(())
}

fn whole_minutes(seconds: &str) -> Result<(), String> {
    if seconds == "0" {
        Ok(())
    } else {
        Err(
            "fires within a minute (seconds field other than 0); on the AWS host a schedule \
             fires on whole minutes, as EventBridge Scheduler does"
                .into(),
        )
    }
}

fn any(field: &str) -> bool {
    matches!(field, "*" | "?")
}

/// EventBridge needs `?` in one day field: the one left open.
fn one_day_field(dom: &str, dow: &str) -> Result<(String, String), String> {
    match (any(dom), any(dow)) {
        (_, true) => Ok((dom.to_owned(), "?".to_owned())),
        (true, false) => Ok(("?".to_owned(), dow.to_owned())),
        (false, false) => Err(
            "restricts both the day of the month and the day of the week; \
             EventBridge Scheduler takes one of them (leave the other * or ?)"
                .into(),
        ),
    }
}

/// Standard cron weekdays (0-7, 0 and 7 Sunday) as names, which EventBridge reads the same.
fn weekdays(field: &str) -> Result<String, String> {
    field
        .split(',')
        .map(weekday_part)
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.join(","))
}

/// One comma-separated part: `*`, `?`, `N`, `N-M`, either with `/step`, `NL` or `N#k`.
fn weekday_part(part: &str) -> Result<String, String> {
    let (base, step) = match part.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (part, None),
    };
    let base = if let Some((from, to)) = base.split_once('-') {
        let (from, to) = (weekday(from)?, weekday(to)?);
        if to == "SUN" && from != "SUN" {
            // 7 ends a range at Sunday, which EventBridge's weeks begin with.
            if step.is_some() {
                return Err(format!(
                    "weekday range {part:?} ends on Sunday (7) with a step; write the days out"
                ));
            }
            return Ok(format!("{from}-SAT,SUN"));
        }
        format!("{from}-{to}")
    } else if let Some(day) = base.strip_suffix('L') {
        format!("{}L", weekday(day)?)
    } else if let Some((day, nth)) = base.split_once('#') {
        format!("{}#{nth}", weekday(day)?)
    } else if any(base) {
        base.to_owned()
    } else {
        weekday(base)?.to_owned()
    };
    Ok(match step {
        Some(step) => format!("{base}/{step}"),
        None => base,
    })
}

fn weekday(text: &str) -> Result<&'static str, String> {
    if let Ok(n) = text.parse::<usize>() {
        return WEEKDAYS
            .get(n)
            .copied()
            .ok_or_else(|| format!("weekday {n} is not 0-7"));
    }
    WEEKDAYS
        .iter()
        .find(|name| name.eq_ignore_ascii_case(text))
        .copied()
        .ok_or_else(|| format!("{text:?} is not a weekday"))
}

/// `rate(N unit)` in EventBridge's largest unit that divides it; whole minutes only.
fn rate(text: &str) -> Result<String, String> {
    let Expression::Rate(every) = Expression::rate(text)? else {
        return Err("must read rate(N unit)".into());
    };
    let seconds = every.as_secs();
    if !seconds.is_multiple_of(60) {
        return Err(
            "is finer than a minute; on the AWS host a rate is whole minutes, \
             as EventBridge Scheduler's is"
                .into(),
        );
    }
    let (count, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds.is_multiple_of(*size))
        .map(|(size, unit)| (seconds / size, unit))
        .unwrap_or((seconds / 60, "minute"));
    let plural = if count == 1 { "" } else { "s" };
    Ok(format!("rate({count} {unit}{plural})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(field: &str, value: &str) -> ScheduleDefinition {
        let body: flowgate_core::usecases::schedules::ScheduleBody =
            serde_json::from_value(serde_json::json!({ field: value })).expect("body");
        ScheduleDefinition::try_from(body).expect("a definition")
    }

    fn cron_of(text: &str) -> Result<String, InvalidParam> {
        expression(&body("cron", text))
    }

    #[test]
    fn standard_crons_name_their_weekdays_and_leave_one_day_field_open() {
        assert_eq!(cron_of("30 2 * * *").unwrap(), "cron(30 2 * * ? *)");
        assert_eq!(cron_of("0 9 * * 1-5").unwrap(), "cron(0 9 ? * MON-FRI *)");
        assert_eq!(cron_of("0 9 * * 0,6").unwrap(), "cron(0 9 ? * SUN,SAT *)");
        assert_eq!(
            cron_of("0 9 * * 5-7").unwrap(),
            "cron(0 9 ? * FRI-SAT,SUN *)"
        );
        assert_eq!(cron_of("*/15 * 1 * *").unwrap(), "cron(*/15 * 1 * ? *)");
        assert_eq!(cron_of("0 0 0 L * *").unwrap(), "cron(0 0 L * ? *)");
        assert_eq!(cron_of("0 0 12 * * 5#3").unwrap(), "cron(0 12 ? * FRI#3 *)");
        assert_eq!(cron_of("0 0 * * mon").unwrap(), "cron(0 0 ? * MON *)");
    }

    #[test]
    fn quartz_crons_keep_their_weekdays_and_year() {
        assert_eq!(cron_of("0 0 3/6 * * ? *").unwrap(), "cron(0 3/6 * * ? *)");
        assert_eq!(
            cron_of("0 15 10 ? * 6L 2027").unwrap(),
            "cron(15 10 ? * 6L 2027)"
        );
        assert_eq!(cron_of("0 0 8 15W * ? *").unwrap(), "cron(0 8 15W * ? *)");
    }

    #[test]
    fn what_eventbridge_cannot_run_is_refused_with_the_field() {
        for (text, says) in [
            ("*/10 * * * * *", "whole minutes"),
            ("30 0 12 * * ? *", "whole minutes"),
            (
                "0 12 1 * 1",
                "both the day of the month and the day of the week",
            ),
            ("0 9 * * 1-7/2", "write the days out"),
            ("0 0 12 LW * ? *", "no EventBridge Scheduler form"),
            ("0 0 12 L-3 * ? *", "no EventBridge Scheduler form"),
        ] {
            let e = cron_of(text).unwrap_err();
            assert_eq!(e.pointer, "/cron");
            assert!(e.reason.contains(says), "{text}: {}", e.reason);
        }
        let e = expression(&body("rate", "rate(30 seconds)")).unwrap_err();
        assert_eq!(e.pointer, "/rate");
        assert!(e.reason.contains("finer than a minute"), "{}", e.reason);
    }

    #[test]
    fn rates_and_at_take_eventbridge_units() {
        let rate = |t: &str| expression(&body("rate", t)).unwrap();
        assert_eq!(rate("rate(5 minutes)"), "rate(5 minutes)");
        assert_eq!(rate("rate(1 hours)"), "rate(1 hour)");
        assert_eq!(rate("rate(120 seconds)"), "rate(2 minutes)");
        assert_eq!(rate("rate(2 day)"), "rate(2 days)");
        assert_eq!(rate("rate(120 minutes)"), "rate(2 hours)");
        assert_eq!(rate("rate(90 minutes)"), "rate(90 minutes)");
        assert_eq!(
            expression(&body("at", "2026-12-01T10:00:00")).unwrap(),
            "at(2026-12-01T10:00:00)"
        );
    }
}
