//! `BerthAdmin_20261122.ExplainPlacement` (`berth placement`), served by the admin service through
//! [`crate::PlacementExplainer`]: ECS's placement, dry.

use crate::keys;
use crate::state::Ctx;
use berth_service::ApiError;
use serde::Deserialize;

/// `ExplainPlacement`: a dry run of RunTask's placement — where `count` tasks would go, the
/// `failures[]` RunTask would return, and for every instance whether the task fits, stage by stage.
/// Nothing is committed.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExplainReq {
    cluster: Option<String>,
    task_definition: Option<String>,
    count: Option<u32>,
    group: Option<String>,
    launch_type: Option<berth_wire::ecs::LaunchType>,
    placement_constraints: Option<Vec<berth_wire::ecs::PlacementConstraint>>,
    placement_strategy: Option<Vec<berth_wire::ecs::PlacementStrategy>>,
}

pub async fn explain_placement(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    use crate::ecs::tasks;
    use crate::records::ContainerInstanceRecord;
    let req: ExplainReq = berth_service::codec::parse(body)?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid_parameter(
            "count must be between 1 and 10.",
        ));
    }
    let l = tasks::prepare(
        ctx,
        req.cluster.as_deref(),
        req.task_definition.as_deref(),
        None,
        req.group.clone(),
        None,
        128,
        req.launch_type,
        None,
        None,
        false,
    )
    .await?;
    let instances: Vec<ContainerInstanceRecord> = ctx
        .app
        .repo
        .list::<ContainerInstanceRecord>(&keys::instances_in(&l.cluster))
        .await?
        .into_iter()
        .map(|i| i.value)
        .filter(|i| i.status != crate::records::InstanceStatus::Inactive)
        .collect();
    let snapshot = crate::placement_cache::snapshot_of(ctx, instances.iter());
    let idx = berth_placement::ClusterIndex::build(&snapshot);
    let mut preq =
        berth_placement::PlacementRequest::new(tasks::requirements_for_placement(&l), count);
    preq.constraints = tasks::constraints(req.placement_constraints.as_deref());
    preq.strategies = tasks::strategies(req.placement_strategy.as_deref());
    let err = |e: berth_placement::PlacementError| ApiError::new(e.kind.as_str(), e.message);
    let outcome = berth_placement::place(&idx, &preq).map_err(err)?;
    let mut per_instance = Vec::new();
    for inst in &snapshot.instances {
        let x = berth_placement::explain_instance(&idx, &preq, &inst.arn).map_err(err)?;
        per_instance.push(serde_json::json!({
            "containerInstanceArn": x.instance_arn,
            "fits": x.fits,
            "checks": x.checks.iter().map(|c| serde_json::json!({
                "stage": c.stage.name(),
                "passed": c.passed,
                "detail": c.detail,
                "reason": if c.passed { None } else { Some(c.stage.reason()) },
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(serde_json::json!({
        "placements": outcome.placements.iter().map(|p| serde_json::json!({"containerInstanceArn": p.instance_arn})).collect::<Vec<_>>(),
        "failures": outcome.failures.iter().map(|f| serde_json::json!({"arn": f.arn, "reason": f.reason})).collect::<Vec<_>>(),
        "serviceEventMessage": outcome.service_event_message(),
        "instances": per_instance,
    }))
}
