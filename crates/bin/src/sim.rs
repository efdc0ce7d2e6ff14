//! `berth sim`: a simulated fleet for tests and benchmarks — N container instances in this one
//! process, each running the real agent (registration, `PollDesiredState` long-poll/heartbeat,
//! task actors, `SubmitTaskStateChange` reports) on an in-memory fake container engine, against
//! a real control plane over HTTP with an `agent` key. Not a runtime for real workloads: nothing
//! runs in the "containers".
//!
//! Prints one `sim: …` progress line every `--report-every` to stdout (counters of the whole
//! fleet) and `sim: all N instances registered in S s` once every instance has registered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_agent::sim::{Fleet, FleetConfig, InstanceConfig};
use clap::Args;

fn duration(s: &str) -> Result<Duration, String> {
    berth_agent::config::parse_go_duration(s)
}

/// Flags of `berth sim`.
#[derive(Args, Clone, Debug)]
pub struct SimArgs {
    /// Control-plane endpoint(s), comma-separated.
    #[arg(long, env = "BERTH_ENDPOINT", default_value = "http://127.0.0.1:7601")]
    pub endpoint: String,
    /// Cluster every instance joins (it must exist).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Number of simulated container instances.
    #[arg(long, default_value_t = 10)]
    pub instances: usize,
    /// Availability zones to spread the instances over (us-east-1a, us-east-1b, …).
    #[arg(long, default_value_t = 3)]
    pub azs: usize,
    /// CPU units each instance registers (a multiple of 1024).
    #[arg(long, default_value_t = 2048)]
    pub cpu: u32,
    /// Memory (MiB) each instance registers.
    #[arg(long, default_value_t = 4096)]
    pub memory: u64,
    /// Time each fake container start takes (Go duration: 200ms, 1s).
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub start_latency: Duration,
    /// Time each fake container takes to exit after its stop signal.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub stop_latency: Duration,
    /// Time each fake image pull takes.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub pull_latency: Duration,
    /// Fraction of container starts that fail (0.01 = 1 %).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Seed of the failure decisions (a run is reproducible).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 32)]
    pub register_concurrency: usize,
    /// Where the instances keep their identities (instance i: DIR/i-NNNNN). Reusing a directory
    /// re-registers the same container instances. Default: a fresh temporary directory, removed on
    /// exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Region of the identity documents and availability zones.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key id of an `agent` key (`berth keys create --role agent`).
    #[arg(long, env = "BERTH_AGENT_ACCESS_KEY_ID")]
    pub access_key_id: String,
    /// Its secret.
    #[arg(long, env = "BERTH_AGENT_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: String,
    /// How often to print the counters.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub report_every: Duration,
    /// Stop by itself after this long (0s = until SIGINT/SIGTERM).
    #[arg(long = "for", value_parser = duration, default_value = "0s")]
    pub run_for: Duration,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.cpu == 0 || !args.cpu.is_multiple_of(1024) {
        bail!("--cpu must be a positive multiple of 1024 (an agent registers cores × 1024)");
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!("--fail-rate must be between 0 and 1");
    }
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            // tmpfs when there is one: every instance fsyncs its identity file once.
            let base = ["/dev/shm", "/tmp"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_dir())
                .unwrap_or_else(std::env::temp_dir);
            let t = TempDir::new(base.join(format!("berth-sim-{}", std::process::id())))?;
            (t.0.clone(), Some(t))
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut template =
        InstanceConfig::new(&args.cluster, "", args.cpu, args.memory, data_dir.clone());
    template.region = args.region.clone();
    template.start_latency = args.start_latency;
    template.stop_latency = args.stop_latency;
    template.pull_latency = args.pull_latency;
    template.fail_rate = args.fail_rate;
    template.seed = args.seed;
    let config = FleetConfig {
        endpoints: args
            .endpoint
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        access_key_id: args.access_key_id.clone(),
        secret_access_key: args.secret_access_key.clone(),
        instances: args.instances,
        azs: args.azs,
        template,
        register_concurrency: args.register_concurrency,
    };
    let started = Instant::now();
    let mut fleet = Fleet::start(&config).context("starting the simulated fleet")?;
    tracing::info!(instances = args.instances, cluster = %args.cluster, data_dir = %data_dir.display(), "simulated fleet started");
    let stats = fleet.stats.clone();
    let want = args.instances as u64;
    let deadline = (!args.run_for.is_zero()).then(|| tokio::time::Instant::now() + args.run_for);
    let shutdown = crate::shutdown_signal("stopping the simulated fleet");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(args.report_every.max(Duration::from_millis(50)));
    let mut all_registered = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = tick.tick() => {
                let registered = stats.registered.load(std::sync::atomic::Ordering::Relaxed);
                if !all_registered && registered >= want {
                    all_registered = true;
                    println!(
                        "sim: all {want} instances registered in {:.2} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                println!("sim: t={:.1}s {}", started.elapsed().as_secs_f64(), stats.line());
            }
        }
    }
    fleet.stop().await;
    println!(
        "sim: stopped after {:.1}s {}",
        started.elapsed().as_secs_f64(),
        stats.line()
    );
    Ok(())
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(p: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
