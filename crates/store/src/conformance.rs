//! Backend-agnostic conformance suite for [`StateStore`] implementations (feature
//! `conformance`). Checks panic (assert) on failure, so call them from tests only.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn memory_conformance() {
//!     berth_store::conformance::run_all(|| async { berth_store::MemoryStore::new() }).await;
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    Compare, EventKind, KeyValue, Op, RangeRequest, StateStore, StoreError, Txn, TxnOutcome,
    WatchEvent, WatchStream,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Run every check in the suite, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: StateStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! check {
        ($name:ident) => {{
            tracing::info!(check = stringify!($name), "conformance");
            let started = std::time::Instant::now();
            $name(make().await).await;
            eprintln!(
                "conformance: {} ok ({:?})",
                stringify!($name),
                started.elapsed()
            );
        }};
    }
    check!(put_get_delete);
    check!(revisions_shared_and_increasing);
    check!(create_mod_version);
    check!(range_prefix_pagination);
    check!(compares);
    check!(create_revision_compare);
    check!(delete_prefix);
    check!(multi_op_atomicity);
    check!(noop_txn_does_not_bump);
    check!(snapshot_across_prefixes);
    check!(watch_replay_then_live);
    check!(watch_prefix_filter);
    check!(watch_delete_events);
    check!(watch_during_concurrent_writes);
    check!(wipe);
    check!(concurrent_cas_counter);
}

/// Put one key; panics unless the txn commits.
pub async fn put<S: StateStore + ?Sized>(s: &S, key: &str, value: &str) -> i64 {
    match s.txn(Txn::new().put(key, value)).await.expect("put") {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("put {key}: {other:?}"),
    }
}

async fn del<S: StateStore + ?Sized>(s: &S, key: &str) -> i64 {
    match s.txn(Txn::new().delete(key)).await.expect("delete") {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("delete {key}: {other:?}"),
    }
}

/// Next event from a watch stream (panics after a timeout, on error or on end of stream).
pub async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(TIMEOUT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("timed out waiting for a watch event"),
    }
}

/// Assert that no event arrives within a short grace period.
pub async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// Basic put / get / delete round trip.
pub async fn put_get_delete<S: StateStore>(s: S) {
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert!(s.get("a").await.unwrap().is_none());
    let r = put(&s, "a", "1").await;
    let kv = s.get("a").await.unwrap().expect("a present");
    assert_eq!(kv.key, "a");
    assert_eq!(kv.value, b"1");
    assert_eq!(kv.mod_revision, r);
    put(&s, "a", "2").await;
    assert_eq!(s.get("a").await.unwrap().unwrap().value, b"2");
    // Binary values round-trip.
    let bin: Vec<u8> = (0..=255u8).collect();
    s.txn(Txn::new().put("bin", bin.clone())).await.unwrap();
    assert_eq!(s.get("bin").await.unwrap().unwrap().value, bin);
    // Empty value is distinct from absent.
    put(&s, "empty", "").await;
    assert_eq!(s.get("empty").await.unwrap().unwrap().value, b"");
    del(&s, "a").await;
    assert!(s.get("a").await.unwrap().is_none());
    // Deleting an absent key is a no-op.
    assert!(s.txn(Txn::new().delete("nope")).await.unwrap().committed());
    assert!(!s.backend_name().is_empty());
}

/// Every committed write gets a new, strictly larger revision shared across keys.
pub async fn revisions_shared_and_increasing<S: StateStore>(s: S) {
    let mut last = s.current_revision().await.unwrap();
    for i in 0..10 {
        let key = if i % 2 == 0 { "x" } else { "y" };
        let r = put(&s, key, &i.to_string()).await;
        assert!(r > last, "revision {r} not > {last}");
        assert_eq!(s.current_revision().await.unwrap(), r);
        last = r;
    }
    let r = del(&s, "x").await;
    assert!(r > last);
    let rr = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(rr.revision, r);
}

