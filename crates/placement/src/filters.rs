//! The filter stages. Each stage either passes an instance or rejects it with a reason, in the
//! order ECS documents (resources and ports, then constraints); the agent check comes last so
//! that an instance failing only because its agent is disconnected is the "closest match".

use crate::index::{ClusterIndex, ABSENT};
use crate::query::compiled::{compile, Compiled};
use crate::request::{Constraint, LaunchType, TaskRequirements};

/// A filter stage, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilterStage {
    /// The instance is `ACTIVE` (not `DRAINING`, `INACTIVE`, …).
    Status,
    /// The instance suits the launch type (EXTERNAL tasks on `ecs.capability.external` instances,
    /// EC2 tasks on the others).
    LaunchType,
    /// The instance has every required attribute.
    Attributes,
    /// Enough remaining CPU units.
    Cpu,
    /// Enough remaining memory.
    Memory,
    /// Enough remaining GPUs.
    Gpu,
    /// The task's static TCP host ports are free.
    TcpPorts,
    /// The task's static UDP host ports are free.
    UdpPorts,
    /// Every memberOf constraint (task definition and request) holds.
    MemberOf,
    /// No task of the same group is on the instance (distinctInstance).
    DistinctInstance,
    /// The agent is connected.
    Agent,
}

/// Number of stages.
pub const STAGE_COUNT: usize = 11;

impl FilterStage {
    /// All stages in evaluation order.
    pub const ALL: [FilterStage; STAGE_COUNT] = [
        FilterStage::Status,
        FilterStage::LaunchType,
        FilterStage::Attributes,
        FilterStage::Cpu,
        FilterStage::Memory,
        FilterStage::Gpu,
        FilterStage::TcpPorts,
        FilterStage::UdpPorts,
        FilterStage::MemberOf,
        FilterStage::DistinctInstance,
        FilterStage::Agent,
    ];

    /// A short name for logs and explanations.
    pub fn name(self) -> &'static str {
        match self {
            FilterStage::Status => "status",
            FilterStage::LaunchType => "launch-type",
            FilterStage::Attributes => "attributes",
            FilterStage::Cpu => "cpu",
            FilterStage::Memory => "memory",
            FilterStage::Gpu => "gpu",
            FilterStage::TcpPorts => "ports-tcp",
            FilterStage::UdpPorts => "ports-udp",
            FilterStage::MemberOf => "memberOf",
            FilterStage::DistinctInstance => "distinctInstance",
            FilterStage::Agent => "agent",
        }
    }

    /// The RunTask/StartTask `failures[].reason` ECS reports for this rejection.
    pub fn reason(self) -> &'static str {
        match self {
            FilterStage::Status => "INACTIVE",
            FilterStage::LaunchType | FilterStage::Attributes => "ATTRIBUTE",
            FilterStage::Cpu => "RESOURCE:CPU",
            FilterStage::Memory => "RESOURCE:MEMORY",
            FilterStage::Gpu => "RESOURCE:GPU",
            FilterStage::TcpPorts => "RESOURCE:PORTS",
            FilterStage::UdpPorts => "RESOURCE:PORTS_UDP",
            FilterStage::MemberOf => "MemberOf placement constraint unsatisfied.",
            FilterStage::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
            FilterStage::Agent => "AGENT",
        }
    }

    /// The end of the service event sentence "The closest matching container-instance `<id>` …".
    pub fn service_event_clause(self) -> String {
        match self {
            FilterStage::Cpu => "has insufficient CPU units available.".into(),
            FilterStage::Memory => "has insufficient memory available.".into(),
            FilterStage::Gpu => "has insufficient GPU available.".into(),
            FilterStage::TcpPorts | FilterStage::UdpPorts => {
                "is already using a port required by your task.".into()
            }
            FilterStage::LaunchType | FilterStage::Attributes => {
                "is missing an attribute required by your task.".into()
            }
            other => format!("encountered error \"{}\".", other.reason()),
        }
    }

    #[inline]
    pub(crate) fn code(self) -> u8 {
        self as u8 + 1
    }

    #[inline]
    pub(crate) fn from_code(c: u8) -> Option<FilterStage> {
        FilterStage::ALL
            .get(usize::from(c).checked_sub(1)?)
            .copied()
    }
}

