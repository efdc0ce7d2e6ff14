//! `berth`: the one binary. Thin: configuration and wiring; the work lives in the crates.

mod agent;
mod keys;
mod logs;
mod placement;
mod remote;
mod server;
mod sim;
mod status;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Self-hosted, Amazon ECS API-compatible container orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything for a laptop: the control plane (and, once available, a local agent).
    Up(server::ServerArgs),
    /// The control plane alone: the ECS API (and its neighbours) on one endpoint.
    Server(server::ServerArgs),
    /// Manage access keys (admin, agent, readonly) of a running control plane.
    Keys(keys::KeysArgs),
    /// Placement tools: `berth placement explain` (a dry run with per-instance reasons).
    Placement(placement::PlacementArgs),
    /// The per-host agent: joins a cluster and runs its tasks in Docker.
    Agent(agent::AgentArgs),
    /// The control plane at a glance: replicas, leader, store health, connected agents.
    Status(status::StatusArgs),
    /// Test/benchmark tool: N simulated container instances (the real agent on a fake engine)
    /// in one process, against a real control plane.
    Sim(sim::SimArgs),
    /// Print a log group's (or a task's) logs, like `aws logs tail`; `--follow` keeps going.
    Logs(logs::LogsArgs),
}

/// Flags shared by every command that finds the data directory.
#[derive(Args, Clone, Debug)]
pub struct DataDirArg {
    /// Where berth keeps its state and the generated credentials.
    /// Default: $XDG_DATA_HOME/berth, i.e. ~/.local/share/berth.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn resolve(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("berth")
    }
}

/// Resolves on SIGINT or SIGTERM, then logs `message`.
pub async fn shutdown_signal(message: &'static str) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("{message}");
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs written to a file or a pipe carry no ANSI escape codes.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// glibc's allocator gives freed memory at the top of a thread's heap back to the kernel
/// (`madvise(MADV_DONTNEED)`) as soon as more than 128 KiB is free there. The SQLite writer frees
/// and reallocates its per-statement buffers many times per commit, so under write load a
/// twentieth of the server's time went to those calls and the TLB shootdowns they cause on the
/// other core (BENCHMARKS.md, API load, "glibc's trim threshold"). Keeping up to 4 MiB free per
/// heap stops that; RSS at 1,000 instances / 10,000 tasks is unchanged.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up(args) => server::run(args, true).await,
            Command::Server(args) => server::run(args, false).await,
            Command::Keys(args) => keys::run(args).await,
            Command::Placement(args) => placement::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Logs(args) => logs::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
