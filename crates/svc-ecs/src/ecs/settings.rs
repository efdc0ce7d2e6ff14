//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings. A principal's own setting wins over the account default (set on the root
//! principal), which wins over the AWS-managed default.

use super::args::{decode_token, paginate};
use crate::keys;
use crate::records::{AccountSettingRecord, SettingKind};
use crate::state::Ctx;
use berth_service::repo::to_bytes;
use berth_service::ApiError;
use berth_store::Txn;
use berth_wire::ecs::{self, SettingName};

/// AWS-managed defaults (what an account gets when nothing was set).
fn aws_default(name: SettingName) -> &'static str {
    match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => "enabled",
        SettingName::TagResourceAuthorization => "on",
        SettingName::FargateTaskRetirementWaitPeriod => "7",
        SettingName::GuardDutyActivate => "off",
        SettingName::DefaultLogDriverMode => "non-blocking",
        _ => "disabled",
    }
}

const ALL_SETTINGS: &[SettingName] = &[
    SettingName::ServiceLongArnFormat,
    SettingName::TaskLongArnFormat,
    SettingName::ContainerInstanceLongArnFormat,
    SettingName::AwsvpcTrunking,
    SettingName::ContainerInsights,
    SettingName::FargateFIPSMode,
    SettingName::TagResourceAuthorization,
    SettingName::FargateTaskRetirementWaitPeriod,
    SettingName::GuardDutyActivate,
    SettingName::DefaultLogDriverMode,
    SettingName::FargateEventWindows,
];

fn setting_name(s: &str) -> Option<SettingName> {
    ALL_SETTINGS.iter().copied().find(|n| n.as_str() == s)
}

fn validate_value(name: SettingName, value: &str) -> Result<(), ApiError> {
    let ok = match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => {
            if value == "disabled" {
                return Err(ApiError::invalid_parameter(
                    "You can no longer disable Long Arn settings.",
                ));
            }
            value == "enabled"
        }
        SettingName::ContainerInsights => matches!(value, "enabled" | "disabled" | "enhanced"),
        SettingName::FargateTaskRetirementWaitPeriod => matches!(value, "0" | "7" | "14"),
        SettingName::TagResourceAuthorization | SettingName::GuardDutyActivate => {
            matches!(value, "on" | "off" | "enabled" | "disabled")
        }
        SettingName::DefaultLogDriverMode => matches!(value, "blocking" | "non-blocking"),
        _ => matches!(value, "enabled" | "disabled"),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Invalid value '{value}' for setting {}.",
            name.as_str()
        )))
    }
}

fn to_wire(r: &AccountSettingRecord) -> ecs::Setting {
    ecs::Setting {
        name: setting_name(&r.name),
        value: Some(r.value.clone()),
        principal_arn: Some(r.principal_arn.clone()),
        type_: Some(match r.kind {
            SettingKind::User => ecs::SettingType::User,
        }),
    }
}

async fn put(
    ctx: &Ctx,
    name: SettingName,
    value: String,
    principal: String,
) -> Result<ecs::Setting, ApiError> {
    validate_value(name, &value)?;
    if principal != ctx.principal.arn
        && principal != ctx.app.scope.root_principal()
        && ctx.principal.arn != ctx.app.scope.root_principal()
    {
        // Only the root user or the principal itself may set a principal's setting (AWS rule);
        // berth's admin keys act for the account, so they may set any principal's setting.
        if ctx.principal.role != berth_auth::Role::Admin {
            return Err(ApiError::new(
                "AccessDeniedException",
                "You are not authorized to change this principal's settings.",
            ));
        }
    }
    let rec = AccountSettingRecord {
        name: name.as_str().to_string(),
        value,
        principal_arn: principal,
        kind: SettingKind::User,
    };
    ctx.app
        .repo
        .commit(Txn::new().put(keys::setting(&rec.principal_arn, &rec.name), to_bytes(&rec)))
        .await?;
    Ok(to_wire(&rec))
}

