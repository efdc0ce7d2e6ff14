//! A simulated fleet: many container instances in one process, each the *real* agent
//! ([`crate::run_with`]: registration, the `PollDesiredState` long-poll that is also the heartbeat,
//! the task manager and actors, the ordered `SubmitTaskStateChange` reporter) driving its own
//! in-memory [`FakeRuntime`] instead of Docker.
//!
//! It is a **test and benchmark tool** (`berth sim`, `bench/fleet.sh`, the e2e tests' simulated
//! agents): it exercises the control plane at fleet scale without hosts, and is never a stand-in
//! for the Docker runtime when a test is about what really happens to containers.
//!
//! Efficiency: every instance is a handful of tokio tasks (poll loop, manager, reporter, one actor
//! per task) on the caller's runtime — no thread per instance — and all instances share one
//! control-plane client ([`HttpControlPlane`], one hyper connection pool). Concurrent
//! registrations are capped ([`FleetConfig::register_concurrency`]) because each one rewrites the
//! cluster record (a fleet booting at once would otherwise mostly retry compare conflicts).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_agent_api::{PollRequest, PollResponse};
use berth_runtime::fake::{FakeConfig, FakeRuntime};
use berth_wire::ecs;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::awslogs::{LogEvent, LogSink};
use crate::control::{ControlPlane, ControlPlaneError, HttpControlPlane, TaskStateChange};
use crate::{AgentConfig, AgentError};

/// How one simulated instance looks and behaves.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// Cluster to join.
    pub cluster: String,
    /// `ecs.availability-zone` (e.g. `us-east-1a`).
    pub availability_zone: String,
    /// `ecs.instance-type`.
    pub instance_type: String,
    /// Region (identity document).
    pub region: String,
    /// Registered CPU units (a multiple of 1024: the agent registers cores × 1024).
    pub cpu: u32,
    /// Registered memory, MiB.
    pub memory_mib: u64,
    /// Fake engine latencies and failure rate.
    pub pull_latency: Duration,
    /// Time each container start takes.
    pub start_latency: Duration,
    /// Time a container takes to exit after its stop signal.
    pub stop_latency: Duration,
    /// Fraction of container starts that fail (the task is reported STOPPED, TaskFailedToStart).
    pub fail_rate: f64,
    /// Seed of the failure decision.
    pub seed: u64,
    /// Where this instance keeps its identity (a restart with the same directory re-registers as
    /// the same container instance).
    pub data_dir: PathBuf,
    /// How long stopped tasks' (fake) containers are kept.
    pub task_cleanup_wait: Duration,
    /// Instance attributes (`ECS_INSTANCE_ATTRIBUTES`).
    pub attributes: Vec<(String, String)>,
}

impl InstanceConfig {
    /// An instance of `cluster` in `availability_zone` with `cpu` units and `memory_mib`, keeping
    /// its identity in `data_dir`; no latencies, no failures.
    pub fn new(
        cluster: &str,
        availability_zone: &str,
        cpu: u32,
        memory_mib: u64,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            availability_zone: availability_zone.into(),
            instance_type: "sim.large".into(),
            region: "us-east-1".into(),
            cpu,
            memory_mib,
            pull_latency: Duration::ZERO,
            start_latency: Duration::ZERO,
            stop_latency: Duration::ZERO,
            fail_rate: 0.0,
            seed: 0,
            data_dir,
            task_cleanup_wait: Duration::from_secs(60),
            attributes: Vec::new(),
        }
    }

    fn agent_config(&self) -> AgentConfig {
        AgentConfig {
            cluster: self.cluster.clone(),
            availability_zone: self.availability_zone.clone(),
            instance_type: self.instance_type.clone(),
            region: self.region.clone(),
            data_dir: self.data_dir.clone(),
            reserved_memory_mib: 0,
            task_cleanup_wait: self.task_cleanup_wait,
            container_stop_timeout: Duration::from_secs(2),
            instance_attributes: self.attributes.iter().cloned().collect(),
            ..AgentConfig::default()
        }
    }

    fn fake_config(&self) -> FakeConfig {
        FakeConfig {
            pull_latency: self.pull_latency,
            start_latency: self.start_latency,
            stop_latency: self.stop_latency,
            cpus: self.cpu.div_ceil(1024).max(1),
            memory_bytes: self.memory_mib << 20,
            start_failure_rate: self.fail_rate,
            failure_seed: self.seed,
            epoch: std::time::SystemTime::now(),
            ..FakeConfig::default()
        }
    }
}

