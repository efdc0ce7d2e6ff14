//! Services through the AWS SDK for Rust with simulated agents: create → steady state, scale,
//! rolling update, delete semantics, DAEMON, draining, circuit breaker.

mod common;

use aws_sdk_ecs::types::{
    ContainerDefinition, ContainerInstanceStatus, DeploymentCircuitBreaker,
    DeploymentConfiguration, SchedulingStrategy,
};
use common::{eventually, SimAgent, TestServer};

async fn td(ecs: &aws_sdk_ecs::Client, family: &str, image: &str) -> String {
    ecs.register_task_definition()
        .family(family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .memory(32)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap()
}

async fn service(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
) -> aws_sdk_ecs::types::Service {
    ecs.describe_services()
        .cluster(cluster)
        .services(name)
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone()
}

async fn stable(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str, secs: u64) -> bool {
    eventually(secs, || async {
        let s = service(ecs, cluster, name).await;
        s.deployments().len() == 1
            && s.running_count() == s.desired_count()
            && s.deployments()[0].rollout_state().map(|r| r.as_str()) == Some("COMPLETED")
    })
    .await
}

#[tokio::test]
async fn replica_service_lifecycle() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("svc")
        .send()
        .await
        .unwrap();
    let _a = SimAgent::start(&s, "svc", "us-east-1a", 4096, 4096).await;
    let _b = SimAgent::start(&s, "svc", "us-east-1b", 4096, 4096).await;
    let v1 = td(&ecs, "web", "busybox:1").await;

    let created = ecs
        .create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let svc = created.service.unwrap();
    assert_eq!(
        svc.service_arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:service/svc/web")
    );
    assert_eq!(svc.status(), Some("ACTIVE"));
    assert_eq!(svc.deployments().len(), 1);
    assert!(svc.deployments()[0].id().unwrap().starts_with("ecs-svc/"));
    let dc = svc.deployment_configuration().unwrap();
    assert_eq!(
        (dc.maximum_percent(), dc.minimum_healthy_percent()),
        (Some(200), Some(100))
    );

    assert!(
        stable(&ecs, "svc", "web", 20).await,
        "service did not reach steady state"
    );
    let svc = service(&ecs, "svc", "web").await;
    assert_eq!(
        svc.deployments()[0].rollout_state().map(|r| r.as_str()),
        Some("COMPLETED")
    );
    let msgs: Vec<&str> = svc.events().iter().filter_map(|e| e.message()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("(service web) has started 2 tasks: (task ")),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"(service web) has reached a steady state."),
        "{msgs:?}"
    );
    // Spread across AZs by default: one task per instance.
    let arns = ecs
        .list_tasks()
        .cluster("svc")
        .service_name("web")
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    let tasks = ecs
        .describe_tasks()
        .cluster("svc")
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    let mut insts: Vec<_> = tasks
        .tasks()
        .iter()
        .map(|t| t.container_instance_arn().unwrap().to_string())
        .collect();
    insts.sort();
    insts.dedup();
    assert_eq!(insts.len(), 2);
    assert!(tasks
        .tasks()
        .iter()
        .all(|t| t.group() == Some("service:web") && t.started_by() == svc.deployments()[0].id()));
    assert_eq!(
        ecs.list_services()
            .cluster("svc")
            .send()
            .await
            .unwrap()
            .service_arns()
            .len(),
        1
    );

    // Rolling update to a new revision.
    let v2 = td(&ecs, "web", "busybox:2").await;
    assert_ne!(v1, v2);
    let upd = ecs
        .update_service()
        .cluster("svc")
        .service("web")
        .task_definition("web:2")
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(upd.deployments().len(), 2);
    assert!(
        stable(&ecs, "svc", "web", 30).await,
        "rollout did not finish"
    );
    let svc = service(&ecs, "svc", "web").await;
    assert_eq!(svc.task_definition(), Some(v2.as_str()));
    assert!(svc
        .events()
        .iter()
        .filter_map(|e| e.message())
        .any(|m| m.ends_with("deployment completed.")));

    // Delete while scaled above 0 → the exact error; scale to 0 → delete → INACTIVE.
    let err = ecs
        .delete_service()
        .cluster("svc")
        .service("web")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception());
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::message(&err),
        Some("The service cannot be stopped while it is scaled above 0.")
    );
    ecs.update_service()
        .cluster("svc")
        .service("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    assert!(
        eventually(20, || async {
            service(&ecs, "svc", "web").await.running_count() == 0
        })
        .await
    );
    let d = ecs
        .delete_service()
        .cluster("svc")
        .service("web")
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(d.status(), Some("DRAINING"));
    assert!(
        eventually(20, || async {
            service(&ecs, "svc", "web").await.status() == Some("INACTIVE")
        })
        .await
    );
    assert!(ecs
        .list_services()
        .cluster("svc")
        .send()
        .await
        .unwrap()
        .service_arns()
        .is_empty());
    let err = ecs
        .update_service()
        .cluster("svc")
        .service("web")
        .desired_count(1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_service_not_active_exception());
    // The name is reusable.
    ecs.create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    let missing = ecs
        .describe_services()
        .cluster("svc")
        .services("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.failures()[0].reason(), Some("MISSING"));
}