/// Rejections per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts(pub [u32; STAGE_COUNT]);

impl StageCounts {
    /// Rejections at `stage`.
    pub fn get(&self, stage: FilterStage) -> u32 {
        self.0[stage as usize]
    }

    /// Non-zero entries in stage order.
    pub fn nonzero(&self) -> Vec<(FilterStage, u32)> {
        FilterStage::ALL
            .iter()
            .map(|&s| (s, self.get(s)))
            .filter(|&(_, c)| c > 0)
            .collect()
    }

    pub(crate) fn add(&mut self, code: u8, delta: i64) {
        if let Some(s) = FilterStage::from_code(code) {
            let v = &mut self.0[s as usize];
            *v = (i64::from(*v) + delta).max(0) as u32;
        }
    }
}

fn ports_conflict(used: &[u16], wanted: &[u16]) -> bool {
    wanted.iter().any(|p| used.binary_search(p).is_ok())
}

/// Per-request filter state: the task, compiled constraints, and what the current call has
/// consumed so far on each instance.
///
/// Two layouts. *Dense* (the exhaustive walk): per-instance arrays built up front in
/// O(instances) — the group's tasks, the memberOf verdicts, this call's placements — so that
/// visiting every instance is a few array reads. *Sparse* (the ordered walk, which visits few
/// instances): nothing per instance up front; the group count is looked up on the instance,
/// memberOf is evaluated when asked, and this call's placements are a short list.
pub(crate) struct FilterCtx<'c, 'a> {
    pub idx: &'c ClusterIndex<'a>,
    pub task: &'c TaskRequirements,
    /// Per required attribute: the column ids and which dictionary entries satisfy it.
    required: Vec<Option<(&'c [u32], Vec<bool>)>>,
    member: Vec<Compiled<'c>>,
    member_dynamic: bool,
    pub distinct: bool,
    dense: bool,
    /// Dense: tasks this call placed, per instance.
    placed: Vec<u32>,
    /// Sparse: (instance, tasks this call placed on it) for the instances used so far.
    placed_sparse: Vec<(u32, u32)>,
    /// The request's group id in the index, if any instance holds a task of it.
    group: Option<u32>,
    /// Dense: tasks of the request's group on each instance in the snapshot.
    base_group: Vec<u32>,
    /// Dense: every memberOf constraint's verdict per instance.
    member_ok: Vec<bool>,
}

impl<'c, 'a: 'c> FilterCtx<'c, 'a> {
    /// `dense`: see the type's documentation.
    pub fn new(
        idx: &'c ClusterIndex<'a>,
        task: &'c TaskRequirements,
        constraints: &'c [Constraint],
        dense: bool,
    ) -> Self {
        let n = idx.len();
        let required = task
            .required_attributes
            .iter()
            .map(|a| {
                idx.attr_column(&a.name).map(|col| {
                    let ok = col
                        .dict
                        .iter()
                        .map(|v| a.value.is_none() || v.is_some() && *v == a.value.as_deref())
                        .collect();
                    (col.ids.as_slice(), ok)
                })
            })
            .collect();
        let member: Vec<Compiled<'c>> = constraints
            .iter()
            .filter_map(|c| match c {
                Constraint::MemberOf(e) => Some(compile(e, idx, &task.group)),
                Constraint::DistinctInstance => None,
            })
            .collect();
        let member_dynamic = member.iter().any(|m| m.is_dynamic());
        let group = idx.group_ids.get(task.group.as_str()).copied();
        let mut base_group = Vec::new();
        if let (Some(g), true) = (group, dense) {
            base_group = vec![0u32; n];
            for &(i, c) in &idx.group_members[g as usize] {
                base_group[i as usize] = c;
            }
        }
        let mut ctx = FilterCtx {
            idx,
            task,
            required,
            member_dynamic,
            distinct: constraints
                .iter()
                .any(|c| matches!(c, Constraint::DistinctInstance)),
            dense,
            placed: if dense { vec![0; n] } else { Vec::new() },
            placed_sparse: Vec::new(),
            group,
            base_group,
            member_ok: Vec::new(),
            member,
        };
        if dense && !ctx.member.is_empty() {
            ctx.member_ok = (0..n).map(|i| ctx.eval_member(i)).collect();
        }
        ctx
    }

