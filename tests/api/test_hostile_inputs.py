"""Hostile and extreme inputs, and who may do what: dates off the calendar, huge decimals, failing output
parameters, chunked bodies with a false length, a poisoned timer, a thread pool held by waiting writes, watch-only
grants, forged audit trails. Each test states what the service does; the docstrings say why it matters."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest

from service.clock import FrozenClock
from tests.support import FIXTURES, REPO, T0, Api, Server, make_settings

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  id="d" targetNamespace="http://govflow.example/bpmn">"""

START_FORM = """<bpmn:extensionElements><camunda:formData>
  <camunda:formField id="d" type="date" /><camunda:formField id="s" type="string" />
  <camunda:formField id="amount" type="decimal" />
</camunda:formData></bpmn:extensionElements>"""


def two_tasks(key: str, *, t1_attrs: str = "", t1_ext: str = "", t2_attrs: str = "", extra: str = "") -> bytes:
    """start (form: d date, s string, amount decimal) -> t1 (applicant) -> t2 (data_bureau) -> end_completed."""
    return (HEAD + f"""
  <bpmn:process id="{key}" isExecutable="true">
    <bpmn:startEvent id="start">{START_FORM}<bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="t1" name="first" camunda:candidateGroups="applicant" {t1_attrs}>
      <bpmn:extensionElements>{t1_ext}</bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:userTask id="t2" name="second" camunda:candidateGroups="data_bureau" {t2_attrs} />
    <bpmn:endEvent id="end_completed" />
    {extra}
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="t1" />
    <bpmn:sequenceFlow id="f2" sourceRef="t1" targetRef="t2" />
    <bpmn:sequenceFlow id="f3" sourceRef="t2" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>""").encode()


def timer_then_task(key: str, duration: str, task_attrs: str = "") -> bytes:
    """start (form) -> intermediate timer (duration) -> t2 (data_bureau, task_attrs) -> end_completed."""
    return (HEAD + f"""
  <bpmn:process id="{key}" isExecutable="true">
    <bpmn:startEvent id="start">{START_FORM}<bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait" name="wait">
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">{duration}</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:userTask id="t2" name="after the wait" camunda:candidateGroups="data_bureau" {task_attrs} />
    <bpmn:endEvent id="end_completed" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="t2" />
    <bpmn:sequenceFlow id="f3" sourceRef="t2" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>""").encode()


def deploy(api: Api, name: str, body: bytes) -> None:
    r = api.admin.post("/deployments", files=[("files", (name, body))])
    assert r.status_code == 201, r.text


def snapshot(api: Api, instance_id: str) -> tuple[Any, ...]:
    """What a refusal must leave unchanged: the instance view, its tasks and its audit trail."""
    view = api.admin.get(f"/process-instances/{instance_id}").json()
    tasks = api.admin.get(f"/process-instances/{instance_id}/tasks").json()
    history = api.admin.get(f"/process-instances/{instance_id}/history", params={"verify": "true"}).json()
    assert history["verified"] is True
    return view, tasks, [e["id"] for e in history["events"]]


# ---- 5xx on input a user controls ----------------------------------------------------------------------------

OUTPUT_PARAMETER = ('<camunda:inputOutput><camunda:outputParameter name="opinion">${{{}}}</camunda:outputParameter>'
                    '</camunda:inputOutput>')


@pytest.mark.parametrize("expression", ["comment_text", "1 / 0", "len(5)"])
def test_a_failing_output_parameter_is_a_422_naming_the_task_not_a_500(api: Api, expression: str) -> None:
    """An output parameter `${…}` that fails at run time (here: a name the optional form field leaves undefined,
    a division by zero, a type error) is a modelling mistake met by an ordinary user completing the task: it
    should answer 422 /problems/process-error naming the element, like a failing script or condition. It answers
    500 (service/engine/runtime.py Runtime._output_value runs outside the engine's error translation: only
    SpiffWorkflow exceptions are turned into EngineError; the worker reports 'internal', which becomes a
    RuntimeError)."""
    deploy(api, "op.bpmn", two_tasks("op", t1_ext=OUTPUT_PARAMETER.format(escape(expression))))
    inst = api.start("op", {})
    task = inst["open_tasks"][0]["id"]
    before = snapshot(api, inst["id"])
    r = api.as_("li", "applicant").post(f"/tasks/{task}/complete", json={"variables": {}})
    assert snapshot(api, inst["id"]) == before
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["type"] == "/problems/process-error" and r.json().get("element_id") == "t1"


def test_a_multi_instance_over_a_missing_collection_is_a_422_naming_it_and_changes_nothing(api: Api) -> None:
    """A parallel multi-instance task over a collection the process never set: SpiffWorkflow fails inside its step
    with a TypeError. That is a 422 /problems/process-error naming the multi-instance task (not a 500), nothing is
    kept, and the same completion with the collection given goes through."""
    each = ('<bpmn:multiInstanceLoopCharacteristics camunda:collection="depts" camunda:elementVariable="dept" />')
    body = two_tasks("mi_missing", t2_attrs="").decode().replace(
        '<bpmn:userTask id="t2" name="second" camunda:candidateGroups="data_bureau"  />',
        f'<bpmn:userTask id="t2" name="second" camunda:candidateGroups="data_bureau">{each}</bpmn:userTask>')
    assert each in body
    deploy(api, "mi_missing.bpmn", body.encode())
    inst = api.start("mi_missing", {})
    task = inst["open_tasks"][0]["id"]
    before = snapshot(api, inst["id"])
    r = api.as_("li", "applicant").post(f"/tasks/{task}/complete", json={"variables": {}})
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["type"] == "/problems/process-error" and r.json().get("element_id") == "t2", r.text
    assert "TypeError" in r.json()["detail"]
    assert snapshot(api, inst["id"]) == before
    r = api.as_("li", "applicant").post(f"/tasks/{task}/complete", json={"variables": {"depts": ["a", "b"]}})
    assert r.status_code == 200, r.text
    assert api.open_elements(inst["id"]) == ["t2", "t2"]


