"""The scheduler fires each due timer exactly once, across processes and crashes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.db.models import AuditEvent, HumanTask, WaitingEvent
from tests.support import REPO, Api

INSTANCES = 200


def _count_open_after(api: Api) -> int:
    with api.server.ctx.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(HumanTask).where(
            HumanTask.element_id == "after", HumanTask.status == "open")) or 0)


def test_two_scheduler_processes_fire_each_due_timer_exactly_once(api: Api) -> None:
    client = api.as_("oa", "applicant")
    ids = []
    for i in range(INSTANCES):
        r = client.post("/process-instances", json={"process_key": "wait_a_day", "business_key": f"X-{i}"})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    # the instances were started on the frozen test clock; for the workers' wall clock they are long due
    settings = api.server.settings
    env = {**os.environ, "GOVFLOW_DATABASE_URL": settings.resolved_database_url(),
           "GOVFLOW_DATA_DIR": str(settings.data_dir), "GOVFLOW_JWT_SECRET": "x" * 40,
           "GOVFLOW_SCHEDULER_MAX_SLEEP_SECONDS": "0.2", "GOVFLOW_SCHEDULER_BATCH_SIZE": "10",
           "GOVFLOW_WEBHOOK_SENDER_ENABLED": "false"}
    workers = [subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        deadline = time.monotonic() + 240
        while _count_open_after(api) < INSTANCES and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
    assert _count_open_after(api) == INSTANCES
    with api.server.ctx.session_factory() as s:
        fired = list(s.execute(select(AuditEvent.instance_id, AuditEvent.data)
                               .where(AuditEvent.action == "timer.fired")))
        waiting = s.scalar(select(func.count()).select_from(WaitingEvent).where(WaitingEvent.kind == "timer"))
    per_instance = Counter(instance_id for instance_id, _ in fired)
    assert len(per_instance) == INSTANCES and set(per_instance.values()) == {1}
    assert waiting == 0
    by_worker = Counter(data["fired_by"] for _, data in fired)
    print(f"\nexactly-once: {INSTANCES} timers, {len(fired)} firings, by process: {dict(by_worker)}")
    if api.server.ctx.engine.dialect.name == "postgresql":
        assert len(by_worker) == 2, by_worker  # both processes took part
    else:
        assert len(by_worker) >= 1  # SQLite: one scheduler at a time holds the lease


def test_a_crash_while_firing_leaves_the_timer_due(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = api.start("wait_a_day", {}, business_key="CRASH")
    api.clock.advance(timedelta(days=2))
    import service.services.timers as timers_module

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(timers_module, "apply", crash)
    assert api.server.scheduler.run_until_idle() == 0  # the round carries on; the failure is recorded
    monkeypatch.undo()
    [waiting] = api.waiting(inst["id"])
    assert waiting["element_id"] == "one_day" and waiting["failed_attempts"] == 1
    assert "power cut" in waiting["last_error"]
    assert api.open_elements(inst["id"]) == []
    api.clock.advance(timedelta(minutes=2))  # after the back-off it is tried again
    assert api.server.scheduler.run_until_idle() == 1
    assert api.open_elements(inst["id"]) == ["after"]


BROKEN_AFTER_A_DAY = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="broken_timer" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>P1D</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:scriptTask id="compute" scriptFormat="python">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:script>x = open("/etc/hostname")</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="compute" />
    <bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>"""


def test_a_timer_whose_firing_fails_stays_due_shows_the_error_and_backs_off(api: Api) -> None:
    r = api.admin.post("/deployments", files=[("files", ("broken_timer.bpmn", BROKEN_AFTER_A_DAY.encode()))])
    assert r.status_code == 201
    inst = api.start("broken_timer", {})
    api.advance(timedelta(days=2))
    timer = api.waiting(inst["id"])[0]
    assert timer["element_id"] == "wait" and timer["failed_attempts"] == 1 and "open" in timer["last_error"]
    assert api.advance(timedelta(seconds=10)) == 0  # backing off
    assert api.waiting(inst["id"])[0]["failed_attempts"] == 1
    api.advance(timedelta(minutes=2))
    assert api.waiting(inst["id"])[0]["failed_attempts"] == 2
    assert api.instance(inst["id"])["status"] == "running"


def test_a_timer_due_before_the_next_round_wakes_the_sleeping_scheduler(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    """The scheduler sleeps until the earliest due timer (here at most an hour); a request that commits a
    timer due sooner wakes it, so short timers fire on time instead of at the next round."""
    from service.clock import Clock
    from service.scheduler import Scheduler
    from tests.support import FIXTURES, Server, make_settings

    short = (FIXTURES / "wait_a_day.bpmn").read_bytes().replace(b">P1D<", b">PT1S<").replace(
        b'id="wait_a_day"', b'id="wait_a_second"')
    settings = make_settings(tmp_path, database_url, FIXTURES, scheduler_enabled=True,
                             scheduler_max_sleep_seconds=3600.0)
    server = Server(settings, Clock())  # type: ignore[arg-type]
    server.start()
    api = Api(server)
    try:
        scheduler = next(w for w in server.app.state.workers if isinstance(w, Scheduler))
        deadline = time.monotonic() + 10
        while scheduler._next_round is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler._next_round is not None  # asleep, for up to an hour
        r = api.admin.post("/deployments", files=[("files", ("wait_a_second.bpmn", short))])
        assert r.status_code in (200, 201), r.text
        started = time.monotonic()
        iid = api.start("wait_a_second", {})["id"]
        while api.open_elements(iid) != ["after"] and time.monotonic() - started < 20:
            time.sleep(0.05)
        assert api.open_elements(iid) == ["after"]
        assert time.monotonic() - started < 20 and scheduler.wakes >= 1
        waited = len(api.waiting(iid))
        assert waited == 0
    finally:
        api.close()
        server.stop()
