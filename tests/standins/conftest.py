"""Fixtures for the stand-ins: a Stripe stand-in per test and an SDK client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from meterline.demo.stripe_standin import StripeStandIn

API_KEY = "sk_test_standin"


def sdk_client(
    base_url: str, *, api_key: str = API_KEY, timeout: float = 10.0
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=api_key,
        base_addresses={"api": base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    with StripeStandIn(seed=7) as server:
        yield server


@pytest.fixture
def client(standin: StripeStandIn) -> stripe.StripeClient:
    return sdk_client(standin.base_url)
