"""/metrics: open on a service that is not exposed, behind GOVFLOW_METRICS_TOKEN when it is set."""
from __future__ import annotations

from pathlib import Path

import httpx

from service.clock import FrozenClock
from tests.support import FIXTURES, T0, Api, Server, make_settings


def test_metrics_without_a_token_setting_are_served(api: Api) -> None:
    r = httpx.get(api.server.url + "/metrics")
    assert r.status_code == 200 and "govflow_http_requests_total" in r.text


def test_metrics_token_protects_metrics(tmp_path: Path, database_url: str | None) -> None:
    server = Server(make_settings(tmp_path, database_url, FIXTURES, metrics_token="scrape-me-please"), FrozenClock(T0))
    server.start()
    try:
        url = server.url + "/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me-please"}):
            r = httpx.get(url, headers=headers)
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
            assert "GOVFLOW_METRICS_TOKEN" in r.json()["detail"]
        r = httpx.get(url, headers={"Authorization": "Bearer scrape-me-please"})
        assert r.status_code == 200 and "govflow_http_requests_total" in r.text
        assert httpx.get(server.url + "/healthz").status_code == 200  # probes stay open
    finally:
        server.stop()
