"""Two statements the hot requests no longer run (tests/api/test_statement_counts.py): the audit chain's head is taken
from the instance row (claim reads it, a change's UPDATE returns it) instead of audit_event, and an instance that
waited on nothing (process_instance.waiting_count, written with the waiting rows) has no waiting rows read. What
they must keep: a chain that verifies and ends at the instance's anchor, also for an instance whose events predate
the anchor; a race that is a 409, never a 500; waiting rows that follow the engine's waits."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from service.db.models import ProcessInstance, WaitingEvent
from service.db.session import make_engine
from service.services.audit import AuditTrail
from tests.api.test_scale_out import new_database
from tests.conftest import _server
from tests.support import FIXTURES, Api, migrate_to

REVIEW = {"project_name": "x", "budget_wan": 10}  # under 100: a pass goes to filing, then waits for the contract


# ---- helpers ---------------------------------------------------------------------------------------------------

def _waits(api: Api, instance_id: str) -> tuple[int, list[str]]:
    """The instance's waiting_count and the elements of its waiting rows."""
    with api.server.ctx.read() as session:
        count = session.scalar(select(ProcessInstance.waiting_count).where(ProcessInstance.id == instance_id))
        rows = sorted(session.scalars(select(WaitingEvent.element_id).where(WaitingEvent.instance_id == instance_id)))
    return int(count or 0), rows


def _check_waits(api: Api, instance_id: str, expected: list[str]) -> None:
    count, rows = _waits(api, instance_id)
    assert rows == expected, rows
    assert count == len(rows), (count, rows)
    assert sorted(w["element_id"] for w in api.waiting(instance_id)) == expected


def _check_chain(api: Api, instance_id: str) -> list[dict[str, Any]]:
    """The chain verifies, has no gap, and ends where the instance's anchor says."""
    history = api.admin.get(f"/process-instances/{instance_id}/history", params={"verify": "true"}).json()
    assert history["verified"] is True, history
    events = history["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    with api.server.ctx.read() as session:
        anchor = session.execute(select(ProcessInstance.audit_seq, ProcessInstance.audit_head)
                                 .where(ProcessInstance.id == instance_id)).one()
    assert (anchor.audit_seq, anchor.audit_head) == (events[-1]["seq"], events[-1]["hash"])
    return list(events)


def _forget_anchor(api: Api, instance_id: str) -> None:
    """As an instance whose events were written before migration 0006: no head on the row."""
    with api.server.ctx.write() as session:
        session.execute(update(ProcessInstance).where(ProcessInstance.id == instance_id)
                        .values(audit_seq=None, audit_head=None))


def _client(api: Api, user: str, group: str) -> httpx.Client:
    return httpx.Client(base_url=api.server.url + "/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {api.token(user, (group,))}"})


# ---- the audit head --------------------------------------------------------------------------------------------

def test_claims_unclaims_comments_and_completions_chain_from_the_head_on_the_instance(api: Api) -> None:
    inst = api.start("review", REVIEW, business_key="HEAD-1")
    reviewer = api.as_("li", "data_bureau")
    applicant = api.as_("oa", "applicant")
    for _ in range(3):
        review = api.open_task(inst["id"], "review_task")
        for action in ("claim", "unclaim", "claim"):
            assert reviewer.post(f"/tasks/{review['id']}/{action}").status_code == 200
            _check_chain(api, inst["id"])
        assert reviewer.post(f"/tasks/{review['id']}/comments", json={"message": "材料不全"}).status_code == 201
        _check_chain(api, inst["id"])
        assert reviewer.post(f"/tasks/{review['id']}/complete", json={
            "variables": {"decision": "revise"}, "comment": "补充材料"}).status_code == 200
        _check_chain(api, inst["id"])
        revise = api.open_task(inst["id"], "revise_task")
        assert applicant.post(f"/tasks/{revise['id']}/complete", json={"variables": {"budget_wan": 10}}).status_code == 200
        _check_chain(api, inst["id"])
    events = _check_chain(api, inst["id"])
    assert [e["action"] for e in events].count("task.claimed") == 6
    assert [e["action"] for e in events].count("task.unclaimed") == 3


def test_an_instance_whose_events_predate_the_anchor_still_chains(api: Api) -> None:
    """audit_seq and audit_head are NULL on instances whose events were written before migration 0006 (there was
    no backfill): the head is read from audit_event then, and the anchor is set from the events written."""
    inst = api.start("review", REVIEW, business_key="HEAD-OLD")
    reviewer = api.as_("li", "data_bureau")
    review = api.open_task(inst["id"], "review_task")
    steps: list[Callable[[], httpx.Response]] = [
        lambda: reviewer.post(f"/tasks/{review['id']}/claim"),
        lambda: reviewer.post(f"/tasks/{review['id']}/unclaim"),
        lambda: reviewer.post(f"/tasks/{review['id']}/comments", json={"message": "看过"}),
        lambda: reviewer.post(f"/tasks/{review['id']}/complete", json={"variables": {"decision": "pass"}}),
        lambda: api.admin.post("/messages", json={"name": "contract_signed", "business_key": "HEAD-OLD"}),
    ]
    seen = len(_check_chain(api, inst["id"]))
    for step in steps:
        _forget_anchor(api, inst["id"])
        r = step()
        assert r.status_code in (200, 201), r.text
        events = _check_chain(api, inst["id"])
        assert len(events) > seen
        seen = len(events)
    assert [e["action"] for e in events][-2:] == ["message.correlated", "task.created"]


