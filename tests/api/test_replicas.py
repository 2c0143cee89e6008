"""Two service processes on one database: each sees the other's changes (nothing stale is reused)."""
from __future__ import annotations

from pathlib import Path

from service.clock import FrozenClock
from tests.support import FIXTURES, T0, Api, Server, make_settings


def test_two_replicas_take_turns_on_one_instance(tmp_path: Path, database_url: str | None) -> None:
    settings = make_settings(tmp_path, database_url, FIXTURES)
    first, second = Server(settings, FrozenClock(T0)), Server(settings, FrozenClock(T0))
    first.start()
    second.start()
    a, b = Api(first), Api(second)
    try:
        inst = a.start("review", {"project_name": "x", "budget_wan": 10}, business_key="REP-1")
        a.complete(inst["id"], "review_task", {"decision": "revise"})       # replica A now holds the instance
        b.complete(inst["id"], "revise_task", {"budget_wan": 12})          # B changes it behind A's back
        a.complete(inst["id"], "review_task", {"decision": "revise"})       # A must see B's change
        b.complete(inst["id"], "revise_task", {"budget_wan": 14})
        out = a.complete(inst["id"], "review_task", {"decision": "reject"})
        assert out["end_event"] == "end_rejected"
        history = a.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]
        completed = [e["element_id"] for e in history if e["action"] == "task.completed"]
        assert completed == ["review_task", "revise_task", "review_task", "revise_task", "review_task"]
        assert b.instance(inst["id"])["variables"]["budget_wan"] == 14
    finally:
        a.close()
        b.close()
        first.stop()
        second.stop()
