//! Rough latency numbers (ignored by default):
//! `cargo test -p berth-store --release --test bench -- --ignored --nocapture`

use std::time::Instant;

use berth_store::{Compare, MemoryStore, SqliteStore, StateStore, Txn};

async fn bench<S: StateStore>(name: &str, s: S, n: usize) {
    let t = Instant::now();
    for i in 0..n {
        s.txn(Txn::new().put(format!("bench/{}", i % 100), vec![7u8; 512]))
            .await
            .unwrap();
    }
    let put = t.elapsed() / n as u32;
    let t = Instant::now();
    for i in 0..n {
        s.get(&format!("bench/{}", i % 100)).await.unwrap();
    }
    let get = t.elapsed() / n as u32;
    let s = std::sync::Arc::new(s);
    let t = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..n / 16 {
                    let key = format!("conc/{w}/{i}");
                    s.txn(
                        Txn::new()
                            .when(Compare::Absent { key: key.clone() })
                            .put(key, "x"),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let conc = t.elapsed() / (n / 16 * 16) as u32;
    println!("{name}: put {put:?}/txn, get {get:?}/op, 16 concurrent writers {conc:?}/txn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency() {
    bench("memory", MemoryStore::new(), 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    bench(
        "sqlite",
        SqliteStore::open(dir.path().join("b.db")).unwrap(),
        2_000,
    )
    .await;
}
