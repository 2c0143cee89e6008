"""A request either changes everything it should or nothing: no half-written instance, and no
success answer for a change that was not committed."""
from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.support import Api


def _snapshot(api: Api, instance_id: str) -> tuple[dict, list, list]:
    view = api.instance(instance_id)
    history = api.admin.get(f"/process-instances/{instance_id}/history").json()["events"]
    tasks = api.admin.get("/tasks", params={"process_instance_id": instance_id, "status": "completed"}).json()
    return view, history, tasks["items"]


def test_a_failed_commit_is_not_reported_as_success(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10})
    before = _snapshot(api, inst["id"])
    task_id = inst["open_tasks"][0]["id"]
    calls = {"n": 0}

    def failing_commit(session: Session) -> None:
        calls["n"] += 1
        raise RuntimeError("disk full")

    # the commit of the write transaction fails (the change was written, not committed)
    event.listen(api.server.ctx.session_factory, "before_commit", failing_commit)
    try:
        r = api.as_("li", "data_bureau").post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    finally:
        event.remove(api.server.ctx.session_factory, "before_commit", failing_commit)
    assert calls["n"] == 1
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "disk full" not in r.text  # no raw exception text for clients
    assert _snapshot(api, inst["id"]) == before


def test_a_failure_after_the_state_was_written_leaves_nothing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10})
    before = _snapshot(api, inst["id"])
    import service.services.store as store

    def broken_sync(*args: object, **kwargs: object) -> None:
        raise RuntimeError("projection bug")

    monkeypatch.setattr(store, "_sync_waiting", broken_sync)
    r = api.as_("li", "data_bureau").post(f"/tasks/{inst['open_tasks'][0]['id']}/complete",
                                          json={"variables": {"decision": "pass"}})
    assert r.status_code == 500
    monkeypatch.undo()
    assert _snapshot(api, inst["id"]) == before
    # and the instance still works
    api.complete(inst["id"], "review_task", {"decision": "pass"})
