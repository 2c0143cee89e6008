"""Throughput of one and of two `govflow serve` replicas on one PostgreSQL database, measured in the same run.

Each phase starts the replicas (real `govflow serve` processes on loopback ports, API-only) on a freshly emptied
database and drives the same request mix with a fixed number of client threads for a fixed time: each client
starts a project (`review` from tests/fixtures), finds the review task in its inbox, sends it back for revision,
reads the instance, revises and rejects it, its requests alternating between the replicas. It prints requests per
second, p50 and p99 latency, the answers that were not 2xx, and the CPU time each server process used (the
replica and its engine workers, read from /proc/<pid>/stat; PostgreSQL's too when it runs on this machine), then
the 2-vs-1 ratios. All traffic goes to 127.0.0.1; the number of clients, the time and the requests are bounded.

    GOVFLOW_BENCH_PG=postgresql://user@127.0.0.1:5432/govflow_bench .venv/bin/python -m bench.bench_replicas

The database named is emptied (its tables truncated) before each phase. GOVFLOW_BENCH_SECONDS (default 20) and
GOVFLOW_BENCH_CLIENTS (default 8) set the time and the clients of a phase. Without GOVFLOW_BENCH_PG it says so and
does nothing.
"""
from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from service.auth import mint_token
from service.db.migrate import upgrade
from service.db.session import make_engine

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-of-at-least-32-bytes-length"
MAX_REQUESTS = 200_000  # a phase stops at its time or after this many requests, whichever comes first
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- CPU time from /proc --------------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # the fields after the command name (which may hold spaces)


def cpu_seconds(pid: int, with_reaped_children: bool = False) -> float:
    """User + system time of a process; with_reaped_children adds that of its children it has waited for."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14..17
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class CpuProbe:
    """CPU seconds used by process groups between begin() and used(): each group is a root process, the
    children it has reaped (their time is added to its own when they exit) and its live descendants (read at
    both ends, so a process that starts or ends in between is counted too)."""

    roots: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # name → [(pid, with descendants)]
    start: dict[str, dict[int, float]] = field(default_factory=dict)

    @staticmethod
    def _sample(members: list[tuple[int, bool]]) -> dict[int, float]:
        found: dict[int, float] = {}
        for pid, tree in members:
            found[pid] = cpu_seconds(pid, with_reaped_children=tree)
            if tree:
                found.update({child: cpu_seconds(child) for child in descendants(pid)})
        return found

    def begin(self) -> None:
        self.start = {name: self._sample(members) for name, members in self.roots.items()}

    def used(self) -> dict[str, float]:
        out = {}
        for name, members in self.roots.items():
            before, after = self.start[name], self._sample(members)
            # a descendant gone since begin() is in its parent's reaped time (a root's) or lost with its parent
            out[name] = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
        return out


def postgres_postmaster(url: str) -> int | None:
    """The local PostgreSQL server's postmaster: the parent of this connection's backend (None: not local)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
    finally:
        engine.dispose()
    fields = _stat(backend)
    return int(fields[1]) if fields is not None else None


# ---- the replicas -------------------------------------------------------------------------------------------------

