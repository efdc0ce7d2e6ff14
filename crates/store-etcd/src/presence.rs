//! [`Presence`]: a store key that exists only while its owner is alive — bound to an etcd lease
//! that the owner renews each time it rewrites the key. The control-plane replicas announce
//! themselves this way (`replicas/<node>`): a replica that dies (kill -9, lost host) disappears
//! from the store one TTL later, without anyone cleaning up after it.

use std::time::Duration;

use etcd_client::PutOptions;
use tokio::sync::Mutex;

use berth_store::StoreError;

use crate::store::{map_err, EtcdStore};

/// A lease-bound key, rewritten by [`Presence::put`]; gone one TTL after the last put (or at
/// once when dropped).
pub struct Presence {
    store: EtcdStore,
    key: String,
    ttl: Duration,
    lease: Mutex<Option<i64>>,
}

impl Presence {
    /// A presence key `key` (a store key: the store's prefix is added) with this TTL (rounded up
    /// to whole seconds). Nothing is written until the first [`Presence::put`].
    pub fn new(store: &EtcdStore, key: &str, ttl: Duration) -> Self {
        Self {
            store: store.clone(),
            key: key.to_owned(),
            ttl,
            lease: Mutex::new(None),
        }
    }

    /// The store key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Renews the lease (granting a new one if it expired) and writes `value`. Call it more often
    /// than the TTL to stay present.
    pub async fn put(&self, value: Vec<u8>) -> Result<(), StoreError> {
        let client = &self.store.inner.client;
        let mut lease = self.lease.lock().await;
        if let Some(id) = *lease {
            match client.lease_client().keep_alive(id).await {
                Ok(_) => {}
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    *lease = None;
                }
                Err(e) => return Err(map_err("renewing a presence lease", e)),
            }
        }
        let id = match *lease {
            Some(id) => id,
            None => {
                let secs = i64::try_from(self.ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(60);
                let grant = client
                    .lease_client()
                    .grant(secs, None)
                    .await
                    .map_err(|e| map_err("granting a presence lease", e))?;
                *lease = Some(grant.id());
                grant.id()
            }
        };
        let put = self
            .store
            .inner
            .kv()
            .put(
                self.store.inner.keys.key(&self.key),
                value,
                Some(PutOptions::new().with_lease(id)),
            )
            .await;
        if let Err(e) = put {
            // The lease may have expired between the renewal and the put: grant anew next time.
            *lease = None;
            return Err(map_err("writing a presence key", e));
        }
        Ok(())
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let Some(id) = self.lease.get_mut().take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut client = self.store.inner.client.clone();
            rt.spawn(async move {
                let _ = client.lease_revoke(id).await;
            });
        }
    }
}
