"""The console's pages: inbox, task, projects, project, supervision, definitions. Server-rendered; every page
calls the same use cases as /api/v1 with the principal of the session, so it shows what the API would show."""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.console import session as console_session
from service.console import view
from service.console.session import CsrfRejected, LoginRequired, check_csrf, current
from service.db.models import HumanTask, ProcessInstance
from service.errors import Conflict, DomainError, InvalidInput, Unauthorized
from service.schemas import FormFieldOut, ProcessDefinitionOut, ProcessInstanceOut
from service.services import definitions, diagrams, instances, supervision
from service.services import tasks as task_service
from service.services.context import AppContext
from service.text import ascii_number, storable_problem

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_COMMENT = 2000
PAGE = 50
INBOX_PAGE = 200  # tasks in each of the inbox's two lists, the most urgent first
PROJECT_RECORDS = 1000  # completed tasks on a project's page, the latest first

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(cn_time=view.cn_time, cn_due=view.cn_due, wan=view.wan, show=view.show,
                             iso=view.iso, error_text=view.error_text, input_value=view.input_value)
templates.env.globals.update(STATUS=view.STATUS, ACTIONS=view.ACTIONS, ELEMENT_STATE=view.ELEMENT_STATE,
                             WAITING_KIND=view.WAITING_KIND, widget=view.widget, input_type=view.input_type,
                             is_amount=view.is_amount, due_state=view.due_state,
                             china_day=view.china_day)
_SECURITY_HEADERS = {
    # nothing is loaded from anywhere but this service; no inline script runs; no other site frames the console
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class ConsoleRoute(APIRoute):
    """Console errors are pages, not problem documents: no session → the login page; a refusal → an error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as e:
                if request.method in ("GET", "HEAD"):
                    response = RedirectResponse(console_session.login_url(request, e.reason), status_code=303)
                else:
                    response = _error(request, 401, "需要登录", "登录已失效，请重新登录后再提交。")
                if e.reason:  # a credential that no longer works: forget it
                    console_session.clear_cookie(response)
            except CsrfRejected:
                response = _error(request, 403, "请求被拒绝", "该请求不是从本控制台页面提交的（缺少或不符的校验码），"
                                  "未做任何更改。请返回页面后重试。")
            except DomainError as e:
                title = {403: "无权操作", 404: "未找到", 409: "状态已变化", 422: "无法办理",
                         503: "系统繁忙"}.get(e.status, "出错了")
                response = _error(request, e.status, title, e.detail)
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if not request.url.path.startswith(f"{console_session.PREFIX}/static/"):
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return console_handler


router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)  # served under console_session.PREFIX


# ---- rendering -----------------------------------------------------------------------------------------
def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _page(request: Request, template: str, principal: Principal | None, csrf: str, status: int = 200,
          **values: Any) -> Response:
    ctx = _ctx(request)
    if principal is None:  # the login and error pages of someone not logged in: the style sheet comes inline
        values.setdefault("css", _inline_css())
    return templates.TemplateResponse(request, template, {
        "principal": principal, "csrf": csrf, "now": ctx.clock.now(), "prefix": console_session.PREFIX,
        "nav": values.pop("nav", ""), **values}, status_code=status)


def _error(request: Request, status: int, title: str, detail: str) -> Response:
    try:
        principal, csrf = current(request)
    except (LoginRequired, DomainError):
        principal, csrf = None, ""
    return _page(request, "error.html", principal, csrf, status=status, title=title, detail=detail)


def _definition_names(db: Session) -> dict[str, str]:
    return {d.key: d.name or d.key for d in definitions.list_latest(db)}


def _group_labels(ctx: AppContext, db: Session) -> dict[Any, str]:
    """Candidate groups named by the lanes (departments) that use them: per (process key, group), and per group
    across the processes (data_bureau → 市数据资源局 in Hangzhou's diagram)."""
    labels: dict[Any, str] = {}
    for group in definitions.groups(ctx, db):
        everywhere: list[str] = []
        for p in group.processes:
            if p.lanes:
                labels[(p.key, group.name)] = _join(p.lanes)
            everywhere.extend(lane for lane in p.lanes if lane not in everywhere)
        if everywhere:
            labels[group.name] = _join(everywhere)
    return labels


def _join(lanes: list[str]) -> str:
    return "、".join(lanes[:2]) + ("等" if len(lanes) > 2 else "")


def _forms(ctx: AppContext, db: Session, definition_id: int | None
           ) -> tuple[dict[str, FormFieldOut], dict[str, dict[str, FormFieldOut]]]:
    """A definition version's form fields: by id (the start form's and each user task's, the first declaration
    winning), to label the variables they wrote; and each task's by element (_element_forms)."""
    fields: dict[str, FormFieldOut] = {}
    if definition_id is None:
        return fields, {}
    start = definitions.by_id(db, definition_id, with_form=True).start_form or []
    fields.update({f.id: f for f in start})
    by_element = _element_forms(ctx, db, definition_id)
    for form in by_element.values():
        for field_id, f in form.items():
            fields.setdefault(field_id, f)
    return fields, by_element


def _element_forms(ctx: AppContext, db: Session, definition_id: int) -> dict[str, dict[str, FormFieldOut]]:
    """Each user task's form fields by id, by element: what a task submitted reads with its own options (a
    decision of 复查 is 恢复建设 or 终止项目, not the common 通过 and 不予通过)."""
    from service.engine import forms
    from service.engine.parser import FORM_KEY

    found: dict[str, dict[str, FormFieldOut]] = {}
    model = ctx.model(db, definition_id)
    for spec in [model.spec, *model.subprocess_specs.values()]:
        for task_spec in spec.task_specs.values():
            raw = (getattr(task_spec, "extensions", None) or {}).get(FORM_KEY) or []
            element = getattr(task_spec, "bpmn_id", None)
            if not raw or not element:
                continue
            parsed = [forms.FormField.from_dict(f) for f in raw]
            found.setdefault(element, {f["id"]: FormFieldOut(**f) for f in forms.schema_for_api(parsed)})
    return found


def _projects(db: Session, principal: Principal, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The instances' variables (for the project names), of the instances the principal sees."""
    if not ids:
        return {}
    rows = db.execute(select(ProcessInstance.id, ProcessInstance.variables).where(
        ProcessInstance.id.in_(sorted(ids)), policy.visible_instances(principal)))
    return {r.id: r.variables or {} for r in rows}


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "on", "yes")


# ---- login ---------------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "", expired: str = "") -> Response:
    message = "登录已过期或令牌已失效，请重新登录。" if expired else None
    return _page(request, "login.html", None, "", next=console_session.safe_next(next), message=message)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    credential = str(form.get("credential") or "")
    target = console_session.safe_next(str(form.get("next") or ""))
    origin = request.headers.get("origin")
    if origin not in (None, "null", f"{request.url.scheme}://{request.headers.get('host', '')}"):
        raise CsrfRejected()
    try:
        await run_in_threadpool(console_session.principal_for, request, credential)
    except Unauthorized as e:
        return _page(request, "login.html", None, "", status=401, next=target,
                     message=f"无法登录：{_login_reason(e.detail)}")
    response = RedirectResponse(target, status_code=303)
    console_session.set_cookie(request, response, credential)
    return response


def _login_reason(detail: str) -> str:
    if "expired" in detail:
        return "令牌已过期。"
    if "API key" in detail or "api key" in detail:
        return "API 密钥无效或已吊销。"
    return "令牌或 API 密钥无效。"


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("_csrf") or ""))
    response = RedirectResponse(f"{console_session.PREFIX}/login", status_code=303)
    console_session.clear_cookie(response)
    return response


