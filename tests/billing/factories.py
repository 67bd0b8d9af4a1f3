"""Plain helpers for ledger tests: customers, versions, charges."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import billing
from billing.models import Invoice, InvoiceLine
from billing.money import exponent

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "catalog" / "intercom.yaml"

CUSTOMERS: list[dict[str, Any]] = [
    {
        "customer_id": "cus_00001",
        "name": "Acme 1",
        "currency": "USD",
        "timezone": "America/New_York",
        "subscription_id": "sub_00001",
        "plan": "standard",
        "billing_anchor_day": 1,
        "start": "2026-01-01",
        "end": None,
        "discounts": [
            {
                "price": "fin_resolution",
                "percent_off": "10",
                "amount_off": None,
                "valid_from": "2026-10-01",
                "valid_to": None,
            }
        ],
    },
    {
        "customer_id": "cus_00002",
        "name": "Globex",
        "currency": "EUR",
        "timezone": "Europe/Dublin",
        "subscription_id": "sub_00002",
        "plan": "volume",
        "billing_anchor_day": 31,
        "start": "2026-01-15",
        "end": None,
        "discounts": [],
    },
    {
        "customer_id": "cus_00003",
        "name": "Initech",
        "currency": "USD",
        "timezone": "UTC",
        "subscription_id": "sub_00003",
        "plan": "committed",
        "billing_anchor_day": 15,
        "start": "2026-01-15",
        "end": "2026-06-15",
        "discounts": [],
    },
]

#: Plans of the customers above, by subscription.
PLAN = {row["subscription_id"]: row["plan"] for row in CUSTOMERS}
CURRENCY = {row["subscription_id"]: row["currency"] for row in CUSTOMERS}
TIMEZONE = {row["subscription_id"]: row["timezone"] for row in CUSTOMERS}
ANCHOR = {row["subscription_id"]: row["billing_anchor_day"] for row in CUSTOMERS}


def write_customers(path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows or CUSTOMERS)))
    return path


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def period_of(sub: str, year: int, month: int, day: int = 20) -> billing.Period:
    """The billing period of one of the CUSTOMERS' subscriptions containing a UTC day."""
    return billing.period_containing(ANCHOR[sub], TIMEZONE[sub], utc(year, month, day))


def versions(
    session: Session, plan: str, currency: str, on: date = date(2026, 6, 1)
) -> dict[str, str]:
    return {
        v.price_id: v.version for v in billing.price_versions_in_effect(session, plan, currency, on)
    }


def usage(
    price_id: str,
    version: str,
    quantity: Decimal | int | str,
    unit: str,
    currency: str = "USD",
    *,
    group: str | None = None,
    meter: str | None = "fin_resolution",
    kind: str = "usage",
) -> billing.ChargeLine:
    """A per-unit charge, rounded half-up once (as the rating engine does)."""
    qty = Decimal(quantity)
    precise = qty * Decimal(unit)
    quantum = Decimal(1).scaleb(-exponent(currency))
    return billing.ChargeLine(
        price_id=price_id,
        price_version=version,
        kind=kind,  # type: ignore[arg-type]
        quantity=qty,
        unit_amount=Decimal(unit),
        amount=precise.quantize(quantum, rounding=ROUND_HALF_UP),
        amount_precise=precise,
        currency=currency,
        meter=meter,
        group=group,
        breakdown=[
            {
                "kind": "tier",
                "tier": 1,
                "units": str(qty),
                "unit_amount": unit,
                "amount": str(precise),
            }
        ],
        description=f"{price_id} x {qty}",
    )


def standard_charges(
    session: Session, resolutions: int = 100, seats: str = "3"
) -> list[billing.ChargeLine]:
    """Charges for sub_00001 (plan standard, USD)."""
    v = versions(session, "standard", "USD")
    return [
        usage("fin_resolution", v["fin_resolution"], resolutions, "0.99"),
        usage(
            "seat_advanced",
            v["seat_advanced"],
            seats,
            "99",
            group="seat_type=advanced",
            meter="seats",
        ),
    ]


def count_lines(session: Session, invoice_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(InvoiceLine)
    if invoice_id is not None:
        stmt = stmt.where(InvoiceLine.invoice_id == invoice_id)
    return int(session.scalar(stmt) or 0)


def invoice(session: Session, invoice_id: int) -> Invoice:
    found = session.get(Invoice, invoice_id)
    assert found is not None
    return found


def line_amount_sum(session: Session, invoice_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(InvoiceLine.amount_minor), 0)).where(
                InvoiceLine.invoice_id == invoice_id
            )
        )
        or 0
    )
