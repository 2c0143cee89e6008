"""how many timers and messages each instance waits on, kept on the instance

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:00:00

process_instance.waiting_count: the number of the instance's waiting_event rows, written with them in the
instance's own UPDATE. A change of an instance that waited on nothing need not read waiting_event to learn which
rows to keep. Existing instances are counted from waiting_event.

The column is added and dropped in place (SQLite ≥ 3.35 drops a column itself): a batch operation would copy
process_instance into a new table and drop the old one, which SQLite's foreign keys refuse while the tables that
reference it have rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('process_instance', sa.Column('waiting_count', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        "UPDATE process_instance SET waiting_count = "
        "(SELECT count(*) FROM waiting_event WHERE waiting_event.instance_id = process_instance.id) "
        "WHERE EXISTS (SELECT 1 FROM waiting_event WHERE waiting_event.instance_id = process_instance.id)"
    )


def downgrade() -> None:
    op.drop_column('process_instance', 'waiting_count')
