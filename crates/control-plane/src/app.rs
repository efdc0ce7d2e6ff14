//! Shared server state and the per-request context.

use crate::records::{AccessKeyRecord, SessionRecord};
use crate::repo::{keys, Repo};
use berth_auth::Role;
use berth_core::Scope;
use berth_store::{EventKind, StateStore};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct App {
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub scope: Scope,
    pub keys: KeyCache,
    /// `POST /_berth/reset` is only served when the operator opted in (`--allow-reset`).
    pub allow_reset: bool,
    /// The CloudWatch Logs store (set once by [`App::open_logs`]; Logs calls fail without it).
    pub logs: std::sync::OnceLock<berth_logs::LogStore>,
    /// Agent connectivity and desired-state generations (the agent channel).
    pub agents: crate::agents::AgentHub,
    /// The endpoint agents are told to use (DiscoverPollEndpoint); set by the binary at startup.
    pub endpoint: std::sync::OnceLock<String>,
    /// The image registry's host as clients see it (`--registry-host`; default: `endpoint`).
    pub registry_host: std::sync::OnceLock<String>,
    /// Each cluster's long-lived placement index (RunTask, StartTask, services).
    pub placement: crate::placement_cache::PlacementCache,
    /// Wakes the service scheduler (a service changed, a task changed state).
    pub scheduler_wake: tokio::sync::Notify,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Whether this replica leads (runs the service scheduler) and the fence of its commits.
    /// Always leading, unfenced, on a single-node store; with etcd the binary feeds it from
    /// leader election (`set_leadership`). See `leader`.
    pub leader: std::sync::Mutex<tokio::sync::watch::Receiver<crate::leader::Leadership>>,
    /// The image registry's blob store (set once by [`App::open_registry`]; /v2 and ECR fail without it).
    pub registry: std::sync::OnceLock<std::sync::Arc<berth_registry::BlobStore>>,
    /// The control-plane replicas sharing the store (`replicas/`), as this replica sees them.
    pub replicas: crate::replicas::Replicas,
    /// Cancelled when the server starts shutting down, so long-lived responses (Live Tail
    /// streams) end instead of holding the graceful shutdown open.
    pub closing: tokio_util::sync::CancellationToken,
    /// Which berth role task IAM role credentials get (`--task-role-access`; default readonly).
    pub task_roles: std::sync::OnceLock<crate::task_credentials::TaskRoleAccess>,
}

impl App {
    pub async fn new(
        store: Arc<dyn StateStore>,
        scope: Scope,
        allow_reset: bool,
    ) -> Result<Arc<Self>, crate::ApiError> {
        let keys = KeyCache::default();
        // Every read is served by the watch cache (see berth_store::cache); writes pass through.
        let cache = berth_store::CachedStore::start_indexed(store, crate::indexes::all());
        if !cache.ready().await? {
            tracing::warn!("watch cache not ready yet: reads go to the store until it is");
        }
        let app = Arc::new(App {
            store: Arc::new(cache.clone()),
            repo: Repo::cached(cache),
            scope,
            keys,
            allow_reset,
            logs: std::sync::OnceLock::new(),
            agents: crate::agents::AgentHub::default(),
            endpoint: std::sync::OnceLock::new(),
            registry_host: std::sync::OnceLock::new(),
            scheduler_wake: tokio::sync::Notify::new(),
            placement: Default::default(),
            metrics: crate::metrics::Metrics::default(),
            leader: std::sync::Mutex::new(
                tokio::sync::watch::channel(crate::leader::Leadership::single_node()).1,
            ),
            registry: std::sync::OnceLock::new(),
            replicas: crate::replicas::Replicas::default(),
            closing: tokio_util::sync::CancellationToken::new(),
            task_roles: std::sync::OnceLock::new(),
        });
        app.keys.reload(&app.repo).await?;
        Ok(app)
    }

    /// Opens the CloudWatch Logs store in `dir` (the data dir's `logs/`) and starts its background
    /// fsync (every second) and retention (every 10 minutes) thread.
    /// Opens the image registry's blob store in `dir` (the data dir's `registry/`) and starts its
    /// garbage collection (every 10 minutes; also after deletes).
    pub fn open_registry(
        self: &Arc<Self>,
        dir: &std::path::Path,
    ) -> Result<(), berth_registry::RegistryError> {
        let _ = self
            .registry
            .set(Arc::new(berth_registry::BlobStore::open(dir)?));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                every.tick().await;
                let Some(app) = weak.upgrade() else { return };
                if let Err(e) = crate::ecr::model::collect_garbage(&app).await {
                    tracing::warn!(error = %e, "registry garbage collection failed");
                }
            }
        });
        Ok(())
    }

    pub fn open_logs(&self, dir: &std::path::Path) -> Result<(), berth_logs::LogError> {
        let store = berth_logs::LogStore::open(dir)?;
        store
            .spawn_maintenance(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(600),
            )
            .map_err(|e| berth_logs::LogError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        let _ = self.logs.set(store);
        Ok(())
    }
}

