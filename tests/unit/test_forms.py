"""Form schemas from camunda:formData and validation of submitted data."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from lxml import etree

from service.engine.forms import FormDefinitionError, FormField, parse_form, validate

NS = 'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn"'


def form(fields: str) -> list[FormField]:
    node = etree.fromstring(f'<bpmn:userTask {NS} id="t"><bpmn:extensionElements><camunda:formData>{fields}'
                            '</camunda:formData></bpmn:extensionElements></bpmn:userTask>')
    parsed = parse_form(node)
    assert parsed is not None
    return parsed


AMOUNT = form('<camunda:formField id="budget_wan" type="decimal"><camunda:validation>'
              '<camunda:constraint name="required" /><camunda:constraint name="min" config="0" />'
              '<camunda:constraint name="max" config="100000" /></camunda:validation></camunda:formField>')


@pytest.mark.parametrize("value, expected", [(49.99, Decimal("49.99")), (50, Decimal("50")),
                                             ("50.01", Decimal("50.01")), (0, Decimal("0")), (" 7 ", Decimal("7")),
                                             (".5", Decimal("0.5")), ("5.", Decimal("5")), ("1e2", Decimal("100")),
                                             ("+3", Decimal("3"))])
def test_decimal_amounts_are_exact(value: object, expected: Decimal) -> None:
    clean, errors = validate(AMOUNT, {"budget_wan": value})
    assert errors == {} and clean["budget_wan"] == expected
    assert isinstance(clean["budget_wan"], Decimal)


@pytest.mark.parametrize("value, problem", [(-0.01, "must be at least 0"), (100000.01, "must be at most 100000"),
                                            (float("nan"), "must be a finite number"), ("NaN", "must be a number"),
                                            (True, "must be a number"), ("1e", "must be a number"),
                                            (None, "is required"), ("５", "must be a number"), ("٣", "must be a number"),
                                            ("1_000", "must be a number"), ("Infinity", "must be a number")])
def test_decimal_problems(value: object, problem: str) -> None:
    assert validate(AMOUNT, {"budget_wan": value})[1] == {"budget_wan": problem}


def test_types_constraints_and_defaults() -> None:
    fields = form(
        '<camunda:formField id="d" type="date"><camunda:validation><camunda:constraint name="min" config="2026-01-01"/>'
        '</camunda:validation></camunda:formField>'
        '<camunda:formField id="n" type="long" defaultValue="3" />'
        '<camunda:formField id="b" type="boolean" defaultValue="true" />'
        '<camunda:formField id="s" type="string"><camunda:validation><camunda:constraint name="maxlength" config="3"/>'
        '</camunda:validation></camunda:formField>'
        '<camunda:formField id="e" type="enum"><camunda:value id="pass" name="通过"/>'
        '<camunda:value id="reject" name="不通过"/></camunda:formField>')
    clean, errors = validate(fields, {"d": "2026-05-01", "s": "abc", "e": "pass"})
    assert errors == {}
    assert clean == {"d": dt.date(2026, 5, 1), "n": 3, "b": True, "s": "abc", "e": "pass"}
    _, errors = validate(fields, {"d": "2025-12-31", "n": "x", "b": 1, "s": "abcd", "e": "maybe"})
    assert errors == {"d": "must be at least 2026-01-01", "n": "must be an integer", "b": "must be true or false",
                      "s": "must have at most 3 characters", "e": "must be one of: pass, reject"}


@pytest.mark.parametrize("bad", [
    '<camunda:formField id="x" type="float" />',
    '<camunda:formField id="x" type="enum" />',
    '<camunda:formField id="_x" type="string" />',
    '<camunda:formField id="x" type="long"><camunda:validation><camunda:constraint name="min" config="a"/>'
    '</camunda:validation></camunda:formField>',
    '<camunda:formField id="x" type="string"><camunda:validation><camunda:constraint name="pattern" config="a"/>'
    '</camunda:validation></camunda:formField>',
])
def test_unusable_forms_are_refused(bad: str) -> None:
    with pytest.raises(FormDefinitionError):
        form(bad)


def test_form_survives_storage() -> None:
    for f in AMOUNT:
        assert FormField.from_dict(f.to_dict()) == f


NUMBERED = form('<camunda:formField id="n" type="long"/><camunda:formField id="on" type="date"/>')


@pytest.mark.parametrize("field, value", [("n", "５"), ("n", "٣"), ("n", "1_000"), ("n", "²"),
                                          ("on", "20260101"), ("on", "2026-W09-1"), ("on", "２０２６-０１-０１"),
                                          ("on", "2026-1-1"), ("on", "2026-01-01T00:00")])
def test_numbers_and_dates_are_written_in_ascii_digits_and_the_declared_format(field: str, value: str) -> None:
    """What str.isdigit(), int(), Decimal() and date.fromisoformat() also take (other scripts' digits, digit
    groups, the compact and week forms of a date) is refused: a form's value is what its type says."""
    problem = validate(NUMBERED, {field: value})[1]
    assert problem == {field: "must be an integer" if field == "n" else "must be a date (YYYY-MM-DD)"}


def test_the_declared_forms_are_taken() -> None:
    assert validate(NUMBERED, {"n": "-12", "on": "2026-02-28"}) == ({"n": -12, "on": dt.date(2026, 2, 28)}, {})
