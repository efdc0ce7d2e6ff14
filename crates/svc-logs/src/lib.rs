//! berth-svc-logs: the CloudWatch Logs API (`Logs_20140328.<Operation>`, signing name `logs`,
//! awsJson1_1): what the `awslogs` log driver writes to and `aws logs …` reads from, backed by
//! `berth-logs`' `LogStore` (its files under the data dir's `logs/`, not the state store).
//!
//! Owns: the log store and its upkeep, as background tasks ([`FlushLogs`] every second,
//! [`ApplyRetention`] every 10 minutes, on every replica). StartLiveTail answers with
//! an event stream ([`Reply::Response`]); everything else is one JSON answer.

mod events;
mod groups;
pub mod live_tail;
mod streams;

use axum::http::StatusCode;
use berth_core::Scope;
use berth_logs::{LogError, LogStore};
use berth_service::ApiError;
use berth_service::{Call, Descriptor, Protocol, Reply, Service};
use berth_tasks::{BackgroundTask, Mode, TaskError, TaskSpec};
use berth_wire::logs::Operation;
use std::sync::Arc;
use std::time::Duration;

pub use berth_wire::logs::TARGET_PREFIX;

/// The CloudWatch Logs service: its state.
pub struct Logs {
    pub logs: LogStore,
    pub scope: Scope,
    /// Cancelled when the server starts shutting down: Live Tail streams end.
    pub closing: tokio_util::sync::CancellationToken,
}

/// What every Logs handler gets.
pub type Ctx = berth_service::Ctx<Logs>;

impl Logs {
    /// Opens the log store in `dir` (the data dir's `logs/`). Its upkeep runs as the background
    /// tasks [`FlushLogs`] and [`ApplyRetention`], which whoever builds the server registers.
    pub fn open(
        dir: &std::path::Path,
        scope: Scope,
        closing: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>, LogError> {
        let logs = LogStore::open(dir)?;
        Ok(Arc::new(Self {
            logs,
            scope,
            closing,
        }))
    }
}

/// Fsyncs the log streams written since the last pass, every second on every replica (each keeps
/// its own log files): an acknowledged PutLogEvents is on disk within a second.
pub struct FlushLogs(pub Arc<Logs>);

impl FlushLogs {
    pub const NAME: &'static str = "logs_flush";
    pub const PERIOD: Duration = Duration::from_secs(1);

