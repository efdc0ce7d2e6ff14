//! The layer operations: ECR's JSON-API path for pushing and pulling blobs (what SDK-based
//! tools use; `docker` uses the `/v2/` API for the same storage).

use super::model::{self, blob_store, storage_error};
use super::{existing_repo, registry_id};
use crate::Ctx;
use base64::Engine;
use berth_registry::{Digest, RegistryError};
use berth_service::ApiError;
use berth_wire::ecr::*;

/// The part size berth advertises for UploadLayerPart.
pub const PART_SIZE: i64 = 10 * 1024 * 1024;

pub async fn batch_check_layer_availability(
    ctx: &Ctx,
    req: BatchCheckLayerAvailabilityRequest,
) -> Result<BatchCheckLayerAvailabilityResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let mut layers = Vec::new();
    let mut failures = Vec::new();
    for d in req.layer_digests.as_deref().unwrap_or_default() {
        let Ok(digest) = d.parse::<Digest>() else {
            failures.push(LayerFailure {
                layer_digest: Some(d.clone()),
                failure_code: Some(LayerFailureCode::InvalidLayerDigest),
                failure_reason: Some("Invalid layer digest".into()),
            });
            continue;
        };
        match model::confirm_blob(&ctx.app, &repo, &digest).await? {
            Some(size) => layers.push(Layer {
                layer_digest: Some(d.clone()),
                layer_availability: Some(LayerAvailability::Available),
                layer_size: size as i64,
                media_type: Some("application/vnd.docker.image.rootfs.diff.tar.gzip".into()),
            }),
            None => failures.push(LayerFailure {
                layer_digest: Some(d.clone()),
                failure_code: Some(LayerFailureCode::MissingLayerDigest),
                failure_reason: Some("Could not find layer with the given digest".into()),
            }),
        }
    }
    Ok(BatchCheckLayerAvailabilityResponse {
        layers: Some(layers),
        failures: Some(failures),
    })
}

pub async fn initiate_layer_upload(
    ctx: &Ctx,
    req: InitiateLayerUploadRequest,
) -> Result<InitiateLayerUploadResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let id = blob_store(&ctx.app)
        .start_upload(&repo)
        .await
        .map_err(storage_error)?;
    Ok(InitiateLayerUploadResponse {
        upload_id: Some(id),
        part_size: PART_SIZE,
    })
}

fn upload_not_found(ctx: &Ctx, repo: &str, id: &str) -> ApiError {
    ApiError::new(
        "UploadNotFoundException",
        format!(
            "The upload with id '{id}' could not be found in the repository with name '{repo}' in the registry with id '{}'",
            registry_id(ctx)
        ),
    )
}

pub async fn upload_layer_part(
    ctx: &Ctx,
    req: UploadLayerPartRequest,
) -> Result<UploadLayerPartResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let id = req.upload_id.clone().unwrap_or_default();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(req.layer_part_blob.as_deref().unwrap_or(""))
        .map_err(|_| {
            ApiError::invalid_parameter(
                "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Invalid base64'",
            )
        })?;
    let first = req.part_first_byte.unwrap_or(-1);
    let last = req.part_last_byte.unwrap_or(-1);
    if first < 0 || blob.is_empty() || last != first + blob.len() as i64 - 1 {
        return Err(ApiError::new(
            "InvalidLayerPartException",
            format!(
                "The layer part with first byte {first} and last byte {last} does not match the {} bytes sent",
                blob.len()
            ),
        ));
    }
    let store = blob_store(&ctx.app);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(blob))]);
    let st = store
        .append(&id, &repo, Some(first as u64), body)
        .await
        .map_err(|e| match e {
            RegistryError::UploadUnknown(_) => upload_not_found(ctx, &repo, &id),
            RegistryError::RangeInvalid { offset, start } => ApiError::new(
                "InvalidLayerPartException",
                format!(
                    "The layer part starting at byte {start} is not the next part: the upload has received {offset} bytes"
                ),
            ),
            other => storage_error(other),
        })?;
    Ok(UploadLayerPartResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(repo),
        upload_id: Some(id),
        last_byte_received: st.offset as i64 - 1,
    })
}

pub async fn complete_layer_upload(
    ctx: &Ctx,
    req: CompleteLayerUploadRequest,
) -> Result<CompleteLayerUploadResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let id = req.upload_id.clone().unwrap_or_default();
    let digests = req.layer_digests.clone().unwrap_or_default();
    let [d] = digests.as_slice() else {
        return Err(ApiError::invalid_parameter(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'Member must have length 1'",
        ));
    };
    let digest = d.parse::<Digest>().map_err(|_| {
        ApiError::new(
            "InvalidLayerException",
            format!("Invalid layer digest '{d}'"),
        )
    })?;
    let store = blob_store(&ctx.app);
    let st = store
        .upload_status(&id, &repo)
        .await
        .map_err(|_| upload_not_found(ctx, &repo, &id))?;
    if st.offset == 0 {
        let _ = store.cancel(&id, &repo).await;
        return Err(ApiError::new(
            "EmptyUploadException",
            format!("The upload with id '{id}' contains no layer parts"),
        ));
    }
    if model::blob_in_repo(&ctx.app, &repo, &digest)
        .await?
        .is_some()
    {
        let _ = store.cancel(&id, &repo).await;
        return Err(ApiError::new(
            "LayerAlreadyExistsException",
            format!(
                "Layer with digest '{digest}' already exists in the repository with name '{repo}' in registry with id '{}'",
                registry_id(ctx)
            ),
        ));
    }
    let size = store.finish(&id, &repo, &digest).await.map_err(|e| match e {
        RegistryError::DigestMismatch { .. } => ApiError::new(
            "InvalidLayerException",
            "The layer digest calculation performed by Amazon ECR upon receipt of the image layer does not match the digest specified",
        ),
        RegistryError::UploadUnknown(_) => upload_not_found(ctx, &repo, &id),
        other => storage_error(other),
    })?;
    model::link_blob(&ctx.app, &repo, &digest, size).await?;
    Ok(CompleteLayerUploadResponse {
        registry_id: Some(registry_id(ctx)),
        repository_name: Some(repo),
        upload_id: Some(id),
        layer_digest: Some(digest.to_string()),
    })
}

pub async fn get_download_url_for_layer(
    ctx: &Ctx,
    req: GetDownloadUrlForLayerRequest,
) -> Result<GetDownloadUrlForLayerResponse, ApiError> {
    let repo = existing_repo(ctx, req.repository_name.as_deref())
        .await?
        .value
        .name;
    let d = req.layer_digest.clone().unwrap_or_default();
    let not_found = || {
        ApiError::new(
            "LayersNotFoundException",
            format!(
                "The layer with digest '{d}' does not exist in the repository with name '{repo}' in the registry with id '{}'",
                registry_id(ctx)
            ),
        )
    };
    let digest = d.parse::<Digest>().map_err(|_| not_found())?;
    if model::blob_in_repo(&ctx.app, &repo, &digest)
        .await?
        .is_none()
    {
        return Err(not_found());
    }
    let (token, _) = super::token::issue(
        &ctx.app,
        &ctx.principal.access_key_id,
        super::token::DOWNLOAD_URL_TTL_SECS,
    )
    .ok_or_else(|| ApiError::server("cannot issue a token for this access key"))?;
    Ok(GetDownloadUrlForLayerResponse {
        download_url: Some(format!(
            "{}/v2/{repo}/blobs/{digest}?{}={token}",
            model::proxy_endpoint(&ctx.app),
            crate::registry::URL_TOKEN_PARAM
        )),
        layer_digest: Some(d),
    })
}
