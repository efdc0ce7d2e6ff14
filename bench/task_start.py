"""Task start latency against raw `docker run -d` (issue 9's target: p50 ≤ 1.2×, p99 ≤ 2×).

RUNS times (default 50), alternating so that background load hits both alike:
  berth   RunTask (one busybox `sleep 600` task, 16 MiB) → DescribeTasks (polled every 20 ms) says RUNNING;
          then StopTask and wait until STOPPED (the container is removed afterwards)
  docker  `docker run -d -m 16m berth-test/busybox:latest sleep 600`: time until the command returns, and
          until `docker inspect` shows State.Running=true; then `docker rm -f`
For berth it also reports where the time went, from the task record's createdAt / pullStartedAt /
pullStoppedAt / startedAt (wall clock, same host) and the time the client first saw RUNNING.

Then CONCURRENT tasks (default 50) started at once, each side after the other: berth = CONCURRENT
RunTask calls (count 1) from CONCURRENT client threads, then one poller calling DescribeTasks with all
the ARNs every 20 ms (as `aws ecs wait tasks-running` does, faster); docker = CONCURRENT `docker run -d`
at once, each until `docker inspect` shows it running.
Per-task latency is measured from the common start, so it includes the queueing a burst causes.

Environment: BENCH_RUNS=50, BENCH_CONCURRENT=50, BENCH_LOG=debug (server log level), BENCH_KEEP_DATA=1,
BENCH_PULL=prefer-cached (sets the agent's ECS_IMAGE_PULL_BEHAVIOR; default: the agent's default).
"""

import concurrent.futures
import datetime
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from berthbench import IMAGE, BerthUp, docker, ensure_image, machine_facts, median, pct, table  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "50"))
CONCURRENT = int(os.environ.get("BENCH_CONCURRENT", "50"))
POLL = 0.02
RUN_ID = uuid.uuid4().hex[:6]
LABEL = f"berthbench.taskstart={RUN_ID}"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def epoch(v):
    return v.timestamp() if isinstance(v, datetime.datetime) else v