#[tokio::test]
async fn rolling_update_respects_maximum_percent() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("r").send().await.unwrap();
    let _a = SimAgent::start(&s, "r", "us-east-1a", 8192, 8192).await;
    td(&ecs, "roll", "busybox:1").await;
    ecs.create_service()
        .cluster("r")
        .service_name("roll")
        .task_definition("roll")
        .desired_count(4)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .maximum_percent(100)
                .minimum_healthy_percent(50)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "r", "roll", 20).await);
    td(&ecs, "roll", "busybox:2").await;
    ecs.update_service()
        .cluster("r")
        .service("roll")
        .task_definition("roll:2")
        .send()
        .await
        .unwrap();
    let max_seen = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let done = eventually(40, || {
        let max_seen = max_seen.clone();
        let ecs = ecs.clone();
        async move {
            let svc = service(&ecs, "r", "roll").await;
            max_seen.fetch_max(
                svc.running_count() + svc.pending_count(),
                std::sync::atomic::Ordering::SeqCst,
            );
            svc.deployments().len() == 1
                && svc.running_count() == 4
                && svc.task_definition().unwrap().ends_with(":2")
        }
    })
    .await;
    assert!(done);
    let m = max_seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(m <= 4, "running+pending reached {m}");
}

#[tokio::test]
async fn started_events_name_at_most_ten_tasks_each() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("ev")
        .send()
        .await
        .unwrap();
    let _a = SimAgent::start(&s, "ev", "us-east-1a", 16384, 16384).await;
    td(&ecs, "many", "busybox:1").await;
    ecs.create_service()
        .cluster("ev")
        .service_name("many")
        .task_definition("many")
        .desired_count(23)
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "ev", "many", 30).await);
    let svc = service(&ecs, "ev", "many").await;
    let mut named = Vec::new();
    for m in svc.events().iter().filter_map(|e| e.message()) {
        let Some(rest) = m.strip_prefix("(service many) has started ") else {
            continue;
        };
        let (n, ids) = rest.split_once(" tasks: ").unwrap();
        let ids: Vec<&str> = ids.trim_end_matches('.').split(") (").collect();
        assert_eq!(ids.len(), n.parse::<usize>().unwrap(), "{m}");
        assert!(ids.len() <= 10, "{m}");
        named.extend(
            ids.iter()
                .map(|i| i.trim_matches(|c| c == '(' || c == ')').to_string()),
        );
    }
    named.sort();
    named.dedup();
    assert_eq!(named.len(), 23, "{named:?}");
}

