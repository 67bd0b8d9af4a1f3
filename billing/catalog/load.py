"""Loading a catalog into the ledger: its plans, its price versions (a version whose
content is unchanged keeps its row and label however its numbers are written; a changed
or removed one stays for audit, not current) and a catalog version holding the file,
all in the caller's transaction, after the edit rule (billing.catalog.edit_rule)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing import bulk
from billing.catalog.edit_rule import Change, Slot, check_edit_rule
from billing.catalog.model import (
    CatalogLoadResult,
    CatalogPriceVersion,
    ParsedCatalog,
    minimum_amounts,
)
from billing.catalog.parse import read_catalog
from billing.catalog.stored import latest_catalog_version, parse_stored
from billing.errors import LoadError
from billing.models import CatalogVersion, Plan, PriceVersion, Subscription
from meters.catalog import MeterCatalog


def load_catalog(
    session: Session,
    catalog: ParsedCatalog | str | Path,
    *,
    reprice: bool = False,
    loaded_at: datetime | None = None,
) -> CatalogLoadResult:
    """Store a validated catalog as the ledger's current catalog (in the session's
    transaction): its plans, its price versions and a catalog version holding the file.

    Refuses with CatalogChangeRefused a change to what finalized invoices were charged
    (billing.catalog.edit_rule), unless ``reprice``: then the result's ``repriced``
    lists the finalized periods whose corrections the caller must post
    (billing.post_adjustments) before committing. Raises LoadError when a subscription's
    plan or currency would be left without prices. ``loaded_at`` defaults to the current
    time (a record, not logic)."""
    parsed = catalog if isinstance(catalog, ParsedCatalog) else read_catalog(catalog)
    bulk.lock_ledger_writes(session)  # no close finalizes an invoice while we check
    problems = _subscription_problems(session, parsed)
    if problems:
        raise LoadError(parsed.source, problems)

    current_version = latest_catalog_version(session)
    rows = session.scalars(select(PriceVersion)).all()
    change = _change(
        parsed,
        rows,
        {p.id: p for p in session.scalars(select(Plan))},
        _stored_meters(current_version),
    )
    repriced = check_edit_rule(session, change, reprice=reprice)

    plans_created, plans_updated = _store_plans(session, parsed, change.stored_plans)
    created, restored = _store_versions(session, change, rows)
    version_row = current_version
    catalog_hash = parsed.content_hash
    version_created = current_version is None or current_version.content_hash != catalog_hash
    if version_created:
        version_row = CatalogVersion(
            content_hash=catalog_hash,
            source=parsed.source,
            text=parsed.text,
            loaded_at=loaded_at or datetime.now(UTC),
            summary={
                "plans_created": plans_created,
                "plans_updated": plans_updated,
                "price_versions_created": created,
                "price_versions_restored": restored,
                "price_versions_superseded": len(change.dropped),
                "repriced_invoices": [p.invoice_id for p in repriced],
            },
        )
        session.add(version_row)
        session.flush()
    return CatalogLoadResult(
        plans_created,
        plans_updated,
        created,
        len(change.keep),
        len(change.dropped),
        restored,
        catalog_version=version_row.id if version_row is not None else None,
        catalog_version_created=version_created,
        repriced=tuple(repriced),
    )


def _stored_meters(current_version: CatalogVersion | None) -> MeterCatalog | None:
    """The meters of the loaded catalog (None before the first load, or when the stored
    file no longer validates: its counting cannot be compared)."""
    if current_version is None:
        return None
    try:
        return parse_stored(current_version.text, current_version.source).meters
    except LoadError:
        return None


def _change(
    parsed: ParsedCatalog,
    rows: Sequence[PriceVersion],
    stored_plans: Mapping[str, Plan],
    old_meters: MeterCatalog | None,
) -> Change:
    """Per slot: keep the stored row (same content however written), or put the file's;
    drop the current rows the file no longer has or replaces."""
    current = {
        (r.plan_id, r.price_id, r.currency, r.effective_from): r for r in rows if r.is_current
    }
    wanted = {v.slot: v for v in parsed.versions}
    keep: dict[Slot, PriceVersion] = {}
    put: dict[Slot, CatalogPriceVersion] = {}
    for slot, version in wanted.items():
        row = current.get(slot)
        if row is not None and (
            row.content_hash == version.content_hash
            or CatalogPriceVersion.from_row(row).terms() == version.terms()
        ):
            keep[slot] = row
        else:
            put[slot] = version
    dropped = [row for slot, row in current.items() if slot not in wanted or slot in put]
    return Change(parsed, current, keep, put, dropped, stored_plans, old_meters)


def _store_plans(
    session: Session, parsed: ParsedCatalog, stored: Mapping[str, Plan]
) -> tuple[int, int]:
    """Create or update the file's plans; (created, updated)."""
    created = updated = 0
    for plan in parsed.plans:
        old = stored.get(plan.id)
        if old is None:
            session.add(
                Plan(id=plan.id, name=plan.name, minimum_commitment=plan.minimum_commitment)
            )
            created += 1
        elif old.name != plan.name or minimum_amounts(old.minimum_commitment) != minimum_amounts(
            plan.minimum_commitment
        ):
            old.name = plan.name
            old.minimum_commitment = dict(plan.minimum_commitment)
            updated += 1
    session.flush()
    return created, updated


def _store_versions(
    session: Session, change: Change, rows: Sequence[PriceVersion]
) -> tuple[int, int]:
    """Mark the dropped rows not current, then store each put version: an earlier row
    of the same slot and content becomes current again, else a new row. (created,
    restored)."""
    if change.dropped:
        session.execute(
            update(PriceVersion)
            .where(PriceVersion.id.in_([r.id for r in change.dropped]))
            .values(is_current=False)
        )
    by_identity = {
        (r.plan_id, r.price_id, r.currency, r.effective_from, r.content_hash): r for r in rows
    }
    created = restored = 0
    for version in change.put.values():
        found = by_identity.get((*version.slot, version.content_hash))
        if found is not None:
            found.is_current = True  # the file went back to an earlier body
            restored += 1
            continue
        session.add(PriceVersion(**version.row_values(), is_current=True))
        created += 1
    session.flush()
    return created, restored


def _subscription_problems(session: Session, parsed: ParsedCatalog) -> list[str]:
    """Every (plan, currency) a subscription is on must keep a plan and a price in that
    currency: otherwise close would have nothing to bill it with."""
    priced = {(v.plan_id, v.currency) for v in parsed.versions}
    plans = {p.id for p in parsed.plans}
    problems = []
    rows = session.execute(
        select(Subscription.plan_id, Subscription.currency, Subscription.external_id).order_by(
            Subscription.plan_id, Subscription.currency, Subscription.external_id
        )
    ).all()
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    for plan, currency, sub in rows:
        if plan not in plans or (plan, currency) not in priced:
            examples[(plan, currency)].append(sub)
    for (plan, currency), subs in sorted(examples.items()):
        shown = ", ".join(subs[:5]) + (f" and {len(subs) - 5} more" if len(subs) > 5 else "")
        if plan not in plans:
            what = f"plan {plan}: no such plan in this catalog"
        else:
            what = f"plan {plan}: no price in {currency} in this catalog"
        problems.append(f"{what}, but subscription(s) {shown} are on it in {currency}: keep it")
    return problems
