//! Conversions between berth's runtime types and Docker (bollard) models.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use berth_runtime::{
    ContainerId, ContainerInfo, ContainerSpec, ContainerState, ContainerStatus, HealthStatus,
    HealthTest, Labels, Mount, NetworkAttachment, NetworkMode, PortMapping, Protocol,
};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerSummaryStateEnum, DeviceRequest, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, HostConfigLogConfig, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkingConfig, PortBinding as DockerPortBinding, ResourcesUlimits,
};

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

/// Builds the Docker create body for `spec`.
pub(crate) fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut exposed = Vec::new();
    let mut port_map: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    for pb in &spec.port_bindings {
        let key = format!("{}/{}", pb.container_port, pb.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let binding = DockerPortBinding {
            host_ip: pb.host_ip.clone(),
            // An empty host port asks Docker for an ephemeral one.
            host_port: Some(if pb.host_port == 0 {
                // A range asks Docker for a free port inside it.
                pb.host_port_range
                    .map(|(lo, hi)| format!("{lo}-{hi}"))
                    .unwrap_or_default()
            } else {
                pb.host_port.to_string()
            }),
        };
        port_map
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }

    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        match m {
            Mount::Bind {
                source,
                target,
                read_only,
            } => {
                let mode = if *read_only { ":ro" } else { "" };
                binds.push(format!("{}:{}{}", source.display(), target, mode));
            }
            Mount::Volume {
                volume,
                target,
                read_only,
                ..
            } => mounts.push(bollard::models::Mount {
                target: Some(target.clone()),
                source: Some(volume.name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(*read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: (!volume.labels.is_empty()).then(|| to_map(&volume.labels)),
                    driver_config: volume
                        .driver
                        .as_ref()
                        .map(|d| MountVolumeOptionsDriverConfig {
                            name: Some(d.clone()),
                            options: (!volume.driver_opts.is_empty())
                                .then(|| to_map(&volume.driver_opts)),
                        }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| {
            let mut opts = t.options.clone();
            if let Some(size) = t.size_bytes {
                opts.push(format!("size={size}"));
            }
            (t.target.clone(), opts.join(","))
        })
        .collect();

    let mut endpoints = None;
    let network_mode = match &spec.network_mode {
        NetworkMode::Bridge => "bridge".to_string(),
        NetworkMode::Host => "host".to_string(),
        NetworkMode::None => "none".to_string(),
        NetworkMode::Container(id) => format!("container:{id}"),
        NetworkMode::Named { network, aliases } => {
            endpoints = Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: non_empty(aliases.clone()),
                    ..Default::default()
                },
            )]));
            network.clone()
        }
    };

    let memory_swap = match (spec.memory_limit_bytes, spec.max_swap_bytes) {
        (Some(mem), Some(swap)) => Some(i64_of(mem.saturating_add(swap))),
        _ => None,
    };

    let healthcheck = spec.health_check.as_ref().map(|hc| HealthConfig {
        test: Some(match &hc.test {
            HealthTest::Cmd(args) => {
                let mut v = vec!["CMD".to_string()];
                v.extend(args.iter().cloned());
                v
            }
            HealthTest::CmdShell(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
            HealthTest::Disabled => vec!["NONE".to_string()],
        }),
        interval: Some(nanos(hc.interval)),
        timeout: Some(nanos(hc.timeout)),
        retries: Some(i64::from(hc.retries)),
        start_period: Some(nanos(hc.start_period)),
        start_interval: None,
    });

    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares.map(i64_of),
        memory: spec.memory_limit_bytes.map(i64_of),
        memory_reservation: spec.memory_reservation_bytes.map(i64_of),
        memory_swap,
        memory_swappiness: spec.swappiness.map(i64::from),
        ulimits: non_empty(
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        privileged: Some(spec.privileged),
        readonly_rootfs: Some(spec.readonly_rootfs),
        cap_add: non_empty(spec.cap_add.clone()),
        cap_drop: non_empty(spec.cap_drop.clone()),
        init: spec.init.then_some(true),
        device_requests: (!spec.gpus.is_empty()).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: Some(spec.gpus.clone()),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        }),
        shm_size: spec.shm_size_bytes.map(i64_of),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        dns: non_empty(spec.dns_servers.clone()),
        dns_search: non_empty(spec.dns_search.clone()),
        extra_hosts: non_empty(
            spec.extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.hostname, h.ip))
                .collect(),
        ),
        links: non_empty(
            spec.links
                .iter()
                .map(|l| match &l.alias {
                    Some(a) => format!("{}:{}", l.container, a),
                    None => l.container.clone(),
                })
                .collect(),
        ),
        port_bindings: (!port_map.is_empty()).then_some(port_map),
        network_mode: Some(network_mode),
        binds: non_empty(binds),
        mounts: non_empty(mounts),
        volumes_from: non_empty(
            spec.volumes_from
                .iter()
                .map(|v| {
                    if v.read_only {
                        format!("{}:ro", v.container)
                    } else {
                        v.container.clone()
                    }
                })
                .collect(),
        ),
        log_config: spec.log_config.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(to_map(&l.options)),
        }),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: non_empty(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        labels: Some(to_map(&spec.labels)),
        hostname: spec.hostname.clone(),
        exposed_ports: non_empty(exposed),
        healthcheck,
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec
            .stop_timeout
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        networking_config: endpoints.map(|e| NetworkingConfig {
            endpoints_config: Some(e),
        }),
        ..Default::default()
    }
}

fn none_if_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

