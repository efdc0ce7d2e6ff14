//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! Revisions start at 1 and are never reused, even after deregistration or deletion (the family
//! record keeps the last number). Status ACTIVE → INACTIVE (deregister) → DELETE_IN_PROGRESS
//! (delete) → purged once nothing references the revision.

use super::args::{decode_token, max_results, paginate};
use super::tagging;
use crate::keys;
use crate::records::{tags_to_wire, FamilyRecord, TaskDefinitionRecord};
use crate::state::Ctx;
use crate::stored;
use berth_core::arn::TaskDefinitionRef;
use berth_core::units;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Change, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs::{self, Compatibility, NetworkMode};
use std::collections::{BTreeSet, HashSet};

/// ECS quota: containers per task definition.
pub const MAX_CONTAINERS: usize = 10;
/// Docker's minimum hard memory limit, which ECS enforces per container.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;

fn client(msg: impl Into<String>) -> ApiError {
    ApiError::client(msg)
}

/// Validates a registration and builds the stored definition (everything except ARN/revision/time).
fn build_definition(
    req: &ecs::RegisterTaskDefinitionRequest,
) -> Result<ecs::TaskDefinition, ApiError> {
    let family = req.family.clone().unwrap_or_default();
    berth_core::names::family(&family).map_err(|e| client(e.to_string()))?;
    let containers = req.container_definitions.clone().unwrap_or_default();
    if containers.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(client(format!(
            "Too many containers: a task definition can have at most {MAX_CONTAINERS} container definitions."
        )));
    }
    let network_mode = req.network_mode.unwrap_or(NetworkMode::Bridge);
    let requires: Vec<Compatibility> = req.requires_compatibilities.clone().unwrap_or_default();
    let fargate = requires.contains(&Compatibility::Fargate);

    // Task-level size.
    let task_cpu = match req.cpu.as_deref() {
        Some(s) => Some(units::parse_task_cpu(s).map_err(|e| client(e.to_string()))?),
        None => None,
    };
    let task_memory = match req.memory.as_deref() {
        Some(s) => Some(units::parse_task_memory(s).map_err(|e| client(e.to_string()))?),
        None => None,
    };
    if let Some(cpu) = task_cpu {
        if !fargate && !units::EC2_TASK_CPU_RANGE.contains(&cpu) {
            return Err(client(format!(
                "Invalid 'cpu' setting for task. The task CPU value must be between {} and {} CPU units.",
                units::EC2_TASK_CPU_RANGE.start(),
                units::EC2_TASK_CPU_RANGE.end()
            )));
        }
    }
    // Volumes.
    let volumes = req.volumes.clone().unwrap_or_default();
    let mut volume_names = HashSet::new();
    for v in &volumes {
        let name = v.name.clone().unwrap_or_default();
        if name.is_empty() || !volume_names.insert(name.clone()) {
            return Err(client(format!(
                "Invalid volume name '{name}': volume names must be non-empty and unique."
            )));
        }
    }

    // Containers.
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(containers.len());
    let mut any_essential = false;
    let mut container_memory_total: i64 = 0;
    let mut host_ports = HashSet::new();
    for c in &containers {
        let name = c.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        berth_core::names::container_name(&name).map_err(|e| client(e.to_string()))?;
        if !names.insert(name.clone()) {
            return Err(client(format!("Duplicate container name found: '{name}'. Container names must be unique within a task definition.")));
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            return Err(client("Container.image should not be null or empty."));
        }
        if c.cpu < 0 {
            return Err(client(format!(
                "Invalid 'cpu' setting for container '{name}'."
            )));
        }
        match (c.memory, c.memory_reservation) {
            (None, None) if task_memory.is_none() => {
                return Err(client(format!(
                    "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
                )))
            }
            (Some(m), _) if m < MIN_CONTAINER_MEMORY_MIB => {
                return Err(client(format!(
                    "Invalid 'memory' setting for container '{name}'. The memory limit must be at least {MIN_CONTAINER_MEMORY_MIB} MiB."
                )))
            }
            (_, Some(r)) if r < MIN_CONTAINER_MEMORY_MIB => {
                return Err(client(format!(
                    "Invalid 'memoryReservation' setting for container '{name}'. The memory reservation must be at least {MIN_CONTAINER_MEMORY_MIB} MiB."
                )))
            }
            (Some(m), Some(r)) if r > m => {
                return Err(client(format!(
                    "Invalid setting for container '{name}'. 'memoryReservation' must be less than or equal to 'memory'."
                )))
            }
            _ => {}
        }
        container_memory_total += c.memory.or(c.memory_reservation).unwrap_or(0) as i64;
        let essential = c.essential.unwrap_or(true);
        any_essential |= essential;

        let mut pms = c.port_mappings.clone().unwrap_or_default();
        for pm in pms.iter_mut() {
            let cp = pm.container_port.unwrap_or(0);
            if !(0..=65535).contains(&cp)
                || pm.container_port.is_none() && pm.container_port_range.is_none()
            {
                return Err(client(format!(
                    "Invalid 'containerPort' setting for container '{name}'."
                )));
            }
            if let Some(hp) = pm.host_port {
                if !(0..=65535).contains(&hp) {
                    return Err(client(format!(
                        "Invalid 'hostPort' setting for container '{name}'."
                    )));
                }
            }
            if matches!(network_mode, NetworkMode::Awsvpc | NetworkMode::Host) {
                match pm.host_port {
                    Some(hp) if pm.container_port.is_some() && hp != cp => {
                        return Err(client(format!(
                            "When networkMode={}, the host ports and container ports in port mappings must match.",
                            network_mode.as_str()
                        )))
                    }
                    None if pm.container_port.is_some() => pm.host_port = Some(cp),
                    _ => {}
                }
            }
            if pm.protocol.is_none() {
                pm.protocol = Some(ecs::TransportProtocol::Tcp);
            }
            if let Some(hp) = pm.host_port.filter(|hp| *hp != 0) {
                let proto = pm.protocol.map(|p| p.as_str()).unwrap_or("tcp");
                if !host_ports.insert((hp, proto)) {
                    return Err(client(format!(
                        "Invalid 'hostPort' setting for container '{name}': host port {hp}/{proto} is used more than once in the task definition."
                    )));
                }
            }
        }
        if (network_mode == NetworkMode::Awsvpc || network_mode == NetworkMode::Host)
            && c.links.as_ref().is_some_and(|l| !l.is_empty())
        {
            return Err(client(format!(
                "Links are not supported when networkMode={}.",
                network_mode.as_str()
            )));
        }
        for mp in c.mount_points.as_deref().unwrap_or_default() {
            let src = mp.source_volume.as_deref().unwrap_or("");
            if !volume_names.contains(src) {
                return Err(client(format!(
                    "Invalid 'mountPoints' setting for container '{name}': sourceVolume '{src}' is not a volume of this task definition."
                )));
            }
        }
        let mut def = c.clone();
        def.essential = Some(essential);
        def.port_mappings = Some(pms);
        def.environment.get_or_insert_with(Vec::new);
        def.mount_points.get_or_insert_with(Vec::new);
        def.volumes_from.get_or_insert_with(Vec::new);
        def.system_controls.get_or_insert_with(Vec::new);
        out.push(def);
    }
    if !any_essential {
        return Err(client(
            "Invalid setting: at least one container in the task definition must be essential.",
        ));
    }
    for c in &out {
        let name = c.name.as_deref().unwrap_or("");
        for d in c.depends_on.as_deref().unwrap_or_default() {
            let dep = d.container_name.as_deref().unwrap_or("");
            if dep == name || !names.contains(dep) {
                return Err(client(format!(
                    "Invalid 'dependsOn' setting for container '{name}': container '{dep}' is not another container of this task definition."
                )));
            }
        }
        for vf in c.volumes_from.as_deref().unwrap_or_default() {
            let src = vf.source_container.as_deref().unwrap_or("");
            if !names.contains(src) || src == name {
                return Err(client(format!(
                    "Invalid 'volumesFrom' setting for container '{name}': '{src}' is not another container of this task definition."
                )));
            }
        }
    }
    if let Some(tm) = task_memory {
        if container_memory_total > tm as i64 {
            return Err(client(format!(
                "Invalid 'memory' setting for task. The memory of all containers ({container_memory_total} MiB) exceeds the task memory ({tm} MiB)."
            )));
        }
    }
    for pc in req.placement_constraints.as_deref().unwrap_or_default() {
        if pc.expression.as_deref().unwrap_or("").chars().count() > 2000 {
            return Err(ApiError::invalid_parameter(
                "Placement constraint expressions can be at most 2000 characters.",
            ));
        }
    }
    if req
        .placement_constraints
        .as_ref()
        .is_some_and(|p| p.len() > 10)
    {
        return Err(ApiError::invalid_parameter(
            "A task definition can have at most 10 placement constraints.",
        ));
    }

    // Launch-type compatibility comes after the containers, as AWS checks it (a definition with a
    // container fault and a Fargate fault is answered with the container fault).
    if fargate {
        if network_mode != NetworkMode::Awsvpc {
            return Err(client("Fargate only supports network mode 'awsvpc'."));
        }
        let (cpu, mem) = match (task_cpu, task_memory) {
            (Some(c), Some(m)) => (c, m),
            (None, _) => {
                return Err(client(
                    "Fargate requires that 'cpu' be defined at the task level.",
                ))
            }
            (_, None) => {
                return Err(client(
                    "Fargate requires that 'memory' be defined at the task level.",
                ))
            }
        };
        if !units::fargate_memory_options(cpu).is_some_and(|opts| opts.contains(&mem)) {
            return Err(client(format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {mem} memory. See the Amazon ECS documentation for the valid values."
            )));
        }
    }

    let mut compat: Vec<Compatibility> = Vec::new();
    if network_mode != NetworkMode::Awsvpc || requires.contains(&Compatibility::External) {
        compat.push(Compatibility::External);
    }
    compat.push(Compatibility::Ec2);
    for r in &requires {
        if !compat.contains(r) {
            compat.push(*r);
        }
    }
    if requires.contains(&Compatibility::External) && network_mode == NetworkMode::Awsvpc {
        return Err(client(
            "Task definitions for the EXTERNAL launch type do not support network mode 'awsvpc'.",
        ));
    }

    Ok(ecs::TaskDefinition {
        container_definitions: Some(out),
        family: Some(family),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: req.network_mode,
        volumes: Some(volumes),
        requires_attributes: Some(required_attributes(req, network_mode)),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        compatibilities: Some(compat),
        runtime_platform: req.runtime_platform.clone(),
        requires_compatibilities: req.requires_compatibilities.clone(),
        cpu: task_cpu.map(|c| c.to_string()),
        memory: task_memory.map(|m| m.to_string()),
        inference_accelerators: req.inference_accelerators.clone(),
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration.clone(),
        ephemeral_storage: req.ephemeral_storage.clone(),
        enable_fault_injection: req.enable_fault_injection,
        ..Default::default()
    })
}

