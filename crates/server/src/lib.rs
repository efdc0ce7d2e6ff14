//! berth-server: assembles the control plane. Builds every service with exactly what it needs
//! (plain structs, narrow traits — a service never gets another's internals), registers each
//! with the edge (one line per service) and their background tasks with a driver, then serves.
//! Used by `berth server`/`berth up` and by the in-process end-to-end tests.
//!
//! **Regions.** Each AWS region is its own namespace, as in AWS. The *home region* (recorded in
//! the store at first start, `meta/home-region`; the server's `--region` then) keeps its data
//! at the top of the key space, where it always was, so existing data needs no migration. Any
//! other region's services see the store through a `PrefixedStore` under `regions/<region>/`,
//! with their own `Scope` (so their ARNs name the region), log store and blob store directories
//! (`DATA_DIR/regions/<region>/`) and background-task driver. A region opens on the first
//! authenticated request signed for it (`berth_edge::RegionFactory`) and is reopened at every
//! start after (`meta/regions/<region>`), so its services keep being scheduled. Global services
//! (S3, berth's admin API) are the same in every region; access keys are global.
//!
//! Adding a service: build its state in [`Stack::build`] from the shared parts, add ONE line to
//! [`Stack::table`] (`t.register(Arc::new(XService(x.clone())))`), and register its background
//! tasks with the stack's driver.

use berth_core::Scope;
use berth_edge::{Edge, EdgeConfig, RegionFactory, Table};
use berth_service::auth::KeyCache;
use berth_service::leader::{Leader, Leadership};
use berth_service::metrics::Metrics;
use berth_service::repo::Repo;
use berth_service::{ApiError, BlobHolder, Service};
use berth_store::{CachedStore, PrefixedStore, StateStore, Txn};
use berth_svc_admin::{Admin, AdminService, TaskMonitors};
use berth_svc_ecr::{Ecr, EcrService};
use berth_svc_ecs::task_credentials::TaskRoleAccess;
use berth_svc_ecs::{Ecs, EcsConfig, EcsService};
use berth_svc_events::{Events, EventsService, SchedulerService};
use berth_svc_logs::{Logs, LogsService};
use berth_svc_s3::{S3Service, S3};
use berth_svc_secrets::{Secrets, SecretsManagerService, SsmService};
use berth_tasks::{Driver, DriverHandle, Mode, TaskSpec};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Store key of the home region's name.
pub const HOME_REGION_KEY: &str = "meta/home-region";
/// Store prefix of the markers of the other regions that hold data.
pub const REGIONS_KEY: &str = "meta/regions/";

