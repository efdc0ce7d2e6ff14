"""berth's HA cost and failover (issue 8). One run, every number measured here, on this machine:

1. API write throughput and latency, `BENCH_CONC` concurrent clients (default 8), `BENCH_N` calls each
   kind (default 400): RegisterTaskDefinition, and RunTask count 1 against simulated container
   instances (registered through the API and kept connected by a small poller; no containers run) —
   with `berth server --store sqlite` and with `--store etcd://` on a 3-member local etcd cluster,
   next to raw etcd puts on the same cluster: `etcdctl put` run in a loop (one process per put, as a
   shell script would), and the same puts through etcd's own HTTP/JSON gateway (`/v3/kv/put`, one
   keep-alive connection per client thread, the same concurrency) — the cost berth adds over etcd.
2. Failover: two `berth server` replicas on that etcd, a REPLICA service on a simulated instance;
   `kill -9` the leader, then at once (a) RegisterTaskDefinition through the survivor until one
   succeeds ("first write") and (b) raise the service's desired count through the survivor and wait
   for the new task to be placed ("first placement": only the leader's scheduler places service
   tasks). `BENCH_FAILOVERS` runs (default 10), p50 and max; the killed replica is restarted between
   runs. Leader lease `BENCH_LEASE` seconds (default 6, berth's default).
"""

import base64
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from berthbench import BERTH_BIN, REGION, free_port, machine_facts, pct, table  # noqa: E402

N = int(os.environ.get("BENCH_N", "400"))
CONC = int(os.environ.get("BENCH_CONC", "8"))
FAILOVERS = int(os.environ.get("BENCH_FAILOVERS", "10"))
LEASE = int(os.environ.get("BENCH_LEASE", "6"))
AKID, SECRET = "AKIABENCHHABENCHHA01", "b" * 40
TMP = Path(tempfile.mkdtemp(prefix="berth-bench-ha-"))


