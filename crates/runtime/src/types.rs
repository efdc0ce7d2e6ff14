//! Domain types of the runtime boundary: what the agent asks an engine for and what it gets back.
//! No engine (bollard/Docker) types appear here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Labels on containers, networks and volumes. Ordered for deterministic output.
pub type Labels = BTreeMap<String, String>;

/// An engine-assigned container id (full length for Docker).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// Wraps an id (or a name: engines accept both wherever an id is expected).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 characters, as `docker ps` shows.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for ContainerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ContainerId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Facts about the engine the agent registers with (resources, versions, log drivers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineInfo {
    /// Engine version, e.g. `20.10.24`.
    pub version: String,
    /// API version in use after negotiation, e.g. `1.41`.
    pub api_version: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// Number of CPUs the engine sees.
    pub cpus: u32,
    /// Memory the engine sees, in bytes.
    pub memory_bytes: u64,
    /// Log drivers the engine supports (`json-file`, `awslogs`, `none`, …).
    pub log_drivers: Vec<String>,
    /// Storage driver, e.g. `overlay2`.
    pub storage_driver: String,
    /// Cgroup version (`1` or `2`) if known.
    pub cgroup_version: Option<String>,
    /// Whether the engine can enforce memory limits (false on some nested setups).
    pub memory_limit_supported: bool,
}

/// Credentials for a private registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// Registry server address, e.g. `registry.example:5000`.
    pub server: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .finish()
    }
}

/// A locally present image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// Image id (`sha256:…` of the config).
    pub id: String,
    /// Tags, e.g. `busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Repo digests, e.g. `busybox@sha256:…` (empty for images never pulled or pushed).
    pub repo_digests: Vec<String>,
    /// The manifest digest (`sha256:…`) from the first repo digest, if any: what ECS reports
    /// as a container's `imageDigest`.
    pub digest: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A requested port publication: container port → host port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortBinding {
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Host port; `0` lets the engine choose a free ephemeral port (ECS dynamic port mapping).
    pub host_port: u16,
    /// With `host_port == 0`: the inclusive range the engine picks the port from
    /// (`ECS_DYNAMIC_HOST_PORT_RANGE`); `None` = the engine's own ephemeral range.
    pub host_port_range: Option<(u16, u16)>,
    /// Host address to bind; `None` = all addresses.
    pub host_ip: Option<String>,
}

/// An actual publication, as reported by inspect after start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Host address bound (`0.0.0.0`, `::`).
    pub host_ip: String,
    /// Host port actually bound.
    pub host_port: u16,
}

/// How the container is attached to networks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The engine's default bridge (ECS `bridge`).
    #[default]
    Bridge,
    /// The host's network namespace (ECS `host`).
    Host,
    /// No networking (ECS `none`).
    None,
    /// Share another container's network namespace (`container:<id>`), as ECS does for the
    /// pause container of an `awsvpc` task.
    Container(ContainerId),
    /// A named, user-defined network (per-task network for `awsvpc`-like isolation).
    Named {
        /// Network name or id.
        network: String,
        /// DNS aliases of this container on that network.
        aliases: Vec<String>,
    },
}

/// `ulimit` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Name, e.g. `nofile`.
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// A tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Mount point inside the container.
    pub target: String,
    /// Size limit in bytes (`None` = engine default).
    pub size_bytes: Option<u64>,
    /// Extra mount options, e.g. `noexec`, `mode=1777`.
    pub options: Vec<String>,
}

/// Driver settings for a named volume that may be created on demand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    /// Volume name.
    pub name: String,
    /// Driver (`None` = `local`).
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Labels.
    pub labels: Labels,
}

/// A mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host path (ECS `host.sourcePath`). The engine creates a missing source directory.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Path inside the container.
        target: String,
        /// Read-only?
        read_only: bool,
    },
    /// A named engine volume (ECS `dockerVolumeConfiguration`).
    Volume {
        /// Volume name, driver, driver options and labels.
        volume: VolumeSpec,
        /// Path inside the container.
        target: String,
        /// Read-only?
        read_only: bool,
        /// Create the volume if it does not exist (ECS `autoprovision`). When false and the
        /// volume is missing, create fails with [`crate::RuntimeError::CreateFailed`].
        autoprovision: bool,
    },
}

