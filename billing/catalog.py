"""The catalog: meters, plans and versioned prices. Loaded once into the ledger, read by
every command from there (docs/catalog.md).

`meterline catalog load FILE` reads the file with the one YAML reader (billing.yamlio),
validates the whole of it (parse_catalog: meters, aggregations, dimensions, filters on
declared properties, prices on existing meters and their dimensions, plans, price
bodies through the rating engine) and stores it (load_catalog) as a new catalog
version: the file text, its content hash and when it was loaded. Ingest, rollup, close
and the audit read the newest version through current_catalog(session); the settings'
catalog path is only the default file of `catalog load`.

A price version is one price of one plan in one currency from a date: its slot is
(plan, price id, currency, effective_from); its content is its body, meter and filter.
Loading the same content again changes nothing, however its numbers are written
(``0.99``, ``"0.99"`` and ``0.990`` are one price).

The edit rule: a price version that priced a finalized invoice never changes in place.
A load that would change what a finalized invoice was charged (a body edited under the
same effective_from, a version removed, a version added inside or before a finalized
period, a plan's minimum commitment, a price's meter or filter) is refused with
CatalogChangeRefused, naming the price, its version and the invoices. Either give the
new price a version of its own, effective after the finalized periods, or load with
``reprice=True``: the change is stored and load_catalog returns the finalized periods it
re-prices, whose corrections the caller posts once as adjustment lines
(billing.adjustments, in the same transaction). A meter that counted a finalized
invoice never changes how it counts (aggregation, unique_property, filter, and
dimensions of a non-additive meter): the rollup of past days holds its old counting.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from billing import bulk, yamlio
from billing.charges import KEY_SEP, canonical_json, sha256_hex, to_json_doc
from billing.errors import LedgerError, LoadError
from billing.models import (
    CatalogVersion,
    Invoice,
    InvoiceLine,
    Plan,
    PriceVersion,
    Subscription,
)
from billing.money import CurrencyError, exponent
from billing.periods import Period, local_midnight, zone
from meters.catalog import MeterCatalog, parse_meters
from rating import Price, RoundingMode, parse_price
from rating.decimals import plain, to_nonnegative

TOP_LEVEL_KEYS = ("rounding_mode", "meters", "plans")
PLAN_KEYS = ("id", "name", "minimum_commitment", "prices")
PRICE_KEYS = ("id", "meter", "filter", "versions")
VERSION_KEYS = ("effective_from", "prices")
# Close rounds every line half-up (meterline.jobs.close.ROUNDING); a catalog asking for
# another mode would be ignored silently, so it is refused.
SUPPORTED_ROUNDING = RoundingMode.HALF_UP
LOAD_COMMAND = "meterline catalog load FILE"


class CatalogNotLoaded(LedgerError):
    """No catalog has been loaded into the ledger yet (exit code 2)."""


class CatalogChangeRefused(LoadError):
    """The catalog would change what finalized invoices were charged (exit code 2).
    ``invoices`` lists the ids of the finalized invoices concerned."""

    def __init__(self, source: str, problems: list[str], invoices: Sequence[int]) -> None:
        super().__init__(source, problems)
        self.invoices = list(invoices)


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
    # The body validated by the rating engine (decides equality of content).
    price: Price | None = field(default=None, compare=False)

    @property
    def version(self) -> str:
        return version_label(self.effective_from, self.content_hash)

    @property
    def slot(self) -> tuple[str, str, str, date]:
        return (self.plan_id, self.price_id, self.currency, self.effective_from)


@dataclass(frozen=True, slots=True)
class CatalogPlan:
    id: str
    name: str
    minimum_commitment: dict[str, str]


@dataclass(slots=True)
class ParsedCatalog:
    """A validated catalog file (parse_catalog)."""

    plans: list[CatalogPlan] = field(default_factory=list)
    versions: list[CatalogPriceVersion] = field(default_factory=list)
    meters: MeterCatalog = field(default_factory=lambda: MeterCatalog(meters={}))
    rounding_mode: RoundingMode = SUPPORTED_ROUNDING
    source: str = "catalog"
    text: str = ""

    @property
    def content_hash(self) -> str:
        """Identifies the content: the same meters, plans and prices however written
        (numbers compared by value, mapping keys in any order)."""
        doc = {
            "rounding_mode": self.rounding_mode.value,
            "meters": [m.model_dump(mode="json") for m in self.meters.meters.values()],
            "plans": [
                {
                    "id": p.id,
                    "name": p.name,
                    "minimum_commitment": _plain_doc(_minimums(p.minimum_commitment)),
                }
                for p in self.plans
            ],
            "prices": sorted(
                [
                    [v.plan_id, v.price_id, v.currency, v.effective_from.isoformat()],
                    _terms_doc(v.meter, v.filter, _price_of(v)),
                ]
                for v in self.versions
            ),
        }
        return sha256_hex(canonical_json(doc))


@dataclass(frozen=True, slots=True)
class Catalog:
    """The catalog the ledger holds (current_catalog): typed meters, plans and the price
    versions of the loaded file, with the catalog version that holds them."""

    version: int
    content_hash: str
    source: str
    loaded_at: datetime
    meters: MeterCatalog
    plans: tuple[CatalogPlan, ...]
    prices: tuple[CatalogPriceVersion, ...]
    rounding_mode: RoundingMode


@dataclass(frozen=True, slots=True)
class RepricedPeriod:
    """A finalized invoice's period whose charges a `reprice` load changed: the caller
    re-rates it and posts the difference as adjustment lines."""

    invoice_id: int
    subscription: str
    period: Period


@dataclass(frozen=True, slots=True)
class CatalogLoadResult:
    plans_created: int
    plans_updated: int
    versions_created: int
    versions_unchanged: int
    versions_superseded: int
    versions_restored: int = 0
    # The catalog version the ledger now reads, and whether this load created it.
    catalog_version: int | None = None
    catalog_version_created: bool = False
    repriced: tuple[RepricedPeriod, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.plans_created
            or self.plans_updated
            or self.versions_created
            or self.versions_superseded
            or self.versions_restored
            or self.catalog_version_created
        )


def version_label(effective_from: date, content_hash: str) -> str:
    """The price version string charges carry: ``2026-01-01#0123456789ab``."""
    return f"{effective_from.isoformat()}#{content_hash[:12]}"


