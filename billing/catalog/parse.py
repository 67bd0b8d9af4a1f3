"""Reading and validating a catalog file: the whole of it, every problem named by its
path in the file and its field, raised together as one LoadError (docs/catalog.md).

Meters through meters.catalog.parse_meters; prices on meters the catalog defines,
filtered only on those meters' dimensions with values they allow; price bodies through
the rating engine (validate_price_body); YAML through billing.yamlio (no aliases, exact
numbers).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from billing import yamlio
from billing.bulk import MAX_AMOUNT_MINOR
from billing.catalog.model import (
    SUPPORTED_ROUNDING,
    CatalogPlan,
    CatalogPriceVersion,
    ParsedCatalog,
    content_hash,
    validate_price_body,
)
from billing.charges import KEY_SEP, to_json_doc
from billing.customers.rows import FIRST_DAY, ID_MAX, LAST_DAY, NAME_MAX, printable_problem
from billing.errors import LoadError
from billing.money import CurrencyError, exponent, from_minor
from meters.catalog import MeterCatalog, parse_meters
from rating import RoundingMode
from rating.decimals import to_decimal, to_nonnegative
from rating.period import FIXED_FEE_AGGREGATIONS
from rating.price import PRORATION_OPTIONS

TOP_LEVEL_KEYS = ("rounding_mode", "meters", "plans")
PLAN_KEYS = ("id", "name", "minimum_commitment", "prices")
PRICE_KEYS = ("id", "meter", "filter", "tax_code", "versions")
#: A tax code as the tax engine names its product categories (AvaTax: SW054000 for
#: software as a service, NT for not taxable, or a company's own code): letters, digits,
#: "-", "_" and ".", at most 25 characters (AvaTax's limit for a line's taxCode).
TAX_CODE = re.compile(r"[A-Za-z0-9._-]{1,25}\Z")
VERSION_KEYS = ("effective_from", "prices")


def parse_catalog(data: Any, source: str = "catalog", text: str = "") -> ParsedCatalog:
    """Validate a whole catalog document: every problem names its path in the file and
    the field (``meters[0] (seats).aggregation: 'summ' is not an aggregation (...)``,
    ``plans[0] (standard).prices[3] (fin).meter: 'fin' is not a meter of this catalog``).
    Raises LoadError listing them all."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise LoadError(source, ["the catalog must be a mapping with `meters` and `plans` lists"])
    nul = [
        f"{where}: holds the character U+0000 (\\0), which the ledger cannot store"
        for where in _nul_paths(data, "catalog")
    ]
    if nul:
        raise LoadError(source, nul)
    problems += _unknown_keys(data, TOP_LEVEL_KEYS, "catalog")
    parsed = ParsedCatalog(source=source, text=text)
    _check_rounding(data.get("rounding_mode", SUPPORTED_ROUNDING.value), problems)
    raw_meters = data.get("meters")
    meters, meter_problems = parse_meters(raw_meters)
    problems += meter_problems
    parsed.meters = MeterCatalog(meters=meters)
    # Meters that are defined but refused (already reported): prices on them are not
    # checked further.
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
        parsed.plans.append(_plan(plan, plan_id, where, problems))
        prices = plan.get("prices")
        if not isinstance(prices, list) or not prices:
            problems.append(f"{where}.prices: must be a non-empty list")
            continue
        for price, price_id, pwhere in _entries(
            prices, f"{where}.prices", f"price id in plan {plan_id}", problems
        ):
            problems += _unknown_keys(price, PRICE_KEYS, pwhere)
            _tax_code(price, price_id, pwhere, parsed.tax_codes, problems)
            ok, meter, filt_doc = _price_meter(price, pwhere, parsed.meters, invalid, problems)
            if ok:
                on = (meter, _aggregation(parsed.meters, meter), filt_doc)
                parsed.versions += _versions(price, (plan_id, price_id), on, pwhere, problems)
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
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise LoadError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        before = exc.object[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - before.rfind(b"\n")
        raise LoadError(
            str(path), [f"line {line}, column {column}: not UTF-8 text; save the file as UTF-8"]
        ) from None
    return parse_catalog_text(text, str(path))


def _tax_code(
    price: Mapping[str, Any],
    price_id: str,
    where: str,
    codes: dict[str, tuple[str | None, str]],
    problems: list[str],
) -> None:
    """Record a price's ``tax_code`` (optional: the tax engine's code of what the price
    sells, docs/tax.md) in ``codes`` (price id -> (code, where it was given)). A price id
    has one tax code in the whole catalog (a line names its price id, not its plan):
    the same price in two plans gives the same code or none in both."""
    code = price.get("tax_code")
    if code is not None and (not isinstance(code, str) or not TAX_CODE.match(code)):
        rule = (
            "a tax code is letters, digits, '-', '_' or '.', at most 25 characters (e.g."
            " SW054000, software as a service)"
        )
        if isinstance(code, (int, Decimal)) and not isinstance(code, bool):
            # YAML read a number: a code is text, which quotes keep as written.
            rule = f"write it in quotes ('{code}') if that is the code; {rule}"
            shown = f"the number {code}"
        elif isinstance(code, bool):
            shown = f"the boolean {str(code).lower()}"
        elif isinstance(code, str):
            shown = repr(code if len(code) <= 40 else code[:37] + "...")
        else:
            shown = "a list" if isinstance(code, list) else "an object"
        problems.append(f"{where}.tax_code: {shown} is not a tax code: {rule}")
        return
    first = codes.setdefault(price_id, (code, where))
    if first[0] != code:

        def said(value: str | None) -> str:
            return "no tax_code" if value is None else f"tax_code {value}"

        problems.append(
            f"{where}.tax_code: price {price_id} has {said(code)} here and {said(first[0])}"
            f" at {first[1]}: a price id has one tax code in the whole catalog (a line names"
            " its price, not its plan); give the same in every plan"
        )


def _check_rounding(raw: Any, problems: list[str]) -> None:
    try:
        rounding = RoundingMode(raw)
    except ValueError:
        problems.append(
            f"rounding_mode: {raw!r} is not a rounding mode"
            f" ({', '.join(m.value for m in RoundingMode)})"
        )
        return
    if rounding is not SUPPORTED_ROUNDING:
        problems.append(
            f"rounding_mode: {rounding.value}: close rounds every line"
            f" {SUPPORTED_ROUNDING.value} today; write {SUPPORTED_ROUNDING.value} (or omit it)"
        )


def _plan(plan: Mapping[str, Any], plan_id: str, where: str, problems: list[str]) -> CatalogPlan:
    """A plan's name and minimum commitments (currency -> amount as decimal text)."""
    name = plan.get("name", plan_id)
    if not isinstance(name, str):
        problems.append(f"{where}.name: must be a string")
        name = plan_id
    elif (problem := printable_problem(name)) is not None or len(name) > NAME_MAX:
        problems.append(
            f"{where}.name: {problem or f'has {len(name)} characters'}"
            f"; a name is printable text of at most {NAME_MAX} characters"
        )
        name = plan_id
    minimums: dict[str, str] = {}
    raw_min = plan.get("minimum_commitment") or {}
    if not isinstance(raw_min, Mapping):
        problems.append(f"{where}.minimum_commitment: must map currency to amount")
        raw_min = {}
    for cur, amount in raw_min.items():
        currency = _currency(cur, f"{where}.minimum_commitment.{cur}", problems)
        text_amount = _decimal_text(amount, f"{where}.minimum_commitment.{cur}", problems, currency)
        if currency and text_amount is not None:
            minimums[currency] = text_amount
    return CatalogPlan(plan_id, name, minimums)


def _versions(
    price: Mapping[str, Any],
    ids: tuple[str, str],
    on: tuple[str | None, str | None, dict[str, Any] | None],
    where: str,
    problems: list[str],
) -> list[CatalogPriceVersion]:
    """The versions of one price (`ids`: plan id, price id; `on`: its meter, the
    meter's aggregation and its filter), one per effective date and currency; each date
    once, each body valid for the rating engine (a `proration` only on a fixed fee)."""
    plan_id, price_id = ids
    meter, aggregation, filt_doc = on
    found: list[CatalogPriceVersion] = []
    versions = price.get("versions")
    if not isinstance(versions, list) or not versions:
        problems.append(f"{where}.versions: must be a non-empty list")
        return found
    seen_from: set[date] = set()
    for version, vwhere in _mappings(versions, f"{where}.versions", problems):
        problems += _unknown_keys(version, VERSION_KEYS, vwhere)
        effective = _date(version.get("effective_from"), f"{vwhere}.effective_from", problems)
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
            if "proration" in body and body["proration"] not in PRORATION_OPTIONS:
                # Checked here, with its path: the rating engine reads a missing
                # value and null alike (the default), but a null written is a mistake.
                problems.append(
                    f"{bwhere}.proration: must be prorate (a partial first or last period"
                    " bills its share of the billing cycle) or full (it bills the whole"
                    f" amount), not {_shown(body['proration'])}; leave it out for prorate"
                )
                continue
            beyond = _beyond_limits(body, currency, bwhere)
            if beyond:
                problems += beyond
                continue
            try:
                body_doc = to_json_doc(body, bwhere)
                checked = validate_price_body(
                    body_doc, currency=currency, name=f"{plan_id}/{price_id}/{currency}"
                )
            except Exception as exc:  # the rating engine's message, with our path
                problems.append(f"{bwhere}: {exc}")
                continue
            if "proration" in body_doc:
                refused = _proration_problem(aggregation, bwhere)
                if refused is not None:
                    problems.append(refused)
                    continue
            slot = (plan_id, price_id, currency, effective)
            terms = (meter, filt_doc, body_doc, content_hash(body_doc, meter, filt_doc))
            found.append(CatalogPriceVersion(*slot, *terms, price=checked))
    return found


def _aggregation(meters: MeterCatalog, meter: str | None) -> str | None:
    """The aggregation of a price's meter (None for a flat fee)."""
    return None if meter is None else meters.meters[meter].aggregation.value


def _proration_problem(aggregation: str | None, where: str) -> str | None:
    """Why a price body's `proration` is refused: only a fixed fee is prorated for a
    partial period, a flat price (no meter, `aggregation` None) or a price on a `latest`
    meter (rating.period.FIXED_FEE_AGGREGATIONS); usage is billed as measured, and a
    time_weighted quantity is prorated by its normalization to the whole cycle already.
    None when the price may carry it."""
    if aggregation is None or aggregation in FIXED_FEE_AGGREGATIONS:
        return None
    why = (
        "its quantity is already divided by the whole billing cycle, which prorates it"
        if aggregation == "time_weighted"
        else "usage is billed as measured, never prorated"
    )
    fixed = "/".join(sorted(FIXED_FEE_AGGREGATIONS))
    return (
        f"{where}.proration: only a fixed fee (a flat price, or a price on a {fixed} meter)"
        f" is prorated for a partial period, and this price's meter is {aggregation}: {why};"
        " remove `proration`"
    )


def _ident(value: Any, where: str, problems: list[str]) -> str | None:
    """A plan or price id: the customers file's rule for the ids it names
    (billing.customers.rows: printable, at most ID_MAX characters, no KEY_SEP), which is
    also what the ledger's columns hold."""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
        return None
    if KEY_SEP in value:
        problems.append(f"{where}: must not contain {KEY_SEP!r}")
        return None
    problem = printable_problem(value)
    if problem is not None:
        problems.append(f"{where}: {problem}; ids must be printable text")
        return None
    if len(value) > ID_MAX:
        problems.append(f"{where}: has {len(value)} characters; at most {ID_MAX}")
        return None
    return value


def _nul_paths(value: Any, where: str) -> Iterator[str]:
    """The path of every key or text of a document that holds a NUL character (YAML
    writes one as \\0): PostgreSQL stores none, in a text column or a JSON document."""
    if isinstance(value, str):
        if "\x00" in value:
            yield where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            shown = str(key).replace("\x00", "\\0")
            path = f"{where}.{shown}"
            if isinstance(key, str) and "\x00" in key:
                yield path
            yield from _nul_paths(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{where}[{index}]")


def _date(value: Any, where: str, problems: list[str]) -> date | None:
    """A date, within the days a subscription can have (billing.customers.rows): a
    version from 0001-01-01 cannot even be placed in a zone east of UTC."""
    day: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(value)
    if day is None:
        problems.append(f"{where}: must be a date YYYY-MM-DD, got {value!r}")
        return None
    if not FIRST_DAY <= day <= LAST_DAY:
        problems.append(f"{where}: {day.isoformat()} is outside {FIRST_DAY} .. {LAST_DAY}")
        return None
    return day


def _currency(value: Any, where: str, problems: list[str]) -> str | None:
    try:
        exponent(value)
    except CurrencyError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return str(value)


def _decimal_text(
    value: Any, where: str, problems: list[str], currency: str | None = None
) -> str | None:
    try:
        number = to_nonnegative(value, "amount")
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if currency is not None:
        beyond = _amount_beyond(number, currency, where)
        if beyond:
            problems.append(beyond)
            return None
    return format(number, "f")


# The numbers of a catalog, bounded so that every sum and product of the rating stays
# exact and every amount fits the ledger (docs/catalog.md, "Limits"):
# - an amount (a field ending in `amount`, a minimum commitment): at most the largest
#   amount the ledger holds, 2^63-1 minor units of its currency (billing.bulk
#   .MAX_AMOUNT_MINOR: USD 92,233,720,368,547,758.07), with at most 12 decimal places;
# - any other number (tier bounds, free units, a package size, a rate): below 10^29 with
#   at most 9 decimal places, the range of the warehouse's quantities (Decimal(38, 9)).
AMOUNT_PLACES = 12
QUANTITY_LIMIT = Decimal(10) ** 29
QUANTITY_PLACES = 9


def _places(number: Decimal) -> int:
    """Decimal places of a number once written out (trailing zeros do not count)."""
    tail = number.normalize(Context(prec=200)).as_tuple().exponent
    return max(0, -tail) if isinstance(tail, int) else 0


def _amount_beyond(number: Decimal, currency: str, where: str) -> str | None:
    """The problem with an amount beyond the ledger's limit or too precise; None."""
    limit = from_minor(MAX_AMOUNT_MINOR, currency)
    if abs(number) > limit:
        return (
            f"{where}: {format(number, 'f')} is beyond the largest amount the ledger holds,"
            f" {currency} {format(limit, ',f')} (2^63-1 minor units)"
        )
    if _places(number) > AMOUNT_PLACES:
        return f"{where}: {format(number, 'f')} has more than {AMOUNT_PLACES} decimal places"
    return None


def _beyond_limits(body: Any, currency: str, where: str) -> list[str]:
    """Every number of a price body beyond its limit (above), each named by its path in
    the body; numbers that are not valid at all are left to the rating's validation."""
    problems: list[str] = []
    if isinstance(body, Mapping):
        for key, value in body.items():
            path = f"{where}.{key}"
            if isinstance(value, Mapping | list):
                problems += _beyond_limits(value, currency, path)
                continue
            try:
                number = to_decimal(value, path)
            except ValueError:
                continue
            if str(key).endswith("amount"):
                beyond = _amount_beyond(number, currency, path)
                if beyond:
                    problems.append(beyond)
            elif abs(number) >= QUANTITY_LIMIT:
                problems.append(
                    f"{path}: {format(number, 'f')} is beyond the largest quantity meterline"
                    " bills (below 10^29)"
                )
            elif _places(number) > QUANTITY_PLACES:
                problems.append(
                    f"{path}: {format(number, 'f')} has more than {QUANTITY_PLACES} decimal"
                    " places (quantities are stored with 9)"
                )
    elif isinstance(body, list):
        for index, item in enumerate(body):
            problems += _beyond_limits(item, currency, f"{where}[{index}]")
    return problems


#: Fields of a price body written a level too high (a price's or a version's): where
#: they belong.
_BODY_FIELD_HINT = {
    "proration": "; `proration` belongs in the price body, under"
    " versions[].prices.<CURRENCY> (next to `model`)",
}


def _unknown_keys(item: Mapping[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    return [
        f"{where}.{key}: unknown field (fields: {', '.join(known)})"
        + (_BODY_FIELD_HINT.get(key, "") if known in (PRICE_KEYS, VERSION_KEYS) else "")
        for key in item
        if key not in known
    ]


def _shown(value: Any) -> str:
    """A value as a person wrote it in YAML (null, a quoted string, a number)."""
    return "null" if value is None else repr(value)


def _mappings(
    items: list[Any], path: str, problems: list[str]
) -> Iterator[tuple[Mapping[str, Any], str]]:
    """(entry, where) of each mapping in `items`, `where` its path; a problem for every
    other entry."""
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        if isinstance(item, Mapping):
            yield item, where
        else:
            problems.append(f"{where}: must be a mapping")


def _entries(
    items: list[Any], path: str, what: str, problems: list[str]
) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """(entry, id, where) of each mapping in `items` with a valid id not seen before in
    the list; a problem for every other entry. `where` names the entry by path and id."""
    seen: set[str] = set()
    for item, where in _mappings(items, path, problems):
        ident = _ident(item.get("id"), f"{where}.id", problems)
        if ident is None:
            continue
        where = f"{where} ({ident})"
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
