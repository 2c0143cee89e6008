"""The console shows a task sent back or taken back as such: the reopened task says by whom, when and why; the
completion taken back is marked in the records; the history names both actions (it showed task.sent_back)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.api.test_send_back_withdraw import declared, send_back
from tests.operations_support import service
from tests.support import Api


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with service(tmp_path, database_url) as a:
        yield a


@contextmanager
def _console(api: Api, user: str, *groups: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        r = client.post("/console/login", data={"credential": api.token(user, groups), "next": "/console/inbox"})
        assert r.status_code == 303, r.text
        yield client


def test_a_task_sent_back_says_so_on_both_tasks(api: Api) -> None:
    iid = declared(api, "C-SB")
    pre = api.open_task(iid, "prereview")
    r = send_back(api.as_("wang.fang", "third_party"), pre["id"], "declare", "缺少数据资源目录")
    assert r.status_code == 200, r.text
    returned = r.json()["task"]["id"]
    with _console(api, "li.ming", "applicant") as console:
        page = console.get(f"/console/tasks/{returned}").text
        notice = page.split('id="sent-back"', 1)[1].split("</p>", 1)[0]
        assert "「预审」退回重办" in notice and "wang.fang" in notice and "缺少数据资源目录" in notice
        history = console.get(f"/console/projects/{iid}").text.split("<h2>历史</h2>", 1)[1]
        assert "退回" in history and "task.sent_back" not in history
    with _console(api, "wang.fang", "third_party") as console:
        page = console.get(f"/console/tasks/{pre['id']}").text
        superseded = page.split('id="superseded"', 1)[1].split("</p>", 1)[0]
        assert "已被退回" in superseded and f"/console/tasks/{returned}" in superseded


def test_a_completion_taken_back_is_marked_in_the_records(api: Api) -> None:
    iid = declared(api, "C-WD")
    done = [t for t in api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
            if t["element_id"] == "declare"][0]
    r = api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw", json={"comment": "填错了编号"})
    assert r.status_code == 200, r.text
    reopened = r.json()["task"]["id"]
    api.clock.advance(timedelta(minutes=5))
    api.complete(iid, "declare", {"plan_ref": "A-2"}, user="li.ming", group="applicant")
    with _console(api, "li.ming", "applicant") as console:
        project = console.get(f"/console/projects/{iid}").text
        records = project.split("<h2>办理记录</h2>", 1)[1].split("</section>", 1)[0]
        rows = records.split("<tr>")[2:]  # after the heading row
        assert len(rows) == 2 and sum("已撤回" in row for row in rows) == 1, records
        assert "已撤回" in rows[1]  # newest first: the completion that stands, then the one taken back
        history = project.split("<h2>历史</h2>", 1)[1]
        assert "撤回办结" in history and "task.withdrawn" not in history
        page = console.get(f"/console/tasks/{reopened}").text
        assert 'id="withdrawn"' in page and "填错了编号" in page.split('id="withdrawn"', 1)[1].split("</p>", 1)[0]


def test_a_long_projects_records_show_the_latest_and_say_how_many(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.console import routes

    iid = declared(api, "C-LONG")
    for element in ("prereview", "funding_review"):
        api.clock.advance(timedelta(minutes=5))
        api.complete(iid, element, {"funding_opinion": "同意"} if element == "funding_review" else {},
                     user="wang.fang" if element == "prereview" else None,
                     group="third_party" if element == "prereview" else None)
    monkeypatch.setattr(routes, "PROJECT_RECORDS", 2)
    with _console(api, "li.ming", "applicant") as console:
        project = console.get(f"/console/projects/{iid}").text
    records = project.split("<h2>办理记录</h2>", 1)[1].split("</section>", 1)[0]
    assert "共办结 3 个环节，此处列出最近的 2 个" in records
    rows = records.split("<tr>")[2:]
    assert len(rows) == 2 and "资金" in rows[0] and "预审" in rows[1], records  # the latest first


def test_a_tasks_list_of_completed_steps_says_when_it_is_cut(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.services import tasks

    iid = declared(api, "C-CUT")
    pre = api.open_task(iid, "prereview")
    with _console(api, "wang.fang", "third_party") as console:
        assert 'id="completed-more"' not in console.get(f"/console/tasks/{pre['id']}").text
        monkeypatch.setattr(tasks, "COMPLETED_SHOWN", 1)  # one completed step, one shown: nothing is cut
        assert 'id="completed-more"' not in console.get(f"/console/tasks/{pre['id']}").text
        api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    funding = api.open_task(iid, "funding_review")
    with _console(api, "sun.li", "finance_bureau") as console:  # two completed steps, one shown
        page = console.get(f"/console/tasks/{funding['id']}").text
    assert 'id="completed-more"' in page and "最近办结的 1 个环节" in page
