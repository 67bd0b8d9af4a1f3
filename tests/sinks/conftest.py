"""Fixtures for the sinks: a ledger (SQLite, and PostgreSQL when configured) with two
USD customers, the Stripe stand-in, and the settings that join them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

import billing
from meterline.demo.stripe_standin import StripeStandIn
from meterline.settings import Settings, load_settings
from meterline.sinks.stripe import StripeConfig
from tests.billing.conftest import CATALOG, Ledger, ledger, ledger_url  # noqa: F401
from tests.billing.factories import CUSTOMERS, period_of, standard_charges, write_customers

MARCH = period_of("sub_00001", 2026, 3)
APRIL = period_of("sub_00001", 2026, 4)
GRACE = timedelta(days=3)
API_KEY = SecretStr("sk_test_meterline")


@dataclass
class World:
    ledger: Ledger
    stripe: StripeStandIn
    settings: Settings

    def config(self, base: str | None = None, **kw: object) -> StripeConfig:
        return StripeConfig(
            api_key=API_KEY,
            api_base=base or self.stripe.base_url,
            timeout_s=float(kw.pop("timeout_s", 5.0)),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

    def post(self, sub: str, period: billing.Period, resolutions: int = 100) -> int:
        with self.ledger.Session.begin() as session:
            result = billing.post_charges(
                session, sub, period, standard_charges(session, resolutions=resolutions)
            )
        (invoice_id,) = result.invoice_ids.values()
        return invoice_id

    def finalize(self, invoice_id: int, period: billing.Period = MARCH) -> None:
        with self.ledger.Session.begin() as session:
            billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)


@pytest.fixture
def world(ledger: Ledger, tmp_path: Path) -> Iterator[World]:  # noqa: F811
    second = {
        **CUSTOMERS[0],
        "customer_id": "cus_00009",
        "subscription_id": "sub_00009",
        "name": "Acme 9",
    }
    path = write_customers(tmp_path / "customers.jsonl", [CUSTOMERS[0], second])
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(session, path)
    with StripeStandIn() as stripe:
        yield World(ledger, stripe, load_settings(ledger_url=ledger.url))
