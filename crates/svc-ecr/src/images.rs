//! Image operations: list, describe, get, delete, and PutImage (tag a manifest without a push).

use super::model::{self, DeleteError, ImageRecord, PutError, PutOutcome};
use super::{existing_repo, registry_id};
use crate::Ctx;
use berth_registry::Digest;
use berth_service::ApiError;
use berth_wire::ecr::*;
use std::collections::BTreeMap;

fn image_not_found_in(ctx: &Ctx, repo: &str, id: &ImageIdentifier) -> ApiError {
    ApiError::new(
        "ImageNotFoundException",
        format!(
            "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repo}' in the registry with id '{}'",
            id.image_digest.as_deref().unwrap_or("null"),
            id.image_tag.as_deref().unwrap_or("null"),
            registry_id(ctx)
        ),
    )
}

fn failure(id: &ImageIdentifier, code: ImageFailureCode, reason: &str) -> ImageFailure {
    ImageFailure {
        image_id: Some(id.clone()),
        failure_code: Some(code),
        failure_reason: Some(reason.to_string()),
    }
}

/// Resolves an image id (tag and/or digest) to an image, or the ECR failure for it.
async fn resolve(
    ctx: &Ctx,
    repo: &str,
    id: &ImageIdentifier,
) -> Result<Result<ImageRecord, ImageFailure>, ApiError> {
    let tag = id.image_tag.as_deref().filter(|t| !t.is_empty());
    let digest = id.image_digest.as_deref().filter(|d| !d.is_empty());
    if tag.is_none() && digest.is_none() {
        return Ok(Err(failure(
            id,
            ImageFailureCode::MissingDigestAndTag,
            "Invalid request parameters: both tag and digest cannot be null",
        )));
    }
    if let Some(d) = digest {
        if d.parse::<Digest>().is_err() {
            return Ok(Err(failure(
                id,
                ImageFailureCode::InvalidImageDigest,
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
            )));
        }
    }
    if let Some(t) = tag {
        if !berth_registry::names::valid_tag(t) {
            return Ok(Err(failure(
                id,
                ImageFailureCode::InvalidImageTag,
                "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}'",
            )));
        }
    }
    let not_found = || {
        failure(
            id,
            ImageFailureCode::ImageNotFound,
            "Requested image not found",
        )
    };
    let by_tag = match tag {
        Some(t) => match model::get_tag(&ctx.app, repo, t).await? {
            Some(r) => Some(r.value.digest),
            None => return Ok(Err(not_found())),
        },
        None => None,
    };
    let want = match (by_tag, digest) {
        (Some(a), Some(b)) if a != b => {
            return Ok(Err(failure(
                id,
                ImageFailureCode::ImageTagDoesNotMatchDigest,
                "Invalid request parameters: given tag does not map to the given digest",
            )))
        }
        (Some(a), _) => a,
        (None, Some(b)) => b.to_string(),
        (None, None) => return Ok(Err(not_found())),
    };
    Ok(match model::get_image(&ctx.app, repo, &want).await? {
        Some(v) => Ok(v.value),
        None => Err(not_found()),
    })
}

/// Tags per digest.
async fn tags_by_digest(ctx: &Ctx, repo: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tag, digest) in model::tags_of(&ctx.app, repo).await? {
        m.entry(digest).or_default().push(tag);
    }
    Ok(m)
}

fn tag_status_wants(status: Option<TagStatus>, tagged: bool) -> bool {
    match status {
        None | Some(TagStatus::Any) => true,
        Some(TagStatus::Tagged) => tagged,
        Some(TagStatus::Untagged) => !tagged,
    }
}

pub async fn list_images(
    ctx: &Ctx,
    req: ListImagesRequest,
) -> Result<ListImagesResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let limit = super::max_results(req.max_results, 100)?;
    let after = super::decode_token(req.next_token.as_deref())?;
    let status = req.filter.as_ref().and_then(|f| f.tag_status);
    let tags = tags_by_digest(ctx, &repo).await?;
    let mut items = Vec::new();
    for img in model::images_of(&ctx.app, &repo).await? {
        match tags.get(&img.digest) {
            Some(ts) if tag_status_wants(status, true) => {
                for t in ts {
                    items.push((
                        format!("{}|{t}", img.digest),
                        ImageIdentifier {
                            image_digest: Some(img.digest.clone()),
                            image_tag: Some(t.clone()),
                        },
                    ));
                }
            }
            None if tag_status_wants(status, false) => items.push((
                format!("{}|", img.digest),
                ImageIdentifier {
                    image_digest: Some(img.digest.clone()),
                    image_tag: None,
                },
            )),
            _ => {}
        }
    }
    let (page, next) = super::paginate(items, after.as_deref(), limit);
    Ok(ListImagesResponse {
        image_ids: Some(page),
        next_token: next,
    })
}

