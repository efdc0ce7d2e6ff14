//! The control-plane replicas this one knows of ([`Replicas`], `Ecs::replicas`) and what each
//! announces ([`ReplicaInfo`]). Announcing and following them is `replicas`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

/// One replica's announcement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInfo {
    pub node: String,
    pub endpoint: String,
    pub started_at: f64,
    pub heartbeat_at: f64,
    pub leader: bool,
    pub version: String,
    /// Container-instance id → epoch seconds this replica last heard from its agent.
    #[serde(default)]
    pub agents: BTreeMap<String, f64>,
}

/// The replicas this one knows of (kept current by `replicas::spawn`).
#[derive(Default)]
pub struct Replicas {
    pub(crate) node: OnceLock<String>,
    view: RwLock<BTreeMap<String, ReplicaInfo>>,
}

impl Replicas {
    /// This replica's node id (`pid@listen`), once `replicas::spawn` ran.
    pub fn node(&self) -> Option<&str> {
        self.node.get().map(String::as_str)
    }

    /// Every replica known, by node id (this one included once it announced itself).
    pub fn list(&self) -> Vec<ReplicaInfo> {
        self.view
            .read()
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn set(&self, info: ReplicaInfo) {
        if let Ok(mut v) = self.view.write() {
            v.insert(info.node.clone(), info);
        }
    }

    pub(crate) fn remove(&self, node: &str) {
        if let Ok(mut v) = self.view.write() {
            v.remove(node);
        }
    }

    pub(crate) fn replace(&self, all: BTreeMap<String, ReplicaInfo>) {
        if let Ok(mut v) = self.view.write() {
            *v = all;
        }
    }
}
