//! Runs the shared conformance suite against every backend, plus backend-specific checks.

use std::sync::atomic::{AtomicUsize, Ordering};

use berth_store::conformance::{self, next_event, put};
use berth_store::{
    CachedStore, EventKind, MemoryStore, RangeRequest, SqliteOptions, SqliteStore, StateStore, Txn,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conformance() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("store-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { SqliteStore::open(path).unwrap() }
    })
    .await;
}

/// The watch cache in front of each backend answers exactly like the backend itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_memory_conformance() {
    conformance::run_all(|| async { CachedStore::start(std::sync::Arc::new(MemoryStore::new())) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("cached-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { CachedStore::start(std::sync::Arc::new(SqliteStore::open(path).unwrap())) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_compacted() {
    conformance::compacted(MemoryStore::with_history(5), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        history_revisions: 5,
        memory_events: 5,
        ..Default::default()
    };
    let store = SqliteStore::open_with(dir.path().join("c.db"), opts).unwrap();
    conformance::compacted(store, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let (rev, deleted_rev) = {
        let s = SqliteStore::open(&path).unwrap();
        put(&s, "a", "1").await;
        put(&s, "b", "2").await;
        put(&s, "a", "3").await;
        let deleted_rev = conformance_delete(&s, "b").await;
        let rev = put(&s, "c", "4").await;
        (rev, deleted_rev)
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), rev);
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.create_revision),
        (&b"3"[..], 2, 1)
    );
    assert!(s.get("b").await.unwrap().is_none());
    let all = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(all.kvs.len(), 2);
    assert_eq!(all.revision, rev);
    // History written before the restart replays from the events table, then live events follow.
    let mut w = s.watch("", 0).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let ev = next_event(&mut w).await;
        got.push((ev.kind, ev.kv.key, ev.kv.mod_revision));
    }
    assert_eq!(got[3], (EventKind::Delete, "b".to_string(), deleted_rev));
    assert_eq!(got.iter().map(|g| g.2).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let next = put(&s, "d", "5").await;
    assert_eq!(next, rev + 1, "revision counter continues after reopen");
    assert_eq!(next_event(&mut w).await.kv.mod_revision, next);
    // A middle start revision across the restart boundary.
    let mut mid = s.watch("", 3).await.unwrap();
    for r in 4..=next {
        assert_eq!(next_event(&mut mid).await.kv.mod_revision, r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_long_history_replays_across_windows() {
    // More history than one DB fetch window and than the in-memory ring: replay must page
    // through the events table and hand over to the ring without gaps.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let total = {
        let opts = SqliteOptions {
            memory_events: 50,
            ..Default::default()
        };
        let s = SqliteStore::open_with(&path, opts).unwrap();
        let mut last = 0;
        for chunk in 0..12 {
            // Group many revisions per fsync by issuing txns concurrently.
            let futs = (0..100).map(|i| {
                let s = s.clone();
                async move { put(&s, &format!("h/{}", (chunk * 100 + i) % 13), "v").await }
            });
            last = futures::future::join_all(futs)
                .await
                .into_iter()
                .max()
                .unwrap_or(last);
        }
        let mut w = s.watch("h/", 0).await.unwrap();
        for r in 1..=last {
            assert_eq!(next_event(&mut w).await.kv.mod_revision, r);
        }
        last
    };
    assert_eq!(total, 1200);
}

async fn conformance_delete(s: &SqliteStore, key: &str) -> i64 {
    match s.txn(Txn::new().delete(key)).await.unwrap() {
        berth_store::TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_second_instance_on_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let first = SqliteStore::open(&path).unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(berth_store::StoreError::Unavailable(_))
    ));
    drop(first);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.backend_name(), "sqlite");
}

/// Checkpoints run mostly on their own thread, and the writer finishes one when the WAL passes
/// its threshold (4,096 pages): while writes go on, the WAL keeps being copied back into the
/// database and started over, so it stays bounded, far below what was written. (With only the
/// background checkpoints it grows without bound: they never finish while the writer appends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_keep_the_wal_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let s = SqliteStore::open(&path).unwrap();
    let value = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    // 64 MiB in values (twice that with the watch history), without pauses.
    for i in 0..1024 {
        s.txn(Txn::new().put(format!("k/{}", i % 64), value.clone()))
            .await
            .unwrap();
        written += value.len();
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) as usize;
    assert!(
        wal_len < 24 << 20,
        "WAL is {wal_len} bytes after {written} bytes written"
    );
    assert_eq!(
        s.get("k/7").await.unwrap().unwrap().value.len(),
        value.len()
    );
}
