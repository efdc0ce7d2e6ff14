//! Requests signed with aws-sigv4 exactly as the AWS SDK for Rust signs them, verified and
//! tampered with.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use berth_auth::{
    parse_amz_date, verify, verify_request, AuthError, Role, SIGNATURE_MISMATCH_MESSAGE,
};
use http::{HeaderValue, Request, Uri};
use proptest::prelude::*;

const AKID: &str = "AKIAEXAMPLEEXAMPLE23";
const SECRET: &str = "s3cr3t/EXAMPLE+KEY/abcdefghijklmnopqrstu";

fn t0() -> SystemTime {
    parse_amz_date("20261122T101500Z").unwrap()
}

fn keys() -> HashMap<String, (String, Role)> {
    HashMap::from([
        (AKID.to_owned(), (SECRET.to_owned(), Role::Agent)),
        (
            "AKIAREADONLYREADONLY".to_owned(),
            ("other".to_owned(), Role::ReadOnly),
        ),
    ])
}

struct Signer<'a> {
    secret: &'a str,
    token: Option<&'a str>,
    time: SystemTime,
    region: &'a str,
    service: &'a str,
    presign: Option<Duration>,
    unsigned_payload: bool,
}

impl Default for Signer<'_> {
    fn default() -> Self {
        Signer {
            secret: SECRET,
            token: None,
            time: t0(),
            region: "us-east-1",
            service: "ecs",
            presign: None,
            unsigned_payload: false,
        }
    }
}

impl Signer<'_> {
    /// Signs `req` (absolute URI, as a client holds it) the way the Rust SDK does, then
    /// returns it as a server receives it: origin-form URI plus a `Host` header.
    fn sign(&self, mut req: Request<Vec<u8>>) -> Request<Vec<u8>> {
        let identity: Identity = Credentials::new(
            AKID,
            self.secret,
            self.token.map(str::to_owned),
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        if self.service == "s3" {
            // What the S3 client of the Rust SDK configures.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        if let Some(exp) = self.presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(exp);
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let uri = req.uri().to_string();
        let body = if self.unsigned_payload {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(req.body())
        };
        let signable = SignableRequest::new(
            req.method().as_str(),
            Cow::Owned(uri),
            req.headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_str().unwrap())),
            body,
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let authority = req.uri().authority().unwrap().as_str().to_owned();
        let pq = req.uri().path_and_query().unwrap().as_str().to_owned();
        *req.uri_mut() = pq.parse().unwrap();
        req.headers_mut()
            .insert("host", HeaderValue::from_str(&authority).unwrap());
        req
    }
}

/// An ECS JSON request with the headers the Rust SDK sends.
fn ecs_request(operation: &str, body: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method("POST")
        .uri("http://localhost:4566/")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerServiceV20141113.{operation}"),
        )
        .header("content-length", body.len().to_string())
        .header("user-agent", "aws-sdk-rust/1.3.9 os/linux lang/rust/1.94.0")
        .header(
            "x-amz-user-agent",
            "aws-sdk-rust/1.3.9 ua/2.1 api/ecs/1.0 os/linux lang/rust/1.94.0",
        )
        .header(
            "amz-sdk-invocation-id",
            "5b9c2d39-7a0e-4a7d-9d0f-5d6f1c7c1b11",
        )
        .header("amz-sdk-request", "attempt=1; max=3")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn check(
    req: &Request<Vec<u8>>,
    now: SystemTime,
) -> Result<berth_auth::VerifiedRequest, AuthError> {
    verify_request(req, &keys(), now)
}

#[test]
fn sdk_signed_request_verifies() {
    let req = Signer::default().sign(ecs_request("ListClusters", "{}"));
    let v = check(&req, t0() + Duration::from_secs(2)).unwrap();
    assert_eq!(v.access_key_id, AKID);
    assert_eq!(v.role, Role::Agent);
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "ecs");
    assert_eq!(v.signed_at, t0());
    assert!(!v.presigned && v.payload_signed);
}

