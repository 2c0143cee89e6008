"""Lists as data grows: the inbox (first page and a deep cursor page; the first page of a department offered one
task in a hundred), the same inbox as an OA system written for Camunda reads it (/engine-rest/task and its count),
the console's inbox and the instance list, with N open tasks
and N instances in the database (rows written directly, as many projects would leave them). Each time is a
median of repeated requests, reported with its ratio to the first size, in the same run. The sizes run one after
the other; give the first one again at the end (`--sizes 1000,100000,1000`) to see how far the machine drifted."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from bench.servers import govflow, reset_postgres, token
from service.db.migrate import upgrade
from service.db.models import HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate
from service.db.session import make_engine

GROUPS = ("data_bureau", "finance_bureau", "development_reform", "applicant")
SMALL = "audit_office"  # a department offered one task in a hundred


def _seed(url: str, size: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        definition_id = conn.execute(select(ProcessDefinition.id).where(ProcessDefinition.key == "approval")).scalar()
        instances: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        candidates: list[dict[str, Any]] = []
        for i in range(size):
            instance_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
            at = base + timedelta(seconds=i)
            instances.append({"id": instance_id, "definition_id": definition_id, "process_key": "approval",
                              "definition_version": 1, "business_key": f"S-{i}", "status": "running",
                              "end_event": None, "state_json": "{}", "variables": {}, "version": 1,
                              "started_by": "oa", "started_at": at, "updated_at": at, "ended_at": None})
            group = SMALL if i % 100 == 50 else GROUPS[i % len(GROUPS)]
            tasks.append({"id": task_id, "instance_id": instance_id, "definition_id": definition_id,
                          "process_key": "approval", "business_key": f"S-{i}", "element_id": "review",
                          "name": "审核", "documentation": None, "lane": None, "candidate_groups": [group],
                          "candidate_users": [], "assignee": None, "form_key": None, "status": "open",
                          "created_at": at, "due_at": None, "due_provisional": False})
            candidates.append({"task_id": task_id, "kind": "group", "value": group, "status": "open",
                               "created_at": at, "due_at": None, "claimed": False})
            if len(instances) >= 5000:
                _flush(conn, instances, tasks, candidates)
        _flush(conn, instances, tasks, candidates)
    if engine.dialect.name == "postgresql":
        # as autovacuum would after a load this size: without statistics the planner guesses (a console inbox took
        # over a minute right after the load, and 25 ms once analysed)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _flush(conn: Any, instances: list[Any], tasks: list[Any], candidates: list[Any]) -> None:
    if instances:
        conn.execute(insert(ProcessInstance), instances)
        conn.execute(insert(HumanTask), tasks)
        conn.execute(insert(TaskCandidate), candidates)
    instances.clear()
    tasks.clear()
    candidates.clear()


def _time(client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str], n: int = 30) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(path, params=params, headers=headers)
        samples.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    return statistics.median(samples) * 1000


def measure(size: int, pg_url: str | None) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="govflow-scale-"))
    if pg_url:
        reset_postgres(pg_url)
    url = pg_url or f"sqlite:///{work / 'data' / 'govflow.db'}"
    (work / "data").mkdir()
    server = govflow(pg_url, work / "data")  # migrates and deploys the approval diagram
    try:
        server.stop()
        _seed(url, size)
        server = govflow(pg_url, work / "data")
        reviewer = {"Authorization": f"Bearer {token('li', 'data_bureau')}"}
        admin = {"Authorization": f"Bearer {token('admin', admin=True)}"}
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client:
            first = _time(client, "/tasks", {"candidate_group": "data_bureau", "limit": 50}, reviewer)
            cursor = None
            params: dict[str, Any] = {"candidate_group": "data_bureau", "limit": 50}
            for _ in range(min(20, size // 200)):  # walk a little way in
                page = client.get("/tasks", params={**params, **({"cursor": cursor} if cursor else {})},
                                  headers=reviewer).json()
                cursor = page["next_cursor"] or cursor
            deep = _time(client, "/tasks", {**params, **({"cursor": cursor} if cursor else {})}, reviewer)
            auditor = {"Authorization": f"Bearer {token('qian', SMALL)}"}
            small = _time(client, "/tasks", {"candidate_group": SMALL, "limit": 50}, auditor)
            listed = _time(client, "/process-instances", {"limit": 50}, admin)
            project = _time(client, "/tasks", {"candidate_group": "data_bureau", "business_key": f"S-{size // 2}"},
                            reviewer)  # one project's tasks, as an OA system asks for them
            projects = _time(client, "/process-instances", {"business_key": f"S-{size // 2}"}, admin)
        with httpx.Client(base_url=server.url + "/engine-rest", timeout=60) as client:  # an OA system's Camunda client
            camunda = _time(client, "/task", {"candidateGroup": "data_bureau", "maxResults": 50}, reviewer)
            camunda_small = _time(client, "/task", {"candidateGroup": SMALL, "maxResults": 50}, auditor)
            camunda_count = _time(client, "/task/count", {"candidateGroup": SMALL}, auditor)
        consoles = {}
        for label, user, group in (("console inbox", "li", "data_bureau"),
                                   ("console inbox, small dept.", "qian", SMALL)):
            with httpx.Client(base_url=server.url, timeout=60) as console:  # a reviewer's page, logged in
                r = console.post("/console/login", data={"credential": token(user, group)})
                assert r.status_code in (200, 303), r.text
                consoles[label] = _time(console, "/console/inbox", {}, {}, n=15)
    finally:
        server.stop()
    return {"inbox first page": first, "inbox deep page": deep, "small department's inbox": small,
            "instance list": listed, "one project's tasks": project, "one project's instances": projects,
            "engine-rest inbox": camunda, "engine-rest, small dept.": camunda_small,
            "engine-rest count, small": camunda_count,
            **consoles}


def main(sizes: list[int]) -> int:
    databases: list[tuple[str, str | None]] = [("SQLite", None)]
    if os.environ.get("GOVFLOW_BENCH_PG"):
        databases.append(("PostgreSQL", os.environ["GOVFLOW_BENCH_PG"]))
    for name, pg_url in databases:
        results = [measure(size, pg_url) for size in sizes]  # a size may be given twice: a check of the drift
        print(f"\n{name}: median ms per request (ratio to the first size, {sizes[0]} rows)")
        print(f"  {'rows':26}" + "".join(f"{s:>17}" for s in sizes))
        for what in results[0]:
            base = results[0][what]
            row = "".join(f"{r[what]:9.2f} (x{r[what] / base:.2f})" for r in results)
            print(f"  {what:26}{row}")
    return 0
