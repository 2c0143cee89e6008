"""Tables. The workflow state is one row per instance; everything lists read is a projection
kept in step with it in the same transaction."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from service.text import check_storable


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        from datetime import UTC

        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Checked(TypeDecorator[str]):
    """A text bound only if the database can keep it: no NUL, valid UTF-8 (NotStorable, service/text.py). As it
    is, the type of a value a text column is compared with: LOOKUP."""

    impl = String
    cache_ok = True

    def _length(self) -> int | None:
        return None

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if isinstance(value, str):
            check_storable(value, self._length())
        return value


LOOKUP = _Checked()  # for a bound parameter a text column is compared with: bindparam("x", type_=LOOKUP)


class Str(_Checked):
    """VARCHAR(n) whose limits hold on SQLite too. A value it is compared with (a filter, a lookup written as an
    expression) is checked only for what no database takes in a statement, NUL and lone surrogates: a longer one
    matches nothing, as before, rather than being refused."""

    cache_ok = True  # SQLAlchemy reads it from each class itself: without it, no statement is cached

    def _length(self) -> int | None:
        return getattr(self.impl_instance, "length", None)

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return LOOKUP if operators.is_comparison(op) else self  # a concatenation may be written: checked


class LongText(_Checked):
    """TEXT for what people and diagrams write (a comment, a reason, documentation): no NUL, valid UTF-8."""

    impl = Text
    cache_ok = True


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Deployment(Base):
    __tablename__ = "deployment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Str(200))
    deployed_by: Mapped[str] = mapped_column(Str(200))
    deployed_at: Mapped[datetime]


class ProcessDefinition(Base):
    __tablename__ = "process_definition"
    __table_args__ = (
        UniqueConstraint("key", "version", name="uq_process_definition_key_version"),
        UniqueConstraint("key", "content_hash", name="uq_process_definition_key_hash"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Str(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(Str(500))
    content_hash: Mapped[str] = mapped_column(Str(64))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployment.id"))
    resource_name: Mapped[str] = mapped_column(Str(500))
    # large, and read only to run or show the diagram (AppContext.model_files selects them itself): loaded when used
    bpmn_xml: Mapped[str] = mapped_column(Text, deferred=True)
    dmn_resources: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    spec_json: Mapped[str] = mapped_column(Text, deferred=True)
    start_form: Mapped[list[Any] | None] = mapped_column(JSON)
    documentation: Mapped[str | None] = mapped_column(LongText)
    candidate_starter_groups: Mapped[list[Any]] = mapped_column(JSON)
    candidate_starter_users: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class ProcessInstance(Base):
    __tablename__ = "process_instance"
    __table_args__ = (
        Index(
            "uq_process_instance_active_business_key",
            "process_key",
            "business_key",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_process_instance_list", "process_key", "status", "id"),
        Index("ix_process_instance_ended", "status", "ended_at"),
        Index("ix_process_instance_started", "started_at", "id"),  # the list: newest first
        Index("ix_process_instance_key_started", "process_key", "started_at", "id"),
    )
    id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"), index=True)
    process_key: Mapped[str] = mapped_column(Str(200))
    definition_version: Mapped[int] = mapped_column(Integer)
    business_key: Mapped[str | None] = mapped_column(Str(200), index=True)
    status: Mapped[str] = mapped_column(Str(20))
    end_event: Mapped[str | None] = mapped_column(Str(200))
    state_json: Mapped[str] = mapped_column(Text)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    started_by: Mapped[str] = mapped_column(Str(200))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(LongText)
    # a new value with every stored change: restored workflows are cached under it
    state_token: Mapped[str | None] = mapped_column(Str(36))
    # the newest event of the audit chain: a chain that ends earlier has lost events
    audit_seq: Mapped[int | None] = mapped_column(Integer)
    audit_head: Mapped[str | None] = mapped_column(Str(64))
    # how many waiting_event rows the instance has, written in the same statement as its state: a change of an
    # instance that waited on nothing need not read them
    waiting_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class InstanceTask(Base):
    """One engine task of an instance (its serialized form); the instance row holds the rest of the state.
    A request rewrites only the tasks it changed, so its cost does not grow with the instance's history."""

    __tablename__ = "instance_task"
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instance.id"), primary_key=True)
    task_id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(Str(36))  # "" for the process, else the sub-process task's id
    seq: Mapped[int] = mapped_column(Integer)  # creation order: a task is restored after its parent
    body: Mapped[str] = mapped_column(Text)