class Replica:
    def __init__(self, url: str, workdir: Path, index: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
        env.update(GOVFLOW_DATABASE_URL=url, GOVFLOW_DATA_DIR=str(workdir / "data"), GOVFLOW_JWT_SECRET=SECRET,
                   GOVFLOW_BPMN_DIR=str(REPO / "tests" / "fixtures"), GOVFLOW_SCHEDULER_ENABLED="false",
                   GOVFLOW_WEBHOOK_SENDER_ENABLED="false")
        self.log = (workdir / f"replica-{index}.log").open("w")
        govflow = Path(sys.executable).parent / "govflow"
        self.process = subprocess.Popen([str(govflow), "serve", "--port", str(self.port)], env=env, cwd=workdir,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited with status {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica not ready; see {self.log.name}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def empty_database(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        tables = [r[0] for r in connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


# ---- the load -----------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, status: int, what: str) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if not 200 <= status < 300:
                key = f"{what} {status}"
                self.failures[key] = self.failures.get(key, 0) + 1


class Client:
    """One client thread: its requests alternate between the replicas, step by step."""

    def __init__(self, urls: list[str], token: str, tally: Tally, stop: threading.Event) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.http = [httpx.Client(base_url=u, headers=headers, timeout=60) for u in urls]
        self.turn = self.projects = 0
        self.tally, self.stop = tally, stop

    def call(self, method: str, path: str, what: str, **kwargs: object) -> httpx.Response | None:
        if self.stop.is_set():
            return None
        client = self.http[self.turn % len(self.http)]
        self.turn += 1
        started = time.perf_counter()
        r = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        self.tally.record(time.perf_counter() - started, r.status_code, what)
        return r

    def complete(self, task_id: str, variables: dict[str, object]) -> httpx.Response | None:
        return self.call("POST", f"/tasks/{task_id}/complete", "complete", json={"variables": variables})

    def one_project(self) -> None:
        # step k of project p goes to replica (p + k) mod n: every kind of request reaches every replica
        self.turn, self.projects = self.projects, self.projects + 1
        key = f"BENCH-{uuid.uuid4().hex[:12]}"
        r = self.call("POST", "/process-instances", "start", json={
            "process_key": "review", "business_key": key, "variables": {"project_name": "基准", "budget_wan": 10}})
        if r is None or r.status_code != 201:
            return
        instance_id = r.json()["id"]
        r = self.call("GET", "/tasks", "inbox", params={"candidate_group": "data_bureau", "business_key": key})
        if r is None or r.status_code != 200 or not r.json()["items"]:
            return
        r = self.complete(r.json()["items"][0]["id"], {"decision": "revise"})
        if r is None or r.status_code != 200:
            return
        revise = [t["id"] for t in r.json()["next_tasks"] if t["element_id"] == "revise_task"]
        if self.call("GET", f"/process-instances/{instance_id}", "instance") is None or not revise:
            return
        r = self.complete(revise[0], {"budget_wan": 12})
        if r is None or r.status_code != 200:
            return
        review = [t["id"] for t in r.json()["next_tasks"] if t["element_id"] == "review_task"]
        if review:
            self.complete(review[0], {"decision": "reject"})

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one_project()
        finally:
            self.close()

    def close(self) -> None:
        for c in self.http:
            c.close()


@dataclass
class Result:
    replicas: int
    requests: int
    seconds: float
    p50: float
    p99: float
    failures: dict[str, int]
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def phase(url: str, count: int, seconds: float, clients: int) -> Result:
    empty_database(url)
    workdir = Path(tempfile.mkdtemp(prefix="govflow-bench-"))
    replicas = [Replica(url, workdir, i) for i in range(count)]
    try:
        for r in replicas:
            r.wait_ready()
        token = mint_token(SECRET, "bench", ["applicant", "data_bureau"], False, datetime.now(UTC),
                           timedelta(hours=2))
        probe = CpuProbe()
        for i, r in enumerate(replicas, 1):
            probe.roots[f"replica {i}: govflow serve"] = [(r.process.pid, False)]
            # the engine workers, children of the engine's forkserver
            probe.roots[f"replica {i}: its engine processes"] = [(c, True) for c in children(r.process.pid)]
        postmaster = postgres_postmaster(url)
        if postmaster is not None:
            probe.roots["postgresql (all its processes)"] = [(postmaster, True)]
        probe.roots["benchmark clients"] = [(os.getpid(), False)]
        urls = [r.url for r in replicas]
        tally, stop = Tally(), threading.Event()
        warm = Client(urls, token, Tally(), threading.Event())
        for _ in range(2 * count):  # a few projects through every replica before the clock starts
            warm.one_project()
        warm.close()
        workers = [threading.Thread(target=Client(urls, token, tally, stop).run) for _ in range(clients)]
        probe.begin()
        started = time.perf_counter()
        for w in workers:
            w.start()
        while time.perf_counter() - started < seconds and len(tally.latencies) < MAX_REQUESTS:
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        cpu = probe.used()
    finally:
        for r in replicas:
            r.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = sorted(tally.latencies)
    return Result(count, len(latencies), elapsed, statistics.median(latencies),
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], tally.failures, cpu)


def report(result: Result) -> None:
    failures = ", ".join(f"{k}: {v}" for k, v in sorted(result.failures.items())) or "none"
    print(f"{result.replicas} replica{'s' if result.replicas > 1 else ''}: {result.requests} requests in "
          f"{result.seconds:.1f}s = {result.rate:.1f} req/s; p50 {result.p50 * 1000:.1f} ms, "
          f"p99 {result.p99 * 1000:.1f} ms; not 2xx: {failures}")
    for name, used in result.cpu.items():
        print(f"    CPU {name:36} {used:6.1f}s  ({used / result.seconds * 100:5.1f}% of one core)")


def main() -> None:
    url = os.environ.get("GOVFLOW_BENCH_PG")
    if not url:
        print("GOVFLOW_BENCH_PG is not set: this benchmark needs a PostgreSQL database it may empty, e.g. "
              "GOVFLOW_BENCH_PG=postgresql://user@127.0.0.1:5432/govflow_bench")
        return
    seconds = float(os.environ.get("GOVFLOW_BENCH_SECONDS", "20"))
    clients = int(os.environ.get("GOVFLOW_BENCH_CLIENTS", "8"))
    print(f"{clients} clients, {seconds:g}s per phase, {os.cpu_count()} cores; the same request mix against "
          f"1 then 2 replicas")
    one = phase(url, 1, seconds, clients)
    report(one)
    two = phase(url, 2, seconds, clients)
    report(two)
    print(f"2 vs 1 replica: throughput {two.rate / one.rate:.2f}x, p50 {two.p50 / one.p50:.2f}x, "
          f"p99 {two.p99 / one.p99:.2f}x")


if __name__ == "__main__":
    main()
