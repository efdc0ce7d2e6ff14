//! The task metadata endpoint, versions 4 and 3, as the ECS agent serves it.
//!
//! Every container gets `ECS_CONTAINER_METADATA_URI_V4` (`http://<addr>:<port>/v4/<token>`) and
//! `ECS_CONTAINER_METADATA_URI` (`…/v3/<token>`) in its environment; under that URI:
//!
//! | path            | answer                                                        |
//! |-----------------|---------------------------------------------------------------|
//! | `${URI}`        | the container's metadata                                      |
//! | `${URI}/task`   | the task's metadata with every container                      |
//! | `${URI}/taskWithTags` | the same plus `TaskTags` (v4)                           |
//! | `${URI}/stats`  | the container's Docker stats document                         |
//! | `${URI}/task/stats` | Docker id → stats document, for every container of the task |
//!
//! Field names follow AWS's documented responses (`DockerId`, `KnownStatus`, `Limits`,
//! `Networks`, `PullStartedAt`, `LaunchType` …). The `<token>` is an HMAC of the task ARN and the
//! container name under a key kept in `ECS_DATADIR` — unguessable, and the same after an agent
//! restart, so adopted containers keep working URIs.
//!
//! Where it listens: ECS answers on 169.254.170.2 (a link-local address its agent routes to
//! itself). berth does not rewrite the host's network; it listens on the Docker bridge gateway
//! (`172.17.0.1` usually — reachable from bridge containers and, routed through the host, from
//! awsvpc task networks) and on 127.0.0.1 (host-mode containers), never on all addresses, on
//! port `BERTH_METADATA_PORT` (default 51679, the port the ECS agent reserves for this; 0 = any
//! free port).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_runtime::{ContainerId, ContainerRuntime};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::spec::TaskNetworkMode;

/// A view of one task for the endpoint, published by its actor on every change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskView {
    /// Cluster name (as the agent is configured).
    pub cluster: String,
    /// Task ARN.
    pub task_arn: String,
    /// Family.
    pub family: String,
    /// Revision.
    pub revision: i32,
    /// RUNNING / STOPPED.
    pub desired_status: String,
    /// PENDING / RUNNING / STOPPED.
    pub known_status: String,
    /// Task-level CPU in vCPUs, when the task definition sets it.
    pub cpu_vcpu: Option<f64>,
    /// Task-level memory in MiB, when the task definition sets it.
    pub memory_mib: Option<i64>,
    /// Epoch seconds.
    pub pull_started_at: Option<f64>,
    /// Epoch seconds.
    pub pull_stopped_at: Option<f64>,
    /// Epoch seconds.
    pub execution_stopped_at: Option<f64>,
    /// Availability zone of the instance.
    pub availability_zone: String,
    /// Service name (from `startedBy`/group `service:<name>`), when the task is a service's.
    pub service_name: Option<String>,
    /// Task tags.
    pub tags: Vec<(String, String)>,
    /// bridge, host, none, awsvpc.
    pub network_mode: String,
    /// The awsvpc interface.
    pub eni: Option<EniView>,
    /// Containers in task-definition order.
    pub containers: Vec<ContainerView>,
}

/// The awsvpc interface of a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EniView {
    /// IPv4 address.
    pub ip: String,
    /// MAC address.
    pub mac: Option<String>,
    /// Subnet CIDR.
    pub subnet: Option<String>,
    /// `gateway/prefix`.
    pub subnet_gateway: Option<String>,
    /// EC2-style private DNS name.
    pub private_dns_name: String,
}

/// One container of a [`TaskView`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerView {
    /// Name in the task definition.
    pub name: String,
    /// Engine id, once created.
    pub docker_id: Option<String>,
    /// Engine name.
    pub docker_name: String,
    /// Image reference.
    pub image: String,
    /// Image id.
    pub image_id: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// RUNNING / STOPPED (the task's desired status, as ECS reports it per container).
    pub desired_status: String,
    /// NONE / PULLED / CREATED / RUNNING / STOPPED.
    pub known_status: String,
    /// `cpu` units.
    pub cpu: i64,
    /// Memory MiB.
    pub memory_mib: Option<i64>,
    /// Times.
    pub created_at: Option<SystemTime>,
    /// Times.
    pub started_at: Option<SystemTime>,
    /// Times.
    pub finished_at: Option<SystemTime>,
    /// Exit code once stopped.
    pub exit_code: Option<i64>,
    /// Health, when the definition declares a check.
    pub health: Option<String>,
    /// Log driver as given in the task definition.
    pub log_driver: Option<String>,
    /// Log options as given.
    pub log_options: BTreeMap<String, String>,
    /// Address on its network (bridge), when known.
    pub ip: Option<String>,
    /// (container port, protocol, host port, host ip).
    pub ports: Vec<(u16, String, u16, String)>,
}