#[tokio::test]
async fn services_tasks_and_instances_are_taggable() {
    use aws_sdk_ecs::types::{ServiceField, Tag, TaskField};
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("tg")
        .send()
        .await
        .unwrap();
    let _a = SimAgent::start(&s, "tg", "us-east-1a", 4096, 4096).await;
    td(&ecs, "tagged", "busybox:1").await;
    let svc = ecs
        .create_service()
        .cluster("tg")
        .service_name("tagged")
        .task_definition("tagged")
        .desired_count(1)
        .tags(Tag::builder().key("team").value("a").build())
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let svc_arn = svc.service_arn().unwrap().to_string();
    let task_arn = ecs
        .run_task()
        .cluster("tg")
        .task_definition("tagged")
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    let inst_arn = ecs
        .list_container_instances()
        .cluster("tg")
        .send()
        .await
        .unwrap()
        .container_instance_arns()[0]
        .clone();
    let tags = |arn: String| {
        let ecs = ecs.clone();
        async move {
            let mut t: Vec<(String, String)> = ecs
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .unwrap()
                .tags()
                .iter()
                .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
                .collect();
            t.sort();
            t
        }
    };
    for arn in [&svc_arn, &task_arn, &inst_arn] {
        ecs.tag_resource()
            .resource_arn(arn)
            .tags(Tag::builder().key("env").value("prod").build())
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        tags(svc_arn.clone()).await,
        vec![("env".into(), "prod".into()), ("team".into(), "a".into())]
    );
    assert_eq!(
        tags(task_arn.clone()).await,
        vec![("env".into(), "prod".into())]
    );
    assert_eq!(
        tags(inst_arn.clone()).await,
        vec![("env".into(), "prod".into())]
    );
    // The describe calls show them with include TAGS.
    let d = ecs
        .describe_services()
        .cluster("tg")
        .services("tagged")
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.services()[0].tags().len(), 2);
    let d = ecs
        .describe_tasks()
        .cluster("tg")
        .tasks(&task_arn)
        .include(TaskField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.tasks()[0].tags()[0].key(), Some("env"));
    ecs.untag_resource()
        .resource_arn(&svc_arn)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(svc_arn.clone()).await,
        vec![("env".into(), "prod".into())]
    );
    // A task that does not exist, and a malformed ARN.
    let missing =
        task_arn.rsplit_once('/').unwrap().0.to_string() + "/0123456789abcdef0123456789abcdef";
    let e = ecs
        .list_tags_for_resource()
        .resource_arn(&missing)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&e),
        Some("ResourceNotFoundException")
    );
    let e = ecs
        .tag_resource()
        .resource_arn("arn:aws:ecs:us-east-1:000000000000:service/tg")
        .tags(Tag::builder().key("k").value("v").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&e),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn daemon_one_task_per_instance() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("d").send().await.unwrap();
    let _a = SimAgent::start(&s, "d", "us-east-1a", 1024, 1024).await;
    let _b = SimAgent::start(&s, "d", "us-east-1b", 1024, 1024).await;
    td(&ecs, "mon", "busybox").await;
    let err = ecs
        .create_service()
        .cluster("d")
        .service_name("bad")
        .task_definition("mon")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .desired_count(2)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception());
    ecs.create_service()
        .cluster("d")
        .service_name("mon")
        .task_definition("mon")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    assert!(
        eventually(20, || async {
            let s = service(&ecs, "d", "mon").await;
            s.running_count() == 2 && s.desired_count() == 2
        })
        .await,
        "ECS keeps a DAEMON's desiredCount at its eligible instances"
    );
    let c = SimAgent::start(&s, "d", "us-east-1c", 1024, 1024).await;
    assert!(
        eventually(20, || async {
            let s = service(&ecs, "d", "mon").await;
            s.running_count() == 3 && s.desired_count() == 3
        })
        .await,
        "a new instance gets one"
    );
    // Draining an instance removes its daemon task.
    ecs.update_container_instances_state()
        .cluster("d")
        .container_instances(&c.instance_arn)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert!(
        eventually(20, || async {
            ecs.list_tasks()
                .cluster("d")
                .container_instance(&c.instance_arn)
                .send()
                .await
                .unwrap()
                .task_arns()
                .is_empty()
        })
        .await
    );
    let per_instance = ecs
        .list_tasks()
        .cluster("d")
        .service_name("mon")
        .send()
        .await
        .unwrap()
        .task_arns()
        .len();
    assert_eq!(per_instance, 2);
    assert!(
        eventually(20, || async {
            service(&ecs, "d", "mon").await.desired_count() == 2
        })
        .await,
        "a draining instance no longer counts"
    );
}

