"""The console's rules over HTTP: nothing without logging in, the session cookie, CSRF, and the same visibility
as the API for the same principal."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.auth import mint_token
from tests.support import SECRET, Api

PROCESS_KEY = "hangzhou"
START = {"project_name": "城市大脑数据中台", "department": "市数据资源局", "budget_wan": 80, "is_build_dev": True}
PAGES = ["/console", "/console/", "/console/inbox", "/console/projects", "/console/supervision",
         "/console/definitions", "/console/definitions/hangzhou", "/console/static/console.css",
         "/console/static/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js", "/console/anything/else"]


@pytest.fixture
def browser_like(lifecycle_api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lifecycle_api.server.url, follow_redirects=False, timeout=30) as client:
        yield client


def login(client: httpx.Client, credential: str) -> httpx.Response:
    r = client.post("/console/login", data={"credential": credential, "next": "/console/inbox"})
    assert r.status_code == 303, r.text
    return r


def csrf(page: str) -> str:
    match = re.search(r'name="_csrf" value="([0-9a-f]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_nothing_in_the_console_is_reachable_without_logging_in(lifecycle_api: Api,
                                                                 browser_like: httpx.Client) -> None:
    api = lifecycle_api
    iid = api.start(PROCESS_KEY, START, business_key="HZ-CONSOLE-1")["id"]
    task = api.open_task(iid, "prereview")
    for path in [*PAGES, f"/console/projects/{iid}", f"/console/tasks/{task['id']}"]:
        r = browser_like.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next="), path
        assert "HZ-CONSOLE-1" not in r.text
    for path in [f"/console/tasks/{task['id']}/claim", f"/console/tasks/{task['id']}/complete",
                 "/console/definitions/hangzhou/start"]:
        r = browser_like.post(path, data={"decision": "pass"})
        assert r.status_code in (401, 403), path
    assert api.open_task(iid, "prereview")["assignee"] is None
    assert api.open_elements(iid) == ["prereview"]
    # the login page itself shows nothing of the service's data and loads nothing from elsewhere
    r = browser_like.get("/console/login")
    assert r.status_code == 200 and "HZ-CONSOLE-1" not in r.text and "http" not in r.text.split("<body>")[0]
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_a_bad_or_expired_token_does_not_log_in(lifecycle_api: Api, browser_like: httpx.Client) -> None:
    r = browser_like.post("/console/login", data={"credential": "not-a-token"})
    assert r.status_code == 401 and "无法登录" in r.text and "set-cookie" not in r.headers
    expired = mint_token(SECRET, "li.ming", ["applicant"], False, datetime.now(UTC) - timedelta(hours=3),
                         timedelta(hours=1))
    r = browser_like.post("/console/login", data={"credential": expired})
    assert r.status_code == 401 and "已过期" in r.text
    # a session whose token has expired since is sent back to the login page, and the cookie is dropped
    browser_like.cookies.set("govflow_console", expired, path="/console")
    r = browser_like.get("/console/inbox")
    assert r.status_code == 303 and "expired=1" in r.headers["location"]
    assert 'govflow_console=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]


def test_the_session_cookie_is_http_only_strict_and_limited_to_the_console(lifecycle_api: Api,
                                                                         browser_like: httpx.Client) -> None:
    r = login(browser_like, lifecycle_api.token("li.ming", ("applicant",)))
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # ends with the browser session
    assert browser_like.get("/console/inbox").status_code == 200
    # the cookie does not authenticate the API: the API takes headers only
    session = browser_like.cookies["govflow_console"]
    r = httpx.get(f"{lifecycle_api.server.url}/api/v1/process-definitions",
                  headers={"Cookie": f"govflow_console={session}"})
    assert r.status_code == 401
    # after login, only console paths of this service are followed
    r = browser_like.post("/console/login", data={"credential": lifecycle_api.token("li.ming", ("applicant",)),
                                                  "next": "https://elsewhere.example/console/inbox"})
    assert r.headers["location"] == "/console/inbox"
    r = browser_like.post("/console/logout", data={"_csrf": csrf(browser_like.get("/console/inbox").text)})
    assert r.status_code == 303
    assert browser_like.get("/console/inbox").status_code == 303


def test_posts_need_the_pages_csrf_token_and_the_same_origin(lifecycle_api: Api, browser_like: httpx.Client) -> None:
    api = lifecycle_api
    iid = api.start(PROCESS_KEY, START, business_key="HZ-CONSOLE-2")["id"]
    task = api.open_task(iid, "prereview")
    login(browser_like, api.token("wang.fang", ("third_party",)))
    page = browser_like.get(f"/console/tasks/{task['id']}")
    assert page.status_code == 200
    token = csrf(page.text)
    claim = f"/console/tasks/{task['id']}/claim"
    assert browser_like.post(claim, data={}).status_code == 403
    assert browser_like.post(claim, data={"_csrf": "0" * 64}).status_code == 403
    r = browser_like.post(claim, data={"_csrf": token}, headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 403
    assert api.open_task(iid, "prereview")["assignee"] is None  # nothing changed
    r = browser_like.post(claim, data={"_csrf": token, "next": f"/console/tasks/{task['id']}"})
    assert r.status_code == 303
    assert api.open_task(iid, "prereview")["assignee"] == "wang.fang"
    r = browser_like.post(f"/console/tasks/{task['id']}/unclaim", data={"_csrf": token})
    assert r.status_code == 303 and api.open_task(iid, "prereview")["assignee"] is None


def test_a_form_error_is_shown_by_its_field_and_a_valid_form_completes_the_task(lifecycle_api: Api,
                                                                               browser_like: httpx.Client) -> None:
    api = lifecycle_api
    iid = api.start(PROCESS_KEY, START, business_key="HZ-CONSOLE-3")["id"]
    task = api.open_task(iid, "prereview")
    login(browser_like, api.token("wang.fang", ("third_party",)))
    token = csrf(browser_like.get(f"/console/tasks/{task['id']}").text)
    url = f"/console/tasks/{task['id']}/complete"
    r = browser_like.post(url, data={"_csrf": token, "decision": "maybe", "_comment": "意见"})
    assert r.status_code == 422
    assert re.search(r'id="e-decision"[^>]*>请从选项中选择<', r.text)
    assert '<textarea id="f-_comment" name="_comment"' in r.text and ">意见</textarea>" in r.text
    r = browser_like.post(url, data={"_csrf": token, "_comment": "x" * 2001})
    assert r.status_code == 422 and "至多 2000 个字" in r.text
    assert api.open_elements(iid) == ["prereview"]
    r = browser_like.post(url, data={"_csrf": token, "decision": "pass", "_comment": "材料齐全"})
    assert r.status_code == 303
    record = api.admin.get(f"/tasks/{task['id']}").json()
    assert record["completed_by"] == "wang.fang" and record["submitted"]["decision"] == "pass"
    assert record["comment"] == "材料齐全"
    assert api.open_elements(iid) == ["expert_review"]


def test_the_console_shows_a_principal_only_what_the_api_shows_it(lifecycle_api: Api,
                                                                  browser_like: httpx.Client) -> None:
    api = lifecycle_api
    seen = api.start(PROCESS_KEY, START, business_key="HZ-CONSOLE-SEEN")["id"]
    api.complete(seen, "prereview", {"decision": "pass"}, user="wang.fang", group="third_party")
    unseen = api.start(PROCESS_KEY, {**START, "project_name": "别处的项目"}, business_key="HZ-CONSOLE-UNSEEN")["id"]
    unseen_task = api.open_task(unseen, "prereview")
    # a reviewer of the expert panel: sees the instance whose task is offered to the panel, not the other one
    token = api.token("zhao.lei", ("expert_panel",))
    login(browser_like, token)
    api_ids = {i["id"] for i in api.as_("zhao.lei", "expert_panel").get("/process-instances").json()["items"]}
    assert api_ids == {seen}
    projects = browser_like.get("/console/projects").text
    assert "HZ-CONSOLE-SEEN" in projects and "HZ-CONSOLE-UNSEEN" not in projects and "别处的项目" not in projects
    assert browser_like.get(f"/console/projects/{unseen}").status_code == 404
    assert browser_like.get(f"/console/tasks/{unseen_task['id']}").status_code == 403
    inbox = browser_like.get("/console/inbox").text
    assert "专家评审" in inbox and "HZ-CONSOLE-UNSEEN" not in inbox
    supervision = browser_like.get("/console/supervision").text
    assert "HZ-CONSOLE-UNSEEN" not in supervision
    assert re.search(r'data-group="third_party"', supervision) is None  # the other instance's pre-review is not counted
    # claiming a task not offered to the principal is refused as the API refuses it
    token_csrf = csrf(inbox)
    r = browser_like.post(f"/console/tasks/{unseen_task['id']}/claim", data={"_csrf": token_csrf})
    assert r.status_code == 403
    assert api.open_task(unseen, "prereview")["assignee"] is None


def test_an_api_key_logs_in_and_a_granted_system_sees_its_processes(lifecycle_api: Api,
                                                                    browser_like: httpx.Client) -> None:
    api = lifecycle_api
    api.start(PROCESS_KEY, START, business_key="HZ-CONSOLE-KEY")
    r = api.admin.post("/api-keys", json={"name": "oa-hz", "groups": ["applicant"], "processes": ["hangzhou"]})
    login(browser_like, r.json()["key"])
    assert "HZ-CONSOLE-KEY" in browser_like.get("/console/projects").text
    assert 'data-group="third_party"' in browser_like.get("/console/supervision").text  # its open pre-review
    api.admin.delete(f"/api-keys/{r.json()['id']}")
    assert browser_like.get("/console/projects").status_code == 303  # a revoked key logs out
