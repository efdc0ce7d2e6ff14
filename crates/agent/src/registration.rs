//! Container-instance identity and the `RegisterContainerInstance` request.
//!
//! The identity lives in `ECS_DATADIR/agent-state.json` (written atomically: temp file, fsync,
//! rename): the EC2-style instance id (`i-` + 16 hex, derived from `/etc/machine-id` and the data
//! directory, so two agents with separate data dirs on one host are two instances) and the
//! container-instance ARN the control plane returned. A restarted agent re-registers with that
//! ARN and so stays the same container instance.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_runtime::EngineInfo;
use berth_wire::ecs;
use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;

/// berth's version, reported as `versionInfo.agentVersion`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Lowest Docker remote API version the ECS agent advertises.
const MIN_DOCKER_API_MINOR: u32 = 17;

/// What the agent persists between restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistedState {
    /// `i-` + 16 hex.
    pub instance_id: String,
    /// The cluster the ARN belongs to.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The registered container-instance ARN.
    #[serde(default)]
    pub container_instance_arn: Option<String>,
    /// Key of the per-container task-metadata tokens (32 random bytes, hex); made on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_secret: Option<String>,
}

/// Failure to read or write the persisted identity.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// IO on the data directory failed.
    #[error("cannot {action} {path}")]
    Io {
        /// read / write / create.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid JSON.
    #[error("corrupt agent state file {path}: {message}")]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// Decoder message.
        message: String,
    },
}

/// The state file's path inside the data directory.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-state.json")
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Derives an instance id from the machine id and the data directory (random if there is no
/// machine id).
pub fn derive_instance_id(machine_id: Option<&str>, data_dir: &Path) -> String {
    match machine_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => {
            let mut input = m.as_bytes().to_vec();
            input.push(0);
            input.extend_from_slice(data_dir.to_string_lossy().as_bytes());
            format!("i-{:016x}", fnv64(&input))
        }
        None => format!("i-{:016x}", rand::random::<u64>()),
    }
}

