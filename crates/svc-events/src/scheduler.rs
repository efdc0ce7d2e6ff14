//! Amazon EventBridge Scheduler (signing name `scheduler`, restJson1): schedule groups and
//! schedules — `at(…)`, `rate(…)`, `cron(…)` in a time zone, start and end dates, flexible time
//! windows, deletion after completion — whose ECS targets the executor runs like a rule's.
//!
//! Keys: `scheduler/groups/<group>` (`default` is implicit), `scheduler/schedules/<group>/<name>`,
//! `scheduler/fired/<group>/<name>` (the last fired slot).

use crate::fire::{run, run_task_request, slot_token};
use crate::schedule::Schedule;
use crate::{Ctx, Events};
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_service::codec::{decode_in, now_epoch, JsonDialect, Missing};
use berth_service::pagination::{decode_token, paginate};
use berth_service::repo::{to_bytes, Attempt, Change};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::scheduler as sc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub const DEFAULT_GROUP: &str = "default";

/// The operations the router serves (the README's table is checked against it).
pub const SERVED: &[&str] = &[
    "CreateSchedule",
    "GetSchedule",
    "UpdateSchedule",
    "DeleteSchedule",
    "ListSchedules",
    "CreateScheduleGroup",
    "GetScheduleGroup",
    "DeleteScheduleGroup",
    "ListScheduleGroups",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];
const GROUPS: &str = "scheduler/groups/";
pub(crate) const SCHEDULES: &str = "scheduler/schedules/";
pub(crate) const FIRED: &str = "scheduler/fired/";

fn group_key(g: &str) -> String {
    format!("{GROUPS}{g}")
}
fn schedule_key(g: &str, n: &str) -> String {
    format!("{SCHEDULES}{g}/{n}")
}
fn fired_key(g: &str, n: &str) -> String {
    format!("{FIRED}{g}/{n}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleGroupRecord {
    pub name: String,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// A schedule. Its target is kept as the caller's JSON (every field given back by GetSchedule).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub name: String,
    pub group: String,
    pub expression: String,
    /// IANA zone `cron` and `at` are read in (UTC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    pub target: Value,
    /// FlexibleTimeWindow: None = OFF, Some(minutes) = FLEXIBLE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flexible_minutes: Option<u32>,
    /// ActionAfterCompletion DELETE.
    #[serde(default)]
    pub delete_after_completion: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    /// When its expression or start was set, or it was enabled: no slot before this fires.
    pub enabled_at: f64,
}

impl ScheduleRecord {
    fn tz(&self) -> chrono_tz::Tz {
        self.timezone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::Tz::UTC)
    }
}

/// The slot a schedule should run now, if any, and whether it is its last. A rate's first slot
/// is its start (or when it was made); `cron` and `at` slots are wall-clock times in its zone;
/// start and end bound every slot but an `at`'s. A FLEXIBLE schedule runs a slot up to its
/// window later, by a delay fixed per slot (`jitter`, 0–1) so every replica agrees.
pub fn due_schedule(
    schedule: &Schedule,
    rec: &ScheduleRecord,
    fired: Option<f64>,
    now: f64,
    jitter: impl Fn(f64) -> f64,
) -> Option<(f64, bool)> {
    let tz = rec.tz();
    let at = matches!(schedule, Schedule::At(_));
    let anchor = if at {
        rec.enabled_at
    } else {
        rec.start.unwrap_or(rec.enabled_at)
    };
    let floor = if at {
        f64::NEG_INFINITY
    } else {
        rec.start.unwrap_or(f64::NEG_INFINITY)
    };
    // A rate's first slot is its anchor itself (a rule's is one period later): count the
    // periods from one period before it.
    let anchor = match schedule {
        Schedule::Rate { seconds } => anchor - *seconds as f64,
        _ => anchor,
    };
    let from = fired
        .unwrap_or(f64::NEG_INFINITY)
        // Nothing from before it was made or enabled (a rate's first slot is that moment).
        .max(match schedule {
            Schedule::Rate { .. } => rec.enabled_at - 0.001,
            _ => rec.enabled_at,
        })
        // The start date is inclusive.
        .max(floor - 0.001);
    let from = if at {
        fired.unwrap_or(f64::NEG_INFINITY)
    } else {
        from
    };
    let mut slot = schedule.next_after_in(tz, anchor, from)?;
    let end = if at {
        f64::INFINITY
    } else {
        rec.end.unwrap_or(f64::INFINITY)
    };
    if slot > end {
        return None;
    }
    let delay = |slot: f64| {
        rec.flexible_minutes.map_or(0.0, |m| {
            (jitter(slot).clamp(0.0, 1.0) * m as f64 * 60.0).floor()
        })
    };
    if slot + delay(slot) > now {
        return None;
    }
    // Catch up to the latest due slot.
    while let Some(n) = schedule.next_after_in(tz, anchor, slot) {
        if n > end || n + delay(n) > now {
            break;
        }
        slot = n;
    }
    if now - slot > crate::fire::MAX_EVENT_AGE {
        return None;
    }
    let last = schedule
        .next_after_in(tz, anchor, slot)
        .is_none_or(|n| n > end);
    Some((slot, last))
}

