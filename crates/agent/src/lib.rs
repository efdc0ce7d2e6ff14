//! berth-agent: turns a Docker host into an ECS container instance.
//!
//! # Pieces
//! - [`config`]: the ECS agent's `/etc/ecs/ecs.config` variables plus berth's `BERTH_*`.
//! - [`registration`]: identity (instance id, container-instance ARN persisted in
//!   `ECS_DATADIR/agent-state.json`) and the `RegisterContainerInstance` request.
//! - [`control`]: the [`ControlPlane`] trait (register, poll, report) with the real
//!   [`HttpControlPlane`] (SigV4 via `berth-client`, fail-over across endpoints) and
//!   [`FakeControlPlane`] for tests.
//! - [`spec`]: task definition + overrides → engine objects ([`spec::TaskPlan`]).
//! - [`manager`] / [`task`]: the task manager and one actor per task, generic over
//!   [`berth_runtime::ContainerRuntime`].
//! - [`reporter`]: ordered, retried, superseding delivery of task reports.
//! - [`metadata`]: the task metadata endpoint (v4/v3) every container gets a URI for.
//! - [`pause`]: the self-made pause image holding an awsvpc task's network namespace.
//! - [`awslogs`]: the `awslogs` log driver — one shipper per container follows its output into
//!   berth's CloudWatch-Logs-compatible store (`PutLogEvents`), checkpointed in `ECS_DATADIR`.
//!
//! # The channel
//! After registering, the agent long-polls `BerthAgent_20261122.PollDesiredState` with the
//! generation it has applied; each answer is the complete desired state of the instance. Answers
//! older than the applied generation are ignored. Poll failures back off exponentially (with
//! jitter, 200 ms → 15 s) and fail over across endpoints; after a failure, the first successful
//! poll re-sends the latest report of every task (the control plane learns the truth of what
//! happened while it was away; containers keep running meanwhile). `instanceStatus: INACTIVE`
//! ends the agent cleanly (deregistered).
//!
//! # The task state machine
//! Each task has exactly one owner, a [`task::TaskActor`] (a tokio task with a mailbox), which
//! holds the task's *desired* status (RUNNING or STOPPED, written by the control plane, only
//! moves forward) and *known* status (written by the agent, only moves forward):
//!
//! ```text
//!   task:       PENDING ──(every container started)──▶ RUNNING ──▶ STOPPED ──(cleanup wait)──▶ removed
//!                  │                                                  ▲
//!                  └──(pull/create/start failure, dependency failure)─┘  stopCode TaskFailedToStart
//!   container:  NONE ─▶ PULLED ─▶ CREATED ─▶ RUNNING ─▶ STOPPED
//! ```
//!
//! The actor is level-triggered: after every message (a new desired state, an engine event for
//! one of its containers, a resync after an engine reconnect, a timer) it re-inspects what
//! changed and *steps*: it creates the task's network and its pause container (awsvpc: one
//! network namespace per task, see [`pause`]) and task-scoped volumes, pulls the
//! images (`ECS_IMAGE_PULL_BEHAVIOR`; `pullStartedAt`/`pullStoppedAt`), then creates and starts
//! each container whose `dependsOn` conditions hold (START: dependency running; COMPLETE: exited;
//! SUCCESS: exited 0; HEALTHY: health check passed — links and volumesFrom imply START), waiting
//! at most the container's start timeout. Containers advance one step at a time.
//!
//! The task starts stopping when the control plane wants it STOPPED (or no longer lists it),
//! when an essential container exits ("Essential container in task exited",
//! `EssentialContainerExited`), or when something fails before it runs (the ECS reason:
//! `CannotPullContainerError: …`, `CannotCreateContainerError: …`,
//! `CannotStartContainerError: …`; `TaskFailedToStart`). Stopping stops the live containers in
//! waves, dependents before their dependencies, each with its stop timeout (SIGTERM, then
//! SIGKILL); never-created containers become STOPPED at once. A non-essential container's exit
//! only updates that container. After `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION` the containers,
//! task-scoped volumes and network are removed and the actor ends.
//!
//! Every change of the task's report (status, any container's status, exit code, reason,
//! bindings, health, digest, timestamps) is queued to the [`reporter::Reporter`] as a complete
//! `SubmitTaskStateChange`; a newer report supersedes an unsent older one.
//!
//! On restart the agent lists the containers labelled with its cluster and container-instance
//! ARN, and when the first desired state arrives hands each task's containers to a new actor,
//! which inspects them (running ones stay running; exited ones are reported with their exit
//! codes) instead of creating new ones. Containers of tasks the control plane no longer lists
//! are stopped and removed.