/// Loads the persisted state, or makes a fresh one (with a new instance id) when there is none.
pub fn load_or_init(data_dir: &Path) -> Result<PersistedState, StateError> {
    let path = state_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let machine_id = std::fs::read_to_string("/etc/machine-id").ok();
            let abs = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
            Ok(PersistedState {
                instance_id: derive_instance_id(machine_id.as_deref(), &abs),
                cluster: None,
                container_instance_arn: None,
                metadata_secret: None,
            })
        }
        Err(source) => Err(StateError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Writes the state atomically (temp file + fsync + rename), creating the data dir if needed.
pub fn save(data_dir: &Path, state: &PersistedState) -> Result<(), StateError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StateError::Io {
        action: "create",
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = state_path(data_dir);
    let tmp = data_dir.join(".agent-state.json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let io = |source| StateError::Io {
        action: "write",
        path: tmp.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|source| StateError::Io {
        action: "write",
        path: path.clone(),
        source,
    })?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// `x86_64` / `arm64` as ECS names them.
pub fn ecs_cpu_architecture(arch: &str) -> String {
    match arch {
        "aarch64" | "arm64" => "arm64".into(),
        "x86_64" | "amd64" => "x86_64".into(),
        other => other.into(),
    }
}

fn attr(name: &str, value: Option<&str>) -> ecs::Attribute {
    ecs::Attribute {
        name: Some(name.to_string()),
        value: value.map(str::to_string),
        ..Default::default()
    }
}

/// The attributes the agent registers: standard ones, the capabilities it really implements,
/// and (at first registration) `ECS_INSTANCE_ATTRIBUTES`.
pub fn attributes(config: &AgentConfig, engine: &EngineInfo, first: bool) -> Vec<ecs::Attribute> {
    let arch = if engine.arch.is_empty() {
        std::env::consts::ARCH
    } else {
        &engine.arch
    };
    let mut out = vec![
        attr("ecs.os-type", Some("linux")),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some(&ecs_cpu_architecture(arch))),
        attr("ecs.instance-type", Some(&config.instance_type)),
        attr("ecs.availability-zone", Some(&config.availability_zone)),
    ];
    let max_minor = engine
        .api_version
        .split_once('.')
        .and_then(|(_, m)| m.parse::<u32>().ok())
        .unwrap_or(MIN_DOCKER_API_MINOR);
    for minor in MIN_DOCKER_API_MINOR..=max_minor.min(41) {
        out.push(attr(
            &format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"),
            None,
        ));
    }
    for d in &config.available_logging_drivers {
        out.push(attr(
            &format!("com.amazonaws.ecs.capability.logging-driver.{d}"),
            None,
        ));
    }
    if !config.disable_privileged {
        out.push(attr(
            "com.amazonaws.ecs.capability.privileged-container",
            None,
        ));
    }
    for cap in [
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.task-eni",
        "ecs.capability.docker-plugin.local",
        "ecs.capability.secrets.asm.environment-variables",
        "ecs.capability.secrets.ssm.environment-variables",
        "ecs.capability.env-files.s3",
        "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
    ] {
        out.push(attr(cap, None));
    }
    if config.enable_task_iam_role {
        out.push(attr("com.amazonaws.ecs.capability.task-iam-role", None));
    }
    if config.enable_task_iam_role_network_host {
        out.push(attr(
            "com.amazonaws.ecs.capability.task-iam-role-network-host",
            None,
        ));
    }
    if first {
        for (k, v) in &config.instance_attributes {
            out.push(attr(k, Some(v)));
        }
    }
    out
}

/// The `instanceIdentityDocument` JSON.
pub fn identity_document(config: &AgentConfig, instance_id: &str) -> String {
    serde_json::json!({
        "instanceId": instance_id,
        "availabilityZone": config.availability_zone,
        "instanceType": config.instance_type,
        "region": config.region,
        "architecture": ecs_cpu_architecture(std::env::consts::ARCH),
    })
    .to_string()
}

fn int_resource(name: &str, v: i64) -> ecs::Resource {
    ecs::Resource {
        name: Some(name.into()),
        type_: Some("INTEGER".into()),
        integer_value: i32::try_from(v.max(0)).unwrap_or(i32::MAX),
        ..Default::default()
    }
}

fn ports_resource(name: &str, ports: &[u16]) -> ecs::Resource {
    ecs::Resource {
        name: Some(name.into()),
        type_: Some("STRINGSET".into()),
        string_set_value: Some(ports.iter().map(u16::to_string).collect()),
        ..Default::default()
    }
}

/// The host's NVIDIA GPUs, by id, as `nvidia-smi --query-gpu=uuid --format=csv,noheader` lists
/// them (what the ECS agent registers as the `GPU` resource). Err says why none can be listed.
pub fn detect_gpus(nvidia_smi: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(nvidia_smi)
        .args(["--query-gpu=uuid", "--format=csv,noheader"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvidia_smi.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            nvidia_smi.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(format!("{} lists no GPU", nvidia_smi.display()));
    }
    Ok(ids)
}

/// Builds the full `RegisterContainerInstance` request.
pub fn register_request(
    config: &AgentConfig,
    engine: &EngineInfo,
    state: &PersistedState,
) -> ecs::RegisterContainerInstanceRequest {
    let first = state.container_instance_arn.is_none();
    let memory_mib =
        (engine.memory_bytes / (1024 * 1024)) as i64 - config.reserved_memory_mib as i64;
    let tags: Vec<ecs::Tag> = config
        .instance_tags
        .iter()
        .map(|(k, v)| ecs::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect();
    ecs::RegisterContainerInstanceRequest {
        cluster: Some(config.cluster.clone()),
        instance_identity_document: Some(identity_document(config, &state.instance_id)),
        instance_identity_document_signature: None,
        total_resources: Some({
            let mut r = vec![
                int_resource("CPU", i64::from(engine.cpus) * 1024),
                int_resource("MEMORY", memory_mib),
                ports_resource("PORTS", &config.reserved_ports),
                ports_resource("PORTS_UDP", &config.reserved_ports_udp),
            ];
            if !config.gpus.is_empty() {
                r.push(ecs::Resource {
                    name: Some("GPU".into()),
                    type_: Some("STRINGSET".into()),
                    string_set_value: Some(config.gpus.clone()),
                    ..Default::default()
                });
            }
            r
        }),
        version_info: Some(ecs::VersionInfo {
            agent_version: Some(AGENT_VERSION.into()),
            agent_hash: Some(option_env!("BERTH_GIT_HASH").unwrap_or("unknown").into()),
            docker_version: Some(format!("DockerVersion: {}", engine.version)),
        }),
        container_instance_arn: state.container_instance_arn.clone(),
        attributes: Some(attributes(config, engine, first)),
        platform_devices: None,
        tags: if tags.is_empty() { None } else { Some(tags) },
    }
}

/// Tag map helper for tests and logs.
pub fn tag_map(tags: &[ecs::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> EngineInfo {
        EngineInfo {
            version: "20.10.24".into(),
            api_version: "1.41".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            cpus: 4,
            memory_bytes: 8 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn gpus_are_listed_with_nvidia_smi_and_registered_by_id() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(
            &smi,
            "#!/bin/sh\n[ \"$1\" = --query-gpu=uuid ] || exit 9\necho GPU-aaaa\necho GPU-bbbb\n",
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(detect_gpus(&smi).unwrap(), vec!["GPU-aaaa", "GPU-bbbb"]);
        let e = detect_gpus(&dir.path().join("missing")).unwrap_err();
        assert!(e.starts_with("cannot run"), "{e}");
        let none = dir.path().join("none");
        std::fs::write(&none, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&none, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(detect_gpus(&none).unwrap_err().contains("lists no GPU"));

        let config = AgentConfig {
            gpus: vec!["GPU-aaaa".into(), "GPU-bbbb".into()],
            ..AgentConfig::default()
        };
        let req = register_request(&config, &engine(), &PersistedState::default());
        let gpu = req
            .total_resources
            .unwrap()
            .into_iter()
            .find(|r| r.name.as_deref() == Some("GPU"))
            .expect("a GPU resource");
        assert_eq!(gpu.type_.as_deref(), Some("STRINGSET"));
        assert_eq!(gpu.string_set_value.unwrap(), vec!["GPU-aaaa", "GPU-bbbb"]);
        let req = register_request(
            &AgentConfig::default(),
            &engine(),
            &PersistedState::default(),
        );
        assert!(!req
            .total_resources
            .unwrap()
            .iter()
            .any(|r| r.name.as_deref() == Some("GPU")));
    }

    #[test]
    fn request_has_resources_attributes_and_identity() {
        let mut config = AgentConfig {
            reserved_memory_mib: 512,
            ..AgentConfig::default()
        };
        config
            .instance_attributes
            .insert("stack".into(), "prod".into());
        config.instance_tags.insert("team".into(), "a".into());
        let state = PersistedState {
            instance_id: "i-0123456789abcdef".into(),
            ..Default::default()
        };
        let req = register_request(&config, &engine(), &state);
        let res = req.total_resources.clone().unwrap();
        assert_eq!(res[0].integer_value, 4096);
        assert_eq!(res[1].integer_value, 8192 - 512);
        assert_eq!(res[2].string_set_value.as_ref().unwrap().len(), 5);
        let names: Vec<String> = req
            .attributes
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|a| a.name)
            .collect();
        for want in [
            "ecs.os-type",
            "ecs.cpu-architecture",
            "com.amazonaws.ecs.capability.docker-remote-api.1.17",
            "com.amazonaws.ecs.capability.docker-remote-api.1.41",
            "com.amazonaws.ecs.capability.logging-driver.json-file",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.container-health-check",
            "stack",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        assert!(!names.iter().any(|n| n.contains("task-iam-role")));
        let doc: serde_json::Value =
            serde_json::from_str(req.instance_identity_document.as_deref().unwrap()).unwrap();
        assert_eq!(doc["instanceId"], "i-0123456789abcdef");
        assert_eq!(tag_map(&req.tags.unwrap())["team"], "a");

        // Re-registration: same ARN, no custom attributes.
        let state = PersistedState {
            container_instance_arn: Some("arn:x".into()),
            ..state
        };
        let req = register_request(&config, &engine(), &state);
        assert_eq!(req.container_instance_arn.as_deref(), Some("arn:x"));
        assert!(!req
            .attributes
            .unwrap()
            .iter()
            .any(|a| a.name.as_deref() == Some("stack")));
    }

    #[test]
    fn instance_id_is_stable_and_per_data_dir() {
        let a = derive_instance_id(Some("abc\n"), Path::new("/d1"));
        assert_eq!(a, derive_instance_id(Some("abc"), Path::new("/d1")));
        assert_ne!(a, derive_instance_id(Some("abc"), Path::new("/d2")));
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("i-"));
    }

    #[test]
    fn state_roundtrip_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = load_or_init(dir.path()).unwrap();
        assert!(s.container_instance_arn.is_none());
        s.container_instance_arn = Some("arn:ci".into());
        save(dir.path(), &s).unwrap();
        assert_eq!(load_or_init(dir.path()).unwrap(), s);
        assert!(!dir.path().join(".agent-state.json.tmp").exists());
    }
}