#[tokio::test]
async fn draining_moves_replica_tasks() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("m").send().await.unwrap();
    let a = SimAgent::start(&s, "m", "us-east-1a", 4096, 4096).await;
    let _b = SimAgent::start(&s, "m", "us-east-1b", 4096, 4096).await;
    td(&ecs, "mv", "busybox").await;
    ecs.create_service()
        .cluster("m")
        .service_name("mv")
        .task_definition("mv")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "m", "mv", 20).await);
    ecs.update_container_instances_state()
        .cluster("m")
        .container_instances(&a.instance_arn)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert!(
        eventually(30, || async {
            ecs.list_tasks()
                .cluster("m")
                .container_instance(&a.instance_arn)
                .send()
                .await
                .unwrap()
                .task_arns()
                .is_empty()
                && service(&ecs, "m", "mv").await.running_count() == 2
        })
        .await,
        "tasks did not move off the draining instance"
    );
}

#[tokio::test]
async fn circuit_breaker_rolls_back() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("cb")
        .send()
        .await
        .unwrap();
    let _a = SimAgent::start(&s, "cb", "us-east-1a", 4096, 4096).await;
    td(&ecs, "cbw", "busybox:good").await;
    ecs.create_service()
        .cluster("cb")
        .service_name("cbw")
        .task_definition("cbw:1")
        .desired_count(1)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    DeploymentCircuitBreaker::builder()
                        .enable(true)
                        .rollback(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "cb", "cbw", 20).await);
    // Revision 2 "fails to start": the simulated agent stops `:bad` images at once.
    td(&ecs, "cbw", "busybox:bad").await;
    ecs.update_service()
        .cluster("cb")
        .service("cbw")
        .task_definition("cbw:2")
        .send()
        .await
        .unwrap();
    let rolled_back = eventually(60, || async {
        let svc = service(&ecs, "cb", "cbw").await;
        svc.task_definition().is_some_and(|t| t.ends_with(":1"))
            && svc.deployments().len() == 1
            && svc.running_count() == 1
    })
    .await;
    let svc = service(&ecs, "cb", "cbw").await;
    let msgs: Vec<&str> = svc.events().iter().filter_map(|e| e.message()).collect();
    assert!(rolled_back, "no rollback: {msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("deployment failed: tasks failed to start.")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn a_dead_service_task_is_replaced_within_seconds() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster().cluster_name("l").send().await.unwrap();
    let _a = SimAgent::start(&s, "l", "us-east-1a", 4096, 4096).await;
    td(&ecs, "lw", "busybox").await;
    ecs.create_service()
        .cluster("l")
        .service_name("lw")
        .task_definition("lw")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "l", "lw", 20).await);
    // A task that dies is replaced within seconds.
    let arn = ecs
        .list_tasks()
        .cluster("l")
        .service_name("lw")
        .send()
        .await
        .unwrap()
        .task_arns()[0]
        .clone();
    ecs.submit_task_state_change()
        .cluster("l")
        .task(&arn)
        .status("STOPPED")
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    assert!(
        eventually(15, || async {
            let arns = ecs
                .list_tasks()
                .cluster("l")
                .service_name("lw")
                .send()
                .await
                .unwrap()
                .task_arns()
                .to_vec();
            arns.len() == 1 && arns[0] != arn && service(&ecs, "l", "lw").await.running_count() == 1
        })
        .await
    );
}

