//! One success and one error renderer per AWS protocol, shared by every service: a service returns
//! a body or an [`ApiError`]; the shape on the wire is decided here, by the service's protocol.

use axum::response::{IntoResponse, Response};
use berth_service::{ApiError, Protocol};
use http::{HeaderValue, StatusCode};

pub const JSON_1_0: &str = "application/x-amz-json-1.0";
pub const JSON_1_1: &str = "application/x-amz-json-1.1";
pub const CBOR: &str = "application/cbor";

/// A successful RPC answer's content type.
pub fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::AwsJson1_0 => JSON_1_0,
        Protocol::AwsJson1_1 => JSON_1_1,
        Protocol::AwsQuery | Protocol::RestXml => "text/xml",
        Protocol::RestJson1 => "application/json",
        Protocol::RpcV2Cbor => CBOR,
    }
}

/// A successful RPC answer.
pub fn ok(protocol: Protocol, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(protocol)),
    );
    if protocol == Protocol::RpcV2Cbor {
        r.headers_mut()
            .insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    r
}

/// `e` in `protocol`'s error form. `xml_namespace` is the service's (awsQuery), `request_id`
/// goes in the body where the protocol carries it there.
pub fn error(protocol: Protocol, e: &ApiError, xml_namespace: &str, request_id: &str) -> Response {
    let (body, ct): (Vec<u8>, &'static str) = match protocol {
        // awsJson: `{"__type": "<Shape>", "message": "…"}`.
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => (
            e.body().into_bytes(),
            if protocol == Protocol::AwsJson1_0 {
                JSON_1_0
            } else {
                JSON_1_1
            },
        ),
        // awsQuery: `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`.
        Protocol::AwsQuery => {
            let kind = if e.status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            let ns = if xml_namespace.is_empty() {
                String::new()
            } else {
                format!(" xmlns=\"{}\"", escape(xml_namespace))
            };
            (
                format!(
                    "<ErrorResponse{ns}><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                    escape(&e.code),
                    escape(&e.message),
                    escape(request_id)
                )
                .into_bytes(),
                "text/xml",
            )
        }
        // restXml (S3's form): `<Error><Code/><Message/><RequestId/></Error>`.
        Protocol::RestXml => (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
                escape(&e.code),
                escape(&e.message),
                escape(request_id)
            )
            .into_bytes(),
            "application/xml",
        ),
        // restJson1: the code in `x-amzn-ErrorType`, `{"message": "…"}` in the body.
        Protocol::RestJson1 => (
            serde_json::json!({"message": e.message}).to_string().into_bytes(),
            "application/json",
        ),
        // rpcv2Cbor: a CBOR map `{"__type": "<Shape>", "message": "…"}`.
        Protocol::RpcV2Cbor => {
            let mut out = Vec::new();
            let map = ciborium::Value::Map(vec![
                ("__type".into(), e.code.as_ref().into()),
                ("message".into(), e.message.as_str().into()),
            ]);
            // Writing to a Vec cannot fail.
            let _ = ciborium::into_writer(&map, &mut out);
            (out, CBOR)
        }
    };
    let mut r = (e.status, body).into_response();
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    match protocol {
        Protocol::RestJson1 | Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            if let Ok(v) = HeaderValue::from_str(&e.code) {
                h.insert("x-amzn-ErrorType", v);
            }
        }
        Protocol::RpcV2Cbor => {
            h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
        }
        Protocol::AwsQuery | Protocol::RestXml => {}
    }
    r
}

/// XML text escaping.
pub use berth_service::codec::escape_xml as escape;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, String, Vec<u8>) {
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, ct, b.to_vec())
    }

    fn err() -> ApiError {
        ApiError::new("UnknownOperationException", "Unknown operation: X.<y>")
    }

    #[tokio::test]
    async fn json_errors() {
        for (p, ct) in [
            (Protocol::AwsJson1_0, JSON_1_0),
            (Protocol::AwsJson1_1, JSON_1_1),
        ] {
            let (s, c, b) = body(error(p, &err(), "", "rid")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
            assert_eq!(c, ct);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["__type"], "UnknownOperationException");
            assert_eq!(v["message"], "Unknown operation: X.<y>");
        }
    }

    #[tokio::test]
    async fn query_errors_are_sender_or_receiver() {
        let ns = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
        let (s, c, b) = body(error(Protocol::AwsQuery, &err(), ns, "rid-1")).await;
        let b = String::from_utf8(b).unwrap();
        assert_eq!((s, c.as_str()), (StatusCode::BAD_REQUEST, "text/xml"));
        assert!(b.starts_with(&format!("<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>UnknownOperationException</Code>")));
        assert!(b.contains("<Message>Unknown operation: X.&lt;y&gt;</Message>"));
        assert!(b.ends_with("<RequestId>rid-1</RequestId></ErrorResponse>"));
        let (_, _, b) = body(error(Protocol::AwsQuery, &ApiError::server("x"), ns, "r")).await;
        assert!(String::from_utf8(b)
            .unwrap()
            .contains("<Type>Receiver</Type>"));
    }

    #[tokio::test]
    async fn rest_errors() {
        let (_, c, b) = body(error(Protocol::RestXml, &err(), "", "rid")).await;
        assert_eq!(c, "application/xml");
        let b = String::from_utf8(b).unwrap();
        assert!(b.contains("<Error><Code>UnknownOperationException</Code>"));
        let r = error(Protocol::RestJson1, &err(), "", "rid");
        assert_eq!(
            r.headers().get("x-amzn-ErrorType").unwrap(),
            "UnknownOperationException"
        );
        let (_, c, b) = body(r).await;
        assert_eq!(c, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["message"], "Unknown operation: X.<y>");
    }

    #[tokio::test]
    async fn cbor_errors() {
        let r = error(Protocol::RpcV2Cbor, &err(), "", "rid");
        assert_eq!(r.headers().get("smithy-protocol").unwrap(), "rpc-v2-cbor");
        let (_, c, b) = body(r).await;
        assert_eq!(c, CBOR);
        let v: ciborium::Value = ciborium::from_reader(b.as_slice()).unwrap();
        let m = v.as_map().unwrap();
        assert_eq!(m[0].0.as_text(), Some("__type"));
        assert_eq!(m[0].1.as_text(), Some("UnknownOperationException"));
    }
}
