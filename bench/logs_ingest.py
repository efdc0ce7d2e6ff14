"""CloudWatch Logs ingest and read benchmark: berth against moto_server, in one run.

Workload (same for both targets, all over HTTP with SigV4-signed awsJson requests):
  * PutLogEvents: STREAMS concurrent streams (one client thread each), BATCHES batches per stream
    of EVENTS events of SIZE bytes (default 4 x 25 x 1,000 x 200 B = 100,000 events, 20 MB).
    Requests are built and signed before the clock starts, so the client's Python cost is only
    sending; reported as events/s and MB/s of message bytes, plus per-request p50/p99.
  * GetLogEvents: 1 stream, `startFromHead` page of 100 events at a random point in the stream
    (startTime) — p50/p99 over READS calls.
  * FilterLogEvents: all streams, a term that matches 1 event in 1,000, limit 50, over the whole
    group — p50/p99 over READS calls; and a 1-second time window (`startTime`..`endTime`, inclusive) — p50/p99.

Reference: moto_server (moto[server] from PyPI, installed by bench/logs_ingest.sh into
.cache/bench/moto-venv), the usual local CloudWatch Logs stand-in, measured in the same run.
CloudWatch's own published limits are printed for context (not measured).

Environment: BERTH_BIN (default target/release/berth), MOTO_SERVER (moto_server executable),
BENCH_STREAMS, BENCH_BATCHES, BENCH_EVENTS, BENCH_SIZE, BENCH_READS.
"""

import concurrent.futures
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.credentials