impl App {
    /// Replaces the leadership signal (etcd leader election) the service scheduler follows.
    pub fn set_leadership(&self, rx: tokio::sync::watch::Receiver<crate::leader::Leadership>) {
        if let Ok(mut l) = self.leader.lock() {
            *l = rx;
        }
    }

    /// This replica's leadership right now.
    pub fn leadership(&self) -> crate::leader::Leadership {
        self.leader
            .lock()
            .map(|l| l.borrow().clone())
            .unwrap_or_else(|_| crate::leader::Leadership::follower())
    }

    /// Does this replica lead right now?
    pub fn is_leader(&self) -> bool {
        self.leadership().leading
    }
}

/// Who is calling: the verified access key, its role, and its principal ARN.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key_id: String,
    pub role: Role,
    pub arn: String,
    /// Signed with temporary credentials (a task role's).
    pub temporary: bool,
}

/// What every handler gets.
pub struct Ctx {
    pub app: Arc<App>,
    pub principal: Principal,
}

/// The access keys, in memory for the signature check on every request, kept current by a watch on
/// `auth/keys/` (so keys made through any replica take effect everywhere).
#[derive(Default, Clone)]
pub struct KeyCache {
    inner: Arc<RwLock<HashMap<String, KeyEntry>>>,
}

/// One key as the signature check needs it.
#[derive(Clone)]
struct KeyEntry {
    secret: String,
    role: Role,
    /// Temporary credentials only.
    session: Option<Arc<SessionRecord>>,
}

impl KeyEntry {
    fn of(rec: &AccessKeyRecord) -> Option<Self> {
        Some(KeyEntry {
            secret: rec.secret_access_key.clone(),
            role: rec.role.parse::<Role>().ok()?,
            session: rec.session.clone().map(Arc::new),
        })
    }
}

impl KeyCache {
    /// Secret, role and (for a temporary key) session, read together.
    pub fn lookup(&self, akid: &str) -> Option<(String, Role, Option<Arc<SessionRecord>>)> {
        self.inner
            .read()
            .ok()?
            .get(akid)
            .map(|e| (e.secret.clone(), e.role, e.session.clone()))
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a key usable at once on this replica (the watch brings it to the others).
    pub fn insert(&self, rec: &AccessKeyRecord) {
        self.apply(rec)
    }

    pub fn remove(&self, akid: &str) {
        if let Ok(mut m) = self.inner.write() {
            m.remove(akid);
        }
    }

    fn apply(&self, rec: &AccessKeyRecord) {
        if let (Some(entry), Ok(mut m)) = (KeyEntry::of(rec), self.inner.write()) {
            m.insert(rec.access_key_id.clone(), entry);
        }
    }

    /// Loads every key; returns the store revision it read at.
    pub async fn reload(&self, repo: &Repo) -> Result<i64, crate::ApiError> {
        let rev = repo.store().current_revision().await?;
        let recs = repo.list::<AccessKeyRecord>(keys::ACCESS_KEYS).await?;
        let mut fresh = HashMap::new();
        for r in recs {
            if let Some(entry) = KeyEntry::of(&r.value) {
                fresh.insert(r.value.access_key_id, entry);
            }
        }
        if let Ok(mut m) = self.inner.write() {
            *m = fresh;
        }
        Ok(rev)
    }

    /// Follows changes to the keys until the store goes away; re-lists after a compaction.
    pub fn spawn_watch(&self, repo: Repo) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut from = match repo.store().current_revision().await {
                Ok(r) => r,
                Err(_) => 0,
            };
            loop {
                match repo.store().watch(keys::ACCESS_KEYS, from).await {
                    Ok(mut stream) => {
                        while let Some(ev) = stream.next().await {
                            match ev {
                                Ok(ev) => {
                                    from = ev.kv.mod_revision;
                                    match ev.kind {
                                        EventKind::Put => {
                                            if let Ok(rec) = serde_json::from_slice::<AccessKeyRecord>(
                                                &ev.kv.value,
                                            ) {
                                                cache.apply(&rec);
                                            }
                                        }
                                        EventKind::Delete => {
                                            let id = ev
                                                .kv
                                                .key
                                                .trim_start_matches(keys::ACCESS_KEYS)
                                                .to_string();
                                            if let Ok(mut m) = cache.inner.write() {
                                                m.remove(&id);
                                            }
                                        }
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "access-key watch interrupted; re-listing");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "access-key watch failed; retrying"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Ok(rev) = cache.reload(&repo).await {
                    from = rev;
                }
            }
        })
    }
}
