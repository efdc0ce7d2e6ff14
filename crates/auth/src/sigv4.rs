//! AWS Signature Version 4 verification, both the `Authorization` header form and the
//! presigned query-string form.
//!
//! The canonical request, string to sign, signing key and signature are all computed by the
//! `aws-sigv4` crate (the signer of the AWS SDK for Rust): we rebuild a
//! [`SignableRequest`] from the incoming method, path and query, the headers the client
//! named in `SignedHeaders`, and the body, sign it with the stored secret at the client's own
//! timestamp, region and service, and compare signatures in constant time.
//!
//! How the rebuilt request is made to canonicalize exactly like the client's:
//! * Only headers named in `SignedHeaders` are passed, and `excluded_headers` is emptied
//!   (aws-sigv4 by default drops `user-agent`, `transfer-encoding`, … which some clients do
//!   sign), so aws-sigv4's signed-header list is the client's.
//! * In header mode aws-sigv4 always inserts `x-amz-date` itself, formatted from the signing
//!   time; we parse the client's `X-Amz-Date` into that time, so the value is byte-identical.
//!   When the client signed with `Date` instead, `x-amz-date` is put in `excluded_headers`.
//! * No session token is put in the credentials, so aws-sigv4 adds no
//!   `x-amz-security-token`; if the client signed one, it is passed as an ordinary header
//!   (header form) or left in the query (presigned form), where it canonicalizes the same.
//! * `payload_checksum_kind` is `NoHeader`, so no `x-amz-content-sha256` is added; a signed
//!   one is passed as an ordinary header. The payload hash is the body's SHA-256 (what
//!   botocore and the Rust SDK sign for non-S3 services) unless the client signed
//!   `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
//! * URI path normalization and double percent-encoding are on (the non-S3 rules), off for
//!   service `s3`.
//! * Header-form requests of the shape every SDK sends to a JSON API (path `/`, no query,
//!   `x-amz-date` signed, plain header values) skip aws-sigv4's request model: their canonical
//!   request is written directly (`direct_signature`), and only the signing key and HMAC come from
//!   aws-sigv4. Everything else takes the general path above.
//! * Presigned: the six `X-Amz-*` signing parameters are removed from the query, because
//!   aws-sigv4 adds `X-Amz-Algorithm/Credential/Date/Expires/SignedHeaders` back from the
//!   signing parameters (with `expires_in` = the client's `X-Amz-Expires`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::MAX_CLOCK_SKEW;
use crate::role::principal_arn;
use crate::time::{format_amz_date, parse_amz_date, parse_http_date};
use crate::{AuthError, Role};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The longest `X-Amz-Expires` AWS accepts: one week.
pub const MAX_PRESIGNED_EXPIRES: u64 = 604_800;

/// At most this many headers may be named in `SignedHeaders` (a bound on work per request).
const MAX_SIGNED_HEADERS: usize = 64;

/// Signing keys kept by the direct path (see `signing_key`).
const SIGNING_KEYS_CACHED: usize = 256;

/// At most this many bytes of a malformed `Authorization` header are echoed in messages.
const MAX_ECHO: usize = 2048;

/// Looks up an access key id: its secret access key and role, or `None` if unknown.
///
/// Implemented for closures `Fn(&str) -> Option<(String, Role)>` and for
/// `HashMap<String, (String, Role)>`.
pub trait KeyLookup {
    /// The secret access key and role of `access_key_id`, or `None` if it is unknown.
    fn lookup(&self, access_key_id: &str) -> Option<(String, Role)>;
}

impl<F> KeyLookup for F
where
    F: Fn(&str) -> Option<(String, Role)>,
{
    fn lookup(&self, access_key_id: &str) -> Option<(String, Role)> {
        self(access_key_id)
    }
}

