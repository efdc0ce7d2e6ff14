//! The placement loop: filter, score, choose, account, repeat `count` times.

use crate::error::PlacementError;
use crate::filters::{FilterCtx, FilterStage, StageCounts};
use crate::index::ClusterIndex;
use crate::metric::{
    ClosestMatch, Failure, InstanceExplanation, Placement, PlacementMetric, PlacementOutcome,
    StageCheck, StepRecord,
};
use crate::request::{
    validate_constraints, validate_strategies, Constraint, LaunchType, PlacementRequest, Strategy,
};
use crate::rng::StepRng;

/// The most tasks one placement call accepts (RunTask itself allows 10; a placement dry-run may
/// ask for more at once).
pub const MAX_COUNT: u32 = 100_000;

pub(crate) const RANDOM_SALT: u64 = 0x5EED_0F7A_5C00;
use crate::strategy::{Scorer, MAX_KEYS};

/// Validated inputs of a request.
pub(crate) struct Validated {
    pub strategies: Vec<Strategy>,
    pub constraints: Vec<Constraint>,
}

fn validate(req: &PlacementRequest) -> Result<Validated, PlacementError> {
    let t = &req.task;
    if t.launch_type == LaunchType::Fargate {
        return Err(PlacementError::invalid_parameter(
            "Task placement strategies and constraints are not supported for tasks using the FARGATE launch type.",
        ));
    }
    if !t.compatibilities.is_empty() && !t.compatibilities.contains(&t.launch_type) {
        return Err(PlacementError::invalid_parameter(format!(
            "Task definition does not support launch_type {}.",
            t.launch_type.as_str()
        )));
    }
    if req.count > MAX_COUNT {
        return Err(PlacementError::invalid_parameter(format!(
            "count must be at most {MAX_COUNT} for one placement call."
        )));
    }
    if t.cpu < 0 || t.memory < 0 || t.gpu < 0 {
        return Err(PlacementError::invalid_parameter(
            "Task cpu, memory and gpu must not be negative.",
        ));
    }
    Ok(Validated {
        strategies: validate_strategies(&req.strategies)?,
        constraints: validate_constraints(&req.constraints, &req.task.task_definition_constraints)?,
    })
}

/// Validates a request's constraints and strategies without placing anything (for
/// CreateService/UpdateService/RunTask input validation).
pub fn validate_request(
    req: &PlacementRequest,
) -> Result<(Vec<Strategy>, Vec<Constraint>), PlacementError> {
    let v = validate(req)?;
    Ok((v.strategies, v.constraints))
}

pub(crate) fn no_instances() -> PlacementError {
    PlacementError::invalid_parameter("No Container Instances were found in your cluster.")
}

/// Places `req.count` tasks on the indexed cluster (RunTask, and the service scheduler).
///
/// Calls of up to 64 tasks take the ordered walk (see `ordered.rs`): instances are visited in
/// the first strategy's order and the walk stops as soon as nothing later can win, so a
/// placement costs about the same at 100 or 10,000 instances. Larger calls take
/// [`place_exhaustive`]. Both choose an instance with the best key of the strategy chain; they
/// may break exact ties differently.
///
/// Errors: `InvalidParameterException` for invalid constraints/strategies/expressions, an
/// incompatible launch type, or an empty cluster ("No Container Instances were found in your
/// cluster."). Otherwise every task is either placed or reported in `failures`.
pub fn place(
    idx: &ClusterIndex<'_>,
    req: &PlacementRequest,
) -> Result<PlacementOutcome, PlacementError> {
    let v = validate(req)?;
    if req.count <= crate::ordered::ORDERED_MAX_COUNT {
        return crate::ordered::place_ordered(idx, req, &v);
    }
    exhaustive(idx, req, &v)
}

/// [`place`] by filtering and scoring every instance for every task: O(instances) per
/// placement. Its metric counts every instance's rejections (`initial_rejections`,
/// `final_rejections`); ties go to the lowest seeded draw, then the ARN.
pub fn place_exhaustive(
    idx: &ClusterIndex<'_>,
    req: &PlacementRequest,
) -> Result<PlacementOutcome, PlacementError> {
    let v = validate(req)?;
    exhaustive(idx, req, &v)
}

