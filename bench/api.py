"""API load: berth against fakecloud and moto, same signed requests, same concurrency, same machine.

1. Comparison (all three targets, same data set: `--instances`/`--tasks`, default 100/1,000): each
   target is populated by `berth-loadgen populate`, then every operation is driven for `--seconds`
   at `--concurrency` by `berth-loadgen load`. Ratios are berth's throughput over the reference's.
   berth verifies every SigV4 signature and commits every write durably (SQLite, fsync); fakecloud
   and moto keep state in memory and check no signatures. A RunTask counts only if it placed every
   task it asked for (an answer with `failures` is an error); populate leaves room for the load.
2. berth at scale (`--scale-instances`/`--scale-tasks`, default 5,000/50,000): the same operations
   against a control plane holding the issue's scale, with p50/p99 against its targets.
3. Memory: control-plane RSS after populating 1,000 instances / 10,000 tasks.

Run: bench/api.sh [--seconds 10] [--concurrency 16] [--skip-scale] [--only berth] [--ops RunTask,...]
"""

import argparse
import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from berthbench import ROOT, free_port, machine_facts, table  # noqa: E402

RELEASE = ROOT / "target" / "release"
BERTH = Path(os.environ.get("BERTH_BIN", RELEASE / "berth")).resolve()
LOADGEN = Path(os.environ.get("BERTH_LOADGEN", RELEASE / "berth-loadgen")).resolve()
CACHE = ROOT / ".cache" / "bench"
FAKECLOUD = CACHE / "fakecloud" / "bin" / "fakecloud"
MOTO = CACHE / "moto-venv" / "bin" / "moto_server"

READS = ["ListClusters", "DescribeClusters", "DescribeTaskDefinition", "ListTaskDefinitions", "DescribeTasks", "ListTasks"]
WRITES = ["RegisterTaskDefinition", "RunTask"]
SCALE_OPS = ["DescribeTasks", "ListTasks", "RunTask10", "DescribeClusters"]


