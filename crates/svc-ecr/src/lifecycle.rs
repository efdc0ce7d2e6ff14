//! Lifecycle policies: Put/Get/DeleteLifecyclePolicy, Start/GetLifecyclePolicyPreview, and the
//! periodic pass that applies every repository's policy (leader only). The rules themselves are
//! `berth_registry::lifecycle` (pure).

use super::model::{self, keys, ImageRecord, RepositoryRecord};
use super::{existing_repo, registry_id, repository_name};
use crate::{Ctx, Ecr};
use berth_registry::lifecycle::{self, ImageFacts, Policy};
use berth_service::codec::now_epoch;
use berth_service::leader::as_leader;
use berth_service::repo::{to_bytes, Attempt, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_tasks::{BackgroundTask, Mode, TaskError, TaskSpec};
use berth_wire::ecr::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A stored preview (`ecr/previews/<name>`): what the policy would expire when it was started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewRecord {
    pub policy_text: String,
    pub results: Vec<PreviewItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewItem {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: f64,
    pub rule_priority: i64,
}

fn invalid_policy(e: lifecycle::PolicyError) -> ApiError {
    ApiError::invalid_parameter(format!(
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '{e}'"
    ))
}

/// Validates a policy text as PutLifecyclePolicy does.
fn parse_policy(text: &str) -> Result<Policy, ApiError> {
    if text.len() > 30720 {
        return Err(ApiError::invalid_parameter(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Member must have length less than or equal to 30720'",
        ));
    }
    lifecycle::parse(text).map_err(invalid_policy)
}

fn lifecycle_not_found(ctx: &Ctx, name: &str) -> ApiError {
    ApiError::new(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            registry_id(ctx)
        ),
    )
}

/// Read-modify-write of a repository record.
async fn update_repo(
    app: &Ecr,
    r: Option<Versioned<RepositoryRecord>>,
    name: &str,
    f: impl Fn(&mut RepositoryRecord) -> Result<(), ApiError>,
) -> Result<Option<(RepositoryRecord, RepositoryRecord)>, ApiError> {
    // The first attempt uses the record the caller read; later ones read it again.
    let mut current = r;
    app.repo
        .retry(|| {
            let first = current.take();
            async {
                let r = match first {
                    Some(r) => r,
                    None => match model::get_repo(app, name).await? {
                        Some(r) => r,
                        None => return Ok(Attempt::Done(None)),
                    },
                };
                let before = r.value.clone();
                let mut rec = r.value;
                f(&mut rec)?;
                let txn = Txn::new()
                    .when(Compare::ModRevision {
                        key: r.key.clone(),
                        revision: r.revision,
                    })
                    .put(r.key, to_bytes(&rec));
                Ok(Attempt::Commit(txn, Some((before, rec))))
            }
        })
        .await
}

pub async fn put_lifecycle_policy(
    ctx: &Ctx,
    req: PutLifecyclePolicyRequest,
) -> Result<PutLifecyclePolicyResponse, ApiError> {
    let text = req.lifecycle_policy_text.clone().unwrap_or_default();
    let r = existing_repo(ctx, req.repository_name.as_deref()).await?;
    parse_policy(&text)?;
    let name = r.value.name.clone();
    let (_, rec) = update_repo(&ctx.app, Some(r), &name, |r| {
        r.lifecycle_policy = Some(text.clone());
        Ok(())
    })
    .await?
    .ok_or_else(|| super::repository_not_found(ctx, &name))?;
    Ok(PutLifecyclePolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(rec.name),
        lifecycle_policy_text: rec.lifecycle_policy,
    })
}

pub async fn get_lifecycle_policy(
    ctx: &Ctx,
    req: GetLifecyclePolicyRequest,
) -> Result<GetLifecyclePolicyResponse, ApiError> {
    let r = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value;
    let Some(p) = r.lifecycle_policy else {
        return Err(lifecycle_not_found(ctx, &r.name));
    };
    Ok(GetLifecyclePolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(r.name),
        lifecycle_policy_text: Some(p),
        last_evaluated_at: r.lifecycle_evaluated_at,
    })
}

pub async fn delete_lifecycle_policy(
    ctx: &Ctx,
    req: DeleteLifecyclePolicyRequest,
) -> Result<DeleteLifecyclePolicyResponse, ApiError> {
    let name = repository_name(req.repository_name.as_deref())?;
    let r = existing_repo(ctx, Some(&name)).await?;
    let (before, _) = update_repo(&ctx.app, Some(r), &name, |r| {
        if r.lifecycle_policy.is_none() {
            return Err(lifecycle_not_found(ctx, &r.name));
        }
        r.lifecycle_policy = None;
        r.lifecycle_evaluated_at = None;
        Ok(())
    })
    .await?
    .ok_or_else(|| super::repository_not_found(ctx, &name))?;
    Ok(DeleteLifecyclePolicyResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(name),
        lifecycle_policy_text: before.lifecycle_policy,
        last_evaluated_at: before.lifecycle_evaluated_at,
    })
}

