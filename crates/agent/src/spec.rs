//! From a desired task (task definition + overrides) to a [`TaskPlan`]: the engine objects to
//! make (per-task network, task-scoped volumes) and one [`ContainerSpec`] per container, with
//! the ECS labels that let a restarted agent find its own containers. Pure: no IO.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use berth_agent_api::DesiredTask;
use berth_runtime::{
    ContainerSpec, ExtraHost, HealthCheck, HealthTest, Labels, Link, LogConfig, Mount, NetworkMode,
    NetworkSpec, PortBinding, Protocol, TmpfsMount, Ulimit, VolumeSpec, VolumesFrom,
};
use berth_wire::ecs;

use crate::awslogs::AwsLogsConfig;
use crate::config::AgentConfig;

/// Label: the cluster (as configured in `ECS_CLUSTER`).
pub const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
/// Label: the task ARN.
pub const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
/// Label: the container name in the task definition.
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
/// Label: the task-definition family.
pub const LABEL_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
/// Label: the task-definition revision.
pub const LABEL_VERSION: &str = "com.amazonaws.ecs.task-definition-version";
/// berth label: the container instance that owns the object (two agents may share an engine).
pub const LABEL_INSTANCE: &str = "com.berth.container-instance";

/// ECS `networkMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskNetworkMode {
    /// Docker's default bridge with published ports.
    Bridge,
    /// The host's namespace.
    Host,
    /// No network.
    None,
    /// One network namespace for the task, held by a pause container on a per-task bridge
    /// network (berth's stand-in for an ENI); every container joins it.
    Awsvpc,
}

/// A `dependsOn` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency has started.
    Start,
    /// The dependency has exited (any code).
    Complete,
    /// The dependency has exited with code 0.
    Success,
    /// The dependency's health check passed.
    Healthy,
}

impl Condition {
    /// The ECS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Start => "START",
            Condition::Complete => "COMPLETE",
            Condition::Success => "SUCCESS",
            Condition::Healthy => "HEALTHY",
        }
    }
}

/// One container of a [`TaskPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// Name in the task definition.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Essential?
    pub essential: bool,
    /// Containers this one waits for (explicit `dependsOn`, plus START for links/volumesFrom).
    pub depends_on: Vec<(String, Condition)>,
    /// Whether the definition declares a health check.
    pub has_health_check: bool,
    /// Grace period for stop.
    pub stop_timeout: Duration,
    /// Longest wait for dependencies.
    pub start_timeout: Duration,
    /// Container port → protocol, for host-mode network bindings.
    pub host_mode_ports: Vec<(u16, Protocol)>,
    /// The `awslogs` driver's settings: the agent ships the container's output (the engine
    /// logs it with json-file).
    pub awslogs: Option<AwsLogsConfig>,
    /// `cpu` units of the definition (after overrides), for the metadata endpoint's `Limits`.
    pub cpu_units: i64,
    /// Hard memory limit in MiB (else the reservation), for the metadata endpoint's `Limits`.
    pub memory_mib: Option<i64>,
    /// `secrets`: (variable name, `valueFrom`), resolved from Secrets Manager / SSM by the
    /// actor before the container is created.
    pub secrets: Vec<(String, String)>,
    /// `environmentFiles` (the override's, else the definition's): S3 object ARNs, read by the
    /// actor before the container is created.
    pub environment_files: Vec<String>,
    /// `repositoryCredentials.credentialsParameter`: the Secrets Manager secret holding the
    /// image registry's user name and password.
    pub repository_credentials: Option<String>,
    /// The credentials read from it, once the actor has (used for this image's pull).
    pub pull_auth: Option<berth_runtime::RegistryAuth>,
    /// What to create.
    pub spec: ContainerSpec,
}

/// Everything needed on the host to run one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    /// Task ARN.
    pub task_arn: String,
    /// The 32-hex task id (last ARN segment).
    pub task_id: String,
    /// Family.
    pub family: String,
    /// Revision.
    pub revision: i32,
    /// Network mode.
    pub network_mode: TaskNetworkMode,
    /// The per-task network (awsvpc).
    pub network: Option<NetworkSpec>,
    /// The pause container holding the task's network namespace (awsvpc).
    pub pause: Option<ContainerSpec>,
    /// Task-scoped volumes (created before the containers, removed at cleanup).
    pub task_volumes: Vec<VolumeSpec>,
    /// Containers in task-definition order.
    pub containers: Vec<ContainerPlan>,
}

