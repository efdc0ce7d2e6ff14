//! StartLiveTail: a response stream (`application/vnd.amazon.eventstream`) of an
//! `initial-response`, one `sessionStart` and then a `sessionUpdate` every second with the events
//! appended since the last one that match the session's groups, streams and filter pattern —
//! fed by the log store's append broadcast ([`berth_logs::LogStore::subscribe`]), never by
//! polling. Like CloudWatch: at most 500 events per update (more are sampled down, and
//! `sessionMetadata.sampled` says so), at most [`MAX_PENDING_EVENTS`] buffered per update, sessions
//! end with `SessionTimeoutException` after three hours, an internal failure ends them with
//! `SessionStreamingException`, and closing the connection ends them at once.

use super::{group_name, group_of_arn, store, stream_name, validation};
use crate::Ctx;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue as HttpHeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_logs::{Appended, Pattern};
use berth_service::ApiError;
use berth_wire::logs as w;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// At most this many log groups per session.
pub const MAX_GROUPS: usize = 10;
/// At most this many events in one `sessionUpdate`; more are sampled down.
pub const MAX_EVENTS_PER_UPDATE: usize = 500;
/// Events buffered between two updates (CloudWatch buffers "up to … 5000 log events").
pub const MAX_PENDING_EVENTS: usize = 5000;
/// Updates buffered for a slow client (CloudWatch: "up to 10 LiveTailSessionUpdate events").
pub const MAX_PENDING_UPDATES: usize = 10;
/// One update a second.
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// Sessions time out after three hours.
pub const MAX_SESSION: Duration = Duration::from_secs(3 * 3600);
/// Concurrent sessions per server (CloudWatch's default quota per account and Region is 15).
pub const MAX_SESSIONS: usize = 15;

/// How long a session's last frame (an exception) waits for room in a slow client's buffer.
const FINAL_FRAME_WAIT: Duration = Duration::from_secs(5);

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Counts a running session; the count drops when it does.
struct SessionSlot;

