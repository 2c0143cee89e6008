"""What the hot requests cost in SQL statements (a request's cost is mostly its statements, not the engine): each is
counted over the whole request, reads and writes, and held to what it needs. A new statement on these paths has to
be a deliberate change of the numbers below, and a statement that comes back with the history of an instance (a
review loop) fails the last test."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import served
from tests.support import Api, executed


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service as it runs, without the test suite's check of the stored state (it reads the state back)."""
    with served(tmp_path, database_url, verify_state_storage=False) as a:
        yield a


# statements per request, not counting BEGIN (SQLite's, sent by the service; PostgreSQL's is implicit)
# read: the definition with the running duplicate; write: instance (with the audit anchor), state row, task,
# candidate, audit events, outbox
START = 7
INBOX = 1
# task; claim and its candidate rows (the unclaimed inboxes read it there), the answer (instance, read under its lock:
# it carries the audit head; completed tasks); anchor, audit event
CLAIM = 7
# read: task with its instance and whether another task is open; write: the completion and its candidate rows' status
# (a group's inbox reads it there), instance (state header and the audit anchor, chained from the head read), the
# changed state rows (deleted, inserted, rewritten), the new task and its candidate, audit events, outbox (no open
# tasks are read: the completed one was the only one; no waits are read: the instance waited on nothing)
COMPLETE = 11


def _count(api: Api, request: Callable[[], httpx.Response], expected_status: int) -> tuple[int, httpx.Response]:
    with executed(api.server) as statements:
        r = request()
    assert r.status_code == expected_status, r.text
    return len([s for s in statements if s.sql.strip() not in ("BEGIN", "BEGIN IMMEDIATE")]), r


def _dialect(api: Api) -> str:
    return str(api.server.ctx.engine.dialect.name)


def test_start_claim_complete_and_the_inbox_take_the_statements_they_need(api: Api) -> None:
    applicant = api.as_("oa", "applicant")
    reviewer = api.as_("li", "data_bureau")
    variables = {"project_name": "x", "budget_wan": 10}
    api.start("review", variables, business_key="WARM")  # the definition's files are read once per process
    started, r = _count(api, lambda: applicant.post("/process-instances", json={
        "process_key": "review", "business_key": "PR-1", "variables": variables}), 201)
    instance_id = r.json()["id"]
    [task] = r.json()["open_tasks"]
    listed, r = _count(api, lambda: reviewer.get("/tasks", params={"candidate_group": "data_bureau", "limit": 1}),
                       200)
    claimed, _ = _count(api, lambda: reviewer.post(f"/tasks/{task['id']}/claim"), 200)
    completed, r = _count(api, lambda: reviewer.post(f"/tasks/{task['id']}/complete",
                                                      json={"variables": {"decision": "revise"}}), 200)
    [revise] = r.json()["next_tasks"]
    assert revise["element_id"] == "revise_task"
    assert api.open_elements(instance_id) == ["revise_task"]
    counts = {"start": started, "inbox": listed, "claim": claimed, "complete": completed}
    assert counts == {"start": START, "inbox": INBOX, "claim": CLAIM, "complete": COMPLETE}, (_dialect(api), counts)


def test_a_completion_costs_the_same_statements_after_many_review_rounds(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="LOOP")
    reviewer = api.as_("li", "data_bureau")
    applicant = api.as_("oa", "applicant")

    def round_trip() -> tuple[int, int]:
        review = api.open_task(inst["id"], "review_task")
        n_review, _ = _count(api, lambda: reviewer.post(f"/tasks/{review['id']}/complete",
                                                         json={"variables": {"decision": "revise"}}), 200)
        revise = api.open_task(inst["id"], "revise_task")
        n_revise, _ = _count(api, lambda: applicant.post(f"/tasks/{revise['id']}/complete", json={
            "variables": {"budget_wan": 10}}), 200)
        return n_review, n_revise

    first = round_trip()
    for _ in range(15):
        last = round_trip()
    assert last == first, (first, last)


def test_the_common_inbox_is_one_statement_without_a_transaction(api: Api) -> None:
    """GET /tasks of the caller's own group is read on a plain connection (tasks.inbox): no transaction is begun (on
    SQLite no BEGIN is sent: the one SELECT reads one snapshot), and no ORM session is opened for it. A filter that
    needs the general query (a due date) still reads in a read transaction. (SQLite's BEGIN goes to the driver's
    connection directly, so it is seen as the engine's begin event, not as a statement.)"""
    api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="TX-1")
    reviewer = api.as_("li", "data_bureau")
    sessions: list[object] = []
    from sqlalchemy import event

    factory, engine = api.server.ctx.read_factory, api.server.ctx.read_engine
    began: list[object] = []
    listener = lambda session, transaction: sessions.append(session)  # noqa: E731
    begin = lambda conn: began.append(conn)  # noqa: E731
    event.listen(factory, "after_transaction_create", listener)
    event.listen(engine, "begin", begin)
    try:
        with executed(api.server) as statements:
            r = reviewer.get("/tasks", params={"candidate_group": "data_bureau"})
        assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
        assert sessions == [] and began == []
        sql = [s.sql.strip() for s in statements]
        assert len(sql) == 1 and sql[0].startswith("SELECT"), sql
        with executed(api.server) as statements:
            r = reviewer.get("/tasks", params={"candidate_group": "data_bureau", "due_before": "2099-01-01T00:00:00Z"})
        assert r.status_code == 200, r.text
        assert sessions != [] and began != []
        assert [s.sql.strip() for s in statements][0].startswith("SELECT")
    finally:
        event.remove(factory, "after_transaction_create", listener)
        event.remove(engine, "begin", begin)


def test_a_step_that_keeps_the_instance_running_leaves_its_indexed_status_alone(api: Api) -> None:
    """The instance's status and ended_at are indexed: an UPDATE that SETs them rewrites those index entries on
    SQLite even when they do not change, so a step that keeps the instance running leaves them out; the step that
    ends it sets them (and the instance list and the ended index see it)."""
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="IDX-1")

    def instance_updates(element: str, decision: str) -> list[str]:
        task = api.open_task(inst["id"], element)
        reviewer = api.as_("li", "data_bureau")
        with executed(api.server) as statements:
            r = reviewer.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": decision}})
        assert r.status_code == 200, r.text
        return [s.sql.split(" WHERE ")[0] for s in statements if s.sql.startswith("UPDATE process_instance")]

    [running_on] = instance_updates("review_task", "revise")
    assert "status" not in running_on and "ended_at" not in running_on and "state_json" in running_on, running_on
    api.complete(inst["id"], "revise_task", {"budget_wan": 10})
    [ending] = instance_updates("review_task", "reject")
    assert "status=" in ending and "ended_at=" in ending, ending
    view = api.instance(inst["id"])
    assert view["status"] == "completed" and view["end_event"] == "end_rejected" and view["ended_at"] is not None
    listed = api.admin.get("/process-instances", params={"status": "completed", "business_key": "IDX-1"}).json()
    assert [i["id"] for i in listed["items"]] == [inst["id"]]
    assert api.admin.get("/process-instances", params={"status": "running", "business_key": "IDX-1"}).json()[
        "items"] == []
    # the business key is free again for a new running instance (the unique index of running keys saw the end)
    assert api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="IDX-1")["status"] == "running"
