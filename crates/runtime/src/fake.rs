//! [`FakeRuntime`]: a deterministic, in-memory [`ContainerRuntime`] for agent tests and simulation.
//!
//! Time comes from `tokio::time`, so under `tokio::time::pause()` every latency and scripted exit
//! happens at an exact virtual instant. Ids, ports, IPs and digests are sequential/derived, never
//! random. What a started container "does" is scripted per image with [`FakeBehavior`]; failures
//! are injected with [`FakeRuntime::fail_pull`], [`FakeRuntime::fail_create`],
//! [`FakeRuntime::fail_start`] and [`FakeRuntime::set_engine_down`]; tests can also drive a running
//! container directly ([`FakeRuntime::exit`], [`FakeRuntime::oom`], [`FakeRuntime::set_health`],
//! [`FakeRuntime::emit_log`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::{ObjectKind, Result, RuntimeError};
use crate::types::*;
use crate::{normalize_image_reference, ContainerRuntime, EventStream, LogStream};

/// Engine-wide settings of a [`FakeRuntime`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Time a pull takes.
    pub pull_latency: Duration,
    /// Time a create takes.
    pub create_latency: Duration,
    /// Time a start takes.
    pub start_latency: Duration,
    /// Time a container that honours its stop signal takes to exit after stop/kill.
    pub stop_latency: Duration,
    /// Reported CPUs.
    pub cpus: u32,
    /// Reported memory.
    pub memory_bytes: u64,
    /// Reported log drivers.
    pub log_drivers: Vec<String>,
    /// Wall-clock time at virtual instant zero (timestamps = epoch + elapsed).
    pub epoch: SystemTime,
    /// Behaviour of containers whose image has none set.
    pub default_behavior: FakeBehavior,
    /// First port handed out for dynamic host ports.
    pub ephemeral_port_start: u16,
    /// Fraction (0.0–1.0) of container starts that fail with a simulated start error (fleet
    /// simulation). Which starts fail is decided by a hash of the container's name and
    /// [`FakeConfig::failure_seed`], so a run is reproducible.
    pub start_failure_rate: f64,
    /// Seed of the start-failure decision.
    pub failure_seed: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            pull_latency: Duration::ZERO,
            create_latency: Duration::ZERO,
            start_latency: Duration::ZERO,
            stop_latency: Duration::ZERO,
            cpus: 2,
            memory_bytes: 4 << 30,
            log_drivers: vec!["json-file".into(), "awslogs".into(), "none".into()],
            epoch: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            default_behavior: FakeBehavior::run_forever(),
            ephemeral_port_start: 32768,
            start_failure_rate: 0.0,
            failure_seed: 0,
        }
    }
}

/// What a started container does on its own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeBehavior {
    /// Exit by itself after this long with this code.
    pub exit_after: Option<(Duration, i64)>,
    /// Get OOM-killed after this long (exit code 137, `oom_killed`).
    pub oom_after: Option<Duration>,
    /// Health status reported after the first health-check interval (containers with a health
    /// check only; `None` = healthy).
    pub health: Option<HealthStatus>,
    /// Lines printed right after start.
    pub logs: Vec<(LogSource, String)>,
    /// Ignore SIGTERM: stop then waits the whole timeout and SIGKILLs (exit 137), like a shell
    /// running as PID 1.
    pub ignores_stop_signal: bool,
    /// Exit code when the stop signal is honoured (default 143 = 128 + SIGTERM when `None`).
    pub stop_exit_code: Option<i64>,
    /// Reported memory usage.
    pub memory_usage_bytes: u64,
}

impl FakeBehavior {
    /// Runs until stopped.
    pub fn run_forever() -> Self {
        Self::default()
    }
    /// Exits with `code` after `after`.
    pub fn exit_after(after: Duration, code: i64) -> Self {
        Self {
            exit_after: Some((after, code)),
            ..Self::default()
        }
    }
    /// Is OOM-killed after `after`.
    pub fn oom_after(after: Duration) -> Self {
        Self {
            oom_after: Some(after),
            ..Self::default()
        }
    }
    /// Reports `health` after the first check interval.
    pub fn with_health(mut self, health: HealthStatus) -> Self {
        self.health = Some(health);
        self
    }
    /// Prints `line` on stdout at start.
    pub fn with_log(mut self, line: impl Into<String>) -> Self {
        self.logs.push((LogSource::Stdout, line.into()));
        self
    }
    /// Ignores the stop signal.
    pub fn ignoring_stop_signal(mut self) -> Self {
        self.ignores_stop_signal = true;
        self
    }
}