impl<S: std::hash::BuildHasher> KeyLookup for HashMap<String, (String, Role), S> {
    fn lookup(&self, access_key_id: &str) -> Option<(String, Role)> {
        self.get(access_key_id).cloned()
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// The key's role.
    pub role: Role,
    /// The region of the credential scope (any region is accepted).
    pub region: String,
    /// The service of the credential scope, e.g. `ecs`, `ecr`, `logs`.
    pub service: String,
    /// The request's timestamp (`X-Amz-Date`, or `Date`).
    pub signed_at: SystemTime,
    /// Whether the signature came in the query string (a presigned URL).
    pub presigned: bool,
    /// Whether the body is covered by the signature (false for `UNSIGNED-PAYLOAD`).
    pub payload_signed: bool,
}

impl VerifiedRequest {
    /// The IAM-style ARN of the caller in `account_id`:
    /// `arn:aws:iam::<account>:user/<access key id>`.
    pub fn principal_arn(&self, account_id: &str) -> String {
        principal_arn(account_id, &self.access_key_id)
    }

    /// [`crate::authorize`] for this caller, with its ARN in the denial message.
    pub fn authorize(
        &self,
        account_id: &str,
        service: &str,
        operation: &str,
    ) -> Result<(), AuthError> {
        crate::authorize(self.role, service, operation)
            .map_err(|e| e.with_principal(self.principal_arn(account_id)))
    }
}

/// Verifies the SigV4 signature of an `http::Request` whose body is already buffered.
pub fn verify_request<B, K>(
    request: &http::Request<B>,
    keys: &K,
    now: SystemTime,
) -> Result<VerifiedRequest, AuthError>
where
    B: AsRef<[u8]>,
    K: KeyLookup + ?Sized,
{
    verify(
        request.method().as_str(),
        request.uri(),
        request.headers(),
        request.body().as_ref(),
        keys,
        now,
    )
}

/// Verifies the SigV4 signature of a request: the `Authorization: AWS4-HMAC-SHA256 …` header
/// form or, when there is no `Authorization` header, the presigned query-string form.
///
/// `uri` is the request target as received (origin-form `/path?query`, or absolute-form);
/// `body` the complete body; `now` the server's clock.
pub fn verify<K: KeyLookup + ?Sized>(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    keys: &K,
    now: SystemTime,
) -> Result<VerifiedRequest, AuthError> {
    let mut auth_values = headers.get_all(http::header::AUTHORIZATION).iter();
    if let Some(value) = auth_values.next() {
        if auth_values.next().is_some() {
            return Err(AuthError::IncompleteSignature(
                "The request contains more than one Authorization header.".to_owned(),
            ));
        }
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            return Err(incomplete_header(
                &String::from_utf8_lossy(value.as_bytes()),
                &["Credential", "Signature", "SignedHeaders"],
                false,
            ));
        };
        return verify_header_form(method, uri, headers, body, value, keys, now);
    }
    match uri.query() {
        Some(q) if has_query_key(q, "X-Amz-Algorithm") || has_query_key(q, "X-Amz-Signature") => {
            verify_presigned(method, uri, headers, body, q, keys, now)
        }
        _ => Err(AuthError::MissingAuthenticationToken),
    }
}

/// Whether the raw query has a parameter named exactly `key`.
fn has_query_key(query: &str, key: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(key))
}

/// Truncates `s` to at most `MAX_ECHO` bytes on a character boundary.
fn echo(s: &str) -> &str {
    if s.len() <= MAX_ECHO {
        return s;
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// AWS's message for an `Authorization` header missing components.
fn incomplete_header(header: &str, missing: &[&str], missing_date: bool) -> AuthError {
    let mut msg = String::new();
    for m in missing {
        msg.push_str("Authorization header requires '");
        msg.push_str(m);
        msg.push_str("' parameter. ");
    }
    if missing_date {
        msg.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    msg.push_str("Authorization=");
    msg.push_str(echo(header));
    AuthError::IncompleteSignature(msg)
}

/// The parts of a credential scope, `AKID/YYYYMMDD/region/service/aws4_request`.
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

fn parse_scope(credential: &str) -> Result<Scope<'_>, AuthError> {
    let mut parts = credential.split('/');
    let (Some(akid), Some(date), Some(region), Some(service), Some(term), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AuthError::IncompleteSignature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            echo(credential)
        )));
    };
    if term != "aws4_request" {
        return Err(AuthError::InvalidCredentialScope(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            echo(term)
        )));
    }
    if akid.is_empty() || region.is_empty() || service.is_empty() {
        return Err(AuthError::IncompleteSignature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            echo(credential)
        )));
    }
    Ok(Scope {
        access_key_id: akid,
        date,
        region,
        service,
    })
}

