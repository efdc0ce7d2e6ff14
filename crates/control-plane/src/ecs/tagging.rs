//! TagResource / UntagResource / ListTagsForResource, and the tag rules every taggable resource
//! shares (ECS: at most 50 user tags; key 1–128 and value 0–256 characters; the `aws:` prefix is
//! reserved and may be neither added nor removed).

use crate::app::Ctx;
use crate::error::ApiError;
use crate::records::{tags_to_wire, ClusterRecord, Tag, TaskDefinitionRecord};
use crate::repo::{contention, keys, to_bytes, MAX_ATTEMPTS};
use berth_core::arn::{Arn, ResourceKind, TaskDefinitionRef};
use berth_ecs_api::ecs;
use berth_store::{Compare, Txn};

pub const MAX_TAGS: usize = 50;

fn reserved(s: &str) -> bool {
    s.len() >= 4 && s[..4].eq_ignore_ascii_case("aws:")
}

/// Validates tags from a request (TagResource, Create*, Register*).
pub fn validate(tags: &[ecs::Tag]) -> Result<Vec<Tag>, ApiError> {
    let mut out: Vec<Tag> = Vec::with_capacity(tags.len());
    for t in tags {
        let key = t.key.clone().unwrap_or_default();
        let value = t.value.clone().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::invalid_parameter(
                "Tag keys must be between 1 and 128 characters.",
            ));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::invalid_parameter(
                "Tag values must be between 0 and 256 characters.",
            ));
        }
        if reserved(&key) || reserved(&value) {
            return Err(ApiError::invalid_parameter(
                "Tag keys and values that begin with 'aws:' are reserved for AWS use.",
            ));
        }
        match out.iter_mut().find(|x| x.key == key) {
            Some(existing) => existing.value = value,
            None => out.push(Tag { key, value }),
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "A resource can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(out)
}

/// Adds/overwrites `new` into `existing`, enforcing the per-resource limit.
pub fn merge(existing: &mut Vec<Tag>, new: Vec<Tag>) -> Result<(), ApiError> {
    for t in new {
        match existing.iter_mut().find(|x| x.key == t.key) {
            Some(e) => e.value = t.value,
            None => existing.push(t),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "A resource can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

/// Which record a resource ARN names.
enum Target {
    Cluster(String),
    TaskDefinition(String, u32),
}

fn target(arn: &str) -> Result<Target, ApiError> {
    let bad =
        || ApiError::invalid_parameter(format!("The ARN '{arn}' is not a valid resource ARN."));
    let parsed = Arn::parse(arn).ok_or_else(bad)?;
    match parsed.ecs_resource().ok_or_else(bad)? {
        (ResourceKind::Cluster, name) => {
            berth_core::names::cluster_name(name).map_err(|_| bad())?;
            Ok(Target::Cluster(name.to_string()))
        }
        (ResourceKind::TaskDefinition, _) => match TaskDefinitionRef::parse(arn) {
            Some(TaskDefinitionRef {
                family,
                revision: Some(rev),
            }) => Ok(Target::TaskDefinition(family, rev)),
            _ => Err(bad()),
        },
        // Tasks, services, container instances… become taggable as those resources land.
        _ => Err(ApiError::new(
            "ResourceNotFoundException",
            "The specified resource could not be found.",
        )),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        "ResourceNotFoundException",
        "The specified resource could not be found.",
    )
}

/// Applies `edit` to the tags of the resource named by `arn`, with optimistic retries.
async fn edit_tags(
    ctx: &Ctx,
    arn: &str,
    edit: impl Fn(&mut Vec<Tag>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let repo = &ctx.app.repo;
    let t = target(arn)?;
    for _ in 0..MAX_ATTEMPTS {
        let (key, rev, bytes) = match &t {
            Target::Cluster(name) => {
                let key = keys::cluster(name);
                let mut rec = match repo.get::<ClusterRecord>(&key).await? {
                    Some(r) if r.value.status == "ACTIVE" => r,
                    _ => return Err(ApiError::cluster_not_found()),
                };
                edit(&mut rec.value.tags)?;
                (key, rec.revision, to_bytes(&rec.value))
            }
            Target::TaskDefinition(family, revision) => {
                let key = keys::task_definition(family, *revision);
                let mut rec = repo
                    .get::<TaskDefinitionRecord>(&key)
                    .await?
                    .ok_or_else(not_found)?;
                edit(&mut rec.value.tags)?;
                (key, rec.revision, to_bytes(&rec.value))
            }
        };
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: key.clone(),
                revision: rev,
            })
            .put(key, bytes);
        if repo.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Err(contention())
}

pub async fn tag_resource(
    ctx: &Ctx,
    req: ecs::TagResourceRequest,
) -> Result<ecs::TagResourceResponse, ApiError> {
    let arn = req.resource_arn.unwrap_or_default();
    let new = validate(&req.tags.unwrap_or_default())?;
    edit_tags(ctx, &arn, |tags| merge(tags, new.clone())).await?;
    Ok(ecs::TagResourceResponse::default())
}

pub async fn untag_resource(
    ctx: &Ctx,
    req: ecs::UntagResourceRequest,
) -> Result<ecs::UntagResourceResponse, ApiError> {
    let arn = req.resource_arn.unwrap_or_default();
    let remove = req.tag_keys.unwrap_or_default();
    if remove.iter().any(|k| reserved(k)) {
        return Err(ApiError::invalid_parameter(
            "Tag keys that begin with 'aws:' are reserved for AWS use and cannot be removed.",
        ));
    }
    edit_tags(ctx, &arn, |tags| {
        tags.retain(|t| !remove.contains(&t.key));
        Ok(())
    })
    .await?;
    Ok(ecs::UntagResourceResponse::default())
}

pub async fn list_tags_for_resource(
    ctx: &Ctx,
    req: ecs::ListTagsForResourceRequest,
) -> Result<ecs::ListTagsForResourceResponse, ApiError> {
    let arn = req.resource_arn.unwrap_or_default();
    let repo = &ctx.app.repo;
    let tags = match target(&arn)? {
        Target::Cluster(name) => match repo.get::<ClusterRecord>(&keys::cluster(&name)).await? {
            Some(r) if r.value.status == "ACTIVE" => r.value.tags,
            _ => return Err(ApiError::cluster_not_found()),
        },
        Target::TaskDefinition(f, r) => {
            repo.get::<TaskDefinitionRecord>(&keys::task_definition(&f, r))
                .await?
                .ok_or_else(not_found)?
                .value
                .tags
        }
    };
    Ok(ecs::ListTagsForResourceResponse {
        tags: Some(tags_to_wire(&tags)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn t(k: &str, v: &str) -> ecs::Tag {
        ecs::Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }
    #[test]
    fn rules() {
        assert!(validate(&[t("a", "b")]).is_ok());
        assert!(validate(&[t("", "b")]).is_err());
        assert!(validate(&[t("aws:x", "b")]).is_err());
        assert!(validate(&[t("AWS:x", "b")]).is_err());
        assert!(validate(&[t("k", &"v".repeat(257))]).is_err());
        let many: Vec<_> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(validate(&many).is_err());
        let mut existing = validate(&many[..50]).unwrap();
        assert!(merge(
            &mut existing,
            vec![Tag {
                key: "k0".into(),
                value: "new".into()
            }]
        )
        .is_ok());
        assert_eq!(existing[0].value, "new");
        assert!(merge(
            &mut existing,
            vec![Tag {
                key: "extra".into(),
                value: "x".into()
            }]
        )
        .is_err());
    }
}
