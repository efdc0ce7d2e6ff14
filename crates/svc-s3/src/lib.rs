//! berth-svc-s3: a small S3 (REST, path-style: `/<bucket>/<key>`) on the same endpoint: where
//! ECS task `environmentFiles` (`arn:aws:s3:::<bucket>/<key>.env`) are kept, for `aws s3`, boto3
//! and the agent.
//!
//! Buckets: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
//! ListObjectsV2 and ListObjects (prefix, delimiter, pagination, `encoding-type=url`).
//! Objects: PutObject (one request, up to [`MAX_OBJECT_BYTES`]), GetObject, HeadObject,
//! DeleteObject, with `Content-Type` and `x-amz-meta-*`. Not served: multipart uploads, copies,
//! versioning, ACLs and policies, ranges (a `Range` request gets the whole object), virtual-hosted
//! addressing.
//!
//! Records: `s3/buckets/<name>` and `s3/objects/<bucket>/<key>` in the state store; the bytes are
//! content-addressed blobs in the image registry's blob store (its garbage collection keeps every
//! blob an object record names). Requests are SigV4-signed for service `s3` (S3's single
//! percent-encoding); errors are S3's XML.
//!
//! As a [`Service`] (signing name `s3`, restXml) it has only [`Service::rest_routes`]: the edge
//! hands it every request signed for `s3` and every unsigned path request; it checks signatures
//! itself (through the edge's [`Authenticator`]) with its own body limits, request ids and errors.
//! As a [`BlobHolder`] it tells the registry's garbage collection which blobs objects hold.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use berth_core::Scope;
use berth_registry::{BlobStore, Digest};
use berth_service::metrics::Metrics;
use berth_service::pagination::{decode_token, encode_token};
use berth_service::repo::{to_bytes, Repo, Versioned};
use berth_service::{
    now_epoch, ApiError, Authenticator, BlobHolder, Descriptor, Protocol, Service,
};
use berth_store::{Compare, Txn};
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

/// Largest object one PutObject stores (there is no multipart upload).
pub const MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;
/// Store prefix of the bucket records.
pub const BUCKETS: &str = "s3/buckets/";
/// Store prefix of the object records (`s3/objects/<bucket>/<key>`).
pub const OBJECTS: &str = "s3/objects/";
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The S3 service: its state.
pub struct S3 {
    pub repo: Repo,
    pub scope: Scope,
    /// The registry's blob store: object contents are blobs in it.
    pub blobs: Arc<BlobStore>,
    /// The signature check (the edge's, over the access keys).
    pub auth: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
}

impl S3 {
    pub fn new(
        repo: Repo,
        scope: Scope,
        blobs: Arc<BlobStore>,
        auth: Arc<dyn Authenticator>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            repo,
            scope,
            blobs,
            auth,
            metrics,
        })
    }
}

static DESCRIPTOR: Descriptor = Descriptor {
    name: "s3",
    signing_names: &["s3"],
    protocol: Protocol::RestXml,
    target_prefixes: &[],
    // Informational: S3 reads its own bodies, up to this for PutObject (64 KiB otherwise).
    body_limit: MAX_OBJECT_BYTES,
    xml_namespace: "",
    knows: |_, _| true,
};

/// The service as the edge sees it.
pub struct S3Service(pub Arc<S3>);

#[async_trait::async_trait]
impl Service for S3Service {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    fn rest_routes(&self) -> Option<Router> {
        Some(router(self.0.clone()))
    }
}

/// S3's routes: `GET`/`HEAD /` (ListBuckets), `/<bucket>` and `/<bucket>/<key>` (any method).
pub fn router(app: Arc<S3>) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/{bucket}", any(bucket))
        .route("/{bucket}/", any(bucket))
        .route("/{bucket}/{*key}", any(object))
        .with_state(app)
}

fn bucket_key(bucket: &str) -> String {
    format!("{BUCKETS}{bucket}")
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{OBJECTS}{bucket}/{key}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_at: f64,
    /// Set by DeleteBucket while it checks the bucket is empty: PutObject refuses such a
    /// bucket, and its commit compares the bucket's revision, so no object lands in a bucket
    /// being deleted.
    #[serde(default)]
    pub deleting: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    pub size: u64,
    /// Hex MD5 of the content (S3's ETag of a single-part upload).
    pub etag: String,
    /// `sha256:<hex>`: the blob holding the content.
    pub digest: String,
    pub content_type: String,
    pub last_modified: f64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// An S3 error: code, message, HTTP status.
#[derive(Debug)]
pub struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
    resource: Option<String>,
}

