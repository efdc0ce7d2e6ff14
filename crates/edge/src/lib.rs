//! berth-edge: the HTTP front door every request passes.
//!
//! One axum router: `POST /` for the RPC protocols, every other path for the REST services,
//! the registered services' extra routes (`/v2`), and berth's own `/_berth/health`,
//! `/_berth/reset` and `/metrics`. A request is routed **by its SigV4 credential scope's service
//! name first** (several services share `POST /`, and REST paths collide), then by
//! `X-Amz-Target` prefix; the service's [`Descriptor`] gives the body limit, the protocol (so the
//! error renderer) and the operations it knows. Then: signature (and a temporary key's session),
//! role check, the service's `call`, the answer in the protocol's form, a request id, metrics.
//!
//! Architecture invariant: the edge knows no service's internals — only the [`Service`] trait
//! and the descriptors `berth-server` registers. Adding a service never changes this crate.

pub mod render;
pub mod scope;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_core::Scope;
use berth_service::auth::{access_key, AccessKeyRecord, KeyCache, SessionRecord, ACCESS_KEYS};
use berth_service::leader::Leader;
use berth_service::metrics::Metrics;
use berth_service::repo::{to_bytes, Repo};
use berth_service::{ApiError, Authenticator, Call, Principal, Protocol, Reply, Service};
use berth_store::{StateStore, Txn};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tower::ServiceExt as _;

/// Largest body of `/_berth/*` requests.
const ADMIN_BODY_BYTES: usize = 1024 * 1024;

/// Checks signatures against the access keys (and a temporary key's session token and expiry).
/// Shared by the edge and the REST services that read their own bodies (S3).
#[derive(Clone)]
pub struct KeyAuthenticator {
    keys: KeyCache,
    account: String,
}

impl KeyAuthenticator {
    pub fn new(keys: KeyCache, account: impl Into<String>) -> Self {
        Self {
            keys,
            account: account.into(),
        }
    }
}

impl Authenticator for KeyAuthenticator {
    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        // The session is read with the secret, so a key removed in between can't pass as long-lived.
        let session = std::cell::RefCell::new(None);
        let lookup = |akid: &str| {
            let (secret, role, s) = self.keys.lookup(akid)?;
            *session.borrow_mut() = s;
            Some((secret, role))
        };
        let v = berth_auth::verify(
            method.as_str(),
            uri,
            headers,
            body,
            &lookup,
            SystemTime::now(),
        )
        .map_err(auth_error)?;
        let session = session.into_inner();
        let arn = match &session {
            None => v.principal_arn(&self.account),
            Some(session) => {
                check_session(
                    session,
                    session_token(uri, headers).as_deref(),
                    berth_service::now_epoch(),
                )?;
                session.principal_arn.clone()
            }
        };
        Ok(Principal {
            arn,
            access_key_id: v.access_key_id,
            role: v.role,
            temporary: session.is_some(),
        })
    }
}

/// The session token a request carries: the `X-Amz-Security-Token` header, or the query
/// parameter of that name in a presigned URL.
fn session_token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-amz-security-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v.into_owned())
}

/// A temporary key is good only with its own session token and before it expires (the AWS
/// errors for each case).
fn check_session(session: &SessionRecord, token: Option<&str>, now: f64) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let matches = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.token.as_bytes())));
    if !matches {
        return Err(auth_error(berth_auth::AuthError::UnrecognizedClient));
    }
    if now >= session.expires_at {
        return Err(ApiError::new(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ));
    }
    Ok(())
}

/// An authentication or authorization failure as AWS answers it.
pub fn auth_error(e: berth_auth::AuthError) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(e.code(), e.message()).with_status(status)
}

/// What the edge is built from (besides the services).
pub struct EdgeConfig {
    pub store: Arc<dyn StateStore>,
    pub repo: Repo,
    pub keys: KeyCache,
    pub scope: Scope,
    pub metrics: Arc<Metrics>,
    pub leader: Arc<Leader>,
    /// `POST /_berth/reset` is only served when the operator opted in (`--allow-reset`).
    pub allow_reset: bool,
    /// Cancelled when the server starts shutting down, so long-lived responses (Live Tail
    /// streams) end instead of holding the graceful shutdown open.
    pub closing: tokio_util::sync::CancellationToken,
}

