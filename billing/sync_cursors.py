"""How far incremental reads of other systems got (the ledger's ``sync_cursors``): per
source and object, the highest modification stamp among the records a read stored, and
the digest of the field mapping it read them with.

A cursor is written in the transaction that stores what its read found, so it never
runs ahead of the ledger: a sync that fails stores nothing and leaves its cursors where
they were. It only moves forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import SyncCursor


@dataclass(frozen=True, slots=True)
class Cursor:
    """One object's cursor: its high-water mark (an aware UTC instant) and the digest of
    the mapping the records up to it were read with."""

    high_water: datetime
    mapping_digest: str


def read_cursors(session: Session, source: str) -> dict[str, Cursor]:
    """The cursors of ``source``, by object name."""
    return {
        row.object_name: Cursor(row.high_water, row.mapping_digest)
        for row in session.execute(select(SyncCursor).where(SyncCursor.source == source))
        .scalars()
        .all()
    }


def advance_cursor(
    session: Session, source: str, object_name: str, high_water: datetime, mapping_digest: str
) -> Cursor:
    """Record that ``object_name``'s records up to ``high_water`` are stored, read with the
    mapping ``mapping_digest``. The high-water mark never moves back while the mapping
    stays the same (a read from an earlier ``--since`` re-reads, it does not forget); a
    new mapping's first read sets it. Writes nothing when nothing changes. Returns the
    cursor as stored."""
    row = session.get(SyncCursor, (source, object_name), with_for_update=True)
    if row is None:
        session.add(
            SyncCursor(
                source=source,
                object_name=object_name,
                high_water=high_water,
                mapping_digest=mapping_digest,
            )
        )
        session.flush()
        return Cursor(high_water, mapping_digest)
    if row.mapping_digest == mapping_digest:
        high_water = max(high_water, row.high_water)
    if (row.high_water, row.mapping_digest) != (high_water, mapping_digest):
        row.high_water = high_water
        row.mapping_digest = mapping_digest
        session.flush()
    return Cursor(high_water, mapping_digest)
