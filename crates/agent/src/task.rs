//! One task's owner: an actor that drives the task's containers towards the desired status and
//! reports every change. See the crate docs for the state machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_agent_api::DesiredTask;
use berth_runtime::{
    ContainerEvent, ContainerId, ContainerRuntime, ContainerStatus, HealthStatus, Protocol,
    RegistryAuth, RemoveOptions, RuntimeError,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::awslogs::{self, LogSink, Shipper, ShipperConfig};
use crate::config::{AgentConfig, ImagePullBehavior};
use crate::control::{AttachmentReport, ContainerReport, TaskStateChange};
use crate::reporter::Reporter;
use crate::spec::{plan_task, Condition, ContainerPlan, TaskNetworkMode, TaskPlan};

/// Known status of a container, as the agent tracks it. Only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerKnown {
    /// Nothing done yet.
    None,
    /// Image present.
    Pulled,
    /// Created in the engine.
    Created,
    /// Running.
    Running,
    /// Exited (or never started because the task stopped first).
    Stopped,
}

/// Known status of the task. Only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskKnown {
    /// Resources, pulls, creates and starts in progress.
    Pending,
    /// Every container has been started.
    Running,
    /// Every container has stopped.
    Stopped,
}

impl TaskKnown {
    fn as_str(self) -> &'static str {
        match self {
            TaskKnown::Pending => "PENDING",
            TaskKnown::Running => "RUNNING",
            TaskKnown::Stopped => "STOPPED",
        }
    }
}

/// Messages to a task actor.
#[derive(Debug)]
pub enum TaskMsg {
    /// A new desired state for the task.
    Desired(Box<DesiredTask>),
    /// The control plane no longer lists the task: stop it.
    Forgotten,
    /// An engine event about one of the task's containers (or maybe not: ids are checked).
    Event(ContainerEvent),
    /// Events may have been missed: re-inspect every container.
    Resync,
}

#[derive(Debug)]
struct ContainerState {
    plan: ContainerPlan,
    known: ContainerKnown,
    id: Option<ContainerId>,
    exit_code: Option<i64>,
    reason: Option<String>,
    health: HealthStatus,
    bindings: Vec<berth_runtime::PortMapping>,
    image_digest: Option<String>,
    ip: Option<String>,
    /// Engine image id (`sha256:…`), creation/start/finish times: for the metadata endpoint.
    image_id: Option<String>,
    created_at: Option<SystemTime>,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    waiting_since: Option<Instant>,
    /// The awslogs shipper of the container (aborted with the actor).
    shipper: Option<ShipperHandle>,
}

/// A running shipper; dropping it aborts the shipper (agent shutdown: the checkpoint lets the
/// next agent resume).
#[derive(Debug)]
struct ShipperHandle(tokio::task::JoinHandle<()>);

impl Drop for ShipperHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Shared, read-only context of every task actor.
#[derive(Debug)]
pub struct TaskContext {
    /// The configuration.
    pub config: AgentConfig,
    /// Our container-instance ARN.
    pub instance_arn: String,
    /// Report queue.
    pub reporter: Reporter,
    /// Where awslogs containers' output goes (the control plane's CloudWatch Logs API).
    pub logs: Arc<dyn LogSink>,
    /// Tuning of the awslogs shippers.
    pub shipper: ShipperConfig,
    /// Concurrent pulls of one image share a single engine pull.
    pub pulls: PullCoalescer,
    /// Credentials for pulls from the control plane's image registry.
    pub registry: crate::registry_auth::RegistryCredentials,
    /// The task metadata endpoint (v3/v4), when it is serving.
    pub metadata: Option<Arc<crate::metadata::MetadataService>>,
    /// Where task `secrets` are read from (the control plane's Secrets Manager and SSM).
    pub secrets: crate::secrets::SecretStores,
    /// The task IAM role credentials endpoint (`ECS_ENABLE_TASK_IAM_ROLE`).
    pub credentials: Option<Arc<crate::credentials::CredentialsService>>,
    /// The engine's CPU architecture (for the awsvpc pause program).
    pub engine_arch: String,
    /// Bounds how many containers are being created and started at once
    /// (`BERTH_CONCURRENT_STARTS`): dockerd starts a burst faster a few at a time than all at once.
    pub starts: Arc<tokio::sync::Semaphore>,
}

/// The task's one network interface (awsvpc): the pause container's address on the task
/// network.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Eni {
    /// IPv4 address.
    pub ip: String,
    /// MAC address.
    pub mac: Option<String>,
    /// Subnet CIDR of the task network, e.g. `172.18.0.0/16`.
    pub subnet: Option<String>,
    /// Gateway address, e.g. `172.18.0.1`.
    pub gateway: Option<String>,
}

/// Coalesces pulls: when many tasks need the same image at once (a service scaling out), one
/// engine pull runs and every waiter gets its outcome. A finished pull's outcome is reused for
/// [`PullCoalescer::REUSE`], so a burst of tasks doesn't pull (or time out on a registry) once per
/// task, while tasks started later still pull afresh as `ECS_IMAGE_PULL_BEHAVIOR=default` asks.
#[derive(Default)]
pub struct PullCoalescer {
    inner: std::sync::Mutex<HashMap<String, PullEntry>>,
}

type PullOutcome = Result<(), (String, String)>;

struct PullEntry {
    cell: Arc<tokio::sync::OnceCell<PullOutcome>>,
    created: Instant,
}

impl std::fmt::Debug for PullCoalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullCoalescer").finish_non_exhaustive()
    }
}

impl PullCoalescer {
    /// How long a finished pull's outcome is shared.
    pub const REUSE: Duration = Duration::from_secs(10);

