"""Deployment and process definitions over HTTP."""
from __future__ import annotations

from tests.support import FIXTURES, Api

REVIEW = (FIXTURES / "review.bpmn").read_bytes()
REVIEW_DMN = (FIXTURES / "review.dmn").read_bytes()


def deploy(api: Api, files: dict[str, bytes], client=None):  # type: ignore[no-untyped-def]
    client = client or api.admin
    return client.post("/deployments", files=[("files", (name, body)) for name, body in files.items()])


def test_startup_deploys_fixtures_and_lists_latest(api: Api) -> None:
    r = api.as_("reader", "data_bureau").get("/process-definitions")
    assert r.status_code == 200
    keys = {d["key"]: d["version"] for d in r.json()}
    assert keys == {"review": 1, "deadlines": 1, "wait_a_day": 1, "parallel_review": 1}


def test_definition_exposes_start_form(api: Api) -> None:
    d = api.admin.get("/process-definitions/review").json()
    form = {f["id"]: f for f in d["start_form"]}
    assert form["budget_wan"]["type"] == "decimal" and form["budget_wan"]["required"] is True
    assert form["budget_wan"]["min"] == 0
    assert form["urgent"]["default"] is False
    assert d["documentation"].startswith("A small process")


def test_identical_content_is_not_a_new_version(api: Api) -> None:
    r = deploy(api, {"review.bpmn": REVIEW, "review.dmn": REVIEW_DMN})
    assert r.status_code == 201, r.text
    assert r.json()["definitions"] == [] and r.json()["unchanged"] == ["review"]
    assert [v["version"] for v in api.admin.get("/process-definitions/review/versions").json()] == [1]


def test_changed_content_is_a_new_version_and_running_instances_stay(api: Api) -> None:
    old = api.start("review", {"project_name": "a", "budget_wan": 5}, business_key="V-1")
    changed = REVIEW.replace("数据局审核".encode(), "数据局初审".encode())
    r = deploy(api, {"review.bpmn": changed, "review.dmn": REVIEW_DMN})
    assert r.status_code == 201, r.text
    assert [(d["key"], d["version"]) for d in r.json()["definitions"]] == [("review", 2)]
    new = api.start("review", {"project_name": "b", "budget_wan": 5}, business_key="V-2")
    assert old["definition_version"] == 1 and new["definition_version"] == 2
    assert api.open_task(old["id"], "review_task")["name"] == "数据局审核"
    assert api.open_task(new["id"], "review_task")["name"] == "数据局初审"
    xml_v1 = api.admin.get("/process-definitions/review/xml", params={"version": 1})
    assert xml_v1.status_code == 200 and "数据局审核" in xml_v1.text
    assert "数据局初审" in api.admin.get("/process-definitions/review/xml").text
    # the old instance still runs to its end on version 1
    api.complete(old["id"], "review_task", {"decision": "reject"})
    assert api.instance(old["id"])["end_event"] == "end_rejected"


def test_a_dmn_change_alone_is_a_new_version(api: Api) -> None:
    changed = REVIEW_DMN.replace(b"&gt;= 100", b"&gt;= 200").replace(b"&lt; 100", b"&lt; 200")
    r = deploy(api, {"review.bpmn": REVIEW, "review.dmn": changed})
    assert [(d["key"], d["version"]) for d in r.json()["definitions"]] == [("review", 2)]


def _assert_refused(api: Api, files: dict[str, bytes], file: str, element_id: str | None,
                    line: bool, words: str) -> None:
    before = api.admin.get("/process-definitions/review/versions").json()
    r = deploy(api, files)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["file"] == file
    assert body.get("element_id") == element_id
    assert ("line" in body) is line
    assert words in body["detail"]
    assert api.admin.get("/process-definitions/review/versions").json() == before


def test_malformed_xml_is_refused_with_line(api: Api) -> None:
    _assert_refused(api, {"review.bpmn": REVIEW[:-40], "review.dmn": REVIEW_DMN}, "review.bpmn", None, True,
                    "not well-formed")


def test_bad_condition_is_refused_naming_the_gateway(api: Api) -> None:
    bad = REVIEW.replace(b'decision == "revise"', b"${decision == 'revise'}")
    _assert_refused(api, {"review.bpmn": bad, "review.dmn": REVIEW_DMN}, "review.bpmn", "gw_decision", True,
                    "not a valid expression")


