//! The secret stores ECS tasks read their `secrets` from, on the same endpoint:
//! AWS Secrets Manager (`secretsmanager.<Operation>`, signing name `secretsmanager`) and SSM
//! Parameter Store (`AmazonSSM.<Operation>`, signing name `ssm`).
//!
//! Secrets Manager: CreateSecret, GetSecretValue, PutSecretValue, UpdateSecret, DescribeSecret,
//! ListSecrets, DeleteSecret (recovery window or forced), RestoreSecret — with versions and the
//! AWSCURRENT / AWSPREVIOUS staging labels. Parameter Store: PutParameter, GetParameter,
//! GetParameters, GetParametersByPath, DeleteParameter, DeleteParameters — String, StringList and
//! SecureString, versions and `name:version` selectors.
//!
//! There is no KMS: values are kept in the state store as given (protect the data dir), and
//! a SecureString read without `WithDecryption` comes back base64-encoded in place of AWS's
//! ciphertext. Only `admin` keys may write; `readonly` keys may describe and list but not read
//! values; `agent` keys may read values (GetSecretValue, GetParameters) to inject task secrets.
//!
//! One state ([`Secrets`]: the store, the scope its ARNs use, this replica's leadership) serves
//! both services, [`SecretsManagerService`] and [`SsmService`], which `berth-server` registers with the
//! edge. The purge of secrets whose recovery window has passed is a leader-only background task,
//! [`PurgeDeletedSecrets`], run every [`PURGE_PERIOD`] by the task driver `berth-server` builds.

mod secretsmanager;
mod ssm;

pub use secretsmanager::{
    dispatch_secrets_manager, purge_deleted_secrets, SecretRecord, SecretVersion,
    SECRETS_MANAGER_OPERATIONS,
};
pub use ssm::{dispatch_ssm, ParameterRecord, ParameterVersion, SSM_OPERATIONS};

use berth_core::Scope;
use berth_service::leader::{as_leader, Leader};
use berth_service::pagination::decode_token;
use berth_service::repo::{Change, Repo};
use berth_service::{ApiError, Call, Descriptor, Protocol, Reply, Service};
use berth_tasks::{BackgroundTask, TaskError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// `X-Amz-Target` prefix of Secrets Manager.
pub const SECRETS_MANAGER_PREFIX: &str = "secretsmanager";
/// `X-Amz-Target` prefix of SSM.
pub const SSM_PREFIX: &str = "AmazonSSM";

/// Largest request body accepted by either service (the control plane's limit for its JSON APIs;
/// a secret value is at most 64 KiB, a parameter's 8 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How often [`PurgeDeletedSecrets`] runs.
pub const PURGE_PERIOD: Duration = Duration::from_secs(60);

/// Secrets Manager and SSM Parameter Store: their shared state.
pub struct Secrets {
    pub repo: Repo,
    /// Region and account of the ARNs minted.
    pub scope: Scope,
    /// This replica's leadership (the purge runs on the leader only, its commits fenced).
    pub leader: Arc<Leader>,
}

impl Secrets {
    pub fn new(repo: Repo, scope: Scope, leader: Arc<Leader>) -> Arc<Self> {
        Arc::new(Self {
            repo,
            scope,
            leader,
        })
    }
}

/// What every Secrets Manager and SSM handler gets.
pub type Ctx = berth_service::Ctx<Secrets>;

static SECRETS_MANAGER: Descriptor = Descriptor {
    name: "secretsmanager",
    signing_names: &["secretsmanager"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[SECRETS_MANAGER_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, op| SECRETS_MANAGER_OPERATIONS.contains(&op),
};

static SSM: Descriptor = Descriptor {
    name: "ssm",
    signing_names: &["ssm"],
    protocol: Protocol::AwsJson1_1,
    target_prefixes: &[SSM_PREFIX],
    body_limit: MAX_BODY_BYTES,
    xml_namespace: "",
    knows: |_, op| SSM_OPERATIONS.contains(&op),
};

/// Secrets Manager as the edge sees it.
pub struct SecretsManagerService(pub Arc<Secrets>);

#[async_trait::async_trait]
impl Service for SecretsManagerService {
    fn descriptor(&self) -> &'static Descriptor {
        &SECRETS_MANAGER
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        dispatch_secrets_manager(&ctx, call.operation, &call.body)
            .await
            .map(Reply::Json)
    }
}

/// SSM Parameter Store as the edge sees it.
pub struct SsmService(pub Arc<Secrets>);

#[async_trait::async_trait]
impl Service for SsmService {
    fn descriptor(&self) -> &'static Descriptor {
        &SSM
    }

    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        let ctx = Ctx {
            app: self.0.clone(),
            principal: call.principal,
        };
        dispatch_ssm(&ctx, call.operation, &call.body)
            .await
            .map(Reply::Json)
    }
}

