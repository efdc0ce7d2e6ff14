//! Agent configuration: the ECS agent's env-file format (`/etc/ecs/ecs.config`) plus berth's own
//! `BERTH_*` variables.
//!
//! Sources, weakest first: built-in defaults → the env file (`KEY=VALUE` lines, `#` comments,
//! optional surrounding quotes, optional `export `) → the process environment. Unknown `ECS_*`
//! variables are ignored with a warning; a malformed value is a [`ConfigError`] naming the
//! variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default location of the env file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ecs/ecs.config";
/// The default control-plane endpoint (what `berth server` listens on).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7601";

/// A configuration problem found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value the agent cannot use.
    #[error("invalid value for {variable}: {message} (got {value:?})")]
    Invalid {
        /// The variable name, e.g. `ECS_RESERVED_PORTS`.
        variable: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// The env file exists but cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the env file is not `KEY=VALUE`.
    #[error("{path}:{line}: expected KEY=VALUE")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullBehavior {
    /// Pull; fall back to a cached image if the pull fails.
    #[default]
    Default,
    /// Always pull; a failed pull fails the task.
    Always,
    /// Pull only if the image is not present locally.
    Once,
    /// Use the local image if present, else pull.
    PreferCached,
}

/// The agent's whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `ECS_CLUSTER`.
    pub cluster: String,
    /// `ECS_RESERVED_MEMORY`, MiB.
    pub reserved_memory_mib: u64,
    /// `ECS_RESERVED_PORTS`.
    pub reserved_ports: Vec<u16>,
    /// `ECS_RESERVED_PORTS_UDP`.
    pub reserved_ports_udp: Vec<u16>,
    /// `ECS_INSTANCE_ATTRIBUTES` (only sent at first registration).
    pub instance_attributes: BTreeMap<String, String>,
    /// `ECS_CONTAINER_INSTANCE_TAGS`.
    pub instance_tags: BTreeMap<String, String>,
    /// `ECS_CONTAINER_STOP_TIMEOUT`.
    pub container_stop_timeout: Duration,
    /// `ECS_CONTAINER_START_TIMEOUT` (also the longest a container waits for its dependencies).
    pub container_start_timeout: Duration,
    /// `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`.
    pub task_cleanup_wait: Duration,
    /// `ECS_IMAGE_PULL_BEHAVIOR`.
    pub image_pull_behavior: ImagePullBehavior,
    /// `ECS_DATADIR`.
    pub data_dir: PathBuf,
    /// `ECS_LOGLEVEL` (debug, info, warn, error, crit), when set.
    pub log_level: Option<String>,
    /// `ECS_AVAILABLE_LOGGING_DRIVERS` (default `["json-file","awslogs","none"]`).
    pub available_logging_drivers: Vec<String>,
    /// `ECS_DISABLE_PRIVILEGED`.
    pub disable_privileged: bool,
    /// `ECS_ENABLE_GPU_SUPPORT`: find the host's NVIDIA GPUs at start and register them.
    pub enable_gpu_support: bool,
    /// `BERTH_NVIDIA_SMI`: the `nvidia-smi` the GPUs are listed with (default from `PATH`).
    pub nvidia_smi: PathBuf,
    /// The GPUs found at start (ids, as `nvidia-smi` reports them); filled by the agent.
    pub gpus: Vec<String>,
    /// `BERTH_CONCURRENT_STARTS`: containers created and started at once (default 8).
    pub concurrent_starts: usize,
    /// `ECS_DYNAMIC_HOST_PORT_RANGE`, when set (otherwise the kernel's ephemeral range, which
    /// is what Docker uses when it chooses a host port).
    pub dynamic_host_port_range: Option<(u16, u16)>,
    /// `BERTH_ENDPOINT`: control-plane endpoints, tried in order with fail-over.
    pub endpoints: Vec<String>,
    /// `BERTH_AGENT_ACCESS_KEY_ID` (or `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// `BERTH_AGENT_SECRET_ACCESS_KEY` (or `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// `BERTH_REGION`.
    pub region: String,
    /// `BERTH_AVAILABILITY_ZONE` (default `<region>a`).
    pub availability_zone: String,
    /// `BERTH_INSTANCE_TYPE` (default `berth.host`).
    pub instance_type: String,
    /// `BERTH_METADATA_PORT`: port of the task metadata endpoint (default 51679, the port the
    /// ECS agent reserves for it; 0 = any free port).
    pub metadata_port: u16,
    /// `ECS_ENABLE_TASK_IAM_ROLE`: serve task IAM role credentials to bridge and awsvpc tasks
    /// (default false, as ECS's agent).
    pub enable_task_iam_role: bool,
    /// `ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST`: the same for host-mode tasks (default false).
    pub enable_task_iam_role_network_host: bool,
    /// `BERTH_CREDENTIALS_ADDRESS`: where the credentials endpoint listens (default
    /// `169.254.170.2:80`, where the AWS SDKs look; the agent adds the address to `lo`).
    pub credentials_address: std::net::SocketAddr,
}