ROOT = Path(__file__).resolve().parents[1]
BERTH_BIN = Path(os.environ.get("BERTH_BIN", ROOT / "target" / "release" / "berth"))
MOTO_SERVER = os.environ.get("MOTO_SERVER", str(ROOT / ".cache" / "bench" / "moto-venv" / "bin" / "moto_server"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "4"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "25"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "1000"))
SIZE = int(os.environ.get("BENCH_SIZE", "200"))
READS = int(os.environ.get("BENCH_READS", "30"))
REGION = "us-east-1"
GROUP = "/bench/ingest"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, log, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited {proc.returncode}: {Path(log).read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


class Target:
    def __init__(self, name, port, akid, secret, proc, tmp):
        self.name, self.port, self.akid, self.secret, self.proc, self.tmp = name, port, akid, secret, proc, tmp
        self.creds = botocore.credentials.Credentials(akid, secret)

    def signed(self, op, body):
        data = json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.port}/"
        req = botocore.awsrequest.AWSRequest(method="POST", url=url, data=data, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Logs_20140328.{op}"})
        botocore.auth.SigV4Auth(self.creds, "logs", REGION).add_auth(req)
        return data, dict(req.headers)

    def call(self, op, body, conn=None):
        data, headers = self.signed(op, body)
        return self.send(data, headers, conn)

    def send(self, data, headers, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.request("POST", "/", body=data, headers=headers)
        r = conn.getresponse()
        out = r.read()
        if own:
            conn.close()
        if r.status != 200:
            raise RuntimeError(f"{self.name}: {headers.get('X-Amz-Target')} -> {r.status} {out[:300]!r}")
        return json.loads(out) if out else {}

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_berth():
    if not BERTH_BIN.exists():
        raise SystemExit(f"{BERTH_BIN} missing: cargo build --release -p berth")
    tmp = tempfile.mkdtemp(prefix="berth-logs-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env["BERTH_LOG"] = "warn"
    log = Path(tmp) / "server.log"
    proc = subprocess.Popen([str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{tmp}/data"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    wait_http(f"http://127.0.0.1:{port}/_berth/health", proc, log)
    import configparser
    cp = configparser.ConfigParser()
    cp.read(f"{tmp}/data/credentials")
    return Target("berth", port, cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"], proc, tmp)


def start_moto():
    if not Path(MOTO_SERVER).exists():
        raise SystemExit(f"{MOTO_SERVER} missing (bench/logs_ingest.sh installs moto[server] into .cache/bench)")
    tmp = tempfile.mkdtemp(prefix="moto-logs-bench-")
    port = free_port()
    log = Path(tmp) / "moto.log"
    proc = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/moto-api/", proc, log)
    return Target("moto_server", port, "testing", "testing", proc, tmp)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run(t):
    t.call("CreateLogGroup", {"logGroupName": GROUP})
    names = [f"web/{i}" for i in range(STREAMS)]
    for n in names:
        t.call("CreateLogStream", {"logGroupName": GROUP, "logStreamName": n})
    t0 = int(time.time() * 1000) - 30 * 60_000
    pad = "x" * SIZE
    # Pre-built, pre-signed requests: event j of batch b at t0 + b*EVENTS + j (ms), chronological.
    plans = []
    for si, n in enumerate(names):
        reqs = []
        for b in range(BATCHES):
            evs = []
            for j in range(EVENTS):
                k = b * EVENTS + j
                head = f"s{si} b{b} e{j} {'NEEDLE' if k % 1000 == 7 else 'hay'} "
                evs.append({"timestamp": t0 + k, "message": (head + pad)[:SIZE]})
            reqs.append(t.signed("PutLogEvents", {"logGroupName": GROUP, "logStreamName": n, "logEvents": evs}))
        plans.append(reqs)

    def push(reqs):
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=300)
        lat = []
        for data, headers in reqs:
            s = time.perf_counter()
            out = t.send(data, headers, conn)
            lat.append(time.perf_counter() - s)
            assert "rejectedLogEventsInfo" not in out, out
        conn.close()
        return lat

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(STREAMS) as ex:
        lats = [x for r in ex.map(push, plans) for x in r]
    elapsed = time.perf_counter() - start
    total = STREAMS * BATCHES * EVENTS
    res = {
        "events_per_s": total / elapsed,
        "mb_per_s": total * SIZE / elapsed / 1e6,
        "put_p50_ms": pct(lats, 50) * 1000,
        "put_p99_ms": pct(lats, 99) * 1000,
        "ingest_s": elapsed,
    }
    # Everything stored?
    out = t.call("GetLogEvents", {"logGroupName": GROUP, "logStreamName": names[0], "startFromHead": True,
                                  "limit": 10, "startTime": t0 + BATCHES * EVENTS - 5})
    assert len(out["events"]) == 5, out

    rng = random.Random(1)
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=300)

    def timed(op, body):
        data, headers = t.signed(op, body)
        s = time.perf_counter()
        out = t.send(data, headers, conn)
        return time.perf_counter() - s, out

    get = []
    for _ in range(READS):
        at = t0 + rng.randrange(BATCHES * EVENTS - 100)
        d, out = timed("GetLogEvents", {"logGroupName": GROUP, "logStreamName": names[rng.randrange(STREAMS)],
                                        "startFromHead": True, "limit": 100, "startTime": at})
        assert len(out["events"]) == 100, len(out["events"])
        get.append(d)
    filt = []
    for _ in range(READS):
        d, out = timed("FilterLogEvents", {"logGroupName": GROUP, "filterPattern": "NEEDLE", "limit": 50})
        assert len(out["events"]) == min(50, STREAMS * BATCHES * EVENTS // 1000) and all("NEEDLE" in e["message"] for e in out["events"]), len(out["events"])
        filt.append(d)
    window = []
    for _ in range(READS):
        at = t0 + rng.randrange(BATCHES * EVENTS - 1000)
        d, out = timed("FilterLogEvents", {"logGroupName": GROUP, "startTime": at, "endTime": at + 999})
        n = len(out["events"])
        assert n == STREAMS * 1000 or out.get("nextToken"), n
        window.append(d)
    conn.close()
    res.update(get_p50_ms=pct(get, 50) * 1000, get_p99_ms=pct(get, 99) * 1000,
               filter_p50_ms=pct(filt, 50) * 1000, filter_p99_ms=pct(filt, 99) * 1000,
               window_p50_ms=pct(window, 50) * 1000, window_p99_ms=pct(window, 99) * 1000)
    return res


def main():
    total = STREAMS * BATCHES * EVENTS
    print(f"# logs ingest: {STREAMS} streams x {BATCHES} batches x {EVENTS} events x {SIZE} B "
          f"= {total:,} events, {total * SIZE / 1e6:.0f} MB; {READS} reads per query; {os.cpu_count()} cores")
    results = {}
    for starter in (start_berth, start_moto):
        t = starter()
        try:
            print(f"... {t.name}", file=sys.stderr, flush=True)
            results[t.name] = run(t)
        finally:
            t.close()
    b, m = results["berth"], results["moto_server"]
    rows = [
        ("PutLogEvents events/s", "events_per_s", "{:,.0f}", True),
        ("PutLogEvents MB/s (message bytes)", "mb_per_s", "{:.1f}", True),
        ("PutLogEvents p50 per 1,000-event batch (ms)", "put_p50_ms", "{:.1f}", False),
        ("PutLogEvents p99 per batch (ms)", "put_p99_ms", "{:.1f}", False),
        ("GetLogEvents p50, 100 events from a time (ms)", "get_p50_ms", "{:.2f}", False),
        ("GetLogEvents p99 (ms)", "get_p99_ms", "{:.2f}", False),
        (f"FilterLogEvents p50, term in 1/1000 of {total:,} events, limit 50 (ms)", "filter_p50_ms", "{:.1f}", False),
        ("FilterLogEvents p99, same (ms)", "filter_p99_ms", "{:.1f}", False),
        ("FilterLogEvents p50, 1-second window, all streams (ms)", "window_p50_ms", "{:.1f}", False),
        ("FilterLogEvents p99, same (ms)", "window_p99_ms", "{:.1f}", False),
    ]
    print()
    print("| metric | berth | moto_server | berth vs moto |")
    print("|---|---:|---:|---:|")
    for label, k, fmt, higher in rows:
        ratio = b[k] / m[k] if higher else m[k] / b[k]
        print(f"| {label} | {fmt.format(b[k])} | {fmt.format(m[k])} | {ratio:.1f}x {'faster' if ratio >= 1 else 'slower'} |")
    print()
    print("CloudWatch Logs' published limits, for context (not measured): PutLogEvents batches of at most "
          "10,000 events and 1,048,576 bytes "
          "(https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html); "
          "PutLogEvents 5,000 TPS per account and Region in the largest Regions, FilterLogEvents 5 TPS "
          "(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html).")


if __name__ == "__main__":
    main()