@pytest.mark.parametrize("variables,attrs", [
    ({"d": "9999-12-31"}, 'camunda:dueDate="${d}"'),  # the end of the due day is past datetime.max
    ({"s": "9999-12-31T23:00:00-12:00"}, 'camunda:dueDate="${s}"'),  # in UTC: year 10000
    ({"s": "0001-01-01T01:00:00+14:00"}, 'camunda:dueDate="${s}"'),  # in UTC: year 0
    ({"d": "9999-12-16"}, 'camunda:dueDate="${days_after(d, 15)}"'),  # hangzhou's file_contract, signed_on
])
def test_an_extreme_reported_date_is_a_4xx_not_a_500(api: Api, variables: dict[str, Any], attrs: str) -> None:
    """A form or message date is a `date` field with no bound; a due date or timer computed from it that falls
    off the calendar should be refused like any date more than 100 years away (422). service/engine/timers.py
    due_at() raises OverflowError (end_of_day, astimezone) outside the TimingError it checks for: 500."""
    deploy(api, "dates.bpmn", two_tasks("dates", t1_attrs=attrs))
    r = api.as_("li", "applicant").post("/process-instances", json={"process_key": "dates", "variables": variables})
    assert r.status_code == 422, (r.status_code, r.text)
    assert api.admin.get("/process-instances").json()["items"] == []


def test_an_extreme_signing_date_on_the_hangzhou_contract_message_is_a_4xx(lifecycle_api: Api) -> None:
    """The same through a shipped lifecycle: the OA system reports contract_signed with signed_on 9999-12-16 (a
    typo for 2025-12-16): file_contract's due date days_after(signed_on, 15) is 9999-12-31, whose end is past the
    calendar. Expected 422 naming the element and nothing changed; observed 500."""
    from tests.scenarios.test_hangzhou import PROCESS_KEY, start, to_approved

    assert PROCESS_KEY == "hangzhou"
    api = lifecycle_api
    bk = "HZ-ATTACK-1"
    iid = start(api, bk, is_build_dev=False)
    to_approved(api, iid, bk)
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    api.complete(iid, "procurement", {"procurement_method": "below_limit"})
    before = snapshot(api, iid)
    oa = api.with_key("oa-hz", ("applicant",), ("hangzhou",))
    r = oa.post("/messages", json={"name": "contract_signed", "business_key": bk,
                                   "variables": {"signed_on": "9999-12-16"}})
    assert snapshot(api, iid) == before
    assert r.status_code == 422, (r.status_code, r.text)


@pytest.mark.parametrize("amount", ["1E+400", "-1E+400"])
def test_a_decimal_beyond_float_range_is_a_422_not_a_500(api: Api, amount: str) -> None:
    """`decimal` form fields accept '1E+400' (finite, one digit: service/engine/values.py counts digits, not the
    exponent). The worker's answer then holds float('inf') (forms.to_json_value) and cannot be encoded: 500.
    It should be refused as 'not a finite number of at most 40 digits' (422, naming the field)."""
    deploy(api, "amounts.bpmn", two_tasks("amounts"))
    r = api.as_("li", "applicant").post("/process-instances",
                                        json={"process_key": "amounts", "variables": {"amount": amount}})
    assert r.status_code == 422 and "amount" in r.json().get("errors", {}), (r.status_code, r.text)


# ---- the scheduler ------------------------------------------------------------------------------------------

def test_one_instance_whose_timer_step_fails_internally_does_not_stop_every_other_timer(api: Api) -> None:
    """A user starts a process whose task after a one-hour wait is due at `${s}`, with s = '9999-12-31T23:00:00-12:00'
    (a start-form text; nothing checks it until the timer fires). When the timer falls due, the engine step fails
    with an internal error (see the OverflowError above), which the scheduler does not catch
    (service/scheduler.py _fire_instance catches DomainError and DBAPIError; engine_error() turns 'internal' into
    RuntimeError). timers.fire_due frees the lease and re-raises, so the round is aborted — and since that timer is
    the earliest due, every later round starts with it and aborts again: no other instance's timer ever fires, and
    the failing one is retried every round with no back-off and no failed_attempts recorded.
    Expected: the failure is recorded on that instance (attempts, last_error, back-off) and other instances'
    timers fire."""
    deploy(api, "poisoned.bpmn", timer_then_task("poisoned", "PT1H", 'camunda:dueDate="${s}"'))
    deploy(api, "healthy.bpmn", timer_then_task("healthy", "PT2H"))
    poisoned = api.start("poisoned", {"s": "9999-12-31T23:00:00-12:00"}, business_key="P-1")
    healthy = api.start("healthy", {}, business_key="H-1")
    api.clock.advance(timedelta(hours=3))
    scheduler = api.server.scheduler
    errors: list[str] = []
    for _ in range(3):  # three scheduler rounds, as the service's loop would run them (it logs and carries on)
        try:
            scheduler.run_until_idle()
        except Exception as e:  # noqa: BLE001 - what the loop in Scheduler._loop does with it
            errors.append(type(e).__name__)
    assert api.open_elements(healthy["id"]) == ["t2"], (
        "the healthy instance's timer never fired", errors, api.waiting(healthy["id"]))
    waits = api.waiting(poisoned["id"])
    assert waits and waits[0]["failed_attempts"] >= 1 and waits[0]["last_error"], waits


# ---- the API keeps answering meanwhile? ---------------------------------------------------------------------