/// Why a task cannot be planned (becomes the STOPPED reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Size of each json-file log of an `awslogs` container (Docker's `max-size`)…
pub const AWSLOGS_BUFFER_FILE_SIZE: &str = "128m";
/// …and how many files it rotates through (`max-file`): 512 MiB of output may wait to be shipped.
pub const AWSLOGS_BUFFER_FILES: &str = "4";

fn fail(msg: impl Into<String>) -> PlanError {
    PlanError(format!("CannotCreateContainerError: {}", msg.into()))
}

/// Docker container names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The engine name of a task's container: `ecs-<family>-<rev>-<name>-<task id>`.
pub fn container_name(family: &str, revision: i32, name: &str, task_id: &str) -> String {
    sanitize(&format!("ecs-{family}-{revision}-{name}-{task_id}"))
}

fn task_id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// Builds the plan of `task` for this instance.
pub fn plan_task(
    task: &DesiredTask,
    config: &AgentConfig,
    instance_arn: &str,
) -> Result<TaskPlan, PlanError> {
    let td = &task.task_definition;
    let family = td.family.clone().unwrap_or_else(|| "task".into());
    let revision = td.revision;
    let task_id = task_id_of(&task.task_arn);
    let network_mode = match td.network_mode {
        None | Some(ecs::NetworkMode::Bridge) => TaskNetworkMode::Bridge,
        Some(ecs::NetworkMode::Host) => TaskNetworkMode::Host,
        Some(ecs::NetworkMode::None) => TaskNetworkMode::None,
        Some(ecs::NetworkMode::Awsvpc) => TaskNetworkMode::Awsvpc,
    };
    let mut base_labels = Labels::new();
    base_labels.insert(LABEL_CLUSTER.into(), config.cluster.clone());
    base_labels.insert(LABEL_TASK_ARN.into(), task.task_arn.clone());
    base_labels.insert(LABEL_FAMILY.into(), family.clone());
    base_labels.insert(LABEL_VERSION.into(), revision.to_string());
    base_labels.insert(LABEL_INSTANCE.into(), instance_arn.to_string());

    let network = (network_mode == TaskNetworkMode::Awsvpc).then(|| NetworkSpec {
        name: sanitize(&format!("ecs-task-{task_id}")),
        driver: Some("bridge".into()),
        internal: false,
        options: BTreeMap::new(),
        labels: base_labels.clone(),
    });

    // Volumes: name → how to mount it.
    enum Vol {
        Bind(PathBuf),
        Named(VolumeSpec, bool),
    }
    let mut volumes: BTreeMap<String, Vol> = BTreeMap::new();
    let mut task_volumes = Vec::new();
    for v in td.volumes.clone().unwrap_or_default() {
        let Some(name) = v.name.clone() else {
            continue;
        };
        let scoped_name = sanitize(&format!("ecs-{task_id}-{name}"));
        if let Some(dvc) = &v.docker_volume_configuration {
            let shared = matches!(dvc.scope, Some(ecs::Scope::Shared));
            let mut labels = dvc.labels.clone().unwrap_or_default();
            let spec_name = if shared { name.clone() } else { scoped_name };
            if !shared {
                labels.extend(base_labels.clone());
            }
            let spec = VolumeSpec {
                name: spec_name,
                driver: dvc.driver.clone(),
                driver_opts: dvc.driver_opts.clone().unwrap_or_default(),
                labels,
            };
            let autoprovision = if shared {
                dvc.autoprovision.unwrap_or(false)
            } else {
                true
            };
            if !shared {
                task_volumes.push(spec.clone());
            }
            volumes.insert(name, Vol::Named(spec, autoprovision));
        } else if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()) {
            volumes.insert(name, Vol::Bind(PathBuf::from(path)));
        } else if v.efs_volume_configuration.is_some()
            || v.fsx_windows_file_server_volume_configuration.is_some()
        {
            return Err(fail(format!(
                "volume {name}: only host, docker and empty volumes are supported by berth"
            )));
        } else {
            // An empty (scratch) volume shared by the task's containers.
            let spec = VolumeSpec {
                name: scoped_name,
                driver: None,
                driver_opts: BTreeMap::new(),
                labels: base_labels.clone(),
            };
            task_volumes.push(spec.clone());
            volumes.insert(name, Vol::Named(spec, true));
        }
    }

    let defs = td.container_definitions.clone().unwrap_or_default();
    if defs.is_empty() {
        return Err(fail("the task definition has no containers"));
    }
    let names: BTreeSet<String> = defs.iter().filter_map(|d| d.name.clone()).collect();
    let docker_name = |n: &str| -> String { container_name(&family, revision, n, &task_id) };
    let overrides: BTreeMap<String, ecs::ContainerOverride> = task
        .overrides
        .container_overrides
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| Some((o.name.clone()?, o)))
        .collect();

    let pause_name = docker_name("internalecspause");
    let mut pause_dns: Vec<String> = Vec::new();
    let mut pause_dns_search: Vec<String> = Vec::new();
    let mut pause_hosts: Vec<ExtraHost> = Vec::new();
    let mut containers = Vec::new();
    for def in &defs {
        let name = def
            .name
            .clone()
            .ok_or_else(|| fail("a container definition has no name"))?;
        // Log-driver secrets (`secretOptions`) are not resolved: fail the task the way ECS does
        // when it cannot fetch secrets, never run without them.
        let log_secrets: Vec<String> = def
            .log_configuration
            .iter()
            .flat_map(|l| l.secret_options.iter().flatten())
            .filter_map(|s| s.name.clone())
            .collect();
        if !log_secrets.is_empty() {
            return Err(PlanError(format!(
                "ResourceInitializationError: unable to pull secrets or registry auth: container {name} has log configuration secretOptions ({}), which berth does not support",
                log_secrets.join(", ")
            )));
        }
        let env_files = overrides
            .get(&name)
            .and_then(|o| o.environment_files.as_ref())
            .or(def.environment_files.as_ref());
        let mut environment_files = Vec::new();
        for f in env_files.into_iter().flatten() {
            match (f.type_.map(|t| t.as_str()), f.value.as_deref()) {
                (Some("s3"), Some(v)) if !v.is_empty() => environment_files.push(v.to_string()),
                _ => {
                    return Err(fail(format!(
                        "container {name} has an environment file that is not an S3 object ARN of type s3"
                    )))
                }
            }
        }
        let mut secrets = Vec::new();
        for s in def.secrets.iter().flatten() {
            match (&s.name, &s.value_from) {
                (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => {
                    secrets.push((n.clone(), v.clone()))
                }
                _ => {
                    return Err(fail(format!(
                        "container {name} has a secret without name or valueFrom"
                    )))
                }
            }
        }
        let image = def
            .image
            .clone()
            .filter(|i| !i.trim().is_empty())
            .ok_or_else(|| fail(format!("container {name} has no image")))?;
        let ov = overrides.get(&name);
        let mut spec = ContainerSpec::new(docker_name(&name), image.clone());
        spec.entrypoint = def.entry_point.clone();
        spec.command = ov
            .and_then(|o| o.command.clone())
            .or_else(|| def.command.clone());
        for kv in def.environment.iter().flatten() {
            if let Some(k) = &kv.name {
                spec.env
                    .insert(k.clone(), kv.value.clone().unwrap_or_default());
            }
        }
        for kv in ov
            .and_then(|o| o.environment.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(k) = &kv.name {
                spec.env
                    .insert(k.clone(), kv.value.clone().unwrap_or_default());
            }
        }
        // The GPUs the control plane assigned: an engine device request, and the variable the
        // NVIDIA container runtime reads (as the ECS agent sets it).
        if let Some(ids) = task.gpu_ids.get(&name).filter(|ids| !ids.is_empty()) {
            spec.gpus = ids.clone();
            spec.env
                .insert("NVIDIA_VISIBLE_DEVICES".into(), ids.join(","));
        }
        spec.working_dir = def.working_directory.clone();
        spec.user = def.user.clone();
        let mut labels = def.docker_labels.clone().unwrap_or_default();
        labels.extend(base_labels.clone());
        labels.insert(LABEL_CONTAINER_NAME.into(), name.clone());
        spec.labels = labels;
        let cpu = ov.and_then(|o| o.cpu).unwrap_or(def.cpu);
        spec.cpu_shares = Some(u64::try_from(cpu).unwrap_or(0).max(2));
        let mib = |m: i32| u64::try_from(m).unwrap_or(0) * 1024 * 1024;
        spec.memory_limit_bytes = ov.and_then(|o| o.memory).or(def.memory).map(mib);
        spec.memory_reservation_bytes = ov
            .and_then(|o| o.memory_reservation)
            .or(def.memory_reservation)
            .map(mib);
        spec.ulimits = def
            .ulimits
            .iter()
            .flatten()
            .filter_map(|u| {
                Some(Ulimit {
                    name: u.name.as_ref()?.as_str().to_string(),
                    soft: i64::from(u.soft_limit.unwrap_or(0)),
                    hard: i64::from(u.hard_limit.unwrap_or(0)),
                })
            })
            .collect();
        if def.privileged == Some(true) {
            if config.disable_privileged {
                return Err(fail(format!(
                    "container {name}: privileged containers are disabled on this instance (ECS_DISABLE_PRIVILEGED)"
                )));
            }
            spec.privileged = true;
        }
        spec.readonly_rootfs = def.readonly_root_filesystem.unwrap_or(false);
        if let Some(lp) = &def.linux_parameters {
            if let Some(caps) = &lp.capabilities {
                spec.cap_add = caps.add.clone().unwrap_or_default();
                spec.cap_drop = caps.drop.clone().unwrap_or_default();
            }
            spec.init = lp.init_process_enabled.unwrap_or(false);
            spec.shm_size_bytes = lp.shared_memory_size.map(mib);
            spec.tmpfs = lp
                .tmpfs
                .iter()
                .flatten()
                .filter_map(|t| {
                    Some(TmpfsMount {
                        target: t.container_path.clone()?,
                        size_bytes: t.size.map(mib),
                        options: t.mount_options.clone().unwrap_or_default(),
                    })
                })
                .collect();
            spec.max_swap_bytes = lp.max_swap.map(mib);
            spec.swappiness = lp
                .swappiness
                .and_then(|s| u8::try_from(s.clamp(0, 100)).ok());
        }
        if network_mode != TaskNetworkMode::Host && network_mode != TaskNetworkMode::Awsvpc {
            spec.hostname = def.hostname.clone();
        }
        spec.dns_servers = def.dns_servers.clone().unwrap_or_default();
        spec.dns_search = def.dns_search_domains.clone().unwrap_or_default();
        spec.extra_hosts = def
            .extra_hosts
            .iter()
            .flatten()
            .filter_map(|h| {
                Some(ExtraHost {
                    hostname: h.hostname.clone()?,
                    ip: h.ip_address.clone()?,
                })
            })
            .collect();
        let mut depends_on: Vec<(String, Condition)> = Vec::new();
        for l in def.links.iter().flatten() {
            let (target, alias) = match l.split_once(':') {
                Some((t, a)) => (t.to_string(), Some(a.to_string())),
                None => (l.clone(), None),
            };
            if !names.contains(&target) {
                return Err(fail(format!(
                    "container {name}: link to unknown container {target}"
                )));
            }
            if network_mode != TaskNetworkMode::Bridge {
                return Err(fail(format!(
                    "container {name}: links are only supported in bridge network mode"
                )));
            }
            spec.links.push(Link {
                container: docker_name(&target),
                alias: alias.or(Some(target.clone())),
            });
            depends_on.push((target, Condition::Start));
        }
        // Ports.
        let mut host_mode_ports = Vec::new();
        for pm in def.port_mappings.iter().flatten() {
            let Some(cp) = pm.container_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let protocol = match pm.protocol {
                Some(ecs::TransportProtocol::Udp) => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            match network_mode {
                TaskNetworkMode::Bridge => spec.port_bindings.push(PortBinding {
                    container_port: cp,
                    protocol,
                    host_port: pm
                        .host_port
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or(0),
                    host_port_range: config.dynamic_host_port_range,
                    host_ip: None,
                }),
                TaskNetworkMode::Host => host_mode_ports.push((cp, protocol)),
                _ => {}
            }
        }
        spec.network_mode = match network_mode {
            TaskNetworkMode::Bridge => NetworkMode::Bridge,
            TaskNetworkMode::Host => NetworkMode::Host,
            TaskNetworkMode::None => NetworkMode::None,
            TaskNetworkMode::Awsvpc => NetworkMode::Container(pause_name.clone().into()),
        };
        if network_mode == TaskNetworkMode::Awsvpc {
            // Docker refuses DNS settings on a container that joins another's namespace: they
            // belong to the pause container, which owns /etc/resolv.conf and /etc/hosts.
            pause_dns.extend(std::mem::take(&mut spec.dns_servers));
            pause_dns_search.extend(std::mem::take(&mut spec.dns_search));
            pause_hosts.extend(std::mem::take(&mut spec.extra_hosts));
        }
        if def.disable_networking == Some(true) {
            spec.network_mode = NetworkMode::None;
            spec.port_bindings.clear();
        }
        // Mounts.
        for mp in def.mount_points.iter().flatten() {
            let (Some(src), Some(target)) = (&mp.source_volume, &mp.container_path) else {
                return Err(fail(format!(
                    "container {name}: a mount point needs sourceVolume and containerPath"
                )));
            };
            let read_only = mp.read_only.unwrap_or(false);
            match volumes.get(src) {
                Some(Vol::Bind(path)) => spec.mounts.push(Mount::Bind {
                    source: path.clone(),
                    target: target.clone(),
                    read_only,
                }),
                Some(Vol::Named(v, autoprovision)) => spec.mounts.push(Mount::Volume {
                    volume: v.clone(),
                    target: target.clone(),
                    read_only,
                    autoprovision: *autoprovision,
                }),
                None => {
                    return Err(fail(format!(
                        "container {name}: mount point refers to unknown volume {src}"
                    )))
                }
            }
        }
        for vf in def.volumes_from.iter().flatten() {
            let Some(src) = &vf.source_container else {
                continue;
            };
            if !names.contains(src) {
                return Err(fail(format!(
                    "container {name}: volumesFrom unknown container {src}"
                )));
            }
            spec.volumes_from.push(VolumesFrom {
                container: docker_name(src),
                read_only: vf.read_only.unwrap_or(false),
            });
            depends_on.push((src.clone(), Condition::Start));
        }
        // Logging: other drivers pass through to the engine unchanged; awslogs (and awsfirelens)
        // containers log with json-file, and the agent ships awslogs output itself
        // (crate::awslogs), since Docker's awslogs driver cannot reach berth.
        let awslogs = match def.log_configuration.as_ref() {
            Some(lc) => AwsLogsConfig::from_log_configuration(lc)
                .map_err(|e| fail(format!("Error response from daemon: {e}")))?,
            None => None,
        };
        let non_blocking = awslogs.as_ref().and_then(|a| a.non_blocking_buffer);
        spec.log_config = def.log_configuration.as_ref().and_then(|lc| {
            let driver = lc.log_driver.as_ref()?.as_str().to_string();
            if driver == "awslogs" || driver == "awsfirelens" {
                // The json-file log is the shipper's buffer: sized here, not by the daemon's
                // defaults (often 10m × 3), so a shipper that falls behind, or an agent
                // restart, loses nothing unless it is more than this far behind. With
                // `mode: non-blocking` it is `max-buffer-size` (two files of half each), and
                // what falls out of it is lost, as Docker drops it.
                let (size, files) = match non_blocking {
                    Some(total) => ((total / 2).max(1024).to_string(), "2".to_string()),
                    None => (
                        AWSLOGS_BUFFER_FILE_SIZE.to_string(),
                        AWSLOGS_BUFFER_FILES.to_string(),
                    ),
                };
                Some(LogConfig {
                    driver: "json-file".into(),
                    options: BTreeMap::from([
                        ("max-size".to_string(), size),
                        ("max-file".to_string(), files),
                        // Rotated files stay plain JSON for the shipper to read (a daemon
                        // default of compress=true would otherwise apply).
                        ("compress".to_string(), "false".to_string()),
                    ]),
                })
            } else {
                Some(LogConfig {
                    driver,
                    options: lc.options.clone().unwrap_or_default(),
                })
            }
        });
        let has_health_check = def.health_check.is_some();
        spec.health_check = match &def.health_check {
            Some(hc) => Some(health_check(&name, hc)?),
            // ECS ignores image HEALTHCHECKs unless the definition declares one.
            None => Some(HealthCheck {
                test: HealthTest::Disabled,
                interval: Duration::ZERO,
                timeout: Duration::ZERO,
                retries: 0,
                start_period: Duration::ZERO,
            }),
        };
        let stop_timeout = def
            .stop_timeout
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(config.container_stop_timeout);
        spec.stop_timeout = Some(stop_timeout);
        for d in def.depends_on.iter().flatten() {
            let (Some(dep), Some(cond)) = (&d.container_name, &d.condition) else {
                continue;
            };
            if !names.contains(dep) || dep == &name {
                return Err(fail(format!(
                    "container {name}: dependsOn unknown container {dep}"
                )));
            }
            let cond = match cond {
                ecs::ContainerCondition::Start => Condition::Start,
                ecs::ContainerCondition::Complete => Condition::Complete,
                ecs::ContainerCondition::Success => Condition::Success,
                ecs::ContainerCondition::Healthy => Condition::Healthy,
            };
            depends_on.retain(|(n, _)| n != dep);
            depends_on.push((dep.clone(), cond));
        }
        containers.push(ContainerPlan {
            secrets,
            environment_files,
            repository_credentials: def
                .repository_credentials
                .as_ref()
                .and_then(|r| r.credentials_parameter.clone())
                .filter(|p| !p.is_empty()),
            pull_auth: None,
            cpu_units: i64::from(cpu),
            memory_mib: ov
                .and_then(|o| o.memory)
                .or(def.memory)
                .or_else(|| ov.and_then(|o| o.memory_reservation))
                .or(def.memory_reservation)
                .map(i64::from),
            name: name.clone(),
            image,
            essential: def.essential.unwrap_or(true),
            depends_on,
            has_health_check,
            stop_timeout,
            start_timeout: def
                .start_timeout
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(config.container_start_timeout),
            host_mode_ports,
            awslogs,
            spec,
        });
    }
    if let Some(cycle) = find_cycle(&containers) {
        return Err(fail(format!(
            "dependency cycle involving container {cycle}"
        )));
    }
    for c in &containers {
        for (dep, cond) in &c.depends_on {
            if *cond == Condition::Healthy
                && !containers
                    .iter()
                    .any(|d| &d.name == dep && d.has_health_check)
            {
                return Err(fail(format!(
                    "container {}: dependency {dep} has condition HEALTHY but no healthCheck",
                    c.name
                )));
            }
        }
    }
    let pause = network.as_ref().map(|net| {
        let mut p = ContainerSpec::new(pause_name.clone(), crate::pause::PAUSE_IMAGE);
        let mut labels = base_labels.clone();
        labels.insert(
            LABEL_CONTAINER_NAME.into(),
            crate::pause::PAUSE_CONTAINER_NAME.into(),
        );
        p.labels = labels;
        p.network_mode = NetworkMode::Named {
            network: net.name.clone(),
            aliases: Vec::new(),
        };
        pause_dns.dedup();
        p.dns_servers = pause_dns;
        p.dns_search = pause_dns_search;
        p.extra_hosts = pause_hosts;
        p.cpu_shares = Some(2);
        p.stop_timeout = Some(Duration::ZERO);
        p
    });
    Ok(TaskPlan {
        task_arn: task.task_arn.clone(),
        task_id,
        family,
        revision,
        network_mode,
        network,
        pause,
        task_volumes,
        containers,
    })
}

fn health_check(name: &str, hc: &ecs::HealthCheck) -> Result<HealthCheck, PlanError> {
    let cmd = hc.command.clone().unwrap_or_default();
    let test = match cmd.first().map(String::as_str) {
        Some("CMD") => HealthTest::Cmd(cmd[1..].to_vec()),
        Some("CMD-SHELL") => HealthTest::CmdShell(cmd[1..].join(" ")),
        Some("NONE") => HealthTest::Disabled,
        _ => {
            return Err(fail(format!(
                "container {name}: healthCheck command must start with CMD, CMD-SHELL or NONE"
            )))
        }
    };
    let secs = |v: Option<i32>, d: u64| {
        Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d))
    };
    Ok(HealthCheck {
        test,
        interval: secs(hc.interval, 30),
        timeout: secs(hc.timeout, 5),
        retries: hc.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(3),
        start_period: secs(hc.start_period, 0),
    })
}

