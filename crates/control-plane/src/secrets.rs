//! The secret stores ECS tasks read their `secrets` from, on the same endpoint:
//! AWS Secrets Manager (`secretsmanager.<Operation>`, signing name `secretsmanager`) and SSM
//! Parameter Store (`AmazonSSM.<Operation>`, signing name `ssm`).
//!
//! Secrets Manager: CreateSecret, GetSecretValue, PutSecretValue, UpdateSecret, DescribeSecret,
//! ListSecrets, DeleteSecret (recovery window or forced), RestoreSecret — with versions and the
//! AWSCURRENT / AWSPREVIOUS staging labels. Parameter Store: PutParameter, GetParameter,
//! GetParameters, GetParametersByPath, DeleteParameter, DeleteParameters — String, StringList and
//! SecureString, versions and `name:version` selectors.
//!
//! There is no KMS: values are kept in the state store as given (protect the data dir), and
//! a SecureString read without `WithDecryption` comes back base64-encoded in place of AWS's
//! ciphertext. Only `admin` keys may write; `readonly` keys may describe and list but not read
//! values; `agent` keys may read values (GetSecretValue, GetParameters) to inject task secrets.

use crate::app::Ctx;
use crate::error::ApiError;
use crate::repo::{to_bytes, Versioned, MAX_ATTEMPTS};
use crate::wire::{encode, now_epoch};
use berth_store::{Compare, Txn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `X-Amz-Target` prefix of Secrets Manager.
pub const SECRETS_MANAGER_PREFIX: &str = "secretsmanager";
/// `X-Amz-Target` prefix of SSM.
pub const SSM_PREFIX: &str = "AmazonSSM";

const SECRETS: &str = "secretsmanager/secrets/";
const PARAMETERS: &str = "ssm/parameters/";
/// Versions kept per secret (AWS keeps about 100; older unlabelled ones are dropped).
const MAX_SECRET_VERSIONS: usize = 100;
/// Versions kept per parameter (as Parameter Store).
const MAX_PARAMETER_VERSIONS: usize = 100;

fn secret_key(name: &str) -> String {
    format!("{SECRETS}{name}")
}

fn parameter_key(name: &str) -> String {
    format!("{PARAMETERS}{name}")
}

// ---------------------------------------------------------------------------------------------
// Storage records

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretRecord {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    pub created_at: f64,
    pub last_changed_at: f64,
    /// Set while scheduled for deletion.
    #[serde(default)]
    pub deleted_at: Option<f64>,
    #[serde(default)]
    pub deletion_date: Option<f64>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Oldest first.
    #[serde(default)]
    pub versions: Vec<SecretVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretVersion {
    pub id: String,
    #[serde(default)]
    pub string: Option<String>,
    /// Base64, as on the wire.
    #[serde(default)]
    pub binary: Option<String>,
    #[serde(default)]
    pub stages: Vec<String>,
    pub created_at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParameterRecord {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Oldest first; the last is the current one.
    pub versions: Vec<ParameterVersion>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Standard or Advanced (the last PutParameter's).
    #[serde(default)]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParameterVersion {
    pub version: i64,
    pub type_: String,
    pub value: String,
    pub data_type: String,
    pub modified_at: f64,
    pub modified_by: String,
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (PascalCase members, as both services use)

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireTag {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecretIn {
    name: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    tags: Option<Vec<WireTag>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdIn {
    secret_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValueIn {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    version_stages: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateSecretIn {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSecretIn {
    secret_id: Option<String>,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretsIn {
    include_planned_deletion: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Option<Vec<SecretFilter>>,
    sort_order: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretFilter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutParameterIn {
    name: Option<String>,
    description: Option<String>,
    value: Option<String>,
    #[serde(rename = "Type")]
    type_: Option<String>,
    overwrite: Option<bool>,
    tags: Option<Vec<WireTag>>,
    tier: Option<String>,
    data_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterIn {
    name: Option<String>,
    with_decryption: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamesIn {
    names: Option<Vec<String>>,
    with_decryption: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ByPathIn {
    path: Option<String>,
    recursive: Option<bool>,
    with_decryption: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
    parameter_filters: Option<Vec<serde_json::Value>>,
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("Could not parse the request body: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Reads `key`, applies `f` to the current record (None when absent), and commits what it
/// returns (`Some` = put, `None` = delete) if nobody wrote the key meanwhile; retries otherwise.
/// `f` also returns the answer.
async fn modify<T, R>(
    ctx: &Ctx,
    key: &str,
    mut f: impl FnMut(Option<T>) -> Result<(Option<T>, R), ApiError>,
) -> Result<R, ApiError>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    for _ in 0..MAX_ATTEMPTS {
        let cur = ctx.app.repo.get::<T>(key).await?;
        let revision = cur.as_ref().map_or(0, |c| c.revision);
        let (next, out) = f(cur.map(|c| c.value))?;
        let guard = Compare::ModRevision {
            key: key.to_string(),
            revision,
        };
        let txn = match &next {
            Some(v) => Txn::new().when(guard).put(key.to_string(), to_bytes(v)),
            None => Txn::new().when(guard).delete(key.to_string()),
        };
        if ctx.app.repo.commit(txn).await?.is_some() {
            return Ok(out);
        }
    }
    Err(crate::repo::contention())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

fn tags_of(tags: Option<Vec<WireTag>>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for t in tags.unwrap_or_default() {
        let key = t
            .key
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| ApiError::invalid_parameter("Tag keys must be 1-128 characters."))?;
        out.push((key, t.value.unwrap_or_default()));
    }
    if out.len() > 50 {
        return Err(ApiError::invalid_parameter(
            "You can attach at most 50 tags.",
        ));
    }
    Ok(out)
}

fn wire_tags(tags: &[(String, String)]) -> Vec<WireTag> {
    tags.iter()
        .map(|(k, v)| WireTag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// Decodes a `NextToken` (the ECS handlers' opaque form, `ecs::encode_token`), with the
/// service's own error code for a bad one.
fn page_after(token: Option<&str>, code: &'static str) -> Result<Option<String>, ApiError> {
    crate::ecs::decode_token(token).map_err(|_| ApiError::new(code, "The NextToken is not valid."))
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager

fn sm_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameterException", message)
}

fn sm_not_found() -> ApiError {
    ApiError::new(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}

fn marked_for_deletion() -> ApiError {
    ApiError::new(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

/// Secret names: 1–512 of ASCII letters, digits and `/_+=.@-`.
fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// The stored name a `SecretId` (a name, a full ARN, or an ARN without the random suffix)
/// refers to, if it refers to one.
async fn resolve_secret(ctx: &Ctx, id: &str) -> Result<Option<SecretRecord>, ApiError> {
    if !id.starts_with("arn:") {
        return Ok(ctx
            .app
            .repo
            .get::<SecretRecord>(&secret_key(id))
            .await?
            .map(|v| v.value));
    }
    let Some(rest) = berth_core::Arn::parse(id)
        .filter(|a| a.service == "secretsmanager")
        .and_then(|a| a.resource.strip_prefix("secret:"))
    else {
        return Ok(None);
    };
    // A full ARN ends in `-XXXXXX` after the name: try that reading first, so a secret whose
    // name happens to end like a suffix can't stand in for another one.
    if let Some((name, _)) = rest.rsplit_once('-') {
        if let Some(s) = ctx.app.repo.get::<SecretRecord>(&secret_key(name)).await? {
            if s.value.arn == id {
                return Ok(Some(s.value));
            }
        }
    }
    // A partial ARN is the full one without its suffix.
    if let Some(s) = ctx.app.repo.get::<SecretRecord>(&secret_key(rest)).await? {
        let arn = &s.value.arn;
        if arn == id || (arn.len() == id.len() + 7 && arn.starts_with(id)) {
            return Ok(Some(s.value));
        }
    }
    Ok(None)
}

fn secret_id(id: Option<String>) -> Result<String, ApiError> {
    id.filter(|s| !s.is_empty())
        .ok_or_else(|| sm_invalid("You must provide a value for the SecretId parameter."))
}

/// Validates a new value: exactly one of string and binary, within the size limit.
fn new_value(
    string: Option<String>,
    binary: Option<String>,
) -> Result<Option<(Option<String>, Option<String>)>, ApiError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(sm_invalid(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (None, None) => Ok(None),
        (s, b) => {
            let len = s.as_ref().map_or(0, String::len) + b.as_ref().map_or(0, String::len);
            if len > 65_536 {
                return Err(sm_invalid(
                    "The secret value must be at most 65,536 bytes.",
                ));
            }
            if let Some(b) = &b {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| sm_invalid("SecretBinary must be base64-encoded."))?;
            }
            Ok(Some((s, b)))
        }
    }
}

/// Adds a version to `s` (or finds the same one again, for a repeated ClientRequestToken) and
/// moves `stages` onto it; the version that loses AWSCURRENT gets AWSPREVIOUS.
fn add_version(
    s: &mut SecretRecord,
    token: Option<String>,
    value: (Option<String>, Option<String>),
    stages: Vec<String>,
    now: f64,
) -> Result<(String, Vec<String>), ApiError> {
    let id = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if !(32..=64).contains(&id.len()) {
        return Err(sm_invalid(
            "ClientRequestToken must be 32-64 characters long.",
        ));
    }
    if let Some(v) = s.versions.iter().find(|v| v.id == id) {
        return if (v.string.clone(), v.binary.clone()) == value {
            Ok((id, v.stages.clone()))
        } else {
            Err(ApiError::new(
                "ResourceExistsException",
                format!("You can't modify an existing version, you can only create a new version. VersionId: {id}"),
            ))
        };
    }
    let previous_current = s
        .versions
        .iter()
        .find(|v| v.stages.iter().any(|st| st == "AWSCURRENT"))
        .map(|v| v.id.clone());
    for v in s.versions.iter_mut() {
        v.stages.retain(|st| !stages.contains(st));
    }
    if stages.iter().any(|st| st == "AWSCURRENT") {
        if let Some(prev) = previous_current {
            for v in s.versions.iter_mut() {
                v.stages.retain(|st| st != "AWSPREVIOUS");
                if v.id == prev {
                    v.stages.push("AWSPREVIOUS".into());
                }
            }
        }
    }
    s.versions.push(SecretVersion {
        id: id.clone(),
        string: value.0,
        binary: value.1,
        stages: stages.clone(),
        created_at: now,
    });
    while s.versions.len() > MAX_SECRET_VERSIONS {
        match s.versions.iter().position(|v| v.stages.is_empty()) {
            Some(i) => {
                s.versions.remove(i);
            }
            None => break,
        }
    }
    s.last_changed_at = now;
    Ok((id, stages))
}

async fn create_secret(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: CreateSecretIn = parse(body)?;
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| sm_invalid("You must provide a value for the Name parameter."))?;
    if !valid_secret_name(&name) {
        return Err(sm_invalid(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ));
    }
    let value = new_value(req.secret_string, req.secret_binary)?;
    let tags = tags_of(req.tags)?;
    let scope = &ctx.app.scope;
    let arn = format!(
        "arn:aws:secretsmanager:{}:{}:secret:{name}-{}",
        scope.region,
        scope.account,
        random_suffix()
    );
    let now = now_epoch();
    let token = req.client_request_token;
    let (description, kms) = (req.description, req.kms_key_id);
    let out = modify::<SecretRecord, _>(ctx, &secret_key(&name), |cur| {
        if let Some(cur) = cur {
            return Err(if cur.deleted_at.is_some() {
                ApiError::new(
                    "InvalidRequestException",
                    "You can't create this secret because a secret with this name is already scheduled for deletion.",
                )
            } else {
                ApiError::new(
                    "ResourceExistsException",
                    format!("The operation failed because the secret {name} already exists."),
                )
            });
        }
        let mut s = SecretRecord {
            name: name.clone(),
            arn: arn.clone(),
            description: description.clone(),
            kms_key_id: kms.clone(),
            created_at: now,
            last_changed_at: now,
            deleted_at: None,
            deletion_date: None,
            tags: tags.clone(),
            versions: Vec::new(),
        };
        let version = match value.clone() {
            Some(v) => Some(add_version(&mut s, token.clone(), v, vec!["AWSCURRENT".into()], now)?.0),
            None => None,
        };
        Ok((Some(s), version))
    })
    .await?;
    tracing::info!(secret = %name, "secret created");
    let mut resp = serde_json::json!({"ARN": arn, "Name": name});
    if let Some(v) = out {
        resp["VersionId"] = v.into();
    }
    Ok(resp)
}

/// The version a GetSecretValue asks for.
fn pick_version<'a>(
    s: &'a SecretRecord,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<&'a SecretVersion, ApiError> {
    let found = match (version_id, stage) {
        (Some(id), st) => s
            .versions
            .iter()
            .find(|v| v.id == id && st.is_none_or(|st| v.stages.iter().any(|x| x == st))),
        (None, st) => {
            let st = st.unwrap_or("AWSCURRENT");
            s.versions.iter().find(|v| v.stages.iter().any(|x| x == st))
        }
    };
    found.ok_or_else(|| {
        ApiError::new(
            "ResourceNotFoundException",
            match (version_id, stage) {
                (Some(id), _) => format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ),
                (None, st) => format!(
                    "Secrets Manager can't find the specified secret value for staging label: {}",
                    st.unwrap_or("AWSCURRENT")
                ),
            },
        )
    })
}

async fn get_secret_value(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: SecretIdIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let s = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    if s.deleted_at.is_some() {
        return Err(marked_for_deletion());
    }
    let v = pick_version(&s, req.version_id.as_deref(), req.version_stage.as_deref())?;
    let mut resp = serde_json::json!({
        "ARN": s.arn,
        "Name": s.name,
        "VersionId": v.id,
        "VersionStages": v.stages,
        "CreatedDate": v.created_at,
    });
    if let Some(x) = &v.string {
        resp["SecretString"] = x.clone().into();
    }
    if let Some(x) = &v.binary {
        resp["SecretBinary"] = x.clone().into();
    }
    Ok(resp)
}

/// PutSecretValue and UpdateSecret's value change.
async fn store_value(
    ctx: &Ctx,
    id: &str,
    token: Option<String>,
    value: Option<(Option<String>, Option<String>)>,
    stages: Vec<String>,
    meta: Option<(Option<String>, Option<String>)>,
) -> Result<(SecretRecord, Option<(String, Vec<String>)>), ApiError> {
    let found = resolve_secret(ctx, id).await?.ok_or_else(sm_not_found)?;
    let now = now_epoch();
    modify::<SecretRecord, _>(ctx, &secret_key(&found.name), |cur| {
        let mut s = cur
            .filter(|c| c.arn == found.arn)
            .ok_or_else(sm_not_found)?;
        if s.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        if let Some((description, kms)) = meta.clone() {
            if description.is_some() {
                s.description = description;
            }
            if kms.is_some() {
                s.kms_key_id = kms;
            }
            s.last_changed_at = now;
        }
        let added = match value.clone() {
            Some(v) => Some(add_version(&mut s, token.clone(), v, stages.clone(), now)?),
            None => None,
        };
        Ok((Some(s.clone()), (s, added)))
    })
    .await
}

async fn put_secret_value(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: PutSecretValueIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let value = new_value(req.secret_string, req.secret_binary)?
        .ok_or_else(|| sm_invalid("You must provide either SecretString or SecretBinary."))?;
    let stages = req
        .version_stages
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["AWSCURRENT".into()]);
    let (s, added) = store_value(
        ctx,
        &id,
        req.client_request_token,
        Some(value),
        stages,
        None,
    )
    .await?;
    let (version, stages) = added.unwrap_or_default();
    Ok(
        serde_json::json!({"ARN": s.arn, "Name": s.name, "VersionId": version, "VersionStages": stages}),
    )
}

async fn update_secret(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: UpdateSecretIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let value = new_value(req.secret_string, req.secret_binary)?;
    let (s, added) = store_value(
        ctx,
        &id,
        req.client_request_token,
        value,
        vec!["AWSCURRENT".into()],
        Some((req.description, req.kms_key_id)),
    )
    .await?;
    let mut resp = serde_json::json!({"ARN": s.arn, "Name": s.name});
    if let Some((v, _)) = added {
        resp["VersionId"] = v.into();
    }
    Ok(resp)
}

fn describe(s: &SecretRecord, list_entry: bool) -> serde_json::Value {
    let stages: BTreeMap<&str, &Vec<String>> = s
        .versions
        .iter()
        .filter(|v| !v.stages.is_empty())
        .map(|v| (v.id.as_str(), &v.stages))
        .collect();
    let mut out = serde_json::json!({
        "ARN": s.arn,
        "Name": s.name,
        "LastChangedDate": s.last_changed_at,
        "CreatedDate": s.created_at,
        "RotationEnabled": false,
        "Tags": wire_tags(&s.tags),
    });
    out[if list_entry {
        "SecretVersionsToStages"
    } else {
        "VersionIdsToStages"
    }] = serde_json::json!(stages);
    if let Some(d) = &s.description {
        out["Description"] = d.clone().into();
    }
    if let Some(k) = &s.kms_key_id {
        out["KmsKeyId"] = k.clone().into();
    }
    if let Some(d) = s.deleted_at {
        out["DeletedDate"] = d.into();
    }
    out
}

async fn describe_secret(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: SecretIdIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let s = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    Ok(describe(&s, false))
}

fn filter_matches(s: &SecretRecord, key: &str, value: &str) -> bool {
    let (negate, value) = match value.strip_prefix('!') {
        Some(v) => (true, v),
        None => (false, value),
    };
    let prefix = |text: &str| text.to_lowercase().starts_with(&value.to_lowercase());
    let hit = match key {
        "name" => prefix(&s.name),
        "description" => s.description.as_deref().is_some_and(prefix),
        "tag-key" => s.tags.iter().any(|(k, _)| prefix(k)),
        "tag-value" => s.tags.iter().any(|(_, v)| prefix(v)),
        _ /* all */ => {
            prefix(&s.name)
                || s.description.as_deref().is_some_and(prefix)
                || s.tags.iter().any(|(k, v)| prefix(k) || prefix(v))
        }
    };
    hit != negate
}

async fn list_secrets(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: ListSecretsIn = parse(body)?;
    let max = req.max_results.unwrap_or(100);
    if !(1..=100).contains(&max) {
        return Err(sm_invalid("MaxResults must be between 1 and 100."));
    }
    let mut filters = Vec::new();
    for f in req.filters.unwrap_or_default() {
        let key = f.key.unwrap_or_default();
        if !["description", "name", "tag-key", "tag-value", "all"].contains(&key.as_str()) {
            return Err(sm_invalid(format!(
                "Invalid filter key: {key}. Valid keys: description, name, tag-key, tag-value, all."
            )));
        }
        filters.push((key, f.values.unwrap_or_default()));
    }
    // The token is the (creation time, name) of the last secret returned.
    let after = match &req.next_token {
        Some(t) => {
            let raw = page_after(Some(t), "InvalidNextTokenException")?.unwrap_or_default();
            let (at, name) = raw
                .split_once('|')
                .and_then(|(a, n)| Some((a.parse::<f64>().ok()?, n.to_string())))
                .ok_or_else(|| {
                    ApiError::new("InvalidNextTokenException", "The NextToken is not valid.")
                })?;
            Some((at, name))
        }
        None => None,
    };
    let include_deleted = req.include_planned_deletion.unwrap_or(false);
    let mut all: Vec<Arc<SecretRecord>> = ctx
        .app
        .repo
        .list_arc::<SecretRecord>(SECRETS)
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| include_deleted || s.deleted_at.is_none())
        .filter(|s| {
            filters
                .iter()
                .all(|(k, vals)| vals.iter().any(|v| filter_matches(s, k, v)))
        })
        .collect();
    // Newest first by default (AWS sorts by creation date), ties by name.
    let asc = req.sort_order.as_deref() == Some("asc");
    let order = |a: (f64, &str), b: (f64, &str)| {
        let by_time = if asc {
            a.0.total_cmp(&b.0)
        } else {
            b.0.total_cmp(&a.0)
        };
        by_time.then(a.1.cmp(b.1))
    };
    all.sort_by(|a, b| order((a.created_at, &a.name), (b.created_at, &b.name)));
    // Resume after the token's place in the order, even if that secret is gone.
    let start = match &after {
        Some((at, name)) => all
            .iter()
            .position(|s| order((s.created_at, &s.name), (*at, name)).is_gt())
            .unwrap_or(all.len()),
        None => 0,
    };
    let page: Vec<_> = all.iter().skip(start).take(max as usize).collect();
    let mut resp = serde_json::json!({
        "SecretList": page.iter().map(|s| describe(s, true)).collect::<Vec<_>>(),
    });
    if start + page.len() < all.len() {
        if let Some(last) = page.last() {
            resp["NextToken"] =
                crate::ecs::encode_token(&format!("{}|{}", last.created_at, last.name)).into();
        }
    }
    Ok(resp)
}

async fn delete_secret(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: DeleteSecretIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let force = req.force_delete_without_recovery.unwrap_or(false);
    if force && req.recovery_window_in_days.is_some() {
        return Err(sm_invalid(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    let days = req.recovery_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        return Err(sm_invalid(
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        ));
    }
    let found = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    let now = now_epoch();
    let deletion = if force {
        now
    } else {
        now + days as f64 * 86_400.0
    };
    let s = modify::<SecretRecord, _>(ctx, &secret_key(&found.name), |cur| {
        let mut s = cur
            .filter(|c| c.arn == found.arn)
            .ok_or_else(sm_not_found)?;
        if force {
            return Ok((None, s));
        }
        if s.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        s.deleted_at = Some(now);
        s.deletion_date = Some(deletion);
        Ok((Some(s.clone()), s))
    })
    .await?;
    tracing::info!(secret = %s.name, force, "secret deleted");
    Ok(serde_json::json!({"ARN": s.arn, "Name": s.name, "DeletionDate": deletion}))
}

async fn restore_secret(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: SecretIdIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let found = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    let s = modify::<SecretRecord, _>(ctx, &secret_key(&found.name), |cur| {
        let mut s = cur
            .filter(|c| c.arn == found.arn)
            .ok_or_else(sm_not_found)?;
        s.deleted_at = None;
        s.deletion_date = None;
        Ok((Some(s.clone()), s))
    })
    .await?;
    Ok(serde_json::json!({"ARN": s.arn, "Name": s.name}))
}

/// GetResourcePolicy: berth keeps no resource policies (its key roles decide access), so there is
/// never one to return.
async fn get_resource_policy(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: SecretIdIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let s = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    Ok(serde_json::json!({"ARN": s.arn, "Name": s.name}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagSecretIn {
    secret_id: Option<String>,
    tags: Option<Vec<WireTag>>,
    tag_keys: Option<Vec<String>>,
}

/// TagResource (add or replace tags) and UntagResource (remove keys).
async fn tag_secret(ctx: &Ctx, body: &[u8], add: bool) -> Result<serde_json::Value, ApiError> {
    let req: TagSecretIn = parse(body)?;
    let id = secret_id(req.secret_id)?;
    let found = resolve_secret(ctx, &id).await?.ok_or_else(sm_not_found)?;
    let new_tags = tags_of(req.tags)?;
    let remove = req.tag_keys.unwrap_or_default();
    modify::<SecretRecord, _>(ctx, &secret_key(&found.name), |cur| {
        let mut s = cur
            .filter(|c| c.arn == found.arn)
            .ok_or_else(sm_not_found)?;
        if add {
            for (k, v) in &new_tags {
                match s.tags.iter_mut().find(|(tk, _)| tk == k) {
                    Some(t) => t.1 = v.clone(),
                    None => s.tags.push((k.clone(), v.clone())),
                }
            }
            if s.tags.len() > 50 {
                return Err(sm_invalid("You can attach at most 50 tags."));
            }
        } else {
            s.tags.retain(|(k, _)| !remove.contains(k));
        }
        Ok((Some(s), ()))
    })
    .await?;
    Ok(serde_json::json!({}))
}

/// Deletes secrets whose recovery window has passed (leader maintenance).
pub async fn purge_deleted_secrets(ctx: &Ctx) -> Result<usize, ApiError> {
    let now = now_epoch();
    let due = ctx
        .app
        .repo
        .scan(SECRETS, |s: Versioned<Arc<SecretRecord>>| {
            s.value
                .deletion_date
                .is_some_and(|d| d <= now)
                .then(|| (s.key.clone(), s.revision))
        })
        .await?;
    Ok(ctx.app.repo.delete_unchanged(due).await?.len())
}

/// Runs one Secrets Manager operation.
pub async fn dispatch_secrets_manager(
    ctx: &Ctx,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let out = match op {
        "CreateSecret" => create_secret(ctx, body).await?,
        "GetSecretValue" => get_secret_value(ctx, body).await?,
        "PutSecretValue" => put_secret_value(ctx, body).await?,
        "UpdateSecret" => update_secret(ctx, body).await?,
        "DescribeSecret" => describe_secret(ctx, body).await?,
        "ListSecrets" => list_secrets(ctx, body).await?,
        "DeleteSecret" => delete_secret(ctx, body).await?,
        "RestoreSecret" => restore_secret(ctx, body).await?,
        "GetResourcePolicy" => get_resource_policy(ctx, body).await?,
        "TagResource" => tag_secret(ctx, body, true).await?,
        "UntagResource" => tag_secret(ctx, body, false).await?,
        _ => {
            return Err(ApiError::unknown_operation(&format!(
                "{SECRETS_MANAGER_PREFIX}.{op}"
            )))
        }
    };
    encode(&out)
}

// ---------------------------------------------------------------------------------------------
// SSM Parameter Store

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationException", message)
}

fn parameter_not_found() -> ApiError {
    ApiError::new("ParameterNotFound", "")
}

/// Parameter names: 1–2048 of letters, digits and `_.-/`; hierarchies start with `/`; no
/// `aws`/`ssm` prefix.
fn check_parameter_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 2048 {
        return Err(validation(
            "Parameter name must be between 1 and 2048 characters.",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(validation(
            "Parameter name: can't contain characters other than a-z, A-Z, 0-9, _, ., - and /.",
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(validation("Parameter name must be a fully qualified name."));
    }
    let bare = name.trim_start_matches('/').to_ascii_lowercase();
    if bare.starts_with("aws") || bare.starts_with("ssm") {
        return Err(validation(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).",
        ));
    }
    Ok(())
}

/// A parameter reference: name or ARN, with an optional `:version` selector. The ARN of a
/// hierarchical name (`/a/b`) is `…:parameter/a/b`; of a one-level name it is `…:parameter/x`
/// for both `x` and `/x`: such an ARN comes back as `arn:x`, which [`parameter_names`] expands.
fn parameter_ref(arg: &str) -> (String, Option<String>) {
    let name = match arg.strip_prefix("arn:") {
        Some(_) => match berth_core::Arn::parse(arg)
            .filter(|a| a.service == "ssm")
            .and_then(|a| a.resource.strip_prefix("parameter/"))
        {
            Some(n) if n.contains('/') => format!("/{n}"),
            Some(n) => format!("arn:{n}"),
            // Not a parameter ARN: names nothing (and has no selector).
            None => return (arg.to_string(), None),
        },
        None => arg.to_string(),
    };
    match name.rsplit_once(':') {
        Some((n, sel)) if !sel.is_empty() && n != "arn" => (n.to_string(), Some(sel.to_string())),
        _ => (name, None),
    }
}

/// The stored names a reference's name part may be: itself, or for a one-level ARN (`arn:x`,
/// from [`parameter_ref`]) both `x` and `/x`.
fn parameter_names(name: &str) -> Vec<String> {
    match name.strip_prefix("arn:") {
        Some(n) => vec![n.to_string(), format!("/{n}")],
        None => vec![name.to_string()],
    }
}

fn parameter_arn(ctx: &Ctx, name: &str) -> String {
    let scope = &ctx.app.scope;
    let sep = if name.starts_with('/') { "" } else { "/" };
    format!(
        "arn:aws:ssm:{}:{}:parameter{sep}{name}",
        scope.region, scope.account
    )
}

fn parameter_json(
    ctx: &Ctx,
    p: &ParameterRecord,
    v: &ParameterVersion,
    selector: Option<&str>,
    decrypt: bool,
) -> serde_json::Value {
    let value = if v.type_ == "SecureString" && !decrypt {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&v.value)
    } else {
        v.value.clone()
    };
    let mut out = serde_json::json!({
        "Name": p.name,
        "Type": v.type_,
        "Value": value,
        "Version": v.version,
        "LastModifiedDate": v.modified_at,
        "ARN": parameter_arn(ctx, &p.name),
        "DataType": v.data_type,
    });
    if let Some(s) = selector {
        out["Selector"] = format!(":{s}").into();
    }
    out
}

async fn put_parameter(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: PutParameterIn = parse(body)?;
    let name = req.name.unwrap_or_default();
    check_parameter_name(&name)?;
    let value = req.value.unwrap_or_default();
    if value.is_empty() {
        return Err(validation(
            "1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let tier = req.tier.unwrap_or_else(|| "Standard".into());
    let limit = if tier == "Advanced" { 8192 } else { 4096 };
    if value.len() > limit {
        return Err(validation(format!(
            "Standard tier parameters support a maximum parameter value of {limit} characters."
        )));
    }
    if let Some(t) = &req.type_ {
        if !["String", "StringList", "SecureString"].contains(&t.as_str()) {
            return Err(validation(format!(
                "1 validation error detected: Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
            )));
        }
    }
    let data_type = req.data_type.unwrap_or_else(|| "text".into());
    if !["text", "aws:ec2:image", "aws:ssm:integration"].contains(&data_type.as_str()) {
        return Err(validation(format!(
            "The following data type is not supported: {data_type} (Data type names are all lowercase.)"
        )));
    }
    let overwrite = req.overwrite.unwrap_or(false);
    let tags = tags_of(req.tags)?;
    if overwrite && !tags.is_empty() {
        return Err(validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    let now = now_epoch();
    let by = ctx.principal.arn.clone();
    let version = modify::<ParameterRecord, _>(ctx, &parameter_key(&name), |cur| {
        let mut p = match cur {
            Some(_) if !overwrite => {
                return Err(ApiError::new(
                    "ParameterAlreadyExists",
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ))
            }
            Some(p) => p,
            None => ParameterRecord {
                name: name.clone(),
                description: None,
                versions: Vec::new(),
                tags: tags.clone(),
                tier: None,
            },
        };
        p.tier = Some(tier.clone());
        let last = p.versions.last();
        let type_ = req
            .type_
            .clone()
            .or_else(|| last.map(|v| v.type_.clone()))
            .unwrap_or_else(|| "String".into());
        if let Some(d) = &req.description {
            p.description = Some(d.clone());
        }
        let version = last.map_or(1, |v| v.version + 1);
        p.versions.push(ParameterVersion {
            version,
            type_,
            value: value.clone(),
            data_type: data_type.clone(),
            modified_at: now,
            modified_by: by.clone(),
        });
        if p.versions.len() > MAX_PARAMETER_VERSIONS {
            p.versions.remove(0);
        }
        Ok((Some(p), version))
    })
    .await?;
    Ok(serde_json::json!({"Version": version, "Tier": tier}))
}

/// The parameter and version a reference names, or None.
async fn lookup_parameter(
    ctx: &Ctx,
    arg: &str,
) -> Result<Option<(ParameterRecord, ParameterVersion, Option<String>)>, ApiError> {
    let (name, selector) = parameter_ref(arg);
    let mut found = None;
    for n in parameter_names(&name) {
        if let Some(p) = ctx
            .app
            .repo
            .get::<ParameterRecord>(&parameter_key(&n))
            .await?
        {
            found = Some(p.value);
            break;
        }
    }
    let Some(p) = found else {
        return Ok(None);
    };
    let v = match &selector {
        None => p.versions.last().cloned(),
        Some(sel) => match sel.parse::<i64>() {
            Ok(n) => p.versions.iter().find(|v| v.version == n).cloned(),
            // Labels are not kept: a label selector finds nothing.
            Err(_) => None,
        },
    };
    Ok(v.map(|v| (p, v, selector)))
}

async fn get_parameter(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: GetParameterIn = parse(body)?;
    let name = req.name.filter(|n| !n.is_empty()).ok_or_else(|| {
        validation("1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null")
    })?;
    let (p, v, sel) = match lookup_parameter(ctx, &name).await? {
        Some(found) => found,
        None => {
            return Err(match parameter_ref(&name) {
                (pname, Some(version)) => ApiError::new(
                    "ParameterVersionNotFound",
                    format!(
                        "Systems Manager could not find version {version} of {}. Verify the version and try again.",
                        pname.trim_start_matches("arn:")
                    ),
                ),
                (_, None) => parameter_not_found(),
            })
        }
    };
    let decrypt = req.with_decryption.unwrap_or(false);
    Ok(serde_json::json!({"Parameter": parameter_json(ctx, &p, &v, sel.as_deref(), decrypt)}))
}

async fn get_parameters(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: NamesIn = parse(body)?;
    let names = req.names.unwrap_or_default();
    if names.is_empty() || names.len() > 10 {
        return Err(validation(format!(
            "1 validation error detected: Value '{names:?}' at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1"
        )));
    }
    let decrypt = req.with_decryption.unwrap_or(false);
    let (mut found, mut invalid) = (Vec::new(), Vec::new());
    for n in &names {
        match lookup_parameter(ctx, n).await? {
            Some((p, v, sel)) => found.push(parameter_json(ctx, &p, &v, sel.as_deref(), decrypt)),
            None => invalid.push(n.clone()),
        }
    }
    Ok(serde_json::json!({"Parameters": found, "InvalidParameters": invalid}))
}

async fn get_parameters_by_path(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: ByPathIn = parse(body)?;
    if req
        .parameter_filters
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        return Err(ApiError::new(
            "InvalidFilterKey",
            "berth does not support ParameterFilters on GetParametersByPath.",
        ));
    }
    let path = req.path.unwrap_or_default();
    if !path.starts_with('/') || path.len() > 2048 {
        return Err(validation("The path must begin with a forward slash (/)."));
    }
    let max = req.max_results.unwrap_or(10);
    if !(1..=10).contains(&max) {
        return Err(validation(
            "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10",
        ));
    }
    let after = page_after(req.next_token.as_deref(), "InvalidNextToken")?;
    let prefix = if path.ends_with('/') {
        path.clone()
    } else {
        format!("{path}/")
    };
    let recursive = req.recursive.unwrap_or(false);
    let decrypt = req.with_decryption.unwrap_or(false);
    let all = ctx
        .app
        .repo
        .list_arc::<ParameterRecord>(&parameter_key(&prefix))
        .await?;
    let matching: Vec<(String, &ParameterRecord)> = all
        .iter()
        .map(|v| v.value.as_ref())
        .filter(|p| recursive || !p.name[prefix.len()..].contains('/'))
        .map(|p| (p.name.clone(), p))
        .collect();
    let (page, next) = crate::ecs::paginate(matching, after.as_deref(), max as usize, false);
    let mut resp = serde_json::json!({
        "Parameters": page
            .iter()
            .filter_map(|p| p.versions.last().map(|v| parameter_json(ctx, p, v, None, decrypt)))
            .collect::<Vec<_>>(),
    });
    if let Some(t) = next {
        resp["NextToken"] = t.into();
    }
    Ok(resp)
}

async fn delete_one_parameter(ctx: &Ctx, name: &str) -> Result<bool, ApiError> {
    for n in parameter_names(name) {
        let key = parameter_key(&n);
        if modify::<ParameterRecord, _>(ctx, &key, |cur| Ok((None, cur.is_some()))).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn delete_parameter(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: GetParameterIn = parse(body)?;
    let name = req.name.unwrap_or_default();
    if !delete_one_parameter(ctx, &parameter_ref(&name).0).await? {
        return Err(parameter_not_found());
    }
    Ok(serde_json::json!({}))
}

async fn delete_parameters(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: NamesIn = parse(body)?;
    let names = req.names.unwrap_or_default();
    if names.is_empty() || names.len() > 10 {
        return Err(validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1",
        ));
    }
    let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
    for n in names {
        if delete_one_parameter(ctx, &parameter_ref(&n).0).await? {
            deleted.push(n);
        } else {
            invalid.push(n);
        }
    }
    Ok(serde_json::json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeParametersIn {
    filters: Option<Vec<LegacyFilter>>,
    parameter_filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyFilter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StringFilter {
    key: Option<String>,
    option: Option<String>,
    values: Option<Vec<String>>,
}

/// The KMS key a SecureString reports (there is no KMS: the AWS-managed key's alias).
const DEFAULT_KEY_ID: &str = "alias/aws/ssm";

/// Whether parameter `p` (current version `v`) passes one ParameterFilters entry.
fn passes(
    p: &ParameterRecord,
    v: &ParameterVersion,
    key: &str,
    option: &str,
    values: &[String],
) -> bool {
    let key_id = (v.type_ == "SecureString").then_some(DEFAULT_KEY_ID);
    let text = |field: Option<&str>| {
        values.iter().any(|x| match (option, field) {
            (_, None) => false,
            ("BeginsWith", Some(f)) => f.starts_with(x.as_str()),
            ("Contains", Some(f)) => f.contains(x.as_str()),
            (_, Some(f)) => f == x,
        })
    };
    match key {
        "Name" => {
            // Names match with or without the leading slash.
            let bare = p.name.trim_start_matches('/');
            values.iter().any(|x| {
                let x = x.trim_start_matches('/');
                match option {
                    "BeginsWith" => bare.starts_with(x),
                    "Contains" => bare.contains(x),
                    _ => bare == x,
                }
            })
        }
        "Type" => text(Some(&v.type_)),
        "KeyId" => text(key_id),
        "Tier" => text(Some(p.tier.as_deref().unwrap_or("Standard"))),
        "DataType" => text(Some(&v.data_type)),
        "Path" => values.iter().any(|x| {
            let prefix = if x.ends_with('/') {
                x.clone()
            } else {
                format!("{x}/")
            };
            p.name
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| option == "Recursive" || !rest.contains('/'))
        }),
        k => match k.strip_prefix("tag:") {
            Some(tag) => p
                .tags
                .iter()
                .any(|(tk, tv)| tk == tag && (values.is_empty() || values.contains(tv))),
            // Labels are not kept.
            None => false,
        },
    }
}

async fn describe_parameters(ctx: &Ctx, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let req: DescribeParametersIn = parse(body)?;
    let legacy = req.filters.unwrap_or_default();
    let modern = req.parameter_filters.unwrap_or_default();
    if !legacy.is_empty() && !modern.is_empty() {
        return Err(validation(
            "You can use either Filters or ParameterFilters in a single request, but not both.",
        ));
    }
    // Both forms as (key, option, values); legacy Name filters match prefixes.
    let mut filters: Vec<(String, String, Vec<String>)> = Vec::new();
    for f in legacy {
        let key = f.key.unwrap_or_default();
        if !["Name", "Type", "KeyId"].contains(&key.as_str()) {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!("The filter key {key} is not valid."),
            ));
        }
        let option = if key == "Name" {
            "BeginsWith"
        } else {
            "Equals"
        };
        filters.push((key, option.into(), f.values.unwrap_or_default()));
    }
    for f in modern {
        let key = f.key.unwrap_or_default();
        let known = ["Name", "Type", "KeyId", "Path", "Label", "Tier", "DataType"]
            .contains(&key.as_str())
            || key.strip_prefix("tag:").is_some_and(|t| !t.is_empty());
        if !known {
            return Err(ApiError::new(
                "InvalidFilterKey",
                format!("The filter key {key} is not valid."),
            ));
        }
        let option = f.option.unwrap_or_else(|| {
            if key == "Path" {
                "OneLevel".into()
            } else {
                "Equals".into()
            }
        });
        let allowed: &[&str] = match key.as_str() {
            "Path" => &["Recursive", "OneLevel"],
            "Name" => &["Equals", "BeginsWith", "Contains"],
            k if k.starts_with("tag:") => &["Equals"],
            _ => &["Equals", "BeginsWith"],
        };
        if !allowed.contains(&option.as_str()) {
            return Err(ApiError::new(
                "InvalidFilterOption",
                format!(
                    "The filter option {option} is not valid for key {key}. Valid options: {}.",
                    allowed.join(", ")
                ),
            ));
        }
        filters.push((key, option, f.values.unwrap_or_default()));
    }
    let max = req.max_results.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(validation(
            "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50",
        ));
    }
    let after = page_after(req.next_token.as_deref(), "InvalidNextToken")?;
    let all = ctx.app.repo.list_arc::<ParameterRecord>(PARAMETERS).await?;
    let matching: Vec<(String, (&ParameterRecord, &ParameterVersion))> = all
        .iter()
        .filter_map(|r| Some((r.value.as_ref(), r.value.versions.last()?)))
        .filter(|(p, v)| filters.iter().all(|(k, o, vals)| passes(p, v, k, o, vals)))
        .map(|(p, v)| (p.name.clone(), (p, v)))
        .collect();
    let (page, next) = crate::ecs::paginate(matching, after.as_deref(), max as usize, false);
    let meta: Vec<serde_json::Value> = page
        .iter()
        .map(|(p, v)| {
            let mut m = serde_json::json!({
                "Name": p.name,
                "ARN": parameter_arn(ctx, &p.name),
                "Type": v.type_,
                "LastModifiedDate": v.modified_at,
                "LastModifiedUser": v.modified_by,
                "Version": v.version,
                "Tier": p.tier.as_deref().unwrap_or("Standard"),
                "Policies": [],
                "DataType": v.data_type,
            });
            if let Some(d) = &p.description {
                m["Description"] = d.clone().into();
            }
            if v.type_ == "SecureString" {
                m["KeyId"] = DEFAULT_KEY_ID.into();
            }
            m
        })
        .collect();
    let mut resp = serde_json::json!({ "Parameters": meta });
    if let Some(t) = next {
        resp["NextToken"] = t.into();
    }
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceTagsIn {
    resource_type: Option<String>,
    resource_id: Option<String>,
    tags: Option<Vec<WireTag>>,
    tag_keys: Option<Vec<String>>,
}

#[derive(Clone, Copy, PartialEq)]
enum TagOp {
    List,
    Add,
    Remove,
}

/// ListTagsForResource / AddTagsToResource / RemoveTagsFromResource for parameters (the only
/// resource type berth keeps).
async fn parameter_tags(ctx: &Ctx, body: &[u8], op: TagOp) -> Result<serde_json::Value, ApiError> {
    let req: ResourceTagsIn = parse(body)?;
    if req.resource_type.as_deref() != Some("Parameter") {
        return Err(ApiError::new(
            "InvalidResourceType",
            "The resource type is not valid: berth keeps tags on parameters only (ResourceType Parameter).",
        ));
    }
    let arg = req.resource_id.unwrap_or_default();
    let Some((p, _, _)) = lookup_parameter(ctx, &arg).await? else {
        return Err(ApiError::new(
            "InvalidResourceId",
            "The resource ID is not valid. Verify the ID and try again.",
        ));
    };
    if op == TagOp::List {
        return Ok(serde_json::json!({ "TagList": wire_tags(&p.tags) }));
    }
    let add = tags_of(req.tags)?;
    let remove = req.tag_keys.unwrap_or_default();
    modify::<ParameterRecord, _>(ctx, &parameter_key(&p.name), |cur| {
        let mut rec = cur.ok_or_else(|| {
            ApiError::new(
                "InvalidResourceId",
                "The resource ID is not valid. Verify the ID and try again.",
            )
        })?;
        if op == TagOp::Add {
            for (k, v) in &add {
                match rec.tags.iter_mut().find(|(tk, _)| tk == k) {
                    Some(t) => t.1 = v.clone(),
                    None => rec.tags.push((k.clone(), v.clone())),
                }
            }
            if rec.tags.len() > 50 {
                return Err(ApiError::new(
                    "TooManyTagsError",
                    "The Targets parameter includes too many tags.",
                ));
            }
        } else {
            rec.tags.retain(|(k, _)| !remove.contains(k));
        }
        Ok((Some(rec), ()))
    })
    .await?;
    Ok(serde_json::json!({}))
}

/// Runs one SSM operation.
pub async fn dispatch_ssm(ctx: &Ctx, op: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let out = match op {
        "PutParameter" => put_parameter(ctx, body).await?,
        "GetParameter" => get_parameter(ctx, body).await?,
        "GetParameters" => get_parameters(ctx, body).await?,
        "GetParametersByPath" => get_parameters_by_path(ctx, body).await?,
        "DeleteParameter" => delete_parameter(ctx, body).await?,
        "DeleteParameters" => delete_parameters(ctx, body).await?,
        "DescribeParameters" => describe_parameters(ctx, body).await?,
        "ListTagsForResource" => parameter_tags(ctx, body, TagOp::List).await?,
        "AddTagsToResource" => parameter_tags(ctx, body, TagOp::Add).await?,
        "RemoveTagsFromResource" => parameter_tags(ctx, body, TagOp::Remove).await?,
        _ => return Err(ApiError::unknown_operation(&format!("{SSM_PREFIX}.{op}"))),
    };
    encode(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretRecord {
        SecretRecord {
            name: "db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf".into(),
            description: None,
            kms_key_id: None,
            created_at: 1.0,
            last_changed_at: 1.0,
            deleted_at: None,
            deletion_date: None,
            tags: vec![],
            versions: vec![],
        }
    }

    fn token(n: u8) -> Option<String> {
        Some(format!("{:032}", n))
    }

    #[test]
    fn new_versions_move_awscurrent_and_awsprevious() {
        let mut s = secret();
        let v = |x: &str| (Some(x.to_string()), None);
        let cur = || vec!["AWSCURRENT".to_string()];
        add_version(&mut s, token(1), v("a"), cur(), 1.0).unwrap();
        add_version(&mut s, token(2), v("b"), cur(), 2.0).unwrap();
        add_version(&mut s, token(3), v("c"), cur(), 3.0).unwrap();
        let stages: Vec<_> = s.versions.iter().map(|v| v.stages.clone()).collect();
        assert_eq!(stages, vec![vec![], vec!["AWSPREVIOUS".to_string()], cur()]);
        assert_eq!(
            pick_version(&s, None, None).unwrap().string.as_deref(),
            Some("c")
        );
        assert_eq!(
            pick_version(&s, None, Some("AWSPREVIOUS"))
                .unwrap()
                .string
                .as_deref(),
            Some("b")
        );
        // The same token and value again is the same version; another value is refused.
        assert_eq!(
            add_version(&mut s, token(3), v("c"), cur(), 4.0).unwrap().0,
            token(3).unwrap()
        );
        assert!(add_version(&mut s, token(3), v("x"), cur(), 4.0).is_err());
        // A custom stage leaves AWSCURRENT where it is.
        add_version(&mut s, token(4), v("d"), vec!["TEST".into()], 5.0).unwrap();
        assert_eq!(
            pick_version(&s, None, None).unwrap().string.as_deref(),
            Some("c")
        );
        assert!(pick_version(&s, None, Some("NOPE")).is_err());
        assert!(add_version(&mut s, Some("short".into()), v("e"), cur(), 6.0).is_err());
    }

    #[test]
    fn parameter_names_follow_parameter_store_rules() {
        for ok in ["db-password", "/app/prod/db.password", "a_b"] {
            assert!(check_parameter_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "app/db", "/aws/x", "SSM-thing", "has space", "x$y"] {
            assert!(check_parameter_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parameter_ref("/a/b:3"), ("/a/b".into(), Some("3".into())));
        assert_eq!(
            parameter_ref("arn:aws:ssm:us-east-1:000000000000:parameter/a/b"),
            ("/a/b".into(), None)
        );
        let (one, sel) = parameter_ref("arn:aws:ssm:us-east-1:000000000000:parameter/plain:2");
        assert_eq!(sel.as_deref(), Some("2"));
        assert_eq!(
            parameter_names(&one),
            vec!["plain".to_string(), "/plain".to_string()]
        );
        assert_eq!(
            parameter_ref("arn:aws:ssm:us-east-1:000000000000:parameterX").0,
            "arn:aws:ssm:us-east-1:000000000000:parameterX"
        );
    }

    #[test]
    fn secret_names_and_values_are_checked() {
        assert!(valid_secret_name("prod/db@main+x=1.0_-"));
        assert!(!valid_secret_name("has space"));
        assert!(!valid_secret_name(""));
        assert!(new_value(Some("a".into()), Some("YQ==".into())).is_err());
        assert!(new_value(None, Some("not base64!".into())).is_err());
        assert!(new_value(None, None).unwrap().is_none());
        assert!(new_value(Some("x".repeat(65_537)), None).is_err());
    }
}