#[derive(Default)]
struct Inner {
    /// token → (task ARN, container name).
    tokens: HashMap<String, (String, String)>,
    tasks: HashMap<String, TaskView>,
}

/// The endpoint's state: who may ask (tokens) and what to answer (task views).
pub struct MetadataService {
    key: Vec<u8>,
    bridge_base: Option<String>,
    host_base: Option<String>,
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for MetadataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataService")
            .field("bridge_base", &self.bridge_base)
            .field("host_base", &self.host_base)
            .finish_non_exhaustive()
    }
}

impl MetadataService {
    /// A service answering under `bridge_base` (e.g. `http://172.17.0.1:51679`) for bridge and
    /// awsvpc containers and `host_base` for host-mode containers.
    pub fn new(key: Vec<u8>, bridge_base: Option<String>, host_base: Option<String>) -> Self {
        Self {
            key,
            bridge_base,
            host_base,
            inner: RwLock::default(),
        }
    }

    /// The path token of one container.
    pub fn token(&self, task_arn: &str, container: &str) -> String {
        keyed_id(
            &self.key,
            &[
                b"berth-task-metadata-v1\0",
                task_arn.as_bytes(),
                b"\0",
                container.as_bytes(),
            ],
        )
    }

    /// The variables ECS injects into a container of a task in `mode`.
    pub fn env_for(
        &self,
        task_arn: &str,
        container: &str,
        mode: TaskNetworkMode,
    ) -> Vec<(String, String)> {
        let mut env = vec![("AWS_EXECUTION_ENV".to_string(), "AWS_ECS_EC2".to_string())];
        let base = match mode {
            TaskNetworkMode::Host => self.host_base.as_ref(),
            TaskNetworkMode::Bridge | TaskNetworkMode::Awsvpc => self.bridge_base.as_ref(),
            TaskNetworkMode::None => None,
        };
        if let Some(base) = base {
            let token = self.token(task_arn, container);
            env.push((
                "ECS_CONTAINER_METADATA_URI_V4".into(),
                format!("{base}/v4/{token}"),
            ));
            env.push((
                "ECS_CONTAINER_METADATA_URI".into(),
                format!("{base}/v3/{token}"),
            ));
        }
        env
    }

    /// Publishes (replaces) a task's view.
    pub fn publish(&self, view: TaskView) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if inner.tasks.get(&view.task_arn) == Some(&view) {
            return;
        }
        for c in &view.containers {
            let token = self.token(&view.task_arn, &c.name);
            inner
                .tokens
                .entry(token)
                .or_insert_with(|| (view.task_arn.clone(), c.name.clone()));
        }
        inner.tasks.insert(view.task_arn.clone(), view);
    }

    /// Forgets a task (cleaned up).
    pub fn remove_task(&self, task_arn: &str) {
        if let Ok(mut inner) = self.inner.write() {
            inner.tasks.remove(task_arn);
            inner.tokens.retain(|_, (t, _)| t != task_arn);
        }
    }

    fn lookup(&self, token: &str) -> Option<(TaskView, String)> {
        let inner = self.inner.read().ok()?;
        let (task, container) = inner.tokens.get(token)?;
        Some((inner.tasks.get(task)?.clone(), container.clone()))
    }
}

/// An unguessable id for a path (the metadata and credentials endpoints): 16 bytes of the HMAC
/// of `parts` under the agent's persisted key, in hex — the same after a restart.
pub(crate) fn keyed_id(key: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Which document version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `ECS_CONTAINER_METADATA_URI`.
    V3,
    /// `ECS_CONTAINER_METADATA_URI_V4`.
    V4,
}

/// RFC 3339 with nanoseconds in UTC, as the ECS agent (Go) prints times.
pub fn rfc3339(t: SystemTime) -> String {
    berth_core::time::rfc3339(t.duration_since(UNIX_EPOCH).unwrap_or_default(), 9)
}