/// A per-slot delay fraction in [0, 1): the same on every replica.
fn jitter_of(arn: &str) -> impl Fn(f64) -> f64 + '_ {
    move |slot| {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(arn.as_bytes());
        h.update(format!("{slot}").as_bytes());
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as f64 / (u32::MAX as f64 + 1.0)
    }
}

/// The executor's part for schedules (called in the same leader-only pass as the rules').
pub(crate) async fn fire_due_schedules(ctx: &Ctx, now: f64) -> Result<usize, ApiError> {
    let repo = &ctx.app.repo;
    let schedules = repo.list::<ScheduleRecord>(SCHEDULES).await?;
    if schedules.is_empty() {
        return Ok(0);
    }
    let fired: HashMap<String, (i64, f64)> = repo
        .list::<crate::rules::FiredRecord>(FIRED)
        .await?
        .into_iter()
        .map(|f| (f.key, (f.revision, f.value.slot)))
        .collect();
    let mut n = 0;
    for s in schedules {
        let rec = s.value;
        if !rec.enabled {
            continue;
        }
        let Ok(schedule) = Schedule::parse_for_scheduler(&rec.expression) else {
            continue;
        };
        let arn = schedule_arn(ctx, &rec.group, &rec.name);
        let fkey = fired_key(&rec.group, &rec.name);
        let last = fired.get(&fkey);
        let Some((slot, final_slot)) =
            due_schedule(&schedule, &rec, last.map(|(_, f)| *f), now, jitter_of(&arn))
        else {
            continue;
        };
        let started_by: String = format!("chronos-schedule/{}", rec.name)
            .chars()
            .take(36)
            .collect();
        match run_task_request(&rec.target, &started_by, &slot_token(&arn, "", slot)) {
            Ok(req) => {
                if let Err(e) = run(ctx, &arn, req).await {
                    tracing::warn!(schedule = %arn, code = %e.code, error = %e.message, "schedule target invocation failed");
                }
            }
            Err(e) => {
                tracing::warn!(schedule = %arn, code = %e.code, error = %e.message, "schedule target not delivered")
            }
        }
        let mut txn = Txn::new()
            .when(Compare::ModRevision {
                key: fkey.clone(),
                revision: last.map_or(0, |(rev, _)| *rev),
            })
            .put(
                fkey.clone(),
                to_bytes(&crate::rules::FiredRecord { slot, at: now }),
            );
        if final_slot && rec.delete_after_completion {
            // ActionAfterCompletion DELETE: gone after its last run.
            txn = txn
                .when(Compare::ModRevision {
                    key: s.key.clone(),
                    revision: s.revision,
                })
                .delete(s.key.clone())
                .delete(fkey);
            tracing::info!(schedule = %arn, "schedule completed and deleted");
        }
        repo.commit(txn).await?;
        tracing::info!(schedule = %arn, slot, late = now - slot, "schedule fired");
        n += 1;
    }
    Ok(n)
}

// ------------------------------------------------------------------------------------------------
// The REST API