impl S3Error {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            resource: None,
        }
    }

    fn on(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    fn no_such_bucket(bucket: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        )
        .on(bucket)
    }

    fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("A header or query you provided implies functionality that is not implemented: {what}"),
        )
    }

    fn into_response(self, request_id: &str, head: bool) -> Response {
        let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
        tag(&mut body, "Code", self.code);
        tag(&mut body, "Message", &self.message);
        if let Some(r) = &self.resource {
            tag(&mut body, "Resource", r);
        }
        tag(&mut body, "RequestId", request_id);
        body.push_str("</Error>");
        let mut resp = if head {
            // HEAD answers carry no body; the status says it all.
            self.status.into_response()
        } else {
            (self.status, body).into_response()
        };
        set(&mut resp, "content-type", "application/xml");
        resp
    }
}

/// Authentication failures as S3's 403 codes; anything else (store errors) as InternalError.
impl From<ApiError> for S3Error {
    fn from(e: ApiError) -> Self {
        let code = match e.code.as_ref() {
            "UnrecognizedClientException" => "InvalidAccessKeyId",
            "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch" => "SignatureDoesNotMatch",
            "ExpiredTokenException" => "ExpiredToken",
            "MissingAuthenticationTokenException" | "AccessDeniedException" => "AccessDenied",
            _ => {
                let status = if e.status.is_server_error() {
                    e.status
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return S3Error::new(status, "InternalError", e.message);
            }
        };
        S3Error::new(StatusCode::FORBIDDEN, code, e.message)
    }
}

use berth_service::codec::escape_xml as escape;

fn tag(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", escape(value));
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn xml(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    set(&mut resp, "content-type", "application/xml");
    resp
}

fn iso(t: f64) -> String {
    berth_core::time::rfc3339_epoch(t, 3)
}

fn http_date(t: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
    httpdate::fmt_http_date(t)
}

/// S3's bucket naming rules (general purpose buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("xn--")
        && !name.ends_with("-s3alias")
}

/// Checks the signature and that the caller may do `action` (an IAM action of `s3`).
fn authorize(
    app: &S3,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
) -> Result<(), S3Error> {
    let principal = app.auth.authenticate(method, uri, headers, body)?;
    berth_auth::authorize(principal.role, "s3", action).map_err(|e| {
        S3Error::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            e.with_principal(principal.arn).message(),
        )
    })
}

async fn bucket_exists(app: &S3, bucket: &str) -> Result<bool, S3Error> {
    Ok(app
        .repo
        .get_arc::<BucketRecord>(&bucket_key(bucket))
        .await?
        .is_some())
}

/// One S3 request: the operation it is, its outcome, timing and request id.
async fn serve<F>(app: &Arc<S3>, op: &'static str, head: bool, f: F) -> Response
where
    F: std::future::Future<Output = Result<Response, S3Error>>,
{
    let rid = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let started = std::time::Instant::now();
    let result = f.await;
    let target = format!("s3.{op}");
    app.metrics.observe(
        &target,
        true,
        result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code),
        started.elapsed().as_secs_f64(),
    );
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(request_id = %rid, op, code = e.code, message = %e.message, "S3 request failed");
            }
            e.into_response(&rid, head)
        }
    };
    set(&mut resp, "x-amz-request-id", &rid);
    resp
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, S3Error> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            format!("Your proposed upload exceeds the maximum allowed size ({limit} bytes); berth has no multipart upload."),
        )
    })
}

/// Sub-resources (`?acl`, `?uploads`, …) berth doesn't serve answer NotImplemented rather than
/// being taken for the plain operation.
fn refuse_subresources(q: &HashMap<String, String>, names: &[&str]) -> Result<(), S3Error> {
    match names.iter().find(|n| q.contains_key(**n)) {
        Some(sub) => Err(S3Error::not_implemented(&format!("?{sub}"))),
        None => Ok(()),
    }
}

