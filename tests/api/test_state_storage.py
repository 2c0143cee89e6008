"""An instance's state is a header plus one row per task; a request rewrites only what it changed."""
from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from service.db.models import InstanceTask, ProcessInstance
from service.engine.serializer import dump_state, load_parts
from service.services import state
from tests.support import Api

START = {"project_name": "x", "budget_wan": 10, "urgent": False}


def _loop(api: Api, iid: str) -> None:
    api.complete(iid, "review_task", {"decision": "revise"})
    api.complete(iid, "revise_task", {"budget_wan": 10})


def test_rows_written_per_request_do_not_grow_with_the_history(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []
    original = state.write

    def counting(*args: Any, **kwargs: Any) -> int:
        n = original(*args, **kwargs)
        written.append(n)
        return n

    monkeypatch.setattr(state, "write", counting)
    iid = api.start("review", dict(START))["id"]
    for _ in range(40):
        _loop(api, iid)
    per_loop = [written[i] + written[i + 1] for i in range(1, len(written) - 1, 2)]
    assert len(per_loop) == 40, per_loop
    assert max(per_loop[-10:]) <= max(per_loop[:5])  # flat: the 40th loop writes no more than the first ones
    with api.server.ctx.session_factory() as s:
        rows = s.scalar(select(func.count()).select_from(InstanceTask).where(InstanceTask.instance_id == iid))
        header = s.scalar(select(ProcessInstance.state_json).where(ProcessInstance.id == iid))
    assert rows > 40 * 2  # every task of the history is kept
    assert json.loads(header)["tasks"] == {} and len(header) < 4000  # the header does not grow with it
    assert api.open_elements(iid) == ["review_task"]


def test_an_instance_stored_whole_before_task_rows_is_read_and_split_on_its_next_change(api: Api) -> None:
    iid = api.start("review", dict(START))["id"]
    _loop(api, iid)
    ctx = api.server.ctx
    with ctx.session_factory() as s, s.begin():
        instance = s.get(ProcessInstance, iid)
        model = ctx.model(s, instance.definition_id)
        stored = state.load(s, iid)
        workflow = load_parts(stored["header"], [(r[0], r[1], r[3]) for r in stored["rows"]], model.spec,
                              model.subprocess_specs, None)
        whole = dump_state(workflow)  # the state as it was stored before task rows existed
        s.execute(delete(InstanceTask).where(InstanceTask.instance_id == iid))
        # as an instance stored before task rows and state tokens existed
        s.execute(update(ProcessInstance).where(ProcessInstance.id == iid).values(state_json=whole, state_token=None))
    api.server.stop()  # a restart: no engine worker holds the instance any more
    api.server.start()
    assert api.open_elements(iid) == ["review_task"]
    _loop(api, iid)
    with ctx.session_factory() as s:
        rows = s.scalar(select(func.count()).select_from(InstanceTask).where(InstanceTask.instance_id == iid))
        header = s.scalar(select(ProcessInstance.state_json).where(ProcessInstance.id == iid))
    assert rows > 0 and json.loads(header)["tasks"] == {}
    assert api.open_elements(iid) == ["review_task"]
