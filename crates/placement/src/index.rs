//! [`ClusterIndex`]: a columnar, interned view of a [`ClusterSnapshot`], built once per snapshot
//! and shared by every placement request against it, so the hot loop does no string work.

use std::collections::HashMap;

use crate::query::compiled::compile;
use crate::query::Expression;
use crate::snapshot::{ClusterSnapshot, InstanceStatus};

/// Marks an instance that lacks the column's attribute.
pub(crate) const ABSENT: u32 = u32::MAX;

/// One attribute (or string field) across all instances, dictionary-encoded.
#[derive(Debug, Clone)]
pub(crate) struct Column<'a> {
    /// Distinct values; `None` is a name-only attribute.
    pub dict: Vec<Option<&'a str>>,
    /// Per instance: index into `dict`, or [`ABSENT`].
    pub ids: Vec<u32>,
}

impl<'a> Column<'a> {
    fn build(n: usize, values: impl Iterator<Item = (usize, Option<&'a str>)>) -> Self {
        let mut col = Column {
            dict: Vec::new(),
            ids: vec![ABSENT; n],
        };
        let mut seen: HashMap<Option<&'a str>, u32> = HashMap::new();
        for (i, v) in values {
            let id = *seen.entry(v).or_insert_with(|| {
                col.dict.push(v);
                (col.dict.len() - 1) as u32
            });
            col.ids[i] = id;
        }
        col
    }

    /// A dense slot per value with one extra slot (`dict.len()`) for "absent".
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> usize {
        let id = self.ids[i];
        if id == ABSENT {
            self.dict.len()
        } else {
            id as usize
        }
    }

    fn heap_bytes(&self) -> usize {
        self.dict.capacity() * std::mem::size_of::<Option<&str>>() + self.ids.capacity() * 4
    }
}

/// An index over a [`ClusterSnapshot`] for fast placement and filtering. Build it once per
/// snapshot ([`ClusterIndex::build`]) and reuse it for every request against that snapshot.
#[derive(Debug, Clone)]
pub struct ClusterIndex<'a> {
    pub(crate) snapshot: &'a ClusterSnapshot,
    pub(crate) attr_cols: HashMap<&'a str, Column<'a>>,
    pub(crate) ec2: Column<'a>,
    pub(crate) versions: Column<'a>,
    pub(crate) group_ids: HashMap<&'a str, u32>,
    pub(crate) group_names: Vec<&'a str>,
    /// Per group: (instance, number of tasks of the group on it).
    pub(crate) group_members: Vec<Vec<(u32, u32)>>,
    pub(crate) by_arn: HashMap<&'a str, u32>,
    pub(crate) tcp_used: Vec<Vec<u16>>,
    pub(crate) udp_used: Vec<Vec<u16>>,
    pub(crate) external: Vec<bool>,
    pub(crate) active: Vec<bool>,
    pub(crate) connected: Vec<bool>,
    pub(crate) cpu: Vec<i64>,
    pub(crate) mem: Vec<i64>,
    pub(crate) gpu: Vec<i64>,
}

