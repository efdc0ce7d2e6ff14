//! `berth-loadgen`: the load generator behind `bench/api.sh`. A benchmark tool, not part of berth.
//!
//! - `populate`: fills a target (berth, fakecloud, moto) with the same data: one cluster, one task
//!   definition, N container instances and M tasks (RunTask count 10), then — for as long as it
//!   runs — keeps every instance's agent "connected" (one non-blocking berth agent poll per
//!   instance every 15 s; other targets don't need it). Prints `ready` when the data is in.
//! - `load`: drives one operation for a fixed time at a fixed concurrency over keep-alive
//!   connections, every request SigV4-signed, and prints one JSON line: count, errors, throughput
//!   and latency percentiles. Error answers (HTTP 4xx/5xx) count as errors, never as throughput.

use anyhow::{bail, Context, Result};
use berth_client::Client;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ECS: &str = "AmazonEC2ContainerServiceV20141113";
const FAMILY: &str = "bench-sleep";

#[derive(Parser)]
#[command(about = "API load generator for bench/api.sh")]
struct Cli {
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "test")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = "test")]
    secret_key: String,
    #[arg(long, default_value = "bench")]
    cluster: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the data set, print `ready`, then keep the instances connected until killed.
    Populate {
        #[arg(long, default_value_t = 100)]
        instances: usize,
        #[arg(long, default_value_t = 1000)]
        tasks: usize,
        #[arg(long, default_value_t = 3)]
        azs: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Keep instances connected with berth agent polls (berth only).
        #[arg(long)]
        keepalive: bool,
        /// EC2 instance ids (one per line) for the identity documents: moto only registers
        /// container instances for EC2 instances it knows.
        #[arg(long)]
        instance_ids_file: Option<std::path::PathBuf>,
    },
    /// Drive one operation and print a JSON line of results.
    Load {
        #[arg(long)]
        op: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value = "berth")]
        label: String,
    },
}

fn target(op: &str) -> String {
    format!("{ECS}.{op}")
}

/// Extra tasks per instance that `populate` leaves room for (see there).
const HEADROOM: i64 = 4096;