/// Mount all volumes of another container (ECS `volumesFrom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFrom {
    /// Source container id or name.
    pub container: String,
    /// Mount read-only?
    pub read_only: bool,
}

/// A legacy link to another container on the default bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Target container id or name.
    pub container: String,
    /// Alias inside this container (`None` = the target's name).
    pub alias: Option<String>,
}

/// An `/etc/hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    /// Host name.
    pub hostname: String,
    /// IP address.
    pub ip: String,
}

/// Log driver configuration (ECS `logConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// Driver name, e.g. `json-file`, `awslogs`, `none`.
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// The command a health check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `CMD`: exec the arguments directly.
    Cmd(Vec<String>),
    /// `CMD-SHELL`: run the string with the container's shell.
    CmdShell(String),
    /// Disable a health check inherited from the image.
    Disabled,
}

/// A container health check (ECS `healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to run.
    pub test: HealthTest,
    /// Time between checks.
    pub interval: Duration,
    /// Time a single check may take.
    pub timeout: Duration,
    /// Consecutive failures before `unhealthy`.
    pub retries: u32,
    /// Grace period during which failures do not count.
    pub start_period: Duration,
}

/// Everything needed to create one container. Build with [`ContainerSpec::new`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    /// Container name (unique per engine).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override (`None` = image default).
    pub entrypoint: Option<Vec<String>>,
    /// Command override (`None` = image default).
    pub command: Option<Vec<String>>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// `user[:group]`.
    pub user: Option<String>,
    /// Labels (the agent marks its containers here so it can adopt them after a restart).
    pub labels: Labels,
    /// Relative CPU weight (ECS `cpu` units map 1:1 onto shares).
    pub cpu_shares: Option<u64>,
    /// Hard memory limit in bytes (ECS `memory`).
    pub memory_limit_bytes: Option<u64>,
    /// Soft memory limit in bytes (ECS `memoryReservation`).
    pub memory_reservation_bytes: Option<u64>,
    /// Swap allowed on top of the memory limit, in bytes (ECS `linuxParameters.maxSwap`);
    /// `Some(0)` disables swap.
    pub max_swap_bytes: Option<u64>,
    /// Swappiness 0–100 (ECS `linuxParameters.swappiness`).
    pub swappiness: Option<u8>,
    /// ulimits.
    pub ulimits: Vec<Ulimit>,
    /// Privileged mode.
    pub privileged: bool,
    /// Read-only root filesystem.
    pub readonly_rootfs: bool,
    /// Capabilities to add (e.g. `NET_ADMIN`).
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// Run an init process as PID 1 (ECS `initProcessEnabled`).
    pub init: bool,
    /// NVIDIA GPUs to expose, by id (an engine device request for the `nvidia` driver).
    pub gpus: Vec<String>,
    /// `/dev/shm` size in bytes.
    pub shm_size_bytes: Option<u64>,
    /// tmpfs mounts.
    pub tmpfs: Vec<TmpfsMount>,
    /// Hostname.
    pub hostname: Option<String>,
    /// DNS servers.
    pub dns_servers: Vec<String>,
    /// DNS search domains.
    pub dns_search: Vec<String>,
    /// `/etc/hosts` entries.
    pub extra_hosts: Vec<ExtraHost>,
    /// Legacy links (bridge mode only).
    pub links: Vec<Link>,
    /// Port publications.
    pub port_bindings: Vec<PortBinding>,
    /// Network attachment.
    pub network_mode: NetworkMode,
    /// Bind mounts and named volumes.
    pub mounts: Vec<Mount>,
    /// `volumesFrom`.
    pub volumes_from: Vec<VolumesFrom>,
    /// Log driver (`None` = engine default).
    pub log_config: Option<LogConfig>,
    /// Health check (`None` = image default).
    pub health_check: Option<HealthCheck>,
    /// Signal sent by stop (`None` = image default, usually `SIGTERM`).
    pub stop_signal: Option<String>,
    /// Default grace period before SIGKILL when stopped.
    pub stop_timeout: Option<Duration>,
}

impl ContainerSpec {
    /// A spec with just a name and an image; everything else default.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            ..Self::default()
        }
    }
}

