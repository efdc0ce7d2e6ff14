//! Request decoding and response encoding for awsJson1_1.

use crate::error::ApiError;
use berth_wire::Validate;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How a JSON service words what the shared decoder finds wrong with a request. The protocol-level
/// faults (not JSON, a value of the wrong JSON type) are worded alike by every AWS JSON service;
/// model violations (a required member missing, a value outside its enum) by the service.
#[derive(Debug, Clone, Copy)]
pub struct JsonDialect {
    /// How a missing required member is reported.
    pub missing: Missing,
    /// The exception for a value outside its enum.
    pub invalid_value_code: &'static str,
    /// The service's own words for a value outside its enum, by member path (where AWS's answer
    /// differs from the generic validation text; each entry cites where the text comes from).
    pub enum_texts: &'static [(&'static str, &'static str)],
}

/// How a service reports a missing required member.
#[derive(Debug, Clone, Copy)]
pub enum Missing {
    /// ECS: `ClientException`, "<member> should not be null or empty."
    NotNullOrEmpty,
    /// The services validated by AWS's request validator (CloudWatch Logs, ECR): this exception,
    /// "1 validation error detected: Value null at '<member>' failed to satisfy constraint:
    /// Member must not be null".
    Validation(&'static str),
}

/// Decodes a request body into its wire type:
/// - not JSON, not an object, trailing garbage, not UTF-8, or a member of the wrong JSON type →
///   `SerializationException` in AWS's words ("STRING_VALUE cannot be converted to Integer",
///   "Start of list found where not expected.");
/// - a value outside its enum → the dialect's exception, its own text for the member if it has
///   one, else AWS's validation text naming the member and the allowed values;
/// - a missing required member → as the dialect says;
/// - unknown members are ignored, as AWS does.
///
/// No serde wording reaches the client.
pub fn decode_in<T: DeserializeOwned + Validate>(
    body: &[u8],
    dialect: &JsonDialect,
) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    let value: T = deserialize(body, dialect.invalid_value_code, dialect.enum_texts)?;
    value.validate().map_err(|v| match dialect.missing {
        Missing::NotNullOrEmpty => {
            ApiError::client(format!("{} should not be null or empty.", v.member))
        }
        Missing::Validation(code) => ApiError::new(
            code,
            format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                v.member
            ),
        ),
    })?;
    Ok(value)
}

/// Reads one JSON object of type `T`, translating serde's faults into AWS's answers.
fn deserialize<T: DeserializeOwned>(
    body: &[u8],
    invalid_value_code: &'static str,
    enum_texts: &[(&'static str, &'static str)],
) -> Result<T, ApiError> {
    if let Some(kind) = body.iter().find(|b| !b.is_ascii_whitespace()) {
        if *kind == b'[' {
            return Err(ApiError::serialization(START_OF_LIST));
        }
        if *kind != b'{' {
            return Err(ApiError::serialization(NOT_AN_OBJECT));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_data() {
                data_fault(&path, &inner.to_string(), invalid_value_code, enum_texts)
            } else {
                ApiError::serialization(MALFORMED)
            });
        }
    };
    if de.end().is_err() {
        return Err(ApiError::serialization(MALFORMED));
    }
    Ok(value)
}

/// AWS's JSON services' words for a structure where a scalar or list belongs (also what they
/// answer for a body that is not a JSON object).
const NOT_AN_OBJECT: &str = "Start of structure or map found where not expected.";
/// ... and for a list where a scalar or structure belongs.
const START_OF_LIST: &str = "Start of list found where not expected.";
/// A body that is not JSON at all.
const MALFORMED: &str = "The request body is not valid JSON.";