def content_hash(body: Mapping[str, Any], meter: str | None, filt: Mapping[str, Any] | None) -> str:
    return sha256_hex(canonical_json({"body": body, "meter": meter, "filter": filt}))


def validate_price_body(body: dict[str, Any], *, currency: str, name: str) -> Price:
    """THE single place where price bodies get validated by the rating engine.

    ``rating.parse_price(data, name=...)`` validates one price; the catalog keys bodies
    by currency, so the currency is added to the body it sees. Any error it raises is
    reported as a catalog problem naming the price's path in the file. The body stored
    in the ledger is the catalog's, as written (decimals as strings).
    """
    return parse_price({**body, "currency": currency}, name=name)


# --- reading and validating a file --------------------------------------------------------


def _plain_doc(value: Any) -> Any:
    """``value`` with every Decimal as its shortest exact text (0.990 -> "0.99")."""
    if isinstance(value, Mapping):
        return {str(k): _plain_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_doc(v) for v in value]
    if isinstance(value, Decimal):
        return format(plain(value), "f")
    return value


def _minimums(amounts: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """A plan's minimum commitments by value (stored as decimal text)."""
    return {str(cur): Decimal(str(amount)) for cur, amount in (amounts or {}).items()}


def _price_of(version: CatalogPriceVersion) -> Price:
    if version.price is not None:
        return version.price
    return validate_price_body(dict(version.body), currency=version.currency, name=version.version)


def _terms_doc(meter: str | None, filt: Mapping[str, Any] | None, price: Price) -> Any:
    """What a version charges, as one comparable document (numbers by value)."""
    return {
        "meter": meter,
        "filter": {str(k): str(v) for k, v in sorted((filt or {}).items())},
        "price": _plain_doc(price.model_dump(exclude_none=True)),
    }


def _ident(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
        return None
    if KEY_SEP in value:
        problems.append(f"{where}: must not contain {KEY_SEP!r}")
        return None
    return value


def _date(value: Any, where: str, problems: list[str]) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
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
    try:
        number = to_nonnegative(value, "amount")
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return format(number, "f")


def _unknown_keys(item: Mapping[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    return [
        f"{where}.{key}: unknown field (fields: {', '.join(known)})"
        for key in item
        if key not in known
    ]


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


def _price_meter(
    price: Mapping[str, Any],
    where: str,
    meters: MeterCatalog,
    invalid: set[str],
    problems: list[str],
) -> tuple[bool, str | None, dict[str, Any] | None]:
    """(ok, meter, filter) of a price: a meter the catalog defines, filtered only on that
    meter's dimensions with values it allows; a flat fee (no meter) takes no filter. A
    price on a meter in `invalid` (defined, but refused: already reported) is not checked
    further."""
    meter = price.get("meter")
    if meter is not None and not isinstance(meter, str):
        problems.append(f"{where}.meter: must be a meter name")
        return False, None, None
    filt = price.get("filter")
    if filt is not None and not isinstance(filt, Mapping):
        problems.append(f"{where}.filter: must be a mapping of dimension to value")
        return False, None, None
    try:
        filt_doc = to_json_doc(filt, f"{where}.filter")
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
        return False, None, None
    ok = True
    if meter is None:
        if filt_doc:
            problems.append(f"{where}.filter: a price without a meter (a flat fee) has no filter")
            ok = False
    elif meter in invalid:
        return False, None, None
    else:
        definition = meters.meters.get(meter)
        if definition is None:
            known = ", ".join(sorted({*meters.meters, *invalid})) or "none"
            problems.append(f"{where}.meter: {meter!r} is not a meter of this catalog ({known})")
            return False, None, None
        for key, value in (filt_doc or {}).items():
            if key not in definition.dimensions:
                problems.append(
                    f"{where}.filter.{key}: {key!r} is not a dimension of meter {meter}"
                    f" (dimensions: {', '.join(definition.dimensions) or 'none'})"
                )
                ok = False
            elif not isinstance(value, str):
                problems.append(f"{where}.filter.{key}: must be a text value, got {value!r}")
                ok = False
            elif (allowed := definition.allowed_values(key)) and value not in allowed:
                problems.append(
                    f"{where}.filter.{key}: {value!r} is not an allowed value of {key}"
                    f" ({', '.join(allowed)}): the price would never match"
                )
                ok = False
    return ok, meter, filt_doc


def parse_catalog(data: Any, source: str = "catalog", text: str = "") -> ParsedCatalog:
    """Validate a whole catalog document: every problem names its path in the file and
    the field (``meters[0] (seats).aggregation: 'summ' is not an aggregation (...)``,
    ``plans[0] (standard).prices[3] (fin).meter: 'fin' is not a meter of this catalog``).
    Raises LoadError listing them all."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise LoadError(source, ["the catalog must be a mapping with `meters` and `plans` lists"])
    problems += _unknown_keys(data, TOP_LEVEL_KEYS, "catalog")
    parsed = ParsedCatalog(source=source, text=text)
    raw_rounding = data.get("rounding_mode", SUPPORTED_ROUNDING.value)
    try:
        rounding = RoundingMode(raw_rounding)
    except ValueError:
        problems.append(
            f"rounding_mode: {raw_rounding!r} is not a rounding mode"
            f" ({', '.join(m.value for m in RoundingMode)})"
        )
    else:
        if rounding is not SUPPORTED_ROUNDING:
            problems.append(
                f"rounding_mode: {rounding.value}: close rounds every line"
                f" {SUPPORTED_ROUNDING.value} today; write {SUPPORTED_ROUNDING.value} (or omit it)"
            )
    raw_meters = data.get("meters")
    meters, meter_problems = parse_meters(raw_meters)
    problems += meter_problems
    parsed.meters = MeterCatalog(meters=meters)
    invalid = {
        m["name"]
        for m in (raw_meters if isinstance(raw_meters, list) else [])
        if isinstance(m, Mapping) and isinstance(m.get("name"), str) and m["name"] not in meters
    }

    plans = data.get("plans")
    if not isinstance(plans, list) or not plans:
        problems.append("plans: must be a non-empty list")
        plans = []
    for plan, plan_id, where in _entries(plans, "plans", "plan id", problems):
        problems += _unknown_keys(plan, PLAN_KEYS, where)
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
            text_amount = _decimal_text(amount, f"{where}.minimum_commitment.{cur}", problems)
            if currency and text_amount is not None:
                minimums[currency] = text_amount
        parsed.plans.append(CatalogPlan(plan_id, name, minimums))
        prices = plan.get("prices")
        if not isinstance(prices, list) or not prices:
            problems.append(f"{where}.prices: must be a non-empty list")
            continue
        for price, price_id, pwhere in _entries(
            prices, f"{where}.prices", f"price id in plan {plan_id}", problems
        ):
            problems += _unknown_keys(price, PRICE_KEYS, pwhere)
            ok, meter, filt_doc = _price_meter(price, pwhere, parsed.meters, invalid, problems)
            if not ok:
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
                problems += _unknown_keys(version, VERSION_KEYS, vwhere)
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
                        checked = validate_price_body(
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
                            price=checked,
                        )
                    )
    if problems:
        raise LoadError(source, problems)
    return parsed


def parse_catalog_text(text: str, source: str = "catalog") -> ParsedCatalog:
    """Validate a catalog's YAML text (billing.yamlio: no aliases, exact numbers)."""
    try:
        data = yamlio.load(text)
    except yamlio.InputError as exc:
        raise LoadError(source, [f"invalid YAML: {exc}"]) from None
    return parse_catalog(data, source, text)


def read_catalog(path: str | Path) -> ParsedCatalog:
    """Read and validate a catalog file. Raises LoadError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LoadError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise LoadError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse_catalog_text(text, str(path))


# --- the catalog the ledger holds ---------------------------------------------------------


def latest_catalog_version(session: Session) -> CatalogVersion | None:
    return session.scalars(
        select(CatalogVersion).order_by(CatalogVersion.id.desc()).limit(1)
    ).one_or_none()


@functools.lru_cache(maxsize=8)
def _parse_stored(text: str, source: str) -> ParsedCatalog:
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
        parsed = _parse_stored(row.text, f"catalog version {row.id} ({row.source})")
    except LoadError as exc:
        raise LoadError(
            exc.source,
            [*exc.problems, f"fix the file and run `{LOAD_COMMAND}` again"],
        ) from None
    return Catalog(
        version=row.id,
        content_hash=row.content_hash,
        source=row.source,
        loaded_at=row.loaded_at,
        meters=parsed.meters,
        plans=tuple(parsed.plans),
        prices=tuple(parsed.versions),
        rounding_mode=parsed.rounding_mode,
    )


# --- what a change would do to finalized invoices -------------------------------------------


@dataclass(frozen=True, slots=True)
class _Version:
    effective_from: date
    label: str
    terms: Any  # _terms_doc: compared by value


@dataclass
class _Model:
    """The pricing a catalog gives: per (plan, currency), each price's versions in date
    order; minimum commitments; how each meter counts."""

    prices: dict[tuple[str, str], dict[str, list[_Version]]]
    minimums: dict[str, dict[str, Decimal]]
    counting: dict[str, tuple[Any, ...]] | None
    meter_of: dict[tuple[str, str, str], str | None]


def _model(
    versions: Iterable[tuple[str, str, str, str | None, _Version]],
    minimums: Mapping[str, Mapping[str, str]],
    meters: MeterCatalog | None,
) -> _Model:
    prices: dict[tuple[str, str], dict[str, list[_Version]]] = defaultdict(dict)
    meter_of: dict[tuple[str, str, str], str | None] = {}
    for plan, price_id, currency, meter, version in versions:
        prices[(plan, currency)].setdefault(price_id, []).append(version)
        meter_of[(plan, price_id, currency)] = meter
    for per_price in prices.values():
        for listed in per_price.values():
            listed.sort(key=lambda v: v.effective_from)
    return _Model(
        prices=prices,
        minimums={plan: _minimums(mins) for plan, mins in minimums.items()},
        counting=(
            {name: m.counting_key() for name, m in meters.meters.items()}
            if meters is not None
            else None
        ),
        meter_of=meter_of,
    )


def _in_effect(
    versions: Sequence[_Version], tz: str, start: datetime, end: datetime
) -> list[_Version]:
    """The versions that price [start, end): the one in effect at start and every one
    that takes effect inside (a version starts at local midnight of its date)."""
    found: list[_Version] = []
    for version in versions:
        starts = local_midnight(version.effective_from, tz)
        if starts <= start:
            found = [version]
        elif starts < end:
            found.append(version)
    return found


@dataclass
class _Impact:
    invoices: set[int] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    last_end: date | None = None

    def add(self, invoice_id: int, labels: Iterable[str], local_end: date) -> None:
        self.invoices.add(invoice_id)
        self.labels.update(labels)
        self.last_end = local_end if self.last_end is None else max(self.last_end, local_end)


def _finalized_periods(
    session: Session, plans: set[str]
) -> list[tuple[int, str, str, str, str, datetime, datetime]]:
    """(invoice id, subscription, plan, currency, timezone, start, end) of every finalized
    invoice of these plans that carries charges of its own period (not only adjustments)."""
    if not plans:
        return []
    own = exists().where(
        InvoiceLine.invoice_id == Invoice.id,
        InvoiceLine.kind != "adjustment",
        InvoiceLine.service_period_start == Invoice.period_start,
    )
    rows = session.execute(
        select(
            Invoice.id,
            Subscription.external_id,
            Subscription.plan_id,
            Invoice.currency,
            Subscription.timezone,
            Invoice.period_start,
            Invoice.period_end,
        )
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(Invoice.status == "finalized", Subscription.plan_id.in_(sorted(plans)), own)
        .order_by(Invoice.id)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _short_list(ids: Iterable[int], limit: int = 10) -> str:
    ordered = sorted(ids)
    shown = ", ".join(str(i) for i in ordered[:limit])
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return f"{len(ordered)} finalized invoice(s) ({shown}{more})"


def _impact(
    session: Session, old: _Model, new: _Model, changed_plans: set[str], reprice: bool
) -> tuple[list[str], list[RepricedPeriod], list[int]]:
    """(problems, periods to re-price, invoice ids) of the change from `old` to `new`:
    problems when the change alters a finalized invoice and `reprice` is off, or alters
    how a meter counted one (never allowed)."""
    by_price: dict[tuple[str, str, str], _Impact] = defaultdict(_Impact)
    by_minimum: dict[tuple[str, str], _Impact] = defaultdict(_Impact)
    by_meter: dict[str, _Impact] = defaultdict(_Impact)
    repriced: dict[int, RepricedPeriod] = {}
    for inv_id, sub, plan, currency, tz, start, end in _finalized_periods(session, changed_plans):
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        local_end = end.astimezone(zone(tz)).date()
        old_prices = old.prices.get((plan, currency), {})
        new_prices = new.prices.get((plan, currency), {})
        touched = False
        for price_id in sorted(set(old_prices) | set(new_prices)):
            before = _in_effect(old_prices.get(price_id, []), tz, start, end)
            after = _in_effect(new_prices.get(price_id, []), tz, start, end)
            meter = old.meter_of.get((plan, price_id, currency))
            if (
                before
                and meter
                and old.counting is not None
                and new.counting is not None
                and old.counting.get(meter) != new.counting.get(meter)
            ):
                by_meter[meter].add(inv_id, [v.label for v in before], local_end)
            if [(v.effective_from, v.terms) for v in before] != [
                (v.effective_from, v.terms) for v in after
            ]:
                by_price[(plan, price_id, currency)].add(
                    inv_id, [v.label for v in before], local_end
                )
                touched = True
        if old.minimums.get(plan, {}).get(currency) != new.minimums.get(plan, {}).get(currency):
            by_minimum[(plan, currency)].add(inv_id, [], local_end)
            touched = True
        if touched:
            repriced[inv_id] = RepricedPeriod(inv_id, sub, Period(start, end))

    problems: list[str] = []
    for meter, hit in sorted(by_meter.items()):
        problems.append(
            f"meter {meter}: this catalog changes how it counts (aggregation, unique_property,"
            f" filter or dimensions), and it counted {_short_list(hit.invoices)}; the rollup of"
            " past days holds the old counting, so a meter that counted a finalized invoice"
            " never changes it: define a new meter and give a new price (a new price id) on it"
        )
    if not reprice:
        for (plan, price_id, currency), hit in sorted(by_price.items()):
            labels = ", ".join(sorted(hit.labels)) or "none (a version added before them)"
            problems.append(
                f"price {plan}/{price_id} {currency}: this catalog changes what"
                f" {_short_list(hit.invoices)} were charged; version(s) {labels} priced them."
                " A price version that priced a finalized invoice never changes in place:"
                f" give the new price a version of its own with effective_from {hit.last_end}"
                " or later, or load with --reprice to re-price those invoices with adjustment"
                " lines on the next open invoices"
            )
        for (plan, currency), hit in sorted(by_minimum.items()):
            problems.append(
                f"plan {plan} minimum_commitment {currency}: this catalog changes the minimum"
                f" that {_short_list(hit.invoices)} were trued up to (a minimum has no"
                " versions): keep it, or load with --reprice to re-price those invoices with"
                " adjustment lines on the next open invoices"
            )
    invoices = sorted(
        set().union(
            *(h.invoices for h in by_price.values()),
            *(h.invoices for h in by_minimum.values()),
            *(h.invoices for h in by_meter.values()),
        )
    )
    return problems, [repriced[i] for i in sorted(repriced)], invoices


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


# --- loading --------------------------------------------------------------------------------


def _stored_terms(row: PriceVersion) -> Any:
    price = validate_price_body(dict(row.body), currency=row.currency, name=row.version)
    return _terms_doc(row.meter, row.filter, price)


def load_catalog(
    session: Session,
    catalog: ParsedCatalog | str | Path,
    *,
    reprice: bool = False,
    loaded_at: datetime | None = None,
) -> CatalogLoadResult:
    """Store a validated catalog as the ledger's current catalog (in the session's
    transaction): its plans, its price versions (a version whose content is unchanged
    keeps its row and label; a changed or removed one stays for audit, not current) and
    a catalog version holding the file.

    Refuses with CatalogChangeRefused a change to what finalized invoices were charged
    (module docstring), unless ``reprice``: then the result's ``repriced`` lists the
    finalized periods whose corrections the caller must post (billing.post_adjustments)
    before committing. Raises LoadError when a subscription's plan or currency would be
    left without prices. ``loaded_at`` defaults to the current time (a record, not logic)."""
    parsed = catalog if isinstance(catalog, ParsedCatalog) else read_catalog(catalog)
    bulk.lock_ledger_writes(session)  # no close finalizes an invoice while we check
    problems = _subscription_problems(session, parsed)
    if problems:
        raise LoadError(parsed.source, problems)

    current_version = latest_catalog_version(session)
    old_meters: MeterCatalog | None = None
    if current_version is not None:
        try:
            old_meters = _parse_stored(current_version.text, current_version.source).meters
        except LoadError:
            old_meters = None

    stored_plans = {p.id: p for p in session.scalars(select(Plan))}
    rows = session.scalars(select(PriceVersion)).all()
    current = {
        (r.plan_id, r.price_id, r.currency, r.effective_from): r for r in rows if r.is_current
    }
    by_identity = {
        (r.plan_id, r.price_id, r.currency, r.effective_from, r.content_hash): r for r in rows
    }
    wanted = {v.slot: v for v in parsed.versions}

    # Per slot: keep the stored row (same content however written), or put the file's.
    keep: dict[tuple[str, str, str, date], PriceVersion] = {}
    put: dict[tuple[str, str, str, date], CatalogPriceVersion] = {}
    for slot, version in wanted.items():
        row = current.get(slot)
        if row is not None and (
            row.content_hash == version.content_hash
            or _stored_terms(row) == _terms_doc(version.meter, version.filter, _price_of(version))
        ):
            keep[slot] = row
        else:
            put[slot] = version
    dropped = [row for slot, row in current.items() if slot not in wanted or slot in put]

    changed_plans = {slot[0] for slot in put} | {row.plan_id for row in dropped}
    for plan in parsed.plans:
        old = stored_plans.get(plan.id)
        if old is not None and _minimums(old.minimum_commitment) != _minimums(
            plan.minimum_commitment
        ):
            changed_plans.add(plan.id)
    if old_meters is not None:
        moved = {
            name
            for name, meter in old_meters.meters.items()
            if (new := parsed.meters.meters.get(name)) is None
            or new.counting_key() != meter.counting_key()
        }
        changed_plans |= {r.plan_id for r in current.values() if r.meter in moved}

    repriced: list[RepricedPeriod] = []
    if changed_plans:
        old_model = _model(
            (
                (
                    r.plan_id,
                    r.price_id,
                    r.currency,
                    r.meter,
                    _Version(r.effective_from, r.version, _stored_terms(r)),
                )
                for r in current.values()
                if r.plan_id in changed_plans
            ),
            {p.id: p.minimum_commitment for p in stored_plans.values()},
            old_meters,
        )
        new_model = _model(
            (
                (
                    v.plan_id,
                    v.price_id,
                    v.currency,
                    v.meter,
                    _Version(
                        v.effective_from,
                        keep[v.slot].version if v.slot in keep else v.version,
                        _terms_doc(v.meter, v.filter, _price_of(v)),
                    ),
                )
                for v in parsed.versions
                if v.plan_id in changed_plans
            ),
            {p.id: p.minimum_commitment for p in parsed.plans},
            parsed.meters,
        )
        problems, repriced, invoices = _impact(
            session, old_model, new_model, changed_plans, reprice
        )
        if problems:
            raise CatalogChangeRefused(parsed.source, problems, invoices)

    plans_created = plans_updated = 0
    for plan in parsed.plans:
        old = stored_plans.get(plan.id)
        if old is None:
            session.add(
                Plan(id=plan.id, name=plan.name, minimum_commitment=plan.minimum_commitment)
            )
            plans_created += 1
        elif old.name != plan.name or _minimums(old.minimum_commitment) != _minimums(
            plan.minimum_commitment
        ):
            old.name = plan.name
            old.minimum_commitment = dict(plan.minimum_commitment)
            plans_updated += 1
    session.flush()

    if dropped:
        session.execute(
            update(PriceVersion)
            .where(PriceVersion.id.in_([r.id for r in dropped]))
            .values(is_current=False)
        )
    created = restored = 0
    for version in put.values():
        found = by_identity.get((*version.slot, version.content_hash))
        if found is not None:
            found.is_current = True  # the file went back to an earlier body
            restored += 1
            continue
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
    session.flush()

    superseded = len(dropped)
    catalog_hash = parsed.content_hash
    version_row = current_version
    version_created = False
    if current_version is None or current_version.content_hash != catalog_hash:
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
                "price_versions_superseded": superseded,
                "repriced_invoices": [p.invoice_id for p in repriced],
            },
        )
        session.add(version_row)
        session.flush()
        version_created = True
    return CatalogLoadResult(
        plans_created,
        plans_updated,
        created,
        len(keep),
        superseded,
        restored,
        catalog_version=version_row.id if version_row is not None else None,
        catalog_version_created=version_created,
        repriced=tuple(repriced),
    )


# --- price versions in effect -------------------------------------------------------------


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