/// The container-instance attributes a task definition needs, derived from the features it uses
/// (what ECS reports as `requiresAttributes`; placement filters instances on them).
fn required_attributes(
    req: &ecs::RegisterTaskDefinitionRequest,
    mode: NetworkMode,
) -> Vec<ecs::Attribute> {
    let mut set = BTreeSet::new();
    let api = |v: &str| format!("com.amazonaws.ecs.capability.docker-remote-api.{v}");
    if req.network_mode.is_some() {
        set.insert(api("1.18"));
    }
    if mode == NetworkMode::Awsvpc {
        set.insert("ecs.capability.task-eni".to_string());
    }
    if req.task_role_arn.is_some() {
        set.insert("com.amazonaws.ecs.capability.task-iam-role".to_string());
        if mode == NetworkMode::Host {
            set.insert("com.amazonaws.ecs.capability.task-iam-role-network-host".to_string());
        }
    }
    let exec_role = req.execution_role_arn.is_some();
    for c in req.container_definitions.as_deref().unwrap_or_default() {
        if let Some(lc) = &c.log_configuration {
            if let Some(d) = lc.log_driver {
                set.insert(format!(
                    "com.amazonaws.ecs.capability.logging-driver.{}",
                    d.as_str()
                ));
                if d == ecs::LogDriver::Awslogs {
                    set.insert(api("1.19"));
                    if exec_role {
                        set.insert("ecs.capability.execution-role-awslogs".to_string());
                    }
                }
            }
        }
        if c.health_check.is_some() {
            set.insert("ecs.capability.container-health-check".to_string());
            set.insert(api("1.24"));
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) || c.start_timeout.is_some() {
            set.insert("ecs.capability.container-ordering".to_string());
        }
        if c.memory_reservation.is_some() {
            set.insert(api("1.21"));
        }
        if c.docker_labels.is_some() || c.ulimits.is_some() {
            set.insert(api("1.18"));
        }
        if c.repository_credentials.is_some() {
            set.insert(
                "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager"
                    .to_string(),
            );
        }
        if exec_role && c.image.as_deref().is_some_and(|i| i.contains(".dkr.ecr.")) {
            set.insert("ecs.capability.execution-role-ecr-pull".to_string());
        }
        for s in c.secrets.as_deref().unwrap_or_default() {
            let from = s.value_from.as_deref().unwrap_or("");
            if from.contains(":secretsmanager:") {
                set.insert("ecs.capability.secrets.asm.environment-variables".to_string());
            } else {
                set.insert("ecs.capability.secrets.ssm.environment-variables".to_string());
            }
        }
        if c.environment_files.as_ref().is_some_and(|e| !e.is_empty()) {
            set.insert("ecs.capability.env-files.s3".to_string());
        }
        if let Some(lp) = &c.linux_parameters {
            if lp.init_process_enabled.is_some() || lp.shared_memory_size.is_some() {
                set.insert(api("1.25"));
            }
        }
    }
    for v in req.volumes.as_deref().unwrap_or_default() {
        if let Some(dv) = &v.docker_volume_configuration {
            set.insert(api("1.25"));
            if let Some(driver) = dv.driver.as_deref().filter(|d| *d != "local") {
                set.insert(format!("ecs.capability.docker-plugin.{driver}"));
            }
        }
        if v.efs_volume_configuration.is_some() {
            set.insert("ecs.capability.efs".to_string());
        }
    }
    set.into_iter()
        .map(|name| ecs::Attribute {
            name: Some(name),
            ..Default::default()
        })
        .collect()
}

