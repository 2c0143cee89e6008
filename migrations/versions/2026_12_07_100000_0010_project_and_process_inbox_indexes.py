"""indexes for the tasks of one project and of one process in the inbox's order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00

human_task (business_key, status, created_at, id) replaces human_task (business_key), and human_task (process_key,
status, created_at, id) replaces human_task (process_key), their prefixes. An OA system asks for the open tasks of
its project (`GET /tasks?business_key=…`): they come out of one index range already in the inbox's order, instead
of the open tasks of every project being read in that order until the project's are found. Every lookup by
business key or process key alone still has its index (the new ones' first column), so the table keeps the same
number of indexes.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_human_task_business_key_created', 'human_task',
                    ['business_key', 'status', 'created_at', 'id'])
    op.drop_index('ix_human_task_business_key', table_name='human_task')
    op.create_index('ix_human_task_process_key_created', 'human_task', ['process_key', 'status', 'created_at', 'id'])
    op.drop_index('ix_human_task_process_key', table_name='human_task')


def downgrade() -> None:
    op.create_index('ix_human_task_process_key', 'human_task', ['process_key'])
    op.drop_index('ix_human_task_process_key_created', table_name='human_task')
    op.create_index('ix_human_task_business_key', 'human_task', ['business_key'])
    op.drop_index('ix_human_task_business_key_created', table_name='human_task')
