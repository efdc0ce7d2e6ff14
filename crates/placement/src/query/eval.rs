//! Direct evaluation of an [`Expression`] against one [`InstanceView`]. This is the reference
//! semantics; [`compiled`](super::compiled) must agree with it.

use super::{Expression, Node, Predicate, Subject, Val};
use crate::snapshot::InstanceView;

impl Expression {
    /// Whether the instance `view` satisfies the expression.
    pub fn matches(&self, view: &InstanceView<'_>) -> bool {
        eval_node(&self.root, view)
    }
}

fn eval_node(node: &Node, view: &InstanceView<'_>) -> bool {
    match node {
        Node::Pred(p) => eval_pred(p, view),
        Node::Not(n) => !eval_node(n, view),
        Node::And(a, b) => eval_node(a, view) && eval_node(b, view),
        Node::Or(a, b) => eval_node(a, view) || eval_node(b, view),
    }
}

pub(crate) fn eval_pred(p: &Predicate, view: &InstanceView<'_>) -> bool {
    let inst = view.instance;
    match &p.subject {
        Subject::Attribute(name) => p.kind.apply(inst.attribute(name).map(Val::Str).into_iter()),
        Subject::Ec2InstanceId => p.kind.apply(
            inst.ec2_instance_id
                .as_deref()
                .map(|s| Val::Str(Some(s)))
                .into_iter(),
        ),
        Subject::AgentConnected => {
            p.kind
                .apply(std::iter::once(Val::Str(Some(if inst.agent_connected {
                    "true"
                } else {
                    "false"
                }))))
        }
        Subject::AgentVersion => p.kind.apply(
            inst.agent_version
                .as_deref()
                .map(|s| Val::Str(Some(s)))
                .into_iter(),
        ),
        Subject::RegisteredAt => p.kind.apply(std::iter::once(Val::Num(inst.registered_at))),
        Subject::RunningTasksCount => p
            .kind
            .apply(std::iter::once(Val::Num(view.running_tasks_count() as f64))),
        Subject::TaskGroup => p.kind.apply(view.groups().map(|g| Val::Str(Some(g)))),
    }
}
