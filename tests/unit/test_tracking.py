"""The engine worker finds the task rows a command changed from the journal of changed tasks
(service/engine/tracking.py) instead of a pass over every task: the rows must be exactly those the full pass finds,
on every command, and the rows stored must restore to the workflow the worker holds — through splits, joins, a
boundary timer, a message, a sub-process, loops, send-backs, withdrawals, modifications, variables set by an
administrator (those four diffed in full, the next command tracked again) and restores from the rows alone."""
from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState

from service.engine import tracking
from service.engine.calendar import BusinessCalendar
from service.engine.runtime import Runtime
from service.engine.worker import CommandClock, WorkerEngine, _Held
from tests.support import FIXTURES, T0


class Shadowed(WorkerEngine):
    """A worker that also runs the full pass on a copy of what it held, and compares the two on every command."""

    def __init__(self) -> None:
        super().__init__(Runtime(CommandClock(), BusinessCalendar()), cache_size=4)
        self.tracked = 0

    def _tracked_diff(self, held: _Held, workflow: Any) -> dict[str, Any]:
        shadow = _Held(workflow, dict(held.stored))
        shadow.next_seq = held.next_seq
        want = self._diff(shadow, workflow)
        got = super()._tracked_diff(held, workflow)
        assert got["inserts"] == want["inserts"]
        assert sorted(got["updates"]) == sorted(want["updates"])
        assert sorted(got["deletes"]) == sorted(want["deletes"])
        assert held.stored == shadow.stored  # every task's fingerprint: nothing changed unseen
        assert held.next_seq == shadow.next_seq
        self.tracked += 1
        return got


class Instance:
    """One instance driven through the worker as the service drives it: the rows of each answer stored, the stored
    state checked against the held workflow after every command, and sometimes restored from the rows alone."""

    def __init__(self, engine: Shadowed, directory: Path, key: str, variables: dict[str, Any]) -> None:
        self.engine, self.now, self.n = engine, T0, 0
        bpmn = directory / f"{key}.bpmn"
        self.model = {"id": 1, "hash": f"hash-{key}", "key": key}
        self.files = {"resource_name": bpmn.name, "bpmn_xml": bpmn.read_text(), "spec_json": None,
                      "dmn_resources": {p.name: p.read_text() for p in directory.glob(f"{key}.dmn")}}
        self.rows: dict[str, list[Any]] = {}
        self.token = "t0"
        answer = engine.handle({"op": "start", "now": self.now, "new_token": self.token, "model": self.model,
                                "model_files": self.files, "instance_id": "i", "variables": variables})
        assert answer["ok"], answer
        self._store(answer)

    def _store(self, answer: dict[str, Any]) -> None:
        self.header = answer["header"]
        self.snapshot = answer["snapshot"]
        for task_id in answer["deletes"]:
            del self.rows[task_id]
        for key, task_id, seq, body in answer["inserts"]:
            assert task_id not in self.rows
            self.rows[task_id] = [key, task_id, seq, body]
        for task_id, body in answer["updates"]:
            self.rows[task_id][3] = body

    def state(self) -> dict[str, Any]:
        return {"header": self.header, "rows": sorted(self.rows.values(), key=lambda r: r[2])}

    def run(self, op: str, restore: bool = False, **arguments: Any) -> dict[str, Any]:
        self.n += 1
        new_token = f"t{self.n}"
        command = {"op": op, "now": self.now, "new_token": new_token, "model": self.model,
                   "instance": {"id": "i", "token": self.token}, **arguments}
        if restore:
            self.engine.cache.clear()
            command["state"] = self.state()
        answer = self.engine.handle(command)
        if not answer["ok"] and answer["error"] == "need_state":  # a refused command dropped what was held
            answer = self.engine.handle({**command, "state": self.state()})
        if not answer["ok"]:
            assert answer["error"] in ("conflict", "invalid"), answer
            return answer  # nothing stored; the worker dropped what it held
        self._store(answer)
        self.token = new_token
        if self.snapshot["status"] == "running":
            verified = self.engine.handle({"op": "verify", "now": self.now, "model": self.model,
                                           "instance": {"id": "i", "token": self.token}, "stored": self.state()})
            assert verified["ok"], verified
        return answer


def _drive(instance: Instance, rng: random.Random, steps: int, data: Any) -> None:
    done: list[str] = []  # completed user tasks, for withdrawals
    for _ in range(steps):
        snap = instance.snapshot
        if snap["status"] != "running":
            return
        restore = rng.random() < 0.1
        roll = rng.random()
        open_tasks = snap["open_tasks"]
        if open_tasks and roll < 0.7:
            task = rng.choice(open_tasks)
            answer = instance.run("complete", restore, task_id=task["id"], data=data(task["element_id"], rng))
            if answer["ok"]:
                done.append(task["id"])
        elif open_tasks and roll < 0.78:
            task = rng.choice(open_tasks)
            instance.run("send_back", restore, task_id=task["id"], to_element_id=rng.choice(["declare", "prereview",
                                                                                            "build"]))
        elif done and roll < 0.84:
            instance.run("withdraw", restore, task_id=rng.choice(done))
        elif roll < 0.88:
            instance.run("set_variables", restore, variables={"note": rng.randint(0, 9)})
        elif roll < 0.92 and open_tasks:
            instance.run("modify", restore, instructions=[{"type": "start_before",
                                                            "element_id": rng.choice(open_tasks)["element_id"]}])
        elif any(w["kind"] == "message" for w in snap["waiting"]):
            instance.run("message", restore, name="contract_signed", variables={"contract_no": "HT-1"})
        else:
            instance.now += timedelta(days=rng.choice([1, 11, 400]))
            instance.run("fire_due", restore)


