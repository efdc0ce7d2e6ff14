//! The ECS service's state: what its handlers, the agent channel and the service scheduler share.
//! Plain data: the types it holds live in leaf modules (`agent_hub`, `placement_cache`,
//! `replica_view`, `task_roles`); `Ecs::new`, which registers the background tasks, is in the
//! crate root.

use crate::agent_hub::AgentHub;
use crate::placement_cache::PlacementCache;
use crate::replica_view::Replicas;
use crate::task_roles::TaskRoleAccess;
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
    /// Where ECS's events (task state changes) go: the region's event bus.
    pub events: Arc<berth_service::EventQueue>,
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
    /// ECS's events for the event bus.
    pub events: Arc<berth_service::EventQueue>,
    /// Agent connectivity and desired-state generations (the agent channel).
    pub agents: AgentHub,
    /// The control-plane replicas sharing the store, as this replica sees them (`replicas`).
    pub replicas: Replicas,
    /// Each cluster's long-lived placement index (RunTask, StartTask, services).
    pub placement: PlacementCache,
    /// Wakes the service scheduler (a service changed, a task changed state).
    scheduler: berth_tasks::Activator,
}

impl Ecs {
    /// The service's state, with the service scheduler's `Activator` (see `Ecs::new` in the
    /// crate root, which registers the background tasks).
    pub(crate) fn build(cfg: EcsConfig, scheduler: berth_tasks::Activator) -> Self {
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
            events: cfg.events,
            agents: AgentHub::default(),
            placement: PlacementCache::default(),
            replicas: Replicas::default(),
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