/// `GET /`: ListBuckets.
pub async fn root(
    State(app): State<Arc<S3>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let a = app.clone();
    serve(&app, "ListBuckets", method == Method::HEAD, async move {
        let body = read_body(body, 64 * 1024).await?;
        authorize(&a, &method, &uri, &headers, &body, "ListAllMyBuckets")?;
        let buckets = a.repo.list_arc::<BucketRecord>(BUCKETS).await?;
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{XMLNS}\"><Owner>"
        );
        tag(&mut out, "ID", &a.scope.account);
        tag(&mut out, "DisplayName", "berth");
        out.push_str("</Owner><Buckets>");
        for b in &buckets {
            out.push_str("<Bucket>");
            tag(&mut out, "Name", &b.value.name);
            tag(&mut out, "CreationDate", &iso(b.value.created_at));
            out.push_str("</Bucket>");
        }
        out.push_str("</Buckets></ListAllMyBucketsResult>");
        Ok(xml(out))
    })
    .await
}

/// `/<bucket>`: bucket operations.
pub async fn bucket(
    State(app): State<Arc<S3>>,
    Path(bucket): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let op = match method {
        Method::PUT => "CreateBucket",
        Method::DELETE => "DeleteBucket",
        Method::HEAD => "HeadBucket",
        Method::GET if q.contains_key("location") => "GetBucketLocation",
        Method::GET if q.get("list-type").map(String::as_str) == Some("2") => "ListObjectsV2",
        Method::GET => "ListObjects",
        _ => "Unsupported",
    };
    let a = app.clone();
    serve(&app, op, method == Method::HEAD, async move {
        let body = read_body(body, 64 * 1024).await?;
        let action = match op {
            "HeadBucket" | "ListObjectsV2" | "ListObjects" => "ListBucket",
            other => other,
        };
        authorize(&a, &method, &uri, &headers, &body, action)?;
        refuse_subresources(
            &q,
            &["acl", "policy", "versioning", "tagging", "uploads", "delete", "cors", "lifecycle", "website", "encryption"],
        )?;
        match op {
            "CreateBucket" => create_bucket(&a, &bucket).await,
            "DeleteBucket" => delete_bucket(&a, &bucket).await,
            "HeadBucket" => {
                if bucket_exists(&a, &bucket).await? {
                    let mut r = StatusCode::OK.into_response();
                    set(&mut r, "x-amz-bucket-region", &a.scope.region);
                    Ok(r)
                } else {
                    Err(S3Error::no_such_bucket(&bucket))
                }
            }
            "GetBucketLocation" => {
                if !bucket_exists(&a, &bucket).await? {
                    return Err(S3Error::no_such_bucket(&bucket));
                }
                // us-east-1 is the empty LocationConstraint, as in S3.
                let region = if a.scope.region == "us-east-1" { "" } else { &a.scope.region };
                Ok(xml(format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{XMLNS}\">{}</LocationConstraint>",
                    escape(region)
                )))
            }
            "ListObjectsV2" | "ListObjects" => list_objects(&a, &bucket, &q, op == "ListObjectsV2").await,
            _ => Err(S3Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )),
        }
    })
    .await
}

async fn create_bucket(app: &S3, bucket: &str) -> Result<Response, S3Error> {
    if !valid_bucket_name(bucket) {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            "The specified bucket is not valid.",
        )
        .on(bucket));
    }
    let rec = BucketRecord {
        name: bucket.to_string(),
        created_at: now_epoch(),
        deleting: false,
    };
    let key = bucket_key(bucket);
    let txn = Txn::new()
        .when(Compare::Absent { key: key.clone() })
        .put(key, to_bytes(&rec));
    if app.repo.commit(txn).await?.is_none() && app.scope.region != "us-east-1" {
        // us-east-1 answers 200 to the owner re-creating a bucket; other regions refuse.
        return Err(S3Error::new(
            StatusCode::CONFLICT,
            "BucketAlreadyOwnedByYou",
            "Your previous request to create the named bucket succeeded and you already own it.",
        )
        .on(bucket));
    }
    let mut r = StatusCode::OK.into_response();
    set(&mut r, "location", &format!("/{bucket}"));
    Ok(r)
}

