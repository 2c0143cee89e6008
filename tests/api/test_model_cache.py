"""Parsed definitions are kept for the GOVFLOW_MODEL_CACHE_SIZE most recently used versions, in the service and in
each engine worker: every deployment of a changed diagram is a new version, and the service kept every version
it had parsed for as long as it ran (a changed bpmn/hangzhou.bpmn deployed 140 times: resident memory grew by
about 0.45 MB a deployment without end, 206 → 231 MB from the 80th to the 140th; with room for 8 versions it
stayed at 194 MB from the 80th on). A version that was forgotten is parsed again when it is next needed."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.engine.calendar import BusinessCalendar
from service.engine.runtime import Runtime
from service.engine.worker import CommandClock, WorkerEngine
from tests.conftest import served
from tests.support import FIXTURES, Api

REVIEW = (FIXTURES / "review.bpmn").read_text()
DMN = (FIXTURES / "review.dmn").read_bytes()
START = {"project_name": "x", "budget_wan": 10}


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with served(tmp_path, database_url, model_cache_size=2) as a:
        yield a


def _deploy_version(api: Api, n: int) -> int:
    """A changed review diagram (its first task renamed): a new version."""
    xml = REVIEW.replace('name="数据局审核"', f'name="数据局审核 {n}"', 1)
    r = api.admin.post("/deployments", files=[("files", ("review.bpmn", xml.encode(), "application/xml")),
                                               ("files", ("review.dmn", DMN, "application/xml"))])
    assert r.status_code == 201, r.text
    return int(next(d["version"] for d in r.json()["definitions"] if d["key"] == "review"))


def test_the_service_keeps_the_most_recently_used_versions_and_parses_a_forgotten_one_again(api: Api) -> None:
    """Five versions deployed and each started and worked on, with room for two: the service keeps two parsed
    versions; the first instance (version 1, forgotten since) still shows its form and completes."""
    first = api.start("review", START, business_key="V1")
    versions = [_deploy_version(api, n) for n in range(2, 6)]
    assert len(set(versions)) == 4
    for n in range(2, 6):
        api.start("review", START, business_key=f"V{n}")
    ctx = api.server.ctx
    assert len(ctx._models) <= 2 and len(ctx._files) <= 2, (len(ctx._models), len(ctx._files))
    task = first["open_tasks"][0]
    reviewer = api.as_("wang", "data_bureau")
    shown = reviewer.get(f"/tasks/{task['id']}")
    assert shown.status_code == 200 and shown.json()["name"] == "数据局审核", shown.text
    assert [f["id"] for f in shown.json()["form"]][:1] == ["decision"]
    assert reviewer.post(f"/tasks/{task['id']}/claim").status_code == 200
    done = reviewer.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
    assert done.status_code == 200, done.text
    assert len(ctx._models) <= 2


def test_a_list_of_instances_over_more_versions_than_are_kept_parses_none_again(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page of instances names each one's message contracts, from its definition version. Over five versions
    with room for two parsed, each listing parsed every version again (repeated: 6 → 12 → 18 parses). Expected:
    the contracts are kept apart (small), and a second listing parses nothing."""
    api.start("review", START, business_key="L1")
    for n in range(2, 6):
        _deploy_version(api, n)
        api.start("review", START, business_key=f"L{n}")
    import service.services.context as context

    parsed: list[str] = []
    real = context.reparse

    def counting(*args: object, **kwargs: object) -> object:
        parsed.append(str(args[0]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(context, "reparse", counting)
    first = api.admin.get("/process-instances", params={"limit": 50})
    assert first.status_code == 200 and len(first.json()["items"]) == 5, first.text[:300]
    parsed.clear()
    second = api.admin.get("/process-instances", params={"limit": 50})
    assert second.json() == first.json()
    assert parsed == [], parsed


def test_an_engine_worker_keeps_the_most_recently_used_versions_and_asks_again_for_a_forgotten_one() -> None:
    """A worker with room for two parsed versions, given three: it keeps two; a command for the forgotten one
    without its files is answered need_model (the pool then sends them), and with them it runs."""
    engine = WorkerEngine(Runtime(CommandClock(), BusinessCalendar(), 5), 16, model_cache_size=2)
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    files = {"resource_name": "review.bpmn", "bpmn_xml": REVIEW, "dmn_resources": {"review.dmn": DMN.decode()},
             "spec_json": None}

    def start(n: int, with_files: bool) -> dict[str, object]:
        command = {"op": "start", "now": now, "new_token": f"t{n}", "instance_id": f"i{n}", "variables": START,
                   "model": {"id": n, "hash": f"review-{n}", "key": "review"}}
        return engine.handle({**command, "model_files": files} if with_files else command)

    for n in (1, 2, 3):
        assert start(n, True)["ok"]
    assert list(engine.models.keys()) == ["review-2", "review-3"]
    assert start(3, False)["ok"]  # kept
    refused = start(1, False)
    assert not refused["ok"] and refused["error"] == "need_model", refused
    assert start(1, True)["ok"]
    assert set(engine.models.keys()) == {"review-3", "review-1"}
