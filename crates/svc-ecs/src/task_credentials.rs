//! Task IAM role credentials: `BerthAgent_20261122.GetTaskRoleCredentials`.
//!
//! ECS gives every task with a `taskRoleArn` (from its task definition, or RunTask's
//! `overrides.taskRoleArn`) temporary credentials for that role, which its containers fetch from
//! the agent at `169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`; the AWS SDKs do that on
//! their own. berth has no IAM: the credentials are a temporary berth access key (`ASIA…`, a
//! session token that every request must carry, an expiry) whose berth role comes from
//! `--task-role-access` for the IAM role's name (`task_roles`). They sign requests to berth's own
//! endpoint, as `arn:aws:sts::<account>:assumed-role/<role name>/<task id>`.
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
use crate::task_roles::role_name;
use berth_agent_api::{TaskCredentials, TaskCredentialsRequest};
use berth_auth::Role;
use berth_core::lifecycle::TaskStatus;
use berth_service::auth::{AccessKeyRecord, SessionRecord};
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Versioned};
use berth_service::ApiError;
use berth_store::Txn;
use std::sync::Arc;

pub use crate::task_roles::TaskRoleAccess;

/// How long issued credentials last. ECS's agent refreshes task credentials well before their
/// (hours-long) expiry; berth's agent refreshes at half of this.
pub const CREDENTIALS_TTL_SECONDS: f64 = 6.0 * 3600.0;

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
    let cluster = crate::ecs::args::cluster_arg(Some(&req.cluster))?;
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
    if task.last_status == TaskStatus::Stopped {
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
    fn temporary_keys_look_like_sts_keys() {
        let id = temporary_key_id().unwrap();
        assert!(id.starts_with("ASIA") && id.len() == 20, "{id}");
        let t = session_token();
        assert_eq!(t.len(), 128);
        assert_ne!(t, session_token());
    }
}