#[test]
fn sdk_signed_with_session_token_other_region_and_service() {
    let signer = Signer {
        token: Some("IQoJb3JpZ2luX2VjEXAMPLE//token=="),
        region: "ap-northeast-3",
        service: "logs",
        ..Signer::default()
    };
    let req = signer.sign(ecs_request("PutLogEvents", r#"{"logGroupName":"a"}"#));
    assert!(req.headers().contains_key("x-amz-security-token"));
    let v = check(&req, t0()).unwrap();
    assert_eq!(
        (v.region.as_str(), v.service.as_str()),
        ("ap-northeast-3", "logs")
    );
}

#[test]
fn query_string_and_odd_path_verify() {
    let req = Request::builder()
        .method("GET")
        .uri("http://127.0.0.1:8080/v1/some%20path/./x/../y?b=2&a=1&a=0&empty=&sp=a%20b")
        .header("x-amz-user-agent", "aws-sdk-rust")
        .body(Vec::new())
        .unwrap();
    let req = Signer::default().sign(req);
    check(&req, t0()).unwrap();
}

#[test]
fn date_header_instead_of_x_amz_date() {
    // Hand-built: a client that signs `date` rather than `x-amz-date`. The signature is made
    // with aws-sigv4 excluding x-amz-date, which is what such a client's canonical form is.
    let identity: Identity = Credentials::new(AKID, SECRET, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(vec![Cow::Borrowed("x-amz-date")]);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ecs")
        .time(t0())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let date = "Sun, 22 Nov 2026 10:15:00 GMT";
    let signable = SignableRequest::new(
        "POST",
        "/",
        [("host", "localhost"), ("date", date)].into_iter(),
        SignableBody::Bytes(b"{}"),
    )
    .unwrap();
    let sig = sign(signable, &params).unwrap().signature().to_owned();
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "localhost")
        .header("date", date)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={AKID}/20261122/us-east-1/ecs/aws4_request, SignedHeaders=date;host, Signature={sig}"),
        )
        .body(b"{}".to_vec())
        .unwrap();
    check(&req, t0()).unwrap();
}

#[test]
fn wrong_secret_is_invalid_signature() {
    let signer = Signer {
        secret: "not-the-secret",
        ..Signer::default()
    };
    let err = check(&signer.sign(ecs_request("ListClusters", "{}")), t0()).unwrap_err();
    assert_eq!(err, AuthError::SignatureMismatch);
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(err.message(), SIGNATURE_MISMATCH_MESSAGE);
    assert_eq!(err.http_status(), 400);
}

#[test]
fn unknown_key_is_unrecognized_client() {
    let req = Signer::default().sign(ecs_request("ListClusters", "{}"));
    let err = verify_request(&req, &|_: &str| None, t0()).unwrap_err();
    assert_eq!(err.code(), "UnrecognizedClientException");
    assert_eq!(
        err.message(),
        "The security token included in the request is invalid."
    );
}

#[test]
fn no_auth_is_missing_authentication_token() {
    let req = ecs_request("ListClusters", "{}");
    let err = check(&req, t0()).unwrap_err();
    assert_eq!(err.code(), "MissingAuthenticationTokenException");
    assert_eq!(err.message(), "Missing Authentication Token");
    assert_eq!(err.http_status(), 400);
}

#[test]
fn clock_skew_both_ways() {
    let req = Signer::default().sign(ecs_request("ListClusters", "{}"));
    // 15 minutes either way is still fine.
    check(&req, t0() + Duration::from_secs(15 * 60)).unwrap();
    check(&req, t0() - Duration::from_secs(15 * 60)).unwrap();

    let err = check(&req, t0() + Duration::from_secs(16 * 60)).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Signature expired: 20261122T101500Z is now earlier than 20261122T101600Z (20261122T103100Z - 15 min.)"
    );
    let err = check(&req, t0() - Duration::from_secs(16 * 60)).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Signature not yet current: 20261122T101500Z is still later than 20261122T101400Z (20261122T095900Z + 15 min.)"
    );
}