/// One region's routing table: its services and the maps that route to them.
#[derive(Default)]
pub struct Table {
    services: Vec<Arc<dyn Service>>,
    /// Signing name → service (index into `services`).
    by_signing_name: HashMap<&'static str, usize>,
    /// `X-Amz-Target` prefix → service: for requests without a credential scope, so their
    /// authentication error still comes in the right protocol.
    by_prefix: HashMap<&'static str, usize>,
    /// The REST service unsigned path requests go to (S3 answers anonymous requests).
    default_rest: Option<usize>,
    rest: Vec<Option<Router>>,
    extra: Vec<Router>,
}

impl Table {
    /// Adds a service. Two services claiming one signing name or target prefix is a wiring
    /// mistake: the later registration panics at startup, never at request time.
    pub fn register(&mut self, service: Arc<dyn Service>) -> &mut Self {
        let d = service.descriptor();
        let i = self.services.len();
        for name in d.signing_names {
            let prev = self.by_signing_name.insert(name, i);
            assert!(prev.is_none(), "signing name {name} registered twice");
        }
        for p in d.target_prefixes {
            let prev = self.by_prefix.insert(p, i);
            assert!(prev.is_none(), "target prefix {p} registered twice");
        }
        let rest = service.rest_routes();
        if rest.is_some() && self.default_rest.is_none() && d.protocol == Protocol::RestXml {
            self.default_rest = Some(i);
        }
        self.rest.push(rest);
        if let Some(r) = service.extra_routes() {
            self.extra.push(r);
        }
        self.services.push(service);
        self
    }

    fn service_for(
        &self,
        scope: Option<&scope::CredentialScope<'_>>,
        prefix: &str,
    ) -> Option<&Arc<dyn Service>> {
        let i = match scope {
            Some(s) => self.by_signing_name.get(&*s.service).copied(),
            None => self.by_prefix.get(prefix).copied(),
        }?;
        self.services.get(i)
    }

    /// The REST router for a request signed for `signing_name` (none, or not a REST service:
    /// the default one, S3).
    fn rest_for(&self, signing_name: Option<&str>) -> Option<Router> {
        signing_name
            .and_then(|n| self.by_signing_name.get(n).copied())
            .filter(|i| self.rest[*i].is_some())
            .or(self.default_rest)
            .and_then(|i| self.rest[i].clone())
    }
}

/// Builds the services of a region other than the home region, the first time a request signed
/// for it arrives (or at startup, for the regions the store already holds).
#[async_trait::async_trait]
pub trait RegionFactory: Send + Sync {
    async fn build(&self, region: &str) -> Result<Table, ApiError>;

    /// After `POST /_berth/reset` wiped the store, for each region still open: restore what
    /// the factory keeps in the store about it (so it is reopened at the next start).
    async fn after_reset(&self, _region: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

/// At most this many regions besides the home region: a client cannot grow the server without
/// bound by signing for made-up regions (AWS has fewer).
pub const MAX_REGIONS: usize = 48;

/// Does `region` look like an AWS region name (`us-east-2`, `eu-central-1`, `us-gov-west-1`)?
pub fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && region.len() <= 32
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .parse::<u8>()
            .is_ok_and(|n| (1..=99).contains(&n))
}

fn invalid_region(region: &str) -> ApiError {
    ApiError::new(
        "InvalidSignatureException",
        format!("Credential should be scoped to a valid region, not '{region}'. "),
    )
}

/// The front door: the home region's routing table, the other regions' (built on demand), and
/// the routes outside the AWS protocols.
pub struct Edge {
    cfg: EdgeConfig,
    auth: KeyAuthenticator,
    home: Arc<Table>,
    regions: tokio::sync::RwLock<HashMap<String, Arc<Table>>>,
    factory: Option<Arc<dyn RegionFactory>>,
}

impl Edge {
    /// An edge serving `home` (the home region's services; the region is `cfg.scope.region`)
    /// and, when `factory` is given, every other region as its own namespace.
    pub fn new(cfg: EdgeConfig, home: Table, factory: Option<Arc<dyn RegionFactory>>) -> Self {
        let auth = KeyAuthenticator::new(cfg.keys.clone(), cfg.scope.account.clone());
        Self {
            cfg,
            auth,
            home: Arc::new(home),
            regions: Default::default(),
            factory,
        }
    }

