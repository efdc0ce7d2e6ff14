//! Fixed requests signed by botocore 1.44.5 (the AWS CLI's signer), captured as sent on the
//! wire by `fixtures/botocore_vectors.py` with the clock frozen at 2026-11-22T12:34:56Z.

use std::time::{Duration, SystemTime};

use berth_auth::{parse_amz_date, verify, Role};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const UA: &str = "Botocore/1.44.5 ua/2.1 os/linux#6.18.44-fc-v769 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/N,b,Z,E,e cfg/retry-mode#standard";

fn now() -> SystemTime {
    parse_amz_date("20261122T123456Z").unwrap() + Duration::from_secs(3)
}

fn keys(akid: &str) -> Option<(String, Role)> {
    (akid == AKID).then(|| (SECRET.to_owned(), Role::Admin))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn aws_cli_ecs_list_clusters() {
    let body = br#"{"maxResults": 10}"#;
    let mut h = headers(&[
        ("Host", "localhost:8080"),
        ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20261122T123456Z"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261122/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=659a4c0f7eb3a84524edc667eb6248887ebd800f02c3edaa8900dfb7e2dea776"),
        ("amz-sdk-invocation-id", "f8d608e2-12c8-47b9-8120-ed2e134faa0d"),
        ("amz-sdk-request", "attempt=1; max=3"),
        ("Content-Length", "18"),
    ]);
    let uri = Uri::from_static("/");
    let v = verify("POST", &uri, &h, body, &keys, now()).unwrap();
    assert_eq!(v.access_key_id, AKID);
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "ecs");
    assert!(!v.presigned);
    assert!(v.payload_signed);

    // Tampering with the body or a signed header breaks it; unsigned headers don't matter.
    let err = verify("POST", &uri, &h, br#"{"maxResults": 11}"#, &keys, now()).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    h.insert("user-agent", HeaderValue::from_static("curl/8"));
    verify("POST", &uri, &h, body, &keys, now()).unwrap();
    h.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
    );
    let err = verify("POST", &uri, &h, body, &keys, now()).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
}

#[test]
fn aws_cli_logs_other_region() {
    let body = br#"{"logGroupName": "/ecs/weird name \u00e9"}"#;
    let h = headers(&[
        ("Host", "127.0.0.1:8080"),
        ("X-Amz-Target", "Logs_20140328.CreateLogGroup"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20261122T123456Z"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261122/eu-west-3/logs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=af1a1513058d11953e1faeaa880fbfb3a7d451e8794ef361dca2f43d6f9a268f"),
        ("amz-sdk-request", "attempt=1; max=3"),
    ]);
    let v = verify("POST", &Uri::from_static("/"), &h, body, &keys, now()).unwrap();
    assert_eq!(
        (v.region.as_str(), v.service.as_str()),
        ("eu-west-3", "logs")
    );
}

#[test]
fn aws_cli_with_session_token() {
    let h = headers(&[
        ("Host", "berth.internal:4566"),
        ("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("User-Agent", UA),
        ("X-Amz-Date", "20261122T123456Z"),
        ("X-Amz-Security-Token", "FQoGZXIvYXdzEXAMPLETOKEN=="),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261122/ap-southeast-2/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=bbd69b61cf344383710cba27db5da94aeb47f1a5dfbe8dea8bdfa9ef573c38f7"),
    ]);
    let v = verify("POST", &Uri::from_static("/"), &h, b"{}", &keys, now()).unwrap();
    assert_eq!(v.service, "ecr");
}

#[test]
fn botocore_presigned_url() {
    let uri: Uri = "/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261122%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20261122T123456Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=335333f007deb291a28fa8320b020a69c29d3bfd4ec7290df10ad9bd355edf60".parse().unwrap();
    // botocore signs STS presigned URLs with the operation's method, POST, and an empty body.
    let h = headers(&[("Host", "localhost:8080")]);
    let v = verify("POST", &uri, &h, b"", &keys, now()).unwrap();
    assert!(v.presigned);
    assert_eq!(v.service, "sts");

    // 61 s later the URL has expired.
    let later = now() + Duration::from_secs(60);
    let err = verify("POST", &uri, &h, b"", &keys, later).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(err.message(), "Request has expired");

    // Another method does not verify.
    let err = verify("GET", &uri, &h, b"", &keys, now()).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");

    // Changing a non-signing query parameter breaks it.
    let tampered: Uri = uri
        .to_string()
        .replace("GetCallerIdentity", "GetSessionToken")
        .parse()
        .unwrap();
    let err = verify("POST", &tampered, &h, b"", &keys, now()).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
}