fn epoch_to_time(secs: f64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0))
}

/// The container document.
pub fn container_json(task: &TaskView, c: &ContainerView, v: Version) -> Value {
    let mut m = Map::new();
    if let Some(id) = &c.docker_id {
        m.insert("DockerId".into(), json!(id));
    }
    m.insert("Name".into(), json!(c.name));
    m.insert("DockerName".into(), json!(c.docker_name));
    m.insert("Image".into(), json!(c.image));
    if let Some(id) = &c.image_id {
        m.insert("ImageID".into(), json!(id));
    }
    if !c.ports.is_empty() {
        m.insert(
            "Ports".into(),
            Value::Array(
                c.ports
                    .iter()
                    .map(|(cp, proto, hp, hip)| {
                        json!({"ContainerPort": cp, "Protocol": proto, "HostPort": hp, "HostIp": hip})
                    })
                    .collect(),
            ),
        );
    }
    if !c.labels.is_empty() {
        m.insert("Labels".into(), json!(c.labels));
    }
    m.insert("DesiredStatus".into(), json!(c.desired_status));
    m.insert("KnownStatus".into(), json!(c.known_status));
    if let Some(code) = c.exit_code {
        m.insert("ExitCode".into(), json!(code));
    }
    let mut limits = Map::new();
    limits.insert("CPU".into(), json!(c.cpu));
    if let Some(mem) = c.memory_mib {
        limits.insert("Memory".into(), json!(mem));
    }
    m.insert("Limits".into(), Value::Object(limits));
    if let Some(t) = c.created_at {
        m.insert("CreatedAt".into(), json!(rfc3339(t)));
    }
    if let Some(t) = c.started_at {
        m.insert("StartedAt".into(), json!(rfc3339(t)));
    }
    if let (Some(t), Some(_)) = (c.finished_at, c.exit_code) {
        m.insert("FinishedAt".into(), json!(rfc3339(t)));
    }
    m.insert("Type".into(), json!("NORMAL"));
    if let Some(h) = &c.health {
        m.insert("Health".into(), json!({ "status": h }));
    }
    if v == Version::V4 {
        if let Some(d) = &c.log_driver {
            m.insert("LogDriver".into(), json!(d));
            m.insert("LogOptions".into(), json!(c.log_options));
        }
    }
    let mut net = Map::new();
    net.insert("NetworkMode".into(), json!(task.network_mode));
    match (&task.eni, &c.ip) {
        (Some(eni), _) => {
            net.insert("IPv4Addresses".into(), json!([eni.ip]));
            if v == Version::V4 {
                net.insert("AttachmentIndex".into(), json!(0));
                if let Some(mac) = &eni.mac {
                    net.insert("MACAddress".into(), json!(mac));
                }
                if let Some(s) = &eni.subnet {
                    net.insert("IPv4SubnetCIDRBlock".into(), json!(s));
                }
                net.insert("PrivateDNSName".into(), json!(eni.private_dns_name));
                if let Some(g) = &eni.subnet_gateway {
                    net.insert("SubnetGatewayIpv4Address".into(), json!(g));
                }
            }
        }
        (None, Some(ip)) => {
            net.insert("IPv4Addresses".into(), json!([ip]));
        }
        (None, None) => {}
    }
    if task.network_mode != "none" {
        m.insert("Networks".into(), json!([Value::Object(net)]));
    }
    Value::Object(m)
}

