"""Catalog loading: plans and versioned prices from the catalog YAML.

A price version is identified by (plan, price id, currency, effective_from) plus the
hash of its content (body, meter, filter). Loading is idempotent: the same file twice
creates nothing; editing one price's body for one currency adds one version, and the
version it replaces stays, marked not current, for audit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing import yamlio
from billing.charges import KEY_SEP, canonical_json, sha256_hex, to_json_doc
from billing.errors import LoadError
from billing.models import Plan, PriceVersion
from billing.money import CurrencyError, exponent
from rating import parse_price


@dataclass(frozen=True, slots=True)
class CatalogPriceVersion:
    plan_id: str
    price_id: str
    currency: str
    effective_from: date
    meter: str | None
    filter: dict[str, Any] | None
    body: dict[str, Any]
    content_hash: str

    @property
    def version(self) -> str:
        return version_label(self.effective_from, self.content_hash)


@dataclass(frozen=True, slots=True)
class CatalogPlan:
    id: str
    name: str
    minimum_commitment: dict[str, str]


@dataclass(slots=True)
class ParsedCatalog:
    plans: list[CatalogPlan] = field(default_factory=list)
    versions: list[CatalogPriceVersion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CatalogLoadResult:
    plans_created: int
    plans_updated: int
    versions_created: int
    versions_unchanged: int
    versions_superseded: int
    versions_restored: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.plans_created
            or self.plans_updated
            or self.versions_created
            or self.versions_superseded
            or self.versions_restored
        )


def version_label(effective_from: date, content_hash: str) -> str:
    """The price version string charges carry: ``2026-01-01#0123456789ab``."""
    return f"{effective_from.isoformat()}#{content_hash[:12]}"


def content_hash(body: Mapping[str, Any], meter: str | None, filt: Mapping[str, Any] | None) -> str:
    return sha256_hex(canonical_json({"body": body, "meter": meter, "filter": filt}))


def validate_price_body(body: dict[str, Any], *, currency: str, name: str) -> None:
    """THE single place where price bodies get validated by the rating engine.

    ``rating.parse_price(data, name=...)`` validates one price; the catalog keys bodies
    by currency, so the currency is added to the body it sees. Any error it raises is
    reported as a catalog problem naming the price's path in the file. The body stored
    in the ledger is the catalog's, as written (decimals as strings).
    """
    parse_price({**body, "currency": currency}, name=name)


