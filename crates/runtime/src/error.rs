//! The one error type every [`crate::ContainerRuntime`] returns.
//!
//! Variants are chosen so the agent can turn a failure into the `stoppedReason` / container `reason`
//! ECS shows (`CannotPullContainerError: …`, `CannotCreateContainerError: …`,
//! `CannotStartContainerError: …`). Every variant keeps the engine's own message verbatim.

use std::time::Duration;

/// What kind of engine object a [`RuntimeError::NotFound`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A network.
    Network,
    /// A volume.
    Volume,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Container => "container",
            ObjectKind::Image => "image",
            ObjectKind::Network => "network",
            ObjectKind::Volume => "volume",
        })
    }
}

/// A failure of a container-runtime operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not present locally (inspect / create) or the registry has no such image.
    #[error("image {image} not found: {message}")]
    ImageNotFound {
        /// The image reference as given.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// Pulling the image failed (registry unreachable, auth denied, timeout, bad manifest …).
    #[error("pull of {image} failed: {message}")]
    PullFailed {
        /// The image reference as given.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// The engine refused to create the container (bad spec, missing volume, …).
    #[error("create failed: {message}")]
    CreateFailed {
        /// The engine's message.
        message: String,
    },
    /// A container with the requested name already exists. The agent may adopt it instead.
    #[error("name conflict for {name}: {message}")]
    NameConflict {
        /// The requested container name.
        name: String,
        /// The engine's message.
        message: String,
    },
    /// The container exists but could not be started (port already allocated, bad entrypoint …).
    #[error("start of {id} failed: {message}")]
    StartFailed {
        /// The container id.
        id: String,
        /// The engine's message.
        message: String,
    },
    /// The object does not exist (any more).
    #[error("{kind} {id} not found: {message}")]
    NotFound {
        /// Which kind of object.
        kind: ObjectKind,
        /// The id or name that was looked up.
        id: String,
        /// The engine's message.
        message: String,
    },
    /// The operation conflicts with the object's state (network or volume in use, removing a
    /// running container without force, …).
    #[error("conflict: {message}")]
    Conflict {
        /// The engine's message.
        message: String,
    },
    /// The engine could not be reached (socket missing, connection refused, daemon down).
    #[error("container engine unavailable: {message}")]
    EngineUnavailable {
        /// The transport's message.
        message: String,
    },
    /// The engine did not answer in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// Which operation.
        operation: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// Anything else; the engine's message is kept.
    #[error("{message}")]
    Other {
        /// The engine's message.
        message: String,
    },
}

/// Result alias for runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    /// The text ECS shows as a container's `reason` / a task's `stoppedReason` for this failure,
    /// e.g. `CannotPullContainerError: pull access denied for foo`.
    pub fn ecs_reason(&self) -> String {
        match self {
            RuntimeError::ImageNotFound { message, .. }
            | RuntimeError::PullFailed { message, .. } => {
                format!("CannotPullContainerError: {message}")
            }
            RuntimeError::CreateFailed { message } | RuntimeError::NameConflict { message, .. } => {
                format!("CannotCreateContainerError: {message}")
            }
            RuntimeError::StartFailed { message, .. } => {
                format!("CannotStartContainerError: {message}")
            }
            RuntimeError::NotFound { kind, id, message } => {
                format!("CannotInspectContainerError: {kind} {id}: {message}")
            }
            RuntimeError::Timeout { operation, after } => {
                format!("DockerTimeoutError: {operation} timed out after {after:?}")
            }
            RuntimeError::EngineUnavailable { message } => {
                format!("DockerClientError: {message}")
            }
            RuntimeError::Conflict { message } | RuntimeError::Other { message } => {
                format!("DockerClientError: {message}")
            }
        }
    }

    /// True for [`RuntimeError::NotFound`] (any kind) and [`RuntimeError::ImageNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RuntimeError::NotFound { .. } | RuntimeError::ImageNotFound { .. }
        )
    }

    /// True when retrying the same call later may succeed (engine down, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RuntimeError::EngineUnavailable { .. } | RuntimeError::Timeout { .. }
        )
    }
}
