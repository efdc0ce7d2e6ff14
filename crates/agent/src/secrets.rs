//! Task `secrets`: environment variables whose values the agent fetches from Secrets Manager or
//! SSM Parameter Store (the control plane serves both) before it creates the container, as
//! ECS's agent does with the task execution role; berth's agent uses its own key.
//!
//! `valueFrom` is, as in ECS:
//! - a Secrets Manager secret ARN (full, or without the random suffix), optionally followed by
//!   `:json-key:version-stage:version-id` (any part may be empty): the value of one key of a
//!   JSON secret, or a version other than AWSCURRENT;
//! - an SSM parameter ARN, or a parameter name.

use crate::control::{ControlPlane, ControlPlaneError};

/// Where task secrets are read from: the control plane's Secrets Manager and SSM.
#[derive(Clone)]
pub struct SecretStores(pub std::sync::Arc<dyn ControlPlane>);

impl std::fmt::Debug for SecretStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretStores")
    }
}

/// Where one secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Secrets Manager.
    SecretsManager {
        /// The secret's ARN (what GetSecretValue's `SecretId` gets).
        secret_id: String,
        /// Take this key of a JSON secret.
        json_key: Option<String>,
        /// `VersionStage`.
        version_stage: Option<String>,
        /// `VersionId`.
        version_id: Option<String>,
    },
    /// SSM Parameter Store (name or ARN).
    Ssm(String),
}

/// Reads a `valueFrom`.
pub fn source_of(value_from: &str) -> Source {
    let parts: Vec<&str> = value_from.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[2] == "secretsmanager" {
        let part = |i: usize| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .map(|p| p.to_string())
        };
        return Source::SecretsManager {
            secret_id: parts[..7].join(":"),
            json_key: part(7),
            version_stage: part(8),
            version_id: part(9),
        };
    }
    Source::Ssm(value_from.to_string())
}

/// Why a secret could not be had.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretError {
    /// Worth retrying (the control plane is unreachable or busy).
    pub transient: bool,
    /// The task's stoppedReason when it is not.
    pub reason: String,
}

const PREFIX: &str =
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";

fn transient(e: &ControlPlaneError) -> bool {
    matches!(e, ControlPlaneError::Unreachable(_))
        || matches!(e, ControlPlaneError::Rejected { status, code, .. } if *status >= 500 || code.contains("Throttl"))
}

fn describe(e: &ControlPlaneError) -> String {
    match e {
        ControlPlaneError::Rejected { code, message, .. } => format!("{code}: {message}"),
        other => other.to_string(),
    }
}

/// Fetches one secret's value.
pub async fn fetch(control: &dyn ControlPlane, value_from: &str) -> Result<String, SecretError> {
    match source_of(value_from) {
        Source::Ssm(name) => {
            let fail = |transient: bool, why: String| {
                SecretError {
                transient,
                reason: format!(
                    "{PREFIX}: unable to retrieve secrets from ssm: service call has been retried 1 time(s): {why}"
                ),
            }
            };
            match control.get_parameter(&name).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(fail(false, format!("invalid ssm parameters: {name}"))),
                Err(e) => Err(fail(transient(&e), describe(&e))),
            }
        }
        Source::SecretsManager {
            secret_id,
            json_key,
            version_stage,
            version_id,
        } => {
            let fail = |transient: bool, why: String| {
                SecretError {
                transient,
                reason: format!(
                    "{PREFIX}: unable to retrieve secret from asm: service call has been retried 1 time(s): {why}"
                ),
            }
            };
            let value = control
                .get_secret_value(
                    &secret_id,
                    version_stage.as_deref(),
                    version_id.as_deref(),
                )
                .await
                .map_err(|e| {
                    fail(
                        transient(&e),
                        format!(
                            "failed to fetch secret {secret_id} from secrets manager: {}",
                            describe(&e)
                        ),
                    )
                })?
                .ok_or_else(|| {
                    fail(
                        false,
                        format!("secret {secret_id} has no SecretString (binary secrets cannot be environment variables)"),
                    )
                })?;
            let Some(key) = json_key else {
                return Ok(value);
            };
            let doc: serde_json::Value = serde_json::from_str(&value).map_err(|_| {
                fail(
                    false,
                    format!("retrieved secret from Secrets Manager is not a JSON object, so it has no json key {key}"),
                )
            })?;
            match doc.get(&key) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(other.to_string()),
                None => Err(fail(
                    false,
                    format!("retrieved secret from Secrets Manager did not contain json key {key}"),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_from_forms() {
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf";
        assert_eq!(
            source_of(arn),
            Source::SecretsManager {
                secret_id: arn.into(),
                json_key: None,
                version_stage: None,
                version_id: None
            }
        );
        assert_eq!(
            source_of(&format!("{arn}:password::")),
            Source::SecretsManager {
                secret_id: arn.into(),
                json_key: Some("password".into()),
                version_stage: None,
                version_id: None
            }
        );
        assert_eq!(
            source_of(&format!("{arn}::AWSPREVIOUS:")),
            Source::SecretsManager {
                secret_id: arn.into(),
                json_key: None,
                version_stage: Some("AWSPREVIOUS".into()),
                version_id: None
            }
        );
        assert_eq!(source_of("/app/db"), Source::Ssm("/app/db".into()));
        let p = "arn:aws:ssm:us-east-1:000000000000:parameter/app/db";
        assert_eq!(source_of(p), Source::Ssm(p.into()));
    }
}
