"""Prepared statements (service/db/prepared.py) run the hot requests' SQL without SQLAlchemy's execution machinery.
What they must keep of it, on SQLite and PostgreSQL: the same values in and out (JSON, time zones, booleans,
NULLs), SQLAlchemy's error classes (a duplicate key is an IntegrityError, which the service answers with a 409)
with the transaction rolled back, the engine's statement listeners, the session's autoflush, and a refusal of
statements whose values SQLAlchemy would compute itself."""
from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from service.db.migrate import upgrade
from service.db.models import Deployment, HumanTask, ProcessDefinition, ProcessInstance
from service.db.prepared import Prepared
from service.db.session import make_engine, make_session_factory
from tests.support import Api

_T = HumanTask.__table__
_TASK_COLUMNS = ("id", "instance_id", "definition_id", "process_key", "business_key", "element_id", "name",
                 "documentation", "lane", "candidate_groups", "candidate_users", "assignee", "form_key", "status",
                 "created_at", "due_at", "due_provisional")
INSERT_TASK = Prepared(insert(_T), keys=_TASK_COLUMNS)
TASK = Prepared(select(_T).where(_T.c.id == bindparam("i")))
TASKS_OF = Prepared(select(_T.c.id, _T.c.due_provisional).where(_T.c.instance_id == bindparam("i"))
                    .order_by(_T.c.id))
CLAIM = Prepared(update(_T).where(_T.c.id == bindparam("b_id"), _T.c.assignee.is_(None)).values(assignee=bindparam("u")))
T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path, database_url: str | None) -> Iterator[Engine]:
    made = make_engine(database_url or f"sqlite:///{tmp_path}/prepared.db")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def instance_id(engine: Engine) -> str:
    """An instance (and its definition) the task rows can belong to (its definition's id in _DEFINITION)."""
    with make_session_factory(engine)() as session, session.begin():
        deployment = Deployment(source="test", deployed_by="t", deployed_at=T0)
        session.add(deployment)
        session.flush()
        definition = ProcessDefinition(key="p", version=1, content_hash="h", deployment_id=deployment.id,
                                       resource_name="p.bpmn", bpmn_xml="<x/>", dmn_resources={}, spec_json="{}",
                                       candidate_starter_groups=[], candidate_starter_users=[], created_at=T0)
        session.add(definition)
        session.flush()
        session.add(ProcessInstance(id="i-1", definition_id=definition.id, process_key="p", definition_version=1,
                                    status="running", state_json="", variables={}, version=1, started_by="t",
                                    started_at=T0, updated_at=T0))
        _DEFINITION[0] = definition.id
    return "i-1"


_DEFINITION = [0]


def _task(task_id: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": task_id, "instance_id": "i-1", "definition_id": _DEFINITION[0], "process_key": "p", "business_key": "BK-中文",
        "element_id": "review", "name": "审核", "documentation": None, "lane": None,
        "candidate_groups": ["data_bureau", "财政局"], "candidate_users": [], "assignee": None, "form_key": None,
        "status": "open", "created_at": T0, "due_at": T0 + timedelta(days=3), "due_provisional": True}
    return {**row, **changes}


def test_rows_read_and_written_are_what_sqlalchemy_reads_and_writes(engine: Engine, instance_id: str) -> None:
    factory = make_session_factory(engine)
    shanghai = timezone(timedelta(hours=8))
    with factory() as session, session.begin():
        # a time in another zone is stored as UTC, as the ORM stores it
        INSERT_TASK.execute(session, [_task("t-1"), _task("t-2", due_at=None, due_provisional=False,
                                                          created_at=T0.astimezone(shanghai))])
    with factory() as session, session.begin():
        ours = TASK.execute(session, {"i": "t-1"}).first()
        theirs = session.execute(select(_T).where(_T.c.id == "t-1")).one()
        assert ours is not None
        assert tuple(ours) == tuple(theirs)
        assert ours._mapping == dict(theirs._mapping)
        assert ours.created_at == T0 and ours.created_at.tzinfo is not None
        assert ours.candidate_groups == ["data_bureau", "财政局"] and ours.due_provisional is True
        assert ours.business_key == ours[4] == "BK-中文"
        with pytest.raises(AttributeError):
            _ = ours.no_such_column
        second = TASK.execute(session, {"i": "t-2"}).first()
        assert second is not None and second.due_at is None and second.due_provisional is False
        assert second.created_at == T0
        assert [tuple(r) for r in TASKS_OF.execute(session, {"i": instance_id}).all()] == [
            ("t-1", True), ("t-2", False)]
        assert TASK.execute(session, {"i": "none"}).first() is None
        assert TASK.execute(session, {"i": "none"}).scalar() is None


def test_rowcount_tells_a_guarded_update_that_lost(engine: Engine, instance_id: str) -> None:
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        INSERT_TASK.execute(session, [_task("t-1")])
    with factory() as session, session.begin():
        assert CLAIM.execute(session, {"b_id": "t-1", "u": "li"}).rowcount == 1
        assert CLAIM.execute(session, {"b_id": "t-1", "u": "wang"}).rowcount == 0
    with factory() as session, session.begin():
        assert session.scalar(select(_T.c.assignee).where(_T.c.id == "t-1")) == "li"


