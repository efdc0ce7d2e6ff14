//! Container instances, RunTask/StopTask/DescribeTasks and the agent channel, through the AWS SDK
//! for Rust, with simulated agents (registered through the API; no Docker).

mod common;

use aws_sdk_ecs::types::{
    Attribute, ContainerDefinition, ContainerInstanceStatus, ContainerStateChange,
    PlacementConstraint, PlacementConstraintType, Resource,
};
use berth_agent_api::{PollResponse, TARGET_PREFIX};
use common::TestServer;

async fn register(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    az: &str,
    cpu: i32,
    mem: i32,
    attrs: &[(&str, &str)],
) -> String {
    let mut req = ecs
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(format!(
            r#"{{"instanceId":"i-{az}","availabilityZone":"{az}","instanceType":"t3.medium"}}"#
        ))
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(cpu)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(mem)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("PORTS")
                .r#type("STRINGSET")
                .string_set_value("22")
                .build(),
        );
    for (k, v) in attrs {
        req = req.attributes(Attribute::builder().name(*k).value(*v).build().unwrap());
    }
    req.send()
        .await
        .unwrap()
        .container_instance
        .unwrap()
        .container_instance_arn
        .unwrap()
}

async fn register_td(ecs: &aws_sdk_ecs::Client, family: &str, memory: i32) {
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("busybox")
                .memory(memory)
                .cpu(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// An instance's remaining CPU, MEMORY and PORTS and its running/pending counts, as
/// DescribeContainerInstances shows them.
async fn instance_usage(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    instance: &str,
) -> (i32, i32, Vec<String>, i32, i32) {
    let d = ecs
        .describe_container_instances()
        .cluster(cluster)
        .container_instances(instance)
        .send()
        .await
        .unwrap();
    let ci = &d.container_instances()[0];
    let r = |name: &str| {
        ci.remaining_resources()
            .iter()
            .find(|r| r.name() == Some(name))
            .unwrap()
            .clone()
    };
    let mut ports = r("PORTS").string_set_value().to_vec();
    ports.sort();
    (
        r("CPU").integer_value(),
        r("MEMORY").integer_value(),
        ports,
        ci.running_tasks_count(),
        ci.pending_tasks_count(),
    )
}

/// An instance's `remainingResources` value for `name` (CPU, MEMORY).
async fn remaining_resource(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    instance: &str,
    name: &str,
) -> i32 {
    let (cpu, memory, ..) = instance_usage(ecs, cluster, instance).await;
    match name {
        "CPU" => cpu,
        "MEMORY" => memory,
        other => panic!("no integer resource {other}"),
    }
}

fn agent(s: &TestServer) -> berth_client::Client {
    berth_client::Client::new(&s.endpoint, "us-east-1", &s.access_key_id, &s.secret).unwrap()
}

async fn poll(
    c: &berth_client::Client,
    cluster: &str,
    instance: &str,
    known: u64,
    wait: u32,
) -> PollResponse {
    let v = c
        .call(
            "ecs",
            &format!("{TARGET_PREFIX}.PollDesiredState"),
            &serde_json::json!({"cluster": cluster, "containerInstanceArn": instance, "knownGeneration": known, "waitSeconds": wait}),
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn run_task_lifecycle_with_a_simulated_agent() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("c").send().await.unwrap();
    let inst = register(&ecs, "c", "us-east-1a", 2048, 4096, &[]).await;
    register_td(&ecs, "sleep360", 64).await;

    let ag = agent(&s);
    let first = poll(&ag, "c", &inst, 0, 0).await;
    assert!(first.tasks.is_empty());

    // A held poll is answered as soon as a task is placed on the instance.
    let held = {
        let ag = ag.clone();
        let inst = inst.clone();
        let g = first.generation;
        tokio::spawn(async move { poll(&ag, "c", &inst, g, 20).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let out = ecs
        .run_task()
        .cluster("c")
        .task_definition("sleep360")
        .count(1)
        .started_by("me")
        .send()
        .await
        .unwrap();
    let task = &out.tasks()[0];
    let arn = task.task_arn().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/c/")
            && arn.rsplit('/').next().unwrap().len() == 32
    );
    assert_eq!(task.last_status(), Some("PROVISIONING"));
    assert_eq!(task.desired_status(), Some("RUNNING"));
    assert_eq!(task.group(), Some("family:sleep360"));
    assert_eq!(task.container_instance_arn(), Some(inst.as_str()));
    assert_eq!(task.containers()[0].name(), Some("app"));
    let pushed = held.await.unwrap();
    // Answered at once, not at the poll's 20 s timeout (generous bound: CI machines are loaded).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the push took {:?}",
        started.elapsed()
    );
    assert_eq!(pushed.tasks.len(), 1);
    assert_eq!(pushed.tasks[0].task_arn, arn);
    assert_eq!(pushed.tasks[0].desired_status, "RUNNING");

    // The instance shows the reservation.
    let d = ecs
        .describe_container_instances()
        .cluster("c")
        .container_instances(&inst)
        .send()
        .await
        .unwrap();
    assert!(d.container_instances()[0].agent_connected());
    let (cpu, memory, _, running, pending) = instance_usage(&ecs, "c", &inst).await;
    assert_eq!(
        (cpu, memory, running, pending),
        (2048 - 128, 4096 - 64, 0, 1)
    );

    // The agent reports RUNNING.
    ecs.submit_task_state_change()
        .cluster("c")
        .task(&arn)
        .status("RUNNING")
        .containers(
            ContainerStateChange::builder()
                .container_name("app")
                .runtime_id("abc123")
                .status("RUNNING")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let t = ecs
        .describe_tasks()
        .cluster("c")
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(t.last_status(), Some("RUNNING"));
    assert!(t.started_at().is_some());
    assert_eq!(t.containers()[0].runtime_id(), Some("abc123"));
    let c = ecs
        .describe_clusters()
        .clusters("c")
        .send()
        .await
        .unwrap()
        .clusters()[0]
        .clone();
    assert_eq!(
        (
            c.running_tasks_count(),
            c.pending_tasks_count(),
            c.registered_container_instances_count()
        ),
        (1, 0, 1)
    );
    assert_eq!(
        ecs.list_tasks()
            .cluster("c")
            .send()
            .await
            .unwrap()
            .task_arns(),
        std::slice::from_ref(&arn)
    );
    assert_eq!(
        ecs.list_tasks()
            .cluster("c")
            .started_by("me")
            .send()
            .await
            .unwrap()
            .task_arns()
            .len(),
        1
    );

    // A backward report is ignored.
    ecs.submit_task_state_change()
        .cluster("c")
        .task(&arn)
        .status("PENDING")
        .send()
        .await
        .unwrap();
    let t = ecs
        .describe_tasks()
        .cluster("c")
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(t.last_status(), Some("RUNNING"));

    // StopTask: desired STOPPED at once; the agent sees it; the agent reports STOPPED.
    let stopped = ecs
        .stop_task()
        .cluster("c")
        .task(&arn)
        .reason("done here")
        .send()
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(stopped.desired_status(), Some("STOPPED"));
    let p = poll(&ag, "c", &inst, pushed.generation, 0).await;
    assert_eq!(p.tasks[0].desired_status, "STOPPED");
    ecs.submit_task_state_change()
        .cluster("c")
        .task(&arn)
        .status("STOPPED")
        .containers(
            ContainerStateChange::builder()
                .container_name("app")
                .status("STOPPED")
                .exit_code(137)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let t = ecs
        .describe_tasks()
        .cluster("c")
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(t.last_status(), Some("STOPPED"));
    assert_eq!(t.stopped_reason(), Some("done here"));
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("UserInitiated"));
    assert_eq!(t.containers()[0].exit_code(), Some(137));
    assert!(t.stopped_at().is_some() && t.stopping_at().is_some());
    // Resources are released; the task leaves the RUNNING list and shows under STOPPED.
    let mem = remaining_resource(&ecs, "c", &inst, "MEMORY").await;
    assert_eq!(mem, 4096);
    assert!(ecs
        .list_tasks()
        .cluster("c")
        .send()
        .await
        .unwrap()
        .task_arns()
        .is_empty());
    assert_eq!(
        ecs.list_tasks()
            .cluster("c")
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .send()
            .await
            .unwrap()
            .task_arns(),
        &[arn]
    );
}

#[tokio::test]
async fn essential_exit_sets_the_stop_code() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    register(&ecs, "default", "us-east-1a", 1024, 1024, &[]).await; // joins (and creates) "default"
    register_td(&ecs, "exiter", 64).await;
    let arn = ecs
        .run_task()
        .task_definition("exiter")
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    ecs.submit_task_state_change()
        .task(&arn)
        .status("RUNNING")
        .send()
        .await
        .unwrap();
    ecs.submit_task_state_change()
        .task(&arn)
        .status("STOPPED")
        .reason("Essential container in task exited")
        .containers(
            ContainerStateChange::builder()
                .container_name("app")
                .status("STOPPED")
                .exit_code(3)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let t = ecs
        .describe_tasks()
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(
        t.stop_code().map(|c| c.as_str()),
        Some("EssentialContainerExited")
    );
    assert_eq!(
        t.stopped_reason(),
        Some("Essential container in task exited")
    );
    assert_eq!(t.desired_status(), Some("STOPPED"));
    assert_eq!(t.containers()[0].exit_code(), Some(3));
}

#[tokio::test]
async fn placement_failures_through_the_api() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("p").send().await.unwrap();
    let mut arns = Vec::new();
    for i in 0..5 {
        let attrs: &[(&str, &str)] = if i == 0 { &[("stack", "prod")] } else { &[] };
        arns.push(
            register(
                &ecs,
                "p",
                &format!("us-east-1{}", ["a", "b", "c"][i % 3]),
                1024,
                512,
                attrs,
            )
            .await,
        );
    }

    // Too much memory → RESOURCE:MEMORY.
    register_td(&ecs, "huge", 100_000).await;
    let out = ecs
        .run_task()
        .cluster("p")
        .task_definition("huge")
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("RESOURCE:MEMORY"));
    assert!(arns.contains(&out.failures()[0].arn().unwrap().to_string()));

    // memberOf on a custom attribute.
    register_td(&ecs, "small", 16).await;
    let out = ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .count(3)
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression("attribute:stack == prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.tasks().len(), 3);
    assert!(out
        .tasks()
        .iter()
        .all(|t| t.container_instance_arn() == Some(arns[0].as_str())));

    // distinctInstance with count 10 on 5 instances → 5 placed, 5 failures.
    register_td(&ecs, "spread", 16).await;
    let out = ecs
        .run_task()
        .cluster("p")
        .task_definition("spread")
        .count(10)
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::DistinctInstance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.tasks().len(), 5);
    assert_eq!(out.failures().len(), 5);
    let mut used: Vec<_> = out
        .tasks()
        .iter()
        .map(|t| t.container_instance_arn().unwrap().to_string())
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 5);

    // A DRAINING instance gets nothing.
    ecs.update_container_instances_state()
        .cluster("p")
        .container_instances(&arns[0])
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    let out = ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression("attribute:stack == prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());

    // count > 10 is refused as ECS does.
    let err = ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .count(11)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception());

    // ListContainerInstances with the cluster query language.
    let listed = ecs
        .list_container_instances()
        .cluster("p")
        .filter("attribute:ecs.availability-zone == us-east-1a")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.container_instance_arns().len(), 2);
    let bad = ecs
        .list_container_instances()
        .cluster("p")
        .filter("attribute:x ==")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(bad.is_invalid_parameter_exception());
}

#[tokio::test]
async fn concurrent_run_tasks_never_overcommit() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("race")
        .send()
        .await
        .unwrap();
    let inst = register(&ecs, "race", "us-east-1a", 10_000, 1000, &[]).await;
    register_td(&ecs, "m100", 100).await;
    let mut handles = Vec::new();
    for _ in 0..15 {
        let ecs = s.ecs();
        handles.push(tokio::spawn(async move {
            ecs.run_task()
                .cluster("race")
                .task_definition("m100")
                .send()
                .await
                .unwrap()
                .tasks()
                .len()
        }));
    }
    let mut placed = 0;
    for h in handles {
        placed += h.await.unwrap();
    }
    assert_eq!(placed, 10, "1000 MiB fits exactly ten 100 MiB tasks");
    let mem = remaining_resource(&ecs, "race", &inst, "MEMORY").await;
    assert_eq!(mem, 0);
}

