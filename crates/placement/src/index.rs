//! [`ClusterIndex`]: a columnar, interned view of a [`ClusterSnapshot`], built once per snapshot
//! and shared by every placement request against it, so the hot loop does no string work.
//!
//! The index has two halves. The *static* half (ARNs, attributes, EC2 ids, agent versions,
//! registration time and resources) borrows from the snapshot and is fixed once built. The
//! *dynamic* half (status, agent connectivity, remaining resources and ports, running-task count,
//! the task groups on each instance) is owned, and [`ClusterIndex::update_instance`] replaces one
//! instance's dynamic state in place: a long-lived index follows task placements and state
//! changes in O(tasks on the instance) instead of being rebuilt. The engine reads dynamic state only
//! from the index, never from the snapshot (whose dynamic fields go stale after an update).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::query::compiled::compile;
use crate::query::Expression;
use crate::snapshot::{ClusterSnapshot, ContainerInstance, InstanceStatus};

/// Marks an instance that lacks the column's attribute.
pub(crate) const ABSENT: u32 = u32::MAX;

/// One attribute (or string field) across all instances, dictionary-encoded.
#[derive(Debug, Clone)]
pub(crate) struct Column<'a> {
    /// Distinct values; `None` is a name-only attribute.
    pub dict: Vec<Option<&'a str>>,
    /// Per instance: index into `dict`, or [`ABSENT`].
    pub ids: Vec<u32>,
    /// Per slot (see [`Column::slot`]): the instances with that value, ascending.
    pub members: Vec<Vec<u32>>,
}

