"""Numbers in query parameters and ids are ASCII digits a database integer holds. "²" and "٣" are digits to
str.isdigit, and int() refuses them; a number of thousands of digits is refused by int() too: each was a 500. The
projects list pages by cursor now: a page number from an old link shows the first page (tests/api/test_console.py)."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Api

ODD = ["²", "٣", "9" * 5000, "99999999999999999999"]


@pytest.fixture
def console(api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        r = client.post("/console/login", data={"credential": api.token("admin", admin=True),
                                                "next": "/console/inbox"})
        assert r.status_code == 303, r.text
        yield client


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_page_or_version_shows_the_first_page_or_the_latest_version(api: Api, console: httpx.Client,
                                                                          odd: str) -> None:
    projects = console.get("/console/projects", params={"page": odd})
    assert projects.status_code == 200 and "text/html" in projects.headers["content-type"], projects.text[:300]
    definition = console.get("/console/definitions/review", params={"version": odd})
    assert definition.status_code == 200 and "text/html" in definition.headers["content-type"]
    # a plain number that is no version: the console's own not-found page
    missing = console.get("/console/definitions/review", params={"version": "999"})
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_definition_id_is_not_found(api: Api, odd: str) -> None:
    headers = {"Authorization": f"Bearer {api.token('admin', admin=True)}"}
    with httpx.Client(base_url=api.server.url + "/engine-rest", headers=headers, timeout=30) as client:
        for path in (f"/process-definition/{odd}", f"/process-definition/{odd}/xml",
                     f"/process-definition/review:{odd}:1"):
            r = client.get(path)
            assert r.status_code == 404 and r.json()["type"] == "InvalidRequestException", (path[:80], r.text[:200])

