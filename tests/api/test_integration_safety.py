"""Safe retries (Idempotency-Key), API keys for systems, and the tamper-evident audit trail."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import httpx
from sqlalchemy import text

from tests.support import FIXTURES, REPO, Api

START = {"process_key": "review", "variables": {"project_name": "x", "budget_wan": 10}}


def test_repeated_start_with_the_same_key_creates_one_instance(api: Api) -> None:
    client = api.as_("oa", "applicant")
    headers = {"Idempotency-Key": "start-001"}
    first = client.post("/process-instances", json=START, headers=headers)
    second = client.post("/process-instances", json=START, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.headers.get("Idempotent-Replayed") == "true"
    assert len(api.admin.get("/process-instances").json()["items"]) == 1
    # whitespace and key order do not make a different body
    body = '{"variables": {"budget_wan": 10, "project_name": "x"},   "process_key": "review"}'
    third = client.post("/process-instances", content=body,
                        headers={**headers, "Content-Type": "application/json"})
    assert third.status_code == 201 and third.json()["id"] == first.json()["id"]


def test_a_key_reused_with_a_different_body_is_refused(api: Api) -> None:
    client = api.as_("oa", "applicant")
    headers = {"Idempotency-Key": "start-002"}
    assert client.post("/process-instances", json=START, headers=headers).status_code == 201
    other = {**START, "variables": {"project_name": "y", "budget_wan": 10}}
    r = client.post("/process-instances", json=other, headers=headers)
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["errors"]
    assert len(api.admin.get("/process-instances").json()["items"]) == 1


def test_keys_belong_to_their_principal_and_expire(api: Api) -> None:
    headers = {"Idempotency-Key": "shared-name"}
    a = api.as_("oa-a", "applicant").post("/process-instances", json=START, headers=headers)
    b = api.as_("oa-b", "applicant").post("/process-instances", json=START, headers=headers)
    assert a.json()["id"] != b.json()["id"]
    api.clock.advance(timedelta(hours=api.server.settings.idempotency_ttl_hours, seconds=1))
    c = api.as_("oa-a", "applicant").post("/process-instances", json=START, headers=headers)
    assert c.status_code == 201 and c.json()["id"] != a.json()["id"]


def test_a_retried_completion_returns_the_first_response(api: Api) -> None:
    inst = api.start("review", START["variables"])
    task_id = inst["open_tasks"][0]["id"]
    reviewer = api.as_("li", "data_bureau")
    headers = {"Idempotency-Key": "complete-1"}
    first = reviewer.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "revise"}}, headers=headers)
    again = reviewer.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "revise"}}, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    without_key = reviewer.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "revise"}})
    assert without_key.status_code == 409
    events = api.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]
    assert [e["action"] for e in events].count("task.completed") == 1


def test_failed_requests_are_not_stored_under_the_key(api: Api) -> None:
    client = api.as_("oa", "applicant")
    headers = {"Idempotency-Key": "fix-and-retry"}
    bad = {**START, "variables": {"project_name": "x"}}
    assert client.post("/process-instances", json=bad, headers=headers).status_code == 422
    assert client.post("/process-instances", json=START, headers=headers).status_code == 201


def test_message_and_deploy_accept_idempotency_keys(api: Api) -> None:
    inst = api.start("review", START["variables"], business_key="IK-1")
    api.complete(inst["id"], "review_task", {"decision": "pass"})
    headers = {"Idempotency-Key": "msg-1"}
    body = {"name": "contract_signed", "business_key": "IK-1"}
    first = api.admin.post("/messages", json=body, headers=headers)
    second = api.admin.post("/messages", json=body, headers=headers)
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    bpmn = (FIXTURES / "review.bpmn").read_bytes().replace("数据局审核".encode(), "复核".encode())
    dmn = (FIXTURES / "review.dmn").read_bytes()
    files = [("files", ("review.bpmn", bpmn)), ("files", ("review.dmn", dmn))]
    d1 = api.admin.post("/deployments", files=files, headers={"Idempotency-Key": "dep-1"})
    d2 = api.admin.post("/deployments", files=files, headers={"Idempotency-Key": "dep-1"})
    assert d1.status_code == d2.status_code == 201 and d1.json() == d2.json()
    assert d1.json()["definitions"][0]["version"] == 2


def test_api_keys_act_as_named_principals(api: Api) -> None:
    r = api.admin.post("/api-keys", json={"name": "oa-hangzhou", "groups": ["applicant"]})
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert key.startswith("gfk_") and created["groups"] == ["applicant"]
    assert api.as_("x", "applicant").post("/api-keys", json={"name": "mine"}).status_code == 403
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"X-API-Key": key}) as oa:
        started = oa.post("/process-instances", json=START)
        assert started.status_code == 201 and started.json()["started_by"] == "oa-hangzhou"
        task_id = started.json()["open_tasks"][0]["id"]
        assert oa.post(f"/tasks/{task_id}/claim").status_code == 403  # not in data_bureau
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as oa:
        assert oa.get(f"/process-instances/{started.json()['id']}").status_code == 200
    listed = api.admin.get("/api-keys").json()
    assert [k["name"] for k in listed] == ["oa-hangzhou"] and listed[0]["key"] is None
    assert "secret_hash" not in listed[0]
    assert api.admin.delete(f"/api-keys/{created['id']}").json()["revoked_at"] is not None
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"X-API-Key": key}) as oa:
        r = oa.get("/process-instances")
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"X-API-Key": key[:-2] + "xx"}) as oa:
        assert oa.get("/process-instances").status_code == 401


def _cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    settings = api.server.settings
    env = {**os.environ, "GOVFLOW_DATABASE_URL": settings.resolved_database_url(),
           "GOVFLOW_DATA_DIR": str(settings.data_dir), "GOVFLOW_JWT_SECRET": "x" * 40}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_created_key_works(api: Api) -> None:
    out = _cli(api, "apikey", "create", "oa-wuhan", "--groups", "applicant,data_bureau")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"X-API-Key": key}) as oa:
        assert oa.post("/process-instances", json=START).status_code == 201
    listing = _cli(api, "apikey", "list")
    assert "oa-wuhan" in listing.stdout and "active" in listing.stdout


def _history(api: Api, instance_id: str) -> dict:
    return dict(api.admin.get(f"/process-instances/{instance_id}/history", params={"verify": "true"}).json())


def test_tampering_with_the_audit_trail_is_detected(api: Api) -> None:
    inst = api.start("review", START["variables"], business_key="AUD-1")
    api.complete(inst["id"], "review_task", {"decision": "revise"})
    api.complete(inst["id"], "revise_task", {"budget_wan": 9})
    intact = _history(api, inst["id"])
    assert intact["verified"] is True and intact["first_bad_event_id"] is None
    assert _cli(api, "audit", "verify").returncode == 0
    events = intact["events"]
    target = next(e for e in events if e["action"] == "task.completed")
    engine = api.server.ctx.engine
    with engine.begin() as conn:  # an insider edits the recorded decision
        conn.execute(text("UPDATE audit_event SET data = :d WHERE id = :i"),
                     {"d": '{"variables": {"decision": "pass"}}', "i": target["id"]})
    tampered = _history(api, inst["id"])
    assert tampered["verified"] is False and tampered["first_bad_event_id"] == target["id"]
    out = _cli(api, "audit", "verify")
    assert out.returncode == 1 and f"TAMPERED at event {target['id']}" in out.stdout


def test_deleting_or_reordering_audit_events_is_detected(api: Api) -> None:
    a = api.start("review", START["variables"], business_key="AUD-2")
    b = api.start("review", START["variables"], business_key="AUD-3")
    for i in (a, b):
        api.complete(i["id"], "review_task", {"decision": "revise"})
    ev_a = _history(api, a["id"])["events"]
    ev_b = _history(api, b["id"])["events"]
    engine = api.server.ctx.engine
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": ev_a[1]["id"]})
        conn.execute(text("UPDATE audit_event SET seq = -1 WHERE id = :i"), {"i": ev_b[1]["id"]})
        conn.execute(text("UPDATE audit_event SET seq = 2 WHERE id = :i"), {"i": ev_b[2]["id"]})
        conn.execute(text("UPDATE audit_event SET seq = 3 WHERE id = :i"), {"i": ev_b[1]["id"]})
    assert _history(api, a["id"])["first_bad_event_id"] == ev_a[2]["id"]
    assert _history(api, b["id"])["first_bad_event_id"] == ev_b[2]["id"]
    out = _cli(api, "audit", "verify", "--instance", a["id"])
    assert out.returncode == 1
