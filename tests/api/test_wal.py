"""SQLite's write-ahead log is checkpointed by a thread of the service (service/wal.py), not by the commit that
takes it past 1000 pages: that commit used to copy the log into the database file and sync both while every other
change of the process waited. The database file only grows when a checkpoint copies pages into it, which is what
these tests watch. They run on a SQLite file whatever database the suite runs on."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from service.db.session import make_engine
from service.wal import WalCheckpointer
from tests.conftest import _server
from tests.support import FIXTURES, Server

MB = 1024 * 1024


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    server = _server(tmp_path, None, FIXTURES)
    server.start()
    yield server
    server.stop()


def _database_file(server: Server) -> Path:
    return Path(server.ctx.engine.url.database)


def _write(server: Server, megabytes: int) -> None:
    """Some megabytes of new pages, committed through the service's own write transaction."""
    with server.ctx.write() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS wal_probe (body BLOB)"))
        for _ in range(megabytes):
            session.execute(text("INSERT INTO wal_probe VALUES (randomblob(:n))"), {"n": MB})


def _checkpointer(server: Server) -> WalCheckpointer:
    [found] = [w for w in server.app.state.workers if isinstance(w, WalCheckpointer)]
    return found


def test_a_commit_leaves_the_log_to_the_checkpoint_thread(sqlite_server: Server) -> None:
    server = sqlite_server
    checkpointer = _checkpointer(server)
    checkpointer.stop()  # its rounds are run by hand below
    with server.ctx.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    database = _database_file(server)
    checkpointer.run_once()
    before = database.stat().st_size
    _write(server, 6)  # about 1,500 pages: past SQLite's 1,000-page mark
    assert database.stat().st_size - before < MB, "the commit copied the log into the database file"
    done = checkpointer.run_once()
    assert not done.busy and done.logged >= 1500 and done.copied == done.logged, done
    assert database.stat().st_size - before > 5 * MB


def test_the_thread_checkpoints_on_its_own(sqlite_server: Server) -> None:
    server = sqlite_server
    _checkpointer(server).stop()
    database = _database_file(server)
    quick = WalCheckpointer(server.ctx.engine, interval_seconds=0.05)
    quick.run_once()
    before = database.stat().st_size
    quick.start()
    try:
        _write(server, 3)
        deadline = time.monotonic() + 10
        while database.stat().st_size - before < 2 * MB:
            assert time.monotonic() < deadline, "no checkpoint within 10 s"
            time.sleep(0.02)
    finally:
        quick.stop()


def test_without_the_service_sqlite_checkpoints_as_it_does_by_default(tmp_path: Path) -> None:
    """An engine made without checkpoint_in_background (the commands' own, e.g. `govflow migrate`) keeps SQLite's
    automatic checkpoints: a process without the thread does not leave its log to grow."""
    engine = make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        engine.dispose()


def test_the_thread_runs_only_for_a_sqlite_file(tmp_path: Path) -> None:
    assert WalCheckpointer.applies(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    assert not WalCheckpointer.applies(make_engine("sqlite://"))
    assert not WalCheckpointer.applies(make_engine("sqlite:///:memory:"))
    assert not WalCheckpointer.applies(make_engine("postgresql+psycopg://u@127.0.0.1:1/none"))
