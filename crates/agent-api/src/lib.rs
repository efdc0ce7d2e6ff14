//! berth-agent-api: the control plane ↔ agent protocol.
//!
//! Upward (agent → control plane) the agent uses the ECS agent's own operations on the ECS API:
//! `RegisterContainerInstance` (at start; again with `containerInstanceArn` to re-register the same
//! identity after a restart), `DiscoverPollEndpoint`, `SubmitTaskStateChange`,
//! `SubmitContainerStateChange`, `DeregisterContainerInstance`. Their wire types are the generated
//! `berth_wire::ecs` shapes. SubmitTaskStateChange also carries what ECS's own agent reports on
//! private channels, as extra members the ECS model lacks (AWS clients ignore unknown members):
//! `containers[].healthStatus`, `containers[].networkInterfaces[{privateIpv4Address}]`, and
//! `attachments[].type` / `attachments[].details[{name, value}]`.
//!
//! Downward (control plane → agent) berth uses one long-poll operation on the same endpoint and
//! auth, `BerthAgent_20261122.PollDesiredState`: the agent says which generation of its desired
//! state it has; the control plane answers at once if it has a newer one, otherwise holds the
//! request until one appears (a new task reaches its agent within milliseconds) or `waitSeconds`
//! pass. The poll doubles as the heartbeat that makes `agentConnected` true.
//!
//! Invariants:
//! - `generation` only grows for a container instance; an agent ignores any answer whose
//!   generation is lower than one it has already applied (a replayed or stale answer is harmless).
//! - The answer is the *complete* desired state for the instance: every task the control plane
//!   wants on it, with its desired status. A task missing from the list that the agent still runs is
//!   one the control plane has forgotten (e.g. cleaned up long after STOPPED): stop it.
//! - desiredStatus is written only by the control plane; lastStatus only by the agent (through the
//!   Submit*StateChange calls). States only move forward.

use berth_wire::ecs;
use serde::{Deserialize, Serialize};

/// The `X-Amz-Target` prefix of berth's agent channel.
pub const TARGET_PREFIX: &str = "BerthAgent_20261122";
/// The long-poll operation.
pub const POLL_OPERATION: &str = "PollDesiredState";
/// Longest a poll is held before the control plane answers with the unchanged state.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// An instance whose agent has not polled for this long is shown `agentConnected: false`.
pub const DISCONNECTED_AFTER_SECONDS: u64 = 45;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub cluster: String,
    pub container_instance_arn: String,
    /// The generation the agent has applied (0 at start).
    pub known_generation: u64,
    /// How long to hold the request when nothing changed (capped at [`MAX_WAIT_SECONDS`]).
    pub wait_seconds: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    pub generation: u64,
    /// ACTIVE, DRAINING, INACTIVE (deregistered: the agent should stop polling).
    pub instance_status: String,
    pub tasks: Vec<DesiredTask>,
}

/// Everything an agent needs to run (or stop) one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredTask {
    pub task_arn: String,
    pub cluster_arn: String,
    /// RUNNING or STOPPED.
    pub desired_status: String,
    /// The full task definition the task was started from.
    pub task_definition: ecs::TaskDefinition,
    /// RunTask/StartTask overrides (container command/environment/cpu/memory, task cpu/memory…).
    #[serde(default)]
    pub overrides: ecs::TaskOverride,
    pub group: String,
    #[serde(default)]
    pub started_by: Option<String>,
    /// Epoch seconds.
    pub created_at: f64,
    /// Why the control plane wants it stopped (becomes stoppedReason), when desired STOPPED.
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// The stop code the control plane chose (UserInitiated, ServiceSchedulerInitiated, …).
    #[serde(default)]
    pub stop_code: Option<String>,
    /// Task tags (for the metadata endpoint's taskWithTags).
    #[serde(default)]
    pub tags: Vec<ecs::Tag>,
    /// awsvpc subnets and security groups (the ENI's `subnetId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<ecs::NetworkConfiguration>,
    /// The GPUs assigned to each container, by container name (for the engine's device
    /// requests and `NVIDIA_VISIBLE_DEVICES`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gpu_ids: std::collections::BTreeMap<String, Vec<String>>,
}

/// The operation that hands an agent the credentials of a task's IAM role
/// (`taskRoleArn`), for the task's containers to fetch from the credentials endpoint.
pub const TASK_CREDENTIALS_OPERATION: &str = "GetTaskRoleCredentials";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsRequest {
    pub cluster: String,
    /// The asking agent's instance: the task must be placed on it.
    pub container_instance_arn: String,
    pub task_arn: String,
}

/// Temporary credentials for a task's role, as the credentials endpoint serves them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Epoch seconds.
    pub expiration: f64,
}