/// Counters shared by every instance of a fleet (all monotonic).
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Instances whose registration succeeded.
    pub registered: AtomicU64,
    /// Registration attempts that failed (each is retried by the agent).
    pub register_errors: AtomicU64,
    /// Answered `PollDesiredState` calls.
    pub polls: AtomicU64,
    /// Failed polls.
    pub poll_errors: AtomicU64,
    /// Acknowledged task reports with status RUNNING.
    pub reported_running: AtomicU64,
    /// Acknowledged task reports with status STOPPED.
    pub reported_stopped: AtomicU64,
    /// Acknowledged STOPPED reports of tasks that failed to start.
    pub reported_failed_to_start: AtomicU64,
    /// Task reports that failed (retried by the agent).
    pub report_errors: AtomicU64,
}

impl FleetStats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    /// One line: `registered=… polls=… running=… stopped=… failed_to_start=… errors=…`.
    pub fn line(&self) -> String {
        format!(
            "registered={} register_errors={} polls={} poll_errors={} reported_running={} reported_stopped={} failed_to_start={} report_errors={}",
            Self::get(&self.registered),
            Self::get(&self.register_errors),
            Self::get(&self.polls),
            Self::get(&self.poll_errors),
            Self::get(&self.reported_running),
            Self::get(&self.reported_stopped),
            Self::get(&self.reported_failed_to_start),
            Self::get(&self.report_errors),
        )
    }
}

/// One instance's view of the shared control-plane client: counts into [`FleetStats`], caps
/// concurrent registrations, and publishes this instance's ARN once registered.
struct SimControl<C> {
    inner: Arc<C>,
    stats: Arc<FleetStats>,
    register_gate: Arc<Semaphore>,
    arn: watch::Sender<Option<String>>,
}

impl<C> std::fmt::Debug for SimControl<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl").finish_non_exhaustive()
    }
}

