"""Fixtures: each test gets the real service on a fresh database (SQLite file, or PostgreSQL when
GOVFLOW_TEST_DATABASE_URL is set), served over HTTP on loopback. Under pytest-xdist each worker has its own
PostgreSQL database (<db>_gw0, <db>_gw1, …), created next to the given one when missing."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.clock import FrozenClock
from tests.support import (
    FIXTURES,
    REPO,
    T0,
    Api,
    Server,
    database_for_worker,
    make_settings,
    preload_engine_workers,
    reset_postgres,
    share_compiled_statements,
    share_parsed_diagrams,
)

share_parsed_diagrams()
share_compiled_statements()
preload_engine_workers()
PG_URL = database_for_worker(os.environ.get("GOVFLOW_TEST_DATABASE_URL"), os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.fixture
def database_url(tmp_path: Path) -> str | None:
    if PG_URL:
        reset_postgres(PG_URL) if _pg_migrated() else None
        return PG_URL
    return None  # the default: a SQLite file in the test's data directory


_migrated = {"done": False}


def _pg_migrated() -> bool:
    if _migrated["done"]:
        return True
    from service.db.migrate import upgrade
    from service.db.session import make_engine

    engine = make_engine(PG_URL or "")
    upgrade(engine)
    engine.dispose()
    _migrated["done"] = True
    return True


def _server(tmp_path: Path, database_url: str | None, bpmn_dir: Path, **overrides: object) -> Server:
    settings = make_settings(tmp_path, database_url, bpmn_dir, **overrides)
    return Server(settings, FrozenClock(T0))


@contextmanager
def served(tmp_path: Path, database_url: str | None, bpmn_dir: Path = FIXTURES, **overrides: object) -> Iterator[Api]:
    """The service with these settings, running while the block runs, and a client of it."""
    s = _server(tmp_path, database_url, bpmn_dir, **overrides)
    s.start()
    api = Api(s)
    try:
        yield api
    finally:
        api.close()
        s.stop()


@pytest.fixture
def server(tmp_path: Path, database_url: str | None) -> Iterator[Server]:
    """The service with the test fixtures' diagrams deployed."""
    s = _server(tmp_path, database_url, FIXTURES)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    a = Api(server)
    yield a
    a.close()


@pytest.fixture
def lifecycle_api(request: pytest.FixtureRequest, tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with lifecycles from the repository's bpmn/ deployed: only the module's
    PROCESS_KEY (bpmn/<key>.bpmn and bpmn/<key>.dmn) when the test module sets one, else all."""
    key = getattr(request.module, "PROCESS_KEY", None)
    bpmn_dir = REPO / "bpmn"
    if key:
        bpmn_dir = tmp_path / "bpmn"
        bpmn_dir.mkdir()
        for suffix in (".bpmn", ".dmn"):
            source = REPO / "bpmn" / f"{key}{suffix}"
            if source.exists():
                shutil.copy(source, bpmn_dir / source.name)
    s = _server(tmp_path, database_url, bpmn_dir)
    s.start()
    a = Api(s)
    yield a
    a.close()
    s.stop()


@pytest.fixture
def patient(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with the default 30 s for a head, a body and an answer to leave."""
    with served(tmp_path, database_url, request_read_timeout_seconds=30.0) as api:
        yield api


@pytest.fixture
def hasty(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with 1 s for a head, a body and an answer to leave."""
    with served(tmp_path, database_url, request_read_timeout_seconds=1.0) as api:
        yield api
