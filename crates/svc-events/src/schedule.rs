//! Schedule expressions as EventBridge takes them: `rate(<n> <unit>)` and
//! `cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)` — and, for EventBridge
//! Scheduler, `at(<yyyy-mm-ddThh:mm:ss>)` — validated by AWS's rules first, then evaluated (cron by
//! `croner`) in a time zone (rules: UTC). Pure: time is an argument.

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A valid schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `seconds`, counted from when the schedule was set.
    Rate { seconds: u64 },
    /// Wall-clock slots in the schedule's time zone.
    Cron(Box<croner::Cron>),
    /// Once, at this wall-clock time in the schedule's time zone (Scheduler only).
    At(NaiveDateTime),
}

/// Why an expression is not one AWS takes (the API answers with its own text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

const YEARS: (u32, u32) = (1970, 2199);

impl Schedule {
    /// An EventBridge Scheduler expression: `at(…)`, `rate(…)` or `cron(…)`.
    pub fn parse_for_scheduler(expr: &str) -> Result<Schedule, Invalid> {
        if let Some(body) = expr.strip_prefix("at(").and_then(|r| r.strip_suffix(')')) {
            return NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S")
                .map(Schedule::At)
                .map_err(|_| Invalid("an at() expression is at(yyyy-mm-ddThh:mm:ss)".into()));
        }
        // Scheduler takes a rate's unit in either number (`rate(1 hours)`, `rate(5 minute)`).
        if let Some(body) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            if let Some((n, unit)) = body.split_once(' ') {
                let plural = n != "1";
                let unit = match (unit.strip_suffix('s'), plural) {
                    (Some(u), false) => u.to_string(),
                    (None, true) => format!("{unit}s"),
                    _ => unit.to_string(),
                };
                return Self::parse(&format!("rate({n} {unit})"));
            }
        }
        Self::parse(expr)
    }

    /// An EventBridge rule's expression: `rate(…)` or `cron(…)`.
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

    /// The first slot strictly after `after` (epoch seconds), in UTC; a rate's slots are
    /// `anchor + k × period`. None when the schedule has no slot left (a cron whose years are
    /// over).
    pub fn next_after(&self, anchor: f64, after: f64) -> Option<f64> {
        self.next_after_in(Tz::UTC, anchor, after)
    }

    /// [`Schedule::next_after`] with `cron` and `at` read as wall-clock times in `tz` (a rate is
    /// the same in every zone). A cron slot that a daylight-saving change skips does not fire,
    /// one it repeats fires once, at its first occurrence (as AWS documents for Scheduler); an
    /// `at` in a skipped hour fires when the wall clock has jumped over it.
    pub fn next_after_in(&self, tz: Tz, anchor: f64, after: f64) -> Option<f64> {
        match self {
            Schedule::At(local) => {
                let t = place(tz, local)? as f64;
                (t > after).then_some(t)
            }
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
                // The pattern is matched against the zone's wall clock (croner walks naive local
                // times, read as UTC); each local match is then placed in the zone.
                let secs = after.floor() as i64;
                let start: DateTime<Utc> = Utc.timestamp_opt(secs, 0).single()?;
                let mut local = start.with_timezone(&tz).naive_local();
                for _ in 0..10_000 {
                    let next = c
                        .find_next_occurrence(&Utc.from_utc_datetime(&local), false)
                        .ok()?
                        .naive_utc();
                    // A time the zone skips (a daylight-saving gap) is skipped, as AWS documents.
                    let placed = match tz.from_local_datetime(&next) {
                        chrono::LocalResult::None => None,
                        _ => place(tz, &next),
                    };
                    match placed {
                        Some(t) if t as f64 > after => return Some(t as f64),
                        _ => local = next,
                    }
                }
                None
            }
        }
    }
}

/// The instant a wall-clock time of `tz` names: a repeated time's first occurrence; a skipped
/// time (a daylight-saving gap) the first instant after the gap.
fn place(tz: Tz, local: &NaiveDateTime) -> Option<i64> {
    match tz.from_local_datetime(local) {
        chrono::LocalResult::Single(t) => Some(t.timestamp()),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.timestamp()),
        chrono::LocalResult::None => (1..=180).find_map(|m| {
            let later = local.date().and_hms_opt(local.hour(), local.minute(), 0)?
                + chrono::Duration::minutes(m);
            tz.from_local_datetime(&later)
                .earliest()
                .map(|t| t.timestamp())
        }),
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
    fn at_and_cron_in_a_time_zone_across_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08: clocks go from 02:00 to 03:00 EST→EDT. 2026-11-01: 02:00 EDT → 01:00 EST.
        let s = Schedule::parse_for_scheduler("cron(30 1 * * ? *)").unwrap();
        // A 02:30 slot is skipped on the day 02:00–03:00 does not exist.
        let skipped = Schedule::parse_for_scheduler("cron(30 2 * * ? *)").unwrap();
        assert_eq!(
            skipped.next_after_in(ny, 0.0, at("2026-03-08T00:00:00Z")),
            Some(at("2026-03-09T06:30:00Z"))
        );
        // 01:30 EST on 2026-03-08 is 06:30 UTC; the next day's 01:30 EDT is 05:30 UTC.
        assert_eq!(
            s.next_after_in(ny, 0.0, at("2026-03-08T00:00:00Z")),
            Some(at("2026-03-08T06:30:00Z"))
        );
        assert_eq!(
            s.next_after_in(ny, 0.0, at("2026-03-08T06:30:00Z")),
            Some(at("2026-03-09T05:30:00Z"))
        );
        // 01:30 happens twice on 2026-11-01: the schedule fires once.
        let first = s
            .next_after_in(ny, 0.0, at("2026-11-01T04:00:00Z"))
            .unwrap();
        assert_eq!(first, at("2026-11-01T05:30:00Z"));
        let next = s.next_after_in(ny, 0.0, first).unwrap();
        assert_eq!(
            next,
            at("2026-11-02T06:30:00Z"),
            "01:30 EST is not a second slot"
        );
        // at() in a zone, and in the skipped hour.
        let once = Schedule::parse_for_scheduler("at(2026-07-04T09:00:00)").unwrap();
        assert_eq!(
            once.next_after_in(ny, 0.0, 0.0),
            Some(at("2026-07-04T13:00:00Z"))
        );
        assert_eq!(
            once.next_after_in(ny, 0.0, at("2026-07-04T13:00:00Z")),
            None
        );
        let gap = Schedule::parse_for_scheduler("at(2026-03-08T02:30:00)").unwrap();
        assert_eq!(
            gap.next_after_in(ny, 0.0, 0.0),
            Some(at("2026-03-08T07:00:00Z"))
        );
        // A rate ignores the zone.
        let r = Schedule::parse_for_scheduler("rate(1 hour)").unwrap();
        assert_eq!(r.next_after_in(ny, 100.0, 100.0), Some(3700.0));
        for bad in [
            "at(2026-07-04 09:00:00)",
            "at(2026-07-04T09:00)",
            "at(tomorrow)",
        ] {
            assert!(Schedule::parse_for_scheduler(bad).is_err(), "{bad}");
        }
        assert!(
            Schedule::parse("at(2026-07-04T09:00:00)").is_err(),
            "rules take no at()"
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