    /// Pulls `image` once for everyone asking now. Err carries (the ECS reason, the engine's message).
    pub async fn pull<R: ContainerRuntime>(
        &self,
        runtime: &R,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> PullOutcome {
        let cell = {
            let Ok(mut m) = self.inner.lock() else {
                return runtime
                    .pull_image(image, auth)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.ecs_reason(), e.to_string()));
            };
            m.retain(|_, e| e.created.elapsed() < Self::REUSE || !e.cell.initialized());
            m.entry(image.to_string())
                .or_insert_with(|| PullEntry {
                    cell: Arc::new(tokio::sync::OnceCell::new()),
                    created: Instant::now(),
                })
                .cell
                .clone()
        };
        cell.get_or_init(|| async {
            runtime
                .pull_image(image, auth)
                .await
                .map(|_| ())
                .map_err(|e| (e.ecs_reason(), e.to_string()))
        })
        .await
        .clone()
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The actor. Build with [`TaskActor::new`], drive with [`TaskActor::run`].
pub struct TaskActor<R: ContainerRuntime> {
    runtime: Arc<R>,
    ctx: Arc<TaskContext>,
    desired: DesiredTask,
    plan: Option<TaskPlan>,
    known: TaskKnown,
    stop: Option<(String, Option<String>)>,
    containers: Vec<ContainerState>,
    resources_ready: bool,
    /// The task has a task role and its credentials are being served (or it has none).
    credentials_ready: bool,
    /// The environment files and `secrets` of the containers still to be created are in their
    /// environment.
    secrets_ready: bool,
    /// Some of the task's containers existed when the actor started (an agent restart).
    adopted: bool,
    pull_started: Option<f64>,
    pull_stopped: Option<f64>,
    execution_stopped: Option<f64>,
    stopped_at: Option<Instant>,
    retry_at: Option<Instant>,
    last_report: Option<TaskStateChange>,
    /// The pause container (awsvpc).
    pause_id: Option<ContainerId>,
    /// The task's network interface, once the pause container runs (awsvpc).
    eni: Option<Eni>,
}

impl<R: ContainerRuntime> TaskActor<R> {
    /// A new actor for `desired`; `adopted` are existing containers of the task found in the
    /// engine (name in the task definition → id).
    pub fn new(
        runtime: Arc<R>,
        ctx: Arc<TaskContext>,
        desired: DesiredTask,
        adopted: Vec<(String, ContainerId)>,
    ) -> Self {
        let (mut plan, mut stop) = match plan_task(&desired, &ctx.config, &ctx.instance_arn) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some((e.0, Some("TaskFailedToStart".to_string())))),
        };
        let task_role = desired
            .overrides
            .task_role_arn
            .clone()
            .or_else(|| desired.task_definition.task_role_arn.clone());
        // The variables ECS injects: metadata URIs, and the task role's credentials URI.
        let credentials = ctx.credentials.as_ref().filter(|_| task_role.is_some());
        if let Some(plan) = plan.as_mut() {
            for c in plan.containers.iter_mut() {
                let mode = if c.spec.network_mode == berth_runtime::NetworkMode::None {
                    TaskNetworkMode::None
                } else {
                    plan.network_mode
                };
                if let Some(md) = &ctx.metadata {
                    for (k, v) in md.env_for(&desired.task_arn, &c.name, mode) {
                        c.spec.env.insert(k, v);
                    }
                }
                if let Some((k, v)) = credentials.and_then(|cr| cr.env_for(&desired.task_arn, mode))
                {
                    c.spec.env.insert(k, v);
                }
            }
        }
        if task_role.is_some() && ctx.credentials.is_none() {
            stop = stop.or(Some((
                "ResourceInitializationError: the task has a task role, but this container instance serves no task role credentials (ECS_ENABLE_TASK_IAM_ROLE is not true)".into(),
                Some("TaskFailedToStart".into()),
            )));
        }
        let pause_id = adopted
            .iter()
            .find(|(n, _)| n == crate::pause::PAUSE_CONTAINER_NAME)
            .map(|(_, id)| id.clone());
        let containers = plan
            .as_ref()
            .map(|p| {
                p.containers
                    .iter()
                    .map(|c| ContainerState {
                        plan: c.clone(),
                        known: ContainerKnown::None,
                        id: adopted
                            .iter()
                            .find(|(n, _)| n == &c.name)
                            .map(|(_, id)| id.clone()),
                        exit_code: None,
                        reason: None,
                        health: HealthStatus::None,
                        bindings: Vec::new(),
                        image_digest: None,
                        ip: None,
                        image_id: None,
                        created_at: None,
                        started_at: None,
                        finished_at: None,
                        waiting_since: None,
                        shipper: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let adopted_any = !adopted.is_empty();
        Self {
            runtime,
            ctx,
            desired,
            plan,
            known: TaskKnown::Pending,
            stop,
            containers,
            resources_ready: adopted_any,
            credentials_ready: task_role.is_none(),
            secrets_ready: false,
            adopted: adopted_any,
            pull_started: None,
            pull_stopped: None,
            execution_stopped: None,
            stopped_at: None,
            retry_at: None,
            last_report: None,
            pause_id,
            eni: None,
        }
    }

    fn arn(&self) -> &str {
        &self.desired.task_arn
    }

    /// Runs until the task is stopped and cleaned up (then sends its ARN on `done`), or until
    /// the mailbox closes (agent shutdown: containers are left as they are).
    pub async fn run(mut self, mut rx: mpsc::Receiver<TaskMsg>, done: mpsc::Sender<String>) {
        // Adopted containers: learn their state first.
        if self.pause_id.is_some() {
            self.refresh_eni().await;
        }
        for i in 0..self.containers.len() {
            if self.containers[i].id.is_some() {
                self.containers[i].known = ContainerKnown::Created;
                self.refresh(i).await;
            }
        }
        loop {
            self.step().await;
            self.ensure_shippers();
            if self.known == TaskKnown::Stopped {
                let cleanup_at = self.stopped_at.unwrap_or_else(Instant::now)
                    + self.ctx.config.task_cleanup_wait;
                if Instant::now() >= cleanup_at {
                    self.cleanup().await;
                    let _ = done.send(self.arn().to_string()).await;
                    return;
                }
            }
            let wake = self.next_deadline();
            let msg = match wake {
                Some(at) => tokio::select! {
                    m = rx.recv() => m,
                    _ = tokio::time::sleep_until(at) => continue,
                },
                None => rx.recv().await,
            };
            let Some(msg) = msg else {
                return;
            };
            self.handle(msg).await;
            // Drain whatever else is queued before stepping again.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg).await;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = self.retry_at;
        let mut consider = |t: Instant| {
            at = Some(at.map_or(t, |a| a.min(t)));
        };
        if self.known == TaskKnown::Stopped {
            consider(
                self.stopped_at.unwrap_or_else(Instant::now) + self.ctx.config.task_cleanup_wait,
            );
        }
        for c in &self.containers {
            if let Some(since) = c.waiting_since {
                consider(since + c.plan.start_timeout);
            }
        }
        at
    }

    async fn handle(&mut self, msg: TaskMsg) {
        match msg {
            TaskMsg::Desired(d) => {
                if d.desired_status == "STOPPED" && self.desired.desired_status != "STOPPED" {
                    tracing::info!(task = %self.arn(), reason = ?d.stopped_reason, "task desired STOPPED");
                }
                // Desired status only moves forward.
                if self.desired.desired_status == "STOPPED" {
                    return;
                }
                self.desired = *d;
            }
            TaskMsg::Forgotten => {
                if self.desired.desired_status != "STOPPED" {
                    self.desired.desired_status = "STOPPED".into();
                    self.desired.stopped_reason =
                        Some("Task no longer in the control plane's desired state".into());
                }
            }
            TaskMsg::Event(ev) => {
                if let Some(i) = self
                    .containers
                    .iter()
                    .position(|c| c.id.as_ref() == Some(&ev.id))
                {
                    self.refresh(i).await;
                }
            }
            TaskMsg::Resync => {
                self.retry_at = None;
                for i in 0..self.containers.len() {
                    if self.containers[i].id.is_some() {
                        self.refresh(i).await;
                    }
                }
            }
        }
    }

    /// Re-inspects container `i` and moves its known state forward.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.containers[i].id.clone() else {
            return;
        };
        match self.runtime.inspect_container(&id).await {
            Ok(info) => {
                let c = &mut self.containers[i];
                c.image_id = Some(info.image_id.clone()).filter(|s| !s.is_empty());
                c.created_at = info.created_at;
                c.started_at = info.state.started_at.or(c.started_at);
                c.finished_at = info.state.finished_at.or(c.finished_at);
                if c.known == ContainerKnown::Stopped {
                    return;
                }
                c.health = info.state.health;
                match info.state.status {
                    ContainerStatus::Running | ContainerStatus::Paused => {
                        c.known = ContainerKnown::Running;
                        c.bindings = info.ports.clone();
                        c.ip = info.networks.values().find_map(|n| n.ipv4_address.clone());
                    }
                    s if s.is_terminal() => {
                        if c.known >= ContainerKnown::Created {
                            c.known = ContainerKnown::Stopped;
                            c.exit_code = info.state.exit_code;
                            if info.state.oom_killed {
                                c.reason = Some(
                                    "OutOfMemoryError: Container killed due to memory usage".into(),
                                );
                            }
                            tracing::info!(task = %self.desired.task_arn, container = %c.plan.name, exit_code = ?c.exit_code, "container stopped");
                        }
                    }
                    _ => {
                        if c.known < ContainerKnown::Created {
                            c.known = ContainerKnown::Created;
                        }
                    }
                }
                if c.image_digest.is_none() {
                    let image = c.plan.image.clone();
                    if let Ok(img) = self.runtime.inspect_image(&image).await {
                        self.containers[i].image_digest = img.digest;
                    }
                }
            }
            Err(e) if e.is_not_found() => {
                let c = &mut self.containers[i];
                if c.known >= ContainerKnown::Created && c.known < ContainerKnown::Stopped {
                    c.known = ContainerKnown::Stopped;
                    c.reason = Some(format!(
                        "CannotInspectContainerError: container {} was removed",
                        id.short()
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(task = %self.desired.task_arn, container = %self.containers[i].plan.name, error = %e, "inspect failed");
                self.retry_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    /// Advances the task as far as it can go now, reporting each change.
    async fn step(&mut self) {
        if self.known == TaskKnown::Stopped {
            return;
        }
        loop {
            if self.desired.desired_status == "STOPPED" && self.stop.is_none() {
                self.stop = Some((
                    self.desired
                        .stopped_reason
                        .clone()
                        .unwrap_or_else(|| "Task stopped by the control plane".into()),
                    self.desired.stop_code.clone(),
                ));
            }
            if self.stop.is_some() {
                self.report();
                if self.stop_all().await {
                    self.known = TaskKnown::Stopped;
                    if let Some(creds) = &self.ctx.credentials {
                        creds.remove(&self.desired.task_arn);
                    }
                    self.execution_stopped = Some(epoch_secs(SystemTime::now()));
                    self.stopped_at = Some(Instant::now());
                    tracing::info!(task = %self.arn(), reason = ?self.stop.as_ref().map(|s| &s.0), "task stopped");
                    self.report();
                } else {
                    self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                    self.report();
                }
                return;
            }
            self.report();
            if !self.credentials_ready {
                match self.fetch_credentials().await {
                    Ok(()) => self.credentials_ready = true,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(task = %self.arn(), error = %e, "cannot get the task role credentials yet; retrying");
                        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                        return;
                    }
                    Err(e) if !self.adopted => {
                        self.fail(format!(
                            "ResourceInitializationError: unable to get the credentials of the task role: {e}"
                        ));
                        continue;
                    }
                    // An adopted task keeps running; its containers go without.
                    Err(e) => {
                        tracing::warn!(task = %self.arn(), error = %e, "the control plane gives no task role credentials");
                        self.credentials_ready = true;
                    }
                }
            }
            if !self.secrets_ready {
                match self.resolve_secrets().await {
                    Ok(()) => self.secrets_ready = true,
                    Err(e) if e.transient => {
                        tracing::warn!(task = %self.arn(), reason = %e.reason, "cannot fetch the task's secrets yet; retrying");
                        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                        return;
                    }
                    Err(e) => {
                        self.fail(e.reason);
                        continue;
                    }
                }
            }
            if !self.resources_ready {
                match self.create_resources().await {
                    Ok(()) => self.resources_ready = true,
                    Err(e) if e.is_transient() => {
                        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                        return;
                    }
                    Err(e) => {
                        self.fail(e.ecs_reason());
                        continue;
                    }
                }
            }
            if self.pull_stopped.is_none()
                && self
                    .containers
                    .iter()
                    .any(|c| c.known == ContainerKnown::None)
            {
                if let Err(reason) = self.pull_all().await {
                    self.fail(reason);
                    continue;
                }
                self.report();
            }
            let mut progressed = false;
            for i in 0..self.containers.len() {
                if self.stop.is_some() {
                    break;
                }
                if self.containers[i].known >= ContainerKnown::Running {
                    continue;
                }
                match self.dependencies(i) {
                    Deps::Wait => {
                        let c = &mut self.containers[i];
                        let since = *c.waiting_since.get_or_insert_with(Instant::now);
                        if Instant::now() >= since + c.plan.start_timeout {
                            let waiting: Vec<String> = c
                                .plan
                                .depends_on
                                .iter()
                                .map(|(d, cond)| format!("{d} ({})", cond.as_str()))
                                .collect();
                            let reason = format!(
                                "CannotStartContainerError: container {} timed out waiting for its dependencies {}",
                                c.plan.name,
                                waiting.join(", ")
                            );
                            c.reason = Some(reason.clone());
                            self.fail(reason);
                        }
                    }
                    Deps::Impossible(reason) => {
                        self.containers[i].reason = Some(reason.clone());
                        self.fail(reason);
                    }
                    Deps::Ready => {
                        self.containers[i].waiting_since = None;
                        if let Err(reason) = self.create_and_start(i).await {
                            self.containers[i].reason = Some(reason.clone());
                            self.fail(reason);
                        } else {
                            progressed = true;
                        }
                        self.report();
                    }
                }
            }
            if self.stop.is_some() {
                continue;
            }
            // An essential container that exited stops the task.
            if let Some(c) = self
                .containers
                .iter()
                .find(|c| c.plan.essential && c.known == ContainerKnown::Stopped)
            {
                tracing::info!(task = %self.arn(), container = %c.plan.name, exit_code = ?c.exit_code, "essential container exited");
                self.stop = Some((
                    "Essential container in task exited".into(),
                    Some("EssentialContainerExited".into()),
                ));
                continue;
            }
            if self.known == TaskKnown::Pending
                && self
                    .containers
                    .iter()
                    .all(|c| c.known >= ContainerKnown::Running)
            {
                self.known = TaskKnown::Running;
                tracing::info!(task = %self.arn(), "task running");
            }
            self.report();
            if !progressed {
                return;
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if self.stop.is_none() {
            tracing::warn!(task = %self.arn(), %reason, "task failed");
            let code = if self.known == TaskKnown::Pending {
                "TaskFailedToStart"
            } else {
                "EssentialContainerExited"
            };
            self.stop = Some((reason, Some(code.into())));
        }
    }

    fn dependencies(&self, i: usize) -> Deps {
        let mut ready = true;
        for (dep, cond) in &self.containers[i].plan.depends_on {
            let Some(d) = self.containers.iter().find(|c| &c.plan.name == dep) else {
                continue;
            };
            let ok = match cond {
                Condition::Start => d.known >= ContainerKnown::Running,
                Condition::Complete => d.known == ContainerKnown::Stopped,
                Condition::Success => {
                    if d.known == ContainerKnown::Stopped && d.exit_code != Some(0) {
                        return Deps::Impossible(format!(
                            "CannotStartContainerError: dependency {dep} exited with code {}; condition SUCCESS can no longer be met",
                            d.exit_code.map_or("unknown".into(), |c| c.to_string())
                        ));
                    }
                    d.known == ContainerKnown::Stopped
                }
                Condition::Healthy => {
                    if d.known == ContainerKnown::Stopped || d.health == HealthStatus::Unhealthy {
                        return Deps::Impossible(format!(
                            "CannotStartContainerError: dependency {dep} did not become HEALTHY"
                        ));
                    }
                    d.health == HealthStatus::Healthy
                }
            };
            ready &= ok;
        }
        if ready {
            Deps::Ready
        } else {
            Deps::Wait
        }
    }

    /// Fetches every container's `environmentFiles` and `secrets` and puts them in its
    /// environment (`environment` wins over the files, the first file over later ones, secrets
    /// over all).
    async fn resolve_secrets(&mut self) -> Result<(), crate::secrets::SecretError> {
        let control = self.ctx.secrets.0.as_ref();
        // Only containers still to be created (adopted ones already have their environment).
        for c in self.containers.iter_mut().filter(|c| c.id.is_none()) {
            let plan = &mut c.plan;
            for arn in &plan.environment_files {
                for (k, v) in crate::secrets::fetch_env_file(control, arn).await? {
                    plan.spec.env.entry(k).or_insert(v);
                }
            }
            for (name, value_from) in &plan.secrets {
                let value = crate::secrets::fetch(control, value_from).await?;
                plan.spec.env.insert(name.clone(), value);
            }
            if let Some(secret) = &plan.repository_credentials {
                plan.pull_auth =
                    Some(crate::secrets::fetch_registry_auth(control, secret, &plan.image).await?);
            }
        }
        Ok(())
    }

    /// Gets the task role's credentials from the control plane and serves them.
    async fn fetch_credentials(&self) -> Result<(), crate::control::ControlPlaneError> {
        match &self.ctx.credentials {
            Some(creds) => creds.fetch(&self.desired.task_arn).await,
            None => Ok(()),
        }
    }

    async fn create_resources(&mut self) -> Result<(), RuntimeError> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        if let Some(net) = &plan.network {
            match self.runtime.create_network(net).await {
                Ok(_) => {}
                Err(RuntimeError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for v in &plan.task_volumes {
            self.runtime.create_volume(v).await?;
        }
        if let Some(pause) = plan.pause.clone() {
            self.start_pause(&pause).await?;
        }
        Ok(())
    }

    /// Creates (or finds) and starts the pause container that holds the task's network
    /// namespace, and learns the task's address from it.
    async fn start_pause(
        &mut self,
        pause: &berth_runtime::ContainerSpec,
    ) -> Result<(), RuntimeError> {
        crate::pause::ensure_pause_image(self.runtime.as_ref(), &self.ctx.engine_arch).await?;
        let id = match &self.pause_id {
            Some(id) => id.clone(),
            None => match self.runtime.create_container(pause).await {
                Ok(id) => id,
                Err(RuntimeError::NameConflict { .. }) => {
                    self.runtime
                        .inspect_container(&ContainerId::new(pause.name.clone()))
                        .await?
                        .id
                }
                Err(e) => return Err(e),
            },
        };
        self.pause_id = Some(id.clone());
        self.runtime.start_container(&id).await?;
        self.refresh_eni().await;
        if self.eni.is_none() {
            return Err(RuntimeError::Other {
                message: "the pause container has no address on the task network".into(),
            });
        }
        tracing::info!(task = %self.arn(), ip = ?self.eni.as_ref().map(|e| &e.ip), "task network namespace ready");
        Ok(())
    }

    /// Reads the task's address from the pause container.
    async fn refresh_eni(&mut self) {
        let (Some(id), Some(net)) = (
            self.pause_id.clone(),
            self.plan.as_ref().and_then(|p| p.network.clone()),
        ) else {
            return;
        };
        let Ok(info) = self.runtime.inspect_container(&id).await else {
            return;
        };
        let Some(att) = info.networks.get(&net.name) else {
            return;
        };
        let Some(ip) = att.ipv4_address.clone() else {
            return;
        };
        let subnet = self
            .runtime
            .inspect_network(&net.name)
            .await
            .ok()
            .and_then(|n| n.subnets.into_iter().next());
        self.eni = Some(Eni {
            ip,
            mac: att.mac_address.clone(),
            gateway: att
                .gateway
                .clone()
                .or_else(|| subnet.as_ref().and_then(|s| s.gateway_or_first_host())),
            subnet: subnet.map(|s| s.subnet),
        });
    }

    async fn pull_all(&mut self) -> Result<(), String> {
        self.pull_started = Some(epoch_secs(SystemTime::now()));
        self.report();
        let behavior = self.ctx.config.image_pull_behavior;
        let mut images: Vec<String> = Vec::new();
        for c in &self.containers {
            if c.known == ContainerKnown::None && !images.contains(&c.plan.image) {
                images.push(c.plan.image.clone());
            }
        }
        let mut result = Ok(());
        for image in &images {
            let local = matches!(
                behavior,
                ImagePullBehavior::Once | ImagePullBehavior::PreferCached
            ) && self.runtime.image_exists(image).await.unwrap_or(false);
            if local {
                continue;
            }
            tracing::info!(task = %self.arn(), %image, "pulling image");
            // A container's repositoryCredentials, else berth's registry token (if it's ours).
            let private = self
                .containers
                .iter()
                .find(|c| &c.plan.image == image && c.plan.pull_auth.is_some())
                .and_then(|c| c.plan.pull_auth.clone());
            let auth = match private {
                Some(a) => Ok(Some(a)),
                None => self.ctx.registry.for_image(image).await,
            };
            let outcome = match auth {
                Ok(auth) => {
                    self.ctx
                        .pulls
                        .pull(self.runtime.as_ref(), image, auth.as_ref())
                        .await
                }
                Err(reason) => Err((reason.clone(), reason)),
            };
            match outcome {
                Ok(()) => {}
                Err((reason, e)) => {
                    let cached = behavior == ImagePullBehavior::Default
                        && self.runtime.image_exists(image).await.unwrap_or(false);
                    if cached {
                        tracing::warn!(task = %self.arn(), %image, error = %e, "pull failed; using the cached image");
                    } else {
                        for c in self.containers.iter_mut() {
                            if &c.plan.image == image {
                                c.reason = Some(reason.clone());
                            }
                        }
                        result = Err(reason);
                        break;
                    }
                }
            }
        }
        self.pull_stopped = Some(epoch_secs(SystemTime::now()));
        if result.is_ok() {
            for c in self.containers.iter_mut() {
                if c.known == ContainerKnown::None {
                    c.known = ContainerKnown::Pulled;
                }
            }
        }
        result
    }

    async fn create_and_start(&mut self, i: usize) -> Result<(), String> {
        // Only the engine's create and start calls count against BERTH_CONCURRENT_STARTS (not
        // the log-stream set-up with the control plane in between).
        if self.containers[i].id.is_none() {
            let spec = self.containers[i].plan.spec.clone();
            let created = {
                let _permit = self.ctx.starts.acquire().await;
                self.runtime.create_container(&spec).await
            };
            let id = match created {
                Ok(id) => id,
                Err(RuntimeError::NameConflict { .. }) => {
                    // Ours from an earlier life: adopt it.
                    match self
                        .runtime
                        .inspect_container(&ContainerId::new(spec.name.clone()))
                        .await
                    {
                        Ok(info) => info.id,
                        Err(e) => return Err(e.ecs_reason()),
                    }
                }
                Err(e) => return Err(create_reason(&e)),
            };
            tracing::info!(task = %self.arn(), container = %spec.name, id = %id.short(), "container created");
            self.containers[i].id = Some(id);
            self.containers[i].known = ContainerKnown::Created;
            // The container may ask the metadata endpoint for itself as soon as it starts.
            if let Some(md) = &self.ctx.metadata {
                md.publish(self.metadata_view());
            }
        }
        let Some(id) = self.containers[i].id.clone() else {
            return Ok(());
        };
        if let Err(reason) = self.prepare_awslogs(i, &id).await {
            self.containers[i].known = ContainerKnown::Stopped;
            self.containers[i].reason = Some(reason.clone());
            return Err(reason);
        }
        let started = {
            let _permit = self.ctx.starts.acquire().await;
            self.runtime.start_container(&id).await
        };
        if let Err(e) = started {
            let reason = match e {
                RuntimeError::StartFailed { .. } => e.ecs_reason(),
                other => format!(
                    "CannotStartContainerError: {}",
                    other
                        .ecs_reason()
                        .split_once(": ")
                        .map_or(other.to_string(), |(_, m)| m.to_string())
                ),
            };
            self.containers[i].known = ContainerKnown::Stopped;
            return Err(reason);
        }
        self.refresh(i).await;
        if self.containers[i].known < ContainerKnown::Running {
            // Started and already gone, or a slow engine: count it as started.
            if self.containers[i].known < ContainerKnown::Stopped {
                self.containers[i].known = ContainerKnown::Running;
            }
        }
        Ok(())
    }

    /// Stops every container, dependents before their dependencies. True when all stopped.
    async fn stop_all(&mut self) -> bool {
        // Never-created containers are simply STOPPED.
        for c in self.containers.iter_mut() {
            if c.id.is_none() && c.known < ContainerKnown::Stopped {
                c.known = ContainerKnown::Stopped;
            }
        }
        loop {
            let live: Vec<usize> = (0..self.containers.len())
                .filter(|&i| self.containers[i].known < ContainerKnown::Stopped)
                .collect();
            if live.is_empty() {
                // Last, the pause container (it ignores SIGTERM as PID 1: kill it).
                if let Some(id) = &self.pause_id {
                    match self.runtime.kill_container(id, "SIGKILL").await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            tracing::debug!(task = %self.arn(), error = %e, "pause container kill")
                        }
                    }
                }
                return true;
            }
            // A wave: live containers no other live container depends on.
            let wave: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| {
                    let name = &self.containers[i].plan.name;
                    !live.iter().any(|&j| {
                        j != i
                            && self.containers[j]
                                .plan
                                .depends_on
                                .iter()
                                .any(|(d, _)| d == name)
                    })
                })
                .collect();
            let wave = if wave.is_empty() { live } else { wave };
            let runtime = self.runtime.clone();
            let jobs = wave.iter().map(|&i| {
                let c = &self.containers[i];
                let id = c.id.clone();
                let timeout = c.plan.stop_timeout;
                let runtime = runtime.clone();
                async move {
                    match id {
                        Some(id) => runtime.stop_container(&id, timeout).await,
                        None => Ok(()),
                    }
                }
            });
            let results = futures::future::join_all(jobs).await;
            let mut ok = true;
            for (&i, r) in wave.iter().zip(results) {
                match r {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        tracing::warn!(task = %self.arn(), container = %self.containers[i].plan.name, error = %e, "stop failed");
                        ok = false;
                    }
                }
                self.refresh(i).await;
                let c = &mut self.containers[i];
                if c.known == ContainerKnown::Created {
                    // Created but never started.
                    c.known = ContainerKnown::Stopped;
                }
            }
            if !ok {
                return false;
            }
            if wave
                .iter()
                .any(|&i| self.containers[i].known < ContainerKnown::Stopped)
            {
                return false;
            }
        }
    }

    async fn cleanup(&mut self) {
        // Let the shippers drain what the containers wrote last (bounded), then forget them.
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in self.containers.iter_mut() {
            if let Some(mut h) = c.shipper.take() {
                if tokio::time::timeout_at(deadline, &mut h.0).await.is_err() {
                    tracing::warn!(task = %self.desired.task_arn, container = %c.plan.name, "awslogs shipper still busy at cleanup; stopping it");
                    // Wait until it has really stopped, so it cannot write its cursor again
                    // after the cursor is removed below.
                    h.0.abort();
                    let _ = (&mut h.0).await;
                }
            }
            if let (Some(_), Some(id)) = (&c.plan.awslogs, &c.id) {
                awslogs::remove_cursor(&awslogs::cursor_path(&self.ctx.config.data_dir, id));
            }
        }
        for c in &self.containers {
            if let Some(id) = &c.id {
                match self
                    .runtime
                    .remove_container(
                        id,
                        RemoveOptions {
                            force: true,
                            remove_volumes: true,
                        },
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        tracing::warn!(task = %self.arn(), container = %c.plan.name, error = %e, "container removal failed")
                    }
                }
            }
        }
        if let Some(id) = &self.pause_id {
            let _ = self
                .runtime
                .remove_container(
                    id,
                    RemoveOptions {
                        force: true,
                        remove_volumes: true,
                    },
                )
                .await;
        }
        if let Some(md) = &self.ctx.metadata {
            md.remove_task(self.arn());
        }
        if let Some(plan) = &self.plan {
            for v in &plan.task_volumes {
                if let Err(e) = self.runtime.remove_volume(&v.name, true).await {
                    if !e.is_not_found() {
                        tracing::warn!(task = %self.arn(), volume = %v.name, error = %e, "volume removal failed");
                    }
                }
            }
            if let Some(net) = &plan.network {
                if let Err(e) = self.runtime.remove_network(&net.name).await {
                    if !e.is_not_found() {
                        tracing::warn!(task = %self.arn(), network = %net.name, error = %e, "network removal failed");
                    }
                }
            }
        }
        self.ctx.reporter.forget(&self.desired.task_arn);
        tracing::info!(task = %self.arn(), "task cleaned up");
    }

    fn task_id(&self) -> String {
        self.plan
            .as_ref()
            .map(|p| p.task_id.clone())
            .unwrap_or_default()
    }

    /// ECS's awslogs driver creates the group (`awslogs-create-group`) and the stream when the
    /// container starts, and a missing group fails the start. Unreachable store: start anyway
    /// (the shipper creates the stream later).
    async fn prepare_awslogs(&self, i: usize, id: &ContainerId) -> Result<(), String> {
        let c = &self.containers[i];
        let Some(cfg) = &c.plan.awslogs else {
            return Ok(());
        };
        let stream = cfg.stream_name(&c.plan.name, &self.task_id(), id.as_str());
        match tokio::time::timeout(
            Duration::from_secs(10),
            awslogs::prepare(&*self.ctx.logs, cfg, &stream),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if awslogs::is_not_found(&e) => {
                tracing::warn!(task = %self.arn(), container = %c.plan.name, group = %cfg.group, "awslogs: log group does not exist (and awslogs-create-group is not true)");
                Err(awslogs::start_failure_reason(&e))
            }
            Ok(Err(e)) => {
                tracing::warn!(task = %self.arn(), container = %c.plan.name, error = %e, "awslogs: cannot create the log stream now; the shipper will retry");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(task = %self.arn(), container = %c.plan.name, "awslogs: creating the log stream timed out; the shipper will retry");
                Ok(())
            }
        }
    }

    /// Starts a shipper for every awslogs container that has run (or was adopted).
    fn ensure_shippers(&mut self) {
        let task_id = self.task_id();
        for c in self.containers.iter_mut() {
            let (Some(cfg), Some(id)) = (&c.plan.awslogs, &c.id) else {
                continue;
            };
            // Only containers that ran have output (an exit code says a stopped one did).
            let ran = c.known == ContainerKnown::Running
                || (c.known == ContainerKnown::Stopped && c.exit_code.is_some());
            if c.shipper.is_some() || !ran {
                continue;
            }
            let stream = cfg.stream_name(&c.plan.name, &task_id, id.as_str());
            tracing::debug!(task = %self.desired.task_arn, container = %c.plan.name, group = %cfg.group, %stream, "starting awslogs shipper");
            let shipper = Shipper::new(
                self.runtime.clone(),
                self.ctx.logs.clone(),
                id.clone(),
                cfg.clone(),
                stream,
                &self.ctx.config.data_dir,
                self.ctx.shipper.clone(),
            );
            c.shipper = Some(ShipperHandle(tokio::spawn(shipper.run())));
        }
    }

    /// The task's complete state as a report.
    pub fn snapshot(&self) -> TaskStateChange {
        let awsvpc = self
            .plan
            .as_ref()
            .is_some_and(|p| p.network_mode == TaskNetworkMode::Awsvpc);
        let containers: Vec<ContainerReport> = self
            .containers
            .iter()
            .map(|c| {
                let status = match c.known {
                    ContainerKnown::Running => "RUNNING",
                    ContainerKnown::Stopped => "STOPPED",
                    _ => "PENDING",
                };
                let mut network_bindings: Vec<berth_wire::ecs::NetworkBinding> = c
                    .bindings
                    .iter()
                    .map(|b| binding(&b.host_ip, b.container_port, b.host_port, b.protocol))
                    .collect();
                if c.known == ContainerKnown::Running {
                    for (port, proto) in &c.plan.host_mode_ports {
                        network_bindings.push(binding("0.0.0.0", *port, *port, *proto));
                    }
                }
                ContainerReport {
                    name: c.plan.name.clone(),
                    runtime_id: c.id.as_ref().map(|i| i.to_string()),
                    status: status.into(),
                    exit_code: c.exit_code.map(|e| i32::try_from(e).unwrap_or(-1)),
                    reason: c.reason.clone(),
                    network_bindings,
                    image_digest: c.image_digest.clone(),
                    health_status: c.plan.has_health_check.then(|| health_str(c.health).into()),
                    private_ipv4: if awsvpc && c.id.is_some() {
                        self.eni.as_ref().map(|e| e.ip.clone())
                    } else {
                        None
                    },
                    attachment_id: if awsvpc {
                        Some(attachment_id(&self.desired.task_arn))
                    } else {
                        None
                    },
                }
            })
            .collect();
        let task_health = {
            let checked: Vec<&ContainerState> = self
                .containers
                .iter()
                .filter(|c| c.plan.essential && c.plan.has_health_check)
                .collect();
            if checked.is_empty() {
                None
            } else if checked.iter().any(|c| c.health == HealthStatus::Unhealthy) {
                Some("UNHEALTHY")
            } else if checked.iter().all(|c| c.health == HealthStatus::Healthy) {
                Some("HEALTHY")
            } else {
                Some("UNKNOWN")
            }
        };
        let attachments = if awsvpc {
            let status = match self.known {
                TaskKnown::Stopped => "DELETED",
                _ if self.eni.is_some() => "ATTACHED",
                _ => "PRECREATED",
            };
            let mut details = eni_details(
                &self.desired.task_arn,
                self.eni.as_ref(),
                &self.ctx.config.region,
            );
            if let Some(subnet) = self
                .desired
                .network_configuration
                .as_ref()
                .and_then(|n| n.awsvpc_configuration.as_ref())
                .and_then(|c| c.subnets.as_ref()?.first())
            {
                details.insert(0, ("subnetId".into(), subnet.clone()));
            }
            vec![AttachmentReport {
                arn: attachment_arn(&self.desired.task_arn),
                kind: "ElasticNetworkInterface".into(),
                status: status.into(),
                details,
            }]
        } else {
            Vec::new()
        };
        TaskStateChange {
            cluster: self.ctx.config.cluster.clone(),
            task_arn: self.desired.task_arn.clone(),
            status: self.known.as_str().into(),
            reason: if self.known == TaskKnown::Stopped {
                self.stop.as_ref().map(|s| s.0.clone())
            } else {
                None
            },
            stop_code: if self.known == TaskKnown::Stopped {
                self.stop.as_ref().and_then(|s| s.1.clone())
            } else {
                None
            },
            containers,
            attachments,
            pull_started_at: self.pull_started,
            pull_stopped_at: self.pull_stopped,
            execution_stopped_at: self.execution_stopped,
            health_status: task_health.map(String::from),
        }
    }

    /// The task as the metadata endpoint shows it.
    fn metadata_view(&self) -> crate::metadata::TaskView {
        use crate::metadata::{ContainerView, EniView, TaskView};
        let td = &self.desired.task_definition;
        let overrides = &self.desired.overrides;
        let num = |s: Option<&String>| s.and_then(|v| v.trim().parse::<f64>().ok());
        let cpu = num(overrides.cpu.as_ref()).or_else(|| num(td.cpu.as_ref()));
        let mem = num(overrides.memory.as_ref()).or_else(|| num(td.memory.as_ref()));
        let network_mode = match self.plan.as_ref().map(|p| p.network_mode) {
            Some(TaskNetworkMode::Host) => "host",
            Some(TaskNetworkMode::None) => "none",
            Some(TaskNetworkMode::Awsvpc) => "awsvpc",
            _ => "bridge",
        };
        let desired = if self.desired.desired_status == "STOPPED" {
            "STOPPED"
        } else {
            "RUNNING"
        };
        TaskView {
            cluster: self.ctx.config.cluster.clone(),
            task_arn: self.desired.task_arn.clone(),
            family: td.family.clone().unwrap_or_default(),
            revision: td.revision,
            desired_status: desired.into(),
            known_status: self.known.as_str().into(),
            cpu_vcpu: cpu.map(|c| c / 1024.0),
            memory_mib: mem.map(|m| m as i64),
            pull_started_at: self.pull_started,
            pull_stopped_at: self.pull_stopped,
            execution_stopped_at: self.execution_stopped,
            availability_zone: self.ctx.config.availability_zone.clone(),
            service_name: self
                .desired
                .group
                .strip_prefix("service:")
                .map(String::from),
            tags: self
                .desired
                .tags
                .iter()
                .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
                .collect(),
            network_mode: network_mode.into(),
            eni: self.eni.as_ref().map(|e| EniView {
                ip: e.ip.clone(),
                mac: e.mac.clone(),
                subnet: e.subnet.clone(),
                subnet_gateway: match (
                    &e.gateway,
                    e.subnet.as_deref().and_then(|s| s.split_once('/')),
                ) {
                    (Some(g), Some((_, p))) => Some(format!("{g}/{p}")),
                    _ => None,
                },
                private_dns_name: private_dns_name(&e.ip, &self.ctx.config.region),
            }),
            containers: self
                .containers
                .iter()
                .map(|c| {
                    let known = match c.known {
                        ContainerKnown::None => "NONE",
                        ContainerKnown::Pulled => "PULLED",
                        ContainerKnown::Created => "CREATED",
                        ContainerKnown::Running => "RUNNING",
                        ContainerKnown::Stopped => "STOPPED",
                    };
                    let def = td
                        .container_definitions
                        .iter()
                        .flatten()
                        .find(|d| d.name.as_deref() == Some(c.plan.name.as_str()));
                    let lc = def.and_then(|d| d.log_configuration.as_ref());
                    ContainerView {
                        name: c.plan.name.clone(),
                        docker_id: c.id.as_ref().map(|i| i.to_string()),
                        docker_name: c.plan.spec.name.clone(),
                        image: c.plan.image.clone(),
                        image_id: c.image_id.clone(),
                        labels: c.plan.spec.labels.clone(),
                        desired_status: desired.into(),
                        known_status: known.into(),
                        cpu: c.plan.cpu_units,
                        memory_mib: c.plan.memory_mib,
                        created_at: c.created_at,
                        started_at: c.started_at,
                        finished_at: c.finished_at,
                        exit_code: c.exit_code,
                        health: c.plan.has_health_check.then(|| health_str(c.health).into()),
                        log_driver: lc
                            .and_then(|l| l.log_driver.as_ref())
                            .map(|d| d.as_str().to_string()),
                        log_options: lc.and_then(|l| l.options.clone()).unwrap_or_default(),
                        ip: c.ip.clone(),
                        ports: c
                            .bindings
                            .iter()
                            .map(|b| {
                                (
                                    b.container_port,
                                    b.protocol.as_str().to_string(),
                                    b.host_port,
                                    b.host_ip.clone(),
                                )
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    fn report(&mut self) {
        if let Some(md) = &self.ctx.metadata {
            md.publish(self.metadata_view());
        }
        let snap = self.snapshot();
        if self.last_report.as_ref() != Some(&snap) {
            self.ctx.reporter.submit(snap.clone());
            self.last_report = Some(snap);
        }
    }
}

enum Deps {
    Ready,
    Wait,
    Impossible(String),
}

fn create_reason(e: &RuntimeError) -> String {
    match e {
        RuntimeError::ImageNotFound { .. } => e.ecs_reason(),
        RuntimeError::CreateFailed { message } | RuntimeError::Other { message } => {
            format!("CannotCreateContainerError: {message}")
        }
        RuntimeError::Conflict { message } => format!("CannotCreateContainerError: {message}"),
        other => format!("CannotCreateContainerError: {other}"),
    }
}

fn health_str(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => "HEALTHY",
        HealthStatus::Unhealthy => "UNHEALTHY",
        HealthStatus::Starting | HealthStatus::None => "UNKNOWN",
    }
}

fn binding(
    host_ip: &str,
    container_port: u16,
    host_port: u16,
    protocol: Protocol,
) -> berth_wire::ecs::NetworkBinding {
    berth_wire::ecs::NetworkBinding {
        bind_ip: Some(host_ip.to_string()),
        container_port: Some(i32::from(container_port)),
        host_port: Some(i32::from(host_port)),
        protocol: Some(match protocol {
            Protocol::Tcp => berth_wire::ecs::TransportProtocol::Tcp,
            Protocol::Udp => berth_wire::ecs::TransportProtocol::Udp,
        }),
        ..Default::default()
    }
}

/// The attachment id of a task's ENI: a UUID made from the task id (one attachment per task),
/// as ECS's attachment ids are UUIDs.
pub fn attachment_id(task_arn: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..]
        )
    } else {
        id.to_string()
    }
}

/// The ENI attachment's details as ECS reports them (`subnetId` only when known: berth has no
/// VPC subnets): `networkInterfaceId`, `macAddress`, `privateDnsName`, `privateIPv4Address`,
/// `subnetGatewayIpv4Address` (gateway/prefix length).
pub fn eni_details(task_arn: &str, eni: Option<&Eni>, region: &str) -> Vec<(String, String)> {
    let mut d = vec![(
        "networkInterfaceId".to_string(),
        format!(
            "eni-{}",
            attachment_id(task_arn)
                .chars()
                .filter(|c| *c != '-')
                .take(17)
                .collect::<String>()
        ),
    )];
    let Some(eni) = eni else {
        return d;
    };
    if let Some(mac) = &eni.mac {
        d.push(("macAddress".into(), mac.clone()));
    }
    d.push(("privateDnsName".into(), private_dns_name(&eni.ip, region)));
    d.push(("privateIPv4Address".into(), eni.ip.clone()));
    if let (Some(gw), Some(prefix)) = (
        &eni.gateway,
        eni.subnet
            .as_deref()
            .and_then(|s| s.split_once('/'))
            .map(|(_, p)| p),
    ) {
        d.push(("subnetGatewayIpv4Address".into(), format!("{gw}/{prefix}")));
    }
    d
}

/// EC2's private DNS name of an address: `ip-10-0-0-1.ec2.internal` in us-east-1,
/// `ip-10-0-0-1.<region>.compute.internal` elsewhere.
pub fn private_dns_name(ip: &str, region: &str) -> String {
    let host = format!("ip-{}", ip.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// The awsvpc attachment ARN the agent reports for a task:
/// `arn:…:attachment/<task id>` in the task's partition, region and account.
pub fn attachment_arn(task_arn: &str) -> String {
    match task_arn.split_once(":task/") {
        Some((prefix, _)) => format!("{prefix}:attachment/{}", attachment_id(task_arn)),
        None => format!("{task_arn}/attachment"),
    }
}

#[cfg(test)]
mod pull_tests {
    use super::PullCoalescer;
    use berth_runtime::fake::FakeRuntime;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_pulls_of_one_image_is_one_engine_pull() {
        let rt = Arc::new(FakeRuntime::default());
        let c = Arc::new(PullCoalescer::default());
        let mut hs = Vec::new();
        for _ in 0..20 {
            let (rt, c) = (rt.clone(), c.clone());
            hs.push(tokio::spawn(async move {
                c.pull(rt.as_ref(), "busybox:latest", None).await
            }));
        }
        for h in hs {
            assert!(h.await.unwrap().is_ok());
        }
        assert_eq!(
            rt.pulls()
                .iter()
                .filter(|p| p.as_str() == "busybox:latest")
                .count(),
            1
        );
        // After the reuse window a new task pulls afresh.
        tokio::time::advance(PullCoalescer::REUSE + std::time::Duration::from_secs(1)).await;
        c.pull(rt.as_ref(), "busybox:latest", None).await.unwrap();
        assert_eq!(
            rt.pulls()
                .iter()
                .filter(|p| p.as_str() == "busybox:latest")
                .count(),
            2
        );
        // A failure is shared too, with the ECS reason.
        rt.fail_pull("nope:1", "manifest unknown");
        let e = c.pull(rt.as_ref(), "nope:1", None).await.unwrap_err();
        assert!(e.0.starts_with("CannotPullContainerError"), "{e:?}");
    }
}