/// create_revision / mod_revision / version semantics, including re-creation after delete.
pub async fn create_mod_version<S: StateStore>(s: S) {
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
    let r3 = put(&s, "k", "c").await;
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r3, 3)
    );
    del(&s, "k").await;
    let r4 = put(&s, "k", "d").await;
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r4, r4, 1)
    );
    // The same key written twice in one txn: the later write wins, version counts both.
    let r5 = s.txn(Txn::new().put("k", "e").put("k", "f")).await.unwrap();
    let TxnOutcome::Committed { revision: r5 } = r5 else {
        panic!("{r5:?}")
    };
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"f"[..], r4, r5, 3)
    );
}

/// Range: prefix bounds, byte ordering, start_after, limit and `more`.
pub async fn range_prefix_pagination<S: StateStore>(s: S) {
    // Byte order: 'Z' (0x5A) < 'a' < 'b' < '~' (0x7E) < 'é' (0xC3 0xA9).
    let inside = ["a/b", "a/Z", "a/\u{e9}", "a/a", "a/~", "a/", "a/a/deeper"];
    let outside = ["a", "a0", "ab", "b/a", "", "Z"];
    let mut txn = Txn::new();
    for k in inside.iter().chain(outside.iter()) {
        txn = txn.put(*k, k.as_bytes());
    }
    let TxnOutcome::Committed { revision } = s.txn(txn).await.unwrap() else {
        panic!()
    };
    let expect = ["a/", "a/Z", "a/a", "a/a/deeper", "a/b", "a/~", "a/\u{e9}"];
    let all = s
        .range(RangeRequest {
            prefix: "a/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys(&all.kvs), expect);
    assert!(!all.more);
    assert_eq!(all.revision, revision);
    for kv in &all.kvs {
        assert_eq!(kv.value, kv.key.as_bytes());
    }
    // Empty prefix = everything, in byte order.
    let every = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(every.kvs.len(), inside.len() + outside.len());
    assert!(every
        .kvs
        .windows(2)
        .all(|w| w[0].key.as_bytes() < w[1].key.as_bytes()));
    // Pagination with limit + start_after walks the same keys.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .range(RangeRequest {
                prefix: "a/".into(),
                start_after: after.clone(),
                limit: Some(3),
            })
            .await
            .unwrap();
        assert!(page.kvs.len() <= 3);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        assert_eq!(page.kvs.len(), 3);
        after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, expect);
    // Exactly `limit` keys left: more = false.
    let page = s
        .range(RangeRequest {
            prefix: "a/".into(),
            start_after: Some("a/a".into()),
            limit: Some(4),
        })
        .await
        .unwrap();
    assert_eq!(keys(&page.kvs), ["a/a/deeper", "a/b", "a/~", "a/\u{e9}"]);
    assert!(!page.more);
    // start_after before the prefix is ignored; past it yields nothing.
    let page = s
        .range(RangeRequest {
            prefix: "a/".into(),
            start_after: Some("A".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(keys(&page.kvs), ["a/"]);
    assert!(page.more);
    let page = s
        .range(RangeRequest {
            prefix: "a/".into(),
            start_after: Some("b".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(page.kvs.is_empty());
    let page = s
        .range(RangeRequest {
            prefix: "a/".into(),
            start_after: None,
            limit: Some(0),
        })
        .await
        .unwrap();
    assert!(page.kvs.is_empty());
    assert!(page.more);
    let none = s
        .range(RangeRequest {
            prefix: "zzz".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.kvs.is_empty() && !none.more);
}

/// ModRevision / Absent / Exists compares: success, failure index, no partial apply, no bump.
pub async fn compares<S: StateStore>(s: S) {
    let r = put(&s, "k", "v1").await;
    let ok = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision {
                    key: "k".into(),
                    revision: r,
                })
                .when(Compare::Exists { key: "k".into() })
                .when(Compare::Absent { key: "nope".into() })
                .when(Compare::ModRevision {
                    key: "nope".into(),
                    revision: 0,
                })
                .put("k", "v2"),
        )
        .await
        .unwrap();
    let TxnOutcome::Committed { revision: r2 } = ok else {
        panic!("{ok:?}")
    };
    assert!(r2 > r);

    let failing = [
        (
            Compare::ModRevision {
                key: "k".into(),
                revision: r,
            },
            "stale mod_revision",
        ),
        (
            Compare::ModRevision {
                key: "k".into(),
                revision: 0,
            },
            "mod_revision 0 on present key",
        ),
        (
            Compare::ModRevision {
                key: "nope".into(),
                revision: r2,
            },
            "mod_revision on absent key",
        ),
        (Compare::Absent { key: "k".into() }, "absent on present key"),
        (
            Compare::Exists { key: "nope".into() },
            "exists on absent key",
        ),
    ];
    for (c, what) in failing {
        let out = s
            .txn(
                Txn::new()
                    .when(Compare::Exists { key: "k".into() })
                    .when(c)
                    .when(Compare::Absent { key: "k".into() })
                    .put("k", "bad")
                    .put("new", "bad")
                    .delete("k"),
            )
            .await
            .unwrap();
        assert_eq!(out, TxnOutcome::CompareFailed { index: 1 }, "{what}");
        assert!(!out.committed());
        assert_eq!(
            s.current_revision().await.unwrap(),
            r2,
            "{what}: revision bumped"
        );
        let kv = s.get("k").await.unwrap().unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision),
            (&b"v2"[..], r2),
            "{what}"
        );
        assert!(
            s.get("new").await.unwrap().is_none(),
            "{what}: partial apply"
        );
    }
    let out = s
        .txn(Txn::new().when(Compare::Exists { key: "nope".into() }))
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 });
}