/// AWS takes an empty role ARN as no role: tools that re-register a described task definition
/// (ecs-deploy among them) send `"taskRoleArn": ""` when it had none.
pub(crate) fn unset_if_empty(member: &mut Option<String>) {
    if member.as_deref() == Some("") {
        *member = None;
    }
}

pub async fn register(
    ctx: &Ctx,
    mut req: ecs::RegisterTaskDefinitionRequest,
) -> Result<ecs::RegisterTaskDefinitionResponse, ApiError> {
    unset_if_empty(&mut req.task_role_arn);
    unset_if_empty(&mut req.execution_role_arn);
    let base = build_definition(&req)?;
    let tags = tagging::validate(req.tags.as_deref().unwrap_or_default())?;
    let family = base.family.clone().unwrap_or_default();
    let repo = &ctx.app.repo;
    let fkey = keys::family(&family);
    let (def, revision) = repo
        .retry(|| async {
            let fam = repo.get::<FamilyRecord>(&fkey).await?;
            let (last, frev) = fam
                .map(|f| (f.value.last_revision, f.revision))
                .unwrap_or((0, 0));
            let revision = last + 1;
            let mut def = base.clone();
            def.revision = revision as i32;
            def.task_definition_arn = Some(ctx.app.scope.task_definition_arn(&family, revision));
            def.status = Some(ecs::TaskDefinitionStatus::Active);
            def.registered_at = Some(now_epoch());
            def.registered_by = Some(ctx.principal.arn.clone());
            let rec = TaskDefinitionRecord {
                definition: def.clone().into(),
                tags: tags.clone(),
                delete_requested_at: None,
            };
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: fkey.clone(),
                    revision: frev,
                })
                .put(
                    fkey.clone(),
                    to_bytes(&FamilyRecord {
                        last_revision: revision,
                    }),
                )
                .put(keys::task_definition(&family, revision), to_bytes(&rec));
            Ok(Attempt::Commit(txn, (def, revision)))
        })
        .await?;
    tracing::info!(family = %family, revision, "task definition registered");
    Ok(ecs::RegisterTaskDefinitionResponse {
        task_definition: Some(def),
        tags: Some(tags_to_wire(&tags)),
    })
}

