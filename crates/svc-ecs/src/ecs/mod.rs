//! The ECS API (`AmazonEC2ContainerServiceV20141113.<Operation>`): the dispatch table. The
//! handlers are the submodules; the argument helpers they share are in `args`.

pub(crate) mod args;
mod clusters;
pub(crate) mod deployments;
pub(crate) mod explain;
pub(crate) mod instances;
pub(crate) mod services;
mod settings;
mod tagging;
pub(crate) mod task_sets;
pub(crate) mod taskdefs;
pub(crate) mod tasks;

use crate::state::Ctx;
use berth_service::codec::{decode_in, encode, JsonDialect, Missing};
use berth_service::ApiError;
use berth_wire::ecs::Operation;

pub use berth_wire::ecs::TARGET_PREFIX;

/// How ECS words a request that does not fit its model.
const DIALECT: JsonDialect = JsonDialect {
    missing: Missing::NotNullOrEmpty,
    invalid_value_code: "InvalidParameterException",
    enum_texts: &[
        // RunTask's answer to an unknown launch type (as moto, which mirrors AWS's answers, has
        // it; MANAGED_INSTANCES is in the model but not a launch type RunTask takes).
        (
            "launchType",
            "launch type should be one of [EC2,FARGATE,EXTERNAL]",
        ),
    ],
};

/// Decodes a request in ECS's words.
fn decode<T: serde::de::DeserializeOwned + berth_wire::Validate>(
    body: &[u8],
) -> Result<T, ApiError> {
    decode_in(body, &DIALECT)
}

macro_rules! route {
    ($ctx:expr, $body:expr, $handler:path) => {
        berth_service::route!(decode, $ctx, $body, $handler)
    };
}

/// Runs one ECS operation. `op` has already been authorized for the caller.
pub async fn dispatch(ctx: &Ctx, op: Operation, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use Operation as O;
    match op {
        O::CreateCluster => route!(ctx, body, clusters::create_cluster),
        O::DescribeClusters => route!(ctx, body, clusters::describe_clusters),
        O::ListClusters => route!(ctx, body, clusters::list_clusters),
        O::UpdateCluster => route!(ctx, body, clusters::update_cluster),
        O::UpdateClusterSettings => route!(ctx, body, clusters::update_cluster_settings),
        O::DeleteCluster => route!(ctx, body, clusters::delete_cluster),
        O::RegisterTaskDefinition => route!(ctx, body, taskdefs::register),
        O::DescribeTaskDefinition => route!(ctx, body, taskdefs::describe),
        O::ListTaskDefinitions => route!(ctx, body, taskdefs::list),
        O::ListTaskDefinitionFamilies => route!(ctx, body, taskdefs::list_families),
        O::DeregisterTaskDefinition => route!(ctx, body, taskdefs::deregister),
        O::DeleteTaskDefinitions => route!(ctx, body, taskdefs::delete),
        O::TagResource => route!(ctx, body, tagging::tag_resource),
        O::UntagResource => route!(ctx, body, tagging::untag_resource),
        O::ListTagsForResource => route!(ctx, body, tagging::list_tags_for_resource),
        O::PutAccountSetting => route!(ctx, body, settings::put_account_setting),
        O::PutAccountSettingDefault => route!(ctx, body, settings::put_account_setting_default),
        O::DeleteAccountSetting => route!(ctx, body, settings::delete_account_setting),
        O::ListAccountSettings => route!(ctx, body, settings::list_account_settings),
        O::RegisterContainerInstance => route!(ctx, body, instances::register),
        O::DeregisterContainerInstance => route!(ctx, body, instances::deregister),
        O::DescribeContainerInstances => route!(ctx, body, instances::describe),
        O::ListContainerInstances => route!(ctx, body, instances::list),
        O::UpdateContainerInstancesState => route!(ctx, body, instances::update_state),
        O::PutAttributes => route!(ctx, body, instances::put_attributes),
        O::DeleteAttributes => route!(ctx, body, instances::delete_attributes),
        O::ListAttributes => route!(ctx, body, instances::list_attributes),
        O::DiscoverPollEndpoint => route!(ctx, body, instances::discover_poll_endpoint),
        O::RunTask => route!(ctx, body, tasks::run_task),
        O::StartTask => route!(ctx, body, tasks::start_task),
        O::StopTask => route!(ctx, body, tasks::stop_task),
        O::DescribeTasks => route!(ctx, body, tasks::describe_tasks),
        O::ListTasks => route!(ctx, body, tasks::list_tasks),
        O::SubmitTaskStateChange => {
            let req = decode(body)?;
            let extras: tasks::TaskReportExtras = serde_json::from_slice(body).unwrap_or_default();
            encode(&tasks::submit_task_state_change(ctx, req, extras).await?)
        }
        O::SubmitContainerStateChange => route!(ctx, body, tasks::submit_container_state_change),
        O::CreateService => route!(ctx, body, services::create_service),
        O::UpdateService => route!(ctx, body, services::update_service),
        O::DeleteService => route!(ctx, body, services::delete_service),
        O::DescribeServices => route!(ctx, body, services::describe_services),
        O::ListServices => route!(ctx, body, services::list_services),
        O::UpdateTaskProtection => route!(ctx, body, services::update_task_protection),
        O::GetTaskProtection => route!(ctx, body, services::get_task_protection),
        O::ListServiceDeployments => route!(ctx, body, deployments::list_service_deployments),
        O::DescribeServiceDeployments => {
            route!(ctx, body, deployments::describe_service_deployments)
        }
        O::DescribeServiceRevisions => route!(ctx, body, deployments::describe_service_revisions),
        O::StopServiceDeployment => route!(ctx, body, deployments::stop_service_deployment),
        O::CreateTaskSet => route!(ctx, body, task_sets::create_task_set),
        O::UpdateTaskSet => route!(ctx, body, task_sets::update_task_set),
        O::UpdateServicePrimaryTaskSet => {
            route!(ctx, body, task_sets::update_service_primary_task_set)
        }
        O::DeleteTaskSet => route!(ctx, body, task_sets::delete_task_set),
        O::DescribeTaskSets => route!(ctx, body, task_sets::describe_task_sets),
        other => Err(not_yet(other)),
    }
}

