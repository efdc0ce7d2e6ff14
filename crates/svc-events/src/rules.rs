//! Event buses, rules and targets: the records and the API handlers.
//!
//! Keys: `events/buses/<bus>` (custom buses; `default` always exists and is not stored),
//! `events/rules/<bus>/<name>`, `events/fired/<bus>/<name>` (the last slot the executor fired,
//! kept apart so the executor never races a user's PutRule on the rule record).

use crate::schedule::Schedule;
use crate::Ctx;
use berth_service::codec::now_epoch;
use berth_service::pagination::{decode_token, paginate};
use berth_service::repo::{Attempt, Change};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::events as ev;
use serde::{Deserialize, Serialize};

pub const DEFAULT_BUS: &str = "default";
/// EventBridge's quota of targets per rule.
pub const MAX_TARGETS: usize = 5;

pub(crate) const RULES: &str = "events/rules/";
pub(crate) const FIRED: &str = "events/fired/";
const BUSES: &str = "events/buses/";

pub(crate) fn rule_key(bus: &str, name: &str) -> String {
    format!("{RULES}{bus}/{name}")
}
pub(crate) fn fired_key(bus: &str, name: &str) -> String {
    format!("{FIRED}{bus}/{name}")
}
fn bus_key(name: &str) -> String {
    format!("{BUSES}{name}")
}

/// A rule's state, as EventBridge spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleState {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
    #[serde(rename = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")]
    EnabledWithAllCloudtrailManagementEvents,
}

impl RuleState {
    fn from_wire(s: ev::RuleState) -> Self {
        match s {
            ev::RuleState::Enabled => RuleState::Enabled,
            ev::RuleState::Disabled => RuleState::Disabled,
            ev::RuleState::EnabledWithAllCloudtrailManagementEvents => {
                RuleState::EnabledWithAllCloudtrailManagementEvents
            }
        }
    }
    fn to_wire(self) -> ev::RuleState {
        match self {
            RuleState::Enabled => ev::RuleState::Enabled,
            RuleState::Disabled => ev::RuleState::Disabled,
            RuleState::EnabledWithAllCloudtrailManagementEvents => {
                ev::RuleState::EnabledWithAllCloudtrailManagementEvents
            }
        }
    }
    pub fn enabled(self) -> bool {
        self != RuleState::Disabled
    }
}

/// A rule. Its targets are kept as EventBridge's own JSON of each `Target` (as PutTargets took
/// it, defaults filled in), so ListTargetsByRule gives back every field that was put.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleRecord {
    pub name: String,
    pub bus: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    pub state: RuleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The account that made it.
    pub created_by: String,
    /// When the schedule was set: a rate's slots are counted from here.
    pub anchor: f64,
    /// When it was last enabled: no slot before this fires.
    pub enabled_at: f64,
    #[serde(default)]
    pub targets: Vec<serde_json::Value>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// The last slot the executor fired for a rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiredRecord {
    pub slot: f64,
    /// When it fired (for the record; the executor reads only `slot`).
    pub at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventBusRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

fn validation(msg: impl Into<String>) -> ApiError {
    ApiError::new("ValidationException", msg)
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new("ResourceNotFoundException", msg)
}

fn rule_not_found(name: &str, bus: &str) -> ApiError {
    not_found(format!("Rule {name} does not exist on EventBus {bus}."))
}

fn bus_not_found(bus: &str) -> ApiError {
    not_found(format!("Event bus {bus} does not exist."))
}

/// `[\.\-_A-Za-z0-9]+`, 1–64 characters: rule names, target ids.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn check_rule_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name, 64) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
        )))
    }
}