/// restJson1 errors: the status, `x-amzn-ErrorType`, `{"Message": …}`.
fn error_response(e: &ApiError) -> Response {
    let status = match e.code.as_ref() {
        "ResourceNotFoundException" => StatusCode::NOT_FOUND,
        "ConflictException" => StatusCode::CONFLICT,
        "AccessDeniedException" => StatusCode::FORBIDDEN,
        "ServiceQuotaExceededException" => StatusCode::PAYMENT_REQUIRED,
        "InternalServerException" => StatusCode::INTERNAL_SERVER_ERROR,
        _ if e.status.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        _ => e.status,
    };
    let code = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "InternalServerException"
    } else {
        &e.code
    };
    let mut r = (
        status,
        [("content-type", "application/json")],
        json!({ "Message": e.message }).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

const DIALECT: JsonDialect = JsonDialect {
    missing: Missing::Validation("ValidationException"),
    invalid_value_code: "ValidationException",
    enum_texts: &[],
};

/// A REST request's parts, as `serve` checks them.
type Req = (Method, Uri, HeaderMap, Bytes);

/// The extractor of a whole request as [`Req`] (every handler takes it after its path).
pub struct Raw(Req);

impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let head = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        );
        let bytes = Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Raw((head.0, head.1, head.2, bytes)))
    }
}

/// One request: authenticated, authorized for `op`, then `f`.
async fn serve<F, Fut>(app: Arc<Events>, op: &'static str, req: Req, f: F) -> Response
where
    F: FnOnce(Ctx, Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let (method, uri, headers, body) = req;
    let Some(auth) = app.auth.clone() else {
        return error_response(&ApiError::server("no authenticator"));
    };
    let principal = match auth.authenticate(&method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = berth_auth::authorize(principal.role, "scheduler", op) {
        let e = ApiError::new(
            "AccessDeniedException",
            e.with_principal(principal.arn.clone()).message(),
        )
        .with_status(StatusCode::FORBIDDEN);
        return error_response(&e);
    }
    let ctx = Ctx { app, principal };
    match f(ctx, body).await {
        Ok(v) => ok(v),
        Err(e) => {
            tracing::debug!(op, code = %e.code, error = %e.message, "scheduler request rejected");
            error_response(&e)
        }
    }
}

/// Scheduler's routes.
pub fn router(app: Arc<Events>) -> Router {
    Router::new()
        .route("/schedules", get(list_schedules))
        .route(
            "/schedules/{name}",
            get(get_schedule)
                .post(create_schedule)
                .put(update_schedule)
                .delete(delete_schedule),
        )
        .route("/schedule-groups", get(list_groups))
        .route(
            "/schedule-groups/{name}",
            get(get_group).post(create_group).delete(delete_group),
        )
        .route(
            "/tags/{*arn}",
            get(list_tags).post(tag_resource).delete(untag_resource),
        )
        .with_state(app)
}

/// The query string's values (a key may repeat).
fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn q1(q: &[(String, String)], k: &str) -> Option<String> {
    q.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone())
}

fn validation(m: impl Into<String>) -> ApiError {
    ApiError::new("ValidationException", m)
}

fn not_found(m: impl Into<String>) -> ApiError {
    ApiError::new("ResourceNotFoundException", m).with_status(StatusCode::NOT_FOUND)
}

fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new("ConflictException", m).with_status(StatusCode::CONFLICT)
}

fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z-_.]+"
        )))
    }
}

fn arn_of(ctx: &Ctx, resource: &str) -> String {
    let s = &ctx.app.scope;
    format!(
        "arn:{}:scheduler:{}:{}:{resource}",
        s.partition, s.region, s.account
    )
}

fn schedule_arn(ctx: &Ctx, group: &str, name: &str) -> String {
    arn_of(ctx, &format!("schedule/{group}/{name}"))
}

fn group_arn(ctx: &Ctx, group: &str) -> String {
    arn_of(ctx, &format!("schedule-group/{group}"))
}

async fn existing_group(ctx: &Ctx, group: &str) -> Result<(), ApiError> {
    if group == DEFAULT_GROUP
        || ctx
            .app
            .repo
            .get::<ScheduleGroupRecord>(&group_key(group))
            .await?
            .is_some()
    {
        Ok(())
    } else {
        Err(not_found(format!("Schedule group {group} does not exist.")))
    }
}

/// The body with the URI's name in it, decoded as `T`.
fn decode_with_name<T: serde::de::DeserializeOwned + berth_wire::Validate>(
    body: &[u8],
    name: &str,
) -> Result<T, ApiError> {
    let mut v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|_| ApiError::serialization("The request body is not valid JSON."))?
    };
    if let Value::Object(m) = &mut v {
        m.insert("Name".into(), Value::String(name.to_string()));
    }
    decode_in(&serde_json::to_vec(&v).unwrap_or_default(), &DIALECT)
}

