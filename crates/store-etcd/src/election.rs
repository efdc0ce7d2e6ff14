//! Leader election on an etcd lease: the control plane runs its reconcilers on one replica.
//!
//! A candidate grants a lease (the TTL), keeps it alive, and creates the store key
//! `leader/<name>` bound to the lease with `create_revision == 0` as the compare; while another
//! candidate holds the key it watches for the key's deletion (a resignation, or the holder's lease
//! expiring) and tries again. The winner's **fencing token** is the key's create revision:
//! [`LeaderGuard::fence`] (`Compare::CreateRevision { key: "leader/<name>", revision: token }`)
//! added to the leader's transactions makes them fail once its key is gone (lease expired or
//! revoked, resigned) — and so whenever anyone else has become leader, since a new leader's key
//! is a new incarnation with a larger create revision. A commit already in flight when the lease
//! expires is evaluated by etcd against the key as it is then, so a deposed leader cannot land a
//! write, however late it arrives.
//!
//! Stop acting before another can start: the guard tracks the lease's expiry on its own clock —
//! each renewal is answered by etcd after it was sent, so `send time + TTL` is never later than
//! etcd's expiry — and reports leadership lost a margin (TTL/10) *before* that deadline unless a
//! renewal succeeded. etcd only lets another candidate win once the lease has expired there.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;

use berth_store::{Compare, Revision, StoreError};

use crate::store::{map_err, EtcdStore};

/// Errors from [`LeaderElection`].
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The election name is empty.
    #[error("invalid election name {0:?}")]
    InvalidName(String),
    /// The lease expired while campaigning (etcd unreachable for longer than the TTL).
    #[error("the campaign's lease expired before it won")]
    LeaseLost,
    /// etcd failed or is unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Campaigns and leader look-ups for the elections of one store (same etcd, same prefix).
#[derive(Clone)]
pub struct LeaderElection {
    store: EtcdStore,
}

impl LeaderElection {
    /// Elections among the replicas sharing this store.
    pub fn new(store: &EtcdStore) -> Self {
        Self {
            store: store.clone(),
        }
    }

    /// The store key of election `name` (`leader/<name>`); its value is the leader's node id.
    pub fn key(name: &str) -> String {
        format!("leader/{name}")
    }

    fn etcd_key(&self, name: &str) -> Result<Vec<u8>, ElectionError> {
        if name.is_empty() {
            return Err(ElectionError::InvalidName(name.to_owned()));
        }
        Ok(self.store.inner.keys.key(&Self::key(name)))
    }

