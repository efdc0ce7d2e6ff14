//! The store's error type.

use std::path::{Path, PathBuf};

/// Everything the log store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("The specified log group does not exist.")]
    GroupNotFound,
    #[error("The specified log stream does not exist.")]
    StreamNotFound,
    #[error("The specified log group already exists")]
    GroupExists,
    #[error("The specified log stream already exists")]
    StreamExists,
    /// A caller mistake (e.g. events out of order); the message is meant for the API client.
    #[error("{0}")]
    Invalid(String),
    /// A filter pattern that does not parse.
    #[error("Invalid filter pattern: {0}")]
    Pattern(String),
    #[error("log store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
