//! Task IAM role credentials: `BerthAgent_20261122.GetTaskRoleCredentials`.
//!
//! ECS gives every task with a `taskRoleArn` (from its task definition, or RunTask's
//! `overrides.taskRoleArn`) temporary credentials for that role, which its containers fetch from
//! the agent at `169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`; the AWS SDKs do that on
//! their own. berth has no IAM: the credentials are a temporary berth access key (`ASIA…`, a
//! session token that every request must carry, an expiry) whose berth role comes from
//! `--task-role-access` for the IAM role's name. They sign requests to berth's own endpoint, as
//! `arn:aws:sts::<account>:assumed-role/<role name>/<task id>`.
//!
//! Invariants:
//! - Only `agent` (and `admin`) keys get credentials, never temporary ones; the task must be
//!   placed on the container instance the request names and must not have stopped. Agent keys
//!   are not bound to one instance: any agent key can ask for any placed task (keep agent keys
//!   as secret as admin keys).
//! - Each call issues a new key (the agent refreshes before expiry); expired keys are refused
//!   (`ExpiredTokenException`) and deleted by the leader's maintenance pass.

use crate::keys;
use crate::records::TaskRecord;
use crate::state::Ctx;
use berth_agent_api::{TaskCredentials, TaskCredentialsRequest};
use berth_auth::Role;
use berth_service::auth::{AccessKeyRecord, SessionRecord};
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Versioned};
use berth_service::ApiError;
use berth_store::Txn;
use std::str::FromStr;
use std::sync::Arc;

/// How long issued credentials last. ECS's agent refreshes task credentials well before their
/// (hours-long) expiry; berth's agent refreshes at half of this.
pub const CREDENTIALS_TTL_SECONDS: f64 = 6.0 * 3600.0;

/// Which berth role the credentials of each IAM role get (`--task-role-access`): either one
/// role for every IAM role (`readonly`), or `NAME=ROLE` pairs separated by commas, where NAME is
/// an IAM role name and `*` matches any other (`app-admin=admin,*=readonly`). Without `*` the
/// default is `readonly`. The `agent` role is refused: a task must not speak for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRoleAccess {
    default: Role,
    by_name: Vec<(String, Role)>,
}

impl Default for TaskRoleAccess {
    fn default() -> Self {
        Self {
            default: Role::ReadOnly,
            by_name: Vec::new(),
        }
    }
}

impl TaskRoleAccess {
    /// The berth role for the IAM role `role_arn` (matched by its name, the last path segment).
    pub fn role_for(&self, role_arn: &str) -> Role {
        let name = role_name(role_arn).unwrap_or(role_arn);
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default, |(_, r)| *r)
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.parse::<Role>() {
        Ok(Role::Agent) => Err(format!(
            "'{s}': task credentials cannot have the agent role (use admin or readonly)"
        )),
        Ok(r) => Ok(r),
        Err(e) => Err(e.to_string()),
    }
}

impl FromStr for TaskRoleAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = TaskRoleAccess::default();
        if !s.contains('=') {
            out.default = parse_role(s)?;
            return Ok(out);
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, role) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected NAME=ROLE"))?;
            let (name, role) = (name.trim(), parse_role(role.trim())?);
            if name == "*" {
                out.default = role;
            } else if name.is_empty() {
                return Err(format!("'{part}': the IAM role name is empty"));
            } else {
                out.by_name.push((name.to_string(), role));
            }
        }
        Ok(out)
    }
}

