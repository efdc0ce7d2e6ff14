//! Schedule expressions as EventBridge takes them: `rate(<n> <unit>)` and
//! `cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)`, validated by AWS's rules
//! first, then evaluated (cron by `croner`, in UTC). Pure: time is an argument.

use chrono::{DateTime, TimeZone, Utc};

/// A valid schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `seconds`, counted from when the schedule was set.
    Rate { seconds: u64 },
    /// Wall-clock slots (UTC).
    Cron(Box<croner::Cron>),
}

/// Why an expression is not one AWS takes (the API answers with its own text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

const YEARS: (u32, u32) = (1970, 2199);

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, Invalid> {
        let bad = |why: &str| Invalid(why.to_string());
        if let Some(body) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = body.split(' ');
            let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("a rate is `rate(<value> <unit>)`"));
            };
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
                return Err(bad("a rate's value is a positive whole number"));
            }
            let n: u64 = n.parse().map_err(|_| bad("a rate's value is too large"))?;
            let per =
                match (unit, n == 1) {
                    ("minute", true) | ("minutes", false) => 60,
                    ("hour", true) | ("hours", false) => 3600,
                    ("day", true) | ("days", false) => 86400,
                    _ => return Err(bad(
                        "a rate's unit is minute, hour or day for 1, minutes, hours or days above",
                    )),
                };
            let seconds = n
                .checked_mul(per)
                .ok_or_else(|| bad("a rate's value is too large"))?;
            return Ok(Schedule::Rate { seconds });
        }
        let Some(body) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) else {
            return Err(bad("a schedule is `rate(…)` or `cron(…)`"));
        };
        let fields: Vec<&str> = body.split(' ').collect();
        if fields.len() != 6 || fields.iter().any(|f| f.is_empty()) {
            return Err(bad("a cron expression has six fields"));
        }
        let allowed = |f: &str, extra: &str| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || ",-*/".contains(c) || extra.contains(c))
        };
        let [min, hour, dom, month, dow, year] = [0, 1, 2, 3, 4, 5].map(|i| fields[i]);
        for (f, extra, name) in [
            (min, "", "minutes"),
            (hour, "", "hours"),
            (dom, "?LW", "day-of-month"),
            (month, "", "month"),
            (dow, "?L#", "day-of-week"),
            (year, "", "year"),
        ] {
            if !allowed(f, extra) {
                return Err(Invalid(format!(
                    "the {name} field has a character it cannot have"
                )));
            }
        }
        for (f, name) in [(min, "minutes"), (hour, "hours"), (year, "year")] {
            if f.chars().any(|c| c.is_ascii_alphabetic()) {
                return Err(Invalid(format!("the {name} field takes numbers only")));
            }
        }
        if (dom == "?") == (dow == "?") {
            return Err(bad("exactly one of day-of-month and day-of-week is `?`"));
        }
        if dow.matches('#').count() > 1 {
            return Err(bad("day-of-week takes `#` once"));
        }
        for part in year.split(',') {
            for n in part.split(['-', '/']) {
                if n == "*" {
                    continue;
                }
                match n.parse::<u32>() {
                    Ok(y) if part.contains('/') && !part.starts_with(n) => {
                        let _ = y; // a step, not a year
                    }
                    Ok(y) if (YEARS.0..=YEARS.1).contains(&y) => {}
                    _ => return Err(bad("years are 1970-2199")),
                }
            }
        }
        let pattern = format!("0 {min} {hour} {dom} {month} {dow} {year}");
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Required)
            .alternative_weekdays(true)
            .build()
            .parse(&pattern)
            .map_err(|e| Invalid(format!("not a cron expression: {e}")))?;
        Ok(Schedule::Cron(Box::new(cron)))
    }

    /// The first slot strictly after `after` (epoch seconds); a rate's slots are `anchor + k ×
    /// period`. None when the schedule has no slot left (a cron whose years are over).
    pub fn next_after(&self, anchor: f64, after: f64) -> Option<f64> {
        match self {
            Schedule::Rate { seconds } => {
                let p = *seconds as f64;
                let k = ((after - anchor) / p).floor().max(0.0) + 1.0;
                let mut t = anchor + k * p;
                while t <= after {
                    t += p;
                }
                Some(t)
            }
            Schedule::Cron(c) => {
                let secs = after.floor() as i64;
                let start: DateTime<Utc> = Utc.timestamp_opt(secs, 0).single()?;
                c.find_next_occurrence(&start, false)
                    .ok()
                    .map(|t| t.timestamp() as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> f64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64
    }

    #[test]
    fn rates_as_aws_spells_them() {
        for ok in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(12 hours)",
            "rate(1 day)",
            "rate(7 days)",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1.5 hours)",
            "rate(5  minutes)",
            "rate(5 seconds)",
            "rate(5)",
            "rate( 5 minutes)",
            "rate(05 minutes)",
            "rate(5 Minutes)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(s.next_after(1000.0, 1000.0), Some(1300.0));
        assert_eq!(s.next_after(1000.0, 1299.0), Some(1300.0));
        assert_eq!(s.next_after(1000.0, 1300.0), Some(1600.0));
        assert_eq!(s.next_after(1000.0, 500.0), Some(1300.0));
    }

    /// The examples of AWS's "Schedule expressions for rules" page.
    #[test]
    fn aws_documented_cron_examples() {
        let cases = [
            // 10:15 AM UTC every day.
            (
                "cron(15 10 * * ? *)",
                "2026-03-04T09:00:00Z",
                "2026-03-04T10:15:00Z",
            ),
            // 6:00 PM Monday through Friday.
            (
                "cron(0 18 ? * MON-FRI *)",
                "2026-03-06T19:00:00Z",
                "2026-03-09T18:00:00Z",
            ),
            // 8:00 AM on the first day of the month.
            (
                "cron(0 8 1 * ? *)",
                "2026-03-04T09:00:00Z",
                "2026-04-01T08:00:00Z",
            ),
            // Every 10 min on weekdays.
            (
                "cron(0/10 * ? * MON-FRI *)",
                "2026-03-07T12:00:00Z",
                "2026-03-09T00:00:00Z",
            ),
            // Every 5 minutes between 8:00 AM and 5:55 PM weekdays.
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "2026-03-04T17:56:00Z",
                "2026-03-05T08:00:00Z",
            ),
            // 9 AM on the first Monday of each month.
            (
                "cron(0 9 ? * 2#1 *)",
                "2026-03-04T00:00:00Z",
                "2026-04-06T09:00:00Z",
            ),
            // The last day of the month.
            (
                "cron(0 0 L * ? *)",
                "2026-02-03T00:00:00Z",
                "2026-02-28T00:00:00Z",
            ),
            // Sunday is 1 (Quartz).
            (
                "cron(0 3 ? * 1 *)",
                "2026-03-04T00:00:00Z",
                "2026-03-08T03:00:00Z",
            ),
            // The nearest weekday to the 15th (2026-03-15 is a Sunday).
            (
                "cron(0 12 15W * ? *)",
                "2026-03-01T00:00:00Z",
                "2026-03-16T12:00:00Z",
            ),
            // A year field.
            (
                "cron(0 0 1 1 ? 2030)",
                "2026-03-01T00:00:00Z",
                "2030-01-01T00:00:00Z",
            ),
        ];
        for (expr, after, want) in cases {
            let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
            assert_eq!(
                s.next_after(0.0, at(after)),
                Some(at(want)),
                "{expr} after {after}"
            );
        }
        assert_eq!(
            Schedule::parse("cron(0 0 1 1 ? 2020)")
                .unwrap()
                .next_after(0.0, at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn cron_as_aws_refuses_it() {
        for bad in [
            "cron(0 3 * * *)",       // five fields
            "cron(0 3 * * * *)",     // both day fields set
            "cron(0 3 ? * ? *)",     // neither
            "cron(0 3 1 * 1 *)",     // both values
            "cron(0 3 ? * 2#1#2 *)", // # twice
            "cron(0 3 ? * 1 1969)",  // year before 1970
            "cron(0 3 ? * 1 2200)",  // after 2199
            "cron(60 3 ? * 1 *)",    // minute out of range
            "cron(0 24 ? * 1 *)",    // hour out of range
            "cron(0 3 ? * 8 *)",     // weekday out of range
            "cron(0 3 32 * ? *)",    // day out of range
            "cron(0 3 ? 13 1 *)",    // month out of range
            "cron(0 3 ? * 1 * *)",   // seven fields
            "cron(0 3 L? * ? *)",
            "cron(0 3 ? * MON W)",
            "cron(0 3 15 * ? *",
            "every day",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