fn sorted(ports: &[u16]) -> Vec<u16> {
    let mut v = ports.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl<'a> ClusterIndex<'a> {
    /// Indexes `snapshot`. O(instances × attributes + tasks).
    pub fn build(snapshot: &'a ClusterSnapshot) -> Self {
        let insts = &snapshot.instances;
        let n = insts.len();
        let mut per_name: HashMap<&'a str, Vec<(usize, Option<&'a str>)>> = HashMap::new();
        for (i, inst) in insts.iter().enumerate() {
            for a in &inst.attributes {
                per_name
                    .entry(a.name.as_str())
                    .or_default()
                    .push((i, a.value.as_deref()));
            }
        }
        let attr_cols = per_name
            .into_iter()
            .map(|(name, vals)| (name, Column::build(n, vals.into_iter())))
            .collect();
        let ec2 = Column::build(
            n,
            insts
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.ec2_instance_id.as_deref().map(|v| (i, Some(v)))),
        );
        let versions = Column::build(
            n,
            insts
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.agent_version.as_deref().map(|v| (i, Some(v)))),
        );
        let mut group_ids: HashMap<&'a str, u32> = HashMap::new();
        let mut group_names = Vec::new();
        let mut group_members: Vec<Vec<(u32, u32)>> = Vec::new();
        for (i, inst) in insts.iter().enumerate() {
            for t in &inst.tasks {
                let g = *group_ids.entry(t.group.as_str()).or_insert_with(|| {
                    group_names.push(t.group.as_str());
                    group_members.push(Vec::new());
                    (group_names.len() - 1) as u32
                });
                let members = &mut group_members[g as usize];
                match members.last_mut() {
                    Some((last, c)) if *last as usize == i => *c += 1,
                    _ => members.push((i as u32, 1)),
                }
            }
        }
        let mut by_arn = HashMap::with_capacity(n * 2);
        for (i, inst) in insts.iter().enumerate() {
            by_arn.insert(inst.arn.as_str(), i as u32);
            by_arn.entry(inst.id()).or_insert(i as u32);
        }
        ClusterIndex {
            snapshot,
            attr_cols,
            ec2,
            versions,
            group_ids,
            group_names,
            group_members,
            by_arn,
            tcp_used: insts
                .iter()
                .map(|x| sorted(&x.remaining.tcp_ports))
                .collect(),
            udp_used: insts
                .iter()
                .map(|x| sorted(&x.remaining.udp_ports))
                .collect(),
            external: insts.iter().map(|x| x.is_external()).collect(),
            active: insts
                .iter()
                .map(|x| x.status == InstanceStatus::Active)
                .collect(),
            connected: insts.iter().map(|x| x.agent_connected).collect(),
            cpu: insts.iter().map(|x| x.remaining.cpu).collect(),
            mem: insts.iter().map(|x| x.remaining.memory).collect(),
            gpu: insts.iter().map(|x| x.remaining.gpu).collect(),
        }
    }

    /// The snapshot this index was built from.
    pub fn snapshot(&self) -> &'a ClusterSnapshot {
        self.snapshot
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.snapshot.instances.len()
    }

    /// Whether the cluster has no instances.
    pub fn is_empty(&self) -> bool {
        self.snapshot.instances.is_empty()
    }

    /// The index of the instance with this ARN or container instance ID.
    pub fn instance_index(&self, arn_or_id: &str) -> Option<usize> {
        self.by_arn.get(arn_or_id).map(|&i| i as usize)
    }

    /// Indices of the instances matching `expr` (ListContainerInstances `filter`), in snapshot
    /// order.
    pub fn filter(&self, expr: &Expression) -> Vec<usize> {
        let c = compile(expr, self, "");
        (0..self.len()).filter(|&i| c.eval(self, i, 0)).collect()
    }

    pub(crate) fn attr_column(&self, name: &str) -> Option<&Column<'a>> {
        self.attr_cols.get(name)
    }

    /// Approximate heap bytes owned by the index (not counting the snapshot).
    pub fn approx_heap_bytes(&self) -> usize {
        let cols: usize = self.attr_cols.values().map(|c| c.heap_bytes() + 48).sum();
        let groups: usize = self
            .group_members
            .iter()
            .map(|m| m.capacity() * 8 + 24)
            .sum::<usize>()
            + self.group_names.capacity() * 16
            + self.group_ids.capacity() * 28;
        let ports: usize = self
            .tcp_used
            .iter()
            .chain(self.udp_used.iter())
            .map(|p| p.capacity() * 2 + 24)
            .sum();
        cols + groups
            + ports
            + self.ec2.heap_bytes()
            + self.versions.heap_bytes()
            + self.by_arn.capacity() * 28
            + self.external.capacity()
            + self.active.capacity()
            + self.connected.capacity()
            + (self.cpu.capacity() + self.mem.capacity() + self.gpu.capacity()) * 8
    }
}
