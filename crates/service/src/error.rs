//! `ApiError`: the one mapping from anything that goes wrong in a request to the AWS awsJson1_1
//! error envelope `{"__type": "<Shape>", "message": "..."}` (HTTP 400; 500 only for server faults).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: Cow<'static, str>,
    pub message: String,
    pub status: StatusCode,
}

impl ApiError {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new("ClientException", message)
    }
    pub fn cluster_not_found() -> Self {
        Self::new("ClusterNotFoundException", "Cluster not found.")
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }
    pub fn unknown_operation(target: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            format!("Unknown operation: {target}"),
        )
    }
    /// A fault on our side: logged with its cause, answered as ServerException / HTTP 500.
    pub fn server(message: impl Into<String>) -> Self {
        Self::new("ServerException", message).with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
    pub fn body(&self) -> String {
        serde_json::json!({"__type": self.code, "message": self.message}).to_string()
    }
}

impl From<berth_store::StoreError> for ApiError {
    fn from(e: berth_store::StoreError) -> Self {
        tracing::error!(error = %e, "state store failure");
        ApiError::server("The server encountered an internal error. Please retry the request.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body()).into_response();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        r
    }
}
