//! The shared store conformance suite against a real etcd, plus etcd-specific checks
//! (compaction, a restart of etcd under a live watch).

mod common;

use std::sync::Arc;
use std::time::Duration;

use berth_store::conformance::{self as c, next_event, put};
use berth_store::{
    EventKind, PrefixedStore, RangeRequest, StateStore, StoreError, Txn, TxnOutcome,
};
use futures::StreamExt;

use common::Etcd;

/// Every check of `berth_store::conformance` on its own key prefix of one etcd (the checks run
/// one after another, so revisions are contiguous as several checks expect).
///
/// Three checks are replaced by etcd variants, because etcd's model differs from the trait's
/// reference backends in exactly these points (documented in the crate docs):
/// * a new store starts at etcd's current revision, not 0 (`put_get_delete` asserts 0);
///   (and `watch_during_concurrent_writes` expects a watch from 0 to start at revision 1);
/// * a key written twice in one transaction is one etcd write (`version` + 1, not + 2), and a
///   delete then put of one key in one transaction keeps its `create_revision`
///   (`create_mod_version`, `multi_op_atomicity`) — etcd refuses two writes to one key per txn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_conformance() {
    let Some(etcd) = Etcd::start("etcd_conformance").await else {
        return;
    };
    run_checks(|| etcd.store()).await;
}

/// The same checks on a region's namespace of an etcd store: a [`PrefixedStore`] (each check on
/// a fresh etcd store prefix, so the namespace is the only thing in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixed_conformance() {
    let Some(etcd) = Etcd::start("etcd_prefixed_conformance").await else {
        return;
    };
    run_checks(|| async { PrefixedStore::new(Arc::new(etcd.store().await), "regions/us-east-2/") })
        .await;
}

/// Every conformance check (with the etcd variants below), each on a fresh store from `make`.
async fn run_checks<S, F, Fut>(make: F)
where
    S: StateStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    macro_rules! check {
        ($($name:ident)::+) => {{
            let started = std::time::Instant::now();
            $($name)::+(make().await).await;
            eprintln!("conformance: {} ok ({:?})", stringify!($($name)::+), started.elapsed());
        }};
    }
    check!(put_get_delete_etcd);
    check!(c::revisions_shared_and_increasing);
    check!(create_mod_version_etcd);
    check!(c::range_prefix_pagination);
    check!(c::compares);
    check!(c::create_revision_compare);
    check!(c::delete_prefix);
    check!(multi_op_atomicity_etcd);
    check!(c::noop_txn_does_not_bump);
    check!(c::snapshot_across_prefixes);
    check!(c::watch_replay_then_live);
    check!(c::watch_prefix_filter);
    check!(c::watch_delete_events);
    check!(watch_during_concurrent_writes_etcd);
    check!(c::wipe);
    check!(c::concurrent_cas_counter);
}

/// `conformance::put_get_delete`, except that a fresh store's revision is etcd's, not 0.
async fn put_get_delete_etcd<S: StateStore>(s: S) {
    let start = s.current_revision().await.unwrap();
    assert!(start >= 1);
    assert!(s
        .range(RangeRequest::default())
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert!(s.get("a").await.unwrap().is_none());
    let r = put(&s, "a", "1").await;
    assert_eq!(r, start + 1);
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("a", &b"1"[..]));
    assert_eq!(kv.mod_revision, r);
    put(&s, "a", "2").await;
    assert_eq!(s.get("a").await.unwrap().unwrap().value, b"2");
    let bin: Vec<u8> = (0..=255u8).collect();
    s.txn(Txn::new().put("bin", bin.clone())).await.unwrap();
    assert_eq!(s.get("bin").await.unwrap().unwrap().value, bin);
    put(&s, "empty", "").await;
    assert_eq!(s.get("empty").await.unwrap().unwrap().value, b"");
    assert!(s.txn(Txn::new().delete("a")).await.unwrap().committed());
    assert!(s.get("a").await.unwrap().is_none());
    assert!(s.txn(Txn::new().delete("nope")).await.unwrap().committed());
    assert_eq!(s.backend_name(), "etcd");
}