pub(crate) fn status_of(s: Option<ContainerStateStatusEnum>) -> ContainerStatus {
    match s {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        Some(ContainerStateStatusEnum::STOPPING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => {
            ContainerStatus::Created
        }
    }
}

pub(crate) fn summary_status_of(s: Option<ContainerSummaryStateEnum>) -> ContainerStatus {
    match s {
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerStatus::Dead,
        Some(ContainerSummaryStateEnum::STOPPING) => ContainerStatus::Running,
        Some(ContainerSummaryStateEnum::CREATED)
        | Some(ContainerSummaryStateEnum::EMPTY)
        | None => ContainerStatus::Created,
    }
}

pub(crate) fn health_of(s: Option<HealthStatusEnum>) -> HealthStatus {
    match s {
        Some(HealthStatusEnum::STARTING) => HealthStatus::Starting,
        Some(HealthStatusEnum::HEALTHY) => HealthStatus::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => HealthStatus::Unhealthy,
        Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) | None => HealthStatus::None,
    }
}

/// Health text from an event action (`health_status: healthy`).
pub(crate) fn health_of_text(s: &str) -> HealthStatus {
    match s.trim() {
        "healthy" => HealthStatus::Healthy,
        "unhealthy" => HealthStatus::Unhealthy,
        "starting" => HealthStatus::Starting,
        _ => HealthStatus::None,
    }
}

/// `"8080/tcp"` → (8080, Tcp).
pub(crate) fn parse_port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, proto))
}

pub(crate) fn labels_of(m: Option<HashMap<String, String>>) -> Labels {
    m.unwrap_or_default().into_iter().collect()
}

/// Maps a Docker inspect response.
pub(crate) fn container_info(r: ContainerInspectResponse) -> ContainerInfo {
    let state = r.state.unwrap_or_default();
    let config = r.config.unwrap_or_default();
    let net = r.network_settings.unwrap_or_default();
    let mut ports: Vec<PortMapping> = net
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| {
            let (container_port, protocol) = parse_port_key(&key)?;
            Some(
                bindings
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |b| {
                        Some(PortMapping {
                            container_port,
                            protocol,
                            host_ip: b.host_ip.unwrap_or_default(),
                            host_port: b.host_port?.parse().ok()?,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    ports.sort();
    let networks = net
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, e)| {
            (
                name,
                NetworkAttachment {
                    ipv4_address: none_if_empty(e.ip_address),
                    ipv6_address: none_if_empty(e.global_ipv6_address),
                    gateway: none_if_empty(e.gateway),
                    mac_address: none_if_empty(e.mac_address),
                },
            )
        })
        .collect();
    let status = status_of(state.status);
    ContainerInfo {
        id: ContainerId::new(r.id.unwrap_or_default()),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: r.image.unwrap_or_default(),
        labels: labels_of(config.labels),
        state: ContainerState {
            status,
            exit_code: match status {
                ContainerStatus::Exited | ContainerStatus::Dead => state.exit_code,
                _ => None,
            },
            oom_killed: state.oom_killed.unwrap_or(false),
            error: none_if_empty(state.error),
            pid: state
                .pid
                .filter(|p| *p > 0)
                .and_then(|p| u32::try_from(p).ok()),
            started_at: state.started_at.as_deref().and_then(parse_rfc3339),
            finished_at: state.finished_at.as_deref().and_then(parse_rfc3339),
            health: health_of(state.health.and_then(|h| h.status)),
        },
        ports,
        networks,
        created_at: r.created.as_deref().and_then(parse_rfc3339),
    }
}

/// Parses Docker's RFC 3339 timestamps (`2024-05-01T12:00:00.123456789Z`, offsets allowed).
/// Returns `None` for the zero time (`0001-01-01T00:00:00Z`) and anything before 1970.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let digits = &frac[..frac.len().min(9)];
        let mut n: u32 = digits.parse().ok()?;
        for _ in digits.len()..9 {
            n *= 10;
        }
        nanos = n;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z') | Some(b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{HealthCheck, PortBinding, VolumeSpec};

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2024-05-01T12:00:00.123456789Z");
        assert_eq!(
            t,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_714_564_800, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00.5Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::new(951_868_800, 500_000_000))
        );
    }

    #[test]
    fn create_body_maps_spec() {
        let mut spec = ContainerSpec::new("web", "busybox");
        spec.port_bindings.push(PortBinding {
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_port: 0,
            host_port_range: None,
            host_ip: None,
        });
        spec.memory_limit_bytes = Some(8 << 20);
        spec.max_swap_bytes = Some(0);
        spec.health_check = Some(HealthCheck {
            test: HealthTest::CmdShell("true".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 2,
            start_period: Duration::ZERO,
        });
        spec.mounts.push(Mount::Volume {
            volume: VolumeSpec {
                name: "v".into(),
                ..Default::default()
            },
            target: "/data".into(),
            read_only: false,
            autoprovision: true,
        });
        spec.network_mode = NetworkMode::Named {
            network: "task-net".into(),
            aliases: vec!["web".into()],
        };
        let body = create_body(&spec);
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        let hc = body.host_config.unwrap_or_default();
        assert_eq!(hc.memory_swap, Some(8 << 20));
        assert_eq!(hc.network_mode.as_deref(), Some("task-net"));
        let pm = hc.port_bindings.unwrap_or_default();
        assert_eq!(
            pm.get("8080/tcp").cloned().flatten().unwrap_or_default()[0]
                .host_port
                .as_deref(),
            Some("")
        );
        assert_eq!(
            body.healthcheck.and_then(|h| h.test),
            Some(vec!["CMD-SHELL".to_string(), "true".to_string()])
        );
        assert!(body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .is_some_and(|e| e.contains_key("task-net")));
    }

    #[test]
    fn port_keys() {
        assert_eq!(parse_port_key("80/tcp"), Some((80, Protocol::Tcp)));
        assert_eq!(parse_port_key("53/udp"), Some((53, Protocol::Udp)));
        assert_eq!(parse_port_key("1/sctp"), None);
    }
}