SLOW_SCRIPT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="slow" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="first" name="first" camunda:candidateGroups="applicant" />
    <bpmn:scriptTask id="compute" scriptFormat="python"><bpmn:script>x = pow(3, 1 &lt;&lt; 1000000, (1 &lt;&lt; 330000) + 1)</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end_completed" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="compute" />
    <bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>"""


@pytest.fixture
def one_worker_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, engine_command_time_limit_seconds=3.0,
                             verify_state_storage=False)
    server = Server(settings, FrozenClock(T0))
    server.start()
    client = Api(server)
    yield client
    client.close()
    server.stop()


def test_healthz_and_reads_answer_while_requests_queue_for_an_engine_worker(one_worker_api: Api) -> None:
    """One slow step (3 s, then killed) on the only engine worker, and 60 ordinary starts queued behind it, are
    enough to hold all 40 threads of the server's thread pool: every endpoint is a sync `def` (/healthz and
    /readyz too), and a request waiting for an engine worker (EnginePool.run: `with chosen.lock`), for the
    SQLite writer lock (AppContext.write) or for another request's Idempotency-Key (idempotency.reserve polls
    with time.sleep) waits inside one of those threads. Meanwhile /healthz and a read by another department
    wait for a free thread. Expected (the brief, #9): /healthz within 1 s, reads keep answering."""
    api = one_worker_api
    api.admin.post("/deployments", files=[("files", ("slow.bpmn", SLOW_SCRIPT.encode()))]).raise_for_status()
    slow = api.start("slow", {})
    task = slow["open_tasks"][0]["id"]
    token_a = api.token("a", ("applicant",))
    token_b = api.token("b", ("data_bureau",))
    url = api.server.url
    # one client with enough connections: the requests reach the server at once
    client = httpx.Client(base_url=url + "/api/v1", timeout=120, headers={"Authorization": f"Bearer {token_a}"},
                          limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))

    def hostile() -> int:
        return client.post(f"/tasks/{task}/complete", json={"variables": {}}).status_code

    def ordinary(i: int) -> int:
        return client.post("/process-instances", json={"process_key": "review", "business_key": f"Q-{i}",
                                                       "variables": {"project_name": "x", "budget_wan": 10}}).status_code

    timings: dict[str, float] = {}

    def probe(name: str, path: str, headers: dict[str, str]) -> None:
        started = time.monotonic()
        with httpx.Client(timeout=120) as c:
            c.get(url + path, headers=headers)
        timings[name] = time.monotonic() - started

    with ThreadPoolExecutor(max_workers=70) as pool:
        first = pool.submit(hostile)
        time.sleep(0.3)
        queued = [pool.submit(ordinary, i) for i in range(60)]
        time.sleep(1.0)
        probes = [threading.Thread(target=probe, args=("healthz", "/healthz", {})),
                  threading.Thread(target=probe, args=("read", "/api/v1/groups",
                                                       {"Authorization": f"Bearer {token_b}"}))]
        for p in probes:
            p.start()
        for p in probes:
            p.join()
        assert first.result() == 422
        assert sorted({f.result() for f in queued}) == [201]
    client.close()
    assert timings["healthz"] < 1.0 and timings["read"] < 1.0, timings


# ---- /engine-rest: "the same rules as /api/v1" -----------------------------------------------------------------

@pytest.fixture
def granted_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, group_process_grants={"oa_systems": ["review"]})
    server = Server(settings, FrozenClock(T0))
    server.start()
    client = Api(server)
    yield client
    client.close()
    server.stop()


def test_engine_rest_gives_group_members_their_configured_process_grants(granted_api: Api) -> None:
    """GOVFLOW_GROUP_PROCESS_GRANTS applies on /api/v1 (deps.get_principal calls policy.with_group_grants) but not
    on /engine-rest (support.engine_principal does not): the same OA bridge, with the same token, sees and can
    message an instance over /api/v1 and does not see it over /engine-rest."""
    api = granted_api
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="G-1", user="li.ming")
    token = api.token("oa-bridge", ("oa_systems",))
    v1 = httpx.Client(base_url=api.server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    rest = httpx.Client(base_url=api.server.url + "/engine-rest", headers={"Authorization": f"Bearer {token}"},
                        timeout=30)
    assert v1.get(f"/process-instances/{inst['id']}").status_code == 200
    assert [t["id"] for t in v1.get("/tasks", params={"process_key": "review"}).json()["items"]] \
        == [inst["open_tasks"][0]["id"]]
    r = rest.get(f"/process-instance/{inst['id']}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert [t["id"] for t in rest.get("/task", params={"processDefinitionKey": "review"}).json()] \
        == [inst["open_tasks"][0]["id"]]


@pytest.fixture
def busy_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, database_busy_timeout_seconds=1.0)
    server = Server(settings, FrozenClock(T0))
    server.start()
    client = Api(server)
    yield client
    client.close()
    server.stop()


def test_engine_rest_reads_with_an_api_key_answer_while_the_database_is_busy(busy_api: Api) -> None:
    """/engine-rest authenticates an API key in a session of the *write* factory (support._authenticate:
    ctx.session_factory()), which on SQLite begins with BEGIN IMMEDIATE, outside the service's one-writer lock.
    So every /engine-rest request from an OA system takes the database's write lock, and while another writer
    holds it, a plain read (GET /engine-rest/task) waits GOVFLOW_DATABASE_BUSY_TIMEOUT_SECONDS and fails, where
    the same read on /api/v1 (authenticated in a read transaction) answers at once. Observed: 503 (a govflow
    problem document, not Camunda's error body) after the busy timeout. Expected: reads answer."""
    api = busy_api
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="BUSY-R")
    key = api.admin.post("/api-keys", json={"name": "oa-busy", "groups": ["data_bureau"], "processes": ["review"]})
    key.raise_for_status()
    secret = key.json()["key"]
    ctx = api.server.ctx
    release, held = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        from sqlalchemy import text

        with ctx.write() as session:
            session.execute(text("UPDATE process_instance SET updated_at = updated_at WHERE id = :i"),
                            {"i": inst["id"]})
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert held.wait(10)
        headers = {"X-API-Key": secret}
        started = time.monotonic()
        r1 = httpx.get(api.server.url + "/api/v1/tasks", headers=headers, timeout=30)
        v1_took = time.monotonic() - started
        started = time.monotonic()
        r2 = httpx.get(api.server.url + "/engine-rest/task", headers=headers, timeout=30)
        rest_took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert r1.status_code == 200 and v1_took < 1.0, (r1.status_code, v1_took)
    assert r2.status_code == 200 and rest_took < 1.0, (r2.status_code, r2.text[:200], rest_took)


