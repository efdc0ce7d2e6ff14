//! berth-server: assembles the control plane. Builds every service with exactly what it needs
//! (plain structs, narrow traits — a service never gets another's internals), registers each
//! with the edge (one line per service) and their background tasks with the driver, then serves.
//! Used by `berth server`/`berth up` and by the in-process end-to-end tests.
//!
//! Adding a service: build its state here from the shared parts, `edge.register(...)` its
//! `Service`, and register its background tasks with `driver`.

use berth_core::Scope;
use berth_edge::{Edge, EdgeConfig};
use berth_service::auth::KeyCache;
use berth_service::leader::{Leader, Leadership};
use berth_service::metrics::Metrics;
use berth_service::repo::Repo;
use berth_service::BlobHolder;
use berth_store::{CachedStore, StateStore};
use berth_svc_admin::{Admin, AdminService};
use berth_svc_ecr::{Ecr, EcrService};
use berth_svc_ecs::task_credentials::TaskRoleAccess;
use berth_svc_ecs::{Ecs, EcsConfig, EcsService};
use berth_svc_logs::{Logs, LogsService};
use berth_svc_s3::{S3Service, S3};
use berth_svc_secrets::{Secrets, SecretsManagerService, SsmService};
use berth_tasks::{Driver, Mode, TaskSpec};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything the control plane is built from.
pub struct ControlPlaneConfig {
    /// The backend store (SQLite, memory, etcd); the control plane reads through a watch cache.
    pub store: Arc<dyn StateStore>,
    pub scope: Scope,
    /// Where the log store (`logs/`) and the registry's blobs (`registry/`) live.
    pub data_dir: PathBuf,
    /// The endpoint as agents and clients reach it (`http://HOST:PORT`).
    pub endpoint: String,
    /// `--registry-host` (validated); `None`: the endpoint.
    pub registry_host: Option<String>,
    pub task_roles: TaskRoleAccess,
    pub allow_reset: bool,
    pub ecr_lifecycle_interval: Duration,
    /// Leader election's signal (etcd); `None`: a single-node store, always the leader.
    pub leadership: Option<tokio::sync::watch::Receiver<Leadership>>,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("loading state: {0}")]
    State(#[from] berth_service::ApiError),
    #[error("opening the log store: {0}")]
    Logs(#[from] berth_logs::LogError),
    #[error("opening the image registry: {0}")]
    Registry(#[from] berth_registry::RegistryError),
    #[error("registering background tasks: {0}")]
    Tasks(#[from] berth_tasks::RegisterError),
}

/// The assembled control plane: the edge, the services' states (for `bin`'s bootstrap and the
/// tests), and the background-task driver, started by [`ControlPlane::serve`].
pub struct ControlPlane {
    pub edge: Arc<Edge>,
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub keys: KeyCache,
    pub leader: Arc<Leader>,
    pub metrics: Arc<Metrics>,
    pub ecs: Arc<Ecs>,
    pub admin: Arc<Admin>,
    pub logs: Arc<Logs>,
    pub ecr: Arc<Ecr>,
    pub s3: Arc<S3>,
    pub secrets: Arc<Secrets>,
    driver: Driver,
}

impl ControlPlane {
    pub async fn build(cfg: ControlPlaneConfig) -> Result<Self, BuildError> {
        // Every read is served by the watch cache (see berth_store::cache); writes pass through.
        // It indexes what ECS's hot paths look up.
        let cache = CachedStore::start_indexed(cfg.store, berth_svc_ecs::indexes::all());
        if !cache.ready().await.map_err(berth_service::ApiError::from)? {
            tracing::warn!("watch cache not ready yet: reads go to the store until it is");
        }
        let store: Arc<dyn StateStore> = Arc::new(cache.clone());
        let repo = Repo::cached(cache);
        let keys = KeyCache::default();
        keys.reload(&repo).await?;
        let leader = Arc::new(Leader::default());
        let mut driver = {
            let leader = leader.clone();
            Driver::new(move || leader.is_leader())
        };
        if let Some(rx) = cfg.leadership {
            leader.set(rx.clone());
            driver = driver.leader_changes(rx);
        }
        let metrics = cfg.metrics;
        let scope = cfg.scope;
        let closing = tokio_util::sync::CancellationToken::new();

        let mut edge = Edge::new(EdgeConfig {
            store: store.clone(),
            repo: repo.clone(),
            keys: keys.clone(),
            scope: scope.clone(),
            metrics: metrics.clone(),
            leader: leader.clone(),
            allow_reset: cfg.allow_reset,
            closing: closing.clone(),
        });

        let ecs = Ecs::new(
            EcsConfig {
                store: store.clone(),
                repo: repo.clone(),
                scope: scope.clone(),
                keys: keys.clone(),
                endpoint: cfg.endpoint.clone(),
                metrics: metrics.clone(),
                leader: leader.clone(),
                task_roles: cfg.task_roles,
            },
            &mut driver,
        );
        let logs = Logs::open(&cfg.data_dir.join("logs"), scope.clone(), closing)?;
        let blobs = Arc::new(berth_registry::BlobStore::open(
            &cfg.data_dir.join("registry"),
        )?);
        let s3 = S3::new(
            repo.clone(),
            scope.clone(),
            blobs.clone(),
            edge.authenticator(),
            metrics.clone(),
        );
        let ecr = Arc::new(
            Ecr::new(
                repo.clone(),
                scope.clone(),
                blobs,
                keys.clone(),
                leader.clone(),
                cfg.endpoint,
                cfg.registry_host,
            )
            .with_holders(vec![s3.clone() as Arc<dyn BlobHolder>]),
        );
        let secrets = Secrets::new(repo.clone(), scope.clone(), leader.clone());
        let admin = Arc::new(Admin {
            repo: repo.clone(),
            scope,
            keys: keys.clone(),
            ecs: Arc::new(berth_svc_ecs::EcsAdmin(ecs.clone())),
            tasks: driver.monitor(),
        });

        edge.register(Arc::new(EcsService(ecs.clone())));
        edge.register(Arc::new(LogsService(logs.clone())));
        edge.register(Arc::new(EcrService(ecr.clone())));
        edge.register(Arc::new(SecretsManagerService(secrets.clone())));
        edge.register(Arc::new(SsmService(secrets.clone())));
        edge.register(Arc::new(S3Service(s3.clone())));
        edge.register(Arc::new(AdminService(admin.clone())));

        driver.register(
            berth_svc_ecr::model::RegistryGc::spec(),
            berth_svc_ecr::model::RegistryGc(ecr.clone()),
        )?;
        driver.register(
            berth_svc_ecr::lifecycle::LifecyclePolicies::spec(cfg.ecr_lifecycle_interval),
            berth_svc_ecr::lifecycle::LifecyclePolicies(ecr.clone()),
        )?;
        driver.register(
            TaskSpec::new(
                "secrets_purge",
                berth_svc_secrets::PURGE_PERIOD,
                Mode::LeaderOnly,
            )
            .initial_delay(berth_svc_secrets::PURGE_PERIOD),
            berth_svc_secrets::PurgeDeletedSecrets(secrets.clone()),
        )?;
        metrics.register_collector(Box::new(driver.monitor()));

        Ok(Self {
            edge: Arc::new(edge),
            store,
            repo,
            keys,
            leader,
            metrics,
            ecs,
            admin,
            logs,
            ecr,
            s3,
            secrets,
            driver,
        })
    }

    /// Serves on `listener` until `shutdown` resolves (in-flight requests finish first), with
    /// the background tasks and the agent channel's generation watch running meanwhile.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tasks = self.driver.start();
        let generations = berth_svc_ecs::agents::spawn_generation_watch(self.ecs.clone());
        let result = self.edge.serve(listener, shutdown).await;
        generations.abort();
        let _ = generations.await;
        let aborted = tasks.shutdown().await;
        if !aborted.is_empty() {
            tracing::warn!(tasks = ?aborted, "background tasks aborted at shutdown");
        }
        result
    }
}
