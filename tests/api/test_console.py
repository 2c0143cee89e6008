"""The console's rules over HTTP: nothing without logging in, the session cookie, CSRF, and the same visibility
as the API for the same principal."""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.auth import mint_token
from tests.support import SECRET, Api, executed

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


def test_a_reported_date_field_is_bounded_by_todays_date_on_the_page() -> None:
    """max=today is the service's day: the date input's max is that date (a browser ignores max="today", and the
    hint read "不大于 today")."""
    from datetime import UTC, datetime

    from service.console.routes import templates
    from service.schemas import FormFieldOut

    macro = templates.env.get_template("macros.html").module.field  # type: ignore[attr-defined]
    signed = FormFieldOut(id="contract_signed_date", label="合同签订日期", type="date", required=True, readonly=False,
                          max="today")
    html = str(macro(signed, {}, {}, datetime(2026, 3, 1, 17, 0, tzinfo=UTC)))  # 2 March, 01:00 China time
    assert 'max="2026-03-02"' in html and "不晚于今天（2026-03-02）" in html and "today" not in html
    dated = FormFieldOut(id="d", label="日期", type="date", required=False, readonly=False, min="2026-01-01")
    html = str(macro(dated, {}, {}, datetime(2026, 3, 1, 17, 0, tzinfo=UTC)))
    assert 'min="2026-01-01"' in html and "不小于 2026-01-01" in html and "max=" not in html


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


# ---- the projects list pages by cursor, as the API's list does ------------------------------------------
REVIEW = {"project_name": "一网通办", "budget_wan": 30}
INSTANCE_LINK = re.compile(r'<a href="/console/projects/([0-9a-f-]{36})">')


@pytest.fixture
def admin_console(api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.server.url, follow_redirects=False, timeout=30) as client:
        login(client, api.token("admin", admin=True))
        yield client


def listed(page: httpx.Response) -> list[str]:
    """The instance ids of a projects page, in its order."""
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text[:300]
    return INSTANCE_LINK.findall(page.text)


def link(page: httpx.Response, ident: str) -> str | None:
    """The href of the page's link with this id (&amp; undone), or None."""
    match = re.search(rf'<a href="([^"]*)" id="{ident}"', page.text)
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.fixture
def pages_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's projects list two to a page: a few projects make several pages."""
    from service.console import routes

    monkeypatch.setattr(routes, "PAGE", 2)


def reviews_a_minute_apart(api: Api, prefix: str, count: int) -> list[str]:
    """`count` review projects started a minute apart, oldest first: their ids."""
    started = []
    for i in range(count):
        api.clock.advance(timedelta(minutes=1))
        started.append(str(api.start("review", REVIEW, business_key=f"{prefix}-{i}")["id"]))
    return started