#[test]
fn tampering_is_invalid_signature() {
    let req = Signer::default().sign(ecs_request("RunTask", r#"{"count":1}"#));
    check(&req, t0()).unwrap();

    let mut body = req.clone();
    *body.body_mut() = br#"{"count":9}"#.to_vec();
    assert_eq!(
        check(&body, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut header = req.clone();
    header.headers_mut().insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
    );
    assert_eq!(
        check(&header, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut host = req.clone();
    host.headers_mut()
        .insert("host", HeaderValue::from_static("evil:4566"));
    assert_eq!(
        check(&host, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut path = req.clone();
    *path.uri_mut() = Uri::from_static("/admin");
    assert_eq!(
        check(&path, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut query = req.clone();
    *query.uri_mut() = Uri::from_static("/?x=1");
    assert_eq!(
        check(&query, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut method = req.clone();
    *method.method_mut() = http::Method::PUT;
    assert_eq!(
        check(&method, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    // Unsigned headers may change freely.
    let mut ua = req.clone();
    ua.headers_mut()
        .insert("user-agent", HeaderValue::from_static("something else"));
    check(&ua, t0()).unwrap();

    // Removing a signed header is reported like AWS does.
    let mut removed = req.clone();
    removed.headers_mut().remove("x-amz-target");
    let err = check(&removed, t0()).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignatureException");
    assert_eq!(
        err.message(),
        "'x-amz-target' is named as a SignedHeader, but it does not exist in the HTTP request."
    );
}

#[test]
fn unsigned_payload_when_client_signs_it() {
    let mut req = ecs_request("ListClusters", "{}");
    req.headers_mut().insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    let signer = Signer {
        unsigned_payload: true,
        ..Signer::default()
    };
    let mut req = signer.sign(req);
    let v = check(&req, t0()).unwrap();
    assert!(!v.payload_signed);
    // The body is not covered, but everything else still is.
    *req.body_mut() = b"anything".to_vec();
    check(&req, t0()).unwrap();
}

#[test]
fn presigned_urls() {
    let signer = Signer {
        presign: Some(Duration::from_secs(300)),
        ..Signer::default()
    };
    let req = Request::builder()
        .method("GET")
        .uri("http://localhost:4566/v2/thing?Action=Describe&z=%2F")
        .body(Vec::new())
        .unwrap();
    let req = signer.sign(req);
    assert!(req.uri().query().unwrap().contains("X-Amz-Signature="));
    let v = check(&req, t0() + Duration::from_secs(299)).unwrap();
    assert!(v.presigned);
    assert!(v.payload_signed);

    let err = check(&req, t0() + Duration::from_secs(301)).unwrap_err();
    assert!(matches!(err, AuthError::PresignedUrlExpired { .. }));
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(err.message(), "Request has expired");

    let err = check(&req, t0() - Duration::from_secs(16 * 60)).unwrap_err();
    assert!(err.message().starts_with("Signature not yet current: "));

    let mut tampered = req.clone();
    let uri = req
        .uri()
        .to_string()
        .replace("Action=Describe", "Action=Delete");
    *tampered.uri_mut() = uri.parse().unwrap();
    assert_eq!(
        check(&tampered, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut longer = req.clone();
    let uri = req
        .uri()
        .to_string()
        .replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    *longer.uri_mut() = uri.parse().unwrap();
    assert_eq!(
        check(&longer, t0()).unwrap_err(),
        AuthError::SignatureMismatch
    );

    let mut too_long = req.clone();
    let uri = req
        .uri()
        .to_string()
        .replace("X-Amz-Expires=300", "X-Amz-Expires=604801");
    *too_long.uri_mut() = uri.parse().unwrap();
    assert_eq!(
        check(&too_long, t0()).unwrap_err().code(),
        "IncompleteSignatureException"
    );

    let mut partial = req.clone();
    let uri = req.uri().to_string();
    let cut = uri.find("&X-Amz-Signature=").unwrap();
    *partial.uri_mut() = uri[..cut].parse().unwrap();
    assert_eq!(
        check(&partial, t0()).unwrap_err().message(),
        "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
    );
}

#[test]
fn presigned_unsigned_payload_and_session_token() {
    let signer = Signer {
        presign: Some(Duration::from_secs(60)),
        unsigned_payload: true,
        token: Some("TOKEN/with+chars=="),
        service: "s3",
        ..Signer::default()
    };
    let req = Request::builder()
        .method("PUT")
        .uri("http://localhost:4566/bucket/key%20with%20space")
        .body(b"data".to_vec())
        .unwrap();
    let req = signer.sign(req);
    assert!(req.uri().query().unwrap().contains("X-Amz-Security-Token="));
    let v = check(&req, t0()).unwrap();
    assert!(v.presigned && !v.payload_signed);
    assert_eq!(v.service, "s3");
}

fn with_auth(value: &[u8]) -> Request<Vec<u8>> {
    let mut req = ecs_request("ListClusters", "{}");
    req.headers_mut()
        .insert("x-amz-date", HeaderValue::from_static("20261122T101500Z"));
    req.headers_mut()
        .insert("host", HeaderValue::from_static("localhost:4566"));
    *req.uri_mut() = Uri::from_static("/");
    req.headers_mut()
        .insert("authorization", HeaderValue::from_bytes(value).unwrap());
    req
}

#[test]
fn malformed_authorization_headers() {
    let cases: &[(&str, &str)] = &[
        (
            "Bearer abc",
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=Bearer abc",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request",
            "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request",
        ),
        (
            "AWS4-HMAC-SHA256 Credential= AKID/20261122/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00",
            "'AKID/20261122/us-east-1/ecs/aws4_request' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential= AKID/20261122/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00'.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request, SignedHeaders=content-type;x-amz-date, Signature=00",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
    ];
    for (header, message) in cases {
        let err = check(&with_auth(header.as_bytes()), t0()).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignatureException", "{header}");
        assert_eq!(&err.message(), message, "{header}");
    }

    // Wrong terminator and wrong scope date are InvalidSignatureException with AWS's text.
    let err = check(
        &with_auth(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws5_request, SignedHeaders=host, Signature=00"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
    );
    let err = check(
        &with_auth(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261121/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261121' != '20261122', from '20261122T101500Z'."
    );

    // Commas without spaces are accepted (and then the signature is simply wrong).
    let err = check(
        &with_auth(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request,SignedHeaders=host;x-amz-date,Signature=00"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(err, AuthError::SignatureMismatch);

    // No date at all.
    let mut req = with_auth(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00");
    req.headers_mut().remove("x-amz-date");
    let err = check(&req, t0()).unwrap_err();
    assert_eq!(
        err.message(),
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEEXAMPLE23/20261122/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00"
    );

    // Non-UTF-8, huge and duplicated headers don't panic.
    let mut bytes = b"AWS4-HMAC-SHA256 Credential=\xff\xfe/x".to_vec();
    let err = check(&with_auth(&bytes), t0()).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignatureException");
    bytes = vec![b'a'; 100_000];
    let err = check(&with_auth(&bytes), t0()).unwrap_err();
    assert!(err.message().len() < 4096);
    let mut dup = Signer::default().sign(ecs_request("ListClusters", "{}"));
    let auth = dup.headers()["authorization"].clone();
    dup.headers_mut().append("authorization", auth);
    assert_eq!(
        check(&dup, t0()).unwrap_err().code(),
        "IncompleteSignatureException"
    );
}

#[test]
fn duplicated_signed_headers_canonicalize_like_the_sdk() {
    let mut req = ecs_request("ListClusters", "{}");
    req.headers_mut()
        .append("x-custom", HeaderValue::from_static("one"));
    req.headers_mut()
        .append("x-custom", HeaderValue::from_static("  two   words "));
    let req = Signer::default().sign(req);
    check(&req, t0()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_authorization_never_panics(value in proptest::collection::vec(any::<u8>(), 0..400)) {
        // Header values can't hold control characters other than tab.
        let value: Vec<u8> = value.into_iter().filter(|b| *b >= 0x20 && *b != 0x7f || *b == b'\t').collect();
        let req = with_auth(&value);
        let err = check(&req, t0()).unwrap_err();
        prop_assert!(matches!(
            err.code(),
            "IncompleteSignatureException" | "InvalidSignatureException" | "UnrecognizedClientException"
        ));
    }

    #[test]
    fn structured_garbage_never_panics(
        cred in "[A-Za-z0-9/_=-]{0,60}",
        signed in "[a-z;:-]{0,40}",
        sig in "[0-9a-f ]{0,70}",
        date in "[0-9TZ]{0,20}",
    ) {
        let header = format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}");
        let mut req = with_auth(header.as_bytes());
        req.headers_mut().insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
        let _ = check(&req, t0());
    }

    #[test]
    fn arbitrary_presigned_queries_never_panic(q in "[A-Za-z0-9%&=;/._-]{0,200}") {
        let uri: Uri = match format!("/?X-Amz-Algorithm=AWS4-HMAC-SHA256&{q}").parse() {
            Ok(u) => u,
            Err(_) => return Ok(()),
        };
        let _ = verify("GET", &uri, &http::HeaderMap::new(), b"", &keys(), t0());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Requests of the shape SDKs send to JSON APIs (which berth verifies without aws-sigv4's
    /// request model), with arbitrary extra headers, values, bodies, regions, services and
    /// session tokens, signed by aws-sigv4 as the SDK signs them: each verifies, and changing
    /// the body, a signed header's value or the method makes it fail. Values with spaces to
    /// trim or collapse take the general path and must verify too.
    #[test]
    fn sdk_shaped_requests_verify_through_the_direct_path(
        extra in proptest::collection::vec(("x-[a-z0-9-]{1,12}", "[ -~]{0,24}"), 0..5),
        body in "[ -~]{0,200}",
        region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
        service in prop::sample::select(vec!["ecs", "logs", "ecr", "events", "secretsmanager"]),
        token in proptest::option::of("[A-Za-z0-9/+=]{16,64}"),
        unsigned in any::<bool>(),
        tamper in 0usize..3,
    ) {
        let mut req = ecs_request("ListClusters", &body);
        for (name, value) in &extra {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if unsigned {
            req.headers_mut().insert(
                "x-amz-content-sha256",
                HeaderValue::from_static("UNSIGNED-PAYLOAD"),
            );
        }
        let signer = Signer {
            region: &region,
            service,
            token: token.as_deref(),
            unsigned_payload: unsigned,
            ..Signer::default()
        };
        let req = signer.sign(req);
        let v = check(&req, t0());
        prop_assert!(v.is_ok(), "{:?}", v);
        let v = v.unwrap();
        prop_assert_eq!(v.region.as_str(), region.as_str());
        prop_assert_eq!(v.service.as_str(), service);
        prop_assert_eq!(v.payload_signed, !unsigned);

        let mut bad = req.clone();
        match tamper {
            0 if !unsigned => bad.body_mut().push(b'x'),
            0 | 1 => {
                bad.headers_mut().insert(
                    "x-amz-target",
                    HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
                );
            }
            _ => *bad.method_mut() = http::Method::PUT,
        }
        prop_assert_eq!(check(&bad, t0()).unwrap_err(), AuthError::SignatureMismatch);
    }
}

/// Run with `cargo test --release -p berth-auth --test sigv4 -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let req = Signer::default().sign(ecs_request("ListClusters", r#"{"maxResults":10}"#));
    let keys = keys();
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(verify_request(&req, &keys, t0()).unwrap());
    }
    let per = start.elapsed() / n;
    println!("verify: {per:?} per request");
}