/// Everything the control plane is built from.
pub struct ControlPlaneConfig {
    /// The backend store (SQLite, memory, etcd).
    pub store: Arc<dyn StateStore>,
    /// The account, and the region: the home region on a new store (see the crate docs).
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
    State(#[from] ApiError),
    #[error("opening the log store: {0}")]
    Logs(#[from] berth_logs::LogError),
    #[error("opening the image registry: {0}")]
    Registry(#[from] berth_registry::RegistryError),
    #[error("registering background tasks: {0}")]
    Tasks(#[from] berth_tasks::RegisterError),
}

/// What every region's services share.
struct Shared {
    base: Arc<dyn StateStore>,
    /// The home region's repo: access keys and region markers live there.
    home_repo: Repo,
    account: String,
    data_dir: PathBuf,
    endpoint: String,
    registry_host: Option<String>,
    task_roles: TaskRoleAccess,
    ecr_lifecycle_interval: Duration,
    keys: KeyCache,
    leader: Arc<Leader>,
    leadership: Option<tokio::sync::watch::Receiver<Leadership>>,
    metrics: Arc<Metrics>,
    closing: tokio_util::sync::CancellationToken,
    monitors: TaskMonitors,
    /// The running regions' drivers and generation watches, stopped at shutdown.
    running: Mutex<Vec<Running>>,
    /// Regions opened before the server started serving: started by `serve`.
    pending: Mutex<Vec<Pending>>,
    serving: std::sync::atomic::AtomicBool,
}

struct Running {
    tasks: DriverHandle,
    generations: tokio::task::JoinHandle<()>,
}

struct Pending {
    driver: Driver,
    ecs: Arc<Ecs>,
}

/// One region's services.
struct Stack {
    ecs: Arc<Ecs>,
    logs: Arc<Logs>,
    ecr: Arc<Ecr>,
    secrets: Arc<Secrets>,
    events: Arc<Events>,
}

impl Stack {
    /// Builds `region`'s services over `store`/`repo` and registers their background tasks with
    /// `driver`. `s3` keeps blobs of the home region's blob store alive (S3 is global and uses
    /// the home region's).
    #[allow(clippy::too_many_arguments)] // one region's parts, gathered by its two callers
    fn build(
        shared: &Shared,
        region: &str,
        store: Arc<dyn StateStore>,
        repo: Repo,
        dir: PathBuf,
        s3: Option<Arc<dyn BlobHolder>>,
        blobs: Arc<berth_registry::BlobStore>,
        driver: &mut Driver,
    ) -> Result<Self, BuildError> {
        let scope = Scope::new(region, &shared.account);
        // ECS's events, on their way to the region's event bus.
        let events_queue = Arc::new(berth_service::EventQueue::default());
        let ecs = Ecs::new(
            EcsConfig {
                store,
                repo: repo.clone(),
                scope: scope.clone(),
                keys: shared.keys.clone(),
                keys_repo: shared.home_repo.clone(),
                endpoint: shared.endpoint.clone(),
                metrics: shared.metrics.clone(),
                leader: shared.leader.clone(),
                task_roles: shared.task_roles.clone(),
                events: events_queue.clone(),
            },
            driver,
        );
        let logs = Logs::open(&dir.join("logs"), scope.clone(), shared.closing.clone())?;
        let ecr = Arc::new(
            Ecr::new(
                repo.clone(),
                scope.clone(),
                blobs,
                shared.keys.clone(),
                shared.leader.clone(),
                shared.endpoint.clone(),
                shared.registry_host.clone(),
            )
            .with_holders(s3.into_iter().collect()),
        );
        let secrets = Secrets::new(repo.clone(), scope.clone(), shared.leader.clone());
        let events = Events::new(
            repo,
            scope.clone(),
            shared.leader.clone(),
            Arc::new(berth_svc_ecs::EcsTaskRunner(ecs.clone())),
            Edge::authenticator(&shared.keys, &scope),
            events_queue,
            Arc::new(berth_svc_logs::LogsWriter(logs.clone())),
        );
        driver.register(
            berth_svc_events::DeliverEvents::spec(),
            berth_svc_events::DeliverEvents(events.clone()),
        )?;
        driver.register(
            TaskSpec::new(
                "events_fire_rules",
                berth_svc_events::FIRE_PERIOD,
                Mode::LeaderOnly,
            ),
            berth_svc_events::FireRules(events.clone()),
        )?;
        driver.register(
            berth_svc_ecr::model::RegistryGc::spec(),
            berth_svc_ecr::model::RegistryGc(ecr.clone()),
        )?;
        driver.register(
            berth_svc_ecr::lifecycle::LifecyclePolicies::spec(shared.ecr_lifecycle_interval),
            berth_svc_ecr::lifecycle::LifecyclePolicies(ecr.clone()),
        )?;
        driver.register(
            berth_svc_logs::FlushLogs::spec(),
            berth_svc_logs::FlushLogs(logs.clone()),
        )?;
        driver.register(
            berth_svc_logs::ApplyRetention::spec(),
            berth_svc_logs::ApplyRetention(logs.clone()),
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
        Ok(Self {
            ecs,
            logs,
            ecr,
            secrets,
            events,
        })
    }

    /// The region's routing table: its own services, then the global ones. One line per service.
    fn table(&self, global: &[Arc<dyn Service>]) -> Table {
        let mut t = Table::default();
        t.register(Arc::new(EcsService(self.ecs.clone())));
        t.register(Arc::new(LogsService(self.logs.clone())));
        t.register(Arc::new(EcrService(self.ecr.clone())));
        t.register(Arc::new(SecretsManagerService(self.secrets.clone())));
        t.register(Arc::new(SsmService(self.secrets.clone())));
        t.register(Arc::new(EventsService(self.events.clone())));
        t.register(Arc::new(SchedulerService(self.events.clone())));
        for g in global {
            t.register(g.clone());
        }
        t
    }
}

impl Shared {
    fn driver(&self) -> Driver {
        let leader = self.leader.clone();
        let driver = Driver::new(move || leader.is_leader());
        match &self.leadership {
            Some(rx) => driver.leader_changes(rx.clone()),
            None => driver,
        }
    }

    /// Runs a region's background tasks and agent-channel watch (now, or when serving starts).
    fn run(&self, region: &str, driver: Driver, ecs: Arc<Ecs>) {
        self.monitors.add(region, driver.monitor());
        if !self.serving.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(mut p) = self.pending.lock() {
                p.push(Pending { driver, ecs });
            }
            return;
        }
        let running = Running {
            tasks: driver.start(),
            generations: berth_svc_ecs::agents::spawn_generation_watch(ecs),
        };
        if let Ok(mut r) = self.running.lock() {
            r.push(running);
        }
    }
}

/// Opens the regions other than the home region.
struct Regions {
    shared: Arc<Shared>,
    global: Vec<Arc<dyn Service>>,
}

impl Regions {
    /// Records that `region` holds data (`meta/regions/<region>`): it is reopened at every start.
    async fn record(&self, region: &str) -> Result<(), ApiError> {
        self.shared
            .home_repo
            .commit(Txn::new().put(
                format!("{REGIONS_KEY}{region}"),
                berth_service::repo::to_bytes(&region),
            ))
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl RegionFactory for Regions {
    async fn after_reset(&self, region: &str) -> Result<(), ApiError> {
        self.record(region).await
    }

    async fn build(&self, region: &str) -> Result<Table, ApiError> {
        let shared = &self.shared;
        // Recorded first, so the region is reopened at the next start even if this one fails.
        self.record(region).await?;
        // Read through, without a watch cache: a cache over one region's namespace would wait
        // for revisions the other regions' writes make (ARCHITECTURE.md, "Regions").
        let store: Arc<dyn StateStore> = Arc::new(PrefixedStore::new(
            shared.base.clone(),
            format!("regions/{region}/"),
        ));
        let repo = Repo::new(store.clone());
        let dir = shared.data_dir.join("regions").join(region);
        let blobs = berth_registry::BlobStore::open(dir.join("registry"))
            .map_err(|e| ApiError::server(format!("opening the region's registry: {e}")))?;
        let mut driver = shared.driver();
        let stack = Stack::build(
            shared,
            region,
            store,
            repo,
            dir,
            None,
            Arc::new(blobs),
            &mut driver,
        )
        .map_err(|e| ApiError::server(format!("opening region {region}: {e}")))?;
        shared.run(region, driver, stack.ecs.clone());
        Ok(stack.table(&self.global))
    }
}

/// The assembled control plane: the edge, the home region's services (for `bin`'s bootstrap and
/// the tests), and the background tasks, started by [`ControlPlane::serve`].
pub struct ControlPlane {
    pub edge: Arc<Edge>,
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub keys: KeyCache,
    pub leader: Arc<Leader>,
    pub metrics: Arc<Metrics>,
    /// The home region.
    pub region: String,
    pub ecs: Arc<Ecs>,
    pub admin: Arc<Admin>,
    pub logs: Arc<Logs>,
    pub ecr: Arc<Ecr>,
    pub s3: Arc<S3>,
    pub secrets: Arc<Secrets>,
    shared: Arc<Shared>,
}

impl ControlPlane {
    pub async fn build(cfg: ControlPlaneConfig) -> Result<Self, BuildError> {
        let base = cfg.store;
        // The home region: every read is served by the watch cache (see berth_store::cache);
        // writes pass through. It indexes what ECS's hot paths look up.
        let cache = CachedStore::start_indexed(base.clone(), berth_svc_ecs::indexes::all());
        if !cache.ready().await.map_err(ApiError::from)? {
            tracing::warn!("watch cache not ready yet: reads go to the store until it is");
        }
        let store: Arc<dyn StateStore> = Arc::new(cache.clone());
        let repo = Repo::cached(cache);
        let home = home_region(&repo, &cfg.scope.region).await?;
        let scope = Scope::new(&home, &cfg.scope.account);
        let keys = KeyCache::default();
        keys.reload(&repo).await?;
        let leader = Arc::new(Leader::default());
        if let Some(rx) = &cfg.leadership {
            leader.set(rx.clone());
        }
        let metrics = cfg.metrics;
        let shared = Arc::new(Shared {
            base,
            home_repo: repo.clone(),
            account: scope.account.clone(),
            data_dir: cfg.data_dir.clone(),
            endpoint: cfg.endpoint.clone(),
            registry_host: cfg.registry_host.clone(),
            task_roles: cfg.task_roles,
            ecr_lifecycle_interval: cfg.ecr_lifecycle_interval,
            keys: keys.clone(),
            leader: leader.clone(),
            leadership: cfg.leadership,
            metrics: metrics.clone(),
            closing: tokio_util::sync::CancellationToken::new(),
            monitors: TaskMonitors::default(),
            running: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            serving: std::sync::atomic::AtomicBool::new(false),
        });

        // Global services: S3 (on the home region's blob store) and berth's admin API.
        let blobs = Arc::new(berth_registry::BlobStore::open(
            cfg.data_dir.join("registry"),
        )?);
        let s3 = S3::new(
            repo.clone(),
            scope.clone(),
            blobs.clone(),
            Edge::authenticator(&keys, &scope),
            metrics.clone(),
        );
        let mut driver = shared.driver();
        let stack = Stack::build(
            &shared,
            &home,
            store.clone(),
            repo.clone(),
            cfg.data_dir.clone(),
            Some(s3.clone() as Arc<dyn BlobHolder>),
            blobs,
            &mut driver,
        )?;
        let admin = Arc::new(Admin {
            repo: repo.clone(),
            scope: scope.clone(),
            keys: keys.clone(),
            ecs: Arc::new(berth_svc_ecs::EcsAdmin(stack.ecs.clone())),
            tasks: shared.monitors.clone(),
        });
        // Prometheus shows the home region's background tasks.
        metrics.register_collector(Box::new(driver.monitor()));
        shared.run(&home, driver, stack.ecs.clone());

        let global: Vec<Arc<dyn Service>> = vec![
            Arc::new(S3Service(s3.clone())),
            Arc::new(AdminService(admin.clone())),
        ];
        let table = stack.table(&global);
        let edge = Arc::new(Edge::new(
            EdgeConfig {
                store: store.clone(),
                repo: repo.clone(),
                keys: keys.clone(),
                scope: scope.clone(),
                metrics: metrics.clone(),
                leader: leader.clone(),
                allow_reset: cfg.allow_reset,
                closing: shared.closing.clone(),
            },
            table,
            Some(Arc::new(Regions {
                shared: shared.clone(),
                global,
            })),
        ));
        // Reopen the regions that hold data, so their services keep being scheduled.
        // A region that cannot be opened (its directory unwritable, …) must not keep the server
        // from starting: it is logged, and its requests get the error until it opens.
        for r in repo.list::<String>(REGIONS_KEY).await? {
            if r.value != home {
                if let Err(e) = edge.table(&r.value).await {
                    tracing::warn!(region = %r.value, error = %e, "region not reopened");
                }
            }
        }

        Ok(Self {
            edge,
            store,
            repo,
            keys,
            leader,
            metrics,
            region: home,
            ecs: stack.ecs,
            admin,
            logs: stack.logs,
            ecr: stack.ecr,
            s3,
            secrets: stack.secrets,
            shared,
        })
    }

    /// Serves on `listener` until `shutdown` resolves (in-flight requests finish first), with
    /// every region's background tasks and agent-channel watch running meanwhile.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        shared
            .serving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let pending = shared
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for p in pending {
            let running = Running {
                tasks: p.driver.start(),
                generations: berth_svc_ecs::agents::spawn_generation_watch(p.ecs),
            };
            if let Ok(mut r) = shared.running.lock() {
                r.push(running);
            }
        }
        let result = self.edge.serve(listener, shutdown).await;
        let running = shared
            .running
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for r in running {
            r.generations.abort();
            let _ = r.generations.await;
            let aborted = r.tasks.shutdown().await;
            if !aborted.is_empty() {
                tracing::warn!(tasks = ?aborted, "background tasks aborted at shutdown");
            }
        }
        result
    }
}

/// The home region: the one recorded in the store, or — on a new store — `configured`, which is
/// then recorded. Data of the home region is unprefixed, so it never moves.
async fn home_region(repo: &Repo, configured: &str) -> Result<String, ApiError> {
    if let Some(r) = repo.get::<String>(HOME_REGION_KEY).await? {
        if r.value != configured {
            tracing::info!(
                home = %r.value,
                configured,
                "the store's home region differs from --region: the home region's data stays where it is; {configured} is served as a region of its own"
            );
        }
        return Ok(r.value);
    }
    let txn = Txn::new()
        .when(berth_store::Compare::Absent {
            key: HOME_REGION_KEY.into(),
        })
        .put(HOME_REGION_KEY, berth_service::repo::to_bytes(&configured));
    if repo.commit(txn).await?.is_none() {
        // Another replica recorded it first.
        if let Some(r) = repo.get::<String>(HOME_REGION_KEY).await? {
            return Ok(r.value);
        }
    }
    Ok(configured.to_string())
}
