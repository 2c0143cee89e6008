"""Tasks sorted by a column that may be empty (due date, assignee) come out in the same order on SQLite and on
PostgreSQL: the empty ones after every value, and first when the order is reversed. SQLite puts NULL first in an
ascending order, PostgreSQL last; a client paging through "the most urgent first" got the tasks without a deadline
first on one database and last on the other."""
from __future__ import annotations

from typing import Any

import httpx

from tests.api.test_supervision import DIAGRAM, start
from tests.support import Api


def _engine_rest(api: Api) -> httpx.Client:
    return httpx.Client(base_url=api.server.url + "/engine-rest", timeout=30,
                        headers={"Authorization": f"Bearer {api.token('admin', admin=True)}"})


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    r = client.get("/task", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()]


def test_tasks_without_a_deadline_or_an_assignee_sort_last_and_first_in_reverse(api: Api) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 2)
    dated = start(api, "joint", 2)  # due in five days
    soonest = start(api, "named", 1)  # due in a day
    claimed = api.as_("li", "data_bureau").post(f"/tasks/{undated[1]['id']}/claim")
    assert claimed.status_code == 200, claimed.text
    by_due = [soonest[0]["id"], dated[0]["id"], dated[1]["id"], *sorted(t["id"] for t in undated)]
    with _engine_rest(api) as client:
        assert _ids(client, sortBy="dueDate", sortOrder="asc") == by_due
        assert _ids(client, sortBy="dueDate", sortOrder="desc") == list(reversed(by_due))
        assert _ids(client, sortBy="dueDate", sortOrder="asc", firstResult=3, maxResults=2) == by_due[3:]
        unassigned = sorted(t["id"] for t in (undated[0], *dated, *soonest))
        by_assignee = [undated[1]["id"], *unassigned]
        assert _ids(client, sortBy="assignee", sortOrder="asc") == by_assignee
        assert _ids(client, sortBy="assignee", sortOrder="desc") == list(reversed(by_assignee))
