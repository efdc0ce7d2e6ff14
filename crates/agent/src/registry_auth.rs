//! Credentials for pulls from berth's own image registry, the way ECS's agent gets ECR
//! credentials with the task execution role: when an image's registry is the control plane's
//! registry, the agent asks the control plane for an authorization token (ECR's
//! `GetAuthorizationToken`, signed with the agent key — agent tokens can pull, never push),
//! caches it until shortly before it expires, and hands it to the engine's pull as `AWS:<token>`.
//!
//! "Our registry" is the host in the token's `proxyEndpoint` (the control plane's registry host,
//! `--registry-host`) or the host of one of the agent's control-plane endpoints; loopback names
//! (`127.0.0.1`, `localhost`, `::1`) with the same port are the same registry. Images of any
//! other registry are pulled as before, without credentials.

use crate::now_epoch;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::RegistryAuth;

use crate::control::{ControlPlane, ControlPlaneError};

/// A decoded `GetAuthorizationToken` answer.
#[derive(Clone, PartialEq)]
pub struct AuthorizationToken {
    /// User name (`AWS`).
    pub username: String,
    /// The token (the Basic-auth password).
    pub password: String,
    /// `proxyEndpoint`, e.g. `http://127.0.0.1:7601`.
    pub proxy_endpoint: String,
    /// Expiry, epoch seconds.
    pub expires_at: f64,
}

impl std::fmt::Debug for AuthorizationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationToken")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("proxy_endpoint", &self.proxy_endpoint)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token is refreshed this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

