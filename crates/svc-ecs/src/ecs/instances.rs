//! Container instances: RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState,
//! PutAttributes / ListAttributes / DeleteAttributes, DiscoverPollEndpoint.

use super::args::{active_cluster, cluster_arg, decode_token, instance_id, max_results, paginate};
use super::tagging;
use crate::keys;
use crate::records::{
    tags_to_wire, AttributeRecord, ClusterRecord, ClusterStatus, ContainerInstanceRecord,
    InstanceStatus, ResourcesRecord, TaskRecord,
};
use crate::state::Ctx;
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Change, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs;

/// ECS: at most 10 custom attributes per resource.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

fn is_custom(name: &str) -> bool {
    !(name.starts_with("ecs.") || name.starts_with("com.amazonaws.ecs."))
}

fn resource_int(name: &str, v: i64) -> ecs::Resource {
    ecs::Resource {
        name: Some(name.into()),
        type_: Some("INTEGER".into()),
        integer_value: v as i32,
        ..Default::default()
    }
}

fn resource_ports(name: &str, ports: &[u16]) -> ecs::Resource {
    ecs::Resource {
        name: Some(name.into()),
        type_: Some("STRINGSET".into()),
        string_set_value: Some(ports.iter().map(|p| p.to_string()).collect()),
        ..Default::default()
    }
}

fn resources_wire(r: &ResourcesRecord) -> Vec<ecs::Resource> {
    let mut v = vec![
        resource_int("CPU", r.cpu),
        resource_int("MEMORY", r.memory),
        resource_ports("PORTS", &r.ports),
        resource_ports("PORTS_UDP", &r.ports_udp),
    ];
    if r.gpu > 0 || !r.gpu_ids.is_empty() {
        v.push(if r.gpu_ids.is_empty() {
            resource_int("GPU", r.gpu)
        } else {
            ecs::Resource {
                name: Some("GPU".into()),
                type_: Some("STRINGSET".into()),
                string_set_value: Some(r.gpu_ids.clone()),
                ..Default::default()
            }
        });
    }
    v
}

pub(crate) fn to_wire(
    ctx: &Ctx,
    rec: &ContainerInstanceRecord,
    include_tags: bool,
) -> ecs::ContainerInstance {
    let arn = ctx.app.scope.container_instance_arn(&rec.cluster, &rec.id);
    ecs::ContainerInstance {
        container_instance_arn: Some(arn.clone()),
        ec2_instance_id: rec.ec2_instance_id.clone(),
        version: rec.version,
        version_info: rec.version_info.clone().map(Into::into),
        remaining_resources: Some(resources_wire(&rec.remaining())),
        registered_resources: Some(resources_wire(&rec.registered)),
        status: Some(rec.status.as_str().to_string()),
        status_reason: rec.status_reason.clone(),
        agent_connected: rec.status != InstanceStatus::Inactive
            && ctx.app.agents.connected(&rec.id),
        running_tasks_count: rec.running_tasks() as i32,
        pending_tasks_count: rec.pending_tasks() as i32,
        attributes: Some(
            rec.attributes
                .iter()
                .map(|a| ecs::Attribute {
                    name: Some(a.name.clone()),
                    value: a.value.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        registered_at: Some(rec.registered_at),
        attachments: Some(vec![]),
        tags: Some(if include_tags {
            tags_to_wire(&rec.tags)
        } else {
            vec![]
        }),
        ..Default::default()
    }
}

fn parse_resources(list: &[ecs::Resource]) -> Result<ResourcesRecord, ApiError> {
    let mut r = ResourcesRecord::default();
    for res in list {
        let name = res.name.as_deref().unwrap_or("");
        let ports = |res: &ecs::Resource| -> Result<Vec<u16>, ApiError> {
            let mut v = Vec::new();
            for p in res.string_set_value.as_deref().unwrap_or_default() {
                v.push(p.parse::<u16>().map_err(|_| {
                    ApiError::invalid_parameter(format!("Invalid port '{p}' in {name}."))
                })?);
            }
            v.sort_unstable();
            v.dedup();
            Ok(v)
        };
        let int = |res: &ecs::Resource| -> i64 {
            if res.integer_value != 0 {
                res.integer_value as i64
            } else if res.long_value != 0 {
                res.long_value
            } else {
                res.double_value as i64
            }
        };
        match name {
            "CPU" => r.cpu = int(res),
            "MEMORY" => r.memory = int(res),
            // ECS agents register their GPUs by id (STRINGSET); a bare count is taken too.
            "GPU" => match res.string_set_value.as_deref() {
                Some(ids) if !ids.is_empty() => {
                    let mut ids = ids.to_vec();
                    ids.sort();
                    ids.dedup();
                    r.gpu = ids.len() as i64;
                    r.gpu_ids = ids;
                }
                _ => r.gpu = int(res),
            },
            "PORTS" => r.ports = ports(res)?,
            "PORTS_UDP" => r.ports_udp = ports(res)?,
            _ => {}
        }
    }
    if r.cpu < 0 || r.memory < 0 || r.gpu < 0 {
        return Err(ApiError::invalid_parameter(
            "totalResources cannot be negative.",
        ));
    }
    Ok(r)
}

fn validate_attribute(a: &ecs::Attribute) -> Result<AttributeRecord, ApiError> {
    let name = a.name.clone().unwrap_or_default();
    let ok_name = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c));
    if !ok_name {
        return Err(ApiError::invalid_parameter(format!(
            "Attribute name '{name}' is invalid. Names can be up to 128 letters, numbers, hyphens, underscores, forward slashes, periods and at signs."
        )));
    }
    if let Some(v) = &a.value {
        if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid_parameter(format!(
                "Attribute value for '{name}' is invalid. Values can be up to 128 printable characters."
            )));
        }
    }
    Ok(AttributeRecord {
        name,
        value: a.value.clone(),
    })
}