/// What Create and Update take, checked.
struct ScheduleInput {
    group: String,
    expression: String,
    timezone: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    description: Option<String>,
    enabled: bool,
    target: Value,
    flexible_minutes: Option<u32>,
    delete_after_completion: bool,
    kms_key_arn: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn schedule_input(
    raw: &[u8],
    group: Option<String>,
    expression: Option<String>,
    timezone: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    description: Option<String>,
    state: Option<sc::ScheduleState>,
    target: Option<&sc::Target>,
    window: Option<&sc::FlexibleTimeWindow>,
    after: Option<sc::ActionAfterCompletion>,
    kms_key_arn: Option<String>,
) -> Result<ScheduleInput, ApiError> {
    let group = group.unwrap_or_else(|| DEFAULT_GROUP.into());
    check_name(&group, "groupName")?;
    let expression = expression.unwrap_or_default();
    Schedule::parse_for_scheduler(&expression)
        .map_err(|_| validation(format!("Invalid Schedule Expression {expression}.")))?;
    if let Some(z) = &timezone {
        z.parse::<chrono_tz::Tz>()
            .map_err(|_| validation(format!("Invalid time zone: {z}.")))?;
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            return Err(validation("The EndDate must be after the StartDate."));
        }
    }
    let target_json = serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| v.get("Target").cloned())
        .unwrap_or(Value::Null);
    let t = target.ok_or_else(|| validation("Target is required."))?;
    if t.arn.as_deref().unwrap_or_default().is_empty()
        || t.role_arn.as_deref().unwrap_or_default().is_empty()
    {
        return Err(validation("A target needs an Arn and a RoleArn."));
    }
    if let Some(p) = &t.ecs_parameters {
        if p.task_definition_arn
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            return Err(validation("EcsParameters needs a TaskDefinitionArn."));
        }
        if let Some(input) = &t.input {
            if serde_json::from_str::<berth_wire::ecs::TaskOverride>(input).is_err() {
                return Err(validation(
                    "Input of an ECS target must be the JSON of task overrides.",
                ));
            }
        }
    }
    let window = window.ok_or_else(|| validation("FlexibleTimeWindow is required."))?;
    let flexible_minutes =
        match window.mode {
            Some(sc::FlexibleTimeWindowMode::Flexible) => match window.maximum_window_in_minutes {
                Some(m) if (1..=1440).contains(&m) => Some(m as u32),
                _ => return Err(validation(
                    "MaximumWindowInMinutes must be between 1 and 1440 when the mode is FLEXIBLE.",
                )),
            },
            _ => None,
        };
    Ok(ScheduleInput {
        group,
        expression,
        timezone,
        start,
        end,
        description,
        enabled: state != Some(sc::ScheduleState::Disabled),
        target: target_json,
        flexible_minutes,
        delete_after_completion: after == Some(sc::ActionAfterCompletion::Delete),
        kms_key_arn,
    })
}

