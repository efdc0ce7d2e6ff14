//! Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster, UpdateClusterSettings,
//! DeleteCluster.

use super::args::{cluster_arg, decode_token, max_results, paginate};
use super::tagging;
use crate::keys;
use crate::records::{
    convert, tags_to_wire, ClusterRecord, ClusterStatus, ContainerInstanceRecord, InstanceStatus,
    ServiceStatus,
};
use crate::state::Ctx;
use crate::stored;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Change, Repo};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs;

/// What lives in a cluster: registered (non-INACTIVE) container instances and the tasks holding
/// resources on them; services are counted by key under the cluster's service prefix.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterUsage {
    pub container_instances: usize,
    /// Tasks holding resources on the cluster's instances (not yet STOPPED).
    pub tasks: usize,
    pub running_tasks: usize,
    pub pending_tasks: usize,
    /// ACTIVE or DRAINING services.
    pub services: usize,
    pub active_services: usize,
}

pub async fn usage(repo: &Repo, cluster: &str) -> Result<ClusterUsage, ApiError> {
    let services = repo
        .list_arc::<crate::records::ServiceRecord>(&keys::services_in(cluster))
        .await?;
    let mut u = ClusterUsage {
        // ACTIVE and DRAINING services both keep a cluster from being deleted.
        services: services
            .iter()
            .filter(|s| s.value.status != ServiceStatus::Inactive)
            .count(),
        active_services: services
            .iter()
            .filter(|s| s.value.status == ServiceStatus::Active)
            .count(),
        ..Default::default()
    };
    repo.visit(
        &keys::instances_in(cluster),
        |_, i: &std::sync::Arc<ContainerInstanceRecord>, _| {
            if i.status != InstanceStatus::Inactive {
                u.container_instances += 1;
                u.running_tasks += i.running_tasks();
                u.pending_tasks += i.pending_tasks();
            }
        },
    )
    .await?;
    u.tasks = u.running_tasks + u.pending_tasks;
    Ok(u)
}

fn default_settings() -> Vec<stored::ClusterSetting> {
    vec![stored::ClusterSetting {
        name: Some(stored::ClusterSettingName::ContainerInsights),
        value: Some("disabled".into()),
    }]
}

fn validate_settings(settings: &[ecs::ClusterSetting]) -> Result<(), ApiError> {
    for s in settings {
        let v = s.value.as_deref().unwrap_or("");
        if s.name.is_none() {
            return Err(ApiError::invalid_parameter(
                "Cluster setting name should not be null or empty.",
            ));
        }
        if !matches!(v, "enabled" | "disabled" | "enhanced") {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid value '{v}' for setting containerInsights. Valid values are enabled, disabled and enhanced."
            )));
        }
    }
    Ok(())
}

fn merge_settings(into: &mut Vec<stored::ClusterSetting>, new: Vec<ecs::ClusterSetting>) {
    for s in new {
        let s = stored::ClusterSetting::from(s);
        match into.iter_mut().find(|x| x.name == s.name) {
            Some(e) => e.value = s.value,
            None => into.push(s),
        }
    }
}

/// What a cluster answer carries beyond the counts. DescribeClusters sends only what `include`
/// asks for; CreateCluster, UpdateCluster(Settings) and DeleteCluster answer with the settings,
/// configuration, tags and an empty `statistics` (as the aws CLI's create-cluster example shows).
#[derive(Default, Clone, Copy)]
struct Include {
    settings: bool,
    configurations: bool,
    statistics: bool,
    tags: bool,
    attachments: bool,
    /// The answer of a change (not of DescribeClusters): `statistics` is sent, empty.
    change: bool,
}

impl Include {
    fn all() -> Self {
        Include {
            settings: true,
            configurations: true,
            statistics: false,
            tags: true,
            attachments: false,
            change: true,
        }
    }
    fn from(fields: &[ecs::ClusterField]) -> Self {
        let mut i = Include::default();
        for f in fields {
            match f {
                ecs::ClusterField::Settings => i.settings = true,
                ecs::ClusterField::Configurations => i.configurations = true,
                ecs::ClusterField::Statistics => i.statistics = true,
                ecs::ClusterField::Tags => i.tags = true,
                ecs::ClusterField::Attachments => i.attachments = true,
            }
        }
        i
    }
}

