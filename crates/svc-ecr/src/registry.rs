//! The OCI distribution API v1.1 (`/v2/…`), the registry protocol `docker login/push/pull`
//! speak, on berth's one listener. Storage is `berth-registry`'s blob store plus the metadata in
//! `crate::model`, shared with the ECR JSON API.
//!
//! Auth: HTTP Basic with user `AWS` and a token from ECR's GetAuthorizationToken
//! (`crate::token`); admin keys push and pull, agent and readonly keys pull. Requests
//! without valid credentials get 401 with `WWW-Authenticate: Basic realm=…`, which makes
//! `docker login` send the credentials. Repositories must exist (ECR does not create them on
//! push): anything else is `NAME_UNKNOWN`.

use crate::model::{self, blob_store, DeleteError, PutError, PutOutcome};
use crate::Ecr;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_auth::Role;
use berth_registry::{manifest, names, Digest, RegistryError};
use berth_service::ApiError;
use futures::TryStreamExt;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Query parameter carrying a token in GetDownloadUrlForLayer URLs (blob GET/HEAD only).
pub const URL_TOKEN_PARAM: &str = "X-Berth-Registry-Token";

const API_VERSION: &str = "registry/2.0";

/// An OCI distribution error (`{"errors":[{"code","message","detail"}]}`).
#[derive(Debug)]
pub struct RegistryHttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: serde_json::Value,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> RegistryHttpError {
    RegistryHttpError {
        status,
        code,
        message: message.into(),
        detail: serde_json::Value::Null,
    }
}

impl RegistryHttpError {
    fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = d;
        self
    }
}

impl From<ApiError> for RegistryHttpError {
    fn from(e: ApiError) -> Self {
        if e.status.is_server_error() {
            tracing::error!(code = %e.code, message = %e.message, "registry request failed");
        }
        err(
            if e.status.is_server_error() {
                e.status
            } else {
                StatusCode::BAD_REQUEST
            },
            "UNKNOWN",
            e.message,
        )
    }
}

impl IntoResponse for RegistryHttpError {
    fn into_response(self) -> Response {
        let mut e = serde_json::json!({"code": self.code, "message": self.message});
        if !self.detail.is_null() {
            e["detail"] = self.detail;
        }
        let body = serde_json::json!({ "errors": [e] });
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth registry\""),
            );
        }
        r
    }
}

type Result<T, E = RegistryHttpError> = std::result::Result<T, E>;

fn storage(e: RegistryError) -> RegistryHttpError {
    match e {
        RegistryError::DigestInvalid(d) | RegistryError::UnsupportedAlgorithm(d) => err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {d}"),
        ),
        RegistryError::DigestMismatch { expected, actual } => err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        )
        .detail(serde_json::json!({"expected": expected, "actual": actual})),
        RegistryError::BlobUnknown(d) => err(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(serde_json::json!({"digest": d})),
        RegistryError::UploadUnknown(_) => err(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
        RegistryError::RangeInvalid { .. } => err(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
            e.to_string(),
        ),
        RegistryError::SizeInvalid { .. } => err(
            StatusCode::BAD_REQUEST,
            "SIZE_INVALID",
            "provided length did not match content length",
        ),
        RegistryError::ManifestInvalid(m) => err(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m),
        RegistryError::Body(_) => err(
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
            "the request body was interrupted",
        ),
        RegistryError::Io { .. } => model::storage_error(e).into(),
    }
}

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

fn unauthorized(msg: &str) -> RegistryHttpError {
    err(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg)
}

/// Checks the Basic credentials (or, for blob reads, a URL token); returns the caller's role.
fn authenticate(
    app: &Ecr,
    headers: &HeaderMap,
    query: &[(String, String)],
    blob_read: bool,
) -> Result<Role> {
    let token = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(h) => {
            let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(unauthorized("authentication required: use Basic auth with user AWS and a token from aws ecr get-login-password"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| unauthorized("malformed Basic credentials"))?;
            let raw = String::from_utf8(raw).map_err(|_| unauthorized("malformed Basic credentials"))?;
            match raw.split_once(':') {
                Some(("AWS", t)) => t.to_string(),
                _ => return Err(unauthorized("the user name must be AWS")),
            }
        }
        None => match query.iter().find(|(k, _)| k == URL_TOKEN_PARAM) {
            Some((_, t)) if blob_read => t.clone(),
            _ => {
                return Err(unauthorized(
                    "authentication required: run aws ecr get-login-password | docker login --username AWS --password-stdin <registry>",
                ))
            }
        },
    };
    let (_, role) = crate::token::verify(app, &token).map_err(|e| unauthorized(&e.to_string()))?;
    Ok(role)
}

