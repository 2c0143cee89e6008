"""How the cost of one request grows with the length of an instance's history.

A request completes one user task of a kept (cached) workflow, advances the engine, builds the snapshot and
stores the state. Long-lived lifecycles loop (revise → review → revise …), so the task tree grows. This prints
the cost of a request after N rounds as a ratio to the cost after 1 round, measured in the same run, for the
storage the service uses (a header plus the task rows the request changed, written to SQLite) and, for
comparison, for writing the whole state as one document.

    .venv/bin/python -m bench.bench_instance_growth
"""
from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session

from service.clock import Clock
from service.db.models import Base, ProcessInstance
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import parse_files
from service.engine.runtime import ProcessModel, Runtime
from service.services import state

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
ROUNDS = (10, 50, 100, 200)


def _model() -> ProcessModel:
    files = {p.name: p.read_bytes() for p in FIXTURES.glob("review.*")}
    parsed = parse_files(files)[0]
    return ProcessModel(definition_id=1, key=parsed.key, spec=parsed.spec, subprocess_specs=parsed.subprocess_specs)


def _complete(runtime: Runtime, workflow: Any, element: str, data: dict) -> None:
    snapshot = runtime.snapshot(workflow, runtime.clock.now())
    task = next(t for t in snapshot.open_tasks if t.element_id == element)
    runtime.complete(workflow, runtime.find_ready_user_task(workflow, task.id), data)


class Store:
    """The instance row and its task rows in an in-memory SQLite database."""

    def __init__(self) -> None:
        self.engine = create_engine("sqlite://")
        Base.metadata.create_all(self.engine)
        self.now = datetime.now(UTC)  # (SQLite does not enforce the definition's foreign key here)

    def new_instance(self) -> str:
        iid = str(uuid.uuid4())
        with Session(self.engine) as s, s.begin():
            s.add(ProcessInstance(id=iid, definition_id=1, process_key="review", definition_version=1,
                                  business_key=None, status="running", state_json="", variables={}, version=1,
                                  started_by="bench", started_at=self.now, updated_at=self.now))
        return iid

    def save(self, iid: str, workflow: Any, whole: bool, runtime: Runtime) -> None:
        with Session(self.engine) as s, s.begin():
            runtime.snapshot(workflow, runtime.clock.now())
            if whole:
                s.execute(update(ProcessInstance).where(ProcessInstance.id == iid)
                          .values(state_json=runtime.dump(workflow)))
            else:
                s.execute(update(ProcessInstance).where(ProcessInstance.id == iid)
                          .values(state_json=state.header(workflow)))
                state.write(s, iid, workflow)


def measure(rounds: int, whole: bool, store: Store, repeats: int = 20) -> float:
    runtime = Runtime(Clock(), BusinessCalendar())
    model = _model()
    iid = store.new_instance()
    workflow = runtime.start(model, {"project_name": "x", "budget_wan": Decimal(10), "urgent": False})
    store.save(iid, workflow, whole, runtime)
    for _ in range(rounds):
        for element, data in (("review_task", {"decision": "revise"}), ("revise_task", {"budget_wan": Decimal(10)})):
            _complete(runtime, workflow, element, data)
            store.save(iid, workflow, whole, runtime)
    timings = []
    for i in range(repeats):
        element, data = (("review_task", {"decision": "revise"}), ("revise_task", {"budget_wan": Decimal(10)}))[i % 2]
        started = time.perf_counter()
        _complete(runtime, workflow, element, data)
        store.save(iid, workflow, whole, runtime)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    store = Store()
    for whole, label in ((False, "task rows (the service)"), (True, "whole state (for comparison)")):
        base = measure(1, whole, store)
        ratios = ", ".join(f"{n} rounds {measure(n, whole, store) / base:4.1f}x" for n in ROUNDS)
        print(f"{label:30} 1 round {base * 1000:5.2f} ms; {ratios}")


if __name__ == "__main__":
    main()
