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

/// Fencing: a leader prepares a commit, then stalls (a GC pause, a hung thread) while its lease
/// expires in etcd and another replica takes over. When the stale commit finally reaches etcd it
/// is rejected on the fence — before and after the new leader's own writes — and nothing of it is
/// applied; the new leader's fenced commits go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leaders_commit_is_rejected() {
    let Some(etcd) = Etcd::start("deposed_leaders_commit_is_rejected").await else {
        return;
    };
    let store = etcd.store().await;
    let election = LeaderElection::new(&store);
    let mut ga = election.campaign("sched", "node-a", TTL).await.unwrap();
    let fence_a = ga.fence();
    assert_eq!(
        fence_a,
        berth_store::Compare::CreateRevision {
            key: LeaderElection::key("sched"),
            revision: ga.fencing_token()
        }
    );
    // a reads the state it will act on, and builds its commit while it leads.
    let seen = put(&store, "svc", "desired=6").await;
    let stale = Txn::new()
        .when(fence_a.clone())
        .when(berth_store::Compare::ModRevision {
            key: "svc".into(),
            revision: seen,
        })
        .put("svc", "desired=6;planned-by=a")
        .put("task/a1", "placed by a");
    // a stalls: no more renewals; its lease expires in etcd (revoked here, as the expiry would).
    ga.pause_keepalive();
    store.client().lease_revoke(ga.lease_id()).await.unwrap();
    // The in-flight commit arrives after the lease is gone: rejected on the fence (index 0).
    let before = store.current_revision().await.unwrap();
    let out = store.txn(stale.clone()).await.unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 });
    assert_eq!(store.current_revision().await.unwrap(), before);

    // b becomes leader and works.
    let gb = tokio::time::timeout(TTL * 3, election.campaign("sched", "node-b", TTL))
        .await
        .expect("b wins once a's lease is gone")
        .unwrap();
    assert!(gb.fencing_token() > ga.fencing_token());
    let out = store
        .txn(
            Txn::new()
                .when(gb.fence())
                .put("svc", "desired=6;planned-by=b"),
        )
        .await
        .unwrap();
    assert!(out.committed(), "{out:?}");
    // a's commit retried now (even with its other compares fixed up) still fails on the fence.
    let mut retried = stale;
    retried.compares[1] = berth_store::Compare::ModRevision {
        key: "svc".into(),
        revision: store.get("svc").await.unwrap().unwrap().mod_revision,
    };
    let out = store.txn(retried).await.unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 });
    assert!(
        store.get("task/a1").await.unwrap().is_none(),
        "a's write landed"
    );
    assert_eq!(
        store.get("svc").await.unwrap().unwrap().value,
        b"desired=6;planned-by=b"
    );
    // a's guard knows it is deposed by now (the keepalive is paused, the deadline passed).
    tokio::time::sleep(TTL).await;
    assert!(!ga.is_leader());
    assert!(gb.is_leader());
}

/// A presence key lives while it is rewritten and vanishes one TTL after the writes stop (a
/// replica killed with -9), or at once when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_key_expires_with_its_owner() {
    let Some(etcd) = Etcd::start("presence_key_expires_with_its_owner").await else {
        return;
    };
    let store = etcd.store().await;
    let p = berth_store_etcd::Presence::new(&store, "replicas/a", TTL);
    for i in 0..4 {
        p.put(format!("beat {i}").into_bytes()).await.unwrap();
        tokio::time::sleep(TTL / 2).await;
    }
    assert_eq!(
        store.get("replicas/a").await.unwrap().unwrap().value,
        b"beat 3"
    );
    // Stop writing (as a killed process would: forget the guard without revoking).
    std::mem::forget(p);
    let stopped = Instant::now();
    while store.get("replicas/a").await.unwrap().is_some() {
        assert!(
            stopped.elapsed() < TTL * 4,
            "presence key outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = berth_store_etcd::Presence::new(&store, "replicas/b", Duration::from_secs(30));
    q.put(b"x".to_vec()).await.unwrap();
    drop(q);
    let dropped = Instant::now();
    while store.get("replicas/b").await.unwrap().is_some() {
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "dropped presence stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put(store: &berth_store_etcd::EtcdStore, key: &str, value: &str) -> i64 {
    match store.txn(Txn::new().put(key, value)).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    }
}