fn require(role: Role, access: Access, name: &str) -> Result<()> {
    if access == Access::Push && role != Role::Admin {
        return Err(err(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!("requested access to the resource is denied: {} keys may pull from {name} but not push", role.as_str()),
        ));
    }
    Ok(())
}

/// A parsed `/v2/…` path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
}

fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    let rest = match rest {
        "" | "/" => return Some(Route::Base),
        r => r.strip_prefix('/')?,
    };
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads(name.to_string()));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(name.to_string(), last.to_string()));
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return Some(Route::Blob(name.to_string(), last.to_string()));
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Some(Route::Manifest(name.to_string(), last.to_string()));
    }
    if last == "list" {
        if let Some(name) = head.strip_suffix("/tags") {
            return Some(Route::Tags(name.to_string()));
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hexval = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hexval(b[i + 1]) * 16 + hexval(b[i + 2]));
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn q<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in headers {
        h.insert(*k, hv(v));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The `/v2/` entry point (every method, every path below `/v2`).
pub async fn handle(
    State(app): State<Arc<Ecr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let result = serve(&app, &method, &uri, &headers, body).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(method = %method, path = uri.path(), code = e.code, status = e.status.as_u16(), "registry request rejected");
            e.into_response()
        }
    };
    tracing::debug!(method = %method, path = uri.path(), status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "registry request");
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

async fn serve(
    app: &Arc<Ecr>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let route = parse_route(uri.path()).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
    })?;
    let query = parse_query(uri);
    let blob_read =
        matches!(route, Route::Blob(..)) && (method == Method::GET || method == Method::HEAD);
    let role = authenticate(app, headers, &query, blob_read)?;
    let access = if method == Method::GET || method == Method::HEAD {
        Access::Pull
    } else {
        Access::Push
    };
    let name = match &route {
        Route::Base | Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _) => Some(n.clone()),
    };
    if let Some(n) = &name {
        if !names::valid_repository_name(n) {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "NAME_INVALID",
                "invalid repository name",
            )
            .detail(serde_json::json!({"name": n})));
        }
        require(role, access, n)?;
        if model::get_repo(app, n).await?.is_none() {
            return Err(err(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository {n} not known to registry; create it with aws ecr create-repository"))
                .detail(serde_json::json!({"name": n})));
        }
    }
    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(json(StatusCode::OK, serde_json::json!({})))
        }
        (Route::Catalog, Method::GET) => catalog(app, &query).await,
        (Route::Tags(n), Method::GET) => tags_list(app, &n, &query).await,
        (Route::Blob(n, d), Method::GET | Method::HEAD) => {
            get_blob(app, &n, &d, method == Method::HEAD, headers).await
        }
        (Route::Blob(n, d), Method::DELETE) => delete_blob(app, &n, &d).await,
        (Route::Uploads(n), Method::POST) => start_upload(app, &n, &query, headers, body).await,
        (Route::Upload(n, id), Method::PATCH) => patch_upload(app, &n, &id, headers, body).await,
        (Route::Upload(n, id), Method::PUT) => put_upload(app, &n, &id, &query, body).await,
        (Route::Upload(n, id), Method::GET) => upload_status(app, &n, &id).await,
        (Route::Upload(n, id), Method::DELETE) => {
            blob_store(app).cancel(&id, &n).await.map_err(storage)?;
            Ok(empty(StatusCode::NO_CONTENT, &[]))
        }
        (Route::Manifest(n, r), Method::GET | Method::HEAD) => {
            get_manifest(app, &n, &r, method == Method::HEAD).await
        }
        (Route::Manifest(n, r), Method::PUT) => put_manifest(app, &n, &r, headers, body).await,
        (Route::Manifest(n, r), Method::DELETE) => delete_manifest(app, &n, &r).await,
        _ => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
        )),
    }
}

