//! berth-runtime-docker: [`DockerRuntime`], the Docker Engine implementation of
//! [`berth_runtime::ContainerRuntime`]. This is the only crate in the workspace that depends on
//! bollard; nothing bollard-typed crosses its public API.
//!
//! Connects to `DOCKER_HOST` or `/var/run/docker.sock`, negotiates the API version down to what
//! the engine speaks (Docker 20.10 = API 1.41), bounds every request with a deadline, and maps
//! Docker errors to [`berth_runtime::RuntimeError`] keeping Docker's message verbatim.

mod convert;
mod errors;
mod events;
mod jsonfile;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_runtime::{
    ContainerId, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStats, ContainerSummary,
    EngineInfo, EventStream, ImageInfo, LabelFilter, ListOptions, LogLine, LogOptions, LogSource,
    LogStream, Mount, NetworkInfo, NetworkSpec, RegistryAuth, RemoveOptions, Result, RuntimeError,
    VolumeInfo, VolumeSpec,
};
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters as qp;
use bollard::Docker;
use futures::{StreamExt, TryStreamExt};

pub use convert::parse_rfc3339;
use errors::{map, Op};

/// Connection and timing settings of a [`DockerRuntime`].
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Engine address (`unix:///path`, `tcp://host:port`); `None` = `DOCKER_HOST`, else the
    /// default socket `/var/run/docker.sock`.
    pub host: Option<String>,
    /// Deadline for ordinary requests (inspect, create, start, …).
    pub request_timeout: Duration,
    /// Deadline for a whole image pull.
    pub pull_timeout: Duration,
    /// First delay before reconnecting the event stream; doubles up to `event_backoff_max`.
    pub event_backoff_min: Duration,
    /// Longest delay between event-stream reconnect attempts.
    pub event_backoff_max: Duration,
    /// Follow `json-file` logs by reading the engine's files when the engine is local and the
    /// file is readable (see `jsonfile`), instead of through the engine's log stream.
    pub read_log_files: bool,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            request_timeout: Duration::from_secs(60),
            pull_timeout: Duration::from_secs(15 * 60),
            event_backoff_min: Duration::from_millis(200),
            event_backoff_max: Duration::from_secs(10),
            read_log_files: true,
        }
    }
}

/// [`ContainerRuntime`] backed by a Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
}

