//! A small S3 (REST, path-style: `/<bucket>/<key>`) on the same endpoint: where ECS task
//! `environmentFiles` (`arn:aws:s3:::<bucket>/<key>.env`) are kept, for `aws s3`, boto3 and the
//! agent.
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

use crate::app::App;
use crate::error::ApiError;
use crate::repo::{to_bytes, Versioned};
use crate::wire::now_epoch;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use berth_registry::Digest;
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

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

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
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
) -> Result<(), S3Error> {
    let principal = crate::server::authenticate(app, method, uri, headers, body)?;
    berth_auth::authorize(principal.role, "s3", action).map_err(|e| {
        S3Error::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            e.with_principal(principal.arn).message(),
        )
    })
}

async fn bucket_exists(app: &App, bucket: &str) -> Result<bool, S3Error> {
    Ok(app
        .repo
        .get_arc::<BucketRecord>(&bucket_key(bucket))
        .await?
        .is_some())
}

/// One S3 request: the operation it is, its outcome, timing and request id.
async fn serve<F>(app: &Arc<App>, op: &'static str, head: bool, f: F) -> Response
where
    F: std::future::Future<Output = Result<Response, S3Error>>,
{
    let rid = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let started = std::time::Instant::now();
    let result = f.await;
    let target = format!("s3.{op}");
    app.metrics.observe(
        &target,
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
    State(app): State<Arc<App>>,
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
    State(app): State<Arc<App>>,
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

async fn create_bucket(app: &App, bucket: &str) -> Result<Response, S3Error> {
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

async fn delete_bucket(app: &App, bucket: &str) -> Result<Response, S3Error> {
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
    app: &App,
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
            Some(t) => crate::ecs::decode_token(Some(t))
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
            tag(
                &mut out,
                "NextContinuationToken",
                &crate::ecs::encode_token(&last),
            );
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
    State(app): State<Arc<App>>,
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
    app: &App,
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
    let store = crate::ecr::model::blob_store(app)?;
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

async fn get_object(app: &App, bucket: &str, key: &str, head: bool) -> Result<Response, S3Error> {
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
        let store = crate::ecr::model::blob_store(app)?;
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

/// The blobs S3 objects hold (kept by the registry's garbage collection).
pub async fn referenced_blobs(app: &App) -> Result<Vec<String>, ApiError> {
    app.repo
        .scan(OBJECTS, |o: Versioned<Arc<ObjectRecord>>| {
            Some(o.value.digest.clone())
        })
        .await
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

    #[tokio::test]
    async fn registry_garbage_collection_keeps_the_blobs_objects_name() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(
            Arc::new(berth_store::MemoryStore::new()),
            berth_core::Scope::new("us-east-1", "000000000000"),
            false,
        )
        .await
        .unwrap();
        app.open_registry(dir.path()).unwrap();
        let store = crate::ecr::model::blob_store(&app).unwrap();
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
        crate::ecr::model::collect_garbage(&app).await.unwrap();
        assert!(
            store.stat(&kd).await.unwrap().is_some(),
            "an object's blob stays"
        );
        assert!(
            store.stat(&od).await.unwrap().is_none(),
            "an unnamed old blob goes"
        );
    }

    #[test]
    fn xml_is_escaped() {
        let mut s = String::new();
        tag(&mut s, "Key", "a<b>&\"'");
        assert_eq!(s, "<Key>a&lt;b&gt;&amp;&quot;&apos;</Key>");
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
    }
}
