//! `berth status`: the control plane at a glance — replicas, leader, store health and latency,
//! container instances and their agents (`BerthAdmin_20261122.DescribeStatus`, signed with an
//! admin key; any replica answers).

use crate::remote::RemoteArgs;
use berth_svc_admin::TARGET_PREFIX;
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let out = client
        .call(
            "berth",
            &format!("{TARGET_PREFIX}.DescribeStatus"),
            &serde_json::json!({}),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", render(&out));
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The human-readable form.
pub fn render(out: &Value) -> String {
    let mut t = String::new();
    let store = &out["store"];
    t += &format!(
        "store:    {} {} (latency {:.1} ms, revision {}){}\n",
        s(&store["backend"]),
        if store["healthy"] == Value::Bool(true) {
            "healthy"
        } else {
            "UNHEALTHY"
        },
        store["latencyMs"].as_f64().unwrap_or(0.0),
        s(&store["revision"]),
        store["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
    );
    let leader = &out["leader"];
    t += &format!(
        "leader:   {}{}\n",
        if leader.is_null() {
            "none elected".to_string()
        } else {
            s(&leader["node"])
        },
        leader["fencingToken"]
            .as_i64()
            .map(|r| format!(" (fencing token {r})"))
            .unwrap_or_default(),
    );
    t += &format!("answered by: {}\n\nreplicas:\n", s(&out["node"]));
    t += &format!(
        "  {:<32} {:<28} {:<7} {:>9} {:>7}\n",
        "NODE", "ENDPOINT", "LEADER", "HEARTBEAT", "AGENTS"
    );
    for r in out["replicas"].as_array().into_iter().flatten() {
        t += &format!(
            "  {:<32} {:<28} {:<7} {:>8.1}s {:>7}\n",
            format!(
                "{}{}",
                s(&r["node"]),
                if r["self"] == Value::Bool(true) {
                    " *"
                } else {
                    ""
                }
            ),
            s(&r["endpoint"]),
            if r["leader"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            r["heartbeatAgeSeconds"].as_f64().unwrap_or(0.0),
            s(&r["agentsPolling"]),
        );
    }
    t += "\ncontainer instances:\n";
    t += &format!(
        "  {:<16} {:<34} {:<9} {:<10} {:>9} {:>6}\n",
        "CLUSTER", "INSTANCE", "STATUS", "CONNECTED", "LAST SEEN", "TASKS"
    );
    for a in out["agents"].as_array().into_iter().flatten() {
        let arn = s(&a["containerInstanceArn"]);
        t += &format!(
            "  {:<16} {:<34} {:<9} {:<10} {:>9} {:>6}\n",
            s(&a["cluster"]),
            arn.rsplit('/').next().unwrap_or(&arn),
            s(&a["status"]),
            if a["agentConnected"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            a["lastSeenSecondsAgo"]
                .as_f64()
                .map(|x| format!("{x:.0}s"))
                .unwrap_or_else(|| "never".into()),
            s(&a["runningTasks"]),
        );
    }
    let tasks = out["backgroundTasks"].as_array();
    if tasks.is_some_and(|v| !v.is_empty()) {
        t += "
background tasks:
";
        t += &format!(
            "  {:<12} {:<36} {:<13} {:>6} {:>8} {:>9}  {}
",
            "REGION", "TASK", "MODE", "RUNS", "FAILURES", "LAST (s)", "LAST OUTCOME"
        );
        for b in tasks.into_iter().flatten() {
            t += &format!(
                "  {:<12} {:<36} {:<13} {:>6} {:>8} {:>9}  {}\n",
                s(&b["region"]),
                s(&b["name"]),
                s(&b["mode"]),
                s(&b["runs"]),
                s(&b["failures"]),
                b["lastDurationSeconds"]
                    .as_f64()
                    .map(|x| format!("{x:.3}"))
                    .unwrap_or_else(|| "-".into()),
                s(&b["lastOutcome"]),
            );
        }
    }
    t
}