fn merge_attributes(
    into: &mut Vec<AttributeRecord>,
    new: Vec<AttributeRecord>,
) -> Result<(), ApiError> {
    for a in new {
        match into.iter_mut().find(|x| x.name == a.name) {
            Some(e) => e.value = a.value,
            None => into.push(a),
        }
    }
    if into.iter().filter(|a| is_custom(&a.name)).count() > MAX_CUSTOM_ATTRIBUTES {
        return Err(ApiError::new(
            "AttributeLimitExceededException",
            format!("You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."),
        ));
    }
    Ok(())
}

pub async fn register(
    ctx: &Ctx,
    req: ecs::RegisterContainerInstanceRequest,
) -> Result<ecs::RegisterContainerInstanceResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    let registered = parse_resources(req.total_resources.as_deref().unwrap_or_default())?;
    let mut attributes = Vec::new();
    for a in req.attributes.as_deref().unwrap_or_default() {
        attributes.push(validate_attribute(a)?);
    }
    let tags = tagging::validate(req.tags.as_deref().unwrap_or_default())?;
    let identity: serde_json::Value = req
        .instance_identity_document
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let ec2_instance_id = identity["instanceId"].as_str().map(str::to_string);
    for (attr, field) in [
        ("ecs.availability-zone", "availabilityZone"),
        ("ecs.instance-type", "instanceType"),
    ] {
        if let Some(v) = identity[field].as_str() {
            if !attributes.iter().any(|a: &AttributeRecord| a.name == attr) {
                attributes.push(AttributeRecord {
                    name: attr.into(),
                    value: Some(v.to_string()),
                });
            }
        }
    }
    let repo = &ctx.app.repo;
    let existing_id = req.container_instance_arn.as_deref().and_then(instance_id);
    let (rec, reregistered) = repo
        .retry(|| async {
            // The agent's default cluster is created on first join, as ECS does.
            let cluster_rec = match repo.get::<ClusterRecord>(&keys::cluster(&cluster)).await? {
                Some(c) if c.value.status == ClusterStatus::Active => Some(c),
                _ if cluster == "default" => None,
                _ => return Err(ApiError::cluster_not_found()),
            };
            let previous = match &existing_id {
                Some(id) => {
                    repo.get::<ContainerInstanceRecord>(&keys::instance(&cluster, id))
                        .await?
                }
                None => None,
            }
            .filter(|p| p.value.status != InstanceStatus::Inactive);
            let now = now_epoch();
            let rec = match &previous {
                Some(p) => {
                    // Re-registration of the same identity (agent restart): keep the tasks, custom
                    // attributes and status; take the agent's current facts.
                    let mut r = p.value.clone();
                    r.registered = registered.clone();
                    let custom: Vec<AttributeRecord> = r
                        .attributes
                        .iter()
                        .filter(|a| is_custom(&a.name))
                        .cloned()
                        .collect();
                    let mut attrs: Vec<AttributeRecord> = attributes
                        .iter()
                        .filter(|a| !is_custom(&a.name))
                        .cloned()
                        .collect();
                    merge_attributes(&mut attrs, custom)?;
                    r.attributes = attrs.into();
                    r.version_info = req.version_info.clone().map(Into::into).or(r.version_info);
                    r.ec2_instance_id = ec2_instance_id.clone().or(r.ec2_instance_id);
                    r.version += 1;
                    r.generation += 1;
                    r
                }
                None => {
                    let mut attrs = Vec::new();
                    merge_attributes(&mut attrs, attributes.clone())?;
                    let id = berth_core::resource_id(rand::random());
                    ContainerInstanceRecord {
                        ec2_instance_id: ec2_instance_id
                            .clone()
                            .or_else(|| Some(format!("i-{}", &id[..17]))),
                        id,
                        cluster: cluster.clone(),
                        status: InstanceStatus::Active,
                        status_reason: None,
                        registered_at: now,
                        registered: registered.clone(),
                        attributes: attrs.into(),
                        version_info: req.version_info.clone().map(Into::into),
                        tags: tags.clone(),
                        generation: 1,
                        version: 1,
                        held: Default::default(),
                    }
                }
            };
            let key = keys::instance(&cluster, &rec.id);
            let mut txn = Txn::new().when(Compare::ModRevision {
                key: key.clone(),
                revision: previous.as_ref().map(|p| p.revision).unwrap_or(0),
            });
            // Invariant: joining a cluster rewrites its record (DeleteCluster compares on it).
            let ckey = keys::cluster(&cluster);
            match &cluster_rec {
                Some(c) => {
                    txn = txn
                        .when(Compare::ModRevision {
                            key: ckey.clone(),
                            revision: c.revision,
                        })
                        .put(ckey, to_bytes(&c.value));
                }
                None => {
                    let c = ClusterRecord {
                        name: cluster.clone(),
                        status: ClusterStatus::Active,
                        created_at: now,
                        settings: vec![stored::ClusterSetting {
                            name: Some(stored::ClusterSettingName::ContainerInsights),
                            value: Some("disabled".into()),
                        }],
                        configuration: None,
                        capacity_providers: vec![],
                        default_capacity_provider_strategy: vec![],
                        service_connect_namespace: None,
                        tags: vec![],
                    };
                    let prev_rev = repo
                        .get::<ClusterRecord>(&ckey)
                        .await?
                        .map(|c| c.revision)
                        .unwrap_or(0);
                    txn = txn
                        .when(Compare::ModRevision {
                            key: ckey.clone(),
                            revision: prev_rev,
                        })
                        .put(ckey, to_bytes(&c));
                }
            }
            txn = txn.put(key, to_bytes(&rec));
            Ok(Attempt::Commit(txn, (rec, previous.is_some())))
        })
        .await?;
    ctx.app.agents.seen(&rec.id);
    ctx.app.agents.publish(&rec.id, rec.generation);
    tracing::info!(cluster = %cluster, instance = %rec.id, reregistered, "container instance registered");
    ctx.app
        .events
        .push(crate::bus_events::container_instance_state_change(
            ctx, &rec,
        ));
    Ok(ecs::RegisterContainerInstanceResponse {
        container_instance: Some(to_wire(ctx, &rec, true)),
    })
}

