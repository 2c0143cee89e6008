"""The service freezes what its start-up built out of the garbage collector's full collections (service/app.py),
so a full collection under load walks only what came later (measured in process: about 5 ms instead of about
100 ms), and unfreezes it when it stops; an engine worker freezes its libraries and runtime the same way."""
from __future__ import annotations

import gc
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
