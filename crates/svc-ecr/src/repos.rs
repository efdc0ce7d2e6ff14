//! Registry and repository operations: authorization tokens, repositories, their settings,
//! repository policies (stored, not evaluated) and resource tags. Lifecycle policies are
//! `super::lifecycle`.

use super::model::{self, keys, RepositoryRecord};
use super::{existing_repo, registry_id, repository_arn, repository_name, repository_not_found};
use crate::Ctx;
use base64::Engine;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Change};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecr::*;
use std::collections::BTreeMap;

pub async fn get_authorization_token(
    ctx: &Ctx,
    _req: GetAuthorizationTokenRequest,
) -> Result<GetAuthorizationTokenResponse, ApiError> {
    let (token, exp) = super::token::issue(
        &ctx.app,
        &ctx.principal.access_key_id,
        super::token::TOKEN_TTL_SECS,
    )
    .ok_or_else(|| ApiError::server("cannot issue a token for this access key"))?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
    Ok(GetAuthorizationTokenResponse {
        authorization_data: Some(vec![AuthorizationData {
            authorization_token: Some(auth),
            expires_at: Some(exp as f64),
            proxy_endpoint: Some(model::proxy_endpoint(&ctx.app)),
        }]),
    })
}

pub async fn describe_registry(
    ctx: &Ctx,
    _req: DescribeRegistryRequest,
) -> Result<DescribeRegistryResponse, ApiError> {
    Ok(DescribeRegistryResponse {
        registry_id: Some(registry_id(ctx)),
        replication_configuration: Some(ReplicationConfiguration {
            rules: Some(Vec::new()),
        }),
    })
}

pub(crate) fn to_wire(ctx: &Ctx, r: &RepositoryRecord) -> Repository {
    Repository {
        repository_arn: Some(repository_arn(ctx, &r.name)),
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(r.name.clone()),
        repository_uri: Some(format!("{}/{}", model::registry_host(&ctx.app), r.name)),
        created_at: Some(r.created_at),
        image_tag_mutability: Some(if r.immutable() {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        }),
        image_tag_mutability_exclusion_filters: None,
        image_scanning_configuration: Some(ImageScanningConfiguration {
            scan_on_push: r.scan_on_push,
        }),
        encryption_configuration: Some(EncryptionConfiguration {
            encryption_type: Some(match r.encryption_type.as_str() {
                "KMS" => EncryptionType::Kms,
                "KMS_DSSE" => EncryptionType::KmsDsse,
                _ => EncryptionType::Aes256,
            }),
            kms_key: r.kms_key.clone(),
        }),
    }
}

fn mutability(m: Option<&ImageTagMutability>) -> Result<String, ApiError> {
    match m {
        None | Some(ImageTagMutability::Mutable) => Ok("MUTABLE".into()),
        Some(ImageTagMutability::Immutable) => Ok("IMMUTABLE".into()),
        Some(other) => Err(ApiError::invalid_parameter(format!(
            "imageTagMutability {} is not supported by berth (use MUTABLE or IMMUTABLE)",
            other.as_str()
        ))),
    }
}

