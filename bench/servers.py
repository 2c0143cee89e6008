"""Servers for the benchmarks: govflow (`govflow serve`, as the README runs it) and the floor app, each a separate
process on a free loopback port; CPU time of a server's whole process tree (the service and its engine workers)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from service.auth import mint_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-of-at-least-32-bytes-length"
DIAGRAMS = Path(__file__).resolve().parent / "diagrams"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(user: str, *groups: str, admin: bool = False) -> str:
    return mint_token(SECRET, user, list(groups), admin, datetime.now(UTC), timedelta(hours=2))


def reset_postgres(url: str) -> None:
    from service.db.session import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process below it (engine workers)."""
        return sum(_cpu(pid) for pid in _tree(self.process.pid))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found.setdefault(parent, []).append(int(entry))
    return found


def _tree(pid: int) -> list[int]:
    children = _children()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def govflow(database_url: str | None, data_dir: Path, bpmn_dir: Path = DIAGRAMS, **settings: str) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update({"GOVFLOW_DATA_DIR": str(data_dir), "GOVFLOW_JWT_SECRET": SECRET, "GOVFLOW_BPMN_DIR": str(bpmn_dir),
                **{f"GOVFLOW_{k.upper()}": v for k, v in settings.items()}})
    if database_url:
        env["GOVFLOW_DATABASE_URL"] = database_url
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    govflow_bin = str(Path(sys.executable).parent / "govflow")
    return Process("govflow", [govflow_bin, "serve", "--port", str(port)], env, port)


def floor(database_url: str) -> Process:
    env = {**os.environ, "FLOOR_DATABASE_URL": database_url, "FLOOR_JWT_SECRET": SECRET}
    port = free_port()
    return Process("floor", [sys.executable, "-m", "uvicorn", "bench.floor:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--http", "h11", "--loop", "asyncio"],
                   env, port)  # the parser and loop `govflow serve` names (service/cli.py)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return percentile(values, 0.5)


def fmt(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def alternate(servers: dict[str, Process], repetitions: int, client_counts: list[int],
              measure: Callable[[str, Process, int, int], dict[str, Any]]
              ) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], bool]:
    """Each server measured in turn, for each client count, `repetitions` times (`measure(name, server, clients,
    repetition)` gives an outcome with `errors`, a count, and `first_error`); the servers are stopped at the end.
    The outcomes by (server, clients), and whether any had errors (each printed)."""
    results: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    failed = False
    try:
        for rep in range(repetitions):
            for clients in client_counts:
                for name, server in servers.items():
                    outcome = measure(name, server, clients, rep)
                    results[(name, clients)].append(outcome)
                    if outcome["errors"]:
                        failed = True
                        print(f"  {name} {clients} clients: {outcome['errors']} errors, e.g. {outcome['first_error']}")
    finally:
        for server in servers.values():
            server.stop()
    return results, failed
