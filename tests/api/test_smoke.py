from __future__ import annotations

from tests.support import Api


def test_start_review_complete(api: Api) -> None:
    inst = api.start("review", {"project_name": "数据平台", "budget_wan": 120}, business_key="P-1")
    assert [t["element_id"] for t in inst["open_tasks"]] == ["review_task"]
    out = api.complete(inst["id"], "review_task", {"decision": "pass"})
    assert [t["element_id"] for t in out["next_tasks"]] == ["approve_task"]