fn check_tags(tags: &[Tag]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for t in tags {
        let k = t.key.clone().unwrap_or_default();
        let v = t.value.clone().unwrap_or_default();
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(ApiError::new(
                "InvalidTagParameterException",
                format!("Invalid parameter at 'tags' failed to satisfy constraint: tag key '{k}' or its value is invalid"),
            ));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn too_many_tags(n: usize) -> Result<(), ApiError> {
    if n > 50 {
        return Err(ApiError::new(
            "TooManyTagsException",
            "The list of tags on the repository is over the limit. The maximum number of tags that can be applied to a repository is 50",
        ));
    }
    Ok(())
}

pub async fn create_repository(
    ctx: &Ctx,
    req: CreateRepositoryRequest,
) -> Result<CreateRepositoryResponse, ApiError> {
    let name = repository_name(req.repository_name.as_deref())?;
    let tags = check_tags(req.tags.as_deref().unwrap_or_default())?;
    too_many_tags(tags.len())?;
    let (encryption_type, kms_key) = match &req.encryption_configuration {
        Some(e) => (
            e.encryption_type
                .map(|t| t.as_str().to_string())
                .unwrap_or_else(|| "AES256".into()),
            e.kms_key.clone(),
        ),
        None => ("AES256".into(), None),
    };
    let rec = RepositoryRecord {
        name: name.clone(),
        created_at: now_epoch(),
        tag_mutability: mutability(req.image_tag_mutability.as_ref())?,
        scan_on_push: req
            .image_scanning_configuration
            .as_ref()
            .is_some_and(|c| c.scan_on_push),
        encryption_type,
        kms_key,
        tags,
        policy: None,
        lifecycle_policy: None,
        lifecycle_evaluated_at: None,
    };
    let key = keys::repo(&name);
    // Leftovers of a repository deleted concurrently with a push are cleared here.
    let txn = Txn::new()
        .when(Compare::Absent { key: key.clone() })
        .put(key, to_bytes(&rec))
        .delete_prefix(keys::images_of(&name))
        .delete_prefix(keys::tags_of(&name))
        .delete_prefix(keys::links_of(&name))
        .delete(keys::preview(&name));
    if ctx.app.repo.commit(txn).await?.is_none() {
        return Err(ApiError::new(
            "RepositoryAlreadyExistsException",
            format!(
                "The repository with name '{name}' already exists in the registry with id '{}'",
                registry_id(ctx)
            ),
        ));
    }
    tracing::info!(repository = %name, "repository created");
    Ok(CreateRepositoryResponse {
        repository: Some(to_wire(ctx, &rec)),
    })
}

pub async fn describe_repositories(
    ctx: &Ctx,
    req: DescribeRepositoriesRequest,
) -> Result<DescribeRepositoriesResponse, ApiError> {
    if let Some(names) = &req.repository_names {
        if req.next_token.is_some() || req.max_results != 0 {
            return Err(ApiError::invalid_parameter(
                "Invalid parameter: nextToken and maxResults cannot be used with repositoryNames",
            ));
        }
        let mut out = Vec::new();
        for n in names {
            let r = existing_repo(ctx, Some(n)).await?;
            out.push(to_wire(ctx, &r.value));
        }
        return Ok(DescribeRepositoriesResponse {
            repositories: Some(out),
            next_token: None,
        });
    }
    let limit = super::max_results(req.max_results, 100)?;
    let after = super::decode_token(req.next_token.as_deref())?;
    let all = ctx.app.repo.list::<RepositoryRecord>(keys::REPOS).await?;
    let items = all
        .into_iter()
        .map(|v| (v.value.name.clone(), to_wire(ctx, &v.value)))
        .collect();
    let (page, next) = super::paginate(items, after.as_deref(), limit);
    Ok(DescribeRepositoriesResponse {
        repositories: Some(page),
        next_token: next,
    })
}

pub async fn delete_repository(
    ctx: &Ctx,
    req: DeleteRepositoryRequest,
) -> Result<DeleteRepositoryResponse, ApiError> {
    let (name, r) = ctx
        .app
        .repo
        .retry(|| async {
            let r = existing_repo(ctx, req.repository_name.as_deref()).await?;
            let name = r.value.name.clone();
            let images = ctx.app.repo.count(&keys::images_of(&name), Some(1)).await?;
            if images > 0 && !req.force {
                return Err(ApiError::new(
                    "RepositoryNotEmptyException",
                    format!(
                        "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                        registry_id(ctx)
                    ),
                ));
            }
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: r.key.clone(),
                    revision: r.revision,
                })
                .delete(r.key.clone())
                .delete_prefix(keys::images_of(&name))
                .delete_prefix(keys::tags_of(&name))
                .delete_prefix(keys::links_of(&name))
                .delete(keys::preview(&name));
            Ok(Attempt::Commit(txn, (name, r.value)))
        })
        .await?;
    tracing::info!(repository = %name, force = req.force, "repository deleted");
    model::spawn_gc(&ctx.app);
    Ok(DeleteRepositoryResponse {
        repository: Some(to_wire(ctx, &r)),
    })
}

/// Read-modify-write of a repository record.
async fn update_repo(
    ctx: &Ctx,
    name: Option<&str>,
    f: impl Fn(&mut RepositoryRecord) -> Result<(), ApiError>,
) -> Result<(RepositoryRecord, RepositoryRecord), ApiError> {
    let name = repository_name(name)?;
    ctx.app
        .repo
        .update::<RepositoryRecord, _>(&keys::repo(&name), |cur| {
            let before = cur.ok_or_else(|| repository_not_found(ctx, &name))?;
            let mut rec = before.clone();
            f(&mut rec)?;
            Ok(Change::Put(rec.clone(), (before, rec)))
        })
        .await
}

pub async fn put_image_tag_mutability(
    ctx: &Ctx,
    req: PutImageTagMutabilityRequest,
) -> Result<PutImageTagMutabilityResponse, ApiError> {
    let m = mutability(req.image_tag_mutability.as_ref())?;
    let (_, rec) = update_repo(ctx, req.repository_name.as_deref(), |r| {
        r.tag_mutability = m.clone();
        Ok(())
    })
    .await?;
    Ok(PutImageTagMutabilityResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(rec.name.clone()),
        image_tag_mutability: to_wire(ctx, &rec).image_tag_mutability,
        image_tag_mutability_exclusion_filters: None,
    })
}

