//! ECS's events for the event bus (EventBridge): `ECS Task State Change` (in `ecs::tasks`),
//! `ECS Deployment State Change` and `ECS Service Action`, in AWS's documented shapes — pushed on
//! the region's `EventQueue` only after the change they report is committed.

use crate::records::{ContainerInstanceRecord, DeploymentRecord, RolloutState, ServiceRecord};
use crate::state::Ctx;
use berth_service::codec::now_epoch;
use serde_json::{json, Value};

/// The envelope every AWS event has.
pub(crate) fn envelope(
    ctx: &Ctx,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": ctx.app.scope.account,
        "time": berth_core::time::rfc3339_epoch(now_epoch(), 0),
        "region": ctx.app.scope.region,
        "resources": resources,
        "detail": detail,
    })
}

/// `ECS Deployment State Change` for one deployment of `svc` in `state`.
pub(crate) fn deployment_state_change(
    ctx: &Ctx,
    svc: &ServiceRecord,
    d: &DeploymentRecord,
    state: RolloutState,
) -> Value {
    let (event_type, name, reason) = match state {
        RolloutState::InProgress => (
            "INFO",
            "SERVICE_DEPLOYMENT_IN_PROGRESS",
            format!("ECS deployment {} in progress.", d.id),
        ),
        RolloutState::Completed => (
            "INFO",
            "SERVICE_DEPLOYMENT_COMPLETED",
            format!("ECS deployment {} completed.", d.id),
        ),
        RolloutState::Failed => (
            "ERROR",
            "SERVICE_DEPLOYMENT_FAILED",
            d.rollout_state_reason
                .clone()
                .unwrap_or_else(|| "ECS deployment circuit breaker: task failed to start.".into()),
        ),
    };
    envelope(
        ctx,
        "ECS Deployment State Change",
        vec![ctx.app.scope.service_arn(&svc.cluster, &svc.name)],
        json!({
            "eventType": event_type,
            "eventName": name,
            "deploymentId": d.id,
            "updatedAt": berth_core::time::rfc3339_epoch(d.updated_at, 3),
            "reason": reason,
        }),
    )
}

/// `ECS Service Action`: SERVICE_STEADY_STATE (INFO) or SERVICE_TASK_PLACEMENT_FAILURE (ERROR).
pub(crate) fn service_action(
    ctx: &Ctx,
    svc: &ServiceRecord,
    name: &str,
    reason: Option<&str>,
) -> Value {
    let event_type = if name == "SERVICE_STEADY_STATE" {
        "INFO"
    } else {
        "ERROR"
    };
    let mut detail = json!({
        "eventType": event_type,
        "eventName": name,
        "clusterArn": ctx.app.scope.cluster_arn(&svc.cluster),
        "createdAt": berth_core::time::rfc3339_epoch(now_epoch(), 3),
    });
    if let Some(r) = reason {
        detail["reasons"] = json!([r]);
    }
    envelope(
        ctx,
        "ECS Service Action",
        vec![ctx.app.scope.service_arn(&svc.cluster, &svc.name)],
        detail,
    )
}

/// The deployment events a scheduler step's committed change makes: a deployment that is new
/// (a rollback) or whose rollout state moved.
pub(crate) fn deployment_changes(
    ctx: &Ctx,
    before: &ServiceRecord,
    after: &ServiceRecord,
) -> Vec<Value> {
    after
        .deployments
        .iter()
        .filter_map(|d| {
            let old = before.deployments.iter().find(|o| o.id == d.id);
            (old.is_none_or(|o| o.rollout_state != d.rollout_state))
                .then(|| deployment_state_change(ctx, after, d, d.rollout_state))
        })
        .collect()
}

/// `ECS Container Instance State Change`: the instance as DescribeContainerInstances shows it
/// (registered, its status changed, deregistered).
pub(crate) fn container_instance_state_change(ctx: &Ctx, rec: &ContainerInstanceRecord) -> Value {
    let wire = crate::ecs::instances::to_wire(ctx, rec, false);
    let arn = wire.container_instance_arn.clone().unwrap_or_default();
    let mut detail = serde_json::to_value(&wire).unwrap_or_default();
    if let Value::Object(m) = &mut detail {
        m.insert(
            "clusterArn".into(),
            Value::String(ctx.app.scope.cluster_arn(&rec.cluster)),
        );
        m.insert(
            "updatedAt".into(),
            Value::String(berth_core::time::rfc3339_epoch(now_epoch(), 3)),
        );
        if let Some(v) = m.get_mut("registeredAt") {
            if let Some(secs) = v.as_f64() {
                *v = Value::String(berth_core::time::rfc3339_epoch(secs, 3));
            }
        }
    }
    envelope(
        ctx,
        "ECS Container Instance State Change",
        vec![arn],
        detail,
    )
}
