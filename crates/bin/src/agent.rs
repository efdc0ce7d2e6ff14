//! `berth agent`: turns this host into a container instance of a berth cluster.
//!
//! Configuration follows the ECS agent (`/etc/ecs/ecs.config` and `ECS_*` variables, see
//! `berth_agent::config`); the flags below override it. Runs until SIGINT/SIGTERM and leaves the
//! containers running on shutdown, as the ECS agent does.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Flags of `berth agent`.
#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    /// The ECS agent env file.
    #[arg(long, default_value = berth_agent::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Control-plane endpoint(s), comma-separated (overrides BERTH_ENDPOINT).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Where the agent keeps its identity (overrides ECS_DATADIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Cluster to join (overrides ECS_CLUSTER).
    #[arg(long)]
    pub cluster: Option<String>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let (mut config, warnings) = berth_agent::AgentConfig::load(&args.config)
        .with_context(|| format!("agent configuration ({})", args.config.display()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(e) = args.endpoint {
        config.endpoints = e
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(c) = args.cluster {
        config.cluster = c;
    }
    tracing::info!(cluster = %config.cluster, endpoints = ?config.endpoints, data_dir = %config.data_dir.display(), "starting berth agent");
    berth_agent::run(
        config,
        crate::shutdown_signal("shutting down the agent; containers keep running"),
    )
    .await
    .map_err(|e| anyhow::Error::new(e).context("berth agent"))
}
