"""Property-based: whatever JSON a client sends to the endpoints that take variables, the answer is never a
5xx, and a refused request changes nothing."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Api

# JSON the way a client could write it, including what Python's json module accepts beyond the standard
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["typename", "Decimal", "2026-02-30", "P99999999Y", "pass", "reject", "\ud800", "${x}"]),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["typename", "decision", "budget_wan", "project_name",
                                                         "value", "__class__", "signed_on"]))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=25)
bodies = st.one_of(values, st.dictionaries(keys, values, max_size=5),
                   st.fixed_dictionaries({"variables": st.dictionaries(keys, values, max_size=5)}))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _raw(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


def _count(api: Api) -> int:
    return len(api.admin.get("/process-instances", params={"limit": 200}).json()["items"])


def test_starting_with_arbitrary_json_never_fails_the_server(api: Api) -> None:
    client = api.as_("oa", "applicant")
    before = _count(api)
    started = {"n": 0}

    @FUZZ
    @given(body=bodies, key=st.sampled_from(["review", "parallel_review", "deadlines", "nope"]))
    def run(body: Any, key: str) -> None:
        if isinstance(body, dict):
            body = {"process_key": key, **body}
        r = client.post("/process-instances", content=_raw(body), headers={"Content-Type": "application/json"})
        assert r.status_code < 500, r.text
        if r.status_code == 201:
            started["n"] += 1

    run()
    assert _count(api) == before + started["n"]


def test_completing_with_arbitrary_json_never_fails_the_server(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="FUZZ")
    client = api.as_("li", "data_bureau")

    @FUZZ
    @given(body=bodies)
    def run(body: Any) -> None:
        task = [t for t in api.instance(inst["id"])["open_tasks"]]
        if not task:
            return
        r = client.post(f"/tasks/{task[0]['id']}/complete", content=_raw(body),
                        headers={"Content-Type": "application/json"})
        assert r.status_code < 500, r.text

    run()
    r = api.admin.get(f"/process-instances/{inst['id']}/history", params={"verify": "true"})
    assert r.json()["verified"] is True


def test_messages_with_arbitrary_json_never_fail_the_server(api: Api) -> None:
    inst = api.start("parallel_review", {"project_name": "x"}, business_key="FUZZ-M")
    for element in ("funding_review", "technical_review"):
        task = api.open_task(inst["id"], element)
        group = task["candidate_groups"][0]
        api.as_(f"{group}_user", group).post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})

    @FUZZ
    @given(variables=st.one_of(values, st.dictionaries(keys, values, max_size=5)),
           name=st.sampled_from(["contract_signed", "nope", ""]))
    def run(variables: Any, name: str) -> None:
        body = {"name": name, "business_key": "FUZZ-M", "variables": variables}
        r = api.admin.post("/messages", content=_raw(body), headers={"Content-Type": "application/json"})
        assert r.status_code < 500, r.text

    run()