/// The task document.
pub fn task_json(task: &TaskView, v: Version, with_tags: bool) -> Value {
    let mut m = Map::new();
    m.insert("Cluster".into(), json!(task.cluster));
    if v == Version::V4 {
        if let Some(s) = &task.service_name {
            m.insert("ServiceName".into(), json!(s));
        }
    }
    m.insert("TaskARN".into(), json!(task.task_arn));
    m.insert("Family".into(), json!(task.family));
    m.insert("Revision".into(), json!(task.revision.to_string()));
    m.insert("DesiredStatus".into(), json!(task.desired_status));
    m.insert("KnownStatus".into(), json!(task.known_status));
    m.insert(
        "Containers".into(),
        Value::Array(
            task.containers
                .iter()
                .map(|c| container_json(task, c, v))
                .collect(),
        ),
    );
    if task.cpu_vcpu.is_some() || task.memory_mib.is_some() {
        let mut limits = Map::new();
        if let Some(cpu) = task.cpu_vcpu {
            limits.insert("CPU".into(), json!(cpu));
        }
        if let Some(mem) = task.memory_mib {
            limits.insert("Memory".into(), json!(mem));
        }
        m.insert("Limits".into(), Value::Object(limits));
    }
    if let Some(t) = task.pull_started_at {
        m.insert("PullStartedAt".into(), json!(rfc3339(epoch_to_time(t))));
    }
    if let Some(t) = task.pull_stopped_at {
        m.insert("PullStoppedAt".into(), json!(rfc3339(epoch_to_time(t))));
    }
    if let Some(t) = task.execution_stopped_at {
        m.insert(
            "ExecutionStoppedAt".into(),
            json!(rfc3339(epoch_to_time(t))),
        );
    }
    m.insert("AvailabilityZone".into(), json!(task.availability_zone));
    if v == Version::V4 {
        m.insert("LaunchType".into(), json!("EC2"));
    }
    if with_tags {
        let tags: Map<String, Value> = task
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        m.insert("TaskTags".into(), Value::Object(tags));
    }
    Value::Object(m)
}

struct AppState<R> {
    svc: Arc<MetadataService>,
    runtime: Arc<R>,
}

impl<R> Clone for AppState<R> {
    fn clone(&self) -> Self {
        Self {
            svc: self.svc.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!("Unable to find the container for this metadata request").to_string(),
    )
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v.to_string())
}

fn version_of(v: &str) -> Option<Version> {
    match v {
        "v3" => Some(Version::V3),
        "v4" => Some(Version::V4),
        _ => None,
    }
}

async fn container_doc<R: ContainerRuntime>(
    State(st): State<AppState<R>>,
    Path((ver, token)): Path<(String, String)>,
) -> Response {
    let (Some(v), Some((task, name))) = (version_of(&ver), st.svc.lookup(&token)) else {
        return not_found();
    };
    match task.containers.iter().find(|c| c.name == name) {
        Some(c) => ok(&container_json(&task, c, v)),
        None => not_found(),
    }
}

async fn task_doc<R: ContainerRuntime>(
    State(st): State<AppState<R>>,
    Path((ver, token)): Path<(String, String)>,
) -> Response {
    let (Some(v), Some((task, _))) = (version_of(&ver), st.svc.lookup(&token)) else {
        return not_found();
    };
    ok(&task_json(&task, v, false))
}

async fn task_with_tags_doc<R: ContainerRuntime>(
    State(st): State<AppState<R>>,
    Path((ver, token)): Path<(String, String)>,
) -> Response {
    let (Some(Version::V4), Some((task, _))) = (version_of(&ver), st.svc.lookup(&token)) else {
        return not_found();
    };
    ok(&task_json(&task, Version::V4, true))
}

