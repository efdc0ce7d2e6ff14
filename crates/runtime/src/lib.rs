//! berth-runtime: the container-runtime boundary of the berth agent.
//!
//! [`ContainerRuntime`] is exactly what an ECS agent needs from a container engine: engine facts,
//! images, the container lifecycle (create / start / stop / kill / remove / inspect), adoption of
//! its own containers after a restart (list by label), an event stream, logs, stats, and per-task
//! networks and volumes. The types are berth's own ([`types`]); no engine types leak through.
//!
//! Backends: `berth-runtime-docker` (Docker Engine via bollard, the only crate that depends on it)
//! and [`fake::FakeRuntime`], a deterministic in-memory engine for tests and simulation.
//!
//! API boundary: every method returns [`RuntimeError`], whose variants map onto the ECS failure
//! reasons ([`RuntimeError::ecs_reason`]) and keep the engine's message verbatim.

pub mod error;
pub mod fake;
pub mod types;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use error::{ObjectKind, Result, RuntimeError};
pub use fake::{FakeBehavior, FakeConfig, FakeRuntime};
pub use types::*;

/// Stream of [`RuntimeEvent`]s. It does not end on its own: connection drops are reported as
/// [`RuntimeEvent::Disconnected`] / [`RuntimeEvent::Reconnected`] and retried with backoff.
pub type EventStream = BoxStream<'static, RuntimeEvent>;

/// Stream of log lines; ends when the container stops (follow) or the backlog is drained.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// What the agent needs from a container engine.
///
/// Containers are addressed by [`ContainerId`] (engines also accept a name there). All methods
/// are safe to call concurrently.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Engine version, API version, CPUs, memory and supported log drivers.
    async fn info(&self) -> Result<EngineInfo>;

    /// The local image `reference`, or [`RuntimeError::ImageNotFound`].
    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo>;

    /// Whether `reference` is present locally.
    async fn image_exists(&self, reference: &str) -> Result<bool> {
        match self.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(RuntimeError::ImageNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Pulls `reference` (a missing tag means `latest`) and returns the local image.
    /// Fails with [`RuntimeError::PullFailed`] (or [`RuntimeError::ImageNotFound`]).
    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo>;

    /// Creates (does not start) a container. Fails with [`RuntimeError::CreateFailed`],
    /// [`RuntimeError::NameConflict`] or [`RuntimeError::ImageNotFound`].
    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId>;

    /// Starts a created container. Fails with [`RuntimeError::StartFailed`] (e.g. port already
    /// allocated) or [`RuntimeError::NotFound`]. Starting a running container is a no-op.
    async fn start_container(&self, id: &ContainerId) -> Result<()>;

    /// Sends the stop signal, waits up to `timeout`, then SIGKILLs. Stopping a stopped
    /// container is a no-op.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()>;

    /// Sends `signal` (e.g. `SIGKILL`, `SIGTERM`, `9`).
    async fn kill_container(&self, id: &ContainerId, signal: &str) -> Result<()>;

    /// Removes a container. [`RuntimeError::NotFound`] if it is already gone.
    async fn remove_container(&self, id: &ContainerId, options: RemoveOptions) -> Result<()>;

    /// Full state of one container.
    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo>;

    /// Containers matching the label filter, so a restarted agent can adopt its own.
    async fn list_containers(&self, options: &ListOptions) -> Result<Vec<ContainerSummary>>;

    /// Container events (start / die / oom / health / …) for containers matching `filter`,
    /// from now on. Never ends; see [`EventStream`].
    fn events(&self, filter: LabelFilter) -> EventStream;

    /// Log lines of a container (stdout/stderr, timestamped).
    fn logs(&self, id: &ContainerId, options: LogOptions) -> LogStream;

    /// One resource-usage snapshot.
    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats>;

    /// One resource-usage snapshot as the engine's own JSON document (Docker's
    /// `GET /containers/{id}/stats?stream=false`), for the task metadata endpoint. The default
    /// renders [`ContainerRuntime::stats`] in Docker's shape.
    async fn stats_json(&self, id: &ContainerId) -> Result<String> {
        let s = self.stats(id).await?;
        Ok(docker_stats_json(id, &s))
    }

    /// Makes a local image `reference` from a root filesystem tarball (`docker import`), with
    /// Dockerfile `changes` such as `CMD ["/pause"]`.
    async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        reference: &str,
        changes: &[String],
    ) -> Result<ImageInfo>;

    /// Creates a network and returns its id.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo>;

    /// One network by name or id (with its subnets), or [`RuntimeError::NotFound`].
    async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkInfo>;

    /// Removes a network by name or id.
    async fn remove_network(&self, name_or_id: &str) -> Result<()>;

    /// Networks matching the label filter.
    async fn list_networks(&self, filter: &LabelFilter) -> Result<Vec<NetworkInfo>>;

    /// Creates a volume; creating an existing one returns it unchanged.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeInfo>;

    /// One volume, or [`RuntimeError::NotFound`].
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo>;

    /// Removes a volume.
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()>;

    /// Volumes matching the label filter.
    async fn list_volumes(&self, filter: &LabelFilter) -> Result<Vec<VolumeInfo>>;
}

/// Splits an image reference into `(repository, tag_or_digest_suffix)`, defaulting the tag to
/// `latest`: `busybox` → (`busybox`, `latest`), `host:5000/a/b:1` → (`host:5000/a/b`, `1`),
/// `a@sha256:…` → (`a@sha256:…`, ``) (digest references carry no tag).
pub fn split_image_reference(reference: &str) -> (String, String) {
    if reference.contains('@') {
        return (reference.to_string(), String::new());
    }
    let last_slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (reference[..at].to_string(), reference[at + 1..].to_string())
        }
        None => (reference.to_string(), "latest".to_string()),
    }
}

/// Normalizes an image reference for comparison: adds `:latest` when there is no tag or digest.
pub fn normalize_image_reference(reference: &str) -> String {
    let (repo, tag) = split_image_reference(reference);
    if tag.is_empty() {
        repo
    } else {
        format!("{repo}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_reference_split() {
        assert_eq!(
            split_image_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_image_reference("host:5000/a/b:1.2"),
            ("host:5000/a/b".into(), "1.2".into())
        );
        assert_eq!(
            split_image_reference("host:5000/a/b"),
            ("host:5000/a/b".into(), "latest".into())
        );
        assert_eq!(
            split_image_reference("a/b@sha256:00"),
            ("a/b@sha256:00".into(), "".into())
        );
        assert_eq!(normalize_image_reference("busybox"), "busybox:latest");
    }

    #[test]
    fn label_filter_matches() {
        let mut labels = Labels::new();
        labels.insert("a".into(), "1".into());
        assert!(LabelFilter::any().matches(&labels));
        assert!(LabelFilter::any().with("a", "1").matches(&labels));
        assert!(LabelFilter::any().with_key("a").matches(&labels));
        assert!(!LabelFilter::any().with("a", "2").matches(&labels));
        assert!(!LabelFilter::any().with_key("b").matches(&labels));
        assert_eq!(
            LabelFilter::any()
                .with("a", "1")
                .with_key("b")
                .to_docker_filters(),
            vec!["a=1".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn ecs_reasons() {
        let e = RuntimeError::PullFailed {
            image: "x".into(),
            message: "no such host".into(),
        };
        assert_eq!(e.ecs_reason(), "CannotPullContainerError: no such host");
        let e = RuntimeError::StartFailed {
            id: "c".into(),
            message: "port is already allocated".into(),
        };
        assert_eq!(
            e.ecs_reason(),
            "CannotStartContainerError: port is already allocated"
        );
    }
}
