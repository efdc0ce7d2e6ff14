//! The watch cache's own guarantees, beyond the conformance suite it also passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use berth_store::conformance::put;
use berth_store::{CachedStore, MemoryStore, StateStore, Txn};

fn decode_counting<'a>(n: &'a AtomicUsize) -> impl Fn(&[u8]) -> Result<String, String> + 'a {
    move |b: &[u8]| {
        n.fetch_add(1, Ordering::SeqCst);
        String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_mirror_and_decode_once_per_write() {
    let cache = CachedStore::start(Arc::new(MemoryStore::new()));
    put(&cache, "k", "v1").await;
    let decodes = AtomicUsize::new(0);
    for _ in 0..3 {
        let got = cache
            .read(|v| {
                v.get("k")
                    .map(|e| e.decoded(decode_counting(&decodes)).unwrap())
            })
            .await
            .unwrap()
            .expect("the mirror catches up");
        assert_eq!(got.as_deref().map(String::as_str), Some("v1"));
    }
    assert_eq!(
        decodes.load(Ordering::SeqCst),
        1,
        "decoded once, then reused"
    );
    put(&cache, "k", "v2").await;
    let got = cache
        .read(|v| {
            v.get("k")
                .map(|e| e.decoded(decode_counting(&decodes)).unwrap())
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.as_deref().map(String::as_str), Some("v2"));
    assert_eq!(
        decodes.load(Ordering::SeqCst),
        2,
        "a write drops the decoded form"
    );
    assert_eq!(cache.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_write_is_visible_to_the_next_read() {
    // Two control-plane replicas = two caches over one backend. A read that starts after a write
    // committed elsewhere must see it (no stale reads, even though the mirror is watch-fed).
    let backend: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let a = CachedStore::start(backend.clone());
    let b = CachedStore::start(backend);
    assert!(b.ready().await.unwrap());
    for i in 0..300 {
        let v = i.to_string();
        put(&a, "shared", &v).await;
        let seen = b.get("shared").await.unwrap().expect("present");
        assert_eq!(seen.value, v.as_bytes(), "iteration {i}");
        let listed = b
            .read(|view| view.range("sha", None).count())
            .await
            .unwrap()
            .expect("served from the mirror");
        assert_eq!(listed, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_is_followed_by_a_relist() {
    let cache = CachedStore::start(Arc::new(MemoryStore::new()));
    for i in 0..10 {
        put(&cache, &format!("a/{i}"), "x").await;
    }
    assert!(cache.ready().await.unwrap());
    assert_eq!(cache.len(), 10);
    cache.wipe().await.unwrap();
    put(&cache, "b", "y").await;
    let keys = cache
        .read(|v| {
            v.range("", None)
                .map(|e| e.kv().key.clone())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
        .expect("the mirror re-listed after the wipe");
    assert_eq!(keys, ["b"]);
    assert!(cache.get("a/1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_transactions_appear_atomically() {
    // A reader never sees half of a transaction: the mirror applies whole revisions.
    let cache = CachedStore::start(Arc::new(MemoryStore::new()));
    let writer = {
        let c = cache.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let v = i.to_string();
                c.txn(Txn::new().put("pair/a", v.clone()).put("pair/b", v))
                    .await
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let pair = cache
            .read(|v| {
                v.range("pair/", None)
                    .map(|e| e.kv().value.clone())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
        if let Some(p) = pair {
            if p.len() == 2 {
                assert_eq!(p[0], p[1], "torn read");
            }
        }
    }
    writer.await.unwrap();
}

/// An index over `t/`: a value "colour,size" is indexed under "c=<colour>" and "s=<size>".
fn colour_size_index() -> berth_store::CacheIndex {
    berth_store::CacheIndex {
        name: "cs",
        prefix: "t/".into(),
        terms: Arc::new(|e: &berth_store::cache::Entry| {
            let v = e
                .decoded(|b| String::from_utf8(b.to_vec()))
                .map(|s| s.to_string())
                .unwrap_or_default();
            let mut parts = v.split(',');
            let c = parts.next().unwrap_or("");
            let s = parts.next().unwrap_or("");
            vec![format!("c={c}"), format!("s={s}")]
        }),
    }
}

async fn indexed(cache: &CachedStore, term: &str, after: Option<&str>) -> Vec<String> {
    cache
        .read(|v| {
            v.index("cs", term, after)
                .expect("index exists")
                .map(|e| e.kv().key.clone())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
        .expect("the mirror catches up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_index_follows_puts_and_deletes() {
    let backend: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    // Written before the cache starts: indexed by the initial list.
    put(backend.as_ref(), "t/1", "red,big").await;
    put(backend.as_ref(), "u/1", "red,big").await; // outside the prefix: never indexed
    let cache = CachedStore::start_indexed(backend.clone(), vec![colour_size_index()]);
    put(&cache, "t/2", "red,small").await;
    put(&cache, "t/3", "blue,big").await;
    assert_eq!(indexed(&cache, "c=red", None).await, vec!["t/1", "t/2"]);
    assert_eq!(indexed(&cache, "s=big", None).await, vec!["t/1", "t/3"]);
    assert_eq!(indexed(&cache, "c=red", Some("t/1")).await, vec!["t/2"]);
    // A change moves the key between terms; a delete removes it from all of them.
    put(&cache, "t/1", "blue,small").await;
    assert_eq!(indexed(&cache, "c=red", None).await, vec!["t/2"]);
    assert_eq!(indexed(&cache, "c=blue", None).await, vec!["t/1", "t/3"]);
    backend.txn(Txn::new().delete("t/3")).await.unwrap();
    assert_eq!(indexed(&cache, "c=blue", None).await, vec!["t/1"]);
    assert_eq!(indexed(&cache, "s=big", None).await, Vec::<String>::new());
    // A term that is a prefix of another term does not see the other's keys.
    put(&cache, "t/4", "redder,big").await;
    assert_eq!(indexed(&cache, "c=red", None).await, vec!["t/2"]);
    let n = cache
        .read(|v| v.index("cs", "c=redder", None).map(Iterator::count))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, Some(1));
    assert!(cache
        .read(|v| v.index("nope", "x", None).is_none())
        .await
        .unwrap()
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_index_agrees_with_a_full_scan_under_random_writes() {
    let backend: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let cache = CachedStore::start_indexed(backend, vec![colour_size_index()]);
    let colours = ["red", "blue", "green"];
    let sizes = ["big", "small"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let k = format!("t/{:02}", next() % 40);
        if next() % 4 == 0 {
            cache.txn(Txn::new().delete(k)).await.unwrap();
        } else {
            let v = format!(
                "{},{}",
                colours[(next() % 3) as usize],
                sizes[(next() % 2) as usize]
            );
            put(&cache, &k, &v).await;
        }
    }
    for c in colours {
        let want: Vec<String> = cache
            .read(|v| {
                v.range("t/", None)
                    .filter(|e| e.kv().value.starts_with(format!("{c},").as_bytes()))
                    .map(|e| e.kv().key.clone())
                    .collect()
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(indexed(&cache, &format!("c={c}"), None).await, want, "{c}");
    }
}

async fn changed(cache: &CachedStore, prefix: &str, since: i64) -> Option<Vec<String>> {
    cache
        .read(|v| {
            v.changed_keys(prefix, since)
                .map(|ks| ks.into_iter().map(str::to_string).collect())
        })
        .await
        .unwrap()
        .expect("the mirror catches up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_names_what_moved_since_a_revision() {
    let cache = CachedStore::start(Arc::new(MemoryStore::new()));
    put(&cache, "ci/a/1", "x").await;
    let r1 = put(&cache, "ci/a/2", "x").await;
    assert_eq!(changed(&cache, "ci/a/", r1).await, Some(vec![]));
    put(&cache, "ci/b/1", "x").await;
    put(&cache, "ci/a/2", "y").await;
    put(&cache, "ci/a/3", "x").await;
    put(&cache, "ci/a/2", "z").await;
    cache.txn(Txn::new().delete("ci/a/1")).await.unwrap();
    // Each key once, in the order of its first change; other prefixes left out; deletes named.
    assert_eq!(
        changed(&cache, "ci/a/", r1).await,
        Some(vec!["ci/a/2".into(), "ci/a/3".into(), "ci/a/1".into()])
    );
    assert_eq!(changed(&cache, "ci/", r1).await.map(|v| v.len()), Some(4));
    // The log is bounded: once more than CHANGE_LOG changes happened since r1, it can't answer.
    for i in 0..berth_store::CHANGE_LOG {
        put(&cache, "other/x", &i.to_string()).await;
    }
    assert_eq!(changed(&cache, "ci/a/", r1).await, None);
    let recent = put(&cache, "ci/a/9", "x").await - 1;
    assert_eq!(
        changed(&cache, "ci/a/", recent).await,
        Some(vec!["ci/a/9".into()])
    );
}