pub async fn deregister(
    ctx: &Ctx,
    req: ecs::DeregisterContainerInstanceRequest,
) -> Result<ecs::DeregisterContainerInstanceResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let arg = req.container_instance.unwrap_or_default();
    let id = instance_id(&arg)
        .ok_or_else(|| ApiError::invalid_parameter("Invalid container instance identifier."))?;
    let repo = &ctx.app.repo;
    let key = keys::instance(&cluster, &id);
    let inst = repo
        .retry(|| async {
            let mut inst = match repo.get::<ContainerInstanceRecord>(&key).await? {
                Some(i) if i.value.status != InstanceStatus::Inactive => i,
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "The referenced container instance was not found.",
                    ))
                }
            };
            if inst.value.held.tasks() > 0 && !req.force.unwrap_or(false) {
                return Err(ApiError::invalid_parameter(
                    "Found running tasks on the instance. Use the force option to deregister it.",
                ));
            }
            let mut txn = Txn::new().when(Compare::ModRevision {
                key: key.clone(),
                revision: inst.revision,
            });
            // Forced: its tasks are orphaned; berth marks them stopped so nothing waits on them.
            let now = now_epoch();
            for live in super::tasks::live_on_instance(ctx, &cluster, &id).await? {
                let tkey = keys::task(&cluster, &live.id);
                if let Some(mut t) = repo.get::<TaskRecord>(&tkey).await? {
                    t.value.desired_status = TaskStatus::Stopped;
                    t.value.last_status = TaskStatus::Stopped;
                    t.value.stopped_at.get_or_insert(now);
                    t.value
                        .stop_code
                        .get_or_insert_with(|| "TerminationNotice".into());
                    t.value.stopped_reason.get_or_insert_with(|| {
                        "Container instance deregistration forced by user".into()
                    });
                    t.value.version += 1;
                    txn = txn
                        .when(Compare::ModRevision {
                            key: tkey.clone(),
                            revision: t.revision,
                        })
                        .put(tkey, to_bytes(&t.value));
                }
            }
            inst.value.held = Default::default();
            inst.value.status = InstanceStatus::Inactive;
            inst.value.version += 1;
            inst.value.generation += 1;
            txn = txn.put(key.clone(), to_bytes(&inst.value));
            Ok(Attempt::Commit(txn, inst.value))
        })
        .await?;
    ctx.app.agents.publish(&id, inst.generation);
    ctx.app.agents.forget(&id);
    tracing::info!(cluster = %cluster, instance = %id, "container instance deregistered");
    ctx.app
        .events
        .push(crate::bus_events::container_instance_state_change(
            ctx, &inst,
        ));
    Ok(ecs::DeregisterContainerInstanceResponse {
        container_instance: Some(to_wire(ctx, &inst, true)),
    })
}