/// Where ECS serves task credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to it).
pub const ECS_CREDENTIALS_ADDRESS: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(169, 254, 170, 2), 80),
);

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            cluster: "default".into(),
            reserved_memory_mib: 0,
            reserved_ports: vec![22, 2375, 2376, 51678, 51679],
            reserved_ports_udp: Vec::new(),
            instance_attributes: BTreeMap::new(),
            instance_tags: BTreeMap::new(),
            container_stop_timeout: Duration::from_secs(30),
            container_start_timeout: Duration::from_secs(180),
            task_cleanup_wait: Duration::from_secs(3 * 3600),
            image_pull_behavior: ImagePullBehavior::Default,
            data_dir: PathBuf::from("/var/lib/ecs/data"),
            log_level: None,
            // The ECS agent's own default is json-file and none; ECS-optimized AMIs add awslogs,
            // which berth's agent implements itself (crate::awslogs).
            available_logging_drivers: vec!["json-file".into(), "awslogs".into(), "none".into()],
            disable_privileged: false,
            enable_gpu_support: false,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            gpus: Vec::new(),
            concurrent_starts: 8,
            dynamic_host_port_range: None,
            endpoints: vec![DEFAULT_ENDPOINT.into()],
            access_key_id: None,
            secret_access_key: None,
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            instance_type: "berth.host".into(),
            metadata_port: 51679,
            enable_task_iam_role: false,
            enable_task_iam_role_network_host: false,
            credentials_address: ECS_CREDENTIALS_ADDRESS,
        }
    }
}

/// ECS agent variables berth accepts but does not act on (no warning for these).
const ACCEPTED_IGNORED: &[&str] = &[
    "ECS_LOGFILE",
    "ECS_CHECKPOINT",
    "ECS_UPDATES_ENABLED",
    "ECS_UPDATE_DOWNLOAD_DIR",
    "ECS_ENABLE_CONTAINER_METADATA",
    "ECS_CONTAINER_CREATE_TIMEOUT",
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER",
    "ECS_IMAGE_CLEANUP_INTERVAL",
    "ECS_IMAGE_MINIMUM_CLEANUP_AGE",
    "ECS_NUM_IMAGES_DELETE_PER_CYCLE",
    "ECS_DISABLE_IMAGE_CLEANUP",
    "ECS_ENABLE_SPOT_INSTANCE_DRAINING",
    "ECS_TASK_METADATA_RPS_LIMIT",
    "ECS_ENABLE_TASK_ENI",
    "ECS_AWSVPC_BLOCK_IMDS",
];