fn unable_to_describe() -> ApiError {
    client("Unable to describe task definition.")
}

/// The stored revision a task's task-definition ARN names (shared, not copied), if it still
/// exists. Unlike [`resolve`], a reference without a revision names nothing.
pub(crate) async fn by_arn(
    ctx: &Ctx,
    arn: &str,
) -> Result<Option<std::sync::Arc<TaskDefinitionRecord>>, ApiError> {
    let Some(r) = TaskDefinitionRef::parse(arn) else {
        return Ok(None);
    };
    Ok(ctx
        .app
        .repo
        .get_arc::<TaskDefinitionRecord>(&keys::task_definition(&r.family, r.revision.unwrap_or(0)))
        .await?
        .map(|v| v.value))
}

/// Resolves `family`, `family:revision` or an ARN. A bare family means its latest ACTIVE revision.
pub(crate) async fn resolve(
    ctx: &Ctx,
    arg: &str,
) -> Result<Option<Versioned<TaskDefinitionRecord>>, ApiError> {
    let Some(r) = TaskDefinitionRef::parse(arg) else {
        return Ok(None);
    };
    let repo = &ctx.app.repo;
    match r.revision {
        Some(rev) => repo.get(&keys::task_definition(&r.family, rev)).await,
        None => {
            // Shared records: only the one found is copied, however many revisions there are.
            let all = repo
                .list_arc::<TaskDefinitionRecord>(&keys::task_definitions_of(&r.family))
                .await?;
            Ok(all
                .into_iter()
                .rev()
                .find(|t| t.value.definition.status == Some(stored::TaskDefinitionStatus::Active))
                .map(berth_service::repo::owned))
        }
    }
}

