"""The floor the service is measured against: the same paths and JSON as govflow's REST cycle (start, inbox,
claim, complete) on the same uvicorn, with one database connection doing the few statements the cycle needs,
and no engine, no audit trail, no outbox. What govflow costs above this is what its guarantees cost.

    FLOOR_DATABASE_URL=sqlite:////tmp/floor.db .venv/bin/python -m uvicorn bench.floor:app --port 8001
"""
from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

SECRET = os.environ.get("FLOOR_JWT_SECRET", "bench-secret-of-at-least-32-bytes-length")
URL = os.environ.get("FLOOR_DATABASE_URL", "sqlite:////tmp/govflow-floor.db")
NEXT = {"review": ("approve", "development_reform"), "approve": None}
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS instance (id VARCHAR(36) PRIMARY KEY, business_key VARCHAR(200), status VARCHAR(20),"
    " started_at VARCHAR(40))",
    "CREATE TABLE IF NOT EXISTS task (id VARCHAR(36) PRIMARY KEY, instance_id VARCHAR(36), business_key VARCHAR(200),"
    " element_id VARCHAR(50), candidate_group VARCHAR(50), assignee VARCHAR(200), status VARCHAR(20),"
    " created_at VARCHAR(40))",
    "CREATE INDEX IF NOT EXISTS ix_task_inbox ON task (candidate_group, status, business_key)",
]


class _Database:
    """One connection, one statement batch at a time."""

    def __init__(self, url: str) -> None:
        self.lock = threading.Lock()
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(url.split("///", 1)[1], check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
            self.mark = "%s"
        for statement in SCHEMA:
            self.conn.execute(statement)

    def run(self, statements: list[tuple[str, tuple[Any, ...]]], fetch: bool = False) -> list[Any]:
        with self.lock:
            rows: list[Any] = []
            self.conn.execute("BEGIN")
            try:
                for sql, params in statements:
                    cursor = self.conn.execute(sql.replace("?", self.mark), params)
                    if fetch:
                        rows = list(cursor.fetchall())
                self.conn.execute("COMMIT")
            except Exception:
                self.conn.execute("ROLLBACK")
                raise
            return rows


db = _Database(URL)
app = FastAPI()


def _user(authorization: str | None) -> dict[str, Any]:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401)
    try:
        return dict(jwt.decode(authorization[7:], SECRET, algorithms=["HS256"], options={"verify_iss": False}))
    except jwt.PyJWTError:
        raise HTTPException(401) from None


class StartIn(BaseModel):
    process_key: str
    business_key: str | None = None
    variables: dict[str, Any] = {}


class CompleteIn(BaseModel):
    variables: dict[str, Any] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _task(task_id: str, instance_id: str, business_key: str | None, element: str, group: str,
          assignee: str | None = None) -> dict[str, Any]:
    return {"id": task_id, "name": element, "element_id": element, "process_instance_id": instance_id,
            "process_key": "approval", "business_key": business_key, "candidate_groups": [group],
            "candidate_users": [], "assignee": assignee, "status": "open", "created_at": _now(), "due_at": None}


@app.post("/api/v1/process-instances", status_code=201)
def start(body: StartIn, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    user = _user(authorization)
    instance_id, task_id, now = str(uuid.uuid4()), str(uuid.uuid4()), _now()
    db.run([("INSERT INTO instance VALUES (?, ?, 'running', ?)", (instance_id, body.business_key, now)),
            ("INSERT INTO task VALUES (?, ?, ?, 'review', 'data_bureau', NULL, 'open', ?)",
             (task_id, instance_id, body.business_key, now))])
    return {"id": instance_id, "process_key": body.process_key, "business_key": body.business_key,
            "status": "running", "started_by": user["sub"], "variables": body.variables,
            "open_tasks": [_task(task_id, instance_id, body.business_key, "review", "data_bureau")]}


@app.get("/api/v1/tasks")
def inbox(candidate_group: str, business_key: str | None = None,
          authorization: str | None = Header(default=None)) -> dict[str, Any]:
    _user(authorization)
    rows = db.run([("SELECT id, instance_id, business_key, element_id, candidate_group, assignee FROM task "
                    "WHERE candidate_group = ? AND status = 'open' AND business_key = ? ORDER BY created_at LIMIT 51",
                    (candidate_group, business_key))], fetch=True)
    return {"items": [_task(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows], "next_cursor": None}


@app.post("/api/v1/tasks/{task_id}/claim")
def claim(task_id: str, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    user = _user(authorization)
    db.run([("UPDATE task SET assignee = ? WHERE id = ? AND assignee IS NULL", (user["sub"], task_id))])
    return {"id": task_id, "assignee": user["sub"], "status": "open"}


@app.post("/api/v1/tasks/{task_id}/complete")
def complete(task_id: str, body: CompleteIn | None = None,
             authorization: str | None = Header(default=None)) -> dict[str, Any]:
    _user(authorization)
    rows = db.run([("SELECT instance_id, business_key, element_id FROM task WHERE id = ?", (task_id,))], fetch=True)
    if not rows:
        raise HTTPException(404)
    instance_id, business_key, element = rows[0]
    following = NEXT.get(element)
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("UPDATE task SET status = 'completed' WHERE id = ? AND status = 'open'", (task_id,))]
    next_tasks = []
    if following:
        new_id = str(uuid.uuid4())
        statements.append(("INSERT INTO task VALUES (?, ?, ?, ?, ?, NULL, 'open', ?)",
                           (new_id, instance_id, business_key, following[0], following[1], _now())))
        next_tasks.append(_task(new_id, instance_id, business_key, following[0], following[1]))
    else:
        statements.append(("UPDATE instance SET status = 'completed' WHERE id = ?", (instance_id,)))
    db.run(statements)
    return {"process_instance_id": instance_id, "status": "running" if following else "completed",
            "end_event": None if following else "end_completed", "next_tasks": next_tasks}


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/noop")
def noop(authorization: str | None = Header(default=None)) -> dict[str, Any]:
    """What every request does before its own work: a token checked, one hop to a thread, a JSON answer
    (`python -m bench overhead`)."""
    user = _user(authorization)
    return {"user": user["sub"], "groups": sorted(user.get("groups", []))}