/// Variables the agent reads (the known set; anything else starting `ECS_` gets a warning).
const KNOWN: &[&str] = &[
    "ECS_CLUSTER",
    "ECS_RESERVED_MEMORY",
    "ECS_RESERVED_PORTS",
    "ECS_RESERVED_PORTS_UDP",
    "ECS_INSTANCE_ATTRIBUTES",
    "ECS_CONTAINER_INSTANCE_TAGS",
    "ECS_CONTAINER_STOP_TIMEOUT",
    "ECS_CONTAINER_START_TIMEOUT",
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
    "ECS_IMAGE_PULL_BEHAVIOR",
    "ECS_DATADIR",
    "ECS_LOGLEVEL",
    "ECS_AVAILABLE_LOGGING_DRIVERS",
    "ECS_DISABLE_PRIVILEGED",
    "ECS_DYNAMIC_HOST_PORT_RANGE",
    "ECS_ENABLE_GPU_SUPPORT",
    "ECS_ENABLE_TASK_IAM_ROLE",
    "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST",
];

/// Parses the env-file format into a map. `path` is only used in error messages.
pub fn parse_env_file(text: &str, path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
            });
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
            });
        }
        let v = v.trim();
        let v = strip_quotes(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn strip_quotes(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Parses a Go `time.ParseDuration` string: `30s`, `3m`, `1h30m`, `1.5h`, `250ms`.
/// A bare `0` is zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        if num_len == 0 {
            return Err(format!("expected a number in duration {s:?}"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number in duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += n * secs;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

fn invalid(variable: &str, value: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable: variable.into(),
        value: value.into(),
        message: message.into(),
    }
}

fn parse_ports(var: &str, v: &str) -> Result<Vec<u16>, ConfigError> {
    let ports: Vec<u16> = serde_json::from_str(v).map_err(|e| {
        invalid(
            var,
            v,
            format!("expected a JSON array of ports, e.g. [22, 2375]: {e}"),
        )
    })?;
    Ok(ports)
}

fn parse_map(var: &str, v: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    serde_json::from_str(v).map_err(|e| {
        invalid(
            var,
            v,
            format!("expected a JSON object of strings, e.g. {{\"k\": \"v\"}}: {e}"),
        )
    })
}

fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(invalid(var, v, "expected true or false")),
    }
}

fn parse_duration_var(var: &str, v: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(v).map_err(|m| invalid(var, v, m))
}

fn parse_range(var: &str, v: &str) -> Result<(u16, u16), ConfigError> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| invalid(var, v, "expected <first>-<last>, e.g. 32768-60999"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| invalid(var, v, "ports must be 1-65535"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| invalid(var, v, "ports must be 1-65535"))?;
    if a == 0 || a > b {
        return Err(invalid(
            var,
            v,
            "the range must be non-empty and start at 1 or more",
        ));
    }
    Ok((a, b))
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), which Docker
/// uses for dynamic host ports.
pub fn kernel_ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace();
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b))
}

impl AgentConfig {
    /// Loads the configuration: defaults, then the env file at `path` (missing is fine), then
    /// the process environment. Returns the config and warnings to log.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let file = match std::fs::read_to_string(path) {
            Ok(t) => parse_env_file(&t, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(&file, &env)
    }