pub mod awslogs;
pub mod config;
pub mod control;
pub mod credentials;
pub mod manager;
pub mod metadata;
pub mod pause;
pub mod registration;
pub mod registry_auth;
pub mod reporter;
pub mod secrets;
pub mod sim;
pub mod spec;
pub mod task;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_api::{PollRequest, MAX_WAIT_SECONDS};
use berth_runtime::ContainerRuntime;
use tokio::sync::mpsc;

pub use config::{AgentConfig, ConfigError, ImagePullBehavior};
pub use control::{
    ControlPlane, ControlPlaneError, FakeControlPlane, HttpControlPlane, TaskStateChange,
};

/// Now, in epoch seconds (the wire's timestamps).
pub(crate) fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad configuration.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// No agent key configured.
    #[error("no agent credentials: set BERTH_AGENT_ACCESS_KEY_ID and BERTH_AGENT_SECRET_ACCESS_KEY (an `agent`-role key from `berth keys create --role agent`)")]
    NoCredentials,
    /// The container engine is unreachable.
    #[error("container engine unavailable")]
    Engine(#[source] berth_runtime::RuntimeError),
    /// The persisted identity could not be read or written.
    #[error("agent state")]
    State(#[from] registration::StateError),
    /// The control-plane client could not be built.
    #[error("control-plane client")]
    Client(#[source] berth_client::ClientError),
    /// The control plane refused the registration.
    #[error("registration refused")]
    Registration(#[source] ControlPlaneError),
    /// GPU support is on but no GPU can be listed.
    #[error("ECS_ENABLE_GPU_SUPPORT is true, but the host's GPUs cannot be listed: {0}")]
    Gpu(String),
    /// Task IAM roles are on but the credentials endpoint cannot listen.
    #[error(transparent)]
    Credentials(#[from] credentials::StartError),
}

/// Runs the agent against Docker (`DOCKER_HOST` or the default socket) and the configured
/// control plane until `shutdown` resolves (containers are left running) or the instance is
/// deregistered.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) else {
        return Err(AgentError::NoCredentials);
    };
    let control = HttpControlPlane::new(&config.endpoints, &config.region, key, secret)
        .map_err(AgentError::Client)?;
    let runtime = berth_runtime_docker::DockerRuntime::connect()
        .await
        .map_err(AgentError::Engine)?;
    run_with(config, Arc::new(runtime), Arc::new(control), shutdown).await
}

/// Backoff for reconnects: exponential with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// From `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }
    /// The next delay (random in [next/2, next]) and doubles.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        let jitter = rand::random::<f64>();
        half + half.mul_f64(jitter)
    }
    /// Back to the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Runs the agent with an explicit runtime and control plane (what [`run`] does after
/// connecting; tests call it with fakes).
pub async fn run_with<R: ContainerRuntime, C: ControlPlane + awslogs::LogSink>(
    mut config: AgentConfig,
    runtime: Arc<R>,
    control: Arc<C>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    let engine = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        r = runtime.info() => r.map_err(AgentError::Engine)?,
    };
    if config.enable_gpu_support && config.gpus.is_empty() {
        config.gpus = registration::detect_gpus(&config.nvidia_smi).map_err(AgentError::Gpu)?;
        tracing::info!(gpus = ?config.gpus, "GPUs found");
    }
    let credentials_listener = credentials::listen(&config).await?;
    let mut state = registration::load_or_init(&config.data_dir)?;
    if state
        .cluster
        .as_deref()
        .is_some_and(|c| c != config.cluster)
    {
        tracing::warn!(old = ?state.cluster, new = %config.cluster, "cluster changed; registering as a new container instance");
        state.container_instance_arn = None;
    }
    // Register (retrying while the control plane is unreachable).
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
    let instance_arn = loop {
        let req = registration::register_request(&config, &engine, &state);
        let res = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = control.register(&req) => r,
        };
        match res {
            Ok(resp) => {
                match resp
                    .container_instance
                    .and_then(|ci| ci.container_instance_arn)
                {
                    Some(arn) => break arn,
                    None => {
                        return Err(AgentError::Registration(ControlPlaneError::Decode(
                            "no containerInstanceArn in the answer".into(),
                        )))
                    }
                }
            }
            Err(e) if e.is_retryable() => {
                let d = backoff.delay();
                tracing::warn!(error = %e, retry_in = ?d, "registration failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(d) => {}
                }
            }
            Err(e) => return Err(AgentError::Registration(e)),
        }
    };
    state.container_instance_arn = Some(instance_arn.clone());
    state.cluster = Some(config.cluster.clone());
    if state.metadata_secret.is_none() {
        state.metadata_secret = Some(hex::encode(rand::random::<[u8; 32]>()));
    }
    registration::save(&config.data_dir, &state)?;
    tracing::info!(instance = %instance_arn, cluster = %config.cluster, instance_id = %state.instance_id, "registered container instance");

    let reporter = reporter::Reporter::default();
    let metadata_key = state
        .metadata_secret
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let credentials = credentials_listener.map(|l| {
        credentials::serve(
            l,
            &config,
            control.clone() as Arc<dyn ControlPlane>,
            metadata_key.clone(),
            &instance_arn,
        )
    });
    let metadata = metadata::start(runtime.clone(), metadata_key, config.metadata_port).await;
    let ctx = Arc::new(task::TaskContext {
        metadata,
        credentials,
        secrets: secrets::SecretStores(control.clone() as Arc<dyn ControlPlane>),
        engine_arch: engine.arch.clone(),
        config: config.clone(),
        instance_arn: instance_arn.clone(),
        reporter: reporter.clone(),
        logs: control.clone(),
        shipper: awslogs::ShipperConfig::default(),
        pulls: task::PullCoalescer::default(),
        starts: Arc::new(tokio::sync::Semaphore::new(config.concurrent_starts.max(1))),
        registry: registry_auth::RegistryCredentials::new(
            control.clone() as Arc<dyn ControlPlane>,
            &config.endpoints,
        ),
    });
    let mut manager = manager::TaskManager::new(runtime.clone(), ctx);
    if let Err(e) = manager.discover().await {
        tracing::warn!(error = %e, "cannot list existing containers; nothing adopted");
    }
    let (desired_tx, desired_rx) = mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let manager_join = tokio::spawn(manager.run(desired_rx, async move {
        let _ = stop_rx.await;
    }));
    let reporter_join = tokio::spawn(reporter.clone().run(control.clone()));

    let mut applied: u64 = 0;
    let mut failing = false;
    backoff.reset();
    let result = loop {
        let req = PollRequest {
            cluster: config.cluster.clone(),
            container_instance_arn: instance_arn.clone(),
            known_generation: applied,
            wait_seconds: MAX_WAIT_SECONDS,
        };
        let res = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = control.poll(&req) => r,
        };
        match res {
            Ok(resp) => {
                backoff.reset();
                if failing {
                    tracing::info!(instance = %instance_arn, "control plane reachable again; re-sending task states");
                    reporter.resend_all();
                    failing = false;
                }
                if resp.generation < applied {
                    tracing::debug!(
                        generation = resp.generation,
                        applied,
                        "stale desired state ignored"
                    );
                    continue;
                }
                if resp.instance_status == "INACTIVE" {
                    tracing::info!(instance = %instance_arn, "container instance deregistered; agent exiting");
                    break Ok(());
                }
                if resp.generation > applied || applied == 0 {
                    applied = resp.generation;
                    tracing::debug!(
                        generation = applied,
                        tasks = resp.tasks.len(),
                        "desired state"
                    );
                    if desired_tx.send(resp.tasks).await.is_err() {
                        break Ok(());
                    }
                }
            }
            Err(e) => {
                failing = true;
                let d = backoff.delay();
                tracing::warn!(error = %e, retry_in = ?d, "poll failed");
                tokio::select! {
                    _ = &mut shutdown => break Ok(()),
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    };
    let _ = stop_tx.send(());
    let _ = manager_join.await;
    // Give queued reports a moment to go out, then stop.
    let flush_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while reporter.backlog() > 0 && tokio::time::Instant::now() < flush_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reporter_join.abort();
    result
}
