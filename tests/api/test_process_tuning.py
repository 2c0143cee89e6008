"""The service freezes what its start-up built out of the garbage collector's full collections (service/app.py),
so a full collection under load walks only what came later (measured in process: about 5 ms instead of about
100 ms), and unfreezes it when it stops; an engine worker freezes its libraries and runtime the same way. While it runs, the GIL
changes hands every 0.5 ms rather than every 5 ms, so SQLite's writer gets it back soon after each statement."""
from __future__ import annotations

import gc
import sys
from pathlib import Path

from tests.conftest import _server
from tests.support import FIXTURES, Api


def test_start_up_is_frozen_while_the_service_runs_and_collected_after(tmp_path: Path,
                                                                      database_url: str | None) -> None:
    gc.unfreeze()
    server = _server(tmp_path, database_url, FIXTURES)
    server.start()
    api = Api(server)
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 50_000, frozen  # the libraries, the app and its routes, the parsed diagrams
        api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="GC-1")
        gc.collect()
        assert gc.get_freeze_count() > frozen * 0.9  # a full collection leaves it frozen (a few were freed)
    finally:
        api.close()
        server.stop()
    assert gc.get_freeze_count() == 0


def test_an_engine_worker_freezes_what_it_started_with(api: Api) -> None:
    reply = api.server.ctx.pool.run({"op": "ping"}, model_files=lambda: {})
    assert isinstance(reply, dict) and reply["ok"] and reply["frozen"] > 10_000, reply


def test_the_switch_interval_is_short_while_the_service_runs_and_restored_after(tmp_path: Path,
                                                                               database_url: str | None) -> None:
    before = sys.getswitchinterval()
    assert before > 0.0005  # CPython's default (5 ms): the test would prove nothing below it
    server = _server(tmp_path, database_url, FIXTURES)
    server.start()
    try:
        assert sys.getswitchinterval() == 0.0005
    finally:
        server.stop()
    assert sys.getswitchinterval() == before


def test_two_services_that_stop_in_the_order_they_started_leave_the_interval_as_it_was(
        tmp_path: Path, database_url: str | None) -> None:
    before = sys.getswitchinterval()
    first = _server(tmp_path / "a", database_url, FIXTURES)
    second = _server(tmp_path / "b", database_url, FIXTURES)
    first.start()
    try:
        second.start()
        try:
            first.stop()
            assert sys.getswitchinterval() == 0.0005  # the second still runs
        finally:
            second.stop()
    finally:
        first.stop()
    assert sys.getswitchinterval() == before