fn find_cycle(containers: &[ContainerPlan]) -> Option<String> {
    // Kahn's algorithm: whatever cannot be ordered is on (or behind) a cycle.
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = containers
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.depends_on.iter().map(|(d, _)| d.as_str()).collect(),
            )
        })
        .collect();
    loop {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d)))
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return remaining.keys().next().map(|s| s.to_string());
        }
        for r in ready {
            remaining.remove(r);
        }
        if remaining.is_empty() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired(td: serde_json::Value, overrides: serde_json::Value) -> DesiredTask {
        DesiredTask {
            task_arn:
                "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
                    .into(),
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
            desired_status: "RUNNING".into(),
            task_definition: serde_json::from_value(td).unwrap(),
            overrides: serde_json::from_value(overrides).unwrap(),
            group: "family:web".into(),
            ..Default::default()
        }
    }

    #[test]
    fn maps_container_definition_fields() {
        let t = desired(
            json!({
                "family": "web", "revision": 3, "networkMode": "bridge",
                "volumes": [
                    {"name": "data", "host": {"sourcePath": "/srv/data"}},
                    {"name": "scratch"},
                    {"name": "dv", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true, "driver": "local"}}
                ],
                "containerDefinitions": [{
                    "name": "app", "image": "nginx", "cpu": 0, "memory": 128, "memoryReservation": 64,
                    "command": ["a"], "entryPoint": ["sh", "-c"],
                    "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "portMappings": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
                    "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true},
                                     {"sourceVolume": "scratch", "containerPath": "/tmp/s"},
                                     {"sourceVolume": "dv", "containerPath": "/dv"}],
                    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
                    "linuxParameters": {"initProcessEnabled": true, "sharedMemorySize": 64,
                        "capabilities": {"add": ["NET_ADMIN"]}, "tmpfs": [{"containerPath": "/run", "size": 16}]},
                    "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5},
                    "dockerLabels": {"x": "y"}, "stopTimeout": 7,
                    "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}
                }, {
                    "name": "side", "image": "busybox", "essential": false, "links": ["app:web"],
                    "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]
                }]
            }),
            json!({"containerOverrides": [{"name": "app", "command": ["b"], "environment": [{"name": "B", "value": "3"}]}]}),
        );
        let plan = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
        assert_eq!(plan.task_volumes.len(), 1);
        let app = &plan.containers[0];
        let s = &app.spec;
        assert_eq!(s.name, "ecs-web-3-app-0123456789abcdef0123456789abcdef");
        assert_eq!(s.command, Some(vec!["b".to_string()]));
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.env["B"], "3");
        assert_eq!(s.cpu_shares, Some(2));
        assert_eq!(s.memory_limit_bytes, Some(128 << 20));
        assert_eq!(s.memory_reservation_bytes, Some(64 << 20));
        assert_eq!(s.port_bindings.len(), 2);
        assert_eq!(s.port_bindings[0].host_port, 0);
        assert_eq!(s.port_bindings[1].protocol, Protocol::Udp);
        assert_eq!(s.labels[LABEL_TASK_ARN], t.task_arn);
        assert_eq!(s.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(s.labels[LABEL_FAMILY], "web");
        assert_eq!(s.labels[LABEL_VERSION], "3");
        assert_eq!(s.labels["x"], "y");
        assert!(s.init);
        assert_eq!(s.mounts.len(), 3);
        assert!(matches!(
            &s.mounts[0],
            Mount::Bind {
                read_only: true,
                ..
            }
        ));
        assert!(
            matches!(&s.mounts[2], Mount::Volume { volume, autoprovision: true, .. } if volume.name == "dv")
        );
        assert_eq!(s.log_config.as_ref().unwrap().driver, "json-file");
        assert_eq!(
            s.log_config.as_ref().unwrap().options["max-size"],
            AWSLOGS_BUFFER_FILE_SIZE
        );
        assert_eq!(app.stop_timeout, Duration::from_secs(7));
        assert!(matches!(
            s.health_check.as_ref().unwrap().test,
            HealthTest::CmdShell(_)
        ));
        let side = &plan.containers[1];
        assert!(!side.essential);
        assert_eq!(
            side.depends_on,
            vec![("app".to_string(), Condition::Healthy)]
        );
        assert_eq!(side.spec.links[0].alias.as_deref(), Some("web"));
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "privileged": true}]}),
                "ECS_DISABLE_PRIVILEGED",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "mountPoints": [{"sourceVolume": "x", "containerPath": "/x"}]}]}),
                "unknown volume",
            ),
            (
                json!({"family": "f", "containerDefinitions": [
                {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "START"}]},
                {"name": "b", "image": "i", "dependsOn": [{"containerName": "a", "condition": "START"}]}]}),
                "cycle",
            ),
            (
                json!({"family": "f", "containerDefinitions": [
                {"name": "a", "image": "i", "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
                {"name": "b", "image": "i"}]}),
                "no healthCheck",
            ),
            (
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                  "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g", "mode": "fast"}}}]}),
                "Error response from daemon: logger: logging mode not supported: fast",
            ),
        ];
        let config = AgentConfig {
            disable_privileged: true,
            ..AgentConfig::default()
        };
        for (td, want) in cases {
            let err = plan_task(&desired(td, json!({})), &config, "arn:ci").unwrap_err();
            assert!(err.0.starts_with("CannotCreateContainerError: "), "{err}");
            assert!(err.0.contains(want), "{err}");
        }
    }

    #[test]
    fn assigned_gpus_become_a_device_request() {
        let mut t = desired(
            json!({"family": "f", "containerDefinitions": [
                {"name": "a", "image": "i", "resourceRequirements": [{"type": "GPU", "value": "2"}]},
                {"name": "b", "image": "i"}]}),
            json!({}),
        );
        t.gpu_ids
            .insert("a".into(), vec!["GPU-1".into(), "GPU-2".into()]);
        let p = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
        assert_eq!(p.containers[0].spec.gpus, vec!["GPU-1", "GPU-2"]);
        assert_eq!(
            p.containers[0].spec.env["NVIDIA_VISIBLE_DEVICES"],
            "GPU-1,GPU-2"
        );
        assert!(p.containers[1].spec.gpus.is_empty());
        assert!(!p.containers[1]
            .spec
            .env
            .contains_key("NVIDIA_VISIBLE_DEVICES"));
    }

    #[test]
    fn awslogs_non_blocking_buffer_is_max_buffer_size() {
        let lc = |opts| {
            let t = desired(
                json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                       "logConfiguration": {"logDriver": "awslogs", "options": opts}}]}),
                json!({}),
            );
            let p = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
            p.containers[0].spec.log_config.clone().unwrap().options
        };
        let o = lc(json!({"awslogs-group": "g", "mode": "non-blocking", "max-buffer-size": "4m"}));
        assert_eq!(
            (o["max-size"].as_str(), o["max-file"].as_str()),
            ("2097152", "2")
        );
        let o = lc(json!({"awslogs-group": "g", "mode": "blocking"}));
        assert_eq!(
            (o["max-size"].as_str(), o["max-file"].as_str()),
            (AWSLOGS_BUFFER_FILE_SIZE, AWSLOGS_BUFFER_FILES)
        );
    }

    #[test]
    fn awsvpc_gets_a_task_network() {
        let t = desired(
            json!({"family": "f", "networkMode": "awsvpc", "containerDefinitions": [
                {"name": "a", "image": "i", "portMappings": [{"containerPort": 80}], "dnsServers": ["10.0.0.2"]},
                {"name": "b", "image": "i"}]}),
            json!({}),
        );
        let plan = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
        let net = plan.network.clone().unwrap();
        let pause = plan.pause.clone().unwrap();
        // The pause container sits on the task network; every container joins its namespace.
        assert!(
            matches!(&pause.network_mode, NetworkMode::Named { network, .. } if *network == net.name)
        );
        assert_eq!(pause.image, crate::pause::PAUSE_IMAGE);
        assert_eq!(
            pause.labels[LABEL_CONTAINER_NAME],
            crate::pause::PAUSE_CONTAINER_NAME
        );
        assert_eq!(pause.dns_servers, vec!["10.0.0.2".to_string()]);
        for c in &plan.containers {
            assert_eq!(
                c.spec.network_mode,
                NetworkMode::Container(pause.name.clone().into())
            );
            assert!(c.spec.port_bindings.is_empty());
            assert!(c.spec.dns_servers.is_empty());
        }
    }

    #[test]
    fn dynamic_host_port_range_reaches_the_binding() {
        let t = desired(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]}]}),
            json!({}),
        );
        let config = AgentConfig {
            dynamic_host_port_range: Some((40000, 40010)),
            ..AgentConfig::default()
        };
        let plan = plan_task(&t, &config, "arn:ci").unwrap();
        let b = &plan.containers[0].spec.port_bindings;
        assert_eq!(
            (b[0].host_port, b[0].host_port_range),
            (0, Some((40000, 40010)))
        );
        assert_eq!(b[1].host_port, 8081);
        let plan = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
        assert_eq!(
            plan.containers[0].spec.port_bindings[0].host_port_range,
            None
        );
    }

    #[test]
    fn secrets_are_planned_and_log_secrets_fail_the_task_clearly() {
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db";
        let t = desired(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": arn}, {"name": "HOST", "valueFrom": "/app/host"}]}]}),
            json!({}),
        );
        let plan = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap();
        assert_eq!(
            plan.containers[0].secrets,
            vec![
                ("DB_PASSWORD".to_string(), arn.to_string()),
                ("HOST".to_string(), "/app/host".to_string())
            ]
        );
        let t = desired(
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                "logConfiguration": {"logDriver": "json-file", "secretOptions": [{"name": "TOKEN", "valueFrom": arn}]}}]}),
            json!({}),
        );
        let err = plan_task(&t, &AgentConfig::default(), "arn:ci").unwrap_err();
        assert!(
            err.0
                .starts_with("ResourceInitializationError: unable to pull secrets"),
            "{err}"
        );
        assert!(err.0.contains("TOKEN"), "{err}");
    }
}