fn detail(ctx: &Ctx, repo: &str, img: &ImageRecord, tags: Option<&Vec<String>>) -> ImageDetail {
    ImageDetail {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(repo.to_string()),
        image_digest: Some(img.digest.clone()),
        image_tags: tags.cloned(),
        image_size_in_bytes: img.size as i64,
        image_pushed_at: Some(img.pushed_at),
        image_manifest_media_type: Some(img.media_type.clone()),
        artifact_media_type: img.artifact_media_type.clone(),
        last_recorded_pull_time: img.last_pull,
        subject_manifest_digest: img.subject.clone(),
        image_status: Some(ImageStatus::Active),
        ..Default::default()
    }
}

pub async fn describe_images(
    ctx: &Ctx,
    req: DescribeImagesRequest,
) -> Result<DescribeImagesResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let tags = tags_by_digest(ctx, &repo).await?;
    if let Some(ids) = &req.image_ids {
        if req.next_token.is_some() || req.max_results != 0 {
            return Err(ApiError::invalid_parameter(
                "Invalid parameter: nextToken and maxResults cannot be used with imageIds",
            ));
        }
        let mut out: Vec<ImageDetail> = Vec::new();
        for id in ids {
            match resolve(ctx, &repo, id).await? {
                Ok(img) => {
                    if !out
                        .iter()
                        .any(|d| d.image_digest.as_deref() == Some(&img.digest))
                    {
                        out.push(detail(ctx, &repo, &img, tags.get(&img.digest)));
                    }
                }
                Err(f) => {
                    return Err(match f.failure_code {
                        Some(ImageFailureCode::ImageNotFound) => image_not_found_in(ctx, &repo, id),
                        _ => ApiError::invalid_parameter(f.failure_reason.unwrap_or_default()),
                    })
                }
            }
        }
        return Ok(DescribeImagesResponse {
            image_details: Some(out),
            next_token: None,
        });
    }
    let limit = super::max_results(req.max_results, 100)?;
    let after = super::decode_token(req.next_token.as_deref())?;
    let status = req.filter.as_ref().and_then(|f| f.tag_status);
    let items = model::images_of(&ctx.app, &repo)
        .await?
        .into_iter()
        .filter(|img| tag_status_wants(status, tags.contains_key(&img.digest)))
        .map(|img| {
            (
                img.digest.clone(),
                detail(ctx, &repo, &img, tags.get(&img.digest)),
            )
        })
        .collect();
    let (page, next) = super::paginate(items, after.as_deref(), limit);
    Ok(DescribeImagesResponse {
        image_details: Some(page),
        next_token: next,
    })
}

pub async fn batch_get_image(
    ctx: &Ctx,
    req: BatchGetImageRequest,
) -> Result<BatchGetImageResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for id in req.image_ids.as_deref().unwrap_or_default() {
        match resolve(ctx, &repo, id).await? {
            Ok(img) => {
                model::record_pull(&ctx.app, &repo, &img.digest).await;
                images.push(Image {
                    registry_id: Some(registry_id(ctx)),
                    repository_name: Some(repo.clone()),
                    image_id: Some(ImageIdentifier {
                        image_digest: Some(img.digest.clone()),
                        image_tag: id.image_tag.clone(),
                    }),
                    image_manifest: Some(img.manifest),
                    image_manifest_media_type: Some(img.media_type),
                })
            }
            Err(f) => failures.push(f),
        }
    }
    Ok(BatchGetImageResponse {
        images: Some(images),
        failures: Some(failures),
    })
}