fn digest_arg(d: &str) -> Result<Digest> {
    d.parse::<Digest>().map_err(storage)
}

/// One page of sorted `items` after `last`, at most `n`; the `Link` header for the next page.
fn page(
    items: Vec<String>,
    query: &[(String, String)],
    base: &str,
) -> Result<(Vec<String>, Option<String>)> {
    let n = match q(query, "n") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
            )
        })?),
    };
    let last = q(query, "last").filter(|l| !l.is_empty());
    let mut rest: Vec<String> = items
        .into_iter()
        .filter(|i| last.is_none_or(|l| i.as_str() > l))
        .collect();
    let mut link = None;
    if let Some(n) = n {
        if rest.len() > n {
            rest.truncate(n);
            if let Some(l) = rest.last() {
                link = Some(format!("<{base}?n={n}&last={l}>; rel=\"next\""));
            }
        }
    }
    Ok((rest, link))
}

async fn catalog(app: &Ecr, query: &[(String, String)]) -> Result<Response> {
    let repos = app
        .repo
        .list::<model::RepositoryRecord>(model::keys::REPOS)
        .await?;
    let names = repos.into_iter().map(|r| r.value.name).collect();
    let (names, link) = page(names, query, "/v2/_catalog")?;
    let mut r = json(StatusCode::OK, serde_json::json!({"repositories": names}));
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, hv(&l));
    }
    Ok(r)
}

async fn tags_list(app: &Ecr, name: &str, query: &[(String, String)]) -> Result<Response> {
    let tags = model::tags_of(app, name)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let (tags, link) = page(tags, query, &format!("/v2/{name}/tags/list"))?;
    let mut r = json(
        StatusCode::OK,
        serde_json::json!({"name": name, "tags": tags}),
    );
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, hv(&l));
    }
    Ok(r)
}

/// Parses `bytes=<start>-<end?>` against a blob of `len` bytes.
fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, len.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

async fn get_blob(
    app: &Ecr,
    name: &str,
    d: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let digest = digest_arg(d)?;
    let unknown = || {
        err(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(serde_json::json!({"digest": d}))
    };
    // A HEAD is how a push asks "do you have it?": keep what it will reference from GC.
    let present = if head {
        model::confirm_blob(app, name, &digest).await?
    } else {
        model::blob_in_repo(app, name, &digest).await?
    };
    if present.is_none() {
        return Err(unknown());
    }
    let (mut file, len) = blob_store(app).open_blob(&digest).await.map_err(storage)?;
    let mut status = StatusCode::OK;
    let (mut start, mut count) = (0u64, len);
    let mut hdrs: Vec<(&'static str, String)> = vec![
        ("Docker-Content-Digest", digest.to_string()),
        ("Accept-Ranges", "bytes".into()),
        ("ETag", format!("\"{digest}\"")),
        ("Content-Type", "application/octet-stream".into()),
    ];
    if let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        match parse_range(r, len) {
            Some((s, e)) => {
                status = StatusCode::PARTIAL_CONTENT;
                start = s;
                count = e - s + 1;
                hdrs.push(("Content-Range", format!("bytes {s}-{e}/{len}")));
            }
            None => {
                let mut resp = err(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    "invalid content range",
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, hv(&format!("bytes */{len}")));
                return Ok(resp);
            }
        }
    }
    let body = if head {
        Body::empty()
    } else {
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| {
                    storage(RegistryError::Io {
                        path: d.into(),
                        source: e,
                    })
                })?;
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file.take(count),
            256 * 1024,
        ))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in hdrs {
        h.insert(k, hv(&v));
    }
    h.insert(header::CONTENT_LENGTH, hv(&count.to_string()));
    Ok(resp)
}

async fn delete_blob(app: &Arc<Ecr>, name: &str, d: &str) -> Result<Response> {
    let digest = digest_arg(d)?;
    if !model::unlink_blob(app, name, &digest).await? {
        return Err(err(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(serde_json::json!({"digest": d})));
    }
    model::spawn_gc(app);
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

fn body_stream(
    body: Body,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Send {
    body.into_data_stream().map_err(std::io::Error::other)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest.to_string()),
        ],
    )
}

