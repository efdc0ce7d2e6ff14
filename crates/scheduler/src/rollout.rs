//! Service deployments (ECS's `ServiceDeployment`): one rollout of a service to a target service
//! revision, as ListServiceDeployments and DescribeServiceDeployments show it.
//!
//! A service has at most one *live* (not yet finished) service deployment. Its status follows the
//! ECS deployment (`ecs-svc/<n>`) that rolls the target revision out:
//!
//! ```text
//! PENDING ─► IN_PROGRESS ─► SUCCESSFUL                       (the target deployment COMPLETED)
//!                 │
//!                 ├─► STOPPED                                (superseded by a newer deployment,
//!                 │                                           the service deleted, or the circuit
//!                 │                                           breaker tripped without rollback)
//!                 ├─► STOP_REQUESTED ─► STOPPED              (StopServiceDeployment ABORT)
//!                 ├─► ROLLBACK_REQUESTED ─► ROLLBACK_IN_PROGRESS ─► ROLLBACK_SUCCESSFUL
//!                 │   (StopServiceDeployment)       ▲         └──► ROLLBACK_FAILED
//!                 └─► (circuit breaker, rollback) ──┘
//! ```
//!
//! A service deleted mid-way stops whatever is live. ECS goes through STOP_REQUESTED on its way
//! to STOPPED when a newer deployment supersedes one; berth's step is immediate, so it is never
//! seen there. The status reasons are berth's words (AWS documents none of its own).
//!
//! The transitions are pure functions of the current state, the service's ECS deployments and
//! `now`; [`crate::reconcile`] applies them in the same step that moves the deployments.

/// ECS's `ServiceDeploymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    InProgress,
    Successful,
    Stopped,
    StopRequested,
    RollbackRequested,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

impl Status {
    /// Finished: nothing moves it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Successful
                | Status::Stopped
                | Status::RollbackSuccessful
                | Status::RollbackFailed
        )
    }
}

/// ECS's `ServiceDeploymentRollbackMonitorsStatus` for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    Disabled,
    Monitoring,
    MonitoringComplete,
    Triggered,
}

/// A rollback in flight or done: to which revision, by which ECS deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub reason: String,
    pub started_at: f64,
    /// The revision rolled back to.
    pub revision: String,
    /// The ECS deployment (`ecs-svc/<n>`) that runs it.
    pub deployment_id: String,
}

/// A service deployment's moving parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDeployment {
    pub status: Status,
    pub status_reason: Option<String>,
    /// The ECS deployment (`ecs-svc/<n>`) that rolls the target revision out.
    pub deployment_id: String,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub updated_at: f64,
    pub rollback: Option<Rollback>,
    pub circuit_breaker: Monitor,
    /// Tasks of the target deployment that failed to start (the circuit breaker's count).
    pub failure_count: u32,
}

/// Why a service deployment ended or turned; ECS's texts.
pub mod reason {
    pub const SUCCESSFUL: &str = "Service deployment completed successfully.";
    pub const SUPERSEDED: &str =
        "Service deployment stopped because a new service deployment started.";
    pub const SERVICE_DELETED: &str = "Service deployment stopped because the service was deleted.";
    pub const CIRCUIT_BREAKER: &str =
        "Service deployment failed because the circuit breaker threshold was exceeded.";
    pub const CIRCUIT_BREAKER_ROLLBACK: &str =
        "Service deployment rolled back because the circuit breaker threshold was exceeded.";
    pub const ROLLBACK_REQUESTED: &str =
        "Service deployment rolled back because of a StopServiceDeployment request.";
    pub const ROLLBACK_SUCCESSFUL: &str = "Service deployment rolled back successfully.";
    pub const ROLLBACK_FAILED: &str = "Service deployment rollback failed.";
    pub const NOTHING_TO_ROLL_BACK_TO: &str =
        "Service deployment rollback failed: there is no previous service revision to roll back to.";
    pub const ABORTED: &str =
        "Service deployment stopped because of a StopServiceDeployment request.";
}

impl ServiceDeployment {
    /// A new service deployment, as CreateService or UpdateService makes it.
    pub fn new(deployment_id: &str, circuit_breaker: bool, now: f64) -> Self {
        ServiceDeployment {
            status: Status::Pending,
            status_reason: None,
            deployment_id: deployment_id.to_string(),
            started_at: None,
            finished_at: None,
            stopped_at: None,
            updated_at: now,
            rollback: None,
            circuit_breaker: if circuit_breaker {
                Monitor::Monitoring
            } else {
                Monitor::Disabled
            },
            failure_count: 0,
        }
    }