/// Clock-skew check shared by both forms.
fn check_skew(signed_at: SystemTime, now: SystemTime) -> Result<(), AuthError> {
    if let Ok(ahead) = signed_at.duration_since(now) {
        if ahead > MAX_CLOCK_SKEW {
            return Err(AuthError::SignatureNotYetCurrent { signed_at, now });
        }
    } else if let Ok(behind) = now.duration_since(signed_at) {
        if behind > MAX_CLOCK_SKEW {
            return Err(AuthError::SignatureExpired { signed_at, now });
        }
    }
    Ok(())
}

/// The scope's date must be the request timestamp's date.
fn check_scope_date(scope: &Scope<'_>, signed_at: SystemTime) -> Result<(), AuthError> {
    let iso = format_amz_date(signed_at);
    if scope.date.as_bytes() != &iso.as_bytes()[..8] {
        return Err(AuthError::InvalidCredentialScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            echo(scope.date),
            &iso[..8],
            iso
        )));
    }
    Ok(())
}

fn signing_settings(service: &str, location: SignatureLocation) -> SigningSettings {
    let s3 = service == "s3";
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = if s3 {
        PercentEncodingMode::Single
    } else {
        PercentEncodingMode::Double
    };
    settings.uri_path_normalization_mode = if s3 {
        UriPathNormalizationMode::Disabled
    } else {
        UriPathNormalizationMode::Enabled
    };
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.session_token_mode = SessionTokenMode::Include;
    settings.signature_location = location;
    settings.excluded_headers = Some(Vec::new());
    settings
}