pub async fn put_account_setting(
    ctx: &Ctx,
    req: ecs::PutAccountSettingRequest,
) -> Result<ecs::PutAccountSettingResponse, ApiError> {
    let name = req
        .name
        .ok_or_else(|| ApiError::client("name should not be null or empty."))?;
    let principal = req
        .principal_arn
        .unwrap_or_else(|| ctx.principal.arn.clone());
    let s = put(ctx, name, req.value.unwrap_or_default(), principal).await?;
    Ok(ecs::PutAccountSettingResponse { setting: Some(s) })
}

pub async fn put_account_setting_default(
    ctx: &Ctx,
    req: ecs::PutAccountSettingDefaultRequest,
) -> Result<ecs::PutAccountSettingDefaultResponse, ApiError> {
    let name = req
        .name
        .ok_or_else(|| ApiError::client("name should not be null or empty."))?;
    let s = put(
        ctx,
        name,
        req.value.unwrap_or_default(),
        ctx.app.scope.root_principal(),
    )
    .await?;
    Ok(ecs::PutAccountSettingDefaultResponse { setting: Some(s) })
}

pub async fn delete_account_setting(
    ctx: &Ctx,
    req: ecs::DeleteAccountSettingRequest,
) -> Result<ecs::DeleteAccountSettingResponse, ApiError> {
    let name = req
        .name
        .ok_or_else(|| ApiError::client("name should not be null or empty."))?;
    let principal = req
        .principal_arn
        .unwrap_or_else(|| ctx.principal.arn.clone());
    let key = keys::setting(&principal, name.as_str());
    let existing = ctx.app.repo.get::<AccountSettingRecord>(&key).await?;
    ctx.app.repo.commit(Txn::new().delete(key)).await?;
    let setting = match existing {
        Some(r) => to_wire(&r.value),
        None => ecs::Setting {
            name: Some(name),
            value: Some(aws_default(name).to_string()),
            principal_arn: Some(principal),
            type_: Some(ecs::SettingType::AwsManaged),
        },
    };
    Ok(ecs::DeleteAccountSettingResponse {
        setting: Some(setting),
    })
}

pub async fn list_account_settings(
    ctx: &Ctx,
    req: ecs::ListAccountSettingsRequest,
) -> Result<ecs::ListAccountSettingsResponse, ApiError> {
    let limit = match req.max_results {
        0 => 10,
        n if (1..=10).contains(&n) => n as usize,
        _ => {
            return Err(ApiError::invalid_parameter(
                "maxResults must be between 1 and 10.",
            ))
        }
    };
    let after = decode_token(req.next_token.as_deref())?;
    let principal = req
        .principal_arn
        .clone()
        .unwrap_or_else(|| ctx.principal.arn.clone());
    let root = ctx.app.scope.root_principal();
    let stored = ctx
        .app
        .repo
        .list::<AccountSettingRecord>(keys::SETTINGS)
        .await?;
    let find = |p: &str, n: SettingName| {
        stored
            .iter()
            .find(|r| r.value.principal_arn == p && r.value.name == n.as_str())
    };
    let mut out: Vec<ecs::Setting> = Vec::new();
    for &name in ALL_SETTINGS {
        if req.name.is_some_and(|n| n != name) {
            continue;
        }
        let s = if let Some(r) = find(&principal, name) {
            Some(to_wire(&r.value))
        } else if req.effective_settings {
            Some(match find(&root, name) {
                Some(r) => {
                    let mut s = to_wire(&r.value);
                    s.principal_arn = Some(principal.clone());
                    s
                }
                None => ecs::Setting {
                    name: Some(name),
                    value: Some(aws_default(name).to_string()),
                    principal_arn: Some(principal.clone()),
                    type_: Some(ecs::SettingType::AwsManaged),
                },
            })
        } else {
            None
        };
        if let Some(s) = s {
            if req
                .value
                .as_deref()
                .is_none_or(|v| s.value.as_deref() == Some(v))
            {
                out.push(s);
            }
        }
    }
    let items = out
        .into_iter()
        .map(|s| (s.name.map(|n| n.as_str()).unwrap_or("").to_string(), s))
        .collect::<Vec<_>>();
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (settings, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListAccountSettingsResponse {
        settings: Some(settings),
        next_token: next,
    })
}