def test_missing_decision_is_refused(api: Api) -> None:
    bad = REVIEW.replace(b'camunda:decisionRef="review_track"', b'camunda:decisionRef="nope"')
    _assert_refused(api, {"review.bpmn": bad, "review.dmn": REVIEW_DMN}, "review.bpmn", "decide_track", True,
                    "No DMN")


def test_dangerous_expression_is_refused(api: Api) -> None:
    bad = REVIEW.replace(b'decision == "reject"', b'__import__("os").system("true") == 0')
    _assert_refused(api, {"review.bpmn": bad, "review.dmn": REVIEW_DMN}, "review.bpmn", "gw_decision", True,
                    "invalid variable name")


def test_unsupported_elements_are_refused(api: Api) -> None:
    end = b"\n    <bpmn:endEvent id=\"end_notice\""
    untyped = REVIEW.replace(b"<bpmn:userTask id=\"overdue_notice\"", b"<bpmn:task id=\"overdue_notice\"").replace(
        b"</bpmn:userTask>" + end, b"</bpmn:task>" + end)
    _assert_refused(api, {"review.bpmn": untyped, "review.dmn": REVIEW_DMN}, "review.bpmn", "overdue_notice", True,
                    "untyped")


def test_bad_timer_is_refused(api: Api) -> None:
    bad = REVIEW.replace(b">P15D<", b">P15X<")
    _assert_refused(api, {"review.bpmn": bad, "review.dmn": REVIEW_DMN}, "review.bpmn", "filing_overdue", True,
                    "timer")


def test_schema_error_is_refused_with_line(api: Api) -> None:
    bad = REVIEW.replace(b'<bpmn:sequenceFlow id="f_file_end" sourceRef="file_contract"',
                         b'<bpmn:sequenceFlow id="f_file_end"')
    _assert_refused(api, {"review.bpmn": bad, "review.dmn": REVIEW_DMN}, "review.bpmn", None, True, "sourceRef")


def test_only_admins_deploy(api: Api) -> None:
    r = deploy(api, {"review.bpmn": REVIEW}, client=api.as_("someone", "data_bureau"))
    assert r.status_code == 403
    assert r.json()["type"] == "/problems/forbidden"
    assert api.anonymous().post("/deployments", files=[("files", ("review.bpmn", REVIEW))]).status_code == 401


def test_a_diagram_not_in_utf8_is_refused_naming_the_file(api: Api) -> None:
    """lxml reads a GBK diagram (its declaration says so), but the service keeps a diagram's text as UTF-8:
    refused (422), not a 500; the same for its decision tables."""
    gbk = REVIEW.decode().replace('encoding="UTF-8"', 'encoding="GBK"').encode("gbk")
    assert gbk != REVIEW
    r = deploy(api, {"review.bpmn": gbk, "review.dmn": REVIEW_DMN})
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"] and "review.bpmn" in r.json()["detail"], r.text
    utf16 = REVIEW_DMN.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    r = deploy(api, {"review.bpmn": REVIEW, "review.dmn": utf16})
    assert r.status_code == 422 and "review.dmn" in r.json()["detail"], r.text


def test_unknown_definition_is_404(api: Api) -> None:
    for path in ("/process-definitions/nope", "/process-definitions/nope/versions", "/process-definitions/nope/xml"):
        r = api.admin.get(path)
        assert r.status_code == 404 and r.json()["status"] == 404
    assert api.admin.get("/process-definitions/review/xml", params={"version": 9}).status_code == 404


def test_overlapping_decision_rows_are_reported_at_deploy(api: Api) -> None:
    from tests.support import FIXTURES

    bpmn = (FIXTURES / "review.bpmn").read_bytes().replace(b'id="review"', b'id="review_overlap"')
    dmn = (FIXTURES / "review.dmn").read_bytes()
    clean = api.admin.post("/deployments", files=[("files", ("review_overlap.bpmn", bpmn)),
                                                 ("files", ("review.dmn", dmn))])
    assert clean.status_code == 201 and clean.json()["warnings"] == [], clean.text
    # "< 100" widened to "<= 100": at 100 both rows match, and under FIRST the first one wins
    overlapping = dmn.replace(b"&lt; 100", b"&lt;= 100")
    r = api.admin.post("/deployments", files=[("files", ("review_overlap.bpmn", bpmn)),
                                             ("files", ("review.dmn", overlapping))])
    assert r.status_code == 201, r.text
    warnings = r.json()["warnings"]
    assert len(warnings) == 1 and "rows 1 and 2" in warnings[0] and "Decimal('100')" in warnings[0], warnings