def wait_http(url, proc, log, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {Path(log).read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (an error status is fine: it is up)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Target:
    def __init__(self, name, cmd, endpoint, health, env=None, creds=None, cwd=None):
        self.name, self.cmd, self.endpoint, self.health = name, cmd, endpoint, health
        self.env, self.creds, self.cwd = env, creds, cwd
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-api-{name}-"))
        self.log = self.dir / "server.log"
        self.proc = None
        self.populator = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "BERTH_"))}
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     env=env, cwd=self.cwd or self.dir, start_new_session=True)
        wait_http(self.health, self.proc, self.log)
        return self

    def credentials(self):
        if self.creds:
            return self.creds
        return ("test", "test")

    def loadgen(self, *args):
        akid, secret = self.credentials()
        return [str(LOADGEN), "--endpoint", self.endpoint, "--access-key", akid, "--secret-key", secret, *args]

    def populate(self, instances, tasks, keepalive):
        args = self.loadgen("populate", "--instances", str(instances), "--tasks", str(tasks))
        if keepalive:
            args.append("--keepalive")
        if self.name == "moto":
            # moto registers container instances only for EC2 instances it knows: make them first.
            import boto3
            ec2 = boto3.client("ec2", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
            ids = []
            while len(ids) < instances:
                n = min(100, instances - len(ids))
                r = ec2.run_instances(ImageId="ami-12345678", MinCount=n, MaxCount=n)
                ids += [i["InstanceId"] for i in r["Instances"]]
            (self.dir / "instance-ids").write_text("\n".join(ids))
            args += ["--instance-ids-file", str(self.dir / "instance-ids")]
        t0 = time.time()
        self.populator = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.dir / "populate.log", "ab"),
                                          text=True, start_new_session=True)
        line = self.populator.stdout.readline().strip()
        if line != "ready":
            self.populator.wait(timeout=30)
            raise RuntimeError(f"{self.name}: populate failed: {(self.dir / 'populate.log').read_text()[-2000:]}")
        return time.time() - t0

    def load(self, op, seconds, concurrency):
        p = subprocess.run(self.loadgen("load", "--op", op, "--seconds", str(seconds), "--concurrency",
                                        str(concurrency), "--label", self.name),
                           capture_output=True, text=True, timeout=seconds + 300)
        if p.returncode != 0:
            return {"op": op, "ok": 0, "errors": -1, "rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                    "first_error": p.stderr.strip()[-300:]}
        return json.loads(p.stdout.strip().splitlines()[-1])

    def metrics(self):
        """berth's /metrics as {series: value} (sums and counts only), or {} for the others."""
        if self.name != "berth":
            return {}
        try:
            text = urllib.request.urlopen(self.endpoint + "/metrics", timeout=5).read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if not line.startswith("#") and ("_sum" in line or "_count" in line or "_total" in line):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self):
        for p in (self.populator, self.proc):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def berth_target():
    port = free_port()
    t = Target("berth", None, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/_berth/health",
               env={"BERTH_LOG": "warn"})
    t.cmd = [str(BERTH), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(t.dir / "data")]
    t.start()
    cp = configparser.ConfigParser()
    cp.read(t.dir / "data" / "credentials")
    t.creds = (cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"])
    return t


def fakecloud_target():
    port = free_port()
    help_text = subprocess.run([str(FAKECLOUD), "--help"], capture_output=True, text=True).stdout
    args = [str(FAKECLOUD)]
    args += ["--port", str(port)] if "--port" in help_text else ["--addr", f"127.0.0.1:{port}"]
    # fakecloud runs RunTask's containers itself when it finds a container CLI: each task spawns
    # `docker` processes (an image pull, which fails here: there is no registry) on the cores the
    # bench shares. berth's RunTask places and records the task; its agents run containers
    # elsewhere. So fakecloud is compared as the in-memory emulator the issue names: a CLI that
    # does not exist turns its container runtime off (FAKECLOUD_CONTAINER_CLI is its override).
    # BENCH_FAKECLOUD_CONTAINERS=1 leaves it on, to see the difference.
    env = {"FAKECLOUD_PORT": str(port), "PORT": str(port)}
    if os.environ.get("BENCH_FAKECLOUD_CONTAINERS") != "1":
        env["FAKECLOUD_CONTAINER_CLI"] = "/nonexistent/docker"
    return Target("fakecloud", args, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/_fakecloud/health", env=env).start()


def moto_target():
    port = free_port()
    return Target("moto", [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}",
                  f"http://127.0.0.1:{port}/moto-api/").start()


def time_split(before, after, op):
    """Where berth's server time went during one op (from its /metrics): the mean request, the
    mean store transaction in it, and the SQLite writer's queue, group size, apply and commit."""
    if not before or not after:
        return ""
    d = lambda k: after.get(k, 0.0) - before.get(k, 0.0)  # noqa: E731
    target = f'target="AmazonEC2ContainerServiceV20141113.{op.removesuffix("10")}"'
    req_n = d(f"berth_api_request_duration_seconds_count{{{target}}}")
    txn = [k for k in after if k.startswith("berth_store_operation_duration_seconds_count{op=\"txn\"")]
    txn_n = sum(d(k) for k in txn)
    txn_s = sum(d(k.replace("_count{", "_sum{")) for k in txn)
    commits, txns = d("berth_sqlite_commits_total"), d("berth_sqlite_transactions_total")
    if not req_n:
        return ""
    us = lambda s, n: s / n * 1e6 if n else float("nan")  # noqa: E731
    out = f"server: request {us(d(f'berth_api_request_duration_seconds_sum{{{target}}}'), req_n):.0f} us"
    if txn_n:
        out += f"; {txn_n / req_n:.2f} store txns per request, {us(txn_s, txn_n):.0f} us each"
    if txn_n and commits:
        out += (f" (queue {us(d('berth_sqlite_queue_seconds_total'), txns):.0f} us; groups of {txns / commits:.1f}:"
                f" apply {us(d('berth_sqlite_apply_seconds_total'), commits):.0f} us, commit"
                f" {us(d('berth_sqlite_commit_seconds_total'), commits):.0f} us per group)")
    return out


def fmt(x, nd=1):
    return "n/a" if x != x else f"{x:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--scale-instances", type=int, default=5000)
    ap.add_argument("--scale-tasks", type=int, default=50000)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--scale-concurrency", default="4,16",
                    help="comma-separated concurrencies for the at-scale latency table")
    ap.add_argument("--only", default="berth,fakecloud,moto")
    ap.add_argument("--ops", default=",".join(READS + WRITES),
                    help="comma-separated operations for the comparison (default: all eight)")
    a = ap.parse_args()
    ops = [op for op in READS + WRITES if op in a.ops.split(",")]
    print(f"machine: {machine_facts()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    results = {}
    makers = {"berth": berth_target, "fakecloud": fakecloud_target, "moto": moto_target}
    for name in ([] if a.skip_compare else a.only.split(",")):
        t = None
        try:
            t = makers[name]()
            took = t.populate(a.instances, a.tasks, keepalive=(name == "berth"))
            print(f"{name}: populated {a.instances} instances / {a.tasks} tasks in {took:.1f}s", flush=True)
            for op in ops:
                before = t.metrics()
                r = t.load(op, a.seconds, a.concurrency)
                results[(name, op)] = r
                where = time_split(before, t.metrics(), op)
                print(f"  {name} {op}: {fmt(r['rps'], 0)}/s p50 {fmt(r['p50_ms'], 2)} ms p99 {fmt(r['p99_ms'], 2)} ms"
                      f" errors {r['errors']}" + (f" ({r.get('first_error')})" if r["errors"] else ""), flush=True)
                if where:
                    print(f"    {where}", flush=True)
        except Exception as e:  # a reference that can't run is reported, not fatal
            print(f"{name}: could not run: {e}", flush=True)
        finally:
            if t:
                t.close()
    rows = []
    for op in ops:
        b = results.get(("berth", op), {})
        row = [op, f"{fmt(b.get('rps', float('nan')), 0)} ({fmt(b.get('p99_ms', float('nan')), 1)} ms)"]
        for ref in ("fakecloud", "moto"):
            r = results.get((ref, op))
            if not r or not r.get("ok"):
                row += ["n/a", "n/a"]
                continue
            row += [f"{fmt(r['rps'], 0)} ({fmt(r['p99_ms'], 1)} ms)",
                    f"{b.get('rps', 0) / r['rps']:.2f}x" if r["rps"] else "n/a"]
        rows.append(row)
    if not a.skip_compare:
        print(f"\n### Comparison: {a.instances} instances / {a.tasks} tasks, concurrency {a.concurrency}, {a.seconds:.0f}s per operation\n")
        print(table(["operation", "berth req/s (p99)", "fakecloud req/s (p99)", "berth/fakecloud",
                     "moto req/s (p99)", "berth/moto"], rows))
    if a.skip_scale or "berth" not in a.only:
        return
    t = berth_target()
    try:
        took = t.populate(1000, 10000, keepalive=True)
        rss_small = t.rss_mib()
        print(f"\nberth: 1,000 instances / 10,000 tasks populated in {took:.1f}s; control-plane RSS {rss_small:.0f} MiB", flush=True)
    finally:
        t.close()
    t = berth_target()
    try:
        took = t.populate(a.scale_instances, a.scale_tasks, keepalive=True)
        rss = t.rss_mib()
        print(f"berth: {a.scale_instances} instances / {a.scale_tasks} tasks populated in {took:.1f}s; RSS {rss:.0f} MiB", flush=True)
        targets = {"DescribeTasks": "p99 <= 10 ms", "ListTasks": "p99 <= 10 ms", "RunTask10": "p99 <= 50 ms",
                   "DescribeClusters": ""}
        rows = []
        for conc in [int(c) for c in a.scale_concurrency.split(",")]:
            for op in SCALE_OPS:
                r = t.load(op, a.seconds, conc)
                rows.append([op if op != "RunTask10" else "RunTask (count 10)", conc, fmt(r["rps"], 0), fmt(r["p50_ms"], 2),
                             fmt(r["p90_ms"], 2) if "p90_ms" in r else "n/a", fmt(r["p99_ms"], 2), r["errors"], targets[op]])
                print(f"  {op} @{conc}: {r}", flush=True)
        print(f"\n### berth at scale: {a.scale_instances} instances / {a.scale_tasks} tasks\n")
        print(table(["operation", "concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "target"], rows))
        print(f"\ncontrol-plane RSS: {rss_small:.0f} MiB at 1,000 instances / 10,000 tasks (target <= 100 MB); "
              f"{rss:.0f} MiB at {a.scale_instances} / {a.scale_tasks}")
    finally:
        t.close()


if __name__ == "__main__":
    main()
