"""Issue 8: berth's control plane as several replicas on etcd, and the fault tests.

* two replicas on one etcd member: shared state, exactly one leader, failover;
* a 3-member etcd cluster, 2 berth servers and 2 `berth agent`s with real Docker, a service of 6:
  - kill -9 the leading server → the other leads within 10 s, agents fail over to it, scaling
    to 8 converges to exactly 8 containers; `berth status` shows replicas, leader and agents;
  - kill -9 one etcd member during a rolling deployment → the deployment completes;
  - cut one agent off (a TCP proxy the test controls sits between it and both servers) past the
    disconnect timeout → agentConnected false, its tasks replaced on the other host; reconnect →
    its stale tasks are stopped, the container count equals the desired count;
* 2 replicas × 50 parallel RunTask calls against a tight cluster → no instance over-committed.
* backup and restore through an etcd snapshot; etcd with TLS (a CA the test makes) and
  authentication (`--etcd-user/--etcd-password`).

Every process listens on 127.0.0.1 (free ports); every wait is bounded."""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from conftest import BERTH_BIN, Berth, free_port

ETCD = shutil.which("etcd")
IMAGE = "berth-test/busybox:latest"
ROOT_ENV = {"BERTH_ROOT_ACCESS_KEY_ID": "AKIAHATESTHATESTHA01", "BERTH_ROOT_SECRET_ACCESS_KEY": "h" * 40}
pytestmark = pytest.mark.skipif(ETCD is None and not os.environ.get("CI"), reason="etcd not installed")