def wait_until(what, pred, timeout, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


class Etcd3:
    def __init__(self):
        self.client = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(peer))
        self.procs = []
        for i in range(3):
            log = open(TMP / f"etcd{i}.log", "ab")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"m{i}", "--data-dir", str(TMP / f"etcd{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{self.client[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.client[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new"],
                stdout=log, stderr=subprocess.STDOUT))
        for c in self.client:
            wait_until("etcd healthy", lambda c=c: json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{c}/health", timeout=1).read())["health"] == "true", 30)

    def endpoints(self):
        return ",".join(f"127.0.0.1:{c}" for c in self.client)

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait(timeout=10)


class Server:
    def __init__(self, name, store, extra=()):
        self.dir = TMP / name
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.args = [str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.dir),
                     "--store", store, "--leader-lease", str(LEASE), *extra]
        self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "BERTH_"))}
        env.update(BERTH_LOG="warn", BERTH_ROOT_ACCESS_KEY_ID=AKID, BERTH_ROOT_SECRET_ACCESS_KEY=SECRET)
        self.proc = subprocess.Popen(self.args, stdout=open(self.dir / "server.log", "ab"), stderr=subprocess.STDOUT, env=env)
        wait_until("berth healthy", lambda: urllib.request.urlopen(self.endpoint + "/_berth/health", timeout=1).status == 200, 30)

    def leader(self):
        with urllib.request.urlopen(self.endpoint + "/_berth/health", timeout=2) as r:
            return json.loads(r.read())["leader"]

    def ecs(self):
        import boto3
        from botocore.config import Config

        return boto3.client("ecs", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=AKID,
                            aws_secret_access_key=SECRET,
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=CONC * 2,
                                          connect_timeout=2, read_timeout=10))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def poll_agent(endpoint, cluster, arn):
    """One PollDesiredState (what an agent does; keeps the simulated instance connected)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    body = json.dumps({"cluster": cluster, "containerInstanceArn": arn, "knownGeneration": 0, "waitSeconds": 0}).encode()
    req = botocore.awsrequest.AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "BerthAgent_20261122.PollDesiredState"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(AKID, SECRET), "ecs", REGION).add_auth(req)
    urllib.request.urlopen(urllib.request.Request(req.url, data=body, headers=dict(req.headers), method="POST"), timeout=5).read()


class SimHosts:
    """n simulated container instances (huge resources), polled every 5 s through any live server."""

    def __init__(self, servers, cluster, n, az="az1"):
        self.servers, self.cluster, self.stop_flag = servers, cluster, False
        ecs = servers[0].ecs()
        self.arns = [ecs.register_container_instance(
            cluster=cluster, instanceIdentityDocument=json.dumps({"availabilityZone": f"az{i % 3}", "instanceType": "sim"}),
            totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 10_000_000},
                            {"name": "MEMORY", "type": "INTEGER", "integerValue": 10_000_000}])["containerInstance"]["containerInstanceArn"]
            for i in range(n)]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop_flag:
            for arn in self.arns:
                for s in self.servers:
                    if s.proc.poll() is None:
                        try:
                            poll_agent(s.endpoint, self.cluster, arn)
                            break
                        except Exception:
                            continue
            time.sleep(2)


def measure(calls, fn):
    """calls × fn(i) on CONC threads: (throughput/s, p50 ms, p99 ms, errors)."""
    lat, errors = [], [0]
    lock = threading.Lock()

    def one(i):
        t = time.perf_counter()
        try:
            fn(i)
        except Exception as e:  # counted, shown
            with lock:
                errors[0] += 1
                if errors[0] <= 3:
                    print("  error:", e, file=sys.stderr)
            return
        d = time.perf_counter() - t
        with lock:
            lat.append(d)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONC) as pool:
        list(pool.map(one, range(calls)))
    wall = time.perf_counter() - started
    return len(lat) / wall, pct(lat, 50) * 1000, pct(lat, 99) * 1000, errors[0]


def td_body(i):
    return dict(family=f"bench{i % 20}", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16,
                                                                "command": ["sleep", str(i)]}])


def api_rows(label, server, hosts_n=10):
    tls = threading.local()

    def ecs():
        if not hasattr(tls, "c"):
            tls.c = server.ecs()
        return tls.c

    ecs().create_cluster(clusterName="bench")
    ecs().register_task_definition(family="tiny", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 6, "cpu": 1}])
    measure(CONC * 4, lambda i: ecs().register_task_definition(**td_body(i)))  # warm-up (connections)
    reg = measure(N, lambda i: ecs().register_task_definition(**td_body(i)))
    hosts = SimHosts([server], "bench", hosts_n)

    def run(i):
        r = ecs().run_task(cluster="bench", taskDefinition="tiny", count=1)
        if r["failures"] or len(r["tasks"]) != 1:
            raise RuntimeError(f"RunTask failed: {r['failures']}")
    run_ = measure(N, run)
    hosts.stop_flag = True
    return [(f"{label}: RegisterTaskDefinition", *reg), (f"{label}: RunTask count 1 ({hosts_n} simulated instances)", *run_)]


def etcdctl_loop(etcd, n):
    lat = []
    ep = f"127.0.0.1:{etcd.client[0]}"
    for i in range(n):
        t = time.perf_counter()
        subprocess.run(["etcdctl", "--endpoints", ep, "put", f"/raw/ctl/{i}", "x" * 700],
                       check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
        lat.append(time.perf_counter() - t)
    return n / sum(lat), pct(lat, 50) * 1000, pct(lat, 99) * 1000, 0


def gateway_puts(etcd):
    tls = threading.local()

    def put(i):
        if not hasattr(tls, "c"):
            tls.c = HTTPConnection("127.0.0.1", etcd.client[i % 3], timeout=10)
        body = json.dumps({"key": base64.b64encode(f"/raw/gw/{i}".encode()).decode(),
                           "value": base64.b64encode(b"x" * 700).decode()})
        tls.c.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
        r = tls.c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(r.status)
    measure(CONC * 4, put)
    return measure(N, put)


def failover(etcd):
    spec = f"etcd://{etcd.endpoints()}/failover"
    servers = [Server("fa", spec), Server("fb", spec)]
    wait_until("a leader", lambda: sum(s.leader() for s in servers) == 1, 30)
    ecs = servers[0].ecs()
    ecs.create_cluster(clusterName="fo")
    SimHosts(servers, "fo", 1)
    td = ecs.register_task_definition(family="fo", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 6}])
    ecs.create_service(cluster="fo", serviceName="s", taskDefinition=td["taskDefinition"]["taskDefinitionArn"], desiredCount=0)
    writes, placements = [], []
    desired = 0
    for run in range(FAILOVERS):
        wait_until("a leader", lambda: sum(s.leader() for s in servers if s.proc.poll() is None) == 1, 30)
        leader = next(s for s in servers if s.leader())
        survivor = next(s for s in servers if s is not leader)
        c = survivor.ecs()
        c.describe_clusters(clusters=["fo"])  # warm connection
        time.sleep(0.5)
        leader.kill()
        killed = time.perf_counter()
        while True:
            try:
                c.register_task_definition(family="fo-write", containerDefinitions=[{"name": "c", "image": "b", "memory": 6}])
                break
            except Exception:
                time.sleep(0.01)
        writes.append(time.perf_counter() - killed)
        desired += 1
        while True:
            try:
                c.update_service(cluster="fo", service="s", desiredCount=desired)
                break
            except Exception:
                time.sleep(0.01)
        while len(c.list_tasks(cluster="fo", serviceName="s")["taskArns"]) < desired:
            time.sleep(0.02)
        placements.append(time.perf_counter() - killed)
        print(f"  failover {run + 1}: first write {writes[-1]:.2f} s, first placement {placements[-1]:.2f} s", flush=True)
        leader.start()
    for s in servers:
        s.stop()
    return writes, placements


def main():
    if not BERTH_BIN.exists():
        raise SystemExit(f"{BERTH_BIN} missing: cargo build --release -p berth")
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing (scripts/test installs etcd-server and etcd-client)")
    print(f"machine: {machine_facts()}; N={N} calls per row, {CONC} concurrent clients; lease {LEASE} s", flush=True)
    etcd = Etcd3()
    rows = []
    try:
        sq = Server("sqlite", "sqlite")
        rows += api_rows("berth, SQLite", sq)
        sq.stop()
        et = Server("etcd", f"etcd://{etcd.endpoints()}/bench")
        rows += api_rows("berth, etcd (3 members)", et)
        et.stop()
        rows.append((f"raw etcd put, HTTP gateway ({CONC} clients)", *gateway_puts(etcd)))
        rows.append(("raw `etcdctl put` loop (1 process per put, sequential)", *etcdctl_loop(etcd, min(N, 200))))
        print(table(["what", "ops/s", "p50 ms", "p99 ms", "errors"],
                    [(w, f"{t:.0f}", f"{p50:.1f}", f"{p99:.1f}", e) for w, t, p50, p99, e in rows]), flush=True)
        writes, placements = failover(etcd)
        print()
        print(table(["after kill -9 of the leader", "p50 s", "max s", "runs"], [
            ("first successful write through the survivor", f"{statistics.median(writes):.2f}", f"{max(writes):.2f}", len(writes)),
            ("first service task placed by the new leader", f"{statistics.median(placements):.2f}", f"{max(placements):.2f}", len(placements)),
        ]))
    finally:
        etcd.stop()
        if not os.environ.get("BENCH_KEEP_DATA"):
            shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
