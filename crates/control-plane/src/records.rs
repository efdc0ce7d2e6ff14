//! Storage records: what the control plane persists, as versionable serde structs.
//!
//! Records are berth's own types, distinct from the wire shapes, except where the stored thing *is* a
//! user document that berth keeps verbatim and returns as given (a registered task definition's
//! container definitions, a cluster's configuration). Those embed the generated wire types, which
//! are all-optional and so forward compatible.

use berth_ecs_api::ecs;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    /// ACTIVE or INACTIVE.
    pub status: String,
    pub created_at: f64,
    pub settings: Vec<ecs::ClusterSetting>,
    #[serde(default)]
    pub configuration: Option<ecs::ClusterConfiguration>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    #[serde(default)]
    pub service_connect_namespace: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// Per family: the last revision number ever handed out (revisions are never reused).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub last_revision: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// The full definition as DescribeTaskDefinition returns it (status included).
    pub definition: ecs::TaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When DeleteTaskDefinitions was called (status DELETE_IN_PROGRESS until purged).
    #[serde(default)]
    pub delete_requested_at: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountSettingRecord {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
    /// "user" (set through the API) — AWS-managed defaults are not stored.
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// admin | agent | readonly
    pub role: String,
    pub created_at: f64,
    #[serde(default)]
    pub description: String,
}

pub fn tags_to_wire(tags: &[Tag]) -> Vec<ecs::Tag> {
    tags.iter()
        .map(|t| ecs::Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}
