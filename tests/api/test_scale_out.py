"""Several replicas on one database: replicas started at the same moment all become ready (migrations and
start-up deploys run one after another), a timer written through an API-only replica is fired on time by a
worker, schedulers share the due list, and the request threads fit the connection pool, whose exhaustion is
answered 503 with Retry-After.

Replicas are real `govflow serve` processes on free loopback ports, each with its own environment. Checks that
only PostgreSQL can make (row locks, advisory locks) are defined only in the suite's PostgreSQL run; the SQLite
side of each behaviour (no advisory lock, polling) is checked on SQLite."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from service.auth import mint_token
from service.clock import FrozenClock
from service.db.migrate import head_revision, upgrade
from service.db.models import ProcessDefinition
from service.db.session import make_engine, normalise_url
from service.replicas import request_threads
from service.scheduler import Scheduler
from service.services import timers
from tests.support import _TLS, FIXTURES, REPO, SECRET, T0, Api, Server, database_for_worker, free_port, make_settings

PG_URL = database_for_worker(os.environ.get("GOVFLOW_TEST_DATABASE_URL"), os.environ.get("PYTEST_XDIST_WORKER"))

# a replica's imports are done before it waits at the barrier, so that the replicas reach their start-up work
# (migrating, deploying) at the same moment, as pods of a deployment started together do
LAUNCHER = """
import pathlib, sys, time
import service.app, service.cli, uvicorn
pathlib.Path(sys.argv[2]).touch()
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.002)
sys.exit(service.cli.main(["serve", "--port", sys.argv[3]]))
"""
TWO_SECONDS = (FIXTURES / "wait_a_day.bpmn").read_bytes().replace(b">P1D<", b">PT2S<").replace(
    b'id="wait_a_day"', b'id="wait_two_seconds"')


class Process:
    """One `govflow` process (serve or worker) with its own environment, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port
        self.log_path = log
        self._log = log.open("w")
        self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()


def replica_env(tmp_path: Path, database_url: str | None, bpmn_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(GOVFLOW_DATA_DIR=str(tmp_path / "data"), GOVFLOW_JWT_SECRET=SECRET, GOVFLOW_BPMN_DIR=str(bpmn_dir),
               GOVFLOW_ENGINE_WORKERS="1", GOVFLOW_WEBHOOK_SENDER_ENABLED="false")
    if database_url:
        env["GOVFLOW_DATABASE_URL"] = database_url
    env.update({f"GOVFLOW_{k.upper()}": v for k, v in settings.items()})
    return env


def start_together(count: int, env: dict[str, str], tmp_path: Path) -> list[Process]:
    """`count` replicas that begin their start-up at one moment."""
    barrier = tmp_path / f"go-{uuid.uuid4().hex[:6]}"
    replicas = []
    for i in range(count):
        port = free_port()
        loaded = tmp_path / f"loaded-{barrier.name}-{i}"
        replicas.append(Process([sys.executable, "-c", LAUNCHER, str(barrier), str(loaded), str(port)], env,
                                tmp_path / f"replica-{barrier.name}-{i}.log", port))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"loaded-{barrier.name}-{i}").exists() for i in range(count)):
        for r in replicas:
            assert r.popen.poll() is None, r.output()
        assert time.monotonic() < deadline, "the replicas did not load"
        time.sleep(0.02)
    barrier.touch()
    return replicas


def serve(env: dict[str, str], tmp_path: Path, name: str) -> Process:
    port = free_port()
    return Process([str(Path(sys.executable).parent / "govflow"), "serve", "--port", str(port)], env,
                   tmp_path / f"{name}.log", port)


