"""No diagram, variable or request can hang, poison or probe the service: each hostile case ends in a clear
4xx within its limit, the service keeps answering meanwhile, and nothing is half-written."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest

from tests.support import FIXTURES, T0, Api, Server, make_settings

COMMAND_LIMIT = 3.0  # seconds one engine command may take in these tests

DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="hostile" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="first" name="填报" camunda:candidateGroups="applicant">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:scriptTask id="compute" name="计算" scriptFormat="python">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:userTask id="check" name="核对" camunda:candidateGroups="data_bureau" {due}>
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    {boundary}
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="compute" />
    <bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="check" />
    <bpmn:sequenceFlow id="f4" sourceRef="check" targetRef="end_completed" />
  </bpmn:process>
  <bpmn:message id="m" name="reported" />
</bpmn:definitions>"""
TIMER = """<bpmn:boundaryEvent id="deadline" cancelActivity="false" attachedToRef="check">
      <bpmn:outgoing>f5</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">{text}</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:endEvent id="end_notice"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f5" sourceRef="deadline" targetRef="end_notice" />"""


def diagram(script: str = "x = 1", due: str | None = None, timer: str | None = None) -> bytes:
    return DIAGRAM.format(script=escape(script), due=f'camunda:dueDate="{escape(due)}"' if due else "",
                          boundary=TIMER.format(text=escape(timer)) if timer else "").encode()


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    settings = make_settings(tmp_path, database_url, FIXTURES, engine_command_time_limit_seconds=COMMAND_LIMIT,
                             database_busy_timeout_seconds=1.0)
    from service.clock import FrozenClock

    server = Server(settings, FrozenClock(T0))
    server.start()
    client = Api(server)
    yield client
    client.close()
    server.stop()


def deploy(api: Api, body: bytes, name: str = "hostile.bpmn") -> httpx.Response:
    return api.admin.post("/deployments", files=[("files", (name, body))])


def _to_script(api: Api, script: str, **start: Any) -> tuple[str, str]:
    assert deploy(api, diagram(script)).status_code == 201
    inst = api.start("hostile", dict(start), business_key="H-1")
    return inst["id"], api.open_task(inst["id"], "first")["id"]


class Probe:
    """Asks /healthz every 0.2 s while a hostile request runs; records the slowest answer."""

    def __init__(self, api: Api) -> None:
        self.url = api.server.url + "/healthz"
        self.slowest = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.failures += 0 if ok else 1
                self._stop.wait(0.2)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _complete(api: Api, task_id: str, variables: dict[str, Any] | None = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = api.as_("a", "applicant").post(f"/tasks/{task_id}/complete", json={"variables": variables or {}})
    return r, time.monotonic() - started


# ---- diagram code that would hold the service -----------------------------------------------------------

@pytest.mark.parametrize("script,within", [
    ("while True:\n    pass", 2.5),  # stopped by the step's time limit
    # one C-level call that would run for hours: the engine worker is killed
    ("x = pow(3, 1 << 1000000, (1 << 330000) + 1)", COMMAND_LIMIT + 2.0),
    ("x = pow(10, 10**7)", 2.5),  # the builtin power is bounded like **
    ("x = 'x'.ljust(10**10)", COMMAND_LIMIT + 2.0),  # memory: the worker's address space is capped
    ("x = '%*d' % (10**10, 1)", COMMAND_LIMIT + 2.0),
    ("n = 10**10\nx = f'{1:>{n}}'", COMMAND_LIMIT + 2.0),
])
def test_diagram_code_cannot_hold_the_service(api: Api, script: str, within: float) -> None:
    instance_id, task_id = _to_script(api, script)
    before = api.instance(instance_id)
    with Probe(api) as probe:
        r, took = _complete(api, task_id)
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/process-error" and r.json()["element_id"] in ("compute", None)
    assert took < within, took
    assert probe.failures == 0 and probe.slowest < 1.0, (probe.failures, probe.slowest)
    after = api.instance(instance_id)
    assert after["updated_at"] == before["updated_at"] and after["open_tasks"] == before["open_tasks"]
    # the service carries on: another instance runs its ordinary steps
    other = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="AFTER")
    assert other["open_tasks"][0]["element_id"] == "review_task"


