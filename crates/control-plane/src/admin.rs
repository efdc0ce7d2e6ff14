//! berth's own operations, on the same endpoint and signed like every other request:
//! `X-Amz-Target: BerthAdmin_20261122.<Operation>` — access-key management for `berth keys`,
//! `DescribeStatus` for `berth status`.

use crate::app::Ctx;
use crate::error::ApiError;
use crate::records::AccessKeyRecord;
use crate::repo::{keys, to_bytes};
use crate::wire::now_epoch;
use berth_auth::Role;
use berth_store::{Compare, Txn};
use serde::{Deserialize, Serialize};

pub const TARGET_PREFIX: &str = "BerthAdmin_20261122";

#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    pub access_key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    pub role: String,
    pub created_at: f64,
    pub description: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateReq {
    role: String,
    description: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeleteReq {
    access_key_id: String,
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("Could not parse the request body: {e}")))
}

/// Creates an access key with `role` and stores it (shared by the API and server bootstrap).
pub async fn create_key(
    app: &crate::App,
    role: Role,
    description: &str,
    fixed: Option<(String, String)>,
) -> Result<AccessKeyRecord, ApiError> {
    let (id, secret) = match fixed {
        Some(pair) => pair,
        None => (
            berth_auth::generate_access_key_id().map_err(|e| ApiError::server(e.to_string()))?,
            berth_auth::generate_secret_access_key()
                .map_err(|e| ApiError::server(e.to_string()))?,
        ),
    };
    let rec = AccessKeyRecord {
        access_key_id: id.clone(),
        secret_access_key: secret,
        role: role.as_str().to_string(),
        created_at: now_epoch(),
        description: description.to_string(),
        session: None,
    };
    app.repo
        .commit(Txn::new().put(keys::access_key(&id), to_bytes(&rec)))
        .await?;
    app.keys.insert(&rec);
    Ok(rec)
}

pub async fn dispatch(ctx: &Ctx, op: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let out = match op {
        "CreateAccessKey" => {
            let req: CreateReq = parse(body)?;
            let role: Role = req.role.parse().map_err(|_| {
                ApiError::invalid_parameter("role must be one of admin, agent, readonly.")
            })?;
            let rec = create_key(&ctx.app, role, &req.description, None).await?;
            tracing::info!(access_key = %rec.access_key_id, role = %rec.role, "access key created");
            serde_json::json!({"accessKey": AccessKey {
                access_key_id: rec.access_key_id,
                secret_access_key: Some(rec.secret_access_key),
                role: rec.role,
                created_at: rec.created_at,
                description: rec.description,
            }})
        }
        "ListAccessKeys" => {
            let recs = ctx
                .app
                .repo
                .list::<AccessKeyRecord>(keys::ACCESS_KEYS)
                .await?;
            // Temporary credentials (task roles) are not keys an operator manages.
            let list: Vec<AccessKey> = recs
                .into_iter()
                .filter(|r| r.value.session.is_none())
                .map(|r| AccessKey {
                    access_key_id: r.value.access_key_id,
                    secret_access_key: None,
                    role: r.value.role,
                    created_at: r.value.created_at,
                    description: r.value.description,
                })
                .collect();
            serde_json::json!({ "accessKeys": list })
        }
        "DeleteAccessKey" => {
            let req: DeleteReq = parse(body)?;
            let key = keys::access_key(&req.access_key_id);
            let recs = ctx
                .app
                .repo
                .list::<AccessKeyRecord>(keys::ACCESS_KEYS)
                .await?;
            let Some(target) = recs
                .iter()
                .find(|r| r.value.access_key_id == req.access_key_id)
            else {
                return Err(ApiError::new(
                    "ResourceNotFoundException",
                    "The specified access key does not exist.",
                ));
            };
            let admins = recs
                .iter()
                .filter(|r| r.value.role == "admin" && r.value.session.is_none())
                .count();
            if target.value.role == "admin" && admins <= 1 {
                return Err(ApiError::invalid_parameter(
                    "The last admin access key cannot be deleted.",
                ));
            }
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: key.clone(),
                    revision: target.revision,
                })
                .delete(key);
            if ctx.app.repo.commit(txn).await?.is_none() {
                return Err(crate::repo::contention());
            }
            ctx.app.keys.remove(&req.access_key_id);
            tracing::info!(access_key = %req.access_key_id, "access key deleted");
            serde_json::json!({})
        }
        "ExplainPlacement" => explain_placement(ctx, body).await?,
        "DescribeStatus" => crate::replicas::describe_status(ctx).await?,
        other => {
            return Err(ApiError::unknown_operation(&format!(
                "{TARGET_PREFIX}.{other}"
            )))
        }
    };
    crate::wire::encode(&out)
}

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
    launch_type: Option<berth_ecs_api::ecs::LaunchType>,
    placement_constraints: Option<Vec<berth_ecs_api::ecs::PlacementConstraint>>,
    placement_strategy: Option<Vec<berth_ecs_api::ecs::PlacementStrategy>>,
}

async fn explain_placement(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    use crate::ecs::tasks;
    use crate::records::ContainerInstanceRecord;
    let req: ExplainReq = parse(body)?;
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
        .filter(|i| i.status != "INACTIVE")
        .collect();
    let snapshot = tasks::snapshot_of(ctx, instances.iter());
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
