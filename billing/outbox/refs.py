"""External ids (``external_refs``) and customers' delivery terms, for the sinks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billing import bulk
from billing.models import Customer, ExternalRef, Invoice


def customer_terms(
    session: Session, customers: Collection[str]
) -> dict[str, tuple[str | None, str | None, int | None]]:
    """(stripe_customer_id, collection_method, days_until_due) by customer id."""
    found: dict[str, tuple[str | None, str | None, int | None]] = {}
    for part in bulk.chunks(sorted(customers)):
        for row in session.execute(
            select(
                Customer.external_id,
                Customer.stripe_customer_id,
                Customer.collection_method,
                Customer.days_until_due,
            ).where(Customer.external_id.in_(part))
        ):
            found[row[0]] = (row[1], row[2], row[3])
    return found


def external_ids(
    session: Session, sink: str, kind: str, local_ids: Collection[str]
) -> dict[str, tuple[str, str | None]]:
    """(external id, parent external id) by our id, for the ids recorded."""
    found: dict[str, tuple[str, str | None]] = {}
    for part in bulk.chunks(sorted(local_ids)):
        for local_id, external_id, parent in session.execute(
            select(ExternalRef.local_id, ExternalRef.external_id, ExternalRef.parent_external_id)
            .where(ExternalRef.sink == sink, ExternalRef.kind == kind)
            .where(ExternalRef.local_id.in_(part))
        ):
            found[local_id] = (external_id, parent)
    return found


def record_external_ids(
    session: Session, sink: str, refs: Sequence[tuple[str, str, str, str | None]]
) -> None:
    """Insert or replace (kind, local id, external id, parent) rows for ``sink``."""
    if not refs:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "sink": sink,
            "kind": kind,
            "local_id": local_id,
            "external_id": external_id,
            "parent_external_id": parent,
            "recorded_at": now,
        }
        for kind, local_id, external_id, parent in refs
    ]
    table: Any = ExternalRef.__table__
    dialect = postgresql if bulk.dialect(session) == "postgresql" else sqlite
    statement = dialect.insert(table)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["sink", "kind", "local_id"],
            set_={
                "external_id": statement.excluded.external_id,
                "parent_external_id": statement.excluded.parent_external_id,
                "recorded_at": statement.excluded.recorded_at,
            },
        ),
        rows,
    )


def forget_external_id(session: Session, sink: str, kind: str, local_id: str) -> None:
    """Drop a recorded id the other system no longer knows."""
    session.execute(
        delete(ExternalRef).where(
            ExternalRef.sink == sink, ExternalRef.kind == kind, ExternalRef.local_id == local_id
        )
    )


def invoice_status(session: Session, invoice_id: int) -> str | None:
    return session.scalar(select(Invoice.status).where(Invoice.id == invoice_id))