pub async fn put_image_scanning_configuration(
    ctx: &Ctx,
    req: PutImageScanningConfigurationRequest,
) -> Result<PutImageScanningConfigurationResponse, ApiError> {
    let scan = req
        .image_scanning_configuration
        .as_ref()
        .is_some_and(|c| c.scan_on_push);
    let (_, rec) = update_repo(ctx, req.repository_name.as_deref(), |r| {
        r.scan_on_push = scan;
        Ok(())
    })
    .await?;
    Ok(PutImageScanningConfigurationResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(rec.name),
        image_scanning_configuration: Some(ImageScanningConfiguration { scan_on_push: scan }),
    })
}

fn check_policy_json(text: &str, member: &str) -> Result<(), ApiError> {
    if text.is_empty()
        || text.len() > 30720
        || serde_json::from_str::<serde_json::Value>(text).is_err()
    {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid parameter at '{member}' failed to satisfy constraint: 'Invalid JSON syntax'"
        )));
    }
    Ok(())
}

pub async fn set_repository_policy(
    ctx: &Ctx,
    req: SetRepositoryPolicyRequest,
) -> Result<SetRepositoryPolicyResponse, ApiError> {
    let text = req.policy_text.clone().unwrap_or_default();
    check_policy_json(&text, "PolicyText")?;
    let (_, rec) = update_repo(ctx, req.repository_name.as_deref(), |r| {
        r.policy = Some(text.clone());
        Ok(())
    })
    .await?;
    Ok(SetRepositoryPolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(rec.name),
        policy_text: rec.policy,
    })
}

fn policy_not_found(ctx: &Ctx, name: &str) -> ApiError {
    ApiError::new(
        "RepositoryPolicyNotFoundException",
        format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            registry_id(ctx)
        ),
    )
}

pub async fn get_repository_policy(
    ctx: &Ctx,
    req: GetRepositoryPolicyRequest,
) -> Result<GetRepositoryPolicyResponse, ApiError> {
    let r = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value;
    let Some(p) = r.policy else {
        return Err(policy_not_found(ctx, &r.name));
    };
    Ok(GetRepositoryPolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(r.name),
        policy_text: Some(p),
    })
}

pub async fn delete_repository_policy(
    ctx: &Ctx,
    req: DeleteRepositoryPolicyRequest,
) -> Result<DeleteRepositoryPolicyResponse, ApiError> {
    let name = repository_name(req.repository_name.as_deref())?;
    let (before, _) = update_repo(ctx, Some(&name), |r| {
        if r.policy.is_none() {
            return Err(policy_not_found(ctx, &r.name));
        }
        r.policy = None;
        Ok(())
    })
    .await?;
    Ok(DeleteRepositoryPolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(name),
        policy_text: before.policy,
    })
}

/// The repository named by a resource ARN.
fn repo_of_arn(ctx: &Ctx, arn: Option<&str>) -> Result<String, ApiError> {
    let arn = arn.unwrap_or("");
    let prefix = format!(
        "arn:{}:ecr:{}:{}:repository/",
        ctx.app.scope.partition, ctx.app.scope.region, ctx.app.scope.account
    );
    match arn.strip_prefix(&prefix) {
        Some(name) if berth_registry::names::valid_repository_name(name) => Ok(name.to_string()),
        Some(name) => Err(repository_not_found(ctx, name)),
        None => Err(ApiError::invalid_parameter(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {arn}'"
        ))),
    }
}

pub async fn tag_resource(
    ctx: &Ctx,
    req: TagResourceRequest,
) -> Result<TagResourceResponse, ApiError> {
    let name = repo_of_arn(ctx, req.resource_arn.as_deref())?;
    let add = check_tags(req.tags.as_deref().unwrap_or_default())?;
    update_repo(ctx, Some(&name), |r| {
        r.tags.extend(add.clone());
        too_many_tags(r.tags.len())
    })
    .await?;
    Ok(TagResourceResponse::default())
}

pub async fn untag_resource(
    ctx: &Ctx,
    req: UntagResourceRequest,
) -> Result<UntagResourceResponse, ApiError> {
    let name = repo_of_arn(ctx, req.resource_arn.as_deref())?;
    let remove = req.tag_keys.clone().unwrap_or_default();
    update_repo(ctx, Some(&name), |r| {
        for k in &remove {
            r.tags.remove(k);
        }
        Ok(())
    })
    .await?;
    Ok(UntagResourceResponse::default())
}

pub async fn list_tags_for_resource(
    ctx: &Ctx,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, ApiError> {
    let name = repo_of_arn(ctx, req.resource_arn.as_deref())?;
    let r = existing_repo(ctx, Some(&name)).await?.value;
    Ok(ListTagsForResourceResponse {
        tags: Some(
            r.tags
                .into_iter()
                .map(|(k, v)| Tag {
                    key: Some(k),
                    value: Some(v),
                })
                .collect(),
        ),
    })
}
