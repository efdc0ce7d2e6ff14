//! Request decoding and response encoding for awsJson1_1.

use crate::error::ApiError;
use berth_wire::Validate;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes a request body into its wire type:
/// - not JSON / not an object / trailing garbage / not UTF-8 → `SerializationException`;
/// - a member of the wrong type or an unknown enum value → `InvalidParameterException` naming it;
/// - a missing required member → `ClientException` naming it (ECS's "X should not be null or empty.");
/// - unknown members are ignored, as AWS does.
pub fn decode<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    if !starts_an_object(body) {
        return Err(ApiError::serialization(
            "Start of structure or map found where not expected.",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_data() && path != "." {
                ApiError::invalid_parameter(format!(
                    "Invalid value for parameter {path}: {}",
                    describe(&inner)
                ))
            } else {
                ApiError::serialization(format!(
                    "Could not parse the request body: {}",
                    describe(&inner)
                ))
            });
        }
    };
    if de.end().is_err() {
        return Err(ApiError::serialization(
            "Could not parse the request body: trailing characters.",
        ));
    }
    value
        .validate()
        .map_err(|v| ApiError::client(format!("{} should not be null or empty.", v.member)))?;
    Ok(value)
}

/// serde_json's message without its " at line X column Y" suffix.
fn describe(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    // Start at 4 KiB: most answers fit, and big ones (100 tasks) grow by doubling from there
    // rather than from nothing.
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, value)
        .map_err(|e| ApiError::server(format!("response encoding failed: {e}")))?;
    Ok(out)
}

/// Epoch seconds with millisecond precision, as AWS returns timestamps.
pub fn now_epoch() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// Decodes a request body of a hand-written (not generated) shape: an empty body is the
/// default; anything not a JSON object, or not of the shape, is a `SerializationException` whose
/// message names what is wrong without serde's line and column.
pub fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    if !starts_an_object(body) {
        return Err(ApiError::serialization(
            "Start of structure or map found where not expected.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::serialization(format!(
            "Could not parse the request body: {}",
            describe(&e)
        ))
    })
}

/// Does the body's first non-blank byte open a JSON object?
fn starts_an_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// XML text escaping (awsQuery and restXml answers and errors).
pub fn escape_xml(s: &str) -> String {
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

/// One awsJson operation in a service's dispatch table: decode the request with `$decode`, run
/// `$handler(ctx, request)`, encode the answer.
#[macro_export]
macro_rules! route {
    ($decode:path, $ctx:expr, $body:expr, $handler:path) => {{
        let req = $decode($body)?;
        let out = $handler($ctx, req).await?;
        $crate::codec::encode(&out)
    }};
}

/// [`decode`], with a missing required member reported the way the newer AWS JSON services
/// (CloudWatch Logs, ECR) do: `code` ("1 validation error detected: Value null at '<member>' …").
pub fn decode_reporting_missing_as<T: DeserializeOwned + Validate>(
    body: &[u8],
    code: &'static str,
) -> Result<T, ApiError> {
    decode(body).map_err(|e| {
        if e.code == "ClientException" {
            let member = e
                .message
                .strip_suffix(" should not be null or empty.")
                .unwrap_or(&e.message)
                .to_string();
            ApiError::new(
                code,
                format!(
                    "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
                ),
            )
        } else {
            e
        }
    })
}