#[async_trait]
impl<C: ControlPlane> ControlPlane for SimControl<C> {
    async fn register(
        &self,
        request: &ecs::RegisterContainerInstanceRequest,
    ) -> Result<ecs::RegisterContainerInstanceResponse, ControlPlaneError> {
        let _permit = self.register_gate.acquire().await;
        let r = self.inner.register(request).await;
        match &r {
            Ok(resp) => {
                self.stats.registered.fetch_add(1, Ordering::Relaxed);
                let arn = resp
                    .container_instance
                    .as_ref()
                    .and_then(|ci| ci.container_instance_arn.clone());
                self.arn.send_replace(arn);
            }
            Err(_) => {
                self.stats.register_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    async fn poll(&self, request: &PollRequest) -> Result<PollResponse, ControlPlaneError> {
        let r = self.inner.poll(request).await;
        let c = if r.is_ok() {
            &self.stats.polls
        } else {
            &self.stats.poll_errors
        };
        c.fetch_add(1, Ordering::Relaxed);
        r
    }

    async fn submit_task_state(&self, change: &TaskStateChange) -> Result<(), ControlPlaneError> {
        let r = self.inner.submit_task_state(change).await;
        match (&r, change.status.as_str()) {
            (Ok(()), "RUNNING") => {
                self.stats.reported_running.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(()), "STOPPED") => {
                self.stats.reported_stopped.fetch_add(1, Ordering::Relaxed);
                if change.stop_code.as_deref() == Some("TaskFailedToStart") {
                    self.stats
                        .reported_failed_to_start
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            (Ok(()), _) => {}
            (Err(_), _) => {
                self.stats.report_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    async fn submit_container_state(
        &self,
        change: &ecs::SubmitContainerStateChangeRequest,
    ) -> Result<(), ControlPlaneError> {
        self.inner.submit_container_state(change).await
    }
}

#[async_trait]
impl<C: LogSink> LogSink for SimControl<C> {
    async fn create_log_group(&self, group: &str) -> Result<(), ControlPlaneError> {
        self.inner.create_log_group(group).await
    }
    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ControlPlaneError> {
        self.inner.create_log_stream(group, stream).await
    }
    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ControlPlaneError> {
        self.inner.put_log_events(group, stream, events).await
    }
}

/// One running simulated instance: the real agent loop on a [`FakeRuntime`].
pub struct SimInstance {
    /// The instance's fake engine (tests inject failures or drive containers through it).
    pub runtime: FakeRuntime,
    arn: watch::Receiver<Option<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), AgentError>>>,
}

impl std::fmt::Debug for SimInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimInstance")
            .field("arn", &*self.arn.borrow())
            .finish_non_exhaustive()
    }
}

impl SimInstance {
    /// Starts the agent of one instance on the current tokio runtime. It registers (through
    /// `register_gate`), then polls and runs tasks until [`SimInstance::stop`] or drop.
    pub fn spawn<C: ControlPlane + LogSink>(
        config: &InstanceConfig,
        control: Arc<C>,
        stats: Arc<FleetStats>,
        register_gate: Arc<Semaphore>,
    ) -> SimInstance {
        let runtime = FakeRuntime::new(config.fake_config());
        let (arn_tx, arn_rx) = watch::channel(None);
        let sim = Arc::new(SimControl {
            inner: control,
            stats,
            register_gate,
            arn: arn_tx,
        });
        let (tx, rx) = oneshot::channel::<()>();
        let agent_config = config.agent_config();
        let rt = Arc::new(runtime.clone());
        let join = tokio::spawn(async move {
            let r = crate::run_with(agent_config, rt, sim, async move {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = &r {
                tracing::warn!(error = ?e, "simulated instance ended with an error");
            }
            r
        });
        SimInstance {
            runtime,
            arn: arn_rx,
            shutdown: Some(tx),
            join: Some(join),
        }
    }

    /// The container-instance ARN once registered.
    pub fn arn(&self) -> Option<String> {
        self.arn.borrow().clone()
    }

    /// Waits until registered (or the agent ended); the ARN.
    pub async fn registered(&mut self) -> Option<String> {
        let r = self.arn.wait_for(Option::is_some).await.ok()?;
        r.clone()
    }

    /// Stops the agent as a host going away would (no more polls or reports; its fake containers
    /// are left as they are). Returns once the agent loop has ended.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }

    /// Signals the agent to stop without waiting.
    pub fn kill(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for SimInstance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fleet: `instances` simulated instances spread over `azs` availability zones.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Control-plane endpoints.
    pub endpoints: Vec<String>,
    /// Agent key.
    pub access_key_id: String,
    /// Agent key secret.
    pub secret_access_key: String,
    /// Number of instances.
    pub instances: usize,
    /// Number of availability zones (`<region>a`, `<region>b`, …; instance i is in zone i mod azs).
    pub azs: usize,
    /// Template for every instance; `data_dir` is the fleet's directory (instance i uses
    /// `data_dir/i-<i>`), `availability_zone` is overwritten per instance.
    pub template: InstanceConfig,
    /// Registrations in flight at once.
    pub register_concurrency: usize,
}

/// A running fleet.
pub struct Fleet {
    /// Shared counters.
    pub stats: Arc<FleetStats>,
    /// The instances, in index order.
    pub instances: Vec<SimInstance>,
}

/// Availability zone `i` of `region` (`us-east-1` → `us-east-1a`, `us-east-1b`, …).
pub fn availability_zone(region: &str, i: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    format!("{region}{}", letters[i % letters.len()] as char)
}

impl Fleet {
    /// Starts every instance of `config` (on the current tokio runtime) sharing one HTTP client.
    pub fn start(config: &FleetConfig) -> Result<Fleet, AgentError> {
        let control = Arc::new(
            HttpControlPlane::new(
                &config.endpoints,
                &config.template.region,
                &config.access_key_id,
                &config.secret_access_key,
            )
            .map_err(AgentError::Client)?,
        );
        let stats = Arc::new(FleetStats::default());
        let gate = Arc::new(Semaphore::new(config.register_concurrency.max(1)));
        let azs = config.azs.max(1);
        let instances = (0..config.instances)
            .map(|i| {
                let mut ic = config.template.clone();
                ic.availability_zone = availability_zone(&ic.region, i % azs);
                ic.data_dir = config.template.data_dir.join(format!("i-{i:05}"));
                ic.seed = config.template.seed.wrapping_add(i as u64);
                SimInstance::spawn(&ic, control.clone(), stats.clone(), gate.clone())
            })
            .collect();
        Ok(Fleet { stats, instances })
    }

    /// Stops every instance.
    pub async fn stop(&mut self) {
        for i in &mut self.instances {
            i.kill();
        }
        for i in &mut self.instances {
            i.stop().await;
        }
    }
}
