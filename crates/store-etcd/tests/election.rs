//! Leader election against a real etcd.

mod common;

use std::time::{Duration, Instant};

use berth_store::{StateStore, Txn, TxnOutcome};
use berth_store_etcd::LeaderElection;

use common::Etcd;

const TTL: Duration = Duration::from_secs(2);

/// Two candidates: one wins; when it resigns the other takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wins_then_resigns() {
    let Some(etcd) = Etcd::start("one_wins_then_resigns").await else {
        return;
    };
    let store = etcd.store().await;
    let a = LeaderElection::new(&store);
    let b = LeaderElection::new(&etcd.store_with_prefix(store.options().prefix.clone()).await);
    assert_eq!(a.current_leader("sched").await.unwrap(), None);

    let ga = a.campaign("sched", "node-a", TTL).await.unwrap();
    assert!(ga.is_leader());
    assert_eq!(
        a.current_leader("sched").await.unwrap().as_deref(),
        Some("node-a")
    );
    let token = ga.fencing_token();
    let kv = store
        .get(&LeaderElection::key("sched"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (token, token));

    // b waits while a leads (longer than the TTL: a's keepalive works).
    let b_campaign = tokio::spawn(async move { b.campaign("sched", "node-b", TTL).await });
    tokio::time::sleep(TTL + Duration::from_millis(1500)).await;
    assert!(!b_campaign.is_finished(), "b won while a was leader");
    assert!(ga.is_leader());

    // The fence holds for a's commits while it leads.
    let out = store
        .txn(Txn::new().when(ga.fence()).put("work", "by a"))
        .await
        .unwrap();
    assert!(out.committed());

    let resigned = Instant::now();
    let fence_a = ga.fence();
    ga.resign().await.unwrap();
    let gb = tokio::time::timeout(TTL, b_campaign)
        .await
        .expect("b wins within the TTL after a resigns")
        .unwrap()
        .unwrap();
    eprintln!("b won {:?} after a resigned", resigned.elapsed());
    assert!(gb.is_leader());
    assert!(gb.fencing_token() > token);
    assert_eq!(
        a.current_leader("sched").await.unwrap().as_deref(),
        Some("node-b")
    );
    // a's fence no longer holds.
    let out = store
        .txn(Txn::new().when(fence_a).put("work", "stale a"))
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 });
    gb.resign().await.unwrap();
    assert_eq!(a.current_leader("sched").await.unwrap(), None);
}

/// The leader's keepalive stops (a hung process): its guard reports the loss, and only after
/// that — once the lease expired in etcd — does the other candidate win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_lease_hands_over_after_ttl() {
    let Some(etcd) = Etcd::start("lost_lease_hands_over_after_ttl").await else {
        return;
    };
    let store = etcd.store().await;
    let a = LeaderElection::new(&store);
    let b = LeaderElection::new(&store);
    let mut ga = a.campaign("sched", "node-a", TTL).await.unwrap();
    let mut lost = ga.subscribe();
    let b_campaign = tokio::spawn(async move {
        let g = b.campaign("sched", "node-b", TTL).await;
        (Instant::now(), g)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let paused = Instant::now();
    ga.pause_keepalive();
    let lost_at = tokio::time::timeout(TTL * 2, async {
        while *lost.borrow_and_update() {
            lost.changed().await.unwrap();
        }
        Instant::now()
    })
    .await
    .expect("a reports the loss within the TTL");
    assert!(!ga.is_leader());
    let (won_at, gb) = tokio::time::timeout(TTL * 3, b_campaign)
        .await
        .expect("b wins after the TTL")
        .unwrap();
    let gb = gb.unwrap();
    eprintln!(
        "a lost after {:?}, b won after {:?}",
        lost_at - paused,
        won_at - paused
    );
    assert!(lost_at < won_at, "b won before a knew it had lost");
    assert!(gb.is_leader());
    assert_eq!(
        a.current_leader("sched").await.unwrap().as_deref(),
        Some("node-b")
    );
    // a's stale fence fails.
    let out = store
        .txn(Txn::new().when(ga.fence()).put("work", "stale"))
        .await
        .unwrap();
    assert!(!out.committed());
}

/// Dropping a guard (a clean shutdown) revokes the lease: the next candidate wins at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guard_releases() {
    let Some(etcd) = Etcd::start("dropped_guard_releases").await else {
        return;
    };
    let store = etcd.store().await;
    let e = LeaderElection::new(&store);
    let g = e
        .campaign("x", "n1", Duration::from_secs(10))
        .await
        .unwrap();
    drop(g);
    let started = Instant::now();
    let g2 = tokio::time::timeout(Duration::from_secs(5), e.campaign("x", "n2", TTL))
        .await
        .expect("n2 wins well before n1's 10 s TTL")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(g2.is_leader());
    assert!(e.campaign("", "n", TTL).await.is_err());
}
