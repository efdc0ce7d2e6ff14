//! `PrefixedStore`: the conformance suite on a namespace over each backend (and with the watch
//! cache on either side of it), plus isolation between namespaces sharing one store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_store::conformance::{self, assert_quiet, next_event, put};
use berth_store::{
    CacheIndex, CachedStore, Compare, EventKind, KeyValue, MemoryStore, PrefixedStore,
    RangeRequest, RangeResult, Revision, Snapshot, SqliteStore, StateStore, StoreError, Txn,
    TxnOutcome, WatchStream,
};
use futures::StreamExt;

const EAST1: &str = "regions/us-east-1/";
const EAST2: &str = "regions/us-east-2/";
/// A sibling whose name extends `us-east-2`: inside the inner watch of `us-east-2`'s marker
/// prefix (`regions/us-east-2`), so its events must be filtered out there.
const EAST20: &str = "regions/us-east-20/";

fn ns(inner: &Arc<MemoryStore>, prefix: &str) -> PrefixedStore {
    PrefixedStore::new(inner.clone(), prefix)
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

async fn all(s: &dyn StateStore) -> Vec<(String, Vec<u8>)> {
    s.range(RangeRequest::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

fn kv_pairs(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

// ---- The conformance suite through a namespace ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_memory_conformance() {
    conformance::run_all(|| async { PrefixedStore::new(Arc::new(MemoryStore::new()), EAST2) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("prefixed-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { PrefixedStore::new(Arc::new(SqliteStore::open(path).unwrap()), EAST2) }
    })
    .await;
}

/// The watch cache in front of a namespace (one cache per region).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_over_prefixed_memory_conformance() {
    conformance::run_all(|| async {
        CachedStore::start(Arc::new(PrefixedStore::new(
            Arc::new(MemoryStore::new()),
            EAST2,
        )))
    })
    .await;
}

/// A namespace of a cached store (one cache shared by every region).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_over_cached_memory_conformance() {
    conformance::run_all(|| async {
        PrefixedStore::new(
            Arc::new(CachedStore::start(Arc::new(MemoryStore::new()))),
            EAST2,
        )
    })
    .await;
}

/// Namespaces nest: a namespace of a namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_prefixed_memory_conformance() {
    conformance::run_all(|| async {
        let outer = PrefixedStore::new(Arc::new(MemoryStore::new()), "tenants/t1/");
        PrefixedStore::new(Arc::new(outer), EAST2)
    })
    .await;
}

/// The inner store's own history limit shows through as `Compacted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_memory_compacted() {
    let s = PrefixedStore::new(Arc::new(MemoryStore::with_history(5)), EAST2);
    conformance::compacted(s, 5).await;
}

// ---- Construction ----

#[test]
#[should_panic(expected = "must end with '/'")]
fn prefix_without_slash_is_refused() {
    let _ = PrefixedStore::new(Arc::new(MemoryStore::new()), "regions/us-east-2");
}

#[test]
#[should_panic(expected = "must end with '/'")]
fn bare_slash_prefix_is_refused() {
    let _ = PrefixedStore::new(Arc::new(MemoryStore::new()), "/");
}

#[test]
fn accessors() {
    let inner = Arc::new(MemoryStore::new());
    let s = ns(&inner, EAST2);
    assert_eq!(s.prefix(), EAST2);
    assert_eq!(s.wipe_marker(), "regions/us-east-2");
    assert_eq!(s.backend_name(), "memory");
    assert_eq!(s.inner().backend_name(), "memory");
    assert!(format!("{s:?}").contains(EAST2));
}

// ---- Isolation between namespaces sharing one store ----