_css_cache: dict[str, str] = {}


def _inline_css() -> str:
    if "css" not in _css_cache:
        _css_cache["css"] = (STATIC / "console.css").read_text(encoding="utf-8")
    return _css_cache["css"]


# ---- static files (behind the login too) ---------------------------------------------------------------
@router.get("/static/{path:path}")
def static(request: Request, path: str) -> Response:
    current(request)
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        return _error(request, 404, "未找到", "没有这个文件。")
    response = FileResponse(target)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# ---- inbox ---------------------------------------------------------------------------------------------
@router.get("")
@router.get("/")
def home(request: Request) -> Response:
    current(request)
    return RedirectResponse(f"{console_session.PREFIX}/inbox", status_code=303)


@router.get("/inbox")
def inbox(request: Request, process_key: str = "", overdue: str = "") -> Response:
    principal, csrf = current(request)
    ctx = _ctx(request)
    now = ctx.clock.now()
    only_overdue = _flag(overdue)
    with ctx.read() as db:
        def most_urgent(offered: bool) -> tuple[list[Any], int]:
            """A list most urgent first (due date; a task without one after every one with; then the oldest), so
            that one longer than a page shows its most urgent tasks; and how many there are."""
            return task_service.most_urgent(db, principal, offered=offered, process_key=process_key or None,
                                            only_overdue=only_overdue, now=now, limit=INBOX_PAGE)

        mine, mine_total = most_urgent(offered=False)
        offered, offered_total = most_urgent(offered=True)
        names = _definition_names(db)
        projects = _projects(db, principal, {t.process_instance_id for t in [*mine, *offered]})
        groups = _group_labels(ctx, db)
    return _page(request, "inbox.html", principal, csrf, nav="inbox", mine=mine, offered=offered,
                 mine_total=mine_total, offered_total=offered_total,
                 definitions=names, projects=projects, groups=groups, process_key=process_key,
                 only_overdue=only_overdue)