impl SessionSlot {
    fn acquire() -> Option<SessionSlot> {
        SESSIONS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SESSIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        SESSIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionStart {
    request_id: String,
    session_id: String,
    log_group_identifiers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_stream_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_stream_name_prefixes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_event_filter_pattern: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct LiveEvent {
    log_stream_name: String,
    log_group_identifier: String,
    message: String,
    timestamp: i64,
    ingestion_time: i64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct SessionMetadata {
    sampled: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct SessionUpdate {
    session_metadata: SessionMetadata,
    session_results: Vec<LiveEvent>,
}

/// Which appended events a session wants.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Group name → the identifier the caller used for it (echoed in each event).
    groups: HashMap<String, String>,
    streams: Option<Vec<String>>,
    prefixes: Option<Vec<String>>,
    pattern: Pattern,
}

impl Selector {
    fn wants_stream(&self, group: &str, stream: &str) -> Option<&str> {
        let ident = self.groups.get(group)?;
        if let Some(names) = &self.streams {
            if !names.iter().any(|n| n == stream) {
                return None;
            }
        }
        if let Some(prefixes) = &self.prefixes {
            if !prefixes.iter().any(|p| stream.starts_with(p.as_str())) {
                return None;
            }
        }
        Some(ident)
    }
}

/// One event-stream frame with string headers and a JSON payload.
fn frame(headers: &[(&'static str, &str)], payload: Vec<u8>) -> Bytes {
    let mut msg = Message::new(payload);
    for (name, value) in headers {
        msg = msg.add_header(Header::new(
            *name,
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut buf = Vec::new();
    // Writing only fails beyond the format's limits (16 MiB payloads); an update holds at most
    // 500 events, and PutLogEvents batches are at most 1 MiB, so this is not expected.
    if let Err(e) = write_message_to(&msg, &mut buf) {
        tracing::error!(error = %e, "cannot frame a live tail message");
        return Bytes::new();
    }
    Bytes::from(buf)
}

fn event_frame(event_type: &str, body: &impl Serialize) -> Bytes {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", "application/json"),
        ],
        serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

fn exception_frame(exception_type: &str, message: &str) -> Bytes {
    frame(
        &[
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", "application/json"),
        ],
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default(),
    )
}

/// Picks `n` of `items`, evenly spread, keeping their order.
fn sample<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if len <= n {
        return items;
    }
    let mut keep = Vec::with_capacity(n);
    let mut next = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        // Keep item i when it is the first at or past the next of n evenly spaced marks.
        if keep.len() < n && i * n >= next * len {
            keep.push(item);
            next += 1;
        }
    }
    keep
}

/// Most message bytes in one update, well inside the event-stream format's 16 MiB frame limit.
const MAX_UPDATE_BYTES: usize = 8 * 1024 * 1024;

/// Keeps the first events whose messages fit [`MAX_UPDATE_BYTES`]; `true` when some were cut.
fn fit(mut events: Vec<LiveEvent>) -> (Vec<LiveEvent>, bool) {
    let mut bytes = 0usize;
    let keep = events
        .iter()
        .take_while(|e| {
            bytes += e.message.len() + e.log_stream_name.len() + e.log_group_identifier.len() + 128;
            bytes <= MAX_UPDATE_BYTES
        })
        .count();
    let cut = keep < events.len();
    events.truncate(keep);
    (events, cut)
}

/// What ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client went away.
    Disconnected,
    /// The server is shutting down.
    Closing,
    /// [`MAX_SESSION`] passed: `SessionTimeoutException` was sent.
    TimedOut,
    /// The log store went away: `SessionStreamingException` was sent.
    Failed,
}

/// Runs a session until it ends: collects matching appended events and sends one update per
/// `every`; gives up after `max`.
pub(crate) async fn run_session(
    sel: Selector,
    mut live: broadcast::Receiver<Arc<Appended>>,
    out: mpsc::Sender<Bytes>,
    every: Duration,
    max: Duration,
    closing: tokio_util::sync::CancellationToken,
) -> End {
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: VecDeque<LiveEvent> = VecDeque::new();
    let mut sampled = false;
    loop {
        tokio::select! {
            biased;
            _ = closing.cancelled() => return End::Closing,
            _ = out.closed() => return End::Disconnected,
            _ = &mut deadline => {
                let frame = exception_frame(
                    "SessionTimeoutException",
                    "The Live Tail session timed out after three hours.",
                );
                let _ = tokio::time::timeout(FINAL_FRAME_WAIT, out.send(frame)).await;
                return End::TimedOut;
            }
            _ = tick.tick() => {
                let matched = Vec::from(std::mem::take(&mut pending));
                let over = matched.len() > MAX_EVENTS_PER_UPDATE;
                let (results, cut) = fit(sample(matched, MAX_EVENTS_PER_UPDATE));
                let update = SessionUpdate {
                    session_metadata: SessionMetadata { sampled: sampled || over || cut },
                    session_results: results,
                };
                sampled = false;
                // Waits while the client's buffer (MAX_PENDING_UPDATES) is full; meanwhile the
                // broadcast keeps the newest batches and reports the dropped oldest as `Lagged`.
                tokio::select! {
                    biased;
                    _ = closing.cancelled() => return End::Closing,
                    r = out.send(event_frame("sessionUpdate", &update)) => {
                        if r.is_err() {
                            return End::Disconnected;
                        }
                    }
                }
            }
            got = live.recv() => match got {
                Ok(batch) => {
                    let Some(ident) = sel.wants_stream(&batch.group, &batch.stream) else {
                        continue;
                    };
                    for (ts, msg) in &batch.events {
                        if !sel.pattern.matches(msg) {
                            continue;
                        }
                        if pending.len() >= MAX_PENDING_EVENTS {
                            // Drop the oldest, as CloudWatch does once its buffer is full.
                            pending.pop_front();
                            sampled = true;
                        }
                        pending.push_back(LiveEvent {
                            log_stream_name: batch.stream.clone(),
                            log_group_identifier: ident.to_string(),
                            message: msg.clone(),
                            timestamp: *ts,
                            ingestion_time: batch.ingestion_time,
                        });
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(batches = n, "live tail session fell behind; oldest batches dropped");
                    sampled = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let frame = exception_frame(
                        "SessionStreamingException",
                        "The log store stopped; the Live Tail session cannot continue.",
                    );
                    let _ = tokio::time::timeout(FINAL_FRAME_WAIT, out.send(frame)).await;
                    return End::Failed;
                }
            },
        }
    }
}

fn check_list(list: &Option<Vec<String>>, member: &str, max: usize) -> Result<(), ApiError> {
    if let Some(v) = list {
        if v.is_empty() || v.len() > max {
            return Err(validation(
                &format!("[{} items]", v.len()),
                member,
                &format!(
                    "Member must have length {}",
                    if v.is_empty() {
                        "greater than or equal to 1".to_string()
                    } else {
                        format!("less than or equal to {max}")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Validates the request and resolves its log groups: `(selector, session start)`.
pub(crate) fn prepare(
    req: w::StartLiveTailRequest,
    exists: impl Fn(&str) -> bool,
    request_id: &str,
) -> Result<(Selector, SessionStart), ApiError> {
    let Some(idents) = req.log_group_identifiers else {
        return Err(ApiError::invalid_parameter(
            "1 validation error detected: Value null at 'logGroupIdentifiers' failed to satisfy constraint: Member must not be null",
        ));
    };
    check_list(&Some(idents.clone()), "logGroupIdentifiers", MAX_GROUPS)?;
    check_list(&req.log_stream_names, "logStreamNames", 100)?;
    check_list(&req.log_stream_name_prefixes, "logStreamNamePrefixes", 100)?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefixes.is_some() {
        return Err(ApiError::invalid_parameter(
            "logStreamNames and logStreamNamePrefixes are mutually exclusive parameters.",
        ));
    }
    if (req.log_stream_names.is_some() || req.log_stream_name_prefixes.is_some())
        && idents.len() > 1
    {
        return Err(ApiError::invalid_parameter(
            "logStreamNames and logStreamNamePrefixes can only be specified with a single log group in logGroupIdentifiers.",
        ));
    }
    for n in req.log_stream_names.iter().flatten() {
        stream_name(Some(n.clone()), "logStreamNames")?;
    }
    for n in req.log_stream_name_prefixes.iter().flatten() {
        stream_name(Some(n.clone()), "logStreamNamePrefixes")?;
    }
    let pattern_src = req.log_event_filter_pattern.clone().unwrap_or_default();
    if pattern_src.chars().count() > 1024 {
        return Err(validation(
            "…",
            "logEventFilterPattern",
            "Member must have length less than or equal to 1024",
        ));
    }
    let pattern = Pattern::parse(&pattern_src).map_err(crate::log_error)?;
    let mut groups = HashMap::new();
    for ident in &idents {
        if ident.len() > 2048 {
            return Err(validation(
                ident,
                "logGroupIdentifiers",
                "Member must have length less than or equal to 2048",
            ));
        }
        let name = if ident.starts_with("arn:") {
            if ident.ends_with('*') {
                return Err(ApiError::invalid_parameter(format!(
                    "Log group ARNs in logGroupIdentifiers cannot end with an asterisk (*): {ident}"
                )));
            }
            group_of_arn(ident).map(str::to_string).ok_or_else(|| {
                ApiError::invalid_parameter(format!("Invalid log group identifier: {ident}"))
            })?
        } else {
            ident.clone()
        };
        let name = group_name(Some(name), "logGroupIdentifiers")?;
        if !exists(&name) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("The specified log group does not exist: {ident}"),
            ));
        }
        groups.insert(name, ident.clone());
    }
    let start = SessionStart {
        request_id: request_id.to_string(),
        session_id: uuid::Uuid::new_v4().to_string(),
        log_group_identifiers: idents,
        log_stream_names: req.log_stream_names.clone(),
        log_stream_name_prefixes: req.log_stream_name_prefixes.clone(),
        log_event_filter_pattern: req.log_event_filter_pattern.clone(),
    };
    Ok((
        Selector {
            groups,
            streams: req.log_stream_names,
            prefixes: req.log_stream_name_prefixes,
            pattern,
        },
        start,
    ))
}

/// StartLiveTail: validates, subscribes, and answers with the event stream.
pub async fn start_live_tail(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let req: w::StartLiveTailRequest = super::decode_req(body)?;
    let logs = store(ctx);
    let request_id = uuid::Uuid::new_v4().to_string();
    let (sel, start) = prepare(req, |g| logs.group_settings(g).is_ok(), &request_id)?;
    let slot = SessionSlot::acquire().ok_or_else(|| {
        ApiError::new(
            "LimitExceededException",
            format!("You have reached the maximum number of concurrent Live Tail sessions ({MAX_SESSIONS})."),
        )
    })?;
    // Subscribe before answering, so nothing appended after the response started is missed.
    let live = logs.subscribe();
    let (tx, mut rx) = mpsc::channel::<Bytes>(MAX_PENDING_UPDATES);
    // The first two frames fit the channel: queue them before the response goes out.
    let _ = tx.try_send(event_frame("initial-response", &serde_json::json!({})));
    let _ = tx.try_send(event_frame("sessionStart", &start));
    let closing = ctx.app.closing.clone();
    let session_id = start.session_id.clone();
    tracing::info!(session = %session_id, groups = ?start.log_group_identifiers, "live tail session started");
    tokio::spawn(async move {
        let _slot = slot;
        let end = run_session(sel, live, tx, UPDATE_EVERY, MAX_SESSION, closing).await;
        tracing::info!(session = %session_id, ?end, "live tail session ended");
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, Infallible>))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HttpHeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn sel(pattern: &str) -> Selector {
        let req = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![
                "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web".into(),
            ]),
            log_stream_name_prefixes: Some(vec!["ecs/".into()]),
            log_event_filter_pattern: Some(pattern.into()),
            ..Default::default()
        };
        prepare(req, |_| true, "rid").unwrap().0
    }

    fn decode(b: &Bytes) -> (HashMap<String, String>, serde_json::Value) {
        let m = read_message_from(b.clone()).unwrap();
        let headers = m
            .headers()
            .iter()
            .map(|h| {
                (
                    h.name().as_str().to_string(),
                    h.value().as_string().unwrap().as_str().to_string(),
                )
            })
            .collect();
        (headers, serde_json::from_slice(m.payload()).unwrap())
    }

    fn batch(stream: &str, msgs: &[&str]) -> Arc<Appended> {
        Arc::new(Appended {
            group: "/ecs/web".into(),
            stream: stream.into(),
            ingestion_time: 7,
            events: msgs
                .iter()
                .enumerate()
                .map(|(i, m)| (i as i64, m.to_string()))
                .collect(),
        })
    }

    #[test]
    fn validation() {
        let ok = |r: w::StartLiveTailRequest| prepare(r, |g| g == "g", "rid");
        let arn = |g: &str| format!("arn:aws:logs:us-east-1:000000000000:log-group:{g}");
        assert!(ok(w::StartLiveTailRequest::default()).is_err());
        let too_many = w::StartLiveTailRequest {
            log_group_identifiers: Some((0..11).map(|_| arn("g")).collect()),
            ..Default::default()
        };
        assert_eq!(ok(too_many).unwrap_err().code, "InvalidParameterException");
        let missing = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![arn("nope")]),
            ..Default::default()
        };
        assert_eq!(ok(missing).unwrap_err().code, "ResourceNotFoundException");
        let star = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![format!("{}:*", arn("g"))]),
            ..Default::default()
        };
        assert!(ok(star).is_err());
        let both = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![arn("g")]),
            log_stream_names: Some(vec!["a".into()]),
            log_stream_name_prefixes: Some(vec!["a".into()]),
            ..Default::default()
        };
        assert!(ok(both).is_err());
        let streams_with_two_groups = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![arn("g"), "g".into()]),
            log_stream_names: Some(vec!["a".into()]),
            ..Default::default()
        };
        assert!(ok(streams_with_two_groups).is_err());
        let bad_pattern = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![arn("g")]),
            log_event_filter_pattern: Some("%a(b)%".into()),
            ..Default::default()
        };
        assert!(ok(bad_pattern).is_err());
        let good = w::StartLiveTailRequest {
            log_group_identifiers: Some(vec![arn("g")]),
            log_stream_names: Some(vec!["a".into()]),
            ..Default::default()
        };
        let (s, start) = ok(good).unwrap();
        assert_eq!(s.wants_stream("g", "a"), Some(arn("g").as_str()));
        assert_eq!(s.wants_stream("g", "b"), None);
        assert_eq!(s.wants_stream("other", "a"), None);
        assert_eq!(start.request_id, "rid");
    }

    #[test]
    fn sampling_keeps_order_and_spread() {
        let v: Vec<usize> = (0..1000).collect();
        let s = sample(v, 500);
        assert_eq!(s.len(), 500);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s[0], 0);
        assert!(*s.last().unwrap() >= 990);
        assert_eq!(sample(vec![1, 2, 3], 500), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn updates_carry_matching_appends_and_the_session_times_out() {
        let (btx, brx) = broadcast::channel(16);
        let (tx, mut rx) = mpsc::channel(16);
        let closing = tokio_util::sync::CancellationToken::new();
        let session = tokio::spawn(run_session(
            sel("ERROR"),
            brx,
            tx,
            Duration::from_millis(100),
            Duration::from_millis(450),
            closing,
        ));
        btx.send(batch(
            "ecs/web/1",
            &["ERROR one", "INFO two", "ERROR three"],
        ))
        .unwrap();
        btx.send(batch("other/1", &["ERROR elsewhere"])).unwrap();
        let mut results = Vec::new();
        let mut last = None;
        while let Some(f) = rx.recv().await {
            let (h, body) = decode(&f);
            if h[":message-type"] == "exception" {
                last = Some((h[":exception-type"].clone(), body));
                break;
            }
            assert_eq!(h[":event-type"], "sessionUpdate");
            assert_eq!(body["sessionMetadata"]["sampled"], false);
            for e in body["sessionResults"].as_array().unwrap() {
                results.push(e["message"].as_str().unwrap().to_string());
                assert_eq!(e["logStreamName"], "ecs/web/1");
                assert_eq!(e["ingestionTime"], 7);
            }
        }
        assert_eq!(results, vec!["ERROR one", "ERROR three"]);
        let (kind, body) = last.unwrap();
        assert_eq!(kind, "SessionTimeoutException");
        assert!(body["message"].as_str().unwrap().contains("three hours"));
        assert_eq!(session.await.unwrap(), End::TimedOut);
    }

    #[tokio::test]
    async fn over_500_events_are_sampled_and_a_lost_client_ends_the_session() {
        let (btx, brx) = broadcast::channel(16);
        let (tx, mut rx) = mpsc::channel(16);
        let closing = tokio_util::sync::CancellationToken::new();
        let session = tokio::spawn(run_session(
            sel(""),
            brx,
            tx,
            Duration::from_millis(100),
            Duration::from_secs(60),
            closing.clone(),
        ));
        let msgs: Vec<String> = (0..1200).map(|i| format!("line {i}")).collect();
        let refs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        btx.send(batch("ecs/web/1", &refs)).unwrap();
        let (_, body) = decode(&rx.recv().await.unwrap());
        assert_eq!(body["sessionMetadata"]["sampled"], true);
        assert_eq!(body["sessionResults"].as_array().unwrap().len(), 500);
        let (_, body) = decode(&rx.recv().await.unwrap());
        assert_eq!(body["sessionMetadata"]["sampled"], false);
        assert!(body["sessionResults"].as_array().unwrap().is_empty());
        drop(rx);
        assert_eq!(session.await.unwrap(), End::Disconnected);
        drop(btx);
    }

    #[tokio::test]
    async fn closing_the_server_ends_sessions() {
        let (_btx, brx) = broadcast::channel::<Arc<Appended>>(16);
        let (tx, _rx) = mpsc::channel(16);
        let closing = tokio_util::sync::CancellationToken::new();
        let session = tokio::spawn(run_session(
            sel(""),
            brx,
            tx,
            Duration::from_secs(1),
            Duration::from_secs(60),
            closing.clone(),
        ));
        closing.cancel();
        assert_eq!(session.await.unwrap(), End::Closing);
    }
}
