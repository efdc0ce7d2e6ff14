//! The executor: fires enabled scheduled rules at their slots, exactly once per slot.
//!
//! Every [`FIRE_PERIOD`] the leader reads the rules and their last fired slots. A rule whose next
//! slot has come ([`due_slot`]) runs each ECS target's tasks through berth's RunTask with
//! `startedBy` `events-rule/<rule>` and a client token made of (rule ARN, target id, slot), then
//! commits the slot, fenced with the leader's token. A leader that dies between the two leaves
//! the slot uncommitted: the next leader fires it again with the same client tokens, and RunTask
//! answers with the tasks the first call started — so a slot never starts its tasks twice and
//! is never skipped. Slots missed while there was no leader at all collapse into one: the latest
//! due slot fires once, late, if it is less than [`MAX_EVENT_AGE`] old (AWS retries a missed
//! invocation for up to 24 hours by default); older ones are skipped.

use crate::rules::{fired_key, rule_arn, FiredRecord, RuleRecord, FIRED, RULES};
use crate::schedule::Schedule;
use crate::{Ctx, Events};
use berth_service::codec::now_epoch;
use berth_service::leader::as_leader;
use berth_service::repo::to_bytes;
use berth_service::{ApiError, Principal};
use berth_store::{Compare, Txn};
use berth_tasks::{BackgroundTask, TaskError};
use berth_wire::{ecs, events as ev};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the executor looks for due slots (a slot fires within this of its time).
pub const FIRE_PERIOD: Duration = Duration::from_millis(500);

/// A missed slot older than this is not fired late (AWS's default MaximumEventAgeInSeconds).
pub const MAX_EVENT_AGE: f64 = 86400.0;

/// The slot a rule should fire now, if any: the latest slot after everything already fired (or
/// before it was enabled or its schedule set) that has come by `now` and is not too old.
pub fn due_slot(
    schedule: &Schedule,
    rule: &RuleRecord,
    fired: Option<f64>,
    now: f64,
) -> Option<f64> {
    let from = fired
        .unwrap_or(f64::NEG_INFINITY)
        .max(rule.anchor)
        .max(rule.enabled_at);
    let mut slot = schedule.next_after(rule.anchor, from)?;
    if slot > now {
        return None;
    }
    // Catch up to the latest due slot (bounded: a long outage of a one-minute rule).
    if let Schedule::Rate { seconds } = schedule {
        let p = *seconds as f64;
        slot += ((now - slot) / p).floor() * p;
    } else {
        for _ in 0..100_000 {
            match schedule.next_after(rule.anchor, slot) {
                Some(n) if n <= now => slot = n,
                _ => break,
            }
        }
    }
    (now - slot <= MAX_EVENT_AGE).then_some(slot)
}

/// The leader-only background task that fires scheduled rules.
pub struct FireRules(pub Arc<Events>);

#[async_trait::async_trait]
impl BackgroundTask for FireRules {
    async fn activate(&self) -> Result<String, TaskError> {
        let app = self.0.clone();
        let ctx = Ctx {
            app: app.clone(),
            principal: system_principal(&app),
        };
        match as_leader(&app.leader, fire_due(&ctx)).await {
            Some(Ok(n)) => Ok(format!("{n} fired")),
            Some(Err(e)) => Err(format!("{}: {}", e.code, e.message).into()),
            None => Ok("not leading".into()),
        }
    }
}

/// Scheduled rules act for the account (their targets were put by an admin key).
fn system_principal(app: &Events) -> Principal {
    Principal {
        temporary: false,
        access_key_id: "events.amazonaws.com".into(),
        role: berth_service::Role::Admin,
        arn: format!(
            "arn:{}:iam::{}:role/aws-service-role/events.amazonaws.com/AWSServiceRoleForAmazonEventBridge",
            app.scope.partition, app.scope.account
        ),
    }
}

