"""Request and response models: the public contract of the REST API."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: dict[str, str] | None = None
    file: str | None = None
    element_id: str | None = None
    line: int | None = None
    column: int | None = None
    candidate_groups: list[str] | None = Field(default=None, description="who a task is offered to (403 on a task)")
    candidate_users: list[str] | None = None
    allowed: list[str] | None = Field(default=None, description="the steps a task may be sent back to (422 on a "
                                                                  "send-back to another)")


class FormFieldOut(BaseModel):
    id: str
    label: str | None
    type: str
    required: bool
    readonly: bool
    default: Any = None
    options: list[dict[str, str]] = []
    min: Any = None
    max: Any = None
    minlength: int | None = None
    maxlength: int | None = None
    properties: dict[str, str] = {}


class TaskUseOut(BaseModel):
    element_id: str
    name: str
    lane: str | None = None


class CandidateGroupOut(BaseModel):
    name: str
    computed: bool = Field(default=False, description="a ${…} expression, resolved when the task opens")
    lanes: list[str] = Field(default_factory=list, description="the lanes whose tasks are offered to the group")
    tasks: list[TaskUseOut] = Field(default_factory=list, description="the user tasks offered to the group")


class MessageUseOut(BaseModel):
    name: str = Field(description="what POST /messages takes as name")
    element_ids: list[str] = Field(description="the elements that wait for the message")
    payload: list[FormFieldOut] | None = Field(
        default=None, description="the variables the message must carry (None: no payload declared, any variables)")


class ProcessDefinitionOut(BaseModel):
    id: int
    key: str
    version: int
    name: str | None
    documentation: str | None
    resource_name: str
    content_hash: str
    deployment_id: int
    created_at: datetime
    candidate_starter_groups: list[str]
    start_form: list[FormFieldOut] | None = None
    candidate_groups: list[CandidateGroupOut] | None = Field(
        default=None, description="the groups the process's user tasks are offered to (one process only)")
    messages: list[MessageUseOut] | None = Field(default=None, description="the messages the process waits for "
                                                 "(one process only)")


class GroupProcessOut(BaseModel):
    key: str
    version: int
    name: str | None
    starts: bool = Field(description="the group is one of the process's candidate starter groups")
    lanes: list[str]
    tasks: list[TaskUseOut]


class GroupOut(BaseModel):
    name: str
    processes: list[GroupProcessOut]


class DeploymentOut(BaseModel):
    deployment_id: int | None
    definitions: list[ProcessDefinitionOut]
    unchanged: list[str] = Field(default_factory=list, description="process keys whose content was already deployed")
    unchanged_definitions: list[ProcessDefinitionOut] = Field(
        default_factory=list, description="the deployed versions that already had this content")
    warnings: list[str] = Field(default_factory=list,
                                description="what deploys but deserves a look (e.g. decision-table rows that overlap)")


class TaskSummary(BaseModel):
    id: str
    name: str
    element_id: str
    process_instance_id: str
    process_key: str
    business_key: str | None
    candidate_groups: list[str]
    candidate_users: list[str]
    assignee: str | None
    status: str
    created_at: datetime
    due_at: datetime | None
    due_provisional: bool = False
    completed_at: datetime | None = None
    completed_by: str | None = None
    definition_id: int | None = Field(default=None, description="the process definition version the task belongs to")


class ReturnedOut(BaseModel):
    by: str
    at: datetime
    comment: str | None = None
    from_task_id: str = Field(description="the task sent back, or the completed task taken back")
    from_element_id: str
    from_name: str | None = None


class SupersededOut(BaseModel):
    kind: str = Field(description="sent_back or withdrawn")
    by: str
    at: datetime
    comment: str | None = None
    task_id: str | None = Field(default=None, description="the task opened in its place")
    element_id: str | None = None


class TaskRecord(TaskSummary):
    """A task as its own record: what was submitted on it, the reviewer's opinion, what it wrote to the process."""

    lane: str | None = None
    submitted: dict[str, Any] | None = Field(default=None, description="the form values submitted on completion")
    outputs: dict[str, Any] | None = Field(
        default=None, description="what the task wrote to the process variables (its output parameters, or else "
                                  "the submitted values)")
    comment: str | None = Field(default=None, description="the opinion (审批意见) given on completion")
    sent_back: ReturnedOut | None = Field(
        default=None, description="the task was opened because a later step sent the instance back to it: who, "
                                  "when, why (comment) and from which task")
    withdrawn: ReturnedOut | None = Field(
        default=None, description="the task was opened again because its completer took back `from_task_id`")
    superseded: SupersededOut | None = Field(
        default=None, description="the task was sent back or taken back: by whom, when, and the task that "
                                  "replaced it")


