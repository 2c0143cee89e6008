"""Process instances over HTTP: start, read, list, history, cancel."""
from __future__ import annotations

import pytest

from tests.support import Api

START = {"project_name": "政务云迁移", "budget_wan": 120}


def test_start_returns_instance_with_open_tasks(api: Api) -> None:
    inst = api.start("review", START, business_key="BK-1")
    assert inst["status"] == "running" and inst["business_key"] == "BK-1"
    assert inst["process_key"] == "review" and inst["definition_version"] == 1
    task = inst["open_tasks"][0]
    assert (task["element_id"], task["name"]) == ("review_task", "数据局审核")
    assert task["candidate_groups"] == ["data_bureau"]
    assert inst["variables"]["budget_wan"] == 120 and inst["variables"]["urgent"] is False


def test_second_running_instance_with_same_business_key_is_409(api: Api) -> None:
    first = api.start("review", START, business_key="BK-2")
    r = api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": "review", "business_key": "BK-2", "variables": START})
    assert r.status_code == 409 and r.json()["process_instance_id"] == first["id"]
    # once the first has ended, the key may be used again
    api.complete(first["id"], "review_task", {"decision": "reject"})
    assert api.start("review", START, business_key="BK-2")["id"] != first["id"]


@pytest.mark.parametrize("variables, bad", [
    ({"budget_wan": 10}, {"project_name": "is required"}),
    ({"project_name": "x", "budget_wan": -1}, {"budget_wan": "must be at least 0"}),
    ({"project_name": "x", "budget_wan": "ten"}, {"budget_wan": "must be a number"}),
    ({"project_name": 5, "budget_wan": 1, "colour": "red"}, {"project_name": "must be a string",
                                                           "colour": "is not a field of this form"}),
    ({"project_name": "x", "budget_wan": 1, "urgent": "yes"}, {"urgent": "must be true or false"}),
])
def test_invalid_start_variables_are_422_and_nothing_is_stored(api: Api, variables: dict, bad: dict) -> None:
    r = api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": "review", "business_key": "BAD", "variables": variables})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == bad
    assert api.admin.get("/process-instances", params={"business_key": "BAD"}).json()["items"] == []


def test_start_unknown_process_is_404(api: Api) -> None:
    r = api.admin.post("/process-instances", json={"process_key": "nope", "variables": {}})
    assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"


def test_start_body_must_be_valid(api: Api) -> None:
    r = api.admin.post("/process-instances", json={"business_key": "x"})
    assert r.status_code == 422 and "process_key" in r.json()["errors"]


def test_amounts_are_exact_at_the_boundary(api: Api) -> None:
    for amount, track in ((99.99, ["gw_merge"]), (100, ["approve_task"]), (100.01, ["approve_task"])):
        inst = api.start("review", {"project_name": "x", "budget_wan": amount})
        out = api.complete(inst["id"], "review_task", {"decision": "pass"})
        expected = [t["element_id"] for t in out["next_tasks"]]
        if track == ["gw_merge"]:
            assert expected == [] and [w["name"] for w in api.waiting(inst["id"])] == ["contract_signed"]
        else:
            assert expected == track


def test_read_shows_waiting_for_and_variables(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 20}, business_key="W-1")
    api.complete(inst["id"], "review_task", {"decision": "pass", "review_date": "2026-03-05", "score": 90})
    view = api.instance(inst["id"])
    assert view["waiting_for"] == [{"kind": "message", "name": "contract_signed", "element_id": "wait_contract",
                                    "payload": None, "due_at": None, "calendar": None, "provisional": False,
                                    "failed_attempts": 0, "last_error": None}]
    assert view["variables"]["review_date"] == "2026-03-05" and view["variables"]["track"] == "filing"
    api.message("contract_signed", "W-1", {"contract_wan": 19.5})
    view = api.instance(inst["id"])
    timers = [w for w in view["waiting_for"] if w["kind"] == "timer"]
    assert timers[0]["element_id"] == "filing_overdue" and timers[0]["due_at"] == "2026-03-17T01:00:00Z"
    assert view["variables"]["contract_wan"] == 19.5


