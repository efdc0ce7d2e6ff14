"""bench/fleet: a simulated 5,000-instance fleet against a real `berth server` (issue 9).

One run (release build, `bench/fleet.sh`):
1. `berth server` on a private data dir (SQLite, fsync on), an `agent` key, cluster `fleet`.
2. `berth sim --instances N --azs 3 --start-latency 200ms --fail-rate 0.01 --cpu 2048 --memory 4096`
   in a second process: N container instances, each the real agent on a fake engine, one shared
   HTTP client. Time until DescribeClusters shows N registered instances.
3. Services: 10 services × (TASKS/10) replicas of a 128 CPU / 256 MiB task, created back to back;
   time until every service shows runningCount = desiredCount (1 % of starts fail and are
   replaced by the scheduler). Launch rate per service against ECS's published 500 tasks/min/service.
   Then the services are scaled to 0 and deleted, and the bench waits until no task is left.
4. RunTask: TASKS tasks as RunTask calls of count 10 (4 client threads); time until the cluster has
   no PENDING task (failed starts end STOPPED and are not retried, as in ECS); RunTask latency.
5. Control-plane RSS (current and peak) and CPU seconds per phase, and the simulator's CPU.

Environment: FLEET_INSTANCES (5000), FLEET_TASKS (50000), FLEET_SERVICES (10),
FLEET_THREADS (4), FLEET_TIMEOUT (seconds per phase, 900).
"""

import concurrent.futures
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from berthbench import BERTH_BIN, REGION, free_port, machine_facts, pct, table  # noqa: E402