def _ident(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
        return None
    if KEY_SEP in value:
        problems.append(f"{where}: must not contain {KEY_SEP!r}")
        return None
    return value


def _date(value: Any, where: str, problems: list[str]) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{where}: must be a date YYYY-MM-DD, got {value!r}")
    return None


def _currency(value: Any, where: str, problems: list[str]) -> str | None:
    try:
        exponent(value)
    except CurrencyError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return str(value)


def _decimal_text(value: Any, where: str, problems: list[str]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        problems.append(f"{where}: must be a decimal amount, got {value!r}")
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        problems.append(f"{where}: {value!r} is not a decimal amount")
        return None
    if not number.is_finite() or number < 0:
        problems.append(f"{where}: must be a finite amount >= 0, got {value!r}")
        return None
    return format(number, "f")


def _entries(
    items: list[Any], path: str, what: str, problems: list[str]
) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """(entry, id, where) of each mapping in `items` with a valid id not seen before in
    the list; a problem for every other entry. `where` names the entry by path and id."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        ident = _ident(item.get("id"), f"{where}.id", problems)
        if ident is None:
            continue
        where = f"{path}[{index}] ({ident})"
        if ident in seen:
            problems.append(f"{where}.id: duplicate {what}")
            continue
        seen.add(ident)
        yield item, ident, where


def parse_catalog(data: Any, source: str = "catalog") -> ParsedCatalog:
    """Check the catalog's plans and prices; every problem names its path in the file."""
    problems: list[str] = []
    parsed = ParsedCatalog()
    if not isinstance(data, Mapping):
        raise LoadError(source, ["the catalog must be a mapping with a `plans` list"])
    plans = data.get("plans")
    if not isinstance(plans, list) or not plans:
        raise LoadError(source, ["plans: must be a non-empty list"])
    for plan, plan_id, where in _entries(plans, "plans", "plan id", problems):
        name = plan.get("name", plan_id)
        if not isinstance(name, str):
            problems.append(f"{where}.name: must be a string")
            name = plan_id
        minimums: dict[str, str] = {}
        raw_min = plan.get("minimum_commitment") or {}
        if not isinstance(raw_min, Mapping):
            problems.append(f"{where}.minimum_commitment: must map currency to amount")
            raw_min = {}
        for cur, amount in raw_min.items():
            currency = _currency(cur, f"{where}.minimum_commitment.{cur}", problems)
            text = _decimal_text(amount, f"{where}.minimum_commitment.{cur}", problems)
            if currency and text is not None:
                minimums[currency] = text
        parsed.plans.append(CatalogPlan(plan_id, name, minimums))
        prices = plan.get("prices")
        if not isinstance(prices, list) or not prices:
            problems.append(f"{where}.prices: must be a non-empty list")
            continue
        for price, price_id, pwhere in _entries(
            prices, f"{where}.prices", f"price id in plan {plan_id}", problems
        ):
            meter = price.get("meter")
            if meter is not None and not isinstance(meter, str):
                problems.append(f"{pwhere}.meter: must be a string")
                continue
            filt = price.get("filter")
            if filt is not None and not isinstance(filt, Mapping):
                problems.append(f"{pwhere}.filter: must be a mapping of property to value")
                continue
            try:
                filt_doc = to_json_doc(filt, f"{pwhere}.filter")
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
                continue
            versions = price.get("versions")
            if not isinstance(versions, list) or not versions:
                problems.append(f"{pwhere}.versions: must be a non-empty list")
                continue
            seen_from: set[date] = set()
            for v_index, version in enumerate(versions):
                vwhere = f"{pwhere}.versions[{v_index}]"
                if not isinstance(version, Mapping):
                    problems.append(f"{vwhere}: must be a mapping")
                    continue
                effective = _date(
                    version.get("effective_from"), f"{vwhere}.effective_from", problems
                )
                if effective is None:
                    continue
                if effective in seen_from:
                    problems.append(f"{vwhere}.effective_from: {effective} appears twice")
                    continue
                seen_from.add(effective)
                bodies = version.get("prices")
                if not isinstance(bodies, Mapping) or not bodies:
                    problems.append(f"{vwhere}.prices: must map currency to a price body")
                    continue
                for cur, body in bodies.items():
                    bwhere = f"{vwhere}.prices.{cur}"
                    currency = _currency(cur, bwhere, problems)
                    if currency is None:
                        continue
                    if not isinstance(body, Mapping) or not isinstance(body.get("model"), str):
                        problems.append(f"{bwhere}: must be a price body with a `model`")
                        continue
                    try:
                        body_doc = to_json_doc(body, bwhere)
                        validate_price_body(
                            body_doc, currency=currency, name=f"{plan_id}/{price_id}/{currency}"
                        )
                    except Exception as exc:  # the rating engine's message, with our path
                        problems.append(f"{bwhere}: {exc}")
                        continue
                    parsed.versions.append(
                        CatalogPriceVersion(
                            plan_id=plan_id,
                            price_id=price_id,
                            currency=currency,
                            effective_from=effective,
                            meter=meter,
                            filter=filt_doc,
                            body=body_doc,
                            content_hash=content_hash(body_doc, meter, filt_doc),
                        )
                    )
    if problems:
        raise LoadError(source, problems)
    return parsed


def read_catalog(path: str | Path) -> ParsedCatalog:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yamlio.load(text)
    except Exception as exc:
        raise LoadError(str(path), [f"invalid YAML: {exc}"]) from None
    return parse_catalog(data, str(path))


def load_catalog(session: Session, catalog: ParsedCatalog | str | Path) -> CatalogLoadResult:
    """Store the catalog's plans and price versions (in the session's transaction)."""
    parsed = catalog if isinstance(catalog, ParsedCatalog) else read_catalog(catalog)
    plan_ids = [p.id for p in parsed.plans]
    existing_plans = {p.id: p for p in session.scalars(select(Plan).where(Plan.id.in_(plan_ids)))}
    plans_created = plans_updated = 0
    for plan in parsed.plans:
        row = existing_plans.get(plan.id)
        if row is None:
            session.add(
                Plan(id=plan.id, name=plan.name, minimum_commitment=plan.minimum_commitment)
            )
            plans_created += 1
        elif row.name != plan.name or row.minimum_commitment != plan.minimum_commitment:
            row.name = plan.name
            row.minimum_commitment = dict(plan.minimum_commitment)
            plans_updated += 1
    session.flush()

    rows = session.scalars(select(PriceVersion).where(PriceVersion.plan_id.in_(plan_ids))).all()
    by_identity = {
        (r.plan_id, r.price_id, r.currency, r.effective_from, r.content_hash): r for r in rows
    }
    wanted = {
        (v.plan_id, v.price_id, v.currency, v.effective_from, v.content_hash): v
        for v in parsed.versions
    }
    created = unchanged = restored = 0
    for identity, version in wanted.items():
        found = by_identity.get(identity)
        if found is None:
            session.add(
                PriceVersion(
                    plan_id=version.plan_id,
                    price_id=version.price_id,
                    currency=version.currency,
                    effective_from=version.effective_from,
                    content_hash=version.content_hash,
                    version=version.version,
                    meter=version.meter,
                    filter=version.filter,
                    body=version.body,
                    is_current=True,
                )
            )
            created += 1
        elif not found.is_current:
            found.is_current = True  # the file went back to an older body
            restored += 1
        else:
            unchanged += 1
    # Versions of these plans that the file no longer has (an edited body's old version,
    # or a removed one) stay for audit, no longer current.
    stale = [r.id for identity, r in by_identity.items() if identity not in wanted and r.is_current]
    if stale:
        session.execute(
            update(PriceVersion).where(PriceVersion.id.in_(stale)).values(is_current=False)
        )
    session.flush()
    return CatalogLoadResult(plans_created, plans_updated, created, unchanged, len(stale), restored)


@dataclass(frozen=True, slots=True)
class PriceVersionInfo:
    price_id: str
    version: str
    effective_from: date
    currency: str
    meter: str | None
    filter: dict[str, Any] | None
    body: dict[str, Any]


def price_versions_in_effect(
    session: Session, plan_id: str, currency: str, on: date
) -> list[PriceVersionInfo]:
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
    return [
        PriceVersionInfo(
            r.price_id, r.version, r.effective_from, r.currency, r.meter, r.filter, r.body
        )
        for r in latest.values()
    ]
