"""Who may see and do what: the one access policy, read by every use case and list query.

Three kinds of principal, as in the README's "Who sees what":
- administrators (token minted with --admin, or an admin API key) see and do everything;
- systems and users granted processes (an API key's `processes`, or GOVFLOW_GROUP_PROCESS_GRANTS for a group)
  read every instance and task of those processes, start their instances and send them messages (only they and
  administrators send messages);
- everyone sees the instances they started, and the instances and tasks in which they are (or were) a candidate,
  the assignee or the one who completed a task.
Claiming and completing a task is only for the principals it is offered to (a candidate group or user, or its
assignee) and administrators: a grant lets a system watch a process, not decide in it.

Conditions (for list queries) and booleans (for one loaded row) state the same rules; each rule has a test in
tests/api/test_access_policy.py.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, TaskCandidate
from service.errors import Forbidden


# ---- grants --------------------------------------------------------------------------------------
def with_group_grants(principal: Principal, grants: Mapping[str, Iterable[str]]) -> Principal:
    """The principal with the processes granted to its groups by configuration added to its own."""
    granted = {p for group in principal.groups for p in grants.get(group, ())}
    if not granted - principal.processes:
        return principal
    return replace(principal, processes=principal.processes | frozenset(granted))


def _granted(principal: Principal, column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
    return column.in_(sorted(principal.processes)) if principal.processes else false()


# ---- tasks ---------------------------------------------------------------------------------------
def is_candidate(principal: Principal) -> ColumnElement[bool]:
    """The human task is offered to one of the principal's groups or to the principal by name. Two lookups, each
    an index range of task_candidate (kind, value), rather than one whose OR no single range serves."""
    offered = [exists(select(TaskCandidate.task_id).where(
        TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "user", TaskCandidate.value == principal.user))]
    if principal.groups:
        offered.insert(0, exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group",
            TaskCandidate.value.in_(sorted(principal.groups)))))
    return or_(*offered)


def _involved_in_task(principal: Principal) -> ColumnElement[bool]:
    return or_(is_candidate(principal), HumanTask.assignee == principal.user,
               HumanTask.completed_by == principal.user)


def visible_tasks(principal: Principal) -> ColumnElement[bool]:
    """Condition on HumanTask rows: the tasks the principal may list and read."""
    if principal.is_admin:
        return true()
    return or_(_granted(principal, HumanTask.process_key), _involved_in_task(principal))


def filter_shows_only_visible_tasks(principal: Principal, *, candidate_group: str | None = None,
                                    candidate_groups: Iterable[str] | None = None, candidate_user: str | None = None,
                                    candidate_user_groups: Iterable[str] = (), assignee: str | None = None) -> bool:
    """A task list's own filter admits only tasks visible_tasks admits, so the list need not add that condition:
    the tasks offered to one of the principal's groups or to the principal by name, or assigned to the principal
    (an inbox, which then reads only the index it is ordered by and the candidate lookups of its filter)."""
    return (principal.is_admin
            or (bool(candidate_group) and candidate_group in principal.groups)
            or (candidate_groups is not None and principal.groups.issuperset(candidate_groups))
            or (bool(candidate_user) and candidate_user == principal.user
                and principal.groups.issuperset(candidate_user_groups))
            or (bool(assignee) and assignee == principal.user))


def is_offered_to(principal: Principal, row: HumanTask) -> bool:
    """The task is offered to the principal: a candidate group or user, or the assignee."""
    return (row.assignee == principal.user or principal.user in (row.candidate_users or [])
            or bool(principal.groups.intersection(row.candidate_groups or [])))


def may_see_task(principal: Principal, row: HumanTask) -> bool:
    return (principal.is_admin or row.process_key in principal.processes or is_offered_to(principal, row)
            or row.completed_by == principal.user)


def may_work_on_task(principal: Principal, row: HumanTask) -> bool:
    """Claim and complete: administrators and the principals the task is offered to; a grant is not enough."""
    return principal.is_admin or is_offered_to(principal, row)


def require_task_worker(principal: Principal, row: HumanTask) -> None:
    """Refuse, naming who the task is offered to, a principal that may not claim or complete it."""
    if may_work_on_task(principal, row):
        return
    offered = [f"group {g}" for g in row.candidate_groups or []] + [f"user {u}" for u in row.candidate_users or []]
    groups = ", ".join(sorted(principal.groups)) or "no group"
    raise Forbidden(f"task '{row.name}' is offered to {', '.join(offered) or 'nobody (an administrator may act)'}; "
                    f"{principal.user} is in {groups}",
                    candidate_groups=list(row.candidate_groups or []),
                    candidate_users=list(row.candidate_users or []))


def require_withdrawer(principal: Principal, row: HumanTask) -> None:
    """Withdraw (撤回) a completed task: only the one who completed it takes it back."""
    if row.completed_by != principal.user:
        raise Forbidden(f"only {row.completed_by or 'the one who completed it'} may withdraw task '{row.name}'; "
                        f"{principal.user} did not complete it")


def require_commenter(principal: Principal, row: HumanTask) -> None:
    """An opinion (审批意见) on a task: from those it is offered to, its assignee, who completed it, or an
    administrator — not from a principal that only watches the process."""
    if principal.is_admin or is_offered_to(principal, row) or row.assignee == principal.user \
            or row.completed_by == principal.user:
        return
    raise Forbidden(f"only the groups the task is offered to may add an opinion: {', '.join(row.candidate_groups)}",
                    candidate_groups=row.candidate_groups)


def may_release_task(principal: Principal, row: HumanTask) -> bool:
    """Unclaim: the assignee, or an administrator for someone else's claim."""
    return principal.is_admin or row.assignee == principal.user