# ---- forms: a task that records nothing takes anything ---------------------------------------------------------

def test_a_task_whose_form_declares_no_field_refuses_submitted_variables(api: Api) -> None:
    """docs/modelling.md: 'A submission with a field the form does not declare is refused.' A user task with an
    empty `<camunda:formData/>` (an acknowledgement: it records nothing) takes any variables instead, and they
    become process variables: the completer overwrites `budget_wan` (a start-form value) and plants `decision`,
    so every later condition, decision table and ${…} candidate group reads what that user chose.
    (services/tasks.py complete: `if fields:` treats an empty form as no form, then check_variables accepts
    anything; the start event, by contrast, refuses extra fields of an empty form.)"""
    deploy(api, "ack.bpmn", two_tasks("ack", t1_ext="<camunda:formData />"))
    inst = api.start("ack", {"amount": "80"})
    task = inst["open_tasks"][0]["id"]
    r = api.as_("li", "applicant").post(f"/tasks/{task}/complete",
                                        json={"variables": {"amount": 1, "decision": "pass"}})
    assert r.status_code == 422, (r.status_code, api.variables(inst["id"]))


# ---- /engine-rest typed variables and query dates: never a 500 for bad input (docs/camunda-rest.md) -----------

@pytest.mark.parametrize("raw", [
    '{"x": {"type": "Json", "value": {"a": NaN}}}',  # NaN inside a Json object (Python's json reads it)
    '{"x": {"value": {"a": Infinity}}}',  # untyped object
    '{"x": {"type": "Json", "value": ' + "[" * 800 + "]" * 800 + "}}",  # nested deeper than 32 levels
    '{"x": {"type": "Json", "value": "' + "[" * 5000 + "]" * 5000 + '"}}',  # a Json text nested deeper still
    '{"x": {"type": "Double", "value": "1E+400"}}',
])
def test_engine_rest_typed_variables_that_do_not_fit_are_a_400(api: Api, raw: str) -> None:
    """The same values on /api/v1 are refused with 422 naming the variable; /engine-rest answers 500
    (mapping._exact raises ValueError/RecursionError outside the try of _json/_untyped; '1E+400' passes
    _decimal and the engine's answer then cannot be encoded)."""
    deploy(api, "free.bpmn", (HEAD + """
  <bpmn:process id="free" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="t1" name="first" camunda:candidateGroups="applicant" />
    <bpmn:endEvent id="end_completed" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="t1" />
    <bpmn:sequenceFlow id="f2" sourceRef="t1" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>""").encode())
    token = api.token("li", ("applicant",))
    r = httpx.post(api.server.url + "/engine-rest/process-definition/key/free/start",
                   content='{"variables": ' + raw + "}", timeout=30,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "InvalidRequestException", (r.status_code, r.text[:200])
    assert api.admin.get("/process-instances").json()["items"] == []


@pytest.mark.parametrize("path", [
    "/api/v1/tasks?due_before=9999-12-31T23:59:59-12:00",
    "/api/v1/tasks?due_before=0001-01-01T00:00:00%2B14:00",
    # a cursor is base64 of [time, id]: this one says 9999-12-31T23:59:59-12:00
    "/api/v1/tasks?cursor=WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTEyOjAwIiwgIngiXQ",
    "/api/v1/process-instances?cursor=WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTEyOjAwIiwgIngiXQ",
    "/engine-rest/task?dueBefore=9999-12-31T23:59:59.000-1200",
    "/engine-rest/task?dueAfter=0001-01-01T00:00:00.000%2B1400",
])
def test_a_date_at_the_edge_of_the_calendar_in_a_query_is_a_4xx(api: Api, path: str) -> None:
    """Any user's GET answers 500: the aware date-time is valid but is stored/compared in UTC, where it falls off
    the calendar (sqlalchemy StatementError wrapping OverflowError, which the OverflowError handler does not see).
    The hardening claim 'a forged cursor is refused' and the Schemathesis 'no 5xx' run miss it."""
    token = api.token("li", ("applicant",))
    r = httpx.get(api.server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])


# ---- deploy: a long sum in a condition -------------------------------------------------------------------------

def test_a_long_arithmetic_expression_is_refused_with_a_422_not_a_500(api: Api) -> None:
    """A condition, script, output parameter, ${…} attribute or DMN cell with a few hundred chained '+' (a sum of
    300 amounts) makes RestrictedPython's recursive transformer raise RecursionError in the service's own
    process; deployment._compile only catches SyntaxError: 500 instead of 422 naming the element."""
    expression = "+".join(["budget"] * 300)
    body = two_tasks("longsum", t1_attrs=f'camunda:assignee="${{{expression}}}"')
    r = api.admin.post("/deployments", files=[("files", ("longsum.bpmn", body))])
    assert r.status_code == 422 and r.json().get("element_id") == "t1", (r.status_code, r.text[:200])


