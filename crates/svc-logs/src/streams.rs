//! Log streams: create/delete/describe.

use super::groups::Empty;
use super::{blocking, group_arg, group_arn, group_name, limit_arg, stream_name};
use crate::Ctx;
use berth_service::pagination::{decode_token, paginate};
use berth_service::ApiError;
use berth_wire::logs as w;
use serde::Serialize;

/// `LogStream` as AWS emits it: the event timestamps are absent until the stream has events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStreamOut {
    log_stream_name: String,
    creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ingestion_time: Option<i64>,
    arn: String,
    stored_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsOut {
    log_streams: Vec<LogStreamOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn create_log_stream(
    ctx: &Ctx,
    req: w::CreateLogStreamRequest,
) -> Result<Empty, ApiError> {
    let group = group_name(req.log_group_name, "logGroupName")?;
    let stream = stream_name(req.log_stream_name, "logStreamName")?;
    blocking(ctx, move |s| s.create_stream(&group, &stream)).await?;
    Ok(Empty {})
}

pub async fn delete_log_stream(
    ctx: &Ctx,
    req: w::DeleteLogStreamRequest,
) -> Result<Empty, ApiError> {
    let group = group_name(req.log_group_name, "logGroupName")?;
    let stream = stream_name(req.log_stream_name, "logStreamName")?;
    blocking(ctx, move |s| s.delete_stream(&group, &stream)).await?;
    Ok(Empty {})
}

pub async fn describe_log_streams(
    ctx: &Ctx,
    req: w::DescribeLogStreamsRequest,
) -> Result<DescribeLogStreamsOut, ApiError> {
    let group = group_arg(req.log_group_name, req.log_group_identifier)?;
    let limit = limit_arg(req.limit, 50, 50)?;
    let by_time = req.order_by == Some(w::OrderBy::LastEventTime);
    if by_time && req.log_stream_name_prefix.is_some() {
        return Err(ApiError::invalid_parameter(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let after = decode_token(req.next_token.as_deref())?;
    let prefix = req.log_stream_name_prefix;
    let g = group.clone();
    let streams = blocking(ctx, move |s| s.list_streams(&g)).await?;
    let arn = group_arn(ctx, &group);
    let mut items: Vec<(String, LogStreamOut)> = streams
        .into_iter()
        .filter(|s| prefix.as_deref().is_none_or(|p| s.name.starts_with(p)))
        .map(|s| {
            let key = if by_time {
                format!(
                    "{:020}/{}",
                    s.last_event_timestamp.unwrap_or(0).max(0),
                    s.name
                )
            } else {
                s.name.clone()
            };
            let out = LogStreamOut {
                arn: format!("{arn}:log-stream:{}", s.name),
                log_stream_name: s.name,
                creation_time: s.creation_time,
                first_event_timestamp: s.first_event_timestamp,
                last_event_timestamp: s.last_event_timestamp,
                last_ingestion_time: s.last_ingestion_time,
                stored_bytes: s.stored_bytes,
            };
            (key, out)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if req.descending {
        items.reverse();
    }
    let (log_streams, next_token) = paginate(items, after.as_deref(), limit, req.descending);
    Ok(DescribeLogStreamsOut {
        log_streams,
        next_token,
    })
}
