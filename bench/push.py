"""HTTP push benchmark: records/s with durable acknowledgement at 1, 8 and 64 concurrent clients.

    python bench/push.py [--quick] [--json]

Starts ``gyre serve`` in a fresh project on 127.0.0.1 and, for each concurrency level, runs
that many keep-alive connections (from ``wrk`` when installed) posting one record per
request to ``POST /v1/datasets/{name}/records`` for a fixed time. Every answer is a durable
acknowledgement (the record is in the push buffer's segment file before the 202). Reports requests/s,
p50 and p99 latency, and, beside them, ``GET /healthz`` on the same server and connections —
the limit of the HTTP stack itself, measured in the same run. At the end it waits for the lake
to hold every acknowledged record and checks the count. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Server, apply_thread_env, child_env, dump_json, free_port, log

DATASET = "bench_push"
LEVELS = (1, 8, 64)


def load(url: str, clients: int, seconds: float, body: Any, *, post: bool) -> dict[str, float]:
    """``clients`` concurrent keep-alive connections hit ``url`` for ``seconds``.

    With ``wrk`` installed (Debian package ``wrk``) the load comes from it, in its own
    process: a Python client at 64 connections measures itself more than the server (httpx's
    pool collapsed to ~190 req/s against a server that answers thousands). Otherwise one
    asyncio loop with httpx.
    """
    if shutil.which("wrk"):
        return _wrk(url, clients, seconds, body, post=post)
    return asyncio.run(_load(url, clients, seconds, body, post=post))


WRK_SCRIPT = """
local counter = 0
local prefix = 0
function setup(thread)
  prefix = prefix + 1
  thread:set("prefix", prefix)
end
function request()
  counter = counter + 1
  local body = string.format(BODY_FORMAT, prefix * 100000000 + counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def _wrk(url: str, clients: int, seconds: float, body: Any, *, post: bool) -> dict[str, float]:
    threads = min(clients, 2)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{max(seconds, 1):.0f}s",
        "--latency",
        "--timeout",
        "30s",
    ]
    with tempfile.TemporaryDirectory(prefix="gyre-wrk-") as tmp:
        if post:
            template = json.dumps([{**body, "id": 0}]).replace('"id": 0', '"id": %d').replace("%", "%%")
            template = template.replace("%%d", "%d")
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT.replace("BODY_FORMAT", json.dumps(template)))
            argv += ["-s", str(script)]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if failed:
        raise RuntimeError(f"{url}: {failed.group(1)} of {total} requests failed\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests": total, "rate": rate, "p50_ms": _pct(out, "50%"), "p99_ms": _pct(out, "99%")}


def _pct(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def _load(url: str, clients: int, seconds: float, body: Any, *, post: bool) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                n += 1
                t0 = time.perf_counter()
                if post:
                    r = await http.post(url, json=[{**body, "id": w * 10_000_000 + n}])
                else:
                    r = await http.get(url)
                if r.status_code >= 300:
                    raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:200]}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "rate": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
    }


def lake_rows(project: Path) -> int:
    from gyre.data.lake import Lake

    lake = Lake(f"file://{project / '.gyre' / 'store'}")
    return lake.read(DATASET, columns=["id"]).num_rows if lake.exists(DATASET) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per level instead of 8 s")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = parser.parse_args()
    apply_thread_env()
    seconds = 2.0 if args.quick else 8.0
    record = {"id": 0, "user_id": 42, "amount": 129.5, "merchant_id": "m-7"}
    results: dict[str, Any] = {"seconds_per_level": seconds, "levels": {}}
    with tempfile.TemporaryDirectory(prefix="gyre-bench-push-") as tmp:
        project = Path(tmp)
        (project / "gyre.toml").write_text('[project]\nname = "bench"\n')
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "gyre.cli.main", "serve", "--port", str(port)]
        with Server("gyre serve", argv, cwd=project, health_url=f"{base}/readyz", env=child_env()):
            push_url = f"{base}/v1/datasets/{DATASET}/records"
            warmup = load(push_url, 1, 0.5, record, post=True)  # creates the dataset
            for clients in LEVELS:
                log(f"  {clients} client(s) ...")
                push = load(push_url, clients, seconds, record, post=True)
                health = load(f"{base}/healthz", clients, seconds / 2, None, post=False)
                results["levels"][clients] = {"push": push, "healthz": health}
            acked = int(warmup["requests"]) + sum(
                int(v["push"]["requests"]) for v in results["levels"].values()
            )
            deadline = time.monotonic() + 60
            while (stored := lake_rows(project)) < acked and time.monotonic() < deadline:
                time.sleep(0.5)
            results["acknowledged"], results["stored"] = acked, stored
    if args.json:
        print(dump_json(results))
        return 0
    print(f"\nHTTP push, one record per request, durable acknowledgement ({seconds:.0f} s per level)\n")
    print("| clients | push req/s | p50 | p99 | GET /healthz req/s (same run) | push/healthz |")
    print("|---|---|---|---|---|---|")
    for clients, v in results["levels"].items():
        p, h = v["push"], v["healthz"]
        print(
            f"| {clients} | {p['rate']:,.0f} | {p['p50_ms']:.2f} ms | {p['p99_ms']:.2f} ms | "
            f"{h['rate']:,.0f} | {p['rate'] / h['rate']:.2f}x |"
        )
    print(
        f"\nacknowledged {results['acknowledged']:,} records; in the lake afterwards: {results['stored']:,}"
    )
    return 0 if results["stored"] >= results["acknowledged"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