# ---- body limits --------------------------------------------------------------------------------------------

def _answer_head(sock: socket.socket) -> bytes:
    """What the server sends back up to the end of its answer's headers (less if it closes first)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    return answer


def _post_chunked_with_a_small_content_length(port: int, path: str, headers: bytes, size: int) -> bytes:
    """A POST whose headers say Content-Length: 5 while the body is sent chunked (h11, uvicorn's HTTP parser
    here, reads the chunked body and ignores the Content-Length, as RFC 9112 lets it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers
                     + b"Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")

        def chunk(data: bytes) -> None:
            sock.sendall(hex(len(data))[2:].encode() + b"\r\n" + data + b"\r\n")

        chunk(b'{"process_key": "review", "variables": {"x": "')
        sock.settimeout(1)  # an answer before the body is sent: the refusal, read before the rest can reset it
        with contextlib.suppress(TimeoutError):
            early = sock.recv(65536)
            if early:
                return early + _answer_head(sock) if b"\r\n\r\n" not in early else early
        sock.settimeout(60)
        for _ in range(size // 100_000):
            chunk(b"a" * 100_000)
        chunk(b'"}}')
        sock.sendall(b"0\r\n\r\n")
        return _answer_head(sock)


def test_a_body_larger_than_the_limit_is_refused_whatever_content_length_says(api: Api) -> None:
    """BodyLimit trusts a Content-Length header when there is one and then lets the body through unread; with
    `Transfer-Encoding: chunked` beside it, the server reads the whole chunked body for the application. A 3 MB
    body (limit: 1 MiB) reaches the JSON parser and the use case. Without credentials it is read and parsed too
    (the 401 comes after it): on a `govflow serve`, one unauthenticated 400 MB request took the service from
    185 MB to 1.1 GB resident. Expected: 413 (or 400) before the body is read."""
    token = api.token("li", ("applicant",))
    answer = _post_chunked_with_a_small_content_length(
        api.server.port, "/api/v1/process-instances", f"Authorization: Bearer {token}\r\n".encode(), 3_000_000)
    status = answer.split(b" ", 2)[1]
    assert status in (b"413", b"400"), answer[:300]
    answer = _post_chunked_with_a_small_content_length(api.server.port, "/api/v1/process-instances", b"", 3_000_000)
    status = answer.split(b" ", 2)[1]
    assert status in (b"413", b"400"), answer[:300]


def test_headers_without_end_are_refused_at_a_bounded_size(api: Api) -> None:
    """One client with no credentials sends a header that never ends. uvicorn's httptools parser keeps reading it:
    300 MiB of one header took a `govflow serve` from 152 MB to 516 MB resident, the work growing with the square
    of its size while every other request waited (60 MiB: 4.3 s). `govflow serve` names h11 (service/cli.py),
    which answers 400 once a request's headers pass 16 KiB. Expected: an answer and a closed connection long before
    8 MiB are read, and the service serving others meanwhile. (The 400 itself can be lost: a server that closes a
    connection with unread data resets it, and a reset may discard the answer before the client reads it.)"""
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
        sent = 0
        answer = b""
        reset = False
        try:
            while sent < 8 * 1024 * 1024 and not answer:
                sock.settimeout(30)
                sock.sendall(b"a" * 65536)
                sent += 65536
                sock.settimeout(0.001 if sent < 1024 * 1024 else 0.05)  # a look for an answer, not a wait
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            reset = True
        sock.settimeout(5)
        try:
            answer += sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            reset = True
        except OSError:
            pass
    assert sent < 8 * 1024 * 1024, "the whole header was read"
    assert answer.startswith(b"HTTP/1.1 400") or (reset and not answer), (sent, reset, answer[:200])
    assert api.admin.get("/process-instances").status_code == 200


def test_a_chunked_body_the_client_abandons_is_not_run(api: Api) -> None:
    """A chunked POST whose client sends the whole JSON and then goes away without the last chunk: BodyLimit
    read it for the limit, took the disconnect for the body's end and handed the part it had to the application as
    the whole, which started the instance. The same abort with a Content-Length starts nothing. Expected: nothing
    started."""
    token = api.token("oa", ("applicant",))
    body = b'{"process_key": "review", "business_key": "ABANDONED", "variables": {"project_name": "x", ' \
           b'"budget_wan": 10}}'

    def start_chunked(last: bytes) -> bytes:
        """The start as one chunk of JSON, then `last`: the terminating chunk, or more to come."""
        return (b"POST /api/v1/process-instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n" + last)

    with socket.create_connection(("127.0.0.1", api.server.port), timeout=30) as sock:
        sock.sendall(start_chunked(b"1\r\n \r\n"))
        time.sleep(0.2)
    time.sleep(0.3)  # the service notices the closed connection
    r = api.admin.get("/process-instances", params={"business_key": "ABANDONED"})
    assert r.status_code == 200 and r.json()["items"] == [], r.text[:300]
    # the same request, finished, starts it: the one above was refused for its abort, not for its content
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=30) as sock:
        sock.sendall(start_chunked(b"0\r\n\r\n"))
        answer = _answer_head(sock)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


@pytest.mark.parametrize("url", ["/api/v1/tasks?business_key=%00", "/api/v1/tasks?candidate_group=data%00bureau",
                                 "/api/v1/process-instances?process_key=review&business_key=P%00",
                                 "/api/v1/tasks/%00", "/api/v1/process-instances/a%00b/history",
                                 "/engine-rest/task?candidateGroup=%00"])
