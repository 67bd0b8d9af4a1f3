"""Loading customers, subscriptions and their discounts from JSONL, YAML or CSV.

One row per subscription (a customer with two subscriptions has two rows that agree on
the customer's name, currency and timezone). Loading is all-or-nothing: every invalid
row is reported with its line number and field, and nothing is written. Re-loading
updates rows in place and is a no-op when nothing changed.

A subscription must be billable: its plan is in the loaded catalog, the plan has a price
in the subscription's currency, and each discount names a price of the plan. Otherwise
the row is refused, with what the catalog has (DESIGN.md invariant 10: usage without a
price is an error, never a 0.00 invoice). Load the catalog first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from billing import bulk, yamlio
from billing.charges import KEY_SEP
from billing.errors import LoadError
from billing.models import Customer, Invoice, Plan, PriceVersion, Subscription, SubscriptionDiscount
from billing.money import canonical, exponent, to_minor
from billing.periods import whole_hour_zone, zone

FileFormat = Literal["jsonl", "yaml", "csv"]
FORMATS: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
}
CHUNK = 1000


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('must be an exact decimal (a string such as "10.5"), not a float')
    return value


def _ident(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if KEY_SEP in value:
        raise ValueError(f"must not contain {KEY_SEP!r}")
    return value


DiscountIdentity = tuple[str, str | None, str | None, date, date | None]


def discount_identity(
    price: str,
    percent_off: Decimal | None,
    amount_off: Decimal | None,
    valid_from: date,
    valid_to: date | None,
) -> DiscountIdentity:
    """What makes two discounts the same, as loaded or as stored: a reload that gives
    every subscription the same identities leaves its discounts alone."""
    return (
        price,
        None if percent_off is None else canonical(percent_off),
        None if amount_off is None else canonical(amount_off),
        valid_from,
        valid_to,
    )


class DiscountRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price: str
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    valid_from: date
    valid_to: date | None = None

    _exact = field_validator("percent_off", "amount_off", mode="before")(_no_float)

    @model_validator(mode="after")
    def _check(self) -> DiscountRow:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        if self.percent_off is not None and not Decimal(0) < self.percent_off <= 100:
            raise ValueError(f"percent_off must be in (0, 100], got {self.percent_off}")
        if self.amount_off is not None and self.amount_off <= 0:
            raise ValueError(f"amount_off must be positive, got {self.amount_off}")
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self

    def identity(self) -> DiscountIdentity:
        return discount_identity(
            self.price, self.percent_off, self.amount_off, self.valid_from, self.valid_to
        )


class CustomerRow(BaseModel):
    """One row of the customers file: a customer and one of its subscriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    customer_id: str
    name: str
    currency: str
    timezone: str
    subscription_id: str
    plan: str
    billing_anchor_day: int
    start: date
    end: date | None = None
    discounts: list[DiscountRow] = []

    _ids = field_validator("customer_id", "subscription_id", "plan")(_ident)

    @field_validator("billing_anchor_day", mode="before")
    @classmethod
    def _anchor_int(cls, value: Any) -> Any:
        if isinstance(value, (float, Decimal)) and value != int(value):
            raise ValueError("must be a whole day of the month")
        return value

    @field_validator("billing_anchor_day")
    @classmethod
    def _anchor(cls, value: int) -> int:
        if not 1 <= value <= 31:
            raise ValueError(f"must be between 1 and 31, got {value}")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        exponent(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        if not whole_hour_zone(value):
            raise ValueError(
                f"timezone {value} has a UTC offset that is not a whole number of hours; usage "
                "is rolled up per UTC hour, so billing periods must start on a whole UTC hour"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> CustomerRow:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        for discount in self.discounts:
            if discount.amount_off is not None:
                to_minor(discount.amount_off, self.currency, "discounts.amount_off")
        return self


@dataclass(frozen=True, slots=True)
class CustomersLoadResult:
    rows: int
    customers_created: int
    customers_updated: int
    subscriptions_created: int
    subscriptions_updated: int
    discounts_replaced: int

    @property
    def changed(self) -> bool:
        return bool(
            self.customers_created
            or self.customers_updated
            or self.subscriptions_created
            or self.subscriptions_updated
            or self.discounts_replaced
        )


def detect_format(path: Path) -> FileFormat:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LoadError(
            str(path), [f"unknown file type {path.suffix!r}: use .jsonl, .yaml or .csv"]
        )
    return fmt


def _jsonl_records(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, yamlio.load_json(line)
        except yamlio.InputError as exc:
            at = f" (column {exc.column})" if exc.column is not None else ""
            yield number, ValueError(f"invalid JSON: {exc.problem}{at}")


def _csv_records(text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    start = 2
    for record in reader:
        number = start
        start = reader.line_num + 1
        if None in record:
            yield number, ValueError("more values than header columns")
            continue
        row: dict[str, Any] = {k: (v if v != "" else None) for k, v in record.items()}
        raw = row.get("discounts")
        if raw is None:
            row["discounts"] = []
        else:
            try:
                row["discounts"] = yamlio.load_json(raw)
            except yamlio.InputError as exc:
                yield number, ValueError(f"discounts: invalid JSON ({exc.problem})")
                continue
        yield number, row


def _yaml_records(text: str) -> Iterator[tuple[int, Any]]:
    try:
        yield from yamlio.iter_sequence(text)
    except Exception as exc:
        yield 0, ValueError(f"invalid YAML: {exc}")


def _describe(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "row"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{loc}: {msg}"


def parse_rows(records: Iterable[tuple[int, Any]], source: str) -> list[tuple[int, CustomerRow]]:
    """Validate records; raise LoadError naming the line and field of every problem."""
    problems: list[str] = []
    rows: list[tuple[int, CustomerRow]] = []
    for number, record in records:
        where = f"line {number}" if number else "file"
        if isinstance(record, Exception):
            problems.append(f"{where}: {record}")
            continue
        if not isinstance(record, Mapping):
            problems.append(f"{where}: must be an object with the customer fields")
            continue
        try:
            rows.append((number, CustomerRow.model_validate(dict(record))))
        except ValidationError as exc:
            problems.extend(f"{where}: {_describe(err)}" for err in exc.errors())
    customers: dict[str, tuple[int, CustomerRow]] = {}
    subscriptions: dict[str, int] = {}
    for number, row in rows:
        first = customers.setdefault(row.customer_id, (number, row))
        for fieldname in ("name", "currency", "timezone"):
            if getattr(first[1], fieldname) != getattr(row, fieldname):
                problems.append(
                    f"line {number}: {fieldname}: customer {row.customer_id} has"
                    f" {getattr(first[1], fieldname)!r} on line {first[0]}"
                )
        if row.subscription_id in subscriptions:
            problems.append(
                f"line {number}: subscription_id: {row.subscription_id} already on line"
                f" {subscriptions[row.subscription_id]}"
            )
        subscriptions.setdefault(row.subscription_id, number)
    if problems:
        raise LoadError(source, problems)
    if not rows:
        raise LoadError(source, ["no rows"])
    return rows


def read_customers(
    path: str | Path, fmt: FileFormat | None = None
) -> list[tuple[int, CustomerRow]]:
    path = Path(path)
    fmt = fmt or detect_format(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LoadError(str(path), [f"cannot read: {exc.strerror}"]) from None
    records = {"jsonl": _jsonl_records, "yaml": _yaml_records, "csv": _csv_records}[fmt](text)
    return parse_rows(records, str(path))


def check_priced(
    session: Session, rows: list[tuple[int, CustomerRow]], source: str = "customers"
) -> None:
    """Raise LoadError naming the line and field of every row whose plan is not in the
    ledger's catalog, whose plan has no price in its currency, or whose discount names a
    price the plan does not have, with what exists (the plans; the currencies the plan
    is priced in; its prices)."""
    plans = set(session.scalars(select(Plan.id)))
    currencies: dict[str, set[str]] = {}
    prices: dict[str, set[str]] = {}
    for plan, currency, price in session.execute(
        select(PriceVersion.plan_id, PriceVersion.currency, PriceVersion.price_id)
        .where(PriceVersion.is_current.is_(True))
        .distinct()
    ):
        currencies.setdefault(plan, set()).add(currency)
        prices.setdefault(plan, set()).add(price)
    problems: list[str] = []
    for number, row in rows:
        where = f"line {number}" if number else "row"
        if row.plan not in plans:
            if not plans:
                problems.append(
                    f"{where}: plan: {row.plan!r}, but no catalog is loaded: load the catalog"
                    " first (`meterline catalog load`)"
                )
            else:
                problems.append(
                    f"{where}: plan: unknown plan {row.plan!r}; the catalog's plans are"
                    f" {', '.join(sorted(plans))}"
                )
            continue
        priced = currencies.get(row.plan, set())
        if row.currency not in priced:
            problems.append(
                f"{where}: currency: plan {row.plan} has no price in {row.currency}; it is"
                + (f" priced in {', '.join(sorted(priced))}" if priced else " priced in none")
            )
        for i, discount in enumerate(row.discounts):
            if discount.price not in prices.get(row.plan, set()):
                problems.append(
                    f"{where}: discounts.{i}.price: plan {row.plan} has no price"
                    f" {discount.price!r}; its prices are"
                    f" {', '.join(sorted(prices.get(row.plan, ()))) or 'none'}"
                )
    if problems:
        raise LoadError(source, problems)


def _by_external_id(session: Session, table: Table, ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in bulk.in_chunks(session, ids):
        stmt = select(table).where(bulk.where_in(session, table.c.external_id, part))
        for row in session.execute(stmt).all():
            found[row.external_id] = row
    return found


def load_customers(
    session: Session, rows: list[tuple[int, CustomerRow]], source: str = "customers"
) -> CustomersLoadResult:
    """Upsert customers, subscriptions and discounts (in the session's transaction).

    A subscription that already has invoices keeps its currency, anchor day, timezone
    and start date: changing them would move or re-price periods already billed. Every
    row must be billable by the loaded catalog (check_priced): LoadError otherwise.
    """
    check_priced(session, rows, source)
    customers_t: Table = Customer.__table__  # type: ignore[assignment]
    subs_t: Table = Subscription.__table__  # type: ignore[assignment]
    disc_t: Table = SubscriptionDiscount.__table__  # type: ignore[assignment]

    first_by_customer: dict[str, CustomerRow] = {}
    for _, row in rows:
        first_by_customer.setdefault(row.customer_id, row)
    existing_c = _by_external_id(session, customers_t, list(first_by_customer))
    new_c, changed_c = [], []
    for ext, row in first_by_customer.items():
        values: dict[str, Any] = {
            "name": row.name,
            "currency": row.currency,
            "timezone": row.timezone,
        }
        old = existing_c.get(ext)
        if old is None:
            new_c.append({"external_id": ext, **values})
        elif (old.name, old.currency, old.timezone) != (row.name, row.currency, row.timezone):
            changed_c.append({"b_id": old.id, **values})
    if new_c:
        bulk.insert_rows(session, customers_t, new_c)
    if changed_c:
        session.execute(update(customers_t).where(customers_t.c.id == bindparam("b_id")), changed_c)
    customer_ids = {
        ext: r.id
        for ext, r in _by_external_id(session, customers_t, list(first_by_customer)).items()
    }

    sub_rows = {row.subscription_id: (number, row) for number, row in rows}
    existing_s = _by_external_id(session, subs_t, list(sub_rows))
    invoiced: set[int] = set()
    ids = [r.id for r in existing_s.values()]
    for part in bulk.in_chunks(session, ids):
        invoiced.update(
            session.scalars(
                select(Invoice.subscription_id)
                .where(bulk.where_in(session, Invoice.subscription_id, part))
                .distinct()
            )
        )
    problems: list[str] = []
    new_s, changed_s = [], []
    for ext, (number, row) in sub_rows.items():
        values = {
            "customer_id": customer_ids[row.customer_id],
            "plan_id": row.plan,
            "currency": row.currency,
            "billing_anchor_day": row.billing_anchor_day,
            "timezone": row.timezone,
            "start_date": row.start,
            "end_date": row.end,
        }
        old = existing_s.get(ext)
        if old is None:
            new_s.append({"external_id": ext, **values})
            continue
        diff = [k for k, v in values.items() if getattr(old, k) != v]
        if not diff:
            continue
        if old.customer_id != values["customer_id"]:
            problems.append(
                f"line {number}: customer_id: subscription {ext} belongs to another customer"
            )
        if old.id in invoiced:
            frozen = [
                k for k in diff if k in ("currency", "billing_anchor_day", "timezone", "start_date")
            ]
            problems.extend(
                f"line {number}: {k.replace('_date', '')}: subscription {ext} already has invoices;"
                " this field can no longer change"
                for k in frozen
            )
        changed_s.append({"b_id": old.id, **values})
    if problems:
        raise LoadError(source, problems)
    if new_s:
        bulk.insert_rows(session, subs_t, new_s)
    if changed_s:
        session.execute(update(subs_t).where(subs_t.c.id == bindparam("b_id")), changed_s)
    sub_ids = {ext: r.id for ext, r in _by_external_id(session, subs_t, list(sub_rows)).items()}

    current: dict[int, list[tuple[Any, ...]]] = {}
    for part in bulk.in_chunks(session, sub_ids.values()):
        for d in session.execute(
            select(disc_t)
            .where(bulk.where_in(session, disc_t.c.subscription_id, part))
            .order_by(disc_t.c.id)
        ).all():
            current.setdefault(d.subscription_id, []).append(
                discount_identity(d.price_id, d.percent_off, d.amount_off, d.valid_from, d.valid_to)
            )
    replace_ids: list[int] = []
    new_d: list[dict[str, Any]] = []
    for ext, (_, row) in sub_rows.items():
        sid = sub_ids[ext]
        wanted = [d.identity() for d in row.discounts]
        if sorted(wanted, key=repr) == sorted(current.get(sid, []), key=repr):
            continue
        replace_ids.append(sid)
        new_d.extend(
            {
                "subscription_id": sid,
                "price_id": d.price,
                "percent_off": d.percent_off,
                "amount_off": d.amount_off,
                "valid_from": d.valid_from,
                "valid_to": d.valid_to,
            }
            for d in row.discounts
        )
    for part in bulk.in_chunks(session, replace_ids):
        session.execute(
            delete(disc_t).where(bulk.where_in(session, disc_t.c.subscription_id, part))
        )
    if new_d:
        bulk.insert_rows(session, disc_t, new_d)
    session.flush()
    session.expire_all()
    return CustomersLoadResult(
        rows=len(rows),
        customers_created=len(new_c),
        customers_updated=len(changed_c),
        subscriptions_created=len(new_s),
        subscriptions_updated=len(changed_s),
        discounts_replaced=len(replace_ids),
    )


def load_customers_file(
    session: Session, path: str | Path, fmt: FileFormat | None = None
) -> CustomersLoadResult:
    return load_customers(session, read_customers(path, fmt), str(path))
