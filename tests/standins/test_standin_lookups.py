"""The stand-in's indexed lookups answer what a scan of everything would: a customer's
invoices (newest first, a deleted draft gone, other customers' never), and a metadata
search whose first clause matches customers the others rule out."""

from __future__ import annotations

import stripe

from tests.standins.test_stripe_standin import customer, draft


def test_a_customers_invoices_after_a_deleted_draft(client: stripe.StripeClient) -> None:
    cus, other = customer(client), customer(client)
    ids = []
    for n in range(4):
        ids.append(draft(client, cus.id).id)
        draft(client, other.id)
        if n == 1:
            client.v1.invoices.delete(ids.pop())
    listed = client.v1.invoices.list(params={"customer": cus.id, "limit": 100})
    assert [i.id for i in listed.data] == list(reversed(ids)) and listed.has_more is False
    unknown = client.v1.invoices.list(params={"customer": "cus_unknown"})
    assert unknown.data == [] and unknown.has_more is False


def test_search_by_several_clauses(client: stripe.StripeClient) -> None:
    customer(client, tenant="t", region="us")
    wanted = customer(client, tenant="t", region="eu")
    customer(client, tenant="u", region="eu")
    found = client.v1.customers.search(
        params={"query": "metadata['tenant']:'t' AND metadata['region']:'eu'"}
    )
    assert [c.id for c in found.data] == [wanted.id]
    newest_first = client.v1.customers.search(params={"query": "metadata['tenant']:'t'"})
    assert [c.metadata["region"] for c in newest_first.data] == ["eu", "us"]