def wait_ready(processes: list[Process], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    waiting = list(processes)
    while waiting:
        for p in list(waiting):
            assert p.popen.poll() is None, f"a replica exited with status {p.popen.returncode}:\n{p.output()}"
            try:
                # and its own log says it started: another test's server may have taken the port meanwhile
                if (httpx.get(p.url + "/readyz", timeout=5, verify=_TLS).status_code == 200
                        and "Application startup complete" in p.output()):
                    waiting.remove(p)
            except httpx.TransportError:
                pass
        assert time.monotonic() < deadline, "replicas not ready:\n" + "\n".join(p.output() for p in waiting)
        time.sleep(0.2)


@contextmanager
def empty_postgres_database(base_url: str) -> Iterator[str]:
    """A new, empty database beside the test's own, dropped afterwards."""
    url = make_url(normalise_url(base_url))
    name = f"{url.database}_empty_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def new_database(tmp_path: Path, database_url: str | None) -> Iterator[str | None]:
    """An empty database: a new PostgreSQL database, or (None) a data directory without its SQLite file."""
    if database_url:
        with empty_postgres_database(database_url) as url:
            yield url
    else:
        yield None


def definitions_in(url: str) -> dict[str, list[int]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(ProcessDefinition.key, ProcessDefinition.version)).all()
            revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert revisions == [head_revision()]
    found: dict[str, list[int]] = {}
    for key, version in rows:
        found.setdefault(key, []).append(version)
    return {k: sorted(v) for k, v in found.items()}


def diagrams(tmp_path: Path, *names: str) -> Path:
    directory = tmp_path / "bpmn"
    directory.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, directory / name)
    return directory


def at_once(count: int, request: Callable[[], httpx.Response]) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(request())) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def stop_all(processes: list[Process]) -> None:
    for p in processes:
        p.stop()


# ---- start-up: replicas started together ---------------------------------------------------------------------

def test_three_replicas_started_together_on_an_empty_database_all_become_ready(
        tmp_path: Path, database_url: str | None) -> None:
    """PostgreSQL: the migration and the start-up deploy run under advisory locks, one replica after another;
    SQLite: its write transactions are serialised already (no advisory lock)."""
    bpmn_dir = diagrams(tmp_path, "review.bpmn", "review.dmn", "wait_a_day.bpmn")
    with new_database(tmp_path, database_url) as url:
        env = replica_env(tmp_path, url, bpmn_dir)
        replicas = start_together(3, env, tmp_path)
        try:
            wait_ready(replicas)
        finally:
            stop_all(replicas)
        logs = "".join(r.output() for r in replicas)
        assert "Traceback" not in logs and "UniqueViolation" not in logs, logs
        deployed = definitions_in(url or f"sqlite:///{tmp_path / 'data' / 'govflow.db'}")
        assert deployed == {"review": [1], "wait_a_day": [1]}


def test_three_replicas_started_together_deploy_a_new_diagram_once(tmp_path: Path, database_url: str | None) -> None:
    bpmn_dir = diagrams(tmp_path, "review.bpmn", "review.dmn")
    settings = make_settings(tmp_path, database_url, bpmn_dir)  # a migrated database
    first = Server(settings, FrozenClock(T0))
    first.start()  # deploys review
    first.stop()
    (bpmn_dir / "wait_two_seconds.bpmn").write_bytes(TWO_SECONDS)  # the release brings a new diagram
    replicas = start_together(3, replica_env(tmp_path, database_url, bpmn_dir), tmp_path)
    try:
        wait_ready(replicas)
    finally:
        stop_all(replicas)
    logs = "".join(r.output() for r in replicas)
    assert "Traceback" not in logs and "uq_process_definition_key_hash" not in logs, logs
    assert logs.count("deployed wait_two_seconds version 1") == 1, logs
    url = database_url or f"sqlite:///{tmp_path / 'data' / 'govflow.db'}"
    assert definitions_in(url) == {"review": [1], "wait_two_seconds": [1]}


def test_a_concurrent_duplicate_deploy_is_unchanged_not_an_error(api: Api) -> None:
    """Requests deploying the same new diagram at once: one creates the version, the others find it."""
    for round_ in range(4):
        content = TWO_SECONDS.replace(b'id="wait_two_seconds"', f'id="dup_{round_}"'.encode())
        files = [("files", (f"dup_{round_}.bpmn", content))]
        answers = at_once(3, partial(api.admin.post, "/deployments", files=files))
        assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
        created = [d for a in answers for d in a.json()["definitions"]]
        assert [(d["key"], d["version"]) for d in created] == [(f"dup_{round_}", 1)]
        assert sorted(key for a in answers for key in a.json()["unchanged"]) == [f"dup_{round_}"] * 2
        versions = api.admin.get(f"/process-definitions/dup_{round_}/versions").json()
        assert [v["version"] for v in versions] == [1]


