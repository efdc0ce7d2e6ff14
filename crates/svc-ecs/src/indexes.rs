//! The watch cache's secondary indexes over ECS records (see `berth_store::cache`), so list
//! calls and the service scheduler look at the records they need instead of every task of a
//! cluster: ListTasks stops after one page, a service's reconcile reads only its own tasks.
//!
//! Tasks (`ecs/tasks/<cluster>/<id>`) are indexed by desired status (`RUNNING` or `STOPPED`),
//! alone and together with each of family, group (`service:<name>` for service tasks),
//! container instance and startedBy; and tasks that still hold resources on their instance (not
//! yet STOPPED, whatever their desired status) by instance: what the instance's agent must run
//! or stop, and what its `held` counters add up. Terms are `|`-separated; no ECS name contains
//! `|`, and the cache separates a term from the key it lists, so one term never sees another's
//! keys.

use crate::keys;
use crate::records::TaskRecord;
use berth_store::cache::Entry;
use berth_store::CacheIndex;
use std::sync::Arc;

/// The index over tasks.
pub const TASKS: &str = "tasks";

/// A task's desired status as its index terms spell it: `STOPPED` or `RUNNING` (what ListTasks'
/// `desiredStatus` RUNNING and PENDING both mean).
pub fn desired_bucket(desired_status: &str) -> &'static str {
    if desired_status == "STOPPED" {
        "STOPPED"
    } else {
        "RUNNING"
    }
}

/// Terms of the [`TASKS`] index.
pub mod term {
    /// Tasks of `cluster` by desired status.
    pub fn desired(cluster: &str, desired: &str) -> String {
        format!("{cluster}|{desired}")
    }
    pub fn family(cluster: &str, desired: &str, family: &str) -> String {
        format!("{cluster}|{desired}|f|{family}")
    }
    /// `group` is the task's group (`service:<name>` for a service's tasks).
    pub fn group(cluster: &str, desired: &str, group: &str) -> String {
        format!("{cluster}|{desired}|g|{group}")
    }
    pub fn instance(cluster: &str, desired: &str, instance_id: &str) -> String {
        format!("{cluster}|{desired}|i|{instance_id}")
    }
    pub fn started_by(cluster: &str, desired: &str, started_by: &str) -> String {
        format!("{cluster}|{desired}|b|{started_by}")
    }
    /// Tasks on an instance that are not STOPPED yet (`TaskRecord::hold` is some).
    pub fn live(cluster: &str, instance_id: &str) -> String {
        format!("{cluster}|live|{instance_id}")
    }
}

fn task_terms(e: &Entry) -> Vec<String> {
    // Decoded through the repo's one path, so readers get the same shared record.
    let Ok(t) = berth_service::repo::entry_record::<TaskRecord>(e) else {
        return Vec::new();
    };
    let d = desired_bucket(t.desired_status.as_str());
    let c = &t.cluster;
    let mut terms = vec![
        term::desired(c, d),
        term::family(c, d, &t.family),
        term::group(c, d, &t.group),
        term::instance(c, d, &t.container_instance_id),
    ];
    if let Some(s) = &t.started_by {
        terms.push(term::started_by(c, d, s));
    }
    if t.is_live() {
        terms.push(term::live(c, &t.container_instance_id));
    }
    terms
}

/// Every index the control plane's watch cache keeps.
pub fn all() -> Vec<CacheIndex> {
    vec![CacheIndex {
        name: TASKS,
        prefix: keys::TASKS.to_string(),
        terms: Arc::new(task_terms),
    }]
}