/// The images of `repo` with their tags, as lifecycle evaluation sees them.
async fn image_facts(app: &Ecr, repo: &str) -> Result<Vec<ImageFacts>, ApiError> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tag, digest) in model::tags_of(app, repo).await? {
        tags.entry(digest).or_default().push(tag);
    }
    let images: Vec<ImageRecord> = model::images_of(app, repo).await?;
    Ok(images
        .into_iter()
        .map(|i| ImageFacts {
            tags: tags.remove(&i.digest).unwrap_or_default(),
            digest: i.digest,
            pushed_at: i.pushed_at,
        })
        .collect())
}

/// What `policy` expires in `repo` now, with each image's tags and push time.
async fn evaluate(app: &Ecr, repo: &str, policy: &Policy) -> Result<Vec<PreviewItem>, ApiError> {
    let facts = image_facts(app, repo).await?;
    let expiries = lifecycle::evaluate(policy, &facts, now_epoch());
    Ok(expiries
        .into_iter()
        .filter_map(|e| {
            let f = facts.iter().find(|f| f.digest == e.digest)?;
            Some(PreviewItem {
                digest: e.digest,
                tags: f.tags.clone(),
                pushed_at: f.pushed_at,
                rule_priority: e.rule_priority,
            })
        })
        .collect())
}

pub async fn start_lifecycle_policy_preview(
    ctx: &Ctx,
    req: StartLifecyclePolicyPreviewRequest,
) -> Result<StartLifecyclePolicyPreviewResponse, ApiError> {
    let r = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value;
    let text = match req.lifecycle_policy_text.clone() {
        Some(t) => t,
        None => r
            .lifecycle_policy
            .clone()
            .ok_or_else(|| lifecycle_not_found(ctx, &r.name))?,
    };
    let policy = parse_policy(&text)?;
    let results = evaluate(&ctx.app, &r.name, &policy).await?;
    let rec = PreviewRecord {
        policy_text: text.clone(),
        results,
    };
    // The preview is computed at once, so it is complete when this call returns.
    ctx.app
        .repo
        .commit(
            Txn::new()
                .when(Compare::Exists {
                    key: keys::repo(&r.name),
                })
                .put(keys::preview(&r.name), to_bytes(&rec)),
        )
        .await?
        .ok_or_else(|| super::repository_not_found(ctx, &r.name))?;
    Ok(StartLifecyclePolicyPreviewResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(r.name),
        lifecycle_policy_text: Some(text),
        status: Some(LifecyclePolicyPreviewStatus::Complete),
    })
}