/// One pass: fires every due slot. Returns how many rules fired.
pub async fn fire_due(ctx: &Ctx) -> Result<usize, ApiError> {
    let repo = &ctx.app.repo;
    let rules = repo.list::<RuleRecord>(RULES).await?;
    if rules.is_empty() {
        return Ok(0);
    }
    let fired: HashMap<String, (i64, FiredRecord)> = repo
        .list::<FiredRecord>(FIRED)
        .await?
        .into_iter()
        .map(|f| (f.key, (f.revision, f.value)))
        .collect();
    let now = now_epoch();
    let mut n = 0;
    for r in rules {
        let rule = r.value;
        if !rule.state.enabled() {
            continue;
        }
        let Some(expr) = &rule.schedule_expression else {
            continue;
        };
        let Ok(schedule) = Schedule::parse(expr) else {
            continue;
        };
        let key = fired_key(&rule.bus, &rule.name);
        let last = fired.get(&key);
        let Some(slot) = due_slot(&schedule, &rule, last.map(|(_, f)| f.slot), now) else {
            continue;
        };
        for target in &rule.targets {
            if let Err(e) = invoke(ctx, &rule, target, slot).await {
                tracing::warn!(rule = %rule.name, code = %e.code, error = %e.message, "rule target invocation failed");
            }
        }
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: key.clone(),
                revision: last.map_or(0, |(rev, _)| *rev),
            })
            .put(key, to_bytes(&FiredRecord { slot, at: now }));
        repo.commit(txn).await?;
        tracing::info!(rule = %rule.name, slot, late = now - slot, "scheduled rule fired");
        n += 1;
    }
    Ok(n)
}

/// Runs one target for one slot. Only ECS targets are delivered; others are reported.
async fn invoke(
    ctx: &Ctx,
    rule: &RuleRecord,
    target: &serde_json::Value,
    slot: f64,
) -> Result<(), ApiError> {
    let t: ev::Target = serde_json::from_value(target.clone())
        .map_err(|e| ApiError::server(format!("stored target unreadable: {e}")))?;
    let id = t.id.clone().unwrap_or_default();
    let Some(p) = &t.ecs_parameters else {
        return Err(ApiError::new(
            "UnsupportedTarget",
            format!(
                "target {id} ({}) is not delivered: berth delivers to ECS clusters only",
                t.arn.as_deref().unwrap_or_default()
            ),
        ));
    };
    let arn = rule_arn(ctx, &rule.bus, &rule.name);
    let token = {
        let mut h = Sha256::new();
        h.update(arn.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        h.update([0]);
        h.update(format!("{slot}").as_bytes());
        hex::encode(&h.finalize()[..16])
    };
    let overrides = match &t.input {
        Some(input) => Some(
            serde_json::from_str::<ecs::TaskOverride>(input)
                .map_err(|_| ApiError::new("ValidationException", "Input is not task overrides"))?,
        ),
        None => None,
    };
    let req = ecs::RunTaskRequest {
        cluster: t.arn.clone(),
        task_definition: p.task_definition_arn.clone(),
        count: Some(p.task_count.max(1)),
        launch_type: p.launch_type.map(|l| ecs_enum(l.as_str())).transpose()?,
        network_configuration: p
            .network_configuration
            .as_ref()
            .map(ecs_shape)
            .transpose()?,
        group: p.group.clone(),
        placement_constraints: p
            .placement_constraints
            .as_ref()
            .map(ecs_shape)
            .transpose()?,
        placement_strategy: p.placement_strategy.as_ref().map(ecs_shape).transpose()?,
        capacity_provider_strategy: p
            .capacity_provider_strategy
            .as_ref()
            .map(ecs_shape)
            .transpose()?,
        platform_version: p.platform_version.clone(),
        propagate_tags: p.propagate_tags.map(|v| ecs_enum(v.as_str())).transpose()?,
        reference_id: p.reference_id.clone(),
        tags: p.tags.as_ref().map(ecs_shape).transpose()?,
        enable_ecs_managed_tags: p.enable_ecs_managed_tags,
        enable_execute_command: p.enable_execute_command,
        overrides,
        started_by: Some(format!("events-rule/{}", rule.name)),
        client_token: Some(token),
        ..Default::default()
    };
    let out = ctx.app.runner.run_task(ctx.principal.clone(), req).await?;
    let failures = out.failures.unwrap_or_default();
    if !failures.is_empty() {
        tracing::warn!(rule = %rule.name, target = %id, ?failures, "rule target's tasks not all placed");
    }
    Ok(())
}

/// An EventBridge enum value as the ECS enum of the same spelling.
fn ecs_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| ApiError::new("ValidationException", format!("{s} is not valid for ECS")))
}

