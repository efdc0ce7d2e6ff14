//! PutLogEvents, GetLogEvents and FilterLogEvents.

use super::{blocking, group_arg, group_name, limit_arg, stream_name, validation};
use crate::Ctx;
use berth_logs::{now_ms, FilterCursor, FilterQuery, GetQuery, Pattern, Position, ReadFrom};
use berth_service::ApiError;
use berth_wire::logs as w;
use serde::Serialize;

/// PutLogEvents: at most this many events…
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// …and this many bytes, counting each event's UTF-8 message plus [`EVENT_OVERHEAD`].
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD: usize = 26;
/// A batch may span at most 24 hours.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3_600_000;
/// Events older than 14 days are rejected (`tooOldLogEventEndIndex`).
pub const MAX_AGE_MS: i64 = 14 * 86_400_000;
/// Events more than 2 hours in the future are rejected (`tooNewLogEventStartIndex`).
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// Response size limit of GetLogEvents / FilterLogEvents.
const MAX_RESPONSE_BYTES: usize = 1_048_576;
/// FilterLogEvents reads at most this much log data per call before handing back a token.
const FILTER_SCAN_BUDGET: u64 = 64 * 1024 * 1024;

#[derive(Serialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RejectedOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    too_new_log_event_start_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    too_old_log_event_end_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_log_event_end_index: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLogEventsOut {
    next_sequence_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_log_events_info: Option<RejectedOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputEvent {
    timestamp: i64,
    message: String,
    ingestion_time: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsOut {
    events: Vec<OutputEvent>,
    next_forward_token: String,
    next_backward_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilteredEvent {
    log_stream_name: String,
    timestamp: i64,
    message: String,
    ingestion_time: i64,
    event_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchedStream {
    log_stream_name: String,
    searched_completely: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsOut {
    events: Vec<FilteredEvent>,
    searched_log_streams: Vec<SearchedStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Which events of a valid, chronological batch are accepted: `(range, rejected info)`.
pub(crate) fn classify(
    timestamps: &[i64],
    now: i64,
    retention_days: Option<u32>,
) -> (std::ops::Range<usize>, Option<RejectedOut>) {
    let too_old = timestamps.partition_point(|t| *t < now - MAX_AGE_MS);
    let expired = match retention_days {
        Some(d) => timestamps.partition_point(|t| *t < now - i64::from(d) * 86_400_000),
        None => 0,
    };
    let too_new = timestamps.partition_point(|t| *t <= now + MAX_FUTURE_MS);
    let start = too_old.max(expired).min(too_new);
    let mut info = RejectedOut::default();
    if too_old > 0 {
        info.too_old_log_event_end_index = Some(too_old);
    }
    if expired > 0 {
        info.expired_log_event_end_index = Some(expired);
    }
    if too_new < timestamps.len() {
        info.too_new_log_event_start_index = Some(too_new);
    }
    let rejected = (info != RejectedOut::default()).then_some(info);
    (start..too_new, rejected)
}

pub async fn put_log_events(
    ctx: &Ctx,
    req: w::PutLogEventsRequest,
) -> Result<PutLogEventsOut, ApiError> {
    let group = group_name(req.log_group_name, "logGroupName")?;
    let stream = stream_name(req.log_stream_name, "logStreamName")?;
    let events = req.log_events.unwrap_or_default();
    if events.is_empty() {
        return Err(validation(
            "[]",
            "logEvents",
            "Member must have length greater than or equal to 1",
        ));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(validation(
            &format!("[{} events]", events.len()),
            "logEvents",
            &format!("Member must have length less than or equal to {MAX_BATCH_EVENTS}"),
        ));
    }
    let mut batch: Vec<(i64, String)> = Vec::with_capacity(events.len());
    let mut size = 0usize;
    for (i, e) in events.into_iter().enumerate() {
        let ts = e.timestamp.unwrap_or_default();
        let msg = e.message.unwrap_or_default();
        if ts < 0 {
            return Err(validation(
                &ts.to_string(),
                &format!("logEvents.{}.member.timestamp", i + 1),
                "Member must have value greater than or equal to 0",
            ));
        }
        if msg.is_empty() {
            return Err(validation(
                "",
                &format!("logEvents.{}.member.message", i + 1),
                "Member must have length greater than or equal to 1",
            ));
        }
        size += msg.len() + EVENT_OVERHEAD;
        batch.push((ts, msg));
    }
    if size > MAX_BATCH_BYTES {
        return Err(ApiError::invalid_parameter(format!(
            "Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if batch.windows(2).any(|p| p[1].0 < p[0].0) {
        return Err(ApiError::invalid_parameter(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
        if last.0 - first.0 > MAX_BATCH_SPAN_MS {
            return Err(ApiError::invalid_parameter(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
    }
    let n = batch.len();
    let rejected = blocking(ctx, move |s| {
        let retention = s.group_settings(&group)?.retention_in_days;
        let now = now_ms();
        let ts: Vec<i64> = batch.iter().map(|e| e.0).collect();
        let (range, rejected) = classify(&ts, now, retention);
        let accepted: Vec<(i64, &str)> =
            batch[range].iter().map(|(t, m)| (*t, m.as_str())).collect();
        if accepted.is_empty() {
            // Still report a missing stream, as AWS does.
            s.list_streams(&group)?
                .iter()
                .any(|x| x.name == stream)
                .then_some(())
                .ok_or(berth_logs::LogError::StreamNotFound)?;
        } else {
            s.put_events(&group, &stream, &accepted, now)?;
        }
        Ok(rejected)
    })
    .await?;
    tracing::debug!(
        events = n,
        rejected = rejected.is_some(),
        "log events stored"
    );
    Ok(PutLogEventsOut {
        next_sequence_token: format!("{:056}", now_ms()),
        rejected_log_events_info: rejected,
    })
}

fn bad_token() -> ApiError {
    ApiError::invalid_parameter("The specified nextToken is invalid.")
}

fn opt_time(t: i64) -> Option<i64> {
    (t != 0).then_some(t)
}

pub async fn get_log_events(
    ctx: &Ctx,
    req: w::GetLogEventsRequest,
) -> Result<GetLogEventsOut, ApiError> {
    let group = group_arg(req.log_group_name, req.log_group_identifier)?;
    let stream = stream_name(req.log_stream_name, "logStreamName")?;
    let limit = limit_arg(req.limit, 10_000, 10_000)?;
    let token = match req.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => {
            let (dir, digits) = t.split_once('/').ok_or_else(bad_token)?;
            let pos = Position::from_digits(digits).ok_or_else(bad_token)?;
            match dir {
                "f" => Some(ReadFrom::After(pos)),
                "b" => Some(ReadFrom::Before(pos)),
                _ => return Err(bad_token()),
            }
        }
    };
    let from = token.unwrap_or(if req.start_from_head {
        ReadFrom::Head
    } else {
        ReadFrom::Tail
    });
    let q = GetQuery {
        start: opt_time(req.start_time),
        end: opt_time(req.end_time),
        limit,
        max_bytes: MAX_RESPONSE_BYTES,
        from,
    };
    let events = blocking(ctx, move |s| s.get_events(&group, &stream, &q)).await?;
    let (fwd, bwd) = match (events.first(), events.last(), token) {
        (Some(first), Some(last), _) => (last.position, first.position),
        (_, _, Some(ReadFrom::After(p))) | (_, _, Some(ReadFrom::Before(p))) => (p, p),
        _ => (Position::default(), Position::default()),
    };
    Ok(GetLogEventsOut {
        events: events
            .into_iter()
            .map(|e| OutputEvent {
                timestamp: e.timestamp,
                message: e.message,
                ingestion_time: e.ingestion_time,
            })
            .collect(),
        next_forward_token: format!("f/{}", fwd.to_digits()),
        next_backward_token: format!("b/{}", bwd.to_digits()),
    })
}

/// A 56-digit event id, unique within a log group.
fn event_id(stream: &str, p: &Position) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mid = (h ^ p.segment.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 10_000_000_000_000_000;
    format!("{:020}{:016}{:020}", p.timestamp.max(0), mid, p.offset)
}

pub async fn filter_log_events(
    ctx: &Ctx,
    req: w::FilterLogEventsRequest,
) -> Result<FilterLogEventsOut, ApiError> {
    let group = group_arg(req.log_group_name, req.log_group_identifier)?;
    let limit = limit_arg(req.limit, 10_000, 10_000)?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(ApiError::invalid_parameter(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if let Some(names) = &req.log_stream_names {
        if names.is_empty() || names.len() > 100 {
            return Err(validation(
                &format!("[{} names]", names.len()),
                "logStreamNames",
                "Member must have length between 1 and 100",
            ));
        }
    }
    let pattern =
        Pattern::parse(req.filter_pattern.as_deref().unwrap_or("")).map_err(crate::log_error)?;
    let after = match req.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(FilterCursor::from_token(t).ok_or_else(bad_token)?),
    };
    let q = FilterQuery {
        streams: req.log_stream_names,
        prefix: req.log_stream_name_prefix,
        start: opt_time(req.start_time),
        // FilterLogEvents' endTime is inclusive ("events with a timestamp later than this time are
        // not returned"), unlike GetLogEvents'; the store's bound is exclusive.
        end: opt_time(req.end_time).map(|t| t.saturating_add(1)),
        limit,
        max_bytes: MAX_RESPONSE_BYTES,
        pattern,
        after,
        scan_budget: FILTER_SCAN_BUDGET,
    };
    let r = blocking(ctx, move |s| s.filter_events(&group, &q)).await?;
    let complete = r.next.is_none();
    Ok(FilterLogEventsOut {
        events: r
            .events
            .into_iter()
            .map(|(stream, e)| FilteredEvent {
                event_id: event_id(&stream, &e.position),
                log_stream_name: stream,
                timestamp: e.timestamp,
                message: e.message,
                ingestion_time: e.ingestion_time,
            })
            .collect(),
        searched_log_streams: r
            .searched_streams
            .into_iter()
            .map(|n| SearchedStream {
                log_stream_name: n,
                searched_completely: complete,
            })
            .collect(),
        next_token: r.next.map(|c| c.to_token()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rejections() {
        let now = 100 * 86_400_000i64;
        let day = 86_400_000;
        let ts = [
            now - 20 * day,
            now - 15 * day,
            now - day - 1,
            now,
            now + 3 * 3_600_000,
        ];
        let (r, info) = classify(&ts, now, None);
        assert_eq!(r, 2..4);
        let info = info.unwrap();
        assert_eq!(info.too_old_log_event_end_index, Some(2));
        assert_eq!(info.too_new_log_event_start_index, Some(4));
        assert_eq!(info.expired_log_event_end_index, None);
        let (r, info) = classify(&ts, now, Some(1));
        assert_eq!(r, 3..4);
        assert_eq!(info.unwrap().expired_log_event_end_index, Some(3));
        let (r, info) = classify(&[now], now, Some(7));
        assert_eq!(r, 0..1);
        assert!(info.is_none());
        let (r, _) = classify(&[now + 10 * 3_600_000], now, None);
        assert!(r.is_empty());
        let json = serde_json::to_string(&classify(&ts, now, None).1).unwrap();
        assert_eq!(
            json,
            r#"{"tooNewLogEventStartIndex":4,"tooOldLogEventEndIndex":2}"#
        );
    }
}
