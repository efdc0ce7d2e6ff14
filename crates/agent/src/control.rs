//! The agent's view of the control plane: [`ControlPlane`] (register, poll, report), its real
//! implementation [`HttpControlPlane`] on `berth-client` (SigV4, fail-over across endpoints), and
//! [`FakeControlPlane`] for tests.
//!
//! State reports are the generated `SubmitTaskStateChange` shape plus a few berth extension members
//! the ECS model has no place for (see [`TaskStateChange::to_wire`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_agent_api::{
    PollRequest, PollResponse, TaskCredentials, TaskCredentialsRequest, MAX_WAIT_SECONDS,
    POLL_OPERATION, TARGET_PREFIX, TASK_CREDENTIALS_OPERATION,
};
use berth_wire::ecs;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::awslogs::LogSink;
use crate::registry_auth::AuthorizationToken;

/// A failed control-plane call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlPlaneError {
    /// No endpoint answered (connection refused, timeout, …).
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// The control plane answered with an error.
    #[error("{code}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// AWS error code (`ClientException`, `ServerException`, …).
        code: String,
        /// Message.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Decode(String),
}

impl ControlPlaneError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ControlPlaneError::Unreachable(_) | ControlPlaneError::Decode(_) => true,
            ControlPlaneError::Rejected { status, code, .. } => {
                *status >= 500
                    || code.contains("Throttl")
                    || code == "ServerException"
                    || code == "UnsupportedFeatureException"
                    || code == "AccessDeniedException"
                    || code == "UnrecognizedClientException"
            }
        }
    }
}

/// One container's part of a task report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerReport {
    /// `containerName`.
    pub name: String,
    /// Docker id (`runtimeId`).
    pub runtime_id: Option<String>,
    /// PENDING, RUNNING, STOPPED.
    pub status: String,
    /// Exit code once stopped.
    pub exit_code: Option<i32>,
    /// Why it stopped / failed.
    pub reason: Option<String>,
    /// Host port bindings in effect.
    pub network_bindings: Vec<ecs::NetworkBinding>,
    /// `sha256:…` manifest digest of the image.
    pub image_digest: Option<String>,
    /// HEALTHY, UNHEALTHY, UNKNOWN (berth extension member `healthStatus`).
    pub health_status: Option<String>,
    /// Private IPv4 of the container on the task network (awsvpc; extension `networkInterfaces`).
    pub private_ipv4: Option<String>,
    /// The task's ENI attachment id, with `private_ipv4` (awsvpc).
    pub attachment_id: Option<String>,
}

/// An attachment (berth's awsvpc "ENI") in a task report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttachmentReport {
    /// Attachment ARN.
    pub arn: String,
    /// `ElasticNetworkInterface`.
    pub kind: String,
    /// PRECREATED, ATTACHED, DELETED.
    pub status: String,
    /// name → value (`networkInterfaceId`, `macAddress`, `privateIPv4Address`,
    /// `subnetGatewayIpv4Address`, …).
    pub details: Vec<(String, String)>,
}

/// A complete task report: the task's status and every container (ECS `SubmitTaskStateChange`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskStateChange {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Task ARN.
    pub task_arn: String,
    /// PENDING, RUNNING, STOPPED.
    pub status: String,
    /// Why the task stopped.
    pub reason: Option<String>,
    /// Stop code (`EssentialContainerExited`, `TaskFailedToStart`; extension member `stopCode`).
    pub stop_code: Option<String>,
    /// Every container.
    pub containers: Vec<ContainerReport>,
    /// Attachments (awsvpc).
    pub attachments: Vec<AttachmentReport>,
    /// Epoch seconds.
    pub pull_started_at: Option<f64>,
    /// Epoch seconds.
    pub pull_stopped_at: Option<f64>,
    /// Epoch seconds.
    pub execution_stopped_at: Option<f64>,
    /// HEALTHY, UNHEALTHY, UNKNOWN (extension member `healthStatus`).
    pub health_status: Option<String>,
}

