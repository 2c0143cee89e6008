"""A task's candidate rows keep its status and creation time, so a group's inbox is one range of
ix_task_candidate_inbox (tests/api/test_query_plans.py has its plan): they follow the task through completion and
cancellation, the test suite checks them after every write transaction (AppContext.write, a test setting), and
migration 0013 fills them in for the rows a database already has."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, update

from service.db.models import HumanTask, TaskCandidate
from service.db.session import make_engine
from tests.api.test_scale_out import new_database
from tests.conftest import served
from tests.support import Api, migrate_to

REVIEW = {"project_name": "x", "budget_wan": 10}


def _candidates(api: Api, task_id: str) -> set[tuple[str, str, str]]:
    with api.server.ctx.read() as session:
        return {(r.kind, r.value, r.status) for r in session.execute(
            select(TaskCandidate).where(TaskCandidate.task_id == task_id)).scalars()}


def _inbox(api: Api, group: str, status: str = "open") -> list[str]:
    r = api.as_("li", group).get("/tasks", params={"candidate_group": group, "status": status})
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


def test_the_candidate_rows_follow_their_task_from_open_to_completed_and_cancelled(api: Api) -> None:
    done = api.start("review", REVIEW, business_key="CR-1")["open_tasks"][0]["id"]
    api.clock.advance(timedelta(minutes=1))
    dropped = api.start("review", REVIEW, business_key="CR-2")
    other = dropped["open_tasks"][0]["id"]
    assert _candidates(api, done) == {("group", "data_bureau", "open")}
    assert _inbox(api, "data_bureau") == [done, other]
    r = api.as_("li", "data_bureau").post(f"/tasks/{done}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200, r.text
    assert _candidates(api, done) == {("group", "data_bureau", "completed")}
    r = api.admin.post(f"/process-instances/{dropped['id']}/cancel", json={"reason": "项目撤销"})
    assert r.status_code == 200, r.text
    assert _candidates(api, other) == {("group", "data_bureau", "cancelled")}
    assert _inbox(api, "data_bureau") == []
    assert _inbox(api, "data_bureau", "completed") == [done]
    assert _inbox(api, "data_bureau", "cancelled") == [other]


def test_a_task_closed_without_its_candidate_rows_is_caught_before_the_commit(api: Api) -> None:
    """The suite's check: a statement that closes a task but leaves its candidate rows open fails the write, and
    nothing of it is stored."""
    task_id = api.start("review", REVIEW, business_key="CR-3")["open_tasks"][0]["id"]
    with pytest.raises(AssertionError, match="out of step") as caught, api.server.ctx.write() as session:
        session.execute(update(HumanTask).where(HumanTask.id == task_id).values(status="completed"))
    assert task_id in str(caught.value)
    assert api.admin.get(f"/tasks/{task_id}").json()["status"] == "open"
    assert _inbox(api, "data_bureau") == [task_id]


def _candidate_columns(url: str) -> tuple[list[str], dict[str, list[str | None]]]:
    engine = make_engine(url)
    try:
        found = inspect(engine)
        return ([c["name"] for c in found.get_columns("task_candidate")],
                {ix["name"]: list(ix["column_names"]) for ix in found.get_indexes("task_candidate")
                 if ix["name"] is not None})
    finally:
        engine.dispose()


def test_migration_0013_goes_down_and_up_over_rows(tmp_path: Path, database_url: str | None) -> None:
    """Down to 0012 the rows lose the columns and the index goes back to (kind, value, task_id); up again each row
    takes its task's status and creation time, and the inbox lists the same tasks, open, completed and cancelled."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = str(api.server.ctx.engine.url.render_as_string(hide_password=False))
            started = [api.start("review", REVIEW, business_key=f"MG-{i}") for i in range(3)]
            tasks = [i["open_tasks"][0]["id"] for i in started]
            r = api.as_("li", "data_bureau").post(f"/tasks/{tasks[0]}/complete",
                                                   json={"variables": {"decision": "pass"}})
            assert r.status_code == 200, r.text
            r = api.admin.post(f"/process-instances/{started[2]['id']}/cancel", json={"reason": "项目撤销"})
            assert r.status_code == 200, r.text
            before = {status: _inbox(api, "data_bureau", status) for status in ("open", "completed", "cancelled")}
            with api.server.ctx.read() as session:
                stored = {(r.task_id, r.kind, r.value, r.status, r.created_at) for r in
                          session.execute(select(TaskCandidate)).scalars()}
        assert before == {"open": [tasks[1]], "completed": [tasks[0]], "cancelled": [tasks[2]]}
        migrate_to(url, "0012", down=True)
        columns, indexes = _candidate_columns(url)
        assert "status" not in columns and "created_at" not in columns
        assert indexes == {"ix_task_candidate_lookup": ["kind", "value", "task_id"]}
        migrate_to(url, "head")
        columns, indexes = _candidate_columns(url)
        assert {"status", "created_at"} <= set(columns)
        assert indexes == {"ix_task_candidate_inbox": ["kind", "value", "status", "created_at", "task_id"]}
        with served(tmp_path, url) as api:
            with api.server.ctx.read() as session:
                assert {(r.task_id, r.kind, r.value, r.status, r.created_at) for r in
                        session.execute(select(TaskCandidate)).scalars()} == stored
            assert {status: _inbox(api, "data_bureau", status)
                    for status in ("open", "completed", "cancelled")} == before
