"""Issue 8 (first part): two berth control-plane replicas on one etcd. Every replica serves the API
and sees the same state; exactly one leads (runs the service scheduler); when the leader dies the
other takes over within the lease TTL."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import Berth, free_port

ETCD = shutil.which("etcd")
pytestmark = pytest.mark.skipif(ETCD is None and not os.environ.get("CI"), reason="etcd not installed")


@pytest.fixture
def etcd(tmp_path):
    client, peer = free_port(), free_port()
    p = subprocess.Popen(
        [ETCD or "etcd", "--data-dir", str(tmp_path / "etcd"), "--name", "t",
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"t=http://127.0.0.1:{peer}", "--heartbeat-interval", "50", "--election-timeout", "500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
                if json.loads(r.read()).get("health") == "true":
                    break
        except OSError:
            time.sleep(0.1)
    yield f"etcd://127.0.0.1:{client}/ha-test"
    p.terminate()
    p.wait(timeout=10)


def health(b):
    with urllib.request.urlopen(b.endpoint + "/_berth/health", timeout=5) as r:
        return json.loads(r.read())


def leaders(replicas):
    out = []
    for b in replicas:
        try:
            if health(b)["leader"]:
                out.append(b)
        except OSError:
            pass
    return out


def test_two_replicas_share_state_and_fail_over(etcd, tmp_path):
    env = {"BERTH_ROOT_ACCESS_KEY_ID": "AKIAHATESTHATESTHA01", "BERTH_ROOT_SECRET_ACCESS_KEY": "h" * 40}
    a = Berth(tmp_path / "a", extra_args=["--store", etcd], env=env).start()
    b = Berth(tmp_path / "b", extra_args=["--store", etcd], env=env).start()
    try:
        assert health(a)["store"] == "etcd"
        deadline = time.time() + 20
        while time.time() < deadline and len(leaders([a, b])) != 1:
            time.sleep(0.2)
        assert len(leaders([a, b])) == 1, "exactly one replica leads"

        # Writes through one replica are read through the other.
        a.client("ecs").create_cluster(clusterName="shared")
        b.client("ecs").register_task_definition(family="f", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
        assert b.client("ecs").describe_clusters(clusters=["shared"])["clusters"][0]["status"] == "ACTIVE"
        assert a.client("ecs").describe_task_definition(taskDefinition="f")["taskDefinition"]["revision"] == 1
        # Concurrent registrations through both replicas never collide on a revision.
        revs = [x.client("ecs").register_task_definition(family="g", containerDefinitions=[{"name": "c", "image": "b", "memory": 8}])
                ["taskDefinition"]["revision"] for x in (a, b, a, b)]
        assert sorted(revs) == [1, 2, 3, 4]

        # Kill the leader: the other replica takes over within the lease TTL (10 s) and a bit.
        leader = leaders([a, b])[0]
        other = b if leader is a else a
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        deadline = time.time() + 30
        while time.time() < deadline and not health(other)["leader"]:
            time.sleep(0.2)
        assert health(other)["leader"], "no failover"
        assert other.client("ecs").describe_clusters(clusters=["shared"])["clusters"][0]["status"] == "ACTIVE"
    finally:
        a.stop()
        b.stop()
