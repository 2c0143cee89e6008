"""Every app a process creates shares the routes, prepared once: each request still finds its own app's context
(database, settings) through the request."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi import routing

from service.api import deps
from service.app import create_app
from tests.conftest import _server
from tests.support import FIXTURES, Api, make_settings


def _app_with(tmp_path: Path, name: str, *files: str) -> Api:
    """An app on its own SQLite database (on either suite: the test is of the app, not of the database)."""
    bpmn = tmp_path / name / "bpmn"
    bpmn.mkdir(parents=True)
    for file in files:
        shutil.copy(FIXTURES / file, bpmn / file)
    server = _server(tmp_path / name, None, bpmn)
    server.start()
    return Api(server)


def test_two_apps_in_one_process_answer_from_their_own_database_without_preparing_the_routes_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _app_with(tmp_path, "first", "review.bpmn", "review.dmn")
    try:
        assert [d["key"] for d in first.admin.get("/process-definitions").json()] == ["review"]
        mine = first.start("review", {"project_name": "x", "budget_wan": 10})
        assert first.admin.get(f"/process-instances/{mine['id']}").status_code == 200
        prepared: list[str] = []
        original = routing._EffectiveRouteContext.from_api_route.__func__  # type: ignore[attr-defined]

        def counting(cls: type, *, original_route: routing.APIRoute, include_context: object) -> object:
            prepared.append(original_route.path)
            return original(cls, original_route=original_route, include_context=include_context)

        monkeypatch.setattr(routing._EffectiveRouteContext, "from_api_route", classmethod(counting))
        second = _app_with(tmp_path, "second", "wait_a_day.bpmn")
        try:
            assert [d["key"] for d in second.admin.get("/process-definitions").json()] == ["wait_a_day"]
            assert [d["key"] for d in first.admin.get("/process-definitions").json()] == ["review"]
            started = second.start("wait_a_day", {})
            assert first.admin.get(f"/process-instances/{started['id']}").status_code == 404
            assert second.admin.get(f"/process-instances/{started['id']}").status_code == 200
            assert second.admin.get(f"/process-instances/{mine['id']}").status_code == 404
            assert prepared == []
        finally:
            second.close()
            second.server.stop()
    finally:
        first.close()
        first.server.stop()


def test_an_app_refuses_dependency_overrides_it_could_not_apply(tmp_path: Path) -> None:
    """The routes are shared: an override set on one app would reach none (or, set where the routes were built,
    every app). Setting one is an error, not a silent no-op."""
    app = create_app(make_settings(tmp_path, None, FIXTURES))
    with pytest.raises(TypeError, match="dependency overrides"):
        app.dependency_overrides[deps.get_principal] = lambda: None
    with pytest.raises(TypeError, match="dependency overrides"):
        app.dependency_overrides.update({deps.get_principal: lambda: None})
    assert dict(app.dependency_overrides) == {}
