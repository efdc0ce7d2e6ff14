//! `berth placement explain`: where would these tasks go, and why not elsewhere? A dry run of
//! RunTask's placement on the live cluster, printed per container instance, stage by stage.

use crate::remote::RemoteArgs;
use anyhow::bail;
use berth_svc_admin::TARGET_PREFIX;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct PlacementArgs {
    #[command(subcommand)]
    command: PlacementCommand,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
enum PlacementCommand {
    /// Explain where `count` tasks of a task definition would be placed (nothing is started).
    Explain {
        #[arg(long, default_value = "default")]
        cluster: String,
        #[arg(long)]
        task_definition: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// `type=memberOf,expression=<query>` or `type=distinctInstance` (repeatable).
        #[arg(long = "constraint")]
        constraints: Vec<String>,
        /// `type=spread,field=<field>`, `type=binpack,field=cpu|memory` or `type=random` (repeatable).
        #[arg(long = "strategy")]
        strategies: Vec<String>,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// `type=X[,field=Y]` / `type=X[,expression=…]` — the expression is everything after
/// `expression=` (it may itself contain commas).
fn parse_pair(s: &str, second: &str) -> anyhow::Result<serde_json::Value> {
    let marker = format!("{second}=");
    let (head, tail) = match s.find(&marker) {
        Some(i) => (
            s[..i].trim_end_matches(','),
            Some(s[i + marker.len()..].to_string()),
        ),
        None => (s, None),
    };
    let Some(t) = head.strip_prefix("type=") else {
        bail!("expected type=…[,{second}=…], got {s:?}");
    };
    let mut v = serde_json::json!({ "type": t });
    if let Some(x) = tail {
        v[second] = serde_json::Value::String(x);
    }
    Ok(v)
}

pub async fn run(args: PlacementArgs) -> anyhow::Result<()> {
    let PlacementCommand::Explain {
        cluster,
        task_definition,
        count,
        constraints,
        strategies,
        json,
    } = args.command;
    let body = serde_json::json!({
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": count,
        "placementConstraints": constraints.iter().map(|c| parse_pair(c, "expression")).collect::<anyhow::Result<Vec<_>>>()?,
        "placementStrategy": strategies.iter().map(|s| parse_pair(s, "field")).collect::<anyhow::Result<Vec<_>>>()?,
    });
    let out = args
        .remote
        .client()?
        .call("berth", &format!("{TARGET_PREFIX}.ExplainPlacement"), &body)
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let placed = out["placements"].as_array().map(Vec::len).unwrap_or(0);
    println!("{placed} of {count} task(s) would be placed:");
    for p in out["placements"].as_array().into_iter().flatten() {
        println!("  → {}", p["containerInstanceArn"].as_str().unwrap_or(""));
    }
    for f in out["failures"].as_array().into_iter().flatten() {
        println!(
            "  ✗ {} ({})",
            f["reason"].as_str().unwrap_or(""),
            f["arn"].as_str().unwrap_or("-")
        );
    }
    println!();
    for i in out["instances"].as_array().into_iter().flatten() {
        let fits = i["fits"].as_bool().unwrap_or(false);
        println!(
            "{}: {}",
            i["containerInstanceArn"].as_str().unwrap_or(""),
            if fits { "fits" } else { "does not fit" }
        );
        for c in i["checks"].as_array().into_iter().flatten() {
            let passed = c["passed"].as_bool().unwrap_or(false);
            println!(
                "  {} {}: {}{}",
                if passed { "ok  " } else { "FAIL" },
                c["stage"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or(""),
                c["reason"]
                    .as_str()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_pair;
    #[test]
    fn pairs() {
        assert_eq!(
            parse_pair(
                "type=memberOf,expression=attribute:a in [x, y]",
                "expression"
            )
            .unwrap(),
            serde_json::json!({"type": "memberOf", "expression": "attribute:a in [x, y]"})
        );
        assert_eq!(
            parse_pair("type=distinctInstance", "expression").unwrap(),
            serde_json::json!({"type": "distinctInstance"})
        );
        assert_eq!(
            parse_pair("type=spread,field=instanceId", "field").unwrap(),
            serde_json::json!({"type": "spread", "field": "instanceId"})
        );
        assert!(parse_pair("spread", "field").is_err());
    }
}