/// An EventBridge shape as ECS's twin: EventBridge spells the ECS members PascalCase, ECS
/// camelCase (`awsvpcConfiguration` is the same in both).
fn ecs_shape<S: serde::Serialize, T: serde::de::DeserializeOwned>(s: &S) -> Result<T, ApiError> {
    fn camel(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let k = match c.next() {
                            Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                            None => k,
                        };
                        (k, camel(v))
                    })
                    .collect(),
            ),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(camel).collect())
            }
            other => other,
        }
    }
    let v = serde_json::to_value(s).map_err(|e| ApiError::server(e.to_string()))?;
    serde_json::from_value(camel(v)).map_err(|_| {
        ApiError::new(
            "ValidationException",
            "EcsParameters has a value ECS does not take",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleState;

    fn rule(expr: &str, anchor: f64, enabled_at: f64) -> (Schedule, RuleRecord) {
        (
            Schedule::parse(expr).unwrap(),
            RuleRecord {
                name: "r".into(),
                bus: "default".into(),
                schedule_expression: Some(expr.into()),
                event_pattern: None,
                state: RuleState::Enabled,
                description: None,
                role_arn: None,
                created_by: "0".into(),
                anchor,
                enabled_at,
                targets: vec![],
                tags: vec![],
            },
        )
    }

    #[test]
    fn a_rate_fires_each_slot_once_from_its_anchor() {
        let (s, r) = rule("rate(1 minute)", 1000.0, 1000.0);
        assert_eq!(due_slot(&s, &r, None, 1059.0), None);
        assert_eq!(due_slot(&s, &r, None, 1060.0), Some(1060.0));
        assert_eq!(due_slot(&s, &r, Some(1060.0), 1061.0), None);
        assert_eq!(due_slot(&s, &r, Some(1060.0), 1120.5), Some(1120.0));
        // Missed slots collapse into the latest.
        assert_eq!(due_slot(&s, &r, Some(1060.0), 1500.0), Some(1480.0));
        // A slot more than a day late is not fired late.
        let (s, r) = rule("rate(7 days)", 0.0, 0.0);
        let week = 7.0 * 86400.0;
        assert_eq!(due_slot(&s, &r, None, week + 3600.0), Some(week));
        assert_eq!(due_slot(&s, &r, None, week + 86400.0 + 10.0), None);
    }

    #[test]
    fn a_cron_fires_on_the_wall_clock_and_not_for_slots_before_it_was_enabled() {
        // Every day at 03:00 UTC; created at 2026-03-04 12:00 UTC (1772625600).
        let (s, mut r) = rule("cron(0 3 * * ? *)", 1_772_625_600.0, 1_772_625_600.0);
        let next = 1_772_679_600.0; // 2026-03-05T03:00:00Z
        assert_eq!(due_slot(&s, &r, None, next - 1.0), None);
        assert_eq!(due_slot(&s, &r, None, next + 0.2), Some(next));
        // Disabled through the slot and enabled after it: the slot does not fire.
        r.enabled_at = next + 60.0;
        assert_eq!(due_slot(&s, &r, None, next + 120.0), None);
    }

    #[test]
    fn events_shapes_become_ecs_shapes() {
        let n = ev::NetworkConfiguration {
            awsvpc_configuration: Some(ev::AwsVpcConfiguration {
                subnets: Some(vec!["subnet-1".into()]),
                security_groups: None,
                assign_public_ip: Some(ev::AssignPublicIp::Enabled),
            }),
        };
        let e: ecs::NetworkConfiguration = ecs_shape(&n).unwrap();
        let a = e.awsvpc_configuration.unwrap();
        assert_eq!(a.subnets, Some(vec!["subnet-1".to_string()]));
        assert_eq!(a.assign_public_ip, Some(ecs::AssignPublicIp::Enabled));
        let l: ecs::LaunchType = ecs_enum("EC2").unwrap();
        assert_eq!(l, ecs::LaunchType::Ec2);
    }
}
