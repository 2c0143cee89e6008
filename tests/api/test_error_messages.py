"""Bad input gets a 422 problem that names the real mistake, and changes nothing."""
from __future__ import annotations

from tests.support import Api

START = {"project_name": "x", "budget_wan": 10}


def _task(api: Api, business_key: str) -> tuple[str, str]:
    inst = api.start("review", START, business_key=business_key)
    return inst["id"], inst["open_tasks"][0]["id"]


def test_form_data_sent_without_the_variables_wrapper_is_named(api: Api) -> None:
    instance_id, task_id = _task(api, "E-1")
    r = api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/complete", json={"decision": "pass"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert "'decision'" in problem["detail"] and '{"variables": {"decision": …}}' in problem["detail"]
    assert problem["errors"] == {"decision": 'is not a field of this request; put it under "variables"'}
    assert api.instance(instance_id)["open_tasks"][0]["id"] == task_id  # nothing changed
    assert api.instance(instance_id)["open_tasks"][0]["assignee"] is None


def test_start_and_message_fields_beside_variables_are_named(api: Api) -> None:
    client = api.as_("oa", "applicant")
    r = client.post("/process-instances", json={"process_key": "review", "project_name": "x", "budget_wan": 10})
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"project_name", "budget_wan"} and "variables" in r.json()["detail"]
    assert api.admin.get("/process-instances").json()["items"] == []
    r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": "E-2", "signed_on": "x"})
    assert r.status_code == 422 and "'signed_on'" in r.json()["detail"]


def test_a_json_syntax_error_names_line_and_column(api: Api) -> None:
    _, task_id = _task(api, "E-3")
    body = '{"variables": {\n  "decision": "pass",\n}}'
    r = api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/complete", content=body,
                                             headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"] == "/problems/invalid-json"
    assert (problem["line"], problem["column"]) == (3, 1)
    assert "line 3, column 1" in problem["detail"] and "Expecting property name" in problem["detail"]
    assert "15" not in problem["errors"]  # not the bare character offset of the issue
    r = api.as_("oa", "applicant").post("/process-instances", content='{"process_key": review}',
                                        headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and (r.json()["line"], r.json()["column"]) == (1, 17)


def test_a_body_sent_as_a_form_names_the_content_type(api: Api) -> None:
    # curl -d without -H 'Content-Type: application/json'
    r = api.as_("oa", "applicant").post("/process-instances", content='{"process_key": "review"}',
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"]
    assert api.admin.get("/process-instances").json()["items"] == []


def test_completing_without_a_claim_claims_for_the_completer(api: Api) -> None:
    # documented in the README: complete claims an unclaimed task for whoever completes it
    _, task_id = _task(api, "E-4")
    r = api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200
    task = api.admin.get(f"/tasks/{task_id}").json()
    assert task["assignee"] == "wang" and task["completed_by"] == "wang"
