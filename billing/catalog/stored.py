"""The catalog the ledger holds: the newest catalog version (the file every command
reads, re-validated by this code) and the price versions in effect on a date."""

from __future__ import annotations

import functools
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.catalog.model import (
    LOAD_COMMAND,
    Catalog,
    CatalogNotLoaded,
    CatalogPriceVersion,
    ParsedCatalog,
)
from billing.catalog.parse import parse_catalog_text
from billing.errors import LoadError
from billing.models import CatalogVersion, PriceVersion


def latest_catalog_version(session: Session) -> CatalogVersion | None:
    """The newest catalog version row, or None before the first load."""
    return session.scalars(
        select(CatalogVersion).order_by(CatalogVersion.id.desc()).limit(1)
    ).one_or_none()


@functools.lru_cache(maxsize=8)
def parse_stored(text: str, source: str) -> ParsedCatalog:
    """A stored catalog file, validated (cached: the same text parses the same)."""
    return parse_catalog_text(text, source)


def current_catalog(session: Session) -> Catalog:
    """The catalog every command reads: the newest catalog version in the ledger, typed
    (meters as a MeterCatalog for the warehouse code, plans, price versions).

    Raises CatalogNotLoaded (exit code 2) when none was loaded, and LoadError when the
    stored file no longer passes this code's validation."""
    row = latest_catalog_version(session)
    if row is None:
        raise CatalogNotLoaded(
            f"no catalog is loaded in the ledger: run `{LOAD_COMMAND}` first"
            " (the meters, plans and prices every command reads)"
        )
    try:
        parsed = parse_stored(row.text, f"catalog version {row.id} ({row.source})")
    except LoadError as exc:
        raise LoadError(
            exc.source,
            [*exc.problems, f"fix the file and run `{LOAD_COMMAND}` again"],
        ) from None
    stored = (row.id, row.content_hash, row.source, row.loaded_at)
    return Catalog(
        *stored,
        parsed.meters,
        tuple(parsed.plans),
        tuple(parsed.versions),
        parsed.rounding_mode,
        parsed.price_tax_codes,
    )


def price_versions_in_effect(
    session: Session, plan_id: str, currency: str, on: date
) -> list[CatalogPriceVersion]:
    """The current version of each price of a plan in effect on local date ``on``
    (the latest ``effective_from`` on or before it): what rating should price with."""
    rows = session.scalars(
        select(PriceVersion)
        .where(
            PriceVersion.plan_id == plan_id,
            PriceVersion.currency == currency,
            PriceVersion.is_current.is_(True),
            PriceVersion.effective_from <= on,
        )
        .order_by(PriceVersion.price_id, PriceVersion.effective_from)
    ).all()
    latest: dict[str, PriceVersion] = {}
    for row in rows:
        latest[row.price_id] = row
    return [CatalogPriceVersion.from_row(r) for r in latest.values()]
