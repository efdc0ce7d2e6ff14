//! `berth logs`: print (and follow) a log group, like `aws logs tail`, through the control plane's
//! signed CloudWatch Logs API. History comes from FilterLogEvents (interleaved across streams);
//! `--follow` opens a StartLiveTail session *before* reading the history, so nothing appended
//! meanwhile is missed, and drops the events the history already printed.
//!
//! `berth logs --cluster C --task ID [--container NAME]` finds the group and streams of a task's
//! `awslogs` containers (DescribeTasks + DescribeTaskDefinition), so users need not know the
//! `<prefix>/<container>/<task-id>` naming.

use crate::remote::RemoteArgs;
use anyhow::{bail, Context};
use aws_smithy_types::date_time::{DateTime, Format};
use berth_client::{header, Client};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;

const LOGS: &str = "Logs_20140328";
const ECS: &str = "AmazonEC2ContainerServiceV20141113";

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The log group (name or ARN). Optional with --task.
    group: Option<String>,
    /// Keep printing new events as they arrive (a Live Tail session) until interrupted.
    #[arg(long)]
    follow: bool,
    /// Start this far back (`30s`, `10m`, `2h`, `1d`, `1w`) or at an ISO 8601 time.
    #[arg(long, default_value = "10m")]
    since: String,
    /// Only events matching this CloudWatch filter pattern.
    #[arg(long)]
    filter_pattern: Option<String>,
    /// Only streams whose names start with this.
    #[arg(long, conflicts_with = "log_stream_names")]
    log_stream_name_prefix: Option<String>,
    /// Only these streams.
    #[arg(long, num_args = 1..)]
    log_stream_names: Vec<String>,
    /// `detailed`: `<time> <stream> <message>`; `short`: `<time> <message>`.
    #[arg(long, value_enum, default_value_t = LogFormat::Detailed)]
    format: LogFormat,
    /// With --task: the task's cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// A task id or ARN: print its awslogs containers' streams.
    #[arg(long, conflicts_with_all = ["group", "log_stream_name_prefix", "log_stream_names"])]
    task: Option<String>,
    /// With --task: only this container.
    #[arg(long, requires = "task")]
    container: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Detailed,
    Short,
}

/// `30s` / `10m` / `2h` / `1d` / `1w` before `now_ms`, or an ISO 8601 / RFC 3339 time.
fn parse_since(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let ms = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                _ => bail!("--since {s:?}: the unit must be s, m, h, d or w"),
            };
            return Ok(now_ms - n.saturating_mul(ms));
        }
    }
    let t = DateTime::from_str(s, Format::DateTime)
        .with_context(|| format!("--since {s:?}: expected e.g. 10m, 2h or 2026-01-02T03:04:05Z"))?;
    Ok(t.to_millis()?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn format_line(format: LogFormat, ts: i64, stream: &str, message: &str) -> String {
    let t = DateTime::from_millis(ts)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| ts.to_string());
    let message = message.trim_end_matches(['\n', '\r']);
    match format {
        LogFormat::Detailed => format!("{t} {stream} {message}"),
        LogFormat::Short => format!("{t} {message}"),
    }
}