def berth_once(b, td):
    ecs = b.ecs
    t0 = time.time()
    out = ecs.run_task(cluster=b.cluster, taskDefinition=td, count=1)
    t_api = time.time() - t0
    assert not out["failures"], out["failures"]
    arn = out["tasks"][0]["taskArn"]
    while True:
        t = ecs.describe_tasks(cluster=b.cluster, tasks=[arn])["tasks"][0]
        if t["lastStatus"] == "RUNNING":
            seen = time.time() - t0
            break
        if t["lastStatus"] == "STOPPED" or time.time() - t0 > 60:
            raise RuntimeError(f"task did not reach RUNNING: {t.get('stoppedReason')} {t['lastStatus']}")
        time.sleep(POLL)
    parts = {
        "api": t_api,
        "created": epoch(t["createdAt"]) - t0,
        "pull_started": epoch(t.get("pullStartedAt")) - t0 if t.get("pullStartedAt") else float("nan"),
        "pull_stopped": epoch(t.get("pullStoppedAt")) - t0 if t.get("pullStoppedAt") else float("nan"),
        "started": epoch(t["startedAt"]) - t0 if t.get("startedAt") else float("nan"),
        "seen": seen,
    }
    ecs.stop_task(cluster=b.cluster, task=arn, reason="bench")
    deadline = time.time() + 60
    while time.time() < deadline:
        if ecs.describe_tasks(cluster=b.cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "STOPPED":
            break
        time.sleep(0.2)
    b.remove_containers()
    return parts


def docker_once():
    t0 = time.monotonic()
    cid = subprocess.run(["docker", "run", "-d", "--label", LABEL, "-m", "16m", IMAGE, "sleep", "600"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    returned = time.monotonic() - t0
    while docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() != "true":
        if time.monotonic() - t0 > 60:
            raise RuntimeError("docker container not running")
    running = time.monotonic() - t0
    docker("rm", "-f", cid, check=False)
    return returned, running


def berth_burst(b, td, n):
    """n RunTask calls at once (n client threads); then one poller, as `aws ecs wait tasks-running`
    does, calls DescribeTasks with all n ARNs every 20 ms. Per task, seconds from the common start
    until the poll that first shows it RUNNING, and the task's own startedAt.

    (Until 2026-11-23 each of the n threads polled its own task every 20 ms: 2,500 signed requests
    a second from Python, which on 2 cores took CPU from dockerd and made every container start
    later, on berth's side only.)"""
    ecs = b.ecs
    start = time.time()

    def one(_):
        out = ecs.run_task(cluster=b.cluster, taskDefinition=td, count=1)
        assert not out["failures"], out["failures"]
        return out["tasks"][0]["taskArn"]

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        arns = list(pool.map(one, range(n)))
    seen = {}
    while len(seen) < len(arns):
        for i in range(0, len(arns), 100):
            for t in ecs.describe_tasks(cluster=b.cluster, tasks=arns[i:i + 100])["tasks"]:
                if t["taskArn"] in seen:
                    continue
                if t["lastStatus"] == "RUNNING":
                    seen[t["taskArn"]] = (time.time() - start, epoch(t["startedAt"]) - start)
                elif t["lastStatus"] == "STOPPED":
                    raise RuntimeError(f"task did not reach RUNNING: {t.get('stoppedReason')}")
        if time.time() - start > 120:
            raise RuntimeError(f"only {len(seen)} of {len(arns)} tasks RUNNING after 120 s")
        time.sleep(POLL)
    got = [(seen[a][0], a, seen[a][1]) for a in arns]
    arns = [a for _, a, _ in got]
    for a in arns:
        ecs.stop_task(cluster=b.cluster, task=a, reason="bench")
    deadline = time.time() + 120
    while time.time() < deadline:
        ts = []
        for i in range(0, len(arns), 100):
            ts += ecs.describe_tasks(cluster=b.cluster, tasks=arns[i:i + 100])["tasks"]
        if all(t["lastStatus"] == "STOPPED" for t in ts):
            break
        time.sleep(0.5)
    b.remove_containers()
    return [x for x, _, _ in got], [st for _, _, st in got]


def docker_burst(n):
    """n `docker run -d` at once; per container, seconds from the common start until running."""
    start = time.monotonic()

    def one(_):
        cid = subprocess.run(["docker", "run", "-d", "--label", LABEL, "-m", "16m", IMAGE, "sleep", "600"],
                             check=True, capture_output=True, text=True, timeout=120).stdout.strip()
        while docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() != "true":
            if time.monotonic() - start > 120:
                raise RuntimeError("docker container not running")
        return time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        got = list(pool.map(one, range(n)))
    cleanup()
    return got


def cleanup():
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)


def ms(x):
    return f"{x * 1000:.0f}"


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_image()
    facts = machine_facts()
    load0 = os.getloadavg()
    log(f"machine: {facts}; load average {load0[0]:.2f}")
    env = {"ECS_CONTAINER_STOP_TIMEOUT": "1s"}
    if os.environ.get("BENCH_PULL"):
        env["ECS_IMAGE_PULL_BEHAVIOR"] = os.environ["BENCH_PULL"]
    b = BerthUp(log_level=os.environ.get("BENCH_LOG", "info"), extra_env=env)
    berth, d_ret, d_run = [], [], []
    burst_berth, burst_started, burst_docker = [], [], []
    try:
        b.start()
        td = b.register(f"start{RUN_ID}", ["sleep", "600"])
        # One warm-up each (first-use costs: image inspect caches, connection setup).
        berth_once(b, td)
        docker_once()
        for i in range(RUNS):
            p = berth_once(b, td)
            berth.append(p)
            r, rr = docker_once()
            d_ret.append(r)
            d_run.append(rr)
            log(f"run {i + 1}: berth {ms(p['seen'])} ms (created {ms(p['created'])}, pull {ms(p['pull_started'])}"
                f"→{ms(p['pull_stopped'])}, started {ms(p['started'])}); docker run {ms(r)} ms, inspect running {ms(rr)} ms")
        if CONCURRENT > 0:
            burst_berth, burst_started = berth_burst(b, td, CONCURRENT)
            log(f"berth burst of {CONCURRENT}: max {ms(max(burst_berth))} ms")
            burst_docker = docker_burst(CONCURRENT)
            log(f"docker burst of {CONCURRENT}: max {ms(max(burst_docker))} ms")
    finally:
        b.close()
        cleanup()
    load1 = os.getloadavg()

    seen = [p["seen"] for p in berth]
    print()
    print(f"Machine: {facts}. Load average at start {load0[0]:.2f}, at end {load1[0]:.2f}. {RUNS} runs each "
          f"(alternating), after one warm-up each. Pull behaviour: {os.environ.get('BENCH_PULL') or 'agent default'}.")
    print()
    rows = []
    for name, v in [("berth RunTask → RUNNING (DescribeTasks every 20 ms)", seen),
                    ("`docker run -d` returns", d_ret),
                    ("`docker run -d` → `docker inspect` Running", d_run)]:
        rows.append([name, ms(pct(v, 50)), ms(pct(v, 90)), ms(pct(v, 99)), ms(min(v)), ms(max(v))])
    print(table(["what", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms"], rows))
    print()
    print(f"Ratio berth / `docker run -d` returns: p50 {pct(seen, 50) / pct(d_ret, 50):.2f}× (target ≤ 1.2×), "
          f"p99 {pct(seen, 99) / pct(d_ret, 99):.2f}× (target ≤ 2×)")
    if burst_berth:
        print()
        print(f"{CONCURRENT} at once (per task, ms from the common start until RUNNING):")
        print()
        print(table(["what", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms"],
                    [[f"berth: {CONCURRENT} × RunTask → RUNNING seen by the client", ms(pct(burst_berth, 50)),
                      ms(pct(burst_berth, 90)), ms(pct(burst_berth, 99)), ms(min(burst_berth)), ms(max(burst_berth))],
                     [f"berth: {CONCURRENT} × RunTask → the task's startedAt", ms(pct(burst_started, 50)),
                      ms(pct(burst_started, 90)), ms(pct(burst_started, 99)), ms(min(burst_started)),
                      ms(max(burst_started))],
                     [f"docker: {CONCURRENT} × `docker run -d` → Running", ms(pct(burst_docker, 50)),
                      ms(pct(burst_docker, 90)), ms(pct(burst_docker, 99)), ms(min(burst_docker)),
                      ms(max(burst_docker))]]))
        print()
        print(f"Ratio berth / docker, {CONCURRENT} at once: p50 {pct(burst_berth, 50) / pct(burst_docker, 50):.2f}× "
              f"(target ≤ 1.2×), p99 {pct(burst_berth, 99) / pct(burst_docker, 99):.2f}× (target ≤ 2×)")
    print()
    print("berth breakdown (median over runs, ms after the RunTask call was sent):")
    print()
    keys = ["api", "created", "pull_started", "pull_stopped", "started", "seen"]
    print(table(["RunTask answered", "createdAt", "pullStartedAt", "pullStoppedAt", "startedAt", "client sees RUNNING"],
                [[ms(median([p[k] for p in berth])) for k in keys]]))
    if os.environ.get("BENCH_KEEP_DATA"):
        print(f"server log: {b.log_path}")


if __name__ == "__main__":
    main()
