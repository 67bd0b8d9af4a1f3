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

Those rows are marked: ``first_attempted_at`` = 1970-01-01T00:00:00Z (attempted at a time
nobody recorded; billing.outbox.UNKNOWN_ATTEMPT), so that nothing, not even a replay that
makes them pending again, can make them look never attempted (the sink would then create
without looking, and the reconcile would not look for what Stripe holds).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


# Spelled out, not imported from billing.outbox: a migration keeps doing the same.
UNKNOWN_ATTEMPT = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.add_column(sa.Column("first_attempted_at", sa.DateTime(timezone=True)))
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite keeps instants as naive UTC text (billing.types.UTCDateTime).
    at = UNKNOWN_ATTEMPT.replace(tzinfo=None) if sqlite else UNKNOWN_ATTEMPT
    op.execute(
        sa.text(
            "UPDATE outbox_deliveries SET first_attempted_at = :at"
            " WHERE status <> 'pending' OR attempts > 0 OR lease_owner IS NOT NULL"
            " OR delivered_at IS NOT NULL OR external_id IS NOT NULL"
        ).bindparams(sa.bindparam("at", at, type_=sa.DateTime(timezone=True)))
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox_deliveries") as batch:
        batch.drop_column("first_attempted_at")