/// The registry host of an image reference, when it names one (Docker's rule: the first path
/// component is a registry host if it contains `.` or `:` or is `localhost`); `None` for Docker
/// Hub short names such as `busybox` or `library/nginx:1`.
pub fn image_registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// `host[:port]` of an endpoint URL (`http://h:p/…` → `h:p`).
pub fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        if let Some((h, tail)) = rest.split_once(']') {
            return (h, tail.strip_prefix(':'));
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

fn is_loopback(h: &str) -> bool {
    h.eq_ignore_ascii_case("localhost") || h == "::1" || h == "0.0.0.0" || h.starts_with("127.")
}

/// Are two `host[:port]` names the same registry? Exact match (ASCII case-insensitive), or both
/// loopback names with the same port.
pub fn same_registry(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (ha, pa) = split_port(a);
    let (hb, pb) = split_port(b);
    pa == pb && is_loopback(ha) && is_loopback(hb)
}

/// Gets and caches registry credentials from the control plane.
pub struct RegistryCredentials {
    control: Arc<dyn ControlPlane>,
    endpoints: Vec<String>,
    cache: tokio::sync::Mutex<Option<AuthorizationToken>>,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    /// Credentials from `control`, whose API is at `endpoints`.
    pub fn new(control: Arc<dyn ControlPlane>, endpoints: &[String]) -> Self {
        Self {
            control,
            endpoints: endpoints.to_vec(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A current token: the cached one, or a new one from the control plane.
    async fn token(&self) -> Result<AuthorizationToken, ControlPlaneError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref() {
            if t.expires_at - REFRESH_MARGIN.as_secs_f64() > now_epoch() {
                return Ok(t.clone());
            }
        }
        let t = self.control.get_authorization_token().await?;
        tracing::debug!(proxy_endpoint = %t.proxy_endpoint, expires_at = t.expires_at, "registry token obtained");
        *cache = Some(t.clone());
        Ok(t)
    }

    /// The credentials to pull `image` with: `Ok(None)` for images of other registries; for
    /// images of berth's registry the control plane's token, or the ECS reason why none could be
    /// had (`CannotPullECRContainerError: …`).
    pub async fn for_image(&self, image: &str) -> Result<Option<RegistryAuth>, String> {
        let Some(host) = image_registry_host(image) else {
            return Ok(None);
        };
        let ours_by_endpoint = self
            .endpoints
            .iter()
            .any(|e| same_registry(endpoint_host(e), host));
        let token = match self.token().await {
            Ok(t) => t,
            Err(e) if ours_by_endpoint => {
                return Err(format!("CannotPullECRContainerError: {e}"));
            }
            // Not obviously ours and no token to compare with: pull as before.
            Err(e) => {
                tracing::debug!(%image, error = %e, "no registry token; pulling without credentials");
                return Ok(None);
            }
        };
        if !ours_by_endpoint && !same_registry(endpoint_host(&token.proxy_endpoint), host) {
            return Ok(None);
        }
        Ok(Some(RegistryAuth {
            username: token.username,
            password: token.password,
            server: host.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::FakeControlPlane;

    #[test]
    fn registry_hosts_of_references() {
        let cases = [
            ("busybox", None),
            ("busybox:1", None),
            ("library/nginx:1", None),
            ("127.0.0.1:7601/web:v1", Some("127.0.0.1:7601")),
            ("localhost/web", Some("localhost")),
            ("registry.example/a/b@sha256:00", Some("registry.example")),
            ("ghcr.io/o/r:1", Some("ghcr.io")),
        ];
        for (image, want) in cases {
            assert_eq!(image_registry_host(image), want, "{image}");
        }
    }

    #[test]
    fn registry_equality() {
        let cases = [
            ("127.0.0.1:7601", "127.0.0.1:7601", true),
            ("127.0.0.1:7601", "localhost:7601", true),
            ("[::1]:7601", "localhost:7601", true),
            ("0.0.0.0:7601", "127.0.0.1:7601", true),
            ("127.0.0.1:7601", "127.0.0.1:7602", false),
            ("localhost:7601", "localhost", false),
            ("Reg.Example:443", "reg.example:443", true),
            ("reg.example:7601", "127.0.0.1:7601", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_registry(a, b), want, "{a} vs {b}");
        }
        assert_eq!(endpoint_host("http://127.0.0.1:7601"), "127.0.0.1:7601");
        assert_eq!(endpoint_host("https://h.example/x"), "h.example");
    }

    fn creds(fake: &Arc<FakeControlPlane>, endpoint: &str) -> RegistryCredentials {
        RegistryCredentials::new(fake.clone(), &[endpoint.to_string()])
    }

    #[tokio::test]
    async fn our_images_get_a_cached_token_others_none() {
        let fake = Arc::new(FakeControlPlane::new());
        fake.set_registry_token(Some(AuthorizationToken {
            username: "AWS".into(),
            password: "tok".into(),
            proxy_endpoint: "http://registry.example:5000".into(),
            expires_at: now_epoch() + 12.0 * 3600.0,
        }));
        let c = creds(&fake, "http://127.0.0.1:7601");
        assert_eq!(c.for_image("busybox:latest").await, Ok(None));
        assert_eq!(fake.token_requests(), 0, "Docker Hub names never ask");
        let a = c.for_image("localhost:7601/web:v1").await.unwrap().unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str(), a.server.as_str()),
            ("AWS", "tok", "localhost:7601")
        );
        let a = c
            .for_image("registry.example:5000/web")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.server, "registry.example:5000");
        assert_eq!(c.for_image("ghcr.io/o/r:1").await, Ok(None));
        assert_eq!(fake.token_requests(), 1, "the token is cached");
    }

    #[tokio::test]
    async fn a_token_near_expiry_is_renewed() {
        let fake = Arc::new(FakeControlPlane::new());
        fake.set_registry_token(Some(AuthorizationToken {
            username: "AWS".into(),
            password: "old".into(),
            proxy_endpoint: "http://127.0.0.1:7601".into(),
            expires_at: now_epoch() + 60.0,
        }));
        let c = creds(&fake, "http://127.0.0.1:7601");
        c.for_image("127.0.0.1:7601/a").await.unwrap();
        c.for_image("127.0.0.1:7601/a").await.unwrap();
        assert_eq!(
            fake.token_requests(),
            2,
            "inside the refresh margin: asked again"
        );
    }

    #[tokio::test]
    async fn no_token_for_our_registry_is_an_ecr_pull_error() {
        let fake = Arc::new(FakeControlPlane::new());
        fake.set_registry_token(None);
        let c = creds(&fake, "http://127.0.0.1:7601");
        let e = c.for_image("127.0.0.1:7601/a:1").await.unwrap_err();
        assert!(e.starts_with("CannotPullECRContainerError: "), "{e}");
        // Another registry: pulled as before.
        assert_eq!(c.for_image("ghcr.io/o/r:1").await, Ok(None));
    }
}
