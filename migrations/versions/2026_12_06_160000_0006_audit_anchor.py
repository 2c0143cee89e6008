"""the head of each instance's audit chain kept on the instance, so that removing its newest events is detected

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 16:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('process_instance') as batch:
        batch.add_column(sa.Column('audit_seq', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('audit_head', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('process_instance') as batch:
        batch.drop_column('audit_head')
        batch.drop_column('audit_seq')