/// Collects `(name, value)` for every header named in `SignedHeaders` except those aws-sigv4
/// adds itself (`x-amz-date` in header mode). `host` falls back to the URI's authority.
fn collect_signed_headers<'a>(
    signed_headers: &'a str,
    headers: &'a HeaderMap,
    uri: &'a Uri,
    skip_x_amz_date: bool,
) -> Result<Vec<(&'a str, &'a str)>, AuthError> {
    let mut out = Vec::with_capacity(8);
    let mut has_host = false;
    for (i, name) in signed_headers.split(';').enumerate() {
        if i >= MAX_SIGNED_HEADERS {
            return Err(AuthError::SignatureMismatch);
        }
        if name.is_empty() {
            continue;
        }
        if name == "host" {
            has_host = true;
        }
        if skip_x_amz_date && name == "x-amz-date" {
            continue;
        }
        let mut found = false;
        for value in headers.get_all(name) {
            found = true;
            // Values that are not UTF-8 cannot have been signed by an SDK.
            let value =
                std::str::from_utf8(value.as_bytes()).map_err(|_| AuthError::SignatureMismatch)?;
            out.push((name, value));
        }
        if !found {
            match (name, uri.authority()) {
                ("host", Some(authority)) => out.push((name, authority.as_str())),
                _ => {
                    return Err(AuthError::IncompleteSignature(format!(
                    "'{}' is named as a SignedHeader, but it does not exist in the HTTP request.",
                    echo(name)
                )))
                }
            }
        }
    }
    if !has_host {
        return Err(AuthError::IncompleteSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok(out)
}

/// Signs the rebuilt request and compares the result with `provided`, in constant time.
#[allow(clippy::too_many_arguments)]
fn signature_matches(
    method: &str,
    path_and_query: &str,
    signed: &[(&str, &str)],
    body: SignableBody<'_>,
    identity: &Identity,
    scope: &Scope<'_>,
    signed_at: SystemTime,
    settings: SigningSettings,
    provided: &str,
) -> Result<bool, AuthError> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(scope.region)
        .name(scope.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| AuthError::SignatureMismatch)?
        .into();
    let request = SignableRequest::new(
        method,
        Cow::Borrowed(path_and_query),
        signed.iter().copied(),
        body,
    )
    .map_err(|_| AuthError::SignatureMismatch)?;
    // Errors here mean a signed header name or value that does not canonicalize (e.g. an
    // invalid header name in SignedHeaders): no client could have produced a valid signature.
    let output = sign(request, &params).map_err(|_| AuthError::SignatureMismatch)?;
    Ok(bool::from(
        output.signature().as_bytes().ct_eq(provided.as_bytes()),
    ))
}

/// The secret and role of `access_key_id`, or `UnrecognizedClient`.
fn lookup_secret<K: KeyLookup + ?Sized>(
    keys: &K,
    access_key_id: &str,
) -> Result<(String, Role), AuthError> {
    keys.lookup(access_key_id)
        .ok_or(AuthError::UnrecognizedClient)
}

fn lookup_identity<K: KeyLookup + ?Sized>(
    keys: &K,
    access_key_id: &str,
) -> Result<(Identity, Role), AuthError> {
    let (secret, role) = lookup_secret(keys, access_key_id)?;
    Ok((identity(access_key_id, secret), role))
}

fn identity(access_key_id: &str, secret: String) -> Identity {
    Identity::new(
        Credentials::new(access_key_id, secret, None, None, "berth"),
        None,
    )
}

/// The signature of a header-form request of the shape every AWS SDK sends to a JSON API (path
/// `/`, no query string, `x-amz-date` signed, each signed header present once, lowercase names,
/// printable values with no spaces for aws-sigv4 to trim or collapse), computed over the same
/// canonical request aws-sigv4 builds for it, byte for byte (the property test
/// `sdk_shaped_requests_verify_through_the_direct_path` signs such requests with aws-sigv4 and
/// checks them here). Built directly into one buffer: aws-sigv4's header map and formatting were
/// most of the cost of verifying a small read (a fifth of its CPU). The signing key and the final
/// HMAC are aws-sigv4's. `None` when the request is not of that shape (the caller signs it with
/// aws-sigv4).
fn direct_signature(
    method: &str,
    path_and_query: &str,
    signed: &[(&str, &str)],
    payload_hash: &str,
    secret: &str,
    scope: &Scope<'_>,
    signed_at: SystemTime,
) -> Option<String> {
    if path_and_query != "/" || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let amz_date = format_amz_date(signed_at);
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(signed.len() + 1);
    headers.extend_from_slice(signed);
    headers.push(("x-amz-date", &amz_date));
    headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let simple_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let simple_value = |v: &str| {
        !v.starts_with(' ')
            && !v.ends_with(' ')
            && !v.contains("  ")
            && v.bytes().all(|b| (0x20..0x7f).contains(&b))
    };
    if headers.windows(2).any(|w| w[0].0 == w[1].0)
        || !headers
            .iter()
            .all(|(n, v)| simple_name(n) && simple_value(v))
    {
        return None;
    }
    let mut creq = String::with_capacity(512);
    creq.push_str(method);
    creq.push_str("\n/\n\n");
    for (n, v) in &headers {
        creq.push_str(n);
        creq.push(':');
        creq.push_str(v);
        creq.push('\n');
    }
    creq.push('\n');
    for (i, (n, _)) in headers.iter().enumerate() {
        if i > 0 {
            creq.push(';');
        }
        creq.push_str(n);
    }
    creq.push('\n');
    creq.push_str(payload_hash);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        &amz_date[..8],
        scope.region,
        scope.service,
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let key = signing_key(
        secret,
        &amz_date[..8],
        signed_at,
        scope.region,
        scope.service,
    )?;
    Some(v4::calculate_signature(key, string_to_sign.as_bytes()))
}

/// aws-sigv4's signing key (four chained HMACs), remembered per secret, day, region and
/// service: every request a client signs on one day shares it. At most
/// [`SIGNING_KEYS_CACHED`] are kept; the cache starts over when full. `None` only if aws-sigv4's
/// key were not 32 bytes (the caller then takes the aws-sigv4 path).
fn signing_key(
    secret: &str,
    day: &str,
    signed_at: SystemTime,
    region: &str,
    service: &str,
) -> Option<[u8; 32]> {
    static KEYS: OnceLock<Mutex<HashMap<String, [u8; 32]>>> = OnceLock::new();
    let cache = KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    // Day, region and service come from a header value, which holds no newline; the secret is last.
    let mut id = String::with_capacity(day.len() + region.len() + service.len() + secret.len() + 3);
    for part in [day, "\n", region, "\n", service, "\n", secret] {
        id.push_str(part);
    }
    if let Some(key) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Some(*key);
    }
    let key: [u8; 32] = v4::generate_signing_key(secret, signed_at, region, service)
        .as_ref()
        .try_into()
        .ok()?;
    let mut keys = cache.lock().unwrap_or_else(|e| e.into_inner());
    if keys.len() >= SIGNING_KEYS_CACHED {
        keys.clear();
    }
    keys.insert(id, key);
    Some(key)
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn verify_header_form<K: KeyLookup + ?Sized>(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    auth: &str,
    keys: &K,
    now: SystemTime,
) -> Result<VerifiedRequest, AuthError> {
    let (credential, signed_headers, signature) = parse_authorization(auth, headers)?;
    let scope = parse_scope(credential)?;

    // X-Amz-Date wins over Date, as in AWS.
    let amz_date = headers.get("x-amz-date");
    let signed_at = match amz_date {
        Some(v) => {
            let s = std::str::from_utf8(v.as_bytes()).unwrap_or("");
            parse_amz_date(s).ok_or_else(|| {
                AuthError::IncompleteSignature(format!(
                    "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
                    echo(&String::from_utf8_lossy(v.as_bytes()))
                ))
            })?
        }
        None => {
            let v = headers
                .get(http::header::DATE)
                .ok_or_else(|| incomplete_header(auth, &[], true))?;
            let s = std::str::from_utf8(v.as_bytes()).unwrap_or("");
            parse_http_date(s).ok_or_else(|| {
                AuthError::IncompleteSignature(format!(
                    "Date must be in RFC 7231 format. Got '{}'.",
                    echo(&String::from_utf8_lossy(v.as_bytes()))
                ))
            })?
        }
    };
    check_skew(signed_at, now)?;
    check_scope_date(&scope, signed_at)?;

    let x_amz_date_signed = signed_headers.split(';').any(|h| h == "x-amz-date");
    let signed = collect_signed_headers(signed_headers, headers, uri, true)?;
    let (secret, role) = lookup_secret(keys, scope.access_key_id)?;
    let unsigned_payload = signed
        .iter()
        .any(|(n, v)| *n == "x-amz-content-sha256" && *v == "UNSIGNED-PAYLOAD");
    let verified = VerifiedRequest {
        access_key_id: scope.access_key_id.to_owned(),
        role,
        region: scope.region.to_owned(),
        service: scope.service.to_owned(),
        signed_at,
        presigned: false,
        payload_signed: !unsigned_payload,
    };
    if x_amz_date_signed {
        let payload_hash = if unsigned_payload {
            Cow::Borrowed("UNSIGNED-PAYLOAD")
        } else {
            Cow::Owned(hex::encode(Sha256::digest(body)))
        };
        if let Some(expected) = direct_signature(
            method,
            path_and_query(uri),
            &signed,
            &payload_hash,
            &secret,
            &scope,
            signed_at,
        ) {
            return if bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
                Ok(verified)
            } else {
                Err(AuthError::SignatureMismatch)
            };
        }
    }
    let identity = identity(scope.access_key_id, secret);

    let mut settings = signing_settings(scope.service, SignatureLocation::Headers);
    if !x_amz_date_signed {
        // Signed with `Date`: keep aws-sigv4's own x-amz-date out of the canonical request.
        settings.excluded_headers = Some(vec![Cow::Borrowed("x-amz-date")]);
    }
    let signable_body = if unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(body)
    };
    if !signature_matches(
        method,
        path_and_query(uri),
        &signed,
        signable_body,
        &identity,
        &scope,
        signed_at,
        settings,
        signature,
    )? {
        return Err(AuthError::SignatureMismatch);
    }
    Ok(verified)
}

