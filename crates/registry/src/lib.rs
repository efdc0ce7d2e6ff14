//! berth-registry: the storage side of berth's ECR-compatible image registry.
//!
//! - [`Digest`]: `sha256:<64 hex>` content addresses, and the streaming hasher.
//! - [`names`]: repository-name and tag rules (ECR's, which are the OCI distribution spec's).
//! - [`manifest`]: parsing and checking image manifests and indexes (Docker schema 2, OCI image
//!   manifest, manifest list, OCI index) into what the registry must know about them.
//! - [`BlobStore`]: content-addressed blobs on disk (`<dir>/blobs/sha256/<ab>/<hex>`), written
//!   only through upload sessions (`<dir>/uploads/<id>/`) that stream to a temporary file,
//!   hash as they go, fsync, verify the digest and rename into place: a blob is visible complete
//!   or not at all. Garbage collection removes blobs outside a caller-given keep set.
//!
//! Metadata (repositories, images, tags, which repository may see which blob) is not here: the
//! control plane keeps it in its `StateStore`. This crate knows nothing of HTTP.

mod blobs;
mod digest;
pub mod lifecycle;
pub mod manifest;
pub mod names;

pub use blobs::{BlobStore, GcReport, UploadStatus};
pub use digest::{Digest, Hasher};

use std::path::PathBuf;

/// What can go wrong in the registry's storage layer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not of the form `algorithm:hex` (or the hex has the wrong length).
    #[error("invalid digest {0:?}")]
    DigestInvalid(String),
    /// A well-formed digest with an algorithm berth does not store (only sha256).
    #[error("unsupported digest algorithm in {0:?}: only sha256 is supported")]
    UnsupportedAlgorithm(String),
    /// The content does not hash to the digest the client named.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// No such blob.
    #[error("blob {0} is not known")]
    BlobUnknown(String),
    /// No such upload session (or it belongs to another repository).
    #[error("upload {0} is not known")]
    UploadUnknown(String),
    /// A chunk that does not start where the upload stands.
    #[error("chunk starts at byte {start}, but the upload is at byte {offset}")]
    RangeInvalid { offset: u64, start: u64 },
    /// A declared length that does not match the content.
    #[error("size mismatch: declared {declared} bytes, received {actual}")]
    SizeInvalid { declared: u64, actual: u64 },
    /// A manifest that does not parse or breaks the format's rules.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The client's request body failed while streaming.
    #[error("request body interrupted")]
    Body(#[source] std::io::Error),
    /// The disk failed us.
    #[error("i/o error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