def test_a_nul_character_in_a_url_is_refused_the_same_way_on_every_database(api: Api, url: str) -> None:
    """A filter with a NUL character found nothing on SQLite (200, an empty page) and failed on PostgreSQL, whose
    text cannot hold one (422 "a value in the request does not fit"); a task id with one was a 404 on SQLite and a
    422 on PostgreSQL. Expected: on both, 422 naming the character, as a problem (under /engine-rest, Camunda's
    400 InvalidRequestException)."""
    if url.startswith("/engine-rest"):  # Camunda's error body, as every other error there
        r = httpx.get(api.server.url + url, headers=api.admin.headers)
        assert r.status_code == 400 and r.json()["type"] == "InvalidRequestException", r.text
        assert "NUL" in r.json()["message"]
        return
    r = api.admin.get(url.removeprefix("/api/v1"))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "/problems/invalid-input" and "NUL" in problem["detail"], problem
    assert r.headers["content-type"].startswith("application/problem+json")


# ---- who may add an opinion ------------------------------------------------------------------------------------

def test_a_watch_only_grant_does_not_add_approval_opinions_to_other_departments_tasks(api: Api) -> None:
    """README: a grant lets a system *watch* a process ("claim and complete only tasks offered to it"; policy.py:
    "a grant lets a system watch a process, not decide in it"). But POST /tasks/{id}/comments only asks that the
    caller may *see* the task (tasks._load → policy.may_see_task), so an OA key granted `review` for monitoring
    adds 审批意见 to the data bureau's review task; they are listed with the department's own opinions
    (GET /tasks/{id}/comments, /engine-rest/task/{id}/comment) under the key's name. The same holds for anyone
    who once completed a task, on that task, after the fact. Expected: 403 for a principal the task is not
    offered to (and who did not complete it)."""
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="C-1")
    task = inst["open_tasks"][0]
    assert task["candidate_groups"] == ["data_bureau"]
    watcher = api.with_key("oa-monitor", ("applicant",), ("review",))
    assert watcher.get(f"/tasks/{task['id']}").status_code == 200  # watching is allowed
    assert watcher.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}}).status_code == 403
    r = watcher.post(f"/tasks/{task['id']}/comments", json={"message": "同意（数据局）"})
    assert r.status_code == 403, (r.status_code, r.text[:200])


# ---- timers ----------------------------------------------------------------------------------------------------

CYCLE = """<bpmn:boundaryEvent id="remind" cancelActivity="false" attachedToRef="t1"><bpmn:outgoing>f7</bpmn:outgoing>
  <bpmn:timerEventDefinition><bpmn:timeCycle xsi:type="bpmn:tFormalExpression">{cycle}</bpmn:timeCycle>
  </bpmn:timerEventDefinition></bpmn:boundaryEvent>
<bpmn:endEvent id="end_notice" /><bpmn:sequenceFlow id="f7" sourceRef="remind" targetRef="end_notice" />"""


@pytest.mark.parametrize("cycle", ["R/PT1M", "R/P1D"])
def test_a_cycle_without_a_repetition_count_is_bounded_like_one_with_a_count(api: Api, cycle: str) -> None:
    """docs/modelling.md: 'a cycle repeats at most 10,000 times'. R10001/PT1M is refused at deploy, but R/PT1M
    (no count: timers.parse_cycle returns -1, 'unbounded', and only checks `cycles > MAX_CYCLES`) deploys and
    fires every minute for as long as the task stays open: an audit event, an outbox event and a webhook
    delivery per minute, without end. Expected: refused at deploy (422), or capped at 10,000."""
    r = api.admin.post("/deployments", files=[("files", ("cycle.bpmn", two_tasks("cycle", extra=CYCLE.format(cycle=cycle))))])
    assert r.status_code == 422, (r.status_code, r.text[:200])


# ---- the audit trail -------------------------------------------------------------------------------------------

def test_deleting_the_latest_audit_events_is_detected(api: Api) -> None:
    """services/audit.py: 'append-only and hash-chained per instance, so an edit, deletion or reordering of any
    event is detectable.' The chain has no anchor outside itself (the instance row keeps neither the last seq nor
    the last hash), so removing the newest events — here the data bureau's completion with its decision and
    opinion — leaves a shorter chain that verifies: `verify=true` answers verified, as `govflow audit verify`
    does. Expected: verified false (e.g. the instance row or a checkpoint holds the head of the chain)."""
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="AUD-1")
    task = inst["open_tasks"][0]["id"]
    r = api.as_("li", "data_bureau").post(f"/tasks/{task}/complete",
                                          json={"variables": {"decision": "reject"}, "comment": "不同意"})
    assert r.status_code == 200, r.text
    events = api.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]
    completed_seq = next(e["seq"] for e in events if e["action"] == "task.completed")
    from sqlalchemy import delete

    from service.db.models import AuditEvent

    with api.server.ctx.write() as session:  # someone with access to the database
        session.execute(delete(AuditEvent).where(AuditEvent.instance_id == inst["id"],
                                                 AuditEvent.seq >= completed_seq))
    history = api.admin.get(f"/process-instances/{inst['id']}/history", params={"verify": "true"}).json()
    assert history["verified"] is False, [e["action"] for e in history["events"]]


# ---- /metrics ----------------------------------------------------------------------------------------------

def test_made_up_http_methods_do_not_grow_the_metrics_without_bound(api: Api) -> None:
    """middleware.Metrics labels every request with its raw method; h11 accepts any token as a method. Each new
    method adds a counter and a latency histogram (about 20 series) that live for the life of the process: with
    no credentials, 2,000 requests `M000000 /healthz` … `M001999 /healthz` grew /metrics from 67 kB to 3.5 MB on
    a `govflow serve` — memory that only a restart gives back, and a scrape that grows with it. Expected: unknown
    methods counted under one label (e.g. "other")."""
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        for i in range(300):
            assert client.request(f"M{i:06d}", "/healthz").status_code == 405
        text = client.get("/metrics").text
    methods = {line.split('method="', 1)[1].split('"', 1)[0] for line in text.splitlines() if 'method="' in line}
    assert len(methods) < 20, sorted(methods)[:10]


