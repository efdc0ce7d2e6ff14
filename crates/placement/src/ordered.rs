//! The ordered walk: placement whose cost per task does not grow with the cluster.
//!
//! The exhaustive walk ([`crate::engine::place_exhaustive`]) filters and scores every instance
//! for every task: O(instances) per placement. The ordered walk visits instances in the order
//! of the first strategy's key, using orders the [`ClusterIndex`] keeps current — remaining CPU
//! and memory (binpack), each group's tasks per instance (spread(instanceId)), each attribute
//! value's instances and the group's tasks per value (spread(attribute)) — and stops as soon as
//! nothing later in the order can beat the best candidate found. Filters are evaluated only on
//! the instances visited. So a placement costs O(instances visited × log instances), and on a
//! cluster with room the first few instances visited already win.
//!
//! The walk yields instances with a *stale* first key: the key as of the snapshot, which this
//! call's earlier placements may have changed. Spread keys only grow with placements (stale ≤
//! true), so stopping when the stale key passes the best true key is safe. Binpack keys shrink
//! (less remaining), so the instances this call already used are scored first, from their true
//! state, and skipped by the walk.
//!
//! Ties (equal keys across the whole chain) go to the first instance the walk reaches; within a
//! key the walk starts at a seeded instance position and wraps, so ties are broken by the seed —
//! deterministically, but not uniformly: an instance right after a run of instances that are
//! not tied (or fail the filters) is reached first more often. Among tied attribute values
//! (spread) the first is uniform. A `random` strategy ends the chain (what follows it can never
//! break a tie) and is uniform among the instances that pass: instances are drawn at random
//! until one passes, and only if 32 draws fail (under ~10 % pass) does the walk take over.
//!
//! When no instance passes, every instance is evaluated once to report the closest match, as
//! the exhaustive walk does.

use std::collections::btree_set::Range;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::engine::{
    evaluate_all, no_instances, place_one, scorers_for, unplaceable, Validated, RANDOM_SALT,
};
use crate::filters::{FilterCtx, StageCounts};
use crate::index::ClusterIndex;
use crate::metric::{PlacementMetric, PlacementOutcome, StepRecord};
use crate::request::{PlacementRequest, Strategy};
use crate::rng::StepRng;
use crate::strategy::{Scorer, MAX_KEYS};

/// Calls placing at most this many tasks take the ordered walk; larger ones the exhaustive one,
/// whose per-step cost does not grow with the number of instances already used by the call. (The
/// control plane launches a large service in calls of this size.)
pub const ORDERED_MAX_COUNT: u32 = 64;

/// `random` first draws this many instances uniformly before walking (see `place_ordered`).
const RANDOM_PROBES: usize = 32;
const PROBE_SALT: u64 = 0x9E0B_E5A1_7000;

/// `0..n` starting at `start`, wrapping.
#[derive(Clone, Copy)]
struct Rotation {
    n: usize,
    start: usize,
    k: usize,
}

impl Rotation {
    fn new(n: usize, seed: i64) -> Self {
        Rotation {
            n,
            start: if n == 0 { 0 } else { seed as u64 as usize % n },
            k: 0,
        }
    }
}

impl Iterator for Rotation {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.k >= self.n {
            return None;
        }
        let i = (self.start + self.k) % self.n;
        self.k += 1;
        Some(i)
    }
}

/// A set of (key, instance) walked by key ascending from a lower bound; within one key, from
/// instance `rot` upward, then the instances below `rot`.
struct Tiered<'s, K: Ord + Copy> {
    set: &'s BTreeSet<(K, u32)>,
    rot: u32,
    key: Option<K>,
    wrapped: bool,
    it: Range<'s, (K, u32)>,
}

impl<'s, K: Ord + Copy> Tiered<'s, K> {
    fn new(set: &'s BTreeSet<(K, u32)>, from: K, rot: u32) -> Self {
        let key = set
            .range((Bound::Included((from, 0)), Bound::Unbounded))
            .next()
            .map(|x| x.0);
        let mut t = Tiered {
            set,
            rot,
            key,
            wrapped: false,
            // Empty until the first key is known.
            it: set.range((Bound::Included((from, 0)), Bound::Excluded((from, 0)))),
        };
        if let Some(k) = key {
            t.it = t.upper(k);
        }
        t
    }

    fn upper(&self, k: K) -> Range<'s, (K, u32)> {
        self.set.range((
            Bound::Included((k, self.rot)),
            Bound::Included((k, u32::MAX)),
        ))
    }
}

