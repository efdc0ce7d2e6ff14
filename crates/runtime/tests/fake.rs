//! FakeRuntime behaviour, on virtual time (`start_paused`), so every latency is exact.

use std::time::Duration;

use berth_runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerStatus, EventKind, FakeBehavior,
    FakeConfig, FakeRuntime, HealthCheck, HealthStatus, HealthTest, LabelFilter, ListOptions,
    LogOptions, LogSource, Mount, NetworkMode, NetworkSpec, PortBinding, Protocol, RemoveOptions,
    RuntimeError, RuntimeEvent, VolumeSpec,
};
use futures::StreamExt;
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn spec(name: &str, image: &str) -> ContainerSpec {
    let mut s = ContainerSpec::new(name, image);
    s.labels.insert("berth.agent".into(), "a1".into());
    s
}

async fn next_container_event(
    events: &mut berth_runtime::EventStream,
) -> Option<berth_runtime::ContainerEvent> {
    while let Some(ev) = events.next().await {
        if let RuntimeEvent::Container(ev) = ev {
            return Some(ev);
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn pull_create_start_stop_remove_with_latencies() -> TestResult {
    let rt = FakeRuntime::new(FakeConfig {
        pull_latency: Duration::from_secs(3),
        start_latency: Duration::from_millis(500),
        stop_latency: Duration::from_millis(200),
        ..FakeConfig::default()
    });
    assert!(!rt.image_exists("busybox").await?);
    let t0 = Instant::now();
    let img = rt.pull_image("busybox", None).await?;
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert!(img
        .digest
        .as_deref()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert!(rt.image_exists("busybox:latest").await?);
    assert_eq!(rt.pulls(), vec!["busybox".to_string()]);

    let id = rt.create_container(&spec("web", "busybox")).await?;
    assert_eq!(
        rt.inspect_container(&id).await?.state.status,
        ContainerStatus::Created
    );
    let t1 = Instant::now();
    rt.start_container(&id).await?;
    assert_eq!(t1.elapsed(), Duration::from_millis(500));
    let info = rt.inspect_container(&id).await?;
    assert_eq!(info.state.status, ContainerStatus::Running);
    assert!(info.state.started_at.is_some());
    assert!(info.networks["bridge"].ipv4_address.is_some());

    rt.stop_container(&id, Duration::from_secs(30)).await?;
    let info = rt.inspect_container(&id).await?;
    assert_eq!(info.state.status, ContainerStatus::Exited);
    assert_eq!(info.state.exit_code, Some(143));

    rt.remove_container(&id, RemoveOptions::default()).await?;
    assert!(rt
        .inspect_container(&id)
        .await
        .is_err_and(|e| e.is_not_found()));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn stop_of_a_process_ignoring_sigterm_waits_the_timeout_then_kills() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("sh");
    rt.set_behavior("sh", FakeBehavior::run_forever().ignoring_stop_signal());
    let id = rt.create_container(&spec("pid1", "sh")).await?;
    rt.start_container(&id).await?;
    let t = Instant::now();
    rt.stop_container(&id, Duration::from_secs(10)).await?;
    assert_eq!(t.elapsed(), Duration::from_secs(10));
    assert_eq!(rt.inspect_container(&id).await?.state.exit_code, Some(137));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn injected_failures_map_to_ecs_reasons() -> TestResult {
    let rt = FakeRuntime::default();
    rt.fail_pull("private/app:1", "pull access denied for private/app");
    let err = rt
        .pull_image("private/app:1", None)
        .await
        .err()
        .ok_or("pulled")?;
    assert_eq!(
        err.ecs_reason(),
        "CannotPullContainerError: pull access denied for private/app"
    );

    // Not present locally.
    let err = rt
        .create_container(&spec("x", "nothere"))
        .await
        .err()
        .ok_or("created")?;
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }));

    rt.add_image("bad");
    rt.fail_create("bad", "invalid mount config");
    let err = rt
        .create_container(&spec("y", "bad"))
        .await
        .err()
        .ok_or("created")?;
    assert_eq!(
        err.ecs_reason(),
        "CannotCreateContainerError: invalid mount config"
    );

    rt.add_image("nostart");
    rt.fail_start(
        "nostart",
        "exec: \"nope\": executable file not found in $PATH",
    );
    let id = rt.create_container(&spec("z", "nostart")).await?;
    let err = rt.start_container(&id).await.err().ok_or("started")?;
    assert!(err
        .ecs_reason()
        .starts_with("CannotStartContainerError: exec"));

    rt.set_engine_down(true);
    let err = rt.info().await.err().ok_or("engine up")?;
    assert!(err.is_transient());
    rt.set_engine_down(false);
    rt.info().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn scripted_exit_and_oom_emit_events() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("job");
    rt.add_image("hog");
    rt.set_behavior("job", FakeBehavior::exit_after(Duration::from_secs(5), 3));
    rt.set_behavior("hog", FakeBehavior::oom_after(Duration::from_secs(2)));
    let mut events = rt.events(LabelFilter::any().with("berth.agent", "a1"));

    let job = rt.create_container(&spec("job", "job")).await?;
    let hog = rt.create_container(&spec("hog", "hog")).await?;
    rt.start_container(&job).await?;
    rt.start_container(&hog).await?;

    let mut kinds = Vec::new();
    while kinds.len() < 7 {
        let ev = next_container_event(&mut events)
            .await
            .ok_or("stream ended")?;
        kinds.push((ev.id.clone(), ev.kind));
    }
    assert_eq!(
        kinds,
        vec![
            (job.clone(), EventKind::Create),
            (hog.clone(), EventKind::Create),
            (job.clone(), EventKind::Start),
            (hog.clone(), EventKind::Start),
            (hog.clone(), EventKind::Oom),
            (
                hog.clone(),
                EventKind::Die {
                    exit_code: Some(137)
                }
            ),
            (job.clone(), EventKind::Die { exit_code: Some(3) }),
        ]
    );
    let h = rt.inspect_container(&hog).await?;
    assert!(h.state.oom_killed);
    assert_eq!(rt.inspect_container(&job).await?.state.exit_code, Some(3));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn events_filter_by_label_and_report_disconnects() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("img");
    let mut mine = rt.events(LabelFilter::any().with("berth.agent", "a1"));
    let mut other = ContainerSpec::new("other", "img");
    other
        .labels
        .insert("berth.agent".into(), "someone-else".into());
    rt.create_container(&other).await?;
    let id = rt.create_container(&spec("mine", "img")).await?;
    let ev = next_container_event(&mut mine).await.ok_or("ended")?;
    assert_eq!(ev.id, id);

    rt.set_engine_down(true);
    rt.set_engine_down(false);
    assert!(matches!(
        mine.next().await,
        Some(RuntimeEvent::Disconnected { .. })
    ));
    assert_eq!(mine.next().await, Some(RuntimeEvent::Reconnected));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn health_checks_follow_the_script() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("ok");
    rt.add_image("sick");
    rt.set_behavior(
        "sick",
        FakeBehavior::run_forever().with_health(HealthStatus::Unhealthy),
    );
    let hc = HealthCheck {
        test: HealthTest::CmdShell("curl -f localhost".into()),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        retries: 3,
        start_period: Duration::from_secs(10),
    };
    let mut a = spec("a", "ok");
    a.health_check = Some(hc.clone());
    let mut b = spec("b", "sick");
    b.health_check = Some(hc);
    let a = rt.create_container(&a).await?;
    let b = rt.create_container(&b).await?;
    rt.start_container(&a).await?;
    rt.start_container(&b).await?;
    assert_eq!(
        rt.inspect_container(&a).await?.state.health,
        HealthStatus::Starting
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        rt.inspect_container(&a).await?.state.health,
        HealthStatus::Healthy
    );
    assert_eq!(
        rt.inspect_container(&b).await?.state.health,
        HealthStatus::Starting
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        rt.inspect_container(&b).await?.state.health,
        HealthStatus::Unhealthy
    );

    rt.set_health(&a, HealthStatus::Unhealthy)?;
    assert_eq!(
        rt.inspect_container(&a).await?.state.health,
        HealthStatus::Unhealthy
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn ports_are_dynamic_deterministic_and_conflict_on_start() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("web");
    let bind = |host_port| PortBinding {
        container_port: 80,
        protocol: Protocol::Tcp,
        host_port,
        host_port_range: None,
        host_ip: None,
    };
    let mut a = spec("a", "web");
    a.port_bindings.push(bind(0));
    let a = rt.create_container(&a).await?;
    rt.start_container(&a).await?;
    let pa = rt.inspect_container(&a).await?.ports;
    assert_eq!(pa.len(), 1);
    assert_eq!(pa[0].host_port, 32768);

    let mut b = spec("b", "web");
    b.port_bindings.push(bind(32768));
    let b = rt.create_container(&b).await?;
    let err = rt.start_container(&b).await.err().ok_or("started")?;
    assert!(
        err.ecs_reason().contains("port is already allocated"),
        "{err}"
    );

    // Released when the first one exits.
    rt.exit(&a, 0)?;
    assert!(rt.inspect_container(&a).await?.ports.is_empty());
    rt.start_container(&b).await?;
    assert_eq!(rt.inspect_container(&b).await?.ports[0].host_port, 32768);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn list_adopts_by_label_and_state() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("img");
    let a = rt.create_container(&spec("a", "img")).await?;
    let _b = rt.create_container(&spec("b", "img")).await?;
    rt.create_container(&ContainerSpec::new("stranger", "img"))
        .await?;
    rt.start_container(&a).await?;
    let filter = LabelFilter::any().with_key("berth.agent");
    let all = rt
        .list_containers(&ListOptions {
            filter: filter.clone(),
            include_stopped: true,
        })
        .await?;
    assert_eq!(all.len(), 2);
    let running = rt
        .list_containers(&ListOptions {
            filter,
            include_stopped: false,
        })
        .await?;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, a);
    // Name conflict.
    let err = rt
        .create_container(&spec("a", "img"))
        .await
        .err()
        .ok_or("created")?;
    assert!(matches!(err, RuntimeError::NameConflict { .. }));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn logs_backlog_tail_and_follow() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("echo");
    rt.set_behavior(
        "echo",
        FakeBehavior::exit_after(Duration::from_secs(2), 0)
            .with_log("one")
            .with_log("two"),
    );
    let id = rt.create_container(&spec("e", "echo")).await?;
    rt.start_container(&id).await?;
    rt.emit_log(&id, LogSource::Stderr, "warn")?;
    let follow = rt.logs(
        &id,
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    );
    let later = ContainerId::clone(&id);
    let rt2 = rt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = rt2.emit_log(&later, LogSource::Stdout, "three");
    });
    let lines: Vec<_> = follow
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let text: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(text, vec!["one", "two", "warn", "three"]);
    assert_eq!(lines[2].source, LogSource::Stderr);

    let tail: Vec<_> = rt
        .logs(
            &id,
            LogOptions {
                tail: Some(1),
                stderr: false,
                ..LogOptions::default()
            },
        )
        .collect::<Vec<_>>()
        .await;
    assert_eq!(tail.len(), 1);
    assert_eq!(
        tail[0].as_ref().map(|l| l.line.as_str()).ok(),
        Some("three")
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn volumes_and_networks() -> TestResult {
    let rt = FakeRuntime::default();
    rt.add_image("img");
    let vol = |name: &str, autoprovision| Mount::Volume {
        volume: VolumeSpec {
            name: name.into(),
            ..VolumeSpec::default()
        },
        target: "/data".into(),
        read_only: false,
        autoprovision,
    };
    let mut s = spec("v1", "img");
    s.mounts.push(vol("missing", false));
    let err = rt.create_container(&s).await.err().ok_or("created")?;
    assert!(matches!(err, RuntimeError::CreateFailed { .. }));
    let mut s = spec("v2", "img");
    s.mounts.push(vol("auto", true));
    rt.create_container(&s).await?;
    assert_eq!(rt.inspect_volume("auto").await?.driver, "local");
    assert!(matches!(
        rt.remove_volume("auto", false).await,
        Err(RuntimeError::Conflict { .. })
    ));

    let net = rt
        .create_network(&NetworkSpec {
            name: "task-1".into(),
            ..NetworkSpec::default()
        })
        .await?;
    let mut s = spec("n1", "img");
    s.network_mode = NetworkMode::Named {
        network: "task-1".into(),
        aliases: vec![],
    };
    let id = rt.create_container(&s).await?;
    rt.start_container(&id).await?;
    assert!(rt.inspect_container(&id).await?.networks["task-1"]
        .ipv4_address
        .is_some());
    assert!(matches!(
        rt.remove_network(&net.id).await,
        Err(RuntimeError::Conflict { .. })
    ));
    rt.kill_container(&id, "SIGKILL").await?;
    assert_eq!(rt.inspect_container(&id).await?.state.exit_code, Some(137));
    rt.remove_network("task-1").await?;
    assert!(rt.list_networks(&LabelFilter::any()).await?.is_empty());

    let stats = rt.stats(&id).await?;
    assert_eq!(stats.memory_usage_bytes, 0);
    Ok(())
}

#[tokio::test]
async fn start_failure_rate_fails_that_fraction_reproducibly() -> TestResult {
    async fn failures(
        rate: f64,
        seed: u64,
    ) -> Result<Vec<bool>, Box<dyn std::error::Error + Send + Sync>> {
        let rt = FakeRuntime::new(FakeConfig {
            start_failure_rate: rate,
            failure_seed: seed,
            ..FakeConfig::default()
        });
        rt.add_image("busybox");
        let mut out = Vec::new();
        for i in 0..400 {
            let id = rt
                .create_container(&spec(&format!("c{i}"), "busybox"))
                .await?;
            out.push(match rt.start_container(&id).await {
                Ok(()) => false,
                Err(RuntimeError::StartFailed { message, .. }) => {
                    assert!(message.contains("simulated start failure"), "{message}");
                    true
                }
                Err(e) => return Err(e.into()),
            });
        }
        Ok(out)
    }
    assert!(failures(0.0, 1).await?.iter().all(|f| !f));
    assert!(failures(1.0, 1).await?.iter().all(|f| *f));
    let a = failures(0.25, 7).await?;
    let n = a.iter().filter(|f| **f).count();
    assert!((60..=140).contains(&n), "{n} of 400 failed at rate 0.25");
    assert_eq!(a, failures(0.25, 7).await?, "same seed, same failures");
    assert_ne!(a, failures(0.25, 8).await?, "another seed, other failures");
    Ok(())
}
