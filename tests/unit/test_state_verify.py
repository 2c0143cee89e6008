"""The test suite's check that stored state restores to the engine's (GOVFLOW_VERIFY_STATE_STORAGE): it compares
tasks field by field instead of dumping both workflows, and must still catch what a row not rewritten loses."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState

from service.engine.calendar import BusinessCalendar
from service.engine.runtime import Runtime
from service.engine.serializer import iter_tasks
from service.engine.worker import CommandClock, WorkerEngine
from tests.support import FIXTURES

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
MODEL = {"id": 1, "hash": "review-fixture", "key": "review"}
FILES = {"resource_name": "review.bpmn", "bpmn_xml": (FIXTURES / "review.bpmn").read_text(),
         "dmn_resources": {"review.dmn": (FIXTURES / "review.dmn").read_text()}, "spec_json": None}


class Stored:
    """What the service would keep of one instance: the header and the task rows the worker's answers wrote."""

    def __init__(self) -> None:
        self.header = ""
        self.rows: dict[str, list[Any]] = {}
        self.token = ""

    def take(self, reply: dict[str, Any], token: str) -> None:
        assert reply["ok"], reply
        self.header = reply["header"]
        for key, task_id, seq, body in reply["inserts"]:
            self.rows[task_id] = [key, task_id, seq, body]
        for task_id, body in reply["updates"]:
            self.rows[task_id][3] = body
        for task_id in reply["deletes"]:
            del self.rows[task_id]
        self.token = token

    def state(self) -> dict[str, Any]:
        return {"header": self.header, "rows": sorted(self.rows.values(), key=lambda r: r[2])}


def _engine_with_rounds(rounds: int, number: Any = int) -> tuple[WorkerEngine, Stored, str]:
    engine = WorkerEngine(Runtime(CommandClock(), BusinessCalendar(), 5), 16)
    stored = Stored()
    reply = engine.handle({"op": "start", "now": NOW, "new_token": "t0", "model": MODEL, "model_files": FILES,
                           "instance_id": "i1", "variables": {"project_name": "x", "budget_wan": 10}})
    stored.take(reply, "t0")
    task = reply["snapshot"]["open_tasks"][0]["id"]
    for n in range(rounds * 2):
        data = {"decision": "revise"} if n % 2 == 0 else {"budget_wan": number(10 + n)}
        reply = engine.handle({"op": "complete", "now": NOW, "new_token": f"t{n + 1}", "model": MODEL,
                               "instance": {"id": "i1", "token": stored.token}, "task_id": task, "data": data})
        stored.take(reply, f"t{n + 1}")
        task = reply["snapshot"]["open_tasks"][0]["id"]
    return engine, stored, task


def _verify(engine: WorkerEngine, stored: Stored) -> dict[str, Any]:
    return engine.handle({"op": "verify", "now": NOW, "model": MODEL,
                          "instance": {"id": "i1", "token": stored.token}, "stored": stored.state()})


def _held(engine: WorkerEngine, stored: Stored) -> Any:
    return engine.cache[("i1", stored.token)].workflow


def test_what_the_worker_wrote_restores_to_what_it_holds() -> None:
    engine, stored, _ = _engine_with_rounds(3)
    assert _verify(engine, stored) == {"ok": True, "extra": {"verified": True}}


@pytest.mark.parametrize("change", ["data", "nested data", "a number's type", "a list that reads like a Decimal",
                                    "internal data", "state time", "lost row", "header"])
def test_a_change_the_stored_rows_do_not_have_is_caught(change: str) -> None:
    engine, stored, _ = _engine_with_rounds(2, Decimal if change == "a list that reads like a Decimal" else int)
    held = _held(engine, stored)
    done = [t for _, t in iter_tasks(held) if t.task_spec.name == "review_task" and t.data.get("decision")]
    task = done[0]
    if change == "data":
        task.data["decision"] = "pass"  # a finished task's data changed; its fingerprint did not
    elif change == "a number's type":  # equal to ==, not as stored: a Decimal is written as a Decimal
        # a finished task whose stored row carries the value (it differs from its parent's)
        task = next(t for _, t in iter_tasks(held) if t.parent is not None and t.has_state(TaskState.FINISHED_MASK)
                    and t.data.get("budget_wan") != t.parent.data.get("budget_wan"))
        value = task.data["budget_wan"]
        task.data["budget_wan"] = Decimal(value) if isinstance(value, int) else int(value)
        assert task.data["budget_wan"] == value
    elif change == "a list that reads like a Decimal":  # in every task, so no child's change gives it away
        changed = 0
        for _, each in iter_tasks(held):
            if isinstance(each.data.get("budget_wan"), Decimal):
                each.data["budget_wan"] = ["Decimal", str(each.data["budget_wan"])]
                changed += 1
        assert changed
    elif change == "nested data":
        task.data["extra"] = {"rows": [1, 2, {"k": "v"}]}
    elif change == "internal data":
        task.internal_data["marker"] = 1
    elif change == "state time":
        task.last_state_change += 1
    elif change == "lost row":
        stored.rows.pop(next(iter(r[1] for r in stored.rows.values() if r[1] == str(task.id))))
    else:
        held.data["written_to_the_workflow"] = True
    reply = _verify(engine, stored)
    assert reply["ok"] is False and reply["error"] == "internal", reply
    assert "does not restore" in reply["message"]