def _returns_data(element_id: str, rng: random.Random) -> dict[str, Any]:
    return {"note": rng.randint(0, 3)}


def _review_data(element_id: str, rng: random.Random) -> dict[str, Any]:
    if element_id == "review_task":
        return {"decision": rng.choice(["approve", "revise", "revise", "reject"])}
    if element_id in ("technical_review", "funding_review"):
        return {"decision": rng.choice(["pass", "pass", "revise", "reject"])}
    if element_id == "file_contract":
        return {"signed_on": "2026-11-02"}
    return {"budget_wan": rng.choice([10, 300, 600])}


@pytest.mark.parametrize("seed", range(40))
def test_the_tracked_rows_are_the_full_pass_rows_through_returns_and_repairs(seed: int) -> None:
    engine = Shadowed()
    instance = Instance(engine, FIXTURES / "operations", "returns", {"project_name": "城市大脑"})
    _drive(instance, random.Random(seed), 60, _returns_data)
    assert engine.tracked > 5


@pytest.mark.parametrize("key", ["review", "parallel_review", "deadlines", "wait_a_day"])
def test_the_tracked_rows_are_the_full_pass_rows_on_the_fixtures(key: str) -> None:
    engine = Shadowed()
    for seed in range(4):
        instance = Instance(engine, FIXTURES, key, {"project_name": "x", "budget_wan": 10})
        _drive(instance, random.Random(seed), 40, _review_data)
    assert engine.tracked > 5


def test_a_long_loop_is_tracked_without_a_pass_over_its_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """After 60 review rounds a completion looks at a handful of tasks: the full pass is never taken, and the
    fingerprint of no task left behind is computed."""
    engine = Shadowed()
    instance = Instance(engine, FIXTURES, "review", {"project_name": "x", "budget_wan": 10})
    for _ in range(60):
        for element_id, data in (("review_task", {"decision": "revise"}), ("revise_task", {"budget_wan": 10})):
            [task] = instance.snapshot["open_tasks"]
            assert task["element_id"] == element_id
            instance.run("complete", task_id=task["id"], data=data)
    held = engine.cache[("i", instance.token)]
    assert len(held.workflow.tasks) > 200
    from service.engine import worker

    fingerprinted: list[Any] = []
    original = worker._fingerprint
    monkeypatch.setattr(worker, "_fingerprint", lambda task: fingerprinted.append(task) or original(task))
    monkeypatch.setattr(Shadowed, "_diff", lambda *a: pytest.fail("a full pass"))
    monkeypatch.setattr(Shadowed, "_tracked_diff", WorkerEngine._tracked_diff)
    [task] = instance.snapshot["open_tasks"]
    instance.run("complete", task_id=task["id"], data={"decision": "revise"})
    assert 0 < len(fingerprinted) < 20


def test_an_unarmed_workflow_is_diffed_in_full_and_tracked_after() -> None:
    """A workflow restored from a state stored whole (before task rows) is not tracked until a full pass stored it
    as rows; the runtime's walks answer the same either way."""
    engine = Shadowed()
    instance = Instance(engine, FIXTURES, "review", {"project_name": "x", "budget_wan": 10})
    workflow = engine.cache[("i", instance.token)].workflow
    assert tracking.track_of(workflow) is not None
    unfinished = sorted(str(t.id) for t in tracking.unfinished(workflow) or [])
    assert unfinished == sorted(str(t.id) for t in workflow.tasks.values() if t.has_state(TaskState.NOT_FINISHED_MASK))
    tracking.disarm(workflow)
    [task] = instance.snapshot["open_tasks"]
    tracked = engine.tracked
    instance.run("complete", task_id=task["id"], data={"decision": "revise"})
    assert engine.tracked == tracked  # the full pass
    [task] = instance.snapshot["open_tasks"]
    instance.run("complete", task_id=task["id"], data={"budget_wan": 10})
    assert engine.tracked == tracked + 1


def test_a_command_removing_tasks_in_a_sub_process_and_then_the_sub_process_deletes_all_their_rows() -> None:
    """One command removes tasks inside a sub-process (its gateway drops the branch it does not take) and then the
    sub-process itself (a second token reaches the join before it again, which drops what the first one opened):
    the rows of both go, and the instance restores from its rows."""
    engine = Shadowed()
    instance = Instance(engine, FIXTURES / "tracking", "joinsub", {"flag_a": True})
    [b1] = instance.snapshot["open_tasks"]
    instance.run("complete", task_id=b1["id"], data={})
    instance.now += timedelta(days=2)
    instance.run("fire_due")  # the join fires; the sub-process waits on its timer
    instance.run("modify", instructions=[{"type": "start_before", "element_id": "ta"}])
    instance.now += timedelta(days=2)
    tracked = engine.tracked
    answer = instance.run("fire_due")  # the sub-process's timer, then the second token at the join
    assert answer["ok"] and engine.tracked == tracked + 1
    assert len(answer["deletes"]) > 2
    engine.cache.clear()
    instance.now += timedelta(days=2)
    assert instance.run("fire_due", restore=True)["ok"]
