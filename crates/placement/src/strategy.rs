//! Strategy scoring. Each strategy maps a candidate to an integer key (lower is better); the
//! chain is compared lexicographically in the order given, then a seeded random draw, then the
//! instance ARN — so ties are broken deterministically.

use crate::filters::FilterCtx;
use crate::index::{ClusterIndex, Column};
use crate::request::{BinpackField, SpreadField, Strategy};
use crate::rng::StepRng;

/// Most keys a chain produces: five strategies plus the seeded tie-breaker.
pub(crate) const MAX_KEYS: usize = 6;

pub(crate) enum Scorer<'c> {
    Random,
    Instance,
    Attribute {
        col: Option<&'c Column<'c>>,
        counts: Vec<u32>,
    },
    Cpu,
    Memory,
}

impl<'c> Scorer<'c> {
    pub fn new<'a: 'c>(s: &Strategy, idx: &'c ClusterIndex<'a>, group: &str) -> Scorer<'c> {
        match s {
            Strategy::Random => Scorer::Random,
            Strategy::Spread(SpreadField::Instance) => Scorer::Instance,
            Strategy::Binpack(BinpackField::Cpu) => Scorer::Cpu,
            Strategy::Binpack(BinpackField::Memory) => Scorer::Memory,
            Strategy::Spread(SpreadField::Attribute(name)) => {
                let col: Option<&'c Column<'a>> = idx.attr_column(name);
                // Shorten the lifetime of the column's strings to 'c.
                let col: Option<&'c Column<'c>> = col.map(|c| c as &Column<'c>);
                let counts = idx.spread_counts(group, name).as_ref().clone();
                Scorer::Attribute { col, counts }
            }
        }
    }

    #[inline]
    pub fn key(&self, ctx: &FilterCtx<'_, '_>, i: usize, random: StepRng) -> i64 {
        match self {
            Scorer::Random => random.at(i),
            Scorer::Instance => i64::from(ctx.group_count(i)),
            Scorer::Attribute { col, counts } => i64::from(counts[col.map_or(0, |c| c.slot(i))]),
            Scorer::Cpu => ctx.cpu(i),
            Scorer::Memory => ctx.mem(i),
        }
    }

    /// A lower bound of [`Scorer::key`] over every instance that passes the filters, valid for
    /// the whole call (placements only raise spread counts; binpack's key is the remaining
    /// resource, never below the task's requirement on an instance that fits).
    pub fn lower_bound(&self, ctx: &FilterCtx<'_, '_>) -> i64 {
        let idx = ctx.idx;
        match self {
            Scorer::Random => 0,
            Scorer::Cpu => ctx.task.cpu,
            Scorer::Memory => ctx.task.memory,
            Scorer::Instance => match idx.group_ids.get(ctx.task.group.as_str()) {
                Some(&g) if idx.group_members[g as usize].len() == idx.len() => idx.group_order
                    [g as usize]
                    .first()
                    .map_or(0, |&(c, _)| i64::from(c)),
                _ => 0,
            },
            Scorer::Attribute { col, counts } => match col {
                None => i64::from(counts[0]),
                Some(col) => col
                    .members
                    .iter()
                    .zip(counts)
                    .filter(|(m, _)| !m.is_empty())
                    .map(|(_, &c)| i64::from(c))
                    .min()
                    .unwrap_or(0),
            },
        }
    }

    /// Records one task placed on instance `i`.
    pub fn apply(&mut self, i: usize) {
        if let Scorer::Attribute { col, counts } = self {
            counts[col.map_or(0, |c| c.slot(i))] += 1;
        }
    }
}