class TaskDetail(TaskRecord):
    documentation: str | None
    form_key: str | None
    form: list[FormFieldOut]
    variables: dict[str, Any] = {}
    completed_tasks: list[TaskRecord] = Field(
        default_factory=list,
        description="the instance's completed tasks (the latest 100, oldest first): each department's decision "
                    "or opinion with its comment")


class WaitingOut(BaseModel):
    kind: str
    name: str
    element_id: str
    payload: list[FormFieldOut] | None = Field(
        default=None, description="for a message: the variables it must carry (None: no payload declared)")
    due_at: datetime | None = None
    calendar: str | None = None
    provisional: bool = False
    failed_attempts: int = Field(default=0, description="timer firings that failed and will be retried")
    last_error: str | None = None


class ProcessInstanceOut(BaseModel):
    id: str
    process_key: str
    definition_version: int
    business_key: str | None
    status: str
    end_event: str | None
    variables: dict[str, Any]
    started_by: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    cancel_reason: str | None = None
    open_tasks: list[TaskSummary] = []
    waiting_for: list[WaitingOut] = []


class Page(BaseModel):
    next_cursor: str | None


class ProcessInstancePage(Page):
    items: list[ProcessInstanceOut]


class TaskPage(Page):
    items: list[TaskSummary]


class TaskRecordPage(Page):
    items: list[TaskRecord]


class StartInstanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misplaced field is an error, not silently dropped

    process_key: str = Field(min_length=1, max_length=200)
    business_key: str | None = Field(default=None, max_length=200)
    variables: dict[str, Any] = Field(default_factory=dict)

    _keys = field_validator("process_key", "business_key")(lambda v: _no_nul(v))


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


class CompleteTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misplaced field is an error, not silently dropped

    variables: dict[str, Any] = Field(default_factory=dict)
    comment: str | None = Field(default=None, max_length=2000, description="the opinion (审批意见), kept with the task")

    _comment = field_validator("comment")(_no_nul)


class CommentIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000, description="an opinion (审批意见) on the task")

    _message = field_validator("message")(_no_nul)


class CommentOut(BaseModel):
    id: str
    task_id: str
    process_instance_id: str
    user_id: str
    time: datetime
    message: str
    kind: str = Field(description="completion: the opinion given on completing the task; comment: one added")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misplaced field is an error, not silently dropped

    reason: str = Field(min_length=1, max_length=2000)

    _reason = field_validator("reason")(_no_nul)


class CompletionOut(BaseModel):
    process_instance_id: str
    status: str
    end_event: str | None
    next_tasks: list[TaskSummary]


class AuditEventOut(BaseModel):
    id: int
    seq: int
    at: datetime
    actor: str
    action: str
    task_id: str | None
    element_id: str | None
    data: dict[str, Any]
    hash: str


class HistoryOut(BaseModel):
    process_instance_id: str
    events: list[AuditEventOut]
    verified: bool | None = None
    first_bad_event_id: int | None = None
    reason: str | None = None


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misplaced field is an error, not silently dropped

    name: str = Field(min_length=1, max_length=500)
    business_key: str | None = None
    process_key: str | None = None
    process_instance_id: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)


class MessageOut(BaseModel):
    process_instance_id: str
    status: str
    end_event: str | None
    next_tasks: list[TaskSummary]


# ---- operating long-lived instances: send back, withdraw, repair, migrate, incidents ---------------------------

class SendBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_element_id: str = Field(min_length=1, max_length=200,
                               description="an earlier step the diagram lets this task send back to (sendBackTo)")
    comment: str = Field(min_length=1, max_length=2000, description="why (退回意见): shown on the returned task")


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000, description="why the completion is taken back")


class ReturnOut(BaseModel):
    process_instance_id: str
    status: str
    task: TaskSummary = Field(description="the step opened again")
    cancelled_task_ids: list[str] = Field(description="the open tasks that were cancelled")
    open_tasks: list[TaskSummary]


