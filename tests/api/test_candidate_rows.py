"""A task's candidate rows keep its status and creation time, so a group's inbox is one range of
ix_task_candidate_inbox (tests/api/test_query_plans.py has its plan), and its due date and whether it is claimed, so
the unclaimed tasks offered to a department, the most urgent first (the console's inbox), are ranges of
ix_task_candidate_offered (tests/api/test_console_inbox_order.py): they follow the task through claims, releases,
completion and cancellation, the test suite checks them after every write transaction (AppContext.write, a test
setting), and migrations 0013 and 0015 fill them in for the rows a database already has."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from service.auth import Principal
from service.db.migrate import upgrade
from service.db.models import HumanTask, TaskCandidate
from service.db.session import make_engine
from service.services import tasks as tasks_service
from tests.api.test_scale_out import new_database
from tests.api.test_schema import indexes_of, insert_orphan_candidate
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


def _claimed(api: Api, task_id: str) -> set[tuple[str, bool, Any]]:
    with api.server.ctx.read() as session:
        return {(r.status, r.claimed, r.due_at) for r in session.execute(
            select(TaskCandidate).where(TaskCandidate.task_id == task_id)).scalars()}


def test_the_candidate_rows_follow_their_task_through_claims_and_releases(api: Api) -> None:
    """Claimed, released, claimed again and completed; completed without a claim (the completer becomes the
    assignee); the task's due date is on its rows from the start."""
    task = api.start("deadlines", {}, business_key="CL-1")["open_tasks"][0]
    due = datetime.fromisoformat(task["due_at"])
    oa = api.as_("oa", "applicant")
    assert _claimed(api, task["id"]) == {("open", False, due)}
    assert oa.post(f"/tasks/{task['id']}/claim").status_code == 200
    assert _claimed(api, task["id"]) == {("open", True, due)}
    assert oa.post(f"/tasks/{task['id']}/unclaim").status_code == 200
    assert _claimed(api, task["id"]) == {("open", False, due)}
    assert oa.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = oa.post(f"/tasks/{task['id']}/complete", json={"variables": {}})
    assert r.status_code == 200, r.text
    assert _claimed(api, task["id"]) == {("completed", True, due)}
    review = api.start("review", REVIEW, business_key="CL-2")["open_tasks"][0]
    unclaimed, due = review["id"], datetime.fromisoformat(review["due_at"]) if review["due_at"] else None
    assert _claimed(api, unclaimed) == {("open", False, due)}
    r = api.as_("li", "data_bureau").post(f"/tasks/{unclaimed}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200, r.text
    assert _claimed(api, unclaimed) == {("completed", True, due)}


def test_a_claim_released_while_its_completion_runs_leaves_the_rows_claimed(api: Api,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """li claims and completes; while the engine runs the completion, an administrator releases the claim. The
    completion still takes the task (unclaimed, or claimed by li) and makes li its assignee: its rows say claimed,
    whatever the task's holder was when the completion read it."""
    task_id = api.start("review", REVIEW, business_key="CL-4")["open_tasks"][0]["id"]
    li = api.as_("li", "data_bureau")
    assert li.post(f"/tasks/{task_id}/claim").status_code == 200
    ctx = api.server.ctx
    run_engine = ctx.run_engine

    def released_meanwhile(op: str, *args: Any, **kwargs: Any) -> Any:
        if op == "complete":
            with ctx.write() as session:
                tasks_service.unclaim(ctx, session, Principal("admin", frozenset(), True), task_id)
        return run_engine(op, *args, **kwargs)

    monkeypatch.setattr(ctx, "run_engine", released_meanwhile)
    r = li.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200, r.text
    assert api.admin.get(f"/tasks/{task_id}").json()["assignee"] == "li"
    assert {(status, claimed) for status, claimed, _ in _claimed(api, task_id)} == {("completed", True)}


def test_a_task_claimed_without_its_candidate_rows_is_caught_before_the_commit(api: Api) -> None:
    task_id = api.start("review", REVIEW, business_key="CL-3")["open_tasks"][0]["id"]
    with pytest.raises(AssertionError, match="out of step") as caught, api.server.ctx.write() as session:
        session.execute(update(HumanTask).where(HumanTask.id == task_id).values(assignee="li"))
    assert task_id in str(caught.value)
    with pytest.raises(AssertionError, match="out of step"), api.server.ctx.write() as session:
        session.execute(update(HumanTask).where(HumanTask.id == task_id).values(due_at=datetime(2030, 1, 1, tzinfo=UTC)))
    assert api.admin.get(f"/tasks/{task_id}").json()["assignee"] is None


def test_migration_0015_goes_down_and_up_over_rows(tmp_path: Path, database_url: str | None) -> None:
    """Down to 0014 the rows lose due_at and claimed, and the two indexes of the unclaimed tasks go;
    up again each row takes its task's due date and whether it is claimed, and the console's inbox lists the same."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = str(api.server.ctx.engine.url.render_as_string(hide_password=False))
            dated = [api.start("deadlines", {}, business_key=f"M15-{i}")["open_tasks"][0]["id"] for i in range(3)]
            plain = api.start("review", REVIEW, business_key="M15-R")["open_tasks"][0]["id"]
            oa = api.as_("oa", "applicant")
            assert oa.post(f"/tasks/{dated[0]}/claim").status_code == 200
            assert oa.post(f"/tasks/{dated[1]}/complete", json={"variables": {}}).status_code == 200
            with api.server.ctx.read() as session:
                stored = {(r.task_id, r.kind, r.value, r.status, r.created_at, r.due_at, r.claimed) for r in
                          session.execute(select(TaskCandidate)).scalars()}
                before = tasks_service.most_urgent(session, Principal("oa", frozenset({"applicant"})), offered=True,
                                                   process_key=None, only_overdue=False, now=api.clock.now(), limit=9)
        assert {(r[0], r[5] is not None, r[6]) for r in stored} >= {
            (dated[0], True, True), (dated[1], True, True), (dated[2], True, False)}
        assert {r[6] for r in stored if r[0] == plain} == {False}
        assert [t.id for t in before[0]] == [dated[2]] and before[1] == 1
        migrate_to(url, "0014", down=True)
        columns, indexes = _candidate_columns(url)
        assert "due_at" not in columns and "claimed" not in columns
        assert set(indexes) == {"ix_task_candidate_inbox"}
        migrate_to(url, "head")
        columns, indexes = _candidate_columns(url)
        assert {"due_at", "claimed"} <= set(columns)
        assert indexes["ix_task_candidate_offered"] == ["kind", "value", "status", "claimed", "due_at", "created_at",
                                                        "task_id"]
        assert indexes["ix_task_candidate_unclaimed"] == ["kind", "value", "status", "claimed", "created_at",
                                                          "task_id"]
        with served(tmp_path, url) as api, api.server.ctx.read() as session:
            assert {(r.task_id, r.kind, r.value, r.status, r.created_at, r.due_at, r.claimed) for r in
                    session.execute(select(TaskCandidate)).scalars()} == stored
            after = tasks_service.most_urgent(session, Principal("oa", frozenset({"applicant"})), offered=True,
                                              process_key=None, only_overdue=False, now=api.clock.now(), limit=9)
            assert after == before


def _candidate_columns(url: str) -> tuple[list[str], dict[str, list[str | None]]]:
    engine = make_engine(url)
    try:
        columns = [c["name"] for c in inspect(engine).get_columns("task_candidate")]
    finally:
        engine.dispose()
    return columns, indexes_of(url, "task_candidate")


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
        migrate_to(url, "0013")
        columns, indexes = _candidate_columns(url)
        assert {"status", "created_at"} <= set(columns)
        assert indexes == {"ix_task_candidate_inbox": ["kind", "value", "status", "created_at", "task_id"]}
        migrate_to(url, "head")
        with served(tmp_path, url) as api:
            with api.server.ctx.read() as session:
                assert {(r.task_id, r.kind, r.value, r.status, r.created_at) for r in
                        session.execute(select(TaskCandidate)).scalars()} == stored
            assert {status: _inbox(api, "data_bureau", status)
                    for status in ("open", "completed", "cancelled")} == before


def test_migration_0013_drops_a_candidate_row_whose_task_is_gone(tmp_path: Path) -> None:
    """Only SQLite can hold one (its foreign keys off at some time): the row could take no task's values, and no list
    shows it; before, the upgrade failed on it (NOT NULL) and the service did not start."""
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    migrate_to(url, "0012")
    insert_orphan_candidate(url, {})
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(select(TaskCandidate.task_id)).all() == []
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        engine.dispose()


def test_a_task_closed_without_its_candidate_rows_is_not_in_the_open_inbox(api: Api) -> None:
    """A replica of the release before migration 0013 (the README's release order stops it first) would close a task
    and leave its candidate rows marked open: the open inbox checks the task's own status too. Such a replica cannot
    create a task at all (the new columns have no default)."""
    closed = api.start("review", REVIEW, business_key="OLD-1")["open_tasks"][0]["id"]
    api.clock.advance(timedelta(minutes=1))
    kept = api.start("review", REVIEW, business_key="OLD-2")["open_tasks"][0]["id"]
    with api.server.ctx.engine.begin() as connection:  # as the previous release writes, outside ctx.write's check
        connection.execute(update(HumanTask).where(HumanTask.id == closed).values(status="completed"))
    assert _inbox(api, "data_bureau") == [kept]
    with pytest.raises(IntegrityError), api.server.ctx.engine.begin() as connection:
        connection.execute(text("INSERT INTO task_candidate (task_id, kind, value) VALUES (:t, 'group', 'audit')"),
                           {"t": kept})


TWO_STEPS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="twice" name="两步" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="a" name="第一步" camunda:candidateGroups="g1, g1">
      <bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f1</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="b" name="第二步" camunda:candidateGroups="${handlers}">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="a" />
    <bpmn:sequenceFlow id="f1" sourceRef="a" targetRef="b" />
    <bpmn:sequenceFlow id="f2" sourceRef="b" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


def test_a_group_named_twice_is_offered_the_task_once(api: Api) -> None:
    """candidateGroups naming a group twice, written so or from an expression: the task is offered to it once (its
    candidate row's key is task, kind, value). Before, the start was refused as a duplicate business key and the
    completion before such a task as a concurrent change, on every retry."""
    r = api.admin.post("/deployments", files=[("files", ("twice.bpmn", TWO_STEPS.encode()))])
    assert r.status_code == 201, r.text
    instance = api.start("twice", {"handlers": "g2, g2,g3"}, business_key="TWICE-1")
    [first] = instance["open_tasks"]
    assert first["candidate_groups"] == ["g1"] and _candidates(api, first["id"]) == {("group", "g1", "open")}
    r = api.as_("li", "g1").post(f"/tasks/{first['id']}/complete", json={"variables": {}})
    assert r.status_code == 200, r.text
    [second] = r.json()["next_tasks"]
    assert second["candidate_groups"] == ["g2", "g3"]
    assert _candidates(api, second["id"]) == {("group", "g2", "open"), ("group", "g3", "open")}
    assert _inbox(api, "g2") == [second["id"]]
