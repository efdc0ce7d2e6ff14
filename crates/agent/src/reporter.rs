//! Delivers task reports to the control plane: in order, retried until acknowledged, a newer
//! report for a task superseding an unsent older one (each report is the task's complete state).
//! Keeps the latest report of every live task so everything can be re-sent after a reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::control::{ControlPlane, TaskStateChange};

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    pending: HashMap<String, TaskStateChange>,
    latest: HashMap<String, TaskStateChange>,
}

/// Handle to the report queue; cheap to clone.
#[derive(Clone, Default)]
pub struct Reporter {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").finish_non_exhaustive()
    }
}

impl Reporter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `change` (replacing an unsent older report of the same task).
    pub fn submit(&self, change: TaskStateChange) {
        {
            let mut s = self.lock();
            let arn = change.task_arn.clone();
            s.latest.insert(arn.clone(), change.clone());
            if s.pending.insert(arn.clone(), change).is_none() {
                s.queue.push_back(arn);
            }
        }
        self.wake.notify_one();
    }

    /// Re-queues the latest report of every task (after a reconnect).
    pub fn resend_all(&self) {
        {
            let mut s = self.lock();
            let all: Vec<TaskStateChange> = s.latest.values().cloned().collect();
            for c in all {
                let arn = c.task_arn.clone();
                if s.pending.insert(arn.clone(), c).is_none() {
                    s.queue.push_back(arn);
                }
            }
        }
        self.wake.notify_one();
    }

    /// Forgets a task (cleaned up).
    pub fn forget(&self, task_arn: &str) {
        self.lock().latest.remove(task_arn);
    }

    /// Number of reports not yet acknowledged.
    pub fn backlog(&self) -> usize {
        self.lock().queue.len()
    }

    /// Sends queued reports forever.
    pub async fn run<C: ControlPlane + ?Sized>(self, control: Arc<C>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let next = {
                let mut s = self.lock();
                s.queue
                    .front()
                    .cloned()
                    .and_then(|arn| s.pending.remove(&arn).map(|c| (arn, c)))
            };
            let Some((arn, change)) = next else {
                self.wake.notified().await;
                continue;
            };
            match control.submit_task_state(&change).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let mut s = self.lock();
                    // A newer report may have arrived while sending: it stays queued.
                    if !s.pending.contains_key(&arn) {
                        s.queue.retain(|a| a != &arn);
                    }
                    tracing::debug!(task = %arn, status = %change.status, "task state reported");
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(task = %arn, error = %e, "task report failed; will retry");
                    {
                        let mut s = self.lock();
                        s.pending.entry(arn.clone()).or_insert(change);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(task = %arn, status = %change.status, error = %e, "control plane rejected the task report; dropped");
                    let mut s = self.lock();
                    if !s.pending.contains_key(&arn) {
                        s.queue.retain(|a| a != &arn);
                    }
                }
            }
        }
    }
}