pub async fn describe(
    ctx: &Ctx,
    req: ecs::DescribeContainerInstancesRequest,
) -> Result<ecs::DescribeContainerInstancesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let args = req.container_instances.unwrap_or_default();
    if args.is_empty() || args.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "containerInstances must contain between 1 and 100 items.",
        ));
    }
    let include_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::ContainerInstanceField::Tags);
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arg in args {
        let found = match instance_id(&arg) {
            Some(id) => {
                ctx.app
                    .repo
                    .get::<ContainerInstanceRecord>(&keys::instance(&cluster, &id))
                    .await?
            }
            None => None,
        };
        match found {
            Some(r) => {
                let mut w = to_wire(ctx, &r.value, include_tags);
                // Not asked for, not sent (DescribeContainerInstances' `include`).
                w.tags = w.tags.filter(|_| include_tags);
                out.push(w);
            }
            None => failures.push(ecs::Failure {
                arn: Some(if arg.starts_with("arn:") {
                    arg.clone()
                } else {
                    ctx.app.scope.container_instance_arn(&cluster, &arg)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeContainerInstancesResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

pub async fn list(
    ctx: &Ctx,
    req: ecs::ListContainerInstancesRequest,
) -> Result<ecs::ListContainerInstancesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let all = ctx
        .app
        .repo
        .list::<ContainerInstanceRecord>(&keys::instances_in(&cluster))
        .await?;
    let mut recs: Vec<Versioned<ContainerInstanceRecord>> = all
        .into_iter()
        .filter(|r| match req.status {
            Some(s) => r.value.status.as_str() == s.as_str(),
            None => r.value.status != InstanceStatus::Inactive,
        })
        .collect();
    if let Some(filter) = req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        let expr = berth_placement::Expression::parse(filter)
            .map_err(|e| ApiError::invalid_parameter(e.message))?;
        let snapshot = crate::placement_cache::snapshot_of(ctx, recs.iter().map(|r| &r.value));
        let idx = berth_placement::ClusterIndex::build(&snapshot);
        let keep: std::collections::HashSet<usize> = idx.filter(&expr).into_iter().collect();
        recs = recs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r)
            .collect();
    }
    let items = recs
        .into_iter()
        .map(|r| {
            (
                r.key,
                ctx.app.scope.container_instance_arn(&cluster, &r.value.id),
            )
        })
        .collect();
    let (arns, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListContainerInstancesResponse {
        container_instance_arns: Some(arns),
        next_token: next,
    })
}

pub async fn update_state(
    ctx: &Ctx,
    req: ecs::UpdateContainerInstancesStateRequest,
) -> Result<ecs::UpdateContainerInstancesStateResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let status = req
        .status
        .ok_or_else(|| ApiError::client("status should not be null or empty."))?;
    let target = match status {
        ecs::ContainerInstanceStatus::Active => InstanceStatus::Active,
        ecs::ContainerInstanceStatus::Draining => InstanceStatus::Draining,
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Container instances can only be set to ACTIVE or DRAINING, not {}.",
                other.as_str()
            )))
        }
    };
    let args = req.container_instances.unwrap_or_default();
    if args.is_empty() || args.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "containerInstances must contain between 1 and 10 items.",
        ));
    }
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arg in args {
        let Some(id) = instance_id(&arg) else {
            failures.push(ecs::Failure {
                arn: Some(arg.clone()),
                reason: Some("MISSING".into()),
                detail: None,
            });
            continue;
        };
        let key = keys::instance(&cluster, &id);
        // The instance (None: missing) and whether its state changed.
        let updated = ctx
            .app
            .repo
            .update::<ContainerInstanceRecord, _>(&key, |cur| {
                let Some(mut inst) = cur.filter(|i| i.status != InstanceStatus::Inactive) else {
                    return Ok(Change::Keep(None));
                };
                if inst.status == target {
                    return Ok(Change::Keep(Some((inst, false))));
                }
                inst.status = target;
                inst.version += 1;
                Ok(Change::Put(inst.clone(), Some((inst, true))))
            })
            .await?;
        let Some((inst, changed)) = updated else {
            failures.push(ecs::Failure {
                arn: Some(ctx.app.scope.container_instance_arn(&cluster, &id)),
                reason: Some("MISSING".into()),
                detail: None,
            });
            continue;
        };
        if changed {
            tracing::info!(cluster = %cluster, instance = %id, status = target.as_str(), "container instance state changed");
            ctx.app
                .events
                .push(crate::bus_events::container_instance_state_change(
                    ctx, &inst,
                ));
        }
        out.push(to_wire(ctx, &inst, false));
    }
    Ok(ecs::UpdateContainerInstancesStateResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

/// Applies `edit` to the attributes of the container instance `target_id` names.
async fn edit_attributes(
    ctx: &Ctx,
    cluster: &str,
    target_id: &str,
    edit: impl Fn(&mut Vec<AttributeRecord>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let id = instance_id(target_id)
        .ok_or_else(|| ApiError::invalid_parameter(format!("Invalid targetId '{target_id}'.")))?;
    let key = keys::instance(cluster, &id);
    ctx.app
        .repo
        .update::<ContainerInstanceRecord, _>(&key, |cur| {
            let Some(mut inst) = cur.filter(|i| i.status != InstanceStatus::Inactive) else {
                return Err(ApiError::new(
                    "TargetNotFoundException",
                    format!("Could not find {target_id}."),
                ));
            };
            edit(std::sync::Arc::make_mut(&mut inst.attributes))?;
            inst.version += 1;
            Ok(Change::Put(inst, ()))
        })
        .await
}

fn attribute_target(a: &ecs::Attribute) -> Result<&str, ApiError> {
    if a.target_type
        .is_some_and(|t| t != ecs::TargetType::ContainerInstance)
    {
        return Err(ApiError::invalid_parameter(
            "targetType must be container-instance.",
        ));
    }
    a.target_id
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("targetId is required for attributes."))
}

pub async fn put_attributes(
    ctx: &Ctx,
    req: ecs::PutAttributesRequest,
) -> Result<ecs::PutAttributesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let attrs = req.attributes.unwrap_or_default();
    if attrs.len() > MAX_CUSTOM_ATTRIBUTES {
        return Err(ApiError::new(
            "AttributeLimitExceededException",
            format!("You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."),
        ));
    }
    for a in &attrs {
        let target = attribute_target(a)?;
        let rec = validate_attribute(a)?;
        edit_attributes(ctx, &cluster, target, |list| {
            merge_attributes(list, vec![rec.clone()])
        })
        .await?;
    }
    Ok(ecs::PutAttributesResponse {
        attributes: Some(attrs),
    })
}

