"""The administrators' lists answered as bare arrays (incidents, webhook deliveries) page by cursor: a page that is
not the last carries a `Link` header with `rel="next"`, the same request with the next page's cursor; following
it lists every row once, in the list's order, also when rows are added between two pages. A misspelt status or a
cursor the API did not make is a 422."""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.webhook_sender import WebhookSender
from tests.api.test_query_plans import explain, problems
from tests.operations_support import service
from tests.receiver import Receiver
from tests.support import Api, executed

SECRET = "a-receivers-shared-secret"


def _next(r: httpx.Response) -> str | None:
    """The path and query of the next page, from the Link header; None on the last page."""
    header = r.headers.get("Link")
    if header is None:
        return None
    found = re.fullmatch(r'<(/api/v1/[^>]+)>; rel="next"', header)
    assert found, header
    return found.group(1).removeprefix("/api/v1")


def _follow(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
    pages = []
    r = client.get(path, params=params)  # None, not {}: httpx drops the query of the path for an empty dict
    while True:
        assert r.status_code == 200, r.text
        pages.append(r.json())
        link = _next(r)
        if link is None:
            return pages
        r = client.get(link)


# ---- incidents --------------------------------------------------------------------------------------------
@pytest.fixture
def ops(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with the operations diagrams (incident.bpmn: a timer whose firing fails)."""
    with service(tmp_path, database_url) as a:
        yield a


def _incidents(api: Api, count: int) -> list[str]:
    """`count` failed timers; two of them fall due at the same moment (their order is their ids')."""
    started = []
    for i in range(count):
        started.append(str(api.start("incident", {}, business_key=f"INC-{i}")["id"]))
        if i != 1:  # the first two wait for the same moment
            api.clock.advance(timedelta(minutes=3))
    api.advance(timedelta(days=1, minutes=30))  # every timer falls due; the script after each fails
    return started


def test_incidents_page_by_cursor_in_their_order(ops: Api) -> None:
    api = ops
    started = _incidents(api, 5)
    whole = api.admin.get("/incidents").json()
    assert [i["process_instance_id"] for i in whole] == started and "Link" not in api.admin.get("/incidents").headers
    pages = _follow(api.admin, "/incidents", {"limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == whole
    # an exact fit ends without a link to an empty page
    assert [len(p) for p in _follow(api.admin, "/incidents", {"limit": 5})] == [5]
    # the filters are kept in the link
    first = api.admin.get("/incidents", params={"limit": 1, "process_key": "incident"})
    assert "process_key=incident" in str(_next(first))
    assert api.admin.get("/incidents", params={"limit": 1, "process_key": "returns"}).json() == []


def test_an_incident_added_between_pages_is_listed_once(ops: Api) -> None:
    api = ops
    _incidents(api, 3)
    first = api.admin.get("/incidents", params={"limit": 2})
    assert len(first.json()) == 2
    late = str(api.start("incident", {}, business_key="INC-late")["id"])
    api.advance(timedelta(days=1, minutes=30))  # due after those listed: it comes on a later page, once
    rest = _follow(api.admin, str(_next(first)))
    seen = [i["process_instance_id"] for i in first.json()] + [i["process_instance_id"] for p in rest for i in p]
    assert len(seen) == len(set(seen)) == 4 and seen[-1] == late


def _cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def test_a_bad_incident_cursor_is_a_422(ops: Api) -> None:
    api = ops
    _incidents(api, 3)
    link = str(_next(api.admin.get("/incidents", params={"limit": 1})))
    cursor = link.split("cursor=")[1]
    at = "2026-01-01T00:00:00+00:00"
    for bad in ("nope", cursor[:-3], "eyJhIjogMX0", _cursor([at, "x", "incidents"]), _cursor([at, 1]),
                _cursor([at, 1, "deliveries"]), _cursor([at, 2**63, "incidents"]), _cursor([at, True, "incidents"]),
                _cursor(["2026-01-01T00:00:00", 1, "incidents"])):
        r = api.admin.get("/incidents", params={"cursor": bad})
        assert r.status_code == 422 and "cursor" in r.json()["errors"], (bad, r.text)
    # the largest id a cursor can name is a 64-bit one: no error (all three are due after 2026-01-01)
    assert len(api.admin.get("/incidents", params={"cursor": _cursor([at, 2**63 - 1, "incidents"])}).json()) == 3
    end = "2999-01-01T00:00:00+00:00"
    assert api.admin.get("/incidents", params={"cursor": _cursor([end, 2**63 - 1, "incidents"])}).json() == []
    # nor do the task and instance lists take it
    for path in ("/tasks", "/process-instances"):
        assert api.admin.get(path, params={"cursor": cursor}).status_code == 422, path


# ---- webhook deliveries ---------------------------------------------------------------------------------
def _failed_deliveries(api: Api, count: int) -> None:
    receiver = Receiver()  # never started: every delivery is refused and fails at its only attempt
    api.server.settings.webhook_max_attempts = 1
    r = api.admin.post("/webhooks", json={"url": receiver.url, "events": ["instance.started"], "secret": SECRET})
    assert r.status_code == 201, r.text
    for i in range(count):
        api.start("review", {"project_name": "x", "budget_wan": 10}, business_key=f"DLV-{i}")
    WebhookSender(api.server.ctx).run_until_idle()


def test_deliveries_page_by_cursor_newest_first(api: Api) -> None:
    _failed_deliveries(api, 5)
    whole = api.admin.get("/webhooks/deliveries", params={"status": "failed"}).json()
    ids = [d["id"] for d in whole]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    pages = _follow(api.admin, "/webhooks/deliveries", {"status": "failed", "limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1] and [d for p in pages for d in p] == whole
    assert [len(p) for p in _follow(api.admin, "/webhooks/deliveries", {"limit": 5})] == [5]
    # the status is kept in the link: a later page of failed deliveries holds failed ones only
    first = api.admin.get("/webhooks/deliveries", params={"status": "failed", "limit": 2})
    assert "status=failed" in str(_next(first))
    assert api.admin.get("/webhooks/deliveries", params={"status": "delivered"}).json() == []
    # one added after the first page is newer: not on a later page, and nothing repeats
    api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="DLV-late")
    WebhookSender(api.server.ctx).run_until_idle()
    rest = [d["id"] for p in _follow(api.admin, str(_next(first))) for d in p]
    assert rest == ids[2:]


def test_a_misspelt_status_or_a_bad_cursor_is_a_422(api: Api) -> None:
    r = api.admin.get("/webhooks/deliveries", params={"status": "faild"})
    assert r.status_code == 422 and "status" in r.json()["errors"], r.text
    at = "2026-01-01T00:00:00+00:00"
    task_cursor = api.admin.get("/tasks", params={"limit": 1}).json()["next_cursor"] or _cursor([at, "t"])
    for bad in ("nope", task_cursor, _cursor([at, 5, "incidents"]), _cursor([at, -2**63 - 1, "deliveries"]),
                _cursor([at, 10**30, "deliveries"]), _cursor([at, 1.0, "deliveries"])):
        r = api.admin.get("/webhooks/deliveries", params={"cursor": bad})
        assert r.status_code == 422 and "cursor" in r.json()["errors"], (bad, r.text)
    assert api.as_("x", "data_bureau").get("/webhooks/deliveries").status_code == 403


def test_a_page_of_one_statuss_deliveries_is_one_range_of_its_index(api: Api) -> None:
    """Deliveries are kept; the failed ones among them are read from (status, id), backwards, and a later page
    starts its range at the cursor's id (the query-plan checks of tests/api/test_query_plans.py)."""
    _failed_deliveries(api, 3)
    # the cursor bounds the range: SQLite's rowid<?, PostgreSQL's index condition
    _pages_read_through(api, "/webhooks/deliveries", {"status": "failed", "limit": 1}, "webhook_delivery",
                        "ix_webhook_delivery_status_id", r"\b(rowid|id) ?< ?")


def _pages_read_through(api: Api, path: str, first: dict[str, Any], table: str, index: str, bound: str) -> None:
    """The list's first page and the one after it each read `table` through `index` (tests/api/test_query_plans.py's
    checks); the later page's plan shows the cursor's bound (`bound`, a pattern of the plan's text)."""
    cursor = str(_next(api.admin.get(path, params=first))).split("cursor=")[1]
    for params in (first, {**first, "cursor": cursor}):
        with executed(api.server) as seen:
            assert api.admin.get(path, params=params).status_code == 200
        [statement] = [s for s in seen if f"FROM {table}" in s.sql and "ORDER BY" in s.sql]
        plan = explain(api, statement)
        wrong = problems(plan, table, indexes=(index,))
        assert not wrong, f"{wrong}\n{plan}"
        if "cursor" in params:
            assert re.search(bound, str(plan)), str(plan)


def test_a_page_of_incidents_is_one_range_of_their_own_index(ops: Api) -> None:
    """The incidents are read from ix_waiting_event_incident, which holds only the failed timers (a partial index:
    its condition written in the statement with its value), in the list's order, and a later page starts its range
    at the cursor's due time; not from every waiting timer in due order."""
    _incidents(ops, 3)
    # the cursor bounds the range (SQLite by the due time: the id is its rowid)
    _pages_read_through(ops, "/incidents", {"limit": 1}, "waiting_event", "ix_waiting_event_incident",
                        r"due_at ?>|ROW\(due_at")