fn exhaustive(
    idx: &ClusterIndex<'_>,
    req: &PlacementRequest,
    v: &Validated,
) -> Result<PlacementOutcome, PlacementError> {
    if idx.is_empty() {
        return Err(no_instances());
    }
    let n = idx.len();
    let insts = &idx.snapshot.instances;
    let mut ctx = FilterCtx::new(idx, &req.task, &v.constraints, true);
    let mut scorers = scorers_for(idx, req, v);
    let k = scorers.len();

    let (mut fail, mut counts) = evaluate_all(&ctx);
    let mut metric = PlacementMetric {
        instances_evaluated: n,
        strategies: v.strategies.iter().map(Strategy::label).collect(),
        initial_rejections: counts,
        ..PlacementMetric::default()
    };
    let mut out = PlacementOutcome {
        placements: Vec::with_capacity(req.count.min(1024) as usize),
        ..Default::default()
    };
    let seed = req.seed;

    for step in 0..req.count {
        let step64 = u64::from(step);
        let random = StepRng::new(seed ^ RANDOM_SALT, step64);
        let tie = StepRng::new(seed, step64);
        let mut best: Option<usize> = None;
        let mut best_key = [0i64; MAX_KEYS];
        let mut best_tie: Option<i64> = None;
        let mut cur = [0i64; MAX_KEYS];
        let mut candidates = 0u32;
        for i in 0..n {
            if fail[i] != 0 {
                continue;
            }
            candidates += 1;
            for (slot, s) in cur.iter_mut().zip(scorers.iter()) {
                *slot = s.key(&ctx, i, random);
            }
            let Some(b) = best else {
                best = Some(i);
                best_key = cur;
                continue;
            };
            match cur[..k].cmp(&best_key[..k]) {
                std::cmp::Ordering::Less => {
                    best = Some(i);
                    best_key = cur;
                    best_tie = None;
                }
                std::cmp::Ordering::Greater => {}
                std::cmp::Ordering::Equal => {
                    let d = tie.at(i);
                    let bd = *best_tie.get_or_insert_with(|| tie.at(b));
                    if d < bd || (d == bd && insts[i].arn < insts[b].arn) {
                        best = Some(i);
                        best_key = cur;
                        best_tie = Some(d);
                    }
                }
            }
        }
        if let Some(b) = best {
            best_key[k] = best_tie.unwrap_or_else(|| tie.at(b));
        }
        let Some(i) = best else {
            metric.final_rejections = counts;
            return Ok(unplaceable(&ctx, &fail, req.count - step, metric, out));
        };
        let record = StepRecord::new(i, candidates, best_key, k + 1);
        place_one(&mut ctx, &mut scorers, &mut metric, &mut out, record);
        counts.add(fail[i], -1);
        fail[i] = ctx.first_failure(i);
        counts.add(fail[i], 1);
    }
    metric.final_rejections = counts;
    out.metric = metric;
    Ok(out)
}

/// Every instance's first failing stage (0: passes) and the rejections per stage.
pub(crate) fn evaluate_all(ctx: &FilterCtx<'_, '_>) -> (Vec<u8>, StageCounts) {
    let fail: Vec<u8> = (0..ctx.idx.len()).map(|i| ctx.first_failure(i)).collect();
    let mut counts = StageCounts::default();
    for &f in &fail {
        counts.add(f, 1);
    }
    (fail, counts)
}

/// Records one task placed on the step's chosen instance: the step, the placement, and what it
/// consumed (for the filters and the strategies' next keys).
pub(crate) fn place_one(
    ctx: &mut FilterCtx<'_, '_>,
    scorers: &mut [Scorer<'_>],
    metric: &mut PlacementMetric,
    out: &mut PlacementOutcome,
    record: StepRecord,
) {
    let i = record.chosen;
    metric.steps.push(record);
    out.placements.push(Placement {
        instance_index: i,
        instance_arn: ctx.idx.snapshot.instances[i].arn.clone(),
    });
    ctx.apply(i);
    for s in scorers.iter_mut() {
        s.apply(i);
    }
}

/// One scorer per validated strategy, in order.
pub(crate) fn scorers_for<'c, 'a: 'c>(
    idx: &'c ClusterIndex<'a>,
    req: &PlacementRequest,
    v: &Validated,
) -> Vec<Scorer<'c>> {
    v.strategies
        .iter()
        .map(|s| Scorer::new(s, idx, &req.task.group))
        .collect()
}

