//! Parsing ECS ARNs and "name or ARN" arguments.

/// The ECS resource kinds berth mints ARNs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Cluster,
    TaskDefinition,
    Task,
    ContainerInstance,
    Service,
    CapacityProvider,
    TaskSet,
    ServiceDeployment,
    ServiceRevision,
}

impl ResourceKind {
    pub fn from_prefix(s: &str) -> Option<Self> {
        Some(match s {
            "cluster" => Self::Cluster,
            "task-definition" => Self::TaskDefinition,
            "task" => Self::Task,
            "container-instance" => Self::ContainerInstance,
            "service" => Self::Service,
            "capacity-provider" => Self::CapacityProvider,
            "task-set" => Self::TaskSet,
            "service-deployment" => Self::ServiceDeployment,
            "service-revision" => Self::ServiceRevision,
            _ => return None,
        })
    }
}

/// A parsed `arn:<partition>:<service>:<region>:<account>:<type>/<rest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    /// Everything after the account, e.g. `task-definition/web:3`.
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Option<Arn<'a>> {
        let mut it = s.splitn(6, ':');
        if it.next()? != "arn" {
            return None;
        }
        let partition = it.next()?;
        let service = it.next()?;
        let region = it.next()?;
        let account = it.next()?;
        let resource = it.next()?;
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// For ECS ARNs: the resource kind and the path after `<type>/`.
    pub fn ecs_resource(&self) -> Option<(ResourceKind, &'a str)> {
        if self.service != "ecs" {
            return None;
        }
        let (kind, rest) = self.resource.split_once('/')?;
        Some((ResourceKind::from_prefix(kind)?, rest))
    }
}

/// Resolves a `cluster` argument (name or cluster ARN) to the cluster name.
/// Returns None when it is an ARN that isn't a cluster ARN.
pub fn cluster_name_of(arg: &str) -> Option<&str> {
    if arg.starts_with("arn:") {
        match Arn::parse(arg)?.ecs_resource()? {
            (ResourceKind::Cluster, name) if !name.is_empty() => Some(name),
            _ => None,
        }
    } else {
        Some(arg)
    }
}

/// A task-definition reference: `family`, `family:revision` or the full ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionRef {
    pub family: String,
    pub revision: Option<u32>,
}

impl TaskDefinitionRef {
    pub fn parse(arg: &str) -> Option<Self> {
        let body = if arg.starts_with("arn:") {
            match Arn::parse(arg)?.ecs_resource()? {
                (ResourceKind::TaskDefinition, rest) => rest,
                _ => return None,
            }
        } else {
            arg
        };
        let (family, revision) = match body.rsplit_once(':') {
            Some((f, r)) => {
                let rev: u32 = r.parse().ok()?;
                if rev == 0 {
                    return None;
                }
                (f, Some(rev))
            }
            None => (body, None),
        };
        if arg.starts_with("arn:") && revision.is_none() {
            return None;
        }
        crate::names::family(family).ok()?;
        Some(Self {
            family: family.to_string(),
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_arns() {
        let a = Arn::parse("arn:aws:ecs:us-east-1:000000000000:cluster/default").unwrap();
        assert_eq!(a.ecs_resource(), Some((ResourceKind::Cluster, "default")));
        assert_eq!(
            cluster_name_of("arn:aws:ecs:us-east-1:000000000000:cluster/x"),
            Some("x")
        );
        assert_eq!(cluster_name_of("plain"), Some("plain"));
        assert_eq!(
            cluster_name_of("arn:aws:ecs:us-east-1:000000000000:task/x/y"),
            None
        );
        assert_eq!(cluster_name_of("arn:bad"), None);
    }
    #[test]
    fn parse_td_refs() {
        assert_eq!(
            TaskDefinitionRef::parse("web"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: None
            })
        );
        assert_eq!(
            TaskDefinitionRef::parse("web:3"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: Some(3)
            })
        );
        assert_eq!(
            TaskDefinitionRef::parse("arn:aws:ecs:us-east-1:1:task-definition/web:12"),
            Some(TaskDefinitionRef {
                family: "web".into(),
                revision: Some(12)
            })
        );
        assert_eq!(
            TaskDefinitionRef::parse("arn:aws:ecs:us-east-1:1:task-definition/web"),
            None
        );
        assert_eq!(TaskDefinitionRef::parse("web:x"), None);
        assert_eq!(TaskDefinitionRef::parse("web:0"), None);
        assert_eq!(TaskDefinitionRef::parse("w eb"), None);
    }
}
