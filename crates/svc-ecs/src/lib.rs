//! berth-svc-ecs: the ECS API (`AmazonEC2ContainerServiceV20141113.<Operation>`, signing name
//! `ecs`, awsJson1_1) and what makes it run tasks: the agent channel
//! (`BerthAgent_20261122.PollDesiredState`, task IAM role credentials), placement, and the service
//! scheduler with the leader's collections as background tasks.
//!
//! Layers: handlers (`ecs/`) decode wire types (`berth-wire`), work on storage records
//! (`records`, keys in `keys`) through `berth_service::repo::Repo`, and call the pure crates
//! (`berth-placement`, `berth-scheduler`, `berth-core`'s lifecycle). API boundary: the only crate
//! that sees both ECS wire types and ECS domain types.
//!
//! The shared state (`state::Ecs`) is plain data: the types it holds come from leaf modules
//! (`agent_hub`, `replica_view`, `task_roles`) and from `placement_cache` (whose index reads the
//! store through the handler context, so the two import each other); the logic modules import
//! `state`, not the other way round. `Ecs::new` (below) wires in the service scheduler's
//! background tasks.

pub mod agent_hub;
pub mod agents;
mod bus_events;
pub mod ecs;
pub mod indexes;
pub mod keys;
pub mod placement_cache;
pub mod records;
pub mod replica_view;
pub mod replicas;
pub mod service_scheduler;
pub mod state;
pub mod stored;
#[cfg(test)]
mod stored_tests;
pub mod task_credentials;
pub mod task_roles;

pub use state::{Ctx, Ecs, EcsConfig};

use berth_service::{ApiError, Call, Descriptor, Protocol, Reply, Service};
use berth_wire::ecs::{Operation, TARGET_PREFIX};
use std::sync::Arc;

/// Largest request body accepted (ECS task definitions are limited to 64 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

static DESCRIPTOR: Descriptor = Descriptor {
    name: "ecs",
    signing_names: &["ecs"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[TARGET_PREFIX, berth_agent_api::TARGET_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows,
};

fn knows(prefix: &str, op: &str) -> bool {
    if prefix == TARGET_PREFIX {
        Operation::from_name(op).is_some()
    } else {
        op == berth_agent_api::POLL_OPERATION || op == berth_agent_api::TASK_CREDENTIALS_OPERATION
    }
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
                CollectionKind::DeploymentHistory,
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
}

/// The ECS service as the edge sees it.
pub struct EcsService(pub Arc<Ecs>);

#[async_trait::async_trait]
impl Service for EcsService {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        let out = if call.prefix == TARGET_PREFIX {
            match Operation::from_name(call.operation) {
                Some(op) => ecs::dispatch(&ctx, op, &call.body).await,
                None => Err(ApiError::unknown_operation(&format!(
                    "{TARGET_PREFIX}.{}",
                    call.operation
                ))),
            }
        } else if call.operation == berth_agent_api::POLL_OPERATION {
            agents::poll(&ctx, &call.body).await
        } else {
            task_credentials::get_task_role_credentials(&ctx, &call.body).await
        };
        out.map(Reply::Json)
    }
}

/// What the admin service asks of ECS (`berth placement`, `berth status`).
pub struct EcsAdmin(pub Arc<Ecs>);

#[async_trait::async_trait]
impl berth_service::EcsAdmin for EcsAdmin {
    async fn explain_placement(
        &self,
        principal: berth_service::Principal,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal,
        };
        ecs::explain::explain_placement(&ctx, body).await
    }

    async fn describe_status(&self) -> Result<serde_json::Value, ApiError> {
        replicas::describe_status(&self.0).await
    }
}

/// RunTask for other services (EventBridge's ECS targets).
pub struct EcsTaskRunner(pub Arc<Ecs>);

#[async_trait::async_trait]
impl berth_service::TaskRunner for EcsTaskRunner {
    async fn run_task(
        &self,
        principal: berth_service::Principal,
        request: berth_wire::ecs::RunTaskRequest,
    ) -> Result<berth_wire::ecs::RunTaskResponse, ApiError> {
        use berth_wire::Validate;
        request.validate().map_err(|e| {
            ApiError::invalid_parameter(format!("Invalid value for parameter {}.", e.member))
        })?;
        let ctx = Ctx {
            app: self.0.clone(),
            principal,
        };
        ecs::tasks::run_task(&ctx, request).await
    }
}