pub async fn describe(
    ctx: &Ctx,
    req: ecs::DescribeTaskDefinitionRequest,
) -> Result<ecs::DescribeTaskDefinitionResponse, ApiError> {
    let arg = req.task_definition.unwrap_or_default();
    let rec = resolve(ctx, &arg).await?.ok_or_else(unable_to_describe)?;
    let include_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskDefinitionField::Tags);
    Ok(ecs::DescribeTaskDefinitionResponse {
        task_definition: Some(rec.value.definition.into()),
        tags: include_tags.then(|| tags_to_wire(&rec.value.tags)),
    })
}

pub async fn list(
    ctx: &Ctx,
    req: ecs::ListTaskDefinitionsRequest,
) -> Result<ecs::ListTaskDefinitionsResponse, ApiError> {
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let status = req.status.unwrap_or(ecs::TaskDefinitionStatus::Active);
    let prefix = match req.family_prefix.as_deref() {
        Some(f) if berth_core::names::family(f).is_ok() => keys::task_definitions_of(f),
        Some(_) => {
            return Ok(ecs::ListTaskDefinitionsResponse {
                task_definition_arns: Some(vec![]),
                next_token: None,
            })
        }
        None => keys::TASK_DEFINITIONS.to_string(),
    };
    let all = ctx.app.repo.list::<TaskDefinitionRecord>(&prefix).await?;
    let mut items: Vec<(String, String)> = all
        .into_iter()
        .filter(|t| t.value.definition.status == Some(status.into()))
        .map(|t| {
            (
                t.key,
                t.value.definition.task_definition_arn.unwrap_or_default(),
            )
        })
        .collect();
    let descending = req.sort == Some(ecs::SortOrder::Desc);
    if descending {
        items.reverse();
    }
    let (arns, next) = paginate(items, after.as_deref(), limit, descending);
    Ok(ecs::ListTaskDefinitionsResponse {
        task_definition_arns: Some(arns),
        next_token: next,
    })
}

pub async fn list_families(
    ctx: &Ctx,
    req: ecs::ListTaskDefinitionFamiliesRequest,
) -> Result<ecs::ListTaskDefinitionFamiliesResponse, ApiError> {
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let prefix = req.family_prefix.unwrap_or_default();
    let all = ctx
        .app
        .repo
        .list::<TaskDefinitionRecord>(&format!("{}{}", keys::TASK_DEFINITIONS, prefix))
        .await?;
    // family -> has an ACTIVE revision
    let mut families: Vec<(String, bool)> = Vec::new();
    for t in all {
        let fam = t.value.definition.family.clone().unwrap_or_default();
        let active = t.value.definition.status == Some(stored::TaskDefinitionStatus::Active);
        match families.last_mut() {
            Some((f, a)) if *f == fam => *a |= active,
            _ => families.push((fam, active)),
        }
    }
    let status = req.status.unwrap_or(ecs::TaskDefinitionFamilyStatus::All);
    let items = families
        .into_iter()
        .filter(|(_, active)| match status {
            ecs::TaskDefinitionFamilyStatus::Active => *active,
            ecs::TaskDefinitionFamilyStatus::Inactive => !*active,
            ecs::TaskDefinitionFamilyStatus::All => true,
        })
        .map(|(f, _)| (f.clone(), f))
        .collect();
    let (names, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListTaskDefinitionFamiliesResponse {
        families: Some(names),
        next_token: next,
    })
}