def wait_until(what, pred, timeout, interval=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # a replica or member may be down mid-test: keep polling
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def etcd_healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


class EtcdCluster:
    """n etcd members on 127.0.0.1 (fast elections), each killable."""

    def __init__(self, tmp, n):
        self.tmp = tmp
        self.names = [f"m{i}" for i in range(n)]
        self.client = [free_port() for _ in range(n)]
        self.peer = [free_port() for _ in range(n)]
        self.procs = [None] * n
        initial = ",".join(f"{m}=http://127.0.0.1:{p}" for m, p in zip(self.names, self.peer))
        self.args = [
            [ETCD or "etcd", "--name", m, "--data-dir", str(tmp / f"etcd-{m}"),
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", tmp.name,
             "--heartbeat-interval", "50", "--election-timeout", "500"]
            for m, c, p in zip(self.names, self.client, self.peer)]
        for i in range(n):
            self.start(i)
        for c in self.client:
            wait_until("etcd member healthy", lambda c=c: etcd_healthy(c), 30)

    def start(self, i):
        log = open(self.tmp / f"etcd-{self.names[i]}.log", "ab")
        self.procs[i] = subprocess.Popen(self.args[i], stdout=log, stderr=subprocess.STDOUT)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def spec(self, prefix):
        return "etcd://" + ",".join(f"127.0.0.1:{c}" for c in self.client) + "/" + prefix

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


class Proxy:
    """A TCP proxy between an agent and one server that the test can cut (every connection
    dropped, new ones refused at once) and heal."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cut_off = False
        self.conns = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.cut_off:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.update((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.cut_off = True
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def heal(self):
        self.cut_off = False

    def close(self):
        self.closed = True
        self.cut()
        self.sock.close()


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def docker_ok():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def health(b):
    with urllib.request.urlopen(b.endpoint + "/_berth/health", timeout=5) as r:
        return json.loads(r.read())


def leaders(replicas):
    out = []
    for b in replicas:
        try:
            if b.proc.poll() is None and health(b)["leader"]:
                out.append(b)
        except OSError:
            pass
    return out


def status(b):
    """`berth status --json` against replica b (signed with the admin key)."""
    p = subprocess.run([str(BERTH_BIN), "status", "--json", "--endpoint", b.endpoint], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "AWS_ACCESS_KEY_ID": ROOT_ENV["BERTH_ROOT_ACCESS_KEY_ID"],
                                        "AWS_SECRET_ACCESS_KEY": ROOT_ENV["BERTH_ROOT_SECRET_ACCESS_KEY"]})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class Agent:
    """A real `berth agent` (Docker) with a list of control-plane endpoints."""

    def __init__(self, tmp, name, cluster, endpoints):
        self.dir = tmp / f"agent-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.dir / "agent.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_"))}
        env.update(BERTH_AGENT_ACCESS_KEY_ID=ROOT_ENV["BERTH_ROOT_ACCESS_KEY_ID"],
                   BERTH_AGENT_SECRET_ACCESS_KEY=ROOT_ENV["BERTH_ROOT_SECRET_ACCESS_KEY"],
                   ECS_CONTAINER_STOP_TIMEOUT="2s", ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION="1m",
                   ECS_IMAGE_PULL_BEHAVIOR="prefer-cached", BERTH_LOG="info")
        self.proc = subprocess.Popen(
            [str(BERTH_BIN), "agent", "--config", "/dev/null", "--endpoint", ",".join(endpoints),
             "--data-dir", str(self.dir / "data"), "--cluster", cluster],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def etcd(tmp_path):
    cluster = EtcdCluster(tmp_path, 1)
    yield cluster.spec("ha-test")
    cluster.stop()


def test_two_replicas_share_state_and_fail_over(etcd, tmp_path):
    a = Berth(tmp_path / "a", extra_args=["--store", etcd], env=ROOT_ENV).start()
    b = Berth(tmp_path / "b", extra_args=["--store", etcd], env=ROOT_ENV).start()
    try:
        assert health(a)["store"] == "etcd"
        wait_until("exactly one leader", lambda: len(leaders([a, b])) == 1, 20)

        # Writes through one replica are read through the other.
        a.client("ecs").create_cluster(clusterName="shared")
        b.client("ecs").register_task_definition(family="f", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
        assert b.client("ecs").describe_clusters(clusters=["shared"])["clusters"][0]["status"] == "ACTIVE"
        assert a.client("ecs").describe_task_definition(taskDefinition="f")["taskDefinition"]["revision"] == 1
        # Concurrent registrations through both replicas never collide on a revision.
        revs = [x.client("ecs").register_task_definition(family="g", containerDefinitions=[{"name": "c", "image": "b", "memory": 8}])
                ["taskDefinition"]["revision"] for x in (a, b, a, b)]
        assert sorted(revs) == [1, 2, 3, 4]

        # Both replicas announce themselves; status names the leader and its fencing token.
        st = wait_until("two replicas in status", lambda: (s := status(b)) and len(s["replicas"]) == 2 and s, 15)
        leader = leaders([a, b])[0]
        assert st["leader"]["node"].endswith(f"127.0.0.1:{leader.port}")
        assert st["leader"]["fencingToken"] > 0
        assert st["store"]["healthy"] and st["store"]["backend"] == "etcd"
        metrics = urllib.request.urlopen(leader.endpoint + "/metrics", timeout=5).read().decode()
        assert "berth_is_leader 1" in metrics and "berth_store_operation_duration_seconds_bucket" in metrics

        # Kill the leader: the other replica takes over within the lease (6 s) and a bit.
        other = b if leader is a else a
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        killed = time.time()
        wait_until("failover", lambda: health(other)["leader"], 30)
        assert time.time() - killed < 10
        assert other.client("ecs").describe_clusters(clusters=["shared"])["clusters"][0]["status"] == "ACTIVE"
        # The dead replica's presence expires with its lease.
        wait_until("dead replica gone from status", lambda: len(status(other)["replicas"]) == 1, 20)
    finally:
        a.stop()
        b.stop()


def test_backup_and_restore_with_an_etcd_snapshot(tmp_path):
    """README "Backup and restore": `etcdctl snapshot save` while berth runs; restore into a new
    data dir; berth on the restored etcd has exactly the state at the snapshot (a cluster created
    after it is gone), and revision counters continue from it."""
    cluster = EtcdCluster(tmp_path, 1)
    spec = cluster.spec("backup-test")
    endpoint = f"127.0.0.1:{cluster.client[0]}"
    env = {**os.environ, "ETCDCTL_API": "3"}
    snap = tmp_path / "berth.db"
    b = Berth(tmp_path / "b1", extra_args=["--store", spec], env=ROOT_ENV).start()
    try:
        ecs = b.client("ecs")
        ecs.create_cluster(clusterName="kept")
        for _ in range(2):
            ecs.register_task_definition(family="f", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
        subprocess.run(["etcdctl", "--endpoints", endpoint, "snapshot", "save", str(snap)], env=env, check=True,
                       capture_output=True, timeout=60)
        ecs.create_cluster(clusterName="after-the-snapshot")
    finally:
        b.stop()
        cluster.stop()
    restored = tmp_path / "etcd-restored"
    peer = f"http://127.0.0.1:{cluster.peer[0]}"
    subprocess.run(["etcdctl", "snapshot", "restore", str(snap), "--name", cluster.names[0],
                    "--initial-cluster", f"{cluster.names[0]}={peer}", "--initial-advertise-peer-urls", peer,
                    "--initial-cluster-token", tmp_path.name, "--data-dir", str(restored)],
                   env=env, check=True, capture_output=True, timeout=60)
    args = cluster.args[0]
    args[args.index("--data-dir") + 1] = str(restored)
    cluster.start(0)
    try:
        wait_until("restored etcd healthy", lambda: etcd_healthy(cluster.client[0]), 30)
        b = Berth(tmp_path / "b2", extra_args=["--store", spec], env=ROOT_ENV).start()
        try:
            ecs = b.client("ecs")
            got = ecs.describe_clusters(clusters=["kept", "after-the-snapshot"])
            assert [c["clusterName"] for c in got["clusters"]] == ["kept"]
            assert got["failures"][0]["reason"] == "MISSING"
            assert ecs.describe_task_definition(taskDefinition="f")["taskDefinition"]["revision"] == 2
            new = ecs.register_task_definition(family="f", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
            assert new["taskDefinition"]["revision"] == 3
        finally:
            b.stop()
    finally:
        cluster.stop()


def test_etcd_with_authentication_and_tls(tmp_path):
    """`--etcd-user/--etcd-password` against an etcd with `auth enable`, over `etcds://` with a CA
    this test makes: berth works with the right credentials and CA, and refuses to start without."""
    d = tmp_path / "pki"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=berth-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "1", "-extfile", "san.ext")
    client, peer = free_port(), free_port()
    etcd_proc = subprocess.Popen(
        [ETCD or "etcd", "--name", "s0", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", f"https://127.0.0.1:{client}", "--advertise-client-urls", f"https://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"s0=http://127.0.0.1:{peer}", "--cert-file", str(d / "server.pem"),
         "--key-file", str(d / "server.key")],
        stdout=open(tmp_path / "etcd.log", "ab"), stderr=subprocess.STDOUT)
    env = {**os.environ, "ETCDCTL_API": "3"}
    ctl = ["etcdctl", "--endpoints", f"https://127.0.0.1:{client}", "--cacert", str(d / "ca.pem")]
    try:
        wait_until("etcd (TLS) up", lambda: subprocess.run(ctl + ["endpoint", "health"], env=env,
                                                           capture_output=True).returncode == 0, 30)
        subprocess.run(ctl + ["user", "add", "root:rootpw"], env=env, check=True, capture_output=True)
        subprocess.run(ctl + ["auth", "enable"], env=env, check=True, capture_output=True)
        spec = f"etcds://127.0.0.1:{client}/tls-test?ca={d / 'ca.pem'}"
        b = Berth(tmp_path / "b", extra_args=["--store", spec, "--etcd-user", "root", "--etcd-password", "rootpw"],
                  env=ROOT_ENV).start()
        try:
            assert health(b)["store"] == "etcd"
            b.client("ecs").create_cluster(clusterName="secure")
            assert b.client("ecs").describe_clusters(clusters=["secure"])["clusters"][0]["status"] == "ACTIVE"
            # The state really is in that etcd, under the prefix.
            keys = subprocess.run(ctl + ["--user", "root:rootpw", "get", "--prefix", "--keys-only", ""],
                                  env=env, check=True, capture_output=True, text=True).stdout.split()
            assert any("tls-test" in k and k.endswith("ecs/clusters/secure") for k in keys), keys[:20]
        finally:
            b.stop()
        # Wrong password: berth does not come up.
        bad = subprocess.run([str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                              str(tmp_path / "bad"), "--store", spec, "--etcd-user", "root", "--etcd-password", "nope"],
                             env={**os.environ, **ROOT_ENV}, capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0
    finally:
        etcd_proc.terminate()
        etcd_proc.wait(timeout=10)


# --- the fault tests: 3 etcd members, 2 servers, 2 agents with Docker ---------------------------

SERVICE = "web"
DESIRED = 6


class HA:
    def __init__(self, tmp, proxied_agent=False):
        if docker("image", "inspect", IMAGE, check=False).returncode != 0:
            subprocess.run(["scripts/test-images.sh"], check=True, timeout=600)
        self.tmp = tmp
        self.cluster = "ha" + uuid.uuid4().hex[:8]
        self.etcd = EtcdCluster(tmp, 3)
        spec = self.etcd.spec("berth-" + self.cluster)
        env = {**ROOT_ENV, "BERTH_AGENT_LOST_AFTER": "46"}
        self.servers = [Berth(tmp / n, extra_args=["--store", spec], env=env).start() for n in ("a", "b")]
        a, b = self.servers
        wait_until("one leader", lambda: len(leaders(self.servers)) == 1, 20)
        ecs = self.ecs()
        ecs.create_cluster(clusterName=self.cluster)
        self.proxies = [Proxy(a.port), Proxy(b.port)] if proxied_agent else []
        # Agent 1 lists a first, agent 2 b first: each replica has an agent polling it.
        self.agents = [Agent(tmp, "1", self.cluster, [a.endpoint, b.endpoint])]
        second = [p.endpoint for p in reversed(self.proxies)] if proxied_agent else [b.endpoint, a.endpoint]
        self.agents.append(Agent(tmp, "2", self.cluster, second))
        self.instances = wait_until("both agents registered", lambda: (
            arns := ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]) and len(arns) == 2 and arns, 60)

    def live(self):
        return [s for s in self.servers if s.proc.poll() is None]

    def ecs(self):
        return self.live()[0].client("ecs")

    def register(self, command="3600"):
        return self.ecs().register_task_definition(family="ha-sleep", containerDefinitions=[
            {"name": "sleep", "image": IMAGE, "command": ["sleep", command], "essential": True, "memory": 16}])["taskDefinition"]

    def containers(self):
        out = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={self.cluster}").stdout.split()
        return len(out)

    def service(self):
        return self.ecs().describe_services(cluster=self.cluster, services=[SERVICE])["services"][0]

    def running_tasks(self):
        ecs = self.ecs()
        arns = ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return []
        return [t for t in ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"] if t["lastStatus"] == "RUNNING"]

    def steady(self, n, td_arn=None):
        """runningCount n, one deployment, n RUNNING tasks (of td_arn), exactly n containers."""
        s = self.service()
        tasks = self.running_tasks()
        return (s["runningCount"] == n and len(s["deployments"]) == 1 and len(tasks) == n
                and (td_arn is None or all(t["taskDefinitionArn"] == td_arn for t in tasks))
                and self.containers() == n)

    def stop(self):
        for a in self.agents:
            a.stop()
        for s in self.servers:
            s.stop()
        for p in self.proxies:
            p.close()
        self.etcd.stop()
        ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={self.cluster}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        nets = docker("network", "ls", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={self.cluster}", check=False).stdout.split()
        if nets:
            docker("network", "rm", *nets, check=False)


def with_service(ha):
    # Replicas learn of agents polling the other replica from its heartbeat (every 3 s): wait until
    # both see both agents, so the service spreads over the two hosts.
    wait_until("both replicas see both agents", lambda: all(
        sum(a["agentConnected"] for a in status(s)["agents"]) == 2 for s in ha.servers), 20)
    td = ha.register()
    ha.ecs().create_service(cluster=ha.cluster, serviceName=SERVICE, taskDefinition=td["taskDefinitionArn"],
                            desiredCount=DESIRED,
                            deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50})
    wait_until(f"{DESIRED} tasks steady", lambda: ha.steady(DESIRED), 120, interval=0.5)
    return td


needs_docker = pytest.mark.skipif(not docker_ok(), reason="Docker engine not reachable")


@needs_docker
def test_leader_kill_failover_then_scale_exactly(tmp_path):
    ha = HA(tmp_path)
    try:
        with_service(ha)
        st = wait_until("status: 2 replicas, 2 agents connected", lambda: (s := status(ha.servers[1])) and len(s["replicas"]) == 2
                        and sum(a["agentConnected"] for a in s["agents"]) == 2 and s, 20)
        assert sum(r["leader"] for r in st["replicas"]) == 1
        leader = leaders(ha.servers)[0]
        other = next(s for s in ha.servers if s is not leader)

        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        killed = time.time()
        wait_until("the other replica leads", lambda: health(other)["leader"], 15, interval=0.1)
        took = time.time() - killed
        print(f"failover took {took:.2f}s")
        assert took < 10, f"failover took {took:.1f}s"

        # Both agents fail over to the survivor (one had the dead replica first in its list).
        def agents_on_survivor():
            s = status(other)
            return len(s["replicas"]) == 1 and all(a["agentConnected"] for a in s["agents"]) and len(s["agents"]) == 2
        wait_until("both agents connected to the survivor", agents_on_survivor, 60, interval=0.5)

        other.client("ecs").update_service(cluster=ha.cluster, service=SERVICE, desiredCount=8)
        wait_until("8 tasks steady", lambda: ha.steady(8), 120, interval=0.5)
        # …and it stays exactly 8 (no duplicate from the old leader, no late start).
        time.sleep(3)
        assert ha.steady(8)
        assert ha.containers() == 8
    finally:
        ha.stop()


@needs_docker
def test_etcd_member_killed_during_rolling_deployment(tmp_path):
    ha = HA(tmp_path)
    try:
        with_service(ha)
        td2 = ha.register(command="3601")
        ha.ecs().update_service(cluster=ha.cluster, service=SERVICE, taskDefinition=td2["taskDefinitionArn"])
        # Let the rollout start, then kill an etcd member (possibly etcd's leader).
        wait_until("rollout started", lambda: len(ha.service()["deployments"]) == 2, 30)
        time.sleep(1)
        ha.etcd.kill(0)
        wait_until("deployment completed on the new revision",
                   lambda: ha.steady(DESIRED, td2["taskDefinitionArn"])
                   and ha.service()["deployments"][0]["rolloutState"] == "COMPLETED", 180, interval=0.5)
        assert ha.containers() == DESIRED
    finally:
        ha.stop()


@needs_docker
def test_partitioned_agent_tasks_replaced_then_stale_ones_stopped(tmp_path):
    ha = HA(tmp_path, proxied_agent=True)
    try:
        with_service(ha)
        ecs = ha.ecs()
        insts = ecs.describe_container_instances(cluster=ha.cluster, containerInstances=ha.instances)["containerInstances"]
        on = {i["containerInstanceArn"]: i["runningTasksCount"] for i in insts}
        assert sum(on.values()) == DESIRED and all(v > 0 for v in on.values()), on
        for p in ha.proxies:
            p.cut()
        cut_at = time.time()

        def cut_instance():
            got = ha.ecs().describe_container_instances(cluster=ha.cluster, containerInstances=ha.instances)["containerInstances"]
            down = [i for i in got if not i["agentConnected"]]
            return len(down) == 1 and down[0]
        down = wait_until("agentConnected false for the cut-off agent", cut_instance, 90, interval=1)
        print(f"agent disconnected after {time.time() - cut_at:.1f}s")
        down_arn = down["containerInstanceArn"]
        up_arn = next(a for a in ha.instances if a != down_arn)

        def replaced():
            tasks = ha.running_tasks()
            return len(tasks) == DESIRED and all(t["containerInstanceArn"] == up_arn for t in tasks)
        wait_until("its tasks replaced on the other host", replaced, 120, interval=1)
        # While cut off, the stale containers are still running on the partitioned host.
        assert ha.containers() == DESIRED + on[down_arn]

        for p in ha.proxies:
            p.heal()
        wait_until("the agent reconnects", lambda: all(
            i["agentConnected"] for i in ha.ecs().describe_container_instances(
                cluster=ha.cluster, containerInstances=ha.instances)["containerInstances"]), 90, interval=1)
        wait_until("stale containers stopped: exactly the desired count", lambda: ha.steady(DESIRED), 90, interval=1)
        time.sleep(3)
        assert ha.containers() == DESIRED
    finally:
        ha.stop()


def test_parallel_run_task_through_two_replicas_never_overcommits(tmp_path):
    etcd = EtcdCluster(tmp_path, 3)
    servers = [Berth(tmp_path / n, extra_args=["--store", etcd.spec("overcommit")], env=ROOT_ENV).start() for n in ("a", "b")]
    try:
        a, b = servers
        cluster = "tight"
        a.client("ecs").create_cluster(clusterName=cluster)
        mem = 512
        arns = []
        for s, az in ((a, "az1"), (b, "az2")):  # simulated hosts (no containers run): 2 × 512 MiB
            arns.append(s.client("ecs").register_container_instance(
                cluster=cluster, instanceIdentityDocument=json.dumps({"availabilityZone": az, "instanceType": "sim"}),
                totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                                {"name": "MEMORY", "type": "INTEGER", "integerValue": mem}])["containerInstance"]["containerInstanceArn"])
        # Each replica learns the other's agent connectivity from its heartbeat.
        wait_until("both instances connected on both replicas", lambda: all(
            all(i["agentConnected"] for i in s.client("ecs").describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"])
            for s in servers), 15)
        a.client("ecs").register_task_definition(family="m64", containerDefinitions=[{"name": "c", "image": IMAGE, "memory": 64}])
        clients = [s.client("ecs") for s in servers]

        def run(i):
            return clients[i % 2].run_task(cluster=cluster, taskDefinition="m64", count=1)
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(run, range(100)))
        placed = [t for r in results for t in r["tasks"]]
        failures = [f for r in results for f in r["failures"]]
        assert len(placed) + len(failures) == 100
        assert all(f["reason"] == "RESOURCE:MEMORY" for f in failures), failures[:3]
        assert len(placed) == 2 * mem // 64, f"{len(placed)} placed"
        insts = a.client("ecs").describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
        for inst in insts:
            on_it = [t for t in placed if t["containerInstanceArn"] == inst["containerInstanceArn"]]
            remaining = next(r["integerValue"] for r in inst["remainingResources"] if r["name"] == "MEMORY")
            assert 64 * len(on_it) <= mem
            assert remaining == mem - 64 * len(on_it), (remaining, len(on_it))
    finally:
        for s in servers:
            s.stop()
        etcd.stop()