/// Splits `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` into its three
/// values. Components may be separated by commas and/or whitespace.
fn parse_authorization<'a>(
    auth: &'a str,
    headers: &HeaderMap,
) -> Result<(&'a str, &'a str, &'a str), AuthError> {
    let has_date = headers.contains_key("x-amz-date") || headers.contains_key(http::header::DATE);
    let trimmed = auth.trim_start();
    let rest = match trimmed.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((ALGORITHM, rest)) => rest,
        _ => {
            return Err(incomplete_header(
                auth,
                &["Credential", "Signature", "SignedHeaders"],
                !has_date,
            ))
        }
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|c| !c.is_empty())
    {
        let Some((key, value)) = component.split_once('=') else {
            return Err(AuthError::IncompleteSignature(format!(
                "'{}' not a valid key=value pair (missing equal-sign) in Authorization header: '{}'.",
                echo(component),
                echo(auth)
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) if has_date && !c.is_empty() && !h.is_empty() => Ok((c, h, s)),
        (c, h, s) => {
            let mut missing: [&str; 3] = [""; 3];
            let mut n = 0;
            for (name, present) in [
                ("Credential", c.is_some_and(|v| !v.is_empty())),
                ("Signature", s.is_some()),
                ("SignedHeaders", h.is_some_and(|v| !v.is_empty())),
            ] {
                if !present {
                    missing[n] = name;
                    n += 1;
                }
            }
            Err(incomplete_header(auth, &missing[..n], !has_date))
        }
    }
}

/// The presigned-URL signing parameters, percent-decoded.
#[derive(Default)]
struct QueryAuth<'a> {
    algorithm: Option<Cow<'a, str>>,
    credential: Option<Cow<'a, str>>,
    date: Option<Cow<'a, str>>,
    expires: Option<Cow<'a, str>>,
    signed_headers: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
}

const QUERY_AUTH_KEYS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];