fn schedule_to_json(ctx: &Ctx, r: &ScheduleRecord) -> Value {
    let mut target = r.target.clone();
    if let Value::Object(m) = &mut target {
        m.entry("RetryPolicy").or_insert_with(
            || json!({"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}),
        );
    }
    let mut v = json!({
        "Arn": schedule_arn(ctx, &r.group, &r.name),
        "GroupName": r.group,
        "Name": r.name,
        "ScheduleExpression": r.expression,
        "ScheduleExpressionTimezone": r.timezone.as_deref().unwrap_or("UTC"),
        "State": if r.enabled { "ENABLED" } else { "DISABLED" },
        "CreationDate": r.created_at,
        "LastModificationDate": r.updated_at,
        "Target": target,
        "FlexibleTimeWindow": match r.flexible_minutes {
            Some(m) => json!({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": m}),
            None => json!({"Mode": "OFF"}),
        },
        "ActionAfterCompletion": if r.delete_after_completion { "DELETE" } else { "NONE" },
    });
    let m = v.as_object_mut().expect("an object");
    for (k, val) in [
        ("StartDate", r.start.map(Value::from)),
        ("EndDate", r.end.map(Value::from)),
        ("Description", r.description.clone().map(Value::from)),
        ("KmsKeyArn", r.kms_key_arn.clone().map(Value::from)),
    ] {
        if let Some(val) = val {
            m.insert(k.into(), val);
        }
    }
    v
}

async fn create_schedule(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "CreateSchedule", req, |ctx, body| async move {
        check_name(&name, "name")?;
        let req: sc::CreateScheduleInput = decode_with_name(&body, &name)?;
        let input = schedule_input(
            &body,
            req.group_name.clone(),
            req.schedule_expression.clone(),
            req.schedule_expression_timezone.clone(),
            req.start_date,
            req.end_date,
            req.description.clone(),
            req.state,
            req.target.as_ref(),
            req.flexible_time_window.as_ref(),
            req.action_after_completion,
            req.kms_key_arn.clone(),
        )?;
        existing_group(&ctx, &input.group).await?;
        let group = input.group.clone();
        ctx.app
            .repo
            .update::<ScheduleRecord, _>(&schedule_key(&group, &name), |cur| {
                if cur.is_some() {
                    return Err(conflict(format!("Schedule {name} already exists.")));
                }
                let now = now_epoch();
                Ok(Change::Put(
                    ScheduleRecord {
                        name: name.clone(),
                        group: group.clone(),
                        expression: input.expression.clone(),
                        timezone: input.timezone.clone(),
                        start: input.start,
                        end: input.end,
                        description: input.description.clone(),
                        enabled: input.enabled,
                        target: input.target.clone(),
                        flexible_minutes: input.flexible_minutes,
                        delete_after_completion: input.delete_after_completion,
                        kms_key_arn: input.kms_key_arn.clone(),
                        created_at: now,
                        updated_at: now,
                        enabled_at: now,
                    },
                    (),
                ))
            })
            .await?;
        tracing::info!(schedule = %name, group = %group, "schedule created");
        Ok(json!({ "ScheduleArn": schedule_arn(&ctx, &group, &name) }))
    })
    .await
}

async fn update_schedule(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "UpdateSchedule", req, |ctx, body| async move {
        let req: sc::UpdateScheduleInput = decode_with_name(&body, &name)?;
        let input = schedule_input(
            &body,
            req.group_name.clone(),
            req.schedule_expression.clone(),
            req.schedule_expression_timezone.clone(),
            req.start_date,
            req.end_date,
            req.description.clone(),
            req.state,
            req.target.as_ref(),
            req.flexible_time_window.as_ref(),
            req.action_after_completion,
            req.kms_key_arn.clone(),
        )?;
        let group = input.group.clone();
        existing_group(&ctx, &group).await?;
        ctx.app
            .repo
            .update::<ScheduleRecord, _>(&schedule_key(&group, &name), |cur| {
                let mut r =
                    cur.ok_or_else(|| not_found(format!("Schedule {name} does not exist.")))?;
                let now = now_epoch();
                let moved = r.expression != input.expression
                    || r.start != input.start
                    || r.timezone != input.timezone
                    || (!r.enabled && input.enabled);
                if moved {
                    r.enabled_at = now;
                }
                r.expression = input.expression.clone();
                r.timezone = input.timezone.clone();
                r.start = input.start;
                r.end = input.end;
                r.description = input.description.clone();
                r.enabled = input.enabled;
                r.target = input.target.clone();
                r.flexible_minutes = input.flexible_minutes;
                r.delete_after_completion = input.delete_after_completion;
                r.kms_key_arn = input.kms_key_arn.clone();
                r.updated_at = now;
                Ok(Change::Put(r, ()))
            })
            .await?;
        Ok(json!({ "ScheduleArn": schedule_arn(&ctx, &group, &name) }))
    })
    .await
}

async fn get_schedule(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    let q = query(&req.1);
    serve(app, "GetSchedule", req, |ctx, _| async move {
        let group = q1(&q, "groupName").unwrap_or_else(|| DEFAULT_GROUP.into());
        existing_group(&ctx, &group).await?;
        let r = ctx
            .app
            .repo
            .get::<ScheduleRecord>(&schedule_key(&group, &name))
            .await?
            .ok_or_else(|| not_found(format!("Schedule {name} does not exist.")))?;
        Ok(schedule_to_json(&ctx, &r.value))
    })
    .await
}

async fn delete_schedule(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    let q = query(&req.1);
    serve(app, "DeleteSchedule", req, |ctx, _| async move {
        let group = q1(&q, "groupName").unwrap_or_else(|| DEFAULT_GROUP.into());
        existing_group(&ctx, &group).await?;
        let key = schedule_key(&group, &name);
        let fired = fired_key(&group, &name);
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let r = repo
                .get::<ScheduleRecord>(&key)
                .await?
                .ok_or_else(|| not_found(format!("Schedule {name} does not exist.")))?;
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
        Ok(json!({}))
    })
    .await
}

fn max_results(q: &[(String, String)]) -> Result<usize, ApiError> {
    match q1(q, "MaxResults") {
        None => Ok(100),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(validation(format!(
                "1 validation error detected: Value '{v}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100"
            ))),
        },
    }
}

async fn list_schedules(State(app): State<Arc<Events>>, Raw(req): Raw) -> Response {
    let q = query(&req.1);
    serve(app, "ListSchedules", req, |ctx, _| async move {
        let limit = max_results(&q)?;
        let after = decode_token(q1(&q, "NextToken").as_deref())?;
        let group = q1(&q, "ScheduleGroup");
        if let Some(g) = &group {
            existing_group(&ctx, g).await?;
        }
        let prefix = q1(&q, "NamePrefix").unwrap_or_default();
        let state = q1(&q, "State");
        let scope = match &group {
            Some(g) => format!("{SCHEDULES}{g}/"),
            None => SCHEDULES.to_string(),
        };
        let items = ctx
            .app
            .repo
            .list::<ScheduleRecord>(&scope)
            .await?
            .into_iter()
            .filter(|s| s.value.name.starts_with(&prefix))
            .filter(|s| {
                state.as_deref().is_none_or(|st| {
                    st == if s.value.enabled {
                        "ENABLED"
                    } else {
                        "DISABLED"
                    }
                })
            })
            .map(|s| {
                let r = &s.value;
                let summary = json!({
                    "Arn": schedule_arn(&ctx, &r.group, &r.name),
                    "Name": r.name,
                    "GroupName": r.group,
                    "State": if r.enabled { "ENABLED" } else { "DISABLED" },
                    "CreationDate": r.created_at,
                    "LastModificationDate": r.updated_at,
                    "Target": {"Arn": r.target.get("Arn").cloned().unwrap_or(Value::Null)},
                });
                (s.key.clone(), summary)
            })
            .collect();
        let (schedules, next) = paginate(items, after.as_deref(), limit, false);
        let mut out = json!({ "Schedules": schedules });
        if let Some(n) = next {
            out["NextToken"] = Value::String(n);
        }
        Ok(out)
    })
    .await
}

fn group_json(ctx: &Ctx, g: Option<&ScheduleGroupRecord>, name: &str) -> Value {
    let mut v = json!({"Arn": group_arn(ctx, name), "Name": name, "State": "ACTIVE"});
    if let Some(g) = g {
        v["CreationDate"] = json!(g.created_at);
        v["LastModificationDate"] = json!(g.updated_at);
    }
    v
}

fn tags_in(tags: Option<&[sc::Tag]>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tags.unwrap_or_default() {
        let k = t.key.clone().unwrap_or_default();
        if k.is_empty() || k.len() > 128 {
            return Err(validation("Tag keys are 1 to 128 characters."));
        }
        out.retain(|(x, _)| *x != k);
        out.push((k, t.value.clone().unwrap_or_default()));
    }
    Ok(out)
}

async fn create_group(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "CreateScheduleGroup", req, |ctx, body| async move {
        check_name(&name, "name")?;
        if name == DEFAULT_GROUP {
            return Err(validation(
                "This operation cannot be performed on schedule group default.",
            ));
        }
        let req: sc::CreateScheduleGroupInput = decode_with_name(&body, &name)?;
        let tags = tags_in(req.tags.as_deref())?;
        ctx.app
            .repo
            .update::<ScheduleGroupRecord, _>(&group_key(&name), |cur| {
                if cur.is_some() {
                    return Err(conflict(format!("Schedule group {name} already exists.")));
                }
                let now = now_epoch();
                Ok(Change::Put(
                    ScheduleGroupRecord {
                        name: name.clone(),
                        created_at: now,
                        updated_at: now,
                        tags: tags.clone(),
                    },
                    (),
                ))
            })
            .await?;
        Ok(json!({ "ScheduleGroupArn": group_arn(&ctx, &name) }))
    })
    .await
}