/// Lifecycle state of a container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine's restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited (after having run, or failed to start).
    Exited,
    /// Dead: the engine failed to remove or stop it cleanly.
    Dead,
}

impl ContainerStatus {
    /// True for states in which the container's process is gone for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ContainerStatus::Exited | ContainerStatus::Dead | ContainerStatus::Removing
        )
    }
}

/// Health as reported by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthStatus {
    /// No health check configured.
    #[default]
    None,
    /// Within the start period / no result yet.
    Starting,
    /// Healthy.
    Healthy,
    /// Unhealthy.
    Unhealthy,
}

/// Process state of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Lifecycle state.
    pub status: ContainerStatus,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Killed by the kernel OOM killer.
    pub oom_killed: bool,
    /// Engine error (e.g. why start failed).
    pub error: Option<String>,
    /// Main process PID while running.
    pub pid: Option<u32>,
    /// When it was last started.
    pub started_at: Option<SystemTime>,
    /// When it last finished.
    pub finished_at: Option<SystemTime>,
    /// Health.
    pub health: HealthStatus,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkAttachment {
    /// IPv4 address, if any.
    pub ipv4_address: Option<String>,
    /// IPv6 address, if any.
    pub ipv6_address: Option<String>,
    /// Gateway, if any.
    pub gateway: Option<String>,
    /// MAC address, if any.
    pub mac_address: Option<String>,
}

/// Full inspection of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Id.
    pub id: ContainerId,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference the container was created from.
    pub image: String,
    /// Image id (`sha256:…`).
    pub image_id: String,
    /// Labels.
    pub labels: Labels,
    /// Process state.
    pub state: ContainerState,
    /// Host port publications actually in effect (empty unless running).
    pub ports: Vec<PortMapping>,
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkAttachment>,
    /// When it was created.
    pub created_at: Option<SystemTime>,
}

/// One row of [`crate::ContainerRuntime::list_containers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Id.
    pub id: ContainerId,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels.
    pub labels: Labels,
    /// Lifecycle state.
    pub status: ContainerStatus,
}

/// Selects containers (or events, networks, volumes) by label. Empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelFilter {
    /// Each entry must match: `(key, None)` = label present, `(key, Some(v))` = label equals `v`.
    pub labels: BTreeMap<String, Option<String>>,
}

impl LabelFilter {
    /// Matches everything.
    pub fn any() -> Self {
        Self::default()
    }
    /// Adds "label `key` equals `value`".
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), Some(value.into()));
        self
    }
    /// Adds "label `key` is present".
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.labels.insert(key.into(), None);
        self
    }
    /// Whether `labels` satisfies the filter.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(_), None) => true,
            (Some(actual), Some(want)) => actual == want,
            (None, _) => false,
        })
    }
    /// Docker-style `key` / `key=value` strings.
    pub fn to_docker_filters(&self) -> Vec<String> {
        self.labels
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }
}

/// Options for [`crate::ContainerRuntime::list_containers`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// Label selection.
    pub filter: LabelFilter,
    /// Include stopped containers (the agent wants them, to report exit codes).
    pub include_stopped: bool,
}

/// Options for [`crate::ContainerRuntime::remove_container`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoveOptions {
    /// Kill first if running.
    pub force: bool,
    /// Also remove anonymous volumes.
    pub remove_volumes: bool,
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Create,
    /// Started.
    Start,
    /// The main process exited (for any reason, including OOM and kill).
    Die {
        /// Exit code, when the engine reports it.
        exit_code: Option<i64>,
    },
    /// The OOM killer fired (a `Die` follows).
    Oom,
    /// Health status changed.
    Health(HealthStatus),
    /// Stop requested.
    Stop,
    /// Signal sent.
    Kill {
        /// Signal name or number as reported.
        signal: Option<String>,
    },
    /// Removed.
    Destroy,
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Container id.
    pub id: ContainerId,
    /// Container name, when reported.
    pub name: Option<String>,
    /// Image, when reported.
    pub image: Option<String>,
    /// Container labels, when reported.
    pub labels: Labels,
    /// What happened.
    pub kind: EventKind,
    /// When (engine clock).
    pub time: SystemTime,
}

