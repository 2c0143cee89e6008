"""Webhooks delivered to a real local HTTP receiver: signatures, retries, failure, restart, volume."""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from service.clock import FrozenClock
from service.webhook_sender import WebhookSender
from tests.receiver import Receiver
from tests.support import FIXTURES, T0, Api, Server, make_settings

SECRET = "a-receivers-shared-secret"


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, as the README shows it."""
    expected = hmac.new(secret.encode(), headers["X-Govflow-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Govflow-Signature"])


def subscribe(api: Api, url: str, events: list[str]) -> dict:
    r = api.admin.post("/webhooks", json={"url": url, "events": events, "secret": SECRET})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_subscriptions_are_admin_only_and_validated(api: Api) -> None:
    assert api.as_("x", "data_bureau").post("/webhooks", json={
        "url": "http://127.0.0.1:1/h", "events": ["task.created"], "secret": SECRET}).status_code == 403
    r = api.admin.post("/webhooks", json={"url": "ftp://x", "events": ["nope"], "secret": "short"})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"url", "events", "secret"}
    sub = subscribe(api, "http://127.0.0.1:1/h", ["task.created"])
    listed = api.admin.get("/webhooks").json()
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert api.admin.delete(f"/webhooks/{sub['id']}").status_code == 204
    assert api.admin.get("/webhooks").json() == []
    assert api.admin.delete(f"/webhooks/{sub['id']}").status_code == 404


def test_signed_delivery_of_the_lifecycle_events(api: Api) -> None:
    receiver = Receiver().start()
    try:
        subscribe(api, receiver.url, ["*"])
        inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="WH-1")
        api.complete(inst["id"], "review_task", {"decision": "pass"})
        api.message("contract_signed", "WH-1")
        api.complete(inst["id"], "file_contract")
        sender = WebhookSender(api.server.ctx)
        sender.run_until_idle()
        types = [r.headers["X-Govflow-Event"] for r in receiver.events()]
        assert types == ["instance.started", "task.created", "task.completed", "message.correlated", "task.created",
                         "task.completed", "instance.completed"]
        for r in receiver.events():
            assert verify(SECRET, r.headers, r.body)
            assert not verify("another-secret-entirely", r.headers, r.body)
            assert r.json["id"] == r.headers["X-Govflow-Delivery"] and r.json["type"] == r.headers["X-Govflow-Event"]
            assert r.json["data"]["process_instance_id"] == inst["id"]
            assert r.json["data"]["business_key"] == "WH-1"
        completed = receiver.events("task.completed")[0].json["data"]
        assert completed["element_id"] == "review_task" and completed["variables"] == {"decision": "pass"}
        assert receiver.events("instance.completed")[0].json["data"]["end_event"] == "end_completed"
        assert sender.run_until_idle() == 0  # nothing is sent twice
        assert len(receiver.events()) == 7
    finally:
        receiver.stop()


def test_receiver_failing_three_times_gets_it_on_the_fourth_attempt(api: Api) -> None:
    receiver = Receiver(fail_first=3).start()
    try:
        subscribe(api, receiver.url, ["instance.started"])
        api.start("review", {"project_name": "x", "budget_wan": 10})
        sender = WebhookSender(api.server.ctx)
        for _ in range(4):
            sender.run_until_idle()
            api.clock.advance(timedelta(seconds=api.server.settings.webhook_backoff_max_seconds))
        assert receiver.attempts == 4 and len(receiver.events()) == 1
        deliveries = api.admin.get("/webhooks/deliveries").json()
        assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 4)]
    finally:
        receiver.stop()


def test_backoff_grows_and_is_jittered(api: Api) -> None:
    from service.services.webhooks import backoff
    waits = [backoff(n, 2.0, 600.0).total_seconds() for n in range(1, 12)]
    assert 1.0 <= waits[0] <= 2.0 and 4.0 <= waits[2] <= 8.0 and 300.0 <= waits[-1] <= 600.0


def test_dead_receiver_ends_failed_and_a_manual_retry_delivers(api: Api) -> None:
    receiver = Receiver()  # not started: connections are refused
    api.server.settings.webhook_max_attempts = 3
    subscribe(api, receiver.url, ["instance.started"])
    api.start("review", {"project_name": "x", "budget_wan": 10})
    sender = WebhookSender(api.server.ctx)
    for _ in range(5):
        sender.run_until_idle()
        api.clock.advance(timedelta(hours=1))
    failed = api.admin.get("/webhooks/deliveries", params={"status": "failed"}).json()
    assert len(failed) == 1 and failed[0]["attempts"] == 3 and "Connect" in failed[0]["last_error"]
    receiver.start()
    try:
        assert api.as_("x", "data_bureau").post(f"/webhooks/deliveries/{failed[0]['id']}/retry").status_code == 403
        r = api.admin.post(f"/webhooks/deliveries/{failed[0]['id']}/retry")
        assert r.status_code == 200 and r.json()["status"] == "pending"
        sender.run_until_idle()
        assert [e.json["id"] for e in receiver.events()] == [failed[0]["event_id"]]
        assert api.admin.get("/webhooks/deliveries").json()[0]["status"] == "delivered"
        assert api.admin.post(f"/webhooks/deliveries/{failed[0]['id']}/retry").status_code == 409
    finally:
        receiver.stop()


def test_events_left_undelivered_at_a_stop_are_delivered_after_restart(tmp_path: Path,
                                                                       database_url: str | None) -> None:
    receiver = Receiver().start()
    settings = make_settings(tmp_path, database_url, FIXTURES)
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        subscribe(api, receiver.url, ["instance.started", "task.created"])
        inst = api.start("review", {"project_name": "x", "budget_wan": 10})
        server.stop()
        assert receiver.events() == []
        settings.webhook_sender_enabled = True
        server.start()
        deadline = time.monotonic() + 20
        while len(receiver.events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.headers["X-Govflow-Event"] for r in receiver.events()] == ["instance.started", "task.created"]
        assert receiver.events()[0].json["data"]["process_instance_id"] == inst["id"]
    finally:
        api.close()
        server.stop()
        receiver.stop()


def test_a_slow_receiver_does_not_slow_the_api(tmp_path: Path, database_url: str | None) -> None:
    receiver = Receiver(delay=3.0).start()
    settings = make_settings(tmp_path, database_url, FIXTURES, webhook_sender_enabled=True)
    server = Server(settings, FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        subscribe(api, receiver.url, ["*"])
        started = time.monotonic()
        for i in range(5):
            api.start("review", {"project_name": "x", "budget_wan": 10}, business_key=f"S-{i}")
        assert time.monotonic() - started < 2.5  # five starts while the receiver takes 3 s per event
    finally:
        api.close()
        server.stop()
        receiver.stop()


def test_200_concurrent_completions_produce_exactly_200_task_completed_events(api: Api) -> None:
    receiver = Receiver().start()
    try:
        subscribe(api, receiver.url, ["task.completed"])
        client = api.as_("oa", "applicant")
        tasks = []
        for i in range(200):
            r = client.post("/process-instances", json={"process_key": "review", "business_key": f"N-{i}",
                                                         "variables": {"project_name": "x", "budget_wan": 1}})
            tasks.append(r.json()["open_tasks"][0]["id"])
        token = api.token("li", ("data_bureau",))
        lock = threading.Lock()
        codes: list[int] = []

        def complete(task_id: str) -> None:
            import httpx
            with httpx.Client(base_url=api.server.url + "/api/v1", timeout=60,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                code = c.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "reject"}}).status_code
            with lock:
                codes.append(code)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(complete, tasks))
        assert codes == [200] * 200
        WebhookSender(api.server.ctx).run_until_idle()
        events = receiver.events("task.completed")
        ids = {e.headers["X-Govflow-Delivery"] for e in events}
        assert len(events) == 200 and len(ids) == 200
        assert sorted(e.json["data"]["task_id"] for e in events) == sorted(tasks)
    finally:
        receiver.stop()
