//! Task `secrets` and `environmentFiles`: environment variables the agent fetches from the
//! control plane before it creates the container, as ECS's agent does with the task execution
//! role; berth's agent uses its own key.
//!
//! Environment files are S3 objects (`arn:aws:s3:::<bucket>/<key>`) in Docker's env-file form:
//! `NAME=VALUE` lines (the value verbatim, no quote handling), `#` comments and blank lines
//! skipped. A variable set by `environment` wins over the files, and the first file that sets a
//! variable wins over later ones; `secrets` win over both.
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
            let value = secret_string(
                control,
                &secret_id,
                version_stage.as_deref(),
                version_id.as_deref(),
            )
            .await?;
            let Some(key) = json_key else {
                return Ok(value);
            };
            let doc: serde_json::Value = serde_json::from_str(&value).map_err(|_| {
                asm_error(
                    false,
                    format!("retrieved secret from Secrets Manager is not a JSON object, so it has no json key {key}"),
                )
            })?;
            match doc.get(&key) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(other.to_string()),
                None => Err(asm_error(
                    false,
                    format!("retrieved secret from Secrets Manager did not contain json key {key}"),
                )),
            }
        }
    }
}

/// A Secrets Manager failure as the task's stoppedReason (ECS's words).
fn asm_error(transient: bool, why: String) -> SecretError {
    SecretError {
        transient,
        reason: format!(
            "{PREFIX}: unable to retrieve secret from asm: service call has been retried 1 time(s): {why}"
        ),
    }
}

/// A secret's `SecretString` (a binary secret can't be used by a task).
async fn secret_string(
    control: &dyn ControlPlane,
    secret_id: &str,
    version_stage: Option<&str>,
    version_id: Option<&str>,
) -> Result<String, SecretError> {
    control
        .get_secret_value(secret_id, version_stage, version_id)
        .await
        .map_err(|e| {
            asm_error(
                transient(&e),
                format!(
                    "failed to fetch secret {secret_id} from secrets manager: {}",
                    describe(&e)
                ),
            )
        })?
        .ok_or_else(|| {
            asm_error(
                false,
                format!("secret {secret_id} has no SecretString (binary secrets cannot be used by a task)"),
            )
        })
}

/// The registry credentials of a private image (`repositoryCredentials`): a Secrets Manager secret
/// (ARN, or partial ARN) whose value is `{"username": …, "password": …}`, as ECS expects.
pub async fn fetch_registry_auth(
    control: &dyn ControlPlane,
    secret: &str,
    image: &str,
) -> Result<berth_runtime::RegistryAuth, SecretError> {
    let value = secret_string(control, secret, None, None).await?;
    let doc: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
    let field = |k: &str| {
        doc.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(berth_runtime::RegistryAuth {
            username,
            password,
            server: crate::registry_auth::image_registry_host(image)
                .unwrap_or("https://index.docker.io/v1/")
                .to_string(),
        }),
        _ => Err(asm_error(
            false,
            format!("private repository credentials in secret {secret} are not a JSON object with username and password"),
        )),
    }
}

/// The (bucket, key) of an S3 object ARN.
pub fn s3_object(arn: &str) -> Option<(&str, &str)> {
    let arn = berth_core::Arn::parse(arn).filter(|a| a.service == "s3")?;
    arn.resource
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

/// The variables of an env file, in file order.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            (!k.is_empty() && !k.contains(char::is_whitespace))
                .then(|| (k.to_string(), v.trim_end_matches('\r').to_string()))
        })
        .collect()
}

/// Downloads one environment file and returns its variables.
pub async fn fetch_env_file(
    control: &dyn ControlPlane,
    arn: &str,
) -> Result<Vec<(String, String)>, SecretError> {
    let fail = |transient: bool, why: String| SecretError {
        transient,
        reason: format!("ResourceInitializationError: failed to download env files: {why}"),
    };
    let (bucket, key) =
        s3_object(arn).ok_or_else(|| fail(false, format!("{arn} is not an S3 object ARN")))?;
    let bytes = control.get_object(bucket, key).await.map_err(|e| {
        fail(
            transient(&e),
            format!(
                "unable to download env file with key '{key}' from bucket '{bucket}': {}",
                describe(&e)
            ),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        fail(
            false,
            format!("env file with key '{key}' from bucket '{bucket}' is not UTF-8 text"),
        )
    })?;
    Ok(parse_env_file(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files() {
        assert_eq!(
            s3_object("arn:aws:s3:::bucket/dir/app.env"),
            Some(("bucket", "dir/app.env"))
        );
        assert_eq!(s3_object("arn:aws:s3:::bucket"), None);
        assert_eq!(s3_object("arn:aws:ssm:::bucket/x"), None);
        let vars = parse_env_file("# c\n\nA=1\n  B = two \nC=\"q\"\r\nNOEQ\nD=x=y\nbad name=1\n");
        let want: Vec<(String, String)> =
            [("A", "1"), ("B ", " two "), ("C", "\"q\""), ("D", "x=y")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        // `B ` has a space in its name: skipped, as Docker refuses it.
        assert_eq!(
            vars,
            want.into_iter()
                .filter(|(k, _)| k != "B ")
                .collect::<Vec<_>>()
        );
    }

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