struct FakeContainer {
    info: ContainerInfo,
    spec: ContainerSpec,
    behavior: FakeBehavior,
    /// Bumped on every start and exit so stale timers do nothing.
    generation: u64,
    bound_ports: Vec<(u16, Protocol)>,
    logs: Vec<LogLine>,
    /// `None` marks "container stopped" to followers.
    log_tx: broadcast::Sender<Option<LogLine>>,
}

#[derive(Default)]
struct State {
    images: BTreeMap<String, ImageInfo>,
    pull_failures: BTreeMap<String, String>,
    create_failures: BTreeMap<String, String>,
    start_failures: BTreeMap<String, String>,
    behaviors: BTreeMap<String, FakeBehavior>,
    containers: BTreeMap<String, FakeContainer>,
    names: BTreeMap<String, String>,
    networks: BTreeMap<String, NetworkInfo>,
    volumes: BTreeMap<String, VolumeInfo>,
    used_ports: BTreeSet<(u16, Protocol)>,
    next_id: u64,
    next_port: u16,
    next_ip: u32,
    engine_down: bool,
    pulls: Vec<String>,
}

struct Shared {
    config: FakeConfig,
    origin: Instant,
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
}

/// A deterministic in-memory container engine. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeRuntime {
    shared: Arc<Shared>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new(FakeConfig::default())
    }
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn digest_of(text: &str) -> String {
    // FNV-1a, four lanes, to get a stable 64-hex-digit pseudo digest.
    let mut out = String::from("sha256:");
    for lane in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ lane;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// Whether the start of container `name` fails under `config.start_failure_rate`.
fn simulated_start_failure(config: &FakeConfig, name: &str) -> bool {
    if config.start_failure_rate <= 0.0 {
        return false;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ config.failure_seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise (splitmix64) so nearby names spread over the whole range.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let unit = (h >> 11) as f64 / ((1u64 << 53) as f64);
    unit < config.start_failure_rate
}

fn signal_number(signal: &str) -> i64 {
    let s = signal.trim_start_matches("SIG");
    if let Ok(n) = s.parse::<i64>() {
        return n;
    }
    match s {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        _ => 15,
    }
}

impl FakeRuntime {
    /// A fake engine with the given settings and no images.
    pub fn new(config: FakeConfig) -> Self {
        let (events, _) = broadcast::channel(1024);
        let state = State {
            next_port: config.ephemeral_port_start,
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                config,
                origin: Instant::now(),
                state: Mutex::new(state),
                events,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> SystemTime {
        self.shared.config.epoch + self.shared.origin.elapsed()
    }

    async fn latency(d: Duration) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    fn check_up(state: &State) -> Result<()> {
        if state.engine_down {
            return Err(RuntimeError::EngineUnavailable {
                message: "Cannot connect to the Docker daemon (fake engine is down)".into(),
            });
        }
        Ok(())
    }

    /// Makes `reference` present locally (as if pulled or built).
    pub fn add_image(&self, reference: &str) -> ImageInfo {
        let key = normalize_image_reference(reference);
        let digest = digest_of(&key);
        let repo = crate::split_image_reference(reference).0;
        let info = ImageInfo {
            id: digest_of(&format!("config:{key}")),
            repo_tags: vec![key.clone()],
            repo_digests: vec![format!("{repo}@{digest}")],
            digest: Some(digest),
            size_bytes: 1 << 20,
        };
        self.lock().images.insert(key, info.clone());
        info
    }

    /// Makes pulls of `reference` fail with `message`.
    pub fn fail_pull(&self, reference: &str, message: impl Into<String>) {
        self.lock()
            .pull_failures
            .insert(normalize_image_reference(reference), message.into());
    }

    /// Makes creating containers from `image` fail with `message`.
    pub fn fail_create(&self, image: &str, message: impl Into<String>) {
        self.lock()
            .create_failures
            .insert(normalize_image_reference(image), message.into());
    }

    /// Makes starting containers from `image` fail with `message`.
    pub fn fail_start(&self, image: &str, message: impl Into<String>) {
        self.lock()
            .start_failures
            .insert(normalize_image_reference(image), message.into());
    }

    /// Clears all injected pull/create/start failures.
    pub fn clear_failures(&self) {
        let mut s = self.lock();
        s.pull_failures.clear();
        s.create_failures.clear();
        s.start_failures.clear();
    }

    /// Scripts what containers of `image` do once started.
    pub fn set_behavior(&self, image: &str, behavior: FakeBehavior) {
        self.lock()
            .behaviors
            .insert(normalize_image_reference(image), behavior);
    }

    /// Takes the engine down (every call fails with `EngineUnavailable`, event streams report
    /// `Disconnected`) or brings it back (`Reconnected`). Containers keep their state.
    pub fn set_engine_down(&self, down: bool) {
        let changed = {
            let mut s = self.lock();
            let changed = s.engine_down != down;
            s.engine_down = down;
            changed
        };
        if changed {
            let ev = if down {
                RuntimeEvent::Disconnected {
                    error: "fake engine is down".into(),
                }
            } else {
                RuntimeEvent::Reconnected
            };
            let _ = self.shared.events.send(ev);
        }
    }

    /// References pulled so far, in order.
    pub fn pulls(&self) -> Vec<String> {
        self.lock().pulls.clone()
    }

    /// Ids of all containers (any state).
    pub fn container_ids(&self) -> Vec<ContainerId> {
        self.lock()
            .containers
            .keys()
            .map(|k| ContainerId::new(k.clone()))
            .collect()
    }

    /// Makes a running container exit with `code` now.
    pub fn exit(&self, id: &ContainerId, code: i64) -> Result<()> {
        self.finish(id.as_str(), None, code, false)
    }

    /// Makes a running container get OOM-killed now.
    pub fn oom(&self, id: &ContainerId) -> Result<()> {
        self.finish(id.as_str(), None, 137, true)
    }

    /// Sets a running container's health status (emits a health event when it changes).
    pub fn set_health(&self, id: &ContainerId, health: HealthStatus) -> Result<()> {
        self.apply_health(id.as_str(), None, health)
    }

    /// Appends a log line as if the container printed it.
    pub fn emit_log(
        &self,
        id: &ContainerId,
        source: LogSource,
        line: impl Into<String>,
    ) -> Result<()> {
        let now = self.now();
        let mut s = self.lock();
        let c = s
            .containers
            .get_mut(id.as_str())
            .ok_or_else(|| not_found(id.as_str()))?;
        push_log(c, source, line.into(), now);
        Ok(())
    }

    fn send(&self, ev: ContainerEvent) {
        // No subscribers is fine.
        let _ = self.shared.events.send(RuntimeEvent::Container(ev));
    }

    fn event(&self, c: &FakeContainer, kind: EventKind) -> ContainerEvent {
        ContainerEvent {
            id: c.info.id.clone(),
            name: Some(c.info.name.clone()),
            image: Some(c.info.image.clone()),
            labels: c.info.labels.clone(),
            kind,
            time: self.now(),
        }
    }

    fn resolve(state: &State, id: &str) -> Option<String> {
        if state.containers.contains_key(id) {
            return Some(id.to_string());
        }
        state.names.get(id.trim_start_matches('/')).cloned()
    }

    /// Ends the container's process. `generation` guards timers: `Some(g)` only acts if the
    /// container is still in run generation `g`.
    fn finish(&self, id: &str, generation: Option<u64>, code: i64, oom: bool) -> Result<()> {
        let now = self.now();
        let events = {
            let mut s = self.lock();
            let key = Self::resolve(&s, id).ok_or_else(|| not_found(id))?;
            let State {
                containers,
                used_ports,
                ..
            } = &mut *s;
            let Some(c) = containers.get_mut(&key) else {
                return Err(not_found(id));
            };
            if c.info.state.status != ContainerStatus::Running {
                return Ok(());
            }
            if let Some(g) = generation {
                if g != c.generation {
                    return Ok(());
                }
            }
            c.generation += 1;
            for p in c.bound_ports.drain(..) {
                used_ports.remove(&p);
            }
            c.info.ports.clear();
            c.info
                .networks
                .values_mut()
                .for_each(|n| *n = NetworkAttachment::default());
            let st = &mut c.info.state;
            st.status = ContainerStatus::Exited;
            st.exit_code = Some(code);
            st.oom_killed = oom;
            st.pid = None;
            st.finished_at = Some(now);
            let _ = c.log_tx.send(None);
            let mut evs = Vec::new();
            if oom {
                evs.push(self.event(c, EventKind::Oom));
            }
            evs.push(self.event(
                c,
                EventKind::Die {
                    exit_code: Some(code),
                },
            ));
            evs
        };
        tracing::debug!(
            container = id,
            exit_code = code,
            oom,
            "fake container exited"
        );
        for ev in events {
            self.send(ev);
        }
        Ok(())
    }

    fn apply_health(&self, id: &str, generation: Option<u64>, health: HealthStatus) -> Result<()> {
        let ev = {
            let mut s = self.lock();
            let key = Self::resolve(&s, id).ok_or_else(|| not_found(id))?;
            let Some(c) = s.containers.get_mut(&key) else {
                return Err(not_found(id));
            };
            if c.info.state.status != ContainerStatus::Running {
                return Ok(());
            }
            if generation.is_some_and(|g| g != c.generation) {
                return Ok(());
            }
            if c.info.state.health == health {
                return Ok(());
            }
            c.info.state.health = health;
            self.event(c, EventKind::Health(health))
        };
        self.send(ev);
        Ok(())
    }

    fn schedule(&self, id: String, generation: u64, behavior: &FakeBehavior, spec: &ContainerSpec) {
        if let Some((after, code)) = behavior.exit_after {
            let this = self.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = this.finish(&id, Some(generation), code, false);
            });
        }
        if let Some(after) = behavior.oom_after {
            let this = self.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = this.finish(&id, Some(generation), 137, true);
            });
        }
        if let Some(hc) = &spec.health_check {
            if hc.test != HealthTest::Disabled {
                let target = behavior.health.unwrap_or(HealthStatus::Healthy);
                // Unhealthy needs `retries` failed checks; healthy needs one success.
                let after = if target == HealthStatus::Unhealthy {
                    hc.interval * hc.retries.max(1) + hc.start_period
                } else {
                    hc.interval
                };
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = this.apply_health(&id, Some(generation), target);
                });
            }
        }
    }

    fn do_stop(
        &self,
        key: &str,
        signal: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<Duration>> {
        // Returns how long to wait before the exit takes effect, or None if nothing to do.
        let s = self.lock();
        let c = s.containers.get(key).ok_or_else(|| not_found(key))?;
        if c.info.state.status != ContainerStatus::Running {
            return Ok(None);
        }
        let kill = signal_number(signal) == 9;
        let ev = self.event(
            c,
            EventKind::Kill {
                signal: Some(signal.to_string()),
            },
        );
        let wait = if kill {
            Some(Duration::ZERO)
        } else if c.behavior.ignores_stop_signal {
            timeout
        } else {
            Some(self.shared.config.stop_latency)
        };
        drop(s);
        self.send(ev);
        Ok(wait)
    }
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind: ObjectKind::Container,
        id: id.to_string(),
        message: format!("No such container: {id}"),
    }
}

