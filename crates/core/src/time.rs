//! Calendar text of epoch times (UTC), for the wire formats that carry dates as text
//! (RFC 3339 in the task metadata and credentials documents, ISO 8601 in S3's XML).

use std::time::Duration;

/// (year, month, day, hour, minute, second) of `secs` seconds since the Unix epoch, UTC
/// (H. Hinnant's civil-from-days).
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month as u32,
        day as u32,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// RFC 3339 in UTC with `digits` fractional-second digits (0, 3, 6 or 9; others round down to
/// one of those): `2026-11-23T06:52:11.000Z`.
pub fn rfc3339(since_epoch: Duration, digits: u32) -> String {
    let (y, mo, d, h, mi, s) = civil(since_epoch.as_secs() as i64);
    let nanos = since_epoch.subsec_nanos();
    let frac = match digits {
        0 => String::new(),
        1..=3 => format!(".{:03}", nanos / 1_000_000),
        4..=6 => format!(".{:06}", nanos / 1_000),
        _ => format!(".{nanos:09}"),
    };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
}

/// [`rfc3339`] of epoch seconds (negative or non-finite → the epoch).
pub fn rfc3339_epoch(secs: f64, digits: u32) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    rfc3339(Duration::from_secs_f64(secs), digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339_epoch(0.0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_epoch(1_800_000_000.5, 3),
            "2027-01-15T08:00:00.500Z"
        );
        assert_eq!(
            rfc3339(Duration::new(951_782_400, 7), 9),
            "2000-02-29T00:00:00.000000007Z"
        );
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
    }
}
