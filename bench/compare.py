"""govflow's REST cycle against the floor app, measured alternately in the same run.

A cycle is what an OA system and two reviewers do with one project of a two-step approval: start, then twice
inbox → claim → complete (7 requests). Clients run cycles for a fixed time; each measurement reports requests per
second, p50/p99 per request type and server CPU per request; the table gives govflow/floor ratios of the medians
over the repetitions.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Process, alternate, floor, fmt, govflow, median, percentile, reset_postgres, token

TYPES = ("start", "inbox", "claim", "complete")


class Load:
    def __init__(self, server: Process, clients: int, seconds: float, prefix: str) -> None:
        self.server, self.clients, self.seconds, self.prefix = server, clients, seconds, prefix
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.tokens = {"applicant": token("oa", "applicant"), "data_bureau": token("li", "data_bureau"),
                       "development_reform": token("wang", "development_reform")}

    def _call(self, client: httpx.Client, kind: str, method: str, path: str, bearer: str, **kw: Any) -> Any:
        started = time.perf_counter()
        r = client.request(method, path, headers={"Authorization": f"Bearer {bearer}"}, **kw)
        took = time.perf_counter() - started
        with self.lock:
            self.latencies[kind].append(took)
            self.requests += 1
            if r.status_code >= 300:
                self.errors.append(f"{kind} {r.status_code} {r.text[:120]}")
        return r.json() if r.status_code < 300 else None

    def _client(self, number: int, until: float) -> None:
        with httpx.Client(base_url=self.server.url + "/api/v1", timeout=60) as client:
            for n in itertools.count():
                if time.monotonic() > until:
                    return
                key = f"{self.prefix}-{number}-{n}"
                self._call(client, "start", "POST", "/process-instances", self.tokens["applicant"],
                           json={"process_key": "approval", "business_key": key, "variables": {}})
                for group in ("data_bureau", "development_reform"):
                    page = self._call(client, "inbox", "GET", "/tasks", self.tokens[group],
                                      params={"candidate_group": group, "business_key": key})
                    if not page or not page["items"]:
                        break
                    task_id = page["items"][0]["id"]
                    self._call(client, "claim", "POST", f"/tasks/{task_id}/claim", self.tokens[group])
                    self._call(client, "complete", "POST", f"/tasks/{task_id}/complete", self.tokens[group],
                               json={"variables": {"decision": "pass"}})

    def run(self) -> dict[str, Any]:
        cpu_before = self.server.cpu_seconds()
        started = time.monotonic()
        until = started + self.seconds
        threads = [threading.Thread(target=self._client, args=(i, until)) for i in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        cpu = self.server.cpu_seconds() - cpu_before
        return {
            "rps": self.requests / elapsed,
            "p50": {k: percentile(v, 0.5) * 1000 for k, v in self.latencies.items()},
            "p99": percentile([x for v in self.latencies.values() for x in v], 0.99) * 1000,
            "cpu_ms": cpu / max(1, self.requests) * 1000,
            "errors": len(self.errors), "first_error": self.errors[0] if self.errors else None,
        }


def _databases() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [("SQLite", None)]
    if os.environ.get("GOVFLOW_BENCH_PG"):
        found.append(("PostgreSQL", os.environ["GOVFLOW_BENCH_PG"]))
    return found


def main(seconds: float, repetitions: int, client_counts: list[int]) -> int:
    work = Path(tempfile.mkdtemp(prefix="govflow-bench-"))
    print(f"govflow vs the floor app: {repetitions} alternating repetitions of {seconds:g} s per measurement, "
          f"clients {client_counts}, on {os.cpu_count()} cores")
    failed = False
    for db_name, pg_url in _databases():
        if pg_url:
            reset_postgres(pg_url)
            gov = govflow(pg_url, work / "pg-data")
            flo = floor(pg_url)
        else:
            gov = govflow(None, work / "data")
            flo = floor(f"sqlite:///{work / 'floor.db'}")
        def measure(name: str, server: Process, clients: int, rep: int, db_name: str = db_name) -> dict[str, Any]:
            return Load(server, clients, seconds, f"{db_name}-{name}-{rep}-{clients}").run()

        results, errors = alternate({"floor": flo, "govflow": gov}, repetitions, client_counts, measure)
        failed = failed or errors
        _report(db_name, results, client_counts)
    return 1 if failed else 0


def _report(db_name: str, results: dict[tuple[str, int], list[dict[str, Any]]], client_counts: list[int]) -> None:
    print(f"\n{db_name}")
    print(f"{'':28}{'floor':>10}{'govflow':>10}{'ratio':>9}")
    for clients in client_counts:
        f, g = results[("floor", clients)], results[("govflow", clients)]
        f_rps, g_rps = median([r["rps"] for r in f]), median([r["rps"] for r in g])
        print(f"{f'{clients} client(s), req/s':28}{fmt(f_rps):>10}{fmt(g_rps):>10}{fmt(g_rps / f_rps, 2):>9}")
        f_p99, g_p99 = median([r["p99"] for r in f]), median([r["p99"] for r in g])
        print(f"{f'{clients} client(s), p99 ms':28}{fmt(f_p99):>10}{fmt(g_p99):>10}{fmt(g_p99 / f_p99, 2):>9}")
        f_cpu, g_cpu = median([r["cpu_ms"] for r in f]), median([r["cpu_ms"] for r in g])
        print(f"{f'{clients} client(s), CPU ms/request':28}{fmt(f_cpu, 2):>10}{fmt(g_cpu, 2):>10}"
              f"{fmt(g_cpu / f_cpu, 2):>9}")
        for kind in TYPES:
            fp = median([r["p50"].get(kind, float("nan")) for r in f])
            gp = median([r["p50"].get(kind, float("nan")) for r in g])
            print(f"{f'  p50 {kind} ms (extra)':28}{fmt(fp, 2):>10}{fmt(gp, 2):>10}{'+' + fmt(gp - fp, 2):>9}")