/// `conformance::create_mod_version`, except that two puts of one key in one txn count once.
async fn create_mod_version_etcd<S: StateStore>(s: S) {
    let r1 = put(&s, "k", "a").await;
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    put(&s, "other", "x").await;
    let r2 = put(&s, "k", "b").await;
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert!(s.txn(Txn::new().delete("k")).await.unwrap().committed());
    let r4 = put(&s, "k", "d").await;
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r4, r4, 1)
    );
    let out = s.txn(Txn::new().put("k", "e").put("k", "f")).await.unwrap();
    let TxnOutcome::Committed { revision: r5 } = out else {
        panic!("{out:?}")
    };
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"f"[..], r4, r5, 2)
    );
}

/// `conformance::multi_op_atomicity`, except that delete + put of one key in one txn is an
/// overwrite (create_revision kept).
async fn multi_op_atomicity_etcd<S: StateStore>(s: S) {
    put(&s, "gone", "x").await;
    let out = s
        .txn(
            Txn::new()
                .put("a", "1")
                .put("b", "2")
                .delete("gone")
                .put("c", "3"),
        )
        .await
        .unwrap();
    let TxnOutcome::Committed { revision } = out else {
        panic!("{out:?}")
    };
    for k in ["a", "b", "c"] {
        let kv = s.get(k).await.unwrap().unwrap();
        assert_eq!((kv.mod_revision, kv.create_revision), (revision, revision));
    }
    assert!(s.get("gone").await.unwrap().is_none());
    assert_eq!(s.current_revision().await.unwrap(), revision);
    let out = s
        .txn(Txn::new().delete("a").put("a", "again"))
        .await
        .unwrap();
    let TxnOutcome::Committed { revision: r2 } = out else {
        panic!("{out:?}")
    };
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"again"[..], revision, r2, 2)
    );
    // A delete-prefix followed by puts under it: the puts survive, the rest goes.
    s.txn(Txn::new().put("p/1", "").put("p/2", "").put("p/3", ""))
        .await
        .unwrap();
    s.txn(
        Txn::new()
            .delete_prefix("p/")
            .put("p/2", "kept")
            .put("p/4", "new"),
    )
    .await
    .unwrap();
    let left = s
        .range(RangeRequest {
            prefix: "p/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(&str, &[u8])> = left
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(got, [("p/2", &b"kept"[..]), ("p/4", &b"new"[..])]);
}

/// `conformance::watch_during_concurrent_writes`, except that the watch from 0 starts at the
/// store's first revision (etcd's, not 1).
async fn watch_during_concurrent_writes_etcd<S: StateStore>(s: S) {
    const N: usize = 150;
    let base = s.current_revision().await.unwrap();
    let s = Arc::new(s);
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                put(&*s, &format!("c/{}", i % 7), &i.to_string()).await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut watchers = Vec::new();
    for _ in 0..8 {
        let after = s.current_revision().await.unwrap();
        watchers.push((after, s.watch("c/", after).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    watchers.push((base, s.watch("c/", 0).await.unwrap()));
    writer.await.unwrap();
    let end = s.current_revision().await.unwrap();
    for (after, mut w) in watchers {
        let mut expect = after + 1;
        while expect <= end {
            let ev = next_event(&mut w).await;
            assert_eq!(
                ev.kv.mod_revision, expect,
                "watch from {after}: gap or duplicate"
            );
            expect += 1;
        }
        c::assert_quiet(&mut w).await;
    }
}

/// Compacting etcd: watches from before the compaction fail with `Compacted`; later ones work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction() {
    let Some(etcd) = Etcd::start("etcd_compaction").await else {
        return;
    };
    let s = etcd.store().await;
    let first = put(&s, "k/a", "1").await;
    for i in 0..10 {
        put(&s, "k/b", &i.to_string()).await;
    }
    let cur = put(&s, "k/c", "x").await;
    // A watch from before the compaction, still at its start when history goes.
    let mut lagging = s.watch("k/", cur).await.unwrap();
    s.compact(cur).await.unwrap();
    match s.watch("k/", first).await {
        Err(StoreError::Compacted {
            requested,
            compact_revision,
        }) => {
            assert_eq!(requested, first);
            assert!(compact_revision >= cur - 1, "{compact_revision} < {cur}");
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    // From the compaction revision on, watching works (and the earlier live watch too).
    let mut w = s.watch("k/", cur).await.unwrap();
    let r = put(&s, "k/d", "y").await;
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r);
    assert_eq!(next_event(&mut lagging).await.kv.mod_revision, r);
}

/// etcd is killed and restarted on the same data dir under a live watch: the watch resumes from
/// its last revision and delivers every later event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_under_watch() {
    let Some(mut etcd) = Etcd::start("etcd_restart_under_watch").await else {
        return;
    };
    let s = etcd.store().await;
    let start = put(&s, "w/0", "0").await;
    let mut w = s.watch("w/", start).await.unwrap();
    let r1 = put(&s, "w/1", "1").await;
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r1);

    etcd.kill();
    // While etcd is down the store reports Unavailable.
    match s.current_revision().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    etcd.restart().await;

    // Writes right after the restart, before the watch has necessarily reconnected.
    let mut revs = Vec::new();
    for i in 2..6 {
        let r = loop {
            match s.txn(Txn::new().put(format!("w/{i}"), i.to_string())).await {
                Ok(TxnOutcome::Committed { revision }) => break revision,
                Ok(other) => panic!("{other:?}"),
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        revs.push(r);
    }
    s.txn(Txn::new().delete("w/2")).await.unwrap();
    for (i, r) in revs.iter().enumerate() {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.kind, EventKind::Put);
        assert_eq!(
            (ev.kv.key.clone(), ev.kv.mod_revision),
            (format!("w/{}", i + 2), *r)
        );
    }
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.kv.key.as_str()), (EventKind::Delete, "w/2"));
    c::assert_quiet(&mut w).await;
}

/// Several stores share one etcd under different prefixes without seeing each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefix_isolation() {
    let Some(etcd) = Etcd::start("etcd_prefix_isolation").await else {
        return;
    };
    let a = etcd.store().await;
    let b = etcd.store().await;
    let mut wb = b
        .watch("", b.current_revision().await.unwrap())
        .await
        .unwrap();
    put(&a, "x", "from a").await;
    put(&a, "y", "from a").await;
    let rb = put(&b, "x", "from b").await;
    assert_eq!(a.get("x").await.unwrap().unwrap().value, b"from a");
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"from b");
    assert_eq!(a.range(RangeRequest::default()).await.unwrap().kvs.len(), 2);
    // b's watch sees only b's key; a's wipe leaves b alone.
    let ev = next_event(&mut wb).await;
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("x", rb));
    a.wipe().await.unwrap();
    assert!(a.get("x").await.unwrap().is_none());
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"from b");
    c::assert_quiet(&mut wb).await;
    let mut wb2 = b.watch("", rb).await.unwrap();
    put(&b, "z", "").await;
    assert_eq!(next_event(&mut wb2).await.kv.key, "z");
    assert!(matches!(wb.next().await, Some(Ok(ev)) if ev.kv.key == "z"));
}

