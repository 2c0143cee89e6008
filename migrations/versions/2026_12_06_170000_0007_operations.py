"""operating long-lived instances: tasks sent back or withdrawn, retention of ended instances

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 17:00:00

- human_task.reopened: why a task was opened again (sent back to its step, or withdrawn by its completer): who,
  when, the comment and the task it came from;
- human_task.superseded: on the task that was sent back or taken back, what replaced it;
- an index on process_instance (status, ended_at) for the retention of ended instances.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('human_task') as batch:
        batch.add_column(sa.Column('reopened', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('superseded', sa.JSON(), nullable=True))
    op.create_index('ix_process_instance_ended', 'process_instance', ['status', 'ended_at'])


def downgrade() -> None:
    op.drop_index('ix_process_instance_ended', table_name='process_instance')
    with op.batch_alter_table('human_task') as batch:
        batch.drop_column('superseded')
        batch.drop_column('reopened')
