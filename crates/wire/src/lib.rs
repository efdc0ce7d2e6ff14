//! berth-wire: the wire types of the AWS services berth speaks, generated from botocore's service
//! models by `scripts/codegen.py`, one module per service, named for it (`ecs`, `logs`, `ecr`),
//! plus the tiny runtime they need. Each service crate (`svc-ecs`, `svc-logs`, `svc-ecr`) uses its
//! own module.
//!
//! API boundary: these are exactly the JSON shapes on the wire (awsJson1_1). No logic lives here;
//! validation beyond "required members present" belongs to the service crates, which convert wire
//! types into their records and domain types.

pub mod ecr;
pub mod ecs;
pub mod events;
pub mod logs;
pub mod scheduler;

/// A JSON path like `containerDefinitions[0].portMappings[1]`, built while validating.
#[derive(Debug, Default, Clone)]
pub struct Path {
    parts: Vec<String>,
}

impl Path {
    pub fn push(&mut self, member: &str) {
        self.parts.push(member.to_string());
    }
    pub fn push_index(&mut self, member: &str, i: usize) {
        self.parts.push(format!("{member}[{i}]"));
    }
    pub fn pop(&mut self) {
        self.parts.pop();
    }
    pub fn join(&self, member: &str) -> String {
        if self.parts.is_empty() {
            member.to_string()
        } else {
            format!("{}.{member}", self.parts.join("."))
        }
    }
}

/// A structural problem with a request: a required member is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The full member path, e.g. `containerDefinitions[0].name`.
    pub member: String,
}

impl ValidationError {
    pub fn missing(path: &Path, member: &str) -> Self {
        Self {
            member: path.join(member),
        }
    }
}

/// Checks the model's `required` members, recursively.
pub trait Validate {
    fn validate_at(&self, path: &mut Path) -> Result<(), ValidationError>;
    fn validate(&self) -> Result<(), ValidationError> {
        self.validate_at(&mut Path::default())
    }
}

pub mod de {
    //! Serde helpers used by the generated code.
    use serde::{Deserialize, Deserializer};

    /// AWS treats an explicit JSON `null` like an absent member.
    pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Default + Deserialize<'de>,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }
}