/// How many tasks a RunTask answer started (0 when it is not one).
fn placed_count(answer: &[u8]) -> usize {
    serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v["tasks"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// How many tasks a RunTask body asks for (None for other operations).
fn run_count(op: &str) -> Option<usize> {
    match op {
        "RunTask" => Some(1),
        "RunTask10" => Some(10),
        _ => None,
    }
}

async fn call(c: &Client, op: &str, body: &Value) -> Result<Value> {
    c.call("ecs", &target(op), body)
        .await
        .with_context(|| format!("{op} failed"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = Client::new(&cli.endpoint, &cli.region, &cli.access_key, &cli.secret_key)?
        .with_timeout(Duration::from_secs(60));
    match cli.cmd {
        Cmd::Populate {
            instances,
            tasks,
            azs,
            concurrency,
            keepalive,
            instance_ids_file,
        } => {
            let ids: Vec<String> = match instance_ids_file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .lines()
                    .map(str::to_string)
                    .collect(),
                None => (0..instances).map(|i| format!("i-{i:017x}")).collect(),
            };
            if ids.len() < instances {
                bail!("{} instance ids for {instances} instances", ids.len());
            }
            let shape = Shape {
                instances,
                tasks,
                azs,
                concurrency,
                keepalive,
            };
            populate(ids, &client, &cli.cluster, shape).await
        }
        Cmd::Load {
            op,
            seconds,
            concurrency,
            label,
        } => load(&client, &cli.cluster, &op, seconds, concurrency, &label).await,
    }
}

fn task_definition(family: &str) -> Value {
    json!({
        "family": family,
        "containerDefinitions": [{
            "name": "app", "image": "berth-test/busybox:latest", "essential": true,
            "command": ["sleep", "3600"], "cpu": 10, "memory": 32
        }]
    })
}

/// Runs `n` jobs with at most `concurrency` in flight; fails on the first error.
async fn in_parallel<F, Fut>(n: usize, concurrency: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (f, next) = (f.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                f(i).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// What `populate` creates, and how (the `populate` subcommand's options).
#[derive(Clone, Copy)]
struct Shape {
    instances: usize,
    tasks: usize,
    azs: usize,
    concurrency: usize,
    keepalive: bool,
}

async fn populate(ids: Vec<String>, c: &Client, cluster: &str, shape: Shape) -> Result<()> {
    let Shape {
        instances,
        tasks,
        azs,
        concurrency,
        keepalive,
    } = shape;
    let started = Instant::now();
    call(c, "CreateCluster", &json!({"clusterName": cluster})).await?;
    call(c, "RegisterTaskDefinition", &task_definition(FAMILY)).await?;
    // Enough room for every task on any instance mix (10 cpu / 32 MiB each), plus room for the
    // RunTask load that follows (HEADROOM more tasks per instance): a RunTask that finds no room
    // is answered with `failures` and commits nothing, so it must not be what the load measures.
    let per = tasks.div_ceil(instances.max(1)) as i64 + 2 + HEADROOM;
    let arns = Arc::new(std::sync::Mutex::new(vec![String::new(); instances]));
    {
        let (c, cluster, arns) = (c.clone(), cluster.to_string(), arns.clone());
        let ids = Arc::new(ids);
        in_parallel(instances, concurrency, move |i| {
            let (c, cluster, arns, ids) = (c.clone(), cluster.clone(), arns.clone(), ids.clone());
            async move {
                let az = format!("us-east-1{}", (b'a' + (i % azs.max(1)) as u8) as char);
                let doc = json!({"availabilityZone": az, "instanceType": "sim.large",
                    "instanceId": ids[i], "region": "us-east-1"});
                // Registrations all rewrite the cluster record: a burst can exhaust the server's
                // optimistic retries, and a real agent would retry too.
                let req = json!({
                    "cluster": cluster,
                    "instanceIdentityDocument": doc.to_string(),
                    "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 10 * per + 1024},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 32 * per + 1024}
                    ]
                });
                let mut attempt = 0;
                let v = loop {
                    match call(&c, "RegisterContainerInstance", &req).await {
                        Ok(v) => break v,
                        Err(_) if attempt < 5 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                let arn = v["containerInstance"]["containerInstanceArn"]
                    .as_str()
                    .context("no containerInstanceArn")?
                    .to_string();
                arns.lock().unwrap()[i] = arn;
                Ok(())
            }
        })
        .await?;
    }
    eprintln!(
        "registered {instances} instances in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let alive = Arc::new(AtomicBool::new(true));
    if keepalive {
        let arns: Vec<String> = arns.lock().unwrap().clone();
        poll_all(c, cluster, &arns, concurrency).await?;
        let (c, cluster, alive) = (c.clone(), cluster.to_string(), alive.clone());
        tokio::spawn(async move {
            while alive.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                if let Err(e) = poll_all(&c, &cluster, &arns, 8).await {
                    eprintln!("keepalive poll failed: {e:#}");
                }
            }
        });
    }
    let t0 = Instant::now();
    let batches = tasks.div_ceil(10);
    let placed = Arc::new(AtomicU64::new(0));
    {
        let (c, cluster, placed) = (c.clone(), cluster.to_string(), placed.clone());
        in_parallel(batches, concurrency, move |i| {
            let (c, cluster, placed) = (c.clone(), cluster.clone(), placed.clone());
            async move {
                let count = (tasks - i * 10).min(10);
                let v = call(
                    &c,
                    "RunTask",
                    &json!({"cluster": cluster, "taskDefinition": FAMILY, "count": count}),
                )
                .await?;
                let n = v["tasks"].as_array().map_or(0, Vec::len);
                if n != count {
                    bail!("RunTask placed {n} of {count}: {}", v["failures"]);
                }
                placed.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    }
    eprintln!(
        "placed {} tasks in {:.1}s",
        placed.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64()
    );
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush()?;
    if keepalive {
        // Keep the instances connected until the bench kills us.
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    Ok(())
}

/// One non-blocking berth agent poll per instance: marks them connected.
async fn poll_all(c: &Client, cluster: &str, arns: &[String], concurrency: usize) -> Result<()> {
    let arns: Arc<Vec<String>> = Arc::new(arns.to_vec());
    let (c, cluster) = (c.clone(), cluster.to_string());
    let n = arns.len();
    in_parallel(n, concurrency, move |i| {
        let (c, cluster, arns) = (c.clone(), cluster.clone(), arns.clone());
        async move {
            c.call(
                "ecs",
                "BerthAgent_20261122.PollDesiredState",
                &json!({"cluster": cluster, "containerInstanceArn": arns[i],
                        "knownGeneration": 0, "waitSeconds": 0}),
            )
            .await?;
            Ok(())
        }
    })
    .await
}

/// The request body of one operation (`i` varies names for writes). `arns`: the tasks
/// DescribeTasks describes, the container instances PutAttributes writes to.
fn body(op: &str, cluster: &str, arns: &[String], i: u64) -> Result<Value> {
    Ok(match op {
        "ListClusters" => json!({}),
        "DescribeClusters" => json!({"clusters": [cluster]}),
        "DescribeTaskDefinition" => json!({"taskDefinition": FAMILY}),
        "ListTaskDefinitions" => json!({}),
        "ListTasks" => json!({"cluster": cluster}),
        "DescribeTasks" => json!({"cluster": cluster, "tasks": arns}),
        // A write that leaves the data set as large as it was: one of 8 values of one attribute
        // on one of the listed instances (a soak's memory must not grow with its writes).
        "PutAttributes" => {
            let Some(target) = arns.get(i as usize % arns.len().max(1)) else {
                bail!("no container instances to put attributes on");
            };
            json!({"cluster": cluster, "attributes": [{
                "name": "bench.soak", "value": format!("v{}", i % 8),
                "targetType": "container-instance", "targetId": target}]})
        }
        "RegisterTaskDefinition" => task_definition(&format!("bench-w{}", i % 50)),
        "RunTask" => json!({"cluster": cluster, "taskDefinition": FAMILY, "count": 1}),
        "RunTask10" => json!({"cluster": cluster, "taskDefinition": FAMILY, "count": 10}),
        other => bail!("unknown op {other}"),
    })
}

fn wire_op(op: &str) -> &str {
    if op == "RunTask10" {
        "RunTask"
    } else {
        op
    }
}

async fn load(
    c: &Client,
    cluster: &str,
    op: &str,
    seconds: f64,
    concurrency: usize,
    label: &str,
) -> Result<()> {
    // DescribeTasks describes 100 existing tasks (the most ECS allows per call); PutAttributes
    // writes to 100 existing instances.
    let listed = match op {
        "DescribeTasks" => Some(("ListTasks", "taskArns")),
        "PutAttributes" => Some(("ListContainerInstances", "containerInstanceArns")),
        _ => None,
    };
    let arns: Vec<String> = match listed {
        Some((list_op, member)) => {
            let v = call(c, list_op, &json!({"cluster": cluster, "maxResults": 100})).await?;
            v[member]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        }
        None => vec![],
    };
    if op == "DescribeTasks" && arns.is_empty() {
        bail!("no tasks to describe");
    }
    body(op, cluster, &arns, 0)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let started = Instant::now();
    for _ in 0..concurrency.max(1) {
        let (c, cluster, op, arns, counter) = (
            c.clone(),
            cluster.to_string(),
            op.to_string(),
            arns.clone(),
            counter.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let b = body(&op, &cluster, &arns, i).expect("validated above");
                let payload = serde_json::to_vec(&b).expect("a JSON value encodes");
                let t = Instant::now();
                // The answer's bytes, decoded only where it is checked (RunTask): decoding a
                // 100-task DescribeTasks answer is client work that would take the server's cores.
                match c
                    .send("ecs", "POST", "/", Some(&target(wire_op(&op))), payload)
                    .await
                {
                    // A RunTask that placed fewer tasks than asked did not do the write it was
                    // asked for: an error, not throughput.
                    Ok(bytes) if run_count(&op).is_some_and(|n| placed_count(&bytes) < n) => {
                        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("RunTask placed too few tasks: {}", v["failures"])
                        });
                    }
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for w in workers {
        let (l, e, f) = w.await?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() as f64 - 1.0) * p).round() as usize]
    };
    let out = json!({
        "label": label, "op": op, "concurrency": concurrency, "seconds": elapsed,
        "ok": lat.len(), "errors": errors, "rps": lat.len() as f64 / elapsed,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        "first_error": first_error,
    });
    println!("{out}");
    Ok(())
}