fn exact_ref(arg: &str) -> Result<(String, u32), ApiError> {
    match TaskDefinitionRef::parse(arg) {
        Some(TaskDefinitionRef { family, revision: Some(r) }) => Ok((family, r)),
        Some(_) => Err(client("The task definition must be specified as family:revision or a full ARN; a revision is required.")),
        None => Err(client(format!("Invalid revision number. Number: {arg}"))),
    }
}

pub async fn deregister(
    ctx: &Ctx,
    req: ecs::DeregisterTaskDefinitionRequest,
) -> Result<ecs::DeregisterTaskDefinitionResponse, ApiError> {
    let (family, revision) = exact_ref(req.task_definition.as_deref().unwrap_or(""))?;
    let repo = &ctx.app.repo;
    let key = keys::task_definition(&family, revision);
    // The definition, and whether this call deregistered it.
    let (definition, changed) = repo
        .update::<TaskDefinitionRecord, _>(&key, |cur| {
            let mut rec =
                cur.ok_or_else(|| client("The specified task definition does not exist."))?;
            if rec.definition.status != Some(stored::TaskDefinitionStatus::Active) {
                // Already deregistered: nothing to change.
                return Ok(Change::Keep((rec.definition, false)));
            }
            rec.definition.status = Some(stored::TaskDefinitionStatus::Inactive);
            rec.definition.deregistered_at = Some(now_epoch());
            let definition = rec.definition.clone();
            Ok(Change::Put(rec, (definition, true)))
        })
        .await?;
    if changed {
        tracing::info!(family = %family, revision, "task definition deregistered");
    }
    Ok(ecs::DeregisterTaskDefinitionResponse {
        task_definition: Some(definition.into()),
    })
}

/// Is any task or service possibly still using task definitions? Until tasks and services exist
/// in the store this is exact (nothing references anything); once they do, revisions stay
/// DELETE_IN_PROGRESS and the purge happens when their last user is gone.
async fn anything_may_reference(ctx: &Ctx) -> Result<bool, ApiError> {
    let repo = &ctx.app.repo;
    Ok(repo.count("ecs/tasks/", Some(1)).await? > 0
        || repo.count("ecs/services/", Some(1)).await? > 0)
}