/// CreateRevision compares: hold across rewrites of the key, fail once it was deleted and
/// re-created (a fencing token outlives overwrites, not a new incarnation); 0 = absent.
pub async fn create_revision_compare<S: StateStore>(s: S) {
    let created = put(&s, "lease", "a").await;
    let rewritten = put(&s, "lease", "b").await;
    assert!(rewritten > created);
    let fenced = |revision| {
        Txn::new()
            .when(Compare::CreateRevision {
                key: "lease".into(),
                revision,
            })
            .put("work", "done")
    };
    let out = s.txn(fenced(created)).await.unwrap();
    assert!(
        out.committed(),
        "create_revision holds after an overwrite: {out:?}"
    );
    let out = s.txn(fenced(rewritten)).await.unwrap();
    assert_eq!(
        out,
        TxnOutcome::CompareFailed { index: 0 },
        "mod revision is not the create revision"
    );
    let out = s
        .txn(Txn::new().when(Compare::CreateRevision {
            key: "absent".into(),
            revision: 0,
        }))
        .await
        .unwrap();
    assert!(out.committed(), "create_revision 0 = absent");
    del(&s, "lease").await;
    let out = s.txn(fenced(created)).await.unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 }, "deleted key");
    let recreated = put(&s, "lease", "c").await;
    let before = s.current_revision().await.unwrap();
    let out = s.txn(fenced(created)).await.unwrap();
    assert_eq!(
        out,
        TxnOutcome::CompareFailed { index: 0 },
        "a new incarnation"
    );
    assert_eq!(
        s.current_revision().await.unwrap(),
        before,
        "failed compare bumped the revision"
    );
    assert!(s.txn(fenced(recreated)).await.unwrap().committed());
}

/// DeletePrefix removes exactly the keys under the prefix.
pub async fn delete_prefix<S: StateStore>(s: S) {
    let txn = Txn::new()
        .put("p/1", "")
        .put("p/2", "")
        .put("p/2/x", "")
        .put("p0", "")
        .put("p", "");
    s.txn(txn).await.unwrap();
    let before = s.current_revision().await.unwrap();
    let out = s.txn(Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: "p/".into(),
        }],
    });
    let TxnOutcome::Committed { revision } = out.await.unwrap() else {
        panic!()
    };
    assert_eq!(revision, before + 1);
    let left = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(keys(&left.kvs), ["p", "p0"]);
    // Nothing left under the prefix: a no-op.
    let out = s.txn(Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: "p/".into(),
        }],
    });
    assert_eq!(out.await.unwrap(), TxnOutcome::Committed { revision });
    // Empty prefix deletes everything.
    let out = s.txn(Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: String::new(),
        }],
    });
    assert!(out.await.unwrap().committed());
    assert!(s
        .range(RangeRequest::default())
        .await
        .unwrap()
        .kvs
        .is_empty());
}

