"""What every request costs before its own work, govflow against the floor app, measured alternately in the same
run: each answers GET /api/v1/noop (a token checked, one hop to a thread, a small JSON answer; govflow's through
its middleware, its routing among every route and its dependencies, bench/overhead_app.py). Against `compare`,
this tells the part of govflow's cost that comes before a route does anything from the part that is the route's
own work (statements, the engine, the audit trail, the outbox)."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import SECRET, Process, alternate, floor, fmt, free_port, median, percentile, token


def overhead_app(data_dir: Path) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update({"GOVFLOW_DATA_DIR": str(data_dir), "GOVFLOW_JWT_SECRET": SECRET})
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return Process("govflow", [sys.executable, "-m", "bench.overhead_app", str(port)], env, port)


def _load(server: Process, clients: int, seconds: float) -> dict[str, Any]:
    bearer = token("li", "data_bureau")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {bearer}"}, timeout=60) as c:
            while time.monotonic() < until:
                started = time.perf_counter()
                r = c.get("/api/v1/noop")
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:120]}")

    cpu_before, started = server.cpu_seconds(), time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu_before
    return {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000, "cpu_ms": cpu / max(1, len(latencies)) * 1000,
            "errors": len(errors), "first_error": errors[0] if errors else None}


def main(seconds: float, repetitions: int, client_counts: list[int]) -> int:
    work = Path(tempfile.mkdtemp(prefix="govflow-bench-"))
    print(f"a request that does nothing, govflow vs the floor app: {repetitions} alternating repetitions of "
          f"{seconds:g} s per measurement, clients {client_counts}, on {os.cpu_count()} cores")
    servers = {"floor": floor(f"sqlite:///{work / 'floor.db'}"), "govflow": overhead_app(work / "data")}
    results, failed = alternate(servers, repetitions, client_counts,
                                lambda _name, server, clients, _rep: _load(server, clients, seconds))
    print(f"\n{'':28}{'floor':>10}{'govflow':>10}{'ratio':>9}")
    for clients in client_counts:
        f, g = results[("floor", clients)], results[("govflow", clients)]
        for label, key, digits in (("req/s", "rps", 1), ("p50 ms", "p50", 2), ("p99 ms", "p99", 2),
                                   ("CPU ms/request", "cpu_ms", 2)):
            fv, gv = median([r[key] for r in f]), median([r[key] for r in g])
            print(f"{f'{clients} client(s), {label}':28}{fmt(fv, digits):>10}{fmt(gv, digits):>10}"
                  f"{fmt(gv / fv, 2):>9}")
    return 1 if failed else 0