impl<K: Ord + Copy> Iterator for Tiered<'_, K> {
    type Item = (K, u32);
    fn next(&mut self) -> Option<(K, u32)> {
        loop {
            let k = self.key?;
            if let Some(&x) = self.it.next() {
                return Some(x);
            }
            if !self.wrapped {
                self.wrapped = true;
                self.it = self
                    .set
                    .range((Bound::Included((k, 0)), Bound::Excluded((k, self.rot))));
                continue;
            }
            self.wrapped = false;
            self.key = self
                .set
                .range((Bound::Excluded((k, u32::MAX)), Bound::Unbounded))
                .next()
                .map(|x| x.0);
            if let Some(next) = self.key {
                self.it = self.upper(next);
            }
        }
    }
}

/// The candidates of one step, in the first strategy's order, each with its stale key.
enum Walk<'s> {
    /// Every instance from a seeded start (no strategy before `random`).
    All(Rotation, i64),
    /// binpack: remaining resource ascending, from the task's requirement.
    Binpack(Tiered<'s, i64>),
    /// spread(instanceId): instances without a task of the group, then the others by count.
    Instance {
        idx: &'s ClusterIndex<'s>,
        group: Option<u32>,
        without: Option<Rotation>,
        with: Option<Tiered<'s, u32>>,
    },
    /// spread(attribute): value slots by the group's current count, each slot's instances.
    Attribute {
        members: &'s [Vec<u32>],
        slots: Vec<(u32, usize)>,
        at: usize,
        inner: Rotation,
        rot: i64,
    },
}

impl Iterator for Walk<'_> {
    type Item = (i64, usize);
    fn next(&mut self) -> Option<(i64, usize)> {
        match self {
            Walk::All(r, key) => r.next().map(|i| (*key, i)),
            Walk::Binpack(t) => t.next().map(|(k, i)| (k, i as usize)),
            Walk::Instance {
                idx,
                group,
                without,
                with,
            } => {
                if let Some(r) = without {
                    for i in r.by_ref() {
                        let holds =
                            group.is_some_and(|g| idx.inst_groups[i].iter().any(|&(x, _)| x == g));
                        if !holds {
                            return Some((0, i));
                        }
                    }
                    *without = None;
                }
                with.as_mut()?
                    .next()
                    .map(|(c, i)| (i64::from(c), i as usize))
            }
            Walk::Attribute {
                members,
                slots,
                at,
                inner,
                rot,
            } => loop {
                let &(count, slot) = slots.get(*at)?;
                let list = &members[slot];
                if let Some(j) = inner.next() {
                    return Some((i64::from(count), list[j] as usize));
                }
                *at += 1;
                if let Some(&(_, s)) = slots.get(*at) {
                    *inner = Rotation::new(members[s].len(), *rot);
                }
            },
        }
    }
}

/// Builds the walk for the first strategy (`None`: no strategy before `random`).
fn walk<'s>(
    idx: &'s ClusterIndex<'s>,
    ctx: &FilterCtx<'_, '_>,
    first: Option<&Scorer<'s>>,
    rot: i64,
) -> Walk<'s> {
    let n = idx.len();
    let rot32 = (rot as u64 % n.max(1) as u64) as u32;
    match first {
        None | Some(Scorer::Random) => Walk::All(Rotation::new(n, rot), 0),
        Some(Scorer::Cpu) => Walk::Binpack(Tiered::new(&idx.cpu_order, ctx.task.cpu, rot32)),
        Some(Scorer::Memory) => Walk::Binpack(Tiered::new(&idx.mem_order, ctx.task.memory, rot32)),
        Some(Scorer::Instance) => {
            let group = idx.group_ids.get(ctx.task.group.as_str()).copied();
            let members = group.map_or(0, |g| idx.group_members[g as usize].len());
            Walk::Instance {
                idx,
                group,
                without: (members < n).then(|| Rotation::new(n, rot)),
                with: group.map(|g| Tiered::new(&idx.group_order[g as usize], 1, rot32)),
            }
        }
        Some(Scorer::Attribute { col: None, counts }) => {
            Walk::All(Rotation::new(n, rot), i64::from(counts[0]))
        }
        Some(Scorer::Attribute {
            col: Some(col),
            counts,
        }) => {
            let mut slots: Vec<(u32, usize)> = (0..col.members.len())
                .filter(|&s| !col.members[s].is_empty())
                .map(|s| (counts[s], s))
                .collect();
            // By count; among equal counts, from a seeded value (of those present), wrapping,
            // so each tied value is equally likely to come first (the sort is stable).
            let start = rot as u64 as usize % slots.len().max(1);
            slots.rotate_left(start);
            slots.sort_by_key(|&(c, _)| c);
            let inner = Rotation::new(slots.first().map_or(0, |&(_, s)| col.members[s].len()), rot);
            Walk::Attribute {
                members: &col.members,
                slots,
                at: 0,
                inner,
                rot,
            }
        }
    }
}

