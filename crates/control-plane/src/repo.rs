//! Typed access to the state store: JSON-encoded storage records under well-known keys, and the
//! optimistic-concurrency pattern (read with revision → compute → commit with compare → retry).

use crate::error::ApiError;
use berth_store::{KeyValue, RangeRequest, Revision, StateStore, Txn, TxnOutcome};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// How many times a read-modify-write is retried on a conflicting concurrent write.
pub const MAX_ATTEMPTS: usize = 64;

/// The key layout. Every key of the ECS API lives under `ecs/`; names never contain `/`.
pub mod keys {
    pub const CLUSTERS: &str = "ecs/clusters/";
    pub fn cluster(name: &str) -> String {
        format!("{CLUSTERS}{name}")
    }
    pub fn family(family: &str) -> String {
        format!("ecs/families/{family}")
    }
    pub const TASK_DEFINITIONS: &str = "ecs/taskdefs/";
    pub fn task_definitions_of(family: &str) -> String {
        format!("{TASK_DEFINITIONS}{family}/")
    }
    pub fn task_definition(family: &str, revision: u32) -> String {
        format!("{TASK_DEFINITIONS}{family}/{revision:010}")
    }
    pub fn instances_in(cluster: &str) -> String {
        format!("ecs/instances/{cluster}/")
    }
    pub fn instance(cluster: &str, id: &str) -> String {
        format!("ecs/instances/{cluster}/{id}")
    }
    pub const INSTANCES: &str = "ecs/instances/";
    pub fn task(cluster: &str, id: &str) -> String {
        format!("ecs/tasks/{cluster}/{id}")
    }
    pub fn client_token(cluster: &str, token: &str) -> String {
        format!("ecs/client-tokens/{cluster}/{}", hex::encode(token))
    }
    pub fn tasks_in(cluster: &str) -> String {
        format!("ecs/tasks/{cluster}/")
    }
    pub fn services_in(cluster: &str) -> String {
        format!("ecs/services/{cluster}/")
    }
    pub const SERVICES: &str = "ecs/services/";
    pub fn service(cluster: &str, name: &str) -> String {
        format!("ecs/services/{cluster}/{name}")
    }
    pub const SETTINGS: &str = "ecs/settings/";
    pub fn setting(principal: &str, name: &str) -> String {
        format!("{SETTINGS}{principal}|{name}")
    }
    pub const ACCESS_KEYS: &str = "auth/keys/";
    pub fn access_key(id: &str) -> String {
        format!("{ACCESS_KEYS}{id}")
    }
}

/// A decoded record with the key and revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub key: String,
    pub value: T,
    pub revision: Revision,
}

#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn StateStore>,
}

pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings/numbers/vectors: serialization cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(kv: KeyValue) -> Result<Versioned<T>, ApiError> {
    match serde_json::from_slice(&kv.value) {
        Ok(value) => Ok(Versioned {
            key: kv.key,
            value,
            revision: kv.mod_revision,
        }),
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "undecodable storage record");
            Err(ApiError::server(format!("corrupt record at {}", kv.key)))
        }
    }
}

impl Repo {
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, ApiError> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some(decode(kv)?)),
            None => Ok(None),
        }
    }

    /// Every record under `prefix`, in key order.
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, ApiError> {
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                ..Default::default()
            })
            .await?;
        r.kvs.into_iter().map(decode).collect()
    }

    /// The number of keys under `prefix` (at most `limit`, if given).
    pub async fn count(&self, prefix: &str, limit: Option<usize>) -> Result<usize, ApiError> {
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                start_after: None,
                limit,
            })
            .await?;
        Ok(r.kvs.len())
    }

    /// Commits `txn`; `Ok(None)` when a compare failed (someone else wrote first: re-read, retry).
    /// Inside leader-only work (`leader::as_leader`) the leader's fence is added first, and a
    /// commit that fails on it is `Err(leader::deposed())`.
    pub async fn commit(&self, txn: Txn) -> Result<Option<Revision>, ApiError> {
        let (txn, fenced) = crate::leader::fence_txn(txn);
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => Ok(Some(revision)),
            TxnOutcome::CompareFailed { index: 0 } if fenced => {
                tracing::warn!("leader-only commit rejected: this replica was deposed");
                Err(crate::leader::deposed())
            }
            TxnOutcome::CompareFailed { .. } => Ok(None),
        }
    }
}

/// The error a request gets when [`MAX_ATTEMPTS`] optimistic retries all lost to concurrent writers.
pub fn contention() -> ApiError {
    ApiError::server("Too many concurrent updates to the same resource. Please retry the request.")
}
