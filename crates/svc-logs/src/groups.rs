//! Log groups: create/delete/describe, retention policies, and tags (TagResource & co. and the
//! legacy TagLogGroup & co.).

use super::{blocking, group_arg, group_arn, group_name, group_of_arn, limit_arg};
use crate::Ctx;
use berth_logs::{GroupSettings, LogError};
use berth_service::pagination::{decode_token, paginate};
use berth_service::ApiError;
use berth_wire::logs as w;
use serde::Serialize;
use std::collections::BTreeMap;

/// The retention periods CloudWatch Logs accepts.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
const MAX_TAGS: usize = 50;

#[derive(Serialize, Default)]
pub struct Empty {}

/// `LogGroup` as AWS emits it (absent members omitted, unlike the generated struct's zeros).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroupOut {
    log_group_name: String,
    creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_in_days: Option<u32>,
    metric_filter_count: i32,
    arn: String,
    stored_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    log_group_class: String,
    log_group_arn: String,
    deletion_protection_enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsOut {
    log_groups: Vec<LogGroupOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
pub struct TagsOut {
    tags: BTreeMap<String, String>,
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ApiError::invalid_parameter(
                "Tag keys must be between 1 and 128 characters.",
            ));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::invalid_parameter(
                "Tag values must be between 0 and 256 characters.",
            ));
        }
        if k.len() >= 4 && k[..4].eq_ignore_ascii_case("aws:") {
            return Err(ApiError::invalid_parameter(
                "Tag keys that begin with 'aws:' are reserved for AWS use.",
            ));
        }
    }
    Ok(())
}

fn too_many_tags(code: &'static str) -> ApiError {
    ApiError::new(
        code,
        format!("A resource can have no more than {MAX_TAGS} tags."),
    )
}

pub async fn create_log_group(ctx: &Ctx, req: w::CreateLogGroupRequest) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags("InvalidParameterException"));
    }
    let mut settings = GroupSettings::new(&name);
    settings.tags = tags;
    settings.kms_key_id = req.kms_key_id;
    settings.deletion_protection = req.deletion_protection_enabled;
    if let Some(c) = req.log_group_class {
        settings.log_group_class = c.as_str().to_string();
    }
    blocking(ctx, move |s| s.create_group(settings)).await?;
    tracing::info!(group = %name, principal = %ctx.principal.arn, "log group created");
    Ok(Empty {})
}

pub async fn delete_log_group(ctx: &Ctx, req: w::DeleteLogGroupRequest) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    let n = name.clone();
    blocking(ctx, move |s| {
        if s.group_settings(&n)?.deletion_protection {
            return Err(LogError::Invalid(
                "Log group deletion protection is enabled.".into(),
            ));
        }
        s.delete_group(&n)
    })
    .await?;
    tracing::info!(group = %name, principal = %ctx.principal.arn, "log group deleted");
    Ok(Empty {})
}

pub async fn describe_log_groups(
    ctx: &Ctx,
    req: w::DescribeLogGroupsRequest,
) -> Result<DescribeLogGroupsOut, ApiError> {
    let limit = limit_arg(req.limit, 50, 50)?;
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(ApiError::invalid_parameter(
            "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
        ));
    }
    if req.log_group_identifiers.is_some()
        && (req.log_group_name_prefix.is_some() || req.log_group_name_pattern.is_some())
    {
        return Err(ApiError::invalid_parameter(
            "LogGroupIdentifiers is mutually exclusive with LogGroupNamePrefix and LogGroupNamePattern.",
        ));
    }
    let idents: Option<Vec<String>> = match req.log_group_identifiers {
        Some(ids) => Some(
            ids.into_iter()
                .map(|i| group_arg(None, Some(i)))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let after = decode_token(req.next_token.as_deref())?;
    let prefix = req.log_group_name_prefix;
    let pattern = req.log_group_name_pattern.map(|p| p.to_lowercase());
    let class = req.log_group_class.map(|c| c.as_str().to_string());
    let groups = blocking(ctx, |s| Ok(s.list_groups())).await?;
    let items: Vec<(String, LogGroupOut)> = groups
        .into_iter()
        .filter(|g| {
            let n = &g.settings.name;
            prefix.as_deref().is_none_or(|p| n.starts_with(p))
                && pattern
                    .as_deref()
                    .is_none_or(|p| n.to_lowercase().contains(p))
                && idents.as_ref().is_none_or(|ids| ids.contains(n))
                && class
                    .as_deref()
                    .is_none_or(|c| g.settings.log_group_class == c)
        })
        .map(|g| {
            let arn = group_arn(ctx, &g.settings.name);
            let out = LogGroupOut {
                log_group_name: g.settings.name.clone(),
                creation_time: g.settings.creation_time,
                retention_in_days: g.settings.retention_in_days,
                metric_filter_count: 0,
                arn: format!("{arn}:*"),
                stored_bytes: g.stored_bytes,
                kms_key_id: g.settings.kms_key_id.clone(),
                log_group_class: g.settings.log_group_class.clone(),
                log_group_arn: arn,
                deletion_protection_enabled: g.settings.deletion_protection,
            };
            (g.settings.name, out)
        })
        .collect();
    let (log_groups, next_token) = paginate(items, after.as_deref(), limit, false);
    Ok(DescribeLogGroupsOut {
        log_groups,
        next_token,
    })
}

pub async fn put_retention_policy(
    ctx: &Ctx,
    req: w::PutRetentionPolicyRequest,
) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    let days = req.retention_in_days.unwrap_or_default();
    if !RETENTION_DAYS.contains(&days) {
        let set: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
        return Err(ApiError::invalid_parameter(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            set.join(", ")
        )));
    }
    blocking(ctx, move |s| {
        s.update_group(&name, |g| {
            g.retention_in_days = Some(days as u32);
            Ok(())
        })
    })
    .await?;
    Ok(Empty {})
}

