"""End-to-end awslogs ingest (issue 7): real container output → berth's agent → berth's log store.

One container (busybox `awk`) writes N lines (default 1,000,000, ~100 bytes each, JSON) to stdout
with the `awslogs` log driver, through `berth up` (control plane + local agent, release build).
Measured in one run:

- **berth**: lines per second from the container's start (Docker's State.StartedAt) until the last
  line is queryable (GetLogEvents, newest first); then every event is read back (GetLogEvents
  pages) and checked: all N present, in order.
- **the ceiling**: the rate at which `docker logs` itself reads the same container's output once it
  has exited (the same json-file log the agent follows), best of 3, with and without timestamps.
- the container's own write time (State.StartedAt → FinishedAt), for context.
- **FilterLogEvents over the N stored events**, p50/p99 of `BENCH_READS` calls each: a JSON
  pattern matching 1 line in 1,000 (limit 50), a term matching one line in the middle (the group
  is scanned until it is found), and a 1-second time window (first page).

Issue 7's goal: berth ≥ 0.5× the `docker logs` ceiling.

Environment: BENCH_LINES (1000000), BENCH_READS (20), BERTH_BIN (target/release/berth).
"""

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime

sys.path.insert(0, os.path.dirname(__file__))
from berthbench import BerthUp, docker, ensure_image, machine_facts, pct, table  # noqa: E402

LINES = int(os.environ.get("BENCH_LINES", "1000000"))
READS = int(os.environ.get("BENCH_READS", "20"))
GROUP = "/bench/e2e-" + uuid.uuid4().hex[:6]

# ~100 bytes a line; every 1000th line is an error (for the JSON filter).
AWK = (
    'BEGIN { for (i = 1; i <= %d; i++) { lvl = (i %% 1000 == 0) ? "error" : "info"; '
    'printf "{\\"seq\\":%%d,\\"level\\":\\"%%s\\",\\"path\\":\\"/api/v1/items\\",\\"latency_ms\\":%%d,'
    '\\"msg\\":\\"request served\\"}\\n", i, lvl, i %% 997 } }' % LINES
)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def docker_time(s):
    # 2026-11-23T01:02:03.123456789Z → epoch seconds
    s = s.rstrip("Z")
    head, _, frac = s.partition(".")
    t = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=__import__("datetime").timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def logs_client(b):
    import configparser

    import boto3
    from botocore.config import Config

    cp = configparser.ConfigParser()
    cp.read(b.data_dir / "credentials")
    return boto3.client(
        "logs", endpoint_url=b.endpoint, region_name="us-east-1",
        aws_access_key_id=cp["berth"]["aws_access_key_id"],
        aws_secret_access_key=cp["berth"]["aws_secret_access_key"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=300),
    )


