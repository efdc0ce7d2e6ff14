//! berth-client: a small SigV4-signed awsJson1_1 client for berth's own tools — `berth keys`, the
//! agent, the simulator — talking to a berth control plane. (Users' tools use the real AWS SDKs.)

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
pub use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint {0}")]
    Endpoint(String),
    #[error("cannot reach {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("signing failed: {0}")]
    Signing(String),
    /// The server answered with an AWS error envelope.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("undecodable response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The AWS error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    endpoint: String,
    host: String,
    region: String,
    credentials: Credentials,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Client {
    /// `endpoint` like `http://127.0.0.1:7601`.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, ClientError> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| ClientError::Endpoint(endpoint.to_string()))?;
        let host = uri
            .authority()
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_string()))?
            .to_string();
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::Endpoint(format!(
                "{endpoint} (only http:// endpoints are supported)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host,
            region: region.to_string(),
            credentials: Credentials::new(access_key_id, secret_access_key, None, None, "berth"),
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout: Duration::from_secs(30),
        })
    }

    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `<target>` (e.g. `AmazonEC2ContainerServiceV20141113.ListClusters`) signed for
    /// `signing_name` (e.g. `ecs`) and returns the decoded JSON answer.
    pub async fn call(
        &self,
        signing_name: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let payload = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let bytes = self
            .send(signing_name, "POST", "/", Some(target), payload)
            .await?;
        if bytes.is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A signed request to any path (used for berth's `/_berth/*` endpoints).
    pub async fn send(
        &self,
        signing_name: &str,
        method: &str,
        path: &str,
        target: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .request(signing_name, method, path, target, payload)
            .await?;
        let status = resp.status().as_u16();
        let body = self.collect(resp.into_body()).await?;
        if status >= 300 {
            return Err(api_error(status, &body));
        }
        Ok(body.to_vec())
    }

    /// Calls an operation whose answer is an AWS event stream
    /// (`application/vnd.amazon.eventstream`, e.g. CloudWatch Logs' StartLiveTail) and returns
    /// the stream of messages; errors before the stream starts come back as [`ClientError::Api`].
    pub async fn call_event_stream(
        &self,
        signing_name: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<EventStream, ClientError> {
        let payload = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = self
            .request(signing_name, "POST", "/", Some(target), payload)
            .await?;
        let status = resp.status().as_u16();
        if status >= 300 {
            let body = self.collect(resp.into_body()).await?;
            return Err(api_error(status, &body));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
            endpoint: self.endpoint.clone(),
        })
    }

    async fn request(
        &self,
        signing_name: &str,
        method: &str,
        path: &str,
        target: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let url = format!("{}{}", self.endpoint, path);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.1");
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        let mut req = req
            .body(Full::new(Bytes::from(payload.clone())))
            .map_err(|e| ClientError::Endpoint(e.to_string()))?;
        self.sign(&mut req, signing_name, &payload)?;
        let fut = self.http.request(req);
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|e| ClientError::Connect {
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            })
    }

    async fn collect(&self, body: Incoming) -> Result<Bytes, ClientError> {
        Ok(tokio::time::timeout(self.timeout, body.collect())
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|e| ClientError::Connect {
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            })?
            .to_bytes())
    }

    fn sign(
        &self,
        req: &mut http::Request<Full<Bytes>>,
        name: &str,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(name)
            .time(SystemTime::now())
            .settings(signing_settings(name))
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let headers = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            headers,
            SignableBody::Bytes(payload),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _sig) = sign(signable, &params)
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

/// SigV4 settings for `service`: S3 encodes the path once, doesn't normalize it, and wants the
/// payload hash in `x-amz-content-sha256`; every other service uses the defaults.
fn signing_settings(service: &str) -> SigningSettings {
    let mut s = SigningSettings::default();
    if service == "s3" {
        s.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
        s.uri_path_normalization_mode = aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
        s.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    }
    s
}

/// The text of `<name>…</name>` in an XML error body (S3's errors).
fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(
        body[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The AWS error envelope of a failed answer (JSON, or S3's XML).
fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Some(text) = std::str::from_utf8(body)
        .ok()
        .filter(|t| t.trim_start().starts_with('<'))
    {
        return ClientError::Api {
            status,
            code: xml_field(text, "Code").unwrap_or_else(|| "HttpError".into()),
            message: xml_field(text, "Message").unwrap_or_default(),
        };
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = v["__type"]
        .as_str()
        .unwrap_or("HttpError")
        .rsplit('#')
        .next()
        .unwrap_or("")
        .to_string();
    let message = v["message"]
        .as_str()
        .or(v["Message"].as_str())
        .unwrap_or("")
        .to_string();
    ClientError::Api {
        status,
        code,
        message,
    }
}

/// The messages of an event-stream answer, decoded as they arrive.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    endpoint: String,
}

impl EventStream {
    /// The next message; `None` once the server ended the stream. No timeout: a stream may be
    /// quiet for as long as its server likes.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            match self
                .decoder
                .decode_frame(&mut self.buf)
                .map_err(|e| ClientError::Decode(e.to_string()))?
            {
                DecodedFrame::Complete(m) => return Ok(Some(m)),
                DecodedFrame::Incomplete => {}
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ClientError::Connect {
                        endpoint: self.endpoint.clone(),
                        source: Box::new(e),
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// A string header of an event-stream message (`:event-type`, `:message-type` …).
pub fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}