    /// The signature check, for REST services that read their own bodies; usable before the
    /// edge is built.
    pub fn authenticator(keys: &KeyCache, scope: &Scope) -> Arc<dyn Authenticator> {
        Arc::new(KeyAuthenticator::new(keys.clone(), scope.account.clone()))
    }

    /// The routing table of `region`: the home table, or the region's own, built on first use.
    pub async fn table(&self, region: &str) -> Result<Arc<Table>, ApiError> {
        if region == self.cfg.scope.region {
            return Ok(self.home.clone());
        }
        if let Some(t) = self.regions.read().await.get(region) {
            return Ok(t.clone());
        }
        let Some(factory) = &self.factory else {
            return Ok(self.home.clone());
        };
        if !valid_region(region) {
            return Err(invalid_region(region));
        }
        let mut regions = self.regions.write().await;
        if let Some(t) = regions.get(region) {
            return Ok(t.clone());
        }
        if regions.len() >= MAX_REGIONS {
            return Err(invalid_region(region));
        }
        let table = Arc::new(factory.build(region).await?);
        tracing::info!(region, "region opened");
        regions.insert(region.to_string(), table.clone());
        Ok(table)
    }

    /// Every region's table, the home region's first.
    async fn tables(&self) -> Vec<Arc<Table>> {
        let mut all = vec![self.home.clone()];
        all.extend(self.regions.read().await.values().cloned());
        all
    }

    /// The axum router for all of it.
    pub fn router(self: &Arc<Self>) -> Router {
        let mut r = Router::new()
            .route("/", post(rpc).fallback(rest))
            .route("/_berth/health", get(health))
            .route("/_berth/reset", post(reset))
            .route("/metrics", get(metrics))
            .fallback(rest)
            .with_state(self.clone());
        for extra in &self.home.extra {
            r = r.merge(extra.clone());
        }
        r
    }

    /// Serves on `listener` until `shutdown` resolves; in-flight requests finish first. The
    /// access-key watch runs as long as the server does.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let watch = self.cfg.keys.spawn_watch(self.cfg.repo.clone());
        let closing = self.cfg.closing.clone();
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                closing.cancel();
            })
            .await;
        watch.abort();
        let _ = watch.await;
        result
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn finish(mut resp: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            "RequestEntityTooLargeException",
            format!("Request body is larger than the {limit} bytes allowed."),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })
}

