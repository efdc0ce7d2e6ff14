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
                let mut counts = vec![0u32; col.map_or(0, |c| c.dict.len()) + 1];
                if let Some(&g) = idx.group_ids.get(group) {
                    for &(i, c) in &idx.group_members[g as usize] {
                        let slot = col.map_or(0, |col| col.slot(i as usize));
                        counts[slot] += c;
                    }
                }
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

    /// Records one task placed on instance `i`.
    pub fn apply(&mut self, i: usize) {
        if let Scorer::Attribute { col, counts } = self {
            counts[col.map_or(0, |c| c.slot(i))] += 1;
        }
    }
}
