//! berth-placement: the pure task-placement engine — which container instance gets each task,
//! and which tasks a service stops first — behaving as Amazon ECS documents task placement.
//!
//! # Pipeline
//!
//! 1. **Snapshot** ([`ClusterSnapshot`]): the control plane hands over the cluster's container
//!    instances — status, agent connection, attributes, registered and remaining resources
//!    (CPU, memory, GPU, taken TCP/UDP host ports) — and the tasks on each (their groups).
//! 2. **Index** ([`ClusterIndex::build`]): once per snapshot, attributes become dictionary-encoded
//!    columns and task groups become per-instance counts, so placement does no string work per
//!    instance.
//! 3. **Validate** ([`validate_strategies`], [`validate_constraints`]): at most 10 constraints
//!    (task definition plus request) and 5 strategies; `memberOf` expressions are parsed with the
//!    cluster query language ([`Expression`]); errors are `InvalidParameterException`s.
//! 4. **Filter** ([`FilterStage`]): each instance goes through small stages in ECS's order —
//!    ACTIVE status, launch type, required attributes, CPU, memory, GPU, TCP ports, UDP ports,
//!    memberOf, distinctInstance, agent connected. The first failing stage is recorded per
//!    instance (Nomad AllocMetric / SwarmKit explain style).
//! 5. **Score** ([`Strategy`]): candidates are ordered by the strategy chain, lexicographically in
//!    the given order — `binpack(cpu|memory)` prefers the least remaining resource that still
//!    fits, `spread(instanceId|host|attribute:<name>)` the field value with the fewest tasks of the
//!    task's group, `random` a seeded draw — then the seeded tie-break of the walk (see step 6).
//!    RunTask's default is `random` ([`run_task_default`]); services default to spreading
//!    across `attribute:ecs.availability-zone` then `instanceId` ([`service_default`]).
//! 6. **Account and repeat**: placing `count` tasks in one call charges each placement's CPU,
//!    memory, GPU, ports and group membership before choosing the next; only the chosen
//!    instance is re-filtered.
//!
//!    Steps 4–6 run as one of two walks. [`place`] takes the *ordered walk* for calls of up to
//!    64 tasks: instances are visited in the first strategy's order (orders the index keeps:
//!    remaining CPU/memory, each group's tasks per instance, each attribute value's instances),
//!    filters run only on visited instances, and the walk stops when nothing later can win — a
//!    placement costs about the same at 100 and at 10,000 instances. Larger calls, and
//!    [`place_exhaustive`], filter and score every instance for every task. Both pick an
//!    instance with the best key of the chain; exact ties may go to different instances.
//! 7. **Explain** ([`PlacementOutcome`], [`PlacementMetric`]): unplaced tasks become RunTask
//!    `failures[]` entries whose `arn` is the closest matching instance and whose `reason` is
//!    ECS's code (`RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:GPU`, `RESOURCE:PORTS`,
//!    `RESOURCE:PORTS_UDP`, `ATTRIBUTE`, `AGENT`, `INACTIVE`, `MemberOf placement constraint
//!    unsatisfied.`, `DistinctInstance placement constraint unsatisfied.`); the same metric
//!    renders the service event text ("… The closest matching container-instance {id} has
//!    insufficient memory available. …"). [`explain_instance`] evaluates every stage for one
//!    instance for a dry-run.
//! 8. **Scale-in** ([`select_tasks_to_stop`]): the reverse — stop tasks from the zone, then the
//!    instance, with the most tasks of the service (or per binpack/random), never a
//!    scale-in-protected task.
//!
//! The crate is pure: no IO, no async, no clock, no global randomness (the seed is an input),
//! and no panics on any input.

mod engine;
mod error;
mod filters;
mod index;
mod metric;
mod ordered;
pub mod query;
mod request;
mod rng;
mod scalein;
mod snapshot;
mod strategy;

pub use engine::{
    explain_instance, place, place_exhaustive, start_task, validate_request, MAX_COUNT,
};
pub use error::{EcsErrorKind, PlacementError};
pub use filters::{FilterStage, StageCounts, STAGE_COUNT};
pub use index::ClusterIndex;
pub use metric::{
    ClosestMatch, Failure, InstanceExplanation, Placement, PlacementMetric, PlacementOutcome,
    StageCheck, StepRecord,
};
pub use ordered::ORDERED_MAX_COUNT;
pub use query::{Expression, MAX_EXPRESSION_LEN};
pub use request::{
    run_task_default, service_default, validate_constraints, validate_strategies, BinpackField,
    Constraint, LaunchType, PlacementConstraint, PlacementRequest, PlacementStrategy, SpreadField,
    Strategy, TaskRequirements, MAX_CONSTRAINTS, MAX_STRATEGIES,
};
pub use scalein::{select_tasks_to_stop, ServiceTask};
pub use snapshot::{
    Attribute, ClusterSnapshot, ContainerInstance, InstanceStatus, InstanceView, Resources,
    TaskInfo, AZ_ATTRIBUTE, EXTERNAL_ATTRIBUTE,
};
