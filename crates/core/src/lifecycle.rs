//! The ordered task lifecycle. States only move forward (SwarmKit's rule, ECS's documented order):
//! PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED
//! → DELETED. A report that would move a task backwards is rejected by the caller.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
    Deleted,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        Self::Provisioning,
        Self::Pending,
        Self::Activating,
        Self::Running,
        Self::Deactivating,
        Self::Stopping,
        Self::Deprovisioning,
        Self::Stopped,
        Self::Deleted,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
            Self::Deleted => "DELETED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
    /// True when moving from `self` to `next` is allowed (forward or equal).
    pub fn can_become(self, next: TaskStatus) -> bool {
        next >= self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ordered_and_roundtrip() {
        for w in TaskStatus::ALL.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].can_become(w[1]));
            assert!(!w[1].can_become(w[0]));
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
    }
}