    /// The node id of the current leader of `name`, if any.
    pub async fn current_leader(&self, name: &str) -> Result<Option<String>, ElectionError> {
        let key = self.etcd_key(name)?;
        let resp = self
            .store
            .inner
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(|e| map_err("reading the leader", e))?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Wait until this node leads `name`, then return the guard. `lease_ttl` is rounded up to
    /// whole seconds (etcd may raise it to its minimum, about 2 s with default settings).
    ///
    /// Dropping the future gives up the candidacy (the lease is revoked).
    pub async fn campaign(
        &self,
        name: &str,
        node_id: &str,
        lease_ttl: Duration,
    ) -> Result<LeaderGuard, ElectionError> {
        let key = self.etcd_key(name)?;
        let client = self.store.inner.client.clone();
        let ttl_secs = i64::try_from(lease_ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(60);
        let asked = Instant::now();
        let grant = client
            .lease_client()
            .grant(ttl_secs, None)
            .await
            .map_err(|e| map_err("granting a lease", e))?;
        let ttl = Duration::from_secs(u64::try_from(grant.ttl().max(1)).unwrap_or(1));
        let lease = Lease::start(client.clone(), grant.id(), ttl, asked + ttl, key.clone());
        tracing::debug!(
            election = name,
            node = node_id,
            lease = grant.id(),
            ?ttl,
            "campaigning"
        );

        let mut alive = lease.alive.subscribe();
        loop {
            if !*alive.borrow() {
                return Err(ElectionError::LeaseLost);
            }
            let resp = client
                .kv_client()
                .txn(
                    EtcdTxn::new()
                        .when(vec![EtcdCompare::create_revision(
                            key.clone(),
                            CompareOp::Equal,
                            0,
                        )])
                        .and_then(vec![TxnOp::put(
                            key.clone(),
                            node_id.as_bytes().to_vec(),
                            Some(PutOptions::new().with_lease(lease.id)),
                        )])
                        .or_else(vec![TxnOp::get(key.clone(), None)]),
                )
                .await
                .map_err(|e| map_err("campaigning", e))?;
            let revision = resp.header().map_or(0, |h| h.revision());
            if resp.succeeded() {
                lease.fence(revision);
                tracing::info!(
                    election = name,
                    node = node_id,
                    token = revision,
                    "elected leader"
                );
                return Ok(LeaderGuard {
                    name: name.to_owned(),
                    key: Self::key(name),
                    token: revision,
                    alive: lease.alive.subscribe(),
                    lease,
                });
            }
            let holder = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            });
            tracing::debug!(election = name, leader = ?holder, "waiting for the leader to go");
            // Wait for the key's deletion (or give the txn another go after a TTL, or when the
            // watch breaks: the txn is the source of truth).
            let wait = async {
                let Ok(mut w) = client
                    .watch_client()
                    .watch(
                        key.clone(),
                        Some(WatchOptions::new().with_start_revision(revision + 1)),
                    )
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                };
                loop {
                    match w.message().await {
                        Ok(Some(r)) => {
                            if r.canceled()
                                || r.events()
                                    .iter()
                                    .any(|e| e.event_type() == EventType::Delete)
                            {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep(ttl) => {}
                _ = alive.changed() => {}
            }
        }
    }
}

/// Leadership of one election, held while the lease is kept alive. Dropping it gives up the
/// lease (another candidate wins at once); [`LeaderGuard::resign`] does so and waits for it.
pub struct LeaderGuard {
    name: String,
    key: String,
    token: Revision,
    alive: watch::Receiver<bool>,
    lease: Lease,
}

impl LeaderGuard {
    /// True until the lease is lost (or the guard resigned). Once false, it stays false.
    pub fn is_leader(&self) -> bool {
        *self.alive.borrow()
    }

    /// A receiver that flips to `false` when leadership is lost — before another node can win.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// The fencing token: the create revision of the leader key.
    pub fn fencing_token(&self) -> Revision {
        self.token
    }

    /// The compare that fences a leader's transaction: it fails once leadership passed on.
    pub fn fence(&self) -> Compare {
        Compare::CreateRevision {
            key: self.key.clone(),
            revision: self.token,
        }
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The etcd lease id behind this leadership.
    pub fn lease_id(&self) -> i64 {
        self.lease.id
    }

    /// Step down: stop acting, delete the leader key (if still ours) and revoke the lease.
    pub async fn resign(mut self) -> Result<(), ElectionError> {
        self.lease.alive.send_replace(false);
        self.lease.control.send_replace(Control::Stop);
        let client = self.lease.client.clone();
        let key = self.lease.key.clone();
        client
            .kv_client()
            .txn(
                EtcdTxn::new()
                    .when(vec![EtcdCompare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        self.token,
                    )])
                    .and_then(vec![TxnOp::delete(key, None)]),
            )
            .await
            .map_err(|e| map_err("resigning", e))?;
        client
            .lease_client()
            .revoke(self.lease.id)
            .await
            .map_err(|e| map_err("revoking the lease", e))?;
        self.lease.revoked = true;
        tracing::info!(election = %self.name, token = self.token, "resigned leadership");
        Ok(())
    }

    /// Test hook: stop renewing the lease as a hung process would (the guard still reports the
    /// loss on time, and the lease is not revoked).
    #[doc(hidden)]
    pub fn pause_keepalive(&mut self) {
        self.lease.control.send_replace(Control::Pause);
        self.lease.revoked = true;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Run,
    /// Test hook: keep tracking the deadline but send no renewals.
    Pause,
    Stop,
}

/// A lease kept alive by a background task, revoked on drop.
struct Lease {
    client: Client,
    id: i64,
    key: Vec<u8>,
    alive: Arc<watch::Sender<bool>>,
    control: watch::Sender<Control>,
    fence: watch::Sender<Revision>,
    revoked: bool,
}

impl Lease {
    fn start(client: Client, id: i64, ttl: Duration, deadline: Instant, key: Vec<u8>) -> Self {
        let alive = Arc::new(watch::channel(true).0);
        let (control, control_rx) = watch::channel(Control::Run);
        let (fence, fence_rx) = watch::channel(0);
        let task = KeepAlive {
            client: client.clone(),
            id,
            ttl,
            deadline,
            key: key.clone(),
            alive: alive.clone(),
            control: control_rx,
            fence: fence_rx,
            keeper: None,
        };
        tokio::spawn(task.run());
        Self {
            client,
            id,
            key,
            alive,
            control,
            fence,
            revoked: false,
        }
    }

    /// From now on the task also checks that the leader key is still ours.
    fn fence(&self, token: Revision) {
        self.fence.send_replace(token);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.alive.send_replace(false);
        self.control.send_replace(Control::Stop);
        if self.revoked {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut client = self.client.clone();
            let id = self.id;
            rt.spawn(async move {
                if let Err(e) = client.lease_revoke(id).await {
                    tracing::debug!(lease = id, error = %e, "revoking a dropped lease failed");
                }
            });
        }
    }
}

struct KeepAlive {
    client: Client,
    id: i64,
    ttl: Duration,
    /// Local lower bound of etcd's expiry of the lease.
    deadline: Instant,
    key: Vec<u8>,
    alive: Arc<watch::Sender<bool>>,
    control: watch::Receiver<Control>,
    fence: watch::Receiver<Revision>,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

enum Renewal {
    /// Renewed: etcd's expiry is at least `sent + ttl`.
    Renewed { sent: Instant, ttl: Duration },
    /// etcd says the lease is gone.
    Expired,
}

impl KeepAlive {
    fn lost(&self, why: &str) {
        if self.alive.send_replace(false) {
            tracing::warn!(lease = self.id, reason = why, "leadership lost");
        }
    }

    async fn run(mut self) {
        let margin = (self.ttl / 10).max(Duration::from_millis(50));
        let interval = self.ttl / 3;
        loop {
            let control = *self.control.borrow();
            match control {
                Control::Stop => return,
                Control::Pause => {}
                Control::Run => {
                    let until = self.deadline.checked_sub(margin).unwrap_or(self.deadline);
                    match tokio::time::timeout_at(until, self.renew()).await {
                        Ok(Ok(Renewal::Renewed { sent, ttl })) => self.deadline = sent + ttl,
                        Ok(Ok(Renewal::Expired)) => return self.lost("the lease expired"),
                        Ok(Err(e)) => {
                            self.keeper = None;
                            tracing::warn!(lease = self.id, error = %e, "lease renewal failed");
                        }
                        Err(_) => {}
                    }
                    let token = *self.fence.borrow();
                    if token > 0 && !self.key_is_ours(token, until).await {
                        return self.lost("the leader key is gone");
                    }
                }
            }
            let until = self.deadline.checked_sub(margin).unwrap_or(self.deadline);
            if Instant::now() >= until {
                return self.lost("the lease could not be renewed in time");
            }
            let wake = (Instant::now() + interval).min(until);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                r = self.control.changed() => if r.is_err() { return },
            }
        }
    }

    async fn renew(&mut self) -> Result<Renewal, etcd_client::Error> {
        let sent = Instant::now();
        let Some((keeper, stream)) = self.keeper.as_mut() else {
            // Opening the keep-alive stream renews once (and fails if the lease is gone).
            return match self.client.lease_client().keep_alive(self.id).await {
                Ok(k) => {
                    self.keeper = Some(k);
                    Ok(Renewal::Renewed {
                        sent,
                        ttl: self.ttl,
                    })
                }
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    Ok(Renewal::Expired)
                }
                Err(e) => Err(e),
            };
        };
        keeper.keep_alive().await?;
        match stream.message().await? {
            Some(r) if r.ttl() > 0 => Ok(Renewal::Renewed {
                sent,
                ttl: Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0)),
            }),
            Some(_) => Ok(Renewal::Expired),
            None => Err(etcd_client::Error::LeaseKeepAliveError(
                "keep-alive stream closed".into(),
            )),
        }
    }

    /// Is the leader key still the one created at `token`? (Unknown = yes until the deadline.)
    async fn key_is_ours(&self, token: Revision, until: Instant) -> bool {
        let mut kv = self.client.kv_client();
        let get = kv.get(self.key.clone(), Some(GetOptions::new().with_keys_only()));
        match tokio::time::timeout_at(until, get).await {
            Ok(Ok(resp)) => resp
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == token),
            _ => true,
        }
    }
}