# ---- the engine worker's memory cap counts what it keeps for others ----------------------------------------------

@pytest.fixture
def small_memory_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, engine_memory_limit_mb=64, verify_state_storage=False)
    server = Server(settings, FrozenClock(T0))
    server.start()
    client = Api(server)
    yield client
    client.close()
    server.stop()


def test_the_workflows_a_worker_keeps_do_not_use_up_the_memory_a_step_may_take(small_memory_api: Api) -> None:
    """GOVFLOW_ENGINE_MEMORY_LIMIT_MB is 'memory a step may take beyond the worker's own', but the cap is set once
    on the worker's address space (worker._limit_memory) while the worker keeps up to GOVFLOW_WORKFLOW_CACHE_SIZE
    (256) advanced workflows in memory, each task with its own deep copy of the data. Variables within the limits
    (under 1 MB, depth 2: 60,000 small objects) cost several MB per instance kept. So the very same start that
    succeeded four times fails the fifth with 422 'the diagram's code took more memory than allowed' (here with
    a 64 MB headroom; with the default 512 MB, one user's ~70 such instances do it: +6–7 MB per instance per
    worker measured on a `govflow serve`). Whichever request comes next when the cap is reached fails — another
    user's ordinary step as well — and the worker is killed and fills again. Expected: what the worker keeps is
    bounded (evicted) so that a step always has its headroom."""
    api = small_memory_api
    deploy(api, "bulky.bpmn", two_tasks("bulky").replace(START_FORM.encode(), b""))  # no start form: any variables
    bulky = {"rows": [{"k": i % 10} for i in range(60_000)]}
    someone = api.as_("li", "applicant")
    for i in range(8):
        r = someone.post("/process-instances", json={"process_key": "bulky", "business_key": f"B-{i}",
                                                     "variables": bulky})
        assert r.status_code == 201, (i, r.text[:200])
    r = api.as_("wang", "applicant").post("/process-instances", json={
        "process_key": "review", "variables": {"project_name": "x", "budget_wan": 10}})
    assert r.status_code == 201, (r.status_code, r.text[:300])


def test_starting_with_a_taken_business_key_does_not_reveal_an_instance_the_caller_may_not_see(api: Api) -> None:
    """README: 'An instance the caller may not see answers 404, as one that does not exist.' Yet any user may
    start `review` (no candidate starters), and a start with a business key already running answers 409 naming
    the running instance's id (instances._refuse_running_duplicate): a curious department learns which projects
    of other departments exist and their instance ids, by trying keys. Expected: the id only for a caller who
    may see the instance (the 409 itself is unavoidable, but it should not carry the id)."""
    api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="OTHER-DEPT-7", user="li.ming")
    nosy = api.as_("nosy", "finance_bureau")
    r = nosy.post("/process-instances", json={"process_key": "review", "business_key": "OTHER-DEPT-7",
                                              "variables": {"project_name": "x", "budget_wan": 10}})
    assert r.status_code == 409
    leaked = r.json().get("process_instance_id")
    assert leaked is None, (leaked, nosy.get(f"/process-instances/{leaked}").status_code)


def test_readyz_answers_while_another_request_writes(busy_api: Api) -> None:
    """/readyz reads the migration with ctx.engine.connect() — the *write* engine, whose transactions begin with
    BEGIN IMMEDIATE on SQLite — so the container's health check takes the database's write lock (outside the
    service's one-writer lock) and, while a write is in progress, waits GOVFLOW_DATABASE_BUSY_TIMEOUT_SECONDS
    (default 10 s, longer than the Dockerfile HEALTHCHECK's 8 s urlopen timeout) and then answers 503
    'unreachable': a busy but healthy service is reported unhealthy. Expected: /readyz reads in a read
    transaction and answers at once. (SQLite; on PostgreSQL it does not wait.)"""
    api = busy_api
    ctx = api.server.ctx
    release, held = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        from sqlalchemy import text

        with ctx.write() as session:
            session.execute(text("UPDATE process_definition SET name = name"))
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        r = httpx.get(api.server.url + "/readyz", timeout=30)
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert r.status_code == 200 and took < 0.5, (r.status_code, r.text, took)


# ---- deadlines from reported dates: who reports, and which dates ------------------------------------------------

def test_the_supervised_department_cannot_push_its_own_deadline_a_century_away(lifecycle_api: Api) -> None:
    """Hangzhou 第二十二条: the contract is filed within 15 days of signing; the deadline runs from the signing date
    the contract_signed message reports (payload signed_on: date, required — no bound). Any principal that sees
    the instance may send the message (policy.message_targets = visible_instances), which includes the applicant
    clerk who started it and whose filing the deadline supervises. Reporting signed_on = 2125-12-01 (a date that
    has not happened) is accepted: file_contract falls due in 2125 and the overdue notice to the data bureau
    (ted_contract_overdue) never comes. Expected: a reported event date after today is refused (422), and/or the
    report is reserved to the OA system granted the process."""
    from tests.scenarios.test_hangzhou import start, to_approved

    api = lifecycle_api
    bk = "HZ-ATTACK-2"
    iid = start(api, bk, is_build_dev=False)  # started by the clerk 'oa' of the applicant department
    to_approved(api, iid, bk)
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    api.complete(iid, "procurement", {"procurement_method": "below_limit"})
    before = snapshot(api, iid)
    clerk = api.as_("oa", "applicant")
    r = clerk.post("/messages", json={"name": "contract_signed", "business_key": bk,
                                      "variables": {"signed_on": "2026-03-01"}})
    assert r.status_code == 404  # the department does not report events itself: the OA system does
    oa = api.with_key("oa-hz-2", ("applicant",), ("hangzhou",))
    r = oa.post("/messages", json={"name": "contract_signed", "business_key": bk,
                                   "variables": {"signed_on": "2125-12-01"}})
    assert r.status_code == 422 and "signed_on" in r.json()["errors"], r.text  # a date that has not happened
    assert snapshot(api, iid) == before