/// Two regions' namespaces of one etcd store: neither sees the other's keys or events, and a
/// namespace wipe ends only its own watches, with `Compacted` before any of the wipe's deletes
/// (etcd delivers the wipe marker, put first in the wipe's transaction, ahead of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixed_namespaces_isolated() {
    let Some(etcd) = Etcd::start("etcd_prefixed_namespaces_isolated").await else {
        return;
    };
    let shared: Arc<dyn StateStore> = Arc::new(etcd.store().await);
    let a = PrefixedStore::new(shared.clone(), "regions/us-east-1/");
    let b = PrefixedStore::new(shared.clone(), "regions/us-east-2/");
    put(&a, "x", "a").await;
    put(&a, "y", "a").await;
    put(&*shared, "x", "home").await;
    let start = put(&b, "x", "b").await;
    let mut wa = a.watch("", start).await.unwrap();
    let mut wb = b.watch("", start).await.unwrap();
    assert_eq!(a.get("x").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"b");
    assert_eq!(shared.get("x").await.unwrap().unwrap().value, b"home");
    assert_eq!(
        shared
            .get("regions/us-east-2/x")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"b"
    );
    assert!(b.get("y").await.unwrap().is_none());
    assert_eq!(a.range(RangeRequest::default()).await.unwrap().kvs.len(), 2);
    let ra = put(&a, "z", "a").await;
    let ev = next_event(&mut wa).await;
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("z", ra));
    c::assert_quiet(&mut wb).await;

    a.wipe().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), wa.next()).await {
        Ok(Some(Err(StoreError::Compacted { .. }))) => {}
        other => panic!("expected Compacted first after the wipe, got {other:?}"),
    }
    assert!(a
        .range(RangeRequest::default())
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert!(matches!(
        a.watch("", start).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"b");
    assert_eq!(shared.get("x").await.unwrap().unwrap().value, b"home");
    c::assert_quiet(&mut wb).await;
    let rb = put(&b, "x", "b2").await;
    assert_eq!(next_event(&mut wb).await.kv.mod_revision, rb);
}