/// The bus a request names (name or ARN; `default` when absent).
fn bus_of(arg: Option<&str>) -> Result<String, ApiError> {
    let arg = arg.filter(|a| !a.is_empty()).unwrap_or(DEFAULT_BUS);
    let name = if arg.starts_with("arn:") {
        match berth_core::Arn::parse(arg) {
            Some(a) if a.service == "events" => a
                .resource
                .strip_prefix("event-bus/")
                .ok_or_else(|| validation(format!("Invalid event bus ARN: {arg}")))?,
            _ => return Err(validation(format!("Invalid event bus ARN: {arg}"))),
        }
    } else {
        arg
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        || name.is_empty()
        || name.len() > 256
    {
        return Err(validation(format!("Invalid event bus name: {name}")));
    }
    Ok(name.to_string())
}

/// The bus must exist (the default one always does).
async fn existing_bus(ctx: &Ctx, bus: &str) -> Result<(), ApiError> {
    if bus == DEFAULT_BUS
        || ctx
            .app
            .repo
            .get::<EventBusRecord>(&bus_key(bus))
            .await?
            .is_some()
    {
        Ok(())
    } else {
        Err(bus_not_found(bus))
    }
}

pub(crate) fn rule_arn(ctx: &Ctx, bus: &str, name: &str) -> String {
    let scope = &ctx.app.scope;
    let resource = if bus == DEFAULT_BUS {
        format!("rule/{name}")
    } else {
        format!("rule/{bus}/{name}")
    };
    format!(
        "arn:{}:events:{}:{}:{resource}",
        scope.partition, scope.region, scope.account
    )
}

fn bus_arn(ctx: &Ctx, bus: &str) -> String {
    let scope = &ctx.app.scope;
    format!(
        "arn:{}:events:{}:{}:event-bus/{bus}",
        scope.partition, scope.region, scope.account
    )
}

fn tags_in(tags: Option<&[ev::Tag]>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tags.unwrap_or_default() {
        let key = t.key.clone().unwrap_or_default();
        if key.is_empty() || key.len() > 128 {
            return Err(validation("Tag keys must be between 1 and 128 characters."));
        }
        out.retain(|(k, _)| *k != key);
        out.push((key, t.value.clone().unwrap_or_default()));
    }
    if out.len() > 50 {
        return Err(validation("A resource can have at most 50 tags."));
    }
    Ok(out)
}

fn tags_out(tags: &[(String, String)]) -> Vec<ev::Tag> {
    tags.iter()
        .map(|(k, v)| ev::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

async fn get_rule(ctx: &Ctx, bus: &str, name: &str) -> Result<RuleRecord, ApiError> {
    ctx.app
        .repo
        .get::<RuleRecord>(&rule_key(bus, name))
        .await?
        .map(|r| r.value)
        .ok_or_else(|| rule_not_found(name, bus))
}

pub async fn put_rule(ctx: &Ctx, req: ev::PutRuleRequest) -> Result<ev::PutRuleResponse, ApiError> {
    let name = req.name.clone().unwrap_or_default();
    check_rule_name(&name)?;
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let schedule = req.schedule_expression.clone().filter(|s| !s.is_empty());
    let pattern = req.event_pattern.clone().filter(|s| !s.is_empty());
    if schedule.is_none() && pattern.is_none() {
        return Err(validation(
            "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        ));
    }
    if let Some(s) = &schedule {
        Schedule::parse(s).map_err(|_| validation("Parameter ScheduleExpression is not valid."))?;
        if bus != DEFAULT_BUS {
            return Err(validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
    }
    if let Some(p) = &pattern {
        let why = match serde_json::from_str::<serde_json::Value>(p) {
            Ok(v) => crate::pattern::validate(&v).err(),
            Err(_) => Some("the pattern is not JSON".into()),
        };
        if let Some(why) = why {
            return Err(ApiError::new(
                "InvalidEventPatternException",
                format!("Event pattern is not valid. Reason: {why}"),
            ));
        }
    }
    if req.description.as_ref().is_some_and(|d| d.len() > 512) {
        return Err(validation("Description must be at most 512 characters."));
    }
    let tags = tags_in(req.tags.as_deref())?;
    existing_bus(ctx, &bus).await?;
    let state = req.state.map(RuleState::from_wire);
    let account = ctx.app.scope.account.clone();
    ctx.app
        .repo
        .update::<RuleRecord, _>(&rule_key(&bus, &name), |cur| {
            let now = now_epoch();
            let rec = match cur {
                Some(mut r) => {
                    if r.schedule_expression != schedule {
                        r.anchor = now;
                    }
                    let new_state = state.unwrap_or(r.state);
                    if !r.state.enabled() && new_state.enabled() {
                        r.enabled_at = now;
                    }
                    r.schedule_expression = schedule.clone();
                    r.event_pattern = pattern.clone();
                    r.state = new_state;
                    r.description = req.description.clone();
                    r.role_arn = req.role_arn.clone();
                    // PutRule's tags apply when a rule is created; TagResource changes them.
                    r
                }
                None => RuleRecord {
                    name: name.clone(),
                    bus: bus.clone(),
                    schedule_expression: schedule.clone(),
                    event_pattern: pattern.clone(),
                    state: state.unwrap_or(RuleState::Enabled),
                    description: req.description.clone(),
                    role_arn: req.role_arn.clone(),
                    created_by: account.clone(),
                    anchor: now,
                    enabled_at: now,
                    targets: vec![],
                    tags: tags.clone(),
                },
            };
            Ok(Change::Put(rec, ()))
        })
        .await?;
    tracing::info!(rule = %name, bus = %bus, "rule put");
    Ok(ev::PutRuleResponse {
        rule_arn: Some(rule_arn(ctx, &bus, &name)),
    })
}

fn rule_to_wire(ctx: &Ctx, r: &RuleRecord) -> ev::Rule {
    ev::Rule {
        name: Some(r.name.clone()),
        arn: Some(rule_arn(ctx, &r.bus, &r.name)),
        event_pattern: r.event_pattern.clone(),
        state: Some(r.state.to_wire()),
        description: r.description.clone(),
        schedule_expression: r.schedule_expression.clone(),
        role_arn: r.role_arn.clone(),
        managed_by: None,
        event_bus_name: Some(r.bus.clone()),
    }
}

pub async fn describe_rule(
    ctx: &Ctx,
    req: ev::DescribeRuleRequest,
) -> Result<ev::DescribeRuleResponse, ApiError> {
    let name = req.name.clone().unwrap_or_default();
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let r = get_rule(ctx, &bus, &name).await?;
    Ok(ev::DescribeRuleResponse {
        name: Some(r.name.clone()),
        arn: Some(rule_arn(ctx, &r.bus, &r.name)),
        event_pattern: r.event_pattern.clone(),
        schedule_expression: r.schedule_expression.clone(),
        state: Some(r.state.to_wire()),
        description: r.description.clone(),
        role_arn: r.role_arn.clone(),
        managed_by: None,
        event_bus_name: Some(r.bus.clone()),
        created_by: Some(r.created_by.clone()),
    })
}

fn limit_of(limit: i32) -> Result<usize, ApiError> {
    match limit {
        0 => Ok(100),
        1..=100 => Ok(limit as usize),
        _ => Err(validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100"
        ))),
    }
}

pub async fn list_rules(
    ctx: &Ctx,
    req: ev::ListRulesRequest,
) -> Result<ev::ListRulesResponse, ApiError> {
    let bus = bus_of(req.event_bus_name.as_deref())?;
    existing_bus(ctx, &bus).await?;
    let limit = limit_of(req.limit)?;
    let after = decode_token(req.next_token.as_deref())?;
    let prefix = req.name_prefix.clone().unwrap_or_default();
    let items = ctx
        .app
        .repo
        .list::<RuleRecord>(&format!("{RULES}{bus}/"))
        .await?
        .into_iter()
        .filter(|r| r.value.name.starts_with(&prefix))
        .map(|r| (r.key.clone(), rule_to_wire(ctx, &r.value)))
        .collect();
    let (rules, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ev::ListRulesResponse {
        rules: Some(rules),
        next_token: next,
    })
}

async fn set_state(ctx: &Ctx, name: &str, bus: &str, enable: bool) -> Result<(), ApiError> {
    ctx.app
        .repo
        .update::<RuleRecord, _>(&rule_key(bus, name), |cur| {
            let mut r = cur.ok_or_else(|| rule_not_found(name, bus))?;
            if enable && !r.state.enabled() {
                r.state = RuleState::Enabled;
                r.enabled_at = now_epoch();
            } else if !enable {
                r.state = RuleState::Disabled;
            }
            Ok(Change::Put(r, ()))
        })
        .await
}

pub async fn enable_rule(
    ctx: &Ctx,
    req: ev::EnableRuleRequest,
) -> Result<serde_json::Value, ApiError> {
    let bus = bus_of(req.event_bus_name.as_deref())?;
    set_state(ctx, req.name.as_deref().unwrap_or_default(), &bus, true).await?;
    Ok(serde_json::json!({}))
}

pub async fn disable_rule(
    ctx: &Ctx,
    req: ev::DisableRuleRequest,
) -> Result<serde_json::Value, ApiError> {
    let bus = bus_of(req.event_bus_name.as_deref())?;
    set_state(ctx, req.name.as_deref().unwrap_or_default(), &bus, false).await?;
    Ok(serde_json::json!({}))
}

pub async fn delete_rule(
    ctx: &Ctx,
    req: ev::DeleteRuleRequest,
) -> Result<serde_json::Value, ApiError> {
    let name = req.name.clone().unwrap_or_default();
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let key = rule_key(&bus, &name);
    let fired = fired_key(&bus, &name);
    let repo = &ctx.app.repo;
    repo.retry(|| async {
        // Deleting a rule that does not exist succeeds, as on AWS.
        let Some(r) = repo.get::<RuleRecord>(&key).await? else {
            return Ok(Attempt::Done(()));
        };
        if !r.value.targets.is_empty() {
            return Err(validation("Rule can't be deleted since it has targets."));
        }
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: key.clone(),
                revision: r.revision,
            })
            .delete(key.clone())
            .delete(fired.clone());
        Ok(Attempt::Commit(txn, ()))
    })
    .await?;
    Ok(serde_json::json!({}))
}

/// Why a target cannot be put (the whole PutTargets fails, as on AWS); None when it can.
fn target_fault(t: &ev::Target) -> Option<String> {
    let arn = t.arn.as_deref().unwrap_or_default();
    if arn.is_empty() {
        return Some("Target Arn is required.".into());
    }
    let Some(parsed) = berth_core::Arn::parse(arn) else {
        return Some(format!("Parameter {arn} is not valid."));
    };
    if parsed.service == "ecs" {
        if !parsed.resource.starts_with("cluster/") {
            return Some(format!(
                "Parameter {arn} is not valid: an ECS target is a cluster ARN."
            ));
        }
        let Some(p) = &t.ecs_parameters else {
            return Some("EcsParameters must be specified for an ECS target.".into());
        };
        if p.task_definition_arn
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            return Some("TaskDefinitionArn must be specified in EcsParameters.".into());
        }
        if !(0..=10).contains(&p.task_count) {
            return Some("TaskCount must be between 1 and 10.".into());
        }
        if t.role_arn.as_deref().unwrap_or_default().is_empty() {
            return Some(format!("RoleArn is required for target {arn}."));
        }
        if let Some(input) = &t.input {
            if serde_json::from_str::<berth_wire::ecs::TaskOverride>(input).is_err() {
                return Some("Input of an ECS target must be the JSON of task overrides (containerOverrides, taskRoleArn …).".into());
            }
        }
    }
    None
}

/// `raw`: the request's `Targets` as JSON, in the same order (what is stored).
pub async fn put_targets(
    ctx: &Ctx,
    req: ev::PutTargetsRequest,
    raw: Vec<serde_json::Value>,
) -> Result<ev::PutTargetsResponse, ApiError> {
    let name = req.rule.clone().unwrap_or_default();
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let targets = req.targets.clone().unwrap_or_default();
    if targets.is_empty() || targets.len() > 10 {
        return Err(validation(
            "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length between 1 and 10",
        ));
    }
    for t in &targets {
        let id = t.id.as_deref().unwrap_or_default();
        if let Some(fault) = target_fault(t) {
            return Err(validation(fault));
        }
        if !valid_name(id, 64) {
            return Err(validation(format!(
                "1 validation error detected: Value '{id}' at 'targets.member.id' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
            )));
        }
    }
    let (failed, _) = ctx
        .app
        .repo
        .update::<RuleRecord, _>(&rule_key(&bus, &name), |cur| {
            let mut r = cur.ok_or_else(|| rule_not_found(&name, &bus))?;
            let failed: Vec<ev::PutTargetsResultEntry> = Vec::new();
            for (i, t) in targets.iter().enumerate() {
                let id = t.id.clone().unwrap_or_default();
                let exists = r
                    .targets
                    .iter()
                    .any(|v| v.get("Id").and_then(|i| i.as_str()) == Some(id.as_str()));
                if !exists && r.targets.len() >= MAX_TARGETS {
                    return Err(ApiError::new(
                        "LimitExceededException",
                        "The requested resource exceeds the maximum number allowed.",
                    ));
                }
                let mut value = match raw.get(i) {
                    Some(v @ serde_json::Value::Object(_)) => v.clone(),
                    _ => serde_json::to_value(t).map_err(|e| ApiError::server(e.to_string()))?,
                };
                // An ECS target runs one task unless it says otherwise.
                if let Some(p) = value
                    .get_mut("EcsParameters")
                    .and_then(|p| p.as_object_mut())
                {
                    if p.get("TaskCount").is_none_or(|c| c.is_null()) {
                        p.insert("TaskCount".into(), serde_json::json!(1));
                    }
                }
                r.targets
                    .retain(|v| v.get("Id").and_then(|i| i.as_str()) != Some(id.as_str()));
                r.targets.push(value);
            }
            let n = failed.len();
            Ok(Change::Put(r, (failed, n)))
        })
        .await?;
    Ok(ev::PutTargetsResponse {
        failed_entry_count: failed.len() as i32,
        failed_entries: Some(failed),
    })
}

pub async fn remove_targets(
    ctx: &Ctx,
    req: ev::RemoveTargetsRequest,
) -> Result<ev::RemoveTargetsResponse, ApiError> {
    let name = req.rule.clone().unwrap_or_default();
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let ids = req.ids.clone().unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return Err(validation(
            "1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must have length between 1 and 100",
        ));
    }
    let failed = ctx
        .app
        .repo
        .update::<RuleRecord, _>(&rule_key(&bus, &name), |cur| {
            let mut r = cur.ok_or_else(|| rule_not_found(&name, &bus))?;
            let mut failed = Vec::new();
            for id in &ids {
                let before = r.targets.len();
                r.targets
                    .retain(|v| v.get("Id").and_then(|i| i.as_str()) != Some(id.as_str()));
                if r.targets.len() == before {
                    failed.push(ev::RemoveTargetsResultEntry {
                        target_id: Some(id.clone()),
                        error_code: Some("ResourceNotFoundException".into()),
                        error_message: Some(format!("Target {id} does not exist.")),
                    });
                }
            }
            Ok(Change::Put(r, failed))
        })
        .await?;
    Ok(ev::RemoveTargetsResponse {
        failed_entry_count: failed.len() as i32,
        failed_entries: Some(failed),
    })
}

pub async fn list_targets_by_rule(
    ctx: &Ctx,
    req: ev::ListTargetsByRuleRequest,
) -> Result<serde_json::Value, ApiError> {
    let name = req.rule.clone().unwrap_or_default();
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let limit = limit_of(req.limit)?;
    let after = decode_token(req.next_token.as_deref())?;
    let r = get_rule(ctx, &bus, &name).await?;
    let items = r
        .targets
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{i:05}"), v.clone()))
        .collect();
    let (targets, next) = paginate(items, after.as_deref(), limit, false);
    let mut out = serde_json::json!({ "Targets": targets });
    if let Some(n) = next {
        out["NextToken"] = serde_json::Value::String(n);
    }
    Ok(out)
}

pub async fn list_rule_names_by_target(
    ctx: &Ctx,
    req: ev::ListRuleNamesByTargetRequest,
) -> Result<ev::ListRuleNamesByTargetResponse, ApiError> {
    let bus = bus_of(req.event_bus_name.as_deref())?;
    let target = req.target_arn.clone().unwrap_or_default();
    let limit = limit_of(req.limit)?;
    let after = decode_token(req.next_token.as_deref())?;
    let items = ctx
        .app
        .repo
        .list::<RuleRecord>(&format!("{RULES}{bus}/"))
        .await?
        .into_iter()
        .filter(|r| {
            r.value
                .targets
                .iter()
                .any(|v| v.get("Arn").and_then(|a| a.as_str()) == Some(target.as_str()))
        })
        .map(|r| (r.key.clone(), r.value.name.clone()))
        .collect();
    let (names, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ev::ListRuleNamesByTargetResponse {
        rule_names: Some(names),
        next_token: next,
    })
}

pub async fn create_event_bus(
    ctx: &Ctx,
    req: ev::CreateEventBusRequest,
) -> Result<ev::CreateEventBusResponse, ApiError> {
    let name = req.name.clone().unwrap_or_default();
    if name == DEFAULT_BUS || name.contains('/') || !valid_name(&name, 256) {
        return Err(validation(format!("Event bus name {name} is not valid.")));
    }
    if req.event_source_name.is_some() {
        return Err(validation(
            "Partner event sources are not supported by berth.",
        ));
    }
    let tags = tags_in(req.tags.as_deref())?;
    let key = bus_key(&name);
    ctx.app
        .repo
        .update::<EventBusRecord, _>(&key, |cur| {
            if cur.is_some() {
                return Err(ApiError::new(
                    "ResourceAlreadyExistsException",
                    format!("Event bus {name} already exists."),
                ));
            }
            let now = now_epoch();
            Ok(Change::Put(
                EventBusRecord {
                    name: name.clone(),
                    description: req.description.clone(),
                    created_at: now,
                    updated_at: now,
                    tags: tags.clone(),
                },
                (),
            ))
        })
        .await?;
    Ok(ev::CreateEventBusResponse {
        event_bus_arn: Some(bus_arn(ctx, &name)),
        description: req.description.clone(),
        ..Default::default()
    })
}

pub async fn describe_event_bus(
    ctx: &Ctx,
    req: ev::DescribeEventBusRequest,
) -> Result<ev::DescribeEventBusResponse, ApiError> {
    let bus = bus_of(req.name.as_deref())?;
    if bus == DEFAULT_BUS {
        return Ok(ev::DescribeEventBusResponse {
            name: Some(bus.clone()),
            arn: Some(bus_arn(ctx, &bus)),
            ..Default::default()
        });
    }
    let b = ctx
        .app
        .repo
        .get::<EventBusRecord>(&bus_key(&bus))
        .await?
        .ok_or_else(|| bus_not_found(&bus))?
        .value;
    Ok(ev::DescribeEventBusResponse {
        name: Some(b.name.clone()),
        arn: Some(bus_arn(ctx, &b.name)),
        description: b.description.clone(),
        creation_time: Some(b.created_at),
        last_modified_time: Some(b.updated_at),
        ..Default::default()
    })
}

pub async fn list_event_buses(
    ctx: &Ctx,
    req: ev::ListEventBusesRequest,
) -> Result<ev::ListEventBusesResponse, ApiError> {
    let limit = limit_of(req.limit)?;
    let after = decode_token(req.next_token.as_deref())?;
    let prefix = req.name_prefix.clone().unwrap_or_default();
    let mut items: Vec<(String, ev::EventBus)> = vec![(
        format!("{BUSES}{DEFAULT_BUS}"),
        ev::EventBus {
            name: Some(DEFAULT_BUS.into()),
            arn: Some(bus_arn(ctx, DEFAULT_BUS)),
            ..Default::default()
        },
    )];
    for b in ctx.app.repo.list::<EventBusRecord>(BUSES).await? {
        items.push((
            b.key.clone(),
            ev::EventBus {
                name: Some(b.value.name.clone()),
                arn: Some(bus_arn(ctx, &b.value.name)),
                description: b.value.description.clone(),
                creation_time: Some(b.value.created_at),
                last_modified_time: Some(b.value.updated_at),
                ..Default::default()
            },
        ));
    }
    items.retain(|(_, b)| b.name.as_deref().unwrap_or_default().starts_with(&prefix));
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (buses, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ev::ListEventBusesResponse {
        event_buses: Some(buses),
        next_token: next,
    })
}

pub async fn delete_event_bus(
    ctx: &Ctx,
    req: ev::DeleteEventBusRequest,
) -> Result<serde_json::Value, ApiError> {
    let bus = bus_of(req.name.as_deref())?;
    if bus == DEFAULT_BUS {
        return Err(validation("Cannot delete event bus default."));
    }
    let rules = ctx
        .app
        .repo
        .list::<RuleRecord>(&format!("{RULES}{bus}/"))
        .await?;
    if !rules.is_empty() {
        return Err(validation(format!(
            "Event bus {bus} can't be deleted since it has rules."
        )));
    }
    let key = bus_key(&bus);
    ctx.app
        .repo
        .update::<EventBusRecord, _>(&key, |cur| {
            Ok(match cur {
                Some(_) => Change::Delete(()),
                None => Change::Keep(()),
            })
        })
        .await?;
    Ok(serde_json::json!({}))
}

/// The record key of a taggable resource: a rule or a custom bus.
fn tagged_key(ctx: &Ctx, arn: &str) -> Result<(String, bool), ApiError> {
    let parsed = berth_core::Arn::parse(arn)
        .filter(|a| a.service == "events" && a.account == ctx.app.scope.account)
        .ok_or_else(|| not_found(format!("Resource {arn} not found.")))?;
    if let Some(rest) = parsed.resource.strip_prefix("rule/") {
        let (bus, name) = match rest.rsplit_once('/') {
            Some((bus, name)) => (bus, name),
            None => (DEFAULT_BUS, rest),
        };
        return Ok((rule_key(bus, name), true));
    }
    if let Some(bus) = parsed.resource.strip_prefix("event-bus/") {
        if bus != DEFAULT_BUS {
            return Ok((bus_key(bus), false));
        }
    }
    Err(not_found(format!("Resource {arn} not found.")))
}

async fn retag(
    ctx: &Ctx,
    arn: &str,
    f: impl Fn(&mut Vec<(String, String)>) -> Result<(), ApiError>,
) -> Result<Vec<(String, String)>, ApiError> {
    let (key, is_rule) = tagged_key(ctx, arn)?;
    let missing = || not_found(format!("Resource {arn} not found."));
    if is_rule {
        ctx.app
            .repo
            .update::<RuleRecord, _>(&key, |cur| {
                let mut r = cur.ok_or_else(missing)?;
                f(&mut r.tags)?;
                let tags = r.tags.clone();
                Ok(Change::Put(r, tags))
            })
            .await
    } else {
        ctx.app
            .repo
            .update::<EventBusRecord, _>(&key, |cur| {
                let mut b = cur.ok_or_else(missing)?;
                f(&mut b.tags)?;
                let tags = b.tags.clone();
                Ok(Change::Put(b, tags))
            })
            .await
    }
}

pub async fn tag_resource(
    ctx: &Ctx,
    req: ev::TagResourceRequest,
) -> Result<serde_json::Value, ApiError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let new = tags_in(req.tags.as_deref())?;
    retag(ctx, &arn, |tags| {
        for (k, v) in &new {
            tags.retain(|(x, _)| x != k);
            tags.push((k.clone(), v.clone()));
        }
        if tags.len() > 50 {
            return Err(validation("A resource can have at most 50 tags."));
        }
        Ok(())
    })
    .await?;
    Ok(serde_json::json!({}))
}

pub async fn untag_resource(
    ctx: &Ctx,
    req: ev::UntagResourceRequest,
) -> Result<serde_json::Value, ApiError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let keys = req.tag_keys.clone().unwrap_or_default();
    retag(ctx, &arn, |tags| {
        tags.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(serde_json::json!({}))
}

pub async fn list_tags_for_resource(
    ctx: &Ctx,
    req: ev::ListTagsForResourceRequest,
) -> Result<ev::ListTagsForResourceResponse, ApiError> {
    let arn = req.resource_arn.clone().unwrap_or_default();
    let (key, is_rule) = tagged_key(ctx, &arn)?;
    let missing = || not_found(format!("Resource {arn} not found."));
    let tags = if is_rule {
        let r = ctx.app.repo.get::<RuleRecord>(&key).await?;
        r.ok_or_else(missing)?.value.tags
    } else {
        let b = ctx.app.repo.get::<EventBusRecord>(&key).await?;
        b.ok_or_else(missing)?.value.tags
    };
    Ok(ev::ListTagsForResourceResponse {
        tags: Some(tags_out(&tags)),
    })
}