/// A member of the right syntax but the wrong value: its JSON type, or its enum.
fn data_fault(
    path: &str,
    serde_text: &str,
    invalid_value_code: &'static str,
    enum_texts: &[(&'static str, &'static str)],
) -> ApiError {
    let text = serde_text
        .rfind(" at line ")
        .map_or(serde_text, |i| &serde_text[..i]);
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        let (value, allowed) = rest.split_once('`').unwrap_or((rest, ""));
        if let Some((_, words)) = enum_texts.iter().find(|(p, _)| *p == path) {
            return ApiError::new(invalid_value_code, *words);
        }
        let allowed: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
        return ApiError::new(
            invalid_value_code,
            format!(
                "1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        );
    }
    // "invalid type: <found>, expected <type>" or "invalid value: <found>, expected <type>".
    let found_expected = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "));
    let Some((found, expected)) = found_expected.and_then(|t| t.split_once(", expected ")) else {
        return ApiError::serialization(MALFORMED);
    };
    let found = if found.starts_with("string") {
        "STRING_VALUE"
    } else if found.starts_with("integer") || found.starts_with("floating point") {
        "NUMBER_VALUE"
    } else if found.starts_with("boolean") {
        "BOOLEAN_VALUE"
    } else if found == "map" {
        return ApiError::serialization(NOT_AN_OBJECT);
    } else if found == "sequence" {
        return ApiError::serialization(START_OF_LIST);
    } else {
        return ApiError::serialization(MALFORMED);
    };
    // AWS's Java-side type names for the model's shapes.
    let expected = match expected {
        "i8" | "i16" | "i32" | "u8" | "u16" | "u32" => "Integer",
        "i64" | "u64" => "Long",
        "f32" | "f64" => "Double",
        "a boolean" => "Boolean",
        "a sequence" => "List",
        "a map" => "Map",
        e if e.starts_with("struct ") => "Structure",
        _ => "String",
    };
    // As ECS answers a string where a number belongs (quoted in aws/aws-cdk-cli#973):
    // "STRING_VALUE cannot be converted to Integer".
    ApiError::serialization(format!("{found} cannot be converted to {expected}"))
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
/// default; otherwise as [`decode_in`] (a value outside its enum is a `ValidationException`).
pub fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    deserialize(body, "ValidationException", &[])
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs;

    const DIALECT: JsonDialect = JsonDialect {
        missing: Missing::NotNullOrEmpty,
        invalid_value_code: "InvalidParameterException",
        enum_texts: &[(
            "launchType",
            "launch type should be one of [EC2,FARGATE,EXTERNAL]",
        )],
    };

    fn fault<T: DeserializeOwned + Validate + std::fmt::Debug>(body: &str) -> (String, String) {
        let e = decode_in::<T>(body.as_bytes(), &DIALECT).unwrap_err();
        (e.code.to_string(), e.message)
    }

    #[test]
    fn faults_are_answered_in_aws_words() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"maxResults": "ten"}"#,
                "SerializationException",
                "STRING_VALUE cannot be converted to Integer",
            ),
            (
                r#"{"maxResults": true}"#,
                "SerializationException",
                "BOOLEAN_VALUE cannot be converted to Integer",
            ),
            (
                r#"{"maxResults": 99999999999}"#,
                "SerializationException",
                "NUMBER_VALUE cannot be converted to Integer",
            ),
            (
                r#"{"maxResults": 1.5}"#,
                "SerializationException",
                "NUMBER_VALUE cannot be converted to Integer",
            ),
            (
                r#"{"nextToken": 5}"#,
                "SerializationException",
                "NUMBER_VALUE cannot be converted to String",
            ),
            (
                r#"{"nextToken": {"a": 1}}"#,
                "SerializationException",
                NOT_AN_OBJECT,
            ),
            (
                r#"{"nextToken": [1]}"#,
                "SerializationException",
                START_OF_LIST,
            ),
            ("[1, 2]", "SerializationException", START_OF_LIST),
            ("\"text\"", "SerializationException", NOT_AN_OBJECT),
            ("{not json", "SerializationException", MALFORMED),
            ("{} {}", "SerializationException", MALFORMED),
        ];
        for (body, code, message) in cases {
            assert_eq!(
                fault::<ecs::ListClustersRequest>(body),
                (code.to_string(), message.to_string()),
                "{body}"
            );
        }
    }

    #[test]
    fn enum_violations_name_the_member_and_the_values() {
        assert_eq!(
            fault::<ecs::RunTaskRequest>(r#"{"taskDefinition": "x", "launchType": "Fargate"}"#),
            (
                "InvalidParameterException".to_string(),
                "launch type should be one of [EC2,FARGATE,EXTERNAL]".to_string()
            )
        );
        assert_eq!(
            fault::<ecs::RegisterTaskDefinitionRequest>(
                r#"{"family": "f", "containerDefinitions": [], "networkMode": "warp"}"#
            ),
            (
                "InvalidParameterException".to_string(),
                "1 validation error detected: Value 'warp' at 'networkMode' failed to satisfy constraint: Member must satisfy enum value set: [bridge, host, awsvpc, none]".to_string()
            )
        );
        let (_, nested) = fault::<ecs::RegisterTaskDefinitionRequest>(
            r#"{"family": "f", "containerDefinitions": [{"name": "a", "portMappings": [{"protocol": "sctp"}]}]}"#,
        );
        assert!(
            nested.contains("at 'containerDefinitions[0].portMappings[0].protocol'"),
            "{nested}"
        );
    }

    #[test]
    fn missing_members_as_the_dialect_says() {
        assert_eq!(
            fault::<ecs::RunTaskRequest>("{}"),
            (
                "ClientException".to_string(),
                "taskDefinition should not be null or empty.".to_string()
            )
        );
        let coral = JsonDialect {
            missing: Missing::Validation("ValidationException"),
            ..DIALECT
        };
        let e = decode_in::<ecs::RunTaskRequest>(b"{}", &coral).unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert_eq!(
            e.message,
            "1 validation error detected: Value null at 'taskDefinition' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn hand_written_shapes_decode_alike() {
        #[derive(Debug, Default, serde::Deserialize)]
        struct Shape {
            #[serde(rename = "Count")]
            _count: Option<i32>,
        }
        assert!(parse::<Shape>(b"").is_ok());
        let e = parse::<Shape>(br#"{"Count": "x"}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            (
                "SerializationException",
                "STRING_VALUE cannot be converted to Integer"
            )
        );
    }
}
