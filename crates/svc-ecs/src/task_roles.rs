//! Which berth role task IAM role credentials get: [`TaskRoleAccess`] (`--task-role-access`),
//! and the name of an IAM role ARN. The credentials themselves are issued by `task_credentials`.

use berth_auth::Role;
use std::str::FromStr;

/// Which berth role the credentials of each IAM role get (`--task-role-access`): either one
/// role for every IAM role (`readonly`), or `NAME=ROLE` pairs separated by commas, where NAME is
/// an IAM role name and `*` matches any other (`app-admin=admin,*=readonly`). Without `*` the
/// default is `readonly`. The `agent` role is refused: a task must not speak for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRoleAccess {
    default: Role,
    by_name: Vec<(String, Role)>,
}

impl Default for TaskRoleAccess {
    fn default() -> Self {
        Self {
            default: Role::ReadOnly,
            by_name: Vec::new(),
        }
    }
}

impl TaskRoleAccess {
    /// The berth role for the IAM role `role_arn` (matched by its name, the last path segment).
    pub fn role_for(&self, role_arn: &str) -> Role {
        let name = role_name(role_arn).unwrap_or(role_arn);
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default, |(_, r)| *r)
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.parse::<Role>() {
        Ok(Role::Agent) => Err(format!(
            "'{s}': task credentials cannot have the agent role (use admin or readonly)"
        )),
        Ok(r) => Ok(r),
        Err(e) => Err(e.to_string()),
    }
}

impl FromStr for TaskRoleAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = TaskRoleAccess::default();
        if !s.contains('=') {
            out.default = parse_role(s)?;
            return Ok(out);
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, role) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected NAME=ROLE"))?;
            let (name, role) = (name.trim(), parse_role(role.trim())?);
            if name == "*" {
                out.default = role;
            } else if name.is_empty() {
                return Err(format!("'{part}': the IAM role name is empty"));
            } else {
                out.by_name.push((name.to_string(), role));
            }
        }
        Ok(out)
    }
}

/// The name of an IAM role ARN (`arn:aws:iam::123456789012:role/path/name` → `name`).
pub fn role_name(role_arn: &str) -> Option<&str> {
    let arn = berth_core::Arn::parse(role_arn)?;
    if arn.service != "iam" {
        return None;
    }
    let path = arn.resource.strip_prefix("role/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_maps_role_names_to_berth_roles() {
        let a: TaskRoleAccess = "app-admin=admin, *=readonly".parse().unwrap();
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/app-admin"),
            Role::Admin
        );
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/team/app-admin"),
            Role::Admin
        );
        assert_eq!(
            a.role_for("arn:aws:iam::123456789012:role/other"),
            Role::ReadOnly
        );
        let all: TaskRoleAccess = "admin".parse().unwrap();
        assert_eq!(all.role_for("arn:aws:iam::1:role/x"), Role::Admin);
        assert_eq!(
            TaskRoleAccess::default().role_for("arn:aws:iam::1:role/x"),
            Role::ReadOnly
        );
        assert!("agent".parse::<TaskRoleAccess>().is_err());
        assert!("x=agent".parse::<TaskRoleAccess>().is_err());
        assert!("x=root".parse::<TaskRoleAccess>().is_err());
        assert!("=admin".parse::<TaskRoleAccess>().is_err());
    }

    #[test]
    fn role_names_come_from_iam_role_arns_only() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/ecsTaskRole"),
            Some("ecsTaskRole")
        );
        assert_eq!(role_name("arn:aws:iam::123456789012:role/a/b/c"), Some("c"));
        assert_eq!(role_name("arn:aws:iam::123456789012:user/bob"), None);
        assert_eq!(role_name("arn:aws:s3:::bucket/role/x"), None);
        assert_eq!(role_name("ecsTaskRole"), None);
    }
}
