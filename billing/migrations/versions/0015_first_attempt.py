"""When each outbox delivery was first attempted (wall clock).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-22

``outbox_deliveries`` gain ``first_attempted_at``: the wall-clock instant a deliverer
first claimed the event for the sink, set once and never changed. Whatever a sink
created in another system for an event, it created after that instant; so the Stripe
invoices of a month's ledger invoices are among those Stripe created since the earliest
first attempt of their events (`meterline stripe reconcile` lists them in pages instead
of asking per invoice, docs/stripe.md). Rows attempted before this revision keep NULL:
for them the reconcile asks per invoice, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.add_column(sa.Column("first_attempted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.drop_column("first_attempted_at")