    pub fn spec() -> TaskSpec {
        TaskSpec::new(Self::NAME, Self::PERIOD, Mode::EveryReplica).initial_delay(Self::PERIOD)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for FlushLogs {
    async fn activate(&self) -> Result<String, TaskError> {
        let logs = self.0.logs.clone();
        tokio::task::spawn_blocking(move || logs.flush()).await??;
        Ok("flushed".into())
    }
}

/// Deletes the log segments older than their group's retention, every 10 minutes on every
/// replica (each keeps its own log files), the first pass at start.
pub struct ApplyRetention(pub Arc<Logs>);

impl ApplyRetention {
    pub const NAME: &'static str = "logs_retention";
    pub const PERIOD: Duration = Duration::from_secs(600);

    pub fn spec() -> TaskSpec {
        TaskSpec::new(Self::NAME, Self::PERIOD, Mode::EveryReplica)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for ApplyRetention {
    async fn activate(&self) -> Result<String, TaskError> {
        let logs = self.0.logs.clone();
        let r = tokio::task::spawn_blocking(move || logs.apply_retention(berth_logs::now_ms()))
            .await??;
        Ok(format!(
            "{} segments ({} bytes) removed",
            r.segments_deleted, r.bytes_reclaimed
        ))
    }
}

static DESCRIPTOR: Descriptor = Descriptor {
    name: "logs",
    signing_names: &["logs"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[TARGET_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, op| Operation::from_name(op).is_some(),
};

/// The service as the edge sees it.
pub struct LogsService(pub Arc<Logs>);

#[async_trait::async_trait]
impl Service for LogsService {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        if call.operation == "StartLiveTail" {
            return live_tail::start_live_tail(&ctx, &call.body)
                .await
                .map(Reply::Response);
        }
        dispatch(&ctx, call.operation, &call.body)
            .await
            .map(Reply::Json)
    }

    async fn after_reset(&self) -> Result<(), ApiError> {
        let logs = self.0.logs.clone();
        tokio::task::spawn_blocking(move || logs.wipe())
            .await
            .map_err(|e| ApiError::server(e.to_string()))?
            .map_err(log_error)
    }
}

/// Largest request body accepted for Logs: a full PutLogEvents batch is 1,048,576 bytes of
/// messages, and JSON escaping can grow that several times.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

macro_rules! route {
    ($ctx:expr, $body:expr, $handler:path) => {
        berth_service::route!(decode_req, $ctx, $body, $handler)
    };
}

/// Runs one Logs operation. `op` is the operation name from `X-Amz-Target`, already authorized.
pub async fn dispatch(ctx: &Ctx, op: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use Operation as O;
    let Some(op) = Operation::from_name(op) else {
        return Err(ApiError::unknown_operation(&format!(
            "{TARGET_PREFIX}.{op}"
        )));
    };
    match op {
        O::CreateLogGroup => route!(ctx, body, groups::create_log_group),
        O::DeleteLogGroup => route!(ctx, body, groups::delete_log_group),
        O::DescribeLogGroups => route!(ctx, body, groups::describe_log_groups),
        O::PutRetentionPolicy => route!(ctx, body, groups::put_retention_policy),
        O::DeleteRetentionPolicy => route!(ctx, body, groups::delete_retention_policy),
        O::TagResource => route!(ctx, body, groups::tag_resource),
        O::UntagResource => route!(ctx, body, groups::untag_resource),
        O::ListTagsForResource => route!(ctx, body, groups::list_tags_for_resource),
        O::TagLogGroup => route!(ctx, body, groups::tag_log_group),
        O::UntagLogGroup => route!(ctx, body, groups::untag_log_group),
        O::ListTagsLogGroup => route!(ctx, body, groups::list_tags_log_group),
        O::CreateLogStream => route!(ctx, body, streams::create_log_stream),
        O::DeleteLogStream => route!(ctx, body, streams::delete_log_stream),
        O::DescribeLogStreams => route!(ctx, body, streams::describe_log_streams),
        O::PutLogEvents => route!(ctx, body, events::put_log_events),
        O::GetLogEvents => route!(ctx, body, events::get_log_events),
        O::FilterLogEvents => route!(ctx, body, events::filter_log_events),
        // Answered with an event stream by the server (see `live_tail::start_live_tail`).
        O::StartLiveTail => Err(ApiError::server("StartLiveTail must be served as a stream")),
        other => Err(ApiError::new(
            "InvalidOperationException",
            format!(
                "{} is not supported by this berth server yet.",
                other.as_str()
            ),
        )),
    }
}

/// Is this operation implemented?
pub fn implemented(op: Operation) -> bool {
    use Operation as O;
    matches!(
        op,
        O::CreateLogGroup
            | O::DeleteLogGroup
            | O::DescribeLogGroups
            | O::PutRetentionPolicy
            | O::DeleteRetentionPolicy
            | O::TagResource
            | O::UntagResource
            | O::ListTagsForResource
            | O::TagLogGroup
            | O::UntagLogGroup
            | O::ListTagsLogGroup
            | O::CreateLogStream
            | O::DeleteLogStream
            | O::DescribeLogStreams
            | O::PutLogEvents
            | O::GetLogEvents
            | O::FilterLogEvents
            | O::StartLiveTail
    )
}

/// How CloudWatch Logs words a request that does not fit its model.
const DIALECT: berth_service::codec::JsonDialect = berth_service::codec::JsonDialect {
    missing: berth_service::codec::Missing::Validation("InvalidParameterException"),
    invalid_value_code: "InvalidParameterException",
    enum_texts: &[],
};

/// Decodes a request in CloudWatch Logs' words.
fn decode_req<T: serde::de::DeserializeOwned + berth_wire::Validate>(
    body: &[u8],
) -> Result<T, ApiError> {
    berth_service::codec::decode_in(body, &DIALECT)
}

/// A log-store error as CloudWatch Logs answers it.
pub fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::GroupNotFound | LogError::StreamNotFound => {
            ApiError::new("ResourceNotFoundException", e.to_string())
        }
        LogError::GroupExists | LogError::StreamExists => {
            ApiError::new("ResourceAlreadyExistsException", e.to_string())
        }
        LogError::Invalid(m) => ApiError::invalid_parameter(m),
        LogError::Pattern(_) => ApiError::invalid_parameter(e.to_string()),
        LogError::Io { .. } => {
            tracing::error!(error = %e, "log store failure");
            ApiError::new(
                "ServiceUnavailableException",
                "The service cannot complete the request.",
            )
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// The server's log store.
fn store(ctx: &Ctx) -> LogStore {
    ctx.app.logs.clone()
}

/// Runs blocking log-store work off the async executor.
async fn blocking<T: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&LogStore) -> Result<T, LogError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = store(ctx);
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| ApiError::server(format!("log store task failed: {e}")))?
        .map_err(log_error)
}

fn validation(value: &str, member: &str, constraint: &str) -> ApiError {
    ApiError::invalid_parameter(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

fn check_len(value: &str, member: &str, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < 1 {
        return Err(validation(
            value,
            member,
            "Member must have length greater than or equal to 1",
        ));
    }
    if n > max {
        return Err(validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// Validates a log group name (1–512 of `[.-_/#A-Za-z0-9]`).
pub(crate) fn group_name(v: Option<String>, member: &str) -> Result<String, ApiError> {
    let v = v.unwrap_or_default();
    check_len(&v, member, 512)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#'))
    {
        return Err(validation(
            &v,
            member,
            r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+",
        ));
    }
    Ok(v)
}

/// Validates a log stream name (1–512 characters, no `:` or `*`).
pub(crate) fn stream_name(v: Option<String>, member: &str) -> Result<String, ApiError> {
    let v = v.unwrap_or_default();
    check_len(&v, member, 512)?;
    if v.contains(':') || v.contains('*') {
        return Err(validation(
            &v,
            member,
            "Member must satisfy regular expression pattern: [^:*]*",
        ));
    }
    Ok(v)
}

/// The group name in a log group ARN (`arn:aws:logs:<region>:<account>:log-group:<name>[:*]`).
pub(crate) fn group_of_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let _partition = parts.next()?;
    if parts.next()? != "logs" {
        return None;
    }
    let _region = parts.next()?;
    let _account = parts.next()?;
    if parts.next()? != "log-group" {
        return None;
    }
    let name = parts.next()?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

/// Resolves `logGroupName` / `logGroupIdentifier` (a name or either ARN form): exactly one of them.
pub(crate) fn group_arg(name: Option<String>, ident: Option<String>) -> Result<String, ApiError> {
    match (name, ident) {
        (Some(_), Some(_)) => Err(ApiError::invalid_parameter(
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
        )),
        (Some(n), None) => group_name(Some(n), "logGroupName"),
        (None, Some(i)) => {
            if i.starts_with("arn:") {
                match group_of_arn(&i) {
                    Some(n) => group_name(Some(n.to_string()), "logGroupIdentifier"),
                    None => Err(ApiError::invalid_parameter(format!(
                        "Invalid log group identifier: {i}"
                    ))),
                }
            } else {
                group_name(Some(i), "logGroupIdentifier")
            }
        }
        (None, None) => Err(ApiError::invalid_parameter(
            "Either LogGroupName or LogGroupIdentifier must be specified.",
        )),
    }
}

/// `arn:aws:logs:<region>:<account>:log-group:<name>` (`logGroupArn`; `arn` adds `:*`).
pub(crate) fn group_arn(ctx: &Ctx, name: &str) -> String {
    format!(
        "arn:{}:logs:{}:{}:log-group:{name}",
        ctx.app.scope.partition, ctx.app.scope.region, ctx.app.scope.account
    )
}

/// Validates an optional `limit` against `1..=max`.
pub(crate) fn limit_arg(v: i32, present_default: usize, max: i32) -> Result<usize, ApiError> {
    match v {
        0 => Ok(present_default),
        n if (1..=max).contains(&n) => Ok(n as usize),
        n => Err(validation(
            &n.to_string(),
            "limit",
            &format!("Member must have value less than or equal to {max}"),
        )),
    }
}

/// Log events for other services (EventBridge's CloudWatch Logs targets).
pub struct LogsWriter(pub Arc<Logs>);

#[async_trait::async_trait]
impl berth_service::LogWriter for LogsWriter {
    async fn write(
        &self,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), ApiError> {
        let store = &self.0.logs;
        match store.create_stream(group, stream) {
            Ok(()) | Err(LogError::StreamExists) => {}
            Err(e) => return Err(log_error(e)),
        }
        let batch: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
        store
            .put_events(group, stream, &batch, berth_logs::now_ms())
            .map_err(log_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_names() {
        assert_eq!(
            group_of_arn("arn:aws:logs:us-east-1:000000000000:log-group:/ecs/app:*"),
            Some("/ecs/app")
        );
        assert_eq!(
            group_of_arn("arn:aws:logs:us-east-1:000000000000:log-group:/ecs/app"),
            Some("/ecs/app")
        );
        assert_eq!(group_of_arn("arn:aws:ecs:us-east-1:0:cluster/x"), None);
        assert!(group_name(Some("/ecs/my-app_1.#".into()), "logGroupName").is_ok());
        assert!(group_name(Some("bad name".into()), "logGroupName").is_err());
        assert!(group_name(Some(String::new()), "logGroupName").is_err());
        assert!(group_name(Some("x".repeat(513)), "logGroupName").is_err());
        assert!(stream_name(Some("ecs/web/abc".into()), "logStreamName").is_ok());
        assert!(stream_name(Some("a:b".into()), "logStreamName").is_err());
        assert!(group_arg(Some("a".into()), Some("a".into())).is_err());
        assert_eq!(
            group_arg(None, Some("arn:aws:logs:us-east-1:1:log-group:g".into())).unwrap(),
            "g"
        );
        assert_eq!(limit_arg(0, 50, 50).unwrap(), 50);
        assert!(limit_arg(51, 50, 50).is_err());
        assert!(limit_arg(-1, 50, 50).is_err());
    }
}
