//! berth-control-plane: the `berth server` process. An axum server that authenticates every request
//! (SigV4, `berth-auth`), dispatches on `X-Amz-Target` to the service handlers (ECS now; ECR, Logs,
//! … beside it), converts wire types (`berth-ecs-api`) to domain types (`berth-core`) and persists
//! storage records (`records`) through the `StateStore` (`berth-store`).
//!
//! API boundary: this is the only crate that sees both wire and domain types.

pub mod admin;
pub mod agents;
pub mod app;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod indexes;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod placement_cache;
pub mod records;
pub mod registry;
pub mod replicas;
pub mod repo;
pub mod s3;
pub mod secrets;
pub mod server;
pub mod service_scheduler;
pub mod task_credentials;
pub mod wire;

pub use app::App;
pub use error::ApiError;
pub use server::{router, serve};
