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
use berth_wire::ecs;
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
pub(crate) fn system_principal(app: &Events) -> Principal {
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

/// One pass: fires every due slot of the rules and the schedules. Returns how many fired.
pub async fn fire_due(ctx: &Ctx) -> Result<usize, ApiError> {
    let repo = &ctx.app.repo;
    let rules = repo.list::<RuleRecord>(RULES).await?;
    let fired: HashMap<String, (i64, FiredRecord)> = repo
        .list::<FiredRecord>(FIRED)
        .await?
        .into_iter()
        .map(|f| (f.key, (f.revision, f.value)))
        .collect();
    let now = now_epoch();
    let mut n = crate::scheduler::fire_due_schedules(ctx, now).await?;
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

/// A client token for one (resource, target, slot): the same on every replica and every retry.
pub(crate) fn slot_token(resource_arn: &str, target_id: &str, slot: f64) -> String {
    token_of(&[resource_arn, target_id, &format!("{slot}")])
}

/// A RunTask client token made of `parts` (32 hex characters).
pub(crate) fn token_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Runs one target for one slot. Only ECS targets are delivered; others are reported.
async fn invoke(
    ctx: &Ctx,
    rule: &RuleRecord,
    target: &serde_json::Value,
    slot: f64,
) -> Result<(), ApiError> {
    let id = target
        .get("Id")
        .and_then(|i| i.as_str())
        .unwrap_or_default();
    let arn = rule_arn(ctx, &rule.bus, &rule.name);
    let req = run_task_request(
        target,
        &format!("events-rule/{}", rule.name),
        &slot_token(&arn, id, slot),
    )?;
    run(ctx, &rule.name, req).await
}

/// Runs a RunTask request for a rule or a schedule (`what` names it in the log).
pub(crate) async fn run(ctx: &Ctx, what: &str, req: ecs::RunTaskRequest) -> Result<(), ApiError> {
    let out = ctx.app.runner.run_task(ctx.principal.clone(), req).await?;
    let failures = out.failures.unwrap_or_default();
    if !failures.is_empty() {
        tracing::warn!(target = %what, ?failures, "scheduled tasks not all placed");
    }
    Ok(())
}

/// The RunTask request an ECS target (EventBridge's or Scheduler's JSON `Target`) makes: its
/// `EcsParameters` as RunTask's members (the two services spell ECS's members in PascalCase),
/// `Input` as the task overrides.
pub fn run_task_request(
    target: &serde_json::Value,
    started_by: &str,
    client_token: &str,
) -> Result<ecs::RunTaskRequest, ApiError> {
    use serde_json::Value;
    let arn = target
        .get("Arn")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    let Some(params) = target.get("EcsParameters").and_then(|p| p.as_object()) else {
        return Err(ApiError::new(
            "UnsupportedTarget",
            format!("target {arn} is not delivered: berth delivers to ECS clusters only"),
        ));
    };
    fn camel(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (lower_first(k), camel(v))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
            other => other.clone(),
        }
    }
    fn lower_first(k: &str) -> String {
        let mut c = k.chars();
        match c.next() {
            Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
            None => String::new(),
        }
    }
    let mut req = serde_json::Map::new();
    req.insert("cluster".into(), Value::String(arn.to_string()));
    for (k, v) in params {
        match k.as_str() {
            "TaskDefinitionArn" => {
                req.insert("taskDefinition".into(), v.clone());
            }
            "TaskCount" => {
                req.insert("count".into(), v.clone());
            }
            // EventBridge: [{Key, Value}]; Scheduler: [{"<key>": "<value>"}].
            "Tags" => {
                let tags: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|t| match t.as_object() {
                        Some(o) if o.contains_key("Key") => vec![serde_json::json!({
                            "key": o.get("Key"), "value": o.get("Value")
                        })],
                        Some(o) => o
                            .iter()
                            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                            .collect(),
                        None => vec![],
                    })
                    .collect();
                req.insert("tags".into(), Value::Array(tags));
            }
            other => {
                req.insert(lower_first(other), camel(v));
            }
        }
    }
    if let Some(input) = target.get("Input").and_then(|i| i.as_str()) {
        let overrides: Value = serde_json::from_str(input).map_err(|_| {
            ApiError::new("ValidationException", "Input of an ECS target is not JSON")
        })?;
        req.insert("overrides".into(), overrides);
    }
    req.insert("startedBy".into(), Value::String(started_by.to_string()));
    req.insert(
        "clientToken".into(),
        Value::String(client_token.to_string()),
    );
    serde_json::from_value(Value::Object(req)).map_err(|_| {
        ApiError::new(
            "ValidationException",
            "EcsParameters or Input has a value ECS does not take",
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
    fn an_ecs_target_becomes_a_run_task_request() {
        let target = serde_json::json!({
            "Id": "1",
            "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/c",
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "Input": "{\"containerOverrides\":[{\"name\":\"app\",\"command\":[\"echo\",\"hi\"]}]}",
            "EcsParameters": {
                "TaskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/t:1",
                "TaskCount": 3,
                "LaunchType": "EC2",
                "Group": "g",
                "NetworkConfiguration": {"awsvpcConfiguration": {"Subnets": ["s-1"], "AssignPublicIp": "DISABLED"}},
                "PlacementConstraints": [{"Type": "memberOf", "Expression": "attribute:x == y"}],
                "EnableECSManagedTags": true,
                "Tags": [{"Key": "k", "Value": "v"}]
            }
        });
        let r = run_task_request(&target, "events-rule/x", "tok").unwrap();
        assert_eq!(
            r.cluster.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:cluster/c")
        );
        assert_eq!(
            r.task_definition.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task-definition/t:1")
        );
        assert_eq!(r.count, Some(3));
        assert_eq!(r.launch_type, Some(ecs::LaunchType::Ec2));
        assert_eq!(r.group.as_deref(), Some("g"));
        let a = r
            .network_configuration
            .unwrap()
            .awsvpc_configuration
            .unwrap();
        assert_eq!(a.subnets, Some(vec!["s-1".to_string()]));
        assert_eq!(
            r.placement_constraints.unwrap()[0].expression.as_deref(),
            Some("attribute:x == y")
        );
        assert!(r.enable_ecs_managed_tags);
        assert_eq!(r.tags.unwrap()[0].key.as_deref(), Some("k"));
        let o = r.overrides.unwrap().container_overrides.unwrap();
        assert_eq!(
            o[0].command,
            Some(vec!["echo".to_string(), "hi".to_string()])
        );
        assert_eq!(
            (r.started_by.as_deref(), r.client_token.as_deref()),
            (Some("events-rule/x"), Some("tok"))
        );
        // Scheduler spells tags as maps.
        let mut s = target.clone();
        s["EcsParameters"]["Tags"] = serde_json::json!([{"team": "a", "env": "b"}]);
        let r = run_task_request(&s, "x", "t").unwrap();
        let mut tags: Vec<_> = r
            .tags
            .unwrap()
            .into_iter()
            .map(|t| (t.key.unwrap(), t.value.unwrap()))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("env".to_string(), "b".to_string()),
                ("team".to_string(), "a".to_string())
            ]
        );
        // Not an ECS target: not delivered.
        let sqs = serde_json::json!({"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"});
        assert_eq!(
            run_task_request(&sqs, "x", "t").unwrap_err().code,
            "UnsupportedTarget"
        );
    }
}