# ---- a task --------------------------------------------------------------------------------------------
def _task_view(request: Request, principal: Principal, csrf: str, task_id: str, *, status: int = 200,
               errors: dict[str, str] | None = None, raw: dict[str, str] | None = None, comment: str = "",
               message: str | None = None, notice: str | None = None) -> Response:
    ctx = _ctx(request)
    with ctx.read() as db:
        detail = task_service.get(ctx, db, principal, task_id)
        row = db.get(HumanTask, task_id)
        assert row is not None  # get() has found it
        may_work = policy.may_work_on_task(principal, row)
        may_release = policy.may_release_task(principal, row)
        fields, element_forms = _forms(ctx, db, detail.definition_id)
        labels = {**fields, **{f.id: f for f in detail.form}}
        shown = len(detail.completed_tasks)
        completed_more = shown >= task_service.COMPLETED_SHOWN and \
            task_service.count_completed(db, detail.process_instance_id) > shown
        groups = _group_labels(ctx, db)
        names = _definition_names(db)
        next_tasks = []
        if notice:  # what the process went on to: the instance's open tasks, as GET /process-instances/{id} shows
            next_tasks = instances.read_in(ctx, db, principal, detail.process_instance_id).open_tasks
    values = raw if raw is not None else {f.id: view.input_value(f.default) for f in detail.form}
    field_ids = {f.id for f in detail.form}
    other_errors = {k: v for k, v in (errors or {}).items() if k not in field_ids and k != "_comment"}
    return _page(request, "task.html", principal, csrf, status=status, nav="inbox", task=detail,
                 may_work=may_work and detail.status == "open",
                 may_claim=may_work and detail.status == "open" and detail.assignee is None,
                 may_unclaim=may_release and detail.status == "open" and detail.assignee is not None,
                 claimed_by_other=detail.assignee not in (None, principal.user),
                 errors=errors or {}, other_errors=other_errors, values=values, comment=comment, labels=labels,
                 groups=groups, definitions=names, message=message, notice=notice, next_tasks=next_tasks,
                 element_forms=element_forms, completed_more=completed_more,
                 project_name=(detail.variables or {}).get("project_name"))


@router.get("/tasks/{task_id}")
def task_page(request: Request, task_id: str, done: str = "") -> Response:
    principal, csrf = current(request)
    return _task_view(request, principal, csrf, task_id, notice="已办结，意见已记录。" if _flag(done) else None)


@router.post("/tasks/{task_id}/complete")
async def complete_task(request: Request, task_id: str) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("_csrf") or ""))
    principal, csrf = current(request)
    return await run_in_threadpool(_complete, request, principal, csrf, task_id, form)


def _complete(request: Request, principal: Principal, csrf: str, task_id: str, form: Any) -> Response:
    ctx = _ctx(request)
    with ctx.read() as db:
        detail = task_service.get(ctx, db, principal, task_id)
    variables, raw = view.submission(detail.form, form)
    comment = str(form.get("_comment") or "").strip()
    if len(comment) > MAX_COMMENT:
        return _task_view(request, principal, csrf, task_id, status=422, raw=raw, comment=comment,
                          errors={"_comment": f"至多 {MAX_COMMENT} 个字"}, message="审批意见过长。")
    if not _storable(comment):
        return _task_view(request, principal, csrf, task_id, status=422, raw=raw, comment="",
                          errors={"_comment": "含有无法保存的字符"}, message="审批意见含有无法保存的字符。")
    try:
        task_service.complete(ctx, principal, task_id, variables, comment or None)
    except InvalidInput as e:
        return _task_view(request, principal, csrf, task_id, status=422, raw=raw, comment=comment,
                          errors={k: view.error_text(v) for k, v in (e.extra.get("errors") or {}).items()},
                          message="表单有误，请按提示修改后再提交。" if e.extra.get("errors") else e.detail)
    except Conflict as e:
        return _task_view(request, principal, csrf, task_id, status=409, raw=raw, comment=comment,
                          message=f"未能办结：{e.detail}")
    return RedirectResponse(f"{console_session.PREFIX}/tasks/{task_id}?done=1", status_code=303)