pub async fn get_lifecycle_policy_preview(
    ctx: &Ctx,
    req: GetLifecyclePolicyPreviewRequest,
) -> Result<GetLifecyclePolicyPreviewResponse, ApiError> {
    let r = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value;
    if req.image_ids.is_some() && (req.next_token.is_some() || req.max_results != 0) {
        return Err(ApiError::invalid_parameter(
            "Invalid parameter: nextToken and maxResults cannot be used with imageIds",
        ));
    }
    let limit = match req.max_results {
        0 => 100,
        n @ 1..=100 => n as usize,
        _ => {
            return Err(ApiError::invalid_parameter(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 100'",
            ))
        }
    };
    let after = super::decode_token(req.next_token.as_deref())?;
    let Some(p) = ctx
        .app
        .repo
        .get::<PreviewRecord>(&keys::preview(&r.name))
        .await?
    else {
        return Err(ApiError::new(
            "LifecyclePolicyPreviewNotFoundException",
            format!(
                "There is no lifecycle policy preview for the repository with name '{}' in the registry with id '{}'",
                r.name,
                registry_id(ctx)
            ),
        ));
    };
    let p = p.value;
    let total = p.results.len();
    let wanted = |i: &PreviewItem| {
        let tag_ok = match req.filter.as_ref().and_then(|f| f.tag_status) {
            Some(TagStatus::Tagged) => !i.tags.is_empty(),
            Some(TagStatus::Untagged) => i.tags.is_empty(),
            _ => true,
        };
        let id_ok = req.image_ids.as_ref().is_none_or(|ids| {
            ids.iter().any(|id| {
                id.image_digest.as_deref().is_none_or(|d| d == i.digest)
                    && id
                        .image_tag
                        .as_deref()
                        .is_none_or(|t| i.tags.iter().any(|x| x == t))
                    && (id.image_digest.is_some() || id.image_tag.is_some())
            })
        });
        tag_ok && id_ok
    };
    let items: Vec<(String, LifecyclePolicyPreviewResult)> = p
        .results
        .iter()
        .enumerate()
        .filter(|(_, i)| wanted(i))
        .map(|(n, i)| {
            (
                format!("{n:010}"),
                LifecyclePolicyPreviewResult {
                    image_tags: Some(i.tags.clone()),
                    image_digest: Some(i.digest.clone()),
                    image_pushed_at: Some(i.pushed_at),
                    action: Some(LifecyclePolicyRuleAction {
                        type_: Some(ImageActionType::Expire),
                        target_storage_class: None,
                    }),
                    applied_rule_priority: i32::try_from(i.rule_priority).unwrap_or(i32::MAX),
                    storage_class: Some(LifecyclePolicyStorageClass::Standard),
                },
            )
        })
        .collect();
    let (page, next) = if req.image_ids.is_some() {
        (items.into_iter().map(|(_, v)| v).collect(), None)
    } else {
        super::paginate(items, after.as_deref(), limit)
    };
    Ok(GetLifecyclePolicyPreviewResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(r.name),
        lifecycle_policy_text: Some(p.policy_text),
        status: Some(LifecyclePolicyPreviewStatus::Complete),
        next_token: next,
        preview_results: Some(page),
        summary: Some(LifecyclePolicyPreviewSummary {
            expiring_image_total_count: i32::try_from(total).unwrap_or(i32::MAX),
            transitioning_image_total_counts: None,
        }),
    })
}

/// What one lifecycle pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleReport {
    pub repositories: usize,
    pub images_expired: usize,
}

/// Applies every repository's lifecycle policy once: expires (deletes) the images it selects and
/// records `lastEvaluatedAt`. Images an index still references are left for a later pass.
pub async fn apply_policies(app: &Arc<Ecr>) -> Result<LifecycleReport, ApiError> {
    let mut report = LifecycleReport::default();
    for r in app.repo.list::<RepositoryRecord>(keys::REPOS).await? {
        let Some(text) = r.value.lifecycle_policy.clone() else {
            continue;
        };
        let name = r.value.name.clone();
        let policy = match lifecycle::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(repository = %name, error = %e, "stored lifecycle policy is invalid; skipped");
                continue;
            }
        };
        report.repositories += 1;
        for item in evaluate(app, &name, &policy).await? {
            match model::delete_image(app, &name, &item.digest).await {
                Ok(tags) => {
                    report.images_expired += 1;
                    tracing::info!(repository = %name, digest = %item.digest, tags = ?tags, rule = item.rule_priority, "image expired by lifecycle policy");
                }
                Err(model::DeleteError::NotFound) => {}
                Err(model::DeleteError::ReferencedByIndex) => {
                    tracing::info!(repository = %name, digest = %item.digest, "lifecycle: image still referenced by an index; kept");
                }
                Err(model::DeleteError::Api(e)) => return Err(e),
            }
        }
        let now = now_epoch();
        update_repo(app, None, &name, |r| {
            if r.lifecycle_policy.as_deref() == Some(text.as_str()) {
                r.lifecycle_evaluated_at = Some(now);
            }
            Ok(())
        })
        .await?;
    }
    if report.images_expired > 0 {
        model::spawn_gc(app);
    }
    Ok(report)
}

/// The periodic pass: [`apply_policies`] every `--ecr-lifecycle-interval`, on the leader only
/// (its deletes fenced), the first pass one period after start.
pub struct LifecyclePolicies(pub Arc<Ecr>);

impl LifecyclePolicies {
    /// The task's name in status and metrics.
    pub const NAME: &'static str = "ecr_lifecycle";

    /// How the driver schedules it: every `every`, leader only, first after one period.
    pub fn spec(every: Duration) -> TaskSpec {
        TaskSpec::new(Self::NAME, every, Mode::LeaderOnly).initial_delay(every)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for LifecyclePolicies {
    async fn activate(&self) -> Result<String, TaskError> {
        let Some(result) = as_leader(&self.0.leader, apply_policies(&self.0)).await else {
            return Ok("not leader; skipped".into());
        };
        let r = result?;
        if r.images_expired > 0 {
            tracing::info!(
                repositories = r.repositories,
                expired = r.images_expired,
                "lifecycle policies applied"
            );
        }
        Ok(format!(
            "{} repositories with a policy, {} images expired",
            r.repositories, r.images_expired
        ))
    }
}