/// The name of an IAM role ARN (`arn:aws:iam::123456789012:role/path/name` → `name`).
pub fn role_name(role_arn: &str) -> Option<&str> {
    let arn = berth_core::Arn::parse(role_arn)?;
    if arn.service != "iam" {
        return None;
    }
    let path = arn.resource.strip_prefix("role/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// A new temporary key id: `ASIA` and 16 characters, as STS issues them.
fn temporary_key_id() -> Result<String, ApiError> {
    let id = berth_auth::generate_access_key_id().map_err(|e| ApiError::server(e.to_string()))?;
    Ok(format!("ASIA{}", &id[4..]))
}

/// A session token: 96 random bytes, base64.
fn session_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 96];
    for chunk in bytes.chunks_mut(32) {
        chunk.copy_from_slice(&rand::random::<[u8; 32]>());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn get_task_role_credentials(ctx: &Ctx, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    // Agents ask for their tasks (admins may do anything); never a task's own credentials.
    if !matches!(ctx.principal.role, Role::Agent | Role::Admin) || ctx.principal.temporary {
        return Err(ApiError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: berth:GetTaskRoleCredentials",
                ctx.principal.arn
            ),
        ));
    }
    let req: TaskCredentialsRequest = berth_service::codec::parse(body)?;
    let cluster = crate::ecs::cluster_arg(Some(&req.cluster))?;
    let not_found = || ApiError::invalid_parameter("The referenced task was not found.");
    let id = crate::ecs::tasks::task_id_of(&req.task_arn).ok_or_else(not_found)?;
    let task = ctx
        .app
        .repo
        .get_arc::<TaskRecord>(&keys::task(&cluster, &id))
        .await?
        .ok_or_else(not_found)?
        .value;
    let instance = crate::agents::instance_id_of(&req.container_instance_arn);
    if instance != Some(task.container_instance_id.as_str()) {
        return Err(ApiError::invalid_parameter(
            "The task is not placed on this container instance.",
        ));
    }
    if task.last_status == "STOPPED" {
        return Err(ApiError::invalid_parameter("The task has stopped."));
    }
    let role_arn = match task.overrides.task_role_arn.clone() {
        Some(r) => r,
        None => crate::ecs::taskdefs::by_arn(ctx, &task.task_definition_arn)
            .await?
            .and_then(|r| r.definition.task_role_arn.clone())
            .ok_or_else(|| ApiError::invalid_parameter("The task has no task role."))?,
    };
    let name = role_name(&role_arn).ok_or_else(|| {
        ApiError::invalid_parameter(format!("The task role is not an IAM role ARN: {role_arn}"))
    })?;
    let role = ctx.app.task_roles.role_for(&role_arn);
    let now = now_epoch();
    let session = SessionRecord {
        token: session_token(),
        expires_at: now + CREDENTIALS_TTL_SECONDS,
        principal_arn: format!(
            "arn:aws:sts::{}:assumed-role/{name}/{id}",
            ctx.app.scope.account
        ),
        role_arn: role_arn.clone(),
        task_arn: ctx.app.scope.task_arn(&cluster, &id),
    };
    let rec = AccessKeyRecord {
        access_key_id: temporary_key_id()?,
        secret_access_key: berth_auth::generate_secret_access_key()
            .map_err(|e| ApiError::server(e.to_string()))?,
        role: role.as_str().to_string(),
        created_at: now,
        description: format!("task role credentials of {}", req.task_arn),
        session: Some(session.clone()),
    };
    ctx.app
        .keys_repo
        .commit(Txn::new().put(
            berth_service::auth::access_key(&rec.access_key_id),
            to_bytes(&rec),
        ))
        .await?;
    ctx.app.keys.insert(&rec);
    tracing::debug!(task = %id, role = %role_arn, access = %role, "task role credentials issued");
    berth_service::codec::encode(&TaskCredentials {
        role_arn,
        access_key_id: rec.access_key_id,
        secret_access_key: rec.secret_access_key,
        session_token: session.token,
        expiration: session.expires_at,
    })
}

/// Deletes temporary keys that expired more than a minute ago (leader maintenance).
pub async fn collect_expired_credentials(ctx: &Ctx) -> Result<usize, ApiError> {
    let cutoff = now_epoch() - 60.0;
    let expired = ctx
        .app
        .keys_repo
        .scan(
            berth_service::auth::ACCESS_KEYS,
            |k: Versioned<Arc<AccessKeyRecord>>| {
                k.value
                    .session
                    .as_ref()
                    .is_some_and(|s| s.expires_at < cutoff)
                    .then(|| (k.key.clone(), k.revision))
            },
        )
        .await?;
    let deleted = ctx.app.keys_repo.delete_unchanged(expired).await?;
    for key in &deleted {
        ctx.app
            .keys
            .remove(key.trim_start_matches(berth_service::auth::ACCESS_KEYS));
    }
    let n = deleted.len();
    if n > 0 {
        tracing::info!(keys = n, "expired task credentials deleted");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_maps_role_names_to_berth_roles() {
        let a: TaskRoleAccess = "app-admin=admin, *=readonly".parse().unwrap();
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/app-admin"),
            Role::Admin
        );
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/team/app-admin"),
            Role::Admin
        );
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/other"),
            Role::ReadOnly
        );
        let all: TaskRoleAccess = "admin".parse().unwrap();
        assert_eq!(all.role_for("arn:aws:iam::1:role/x"), Role::Admin);
        assert_eq!(
            TaskRoleAccess::default().role_for("arn:aws:iam::1:role/x"),
            Role::ReadOnly
        );
        assert!("agent".parse::<TaskRoleAccess>().is_err());
        assert!("x=agent".parse::<TaskRoleAccess>().is_err());
        assert!("x=root".parse::<TaskRoleAccess>().is_err());
        assert!("=admin".parse::<TaskRoleAccess>().is_err());
    }

    #[test]
    fn role_names_come_from_iam_role_arns_only() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/ecsTaskRole"),
            Some("ecsTaskRole")
        );
        assert_eq!(role_name("arn:aws:iam::123456789012:role/a/b/c"), Some("c"));
        assert_eq!(role_name("arn:aws:iam::123456789012:user/bob"), None);
        assert_eq!(role_name("arn:aws:s3:::bucket/role/x"), None);
        assert_eq!(role_name("ecsTaskRole"), None);
    }

    #[test]
    fn temporary_keys_look_like_sts_keys() {
        let id = temporary_key_id().unwrap();
        assert!(id.starts_with("ASIA") && id.len() == 20, "{id}");
        let t = session_token();
        assert_eq!(t.len(), 128);
        assert_ne!(t, session_token());
    }
}