fn verify_presigned<K: KeyLookup + ?Sized>(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    query: &str,
    keys: &K,
    now: SystemTime,
) -> Result<VerifiedRequest, AuthError> {
    let mut qa = QueryAuth::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "X-Amz-Algorithm" => &mut qa.algorithm,
            "X-Amz-Credential" => &mut qa.credential,
            "X-Amz-Date" => &mut qa.date,
            "X-Amz-Expires" => &mut qa.expires,
            "X-Amz-SignedHeaders" => &mut qa.signed_headers,
            "X-Amz-Signature" => &mut qa.signature,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }
    let (
        Some(algorithm),
        Some(credential),
        Some(date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ) = (
        qa.algorithm,
        qa.credential,
        qa.date,
        qa.expires,
        qa.signed_headers,
        qa.signature,
    )
    else {
        return Err(AuthError::IncompleteSignature(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.".to_owned(),
        ));
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::IncompleteSignature(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"".to_owned(),
        ));
    }
    let scope = parse_scope(&credential)?;
    let signed_at = parse_amz_date(&date).ok_or_else(|| {
        AuthError::IncompleteSignature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            echo(&date)
        ))
    })?;
    let expires_secs: u64 = if !expires.is_empty() && expires.bytes().all(|b| b.is_ascii_digit()) {
        expires.parse().unwrap_or(u64::MAX)
    } else {
        return Err(AuthError::IncompleteSignature(
            "X-Amz-Expires should be a number".to_owned(),
        ));
    };
    if expires_secs > MAX_PRESIGNED_EXPIRES {
        return Err(AuthError::IncompleteSignature(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds".to_owned(),
        ));
    }
    let expires_in = Duration::from_secs(expires_secs);
    if let Ok(ahead) = signed_at.duration_since(now) {
        if ahead > MAX_CLOCK_SKEW {
            return Err(AuthError::SignatureNotYetCurrent { signed_at, now });
        }
    }
    if now
        .duration_since(signed_at)
        .is_ok_and(|age| age > expires_in)
    {
        return Err(AuthError::PresignedUrlExpired {
            signed_at,
            expires_in,
            now,
        });
    }
    check_scope_date(&scope, signed_at)?;

    let signed = collect_signed_headers(&signed_headers, headers, uri, false)?;
    let (identity, role) = lookup_identity(keys, scope.access_key_id)?;

    // The request target without the signing parameters, which aws-sigv4 re-adds.
    let mut target = String::with_capacity(uri.path().len() + query.len());
    target.push_str(uri.path());
    let mut first = true;
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or("");
        if pair.is_empty() || QUERY_AUTH_KEYS.contains(&key) {
            continue;
        }
        target.push(if first { '?' } else { '&' });
        first = false;
        target.push_str(pair);
    }

    let settings = || {
        let mut s = signing_settings(scope.service, SignatureLocation::QueryParams);
        s.expires_in = Some(expires_in);
        s
    };
    let mut payload_signed = true;
    let mut ok = signature_matches(
        method,
        &target,
        &signed,
        SignableBody::Bytes(body),
        &identity,
        &scope,
        signed_at,
        settings(),
        &signature,
    )?;
    if !ok {
        // S3-style presigned URLs sign UNSIGNED-PAYLOAD instead of the body hash.
        ok = signature_matches(
            method,
            &target,
            &signed,
            SignableBody::UnsignedPayload,
            &identity,
            &scope,
            signed_at,
            settings(),
            &signature,
        )?;
        payload_signed = false;
    }
    if !ok {
        return Err(AuthError::SignatureMismatch);
    }
    Ok(VerifiedRequest {
        access_key_id: scope.access_key_id.to_owned(),
        role,
        region: scope.region.to_owned(),
        service: scope.service.to_owned(),
        signed_at,
        presigned: true,
        payload_signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct canonical request is aws-sigv4's: for the headers an SDK sends (and an extra
    /// one), both give the same signature, and the direct path does take such a request.
    #[test]
    fn direct_signature_is_aws_sigv4s() {
        let scope = Scope {
            access_key_id: "AKIDEXAMPLE",
            date: "20261206",
            region: "eu-west-3",
            service: "ecs",
        };
        let at = parse_amz_date("20261206T171500Z").unwrap();
        let signed = [
            ("amz-sdk-request", "attempt=1; max=3"),
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "127.0.0.1:4566"),
            ("x-amz-target", "AmazonEC2ContainerServiceV20141113.RunTask"),
            ("x-custom", "a b"),
        ];
        let body = br#"{"cluster":"c","count":1}"#;
        for unsigned in [false, true] {
            let hash = if unsigned {
                "UNSIGNED-PAYLOAD".to_owned()
            } else {
                hex::encode(Sha256::digest(body))
            };
            let direct = direct_signature("POST", "/", &signed, &hash, "secret", &scope, at)
                .expect("an SDK-shaped request takes the direct path");
            let identity = identity("AKIDEXAMPLE", "secret".to_owned());
            let settings = signing_settings("ecs", SignatureLocation::Headers);
            let signable = if unsigned {
                SignableBody::UnsignedPayload
            } else {
                SignableBody::Bytes(body)
            };
            assert!(signature_matches(
                "POST", "/", &signed, signable, &identity, &scope, at, settings, &direct
            )
            .unwrap());
        }
        // Not the direct path's shape: a query, a value to trim, a duplicate, an odd name.
        let hash = "UNSIGNED-PAYLOAD";
        assert!(direct_signature("POST", "/?a=1", &signed, hash, "s", &scope, at).is_none());
        let trim = [("host", "h"), ("x-a", " v")];
        assert!(direct_signature("POST", "/", &trim, hash, "s", &scope, at).is_none());
        let dup = [("host", "h"), ("x-a", "1"), ("x-a", "2")];
        assert!(direct_signature("POST", "/", &dup, hash, "s", &scope, at).is_none());
        let upper = [("host", "h"), ("X-A", "1")];
        assert!(direct_signature("POST", "/", &upper, hash, "s", &scope, at).is_none());
    }
}