def every_page(client: httpx.Client, url: str) -> list[list[str]]:
    """The pages reached from `url` by following each page's next link."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        page = client.get(next_url if next_url.startswith("/") else "/console/projects" + next_url)
        pages.append(listed(page))
        next_url = link(page, "next-page")
        assert len(pages) < 20, "the next links go round in circles"
    return pages


def test_a_project_started_between_two_pages_neither_shows_twice_nor_pushes_one_off(
        api: Api, admin_console: httpx.Client, pages_of_two: None) -> None:
    started = []
    for i in range(5):
        if i != 3:  # the third and the fourth start at the same moment, on both sides of the first page's end
            api.clock.advance(timedelta(minutes=1))
        started.append(api.start("review", REVIEW, business_key=f"C-{i}")["id"])
    # newest first, and of the two started together the greater id first, as the API lists them
    order = [i["id"] for i in api.admin.get("/process-instances").json()["items"]]
    assert sorted(order) == sorted(started) and order[4] == started[0]
    page = admin_console.get("/console/projects")
    first = listed(page)
    assert first == order[:2] and {started[2], started[3]} & set(first)
    assert link(page, "first-page") is None and 'id="paging-notice"' not in page.text
    next_url = link(page, "next-page")
    assert next_url is not None and "page=" not in next_url
    api.clock.advance(timedelta(minutes=1))
    newer = api.start("review", REVIEW, business_key="C-NEW")["id"]  # started while page 1 was being read
    later = every_page(admin_console, next_url)
    assert later == [order[2:4], order[4:]]  # the rest, each once, none skipped, none repeated
    second = admin_console.get("/console/projects" + next_url)
    assert link(second, "first-page") == "/console/projects"
    assert listed(admin_console.get(link(second, "first-page") or "")) == [newer, order[0]]


def test_the_filters_and_the_overdue_filter_hold_on_every_page(api: Api, admin_console: httpx.Client,
                                                               pages_of_two: None) -> None:
    overdue, others = [], []
    for i in range(8):  # reviews (due in 10 days) and other processes' projects in turn
        api.clock.advance(timedelta(minutes=1))
        review = api.start("review", REVIEW, business_key=f"F-{i}")["id"]
        if i % 3 == 1:  # passed: its approval has no deadline, so it is not overdue
            api.complete(review, "review_task", {"decision": "pass"})
            others.append(review)
        else:
            overdue.append(review)
        others.append(api.start("parallel_review", {"project_name": "城市大脑"}, business_key=f"G-{i}")["id"])
    api.clock.advance(timedelta(days=11))
    api.start("review", REVIEW, business_key="F-NEW")  # running, not overdue yet
    params = {"process_key": "review", "status": "running", "overdue": "1"}
    page = admin_console.get("/console/projects", params=params)
    next_url = link(page, "next-page")
    assert next_url is not None
    assert all(f"{name}={value}" in next_url for name, value in params.items()) and "cursor=" in next_url
    pages = every_page(admin_console, "/console/projects?" + str(httpx.QueryParams(params)))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == overdue[::-1]
    second = admin_console.get("/console/projects" + next_url)
    back = link(second, "first-page")
    assert back is not None and "cursor=" not in back
    assert all(f"{name}={value}" in back for name, value in params.items())
    # the form keeps the filters too
    assert 'value="review" selected' in second.text and 'value="running" selected' in second.text
    assert re.search(r'id="overdue" name="overdue" value="1" checked', second.text)


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor(at: object, ident: object) -> str:
    return _encoded(json.dumps([at, ident]))


BAD_CURSORS = {
    "not base64": "%%%not-a-cursor",
    "base64, not JSON": _encoded("not json"),
    "cut short": _cursor("2026-03-02T01:00:00+00:00", "0" * 36)[:-6],
    "a time without offset": _cursor("2026-03-02T01:00:00", "x"),
    "off the calendar in UTC": _cursor("0001-01-01T00:00:00+01:00", "x"),
    "not a time": _cursor("yesterday", "x"),
    "a number as id (another list's)": _cursor("2026-03-02T01:00:00+00:00", 7),
    "true as id": _cursor("2026-03-02T01:00:00+00:00", True),
    "a NUL in its id": _cursor("2026-03-02T01:00:00+00:00", "a\x00b"),
    "a lone surrogate in its id": _cursor("2026-03-02T01:00:00+00:00", "\ud800"),
    "three items": _encoded('["2026-03-02T01:00:00+00:00", "x", 1]'),
    "an object": _encoded('{"at": "2026-03-02T01:00:00+00:00"}'),
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_a_bad_cursor_shows_the_first_page_and_says_so(api: Api, admin_console: httpx.Client, cursor: str,
                                                       pages_of_two: None) -> None:
    started = reviews_a_minute_apart(api, "B", 3)
    page = admin_console.get("/console/projects", params={"process_key": "review", "cursor": cursor})
    assert listed(page) == started[:0:-1]  # the first page, with its next link
    assert 'id="paging-notice"' in page.text and "翻页链接无效" in page.text
    assert link(page, "first-page") is None and "process_key=review" in (link(page, "next-page") or "")
    assert 'value="review" selected' in page.text


def test_the_apis_cursors_page_the_console_alike_and_anothers_list_is_no_500(
        api: Api, admin_console: httpx.Client, pages_of_two: None) -> None:
    for i in range(5):
        api.clock.advance(timedelta(minutes=1))
        api.start("review", REVIEW, business_key=f"A-{i}")
    api_page = api.admin.get("/process-instances", params={"limit": 2}).json()
    following = api.admin.get("/process-instances", params={"limit": 2, "cursor": api_page["next_cursor"]}).json()
    page = admin_console.get("/console/projects", params={"cursor": api_page["next_cursor"]})
    assert listed(page) == [i["id"] for i in following["items"]] and 'id="paging-notice"' not in page.text
    # a cursor of the task list has the same shape (a time and a text id): a place in time, not an error
    tasks = api.admin.get("/tasks", params={"limit": 2}).json()
    page = admin_console.get("/console/projects", params={"cursor": tasks["next_cursor"]})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_a_cursor_past_the_last_project_says_so_and_links_back_with_the_filters(
        api: Api, admin_console: httpx.Client, pages_of_two: None) -> None:
    started = reviews_a_minute_apart(api, "E", 3)
    params = {"process_key": "review", "status": "running"}
    page = admin_console.get("/console/projects", params=params)
    next_url = link(page, "next-page")
    assert next_url is not None and 'id="past-the-end"' not in page.text
    # the only project of the next page is cancelled before it is asked for: the page finds nothing
    r = api.admin.post(f"/process-instances/{started[0]}/cancel", json={"reason": "撤回申请"})
    assert r.status_code == 200, r.text
    empty = admin_console.get("/console/projects" + next_url)
    assert listed(empty) == [] and 'id="past-the-end"' in empty.text
    back = re.search(r'id="past-the-end">[^<]*<a href="([^"]*)"', empty.text)
    assert back is not None and "cursor=" not in back.group(1)
    assert "process_key=review" in back.group(1) and "status=running" in back.group(1)
    assert listed(admin_console.get(back.group(1).replace("&amp;", "&"))) == started[:0:-1]
    # with no filter, nothing started before: the same
    oldest = _cursor(datetime(2000, 1, 1, tzinfo=UTC).isoformat(), "0")
    assert 'id="past-the-end"' in admin_console.get("/console/projects", params={"cursor": oldest}).text


def test_a_page_number_from_an_old_link_shows_the_first_page(api: Api, admin_console: httpx.Client,
                                                             pages_of_two: None) -> None:
    started = reviews_a_minute_apart(api, "O", 3)
    for number in ("1", "2", "7", "99999", "0", "x"):
        page = admin_console.get("/console/projects", params={"process_key": "review", "page": number})
        assert listed(page) == started[:0:-1], number
        assert ('id="paging-notice"' in page.text) == (number in ("2", "7", "99999")), number
        assert "process_key=review" in (link(page, "next-page") or "") and "page=" not in (link(page, "next-page") or "")


@pytest.mark.parametrize("who", ["department", "admin"])
def test_the_projects_pages_are_read_as_the_apis_list_is(api: Api, who: str, pages_of_two: None) -> None:
    """The same index ranges as GET /process-instances (tests/api/test_query_plans.py): newest first without a sort,
    a later page bounded by its cursor in the index, with the process filter on its own index. With the overdue
    filter SQLite reads the same ranges; PostgreSQL may start from the overdue open tasks instead (their index on
    the due time) and sort the projects they belong to, a plan that costs the overdue tasks rather than the page,
    which it prices lower while they are few: either, never a scan of a table."""
    from tests.api.test_query_plans import INSTANCE_ORDER, INSTANCES, INSTANCES_OF_A_PROCESS, explain, problems

    OVERDUE_TASKS = "ix_human_task_due_created"  # status, due_at, created_at, id

    for i in range(12):  # as many as the API's plans are checked on: the planner's choice depends on it
        api.start("parallel_review", {"project_name": "城市大脑"}, business_key=f"S-{i}")
        api.clock.advance(timedelta(minutes=7))
        api.start("review", REVIEW, business_key=f"Q-{i}")
        api.clock.advance(timedelta(minutes=5))
    api.clock.advance(timedelta(days=11))  # the reviews are overdue
    with httpx.Client(base_url=api.server.url, follow_redirects=False, timeout=30) as console:
        login(console, api.token("li", ("data_bureau",)) if who == "department" else api.token("admin", admin=True))
        for label, params, index in [("all", {}, INSTANCES), ("a process", {"process_key": "review"},
                                                               INSTANCES_OF_A_PROCESS),
                                     ("overdue", {"overdue": "1"}, INSTANCES),
                                     ("a process, overdue", {"process_key": "review", "overdue": "1"},
                                      INSTANCES_OF_A_PROCESS)]:
            url: str | None = "/console/projects?" + str(httpx.QueryParams(params))
            for number in range(3):
                assert url is not None, (label, number)
                with executed(api.server) as seen:
                    page = console.get(url if url.startswith("/") else "/console/projects" + url)
                assert len(listed(page)) == 2, (label, number)
                [statement] = [s for s in seen if INSTANCE_ORDER in s.sql and "LIMIT" in s.sql]
                name = f"projects of {label} ({who}), page {number + 1}"
                plan = explain(api, statement)
                wrong = problems(plan, "process_instance", indexes=(index,), cursor=number > 0)
                if wrong and "overdue" in params and plan.tree is not None:
                    wrong = [w for w in problems(plan, "human_task", indexes=(OVERDUE_TASKS,)) if "sorted" not in w]
                    wrong += [f"{table} is scanned" for table in ("process_instance", "human_task")
                              if f"Seq Scan on {table}" in str(plan)]
                assert not wrong, f"{name}: {'; '.join(wrong)}\n\nplan:\n{plan}\n\nstatement:\n{statement.sql}"
                url = link(page, "next-page")
