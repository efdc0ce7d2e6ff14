"""Service convergence, side by side on this Docker engine (issue 5's benchmark).

For N in (10, 50) replicas of `berth-test/busybox:latest sleep 3600` (16 MiB each), 3 repetitions each,
interleaved so that background load hits every contender alike:
  raw-seq  N × `docker run -d` one after another (the physical floor)
  raw-c2   the same with 2 concurrent `docker run -d`
  swarm    `docker service create --detach --replicas N` → `docker service ls` shows N/N (polled every 100 ms)
  berth-pc the same with the agent's ECS_IMAGE_PULL_BEHAVIOR=prefer-cached (no registry round trip)
  berth    CreateService → steady state: deployments == 1, runningCount == N and every task RUNNING
           (DescribeServices polled every 100 ms; then ListTasks + DescribeTasks to confirm)
Then the time to roll a 10-task berth service to a new task-definition revision (UpdateService → steady
state on the new revision), 3 times. Prints markdown tables; the berth breakdown comes from the task
records' createdAt / pullStartedAt / pullStoppedAt / startedAt.

Environment: BENCH_NS="10 50", BENCH_REPS=3, BENCH_LOG=debug (server log level), BENCH_KEEP_DATA=1.
"""

import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from berthbench import (IMAGE, BerthUp, docker, ensure_image, machine_facts, median, table)  # noqa: E402

NS = [int(x) for x in os.environ.get("BENCH_NS", "10 50").split()]
REPS = int(os.environ.get("BENCH_REPS", "3"))
POLL = 0.1
TIMEOUT = 240.0
RUN_ID = uuid.uuid4().hex[:6]
RAW_LABEL = f"berthbench.raw={RUN_ID}"
# `sleep` as PID 1 ignores SIGTERM, so every stop would wait the full stop timeout (ECS default 30 s).
# Replaced/removed tasks are not what is measured here; a short timeout keeps cleanup and rolls short.
STOP_TIMEOUT = "2s"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def epoch(v):
    return v.timestamp() if isinstance(v, datetime.datetime) else (float(v) if v is not None else None)


# ---------------------------------------------------------------- raw docker run


def raw_run(n, concurrency):
    cmd = ["docker", "run", "-d", "--label", RAW_LABEL, "-m", "16m", IMAGE, "sleep", "3600"]

    def one(_):
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    t0 = time.monotonic()
    if concurrency == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(concurrency) as ex:
            list(ex.map(one, range(n)))
    elapsed = time.monotonic() - t0
    running = docker("ps", "-q", "--filter", f"label={RAW_LABEL}", "--filter", "status=running").stdout.split()
    assert len(running) == n, f"raw: {len(running)} of {n} running"
    raw_cleanup()
    return elapsed