pub async fn delete_retention_policy(
    ctx: &Ctx,
    req: w::DeleteRetentionPolicyRequest,
) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    blocking(ctx, move |s| {
        s.update_group(&name, |g| {
            g.retention_in_days = None;
            Ok(())
        })
    })
    .await?;
    Ok(Empty {})
}

fn arn_group(arn: Option<String>) -> Result<String, ApiError> {
    let arn = arn.unwrap_or_default();
    match group_of_arn(&arn) {
        Some(n) => group_name(Some(n.to_string()), "resourceArn"),
        None => Err(ApiError::invalid_parameter(format!(
            "The ARN '{arn}' is not a valid log group ARN."
        ))),
    }
}

async fn add_tags(
    ctx: &Ctx,
    name: String,
    tags: BTreeMap<String, String>,
    too_many: &'static str,
) -> Result<Empty, ApiError> {
    validate_tags(&tags)?;
    blocking(ctx, move |s| {
        s.update_group(&name, |g| {
            let mut merged = g.tags.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(LogError::Invalid(String::new()));
            }
            g.tags = merged;
            Ok(())
        })
    })
    .await
    .map_err(|e| {
        if e.code == "InvalidParameterException" && e.message.is_empty() {
            too_many_tags(too_many)
        } else {
            e
        }
    })?;
    Ok(Empty {})
}

async fn remove_tags(ctx: &Ctx, name: String, keys: Vec<String>) -> Result<Empty, ApiError> {
    blocking(ctx, move |s| {
        s.update_group(&name, |g| {
            for k in &keys {
                g.tags.remove(k);
            }
            Ok(())
        })
    })
    .await?;
    Ok(Empty {})
}

async fn tags_of(ctx: &Ctx, name: String) -> Result<TagsOut, ApiError> {
    let tags = blocking(ctx, move |s| Ok(s.group_settings(&name)?.tags)).await?;
    Ok(TagsOut { tags })
}

pub async fn tag_resource(ctx: &Ctx, req: w::TagResourceRequest) -> Result<Empty, ApiError> {
    let name = arn_group(req.resource_arn)?;
    add_tags(
        ctx,
        name,
        req.tags.unwrap_or_default(),
        "TooManyTagsException",
    )
    .await
}

pub async fn untag_resource(ctx: &Ctx, req: w::UntagResourceRequest) -> Result<Empty, ApiError> {
    let name = arn_group(req.resource_arn)?;
    remove_tags(ctx, name, req.tag_keys.unwrap_or_default()).await
}

pub async fn list_tags_for_resource(
    ctx: &Ctx,
    req: w::ListTagsForResourceRequest,
) -> Result<TagsOut, ApiError> {
    let name = arn_group(req.resource_arn)?;
    tags_of(ctx, name).await
}

pub async fn tag_log_group(ctx: &Ctx, req: w::TagLogGroupRequest) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    add_tags(
        ctx,
        name,
        req.tags.unwrap_or_default(),
        "InvalidParameterException",
    )
    .await
}

pub async fn untag_log_group(ctx: &Ctx, req: w::UntagLogGroupRequest) -> Result<Empty, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    remove_tags(ctx, name, req.tags.unwrap_or_default()).await
}

pub async fn list_tags_log_group(
    ctx: &Ctx,
    req: w::ListTagsLogGroupRequest,
) -> Result<TagsOut, ApiError> {
    let name = group_name(req.log_group_name, "logGroupName")?;
    tags_of(ctx, name).await
}
