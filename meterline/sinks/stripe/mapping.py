"""From the ledger's documents to Stripe's parameters: pure, no I/O (docs/stripe.md has
the field mapping table).

Amounts: the ledger holds integer minor units of the ISO 4217 exponent; Stripe's API
takes integers in *its* minor unit (https://docs.stripe.com/currencies): zero-decimal
currencies (JPY, KRW, ...), two-decimal ISK (ISO: zero; "an ISK amount of 100
represents 1 króna", multiples of 100 only) and three-decimal currencies whose last
digit must be 0 (BHD, JOD, KWD, OMR, TND). ``stripe_amount`` converts exactly or
refuses: Stripe must never re-round our money, and neither may we.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import exponent
from billing.outbox import EventDoc, InvoiceDoc, LineDoc
from meterline.output import plain_numbers

#: Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
#: Stripe's three-decimal currencies: amounts must end in 0 (#three-decimal).
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
#: Currencies Stripe's API writes with two decimals whose charges must be whole units
#: (#special-cases): the amount must be a multiple of 100.
WHOLE_UNITS_IN_TWO_DECIMALS = frozenset({"ISK"})

#: Stripe metadata: at most 50 keys, key names up to 40 characters, values up to 500
#: (https://docs.stripe.com/metadata).
METADATA_VALUE_MAX = 500
#: Invoice line descriptions are cut to this many characters (the full explanation
#: stays in our ledger and statement).
DESCRIPTION_MAX = 500
#: Lines per add_lines call (requests stay small; Stripe documents no lower limit).
ADD_LINES_MAX = 50
#: Invoice items one Stripe invoice may hold (Stripe: "a maximum of 250 items").
MAX_ITEMS = 250

# Metadata keys: what ties a Stripe object to ours (the sink looks objects up by them).
CUSTOMER_KEY = "meterline_customer_id"
INVOICE_KEY = "meterline_invoice_id"
LINE_KEY = "meterline_line_id"


class AmountNotRepresentable(ValueError):
    """A ledger amount has no exact value in Stripe's unit for its currency."""


def stripe_exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def stripe_amount(minor: int, currency: str) -> int:
    """``minor`` (ISO 4217 minor units) in Stripe's unit for ``currency``, exactly.
    Raises AmountNotRepresentable when Stripe could only take it rounded."""
    code = currency.upper()
    shift = stripe_exponent(code) - exponent(code)
    value = minor * 10**shift if shift >= 0 else None
    if value is None:
        quotient, remainder = divmod(minor, 10**-shift)
        if remainder:
            raise AmountNotRepresentable(
                f"{minor} minor units of {code} have no exact amount in Stripe, which takes"
                f" {code} in units of 10^-{stripe_exponent(code)}"
            )
        value = quotient
    if code in THREE_DECIMAL and value % 10:
        raise AmountNotRepresentable(
            f"{value} (a {code} amount in thousandths) does not end in 0, which Stripe"
            " requires of three-decimal currencies; price it in whole hundredths"
        )
    if code in WHOLE_UNITS_IN_TWO_DECIMALS and value % 100:
        raise AmountNotRepresentable(
            f"{value} is not a whole number of {code}, which Stripe requires"
        )
    return value


def ledger_minor(amount: int, currency: str) -> int:
    """The inverse of stripe_amount: a Stripe amount in ISO 4217 minor units."""
    code = currency.upper()
    shift = stripe_exponent(code) - exponent(code)
    return amount // 10**shift if shift >= 0 else amount * 10**-shift


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _text(value: object, limit: int = METADATA_VALUE_MAX) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _local_day(iso: str, timezone: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone)).date().isoformat()