/// All ops of a txn apply at one revision.
pub async fn multi_op_atomicity<S: StateStore>(s: S) {
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
        assert_eq!(kv.mod_revision, revision);
        assert_eq!(kv.create_revision, revision);
    }
    assert!(s.get("gone").await.unwrap().is_none());
    assert_eq!(s.current_revision().await.unwrap(), revision);
    // Delete then re-put in one txn.
    let out = s
        .txn(Txn::new().delete("a").put("a", "again"))
        .await
        .unwrap();
    let TxnOutcome::Committed { revision: r2 } = out else {
        panic!()
    };
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version, kv.value.as_slice()),
        (r2, 1, &b"again"[..])
    );
}

/// A txn that changes nothing commits without bumping the revision.
pub async fn noop_txn_does_not_bump<S: StateStore>(s: S) {
    let r = put(&s, "k", "v").await;
    assert_eq!(
        s.txn(Txn::new()).await.unwrap(),
        TxnOutcome::Committed { revision: r }
    );
    let out = s
        .txn(Txn::new().when(Compare::Exists { key: "k".into() }))
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: r });
    assert_eq!(
        s.txn(Txn::new().delete("absent")).await.unwrap(),
        TxnOutcome::Committed { revision: r }
    );
    assert_eq!(s.current_revision().await.unwrap(), r);
}

/// Snapshot reads several prefixes at one revision.
pub async fn snapshot_across_prefixes<S: StateStore>(s: S) {
    s.txn(
        Txn::new()
            .put("t/1", "a")
            .put("t/2", "b")
            .put("s/1", "c")
            .put("u/1", "d"),
    )
    .await
    .unwrap();
    let r = put(&s, "t/0", "z").await;
    let snap = s
        .snapshot(&["t/".into(), "s/".into(), "none/".into(), "t/".into()])
        .await
        .unwrap();
    assert_eq!(snap.revision, r);
    assert_eq!(snap.ranges.len(), 4);
    assert_eq!(keys(&snap.ranges[0]), ["t/0", "t/1", "t/2"]);
    assert_eq!(keys(&snap.ranges[1]), ["s/1"]);
    assert!(snap.ranges[2].is_empty());
    assert_eq!(snap.ranges[3], snap.ranges[0]);
    let empty = s.snapshot(&[]).await.unwrap();
    assert_eq!(empty.revision, r);
    assert!(empty.ranges.is_empty());

    // Snapshots taken while a writer runs are always internally consistent: the writer moves
    // one unit between two keys in each txn, so the sum is invariant.
    let s = Arc::new(s);
    s.txn(Txn::new().put("m/a", "100").put("m/b", "0"))
        .await
        .unwrap();
    let w = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 1..=30 {
                s.txn(
                    Txn::new()
                        .put("m/a", (100 - i).to_string())
                        .put("m/b", i.to_string()),
                )
                .await
                .unwrap();
            }
        })
    };
    for _ in 0..30 {
        let snap = s.snapshot(&["m/".into()]).await.unwrap();
        let sum: i64 = snap.ranges[0]
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).parse::<i64>().unwrap())
            .sum();
        assert_eq!(sum, 100);
        assert!(snap.ranges[0]
            .iter()
            .all(|kv| kv.mod_revision <= snap.revision));
    }
    w.await.unwrap();
}

