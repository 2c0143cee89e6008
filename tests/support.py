"""Test support: the real app served by uvicorn on a loopback port, driven over HTTP with httpx,
with a frozen clock the tests move instead of sleeping."""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event, text

from service import serving
from service.app import create_app
from service.auth import mint_token
from service.clock import FrozenClock
from service.config import Settings
from service.db.session import make_engine, normalise_url

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "test-secret-of-at-least-32-bytes-length"
# a Monday, 09:00 in China
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
# the tests speak plain HTTP on loopback; building a TLS context per client (httpx does by default) loads the
# CA bundle each time and cost a third of a second per test
_TLS = ssl.create_default_context()


def share_parsed_diagrams() -> None:
    """Parse each distinct set of deployed files once per test process instead of once per test.

    Every test starts a service that deploys its diagrams into a fresh database; parsing and checking them is
    the same pure work each time (a quarter of a second per test for one lifecycle). The service deploys what
    it is given as before; only the parse of identical file contents is shared, as the service itself shares
    one parsed spec among all instances of a definition. Failures are not remembered."""
    from service.services import definitions

    original = definitions.parse_files
    if getattr(original, "shared", False):
        return
    parsed: dict[tuple[tuple[str, str], ...], Any] = {}

    def parse_files(files: dict[str, bytes]) -> Any:
        key = tuple(sorted((name, hashlib.sha256(content).hexdigest()) for name, content in files.items()))
        if key not in parsed:
            parsed[key] = original(files)
        return parsed[key]

    parse_files.shared = True  # type: ignore[attr-defined]
    definitions.parse_files = parse_files  # type: ignore[assignment]


def share_compiled_statements() -> None:
    """Compile each SQL statement once per test process instead of once per test.

    The service makes its engines once per process and compiles each statement once, on first use. Every test
    makes new ones, and SQLAlchemy keys its statement cache by the engine's dialect object: every test compiled
    every statement again (a sixth of the CPU of a lifecycle test file). Engines made through make_engine in a
    test process share one statement cache and, once an engine of a database kind and driver has made its first
    connection (and so initialised its dialect from the database), that dialect; each keeps its own pool,
    connections and events."""
    from sqlalchemy import event
    from sqlalchemy.util import LRUCache

    from service.db import session

    original = session.create_engine
    if getattr(original, "shared", False):
        return
    initialised: dict[tuple[str, str], Any] = {}
    statements: LRUCache[Any, Any] = LRUCache(2000)

    def create_engine(url: Any, **options: Any) -> Any:
        engine = original(url, **options)
        dialect = engine.dialect
        key = (dialect.name, dialect.driver)
        if key in initialised:
            engine.dialect = initialised[key]
        else:
            # after SQLAlchemy's own first-connect listener, registered before this one: the dialect is initialised
            event.listen(engine.pool, "connect", lambda *_: initialised.setdefault(key, dialect), once=True)
        engine._compiled_cache = statements
        return engine

    create_engine.shared = True  # type: ignore[attr-defined]
    session.create_engine = create_engine  # type: ignore[assignment]


def preload_engine_workers() -> None:
    """The engine workers of every test service fork from one fork server per test process; it imports
    tests/engine_preload.py, which parses the repository's and the fixtures' diagrams, so a worker does not parse
    them again for each test (the service as it runs parses a definition once per worker)."""
    from service.engine import sandbox

    sandbox.preload("tests.engine_preload")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuickStopServer(uvicorn.Server):
    """uvicorn as it runs the service, but noticing a stop within 10 ms rather than 100 ms, and not pausing another
    100 ms before closing its connections (the test clients' idle keep-alive connections close at once): a test's
    server stops in milliseconds instead of 0.2 s, a fifth of the suite's time. The lifespan shutdown is uvicorn's."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.01)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + 10
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline \
                and not self.force_exit:
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel(msg="the test server stopped")
        if not self.force_exit:
            await self.lifespan.shutdown()


class Server:
    """uvicorn in a thread; start() and stop() can be repeated to simulate a restart."""

    def __init__(self, settings: Settings, clock: FrozenClock) -> None:
        self.settings = settings
        self.clock = clock
        self.port = free_port()
        self.app: Any = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.app = create_app(self.settings, clock=self.clock)
        config = serving.config(self.app, self.settings, "127.0.0.1", self.port, log_level="warning",
                                lifespan="on")  # as `govflow serve` runs it (service/cli.py)
        self._server = _QuickStopServer(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.01)

    @property
    def scheduler(self) -> Any:
        """The service's timer scheduler, run by the tests instead of its thread."""
        from service.scheduler import Scheduler

        if self._scheduler is None:
            self._scheduler = Scheduler(self.ctx)
        return self._scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
        self._server = None
        self._thread = None
        _forget_apps()

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx


