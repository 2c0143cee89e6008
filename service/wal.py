"""SQLite's write-ahead log, copied back into the database file by a thread of its own.

SQLite checkpoints by default in the commit that takes the log past 1000 pages (wal_autocheckpoint): that commit
copies the pages into the database file and syncs both files, several milliseconds on a slow disk, while the
request that committed waits for it, and with it every other change of the process (they are written one at a
time). The service's write connections switch that off (service/db/session.py, checkpoint_in_background) and this
thread checkpoints every second instead, PASSIVE: it copies what no reader still needs, and neither waits for nor
blocks readers and writers. A process without it (a command such as `govflow deploy`) leaves its few pages to the
service's thread or to SQLite's checkpoint when the database's last connection closes."""
from __future__ import annotations

import logging
from typing import NamedTuple

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from service.background import LoopThread

log = logging.getLogger("govflow")


class Checkpoint(NamedTuple):
    busy: bool  # another checkpoint ran at the same time
    logged: int  # pages in the log
    copied: int  # pages of it now in the database file


class WalCheckpointer(LoopThread):
    thread_name = "govflow-wal-checkpoint"

    def __init__(self, engine: Engine, interval_seconds: float = 1.0) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        # a connection of its own for each round, outside the pools that requests and workers draw from
        self.engine = create_engine(engine.url, poolclass=NullPool, connect_args={"check_same_thread": False})

    @staticmethod
    def applies(engine: Engine) -> bool:
        """A SQLite database in a file (an in-memory one has no log)."""
        return engine.dialect.name == "sqlite" and (engine.url.database or ":memory:") != ":memory:"

    def run_once(self) -> Checkpoint:
        with self.engine.connect() as connection:
            busy, logged, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return Checkpoint(bool(busy), int(logged), int(copied))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.run_once()
            except Exception:
                log.exception("checkpoint of the SQLite write-ahead log failed")

    def stop(self) -> None:
        super().stop()
        self.engine.dispose()
