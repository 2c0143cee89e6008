"""task records, state tokens, idempotency reservations, process-scoped API keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:00:00

- human_task: what a completed task submitted (its own record), the reviewer's comment (审批意见), and the
  values the task wrote to the process variables;
- process_instance.state_token: changes with every stored change; caches of restored workflows are keyed by it;
- idempotency_record.state / lease_until: a key is reserved before the work starts, so a concurrent retry
  waits for the first answer instead of doing the work again;
- api_key.processes: the process keys a system's key is granted.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('human_task') as batch:
        batch.add_column(sa.Column('submitted', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('outputs', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('comment', sa.Text(), nullable=True))
    with op.batch_alter_table('process_instance') as batch:
        batch.add_column(sa.Column('state_token', sa.String(length=36), nullable=True))
    with op.batch_alter_table('idempotency_record') as batch:
        batch.add_column(sa.Column('state', sa.String(length=20), nullable=False, server_default='done'))
        batch.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('api_key') as batch:
        batch.add_column(sa.Column('processes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_key') as batch:
        batch.drop_column('processes')
    with op.batch_alter_table('idempotency_record') as batch:
        batch.drop_column('lease_until')
        batch.drop_column('state')
    with op.batch_alter_table('process_instance') as batch:
        batch.drop_column('state_token')
    with op.batch_alter_table('human_task') as batch:
        batch.drop_column('comment')
        batch.drop_column('outputs')
        batch.drop_column('submitted')