/// Watch from 0 and from a middle revision replays exactly the later events, then live ones.
pub async fn watch_replay_then_live<S: StateStore>(s: S) {
    let mut revs = Vec::new();
    for i in 0..6 {
        revs.push(put(&s, &format!("w/{}", i % 3), &i.to_string()).await);
    }
    let multi = s
        .txn(Txn::new().put("w/x", "mx").put("w/y", "my"))
        .await
        .unwrap();
    let TxnOutcome::Committed {
        revision: multi_rev,
    } = multi
    else {
        panic!()
    };

    let mut from0 = s.watch("w/", 0).await.unwrap();
    for (i, r) in revs.iter().enumerate() {
        let ev = next_event(&mut from0).await;
        assert_eq!(ev.kind, EventKind::Put);
        assert_eq!(ev.kv.key, format!("w/{}", i % 3));
        assert_eq!(ev.kv.value, i.to_string().as_bytes());
        assert_eq!(ev.kv.mod_revision, *r);
        assert_eq!(ev.kv.version, (i / 3 + 1) as i64);
    }
    // Ops of one txn arrive in op order, at the same revision.
    let (x, y) = (next_event(&mut from0).await, next_event(&mut from0).await);
    assert_eq!((x.kv.key.as_str(), y.kv.key.as_str()), ("w/x", "w/y"));
    assert_eq!(
        (x.kv.mod_revision, y.kv.mod_revision),
        (multi_rev, multi_rev)
    );
    assert_quiet(&mut from0).await;

    let mut mid = s.watch("w/", revs[2]).await.unwrap();
    for r in &revs[3..] {
        assert_eq!(next_event(&mut mid).await.kv.mod_revision, *r);
    }
    assert_eq!(next_event(&mut mid).await.kv.key, "w/x");
    assert_eq!(next_event(&mut mid).await.kv.key, "w/y");

    // Watching from the current revision sees only new events; a future revision is allowed.
    let mut now = s.watch("w/", multi_rev).await.unwrap();
    let live = put(&s, "w/live", "l").await;
    for w in [&mut from0, &mut mid, &mut now] {
        let ev = next_event(w).await;
        assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("w/live", live));
        assert_quiet(w).await;
    }
    let mut future = s.watch("w/", live + 1).await.unwrap();
    put(&s, "w/f1", "").await;
    let r = put(&s, "w/f2", "").await;
    assert_eq!(next_event(&mut future).await.kv.mod_revision, r);
}

/// A watch only sees keys under its prefix.
pub async fn watch_prefix_filter<S: StateStore>(s: S) {
    let mut w = s.watch("a/", 0).await.unwrap();
    let mut all = s.watch("", 0).await.unwrap();
    put(&s, "b/1", "").await;
    put(&s, "a", "").await;
    put(&s, "a0", "").await;
    let r = put(&s, "a/1", "").await;
    s.txn(Txn::new().put("b/2", "").put("a/2", "").put("c", ""))
        .await
        .unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("a/1", r));
    assert_eq!(next_event(&mut w).await.kv.key, "a/2");
    assert_quiet(&mut w).await;
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(next_event(&mut all).await.kv.key);
    }
    assert_eq!(got, ["b/1", "a", "a0", "a/1", "b/2", "a/2", "c"]);
}

/// Deletes (single and prefix) produce Delete events carrying the deleting revision.
pub async fn watch_delete_events<S: StateStore>(s: S) {
    s.txn(Txn::new().put("d/1", "x").put("d/2", "y").put("d/3", "z"))
        .await
        .unwrap();
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("d/", start).await.unwrap();
    let r1 = del(&s, "d/2").await;
    let r_noop = del(&s, "d/2").await;
    assert_eq!(
        r_noop, r1,
        "deleting an absent key must not bump the revision"
    );
    let out = s.txn(Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: "d/".into(),
        }],
    });
    let TxnOutcome::Committed { revision: r2 } = out.await.unwrap() else {
        panic!()
    };
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("d/2", r1));
    assert!(ev.kv.value.is_empty());
    for key in ["d/1", "d/3"] {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), (key, r2));
    }
    assert_quiet(&mut w).await;
    // Replay also carries the deletes.
    let mut replay = s.watch("d/", 0).await.unwrap();
    let kinds: Vec<EventKind> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(next_event(&mut replay).await.kind);
        }
        v
    };
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::Delete).count(), 3);
}