@pytest.mark.parametrize("script", [
    "try:\n    x = 1\nexcept Exception:\n    pass",
    "while True:\n    try:\n        pass\n    finally:\n        break",
])
def test_code_that_could_catch_its_own_stop_is_refused_at_deploy(api: Api, script: str) -> None:
    r = deploy(api, diagram(script))
    assert r.status_code == 422 and "try" in r.json()["detail"]


# ---- durations and dates ---------------------------------------------------------------------------------

def test_a_start_variable_used_as_due_date_cannot_hang_the_service(api: Api) -> None:
    assert deploy(api, diagram(due="${deadline}")).status_code == 201
    inst = api.start("hostile", {"deadline": "P99999999Y"}, business_key="D-1")
    task_id = api.open_task(inst["id"], "first")["id"]
    with Probe(api) as probe:
        r, took = _complete(api, task_id)
    assert r.status_code == 422 and r.json()["element_id"] == "check", r.text
    assert "100 years" in r.json()["detail"] and took < 2
    assert probe.failures == 0


@pytest.mark.parametrize("value", ["-P1D", "P99999999999D", "P1.5M", "soon", "2026-13-40"])
def test_due_dates_from_expressions_are_bounded(api: Api, value: str) -> None:
    assert deploy(api, diagram(due="${deadline}")).status_code == 201
    inst = api.start("hostile", {"deadline": value}, business_key="D-2")
    r, _ = _complete(api, api.open_task(inst["id"], "first")["id"])
    assert r.status_code == 422 and r.json()["element_id"] == "check", r.text


@pytest.mark.parametrize("due,timer", [("P999999999Y", None), (None, "P999999Y"), (None, "P100Y1D"),
                                       ("2300-01-01T00:00:00+08:00", None)])
def test_literal_durations_beyond_100_years_are_refused_at_deploy(api: Api, due: str | None,
                                                                 timer: str | None) -> None:
    started = time.monotonic()
    r = deploy(api, diagram(due=due, timer=timer))
    assert r.status_code == 422 and "100 years" in r.json()["detail"], r.text
    assert time.monotonic() - started < 2


# ---- variables -------------------------------------------------------------------------------------------

POISON = {"typename": "Decimal", "value": "abc"}


@pytest.mark.parametrize("variables,field", [
    ({"a": POISON}, "a.typename"),
    ({"a": {"b": [{"c": POISON}]}}, "a.b[0].c.typename"),
    ({"a": [[[{"typename": "BpmnWorkflow"}]]]}, "a[0][0][0].typename"),
    ({"a": 2**70}, "a"),
])
def test_variables_are_checked_at_any_depth(api: Api, variables: dict[str, Any], field: str) -> None:
    assert deploy(api, diagram()).status_code == 201
    r = api.as_("oa", "applicant").post("/process-instances", json={"process_key": "hostile", "variables": variables})
    assert r.status_code == 422 and field in r.json()["errors"], r.text
    inst = api.start("hostile", {}, business_key="V-1")
    r, _ = _complete(api, api.open_task(inst["id"], "first")["id"], variables)
    assert r.status_code == 422 and field in r.json()["errors"], r.text
    r = api.admin.post("/messages", json={"name": "nobody", "business_key": "V-1", "variables": variables})
    assert r.status_code in (404, 422)


