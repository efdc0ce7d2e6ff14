"""Registry push/pull benchmark: berth vs the CNCF distribution registry, same machine, same run.

For each repetition a fresh image is built: berth-test/busybox plus LAYERS layers of random
(incompressible) bytes, ~100 MB in all, so every push uploads every new layer (no "layer already
exists", no cross-repository mount). The image is pushed with `docker push` to both registries
(the order alternates between repetitions), then removed from the engine and pulled back with
`docker pull` from each registry in turn (removed again before each pull). Both registries run on
127.0.0.1 over plain HTTP with their storage in a temporary directory on the same disk: berth as
`berth server` (release build; ECR login via GetAuthorizationToken), distribution as Debian's
`docker-registry serve` with filesystem storage and no auth. Prints a Markdown table (seconds,
min / median over the repetitions) and the berth/distribution ratios.

Usage: bench/registry.sh [--reps N] [--layers N] [--layer-mb N]
"""

import argparse
import base64
import configparser
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BERTH_BIN = Path(os.environ.get("BERTH_BIN", ROOT / "target" / "release" / "berth"))
BASE = "berth-test/busybox:latest"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, env=None, input=None, timeout=1200):
    p = subprocess.run(list(args), capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {p.stderr[-2000:]}")
    return p.stdout


def wait_http(url, ok=(200, 401), timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status in ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=25)
    args = ap.parse_args()
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "test-images.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="berth-registry-bench-"))
    procs = []
    made = set()
    bport = None
    docker_env = {**os.environ, "DOCKER_CONFIG": str(work / "docker")}
    (work / "docker").mkdir()
    try:
        # berth
        bport = free_port()
        bdata = work / "berth"
        procs.append(subprocess.Popen(
            [str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{bport}", "--data-dir", str(bdata)],
            stdout=open(work / "berth.log", "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "BERTH_LOG": "warn"}))
        wait_http(f"http://127.0.0.1:{bport}/_berth/health", ok=(200,))
        cp = configparser.ConfigParser()
        cp.read(bdata / "credentials")
        import boto3
        ecr = boto3.client("ecr", endpoint_url=f"http://127.0.0.1:{bport}", region_name="us-east-1",
                           aws_access_key_id=cp["berth"]["aws_access_key_id"],
                           aws_secret_access_key=cp["berth"]["aws_secret_access_key"])
        ecr.create_repository(repositoryName="bench")
        token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
        run("docker", "login", "--username", "AWS", "--password-stdin", f"127.0.0.1:{bport}",
            env=docker_env, input=token.split(":", 1)[1])

        # distribution
        dport = free_port()
        (work / "dist").mkdir()
        (work / "dist.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {work / 'dist'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{dport}\n")
        procs.append(subprocess.Popen(["docker-registry", "serve", str(work / "dist.yml")],
                                      stdout=open(work / "dist.log", "wb"), stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{dport}/v2/")
        version = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.strip()

        targets = {"berth": f"127.0.0.1:{bport}/bench", "distribution": f"127.0.0.1:{dport}/bench"}
        times = {(t, op): [] for t in targets for op in ("push", "pull")}
        size_mb = None
        for rep in range(args.reps):
            ctx = work / f"ctx{rep}"
            ctx.mkdir()
            lines = [f"FROM {BASE}"]
            for i in range(args.layers):
                (ctx / f"l{i}").write_bytes(os.urandom(args.layer_mb * 1024 * 1024))
                lines.append(f"COPY l{i} /data/l{i}")
            (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
            local = f"berth-bench/registry:{uuid.uuid4().hex[:8]}"
            run("docker", "build", "-q", "-t", local, str(ctx), env=docker_env)
            made.add(local)
            shutil.rmtree(ctx)
            if size_mb is None:
                size_mb = int(run("docker", "image", "inspect", "-f", "{{.Size}}", local).strip()) / 1e6
            tag = f"r{rep}"
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for t in order:
                ref = f"{targets[t]}:{tag}"
                run("docker", "tag", local, ref, env=docker_env)
                made.add(ref)
                start = time.perf_counter()
                run("docker", "push", ref, env=docker_env)
                times[(t, "push")].append(time.perf_counter() - start)
            for t in order:
                ref = f"{targets[t]}:{tag}"
                for r in [local, *(f"{targets[x]}:{tag}" for x in targets)]:
                    subprocess.run(["docker", "rmi", r], capture_output=True, env=docker_env)
                start = time.perf_counter()
                run("docker", "pull", ref, env=docker_env)
                times[(t, "pull")].append(time.perf_counter() - start)
            for r in [local, *(f"{targets[x]}:{tag}" for x in targets)]:
                subprocess.run(["docker", "rmi", r], capture_output=True, env=docker_env)
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{t} {op} {times[(t, op)][-1]:.2f}s" for (t, op) in times),
                  file=sys.stderr)

        def cell(xs):
            return f"{min(xs):.2f} / {statistics.median(xs):.2f}"

        print(f"\nImage: {BASE} + {args.layers} layers × {args.layer_mb} MiB random = {size_mb:.0f} MB; "
              f"{args.reps} repetitions; reference: {version or 'docker-registry'}\n")
        print("| operation | berth (s, min / median) | distribution (s, min / median) | berth / distribution (median) |")
        print("|---|---:|---:|---:|")
        for op in ("push", "pull"):
            b, d = times[("berth", op)], times[("distribution", op)]
            print(f"| docker {op} | {cell(b)} | {cell(d)} | {statistics.median(b) / statistics.median(d):.2f}× |")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for r in made:
            subprocess.run(["docker", "rmi", r], capture_output=True)
        if bport:
            subprocess.run(["docker", "logout", f"127.0.0.1:{bport}"], capture_output=True, env=docker_env)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