/// The background task that deletes secrets whose recovery window has passed: leader-only (run
/// it with `berth_tasks::Mode::LeaderOnly`; it also checks leadership itself and fences its
/// commits), every [`PURGE_PERIOD`].
pub struct PurgeDeletedSecrets(pub Arc<Secrets>);

#[async_trait::async_trait]
impl BackgroundTask for PurgeDeletedSecrets {
    async fn activate(&self) -> Result<String, TaskError> {
        let secrets = &self.0;
        match as_leader(&secrets.leader, purge_deleted_secrets(secrets)).await {
            Some(purged) => Ok(format!("purged {}", purged?)),
            None => Ok("skipped: not the leader".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes and helpers shared by both services (PascalCase members, as both services use)

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireTag {
    key: Option<String>,
    value: Option<String>,
}

pub(crate) use berth_service::codec::parse;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Reads `key`, applies `f` to the current record (None when absent), and commits what it
/// returns (`Some` = put, `None` = delete) if nobody wrote the key meanwhile; retries otherwise.
/// `f` also returns the answer. (`Repo::update` with the put-or-delete `Change` of `f`.)
pub(crate) async fn modify<T, R>(
    ctx: &Ctx,
    key: &str,
    mut f: impl FnMut(Option<T>) -> Result<(Option<T>, R), ApiError>,
) -> Result<R, ApiError>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    ctx.app
        .repo
        .update(key, |cur| {
            Ok(match f(cur)? {
                (Some(v), out) => Change::Put(v, out),
                (None, out) => Change::Delete(out),
            })
        })
        .await
}

pub(crate) fn tags_of(tags: Option<Vec<WireTag>>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for t in tags.unwrap_or_default() {
        let key = t
            .key
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| ApiError::invalid_parameter("Tag keys must be 1-128 characters."))?;
        out.push((key, t.value.unwrap_or_default()));
    }
    if out.len() > 50 {
        return Err(ApiError::invalid_parameter(
            "You can attach at most 50 tags.",
        ));
    }
    Ok(out)
}

pub(crate) fn wire_tags(tags: &[(String, String)]) -> Vec<WireTag> {
    tags.iter()
        .map(|(k, v)| WireTag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// Decodes a `NextToken` (the opaque form of `berth_service::pagination::encode_token`), with the
/// service's own error code for a bad one.
pub(crate) fn page_after(
    token: Option<&str>,
    code: &'static str,
) -> Result<Option<String>, ApiError> {
    decode_token(token).map_err(|_| ApiError::new(code, "The NextToken is not valid."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_service::leader::Leadership;
    use berth_service::repo::to_bytes;
    use berth_service::Principal;
    use berth_store::Txn;

    fn secrets() -> Arc<Secrets> {
        let store = Arc::new(berth_store::MemoryStore::new());
        Secrets::new(
            Repo::new(store),
            Scope::new("us-east-1", "000000000000"),
            Arc::new(Leader::default()),
        )
    }

    fn admin() -> Principal {
        Principal {
            access_key_id: "AKIDADMIN".into(),
            role: berth_auth::Role::Admin,
            arn: "arn:aws:iam::000000000000:user/admin".into(),
            temporary: false,
        }
    }

    async fn call(
        service: &dyn Service,
        op: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let prefix = service.descriptor().target_prefixes[0];
        let reply = service
            .call(Call {
                principal: admin(),
                prefix,
                operation: op,
                body: bytes::Bytes::from(body.to_string()),
            })
            .await?;
        match reply {
            Reply::Json(b) => Ok(serde_json::from_slice(&b).unwrap()),
            Reply::Response(_) => panic!("{op}: not a JSON answer"),
        }
    }

    /// `knows` is exactly what the dispatchers run: every listed operation reaches its handler,
    /// anything else is the edge's UnknownOperationException with today's text.
    #[tokio::test]
    async fn descriptors_know_exactly_the_dispatched_operations() {
        let app = secrets();
        let services: [(Box<dyn Service>, &[&str]); 2] = [
            (
                Box::new(SecretsManagerService(app.clone())),
                SECRETS_MANAGER_OPERATIONS,
            ),
            (Box::new(SsmService(app.clone())), SSM_OPERATIONS),
        ];
        for (service, ops) in &services {
            let d = service.descriptor();
            assert_eq!(d.protocol, Protocol::AwsJson1_1);
            assert_eq!(d.body_limit, 1024 * 1024);
            assert_eq!(d.xml_namespace, "");
            let prefix = d.target_prefixes[0];
            for op in *ops {
                assert!((d.knows)(prefix, op), "{prefix}.{op}");
                if let Err(e) = call(service.as_ref(), op, serde_json::json!({})).await {
                    assert_ne!(e.code, "UnknownOperationException", "{prefix}.{op}");
                }
            }
            for op in ["RotateSecret", "GetParameterHistory", "CreateCluster", ""] {
                assert!(!(d.knows)(prefix, op), "{prefix}.{op}");
                let e = call(service.as_ref(), op, serde_json::json!({}))
                    .await
                    .unwrap_err();
                assert_eq!(e.code, "UnknownOperationException");
                assert_eq!(e.message, format!("Unknown operation: {prefix}.{op}"));
            }
        }
        assert_eq!(SECRETS_MANAGER.signing_names, ["secretsmanager"]);
        assert_eq!(SECRETS_MANAGER.target_prefixes, ["secretsmanager"]);
        assert_eq!(SSM.signing_names, ["ssm"]);
        assert_eq!(SSM.target_prefixes, ["AmazonSSM"]);
    }

    #[tokio::test]
    async fn both_services_serve_the_shared_state() {
        let app = secrets();
        let sm = SecretsManagerService(app.clone());
        let created = call(
            &sm,
            "CreateSecret",
            serde_json::json!({"Name": "db", "SecretString": "hunter2"}),
        )
        .await
        .unwrap();
        let arn = created["ARN"].as_str().unwrap();
        assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:000000000000:secret:db-"));
        let got = call(&sm, "GetSecretValue", serde_json::json!({"SecretId": arn}))
            .await
            .unwrap();
        assert_eq!(got["SecretString"], "hunter2");
        assert_eq!(got["VersionStages"], serde_json::json!(["AWSCURRENT"]));

        let ssm = SsmService(app);
        let put = call(
            &ssm,
            "PutParameter",
            serde_json::json!({"Name": "/app/db", "Value": "s3cret", "Type": "SecureString"}),
        )
        .await
        .unwrap();
        assert_eq!(put["Version"], 1);
        let got = call(
            &ssm,
            "GetParameter",
            serde_json::json!({"Name": "/app/db", "WithDecryption": true}),
        )
        .await
        .unwrap();
        assert_eq!(got["Parameter"]["Value"], "s3cret");
        assert_eq!(
            got["Parameter"]["ARN"],
            "arn:aws:ssm:us-east-1:000000000000:parameter/app/db"
        );
        assert_eq!(got["Parameter"]["Version"], serde_json::json!(1), "{got}");
    }

    /// The purge deletes only secrets whose deletion date has passed, and only on the leader.
    #[tokio::test]
    async fn purge_task_runs_on_the_leader_only() {
        let app = secrets();
        let sm = SecretsManagerService(app.clone());
        for name in ["due", "later", "kept"] {
            call(
                &sm,
                "CreateSecret",
                serde_json::json!({"Name": name, "SecretString": "x"}),
            )
            .await
            .unwrap();
        }
        for name in ["due", "later"] {
            call(
                &sm,
                "DeleteSecret",
                serde_json::json!({"SecretId": name, "RecoveryWindowInDays": 7}),
            )
            .await
            .unwrap();
        }
        // Move `due`'s deletion date into the past.
        let key = "secretsmanager/secrets/due";
        let mut due = app.repo.get::<SecretRecord>(key).await.unwrap().unwrap();
        due.value.deletion_date = Some(1.0);
        app.repo
            .commit(Txn::new().put(key.to_string(), to_bytes(&due.value)))
            .await
            .unwrap()
            .unwrap();

        let task = PurgeDeletedSecrets(app.clone());
        let (tx, rx) = tokio::sync::watch::channel(Leadership::follower());
        app.leader.set(rx);
        assert_eq!(task.activate().await.unwrap(), "skipped: not the leader");
        assert!(app.repo.get::<SecretRecord>(key).await.unwrap().is_some());

        tx.send(Leadership::single_node()).unwrap();
        assert_eq!(task.activate().await.unwrap(), "purged 1");
        assert!(app.repo.get::<SecretRecord>(key).await.unwrap().is_none());
        for name in ["later", "kept"] {
            let key = format!("secretsmanager/secrets/{name}");
            assert!(app.repo.get::<SecretRecord>(&key).await.unwrap().is_some());
        }
        assert_eq!(task.activate().await.unwrap(), "purged 0");
        assert_eq!(PURGE_PERIOD, Duration::from_secs(60));
    }
}
