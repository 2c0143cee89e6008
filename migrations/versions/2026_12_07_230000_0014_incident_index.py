"""an index of the incidents alone

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 23:00:00

`GET /incidents` lists the timers whose firing failed, the most overdue first. It read every waiting timer in due
order (waiting_event (kind, due_at)) to find the few that failed. waiting_event (kind, due_at, id) WHERE
attempts > 0 holds only those: a page is a range of it, however many timers wait.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCIDENT = "attempts > 0"


def upgrade() -> None:
    op.create_index('ix_waiting_event_incident', 'waiting_event', ['kind', 'due_at', 'id'],
                    sqlite_where=sa.text(INCIDENT), postgresql_where=sa.text(INCIDENT))


def downgrade() -> None:
    op.drop_index('ix_waiting_event_incident', table_name='waiting_event')