/// bollard applies one client-wide timeout to every request; berth applies its own per-call
/// deadlines instead, so the client-wide one is set out of the way.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl DockerRuntime {
    /// One stats sample of a container (`one_shot`: without waiting for a second CPU reading).
    async fn fetch_stats(
        &self,
        id: &ContainerId,
        one_shot: bool,
    ) -> Result<bollard::models::ContainerStatsResponse> {
        let o = qp::StatsOptions {
            stream: false,
            one_shot,
        };
        self.timed("stats", async {
            let mut stream = self.docker.stats(id.as_str(), Some(o));
            match stream.next().await {
                Some(r) => r.map_err(|e| map(e, Op::Container(id.as_str()))),
                None => Err(RuntimeError::Other {
                    message: "docker returned no stats".into(),
                }),
            }
        })
        .await
    }

    /// Whether the engine runs on this host (a unix socket), so its log files are ours to read.
    fn engine_is_local(&self) -> bool {
        if !self.config.read_log_files {
            return false;
        }
        let host = self
            .config
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_default();
        host.is_empty() || host.starts_with("unix://")
    }

    /// The container's json-file log, when it logs with json-file and the file can be opened.
    /// The engine's inspect document of a container.
    async fn inspect_raw(
        &self,
        id: &ContainerId,
    ) -> Result<bollard::models::ContainerInspectResponse> {
        self.timed("inspect container", async {
            self.docker
                .inspect_container(id.as_str(), None::<qp::InspectContainerOptions>)
                .await
                .map_err(|e| map(e, Op::Container(id.as_str())))
        })
        .await
    }

    async fn json_log_path(&self, id: &ContainerId) -> Option<std::path::PathBuf> {
        let info = self.inspect_raw(id).await.ok()?;
        let driver = info
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref())
            .and_then(|l| l.typ.clone())
            .unwrap_or_default();
        let path = std::path::PathBuf::from(info.log_path.filter(|p| !p.is_empty())?);
        // The file itself may not exist yet (the engine creates it when the container's logger
        // starts); its directory must be ours to read.
        if driver != "json-file" || std::fs::read_dir(path.parent()?).is_err() {
            return None;
        }
        Some(path)
    }

    fn follow_json_file(
        &self,
        id: &ContainerId,
        path: std::path::PathBuf,
        options: &LogOptions,
    ) -> LogStream {
        tracing::debug!(container = %id.short(), path = %path.display(), "following the json-file log from disk");
        let this = self.clone();
        let id = id.clone();
        let alive: jsonfile::Alive = Box::new(move || {
            let this = this.clone();
            let id = id.clone();
            Box::pin(async move {
                let info = this.inspect_container(&id).await?;
                Ok(!info.state.status.is_terminal())
            })
        });
        let rx = jsonfile::follow(path, options.since, options.stdout, options.stderr, alive);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .map_ok(|lines| futures::stream::iter(lines.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// The engine's log stream.
    fn api_logs(&self, id: &ContainerId, options: LogOptions) -> LogStream {
        let since = options.since;
        let o = qp::LogsOptions {
            follow: options.follow,
            stdout: options.stdout,
            stderr: options.stderr,
            since: since
                .map(|t| i32::try_from(unix_secs(t)).unwrap_or(i32::MAX))
                .unwrap_or(0),
            until: 0,
            timestamps: true,
            tail: options
                .tail
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".to_string()),
        };
        let id_owned = id.as_str().to_string();
        self.docker
            .logs(id.as_str(), Some(o))
            .map_err(move |e| map(e, Op::Container(&id_owned)))
            .map_ok(|out| {
                let lines = match out {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        log_lines(LogSource::Stdout, &message)
                    }
                    LogOutput::StdErr { message } => log_lines(LogSource::Stderr, &message),
                    LogOutput::StdIn { .. } => Vec::new(),
                };
                futures::stream::iter(lines.into_iter().map(Ok))
            })
            .try_flatten()
            // `since` is whole seconds on the wire; trim to the exact instant here.
            .try_filter(move |l| {
                let keep = match (since, l.timestamp) {
                    (Some(s), Some(t)) => t >= s,
                    _ => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    /// Connects with default settings (see [`DockerConfig`]).
    pub async fn connect() -> Result<Self> {
        Self::connect_with(DockerConfig::default()).await
    }

    /// Connects, negotiates the API version and pings the engine.
    pub async fn connect_with(config: DockerConfig) -> Result<Self> {
        let docker = match &config.host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| RuntimeError::EngineUnavailable {
            message: e.to_string(),
        })?
        .with_timeout(CLIENT_TIMEOUT);
        let docker = deadline("negotiate API version", config.request_timeout, async {
            docker
                .negotiate_version()
                .await
                .map_err(|e| map(e, Op::Engine))
        })
        .await?;
        let this = Self { docker, config };
        deadline("ping", this.config.request_timeout, async {
            this.docker.ping().await.map_err(|e| map(e, Op::Engine))
        })
        .await?;
        tracing::info!(api_version = %this.api_version(), "connected to docker");
        Ok(this)
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The settings in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        deadline(what, self.config.request_timeout, fut).await
    }
}

async fn deadline<T>(
    what: &str,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Timeout {
            operation: what.to_string(),
            after,
        }),
    }
}

fn label_filters(filter: &LabelFilter) -> Option<HashMap<String, Vec<String>>> {
    let labels = filter.to_docker_filters();
    (!labels.is_empty()).then(|| HashMap::from([("label".to_string(), labels)]))
}

fn image_info(i: bollard::models::ImageInspect) -> ImageInfo {
    let repo_digests = i.repo_digests.unwrap_or_default();
    let digest = repo_digests
        .first()
        .and_then(|d| d.split_once('@'))
        .map(|(_, d)| d.to_string());
    ImageInfo {
        id: i.id.unwrap_or_default(),
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests,
        digest,
        size_bytes: i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
    }
}

fn volume_info(v: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        labels: v.labels.into_iter().collect(),
    }
}

fn subnets_of(ipam: Option<bollard::models::Ipam>) -> Vec<berth_runtime::NetworkSubnet> {
    ipam.and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            Some(berth_runtime::NetworkSubnet {
                subnet: c.subnet?,
                gateway: c.gateway.filter(|g| !g.is_empty()),
            })
        })
        .collect()
}

