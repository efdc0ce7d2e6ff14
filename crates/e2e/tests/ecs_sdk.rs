//! The ECS API through the official AWS SDK for Rust (aws-sdk-ecs).

mod common;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    ClusterField, ContainerDefinition, KeyValuePair, PortMapping, Tag, TaskDefinitionStatus,
};
use common::TestServer;

fn sleep_container() -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("sleep")
        .image("busybox")
        .command("sleep")
        .command("360")
        .essential(true)
        .memory(64)
        .build()
}

#[tokio::test]
async fn clusters_crud_and_errors() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    let c = ecs.create_cluster().send().await.unwrap().cluster.unwrap();
    assert_eq!(c.cluster_name(), Some("default"));
    assert_eq!(
        c.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:cluster/default")
    );
    assert_eq!(c.status(), Some("ACTIVE"));

    ecs.create_cluster()
        .cluster_name("tagged")
        .tags(Tag::builder().key("team").value("core").build())
        .send()
        .await
        .unwrap();
    let d = ecs
        .describe_clusters()
        .clusters("tagged")
        .clusters("missing")
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters().len(), 1);
    assert_eq!(d.clusters()[0].tags()[0].key(), Some("team"));
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    assert_eq!(
        d.failures()[0].arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:cluster/missing")
    );

    let err = ecs
        .delete_cluster()
        .cluster("missing")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_cluster_not_found_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Cluster not found."));

    let deleted = ecs
        .delete_cluster()
        .cluster("tagged")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(deleted.status(), Some("INACTIVE"));
    let arns = ecs.list_clusters().send().await.unwrap().cluster_arns;
    assert_eq!(
        arns.unwrap(),
        vec!["arn:aws:ecs:us-east-1:000000000000:cluster/default".to_string()]
    );
}

#[tokio::test]
async fn task_definitions_through_the_sdk() {
    let s = TestServer::start().await;
    let ecs = s.ecs();
    for expected in 1..=3 {
        let td = ecs
            .register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("busybox")
                    .memory_reservation(32)
                    .port_mappings(PortMapping::builder().container_port(80).build())
                    .environment(KeyValuePair::builder().name("A").value("1").build())
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        assert_eq!(td.revision(), expected);
        assert_eq!(td.status(), Some(&TaskDefinitionStatus::Active));
        let pm = &td.container_definitions()[0].port_mappings()[0];
        assert_eq!(pm.protocol().map(|p| p.as_str()), Some("tcp"));
    }
    ecs.deregister_task_definition()
        .task_definition("web:3")
        .send()
        .await
        .unwrap();
    let latest = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition.unwrap().revision(), 2);

    // Paginate with the SDK's paginator (page size 1).
    let mut all = Vec::new();
    let mut pages = ecs
        .list_task_definitions()
        .max_results(1)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        all.extend(p.unwrap().task_definition_arns.unwrap_or_default());
    }
    assert_eq!(all.len(), 2);
    assert!(all[0].ends_with("web:1") && all[1].ends_with("web:2"));

    let err = ecs
        .register_task_definition()
        .family("bad")
        .container_definitions(ContainerDefinition::builder().name("c").image("x").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_client_exception(), "{err:?}");
}

#[tokio::test]
async fn concurrent_registrations_never_lose_a_revision() {
    let s = TestServer::start().await;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let ecs = s.ecs();
        handles.push(tokio::spawn(async move {
            ecs.register_task_definition()
                .family("race")
                .container_definitions(sleep_container())
                .send()
                .await
                .unwrap()
                .task_definition
                .unwrap()
                .revision()
        }));
    }
    let mut revs = Vec::new();
    for h in handles {
        revs.push(h.await.unwrap());
    }
    revs.sort();
    assert_eq!(revs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn sqlite_backend_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = std::sync::Arc::new(berth_store::SqliteStore::open(&path).unwrap());
        let s = TestServer::with_store(store).await;
        s.ecs()
            .create_cluster()
            .cluster_name("kept")
            .send()
            .await
            .unwrap();
        s.ecs()
            .register_task_definition()
            .family("kept")
            .container_definitions(sleep_container())
            .send()
            .await
            .unwrap();
        s.stop().await;
    }
    // The previous server's store is dropped with its runtime task; wait for the file lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let store = loop {
        match berth_store::SqliteStore::open(&path) {
            Ok(s) => break std::sync::Arc::new(s),
            Err(e) if std::time::Instant::now() > deadline => panic!("store still locked: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let s = TestServer::with_store(store).await;
    let d = s
        .ecs()
        .describe_clusters()
        .clusters("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters()[0].status(), Some("ACTIVE"));
    let td = s
        .ecs()
        .describe_task_definition()
        .task_definition("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(td.task_definition.unwrap().revision(), 1);
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    let s = TestServer::start().await;
    let err = s
        .ecs_as(&s.access_key_id, "not-the-secret")
        .list_clusters()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidSignatureException")
    );
}
