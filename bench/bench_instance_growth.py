"""How the cost of one request grows with the length of an instance's history.

A request restores the instance, completes one user task, advances the engine and stores the state.
Long-lived lifecycles loop (revise → review → revise …), so the task tree grows. This prints the cost
of a request after N rounds as a ratio to the cost after 1 round, measured in the same run.

    .venv/bin/python -m bench.bench_instance_growth
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from service.clock import Clock
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import parse_files
from service.engine.runtime import ProcessModel, Runtime

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def _model() -> ProcessModel:
    files = {p.name: p.read_bytes() for p in FIXTURES.glob("review.*")}
    parsed = parse_files(files)[0]
    return ProcessModel(definition_id=1, key=parsed.key, spec=parsed.spec, subprocess_specs=parsed.subprocess_specs)


def _complete(runtime: Runtime, model: ProcessModel, state: str, element: str, data: dict) -> str:
    workflow = runtime.load(model, state)
    snapshot = runtime.snapshot(workflow, runtime.clock.now())
    task = next(t for t in snapshot.open_tasks if t.element_id == element)
    runtime.complete(workflow, runtime.find_ready_user_task(workflow, task.id), data)
    runtime.snapshot(workflow, runtime.clock.now())
    return runtime.dump(workflow)


def measure(rounds: int, repeats: int = 30) -> tuple[float, int]:
    runtime = Runtime(Clock(), BusinessCalendar())
    model = _model()
    from decimal import Decimal
    state = runtime.dump(runtime.start(model, {"project_name": "x", "budget_wan": Decimal(10), "urgent": False}))
    for _ in range(rounds):
        state = _complete(runtime, model, state, "review_task", {"decision": "revise"})
        state = _complete(runtime, model, state, "revise_task", {"budget_wan": Decimal(10)})
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        _complete(runtime, model, state, "review_task", {"decision": "revise"})
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), len(state)


def main() -> None:
    base, base_size = measure(1)
    print(f"baseline (1 round): {base * 1000:.2f} ms per request, state {base_size / 1024:.1f} KiB")
    for rounds in (10, 50, 100):
        t, size = measure(rounds)
        print(f"{rounds:>4} rounds: {t / base:5.2f}x the baseline time, state {size / base_size:5.2f}x the size")


if __name__ == "__main__":
    main()