# ---- process instances ---------------------------------------------------------------------------
def visible_instances(principal: Principal) -> ColumnElement[bool]:
    """Condition on ProcessInstance rows: the instances the principal may list and read, and send messages to."""
    if principal.is_admin:
        return true()
    task_of_mine = (select(HumanTask.id).where(HumanTask.instance_id == ProcessInstance.id)
                    .where(_involved_in_task(principal)))
    return or_(_granted(principal, ProcessInstance.process_key), ProcessInstance.started_by == principal.user,
               exists(task_of_mine))


def message_targets(principal: Principal) -> ColumnElement[bool]:
    """Condition on ProcessInstance rows: the instances the principal may deliver a message to. Messages report
    facts from outside (a budget vote, a signed contract, a completed construction) and the dates deadlines run
    from: administrators and the systems granted the process report them — not a department that only sees the
    instance (the one whose deadline would run from the date it reports)."""
    if principal.is_admin:
        return true()
    return _granted(principal, ProcessInstance.process_key)


def may_start(principal: Principal, process_key: str, starter_groups: list[str], starter_users: list[str]) -> bool:
    """Start an instance: administrators, principals granted the process, and, when the diagram names candidate
    starters (camunda:candidateStarterGroups/Users), only those; without starters, anyone authenticated."""
    if principal.is_admin or process_key in principal.processes:
        return True
    if not starter_groups and not starter_users:
        return True
    return bool(principal.groups.intersection(starter_groups)) or principal.user in starter_users


def require_starter(principal: Principal, process_key: str, starter_groups: list[str],
                    starter_users: list[str]) -> None:
    if not may_start(principal, process_key, starter_groups, starter_users):
        who = [f"group {g}" for g in starter_groups] + [f"user {u}" for u in starter_users]
        raise Forbidden(f"only {', '.join(who)} may start '{process_key}' (or a principal granted the process)")


# ---- administration ------------------------------------------------------------------------------
def require_admin(principal: Principal, action: str) -> None:
    """Deploying, cancelling, firing timers, webhooks and API keys, and repairing instances (migrating them to
    another version, moving tokens, setting variables, retrying incidents) are for administrators only."""
    if not principal.is_admin:
        raise Forbidden(f"only administrators {action}")
