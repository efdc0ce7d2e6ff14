//! `berth server` / `berth up`.

use crate::DataDirArg;
use anyhow::{bail, Context};
use berth_auth::Role;
use berth_core::Scope;
use berth_server::{ControlPlane, ControlPlaneConfig};
use berth_service::leader::{self, Leadership};
use berth_service::metrics::{InstrumentedStore, Metrics};
use berth_service::Principal;
use berth_store::{MemoryStore, SqliteStore, StateStore};
use berth_store_etcd::{EtcdOptions, EtcdStore};
use berth_svc_admin::{self as admin, Admin};
use berth_svc_ecs::{replicas, Ecs};
use clap::Args;
use std::path::Path;
use std::sync::Arc;

#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Address to listen on. Nothing listens beyond 127.0.0.1 unless you say so.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7601")]
    pub listen: String,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The AWS region berth presents itself as (used in ARNs).
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The AWS account id berth presents itself as (used in ARNs).
    #[arg(long, env = "BERTH_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// State store: `sqlite` (DATA_DIR/state.db, the default), `sqlite:PATH`, `memory` (lost on exit),
    /// or etcd: `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (`etcds://…?ca=PEM[&cert=PEM&key=PEM]` for TLS).
    #[arg(long, env = "BERTH_STORE", default_value = "sqlite")]
    pub store: String,
    /// etcd user name (for an etcd with authentication enabled).
    #[arg(long, env = "BERTH_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// etcd password (with --etcd-user).
    #[arg(long, env = "BERTH_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// Serve `POST /_berth/reset` (admin-signed), which wipes all state: for test suites.
    #[arg(long, env = "BERTH_ALLOW_RESET")]
    pub allow_reset: bool,
    /// The image registry's address as clients reach it, `[http[s]://]HOST[:PORT]`: used in
    /// repositoryUri and proxyEndpoint, and by agents to recognise berth's registry (default:
    /// the listen address).
    #[arg(long, env = "BERTH_REGISTRY_HOST")]
    pub registry_host: Option<String>,
    /// Seconds between passes applying ECR lifecycle policies.
    #[arg(
        long,
        env = "BERTH_ECR_LIFECYCLE_INTERVAL",
        default_value_t = 3600,
        hide = true
    )]
    pub ecr_lifecycle_interval: u64,
    /// With etcd: the leader's lease in seconds. A dead leader is replaced within about this
    /// long; a shorter lease fails over faster but renews more often (every third of it).
    #[arg(long, env = "BERTH_LEADER_LEASE", default_value_t = 6, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub leader_lease: u64,
    /// The berth role of task IAM role credentials (tasks with a `taskRoleArn`): one role for
    /// all (`readonly`, the default, or `admin`), or per IAM role name,
    /// `NAME=ROLE[,NAME=ROLE…][,*=ROLE]`.
    #[arg(long, env = "BERTH_TASK_ROLE_ACCESS", default_value = "readonly")]
    pub task_role_access: berth_svc_ecs::task_credentials::TaskRoleAccess,
}

