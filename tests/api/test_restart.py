"""A restart of the service finds every instance where it was."""
from __future__ import annotations

from pathlib import Path

from service.clock import FrozenClock
from tests.support import FIXTURES, T0, Api, Server, make_settings


def test_restart_keeps_every_instance_where_it_was(tmp_path: Path, database_url: str | None) -> None:
    settings = make_settings(tmp_path, database_url, FIXTURES)
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    a = api.start("review", {"project_name": "a", "budget_wan": 150}, business_key="R-A")
    b = api.start("review", {"project_name": "b", "budget_wan": 10}, business_key="R-B")
    api.complete(a["id"], "review_task", {"decision": "pass"})
    api.complete(b["id"], "review_task", {"decision": "pass"})
    before = {i: api.instance(i) for i in (a["id"], b["id"])}
    api.close()
    server.stop()

    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        for instance_id, view in before.items():
            assert api.instance(instance_id) == view
        # deployment on start did not create a new version
        assert [v["version"] for v in api.admin.get("/process-definitions/review/versions").json()] == [1]
        api.complete(a["id"], "approve_task", {"approval": "pass"})
        api.message("contract_signed", "R-B")
        assert api.open_elements(b["id"]) == ["file_contract"]
        assert [w["name"] for w in api.waiting(a["id"])] == ["contract_signed"]
    finally:
        api.close()
        server.stop()
