//! The task manager: one [`TaskActor`] per task, created from the desired state; routes engine
//! events to their task; adopts the agent's own containers after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_agent_api::DesiredTask;
use berth_runtime::{
    ContainerId, ContainerRuntime, ContainerSummary, LabelFilter, ListOptions, RemoveOptions,
    RuntimeEvent,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::spec::{LABEL_CLUSTER, LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN};
use crate::task::{TaskActor, TaskContext, TaskMsg};

struct Handle {
    tx: mpsc::Sender<TaskMsg>,
    join: JoinHandle<()>,
}

/// Owns the task actors of this instance.
pub struct TaskManager<R: ContainerRuntime> {
    runtime: Arc<R>,
    ctx: Arc<TaskContext>,
    tasks: HashMap<String, Handle>,
    /// Tasks already cleaned up (ignored if the control plane still lists them).
    cleaned: HashSet<String>,
    /// Containers found at start, by task ARN, waiting for the first desired state.
    adopted: Option<HashMap<String, Vec<ContainerSummary>>>,
    done_tx: mpsc::Sender<String>,
    done_rx: mpsc::Receiver<String>,
}

impl<R: ContainerRuntime> TaskManager<R> {
    /// A manager with no tasks.
    pub fn new(runtime: Arc<R>, ctx: Arc<TaskContext>) -> Self {
        let (done_tx, done_rx) = mpsc::channel(64);
        Self {
            runtime,
            ctx,
            tasks: HashMap::new(),
            cleaned: HashSet::new(),
            adopted: None,
            done_tx,
            done_rx,
        }
    }

    fn own_filter(&self) -> LabelFilter {
        LabelFilter::any()
            .with(LABEL_CLUSTER, self.ctx.config.cluster.clone())
            .with(LABEL_INSTANCE, self.ctx.instance_arn.clone())
    }

    /// Lists this instance's containers in the engine (for adoption on restart).
    pub async fn discover(&mut self) -> Result<usize, berth_runtime::RuntimeError> {
        let list = self
            .runtime
            .list_containers(&ListOptions {
                filter: self.own_filter(),
                include_stopped: true,
            })
            .await?;
        let n = list.len();
        let mut by_task: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
        for c in list {
            if let Some(arn) = c.labels.get(LABEL_TASK_ARN).cloned() {
                by_task.entry(arn).or_default().push(c);
            }
        }
        tracing::info!(
            containers = n,
            tasks = by_task.len(),
            "found existing containers to adopt"
        );
        self.adopted = Some(by_task);
        Ok(n)
    }

    /// Runs until `desired_rx` closes or `shutdown` resolves. Actors are then aborted, leaving
    /// containers as they are (like the ECS agent on shutdown).
    pub async fn run(
        mut self,
        mut desired_rx: mpsc::Receiver<Vec<DesiredTask>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut events = self.runtime.events(self.own_filter());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                d = desired_rx.recv() => match d {
                    Some(tasks) => self.apply(tasks).await,
                    None => break,
                },
                ev = events.next() => match ev {
                    Some(RuntimeEvent::Container(ev)) => {
                        let target = ev.labels.get(LABEL_TASK_ARN).cloned();
                        match target.and_then(|arn| self.tasks.get(&arn)) {
                            Some(h) => {
                                let _ = h.tx.send(TaskMsg::Event(ev)).await;
                            }
                            None => {
                                for h in self.tasks.values() {
                                    let _ = h.tx.send(TaskMsg::Event(ev.clone())).await;
                                }
                            }
                        }
                    }
                    Some(RuntimeEvent::Reconnected) => {
                        tracing::info!("container engine events reconnected; re-inspecting");
                        for h in self.tasks.values() {
                            let _ = h.tx.send(TaskMsg::Resync).await;
                        }
                    }
                    Some(RuntimeEvent::Disconnected { error }) => {
                        tracing::warn!(%error, "container engine events disconnected");
                    }
                    None => {
                        tracing::warn!("container engine event stream ended");
                        events = Box::pin(futures::stream::pending());
                    }
                },
                Some(arn) = self.done_rx.recv() => {
                    self.tasks.remove(&arn);
                    self.cleaned.insert(arn);
                }
            }
        }
        for (_, h) in self.tasks.drain() {
            h.join.abort();
        }
    }

    /// Applies a complete desired state.
    pub async fn apply(&mut self, desired: Vec<DesiredTask>) {
        let listed: HashSet<String> = desired.iter().map(|t| t.task_arn.clone()).collect();
        for task in desired {
            if self.cleaned.contains(&task.task_arn) {
                continue;
            }
            if let Some(h) = self.tasks.get(&task.task_arn) {
                if !h.join.is_finished() {
                    let _ = h.tx.send(TaskMsg::Desired(Box::new(task))).await;
                    continue;
                }
            }
            let adopted: Vec<(String, ContainerId)> = self
                .adopted
                .as_mut()
                .and_then(|m| m.remove(&task.task_arn))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| Some((c.labels.get(LABEL_CONTAINER_NAME)?.clone(), c.id)))
                .collect();
            if !adopted.is_empty() {
                tracing::info!(task = %task.task_arn, containers = adopted.len(), "adopting task");
            } else {
                tracing::info!(task = %task.task_arn, desired = %task.desired_status, "new task");
            }
            let (tx, rx) = mpsc::channel(256);
            let arn = task.task_arn.clone();
            let actor = TaskActor::new(self.runtime.clone(), self.ctx.clone(), task, adopted);
            let join = tokio::spawn(actor.run(rx, self.done_tx.clone()));
            self.tasks.insert(arn, Handle { tx, join });
        }
        // Tasks the control plane no longer lists: stop them.
        for (arn, h) in &self.tasks {
            if !listed.contains(arn) {
                let _ = h.tx.send(TaskMsg::Forgotten).await;
            }
        }
        self.cleaned.retain(|arn| listed.contains(arn));
        // Adopted containers of tasks nobody wants: stop and remove them (in the background,
        // so a slow stop does not hold up the other tasks).
        if let Some(orphans) = self.adopted.take() {
            for (arn, containers) in orphans {
                tracing::warn!(task = %arn, containers = containers.len(), "removing containers of a task the control plane does not know");
                let runtime = self.runtime.clone();
                let timeout = self.ctx.config.container_stop_timeout;
                tokio::spawn(async move {
                    for c in containers {
                        let _ = runtime.stop_container(&c.id, timeout).await;
                        let _ = runtime
                            .remove_container(
                                &c.id,
                                RemoveOptions {
                                    force: true,
                                    remove_volumes: true,
                                },
                            )
                            .await;
                    }
                });
            }
        }
    }
}