def raw_cleanup():
    ids = docker("ps", "-aq", "--filter", f"label={RAW_LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)


# ---------------------------------------------------------------- swarm


class Swarm:
    def __init__(self):
        self.inited = False
        self.had_gwbridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$", check=False).stdout.strip())

    def init(self):
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        if state != "inactive":
            raise SystemExit(f"this engine is already in swarm state {state!r}; not touching it")
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        self.inited = True

    def leave(self):
        if not self.inited:
            return
        for name in docker("service", "ls", "-q", "--filter", f"label=berthbench={RUN_ID}", check=False).stdout.split():
            docker("service", "rm", name, check=False)
        docker("swarm", "leave", "--force", check=False)
        self.inited = False
        ids = docker("ps", "-aq", "--filter", f"label=berthbench.swarm={RUN_ID}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        if not self.had_gwbridge:
            # `swarm init` created docker_gwbridge; `leave` keeps it. Remove it when nothing uses it.
            time.sleep(1)
            docker("network", "rm", "docker_gwbridge", check=False)

    def converge(self, n, name):
        t0 = time.monotonic()
        docker("service", "create", "--detach", "--quiet", "--name", name, "--label", f"berthbench={RUN_ID}",
               "--container-label", f"berthbench.swarm={RUN_ID}", "--replicas", str(n), "--limit-memory", "16M",
               "--stop-grace-period", "1s", IMAGE, "sleep", "3600")
        created = time.monotonic() - t0
        while True:
            rep = docker("service", "ls", "--filter", f"name={name}", "--format", "{{.Name}} {{.Replicas}}").stdout.split("\n")
            if any(line.split() == [name, f"{n}/{n}"] for line in rep):
                elapsed = time.monotonic() - t0
                break
            if time.monotonic() - t0 > TIMEOUT:
                raise RuntimeError(f"swarm {name} did not converge: {rep}")
            time.sleep(POLL)
        states = docker("service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", name).stdout.split("\n")
        assert sum(s.startswith("Running") for s in states) == n, states
        self.remove(name)
        return elapsed, created

    def remove(self, name):
        docker("service", "rm", name, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={name}", check=False).stdout.split()
            if not ids:
                return
            time.sleep(0.5)
        docker("rm", "-f", *ids, check=False)


# ---------------------------------------------------------------- berth


def steady(b, name, n, td, t0):
    """Polls until the service is steady on `td`; returns (elapsed, tasks)."""
    ecs = b.ecs
    while True:
        svc = ecs.describe_services(cluster=b.cluster, services=[name])["services"][0]
        deps = svc["deployments"]
        if len(deps) == 1 and svc["runningCount"] == n and deps[0]["taskDefinition"] == td:
            arns = ecs.list_tasks(cluster=b.cluster, serviceName=name, desiredStatus="RUNNING")["taskArns"]
            tasks = []
            for i in range(0, len(arns), 100):
                tasks += ecs.describe_tasks(cluster=b.cluster, tasks=arns[i:i + 100])["tasks"]
            if len(tasks) == n and all(t["lastStatus"] == "RUNNING" and t["taskDefinitionArn"] == td for t in tasks):
                return time.time() - t0, tasks
        if time.time() - t0 > TIMEOUT:
            raise RuntimeError(f"berth {name} not steady after {TIMEOUT}s: running={svc['runningCount']} "
                               f"deployments={len(deps)} events={[e['message'] for e in svc['events'][:3]]}")
        time.sleep(POLL)


def breakdown(tasks, t0):
    """Seconds after t0 (wall clock) of the last task's createdAt / pullStartedAt / pullStoppedAt / startedAt."""
    def last(field):
        vals = [epoch(t.get(field)) for t in tasks if t.get(field) is not None]
        return max(vals) - t0 if vals else float("nan")

    def first(field):
        vals = [epoch(t.get(field)) for t in tasks if t.get(field) is not None]
        return min(vals) - t0 if vals else float("nan")

    return {"first_created": first("createdAt"), "last_created": last("createdAt"), "first_started": first("startedAt"),
            "last_pull_started": last("pullStartedAt"), "last_pull_stopped": last("pullStoppedAt"),
            "last_started": last("startedAt")}


def berth_remove(b, name):
    ecs = b.ecs
    ecs.delete_service(cluster=b.cluster, service=name, force=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        arns = ecs.list_tasks(cluster=b.cluster, serviceName=name, desiredStatus="RUNNING")["taskArns"]
        stopped = ecs.list_tasks(cluster=b.cluster, serviceName=name, desiredStatus="STOPPED")["taskArns"]
        live = []
        for i in range(0, len(stopped), 100):
            live += [t for t in ecs.describe_tasks(cluster=b.cluster, tasks=stopped[i:i + 100])["tasks"] if t["lastStatus"] != "STOPPED"]
        if not arns and not live:
            break
        time.sleep(0.5)
    else:
        log(f"warning: {name}'s tasks not all STOPPED after 60 s; removing containers anyway")
    b.remove_containers()


def berth_converge(b, n, name, td):
    t0 = time.time()
    b.ecs.create_service(cluster=b.cluster, serviceName=name, taskDefinition=td, desiredCount=n)
    elapsed, tasks = steady(b, name, n, td, t0)
    bd = breakdown(tasks, t0)
    berth_remove(b, name)
    return elapsed, bd


def berth_roll(b, rep):
    family = f"roll{RUN_ID}r{rep}"
    td1 = b.register(family, ["sleep", "3600"])
    td2 = b.register(family, ["sleep", "3601"])
    name = f"roll-{RUN_ID}-{rep}"
    t0 = time.time()
    b.ecs.create_service(cluster=b.cluster, serviceName=name, taskDefinition=td1, desiredCount=10)
    steady(b, name, 10, td1, t0)
    t0 = time.time()
    b.ecs.update_service(cluster=b.cluster, service=name, taskDefinition=td2)
    elapsed, tasks = steady(b, name, 10, td2, t0)
    bd = breakdown(tasks, t0)
    berth_remove(b, name)
    return elapsed, bd


# ---------------------------------------------------------------- main


def fmt(x):
    return f"{x:.2f}"


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_image()
    facts = machine_facts()
    load0 = os.getloadavg()
    log(f"machine: {facts}; load average {load0[0]:.2f}")
    results = {}  # (n, contender) -> [seconds]
    berth_bd = {}  # n -> [breakdown]
    swarm = Swarm()
    level = os.environ.get("BENCH_LOG", "info")
    b = BerthUp(log_level=level, extra_env={"ECS_CONTAINER_STOP_TIMEOUT": STOP_TIMEOUT})
    # A second berth whose agent skips the registry round trip when the image is present
    # (ECS_IMAGE_PULL_BEHAVIOR=prefer-cached, as in Amazon's agent). Swarm has no such switch: its
    # executor always tries to pull a tag-referenced image before it creates the container.
    bpc = BerthUp(log_level=level, extra_env={"ECS_CONTAINER_STOP_TIMEOUT": STOP_TIMEOUT,
                                               "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"})
    try:
        swarm.init()
        b.start()
        bpc.start()
        td = b.register(f"svc{RUN_ID}", ["sleep", "3600"])
        tdpc = bpc.register(f"svc{RUN_ID}", ["sleep", "3600"])
        for n in NS:
            for rep in range(1, REPS + 1):
                t = raw_run(n, 1)
                results.setdefault((n, "raw-seq"), []).append(t)
                log(f"N={n} rep {rep}: raw docker run sequential {t:.2f}s")
                t = raw_run(n, 2)
                results.setdefault((n, "raw-c2"), []).append(t)
                log(f"N={n} rep {rep}: raw docker run concurrency 2 {t:.2f}s")
                t, created = swarm.converge(n, f"bench-{RUN_ID}-{n}-{rep}")
                results.setdefault((n, "swarm"), []).append(t)
                log(f"N={n} rep {rep}: swarm {t:.2f}s (service create returned after {created:.2f}s)")
                t, bd = berth_converge(b, n, f"svc-{RUN_ID}-{n}-{rep}", td)
                results.setdefault((n, "berth"), []).append(t)
                berth_bd.setdefault(n, []).append(bd)
                log(f"N={n} rep {rep}: berth {t:.2f}s  " + " ".join(f"{k}={v:.2f}" for k, v in bd.items()))
                t, bd = berth_converge(bpc, n, f"svc-{RUN_ID}-{n}-{rep}", tdpc)
                results.setdefault((n, "berth-pc"), []).append(t)
                berth_bd.setdefault(f"N={n} prefer-cached", []).append(bd)
                log(f"N={n} rep {rep}: berth prefer-cached {t:.2f}s  " + " ".join(f"{k}={v:.2f}" for k, v in bd.items()))
        for rep in range(1, REPS + 1):
            t, bd = berth_roll(b, rep)
            results.setdefault(("roll10", "berth"), []).append(t)
            berth_bd.setdefault("roll10", []).append(bd)
            log(f"roll 10 rep {rep}: berth {t:.2f}s  " + " ".join(f"{k}={v:.2f}" for k, v in bd.items()))
    finally:
        b.close()
        bpc.close()
        swarm.leave()
        raw_cleanup()
    load1 = os.getloadavg()

    print()
    print(f"Machine: {facts}. Load average at start {load0[0]:.2f}, at end {load1[0]:.2f}. "
          f"{REPS} repetitions; min / median seconds.")
    print()
    rows = []
    for n in NS:
        r = {c: results[(n, c)] for c in ("berth", "berth-pc", "swarm", "raw-seq", "raw-c2")}
        m = {c: median(v) for c, v in r.items()}
        rows.append([n, *(f"{fmt(min(v))} / {fmt(median(v))}" for v in r.values()),
                     f"{m['berth'] / m['swarm']:.2f}× / {m['berth-pc'] / m['swarm']:.2f}×",
                     f"{m['berth'] / m['raw-seq']:.2f}× / {m['berth-pc'] / m['raw-seq']:.2f}×",
                     f"{m['raw-c2'] / m['swarm']:.2f}×"])
    print(table(["N", "berth (s)", "berth, prefer-cached (s)", "Swarm (s)", "docker run ×N seq (s)",
                 "docker run ×N, 2 parallel (s)", "berth / Swarm (default / prefer-cached)",
                 "berth / raw seq (default / prefer-cached)", "raw 2-parallel / Swarm"], rows))
    print()
    r = results[("roll10", "berth")]
    print(f"Roll 10 berth tasks to a new revision (UpdateService → steady): min {fmt(min(r))} s / median {fmt(median(r))} s")
    print()
    print("berth breakdown (median over repetitions; seconds after the API call; 'last' = the slowest task):")
    print()
    keys = ["first_created", "last_created", "first_started", "last_pull_stopped", "last_started"]
    rows = []
    for k, bds in berth_bd.items():
        label = f"N={k}" if isinstance(k, int) else ("roll 10 (UpdateService)" if k == "roll10" else k)
        total = {"roll10": results[("roll10", "berth")]}.get(k) or (
            results[(k, "berth")] if isinstance(k, int) else results[(int(k.split()[0][2:]), "berth-pc")])
        rows.append([label, *(fmt(median([bd[x] for bd in bds])) for x in keys), fmt(median(total))])
    print(table(["run", "first task createdAt", "last task createdAt", "first task startedAt", "last pullStoppedAt",
                 "last startedAt", "steady seen by client"], rows))
    if os.environ.get("BENCH_KEEP_DATA"):
        print(f"server logs: {b.log_path} {bpc.log_path}")


if __name__ == "__main__":
    main()