# the form fields whose reported date a deadline or a later step runs from (docs/lifecycles/*.md)
REPORTED_DATES = [("hangzhou", "arrange_funds", "budget_issued_date"), ("hangzhou", "ndrc_approval", "approval_date"),
                  ("hangzhou", "acceptance", "acceptance_date"), ("qufu", "sign_contract", "contract_signed_date"),
                  ("wuhan", "book_assets", "operation_start_date"),
                  ("wuxing", "preliminary_acceptance", "preliminary_acceptance_date"),
                  ("yulin", "organise_acceptance", "acceptance_date"), ("yulin", "self_acceptance", "acceptance_date")]


@pytest.mark.parametrize("process, element, field", REPORTED_DATES)
def test_a_date_a_deadline_runs_from_cannot_be_reported_ahead_of_today(process: str, element: str,
                                                                          field: str) -> None:
    """As a message's reported date (above), a form's: a department that reports the date its own deadline runs
    from cannot move the deadline by reporting a day that has not come (Qufu 第二十八条: the contract is filed
    within 10 working days of its signing; signed "2099-12-31" put the filing deadline in 2100)."""
    from lxml import etree

    from service.engine.forms import TODAY, parse_form, validate

    [task] = etree.parse(str(REPO / "bpmn" / f"{process}.bpmn")).xpath("//*[@id=$id]", id=element)
    fields = {f.id: f for f in parse_form(task) or []}
    assert fields[field].max == TODAY
    assert validate([fields[field]], {field: "2026-03-03"}, apply_defaults=False,
                    today=date(2026, 3, 2))[1] == {field: "must not be after today (2026-03-02)"}
    assert validate([fields[field]], {field: "2026-03-02"}, apply_defaults=False, today=date(2026, 3, 2))[1] == {}


def test_a_contract_signed_in_the_future_is_refused_and_changes_nothing(lifecycle_api: Api) -> None:
    from tests.scenarios.test_qufu import CONTRACT, to_contract

    api = lifecycle_api
    iid = to_contract(api, "QF-FUTURE")
    before = snapshot(api, iid)
    task = api.open_task(iid, "sign_contract")
    r = api.admin.post(f"/tasks/{task['id']}/complete",
                       json={"variables": {**CONTRACT, "contract_signed_date": "2099-12-31"}})
    assert r.status_code == 422 and "contract_signed_date" in r.json()["errors"], r.text
    assert snapshot(api, iid) == before


def test_camunda_initiator_is_the_authenticated_starter_not_a_submitted_value(api: Api) -> None:
    """Camunda Modeler's start event offers *Initiator* (camunda:initiator="starter"): Camunda sets that variable to
    the authenticated user, and designers assign tasks with ${starter}. govflow parses the attribute
    (parser.GovflowStartEventParser) and never sets the variable: a start without it fails (422 NameError), and —
    on a process without a start form — the starter may submit `starter` themselves and give the task to anyone
    (here 'zhang.director'). Expected: the variable is the authenticated user (a submitted value refused), or the
    attribute is refused at deploy like other unsupported features."""
    body = two_tasks("initiator", t1_attrs='camunda:assignee="${starter}"').replace(START_FORM.encode(), b"")
    body = body.replace(b'<bpmn:startEvent id="start">', b'<bpmn:startEvent id="start" camunda:initiator="starter">')
    r = api.admin.post("/deployments", files=[("files", ("initiator.bpmn", body))])
    if r.status_code == 422:
        return  # refused at deploy: acceptable
    assert r.status_code == 201, r.text
    clerk = api.as_("li.ming", "applicant")
    r = clerk.post("/process-instances", json={"process_key": "initiator", "variables": {"starter": "zhang.director"}})
    assigned = [t["assignee"] for t in r.json().get("open_tasks", [])] if r.status_code == 201 else None
    assert r.status_code == 422 or assigned == ["li.ming"], (r.status_code, assigned)
    r = clerk.post("/process-instances", json={"process_key": "initiator", "variables": {}})
    assert r.status_code == 201 and [t["assignee"] for t in r.json()["open_tasks"]] == ["li.ming"], r.text[:200]


def test_a_reviewing_department_does_not_report_the_peoples_congress_vote(lifecycle_api: Api) -> None:
    """Messages report facts from outside (the budget vote, a signed contract). Who may send one is 'the instances
    it sees' (policy.message_targets), and a department sees every instance in which it ever had a task. So the
    third-party pre-review agency, whose task ended long ago, reports npc_budget_approved — a decision of the
    People's Congress — and the project moves on to budget arrangement. README documents the rule ('send messages
    to the instances they see'); this test states the consequence for the lead to judge. Expected (suggested):
    messages from principals granted the process (the OA system) and administrators only, or per-message senders
    declared in the diagram."""
    from tests.scenarios.test_hangzhou import start

    api = lifecycle_api
    bk = "HZ-ATTACK-3"
    iid = start(api, bk, is_build_dev=False)
    api.complete(iid, "prereview", {"decision": "pass"}, user="agency", group="third_party")
    api.complete(iid, "expert_review", {"decision": "pass"})
    api.complete(iid, "budget_review", {"decision": "pass"})
    api.complete(iid, "lg_approval", {"decision": "pass"})
    r = api.as_("agency", "third_party").post("/messages", json={"name": "npc_budget_approved", "business_key": bk})
    assert r.status_code in (403, 404), (r.status_code, api.open_elements(iid))
