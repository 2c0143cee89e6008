"""History retention: ended instances older than GOVFLOW_HISTORY_RETENTION_DAYS are removed by the worker, after
their audit chain has been exported (JSON lines, one event a line, verifiable without the database) and the
export read back and checked. Nothing is removed that was not kept."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.background import LoopThread
from service.db.models import AuditEvent, HumanTask, InstanceTask, ProcessInstance, TaskCandidate, WaitingEvent
from service.services.audit import GENESIS, Verification, _digest, load_events
from service.services.context import AppContext

log = logging.getLogger("govflow.retention")
ENDED = ("completed", "cancelled")


# ---- export: the audit chain as JSON lines ---------------------------------------------------------------------

def event_line(event: AuditEvent, head: tuple[int, str] | None = None) -> str:
    """One event as a JSON line. `head` is the end of the instance's chain when exported (the seq and hash its
    instance row recorded): written on every line as chain_seq and chain_head, so an export that lost its last
    lines does not verify either."""
    record: dict[str, Any] = {"instance_id": event.instance_id, "seq": event.seq,
                              "at": event.at.isoformat(timespec="microseconds"), "actor": event.actor,
                              "action": event.action, "task_id": event.task_id, "element_id": event.element_id,
                              "data": event.data, "prev_hash": event.prev_hash, "hash": event.hash}
    if head is not None:
        record["chain_seq"], record["chain_head"] = head
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def chain_lines(session: Session, instance_id: str, events: list[AuditEvent] | None = None) -> list[str]:
    """The instance's audit chain as export lines, each naming where the chain ends: the head the instance row
    recorded, or (an instance from before the head was kept) its last event."""
    events = load_events(session, instance_id) if events is None else events
    if not events:
        return []
    anchor = session.execute(select(ProcessInstance.audit_seq, ProcessInstance.audit_head)
                             .where(ProcessInstance.id == instance_id)).one_or_none()
    if anchor is not None and anchor[0] is not None and anchor[1] is not None:
        head = (int(anchor[0]), str(anchor[1]))
    else:
        head = (events[-1].seq, events[-1].hash)
    return [event_line(e, head) for e in events]


def export_lines(session: Session, instance_ids: Iterable[str]) -> Iterator[str]:
    for instance_id in instance_ids:
        yield from chain_lines(session, instance_id)


def write_export(session: Session, instance_ids: Iterable[str], out: IO[str]) -> int:
    count = 0
    for line in export_lines(session, instance_ids):
        out.write(line + "\n")
        count += 1
    return count


@dataclass
class ExportCheck:
    instance_id: str
    events: int
    result: Verification
    last_hash: str


def verify_lines(lines: Iterable[str]) -> list[ExportCheck]:
    """Check the hash chain of every instance in an export, as `audit verify` checks the database."""
    chains: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            chains.setdefault(str(event["instance_id"]), []).append(event)
        except (ValueError, KeyError, TypeError):
            chains.setdefault(f"line {number}", []).append({"bad": line})
    checks = []
    for instance_id, events in chains.items():
        checks.append(_verify_chain(instance_id, events))
    return checks


def _verify_chain(instance_id: str, events: list[dict[str, Any]]) -> ExportCheck:
    prev = GENESIS
    for expected, e in enumerate(events, start=1):
        try:
            seq, at = int(e["seq"]), datetime.fromisoformat(e["at"])
            if seq != expected:
                return ExportCheck(instance_id, len(events), Verification(False, seq, f"sequence gap or reorder at "
                                                                              f"seq {seq} (expected {expected})"),
                                   prev)
            if e["prev_hash"] != prev:
                return ExportCheck(instance_id, len(events), Verification(False, seq, "link to the previous event "
                                                                                      "is broken"), prev)
            digest = _digest(prev, instance_id, seq, at, e["actor"], e["action"], e["task_id"], e["element_id"],
                             e["data"])
        except (KeyError, ValueError, TypeError):
            return ExportCheck(instance_id, len(events), Verification(False, expected, "not an audit event"), prev)
        if digest != e["hash"]:
            return ExportCheck(instance_id, len(events), Verification(False, seq, "event content does not match "
                                                                                  "its hash"), prev)
        prev = e["hash"]
    heads = {(e.get("chain_seq"), e.get("chain_head")) for e in events}
    if heads != {(None, None)}:
        last = int(events[-1]["seq"]) if events else 0
        if len(heads) != 1 or heads != {(last, prev)}:
            return ExportCheck(instance_id, len(events), Verification(False, last, (
                f"the chain ends at event {last} but the instance recorded events up to "
                f"{sorted(str(h[0]) for h in heads)[-1]}: events were removed or replaced")), prev)
    return ExportCheck(instance_id, len(events), Verification(True), prev)


# ---- purge ---------------------------------------------------------------------------------------------------

def export_dir(ctx: AppContext) -> Path:
    configured = ctx.settings.history_export_dir
    return configured if configured is not None else ctx.settings.data_dir / "history-export"


def due_for_removal(session: Session, cutoff: datetime, limit: int) -> list[str]:
    return list(session.scalars(select(ProcessInstance.id).where(ProcessInstance.status.in_(ENDED),
                                                                 ProcessInstance.ended_at < cutoff)
                                .order_by(ProcessInstance.ended_at, ProcessInstance.id).limit(limit)))


def purge(ctx: AppContext, limit: int = 200) -> list[str]:
    """Remove ended instances older than the retention, each after its audit chain was exported and the export
    verified. Returns the ids removed. Without a retention configured, nothing is removed."""
    days = ctx.settings.history_retention_days
    if days is None:
        return []
    cutoff = ctx.clock.now() - timedelta(days=days)
    with ctx.read() as session:
        candidates = due_for_removal(session, cutoff, limit)
    removed = []
    directory = export_dir(ctx)
    for instance_id in candidates:
        try:
            if _remove(ctx, instance_id, cutoff, directory):
                removed.append(instance_id)
        except OSError:
            log.exception("could not export the audit trail of %s; the instance is kept", instance_id)
            break  # the export directory is not writable: try again next round
    if removed:
        log.info("removed %d ended instances older than %d days; audit trails in %s", len(removed), days, directory)
    return removed


def _remove(ctx: AppContext, instance_id: str, cutoff: datetime, directory: Path) -> bool:
    with ctx.read() as session:
        events = load_events(session, instance_id)
        lines = chain_lines(session, instance_id, events)
    if not lines:
        return False
    path = _write_durably(directory, instance_id, lines)
    with path.open(encoding="utf-8") as f:
        checks = verify_lines(f)
    if len(checks) != 1 or not checks[0].result.verified or checks[0].events != len(events):
        log.warning("the exported audit trail of %s does not verify (%s); the instance is kept", instance_id,
                    checks[0].result.reason if checks else "empty")
        return False
    with ctx.write() as session:
        row = session.get(ProcessInstance, instance_id)
        if row is None or row.status not in ENDED or row.ended_at is None or row.ended_at >= cutoff:
            return False
        count, last = session.execute(select(func.count(AuditEvent.id), func.max(AuditEvent.seq))
                                      .where(AuditEvent.instance_id == instance_id)).one()
        if count != len(events) or last != events[-1].seq:
            return False  # an event was added meanwhile (a comment): exported again next round
        tasks = select(HumanTask.id).where(HumanTask.instance_id == instance_id)
        session.execute(delete(TaskCandidate).where(TaskCandidate.task_id.in_(tasks)))
        for table in (HumanTask, WaitingEvent, InstanceTask):
            session.execute(delete(table).where(table.instance_id == instance_id))  # type: ignore[attr-defined]
        session.execute(delete(AuditEvent).where(AuditEvent.instance_id == instance_id))
        session.execute(delete(ProcessInstance).where(ProcessInstance.id == instance_id))
    return True


def _write_durably(directory: Path, instance_id: str, lines: list[str]) -> Path:
    """Write the export next to its final name, flush it to disk, then move it into place."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{instance_id}.jsonl"
    temporary = directory / f".{instance_id}.{os.getpid()}.tmp"
    with temporary.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


class Retention(LoopThread):
    """The periodic purge, run by `govflow serve` and `govflow worker` when a retention is configured."""

    thread_name = "govflow-retention"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while purge(self.ctx) and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("retention round failed")
            self._stop.wait(self.ctx.settings.history_purge_interval_seconds)