def test_list_filters_and_keyset_pagination(api: Api) -> None:
    ids = [api.start("review", START, business_key=f"L-{i}")["id"] for i in range(5)]
    api.complete(ids[0], "review_task", {"decision": "reject"})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"process_key": "review", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.admin.get("/process-instances", params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    completed = api.admin.get("/process-instances", params={"status": "completed"}).json()["items"]
    assert [i["id"] for i in completed] == [ids[0]]
    assert api.admin.get("/process-instances", params={"cursor": "garbage!"}).status_code == 422
    # a status that no instance can have is a mistake, answered as one (it listed nothing)
    for status in ("finished", "Running", "open"):
        r = api.admin.get("/process-instances", params={"status": status})
        assert r.status_code == 422 and "running, completed, cancelled" in r.text, r.text
    assert api.admin.get("/process-instances", params={"status": ""}).json()["items"]  # not given


def test_others_cannot_see_an_instance(api: Api) -> None:
    inst = api.start("review", START, user="oa-hz", groups=("applicant",))
    assert api.as_("stranger", "finance_bureau").get(f"/process-instances/{inst['id']}").status_code == 404
    assert api.as_("oa-hz", "applicant").get(f"/process-instances/{inst['id']}").status_code == 200
    assert api.as_("reviewer", "data_bureau").get(f"/process-instances/{inst['id']}").status_code == 200
    listed = api.as_("stranger", "finance_bureau").get("/process-instances").json()["items"]
    assert listed == []


def test_history_is_ordered_with_actor_and_data(api: Api) -> None:
    inst = api.start("review", START, business_key="H-1", user="oa-h")
    review = api.open_task(inst["id"], "review_task")
    assert api.as_("li", "data_bureau").post(f"/tasks/{review['id']}/claim").status_code == 200
    api.complete(inst["id"], "review_task", {"decision": "revise"}, user="li")
    api.complete(inst["id"], "revise_task", {"budget_wan": 90}, user="wang")
    h = api.admin.get(f"/process-instances/{inst['id']}/history").json()
    actions = [(e["action"], e["actor"], e["element_id"]) for e in h["events"]]
    assert actions[0] == ("instance.started", "oa-h", None)
    assert ("task.claimed", "li", "review_task") in actions
    assert ("task.completed", "li", "review_task") in actions
    assert ("task.completed", "wang", "revise_task") in actions
    assert [e["seq"] for e in h["events"]] == list(range(1, len(h["events"]) + 1))
    completed = [e for e in h["events"] if e["action"] == "task.completed"]
    assert completed[0]["data"] == {"variables": {"decision": "revise"}}
    assert completed[1]["data"] == {"variables": {"budget_wan": 90}}
    assert h["verified"] is None


def test_cancel(api: Api) -> None:
    inst = api.start("review", START, business_key="C-1")
    task_id = inst["open_tasks"][0]["id"]
    r = api.as_("oa", "applicant").post(f"/process-instances/{inst['id']}/cancel", json={"reason": "x"})
    assert r.status_code == 403
    assert api.admin.post(f"/process-instances/{inst['id']}/cancel", json={}).status_code == 422
    r = api.admin.post(f"/process-instances/{inst['id']}/cancel", json={"reason": "项目撤销"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["cancel_reason"] == "项目撤销" and body["open_tasks"] == []
    assert api.admin.get(f"/tasks/{task_id}").json()["status"] == "cancelled"
    assert api.admin.post(f"/process-instances/{inst['id']}/cancel", json={"reason": "again"}).status_code == 409
    r = api.as_("r", "data_bureau").post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 409
    actions = [e["action"] for e in api.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]]
    assert actions[-2:] == ["instance.cancelled", "task.cancelled"]
    # a cancelled instance frees its business key
    api.start("review", START, business_key="C-1")


def test_unknown_instance_is_404(api: Api) -> None:
    for path in ("/process-instances/not-a-uuid", "/process-instances/00000000-0000-0000-0000-000000000000",
                 "/process-instances/00000000-0000-0000-0000-000000000000/history"):
        assert api.admin.get(path).status_code == 404


def test_missing_or_invalid_token_is_401(api: Api) -> None:
    r = api.anonymous().get("/process-instances")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    bad = api.anonymous().get("/tasks", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    from datetime import UTC, datetime, timedelta

    from service.auth import mint_token
    expired = mint_token("test-secret-of-at-least-32-bytes-length", "u", [], False,
                         datetime.now(UTC) - timedelta(hours=3), timedelta(hours=1))
    r = api.anonymous().get("/tasks", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    forged = mint_token("another-secret-of-at-least-32-bytes!!", "u", [], True, datetime.now(UTC), timedelta(hours=1))
    assert api.anonymous().get("/tasks", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_health_readiness_and_metrics(api: Api) -> None:
    import httpx
    base = api.server.url
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(base + "/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "reachable"
    api.start("review", START)
    text = httpx.get(base + "/metrics").text
    assert 'govflow_http_requests_total{method="POST",route="/api/v1/process-instances",status="201"}' in text
    docs = httpx.get(base + "/openapi.json").json()
    assert "/api/v1/tasks/{task_id}/complete" in docs["paths"]


def test_api_docs_need_no_internet(api: Api) -> None:
    import httpx
    page = httpx.get(api.server.url + "/docs").text
    assert "cdn.jsdelivr.net" not in page and "swagger-ui-bundle.js" in page
    asset = next(part.split('"')[1] for part in page.split("src=")[1:] if "swagger-ui-bundle.js" in part)
    assert httpx.get(api.server.url + asset if asset.startswith("/") else asset).status_code == 200


def test_a_start_that_loses_the_business_key_race_is_409_and_any_other_integrity_error_is_not(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two starts with one business key at once: the second passes the check for a running duplicate, then its
    INSERT fails on the unique index, and it is answered 409 like the check would have. Any other constraint that
    fails there (a group named twice once made the candidate rows' key fail) is not answered as a taken business
    key, but as any other conflict the database reports."""
    from sqlalchemy.exc import IntegrityError

    from service.services import instances

    first = api.start("review", START, business_key="RACE-1")
    monkeypatch.setattr(instances, "_refuse_running_duplicate", lambda *a, **k: None)  # the check ran too early
    r = api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": "review", "business_key": "RACE-1", "variables": START})
    assert r.status_code == 409 and "business key 'RACE-1' exists" in r.json()["detail"], r.text

    def other_constraint(*args: object, **kwargs: object) -> None:
        raise IntegrityError("INSERT INTO task_candidate …", {}, Exception("NOT NULL constraint failed: x.y"))

    monkeypatch.setattr(instances, "apply", other_constraint)
    r = api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": "review", "business_key": "RACE-2", "variables": START})
    assert r.status_code == 409 and "business key" not in r.json()["detail"], r.text  # the service's general answer
    listed = api.admin.get("/process-instances", params={"business_key": "RACE-1"}).json()["items"]
    assert [i["id"] for i in listed] == [first["id"]]
    assert api.admin.get("/process-instances", params={"business_key": "RACE-2"}).json()["items"] == []