async fn stats_of<R: ContainerRuntime>(runtime: &R, id: &str) -> Value {
    match runtime.stats_json(&ContainerId::new(id)).await {
        Ok(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn container_stats<R: ContainerRuntime>(
    State(st): State<AppState<R>>,
    Path((ver, token)): Path<(String, String)>,
) -> Response {
    let (Some(_), Some((task, name))) = (version_of(&ver), st.svc.lookup(&token)) else {
        return not_found();
    };
    let Some(id) = task
        .containers
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.docker_id.clone())
    else {
        return not_found();
    };
    ok(&stats_of(st.runtime.as_ref(), &id).await)
}

async fn task_stats<R: ContainerRuntime>(
    State(st): State<AppState<R>>,
    Path((ver, token)): Path<(String, String)>,
) -> Response {
    let (Some(_), Some((task, _))) = (version_of(&ver), st.svc.lookup(&token)) else {
        return not_found();
    };
    let ids: Vec<String> = task
        .containers
        .iter()
        .filter_map(|c| c.docker_id.clone())
        .collect();
    let docs =
        futures::future::join_all(ids.iter().map(|id| stats_of(st.runtime.as_ref(), id))).await;
    let m: Map<String, Value> = ids.into_iter().zip(docs).collect();
    ok(&Value::Object(m))
}

/// The endpoint's routes (both versions).
pub fn router<R: ContainerRuntime>(svc: Arc<MetadataService>, runtime: Arc<R>) -> Router {
    Router::new()
        .route("/{ver}/{token}", get(container_doc::<R>))
        .route("/{ver}/{token}/task", get(task_doc::<R>))
        .route("/{ver}/{token}/taskWithTags", get(task_with_tags_doc::<R>))
        .route("/{ver}/{token}/stats", get(container_stats::<R>))
        .route("/{ver}/{token}/task/stats", get(task_stats::<R>))
        .with_state(AppState { svc, runtime })
}

/// Binds the endpoint: on the Docker bridge gateway (when the engine has a bridge network)
/// and on 127.0.0.1, on `port` (0 = one free port for both), and serves it in the background.
/// Returns the service, or `None` when nothing could be bound (a warning says why).
pub async fn start<R: ContainerRuntime>(
    runtime: Arc<R>,
    key: Vec<u8>,
    port: u16,
) -> Option<Arc<MetadataService>> {
    let gateway = match runtime.inspect_network("bridge").await {
        Ok(n) => n
            .subnets
            .iter()
            .find(|s| !s.subnet.contains(':'))
            .and_then(|s| s.gateway_or_first_host()),
        Err(e) => {
            tracing::warn!(error = %e, "no docker bridge network; the task metadata endpoint serves host-mode containers only");
            None
        }
    };
    let mut listeners = Vec::new();
    let mut port = port;
    let mut bridge_base = None;
    if let Some(gw) = &gateway {
        match tokio::net::TcpListener::bind((gw.as_str(), port)).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    port = a.port();
                    bridge_base = Some(format!("http://{}", fmt_addr(a)));
                }
                listeners.push(l);
            }
            Err(e) => {
                tracing::warn!(address = %gw, port, error = %e, "cannot listen for the task metadata endpoint on the docker bridge gateway")
            }
        }
    }
    let mut host_base = None;
    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => {
            if let Ok(a) = l.local_addr() {
                host_base = Some(format!("http://{}", fmt_addr(a)));
            }
            listeners.push(l);
        }
        Err(e) => {
            tracing::warn!(port, error = %e, "cannot listen for the task metadata endpoint on 127.0.0.1")
        }
    }
    if listeners.is_empty() {
        return None;
    }
    tracing::info!(bridge = ?bridge_base, host = ?host_base, "task metadata endpoint (v3, v4) listening");
    let svc = Arc::new(MetadataService::new(key, bridge_base, host_base));
    let app = router(svc.clone(), runtime);
    for l in listeners {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::warn!(error = %e, "task metadata endpoint stopped");
            }
        });
    }
    Some(svc)
}