class ModifyInstruction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["cancel", "start_before"]
    element_id: str | None = Field(default=None, max_length=200,
                                   description="cancel: every active token there; start_before: where to start one")
    task_id: str | None = Field(default=None, max_length=36, description="cancel: one active task")

    @model_validator(mode="after")
    def _target(self) -> ModifyInstruction:
        if self.type == "start_before" and (not self.element_id or self.task_id):
            raise ValueError("start_before takes an element_id (and no task_id)")
        if self.type == "cancel" and bool(self.element_id) == bool(self.task_id):
            raise ValueError("cancel takes an element_id or a task_id")
        return self


class ModifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: list[ModifyInstruction] = Field(min_length=1, max_length=50)
    reason: str = Field(min_length=1, max_length=2000, description="kept in the audit trail")


class SetVariablesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=2000, description="kept in the audit trail")


class MigrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    process_key: str = Field(min_length=1, max_length=200)
    from_version: int = Field(ge=1, le=2**31 - 1)
    to_version: int = Field(ge=1, le=2**31 - 1)
    instance_ids: list[str] | None = Field(default=None, max_length=1000)
    all_instances: bool = Field(default=False, alias="all",
                                description="every running instance of from_version (instead of instance_ids)")
    mapping: dict[str, str] = Field(default_factory=dict,
                                    description="old element id -> new element id, for renamed or replaced steps")
    dry_run: bool = False

    @model_validator(mode="after")
    def _which(self) -> MigrationIn:
        if (self.instance_ids is None) == (not self.all_instances):
            raise ValueError("give instance_ids or all: true")
        return self


class MigrationReasonOut(BaseModel):
    element_id: str = Field(description="the element (or variable) that stands in the way")
    reason: str


class MigrationChangeOut(BaseModel):
    element_id: str
    new_element_id: str
    kind: str
    changed: list[str] = Field(description="element_id, name, form, candidate_groups, due_date, event, ...")


class TimerChangeOut(BaseModel):
    element_id: str
    due_at_before: datetime | None
    due_at: datetime | None


class MigrationInstanceOut(BaseModel):
    process_instance_id: str
    business_key: str | None = None
    can_move: bool
    migrated: bool = False
    reasons: list[MigrationReasonOut] = []
    changes: list[MigrationChangeOut] = []
    recomputed_timers: list[TimerChangeOut] = Field(
        default_factory=list, description="timers whose definition differs in the target: due again from when "
                                          "they were armed")
    armed: list[str] = Field(default_factory=list, description="boundary events the target adds to an open task")
    history_removed: int = Field(default=0, description="finished engine steps of elements the target lacks, left "
                                                        "out of the engine state (their records stay)")


class MigrationOut(BaseModel):
    process_key: str
    from_version: int
    to_version: int
    dry_run: bool
    migrated: int
    not_migrated: int
    instances: list[MigrationInstanceOut]


class IncidentOut(BaseModel):
    id: int
    kind: str = Field(description="timer: a timer whose firing failed")
    process_instance_id: str
    process_key: str
    business_key: str | None
    element_id: str
    name: str
    due_at: datetime | None
    attempts: int
    last_error: str | None
    next_retry_at: datetime | None = Field(default=None, description="when the scheduler tries again by itself")


class DiagramElementOut(BaseModel):
    """Where an instance stands at one element of its diagram (issue #16)."""

    state: str = Field(description="completed | active | waiting | failed: the element's current state")
    completed_count: int = Field(default=0, description="how many times the element was completed")
    last_completed_at: datetime | None = Field(default=None, description="when it was last completed")
    task_ids: list[str] = Field(default_factory=list, description="active: the open user tasks at the element")
    kind: str | None = Field(default=None, description="waiting or failed: timer, message, or gateway (a join "
                                                       "waiting for its other branches)")
    name: str | None = Field(default=None, description="waiting: the message or timer name")
    due_at: datetime | None = Field(default=None, description="waiting: when the timer falls due; active: the "
                                                              "earliest due date of its open tasks")
    failed_attempts: int = Field(default=0, description="failed: timer firings that failed and will be retried")
    last_error: str | None = None


class InstanceDiagramOut(BaseModel):
    process_instance_id: str
    process_key: str
    definition_id: int
    definition_version: int
    status: str
    bpmn_xml: str = Field(description="the definition version's BPMN, for a viewer such as bpmn-js")
    elements: dict[str, DiagramElementOut] = Field(
        description="per element id (as in the BPMN), its state; elements never reached are absent")