fn upload_accepted(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    empty(
        status,
        &[
            ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("Range", format!("0-{}", offset.saturating_sub(1))),
            ("Docker-Upload-UUID", id.to_string()),
        ],
    )
}

async fn start_upload(
    app: &Ecr,
    name: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let store = blob_store(app);
    if let (Some(mount), Some(from)) = (q(query, "mount"), q(query, "from")) {
        if let Ok(d) = mount.parse::<Digest>() {
            // Mounting needs pull access to `from` (every authenticated key has it).
            if names::valid_repository_name(from) && model::get_repo(app, from).await?.is_some() {
                if let Some(size) = model::confirm_blob(app, from, &d).await? {
                    model::link_blob(app, name, &d, size).await?;
                    store.touch(&d).await.map_err(storage)?;
                    tracing::debug!(repository = name, from, digest = %d, "blob mounted");
                    return Ok(blob_created(name, &d));
                }
            }
        }
    }
    if let Some(d) = q(query, "digest") {
        let digest = digest_arg(d)?;
        let size = store
            .put(name, &digest, content_length(headers), body_stream(body))
            .await
            .map_err(storage)?;
        model::link_blob(app, name, &digest, size).await?;
        return Ok(blob_created(name, &digest));
    }
    let id = store.start_upload(name).await.map_err(storage)?;
    Ok(upload_accepted(StatusCode::ACCEPTED, name, &id, 0))
}

/// The start of a `Content-Range: <start>-<end>` (also accepts the `bytes ` prefix).
fn content_range_start(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let parsed = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((a, b)) if a <= b => Ok(Some((a, b))),
        _ => Err(err(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
            "invalid Content-Range",
        )),
    }
}

async fn patch_upload(
    app: &Ecr,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let store = blob_store(app);
    let range = content_range_start(headers)?;
    if let (Some((a, b)), Some(len)) = (range, content_length(headers)) {
        if b - a + 1 != len {
            return Err(err(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                "Content-Range does not match Content-Length",
            ));
        }
    }
    let st = store
        .append(id, name, range.map(|r| r.0), body_stream(body))
        .await
        .map_err(storage)?;
    Ok(upload_accepted(StatusCode::ACCEPTED, name, id, st.offset))
}

async fn put_upload(
    app: &Ecr,
    name: &str,
    id: &str,
    query: &[(String, String)],
    body: Body,
) -> Result<Response> {
    let store = blob_store(app);
    let Some(d) = q(query, "digest") else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the digest parameter is required to complete an upload",
        ));
    };
    let digest = digest_arg(d)?;
    store
        .append(id, name, None, body_stream(body))
        .await
        .map_err(storage)?;
    let size = store.finish(id, name, &digest).await.map_err(storage)?;
    model::link_blob(app, name, &digest, size).await?;
    Ok(blob_created(name, &digest))
}

async fn upload_status(app: &Ecr, name: &str, id: &str) -> Result<Response> {
    let st = blob_store(app)
        .upload_status(id, name)
        .await
        .map_err(storage)?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, name, id, st.offset))
}

fn manifest_unknown(r: &str) -> RegistryHttpError {
    err(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        "manifest unknown",
    )
    .detail(serde_json::json!({"reference": r}))
}

/// A reference is a digest (contains `:`) or a tag.
enum Reference {
    Digest(Digest),
    Tag(String),
}

fn reference(r: &str) -> Result<Reference> {
    if r.contains(':') {
        Ok(Reference::Digest(digest_arg(r)?))
    } else if names::valid_tag(r) {
        Ok(Reference::Tag(r.to_string()))
    } else {
        Err(err(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            "manifest tag did not match URI",
        )
        .detail(serde_json::json!({"tag": r})))
    }
}

async fn get_manifest(app: &Ecr, name: &str, r: &str, head: bool) -> Result<Response> {
    let digest = match reference(r)? {
        Reference::Digest(d) => d.to_string(),
        Reference::Tag(t) => {
            model::get_tag(app, name, &t)
                .await?
                .ok_or_else(|| manifest_unknown(r))?
                .value
                .digest
        }
    };
    let img = model::get_image(app, name, &digest)
        .await?
        .ok_or_else(|| manifest_unknown(r))?
        .value;
    if !head {
        model::record_pull(app, name, &digest).await;
    }
    let len = img.manifest.len();
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from(img.manifest)
    });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&img.media_type));
    h.insert("Docker-Content-Digest", hv(&img.digest));
    h.insert(header::ETAG, hv(&format!("\"{}\"", img.digest)));
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    Ok(resp)
}

