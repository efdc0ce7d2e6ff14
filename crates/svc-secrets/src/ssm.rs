//! SSM Parameter Store (`AmazonSSM.<Operation>`, signing name `ssm`): String, StringList and
//! SecureString parameters with versions, kept under `ssm/parameters/<name>`.

use crate::{modify, page_after, parse, tags_of, wire_tags, Ctx, WireTag, SSM_PREFIX};
use berth_service::codec::{encode, now_epoch};
use berth_service::pagination::paginate;
use berth_service::ApiError;
use serde::{Deserialize, Serialize};

const PARAMETERS: &str = "ssm/parameters/";
/// Versions kept per parameter (as Parameter Store).
const MAX_PARAMETER_VERSIONS: usize = 100;

fn parameter_key(name: &str) -> String {
    format!("{PARAMETERS}{name}")
}

// ---------------------------------------------------------------------------------------------
// Storage records
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
// Wire shapes

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
    let (page, next) = paginate(matching, after.as_deref(), max as usize, false);
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
    let (page, next) = paginate(matching, after.as_deref(), max as usize, false);
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

/// The operations [`dispatch_ssm`] runs (its `knows`: any other gets UnknownOperationException
/// from the edge).
pub const SSM_OPERATIONS: &[&str] = &[
    "PutParameter",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
    "ListTagsForResource",
    "AddTagsToResource",
    "RemoveTagsFromResource",
];

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
}