async fn open_store(
    spec: &str,
    data_dir: &Path,
    etcd_user: Option<(&str, &str)>,
) -> anyhow::Result<(Arc<dyn StateStore>, String, Option<EtcdStore>)> {
    if spec.starts_with("etcd://") || spec.starts_with("etcds://") {
        let mut opts = EtcdOptions::from_url(spec)?;
        if let Some((user, password)) = etcd_user {
            opts = opts.with_user(user, password);
        }
        let desc = format!(
            "etcd at {} (prefix {})",
            opts.endpoints.join(","),
            opts.prefix
        );
        let store = EtcdStore::connect(opts)
            .await
            .with_context(|| format!("connecting to the state store {desc}"))?;
        return Ok((
            InstrumentedStore::wrap(Arc::new(store.clone())),
            desc,
            Some(store),
        ));
    }
    if spec == "memory" {
        return Ok((
            InstrumentedStore::wrap(Arc::new(MemoryStore::new())),
            "memory (state is lost on exit)".into(),
            None,
        ));
    }
    let path = match spec {
        "sqlite" => data_dir.join("state.db"),
        s if s.starts_with("sqlite:") => Path::new(&s["sqlite:".len()..]).to_path_buf(),
        other => {
            bail!("unknown --store {other:?}: use sqlite, sqlite:PATH, memory or etcd://HOST:PORT")
        }
    };
    let store = SqliteStore::open(&path)
        .with_context(|| format!("opening the state store {}", path.display()))?;
    Ok((
        InstrumentedStore::wrap(Arc::new(store)),
        format!("sqlite at {}", path.display()),
        None,
    ))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Makes sure an admin key exists; on first start creates it (from BERTH_ROOT_* or generated) and
/// writes it to DATA_DIR/credentials. Returns a message to print once, if a key was created.
async fn bootstrap_keys(app: &Admin, data_dir: &Path) -> anyhow::Result<Option<String>> {
    let from_env = match (
        std::env::var("BERTH_ROOT_ACCESS_KEY_ID"),
        std::env::var("BERTH_ROOT_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        _ => None,
    };
    let creds_path = data_dir.join("credentials");
    if let Some((id, secret)) = &from_env {
        let known = app
            .keys
            .lookup(id)
            .is_some_and(|(s, role, _)| &s == secret && role == Role::Admin);
        if !known {
            admin::create_key(
                app,
                Role::Admin,
                "root key from BERTH_ROOT_ACCESS_KEY_ID",
                Some((id.clone(), secret.clone())),
            )
            .await
            .map_err(|e| anyhow::anyhow!("storing the root key: {e}"))?;
        }
        // Every replica (each with its own data dir) gets the profile, also when another replica
        // stored the key first.
        berth_auth::write_credentials_file(&creds_path, "berth", id, secret)
            .with_context(|| format!("writing {}", creds_path.display()))?;
        return Ok((!known).then(|| {
            format!(
                "Admin key {id} (from BERTH_ROOT_ACCESS_KEY_ID) stored in {}, profile berth.",
                creds_path.display()
            )
        }));
    }
    if !app.keys.is_empty() {
        return Ok(None);
    }
    let rec = admin::create_key(app, Role::Admin, "root key generated at first start", None)
        .await
        .map_err(|e| anyhow::anyhow!("creating the root key: {e}"))?;
    berth_auth::write_credentials_file(
        &creds_path,
        "berth",
        &rec.access_key_id,
        &rec.secret_access_key,
    )
    .with_context(|| format!("writing {}", creds_path.display()))?;
    Ok(Some(format!(
        "Generated the admin access key (shown once; also in {path}, profile berth):\n  export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret}",
        path = creds_path.display(),
        id = rec.access_key_id,
        secret = rec.secret_access_key
    )))
}

/// The local agent's key for `berth up`: reused from DATA_DIR/credentials (profile `berth-agent`)
/// when the control plane still knows it, else created (role `agent`) and saved there.
async fn local_agent_key(app: &Admin, data_dir: &Path) -> anyhow::Result<(String, String)> {
    let creds_path = data_dir.join("credentials");
    if let Ok(Some((id, secret))) = berth_auth::read_credentials_profile(&creds_path, "berth-agent")
    {
        if app
            .keys
            .lookup(&id)
            .is_some_and(|(s, role, _)| s == secret && role == Role::Agent)
        {
            return Ok((id, secret));
        }
    }
    let rec = admin::create_key(app, Role::Agent, "local agent of berth up", None)
        .await
        .map_err(|e| anyhow::anyhow!("creating the local agent key: {e}"))?;
    berth_auth::write_credentials_file(
        &creds_path,
        "berth-agent",
        &rec.access_key_id,
        &rec.secret_access_key,
    )
    .with_context(|| format!("writing {}", creds_path.display()))?;
    Ok((rec.access_key_id, rec.secret_access_key))
}

/// Runs the all-in-one local agent until `stop` flips; reports (and survives) a missing Docker.
async fn run_local_agent(
    admin: Arc<Admin>,
    ecs: Arc<Ecs>,
    data_dir: std::path::PathBuf,
    endpoint: String,
    region: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (key, secret) = match local_agent_key(&admin, &data_dir).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "no local agent");
            return;
        }
    };
    let config_path = Path::new(berth_agent::config::DEFAULT_CONFIG_PATH);
    let mut config = match berth_agent::AgentConfig::load(config_path) {
        Ok((c, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            c
        }
        Err(e) => {
            eprintln!("berth up: the local agent's configuration is invalid: {e}; no local agent.");
            return;
        }
    };
    config.endpoints = vec![endpoint];
    config.region = region;
    config.access_key_id = Some(key);
    config.secret_access_key = Some(secret);
    if std::env::var_os("ECS_DATADIR").is_none() {
        config.data_dir = data_dir.join("agent");
    }
    let cluster = config.cluster.clone();
    // All-in-one: the local agent's cluster exists (CreateCluster is idempotent).
    let ctx = berth_svc_ecs::Ctx {
        principal: Principal {
            temporary: false,
            access_key_id: "berth-up".into(),
            role: Role::Admin,
            arn: ecs.scope.root_principal(),
        },
        app: ecs,
    };
    let body = serde_json::json!({ "clusterName": cluster }).to_string();
    if let Err(e) = berth_svc_ecs::ecs::dispatch(
        &ctx,
        berth_wire::ecs::Operation::CreateCluster,
        body.as_bytes(),
    )
    .await
    {
        eprintln!("berth up: cannot create the cluster {cluster:?} for the local agent: {e}");
        return;
    }
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match berth_agent::run(config, shutdown).await {
        Ok(()) => {}
        Err(berth_agent::AgentError::Engine(e)) => {
            eprintln!(
                "berth up: Docker is not reachable ({e}); the API keeps serving, but this host runs no tasks. \
                 Start Docker (or set DOCKER_HOST) and restart berth up."
            );
        }
        Err(e) => {
            eprintln!(
                "berth up: the local agent stopped: {:#}",
                anyhow::Error::new(e)
            );
        }
    }
    tracing::info!(cluster = %cluster, "local agent stopped");
}