/// Watchers started at arbitrary points during a stream of writes see every later event
/// exactly once and in order (no gap or duplicate between replay and live delivery).
pub async fn watch_during_concurrent_writes<S: StateStore>(s: S) {
    const N: usize = 150;
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
    // One more watcher from 0 replays everything.
    watchers.push((0, s.watch("c/", 0).await.unwrap()));
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
        assert_quiet(&mut w).await;
    }
}

/// Wipe drops keys and history, keeps the revision increasing, and ends live watches.
pub async fn wipe<S: StateStore>(s: S) {
    put(&s, "a", "1").await;
    let r = put(&s, "b/1", "2").await;
    let mut live = s.watch("", r).await.unwrap();
    s.wipe().await.unwrap();
    let after = s.current_revision().await.unwrap();
    assert!(after > r);
    assert!(s.get("a").await.unwrap().is_none());
    assert!(s
        .range(RangeRequest::default())
        .await
        .unwrap()
        .kvs
        .is_empty());
    match tokio::time::timeout(TIMEOUT, live.next()).await {
        Ok(Some(Err(StoreError::Compacted { .. }))) => {}
        other => panic!("live watch after wipe: expected Compacted, got {other:?}"),
    }
    assert!(matches!(
        s.watch("", 0).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("", after).await.unwrap();
    let r2 = put(&s, "a", "new").await;
    assert!(r2 > after);
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r2, 1));
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r2);
}

/// N tasks doing CAS read-modify-write increments on one key lose no update.
pub async fn concurrent_cas_counter<S: StateStore>(s: S) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 50;
    let s = Arc::new(s);
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                loop {
                    let cur = s.get("counter").await.unwrap();
                    let (n, rev) = match &cur {
                        Some(kv) => (
                            String::from_utf8_lossy(&kv.value).parse::<u64>().unwrap(),
                            kv.mod_revision,
                        ),
                        None => (0, 0),
                    };
                    let out = s
                        .txn(
                            Txn::new()
                                .when(Compare::ModRevision {
                                    key: "counter".into(),
                                    revision: rev,
                                })
                                .put("counter", (n + 1).to_string()),
                        )
                        .await
                        .unwrap();
                    if out.committed() {
                        break;
                    }
                    conflicts += 1;
                }
            }
            conflicts
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let kv = s.get("counter").await.unwrap().unwrap();
    assert_eq!(kv.value, (TASKS * INCREMENTS).to_string().as_bytes());
    assert_eq!(kv.version, (TASKS * INCREMENTS) as i64);
}

/// For a store created with a *small* history (`history` revisions or fewer retained): old
/// start revisions fail with `Compacted`, and a live watcher that falls behind the retained
/// history gets `Compacted` and its stream ends, without blocking writers.
pub async fn compacted<S: StateStore>(s: S, history: usize) {
    let mut lagging = s.watch("", 0).await.unwrap();
    for i in 0..(history * 3 + 10) {
        put(&s, &format!("k/{}", i % 5), &i.to_string()).await;
    }
    let cur = s.current_revision().await.unwrap();
    match s.watch("", 0).await {
        Err(StoreError::Compacted {
            requested,
            compact_revision,
        }) => {
            assert_eq!(requested, 0);
            assert!(compact_revision > 0 && compact_revision <= cur);
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    // The lagging watcher never polled: it reports Compacted, then ends.
    match tokio::time::timeout(TIMEOUT, lagging.next()).await {
        Ok(Some(Err(StoreError::Compacted { .. }))) => {}
        other => panic!("lagging watcher: expected Compacted, got {other:?}"),
    }
    assert!(tokio::time::timeout(TIMEOUT, lagging.next())
        .await
        .unwrap()
        .is_none());
    // Recent history is still replayable.
    let mut w = s.watch("", cur - 1).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.mod_revision, cur);
}
