//! The registry's metadata in the state store, and the operations both front doors (the ECR JSON
//! API and the OCI distribution API under `/v2/`) share: storing a manifest under a tag,
//! untagging, deleting an image, linking blobs to repositories, garbage collection.
//!
//! Key layout (repository names contain `/` but never `|`, so `<name>|` prefixes are exact):
//! - `ecr/repos/<name>`: [`RepositoryRecord`];
//! - `ecr/images/<name>|<digest>`: [`ImageRecord`] (the manifest itself is inline: ≤ 4 MiB);
//! - `ecr/tags/<name>|<tag>`: [`TagRecord`];
//! - `ecr/links/<name>|<digest>`: [`LinkRecord`] — the blob is visible in this repository;
//! - `ecr/previews/<name>`: the last lifecycle policy preview (`super::lifecycle`).

use crate::Ecr;
use berth_registry::{manifest, BlobStore, Digest};
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_tasks::{BackgroundTask, Mode, TaskError, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Blobs younger than this are never garbage-collected (a push uploads its blobs before the
/// manifest that references them).
pub const GC_GRACE: Duration = Duration::from_secs(15 * 60);
/// Upload sessions untouched this long are abandoned.
pub const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

pub mod keys {
    pub const REPOS: &str = "ecr/repos/";
    pub const IMAGES: &str = "ecr/images/";
    pub const LINKS: &str = "ecr/links/";
    pub fn repo(name: &str) -> String {
        format!("{REPOS}{name}")
    }
    pub fn images_of(name: &str) -> String {
        format!("{IMAGES}{name}|")
    }
    pub fn image(name: &str, digest: &str) -> String {
        format!("{IMAGES}{name}|{digest}")
    }
    pub fn tags_of(name: &str) -> String {
        format!("ecr/tags/{name}|")
    }
    pub fn tag(name: &str, tag: &str) -> String {
        format!("ecr/tags/{name}|{tag}")
    }
    pub fn preview(name: &str) -> String {
        format!("ecr/previews/{name}")
    }
    pub fn links_of(name: &str) -> String {
        format!("{LINKS}{name}|")
    }
    pub fn link(name: &str, digest: &str) -> String {
        format!("{LINKS}{name}|{digest}")
    }
    /// `(repository, last part)` of a `…/<name>|<x>` key.
    pub fn split(key: &str, prefix: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(prefix)?;
        let (n, x) = rest.rsplit_once('|')?;
        Some((n.to_string(), x.to_string()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryRecord {
    pub name: String,
    pub created_at: f64,
    /// `MUTABLE` or `IMMUTABLE`.
    pub tag_mutability: String,
    pub scan_on_push: bool,
    pub encryption_type: String,
    #[serde(default)]
    pub kms_key: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Repository policy text, stored as given (not evaluated: berth's roles decide access).
    #[serde(default)]
    pub policy: Option<String>,
    /// Lifecycle policy text, stored as given (validated; applied by `super::lifecycle`).
    #[serde(default)]
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy was last applied (epoch seconds).
    #[serde(default)]
    pub lifecycle_evaluated_at: Option<f64>,
}

impl RepositoryRecord {
    pub fn immutable(&self) -> bool {
        self.tag_mutability == "IMMUTABLE"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub digest: String,
    pub media_type: String,
    #[serde(default)]
    pub artifact_media_type: Option<String>,
    /// The manifest exactly as pushed (its sha256 is `digest`).
    pub manifest: String,
    pub size: u64,
    pub pushed_at: f64,
    #[serde(default)]
    pub last_pull: Option<f64>,
    /// Config and layer digests (image manifests).
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Child manifest digests (indexes).
    #[serde(default)]
    pub children: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRecord {
    pub size: u64,
    /// When the blob was last linked or confirmed present for a push (epoch seconds).
    pub at: f64,
}

/// The server's blob store.
pub fn blob_store(app: &Ecr) -> Arc<BlobStore> {
    app.registry.clone()
}

/// The registry's address as configured (`--registry-host`, optionally with a scheme), or else
/// the endpoint the server listens on.
fn registry_address(app: &Ecr) -> &str {
    [app.registry_host.as_str(), app.endpoint.as_str()]
        .into_iter()
        .find(|a| !a.is_empty())
        .unwrap_or("http://localhost")
}

/// `host:port` of berth's registry (what repositoryUri starts with).
pub fn registry_host(app: &Ecr) -> String {
    let a = registry_address(app);
    a.split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(a)
        .trim_end_matches('/')
        .to_string()
}

/// ECR's `proxyEndpoint`: the registry host with its scheme (`http` unless configured).
pub fn proxy_endpoint(app: &Ecr) -> String {
    let a = registry_address(app);
    let scheme = a.split_once("://").map_or("http", |(s, _)| s);
    format!("{scheme}://{}", registry_host(app))
}

pub async fn get_repo(
    app: &Ecr,
    name: &str,
) -> Result<Option<Versioned<RepositoryRecord>>, ApiError> {
    app.repo.get(&keys::repo(name)).await
}

pub async fn get_image(
    app: &Ecr,
    repo: &str,
    digest: &str,
) -> Result<Option<Versioned<ImageRecord>>, ApiError> {
    app.repo.get(&keys::image(repo, digest)).await
}

pub async fn get_tag(
    app: &Ecr,
    repo: &str,
    tag: &str,
) -> Result<Option<Versioned<TagRecord>>, ApiError> {
    app.repo.get(&keys::tag(repo, tag)).await
}

/// Every tag of `repo` as (tag, digest), in tag order.
pub async fn tags_of(app: &Ecr, repo: &str) -> Result<Vec<(String, String)>, ApiError> {
    let prefix = keys::tags_of(repo);
    Ok(app
        .repo
        .list::<TagRecord>(&prefix)
        .await?
        .into_iter()
        .map(|v| (v.key[prefix.len()..].to_string(), v.value.digest))
        .collect())
}

/// Every image of `repo`, in digest order.
pub async fn images_of(app: &Ecr, repo: &str) -> Result<Vec<ImageRecord>, ApiError> {
    Ok(app
        .repo
        .list::<ImageRecord>(&keys::images_of(repo))
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

/// Is blob `d` visible in `repo` (linked, and present on disk)? Returns its size.
pub async fn blob_in_repo(app: &Ecr, repo: &str, d: &Digest) -> Result<Option<u64>, ApiError> {
    let digest = d.to_string();
    if app
        .repo
        .get::<LinkRecord>(&keys::link(repo, &digest))
        .await?
        .is_none()
    {
        return Ok(None);
    }
    blob_store(app).stat(d).await.map_err(storage_error)
}

/// Like [`blob_in_repo`], for a client about to reference the blob (a push that found it
/// present): refreshes the link and the file's age so garbage collection leaves it alone.
pub async fn confirm_blob(app: &Ecr, repo: &str, d: &Digest) -> Result<Option<u64>, ApiError> {
    let digest = d.to_string();
    let Some(link) = app
        .repo
        .get::<LinkRecord>(&keys::link(repo, &digest))
        .await?
    else {
        return Ok(None);
    };
    let store = blob_store(app);
    let Some(size) = store.stat(d).await.map_err(storage_error)? else {
        return Ok(None);
    };
    if now_epoch() - link.value.at > GC_GRACE.as_secs_f64() / 2.0 {
        link_blob(app, repo, d, size).await?;
        store.touch(d).await.map_err(storage_error)?;
    }
    Ok(Some(size))
}

/// Makes blob `d` visible in `repo`.
pub async fn link_blob(app: &Ecr, repo: &str, d: &Digest, size: u64) -> Result<(), ApiError> {
    let rec = LinkRecord {
        size,
        at: now_epoch(),
    };
    app.repo
        .commit(Txn::new().put(keys::link(repo, &d.to_string()), to_bytes(&rec)))
        .await?;
    Ok(())
}

/// Removes blob `d` from `repo` (the bytes go at the next garbage collection).
pub async fn unlink_blob(app: &Ecr, repo: &str, d: &Digest) -> Result<bool, ApiError> {
    let key = keys::link(repo, &d.to_string());
    if app.repo.get::<LinkRecord>(&key).await?.is_none() {
        return Ok(false);
    }
    app.repo.commit(Txn::new().delete(key)).await?;
    Ok(true)
}

pub fn storage_error(e: berth_registry::RegistryError) -> ApiError {
    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "registry storage failure");
    ApiError::server("The registry storage failed. Please retry the request.")
}

/// Why a manifest could not be stored.
#[derive(Debug)]
pub enum PutError {
    RepositoryNotFound,
    Invalid(String),
    /// Config/layer blobs not in the repository.
    BlobsUnknown(Vec<String>),
    /// Child manifests of an index not in the repository.
    ManifestsUnknown(Vec<String>),
    DigestMismatch {
        expected: String,
        actual: String,
    },
    TagImmutable,
    Api(ApiError),
}

impl From<ApiError> for PutError {
    fn from(e: ApiError) -> Self {
        PutError::Api(e)
    }
}

/// What storing a manifest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new image, or a tag moved to it.
    Stored,
    /// The image already existed with this tag (or, untagged, already existed): nothing changed.
    Unchanged,
}

/// Stores manifest `bytes` in `repo`, tagged `tag` if given. Every blob (and child manifest) it
/// references must already be in the repository. Moving a tag leaves the image it pointed to
/// untagged (ECR's behaviour); in an IMMUTABLE repository a tag can never move.
pub async fn put_manifest(
    app: &Ecr,
    repo: &str,
    bytes: &[u8],
    content_type: Option<&str>,
    tag: Option<&str>,
    expected: Option<&Digest>,
) -> Result<(ImageRecord, PutOutcome), PutError> {
    let parsed = manifest::parse(bytes, content_type).map_err(|e| match e {
        berth_registry::RegistryError::ManifestInvalid(m) => PutError::Invalid(m),
        other => PutError::Invalid(other.to_string()),
    })?;
    let digest = Digest::of(bytes);
    if let Some(exp) = expected {
        if exp != &digest {
            return Err(PutError::DigestMismatch {
                expected: exp.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| PutError::Invalid("manifest is not UTF-8".into()))?;
    let digest_s = digest.to_string();
    let mut missing = Vec::new();
    for b in parsed.blobs() {
        if confirm_blob(app, repo, &b.digest).await?.is_none()
            && !missing.contains(&b.digest.to_string())
        {
            missing.push(b.digest.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(PutError::BlobsUnknown(missing));
    }
    let mut missing = Vec::new();
    for m in &parsed.manifests {
        if get_image(app, repo, &m.digest.to_string()).await?.is_none() {
            missing.push(m.digest.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(PutError::ManifestsUnknown(missing));
    }
    let (rec, outcome) = app
        .repo
        .retry_as(|| async {
            let Some(r) = get_repo(app, repo).await? else {
                return Err(PutError::RepositoryNotFound);
            };
            let existing = get_image(app, repo, &digest_s).await?;
            let current_tag = match tag {
                Some(t) => get_tag(app, repo, t).await?,
                None => None,
            };
            let tag_here = current_tag
                .as_ref()
                .is_some_and(|t| t.value.digest == digest_s);
            if let Some(v) = &existing {
                if tag.is_none() || tag_here {
                    return Ok(Attempt::Done((v.value.clone(), PutOutcome::Unchanged)));
                }
            }
            if current_tag.is_some() && !tag_here && r.value.immutable() {
                return Err(PutError::TagImmutable);
            }
            let rec = match &existing {
                Some(v) => v.value.clone(),
                None => ImageRecord {
                    digest: digest_s.clone(),
                    media_type: parsed.media_type.clone(),
                    artifact_media_type: parsed.artifact_type.clone(),
                    manifest: text.clone(),
                    size: parsed.image_size(),
                    pushed_at: now_epoch(),
                    last_pull: None,
                    blobs: parsed.blobs().map(|d| d.digest.to_string()).collect(),
                    children: parsed
                        .manifests
                        .iter()
                        .map(|d| d.digest.to_string())
                        .collect(),
                    subject: parsed.subject.as_ref().map(|d| d.digest.to_string()),
                },
            };
            let image_key = keys::image(repo, &digest_s);
            let mut txn = Txn::new()
                .when(Compare::Exists {
                    key: keys::repo(repo),
                })
                .when(Compare::ModRevision {
                    key: image_key.clone(),
                    revision: existing.as_ref().map_or(0, |v| v.revision),
                });
            if existing.is_none() {
                txn = txn.put(image_key, to_bytes(&rec));
            }
            if let Some(t) = tag {
                let key = keys::tag(repo, t);
                txn = txn
                    .when(Compare::ModRevision {
                        key: key.clone(),
                        revision: current_tag.as_ref().map_or(0, |v| v.revision),
                    })
                    .put(
                        key,
                        to_bytes(&TagRecord {
                            digest: digest_s.clone(),
                        }),
                    );
            }
            Ok(Attempt::Commit(txn, (rec, PutOutcome::Stored)))
        })
        .await?;
    if outcome == PutOutcome::Stored {
        tracing::info!(repository = repo, digest = %digest_s, tag = tag.unwrap_or(""), "image stored");
    }
    Ok((rec, outcome))
}

/// Why an image could not be deleted.
#[derive(Debug)]
pub enum DeleteError {
    NotFound,
    /// An index in the repository lists this image.
    ReferencedByIndex,
    Api(ApiError),
}

impl From<ApiError> for DeleteError {
    fn from(e: ApiError) -> Self {
        DeleteError::Api(e)
    }
}

/// Is `digest` a child of another image (an index) in `repo`?
async fn referenced_by_index(app: &Ecr, repo: &str, digest: &str) -> Result<bool, ApiError> {
    Ok(images_of(app, repo)
        .await?
        .iter()
        .any(|i| i.children.iter().any(|c| c == digest)))
}

/// Deletes image `digest` and every tag pointing to it. Returns the tags removed.
pub async fn delete_image(app: &Ecr, repo: &str, digest: &str) -> Result<Vec<String>, DeleteError> {
    let prefix = keys::tags_of(repo);
    let tags = app
        .repo
        .retry_as(|| async {
            let Some(img) = get_image(app, repo, digest).await? else {
                return Err(DeleteError::NotFound);
            };
            if referenced_by_index(app, repo, digest).await? {
                return Err(DeleteError::ReferencedByIndex);
            }
            let tags: Vec<Versioned<TagRecord>> = app
                .repo
                .list::<TagRecord>(&prefix)
                .await?
                .into_iter()
                .filter(|t| t.value.digest == digest)
                .collect();
            let mut txn = Txn::new()
                .when(Compare::ModRevision {
                    key: img.key.clone(),
                    revision: img.revision,
                })
                .delete(img.key.clone());
            for t in &tags {
                txn = txn
                    .when(Compare::ModRevision {
                        key: t.key.clone(),
                        revision: t.revision,
                    })
                    .delete(t.key.clone());
            }
            Ok(Attempt::Commit(txn, tags))
        })
        .await?;
    tracing::info!(repository = repo, digest, "image deleted");
    Ok(tags
        .into_iter()
        .map(|t| t.key[prefix.len()..].to_string())
        .collect())
}

/// Removes tag `tag`; when it was the image's last tag the image is deleted too (ECR's
/// BatchDeleteImage), unless an index still references it. Returns the digest it pointed to.
pub async fn untag(app: &Ecr, repo: &str, tag: &str) -> Result<String, DeleteError> {
    let digest = app
        .repo
        .retry_as(|| async {
            let Some(t) = get_tag(app, repo, tag).await? else {
                return Err(DeleteError::NotFound);
            };
            let digest = t.value.digest.clone();
            let others = tags_of(app, repo)
                .await?
                .into_iter()
                .filter(|(n, d)| n != tag && *d == digest)
                .count();
            let mut txn = Txn::new()
                .when(Compare::ModRevision {
                    key: t.key.clone(),
                    revision: t.revision,
                })
                .delete(t.key.clone());
            if others == 0 && !referenced_by_index(app, repo, &digest).await? {
                if let Some(img) = get_image(app, repo, &digest).await? {
                    txn = txn
                        .when(Compare::ModRevision {
                            key: img.key.clone(),
                            revision: img.revision,
                        })
                        .delete(img.key);
                }
            }
            Ok(Attempt::Commit(txn, digest))
        })
        .await?;
    tracing::info!(repository = repo, tag, digest = %digest, "tag removed");
    Ok(digest)
}

/// Records a pull (ECR's `lastRecordedPullTime`), at most once a minute per image; best effort.
pub async fn record_pull(app: &Ecr, repo: &str, digest: &str) {
    let Ok(Some(img)) = get_image(app, repo, digest).await else {
        return;
    };
    let now = now_epoch();
    if img.value.last_pull.is_some_and(|t| now - t < 60.0) {
        return;
    }
    let mut rec = img.value;
    rec.last_pull = Some(now);
    let txn = Txn::new()
        .when(Compare::ModRevision {
            key: img.key.clone(),
            revision: img.revision,
        })
        .put(img.key, to_bytes(&rec));
    let _ = app.repo.commit(txn).await;
}

/// One garbage-collection pass: drops repository links to blobs no image of that repository
/// references (once older than [`GC_GRACE`]), then removes blob files no link keeps (same
/// grace) and abandoned uploads.
pub async fn collect_garbage(app: &Ecr) -> Result<berth_registry::GcReport, ApiError> {
    let store = blob_store(app);
    let mut referenced: HashMap<String, HashSet<String>> = HashMap::new();
    for img in app.repo.list::<ImageRecord>(keys::IMAGES).await? {
        if let Some((repo, _)) = keys::split(&img.key, keys::IMAGES) {
            referenced.entry(repo).or_default().extend(img.value.blobs);
        }
    }
    let now = now_epoch();
    let mut keep = HashSet::new();
    for link in app.repo.list::<LinkRecord>(keys::LINKS).await? {
        let Some((repo, digest)) = keys::split(&link.key, keys::LINKS) else {
            continue;
        };
        let used = referenced.get(&repo).is_some_and(|s| s.contains(&digest));
        if !used && now - link.value.at > GC_GRACE.as_secs_f64() {
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: link.key.clone(),
                    revision: link.revision,
                })
                .delete(link.key.clone());
            if app.repo.commit(txn).await?.is_some() {
                continue;
            }
        }
        if let Ok(d) = digest.parse::<Digest>() {
            keep.insert(d);
        }
    }
    // Other holders (S3 objects) keep their content blobs too.
    for h in &app.holders {
        for d in h.held_blobs().await? {
            if let Ok(d) = d.parse::<Digest>() {
                keep.insert(d);
            }
        }
    }
    let report = tokio::task::spawn_blocking(move || store.gc(&keep, GC_GRACE, UPLOAD_TTL))
        .await
        .map_err(|e| ApiError::server(format!("garbage collection task failed: {e}")))?
        .map_err(storage_error)?;
    if report.blobs_removed > 0 || report.uploads_removed > 0 {
        tracing::info!(
            blobs = report.blobs_removed,
            bytes = report.bytes_freed,
            uploads = report.uploads_removed,
            "registry garbage collected"
        );
    }
    Ok(report)
}

/// Runs [`collect_garbage`] in the background (after deletes).
pub fn spawn_gc(app: &Arc<Ecr>) {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        if let Some(app) = weak.upgrade() {
            if let Err(e) = collect_garbage(&app).await {
                tracing::warn!(error = %e, "registry garbage collection failed");
            }
        }
    });
}

/// The periodic garbage collection: [`collect_garbage`] every 10 minutes on every replica (each
/// has its own blob store), the first pass at start.
pub struct RegistryGc(pub Arc<Ecr>);

impl RegistryGc {
    /// The task's name in status and metrics.
    pub const NAME: &'static str = "registry_gc";
    /// How often it runs.
    pub const PERIOD: Duration = Duration::from_secs(600);

    /// How the driver schedules it: every [`Self::PERIOD`], every replica, first at once.
    pub fn spec() -> TaskSpec {
        TaskSpec::new(Self::NAME, Self::PERIOD, Mode::EveryReplica)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for RegistryGc {
    async fn activate(&self) -> Result<String, TaskError> {
        let r = collect_garbage(&self.0).await?;
        Ok(format!(
            "{} blobs ({} bytes) and {} uploads removed",
            r.blobs_removed, r.bytes_freed, r.uploads_removed
        ))
    }
}
