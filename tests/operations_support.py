"""Support for the tests of operating instances (send back, withdraw, repair, migration, retention): a service
with the operations fixtures deployed, the audit trail and the webhook events of an instance."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.clock import FrozenClock
from service.webhook_sender import WebhookSender
from tests.receiver import Receiver
from tests.support import FIXTURES, T0, Api, Server, make_settings

OPERATIONS = FIXTURES / "operations"


@contextmanager
def service(tmp_path: Path, database_url: str | None, bpmn_dir: Path = OPERATIONS,
            **overrides: Any) -> Iterator[Api]:
    server = Server(make_settings(tmp_path, database_url, bpmn_dir, **overrides), FrozenClock(T0))
    server.start()
    api = Api(server)
    try:
        yield api
    finally:
        api.close()
        server.stop()


def history(api: Api, instance_id: str) -> list[dict[str, Any]]:
    """The instance's audit events; asserts that the hash chain verifies."""
    r = api.admin.get(f"/process-instances/{instance_id}/history", params={"verify": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True, r.json()
    return list(r.json()["events"])


def actions(api: Api, instance_id: str) -> list[str]:
    return [e["action"] for e in history(api, instance_id)]


def task(api: Api, task_id: str) -> dict[str, Any]:
    r = api.admin.get(f"/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


@contextmanager
def webhooks(api: Api, events: list[str]) -> Iterator[Receiver]:
    receiver = Receiver().start()
    try:
        r = api.admin.post("/webhooks", json={"url": receiver.url, "events": events,
                                              "secret": "a-receivers-shared-secret"})
        assert r.status_code == 201, r.text
        yield receiver
    finally:
        receiver.stop()


def delivered(api: Api, receiver: Receiver) -> list[dict[str, Any]]:
    """Send what the outbox holds and return the bodies the receiver got."""
    WebhookSender(api.server.ctx).run_until_idle()
    return [r.json for r in receiver.events()]