def line_description(line: LineDoc, timezone: str) -> str:
    """What the customer reads on the Stripe invoice. A charge: the price (and its
    dimension group), then our one-line explanation with its numbers written plainly
    (``fin_resolution: quantity 12,088 = tier 1: 1,000 × 0.99 + ...``). A correction: what
    it corrects, the corrected period in the subscription's local dates (end exclusive)
    and the change of quantity; Stripe shows its amount beside it."""
    label = line.price_id
    if line.dimension_group:
        label = f"{label} ({line.dimension_group})"
    if line.kind == "adjustment":
        start = _local_day(line.service_period_start, timezone)
        end = _local_day(line.service_period_end, timezone)
        change = line.quantity_decimal.normalize()
        if change == change.to_integral_value():
            change = change.quantize(1)
        text = f"Correction of {label}, {start} to {end}: {change:+,f} units"
        return _text(text, DESCRIPTION_MAX)
    description = plain_numbers(line.description.strip())
    return _text(f"{label}: {description}" if description else label, DESCRIPTION_MAX)


def line_metadata(line: LineDoc) -> dict[str, str]:
    """Metadata on a Stripe invoice item: which ledger line it is and what it charges."""
    meta = {
        LINE_KEY: str(line.line_id),
        "meterline_line_key": _text(line.key),
        "meterline_kind": line.kind,
        "meterline_quantity": _text(line.quantity),
        "meterline_price_id": line.price_id,
        "meterline_price_version": line.price_version,
    }
    if line.meter:
        meta["meterline_meter"] = line.meter
    if line.adjusts_line_id is not None:
        meta["meterline_adjusts_line_id"] = str(line.adjusts_line_id)
    if line.adjusts_key:
        meta["meterline_adjusts_key"] = _text(line.adjusts_key)
    if line.credit_grant_id:
        # A credit line (a negative item: Stripe takes a negative invoice item amount)
        # names the grant that pays it, as does a correction of one.
        meta["meterline_credit_grant_id"] = line.credit_grant_id
    return meta


def add_line(line: LineDoc, timezone: str = "UTC") -> dict[str, Any]:
    """One entry of ``lines`` for POST /v1/invoices/:id/add_lines."""
    return {
        "amount": stripe_amount(line.amount_minor, line.currency),
        "description": line_description(line, timezone),
        "period": {
            "start": _unix(line.service_period_start),
            "end": _unix(line.service_period_end),
        },
        "metadata": line_metadata(line),
    }


def invoice_metadata(doc: InvoiceDoc) -> dict[str, str]:
    return {
        INVOICE_KEY: str(doc.invoice_id),
        CUSTOMER_KEY: doc.customer,
        "meterline_subscription": doc.subscription,
        # The local billing period, in the subscription's timezone (end exclusive).
        "meterline_billing_period": f"{doc.period_start_local}..{doc.period_end_local}",
        "meterline_timezone": doc.timezone,
    }


def invoice_create(
    doc: InvoiceDoc, customer_id: str, *, collection_method: str, days_until_due: int
) -> dict[str, Any]:
    """Params of POST /v1/invoices: a draft that sweeps in no pending items and does
    not advance on its own while we add lines."""
    params: dict[str, Any] = {
        "customer": customer_id,
        "currency": doc.currency.lower(),
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "collection_method": collection_method,
        "metadata": invoice_metadata(doc),
        "description": _text(
            f"Usage of {doc.subscription}, {doc.period_start_local} to {doc.period_end_local}",
            DESCRIPTION_MAX,
        ),
    }
    # Stripe refuses days_until_due on charge_automatically invoices.
    if collection_method == "send_invoice":
        params["days_until_due"] = days_until_due
    return params


def customer_create(doc: InvoiceDoc) -> dict[str, Any]:
    return {"name": _text(doc.customer_name, 256), "metadata": {CUSTOMER_KEY: doc.customer}}


def idempotency_key(*parts: object, params: Any = None) -> str:
    """A Stripe idempotency key (at most 255 characters) from stable parts, plus a hash of
    the params when given: the same request always gets the same key, and a request
    with other params a new one (Stripe refuses a key reused with other params)."""
    text = ":".join(str(p) for p in parts)
    if params is not None:
        digest = hashlib.sha256(
            json.dumps(params, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        text = f"{text}:{digest}"
    if len(text) > 255:
        text = text[:200] + ":" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{text}"


def event_scope(event: EventDoc) -> str:
    """The part of every key derived from one outbox event."""
    return f"meterline:{event.idempotency_key}"
