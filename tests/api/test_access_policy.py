"""The access policy (service/policy.py), one test per rule of the README's "Who sees what": users by
candidate group, assignment and what they started or completed; systems by the processes they are granted;
administrators everywhere."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.clock import FrozenClock
from tests.support import FIXTURES, T0, Api, Server, make_settings

START = {"project_name": "x", "budget_wan": 10}
REVIEW = (FIXTURES / "review.bpmn").read_bytes()
REVIEW_DMN = (FIXTURES / "review.dmn").read_bytes()


def _waiting_for_contract(api: Api, business_key: str, user: str = "li.ming") -> str:
    inst = api.start("review", START, business_key=business_key, user=user)
    api.complete(inst["id"], "review_task", {"decision": "pass"})
    return str(inst["id"])


def _ids(page: dict) -> set[str]:  # type: ignore[type-arg]
    return {item["id"] for item in page["items"]}


def test_administrators_see_and_do_everything(api: Api) -> None:
    inst = api.start("review", START, business_key="ADM-1", user="li.ming")
    task_id = inst["open_tasks"][0]["id"]
    assert inst["id"] in _ids(api.admin.get("/process-instances").json())
    assert task_id in _ids(api.admin.get("/tasks").json())
    assert api.admin.get(f"/tasks/{task_id}").status_code == 200
    r = api.admin.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200, r.text


def test_a_user_sees_the_instances_they_started_and_nobody_else_does(api: Api) -> None:
    inst = api.start("review", START, business_key="OWN-1", user="li.ming", groups=("applicant",))
    starter = api.as_("li.ming", "applicant")
    stranger = api.as_("zhao", "applicant")  # same group, but no task of theirs is in the instance
    assert starter.get(f"/process-instances/{inst['id']}").status_code == 200
    assert inst["id"] in _ids(starter.get("/process-instances").json())
    r = stranger.get(f"/process-instances/{inst['id']}")
    assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
    assert inst["id"] not in _ids(stranger.get("/process-instances").json())
    assert stranger.get(f"/process-instances/{inst['id']}/history").status_code == 404


def test_a_candidate_group_sees_its_tasks_and_their_instances(api: Api) -> None:
    inst = api.start("review", START, business_key="CG-1")
    task_id = inst["open_tasks"][0]["id"]  # review_task, offered to data_bureau
    reviewer = api.as_("wang", "data_bureau")
    assert task_id in _ids(reviewer.get("/tasks").json())
    assert reviewer.get(f"/tasks/{task_id}").status_code == 200
    assert reviewer.get(f"/process-instances/{inst['id']}").status_code == 200
    other = api.as_("qian", "finance_bureau")
    assert task_id not in _ids(other.get("/tasks").json())
    r = other.get(f"/tasks/{task_id}")
    assert r.status_code == 403 and "data_bureau" in r.json()["detail"]
    assert other.get(f"/process-instances/{inst['id']}").status_code == 404


def test_a_task_offered_to_a_user_by_name_is_theirs(api: Api) -> None:
    inst = api.start("review", START, business_key="CU-1")
    task_id = inst["open_tasks"][0]["id"]
    from sqlalchemy import select, update

    from service.db.models import HumanTask, TaskCandidate

    with api.server.ctx.session_factory() as session, session.begin():
        session.execute(update(HumanTask).where(HumanTask.id == task_id).values(candidate_users=["sun"]))
        created_at, due_at = session.execute(select(HumanTask.created_at, HumanTask.due_at)
                                             .where(HumanTask.id == task_id)).one()
        session.add(TaskCandidate(task_id=task_id, kind="user", value="sun", status="open", created_at=created_at,
                                  due_at=due_at, claimed=False))
    sun = api.as_("sun")
    assert task_id in _ids(sun.get("/tasks").json())
    assert sun.post(f"/tasks/{task_id}/claim").status_code == 200


def test_the_assignee_and_the_completer_keep_seeing_the_task(api: Api) -> None:
    inst = api.start("review", START, business_key="AS-1")
    task_id = inst["open_tasks"][0]["id"]
    assert api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/claim").status_code == 200
    # the same user later without the group (moved department): the claim keeps the task theirs
    moved = api.as_("wang")
    assert task_id in _ids(moved.get("/tasks").json())
    r = moved.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200, r.text
    assert task_id in _ids(moved.get("/tasks", params={"status": "completed"}).json())
    assert moved.get(f"/tasks/{task_id}").status_code == 200
    assert moved.get(f"/process-instances/{inst['id']}").status_code == 200


def test_an_inbox_filter_naming_someone_else_shows_only_what_the_caller_may_see(api: Api) -> None:
    # an inbox of the caller's own group, name or claims is not checked against the policy again (its filter
    # implies it, see policy.filter_shows_only_visible_tasks); naming another group, user or assignee is
    inst = api.start("review", START, business_key="IF-1")
    task_id = inst["open_tasks"][0]["id"]  # review_task, offered to data_bureau
    assert api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/claim").status_code == 200
    wang, qian = api.as_("wang", "data_bureau"), api.as_("qian", "finance_bureau")
    for params in ({"candidate_group": "data_bureau"}, {"assignee": "wang"}):
        assert _ids(wang.get("/tasks", params=params).json()) == {task_id}, params
        assert _ids(qian.get("/tasks", params=params).json()) == set(), params
    engine_rest = {"base_url": api.server.url + "/engine-rest", "timeout": 30}
    for user, groups, expected in (("wang", ("data_bureau",), [task_id]), ("qian", ("finance_bureau",), [])):
        with httpx.Client(headers={"Authorization": f"Bearer {api.token(user, groups)}"}, **engine_rest) as c:
            for params in ({"candidateUser": "wang", "includeAssignedTasks": "true"},
                           {"candidateGroups": "data_bureau", "includeAssignedTasks": "true"}):
                assert [t["id"] for t in c.get("/task", params=params).json()] == expected, (user, params)


def test_a_claim_or_completion_from_the_wrong_group_names_the_groups_that_may(api: Api) -> None:
    inst = api.start("review", START, business_key="WG-1")
    task_id = inst["open_tasks"][0]["id"]
    wrong = api.as_("qian", "finance_bureau")
    for path, body in ((f"/tasks/{task_id}/claim", None), (f"/tasks/{task_id}/complete", {"variables": {}})):
        r = wrong.post(path, json=body)
        assert r.status_code == 403
        problem = r.json()
        assert "group data_bureau" in problem["detail"] and "finance_bureau" in problem["detail"]
        assert problem["candidate_groups"] == ["data_bureau"]
    assert api.instance(inst["id"])["open_tasks"][0]["assignee"] is None


def test_only_the_assignee_or_an_administrator_releases_a_claim(api: Api) -> None:
    inst = api.start("review", START, business_key="UC-1")
    task_id = inst["open_tasks"][0]["id"]
    assert api.as_("wang", "data_bureau").post(f"/tasks/{task_id}/claim").status_code == 200
    r = api.as_("zhou", "data_bureau").post(f"/tasks/{task_id}/unclaim")
    assert r.status_code == 409 and r.json()["assignee"] == "wang"
    assert api.admin.post(f"/tasks/{task_id}/unclaim").json()["assignee"] is None


def test_a_system_granted_a_process_reads_every_instance_and_task_of_it(api: Api) -> None:
    theirs = api.start("review", START, business_key="G-1", user="li.ming")
    elsewhere = api.start("deadlines", {}, business_key="G-2", user="li.ming")
    # in no group the tasks are offered to: what it sees, it sees by the grant
    oa = api.with_key("oa-review", groups=("oa_link",), processes=("review",))
    instances = _ids(oa.get("/process-instances").json())
    assert theirs["id"] in instances and elsewhere["id"] not in instances
    assert oa.get(f"/process-instances/{theirs['id']}").status_code == 200
    assert oa.get(f"/process-instances/{theirs['id']}/history").status_code == 200
    assert oa.get(f"/process-instances/{elsewhere['id']}").status_code == 404
    task_id = theirs["open_tasks"][0]["id"]  # offered to data_bureau, not to the key's group
    assert task_id in _ids(oa.get("/tasks").json())
    assert task_id in _ids(oa.get("/tasks", params={"business_key": "G-1"}).json())
    assert oa.get(f"/tasks/{task_id}").status_code == 200
    other_task = elsewhere["open_tasks"][0]["id"]
    assert other_task not in _ids(oa.get("/tasks").json())


def test_a_system_granted_a_process_starts_it_and_messages_instances_it_did_not_start(api: Api) -> None:
    instance_id = _waiting_for_contract(api, "HZ-1", user="li.ming")
    body = {"name": "contract_signed", "business_key": "HZ-1", "variables": {"signed_on": "2026-09-01"}}
    # the symptom: a key without the grant cannot find the instance, and is told why
    plain = api.with_key("oa-plain", groups=("applicant",))
    r = plain.post("/messages", json=body)
    assert r.status_code == 404 and "--processes" in r.json()["detail"]
    wrong = api.with_key("oa-other", groups=("applicant",), processes=("deadlines",))
    assert wrong.post("/messages", json=body).status_code == 404
    oa = api.with_key("oa-review", groups=("applicant",), processes=("review",))
    r = oa.post("/messages", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["process_instance_id"] == instance_id
    assert [t["element_id"] for t in r.json()["next_tasks"]] == ["file_contract"]
    started = oa.post("/process-instances", json={"process_key": "review", "business_key": "HZ-2",
                                                  "variables": START})
    assert started.status_code == 201 and started.json()["started_by"] == "oa-review"


def test_a_grant_does_not_let_a_system_claim_or_complete_other_groups_tasks(api: Api) -> None:
    inst = api.start("review", START, business_key="GC-1")
    task_id = inst["open_tasks"][0]["id"]  # data_bureau's
    oa = api.with_key("oa-review", groups=("applicant",), processes=("review",))
    assert oa.post(f"/tasks/{task_id}/claim").status_code == 403
    r = oa.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403 and r.json()["candidate_groups"] == ["data_bureau"]
    # a task offered to its own group it completes
    api.complete(inst["id"], "review_task", {"decision": "revise"})
    revise = api.open_task(inst["id"], "revise_task")
    r = oa.post(f"/tasks/{revise['id']}/complete", json={"variables": {"budget_wan": 12}})
    assert r.status_code == 200, r.text


@pytest.fixture
def granted_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, group_process_grants={"oa_systems": ["review"]})
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    yield api
    api.close()
    server.stop()


def test_a_group_granted_a_process_by_configuration_gives_its_members_the_grant(granted_api: Api) -> None:
    api = granted_api
    instance_id = _waiting_for_contract(api, "CFG-1", user="li.ming")
    member = api.as_("oa-bridge", "oa_systems")
    assert member.get(f"/process-instances/{instance_id}").status_code == 200
    r = member.post("/messages", json={"name": "contract_signed", "business_key": "CFG-1"})
    assert r.status_code == 200, r.text
    assert api.as_("someone", "finance_bureau").get(f"/process-instances/{instance_id}").status_code == 404


def test_candidate_starter_groups_restrict_starting_and_a_grant_lifts_it(api: Api) -> None:
    restricted = REVIEW.replace(b'id="review" name=', b'id="review" camunda:candidateStarterGroups="applicant" name=')
    assert restricted != REVIEW
    r = api.admin.post("/deployments", files=[("files", ("review.bpmn", restricted)),
                                              ("files", ("review.dmn", REVIEW_DMN))])
    assert r.status_code == 201, r.text
    body = {"process_key": "review", "variables": START}
    r = api.as_("qian", "finance_bureau").post("/process-instances", json=body)
    assert r.status_code == 403 and "group applicant" in r.json()["detail"]
    assert api.as_("li.ming", "applicant").post("/process-instances", json=body).status_code == 201
    granted = api.with_key("oa-review", groups=("finance_bureau",), processes=("review",))
    assert granted.post("/process-instances", json=body).status_code == 201


def test_without_candidate_starters_anyone_authenticated_may_start(api: Api) -> None:
    r = api.as_("anyone").post("/process-instances", json={"process_key": "review", "variables": START})
    assert r.status_code == 201, r.text
    assert api.anonymous().post("/process-instances", json={"process_key": "review"}).status_code == 401


def test_administrative_actions_are_for_administrators_only(api: Api) -> None:
    inst = api.start("review", START, business_key="AO-1")
    oa = api.with_key("oa-review", groups=("applicant",), processes=("review",))
    refused = [
        oa.post(f"/process-instances/{inst['id']}/cancel", json={"reason": "x"}),
        oa.post(f"/process-instances/{inst['id']}/timers/review_deadline/fire"),
        oa.post("/deployments", files=[("files", ("review.bpmn", REVIEW))]),
        oa.get("/webhooks"),
        oa.get("/api-keys"),
        oa.post("/api-keys", json={"name": "mine"}),
    ]
    for r in refused:
        assert r.status_code == 403, r.text
        assert r.json()["detail"].startswith("only administrators")


def test_a_grant_of_an_unknown_process_is_refused(api: Api) -> None:
    r = api.admin.post("/api-keys", json={"name": "oa-typo", "processes": ["hangzou"]})
    assert r.status_code == 422
    assert "hangzou" in r.json()["detail"] and "review" in r.json()["errors"]["processes"]
    assert api.admin.get("/api-keys").json() == []
    r = api.admin.post("/api-keys", json={"name": "oa-ok", "groups": ["applicant"], "processes": ["review"]})
    assert r.status_code == 201 and r.json()["processes"] == ["review"]
    assert api.admin.get("/api-keys").json()[0]["processes"] == ["review"]


def test_only_administrators_and_granted_systems_send_messages(api: Api) -> None:
    instance_id = _waiting_for_contract(api, "UM-1", user="li.ming")
    body = {"name": "contract_signed", "business_key": "UM-1"}
    stranger = api.as_("qian", "finance_bureau")
    r = stranger.post("/messages", json=body)
    assert r.status_code == 404 and "qian" in r.json()["detail"]
    # the starter sees the instance, but facts from outside are the OA system's to report
    r = api.as_("li.ming", "applicant").post("/messages", json=body)
    assert r.status_code == 404 and "--processes" in r.json()["detail"]
    assert api.instance(instance_id)["waiting_for"][0]["name"] == "contract_signed"  # nothing changed
    r = api.with_key("oa-review", ("applicant",), ("review",)).post("/messages", json=body)
    assert r.status_code == 200 and r.json()["process_instance_id"] == instance_id
