//! Key material: generating access keys and reading/writing the AWS shared-credentials file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Fills `buf` from the operating system's random source.
fn os_random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(format!("OS random source failed: {e}")))
}

/// A new access key id in AWS's form: `AKIA` followed by 16 characters of `[A-Z2-7]`.
pub fn generate_access_key_id() -> io::Result<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 16];
    os_random(&mut bytes)?;
    let mut id = String::with_capacity(20);
    id.push_str("AKIA");
    // 32 divides 256, so masking keeps the distribution uniform.
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)])),
    );
    Ok(id)
}

/// A new secret access key in AWS's form: 40 characters of `[A-Za-z0-9+/]`.
pub fn generate_secret_access_key() -> io::Result<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 40];
    os_random(&mut bytes)?;
    // 64 divides 256, so masking keeps the distribution uniform.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect())
}

/// One profile of a shared-credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsProfile {
    /// The section name, e.g. `default`.
    pub name: String,
    /// `aws_access_key_id`.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key`.
    pub secret_access_key: Option<String>,
    /// `aws_session_token`, if any.
    pub session_token: Option<String>,
}

/// The section name of an INI line `[name]` (or `[profile name]`), if it is one.
fn section_name(line: &str) -> Option<&str> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?.strip_suffix(']')?.trim();
    Some(inner.strip_prefix("profile ").map_or(inner, str::trim))
}

/// `(key, value)` of an INI line `key = value`, if it is one (comments are not).
fn key_value(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    Some((k.trim(), v.trim()))
}

/// Parses the text of a shared-credentials file into its profiles, in file order.
pub fn parse_credentials(text: &str) -> Vec<CredentialsProfile> {
    let mut profiles: Vec<CredentialsProfile> = Vec::new();
    for line in text.lines() {
        if let Some(name) = section_name(line) {
            profiles.push(CredentialsProfile {
                name: name.to_owned(),
                access_key_id: None,
                secret_access_key: None,
                session_token: None,
            });
        } else if let (Some((k, v)), Some(p)) = (key_value(line), profiles.last_mut()) {
            let slot = match k.to_ascii_lowercase().as_str() {
                "aws_access_key_id" => &mut p.access_key_id,
                "aws_secret_access_key" => &mut p.secret_access_key,
                "aws_session_token" => &mut p.session_token,
                _ => continue,
            };
            *slot = Some(v.to_owned());
        }
    }
    profiles
}

/// Reads a shared-credentials file (`~/.aws/credentials` format).
pub fn read_credentials_file(path: &Path) -> io::Result<Vec<CredentialsProfile>> {
    Ok(parse_credentials(&fs::read_to_string(path)?))
}

/// Reads one profile's `(access key id, secret access key)` from a shared-credentials file;
/// `Ok(None)` if the profile or one of the two keys is absent.
pub fn read_credentials_profile(
    path: &Path,
    profile: &str,
) -> io::Result<Option<(String, String)>> {
    Ok(read_credentials_file(path)?
        .into_iter()
        .filter(|p| p.name == profile)
        .find_map(|p| Some((p.access_key_id?, p.secret_access_key?))))
}

/// Returns `text` with `profile`'s `aws_access_key_id` / `aws_secret_access_key` set,
/// keeping every other section, key and comment. A stale `aws_session_token` in that profile
/// is removed (it would not belong to the new key).
pub fn merge_credentials(text: &str, profile: &str, access_key_id: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut in_profile = false;
    let mut found = false;
    let mut written = false;
    let write_keys = |out: &mut String| {
        out.push_str("aws_access_key_id = ");
        out.push_str(access_key_id);
        out.push_str("\naws_secret_access_key = ");
        out.push_str(secret);
        out.push('\n');
    };
    for line in text.lines() {
        if let Some(name) = section_name(line) {
            if in_profile && !written {
                write_keys(&mut out);
                written = true;
            }
            in_profile = name == profile && !found;
            found |= in_profile;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if in_profile {
            if let Some((k, _)) = key_value(line) {
                let k = k.to_ascii_lowercase();
                if k == "aws_access_key_id" || k == "aws_secret_access_key" {
                    if !written {
                        write_keys(&mut out);
                        written = true;
                    }
                    continue;
                }
                if k == "aws_session_token" {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if in_profile && !written {
        write_keys(&mut out);
    }
    if !found {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push('[');
        out.push_str(profile);
        out.push_str("]\n");
        write_keys(&mut out);
    }
    out
}

/// Writes (or updates) `profile` in the shared-credentials file at `path`, creating parent
/// directories (mode 0700 on Unix) and leaving the file with mode 0600. Other profiles are
/// kept. The file is replaced atomically (written to a temporary file, then renamed).
pub fn write_credentials_file(
    path: &Path,
    profile: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> io::Result<()> {
    for (what, v) in [
        ("profile", profile),
        ("access key id", access_key_id),
        ("secret access key", secret_access_key),
    ] {
        if v.is_empty() || v.contains(['\n', '\r', '[', ']']) || v.trim() != v {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid {what} for a credentials file"),
            ));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent)?;
    }
    let existing = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let text = merge_credentials(&existing, profile, access_key_id, secret_access_key);

    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let id = generate_access_key_id().unwrap();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        let secret = generate_secret_access_key().unwrap();
        assert_eq!(secret.len(), 40);
        assert!(secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        assert_ne!(generate_access_key_id().unwrap(), id);
        assert_ne!(generate_secret_access_key().unwrap(), secret);
    }

    #[test]
    fn merge_keeps_other_profiles() {
        let text = "# mine\n[default]\naws_access_key_id = OLD\naws_secret_access_key = OLDS\naws_session_token = T\nregion = x\n\n[other]\naws_access_key_id = O\n";
        let merged = merge_credentials(text, "default", "NEW", "NEWS");
        assert_eq!(
            merged,
            "# mine\n[default]\naws_access_key_id = NEW\naws_secret_access_key = NEWS\nregion = x\n\n[other]\naws_access_key_id = O\n"
        );
        let added = merge_credentials(&merged, "berth", "A", "S");
        let profiles = parse_credentials(&added);
        assert_eq!(profiles.len(), 3);
        assert_eq!(profiles[2].name, "berth");
        assert_eq!(profiles[2].access_key_id.as_deref(), Some("A"));
        assert_eq!(profiles[2].secret_access_key.as_deref(), Some("S"));
        assert_eq!(profiles[1].access_key_id.as_deref(), Some("O"));
        // Idempotent.
        assert_eq!(merge_credentials(&added, "berth", "A", "S"), added);
        // Empty section gets its keys.
        let empty = merge_credentials("[berth]\n", "berth", "A", "S");
        assert_eq!(
            empty,
            "[berth]\naws_access_key_id = A\naws_secret_access_key = S\n"
        );
    }
}
