"""an index for the tasks of an assignee in the inbox's order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:00:00

human_task (assignee, status, created_at, id) replaces human_task (assignee, status), its prefix: the tasks of one
assignee (and the unassigned ones, assignee IS NULL) come out of one index range already in the inbox's order
(created_at, id), the cursor of a later page bounding the range, instead of all of them being read and sorted.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_human_task_assignee_created', 'human_task', ['assignee', 'status', 'created_at', 'id'])
    op.drop_index('ix_human_task_assignee', table_name='human_task')


def downgrade() -> None:
    op.create_index('ix_human_task_assignee', 'human_task', ['assignee', 'status'])
    op.drop_index('ix_human_task_assignee_created', table_name='human_task')