pub async fn delete(
    ctx: &Ctx,
    req: ecs::DeleteTaskDefinitionsRequest,
) -> Result<ecs::DeleteTaskDefinitionsResponse, ApiError> {
    let args = req.task_definitions.unwrap_or_default();
    if args.is_empty() || args.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "taskDefinitions must contain between 1 and 10 items.",
        ));
    }
    let repo = &ctx.app.repo;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for arg in args {
        let failure = |reason: &str| ecs::Failure {
            arn: Some(arg.clone()),
            reason: Some(reason.to_string()),
            detail: None,
        };
        let Some(TaskDefinitionRef {
            family,
            revision: Some(revision),
        }) = TaskDefinitionRef::parse(&arg)
        else {
            failures.push(failure("The specified task definition identifier is invalid. Specify family:revision or a full ARN."));
            continue;
        };
        let key = keys::task_definition(&family, revision);
        enum Deleted {
            Failed(&'static str),
            Already(ecs::TaskDefinition),
            Now(ecs::TaskDefinition),
        }
        let outcome = repo
            .retry(|| async {
                let Some(mut rec) = repo.get::<TaskDefinitionRecord>(&key).await? else {
                    return Ok(Attempt::Done(Deleted::Failed("TASK_DEFINITION_NOT_FOUND")));
                };
                match rec.value.definition.status {
                    Some(stored::TaskDefinitionStatus::Active) => {
                        return Ok(Attempt::Done(Deleted::Failed(
                            "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                        )));
                    }
                    Some(stored::TaskDefinitionStatus::DeleteInProgress) => {
                        return Ok(Attempt::Done(Deleted::Already(rec.value.definition.into())));
                    }
                    _ => {}
                }
                rec.value.definition.status = Some(stored::TaskDefinitionStatus::DeleteInProgress);
                rec.value.delete_requested_at = Some(now_epoch());
                let cmp = Compare::ModRevision {
                    key: key.clone(),
                    revision: rec.revision,
                };
                let txn = if anything_may_reference(ctx).await? {
                    Txn::new().when(cmp).put(key.clone(), to_bytes(&rec.value))
                } else {
                    Txn::new().when(cmp).delete(key.clone())
                };
                Ok(Attempt::Commit(txn, Deleted::Now(rec.value.definition.into())))
            })
            .await?;
        match outcome {
            Deleted::Failed(reason) => failures.push(failure(reason)),
            Deleted::Already(definition) => deleted.push(definition),
            Deleted::Now(definition) => {
                tracing::info!(family = %family, revision, "task definition deleted");
                deleted.push(definition);
            }
        }
    }
    Ok(ecs::DeleteTaskDefinitionsResponse {
        task_definitions: Some(deleted),
        failures: Some(failures),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ecs::RegisterTaskDefinitionRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sleep360_defaults() {
        let d = build_definition(&req(serde_json::json!({
            "family": "sleep360",
            "containerDefinitions": [{"name": "sleep", "image": "busybox", "command": ["sleep", "360"], "memory": 64}]
        })))
        .unwrap();
        let c = &d.container_definitions.as_ref().unwrap()[0];
        assert_eq!(c.essential, Some(true));
        assert_eq!(c.cpu, 0);
        assert_eq!(c.port_mappings, Some(vec![]));
        assert_eq!(
            d.compatibilities,
            Some(vec![Compatibility::External, Compatibility::Ec2])
        );
        assert_eq!(d.network_mode, None);
    }

    #[test]
    fn rejections() {
        let cases = [
            (serde_json::json!({"family": "f", "containerDefinitions": []}), "Container list cannot be empty."),
            (serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "memory": 64}]}), "Container.image should not be null or empty."),
            // Several faults: the container's is reported before Fargate's (issue 22: AWS's order).
            (serde_json::json!({"family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "bridge", "containerDefinitions": [{"name": "a", "memory": 64}]}), "Container.image should not be null or empty."),
            (serde_json::json!({"family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "bridge", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}), "Fargate only supports network mode 'awsvpc'."),
            (serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "x"}]}), "Invalid setting for container 'a'. At least one of 'memory' or 'memoryReservation' must be specified."),
            (serde_json::json!({"family": "f", "networkMode": "awsvpc", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 81}]}]}), "When networkMode=awsvpc, the host ports and container ports in port mappings must match."),
            (serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64, "essential": false}]}), "Invalid setting: at least one container in the task definition must be essential."),
            (serde_json::json!({"family": "f", "requiresCompatibilities": ["FARGATE"], "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}), "Fargate only supports network mode 'awsvpc'."),
        ];
        for (j, msg) in cases {
            let e = build_definition(&req(j)).unwrap_err();
            assert_eq!(e.code, "ClientException");
            assert_eq!(e.message, msg);
        }
    }

    #[test]
    fn fargate_sizes_and_units() {
        let ok = build_definition(&req(serde_json::json!({
            "family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": "0.25 vCPU", "memory": "0.5 GB",
            "containerDefinitions": [{"name": "a", "image": "x", "portMappings": [{"containerPort": 80}]}]
        })))
        .unwrap();
        assert_eq!(ok.cpu.as_deref(), Some("256"));
        assert_eq!(ok.memory.as_deref(), Some("512"));
        assert_eq!(
            ok.container_definitions.unwrap()[0]
                .port_mappings
                .as_ref()
                .unwrap()[0]
                .host_port,
            Some(80)
        );
        assert!(ok
            .requires_attributes
            .unwrap()
            .iter()
            .any(|a| a.name.as_deref() == Some("ecs.capability.task-eni")));
        let bad = build_definition(&req(serde_json::json!({
            "family": "f", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": "256", "memory": "4096",
            "containerDefinitions": [{"name": "a", "image": "x"}]
        })));
        assert!(bad
            .unwrap_err()
            .message
            .starts_with("No Fargate configuration exists"));
    }
}
