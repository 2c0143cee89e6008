"""The console in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; nothing
downloads a browser) against the service on a loopback port. Few and quick: the pages' rules are tested over HTTP
in tests/api/test_console.py."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from service.clock import FrozenClock
from tests.support import REPO, T0, Api, Server, make_settings

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GOVFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
START = {"project_name": "城市大脑数据中台", "department": "市数据资源局", "budget_wan": 80, "is_build_dev": True}


@pytest.fixture
def hangzhou(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with the Hangzhou lifecycle; members of `supervision_office` are granted every instance."""
    bpmn = tmp_path / "bpmn"
    bpmn.mkdir()
    for name in ("hangzhou.bpmn", "hangzhou.dmn"):
        shutil.copy(REPO / "bpmn" / name, bpmn / name)
    server = Server(make_settings(tmp_path, database_url, bpmn,
                                  group_process_grants={"supervision_office": ["hangzhou"]}), FrozenClock(T0))
    server.start()
    api = Api(server)
    yield api
    api.close()
    server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium fonts-noto-cjk (.ci/run installs them)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def login(browser: Any, api: Api, token: str, width: int = 1280) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN").new_page()
    page.set_default_timeout(15000)
    page.goto(f"{api.server.url}/console/inbox")
    assert "/console/login" in page.url  # nothing without logging in
    page.fill("#credential", token)
    page.press("#credential", "Enter")  # the keyboard is enough
    page.wait_for_url("**/console/inbox")
    return page


def test_a_reviewer_completes_a_hangzhou_task_from_the_inbox_and_sees_the_next_step_active(
        hangzhou: Api, browser: Any) -> None:
    api = hangzhou
    iid = api.start("hangzhou", START, business_key="HZ-BROWSER-1")["id"]
    page = login(browser, api, api.token("wang.fang", ("third_party",)))

    row = page.locator("tr", has_text="HZ-BROWSER-1")
    assert row.locator("text=项目预审").count() == 1
    row.locator("text=办理").click()
    page.wait_for_url("**/console/tasks/*")
    page.fill("#f-_comment", "材料齐全")
    page.click("text=提交办结")  # no decision chosen: refused, the error next to the field, nothing changed
    error = page.locator("#e-decision")
    assert error.inner_text() == "此项必填"
    assert page.get_attribute("#f-decision", "aria-invalid") == "true"
    assert page.input_value("#f-_comment") == "材料齐全"  # what was typed is kept
    assert api.open_elements(iid) == ["prereview"]

    page.select_option("#f-decision", "pass")
    page.click("text=提交办结")
    assert "已办结" in page.locator(".notice").inner_text()
    assert "专家评审" in page.locator(".notice").inner_text()
    assert api.open_elements(iid) == ["expert_review"]

    page.click("text=查看项目进度")
    page.wait_for_selector("#diagram[data-rendered=true]")
    assert page.locator('g.djs-element.gf-active[data-element-id="expert_review"]').count() == 1
    assert page.locator('g.djs-element.gf-completed[data-element-id="prereview"]').count() == 1
    assert page.locator('g.djs-element.gf-active[data-element-id="budget_review"]').count() == 0
    record = page.locator("table tr", has_text="项目预审")
    assert "wang.fang" in record.inner_text() and "通过" in record.inner_text() and "材料齐全" in record.inner_text()


def test_the_supervision_view_shows_an_overdue_filing(hangzhou: Api, browser: Any) -> None:
    api = hangzhou
    bk = "HZ-BROWSER-2"
    iid = api.start("hangzhou", {**START, "is_build_dev": False}, business_key=bk)["id"]
    for element_id in ("prereview", "expert_review", "budget_review", "lg_approval"):
        api.complete(iid, element_id, {"decision": "pass"})
    api.message("npc_budget_approved", bk)
    api.complete(iid, "arrange_funds", {"budget_amount_wan": 80, "budget_issued_date": "2026-03-02"})
    api.clock.advance(timedelta(days=20))  # the 15-day filing is late

    page = login(browser, api, api.token("zhou.min", ("data_bureau", "supervision_office")), width=390)
    page.click("nav >> text=督办")
    overdue = page.locator("#overdue-tasks tr", has_text="上传项目实施方案备案")
    assert overdue.count() == 1 and "已逾期" in overdue.inner_text() and "城市大脑数据中台" in overdue.inner_text()
    assert "已逾期" in page.locator('#departments tr[data-group="applicant"]').inner_text() or \
        page.locator('#departments tr[data-group="applicant"] .badge.overdue').inner_text() == "1"


def test_the_projects_list_pages_on_with_its_filters_and_back_to_the_first_page(
        hangzhou: Api, browser: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.console import routes

    monkeypatch.setattr(routes, "PAGE", 2)
    api = hangzhou
    for i in range(4):
        api.clock.advance(timedelta(minutes=10))
        iid = api.start("hangzhou", {**START, "project_name": f"项目{i}"}, business_key=f"HZ-PAGE-{i}")["id"]
        if i == 2:
            api.admin.post(f"/process-instances/{iid}/cancel", json={"reason": "撤回申请"})
    page = login(browser, api, api.token("zhou.min", ("supervision_office",)))
    page.click("nav >> text=项目")
    page.select_option("#status", "running")
    page.click("text=筛选")
    page.wait_for_url("**/console/projects?*status=running*")
    assert page.locator("table.cards tbody tr").all_inner_texts()[0].startswith("项目3")
    page.click("#next-page")
    page.wait_for_url("**cursor=*")
    rows = page.locator("table.cards tbody tr")
    assert rows.count() == 1 and "项目0" in rows.inner_text()  # 项目2 is cancelled, 项目1 was on the first page
    assert page.input_value("#status") == "running" and page.locator("#next-page").count() == 0
    page.click("#first-page")
    page.wait_for_url("**/console/projects?status=running")
    assert page.locator("table.cards tbody tr").count() == 2 and page.locator("#first-page").count() == 0