/// Issue 5, reliability: the control plane dies (crash, SQLite store) in the middle of a rolling
/// deployment and comes back on the same data and port; the agents reconnect, the deployment
/// completes, maximumPercent and minimumHealthyPercent hold throughout (counted on the agents'
/// containers, the ground truth), and no task runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_during_rolling_deployment() {
    use common::CrashableServer;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let (s1, key) = CrashableServer::start(db.clone(), 0, None).await;
    let port = s1.port;
    let endpoint = s1.endpoint.clone();
    let ecs = s1.ecs(&key);
    ecs.create_cluster()
        .cluster_name("rs")
        .send()
        .await
        .unwrap();
    // Container starts take 1 s, so the deployment is still rolling when the server dies.
    let mut agents = Vec::new();
    for az in ["us-east-1a", "us-east-1b"] {
        let d = tempfile::tempdir().unwrap();
        let mut c = berth_agent::sim::InstanceConfig::new("rs", az, 8192, 8192, d.path().into());
        c.start_latency = std::time::Duration::from_secs(1);
        agents.push(SimAgent::start_with(&endpoint, &key.0, &key.1, c, d).await);
    }
    td(&ecs, "rsw", "busybox:1").await;
    ecs.create_service()
        .cluster("rs")
        .service_name("rsw")
        .task_definition("rsw:1")
        .desired_count(4)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .maximum_percent(150)
                .minimum_healthy_percent(50)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "rs", "rsw", 30).await);

    // Ground truth sampler: running containers on the agents, every 20 ms.
    let agents = Arc::new(agents);
    let (max_seen, min_seen, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(usize::MAX)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (agents, max_seen, min_seen, stop) = (
            agents.clone(),
            max_seen.clone(),
            min_seen.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut n = 0;
                for a in agents.iter() {
                    n += a.running_task_arns().await.len();
                }
                max_seen.fetch_max(n, Ordering::SeqCst);
                min_seen.fetch_min(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };

    td(&ecs, "rsw", "busybox:2").await;
    ecs.update_service()
        .cluster("rs")
        .service("rsw")
        .task_definition("rsw:2")
        .send()
        .await
        .unwrap();
    // Crash once the new deployment has tasks in flight but has not completed.
    assert!(
        eventually(20, || async {
            let svc = service(&ecs, "rs", "rsw").await;
            svc.deployments().len() == 2
                && svc
                    .deployments()
                    .iter()
                    .any(|d| d.status() == Some("PRIMARY") && d.pending_count() > 0)
        })
        .await,
        "the deployment did not start rolling"
    );
    s1.crash();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (s2, _) = CrashableServer::start(db.clone(), port, Some(key.clone())).await;
    let ecs = s2.ecs(&key);
    let done = eventually(60, || async {
        let svc = service(&ecs, "rs", "rsw").await;
        svc.deployments().len() == 1
            && svc.running_count() == 4
            && svc.pending_count() == 0
            && svc.task_definition().is_some_and(|t| t.ends_with(":2"))
            && svc.deployments()[0].rollout_state().map(|r| r.as_str()) == Some("COMPLETED")
    })
    .await;
    let svc = service(&ecs, "rs", "rsw").await;
    let msgs: Vec<&str> = svc.events().iter().filter_map(|e| e.message()).collect();
    assert!(
        done,
        "deployment did not complete after the restart: {msgs:?}"
    );
    // The old tasks' containers are stopped by now; what runs is exactly the service's tasks.
    let settled = eventually(20, || async {
        let mut running = Vec::new();
        for a in agents.iter() {
            running.extend(a.running_task_arns().await);
        }
        running.len() == 4
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert!(settled, "containers did not settle at 4");
    let mut running = Vec::new();
    for a in agents.iter() {
        running.extend(a.running_task_arns().await);
    }
    running.sort();
    let mut unique = running.clone();
    unique.dedup();
    assert_eq!(running, unique, "a task runs twice");
    let mut listed = ecs
        .list_tasks()
        .cluster("rs")
        .service_name("rsw")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    listed.sort();
    assert_eq!(
        running, listed,
        "running containers are not the service's tasks"
    );
    let described = ecs
        .describe_tasks()
        .cluster("rs")
        .set_tasks(Some(listed.clone()))
        .send()
        .await
        .unwrap();
    assert!(described.tasks().iter().all(|t| t
        .task_definition_arn()
        .is_some_and(|a| a.ends_with(":2"))
        && t.last_status() == Some("RUNNING")));
    // floor(4 × 150 %) = 6, ceil(4 × 50 %) = 2.
    let (max, min) = (
        max_seen.load(Ordering::SeqCst),
        min_seen.load(Ordering::SeqCst),
    );
    assert!(
        max <= 6,
        "running containers reached {max} (maximumPercent 150 of 4)"
    );
    assert!(
        min >= 2,
        "running containers fell to {min} (minimumHealthyPercent 50 of 4)"
    );
    s2.crash();
}

#[tokio::test]
async fn daemon_constraints_narrow_the_instances_a_pass_shares() {
    // Two DAEMON services in one cluster (so one scheduler pass serves both from the same
    // instance view): one everywhere, one only where its memberOf expression holds.
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("dc")
        .send()
        .await
        .unwrap();
    let a = SimAgent::start(&s, "dc", "us-east-1a", 1024, 1024).await;
    let _b = SimAgent::start(&s, "dc", "us-east-1b", 1024, 1024).await;
    td(&ecs, "everywhere", "busybox").await;
    td(&ecs, "only-a", "busybox").await;
    ecs.create_service()
        .cluster("dc")
        .service_name("everywhere")
        .task_definition("everywhere")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster("dc")
        .service_name("only-a")
        .task_definition("only-a")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .placement_constraints(
            aws_sdk_ecs::types::PlacementConstraint::builder()
                .r#type(aws_sdk_ecs::types::PlacementConstraintType::MemberOf)
                .expression("attribute:ecs.availability-zone == us-east-1a")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        eventually(20, || async {
            service(&ecs, "dc", "everywhere").await.running_count() == 2
                && service(&ecs, "dc", "only-a").await.running_count() == 1
        })
        .await
    );
    let on_a = ecs
        .list_tasks()
        .cluster("dc")
        .service_name("only-a")
        .container_instance(&a.instance_arn)
        .send()
        .await
        .unwrap()
        .task_arns()
        .len();
    assert_eq!(
        on_a, 1,
        "the constrained daemon runs on the us-east-1a instance"
    );
    // It stays at one: later passes don't add it to the other instance.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let svc = service(&ecs, "dc", "only-a").await;
    assert_eq!(svc.running_count(), 1);
    assert_eq!(svc.desired_count(), 1);
    // The other instance is not eligible, so one task is the whole target: the rollout completes.
    assert!(
        eventually(20, || async {
            service(&ecs, "dc", "only-a").await.deployments()[0].rollout_state()
                == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
        })
        .await,
        "{:?}",
        service(&ecs, "dc", "only-a").await.deployments()
    );
}

/// How many tasks each agent's instance runs, by DescribeContainerInstances.
async fn running_per_instance(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    agents: &[SimAgent],
) -> Vec<i32> {
    let arns: Vec<String> = agents.iter().map(|a| a.instance_arn.clone()).collect();
    let out = ecs
        .describe_container_instances()
        .cluster(cluster)
        .set_container_instances(Some(arns.clone()))
        .send()
        .await
        .unwrap();
    arns.iter()
        .map(|arn| {
            out.container_instances()
                .iter()
                .find(|i| i.container_instance_arn() == Some(arn.as_str()))
                .map(|i| i.running_tasks_count())
                .unwrap()
        })
        .collect()
}

/// A launch larger than one ordered placement walk (64 tasks) is placed and committed in chunks:
/// every task is placed, the default spread (zone, then instance) stays exact across chunks,
/// and a launch the cluster can hold only in part starts what fits and says why the rest could
/// not be placed.
#[tokio::test]
async fn a_large_launch_is_placed_in_chunks() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    ecs.create_cluster()
        .cluster_name("big")
        .send()
        .await
        .unwrap();
    let mut agents = Vec::new();
    for az in ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1b"] {
        agents.push(SimAgent::start(&s, "big", az, 65536, 65536).await);
    }
    td(&ecs, "big", "busybox").await;
    ecs.create_service()
        .cluster("big")
        .service_name("big")
        .task_definition("big")
        .desired_count(300)
        .send()
        .await
        .unwrap();
    assert!(stable(&ecs, "big", "big", 90).await);
    assert_eq!(
        running_per_instance(&ecs, "big", &agents).await,
        vec![75; 4]
    );

    // Room for 2 × 50 tasks of 32 MiB: 100 of 150 start, and the service says why not the rest.
    ecs.create_cluster()
        .cluster_name("small")
        .send()
        .await
        .unwrap();
    let small = vec![
        SimAgent::start(&s, "small", "us-east-1a", 65536, 1600).await,
        SimAgent::start(&s, "small", "us-east-1b", 65536, 1600).await,
    ];
    ecs.create_service()
        .cluster("small")
        .service_name("over")
        .task_definition("big")
        .desired_count(150)
        .send()
        .await
        .unwrap();
    assert!(
        eventually(60, || async {
            let svc = service(&ecs, "small", "over").await;
            svc.running_count() == 100
                && svc.events().iter().any(|e| {
                    e.message().is_some_and(|m| {
                        m.starts_with("(service over) was unable to place a task")
                            && m.contains("insufficient memory")
                    })
                })
        })
        .await,
        "{:?}",
        service(&ecs, "small", "over").await
    );
    assert_eq!(
        running_per_instance(&ecs, "small", &small).await,
        vec![50, 50]
    );
}