/// Places `req.count` (≤ [`ORDERED_MAX_COUNT`]) tasks with the ordered walk. Same contract as
/// [`crate::place`].
pub(crate) fn place_ordered<'a>(
    idx: &ClusterIndex<'a>,
    req: &PlacementRequest,
    v: &Validated,
) -> Result<PlacementOutcome, crate::PlacementError> {
    if idx.is_empty() {
        return Err(no_instances());
    }
    let n = idx.len();
    let mut ctx = FilterCtx::new(idx, &req.task, &v.constraints, false);
    let mut scorers = scorers_for(idx, req, v);
    let all = scorers.len();
    // Strategies after a `random` never decide anything: the chain ends there.
    let k = v
        .strategies
        .iter()
        .position(|s| matches!(s, Strategy::Random))
        .unwrap_or(all);
    let bounds: Vec<i64> = scorers.iter().map(|s| s.lower_bound(&ctx)).collect();
    let binpack_first = matches!(v.strategies.first(), Some(Strategy::Binpack(_))) && k > 0;

    let mut metric = PlacementMetric {
        strategies: v.strategies.iter().map(Strategy::label).collect(),
        ..PlacementMetric::default()
    };
    let mut out = PlacementOutcome {
        placements: Vec::with_capacity(req.count as usize),
        ..Default::default()
    };
    for step in 0..req.count {
        let step64 = u64::from(step);
        let random = StepRng::new(req.seed ^ RANDOM_SALT, step64);
        let tie = StepRng::new(req.seed, step64);
        let mut seen = StageCounts::default();
        let mut evaluated = 0usize;
        let mut candidates = 0u32;
        let mut best: Option<(usize, [i64; MAX_KEYS])> = None;
        let mut consider =
            |i: usize, ctx: &FilterCtx<'_, '_>, best: &mut Option<(usize, [i64; MAX_KEYS])>| {
                evaluated += 1;
                let f = ctx.first_failure(i);
                if f != 0 {
                    seen.add(f, 1);
                    return;
                }
                candidates += 1;
                let mut key = [0i64; MAX_KEYS];
                for (slot, s) in key.iter_mut().zip(scorers.iter()).take(k) {
                    *slot = s.key(ctx, i, random);
                }
                if best.as_ref().is_none_or(|(_, b)| key[..k] < b[..k]) {
                    *best = Some((i, key));
                }
            };
        if binpack_first {
            for i in ctx.used() {
                consider(i, &ctx, &mut best);
            }
        }
        let rot = if k == 0 {
            random.at(usize::MAX)
        } else {
            tie.at(usize::MAX)
        };
        if k == 0 {
            // Uniform among the instances that pass: draw instances at random (with
            // replacement) until one passes. Only when RANDOM_PROBES draws all fail (few pass)
            // does the walk below take over, from a random start.
            let probe = StepRng::new(req.seed ^ PROBE_SALT, step64);
            for j in 0..RANDOM_PROBES {
                consider(probe.at(j) as u64 as usize % n, &ctx, &mut best);
                if best.is_some() {
                    break;
                }
            }
        }
        let first = if k == 0 { None } else { scorers.first() };
        let walked = if k == 0 && best.is_some() {
            None
        } else {
            Some(walk(idx, &ctx, first, rot))
        };
        for (stale, i) in walked.into_iter().flatten() {
            if let Some((_, b)) = &best {
                if k == 0 || stale > b[0] {
                    break;
                }
            }
            if binpack_first && ctx.placed(i) > 0 {
                continue;
            }
            consider(i, &ctx, &mut best);
            if let Some((_, b)) = &best {
                if k == 0 || (b[0] <= stale && b[1..k] == bounds[1..k]) {
                    break;
                }
            }
        }
        metric.instances_evaluated += evaluated;
        if step == 0 {
            metric.initial_rejections = seen;
        }
        let Some((i, mut key)) = best else {
            // Nothing fits: evaluate everything once, for the closest match and the counts.
            let (fail, counts) = evaluate_all(&ctx);
            metric.instances_evaluated += n;
            if step == 0 {
                metric.initial_rejections = counts;
            }
            metric.final_rejections = counts;
            return Ok(unplaceable(&ctx, &fail, req.count - step, metric, out));
        };
        metric.final_rejections = seen;
        for (slot, s) in key.iter_mut().zip(scorers.iter()).skip(k) {
            *slot = s.key(&ctx, i, random);
        }
        key[all] = tie.at(i);
        let record = StepRecord::new(i, candidates, key, all + 1);
        place_one(&mut ctx, &mut scorers, &mut metric, &mut out, record);
    }
    out.metric = metric;
    Ok(out)
}
