"""The schema the migrations build is the one the models describe (service/db/models.py), on the database the suite
runs on; and the newest index migration goes down and up again over rows."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.db.migrate import head_revision
from service.db.models import INCIDENT, Base
from service.db.session import make_engine
from service.webhook_sender import WebhookSender
from tests.api.test_scale_out import new_database
from tests.conftest import served
from tests.support import Api, migrate_to

REVIEW = {"project_name": "x", "budget_wan": 10}


def test_the_migrated_schema_is_the_models(api: Api) -> None:
    """A column, index, table or server default added to the models without a migration (or the other way round)
    is a difference: a new database and a migrated old one would not be the same."""
    with api.server.ctx.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], differences


def indexes_of(url: str, table: str) -> dict[str, list[str | None]]:
    """The table's named indexes and their columns, as the database at url has them."""
    engine = make_engine(url)
    try:
        return {ix["name"]: list(ix["column_names"]) for ix in inspect(engine).get_indexes(table)
                if ix["name"] is not None}
    finally:
        engine.dispose()


def _task_indexes(url: str) -> dict[str, list[str | None]]:
    return indexes_of(url, "human_task")


def insert_orphan_candidate(url: str, columns: dict[str, str]) -> None:
    """A task_candidate row whose task does not exist, written with SQLite's foreign keys off (they may have been)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            row = {"task_id": "t-orphan", "kind": "group", "value": "g", **columns}
            connection.exec_driver_sql(f"INSERT INTO task_candidate ({', '.join(row)}) "
                                       f"VALUES ({', '.join('?' for _ in row)})", tuple(row.values()))
            connection.commit()
    finally:
        engine.dispose()


def _url_of(api: Api) -> str:
    """The database URL the service runs on (the SQLite file it made, when it was given none)."""
    return str(api.server.ctx.engine.url.render_as_string(hide_password=False))


def _project_tasks(api: Api, business_key: str) -> list[dict[str, object]]:
    r = api.admin.get("/tasks", params={"business_key": business_key})
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_the_project_inbox_index_goes_down_and_up_over_rows(tmp_path: Path, database_url: str | None) -> None:
    """Migration 0010: the single-column business_key index of human_task becomes the inbox's (business_key,
    status, created_at, id), and back; the process_key index stays; the open tasks are listed by project before
    and after."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = _url_of(api)
            started = [api.start("review", REVIEW, business_key=f"IDX-{i}")["id"] for i in range(3)]
            before = _project_tasks(api, "IDX-1")
        assert [t["process_instance_id"] for t in before] == [started[1]]
        migrate_to(url, "0009", down=True)
        old = _task_indexes(url)
        assert old["ix_human_task_business_key"] == ["business_key"]
        assert "ix_human_task_business_key_created" not in old
        migrate_to(url, "head")
        new = _task_indexes(url)
        assert new["ix_human_task_business_key_created"] == ["business_key", "status", "created_at", "id"]
        assert "ix_human_task_business_key" not in new
        assert old["ix_human_task_process_key"] == new["ix_human_task_process_key"] == ["process_key"]
        with served(tmp_path, url) as api:
            after = _project_tasks(api, "IDX-1")
            assert after == before


def test_the_due_index_goes_down_and_up_over_rows(tmp_path: Path, database_url: str | None) -> None:
    """Migration 0011: human_task (status, due_at) becomes (status, due_at, created_at, id), the order of the
    supervision lists, and back; the open tasks due before a date are listed before and after."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = _url_of(api)
            started = [api.start("review", REVIEW, business_key=f"DUE-{i}")["id"] for i in range(3)]
            before = _tasks_with_deadlines(api)
        assert sorted(t["process_instance_id"] for t in before) == sorted(started)
        migrate_to(url, "0010", down=True)
        old = _task_indexes(url)
        assert old["ix_human_task_due"] == ["status", "due_at"] and "ix_human_task_due_created" not in old
        migrate_to(url, "head")
        new = _task_indexes(url)
        assert new["ix_human_task_due_created"] == ["status", "due_at", "created_at", "id"]
        assert "ix_human_task_due" not in new and len(new) == len(old)
        with served(tmp_path, url) as api:
            assert _tasks_with_deadlines(api) == before


def test_the_delivery_status_index_goes_down_and_up(tmp_path: Path, database_url: str | None) -> None:
    """Migration 0012: webhook_delivery (status, id), the order of a status's deliveries, newest first; and back.
    The list answers the same before and after."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = _url_of(api)
            r = api.admin.post("/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["instance.started"],
                                                  "secret": "a-receivers-shared-secret"})
            assert r.status_code == 201, r.text
            api.start("review", REVIEW, business_key="DLV-1")
            WebhookSender(api.server.ctx).run_until_idle()  # refused: pending, to be tried again later
            before = api.admin.get("/webhooks/deliveries", params={"status": "pending"}).json()
        assert len(before) == 1
        migrate_to(url, "0011", down=True)
        assert "ix_webhook_delivery_status_id" not in indexes_of(url, "webhook_delivery")
        migrate_to(url, "head")
        assert indexes_of(url, "webhook_delivery")["ix_webhook_delivery_status_id"] == ["status", "id"]
        with served(tmp_path, url) as api:
            assert api.admin.get("/webhooks/deliveries", params={"status": "pending"}).json() == before


