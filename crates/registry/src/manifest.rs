//! Image manifests and indexes: the four formats a registry serves, parsed into what the
//! registry needs (media type, referenced blobs, child manifests, size).

use crate::{Digest, RegistryError, Result};
use serde_json::Value;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Every manifest media type berth stores.
pub const MEDIA_TYPES: &[&str] = &[
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];
/// ECR's manifest size limit.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A content descriptor (`mediaType`, `digest`, `size`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What the registry keeps about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's media type (one of [`MEDIA_TYPES`]).
    pub media_type: String,
    /// The image config (image manifests only).
    pub config: Option<Descriptor>,
    /// Layers (image manifests only).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// OCI 1.1 `subject` (the manifest this one refers to), if any.
    pub subject: Option<Descriptor>,
    /// ECR's `artifactMediaType`: the OCI `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
}

impl Manifest {
    /// Is this an index / manifest list?
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// Blobs this manifest references (config and layers).
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }

    /// The size ECR reports for the image: the config and layers (for an index: the children's
    /// declared manifest sizes).
    pub fn image_size(&self) -> u64 {
        if self.is_index() {
            self.manifests.iter().map(|d| d.size).sum()
        } else {
            self.blobs().map(|d| d.size).sum()
        }
    }
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::ManifestInvalid(msg.into())
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor> {
    let o = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what} is not an object")))?;
    let media_type = match o.get("mediaType") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(_) => return Err(invalid(format!("{what}.mediaType is not a string"))),
    };
    let digest = o
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}.digest is missing")))?
        .parse::<Digest>()
        .map_err(|_| invalid(format!("{what}.digest is not a valid sha256 digest")))?;
    let size = o
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what}.size is missing or negative")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

fn descriptors(v: Option<&Value>, what: &str) -> Result<Vec<Descriptor>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("{what}[{i}]")))
            .collect(),
        Some(_) => Err(invalid(format!("{what} is not an array"))),
    }
}

/// Parses `bytes` as a manifest. `content_type` is the media type the client declared (the
/// `Content-Type` of a PUT, ECR's `imageManifestMediaType`), if any; the document's own
/// `mediaType` must agree with it.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    if o.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let declared = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| MEDIA_TYPES.contains(c));
    let inner = match o.get("mediaType") {
        Some(Value::String(s)) => Some(s.as_str()),
        None => None,
        Some(_) => return Err(invalid("mediaType is not a string")),
    };
    let media_type = match (inner, declared) {
        (Some(i), Some(d)) if i != d => {
            return Err(invalid(format!(
                "mediaType {i} does not match the declared {d}"
            )))
        }
        (Some(i), _) => i,
        (None, Some(d)) => d,
        // OCI manifests may omit mediaType: tell index from manifest by shape.
        (None, None) if o.contains_key("manifests") => OCI_INDEX,
        (None, None) if o.contains_key("config") => OCI_MANIFEST,
        (None, None) => return Err(invalid("cannot tell the manifest's media type")),
    };
    if !MEDIA_TYPES.contains(&media_type) {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type}"
        )));
    }
    let subject = match o.get("subject") {
        None | Some(Value::Null) => None,
        Some(s) => Some(descriptor(s, "subject")?),
    };
    let artifact_type = o
        .get("artifactType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let m = if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
        if o.contains_key("config") || o.contains_key("layers") {
            return Err(invalid("an index has no config or layers"));
        }
        Manifest {
            media_type: media_type.to_string(),
            config: None,
            layers: Vec::new(),
            manifests: descriptors(o.get("manifests"), "manifests")?,
            subject,
            artifact_type,
        }
    } else {
        if o.contains_key("manifests") {
            return Err(invalid("an image manifest has no manifests member"));
        }
        let config = descriptor(
            o.get("config")
                .ok_or_else(|| invalid("config is missing"))?,
            "config",
        )?;
        let layers = descriptors(o.get("layers"), "layers")?;
        if media_type == DOCKER_MANIFEST && layers.is_empty() {
            return Err(invalid("a Docker image manifest needs at least one layer"));
        }
        let artifact_type = artifact_type.or_else(|| Some(config.media_type.clone()));
        Manifest {
            media_type: media_type.to_string(),
            config: Some(config),
            layers,
            manifests: Vec::new(),
            subject,
            artifact_type,
        }
    };
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn docker_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":5,"digest":"{}"}}]}}"#,
            d('a'),
            d('b')
        );
        let p = parse(m.as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.media_type, DOCKER_MANIFEST);
        assert_eq!(p.blobs().count(), 2);
        assert_eq!(p.image_size(), 15);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.docker.container.image.v1+json")
        );
        assert!(parse(m.as_bytes(), Some(OCI_MANIFEST)).is_err());
    }

    #[test]
    fn oci_index_without_media_type() {
        let m = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":100,"digest":"{}"}}]}}"#,
            d('c')
        );
        let p = parse(m.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        assert!(p.is_index());
        assert_eq!(p.manifests.len(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","config":{}}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":1}}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":-1}}"#,
        ] {
            assert!(parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&s, None);
        }
    }
}
