"""The Stripe stand-in, driven through the pinned `stripe` SDK: it answers with the SDK's
own resource shapes and fails where Stripe would (params, idempotency, state, amounts)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import requests
import stripe
import stripe.params as sp
from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._search_result_object import SearchResultObject

from meterline.demo.stripe_standin import API_VERSION, StripeStandIn
from meterline.demo.stripe_standin.store import MAX_ITEMS_PER_INVOICE
from meterline.demo.stripe_standin.validate import strict_type
from tests.standins.conftest import API_KEY, sdk_client

PERIOD = {"start": 1767225600, "end": 1769904000}


def customer(client: stripe.StripeClient, **metadata: str) -> stripe.Customer:
    return client.v1.customers.create(params={"name": "Acme", "metadata": metadata})


def draft(client: stripe.StripeClient, customer_id: str, currency: str = "usd") -> stripe.Invoice:
    return client.v1.invoices.create(
        params={
            "customer": customer_id,
            "currency": currency,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {"meterline_invoice": "inv-1"},
        }
    )


def add(client: stripe.StripeClient, invoice_id: str, *amounts: int) -> stripe.Invoice:
    return client.v1.invoices.add_lines(
        invoice_id,
        params={
            "lines": [
                {
                    "amount": a,
                    "description": f"line {i}",
                    "period": PERIOD,
                    "metadata": {"n": str(i)},
                }
                for i, a in enumerate(amounts)
            ]
        },
    )


def raw(
    standin: StripeStandIn, method: str, path: str, data: str = "", **headers: str
) -> requests.Response:
    sent = {"Authorization": f"Bearer {API_KEY}", **headers}
    if data:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    return requests.request(method, standin.base_url + path, data=data, headers=sent, timeout=10)


# ---------------------------------------------------------------------------------------
# Lifecycle and amounts
# ---------------------------------------------------------------------------------------


def test_draft_lines_finalize_and_pay(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = draft(client, cus.id, currency="EUR")
    assert inv.id.startswith("in_") and inv.status == "draft" and inv.currency == "eur"
    assert inv.total == 0 and inv.lines.data == []

    inv = add(client, inv.id, 1000, 250, -300)  # Stripe allows negative invoice items
    assert [line.amount for line in inv.lines.data] == [1000, 250, -300]
    assert (inv.subtotal, inv.total, inv.amount_due, inv.amount_remaining) == (950, 950, 950, 950)
    first = inv.lines.data[0]
    assert first.id.startswith("il_") and first.object == "line_item"
    assert first.currency == "eur" and first.invoice == inv.id
    assert first.period.start == PERIOD["start"] and first.period.end == PERIOD["end"]
    assert first.metadata.to_dict() == {"n": "0"}
    item_id = first.parent.invoice_item_details.invoice_item
    assert item_id.startswith("ii_")

    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "open" and inv.number and inv.status_transitions.finalized_at
    assert inv.due_date == inv.status_transitions.finalized_at + 30 * 86400

    inv = client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})
    assert inv.status == "paid"
    assert (inv.amount_paid, inv.amount_remaining) == (950, 0)


def test_zero_total_finalizes_to_paid_and_a_negative_total_credits_the_customer(
    client: stripe.StripeClient,
) -> None:
    cus = customer(client)
    zero = client.v1.invoices.finalize_invoice(draft(client, cus.id).id)
    assert zero.status == "paid" and zero.amount_due == 0

    negative = add(client, draft(client, cus.id).id, -500)
    assert negative.amount_due == 0 and negative.total == -500
    negative = client.v1.invoices.finalize_invoice(negative.id)
    assert negative.status == "paid" and negative.ending_balance == -500
    assert client.v1.customers.retrieve(cus.id).balance == -500

    # The credit is applied when the next invoice is finalized.
    nxt = client.v1.invoices.finalize_invoice(add(client, draft(client, cus.id).id, 800).id)
    assert (nxt.starting_balance, nxt.amount_due, nxt.ending_balance) == (-500, 300, 0)
    assert client.v1.customers.retrieve(cus.id).balance == 0


def test_invoice_items_attach_to_a_draft_of_the_same_customer(client: stripe.StripeClient) -> None:
    cus, other = customer(client), customer(client)
    inv = draft(client, cus.id)
    item = client.v1.invoice_items.create(
        params={
            "customer": cus.id,
            "invoice": inv.id,
            "amount": 4200,
            "currency": "usd",
            "description": "Fin resolutions",
            "period": PERIOD,
            "metadata": {"key": "sub-1/2026-01"},
        }
    )
    assert item.id.startswith("ii_") and item.invoice == inv.id and item.amount == 4200
    got = client.v1.invoices.retrieve(inv.id)
    assert got.total == 4200
    assert got.lines.data[0].parent.invoice_item_details.invoice_item == item.id

    with pytest.raises(stripe.InvalidRequestError, match="belongs to the customer") as err:
        client.v1.invoice_items.create(
            params={"customer": other.id, "invoice": inv.id, "amount": 1, "currency": "usd"}
        )
    assert err.value.param == "invoice"
    with pytest.raises(stripe.InvalidRequestError, match="must match the currency") as err:
        client.v1.invoice_items.create(
            params={"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "eur"}
        )
    assert err.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError, match="No such customer") as err:
        client.v1.invoice_items.create(
            params={"customer": "cus_nope", "amount": 1, "currency": "usd"}
        )
    assert err.value.code == "resource_missing" and err.value.param == "customer"

    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError, match="draft") as err:
        client.v1.invoice_items.create(
            params={"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "usd"}
        )
    assert err.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoice_items.delete(item.id)
    assert err.value.code == "invoice_not_editable"


def test_invoice_item_delete_while_draft(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    cus = customer(client)
    inv = add(client, draft(client, cus.id).id, 100, 200)
    item_id = inv.lines.data[0].parent.invoice_item_details.invoice_item
    deleted = client.v1.invoice_items.delete(item_id)
    assert deleted.deleted is True and deleted.id == item_id
    assert client.v1.invoices.retrieve(inv.id).total == 200
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoice_items.delete(item_id)
    assert err.value.http_status == 404 and err.value.code == "resource_missing"


def test_state_refusals(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = add(client, draft(client, cus.id).id, 100)

    with pytest.raises(stripe.InvalidRequestError, match="open or uncollectible"):
        client.v1.invoices.void_invoice(inv.id)  # a draft is deleted, not voided
    with pytest.raises(stripe.InvalidRequestError, match="open or paid"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 10})

    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError, match="already finalized"):
        client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError, match="draft") as err:
        add(client, inv.id, 5)
    assert err.value.code == "invoice_not_editable"
    line_id = client.v1.invoices.retrieve(inv.id).lines.data[0].id
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoices.remove_lines(
            inv.id, params={"lines": [{"id": line_id, "behavior": "delete"}]}
        )
    assert err.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError, match="only delete draft"):
        client.v1.invoices.delete(inv.id)

    voided = client.v1.invoices.void_invoice(inv.id)
    assert voided.status == "void" and voided.status_transitions.voided_at
    with pytest.raises(stripe.InvalidRequestError, match="open or uncollectible"):
        client.v1.invoices.void_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError, match="open or paid"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 10})
    with pytest.raises(stripe.InvalidRequestError, match="open invoice"):
        client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})

    paid = client.v1.invoices.finalize_invoice(add(client, draft(client, cus.id).id, 100).id)
    paid = client.v1.invoices.pay(paid.id, params={"paid_out_of_band": True})
    with pytest.raises(stripe.InvalidRequestError, match="open or uncollectible"):
        client.v1.invoices.void_invoice(paid.id)
    with pytest.raises(stripe.InvalidRequestError, match="already paid"):
        client.v1.invoices.pay(paid.id, params={"paid_out_of_band": True})


def test_delete_a_draft_only(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = add(client, draft(client, cus.id).id, 100)
    deleted = client.v1.invoices.delete(inv.id)
    assert deleted.deleted is True and deleted.id == inv.id
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoices.retrieve(inv.id)
    assert err.value.http_status == 404 and err.value.code == "resource_missing"
    assert err.value.param == "id"


def test_remove_lines_delete_or_unassign_and_pending_items(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = add(client, draft(client, cus.id).id, 100, 200, 300)
    first, second, _ = inv.lines.data
    unassigned_item = second.parent.invoice_item_details.invoice_item
    inv = client.v1.invoices.remove_lines(
        inv.id,
        params={
            "lines": [
                {"id": first.id, "behavior": "delete"},
                {"id": second.id, "behavior": "unassign"},
            ],
            "invoice_metadata": {"removed": "2"},
        },
    )
    assert inv.total == 300 and inv.metadata.to_dict() == {
        "meterline_invoice": "inv-1",
        "removed": "2",
    }
    with pytest.raises(stripe.InvalidRequestError, match="No such line item"):
        client.v1.invoices.remove_lines(
            inv.id, params={"lines": [{"id": first.id, "behavior": "delete"}]}
        )

    # The unassigned item is pending: a new invoice can include it, or add_lines assign it.
    included = client.v1.invoices.create(
        params={"customer": cus.id, "currency": "usd", "pending_invoice_items_behavior": "include"}
    )
    assert [line.parent.invoice_item_details.invoice_item for line in included.lines.data] == [
        unassigned_item
    ]
    with pytest.raises(stripe.InvalidRequestError, match="not an unassigned invoice item"):
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"invoice_item": unassigned_item}]})


def test_add_lines_assigns_a_pending_item_in_the_request_order(client: stripe.StripeClient) -> None:
    cus = customer(client)
    pending = client.v1.invoice_items.create(
        params={"customer": cus.id, "amount": 7, "currency": "usd"}
    )
    assert pending.invoice is None
    inv = draft(client, cus.id)  # pending_invoice_items_behavior=exclude: not pulled in
    assert inv.lines.data == []
    inv = client.v1.invoices.add_lines(
        inv.id, params={"lines": [{"amount": 1}, {"invoice_item": pending.id}, {"amount": 2}]}
    )
    assert [line.amount for line in inv.lines.data] == [1, 7, 2]
    assert inv.lines.data[1].parent.invoice_item_details.invoice_item == pending.id
    with pytest.raises(stripe.InvalidRequestError, match="not an unassigned invoice item"):
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"invoice_item": pending.id}]})


def test_credit_notes(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = client.v1.invoices.finalize_invoice(add(client, draft(client, cus.id).id, 1000, 500).id)
    line = inv.lines.data[0]

    note = client.v1.credit_notes.create(
        params={
            "invoice": inv.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 400}],
            "reason": "order_change",
            "memo": "late usage correction",
            "metadata": {"adjusts": "line-1"},
        }
    )
    assert note.id.startswith("cn_") and note.amount == 400 and note.pre_payment_amount == 400
    assert note.lines.data[0].invoice_line_item == line.id
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.amount_due, inv.amount_remaining, inv.pre_payment_credit_notes_amount) == (
        1100,
        1100,
        400,
    )

    with pytest.raises(stripe.InvalidRequestError, match="left to credit"):
        client.v1.credit_notes.create(
            params={
                "invoice": inv.id,
                "lines": [
                    {"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 601}
                ],
            }
        )
    with pytest.raises(stripe.InvalidRequestError, match="exceeds the invoice's total"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 1101})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid reason"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 1, "reason": "because"})

    inv = client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})
    # After payment the whole amount is post-payment and must be placed exactly.
    with pytest.raises(stripe.InvalidRequestError, match="post-payment amount"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 100})
    post = client.v1.credit_notes.create(
        params={"invoice": inv.id, "amount": 100, "credit_amount": 100}
    )
    assert (post.type, post.post_payment_amount) == ("post_payment", 100)
    assert client.v1.customers.retrieve(cus.id).balance == -100

    listed = client.v1.credit_notes.list(params={"invoice": inv.id})
    assert [n.id for n in listed.data] == [post.id, note.id]


def test_a_credit_note_settling_an_open_invoice_marks_it_paid(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = client.v1.invoices.finalize_invoice(add(client, draft(client, cus.id).id, 700).id)
    client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 700})
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.amount_remaining) == ("paid", 0)


def test_at_most_250_items_per_invoice(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    for _ in range(MAX_ITEMS_PER_INVOICE // 50):
        inv = client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 1}] * 50})
    assert inv.lines.has_more is True and len(inv.lines.data) == 10
    with pytest.raises(stripe.InvalidRequestError, match="more than 250"):
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 1}]})
    with pytest.raises(stripe.InvalidRequestError, match="more than 250"):
        client.v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 1})


@pytest.mark.parametrize("currency", ["bhd", "jod", "kwd", "omr", "tnd"])
def test_three_decimal_currencies_need_amounts_divisible_by_ten(
    client: stripe.StripeClient, currency: str
) -> None:
    cus = customer(client)
    inv = draft(client, cus.id, currency=currency.upper())
    with pytest.raises(stripe.InvalidRequestError, match="divisible by 10") as err:
        add(client, inv.id, 1000, 1005)
    assert err.value.param == "lines[1][amount]"
    with pytest.raises(stripe.InvalidRequestError, match="divisible by 10") as err:
        client.v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 5})
    assert err.value.param == "amount"
    inv = client.v1.invoices.finalize_invoice(add(client, inv.id, 1000, -20).id)
    assert inv.total == 980
    with pytest.raises(stripe.InvalidRequestError, match="divisible by 10"):
        client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 15})
    assert client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 10}).amount == 10


# ---------------------------------------------------------------------------------------
# Lists, pagination, search
# ---------------------------------------------------------------------------------------


def test_list_invoices_newest_first_with_filters_and_cursors(client: stripe.StripeClient) -> None:
    cus, other = customer(client), customer(client)
    ids = [draft(client, cus.id).id for _ in range(5)]
    draft(client, other.id)
    client.v1.invoices.finalize_invoice(add(client, ids[0], 10).id)

    page = client.v1.invoices.list(params={"customer": cus.id, "limit": 2})
    assert [i.id for i in page.data] == [ids[4], ids[3]] and page.has_more is True
    page = client.v1.invoices.list(
        params={"customer": cus.id, "limit": 2, "starting_after": ids[3]}
    )
    assert [i.id for i in page.data] == [ids[2], ids[1]] and page.has_more is True
    page = client.v1.invoices.list(
        params={"customer": cus.id, "limit": 2, "starting_after": ids[1]}
    )
    assert [i.id for i in page.data] == [ids[0]] and page.has_more is False
    page = client.v1.invoices.list(params={"customer": cus.id, "limit": 2, "ending_before": ids[1]})
    assert [i.id for i in page.data] == [ids[3], ids[2]] and page.has_more is True

    everything = client.v1.invoices.list(params={"customer": cus.id, "limit": 2}).auto_paging_iter()
    assert [i.id for i in everything] == list(reversed(ids))
    assert [i.id for i in client.v1.invoices.list(params={"status": "open"}).data] == [ids[0]]
    assert len(client.v1.invoices.list(params={"status": "draft"}).data) == 5

    with pytest.raises(stripe.InvalidRequestError, match="No such invoice") as err:
        client.v1.invoices.list(params={"starting_after": "in_missing"})
    assert err.value.param == "starting_after"
    with pytest.raises(stripe.InvalidRequestError, match="between 1 and 100"):
        client.v1.invoices.list(params={"limit": 101})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid status"):
        client.v1.invoices.list(params={"status": "finalized"})


def test_list_lines_pages_through_an_invoice(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = add(client, draft(client, cus.id).id, *range(1, 24))
    assert len(inv.lines.data) == 10 and inv.lines.has_more is True
    page = client.v1.invoices.line_items.list(inv.id, params={"limit": 20})
    assert [line.amount for line in page.data] == list(range(1, 21)) and page.has_more
    rest = client.v1.invoices.line_items.list(inv.id, params={"starting_after": page.data[-1].id})
    assert [line.amount for line in rest.data] == [21, 22, 23] and not rest.has_more
    every = client.v1.invoices.line_items.list(inv.id, params={"limit": 7}).auto_paging_iter()
    assert [line.amount for line in every] == list(range(1, 24))


def test_customer_search_by_metadata(client: stripe.StripeClient) -> None:
    wanted = customer(client, meterline_customer="acme", region="eu")
    customer(client, meterline_customer="other")
    found = client.v1.customers.search(params={"query": "metadata['meterline_customer']:'acme'"})
    assert [c.id for c in found.data] == [wanted.id] and found.has_more is False
    both = client.v1.customers.search(
        params={"query": "metadata['meterline_customer']:'acme' AND metadata['region']:'eu'"}
    )
    assert [c.id for c in both.data] == [wanted.id]
    assert client.v1.customers.search(params={"query": "metadata['region']:'us'"}).data == []
    with pytest.raises(stripe.InvalidRequestError, match="supports only search queries") as err:
        client.v1.customers.search(params={"query": "email:'a@b.c'"})
    assert err.value.param == "query"


def test_customer_search_pages_and_can_lag_like_stripe() -> None:
    now = [1_000.0]
    with StripeStandIn(clock=lambda: now[0], search_visibility_delay=60) as standin:
        client = sdk_client(standin.base_url)
        for _ in range(3):
            customer(client, tenant="t")
        query = {"query": "metadata['tenant']:'t'", "limit": 2}
        assert client.v1.customers.search(params=query).data == []  # not indexed yet
        now[0] += 61
        first = client.v1.customers.search(params=query)
        assert len(first.data) == 2 and first.has_more is True
        assert len(list(first.auto_paging_iter())) == 3


# ---------------------------------------------------------------------------------------
# Validation against the SDK's TypedDicts
# ---------------------------------------------------------------------------------------


def test_unknown_params_are_refused_at_every_level(client: stripe.StripeClient) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    with pytest.raises(
        stripe.InvalidRequestError, match="Received unknown parameter: colour"
    ) as err:
        client.v1.invoices.create(params={"customer": cus.id, "colour": "blue"})
    assert err.value.param == "colour" and err.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoices.add_lines(
            inv.id,
            params={"lines": [{"amount": 1, "period": {"start": 1, "end": 2, "middle": 3}}]},
        )
    assert err.value.param == "lines[0][period][middle]"
    assert err.value.code == "parameter_unknown"
    assert client.v1.invoices.retrieve(inv.id).lines.data == []  # nothing half-done


def test_every_rebuilt_typeddict_forbids_extra_keys() -> None:
    seen: set[str] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and hasattr(tp, "__required_keys__"):
            if tp.__name__ in seen:
                return
            seen.add(tp.__name__)
            assert tp.__pydantic_config__["extra"] == "forbid", tp.__name__
            for hint in tp.__annotations__.values():
                walk(hint)
        for arg in getattr(tp, "__args__", ()):
            walk(arg)
        for meta in getattr(tp, "__metadata__", ()):
            walk(meta)

    walk(strict_type(sp.InvoiceCreateParams))
    assert {
        "InvoiceCreateParamsPaymentSettingsPaymentMethodOptionsCard",
        "InvoiceCreateParamsRendering",
    } <= seen
    assert "idempotency_key" not in strict_type(sp.InvoiceCreateParams).__annotations__


def test_types_enums_required_and_empty_values(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    with pytest.raises(stripe.InvalidRequestError, match="Invalid integer: ten") as err:
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": "ten"}]})
    assert err.value.param == "lines[0][amount]" and err.value.code == "parameter_invalid_integer"
    with pytest.raises(stripe.InvalidRequestError, match="Invalid collection_method"):
        client.v1.invoices.create(params={"customer": cus.id, "collection_method": "by_post"})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid boolean") as err:
        client.v1.invoices.create(params={"customer": cus.id, "auto_advance": "perhaps"})
    assert err.value.param == "auto_advance"
    with pytest.raises(stripe.InvalidRequestError, match="empty string") as err:
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 1, "description": ""}]})
    assert err.value.code == "parameter_invalid_empty"
    answer = raw(standin, "POST", f"/v1/invoices/{inv.id}/add_lines", "invoice_metadata[a]=b")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Missing required param: lines."
    assert answer.json()["error"]["code"] == "parameter_missing"
    # Form values are text: "123" is an integer and "true" a boolean, as on Stripe.
    answer = raw(
        standin,
        "POST",
        f"/v1/invoices/{inv.id}/add_lines",
        "lines[0][amount]=123&lines[0][period][start]=1&lines[0][period][end]=2",
    )
    assert answer.status_code == 200 and answer.json()["total"] == 123
    # Request options travel as headers; as form fields they are unknown parameters.
    answer = raw(standin, "POST", "/v1/customers", "idempotency_key=abc")
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Received unknown parameter: idempotency_key",
        "param": "idempotency_key",
        "code": "parameter_unknown",
    }
    # Metadata limits: keys up to 40 characters.
    with pytest.raises(stripe.InvalidRequestError, match="40") as err:
        client.v1.customers.create(params={"metadata": {"k" * 41: "v"}})
    # A period's end is not before its start.
    with pytest.raises(stripe.InvalidRequestError, match="greater than or equal") as err:
        client.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": 1, "period": {"start": 5, "end": 4}}]}
        )
    assert err.value.param == "lines[0][period][end]"


def test_a_valid_stripe_param_the_standin_does_not_model_is_refused_by_name(
    client: stripe.StripeClient,
) -> None:
    cus = customer(client)
    with pytest.raises(
        stripe.InvalidRequestError, match="does not model the parameter expand"
    ) as err:
        client.v1.invoices.create(params={"customer": cus.id, "expand": ["customer"]})
    assert err.value.param == "expand"
    inv = draft(client, cus.id)
    with pytest.raises(stripe.InvalidRequestError, match=r"lines\[0\]\[tax_rates\]"):
        client.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": 1, "tax_rates": ["txr_1"]}]}
        )


def test_authentication(standin: StripeStandIn) -> None:
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key"):
        sdk_client(standin.base_url, api_key="sk_live_abcdefgh1234").v1.customers.create()
    answer = requests.post(standin.base_url + "/v1/customers", timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
    answer = requests.post(standin.base_url + "/v1/customers", auth=(API_KEY, ""), timeout=10)
    assert answer.status_code == 200  # Basic auth with the key as user, as curl -u sends it


def test_unrecognized_urls_and_missing_objects(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    # Invoice update exists on Stripe; the sink does not use it, so the stand-in has no route.
    with pytest.raises(
        stripe.InvalidRequestError, match=r"Unrecognized request URL \(POST: /v1/invoices/"
    ) as err:
        client.v1.invoices.update(inv.id, params={"description": "x"})
    assert err.value.http_status == 404
    answer = raw(standin, "GET", "/v1/charges")
    assert answer.status_code == 404 and answer.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.InvalidRequestError, match="No such customer: 'cus_missing'") as err:
        client.v1.customers.retrieve("cus_missing")
    assert err.value.http_status == 404 and err.value.code == "resource_missing"


def test_the_pinned_api_version_only(standin: StripeStandIn) -> None:
    assert API_VERSION == "2026-10-28.endive"
    answer = raw(standin, "POST", "/v1/customers", **{"Stripe-Version": "2020-08-27"})
    assert answer.status_code == 400 and "2026-10-28.endive" in answer.json()["error"]["message"]
    answer = raw(standin, "POST", "/v1/customers", **{"Stripe-Version": API_VERSION})
    assert answer.status_code == 200 and answer.headers["Stripe-Version"] == API_VERSION
    answer = raw(standin, "POST", "/v1/customers", **{"Stripe-Account": "acct_1"})
    assert answer.status_code == 400 and "Connect" in answer.json()["error"]["message"]


# ---------------------------------------------------------------------------------------
# Idempotency keys
# ---------------------------------------------------------------------------------------


def test_same_key_same_params_replays_the_first_answer(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    cus = customer(client)
    params: sp.InvoiceCreateParams = {"customer": cus.id, "currency": "usd", "metadata": {"k": "1"}}
    first = client.v1.invoices.create(params=params, options={"idempotency_key": "inv-1"})
    again = client.v1.invoices.create(params=params, options={"idempotency_key": "inv-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    with standin.store.lock:
        assert len(standin.store.invoices) == 1


def test_same_key_other_params_or_endpoint_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    cus = customer(client)
    client.v1.invoices.create(params={"customer": cus.id}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as err:
        client.v1.invoices.create(
            params={"customer": cus.id, "description": "x"}, options={"idempotency_key": "k"}
        )
    assert str(err.value.user_message).startswith(
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with."
    )
    assert err.value.http_status == 400
    with pytest.raises(stripe.IdempotencyError, match="same endpoint"):
        client.v1.customers.create(params={}, options={"idempotency_key": "k"})


def test_keys_are_scoped_to_the_api_key(standin: StripeStandIn) -> None:
    one, two = (
        sdk_client(standin.base_url, api_key="sk_test_one"),
        sdk_client(standin.base_url, api_key="sk_test_two"),
    )
    a = one.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "same"})
    b = two.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "same"})
    assert a.id != b.id


def test_validation_failures_are_not_saved_but_state_errors_are(
    client: stripe.StripeClient,
) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": "x"}]}, options={"idempotency_key": "v"}
        )
    # Refused by validation: no answer saved, the key is free for the corrected request.
    ok = client.v1.invoices.add_lines(
        inv.id, params={"lines": [{"amount": 5}]}, options={"idempotency_key": "v"}
    )
    assert ok.total == 5

    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError) as first:
        client.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": 7}]}, options={"idempotency_key": "s"}
        )
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": 7}]}, options={"idempotency_key": "s"}
        )
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert again.value.user_message == first.value.user_message


def test_idempotency_keys_longer_than_255_are_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.IdempotencyError, match="255"):
        client.v1.customers.create(params={}, options={"idempotency_key": "k" * 256})


# ---------------------------------------------------------------------------------------
# Shapes: every key is an attribute of the SDK's resource class
# ---------------------------------------------------------------------------------------

# The fields meterline's Stripe sink reads, per object.
SINK_READS = {
    "invoice": {
        "id",
        "object",
        "customer",
        "currency",
        "status",
        "auto_advance",
        "collection_method",
        "metadata",
        "lines",
        "subtotal",
        "total",
        "amount_due",
        "amount_paid",
        "amount_remaining",
        "period_start",
        "period_end",
        "created",
        "livemode",
        "number",
        "due_date",
        "starting_balance",
        "ending_balance",
        "status_transitions",
    },
    "line_item": {
        "id",
        "object",
        "amount",
        "currency",
        "description",
        "metadata",
        "period",
        "invoice",
        "parent",
    },
    "invoiceitem": {
        "id",
        "object",
        "amount",
        "currency",
        "customer",
        "invoice",
        "description",
        "metadata",
        "period",
    },
    "customer": {"id", "object", "metadata", "name", "email", "balance", "currency", "created"},
    "credit_note": {
        "id",
        "object",
        "invoice",
        "amount",
        "total",
        "reason",
        "memo",
        "metadata",
        "status",
        "number",
        "pre_payment_amount",
        "post_payment_amount",
        "lines",
        "type",
    },
}
# Keys a list wrapper carries beyond its class's annotations: `object` is how the SDK
# recognizes it (OBJECT_NAME), and SearchResultObject reads `url` for the next page.
WRAPPER_KEYS = {"list": {"object"}, "search_result": {"object", "url"}}


def _annotated(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= {
            n
            for n in getattr(klass, "__annotations__", {})
            if not n.startswith("_") and not n.isupper()
        }
    return names


def _sdk_class(object_name: str) -> type:
    module, name = OBJECT_CLASSES[object_name]
    return getattr(__import__(module, fromlist=[name]), name)


def assert_sdk_shape(obj: dict[str, Any], cls: type | None = None, where: str = "") -> set[str]:
    """Every key of `obj` is annotated on its SDK class, recursively; the object names seen."""
    kind = obj.get("object")
    seen: set[str] = set()
    if kind in WRAPPER_KEYS:
        wrapper = ListObject if kind == "list" else SearchResultObject
        extra = set(obj) - _annotated(wrapper) - WRAPPER_KEYS[kind]
        assert not extra, f"{where}: {sorted(extra)} are not attributes of {wrapper.__name__}"
        for index, item in enumerate(obj["data"]):
            seen |= assert_sdk_shape(item, None, f"{where}.data[{index}]")
        return seen
    if cls is None:
        assert isinstance(kind, str), f"{where}: an object without `object`"
        cls = _sdk_class(kind)
        seen.add(kind)
    extra = set(obj) - _annotated(cls)
    assert not extra, f"{where}: {sorted(extra)} are not attributes of {cls.__qualname__}"
    inner = getattr(cls, "_inner_class_types", {})
    for key, value in obj.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, dict) or key == "metadata":
                continue
            if "object" in item:
                seen |= assert_sdk_shape(item, None, f"{where}.{key}")
            else:
                assert key in inner, f"{where}.{key}: a hash with no SDK class"
                seen |= assert_sdk_shape(item, inner[key], f"{where}.{key}")
    return seen


def test_every_answer_has_the_sdk_resource_shape(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    bodies: list[dict[str, Any]] = []

    def keep(obj: Any) -> Any:
        bodies.append(json.loads(obj.last_response.body))
        return obj

    cus = keep(customer(client, meterline_customer="acme"))
    inv = keep(draft(client, cus.id))
    keep(
        client.v1.invoice_items.create(
            params={"customer": cus.id, "invoice": inv.id, "amount": 100, "period": PERIOD}
        )
    )
    pending = keep(
        client.v1.invoice_items.create(params={"customer": cus.id, "amount": 5, "currency": "usd"})
    )
    keep(add(client, inv.id, 200))
    keep(client.v1.invoices.line_items.list(inv.id))
    keep(client.v1.invoices.retrieve(inv.id))
    keep(client.v1.customers.retrieve(cus.id))
    keep(client.v1.customers.search(params={"query": "metadata['meterline_customer']:'acme'"}))
    keep(client.v1.invoice_items.delete(pending.id))
    inv = keep(client.v1.invoices.finalize_invoice(inv.id))
    keep(
        client.v1.credit_notes.create(
            params={
                "invoice": inv.id,
                "lines": [
                    {
                        "type": "custom_line_item",
                        "unit_amount": 10,
                        "quantity": 2,
                        "description": "goodwill",
                    }
                ],
            }
        )
    )
    keep(client.v1.credit_notes.list(params={"invoice": inv.id}))
    keep(client.v1.invoices.pay(inv.id, params={"paid_out_of_band": True}))
    keep(client.v1.invoices.list(params={"customer": cus.id}))
    other = keep(draft(client, cus.id))
    keep(client.v1.invoices.delete(other.id))
    voidable = keep(
        client.v1.invoices.finalize_invoice(add(client, draft(client, cus.id).id, 50).id)
    )
    keep(client.v1.invoices.void_invoice(voidable.id))

    seen: set[str] = set()
    for body in bodies:
        seen |= assert_sdk_shape(body, where=body.get("object", "?"))
    assert {
        "invoice",
        "line_item",
        "invoiceitem",
        "customer",
        "credit_note",
        "credit_note_line_item",
    } <= seen

    for body in bodies:
        if body.get("deleted") or body["object"] not in SINK_READS:
            continue
        missing = SINK_READS[body["object"]] - set(body)
        assert not missing, f"{body['object']} lacks {sorted(missing)}"
    line = next(b for b in bodies if b["object"] == "invoice" and b["lines"]["data"])["lines"][
        "data"
    ][0]
    assert line["parent"]["invoice_item_details"]["invoice_item"].startswith("ii_")


def test_invoice_has_no_days_until_due_attribute_in_this_api_version() -> None:
    # days_until_due is a create parameter; the invoice carries due_date (set from it).
    assert "days_until_due" in sp.InvoiceCreateParams.__annotations__
    assert "days_until_due" not in _annotated(stripe.Invoice)
    assert "due_date" in _annotated(stripe.Invoice)
    assert "invoice_item" in _annotated(stripe.InvoiceLineItem.Parent.InvoiceItemDetails)


# ---------------------------------------------------------------------------------------
# Counting and running
# ---------------------------------------------------------------------------------------


def test_request_count_per_endpoint(client: stripe.StripeClient, standin: StripeStandIn) -> None:
    cus = customer(client)
    inv = draft(client, cus.id)
    add(client, inv.id, 1)
    add(client, inv.id, 2)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.retrieve("in_missing")
    counts = standin.request_count
    assert counts[("POST", "/v1/invoices/{id}/add_lines")] == 2
    assert counts[("GET", "/v1/invoices/{id}")] == 1
    assert counts.total() == 5
    standin.reset_request_count()
    assert standin.request_count.total() == 0


def test_runnable_as_a_module() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "meterline.demo.stripe_standin", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.rsplit(" at ", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        created = sdk_client(base_url).v1.customers.create(params={"name": "A"})
        assert created.id.startswith("cus_")
    finally:
        process.terminate()
        process.wait(timeout=10)
