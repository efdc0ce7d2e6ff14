//! The error type: an ECS exception kind plus its message.

use std::fmt;

/// The ECS API exception a [`PlacementError`] maps to on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcsErrorKind {
    /// `InvalidParameterException`: a malformed constraint, strategy, expression or request.
    InvalidParameterException,
    /// `ClientException`: the request is well formed but cannot be served as asked.
    ClientException,
}

impl EcsErrorKind {
    /// The exception name exactly as ECS spells it in `__type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EcsErrorKind::InvalidParameterException => "InvalidParameterException",
            EcsErrorKind::ClientException => "ClientException",
        }
    }
}

impl fmt::Display for EcsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from validation, expression parsing or placement, carrying the ECS exception kind
/// the control plane should answer with and a human message in ECS's style.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PlacementError {
    /// Which ECS exception this is.
    pub kind: EcsErrorKind,
    /// The message to return to the caller.
    pub message: String,
}

impl PlacementError {
    /// An `InvalidParameterException` with `message`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self {
            kind: EcsErrorKind::InvalidParameterException,
            message: message.into(),
        }
    }

    /// A `ClientException` with `message`.
    pub fn client(message: impl Into<String>) -> Self {
        Self {
            kind: EcsErrorKind::ClientException,
            message: message.into(),
        }
    }
}