fn to_wire(ctx: &Ctx, rec: &ClusterRecord, usage: ClusterUsage, inc: Include) -> ecs::Cluster {
    let active = rec.status == ClusterStatus::Active;
    let stat = |name: &str, v: usize| ecs::KeyValuePair {
        name: Some(name.into()),
        value: Some(v.to_string()),
    };
    ecs::Cluster {
        cluster_arn: Some(ctx.app.scope.cluster_arn(&rec.name)),
        cluster_name: Some(rec.name.clone()),
        status: Some(rec.status.as_str().to_string()),
        registered_container_instances_count: if active {
            usage.container_instances as i32
        } else {
            0
        },
        running_tasks_count: if active {
            usage.running_tasks as i32
        } else {
            0
        },
        pending_tasks_count: if active {
            usage.pending_tasks as i32
        } else {
            0
        },
        active_services_count: if active {
            usage.active_services as i32
        } else {
            0
        },
        statistics: (inc.statistics || inc.change).then(|| {
            if inc.statistics {
                vec![
                    stat("runningEC2TasksCount", usage.running_tasks),
                    stat("runningFargateTasksCount", 0),
                    stat("pendingEC2TasksCount", usage.pending_tasks),
                    stat("pendingFargateTasksCount", 0),
                    stat("runningExternalTasksCount", 0),
                    stat("pendingExternalTasksCount", 0),
                    stat("activeEC2ServiceCount", usage.active_services),
                    stat("activeFargateServiceCount", 0),
                    stat("drainingEC2ServiceCount", 0),
                    stat("drainingFargateServiceCount", 0),
                ]
            } else {
                vec![]
            }
        }),
        tags: inc.tags.then(|| tags_to_wire(&rec.tags)),
        settings: inc.settings.then(|| convert(&rec.settings)),
        configuration: if inc.configurations {
            rec.configuration.clone().map(Into::into)
        } else {
            None
        },
        capacity_providers: Some(rec.capacity_providers.clone()),
        default_capacity_provider_strategy: Some(convert(&rec.default_capacity_provider_strategy)),
        attachments: inc.attachments.then(Vec::new),
        service_connect_defaults: rec
            .service_connect_namespace
            .clone()
            .map(|n| ecs::ClusterServiceConnectDefaults { namespace: Some(n) }),
        ..Default::default()
    }
}

pub async fn create_cluster(
    ctx: &Ctx,
    req: ecs::CreateClusterRequest,
) -> Result<ecs::CreateClusterResponse, ApiError> {
    let name = req
        .cluster_name
        .clone()
        .unwrap_or_else(|| "default".to_string());
    berth_core::names::cluster_name(&name)
        .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    let tags = tagging::validate(req.tags.as_deref().unwrap_or_default())?;
    let mut settings = default_settings();
    if let Some(s) = req.settings.clone() {
        validate_settings(&s)?;
        merge_settings(&mut settings, s);
    }
    let repo = &ctx.app.repo;
    let key = keys::cluster(&name);
    enum Created {
        Existing(ClusterRecord),
        New(ClusterRecord),
    }
    let created = repo
        .update::<ClusterRecord, _>(&key, |existing| {
            if let Some(e) = existing.filter(|e| e.status == ClusterStatus::Active) {
                // CreateCluster is idempotent: the existing cluster is returned unchanged.
                return Ok(Change::Keep(Created::Existing(e)));
            }
            let rec = ClusterRecord {
                name: name.clone(),
                status: ClusterStatus::Active,
                created_at: now_epoch(),
                settings: settings.clone(),
                configuration: req.configuration.clone().map(Into::into),
                capacity_providers: req.capacity_providers.clone().unwrap_or_default(),
                default_capacity_provider_strategy: convert(
                    req.default_capacity_provider_strategy
                        .as_deref()
                        .unwrap_or_default(),
                ),
                service_connect_namespace: req
                    .service_connect_defaults
                    .as_ref()
                    .and_then(|d| d.namespace.clone()),
                tags: tags.clone(),
            };
            Ok(Change::Put(rec.clone(), Created::New(rec)))
        })
        .await?;
    match created {
        Created::Existing(e) => {
            let u = usage(repo, &name).await?;
            Ok(ecs::CreateClusterResponse {
                cluster: Some(to_wire(ctx, &e, u, Include::all())),
            })
        }
        Created::New(rec) => {
            tracing::info!(cluster = %name, "cluster created");
            Ok(ecs::CreateClusterResponse {
                cluster: Some(to_wire(ctx, &rec, ClusterUsage::default(), Include::all())),
            })
        }
    }
}

