"""How the console shows things: China time, amounts in 万元, Chinese labels, and HTML forms from form schemas."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from service.schemas import FormFieldOut

CHINA = timezone(timedelta(hours=8), "CST")  # China keeps no daylight saving time

STATUS = {"running": "运行中", "completed": "已完成", "cancelled": "已取消", "open": "待办", "failed": "失败"}
ELEMENT_STATE = {"completed": "已完成", "active": "办理中", "waiting": "等待中", "failed": "出错"}
ACTIONS = {
    "instance.started": "发起流程", "instance.completed": "流程结束", "instance.cancelled": "流程取消",
    "task.created": "生成待办", "task.claimed": "认领", "task.unclaimed": "释放", "task.completed": "办结",
    "task.commented": "添加意见", "task.cancelled": "待办撤销", "timer.fired": "期限到达",
    "message.correlated": "收到通知", "task.sent_back": "退回", "task.withdrawn": "撤回办结",
    "instance.migrated": "迁移到新版本", "instance.modified": "调整办理环节", "instance.variables_set": "修改项目数据",
}
DECISIONS = {"pass": "通过", "revise": "退回修改", "reject": "不予通过"}
WAITING_KIND = {"timer": "期限", "message": "外部通知", "gateway": "汇聚"}
_ERRORS = [
    ("is required", "此项必填"),
    ("is read-only", "此项只读，不能填写"),
    ("is not a field of this form", "不是本表单的字段"),
    ("must be true or false", "请选择“是”或“否”"),
    ("must be an integer", "请填写整数"),
    ("must be a finite number", "请填写数字"),
    ("must be a number", "请填写数字"),
    ("must be a date (YYYY-MM-DD)", "请填写日期（年-月-日）"),
    ("must be a string", "请填写文字"),
]


def to_china(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(CHINA)
    except OverflowError:  # at the calendar's edge (9999-12-31T23:00:00Z, a common "no end date")
        return None


def cn_time(value: datetime | str | None) -> str:
    """A moment in China time: 2026-03-02 09:00."""
    at = to_china(value)
    return at.strftime("%Y-%m-%d %H:%M") if at else "—"


def cn_due(value: datetime | str | None) -> str:
    """A due time: a deadline at 24:00 reads as the end of that day (2026-03-07 24:00 → 2026-03-07 当日结束)."""
    at = to_china(value)
    if at is None:
        return "—"
    if (at.hour, at.minute, at.second) == (0, 0, 0):
        return (at - timedelta(days=1)).strftime("%Y-%m-%d") + " 24:00"
    return at.strftime("%Y-%m-%d %H:%M")


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def due_day(value: datetime) -> date:
    """The China calendar day a deadline falls on, as cn_due shows it (a deadline at 24:00 is that day's)."""
    at = to_china(value)
    assert at is not None
    return (at - timedelta(microseconds=1)).date() if at.time() == time(0) else at.date()


def china_day(now: datetime) -> str:
    """The day of `now` in China, as a date input's bound (YYYY-MM-DD)."""
    return to_china(now).date().isoformat()  # type: ignore[union-attr]


def due_state(due: datetime | None, now: datetime) -> dict[str, Any] | None:
    """How a deadline stands, in China calendar days: overdue by so many days, due today, or days left."""
    if due is None:
        return None
    today = to_china(now).date()  # type: ignore[union-attr]
    days = (due_day(due) - today).days
    if due < now:
        return {"overdue": True, "text": f"已逾期 {-days} 天" if days <= -1 else "已逾期", "cls": "overdue"}
    if days <= 0:
        return {"overdue": False, "text": "今日到期", "cls": "soon"}
    return {"overdue": False, "text": f"剩 {days} 天", "cls": "soon" if days < 3 else "ok"}


def wan(value: Any) -> str:
    """An amount in 万元: 1,234.5 万元."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    text = f"{number:,.4f}".rstrip("0").rstrip(".")
    return f"{text} 万元"


def is_amount(name: str, label: str | None = None) -> bool:
    return name.endswith("_wan") or "万元" in (label or "")


def show(value: Any, name: str = "", field: FormFieldOut | dict[str, Any] | None = None) -> str:
    """A submitted or stored value for reading: option labels, 是/否, amounts in 万元, dates as written."""
    if isinstance(field, dict):
        field = FormFieldOut(**field)
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if field is not None and field.options:
        for option in field.options:
            if option.get("id") == value:
                return option.get("name") or str(value)
    if name == "decision" and value in DECISIONS:
        return DECISIONS[value]
    if isinstance(value, (int, float, Decimal)) and is_amount(name, field.label if field else None):
        return wan(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "；".join(str(v.get("name")) for v in value)
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime) or (isinstance(value, str) and _MOMENT.match(value)):
        # a moment (a date-time with its offset, as Camunda's Date variables come): in China time, as every time
        # on the console is; a date is shown as written
        at = to_china(value)
        return at.strftime("%Y-%m-%d %H:%M") if at else str(value)
    return str(value)


_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


def error_text(message: str) -> str:
    """The form validation's messages in Chinese (the API keeps its English ones)."""
    for english, chinese in _ERRORS:
        if message == english:
            return chinese
    if message.startswith("must be one of: "):
        return "请从选项中选择"
    for prefix, chinese in (("must be at least ", "不得小于 "), ("must be at most ", "不得大于 ")):
        if message.startswith(prefix):
            return chinese + message[len(prefix):]
    for prefix, chinese in (("must have at least ", "至少 "), ("must have at most ", "至多 ")):
        if message.startswith(prefix):
            return chinese + message[len(prefix):].replace(" characters", " 个字")
    return message


# ---- forms ---------------------------------------------------------------------------------------------
def input_value(value: Any) -> str:
    """A value as an input field shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "\n".join(f"{d.get('name', '')} | {d.get('url', '')}" for d in value if isinstance(d, dict))
    return str(value)


def parse_documents(text: str) -> Any:
    """Document references written one a line as `name | url`; anything else is passed on for the form's check."""
    items: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, url = line.partition("|")
        if not sep:
            return text  # not in the expected shape: the validation names the field
        items.append({"name": name.strip(), "url": url.strip()})
    return items


def submission(fields: list[FormFieldOut], form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The variables an HTML form submitted, typed for the form's check, and the raw texts to show again."""
    variables: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for f in fields:
        if f.readonly:
            continue
        text = str(form.get(f.id) or "").strip()
        raw[f.id] = text
        if text == "":
            continue
        if f.type == "boolean":
            variables[f.id] = {"true": True, "false": False}.get(text, text)
        elif f.type == "documents":
            variables[f.id] = parse_documents(text)
        else:
            variables[f.id] = text  # long, decimal, date and enum are read from text by the form's check
    return variables, raw


def widget(f: FormFieldOut) -> str:
    if f.type in ("enum", "boolean"):
        return "select"
    if f.type == "documents":
        return "textarea"
    if f.type == "string" and (f.maxlength is None or f.maxlength > 200) and any(
            word in f.id for word in ("opinion", "note", "comment", "reason", "remark", "description", "summary")):
        return "textarea"
    return "input"


def input_type(f: FormFieldOut) -> str:
    return {"long": "number", "decimal": "number", "date": "date"}.get(f.type, "text")