/// An item of the [`crate::ContainerRuntime::events`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// A container event.
    Container(ContainerEvent),
    /// The connection to the engine dropped; the stream keeps retrying.
    Disconnected {
        /// Why.
        error: String,
    },
    /// The stream reconnected after a drop (or lagged). Events may have been missed or replayed
    /// (delivery is at-least-once from `since`): the consumer should re-inspect its containers.
    Reconnected,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// stdout or stderr.
    pub source: LogSource,
    /// Engine timestamp of the line.
    pub timestamp: Option<SystemTime>,
    /// The line without its trailing newline.
    pub line: String,
}

/// Options for [`crate::ContainerRuntime::logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open for new lines until the container stops.
    pub follow: bool,
    /// Only lines at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last N lines (`None` = all).
    pub tail: Option<u64>,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            follow: false,
            since: None,
            tail: None,
            stdout: true,
            stderr: true,
        }
    }
}

/// A resource-usage snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// When the engine read the counters.
    pub read_at: Option<SystemTime>,
    /// Cumulative CPU time of the container, nanoseconds.
    pub cpu_total_ns: u64,
    /// Cumulative CPU time of the host, nanoseconds (for computing a percentage between two
    /// snapshots).
    pub system_cpu_ns: u64,
    /// CPUs online.
    pub online_cpus: u32,
    /// Memory in use, bytes.
    pub memory_usage_bytes: u64,
    /// Peak memory, bytes (cgroup v1 only).
    pub memory_max_usage_bytes: Option<u64>,
    /// Memory limit in effect, bytes.
    pub memory_limit_bytes: u64,
}

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkSpec {
    /// Name.
    pub name: String,
    /// Driver (`None` = `bridge`).
    pub driver: Option<String>,
    /// No outside connectivity.
    pub internal: bool,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: Labels,
}

/// A network as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// Labels.
    pub labels: Labels,
    /// IPAM subnets (empty when the engine did not say, e.g. right after create).
    pub subnets: Vec<NetworkSubnet>,
    /// The host interface of a bridge network (`docker0`), when known.
    pub bridge_interface: Option<String>,
}

/// One IPAM subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkSubnet {
    /// CIDR, e.g. `172.17.0.0/16`.
    pub subnet: String,
    /// Gateway address, e.g. `172.17.0.1`, when the engine reports one.
    pub gateway: Option<String>,
}

impl NetworkSubnet {
    /// The gateway: the reported one, else the first host address of an IPv4 subnet (what
    /// Docker's IPAM assigns a bridge by default).
    pub fn gateway_or_first_host(&self) -> Option<String> {
        if let Some(g) = &self.gateway {
            return Some(g.clone());
        }
        let (addr, _) = self.subnet.split_once('/')?;
        let ip: std::net::Ipv4Addr = addr.parse().ok()?;
        Some(std::net::Ipv4Addr::from(u32::from(ip).checked_add(1)?).to_string())
    }
}

/// A volume as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// Host mount point.
    pub mountpoint: String,
    /// Labels.
    pub labels: Labels,
}

/// Renders a [`ContainerStats`] in the shape of Docker's stats document (the members the
/// snapshot has; what a backend without a native document answers the metadata endpoint).
pub fn docker_stats_json(id: &ContainerId, s: &ContainerStats) -> String {
    let read = s
        .read_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let max_usage = s
        .memory_max_usage_bytes
        .map(|m| format!(",\"max_usage\":{m}"))
        .unwrap_or_default();
    format!(
        concat!(
            "{{\"read\":\"{read}\",\"id\":\"{id}\",",
            "\"cpu_stats\":{{\"cpu_usage\":{{\"total_usage\":{cpu}}},\"system_cpu_usage\":{sys},\"online_cpus\":{cpus}}},",
            "\"memory_stats\":{{\"usage\":{mem}{max},\"limit\":{limit}}}}}"
        ),
        read = read,
        id = id,
        cpu = s.cpu_total_ns,
        sys = s.system_cpu_ns,
        cpus = s.online_cpus,
        mem = s.memory_usage_bytes,
        max = max_usage,
        limit = s.memory_limit_bytes,
    )
}
