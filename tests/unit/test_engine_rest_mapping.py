"""The Camunda 7 mapping on its own: typed variables in and out, dates, definition ids, error bodies."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from service.api.engine_rest.mapping import (
    CamundaError,
    DefinitionRef,
    flag,
    format_date,
    from_domain,
    paging,
    parse_datetime,
    parse_definition_id,
    sort_order,
    typed,
    typed_variables,
    variable_value,
    variables_in,
)
from service.errors import Conflict, Forbidden, InvalidInput, InvalidModel, NotFound, ProcessError, Unauthorized


@pytest.mark.parametrize(("dto", "expected"), [
    ({"value": "一网通办", "type": "String"}, "一网通办"),
    ({"value": 42, "type": "Long"}, 42),
    ({"value": "42", "type": "Integer"}, 42),
    ({"value": 7.0, "type": "Short"}, 7),
    ({"value": 49.99, "type": "Double"}, Decimal("49.99")),
    ({"value": "320.5", "type": "Double"}, Decimal("320.5")),
    ({"value": 320, "type": "Double"}, Decimal(320)),
    ({"value": True, "type": "Boolean"}, True),
    ({"value": "false", "type": "Boolean"}, False),
    ({"value": "2026-06-01", "type": "Date"}, date(2026, 6, 1)),
    ({"value": "2026-06-01T00:00:00.000+0800", "type": "Date"}, date(2026, 6, 1)),
    ({"value": "2026-06-01T09:30:00.000+0800", "type": "Date"}, datetime.fromisoformat("2026-06-01T09:30:00+08:00")),
    ({"value": "2026-06-01T01:30:00Z", "type": "Date"}, datetime(2026, 6, 1, 1, 30, tzinfo=UTC)),
    ({"value": '{"a": [1, 2.5]}', "type": "Json"}, {"a": [1, Decimal("2.5")]}),
    ({"value": [{"name": "合同.pdf"}], "type": "Json"}, [{"name": "合同.pdf"}]),
    ({"value": '["x"]', "type": "Object", "valueInfo": {"serializationDataFormat": "application/json"}}, ["x"]),
    ({"value": None, "type": "Null"}, None),
    ({"value": None, "type": "String"}, None),
    ({"value": "untyped"}, "untyped"),
    ({"value": 1.5, "type": None}, Decimal("1.5")),
    ({"value": 3}, 3),
    ({"value": 1, "type": "long"}, 1),
])
def test_typed_values_in(dto: dict[str, Any], expected: Any) -> None:
    assert variable_value("v", dto) == expected


@pytest.mark.parametrize(("dto", "why"), [
    ({"value": 1.5, "type": "Long"}, "not an integer"),
    ({"value": True, "type": "Integer"}, "not an integer"),
    ({"value": 2**31, "type": "Integer"}, "out of the range of a Integer"),
    ({"value": 40000, "type": "Short"}, "out of the range"),
    ({"value": "lots", "type": "Double"}, "not a number"),
    ({"value": "NaN", "type": "Double"}, "not a number"),
    ({"value": "١٢٣", "type": "Double"}, "not a number"),
    ({"value": "1_000", "type": "Double"}, "not a number"),
    ({"value": float("inf"), "type": "Double"}, "not a finite number"),
    ({"value": "yes", "type": "Boolean"}, "not true or false"),
    ({"value": "03/05/2026", "type": "Date"}, "a Date is a text"),
    ({"value": 20260305, "type": "Date"}, "a Date is a text"),
    ({"value": "{not json", "type": "Json"}, "not valid JSON"),
    ({"value": 5, "type": "String"}, "not a text"),
])
def test_a_value_that_does_not_fit_its_type_is_invalid_request(dto: dict[str, Any], why: str) -> None:
    with pytest.raises(CamundaError) as e:
        variable_value("amount", dto)
    assert e.value.status == 400 and e.value.type == "InvalidRequestException"
    assert "variable 'amount'" in e.value.message and why in e.value.message


@pytest.mark.parametrize("dto", [{"value": "x", "type": "Bytes"}, {"value": "x", "type": "File"},
                                 {"value": "x", "type": "Object"}, "plain", {"value": 1, "type": 5}])
def test_unsupported_types_and_shapes_are_invalid_request(dto: Any) -> None:
    with pytest.raises(CamundaError) as e:
        variable_value("v", dto)
    assert e.value.status == 400


def test_a_variables_map_must_be_an_object() -> None:
    assert variables_in(None) == {}
    assert variables_in({"a": {"value": 1, "type": "Long"}}) == {"a": 1}
    with pytest.raises(CamundaError):
        variables_in(["a"])


def test_values_out_are_typed_the_camunda_way() -> None:
    assert typed_variables({"s": "x", "n": 3, "d": 49.99, "b": False, "none": None, "j": {"k": [1]},
                            "dec": Decimal("1.25")}) == {
        "s": {"type": "String", "value": "x", "valueInfo": {}},
        "n": {"type": "Long", "value": 3, "valueInfo": {}},
        "d": {"type": "Double", "value": 49.99, "valueInfo": {}},
        "b": {"type": "Boolean", "value": False, "valueInfo": {}},
        "none": {"type": "Null", "value": None, "valueInfo": {}},
        "j": {"type": "Json", "value": '{"k":[1]}', "valueInfo": {}},
        "dec": {"type": "Double", "value": 1.25, "valueInfo": {}},
    }
    # a form field's type decides where one is known
    assert typed("2026-06-01", "date") == {"type": "Date", "value": "2026-06-01T00:00:00.000+0800", "valueInfo": {}}
    assert typed(None, "long") == {"type": "Long", "value": None, "valueInfo": {}}
    assert typed(320.0, "long")["value"] == 320 and typed("12.5", "decimal")["value"] == 12.5
    assert typed(30, "decimal") == {"type": "Double", "value": 30.0, "valueInfo": {}}
    assert typed(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))["value"] == "2026-03-02T09:00:00.000+0800"


def test_dates_use_camundas_format_in_china_time() -> None:
    moment = datetime(2026, 3, 2, 1, 0, 0, 123456, tzinfo=UTC)
    text = format_date(moment)
    assert text == "2026-03-02T09:00:00.123+0800"
    assert parse_datetime(text or "") == moment.replace(microsecond=123000)
    assert parse_datetime("2026-03-02T09:00:00") == datetime.fromisoformat("2026-03-02T09:00:00+08:00")
    assert format_date(None) is None
    # a "+" a client forgot to encode in a query string arrives as a space
    assert parse_datetime("2026-03-02T09:00:00.000 0800") == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def test_definition_ids_round_trip() -> None:
    assert parse_definition_id("12") == DefinitionRef(number=12)
    assert parse_definition_id("hangzhou:3:7") == DefinitionRef(key="hangzhou", version=3, deployment_id="7")
    for bad in ("hangzhou", "hangzhou:x:1", ":1:1", "hangzhou:1:"):
        with pytest.raises(CamundaError) as e:
            parse_definition_id(bad)
        assert e.value.status == 404


def test_domain_errors_as_camunda_answers_them() -> None:
    def answer(exc: Any, **kw: Any) -> tuple[int, str]:
        err = from_domain(exc, **kw)
        return err.status, err.type

    assert answer(Unauthorized("x")) == (401, "AuthenticationException")
    assert answer(Forbidden("x")) == (403, "AuthorizationException")
    assert answer(NotFound("x")) == (404, "InvalidRequestException")
    assert answer(NotFound("x"), not_found_status=400, not_found_type="RestException") == (400, "RestException")
    assert answer(Conflict("the task is claimed by li", assignee="li")) == (409, "TaskAlreadyClaimedException")
    assert answer(Conflict("the task is already completed")) == (409, "ProcessEngineException")
    assert answer(ProcessError("a script failed")) == (400, "ProcessEngineException")
    invalid = from_domain(InvalidInput("the submitted data does not fit", {"decision": "is required"}))
    assert (invalid.status, invalid.message) == (400, "the submitted data does not fit: decision: is required")
    parse = from_domain(InvalidModel("a.bpmn: condition is broken", file="a.bpmn", element_id="gw", line=12))
    assert parse.status == 400 and parse.type == "ParseException"
    assert parse.message == "ENGINE-09005 Could not parse BPMN process. Errors: \n* gw: condition is broken | a.bpmn | line 12"
    assert parse.body()["details"]["a.bpmn"]["errors"][0]["mainElementId"] == "gw"
    assert "code" not in CamundaError(400, "InvalidRequestException", "m").body()


def test_query_flags_paging_and_sorting() -> None:
    assert flag("a", "true") is True and flag("a", "false") is False and flag("a", None) is False
    assert flag("a", "True") is True
    with pytest.raises(CamundaError):
        flag("a", "maybe")
    assert paging(None, None, 1000) == (0, 1000) and paging(5, 10, 1000) == (5, 10) and paging(0, 5000, 1000)[1] == 1000
    with pytest.raises(CamundaError):
        paging(-1, None, 10)
    allowed = {"created": "created"}
    assert sort_order(None, None, allowed) == (None, False)
    assert sort_order("created", "desc", allowed) == ("created", True)
    for by, order in (("created", None), ("name", "asc"), ("created", "up")):
        with pytest.raises(CamundaError):
            sort_order(by, order, allowed)