@router.post("/tasks/{task_id}/claim")
async def claim_task(request: Request, task_id: str) -> Response:
    return await _claim_or_release(request, task_id, task_service.claim)


@router.post("/tasks/{task_id}/unclaim")
async def unclaim_task(request: Request, task_id: str) -> Response:
    return await _claim_or_release(request, task_id, task_service.unclaim)


async def _claim_or_release(request: Request, task_id: str, use_case: Callable[..., Any]) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("_csrf") or ""))
    principal, _ = current(request)
    ctx = _ctx(request)

    def act() -> None:
        with ctx.write() as db:
            use_case(ctx, db, principal, task_id)

    await run_in_threadpool(act)
    back = str(form.get("next") or f"{console_session.PREFIX}/tasks/{task_id}")
    return RedirectResponse(console_session.safe_next(back), status_code=303)


def _storable(text: str) -> bool:
    """A text the database can keep (no NUL character, valid UTF-8: service/text.py)."""
    return storable_problem(text, None) is None


def _number(text: str) -> int | None:
    """A page or version from a query parameter: a positive whole number of at most five ASCII digits, else None."""
    return ascii_number(text, 5) or None


# ---- projects ------------------------------------------------------------------------------------------
@router.get("/projects")
def projects(request: Request, process_key: str = "", status: str = "", business_key: str = "", overdue: str = "",
             cursor: str = "", page: str = "") -> Response:
    """Newest first, paged as the API's list is: `cursor` is where the page before ended. A cursor the list cannot
    use shows the first page and says so, as an odd page number or status is shown as the first page or all; a
    page number (offset paging, before cursors) from an old link shows the first page."""
    principal, csrf = current(request)
    ctx = _ctx(request)
    status = status if status in instances.INSTANCE_STATUSES else ""
    notice = None
    if not cursor and (_number(page) or 1) > 1:
        notice = "项目列表已改为按发起时间翻页，旧链接中的页码不再使用，现显示最新发起的项目。"
    with ctx.read() as db:
        def listed(after: str | None) -> tuple[list[ProcessInstanceOut], str | None]:
            return supervision.list_projects(
                ctx, db, principal, now=ctx.clock.now(), process_key=process_key or None, status=status or None,
                business_key=business_key.strip() or None, overdue=_flag(overdue), limit=PAGE, cursor=after)

        try:
            items, next_cursor = listed(cursor or None)
        except InvalidInput as e:
            if "cursor" not in e.extra.get("errors", {}):
                raise
            cursor, notice = "", "翻页链接无效（可能被截断或改动），现显示最新发起的项目。"
            items, next_cursor = listed(None)
        names = _definition_names(db)
    query = {"process_key": process_key, "status": status, "business_key": business_key,
             "overdue": "1" if _flag(overdue) else ""}
    kept = {name: value for name, value in query.items() if value}  # the filters the page's links carry
    return _page(request, "projects.html", principal, csrf, nav="projects", items=items, query=query, kept=kept,
                 later=bool(cursor), next_cursor=next_cursor, notice=notice, definitions=names)


@router.get("/projects/{instance_id}")
def project(request: Request, instance_id: str) -> Response:
    principal, csrf = current(request)
    ctx = _ctx(request)
    with ctx.read() as db:
        instance = instances.read_in(ctx, db, principal, instance_id)
        diagram = diagrams.instance_diagram(ctx, db, principal, instance_id)
        records, records_total = task_service.completed_for_instance(db, principal, instance_id, PROJECT_RECORDS)
        history = instances.history(db, principal, instance_id, verify=False).events
        index = diagrams.diagram_index(diagram.definition_id, diagram.bpmn_xml)
        labels, element_forms = _forms(ctx, db, diagram.definition_id)
        names = _definition_names(db)
        groups = _group_labels(ctx, db)
    marked = [(element_id, index.names.get(element_id, element_id), e) for element_id, e in diagram.elements.items()
              if e.state != "completed"]
    data = {"xml": diagram.bpmn_xml, "elements": {k: v.model_dump(mode="json") for k, v in diagram.elements.items()}}
    return _page(request, "project.html", principal, csrf, nav="projects", instance=instance, diagram=data,
                 records=records, records_total=records_total, history=list(reversed(history)),
                 element_forms=element_forms, element_names=index.names,
                 marked=marked, labels=labels, definitions=names, groups=groups,
                 project_name=(instance.variables or {}).get("project_name"))