#[tokio::test]
async fn the_placement_index_follows_changes_without_rebuilding() {
    // RunTask places on a long-lived per-cluster index (placement_cache): placements update it
    // in place; a new attribute (static state) or a new instance rebuilds it; either way every
    // answer matches the store.
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("pc")
        .send()
        .await
        .unwrap();
    let a = register(&ecs, "pc", "us-east-1a", 4096, 500, &[]).await;
    let b = register(&ecs, "pc", "us-east-1b", 4096, 500, &[]).await;
    register_td(&ecs, "m100", 100).await;
    let run = |constraint: Option<&str>| {
        let mut r = ecs.run_task().cluster("pc").task_definition("m100");
        if let Some(e) = constraint {
            r = r.placement_constraints(
                PlacementConstraint::builder()
                    .r#type(PlacementConstraintType::MemberOf)
                    .expression(e)
                    .build(),
            );
        }
        r.send()
    };
    let out = run(None).await.unwrap();
    assert_eq!(out.tasks().len(), 1);
    let built = s.app.placement.rebuilds();
    assert_eq!(built, 1, "the first placement builds the index");
    // Eight more one by one: 9 × 100 MiB of 1000 MiB, no rebuild.
    for _ in 0..8 {
        assert_eq!(run(None).await.unwrap().tasks().len(), 1);
    }
    assert_eq!(
        s.app.placement.rebuilds(),
        built,
        "placements update the index in place"
    );
    // One slot left: the index knows what the placements used.
    assert_eq!(run(None).await.unwrap().tasks().len(), 1);
    let full = run(None).await.unwrap();
    assert_eq!(full.tasks().len(), 0);
    assert_eq!(full.failures()[0].reason(), Some("RESOURCE:MEMORY"));
    // A new attribute changes static state: rebuilt, and memberOf sees it.
    ecs.put_attributes()
        .cluster("pc")
        .attributes(
            Attribute::builder()
                .name("stack")
                .value("blue")
                .target_id(&a)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let none = run(Some("attribute:stack == blue")).await.unwrap();
    assert_eq!(none.tasks().len(), 0, "a is full");
    assert!(s.app.placement.rebuilds() > built);
    // A new instance: rebuilt, and it takes the next task.
    let c = register(&ecs, "pc", "us-east-1c", 4096, 500, &[]).await;
    let on_c = run(None).await.unwrap();
    assert_eq!(on_c.tasks().len(), 1);
    assert_eq!(on_c.tasks()[0].container_instance_arn(), Some(c.as_str()));
    // A change written by another operation (draining c) reaches the index through the watch
    // cache's change log: dynamic state, so no rebuild, and c takes no more tasks.
    let built = s.app.placement.rebuilds();
    assert_eq!(run(None).await.unwrap().tasks().len(), 1);
    ecs.update_container_instances_state()
        .cluster("pc")
        .container_instances(&c)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    let followed = s.app.placement.followed();
    let drained = run(None).await.unwrap();
    assert_eq!(drained.tasks().len(), 0, "c is DRAINING, a and b are full");
    assert_eq!(s.app.placement.rebuilds(), built, "followed, not rebuilt");
    assert_eq!(
        s.app.placement.followed(),
        followed + 1,
        "found from the change log, not by walking every instance"
    );
    let _ = b;
}

#[tokio::test]
async fn attributes_and_deregistration() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("a").send().await.unwrap();
    let inst = register(&ecs, "a", "us-east-1a", 1024, 1024, &[]).await;
    for i in 0..10 {
        ecs.put_attributes()
            .cluster("a")
            .attributes(
                Attribute::builder()
                    .name(format!("k{i}"))
                    .value("v")
                    .target_id(&inst)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let err = ecs
        .put_attributes()
        .cluster("a")
        .attributes(
            Attribute::builder()
                .name("eleventh")
                .target_id(&inst)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_attribute_limit_exceeded_exception(), "{err:?}");
    let listed = ecs
        .list_attributes()
        .cluster("a")
        .target_type(aws_sdk_ecs::types::TargetType::ContainerInstance)
        .attribute_name("k3")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 1);
    assert_eq!(listed.attributes()[0].target_id(), Some(inst.as_str()));

    // Cluster with an instance cannot be deleted; after deregistration it can.
    let err = ecs
        .delete_cluster()
        .cluster("a")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_cluster_contains_container_instances_exception());
    register_td(&ecs, "t", 16).await;
    ecs.run_task()
        .cluster("a")
        .task_definition("t")
        .send()
        .await
        .unwrap();
    let err = ecs
        .deregister_container_instance()
        .cluster("a")
        .container_instance(&inst)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception());
    let gone = ecs
        .deregister_container_instance()
        .cluster("a")
        .container_instance(&inst)
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.container_instance.unwrap().status(), Some("INACTIVE"));
    assert!(ecs
        .list_container_instances()
        .cluster("a")
        .send()
        .await
        .unwrap()
        .container_instance_arns()
        .is_empty());
    ecs.delete_cluster().cluster("a").send().await.unwrap();
}