impl<'a> Column<'a> {
    fn build(n: usize, values: impl Iterator<Item = (usize, Option<&'a str>)>) -> Self {
        let mut col = Column {
            dict: Vec::new(),
            ids: vec![ABSENT; n],
            members: Vec::new(),
        };
        let mut seen: HashMap<Option<&'a str>, u32> = HashMap::new();
        for (i, v) in values {
            let id = *seen.entry(v).or_insert_with(|| {
                col.dict.push(v);
                (col.dict.len() - 1) as u32
            });
            col.ids[i] = id;
        }
        col.members = vec![Vec::new(); col.dict.len() + 1];
        for i in 0..n {
            let slot = col.slot(i);
            col.members[slot].push(i as u32);
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
        self.dict.capacity() * size_of::<Option<&str>>()
            + self.ids.capacity() * 4
            + self
                .members
                .iter()
                .map(|m| m.capacity() * 4 + 24)
                .sum::<usize>()
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
    pub(crate) group_ids: HashMap<String, u32>,
    pub(crate) group_names: Vec<String>,
    /// Per group: (instance, number of tasks of the group on it), sorted by instance.
    pub(crate) group_members: Vec<Vec<(u32, u32)>>,
    /// Per instance: (group, number of its tasks on the instance).
    pub(crate) inst_groups: Vec<Vec<(u32, u32)>>,
    pub(crate) status: Vec<InstanceStatus>,
    pub(crate) running: Vec<u32>,
    pub(crate) by_arn: HashMap<&'a str, u32>,
    pub(crate) tcp_used: Vec<Vec<u16>>,
    pub(crate) udp_used: Vec<Vec<u16>>,
    pub(crate) external: Vec<bool>,
    pub(crate) active: Vec<bool>,
    pub(crate) connected: Vec<bool>,
    pub(crate) cpu: Vec<i64>,
    pub(crate) mem: Vec<i64>,
    pub(crate) gpu: Vec<i64>,
    /// (remaining CPU, instance) and (remaining memory, instance), ascending: binpack walks
    /// them from the task's requirement upward instead of scanning every instance.
    pub(crate) cpu_order: BTreeSet<(i64, u32)>,
    pub(crate) mem_order: BTreeSet<(i64, u32)>,
    /// Per group: (tasks of the group, instance) for the instances holding any, ascending:
    /// spread(instanceId) walks it from the fewest upward.
    pub(crate) group_order: Vec<BTreeSet<(u32, u32)>>,
    /// Per (group, attribute) asked for by a spread strategy: the group's tasks per value slot
    /// of the attribute's column. Filled on first use, then kept current by
    /// [`ClusterIndex::update_instance`], so a spread request does not walk the group.
    spread_counts: SpreadCounts,
}

/// The group's tasks per value slot of one attribute's column, by attribute name.
type CountsByAttribute = HashMap<String, Arc<Vec<u32>>>;

/// The cache behind [`ClusterIndex::spread_counts`]: per group, [`CountsByAttribute`].
#[derive(Debug, Default)]
struct SpreadCounts(Mutex<HashMap<u32, CountsByAttribute>>);

impl Clone for SpreadCounts {
    fn clone(&self) -> Self {
        let m = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        SpreadCounts(Mutex::new(m))
    }
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
        let mut by_arn = HashMap::with_capacity(n * 2);
        for (i, inst) in insts.iter().enumerate() {
            by_arn.insert(inst.arn.as_str(), i as u32);
            by_arn.entry(inst.id()).or_insert(i as u32);
        }
        let mut idx = ClusterIndex {
            snapshot,
            attr_cols,
            ec2,
            versions,
            group_ids: HashMap::new(),
            group_names: Vec::new(),
            group_members: Vec::new(),
            inst_groups: vec![Vec::new(); n],
            status: insts.iter().map(|x| x.status).collect(),
            running: insts.iter().map(|x| x.running_tasks_count).collect(),
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
            cpu_order: insts
                .iter()
                .enumerate()
                .map(|(i, x)| (x.remaining.cpu, i as u32))
                .collect(),
            mem_order: insts
                .iter()
                .enumerate()
                .map(|(i, x)| (x.remaining.memory, i as u32))
                .collect(),
            group_order: Vec::new(),
            spread_counts: SpreadCounts::default(),
        };
        for (i, inst) in insts.iter().enumerate() {
            idx.add_groups(i, inst.tasks.iter().map(|t| (t.group.as_str(), t.count)));
        }
        idx
    }

    fn group_id(&mut self, name: &str) -> u32 {
        if let Some(&g) = self.group_ids.get(name) {
            return g;
        }
        let g = self.group_names.len() as u32;
        self.group_names.push(name.to_string());
        self.group_members.push(Vec::new());
        self.group_order.push(BTreeSet::new());
        self.group_ids.insert(name.to_string(), g);
        g
    }

    /// Adds the groups of instance `i`'s tasks (its `inst_groups` must be empty).
    fn add_groups<'g>(&mut self, i: usize, groups: impl Iterator<Item = (&'g str, u32)>) {
        let mut mine: Vec<(u32, u32)> = Vec::new();
        for (name, n) in groups.filter(|&(_, n)| n > 0) {
            let g = self.group_id(name);
            match mine.iter_mut().find(|(x, _)| *x == g) {
                Some((_, c)) => *c += n,
                None => mine.push((g, n)),
            }
        }
        for &(g, c) in &mine {
            let members = &mut self.group_members[g as usize];
            // Instances are mostly added in order (build): append; otherwise insert sorted.
            match members.last() {
                Some(&(last, _)) if last as usize >= i => {
                    let at = members.partition_point(|&(x, _)| (x as usize) < i);
                    members.insert(at, (i as u32, c));
                }
                _ => members.push((i as u32, c)),
            }
            self.group_order[g as usize].insert((c, i as u32));
        }
        self.adjust_spread_counts(i, &mine, true);
        self.inst_groups[i] = mine;
    }

    fn remove_groups(&mut self, i: usize) {
        let mine = std::mem::take(&mut self.inst_groups[i]);
        self.adjust_spread_counts(i, &mine, false);
        for (g, c) in mine {
            let members = &mut self.group_members[g as usize];
            if let Ok(at) = members.binary_search_by_key(&(i as u32), |&(x, _)| x) {
                members.remove(at);
            }
            self.group_order[g as usize].remove(&(c, i as u32));
        }
    }

    /// Adds (or removes) instance `i`'s group counts to the cached spread counts.
    fn adjust_spread_counts(&mut self, i: usize, groups: &[(u32, u32)], add: bool) {
        let Ok(cache) = self.spread_counts.0.get_mut() else {
            return;
        };
        if cache.is_empty() {
            return;
        }
        // Only the instance's own groups: O(its groups × attributes spread on), not O(cache).
        for &(g, c) in groups {
            let Some(per) = cache.get_mut(&g) else {
                continue;
            };
            for (name, counts) in per.iter_mut() {
                let slot = self
                    .attr_cols
                    .get(name.as_str())
                    .map_or(0, |col| col.slot(i));
                let counts = Arc::make_mut(counts);
                if let Some(v) = counts.get_mut(slot) {
                    *v = if add {
                        v.saturating_add(c)
                    } else {
                        v.saturating_sub(c)
                    };
                }
            }
        }
    }

