//! berth-service: what every AWS service crate builds on, and the contract between a service and
//! the edge (`berth-edge`).
//!
//! A service crate (`svc-ecs`, `svc-logs`, …) implements [`Service`]: one [`Descriptor`] (the
//! SigV4 signing names it answers, its protocol, its `X-Amz-Target` prefixes, its body limit and
//! which operations it knows) and a `call` per authorized operation (RPC protocols) or an axum
//! router (REST protocols). The edge authenticates, authorizes, reads the body under the limit,
//! routes by signing name, and renders errors in the protocol's own form; the service never sees
//! HTTP for RPC protocols. `berth-server` builds each service with what it needs and registers it.
//!
//! Also here, shared by all services: [`ApiError`] (one error type, rendered per protocol by the
//! edge), the awsJson codec ([`codec`]), typed store access with optimistic retries ([`repo`]),
//! the leader's fence ([`leader`]), access keys and the caller ([`auth`]), pagination tokens
//! ([`pagination`]) and the Prometheus registry ([`metrics`]).
//!
//! API boundary: services depend on this crate, never on each other's internals nor on the edge;
//! a service that needs another's data gets a narrow trait defined here or in that service's
//! public surface, handed over by `berth-server`.

pub mod auth;
pub mod codec;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod pagination;
pub mod repo;

pub use auth::Principal;
pub use berth_auth::Role;
pub use error::ApiError;

use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;

/// The AWS protocols (Smithy's names). The edge has one decoder and one error renderer for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /`, `X-Amz-Target: <prefix>.<Operation>`, JSON, `application/x-amz-json-1.0`.
    AwsJson1_0,
    /// As 1.0 with `application/x-amz-json-1.1` (ECS, Logs, ECR, Secrets Manager, SSM).
    AwsJson1_1,
    /// `POST /`, form body with `Action=` and `Version=`, XML answers (ELBv2, CloudWatch).
    AwsQuery,
    /// REST paths, JSON bodies (EventBridge Scheduler, Application Auto Scaling's REST kin).
    RestJson1,
    /// REST paths, XML bodies (S3).
    RestXml,
    /// `POST /service/<Service>/operation/<Operation>`, CBOR (CloudWatch's newest SDKs).
    RpcV2Cbor,
}

/// What a service tells the edge about itself: all the edge needs to route to it.
pub struct Descriptor {
    /// Short name for logs and metrics (`ecs`, `logs`, `s3`, …).
    pub name: &'static str,
    /// The SigV4 credential-scope service names it answers (`ecs`, `secretsmanager`, …). Requests
    /// are routed by these first: several services share `POST /`, and REST paths collide.
    pub signing_names: &'static [&'static str],
    pub protocol: Protocol,
    /// awsJson: the `X-Amz-Target` prefixes it serves (before the `.`).
    pub target_prefixes: &'static [&'static str],
    /// Largest request body accepted (RPC protocols; REST services read their own bodies).
    pub body_limit: usize,
    /// awsQuery: the XML namespace of its answers and errors (`""` otherwise).
    pub xml_namespace: &'static str,
    /// Is `operation` (under `prefix`) one this service knows? Unknown ones get the protocol's
    /// UnknownOperation error without reaching the service, and are folded in metrics.
    pub knows: fn(prefix: &str, operation: &str) -> bool,
}

/// One authorized RPC call, as the edge hands it to a service.
pub struct Call<'a> {
    pub principal: Principal,
    /// The `X-Amz-Target` prefix (awsJson) the call came under.
    pub prefix: &'a str,
    /// The operation name.
    pub operation: &'a str,
    pub body: Bytes,
}

/// A successful answer.
pub enum Reply {
    /// An awsJson body (the edge sets the content type of the service's protocol).
    Json(Vec<u8>),
    /// A response the service built itself (an event stream: StartLiveTail).
    Response(Response),
}

/// An AWS service on the endpoint. See the crate docs for the contract.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    fn descriptor(&self) -> &'static Descriptor;

    /// RPC protocols: runs one operation the caller is authorized for.
    async fn call(&self, call: Call<'_>) -> Result<Reply, ApiError> {
        Err(ApiError::unknown_operation(&format!(
            "{}.{}",
            call.prefix, call.operation
        )))
    }

    /// REST protocols: the service's routes, handed every request signed for it (and, for the
    /// edge's default REST service (S3), unsigned ones). The service checks
    /// signatures itself through an [`Authenticator`], with its own body limits and errors.
    fn rest_routes(&self) -> Option<axum::Router> {
        None
    }

    /// After `POST /_berth/reset` wiped the state store: drop what the service keeps elsewhere
    /// (the log store's files, caches).
    async fn after_reset(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// Routes outside the AWS protocols, mounted as they are (the OCI registry's `/v2`).
    fn extra_routes(&self) -> Option<axum::Router> {
        None
    }
}

/// Checks a request's signature (and a temporary key's session): what a REST service needs of
/// the edge. Implemented by the edge over the key cache.
pub trait Authenticator: Send + Sync {
    fn authenticate(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError>;
}

/// What every handler gets: the service's own state and the caller.
pub struct Ctx<S> {
    pub app: Arc<S>,
    pub principal: Principal,
}

/// Epoch seconds with millisecond precision, as AWS returns timestamps.
pub use codec::now_epoch;

/// Something that keeps blobs of the registry's blob store alive besides the registry's own
/// manifests and layers (S3 objects keep their content there): the registry's garbage collection
/// asks every holder `berth-server` gave it before deleting anything.
#[async_trait::async_trait]
pub trait BlobHolder: Send + Sync {
    /// The digests (`sha256:<hex>`) held now.
    async fn held_blobs(&self) -> Result<Vec<String>, ApiError>;
}

/// What the admin service (`berth placement`, `berth status`) asks of ECS: RunTask's placement,
/// dry, and the control plane's view of its replicas, store and agents.
#[async_trait::async_trait]
pub trait EcsAdmin: Send + Sync {
    async fn explain_placement(
        &self,
        principal: Principal,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError>;
    async fn describe_status(&self) -> Result<serde_json::Value, ApiError>;
}

/// Events berth's services emit for the default event bus (ECS state changes, in AWS's event
/// shape), queued in memory on the replica that made them until EventBridge's delivery task
/// takes them. Bounded: past [`EventQueue::CAPACITY`] the oldest are dropped (and counted).
#[derive(Default)]
pub struct EventQueue {
    queue: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl EventQueue {
    pub const CAPACITY: usize = 10_000;

    pub fn push(&self, event: serde_json::Value) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= Self::CAPACITY {
            q.pop_front();
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(event);
    }

    /// Everything queued, oldest first.
    pub fn drain(&self) -> Vec<serde_json::Value> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes log events for another service (EventBridge's CloudWatch Logs targets): into an
/// existing group, creating the stream if it is new.
#[async_trait::async_trait]
pub trait LogWriter: Send + Sync {
    async fn write(
        &self,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), ApiError>;
}

/// Runs ECS tasks for another service (EventBridge's ECS targets): berth's own RunTask, as
/// `principal`. Implemented by the ECS service, handed over in `berth-server`.
#[async_trait::async_trait]
pub trait TaskRunner: Send + Sync {
    async fn run_task(
        &self,
        principal: Principal,
        request: berth_wire::ecs::RunTaskRequest,
    ) -> Result<berth_wire::ecs::RunTaskResponse, ApiError>;
}
