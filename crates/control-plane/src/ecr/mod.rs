//! The ECR API (`AmazonEC2ContainerRegistry_V20150921.<Operation>`, signing name `ecr`): the
//! repository, image and layer operations of Amazon ECR over berth's built-in registry. The
//! registry's own HTTP face (the OCI distribution API that `docker push/pull` use) is
//! `crate::registry`; both share [`model`].

mod images;
mod layers;
pub mod lifecycle;
pub mod model;
mod repos;
pub mod token;

use crate::app::Ctx;
use crate::error::ApiError;
use crate::wire::{decode, encode};
use berth_ecs_api::ecr::Operation;

pub use berth_ecs_api::ecr::TARGET_PREFIX;

/// Largest request body accepted for ECR: UploadLayerPart carries a base64 layer part (berth
/// advertises 10 MiB parts).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

macro_rules! route {
    ($ctx:expr, $body:expr, $handler:path) => {{
        let req = decode_req($body)?;
        let out = $handler($ctx, req).await?;
        encode(&out)
    }};
}

/// Runs one ECR operation. `op` is the operation name from `X-Amz-Target`, already authorized.
pub async fn dispatch(ctx: &Ctx, op: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use Operation as O;
    let Some(op) = Operation::from_name(op) else {
        return Err(ApiError::unknown_operation(&format!(
            "{TARGET_PREFIX}.{op}"
        )));
    };
    match op {
        O::GetAuthorizationToken => route!(ctx, body, repos::get_authorization_token),
        O::DescribeRegistry => route!(ctx, body, repos::describe_registry),
        O::CreateRepository => route!(ctx, body, repos::create_repository),
        O::DescribeRepositories => route!(ctx, body, repos::describe_repositories),
        O::DeleteRepository => route!(ctx, body, repos::delete_repository),
        O::PutImageTagMutability => route!(ctx, body, repos::put_image_tag_mutability),
        O::PutImageScanningConfiguration => {
            route!(ctx, body, repos::put_image_scanning_configuration)
        }
        O::SetRepositoryPolicy => route!(ctx, body, repos::set_repository_policy),
        O::GetRepositoryPolicy => route!(ctx, body, repos::get_repository_policy),
        O::DeleteRepositoryPolicy => route!(ctx, body, repos::delete_repository_policy),
        O::PutLifecyclePolicy => route!(ctx, body, lifecycle::put_lifecycle_policy),
        O::GetLifecyclePolicy => route!(ctx, body, lifecycle::get_lifecycle_policy),
        O::DeleteLifecyclePolicy => route!(ctx, body, lifecycle::delete_lifecycle_policy),
        O::StartLifecyclePolicyPreview => {
            route!(ctx, body, lifecycle::start_lifecycle_policy_preview)
        }
        O::GetLifecyclePolicyPreview => route!(ctx, body, lifecycle::get_lifecycle_policy_preview),
        O::TagResource => route!(ctx, body, repos::tag_resource),
        O::UntagResource => route!(ctx, body, repos::untag_resource),
        O::ListTagsForResource => route!(ctx, body, repos::list_tags_for_resource),
        O::ListImages => route!(ctx, body, images::list_images),
        O::DescribeImages => route!(ctx, body, images::describe_images),
        O::BatchGetImage => route!(ctx, body, images::batch_get_image),
        O::BatchDeleteImage => route!(ctx, body, images::batch_delete_image),
        O::PutImage => route!(ctx, body, images::put_image),
        O::BatchCheckLayerAvailability => route!(ctx, body, layers::batch_check_layer_availability),
        O::InitiateLayerUpload => route!(ctx, body, layers::initiate_layer_upload),
        O::UploadLayerPart => route!(ctx, body, layers::upload_layer_part),
        O::CompleteLayerUpload => route!(ctx, body, layers::complete_layer_upload),
        O::GetDownloadUrlForLayer => route!(ctx, body, layers::get_download_url_for_layer),
        other => Err(ApiError::new(
            "ValidationException",
            format!(
                "{} is not supported by this berth server yet.",
                other.as_str()
            ),
        )),
    }
}

