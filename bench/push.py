"""HTTP push benchmark: records/s with durable acknowledgement at 1, 8 and 64 concurrent clients.

    python bench/push.py [--quick] [--json]

Starts ``gyre serve`` in a fresh project on 127.0.0.1 and, for each concurrency level, runs
that many keep-alive clients (threads, each its own connection) posting one record per
request to ``POST /v1/datasets/{name}/records`` for a fixed time. Every answer is a durable
acknowledgement (the record is in the push buffer's WAL before the 202). Reports requests/s,
p50 and p99 latency, and, beside them, ``GET /healthz`` on the same server and connections —
the limit of the HTTP stack itself, measured in the same run. At the end it waits for the lake
to hold every acknowledged record and checks the count. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Server, apply_thread_env, child_env, dump_json, free_port, log

DATASET = "bench_push"
LEVELS = (1, 8, 64)


def load(url: str, clients: int, seconds: float, body: Any, *, post: bool) -> dict[str, float]:
    """``clients`` concurrent keep-alive connections hit ``url`` for ``seconds`` (one asyncio loop:
    threads would make the load generator, not the server, the bottleneck at 64 clients)."""
    return asyncio.run(_load(url, clients, seconds, body, post=post))


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