def docker_logs_rate(cid, timestamps):
    best = None
    for _ in range(3):
        args = ["docker", "logs"] + (["-t"] if timestamps else []) + [cid]
        t0 = time.perf_counter()
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        n = 0
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            n += chunk.count(b"\n")
        p.wait()
        dt = time.perf_counter() - t0
        if n != LINES:
            raise SystemExit(f"docker logs returned {n} lines, wanted {LINES} (log rotated?)")
        best = dt if best is None else min(best, dt)
    return LINES / best, best


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main():
    ensure_image()
    log(f"machine: {machine_facts()}")
    b = BerthUp().start()
    try:
        logs = logs_client(b)
        td = b.ecs.register_task_definition(
            family="logs-e2e",
            containerDefinitions=[{
                "name": "app", "image": "berth-test/busybox:latest", "essential": True, "memory": 64,
                "command": ["awk", AWK],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": GROUP, "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "bench", "awslogs-create-group": "true"}},
            }],
        )["taskDefinition"]["taskDefinitionArn"]
        log(f"RunTask: {LINES:,} lines into {GROUP}")
        task = b.ecs.run_task(cluster=b.cluster, taskDefinition=td)["tasks"][0]
        arn = task["taskArn"]
        stream = f"bench/app/{arn.rsplit('/', 1)[1]}"
        last = None
        deadline = time.time() + 1800
        while time.time() < deadline:
            try:
                ev = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=False,
                                         limit=1)["events"]
                if ev and f'"seq":{LINES},' in ev[-1]["message"]:
                    last = time.time()
                    break
            except logs.exceptions.ResourceNotFoundException:
                pass
            time.sleep(0.02)
        if last is None:
            raise SystemExit("the last line never arrived")
        t = b.ecs.describe_tasks(cluster=b.cluster, tasks=[arn])["tasks"][0]
        cid = t["containers"][0]["runtimeId"]
        state = docker("inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}} {{.State.Running}}", cid).stdout.split()
        started = docker_time(state[0])
        finished = docker_time(state[1]) if state[2] == "false" else None
        ingest_s = last - started
        write_s = (finished - started) if finished else float("nan")
        log(f"all {LINES:,} lines queryable {ingest_s:.2f} s after the container started "
            f"(the container wrote them in {write_s:.2f} s)")

        # Read everything back: complete and in order.
        t0 = time.perf_counter()
        seen, token, expect = 0, None, 1
        while True:
            kw = {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True, "limit": 10000}
            if token:
                kw["nextToken"] = token
            r = logs.get_log_events(**kw)
            for e in r["events"]:
                if not e["message"].startswith('{"seq":%d,' % expect):
                    raise SystemExit(f"event {seen}: wanted seq {expect}, got {e['message'][:60]}")
                expect += 1
                seen += 1
            if not r["events"] or r["nextForwardToken"] == token:
                break
            token = r["nextForwardToken"]
        read_s = time.perf_counter() - t0
        if seen != LINES:
            raise SystemExit(f"read back {seen} events, wanted {LINES}")
        log(f"read back {seen:,} events in order in {read_s:.2f} s")

        # Wait for the container to have exited, then the docker logs ceiling.
        for _ in range(600):
            if docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "false":
                break
            time.sleep(0.1)
        ceiling, ceiling_s = docker_logs_rate(cid, timestamps=False)
        ceiling_t, ceiling_t_s = docker_logs_rate(cid, timestamps=True)
        log(f"docker logs: {ceiling_s:.2f} s ({ceiling:,.0f} lines/s); with -t: {ceiling_t_s:.2f} s")

        # FilterLogEvents over the stored events.
        mid = LINES // 2

        def errors():
            r = logs.filter_log_events(logGroupName=GROUP, filterPattern='{ $.level = "error" }', limit=50)
            assert len(r["events"]) == min(50, LINES // 1000), len(r["events"])

        def needle():
            found, tok = [], None
            while not found:
                kw = {"logGroupName": GROUP, "filterPattern": "{ $.seq = %d }" % mid}
                if tok:
                    kw["nextToken"] = tok
                r = logs.filter_log_events(**kw)
                found = r["events"]
                tok = r.get("nextToken")
                if not tok:
                    break
            assert len(found) == 1 and found[0]["message"].startswith('{"seq":%d,' % mid), found

        first_ts = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True,
                                       limit=1)["events"][0]["timestamp"]

        def window():
            r = logs.filter_log_events(logGroupName=GROUP, startTime=first_ts, endTime=first_ts + 1000)
            assert r["events"], r

        reads = {
            "JSON pattern `{ $.level = \"error\" }` (1 in 1,000), limit 50": timed(errors, READS),
            "JSON pattern `{ $.seq = N/2 }` (one event, all pages)": timed(needle, READS),
            "1-second time window, first page": timed(window, READS),
        }
        rows = [
            ["ingest, lines/s (container start → last line queryable)", f"{LINES / ingest_s:,.0f}",
             f"{ceiling:,.0f}", f"{LINES / ingest_s / ceiling:.2f}×"],
            ["ingest, seconds", f"{ingest_s:.2f}", f"{ceiling_s:.2f}", ""],
            ["`docker logs -t` (timestamps, as the agent reads)", "", f"{ceiling_t:,.0f} lines/s", ""],
            ["the container's own write time, s", f"{write_s:.2f}", "", ""],
            ["GetLogEvents read-back of all events (pages of 10,000), s", f"{read_s:.2f}", "", ""],
        ]
        print()
        print(f"{LINES:,} lines × ~100 B, `awslogs` driver, one container; ceiling = `docker logs` of the same container")
        print()
        print(table(["metric", "berth", "`docker logs` ceiling", "berth / ceiling"], rows))
        print()
        print(table(["FilterLogEvents over %s events" % f"{LINES:,}", "p50 ms", "p99 ms", "max ms"],
                    [[k, f"{pct(v, 50):.1f}", f"{pct(v, 99):.1f}", f"{max(v):.1f}"] for k, v in reads.items()]))
    finally:
        b.close()


if __name__ == "__main__":
    main()
