//! The argument helpers the ECS handlers share: cluster and container-instance identifiers,
//! `maxResults`, and pagination tokens.

use crate::keys;
use crate::records::{ClusterRecord, ClusterStatus};
use crate::state::Ctx;
use berth_service::repo::Versioned;
use berth_service::ApiError;

pub(crate) use berth_service::pagination::{decode_token, encode_token, paginate};

/// Resolves an optional `cluster` argument (name or ARN, default `default`) to a cluster name.
pub(crate) fn cluster_arg(arg: Option<&str>) -> Result<String, ApiError> {
    let arg = arg.unwrap_or("default");
    match berth_core::arn::cluster_name_of(arg) {
        Some(name) if berth_core::names::cluster_name(name).is_ok() => Ok(name.to_string()),
        Some(_) => Err(ApiError::cluster_not_found()),
        None => Err(ApiError::invalid_parameter(format!(
            "Invalid cluster identifier: {arg}"
        ))),
    }
}

/// Validates an optional `maxResults` against ECS's 1–100 range.
pub(crate) fn max_results(v: Option<i32>, default: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::invalid_parameter(
            "maxResults must be between 1 and 100.",
        )),
    }
}

/// The instance id of a `containerInstance` argument (id or ARN).
pub(crate) fn instance_id(arg: &str) -> Option<String> {
    if arg.starts_with("arn:") {
        match berth_core::Arn::parse(arg)?.ecs_resource()? {
            (berth_core::ResourceKind::ContainerInstance, rest) => {
                rest.rsplit('/').next().map(str::to_string)
            }
            _ => None,
        }
    } else if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some(arg.to_string())
    } else {
        None
    }
}

pub(crate) async fn active_cluster(
    ctx: &Ctx,
    name: &str,
) -> Result<Versioned<ClusterRecord>, ApiError> {
    match ctx
        .app
        .repo
        .get::<ClusterRecord>(&keys::cluster(name))
        .await?
    {
        Some(c) if c.value.status == ClusterStatus::Active => Ok(c),
        _ => Err(ApiError::cluster_not_found()),
    }
}