#[tokio::test]
async fn agent_role_key_can_do_agent_things_only() {
    let s = TestServer::start().await;
    let key = berth_svc_admin::create_key(&s.admin, berth_auth::Role::Agent, "agent", None)
        .await
        .unwrap();
    let ag = s.ecs_as(&key.access_key_id, &key.secret_access_key);
    let inst = register(&ag, "default", "us-east-1a", 1024, 1024, &[]).await;
    assert!(inst.contains(":container-instance/default/"));
    let err = ag
        .run_task()
        .task_definition("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&err),
        Some("AccessDeniedException")
    );
}

#[tokio::test]
async fn health_reports_set_container_and_task_health() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    register(&ecs, "default", "us-east-1a", 1024, 1024, &[]).await;
    register_td(&ecs, "h", 16).await;
    let arn = ecs
        .run_task()
        .task_definition("h")
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    let t = ecs
        .describe_tasks()
        .tasks(&arn)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    assert_eq!(t.health_status().map(|h| h.as_str()), Some("UNKNOWN"));
    for (status, expected) in [("HEALTHY", "HEALTHY"), ("UNHEALTHY", "UNHEALTHY")] {
        agent(&s)
            .call(
                "ecs",
                "AmazonEC2ContainerServiceV20141113.SubmitTaskStateChange",
                &serde_json::json!({"cluster": "default", "task": arn, "status": "RUNNING",
                    "containers": [{"containerName": "app", "status": "RUNNING", "healthStatus": status,
                                    "networkInterfaces": [{"privateIpv4Address": "172.17.0.9"}]}]}),
            )
            .await
            .unwrap();
        let t = ecs
            .describe_tasks()
            .tasks(&arn)
            .send()
            .await
            .unwrap()
            .tasks()[0]
            .clone();
        assert_eq!(t.health_status().map(|h| h.as_str()), Some(expected));
        assert_eq!(
            t.containers()[0].health_status().map(|h| h.as_str()),
            Some(expected)
        );
    }
}

