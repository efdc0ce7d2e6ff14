//! Repository names and tags, by ECR's (and the OCI distribution spec's) rules.

/// The regular expression ECR quotes when a repository name is invalid.
pub const REPOSITORY_NAME_PATTERN: &str =
    "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*";

/// ECR repository names: 2–256 characters of `/`-separated path components, each lowercase
/// alphanumerics separated by single `.`, `_` or `-` (so no `..`, no leading `/`, no empty
/// component: path traversal cannot be spelled).
pub fn valid_repository_name(name: &str) -> bool {
    if name.len() < 2 || name.len() > 256 {
        return false;
    }
    name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut prev_sep = false;
    for &x in b {
        if alnum(x) {
            prev_sep = false;
        } else if b"._-".contains(&x) {
            // The OCI grammar allows `__` and runs of `-`; ECR's regex does not. Follow ECR.
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    true
}

/// Tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` (OCI distribution spec; ECR allows 1–300 but
/// Docker clients cannot use more than 128).
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"._-".contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["my-ecr-repo", "ab", "team/app", "a.b_c-d/e1", "x/y/z0"] {
            assert!(valid_repository_name(ok), "{ok}");
        }
        for bad in [
            "a", "", "My", "a//b", "/ab", "ab/", "../ab", "ab/..", "a..b", "a-", "-a", "a b",
            "a/./b", "ab\0", "a:b",
        ] {
            assert!(!valid_repository_name(bad), "{bad:?}");
        }
        assert!(!valid_repository_name(&"a".repeat(257)));
        assert!(valid_repository_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "sha256:abc"] {
            assert!(!valid_tag(bad), "{bad:?}");
        }
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
