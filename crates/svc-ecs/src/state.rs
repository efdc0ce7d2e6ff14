//! The ECS service's state: what its handlers, the agent channel and the service scheduler share.

use crate::agents::AgentHub;
use crate::placement_cache::PlacementCache;
use crate::task_credentials::TaskRoleAccess;
use berth_core::Scope;
use berth_service::auth::KeyCache;
use berth_service::leader::{Leader, Leadership};
use berth_service::metrics::Metrics;
use berth_service::repo::Repo;
use berth_store::StateStore;
use std::sync::Arc;

/// What `bin` gives the ECS service.
pub struct EcsConfig {
    /// The (watch-cached) state store and typed access to it, shared with the other services.
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub scope: Scope,
    /// The access keys: task IAM role credentials are temporary keys added here.
    pub keys: KeyCache,
    /// Where access keys are stored (`auth/keys/`): keys are global, so in a region other than
    /// the home region this is the home region's repo, not `repo`.
    pub keys_repo: Repo,
    /// The endpoint agents are told to use (DiscoverPollEndpoint).
    pub endpoint: String,
    pub metrics: Arc<Metrics>,
    pub leader: Arc<Leader>,
    /// Which berth role task IAM role credentials get (`--task-role-access`).
    pub task_roles: TaskRoleAccess,
}

pub struct Ecs {
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub scope: Scope,
    pub keys: KeyCache,
    pub keys_repo: Repo,
    pub endpoint: String,
    pub metrics: Arc<Metrics>,
    pub leader: Arc<Leader>,
    pub task_roles: TaskRoleAccess,
    /// Agent connectivity and desired-state generations (the agent channel).
    pub agents: AgentHub,
    /// The control-plane replicas sharing the store, as this replica sees them (`replicas`).
    pub replicas: crate::replicas::Replicas,
    /// Each cluster's long-lived placement index (RunTask, StartTask, services).
    pub placement: PlacementCache,
    /// Wakes the service scheduler (a service changed, a task changed state).
    scheduler: berth_tasks::Activator,
}

impl Ecs {
    /// Builds the service and registers its background tasks with `driver`: the service
    /// scheduler and the leader's collections (see `service_scheduler`). Registering twice in
    /// one driver is a wiring mistake and panics at startup.
    pub fn new(cfg: EcsConfig, driver: &mut berth_tasks::Driver) -> Arc<Self> {
        use crate::service_scheduler::{
            Collection, CollectionKind, SchedulerPass, COLLECTION_PERIOD, MIN_PASS_INTERVAL,
            SCHEDULER_PERIOD,
        };
        use berth_tasks::{Mode, TaskSpec};
        const ONCE: &str = "the ECS service's background tasks are registered once per driver";
        Arc::new_cyclic(|weak| {
            for what in [
                CollectionKind::StoppedTasks,
                CollectionKind::DeletedTaskDefinitions,
                CollectionKind::ExpiredCredentials,
            ] {
                let spec = TaskSpec::new(what.task_name(), COLLECTION_PERIOD, Mode::LeaderOnly)
                    .initial_delay(COLLECTION_PERIOD);
                let task = Collection {
                    app: weak.clone(),
                    what,
                };
                driver.register(spec, task).expect(ONCE);
            }
            let scheduler = driver
                .register(
                    TaskSpec::new("ecs_service_scheduler", SCHEDULER_PERIOD, Mode::LeaderOnly)
                        .min_interval(MIN_PASS_INTERVAL),
                    SchedulerPass(weak.clone()),
                )
                .expect(ONCE);
            Self::build(cfg, scheduler)
        })
    }

    fn build(cfg: EcsConfig, scheduler: berth_tasks::Activator) -> Self {
        Self {
            store: cfg.store,
            repo: cfg.repo,
            scope: cfg.scope,
            keys: cfg.keys,
            keys_repo: cfg.keys_repo,
            endpoint: cfg.endpoint,
            metrics: cfg.metrics,
            leader: cfg.leader,
            task_roles: cfg.task_roles,
            agents: AgentHub::default(),
            placement: PlacementCache::default(),
            replicas: crate::replicas::Replicas::default(),
            scheduler,
        }
    }

    /// Asks for a service-scheduler pass now (a service changed, a task changed state).
    pub fn wake_scheduler(&self) {
        self.scheduler.wake();
    }

    /// This replica's leadership right now.
    pub fn leadership(&self) -> Leadership {
        self.leader.leadership()
    }

    /// Does this replica lead right now?
    pub fn is_leader(&self) -> bool {
        self.leader.is_leader()
    }
}

/// What every ECS handler gets.
pub type Ctx = berth_service::Ctx<Ecs>;