#[tokio::test]
async fn explain_placement_is_a_dry_run_with_reasons() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("x").send().await.unwrap();
    let small = register(&ecs, "x", "us-east-1a", 1024, 128, &[]).await;
    let big = register(&ecs, "x", "us-east-1b", 1024, 2048, &[]).await;
    register_td(&ecs, "m512", 512).await;
    let out = agent(&s)
        .call(
            "berth",
            "BerthAdmin_20261122.ExplainPlacement",
            &serde_json::json!({"cluster": "x", "taskDefinition": "m512", "count": 2}),
        )
        .await
        .unwrap();
    let placed: Vec<&str> = out["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerInstanceArn"].as_str().unwrap())
        .collect();
    assert_eq!(placed, vec![big.as_str(), big.as_str()]);
    let small_x = out["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["containerInstanceArn"] == small.as_str())
        .unwrap();
    assert_eq!(small_x["fits"], false);
    assert!(small_x["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["reason"] == "RESOURCE:MEMORY"));
    // Nothing was committed.
    assert!(ecs
        .list_tasks()
        .cluster("x")
        .send()
        .await
        .unwrap()
        .task_arns()
        .is_empty());
    let mem = remaining_resource(&ecs, "x", &big, "MEMORY").await;
    assert_eq!(mem, 2048);
}

#[tokio::test]
async fn deleted_task_definitions_are_purged_once_unreferenced() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    register(&ecs, "default", "us-east-1a", 1024, 1024, &[]).await;
    register_td(&ecs, "old", 16).await;
    register_td(&ecs, "old", 16).await;
    ecs.run_task()
        .task_definition("old:1")
        .send()
        .await
        .unwrap();
    for rev in ["old:1", "old:2"] {
        ecs.deregister_task_definition()
            .task_definition(rev)
            .send()
            .await
            .unwrap();
    }
    let out = ecs
        .delete_task_definitions()
        .task_definitions("old:1")
        .task_definitions("old:2")
        .send()
        .await
        .unwrap();
    assert!(out
        .task_definitions()
        .iter()
        .all(|t| t.status().map(|s| s.as_str()) == Some("DELETE_IN_PROGRESS")));
    let ctx = berth_svc_ecs::Ctx {
        app: s.app.clone(),
        principal: berth_service::Principal {
            temporary: false,
            access_key_id: "t".into(),
            role: berth_auth::Role::Admin,
            arn: "arn:aws:iam::000000000000:root".into(),
        },
    };
    // old:2 is unreferenced → purged; old:1 is still used by a task → kept.
    let n = berth_svc_ecs::service_scheduler::purge_deleted_task_definitions(&ctx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(ecs
        .describe_task_definition()
        .task_definition("old:2")
        .send()
        .await
        .is_err());
    let kept = ecs
        .describe_task_definition()
        .task_definition("old:1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.task_definition.unwrap().status().map(|s| s.as_str()),
        Some("DELETE_IN_PROGRESS")
    );
    assert_eq!(
        ecs.list_task_definition_families()
            .send()
            .await
            .unwrap()
            .families(),
        &["old".to_string()]
    );
    // Revisions are never reused.
    assert_eq!(
        ecs.register_task_definition()
            .family("old")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("c")
                    .image("b")
                    .memory(8)
                    .build()
            )
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap()
            .revision(),
        3
    );
}

#[tokio::test]
async fn stalled_connections_never_block_other_agents_or_callers() {
    // Issue 9: "a slow or stalled agent connection never blocks the others". 300 connections that
    // sent half a request and stopped, and 50 that connected and sent nothing, stay open while
    // another agent's held poll must be answered at once by a placement, and API calls must be
    // served as usual.
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("st")
        .send()
        .await
        .unwrap();
    let inst = register(&ecs, "st", "us-east-1a", 4096, 4096, &[]).await;
    register_td(&ecs, "m16", 16).await;
    let addr = s.endpoint.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for i in 0..350 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i < 300 {
            c.write_all(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters\r\nContent-Length: 1000\r\n\r\n{\"cl",
            )
            .await
            .unwrap();
        }
        stalled.push(c);
    }
    let ag = agent(&s);
    let first = poll(&ag, "st", &inst, 0, 0).await;
    let held = {
        let (ag, inst, g) = (ag.clone(), inst.clone(), first.generation);
        tokio::spawn(async move { poll(&ag, "st", &inst, g, 20).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let out = ecs
        .run_task()
        .cluster("st")
        .task_definition("m16")
        .send()
        .await
        .unwrap();
    let pushed = held.await.unwrap();
    assert_eq!(pushed.tasks.len(), 1);
    assert_eq!(
        Some(pushed.tasks[0].task_arn.as_str()),
        out.tasks()[0].task_arn()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "placement → push took {:?} with stalled connections open",
        started.elapsed()
    );
    for _ in 0..20 {
        let t = std::time::Instant::now();
        ecs.list_clusters().send().await.unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
    drop(stalled);
}

#[tokio::test]
async fn gpus_are_assigned_by_id_and_never_shared() {
    use aws_sdk_ecs::types::{ResourceRequirement, ResourceType};
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("gpu")
        .send()
        .await
        .unwrap();
    let inst = ecs
        .register_container_instance()
        .cluster("gpu")
        .instance_identity_document(
            r#"{"instanceId":"i-gpu","availabilityZone":"us-east-1a","instanceType":"p3.8xlarge"}"#,
        )
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(4096)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(8192)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("GPU")
                .r#type("STRINGSET")
                .string_set_value("GPU-c")
                .string_set_value("GPU-a")
                .string_set_value("GPU-b")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .container_instance
        .unwrap();
    let inst_arn = inst.container_instance_arn().unwrap().to_string();
    let gpu_of = |r: &[Resource]| -> Vec<String> {
        r.iter()
            .find(|r| r.name() == Some("GPU"))
            .map(|r| r.string_set_value().to_vec())
            .unwrap_or_default()
    };
    assert_eq!(
        gpu_of(inst.registered_resources()),
        vec!["GPU-a", "GPU-b", "GPU-c"]
    );
    ecs.register_task_definition()
        .family("train")
        .container_definitions(
            ContainerDefinition::builder()
                .name("trainer")
                .image("busybox")
                .memory(64)
                .resource_requirements(
                    ResourceRequirement::builder()
                        .r#type(ResourceType::Gpu)
                        .value("2")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("sidecar")
                .image("busybox")
                .memory(16)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = ecs
        .run_task()
        .cluster("gpu")
        .task_definition("train")
        .send()
        .await
        .unwrap();
    assert!(first.failures().is_empty(), "{:?}", first.failures());
    let t = &first.tasks()[0];
    let trainer = t
        .containers()
        .iter()
        .find(|c| c.name() == Some("trainer"))
        .unwrap();
    let sidecar = t
        .containers()
        .iter()
        .find(|c| c.name() == Some("sidecar"))
        .unwrap();
    assert_eq!(trainer.gpu_ids(), ["GPU-a", "GPU-b"]);
    assert!(sidecar.gpu_ids().is_empty());
    // One GPU left: a second task that needs two does not fit.
    let second = ecs
        .run_task()
        .cluster("gpu")
        .task_definition("train")
        .send()
        .await
        .unwrap();
    assert!(second.tasks().is_empty());
    assert_eq!(
        second.failures()[0].reason(),
        Some("RESOURCE:GPU"),
        "{:?}",
        second.failures()
    );
    let d = ecs
        .describe_container_instances()
        .cluster("gpu")
        .container_instances(&inst_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gpu_of(d.container_instances()[0].remaining_resources()),
        vec!["GPU-c"]
    );
    // DescribeTasks says the same as RunTask.
    let again = ecs
        .describe_tasks()
        .cluster("gpu")
        .tasks(t.task_arn().unwrap())
        .send()
        .await
        .unwrap();
    let trainer = again.tasks()[0]
        .containers()
        .iter()
        .find(|c| c.name() == Some("trainer"))
        .unwrap()
        .gpu_ids()
        .to_vec();
    assert_eq!(trainer, vec!["GPU-a", "GPU-b"]);
}

/// The agent's report that a task is STOPPED (no container details).
async fn report_stopped(ecs: &aws_sdk_ecs::Client, cluster: &str, task: &str) {
    ecs.submit_task_state_change()
        .cluster(cluster)
        .task(task)
        .status("STOPPED")
        .send()
        .await
        .unwrap();
}

/// The instance record keeps counters of what its live tasks hold (not a list of them): after any
/// sequence of placements, state reports (host ports bound and re-bound, a dynamic port reused
/// by a second task before the first one's STOPPED report), duplicate reports and stops, each
/// instance's remainingResources and task counts equal what the tasks DescribeTasks shows add up
/// to, and its agent is sent exactly its live tasks.
#[tokio::test]
async fn held_counters_always_equal_the_sum_of_the_live_tasks() {
    use aws_sdk_ecs::types::{DesiredStatus, NetworkBinding, TransportProtocol};
    let s = TestServer::start().await;
    let ecs = s.ecs();
    let ag = agent(&s);
    ecs.create_cluster().cluster_name("h").send().await.unwrap();
    let mut insts = Vec::new();
    for az in ["us-east-1a", "us-east-1b", "us-east-1c"] {
        insts.push(register(&ecs, "h", az, 4096, 8192, &[]).await);
    }
    register_td(&ecs, "held", 64).await;
    // A small deterministic generator (xorshift): the same sequence on every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut arns: Vec<String> = Vec::new();
    for step in 0..80 {
        let action = if arns.is_empty() { 0 } else { next(6) };
        match action {
            0 => {
                let out = ecs
                    .run_task()
                    .cluster("h")
                    .task_definition("held")
                    .count(1 + next(3) as i32)
                    .send()
                    .await
                    .unwrap();
                assert!(out.failures().is_empty(), "{:?}", out.failures());
                arns.extend(
                    out.tasks()
                        .iter()
                        .map(|t| t.task_arn().unwrap().to_string()),
                );
            }
            1 | 2 => {
                // RUNNING (again, possibly), bound to a host port from a small range so that
                // ports repeat across tasks and reports.
                let arn = &arns[next(arns.len() as u64) as usize];
                let port = 32768 + next(4) as i32;
                ecs.submit_task_state_change()
                    .cluster("h")
                    .task(arn)
                    .status("RUNNING")
                    .containers(
                        ContainerStateChange::builder()
                            .container_name("app")
                            .status("RUNNING")
                            .network_bindings(
                                NetworkBinding::builder()
                                    .container_port(80)
                                    .host_port(port)
                                    .protocol(TransportProtocol::Tcp)
                                    .build(),
                            )
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            3 => {
                let arn = &arns[next(arns.len() as u64) as usize];
                ecs.stop_task().cluster("h").task(arn).send().await.unwrap();
            }
            _ => {
                // STOPPED (again, possibly).
                let arn = &arns[next(arns.len() as u64) as usize];
                report_stopped(&ecs, "h", arn).await;
            }
        }
        if step % 10 != 9 {
            continue;
        }
        // Expected, from the tasks themselves.
        let tasks = ecs
            .describe_tasks()
            .cluster("h")
            .set_tasks(Some(arns.clone()))
            .send()
            .await
            .unwrap()
            .tasks()
            .to_vec();
        for inst in &insts {
            let live: Vec<_> = tasks
                .iter()
                .filter(|t| t.container_instance_arn() == Some(inst.as_str()))
                .filter(|t| t.last_status() != Some("STOPPED"))
                .collect();
            let mut ports: Vec<String> = live
                .iter()
                .flat_map(|t| t.containers()[0].network_bindings())
                .map(|b| b.host_port().unwrap().to_string())
                .chain(["22".to_string()])
                .collect();
            ports.sort();
            ports.dedup();
            let running = live.iter().filter(|t| t.started_at().is_some()).count() as i32;
            let n = live.len() as i32;
            assert_eq!(
                instance_usage(&ecs, "h", inst).await,
                (4096 - 128 * n, 8192 - 64 * n, ports, running, n - running),
                "step {step}, instance {inst}"
            );
            let mut sent: Vec<String> = poll(&ag, "h", inst, 0, 0)
                .await
                .tasks
                .into_iter()
                .map(|t| t.task_arn)
                .collect();
            let mut want: Vec<String> = live
                .iter()
                .map(|t| t.task_arn().unwrap().to_string())
                .collect();
            sent.sort();
            want.sort();
            assert_eq!(sent, want, "step {step}: the agent is sent its live tasks");
        }
    }
    // Everything stops: every instance is back to what it registered.
    for arn in &arns {
        report_stopped(&ecs, "h", arn).await;
    }
    for inst in &insts {
        assert_eq!(
            instance_usage(&ecs, "h", inst).await,
            (4096, 8192, vec!["22".to_string()], 0, 0)
        );
    }
    let listed = ecs
        .list_tasks()
        .cluster("h")
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert!(!listed.task_arns().is_empty());
}
