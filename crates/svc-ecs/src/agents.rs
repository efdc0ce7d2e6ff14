//! The agent channel (control plane side): `BerthAgent_20261122.PollDesiredState`, the desired
//! state of an instance, and the store watch that wakes held polls when an instance's generation
//! moves. Agent connectivity and the per-instance generation notifications themselves are kept by
//! [`crate::agent_hub::AgentHub`] (`Ecs::agents`).

use crate::keys;
use crate::records::{ContainerInstanceRecord, InstanceStatus};
use crate::state::Ctx;
use berth_agent_api::{DesiredTask, PollRequest, PollResponse, MAX_WAIT_SECONDS};
use berth_service::ApiError;
use berth_wire::ecs;
use std::time::Duration;

/// The two fields of a stored [`ContainerInstanceRecord`] the generation watch reads: every
/// placement rewrites the record, and skipping the rest (attributes, resources, counters) costs
/// a fraction of decoding it.
#[derive(serde::Deserialize)]
struct InstanceGeneration<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    generation: u64,
}

/// Follows every instance record through the store's watch and wakes held polls when an
/// instance's generation moves — so a task placed through another replica (or another process
/// sharing the store) reaches its agent at once, not at the poll's timeout. On this replica the
/// writers also publish directly; repeated publishes are no-ops.
pub fn spawn_generation_watch(app: std::sync::Arc<crate::Ecs>) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    tokio::spawn(async move {
        loop {
            let from = app.store.current_revision().await.unwrap_or(0);
            match app.store.watch(keys::INSTANCES, from).await {
                Ok(mut stream) => {
                    while let Some(ev) = stream.next().await {
                        let Ok(ev) = ev else { break };
                        if ev.kind != berth_store::EventKind::Put {
                            continue;
                        }
                        if let Ok(g) =
                            serde_json::from_slice::<InstanceGeneration<'_>>(&ev.kv.value)
                        {
                            app.agents.publish(&g.id, g.generation);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "instance watch failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The desired state of one instance: every task holding resources on it.
pub async fn desired_state(
    ctx: &Ctx,
    inst: &ContainerInstanceRecord,
) -> Result<Vec<DesiredTask>, ApiError> {
    let live = crate::ecs::tasks::live_on_instance(ctx, &inst.cluster, &inst.id).await?;
    let mut out = Vec::with_capacity(live.len());
    for t in live {
        let td = crate::ecs::taskdefs::by_arn(ctx, &t.task_definition_arn)
            .await?
            .map(|r| ecs::TaskDefinition::from(r.definition.clone()));
        let Some(task_definition) = td else {
            tracing::warn!(task = %t.id, td = %t.task_definition_arn, "task definition of a live task is gone");
            continue;
        };
        out.push(DesiredTask {
            task_arn: ctx.app.scope.task_arn(&t.cluster, &t.id),
            cluster_arn: ctx.app.scope.cluster_arn(&t.cluster),
            desired_status: t.desired_status.as_str().to_string(),
            task_definition,
            overrides: t.overrides.clone().into(),
            group: t.group.clone(),
            started_by: t.started_by.clone(),
            created_at: t.created_at,
            stopped_reason: t.stopped_reason.clone(),
            stop_code: t.stop_code.clone(),
            tags: crate::records::tags_to_wire(&t.tags),
            network_configuration: t.network_configuration.clone().map(Into::into),
            gpu_ids: t
                .containers
                .iter()
                .filter(|c| !c.gpu_ids.is_empty())
                .map(|c| (c.name.clone(), c.gpu_ids.clone()))
                .collect(),
        });
    }
    Ok(out)
}

pub(crate) fn instance_id_of(arn: &str) -> Option<&str> {
    if arn.starts_with("arn:") {
        match berth_core::Arn::parse(arn)?.ecs_resource()? {
            (berth_core::ResourceKind::ContainerInstance, rest) => rest.rsplit('/').next(),
            _ => None,
        }
    } else {
        Some(arn)
    }
}

pub async fn poll(ctx: &Ctx, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: PollRequest = berth_service::codec::parse(body)?;
    let cluster = crate::ecs::args::cluster_arg(Some(&req.cluster))?;
    let id = instance_id_of(&req.container_instance_arn)
        .ok_or_else(|| {
            ApiError::invalid_parameter("containerInstanceArn is not a container instance ARN.")
        })?
        .to_string();
    let key = keys::instance(&cluster, &id);
    let wait = Duration::from_secs(req.wait_seconds.min(MAX_WAIT_SECONDS) as u64);
    let mut rx = ctx.app.agents.subscribe(&id);
    let deadline = tokio::time::Instant::now() + wait;
    ctx.app.metrics.agent_polls_held.inc();
    let _held = scopeguard(|| {
        ctx.app.metrics.agent_polls_held.dec();
    });
    loop {
        ctx.app.agents.seen(&id);
        let inst = match ctx.app.repo.get::<ContainerInstanceRecord>(&key).await? {
            Some(r) => r.value,
            None => {
                return berth_service::codec::encode(&PollResponse {
                    generation: req.known_generation,
                    instance_status: InstanceStatus::Inactive.as_str().to_string(),
                    tasks: vec![],
                })
            }
        };
        if inst.generation > req.known_generation
            || inst.status == InstanceStatus::Inactive
            || tokio::time::Instant::now() >= deadline
        {
            let tasks = if inst.status == InstanceStatus::Inactive {
                vec![]
            } else {
                desired_state(ctx, &inst).await?
            };
            return berth_service::codec::encode(&PollResponse {
                generation: inst.generation,
                instance_status: inst.status.as_str().to_string(),
                tasks,
            });
        }
        match &mut rx {
            Some(rx) => {
                let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            }
            None => tokio::time::sleep_until(deadline).await,
        }
    }
}

/// Runs `f` when dropped (the poll may end by return, error or cancellation).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{AttributeRecord, HeldRecord, ResourcesRecord};

    /// The generation watch's two-field view reads what a stored instance record holds,
    /// whatever else it carries (ids with escapes are borrowed or copied as needed).
    #[test]
    fn the_generation_view_reads_a_stored_instance_record() {
        for id in ["0123456789abcdef", "with \"escapes\" \\ in it"] {
            let rec = ContainerInstanceRecord {
                id: id.into(),
                cluster: "c".into(),
                ec2_instance_id: Some("i-1".into()),
                status: InstanceStatus::Active,
                status_reason: None,
                registered_at: 1.5,
                registered: ResourcesRecord {
                    cpu: 1024,
                    memory: 2048,
                    ..Default::default()
                },
                attributes: std::sync::Arc::new(vec![AttributeRecord {
                    name: "generation".into(),
                    value: Some("not this one".into()),
                }]),
                version_info: None,
                tags: vec![],
                generation: 42,
                version: 7,
                held: HeldRecord::default(),
            };
            let bytes = serde_json::to_vec(&rec).unwrap();
            let g: InstanceGeneration<'_> = serde_json::from_slice(&bytes).unwrap();
            assert_eq!((g.id.as_ref(), g.generation), (id, 42));
        }
    }
}
