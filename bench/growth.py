"""A request's cost as an instance's history grows: one instance of the review diagram loops review → revise
N times over the API; the time of one review completion after N rounds is reported as a ratio to round 1,
measured in the same run (median of several completions around each mark)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import govflow, token

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
START = {"process_key": "review", "business_key": "GROWTH", "variables": {"project_name": "x", "budget_wan": 10}}


def main(marks: list[int]) -> int:
    bpmn = Path(tempfile.mkdtemp(prefix="govflow-growth-"))
    for f in FIXTURES.glob("review.*"):
        (bpmn / f.name).write_bytes(f.read_bytes())
    server = govflow(None, bpmn / "data", bpmn_dir=bpmn)
    reviewer = {"Authorization": f"Bearer {token('li', 'data_bureau')}"}
    applicant = {"Authorization": f"Bearer {token('oa', 'applicant')}"}
    timings: dict[int, list[float]] = {}
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client:
            instance = client.post("/process-instances", json=START, headers=applicant).json()
            task = instance["open_tasks"][0]
            for round_number in range(1, max(marks) + 4):
                started = time.perf_counter()
                r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "revise"}},
                                headers=reviewer)
                took = time.perf_counter() - started
                assert r.status_code == 200, r.text
                for mark in marks:
                    if mark <= round_number <= mark + 2:
                        timings.setdefault(mark, []).append(took)
                revise = r.json()["next_tasks"][0]
                r = client.post(f"/tasks/{revise['id']}/complete", json={"variables": {"budget_wan": 10}},
                                headers=applicant)
                assert r.status_code == 200, r.text
                task = r.json()["next_tasks"][0]
    finally:
        server.stop()
    base = statistics.median(timings[marks[0]])
    print(f"a review completion after N review/revise rounds (ratio to round {marks[0]}, same run)")
    for mark in marks:
        value = statistics.median(timings[mark])
        print(f"  round {mark:>4}: {value * 1000:7.2f} ms   x{value / base:.2f}")
    return 0