    /// The tasks of `group` per value slot of the attribute `name` (one slot, 0, when no
    /// instance has the attribute). O(values) once cached; O(tasks of the group) the first time.
    pub(crate) fn spread_counts(&self, group: &str, name: &str) -> Arc<Vec<u32>> {
        let col = self.attr_column(name);
        let slots = col.map_or(0, |c| c.dict.len()) + 1;
        let Some(&g) = self.group_ids.get(group) else {
            return Arc::new(vec![0; slots]);
        };
        let compute = || {
            let mut counts = vec![0u32; slots];
            for &(i, c) in &self.group_members[g as usize] {
                let slot = col.map_or(0, |col| col.slot(i as usize));
                counts[slot] += c;
            }
            Arc::new(counts)
        };
        match self.spread_counts.0.lock() {
            Ok(mut cache) => cache
                .entry(g)
                .or_default()
                .entry(name.to_string())
                .or_insert_with(compute)
                .clone(),
            Err(_) => compute(),
        }
    }

    /// Whether `inst` has the same static state (ARN, attributes, EC2 id, agent version,
    /// registration time and resources) as instance `i` had when the index was built, so that
    /// [`ClusterIndex::update_instance`] may take its dynamic state. Otherwise rebuild.
    pub fn same_static(&self, i: usize, inst: &ContainerInstance) -> bool {
        let Some(old) = self.snapshot.instances.get(i) else {
            return false;
        };
        old.arn == inst.arn
            && old.attributes == inst.attributes
            && old.ec2_instance_id == inst.ec2_instance_id
            && old.agent_version == inst.agent_version
            && old.registered_at.to_bits() == inst.registered_at.to_bits()
            && old.registered == inst.registered
    }

    /// Replaces instance `i`'s dynamic state (status, agent connectivity, remaining resources
    /// and ports, running-task count, its tasks' groups) with `inst`'s. The caller checks
    /// [`ClusterIndex::same_static`] first; static fields of `inst` are ignored.
    pub fn update_instance(&mut self, i: usize, inst: &ContainerInstance) {
        if i >= self.len() {
            return;
        }
        self.status[i] = inst.status;
        self.active[i] = inst.status == InstanceStatus::Active;
        self.connected[i] = inst.agent_connected;
        let at = i as u32;
        self.cpu_order.remove(&(self.cpu[i], at));
        self.mem_order.remove(&(self.mem[i], at));
        self.cpu_order.insert((inst.remaining.cpu, at));
        self.mem_order.insert((inst.remaining.memory, at));
        self.cpu[i] = inst.remaining.cpu;
        self.mem[i] = inst.remaining.memory;
        self.gpu[i] = inst.remaining.gpu;
        self.tcp_used[i] = sorted(&inst.remaining.tcp_ports);
        self.udp_used[i] = sorted(&inst.remaining.udp_ports);
        self.running[i] = inst.running_tasks_count;
        self.remove_groups(i);
        self.add_groups(i, inst.tasks.iter().map(|t| (t.group.as_str(), t.count)));
    }

    /// Sets only instance `i`'s agent connectivity (it changes with time, not with the record).
    pub fn set_connected(&mut self, i: usize, connected: bool) {
        if let Some(c) = self.connected.get_mut(i) {
            *c = connected;
        }
    }

    /// Instance `i`'s agent connectivity as the index has it.
    pub fn agent_connected(&self, i: usize) -> bool {
        self.connected[i]
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
            + self
                .group_names
                .iter()
                .map(|g| g.capacity() + 24)
                .sum::<usize>()
            + self
                .inst_groups
                .iter()
                .map(|m| m.capacity() * 8 + 24)
                .sum::<usize>()
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
            + self.status.capacity()
            + self.running.capacity() * 4
            + (self.cpu.capacity() + self.mem.capacity() + self.gpu.capacity()) * 8
            // B-tree entries: the key plus about half a pointer of node overhead each.
            + (self.cpu_order.len() + self.mem_order.len()) * 20
            + self.group_order.iter().map(|o| o.len() * 12 + 24).sum::<usize>()
    }
}