def _tasks_with_deadlines(api: Api) -> list[dict[str, object]]:
    r = api.admin.get("/tasks", params={"status": "open", "due_before": "2099-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_the_migrations_go_down_to_0003_and_up_again_over_a_running_instance(tmp_path: Path,
                                                                             database_url: str | None) -> None:
    """Every migration from 0004 on goes down and up again over a running instance, which is then worked on as
    before. On SQLite several of them rebuild a table; going down from 0006 (process_instance rebuilt) failed
    with "FOREIGN KEY constraint failed" as soon as any task or audit row referred to an instance
    (migrations/env.py now follows SQLite's procedure for it)."""
    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = _url_of(api)
            instance = api.start("review", REVIEW, business_key="DOWN-UP")
        migrate_to(url, "0003", down=True)
        migrate_to(url, "head")
        with served(tmp_path, url) as api:
            listed = api.admin.get("/process-instances", params={"business_key": "DOWN-UP"}).json()["items"]
            assert [i["id"] for i in listed] == [instance["id"]]
            task = instance["open_tasks"][0]["id"]
            done = api.admin.post(f"/tasks/{task}/complete", json={"variables": {"decision": "pass"}})
            assert done.status_code == 200, done.text
            history = api.admin.get(f"/process-instances/{instance['id']}/history", params={"verify": True})
            assert history.status_code == 200 and history.json()["verified"] is True, history.text[:300]


def test_a_migration_that_would_leave_broken_foreign_keys_changes_nothing(tmp_path: Path,
                                                                         database_url: str | None) -> None:
    """On SQLite the migrations run with foreign keys off (migrations/env.py) and are checked before the commit.
    alembic commits each SQLite migration on its own, so the check came after they were stored: a row whose
    foreign key points nowhere made the command fail, yet the database was already at the lower revision.
    Expected: the command fails naming the table, and the database is where it was (foreign keys on again)."""
    if database_url is not None:
        return  # PostgreSQL enforces its foreign keys throughout: no such row can be there
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    migrate_to(url, "head")
    insert_orphan_candidate(url, {"status": "open", "created_at": "2026-01-01 00:00:00.000000", "claimed": 0})
    try:
        migrate_to(url, "0008", down=True)
    except RuntimeError as e:
        assert "task_candidate" in str(e) and "nothing was changed" in str(e), e
    else:
        raise AssertionError("the migration went through")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head_revision()
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_the_incident_index_goes_down_and_up(tmp_path: Path, database_url: str | None) -> None:
    """Migration 0014: waiting_event (kind, due_at, id) WHERE attempts > 0, the incidents alone; and back. The
    index's condition is read from the database's own definition of it (alembic's comparison of the schema with the
    models does not compare a partial index's condition)."""
    def condition(url: str) -> str:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                if engine.dialect.name == "sqlite":
                    sql = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = "
                                                     "'ix_waiting_event_incident'").scalar_one()
                else:
                    sql = connection.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                                     "'ix_waiting_event_incident'").scalar_one()
            return str(sql).split(" WHERE ", 1)[1].strip("() ")
        finally:
            engine.dispose()

    with new_database(tmp_path, database_url) as url:
        with served(tmp_path, url) as api:
            url = _url_of(api)
            api.start("review", REVIEW, business_key="INC-IX-1")
        assert indexes_of(url, "waiting_event")["ix_waiting_event_incident"] == ["kind", "due_at", "id"]
        assert condition(url) == INCIDENT == "attempts > 0"  # the models' and the migration's: the list's too
        migrate_to(url, "0013", down=True)
        assert "ix_waiting_event_incident" not in indexes_of(url, "waiting_event")
        migrate_to(url, "head")
        assert indexes_of(url, "waiting_event")["ix_waiting_event_incident"] == ["kind", "due_at", "id"]
        assert condition(url) == INCIDENT
        with served(tmp_path, url) as api:
            assert api.admin.get("/incidents").json() == []
