"""The console's pages as a person reads them, rendered without a store (page_html): what
a new user met fetching them (the invoice's lines named by their computation alone, not
by their charge; the sign-in page's command without its required --name; a month outside
the range called "not a month")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from meterline.service import console


def _line(**values: Any) -> dict[str, Any]:
    line = {
        "id": 7,
        "kind": "usage",
        "price_id": "seat_advanced",
        "group": "seat_type=advanced",
        "description": "quantity 2, per_unit: 2 × 85 = 170 → USD 170.00 (rounded half-up)",
        "service_period_start": "2026-11-01T07:00:00+00:00",
        "service_period_end": "2026-12-01T08:00:00+00:00",
        "quantity": "2",
        "unit_amount": "85",
        "amount_minor": 17000,
        "adjusts_line_id": None,
    }
    return {**line, **values}


def test_an_invoice_line_is_named_by_its_charge_and_group_above_its_computation() -> None:
    invoice = {
        "id": 2,
        "status": "finalized",
        "customer": "cus_00002",
        "subscription": "sub_00002",
        "currency": "USD",
        "period_start_local": "2026-11-01",
        "period_start": "2026-11-01T07:00:00+00:00",
        "period_end": "2026-12-01T08:00:00+00:00",
        "reissue_of": None,
        "reissued_by": [],
        "lines": [
            _line(),
            _line(
                id=8,
                kind="minimum_true_up",
                price_id="minimum_commitment",
                group=None,
                description="minimum commitment 2000 USD: lines total 420.00, true-up 1580.00",
                unit_amount=None,
                amount_minor=158000,
            ),
        ],
        "subtotal": "2000.00",
        "discounts": "0.00",
        "adjustments": "0.00",
        "total_minor": 200000,
        "finalized_at": "2026-12-04T08:00:00+00:00",
        "voided_at": None,
    }
    html = console.page_html("invoice.html.j2", invoice=invoice, key=None)
    cells = re.findall(r'<td class="charge">(.*?)</td>', html, flags=re.S)
    assert len(cells) == 2
    assert cells[0].startswith("<b>seat_advanced</b>")
    assert "[seat_type=advanced]" in cells[0] and "2 × 85 = 170" in cells[0]
    assert cells[1].startswith("<b>minimum_commitment</b>") and "minimum_true_up" in cells[1]
    assert "true-up 1580.00" in cells[1]


def test_the_sign_in_page_gives_a_command_that_runs() -> None:
    html = console.page_html("login.html.j2", next="/console", error=None)
    (command,) = re.findall(r"<code>(meterline apikeys create[^<]*)</code>", html)
    assert "--name " in command and "--scope read" in command


@pytest.mark.parametrize("month", ["1999-12", "2200-01"])
def test_a_month_outside_the_range_is_named_as_such(month: str) -> None:
    with pytest.raises(console._Page) as raised:
        console._month(month, "cus_00001", None)  # type: ignore[arg-type]
    assert raised.value.status == 400
    assert "from 2000-01 to 2199-12" in raised.value.detail
