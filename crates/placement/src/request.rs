//! Placement inputs as the API carries them (raw constraint/strategy strings) and their
//! validated forms, with ECS-style `InvalidParameterException` messages.

use crate::error::PlacementError;
use crate::query::Expression;
use crate::snapshot::{Attribute, AZ_ATTRIBUTE};

/// ECS's limit on placement constraints per task (task definition plus request together).
pub const MAX_CONSTRAINTS: usize = 10;
/// ECS's limit on placement strategy rules per request.
pub const MAX_STRATEGIES: usize = 5;

/// A launch type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchType {
    /// `EC2`: placed on container instances without `ecs.capability.external`.
    Ec2,
    /// `EXTERNAL`: placed on ECS Anywhere instances (with `ecs.capability.external`).
    External,
    /// `FARGATE`: never placed by this engine.
    Fargate,
}

impl LaunchType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Ec2 => "EC2",
            LaunchType::External => "EXTERNAL",
            LaunchType::Fargate => "FARGATE",
        }
    }
}

/// A `placementConstraints` entry as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementConstraint {
    /// `type`: `distinctInstance` or `memberOf`.
    pub constraint_type: String,
    /// `expression`: a cluster query language expression (memberOf only).
    pub expression: Option<String>,
}

impl PlacementConstraint {
    /// `{"type": "memberOf", "expression": expr}`.
    pub fn member_of(expr: impl Into<String>) -> Self {
        Self {
            constraint_type: "memberOf".into(),
            expression: Some(expr.into()),
        }
    }

    /// `{"type": "distinctInstance"}`.
    pub fn distinct_instance() -> Self {
        Self {
            constraint_type: "distinctInstance".into(),
            expression: None,
        }
    }
}

/// A `placementStrategy` entry as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementStrategy {
    /// `type`: `random`, `spread` or `binpack`.
    pub strategy_type: String,
    /// `field`.
    pub field: Option<String>,
}

impl PlacementStrategy {
    /// `{"type": "random"}`.
    pub fn random() -> Self {
        Self {
            strategy_type: "random".into(),
            field: None,
        }
    }

    /// `{"type": "spread", "field": field}`.
    pub fn spread(field: impl Into<String>) -> Self {
        Self {
            strategy_type: "spread".into(),
            field: Some(field.into()),
        }
    }

    /// `{"type": "binpack", "field": field}`.
    pub fn binpack(field: impl Into<String>) -> Self {
        Self {
            strategy_type: "binpack".into(),
            field: Some(field.into()),
        }
    }
}

/// The strategy RunTask uses when the request has none: `random`.
pub fn run_task_default() -> Vec<PlacementStrategy> {
    vec![PlacementStrategy::random()]
}

/// What the service scheduler does when a service has no strategy: spread across
/// `attribute:ecs.availability-zone`, then across instances (favouring instances with the fewest
/// tasks of the service).
pub fn service_default() -> Vec<PlacementStrategy> {
    vec![
        PlacementStrategy::spread(format!("attribute:{AZ_ATTRIBUTE}")),
        PlacementStrategy::spread("instanceId"),
    ]
}

/// What the task needs, computed by the caller from the task definition and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequirements {
    /// Total CPU units of the task.
    pub cpu: i64,
    /// Total MiB: the task-level memory, else per container the hard limit or, where only that is
    /// set, the reservation.
    pub memory: i64,
    /// GPUs.
    pub gpu: i64,
    /// Static TCP host ports.
    pub tcp_ports: Vec<u16>,
    /// Static UDP host ports.
    pub udp_ports: Vec<u16>,
    /// `requiresAttributes` of the task definition plus any the caller derives.
    pub required_attributes: Vec<Attribute>,
    /// The launch type of the request.
    pub launch_type: LaunchType,
    /// The task definition's `compatibilities`; empty means "not checked".
    pub compatibilities: Vec<LaunchType>,
    /// The task group (`service:<name>` for services, `family:<family>` by default).
    pub group: String,
    /// `placementConstraints` of the task definition (memberOf only).
    pub task_definition_constraints: Vec<PlacementConstraint>,
}

impl TaskRequirements {
    /// An EC2 task of `family` in group `family:<family>` needing `cpu` units and `memory` MiB.
    pub fn new(family: &str, cpu: i64, memory: i64) -> Self {
        Self {
            cpu,
            memory,
            gpu: 0,
            tcp_ports: Vec::new(),
            udp_ports: Vec::new(),
            required_attributes: Vec::new(),
            launch_type: LaunchType::Ec2,
            compatibilities: Vec::new(),
            group: format!("family:{family}"),
            task_definition_constraints: Vec::new(),
        }
    }
}

/// One placement call: place `count` copies of `task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The task.
    pub task: TaskRequirements,
    /// Request `placementConstraints`.
    pub constraints: Vec<PlacementConstraint>,
    /// Request `placementStrategy`; empty means [`run_task_default`]. Services pass their own
    /// strategies or [`service_default`].
    pub strategies: Vec<PlacementStrategy>,
    /// How many tasks to place.
    pub count: u32,
    /// Seed for `random` and tie-breaking.
    pub seed: u64,
}

impl PlacementRequest {
    /// `count` copies of `task`, no constraints, default strategy, seed 0.
    pub fn new(task: TaskRequirements, count: u32) -> Self {
        Self {
            task,
            constraints: Vec::new(),
            strategies: Vec::new(),
            count,
            seed: 0,
        }
    }
}