def test_serve_refuses_an_unmigrated_database_when_told_not_to_migrate(
        tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """GOVFLOW_MIGRATE_ON_START=false: deployments migrate in a step of their own (`govflow migrate`); a replica
    started before it refuses to serve instead of migrating."""
    from service.cli import main

    with new_database(tmp_path, database_url) as url:
        for k in [k for k in os.environ if k.startswith("GOVFLOW_")]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("GOVFLOW_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("GOVFLOW_JWT_SECRET", SECRET)
        monkeypatch.setenv("GOVFLOW_MIGRATE_ON_START", "false")
        if url:
            monkeypatch.setenv("GOVFLOW_DATABASE_URL", url)
        for command in ("serve", "worker"):
            assert main([command]) == 2
            err = capsys.readouterr().err
            assert "not the latest" in err and "run `govflow migrate` first" in err, err
        assert main(["migrate"]) == 0
        capsys.readouterr()
        settings = make_settings(tmp_path, url, diagrams(tmp_path, "wait_a_day.bpmn"), migrate_on_start=False)
        server = Server(settings, FrozenClock(T0))
        server.start()
        try:
            assert httpx.get(server.url + "/readyz", verify=_TLS).status_code == 200
        finally:
            server.stop()


# ---- timers: written through one process, fired by another ------------------------------------------------------

def test_a_short_timer_written_through_an_api_only_replica_is_fired_by_the_worker_on_time(
        tmp_path: Path, database_url: str | None) -> None:
    """An API-only replica (GOVFLOW_SCHEDULER_ENABLED=false) writes a PT2S timer; a `govflow worker` fires it
    within 2 s of its due time. PostgreSQL: the worker sleeps up to a minute and is woken by NOTIFY; SQLite: it
    polls (here every second)."""
    postgres = database_url is not None
    bpmn_dir = diagrams(tmp_path, "wait_a_day.bpmn")
    make_settings(tmp_path, database_url, bpmn_dir)  # a migrated database
    api_env = replica_env(tmp_path, database_url, bpmn_dir, scheduler_enabled="false")
    worker_env = replica_env(tmp_path, database_url, bpmn_dir, scheduler_max_sleep_seconds="60" if postgres else "1")
    replica = serve(api_env, tmp_path, "api-replica")
    worker = Process([str(Path(sys.executable).parent / "govflow"), "worker"], worker_env, tmp_path / "worker.log")
    token = mint_token(SECRET, "admin", [], True, datetime.now(UTC), timedelta(hours=1))
    admin = httpx.Client(base_url=replica.url + "/api/v1", verify=_TLS, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
    try:
        wait_ready([replica])
        deadline = time.monotonic() + 60
        while "worker running" not in worker.output():
            assert worker.popen.poll() is None and time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        if postgres:  # the worker is listening, and asleep for up to a minute
            engine = make_engine(database_url or "")
            try:
                while True:
                    with engine.connect() as connection:
                        listening = connection.execute(text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND query = 'LISTEN govflow_timer'")).scalar_one()
                    assert worker.popen.poll() is None, worker.output()
                    if listening == 1:
                        break
                    assert time.monotonic() < deadline, worker.output()
                    time.sleep(0.1)
            finally:
                engine.dispose()
        assert worker.popen.poll() is None, worker.output()
        r = admin.post("/deployments", files=[("files", ("wait_two_seconds.bpmn", TWO_SECONDS))])
        assert r.status_code == 201, r.text
        r = admin.post("/process-instances", json={"process_key": "wait_two_seconds", "variables": {}})
        assert r.status_code == 201, r.text
        iid = r.json()["id"]
        due_at = datetime.fromisoformat(admin.get(f"/process-instances/{iid}").json()["waiting_for"][0]["due_at"])
        deadline = time.monotonic() + 30
        while not [t for t in admin.get(f"/process-instances/{iid}").json()["open_tasks"] if t["element_id"] == "after"]:
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        events = admin.get(f"/process-instances/{iid}/history").json()["events"]
        fired = [e for e in events if e["action"] == "timer.fired"]
        assert len(fired) == 1 and fired[0]["data"]["fired_by"].split(":")[-2] == str(worker.popen.pid)
        late = (datetime.fromisoformat(fired[0]["at"]) - due_at).total_seconds()
        assert 0 <= late < 2.0, f"fired {late:.2f}s after its due time"
    finally:
        admin.close()
        stop_all([replica, worker])


def test_schedulers_share_the_due_list_and_wait_for_the_leases_of_others(api: Api) -> None:
    ids = [api.start("wait_a_day", {}, business_key=f"SHARE-{i}")["id"] for i in range(6)]
    api.clock.advance(timedelta(days=2))
    ctx = api.server.ctx
    first = timers.claim_due(ctx, 4)
    second = timers.claim_due(ctx, 10)
    assert len(first.instance_ids) == 4 and len(second.instance_ids) == 2
    assert sorted(first.instance_ids + second.instance_ids) == sorted(ids)
    assert timers.claim_due(ctx, 10).instance_ids == []  # nothing is left for a third
    # a scheduler with nothing to claim sleeps until the others' leases end (they fire or fail meanwhile), not
    # a twentieth of a second at a time
    ctx.settings.scheduler_max_sleep_seconds = 3600.0
    idle = Scheduler(ctx)
    assert abs(idle._seconds_until_next_due() - ctx.settings.timer_lease_seconds) < 1
    # a stopping scheduler gives back what it claimed and did not fire
    timers.release(ctx, second, second.instance_ids)
    assert sorted(timers.claim_due(ctx, 10).instance_ids) == sorted(second.instance_ids)


# ---- connections -------------------------------------------------------------------------------------------------

def test_request_threads_fit_the_connection_pool(tmp_path: Path, database_url: str | None) -> None:
    defaults = make_settings(tmp_path, database_url, FIXTURES, scheduler_enabled=True, webhook_sender_enabled=True)
    assert (defaults.db_pool_size, defaults.db_max_overflow) == (10, 5)
    assert request_threads(defaults) == 13  # 15 connections, one each for the scheduler and the webhook sender
    settings = make_settings(tmp_path, database_url, FIXTURES, db_pool_size=3, db_max_overflow=1,
                             scheduler_enabled=False, webhook_sender_enabled=False)
    server = Server(settings, FrozenClock(T0))
    server.start()
    try:
        assert server.app.state.request_threads == 4
        engine = server.ctx.engine
        assert (engine.pool.size(), engine.pool._max_overflow) == (3, 1)
    finally:
        server.stop()


def test_an_exhausted_connection_pool_is_answered_503_with_retry_after(tmp_path: Path,
                                                                        database_url: str | None) -> None:
    settings = make_settings(tmp_path, database_url, FIXTURES, db_pool_size=1, db_max_overflow=0,
                             db_pool_timeout_seconds=0.5)
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        inst = api.start("review", {"project_name": "x", "budget_wan": 10})
        task = api.open_task(inst["id"], "review_task")
        reader = server.ctx.read_factory.kw["bind"]
        held = [reader.connect()]  # every connection reads use is taken (on PostgreSQL, also those writes use)
        if server.ctx.sqlite:
            held.append(server.ctx.engine.connect())
        for connection in held:
            connection.execute(text("SELECT 1"))
        client = api.as_("reviewer", "data_bureau")
        try:
            for method, path in (("GET", "/tasks"), ("POST", f"/tasks/{task['id']}/claim")):
                started = time.monotonic()
                r = client.request(method, path)
                assert r.status_code == 503, r.text
                assert r.headers["Retry-After"] == "1" and r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"] == "/problems/unavailable" and "retry" in r.json()["detail"]
                assert time.monotonic() - started < 10  # the pool timeout, not a hang
        finally:
            for connection in held:
                connection.close()
        assert client.get("/tasks").status_code == 200
        assert client.post(f"/tasks/{task['id']}/claim").status_code == 200  # nothing was changed before
    finally:
        api.close()
        server.stop()


# ---- PostgreSQL only -----------------------------------------------------------------------------------------------

def _requests_beyond_the_pool_wait_for_a_thread_not_for_a_connection(tmp_path: Path, database_url: str) -> None:
    """Requests that hold their connection a long time (here: waiting on a table lock) while more arrive than the
    pool has connections: the others wait their turn and are served, none is refused for want of a connection.
    (With 40 request threads, 10 of these 12 would be answered 503 after 0.5 s; with the threads limited to the
    connections but no admission, a newer request took the thread an older one needed to finish and was.)"""
    settings = make_settings(tmp_path, database_url, FIXTURES, db_pool_size=2, db_max_overflow=0,
                             db_pool_timeout_seconds=0.5)
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        client = api.as_("reader", "applicant")
        assert client.get("/process-definitions").status_code == 200
        blocker = make_engine(database_url)
        answers: list[int] = []
        with blocker.connect() as connection:
            connection.execute(text("LOCK TABLE process_definition IN ACCESS EXCLUSIVE MODE"))
            threads = [threading.Thread(target=lambda: answers.append(client.get("/process-definitions").status_code))
                       for _ in range(12)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # four times the pool timeout
            connection.rollback()
        for t in threads:
            t.join()
        blocker.dispose()
        assert answers == [200] * 12
    finally:
        api.close()
        server.stop()


def _a_scheduler_claim_skips_rows_another_scheduler_is_claiming(api: Api) -> None:
    ids = [api.start("wait_a_day", {}, business_key=f"SKIP-{i}")["id"] for i in range(4)]
    api.clock.advance(timedelta(days=2))
    engine = make_engine(str(api.server.ctx.engine.url.render_as_string(hide_password=False)))
    with engine.connect() as other:  # another scheduler, in the middle of its claim
        locked = other.execute(text("SELECT instance_id FROM waiting_event WHERE instance_id IN (:a, :b) "
                                    "FOR UPDATE"), {"a": ids[0], "b": ids[1]}).scalars().all()
        assert sorted(locked) == sorted(ids[:2])
        started = time.monotonic()
        claim = timers.claim_due(api.server.ctx, 10)
        assert time.monotonic() - started < 2  # not waiting for the other's row locks
        assert sorted(claim.instance_ids) == sorted(ids[2:])
        other.rollback()
    engine.dispose()
    assert sorted(timers.claim_due(api.server.ctx, 10).instance_ids) == sorted(ids[:2])


def _a_migration_waits_for_another_replicas_migration_however_long(tmp_path: Path, database_url: str) -> None:
    """The lock is waited for beyond lock_timeout (here 1 s): a long migration holds back the others, it does not
    make them fail."""
    from service.db.locks import MIGRATE, lock_key

    with empty_postgres_database(database_url) as url:
        holder = make_engine(url)
        migrating = make_engine(url, busy_timeout=1.0)
        outcome: list[Any] = []
        with holder.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(MIGRATE)})

            def run() -> None:
                try:
                    upgrade(migrating)
                    outcome.append("migrated")
                except Exception as e:  # the failure the test reports
                    outcome.append(e)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join(timeout=2.5)
            assert thread.is_alive() and outcome == []  # still waiting, past its lock_timeout
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(MIGRATE)})
            other.commit()
            thread.join(timeout=60)
        assert outcome == ["migrated"]
        with migrating.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
        holder.dispose()
        migrating.dispose()


if PG_URL:  # the suite's run on PostgreSQL (.ci/run runs both); SQLite has no row or advisory locks to test
    test_requests_beyond_the_pool_wait_for_a_thread_not_for_a_connection = \
        _requests_beyond_the_pool_wait_for_a_thread_not_for_a_connection
    test_a_scheduler_claim_skips_rows_another_scheduler_is_claiming = \
        _a_scheduler_claim_skips_rows_another_scheduler_is_claiming
    test_a_migration_waits_for_another_replicas_migration_however_long = \
        _a_migration_waits_for_another_replicas_migration_however_long
