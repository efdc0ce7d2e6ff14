//! Connection options and the `etcd://` / `etcds://` store URL.

use std::path::PathBuf;
use std::time::Duration;

/// The key prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "/berth";

/// A bad store URL or option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL is not `etcd://host:port[,host:port…][/prefix]` (or `etcds://…`).
    #[error("invalid etcd store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// TLS was asked for but this build has no TLS support (cargo feature `tls`).
    #[error("etcds:// needs berth-store-etcd built with the `tls` feature")]
    TlsUnsupported,
    /// A TLS file could not be read.
    #[error("reading {path}: {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// PEM files for a TLS connection to etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed the etcd server certificates (required: no system roots are used).
    pub ca: Option<PathBuf>,
    /// Client certificate, for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// Private key of the client certificate.
    pub key: Option<PathBuf>,
}

/// How to reach etcd and where berth's keys live in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` of each etcd member (requests are balanced over them).
    pub endpoints: Vec<String>,
    /// Key prefix, without a trailing `/` (`"/berth"` by default). Store key `k` is etcd key
    /// `prefix/k`.
    pub prefix: String,
    /// etcd user name and password (etcd's `auth enable`).
    pub user: Option<(String, String)>,
    /// TLS (the `etcds://` scheme); `None` = plain HTTP/2.
    pub tls: Option<TlsFiles>,
    /// Timeout for establishing a connection to one member.
    pub connect_timeout: Duration,
    /// Timeout for one unary request (a get, a txn, …).
    pub request_timeout: Duration,
    /// How long a watch keeps trying to reconnect after etcd became unreachable before its
    /// stream ends with `Unavailable`.
    pub watch_reconnect_timeout: Duration,
}

impl EtcdOptions {
    /// Options for these endpoints with the default prefix and timeouts.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            user: None,
            tls: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            watch_reconnect_timeout: Duration::from_secs(60),
        }
    }

    /// Set the key prefix (a trailing `/` is removed).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = normalize_prefix(&prefix.into());
        self
    }

    /// Set the etcd user name and password.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Parse `etcd://h1:2379,h2:2379[/prefix]` or
    /// `etcds://h1:2379[/prefix][?ca=PATH&cert=PATH&key=PATH]`.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else {
            return Err(bad("the scheme must be etcd:// or etcds://"));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(bad("no endpoint (host:port) given"));
        }
        for e in &endpoints {
            match e.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => return Err(bad(&format!("endpoint {e:?} is not host:port"))),
            }
        }
        let mut opts = Self::new(endpoints);
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            opts.prefix = normalize_prefix(path);
        }
        if let Some(query) = query {
            if !tls {
                return Err(bad(
                    "query parameters (ca, cert, key) are for etcds:// only",
                ));
            }
            let mut files = TlsFiles::default();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(&format!("query parameter {pair:?} has no value")))?;
                let v = Some(PathBuf::from(v));
                match k {
                    "ca" => files.ca = v,
                    "cert" => files.cert = v,
                    "key" => files.key = v,
                    other => return Err(bad(&format!("unknown query parameter {other:?}"))),
                }
            }
            if files.cert.is_some() != files.key.is_some() {
                return Err(bad("cert and key must be given together"));
            }
            opts.tls = Some(files);
        } else if tls {
            opts.tls = Some(TlsFiles::default());
        }
        Ok(opts)
    }

    /// etcd-client's connect options for these settings.
    pub(crate) fn connect_options(&self) -> Result<etcd_client::ConnectOptions, ConfigError> {
        let mut o = etcd_client::ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some((u, p)) = &self.user {
            o = o.with_user(u.clone(), p.clone());
        }
        if let Some(files) = &self.tls {
            o = tls_options(o, files)?;
        }
        Ok(o)
    }

    /// Endpoint URLs as etcd-client wants them.
    pub(crate) fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect()
    }
}

fn normalize_prefix(p: &str) -> String {
    p.trim_end_matches('/').to_owned()
}

#[cfg(feature = "tls")]
fn tls_options(
    o: etcd_client::ConnectOptions,
    files: &TlsFiles,
) -> Result<etcd_client::ConnectOptions, ConfigError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::TlsFile {
            path: path.clone(),
            source,
        })
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(o.with_tls(tls))
}

#[cfg(not(feature = "tls"))]
fn tls_options(
    _o: etcd_client::ConnectOptions,
    _files: &TlsFiles,
) -> Result<etcd_client::ConnectOptions, ConfigError> {
    Err(ConfigError::TlsUnsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let o = EtcdOptions::from_url("etcd://h1:2379,h2:2379").unwrap();
        assert_eq!(o.endpoints, ["h1:2379", "h2:2379"]);
        assert_eq!(o.prefix, "/berth");
        assert!(o.tls.is_none());
        assert_eq!(o.endpoint_urls(), ["http://h1:2379", "http://h2:2379"]);

        let o = EtcdOptions::from_url("etcd://127.0.0.1:2379/prod/").unwrap();
        assert_eq!(o.prefix, "/prod");
        let o = EtcdOptions::from_url("etcd://127.0.0.1:2379/a/b").unwrap();
        assert_eq!(o.prefix, "/a/b");

        let o = EtcdOptions::from_url("etcds://h:2379/x?ca=/c.pem&cert=/a.pem&key=/k.pem").unwrap();
        let tls = o.tls.clone().unwrap();
        assert_eq!(tls.ca, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(o.prefix, "/x");
        assert_eq!(o.endpoint_urls(), ["https://h:2379"]);

        for bad in [
            "http://h:2379",
            "etcd://",
            "etcd:///p",
            "etcd://h",
            "etcd://h:port",
            "etcd://h:1?ca=/x",
            "etcds://h:1?cert=/x",
            "etcds://h:1?nope=1",
        ] {
            assert!(EtcdOptions::from_url(bad).is_err(), "{bad}");
        }
    }
}
