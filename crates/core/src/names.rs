//! Names ECS validates: clusters, families, services, containers.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must be between 1 and {max} characters")]
    Length { what: &'static str, max: usize },
    #[error("{what} can contain only letters (uppercase and lowercase), numbers, hyphens (-), and underscores (_)")]
    Charset { what: &'static str },
}

fn check(what: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() || s.chars().count() > max {
        return Err(NameError::Length { what, max });
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(NameError::Charset { what });
    }
    Ok(())
}

/// Cluster names: up to 255 letters, numbers, hyphens and underscores.
pub fn cluster_name(s: &str) -> Result<(), NameError> {
    check("Cluster name", s, 255)
}

/// Task definition family: up to 255 letters, numbers, hyphens and underscores.
pub fn family(s: &str) -> Result<(), NameError> {
    check("Family", s, 255)
}

/// Service names: up to 255 letters, numbers, hyphens and underscores.
pub fn service_name(s: &str) -> Result<(), NameError> {
    check("Service name", s, 255)
}

/// Container names: up to 255 letters, numbers, hyphens and underscores.
pub fn container_name(s: &str) -> Result<(), NameError> {
    check("Container name", s, 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        assert!(cluster_name("My-Cluster_1").is_ok());
        assert!(cluster_name("").is_err());
        assert!(cluster_name("a b").is_err());
        assert!(cluster_name(&"a".repeat(255)).is_ok());
        assert!(cluster_name(&"a".repeat(256)).is_err());
        assert!(family("sleep360").is_ok());
        assert!(family("sleep:1").is_err());
    }
}
