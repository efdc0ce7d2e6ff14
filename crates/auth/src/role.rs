//! Roles and the tables that say which operations each role may call.

use std::fmt;
use std::str::FromStr;

use crate::AuthError;

/// What an access key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Only what a container agent on an instance needs (see [`AGENT_OPERATIONS`]).
    Agent,
    /// Only reads: `Describe*`, `List*`, `Get*`, `BatchGet*` (minus [`READONLY_DENIED`]).
    ReadOnly,
}

impl Role {
    /// The string form: `admin`, `agent` or `readonly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::ReadOnly => "readonly",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `admin`, `agent` or `readonly`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}': expected admin, agent or readonly")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Parses `admin`, `agent`, `readonly` (ASCII case-insensitive; `read-only` and
    /// `read_only` are accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("admin") {
            Ok(Role::Admin)
        } else if t.eq_ignore_ascii_case("agent") {
            Ok(Role::Agent)
        } else if ["readonly", "read-only", "read_only"]
            .iter()
            .any(|r| t.eq_ignore_ascii_case(r))
        {
            Ok(Role::ReadOnly)
        } else {
            Err(ParseRoleError(s.to_owned()))
        }
    }
}

/// Wildcard operation in the tables: every operation of the service.
pub const ANY_OPERATION: &str = "*";

/// IAM service prefix of berth's own agent channel (not an AWS service).
pub const BERTH_AGENT_SERVICE: &str = "berth";

/// `X-Amz-Target` prefixes (the part before the `.`) and the IAM service prefix each one
/// belongs to. [`service_prefix`] maps through it; add a row for each new service.
pub const TARGET_PREFIXES: &[(&str, &str)] = &[
    ("AmazonEC2ContainerServiceV20141113", "ecs"),
    ("AmazonEC2ContainerRegistry_V20150921", "ecr"),
    ("Logs_20140328", "logs"),
    ("AWSEvents", "events"),
    ("secretsmanager", "secretsmanager"),
    ("AmazonSSM", "ssm"),
    ("AWSKMS", "kms"),
    ("AWSSecurityTokenServiceV20110615", "sts"),
    ("DynamoDB_20120810", "dynamodb"),
    // berth's agent channel (long-poll of desired state): the `agent` role's `berth:*`.
    ("BerthAgent_20261122", "berth"),
];

/// Operations the `agent` role may call, as (IAM service prefix, operation). Based on what
/// the Amazon ECS container agent calls (its `ECSClient` / `ECSSDK` interfaces) and on AWS's
/// managed policy for instances, `AmazonEC2ContainerServiceforEC2Role`, plus what the
/// agent needs to run tasks: image pulls, `awslogs`, and secrets injection.
pub const AGENT_OPERATIONS: &[(&str, &str)] = &[
    // ECS: instance registration and state reporting.
    ("ecs", "RegisterContainerInstance"),
    ("ecs", "DeregisterContainerInstance"),
    ("ecs", "DiscoverPollEndpoint"),
    ("ecs", "Poll"),
    ("ecs", "StartTelemetrySession"),
    ("ecs", "SubmitTaskStateChange"),
    ("ecs", "SubmitContainerStateChange"),
    ("ecs", "SubmitAttachmentStateChanges"),
    ("ecs", "UpdateContainerInstancesState"),
    // The agent creates the `default` cluster when it is missing (in AWS's managed policy).
    ("ecs", "CreateCluster"),
    // Instance/task tags (agent's GetResourceTags).
    ("ecs", "ListTagsForResource"),
    // The agent proxies the task-protection endpoint for its tasks.
    ("ecs", "GetTaskProtection"),
    ("ecs", "UpdateTaskProtection"),
    // berth's own agent channel.
    (BERTH_AGENT_SERVICE, ANY_OPERATION),
    // ECR pulls.
    ("ecr", "GetAuthorizationToken"),
    ("ecr", "BatchCheckLayerAvailability"),
    ("ecr", "BatchGetImage"),
    ("ecr", "GetDownloadUrlForLayer"),
    // awslogs log driver.
    ("logs", "CreateLogGroup"),
    ("logs", "CreateLogStream"),
    ("logs", "PutLogEvents"),
    // Secrets and parameters injected into containers.
    ("secretsmanager", "GetSecretValue"),
    ("ssm", "GetParameters"),
    // Task environment files (`environmentFiles`) from S3.
    ("s3", "GetObject"),
    ("s3", "GetBucketLocation"),
];

