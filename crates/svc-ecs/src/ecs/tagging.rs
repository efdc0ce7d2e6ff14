//! TagResource / UntagResource / ListTagsForResource, and the tag rules every taggable resource
//! shares (ECS: at most 50 user tags; key 1–128 and value 0–256 characters; the `aws:` prefix is
//! reserved and may be neither added nor removed).

use crate::keys;
use crate::records::{
    tags_to_wire, ClusterRecord, ClusterStatus, ContainerInstanceRecord, ServiceRecord, Tag,
    TaskDefinitionRecord, TaskRecord,
};
use crate::state::Ctx;
use berth_core::arn::{Arn, ResourceKind, TaskDefinitionRef};
use berth_service::repo::{Change, Record};
use berth_service::ApiError;
use berth_wire::ecs;

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

/// Which record a resource ARN names (its store key), and what kind it is.
enum Target {
    Cluster(String),
    TaskDefinition(String),
    ContainerInstance(String),
    Task(String),
    Service(String),
}

fn target(arn: &str) -> Result<Target, ApiError> {
    let bad =
        || ApiError::invalid_parameter(format!("The ARN '{arn}' is not a valid resource ARN."));
    let parsed = Arn::parse(arn).ok_or_else(bad)?;
    let (kind, rest) = parsed.ecs_resource().ok_or_else(bad)?;
    // Tasks, services and container instances: the long ARN format, `<kind>/<cluster>/<id>`.
    let in_cluster = || -> Result<(String, String), ApiError> {
        let (cluster, id) = rest.split_once('/').ok_or_else(not_found)?;
        berth_core::names::cluster_name(cluster).map_err(|_| bad())?;
        if id.is_empty() || id.contains('/') {
            return Err(bad());
        }
        Ok((cluster.to_string(), id.to_string()))
    };
    match kind {
        ResourceKind::Cluster => {
            berth_core::names::cluster_name(rest).map_err(|_| bad())?;
            Ok(Target::Cluster(keys::cluster(rest)))
        }
        ResourceKind::TaskDefinition => match TaskDefinitionRef::parse(arn) {
            Some(TaskDefinitionRef {
                family,
                revision: Some(rev),
            }) => Ok(Target::TaskDefinition(keys::task_definition(&family, rev))),
            _ => Err(bad()),
        },
        ResourceKind::ContainerInstance => {
            let (c, id) = in_cluster()?;
            Ok(Target::ContainerInstance(keys::instance(&c, &id)))
        }
        ResourceKind::Task => {
            let (c, id) = in_cluster()?;
            Ok(Target::Task(keys::task(&c, &id)))
        }
        ResourceKind::Service => {
            let (c, name) = in_cluster()?;
            Ok(Target::Service(keys::service(&c, &name)))
        }
        // Capacity providers and task sets: not in berth.
        _ => Err(not_found()),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        "ResourceNotFoundException",
        "The specified resource could not be found.",
    )
}

/// A record with user tags.
trait Tagged: Record + Clone + serde::Serialize {
    fn tags_mut(&mut self) -> &mut Vec<Tag>;
    /// Whether the resource can still be tagged (and listed).
    fn live(&self) -> bool {
        true
    }
}

impl Tagged for ClusterRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
    fn live(&self) -> bool {
        self.status == ClusterStatus::Active
    }
}
impl Tagged for TaskDefinitionRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for ContainerInstanceRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for TaskRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for ServiceRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}

fn missing(t: &Target) -> ApiError {
    match t {
        Target::Cluster(_) => ApiError::cluster_not_found(),
        _ => not_found(),
    }
}

/// Applies `edit` to the tags of the record at `key`, with optimistic retries.
async fn edit_one<T: Tagged>(
    ctx: &Ctx,
    t: &Target,
    key: &str,
    edit: &impl Fn(&mut Vec<Tag>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    ctx.app
        .repo
        .update::<T, _>(key, |cur| {
            let mut rec = match cur {
                Some(r) if r.live() => r,
                _ => return Err(missing(t)),
            };
            edit(rec.tags_mut())?;
            Ok(Change::Put(rec, ()))
        })
        .await
}

/// Applies `edit` to the tags of the resource named by `arn`, with optimistic retries.
async fn edit_tags(
    ctx: &Ctx,
    arn: &str,
    edit: impl Fn(&mut Vec<Tag>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let t = target(arn)?;
    match &t {
        Target::Cluster(k) => edit_one::<ClusterRecord>(ctx, &t, k, &edit).await,
        Target::TaskDefinition(k) => edit_one::<TaskDefinitionRecord>(ctx, &t, k, &edit).await,
        Target::ContainerInstance(k) => {
            edit_one::<ContainerInstanceRecord>(ctx, &t, k, &edit).await
        }
        Target::Task(k) => edit_one::<TaskRecord>(ctx, &t, k, &edit).await,
        Target::Service(k) => edit_one::<ServiceRecord>(ctx, &t, k, &edit).await,
    }
}

async fn tags_of<T: Tagged>(ctx: &Ctx, t: &Target, key: &str) -> Result<Vec<Tag>, ApiError> {
    match ctx.app.repo.get::<T>(key).await? {
        Some(mut r) if r.value.live() => Ok(std::mem::take(r.value.tags_mut())),
        _ => Err(missing(t)),
    }
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
    let t = target(&arn)?;
    let tags = match &t {
        Target::Cluster(k) => tags_of::<ClusterRecord>(ctx, &t, k).await?,
        Target::TaskDefinition(k) => tags_of::<TaskDefinitionRecord>(ctx, &t, k).await?,
        Target::ContainerInstance(k) => tags_of::<ContainerInstanceRecord>(ctx, &t, k).await?,
        Target::Task(k) => tags_of::<TaskRecord>(ctx, &t, k).await?,
        Target::Service(k) => tags_of::<ServiceRecord>(ctx, &t, k).await?,
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