pub async fn batch_delete_image(
    ctx: &Ctx,
    req: BatchDeleteImageRequest,
) -> Result<BatchDeleteImageResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for id in req.image_ids.as_deref().unwrap_or_default() {
        // Validate (and check the tag/digest pair) the same way BatchGetImage does.
        let img = match resolve(ctx, &repo, id).await? {
            Ok(img) => img,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        let tag = id.image_tag.as_deref().filter(|t| !t.is_empty());
        let result = match tag {
            Some(t) => model::untag(&ctx.app, &repo, t).await.map(|d| {
                vec![ImageIdentifier {
                    image_digest: Some(d),
                    image_tag: Some(t.to_string()),
                }]
            }),
            None => model::delete_image(&ctx.app, &repo, &img.digest)
                .await
                .map(|tags| {
                    if tags.is_empty() {
                        vec![ImageIdentifier {
                            image_digest: Some(img.digest.clone()),
                            image_tag: None,
                        }]
                    } else {
                        tags.into_iter()
                            .map(|t| ImageIdentifier {
                                image_digest: Some(img.digest.clone()),
                                image_tag: Some(t),
                            })
                            .collect()
                    }
                }),
        };
        match result {
            Ok(ids) => deleted.extend(ids),
            Err(DeleteError::NotFound) => failures.push(failure(
                id,
                ImageFailureCode::ImageNotFound,
                "Requested image not found",
            )),
            Err(DeleteError::ReferencedByIndex) => failures.push(failure(
                id,
                ImageFailureCode::ImageReferencedByManifestList,
                "Requested image is referenced by an image index or manifest list",
            )),
            Err(DeleteError::Api(e)) => return Err(e),
        }
    }
    if !deleted.is_empty() {
        model::spawn_gc(&ctx.app);
    }
    Ok(BatchDeleteImageResponse {
        image_ids: Some(deleted),
        failures: Some(failures),
    })
}

pub async fn put_image(ctx: &Ctx, req: PutImageRequest) -> Result<PutImageResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let manifest = req.image_manifest.clone().unwrap_or_default();
    let tag = req.image_tag.as_deref().filter(|t| !t.is_empty());
    if let Some(t) = tag {
        if !berth_registry::names::valid_tag(t) {
            return Err(ApiError::invalid_parameter(
                "Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}''",
            ));
        }
    }
    let expected = match req.image_digest.as_deref() {
        None | Some("") => None,
        Some(d) => Some(d.parse::<Digest>().map_err(|_| {
            ApiError::invalid_parameter(
                "Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Invalid digest'",
            )
        })?),
    };
    let acct = registry_id(ctx);
    let (img, outcome) = model::put_manifest(
        &ctx.app,
        &repo,
        manifest.as_bytes(),
        req.image_manifest_media_type.as_deref(),
        tag,
        expected.as_ref(),
    )
    .await
    .map_err(|e| match e {
        PutError::RepositoryNotFound => super::repository_not_found(ctx, &repo),
        PutError::Invalid(m) => ApiError::invalid_parameter(format!(
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{m}'"
        )),
        PutError::BlobsUnknown(ds) => ApiError::new(
            "LayersNotFoundException",
            format!(
                "Layers with digests '[{}]' required for pushing image into repository with name '{repo}' in the registry with id '{acct}' do not exist",
                ds.join(", ")
            ),
        ),
        PutError::ManifestsUnknown(ds) => ApiError::new(
            "ReferencedImagesNotFoundException",
            format!(
                "Some of the images referenced by the manifest list do not exist in the repository with name '{repo}': [{}]",
                ds.join(", ")
            ),
        ),
        PutError::DigestMismatch { .. } => ApiError::new(
            "ImageDigestDoesNotMatchException",
            "Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Provided digest does not match the digest of the image manifest'",
        ),
        PutError::TagImmutable => ApiError::new(
            "ImageTagAlreadyExistsException",
            format!(
                "The image tag '{}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable.",
                tag.unwrap_or("")
            ),
        ),
        PutError::Api(e) => e,
    })?;
    if outcome == PutOutcome::Unchanged {
        return Err(ApiError::new(
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{}' and tag '{}' already exists in the repository with name '{repo}' in registry with id '{acct}'",
                img.digest,
                tag.unwrap_or("null")
            ),
        ));
    }
    Ok(PutImageResponse {
        image: Some(Image {
            registry_id: Some(acct),
            repository_name: Some(repo),
            image_id: Some(ImageIdentifier {
                image_digest: Some(img.digest),
                image_tag: tag.map(str::to_string),
            }),
            image_manifest: Some(manifest),
            image_manifest_media_type: Some(img.media_type),
        }),
    })
}
