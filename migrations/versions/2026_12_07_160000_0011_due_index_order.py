"""the due-date index of human_task in the order the supervision lists show

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:00:00

human_task (status, due_at, created_at, id) replaces human_task (status, due_at), its prefix. The 督办 report lists
the open tasks overdue, and those due within three days, most urgent first and oldest first among those due at
the same moment, 500 at most: each list is now one range of this index read in its order, so the 500 it keeps
are the same on SQLite and PostgreSQL (ordered by due date alone, which of several tasks due at one moment made
the cut was whatever order each database read them in), and no sort is needed. Whatever used the old index (the
overdue filter of the task lists) uses its prefix, so the table keeps the same number of indexes.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_human_task_due_created', 'human_task', ['status', 'due_at', 'created_at', 'id'])
    op.drop_index('ix_human_task_due', table_name='human_task')


def downgrade() -> None:
    op.create_index('ix_human_task_due', 'human_task', ['status', 'due_at'])
    op.drop_index('ix_human_task_due_created', table_name='human_task')