class HumanTask(Base):
    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_human_task_status_created", "status", "created_at", "id"),
        Index("ix_human_task_instance", "instance_id", "status"),
        Index("ix_human_task_assignee_created", "assignee", "status", "created_at", "id"),  # an assignee's inbox
        Index("ix_human_task_business_key_created", "business_key", "status", "created_at", "id"),  # a project's
        Index("ix_human_task_due_created", "status", "due_at", "created_at", "id"),  # overdue and due soon
    )
    id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instance.id"))
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"))
    process_key: Mapped[str] = mapped_column(Str(200), index=True)
    business_key: Mapped[str | None] = mapped_column(Str(200))
    element_id: Mapped[str] = mapped_column(Str(200))
    name: Mapped[str] = mapped_column(Str(500))
    documentation: Mapped[str | None] = mapped_column(LongText)
    lane: Mapped[str | None] = mapped_column(Str(200))
    candidate_groups: Mapped[list[Any]] = mapped_column(JSON)
    candidate_users: Mapped[list[Any]] = mapped_column(JSON)
    assignee: Mapped[str | None] = mapped_column(Str(200))
    form_key: Mapped[str | None] = mapped_column(Str(500))
    status: Mapped[str] = mapped_column(Str(20))  # open | completed | cancelled
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    due_provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(Str(200))
    # the task's own record: what was submitted on it, the reviewer's opinion, and what it wrote to the process
    submitted: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(LongText)
    # why the task was opened again (sent back to its step, withdrawn by its completer), and on the task that was
    # sent back or taken back, what replaced it: {kind, by, at, comment, task_id, element_id}
    reopened: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    superseded: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TaskCandidate(Base):
    """One row per (task, group or user) the task is offered to, with the task's status and creation time kept on
    it: a group's inbox is one range of ix_task_candidate_inbox, in the inbox's order, whatever other groups have
    open and however many tasks the group closed before (every change of a task's status changes its rows too).
    Whether it is claimed and its due date are kept too: the tasks offered to a department and claimed by no one
    are a range of ix_task_candidate_unclaimed in creation order (the inbox an OA system written for Camunda reads,
    /engine-rest/task?candidateGroup=…) and of ix_task_candidate_offered the most urgent first (the console's
    inbox, counted there without reading the tasks)."""

    __tablename__ = "task_candidate"
    __table_args__ = (Index("ix_task_candidate_inbox", "kind", "value", "status", "created_at", "task_id"),
                      Index("ix_task_candidate_unclaimed", "kind", "value", "status", "claimed", "created_at",
                            "task_id"),
                      Index("ix_task_candidate_offered", "kind", "value", "status", "claimed", "due_at", "created_at",
                            "task_id"))
    task_id: Mapped[str] = mapped_column(ForeignKey("human_task.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(Str(10), primary_key=True)  # group | user
    value: Mapped[str] = mapped_column(Str(200), primary_key=True)
    status: Mapped[str] = mapped_column(Str(20))  # the task's
    created_at: Mapped[datetime]  # the task's
    due_at: Mapped[datetime | None]  # the task's
    claimed: Mapped[bool]  # the task has an assignee


# a waiting event whose firing failed (with kind 'timer', an incident): the condition of ix_waiting_event_incident,
# written the same way in the incidents list (a partial index serves a query whose condition implies its own, which
# a bound parameter does not show)
INCIDENT = "attempts > 0"


class WaitingEvent(Base):
    """Timers and message subscriptions an instance waits on: the scheduler and correlation read these."""

    __tablename__ = "waiting_event"
    __table_args__ = (
        Index("ix_waiting_event_due", "kind", "due_at"),
        Index("ix_waiting_event_message", "kind", "name", "process_key", "business_key"),
        Index("ix_waiting_event_instance", "instance_id"),
        # the incidents, the most overdue first: only failed timers are in it (a few rows, however many timers wait)
        Index("ix_waiting_event_incident", "kind", "due_at", "id", sqlite_where=text(INCIDENT),
              postgresql_where=text(INCIDENT)),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instance.id"))
    process_key: Mapped[str] = mapped_column(Str(200))
    business_key: Mapped[str | None] = mapped_column(Str(200))
    kind: Mapped[str] = mapped_column(Str(10))  # timer | message
    name: Mapped[str] = mapped_column(Str(500))
    element_id: Mapped[str] = mapped_column(Str(200))
    spiff_task_id: Mapped[str] = mapped_column(Str(36))
    due_at: Mapped[datetime | None]
    calendar: Mapped[str | None] = mapped_column(Str(50))
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(LongText)


class AuditEvent(Base):
    """Append-only, hash-chained per instance: each row stores the hash of the one before it."""

    __tablename__ = "audit_event"
    __table_args__ = (UniqueConstraint("instance_id", "seq", name="uq_audit_event_instance_seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(Str(36), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(Str(200))
    action: Mapped[str] = mapped_column(Str(50))
    task_id: Mapped[str | None] = mapped_column(Str(36))
    element_id: Mapped[str | None] = mapped_column(Str(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(Str(64))
    hash: Mapped[str] = mapped_column(Str(64))


class OutboxEvent(Base):
    """Events for webhooks, written in the same transaction as the change they report."""

    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_event_dispatch", "dispatched", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(Str(36), unique=True)
    type: Mapped[str] = mapped_column(Str(50))
    instance_id: Mapped[str | None] = mapped_column(Str(36))
    occurred_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)


class SchedulerLock(Base):
    __tablename__ = "scheduler_lock"
    name: Mapped[str] = mapped_column(Str(50), primary_key=True)
    owner: Mapped[str | None] = mapped_column(Str(100))
    lease_until: Mapped[datetime | None]


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscription"
    id: Mapped[str] = mapped_column(Str(36), primary_key=True)
    url: Mapped[str] = mapped_column(Str(2000))
    events: Mapped[list[Any]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(Str(500))
    created_by: Mapped[str] = mapped_column(Str(200))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one subscription: pending until delivered, or failed after the last attempt."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_delivery_subscription_event"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_status_id", "status", "id"),  # the list of one status, newest first
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscription.id"))
    event_id: Mapped[str] = mapped_column(Str(36))
    event_type: Mapped[str] = mapped_column(Str(50))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Str(20))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(LongText)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class IdempotencyRecord(Base):
    """The first response to a state-changing POST, replayed for a retry with the same key."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("principal", "key", name="uq_idempotency_principal_key"),
                      Index("ix_idempotency_expires", "expires_at"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    principal: Mapped[str] = mapped_column(Str(200))
    key: Mapped[str] = mapped_column(Str(200))
    method: Mapped[str] = mapped_column(Str(10))
    path: Mapped[str] = mapped_column(Str(2000))
    request_hash: Mapped[str] = mapped_column(Str(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(Str(20), default="done", server_default="done")  # reserved | done
    lease_until: Mapped[datetime | None]


class ApiKey(Base):
    """A system client's key: only its hash is stored; the key acts as a named principal with groups."""

    __tablename__ = "api_key"
    id: Mapped[str] = mapped_column(Str(16), primary_key=True)
    name: Mapped[str] = mapped_column(Str(200), unique=True)
    groups: Mapped[list[Any]] = mapped_column(JSON)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_hash: Mapped[str] = mapped_column(Str(200))
    created_by: Mapped[str] = mapped_column(Str(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    processes: Mapped[list[Any] | None] = mapped_column(JSON)  # process keys granted to a system's key
