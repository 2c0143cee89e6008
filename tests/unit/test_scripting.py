"""The restricted script engine: what diagrams may and may not do."""
from __future__ import annotations

from decimal import Decimal

import pytest

from service.engine.scripting import RestrictedEnvironment, ScriptError, StepTimeout

ENV = RestrictedEnvironment(time_limit=0.5)


@pytest.mark.parametrize("expression, data, expected", [
    ('budget_wan >= 100 and category == "software"', {"budget_wan": Decimal("100"), "category": "software"}, True),
    ("budget_wan >= 100", {"budget_wan": Decimal("99.99")}, False),
    ("? in ('a', 'b')".replace("?", "x"), {"x": "a"}, True),
    ("max(a, b) + len(c)", {"a": 1, "b": 2, "c": [1, 2]}, 4),
    ('"P%dD" % days', {"days": 10}, "P10D"),
    ("sorted(x)[0]", {"x": [3, 1, 2]}, 1),
    ("2 ** 10", {}, 1024),
])
def test_ordinary_expressions_work(expression: str, data: dict, expected: object) -> None:
    assert ENV.evaluate(expression, dict(data)) == expected


@pytest.mark.parametrize("attack", [
    '__import__("os").system("id")',
    "().__class__.__base__.__subclasses__()",
    "getattr(1, 'real')",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('x = 1')",
    "type(1)",
    "globals()",
    "vars()",
    "'{0.__class__}'.format(1)",
    "(lambda: 1).__globals__",
    "[x for x in ()].gi_frame",
])
def test_escapes_are_refused(attack: str) -> None:
    with pytest.raises((SyntaxError, NameError, AttributeError, ScriptError, TypeError, NotImplementedError)):
        ENV.evaluate(attack, {})


def test_imports_are_refused_in_scripts() -> None:
    for script in ("import os", "from os import path", "import subprocess as s"):
        with pytest.raises(SyntaxError, match="import"):
            ENV.execute(script, {})


def test_resource_bombs_are_bounded() -> None:
    with pytest.raises(ScriptError):
        ENV.evaluate("9 ** 9 ** 9", {})
    with pytest.raises(ScriptError):
        ENV.evaluate("'a' * 10 ** 9", {})
    with pytest.raises(ScriptError):
        ENV.evaluate("list(range(10 ** 9))", {})
    with pytest.raises(StepTimeout):
        ENV.execute("while True:\n    pass", {})
    with pytest.raises(StepTimeout):
        ENV.execute("n = 0\nfor i in range(100000):\n    for j in range(100000):\n        n += 1", {})


def test_scripts_change_task_data_and_leave_no_helpers_behind() -> None:
    data = {"delay_count": 2}
    ENV.execute("delay_count = delay_count + 1\nrounds = [i * 2 for i in range(3)]\nflag = delay_count > 3", data)
    assert data == {"delay_count": 3, "rounds": [0, 2, 4], "flag": False}


def test_today_and_now_come_from_the_service_clock_in_china_time() -> None:
    from datetime import UTC, date, datetime

    from service.clock import FrozenClock
    from service.engine.timeline import using_clock

    late_evening_utc = FrozenClock(datetime(2026, 12, 31, 16, 30, tzinfo=UTC))  # 00:30 on 1 January in China
    with using_clock(late_evening_utc):
        assert ENV.evaluate("today()", {}) == date(2027, 1, 1)
        assert ENV.evaluate("now().hour", {}) == 0
        assert ENV.evaluate("today() > deadline", {"deadline": date(2026, 12, 31)}) is True


@pytest.mark.parametrize("start, months, expected", [
    ("2026-01-31", 1, "2026-02-28"),
    ("2026-08-31", 6, "2027-02-28"),
    ("2026-03-15", 6, "2026-09-15"),
    ("2028-02-29", 12, "2029-02-28"),
])
def test_add_months_keeps_to_the_calendar(start: str, months: int, expected: str) -> None:
    from datetime import date

    assert ENV.evaluate("add_months(d, n)", {"d": date.fromisoformat(start), "n": months}) == date.fromisoformat(expected)


@pytest.mark.parametrize("expression", ["date.today()", "datetime.now()", "datetime.utcnow()", "add_months(1, 2)",
                                        "add_months(d, 1.5)"])
def test_the_machine_clock_and_bad_month_arithmetic_are_refused(expression: str) -> None:
    from datetime import date

    with pytest.raises((ScriptError, TypeError)):
        ENV.evaluate(expression, {"d": date(2026, 1, 1)})
