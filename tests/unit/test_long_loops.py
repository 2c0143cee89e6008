"""Lifecycles loop for years: an instance must keep working after hundreds of rework rounds."""
from __future__ import annotations

from decimal import Decimal

from service.clock import Clock
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import parse_files
from service.engine.runtime import ProcessModel, Runtime
from tests.support import FIXTURES


def _model() -> ProcessModel:
    parsed = parse_files({p.name: p.read_bytes() for p in FIXTURES.glob("review.*")})[0]
    return ProcessModel(definition_id=1, key=parsed.key, spec=parsed.spec, subprocess_specs=parsed.subprocess_specs)


def test_three_hundred_rework_rounds_then_completion() -> None:
    runtime = Runtime(Clock(), BusinessCalendar())
    model = _model()
    workflow = runtime.start(model, {"project_name": "x", "budget_wan": Decimal(10), "urgent": False})
    for _ in range(300):  # past the engine's default search depth (~250 rounds)
        for element, data in (("review_task", {"decision": "revise"}), ("revise_task", {"budget_wan": Decimal(10)})):
            snap = runtime.snapshot(workflow, runtime.clock.now())
            assert [t.element_id for t in snap.open_tasks] == [element]
            runtime.complete(workflow, runtime.find_ready_user_task(workflow, snap.open_tasks[0].id), data)
    workflow = runtime.load(model, runtime.dump(workflow))
    snap = runtime.snapshot(workflow, runtime.clock.now())
    assert snap.status == "running" and [t.element_id for t in snap.open_tasks] == ["review_task"]
    runtime.complete(workflow, runtime.find_ready_user_task(workflow, snap.open_tasks[0].id), {"decision": "reject"})
    snap = runtime.snapshot(workflow, runtime.clock.now())
    assert (snap.status, snap.end_event) == ("completed", "end_rejected")