fn fmt_addr(a: SocketAddr) -> String {
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> TaskView {
        TaskView {
            cluster: "default".into(),
            task_arn:
                "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
                    .into(),
            family: "web".into(),
            revision: 3,
            desired_status: "RUNNING".into(),
            known_status: "RUNNING".into(),
            cpu_vcpu: Some(0.25),
            memory_mib: Some(512),
            pull_started_at: Some(1_601_597_707.5),
            pull_stopped_at: Some(1_601_597_708.0),
            availability_zone: "us-east-1a".into(),
            network_mode: "awsvpc".into(),
            eni: Some(EniView {
                ip: "172.18.0.2".into(),
                mac: Some("02:42:ac:12:00:02".into()),
                subnet: Some("172.18.0.0/16".into()),
                subnet_gateway: Some("172.18.0.1/16".into()),
                private_dns_name: "ip-172-18-0-2.ec2.internal".into(),
            }),
            tags: vec![("team".into(), "a".into())],
            containers: vec![ContainerView {
                name: "app".into(),
                docker_id: Some("abc".into()),
                docker_name: "ecs-web-3-app-0123".into(),
                image: "busybox".into(),
                image_id: Some("sha256:00".into()),
                desired_status: "RUNNING".into(),
                known_status: "RUNNING".into(),
                cpu: 10,
                memory_mib: Some(128),
                started_at: Some(UNIX_EPOCH + std::time::Duration::new(1_601_597_708, 62_559_351)),
                log_driver: Some("awslogs".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn task_document_shape() {
        let t = task_json(&view(), Version::V4, false);
        assert_eq!(t["Cluster"], "default");
        assert_eq!(t["TaskARN"], view().task_arn);
        assert_eq!(t["Family"], "web");
        assert_eq!(t["Revision"], "3");
        assert_eq!(t["DesiredStatus"], "RUNNING");
        assert_eq!(t["KnownStatus"], "RUNNING");
        assert_eq!(t["Limits"], json!({"CPU": 0.25, "Memory": 512}));
        assert_eq!(t["PullStartedAt"], "2020-10-02T00:15:07.500000000Z");
        assert_eq!(t["AvailabilityZone"], "us-east-1a");
        assert_eq!(t["LaunchType"], "EC2");
        assert!(t.get("TaskTags").is_none());
        let c = &t["Containers"][0];
        assert_eq!(c["DockerId"], "abc");
        assert_eq!(c["Name"], "app");
        assert_eq!(c["DockerName"], "ecs-web-3-app-0123");
        assert_eq!(c["ImageID"], "sha256:00");
        assert_eq!(c["Limits"], json!({"CPU": 10, "Memory": 128}));
        assert_eq!(c["StartedAt"], "2020-10-02T00:15:08.062559351Z");
        assert_eq!(c["Type"], "NORMAL");
        assert_eq!(c["LogDriver"], "awslogs");
        let n = &c["Networks"][0];
        assert_eq!(n["NetworkMode"], "awsvpc");
        assert_eq!(n["IPv4Addresses"], json!(["172.18.0.2"]));
        assert_eq!(n["AttachmentIndex"], 0);
        assert_eq!(n["MACAddress"], "02:42:ac:12:00:02");
        assert_eq!(n["IPv4SubnetCIDRBlock"], "172.18.0.0/16");
        assert_eq!(n["PrivateDNSName"], "ip-172-18-0-2.ec2.internal");
        assert_eq!(n["SubnetGatewayIpv4Address"], "172.18.0.1/16");
        // v3: no LaunchType, no log driver, plain network entries.
        let t3 = task_json(&view(), Version::V3, false);
        assert!(t3.get("LaunchType").is_none());
        assert!(t3["Containers"][0].get("LogDriver").is_none());
        assert!(t3["Containers"][0]["Networks"][0]
            .get("MACAddress")
            .is_none());
        let tagged = task_json(&view(), Version::V4, true);
        assert_eq!(tagged["TaskTags"], json!({"team": "a"}));
    }

    #[test]
    fn tokens_are_stable_and_distinct() {
        let a = MetadataService::new(vec![1; 32], Some("http://172.17.0.1:1".into()), None);
        let b = MetadataService::new(vec![2; 32], None, None);
        let t = a.token("arn:t", "app");
        assert_eq!(t.len(), 32);
        assert_eq!(t, a.token("arn:t", "app"));
        assert_ne!(t, a.token("arn:t", "side"));
        assert_ne!(t, b.token("arn:t", "app"));
        let env: BTreeMap<String, String> = a
            .env_for("arn:t", "app", TaskNetworkMode::Bridge)
            .into_iter()
            .collect();
        assert_eq!(
            env["ECS_CONTAINER_METADATA_URI_V4"],
            format!("http://172.17.0.1:1/v4/{t}")
        );
        assert_eq!(
            env["ECS_CONTAINER_METADATA_URI"],
            format!("http://172.17.0.1:1/v3/{t}")
        );
        // No host listener: host-mode containers get no URI rather than a dead one.
        assert!(!a
            .env_for("arn:t", "app", TaskNetworkMode::Host)
            .iter()
            .any(|(k, _)| k == "ECS_CONTAINER_METADATA_URI_V4"));
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + std::time::Duration::new(951_782_400, 1)),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[tokio::test]
    async fn serves_documents_by_token_only() {
        let rt = Arc::new(berth_runtime::FakeRuntime::default());
        let svc = Arc::new(MetadataService::new(vec![7; 32], None, None));
        svc.publish(view());
        let token = svc.token(&view().task_arn, "app");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = router(svc.clone(), rt);
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        let get = |path: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let task = get(format!("/v4/{token}/task")).await;
        assert!(task.starts_with("HTTP/1.1 200"), "{task}");
        assert!(task.contains(&view().task_arn));
        let c = get(format!("/v3/{token}")).await;
        assert!(c.contains("\"DockerName\":\"ecs-web-3-app-0123\""), "{c}");
        let bad = get("/v4/0000/task".into()).await;
        assert!(bad.starts_with("HTTP/1.1 404"), "{bad}");
        svc.remove_task(&view().task_arn);
        assert!(get(format!("/v4/{token}/task"))
            .await
            .starts_with("HTTP/1.1 404"));
    }
}