@dataclass
class Statement:
    sql: str
    parameters: Any


@contextmanager
def executed(server: Server) -> Iterator[list[Statement]]:
    """The statements the service executes meanwhile, with their parameters as they go to the driver (on SQLite
    reads go through ctx.read_engine, not the write engine)."""
    seen: list[Statement] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append(Statement(statement, parameters))

    ctx = server.ctx
    engines = list({id(e): e for e in (ctx.engine, ctx.read_engine)}.values())
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def _forget_apps() -> None:
    """FastAPI remembers, per endpoint function, whether it is a generator, in caches of 4,096 entries; the
    functions an app defines for itself (its docs pages, /metrics) are new with every app, so each stopped test
    server stayed reachable from those caches (1–1.5 GB per pytest worker by the end of the suite)."""
    from fastapi.dependencies import models

    for value in vars(models).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@dataclass
class User:
    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False


@dataclass
class Api:
    """A client of the running service that acts as different users."""

    server: Server
    clients: dict[tuple[str, tuple[str, ...], bool], httpx.Client] = field(default_factory=dict)

    @property
    def clock(self) -> FrozenClock:
        return self.server.clock

    def token(self, user: str, groups: tuple[str, ...] = (), admin: bool = False) -> str:
        return mint_token(SECRET, user, list(groups), admin, datetime.now(UTC), timedelta(hours=1))

    def as_(self, user: str, *groups: str, admin: bool = False) -> httpx.Client:
        key = (user, tuple(groups), admin)
        if key not in self.clients:
            self.clients[key] = httpx.Client(
                base_url=self.server.url + "/api/v1",
                headers={"Authorization": f"Bearer {self.token(user, tuple(groups), admin)}"},
                timeout=30, verify=_TLS,
            )
        return self.clients[key]

    @property
    def admin(self) -> httpx.Client:
        return self.as_("admin", admin=True)

    def with_key(self, name: str, groups: tuple[str, ...] = (), processes: tuple[str, ...] = ()) -> httpx.Client:
        """A client acting as a system: an API key created by the administrator over the API."""
        r = self.admin.post("/api-keys", json={"name": name, "groups": list(groups), "processes": list(processes)})
        assert r.status_code == 201, r.text
        client = httpx.Client(base_url=self.server.url + "/api/v1", headers={"X-API-Key": r.json()["key"]},
                              timeout=30, verify=_TLS)
        self.clients[(f"key:{name}", groups, False)] = client
        return client

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url + "/api/v1", timeout=30, verify=_TLS)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    # ---- conveniences that assert the happy path ---------------------------------------------------
    def start(self, key: str, variables: dict[str, Any], business_key: str | None = None,
              user: str = "oa", groups: tuple[str, ...] = ("applicant",)) -> dict[str, Any]:
        r = self.as_(user, *groups).post("/process-instances", json={
            "process_key": key, "business_key": business_key, "variables": variables})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def instance(self, instance_id: str) -> dict[str, Any]:
        r = self.admin.get(f"/process-instances/{instance_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def open_task(self, instance_id: str, element_id: str) -> dict[str, Any]:
        tasks = [t for t in self.instance(instance_id)["open_tasks"] if t["element_id"] == element_id]
        assert len(tasks) == 1, (element_id, [t["element_id"] for t in self.instance(instance_id)["open_tasks"]])
        return tasks[0]

    def open_elements(self, instance_id: str) -> list[str]:
        return sorted(t["element_id"] for t in self.instance(instance_id)["open_tasks"])

    def variables(self, instance_id: str) -> dict[str, Any]:
        return dict(self.instance(instance_id)["variables"])

    def end_event(self, instance_id: str) -> str | None:
        """The end event reached, once the instance has completed."""
        view = self.instance(instance_id)
        return view["end_event"] if view["status"] == "completed" else None

    def complete(self, instance_id: str, element_id: str, variables: dict[str, Any] | None = None,
                 user: str | None = None, group: str | None = None) -> dict[str, Any]:
        """Find the open task and complete it as a member of its first candidate group (the completion claims it,
        as the README says; claiming first is tested in tests/api/test_tasks.py and the README walkthrough)."""
        task = self.open_task(instance_id, element_id)
        group = group or (task["candidate_groups"][0] if task["candidate_groups"] else "none")
        client = self.as_(user or f"{group}_user", group)
        r = client.post(f"/tasks/{task['id']}/complete", json={"variables": variables or {}})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def message(self, name: str, business_key: str, variables: dict[str, Any] | None = None,
                process_key: str | None = None) -> dict[str, Any]:
        r = self.admin.post("/messages", json={"name": name, "business_key": business_key,
                                               "process_key": process_key, "variables": variables or {}})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def fire_timer(self, instance_id: str, element_id: str) -> dict[str, Any]:
        r = self.admin.post(f"/process-instances/{instance_id}/timers/{element_id}/fire")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def waiting(self, instance_id: str) -> list[dict[str, Any]]:
        return list(self.instance(instance_id)["waiting_for"])

    def advance(self, delta: timedelta) -> int:
        """Move the clock and let the scheduler fire what fell due."""
        self.clock.advance(delta)
        return self.server.scheduler.run_until_idle()


def database_for_worker(url: str | None, worker: str | None) -> str | None:
    """The PostgreSQL database of one pytest-xdist worker: <db>_<worker> beside the configured one, created
    (empty) through a connection to the configured database when it does not exist yet."""
    if not url or not worker:
        return url
    from sqlalchemy.engine import make_url

    base = make_url(normalise_url(url))
    name = f"{base.database}_{worker}"
    admin = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def reset_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


_template: dict[str, Path] = {}


def _migrated_sqlite() -> Path:
    """An SQLite database migrated to head once per test process (like the PostgreSQL one, migrated once per
    run): each test starts from a copy instead of running every migration again."""
    if "path" not in _template:
        directory = Path(tempfile.mkdtemp(prefix="govflow-test-template-"))
        atexit.register(shutil.rmtree, directory, True)
        from service.db.migrate import upgrade

        path = directory / "govflow.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # the last connection closed writes the WAL back into the file
        _template["path"] = path
    return _template["path"]


def make_settings(tmp_path: Path, database_url: str | None, bpmn_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        database_url=normalise_url(database_url) if database_url else None,
        bpmn_dir=bpmn_dir,
        jwt_secret=SECRET,
        scheduler_enabled=False,
        webhook_sender_enabled=False,
        verify_state_storage=os.environ.get("GOVFLOW_TEST_VERIFY_STATE", "1") == "1",
        webhook_allow_private="127.0.0.0/8",  # the tests' webhook receivers listen on loopback
        engine_workers=1,
    )
    values.update(overrides)
    settings = Settings(**values)
    if settings.database_url is None and not settings.database_file.exists():
        settings.ensure_data_dir()
        shutil.copyfile(_migrated_sqlite(), settings.database_file)
    return settings


def start_parsed(parsed: Any, variables: dict[str, Any] | None = None, *, as_stored: bool = False) -> tuple[Any, Any]:
    """Start a parsed process (a parse_files result) on a wall-clock runtime, for engine-level tests; with
    as_stored, from the spec as stored with its definition version."""
    from service.clock import Clock
    from service.engine.calendar import BusinessCalendar
    from service.engine.runtime import ProcessModel, Runtime
    from service.engine.serializer import dump_spec, load_spec

    spec, subs = parsed.spec, parsed.subprocess_specs
    if as_stored:
        spec, subs = load_spec(dump_spec(spec, subs))
    runtime = Runtime(Clock(), BusinessCalendar())
    return runtime, runtime.start(ProcessModel(1, parsed.key, spec, subs), dict(variables or {}))


def migrate_to(url: str, revision: str, down: bool = False) -> None:
    """Upgrade (or, with down, downgrade) the database at url to an Alembic revision ("head" for the newest)."""
    from alembic import command
    from alembic.config import Config

    from service.db.migrate import migrations_dir

    engine = make_engine(url)
    try:
        with engine.connect() as connection:  # not in a transaction: as alembic's command line runs them
            config = Config()
            config.set_main_option("script_location", str(migrations_dir()))
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
            connection.commit()
    finally:
        engine.dispose()