fn push_log(c: &mut FakeContainer, source: LogSource, line: String, now: SystemTime) {
    let l = LogLine {
        source,
        timestamp: Some(now),
        line,
    };
    c.logs.push(l.clone());
    let _ = c.log_tx.send(Some(l));
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn info(&self) -> Result<EngineInfo> {
        Self::check_up(&self.lock())?;
        let c = &self.shared.config;
        Ok(EngineInfo {
            version: "fake-1.0".into(),
            api_version: "1.41".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            cpus: c.cpus,
            memory_bytes: c.memory_bytes,
            log_drivers: c.log_drivers.clone(),
            storage_driver: "fake".into(),
            cgroup_version: Some("2".into()),
            memory_limit_supported: true,
        })
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo> {
        let s = self.lock();
        Self::check_up(&s)?;
        s.images
            .get(&normalize_image_reference(reference))
            .cloned()
            .ok_or_else(|| RuntimeError::ImageNotFound {
                image: reference.into(),
                message: format!("No such image: {reference}"),
            })
    }

    async fn pull_image(&self, reference: &str, _auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        Self::check_up(&self.lock())?;
        Self::latency(self.shared.config.pull_latency).await;
        let key = normalize_image_reference(reference);
        {
            let mut s = self.lock();
            Self::check_up(&s)?;
            s.pulls.push(reference.to_string());
            if let Some(message) = s.pull_failures.get(&key) {
                return Err(RuntimeError::PullFailed {
                    image: reference.into(),
                    message: message.clone(),
                });
            }
        }
        Ok(self.add_image(reference))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        Self::check_up(&self.lock())?;
        Self::latency(self.shared.config.create_latency).await;
        let now = self.now();
        let image_key = normalize_image_reference(&spec.image);
        let mut s = self.lock();
        Self::check_up(&s)?;
        let image =
            s.images
                .get(&image_key)
                .cloned()
                .ok_or_else(|| RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                    message: format!("No such image: {}", spec.image),
                })?;
        if s.names.contains_key(&spec.name) {
            return Err(RuntimeError::NameConflict {
                name: spec.name.clone(),
                message: format!(
                    "Conflict. The container name \"/{}\" is already in use",
                    spec.name
                ),
            });
        }
        if let Some(message) = s.create_failures.get(&image_key) {
            return Err(RuntimeError::CreateFailed {
                message: message.clone(),
            });
        }
        if let NetworkMode::Named { network, .. } = &spec.network_mode {
            if !s.networks.contains_key(network) {
                return Err(RuntimeError::CreateFailed {
                    message: format!("network {network} not found"),
                });
            }
        }
        if let NetworkMode::Container(other) = &spec.network_mode {
            if Self::resolve(&s, other.as_str()).is_none() {
                return Err(RuntimeError::CreateFailed {
                    message: format!("No such container: {other}"),
                });
            }
        }
        for m in &spec.mounts {
            if let Mount::Volume {
                volume,
                autoprovision,
                ..
            } = m
            {
                if !s.volumes.contains_key(&volume.name) {
                    if !autoprovision {
                        return Err(RuntimeError::CreateFailed {
                            message: format!("volume {} not found", volume.name),
                        });
                    }
                    s.volumes.insert(volume.name.clone(), fake_volume(volume));
                }
            }
        }
        s.next_id += 1;
        let id = format!("{:064x}", s.next_id);
        let networks = match &spec.network_mode {
            NetworkMode::Bridge => {
                BTreeMap::from([("bridge".to_string(), NetworkAttachment::default())])
            }
            NetworkMode::Host => {
                BTreeMap::from([("host".to_string(), NetworkAttachment::default())])
            }
            NetworkMode::Named { network, .. } => {
                BTreeMap::from([(network.clone(), NetworkAttachment::default())])
            }
            NetworkMode::None | NetworkMode::Container(_) => BTreeMap::new(),
        };
        let behavior = s
            .behaviors
            .get(&image_key)
            .cloned()
            .unwrap_or_else(|| self.shared.config.default_behavior.clone());
        let (log_tx, _) = broadcast::channel(256);
        let c = FakeContainer {
            info: ContainerInfo {
                id: ContainerId::new(id.clone()),
                name: spec.name.clone(),
                image: spec.image.clone(),
                image_id: image.id,
                labels: spec.labels.clone(),
                state: ContainerState {
                    status: ContainerStatus::Created,
                    exit_code: None,
                    oom_killed: false,
                    error: None,
                    pid: None,
                    started_at: None,
                    finished_at: None,
                    health: HealthStatus::None,
                },
                ports: Vec::new(),
                networks,
                created_at: Some(now),
            },
            spec: spec.clone(),
            behavior,
            generation: 0,
            bound_ports: Vec::new(),
            logs: Vec::new(),
            log_tx,
        };
        let ev = self.event(&c, EventKind::Create);
        s.names.insert(spec.name.clone(), id.clone());
        s.containers.insert(id.clone(), c);
        drop(s);
        tracing::debug!(container = %id, name = %spec.name, image = %spec.image, "fake container created");
        self.send(ev);
        Ok(ContainerId::new(id))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        Self::check_up(&self.lock())?;
        Self::latency(self.shared.config.start_latency).await;
        let now = self.now();
        let (ev, key, generation, behavior, spec) = {
            let mut s = self.lock();
            Self::check_up(&s)?;
            let key = Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?;
            let State {
                containers,
                used_ports,
                start_failures,
                next_port,
                next_ip,
                ..
            } = &mut *s;
            let Some(c) = containers.get_mut(&key) else {
                return Err(not_found(id.as_str()));
            };
            if c.info.state.status == ContainerStatus::Running {
                return Ok(());
            }
            if let Some(message) = start_failures.get(&normalize_image_reference(&c.spec.image)) {
                c.info.state.error = Some(message.clone());
                return Err(RuntimeError::StartFailed {
                    id: key.clone(),
                    message: message.clone(),
                });
            }
            if simulated_start_failure(&self.shared.config, &c.spec.name) {
                let message =
                    "simulated start failure (fake runtime start_failure_rate)".to_string();
                c.info.state.error = Some(message.clone());
                return Err(RuntimeError::StartFailed {
                    id: key.clone(),
                    message,
                });
            }
            // Ports: explicit ones must be free; 0 gets the next free ephemeral port.
            let mut bound = Vec::new();
            let mut mappings = Vec::new();
            for pb in &c.spec.port_bindings {
                let host_port = if pb.host_port == 0 {
                    if let Some((lo, hi)) = pb.host_port_range {
                        // The first free port of the requested range (as Docker does).
                        let free = (lo..=hi).find(|p| {
                            !used_ports.contains(&(*p, pb.protocol))
                                && !bound.contains(&(*p, pb.protocol))
                        });
                        match free {
                            Some(p) => p,
                            None => {
                                let message = format!(
                                    "driver failed programming external connectivity on endpoint {}: all ports from range {lo}-{hi} are allocated",
                                    c.spec.name
                                );
                                c.info.state.error = Some(message.clone());
                                return Err(RuntimeError::StartFailed {
                                    id: key.clone(),
                                    message,
                                });
                            }
                        }
                    } else {
                        let mut p = *next_port;
                        while used_ports.contains(&(p, pb.protocol))
                            || bound.contains(&(p, pb.protocol))
                        {
                            p = p.wrapping_add(1).max(1024);
                        }
                        *next_port = p.wrapping_add(1).max(1024);
                        p
                    }
                } else {
                    if used_ports.contains(&(pb.host_port, pb.protocol))
                        || bound.contains(&(pb.host_port, pb.protocol))
                    {
                        let message = format!(
                            "driver failed programming external connectivity on endpoint {}: Bind for 0.0.0.0:{} failed: port is already allocated",
                            c.spec.name, pb.host_port
                        );
                        c.info.state.error = Some(message.clone());
                        return Err(RuntimeError::StartFailed {
                            id: key.clone(),
                            message,
                        });
                    }
                    pb.host_port
                };
                bound.push((host_port, pb.protocol));
                mappings.push(PortMapping {
                    container_port: pb.container_port,
                    protocol: pb.protocol,
                    host_ip: pb.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                    host_port,
                });
            }
            used_ports.extend(bound.iter().copied());
            c.bound_ports = bound;
            mappings.sort();
            c.info.ports = mappings;
            for (name, att) in c.info.networks.iter_mut() {
                if name == "host" {
                    continue;
                }
                *next_ip += 1;
                let n = *next_ip;
                *att = NetworkAttachment {
                    ipv4_address: Some(format!("172.17.{}.{}", (n >> 8) & 0xff, n & 0xff)),
                    ipv6_address: None,
                    gateway: Some("172.17.0.1".into()),
                    mac_address: Some(format!(
                        "02:42:ac:11:{:02x}:{:02x}",
                        (n >> 8) & 0xff,
                        n & 0xff
                    )),
                };
            }
            c.generation += 1;
            let st = &mut c.info.state;
            st.status = ContainerStatus::Running;
            st.exit_code = None;
            st.oom_killed = false;
            st.error = None;
            st.pid = Some(1000 + (c.generation as u32));
            st.started_at = Some(now);
            st.finished_at = None;
            st.health = match &c.spec.health_check {
                Some(hc) if hc.test != HealthTest::Disabled => HealthStatus::Starting,
                _ => HealthStatus::None,
            };
            for (src, line) in c.behavior.logs.clone() {
                push_log(c, src, line, now);
            }
            (
                self.event(c, EventKind::Start),
                key,
                c.generation,
                c.behavior.clone(),
                c.spec.clone(),
            )
        };
        tracing::debug!(container = %key, "fake container started");
        self.send(ev);
        self.schedule(key, generation, &behavior, &spec);
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let key = {
            let s = self.lock();
            Self::check_up(&s)?;
            Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?
        };
        let signal = {
            let s = self.lock();
            s.containers
                .get(&key)
                .and_then(|c| c.spec.stop_signal.clone())
                .unwrap_or_else(|| "SIGTERM".into())
        };
        let Some(wait) = self.do_stop(&key, &signal, Some(timeout))? else {
            return Ok(());
        };
        let (ignores, code) = {
            let s = self.lock();
            let c = s.containers.get(&key).ok_or_else(|| not_found(&key))?;
            (
                c.behavior.ignores_stop_signal,
                c.behavior
                    .stop_exit_code
                    .unwrap_or(128 + signal_number(&signal)),
            )
        };
        Self::latency(wait).await;
        let ev = {
            let s = self.lock();
            s.containers
                .get(&key)
                .map(|c| self.event(c, EventKind::Stop))
        };
        if ignores {
            self.finish(&key, None, 137, false)?;
        } else {
            self.finish(&key, None, code, false)?;
        }
        if let Some(ev) = ev {
            self.send(ev);
        }
        Ok(())
    }

    async fn kill_container(&self, id: &ContainerId, signal: &str) -> Result<()> {
        let key = {
            let s = self.lock();
            Self::check_up(&s)?;
            let key = Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?;
            if s.containers
                .get(&key)
                .is_some_and(|c| c.info.state.status != ContainerStatus::Running)
            {
                return Err(RuntimeError::Conflict {
                    message: format!("Container {key} is not running"),
                });
            }
            key
        };
        let n = signal_number(signal);
        let ignores = {
            let s = self.lock();
            s.containers
                .get(&key)
                .is_some_and(|c| c.behavior.ignores_stop_signal)
        };
        self.do_stop(&key, signal, None)?;
        if n == 9 {
            self.finish(&key, None, 137, false)
        } else if ignores {
            Ok(())
        } else {
            Self::latency(self.shared.config.stop_latency).await;
            self.finish(&key, None, 128 + n, false)
        }
    }

    async fn remove_container(&self, id: &ContainerId, options: RemoveOptions) -> Result<()> {
        let key = {
            let s = self.lock();
            Self::check_up(&s)?;
            let key = Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?;
            let running = s
                .containers
                .get(&key)
                .is_some_and(|c| c.info.state.status == ContainerStatus::Running);
            if running && !options.force {
                return Err(RuntimeError::Conflict {
                    message: format!(
                        "You cannot remove a running container {key}. Stop the container before attempting removal or force remove"
                    ),
                });
            }
            key
        };
        self.finish(&key, None, 137, false)?;
        let ev = {
            let mut s = self.lock();
            let Some(c) = s.containers.remove(&key) else {
                return Err(not_found(id.as_str()));
            };
            s.names.remove(&c.info.name);
            self.event(&c, EventKind::Destroy)
        };
        self.send(ev);
        Ok(())
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo> {
        let s = self.lock();
        Self::check_up(&s)?;
        let key = Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?;
        s.containers
            .get(&key)
            .map(|c| c.info.clone())
            .ok_or_else(|| not_found(id.as_str()))
    }

    async fn list_containers(&self, options: &ListOptions) -> Result<Vec<ContainerSummary>> {
        let s = self.lock();
        Self::check_up(&s)?;
        Ok(s.containers
            .values()
            .filter(|c| options.include_stopped || c.info.state.status == ContainerStatus::Running)
            .filter(|c| options.filter.matches(&c.info.labels))
            .map(|c| ContainerSummary {
                id: c.info.id.clone(),
                name: c.info.name.clone(),
                image: c.info.image.clone(),
                labels: c.info.labels.clone(),
                status: c.info.state.status,
            })
            .collect())
    }

    fn events(&self, filter: LabelFilter) -> EventStream {
        let rx = self.shared.events.subscribe();
        futures::stream::unfold((rx, filter), |(mut rx, filter)| async move {
            loop {
                match rx.recv().await {
                    Ok(RuntimeEvent::Container(ev)) => {
                        if filter.matches(&ev.labels) {
                            return Some((RuntimeEvent::Container(ev), (rx, filter)));
                        }
                    }
                    Ok(other) => return Some((other, (rx, filter))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((RuntimeEvent::Reconnected, (rx, filter)))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    fn logs(&self, id: &ContainerId, options: LogOptions) -> LogStream {
        let s = self.lock();
        if let Err(e) = Self::check_up(&s) {
            return futures::stream::iter([Err(e)]).boxed();
        }
        let Some(c) = Self::resolve(&s, id.as_str()).and_then(|k| s.containers.get(&k)) else {
            return futures::stream::iter([Err(not_found(id.as_str()))]).boxed();
        };
        let wanted = move |l: &LogLine, o: &LogOptions| {
            (match l.source {
                LogSource::Stdout => o.stdout,
                LogSource::Stderr => o.stderr,
            }) && match (o.since, l.timestamp) {
                (Some(since), Some(ts)) => ts >= since,
                _ => true,
            }
        };
        let mut backlog: Vec<LogLine> = c
            .logs
            .iter()
            .filter(|l| wanted(l, &options))
            .cloned()
            .collect();
        if let Some(tail) = options.tail {
            let skip = backlog.len().saturating_sub(tail as usize);
            backlog.drain(..skip);
        }
        let backlog = futures::stream::iter(backlog.into_iter().map(Ok));
        if !(options.follow && c.info.state.status == ContainerStatus::Running) {
            return backlog.boxed();
        }
        let rx = c.log_tx.subscribe();
        drop(s);
        let live = futures::stream::unfold((rx, options), move |(mut rx, o)| async move {
            loop {
                match rx.recv().await {
                    Ok(Some(line)) => {
                        if wanted(&line, &o) {
                            return Some((Ok(line), (rx, o)));
                        }
                    }
                    Ok(None) | Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                }
            }
        });
        backlog.chain(live).boxed()
    }

    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let now = self.now();
        let s = self.lock();
        Self::check_up(&s)?;
        let key = Self::resolve(&s, id.as_str()).ok_or_else(|| not_found(id.as_str()))?;
        let c = s
            .containers
            .get(&key)
            .ok_or_else(|| not_found(id.as_str()))?;
        let running = c.info.state.status == ContainerStatus::Running;
        let ran = match (running, c.info.state.started_at) {
            (true, Some(t)) => now.duration_since(t).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let since_epoch = now
            .duration_since(self.shared.config.epoch)
            .unwrap_or_default();
        Ok(ContainerStats {
            read_at: Some(now),
            cpu_total_ns: (ran.as_nanos() / 10) as u64,
            system_cpu_ns: since_epoch.as_nanos() as u64 * u64::from(self.shared.config.cpus),
            online_cpus: self.shared.config.cpus,
            memory_usage_bytes: if running {
                c.behavior.memory_usage_bytes
            } else {
                0
            },
            memory_max_usage_bytes: Some(c.behavior.memory_usage_bytes),
            memory_limit_bytes: c
                .spec
                .memory_limit_bytes
                .unwrap_or(self.shared.config.memory_bytes),
        })
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        let mut s = self.lock();
        Self::check_up(&s)?;
        if s.networks.contains_key(&spec.name) {
            return Err(RuntimeError::Conflict {
                message: format!("network with name {} already exists", spec.name),
            });
        }
        let info = NetworkInfo {
            id: digest_of(&format!("network:{}", spec.name))
                .trim_start_matches("sha256:")
                .to_string(),
            name: spec.name.clone(),
            driver: spec.driver.clone().unwrap_or_else(|| "bridge".into()),
            labels: spec.labels.clone(),
            subnets: vec![NetworkSubnet {
                subnet: format!("172.{}.0.0/16", 18 + s.networks.len() % 200),
                gateway: Some(format!("172.{}.0.1", 18 + s.networks.len() % 200)),
            }],
            bridge_interface: None,
        };
        s.networks.insert(spec.name.clone(), info.clone());
        Ok(info)
    }

    async fn remove_network(&self, name_or_id: &str) -> Result<()> {
        let mut s = self.lock();
        Self::check_up(&s)?;
        let name = s
            .networks
            .values()
            .find(|n| n.name == name_or_id || n.id == name_or_id)
            .map(|n| n.name.clone())
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::Network,
                id: name_or_id.into(),
                message: format!("network {name_or_id} not found"),
            })?;
        let in_use = s.containers.values().any(|c| {
            c.info.state.status == ContainerStatus::Running && c.info.networks.contains_key(&name)
        });
        if in_use {
            return Err(RuntimeError::Conflict {
                message: format!(
                    "error while removing network: network {name} has active endpoints"
                ),
            });
        }
        s.networks.remove(&name);
        Ok(())
    }

    async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkInfo> {
        let s = self.lock();
        Self::check_up(&s)?;
        if name_or_id == "bridge" && !s.networks.contains_key("bridge") {
            return Ok(NetworkInfo {
                id: "bridge".into(),
                name: "bridge".into(),
                driver: "bridge".into(),
                labels: Labels::new(),
                subnets: vec![NetworkSubnet {
                    subnet: "172.17.0.0/16".into(),
                    gateway: Some("172.17.0.1".into()),
                }],
                bridge_interface: Some("docker0".into()),
            });
        }
        s.networks
            .values()
            .find(|n| n.name == name_or_id || n.id == name_or_id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::Network,
                id: name_or_id.into(),
                message: format!("network {name_or_id} not found"),
            })
    }

    async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        reference: &str,
        _changes: &[String],
    ) -> Result<ImageInfo> {
        Self::check_up(&self.lock())?;
        if rootfs_tar.is_empty() {
            return Err(RuntimeError::Other {
                message: "import: empty root filesystem".into(),
            });
        }
        Ok(self.add_image(reference))
    }

    async fn list_networks(&self, filter: &LabelFilter) -> Result<Vec<NetworkInfo>> {
        let s = self.lock();
        Self::check_up(&s)?;
        Ok(s.networks
            .values()
            .filter(|n| filter.matches(&n.labels))
            .cloned()
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeInfo> {
        let mut s = self.lock();
        Self::check_up(&s)?;
        Ok(s.volumes
            .entry(spec.name.clone())
            .or_insert_with(|| fake_volume(spec))
            .clone())
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let s = self.lock();
        Self::check_up(&s)?;
        s.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::Volume,
                id: name.into(),
                message: format!("get {name}: no such volume"),
            })
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let mut s = self.lock();
        Self::check_up(&s)?;
        if !s.volumes.contains_key(name) {
            return Err(RuntimeError::NotFound {
                kind: ObjectKind::Volume,
                id: name.into(),
                message: format!("get {name}: no such volume"),
            });
        }
        let in_use = s.containers.values().any(|c| {
            c.spec
                .mounts
                .iter()
                .any(|m| matches!(m, Mount::Volume { volume, .. } if volume.name == name))
        });
        if in_use && !force {
            return Err(RuntimeError::Conflict {
                message: format!("remove {name}: volume is in use"),
            });
        }
        s.volumes.remove(name);
        Ok(())
    }

    async fn list_volumes(&self, filter: &LabelFilter) -> Result<Vec<VolumeInfo>> {
        let s = self.lock();
        Self::check_up(&s)?;
        Ok(s.volumes
            .values()
            .filter(|v| filter.matches(&v.labels))
            .cloned()
            .collect())
    }
}

fn fake_volume(spec: &VolumeSpec) -> VolumeInfo {
    VolumeInfo {
        name: spec.name.clone(),
        driver: spec.driver.clone().unwrap_or_else(|| "local".into()),
        mountpoint: format!("/var/lib/fake/volumes/{}/_data", spec.name),
        labels: spec.labels.clone(),
    }
}