async fn get_group(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "GetScheduleGroup", req, |ctx, _| async move {
        if name == DEFAULT_GROUP {
            return Ok(group_json(&ctx, None, &name));
        }
        let g = ctx
            .app
            .repo
            .get::<ScheduleGroupRecord>(&group_key(&name))
            .await?
            .ok_or_else(|| not_found(format!("Schedule group {name} does not exist.")))?;
        Ok(group_json(&ctx, Some(&g.value), &name))
    })
    .await
}

async fn delete_group(
    State(app): State<Arc<Events>>,
    Path(name): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "DeleteScheduleGroup", req, |ctx, _| async move {
        if name == DEFAULT_GROUP {
            return Err(validation(
                "This operation cannot be performed on schedule group default.",
            ));
        }
        let key = group_key(&name);
        let repo = &ctx.app.repo;
        repo.get::<ScheduleGroupRecord>(&key)
            .await?
            .ok_or_else(|| not_found(format!("Schedule group {name} does not exist.")))?;
        // Deleting a group deletes its schedules (AWS does so asynchronously; berth at once).
        let txn = Txn::new()
            .delete(key)
            .delete_prefix(format!("{SCHEDULES}{name}/"))
            .delete_prefix(format!("{FIRED}{name}/"));
        repo.commit(txn).await?;
        Ok(json!({}))
    })
    .await
}