/// The group and stream names of a task's awslogs containers.
async fn task_streams(
    client: &Client,
    cluster: &str,
    task: &str,
    container: Option<&str>,
) -> anyhow::Result<(String, Vec<String>)> {
    let out = client
        .call(
            "ecs",
            &format!("{ECS}.DescribeTasks"),
            &json!({"cluster": cluster, "tasks": [task]}),
        )
        .await?;
    let Some(t) = out["tasks"].as_array().and_then(|a| a.first()) else {
        bail!("task {task} not found in cluster {cluster}");
    };
    let task_arn = t["taskArn"].as_str().unwrap_or_default();
    let task_id = task_arn.rsplit('/').next().unwrap_or(task);
    let td = client
        .call(
            "ecs",
            &format!("{ECS}.DescribeTaskDefinition"),
            &json!({"taskDefinition": t["taskDefinitionArn"]}),
        )
        .await?;
    let runtime_ids: HashMap<&str, &str> = t["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["name"].as_str()?, c["runtimeId"].as_str().unwrap_or(""))))
        .collect();
    let mut group: Option<String> = None;
    let mut streams = Vec::new();
    for c in td["taskDefinition"]["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = c["name"].as_str().unwrap_or_default();
        if container.is_some_and(|want| want != name) {
            continue;
        }
        let lc = &c["logConfiguration"];
        if lc["logDriver"] != "awslogs" {
            continue;
        }
        let Some(g) = lc["options"]["awslogs-group"].as_str() else {
            continue;
        };
        match &group {
            Some(prev) if prev != g => {
                bail!("the task's containers log to different groups ({prev}, {g}); pick one with --container")
            }
            _ => group = Some(g.to_string()),
        }
        match lc["options"]["awslogs-stream-prefix"].as_str() {
            Some(p) => streams.push(format!("{p}/{name}/{task_id}")),
            None => match runtime_ids.get(name) {
                Some(id) if !id.is_empty() => streams.push(id.to_string()),
                _ => {}
            },
        }
    }
    match group {
        Some(g) if !streams.is_empty() => Ok((g, streams)),
        _ => bail!(
            "no awslogs container{} in task {task}",
            container.map(|c| format!(" named {c}")).unwrap_or_default()
        ),
    }
}

/// A printed event, to drop the live copy of what the history already showed.
type Seen = (String, i64, i64, String);

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let (group, streams, prefix) = match &args.task {
        Some(task) => {
            let (g, s) =
                task_streams(&client, &args.cluster, task, args.container.as_deref()).await?;
            (g, Some(s), None)
        }
        None => match &args.group {
            Some(g) => (
                g.clone(),
                (!args.log_stream_names.is_empty()).then(|| args.log_stream_names.clone()),
                args.log_stream_name_prefix.clone(),
            ),
            None => bail!("give a log group, or --task (with --cluster)"),
        },
    };
    let start = parse_since(&args.since, now_ms())?;

    // Follow: open the session first, so events appended while the history prints are not lost.
    let mut live = None;
    if args.follow {
        // berth takes a group name here as well as an ARN.
        let mut req = json!({"logGroupIdentifiers": [group]});
        if let Some(s) = &streams {
            req["logStreamNames"] = json!(s);
        }
        if let Some(p) = &prefix {
            req["logStreamNamePrefixes"] = json!([p]);
        }
        if let Some(p) = &args.filter_pattern {
            req["logEventFilterPattern"] = json!(p);
        }
        let mut stream = client
            .call_event_stream("logs", &format!("{LOGS}.StartLiveTail"), &req)
            .await?;
        // initial-response, then sessionStart.
        for _ in 0..2 {
            match stream.next().await? {
                Some(m) if header(&m, ":message-type") == Some("event") => {}
                Some(m) => bail!(
                    "live tail failed: {} {}",
                    header(&m, ":exception-type").unwrap_or("error"),
                    String::from_utf8_lossy(m.payload())
                ),
                None => bail!("the live tail session ended before it started"),
            }
        }
        live = Some(stream);
    }
    let session_started = now_ms();

    let stdout = std::io::stdout();
    let mut seen: HashMap<Seen, usize> = HashMap::new();
    let mut req = json!({"logGroupIdentifier": group, "startTime": start, "interleaved": true});
    if let Some(s) = &streams {
        req["logStreamNames"] = json!(s);
    }
    if let Some(p) = &prefix {
        req["logStreamNamePrefix"] = json!(p);
    }
    if let Some(p) = &args.filter_pattern {
        req["filterPattern"] = json!(p);
    }
    loop {
        let page = client
            .call("logs", &format!("{LOGS}.FilterLogEvents"), &req)
            .await?;
        let mut out = stdout.lock();
        for e in page["events"].as_array().into_iter().flatten() {
            let (ts, stream, msg) = (
                e["timestamp"].as_i64().unwrap_or(0),
                e["logStreamName"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or(""),
            );
            writeln!(out, "{}", format_line(args.format, ts, stream, msg))?;
            let ingested = e["ingestionTime"].as_i64().unwrap_or(0);
            if live.is_some() && ingested >= session_started - 5_000 {
                *seen
                    .entry((stream.to_string(), ts, ingested, msg.to_string()))
                    .or_default() += 1;
            }
        }
        out.flush()?;
        match page["nextToken"].as_str() {
            Some(t) if !t.is_empty() => req["nextToken"] = json!(t),
            _ => break,
        }
    }

    let Some(mut stream) = live else {
        return Ok(());
    };
    let print = async {
        while let Some(m) = stream.next().await? {
            match header(&m, ":message-type") {
                Some("event") if header(&m, ":event-type") == Some("sessionUpdate") => {
                    let v: Value = serde_json::from_slice(m.payload())?;
                    let mut out = stdout.lock();
                    for e in v["sessionResults"].as_array().into_iter().flatten() {
                        let (ts, stream, msg, ingested) = (
                            e["timestamp"].as_i64().unwrap_or(0),
                            e["logStreamName"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or(""),
                            e["ingestionTime"].as_i64().unwrap_or(0),
                        );
                        let key = (stream.to_string(), ts, ingested, msg.to_string());
                        if let Some(n) = seen.get_mut(&key) {
                            *n -= 1;
                            if *n == 0 {
                                seen.remove(&key);
                            }
                            continue;
                        }
                        writeln!(out, "{}", format_line(args.format, ts, stream, msg))?;
                    }
                    out.flush()?;
                    if v["sessionMetadata"]["sampled"] == true {
                        eprintln!("berth logs: more events than the live tail can show; some were skipped");
                    }
                }
                Some("event") => {}
                _ => bail!(
                    "live tail ended: {} {}",
                    header(&m, ":exception-type").unwrap_or("error"),
                    String::from_utf8_lossy(m.payload())
                ),
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = print => r,
        _ = crate::shutdown_signal("berth logs: stopped") => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_format() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_since("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("1w", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert!(parse_since("10y", now).is_err());
        assert!(parse_since("soon", now).is_err());
        assert_eq!(
            format_line(LogFormat::Detailed, 1_700_000_000_123, "ecs/web/1", "hi\n"),
            "2023-11-14T22:13:20.123Z ecs/web/1 hi"
        );
        assert_eq!(
            format_line(LogFormat::Short, 1_700_000_000_000, "s", "hi"),
            "2023-11-14T22:13:20Z hi"
        );
    }
}