pub async fn run(args: ServerArgs, all_in_one: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir.resolve();
    create_private_dir(&data_dir)?;
    let etcd_user = match (&args.etcd_user, &args.etcd_password) {
        (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
        (Some(_), None) => bail!("--etcd-user needs --etcd-password (or BERTH_ETCD_PASSWORD)"),
        _ => None,
    };
    let (store, store_desc, etcd) = open_store(&args.store, &data_dir, etcd_user).await?;
    let scope = Scope::new(&args.region, &args.account_id);
    let node = format!("{}@{}", std::process::id(), args.listen);
    let metrics = Arc::new(Metrics::default());
    let presence = etcd.as_ref().map(|etcd| {
        Arc::new(EtcdPresence(berth_store_etcd::Presence::new(
            etcd,
            &format!("{}{node}", replicas::PREFIX),
            replicas::PRESENCE_TTL,
        ))) as Arc<dyn replicas::Presence>
    });
    let leadership = if let Some(etcd) = etcd {
        // Several replicas share one etcd: every replica serves the API; the elected leader runs
        // the leader-only background tasks (the service scheduler …), its commits fenced by the
        // leader key's create revision. Leadership is lost (and those tasks stop) before the
        // lease can expire, so two leaders never act at once; a stalled deposed leader's late
        // commits fail on the fence.
        let node = node.clone();
        let lease = std::time::Duration::from_secs(args.leader_lease);
        let (tx, rx) = tokio::sync::watch::channel(Leadership::follower());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let election = berth_store_etcd::LeaderElection::new(&etcd);
            loop {
                match election.campaign(leader::ELECTION, &node, lease).await {
                    Ok(guard) => {
                        tracing::info!(node = %node, token = guard.fencing_token(), "elected leader: running the service scheduler");
                        let _ = tx.send(Leadership::elected(guard.fence()));
                        metrics.is_leader.set(1);
                        metrics.leader_changes.inc();
                        let mut lost = guard.subscribe();
                        let _ = lost.wait_for(|leading| !*leading).await;
                        let _ = tx.send(Leadership::follower());
                        metrics.is_leader.set(0);
                        metrics.leader_changes.inc();
                        tracing::warn!(node = %node, "leadership lost: the service scheduler stops here");
                        drop(guard);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "leader election failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Some(rx)
    } else {
        metrics.is_leader.set(1);
        None
    };
    let registry_host = match args.registry_host.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => {
            let host = h.split_once("://").map_or(h, |(_, rest)| rest);
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                bail!("--registry-host {h:?}: expected [http[s]://]HOST[:PORT]");
            }
            Some(h.trim_end_matches('/').to_string())
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("http://{addr}");
    let cp = ControlPlane::build(ControlPlaneConfig {
        store,
        scope,
        data_dir: data_dir.clone(),
        endpoint: endpoint.clone(),
        registry_host,
        task_roles: args.task_role_access.clone(),
        allow_reset: args.allow_reset,
        ecr_lifecycle_interval: std::time::Duration::from_secs(args.ecr_lifecycle_interval.max(1)),
        leadership,
        metrics,
    })
    .await
    .with_context(|| format!("starting the control plane in {}", data_dir.display()))?;
    let first_start = bootstrap_keys(&cp.admin, &data_dir).await?;
    println!("berth control plane listening on {endpoint}");
    println!(
        "  store: {store_desc}; region {}, account {}",
        args.region, args.account_id
    );
    if let Some(msg) = first_start {
        println!("{msg}");
    }
    println!("Use it with the AWS CLI:");
    println!(
        "  export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=berth AWS_DEFAULT_REGION={}",
        data_dir.join("credentials").display(),
        args.region
    );
    println!("  aws ecs create-cluster --cluster-name default --endpoint-url {endpoint}");
    replicas::spawn(cp.ecs.clone(), node, endpoint.clone(), presence);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = all_in_one.then(|| {
        println!(
            "A local agent joins this host to the `default` cluster (ECS_CLUSTER to change it)."
        );
        tokio::spawn(run_local_agent(
            cp.admin.clone(),
            cp.ecs.clone(),
            data_dir.clone(),
            endpoint.clone(),
            args.region.clone(),
            stop_rx.clone(),
        ))
    });
    tracing::info!(%addr, "ready");
    let mut server_stop = stop_rx;
    let served = cp.serve(listener, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    });
    let signal = async move {
        crate::shutdown_signal("shutting down: finishing in-flight requests").await;
        let _ = stop_tx.send(true);
    };
    let (served, ()) = tokio::join!(served, signal);
    served.context("serving")?;
    if let Some(agent) = agent {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), agent).await;
    }
    Ok(())
}

/// This replica's announcement in etcd: a lease-bound key, gone when the replica dies.
struct EtcdPresence(berth_store_etcd::Presence);

#[async_trait::async_trait]
impl replicas::Presence for EtcdPresence {
    async fn announce(&self, value: Vec<u8>) -> Result<(), berth_store::StoreError> {
        self.0.put(value).await
    }
}
