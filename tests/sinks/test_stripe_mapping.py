"""The pure mapping from ledger documents to Stripe parameters (meterline/sinks/stripe/
mapping.py): amounts in Stripe's unit or refused, descriptions a customer reads,
metadata within Stripe's limits, stable idempotency keys."""

from __future__ import annotations

import pytest

from billing.outbox import LineDoc
from meterline.sinks.stripe import mapping
from meterline.sinks.stripe.mapping import AmountNotRepresentable, ledger_minor, stripe_amount

# (ledger minor units, currency, Stripe amount or None when Stripe cannot take it exactly)
AMOUNTS = [
    (12345, "USD", 12345),
    (-990, "EUR", -990),
    (500, "JPY", 500),  # zero-decimal in both
    (12340, "KWD", 12340),  # three-decimal: the last digit must be 0
    (12345, "KWD", None),
    (7, "ISK", 700),  # ISO: no decimals; Stripe: two, whole krónur only
    (150, "MGA", None),  # ISO: 2 decimals; Stripe: zero-decimal
    (1500, "MGA", 15),
    (0, "USD", 0),
]


@pytest.mark.parametrize(("minor", "currency", "expected"), AMOUNTS)
def test_amounts_convert_exactly_or_are_refused(
    minor: int, currency: str, expected: int | None
) -> None:
    if expected is None:
        with pytest.raises(AmountNotRepresentable):
            stripe_amount(minor, currency)
        return
    assert stripe_amount(minor, currency) == expected
    assert ledger_minor(expected, currency) == minor


def line(**kw: object) -> LineDoc:
    base: dict[str, object] = {
        "line_id": 7,
        "key": "sub_1|2026-10-01|fin_resolution|v1|usage",
        "kind": "usage",
        "description": "quantity 12088.000000000 = tier 1: 1000 × 0.99 + 11088.000000000 × 0.89",
        "quantity": "12088",
        "unit_amount": None,
        "amount_minor": 1085832,
        "currency": "USD",
        "meter": "resolutions",
        "price_id": "fin_resolution",
        "price_version": "2026-01-01#abc",
        "dimension_group": None,
        "service_period_start": "2026-10-01T04:00:00+00:00",
        "service_period_end": "2026-11-01T04:00:00+00:00",
        "breakdown": {},
        "adjusts_line_id": None,
        "adjusts_key": None,
    }
    base.update(kw)
    return LineDoc(**base)  # type: ignore[arg-type]


def test_a_charge_reads_plainly() -> None:
    text = mapping.line_description(line(), "America/New_York")
    assert text == "fin_resolution: quantity 12088 = tier 1: 1000 × 0.99 + 11088 × 0.89"


def test_a_correction_says_what_it_corrects_in_local_dates() -> None:
    adjustment = line(
        kind="adjustment", quantity="2.000000000", amount_minor=198, adjusts_line_id=3
    )
    text = mapping.line_description(adjustment, "America/New_York")
    assert text == "Correction of fin_resolution, 2026-10-01 to 2026-11-01: +2 units"
    negative = line(kind="adjustment", quantity="-1.5", amount_minor=-149)
    assert mapping.line_description(negative, "UTC").endswith(": -1.5 units")


def test_metadata_stays_within_stripes_limits() -> None:
    long_key = "k" * 450
    meta = mapping.line_metadata(line(key=long_key, adjusts_key=long_key, kind="adjustment"))
    assert len(meta) <= 50
    assert all(len(k) <= 40 and len(v) <= mapping.METADATA_VALUE_MAX for k, v in meta.items())
    assert meta[mapping.LINE_KEY] == "7"
    params = mapping.add_line(line(description="x" * 2000), "UTC")
    assert len(params["description"]) <= mapping.DESCRIPTION_MAX
    assert params["amount"] == 1085832 and params["period"]["end"] > params["period"]["start"]


def test_idempotency_keys_are_stable_short_and_differ_with_the_params() -> None:
    one = mapping.idempotency_key("meterline", "invoice", 5, params={"a": 1})
    assert one == mapping.idempotency_key("meterline", "invoice", 5, params={"a": 1})
    assert one != mapping.idempotency_key("meterline", "invoice", 5, params={"a": 2})
    assert len(mapping.idempotency_key("x" * 400)) <= 255


def test_a_credit_line_is_a_negative_item_naming_its_grant() -> None:
    """Stripe: an invoice item's amount may be negative ("to apply a credit to the
    customer's account, pass a negative amount"); the grant goes in the metadata."""
    credit = line(
        kind="credit",
        amount_minor=-8000,
        quantity="80.00",
        description="credit grant commit-1 pays 80.00 USD of fin_resolution",
        credit_grant_id="commit-1",
    )
    params = mapping.add_line(credit, "America/New_York")
    assert params["amount"] == -8000
    assert params["metadata"]["meterline_credit_grant_id"] == "commit-1"
    assert params["metadata"]["meterline_kind"] == "credit"
    assert "meterline_credit_grant_id" not in mapping.line_metadata(line())
