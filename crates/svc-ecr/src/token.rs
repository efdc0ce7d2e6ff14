//! Registry tokens: what GetAuthorizationToken hands out and `docker login` sends back as the
//! Basic-auth password of user `AWS`.
//!
//! A token is stateless: `<payload>.<mac>`, where the payload (base64url) names the access key
//! and the expiry, and the MAC is HMAC-SHA256 over it keyed with that access key's secret.
//! *Why stateless:* nothing to store or expire, it survives restarts and works on every replica
//! (the key cache is everywhere), and deleting the access key revokes its tokens at once. The
//! caller's rights are the key's role at the time of use (admin: push and pull; agent,
//! readonly: pull).

use crate::Ecr;
use base64::Engine;
use berth_auth::Role;
use hmac::{KeyInit, Mac};

/// How long a token from GetAuthorizationToken is valid (ECR: 12 hours).
pub const TOKEN_TTL_SECS: u64 = 12 * 3600;
/// How long a GetDownloadUrlForLayer URL is valid.
pub const DOWNLOAD_URL_TTL_SECS: u64 = 3600;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    /// Access key id.
    k: String,
    /// Expiry, epoch seconds.
    e: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &str, payload: &str) -> Option<HmacSha256> {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).ok()?;
    m.update(b"berth-registry-token-v1\n");
    m.update(payload.as_bytes());
    Some(m)
}

/// Mints a token for `access_key_id` valid for `ttl_secs`; returns it and its expiry.
pub fn issue(app: &Ecr, access_key_id: &str, ttl_secs: u64) -> Option<(String, u64)> {
    let (secret, _, session) = app.keys.lookup(access_key_id)?;
    // A temporary key's token ends when the key does.
    let exp = match session {
        Some(s) => (now() + ttl_secs).min(s.expires_at as u64),
        None => now() + ttl_secs,
    };
    let payload = serde_json::to_vec(&Payload {
        k: access_key_id.to_string(),
        e: exp,
    })
    .ok()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    let tag = mac(&secret, &payload)?.finalize().into_bytes();
    Some((format!("{payload}.{}", hex::encode(tag)), exp))
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the authorization token is malformed or its signature does not match")]
    Invalid,
    #[error("the authorization token has expired")]
    Expired,
}

/// Checks a token; returns the access key and its current role.
pub fn verify(app: &Ecr, token: &str) -> Result<(String, Role), TokenError> {
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let tag = hex::decode(tag).map_err(|_| TokenError::Invalid)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid)?;
    let p: Payload = serde_json::from_slice(&raw).map_err(|_| TokenError::Invalid)?;
    let (secret, role, session) = app.keys.lookup(&p.k).ok_or(TokenError::Invalid)?;
    mac(&secret, payload)
        .ok_or(TokenError::Invalid)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::Invalid)?;
    if now() >= p.e || session.is_some_and(|s| now() as f64 >= s.expires_at) {
        return Err(TokenError::Expired);
    }
    Ok((p.k, role))
}
