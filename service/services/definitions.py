"""Deploying BPMN/DMN files as versioned process definitions, and reading them back."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.locks import DEPLOY, hold_for_transaction
from service.db.models import Deployment, ProcessDefinition
from service.engine.catalog import Catalog, describe
from service.engine.deployment import ModelError, parse_files
from service.engine.forms import FormField, schema_for_api
from service.engine.runtime import ProcessModel
from service.engine.sandbox import EngineFailure
from service.errors import InvalidModel, NotFound
from service.schemas import (
    CandidateGroupOut,
    DeploymentOut,
    FormFieldOut,
    GroupOut,
    GroupProcessOut,
    MessageUseOut,
    ProcessDefinitionOut,
    TaskUseOut,
)
from service.services.common import payload_out
from service.services.context import AppContext


def definition_out(row: ProcessDefinition, with_form: bool = False) -> ProcessDefinitionOut:
    form = None
    if with_form:
        fields = [FormField.from_dict(f) for f in row.start_form or []]
        form = [FormFieldOut(**f) for f in schema_for_api(fields)]
    return ProcessDefinitionOut(
        id=row.id, key=row.key, version=row.version, name=row.name, documentation=row.documentation,
        resource_name=row.resource_name, content_hash=row.content_hash, deployment_id=row.deployment_id,
        created_at=row.created_at, candidate_starter_groups=row.candidate_starter_groups, start_form=form,
    )


def deploy(ctx: AppContext, principal: Principal, files: dict[str, bytes], source: str = "api",
           idem: Any = None) -> DeploymentOut:
    """Parse and check the files (outside any transaction), then store the new versions in one."""
    policy.require_admin(principal, "deploy process definitions")
    try:
        parsed = _parse(files)
    except ModelError as e:
        raise InvalidModel(f"{e.file or 'deployment'}: {e.message}", file=e.file, element_id=e.element_id,
                           line=e.line) from None
    with ctx.read() as session:
        new = [p for p in parsed if session.scalar(select(ProcessDefinition.id).where(
            ProcessDefinition.key == p.key, ProcessDefinition.content_hash == p.content_hash)) is None]
    warnings = decision_warnings(ctx, files) if new else []
    with ctx.write() as session:
        out = _store(ctx, session, principal, parsed, source)
        out.warnings = warnings
        if idem is not None:
            idem.store(session, 201, out)
    return out


_CHECKED: dict[str, list[str]] = {}  # the same files give the same warnings
_PARSED: dict[str, list[Any]] = {}  # the same files parse to the same processes (specs are only read)
_PARSED_LOCK = threading.Lock()


def _digest(files: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(n.encode() + b"\0" + c + b"\0" for n, c in sorted(files.items()))).hexdigest()


def _parse(files: dict[str, bytes]) -> list[Any]:
    """parse_files, remembered for the last few sets of files: every process start-up deploys its BPMN directory
    again, and Camunda Modeler deploys the unchanged diagrams of a project with each change (~0.1 s of CPU each)."""
    digest = _digest(files)
    with _PARSED_LOCK:
        known = _PARSED.get(digest)
    if known is not None:
        return list(known)
    parsed = parse_files(files)
    with _PARSED_LOCK:
        if len(_PARSED) >= 16:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[digest] = parsed
    return list(parsed)


def decision_warnings(ctx: AppContext, files: dict[str, bytes]) -> list[str]:
    """Decision-table rows that overlap (their order decides); checked in an engine worker (it runs the cells)."""
    digest = _digest(files)
    if digest in _CHECKED:
        return list(_CHECKED[digest])
    try:
        reply = ctx.pool.run({"op": "check_decisions", "files": files}, model_files=lambda: None)
    except EngineFailure as e:
        return [f"the decision tables could not be checked: {e.message}"]
    warnings = list(reply.get("warnings") or []) if isinstance(reply, dict) else []
    if len(_CHECKED) > 64:
        _CHECKED.clear()
    _CHECKED[digest] = warnings
    return list(warnings)


def _store(ctx: AppContext, session: Session, principal: Principal, parsed: list[Any], source: str) -> DeploymentOut:
    # deploys (replicas starting together with the same diagrams) store one after another, each seeing what the
    # one before stored: a duplicate is unchanged, never a unique violation (SQLite serialises writes already)
    hold_for_transaction(session.connection(), DEPLOY)
    now = ctx.clock.now()
    deployment: Deployment | None = None
    created: list[ProcessDefinition] = []
    unchanged: list[str] = []
    unchanged_rows: list[ProcessDefinition] = []
    for p in parsed:
        existing = session.scalars(
            select(ProcessDefinition).where(ProcessDefinition.key == p.key,
                                            ProcessDefinition.content_hash == p.content_hash)
        ).first()
        if existing is not None:
            unchanged.append(p.key)
            unchanged_rows.append(existing)
            continue
        if deployment is None:
            deployment = Deployment(source=source, deployed_by=principal.user, deployed_at=now)
            session.add(deployment)
            session.flush()
        latest = session.scalar(select(func.max(ProcessDefinition.version)).where(ProcessDefinition.key == p.key))
        row = ProcessDefinition(
            key=p.key, version=(latest or 0) + 1, name=p.name, content_hash=p.content_hash,
            deployment_id=deployment.id, resource_name=p.resource_name, bpmn_xml=p.bpmn_xml,
            dmn_resources=p.dmn_resources, spec_json=p.spec_json,
            start_form=[f.to_dict() for f in p.start_form] if p.start_form is not None else None,
            documentation=p.documentation, candidate_starter_groups=p.candidate_starter_groups,
            candidate_starter_users=p.candidate_starter_users, created_at=now,
        )
        session.add(row)
        session.flush()
        ctx.remember(ProcessModel(definition_id=row.id, key=row.key, spec=p.spec, subprocess_specs=p.subprocess_specs))
        created.append(row)
    return DeploymentOut(
        deployment_id=deployment.id if deployment else None,
        definitions=[definition_out(r) for r in created],
        unchanged=unchanged,
        unchanged_definitions=[definition_out(r) for r in unchanged_rows],
    )


def read_directory(directory: Path) -> dict[str, bytes]:
    files = sorted([*directory.glob("*.bpmn"), *directory.glob("*.dmn")])
    return {f.name: f.read_bytes() for f in files}


def latest(session: Session, key: str) -> ProcessDefinition:
    row = session.scalars(
        select(ProcessDefinition).where(ProcessDefinition.key == key).order_by(ProcessDefinition.version.desc())
    ).first()
    if row is None:
        raise NotFound(f"no process definition with key '{key}'")
    return row


def by_id(session: Session, definition_id: int, with_form: bool = False) -> ProcessDefinitionOut:
    row = session.get(ProcessDefinition, definition_id)
    if row is None:
        raise NotFound(f"no process definition with id {definition_id}")
    return definition_out(row, with_form=with_form)


def version(session: Session, key: str, number: int) -> ProcessDefinition:
    row = session.scalars(select(ProcessDefinition).where(ProcessDefinition.key == key,
                                                          ProcessDefinition.version == number)).first()
    if row is None:
        raise NotFound(f"process definition '{key}' has no version {number}")
    return row


def _latest_rows(session: Session) -> list[ProcessDefinition]:
    newest = (
        select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("v"))
        .group_by(ProcessDefinition.key).subquery()
    )
    return list(session.scalars(
        select(ProcessDefinition)
        .join(newest, (ProcessDefinition.key == newest.c.key) & (ProcessDefinition.version == newest.c.v))
        .order_by(ProcessDefinition.key)
    ))


def list_latest(session: Session) -> list[ProcessDefinitionOut]:
    return [definition_out(r) for r in _latest_rows(session)]


def _catalog(ctx: AppContext, session: Session, row: ProcessDefinition) -> Catalog:
    return describe(ctx.model(session, row.id))


def get_latest(ctx: AppContext, session: Session, key: str) -> ProcessDefinitionOut:
    """The latest version with its start form, the groups its tasks are offered to and the messages it waits for."""
    row = latest(session, key)
    out = definition_out(row, with_form=True)
    catalog = _catalog(ctx, session, row)
    out.candidate_groups = [
        CandidateGroupOut(name=g.name, computed=g.computed, lanes=g.lanes,
                          tasks=[TaskUseOut(element_id=t.element_id, name=t.name, lane=t.lane) for t in g.tasks])
        for g in catalog.groups
    ]
    contracts = ctx.model(session, row.id).messages
    out.messages = [MessageUseOut(name=m.name, element_ids=m.element_ids,
                                  payload=payload_out(contracts[m.name].fields) if m.name in contracts else None)
                    for m in catalog.messages]
    return out


def groups(ctx: AppContext, session: Session) -> list[GroupOut]:
    """Every group the latest version of a deployed process offers tasks to or lets start it."""
    found: dict[str, list[GroupProcessOut]] = {}
    for row in _latest_rows(session):
        uses = {g.name: g for g in _catalog(ctx, session, row).groups}
        for name in sorted(set(uses) | set(row.candidate_starter_groups or [])):
            use = uses.get(name)
            found.setdefault(name, []).append(GroupProcessOut(
                key=row.key, version=row.version, name=row.name, starts=name in (row.candidate_starter_groups or []),
                lanes=use.lanes if use else [],
                tasks=[TaskUseOut(element_id=t.element_id, name=t.name, lane=t.lane) for t in use.tasks] if use else [],
            ))
    return [GroupOut(name=name, processes=processes) for name, processes in sorted(found.items())]


def versions(session: Session, key: str) -> list[ProcessDefinitionOut]:
    rows = list(session.scalars(select(ProcessDefinition).where(ProcessDefinition.key == key)
                                .order_by(ProcessDefinition.version)))
    if not rows:
        raise NotFound(f"no process definition with key '{key}'")
    return [definition_out(r) for r in rows]


def xml(session: Session, key: str, number: int | None) -> str:
    if number is None:
        return latest(session, key).bpmn_xml
    return version(session, key, number).bpmn_xml