/// Operations berth does not implement yet answer honestly instead of pretending to succeed.
fn not_yet(op: Operation) -> ApiError {
    ApiError::new(
        "UnsupportedFeatureException",
        format!(
            "{} is not supported by this berth control plane yet.",
            op.as_str()
        ),
    )
}

/// Is this operation implemented (used for the README compatibility table test)?
pub fn implemented(op: Operation) -> bool {
    !matches!(dispatch_kind(op), Kind::NotYet)
}

enum Kind {
    Implemented,
    NotYet,
}

fn dispatch_kind(op: Operation) -> Kind {
    use Operation as O;
    match op {
        O::CreateCluster
        | O::DescribeClusters
        | O::ListClusters
        | O::UpdateCluster
        | O::UpdateClusterSettings
        | O::DeleteCluster
        | O::RegisterTaskDefinition
        | O::DescribeTaskDefinition
        | O::ListTaskDefinitions
        | O::ListTaskDefinitionFamilies
        | O::DeregisterTaskDefinition
        | O::DeleteTaskDefinitions
        | O::TagResource
        | O::UntagResource
        | O::ListTagsForResource
        | O::PutAccountSetting
        | O::PutAccountSettingDefault
        | O::DeleteAccountSetting
        | O::ListAccountSettings
        | O::RegisterContainerInstance
        | O::DeregisterContainerInstance
        | O::DescribeContainerInstances
        | O::ListContainerInstances
        | O::UpdateContainerInstancesState
        | O::PutAttributes
        | O::DeleteAttributes
        | O::ListAttributes
        | O::DiscoverPollEndpoint
        | O::RunTask
        | O::StartTask
        | O::StopTask
        | O::DescribeTasks
        | O::ListTasks
        | O::SubmitTaskStateChange
        | O::SubmitContainerStateChange
        | O::CreateService
        | O::UpdateService
        | O::DeleteService
        | O::DescribeServices
        | O::ListServices
        | O::UpdateTaskProtection
        | O::GetTaskProtection
        | O::ListServiceDeployments
        | O::DescribeServiceDeployments
        | O::DescribeServiceRevisions
        | O::StopServiceDeployment
        | O::CreateTaskSet
        | O::UpdateTaskSet
        | O::UpdateServicePrimaryTaskSet
        | O::DeleteTaskSet
        | O::DescribeTaskSets => Kind::Implemented,
        _ => Kind::NotYet,
    }
}
