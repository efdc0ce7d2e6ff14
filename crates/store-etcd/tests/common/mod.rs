//! A throwaway etcd for tests: Debian's `etcd-server` binary on 127.0.0.1, random free ports, a
//! temporary data dir, killed on drop.
//!
//! Without an `etcd` binary the tests print a SKIP line and pass — unless `CI` is set, where a
//! missing etcd fails them (scripts/test installs `etcd-server`).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_store::StateStore;
use berth_store_etcd::{EtcdOptions, EtcdStore};

pub struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn etcd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BERTH_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Etcd {
    /// Start an etcd, or `None` (test skipped) when there is no `etcd` binary outside CI.
    pub async fn start(test: &str) -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("the etcd binary is missing (apt-get install etcd-server) and CI is set");
            }
            println!("SKIP {test}: no etcd binary (apt-get install etcd-server)");
            return None;
        };
        let mut etcd = Etcd {
            bin,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        etcd.spawn();
        etcd.wait_ready().await;
        Some(etcd)
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("log file");
        let child = Command::new(&self.bin)
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(s) = EtcdStore::connect(self.options("/ready")).await {
                if s.current_revision().await.is_ok() {
                    return;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd did not become ready in 30 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Store options for this etcd and prefix.
    pub fn options(&self, prefix: &str) -> EtcdOptions {
        let mut o =
            EtcdOptions::new([format!("127.0.0.1:{}", self.client_port)]).with_prefix(prefix);
        o.connect_timeout = Duration::from_secs(1);
        o.request_timeout = Duration::from_secs(5);
        o
    }

    /// A store under a prefix no other store of this etcd uses.
    pub async fn store(&self) -> EtcdStore {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        EtcdStore::connect(self.options(&format!("/t{n}")))
            .await
            .expect("connecting to the test etcd")
    }

    /// Another connection to the store under `prefix` (as a second replica would have).
    pub async fn store_with_prefix(&self, prefix: String) -> EtcdStore {
        EtcdStore::connect(self.options(&prefix))
            .await
            .expect("connecting to the test etcd")
    }

    /// Kill etcd (SIGKILL) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start etcd again on the same data dir and ports, and wait until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
