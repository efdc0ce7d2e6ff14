//! Access keys and who is calling: the stored key records, the in-memory key cache the signature
//! check reads on every request (kept current by a store watch on `auth/keys/`), and [`Principal`].

use crate::error::ApiError;
use crate::repo::Repo;
use berth_auth::Role;
use berth_store::EventKind;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Store prefix of the access keys.
pub const ACCESS_KEYS: &str = "auth/keys/";

/// The store key of one access key.
pub fn access_key(id: &str) -> String {
    format!("{ACCESS_KEYS}{id}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// admin | agent | readonly
    pub role: String,
    pub created_at: f64,
    #[serde(default)]
    pub description: String,
    /// Set on temporary credentials (task IAM role credentials, see `task_credentials`):
    /// requests must carry this token, and the key stops working at `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRecord>,
}

/// What makes an access key temporary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// `X-Amz-Security-Token` the signed requests must carry.
    pub token: String,
    /// Epoch seconds after which the key is refused (ExpiredTokenException).
    pub expires_at: f64,
    /// The caller's ARN: `arn:aws:sts::<account>:assumed-role/<role name>/<task id>`.
    pub principal_arn: String,
    /// The IAM role the credentials stand for.
    pub role_arn: String,
    /// The task they were issued to.
    pub task_arn: String,
}

/// Who is calling: the verified access key, its role, and its principal ARN.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key_id: String,
    pub role: Role,
    pub arn: String,
    /// Signed with temporary credentials (a task role's).
    pub temporary: bool,
}

/// The access keys, in memory for the signature check on every request, kept current by a watch on
/// `auth/keys/` (so keys made through any replica take effect everywhere).
#[derive(Default, Clone)]
pub struct KeyCache {
    inner: Arc<RwLock<HashMap<String, KeyEntry>>>,
}

/// One key as the signature check needs it.
#[derive(Clone)]
struct KeyEntry {
    secret: String,
    role: Role,
    /// Temporary credentials only.
    session: Option<Arc<SessionRecord>>,
}

impl KeyEntry {
    fn of(rec: &AccessKeyRecord) -> Option<Self> {
        Some(KeyEntry {
            secret: rec.secret_access_key.clone(),
            role: rec.role.parse::<Role>().ok()?,
            session: rec.session.clone().map(Arc::new),
        })
    }
}

impl KeyCache {
    /// Secret, role and (for a temporary key) session, read together.
    pub fn lookup(&self, akid: &str) -> Option<(String, Role, Option<Arc<SessionRecord>>)> {
        self.inner
            .read()
            .ok()?
            .get(akid)
            .map(|e| (e.secret.clone(), e.role, e.session.clone()))
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a key usable at once on this replica (the watch brings it to the others).
    pub fn insert(&self, rec: &AccessKeyRecord) {
        self.apply(rec)
    }

    pub fn remove(&self, akid: &str) {
        if let Ok(mut m) = self.inner.write() {
            m.remove(akid);
        }
    }

    fn apply(&self, rec: &AccessKeyRecord) {
        if let (Some(entry), Ok(mut m)) = (KeyEntry::of(rec), self.inner.write()) {
            m.insert(rec.access_key_id.clone(), entry);
        }
    }

    /// Loads every key; returns the store revision it read at.
    pub async fn reload(&self, repo: &Repo) -> Result<i64, ApiError> {
        let rev = repo.store().current_revision().await?;
        let recs = repo.list::<AccessKeyRecord>(ACCESS_KEYS).await?;
        let mut fresh = HashMap::new();
        for r in recs {
            if let Some(entry) = KeyEntry::of(&r.value) {
                fresh.insert(r.value.access_key_id, entry);
            }
        }
        if let Ok(mut m) = self.inner.write() {
            *m = fresh;
        }
        Ok(rev)
    }

    /// Follows changes to the keys until the store goes away; re-lists after a compaction.
    pub fn spawn_watch(&self, repo: Repo) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut from = repo.store().current_revision().await.unwrap_or_default();
            loop {
                match repo.store().watch(ACCESS_KEYS, from).await {
                    Ok(mut stream) => {
                        while let Some(ev) = stream.next().await {
                            match ev {
                                Ok(ev) => {
                                    from = ev.kv.mod_revision;
                                    match ev.kind {
                                        EventKind::Put => {
                                            if let Ok(rec) = serde_json::from_slice::<AccessKeyRecord>(
                                                &ev.kv.value,
                                            ) {
                                                cache.apply(&rec);
                                            }
                                        }
                                        EventKind::Delete => {
                                            let id = ev
                                                .kv
                                                .key
                                                .trim_start_matches(ACCESS_KEYS)
                                                .to_string();
                                            if let Ok(mut m) = cache.inner.write() {
                                                m.remove(&id);
                                            }
                                        }
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "access-key watch interrupted; re-listing");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "access-key watch failed; retrying"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Ok(rev) = cache.reload(&repo).await {
                    from = rev;
                }
            }
        })
    }
}