/// Fills `inner` with the same keys in two namespaces, a sibling whose name extends one of
/// them, and the unprefixed (home) key space.
async fn populate(inner: &Arc<MemoryStore>) -> (PrefixedStore, PrefixedStore, PrefixedStore) {
    let (a, b, c) = (ns(inner, EAST1), ns(inner, EAST2), ns(inner, EAST20));
    for (s, v) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        s.txn(
            Txn::new()
                .put("x", v)
                .put("y/1", v)
                .put("y/2", v)
                .put("only-".to_string() + v, v),
        )
        .await
        .unwrap();
    }
    put(&**inner, "x", "home").await;
    put(&**inner, "regions/us-east-2x", "home").await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_do_not_see_each_other() {
    let inner = Arc::new(MemoryStore::new());
    let (a, b, c) = populate(&inner).await;

    // get
    assert_eq!(a.get("x").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"b");
    assert_eq!(c.get("x").await.unwrap().unwrap().value, b"c");
    assert_eq!(b.get("x").await.unwrap().unwrap().key, "x");
    assert!(b.get("only-a").await.unwrap().is_none());
    assert!(a.get("only-b").await.unwrap().is_none());
    assert!(b.get("0/only-c").await.unwrap().is_none());
    assert!(b.get("../us-east-1/x").await.unwrap().is_none());

    // range (whole namespace, a sub-prefix, pagination)
    assert_eq!(
        all(&b).await,
        kv_pairs(&[("only-b", "b"), ("x", "b"), ("y/1", "b"), ("y/2", "b")])
    );
    assert_eq!(
        all(&a).await,
        kv_pairs(&[("only-a", "a"), ("x", "a"), ("y/1", "a"), ("y/2", "a")])
    );
    let page = b
        .range(RangeRequest {
            prefix: "y/".into(),
            start_after: Some("y/1".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(keys(&page.kvs), ["y/2"]);
    assert!(!page.more);
    let page = b
        .range(RangeRequest {
            prefix: String::new(),
            start_after: None,
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(keys(&page.kvs), ["only-b"]);
    assert!(page.more);
    // Past the namespace's last key: nothing, though the store has keys after it.
    let page = b
        .range(RangeRequest {
            prefix: String::new(),
            start_after: Some("y/2".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(page.kvs.is_empty() && !page.more);

    // snapshot
    let snap = b
        .snapshot(&["y/".into(), String::new(), "only-a".into()])
        .await
        .unwrap();
    assert_eq!(snap.revision, inner.current_revision().await.unwrap());
    assert_eq!(keys(&snap.ranges[0]), ["y/1", "y/2"]);
    assert_eq!(keys(&snap.ranges[1]), ["only-b", "x", "y/1", "y/2"]);
    assert!(snap.ranges[2].is_empty());

    // The shared store sees everything, under the prefixes.
    let every = all(&*inner).await;
    let inner_keys: Vec<&str> = every.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        inner_keys,
        [
            "regions/us-east-1/only-a",
            "regions/us-east-1/x",
            "regions/us-east-1/y/1",
            "regions/us-east-1/y/2",
            "regions/us-east-2/only-b",
            "regions/us-east-2/x",
            "regions/us-east-2/y/1",
            "regions/us-east-2/y/2",
            "regions/us-east-20/only-c",
            "regions/us-east-20/x",
            "regions/us-east-20/y/1",
            "regions/us-east-20/y/2",
            "regions/us-east-2x",
            "x",
        ]
    );
    assert_eq!(
        inner
            .get("regions/us-east-2/x")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"b"
    );
    // Revisions are the shared store's.
    assert_eq!(
        b.current_revision().await.unwrap(),
        inner.current_revision().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compares_only_see_their_namespace() {
    let inner = Arc::new(MemoryStore::new());
    let (a, b, _c) = populate(&inner).await;
    let a_x = a.get("x").await.unwrap().unwrap();
    let b_x = b.get("x").await.unwrap().unwrap();
    assert_ne!(a_x.mod_revision, b_x.mod_revision);

    // Exists / Absent on a key only the other namespace has.
    let out = b
        .txn(
            Txn::new()
                .when(Compare::Absent {
                    key: "only-a".into(),
                })
                .when(Compare::Exists {
                    key: "only-a".into(),
                })
                .put("bad", ""),
        )
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 1 });
    // ModRevision / CreateRevision with the other namespace's revisions of "x".
    for c in [
        Compare::ModRevision {
            key: "x".into(),
            revision: a_x.mod_revision,
        },
        Compare::CreateRevision {
            key: "x".into(),
            revision: a_x.create_revision,
        },
    ] {
        let out = b
            .txn(Txn::new().when(Compare::Exists { key: "x".into() }).when(c))
            .await
            .unwrap();
        assert_eq!(out, TxnOutcome::CompareFailed { index: 1 });
    }
    // The home key space's "x" is not the namespace's either.
    let home_x = inner.get("x").await.unwrap().unwrap();
    let out = b
        .txn(Txn::new().when(Compare::ModRevision {
            key: "x".into(),
            revision: home_x.mod_revision,
        }))
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::CompareFailed { index: 0 });
    assert!(b.get("bad").await.unwrap().is_none());
    // With its own revision the compare holds and the write lands in b only.
    let out = b
        .txn(
            Txn::new()
                .when(Compare::ModRevision {
                    key: "x".into(),
                    revision: b_x.mod_revision,
                })
                .put("x", "b2"),
        )
        .await
        .unwrap();
    assert!(out.committed());
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"b2");
    assert_eq!(a.get("x").await.unwrap().unwrap().value, b"a");
    assert_eq!(inner.get("x").await.unwrap().unwrap().value, b"home");

    // delete_prefix("") empties the namespace only.
    b.txn(Txn::new().delete_prefix("")).await.unwrap();
    assert!(all(&b).await.is_empty());
    assert_eq!(all(&a).await.len(), 4);
    assert_eq!(inner.get("x").await.unwrap().unwrap().value, b"home");
    assert!(inner.get("regions/us-east-2x").await.unwrap().is_some());
    assert_eq!(
        inner
            .get("regions/us-east-20/x")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"c"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_only_see_their_namespace() {
    let inner = Arc::new(MemoryStore::new());
    let (a, b, c) = populate(&inner).await;
    let start = inner.current_revision().await.unwrap();
    let mut wa = a.watch("", start).await.unwrap();
    let mut wb = b.watch("", start).await.unwrap();
    let mut wb_y = b.watch("y/", start).await.unwrap();
    let mut wc = c.watch("", start).await.unwrap();

    let ra = put(&a, "x", "a2").await;
    put(&c, "y/1", "c2").await;
    put(&*inner, "regions/us-east-2x", "home2").await;
    put(&*inner, "x", "home2").await;
    let rb = put(&b, "x", "b2").await;
    let rb_y = put(&b, "y/3", "b").await;
    let rb_del = match b.txn(Txn::new().delete("y/1")).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    };

    let ev = next_event(&mut wa).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str(), ev.kv.mod_revision),
        (EventKind::Put, "x", ra)
    );
    assert_quiet(&mut wa).await;

    let ev = next_event(&mut wc).await;
    assert_eq!(
        (ev.kv.key.as_str(), ev.kv.value.as_slice()),
        ("y/1", &b"c2"[..])
    );
    assert_quiet(&mut wc).await;

    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = next_event(&mut wb).await;
        got.push((ev.kind, ev.kv.key, ev.kv.mod_revision));
    }
    assert_eq!(
        got,
        [
            (EventKind::Put, "x".to_string(), rb),
            (EventKind::Put, "y/3".to_string(), rb_y),
            (EventKind::Delete, "y/1".to_string(), rb_del),
        ]
    );
    assert_quiet(&mut wb).await;

    let ev = next_event(&mut wb_y).await;
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("y/3", rb_y));
    let ev = next_event(&mut wb_y).await;
    assert_eq!((ev.kind, ev.kv.key.as_str()), (EventKind::Delete, "y/1"));
    assert_quiet(&mut wb_y).await;

    // Replay from 0 carries only the namespace's own history.
    let mut replay = b.watch("", 0).await.unwrap();
    let mut replayed = Vec::new();
    for _ in 0..7 {
        replayed.push(next_event(&mut replay).await.kv.key);
    }
    assert_eq!(replayed, ["x", "y/1", "y/2", "only-b", "x", "y/3", "y/1"]);
    assert_quiet(&mut replay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_empties_only_its_namespace() {
    let inner = Arc::new(MemoryStore::new());
    let (a, b, c) = populate(&inner).await;
    let before = inner.current_revision().await.unwrap();
    let mut wa = a.watch("", before).await.unwrap();
    let mut wb = b.watch("", before).await.unwrap();
    let mut wc = c.watch("", before).await.unwrap();
    let mut home = inner.watch("", before).await.unwrap();

    b.wipe().await.unwrap();
    let wiped = inner.current_revision().await.unwrap();
    assert_eq!(wiped, before + 1, "a namespace wipe is one transaction");
    assert_eq!(b.current_revision().await.unwrap(), wiped);
    assert!(all(&b).await.is_empty());
    assert!(b.get("x").await.unwrap().is_none());
    assert_eq!(all(&a).await.len(), 4);
    assert_eq!(all(&c).await.len(), 4);
    assert_eq!(inner.get("x").await.unwrap().unwrap().value, b"home");
    assert!(inner.get("regions/us-east-2x").await.unwrap().is_some());
    // The marker sits beside the namespace, at the wipe's revision.
    let marker = inner.get(b.wipe_marker()).await.unwrap().unwrap();
    assert_eq!(marker.mod_revision, wiped);

    // b's live watch ends with Compacted; the others see nothing.
    match tokio::time::timeout(Duration::from_secs(10), wb.next()).await {
        Ok(Some(Err(StoreError::Compacted {
            compact_revision, ..
        }))) => assert_eq!(compact_revision, wiped),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(wb.next().await.is_none());
    assert_quiet(&mut wa).await;
    assert_quiet(&mut wc).await;
    // The shared store's watchers see the marker and the deletes, as plain events.
    let ev = next_event(&mut home).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Put, "regions/us-east-2")
    );
    for k in ["only-b", "x", "y/1", "y/2"] {
        let ev = next_event(&mut home).await;
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(ev.kv.key, format!("{EAST2}{k}"));
    }

    // Watching b from before the wipe fails; a and c still replay their whole history.
    match b.watch("", before).await {
        Err(StoreError::Compacted {
            requested,
            compact_revision,
        }) => assert_eq!((requested, compact_revision), (before, wiped)),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("expected Compacted"),
    }
    let mut a0 = a.watch("", 0).await.unwrap();
    assert_eq!(next_event(&mut a0).await.kv.key, "x");
    let mut b_new = b.watch("", wiped).await.unwrap();
    let r = put(&b, "x", "again").await;
    let kv = b.get("x").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r, 1));
    assert_eq!(next_event(&mut b_new).await.kv.mod_revision, r);

    // Wiping the sibling whose name extends b's (its marker and deletes fall in b's inner watch
    // range) does not disturb b; and a wipe of an empty namespace still takes a revision.
    c.wipe().await.unwrap();
    assert_quiet(&mut b_new).await;
    assert_eq!(b.get("x").await.unwrap().unwrap().value, b"again");
    let r_c = inner.current_revision().await.unwrap();
    c.wipe().await.unwrap();
    assert_eq!(inner.current_revision().await.unwrap(), r_c + 1);
    assert_quiet(&mut b_new).await;
    assert_quiet(&mut wa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_wipe_ends_namespace_watches() {
    let inner = Arc::new(MemoryStore::new());
    let (_a, b, _c) = populate(&inner).await;
    let mut w = b
        .watch("", inner.current_revision().await.unwrap())
        .await
        .unwrap();
    inner.wipe().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Err(StoreError::Compacted { .. }))) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(all(&b).await.is_empty());
}

// ---- The watch cache over a namespace ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_store_over_a_namespace() {
    let inner = Arc::new(MemoryStore::new());
    let (_a, b, _c) = populate(&inner).await;
    let index = CacheIndex {
        name: "by-value",
        prefix: "y/".into(),
        terms: Arc::new(|e| vec![String::from_utf8_lossy(&e.kv().value).into_owned()]),
    };
    let cache = CachedStore::start_indexed(Arc::new(b.clone()), vec![index]);
    assert!(cache.ready().await.unwrap());
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.backend_name(), "memory");

    // Reads after writes through the cache, served by the mirror.
    let r = put(&cache, "y/3", "new").await;
    let seen = cache
        .read(|v| {
            let e = v
                .get("y/3")
                .map(|e| (e.kv().value.clone(), e.kv().mod_revision));
            let idx: Vec<String> = v
                .index("by-value", "new", None)
                .unwrap()
                .map(|e| e.kv().key.clone())
                .collect();
            (e, idx)
        })
        .await
        .unwrap()
        .expect("served by the mirror");
    assert_eq!(seen, (Some((b"new".to_vec(), r)), vec!["y/3".to_string()]));
    assert_eq!(cache.get("y/3").await.unwrap().unwrap().value, b"new");
    assert_eq!(
        keys(
            &cache
                .range(RangeRequest {
                    prefix: "y/".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .kvs
        ),
        ["y/1", "y/2", "y/3"]
    );
    // A write by another replica of this region (straight to the namespace) is seen too.
    put(&b, "only-b", "again").await;
    assert_eq!(cache.get("only-b").await.unwrap().unwrap().value, b"again");
    assert!(cache.get("only-a").await.unwrap().is_none());

    // A namespace wipe re-lists the mirror.
    cache.wipe().await.unwrap();
    assert!(cache.get("y/3").await.unwrap().is_none());
    put(&cache, "after", "wipe").await;
    assert_eq!(cache.get("after").await.unwrap().unwrap().value, b"wipe");
    assert!(cache.ready().await.unwrap());
    assert_eq!(cache.len(), 1);
}

/// Known limitation (see `berth_store::prefixed`, "With the watch cache"): the shared revision
/// moves with every namespace's writes, but a cache over one namespace only sees its own
/// events, so after a write elsewhere the mirror can't prove it is current: reads stay correct
/// (they fall back to the store after `CATCH_UP`), not fast, until this namespace is written.
/// If this test starts failing because the mirror *does* catch up, the limitation is gone.
#[tokio::test(start_paused = true)]
async fn cached_namespace_falls_back_after_writes_elsewhere() {
    let inner = Arc::new(MemoryStore::new());
    let (a, b, _c) = populate(&inner).await;
    let cache = CachedStore::start(Arc::new(b.clone()));
    assert!(cache.ready().await.unwrap());
    put(&a, "x", "elsewhere").await;
    let started = tokio::time::Instant::now();
    assert!(
        !cache.ready().await.unwrap(),
        "the mirror can't reach the shared revision"
    );
    assert!(started.elapsed() >= berth_store::cache::CATCH_UP);
    // Still correct: the read falls through to the namespace.
    assert_eq!(cache.get("x").await.unwrap().unwrap().value, b"b");
    assert!(cache.read(|_| ()).await.unwrap().is_none());
    // A write in this namespace brings the mirror level again.
    put(&b, "x", "b2").await;
    assert!(cache.ready().await.unwrap());
    assert_eq!(cache.get("x").await.unwrap().unwrap().value, b"b2");
}

// ---- An inner store that misbehaves ----

/// Returns keys outside the namespace (which a correct store never does).
struct Leaky(MemoryStore);

fn foreign(rev: Revision) -> KeyValue {
    KeyValue {
        key: "elsewhere/k".into(),
        value: b"leak".to_vec(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
    }
}

#[async_trait]
impl StateStore for Leaky {
    async fn get(&self, key: &str) -> berth_store::Result<Option<KeyValue>> {
        if key.ends_with("/leak") {
            return Ok(Some(foreign(1)));
        }
        self.0.get(key).await
    }
    async fn range(&self, req: RangeRequest) -> berth_store::Result<RangeResult> {
        let mut r = self.0.range(req).await?;
        r.kvs.insert(0, foreign(1));
        Ok(r)
    }
    async fn snapshot(&self, prefixes: &[String]) -> berth_store::Result<Snapshot> {
        let mut s = self.0.snapshot(prefixes).await?;
        for r in &mut s.ranges {
            r.push(foreign(1));
        }
        Ok(s)
    }
    async fn txn(&self, txn: Txn) -> berth_store::Result<TxnOutcome> {
        self.0.txn(txn).await
    }
    async fn current_revision(&self) -> berth_store::Result<Revision> {
        self.0.current_revision().await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> berth_store::Result<WatchStream> {
        let leak = futures::stream::iter([Ok(berth_store::WatchEvent {
            kind: EventKind::Put,
            kv: foreign(after + 1),
        })]);
        Ok(leak.chain(self.0.watch(prefix, after).await?).boxed())
    }
    async fn wipe(&self) -> berth_store::Result<()> {
        self.0.wipe().await
    }
    fn backend_name(&self) -> &'static str {
        "leaky"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_namespace_are_skipped() {
    let s = PrefixedStore::new(Arc::new(Leaky(MemoryStore::new())), EAST2);
    let mut w = s.watch("", 0).await.unwrap();
    let r = put(&s, "k", "v").await;
    assert!(s.get("leak").await.unwrap().is_none());
    assert_eq!(
        keys(&s.range(RangeRequest::default()).await.unwrap().kvs),
        ["k"]
    );
    let snap = s.snapshot(&[String::new()]).await.unwrap();
    assert_eq!(keys(&snap.ranges[0]), ["k"]);
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kv.key.as_str(), ev.kv.mod_revision), ("k", r));
    assert_eq!(s.backend_name(), "leaky");
}
