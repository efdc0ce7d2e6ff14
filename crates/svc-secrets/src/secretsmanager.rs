//! AWS Secrets Manager (`secretsmanager.<Operation>`, signing name `secretsmanager`): secrets
//! with versions and staging labels, kept under `secretsmanager/secrets/<name>`.

use crate::{
    modify, page_after, parse, tags_of, wire_tags, Ctx, Secrets, WireTag, SECRETS_MANAGER_PREFIX,
};
use berth_service::codec::{encode, now_epoch};
use berth_service::pagination::encode_token;
use berth_service::repo::Versioned;
use berth_service::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

const SECRETS: &str = "secretsmanager/secrets/";
/// Versions kept per secret (AWS keeps about 100; older unlabelled ones are dropped).
const MAX_SECRET_VERSIONS: usize = 100;

fn secret_key(name: &str) -> String {
    format!("{SECRETS}{name}")
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

// ---------------------------------------------------------------------------------------------
// Wire shapes

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

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
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

/// A version's value: its `SecretString` and its `SecretBinary` (base64), one of them set.
type SecretValue = (Option<String>, Option<String>);

/// Validates a new value: exactly one of string and binary, within the size limit.
fn new_value(
    string: Option<String>,
    binary: Option<String>,
) -> Result<Option<SecretValue>, ApiError> {
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
    value: SecretValue,
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
    value: Option<SecretValue>,
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
            resp["NextToken"] = encode_token(&format!("{}|{}", last.created_at, last.name)).into();
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

/// Deletes secrets whose recovery window has passed (leader maintenance: run it inside
/// `berth_service::leader::as_leader`, as [`PurgeDeletedSecrets`](crate::PurgeDeletedSecrets) does).
pub async fn purge_deleted_secrets(secrets: &Secrets) -> Result<usize, ApiError> {
    let now = now_epoch();
    let due = secrets
        .repo
        .scan(SECRETS, |s: Versioned<Arc<SecretRecord>>| {
            s.value
                .deletion_date
                .is_some_and(|d| d <= now)
                .then(|| (s.key.clone(), s.revision))
        })
        .await?;
    Ok(secrets.repo.delete_unchanged(due).await?.len())
}

/// The operations [`dispatch_secrets_manager`] runs (its `knows`: any other gets
/// UnknownOperationException from the edge).
pub const SECRETS_MANAGER_OPERATIONS: &[&str] = &[
    "CreateSecret",
    "GetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "DescribeSecret",
    "ListSecrets",
    "DeleteSecret",
    "RestoreSecret",
    "GetResourcePolicy",
    "TagResource",
    "UntagResource",
];

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
