//! The ECS service's key layout in the state store. Every key lives under `ecs/`; names never
//! contain `/`.

pub const CLUSTERS: &str = "ecs/clusters/";
pub fn cluster(name: &str) -> String {
    format!("{CLUSTERS}{name}")
}
pub fn family(family: &str) -> String {
    format!("ecs/families/{family}")
}
pub const TASK_DEFINITIONS: &str = "ecs/taskdefs/";
pub fn task_definitions_of(family: &str) -> String {
    format!("{TASK_DEFINITIONS}{family}/")
}
pub fn task_definition(family: &str, revision: u32) -> String {
    format!("{TASK_DEFINITIONS}{family}/{revision:010}")
}
pub fn instances_in(cluster: &str) -> String {
    format!("ecs/instances/{cluster}/")
}
pub fn instance(cluster: &str, id: &str) -> String {
    format!("ecs/instances/{cluster}/{id}")
}
pub const INSTANCES: &str = "ecs/instances/";
pub fn task(cluster: &str, id: &str) -> String {
    format!("{TASKS}{cluster}/{id}")
}
pub fn client_token(cluster: &str, token: &str) -> String {
    format!("ecs/client-tokens/{cluster}/{}", hex::encode(token))
}
pub const TASKS: &str = "ecs/tasks/";
pub fn tasks_in(cluster: &str) -> String {
    format!("{TASKS}{cluster}/")
}
pub fn services_in(cluster: &str) -> String {
    format!("ecs/services/{cluster}/")
}
pub const SERVICES: &str = "ecs/services/";
pub fn service(cluster: &str, name: &str) -> String {
    format!("ecs/services/{cluster}/{name}")
}
pub const SETTINGS: &str = "ecs/settings/";
pub fn setting(principal: &str, name: &str) -> String {
    format!("{SETTINGS}{principal}|{name}")
}
pub fn service_deployments_of(cluster: &str, service: &str) -> String {
    format!("ecs/service-deployments/{cluster}/{service}/")
}
pub fn service_deployment(cluster: &str, service: &str, id: &str) -> String {
    format!("ecs/service-deployments/{cluster}/{service}/{id}")
}
pub const SERVICE_DEPLOYMENTS: &str = "ecs/service-deployments/";
pub fn service_revision(cluster: &str, service: &str, number: &str) -> String {
    format!("{SERVICE_REVISIONS}{cluster}/{service}/{number}")
}
pub const SERVICE_REVISIONS: &str = "ecs/service-revisions/";
pub fn service_revisions_of(cluster: &str, service: &str) -> String {
    format!("{SERVICE_REVISIONS}{cluster}/{service}/")
}