/// The field of a spread strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host`.
    Instance,
    /// `attribute:<name>`.
    Attribute(String),
}

/// The field of a binpack strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    /// `cpu`.
    Cpu,
    /// `memory`.
    Memory,
}

/// A validated strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// `random`.
    Random,
    /// `spread(field)`.
    Spread(SpreadField),
    /// `binpack(field)`.
    Binpack(BinpackField),
}

impl Strategy {
    /// A short label such as `spread(attribute:ecs.availability-zone)`.
    pub fn label(&self) -> String {
        match self {
            Strategy::Random => "random".into(),
            Strategy::Spread(SpreadField::Instance) => "spread(instanceId)".into(),
            Strategy::Spread(SpreadField::Attribute(a)) => format!("spread(attribute:{a})"),
            Strategy::Binpack(BinpackField::Cpu) => "binpack(cpu)".into(),
            Strategy::Binpack(BinpackField::Memory) => "binpack(memory)".into(),
        }
    }
}

/// A validated constraint.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// `distinctInstance`.
    DistinctInstance,
    /// `memberOf(expression)`.
    MemberOf(Expression),
}

/// Validates strategies (empty input gives [`run_task_default`]).
pub fn validate_strategies(
    strategies: &[PlacementStrategy],
) -> Result<Vec<Strategy>, PlacementError> {
    if strategies.len() > MAX_STRATEGIES {
        return Err(PlacementError::invalid_parameter(format!(
            "Too many placement strategies: {} were specified; the maximum is {MAX_STRATEGIES}.",
            strategies.len()
        )));
    }
    if strategies.is_empty() {
        return Ok(vec![Strategy::Random]);
    }
    strategies.iter().map(validate_strategy).collect()
}

fn validate_strategy(s: &PlacementStrategy) -> Result<Strategy, PlacementError> {
    let field = s.field.as_deref().map(str::trim).filter(|f| !f.is_empty());
    match s.strategy_type.as_str() {
        // The field is documented as unused for random.
        "random" => Ok(Strategy::Random),
        "binpack" => match field.map(|f| f.to_ascii_lowercase()) {
            Some(f) if f == "cpu" => Ok(Strategy::Binpack(BinpackField::Cpu)),
            Some(f) if f == "memory" => Ok(Strategy::Binpack(BinpackField::Memory)),
            Some(_) => Err(PlacementError::invalid_parameter(format!(
                "Invalid field '{}' for the binpack placement strategy. Valid values are cpu and memory.",
                field.unwrap_or_default()
            ))),
            None => Err(PlacementError::invalid_parameter(
                "The binpack placement strategy requires a field. Valid values are cpu and memory.",
            )),
        },
        "spread" => match field {
            Some("instanceId") | Some("host") => Ok(Strategy::Spread(SpreadField::Instance)),
            Some(f) => match f.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Ok(Strategy::Spread(SpreadField::Attribute(name.to_string()))),
                _ => Err(PlacementError::invalid_parameter(format!(
                    "Invalid field '{f}' for the spread placement strategy. Valid values are instanceId, host, \
                     or attribute:<attribute-name>."
                ))),
            },
            None => Err(PlacementError::invalid_parameter(
                "The spread placement strategy requires a field. Valid values are instanceId, host, or \
                 attribute:<attribute-name>.",
            )),
        },
        other => Err(PlacementError::invalid_parameter(format!(
            "Invalid placement strategy type '{other}'. Valid values are random, spread and binpack."
        ))),
    }
}

/// Validates request constraints together with the task definition's. Task-definition
/// constraints may only be `memberOf`; the combined total may not exceed [`MAX_CONSTRAINTS`].
pub fn validate_constraints(
    request: &[PlacementConstraint],
    task_definition: &[PlacementConstraint],
) -> Result<Vec<Constraint>, PlacementError> {
    let total = request.len() + task_definition.len();
    if total > MAX_CONSTRAINTS {
        return Err(PlacementError::invalid_parameter(format!(
            "Too many placement constraints: {total} were specified (including the task definition's); \
             the maximum is {MAX_CONSTRAINTS}."
        )));
    }
    let mut out = Vec::with_capacity(total);
    for c in task_definition {
        if c.constraint_type != "memberOf" {
            return Err(PlacementError::invalid_parameter(format!(
                "Invalid task definition placement constraint type '{}'. The only valid value is memberOf.",
                c.constraint_type
            )));
        }
        out.push(validate_constraint(c)?);
    }
    for c in request {
        out.push(validate_constraint(c)?);
    }
    Ok(out)
}

fn validate_constraint(c: &PlacementConstraint) -> Result<Constraint, PlacementError> {
    let expr = c.expression.as_deref().filter(|e| !e.trim().is_empty());
    match c.constraint_type.as_str() {
        "distinctInstance" => match expr {
            None => Ok(Constraint::DistinctInstance),
            Some(_) => Err(PlacementError::invalid_parameter(
                "An expression can't be specified when the placement constraint type is distinctInstance.",
            )),
        },
        "memberOf" => match expr {
            Some(e) => Ok(Constraint::MemberOf(Expression::parse(e)?)),
            None => Err(PlacementError::invalid_parameter(
                "An expression is required when the placement constraint type is memberOf.",
            )),
        },
        other => Err(PlacementError::invalid_parameter(format!(
            "Invalid placement constraint type '{other}'. Valid values are distinctInstance and memberOf."
        ))),
    }
}
