"""instance task rows: an instance's engine state as one row per task plus a small header

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 01:00:00

Existing instances keep their whole state in process_instance.state_json; they are read as before and
split into rows the next time they change.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('instance_task',
    sa.Column('instance_id', sa.String(length=36), nullable=False),
    sa.Column('task_id', sa.String(length=36), nullable=False),
    sa.Column('workflow_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], ),
    sa.PrimaryKeyConstraint('instance_id', 'task_id')
    )


def downgrade() -> None:
    op.drop_table('instance_task')
