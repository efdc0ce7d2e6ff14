//! Content digests (`sha256:<hex>`) and the incremental hasher.

use crate::RegistryError;
use sha2::Digest as _;
use std::fmt;
use std::str::FromStr;

/// A sha256 content digest. Parsed from and displayed as `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// The 64 lowercase hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = RegistryError;

    /// Accepts the OCI digest grammar `algorithm ":" encoded`; only `sha256` with 64 lowercase hex
    /// characters is stored ([`RegistryError::UnsupportedAlgorithm`] for other valid algorithms).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((alg, enc)) = s.split_once(':') else {
            return Err(RegistryError::DigestInvalid(s.to_string()));
        };
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let enc_ok = !enc.is_empty()
            && enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !alg_ok || !enc_ok {
            return Err(RegistryError::DigestInvalid(s.to_string()));
        }
        match alg {
            "sha256" => {
                if enc.len() == 64
                    && enc
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    Ok(Digest {
                        hex: enc.to_string(),
                    })
                } else {
                    Err(RegistryError::DigestInvalid(s.to_string()))
                }
            }
            "sha512" if enc.len() != 128 => Err(RegistryError::DigestInvalid(s.to_string())),
            _ => Err(RegistryError::UnsupportedAlgorithm(s.to_string())),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 hasher that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything hashed so far (the hasher stays usable).
    pub fn digest(&self) -> Digest {
        self.clone().finish()
    }
    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.inner.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for s in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha256:../../etc/passwd",
            ":abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(
                matches!(s.parse::<Digest>(), Err(RegistryError::DigestInvalid(_))),
                "{s:?}"
            );
        }
        assert!(matches!(
            "md5:abcdef".parse::<Digest>(),
            Err(RegistryError::UnsupportedAlgorithm(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,100}") {
            let _ = s.parse::<Digest>();
        }
    }
}