/// `POST /`: an RPC call (awsJson's `X-Amz-Target`, awsQuery's `Action`).
async fn rpc(
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id();
    let started = Instant::now();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cred = scope::credential_scope(&headers, &uri);
    let prefix = target.split_once('.').map_or(target, |(p, _)| p);
    // Every region has the same services: the home table's descriptor decides the body limit
    // and the protocol before the region's own table is looked up (after authentication, so an
    // unauthenticated request never opens a region).
    let Some(service) = edge.home.service_for(cred.as_ref(), prefix) else {
        // No service answers this signing name (or, unsigned, this target): awsJson's form, as
        // most of the endpoint speaks it.
        let e = match read_body(body, ADMIN_BODY_BYTES).await {
            Ok(b) => match edge.auth.authenticate(&method, &uri, &headers, &b) {
                Ok(_) => ApiError::unknown_operation(target),
                Err(e) => e,
            },
            Err(e) => e,
        };
        edge.cfg
            .metrics
            .observe(target, false, &e.code, started.elapsed().as_secs_f64());
        return finish(render::error(Protocol::AwsJson1_1, &e, "", &rid), &rid);
    };
    let d = service.descriptor();
    let region = cred
        .as_ref()
        .map_or(edge.cfg.scope.region.as_str(), |c| &*c.region);
    let mut known = false;
    let result = call(
        &edge,
        service,
        cred.as_ref(),
        &method,
        &uri,
        &headers,
        body,
        target,
        region,
        &mut known,
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    edge.cfg.metrics.observe(
        target,
        known,
        result.as_ref().map(|_| "ok").unwrap_or_else(|e| &e.code),
        elapsed,
    );
    let elapsed_ms = elapsed * 1000.0;
    match &result {
        Err(e) if e.status.is_server_error() => {
            tracing::error!(request_id = %rid, target = %target, code = %e.code, message = %e.message, elapsed_ms, "request failed")
        }
        Err(e) => {
            tracing::debug!(request_id = %rid, target = %target, code = %e.code, error = %e.message, elapsed_ms, "request rejected")
        }
        Ok(_) => tracing::debug!(request_id = %rid, target = %target, elapsed_ms, "request served"),
    }
    let resp = match result {
        Ok(Reply::Json(body)) => render::ok(d.protocol, body),
        Ok(Reply::Response(r)) => r,
        Err(e) => render::error(d.protocol, &e, d.xml_namespace, &rid),
    };
    finish(resp, &rid)
}

#[allow(clippy::too_many_arguments)] // the parts of one request, taken apart once by `rpc`
async fn call(
    edge: &Edge,
    home_service: &Arc<dyn Service>,
    cred: Option<&scope::CredentialScope<'_>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    target: &str,
    region: &str,
    known: &mut bool,
) -> Result<Reply, ApiError> {
    let d = home_service.descriptor();
    let body = read_body(body, d.body_limit).await?;
    let principal = edge.auth.authenticate(method, uri, headers, &body)?;
    let action: String;
    let (prefix, op) = match d.protocol {
        Protocol::AwsQuery => {
            action = query_action(&body)
                .ok_or_else(|| ApiError::new("MissingAction", "Missing Action"))?
                .to_string();
            (
                d.target_prefixes.first().copied().unwrap_or(d.name),
                action.as_str(),
            )
        }
        _ => match target.split_once('.') {
            Some((p, op)) if d.target_prefixes.contains(&p) => (p, op),
            _ => return Err(ApiError::unknown_operation(target)),
        },
    };
    if !(d.knows)(prefix, op) {
        return Err(ApiError::unknown_operation(target));
    }
    *known = true;
    berth_auth::authorize(principal.role, prefix, op)
        .map_err(|e| auth_error(e.with_principal(principal.arn.clone())))?;
    let table;
    let service = if region == edge.cfg.scope.region {
        home_service
    } else {
        table = edge.table(region).await?;
        table
            .service_for(cred, prefix)
            .ok_or_else(|| ApiError::unknown_operation(target))?
    };
    service
        .call(Call {
            principal,
            prefix,
            operation: op,
            body,
        })
        .await
}

/// awsQuery's operation: the form body's `Action`.
fn query_action(body: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(body).ok()?;
    s.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Any other path: the REST service the request is signed for (unsigned: the default one,
/// S3). S3 is global, as in AWS: path requests are served by the home region's table.
async fn rest(State(edge): State<Arc<Edge>>, req: Request) -> Response {
    let router = {
        let cred = scope::credential_scope(req.headers(), req.uri());
        edge.home.rest_for(cred.as_ref().map(|c| &*c.service))
    };
    match router {
        Some(router) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        None => not_found(req.uri()),
    }
}

fn not_found(uri: &Uri) -> Response {
    let rid = request_id();
    let e = ApiError::new(
        "UnknownOperationException",
        format!("No route for {}", uri.path()),
    )
    .with_status(StatusCode::NOT_FOUND);
    finish(render::error(Protocol::AwsJson1_1, &e, "", &rid), &rid)
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.cfg.metrics.render(),
    )
        .into_response()
}

async fn health(State(edge): State<Arc<Edge>>) -> Response {
    let store = &edge.cfg.store;
    match store.current_revision().await {
        Ok(rev) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "ok", "store": store.backend_name(), "revision": rev, "leader": edge.cfg.leader.is_leader()})
                .to_string(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "unavailable", "error": e.to_string()}).to_string(),
        )
            .into_response(),
    }
}