async fn list_groups(State(app): State<Arc<Events>>, Raw(req): Raw) -> Response {
    let q = query(&req.1);
    serve(app, "ListScheduleGroups", req, |ctx, _| async move {
        let limit = max_results(&q)?;
        let after = decode_token(q1(&q, "NextToken").as_deref())?;
        let prefix = q1(&q, "NamePrefix").unwrap_or_default();
        let mut items: Vec<(String, Value)> =
            vec![(group_key(""), group_json(&ctx, None, DEFAULT_GROUP))];
        for g in ctx.app.repo.list::<ScheduleGroupRecord>(GROUPS).await? {
            items.push((
                g.key.clone(),
                group_json(&ctx, Some(&g.value), &g.value.name),
            ));
        }
        items.retain(|(_, g)| g["Name"].as_str().unwrap_or_default().starts_with(&prefix));
        let (groups, next) = paginate(items, after.as_deref(), limit, false);
        let mut out = json!({ "ScheduleGroups": groups });
        if let Some(n) = next {
            out["NextToken"] = Value::String(n);
        }
        Ok(out)
    })
    .await
}

/// Scheduler tags schedule groups (not schedules).
async fn group_of_arn(ctx: &Ctx, arn: &str) -> Result<String, ApiError> {
    let prefix = group_arn(ctx, "");
    let name = arn
        .strip_prefix(&prefix)
        .filter(|n| !n.is_empty() && *n != DEFAULT_GROUP)
        .ok_or_else(|| not_found(format!("Resource {arn} does not exist.")))?;
    ctx.app
        .repo
        .get::<ScheduleGroupRecord>(&group_key(name))
        .await?
        .ok_or_else(|| not_found(format!("Resource {arn} does not exist.")))?;
    Ok(name.to_string())
}

async fn list_tags(
    State(app): State<Arc<Events>>,
    Path(arn): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "ListTagsForResource", req, |ctx, _| async move {
        let g = group_of_arn(&ctx, &arn).await?;
        let rec = ctx
            .app
            .repo
            .get::<ScheduleGroupRecord>(&group_key(&g))
            .await?
            .ok_or_else(|| not_found(format!("Resource {arn} does not exist.")))?;
        let tags: Vec<Value> = rec
            .value
            .tags
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        Ok(json!({ "Tags": tags }))
    })
    .await
}