fn bridge_interface_of(options: &Option<HashMap<String, String>>) -> Option<String> {
    options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
}

fn network_info(n: bollard::models::Network) -> NetworkInfo {
    NetworkInfo {
        id: n.id.unwrap_or_default(),
        name: n.name.unwrap_or_default(),
        driver: n.driver.unwrap_or_default(),
        bridge_interface: bridge_interface_of(&n.options),
        subnets: subnets_of(n.ipam),
        labels: convert::labels_of(n.labels),
    }
}

fn network_inspect_info(n: bollard::models::NetworkInspect) -> NetworkInfo {
    NetworkInfo {
        id: n.id.unwrap_or_default(),
        name: n.name.unwrap_or_default(),
        driver: n.driver.unwrap_or_default(),
        bridge_interface: bridge_interface_of(&n.options),
        subnets: subnets_of(n.ipam),
        labels: convert::labels_of(n.labels),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Splits one Docker log frame (`<RFC3339Nano> <text>\n`, possibly several lines) into lines.
fn log_lines(source: LogSource, message: &[u8]) -> Vec<LogLine> {
    let text = String::from_utf8_lossy(message);
    text.split_terminator('\n')
        .map(|raw| {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            match raw.split_once(' ') {
                Some((ts, rest)) => match parse_rfc3339(ts) {
                    Some(t) => LogLine {
                        source,
                        timestamp: Some(t),
                        line: rest.to_string(),
                    },
                    None => LogLine {
                        source,
                        timestamp: None,
                        line: raw.to_string(),
                    },
                },
                None => LogLine {
                    source,
                    timestamp: parse_rfc3339(raw),
                    line: if parse_rfc3339(raw).is_some() {
                        String::new()
                    } else {
                        raw.to_string()
                    },
                },
            }
        })
        .collect()
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn info(&self) -> Result<EngineInfo> {
        let (version, info) = self
            .timed("info", async {
                let v = self
                    .docker
                    .version()
                    .await
                    .map_err(|e| map(e, Op::Engine))?;
                let i = self.docker.info().await.map_err(|e| map(e, Op::Engine))?;
                Ok((v, i))
            })
            .await?;
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: self.api_version(),
            os: version.os.unwrap_or_default(),
            arch: info.architecture.unwrap_or_default(),
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info
                .mem_total
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            log_drivers: info.plugins.and_then(|p| p.log).unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
            cgroup_version: info.cgroup_version.map(|v| v.to_string()),
            memory_limit_supported: info.memory_limit.unwrap_or(false),
        })
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo> {
        self.timed("inspect image", async {
            self.docker
                .inspect_image(reference)
                .await
                .map(image_info)
                .map_err(|e| map(e, Op::InspectImage(reference)))
        })
        .await
    }

    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let (repo, tag) = berth_runtime::split_image_reference(reference);
        let options = qp::CreateImageOptions {
            from_image: Some(repo),
            tag: (!tag.is_empty()).then_some(tag),
            ..Default::default()
        };
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let started = std::time::Instant::now();
        tracing::info!(image = reference, "pulling image");
        let pull = async {
            let mut stream = self.docker.create_image(Some(options), None, creds);
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| map(e, Op::Pull(reference)))?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(RuntimeError::PullFailed {
                        image: reference.to_string(),
                        message: err,
                    });
                }
                if let Some(status) = info.status {
                    tracing::trace!(image = reference, status = %status, "pull progress");
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.config.pull_timeout, pull).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(image = reference, error = %e, "pull failed");
                return Err(e);
            }
            Err(_) => {
                return Err(RuntimeError::PullFailed {
                    image: reference.to_string(),
                    message: format!(
                        "timed out pulling {reference} after {:?}",
                        self.config.pull_timeout
                    ),
                })
            }
        }
        tracing::info!(
            image = reference,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pulled image"
        );
        self.inspect_image(reference).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        // ECS semantics: a volume that is not auto-provisioned must already exist.
        for m in &spec.mounts {
            if let Mount::Volume {
                volume,
                autoprovision: false,
                ..
            } = m
            {
                match self.inspect_volume(&volume.name).await {
                    Ok(_) => {}
                    Err(RuntimeError::NotFound { message, .. }) => {
                        return Err(RuntimeError::CreateFailed {
                            message: format!(
                                "volume {} does not exist and autoprovision is off: {message}",
                                volume.name
                            ),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let body = convert::create_body(spec);
        let options = qp::CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let resp = self
            .timed("create container", async {
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| map(e, Op::Create(&spec.image)))
            })
            .await
            .map_err(|e| match e {
                RuntimeError::NameConflict { message, .. } => RuntimeError::NameConflict {
                    name: spec.name.clone(),
                    message,
                },
                other => other,
            })?;
        for w in &resp.warnings {
            tracing::warn!(container = %spec.name, warning = %w, "docker create warning");
        }
        tracing::debug!(container = %resp.id, name = %spec.name, image = %spec.image, "created container");
        Ok(ContainerId::new(resp.id))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.timed("start container", async {
            self.docker
                .start_container(id.as_str(), None::<qp::StartContainerOptions>)
                .await
                .map_err(|e| map(e, Op::Start(id.as_str())))
        })
        .await?;
        tracing::debug!(container = %id.short(), "started container");
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = qp::StopContainerOptions {
            t: Some(secs),
            signal: None,
        };
        deadline(
            "stop container",
            timeout + self.config.request_timeout,
            async {
                self.docker
                    .stop_container(id.as_str(), Some(options))
                    .await
                    .map_err(|e| map(e, Op::Container(id.as_str())))
            },
        )
        .await?;
        tracing::debug!(container = %id.short(), timeout_s = secs, "stopped container");
        Ok(())
    }

    async fn kill_container(&self, id: &ContainerId, signal: &str) -> Result<()> {
        let options = qp::KillContainerOptions {
            signal: signal.to_string(),
        };
        self.timed("kill container", async {
            self.docker
                .kill_container(id.as_str(), Some(options))
                .await
                .map_err(|e| map(e, Op::Container(id.as_str())))
        })
        .await
    }

    async fn remove_container(&self, id: &ContainerId, options: RemoveOptions) -> Result<()> {
        let o = qp::RemoveContainerOptions {
            force: options.force,
            v: options.remove_volumes,
            link: false,
        };
        self.timed("remove container", async {
            self.docker
                .remove_container(id.as_str(), Some(o))
                .await
                .map_err(|e| map(e, Op::Container(id.as_str())))
        })
        .await?;
        tracing::debug!(container = %id.short(), "removed container");
        Ok(())
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo> {
        self.inspect_raw(id).await.map(convert::container_info)
    }

    async fn list_containers(&self, options: &ListOptions) -> Result<Vec<ContainerSummary>> {
        let o = qp::ListContainersOptions {
            all: options.include_stopped,
            filters: label_filters(&options.filter),
            ..Default::default()
        };
        let rows = self
            .timed("list containers", async {
                self.docker
                    .list_containers(Some(o))
                    .await
                    .map_err(|e| map(e, Op::Engine))
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|c| ContainerSummary {
                id: ContainerId::new(c.id.unwrap_or_default()),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: c.image.unwrap_or_default(),
                labels: convert::labels_of(c.labels),
                status: convert::summary_status_of(c.state),
            })
            .collect())
    }

    fn events(&self, filter: LabelFilter) -> EventStream {
        events::stream(self.docker.clone(), self.config.clone(), filter)
    }

    fn logs(&self, id: &ContainerId, options: LogOptions) -> LogStream {
        // Following everything (what the awslogs shipper asks for): straight from the json-file
        // log when it can be read here.
        if options.follow && options.tail.is_none() && self.engine_is_local() {
            let this = self.clone();
            let id = id.clone();
            return futures::stream::once(async move {
                match this.json_log_path(&id).await {
                    Some(path) => this.follow_json_file(&id, path, &options),
                    None => this.api_logs(&id, options),
                }
            })
            .flatten()
            .boxed();
        }
        self.api_logs(id, options)
    }

    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let s = self.fetch_stats(id, true).await?;
        let cpu = s.cpu_stats.unwrap_or_default();
        let mem = s.memory_stats.unwrap_or_default();
        Ok(ContainerStats {
            read_at: s.read.as_deref().and_then(parse_rfc3339),
            cpu_total_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
            system_cpu_ns: cpu.system_cpu_usage.unwrap_or(0),
            online_cpus: cpu.online_cpus.unwrap_or(0),
            memory_usage_bytes: mem.usage.unwrap_or(0),
            memory_max_usage_bytes: mem.max_usage,
            memory_limit_bytes: mem.limit.unwrap_or(0),
        })
    }

    async fn stats_json(&self, id: &ContainerId) -> Result<String> {
        let s = self.fetch_stats(id, false).await?;
        serde_json::to_string(&s).map_err(|e| RuntimeError::Other {
            message: format!("stats: {e}"),
        })
    }

    async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        reference: &str,
        changes: &[String],
    ) -> Result<ImageInfo> {
        let (repo, tag) = berth_runtime::split_image_reference(reference);
        let options = qp::CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo),
            tag: (!tag.is_empty()).then_some(tag),
            changes: changes.to_vec(),
            ..Default::default()
        };
        self.timed("import image", async {
            let mut stream = self.docker.create_image(
                Some(options),
                Some(bollard::body_full(bytes::Bytes::from(rootfs_tar))),
                None,
            );
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| map(e, Op::Engine))?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(RuntimeError::Other {
                        message: format!("import {reference}: {err}"),
                    });
                }
            }
            Ok(())
        })
        .await?;
        tracing::info!(image = reference, "imported image");
        self.inspect_image(reference).await
    }

    async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkInfo> {
        self.timed("inspect network", async {
            self.docker
                .inspect_network(name_or_id, None::<qp::InspectNetworkOptions>)
                .await
                .map(network_inspect_info)
                .map_err(|e| map(e, Op::Network(name_or_id)))
        })
        .await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        let req = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some(spec.driver.clone().unwrap_or_else(|| "bridge".into())),
            internal: Some(spec.internal),
            options: Some(spec.options.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let resp = self
            .timed("create network", async {
                self.docker
                    .create_network(req)
                    .await
                    .map_err(|e| map(e, Op::Network(&spec.name)))
            })
            .await?;
        tracing::debug!(network = %spec.name, id = %resp.id, "created network");
        Ok(NetworkInfo {
            id: resp.id,
            name: spec.name.clone(),
            driver: spec.driver.clone().unwrap_or_else(|| "bridge".into()),
            labels: spec.labels.clone(),
            ..Default::default()
        })
    }

    async fn remove_network(&self, name_or_id: &str) -> Result<()> {
        self.timed("remove network", async {
            self.docker
                .remove_network(name_or_id)
                .await
                .map_err(|e| map(e, Op::Network(name_or_id)))
        })
        .await
    }

    async fn list_networks(&self, filter: &LabelFilter) -> Result<Vec<NetworkInfo>> {
        let o = qp::ListNetworksOptions {
            filters: label_filters(filter),
        };
        let rows = self
            .timed("list networks", async {
                self.docker
                    .list_networks(Some(o))
                    .await
                    .map_err(|e| map(e, Op::Engine))
            })
            .await?;
        Ok(rows.into_iter().map(network_info).collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeInfo> {
        let req = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: Some(spec.driver_opts.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.timed("create volume", async {
            self.docker
                .create_volume(req)
                .await
                .map(volume_info)
                .map_err(|e| map(e, Op::Volume(&spec.name)))
        })
        .await
    }

    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.timed("inspect volume", async {
            self.docker
                .inspect_volume(name)
                .await
                .map(volume_info)
                .map_err(|e| map(e, Op::Volume(name)))
        })
        .await
    }

    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.timed("remove volume", async {
            self.docker
                .remove_volume(name, Some(qp::RemoveVolumeOptions { force }))
                .await
                .map_err(|e| map(e, Op::Volume(name)))
        })
        .await
    }

    async fn list_volumes(&self, filter: &LabelFilter) -> Result<Vec<VolumeInfo>> {
        let o = qp::ListVolumesOptions {
            filters: label_filters(filter),
        };
        let resp = self
            .timed("list volumes", async {
                self.docker
                    .list_volumes(Some(o))
                    .await
                    .map_err(|e| map(e, Op::Engine))
            })
            .await?;
        Ok(resp
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_info)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames() {
        let lines = log_lines(
            LogSource::Stdout,
            b"2024-05-01T12:00:00.000000001Z hello world\n",
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, "hello world");
        assert!(lines[0].timestamp.is_some());
        let lines = log_lines(LogSource::Stderr, b"no timestamp here\n");
        assert_eq!(lines[0].line, "no timestamp here");
        assert_eq!(lines[0].timestamp, None);
    }
}
