"""`meterline catalog load FILE`: the one way a catalog reaches the ledger, and the one
place every command reads it back from (docs/catalog.md).

load_catalog_file validates the whole file (billing.catalog.read_catalog) and stores
it as the ledger's new catalog version. With `reprice`, a change to what finalized
invoices were charged is stored too, and in the same transaction each of those periods
is re-rated from the rollup with the new prices and its difference posted once as
adjustment lines on the subscription's next open invoice (billing.post_adjustments,
the path late usage takes): a later close or reconcile finds nothing left to correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.adjustments import post_adjustments
from billing.catalog import (
    Catalog,
    CatalogLoadResult,
    RepricedPeriod,
    current_catalog,
    load_catalog,
    read_catalog,
)
from billing.errors import LoadError
from billing.models import Customer, Subscription
from billing.posting import record_rating_run
from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog

if TYPE_CHECKING:
    from meterline.jobs.due import Due


@dataclass(frozen=True)
class CatalogLoadReport:
    """What `catalog load` did: the load's counts, and the invoices it re-priced."""

    source: str
    result: CatalogLoadResult
    adjustment_lines: int = 0
    rating_run_id: int | None = None

    @property
    def repriced(self) -> tuple[RepricedPeriod, ...]:
        return self.result.repriced

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "source": self.source,
            "catalog_version": r.catalog_version,
            "changed": r.changed,
            "plans": {"created": r.plans_created, "updated": r.plans_updated},
            "price_versions": {
                "created": r.versions_created,
                "unchanged": r.versions_unchanged,
                "superseded": r.versions_superseded,
                "restored": r.versions_restored,
            },
            "repriced_invoices": [p.invoice_id for p in r.repriced],
            "adjustment_lines": self.adjustment_lines,
            "rating_run_id": self.rating_run_id,
        }

    def text(self) -> str:
        r = self.result
        if not r.changed:
            return f"{self.source}: catalog version {r.catalog_version} (nothing changed)"
        out = (
            f"{self.source}: catalog version {r.catalog_version}; plans {r.plans_created}"
            f" created, {r.plans_updated} updated; price versions {r.versions_created}"
            f" created, {r.versions_unchanged} unchanged, {r.versions_superseded} superseded,"
            f" {r.versions_restored} restored"
        )
        if r.repriced:
            out += (
                f"; re-priced {len(r.repriced)} finalized invoice(s) with"
                f" {self.adjustment_lines} adjustment line(s)"
            )
        return out


def loaded_catalog(config: Settings | None = None) -> Catalog:
    """The catalog loaded in the configured ledger (billing.catalog.current_catalog):
    what ingest, rollup, close and the audit read. Raises CatalogNotLoaded when
    `meterline catalog load FILE` was never run (exit code 2)."""
    from meterline.connections import ledger_session

    with ledger_session(config or settings()) as session:
        return current_catalog(session)


def loaded_meters(config: Settings | None = None) -> MeterCatalog:
    """The loaded catalog's meters, for the warehouse code (meters/)."""
    return loaded_catalog(config).meters


def load_catalog_file(
    path: Path | None = None,
    *,
    reprice: bool = False,
    config: Settings | None = None,
    loaded_at: datetime | None = None,
) -> CatalogLoadReport:
    """Validate catalog file `path` (default: METERLINE_CATALOG_PATH) and store it as
    the ledger's catalog. Raises LoadError (exit code 2) naming every problem of the file,
    or CatalogChangeRefused when it would change what finalized invoices were charged
    and `reprice` is off (billing.catalog's edit rule)."""
    from meterline.connections import ledger_session

    config = config or settings()
    path = Path(path or config.catalog_path)
    if not path.is_file():
        raise LoadError(str(path), ["no such file: give the catalog file to load"])
    parsed = read_catalog(path)  # the whole file is checked before the ledger is touched
    at = loaded_at or datetime.now(UTC)
    with ledger_session(config, write=True) as session:
        result = load_catalog(session, parsed, reprice=reprice, loaded_at=at)
        if not result.repriced:
            return CatalogLoadReport(str(path), result)
        lines, run_id = _post_repricing(session, config, parsed.meters, result.repriced, at)
    return CatalogLoadReport(str(path), result, lines, run_id)


def _post_repricing(
    session: Session,
    config: Settings,
    meters: MeterCatalog,
    periods: Sequence[RepricedPeriod],
    at: datetime,
) -> tuple[int, int]:
    """Re-rate each re-priced finalized period with the catalog just stored (in this
    session) and post its difference as adjustment lines. (lines posted, rating run id)"""
    from meterline.connections import open_warehouse
    from meterline.jobs.post import CODE_VERSION
    from meterline.jobs.rate import (
        WarehouseQuantities,
        inputs_hash,
        rate_periods,
        read_pricebook,
    )
    from meterline.jobs.watermarks import rollup_watermark

    due = _due(session, periods)
    first = min(d.period.start for d in due)
    last = max(d.period.end for d in due)
    with open_warehouse(config) as warehouse:
        # What this run sees of the warehouse, read before the quantities, so that events
        # its rollup did not hold yet are late for the next close (DESIGN.md invariant 7).
        seen = rollup_watermark(warehouse, first.date(), last.date())
        ratings = rate_periods(
            read_pricebook(session, meters), due, WarehouseQuantities(warehouse, meters)
        )
    failed = [
        f"{d.subscription.external_id} {d.period.label()}: {r.error}"
        for d, r in ratings.items()
        if r.error
    ]
    if failed:
        raise LoadError("--reprice", [f"cannot re-rate {f}" for f in failed])
    run_id = record_rating_run(
        session,
        period_start=first,
        period_end=last,
        run_at=at,
        code_version=CODE_VERSION,
        inputs_hash=inputs_hash(line for r in ratings.values() for line in r.lines),
        note="catalog load --reprice",
        events_watermark=seen.events,
        stale_days=seen.stale,
    )
    posted = 0
    for item, rating in ratings.items():
        result = post_adjustments(
            session,
            item.subscription.external_id,
            item.period,
            rating.lines,
            rerate=True,
            rating_run_id=run_id,
        )
        posted += result.created + result.replaced + result.removed
    return posted, run_id


def _due(session: Session, periods: Sequence[RepricedPeriod]) -> list[Due]:
    """The re-priced periods as close's due periods (subscription, discounts, customer)."""
    from meterline.jobs.due import Due

    external = sorted({p.subscription for p in periods})
    subs = {
        sub.external_id: (sub, customer)
        for sub, customer in session.execute(
            select(Subscription, Customer.external_id)
            .join(Customer)
            .where(Subscription.external_id.in_(external))
            .options(selectinload(Subscription.discounts))
        )
    }
    return [Due(subs[p.subscription][0], subs[p.subscription][1], p.period) for p in periods]
