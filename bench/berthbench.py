"""Shared helpers for berth's real-Docker benchmarks (bench/services.py, bench/task_start.py).

Starts `berth up` (control plane + local agent, release build) on a private data dir with its own
ECS_CLUSTER, gives a boto3 ECS client, removes every container it caused, and formats tables.
"""

import configparser
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BERTH_BIN = Path(os.environ.get("BERTH_BIN", ROOT / "target" / "release" / "berth"))
IMAGE = "berth-test/busybox:latest"
REGION = "us-east-1"


def sh(*args, check=True, timeout=300):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def docker(*args, check=True, timeout=300):
    return sh("docker", *args, check=check, timeout=timeout)


def ensure_image():
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "test-images.sh")], check=True, timeout=600)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_facts():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    dv = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib} RAM, Docker Engine {dv}"


class BerthUp:
    """`berth up` on a private data dir with its own cluster; stopped and cleaned by `close()`."""

    def __init__(self, log_level="info", extra_env=None):
        self.cluster = "bench" + uuid.uuid4().hex[:8]
        self.data_dir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.log_level = log_level
        self.extra_env = dict(extra_env or {})
        self.proc = None

    def start(self):
        if not BERTH_BIN.exists():
            raise SystemExit(f"{BERTH_BIN} missing: cargo build --release -p berth")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "BERTH_"))}
        env.update({"BERTH_LOG": self.log_level, "ECS_CLUSTER": self.cluster, **self.extra_env})
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BERTH_BIN), "up", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), "--allow-reset"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/_berth/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("berth did not become healthy")
        self.ecs = self.client()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]:
                    return self
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("the local agent did not register: " + self.log_path.read_text()[-3000:])

    def client(self):
        import boto3
        from botocore.config import Config

        cp = configparser.ConfigParser()
        cp.read(self.data_dir / "credentials")
        akid, secret = cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"]
        return boto3.client(
            "ecs", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=akid,
            aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def register(self, family, command, memory=16, **container_extra):
        return self.ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "app", "image": IMAGE, "command": command, "essential": True,
                                   "memory": memory, **container_extra}],
        )["taskDefinition"]["taskDefinitionArn"]

    def container_ids(self):
        return docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={self.cluster}", check=False).stdout.split()

    def remove_containers(self):
        ids = self.container_ids()
        if ids:
            docker("rm", "-f", *ids, check=False)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        self.remove_containers()
        nets = docker("network", "ls", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={self.cluster}", check=False).stdout.split()
        if nets:
            docker("network", "rm", *nets, check=False)
        if os.environ.get("BENCH_KEEP_DATA"):
            print(f"(berth data dir kept: {self.data_dir})")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def median(values):
    return statistics.median(values) if values else float("nan")


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)
