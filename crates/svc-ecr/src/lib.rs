//! berth-svc-ecr: the ECR API (`AmazonEC2ContainerRegistry_V20150921.<Operation>`, signing name
//! `ecr`, awsJson1_1): the repository, image and layer operations of Amazon ECR over berth's
//! built-in registry, and the registry's own HTTP face, the OCI distribution API under `/v2`
//! that `docker push/pull` use ([`registry`], mounted by the edge as extra routes). Both share
//! [`model`].
//!
//! Owns: the registry's metadata in the state store (`ecr/…`), its blob store (the data dir's
//! `registry/`), and two background tasks: [`RegistryGc`] (every replica) and
//! [`LifecyclePolicies`] (leader only). Blobs other services keep in the blob store (S3 objects)
//! are protected from garbage collection through the [`BlobHolder`]s `berth-server` hands over.

mod images;
mod layers;
pub mod lifecycle;
pub mod model;
pub mod registry;
mod repos;
pub mod token;

use berth_core::Scope;
use berth_service::auth::KeyCache;
use berth_service::leader::Leader;
use berth_service::repo::Repo;
use berth_service::{ApiError, BlobHolder, Call, Descriptor, Protocol, Reply, Service};
use berth_wire::ecr::Operation;
use std::sync::Arc;

pub use berth_registry::{BlobStore, RegistryError};
pub use berth_wire::ecr::TARGET_PREFIX;
pub use lifecycle::LifecyclePolicies;
pub use model::RegistryGc;

/// The ECR service and the registry: their state.
pub struct Ecr {
    pub repo: Repo,
    pub scope: Scope,
    /// The image registry's blob store.
    pub registry: Arc<BlobStore>,
    /// The endpoint the server listens on (`http://<addr>`).
    pub endpoint: String,
    /// The image registry's address as clients see it (`--registry-host`,
    /// `[http[s]://]HOST[:PORT]`; the endpoint when not given): repositoryUri and proxyEndpoint
    /// start with it.
    pub registry_host: String,
    /// The access keys: registry tokens are MACed with the key's secret.
    pub keys: KeyCache,
    pub leader: Arc<Leader>,
    /// What else keeps blobs of `registry` alive (S3 objects); asked by garbage collection.
    pub holders: Vec<Arc<dyn BlobHolder>>,
}

/// What every ECR handler gets.
pub type Ctx = berth_service::Ctx<Ecr>;

impl Ecr {
    /// The state over an open blob store. `registry_host` is `--registry-host` as validated by
    /// `bin` (`None` or empty: the endpoint). No blob holders yet: see [`Ecr::with_holders`].
    pub fn new(
        repo: Repo,
        scope: Scope,
        registry: Arc<BlobStore>,
        keys: KeyCache,
        leader: Arc<Leader>,
        endpoint: String,
        registry_host: Option<String>,
    ) -> Self {
        let registry_host = registry_host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| endpoint.clone());
        Self {
            repo,
            scope,
            registry,
            endpoint,
            registry_host,
            keys,
            leader,
            holders: Vec::new(),
        }
    }

    /// As [`Ecr::new`], opening the blob store in `dir` (the data dir's `registry/`).
    pub fn open(
        dir: &std::path::Path,
        repo: Repo,
        scope: Scope,
        keys: KeyCache,
        leader: Arc<Leader>,
        endpoint: String,
        registry_host: Option<String>,
    ) -> Result<Self, RegistryError> {
        let registry = Arc::new(BlobStore::open(dir)?);
        Ok(Self::new(
            repo,
            scope,
            registry,
            keys,
            leader,
            endpoint,
            registry_host,
        ))
    }

    /// Adds what else keeps blobs alive (S3 objects), asked by every garbage collection.
    pub fn with_holders(mut self, holders: Vec<Arc<dyn BlobHolder>>) -> Self {
        self.holders.extend(holders);
        self
    }
}