def test_a_claim_and_a_completion_racing_on_one_instance_are_each_done_once_or_refused(api: Api) -> None:
    """Two tasks of one instance (a parallel review): one is claimed twice while the other is completed, at the
    same moment. Each request is done exactly once (its event in the chain) or refused with 409 — never a 500 —
    and the chain verifies. A claim reads the chain's head under the instance row's lock (SQLite: the database's)
    and a completion takes it with its UPDATE of the row, so neither refuses the other: one claim and the
    completion succeed (with the head read without a lock, as from audit_event before, on PostgreSQL the one that
    came second often found its seq taken: a 409)."""
    for round_ in range(6):
        inst = api.start("parallel_review", {"project_name": "x"}, business_key=f"RACE-{round_}")
        funding = api.open_task(inst["id"], "funding_review")
        technical = api.open_task(inst["id"], "technical_review")
        requests: list[tuple[str, str, str, str, dict[str, Any] | None]] = [
            ("claim", "tech_a", "data_bureau", technical["id"], None),
            ("claim", "tech_b", "data_bureau", technical["id"], None),
            ("complete", "fin", "finance_bureau", funding["id"], {"variables": {"decision": "pass"}}),
        ]
        answers: dict[int, httpx.Response] = {}
        barrier = threading.Barrier(len(requests))

        def send(i: int, request: tuple[str, str, str, str, dict[str, Any] | None],
                 answers: dict[int, httpx.Response] = answers, barrier: threading.Barrier = barrier) -> None:
            action, user, group, task_id, body = request
            with _client(api, user, group) as client:
                barrier.wait()
                answers[i] = client.post(f"/tasks/{task_id}/{action}", json=body)

        threads = [threading.Thread(target=send, args=(i, r)) for i, r in enumerate(requests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = [answers[i].status_code for i in range(len(requests))]
        assert all(code in (200, 409) for code in codes), [(c, answers[i].text) for i, c in enumerate(codes)]
        events = _check_chain(api, inst["id"])
        claimed = [e["actor"] for e in events if e["action"] == "task.claimed"]
        assert sorted(claimed) == sorted(requests[i][1] for i in (0, 1) if codes[i] == 200)
        assert sorted(codes[:2]) == [200, 409] and codes[2] == 200, [(c, answers[i].text) for i, c in enumerate(codes)]
        completed = [e for e in events if e["action"] == "task.completed"]
        assert len(completed) == (1 if codes[2] == 200 else 0)
        tasks = {t["id"]: t for t in api.admin.get(f"/process-instances/{inst['id']}/tasks").json()["items"]}
        assert tasks[funding["id"]]["status"] == ("completed" if codes[2] == 200 else "open")
        assert tasks[technical["id"]]["assignee"] == (claimed[0] if claimed else None)


@pytest.mark.parametrize("action", ["claim", "complete"])
def test_a_request_that_finds_the_instance_held_by_a_writer_chains_after_its_events(api: Api, action: str) -> None:
    """Another transaction holds the instance row (PostgreSQL: its lock; SQLite: the write lock) and appends an
    event. A claim (which reads the head under the row's lock) and a completion (whose UPDATE of the row returns
    it) wait for it and chain after its event: 200, not a 409 for a seq taken meanwhile."""
    inst = api.start("review", REVIEW, business_key=f"HELD-{action}")
    task = inst["open_tasks"][0]
    before = len(_check_chain(api, inst["id"]))
    answer: list[httpx.Response] = []

    def send() -> None:
        with _client(api, "li", "data_bureau") as client:
            body = {"variables": {"decision": "revise"}} if action == "complete" else None
            answer.append(client.post(f"/tasks/{task['id']}/{action}", json=body))

    request = threading.Thread(target=send)
    with api.server.ctx.write() as session:
        session.execute(select(ProcessInstance.id).where(ProcessInstance.id == inst["id"]).with_for_update())
        AuditTrail.for_instance(session, inst["id"]).append(api.clock.now(), "registry", "task.commented",
                                                             task_id=task["id"], data={"message": "同时"})
        request.start()
        time.sleep(1.5)  # the request reaches the row and waits
    request.join()
    assert answer[0].status_code == 200, answer[0].text
    events = _check_chain(api, inst["id"])
    assert [e["action"] for e in events][before:before + 2] == ["task.commented", {"claim": "task.claimed", "complete": "task.completed"}[action]]


# ---- the waits -------------------------------------------------------------------------------------------------

def test_the_waiting_rows_follow_an_instance_that_waited_on_nothing(api: Api) -> None:
    """No waits, then a message, then a boundary timer in its place, then none: each change that starts from
    no waits reads no waiting rows, and the rows still come and go with the engine's waits."""
    inst = api.start("review", REVIEW, business_key="WAIT-1")
    _check_waits(api, inst["id"], [])
    api.complete(inst["id"], "review_task", {"decision": "revise"})
    _check_waits(api, inst["id"], [])
    api.complete(inst["id"], "revise_task", {"budget_wan": 10})
    api.complete(inst["id"], "review_task", {"decision": "pass"})
    _check_waits(api, inst["id"], ["wait_contract"])
    api.message("contract_signed", "WAIT-1")
    _check_waits(api, inst["id"], ["filing_overdue"])
    api.complete(inst["id"], "file_contract")
    _check_waits(api, inst["id"], [])
    assert api.end_event(inst["id"]) == "end_completed"


def test_the_waiting_rows_of_an_instance_started_waiting_go_when_its_timers_fire(api: Api) -> None:
    timer = api.start("wait_a_day", {}, business_key="WAIT-2")
    _check_waits(api, timer["id"], ["one_day"])
    assert api.advance(timedelta(days=1, seconds=1)) == 1
    _check_waits(api, timer["id"], [])
    assert api.open_elements(timer["id"]) == ["after"]

    deadlines = api.start("deadlines", {}, business_key="WAIT-3")
    _check_waits(api, deadlines["id"], ["upload_overdue"])
    api.complete(deadlines["id"], "upload")
    _check_waits(api, deadlines["id"], ["trial_run"])
    api.fire_timer(deadlines["id"], "trial_run")
    _check_waits(api, deadlines["id"], [])
    assert api.open_elements(deadlines["id"]) == ["accept"]


def test_a_cancelled_instance_keeps_no_waiting_rows(api: Api) -> None:
    inst = api.start("deadlines", {}, business_key="WAIT-4")
    _check_waits(api, inst["id"], ["upload_overdue"])
    r = api.admin.post(f"/process-instances/{inst['id']}/cancel", json={"reason": "撤回申请"})
    assert r.status_code == 200, r.text
    _check_waits(api, inst["id"], [])


def test_the_waiting_count_of_existing_instances_is_counted_by_its_migration(tmp_path: Path,
                                                                             database_url: str | None) -> None:
    """Migration 0009 counts the waiting rows of the instances there are; the service goes on from the counts."""
    with new_database(tmp_path, database_url) as url:
        server = _server(tmp_path, url, FIXTURES)
        server.start()
        api = Api(server)
        try:
            url = server.ctx.engine.url.render_as_string(hide_password=False)
            contract = api.start("review", REVIEW, business_key="MIG-1")
            api.complete(contract["id"], "review_task", {"decision": "pass"})
            idle = api.start("review", REVIEW, business_key="MIG-2")
            two = api.start("deadlines", {}, business_key="MIG-3")
            expected = {contract["id"]: 1, idle["id"]: 0, two["id"]: 1}
        finally:
            api.close()
            server.stop()
        migrate_to(url, "0008", down=True)
        engine = make_engine(url)
        try:
            with engine.begin() as connection:  # a second wait on one instance, as a diagram with two would have
                row = connection.execute(select(WaitingEvent).where(WaitingEvent.instance_id == two["id"])).one()
                connection.execute(WaitingEvent.__table__.insert().values(
                    {**{c: getattr(row, c) for c in row._fields if c != "id"}, "spiff_task_id": "x",
                     "element_id": "second"}))
            migrate_to(url, "head")
            with engine.connect() as connection:
                counts = dict(connection.execute(select(ProcessInstance.id, ProcessInstance.waiting_count)).all())
                rows = dict(connection.execute(select(WaitingEvent.instance_id, func.count())
                                               .group_by(WaitingEvent.instance_id)).all())
        finally:
            engine.dispose()
        assert counts == {**expected, two["id"]: 2} and rows == {contract["id"]: 1, two["id"]: 2}, (counts, rows)
        server = _server(tmp_path, url, FIXTURES)
        server.start()
        api = Api(server)
        try:
            api.message("contract_signed", "MIG-1")
            _check_waits(api, contract["id"], ["filing_overdue"])
            api.complete(idle["id"], "review_task", {"decision": "pass"})
            _check_waits(api, idle["id"], ["wait_contract"])
            api.complete(two["id"], "upload")  # the stray second row goes with the wait it stood for
            _check_waits(api, two["id"], ["trial_run"])
            for instance_id in expected:
                _check_chain(api, instance_id)
        finally:
            api.close()
            server.stop()