/// Wipes all state back to a fresh server, keeping the access keys (so the caller can go on);
/// each service then drops what it keeps outside the store. Admin-signed, and only when the
/// server was started with `--allow-reset`.
async fn reset(
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id();
    let result = async {
        let body = read_body(body, ADMIN_BODY_BYTES).await?;
        let p = edge.auth.authenticate(&method, &uri, &headers, &body)?;
        if p.role != berth_auth::Role::Admin {
            return Err(ApiError::new(
                "AccessDeniedException",
                "Only admin keys may reset berth.",
            ));
        }
        if !edge.cfg.allow_reset {
            return Err(ApiError::new(
                "AccessDeniedException",
                "Reset is disabled. Start berth with --allow-reset to enable POST /_berth/reset.",
            )
            .with_status(StatusCode::FORBIDDEN));
        }
        let repo = &edge.cfg.repo;
        let saved = repo.list::<AccessKeyRecord>(ACCESS_KEYS).await?;
        edge.cfg.store.wipe().await?;
        for table in edge.tables().await {
            for s in &table.services {
                s.after_reset().await?;
            }
        }
        if let Some(factory) = &edge.factory {
            let open: Vec<String> = edge.regions.read().await.keys().cloned().collect();
            for region in open {
                factory.after_reset(&region).await?;
            }
        }
        let mut txn = Txn::new();
        for k in &saved {
            txn = txn.put(access_key(&k.value.access_key_id), to_bytes(&k.value));
        }
        repo.commit(txn).await?;
        edge.cfg.keys.reload(repo).await?;
        tracing::warn!(principal = %p.arn, "all state reset");
        Ok(b"{}".to_vec())
    }
    .await;
    finish(
        match result {
            Ok(b) => render::ok(Protocol::AwsJson1_1, b),
            Err(e) => render::error(Protocol::AwsJson1_1, &e, "", &rid),
        },
        &rid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: f64) -> SessionRecord {
        SessionRecord {
            token: "the-token".into(),
            expires_at,
            principal_arn: "arn:aws:sts::000000000000:assumed-role/app/t".into(),
            role_arn: "arn:aws:iam::000000000000:role/app".into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/t".into(),
        }
    }

    #[test]
    fn temporary_keys_need_their_token_and_time() {
        let s = session(1000.0);
        assert!(check_session(&s, Some("the-token"), 999.0).is_ok());
        let missing = check_session(&s, None, 999.0).unwrap_err();
        assert_eq!(missing.code, "UnrecognizedClientException");
        let other = check_session(&s, Some("another-token"), 999.0).unwrap_err();
        assert_eq!(other.code, "UnrecognizedClientException");
        let expired = check_session(&s, Some("the-token"), 1000.0).unwrap_err();
        assert_eq!(expired.code, "ExpiredTokenException");
        assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn session_tokens_come_from_the_header_or_a_presigned_query() {
        let mut h = HeaderMap::new();
        let uri: Uri = "/?X-Amz-Security-Token=q%2Btoken&x=1".parse().unwrap();
        assert_eq!(session_token(&uri, &h).as_deref(), Some("q+token"));
        h.insert("x-amz-security-token", HeaderValue::from_static("h-token"));
        assert_eq!(session_token(&uri, &h).as_deref(), Some("h-token"));
        assert_eq!(
            session_token(&"/".parse().unwrap(), &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn query_actions() {
        assert_eq!(
            query_action(b"Version=2015-12-01&Action=DescribeLoadBalancers"),
            Some("DescribeLoadBalancers")
        );
        assert_eq!(query_action(b"Action=&Version=1"), None);
        assert_eq!(query_action(b"Action=A%20B"), None);
        assert_eq!(query_action(b"Version=1"), None);
    }
}
