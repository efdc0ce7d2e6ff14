"""bench/soak: does berth's memory stay flat under sustained API load? (issue 9: "memory stays flat
over a 10-minute soak (no leak)", "no request fails with a 5xx").

One run (release build, `bench/soak.sh`): `berth server` (SQLite, fsync on) populated by
`berth-loadgen populate` with `--instances`/`--tasks` (default 1,000 / 10,000), then for
`--minutes` (default 10) rounds of the read operations (ListClusters, DescribeClusters,
DescribeTaskDefinition, ListTaskDefinitions, DescribeTasks, ListTasks), each driven for
`--op-seconds` at `--concurrency` with SigV4-signed requests, and one write that keeps the data set
the same size (PutAttributes: one of 8 values of one attribute on one of 100 instances, so every
write is a durable commit, a watch-cache update and an attribute-index change). After every round:
control-plane RSS, requests served and errors. The data set (and the memory it needs) is constant:
any growth is a leak in the request path, the write path, the caches or the indexes.

Run: bench/soak.sh [--minutes 10] [--concurrency 8]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api  # noqa: E402
from berthbench import machine_facts, table  # noqa: E402

OPS = ["ListClusters", "DescribeClusters", "DescribeTaskDefinition", "ListTaskDefinitions",
       "DescribeTasks", "ListTasks", "PutAttributes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--op-seconds", type=float, default=5)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000)
    a = ap.parse_args()
    print(f"machine: {machine_facts()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    t = api.berth_target()
    rows = []
    try:
        took = t.populate(a.instances, a.tasks, keepalive=True)
        base = t.rss_mib()
        print(f"populated {a.instances} instances / {a.tasks} tasks in {took:.1f}s; RSS {base:.0f} MiB", flush=True)
        start = time.time()
        total_ok = total_err = 0
        rnd = 0
        while time.time() - start < a.minutes * 60:
            rnd += 1
            ok = err = 0
            r0 = time.time()
            for op in OPS:
                r = t.load(op, a.op_seconds, a.concurrency)
                ok += r["ok"]
                err += max(r["errors"], 0)
            total_ok += ok
            total_err += err
            rss = t.rss_mib()
            rows.append([rnd, f"{(time.time() - start) / 60:.1f}", f"{rss:.0f}", f"{ok / (time.time() - r0):,.0f}", err])
            print(f"round {rnd}: {rows[-1]}", flush=True)
        print(f"\n### Soak: {a.instances} instances / {a.tasks} tasks, {a.minutes:g} minutes, concurrency {a.concurrency}\n")
        print(table(["round", "minutes", "RSS MiB", "req/s", "errors"], rows))
        first = float(rows[0][2]) if rows else base
        last = float(rows[-1][2]) if rows else base
        print(f"\nRSS after populating {base:.0f} MiB; after round 1 {first:.0f} MiB; at the end {last:.0f} MiB "
              f"(growth over the soak {last - first:+.0f} MiB); {total_ok:,} requests, {total_err} errors")
    finally:
        t.close()


if __name__ == "__main__":
    main()