/// Operation-name prefixes the `readonly` role may call on any service.
pub const READONLY_PREFIXES: &[&str] = &["Describe", "List", "Get", "BatchGet"];

/// Read operations whose names don't start with a read prefix, allowed to `readonly` too (as
/// AWS's `CloudWatchLogsReadOnlyAccess` allows them), as (IAM service prefix, operation).
pub const READONLY_EXTRA: &[(&str, &str)] = &[
    ("logs", "FilterLogEvents"),
    ("logs", "StartLiveTail"),
    ("ecr", "BatchCheckLayerAvailability"),
];

/// Operations that match [`READONLY_PREFIXES`] but reveal secrets or act for an agent, and
/// so are denied to `readonly`, as (IAM service prefix, operation).
pub const READONLY_DENIED: &[(&str, &str)] = &[
    ("secretsmanager", "GetSecretValue"),
    ("secretsmanager", "BatchGetSecretValue"),
    ("ssm", "GetParameter"),
    ("ssm", "GetParameters"),
    ("ssm", "GetParametersByPath"),
    ("ssm", "GetParameterHistory"),
    ("kms", "GetParametersForImport"),
    ("sts", "GetSessionToken"),
    ("sts", "GetFederationToken"),
    // berth's agent channel: task role credentials are for agents only.
    ("berth", "GetTaskRoleCredentials"),
];

/// The IAM service prefix (`ecs`, `ecr`, `logs` …) for either an `X-Amz-Target` prefix such
/// as `AmazonEC2ContainerServiceV20141113` or an already-short name (returned unchanged).
pub fn service_prefix(service: &str) -> &str {
    TARGET_PREFIXES
        .iter()
        .find(|(target, _)| *target == service)
        .map_or(service, |(_, prefix)| prefix)
}

fn in_table(table: &[(&str, &str)], service: &str, operation: &str) -> bool {
    table
        .iter()
        .any(|(s, op)| *s == service && (*op == ANY_OPERATION || *op == operation))
}

/// Whether `role` may call `operation` of `service` (an IAM prefix or `X-Amz-Target` prefix).
pub fn is_allowed(role: Role, service: &str, operation: &str) -> bool {
    let service = service_prefix(service);
    match role {
        Role::Admin => true,
        Role::Agent => in_table(AGENT_OPERATIONS, service, operation),
        Role::ReadOnly => {
            READONLY_PREFIXES.iter().any(|p| {
                operation.len() > p.len()
                    && operation.starts_with(p)
                    // `Listen…` is not `List…`: the next character must start a new word.
                    && operation.as_bytes()[p.len()].is_ascii_uppercase()
            }) && !in_table(READONLY_DENIED, service, operation)
                || in_table(READONLY_EXTRA, service, operation)
        }
    }
}

/// Checks that `role` may call `operation` of `service` (an IAM service prefix such as
/// `ecs`, or an `X-Amz-Target` prefix such as `AmazonEC2ContainerServiceV20141113`).
///
/// Denials are [`AuthError::AccessDenied`] without a principal; add it with
/// [`AuthError::with_principal`] (or use [`crate::VerifiedRequest::authorize`]).
pub fn authorize(role: Role, service: &str, operation: &str) -> Result<(), AuthError> {
    if is_allowed(role, service, operation) {
        Ok(())
    } else {
        Err(AuthError::AccessDenied {
            action: format!("{}:{operation}", service_prefix(service)),
            principal_arn: None,
        })
    }
}

/// The IAM-style ARN berth reports for an access key: `arn:aws:iam::<account>:user/<key id>`.
pub fn principal_arn(account_id: &str, access_key_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/{access_key_id}")
}