# ---- supervision ---------------------------------------------------------------------------------------
@router.get("/supervision")
def supervision_page(request: Request, process_key: str = "") -> Response:
    principal, csrf = current(request)
    ctx = _ctx(request)
    with ctx.read() as db:
        report = supervision.supervision(db, principal, ctx.clock.now(), process_key or None)
        names = _definition_names(db)
        groups = _group_labels(ctx, db)
        projects = _projects(db, principal, {t.process_instance_id for _, t in [*report.overdue, *report.due_soon]})
    departments = {d.group: (groups.get((next(iter(d.processes)), d.group)) if len(d.processes) == 1 else None)
                   or groups.get(d.group, d.group) for d in report.departments}
    return _page(request, "supervision.html", principal, csrf, nav="supervision", report=report, definitions=names,
                 groups=groups, departments=departments, projects=projects, process_key=process_key)


# ---- definitions ---------------------------------------------------------------------------------------
@router.get("/definitions")
def definitions_page(request: Request) -> Response:
    principal, csrf = current(request)
    ctx = _ctx(request)
    with ctx.read() as db:
        items = definitions.list_latest(db)
    return _page(request, "definitions.html", principal, csrf, nav="definitions", items=items)


def _definition_view(request: Request, principal: Principal, csrf: str, key: str, version: str = "", *,
                     status: int = 200, errors: dict[str, str] | None = None, raw: dict[str, str] | None = None,
                     business_key: str = "", message: str | None = None) -> Response:
    ctx = _ctx(request)
    with ctx.read() as db:
        latest = definitions.get_latest(ctx, db, key)
        versions = definitions.versions(db, key)
        shown: ProcessDefinitionOut = latest
        asked = _number(version)
        if asked is not None and asked != latest.version:
            row = definitions.version(db, key, asked)
            shown = definitions.by_id(db, row.id, with_form=True)
        xml = definitions.xml(db, key, shown.version)
        may_start = policy.may_start(principal, key, latest.candidate_starter_groups,
                                     definitions.latest(db, key).candidate_starter_users or [])
        groups = _group_labels(ctx, db)
    form = latest.start_form or []
    values = raw if raw is not None else {f.id: view.input_value(f.default) for f in form}
    field_ids = {f.id for f in form}
    return _page(request, "definition.html", principal, csrf, status=status, nav="definitions", definition=latest,
                 shown=shown, versions=versions, diagram={"xml": xml, "elements": {}}, may_start=may_start,
                 form=form, values=values, errors=errors or {}, groups=groups, business_key=business_key,
                 other_errors={k: v for k, v in (errors or {}).items() if k not in field_ids and k != "_business_key"},
                 message=message)


@router.get("/definitions/{key}")
def definition_page(request: Request, key: str, version: str = "") -> Response:
    principal, csrf = current(request)
    return _definition_view(request, principal, csrf, key, version)


@router.post("/definitions/{key}/start")
async def start_instance(request: Request, key: str) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("_csrf") or ""))
    principal, csrf = current(request)
    return await run_in_threadpool(_start, request, principal, csrf, key, form)


def _start(request: Request, principal: Principal, csrf: str, key: str, form: Any) -> Response:
    ctx = _ctx(request)
    with ctx.read() as db:
        fields = definitions.get_latest(ctx, db, key).start_form or []
    variables, raw = view.submission(fields, form)
    business_key = str(form.get("_business_key") or "").strip()
    if len(business_key) > 200:
        return _definition_view(request, principal, csrf, key, status=422, raw=raw, business_key=business_key,
                                errors={"_business_key": "至多 200 个字"}, message="业务编号过长。")
    if not _storable(business_key):
        return _definition_view(request, principal, csrf, key, status=422, raw=raw,
                                errors={"_business_key": "含有无法保存的字符"}, message="业务编号含有无法保存的字符。")
    try:
        out = instances.start(ctx, principal, key, business_key or None, variables)
    except InvalidInput as e:
        return _definition_view(request, principal, csrf, key, status=422, raw=raw, business_key=business_key,
                                errors={k: view.error_text(v) for k, v in (e.extra.get("errors") or {}).items()},
                                message="表单有误，请按提示修改后再提交。" if e.extra.get("errors") else e.detail)
    except Conflict as e:
        return _definition_view(request, principal, csrf, key, status=409, raw=raw, business_key=business_key,
                                message=f"未能发起：{e.detail}")
    return RedirectResponse(f"{console_session.PREFIX}/projects/{out.id}", status_code=303)


# ---- anything else under /console: only for a logged-in user, and then "not found" -------------------------
@router.get("/{rest:path}")
def not_found(request: Request, rest: str) -> Response:
    current(request)
    return _error(request, 404, "未找到", "没有这个页面。")