@pytest.mark.parametrize("raw,field", [
    ('{"process_key": "hostile", "variables": {"a": NaN}}', "a"),
    ('{"process_key": "hostile", "variables": {"a": Infinity}}', "a"),
    ('{"process_key": "hostile", "variables": {"a": "\\ud800"}}', "a"),
    ('{"process_key": "hostile", "variables": {"\\udc00": 1}}', None),
])
def test_json_that_would_not_round_trip_is_refused(api: Api, raw: str, field: str | None) -> None:
    assert deploy(api, diagram()).status_code == 201
    r = api.as_("oa", "applicant").post("/process-instances", content=raw,
                                        headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    if field:
        assert field in r.json()["errors"]
    assert api.admin.get("/process-instances").json()["items"] == []


@pytest.mark.parametrize("depth", [40, 300, 900])
def test_deeply_nested_json_is_refused(api: Api, depth: int) -> None:
    assert deploy(api, diagram()).status_code == 201
    nested = "[" * depth + "]" * depth
    raw = '{"process_key": "hostile", "variables": {"a": ' + nested + '}}'
    r = api.as_("oa", "applicant").post("/process-instances", content=raw,
                                        headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text


@pytest.mark.parametrize("script,variable", [
    ("x = range(3)", "x"),
    ("x = b'abc'", "x"),
    ("x = 1j", "x"),
    ("x = {1, 2}", "x"),
    ("x = []\nx.append(x)", "x"),
    ("x = 2 ** 100", "x"),
    ("x = float('nan')", "x"),
    ("x = {'typename': 'Decimal', 'value': 'abc'}", "x.typename"),
    ("x = []\ny = x\nfor i in range(300):\n    y.append([])\n    y = y[0]", "x"),
])
def test_script_results_that_cannot_be_stored_are_refused(api: Api, script: str, variable: str) -> None:
    instance_id, task_id = _to_script(api, script)
    before = api.instance(instance_id)
    r, _ = _complete(api, task_id)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["element_id"] == "compute" and any(k.startswith(variable) for k in body["errors"]), body
    after = api.instance(instance_id)
    assert after["updated_at"] == before["updated_at"]
    # the task can still be completed once the data is fixed: nothing was half-written
    assert api.open_task(instance_id, "first")["status"] == "open"


# ---- requests --------------------------------------------------------------------------------------------

def test_a_forged_cursor_is_refused(api: Api) -> None:
    import base64
    for forged in (json.dumps(["2026-01-01T00:00:00", "x"]), json.dumps([1, 2]), "not json"):
        cursor = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
        for path in ("/tasks", "/process-instances"):
            r = api.admin.get(path, params={"cursor": cursor})
            assert r.status_code == 422 and "cursor" in r.json()["errors"], (path, forged, r.text)


def test_request_bodies_are_limited(api: Api) -> None:
    limit = api.server.settings.max_request_bytes
    big = json.dumps({"process_key": "review", "variables": {"x": "a" * limit}})
    r = api.as_("oa", "applicant").post("/process-instances", content=big,
                                        headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"process_key": "review", "variables": {"x": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}}'

    r = api.as_("oa", "applicant").post("/process-instances", content=chunks(),
                                        headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    deployments = api.server.settings.max_deployment_bytes
    r = api.admin.post("/deployments", files=[("files", ("huge.bpmn", b" " * (deployments + 1)))])
    assert r.status_code == 413
    assert api.admin.get("/process-instances").json()["items"] == []


def test_an_oversized_diagram_is_refused_quickly(api: Api) -> None:
    tasks = "".join(f'<bpmn:userTask id="t{i}" camunda:candidateGroups="g"/>' for i in range(6000))
    body = DIAGRAM.replace('<bpmn:startEvent id="start">', tasks + '<bpmn:startEvent id="start">').format(
        script="x = 1", due="", boundary="").encode()
    started = time.monotonic()
    r = deploy(api, body)
    assert r.status_code == 422 and "at most" in r.json()["detail"]
    assert time.monotonic() - started < 3


def test_an_unexpected_error_is_a_500_problem_and_the_connection_stays_usable(api: Api,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import service.services.definitions as definitions

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(definitions, "list_latest", broken)
    token = api.token("admin", (), True)
    request = (f"GET /api/v1/process-definitions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
               f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            assert chunk, f"the connection was closed after: {received[:300]!r}"
            received += chunk
    first, second = received.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"500") and b"application/problem+json" in first and b"must not leak" not in first
    assert second.startswith(b"200")


def test_only_the_json_boolean_true_makes_an_administrator(api: Api) -> None:
    import jwt as pyjwt

    from tests.support import SECRET
    for claim in ("false", "true", 1, "yes"):
        token = pyjwt.encode({"sub": "mallory", "groups": [], "admin": claim, "iss": "govflow",
                              "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
        r = httpx.get(api.server.url + "/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403, (claim, r.status_code)


# ---- webhooks cannot probe the service's own network -----------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/x", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]:22/", "http://localhost:5432/", "http://10.1.2.3/",
                                 "http://192.168.0.1/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
                                 "http://user:pw@oa.example.gov.cn/", "ftp://oa.example.gov.cn/"])
def test_webhook_targets_on_private_addresses_are_refused(tmp_path: Path, database_url: str | None,
                                                          url: str) -> None:
    from service.clock import FrozenClock

    server = Server(make_settings(tmp_path, database_url, FIXTURES, webhook_allow_private=""), FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        r = api.admin.post("/webhooks", json={"url": url, "events": ["task.created"], "secret": "s" * 20})
        assert r.status_code == 422 and "url" in r.json()["errors"], r.text
        ok = api.admin.post("/webhooks", json={"url": "https://oa.example.gov.cn/hook", "events": ["task.created"],
                                               "secret": "s" * 20})
        assert ok.status_code == 201
    finally:
        api.close()
        server.stop()


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending(tmp_path: Path,
                                                                          database_url: str | None) -> None:
    from service.clock import FrozenClock
    from service.webhook_sender import WebhookSender

    hosts = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
    name = "ip6-localhost" if "ip6-localhost" in hosts else socket.gethostname()
    server = Server(make_settings(tmp_path, database_url, FIXTURES, webhook_allow_private=""), FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        r = api.admin.post("/webhooks", json={"url": f"http://{name}:9/hook", "events": ["task.created"],
                                              "secret": "s" * 20})
        assert r.status_code == 201, r.text
        api.start("review", {"project_name": "x", "budget_wan": 10})
        sender = WebhookSender(server.ctx)
        sender.run_once()
        sender.client.close()
        deliveries = api.admin.get("/webhooks/deliveries").json()
        assert deliveries and all("target refused" in (d["last_error"] or "") for d in deliveries), deliveries
        assert all(d["last_status_code"] is None for d in deliveries)
    finally:
        api.close()
        server.stop()


# ---- concurrency ---------------------------------------------------------------------------------------

def test_concurrent_retries_with_one_idempotency_key_do_the_work_once(api: Api) -> None:
    body = {"process_key": "review", "business_key": "IDEM-1", "variables": {"project_name": "x", "budget_wan": 10}}
    token = api.token("oa", ("applicant",))

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.server.url + "/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}) as client:
            return client.post("/process-instances", json=body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    assert [r.status_code for r in answers] == [201] * 20, [(r.status_code, r.text[:100]) for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(1 for r in answers if r.headers.get("Idempotent-Replayed") == "true") == 19
    assert len(api.admin.get("/process-instances").json()["items"]) == 1


def test_concurrent_completions_with_one_key_do_the_work_once(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="IDEM-2")
    task_id = inst["open_tasks"][0]["id"]
    token = api.token("li", ("data_bureau",))

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.server.url + "/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "c-1"}) as client:
            return client.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    assert [r.status_code for r in answers] == [200] * 20, [(r.status_code, r.text[:100]) for r in answers]
    assert len({r.text for r in answers}) == 1
    history = api.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]
    assert [e["action"] for e in history].count("task.completed") == 1


def test_a_busy_database_is_a_503_and_reads_still_answer(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="BUSY")
    task_id = inst["open_tasks"][0]["id"]
    ctx = api.server.ctx
    release = threading.Event()
    held = threading.Event()

    def hold_the_write_lock() -> None:
        with ctx.write() as session:  # a long writer elsewhere in the process (or another process's on PostgreSQL)
            from sqlalchemy import text

            session.execute(text("UPDATE process_instance SET updated_at = updated_at WHERE id = :i"),
                            {"i": inst["id"]})
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        r = api.as_("li", "data_bureau").post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
        took = time.monotonic() - started
        assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
        assert took < 5
        started = time.monotonic()
        assert api.as_("li", "data_bureau").get(f"/tasks/{task_id}").status_code == 200
        assert api.admin.get(f"/process-instances/{inst['id']}").status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        holder.join()
    r = api.as_("li", "data_bureau").post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 200


def test_the_engine_workers_are_separate_processes(api: Api) -> None:
    api.start("review", {"project_name": "x", "budget_wan": 10})
    pids = {w.process.pid for w in api.server.ctx.pool.workers if w.process is not None}
    assert pids and os.getpid() not in pids