/// Ends a call whose `remaining` tasks cannot be placed (`fail`: every instance's first failing
/// stage): each becomes a failure naming the closest match, recorded in the metric.
pub(crate) fn unplaceable(
    ctx: &FilterCtx<'_, '_>,
    fail: &[u8],
    remaining: u32,
    mut metric: PlacementMetric,
    mut out: PlacementOutcome,
) -> PlacementOutcome {
    metric.unplaced = remaining;
    let closest = closest_match(ctx, fail);
    if let Some(c) = &closest {
        for _ in 0..remaining {
            out.failures.push(Failure {
                arn: Some(c.instance_arn.clone()),
                reason: c.stage.reason().to_string(),
                detail: None,
            });
        }
    }
    metric.closest = closest;
    out.metric = metric;
    out
}

/// The rejected instance that got furthest through the filter stages; among those, the one
/// closest to having enough of the exhausted resource; then the first in snapshot order.
fn closest_match(ctx: &FilterCtx<'_, '_>, fail: &[u8]) -> Option<ClosestMatch> {
    let mut best: Option<(u8, i64, usize)> = None;
    for (i, &f) in fail.iter().enumerate() {
        if f == 0 {
            continue;
        }
        let short = ctx.shortfall(f, i);
        let better = match best {
            None => true,
            Some((bf, bs, _)) => f > bf || (f == bf && short < bs),
        };
        if better {
            best = Some((f, short, i));
        }
    }
    let (f, _, i) = best?;
    let inst = &ctx.idx.snapshot.instances[i];
    Some(ClosestMatch {
        instance_index: i,
        instance_arn: inst.arn.clone(),
        instance_id: inst.id().to_string(),
        stage: FilterStage::from_code(f)?,
    })
}

/// StartTask: one task on each listed instance (by ARN or ID), in order, accounting for earlier
/// ones. Strategies are not used; constraints in `req` are. Unknown instances fail with
/// `MISSING`; the rest with the reason of their first failing stage.
pub fn start_task(
    idx: &ClusterIndex<'_>,
    req: &PlacementRequest,
    instances: &[&str],
) -> Result<PlacementOutcome, PlacementError> {
    let v = validate(req)?;
    let mut ctx = FilterCtx::new(idx, &req.task, &v.constraints, false);
    let mut out = PlacementOutcome::default();
    out.metric.instances_evaluated = instances.len();
    for &which in instances {
        let Some(i) = idx.instance_index(which) else {
            out.failures.push(Failure {
                arn: Some(which.to_string()),
                reason: "MISSING".into(),
                detail: None,
            });
            continue;
        };
        let inst = &idx.snapshot.instances[i];
        let f = ctx.first_failure(i);
        if f == 0 {
            out.placements.push(Placement {
                instance_index: i,
                instance_arn: inst.arn.clone(),
            });
            ctx.apply(i);
        } else if let Some(stage) = FilterStage::from_code(f) {
            out.metric.initial_rejections.add(f, 1);
            out.metric.unplaced += 1;
            out.failures.push(Failure {
                arn: Some(inst.arn.clone()),
                reason: stage.reason().to_string(),
                detail: None,
            });
        }
    }
    Ok(out)
}

/// Would one more task of `req` fit on the instance `arn_or_id` right now, and if not, why —
/// every stage evaluated (no short-circuit).
pub fn explain_instance(
    idx: &ClusterIndex<'_>,
    req: &PlacementRequest,
    arn_or_id: &str,
) -> Result<InstanceExplanation, PlacementError> {
    let v = validate(req)?;
    let i = idx.instance_index(arn_or_id).ok_or_else(|| {
        PlacementError::invalid_parameter(format!(
            "The referenced container instance {arn_or_id} was not found."
        ))
    })?;
    let ctx = FilterCtx::new(idx, &req.task, &v.constraints, false);
    let checks: Vec<StageCheck> = ctx
        .explain(i)
        .into_iter()
        .map(|(stage, passed, detail)| StageCheck {
            stage,
            passed,
            detail,
        })
        .collect();
    Ok(InstanceExplanation {
        instance_arn: idx.snapshot.instances[i].arn.clone(),
        fits: checks.iter().all(|c| c.passed),
        checks,
    })
}
