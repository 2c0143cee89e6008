"""indexes for the instance list's order (newest first, by process)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 15:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_process_instance_started', 'process_instance', ['started_at', 'id'])
    op.create_index('ix_process_instance_key_started', 'process_instance', ['process_key', 'started_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_process_instance_key_started', table_name='process_instance')
    op.drop_index('ix_process_instance_started', table_name='process_instance')
