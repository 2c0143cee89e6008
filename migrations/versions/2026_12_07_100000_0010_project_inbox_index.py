"""an index for the tasks of one project in the inbox's order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00

human_task (business_key, status, created_at, id) replaces human_task (business_key), its prefix. An OA system asks
for the open tasks of its project (`GET /tasks?business_key=…`): they come out of one index range already in the
inbox's order, instead of the open tasks of every project being read in that order until the project's are found
(100,000 open tasks: 26 ms → 3 ms). A lookup by business key alone still has its index (the new one's first
column), so the table keeps the same number of indexes.

human_task (process_key) stays as it is. The same shape for it, (process_key, status, created_at, id), was tried and
left out: SQLite plans without statistics, and it then read a whole process's range for an assignee's tasks of one
process, or a project's tasks named with their process, instead of the assignee's or the project's few (about
10× slower on 50,000 open tasks).
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


def downgrade() -> None:
    op.create_index('ix_human_task_business_key', 'human_task', ['business_key'])
    op.drop_index('ix_human_task_business_key_created', table_name='human_task')