async fn tag_resource(
    State(app): State<Arc<Events>>,
    Path(arn): Path<String>,
    Raw(req): Raw,
) -> Response {
    serve(app, "TagResource", req, |ctx, body| async move {
        let g = group_of_arn(&ctx, &arn).await?;
        let mut v: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::serialization("The request body is not valid JSON."))?;
        v["ResourceArn"] = Value::String(arn.clone());
        let req: sc::TagResourceInput =
            decode_in(&serde_json::to_vec(&v).unwrap_or_default(), &DIALECT)?;
        let new = tags_in(req.tags.as_deref())?;
        ctx.app
            .repo
            .update::<ScheduleGroupRecord, _>(&group_key(&g), |cur| {
                let mut r =
                    cur.ok_or_else(|| not_found(format!("Resource {arn} does not exist.")))?;
                for (k, v) in &new {
                    r.tags.retain(|(x, _)| x != k);
                    r.tags.push((k.clone(), v.clone()));
                }
                Ok(Change::Put(r, ()))
            })
            .await?;
        Ok(json!({}))
    })
    .await
}

async fn untag_resource(
    State(app): State<Arc<Events>>,
    Path(arn): Path<String>,
    Raw(req): Raw,
) -> Response {
    let keys: Vec<String> = query(&req.1)
        .into_iter()
        .filter(|(k, _)| k == "TagKeys")
        .map(|(_, v)| v)
        .collect();
    serve(app, "UntagResource", req, |ctx, _| async move {
        let g = group_of_arn(&ctx, &arn).await?;
        ctx.app
            .repo
            .update::<ScheduleGroupRecord, _>(&group_key(&g), |cur| {
                let mut r =
                    cur.ok_or_else(|| not_found(format!("Resource {arn} does not exist.")))?;
                r.tags.retain(|(k, _)| !keys.contains(k));
                Ok(Change::Put(r, ()))
            })
            .await?;
        Ok(json!({}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(expr: &str) -> (Schedule, ScheduleRecord) {
        (
            Schedule::parse_for_scheduler(expr).unwrap(),
            ScheduleRecord {
                name: "s".into(),
                group: "default".into(),
                expression: expr.into(),
                timezone: None,
                start: None,
                end: None,
                description: None,
                enabled: true,
                target: Value::Null,
                flexible_minutes: None,
                delete_after_completion: false,
                kms_key_arn: None,
                created_at: 1000.0,
                updated_at: 1000.0,
                enabled_at: 1000.0,
            },
        )
    }

    #[test]
    fn a_rate_runs_at_once_then_every_period_within_start_and_end() {
        let (s, mut r) = rec("rate(5 minutes)");
        let none = |_| 0.0;
        assert_eq!(
            due_schedule(&s, &r, None, 1000.5, none),
            Some((1000.0, false))
        );
        assert_eq!(due_schedule(&s, &r, Some(1000.0), 1299.0, none), None);
        assert_eq!(
            due_schedule(&s, &r, Some(1000.0), 1300.0, none),
            Some((1300.0, false))
        );
        // A start date: the first slot is the start; an end date ends it (its last slot known).
        r.start = Some(2000.0);
        r.end = Some(2600.0);
        assert_eq!(due_schedule(&s, &r, None, 1999.0, none), None);
        assert_eq!(
            due_schedule(&s, &r, None, 2000.0, none),
            Some((2000.0, false))
        );
        assert_eq!(
            due_schedule(&s, &r, Some(2300.0), 2600.0, none),
            Some((2600.0, true))
        );
        assert_eq!(due_schedule(&s, &r, Some(2600.0), 5000.0, none), None);
    }

    #[test]
    fn an_at_runs_once_and_a_flexible_window_delays_within_it() {
        let (s, r) = rec("at(1970-01-01T01:00:00)");
        let none = |_| 0.0;
        assert_eq!(due_schedule(&s, &r, None, 3599.0, none), None);
        assert_eq!(
            due_schedule(&s, &r, None, 3600.0, none),
            Some((3600.0, true))
        );
        assert_eq!(due_schedule(&s, &r, Some(3600.0), 9999.0, none), None);
        let (s, mut r) = rec("rate(1 hour)");
        r.flexible_minutes = Some(10);
        let half = |_| 0.5;
        assert_eq!(
            due_schedule(&s, &r, Some(1000.0), 4600.0 + 299.0, half),
            None
        );
        assert_eq!(
            due_schedule(&s, &r, Some(1000.0), 4600.0 + 300.0, half),
            Some((4600.0, false))
        );
    }
}