/// Is this operation implemented (the README's ECR table is checked against it)?
pub fn implemented(op: Operation) -> bool {
    use Operation as O;
    matches!(
        op,
        O::GetAuthorizationToken
            | O::DescribeRegistry
            | O::CreateRepository
            | O::DescribeRepositories
            | O::DeleteRepository
            | O::PutImageTagMutability
            | O::PutImageScanningConfiguration
            | O::SetRepositoryPolicy
            | O::GetRepositoryPolicy
            | O::DeleteRepositoryPolicy
            | O::PutLifecyclePolicy
            | O::GetLifecyclePolicy
            | O::DeleteLifecyclePolicy
            | O::StartLifecyclePolicyPreview
            | O::GetLifecyclePolicyPreview
            | O::TagResource
            | O::UntagResource
            | O::ListTagsForResource
            | O::ListImages
            | O::DescribeImages
            | O::BatchGetImage
            | O::BatchDeleteImage
            | O::PutImage
            | O::BatchCheckLayerAvailability
            | O::InitiateLayerUpload
            | O::UploadLayerPart
            | O::CompleteLayerUpload
            | O::GetDownloadUrlForLayer
    )
}

/// Decodes a request, reporting a missing required member the way ECR does.
fn decode_req<T: serde::de::DeserializeOwned + berth_ecs_api::Validate>(
    body: &[u8],
) -> Result<T, ApiError> {
    decode(body).map_err(|e| {
        if e.code == "ClientException" {
            let member = e
                .message
                .strip_suffix(" should not be null or empty.")
                .unwrap_or(&e.message)
                .to_string();
            ApiError::new(
                "ValidationException",
                format!(
                    "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
                ),
            )
        } else {
            e
        }
    })
}

/// The account id, which is the registry id.
pub(crate) fn registry_id(ctx: &Ctx) -> String {
    ctx.app.scope.account.clone()
}

pub(crate) fn repository_not_found(ctx: &Ctx, name: &str) -> ApiError {
    ApiError::new(
        "RepositoryNotFoundException",
        format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            registry_id(ctx)
        ),
    )
}

/// Validates a repository name argument (ECR's constraint message on failure).
pub(crate) fn repository_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.unwrap_or("");
    if name.len() < 2 || name.len() > 256 {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must have length {}'",
            if name.len() < 2 { "greater than or equal to 2" } else { "less than or equal to 256" }
        )));
    }
    if !berth_registry::names::valid_repository_name(name) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '{}''",
            berth_registry::names::REPOSITORY_NAME_PATTERN
        )));
    }
    Ok(name.to_string())
}

/// Reads an existing repository, or answers RepositoryNotFoundException.
pub(crate) async fn existing_repo(
    ctx: &Ctx,
    name: Option<&str>,
) -> Result<crate::repo::Versioned<model::RepositoryRecord>, ApiError> {
    let name = repository_name(name)?;
    model::get_repo(&ctx.app, &name)
        .await?
        .ok_or_else(|| repository_not_found(ctx, &name))
}

/// `maxResults` (0 = absent) within 1–1000.
pub(crate) fn max_results(n: i32, default: usize) -> Result<usize, ApiError> {
    match n {
        0 => Ok(default),
        1..=1000 => Ok(n as usize),
        _ => Err(ApiError::invalid_parameter(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'",
        )),
    }
}

/// Decodes a `nextToken` (ECR's wording for a bad one).
pub(crate) fn decode_token(t: Option<&str>) -> Result<Option<String>, ApiError> {
    crate::ecs::decode_token(t)
        .map_err(|_| ApiError::invalid_parameter("Invalid parameter at 'nextToken'"))
}

/// One page of `items` (sorted by key) after key `after`; the token for the next page.
pub(crate) fn paginate<T>(
    items: Vec<(String, T)>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    crate::ecs::paginate(items, after, limit, false)
}

/// The ARN of a repository.
pub(crate) fn repository_arn(ctx: &Ctx, name: &str) -> String {
    format!(
        "arn:{}:ecr:{}:{}:repository/{name}",
        ctx.app.scope.partition, ctx.app.scope.region, ctx.app.scope.account
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's ECR table tells the truth: every implemented operation has a supported or
    /// partial row, and no row claims an operation the dispatcher does not implement.
    #[test]
    fn readme_ecr_table_matches_the_dispatcher() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .unwrap_or_default();
        let section: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("### ECR (`AmazonEC2ContainerRegistry_V20150921`)"))
            .skip(1)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        assert!(!section.is_empty(), "README has no ECR table");
        for op in Operation::ALL {
            let row = section
                .iter()
                .find(|l| l.starts_with(&format!("| {} |", op.as_str())));
            let status = row.and_then(|r| r.split('|').nth(2)).map(str::trim);
            match status {
                Some("supported" | "partial") => {
                    assert!(implemented(*op), "README claims {}", op.as_str())
                }
                Some("not yet") | None => {
                    assert!(!implemented(*op), "README misses {}", op.as_str())
                }
                Some(other) => panic!("unknown status {other:?} for {}", op.as_str()),
            }
        }
    }
}
