//! Expressions compiled against a [`ClusterIndex`]: attribute leaves become lookup tables over
//! the column dictionary, so evaluating an instance is a few integer operations.

use super::{Expression, Node, PredKind, Subject, Val};
use crate::index::{ClusterIndex, Column, ABSENT};

pub(crate) struct Compiled<'c> {
    root: CNode<'c>,
    dynamic: bool,
}

enum CNode<'c> {
    Leaf(CLeaf<'c>),
    Not(Box<CNode<'c>>),
    And(Box<CNode<'c>>, Box<CNode<'c>>),
    Or(Box<CNode<'c>>, Box<CNode<'c>>),
}

enum CLeaf<'c> {
    Const(bool),
    Table {
        ids: &'c [u32],
        table: Vec<bool>,
        absent: bool,
    },
    AgentConnected {
        yes: bool,
        no: bool,
    },
    RegisteredAt(&'c PredKind),
    Running(&'c PredKind),
    Group {
        kind: &'c PredKind,
        /// Per group id: whether its name matches (so evaluating an instance looks only at the
        /// groups on it, and compiling costs O(groups), not O(instances)).
        groups_match: Vec<bool>,
        req_match: bool,
    },
}

fn table<'c>(kind: &PredKind, col: &'c Column<'_>) -> CLeaf<'c> {
    let table = col
        .dict
        .iter()
        .map(|v| kind.apply(std::iter::once(Val::Str(*v))))
        .collect();
    CLeaf::Table {
        ids: &col.ids,
        table,
        absent: kind.apply(std::iter::empty()),
    }
}

/// Compiles `expr` for `idx`. `req_group` is the group of the tasks the current call places
/// (they count for `task:group` on the instances they land on).
pub(crate) fn compile<'c, 'a: 'c>(
    expr: &'c Expression,
    idx: &'c ClusterIndex<'a>,
    req_group: &str,
) -> Compiled<'c> {
    Compiled {
        root: compile_node(&expr.root, idx, req_group),
        dynamic: expr.is_dynamic(),
    }
}

fn compile_node<'c, 'a: 'c>(
    node: &'c Node,
    idx: &'c ClusterIndex<'a>,
    req_group: &str,
) -> CNode<'c> {
    match node {
        Node::Not(n) => CNode::Not(Box::new(compile_node(n, idx, req_group))),
        Node::And(a, b) => CNode::And(
            Box::new(compile_node(a, idx, req_group)),
            Box::new(compile_node(b, idx, req_group)),
        ),
        Node::Or(a, b) => CNode::Or(
            Box::new(compile_node(a, idx, req_group)),
            Box::new(compile_node(b, idx, req_group)),
        ),
        Node::Pred(p) => CNode::Leaf(match &p.subject {
            Subject::Attribute(name) => match idx.attr_column(name) {
                Some(col) => table(&p.kind, col),
                None => CLeaf::Const(p.kind.apply(std::iter::empty())),
            },
            Subject::Ec2InstanceId => table(&p.kind, &idx.ec2),
            Subject::AgentVersion => table(&p.kind, &idx.versions),
            Subject::AgentConnected => CLeaf::AgentConnected {
                yes: p.kind.apply(std::iter::once(Val::Str(Some("true")))),
                no: p.kind.apply(std::iter::once(Val::Str(Some("false")))),
            },
            Subject::RegisteredAt => CLeaf::RegisteredAt(&p.kind),
            Subject::RunningTasksCount => CLeaf::Running(&p.kind),
            Subject::TaskGroup => {
                let mut groups_match = Vec::new();
                let mut req_match = false;
                if let Some(cond) = p.kind.cond() {
                    groups_match = idx
                        .group_names
                        .iter()
                        .map(|name| cond.test(Val::Str(Some(name.as_str()))))
                        .collect();
                    req_match = cond.test(Val::Str(Some(req_group)));
                }
                CLeaf::Group {
                    kind: &p.kind,
                    groups_match,
                    req_match,
                }
            }
        }),
    }
}

impl Compiled<'_> {
    /// Whether the expression can change as tasks are placed.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Evaluates instance `i`, given that the current call already placed `placed` tasks on it.
    #[inline]
    pub(crate) fn eval(&self, idx: &ClusterIndex<'_>, i: usize, placed: u32) -> bool {
        eval_node(&self.root, idx, i, placed)
    }
}

fn eval_node(node: &CNode<'_>, idx: &ClusterIndex<'_>, i: usize, placed: u32) -> bool {
    match node {
        CNode::Not(n) => !eval_node(n, idx, i, placed),
        CNode::And(a, b) => eval_node(a, idx, i, placed) && eval_node(b, idx, i, placed),
        CNode::Or(a, b) => eval_node(a, idx, i, placed) || eval_node(b, idx, i, placed),
        CNode::Leaf(leaf) => match leaf {
            CLeaf::Const(b) => *b,
            CLeaf::Table { ids, table, absent } => {
                let id = ids[i];
                if id == ABSENT {
                    *absent
                } else {
                    table[id as usize]
                }
            }
            CLeaf::AgentConnected { yes, no } => {
                if idx.connected[i] {
                    *yes
                } else {
                    *no
                }
            }
            CLeaf::RegisteredAt(kind) => kind.apply(std::iter::once(Val::Num(
                idx.snapshot.instances[i].registered_at,
            ))),
            CLeaf::Running(kind) => {
                let n = u64::from(idx.running[i]) + u64::from(placed);
                kind.apply(std::iter::once(Val::Num(n as f64)))
            }
            CLeaf::Group {
                kind,
                groups_match,
                req_match,
            } => {
                let has_any = placed > 0 || !idx.inst_groups[i].is_empty();
                let any_pos = || {
                    (placed > 0 && *req_match)
                        || idx.inst_groups[i]
                            .iter()
                            .any(|&(g, _)| groups_match.get(g as usize).copied().unwrap_or(false))
                };
                match kind {
                    PredKind::Exists => has_any,
                    PredKind::NotExists => !has_any,
                    PredKind::Pos(_) => any_pos(),
                    PredKind::Neg(_) => has_any && !any_pos(),
                }
            }
        },
    }
}
