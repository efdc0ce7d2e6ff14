//! Amazon EventBridge (`AWSEvents.<Operation>`, signing name `events`): event buses, rules with a
//! schedule expression or an event pattern, and their targets — and the executor that fires
//! scheduled rules at their slots by running their ECS targets' tasks.
//!
//! Scheduled rules fire exactly once per slot: the leader-only [`FireRules`] task runs a due
//! rule's ECS targets through berth's own RunTask with a client token derived from (rule, target,
//! slot) — so a failover that repeats the call starts nothing twice — and then commits the slot
//! (fenced). Rules with an event pattern are kept; berth puts no events on its buses yet, so they
//! match nothing (the README says so).

mod deliver;
mod fire;
pub mod pattern;
mod rules;
pub mod schedule;
pub mod scheduler;

pub use deliver::DeliverEvents;
pub use fire::{due_slot, FireRules, FIRE_PERIOD};
pub use rules::{EventBusRecord, FiredRecord, RuleRecord, RuleState};

use berth_core::Scope;
use berth_service::codec::{decode_in, JsonDialect, Missing};
use berth_service::leader::Leader;
use berth_service::repo::Repo;
use berth_service::{
    ApiError, Authenticator, Call, Descriptor, EventQueue, LogWriter, Protocol, Reply, Service,
    TaskRunner,
};
use berth_wire::events::Operation;
use std::sync::Arc;

/// The largest request body (PutTargets with 100 targets and their inputs).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// EventBridge's state.
pub struct Events {
    pub repo: Repo,
    /// Region and account of the ARNs minted.
    pub scope: Scope,
    /// This replica's leadership (the executor fires on the leader only, its commits fenced).
    pub leader: Arc<Leader>,
    /// Runs ECS tasks for ECS targets (berth's ECS service).
    pub runner: Arc<dyn TaskRunner>,
    /// The signature check for Scheduler's REST API (the edge's).
    pub auth: Option<Arc<dyn Authenticator>>,
    /// Events berth's services put on the default bus (ECS state changes).
    pub queue: Arc<EventQueue>,
    /// CloudWatch Logs, for log-group targets.
    pub logs: Arc<dyn LogWriter>,
}

impl Events {
    pub fn new(
        repo: Repo,
        scope: Scope,
        leader: Arc<Leader>,
        runner: Arc<dyn TaskRunner>,
        auth: Arc<dyn Authenticator>,
        queue: Arc<EventQueue>,
        logs: Arc<dyn LogWriter>,
    ) -> Arc<Self> {
        Arc::new(Self {
            repo,
            scope,
            leader,
            runner,
            auth: Some(auth),
            queue,
            logs,
        })
    }
}

/// What every EventBridge handler gets.
pub type Ctx = berth_service::Ctx<Events>;

static DESCRIPTOR: Descriptor = Descriptor {
    name: "events",
    signing_names: &["events"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[berth_wire::events::TARGET_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, op| Operation::from_name(op).is_some(),
};

static SCHEDULER: Descriptor = Descriptor {
    name: "scheduler",
    signing_names: &["scheduler"],
    protocol: Protocol::RestJson1,
    target_prefixes: &[],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, _| true,
};

/// EventBridge Scheduler as the edge sees it (REST: its own routes).
pub struct SchedulerService(pub Arc<Events>);

#[async_trait::async_trait]
impl Service for SchedulerService {
    fn descriptor(&self) -> &'static Descriptor {
        &SCHEDULER
    }

    fn rest_routes(&self) -> Option<axum::Router> {
        Some(scheduler::router(self.0.clone()))
    }
}

/// EventBridge as the edge sees it.
pub struct EventsService(pub Arc<Events>);

#[async_trait::async_trait]
impl Service for EventsService {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let op = Operation::from_name(call.operation).ok_or_else(|| {
            ApiError::unknown_operation(&format!("{}.{}", call.prefix, call.operation))
        })?;
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        dispatch(&ctx, op, &call.body).await.map(Reply::Json)
    }
}

/// How EventBridge words a request that does not fit its model.
const DIALECT: JsonDialect = JsonDialect {
    missing: Missing::Validation("ValidationException"),
    invalid_value_code: "ValidationException",
    enum_texts: &[],
};

fn decode<T: serde::de::DeserializeOwned + berth_wire::Validate>(
    body: &[u8],
) -> Result<T, ApiError> {
    decode_in(body, &DIALECT)
}

macro_rules! route {
    ($ctx:expr, $body:expr, $handler:path) => {
        berth_service::route!(decode, $ctx, $body, $handler)
    };
}

/// The operations berth serves (the README's compatibility table is checked against it).
pub fn implemented(op: Operation) -> bool {
    use Operation as O;
    matches!(
        op,
        O::PutRule
            | O::DescribeRule
            | O::ListRules
            | O::EnableRule
            | O::DisableRule
            | O::DeleteRule
            | O::PutTargets
            | O::RemoveTargets
            | O::ListTargetsByRule
            | O::ListRuleNamesByTarget
            | O::CreateEventBus
            | O::DescribeEventBus
            | O::ListEventBuses
            | O::DeleteEventBus
            | O::TagResource
            | O::UntagResource
            | O::ListTagsForResource
    )
}

async fn dispatch(ctx: &Ctx, op: Operation, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use Operation as O;
    match op {
        O::PutRule => route!(ctx, body, rules::put_rule),
        O::DescribeRule => route!(ctx, body, rules::describe_rule),
        O::ListRules => route!(ctx, body, rules::list_rules),
        O::EnableRule => route!(ctx, body, rules::enable_rule),
        O::DisableRule => route!(ctx, body, rules::disable_rule),
        O::DeleteRule => route!(ctx, body, rules::delete_rule),
        O::PutTargets => {
            // The targets are kept as the caller spelled them (every field, nothing added).
            let req = decode(body)?;
            let raw: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let raw = raw
                .get("Targets")
                .and_then(|t| t.as_array())
                .cloned()
                .unwrap_or_default();
            berth_service::codec::encode(&rules::put_targets(ctx, req, raw).await?)
        }
        O::RemoveTargets => route!(ctx, body, rules::remove_targets),
        O::ListTargetsByRule => route!(ctx, body, rules::list_targets_by_rule),
        O::ListRuleNamesByTarget => route!(ctx, body, rules::list_rule_names_by_target),
        O::CreateEventBus => route!(ctx, body, rules::create_event_bus),
        O::DescribeEventBus => route!(ctx, body, rules::describe_event_bus),
        O::ListEventBuses => route!(ctx, body, rules::list_event_buses),
        O::DeleteEventBus => route!(ctx, body, rules::delete_event_bus),
        O::TagResource => route!(ctx, body, rules::tag_resource),
        O::UntagResource => route!(ctx, body, rules::untag_resource),
        O::ListTagsForResource => route!(ctx, body, rules::list_tags_for_resource),
        other => Err(ApiError::new(
            "UnsupportedFeatureException",
            format!(
                "{} is not supported by this berth control plane yet.",
                other.as_str()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_knows_every_modelled_operation_and_serves_the_implemented_ones() {
        assert!((DESCRIPTOR.knows)("AWSEvents", "PutRule"));
        assert!(!(DESCRIPTOR.knows)("AWSEvents", "PutRules"));
        assert!(implemented(Operation::PutTargets));
        assert!(!implemented(Operation::PutEvents));
    }
}
