//! berth-svc-admin: berth's own operations, on the same endpoint and signed like every other
//! request (signing name `berth`): `X-Amz-Target: BerthAdmin_20261122.<Operation>` —
//! access-key management for `berth keys`, `DescribeStatus` for `berth status` (with the
//! background tasks' last runs), `ExplainPlacement` for `berth placement` (answered by ECS through
//! [`EcsAdmin`]).

use berth_auth::Role;
use berth_core::Scope;
use berth_service::auth::{access_key, AccessKeyRecord, KeyCache, ACCESS_KEYS};
use berth_service::codec::encode;
use berth_service::repo::{to_bytes, Repo};
use berth_service::{now_epoch, ApiError, Call, Descriptor, EcsAdmin, Protocol, Reply, Service};
use berth_store::{Compare, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The admin service's state.
pub struct Admin {
    pub repo: Repo,
    pub scope: Scope,
    pub keys: KeyCache,
    pub ecs: Arc<dyn EcsAdmin>,
    /// The background tasks' status (`berth status`), per region.
    pub tasks: TaskMonitors,
}

/// Each region's background-task monitor (regions open while the server runs).
#[derive(Default, Clone)]
pub struct TaskMonitors(Arc<std::sync::RwLock<Vec<(String, berth_tasks::TaskMonitor)>>>);

impl TaskMonitors {
    pub fn add(&self, region: &str, monitor: berth_tasks::TaskMonitor) {
        if let Ok(mut v) = self.0.write() {
            v.push((region.to_string(), monitor));
        }
    }

    /// Every task of every region, each with its region.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let Ok(v) = self.0.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (region, m) in v.iter() {
            for s in m.status() {
                let mut j = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("region".into(), region.clone().into());
                }
                out.push(j);
            }
        }
        out
    }
}

/// What every admin handler gets.
pub type Ctx = berth_service::Ctx<Admin>;

/// The operations of [`TARGET_PREFIX`].
pub const OPERATIONS: &[&str] = &[
    "CreateAccessKey",
    "ListAccessKeys",
    "DeleteAccessKey",
    "ExplainPlacement",
    "DescribeStatus",
];

static DESCRIPTOR: Descriptor = Descriptor {
    name: "admin",
    signing_names: &["berth"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[TARGET_PREFIX],
    body_limit: 1024 * 1024,
    xml_namespace: "",
    knows: |_, op| OPERATIONS.contains(&op),
};

/// The admin service as the edge sees it.
pub struct AdminService(pub Arc<Admin>);

#[async_trait::async_trait]
impl Service for AdminService {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        dispatch(&ctx, call.operation, &call.body)
            .await
            .map(Reply::Json)
    }
}

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

/// A request without members (unknown members are ignored, as AWS does).
#[derive(Debug, Deserialize, Default)]
struct Empty {}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeleteReq {
    access_key_id: String,
}

use berth_service::codec::parse;

/// Creates an access key with `role` and stores it (shared by the API and server bootstrap).
pub async fn create_key(
    app: &Admin,
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
        .commit(Txn::new().put(access_key(&id), to_bytes(&rec)))
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
            let _: Empty = parse(body)?;
            let recs = ctx.app.repo.list::<AccessKeyRecord>(ACCESS_KEYS).await?;
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
            let key = access_key(&req.access_key_id);
            let recs = ctx.app.repo.list::<AccessKeyRecord>(ACCESS_KEYS).await?;
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
                return Err(berth_service::repo::contention());
            }
            ctx.app.keys.remove(&req.access_key_id);
            tracing::info!(access_key = %req.access_key_id, "access key deleted");
            serde_json::json!({})
        }
        "ExplainPlacement" => {
            ctx.app
                .ecs
                .explain_placement(ctx.principal.clone(), body)
                .await?
        }
        "DescribeStatus" => {
            let _: Empty = parse(body)?;
            let mut status = ctx.app.ecs.describe_status().await?;
            if let Some(obj) = status.as_object_mut() {
                obj.insert(
                    "backgroundTasks".into(),
                    serde_json::Value::Array(ctx.app.tasks.status()),
                );
            }
            status
        }
        other => {
            return Err(ApiError::unknown_operation(&format!(
                "{TARGET_PREFIX}.{other}"
            )))
        }
    };
    encode(&out)
}