async fn delete_bucket(app: &S3, bucket: &str) -> Result<Response, S3Error> {
    let key = bucket_key(bucket);
    let Some(rec) = app.repo.get::<BucketRecord>(&key).await? else {
        return Err(S3Error::no_such_bucket(bucket));
    };
    // First mark it: a PutObject that read the bucket before this fails its commit.
    let mut marked = rec.value.clone();
    marked.deleting = true;
    let guard = |revision| Compare::ModRevision {
        key: key.clone(),
        revision,
    };
    let Some(rev) = app
        .repo
        .commit(
            Txn::new()
                .when(guard(rec.revision))
                .put(key.clone(), to_bytes(&marked)),
        )
        .await?
    else {
        return Err(S3Error::new(
            StatusCode::CONFLICT,
            "OperationAborted",
            "A conflicting conditional operation is currently in progress against this resource. Please try again.",
        ));
    };
    let prefix = object_key(bucket, "");
    if app.repo.count(&prefix, Some(1)).await? > 0 {
        let mut back = marked;
        back.deleting = false;
        app.repo
            .commit(
                Txn::new()
                    .when(guard(rev))
                    .put(key.clone(), to_bytes(&back)),
            )
            .await?;
        return Err(S3Error::new(
            StatusCode::CONFLICT,
            "BucketNotEmpty",
            "The bucket you tried to delete is not empty",
        )
        .on(bucket));
    }
    app.repo
        .commit(Txn::new().when(guard(rev)).delete(key.clone()))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

async fn list_objects(
    app: &S3,
    bucket: &str,
    q: &HashMap<String, String>,
    v2: bool,
) -> Result<Response, S3Error> {
    if !bucket_exists(app, bucket).await? {
        return Err(S3Error::no_such_bucket(bucket));
    }
    let invalid = |m: &str| S3Error::new(StatusCode::BAD_REQUEST, "InvalidArgument", m);
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
    let max_keys: usize = match q.get("max-keys") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| invalid("Provided max-keys not an integer or within integer range"))?
            .min(1000),
        None => 1000,
    };
    let url = match q.get("encoding-type").map(String::as_str) {
        None => false,
        Some("url") => true,
        Some(_) => return Err(invalid("Invalid Encoding Method specified in Request")),
    };
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    // Where to start: the continuation token (v2) or marker/start-after (keys after it).
    let after = if v2 {
        match q.get("continuation-token") {
            Some(t) => decode_token(Some(t))
                .map_err(|_| invalid("The continuation token provided is incorrect"))?,
            None => q.get("start-after").cloned(),
        }
    } else {
        q.get("marker").cloned()
    }
    .filter(|s| !s.is_empty());

    let base = object_key(bucket, "");
    let records: Vec<Versioned<Arc<ObjectRecord>>> = app
        .repo
        .list_arc::<ObjectRecord>(&format!("{base}{prefix}"))
        .await?;
    let mut contents: Vec<&ObjectRecord> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last = String::new();
    // max-keys=0 asks for nothing: an empty, complete answer.
    for r in records
        .iter()
        .take(if max_keys == 0 { 0 } else { usize::MAX })
    {
        let o = r.value.as_ref();
        if after.as_deref().is_some_and(|a| o.key.as_str() <= a) {
            continue;
        }
        // A key under a delimiter after the prefix rolls up into a common prefix.
        let rolled = delimiter.as_deref().and_then(|d| {
            o.key[prefix.len()..]
                .find(d)
                .map(|i| o.key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = &rolled {
            if prefixes.last() == Some(cp)
                || after.as_deref().is_some_and(|a| a.starts_with(cp.as_str()))
            {
                continue;
            }
        }
        if contents.len() + prefixes.len() == max_keys {
            truncated = true;
            break;
        }
        match rolled {
            Some(cp) => {
                last = cp.clone();
                prefixes.push(cp);
            }
            None => {
                last = o.key.clone();
                contents.push(o);
            }
        }
    }
    let mut out =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{XMLNS}\">");
    tag(&mut out, "Name", bucket);
    tag(&mut out, "Prefix", &enc(&prefix));
    if v2 {
        tag(
            &mut out,
            "KeyCount",
            &(contents.len() + prefixes.len()).to_string(),
        );
        if let Some(t) = q.get("continuation-token") {
            tag(&mut out, "ContinuationToken", t);
        }
        if let Some(s) = q.get("start-after") {
            tag(&mut out, "StartAfter", &enc(s));
        }
    } else {
        tag(
            &mut out,
            "Marker",
            &enc(q.get("marker").map_or("", String::as_str)),
        );
    }
    tag(&mut out, "MaxKeys", &max_keys.to_string());
    if let Some(d) = &delimiter {
        tag(&mut out, "Delimiter", &enc(d));
    }
    tag(
        &mut out,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    if truncated {
        if v2 {
            tag(&mut out, "NextContinuationToken", &encode_token(&last));
        } else {
            tag(&mut out, "NextMarker", &enc(&last));
        }
    }
    if url {
        tag(&mut out, "EncodingType", "url");
    }
    for o in contents {
        out.push_str("<Contents>");
        tag(&mut out, "Key", &enc(&o.key));
        tag(&mut out, "LastModified", &iso(o.last_modified));
        tag(&mut out, "ETag", &format!("\"{}\"", o.etag));
        tag(&mut out, "Size", &o.size.to_string());
        tag(&mut out, "StorageClass", "STANDARD");
        out.push_str("</Contents>");
    }
    for p in prefixes {
        out.push_str("<CommonPrefixes>");
        tag(&mut out, "Prefix", &enc(&p));
        out.push_str("</CommonPrefixes>");
    }
    out.push_str("</ListBucketResult>");
    Ok(xml(out))
}

/// `/<bucket>/<key>`: object operations.
pub async fn object(
    State(app): State<Arc<S3>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let op = match method {
        Method::PUT => "PutObject",
        Method::GET => "GetObject",
        Method::HEAD => "HeadObject",
        Method::DELETE => "DeleteObject",
        _ => "Unsupported",
    };
    let a = app.clone();
    serve(&app, op, method == Method::HEAD, async move {
        let limit = if op == "PutObject" {
            MAX_OBJECT_BYTES
        } else {
            64 * 1024
        };
        let body = read_body(body, limit).await?;
        let action = if op == "HeadObject" { "GetObject" } else { op };
        authorize(&a, &method, &uri, &headers, &body, action)?;
        refuse_subresources(
            &q,
            &[
                "uploads",
                "uploadId",
                "acl",
                "tagging",
                "versionId",
                "retention",
                "legal-hold",
                "attributes",
            ],
        )?;
        if key.is_empty() || key.len() > 1024 {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "KeyTooLongError",
                "Your key is too long",
            ));
        }
        match op {
            "PutObject" => put_object(&a, &bucket, &key, &headers, body).await,
            "GetObject" | "HeadObject" => get_object(&a, &bucket, &key, op == "HeadObject").await,
            "DeleteObject" => {
                if !bucket_exists(&a, &bucket).await? {
                    return Err(S3Error::no_such_bucket(&bucket));
                }
                a.repo
                    .commit(Txn::new().delete(object_key(&bucket, &key)))
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => Err(S3Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )),
        }
    })
    .await
}