impl TaskStateChange {
    /// The JSON body of `SubmitTaskStateChange`: the generated request, plus berth extension
    /// members that AWS's model has no place for and servers that do not know them ignore:
    /// top-level `stopCode` and `healthStatus`; per container `healthStatus` and
    /// `networkInterfaces: [{privateIpv4Address}]`; per attachment `type` and `details`.
    pub fn to_wire(&self) -> Value {
        let req = ecs::SubmitTaskStateChangeRequest {
            cluster: Some(self.cluster.clone()),
            task: Some(self.task_arn.clone()),
            status: Some(self.status.clone()),
            reason: self.reason.clone(),
            containers: Some(
                self.containers
                    .iter()
                    .map(|c| ecs::ContainerStateChange {
                        container_name: Some(c.name.clone()),
                        image_digest: c.image_digest.clone(),
                        runtime_id: c.runtime_id.clone(),
                        exit_code: c.exit_code,
                        network_bindings: Some(c.network_bindings.clone()),
                        reason: c.reason.clone(),
                        status: Some(c.status.clone()),
                    })
                    .collect(),
            ),
            attachments: if self.attachments.is_empty() {
                None
            } else {
                Some(
                    self.attachments
                        .iter()
                        .map(|a| ecs::AttachmentStateChange {
                            attachment_arn: Some(a.arn.clone()),
                            status: Some(a.status.clone()),
                        })
                        .collect(),
                )
            },
            managed_agents: None,
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            execution_stopped_at: self.execution_stopped_at,
        };
        let mut v = serde_json::to_value(&req).unwrap_or_else(|_| json!({}));
        if let Some(code) = &self.stop_code {
            v["stopCode"] = json!(code);
        }
        if let Some(h) = &self.health_status {
            v["healthStatus"] = json!(h);
        }
        if let Some(list) = v.get_mut("containers").and_then(Value::as_array_mut) {
            for (w, c) in list.iter_mut().zip(&self.containers) {
                if let Some(h) = &c.health_status {
                    w["healthStatus"] = json!(h);
                }
                if let Some(ip) = &c.private_ipv4 {
                    let mut ni = json!({ "privateIpv4Address": ip });
                    if let Some(a) = &c.attachment_id {
                        ni["attachmentId"] = json!(a);
                    }
                    w["networkInterfaces"] = json!([ni]);
                }
            }
        }
        if let Some(list) = v.get_mut("attachments").and_then(Value::as_array_mut) {
            for (w, a) in list.iter_mut().zip(&self.attachments) {
                w["type"] = json!(a.kind);
                w["details"] = Value::Array(
                    a.details
                        .iter()
                        .map(|(n, v)| json!({"name": n, "value": v}))
                        .collect(),
                );
            }
        }
        v
    }
}

/// What the agent needs from the control plane.
#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// `RegisterContainerInstance`.
    async fn register(
        &self,
        request: &ecs::RegisterContainerInstanceRequest,
    ) -> Result<ecs::RegisterContainerInstanceResponse, ControlPlaneError>;

    /// `BerthAgent_20261122.PollDesiredState` (a long poll).
    async fn poll(&self, request: &PollRequest) -> Result<PollResponse, ControlPlaneError>;

    /// `SubmitTaskStateChange`.
    async fn submit_task_state(&self, change: &TaskStateChange) -> Result<(), ControlPlaneError>;

    /// `SubmitContainerStateChange`.
    async fn submit_container_state(
        &self,
        change: &ecs::SubmitContainerStateChangeRequest,
    ) -> Result<(), ControlPlaneError>;

    /// ECR's `GetAuthorizationToken`: credentials for pulls from the control plane's registry.
    /// Control planes without a registry refuse it (the default).
    async fn get_authorization_token(&self) -> Result<AuthorizationToken, ControlPlaneError> {
        Err(ControlPlaneError::Rejected {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "this control plane has no image registry".into(),
        })
    }

    /// `BerthAgent_20261122.GetTaskRoleCredentials`: temporary credentials for a task's IAM
    /// role. Control planes without task roles refuse it (the default).
    async fn task_credentials(
        &self,
        _request: &TaskCredentialsRequest,
    ) -> Result<TaskCredentials, ControlPlaneError> {
        Err(ControlPlaneError::Rejected {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "this control plane issues no task role credentials".into(),
        })
    }

    /// Secrets Manager's `GetSecretValue`: the `SecretString` (None for a binary secret).
    async fn get_secret_value(
        &self,
        _secret_id: &str,
        _version_stage: Option<&str>,
        _version_id: Option<&str>,
    ) -> Result<Option<String>, ControlPlaneError> {
        Err(ControlPlaneError::Rejected {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "this control plane has no Secrets Manager".into(),
        })
    }

    /// SSM's `GetParameters` for one parameter, decrypted: its value, or None when it does
    /// not exist.
    async fn get_parameter(&self, _name: &str) -> Result<Option<String>, ControlPlaneError> {
        Err(ControlPlaneError::Rejected {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "this control plane has no Parameter Store".into(),
        })
    }

    /// S3's `GetObject`: the object's bytes.
    async fn get_object(&self, _bucket: &str, _key: &str) -> Result<Vec<u8>, ControlPlaneError> {
        Err(ControlPlaneError::Rejected {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "this control plane has no S3".into(),
        })
    }
}