async fn put_manifest(
    app: &Ecr,
    name: &str,
    r: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reference = reference(r)?;
    let bytes = axum::body::to_bytes(body, manifest::MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                format!(
                    "manifest is larger than {} bytes",
                    manifest::MAX_MANIFEST_BYTES
                ),
            )
        })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (tag, expected) = match &reference {
        Reference::Digest(d) => (None, Some(d)),
        Reference::Tag(t) => (Some(t.as_str()), None),
    };
    let (img, outcome) = model::put_manifest(app, name, &bytes, content_type, tag, expected).await.map_err(|e| match e {
        PutError::RepositoryNotFound => err(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry"),
        PutError::Invalid(m) => err(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("manifest invalid: {m}")),
        PutError::BlobsUnknown(ds) => err(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
            .detail(serde_json::json!({"digests": ds})),
        PutError::ManifestsUnknown(ds) => err(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", "manifest references manifests unknown to registry")
            .detail(serde_json::json!({"digests": ds})),
        PutError::DigestMismatch { expected, actual } => err(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "provided digest did not match uploaded content")
            .detail(serde_json::json!({"expected": expected, "actual": actual})),
        PutError::TagImmutable => err(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("The image tag '{}' already exists in the '{name}' repository and cannot be overwritten because the repository is immutable.", tag.unwrap_or("")),
        ),
        PutError::Api(e) => e.into(),
    })?;
    if outcome == PutOutcome::Stored {
        tracing::debug!(repository = name, digest = %img.digest, "manifest pushed");
    }
    let mut hdrs = vec![
        ("Location", format!("/v2/{name}/manifests/{}", img.digest)),
        ("Docker-Content-Digest", img.digest.clone()),
    ];
    if let Some(s) = &img.subject {
        hdrs.push(("OCI-Subject", s.clone()));
    }
    Ok(empty(StatusCode::CREATED, &hdrs))
}

async fn delete_manifest(app: &Arc<Ecr>, name: &str, r: &str) -> Result<Response> {
    let result = match reference(r)? {
        Reference::Digest(d) => model::delete_image(app, name, &d.to_string())
            .await
            .map(|_| ()),
        Reference::Tag(t) => model::untag(app, name, &t).await.map(|_| ()),
    };
    match result {
        Ok(()) => {
            model::spawn_gc(app);
            Ok(empty(StatusCode::ACCEPTED, &[]))
        }
        Err(DeleteError::NotFound) => Err(manifest_unknown(r)),
        Err(DeleteError::ReferencedByIndex) => Err(err(
            StatusCode::CONFLICT,
            "DENIED",
            "the manifest is referenced by an index in this repository",
        )),
        Err(DeleteError::Api(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Some(Route::Base));
        assert_eq!(parse_route("/v2"), Some(Route::Base));
        assert_eq!(parse_route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            parse_route("/v2/a/b/tags/list"),
            Some(Route::Tags("a/b".into()))
        );
        assert_eq!(
            parse_route("/v2/a/manifests/latest"),
            Some(Route::Manifest("a".into(), "latest".into()))
        );
        assert_eq!(
            parse_route("/v2/x/blobs/y/blobs/sha256:ab"),
            Some(Route::Blob("x/blobs/y".into(), "sha256:ab".into()))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/"),
            Some(Route::Uploads("a".into()))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/123"),
            Some(Route::Upload("a".into(), "123".into()))
        );
        assert_eq!(parse_route("/v2/a"), None);
        assert_eq!(parse_route("/v3/a"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }

    #[test]
    fn query_decoding() {
        let u: Uri = "/v2/a/blobs/uploads/?digest=sha256%3Aab&from=x%2Fy"
            .parse()
            .unwrap();
        let qs = parse_query(&u);
        assert_eq!(q(&qs, "digest"), Some("sha256:ab"));
        assert_eq!(q(&qs, "from"), Some("x/y"));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
