"""A request's cost as an instance's history grows: one instance of the review diagram loops review → revise
N times over the API. At each mark, a review completion on that instance is timed alternately with the first
review completion of a new instance of the same diagram (round 1), so the machine's speed, which drifts, is the
same for both; the ratio reported is the median of the pairs' ratios."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import govflow, token

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
PAIRS = 9


def _start(client: httpx.Client, key: str, applicant: dict[str, str]) -> str:
    r = client.post("/process-instances", headers=applicant, json={
        "process_key": "review", "business_key": key, "variables": {"project_name": "x", "budget_wan": 10}})
    assert r.status_code == 201, r.text
    return str(r.json()["open_tasks"][0]["id"])


def _complete(client: httpx.Client, task_id: str, variables: dict[str, Any], headers: dict[str, str]) -> Any:
    started = time.perf_counter()
    r = client.post(f"/tasks/{task_id}/complete", json={"variables": variables}, headers=headers)
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    return took, r.json()["next_tasks"][0]["id"]


def main(marks: list[int]) -> int:
    bpmn = Path(tempfile.mkdtemp(prefix="govflow-growth-"))
    for f in FIXTURES.glob("review.*"):
        (bpmn / f.name).write_bytes(f.read_bytes())
    server = govflow(None, bpmn / "data", bpmn_dir=bpmn)
    reviewer = {"Authorization": f"Bearer {token('li', 'data_bureau')}"}
    applicant = {"Authorization": f"Bearer {token('oa', 'applicant')}"}
    results: dict[int, tuple[float, float, float]] = {}
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client:
            task = _start(client, "GROWTH", applicant)
            rounds = 0  # review/revise rounds completed on the long instance
            fresh = 0
            for mark in sorted(marks):
                ratios, long_times, first_times = [], [], []
                while rounds < mark - 1:
                    _, revise = _complete(client, task, {"decision": "revise"}, reviewer)
                    _, task = _complete(client, revise, {"budget_wan": 10}, applicant)
                    rounds += 1
                for _ in range(PAIRS):  # each pair adds a round to the long instance: the mark is the first one
                    fresh += 1
                    first, _ = _complete(client, _start(client, f"FIRST-{fresh}", applicant),
                                         {"decision": "revise"}, reviewer)
                    took, revise = _complete(client, task, {"decision": "revise"}, reviewer)
                    _, task = _complete(client, revise, {"budget_wan": 10}, applicant)
                    rounds += 1
                    ratios.append(took / first)
                    long_times.append(took)
                    first_times.append(first)
                results[mark] = (statistics.median(long_times), statistics.median(first_times),
                                 statistics.median(ratios))
    finally:
        server.stop()
    print(f"a review completion in round N against a new instance's first, alternating ({PAIRS} pairs per mark)")
    for mark in sorted(results):
        at, first, ratio = results[mark]
        print(f"  round {mark:>4}: {at * 1000:7.2f} ms   round 1: {first * 1000:6.2f} ms   x{ratio:.2f}")
    return 0
