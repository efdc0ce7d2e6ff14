//! Delivery of the events berth's services put on the default bus: every event is matched
//! against the bus's enabled rules with an event pattern, and each matching rule's targets get
//! it — an ECS cluster runs the target's tasks (a client token of rule, target and event id, so
//! a repeated delivery starts nothing twice), a CloudWatch Logs log group gets the event as one
//! log event in a stream named after the event id; other targets are reported as undelivered.
//!
//! Events are queued in memory on the replica that made them (the agent's report arrived there)
//! and delivered from it: an event whose replica dies before delivery is lost (AWS promises at
//! least once; berth does not, yet — the README says so).

use crate::fire::{run, run_task_request, token_of};
use crate::rules::{rule_arn, RuleRecord, DEFAULT_BUS, RULES};
use crate::{Ctx, Events};
use berth_service::ApiError;
use berth_tasks::{BackgroundTask, Mode, TaskError, TaskSpec};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Every replica delivers the events it queued, every 250 ms.
pub struct DeliverEvents(pub Arc<Events>);

impl DeliverEvents {
    pub fn spec() -> TaskSpec {
        TaskSpec::new(
            "events_deliver",
            Duration::from_millis(250),
            Mode::EveryReplica,
        )
    }
}

#[async_trait::async_trait]
impl BackgroundTask for DeliverEvents {
    async fn activate(&self) -> Result<String, TaskError> {
        let events = self.0.queue.drain();
        if events.is_empty() {
            return Ok("nothing queued".into());
        }
        let ctx = Ctx {
            app: self.0.clone(),
            principal: crate::fire::system_principal(&self.0),
        };
        let n = deliver(&ctx, &events)
            .await
            .map_err(|e| format!("{}: {}", e.code, e.message))?;
        Ok(format!("{} events, {n} deliveries", events.len()))
    }
}

async fn deliver(ctx: &Ctx, events: &[Value]) -> Result<usize, ApiError> {
    let rules: Vec<(RuleRecord, Value)> = ctx
        .app
        .repo
        .list::<RuleRecord>(&format!("{RULES}{DEFAULT_BUS}/"))
        .await?
        .into_iter()
        .filter(|r| r.value.state.enabled() && !r.value.targets.is_empty())
        .filter_map(|r| {
            let p = serde_json::from_str(r.value.event_pattern.as_deref()?).ok()?;
            Some((r.value, p))
        })
        .collect();
    let mut n = 0;
    for event in events {
        for (rule, pattern) in &rules {
            if !crate::pattern::matches(pattern, event) {
                continue;
            }
            for target in &rule.targets {
                match deliver_one(ctx, rule, target, event).await {
                    Ok(()) => n += 1,
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, code = %e.code, error = %e.message, "event not delivered")
                    }
                }
            }
        }
    }
    Ok(n)
}

async fn deliver_one(
    ctx: &Ctx,
    rule: &RuleRecord,
    target: &Value,
    event: &Value,
) -> Result<(), ApiError> {
    let arn = target
        .get("Arn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
    let parsed = berth_core::Arn::parse(arn);
    match parsed.as_ref().map(|a| (a.service, a.resource)) {
        Some(("logs", resource)) => {
            let group = resource
                .strip_prefix("log-group:")
                .map(|g| g.strip_suffix(":*").unwrap_or(g))
                .ok_or_else(|| ApiError::new("ValidationException", format!("{arn} is not a log group")))?;
            let ms = (berth_service::now_epoch() * 1000.0) as i64;
            ctx.app
                .logs
                .write(group, id, vec![(ms, event.to_string())])
                .await
        }
        Some(("ecs", _)) => {
            let target_id = target.get("Id").and_then(Value::as_str).unwrap_or_default();
            let rarn = rule_arn(ctx, &rule.bus, &rule.name);
            let req = run_task_request(
                target,
                &format!("events-rule/{}", rule.name),
                &token_of(&[&rarn, target_id, id]),
            )?;
            run(ctx, &rule.name, req).await
        }
        _ => Err(ApiError::new(
            "UnsupportedTarget",
            format!("target {arn} is not delivered: berth delivers events to ECS clusters and log groups"),
        )),
    }
}
