"""a group's inbox read from its own candidate rows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 21:00:00

task_candidate gets the task's status and created_at, and the index (kind, value, status, created_at, task_id)
replaces (kind, value, task_id), its prefix. A group's inbox (`GET /tasks?candidate_group=G`) is then one range of
that index in the inbox's order, joined to its tasks by primary key. Before, it walked every open task of every
group in creation order and looked up for each whether it was offered to G: a department holding 1 % of 100,000
open tasks read 5,000 of them for a page of 50, and one with none read all of them. Existing rows take their task's
values; a row whose task is gone (only SQLite, with its foreign keys off at some time, can hold one) is deleted: no
list shows it, and it could take no values.

A replica of the previous release must not serve after this migration (the README's release order stops it first):
it cannot create a task (its candidate rows lack the new columns, which have no default: a default time would not
be the task's, and the inbox's order and cursor would skip or repeat the task), and the tasks it closes would keep
candidate rows marked open (the open inbox checks the task's own status too, so such a task is not listed as open).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("DELETE FROM task_candidate WHERE NOT EXISTS "
               "(SELECT 1 FROM human_task WHERE human_task.id = task_candidate.task_id)")
    if op.get_bind().dialect.name == "postgresql":  # one join, not two subqueries per row (a million rows: 24 s)
        op.execute("UPDATE task_candidate SET status = human_task.status, created_at = human_task.created_at "
                   "FROM human_task WHERE human_task.id = task_candidate.task_id")
    else:
        op.execute(
            "UPDATE task_candidate SET "
            "status = (SELECT human_task.status FROM human_task WHERE human_task.id = task_candidate.task_id), "
            "created_at = (SELECT human_task.created_at FROM human_task WHERE human_task.id = task_candidate.task_id)"
        )
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=20), nullable=False)
        batch_op.alter_column('created_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index('ix_task_candidate_inbox', ['kind', 'value', 'status', 'created_at', 'task_id'],
                              unique=False)
        batch_op.drop_index('ix_task_candidate_lookup')


def downgrade() -> None:
    with op.batch_alter_table('task_candidate', schema=None) as batch_op:
        batch_op.create_index('ix_task_candidate_lookup', ['kind', 'value', 'task_id'], unique=False)
        batch_op.drop_index('ix_task_candidate_inbox')
        batch_op.drop_column('created_at')
        batch_op.drop_column('status')
