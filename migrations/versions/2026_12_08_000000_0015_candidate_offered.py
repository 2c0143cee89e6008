"""the unclaimed tasks offered to a department, in creation order and the most urgent first, from its candidate rows

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 00:00:00

task_candidate gets whether the task is claimed and its due date, and two indexes of a group's (or a user's)
unclaimed open tasks:
- (kind, value, status, claimed, created_at, task_id), in creation order: the inbox an OA system written for Camunda
  reads (/engine-rest/task?candidateGroup=G leaves claimed tasks out). Read from the group's whole range, a page
  passed over every claimed task before it;
- (kind, value, status, claimed, due_at, created_at, task_id), the most urgent first: the console's inbox lists the
  unclaimed open tasks offered to the caller's groups and name, the most urgent first, with how many there are.
  Before, every one of them was read, ordered and counted: at 100,000 open tasks, a department offered a quarter of
  them waited about 90 ms on SQLite.
Existing rows take their task's values; a row whose task is gone is deleted, as in 0013.

As with 0013, a replica of the previous release must not serve after this migration (the README's release order
stops it first): it cannot create a task (its candidate rows lack `claimed`, which has no default), and the tasks
it claims or releases would keep rows that say otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed', sa.Boolean(), nullable=True))
    op.execute("DELETE FROM task_candidate WHERE NOT EXISTS "
               "(SELECT 1 FROM human_task WHERE human_task.id = task_candidate.task_id)")
    if op.get_bind().dialect.name == "postgresql":  # one join, not two subqueries per row
        op.execute("UPDATE task_candidate SET due_at = human_task.due_at, "
                   "claimed = (human_task.assignee IS NOT NULL) "
                   "FROM human_task WHERE human_task.id = task_candidate.task_id")
    else:
        op.execute(
            "UPDATE task_candidate SET "
            "due_at = (SELECT human_task.due_at FROM human_task WHERE human_task.id = task_candidate.task_id), "
            "claimed = (SELECT human_task.assignee IS NOT NULL FROM human_task "
            "WHERE human_task.id = task_candidate.task_id)"
        )
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.alter_column('claimed', existing_type=sa.Boolean(), nullable=False)
        batch_op.create_index('ix_task_candidate_unclaimed',
                              ['kind', 'value', 'status', 'claimed', 'created_at', 'task_id'], unique=False)
        batch_op.create_index('ix_task_candidate_offered',
                              ['kind', 'value', 'status', 'claimed', 'due_at', 'created_at', 'task_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.drop_index('ix_task_candidate_offered')
        batch_op.drop_index('ix_task_candidate_unclaimed')
        batch_op.drop_column('claimed')
        batch_op.drop_column('due_at')
