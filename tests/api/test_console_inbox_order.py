"""The console's inbox lists the most urgent tasks first, read in that order: with more open tasks than a page, the
page holds those with the nearest deadlines (not the oldest tasks, sorted afterwards), and says how many there
are in all."""
from __future__ import annotations

import re

import httpx
import pytest

from service.console import routes
from tests.api.test_supervision import DIAGRAM, start
from tests.support import Api


def _listed(page: str, section: str) -> list[str]:
    block = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-task-id="([^"]+)"', block)


def test_a_long_inbox_shows_its_most_urgent_tasks_and_how_many_there_are(api: Api,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 3)  # the oldest, without a deadline
    joint = start(api, "joint", 2)  # due in five days
    monkeypatch.setattr(routes, "INBOX_PAGE", 2)
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        login = client.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                    "next": "/console/inbox"})
        assert login.status_code == 303, login.text
        page = client.get("/console/inbox").text
        assert _listed(page, "offered") == [t["id"] for t in joint]
        assert "共 5 项，此处列出期限最近的 2 项" in page
        assert re.search(r'待认领（本人及所在部门） <span class="count">5</span>', page)

        monkeypatch.setattr(routes, "INBOX_PAGE", 5)  # everything fits: the deadlines first, then the oldest
        page = client.get("/console/inbox").text
        assert _listed(page, "offered") == [t["id"] for t in (*joint, *undated)]
        assert "此处列出" not in page
        assert _listed(page, "mine") == []


def test_of_tasks_equally_urgent_the_oldest_are_shown(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 6)  # no deadline: equally urgent, ids in no order
    monkeypatch.setattr(routes, "INBOX_PAGE", 3)
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        login = client.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                    "next": "/console/inbox"})
        assert login.status_code == 303, login.text
        assert _listed(client.get("/console/inbox").text, "offered") == [t["id"] for t in undated[:3]]
