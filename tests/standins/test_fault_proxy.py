"""The fault proxy between the `stripe` SDK and the Stripe stand-in: each fault does what
it says, seen from the SDK (max_network_retries=0, a short timeout) and from the server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import stripe

from meterline.demo.stripe_standin import StripeStandIn
from tests.standins.conftest import sdk_client
from tests.support.fault_proxy import FaultProxy

TIMEOUT = 0.5


@pytest.fixture
def proxy(standin: StripeStandIn) -> Iterator[FaultProxy]:
    with FaultProxy(standin.base_url, delay=TIMEOUT * 4) as running:
        yield running


@pytest.fixture
def via_proxy(proxy: FaultProxy) -> stripe.StripeClient:
    return sdk_client(proxy.base_url, timeout=TIMEOUT)


def only(method: str, path: str) -> Callable[[str, str], bool]:
    return lambda m, p: (m, p) == (method, path)


def test_no_fault_forwards_everything(via_proxy: stripe.StripeClient, proxy: FaultProxy) -> None:
    created = via_proxy.v1.customers.create(params={"name": "A"})
    assert via_proxy.v1.customers.retrieve(created.id).name == "A"
    assert proxy.forwarded == 2 and sum(proxy.injected.values()) == 0


def test_drop_after_forward_loses_the_answer_not_the_work(
    via_proxy: stripe.StripeClient, proxy: FaultProxy, standin: StripeStandIn
) -> None:
    proxy.plan("drop_after_forward", when=only("POST", "/v1/customers"))
    with pytest.raises(stripe.APIConnectionError, match="without response"):
        via_proxy.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "c-1"})
    assert proxy.injected["drop_after_forward"] == 1
    with standin.store.lock:
        assert [c.name for c in standin.store.customers.values()] == ["A"]
    # The retry with the same key gets the first answer: one customer, as on Stripe.
    again = via_proxy.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "c-1"})
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with standin.store.lock:
        assert list(standin.store.customers) == [again.id]


def test_error_500_answers_an_api_error_without_forwarding(
    via_proxy: stripe.StripeClient, proxy: FaultProxy, standin: StripeStandIn
) -> None:
    proxy.plan("error_500")
    with pytest.raises(stripe.APIError) as err:
        via_proxy.v1.customers.create(params={"name": "A"})
    assert err.value.http_status == 500
    assert err.value.json_body is not None and err.value.json_body["error"]["type"] == "api_error"
    assert proxy.forwarded == 0 and standin.request_count.total() == 0


def test_rate_limit_answers_429_with_retry_after(
    via_proxy: stripe.StripeClient, proxy: FaultProxy, standin: StripeStandIn
) -> None:
    proxy.plan("rate_limit")
    with pytest.raises(stripe.RateLimitError) as err:
        via_proxy.v1.customers.create(params={"name": "A"})
    assert err.value.http_status == 429
    assert err.value.headers is not None and err.value.headers["Retry-After"] == "1"
    assert err.value.json_body is not None and err.value.json_body["error"]["code"] == "rate_limit"
    assert proxy.forwarded == 0 and standin.request_count.total() == 0


def test_delay_times_the_client_out_after_the_server_did_the_work(
    via_proxy: stripe.StripeClient, proxy: FaultProxy, standin: StripeStandIn
) -> None:
    customer = via_proxy.v1.customers.create(params={"name": "A"})
    proxy.plan("delay", when=only("POST", "/v1/invoices"))
    with pytest.raises(stripe.APIConnectionError, match="Read timed out"):
        via_proxy.v1.invoices.create(params={"customer": customer.id})
    assert proxy.injected["delay"] == 1
    with standin.store.lock:
        assert [i.customer for i in standin.store.invoices.values()] == [customer.id]


def test_times_and_when_choose_the_requests(
    via_proxy: stripe.StripeClient, proxy: FaultProxy
) -> None:
    customer = via_proxy.v1.customers.create(params={"name": "A"})
    proxy.plan("error_500", times=2, when=lambda method, path: method == "GET")
    assert proxy.pending == 2
    invoice = via_proxy.v1.invoices.create(params={"customer": customer.id})  # a POST: passes
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            via_proxy.v1.invoices.retrieve(invoice.id)
    assert via_proxy.v1.invoices.retrieve(invoice.id).id == invoice.id  # plan used up
    assert proxy.injected["error_500"] == 2 and proxy.pending == 0
    assert proxy.injections == [("error_500", "GET", f"/v1/invoices/{invoice.id}")] * 2

    proxy.plan("rate_limit", times=3)
    proxy.clear()
    assert proxy.pending == 0
    assert via_proxy.v1.invoices.retrieve(invoice.id).id == invoice.id


def test_plans_are_checked() -> None:
    proxy = FaultProxy("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown fault"):
        proxy.plan("explode")
    with pytest.raises(ValueError, match="at least 1"):
        proxy.plan("delay", times=0)
    with pytest.raises(ValueError, match="http://"):
        FaultProxy("https://api.stripe.com")
