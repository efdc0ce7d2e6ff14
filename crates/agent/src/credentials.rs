//! The task IAM role credentials endpoint, as the ECS agent serves it.
//!
//! With `ECS_ENABLE_TASK_IAM_ROLE=true` the agent listens on `169.254.170.2:80` (adding that
//! link-local address to `lo` when the host lacks it; containers reach it through their default
//! gateway, the host) and gives every container of a task with a task role
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/<id>`. The AWS SDKs and CLI then fetch
//! `http://169.254.170.2/v2/credentials/<id>` on their own and get
//! `{"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`.
//!
//! The credentials come from the control plane (`GetTaskRoleCredentials`, see
//! `berth_control_plane::task_credentials`) when the task starts (or is adopted after an agent
//! restart), and are refreshed in the background at half their lifetime; a stopped task's are
//! forgotten. `<id>` is an HMAC of the task ARN under the agent's persisted key: unguessable, and
//! the same after a restart, so adopted containers keep a working URI.
//!
//! Host-mode tasks get the variable only with `ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true`
//! (they share the host's network, so anything on the host can reach the endpoint), as in ECS.
//! With `BERTH_CREDENTIALS_ADDRESS` set to another address the containers get
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` instead.

use crate::now_epoch;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_agent_api::{TaskCredentials, TaskCredentialsRequest};
use serde_json::json;

use crate::config::{AgentConfig, ECS_CREDENTIALS_ADDRESS};
use crate::control::{ControlPlane, ControlPlaneError};
use crate::spec::TaskNetworkMode;

/// How often the refresher looks for credentials past half their lifetime.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The endpoint could not be started.
#[derive(Debug, thiserror::Error)]
#[error("ECS_ENABLE_TASK_IAM_ROLE is true, but the task credentials endpoint cannot listen on {address} (BERTH_CREDENTIALS_ADDRESS): {reason}")]
pub struct StartError {
    address: SocketAddr,
    reason: String,
}

struct Entry {
    task_arn: String,
    credentials: TaskCredentials,
    /// Epoch seconds when they were fetched (the refresher renews at half-life).
    fetched_at: f64,
}

/// The endpoint's state: credentials by id.
pub struct CredentialsService {
    key: Vec<u8>,
    control: Arc<dyn ControlPlane>,
    cluster: String,
    instance_arn: String,
    /// `Some(base)` when the containers need a full URI (not the ECS address).
    full_uri_base: Option<String>,
    host_mode: bool,
    entries: RwLock<HashMap<String, Entry>>,
}

impl std::fmt::Debug for CredentialsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsService")
            .field("full_uri_base", &self.full_uri_base)
            .field("host_mode", &self.host_mode)
            .finish_non_exhaustive()
    }
}

impl CredentialsService {
    /// A service whose containers reach it at `address`.
    pub fn new(
        key: Vec<u8>,
        control: Arc<dyn ControlPlane>,
        config: &AgentConfig,
        instance_arn: &str,
        address: SocketAddr,
    ) -> Self {
        Self {
            key,
            control,
            cluster: config.cluster.clone(),
            instance_arn: instance_arn.to_string(),
            full_uri_base: (address != ECS_CREDENTIALS_ADDRESS)
                .then(|| format!("http://{address}")),
            host_mode: config.enable_task_iam_role_network_host,
            entries: RwLock::default(),
        }
    }

    /// The credentials id of a task.
    pub fn id_for(&self, task_arn: &str) -> String {
        crate::metadata::keyed_id(
            &self.key,
            &[b"berth-task-credentials-v1\0", task_arn.as_bytes()],
        )
    }

    /// The variable that points a container of a task in `mode` at its credentials, or `None`
    /// when tasks in that mode get no credentials here (host mode without
    /// `ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST`, or `none`).
    pub fn env_for(&self, task_arn: &str, mode: TaskNetworkMode) -> Option<(String, String)> {
        match mode {
            TaskNetworkMode::None => return None,
            TaskNetworkMode::Host if !self.host_mode => return None,
            _ => {}
        }
        let path = format!("/v2/credentials/{}", self.id_for(task_arn));
        Some(match &self.full_uri_base {
            None => ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".into(), path),
            Some(base) => (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("{base}{path}"),
            ),
        })
    }

    /// Fetches a task's credentials from the control plane and serves them.
    pub async fn fetch(&self, task_arn: &str) -> Result<(), ControlPlaneError> {
        self.get(task_arn, false).await
    }

    /// Renews a task's credentials if they are still served (a task that stopped meanwhile
    /// stays forgotten).
    async fn renew(&self, task_arn: &str) -> Result<(), ControlPlaneError> {
        self.get(task_arn, true).await
    }

    async fn get(&self, task_arn: &str, only_if_served: bool) -> Result<(), ControlPlaneError> {
        let credentials = self
            .control
            .task_credentials(&TaskCredentialsRequest {
                cluster: self.cluster.clone(),
                container_instance_arn: self.instance_arn.clone(),
                task_arn: task_arn.to_string(),
            })
            .await?;
        let id = self.id_for(task_arn);
        if let Ok(mut m) = self.entries.write() {
            if only_if_served && !m.contains_key(&id) {
                return Ok(());
            }
            m.insert(
                id,
                Entry {
                    task_arn: task_arn.to_string(),
                    credentials,
                    fetched_at: now_epoch(),
                },
            );
        }
        Ok(())
    }

    /// Stops serving a task's credentials (the task stopped).
    pub fn remove(&self, task_arn: &str) {
        let id = self.id_for(task_arn);
        if let Ok(mut m) = self.entries.write() {
            m.remove(&id);
        }
    }

    /// The task ARNs whose credentials are past half their lifetime at `now`.
    fn due(&self, now: f64) -> Vec<String> {
        self.entries
            .read()
            .map(|m| {
                m.values()
                    .filter(|e| {
                        let half = (e.credentials.expiration - e.fetched_at) / 2.0;
                        now >= e.fetched_at + half
                    })
                    .map(|e| e.task_arn.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Renews credentials at half their lifetime, until the service is dropped.
    fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(svc) = weak.upgrade() else { return };
                for task_arn in svc.due(now_epoch()) {
                    match svc.renew(&task_arn).await {
                        Ok(()) => {
                            tracing::debug!(task = %task_arn, "task role credentials renewed")
                        }
                        // Unreachable, busy, throttled: keep serving the current ones, try again
                        // next round.
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(task = %task_arn, error = %e, "task role credentials renewal failed; retrying")
                        }
                        // The control plane no longer gives them (the task stopped): forget.
                        Err(e) => {
                            tracing::info!(task = %task_arn, error = %e, "task role credentials not renewed");
                            svc.remove(&task_arn);
                        }
                    }
                }
            }
        });
    }

    fn lookup(&self, id: &str) -> Option<TaskCredentials> {
        Some(self.entries.read().ok()?.get(id)?.credentials.clone())
    }
}

/// The document the SDKs read (ECS's field names, RFC 3339 expiration).
pub fn credentials_json(c: &TaskCredentials) -> serde_json::Value {
    // Whole seconds, as STS and the ECS agent print it.
    let exp = berth_core::time::rfc3339_epoch(c.expiration, 0);
    json!({
        "RoleArn": c.role_arn,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": exp,
    })
}

async fn serve_credentials(
    State(svc): State<Arc<CredentialsService>>,
    Path(id): Path<String>,
) -> Response {
    match svc.lookup(&id) {
        Some(c) => Json(credentials_json(&c)).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "code": "InvalidIdInRequest",
                "message": "CredentialsV2Request: Credentials not found",
            })),
        )
            .into_response(),
    }
}

/// The endpoint's routes.
pub fn router(svc: Arc<CredentialsService>) -> Router {
    Router::new()
        .route("/v2/credentials/{id}", get(serve_credentials))
        .with_state(svc)
}

/// Binds `address`, first adding its IP to `lo` when the host has no such address (ECS's
/// 169.254.170.2 is on no interface of a fresh host).
async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    let fail = |reason: String| StartError { address, reason };
    match tokio::net::TcpListener::bind(address).await {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let cidr = match address.ip() {
        std::net::IpAddr::V4(ip) => format!("{ip}/32"),
        std::net::IpAddr::V6(ip) => format!("{ip}/128"),
    };
    // Once, at start: a blocking call is fine here.
    let out = std::process::Command::new("ip")
        .args(["addr", "add", &cidr, "dev", "lo"])
        .output()
        .map_err(|e| fail(format!("cannot run `ip addr add {cidr} dev lo`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Another agent may have added it meanwhile.
        if !err.contains("File exists") {
            return Err(fail(format!(
                "`ip addr add {cidr} dev lo` failed: {}",
                err.trim()
            )));
        }
    }
    tracing::info!(address = %cidr, "added the task credentials address to lo");
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Claims the endpoint's address when `ECS_ENABLE_TASK_IAM_ROLE` is on (`Ok(None)` when it
/// is off): before registration, so an agent that cannot serve credentials never advertises
/// the capability.
pub async fn listen(config: &AgentConfig) -> Result<Option<tokio::net::TcpListener>, StartError> {
    if !config.enable_task_iam_role {
        return Ok(None);
    }
    bind(config.credentials_address).await.map(Some)
}

/// Serves the endpoint on `listener` (from [`listen`]).
pub fn serve(
    listener: tokio::net::TcpListener,
    config: &AgentConfig,
    control: Arc<dyn ControlPlane>,
    key: Vec<u8>,
    instance_arn: &str,
) -> Arc<CredentialsService> {
    let address = listener.local_addr().unwrap_or(config.credentials_address);
    let svc = Arc::new(CredentialsService::new(
        key,
        control,
        config,
        instance_arn,
        address,
    ));
    svc.spawn_refresher();
    let app = router(svc.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "task credentials endpoint stopped");
        }
    });
    tracing::info!(%address, "task IAM role credentials endpoint listening");
    svc
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Issuer;

    #[async_trait::async_trait]
    impl ControlPlane for Issuer {
        async fn register(
            &self,
            _: &berth_wire::ecs::RegisterContainerInstanceRequest,
        ) -> Result<berth_wire::ecs::RegisterContainerInstanceResponse, ControlPlaneError> {
            unreachable!()
        }
        async fn poll(
            &self,
            _: &berth_agent_api::PollRequest,
        ) -> Result<berth_agent_api::PollResponse, ControlPlaneError> {
            unreachable!()
        }
        async fn submit_task_state(
            &self,
            _: &crate::control::TaskStateChange,
        ) -> Result<(), ControlPlaneError> {
            unreachable!()
        }
        async fn submit_container_state(
            &self,
            _: &berth_wire::ecs::SubmitContainerStateChangeRequest,
        ) -> Result<(), ControlPlaneError> {
            unreachable!()
        }
        async fn task_credentials(
            &self,
            req: &TaskCredentialsRequest,
        ) -> Result<TaskCredentials, ControlPlaneError> {
            if req.task_arn.ends_with("/gone") {
                return Err(ControlPlaneError::Rejected {
                    status: 400,
                    code: "InvalidParameterException".into(),
                    message: "The task has stopped.".into(),
                });
            }
            Ok(TaskCredentials {
                role_arn: "arn:aws:iam::000000000000:role/app".into(),
                access_key_id: format!("ASIA{}", req.task_arn.len()),
                secret_access_key: "s".into(),
                session_token: "t".into(),
                expiration: 1_800_000_000.5,
            })
        }
    }

    fn service(host_mode: bool, address: SocketAddr) -> CredentialsService {
        let config = AgentConfig {
            enable_task_iam_role: true,
            enable_task_iam_role_network_host: host_mode,
            ..AgentConfig::default()
        };
        CredentialsService::new(
            vec![7; 32],
            Arc::new(Issuer),
            &config,
            "arn:aws:ecs:us-east-1:0:container-instance/default/x",
            address,
        )
    }

    #[tokio::test]
    async fn serves_fetched_credentials_under_an_unguessable_id() {
        let svc = service(false, ECS_CREDENTIALS_ADDRESS);
        let task = "arn:aws:ecs:us-east-1:0:task/default/abc";
        let (k, v) = svc.env_for(task, TaskNetworkMode::Bridge).unwrap();
        assert_eq!(k, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        let id = v.strip_prefix("/v2/credentials/").unwrap();
        assert_eq!(id.len(), 32);
        assert_ne!(id, svc.id_for("arn:aws:ecs:us-east-1:0:task/default/abd"));
        assert!(svc.lookup(id).is_none());
        svc.fetch(task).await.unwrap();
        let doc = credentials_json(&svc.lookup(id).unwrap());
        assert_eq!(doc["RoleArn"], "arn:aws:iam::000000000000:role/app");
        assert_eq!(doc["Token"], "t");
        assert_eq!(doc["Expiration"], "2027-01-15T08:00:00Z");
        svc.remove(task);
        assert!(svc.lookup(id).is_none());
        // A renewal that finishes after the task stopped doesn't bring them back.
        svc.renew(task).await.unwrap();
        assert!(svc.lookup(id).is_none());
        assert!(svc
            .fetch("arn:aws:ecs:us-east-1:0:task/default/gone")
            .await
            .is_err());
    }

    #[test]
    fn host_mode_needs_its_own_switch_and_other_addresses_get_a_full_uri() {
        let task = "arn:aws:ecs:us-east-1:0:task/default/abc";
        assert!(service(false, ECS_CREDENTIALS_ADDRESS)
            .env_for(task, TaskNetworkMode::Host)
            .is_none());
        assert!(service(true, ECS_CREDENTIALS_ADDRESS)
            .env_for(task, TaskNetworkMode::Host)
            .is_some());
        assert!(service(true, ECS_CREDENTIALS_ADDRESS)
            .env_for(task, TaskNetworkMode::None)
            .is_none());
        let (k, v) = service(false, "127.0.0.1:9999".parse().unwrap())
            .env_for(task, TaskNetworkMode::Awsvpc)
            .unwrap();
        assert_eq!(k, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
        assert!(
            v.starts_with("http://127.0.0.1:9999/v2/credentials/"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn renewal_is_due_at_half_life() {
        let svc = service(false, ECS_CREDENTIALS_ADDRESS);
        let task = "arn:aws:ecs:us-east-1:0:task/default/abc";
        svc.fetch(task).await.unwrap();
        let fetched = now_epoch();
        let half = (1_800_000_000.5 - fetched) / 2.0;
        assert!(svc.due(fetched + half - 5.0).is_empty());
        assert_eq!(svc.due(fetched + half + 5.0), vec![task.to_string()]);
    }
}