    fn finish(&mut self, status: Status, why: &str, now: f64) {
        self.status = status;
        self.status_reason = Some(why.to_string());
        self.updated_at = now;
        if status == Status::Stopped {
            self.stopped_at = Some(now);
        } else {
            self.finished_at = Some(now);
        }
        if self.circuit_breaker == Monitor::Monitoring {
            self.circuit_breaker = Monitor::MonitoringComplete;
        }
    }

    /// A newer deployment of the same service started (UpdateService): this one stops where it is.
    pub fn superseded(mut self, now: f64) -> Self {
        if !self.status.is_final() {
            self.finish(Status::Stopped, reason::SUPERSEDED, now);
        }
        self
    }

    /// Its ECS deployment is no longer the service's primary one.
    pub(crate) fn superseded_in_place(&mut self, now: f64) {
        if !self.status.is_final() {
            self.finish(Status::Stopped, reason::SUPERSEDED, now);
        }
    }

    /// The service was deleted.
    pub fn service_deleted(&mut self, now: f64) {
        if !self.status.is_final() {
            self.finish(Status::Stopped, reason::SERVICE_DELETED, now);
        }
    }

    /// Can StopServiceDeployment act on it?
    pub fn stoppable(&self) -> bool {
        matches!(self.status, Status::Pending | Status::InProgress)
    }

    /// StopServiceDeployment ROLLBACK (the scheduler acts on it in its next step).
    pub fn request_rollback(&mut self, now: f64) {
        self.status = Status::RollbackRequested;
        self.status_reason = Some(reason::ROLLBACK_REQUESTED.to_string());
        self.updated_at = now;
    }

    /// StopServiceDeployment ABORT (the scheduler acts on it in its next step).
    pub fn request_stop(&mut self, now: f64) {
        self.status = Status::StopRequested;
        self.status_reason = Some(reason::ABORTED.to_string());
        self.updated_at = now;
    }

    /// The scheduler has seen it: PENDING becomes IN_PROGRESS.
    pub(crate) fn start(&mut self, now: f64) {
        if self.status == Status::Pending {
            self.status = Status::InProgress;
            self.started_at = Some(now);
            self.updated_at = now;
        }
    }

    /// The circuit breaker counted `failures` failed tasks of the target deployment.
    pub(crate) fn count_failures(&mut self, failures: u32, now: f64) {
        if failures != self.failure_count && !self.status.is_final() {
            self.failure_count = failures;
            self.updated_at = now;
        }
    }

    /// A rollback began: to `revision`, run by `deployment_id`.
    pub(crate) fn rolling_back(
        &mut self,
        why: &str,
        revision: &str,
        deployment_id: &str,
        now: f64,
    ) {
        if self.status.is_final() {
            return;
        }
        self.status = Status::RollbackInProgress;
        self.status_reason = Some(why.to_string());
        self.updated_at = now;
        self.rollback = Some(Rollback {
            reason: why.to_string(),
            started_at: now,
            revision: revision.to_string(),
            deployment_id: deployment_id.to_string(),
        });
    }

    /// The circuit breaker tripped on the target deployment.
    pub(crate) fn tripped(&mut self, now: f64) {
        if self.status.is_final() {
            return;
        }
        self.circuit_breaker = Monitor::Triggered;
        self.updated_at = now;
    }

    /// ECS deployment `id` completed (all its tasks healthy, nothing else left).
    pub(crate) fn completed(&mut self, id: &str, now: f64) {
        match self.status {
            Status::InProgress | Status::Pending if self.deployment_id == id => {
                self.finish(Status::Successful, reason::SUCCESSFUL, now)
            }
            Status::RollbackInProgress
                if self
                    .rollback
                    .as_ref()
                    .is_some_and(|r| r.deployment_id == id) =>
            {
                self.finish(Status::RollbackSuccessful, reason::ROLLBACK_SUCCESSFUL, now)
            }
            _ => {}
        }
    }

    /// ECS deployment `id` failed (the circuit breaker, with no rollback).
    pub(crate) fn failed(&mut self, id: &str, now: f64) {
        match self.status {
            Status::InProgress | Status::Pending if self.deployment_id == id => {
                self.finish(Status::Stopped, reason::CIRCUIT_BREAKER, now)
            }
            Status::RollbackInProgress
                if self
                    .rollback
                    .as_ref()
                    .is_some_and(|r| r.deployment_id == id) =>
            {
                self.finish(Status::RollbackFailed, reason::ROLLBACK_FAILED, now)
            }
            _ => {}
        }
    }

    /// A requested rollback that has nowhere to go.
    pub(crate) fn cannot_roll_back(&mut self, now: f64) {
        self.finish(Status::RollbackFailed, reason::NOTHING_TO_ROLL_BACK_TO, now);
    }

    /// A requested stop (ABORT) took effect: the deployment launches nothing more.
    pub(crate) fn aborted(&mut self, now: f64) {
        self.finish(Status::Stopped, reason::ABORTED, now);
    }
}