    /// Builds the configuration from the env-file map and the environment map (the environment
    /// wins). Returns the config and warnings (unknown or ignored `ECS_*` variables).
    pub fn from_sources(
        file: &BTreeMap<String, String>,
        env: &BTreeMap<String, String>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut merged = file.clone();
        for (k, v) in env {
            if k.starts_with("ECS_") || k.starts_with("BERTH_") || k.starts_with("AWS_") {
                merged.insert(k.clone(), v.clone());
            }
        }
        let mut warnings = Vec::new();
        for k in merged.keys() {
            if !k.starts_with("ECS_") || KNOWN.contains(&k.as_str()) {
                continue;
            }
            if ACCEPTED_IGNORED.contains(&k.as_str()) {
                warnings.push(format!("{k} is not supported by berth; ignored"));
            } else {
                warnings.push(format!("unknown variable {k}; ignored"));
            }
        }
        let get = |k: &str| merged.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let mut c = AgentConfig::default();
        if let Some(v) = get("ECS_CLUSTER") {
            c.cluster = v.to_string();
        }
        if let Some(v) = get("ECS_RESERVED_MEMORY") {
            c.reserved_memory_mib = v
                .parse()
                .map_err(|_| invalid("ECS_RESERVED_MEMORY", v, "expected MiB as an integer"))?;
        }
        if let Some(v) = get("ECS_RESERVED_PORTS") {
            c.reserved_ports = parse_ports("ECS_RESERVED_PORTS", v)?;
        }
        if let Some(v) = get("ECS_RESERVED_PORTS_UDP") {
            c.reserved_ports_udp = parse_ports("ECS_RESERVED_PORTS_UDP", v)?;
        }
        if let Some(v) = get("ECS_INSTANCE_ATTRIBUTES") {
            c.instance_attributes = parse_map("ECS_INSTANCE_ATTRIBUTES", v)?;
        }
        if let Some(v) = get("ECS_CONTAINER_INSTANCE_TAGS") {
            c.instance_tags = parse_map("ECS_CONTAINER_INSTANCE_TAGS", v)?;
        }
        if let Some(v) = get("ECS_CONTAINER_STOP_TIMEOUT") {
            c.container_stop_timeout = parse_duration_var("ECS_CONTAINER_STOP_TIMEOUT", v)?;
        }
        if let Some(v) = get("ECS_CONTAINER_START_TIMEOUT") {
            c.container_start_timeout = parse_duration_var("ECS_CONTAINER_START_TIMEOUT", v)?;
        }
        if let Some(v) = get("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION") {
            c.task_cleanup_wait = parse_duration_var("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", v)?;
        }
        if let Some(v) = get("ECS_IMAGE_PULL_BEHAVIOR") {
            c.image_pull_behavior = match v.to_ascii_lowercase().as_str() {
                "default" => ImagePullBehavior::Default,
                "always" => ImagePullBehavior::Always,
                "once" => ImagePullBehavior::Once,
                "prefer-cached" => ImagePullBehavior::PreferCached,
                _ => {
                    return Err(invalid(
                        "ECS_IMAGE_PULL_BEHAVIOR",
                        v,
                        "expected default, always, once or prefer-cached",
                    ))
                }
            };
        }
        if let Some(v) = get("ECS_DATADIR") {
            c.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("ECS_LOGLEVEL") {
            let l = v.to_ascii_lowercase();
            if !["debug", "info", "warn", "error", "crit"].contains(&l.as_str()) {
                return Err(invalid(
                    "ECS_LOGLEVEL",
                    v,
                    "expected debug, info, warn, error or crit",
                ));
            }
            c.log_level = Some(l);
        }
        if let Some(v) = get("ECS_AVAILABLE_LOGGING_DRIVERS") {
            c.available_logging_drivers = serde_json::from_str(v).map_err(|e| {
                invalid(
                    "ECS_AVAILABLE_LOGGING_DRIVERS",
                    v,
                    format!(
                        "expected a JSON array of strings, e.g. [\"json-file\",\"awslogs\"]: {e}"
                    ),
                )
            })?;
        }
        if let Some(v) = get("ECS_DISABLE_PRIVILEGED") {
            c.disable_privileged = parse_bool("ECS_DISABLE_PRIVILEGED", v)?;
        }
        if let Some(v) = get("ECS_ENABLE_GPU_SUPPORT") {
            c.enable_gpu_support = parse_bool("ECS_ENABLE_GPU_SUPPORT", v)?;
        }
        if let Some(v) = get("ECS_ENABLE_TASK_IAM_ROLE") {
            c.enable_task_iam_role = parse_bool("ECS_ENABLE_TASK_IAM_ROLE", v)?;
        }
        if let Some(v) = get("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST") {
            c.enable_task_iam_role_network_host =
                parse_bool("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", v)?;
        }
        if let Some(v) = get("BERTH_CREDENTIALS_ADDRESS") {
            c.credentials_address = v.trim().parse().map_err(|_| {
                invalid(
                    "BERTH_CREDENTIALS_ADDRESS",
                    v,
                    "expected IP:PORT, e.g. 169.254.170.2:80",
                )
            })?;
        }
        if let Some(v) = get("BERTH_NVIDIA_SMI").filter(|v| !v.is_empty()) {
            c.nvidia_smi = PathBuf::from(v);
        }
        if let Some(v) = get("BERTH_CONCURRENT_STARTS") {
            c.concurrent_starts = v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid("BERTH_CONCURRENT_STARTS", v, "expected a positive number")
            })?;
        }
        if let Some(v) = get("ECS_DYNAMIC_HOST_PORT_RANGE") {
            c.dynamic_host_port_range = Some(parse_range("ECS_DYNAMIC_HOST_PORT_RANGE", v)?);
        }
        if let Some(v) = get("BERTH_ENDPOINT") {
            let eps: Vec<String> = v
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            for e in &eps {
                if !e.starts_with("http://") {
                    return Err(invalid(
                        "BERTH_ENDPOINT",
                        v,
                        format!("{e}: expected http://host:port"),
                    ));
                }
            }
            if eps.is_empty() {
                return Err(invalid("BERTH_ENDPOINT", v, "no endpoint given"));
            }
            c.endpoints = eps;
        }
        c.access_key_id = get("BERTH_AGENT_ACCESS_KEY_ID")
            .or_else(|| get("AWS_ACCESS_KEY_ID"))
            .map(String::from);
        c.secret_access_key = get("BERTH_AGENT_SECRET_ACCESS_KEY")
            .or_else(|| get("AWS_SECRET_ACCESS_KEY"))
            .map(String::from);
        // The region the agent signs for, which is the region its instance joins: as the ECS
        // agent reads it (`AWS_DEFAULT_REGION`, `AWS_REGION`), `BERTH_REGION` first.
        if let Some(v) = get("BERTH_REGION")
            .or_else(|| get("AWS_REGION"))
            .or_else(|| get("AWS_DEFAULT_REGION"))
        {
            c.region = v.to_string();
        }
        c.availability_zone = get("BERTH_AVAILABILITY_ZONE")
            .map(String::from)
            .unwrap_or_else(|| format!("{}a", c.region));
        if let Some(v) = get("BERTH_INSTANCE_TYPE") {
            c.instance_type = v.to_string();
        }
        if let Some(v) = get("BERTH_METADATA_PORT") {
            c.metadata_port = v.trim().parse().map_err(|_| {
                invalid(
                    "BERTH_METADATA_PORT",
                    v,
                    "expected a port number 0-65535 (0 = any free port)",
                )
            })?;
        }
        Ok((c, warnings))
    }

    /// The effective dynamic host-port range: the configured one, else the kernel's.
    pub fn effective_dynamic_port_range(&self) -> (u16, u16) {
        self.dynamic_host_port_range
            .or_else(kernel_ephemeral_range)
            .unwrap_or((32768, 60999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30s", Some(30_000)),
            ("3m", Some(180_000)),
            ("3h", Some(10_800_000)),
            ("1h30m", Some(5_400_000)),
            ("1.5h", Some(5_400_000)),
            ("250ms", Some(250)),
            ("0", Some(0)),
            ("10", None),
            ("", None),
            ("5d", None),
            ("m", None),
        ];
        for (input, want) in cases {
            let got = parse_go_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "{input}");
        }
    }

    #[test]
    fn defaults() {
        let (c, w) = AgentConfig::from_sources(&BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert!(w.is_empty());
        assert_eq!(c, AgentConfig::default());
        assert_eq!(c.reserved_ports, vec![22, 2375, 2376, 51678, 51679]);
        assert_eq!(c.container_stop_timeout, Duration::from_secs(30));
    }

    #[test]
    fn env_file_syntax() {
        let text = "# comment\n\nECS_CLUSTER=prod\nexport ECS_RESERVED_MEMORY=256\nECS_INSTANCE_ATTRIBUTES='{\"a\":\"b\"}'\nECS_LOGLEVEL=\"debug\"\n";
        let m = parse_env_file(text, Path::new("x")).unwrap();
        assert_eq!(m["ECS_CLUSTER"], "prod");
        assert_eq!(m["ECS_RESERVED_MEMORY"], "256");
        assert_eq!(m["ECS_INSTANCE_ATTRIBUTES"], "{\"a\":\"b\"}");
        assert_eq!(m["ECS_LOGLEVEL"], "debug");
        assert!(matches!(
            parse_env_file("NOEQUALS\n", Path::new("x")),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
    }

    #[test]
    fn values_table() {
        type Check = fn(&AgentConfig) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("ECS_CLUSTER", "prod", |c| c.cluster == "prod"),
            ("ECS_RESERVED_MEMORY", "512", |c| {
                c.reserved_memory_mib == 512
            }),
            ("ECS_RESERVED_PORTS", "[22, 80]", |c| {
                c.reserved_ports == vec![22, 80]
            }),
            ("ECS_RESERVED_PORTS_UDP", "[53]", |c| {
                c.reserved_ports_udp == vec![53]
            }),
            ("ECS_INSTANCE_ATTRIBUTES", r#"{"stack":"prod"}"#, |c| {
                c.instance_attributes.get("stack").map(String::as_str) == Some("prod")
            }),
            ("ECS_CONTAINER_INSTANCE_TAGS", r#"{"team":"a"}"#, |c| {
                c.instance_tags.len() == 1
            }),
            ("ECS_CONTAINER_STOP_TIMEOUT", "10s", |c| {
                c.container_stop_timeout == Duration::from_secs(10)
            }),
            ("ECS_CONTAINER_START_TIMEOUT", "1m", |c| {
                c.container_start_timeout == Duration::from_secs(60)
            }),
            ("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "1h30m", |c| {
                c.task_cleanup_wait == Duration::from_secs(5400)
            }),
            ("ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached", |c| {
                c.image_pull_behavior == ImagePullBehavior::PreferCached
            }),
            ("ECS_IMAGE_PULL_BEHAVIOR", "once", |c| {
                c.image_pull_behavior == ImagePullBehavior::Once
            }),
            ("ECS_DATADIR", "/tmp/x", |c| {
                c.data_dir == Path::new("/tmp/x")
            }),
            ("ECS_LOGLEVEL", "WARN", |c| {
                c.log_level.as_deref() == Some("warn")
            }),
            (
                "ECS_AVAILABLE_LOGGING_DRIVERS",
                r#"["json-file","awslogs"]"#,
                |c| c.available_logging_drivers == vec!["json-file", "awslogs"],
            ),
            ("ECS_DISABLE_PRIVILEGED", "true", |c| c.disable_privileged),
            ("ECS_ENABLE_GPU_SUPPORT", "true", |c| c.enable_gpu_support),
            ("BERTH_CONCURRENT_STARTS", "3", |c| c.concurrent_starts == 3),
            ("BERTH_NVIDIA_SMI", "/opt/nv/smi", |c| {
                c.nvidia_smi == Path::new("/opt/nv/smi")
            }),
            ("ECS_DYNAMIC_HOST_PORT_RANGE", "40000-40100", |c| {
                c.dynamic_host_port_range == Some((40000, 40100))
            }),
            ("BERTH_ENDPOINT", "http://a:1, http://b:2/", |c| {
                c.endpoints == vec!["http://a:1", "http://b:2"]
            }),
            ("BERTH_REGION", "eu-west-1", |c| {
                c.region == "eu-west-1" && c.availability_zone == "eu-west-1a"
            }),
            ("AWS_DEFAULT_REGION", "eu-central-1", |c| {
                c.region == "eu-central-1" && c.availability_zone == "eu-central-1a"
            }),
            ("AWS_REGION", "ap-south-1", |c| c.region == "ap-south-1"),
            ("BERTH_AVAILABILITY_ZONE", "rack-7", |c| {
                c.availability_zone == "rack-7"
            }),
            ("BERTH_INSTANCE_TYPE", "m5.large", |c| {
                c.instance_type == "m5.large"
            }),
            ("BERTH_METADATA_PORT", "0", |c| c.metadata_port == 0),
            ("ECS_ENABLE_TASK_IAM_ROLE", "true", |c| {
                c.enable_task_iam_role
            }),
            ("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "true", |c| {
                c.enable_task_iam_role_network_host
            }),
            ("BERTH_CREDENTIALS_ADDRESS", "127.0.0.1:8080", |c| {
                c.credentials_address.to_string() == "127.0.0.1:8080"
            }),
            ("AWS_ACCESS_KEY_ID", "AKIA1", |c| {
                c.access_key_id.as_deref() == Some("AKIA1")
            }),
        ];
        for (k, v, check) in cases {
            let (c, _) = AgentConfig::from_sources(&BTreeMap::new(), &map(&[(k, v)]))
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert!(check(&c), "{k}={v}: {c:?}");
        }
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("ECS_RESERVED_MEMORY", "lots"),
            ("ECS_RESERVED_PORTS", "22,80"),
            ("ECS_RESERVED_PORTS_UDP", "[70000]"),
            ("ECS_INSTANCE_ATTRIBUTES", "a=b"),
            ("ECS_CONTAINER_INSTANCE_TAGS", "[1]"),
            ("ECS_CONTAINER_STOP_TIMEOUT", "30"),
            ("ECS_CONTAINER_START_TIMEOUT", "3 minutes"),
            ("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "3d"),
            ("ECS_IMAGE_PULL_BEHAVIOR", "sometimes"),
            ("ECS_LOGLEVEL", "chatty"),
            ("ECS_AVAILABLE_LOGGING_DRIVERS", "json-file"),
            ("ECS_DISABLE_PRIVILEGED", "maybe"),
            ("ECS_ENABLE_GPU_SUPPORT", "sometimes"),
            ("BERTH_CONCURRENT_STARTS", "0"),
            ("ECS_DYNAMIC_HOST_PORT_RANGE", "50000"),
            ("ECS_DYNAMIC_HOST_PORT_RANGE", "600-500"),
            ("BERTH_ENDPOINT", "https://x"),
            ("BERTH_METADATA_PORT", "70000"),
            ("ECS_ENABLE_TASK_IAM_ROLE", "yes please"),
            ("BERTH_CREDENTIALS_ADDRESS", "169.254.170.2"),
        ];
        for (k, v) in cases {
            let err = AgentConfig::from_sources(&BTreeMap::new(), &map(&[(k, v)]))
                .expect_err(&format!("{k}={v} should fail"));
            assert!(err.to_string().contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn env_overrides_file_and_unknown_warns() {
        let file = map(&[("ECS_CLUSTER", "from-file"), ("ECS_FROBNICATE", "1")]);
        let env = map(&[
            ("ECS_CLUSTER", "from-env"),
            ("ECS_LOGFILE", "/x"),
            ("PATH", "/bin"),
        ]);
        let (c, w) = AgentConfig::from_sources(&file, &env).unwrap();
        assert_eq!(c.cluster, "from-env");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|w| w.contains("ECS_FROBNICATE")));
    }

    #[test]
    fn missing_file_is_fine() {
        let (c, _) = AgentConfig::load(Path::new("/nonexistent/ecs.config")).unwrap();
        assert!(!c.cluster.is_empty());
    }
}