INSTANCES = int(os.environ.get("FLEET_INSTANCES", "5000"))
TASKS = int(os.environ.get("FLEET_TASKS", "50000"))
SERVICES = int(os.environ.get("FLEET_SERVICES", "10"))
THREADS = int(os.environ.get("FLEET_THREADS", "4"))
TIMEOUT = float(os.environ.get("FLEET_TIMEOUT", "900"))
CLUSTER = "fleet"
ECS_RATE = 500  # tasks per minute per service, ECS's published service launch rate
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """user+system CPU seconds of `pid`."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def proc_mem(pid):
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


class Server:
    def __init__(self):
        self.data = Path(tempfile.mkdtemp(prefix="berth-fleet-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "BERTH_"))}
        env["BERTH_LOG"] = os.environ.get("FLEET_SERVER_LOG", "warn")
        self.log = open(self.data / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/_berth/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("berth server did not become healthy")
        cp = configparser.ConfigParser()
        cp.read(self.data / "credentials")
        self.key = (cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"])

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("ecs", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key[0],
                            aws_secret_access_key=self.key[1],
                            config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=120,
                                          max_pool_connections=THREADS + 2))

    def agent_key(self):
        env = dict(os.environ, BERTH_ENDPOINT=self.endpoint, AWS_ACCESS_KEY_ID=self.key[0],
                   AWS_SECRET_ACCESS_KEY=self.key[1])
        import json

        out = subprocess.run([str(BERTH_BIN), "keys", "create", "--role", "agent"], env=env, capture_output=True,
                             text=True, check=True, timeout=30).stdout
        k = json.loads(out)["accessKey"]
        return k["accessKeyId"], k["secretAccessKey"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if os.environ.get("BENCH_KEEP_DATA"):
            print(f"(data dir kept: {self.data})")
        else:
            shutil.rmtree(self.data, ignore_errors=True)


class Sim:
    def __init__(self, server, key):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "BERTH_"))}
        env.update(BERTH_AGENT_ACCESS_KEY_ID=key[0], BERTH_AGENT_SECRET_ACCESS_KEY=key[1],
                   BERTH_LOG=os.environ.get("FLEET_SIM_LOG", "warn"))
        self.out = open(server.data / "sim.out", "ab")
        self.cmd = [str(BERTH_BIN), "sim", "--endpoint", server.endpoint, "--cluster", CLUSTER,
                    "--instances", str(INSTANCES), "--azs", "3", "--start-latency", "200ms", "--fail-rate", "0.01",
                    "--cpu", "2048", "--memory", "4096", "--report-every", "5s", "--for", f"{int(TIMEOUT * 4)}s"]
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def cluster(ecs):
    return ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]


def until(what, pred, every=1.0):
    t0 = time.time()
    while time.time() - t0 < TIMEOUT:
        v = pred()
        if v:
            return time.time() - t0, v
        time.sleep(every)
    raise SystemExit(f"timed out after {TIMEOUT:.0f} s waiting for {what}")


class Meter:
    """CPU seconds and memory of the server and the simulator over one phase."""

    def __init__(self, server, sim):
        self.pids = {"server": server.proc.pid, "sim": sim.proc.pid}
        self.cpu0 = {k: proc_cpu(p) for k, p in self.pids.items()}
        self.t0 = time.time()
        self.peak_rss = 0.0
        self.stop = threading.Event()
        self.th = threading.Thread(target=self._sample, daemon=True)
        self.th.start()

    def _sample(self):
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, proc_mem(self.pids["server"])[0])
            self.stop.wait(0.5)

    def done(self):
        self.stop.set()
        self.th.join()
        wall = time.time() - self.t0
        cpu = {k: proc_cpu(p) - self.cpu0[k] for k, p in self.pids.items()}
        rss, hwm = proc_mem(self.pids["server"])
        self.peak_rss = max(self.peak_rss, rss)
        return {"wall": wall, "server_cpu": cpu["server"], "sim_cpu": cpu["sim"], "rss": rss, "peak_rss": self.peak_rss,
                "hwm": hwm}


def main():
    if not BERTH_BIN.exists():
        raise SystemExit(f"{BERTH_BIN} missing: cargo build --release -p berth")
    print(f"fleet bench: {INSTANCES} instances, {TASKS} tasks, {SERVICES} services; {machine_facts()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    server = Server()
    sim = None
    rows = []
    try:
        try:
            ecs = server.client()
            ecs.create_cluster(clusterName=CLUSTER)
            td = ecs.register_task_definition(
                family="fleetapp", containerDefinitions=[{"name": "app", "image": "sim/app:1", "cpu": 128,
                                                           "memory": 256, "essential": True}])["taskDefinition"]
            td_arn = td["taskDefinitionArn"]
            key = server.agent_key()

            # 1. Registration.
            sim = Sim(server, key)
            m = Meter(server, sim)
            t_reg, _ = until("registration", lambda: cluster(ecs)["registeredContainerInstancesCount"] >= INSTANCES)
            r = m.done()
            print(f"registered {INSTANCES} instances in {t_reg:.1f} s")
            rows.append(("register instances", INSTANCES, t_reg, INSTANCES / t_reg, r))
            idle = Meter(server, sim)
            time.sleep(10)
            r = idle.done()
            rows.append(("idle (held polls)", 0, 10.0, 0, r))

            # 2. Services.
            per = TASKS // SERVICES
            names = [f"svc{i:02d}" for i in range(SERVICES)]
            m = Meter(server, sim)
            t0 = time.time()
            for n in names:
                ecs.create_service(cluster=CLUSTER, serviceName=n, taskDefinition=td_arn, desiredCount=per)
            created = time.time() - t0

            def all_running():
                done = 0
                for i in range(0, len(names), 10):
                    for s in ecs.describe_services(cluster=CLUSTER, services=names[i:i + 10])["services"]:
                        done += s["runningCount"] >= s["desiredCount"] and len(s["deployments"]) == 1
                return done == len(names)

            t_svc, _ = until("services", all_running, every=2.0)
            r = m.done()
            print(f"{SERVICES} services x {per}: all running in {t_svc:.1f} s (CreateService calls took {created:.2f} s)")
            rows.append(("services: place + run", per * SERVICES, t_svc, per * SERVICES / t_svc, r))
            svc_rate_per_min = per / (t_svc / 60)

            m = Meter(server, sim)
            for n in names:
                ecs.update_service(cluster=CLUSTER, service=n, desiredCount=0)
            t_drain, _ = until("services to drain", lambda: cluster(ecs)["runningTasksCount"] + cluster(ecs)["pendingTasksCount"] == 0, every=2.0)
            for n in names:
                ecs.delete_service(cluster=CLUSTER, service=n)
            r = m.done()
            rows.append(("services: scale to 0", per * SERVICES, t_drain, per * SERVICES / t_drain, r))

            # 3. RunTask count 10.
            calls = TASKS // 10
            lat = []
            failures = [0]
            lock = threading.Lock()
            local = threading.local()

            def run_one(_):
                c = getattr(local, "c", None)
                if c is None:
                    c = local.c = server.client()
                t = time.perf_counter()
                out = c.run_task(cluster=CLUSTER, taskDefinition=td_arn, count=10)
                d = time.perf_counter() - t
                with lock:
                    lat.append(d)
                    failures[0] += len(out.get("failures", []))

            m = Meter(server, sim)
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
                list(ex.map(run_one, range(calls)))
            t_calls = time.time() - t0

            def settled():
                c = cluster(ecs)
                return c["pendingTasksCount"] == 0 and c

            t_settle, c = until("RunTask tasks to start", settled, every=2.0)
            t_run = t_calls + t_settle
            r = m.done()
            print(f"RunTask x{calls} (count 10, {THREADS} threads): calls {t_calls:.1f} s, all started {t_run:.1f} s, "
                  f"running {c['runningTasksCount']}, placement failures {failures[0]}")
            rows.append(("RunTask count 10: place + run", TASKS, t_run, TASKS / t_run, r))
        except SystemExit as e:
            print(e)
        print()
        print(table(["phase", "tasks", "wall s", "tasks/s", "server CPU s", "sim CPU s", "server RSS MiB (end / peak)"],
                    [(p, n, f"{w:.1f}", f"{rate:.0f}" if rate else "—", f"{x['server_cpu']:.1f}", f"{x['sim_cpu']:.1f}",
                      f"{x['rss']:.0f} / {x['peak_rss']:.0f}") for p, n, w, rate, x in rows]))
        if len(rows) < 5:
            print(f"(incomplete: a phase did not finish within FLEET_TIMEOUT={TIMEOUT:.0f} s)")
        if len(rows) == 5:
            print()
            print(table(["what", "berth", "reference", "ratio"], [
                ("service launch rate, tasks/min/service", f"{svc_rate_per_min:.0f}", f"{ECS_RATE} (ECS, published)",
                 f"{svc_rate_per_min / ECS_RATE:.1f}×"),
                ("RunTask (count 10) p50 / p99 ms", f"{pct(lat, 50) * 1000:.0f} / {pct(lat, 99) * 1000:.0f}", "—", ""),
                ("RunTask calls/s", f"{calls / t_calls:.0f}", "40 (ECS's RunTask rate limit)", f"{calls / t_calls / 40:.1f}×"),
            ]))
            print(f"\nserver peak RSS (VmHWM) {proc_mem(server.proc.pid)[1]:.0f} MiB; load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        if sim:
            sim.close()
            tail = (server.data / "sim.out").read_text().splitlines()[-3:]
            print("sim:", *tail, sep="\n  ")
        server.close()


if __name__ == "__main__":
    main()