    /// Tasks this call has placed on instance `i`.
    #[inline]
    pub fn placed(&self, i: usize) -> u32 {
        // Dense: the bounds check is the only branch. Sparse: `placed` is empty.
        match self.placed.get(i) {
            Some(&c) => c,
            None => self
                .placed_sparse
                .iter()
                .find(|&&(x, _)| x as usize == i)
                .map_or(0, |&(_, c)| c),
        }
    }

    /// The instances this call has placed tasks on (sparse layout only; empty when dense).
    pub fn used(&self) -> impl Iterator<Item = usize> + '_ {
        self.placed_sparse.iter().map(|&(i, _)| i as usize)
    }

    fn eval_member(&self, i: usize) -> bool {
        let placed = self.placed(i);
        self.member.iter().all(|m| m.eval(self.idx, i, placed))
    }

    fn member_ok(&self, i: usize) -> bool {
        if self.member.is_empty() {
            true
        } else if self.dense {
            self.member_ok[i]
        } else {
            self.eval_member(i)
        }
    }

    fn status_ok(&self, i: usize) -> bool {
        self.idx.active[i]
    }

    /// Remaining CPU units after this call's placements.
    #[inline]
    pub fn cpu(&self, i: usize) -> i64 {
        self.idx.cpu[i].saturating_sub(i64::from(self.placed(i)).saturating_mul(self.task.cpu))
    }

    /// Remaining MiB after this call's placements.
    #[inline]
    pub fn mem(&self, i: usize) -> i64 {
        self.idx.mem[i].saturating_sub(i64::from(self.placed(i)).saturating_mul(self.task.memory))
    }

    /// Remaining GPUs after this call's placements.
    #[inline]
    pub fn gpu(&self, i: usize) -> i64 {
        self.idx.gpu[i].saturating_sub(i64::from(self.placed(i)).saturating_mul(self.task.gpu))
    }

    /// Tasks of the request's group on instance `i` (snapshot plus this call).
    #[inline]
    pub fn group_count(&self, i: usize) -> u32 {
        self.base_group_count(i) + self.placed(i)
    }

    /// Tasks of the request's group on instance `i` in the snapshot.
    #[inline]
    pub fn base_group_count(&self, i: usize) -> u32 {
        // Dense: `base_group` is filled whenever the group exists. Sparse: look on the instance.
        if let Some(&c) = self.base_group.get(i) {
            return c;
        }
        let Some(g) = self.group else { return 0 };
        self.idx.inst_groups[i]
            .iter()
            .find(|&&(x, _)| x == g)
            .map_or(0, |&(_, c)| c)
    }

    fn launch_ok(&self, i: usize) -> bool {
        match self.task.launch_type {
            LaunchType::External => self.idx.external[i],
            _ => !self.idx.external[i],
        }
    }

    fn attrs_ok(&self, i: usize) -> bool {
        self.required.iter().all(|r| match r {
            None => false,
            Some((ids, ok)) => {
                let id = ids[i];
                id != ABSENT && ok[id as usize]
            }
        })
    }

    fn tcp_ok(&self, i: usize) -> bool {
        self.task.tcp_ports.is_empty()
            || (self.placed(i) == 0 && !ports_conflict(&self.idx.tcp_used[i], &self.task.tcp_ports))
    }

    fn udp_ok(&self, i: usize) -> bool {
        self.task.udp_ports.is_empty()
            || (self.placed(i) == 0 && !ports_conflict(&self.idx.udp_used[i], &self.task.udp_ports))
    }

    fn stage_ok(&self, stage: FilterStage, i: usize) -> bool {
        let t = self.task;
        match stage {
            FilterStage::Status => self.status_ok(i),
            FilterStage::LaunchType => self.launch_ok(i),
            FilterStage::Attributes => self.attrs_ok(i),
            FilterStage::Cpu => self.cpu(i) >= t.cpu,
            FilterStage::Memory => self.mem(i) >= t.memory,
            FilterStage::Gpu => self.gpu(i) >= t.gpu,
            FilterStage::TcpPorts => self.tcp_ok(i),
            FilterStage::UdpPorts => self.udp_ok(i),
            FilterStage::MemberOf => self.member_ok(i),
            FilterStage::DistinctInstance => !self.distinct || self.group_count(i) == 0,
            FilterStage::Agent => self.idx.connected[i],
        }
    }

    /// The code of the first stage rejecting instance `i`, or 0 when it passes all.
    #[inline]
    pub fn first_failure(&self, i: usize) -> u8 {
        for s in FilterStage::ALL {
            if !self.stage_ok(s, i) {
                return s.code();
            }
        }
        0
    }

    /// Every stage's verdict for instance `i`, with a human detail.
    pub fn explain(&self, i: usize) -> Vec<(FilterStage, bool, String)> {
        let inst = &self.idx.snapshot.instances[i];
        let t = self.task;
        FilterStage::ALL
            .iter()
            .map(|&s| {
                let ok = self.stage_ok(s, i);
                let detail = match s {
                    FilterStage::Status => format!("status is {}", self.idx.status[i].as_str()),
                    FilterStage::LaunchType => format!(
                        "launch type {} on {} instance",
                        t.launch_type.as_str(),
                        if self.idx.external[i] {
                            "an EXTERNAL"
                        } else {
                            "an EC2"
                        }
                    ),
                    FilterStage::Attributes => {
                        let missing: Vec<String> = t
                            .required_attributes
                            .iter()
                            .filter(|a| match inst.attribute(&a.name) {
                                None => true,
                                Some(v) => a.value.is_some() && v != a.value.as_deref(),
                            })
                            .map(|a| match &a.value {
                                Some(v) => format!("{}={v}", a.name),
                                None => a.name.clone(),
                            })
                            .collect();
                        if missing.is_empty() {
                            format!(
                                "has all {} required attributes",
                                t.required_attributes.len()
                            )
                        } else {
                            format!("missing required attributes: {}", missing.join(", "))
                        }
                    }
                    FilterStage::Cpu => {
                        format!("requires {} CPU units, {} remaining", t.cpu, self.cpu(i))
                    }
                    FilterStage::Memory => format!(
                        "requires {} MiB memory, {} MiB remaining",
                        t.memory,
                        self.mem(i)
                    ),
                    FilterStage::Gpu => {
                        format!("requires {} GPUs, {} remaining", t.gpu, self.gpu(i))
                    }
                    FilterStage::TcpPorts => format!("requires TCP host ports {:?}", t.tcp_ports),
                    FilterStage::UdpPorts => format!("requires UDP host ports {:?}", t.udp_ports),
                    FilterStage::MemberOf => {
                        format!("{} memberOf expression(s)", self.member.len())
                    }
                    FilterStage::DistinctInstance => {
                        if self.distinct {
                            format!(
                                "{} task(s) of group {} on the instance",
                                self.group_count(i),
                                t.group
                            )
                        } else {
                            "no distinctInstance constraint".into()
                        }
                    }
                    FilterStage::Agent => format!("agentConnected is {}", self.idx.connected[i]),
                };
                (s, ok, detail)
            })
            .collect()
    }

    /// How far instance `i` is from passing the given failed stage (smaller is closer).
    pub fn shortfall(&self, code: u8, i: usize) -> i64 {
        match FilterStage::from_code(code) {
            Some(FilterStage::Cpu) => self.task.cpu.saturating_sub(self.cpu(i)),
            Some(FilterStage::Memory) => self.task.memory.saturating_sub(self.mem(i)),
            Some(FilterStage::Gpu) => self.task.gpu.saturating_sub(self.gpu(i)),
            _ => 0,
        }
    }

    /// Records one task placed on instance `i`.
    pub fn apply(&mut self, i: usize) {
        if !self.dense {
            match self
                .placed_sparse
                .iter_mut()
                .find(|(x, _)| *x as usize == i)
            {
                Some((_, c)) => *c = c.saturating_add(1),
                None => self.placed_sparse.push((i as u32, 1)),
            }
            return;
        }
        self.placed[i] = self.placed[i].saturating_add(1);
        if self.member_dynamic {
            self.member_ok[i] = self.eval_member(i);
        }
    }
}