pub async fn describe_clusters(
    ctx: &Ctx,
    req: ecs::DescribeClustersRequest,
) -> Result<ecs::DescribeClustersResponse, ApiError> {
    let names = req.clusters.unwrap_or_else(|| vec!["default".to_string()]);
    if names.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "clusters can have at most 100 items.",
        ));
    }
    let inc = Include::from(req.include.as_deref().unwrap_or_default());
    let repo = &ctx.app.repo;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for arg in names {
        let missing = |arg: &str| ecs::Failure {
            arn: Some(if arg.starts_with("arn:") {
                arg.to_string()
            } else {
                ctx.app.scope.cluster_arn(arg)
            }),
            reason: Some("MISSING".into()),
            detail: None,
        };
        let name = match berth_core::arn::cluster_name_of(&arg) {
            Some(n) if berth_core::names::cluster_name(n).is_ok() => n.to_string(),
            _ => {
                failures.push(missing(&arg));
                continue;
            }
        };
        match repo.get::<ClusterRecord>(&keys::cluster(&name)).await? {
            Some(rec) => {
                let u = usage(repo, &name).await?;
                clusters.push(to_wire(ctx, &rec.value, u, inc));
            }
            None => failures.push(missing(&arg)),
        }
    }
    Ok(ecs::DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

pub async fn list_clusters(
    ctx: &Ctx,
    req: ecs::ListClustersRequest,
) -> Result<ecs::ListClustersResponse, ApiError> {
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let all = ctx.app.repo.list::<ClusterRecord>(keys::CLUSTERS).await?;
    let items = all
        .into_iter()
        .filter(|r| r.value.status == ClusterStatus::Active)
        .map(|r| (r.key, ctx.app.scope.cluster_arn(&r.value.name)))
        .collect();
    let (arns, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListClustersResponse {
        cluster_arns: Some(arns),
        next_token: next,
    })
}

/// Read-modify-write of an ACTIVE cluster.
async fn update_active(
    ctx: &Ctx,
    cluster: Option<&str>,
    edit: impl Fn(&mut ClusterRecord) -> Result<(), ApiError>,
) -> Result<ecs::Cluster, ApiError> {
    let name = cluster_arg(cluster)?;
    let repo = &ctx.app.repo;
    let key = keys::cluster(&name);
    let rec = repo
        .update::<ClusterRecord, _>(&key, |cur| {
            let mut rec = match cur {
                Some(r) if r.status == ClusterStatus::Active => r,
                _ => return Err(ApiError::cluster_not_found()),
            };
            edit(&mut rec)?;
            Ok(Change::Put(rec.clone(), rec))
        })
        .await?;
    let u = usage(repo, &name).await?;
    Ok(to_wire(ctx, &rec, u, Include::all()))
}

pub async fn update_cluster(
    ctx: &Ctx,
    req: ecs::UpdateClusterRequest,
) -> Result<ecs::UpdateClusterResponse, ApiError> {
    if let Some(s) = &req.settings {
        validate_settings(s)?;
    }
    let cluster = update_active(ctx, req.cluster.as_deref(), |rec| {
        if let Some(s) = req.settings.clone() {
            merge_settings(&mut rec.settings, s);
        }
        if let Some(c) = req.configuration.clone() {
            rec.configuration = Some(c.into());
        }
        if let Some(d) = &req.service_connect_defaults {
            rec.service_connect_namespace = d.namespace.clone().filter(|n| !n.is_empty());
        }
        Ok(())
    })
    .await?;
    Ok(ecs::UpdateClusterResponse {
        cluster: Some(cluster),
    })
}

pub async fn update_cluster_settings(
    ctx: &Ctx,
    req: ecs::UpdateClusterSettingsRequest,
) -> Result<ecs::UpdateClusterSettingsResponse, ApiError> {
    let settings = req.settings.clone().unwrap_or_default();
    validate_settings(&settings)?;
    let cluster = update_active(ctx, req.cluster.as_deref(), |rec| {
        merge_settings(&mut rec.settings, settings.clone());
        Ok(())
    })
    .await?;
    Ok(ecs::UpdateClusterSettingsResponse {
        cluster: Some(cluster),
    })
}

pub async fn delete_cluster(
    ctx: &Ctx,
    req: ecs::DeleteClusterRequest,
) -> Result<ecs::DeleteClusterResponse, ApiError> {
    let name = cluster_arg(req.cluster.as_deref())?;
    let repo = &ctx.app.repo;
    let key = keys::cluster(&name);
    let rec = repo
        .retry(|| async {
            let mut rec = match repo.get::<ClusterRecord>(&key).await? {
                Some(r) if r.value.status == ClusterStatus::Active => r,
                _ => return Err(ApiError::cluster_not_found()),
            };
            let u = usage(repo, &name).await?;
            if u.container_instances > 0 {
                return Err(ApiError::new(
                    "ClusterContainsContainerInstancesException",
                    "The Cluster cannot be deleted while Container Instances are active or draining.",
                ));
            }
            if u.services > 0 {
                return Err(ApiError::new(
                    "ClusterContainsServicesException",
                    "The Cluster cannot be deleted while Services are active.",
                ));
            }
            if u.tasks > 0 {
                return Err(ApiError::new(
                    "ClusterContainsTasksException",
                    "The Cluster cannot be deleted while Tasks are active.",
                ));
            }
            rec.value.status = ClusterStatus::Inactive;
            // Invariant (for the writers of instances and services): registering a container
            // instance or creating a service rewrites the cluster record in the same
            // transaction, so this compare fails if one slipped in after the usage check. Tasks
            // need an instance.
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: key.clone(),
                    revision: rec.revision,
                })
                .put(key.clone(), to_bytes(&rec.value));
            Ok(Attempt::Commit(txn, rec.value))
        })
        .await?;
    tracing::info!(cluster = %name, "cluster deleted");
    ctx.app.placement.forget(&name);
    Ok(ecs::DeleteClusterResponse {
        cluster: Some(to_wire(ctx, &rec, ClusterUsage::default(), Include::all())),
    })
}
