//! Docker error → [`RuntimeError`] mapping. The engine's message is always kept verbatim.

use berth_runtime::{ObjectKind, RuntimeError};
use bollard::errors::Error as DockerError;

/// What the failing call was doing; decides which variant a Docker error becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    Pull(&'a str),
    InspectImage(&'a str),
    Create(&'a str),
    Start(&'a str),
    Container(&'a str),
    Network(&'a str),
    Volume(&'a str),
    Engine,
}

/// True if the error means the engine could not be reached at all.
fn transport(e: &DockerError) -> Option<String> {
    match e {
        DockerError::HyperLegacyError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::IOError { .. }
        | DockerError::SocketNotFoundError(_)
        | DockerError::UnsupportedURISchemeError { .. }
        | DockerError::RequestTimeoutError => Some(e.to_string()),
        _ => None,
    }
}

/// Maps a bollard error for operation `op`.
pub(crate) fn map(e: DockerError, op: Op<'_>) -> RuntimeError {
    if let Some(message) = transport(&e) {
        // A pull that cannot reach the engine is still an engine problem, not a registry one.
        return RuntimeError::EngineUnavailable { message };
    }
    let (status, message) = match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => (Some(status_code), message),
        DockerError::DockerStreamError { error } => (None, error),
        other => (None, other.to_string()),
    };
    match (op, status) {
        (Op::Pull(image), _) => RuntimeError::PullFailed {
            image: image.to_string(),
            message,
        },
        (Op::InspectImage(image), Some(404)) => RuntimeError::ImageNotFound {
            image: image.to_string(),
            message,
        },
        (Op::Create(image), Some(404)) if message.contains("No such image") => {
            RuntimeError::ImageNotFound {
                image: image.to_string(),
                message,
            }
        }
        (Op::Create(_), Some(409)) => RuntimeError::NameConflict {
            name: conflict_name(&message).unwrap_or_default(),
            message,
        },
        (Op::Create(_), _) => RuntimeError::CreateFailed { message },
        (Op::Start(id), Some(404)) if message.contains("No such container") => {
            RuntimeError::NotFound {
                kind: ObjectKind::Container,
                id: id.to_string(),
                message,
            }
        }
        (Op::Start(id), _) => RuntimeError::StartFailed {
            id: id.to_string(),
            message,
        },
        (Op::Container(id), Some(404)) => RuntimeError::NotFound {
            kind: ObjectKind::Container,
            id: id.to_string(),
            message,
        },
        (Op::Network(id), Some(404)) => RuntimeError::NotFound {
            kind: ObjectKind::Network,
            id: id.to_string(),
            message,
        },
        (Op::Volume(id), Some(404)) => RuntimeError::NotFound {
            kind: ObjectKind::Volume,
            id: id.to_string(),
            message,
        },
        (_, Some(409)) => RuntimeError::Conflict { message },
        _ => RuntimeError::Other { message },
    }
}

/// `Conflict. The container name "/x" is already in use …` → `x`.
fn conflict_name(message: &str) -> Option<String> {
    let start = message.find("name \"")? + 6;
    let rest = &message[start..];
    let end = rest.find('"')?;
    Some(rest[..end].trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        }
    }

    #[test]
    fn maps_by_operation() {
        let e = map(server(404, "No such image: x:latest"), Op::Create("x"));
        assert!(matches!(e, RuntimeError::ImageNotFound { .. }));
        assert_eq!(
            e.ecs_reason(),
            "CannotPullContainerError: No such image: x:latest"
        );

        let e = map(
            server(
                409,
                "Conflict. The container name \"/web\" is already in use by container \"abc\".",
            ),
            Op::Create("x"),
        );
        assert_eq!(
            e,
            RuntimeError::NameConflict {
                name: "web".into(),
                message:
                    "Conflict. The container name \"/web\" is already in use by container \"abc\"."
                        .into()
            }
        );

        let e = map(
            server(500, "driver failed programming external connectivity on endpoint a: Bind for 0.0.0.0:80 failed: port is already allocated"),
            Op::Start("c1"),
        );
        assert!(e
            .ecs_reason()
            .starts_with("CannotStartContainerError: driver failed"));

        let e = map(server(404, "No such container: c1"), Op::Container("c1"));
        assert!(e.is_not_found());

        let e = map(
            DockerError::DockerStreamError {
                error: "manifest unknown".into(),
            },
            Op::Pull("x"),
        );
        assert_eq!(e.ecs_reason(), "CannotPullContainerError: manifest unknown");

        let e = map(DockerError::RequestTimeoutError, Op::Engine);
        assert!(e.is_transient());
    }
}