async fn put_object(
    app: &S3,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, S3Error> {
    if headers.contains_key("x-amz-copy-source") {
        return Err(S3Error::not_implemented("x-amz-copy-source (CopyObject)"));
    }
    let declared = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if declared.starts_with("STREAMING-") {
        return Err(S3Error::not_implemented(
            "x-amz-content-sha256 STREAMING-* (aws-chunked uploads)",
        ));
    }
    let bucket_rev = match app
        .repo
        .get_arc::<BucketRecord>(&bucket_key(bucket))
        .await?
    {
        Some(b) if !b.value.deleting => b.revision,
        _ => return Err(S3Error::no_such_bucket(bucket)),
    };
    let digest = Digest::of(&body);
    if declared.len() == 64 && !declared.eq_ignore_ascii_case(digest.hex()) {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let etag = hex::encode(md5::Md5::digest(&body));
    if let Some(m) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        use base64::Engine;
        let given = base64::engine::general_purpose::STANDARD.decode(m).ok();
        if given.map(hex::encode).as_deref() != Some(etag.as_str()) {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    let store = &app.blobs;
    let size = body.len() as u64;
    store.put_bytes("s3", &digest, body).await.map_err(|e| {
        S3Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    let metadata = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    let rec = ObjectRecord {
        key: key.to_string(),
        size,
        etag: etag.clone(),
        digest: digest.to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("binary/octet-stream")
            .to_string(),
        last_modified: now_epoch(),
        metadata,
    };
    // The bucket must be the one read above (not deleted or being deleted since).
    let txn = Txn::new()
        .when(Compare::ModRevision {
            key: bucket_key(bucket),
            revision: bucket_rev,
        })
        .put(object_key(bucket, key), to_bytes(&rec));
    if app.repo.commit(txn).await?.is_none() {
        return Err(S3Error::no_such_bucket(bucket));
    }
    let mut r = StatusCode::OK.into_response();
    set(&mut r, "etag", &format!("\"{etag}\""));
    Ok(r)
}

async fn get_object(app: &S3, bucket: &str, key: &str, head: bool) -> Result<Response, S3Error> {
    let Some(o) = app
        .repo
        .get_arc::<ObjectRecord>(&object_key(bucket, key))
        .await?
    else {
        return Err(if bucket_exists(app, bucket).await? {
            S3Error::new(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
            .on(key)
        } else {
            S3Error::no_such_bucket(bucket)
        });
    };
    let o = o.value;
    let mut resp = if head {
        StatusCode::OK.into_response()
    } else {
        let store = &app.blobs;
        let digest: Digest = o.digest.parse().map_err(|_| {
            S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "corrupt object record",
            )
        })?;
        let (file, _) = store.open_blob(&digest).await.map_err(|e| {
            S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("object content unavailable: {e}"),
            )
        })?;
        let stream = tokio_util::io::ReaderStream::new(file);
        (StatusCode::OK, Body::from_stream(stream)).into_response()
    };
    set(&mut resp, "content-length", &o.size.to_string());
    set(&mut resp, "content-type", &o.content_type);
    set(&mut resp, "etag", &format!("\"{}\"", o.etag));
    set(&mut resp, "last-modified", &http_date(o.last_modified));
    set(&mut resp, "accept-ranges", "bytes");
    for (k, v) in &o.metadata {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    Ok(resp)
}

/// The blobs S3 objects hold: the registry's garbage collection keeps them.
#[async_trait::async_trait]
impl BlobHolder for S3 {
    async fn held_blobs(&self) -> Result<Vec<String>, ApiError> {
        self.repo
            .scan(OBJECTS, |o: Versioned<Arc<ObjectRecord>>| {
                Some(o.value.digest.clone())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["env-files", "a.b.c", "abc", "0abc9"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Env",
            "a..b",
            "-ab",
            "ab-",
            "192.168.1.1",
            "xn--ab",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    /// Lets every request through as an admin (or fails them all, with `deny`).
    struct TestAuth {
        deny: bool,
    }

    impl Authenticator for TestAuth {
        fn authenticate(
            &self,
            _: &Method,
            _: &Uri,
            _: &HeaderMap,
            _: &[u8],
        ) -> Result<berth_service::Principal, ApiError> {
            if self.deny {
                return Err(ApiError::new(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ));
            }
            Ok(berth_service::Principal {
                access_key_id: "AKIDTEST".into(),
                role: berth_auth::Role::Admin,
                arn: "arn:aws:iam::000000000000:root".into(),
                temporary: false,
            })
        }
    }

    fn test_s3(dir: &std::path::Path, deny: bool) -> Arc<S3> {
        S3::new(
            Repo::new(Arc::new(berth_store::MemoryStore::new())),
            Scope::new("us-east-1", "000000000000"),
            Arc::new(BlobStore::open(dir).unwrap()),
            Arc::new(TestAuth { deny }),
            Arc::new(Metrics::default()),
        )
    }

    #[tokio::test]
    async fn registry_garbage_collection_keeps_the_blobs_objects_name() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_s3(dir.path(), false);
        let store = app.blobs.clone();
        let kept = bytes::Bytes::from_static(b"A=1\n");
        let orphan = bytes::Bytes::from_static(b"nobody names me");
        let (kd, od) = (Digest::of(&kept), Digest::of(&orphan));
        store.put_bytes("s3", &kd, kept).await.unwrap();
        store.put_bytes("s3", &od, orphan).await.unwrap();
        let rec = ObjectRecord {
            key: "app.env".into(),
            size: 4,
            etag: String::new(),
            digest: kd.to_string(),
            content_type: "text/plain".into(),
            last_modified: 0.0,
            metadata: BTreeMap::new(),
        };
        app.repo
            .commit(Txn::new().put(object_key("b", "app.env"), to_bytes(&rec)))
            .await
            .unwrap();
        let held = app.held_blobs().await.unwrap();
        assert_eq!(held, vec![kd.to_string()], "the object's blob is held");
        // Both blobs older than the collector's grace period.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for d in [&kd, &od] {
            let path = dir
                .path()
                .join("blobs/sha256")
                .join(&d.hex()[..2])
                .join(d.hex());
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // What the registry's collection does with the holders' blobs: keep them, drop the rest.
        let keep: std::collections::HashSet<Digest> =
            held.iter().map(|d| d.parse().unwrap()).collect();
        let report = store
            .gc(
                &keep,
                std::time::Duration::from_secs(600),
                std::time::Duration::from_secs(600),
            )
            .unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(
            store.stat(&kd).await.unwrap().is_some(),
            "an object's blob stays"
        );
        assert!(
            store.stat(&od).await.unwrap().is_none(),
            "an unnamed old blob goes"
        );
    }

    async fn send(
        router: &Router,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        use tower::ServiceExt as _;
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, body.to_vec())
    }

    #[tokio::test]
    async fn objects_round_trip_through_the_routes() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_s3(dir.path(), false);
        let service = S3Service(app.clone());
        assert_eq!(service.descriptor().name, "s3");
        assert_eq!(service.descriptor().protocol, Protocol::RestXml);
        let r = service.rest_routes().expect("S3 is a REST service");

        let (st, h, _) = send(&r, Method::PUT, "/env-files", &[], b"").await;
        assert_eq!(st, StatusCode::OK);
        assert!(h.contains_key("x-amz-request-id"));
        let (st, _, _) = send(&r, Method::PUT, "/env-files/", &[], b"").await;
        assert_eq!(st, StatusCode::OK, "us-east-1 re-creates quietly");
        let (st, h, _) = send(
            &r,
            Method::PUT,
            "/env-files/app/prod.env",
            &[("content-type", "text/plain"), ("x-amz-meta-owner", "me")],
            b"A=1\n",
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(b"A=1\n")));
        assert_eq!(h["etag"], etag.as_str());

        let (st, h, body) = send(&r, Method::GET, "/env-files/app/prod.env", &[], b"").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, b"A=1\n");
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["x-amz-meta-owner"], "me");
        let (st, h, body) = send(&r, Method::HEAD, "/env-files/app/prod.env", &[], b"").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(h["content-length"], "4");
        assert!(body.is_empty());

        let (st, _, body) = send(
            &r,
            Method::GET,
            "/env-files?list-type=2&delimiter=/",
            &[],
            b"",
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("<KeyCount>1</KeyCount>"), "{body}");
        assert!(
            body.contains("<CommonPrefixes><Prefix>app/</Prefix></CommonPrefixes>"),
            "{body}"
        );

        let (st, _, body) = send(&r, Method::GET, "/", &[], b"").await;
        assert_eq!(st, StatusCode::OK);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("<Name>env-files</Name>"));

        let holder: Arc<dyn BlobHolder> = app.clone();
        assert_eq!(
            holder.held_blobs().await.unwrap(),
            vec![Digest::of(b"A=1\n").to_string()]
        );

        let (st, _, body) = send(&r, Method::DELETE, "/env-files", &[], b"").await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("<Code>BucketNotEmpty</Code>"));
        let (st, _, _) = send(&r, Method::DELETE, "/env-files/app/prod.env", &[], b"").await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, _, body) = send(&r, Method::GET, "/env-files/app/prod.env", &[], b"").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("<Code>NoSuchKey</Code>"));
        let (st, _, _) = send(&r, Method::DELETE, "/env-files", &[], b"").await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, _, body) = send(&r, Method::GET, "/env-files/x", &[], b"").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("<Code>NoSuchBucket</Code>"));
        assert!(app.held_blobs().await.unwrap().is_empty());

        let metrics = app.metrics.render();
        assert!(metrics.contains("s3.PutObject"), "{metrics}");
    }

    #[tokio::test]
    async fn every_path_is_an_s3_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = router(test_s3(dir.path(), false));
        let (st, _, body) = send(&r, Method::GET, "//key", &[], b"").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("<Code>NoSuchBucket</Code>"), "{body}");
        // `POST /` is the edge's (RPC); other methods on `/` than GET and HEAD are refused.
        let (st, _, _) = send(&r, Method::PUT, "/", &[], b"").await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn bad_signatures_get_s3_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = router(test_s3(dir.path(), true));
        let (st, h, body) = send(&r, Method::GET, "/", &[], b"").await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        assert_eq!(h["content-type"], "application/xml");
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("<Code>InvalidAccessKeyId</Code>"), "{body}");
        assert!(body.contains("<RequestId>"), "{body}");
    }

    #[test]
    fn xml_is_escaped() {
        let mut s = String::new();
        tag(&mut s, "Key", "a<b>&\"'");
        assert_eq!(s, "<Key>a&lt;b&gt;&amp;&quot;&apos;</Key>");
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
    }
}
