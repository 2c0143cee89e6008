"""an index for the list of webhook deliveries of one status

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 19:00:00

`GET /webhooks/deliveries?status=failed` lists one status's deliveries, the newest first, a page at a time after a
cursor. Deliveries are kept (every event for every subscription), so without an index in that order the list read
every delivery of the status and sorted them, or walked the whole table backwards past the delivered ones to find
the few that failed. webhook_delivery (status, id) makes each page one range read backwards.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_webhook_delivery_status_id', 'webhook_delivery', ['status', 'id'])


def downgrade() -> None:
    op.drop_index('ix_webhook_delivery_status_id', table_name='webhook_delivery')