/// [`ControlPlane`] over HTTP: SigV4-signed awsJson calls through `berth-client`, trying each
/// endpoint in turn, starting with the one that last worked.
pub struct HttpControlPlane {
    clients: Vec<berth_client::Client>,
    poll_clients: Vec<berth_client::Client>,
    current: AtomicUsize,
}

impl std::fmt::Debug for HttpControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpControlPlane")
            .field(
                "endpoints",
                &self
                    .clients
                    .iter()
                    .map(|c| c.endpoint())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";

impl HttpControlPlane {
    /// A client for `endpoints` (tried in order) with the agent's key.
    pub fn new(
        endpoints: &[String],
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, berth_client::ClientError> {
        let mut clients = Vec::new();
        let mut poll_clients = Vec::new();
        for e in endpoints {
            let c = berth_client::Client::new(e, region, access_key_id, secret_access_key)?
                .with_timeout(Duration::from_secs(15));
            poll_clients.push(
                c.clone()
                    .with_timeout(Duration::from_secs(u64::from(MAX_WAIT_SECONDS) + 15)),
            );
            clients.push(c);
        }
        if clients.is_empty() {
            return Err(berth_client::ClientError::Endpoint("no endpoint".into()));
        }
        Ok(Self {
            clients,
            poll_clients,
            current: AtomicUsize::new(0),
        })
    }

    async fn call(
        &self,
        long: bool,
        target: &str,
        body: &Value,
    ) -> Result<Value, ControlPlaneError> {
        self.call_service("ecs", long, target, body).await
    }

    async fn call_service(
        &self,
        signing_name: &str,
        long: bool,
        target: &str,
        body: &Value,
    ) -> Result<Value, ControlPlaneError> {
        self.failover(long, |c| c.call(signing_name, target, body))
            .await
    }

    /// Runs `f` against each endpoint in turn (starting with the one that last worked) until
    /// one answers; an answer the control plane refused (4xx) is final.
    async fn failover<'a, T, F, Fut>(&'a self, long: bool, f: F) -> Result<T, ControlPlaneError>
    where
        F: Fn(&'a berth_client::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, berth_client::ClientError>>,
    {
        let pool = if long {
            &self.poll_clients
        } else {
            &self.clients
        };
        let start = self.current.load(Ordering::Relaxed) % pool.len();
        let mut last = ControlPlaneError::Unreachable("no endpoint".into());
        for i in 0..pool.len() {
            let idx = (start + i) % pool.len();
            let client = &pool[idx];
            match f(client).await {
                Ok(v) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(berth_client::ClientError::Api {
                    status,
                    code,
                    message,
                }) if status < 500 => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Err(ControlPlaneError::Rejected {
                        status,
                        code,
                        message,
                    });
                }
                Err(e) => {
                    tracing::debug!(endpoint = client.endpoint(), error = %e, "control-plane call failed; trying next endpoint");
                    last = match e {
                        berth_client::ClientError::Api {
                            status,
                            code,
                            message,
                        } => ControlPlaneError::Rejected {
                            status,
                            code,
                            message,
                        },
                        berth_client::ClientError::Decode(m) => ControlPlaneError::Decode(m),
                        other => ControlPlaneError::Unreachable(format!(
                            "{}: {other}",
                            client.endpoint()
                        )),
                    };
                }
            }
        }
        Err(last)
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, ControlPlaneError> {
    serde_json::to_value(t).map_err(|e| ControlPlaneError::Decode(e.to_string()))
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ControlPlaneError> {
    serde_json::from_value(v).map_err(|e| ControlPlaneError::Decode(e.to_string()))
}

#[async_trait]
impl ControlPlane for HttpControlPlane {
    async fn register(
        &self,
        request: &ecs::RegisterContainerInstanceRequest,
    ) -> Result<ecs::RegisterContainerInstanceResponse, ControlPlaneError> {
        let v = self
            .call(
                false,
                &format!("{ECS_TARGET}.RegisterContainerInstance"),
                &to_value(request)?,
            )
            .await?;
        from_value(v)
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollResponse, ControlPlaneError> {
        let v = self
            .call(
                true,
                &format!("{TARGET_PREFIX}.{POLL_OPERATION}"),
                &to_value(request)?,
            )
            .await?;
        from_value(v)
    }

    async fn submit_task_state(&self, change: &TaskStateChange) -> Result<(), ControlPlaneError> {
        self.call(
            false,
            &format!("{ECS_TARGET}.SubmitTaskStateChange"),
            &change.to_wire(),
        )
        .await
        .map(|_| ())
    }

    async fn submit_container_state(
        &self,
        change: &ecs::SubmitContainerStateChangeRequest,
    ) -> Result<(), ControlPlaneError> {
        self.call(
            false,
            &format!("{ECS_TARGET}.SubmitContainerStateChange"),
            &to_value(change)?,
        )
        .await
        .map(|_| ())
    }

    async fn get_authorization_token(&self) -> Result<AuthorizationToken, ControlPlaneError> {
        let v = self
            .call_service(
                "ecr",
                false,
                &format!("{ECR_TARGET}.GetAuthorizationToken"),
                &json!({}),
            )
            .await?;
        decode_authorization(&v)
    }

    async fn task_credentials(
        &self,
        request: &TaskCredentialsRequest,
    ) -> Result<TaskCredentials, ControlPlaneError> {
        let v = self
            .call(
                false,
                &format!("{TARGET_PREFIX}.{TASK_CREDENTIALS_OPERATION}"),
                &to_value(request)?,
            )
            .await?;
        from_value(v)
    }

    async fn get_secret_value(
        &self,
        secret_id: &str,
        version_stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<Option<String>, ControlPlaneError> {
        let mut body = json!({ "SecretId": secret_id });
        if let Some(s) = version_stage {
            body["VersionStage"] = s.into();
        }
        if let Some(v) = version_id {
            body["VersionId"] = v.into();
        }
        let v = self
            .call_service(
                "secretsmanager",
                false,
                "secretsmanager.GetSecretValue",
                &body,
            )
            .await?;
        Ok(v.get("SecretString")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ControlPlaneError> {
        // S3 paths keep unreserved characters and `/`, everything else percent-encoded.
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~')
            .remove(b'/');
        let path = format!(
            "/{bucket}/{}",
            percent_encoding::utf8_percent_encode(key, SET)
        );
        self.failover(false, |c| {
            let path = path.clone();
            async move { c.send("s3", "GET", &path, None, Vec::new()).await }
        })
        .await
    }

    async fn get_parameter(&self, name: &str) -> Result<Option<String>, ControlPlaneError> {
        let v = self
            .call_service(
                "ssm",
                false,
                "AmazonSSM.GetParameters",
                &json!({ "Names": [name], "WithDecryption": true }),
            )
            .await?;
        Ok(v.get("Parameters")
            .and_then(|p| p.get(0))
            .and_then(|p| p.get("Value"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }
}

const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";

/// The first `authorizationData` of a GetAuthorizationToken answer, decoded.
fn decode_authorization(v: &Value) -> Result<AuthorizationToken, ControlPlaneError> {
    use base64::Engine;
    let bad = |m: &str| ControlPlaneError::Decode(format!("GetAuthorizationToken: {m}"));
    let data = v
        .get("authorizationData")
        .and_then(|d| d.get(0))
        .ok_or_else(|| bad("no authorizationData"))?;
    let raw = data
        .get("authorizationToken")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no authorizationToken"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad("authorizationToken is not base64"))?;
    let raw = String::from_utf8(raw).map_err(|_| bad("authorizationToken is not UTF-8"))?;
    let (user, password) = raw
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not user:password"))?;
    Ok(AuthorizationToken {
        username: user.to_string(),
        password: password.to_string(),
        proxy_endpoint: data
            .get("proxyEndpoint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        expires_at: data.get("expiresAt").and_then(Value::as_f64).unwrap_or(0.0),
    })
}

const LOGS_TARGET: &str = "Logs_20140328";

/// The `awslogs` driver's calls (CloudWatch Logs, signing name `logs`).
#[async_trait]
impl LogSink for HttpControlPlane {
    async fn create_log_group(&self, group: &str) -> Result<(), ControlPlaneError> {
        self.call_service(
            "logs",
            false,
            &format!("{LOGS_TARGET}.CreateLogGroup"),
            &json!({ "logGroupName": group }),
        )
        .await
        .map(|_| ())
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ControlPlaneError> {
        self.call_service(
            "logs",
            false,
            &format!("{LOGS_TARGET}.CreateLogStream"),
            &json!({ "logGroupName": group, "logStreamName": stream }),
        )
        .await
        .map(|_| ())
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[crate::awslogs::LogEvent],
    ) -> Result<(), ControlPlaneError> {
        let events: Vec<Value> = events
            .iter()
            .map(|e| json!({ "timestamp": e.timestamp, "message": e.message }))
            .collect();
        let v = self
            .call_service(
                "logs",
                false,
                &format!("{LOGS_TARGET}.PutLogEvents"),
                &json!({ "logGroupName": group, "logStreamName": stream, "logEvents": events }),
            )
            .await?;
        if let Some(info) = v.get("rejectedLogEventsInfo") {
            tracing::warn!(group, stream, rejected = %info, "PutLogEvents rejected some events (too old, expired or too new)");
        }
        Ok(())
    }
}

#[derive(Default)]
struct FakeState {
    registrations: Vec<ecs::RegisterContainerInstanceRequest>,
    reports: Vec<TaskStateChange>,
    container_reports: Vec<ecs::SubmitContainerStateChangeRequest>,
    polls: Vec<PollRequest>,
    answers: VecDeque<Result<PollResponse, ControlPlaneError>>,
    current: PollResponse,
    down: bool,
    arn_counter: u64,
    registry_token: Option<AuthorizationToken>,
    token_requests: usize,
}

/// An in-memory control plane for tests: records every call; polls answer with scripted
/// responses ([`FakeControlPlane::push_answer`]) or, when none are queued, the current desired
/// state ([`FakeControlPlane::set_desired`]) as soon as its generation exceeds the agent's.
#[derive(Clone, Default)]
pub struct FakeControlPlane {
    state: Arc<Mutex<FakeState>>,
    changed: Arc<Notify>,
    /// The log store behind the fake's CloudWatch Logs calls.
    pub logs: crate::awslogs::FakeLogs,
}

impl std::fmt::Debug for FakeControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeControlPlane").finish_non_exhaustive()
    }
}

impl FakeControlPlane {
    /// An empty fake.
    pub fn new() -> Self {
        let fake = Self::default();
        fake.lock().current.instance_status = "ACTIVE".into();
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the desired state (bumping the generation) and wakes pending polls.
    pub fn set_desired(&self, tasks: Vec<berth_agent_api::DesiredTask>) {
        {
            let mut s = self.lock();
            s.current.generation += 1;
            s.current.tasks = tasks;
        }
        self.changed.notify_waiters();
    }

    /// Sets the instance status (e.g. INACTIVE) with a new generation.
    pub fn set_instance_status(&self, status: &str) {
        {
            let mut s = self.lock();
            s.current.generation += 1;
            s.current.instance_status = status.into();
        }
        self.changed.notify_waiters();
    }

    /// Queues an exact answer for the next poll (e.g. a stale generation).
    pub fn push_answer(&self, answer: Result<PollResponse, ControlPlaneError>) {
        self.lock().answers.push_back(answer);
        self.changed.notify_waiters();
    }

    /// Makes every call fail as unreachable (or work again).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
        self.changed.notify_waiters();
    }

    /// Every task report received, in order.
    pub fn reports(&self) -> Vec<TaskStateChange> {
        self.lock().reports.clone()
    }

    /// The latest report for `task_arn`.
    pub fn latest(&self, task_arn: &str) -> Option<TaskStateChange> {
        self.lock()
            .reports
            .iter()
            .rev()
            .find(|r| r.task_arn == task_arn)
            .cloned()
    }

    /// Registration requests received.
    pub fn registrations(&self) -> Vec<ecs::RegisterContainerInstanceRequest> {
        self.lock().registrations.clone()
    }

    /// Poll requests received.
    pub fn polls(&self) -> Vec<PollRequest> {
        self.lock().polls.clone()
    }

    /// What GetAuthorizationToken answers (`None`: AccessDeniedException).
    pub fn set_registry_token(&self, token: Option<AuthorizationToken>) {
        self.lock().registry_token = token;
    }

    /// How many GetAuthorizationToken calls were made.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    fn check_down(&self) -> Result<(), ControlPlaneError> {
        if self.lock().down {
            Err(ControlPlaneError::Unreachable(
                "fake control plane is down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ControlPlane for FakeControlPlane {
    async fn register(
        &self,
        request: &ecs::RegisterContainerInstanceRequest,
    ) -> Result<ecs::RegisterContainerInstanceResponse, ControlPlaneError> {
        self.check_down()?;
        let mut s = self.lock();
        s.registrations.push(request.clone());
        let arn = match &request.container_instance_arn {
            Some(a) => a.clone(),
            None => {
                s.arn_counter += 1;
                format!(
                    "arn:aws:ecs:us-east-1:000000000000:container-instance/{}/{:032x}",
                    request.cluster.clone().unwrap_or_else(|| "default".into()),
                    s.arn_counter
                )
            }
        };
        Ok(ecs::RegisterContainerInstanceResponse {
            container_instance: Some(ecs::ContainerInstance {
                container_instance_arn: Some(arn),
                status: Some("ACTIVE".into()),
                ..Default::default()
            }),
        })
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollResponse, ControlPlaneError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::from(request.wait_seconds));
        self.lock().polls.push(request.clone());
        loop {
            let notified = self.changed.notified();
            {
                let mut s = self.lock();
                if s.down {
                    return Err(ControlPlaneError::Unreachable(
                        "fake control plane is down".into(),
                    ));
                }
                if let Some(a) = s.answers.pop_front() {
                    return a;
                }
                if s.current.generation > request.known_generation {
                    return Ok(s.current.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(self.lock().current.clone());
            }
        }
    }

    async fn submit_task_state(&self, change: &TaskStateChange) -> Result<(), ControlPlaneError> {
        self.check_down()?;
        self.lock().reports.push(change.clone());
        self.changed.notify_waiters();
        Ok(())
    }

    async fn submit_container_state(
        &self,
        change: &ecs::SubmitContainerStateChangeRequest,
    ) -> Result<(), ControlPlaneError> {
        self.check_down()?;
        self.lock().container_reports.push(change.clone());
        Ok(())
    }

    async fn get_authorization_token(&self) -> Result<AuthorizationToken, ControlPlaneError> {
        self.check_down()?;
        let mut s = self.lock();
        s.token_requests += 1;
        s.registry_token
            .clone()
            .ok_or_else(|| ControlPlaneError::Rejected {
                status: 400,
                code: "AccessDeniedException".into(),
                message: "User is not authorized to perform: ecr:GetAuthorizationToken".into(),
            })
    }
}

#[async_trait]
impl LogSink for FakeControlPlane {
    async fn create_log_group(&self, group: &str) -> Result<(), ControlPlaneError> {
        self.check_down()?;
        self.logs.create_log_group(group).await
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ControlPlaneError> {
        self.check_down()?;
        self.logs.create_log_stream(group, stream).await
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[crate::awslogs::LogEvent],
    ) -> Result<(), ControlPlaneError> {
        self.check_down()?;
        self.logs.put_log_events(group, stream, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_body_has_model_members_and_extensions() {
        let change = TaskStateChange {
            cluster: "default".into(),
            task_arn: "arn:t".into(),
            status: "STOPPED".into(),
            reason: Some("Essential container in task exited".into()),
            stop_code: Some("EssentialContainerExited".into()),
            containers: vec![ContainerReport {
                name: "app".into(),
                runtime_id: Some("abc".into()),
                status: "STOPPED".into(),
                exit_code: Some(3),
                health_status: Some("UNKNOWN".into()),
                private_ipv4: Some("10.0.0.2".into()),
                ..Default::default()
            }],
            attachments: vec![AttachmentReport {
                arn: "arn:a".into(),
                kind: "ElasticNetworkInterface".into(),
                status: "ATTACHED".into(),
                details: vec![("privateIPv4Address".into(), "10.0.0.2".into())],
            }],
            execution_stopped_at: Some(5.0),
            ..Default::default()
        };
        let v = change.to_wire();
        assert_eq!(v["task"], "arn:t");
        assert_eq!(v["status"], "STOPPED");
        assert_eq!(v["stopCode"], "EssentialContainerExited");
        assert_eq!(v["containers"][0]["exitCode"], 3);
        assert_eq!(v["containers"][0]["containerName"], "app");
        assert_eq!(
            v["containers"][0]["networkInterfaces"][0]["privateIpv4Address"],
            "10.0.0.2"
        );
        assert_eq!(v["attachments"][0]["type"], "ElasticNetworkInterface");
        assert_eq!(
            v["attachments"][0]["details"][0]["name"],
            "privateIPv4Address"
        );
        assert_eq!(v["executionStoppedAt"], 5.0);
        // The generated request still decodes it (extensions are ignored).
        let back: ecs::SubmitTaskStateChangeRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back.containers.unwrap()[0].exit_code, Some(3));
    }
}