pub async fn delete_attributes(
    ctx: &Ctx,
    req: ecs::DeleteAttributesRequest,
) -> Result<ecs::DeleteAttributesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let attrs = req.attributes.unwrap_or_default();
    for a in &attrs {
        let target = attribute_target(a)?;
        let name = a.name.clone().unwrap_or_default();
        edit_attributes(ctx, &cluster, target, |list| {
            list.retain(|x| x.name != name);
            Ok(())
        })
        .await?;
    }
    Ok(ecs::DeleteAttributesResponse {
        attributes: Some(attrs),
    })
}

pub async fn list_attributes(
    ctx: &Ctx,
    req: ecs::ListAttributesRequest,
) -> Result<ecs::ListAttributesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(ApiError::invalid_parameter(
            "attributeValue can only be used together with attributeName.",
        ));
    }
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let all = ctx
        .app
        .repo
        .list::<ContainerInstanceRecord>(&keys::instances_in(&cluster))
        .await?;
    let mut items = Vec::new();
    for r in all
        .into_iter()
        .filter(|r| r.value.status != InstanceStatus::Inactive)
    {
        let arn = ctx.app.scope.container_instance_arn(&cluster, &r.value.id);
        for a in r.value.attributes.iter() {
            if req.attribute_name.as_deref().is_some_and(|n| n != a.name) {
                continue;
            }
            if req
                .attribute_value
                .as_deref()
                .is_some_and(|v| Some(v) != a.value.as_deref())
            {
                continue;
            }
            items.push((
                format!("{}\u{0}{}", r.key, a.name),
                ecs::Attribute {
                    name: Some(a.name.clone()),
                    value: a.value.clone(),
                    target_type: Some(ecs::TargetType::ContainerInstance),
                    target_id: Some(arn.clone()),
                },
            ));
        }
    }
    let (attributes, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListAttributesResponse {
        attributes: Some(attributes),
        next_token: next,
    })
}

pub async fn discover_poll_endpoint(
    ctx: &Ctx,
    _req: ecs::DiscoverPollEndpointRequest,
) -> Result<ecs::DiscoverPollEndpointResponse, ApiError> {
    let endpoint = ctx.app.endpoint.clone();
    Ok(ecs::DiscoverPollEndpointResponse {
        endpoint: Some(endpoint.clone()),
        telemetry_endpoint: Some(endpoint.clone()),
        service_connect_endpoint: Some(endpoint),
    })
}
