//! What a placement call decided and why: placements, RunTask `failures[]`, the per-request
//! metric (Nomad AllocMetric style) and the renderings of it.

use std::fmt::Write as _;

use crate::filters::{FilterStage, StageCounts};

/// One task placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index of the instance in the snapshot.
    pub instance_index: usize,
    /// Its ARN.
    pub instance_arn: String,
}

/// A RunTask/StartTask `failures[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `arn`: the closest matching container instance (or the requested one for StartTask).
    pub arn: Option<String>,
    /// `reason`, e.g. `RESOURCE:MEMORY`.
    pub reason: String,
    /// `detail`; ECS leaves it empty for placement failures.
    pub detail: Option<String>,
}

/// The instance that came closest to taking a task that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosestMatch {
    /// Snapshot index.
    pub instance_index: usize,
    /// ARN.
    pub instance_arn: String,
    /// Container instance ID (last ARN segment).
    pub instance_id: String,
    /// The stage that rejected it: the exhausted dimension.
    pub stage: FilterStage,
}

/// One successful placement step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRecord {
    /// Snapshot index of the chosen instance.
    pub chosen: usize,
    /// Instances that passed every filter at this step.
    pub candidates: u32,
    scores: [i64; crate::strategy::MAX_KEYS],
    n_scores: u8,
}

impl StepRecord {
    pub(crate) fn new(
        chosen: usize,
        candidates: u32,
        scores: [i64; crate::strategy::MAX_KEYS],
        n_scores: usize,
    ) -> Self {
        Self {
            chosen,
            candidates,
            scores,
            n_scores: n_scores as u8,
        }
    }

    /// The chosen instance's key per strategy (same order as [`PlacementMetric::strategies`];
    /// lower was better), then the seeded tie-breaker.
    pub fn scores(&self) -> &[i64] {
        &self.scores[..usize::from(self.n_scores).min(self.scores.len())]
    }
}

/// The per-request placement metric.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementMetric {
    /// Instances whose filters were evaluated: the snapshot's size for the exhaustive walk (every
    /// instance, every step); for the ordered walk, the visits summed over the steps (plus every
    /// instance once when something could not be placed).
    pub instances_evaluated: usize,
    /// Labels of the strategies in effect, in order.
    pub strategies: Vec<String>,
    /// Rejections per filter stage before the first task was placed (ordered walk: among the
    /// instances it visited for the first task; every instance when that task did not fit).
    pub initial_rejections: StageCounts,
    /// Rejections per filter stage when the first unplaceable task was tried (or after the last
    /// placement when all were placed; ordered walk: among the instances visited for the last).
    pub final_rejections: StageCounts,
    /// One record per placed task.
    pub steps: Vec<StepRecord>,
    /// Set when at least one task could not be placed.
    pub closest: Option<ClosestMatch>,
    /// Tasks that could not be placed.
    pub unplaced: u32,
}

impl PlacementMetric {
    /// The dimension that ran out (the stage rejecting the closest match), if anything failed.
    pub fn exhausted_dimension(&self) -> Option<FilterStage> {
        self.closest.as_ref().map(|c| c.stage)
    }

    /// The service event text for a failed placement, without the `service <name>` prefix:
    /// `was unable to place a task because no container instance met all of its requirements.
    /// The closest matching container-instance {id} has insufficient memory available. For more
    /// information, see the Troubleshooting section of the Amazon ECS Developer Guide.`
    pub fn service_event_message(&self) -> Option<String> {
        let c = self.closest.as_ref()?;
        Some(format!(
            "was unable to place a task because no container instance met all of its requirements. \
             The closest matching container-instance {} {} For more information, see the Troubleshooting \
             section of the Amazon ECS Developer Guide.",
            c.instance_id,
            c.stage.service_event_clause()
        ))
    }

    /// A multi-line human summary (for logs and an explain command).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "evaluated {} instances; placed {}; unplaced {}; strategies [{}]",
            self.instances_evaluated,
            self.steps.len(),
            self.unplaced,
            self.strategies.join(", ")
        );
        for (stage, n) in self.initial_rejections.nonzero() {
            let _ = writeln!(
                s,
                "  rejected by {} ({}): {n}",
                stage.name(),
                stage.reason()
            );
        }
        if let Some(c) = &self.closest {
            let _ = writeln!(
                s,
                "  closest match {} rejected by {} ({})",
                c.instance_id,
                c.stage.name(),
                c.stage.reason()
            );
        }
        s
    }
}

/// The result of a placement call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementOutcome {
    /// Tasks placed, in order.
    pub placements: Vec<Placement>,
    /// One `failures[]` entry per task that could not be placed.
    pub failures: Vec<Failure>,
    /// Why.
    pub metric: PlacementMetric,
}

impl PlacementOutcome {
    /// See [`PlacementMetric::service_event_message`].
    pub fn service_event_message(&self) -> Option<String> {
        self.metric.service_event_message()
    }
}

/// Whether one instance would take the task, stage by stage (for a dry-run/explain command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceExplanation {
    /// The instance ARN.
    pub instance_arn: String,
    /// Whether every stage passed.
    pub fits: bool,
    /// Per stage: verdict and detail.
    pub checks: Vec<StageCheck>,
}

/// One stage's verdict for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageCheck {
    /// The stage.
    pub stage: FilterStage,
    /// Whether it passed.
    pub passed: bool,
    /// What was compared.
    pub detail: String,
}

impl InstanceExplanation {
    /// The first failing stage, if any.
    pub fn first_failure(&self) -> Option<FilterStage> {
        self.checks.iter().find(|c| !c.passed).map(|c| c.stage)
    }

    /// One line per stage: `ok|FAIL stage: detail`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {}\n",
            self.instance_arn,
            if self.fits { "fits" } else { "does not fit" }
        );
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  {} {}: {}{}",
                if c.passed { "ok  " } else { "FAIL" },
                c.stage.name(),
                c.detail,
                if c.passed {
                    String::new()
                } else {
                    format!(" [{}]", c.stage.reason())
                }
            );
        }
        s
    }
}