def test_a_duplicate_key_is_sqlalchemys_integrity_error_and_nothing_of_the_transaction_stays(
        engine: Engine, instance_id: str) -> None:
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        INSERT_TASK.execute(session, [_task("t-1")])
    with pytest.raises(IntegrityError), factory() as session, session.begin():
        INSERT_TASK.execute(session, [_task("t-2")])
        INSERT_TASK.execute(session, [_task("t-1")])
    with factory() as session, session.begin():  # the pool's connection is usable, and t-2 went with the rollback
        assert [r.id for r in TASKS_OF.execute(session, {"i": instance_id}).all()] == ["t-1"]


def test_the_engines_listeners_see_each_statement(engine: Engine, instance_id: str) -> None:
    seen: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, executemany))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with make_session_factory(engine)() as session, session.begin():
            INSERT_TASK.execute(session, [_task("t-1"), _task("t-2")])
            TASK.execute(session, {"i": "t-1"})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statements = [(s, many) for s, many in seen if not s.startswith("BEGIN")]
    assert [(s.split()[0], many) for s, many in statements] == [("INSERT", True), ("SELECT", False)]


def test_pending_orm_changes_are_flushed_first(engine: Engine, instance_id: str) -> None:
    with make_session_factory(engine)() as session, session.begin():
        task = HumanTask(**_task("t-orm"))
        session.add(task)
        found = TASK.execute(session, {"i": "t-orm"}).first()
        assert found is not None and found.name == "审核"


def test_statements_whose_values_sqlalchemy_computes_are_refused(engine: Engine, instance_id: str) -> None:
    without_default = Prepared(insert(_T), keys=[c for c in _TASK_COLUMNS if c != "due_provisional"])
    expanding = Prepared(select(_T.c.id).where(_T.c.id.in_(bindparam("ids", expanding=True))))
    with make_session_factory(engine)() as session, session.begin():
        with pytest.raises(ValueError, match="Python-side column defaults"):
            without_default.execute(session, [_task("t-1")])
        with pytest.raises(ValueError, match="expanding IN"):
            expanding.execute(session, {"ids": ["t-1"]})



def test_a_value_missing_or_refused_by_its_type_is_sqlalchemys_statement_error(engine: Engine,
                                                                              instance_id: str) -> None:
    """Not a NULL for a forgotten value (a claim that loses against nobody), and not a bare ValueError (which
    the service would answer with a 500): the StatementError SQLAlchemy raises, answered with a 422."""
    with make_session_factory(engine)() as session, session.begin():
        INSERT_TASK.execute(session, [_task("t-1")])
        with pytest.raises(StatementError, match="bind parameter 'u'"):
            CLAIM.execute(session, {"b_id": "t-1"})
        with pytest.raises(StatementError, match="naive datetime") as refused:
            INSERT_TASK.execute(session, [_task("t-2", created_at=datetime(2026, 3, 1))])
        assert isinstance(refused.value.orig, ValueError)
    with make_session_factory(engine)() as session, session.begin():
        found = TASK.execute(session, {"i": "t-1"}).first()
        assert found is not None and found.assignee is None


def test_rows_pickle_and_executemany_inserts_send_the_sql_sqlalchemy_sends(engine: Engine, instance_id: str) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append(statement)

    with make_session_factory(engine)() as session, session.begin():
        INSERT_TASK.execute(session, [_task("t-1")])
        row = TASK.execute(session, {"i": "t-1"}).first()
        assert row is not None
        copy = pickle.loads(pickle.dumps(row))
        assert copy == row and copy.name == row.name and copy._asdict() == row._mapping
        event.listen(engine, "after_cursor_execute", record)
        try:
            # rows of given columns: an executemany, without the RETURNING of the key PostgreSQL would add to one row
            Prepared(insert(Deployment.__table__), keys=("source", "deployed_by", "deployed_at")).execute(
                session, [{"source": "a", "deployed_by": "t", "deployed_at": T0}])
        finally:
            event.remove(engine, "after_cursor_execute", record)
    assert len(seen) == 1 and "RETURNING" not in seen[0].upper(), seen


def test_a_stored_value_that_does_not_read_is_a_logged_server_error(api: Api,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Not a 422 that blames the request: a stored value its column type cannot convert (a corrupt row) is the
    service's error, answered 500 and logged, on the prepared reads (a task, the common inbox) as on the general
    query. PostgreSQL refuses such a value when it is written."""
    api.start("review", {"project_name": "x", "budget_wan": 30}, business_key="R-1")
    [task] = api.admin.get("/tasks").json()["items"]
    corrupt = text("UPDATE human_task SET candidate_groups = '[not json'")
    if api.server.ctx.engine.dialect.name != "sqlite":
        with pytest.raises(DBAPIError), api.server.ctx.engine.begin() as connection:
            connection.execute(corrupt)
        return
    with api.server.ctx.engine.begin() as connection:
        connection.execute(corrupt)
    for path in (f"/tasks/{task['id']}", "/tasks?candidate_group=data_bureau", "/tasks"):
        caplog.clear()
        r = api.admin.get(path)
        assert r.status_code == 500 and r.json()["type"] == "/problems/internal", (path, r.text)
        assert any(record.levelname == "ERROR" for record in caplog.records), path