static DESCRIPTOR: Descriptor = Descriptor {
    name: "ecr",
    signing_names: &["ecr"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[TARGET_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, op| Operation::from_name(op).is_some(),
};

/// The service as the edge sees it: the ECR API, and the `/v2` registry as extra routes.
pub struct EcrService(pub Arc<Ecr>);

#[async_trait::async_trait]
impl Service for EcrService {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        dispatch(&ctx, call.operation, &call.body)
            .await
            .map(Reply::Json)
    }

    fn extra_routes(&self) -> Option<axum::Router> {
        use axum::routing::any;
        Some(
            axum::Router::new()
                .route("/v2", any(registry::handle))
                .route("/v2/", any(registry::handle))
                .route("/v2/{*path}", any(registry::handle))
                .with_state(self.0.clone()),
        )
    }
}

/// Largest request body accepted for ECR: UploadLayerPart carries a base64 layer part (berth
/// advertises 10 MiB parts).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

macro_rules! route {
    ($ctx:expr, $body:expr, $handler:path) => {
        berth_service::route!(decode_req, $ctx, $body, $handler)
    };
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

/// How ECR words a request that does not fit its model.
const DIALECT: berth_service::codec::JsonDialect = berth_service::codec::JsonDialect {
    missing: berth_service::codec::Missing::Validation("ValidationException"),
    invalid_value_code: "ValidationException",
    enum_texts: &[],
};

/// Decodes a request in ECR's words.
fn decode_req<T: serde::de::DeserializeOwned + berth_wire::Validate>(
    body: &[u8],
) -> Result<T, ApiError> {
    berth_service::codec::decode_in(body, &DIALECT)
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
) -> Result<berth_service::repo::Versioned<model::RepositoryRecord>, ApiError> {
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
    berth_service::pagination::decode_token(t)
        .map_err(|_| ApiError::invalid_parameter("Invalid parameter at 'nextToken'"))
}

/// One page of `items` (sorted by key) after key `after`; the token for the next page.
pub(crate) fn paginate<T>(
    items: Vec<(String, T)>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    berth_service::pagination::paginate(items, after, limit, false)
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

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use berth_auth::Role;
    use berth_registry::Digest;
    use berth_service::auth::AccessKeyRecord;
    use berth_service::leader::Leadership;
    use berth_service::Principal;
    use berth_tasks::BackgroundTask;
    use tower::ServiceExt as _;

    const KEY: &str = "AKIDECRTEST";

    fn state(dir: &std::path::Path, registry_host: Option<String>) -> Ecr {
        let repo = Repo::new(Arc::new(berth_store::MemoryStore::new()));
        let keys = KeyCache::default();
        keys.insert(&AccessKeyRecord {
            access_key_id: KEY.into(),
            secret_access_key: "secret".into(),
            role: "admin".into(),
            created_at: 0.0,
            description: String::new(),
            session: None,
        });
        Ecr::open(
            dir,
            repo,
            Scope::new("us-east-1", "123456789012"),
            keys,
            Arc::new(Leader::default()),
            "http://127.0.0.1:9999".into(),
            registry_host,
        )
        .unwrap()
    }

    async fn call(svc: &EcrService, op: &str, body: serde_json::Value) -> serde_json::Value {
        let reply = svc
            .call(Call {
                principal: Principal {
                    access_key_id: KEY.into(),
                    role: Role::Admin,
                    arn: "arn:aws:iam::123456789012:root".into(),
                    temporary: false,
                },
                prefix: TARGET_PREFIX,
                operation: op,
                body: body.to_string().into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        match reply {
            Reply::Json(b) => serde_json::from_slice(&b).unwrap(),
            Reply::Response(_) => panic!("{op}: unexpected stream"),
        }
    }

    #[test]
    fn descriptor() {
        let d = &DESCRIPTOR;
        assert_eq!(d.name, "ecr");
        assert_eq!(d.signing_names, &["ecr"]);
        assert_eq!(d.protocol, Protocol::AwsJson1_1);
        assert_eq!(d.target_prefixes, &[TARGET_PREFIX]);
        assert_eq!(d.body_limit, MAX_BODY_BYTES);
        assert!((d.knows)(TARGET_PREFIX, "CreateRepository"));
        assert!(Operation::ALL
            .iter()
            .all(|o| (d.knows)(TARGET_PREFIX, o.as_str())));
        assert!(!(d.knows)(TARGET_PREFIX, "NoSuchOperation"));
    }

    #[tokio::test]
    async fn repository_uri_uses_the_registry_host_or_the_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let svc = EcrService(Arc::new(state(dir.path(), None)));
        let out = call(
            &svc,
            "CreateRepository",
            serde_json::json!({"repositoryName": "team/app"}),
        )
        .await;
        assert_eq!(
            out["repository"]["repositoryUri"],
            "127.0.0.1:9999/team/app"
        );
        let dir = tempfile::tempdir().unwrap();
        let svc = EcrService(Arc::new(state(
            dir.path(),
            Some("https://registry.example:5000".into()),
        )));
        let out = call(&svc, "GetAuthorizationToken", serde_json::json!({})).await;
        assert_eq!(
            out["authorizationData"][0]["proxyEndpoint"],
            "https://registry.example:5000"
        );
    }

    #[tokio::test]
    async fn extra_routes_serve_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let svc = EcrService(Arc::new(state(dir.path(), None)));
        let routes = svc.extra_routes().expect("the /v2 routes");
        let get = |auth: Option<String>| {
            let mut b = Request::builder().uri("/v2/");
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::empty()).unwrap()
        };
        let r = routes.clone().oneshot(get(None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            r.headers()["Docker-Distribution-API-Version"],
            "registry/2.0"
        );
        let out = call(&svc, "GetAuthorizationToken", serde_json::json!({})).await;
        let token = out["authorizationData"][0]["authorizationToken"]
            .as_str()
            .unwrap()
            .to_string();
        let r = routes
            .oneshot(get(Some(format!("Basic {token}"))))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    struct Holds(Result<Vec<String>, ApiError>);

    #[async_trait::async_trait]
    impl BlobHolder for Holds {
        async fn held_blobs(&self) -> Result<Vec<String>, ApiError> {
            self.0.clone()
        }
    }

    /// Makes every blob file older than the garbage collection's grace.
    fn age_blobs(root: &std::path::Path) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for shard in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
            for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                let f = std::fs::File::options()
                    .write(true)
                    .open(f.unwrap().path())
                    .unwrap();
                f.set_modified(old).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn garbage_collection_keeps_what_holders_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (b"held".as_slice(), b"garbage".as_slice());
        let (da, db) = (Digest::of(a), Digest::of(b));
        // A holder that fails stops the pass before anything is deleted.
        let ecr = Arc::new(
            state(dir.path(), None)
                .with_holders(vec![Arc::new(Holds(Err(ApiError::server("down"))))]),
        );
        ecr.registry
            .put_bytes("x", &da, a.to_vec().into())
            .await
            .unwrap();
        ecr.registry
            .put_bytes("x", &db, b.to_vec().into())
            .await
            .unwrap();
        age_blobs(dir.path());
        assert!(RegistryGc(ecr.clone()).activate().await.is_err());
        assert!(ecr.registry.stat(&db).await.unwrap().is_some());
        // Only what no holder (and no repository) keeps goes.
        let ecr = Arc::new(
            state(dir.path(), None).with_holders(vec![Arc::new(Holds(Ok(vec![da.to_string()])))]),
        );
        let status = RegistryGc(ecr.clone()).activate().await.unwrap();
        assert_eq!(status, "1 blobs (7 bytes) and 0 uploads removed");
        assert!(ecr.registry.stat(&da).await.unwrap().is_some());
        assert!(ecr.registry.stat(&db).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lifecycle_task_runs_on_the_leader_only() {
        let dir = tempfile::tempdir().unwrap();
        let ecr = Arc::new(state(dir.path(), None));
        let task = LifecyclePolicies(ecr.clone());
        assert_eq!(
            task.activate().await.unwrap(),
            "0 repositories with a policy, 0 images expired"
        );
        let (_tx, rx) = tokio::sync::watch::channel(Leadership::follower());
        ecr.leader.set(rx);
        assert_eq!(task.activate().await.unwrap(), "not leader; skipped");
    }
}
