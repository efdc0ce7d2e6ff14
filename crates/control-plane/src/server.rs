//! The HTTP front door: one `POST /` for every AWS-style service, dispatched on `X-Amz-Target`,
//! after the SigV4 check and the role check; plus `/_berth/*` operational endpoints.

use crate::app::{App, Ctx, Principal};
use crate::error::{ApiError, JSON_CONTENT_TYPE};
use crate::records::AccessKeyRecord;
use crate::repo::{keys, to_bytes};
use crate::wire::now_epoch;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use berth_store::Txn;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Largest request body accepted on the JSON APIs (ECS task definitions are limited to 64 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", post(api).get(crate::s3::root).head(crate::s3::root))
        .route("/_berth/health", get(health))
        .route("/_berth/reset", post(reset))
        .route("/metrics", get(metrics))
        .route("/v2", any(crate::registry::handle))
        .route("/v2/", any(crate::registry::handle))
        .route("/v2/{*path}", any(crate::registry::handle))
        .route("/{bucket}", any(crate::s3::bucket))
        .route("/{bucket}/", any(crate::s3::bucket))
        .route("/{bucket}/{*key}", any(crate::s3::object))
        .fallback(not_found)
        .with_state(app)
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

fn ok_json(body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    r
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

/// Verifies the signature; returns the caller.
pub(crate) fn authenticate(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, ApiError> {
    // The session is read with the secret, so a key removed in between can't pass as long-lived.
    let session = std::cell::RefCell::new(None);
    let lookup = |akid: &str| {
        let (secret, role, s) = app.keys.lookup(akid)?;
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
        None => v.principal_arn(&app.scope.account),
        Some(session) => {
            check_session(session, session_token(uri, headers).as_deref(), now_epoch())?;
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
fn check_session(
    session: &crate::records::SessionRecord,
    token: Option<&str>,
    now: f64,
) -> Result<(), ApiError> {
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

fn auth_error(e: berth_auth::AuthError) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(e.code(), e.message()).with_status(status)
}

async fn api(
    State(app): State<Arc<App>>,
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
        .unwrap_or("")
        .to_string();
    let result = handle(&app, &method, &uri, &headers, body, &target).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    app.metrics.observe(
        &target,
        result.as_ref().map(|_| "ok").unwrap_or_else(|e| &e.code),
        elapsed_ms / 1000.0,
    );
    match &result {
        Err(e) if e.status.is_server_error() => {
            tracing::error!(request_id = %rid, target = %target, code = %e.code, message = %e.message, elapsed_ms, "request failed")
        }
        Err(e) => {
            tracing::debug!(request_id = %rid, target = %target, code = %e.code, elapsed_ms, "request rejected")
        }
        Ok(_) => {
            tracing::debug!(request_id = %rid, target = %target, status = status.as_u16(), elapsed_ms, "request served")
        }
    }
    let resp = match result {
        Ok(Reply::Json(body)) => ok_json(body),
        Ok(Reply::Stream(resp)) => resp,
        Err(e) => e.into_response(),
    };
    finish(resp, &rid)
}

/// A successful answer: JSON, or a streaming response (StartLiveTail's event stream).
enum Reply {
    Json(Vec<u8>),
    Stream(Response),
}

async fn handle(
    app: &Arc<App>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    target: &str,
) -> Result<Reply, ApiError> {
    let limit = if target.starts_with(crate::logs::TARGET_PREFIX) {
        crate::logs::MAX_BODY_BYTES
    } else if target.starts_with(crate::ecr::TARGET_PREFIX) {
        crate::ecr::MAX_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let body = read_body(body, limit).await?;
    let principal = authenticate(app, method, uri, headers, &body)?;
    let Some((prefix, op)) = target.split_once('.') else {
        return Err(ApiError::unknown_operation(target));
    };
    berth_auth::authorize(principal.role, prefix, op)
        .map_err(|e| auth_error(e.with_principal(principal.arn.clone())))?;
    let ctx = Ctx {
        app: app.clone(),
        principal,
    };
    if prefix == crate::logs::TARGET_PREFIX && op == "StartLiveTail" {
        return crate::logs::live_tail::start_live_tail(&ctx, &body)
            .await
            .map(Reply::Stream);
    }
    let out = match prefix {
        crate::ecs::TARGET_PREFIX => match berth_ecs_api::ecs::Operation::from_name(op) {
            Some(op) => crate::ecs::dispatch(&ctx, op, &body).await,
            None => Err(ApiError::unknown_operation(target)),
        },
        crate::admin::TARGET_PREFIX => crate::admin::dispatch(&ctx, op, &body).await,
        berth_agent_api::TARGET_PREFIX if op == berth_agent_api::POLL_OPERATION => {
            crate::agents::poll(&ctx, &body).await
        }
        berth_agent_api::TARGET_PREFIX if op == berth_agent_api::TASK_CREDENTIALS_OPERATION => {
            crate::task_credentials::get_task_role_credentials(&ctx, &body).await
        }
        crate::logs::TARGET_PREFIX => crate::logs::dispatch(&ctx, op, &body).await,
        crate::secrets::SECRETS_MANAGER_PREFIX => {
            crate::secrets::dispatch_secrets_manager(&ctx, op, &body).await
        }
        crate::secrets::SSM_PREFIX => crate::secrets::dispatch_ssm(&ctx, op, &body).await,
        crate::ecr::TARGET_PREFIX => crate::ecr::dispatch(&ctx, op, &body).await,
        _ => Err(ApiError::unknown_operation(target)),
    };
    out.map(Reply::Json)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.current_revision().await {
        Ok(rev) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "ok", "store": app.store.backend_name(), "revision": rev, "leader": app.is_leader()})
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

/// Wipes all state back to a fresh server, keeping the access keys (so the caller can go on).
/// Admin-signed, and only when the server was started with `--allow-reset`.
async fn reset(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id();
    let result = async {
        let body = read_body(body, MAX_BODY_BYTES).await?;
        let p = authenticate(&app, &method, &uri, &headers, &body)?;
        if p.role != berth_auth::Role::Admin {
            return Err(ApiError::new(
                "AccessDeniedException",
                "Only admin keys may reset berth.",
            ));
        }
        if !app.allow_reset {
            return Err(ApiError::new(
                "AccessDeniedException",
                "Reset is disabled. Start berth with --allow-reset to enable POST /_berth/reset.",
            )
            .with_status(StatusCode::FORBIDDEN));
        }
        let saved = app.repo.list::<AccessKeyRecord>(keys::ACCESS_KEYS).await?;
        app.store.wipe().await?;
        if let Some(logs) = app.logs.get() {
            let logs = logs.clone();
            tokio::task::spawn_blocking(move || logs.wipe())
                .await
                .map_err(|e| ApiError::server(e.to_string()))?
                .map_err(ApiError::from)?;
        }
        let mut txn = Txn::new();
        for k in &saved {
            txn = txn.put(k.key.clone(), to_bytes(&k.value));
        }
        app.repo.commit(txn).await?;
        app.keys.reload(&app.repo).await?;
        tracing::warn!(principal = %p.arn, "all state reset");
        Ok(b"{}".to_vec())
    }
    .await;
    finish(
        match result {
            Ok(b) => ok_json(b),
            Err(e) => e.into_response(),
        },
        &rid,
    )
}

async fn not_found(uri: Uri) -> Response {
    let rid = request_id();
    finish(
        ApiError::new(
            "UnknownOperationException",
            format!("No route for {}", uri.path()),
        )
        .with_status(StatusCode::NOT_FOUND)
        .into_response(),
        &rid,
    )
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The key watch holds the store: it must end with the server so the store can close.
    let watch = app.keys.spawn_watch(app.repo.clone());
    let scheduler = crate::service_scheduler::spawn(app.clone());
    let generations = crate::agents::spawn_generation_watch(app.clone());
    let closing = app.closing.clone();
    let result = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.cancel();
        })
        .await;
    watch.abort();
    scheduler.abort();
    generations.abort();
    let _ = generations.await;
    let _ = watch.await;
    let _ = scheduler.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: f64) -> crate::records::SessionRecord {
        crate::records::SessionRecord {
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
}
