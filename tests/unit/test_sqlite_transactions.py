"""On SQLite, a write transaction takes the database's write lock when it begins (BEGIN IMMEDIATE: writers queue
for the lock at the start instead of failing when a read turns into a write), a read transaction never takes it,
and a database another writer holds past the busy timeout is SQLAlchemy's OperationalError (answered 503)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.db.session import make_engine


def _another_writer_can_begin(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_a_write_transaction_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        assert not _another_writer_can_begin(path)
    assert _another_writer_can_begin(path)
    engine.dispose()


def test_a_read_transaction_never_takes_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    make_engine(f"sqlite:///{path}").dispose()
    reader = make_engine(f"sqlite:///{path}", read_only=True)
    with reader.begin() as conn:
        conn.execute(text("SELECT 1"))
        assert _another_writer_can_begin(path)
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
    reader.dispose()


def test_a_database_another_writer_holds_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout=0.05)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked") as raised, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert "BEGIN IMMEDIATE" in str(raised.value)
    holder.execute("ROLLBACK")
    holder.close()
    with engine.begin() as conn:  # the connection that failed to begin is usable again
        conn.execute(text("INSERT INTO t VALUES (2)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()
